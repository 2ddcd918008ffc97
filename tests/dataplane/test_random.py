"""Randomised frames against model.py: every output is a pass of the same bytes, a
drop with its reason counted, or exactly the rewrite the model computes."""
import collections
import ipaddress
import os
import random

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
import dpmodel as M
from dpframes import frame as build_frame

SEED = 20260513
CLIENTS4 = ["198.18.0.%d" % h for h in range(10, 20)] + ["198.18.4.%d" % h for h in (1, 2)]
CLIENTS6 = ["fd00:18::%d" % h for h in range(10, 20)] + ["fd00:18:4::1"]

# sid: (vip, port, proto, sched, backend addresses, backend port, active)
SERVICES = {
    0: (L.VIP4, 80, "tcp", "five_tuple", L.BACKENDS4[:3], 8080, True),
    1: (L.VIP4, 53, "udp", "ip_hash", L.BACKENDS4[:2], 0, True),
    2: (L.VIP6, 80, "tcp", "maglev", L.BACKENDS6[:3], 0, True),
    3: (L.VIP6, 53, "udp", "five_tuple", [L.BACKENDS6[3], L.LOCAL_BACKEND6], 5353, True),
    4: (L.VIP4, 443, "tcp", "five_tuple", [L.LOCAL_BACKEND4, L.NO_NEIGH4], 0, True),
    5: (L.VIP4, 25, "tcp", "five_tuple", [], 0, True),
    6: (L.VIP6, 443, "tcp", "five_tuple", [L.NO_ROUTE6, L.NO_NEIGH6], 0, True),
    7: (L.VIP4, 123, "udp", "five_tuple", [L.BACKENDS4[3]], 0, False),
}


def _install(lab, mdl):
    for sid, (vip, port, proto, sched, addrs, bport, active) in SERVICES.items():
        ids = []
        for i, addr in enumerate(addrs):
            bid = sid * 8 + 1 + i
            lab.set_backend(bid, addr, sid, port=bport, active=active)
            mdl.backends[bid] = dict(addr=str(ipaddress.ip_address(addr)), port=bport,
                                     active=active, sid=sid)
            ids.append(bid)
        lab.add_service(vip, port, proto, sid, sched=layout.SCHEDULERS[sched])
        lab.fill_ring(sid, ids)
        mdl.services[(str(ipaddress.ip_address(vip)), port, M.TCP if proto == "tcp" else M.UDP)] = \
            (sid, layout.SCHEDULERS[sched])
        mdl.rings[sid] = ids


class Generator:
    """Service traffic, replies, near misses, mutations and garbage."""

    def __init__(self, rnd, mdl):
        self.rnd, self.mdl = rnd, mdl
        self.recent = collections.deque(maxlen=64)

    def _service_frame(self):
        r = self.rnd
        vip, port, proto, dummy, dummy, dummy, dummy = SERVICES[r.choice(list(SERVICES))]
        client = r.choice(CLIENTS6 if ":" in vip else CLIENTS4)
        kw = {}
        if proto == "udp" and ":" not in vip and r.random() < 0.3:
            kw["udp_chksum"] = 0
        if r.random() < 0.2:
            port = r.choice([port + 1, 8080, 22])          # near miss
        kw["tc" if ":" in vip else "tos"] = r.choice([0, 0, 0x10])
        return build_frame(client, vip, proto, r.randrange(1000, 1400), port,
                           smac="02:00:00:00:00:10", dmac=L.MAC["xlbdp0"],
                           payload=bytes(r.randrange(256) for dummy in range(r.randrange(0, 40))),
                           **kw), "xlbdp0"

    def _reply_frame(self):
        r = self.rnd
        if not self.mdl.nat_rev:
            return self._service_frame()
        be, snat, bport, nat_port, proto = r.choice(sorted(self.mdl.nat_rev))
        if r.random() < 0.15:
            nat_port = r.randrange(40000, 40300)           # maybe nobody's
        kw = {"udp_chksum": 0} if proto == M.UDP and ":" not in be and r.random() < 0.3 else {}
        return build_frame(be, snat, "tcp" if proto == M.TCP else "udp", bport, nat_port,
                           smac="02:00:00:00:01:10", dmac=L.MAC["xlbdp1"],
                           payload=bytes(r.randrange(256) for dummy in range(r.randrange(0, 30))),
                           **kw), "xlbdp1"

    def _mutate(self, raw):
        r, raw = self.rnd, bytearray(raw)
        kind = r.random()
        if kind < 0.45:                                     # flip bytes anywhere
            for dummy in range(r.randint(1, 3)):
                pos = r.randrange(len(raw))
                raw[pos] = r.randrange(256)
        elif kind < 0.6:                                    # a header field at an edge
            self._edge(raw)
        elif kind < 0.75:                                   # flip in the headers
            for dummy in range(r.randint(1, 2)):
                pos = r.randrange(12, min(len(raw), 62))
                raw[pos] ^= 1 << r.randrange(8)
        elif kind < 0.9:                                    # truncate
            raw = raw[:r.randrange(14, len(raw))] if len(raw) > 14 else raw
        else:                                               # trailing junk
            raw += bytes(r.randrange(256) for dummy in range(r.randrange(1, 20)))
        return bytes(raw)

    def _edge(self, raw):
        """Set one parser-relevant field to a value at the edge of a rule."""
        r = self.rnd
        if raw[12:14] == b"\x08\x00" and len(raw) >= 34:
            pos, values = r.choice([(22, [0, 1, 2, 255]), (14, [0x44, 0x45, 0x46, 0x55, 0x65]),
                                    (20, [0x00, 0x20, 0x40, 0x60, 0x80]), (21, [0, 1, 0xFF]),
                                    (23, [1, 6, 17, 47])])
        elif raw[12:14] == b"\x86\xdd" and len(raw) >= 54:
            pos, values = r.choice([(21, [0, 1, 2, 255]), (20, [0, 6, 17, 43, 44, 58, 60]),
                                    (14, [0x60, 0x40, 0x6F, 0x70])])
        else:
            return
        raw[pos] = r.choice(values)
        if r.random() < 0.3:                                # length one off, either way
            off = 16 if raw[12] == 0x08 else 18
            length = (raw[off] << 8 | raw[off + 1]) + r.choice([-1, 1])
            raw[off:off + 2] = (length & 0xFFFF).to_bytes(2, "big")

    def _garbage(self):
        r = self.rnd
        body = bytes(r.randrange(256) for dummy in range(r.randrange(0, 100)))
        etype = r.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x08\x06",
                          bytes([r.randrange(256), r.randrange(256)])])
        if etype == b"\x08\x00" and r.random() < 0.5:
            body = b"\x45" + body[1:]
        return bytes(r.randrange(256) for dummy in range(12)) + etype + body

    def next(self):
        r = self.rnd
        roll = r.random()
        if roll < 0.40:
            raw, dev = self._service_frame()
        elif roll < 0.58:
            raw, dev = self._reply_frame()
        elif roll < 0.88:
            base, dev = self.rnd.choice(self.recent) if self.recent else self._service_frame()
            raw = self._mutate(base)
        else:
            raw, dev = self._garbage(), r.choice(["xlbdp0", "xlbdp1"])
        if roll < 0.58:
            self.recent.append((raw, dev))
        return raw, dev


