"""Nanoseconds per packet of the data plane's paths, next to a MAC-swap XDP_TX.

    make bench-dataplane        # = .venv/bin/python benchmarks/dataplane/run.py

Runs as root in its own namespace (tests/dataplane/dplab.py, tag "bench-<pid>")
with BPF_PROG_TEST_RUN; nothing is attached to a device.  Three numbers per
path:

loop
    A Python loop of repeat=1 test runs, minus the same loop over an
    XDP_DROP program (benchmarks/dataplane/xdp_drop.c): the program's own
    time, with the syscall and Python overhead taken out.  Median over
    rounds; every run gets a fresh copy of the frame, so each path is the
    path named.
kernel/1
    The kernel's own timer for those same repeat=1 runs (median), which
    includes the timer's overhead (about the XDP_DROP figure).
kernel/N
    Test runs with repeat=N, 7 per path (min and median), in 7 rounds
    that take every path once (so a change of background load hits all
    rows alike).  The kernel reuses the buffer, so from the
    second iteration on the program sees its own output.  That is the path
    named where the output is again such a packet (redirect, dsr, mac swap)
    and for the nat hit and reply paths, which run two map entries that
    translate into each other; "nat, new flow" is a new flow once, then a
    "not a service" pass.

The "no caches" row is the same source built with -DXDP_LB_NH_TTL_MS=0
(every packet calls bpf_fib_lookup; up to ABI 5 this also turned the
service cache off, so the hit looked lb_services up too; since ABI 6 the
hit compares the packet with its backend's service key either way),
loaded next to the default build on the same maps.

The "baseline" rows are the data plane of another revision (--baseline,
default main: `git show REV:files/...`), built with the same defines and
loaded next to this one on maps of its own (a second pin directory on the
same bpffs; its structs are a prefix of this checkout's, so the same
writers fill them), measured in the same rounds: before/after of a change
in one interleaved run.
"""
import argparse
import ctypes as ct
import os
import subprocess
import platform
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.join(ROOT, "tests", "dataplane"))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (  # noqa: E402
    bpf, build, layout)
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run  # noqa: E402

import common  # noqa: E402
import dplab as L  # noqa: E402
import hermetic  # noqa: E402
from dpframes import client_frame, frame  # noqa: E402

FLOWS = 1024            # established flows cycled through by the "hit" paths
PAYLOAD = b"x" * 10     # 64-byte IPv4/TCP frames


def compile_tiny(name, build_dir):
    """The comparison programs: same compiler and flags as build.py."""
    out = os.path.join(build_dir, name + ".o")
    run(["clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-I", L.FILES] +
        ["-I%s" % d for d in build.system_include_dirs()] +
        ["-c", os.path.join(HERE, name + ".c"), "-o", out])
    return out


# ---- scenarios: set the maps up, return (frames, ingress device) -------------------
def _nat(lab, backends=4):
    lab.configure(layout.MODE_NAT, port_min=1024, port_max=65535)
    vip, dummy = L.setup_service(lab, 4, "tcp", port=80, backends=L.BACKENDS4[:backends])
    return vip


_FLOW_CACHE = {}


def _flows(vip, count, base_port=10000):
    """``count`` distinct client flows to vip:80 (built once: scapy is slow)."""
    key = (vip, count, base_port)
    if key not in _FLOW_CACHE:
        _FLOW_CACHE[key] = _build_flows(vip, count, base_port)
    return _FLOW_CACHE[key]


def _build_flows(vip, count, base_port):
    clients = ["198.18.0.%d" % h for h in range(10, 18)]
    return [client_frame(clients[i % len(clients)], vip, "tcp", base_port + i // len(clients), 80,
                         payload=PAYLOAD) for i in range(count)]


def scen_redirect(lab, packets):
    lab.configure(layout.MODE_REDIRECT, redirect_algo=layout.REDIRECT_ALGOS["round_robin"],
                  redirect_count=2)
    lab.set_tx_port(0, "xlbdp1p")
    lab.set_tx_port(1, "xlbdp2p")
    return _cycle(_flows(L.VIP4, FLOWS), packets), "xlbdp0"


def scen_nat_new(lab, packets):
    vip = _nat(lab)
    return _flows(vip, packets), "xlbdp0"          # every frame a new flow


NON_VIP = "198.18.0.99"      # an address of the balancer's network that is no VIP


