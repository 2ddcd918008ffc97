"""An independent Python model of the data plane (docs/design.md), for the randomised test.

Given the maps' content (kept here as plain dicts, written to the kernel by
the test) and a frame, it says what must come out: the action, the exact
bytes, and which counters move.  It parses frames with struct (not scapy),
recomputes checksums from whole headers (not incrementally), and keeps its
own conntrack and NAT tables, so a wrong rewrite, a wrong port or a wrong
backend in the program shows up as a difference.
"""
import ipaddress
import socket
import struct

import dplab as L

TCP, UDP = 6, 17
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
RING_SIZE = 65537
PORT_PROBES = 8
M32 = 0xFFFFFFFF


def _u16(b, off):
    return struct.unpack_from("!H", b, off)[0]


def _ip(raw):
    return str(ipaddress.ip_address(bytes(raw)))


def _packed(addr):
    return ipaddress.ip_address(addr).packed


class Parsed:
    """What the program may act on; None from parse() means "pass untouched"."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def parse(raw):
    """Model of the program's parser (design: Packet walk, step 1)."""
    if len(raw) < 14:
        return None
    etype = raw[12:14]
    if etype == b"\x08\x00":
        ip = raw[14:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[0] & 0xF != 5:
            return None
        if _u16(ip, 6) & 0x3FFF or ip[8] <= 1:
            return None
        tot = _u16(ip, 2)
        if tot < 20 or tot > len(ip):
            return None
        p = Parsed(family=AF_INET, l3=14, l3_len=tot, hdr=20, proto=ip[9],
                   src=_ip(ip[12:16]), dst=_ip(ip[16:20]), sport=0, dport=0, l4=34)
        if p.proto not in (TCP, UDP):
            return p          # IP without ports: redirect mode still sends it
        room = tot - 20
    elif etype == b"\x86\xdd":
        ip = raw[14:]
        if len(ip) < 40 or ip[0] >> 4 != 6 or ip[7] <= 1 or ip[6] not in (TCP, UDP):
            return None
        plen = _u16(ip, 4)
        if 40 + plen > len(ip):
            return None
        p = Parsed(family=AF_INET6, l3=14, l3_len=40 + plen, hdr=40, proto=ip[6],
                   src=_ip(ip[8:24]), dst=_ip(ip[24:40]), l4=54)
        room = plen
    else:
        return None
    need = 20 if p.proto == TCP else 8
    if len(raw) < p.l4 + need or room < need:
        return None
    p.sport, p.dport = _u16(raw, p.l4), _u16(raw, p.l4 + 2)
    return p


# ---- checksums: whole-header sums, one's complement algebra ---------------------------
def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum_with_zero_field(data, field_off):
    data = bytearray(data)
    data[field_off:field_off + 2] = b"\0\0"
    return L.ones_sum(bytes(data))


def _adjust(field, s_in, s_out):
    """The field after the covered data's sum went from s_in to s_out: the
    same error (if any) the input carried, on top of a correct checksum."""
    return (~_fold((~field & 0xFFFF) + (~s_in & 0xFFFF) + s_out)) & 0xFFFF


def _l4_sum(frame, p):
    seg = frame[p.l4:p.l3 + p.l3_len]
    off = 16 if p.proto == TCP else 6
    src = _ip(frame[26:30]) if p.family == AF_INET else _ip(frame[22:38])
    dst = _ip(frame[30:34]) if p.family == AF_INET else _ip(frame[38:54])
    pseudo = L.pseudo_header(src, dst, p.proto, len(seg))
    return _fold(L.ones_sum(pseudo) + _sum_with_zero_field(seg, off))


def rewrite(raw, p, saddr, daddr, sport, dport):
    """The frame with new addresses/ports and checksums; returns (bytes, csum offsets)."""
    out = bytearray(raw)
    s_l4_in = _l4_sum(raw, p)
    if p.family == AF_INET:
        s_ip_in = _sum_with_zero_field(raw[14:34], 10)
        out[26:30], out[30:34] = _packed(saddr), _packed(daddr)
    else:
        out[22:38], out[38:54] = _packed(saddr), _packed(daddr)
    struct.pack_into("!HH", out, p.l4, sport, dport)
    csums = []
    if p.family == AF_INET:
        s_ip_out = _sum_with_zero_field(bytes(out[14:34]), 10)
        struct.pack_into("!H", out, 24, _adjust(_u16(raw, 24), s_ip_in, s_ip_out))
        csums.append(24)
    off = p.l4 + (16 if p.proto == TCP else 6)
    old = _u16(raw, off)
    if p.proto == TCP or old != 0 or p.family == AF_INET6:
        new = _adjust(old, s_l4_in, _l4_sum(bytes(out), p))
        if p.proto == UDP and new == 0:
            new = 0xFFFF
        struct.pack_into("!H", out, off, new)
        csums.append(off)
    return bytes(out), csums


def same_frame(got, want, csum_offsets):
    """Byte equality, with 0x0000 and 0xffff equal in checksum fields (both are
    "zero" in one's complement; receivers accept either)."""
    if len(got) != len(want):
        return False
    got, want = bytearray(got), bytearray(want)
    for off in csum_offsets:
        for buf in (got, want):
            if buf[off:off + 2] == b"\0\0":
                buf[off:off + 2] = b"\xff\xff"
    return got == want


# ---- the model ----------------------------------------------------------------------
def fib(dst):
    """Next hop in dplab.py's namespace: ("send", dev, dmac) / ("no_neigh",) / ("fail",)."""
    if dst in L.NEIGH:
        dev, mac = L.NEIGH[dst]
        return ("send", dev, mac)
    addr = ipaddress.ip_address(dst)
    local = {ipaddress.ip_address(a) for a in list(L.LB4.values()) + list(L.LB6.values())}
    for net in ("198.18.0.0/24", "198.18.1.0/24", "fd00:18::/64", "fd00:18:1::/64"):
        net = ipaddress.ip_network(net)
        if addr in net:
            if addr in local or addr == net.network_address or \
                    (addr.version == 4 and addr == net.broadcast_address):
                return ("fail",)
            return ("no_neigh",)
    return ("fail",)


def _mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


class Expect:
    def __init__(self, action, frame, csums=(), stats=(), backend=None, slot=None):
        self.action, self.frame, self.csums = action, frame, list(csums)
        self.stats, self.backend, self.slot = list(stats), backend, slot


class Model:
    def __init__(self, mode, port_min=40000, port_max=40999, redirect_algo=0,
                 redirect_ports=(), redirect_count=0):
        self.mode = mode
        self.port_min, self.port_max = port_min, port_max
        self.redirect_algo, self.redirect_count = redirect_algo, redirect_count
        self.redirect_ports = dict(redirect_ports)     # slot -> device
        self.rr = 0
        self.services = {}     # (vip, port, proto) -> (sid, sched)
        self.rings = {}        # sid -> backend ids (position p -> ids[p % len])
        self.backends = {}     # id -> dict(addr, port, active, sid)
        self.ct = {}           # (src, dst, sport, dport, proto) -> (id, nat_port)
        # (backend, snat, bport, nat_port, proto) -> (client, vip, cport, vport, id)
        self.nat_rev = {}
        self.snat = {AF_INET: L.SNAT4, AF_INET6: L.SNAT6}

    # -- decisions -------------------------------------------------------------
    def _verdict(self, raw, action, reason=None, frame=None, csums=(), backend=None, slot=None):
        stats = [{2: "pass", 1: "drop", 3: "tx", 4: "redirect"}[action]]
        if reason:
            stats.append(reason)
        return Expect(action, raw if frame is None else frame, csums, stats, backend, slot)

    def _usable(self, bid, sid, family):
        be = self.backends.get(bid)
        if not bid or not be or not be["active"] or be["sid"] != sid:
            return None
        return be if (":" in be["addr"]) == (family == AF_INET6) else None

    def _send(self, raw, p, ingress, saddr, daddr, sport, dport, translate):
        """Next hop + rewrite; returns (action, frame, csums, hop kind)."""
        hop = fib(daddr)
        if hop[0] == "fail":
            return L.XDP_PASS, raw, [], "fail"
        frame, csums = raw, []
        if translate:
            frame, csums = rewrite(raw, p, saddr, daddr, sport, dport)
        if hop[0] == "no_neigh":
            return L.XDP_PASS, frame, csums, "no_neigh"
        dev, dmac = hop[1], hop[2]
        frame = _mac(dmac) + _mac(L.MAC[dev]) + frame[12:]
        return (L.XDP_TX if dev == ingress else L.XDP_REDIRECT), frame, csums, "send"

    def run(self, raw, ingress):
        p = parse(raw)
        if p is None or self.mode == 0:
            return self._verdict(raw, L.XDP_PASS)
        if self.mode == 1:
            return self._redirect(raw, p)
        if p.proto not in (TCP, UDP):
            return self._verdict(raw, L.XDP_PASS)
        if self.mode == 2:
            reply = self._nat_reply(raw, p, ingress)
            if reply:
                return reply
        return self._forward(raw, p, ingress)

    def _redirect(self, raw, p):
        if not 0 < self.redirect_count <= 64:
            return self._verdict(raw, L.XDP_PASS)
        if self.redirect_algo == 1:
            slot = L.hash_flow(p.src, p.dst, p.sport, p.dport, p.proto) % self.redirect_count
        else:
            slot = self.rr % self.redirect_count
            self.rr = slot + 1
        if slot not in self.redirect_ports:
            return self._verdict(raw, L.XDP_PASS)
        return self._verdict(raw, L.XDP_REDIRECT, slot=slot)

    def _nat_reply(self, raw, p, ingress):
        if p.dst != self.snat[p.family]:
            return None
        entry = self.nat_rev.get((p.src, p.dst, p.sport, p.dport, p.proto))
        if entry is None:
            return None
        client, vip, cport, vport, dummy = entry
        action, frame, csums, hop = self._send(raw, p, ingress, vip, client, vport, cport, True)
        if hop != "send":
            return self._verdict(raw, action, "fib_miss", frame, csums)
        return self._verdict(raw, action, "nat_reply", frame, csums)

    def _forward(self, raw, p, ingress):
        svc = self.services.get((p.dst, p.dport, p.proto))
        if svc is None:
            return self._verdict(raw, L.XDP_PASS)
        sid, sched = svc
        flow = (p.src, p.dst, p.sport, p.dport, p.proto)
        known, be, bid, nat_port = False, None, 0, 0
        if flow in self.ct:
            cbid, cport = self.ct[flow]
            be = self._usable(cbid, sid, p.family)
            if be:
                known, bid, nat_port = True, cbid, cport
        if not be:
            if sched == 0:
                h = L.hash_ip_pair(p.src, p.dst)
            else:
                h = L.hash_flow(p.src, p.dst, p.sport, p.dport, p.proto)
            ids = self.rings.get(sid) or [0]
            bid = ids[(h % RING_SIZE) % len(ids)]
            be = self._usable(bid, sid, p.family)
            if not be:
                return self._verdict(raw, L.XDP_DROP, "no_backend")

        if self.mode == 3:
            if not known:
                self.ct[flow] = (bid, 0)
            action, frame, dummy, hop = self._send(raw, p, ingress, p.src, be["addr"], p.sport,
                                                   p.dport, False)
            if hop != "send":
                return self._verdict(raw, L.XDP_PASS, "fib_miss")
            return self._verdict(raw, action, None, frame, backend=bid)

        bport = be["port"] or p.dport
        snat = self.snat[p.family]
        if not nat_port:
            h = L.hash_flow(p.src, p.dst, p.sport, p.dport, p.proto, seed=L.SEED_PORT)
            span = self.port_max - self.port_min + 1
            for i in range(PORT_PROBES):
                port = self.port_min + ((h + i) & M32) % span
                key = (be["addr"], snat, bport, port, p.proto)
                if key not in self.nat_rev:
                    self.nat_rev[key] = (p.src, p.dst, p.sport, p.dport, bid)
                    nat_port = port
                    break
            else:
                return self._verdict(raw, L.XDP_DROP, "ct_full")
            self.ct[flow] = (bid, nat_port)
        action, frame, csums, hop = self._send(raw, p, ingress, snat, be["addr"], nat_port,
                                               bport, True)
        if hop == "fail":
            return self._verdict(raw, L.XDP_PASS, "fib_miss")
        if hop == "no_neigh":
            return self._verdict(raw, L.XDP_PASS, "fib_miss", frame, csums, backend=bid)
        return self._verdict(raw, action, None, frame, csums, backend=bid)
