# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight: run a new data plane on synthetic packets before it is attached.

Before a new program replaces a running one (module run, rolling deploy,
boot restore: every engine run that loads a program), the engine loads the
same object a second time against *scratch* maps: every map of the object
is created anew, unpinned, and freed when the check ends.  The scratch
maps are filled by the engine's own map code (maps.plan from empty tables
to the desired ones, maps.apply), so they hold what the live maps will
hold.  Then the program runs with BPF_PROG_TEST_RUN on packets built here,
with the instance's real ingress ifindex in the instance's network
namespace: bpf_fib_lookup sees the host's real routes and neighbours
(read only: a test run transmits nothing).  The live maps, NAT ports and
counters are never touched.

Per service and family:

* a new flow (TCP SYN or a UDP datagram) from a client to VIP:port;
* a second packet of that flow (established, conntrack hit);
* nat: the backend's reply to NAT-source:NAT-port;
* a packet to the VIP on a port that is no service: must pass unchanged.

Redirect mode: an IPv4 and an IPv6 datagram must be redirected unchanged.

What is expected is derived from the configuration and the host, not from
the program: the backend must be one of the service's (address and port),
the source the NAT address with a port of the pool, checksums valid, and
the verdict and MACs what the kernel's route and neighbour tables give
(XDP_TX when the next hop is out of the ingress interface, XDP_REDIRECT
otherwise, the egress interface's MAC as source and the neighbour's as
destination; XDP_PASS with the packet rewritten when the neighbour is not
resolved; XDP_PASS unchanged when there is no route or forwarding is off).
A mismatch raises PreflightError naming the packet, what was expected and
what came out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import socket
import struct
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, layout, maps

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # what bpf_fib_lookup accepts as resolved
TCP_SYN, TCP_ACK, TCP_PSH = 0x02, 0x10, 0x08
CLIENT_PORT = 40123
PAYLOAD = b"netfleet.xdp_lb pre-flight"


class PreflightError(Exception):
    """The new program did not do what the configuration says."""


# ---- scratch maps -------------------------------------------------------------------

class ScratchMaps:
    """The maps of a LoadedObject(scratch=True), with the interface of maps.MapSet
    that maps.apply uses (``get``, ``close``)."""

    def __init__(self, loaded):
        self._loaded = loaded
        self._maps = {}

    def get(self, name):
        m = self._maps.get(name)
        if m is None:
            ktype, vtype, percpu = layout.MAPS[name]
            m = bpf.Map(self._loaded.map_fd(name), ktype, vtype, percpu=percpu, owned=False)
            self._maps[name] = m
        return m

    def close(self):
        self._maps = {}


# ---- packets ------------------------------------------------------------------------

def _csum(data, start=0):
    if len(data) % 2:
        data += b"\0"
    s = start + sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _packed(address):
    return ipaddress.ip_address(address).packed


def _mac(text):
    return bytes.fromhex(text.replace(":", "")) if text else None


def _mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def _pseudo(src, dst, proto, length):
    if len(src) == 16:
        return src + dst + struct.pack("!IxxxB", length, proto)
    return src + dst + struct.pack("!xBH", proto, length)


def build_frame(src, dst, proto, sport, dport, smac, dmac, tcp_flags=TCP_ACK | TCP_PSH, payload=PAYLOAD):
    """Ethernet + IPv4/IPv6 + TCP/UDP with valid checksums."""
    s, d = _packed(src), _packed(dst)
    pnum = layout.PROTOCOLS[proto]
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000 if tcp_flags & TCP_ACK else 0, 5 << 4,
                         tcp_flags, 65535, 0, 0) + payload
        ck = 0xFFFF - _csum(_pseudo(s, d, pnum, len(l4)) + l4)
        l4 = l4[:16] + struct.pack("!H", ck) + l4[18:]
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ck = 0xFFFF - _csum(_pseudo(s, d, pnum, len(l4)) + l4)
        l4 = l4[:6] + struct.pack("!H", ck or 0xFFFF) + l4[8:]
    if len(s) == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0x1234, 0x4000, 64, pnum, 0, s, d)
        ip = ip[:10] + struct.pack("!H", 0xFFFF - _csum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(l4), pnum, 64, s, d)
        ethertype = 0x86DD
    return _mac(dmac) + _mac(smac) + struct.pack("!H", ethertype) + ip + l4


