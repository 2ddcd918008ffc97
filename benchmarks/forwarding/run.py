"""Packets per second delivered to the backends: our XDP balancer (nat) vs nftables DNAT vs plain forwarding.

    make bench-forwarding       # = .venv/bin/python benchmarks/forwarding/run.py

Runs as root on the netns lab of scripts/lab/lab.sh (prefix xlbb-f,
management net 198.19.50.0/24, lab dir build/bench-forwarding/lab):

    xlbb-fclient --veth-- xlbb-flb --veth-- xlbb-fsw (bridge) --veth-- xlbb-fbe1..3

Generator: udp_flood.c (xdp-trafficgen does not load on this kernel: its
tracepoint programs need kernel BTF types this kernel no longer has), one
process per CPU in the client namespace, FLOWS connected UDP sockets each,
64-byte frames to 198.18.100.1:9000, for SECONDS (bounded: at most 120 s
and COUNT datagrams per process).  Receiver: xdp_count.c on each backend's
eth0 counts and drops them.  Methods, the same packets in each:

  xdp     this collection's program in nat mode on front0 and back0 (engine,
          Maglev over the three backends)
  nft     nftables in the lb namespace: dnat to jhash ip saddr . udp sport
          mod 3 map {0: be1, 1: be2, 2: be3}, masquerade towards the backends
  plain   kernel forwarding, no balancing: a route for the VIP via be1
  ingress reference: xdp_count on the lb's front0 (the generator and one
          veth hop, nothing forwarded); the other methods' cost above it is
          their forwarding cost

pps: delivered packets between 1 s after the start and 0.5 s before the
end, divided by that time.  CPU per packet: CPU time of the sender
processes (on veth the whole path runs in their softirq context) plus the
ksoftirqd threads, over the same window, per delivered packet; other
processes on the machine are not in it, but they compete for the CPUs,
so absolute pps move with the machine's load: compare methods within a
round (the rounds interleave the methods).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model  # noqa: E402
from common import machine  # noqa: E402
import hermetic  # noqa: E402

P = "xlbb-f"
MGMT = "198.19.50"
VIP, PORT = "198.18.100.1", 9000
BACKENDS = ["198.18.1.11", "198.18.1.12", "198.18.1.13"]
PIN_BASE = "/sys/fs/bpf/xlbb-fwd"
OUT = os.path.join(ROOT, "build", "bench-forwarding")
LAB_ENV = dict(os.environ, LAB_PREFIX=P, LAB_DIR=os.path.join(OUT, "lab"), LAB_MGMT_NET=MGMT, LAB_BACKENDS="3")
NFT = """table ip xlbb_bench {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr %(vip)s udp dport %(port)d dnat to jhash ip saddr . udp sport mod 3 map { 0 : %(b0)s, 1 : %(b1)s, 2 : %(b2)s }
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "back0" masquerade
    }
}
"""


def sh(*argv, **kw):
    return subprocess.run(argv, check=kw.pop("check", True), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kw)


def ns(name):
    return P + name


def in_ns(name, *argv, **kw):
    return sh("ip", "netns", "exec", ns(name), *argv, **kw)


def net_only(name, *argv, **kw):
    """Run in the namespace's network stack but this mount namespace (bpffs pins visible)."""
    return sh("nsenter", "--net=/run/netns/" + ns(name), *argv, **kw)


# ---- build --------------------------------------------------------------------------
def build_tools():
    os.makedirs(OUT, exist_ok=True)
    flood = os.path.join(OUT, "udp_flood")
    sh("gcc", "-O2", "-Wall", "-o", flood, os.path.join(HERE, "udp_flood.c"))
    obj = os.path.join(OUT, "xdp_count.o")
    inc = [d for d in ("/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu") if os.path.isdir(d)]
    sh("clang", "-O2", "-g", "-Wall", "-target", "bpf", "-DBENCH_PORT=%d" % PORT,
       *["-I" + d for d in inc], "-c", os.path.join(HERE, "xdp_count.c"), "-o", obj)
    return flood, obj


# ---- receivers ----------------------------------------------------------------------
class Counter:
    """xdp_count.c attached natively to DEV in namespace NAME; its per-CPU count summed."""

    def __init__(self, obj, name, dev):
        self.name, self.dev = name, dev
        self.dir = os.path.join(PIN_BASE, "%s-%s" % (name, dev))
        os.makedirs(self.dir, exist_ok=True)
        sh("bpftool", "prog", "load", obj, os.path.join(self.dir, "prog"), "type", "xdp", "pinmaps", self.dir)
        net_only(name, "bpftool", "net", "attach", "xdpdrv", "pinned", os.path.join(self.dir, "prog"),
                 "dev", dev)

    def read(self):
        out = json.loads(sh("bpftool", "-j", "map", "dump", "pinned", os.path.join(self.dir, "rx_count")).stdout)
        return sum(v["value"] for v in out[0]["formatted"]["values"])

    def close(self):
        net_only(self.name, "bpftool", "net", "detach", "xdpdrv", "dev", self.dev, check=False)
        engine.remove_pins(self.dir)


