"""Scheduling: conntrack, drain (weight 0), removed backends, ip_hash, five_tuple."""
import collections

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import client_frame

SIZE = layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
DST_MAC = {4: {L.NEIGH[a][1]: a for a in L.BACKENDS4},
           6: {L.NEIGH[a][1]: a for a in L.BACKENDS6}}


def _backend_of(lab, client, vip, sport, proto="tcp", port=80):
    """Send one packet of the flow; return the backend address it went to."""
    action, out = lab.run(client_frame(client, vip, proto, sport, port))
    assert action == L.XDP_REDIRECT, "action %s" % L.ACTIONS[action]
    return DST_MAC[6 if ":" in client else 4][":".join("%02x" % b for b in out[0:6])]


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
def test_conntrack_keeps_flow_when_ring_changes(lab, mode):
    lab.configure(mode)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4[:2])
    lab.fill_ring(0, [ids[0]])
    assert _backend_of(lab, L.CLIENT4, vip, 50000) == L.BACKENDS4[0]
    lab.fill_ring(0, [ids[1]])
    for dummy in range(3):
        assert _backend_of(lab, L.CLIENT4, vip, 50000) == L.BACKENDS4[0]
    assert _backend_of(lab, L.CLIENT4, vip, 50001) == L.BACKENDS4[1]


def test_drain_keeps_existing_flows_and_avoids_new_ones(lab):
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4[:2])
    on_first = [p for p in range(51000, 51100)
                if _backend_of(lab, L.CLIENT4, vip, p) == L.BACKENDS4[0]]
    assert len(on_first) > 10
    # Weight 0: out of the ring, still ACTIVE (the flip writes the other slot).
    lab.fill_ring(0, [ids[1]], slot=1)
    lab.add_service(vip, 80, "tcp", 0, ring_slot=1)
    for port in on_first:
        assert _backend_of(lab, L.CLIENT4, vip, port) == L.BACKENDS4[0]
    for port in range(52000, 52050):
        assert _backend_of(lab, L.CLIENT4, vip, port) == L.BACKENDS4[1]


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
def test_removed_backend_reschedules_flow(lab, mode):
    lab.configure(mode)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4[:2])
    lab.fill_ring(0, [ids[0]])
    assert _backend_of(lab, L.CLIENT4, vip, 53000) == L.BACKENDS4[0]
    old = lab.ct_entry(L.flow_key(L.CLIENT4, vip, 53000, 80, "tcp"))
    lab.fill_ring(0, [ids[1]])
    lab.set_backend(ids[0], L.BACKENDS4[0], 0, active=False)
    assert _backend_of(lab, L.CLIENT4, vip, 53000) == L.BACKENDS4[1]
    new = lab.ct_entry(L.flow_key(L.CLIENT4, vip, 53000, 80, "tcp"))
    assert (old.backend_id, new.backend_id) == (ids[0], ids[1])


def test_backend_of_another_service_is_not_used(lab):
    """A conntrack entry whose backend id was reused by another service."""
    lab.configure(layout.MODE_DSR)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4[:2])
    lab.fill_ring(0, [ids[0]])
    assert _backend_of(lab, L.CLIENT4, vip, 53100) == L.BACKENDS4[0]
    lab.fill_ring(0, [ids[1]])
    lab.set_backend(ids[0], L.BACKENDS4[2], sid=5)
    assert _backend_of(lab, L.CLIENT4, vip, 53100) == L.BACKENDS4[1]


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
def test_no_backend_drops_and_counts(lab, mode):
    lab.configure(mode)
    vip, ids = L.setup_service(lab, 6, "udp", port=53, backends=L.BACKENDS6[:1])
    lab.fill_ring(0, [])
    inp = client_frame(L.CLIENT6, vip, "udp", 53200, 53)
    assert lab.run(inp)[0] == L.XDP_DROP
    # A ring pointing at an inactive backend is "no backend" too.
    lab.fill_ring(0, ids)
    lab.set_backend(ids[0], L.BACKENDS6[0], 0, active=False)
    assert lab.run(inp)[0] == L.XDP_DROP
    stats = lab.stats()
    assert (stats["drop"], stats["no_backend"], stats["pass"]) == (2, 2, 0)
    assert lab.stat_bytes("no_backend") == 2 * len(inp)


@pytest.mark.parametrize("family", [4, 6])
def test_ip_hash_same_addresses_same_backend(lab, family):
    lab.configure(layout.MODE_DSR)
    backends = L.BACKENDS4 if family == 4 else L.BACKENDS6
    clients = (["198.18.0.%d" % h for h in range(10, 18)] if family == 4
               else ["fd00:18::%d" % h for h in range(10, 18)])
    vip, ids = L.setup_service(lab, family, "tcp", backends=backends, sched="ip_hash")
    chosen = {}
    for client in clients:
        seen = {_backend_of(lab, client, vip, port) for port in range(54000, 54040, 3)}
        assert len(seen) == 1, "%s went to %s" % (client, seen)
        chosen[client] = seen.pop()
        want = ids[L.hash_ip_pair(client, vip) % SIZE % len(ids)]
        assert chosen[client] == backends[ids.index(want)]
    assert len(set(chosen.values())) > 1


@pytest.mark.parametrize("sched", ["five_tuple", "maglev"])
def test_five_tuple_spreads_one_client(lab, sched):
    lab.configure(layout.MODE_DSR)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4, sched=sched)
    counts = collections.Counter(_backend_of(lab, L.CLIENT4, vip, p) for p in range(55000, 55400))
    assert set(counts) == set(L.BACKENDS4)
    assert min(counts.values()) > 50, counts
    for port in range(55000, 55010):
        want = ids[L.hash_flow(L.CLIENT4, vip, port, 80, 6) % SIZE % len(ids)]
        assert _backend_of(lab, L.CLIENT4, vip, port) == L.BACKENDS4[ids.index(want)]