def parse_frame(raw):
    """{dmac, smac, src, dst, proto, sport, dport, flags, payload, checksums_ok} or None."""
    if len(raw) < 14:
        return None
    out = {"dmac": _mac_text(raw[0:6]), "smac": _mac_text(raw[6:12])}
    ethertype = struct.unpack("!H", raw[12:14])[0]
    ip = raw[14:]
    ok = True
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        pnum = ip[9]
        s, d = ip[12:16], ip[16:20]
        ok = _csum(ip[:ihl]) == 0xFFFF
        l4 = ip[ihl:total]
    elif ethertype == 0x86DD and len(ip) >= 40:
        plen = struct.unpack("!H", ip[4:6])[0]
        pnum = ip[6]
        s, d = ip[8:24], ip[24:40]
        l4 = ip[40:40 + plen]
    else:
        return None
    out["src"] = str(ipaddress.ip_address(s))
    out["dst"] = str(ipaddress.ip_address(d))
    if pnum == 6 and len(l4) >= 20:
        out["proto"] = "tcp"
        out["flags"] = l4[13]
        out["payload"] = l4[(l4[12] >> 4) * 4:]
    elif pnum == 17 and len(l4) >= 8:
        out["proto"] = "udp"
        out["payload"] = l4[8:]
    else:
        return None
    out["sport"], out["dport"] = struct.unpack("!HH", l4[:4])
    udp_zero = pnum == 17 and len(s) == 4 and l4[6:8] == b"\0\0"
    if not udp_zero:
        ok = ok and _csum(_pseudo(s, d, pnum, len(l4)) + l4) == 0xFFFF
    out["checksums_ok"] = ok
    return out


def describe(raw):
    p = parse_frame(raw)
    if p is None:
        return "%d bytes (not IP/TCP/UDP): %s" % (len(raw), raw[:64].hex())

    def host(a):
        return "[%s]" % a if ":" in a else a
    return "%s %s:%d -> %s:%d, MAC %s -> %s%s" % (
        p["proto"], host(p["src"]), p["sport"], host(p["dst"]), p["dport"], p["smac"], p["dmac"],
        "" if p["checksums_ok"] else ", BAD CHECKSUM")


# ---- what the host says about next hops ----------------------------------------------

class Host:
    """Routes, neighbours, interface MACs and forwarding switches, read via pyroute2."""

    def __init__(self, ipr):
        self.ipr = ipr
        self._macs = {}

    def mac(self, index):
        if index not in self._macs:
            links = self.ipr.link("get", index=index)
            self._macs[index] = (links[0].get_attr("IFLA_ADDRESS") or "").lower() if links else None
        return self._macs[index]

    @staticmethod
    def forwarding(index, family):
        name = socket.if_indextoname(index)
        path = "/proc/sys/net/ipv%d/conf/%s/forwarding" % (family, name)
        try:
            with open(path) as f:
                return f.read().strip() != "0"
        except (IOError, OSError):
            return True

    def hop(self, address, ingress):
        """How bpf_fib_lookup from ``ingress`` should answer for ``address``:
        ('fail', None) or ('no_neigh', oif) or ('send', {oif, smac, dmac, action}), or
        ('unknown', None) when the route has no single egress interface."""
        family = 6 if ":" in address else 4
        if not self.forwarding(ingress, family):
            return "fail", None
        try:
            routes = self.ipr.route("get", dst=address)
        except Exception:   # NetlinkError: no route
            return "fail", None
        if not routes or routes[0]["type"] != 1:   # RTN_UNICAST
            return "fail", None
        oif = routes[0].get_attr("RTA_OIF")
        if not oif:     # multipath and the like: the verdict and MACs are not determined here
            return "unknown", None
        nh = routes[0].get_attr("RTA_GATEWAY") or address
        for n in self.ipr.get_neighbours(family=socket.AF_INET6 if family == 6 else socket.AF_INET,
                                         ifindex=oif, dst=nh):
            if n.get_attr("NDA_DST") == nh and n["ifindex"] == oif and n["state"] & NUD_VALID \
                    and n.get_attr("NDA_LLADDR"):
                return "send", {"oif": oif, "smac": self.mac(oif), "dmac": n.get_attr("NDA_LLADDR").lower(),
                                "action": XDP_TX if oif == ingress else XDP_REDIRECT}
        return "no_neigh", oif

    def addresses(self, index):
        out = []
        for a in self.ipr.get_addr(index=index):
            if a["scope"] == 0:   # global
                out.append((a.get_attr("IFA_ADDRESS"), a["prefixlen"]))
        return out

    def valid_neighbours(self, index, family):
        out = []
        for n in self.ipr.get_neighbours(family=socket.AF_INET6 if family == 6 else socket.AF_INET,
                                         ifindex=index):
            if n["state"] & NUD_VALID and n.get_attr("NDA_LLADDR") and n.get_attr("NDA_DST"):
                out.append(n.get_attr("NDA_DST"))
        return out