def scen_nat_pass(lab, packets):
    """Packets to an address that is no VIP, on a nat balancer with a service:
    what most of a balancer host's other traffic costs."""
    _nat(lab)
    return _flows(NON_VIP, packets), "xlbdp0"       # distinct flows, every one a pass


def scen_nat_hit(lab, packets):
    vip = _nat(lab)
    flows = _flows(vip, FLOWS)
    for f in flows:
        assert lab.run(f)[0] == L.XDP_REDIRECT
    return _cycle(flows, packets), "xlbdp0"


def scen_nat_hit_distinct(lab, packets):
    """As scen_nat_hit, every packet of another established flow (as many
    flows as packets): the conntrack entries are not in the CPU's caches,
    as on a balancer with many flows (and in issue 18's reference
    measurement, 10,000 established flows)."""
    return _established_distinct(lab, _nat(lab), packets)


def _established_distinct(lab, vip, packets):
    flows = _flows(vip, packets)
    # Established through the fast loop, within milliseconds: with
    # lab.run's pace (~30 us a packet) a third of the flows would reach
    # their measured packet after the clock crossed a second, and pay the
    # once-a-second lb_ct4 refresh of the conntrack cache on it.
    buffers, _keep = buffers_of(flows)
    dummy, dummy, actions = Runner(lab.ifindex["xlbdp0"], max(len(f) for f in flows)).loop(
        lab.prog_fd, buffers)
    assert actions == {L.XDP_REDIRECT}, actions
    # Measured in another order than they were established: a table that
    # hands out its entries in order (lb_ct4's preallocated LRU elements)
    # would otherwise be read sequentially, which real traffic never does.
    flows = list(flows)
    random.Random(18).shuffle(flows)
    return flows, "xlbdp0"


def scen_nat_reply(lab, packets):
    vip = _nat(lab)
    replies = []
    for f in _flows(vip, FLOWS):
        action, out = lab.run(f)
        assert action == L.XDP_REDIRECT
        be, nat_port = _addr4(out[30:34]), int.from_bytes(out[34:36], "big")
        replies.append(frame(be, L.SNAT4, "tcp", 80, nat_port, smac=L.NEIGH[be][1],
                             dmac=L.MAC["xlbdp1"], payload=PAYLOAD))
    return _cycle(replies, packets), "xlbdp1"


def _dsr(lab):
    lab.configure(layout.MODE_DSR)
    vip, dummy = L.setup_service(lab, 4, "tcp", port=80, backends=L.BACKENDS4[:4])
    return vip


def scen_dsr_hit(lab, packets):
    flows = _flows(_dsr(lab), FLOWS)
    for f in flows:
        assert lab.run(f)[0] == L.XDP_REDIRECT
    return _cycle(flows, packets), "xlbdp0"


def scen_dsr_hit_distinct(lab, packets):
    """As scen_nat_hit_distinct, in dsr mode."""
    return _established_distinct(lab, _dsr(lab), packets)


def scen_dsr_new(lab, packets):
    """dsr's new flow: no NAT port and no reply state, only the conntrack
    entry (an encapsulating balancer such as Katran writes the same)."""
    return _flows(_dsr(lab), packets), "xlbdp0"          # every frame a new flow


def scen_plain(lab, packets):
    return _cycle(_flows(L.VIP4, FLOWS), packets), "xlbdp0"


def _cycle(frames, count):
    return [frames[i % len(frames)] for i in range(count)]


def _addr4(raw):
    return ".".join(str(b) for b in raw)


# ---- kernel repeat: frames whose output is again the same path ---------------------
def cycle_nat_hit(lab):
    """Two conntrack entries that translate into each other: A -> B -> A ...

    Flow A (snat:p1 -> V1:80) goes to backend V2 as snat:p2 -> V2:80, which
    is flow B, whose backend is V1 with port p1: every repeat is a genuine
    conntrack hit (V1, V2 are neighbours on xlbdp1)."""
    lab.configure(layout.MODE_NAT, port_min=1024, port_max=65535)
    v1, v2 = L.BACKENDS4[0], L.BACKENDS4[1]
    lab.set_backend(1, v2, 0)
    lab.set_backend(2, v1, 1)
    lab.add_service(v1, 80, "tcp", 0)
    lab.fill_ring(0, [1])
    lab.add_service(v2, 80, "tcp", 1)
    lab.fill_ring(1, [2])
    p1, p2 = 20001, 20002
    for src_port, vip, bid, nat_port in ((p1, v1, 1, p2), (p2, v2, 2, p1)):
        lab.maps["lb_ct"].update(L.flow_key(L.SNAT4, vip, src_port, 80, "tcp"),
                                 layout.LbCtEntry(backend_id=bid, nat_port=layout.htons(nat_port)))
    return frame(L.SNAT4, v1, "tcp", p1, 80, smac="02:00:00:00:00:10", dmac=L.MAC["xlbdp0"],
                 payload=PAYLOAD)


