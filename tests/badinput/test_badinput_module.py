"""Bad module input against a running instance: each is refused naming the field, the
value and the rule, and the host (hostsnap.py) is byte-identical afterwards."""
import os
import stat

import pytest

from badlab import BE1, BE2, VIP, VIP2, module_fails, playbook


def svc(vip, backends, **kw):
    return [dict({"vip": vip, "port": 80, "backends": backends}, **kw)]


V6 = "fd00:18::10"

# (id, options changed, the start of the expected message)
CASES = [
    # scoped IPv6 addresses: the maps hold the address alone
    ("scoped-vip", {"services": svc("fd00:18::10%eth0", ["fd00:18::11"])},
     "services[0].vip: fd00:18::10%eth0 has an IPv6 scope id ('%eth0')"),
    ("scoped-backend", {"services": svc(V6, ["fd00:18::11%front0"])},
     "services[0].backends[0].address: fd00:18::11%front0 has an IPv6 scope id"),
    ("scoped-nat-source", {"nat_source_ipv6": "fd00:18::1%lo"}, "nat_source_ipv6: fd00:18::1%lo has an IPv6 scope id"),
    # addresses that cannot be a VIP, a backend or a NAT source
    ("loopback-backend", {"services": svc(VIP, ["127.0.0.1"])},
     "services[0].backends[0].address: 127.0.0.1 is not a unicast address of a host: it is a loopback address"),
    ("loopback6-backend", {"services": svc(V6, ["::1"])}, "services[0].backends[0].address: ::1 is not a unicast "
     "address of a host: it is a loopback address"),
    ("linklocal-backend", {"services": svc(VIP, ["169.254.1.1"])}, "services[0].backends[0].address: 169.254.1.1 is "
     "not a unicast address of a host: it is a link-local address"),
    ("linklocal6-backend", {"services": svc(V6, ["fe80::1"])}, "services[0].backends[0].address: fe80::1 is not a "
     "unicast address of a host: it is a link-local address"),
    ("mapped-backend", {"services": svc(V6, ["::ffff:198.18.1.11"])}, "services[0].backends[0].address: "
     "::ffff:198.18.1.11 is not a unicast address of a host: it is an IPv4-mapped"),
    ("unspecified-vip", {"services": svc("0.0.0.0", [BE1])}, "services[0].vip: 0.0.0.0 is not a unicast address"),
    ("multicast-vip", {"services": svc("224.0.0.1", [BE1])}, "services[0].vip: 224.0.0.1 is not a unicast address "
     "of a host: it is a multicast address"),
    ("loopback-vip", {"services": svc("127.0.0.5", [BE1])}, "services[0].vip: 127.0.0.5 is not a unicast address"),
    ("linklocal6-vip", {"services": svc("fe80::10", ["fd00:18::11"])}, "services[0].vip: fe80::10 is not a unicast"),
    ("broadcast-vip", {"services": svc("255.255.255.255", [BE1])}, "services[0].vip: 255.255.255.255 is not a "
     "unicast address"),
    ("loopback-nat-source", {"nat_source_ipv4": "127.0.0.1"}, "nat_source_ipv4: 127.0.0.1 is not a unicast address"),
    ("garbage-address", {"services": svc(VIP, ["198.18.1.300"])}, "services[0].backends[0].address: 198.18.1.300 "
     "is not an IPv4 or IPv6 address"),
    ("family-mismatch", {"services": svc(VIP, ["fd00:18::11"])}, "services[0].backends[0].address: fd00:18::11 is "
     "IPv6 but the service vip is IPv4"),
    # the balancer's own addresses as backends
    ("backend-is-vip", {"services": svc(VIP, [BE1, VIP])}, "services[0].backends[1].address: 198.18.100.1 is the "
     "vip of services[0]"),
    ("backend-is-other-vip", {"services": svc(VIP, [BE1]) + [{"vip": VIP2, "port": 53, "backends": [VIP]}]},
     "services[1].backends[0].address: 198.18.100.1 is the vip of services[0]"),
    ("backend-is-nat-source", {"nat_source_ipv4": "198.18.1.1", "services": svc(VIP, ["198.18.1.1"])},
     "services[0].backends[0].address: 198.18.1.1 is the balancer's own NAT source (nat_source_ipv4)"),
    ("nat-source-is-vip", {"nat_source_ipv4": VIP}, "nat_source_ipv4: 198.18.100.1 is the vip of services[0]"),
    # a NAT source the balancer does not have (engine: before anything changes)
    ("nat-source-not-owned", {"nat_source_ipv4": "198.18.1.99"}, "nat_source_ipv4: 198.18.1.99 is not an address "
     "of this host (network namespace xlbbi-"),
    # services that serve nothing
    ("all-weights-zero", {"services": svc(VIP, [{"address": BE1, "weight": 0}, {"address": BE2, "weight": 0}])},
     "services[0].backends: [2 backends, all weight 0] leave service tcp/198.18.100.1:80 without a usable backend"),
    ("no-backends", {"services": svc(VIP, [])}, "services[0].backends: [] is empty: service tcp/198.18.100.1:80 "
     "has no backend"),
    ("allow-no-backends-not-bool", {"services": svc(VIP, [], allow_no_backends="maybe")},
     "services[0].allow_no_backends: maybe is not a boolean"),
    # map sizes against the memory budget, before any compile
    ("ring-over-budget", {"ring_size": 16777213, "max_services": 16}, "map sizes: [conntrack_size 4096, "
     "max_backends 16, max_services 16, ring_size 16777213] need "),
    ("ring-overflows-u32", {"ring_size": 16777213, "max_services": 1024}, "map sizes: [conntrack_size 4096, "
     "max_backends 16, max_services 1024, ring_size 16777213] make lb_ring 8589934592 entries, more than a BPF map"),
    ("conntrack-over-budget", {"conntrack_size": 16777216}, "map sizes: [conntrack_size 16777216"),
    ("budget-too-small", {"max_map_memory": 1}, "max_map_memory: 1 is not a number of MiB from 16"),
    ("ring-not-prime", {"ring_size": 1000}, "ring_size: 1000 is not a prime number"),
    ("ring-too-small", {"ring_size": 101}, "ring_size: 101 is too small"),
    # interface and instance names
    ("ifname-semicolon", {"interfaces": ["front0;reboot"]}, "interfaces[0]: front0;reboot is not a valid interface "
     "name (1-15 characters"),
    ("ifname-too-long", {"interfaces": ["front0", "a" * 16]}, "interfaces[1]: %s is not a valid interface name"
     % ("a" * 16)),
    ("ifname-traversal", {"interfaces": ["../x"]}, "interfaces[0]: ../x is not a valid interface name"),
    ("ifname-dash", {"interfaces": ["-front0"]}, "interfaces[0]: -front0 is not a valid interface name"),
    ("ifname-space", {"interfaces": ["front 0"]}, "interfaces[0]: front 0 is not a valid interface name"),
    ("ifname-missing", {"interfaces": ["front0", "nosuch9"]}, "interfaces[1]: interface nosuch9 not found in "
     "network namespace xlbbi-"),
    ("ifname-twice", {"interfaces": ["front0", "front0"]}, "interfaces[1]: front0 is listed twice"),
    ("name-traversal", {"name": "../evil"}, "name: ../evil is not a valid instance name"),
    ("name-dot", {"name": "bi.x"}, "name: bi.x is not a valid instance name"),
    ("netns-slash", {"netns": "a/b"}, "netns: a/b is not a valid network namespace name"),
    # the compiler
    ("clang-false", {"clang": "/bin/false"}, "clang: /bin/false is not a working clang ('/bin/false --version' "
     "exited 1)"),
    ("clang-echo", {"clang": "/bin/echo"}, "clang: /bin/echo does not identify as clang"),
    ("clang-missing", {"clang": "/nonexistent/clang"}, "clang not found (/nonexistent/clang)"),
    # other ranges and shapes
    ("port-zero", {"services": svc(VIP, [BE1], port=0)}, "services[0].port: 0 is not an integer from 1 to 65535"),
    ("protocol", {"services": svc(VIP, [BE1], protocol="sctp")}, "services[0].protocol: sctp is not one of tcp, udp"),
    ("weight-range", {"services": svc(VIP, [{"address": BE1, "weight": 1001}])},
     "services[0].backends[0].weight: 1001 is not an integer from 0 to 1000"),
    ("duplicate-backend", {"services": svc(VIP, [BE1, BE1])}, "services[0].backends[1]: 198.18.1.11:80 duplicates"),
    ("duplicate-service", {"services": svc(VIP, [BE1]) * 2}, "services[1]: tcp/198.18.100.1:80 duplicates services[0]"),
    ("unknown-service-key", {"services": svc(VIP, [BE1], weight=3)}, "services[0]: weight is not a known key"),
    ("backend-not-mapping", {"services": svc(VIP, [42])}, "services[0].backends[0]: 42 is not a mapping"),
    ("nat-ports", {"nat_port_min": 40000, "nat_port_max": 30000}, "nat_port_min: 40000 is greater than nat_port_max"),
    ("timeout", {"flow_idle_timeout": -1}, "flow_idle_timeout: -1 is not a number of seconds"),
    ("redirect-only", {"redirect_interfaces": ["back0"]}, "redirect_interfaces: ['back0'] are only used in "
     "redirect mode"),
]


