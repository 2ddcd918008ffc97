"""The next-hop cache (lb_nexthop): bpf_fib_lookup results kept per CPU.

Most tests load a build with a one-hour lifetime, so that whether a packet
used the cache or a fresh lookup never depends on timing: a neighbour MAC
changed behind the cache's back shows which one it was.  Expiry is tested
with a 1 ms build and a sleep far longer than that.  Every neighbour a test
changes is put back, also on failure.
"""
import contextlib
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run

import dplab as L
from dpframes import assert_checksums, client_frame, frame

FAMILIES = {4: (L.CLIENT4, L.BACKENDS4, L.SNAT4), 6: (L.CLIENT6, L.BACKENDS6, L.SNAT6)}
NEW_MAC = "02:00:00:00:99:99"
HOUR_MS = 3600 * 1000
REPLY_BASE = layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"]


@contextlib.contextmanager
def neighbour(lab, address, mac):
    """The lab's neighbour ``address`` answers with ``mac`` (or is unresolved
    for mac None) inside the block; the original entry afterwards."""
    dev, orig = L.NEIGH.get(address, ("xlbdp1", None))

    def put(value):
        if value:
            run(["ip", "-n", lab.ns, "neigh", "replace", address, "lladdr", value, "dev", dev,
                 "nud", "permanent"])
        else:
            run(["ip", "-n", lab.ns, "neigh", "del", address, "dev", dev])

    put(mac)
    try:
        yield
    finally:
        put(orig)


def entries(lab, slot):
    """The non-empty per-CPU entries of a slot."""
    return [e for e in lab.maps["lb_nexthop"].lookup(layout.U32(slot)) if e.expires]


def nat_setup(lab, family, backend=None):
    client, backends, dummy = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, family, "tcp", port=80, backends=[backend or backends[0]])
    return client, vip, ids[0]


def nat_port_of(lab, client, vip, sport):
    return layout.ntohs(lab.ct_entry(L.flow_key(client, vip, sport, 80, "tcp")).nat_port)


@pytest.mark.parametrize("family", [4, 6])
def test_nat_cache_hit_gives_the_lookups_bytes(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, family)
    be, snat = FAMILIES[family][1][0], FAMILIES[family][2]
    first = lab.run(client_frame(client, vip, "tcp", 35000, 80))
    filled = entries(lab, bid)
    assert len(filled) == 1
    e = filled[0]
    assert layout.unpack_addr(e.daddr, e.family) == be
    assert layout.unpack_addr(e.saddr, e.family) == snat
    assert (e.in_ifindex, e.out_ifindex) == (lab.ifindex["xlbdp0"], lab.ifindex["xlbdp1"])
    assert bytes(e.dmac) == L.mac_bytes(L.NEIGH[be][1])
    assert bytes(e.smac) == L.mac_bytes(L.MAC["xlbdp1"])
    assert 40 < e.mtu <= 1500
    second = lab.run(client_frame(client, vip, "tcp", 35000, 80))
    assert second == first
    nat_port = nat_port_of(lab, client, vip, 35000)
    assert first == (L.XDP_REDIRECT, frame(snat, be, "tcp", nat_port, 80, smac=L.MAC["xlbdp1"],
                                           dmac=L.NEIGH[be][1]))
    assert_checksums(second[1])
    # A new flow to the same backend uses the entry as well.
    action, out = lab.run(client_frame(client, vip, "tcp", 35001, 80))
    assert action == L.XDP_REDIRECT and out[:6] == first[1][:6]
    assert lab.stats()["redirect"] == 3


