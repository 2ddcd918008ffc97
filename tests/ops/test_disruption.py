"""Minimal disruption: how many flows change backend when one backend leaves or joins.

The real data plane decides: the compiled program runs 10,000 synthetic TCP
flows (source address and port varied) through BPF_PROG_TEST_RUN in a
private namespace (tests/dataplane/dplab.py's Lab, under this suite's
``xlbo-`` prefix), and the backend of each flow is read from the rewritten
destination address.  The maps are written by the control plane's own code
(model.validate -> maps.assign_ids/desired_tables/plan/apply), so rings,
ids and the double-buffered slot flip are what a playbook run writes.

Per scheduler (maglev, and five_tuple for contrast):

* remove 1 of N, conntrack kept: flows of other backends must not move at
  all (their lb_ct entries hold them); the removed backend's flows move;
* remove 1 of N, conntrack cleared (every flow is new): Maglev moves at
  most 1/N + 2 points, and flows of other backends at most 2 points;
* add 1 to N, conntrack cleared: Maglev moves at most 1/(N+1) + 2 points,
  and moved flows go to the new backend (others at most 2 points).

The table is printed and written to build/ops/zero-loss/disruption.txt.
"""
import os
import random
import shutil
import socket
import sys
import tempfile

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout, maps, model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "dataplane"))

import dplab as L  # noqa: E402  (tests/dataplane helpers)
from dpframes import client_frame  # noqa: E402

OUT = os.path.join(ROOT, "build", "ops", "zero-loss")
FLOWS = 10000
MARGIN = 0.02
N = 5
BACKENDS = ["198.18.1.%d" % (10 + i) for i in range(N + 1)]   # the last one joins later
REMOVED = BACKENDS[2]
ADDED = BACKENDS[N]
PORT = 80


@pytest.fixture(scope="module")
def dp():
    if os.geteuid() != 0:
        pytest.skip("loads BPF programs and creates a namespace: run as root")
    build_dir = tempfile.mkdtemp(prefix="xlbo-dp-")
    lab = L.Lab()
    # this suite's prefix for the namespace and the bpffs mount (Lab's are xlbdp-)
    lab.ns = "xlbo-dp%d" % os.getpid()
    lab.pin_root = "/sys/fs/bpf/xlbo-dp%d" % os.getpid()
    try:
        obj = build.compile_object(L.FILES, build_dir, {})[0]
        lab.start(obj)
        yield lab
    finally:
        try:
            lab.stop()
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)


def flows():
    """FLOWS distinct (client address, source port), fixed seed."""
    rng = random.Random(6)
    seen = set()
    while len(seen) < FLOWS:
        seen.add(("198.18.%d.%d" % (rng.randint(64, 127), rng.randint(1, 254)), rng.randint(1024, 65535)))
    return sorted(seen)


def configure(lab, scheduler, backends):
    """Write the service as the module would: validate, ids, desired tables, plan, apply."""
    cfg = model.validate({
        "name": "xlbo-dp", "interfaces": ["xlbdp0", "xlbdp1"], "mode": "nat",
        "nat_source_ipv4": L.SNAT4, "nat_port_min": 10000, "nat_port_max": 65000,
        "pin_dir": lab.pin_root, "state_dir": "/nonexistent",
        "services": [{"vip": L.VIP4, "port": PORT, "protocol": "tcp", "scheduler": scheduler,
                      "backends": [{"address": a} for a in backends]}]})
    ms = maps.MapSet(lab.pin_root)
    try:
        live = maps.read_tables(ms, cfg.ring_size, cfg.max_backends)
        sids, bids = maps.assign_ids(cfg.services, live, None, cfg.max_services, cfg.max_backends)
        want = maps.desired_tables(cfg, sids, bids, live, L.SNAT4, None, [])
        maps.apply(ms, maps.plan(live, want, cfg.ring_size))
    finally:
        ms.close()


def clear_conntrack(lab):
    for name in ("lb_ct", "lb_nat_rev"):
        m = lab.maps[name]
        for key in m.keys():
            m.delete(key)


