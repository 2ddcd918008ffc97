"""Forwarding through the balancer namespace, driven by an XDP generator: xdp_lb (nat, dsr,
redirect) vs nftables DNAT vs plain forwarding, per CPU.

    make bench-forwarding       # = .venv/bin/python benchmarks/forwarding/run.py

Runs as root, under `flock /tmp/xdplb-fwd.lock` (names of its own, not the
test lab's), on the netns lab of scripts/lab/lab.sh with prefix xlbw-,
management net 198.19.60.0/24, lab dir build/bench-forwarding/lab:

    xlbw-client eth0 --veth-- front0 xlbw-lb back0 --veth-- lb [xlbw-sw] be1..3 --veth-- eth0 xlbw-be1..3

Generator (trafficgen.py, xdp_trafficgen.c): an XDP program run with
BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES in the client namespace,
pinned to one CPU (--cpu): prepared 64-byte UDP frames, FLOWS flows (8
sources x FLOWS/8 ports), to 198.18.100.1:9000, transmitted out of the
client's eth0 as XDP frames (no socket, no sk_buff) into the lb's front0.
Full speed ("saturation") or a set rate (--loads).

Switch: the sw namespace's bridge stays for ARP; xdp_switch.c on its port
facing the lb redirects IPv4 frames for the backends' MACs straight to
their ports (a hardware switch costs the host nothing; the Linux bridge on
veth would cost more than the balancer, the same for every method).
Receivers: xdp_count.c on each backend's eth0 counts and drops.

Methods (one at a time, the same frames):

  xdp-nat       this collection's program (engine), nat, on front0 + back0
  xdp-dsr       dsr on front0 (destination MAC rewrite, out of back0)
  xdp-redirect  redirect mode, front0 -> back0 unmodified (the switch sends
                the client-side MAC to be1's port for this method)
  nft           nftables dnat to jhash ip saddr . udp sport mod 3, masquerade
  plain         kernel forwarding, a route to the VIP via be1
  ref           generator-only reference: xdp_count on the lb's front0

On veth the receiving side runs in the sender's softirq on the same CPU:
the whole path runs on the generator's CPU.  CPU = run time
(/proc/PID/schedstat, ns) of the generator process and of that CPU's
ksoftirqd over the window; other work on the machine is not in it (it only
takes CPU time away, which lowers wall-clock pps but not CPU per packet).
"net" = a method's CPU ns per delivered packet minus the same round's
ref: the cost of the path behind front0.  Rounds interleave the methods
(reversed order every other round); spread = min-max over rounds.
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
sys.path.insert(0, HERE)

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, engine, model  # noqa: E402
from common import machine  # noqa: E402
import hermetic  # noqa: E402
import trafficgen  # noqa: E402

P = "xlbw-"
MGMT = "198.19.60"
VIP, PORT = "198.18.100.1", 9000
BACKENDS = ["198.18.1.11", "198.18.1.12", "198.18.1.13"]
PIN_BASE = "/sys/fs/bpf/xlbw-fwd"
OUT = os.path.join(ROOT, "build", "bench-forwarding")
LAB_ENV = dict(os.environ, LAB_PREFIX=P, LAB_DIR=os.path.join(OUT, "lab"), LAB_MGMT_NET=MGMT, LAB_BACKENDS="3")
NFT_TABLE = "xlbw_bench"
NFT = """table ip %(table)s {
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
ALL_METHODS = ("ref", "xdp-nat", "xdp-dsr", "xdp-redirect", "nft", "plain")


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


def link(name, dev):
    """(ifindex, MAC) of DEV in namespace NAME."""
    info = json.loads(sh("ip", "-n", ns(name), "-j", "link", "show", dev).stdout)[0]
    return info["ifindex"], info["address"]


# ---- build --------------------------------------------------------------------------
def compile_bpf(name, *defines):
    out = os.path.join(OUT, name + ".o")
    sh("clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", *defines,
       *["-I" + d for d in build.system_include_dirs()], "-c", os.path.join(HERE, name + ".c"), "-o", out)
    return out


def build_tools():
    os.makedirs(OUT, exist_ok=True)
    return {"count": compile_bpf("xdp_count", "-DBENCH_PORT=%d" % PORT), "switch": compile_bpf("xdp_switch"),
            "gen": trafficgen.compile_program(OUT)}


# ---- programs on the lab's devices ----------------------------------------------------
class Attached:
    """An object loaded by bpftool (maps pinned in its own directory), attached natively to DEV in NAME."""

    def __init__(self, obj, name, dev):
        self.name, self.dev = name, dev
        self.dir = os.path.join(PIN_BASE, "%s-%s" % (name, dev))
        os.makedirs(self.dir, exist_ok=True)
        sh("bpftool", "prog", "load", obj, os.path.join(self.dir, "prog"), "type", "xdp", "pinmaps", self.dir)
        net_only(name, "bpftool", "net", "attach", "xdpdrv", "pinned", os.path.join(self.dir, "prog"),
                 "dev", dev)

    def close(self):
        net_only(self.name, "bpftool", "net", "detach", "xdpdrv", "dev", self.dev, check=False)
        engine.remove_pins(self.dir)


class Counter(Attached):
    """xdp_count.c: UDP to the benchmark's port, counted per CPU and dropped."""

    def read_cpus(self):
        """Counts per CPU."""
        out = json.loads(sh("bpftool", "-j", "map", "dump", "pinned", os.path.join(self.dir, "rx_count")).stdout)
        return [v["value"] for v in out[0]["formatted"]["values"]]

    def read(self):
        return sum(self.read_cpus())


class Switch(Attached):
    """xdp_switch.c on the sw port facing the lb: destination MAC -> port."""

    def _key(self, mac):
        return [str(int(x, 16)) for x in mac.split(":")] + ["0", "0"]

    def set(self, mac, ifindex):
        sh("bpftool", "map", "update", "pinned", os.path.join(self.dir, "switch_ports"),
           "key", *self._key(mac), "value", *[str(b) for b in ifindex.to_bytes(4, sys.byteorder)])

    def unset(self, mac):
        sh("bpftool", "map", "delete", "pinned", os.path.join(self.dir, "switch_ports"),
           "key", *self._key(mac), check=False)


# ---- methods ------------------------------------------------------------------------
def xdp_config(mode, state):
    cfg = {"name": "bench", "netns": ns("lb"), "mode": mode,
           "services": [{"vip": VIP, "port": PORT, "protocol": "udp", "scheduler": "maglev",
                         "backends": [{"address": a} for a in BACKENDS]}],
           "source": os.path.join(ROOT, "files"), "pin_dir": os.path.join(PIN_BASE, "lb"),
           "state_dir": os.path.join(OUT, "state"), "build_dir": os.path.join(OUT, "objects"), "state": state}
    if mode == "nat":
        cfg["interfaces"] = ["front0", "back0"]
    elif mode == "dsr":
        cfg["interfaces"] = ["front0"]
    else:
        cfg["interfaces"] = ["front0"]
        cfg["redirect_interfaces"] = ["back0"]
        cfg["services"] = []
    return model.validate(cfg)


class Method:
    def __init__(self, name, up, down, receivers):
        self.name, self.up, self.down, self.receivers = name, up, down, receivers


def methods(tools, backend_counters, switch):
    front0_mac = link("lb", "front0")[1]
    be1_port = link("sw", "be1")[0]

    def xdp(mode):
        def up():
            engine.run(xdp_config(mode, "present"))
            if mode == "redirect":          # frames leave unmodified, to front0's MAC: the switch sends them to be1
                switch.set(front0_mac, be1_port)

        def down():
            if mode == "redirect":
                switch.unset(front0_mac)
            engine.run(xdp_config(mode, "absent"))
        return up, down

    def nft_up():
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
            f.write(NFT % {"table": NFT_TABLE, "vip": VIP, "port": PORT,
                           "b0": BACKENDS[0], "b1": BACKENDS[1], "b2": BACKENDS[2]})
        try:
            in_ns("lb", "nft", "-f", f.name)
        finally:
            os.unlink(f.name)

    def nft_down():
        in_ns("lb", "nft", "delete", "table", "ip", NFT_TABLE, check=False)
        in_ns("lb", "conntrack", "-F", check=False)

    def plain_up():
        in_ns("lb", "ip", "route", "add", VIP + "/32", "via", BACKENDS[0])

    def plain_down():
        in_ns("lb", "ip", "route", "del", VIP + "/32", check=False)

    ref = {}

    def ref_up():
        ref["c"] = Counter(tools["count"], "lb", "front0")

    def ref_down():
        if "c" in ref:
            ref.pop("c").close()

    out = {"ref": Method("ref", ref_up, ref_down, lambda: [ref["c"]])}
    for mode in ("nat", "dsr", "redirect"):
        up, down = xdp(mode)
        out["xdp-" + mode] = Method("xdp-" + mode, up, down, lambda: backend_counters)
    out["nft"] = Method("nft", nft_up, nft_down, lambda: backend_counters)
    out["plain"] = Method("plain", plain_up, plain_down, lambda: backend_counters)
    return out


# ---- CPU ----------------------------------------------------------------------------
def ksoftirqd(cpu):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/comm" % pid) as f:
                    if f.read().strip() == "ksoftirqd/%d" % cpu:
                        return int(pid)
            except OSError:
                pass
    raise RuntimeError("no ksoftirqd/%d" % cpu)


def run_ns(pids):
    """Sum of the tasks' run time, ns (/proc/PID/task/*/schedstat: every thread)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def data_plane_revision():
    """The checkout's commit and the last commit that changed files/ (the data plane measured)."""
    def git(*argv):
        r = sh("git", "-C", ROOT, *argv, check=False)
        return r.stdout.strip() if r.returncode == 0 else None
    dirty = git("status", "--porcelain", "--", "files")
    return {"head": git("rev-parse", "--short", "HEAD"), "files": git("log", "-1", "--format=%h %cs", "--", "files"),
            "files_modified": bool(dirty)}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- one run ------------------------------------------------------------------------
def generate(tools, args, rate, window, front0_mac, on_window):
    """Start the generator at RATE (0: full speed), call ON_WINDOW() once it is sending; returns
    (window measurements, generator's report)."""
    seconds = args.warmup + window + 0.5
    cmd = ["nsenter", "--net=/run/netns/" + ns("client"), "taskset", "-c", str(args.cpu), sys.executable,
           os.path.join(HERE, "trafficgen.py"), "--dev", "eth0", "--dst-mac", front0_mac, "--dst", VIP,
           "--dport", str(PORT), "--flows", str(args.flows), "--rate", str(rate), "--seconds", str(seconds),
           "--obj", tools["gen"]]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        line = gen.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("trafficgen did not start: %s %s" % (line, gen.stderr.read()))
        measured = on_window(gen.pid)
        out, err = gen.communicate(timeout=seconds + 60)
        if gen.returncode != 0:
            raise RuntimeError("trafficgen failed: %s" % err)
        return measured, json.loads(out.strip().splitlines()[-1])
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()


def run_once(method, tools, args, rate, window, front0_mac, soft_pid):
    method.up()
    try:
        time.sleep(0.3)
        counters = method.receivers()
        start_cpus = [c.read_cpus() for c in counters]
        start = [sum(x) for x in start_cpus]

        def on_window(pid):
            time.sleep(args.warmup)
            pids = [pid, soft_pid]
            c0, t0, k0 = sum(c.read() for c in counters), time.monotonic(), run_ns(pids)
            time.sleep(window)
            c1, t1, k1 = sum(c.read() for c in counters), time.monotonic(), run_ns(pids)
            return {"delivered": c1 - c0, "window_s": t1 - t0, "cpu_s": (k1 - k0) / 1e9}

        m, gen = generate(tools, args, rate, window, front0_mac, on_window)
        time.sleep(0.2)
        end_cpus = [c.read_cpus() for c in counters]
        per_receiver = [sum(e) - s for e, s in zip(end_cpus, start)]
        on_cpu = sum(e[args.cpu] - s[args.cpu] for e, s in zip(end_cpus, start_cpus))
        delivered = m["delivered"]
        return {"method": method.name, "rate": rate, "pps": delivered / m["window_s"], "delivered": delivered,
                "window_s": round(m["window_s"], 3), "cpu_s": round(m["cpu_s"], 4),
                "cpu_share": round(m["cpu_s"] / m["window_s"], 3),
                "ns_per_packet": m["cpu_s"] * 1e9 / delivered if delivered else None,
                "sent_total": gen["sent"], "sent_pps": gen["sent"] / gen["elapsed"],
                "delivered_total": sum(per_receiver), "per_receiver": per_receiver,
                # received on the generator's CPU: the whole path ran there (1.0), its CPU time is counted
                "on_generator_cpu": on_cpu / sum(per_receiver) if sum(per_receiver) else None,
                "delivered_share": sum(per_receiver) / gen["sent"] if gen["sent"] else None,
                "loadavg": loadavg()}
    finally:
        method.down()


# ---- summary ------------------------------------------------------------------------
def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results, rounds):
    sat = [r for r in results if r["rate"] == 0]
    ref = {r["round"]: r["ns_per_packet"] for r in sat if r["method"] == "ref"}
    for r in sat:
        base = ref.get(r["round"])
        r["net_ns_per_packet"] = (r["ns_per_packet"] - base) if (r["ns_per_packet"] and base) else None
    summary = {}
    for m in [m for m in ALL_METHODS if any(r["method"] == m for r in sat)]:
        rows = [r for r in sat if r["method"] == m]
        ns_ = [r["ns_per_packet"] for r in rows if r["ns_per_packet"]]
        net = [r["net_ns_per_packet"] for r in rows if r["net_ns_per_packet"] is not None]
        s = {"pps_median": _med(r["pps"] for r in rows), "pps_min": min(r["pps"] for r in rows),
             "pps_max": max(r["pps"] for r in rows),
             "ns_per_packet_median": _med(ns_), "ns_per_packet_min": min(ns_, default=None),
             "ns_per_packet_max": max(ns_, default=None),
             "pps_per_cpu_median": _med(1e9 / x for x in ns_),
             "net_ns_per_packet_median": _med(net), "net_ns_per_packet_min": min(net, default=None),
             "net_ns_per_packet_max": max(net, default=None),
             "cpu_share_median": _med(r["cpu_share"] for r in rows),
             "delivered_share_median": _med(r["delivered_share"] for r in rows),
             "on_generator_cpu_min": min(r["on_generator_cpu"] or 0 for r in rows)}
        loads = {}
        for r in results:
            if r["method"] == m and r["rate"]:
                loads.setdefault(str(int(r["rate"])), []).append(r)
        s["loads"] = {k: {"sent_pps_median": _med(x["sent_pps"] for x in v),
                          "cpu_share_median": _med(x["cpu_share"] for x in v),
                          "delivered_share_median": _med(x["delivered_share"] for x in v),
                          "delivered_share_min": min(x["delivered_share"] for x in v)} for k, v in loads.items()}
        summary[m] = s
    # ratios to nft within each round, then their median and spread
    ratios = {}
    for m in summary:
        if m in ("nft", "ref"):
            continue
        whole, net = [], []
        for rnd in range(1, rounds + 1):
            a = [x for x in sat if x["round"] == rnd and x["method"] == m]
            b = [x for x in sat if x["round"] == rnd and x["method"] == "nft"]
            if a and b and a[0]["ns_per_packet"] and b[0]["ns_per_packet"]:
                whole.append(b[0]["ns_per_packet"] / a[0]["ns_per_packet"])
                if a[0]["net_ns_per_packet"] and b[0]["net_ns_per_packet"]:
                    net.append(b[0]["net_ns_per_packet"] / a[0]["net_ns_per_packet"])
        if whole:
            ratios[m] = {"pps_per_cpu_vs_nft_median": _med(whole), "pps_per_cpu_vs_nft": [round(x, 2) for x in whole],
                         "net_cpu_nft_over_this_median": _med(net), "net_cpu_nft_over_this": [round(x, 2) for x in net]}
    return summary, ratios