def _check(lab, mdl, raw, dev, tally):
    want = mdl.run(raw, dev)
    action, out = lab.run(raw, dev)
    where = "frame %s on %s" % (raw.hex(), dev)
    assert L.ACTIONS[action] == L.ACTIONS[want.action], where
    if want.frame == raw:
        assert out == raw, "%s: must be unchanged, got %s" % (where, out.hex())
        kind = "unchanged"
    else:
        assert M.same_frame(out, want.frame, want.csums), \
            "%s:\n got  %s\n want %s" % (where, out.hex(), want.frame.hex())
        kind = "rewritten"
    tally[(L.ACTIONS[action], kind)] += 1
    for stat in want.stats:
        tally["stat:" + stat] += 1
    if want.backend is not None:
        tally["backend:%d" % want.backend] += 1
    if want.slot is not None:
        tally["slot:%d" % want.slot] += 1


def _check_counters(lab, tally):
    stats = lab.stats()
    for name in layout.STATS:
        assert stats[name] == tally["stat:" + name], name
    for bid in range(64):
        assert lab.backend_packets(bid) == tally["backend:%d" % bid], "backend %d" % bid
    for slot in range(8):
        assert lab.port_packets(slot) == tally["slot:%d" % slot], "slot %d" % slot


@pytest.mark.parametrize("mode,count", [(layout.MODE_NAT, 10000), (layout.MODE_DSR, 2500)])
def test_random_frames_match_the_model(lab, mode, count):
    rnd = random.Random(SEED + mode)
    mdl = M.Model(mode, port_min=40000, port_max=40199)
    lab.configure(mode, port_min=40000, port_max=40199)
    _install(lab, mdl)
    gen = Generator(rnd, mdl)
    tally = collections.Counter()
    for dummy in range(count):
        raw, dev = gen.next()
        _check(lab, mdl, raw, dev, tally)
    _check_counters(lab, tally)
    # Conntrack and NAT tables hold what the model holds, no more.
    assert len(lab.maps["lb_ct"].keys()) == len(mdl.ct)
    assert len(lab.maps["lb_nat_rev"].keys()) == len(mdl.nat_rev)
    print(mode, sorted(tally.items(), key=str))
    # The run covered what it is meant to cover.
    assert tally[("redirect", "rewritten")] > count // 10
    assert tally[("tx", "rewritten")] > 0
    assert tally[("pass", "unchanged")] > count // 10
    assert tally["stat:no_backend"] > 0 and tally["stat:fib_miss"] > 0
    if mode == layout.MODE_NAT:
        assert tally["stat:nat_reply"] > count // 20
        assert tally["stat:ct_full"] > 0
        assert tally[("pass", "rewritten")] > 0          # translated, unresolved neighbour


@pytest.mark.parametrize("algo", ["round_robin", "flow_hash"])
def test_random_frames_redirect_mode(lab, algo):
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})          # round robin is per CPU
    try:
        rnd = random.Random(SEED + 7)
        ports = {0: "xlbdp0p", 1: "xlbdp1p", 3: "xlbdp2p"}     # slot 2 left empty
        mdl = M.Model(layout.MODE_REDIRECT, redirect_algo=layout.REDIRECT_ALGOS[algo],
                      redirect_ports=ports, redirect_count=4)
        lab.configure(layout.MODE_REDIRECT, redirect_algo=layout.REDIRECT_ALGOS[algo],
                      redirect_count=4)
        for slot, dev in ports.items():
            lab.set_tx_port(slot, dev)
        gen = Generator(rnd, mdl)
        tally = collections.Counter()
        for dummy in range(1500):
            raw, dev = gen.next()
            _check(lab, mdl, raw, dev, tally)
        _check_counters(lab, tally)
        assert tally[("redirect", "unchanged")] > 500 and tally[("pass", "unchanged")] > 100
    finally:
        os.sched_setaffinity(0, before)