def run_all(lab, frames):
    """Backend address of every flow, as the program rewrote the destination."""
    out = []
    for raw in frames:
        action, data = lab.run(raw)
        assert action in (L.XDP_TX, L.XDP_REDIRECT, L.XDP_PASS), L.ACTIONS.get(action, action)
        out.append(socket.inet_ntoa(data[30:34]))   # Ethernet 14 + IPv4 destination at 16
    return out


def compare(before, after, changed_backend, kind):
    """(moved fraction, collateral fraction): collateral = moved flows that did not have to.

    kind 'remove': flows on changed_backend must move; 'add': moving to it is allowed."""
    moved = [i for i in range(len(before)) if before[i] != after[i]]
    if kind == "remove":
        collateral = [i for i in moved if before[i] != changed_backend]
    else:
        collateral = [i for i in moved if after[i] != changed_backend]
    return len(moved) / float(len(before)), len(collateral) / float(len(before))


@pytest.mark.parametrize("scheduler", ["maglev", "five_tuple"])
def test_remap_on_backend_change(dp, scheduler):
    lab = dp
    lab.reset()
    frames = [client_frame(src, L.VIP4, "tcp", sport, PORT) for src, sport in flows()]
    base = BACKENDS[:N]
    smaller = [a for a in base if a != REMOVED]
    rows = []

    configure(lab, scheduler, base)
    a = run_all(lab, frames)
    assert set(a) == set(base)
    share = a.count(REMOVED) / float(FLOWS)

    # remove, conntrack kept (what running traffic sees)
    configure(lab, scheduler, smaller)
    b_ct = run_all(lab, frames)
    assert set(b_ct) == set(smaller)
    moved, coll = compare(a, b_ct, REMOVED, "remove")
    rows.append(("remove 1 of %d, conntrack kept" % N, moved, share, coll, None))
    assert coll == 0.0, "flows of other backends moved although conntrack holds them"
    assert moved == share

    # remove, every flow new
    clear_conntrack(lab)
    b = run_all(lab, frames)
    moved, coll = compare(a, b, REMOVED, "remove")
    bound = 1.0 / N + MARGIN
    rows.append(("remove 1 of %d, new flows" % N, moved, share, coll, bound))
    remove_fresh = (moved, coll)

    # add one to the original N, every flow new
    configure(lab, scheduler, base)
    clear_conntrack(lab)
    a2 = run_all(lab, frames)
    assert a2 == a, "the same backends must give the same mapping (rings are deterministic)"
    configure(lab, scheduler, base + [ADDED])
    clear_conntrack(lab)
    c = run_all(lab, frames)
    moved_add, coll_add = compare(a, c, ADDED, "add")
    add_bound = 1.0 / (N + 1) + MARGIN
    rows.append(("add 1 to %d, new flows" % N, moved_add, c.count(ADDED) / float(FLOWS), coll_add, add_bound))

    _report(scheduler, rows)
    if scheduler == "maglev":
        assert remove_fresh[0] <= bound, rows
        assert remove_fresh[1] <= MARGIN, rows
        assert moved_add <= add_bound, rows
        assert coll_add <= MARGIN, rows
    else:
        # the contrast: a plain weighted table moves most flows
        assert remove_fresh[0] > 0.5 and moved_add > 0.5, rows


def _report(scheduler, rows):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "disruption.txt")
    lines = []
    if not os.path.exists(path) or scheduler == "maglev":
        lines.append("%-11s %-32s %7s %8s %8s %11s %8s" % (
            "scheduler", "change (%d flows)" % FLOWS, "moved", "share", "bound", "collateral", "ring"))
    for what, moved, share, coll, bound in rows:
        lines.append("%-11s %-32s %6.2f%% %7.2f%% %8s %10.2f%% %8d" % (
            scheduler, what, 100 * moved, 100 * share, "%.2f%%" % (100 * bound) if bound else "-", 100 * coll,
            layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]))
    text = "\n".join(lines)
    print("\n" + text)
    with open(path, "w" if scheduler == "maglev" else "a") as f:
        f.write(text + "\n")
