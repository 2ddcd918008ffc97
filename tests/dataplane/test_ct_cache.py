"""lb_ct4_cache, the IPv4 conntrack cache in front of lb_ct4 (ABI 7).

Rules (files/xdp_lb.h and "the IPv4 conntrack cache" in
files/xdp_loadbalancer.c): a packet of an IPv4 flow looks for its way in
line ct_cache_hash(flow) % lines; a way whose tag's low 32 bits are not
that hash, or whose flow is another, is a miss.  A way is trusted while
the data plane's clock stays in the XDP_LB_CT_SYNC_MS period of the way's
last_seen; the first packet after that looks lb_ct4 up again (entry gone,
evicted by the LRU: the way writes it back; same backend and port:
lb_ct4.last_seen becomes at least the way's; otherwise the way is refilled
from lb_ct4).  An lb_ct4 entry read without a way gets one sync period of
slack in the UDP idle check.  Misses fill an empty way or the one least
recently seen; FlowTable writes to lb_ct4 empty the flow's line.

Times are moved by writing last_seen values directly (as test_expiry.py
does), relative to the data plane's clock (maps.dataplane_now()); writes
that must not empty the line go to lb_ct4 and lb_ct4_cache directly,
bypassing FlowTable.
"""
import os
import random
import threading
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, build, flowhash, layout, maps

import dplab as L
from dpframes import client_frame

