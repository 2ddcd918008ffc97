"""Conntrack expiry: a new flow on an old entry is scheduled afresh (drain holds).

Rules (files/xdp_loadbalancer.c, "conntrack expiry"): a TCP SYN without
ACK on an existing entry, and a UDP packet on an entry idle longer than
lb_config.flow_idle_timeout, are new flows; other packets keep the
backend, also a drained one (active, out of the ring).  A flow moved to
another backend in nat mode releases its old reply entry.

"Drain" here is what the control plane does for weight 0: the backend stays
active in lb_backends and leaves the ring (fill_ring without it).
"""
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout, maps

import dplab as L
from dpframes import client_frame, frame

FAMILIES = {4: (L.CLIENT4, L.BACKENDS4, L.SNAT4), 6: (L.CLIENT6, L.BACKENDS6, L.SNAT6)}
MODES = {"nat": layout.MODE_NAT, "dsr": layout.MODE_DSR}
SPORT = 41000


def hz_of_build():
    """Clock units per second of the lab's default build (jiffies if the
    host's CONFIG_HZ is known, else coarse ns)."""
    return build.host_defines().get("XDP_LB_HZ") or 1000000000


def service(lab, family, proto, mode="nat", timeout=0):
    """Two backends (ids 1, 2); the ring holds backend 1 only."""
    lab.configure(MODES[mode], flow_idle_timeout=timeout)
    vip, ids = L.setup_service(lab, family, proto, port=80,
                               backends=FAMILIES[family][1][:2])
    lab.fill_ring(0, ids[:1])
    return vip, ids


def backend_of(out, family):
    """Which backend address a forwarded frame goes to (by destination MAC)."""
    macs = {L.mac_bytes(L.NEIGH[b][1]): b for b in FAMILIES[family][1]}
    return macs.get(out[:6])


def entry(lab, client, vip, proto, sport=SPORT):
    return lab.ct_entry(L.flow_key(client, vip, sport, 80, proto))


def age_entry(lab, client, vip, proto, seconds, sport=SPORT):
    """Moves the entry's last-seen time ``seconds`` into the past."""
    key = L.flow_key(client, vip, sport, 80, proto)
    e = lab.ct_entry(key)
    e.last_seen -= seconds * hz_of_build()
    lab.maps["lb_ct"].update(key, e)


def reply(family, backend, nat_port):
    snat = FAMILIES[family][2]
    return frame(backend, snat, "tcp", 80, nat_port, smac=L.NEIGH[backend][1],
                 dmac=L.MAC["xlbdp1"])


@pytest.mark.parametrize("mode", ["nat", "dsr"])
@pytest.mark.parametrize("family", [4, 6])
def test_syn_on_existing_entry_to_drained_backend_goes_elsewhere(lab, family, mode):
    client, backends, dummy = FAMILIES[family]
    vip, ids = service(lab, family, "tcp", mode)
    syn = client_frame(client, vip, "tcp", SPORT, 80, tcp_flags="S", payload=b"")
    ack = client_frame(client, vip, "tcp", SPORT, 80)
    action, out = lab.run(syn)
    assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[0]
    assert entry(lab, client, vip, "tcp").backend_id == ids[0]

    lab.fill_ring(0, ids[1:])                  # drain backend 1
    action, out = lab.run(ack)                 # established: stays
    assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[0]
    before = lab.backend_packets(ids[0])

    action, out = lab.run(syn)                 # a new connection from the same port
    assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[1]
    assert entry(lab, client, vip, "tcp").backend_id == ids[1]
    action, out = lab.run(ack)
    assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[1]
    assert lab.backend_packets(ids[0]) == before
    assert lab.backend_packets(ids[1]) == 2


@pytest.mark.parametrize("family", [4, 6])
def test_rescheduled_nat_flow_releases_its_old_reply_entry(lab, family):
    client, backends, dummy = FAMILIES[family]
    vip, ids = service(lab, family, "tcp")
    syn = client_frame(client, vip, "tcp", SPORT, 80, tcp_flags="S", payload=b"")
    lab.run(syn)
    old_port = layout.ntohs(entry(lab, client, vip, "tcp").nat_port)
    old_reply = reply(family, backends[0], old_port)
    assert lab.run(old_reply, "xlbdp1")[0] == L.XDP_REDIRECT          # translated while current

    lab.fill_ring(0, ids[1:])
    lab.run(syn)
    e = entry(lab, client, vip, "tcp")
    assert e.backend_id == ids[1]
    assert len(lab.maps["lb_nat_rev"].keys()) == 1           # the old one is gone, not leaked
    # The old backend's late packets are not translated into the new connection.
    assert lab.run(old_reply, "xlbdp1") == (L.XDP_PASS, old_reply)
    action, back = lab.run(reply(family, backends[1], layout.ntohs(e.nat_port)), "xlbdp1")
    assert action == L.XDP_REDIRECT
    assert back == frame(vip, client, "tcp", 80, SPORT, smac=L.MAC["xlbdp0"],
                         dmac=L.NEIGH[client][1])


def test_reply_entry_of_another_flow_is_not_released(lab):
    """The release deletes only a reply entry that names the moving flow:
    one written for another client on the same backend and port stays."""
    client, backends, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "tcp")
    syn = client_frame(client, vip, "tcp", SPORT, 80, tcp_flags="S", payload=b"")
    lab.run(syn)
    e = entry(lab, client, vip, "tcp")
    key = L.flow_key(backends[0], L.SNAT4, 80, layout.ntohs(e.nat_port), "tcp")
    other = lab.maps["lb_nat_rev"].lookup(key)
    other.client_port = layout.htons(SPORT + 1)
    lab.maps["lb_nat_rev"].update(key, other)
    lab.fill_ring(0, ids[1:])
    lab.run(syn)
    assert entry(lab, client, vip, "tcp").backend_id == ids[1]
    assert lab.maps["lb_nat_rev"].lookup(key).client_port == layout.htons(SPORT + 1)


