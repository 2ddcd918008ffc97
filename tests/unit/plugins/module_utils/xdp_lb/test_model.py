# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model.validate: defaults, normalisation and every error with its message."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.model import (
    ConfigError, Config, validate, is_prime)


def base(**over):
    params = {
        "interfaces": ["xlbit0"],
        "services": [
            {"vip": "198.18.0.10", "port": 80, "backends": [
                {"address": "198.18.1.1"}, {"address": "198.18.1.2", "weight": 50, "port": 8080}]},
            {"vip": "fd00:18::10", "port": 53, "protocol": "udp", "scheduler": "ip_hash",
             "backends": [{"address": "fd00:18::1:1"}]},
        ],
    }
    params.update(over)
    return params


def error_of(params):
    with pytest.raises(ConfigError) as info:
        validate(params)
    return str(info.value)


def test_defaults():
    cfg = validate(base())
    assert cfg.name == "xlbit0"
    assert cfg.state == "present"
    assert cfg.mode == "nat"
    assert cfg.attach_mode == "native"
    assert cfg.redirect_algorithm == "flow_hash"
    assert cfg.pin_dir == "/sys/fs/bpf/xdp_lb/xlbit0"
    assert cfg.state_dir == "/var/lib/netfleet-xdp-lb"
    assert cfg.build_dir == "/var/cache/netfleet-xdp-lb"
    assert cfg.state_file == "/var/lib/netfleet-xdp-lb/xlbit0.json"
    assert cfg.lock_file == "/var/lib/netfleet-xdp-lb/xlbit0.lock"
    assert (cfg.nat_port_min, cfg.nat_port_max) == (20000, 32767)
    assert cfg.flow_idle_timeout == 30
    assert cfg.ring_size == layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
    assert cfg.max_services == layout.DEFAULT_SIZES["XDP_LB_MAX_SERVICES"]
    assert cfg.max_backends == layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"]
    assert cfg.conntrack_size == layout.DEFAULT_SIZES["XDP_LB_CT_SIZE"]
    assert cfg.debug is False and cfg.clang == "clang" and cfg.netns is None and cfg.source is None
    s0, s1 = cfg.services
    assert (s0.protocol, s0.scheduler, s0.family) == ("tcp", "maglev", 4)
    assert [(b.address, b.weight, b.port) for b in s0.backends] == [
        ("198.18.1.1", 100, 80), ("198.18.1.2", 50, 8080)]
    assert (s1.protocol, s1.scheduler, s1.family, s1.key) == ("udp", "ip_hash", 6, "udp/[fd00:18::10]:53")
    assert cfg.defines() == dict({"XDP_LB_MAX_SERVICES": 32, "XDP_LB_MAX_BACKENDS": 4096,
                                  "XDP_LB_RING_SIZE": 65537, "XDP_LB_CT_SIZE": 65536}, **build.host_defines())


def test_normalises_addresses():
    params = base(services=[{"vip": "FD00:18:0::10", "port": "443", "backends": [
        {"address": "fd00:18:0:0::1"}]}])
    cfg = validate(params)
    assert cfg.interfaces == ["xlbit0"]
    assert cfg.services[0].vip == "fd00:18::10"
    assert cfg.services[0].port == 443
    assert cfg.services[0].backends[0].address == "fd00:18::1"


def test_debug_changes_defines_and_dsr_ports_are_zero():
    cfg = validate(base(debug=True, mode="dsr", services=[
        {"vip": "198.18.0.10", "port": 80, "backends": ["198.18.1.1"]}]))
    assert cfg.defines()["XDP_LB_DEBUG"] is True
    assert cfg.services[0].backends[0].port == 0


def test_roundtrip_through_dict():
    cfg = validate(base(name="xlbitA", netns="xlbit-lb", nat_source_ipv4="198.18.0.1"))
    again = Config.from_dict(copy.deepcopy(cfg.to_dict()))
    assert again.to_dict() == cfg.to_dict()


