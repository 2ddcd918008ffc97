"""The service cache (lb_svc_cache): conntrack hits skip the lb_services lookup.

A known flow keeps its backend without the lookup while lb_svc_cache[the
backend's service id] names the flow's (VIP, port, protocol) and is younger
than XDP_LB_SVC_TTL_MS.  The tests run a one-hour build (or 1 ms, or none)
so that the outcome never depends on timing.
"""
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout

import dplab as L
from dpframes import client_frame, frame

HOUR_MS = 3600 * 1000
FAMILIES = {4: (L.CLIENT4, L.BACKENDS4, L.SNAT4, L.VIP4), 6: (L.CLIENT6, L.BACKENDS6, L.SNAT6, L.VIP6)}
OTHER_VIP = {4: "198.18.3.1", 6: "fd00:18:3::1"}


def cached(lab, sid):
    """The non-empty per-CPU entries of lb_svc_cache[sid]."""
    return [e for e in lab.maps["lb_svc_cache"].lookup(layout.U32(sid)) if e.expires]


def established(lab, family, mode=layout.MODE_NAT, sport=37000):
    client, backends, dummy, dummy = FAMILIES[family]
    lab.configure(mode)
    vip, ids = L.setup_service(lab, family, "tcp", port=80, backends=[backends[0]])
    inp = client_frame(client, vip, "tcp", sport, 80)
    assert lab.run(inp)[0] == L.XDP_REDIRECT
    return client, vip, ids[0], inp


def remove_service(lab, vip, port=80, proto="tcp"):
    addr, family = layout.pack_addr(vip)
    lab.maps["lb_services"].delete(layout.LbServiceKey(
        vip=addr, port=layout.htons(port), proto=layout.PROTOCOLS[proto], family=family))


@pytest.mark.parametrize("family", [4, 6])
def test_lookup_fills_the_cache_and_hits_use_it(lab, use_build, family):
    use_build(XDP_LB_SVC_TTL_MS=HOUR_MS)
    client, vip, bid, inp = established(lab, family)
    entries = cached(lab, 0)
    assert len(entries) == 1
    key = entries[0].key
    assert (layout.unpack_addr(key.vip, key.family), layout.ntohs(key.port), key.proto) == \
        (vip, 80, layout.PROTOCOLS["tcp"])
    first = lab.run(inp)
    assert first[0] == L.XDP_REDIRECT
    # The service is gone from lb_services, its backend still active: the
    # established flow is still answered from the cache (the documented
    # lifetime), a new flow is not (it needs the lookup).
    remove_service(lab, vip)
    assert lab.run(inp) == first
    new = client_frame(client, vip, "tcp", 37001, 80)
    assert lab.run(new) == (L.XDP_PASS, new)
    # Without the cache entry the lookup decides: not a service, pass.
    lab.flush_services()
    assert lab.run(inp) == (L.XDP_PASS, inp)


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
def test_without_the_cache_removal_ends_flows_at_once(lab, use_build, mode):
    use_build(XDP_LB_SVC_TTL_MS=0)
    dummy, vip, dummy, inp = established(lab, 4, mode)
    assert lab.run(inp)[0] == L.XDP_REDIRECT
    remove_service(lab, vip)
    assert lab.run(inp) == (L.XDP_PASS, inp)
    assert cached(lab, 0) == []


@pytest.mark.parametrize("clock", ["jiffies", "coarse_ns"])
def test_expired_entry_means_a_lookup(lab, use_build, clock):
    if clock == "jiffies" and not build.host_defines():
        pytest.skip("CONFIG_HZ of this kernel unknown: the data plane uses coarse ns")
    use_build(XDP_LB_SVC_TTL_MS=1, **({} if clock == "jiffies" else {"XDP_LB_HZ": None}))
    dummy, vip, dummy, inp = established(lab, 4)
    remove_service(lab, vip)
    time.sleep(0.05)                 # 50 times the lifetime
    assert lab.run(inp) == (L.XDP_PASS, inp)


@pytest.mark.parametrize("family", [4, 6])
def test_flow_to_another_vip_does_not_use_the_entry(lab, use_build, family):
    """A conntrack entry whose flow is not the cached service's key (here
    written by hand: a flow to an address that is no service) is decided by
    the lookup, even though its backend is active."""
    use_build(XDP_LB_SVC_TTL_MS=HOUR_MS)
    client, dummy, bid, dummy = established(lab, family)
    other = OTHER_VIP[family]
    lab.maps["lb_ct"].update(L.flow_key(client, other, 37002, 80, "tcp"),
                             layout.LbCtEntry(backend_id=bid, nat_port=layout.htons(40500)))
    inp = client_frame(client, other, "tcp", 37002, 80)
    assert lab.run(inp) == (L.XDP_PASS, inp)


def test_service_id_given_to_another_service(lab, use_build):
    """Service 0 and backend 1 are removed and given to another VIP: within
    the lifetime the old flow follows its backend id (the documented price);
    the first lookup of the new service (or a flush) ends that."""
    use_build(XDP_LB_SVC_TTL_MS=HOUR_MS)
    client, vip, bid, inp = established(lab, 4)
    remove_service(lab, vip)
    lab.set_backend(bid, L.BACKENDS4[1], 0)
    lab.add_service(OTHER_VIP[4], 80, "tcp", 0)
    assert lab.run(inp)[0] == L.XDP_REDIRECT                 # still the cached key
    # A packet of the new service looks it up: the entry now names it.
    new = client_frame(client, OTHER_VIP[4], "tcp", 37003, 80)
    action, out = lab.run(new)
    assert action == L.XDP_REDIRECT and out[:6] == L.mac_bytes(L.NEIGH[L.BACKENDS4[1]][1])
    key = cached(lab, 0)[0].key
    assert layout.unpack_addr(key.vip, key.family) == OTHER_VIP[4]
    assert lab.run(inp) == (L.XDP_PASS, inp)                 # the old VIP is no service


@pytest.mark.parametrize("family", [4, 6])
def test_hit_through_the_cache_gives_the_same_bytes(lab, use_build, family):
    use_build(XDP_LB_SVC_TTL_MS=HOUR_MS)
    client, vip, bid, inp = established(lab, family)
    be, snat = FAMILIES[family][1][0], FAMILIES[family][2]
    nat_port = layout.ntohs(lab.ct_entry(L.flow_key(client, vip, 37000, 80, "tcp")).nat_port)
    want = frame(snat, be, "tcp", nat_port, 80, smac=L.MAC["xlbdp1"], dmac=L.NEIGH[be][1])
    lab.flush_services()
    assert lab.run(inp) == (L.XDP_REDIRECT, want)            # through the lookup
    assert lab.run(inp) == (L.XDP_REDIRECT, want)            # through the cache
    assert lab.backend_packets(bid) == 3