def cycle_nat_reply(lab):
    """Two reply entries that translate into each other.  The NAT address is
    a neighbour here (198.18.1.12), so the translated reply, addressed to
    it, is itself a reply with a resolvable next hop."""
    snat = L.BACKENDS4[2]
    cfg = lab.configure(layout.MODE_NAT, port_min=1024, port_max=65535)
    cfg.snat_v4 = layout.pack_addr(snat)[0][0]
    lab.maps["lb_config"].update(layout.U32(0), cfg)
    x, y = L.BACKENDS4[0], L.BACKENDS4[1]
    a, b, c, d = 8080, 30001, 80, 30002
    for src, sport, dport, client_port, vip, vip_port in ((x, a, b, d, y, c), (y, c, d, b, x, a)):
        lab.maps["lb_nat_rev"].update(
            L.flow_key(src, snat, sport, dport, "tcp"),
            layout.LbNatEntry(client=layout.pack_addr(snat)[0], vip=layout.pack_addr(vip)[0],
                              client_port=layout.htons(client_port),
                              vip_port=layout.htons(vip_port), backend_id=1))
    return frame(x, snat, "tcp", a, b, smac="02:00:00:00:01:10", dmac=L.MAC["xlbdp0"],
                 payload=PAYLOAD)


# label: (program, scenario, expected action, repeat=N frame (None: the first
#         frame of the scenario), what repeat=N runs)
SCENARIOS = [
    ("XDP_DROP (loop baseline)", "drop", scen_plain, L.XDP_DROP, None, "same"),
    ("MAC swap + XDP_TX (reference)", "macswap", scen_plain, L.XDP_TX, None, "same"),
    ("redirect, round robin", "lb", scen_redirect, L.XDP_REDIRECT, None, "same"),
    ("nat, new flow", "lb", scen_nat_new, L.XDP_REDIRECT, None,
     "1st run: new flow, then its own output: a pass (not a service)"),
    ("nat, non-service pass", "lb", scen_nat_pass, L.XDP_PASS, None,
     "same (a packet to an address that is no VIP)"),
    ("nat, conntrack hit", "lb", scen_nat_hit, L.XDP_REDIRECT, cycle_nat_hit,
     "conntrack hits (two flows translating into each other)"),
    ("nat, conntrack hit, distinct flows", "lb", scen_nat_hit_distinct, L.XDP_REDIRECT, cycle_nat_hit,
     "as \"nat, conntrack hit\" (the same two flows)"),
    ("nat, conntrack hit, no caches", "lb_nocache", scen_nat_hit, L.XDP_REDIRECT,
     cycle_nat_hit, "same, built with XDP_LB_NH_TTL_MS=0: bpf_fib_lookup every time"),
    ("nat, reply (reverse)", "lb", scen_nat_reply, L.XDP_REDIRECT, cycle_nat_reply,
     "replies (two reply entries translating into each other)"),
    ("dsr, conntrack hit", "lb", scen_dsr_hit, L.XDP_REDIRECT, None,
     "same (dsr keeps the addresses)"),
    ("dsr, conntrack hit, distinct flows", "lb", scen_dsr_hit_distinct, L.XDP_REDIRECT, None,
     "as \"dsr, conntrack hit\" (the first flow)"),
    ("dsr, new flow", "lb", scen_dsr_new, L.XDP_REDIRECT, None,
     "1st run: new flow, then its own output: a hit"),
    ("nat, new flow, baseline", "baseline", scen_nat_new, L.XDP_REDIRECT, None,
     "as \"nat, new flow\", the --baseline revision's data plane"),
    ("nat, non-service pass, baseline", "baseline", scen_nat_pass, L.XDP_PASS, None,
     "as \"nat, non-service pass\", the --baseline revision's data plane"),
    ("nat, conntrack hit, baseline", "baseline", scen_nat_hit, L.XDP_REDIRECT, cycle_nat_hit,
     "as \"nat, conntrack hit\", the --baseline revision's data plane"),
    ("nat, conntrack hit, distinct flows, baseline", "baseline", scen_nat_hit_distinct, L.XDP_REDIRECT,
     cycle_nat_hit, "as \"nat, conntrack hit, distinct flows\", the --baseline revision's data plane"),
    ("nat, reply (reverse), baseline", "baseline", scen_nat_reply, L.XDP_REDIRECT, cycle_nat_reply,
     "as \"nat, reply (reverse)\", the --baseline revision's data plane"),
    ("dsr, conntrack hit, baseline", "baseline", scen_dsr_hit, L.XDP_REDIRECT, None,
     "as \"dsr, conntrack hit\", the --baseline revision's data plane"),
    ("dsr, conntrack hit, distinct flows, baseline", "baseline", scen_dsr_hit_distinct,
     L.XDP_REDIRECT, None,
     "as \"dsr, conntrack hit, distinct flows\", the --baseline revision's data plane"),
    ("dsr, new flow, baseline", "baseline", scen_dsr_new, L.XDP_REDIRECT, None,
     "as \"dsr, new flow\", the --baseline revision's data plane"),
]


