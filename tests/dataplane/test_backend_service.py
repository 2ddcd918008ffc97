"""A backend's service key (lb_backend.service, ABI 6): conntrack hits skip the lb_services lookup.

A known flow keeps its backend without the lookup while the backend is
active and the key of its service, written with the backend by the control
plane, is the packet's (VIP, port, protocol, family).  Any other case (a
backend written without the key, a flow to another address) is decided by
the lookup, as before ABI 6.  Up to ABI 5 a per-CPU service cache
(lb_svc_cache) answered instead, and saw changes up to its lifetime late.
"""
import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import client_frame, frame

FAMILIES = {4: (L.CLIENT4, L.BACKENDS4, L.SNAT4, L.VIP4), 6: (L.CLIENT6, L.BACKENDS6, L.SNAT6, L.VIP6)}
OTHER_VIP = {4: "198.18.3.1", 6: "fd00:18:3::1"}


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


def backend(lab, bid):
    return lab.maps["lb_backends"].lookup(layout.U32(bid))


def without_service_key(lab, bid):
    """Backend ``bid`` as a control plane before ABI 6 wrote it."""
    be = backend(lab, bid)
    be.service = layout.LbServiceKey()
    lab.maps["lb_backends"].update(layout.U32(bid), be)


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
@pytest.mark.parametrize("family", [4, 6])
def test_backend_carries_its_service_key_and_hits_use_it(lab, family, mode):
    dummy, vip, bid, inp = established(lab, family, mode)
    key = backend(lab, bid).service
    assert (layout.unpack_addr(key.vip, key.family), layout.ntohs(key.port), key.proto) == \
        (vip, 80, layout.PROTOCOLS["tcp"])
    first = lab.run(inp)
    assert first[0] == L.XDP_REDIRECT
    # lb_services no longer has the service, the backend still names it: the
    # established flow is decided by the backend (the control plane clears
    # a removed service's backends in the same change, next step)...
    remove_service(lab, vip)
    assert lab.run(inp) == first
    # ... and clearing the backend ends it at once: not a service, pass.
    lab.maps["lb_backends"].update(layout.U32(bid), layout.LbBackend())
    assert lab.run(inp) == (L.XDP_PASS, inp)


@pytest.mark.parametrize("mode", [layout.MODE_NAT, layout.MODE_DSR])
def test_backend_without_key_is_decided_by_the_lookup(lab, mode):
    """A backend written by an older control plane (no service key) still
    keeps its flows, through lb_services; removing the service ends them."""
    dummy, vip, bid, inp = established(lab, 4, mode)
    first = lab.run(inp)
    without_service_key(lab, bid)
    assert lab.run(inp) == first
    remove_service(lab, vip)
    assert lab.run(inp) == (L.XDP_PASS, inp)


@pytest.mark.parametrize("family", [4, 6])
def test_flow_to_another_vip_does_not_use_the_backend_key(lab, family):
    """A conntrack entry whose flow is not the backend's service (here
    written by hand: a flow to an address that is no service) is decided by
    the lookup, even though its backend is active."""
    client, dummy, bid, dummy = established(lab, family)
    other = OTHER_VIP[family]
    lab.vip_filter_add(other)
    lab.maps["lb_ct"].update(L.flow_key(client, other, 37002, 80, "tcp"),
                             layout.LbCtEntry(backend_id=bid, nat_port=layout.htons(40500)))
    inp = client_frame(client, other, "tcp", 37002, 80)
    assert lab.run(inp) == (L.XDP_PASS, inp)


def test_service_id_given_to_another_service(lab):
    """Service 0 and backend 1 are removed and given to another VIP: the
    old flow ends at once (the rewritten backend names the new VIP; up to
    ABI 5 the service cache kept it going for up to its lifetime)."""
    client, vip, bid, inp = established(lab, 4)
    remove_service(lab, vip)
    lab.set_backend(bid, L.BACKENDS4[1], 0)
    lab.add_service(OTHER_VIP[4], 80, "tcp", 0)
    assert lab.run(inp) == (L.XDP_PASS, inp)                 # the old VIP is no service
    new = client_frame(client, OTHER_VIP[4], "tcp", 37003, 80)
    action, out = lab.run(new)
    assert action == L.XDP_REDIRECT and out[:6] == L.mac_bytes(L.NEIGH[L.BACKENDS4[1]][1])


@pytest.mark.parametrize("family", [4, 6])
def test_hit_through_the_backend_key_gives_the_same_bytes(lab, family):
    client, vip, bid, inp = established(lab, family)
    be, snat = FAMILIES[family][1][0], FAMILIES[family][2]
    nat_port = layout.ntohs(lab.ct_entry(L.flow_key(client, vip, 37000, 80, "tcp")).nat_port)
    want = frame(snat, be, "tcp", nat_port, 80, smac=L.MAC["xlbdp1"], dmac=L.NEIGH[be][1])
    assert lab.run(inp) == (L.XDP_REDIRECT, want)            # through the backend's key
    with_key = backend(lab, bid)
    without_service_key(lab, bid)
    assert lab.run(inp) == (L.XDP_REDIRECT, want)            # through the lookup
    lab.maps["lb_backends"].update(layout.U32(bid), with_key)
    assert lab.run(inp) == (L.XDP_REDIRECT, want)
    assert lab.backend_packets(bid) == 4
