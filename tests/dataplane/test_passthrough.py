"""What the program must hand to the kernel untouched (XDP_PASS, same bytes)."""
import pytest
from scapy.layers.inet import ICMP, IP, IPOption_NOP, IPOption_RR, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import client_frame

C_MAC, LB_MAC = L.NEIGH[L.CLIENT4][1], L.MAC["xlbdp0"]
ETH = Ether(src=C_MAC, dst=LB_MAC)
TCP80 = TCP(sport=30000, dport=80, flags="S")


def _raw_edit(frame, offset, value):
    return frame[:offset] + value + frame[offset + len(value):]


def _malformed():
    """(name, frame): things that must never be rewritten, aimed at the services."""
    v4 = client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80)
    v6 = client_frame(L.CLIENT6, L.VIP6, "tcp", 30000, 80)
    out = [
        ("arp", bytes(Ether(src=C_MAC, dst="ff:ff:ff:ff:ff:ff") /
                      ARP(psrc=L.CLIENT4, pdst=L.VIP4))),
        ("vlan", bytes(Ether(src=C_MAC, dst=LB_MAC) / Dot1Q(vlan=7) /
                       IP(src=L.CLIENT4, dst=L.VIP4) / TCP80)),
        ("qinq", bytes(Ether(src=C_MAC, dst=LB_MAC, type=0x88A8) / Dot1Q(vlan=7) /
                       IP(src=L.CLIENT4, dst=L.VIP4) / TCP80)),
        ("v4 more-fragments", bytes(ETH / IP(src=L.CLIENT4, dst=L.VIP4, flags="MF") / TCP80)),
        ("v4 fragment offset", bytes(ETH / IP(src=L.CLIENT4, dst=L.VIP4, frag=100) / TCP80)),
        ("v4 options nop", bytes(ETH / IP(src=L.CLIENT4, dst=L.VIP4,
                                          options=[IPOption_NOP()] * 4) / TCP80)),
        ("v4 options rr", bytes(ETH / IP(src=L.CLIENT4, dst=L.VIP4, options=[IPOption_RR()]) /
                                TCP80)),
        ("v4 ttl 1", client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80, ttl=1)),
        ("v4 ttl 0", client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80, ttl=0)),
        ("v4 version 5", _raw_edit(v4, 14, b"\x55")),
        ("v4 tot_len beyond frame", _raw_edit(v4, 16, (len(v4) - 14 + 1).to_bytes(2, "big"))),
        ("v4 tot_len below header", _raw_edit(v4, 16, (19).to_bytes(2, "big"))),
        ("v4 tot_len cuts tcp", _raw_edit(v4, 16, (20 + 19).to_bytes(2, "big"))),
        ("v6 hop-by-hop", bytes(ETH / IPv6(src=L.CLIENT6, dst=L.VIP6) / IPv6ExtHdrHopByHop() /
                                TCP80)),
        ("v6 fragment", bytes(ETH / IPv6(src=L.CLIENT6, dst=L.VIP6) /
                              IPv6ExtHdrFragment(m=1) / TCP80)),
        ("v6 destopt", bytes(ETH / IPv6(src=L.CLIENT6, dst=L.VIP6) / IPv6ExtHdrDestOpt() /
                             TCP80)),
        ("v6 hop limit 1", client_frame(L.CLIENT6, L.VIP6, "tcp", 30000, 80, ttl=1)),
        ("v6 version 4", _raw_edit(v6, 14, b"\x40")),
        ("v6 payload beyond frame", _raw_edit(v6, 18, (len(v6) - 54 + 1).to_bytes(2, "big"))),
        ("v6 payload cuts tcp", _raw_edit(v6, 18, (19).to_bytes(2, "big"))),
        ("v6 udp payload cuts header", bytes(ETH / IPv6(src=L.CLIENT6, dst=L.VIP6, plen=7) /
                                             UDP(sport=1, dport=53))),
    ]
    for cut in (0, 1, 13, 14, 20, 33, 34, 40, 53):
        out.append(("v4 truncated to %d" % cut, v4[:cut]))
    for cut in (14, 30, 53, 54, 60, 73):
        out.append(("v6 truncated to %d" % cut, v6[:cut]))
    return out


MALFORMED = _malformed()
NOT_OURS = [
    ("other port", client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 81)),
    ("other proto", client_frame(L.CLIENT4, L.VIP4, "udp", 30000, 80)),
    ("other vip", client_frame(L.CLIENT4, "198.18.2.2", "tcp", 30000, 80)),
    ("v6 other vip", client_frame(L.CLIENT6, "fd00:18:2::2", "tcp", 30000, 80)),
    ("icmp to the vip", bytes(ETH / IP(src=L.CLIENT4, dst=L.VIP4) / ICMP())),
    ("snat without flow", client_frame(L.CLIENT4, L.SNAT4, "tcp", 30000, 40000)),
]


def _services(lab, mode):
    lab.configure(mode)
    for sid, (family, proto, port) in enumerate([(4, "tcp", 80), (6, "tcp", 80), (4, "udp", 53),
                                                 (6, "udp", 53)]):
        L.setup_service(lab, family, proto, port=port, sid=sid)


def test_valid_frames_are_served(lab):
    """The frames below differ from served ones only in what makes them pass."""
    _services(lab, layout.MODE_NAT)
    assert lab.run(client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80))[0] == L.XDP_REDIRECT
    assert lab.run(client_frame(L.CLIENT6, L.VIP6, "tcp", 30000, 80))[0] == L.XDP_REDIRECT


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR, layout.MODE_REDIRECT])
@pytest.mark.parametrize("name,frame", MALFORMED, ids=[n for n, dummy in MALFORMED])
def test_malformed_passes_untouched(lab, mode, name, frame):
    _services(lab, mode)
    if mode == layout.MODE_REDIRECT:
        lab.configure(mode, redirect_count=1)
        lab.set_tx_port(0, "xlbdp1p")
    action, out = lab.run(frame) if len(frame) >= 14 else _short(lab, frame)
    assert (L.ACTIONS[action], out) == ("pass", frame)
    if len(frame) >= 14:
        assert lab.stats()["pass"] == 1
        assert lab.maps["lb_ct"].keys() == []


def _short(lab, frame):
    # BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    try:
        return lab.run(frame)
    except Exception:
        return L.XDP_PASS, frame


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
@pytest.mark.parametrize("name,frame", NOT_OURS, ids=[n for n, dummy in NOT_OURS])
def test_not_a_service_passes_untouched(lab, mode, name, frame):
    _services(lab, mode)
    assert lab.run(frame) == (L.XDP_PASS, frame)


def test_unconfigured_program_passes_everything(lab):
    _services(lab, layout.MODE_NAT)
    lab.maps["lb_config"].update(layout.U32(0), layout.LbConfig())
    frame = client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80)
    assert lab.run(frame) == (L.XDP_PASS, frame)


def test_frame_with_trailer_is_served_and_trailer_kept(lab):
    """Ethernet padding after tot_len is not part of the packet: kept as is."""
    _services(lab, layout.MODE_DSR)
    frame = client_frame(L.CLIENT4, L.VIP4, "tcp", 30000, 80) + b"\xaa" * 6
    action, out = lab.run(frame)
    assert action == L.XDP_REDIRECT
    assert out[12:] == frame[12:]