def test_roundtrip_dsr():
    cfg = validate(base(mode="dsr", services=[{"vip": "198.18.0.10", "port": 80, "allow_no_backends": True,
                                               "backends": [{"address": "198.18.1.1", "weight": 0}]}]))
    again = Config.from_dict(copy.deepcopy(cfg.to_dict()))
    assert again.to_dict() == cfg.to_dict()
    assert again.services[0].backends[0].port == 0
    assert again.services[0].allow_no_backends is True


def test_absent_needs_only_a_name():
    cfg = validate({"name": "xlbitA", "state": "absent"})
    assert cfg.state == "absent" and cfg.interfaces == [] and cfg.services == []


def test_redirect_mode():
    cfg = validate({"interfaces": ["xlbit0"], "mode": "redirect",
                    "redirect_interfaces": ["xlbit1", "xlbit2"], "redirect_algorithm": "round_robin"})
    assert cfg.redirect_interfaces == ["xlbit1", "xlbit2"]
    assert cfg.services == []


def test_is_prime():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert is_prime(65537) and is_prime(131071) and not is_prime(65536) and not is_prime(65535)


def svc(**over):
    s = {"vip": "198.18.0.10", "port": 80, "backends": [{"address": "198.18.1.1"}]}
    s.update(over)
    return s