def client_address(host, ingress, family, taken):
    """A client address the reply can be routed to: a resolved neighbour on
    the ingress interface, else a host of the ingress interface's prefix,
    else a fixed test address (no route: the reply must then pass)."""
    for a in host.valid_neighbours(ingress, family):
        ip = ipaddress.ip_address(a)
        if a not in taken and not ip.is_link_local and not ip.is_multicast:
            return a
    for addr, plen in host.addresses(ingress):
        if (":" in addr) != (family == 6):
            continue
        net = ipaddress.ip_network("%s/%d" % (addr, plen), strict=False)
        if net.num_addresses < 4:
            continue
        for cand in (net.broadcast_address - 1, net.broadcast_address - 2, net.network_address + 2):
            if str(cand) not in taken and str(cand) != addr:
                return str(cand)
    return "198.19.255.254" if family == 4 else "fd00:ffff:ffff::fe"


# ---- the check ----------------------------------------------------------------------

class _Case:
    def __init__(self, what, frame, ingress):
        self.what, self.frame, self.ingress = what, frame, ingress


def _fail(case, expected, action, out):
    raise PreflightError(
        "pre-flight: the new program does not do what the configuration says; it was not attached "
        "(the running program stays).\n  packet:   %s (%s, ingress ifindex %d)\n  expected: %s\n"
        "  actual:   %s, %s" % (describe(case.frame), case.what, case.ingress, expected,
                                ACTIONS.get(action, str(action)), describe(out)))


def _run(prog_fd, case):
    action, out, _ns = bpf.test_run(prog_fd, case.frame, ingress_ifindex=case.ingress)
    return action, out


def _check_hop(case, hop, action, out, rewritten, want):
    """Verdict and MACs for a rewritten (or not) packet, given host.hop()'s answer."""
    kind, info = hop
    p = parse_frame(out)
    if kind == "fail":
        if action != XDP_PASS or out != case.frame:
            _fail(case, "XDP_PASS, packet unchanged (no route or forwarding off towards %s)" % want, action, out)
        return
    if p is None or not rewritten(p):
        _fail(case, "%s" % want, action, out)
    if not p["checksums_ok"]:
        _fail(case, "%s with valid checksums" % want, action, out)
    if kind == "unknown":
        if action not in (XDP_TX, XDP_REDIRECT, XDP_PASS):
            _fail(case, "XDP_TX, XDP_REDIRECT or XDP_PASS: %s" % want, action, out)
        return
    if kind == "no_neigh":
        if action != XDP_PASS:
            _fail(case, "XDP_PASS (%s, next hop unresolved)" % want, action, out)
        return
    expect = "%s, %s, MAC %s -> %s" % (ACTIONS[info["action"]], want, info["smac"], info["dmac"])
    if action != info["action"] or p["smac"] != info["smac"] or p["dmac"] != info["dmac"]:
        _fail(case, expect, action, out)


def check(obj, want, cfg, ipr, ifindex, tx_ifindexes, sids, bids):
    """Load ``obj`` against scratch maps filled with ``want`` and run the cases.

    Returns {"cases": n, "seconds": s}; raises PreflightError or bpf.BPFError.
    """
    start = time.monotonic()
    loaded = bpf.LoadedObject(obj, scratch=True)
    scratch = ScratchMaps(loaded)
    try:
        maps.apply(scratch, maps.plan(maps.Tables(), want, cfg.ring_size))
        n = _cases(loaded.prog_fd, want, cfg, Host(ipr), ifindex, sids, bids)
    finally:
        scratch.close()
        loaded.close()
    return {"cases": n, "seconds": round(time.monotonic() - start, 3)}


