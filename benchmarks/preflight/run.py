"""Pre-flight: what it adds to an engine run that loads a new build.

    flock /tmp/xdplb-lab.lock unshare -m --propagation private bash -c \\
      'mount -t bpf bpf /sys/fs/bpf && .venv/bin/python benchmarks/preflight/run.py --repeat 5'

Runs as root, in a private mount namespace with bpffs.  A namespace of its
own (xlbb-pf<pid>) with two veth pairs (client side pf0 198.18.0.1 and
fd00:18::1, backend side pf1 198.18.1.1 and fd00:18:1::1, three backends
per family behind pf1 with permanent neighbours), nat mode, the default
sizes (ring 65537, 32 services, 4096 backends, 65536 flows), four services
(UDP and TCP, IPv4 and IPv6), three backends each.  REPEAT times, for
preflight on and off alternately, a new build is applied (the source gets
one more comment line: a new build hash, compiled first, outside the timed
part) and engine.run is timed end to end; with preflight on, the result's
preflight.seconds is the part pre-flight took (scratch load with the
verifier, map fill, the test runs).  Prints medians and writes
benchmarks/results/preflight.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, engine, model  # noqa: E402
import common  # noqa: E402


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def config(netns, tag, src, preflight, work):
    services = []
    for vip, fam in (("198.18.100.1", 4), ("fd00:18:100::1", 6)):
        backends = [{"address": ("198.18.1.%d" if fam == 4 else "fd00:18:1::%d") % (10 + i), "port": 8080}
                    for i in range(1, 4)]
        for proto in ("udp", "tcp"):
            services.append({"vip": vip, "port": 80, "protocol": proto, "scheduler": "maglev",
                             "backends": backends})
    return model.validate({
        "name": "pf", "netns": netns, "interfaces": ["pf0", "pf1"], "mode": "nat", "attach_mode": "native",
        "services": services, "source": src, "preflight": preflight, "nat_guard": False,
        "pin_dir": "/sys/fs/bpf/" + tag, "state_dir": os.path.join(work, "state"),
        "build_dir": os.path.join(work, "build")})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    tag = "xlbb-pf%d" % os.getpid()
    netns = tag
    work = tempfile.mkdtemp(prefix="xlbb-pf-")
    src = os.path.join(work, "src")
    os.makedirs(src)
    for name in (build.SOURCE, build.HEADER):
        shutil.copy(os.path.join(ROOT, "files", name), src)
    runs = {"on": [], "off": [], "preflight": []}
    try:
        sh("ip", "netns", "add", netns)
        for dev in ("pf0", "pf1"):
            sh("ip", "link", "add", dev, "netns", netns, "type", "veth", "peer", "name", dev + "p", "netns", netns)
            sh("ip", "-n", netns, "link", "set", dev, "up")
            sh("ip", "-n", netns, "link", "set", dev + "p", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "-n", netns, "addr", "add", "198.18.0.1/24", "dev", "pf0")
        sh("ip", "-n", netns, "addr", "add", "fd00:18::1/64", "dev", "pf0", "nodad")
        sh("ip", "-n", netns, "addr", "add", "198.18.1.1/24", "dev", "pf1")
        sh("ip", "-n", netns, "addr", "add", "fd00:18:1::1/64", "dev", "pf1", "nodad")
        sh("ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for i in range(1, 4):
            for addr in ("198.18.1.%d" % (10 + i), "fd00:18:1::%d" % (10 + i)):
                sh("ip", "-n", netns, "neigh", "replace", addr, "lladdr", "02:00:00:00:01:%02x" % (10 + i),
                   "dev", "pf1", "nud", "permanent")
        engine.run(config(netns, tag, src, True, work))   # first deploy (not timed)
        for i in range(2 * args.repeat):
            on = i % 2 == 0
            with open(os.path.join(src, build.SOURCE), "a") as f:
                f.write("/* preflight benchmark %d */\n" % i)
            cfg = config(netns, tag, src, on, work)
            build.compile_object(src, cfg.build_dir, cfg.defines(), clang=cfg.clang)   # not timed
            t0 = time.monotonic()
            result = engine.run(cfg)
            wall = time.monotonic() - t0
            assert result["changed"] and result["program"]["loaded"], result
            runs["on" if on else "off"].append(wall)
            if on:
                runs["preflight"].append(result["preflight"]["seconds"])
                cases = result["preflight"]["cases"]
        engine.run(model.validate(dict(config(netns, tag, src, True, work).to_dict(), state="absent")))
    finally:
        sh("ip", "netns", "del", netns)
        engine.remove_pins("/sys/fs/bpf/" + tag)
        shutil.rmtree(work, ignore_errors=True)
    med = dict((k, round(statistics.median(v), 3)) for k, v in runs.items())
    out = {"machine": common.machine(), "repeat": args.repeat, "cases": cases, "median_seconds": med,
           "runs": dict((k, [round(x, 3) for x in v]) for k, v in runs.items()),
           "loadavg": open("/proc/loadavg").read().split()[:3]}
    print(json.dumps(out, indent=1, sort_keys=True))
    path = os.path.join(ROOT, "benchmarks", "results", "preflight.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
