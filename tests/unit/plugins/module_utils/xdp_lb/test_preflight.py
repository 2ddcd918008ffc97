# -*- coding: utf-8 -*-
"""Pure parts of pre-flight (packets, checks) and of the NAT guard (its nft text)."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import model, natguard, preflight


@pytest.mark.parametrize("src,dst", [("198.18.0.10", "198.18.100.1"), ("fd00:18::10", "fd00:18:100::1")])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_frame_round_trip_with_valid_checksums(src, dst, proto):
    raw = preflight.build_frame(src, dst, proto, 40000, 80, "02:00:00:00:00:01", "02:00:00:00:00:02")
    p = preflight.parse_frame(raw)
    assert (p["src"], p["dst"], p["proto"], p["sport"], p["dport"]) == (src, dst, proto, 40000, 80)
    assert (p["smac"], p["dmac"]) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert p["payload"] == preflight.PAYLOAD
    assert p["checksums_ok"]
    broken = raw[:-1] + bytes([raw[-1] ^ 0xFF])
    assert not preflight.parse_frame(broken)["checksums_ok"]


def test_syn_has_no_ack():
    raw = preflight.build_frame("198.18.0.10", "198.18.100.1", "tcp", 1, 2, "02:00:00:00:00:01",
                                "02:00:00:00:00:02", tcp_flags=preflight.TCP_SYN)
    assert preflight.parse_frame(raw)["flags"] == preflight.TCP_SYN


def test_failure_names_packet_expected_and_actual():
    frame = preflight.build_frame("198.18.0.10", "198.18.100.1", "udp", 40123, 53, "02:00:00:00:00:01",
                                  "02:00:00:00:00:02")
    case = preflight._Case("services[0] udp/198.18.100.1:53, new flow", frame, 7)
    with pytest.raises(preflight.PreflightError) as exc:
        preflight._fail(case, "XDP_TX or XDP_REDIRECT", preflight.XDP_DROP, frame)
    text = str(exc.value)
    assert "packet:   udp 198.18.0.10:40123 -> 198.18.100.1:53" in text
    assert "services[0] udp/198.18.100.1:53, new flow, ingress ifindex 7" in text
    assert "expected: XDP_TX or XDP_REDIRECT" in text
    assert "actual:   XDP_DROP, udp 198.18.0.10:40123 -> 198.18.100.1:53" in text
    assert "the running program stays" in text


def _cfg(**kw):
    params = {"interfaces": ["eth0"], "mode": "nat",
              "services": [{"vip": "198.18.100.1", "port": 53, "protocol": "udp",
                            "backends": [{"address": "198.18.1.11"}]}]}
    params.update(kw)
    return model.validate(params)


def test_guard_wanted_only_in_nat_mode_and_when_on():
    snat = {4: "198.18.1.1", 6: None}
    spec = natguard.want(_cfg(), snat)
    assert spec == {"table": "netfleet_xdp_lb_eth0", "ipv4": "198.18.1.1", "ipv6": None, "ports": [20000, 32767]}
    assert natguard.want(_cfg(nat_guard=False), snat) is None
    dsr = _cfg(mode="dsr", services=[{"vip": "198.18.100.1", "port": 53, "protocol": "udp",
                                      "backends": [{"address": "198.18.1.11"}]}])
    assert natguard.want(dsr, snat) is None


def test_guard_ruleset_drops_the_nat_port_range_before_conntrack():
    text = natguard.ruleset("web", "198.18.1.1", "fd00:18:1::1", 20000, 20999)
    assert text.startswith("add table inet netfleet_xdp_lb_web\ndelete table inet netfleet_xdp_lb_web\n")
    assert "type filter hook prerouting priority raw; policy accept;" in text
    assert "ip daddr 198.18.1.1 meta l4proto { tcp, udp } th dport 20000-20999 counter drop" in text
    assert "ip6 daddr fd00:18:1::1 meta l4proto { tcp, udp } th dport 20000-20999 counter drop" in text


def test_options_default_on_and_validate():
    cfg = _cfg()
    assert cfg.preflight is True and cfg.nat_guard is True
    assert model.Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(model.ConfigError) as exc:
        _cfg(preflight="maybe")
    assert str(exc.value).startswith("preflight: maybe")