def _cases(prog_fd, want, cfg, host, ifindex, sids, bids):
    ingress = ifindex[cfg.interfaces[0]]
    if cfg.mode == "redirect":
        return _redirect_cases(prog_fd, ingress)
    cfg_struct = layout.LbConfig.from_buffer_copy(want.config)
    snat = {4: cfg.nat_source_ipv4, 6: cfg.nat_source_ipv6}
    if cfg.mode == "nat":
        if cfg_struct.flags & layout.CFG_SNAT_V4:
            snat[4] = layout.unpack_addr(layout.Addr(cfg_struct.snat_v4, 0, 0, 0), socket.AF_INET)
        if cfg_struct.flags & layout.CFG_SNAT_V6:
            snat[6] = layout.unpack_addr(cfg_struct.snat_v6, socket.AF_INET6)
    taken = set(snat.values())
    for svc in cfg.services:
        taken.add(svc.vip)
        taken.update(b.address for b in svc.backends)
    clients = {}
    ports = set((s.vip, s.protocol, s.port) for s in cfg.services)
    count = 0
    for i, svc in enumerate(cfg.services):
        fam = svc.family
        if fam not in clients:
            clients[fam] = client_address(host, ingress, fam, taken)
        client = clients[fam]
        cmac = "02:00:5e:00:53:01"
        lmac = host.mac(ingress) or "02:00:5e:00:53:02"
        sid = sids[svc.key]
        ring_ids = set(want.rings[sid]) - {0}
        by_id = {}
        for b in svc.backends:
            bid = bids[maps.backend_key_str(svc.key, b.address, b.port)]
            by_id[bid] = (b.address, b.port or svc.port)
        usable = dict((bid, by_id[bid]) for bid in ring_ids if bid in by_id)
        label = "services[%d] %s" % (i, svc.key)
        sport = CLIENT_PORT + i
        first = build_frame(client, svc.vip, svc.protocol, sport, svc.port, cmac, lmac,
                            tcp_flags=TCP_SYN)
        case = _Case("%s, new flow" % label, first, ingress)
        action, out = _run(prog_fd, case)
        count += 1
        if not usable:
            if action != XDP_DROP:
                _fail(case, "XDP_DROP (no backend with a weight above 0)", action, out)
        elif cfg.mode == "nat":
            nat = _nat_forward(case, action, out, host, usable, snat[fam], cfg, client, svc, sport)
            second = _Case("%s, established flow (second packet)" % label,
                           build_frame(client, svc.vip, svc.protocol, sport, svc.port, cmac, lmac), ingress)
            action2, out2 = _run(prog_fd, second)
            count += 1
            nat2 = _nat_forward(second, action2, out2, host, usable, snat[fam], cfg, client, svc, sport)
            if nat and nat2 and nat2 != nat:
                _fail(second, "the flow's backend and NAT port of its first packet (%s:%d, NAT port %d)"
                      % (nat[0], nat[1], nat[2]), action2, out2)
            if nat:
                count += _nat_reply(prog_fd, host, ifindex, cfg, svc, nat, snat[fam], client, sport, label)
        else:
            chosen = _dsr_forward(case, action, out, host, usable, ingress)
            second = _Case("%s, established flow (second packet)" % label,
                           build_frame(client, svc.vip, svc.protocol, sport, svc.port, cmac, lmac), ingress)
            action2, out2 = _run(prog_fd, second)
            count += 1
            chosen2 = _dsr_forward(second, action2, out2, host, usable, ingress)
            if chosen and chosen2 and chosen != chosen2:
                _fail(second, "the backend of the flow's first packet (%s)" % chosen, action2, out2)
        # not a service: another port of the same VIP and protocol
        other = svc.port
        while (svc.vip, svc.protocol, other) in ports:
            other = other % 65535 + 1
        case = _Case("%s, not a service (port %d)" % (label, other),
                     build_frame(client, svc.vip, svc.protocol, sport, other, cmac, lmac), ingress)
        action, out = _run(prog_fd, case)
        count += 1
        if action != XDP_PASS or out != case.frame:
            _fail(case, "XDP_PASS, packet unchanged (no service there)", action, out)
    return count


