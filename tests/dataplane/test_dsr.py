"""dsr mode: only the MACs change; the backend answers the client itself."""
import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import assert_checksums, client_frame, frame


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_dsr_rewrites_only_macs(lab, family, proto):
    client = L.CLIENT4 if family == 4 else L.CLIENT6
    be = (L.BACKENDS4 if family == 4 else L.BACKENDS6)[1]
    lab.configure(layout.MODE_DSR)
    # backend port is ignored in dsr: the backend listens on the VIP's port.
    vip, ids = L.setup_service(lab, family, proto, port=80, backends=[be], backend_port=8080)
    inp = client_frame(client, vip, proto, 34000, 80)
    action, out = lab.run(inp)
    assert action == L.XDP_REDIRECT
    assert out == frame(client, vip, proto, 34000, 80, smac=L.MAC["xlbdp1"], dmac=L.NEIGH[be][1])
    assert out[12:] == inp[12:]
    assert_checksums(out)
    entry = lab.ct_entry(L.flow_key(client, vip, 34000, 80, proto))
    assert (entry.backend_id, entry.nat_port) == (ids[0], 0)
    assert lab.backend_packets(ids[0]) == 1
    assert lab.stats()["redirect"] == 1


@pytest.mark.parametrize("family", [4, 6])
def test_dsr_same_link_is_tx(lab, family):
    client = L.CLIENT4 if family == 4 else L.CLIENT6
    local = L.LOCAL_BACKEND4 if family == 4 else L.LOCAL_BACKEND6
    lab.configure(layout.MODE_DSR)
    vip, dummy = L.setup_service(lab, family, "udp", port=53, backends=[local])
    action, out = lab.run(client_frame(client, vip, "udp", 34001, 53))
    assert action == L.XDP_TX
    assert out == frame(client, vip, "udp", 34001, 53, smac=L.MAC["xlbdp0"],
                        dmac=L.NEIGH[local][1])


@pytest.mark.parametrize("backend", [L.NO_NEIGH4, L.NO_ROUTE4, L.NO_NEIGH6, L.NO_ROUTE6])
def test_dsr_unresolved_next_hop_passes_untouched(lab, backend):
    family = 6 if ":" in backend else 4
    client = L.CLIENT4 if family == 4 else L.CLIENT6
    lab.configure(layout.MODE_DSR)
    vip, dummy = L.setup_service(lab, family, "tcp", backends=[backend])
    inp = client_frame(client, vip, "tcp", 34002, 80)
    assert lab.run(inp) == (L.XDP_PASS, inp)
    stats = lab.stats()
    assert (stats["pass"], stats["fib_miss"]) == (1, 1)