@pytest.mark.parametrize("over,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_module_refuses(lab, snap, over, expected):
    msg = module_fails(lab, **over)
    assert msg.startswith(expected), msg


def test_allow_no_backends_check_mode_is_accepted(lab, snap):
    """The explicit option lets a service serve nothing (check mode: nothing changes either)."""
    from modutils import run_module
    from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb
    args = dict(lab["params"], services=svc(VIP, [{"address": BE1, "weight": 0}], allow_no_backends=True))
    out = run_module(xdp_lb.main, args, check_mode=True)
    assert not out.result.get("failed"), out.result
    assert out.result["changed"]


def test_clang_that_writes_no_object(lab, snap, tmp_path):
    """A 'clang' that says it is clang, exits 0 and writes nothing: refused, no 0-byte object cached."""
    fake = tmp_path / "clang"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'clang version 99.0.0 (fake)'\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    msg = module_fails(lab, clang=str(fake))
    assert msg.startswith("compiling xdp_loadbalancer.c failed") or "wrote no BPF object" in msg, msg
    assert "wrote no BPF object" in msg and "empty" in msg, msg
    assert not [n for n in os.listdir(lab["build_dir"]) if n.endswith(".o") and
                os.path.getsize(os.path.join(lab["build_dir"], n)) == 0]


def test_services_null_element_names_the_index(lab, snap):
    """services: [S0, S1, null] through ansible-playbook (the action plugin)."""
    rc, out = playbook(lab, services=lab["params"]["services"] + [None])
    assert rc != 0
    assert "services[2]: None is not a mapping" in out, out[-2000:]