# ---- methods ------------------------------------------------------------------------
def xdp_config(state):
    return model.validate({
        "name": "bench", "netns": ns("lb"), "interfaces": ["front0", "back0"], "mode": "nat",
        "services": [{"vip": VIP, "port": PORT, "protocol": "udp", "scheduler": "maglev",
                      "backends": [{"address": a} for a in BACKENDS]}],
        "source": os.path.join(ROOT, "files"), "pin_dir": os.path.join(PIN_BASE, "lb"),
        "state_dir": os.path.join(OUT, "state"), "build_dir": os.path.join(OUT, "objects"), "state": state})


class Method:
    def __init__(self, name, up, down, receivers):
        self.name, self.up, self.down, self.receivers = name, up, down, receivers


def methods(obj, backend_counters):
    def xdp_up():
        engine.run(xdp_config("present"))

    def xdp_down():
        engine.run(xdp_config("absent"))

    def nft_up():
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
            f.write(NFT % {"vip": VIP, "port": PORT, "b0": BACKENDS[0], "b1": BACKENDS[1], "b2": BACKENDS[2]})
        try:
            in_ns("lb", "nft", "-f", f.name)
        finally:
            os.unlink(f.name)

    def nft_down():
        in_ns("lb", "nft", "delete", "table", "ip", "xlbb_bench", check=False)
        in_ns("lb", "conntrack", "-F", check=False)

    def plain_up():
        in_ns("lb", "ip", "route", "add", VIP + "/32", "via", BACKENDS[0])

    def plain_down():
        in_ns("lb", "ip", "route", "del", VIP + "/32", check=False)

    ingress = {}

    def ingress_up():
        ingress["c"] = Counter(obj, "lb", "front0")

    def ingress_down():
        if "c" in ingress:
            ingress.pop("c").close()

    return [Method("xdp", xdp_up, xdp_down, lambda: backend_counters),
            Method("nft", nft_up, nft_down, lambda: backend_counters),
            Method("plain", plain_up, plain_down, lambda: backend_counters),
            Method("ingress", ingress_up, ingress_down, lambda: [ingress["c"]])]


# ---- one run ------------------------------------------------------------------------
def ksoftirqd_pids():
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/comm" % pid) as f:
                    if f.read().startswith("ksoftirqd/"):
                        out.append(int(pid))
            except OSError:
                pass
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime, stime
        except (OSError, IndexError):
            pass
    return total


def proc_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"busy": sum(v[:3]) + v[5] + v[6], "softirq": v[6], "all": sum(v[:8])}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_once(method, flood, args):
    method.up()
    try:
        time.sleep(0.3)
        counters = method.receivers()
        start = [c.read() for c in counters]
        procs = []
        for cpu in range(args.senders):
            procs.append(subprocess.Popen(
                ["taskset", "-c", str(cpu % os.cpu_count()), "ip", "netns", "exec", ns("client"), flood,
                 VIP, str(PORT), "198.18.0.2", str(20000 + cpu * args.flows), str(args.flows), str(args.seconds),
                 str(args.count), "18"], stdout=subprocess.PIPE, universal_newlines=True))
        soft = ksoftirqd_pids()
        pids = [p.pid for p in procs] + soft
        time.sleep(1.0)
        c0, t0, k0, s0 = sum(c.read() for c in counters), time.monotonic(), cpu_ticks(pids), proc_stat()
        time.sleep(max(0.5, args.seconds - 1.5))
        c1, t1, k1, s1 = sum(c.read() for c in counters), time.monotonic(), cpu_ticks(pids), proc_stat()
        sent = 0
        for p in procs:
            out = p.communicate(timeout=args.seconds + 30)[0]
            if p.returncode != 0:
                raise RuntimeError("udp_flood failed: %s" % out)
            sent += int(out.split()[0].split("=")[1])
        time.sleep(0.2)
        per_backend = [c.read() - s0 for c, s0 in zip(counters, start)]
        hz = os.sysconf("SC_CLK_TCK")
        delivered = c1 - c0
        wall = t1 - t0
        cpu = (k1 - k0) / hz
        return {"method": method.name, "pps": delivered / wall, "delivered": delivered, "window_s": round(wall, 3),
                "cpu_s": cpu, "ns_per_packet": cpu * 1e9 / delivered if delivered else None,
                "machine_busy_share": (s1["busy"] - s0["busy"]) / max(1, s1["all"] - s0["all"]),
                "machine_softirq_share": (s1["softirq"] - s0["softirq"]) / max(1, s1["all"] - s0["all"]),
                "sent_total": sent, "delivered_total": sum(per_backend), "per_receiver": per_backend,
                "delivered_share": sum(per_backend) / sent if sent else None,
                "loadavg": loadavg()}
    finally:
        method.down()