def baseline_sources(rev, dest):
    """files/xdp_loadbalancer.c and xdp_lb.h of git revision ``rev`` into ``dest``."""
    os.makedirs(dest)
    for name in (build.SOURCE, build.HEADER):
        data = subprocess.run(["git", "-C", ROOT, "show", "%s:files/%s" % (rev, name)],
                              capture_output=True, check=True).stdout
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)
    return dest


def baseline_lab(lab, obj_path):
    """A Lab view of the baseline program: same namespace, maps pinned in a
    directory of their own under the lab's bpffs.  A baseline from before
    ABI 4 has one connection table for both families (lb_ct, lb_nat_rev)
    and no lb_vip_filter: dplab.Lab.load opens what the object has."""
    base = L.Lab(lab.tag + "-baseline")
    base.pin_root = os.path.join(lab.pin_root, "baseline")
    base.ifindex = lab.ifindex
    os.makedirs(base.pin_root)
    base.load(obj_path)
    return base


def drop_baseline(base):
    if base is None:
        return
    base.close_maps()
    if base.obj:
        base.obj.close()
        base.obj = None
    for name in os.listdir(base.pin_root):
        os.unlink(os.path.join(base.pin_root, name))
    os.rmdir(base.pin_root)


class Runner:
    """repeat=1 test runs with the buffers made once: bpf.test_run's own
    allocations would add microseconds of noise to every call.  Same
    structures as bpf.test_run (BPF_PROG_TEST_RUN through libbpf)."""

    def __init__(self, ifindex, frame_len):
        self.lib = bpf._libbpf()
        self.out = ct.create_string_buffer(frame_len + 4096)
        self.ctx = bpf.XdpMd(data=0, data_end=frame_len, ingress_ifindex=ifindex)
        self.opts = bpf._TestRunOpts(sz=ct.sizeof(bpf._TestRunOpts), repeat=1,
                                     data_out=ct.cast(self.out, ct.c_void_p),
                                     ctx_in=ct.cast(ct.byref(self.ctx), ct.c_void_p),
                                     ctx_size_in=ct.sizeof(self.ctx))

    def loop(self, prog_fd, buffers):
        """(elapsed ns, [kernel ns per run], {actions}) of one run per buffer."""
        lib, opts, out_len = self.lib, self.opts, ct.sizeof(self.out)
        ref = ct.byref(opts)
        durations, actions = [], set()
        start = time.perf_counter_ns()
        for buf, size in buffers:
            opts.data_in = buf
            opts.data_size_in = size
            opts.data_size_out = out_len
            if lib.bpf_prog_test_run_opts(prog_fd, ref) < 0:
                raise SystemExit("BPF_PROG_TEST_RUN failed")
            durations.append(opts.duration)
            actions.add(opts.retval)
        return time.perf_counter_ns() - start, durations, actions


def buffers_of(frames):
    keep = [ct.create_string_buffer(f, len(f)) for f in frames]
    return [(ct.cast(b, ct.c_void_p), ct.sizeof(b)) for b in keep], keep