MODES = {"nat": layout.MODE_NAT, "dsr": layout.MODE_DSR}
SPORT = 42000
HZ = build.host_defines().get("XDP_LB_HZ")      # the lab's default build
UNIT = HZ or 1000000000                         # clock units per second
# LB_CT_SYNC: the smallest power of two covering LB_MS(XDP_LB_CT_SYNC_MS)
SYNC = 1 << (((1000 * HZ + 999) // 1000 if HZ else 1000 * 1000000) - 1).bit_length()
M32 = 0xFFFFFFFF


def now():
    return maps.dataplane_now(HZ)


def secs(s):
    return int(round(s * UNIT))


def early_in_period():
    """Waits until the data plane's clock is in the first half of a sync
    period (past its first eighth), so that the next few packets, a few
    milliseconds, see the same period.  Returns the clock."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        n = now()
        if SYNC // 8 <= n % SYNC < SYNC // 2:
            return n
        time.sleep(0.02)
    raise AssertionError("the data plane's clock does not move (%d)" % now())


def key4(client, vip, sport, proto, dport=80):
    return layout.flow4_of(L.flow_key(client, vip, sport, dport, proto))


def index_of(lab, key):
    return flowhash.ct_cache_hash(key) % lab.ct_cache_lines()


def line_of(lab, key):
    return lab.maps["lb_ct4_cache"].lookup(layout.U32(index_of(lab, key)))


def write_line(lab, key, line):
    """Raw write of the flow's line (no FlowTable)."""
    lab.maps["lb_ct4_cache"].update(layout.U32(index_of(lab, key)), line)


def way_of(lab, key):
    """(line, way number) of the flow's valid way, or (line, None)."""
    line = line_of(lab, key)
    found = [i for i, w in enumerate(line.way) if L.ct_cache_way_valid(w) and bytes(w.flow) == bytes(key)]
    assert len(found) <= 1, "the flow is in %d ways of its line" % len(found)
    return line, (found[0] if found else None)


def the_way(lab, key):
    line, i = way_of(lab, key)
    assert i is not None, "the flow has no way in line %d" % index_of(lab, key)
    return line.way[i]


def set_way(lab, key, **fields):
    """Sets fields of the flow's way (raw)."""
    line, i = way_of(lab, key)
    assert i is not None
    for name, value in fields.items():
        setattr(line.way[i], name, value)
    write_line(lab, key, line)


def zero_line(lab, key):
    write_line(lab, key, layout.LbCtCacheLine())


def table(lab, key):
    """The flow's lb_ct4 entry (raw)."""
    return lab.maps["lb_ct4"].lookup(key)


def set_table(lab, key, **fields):
    """Sets fields of the flow's lb_ct4 entry, bypassing FlowTable (which
    would empty the flow's line)."""
    e = table(lab, key)
    for name, value in fields.items():
        setattr(e, name, value)
    lab.maps["lb_ct4"].update(key, e)


def tag_parts(tag):
    """(hash, backend id, nat port as stored) of a way's tag."""
    return tag & M32, (tag >> 32) & 0xFFFF, tag >> 48


def assert_way_is_entry(lab, key):
    """The flow's way is a copy of its lb_ct4 entry, tagged with its hash."""
    w, e = the_way(lab, key), table(lab, key)
    assert e is not None
    assert tag_parts(w.tag) == (flowhash.ct_cache_hash(key), e.backend_id, e.nat_port)
    return w, e


def backend_of(out):
    macs = {L.mac_bytes(L.NEIGH[b][1]): b for b in L.BACKENDS4}
    return macs.get(out[:6])


def service(lab, proto, mode="nat", timeout=0, backends=2):
    """Backends ids 1.. on BACKENDS4; the ring holds backend 1 only."""
    lab.configure(MODES[mode], flow_idle_timeout=timeout)
    vip, ids = L.setup_service(lab, 4, proto, port=80, backends=L.BACKENDS4[:backends])
    lab.fill_ring(0, ids[:1])
    return vip, ids


def send(lab, vip, proto, sport=SPORT, **kw):
    action, out = lab.run(client_frame(L.CLIENT4, vip, proto, sport, 80, **kw))
    assert action == L.XDP_REDIRECT, L.ACTIONS[action]
    return backend_of(out)


# ---- 1. a new flow fills its way, at the line the Python hash names ----------------
def _client(rng):
    return "198.18.%d.%d" % (rng.randrange(0, 256), rng.randrange(1, 255))


@pytest.mark.parametrize("mode", ["nat", "dsr"])
def test_new_flow_fills_its_way_at_the_python_hash(lab, mode):
    """Hundreds of random TCP and UDP flows: each new flow's way is in line
    ct_cache_hash % lines (so the Python hash is the C one), a copy of its
    lb_ct4 entry (backend id, NAT port, last_seen), tagged with the hash."""
    assert lab.ct_cache_lines() == layout.ct_cache_lines(layout.DEFAULT_SIZES["XDP_LB_CT_SIZE"])
    rng = random.Random(mode)
    lab.configure(MODES[mode], port_min=1024, port_max=65535)
    for sid, proto in enumerate(("tcp", "udp")):
        L.setup_service(lab, 4, proto, port=80, backends=L.BACKENDS4, sid=sid)
    flows, backends = set(), set()
    while len(flows) < 400:
        client, sport, proto = _client(rng), rng.randrange(1024, 65536), rng.choice(("tcp", "udp"))
        key = key4(client, L.VIP4, sport, proto)
        if bytes(key) in flows:
            continue
        flows.add(bytes(key))
        action, dummy = lab.run(client_frame(client, L.VIP4, proto, sport, 80))
        assert action == L.XDP_REDIRECT, L.ACTIONS[action]
        w, e = assert_way_is_entry(lab, key)
        assert w.last_seen == e.last_seen
        assert (e.nat_port != 0) == (mode == "nat")
        backends.add(e.backend_id)
    assert len(backends) == 8           # both services, every backend
    # Nothing else in the cache: every valid way is one of these flows, in its line.
    lines = lab.maps["lb_ct4_cache"].lookup_batch(0, lab.ct_cache_lines())
    cached = [(i, w) for i, line in enumerate(lines) for w in line.way if w.tag]
    assert cached and all(L.ct_cache_way_valid(w) and bytes(w.flow) in flows and i == index_of(lab, w.flow)
                          for i, w in cached)


# ---- 2. a hit from the cache is a hit from lb_ct4 --------------------------------------
@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("mode", ["nat", "dsr"])
def test_cache_hit_output_equals_table_hit_and_leaves_lb_ct4(lab, mode, proto):
    vip, ids = service(lab, proto, mode, timeout=30)
    pkt = client_frame(L.CLIENT4, vip, proto, SPORT, 80)
    key = key4(L.CLIENT4, vip, SPORT, proto)
    first = lab.run(pkt)
    assert first[0] == L.XDP_REDIRECT and backend_of(first[1]) == L.BACKENDS4[0]
    n = early_in_period()
    set_table(lab, key, last_seen=n - secs(5))
    set_way(lab, key, last_seen=n - 1)                  # the same sync period
    cached = lab.run(pkt)
    # served from the way: lb_ct4 untouched, the way seen now
    assert table(lab, key).last_seen == n - secs(5)
    assert the_way(lab, key).last_seen >= n
    zero_line(lab, key)
    from_table = lab.run(pkt)
    assert cached == from_table == first
    assert table(lab, key).last_seen >= n               # served from lb_ct4: seen now
    w, dummy = assert_way_is_entry(lab, key)            # and the way filled again
    assert w.last_seen >= n


# ---- 3. the refresh: lb_ct4 learns what the way saw -------------------------------
def test_refresh_keeps_an_active_udp_flow_whose_lb_ct4_entry_is_old(lab):
    """lb_ct4 says an hour idle, the way (an earlier sync period) 2 s: the
    flow is active and keeps its (drained) backend; lb_ct4 is seen now."""
    vip, ids = service(lab, "udp", timeout=30)
    key = key4(L.CLIENT4, vip, SPORT, "udp")
    assert send(lab, vip, "udp") == L.BACKENDS4[0]
    lab.fill_ring(0, ids[1:])
    n = early_in_period()
    set_table(lab, key, last_seen=n - secs(3600))
    set_way(lab, key, last_seen=n - secs(2))
    assert send(lab, vip, "udp") == L.BACKENDS4[0]
    assert table(lab, key).last_seen >= n
    w, dummy = assert_way_is_entry(lab, key)
    assert w.last_seen >= n and w.tag >> 32 & 0xFFFF == ids[0]


@pytest.mark.parametrize("way_age, table_age", [(2, 3600), (3, 2)], ids=["way-newer", "table-newer"])
def test_refresh_sets_lb_ct4_last_seen_to_the_later_of_both(lab, way_age, table_age):
    """A SYN that finds no backend (empty ring) is dropped and touches
    nothing: what its sync left in lb_ct4 is exactly max(way, entry)."""
    vip, ids = service(lab, "tcp")
    key = key4(L.CLIENT4, vip, SPORT, "tcp")
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]
    lab.fill_ring(0, [])
    n = early_in_period()
    set_table(lab, key, last_seen=n - secs(table_age))
    set_way(lab, key, last_seen=n - secs(way_age))
    action, dummy = lab.run(client_frame(L.CLIENT4, vip, "tcp", SPORT, 80, tcp_flags="S", payload=b""))
    assert action == L.XDP_DROP and lab.stats()["no_backend"] == 1
    assert table(lab, key).last_seen == n - secs(min(way_age, table_age))
    assert table(lab, key).backend_id == ids[0]


# ---- 4. lb_ct4 is the table of record -----------------------------------------------
@pytest.mark.parametrize("mode", ["nat", "dsr"])
def test_entry_evicted_from_lb_ct4_is_written_back_by_its_way(lab, mode):
    """lb_ct4's LRU may evict an active flow's entry (a cached flow marks
    it used once a period): the next sync writes it back from the way, and
    the flow keeps its backend and NAT port although the ring has moved."""
    vip, ids = service(lab, "tcp", mode)
    key = key4(L.CLIENT4, vip, SPORT, "tcp")
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]
    old = table(lab, key)
    lab.fill_ring(0, ids[1:])                           # a new flow would go elsewhere
    n = early_in_period()
    set_way(lab, key, last_seen=n)
    assert lab.maps["lb_ct4"].delete(key)              # raw, as the LRU evicts: the line keeps the way
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]      # within the period: the way
    assert table(lab, key) is None
    set_way(lab, key, last_seen=n - SYNC)               # the next packet syncs
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]      # same backend
    back = table(lab, key)
    assert back is not None and (back.backend_id, back.nat_port) == (old.backend_id, old.nat_port)
    assert back.last_seen >= n - SYNC
    assert_way_is_entry(lab, key)
    if mode == "nat":
        assert len(lab.maps["lb_nat_rev"].keys()) == 1  # no second port claimed


