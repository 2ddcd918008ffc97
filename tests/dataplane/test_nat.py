"""nat mode: both directions, exact bytes out, checksums, next-hop cases."""
import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import assert_checksums, client_frame, frame

FAMILIES = {4: (L.CLIENT4, L.BACKENDS4, L.SNAT4), 6: (L.CLIENT6, L.BACKENDS6, L.SNAT6)}


def _nat_port(lab, client, vip, sport, dport, proto):
    entry = lab.ct_entry(L.flow_key(client, vip, sport, dport, proto))
    assert entry is not None, "no conntrack entry for the flow"
    return layout.ntohs(entry.nat_port), entry.backend_id


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_round_trip(lab, family, proto):
    client, backends, snat = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, family, proto, port=80, backend_port=8080)
    be = backends[0]

    action, out = lab.run(client_frame(client, vip, proto, 33000, 80), "xlbdp0")
    assert action == L.XDP_REDIRECT
    nat_port, bid = _nat_port(lab, client, vip, 33000, 80, proto)
    assert bid == ids[0]
    # The port is the first probe of the 5-tuple hash (nothing else holds one).
    want_port = 40000 + L.hash_flow(client, vip, 33000, 80, frames_proto(proto),
                                    seed=L.SEED_PORT) % 1000
    assert nat_port == want_port
    assert out == frame(snat, be, proto, nat_port, 8080, smac=L.MAC["xlbdp1"],
                        dmac=L.NEIGH[be][1])
    assert_checksums(out)

    # The backend answers snat:nat_port; the client gets VIP:80 -> client:33000.
    reply = frame(be, snat, proto, 8080, nat_port, smac=L.NEIGH[be][1], dmac=L.MAC["xlbdp1"],
                  payload=b"reply from the backend")
    action, back = lab.run(reply, "xlbdp1")
    assert action == L.XDP_REDIRECT
    assert back == frame(vip, client, proto, 80, 33000, smac=L.MAC["xlbdp0"],
                         dmac=L.NEIGH[client][1], payload=b"reply from the backend")
    assert_checksums(back)

    # Second packet of the flow: conntrack hit, same translation.
    action, again = lab.run(client_frame(client, vip, proto, 33000, 80, payload=b"second"))
    assert action == L.XDP_REDIRECT
    assert again == frame(snat, be, proto, nat_port, 8080, smac=L.MAC["xlbdp1"],
                          dmac=L.NEIGH[be][1], payload=b"second")
    stats = lab.stats()
    assert (stats["redirect"], stats["nat_reply"], stats["pass"], stats["drop"]) == (3, 1, 0, 0)
    assert lab.backend_packets(ids[0]) == 2


def frames_proto(proto):
    return layout.PROTOCOLS[proto]


@pytest.mark.parametrize("family", [4, 6])
def test_backend_port_zero_keeps_service_port_and_same_link_is_tx(lab, family):
    client = FAMILIES[family][0]
    snat = L.SNAT4 if family == 4 else L.SNAT6
    local = L.LOCAL_BACKEND4 if family == 4 else L.LOCAL_BACKEND6
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, family, "tcp", port=443, backends=[local])
    action, out = lab.run(client_frame(client, vip, "tcp", 40100, 443), "xlbdp0")
    assert action == L.XDP_TX
    nat_port, dummy = _nat_port(lab, client, vip, 40100, 443, "tcp")
    assert out == frame(snat, local, "tcp", nat_port, 443, smac=L.MAC["xlbdp0"],
                        dmac=L.NEIGH[local][1])
    assert lab.stats()["tx"] == 1


def test_udp_v4_zero_checksum_stays_zero(lab):
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, 4, "udp", port=53, backend_port=5353)
    action, out = lab.run(client_frame(L.CLIENT4, vip, "udp", 5000, 53, udp_chksum=0))
    assert action == L.XDP_REDIRECT
    nat_port, dummy = _nat_port(lab, L.CLIENT4, vip, 5000, 53, "udp")
    want = frame(L.SNAT4, L.BACKENDS4[0], "udp", nat_port, 5353, smac=L.MAC["xlbdp1"],
                 dmac=L.NEIGH[L.BACKENDS4[0]][1], udp_chksum=0)
    assert out == want
    assert out[14 + 20 + 6:14 + 20 + 8] == b"\0\0"
    # The flow's next packet is a conntrack hit (from its lb_ct4_cache way)
    # with a cached next hop: the same.
    action, out = lab.run(client_frame(L.CLIENT4, vip, "udp", 5000, 53, udp_chksum=0))
    assert action == L.XDP_REDIRECT
    assert out == want
    # And the reply direction.
    reply = frame(L.BACKENDS4[0], L.SNAT4, "udp", 5353, nat_port, smac="02:00:00:00:01:0a",
                  dmac=L.MAC["xlbdp1"], udp_chksum=0)
    action, back = lab.run(reply, "xlbdp1")
    assert action == L.XDP_REDIRECT
    assert back == frame(vip, L.CLIENT4, "udp", 53, 5000, smac=L.MAC["xlbdp0"],
                         dmac=L.NEIGH[L.CLIENT4][1], udp_chksum=0)