def measure(runner, prog_fd, drop_fd, frames, expect, chunk=500):
    """Python-loop ns/packet over XDP_DROP's, and the kernel's repeat=1 timer.

    The two programs alternate in chunks (and in which goes first), so both
    see the same background load; the result is the median of the
    per-chunk differences."""
    buffers, _keep = buffers_of(frames)
    diffs, kernel = [], []
    for n, i in enumerate(range(0, len(buffers), chunk)):
        part = buffers[i:i + chunk]
        if n % 2:       # alternate which program goes first
            elapsed, durations, actions = runner.loop(prog_fd, part)
            base, dummy, dummy = runner.loop(drop_fd, part)
        else:
            base, dummy, dummy = runner.loop(drop_fd, part)
            elapsed, durations, actions = runner.loop(prog_fd, part)
        if actions != {expect}:
            raise SystemExit("benchmark path broken: actions %s, expected %s"
                             % (sorted(L.ACTIONS[a] for a in actions), L.ACTIONS[expect]))
        diffs.append((elapsed - base) / len(part))
        kernel.extend(durations)
    return statistics.median(diffs), statistics.median(kernel)


BASELINE = ["main"]


def round_order(r):
    """SCENARIOS in the order of round ``r``: each row next to its baseline
    row, the two alternating which goes first.  With all of this checkout's
    rows first, then all of the baseline's, identical programs measured
    1.14-1.22x apart on "nat, conntrack hit" (the A/A run in
    docs/benchmarks.md, issue 18's fourth round)."""
    by = {s[0]: s for s in SCENARIOS}
    out = []
    for s in SCENARIOS:
        if s[0].endswith(", baseline"):
            continue
        base = by.get(s[0] + ", baseline")
        pair = [s, base] if base else [s]
        out.extend(pair if r % 2 == 0 else pair[::-1])
    return out


def _git(*argv):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(argv), capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine_info():
    cpu = common.cpu_model()
    with open("/proc/sys/net/core/bpf_jit_enable") as f:
        jit = f.read().strip()
    return [
        ("date", common.utc_date()),
        ("cpu", "%s, %d CPUs (benchmark pinned to one)" % (cpu, os.cpu_count())),
        ("kernel", platform.release()),
        ("bpf_jit_enable", jit),
        ("compiler", build.compiler_version()),
        ("this checkout", _git("describe", "--always", "--dirty")),
        ("baseline", "%s = %s" % (BASELINE[0], _git("rev-parse", "--short", BASELINE[0]))),
        ("python", platform.python_version()),
        ("load average (1, 5, 15 min) at the end", "%.2f %.2f %.2f" % os.getloadavg()),
    ]


REPEAT_ROUNDS = 7


def repeat_once(lab, prog_fd, scen, cycle_fn, expect, label, repeat):
    """(action, ns per run) of one kernel-repeat run of a path, on fresh maps."""
    lab.reset()
    if cycle_fn:
        first, dev = cycle_fn(lab), "xlbdp0"
    else:
        frames, dev = scen(lab, 1)
        first = frames[0]
    if bpf.test_run(prog_fd, first, ingress_ifindex=lab.ifindex[dev])[0] != expect:
        raise SystemExit("%s: repeat frame takes another path" % label)
    action, dummy, duration = bpf.test_run(prog_fd, first, ingress_ifindex=lab.ifindex[dev],
                                           repeat=repeat)
    return action, duration


def kernel_repeat(lab, prog_fd, frame_, dev, repeat, times=REPEAT_ROUNDS):
    """(min, median) of ``times`` runs with the kernel's repeat."""
    runs = [bpf.test_run(prog_fd, frame_, ingress_ifindex=lab.ifindex[dev], repeat=repeat)
            for dummy in range(times)]
    if len({r[0] for r in runs}) != 1:
        raise SystemExit("repeat run changed its action")
    durations = [r[2] for r in runs]
    return min(durations), statistics.median(durations)


PARTS = [
    ("parts_fib", "bpf_fib_lookup, IPv4, resolved neighbour"),
    ("parts_service", "HASH lookup hit, lb_service_key (20 B key)"),
    ("parts_ct", "LRU_HASH lookup hit, lb_flow (40 B key)"),
    ("parts_jiffies", "bpf_jiffies64() (next-hop cache clock candidate)"),
    ("parts_coarse_ns", "bpf_ktime_get_coarse_ns() (next-hop cache clock)"),
    ("parts_ktime_ns", "bpf_ktime_get_ns() (for comparison)"),
]


