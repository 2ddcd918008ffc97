"""Control plane: apply one change to a service with 1,000 backends on real maps.

    make bench-controlplane     # = .venv/bin/python benchmarks/controlplane/run.py --backends 1000 --repeat 5

Runs as root.  A namespace of its own (xlbb-cp<pid>) with a veth pair,
the data plane built and attached natively by the engine (what the
xdp_lb module runs on the host, minus Ansible's module start-up), nat mode,
one UDP service with BACKENDS backends, scheduler maglev, ring_size 131071
(prime, > 100 x 1,000).  Then REPEAT changes, each a real one, alternating:

  weight    backend #BACKENDS/2 gets weight 50 (then back to 100)
  replace   one backend leaves, another joins (then back)

and REPEAT no-op reruns.  Each apply is timed end to end
(engine.run(cfg)) and split by wrapping the engine's steps:

  maglev      building the lookup tables (maglev.build_table); a no-op rerun
              builds none: the ring's inputs digest and the live ring's
              digest match the state file (maps.service_rings)
  read        reading the live maps (maps.read_tables)
  plan        computing the difference (maps.plan, desired_tables, ids)
  write       the map writes (maps.apply: backends, the 131,071-entry ring in
              one batch update, the service flip)
  digest      ring digests: the state file's record, result and diff
              (maps.ring_digest)
  state       the state file (state.save)
  other       the rest: host checks, netlink queries, program checks

Wall time and the process's CPU time are both recorded: on a shared
machine the wall time is the CPU time stretched by the other processes;
the CPU time is what an otherwise idle host's wall time would be.

Everything it made is removed at the end, also on failure.
"""
import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (  # noqa: E402
    engine, maglev, maps, model, state)
import common  # noqa: E402
import hermetic  # noqa: E402

OUT = os.path.join(ROOT, "build", "bench-controlplane")
TIMES = collections.defaultdict(float)
CPU = collections.defaultdict(float)


def timed(owner, name, bucket):
    """Replace owner.name by a wrapper adding its time to TIMES[bucket] (outermost call only)."""
    fn = getattr(owner, name)
    depth = [0]

    def wrapper(*a, **kw):
        depth[0] += 1
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                TIMES[bucket] += time.perf_counter() - t
                CPU[bucket] += time.process_time() - c
    setattr(owner, name, wrapper)


def instrument():
    timed(maglev, "build_table", "maglev")
    timed(maps, "read_tables", "read")
    for n in ("plan", "desired_tables", "assign_ids"):
        timed(maps, n, "plan")
    timed(maps, "apply", "write")
    timed(maps, "ring_digest", "digest")
    timed(state, "save", "state")


def sh(*argv, **kw):
    return subprocess.run(argv, check=kw.pop("check", True), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kw)