# ---- 5. control-plane writes are seen at once -----------------------------------------
@pytest.mark.parametrize("op", ["update", "delete"])
@pytest.mark.parametrize("mode", ["nat", "dsr"])
def test_flowtable_write_is_followed_at_once(lab, mode, op):
    vip, ids = service(lab, "tcp", mode)
    key = key4(L.CLIENT4, vip, SPORT, "tcp")
    flow = L.flow_key(L.CLIENT4, vip, SPORT, 80, "tcp")
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]
    early_in_period()
    if op == "update":                  # moved to backend 2, ring unchanged
        e = lab.ct_entry(flow)
        e.backend_id = ids[1]
        lab.maps["lb_ct"].update(flow, e)
    else:                               # forgotten, ring now backend 2
        lab.fill_ring(0, ids[1:])
        assert lab.maps["lb_ct"].delete(flow)
    assert line_of(lab, key).way[0].tag == line_of(lab, key).way[1].tag == 0
    assert send(lab, vip, "tcp") == L.BACKENDS4[1]
    assert table(lab, key).backend_id == ids[1]
    assert_way_is_entry(lab, key)


# ---- 6. a torn or forged way is a miss ---------------------------------------------
@pytest.mark.parametrize("forgery", ["hash", "flow"])
def test_forged_way_is_a_miss(lab, forgery):
    """'hash': the flow's key with a tag whose low 32 bits are not its hash;
    'flow': the flow's tag on another flow's key.  Both name backend 2; the
    packet goes to backend 1 from lb_ct4 and gets a correct way."""
    vip, ids = service(lab, "tcp")
    key = key4(L.CLIENT4, vip, SPORT, "tcp")
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]
    e = table(lab, key)
    h = flowhash.ct_cache_hash(key)
    n = early_in_period()
    line = layout.LbCtCacheLine()
    line.way[0].flow = key4(L.CLIENT4, vip, SPORT, "tcp")
    line.way[0].tag = (h ^ (1 << 7) if forgery == "hash" else h) | ids[1] << 32 | e.nat_port << 48
    if forgery == "flow":
        line.way[0].flow.sport ^= 1
    line.way[0].last_seen = n
    write_line(lab, key, line)
    set_table(lab, key, last_seen=n - secs(5))
    assert way_of(lab, key)[1] is None
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]
    assert table(lab, key).last_seen >= n               # served from lb_ct4
    w, dummy = assert_way_is_entry(lab, key)
    assert w.tag >> 32 & 0xFFFF == ids[0]
    assert send(lab, vip, "tcp") == L.BACKENDS4[0]      # and from the way since