def measure_parts(lab, build_dir, repeat):
    """[(what, min, median)] of the single steps (xdp_parts.c), kernel repeat."""
    path = compile_tiny("xdp_parts", build_dir)
    out = []
    for prog, what in PARTS:
        with bpf.LoadedObject(path, prog_name=prog) as obj:
            svc = layout.LbServiceKey()
            svc.vip[0] = 1
            bpf.Map(obj.map_fd("parts_services"), layout.LbServiceKey, layout.LbService,
                    owned=False).update(svc, layout.LbService())
            flow = layout.LbFlow()
            flow.src[0] = 1
            bpf.Map(obj.map_fd("parts_flows"), layout.LbFlow, layout.LbCtEntry,
                    owned=False).update(flow, layout.LbCtEntry())
            frame_ = scen_plain(lab, 1)[0][0]
            if bpf.test_run(obj.prog_fd, frame_, ingress_ifindex=lab.ifindex["xlbdp0"])[0] \
                    != L.XDP_TX:
                raise SystemExit("%s: the step did not succeed" % prog)
            out.append((what,) + kernel_repeat(lab, obj.prog_fd, frame_, "xlbdp0", repeat))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--packets", type=int, default=20000, help="repeat=1 runs per round and path")
    ap.add_argument("--repeat", type=int, default=1000000, help="kernel repeat count")
    ap.add_argument("--baseline", default="main",
                    help="git revision whose data plane the baseline rows run (default main)")
    ap.add_argument("--only", default="",
                    help="comma-separated words: measure only the rows whose label has one "
                         "(plus those the report needs: XDP_DROP, MAC swap, the conntrack hits)")
    args = ap.parse_args()
    if args.only:
        words = args.only.split(",")
        keep = ("XDP_DROP", "MAC swap", "nat, conntrack hit", "nat, conntrack hit, baseline")
        SCENARIOS[:] = [s for s in SCENARIOS if s[0].startswith(keep[:2]) or s[0] in keep[2:]
                        or any(w in s[0] for w in words)]
    BASELINE[0] = args.baseline
    if os.geteuid() != 0:
        raise SystemExit("run as root (loads BPF programs, creates a namespace)")
    hermetic.enter_private_bpffs()   # a bpffs of its own at /sys/fs/bpf, gone with the process

    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(cpus)})
    build_dir = tempfile.mkdtemp(prefix="xlbdp-bench-")
    lab = L.Lab("bench-%d" % os.getpid())
    tiny = []
    base = None
    try:
        obj = build.compile_object(L.FILES, build_dir, build.host_defines())[0]
        lab.start(obj)
        tiny = [bpf.LoadedObject(compile_tiny("xdp_" + name, build_dir), prog_name="xdp_" + name)
                for name in ("drop", "macswap")]
        tiny.append(bpf.LoadedObject(build.compile_object(L.FILES, build_dir, dict(build.host_defines(), XDP_LB_NH_TTL_MS=0))[0],
                                     lab.pin_root))
        base_obj = build.compile_object(baseline_sources(args.baseline, os.path.join(build_dir, "baseline")),
                                        build_dir, build.host_defines())[0]
        base = baseline_lab(lab, base_obj)
        progs = {"lb": lab.prog_fd, "drop": tiny[0].prog_fd, "macswap": tiny[1].prog_fd,
                 "lb_nocache": tiny[2].prog_fd, "baseline": base.prog_fd}
        labs = {"baseline": base}

        loops = {label: [] for label, *dummy in SCENARIOS}
        for r in range(args.rounds):
            for label, prog, scen, expect, _cycle_fn, _meaning in round_order(r):
                on = labs.get(prog, lab)
                on.reset()
                frames, dev = scen(on, args.packets)
                runner = Runner(lab.ifindex[dev], max(len(f) for f in frames))
                loops[label].append(measure(runner, progs[prog], progs["drop"], frames, expect))

        # Kernel repeat: REPEAT_ROUNDS rounds, every path once per round, so
        # that a change of background load hits all rows alike.
        repeats = {label: [] for label, *dummy in SCENARIOS}
        for r in range(REPEAT_ROUNDS):
            for label, prog, scen, expect, cycle_fn, meaning in round_order(r):
                repeats[label].append(repeat_once(labs.get(prog, lab), progs[prog], scen, cycle_fn,
                                                  expect, label, args.repeat))
        rows = []
        for label, prog, scen, expect, cycle_fn, meaning in SCENARIOS:
            if len({action for action, dummy in repeats[label]}) != 1:
                raise SystemExit("%s: repeat run changed its action" % label)
            durations = [ns for dummy, ns in repeats[label]]
            rows.append((label, statistics.median(x[0] for x in loops[label]),
                         statistics.median(x[1] for x in loops[label]), min(durations),
                         statistics.median(durations), meaning))
        parts = measure_parts(lab, build_dir, args.repeat)
    finally:
        for t in tiny:
            t.close()
        drop_baseline(base)
        lab.stop()
        run(["rm", "-rf", build_dir], check=False)

    print_report(rows, parts, args)


