"""Aggregates (GRO/GSO packets) through BPF_PROG_TEST_RUN: a packet longer
than the ingress MTU whose TCP checksum field holds the pseudo-header sum
(CHECKSUM_PARTIAL, as tcp_gro_complete() leaves it) is translated in nat
mode with the partial update and handed to the kernel (XDP_PASS, MACs as
they came); the same length with a full checksum is still passed
untouched (FRAG_NEEDED).  test_bulk.py runs real aggregates.
"""
import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import ip_layer

FAMILIES = {4: (L.CLIENT4, L.BACKENDS4[0], L.SNAT4), 6: (L.CLIENT6, L.BACKENDS6[0], L.SNAT6)}
PAYLOAD = bytes(range(256)) * 11        # 2,816 bytes: two segments of a 1500 MTU


def aggregate(src, dst, sport, dport, smac, dmac, partial=True, payload=PAYLOAD):
    """An aggregate as generic XDP sees it: one TCP packet longer than the
    MTU whose checksum field is the folded pseudo-header sum (partial=True),
    or the same with a full checksum."""
    tcp = TCP(sport=sport, dport=dport, flags="A", seq=1000, ack=2000)
    if partial:
        tcp.chksum = L.ones_sum(L.pseudo_header(src, dst, 6, len(tcp) + len(payload)))
    return bytes(Ether(src=smac, dst=dmac) / ip_layer(src, dst) / tcp / Raw(payload))


def tcp_check(raw):
    return Ether(raw)[TCP].chksum


@pytest.mark.parametrize("family", [4, 6])
def test_nat_aggregate_both_directions(lab, family):
    client, be, snat = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, family, "tcp", port=80, backends=[be], backend_port=8080)
    cmac = L.NEIGH[client][1]
    # The connection's first packet is a frame: it makes the conntrack entry.
    action, dummy = lab.run(aggregate(client, vip, 33100, 80, cmac, L.MAC["xlbdp0"],
                                      partial=False, payload=b"syn"), "xlbdp0")
    assert action == L.XDP_REDIRECT
    nat_port = layout.ntohs(lab.ct_entry(L.flow_key(client, vip, 33100, 80, "tcp")).nat_port)
    inp = aggregate(client, vip, 33100, 80, cmac, L.MAC["xlbdp0"])
    assert len(inp) > 1514
    # Translated, for the kernel to forward (the MACs as they came); the
    # checksum is the pseudo-header sum of the new addresses, which the
    # kernel completes per segment; the IPv4 header checksum is full.
    assert lab.run(inp, "xlbdp0") == (L.XDP_PASS, aggregate(snat, be, nat_port, 8080, cmac,
                                                            L.MAC["xlbdp0"]))
    # The reply direction: backend -> snat becomes VIP -> client.
    bmac = L.NEIGH[be][1]
    reply = aggregate(be, snat, 8080, nat_port, bmac, L.MAC["xlbdp1"])
    assert lab.run(reply, "xlbdp1") == (L.XDP_PASS, aggregate(vip, client, 80, 33100, bmac,
                                                              L.MAC["xlbdp1"]))
    stats = lab.stats()
    assert (stats["redirect"], stats["pass"], stats["nat_reply"], stats["fib_miss"]) == (1, 2, 1, 0)
    assert lab.backend_packets(ids[0]) == 2


@pytest.mark.parametrize("family", [4, 6])
def test_dsr_aggregate_is_passed_untouched(lab, family):
    """dsr cannot hand an aggregate to the kernel (it keeps the client's
    addresses) nor redirect it in generic mode: passed as it came."""
    client, be, dummy = FAMILIES[family]
    lab.configure(layout.MODE_DSR)
    vip, dummy = L.setup_service(lab, family, "tcp", port=80, backends=[be])
    inp = aggregate(client, vip, 33101, 80, L.NEIGH[client][1], L.MAC["xlbdp0"])
    assert lab.run(inp, "xlbdp0") == (L.XDP_PASS, inp)
    assert lab.stats()["fib_miss"] == 1


@pytest.mark.parametrize("family", [4, 6])
def test_long_frame_with_full_checksum_is_passed_untouched(lab, family):
    """Longer than the MTU but not an aggregate (a full checksum): the
    lookup says FRAG_NEEDED, the kernel gets it as it came."""
    client, be, dummy = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, family, "tcp", port=80, backends=[be], backend_port=8080)
    inp = aggregate(client, vip, 33102, 80, L.NEIGH[client][1], L.MAC["xlbdp0"], partial=False)
    assert lab.run(inp, "xlbdp0") == (L.XDP_PASS, inp)
    stats = lab.stats()
    assert (stats["pass"], stats["fib_miss"]) == (1, 1)


@pytest.mark.parametrize("family", [4, 6])
def test_partial_checksum_within_the_mtu_gets_the_full_update(lab, family):
    """The rule's documented limit: a partial checksum in a packet that fits
    the MTU is not recognised (docs/design.md, "Aggregates")."""
    client, be, snat = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, family, "tcp", port=80, backends=[be], backend_port=8080)
    small = PAYLOAD[:1000]
    inp = aggregate(client, vip, 33103, 80, L.NEIGH[client][1], L.MAC["xlbdp0"], payload=small)
    action, out = lab.run(inp, "xlbdp0")
    assert action == L.XDP_REDIRECT
    entry = lab.ct_entry(L.flow_key(client, vip, 33103, 80, "tcp"))
    partial = aggregate(snat, be, layout.ntohs(entry.nat_port), 8080, L.MAC["xlbdp1"],
                        L.NEIGH[be][1], payload=small)
    assert out[:-len(small)] != partial[:-len(small)]
    assert tcp_check(out) != tcp_check(partial)