@pytest.mark.parametrize("family", [4, 6])
def test_udp_checksum_computed_zero_is_sent_as_ffff(lab, family):
    client, backends, snat = FAMILIES[family]
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, family, "udp", port=53)
    lab.run(client_frame(client, vip, "udp", 5001, 53))
    nat_port, dummy = _nat_port(lab, client, vip, 5001, 53, "udp")
    # Choose the payload's first word so that the translated datagram sums
    # to 0xffff, i.e. its checksum computes to 0 (sent as 0xffff).
    probe = frame(snat, backends[0], "udp", nat_port, 53, smac=L.MAC["xlbdp1"],
                  dmac=L.NEIGH[backends[0]][1], payload=b"\0\0tail")
    udp_off = 14 + (20 if family == 4 else 40)
    fill = int.from_bytes(probe[udp_off + 6:udp_off + 8], "big")
    payload = fill.to_bytes(2, "big") + b"tail"
    action, out = lab.run(client_frame(client, vip, "udp", 5001, 53, payload=payload))
    assert action == L.XDP_REDIRECT
    assert out[udp_off + 6:udp_off + 8] == b"\xff\xff"
    assert out == frame(snat, backends[0], "udp", nat_port, 53, smac=L.MAC["xlbdp1"],
                        dmac=L.NEIGH[backends[0]][1], payload=payload)
    assert_checksums(out)


@pytest.mark.parametrize("family", [4, 6])
def test_no_neighbour_passes_the_rewritten_packet(lab, family):
    client, dummy, snat = FAMILIES[family]
    unresolved = L.NO_NEIGH4 if family == 4 else L.NO_NEIGH6
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, family, "tcp", backends=[unresolved])
    inp = client_frame(client, vip, "tcp", 41000, 80)
    action, out = lab.run(inp)
    assert action == L.XDP_PASS
    nat_port, dummy = _nat_port(lab, client, vip, 41000, 80, "tcp")
    # Addresses and ports translated, MACs as they came: the kernel forwards it.
    assert out == frame(snat, unresolved, "tcp", nat_port, 80, smac=L.NEIGH[client][1],
                        dmac=L.MAC["xlbdp0"])
    assert_checksums(out)
    stats = lab.stats()
    assert (stats["pass"], stats["fib_miss"]) == (1, 1)


@pytest.mark.parametrize("family", [4, 6])
def test_no_route_passes_untouched(lab, family):
    client = FAMILIES[family][0]
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, family, "tcp",
                                 backends=[L.NO_ROUTE4 if family == 4 else L.NO_ROUTE6])
    inp = client_frame(client, vip, "tcp", 41001, 80)
    assert lab.run(inp) == (L.XDP_PASS, inp)
    assert lab.stats()["fib_miss"] == 1


def test_reply_to_client_without_neighbour_is_translated_and_passed(lab):
    client = "198.18.0.18"        # on link, no neighbour entry
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, 4, "tcp")
    action, dummy = lab.run(client_frame(client, vip, "tcp", 41002, 80))
    assert action == L.XDP_REDIRECT
    nat_port, dummy = _nat_port(lab, client, vip, 41002, 80, "tcp")
    be = L.BACKENDS4[0]
    reply = frame(be, L.SNAT4, "tcp", 80, nat_port, smac=L.NEIGH[be][1], dmac=L.MAC["xlbdp1"])
    action, back = lab.run(reply, "xlbdp1")
    assert action == L.XDP_PASS
    assert back == frame(vip, client, "tcp", 80, 41002, smac=L.NEIGH[be][1],
                         dmac=L.MAC["xlbdp1"])


def test_unknown_reply_port_is_not_translated(lab):
    lab.configure(layout.MODE_NAT)
    L.setup_service(lab, 4, "tcp")
    be = L.BACKENDS4[0]
    reply = frame(be, L.SNAT4, "tcp", 80, 40001, smac=L.NEIGH[be][1], dmac=L.MAC["xlbdp1"])
    assert lab.run(reply, "xlbdp1") == (L.XDP_PASS, reply)
    assert lab.stats()["nat_reply"] == 0


def test_port_pool_exhausted_is_ct_full(lab):
    lab.configure(layout.MODE_NAT, port_min=40000, port_max=40000)
    vip, dummy = L.setup_service(lab, 4, "tcp")
    assert lab.run(client_frame(L.CLIENT4, vip, "tcp", 1111, 80))[0] == L.XDP_REDIRECT
    assert lab.run(client_frame(L.CLIENT4, vip, "tcp", 2222, 80))[0] == L.XDP_DROP
    stats = lab.stats()
    assert (stats["drop"], stats["ct_full"], stats["redirect"]) == (1, 1, 1)
    assert lab.ct_entry(L.flow_key(L.CLIENT4, vip, 2222, 80, "tcp")) is None


def test_no_snat_address_drops(lab):
    lab.configure(layout.MODE_NAT, snat=False)
    vip, dummy = L.setup_service(lab, 4, "tcp")
    action, dummy = lab.run(client_frame(L.CLIENT4, vip, "tcp", 1111, 80))
    assert action == L.XDP_DROP
    assert lab.stats()["drop"] == 1