def print_report(rows, parts, args):
    print("Command: `make bench-dataplane` (= `.venv/bin/python benchmarks/dataplane/run.py "
          "--rounds %d --packets %d --repeat %d --baseline %s`)\n"
          % (args.rounds, args.packets, args.repeat, args.baseline))
    for key, value in machine_info():
        print("- %s: %s" % (key, value))
    print()
    print("| path | loop, repeat=1, minus XDP_DROP (ns) | kernel timer, repeat=1 (ns) "
          "| repeat=%d min / median (ns) | what repeat=%d runs |" % (args.repeat, args.repeat))
    print("|---|---:|---:|---:|---|")
    for label, lp, k1, kn_min, kn_med, meaning in rows:
        print("| %s | %.0f | %.0f | %d / %d | %s |" % (label, lp, k1, kn_min, kn_med, meaning))
    print()
    print("Single steps of the conntrack-hit path (benchmarks/dataplane/xdp_parts.c), "
          "repeat=%d, XDP_DROP's time included:\n" % args.repeat)
    print("| step | min / median (ns) |")
    print("|---|---:|")
    for what, kn_min, kn_med in parts:
        print("| %s | %d / %d |" % (what, kn_min, kn_med))
    by = {r[0]: r for r in rows}
    hit, swap = by["nat, conntrack hit"], by["MAC swap + XDP_TX (reference)"]
    print()
    print("Targets of issue 18 (ratios within this run; loop = the cold loop, kernel/1 = the "
          "kernel's timer of the same repeat=1 runs):\n")
    base_hit = by["nat, conntrack hit, baseline"]
    distinct, base_distinct = (by.get("nat, conntrack hit, distinct flows" + s) for s in ("", ", baseline"))
    for what, num, den, target in (
            ("non-service pass / conntrack hit", "nat, non-service pass", hit, 0.25),
            ("new flow / conntrack hit", "nat, new flow", hit, 1.7),
            ("new flow / conntrack hit, distinct flows", "nat, new flow", distinct, 1.7),
            ("dsr: new flow / conntrack hit, distinct flows", "dsr, new flow",
             by.get("dsr, conntrack hit, distinct flows"), None),
            ("conntrack hit / baseline's conntrack hit", "nat, conntrack hit", base_hit, 0.7),
            ("conntrack hit, distinct flows / baseline's", "nat, conntrack hit, distinct flows",
             base_distinct, 0.7),
            ("baseline: non-service pass / conntrack hit", "nat, non-service pass, baseline",
             base_hit, None),
            ("baseline: new flow / conntrack hit", "nat, new flow, baseline", base_hit, None)):
        if num not in by or den is None:       # not measured (--only)
            continue
        num = by[num]
        ratios = ["%s %.2f" % (col, num[idx] / den[idx]) for col, idx in (("loop", 1), ("kernel/1", 2))]
        verdict = "" if target is None else ": target <= %.2f %s" % (
            target, "met" if num[1] / den[1] <= target else "NOT met")
        print("- %s: %s%s" % (what, ", ".join(ratios), verdict))
    print()
    for name, idx in (("loop, repeat=1", 1), ("kernel timer, repeat=1", 2),
                      ("repeat, min", 3), ("repeat, median", 4)):
        gap = hit[idx] - swap[idx]
        print("- nat conntrack hit minus MAC swap (%s): %.0f ns: target <= 100 ns %s"
              % (name, gap, "met" if gap <= 100 else "NOT met"))


if __name__ == "__main__":
    main()