def backend_addresses(n):
    """n addresses in 198.18.2.0 .. 198.18.255.255 (inside 198.18.0.0/15)."""
    out = []
    for i in range(n):
        out.append("198.18.%d.%d" % (2 + i // 250, 1 + i % 250))
    return out


def config(netns, tag, backends, weights=None, state_="present", ring_size=131071):
    weights = weights or {}
    return model.validate({
        "name": "cp", "netns": netns, "interfaces": ["cp0"], "mode": "nat", "state": state_,
        "nat_source_ipv4": "198.18.0.1",
        "services": [{"vip": "198.18.100.1", "port": 53, "protocol": "udp", "scheduler": "maglev",
                      "backends": [{"address": a, "weight": weights.get(a, 100)} for a in backends]}],
        "ring_size": ring_size, "max_services": 4, "max_backends": max(2048, 2 * len(backends)),
        "conntrack_size": 4096,
        "source": os.path.join(ROOT, "files"), "pin_dir": "/sys/fs/bpf/%s" % tag,
        "state_dir": os.path.join(OUT, "state"), "build_dir": os.path.join(OUT, "objects")})


def apply(cfg):
    """(wall s, {step: wall s}, result, cpu s, {step: cpu s}) of one engine.run."""
    TIMES.clear()
    CPU.clear()
    t, c = time.perf_counter(), time.process_time()
    result = engine.run(cfg)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    split = dict(TIMES)
    split["other"] = total - sum(split.values())
    cpu_split = dict(CPU)
    cpu_split["other"] = cpu - sum(cpu_split.values())
    return total, split, result, cpu, cpu_split


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--backends", type=int, default=1000)
    ap.add_argument("--ring-size", type=int, default=131071)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(OUT, "results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, XDP, bpffs)")
    hermetic.enter_private_bpffs()   # a bpffs of its own at /sys/fs/bpf, gone with the process
    tag = "xlbb-cp%d" % os.getpid()
    netns = tag
    os.makedirs(OUT, exist_ok=True)
    instrument()
    rows = []
    base = backend_addresses(args.backends + 1)
    a_set, spare = base[:args.backends], base[args.backends]
    mid = a_set[args.backends // 2]
    b_set = [spare if x == mid else x for x in a_set]
    try:
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", "cp0", "netns", netns, "type", "veth", "peer", "name", "cp0p", "netns", netns)
        for dev in ("cp0", "cp0p", "lo"):
            sh("ip", "-n", netns, "link", "set", dev, "up")
        sh("ip", "-n", netns, "addr", "add", "198.18.0.1/24", "dev", "cp0")

        total, split, dummy, cpu, cpu_split = apply(config(netns, tag, a_set, ring_size=args.ring_size))
        rows.append({"kind": "first deploy (build, load, full sync)", "total": total, "split": split,
                     "cpu": cpu, "cpu_split": cpu_split, "loadavg": loadavg()})
        print("first deploy: %.3f s  %s  load %s" % (total, fmt(split), loadavg()), flush=True)
        plan = []
        for i in range(args.repeat):
            plan += [("weight", {mid: 50}, a_set), ("weight back", {}, a_set)]
        for i in range(args.repeat):
            plan += [("replace", {}, b_set), ("replace back", {}, a_set)]
        for kind, weights, backends in plan:
            total, split, result, cpu, cpu_split = apply(config(netns, tag, backends, weights,
                                                                ring_size=args.ring_size))
            assert result["changed"], "no change applied for %s" % kind
            rows.append({"kind": kind.split()[0], "total": total, "split": split, "cpu": cpu,
                         "cpu_split": cpu_split, "loadavg": loadavg(), "changes": result["changes"]})
            print("%-13s %.3f s (cpu %.3f s)  %s  load %s" % (kind, total, cpu, fmt(split), loadavg()), flush=True)
        for i in range(args.repeat):
            total, split, result, cpu, cpu_split = apply(config(netns, tag, a_set, ring_size=args.ring_size))
            assert not result["changed"], result["changes"]
            rows.append({"kind": "no-op", "total": total, "split": split, "cpu": cpu, "cpu_split": cpu_split,
                         "loadavg": loadavg()})
            print("%-13s %.3f s (cpu %.3f s)  %s  load %s" % ("no-op", total, cpu, fmt(split), loadavg()),
                  flush=True)
    finally:
        try:
            engine.run(config(netns, tag, a_set, state_="absent", ring_size=args.ring_size))
        except Exception as exc:
            print("cleanup: %s" % exc, file=sys.stderr)
        sh("ip", "netns", "del", netns, check=False)
        if os.path.isdir("/sys/fs/bpf/" + tag):
            engine.remove_pins("/sys/fs/bpf/" + tag)
    summary = {}
    for kind in ("weight", "replace", "no-op"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        keys = sorted(set(k for r in sel for k in r["split"]))
        summary[kind] = {"n": len(sel), "total_median": statistics.median(r["total"] for r in sel),
                         "total_min": min(r["total"] for r in sel), "total_max": max(r["total"] for r in sel),
                         "split_median": dict((k, statistics.median(r["split"].get(k, 0) for r in sel))
                                              for k in keys),
                         "cpu_median": statistics.median(r["cpu"] for r in sel),
                         "cpu_min": min(r["cpu"] for r in sel),
                         "cpu_split_median": dict((k, statistics.median(r["cpu_split"].get(k, 0) for r in sel))
                                                  for k in keys)}
    doc = {"machine": dict(common.machine(), python=platform.python_version()),
           "args": vars(args), "rows": rows, "summary": summary, "loadavg_end": loadavg()}
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print("\nchange    n   wall median s (min-max)   CPU median s (min)   CPU split (median s)")
    for kind, s in summary.items():
        print("%-8s %2d   %.3f (%.3f-%.3f)      %.3f (%.3f)       %s" % (
            kind, s["n"], s["total_median"], s["total_min"], s["total_max"], s["cpu_median"], s["cpu_min"],
            fmt(s["cpu_split_median"])))
    print("results: %s" % args.json)


def fmt(split):
    order = ("maglev", "read", "plan", "write", "digest", "state", "other")
    return " ".join("%s %.3f" % (k, split[k]) for k in order if k in split)


if __name__ == "__main__":
    main()
