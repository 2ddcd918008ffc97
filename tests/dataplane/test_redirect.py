"""redirect mode: frames unmodified, to lb_tx_ports[slot]; per-slot counters."""
import os

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import client_frame

PORTS = ["xlbdp0p", "xlbdp1p", "xlbdp2p"]


@pytest.fixture
def on_one_cpu():
    """Round robin counts per CPU: keep the test runs on one CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


def _ports(lab, algo):
    lab.configure(layout.MODE_REDIRECT, redirect_algo=layout.REDIRECT_ALGOS[algo],
                  redirect_count=len(PORTS))
    for slot, dev in enumerate(PORTS):
        lab.set_tx_port(slot, dev)


def _slot_of_next(lab, frame):
    """Run one frame; return (action, output, the slot whose counter moved)."""
    before = [lab.port_packets(s) for s in range(len(PORTS))]
    action, out = lab.run(frame)
    moved = [s for s in range(len(PORTS)) if lab.port_packets(s) != before[s]]
    assert len(moved) <= 1
    return action, out, (moved[0] if moved else None)


def test_round_robin_cycles_the_slots(lab, on_one_cpu):
    _ports(lab, "round_robin")
    slots = []
    for i in range(9):
        inp = client_frame(L.CLIENT4, "198.18.3.3", "tcp", 35000 + (i % 2), 80)
        action, out, slot = _slot_of_next(lab, inp)
        assert (action, out) == (L.XDP_REDIRECT, inp)
        slots.append(slot)
    first = slots[0]
    assert slots == [(first + i) % 3 for i in range(9)]
    assert [lab.port_packets(s) for s in range(3)] == [3, 3, 3]
    assert lab.stats()["redirect"] == 9


@pytest.mark.parametrize("family", [4, 6])
def test_flow_hash_is_sticky_and_spreads(lab, family):
    _ports(lab, "flow_hash")
    client = L.CLIENT4 if family == 4 else L.CLIENT6
    dst = "198.18.3.3" if family == 4 else "fd00:18:3::3"
    used = set()
    for sport in range(36000, 36030):
        inp = client_frame(client, dst, "udp", sport, 53)
        seen = {_slot_of_next(lab, inp)[2] for dummy in range(3)}
        assert len(seen) == 1, "one flow went to slots %s" % seen
        slot = seen.pop()
        assert slot == L.hash_flow(client, dst, sport, 53, 17) % 3
        used.add(slot)
    assert used == {0, 1, 2}


def test_other_ip_protocols_are_redirected_unmodified(lab, on_one_cpu):
    _ports(lab, "round_robin")
    inp = bytes(Ether(src="02:00:00:00:00:10", dst=L.MAC["xlbdp0"]) /
                IP(src=L.CLIENT4, dst="198.18.3.3") / ICMP())
    assert lab.run(inp) == (L.XDP_REDIRECT, inp)


def test_non_ip_and_unconfigured_pass(lab, on_one_cpu):
    arp = bytes(Ether(src="02:00:00:00:00:10", dst="ff:ff:ff:ff:ff:ff") /
                ARP(psrc=L.CLIENT4, pdst="198.18.0.1"))
    tcp = client_frame(L.CLIENT4, "198.18.3.3", "tcp", 35000, 80)
    _ports(lab, "round_robin")
    assert lab.run(arp) == (L.XDP_PASS, arp)
    # No ports configured: pass.
    lab.configure(layout.MODE_REDIRECT, redirect_count=0)
    assert lab.run(tcp) == (L.XDP_PASS, tcp)
    # A slot without a device (removed under the program): pass.
    lab.configure(layout.MODE_REDIRECT, redirect_algo=0, redirect_count=4)
    outcomes = {lab.run(tcp)[0] for dummy in range(4)}
    assert outcomes == {L.XDP_PASS, L.XDP_REDIRECT}
    assert sum(lab.port_packets(s) for s in range(4)) == lab.stats()["redirect"]
