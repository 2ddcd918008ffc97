"""Frames for the data-plane tests, built and checked with scapy."""
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

import dplab as L

PROTO_NUM = {"tcp": 6, "udp": 17}


def ip_layer(src, dst, **kw):
    if ":" in src:
        if "ttl" in kw:
            kw["hlim"] = kw.pop("ttl")
        return IPv6(src=src, dst=dst, **kw)
    return IP(src=src, dst=dst, **kw)


def frame(src, dst, proto, sport, dport, smac, dmac, payload=b"hello xdp_lb",
          udp_chksum=None, tcp_flags="PA", **ip_kw):
    """Ether/IP(v6)/TCP|UDP/payload with scapy's checksums (unless given)."""
    if proto == "tcp":
        l4 = TCP(sport=sport, dport=dport, flags=tcp_flags, seq=1000, ack=2000 if "A" in tcp_flags else 0)
    else:
        l4 = UDP(sport=sport, dport=dport)
        if udp_chksum is not None:
            l4.chksum = udp_chksum
    return bytes(Ether(src=smac, dst=dmac) / ip_layer(src, dst, **ip_kw) / l4 / Raw(payload))


def client_frame(client, vip, proto, sport, dport, **kw):
    """Client -> VIP as it arrives on xlbdp0."""
    return frame(client, vip, proto, sport, dport, smac=L.NEIGH[client][1] if client in L.NEIGH
                 else "02:00:00:00:ee:ee", dmac=L.MAC["xlbdp0"], **kw)


def scapy_checksums(raw):
    """[(layer, checksum in the frame, checksum scapy computes)] of every IP/TCP/UDP layer."""
    pkt = Ether(raw)
    out = []
    for cls in (IP, TCP, UDP):
        if cls in pkt:
            clone = Ether(raw)
            del clone[cls].chksum
            out.append((cls.__name__, pkt[cls].chksum, Ether(bytes(clone))[cls].chksum))
    return out


def assert_checksums(raw):
    checks = scapy_checksums(raw)
    assert checks, "no IP/TCP/UDP layer in %r" % raw
    for layer, have, want in checks:
        assert have == want, "%s checksum 0x%04x, scapy computes 0x%04x" % (layer, have, want)


def describe(raw):
    """One line for assertion messages."""
    try:
        return Ether(raw).summary()
    except Exception:   # garbage frames
        return raw.hex()