# ---- main ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per run (max 120)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every method once")
    ap.add_argument("--flows", type=int, default=32, help="UDP flows per sender")
    ap.add_argument("--senders", type=int, default=os.cpu_count(), help="sender processes (one per CPU)")
    ap.add_argument("--count", type=int, default=50000000, help="datagrams per sender at most")
    ap.add_argument("--methods", default="xdp,nft,plain,ingress")
    ap.add_argument("--json", default=os.path.join(OUT, "results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, XDP)")
    if not 1 <= args.seconds <= 120:
        sys.exit("--seconds must be 1..120")
    hermetic.enter_private_bpffs()   # a bpffs of its own at /sys/fs/bpf, gone with the process
    flood, obj = build_tools()
    results = []
    backend_counters = []
    lab = os.path.join(ROOT, "scripts", "lab", "lab.sh")
    try:
        sh("bash", lab, "up", env=LAB_ENV)
        in_ns("lb", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
              "net.ipv4.conf.front0.rp_filter=2", "net.ipv4.conf.back0.rp_filter=2",
              "net.ipv4.conf.front0.accept_local=1", "net.ipv4.conf.back0.accept_local=1")
        os.makedirs(PIN_BASE, exist_ok=True)
        for i in range(1, 4):
            backend_counters.append(Counter(obj, "be%d" % i, "eth0"))
        wanted = args.methods.split(",")
        ms = [m for m in methods(obj, backend_counters) if m.name in wanted]
        for r in range(args.repeat):
            for m in ms:
                res = run_once(m, flood, args)
                res["round"] = r + 1
                results.append(res)
                print("round %d %-8s %9.0f pps  %6.0f ns/packet CPU  delivered %d of %d sent  load %s"
                      % (r + 1, m.name, res["pps"], res["ns_per_packet"] or 0, res["delivered_total"],
                         res["sent_total"], res["loadavg"]), flush=True)
    finally:
        for c in backend_counters:
            try:
                c.close()
            except Exception as exc:   # keep cleaning up
                print("cleanup: %s" % exc, file=sys.stderr)
        try:
            engine.run(xdp_config("absent"))
        except Exception:
            pass
        sh("bash", lab, "down", env=LAB_ENV, check=False)
        if os.path.isdir(PIN_BASE):
            engine.remove_pins(PIN_BASE)
    summary = {}
    for m in sorted(set(r["method"] for r in results)):
        rows = [r for r in results if r["method"] == m]
        summary[m] = {"pps_median": statistics.median(r["pps"] for r in rows),
                      "pps_min": min(r["pps"] for r in rows), "pps_max": max(r["pps"] for r in rows),
                      # None: a window that saw no packet delivered (short runs on a busy machine)
                      "ns_per_packet_median": statistics.median(
                          [r["ns_per_packet"] for r in rows if r["ns_per_packet"] is not None] or [None])}
    # ratios within each round, then their median
    ratios = {}
    for m in summary:
        per_round = []
        for r in range(1, args.repeat + 1):
            a = [x for x in results if x["round"] == r and x["method"] == m]
            b = [x for x in results if x["round"] == r and x["method"] == "plain"]
            if a and b:
                per_round.append(a[0]["pps"] / b[0]["pps"])
        if per_round:
            ratios[m] = {"pps_vs_plain_median": statistics.median(per_round),
                         "per_round": [round(x, 3) for x in per_round]}
    doc = {"machine": machine(), "args": vars(args), "results": results, "summary": summary,
           "ratios": ratios, "loadavg_end": loadavg()}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print("\nmethod    pps median (min-max)          ns CPU/packet  pps vs plain (per round)")
    for m, s in summary.items():
        rt = ratios.get(m, {})
        ns = s["ns_per_packet_median"]
        print("%-8s %9.0f (%7.0f-%7.0f)   %9s      %s %s" % (
            m, s["pps_median"], s["pps_min"], s["pps_max"], "-" if ns is None else "%.0f" % ns,
            "%.2f" % rt["pps_vs_plain_median"] if rt else "-", rt.get("per_round", "")))
    print("results: %s" % args.json)


if __name__ == "__main__":
    main()