def _nat_forward(case, action, out, host, usable, snat, cfg, client, svc, sport):
    """Checks a client -> VIP packet in nat mode; returns (backend, port, nat port) if rewritten."""
    p = parse_frame(out)
    targets = sorted(set(usable.values()))
    want = "%s -> one of %s, source %s with a port in %d-%d" % (
        svc.protocol, ", ".join("%s:%d" % t for t in targets), snat, cfg.nat_port_min, cfg.nat_port_max)

    def rewritten(q):
        return (q["src"] == snat and cfg.nat_port_min <= q["sport"] <= cfg.nat_port_max and
                (q["dst"], q["dport"]) in targets and q["payload"] == parse_frame(case.frame)["payload"])
    if action in (XDP_DROP, XDP_ABORTED) or p is None:
        _fail(case, "XDP_TX or XDP_REDIRECT (or XDP_PASS if the next hop is unresolved): " + want, action, out)
    if action == XDP_PASS and out == case.frame:
        # not rewritten: only right if the kernel cannot route to the backend
        hops = [host.hop(t[0], case.ingress) for t in targets]
        if any(h[0] != "fail" for h in hops):
            _fail(case, want, action, out)
        return None
    if not rewritten(p):
        _fail(case, want, action, out)
    _check_hop(case, host.hop(p["dst"], case.ingress), action, out, rewritten, want)
    return p["dst"], p["dport"], p["sport"]


def _nat_reply(prog_fd, host, ifindex, cfg, svc, nat, snat, client, sport, label):
    backend, bport, nat_port = nat
    route = host.hop(backend, ifindex[cfg.interfaces[0]])
    ingress = ifindex[cfg.interfaces[0]]
    oif = route[1]["oif"] if route[0] == "send" else route[1]
    if oif and oif in ifindex.values():
        ingress = oif
    frame = build_frame(backend, snat, svc.protocol, bport, nat_port, "02:00:5e:00:53:03",
                        host.mac(ingress) or "02:00:5e:00:53:04", payload=b"reply " + PAYLOAD)
    case = _Case("%s, reply from backend %s:%d to NAT port %d" % (label, backend, bport, nat_port), frame, ingress)
    action, out = _run(prog_fd, case)
    want = "%s %s:%d -> %s:%d" % (svc.protocol, svc.vip, svc.port, client, sport)

    def rewritten(q):
        return (q["src"], q["sport"], q["dst"], q["dport"]) == (svc.vip, svc.port, client, sport) and \
            q["payload"] == b"reply " + PAYLOAD
    if action in (XDP_DROP, XDP_ABORTED):
        _fail(case, "the reply translated back: " + want, action, out)
    _check_hop(case, host.hop(client, ingress), action, out, rewritten, want)
    return 1


def _dsr_forward(case, action, out, host, usable, ingress):
    """Checks a client -> VIP packet in dsr mode; returns the backend address chosen (by MAC) or None."""
    hops = dict((addr, host.hop(addr, ingress)) for addr, _port in usable.values())
    macs = dict((h[1]["dmac"], addr) for addr, h in hops.items() if h[0] == "send")
    want = "only the MACs rewritten, towards one of %s" % ", ".join(sorted(hops))
    if action in (XDP_TX, XDP_REDIRECT):
        if out[12:] != case.frame[12:] or out[0:6] == case.frame[0:6]:
            _fail(case, want, action, out)
        p = parse_frame(out)
        addr = macs.get(p["dmac"]) if p else None
        if addr is None:
            _fail(case, "%s (resolved: %s)" % (want, ", ".join("%s at %s" % (a, m) for m, a in sorted(macs.items()))
                                               or "none"), action, out)
        _check_hop(case, hops[addr], action, out, lambda q: True, want)
        return addr
    if action == XDP_PASS and out == case.frame and any(h[0] != "send" for h in hops.values()):
        return None   # the chosen backend is unresolved or unroutable: the kernel gets the packet
    _fail(case, "XDP_TX or XDP_REDIRECT: " + want, action, out)


def _redirect_cases(prog_fd, ingress):
    count = 0
    for fam, (src, dst) in ((4, ("198.18.0.10", "198.18.0.11")), (6, ("fd00:18::10", "fd00:18::11"))):
        case = _Case("redirect mode, IPv%d datagram" % fam,
                     build_frame(src, dst, "udp", CLIENT_PORT, 9, "02:00:5e:00:53:01", "02:00:5e:00:53:02"),
                     ingress)
        action, out = _run(prog_fd, case)
        count += 1
        if action != XDP_REDIRECT or out != case.frame:
            _fail(case, "XDP_REDIRECT, packet unchanged", action, out)
    return count


def timing_note(result):
    return "pre-flight: %d packets passed in %.0f ms" % (result["cases"], result["seconds"] * 1000)