def test_retransmitted_syn_keeps_entry_and_nat_port(lab):
    client, dummy, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "tcp")
    syn = client_frame(client, vip, "tcp", SPORT, 80, tcp_flags="S", payload=b"")
    out1 = lab.run(syn)
    port = entry(lab, client, vip, "tcp").nat_port
    assert lab.run(syn) == out1
    assert entry(lab, client, vip, "tcp").nat_port == port
    assert len(lab.maps["lb_nat_rev"].keys()) == 1


@pytest.mark.parametrize("family", [4, 6])
def test_established_tcp_keeps_drained_backend_however_idle(lab, family):
    client, backends, dummy = FAMILIES[family]
    vip, ids = service(lab, family, "tcp", timeout=30)
    ack = client_frame(client, vip, "tcp", SPORT, 80)
    lab.run(ack)
    lab.fill_ring(0, ids[1:])
    age_entry(lab, client, vip, "tcp", 3600)
    for dummy in range(3):
        action, out = lab.run(ack)
        assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[0]
    assert entry(lab, client, vip, "tcp").backend_id == ids[0]


@pytest.mark.parametrize("mode", ["nat", "dsr"])
@pytest.mark.parametrize("family", [4, 6])
def test_idle_udp_past_the_timeout_is_rescheduled(lab, family, mode):
    client, backends, dummy = FAMILIES[family]
    vip, ids = service(lab, family, "udp", mode, timeout=30)
    pkt = client_frame(client, vip, "udp", SPORT, 80)
    lab.run(pkt)
    lab.fill_ring(0, ids[1:])
    # 32: an IPv4 lb_ct4 entry read without its cache way (age_entry
    # writes through FlowTable, which empties the line) is stale one
    # refresh period (~1 s) late (docs/design.md, the IPv4 conntrack cache)
    age_entry(lab, client, vip, "udp", 32)
    action, out = lab.run(pkt)
    assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[1]
    assert entry(lab, client, vip, "udp").backend_id == ids[1]
    if mode == "nat":
        assert len(lab.maps["lb_nat_rev"].keys()) == 1


@pytest.mark.parametrize("family", [4, 6])
def test_active_udp_keeps_its_drained_backend(lab, family):
    """Within the timeout the flow stays, and every packet renews it: a
    flow that is never silent for 30 s never moves."""
    client, backends, dummy = FAMILIES[family]
    vip, ids = service(lab, family, "udp", timeout=30)
    pkt = client_frame(client, vip, "udp", SPORT, 80)
    lab.run(pkt)
    lab.fill_ring(0, ids[1:])
    for dummy in range(3):
        age_entry(lab, client, vip, "udp", 20)   # 20 s silent, three times over
        action, out = lab.run(pkt)
        assert action == L.XDP_REDIRECT and backend_of(out, family) == backends[0]
    assert entry(lab, client, vip, "udp").backend_id == ids[0]


def test_udp_never_expires_with_timeout_zero(lab):
    client, backends, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "udp", timeout=0)
    pkt = client_frame(client, vip, "udp", SPORT, 80)
    lab.run(pkt)
    lab.fill_ring(0, ids[1:])
    age_entry(lab, client, vip, "udp", 86400)
    action, out = lab.run(pkt)
    assert backend_of(out, 4) == backends[0]


def test_idle_udp_landing_on_the_same_backend_keeps_its_nat_port(lab):
    client, dummy, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "udp", timeout=30)
    pkt = client_frame(client, vip, "udp", SPORT, 80)
    out1 = lab.run(pkt)
    age_entry(lab, client, vip, "udp", 32)     # 32: as in the test above
    assert lab.run(pkt) == out1
    assert len(lab.maps["lb_nat_rev"].keys()) == 1


def test_idle_timeout_in_real_time(lab, one_cpu):
    """One case on the real clock: 1 s timeout, 1.3 s of silence."""
    client, backends, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "udp", timeout=1)
    pkt = client_frame(client, vip, "udp", SPORT, 80)
    lab.run(pkt)
    lab.fill_ring(0, ids[1:])
    assert backend_of(lab.run(pkt)[1], 4) == backends[0]
    time.sleep(1.3)
    assert backend_of(lab.run(pkt)[1], 4) == backends[1]


@pytest.mark.parametrize("hz", ["host", None])
def test_control_plane_clock_matches_the_data_plane(lab, use_build, hz):
    """maps.dataplane_now() (the last-seen time of migrated entries) reads
    the clock the program uses, jiffies or coarse ns: an entry the program
    has just written is within a second of it."""
    host_hz = build.host_defines().get("XDP_LB_HZ")
    if hz == "host":
        if not host_hz:
            pytest.skip("CONFIG_HZ of this kernel is unknown: builds use coarse ns")
        use_build()
        unit = host_hz
    else:
        use_build(XDP_LB_HZ=None)
        unit = 1000000000
    client, dummy, dummy = FAMILIES[4]
    vip, ids = service(lab, 4, "udp", timeout=30)
    lab.run(client_frame(client, vip, "udp", SPORT, 80))
    seen = entry(lab, client, vip, "udp").last_seen
    now = maps.dataplane_now(host_hz if hz == "host" else None)
    assert abs(now - seen) <= unit, (now, seen)