@pytest.mark.parametrize("params, message", [
    # interfaces and names
    ({"services": []}, "interfaces: None must name at least one interface (or set name)"),
    (base(interfaces=[]), "interfaces: [] must name at least one interface"),
    (base(interfaces=["xlbit0", "xlbit0"]), "interfaces[1]: xlbit0 is listed twice"),
    (base(interfaces=["a/b"]), "interfaces[0]: a/b is not a valid interface name"),
    (base(interfaces=["x" * 16]), "interfaces[0]: %s is not a valid interface name" % ("x" * 16)),
    (base(name="../etc"), "name: ../etc is not a valid instance name"),
    (base(netns="a/b"), "netns: a/b is not a valid network namespace name"),
    (base(state="gone"), "state: gone is not one of present, absent"),
    (base(mode="tunnel"), "mode: tunnel is not one of redirect, nat, dsr"),
    (base(attach_mode="offload"), "attach_mode: offload is not one of native, generic"),
    (base(redirect_algorithm="random"), "redirect_algorithm: random is not one of round_robin, flow_hash"),
    (base(pin_dir="relative/dir"), "pin_dir: relative/dir is not an absolute path"),
    (base(pin_dir="/sys/fs/bpf"), "pin_dir: /sys/fs/bpf must be a directory of its own below the bpffs mount"),
    (base(debug="maybe"), "debug: maybe is not a boolean"),
    (base(unknown_option=1), "options: unknown_option is not a known key"),
    # aliases are AnsibleModule's business (tests/unit/plugins/modules): validate() takes canonical names
    (base(interface="xlbit0"), "options: interface is not a known key"),
    (base(interfaces=["xlbit0", 7]), "interfaces[1]: 7 is not a valid interface name"),
    (base(mode="redirect", services=[], redirect_interfaces=["xlbit1", "a b"]),
     "redirect_interfaces[1]: a b is not a valid interface name"),
    # services
    (base(services={"vip": "x"}), "services: {'vip': 'x'} is not a list"),
    (base(services=["198.18.0.10"]), "services[0]: 198.18.0.10 is not a mapping"),
    (base(services=[svc(vip="198.18.0.300")]), "services[0].vip: 198.18.0.300 is not an IPv4 or IPv6 address"),
    (base(services=[svc(vip="not-an-ip")]), "services[0].vip: not-an-ip is not an IPv4 or IPv6 address"),
    (base(services=[svc(vip="0.0.0.0")]), "services[0].vip: 0.0.0.0 is not a unicast address"),
    (base(services=[svc(vip=None)]), "services[0].vip: None is required"),
    (base(services=[svc(port=0)]), "services[0].port: 0 is not an integer from 1 to 65535"),
    (base(services=[svc(port=65536)]), "services[0].port: 65536 is not an integer from 1 to 65535"),
    (base(services=[svc(port="http")]), "services[0].port: http is not an integer from 1 to 65535"),
    (base(services=[svc(port=True)]), "services[0].port: True is not an integer from 1 to 65535"),
    (base(services=[svc(protocol="sctp")]), "services[0].protocol: sctp is not one of tcp, udp"),
    (base(services=[svc(scheduler="rr")]), "services[0].scheduler: rr is not one of ip_hash, five_tuple, maglev"),
    (base(services=[svc(colour="blue")]), "services[0]: colour is not a known key (known: vip, port, protocol, "
                                          "scheduler, backends, allow_no_backends)"),
    (base(services=[svc(), svc()]), "services[1]: tcp/198.18.0.10:80 duplicates services[0]"),
    (base(services=[svc(), svc(vip="198.18.0.010".replace("010", "10"))]),
     "services[1]: tcp/198.18.0.10:80 duplicates services[0]"),
    (base(services=[svc(backends=[])]), "services[0].backends: [] is empty: service tcp/198.18.0.10:80 has no "
                                        "backend (nat mode needs at least one; set allow_no_backends: true"),
    (base(mode="dsr", services=[svc(backends=None)]),
     "services[0].backends: [] is empty: service tcp/198.18.0.10:80 has no backend (dsr mode needs"),
    (base(services=[svc(backends=[{"address": "198.18.1.1", "weight": 0}, {"address": "198.18.1.2", "weight": 0}])]),
     "services[0].backends: [2 backends, all weight 0] leave service tcp/198.18.0.10:80 without a usable "
     "backend (it would serve nothing); give one a weight above 0, or set allow_no_backends: true"),
    (base(services=[svc(allow_no_backends="maybe")]), "services[0].allow_no_backends: maybe is not a boolean"),
    (base(services=[svc(backends="198.18.1.1")]), "services[0].backends: 198.18.1.1 is not a list"),
    (base(services=[svc(max_services=3)]), "services[0]: max_services is not a known key"),
    # backends
    (base(services=[svc(backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.2", "weight": -3}])]),
     "services[0].backends[1].weight: -3 is not an integer from 0 to 1000"),
    (base(services=[svc(backends=[{"address": "198.18.1.1", "weight": 1001}])]),
     "services[0].backends[0].weight: 1001 is not an integer from 0 to 1000"),
    (base(services=[svc(backends=[{"address": "198.18.1.1", "weight": 1.5}])]),
     "services[0].backends[0].weight: 1.5 is not an integer from 0 to 1000"),
    (base(services=[svc(backends=[{"address": "198.18.1.1", "port": 70000}])]),
     "services[0].backends[0].port: 70000 is not an integer from 1 to 65535"),
    (base(services=[svc(backends=[{"address": "198.18.1.x"}])]),
     "services[0].backends[0].address: 198.18.1.x is not an IPv4 or IPv6 address"),
    (base(services=[svc(backends=[{"weight": 5}])]), "services[0].backends[0].address: None is required"),
    (base(services=[svc(backends=[{"address": "198.18.1.1", "zone": "a"}])]),
     "services[0].backends[0]: zone is not a known key (known: address, weight, port)"),
    (base(services=[svc(backends=[{"address": "fd00:18::1"}])]),
     "services[0].backends[0].address: fd00:18::1 is IPv6 but the service vip is IPv4"),
    (base(services=[svc(vip="fd00:18::10", backends=[{"address": "198.18.1.1"}])]),
     "services[0].backends[0].address: 198.18.1.1 is IPv4 but the service vip is IPv6"),
    (base(services=[svc(backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.1", "port": 80}])]),
     "services[0].backends[1]: 198.18.1.1:80 duplicates services[0].backends[0]"),
    (base(mode="dsr", services=[svc(backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.1"}])]),
     "services[0].backends[1]: 198.18.1.1 duplicates services[0].backends[0]"),
    (base(mode="dsr", services=[svc(backends=[{"address": "198.18.1.1", "port": 8080}])]),
     "services[0].backends[0].port: 8080 is not allowed in dsr mode"),
    (base(services=[svc(backends=[42])]), "services[0].backends[0]: 42 is not a mapping with an address"),
    # redirect mode
    (base(mode="redirect", services=[]), "redirect_interfaces: None must name at least one interface "
                                         "in redirect mode"),
    (base(mode="redirect", redirect_interfaces=["xlbit1"]), "services: [2 services] are not used in "
                                                            "redirect mode"),
    (base(redirect_interfaces=["xlbit1"]), "redirect_interfaces: ['xlbit1'] are only used in redirect mode"),
    # ring and sizes
    (base(ring_size=65536), "ring_size: 65536 is not a prime number"),
    (base(ring_size=1), "ring_size: 1 is not a prime from 3 to 16777216"),
    (base(ring_size=101), "ring_size: 101 is too small: it must be greater than 100 x the largest "
                          "backend count (2, services[0])"),
    (base(ring_size=199), "ring_size: 199 is too small"),
    (base(max_services=0), "max_services: 0 is not an integer from 1 to 1024"),
    (base(max_services=1), "services: [2 services] are more than max_services (1)"),
    (base(max_backends=3), "services: [3 backends] are more than max_backends - 1 (2; id 0 is reserved)"),
    (base(conntrack_size=-1), "conntrack_size: -1 is not an integer from 16 to 16777216"),
    (base(flow_idle_timeout=-1), "flow_idle_timeout: -1 is not a number of seconds from 0 (never) to 604800"),
    (base(flow_idle_timeout="soon"), "flow_idle_timeout: soon is not a number of seconds from 0 (never) to 604800"),
    # nat
    (base(nat_port_min=0), "nat_port_min: 0 is not an integer from 1 to 65535"),
    (base(nat_port_min=40000, nat_port_max=30000), "nat_port_min: 40000 is greater than nat_port_max (30000)"),
    (base(nat_source_ipv4="fd00:18::1"), "nat_source_ipv4: fd00:18::1 is not an IPv4 address"),
    (base(nat_source_ipv6="198.18.0.1"), "nat_source_ipv6: 198.18.0.1 is not an IPv6 address"),
    (base(nat_source_ipv4="bogus"), "nat_source_ipv4: bogus is not an IPv4 or IPv6 address"),
    (base(mode="dsr", services=[svc(backends=[{"address": "198.18.1.1", "port": 80}])]),
     "services[0].backends[0].port: 80 is not allowed in dsr mode"),
    (base(mode="dsr", nat_source_ipv4="198.18.0.1", services=[{"vip": "198.18.0.10", "port": 80,
                                                               "backends": ["198.18.1.1"]}]),
     "nat_source_ipv4: 198.18.0.1 is only used in nat mode"),
])
def test_errors(params, message):
    assert message in error_of(params)


def test_allow_no_backends():
    """The one explicit option that allows a service without a usable backend."""
    cfg = validate(base(services=[svc(backends=[], allow_no_backends=True),
                                  svc(port=81, backends=[{"address": "198.18.1.1", "weight": 0}],
                                      allow_no_backends=True)]))
    assert [s.allow_no_backends for s in cfg.services] == [True, True]
    assert cfg.services[0].backends == [] and cfg.services[0].to_dict()["allow_no_backends"] is True
    # not set: not in the state file's record (older state files stay identical)
    assert "allow_no_backends" not in validate(base()).services[0].to_dict()


def test_error_carries_path_and_value():
    with pytest.raises(ConfigError) as info:
        validate(base(services=[svc(backends=[{"address": "198.18.1.1", "weight": -3}])]))
    assert info.value.path == "services[0].backends[0].weight"
    assert info.value.value == -3


def test_validation_does_not_modify_input():
    params = base()
    before = copy.deepcopy(params)
    validate(params)
    assert params == before