@pytest.mark.parametrize("family", [4, 6])
def test_nat_changed_neighbour_is_seen_after_a_flush(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, family)
    be = FAMILIES[family][1][0]
    old_mac = L.NEIGH[be][1]
    assert lab.run(client_frame(client, vip, "tcp", 35010, 80))[1][:6] == L.mac_bytes(old_mac)
    with neighbour(lab, be, NEW_MAC):
        # Within the lifetime the entry answers: this is the documented price.
        action, out = lab.run(client_frame(client, vip, "tcp", 35010, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(old_mac))
        lab.flush_nexthops()
        action, out = lab.run(client_frame(client, vip, "tcp", 35010, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(NEW_MAC))
        assert bytes(entries(lab, bid)[0].dmac) == L.mac_bytes(NEW_MAC)


@pytest.mark.parametrize("clock", ["jiffies", "coarse_ns"])
def test_expired_entry_is_looked_up_again(lab, use_build, clock):
    if clock == "jiffies" and not build.host_defines():
        pytest.skip("CONFIG_HZ of this kernel unknown: the data plane uses coarse ns")
    # 1 ms lifetime; XDP_LB_HZ=None: the clock without CONFIG_HZ
    use_build(XDP_LB_NH_TTL_MS=1, **({} if clock == "jiffies" else {"XDP_LB_HZ": None}))
    client, vip, dummy = nat_setup(lab, 4)
    be = L.BACKENDS4[0]
    assert lab.run(client_frame(client, vip, "tcp", 35020, 80))[1][:6] == L.mac_bytes(L.NEIGH[be][1])
    with neighbour(lab, be, NEW_MAC):
        time.sleep(0.05)             # 50 times the lifetime (the clock ticks every 1-10 ms)
        action, out = lab.run(client_frame(client, vip, "tcp", 35020, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(NEW_MAC))


def test_no_cache_build_looks_every_packet_up(lab, use_build):
    use_build(XDP_LB_NH_TTL_MS=0)
    client, vip, bid = nat_setup(lab, 4)
    be = L.BACKENDS4[0]
    assert lab.run(client_frame(client, vip, "tcp", 35030, 80))[0] == L.XDP_REDIRECT
    with neighbour(lab, be, NEW_MAC):
        action, out = lab.run(client_frame(client, vip, "tcp", 35030, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(NEW_MAC))
    assert entries(lab, bid) == []


@pytest.mark.parametrize("family", [4, 6])
def test_reused_backend_id_with_another_address_does_not_use_the_entry(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, family)
    backends = FAMILIES[family][1]
    assert lab.run(client_frame(client, vip, "tcp", 35040, 80))[1][:6] == \
        L.mac_bytes(L.NEIGH[backends[0]][1])
    # Same id, another address (and MAC): the flow follows its backend id.
    lab.set_backend(bid, backends[1], 0)
    action, out = lab.run(client_frame(client, vip, "tcp", 35040, 80))
    nat_port = nat_port_of(lab, client, vip, 35040)
    assert (action, out) == (L.XDP_REDIRECT, frame(
        FAMILIES[family][2], backends[1], "tcp", nat_port, 80, smac=L.MAC["xlbdp1"],
        dmac=L.NEIGH[backends[1]][1]))
    e = entries(lab, bid)[0]
    assert layout.unpack_addr(e.daddr, e.family) == backends[1]


@pytest.mark.parametrize("family", [4, 6])
def test_packet_over_the_mtu_bypasses_the_entry(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, family)
    assert lab.run(client_frame(client, vip, "tcp", 35050, 80))[0] == L.XDP_REDIRECT
    mtu = entries(lab, bid)[0].mtu
    big = client_frame(client, vip, "tcp", 35050, 80, payload=b"m" * 1600)   # L3 > 1500
    assert lab.run(big) == (L.XDP_PASS, big)          # the lookup says FRAG_NEEDED
    stats = lab.stats()
    assert (stats["pass"], stats["fib_miss"]) == (1, 1)
    assert entries(lab, bid)[0].mtu == mtu            # a failure changes nothing
    # Up to the MTU the entry answers (and packets of any such length do).
    hdr = 20 + 20 if family == 4 else 40 + 20
    fits = client_frame(client, vip, "tcp", 35050, 80, payload=b"f" * (1500 - hdr))
    action, out = lab.run(fits)
    assert action == L.XDP_REDIRECT and len(out) == len(fits) == 1514


@pytest.mark.parametrize("family", [4, 6])
def test_unresolved_neighbour_is_never_cached(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    unresolved = L.NO_NEIGH4 if family == 4 else L.NO_NEIGH6
    client, vip, bid = nat_setup(lab, family, backend=unresolved)
    assert lab.run(client_frame(client, vip, "tcp", 35060, 80))[0] == L.XDP_PASS
    assert entries(lab, bid) == []
    with neighbour(lab, unresolved, NEW_MAC):
        # Resolved now: the very next packet is forwarded (nothing was kept).
        action, out = lab.run(client_frame(client, vip, "tcp", 35060, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(NEW_MAC))
        assert len(entries(lab, bid)) == 1
    lab.flush_nexthops()
    assert lab.run(client_frame(client, vip, "tcp", 35060, 80))[0] == L.XDP_PASS
    assert entries(lab, bid) == []


def test_entry_is_per_ingress_interface(lab, use_build):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, 4)
    assert lab.run(client_frame(client, vip, "tcp", 35070, 80), "xlbdp0")[0] == L.XDP_REDIRECT
    assert entries(lab, bid)[0].in_ifindex == lab.ifindex["xlbdp0"]
    # The same flow arriving on the backends' side: looked up for that
    # interface (same link out: XDP_TX), and the entry now says so.
    assert lab.run(client_frame(client, vip, "tcp", 35070, 80), "xlbdp1")[0] == L.XDP_TX
    assert entries(lab, bid)[0].in_ifindex == lab.ifindex["xlbdp1"]


def test_changed_nat_source_does_not_use_the_entry(lab, use_build):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, bid = nat_setup(lab, 4)
    assert lab.run(client_frame(client, vip, "tcp", 35080, 80))[0] == L.XDP_REDIRECT
    cfg = lab.configure(layout.MODE_NAT)
    cfg.snat_v4 = layout.pack_addr(L.LB4["xlbdp0"])[0][0]
    lab.maps["lb_config"].update(layout.U32(0), cfg)
    assert lab.run(client_frame(client, vip, "tcp", 35081, 80))[0] == L.XDP_REDIRECT
    e = entries(lab, bid)[0]
    assert layout.unpack_addr(e.saddr, 2) == L.LB4["xlbdp0"]


@pytest.mark.parametrize("family", [4, 6])
def test_dsr_uses_the_entry_for_every_client(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    be = FAMILIES[family][1][1]
    clients = ["198.18.0.10", "198.18.0.11"] if family == 4 else ["fd00:18::10", "fd00:18::11"]
    lab.configure(layout.MODE_DSR)
    vip, ids = L.setup_service(lab, family, "tcp", port=80, backends=[be])
    first = client_frame(clients[0], vip, "tcp", 36000, 80)
    assert lab.run(first) == (L.XDP_REDIRECT, frame(clients[0], vip, "tcp", 36000, 80,
                                                    smac=L.MAC["xlbdp1"], dmac=L.NEIGH[be][1]))
    e = entries(lab, ids[0])[0]
    assert list(e.saddr) == [0, 0, 0, 0]       # dsr: the client is not part of the check
    with neighbour(lab, be, NEW_MAC):
        action, out = lab.run(client_frame(clients[1], vip, "tcp", 36001, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(L.NEIGH[be][1]))
        lab.flush_nexthops()
        action, out = lab.run(client_frame(clients[1], vip, "tcp", 36001, 80))
        assert (action, out[:6]) == (L.XDP_REDIRECT, L.mac_bytes(NEW_MAC))


@pytest.mark.parametrize("family", [4, 6])
def test_reply_cache_by_client(lab, use_build, family):
    use_build(XDP_LB_NH_TTL_MS=HOUR_MS)
    client, vip, dummy = nat_setup(lab, family)
    be, snat = FAMILIES[family][1][0], FAMILIES[family][2]
    assert lab.run(client_frame(client, vip, "tcp", 35090, 80))[0] == L.XDP_REDIRECT
    nat_port = nat_port_of(lab, client, vip, 35090)
    reply = frame(be, snat, "tcp", 80, nat_port, smac=L.NEIGH[be][1], dmac=L.MAC["xlbdp1"])
    want = frame(vip, client, "tcp", 80, 35090, smac=L.MAC["xlbdp0"], dmac=L.NEIGH[client][1])
    assert lab.run(reply, "xlbdp1") == (L.XDP_REDIRECT, want)
    slots = [s for s in range(REPLY_BASE, REPLY_BASE + layout.DEFAULT_SIZES["XDP_LB_NH_REPLY_SLOTS"])
             if entries(lab, s)]
    assert len(slots) == 1
    e = entries(lab, slots[0])[0]
    assert (layout.unpack_addr(e.daddr, e.family), layout.unpack_addr(e.saddr, e.family)) == (client, vip)
    assert lab.run(reply, "xlbdp1") == (L.XDP_REDIRECT, want)       # from the entry
    with neighbour(lab, client, NEW_MAC):
        assert lab.run(reply, "xlbdp1")[1][:6] == L.mac_bytes(L.NEIGH[client][1])
        lab.flush_nexthops()
        assert lab.run(reply, "xlbdp1")[1][:6] == L.mac_bytes(NEW_MAC)
    assert lab.stats()["nat_reply"] == 4