# ---- tables for docs/benchmarks.md ----------------------------------------------------
NAMES = {"xdp-nat": "xdp_lb nat", "xdp-dsr": "xdp_lb dsr", "xdp-redirect": "xdp_lb redirect",
         "nft": "nftables DNAT jhash", "plain": "plain forwarding", "ref": "generator only (ref)"}


def markdown(doc):
    """The results as the Markdown tables of docs/benchmarks.md."""
    sm, rt = doc["summary"], doc["ratios"]

    def rng(s, key, scale=1.0):
        lo, med, hi = s[key + "_min"], s[key + "_median"], s[key + "_max"]
        if med is None:
            return "-"
        return "%.0f (%.0f-%.0f)" % (med / scale, lo / scale, hi / scale)
    out = ["| method | CPU ns / delivered packet, median (min-max) | net of ref | Mpps per CPU | "
           "kpps wall clock, median (min-max) | CPU share | nft's net CPU / this, per round |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for m, s in sm.items():
        r = rt.get(m, {})
        out.append("| %s | %s | %s | %.2f | %s | %.2f | %s |" % (
            NAMES[m], rng(s, "ns_per_packet"), rng(s, "net_ns_per_packet") if m != "ref" else "0",
            (s["pps_per_cpu_median"] or 0) / 1e6, rng(s, "pps", 1e3), s["cpu_share_median"],
            ", ".join("%.2f" % x for x in r.get("net_cpu_nft_over_this", [])) or "-"))
    out += ["", "| method | whole path per CPU / nft's, per round | median |", "|---|---|---:|"]
    for m, r in rt.items():
        out.append("| %s | %s | %.2f |" % (NAMES[m], ", ".join("%.2f" % x for x in r["pps_per_cpu_vs_nft"]),
                                           r["pps_per_cpu_vs_nft_median"]))
    loads = sorted({k for s in sm.values() for k in s["loads"]}, key=float)
    if loads:
        out += ["", "| method | " + " | ".join("%.0fk offered" % (float(k) / 1e3) for k in loads) + " |",
                "|---|" + "---:|" * len(loads)]
        for m, s in sm.items():
            if m == "ref":
                continue
            cells = []
            for k in loads:
                v = s["loads"].get(k)
                cells.append("-" if v is None else "%.0fk sent (%.2f CPU), %.4f delivered" % (
                    v["sent_pps_median"] / 1e3, v.get("cpu_share_median") or 0, v["delivered_share_median"]))
            out.append("| %s | %s |" % (NAMES[m], " | ".join(cells)))
        # what the path needs of one CPU at each load, from its cost at saturation
        out += ["", "| method | " + " | ".join("CPU needed at %.0fk" % (float(k) / 1e3) for k in loads) + " |",
                "|---|" + "---:|" * len(loads)]
        for m, s in sm.items():
            if m != "ref" and s["ns_per_packet_median"]:
                out.append("| %s | %s |" % (NAMES[m], " | ".join(
                    "%.2f" % (float(k) * s["ns_per_packet_median"] / 1e9) for k in loads)))
    return "\n".join(out)


# ---- main ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured window at saturation (max 60)")
    ap.add_argument("--load-seconds", type=float, default=2.0, help="measured window per offered load")
    ap.add_argument("--warmup", type=float, default=0.7, help="seconds of sending before a window")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; each round runs every method once")
    ap.add_argument("--flows", type=int, default=4096, help="UDP flows (a power of two)")
    ap.add_argument("--loads", default="100000,200000,400000,800000", help="offered loads, pps (empty: none)")
    ap.add_argument("--cpu", type=int, default=1, help="the generator's CPU")
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--json", default=os.path.join(OUT, "results.json"))
    ap.add_argument("--report", metavar="JSON", help="print the Markdown tables of a results file and exit")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            doc = json.load(f)
        doc["summary"], doc["ratios"] = summarize(doc["results"], doc["args"]["repeat"])
        print(markdown(doc))
        return
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, XDP)")
    if not 1 <= args.seconds <= 60 or not 0.5 <= args.load_seconds <= 60:
        sys.exit("--seconds must be 1..60 and --load-seconds 0.5..60")
    if args.cpu not in os.sched_getaffinity(0):
        sys.exit("--cpu %d: not a CPU this process may use" % args.cpu)
    wanted = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(wanted) - set(ALL_METHODS))
    if unknown:
        sys.exit("--methods: unknown %s (known: %s)" % (", ".join(unknown), ", ".join(ALL_METHODS)))
    loads = [float(x) for x in args.loads.split(",") if x.strip()]
    hermetic.enter_private_bpffs()   # a bpffs of its own at /sys/fs/bpf, gone with the process
    tools = build_tools()
    results = []
    attached = []
    lab = os.path.join(ROOT, "scripts", "lab", "lab.sh")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        sh("bash", lab, "up", env=LAB_ENV)
        in_ns("lb", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
              "net.ipv4.conf.front0.rp_filter=2", "net.ipv4.conf.back0.rp_filter=2",
              "net.ipv4.conf.front0.accept_local=1", "net.ipv4.conf.back0.accept_local=1")
        os.makedirs(PIN_BASE, exist_ok=True)
        backend_counters = []
        for i in range(1, 4):
            c = Counter(tools["count"], "be%d" % i, "eth0")
            attached.append(c)
            backend_counters.append(c)
        switch = Switch(tools["switch"], "sw", "lb")
        attached.append(switch)
        for i in range(1, 4):
            switch.set(link("be%d" % i, "eth0")[1], link("sw", "be%d" % i)[0])
        front0_mac = link("lb", "front0")[1]
        soft_pid = ksoftirqd(args.cpu)
        all_m = methods(tools, backend_counters, switch)
        ms = [all_m[m] for m in ALL_METHODS if m in wanted]
        for r in range(args.repeat):
            for m in (ms if r % 2 == 0 else list(reversed(ms))):
                for rate in [0] + loads:
                    res = run_once(m, tools, args, rate, args.seconds if rate == 0 else args.load_seconds,
                                   front0_mac, soft_pid)
                    res["round"] = r + 1
                    results.append(res)
                    print("round %d %-13s %-9s %9.0f pps  %6s ns/packet CPU (%.2f CPU)  sent %9.0f pps  "
                          "delivered %.4f  on cpu %.3f  load %s"
                          % (r + 1, m.name, "full" if rate == 0 else "%.0fk" % (rate / 1e3), res["pps"],
                             "%.0f" % res["ns_per_packet"] if res["ns_per_packet"] else "-", res["cpu_share"],
                             res["sent_pps"], res["delivered_share"] or 0, res["on_generator_cpu"] or 0,
                             res["loadavg"]), flush=True)
    finally:
        for a in reversed(attached):
            try:
                a.close()
            except Exception as exc:   # keep cleaning up
                print("cleanup: %s" % exc, file=sys.stderr)
        for mode in ("nat", "dsr", "redirect"):
            try:
                engine.run(xdp_config(mode, "absent"))
            except Exception:
                pass
        sh("bash", lab, "down", env=LAB_ENV, check=False)
        if os.path.isdir(PIN_BASE):
            engine.remove_pins(PIN_BASE)
    summary, ratios = summarize(results, args.repeat)
    doc = {"machine": machine(), "started": started, "revision": data_plane_revision(), "args": vars(args),
           "results": results, "summary": summary, "ratios": ratios, "loadavg_end": loadavg()}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print("\nmethod         kpps full (min-max)     CPU ns/pkt (min-max)   net ns/pkt (min-max)   "
          "per CPU vs nft  net nft/this")
    for m, s in summary.items():
        rt = ratios.get(m, {})

        def f(v):
            return "-" if v is None else "%.0f" % v
        print("%-13s %6.0f (%5.0f-%5.0f)   %6s (%s-%s)   %6s (%s-%s)   %-14s %s" % (
            m, s["pps_median"] / 1e3, s["pps_min"] / 1e3, s["pps_max"] / 1e3,
            f(s["ns_per_packet_median"]), f(s["ns_per_packet_min"]), f(s["ns_per_packet_max"]),
            f(s["net_ns_per_packet_median"]), f(s["net_ns_per_packet_min"]), f(s["net_ns_per_packet_max"]),
            rt.get("pps_per_cpu_vs_nft", "-"), rt.get("net_cpu_nft_over_this", "-")))
        for load, v in sorted(s["loads"].items(), key=lambda kv: float(kv[0])):
            print("    offered %7s pps: sent %9.0f pps, delivered %.4f (min %.4f)" % (
                load, v["sent_pps_median"], v["delivered_share_median"], v["delivered_share_min"]))
    print("\n" + markdown(doc))
    print("results: %s" % args.json)


if __name__ == "__main__":
    main()