# ---- 7. three flows, one line --------------------------------------------------------
def three_in_a_line(lab, vip):
    """Three source ports of CLIENT4 whose TCP flows share a line."""
    seen = {}
    for sport in range(1024, 65536):
        group = seen.setdefault(index_of(lab, key4(L.CLIENT4, vip, sport, "tcp")), [])
        group.append(sport)
        if len(group) == 3:
            return group
    raise AssertionError("no three flows in one line")


@pytest.mark.parametrize("older", [0, 1], ids=["way0-older", "way1-older"])
def test_third_flow_in_a_line_evicts_the_least_recently_seen(lab, older):
    vip, ids = service(lab, "tcp", backends=4)
    ports = three_in_a_line(lab, vip)
    keys = [key4(L.CLIENT4, vip, p, "tcp") for p in ports]
    for i in range(2):                      # flows 0 and 1 on backends 1 and 2
        lab.fill_ring(0, ids[i:i + 1])
        assert send(lab, vip, "tcp", ports[i]) == L.BACKENDS4[i]
    line = line_of(lab, keys[0])
    assert [bytes(w.flow) for w in line.way] == [bytes(k) for k in keys[:2]]
    n = early_in_period()
    line.way[older].last_seen, line.way[1 - older].last_seen = n - 2, n - 1
    write_line(lab, keys[0], line)
    lab.fill_ring(0, ids[2:3])
    assert send(lab, vip, "tcp", ports[2]) == L.BACKENDS4[2]
    line = line_of(lab, keys[0])
    assert bytes(line.way[older].flow) == bytes(keys[2])        # the older way was replaced
    assert bytes(line.way[1 - older].flow) == bytes(keys[1 - older])
    assert way_of(lab, keys[older])[1] is None
    for k in keys:
        set_table(lab, k, last_seen=n - secs(5))
    lab.fill_ring(0, ids[3:])               # a rescheduled flow would go to backend 4
    want = {0: L.BACKENDS4[0], 1: L.BACKENDS4[1], 2: L.BACKENDS4[2]}
    for i in (1 - older, 2):                # from their ways: lb_ct4 untouched
        assert send(lab, vip, "tcp", ports[i]) == want[i]
        assert table(lab, keys[i]).last_seen == n - secs(5)
    assert send(lab, vip, "tcp", ports[older]) == want[older]  # the evicted one, from lb_ct4
    assert table(lab, keys[older]).last_seen >= n
    assert_way_is_entry(lab, keys[older])                      # and back in a way
    for rnd in range(2):
        for i, p in enumerate(ports):
            assert send(lab, vip, "tcp", p) == want[i], (rnd, i)
    assert sorted(table(lab, k).backend_id for k in keys) == ids[:3]
    assert sum(way_of(lab, k)[1] is not None for k in keys) == 2


# ---- 8. UDP idle expiry with and without a way ----------------------------------------
T = 30


@pytest.mark.parametrize("served, age, stale", [
    ("lb_ct4", T + 0.5, False),         # an entry without a way may lag by a sync period
    ("lb_ct4", T + 1.5, True),
    ("way", T + 0.5, True),             # a way's last_seen is exact: no slack
    ("way", T - 0.5, False),
], ids=["table-lag-slack", "table-stale", "way-stale", "way-fresh"])
def test_udp_idle_expiry_with_and_without_a_way(lab, served, age, stale):
    vip, ids = service(lab, "udp", timeout=T)
    key = key4(L.CLIENT4, vip, SPORT, "udp")
    assert send(lab, vip, "udp") == L.BACKENDS4[0]
    lab.fill_ring(0, ids[1:])
    n = now()
    set_table(lab, key, last_seen=n - secs(age))
    if served == "way":
        set_way(lab, key, last_seen=n - secs(age))
    else:
        zero_line(lab, key)
    assert send(lab, vip, "udp") == L.BACKENDS4[1 if stale else 0]
    assert table(lab, key).backend_id == ids[1 if stale else 0]
    assert table(lab, key).last_seen >= n
    w, dummy = assert_way_is_entry(lab, key)
    assert w.last_seen >= n


# ---- 9. IPv6 has no cache -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["nat", "dsr"])
def test_ipv6_flows_leave_the_cache_empty(lab, mode):
    lab.configure(MODES[mode], flow_idle_timeout=30)
    vip6 = None
    for sid, proto in enumerate(("tcp", "udp")):
        vip6, dummy = L.setup_service(lab, 6, proto, port=80, backends=L.BACKENDS6[:2], sid=sid)
    for sport in range(43000, 43016):
        for proto in ("tcp", "udp"):
            for kw in ({"tcp_flags": "S", "payload": b""}, {}) if proto == "tcp" else ({}, {}):
                action, dummy = lab.run(client_frame(L.CLIENT6, vip6, proto, sport, 80, **kw))
                assert action == L.XDP_REDIRECT, L.ACTIONS[action]
    assert len(lab.maps["lb_ct6"].keys()) == 32
    lines = lab.maps["lb_ct4_cache"].lookup_batch(0, lab.ct_cache_lines())
    assert len(lines) == lab.ct_cache_lines()
    assert not any(w.tag or w.last_seen or bytes(w.flow).strip(b"\0") for line in lines for w in line.way)
    # the same with one IPv4 flow: the check above can see a way
    L.setup_service(lab, 4, "tcp", port=80, sid=2)
    assert send(lab, L.VIP4, "tcp") == L.BACKENDS4[0]
    lines = lab.maps["lb_ct4_cache"].lookup_batch(0, lab.ct_cache_lines())
    assert sum(1 for line in lines for w in line.way if w.tag) == 1


# ---- 10. a way replaced under a reader on another CPU ----------------------------------
RACE_SECONDS = 3


def test_way_replaced_on_another_cpu_never_sends_a_flow_elsewhere(lab):
    """Three TCP flows of one line (dsr, backends 1, 2, 3; nothing to
    reschedule to): one CPU runs flow 0's packet over and over, another
    alternates flows 1 and 2, each a miss that evicts a way, often flow 0's
    while a packet of flow 0 is reading it.  Every packet must still reach
    its own flow's backend (lb_be_stats): a reader must use only the tag it
    checked, never one read again after another CPU replaced the way."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    vip, ids = service(lab, "tcp", "dsr", backends=3)
    ports = three_in_a_line(lab, vip)
    frames = []
    for i, p in enumerate(ports):
        lab.fill_ring(0, ids[i:i + 1])
        assert send(lab, vip, "tcp", p) == L.BACKENDS4[i]
        frames.append(client_frame(L.CLIENT4, vip, "tcp", p, 80))
    lab.fill_ring(0, [])                # a flow taken for new would be dropped
    base = [lab.backend_packets(b) for b in ids]
    stop = threading.Event()
    sent, errors = [0, 0, 0], []
    ifindex = lab.ifindex["xlbdp0"]

    def reader():
        try:
            os.sched_setaffinity(0, {cpus[0]})
            while not stop.is_set():
                bpf.test_run(lab.prog_fd, frames[0], ingress_ifindex=ifindex, repeat=10000)
                sent[0] += 10000
        except Exception as exc:        # reported below
            errors.append(exc)

    def writer():
        try:
            os.sched_setaffinity(0, {cpus[1]})
            while not stop.is_set():
                for i in (1, 2):
                    bpf.test_run(lab.prog_fd, frames[i], ingress_ifindex=ifindex)
                    sent[i] += 1
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        time.sleep(RACE_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    got = [lab.backend_packets(b) - base[i] for i, b in enumerate(ids)]
    assert min(sent[1:]) > 1000, sent
    assert got == sent, "packets per backend %s, sent per flow %s" % (got, sent)
    assert lab.stats()["drop"] == 0
