# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventory_backends: services' backends from inventory groups (pure: groups and hostvars as dicts)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import random

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.action.xdp_lb import backend_changes
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import model
from ansible_collections.netfleet.xdp_lb.plugins.plugin_utils.inventory_backends import (
    InventoryBackendError, dsr_vips, resolve_services)


def inventory(**extra):
    hostvars = {
        "web-1": {"ansible_host": "198.19.0.11", "xdp_lb_backend_ipv4": "198.18.20.11",
                  "xdp_lb_backend_ipv6": "fd00:18:20::11"},
        "web-2": {"ansible_host": "198.19.0.12", "xdp_lb_backend_ipv4": "198.18.20.12",
                  "xdp_lb_backend_ipv6": "fd00:18:20::12"},
        "web-3": {"ansible_host": "198.19.0.13", "xdp_lb_backend_ipv4": "198.18.20.13"},
    }
    for host, hv in extra.items():
        hostvars.setdefault(host, {}).update(hv)
    groups = {"all": sorted(hostvars), "web": ["web-2", "web-1", "web-3"], "web6": ["web-2", "web-1"],
              "empty": []}
    return groups, hostvars


def svc(**over):
    s = {"vip": "198.18.100.1", "port": 80, "backend_group": "web"}
    s.update(over)
    return s


def resolve(services, mode="nat", **extra):
    groups, hostvars = inventory(**extra)
    return resolve_services(services, groups, hostvars, mode)


def error_of(services, mode="nat", groups=None, **extra):
    g, hostvars = inventory(**extra)
    with pytest.raises(InventoryBackendError) as info:
        resolve_services(services, groups or g, hostvars, mode)
    return str(info.value)


def test_group_defaults_and_order():
    out, origins = resolve([svc()])
    assert out == [{"vip": "198.18.100.1", "port": 80, "backends": [
        {"address": "198.18.20.11", "weight": 100}, {"address": "198.18.20.12", "weight": 100},
        {"address": "198.18.20.13", "weight": 100}]}]
    assert origins == {0: {("198.18.20.11", 80): "web-1", ("198.18.20.12", 80): "web-2",
                           ("198.18.20.13", 80): "web-3"}}
    # the module accepts what comes out
    model.validate({"interfaces": ["eth0"], "services": out})


def test_order_is_independent_of_inventory_order():
    """Every balancer resolving the group gets the same list: sorted by address, not by inventory order."""
    groups, hostvars = inventory(**dict(("h%02d" % n, {"xdp_lb_backend_ipv4": "198.18.21.%d" % (200 - n)})
                                        for n in range(30)))
    hosts = ["h%02d" % n for n in range(30)] + ["web-1", "web-2"]
    results = []
    for seed in range(5):
        random.Random(seed).shuffle(hosts)
        groups["pool"] = list(hosts)
        out, _o = resolve_services([svc(backend_group="pool")], groups, hostvars, "nat")
        results.append(out)
    assert all(r == results[0] for r in results)
    addresses = [b["address"] for b in results[0][0]["backends"]]
    assert addresses[:2] == ["198.18.20.11", "198.18.20.12"]
    assert addresses[2:] == ["198.18.21.%d" % n for n in range(171, 201)]   # numeric, not string, order


def test_families():
    out, origins = resolve([svc(vip="fd00:18:100::1", backend_group="web6")])
    assert [b["address"] for b in out[0]["backends"]] == ["fd00:18:20::11", "fd00:18:20::12"]
    assert origins[0][("fd00:18:20::12", 80)] == "web-2"
    # normalised: 0-padding and case do not make another backend
    out, _o = resolve([svc(vip="fd00:18:100::1", backend_group="web6")],
                      **{"web-1": {"xdp_lb_backend_ipv6": "FD00:18:20:0::0011"}})
    assert out[0]["backends"][0]["address"] == "fd00:18:20::11"


def test_service_defaults_and_host_overrides():
    out, _o = resolve([svc(backend_port=8080, backend_weight=50)],
                      **{"web-2": {"xdp_lb_backend_weight": 200, "xdp_lb_backend_port": "8443"},
                         "web-3": {"xdp_lb_backend_weight": "0"}})
    assert out[0]["backends"] == [
        {"address": "198.18.20.11", "weight": 50, "port": 8080},
        {"address": "198.18.20.12", "weight": 200, "port": 8443},
        {"address": "198.18.20.13", "weight": 0, "port": 8080}]


def test_states():
    out, origins = resolve([svc()], **{"web-1": {"xdp_lb_backend_pool_state": "drain", "xdp_lb_backend_weight": 300},
                                       "web-3": {"xdp_lb_backend_pool_state": "absent"},
                                       "web-2": {"xdp_lb_backend_pool_state": "active"}})
    assert out[0]["backends"] == [{"address": "198.18.20.11", "weight": 0},
                                  {"address": "198.18.20.12", "weight": 100}]
    assert sorted(origins[0].values()) == ["web-1", "web-2"]


def test_ansible_host_fallback_is_opt_in():
    assert "host web-3: has no xdp_lb_backend_ipv6" in error_of([svc(vip="fd00:18:100::1")])
    out, _o = resolve([svc(backend_use_ansible_host=True)], **{"web-3": {"xdp_lb_backend_ipv4": None}})
    assert out[0]["backends"][2] == {"address": "198.19.0.13", "weight": 100}
    # an explicit address still wins over ansible_host
    assert out[0]["backends"][0]["address"] == "198.18.20.11"


def test_literal_and_group_together():
    out, origins = resolve([svc(backends=[{"address": "198.18.20.99", "weight": 10}, "198.18.20.98"])])
    assert [b if isinstance(b, str) else b["address"] for b in out[0]["backends"]] == [
        "198.18.20.99", "198.18.20.98", "198.18.20.11", "198.18.20.12", "198.18.20.13"]
    assert ("198.18.20.99", 80) not in origins[0]
    # same address, other port: another backend
    out, _o = resolve([svc(backends=[{"address": "198.18.20.11", "port": 81}])])
    assert len(out[0]["backends"]) == 4


def test_dsr_ignores_host_ports():
    out, origins = resolve([svc()], mode="dsr", **{"web-1": {"xdp_lb_backend_port": 8080}})
    assert out[0]["backends"][0] == {"address": "198.18.20.11", "weight": 100}
    assert origins[0][("198.18.20.11", 0)] == "web-1"
    model.validate({"interfaces": ["eth0"], "mode": "dsr", "services": out})


def test_services_without_group_pass_unchanged():
    literal = {"vip": "198.18.100.1", "port": 53, "backends": [{"address": "198.18.20.11"}]}
    out, origins = resolve([literal, svc()])
    assert out[0] is literal and list(origins) == [1]


def test_allow_no_backends():
    out, origins = resolve([svc(backend_group="empty", allow_no_backends=True)])
    assert out[0]["backends"] == [] and out[0]["allow_no_backends"] is True and origins == {}
    model.validate({"interfaces": ["eth0"], "services": out})
    out, _o = resolve([svc(allow_no_backends=True)], **dict(
        (h, {"xdp_lb_backend_pool_state": "drain"}) for h in ("web-1", "web-2", "web-3")))
    assert [b["weight"] for b in out[0]["backends"]] == [0, 0, 0]
    model.validate({"interfaces": ["eth0"], "services": out})


S = "services[0] (tcp/198.18.100.1:80): backend_group web"


@pytest.mark.parametrize("services, extra, message", [
    ([svc(backend_group="nope")], {}, "services[0] (tcp/198.18.100.1:80): backend_group nope: the inventory "
                                      "has no group nope"),
    ([svc(backend_group="empty")], {}, "backend_group empty resolves to no backend: it has no hosts; set "
                                       "allow_no_backends: true"),
    ([svc()], dict((h, {"xdp_lb_backend_pool_state": "absent"}) for h in ("web-1", "web-2", "web-3")),
     S + " resolves to no backend: every host is absent (xdp_lb_backend_pool_state: absent: web-1, web-2, web-3)"),
    ([svc()], dict((h, {"xdp_lb_backend_pool_state": "drain"}) for h in ("web-1", "web-2", "web-3")),
     S + " resolves to no usable backend: every host has weight 0 or is drained (web-1, web-2, web-3)"),
    ([svc(backend_weight=0)], {}, S + " resolves to no usable backend"),
    ([svc(vip="fd00:18:100::1")], {}, "services[0] (tcp/[fd00:18:100::1]:80): backend_group web: host web-3: "
                                      "has no xdp_lb_backend_ipv6 (the service is IPv6; set it in the host's "
                                      "variables, or set backend_use_ansible_host: true"),
    ([svc()], {"web-2": {"xdp_lb_backend_ipv4": "fd00:18:20::12"}},
     S + ": host web-2: xdp_lb_backend_ipv4: 'fd00:18:20::12' is not a unicast IPv4 address"),
    ([svc()], {"web-2": {"xdp_lb_backend_ipv4": "web-2.example"}},
     S + ": host web-2: xdp_lb_backend_ipv4: 'web-2.example' is not a unicast IPv4 address"),
    ([svc(backend_use_ansible_host=True)], {"web-3": {"xdp_lb_backend_ipv4": None, "ansible_host": "web3.lab"}},
     S + ": host web-3: ansible_host (backend_use_ansible_host): 'web3.lab' is not a unicast IPv4 address"),
    ([svc(backends=[{"address": "198.18.20.12"}])], {},
     S + ": host web-2: 198.18.20.12:80 is also backends[0] of the service (the same backend twice)"),
    ([svc(backends=["198.18.20.13"])], {}, S + ": host web-3: 198.18.20.13:80 is also backends[0]"),
    ([svc()], {"web-3": {"xdp_lb_backend_ipv4": "198.18.20.11"}},
     S + ": host web-3: 198.18.20.11:80 is also host web-1 of group web of the service"),
    ([svc()], {"web-1": {"xdp_lb_backend_weight": 1001}},
     S + ": host web-1: xdp_lb_backend_weight: 1001 is not an integer from 0 to 1000"),
    ([svc()], {"web-1": {"xdp_lb_backend_weight": "heavy"}},
     S + ": host web-1: xdp_lb_backend_weight: 'heavy' is not an integer from 0 to 1000"),
    ([svc()], {"web-1": {"xdp_lb_backend_weight": True}},
     S + ": host web-1: xdp_lb_backend_weight: True is not an integer"),
    ([svc()], {"web-1": {"xdp_lb_backend_port": 0}},
     S + ": host web-1: xdp_lb_backend_port: 0 is not an integer from 1 to 65535"),
    ([svc()], {"web-1": {"xdp_lb_backend_port": [80]}},
     S + ": host web-1: xdp_lb_backend_port: [80] is not an integer from 1 to 65535"),
    ([svc()], {"web-1": {"xdp_lb_backend_pool_state": "down"}},
     S + ": host web-1: xdp_lb_backend_pool_state: 'down' is not one of active, drain, absent"),
    ([svc()], {"web-1": {"xdp_lb_backend_ipv4": 198}},
     S + ": host web-1: xdp_lb_backend_ipv4: 198 is not a unicast IPv4 address"),
    ([svc(backend_weight=-1)], {}, "services[0] (tcp/198.18.100.1:80).backend_weight: -1 is not an integer"),
    ([svc(backend_port="http")], {}, "services[0] (tcp/198.18.100.1:80).backend_port: 'http' is not an integer"),
    ([svc(backend_use_ansible_host="perhaps")], {}, ".backend_use_ansible_host: 'perhaps' is not a boolean"),
    ([svc(backend_group=["web"])], {}, ".backend_group: ['web'] is not a group name"),
    ([{"vip": "198.18.100.1", "port": 80, "backend_port": 8080, "backends": ["198.18.20.11"]}], {},
     "services[0] (tcp/198.18.100.1:80): backend_port is only used with backend_group"),
    ([svc(backends="198.18.20.99")], {}, "services[0] (tcp/198.18.100.1:80).backends: '198.18.20.99' is not a list"),
    ([svc(vip="web.example")], {}, "services[0] (tcp/web.example:80).vip: 'web.example' is not an IPv4 or IPv6"),
])
def test_errors(services, extra, message):
    assert message in error_of(services, **extra)


def test_dsr_backend_port_is_an_error():
    assert "backend_port: 8080 is not allowed in dsr mode" in error_of([svc(backend_port=8080)], mode="dsr")


def test_unresolved_group_keys_reaching_the_module_are_named():
    with pytest.raises(model.ConfigError) as info:
        model.validate({"interfaces": ["eth0"], "services": [svc()]})
    assert "services[0].backend_group: web is resolved from the inventory by the xdp_lb action plugin" \
        in str(info.value)


def test_dsr_vips():
    groups, hostvars = inventory(**{
        "lb-1": {"xdp_lb_mode": "dsr", "xdp_lb_services": [
            svc(vip="198.18.101.1"), svc(vip="fd00:18:101::1", backend_group="web6"),
            {"vip": "198.18.101.2", "port": 53, "backends": ["198.18.20.13"]},
            {"vip": "198.18.101.1", "port": 443, "backend_group": "web"}]},
        "lb-2": {"xdp_lb_mode": "nat", "xdp_lb_services": [svc(vip="198.18.100.1")]},
        "web-2": {"xdp_lb_backend_pool_state": "absent"}})
    assert dsr_vips("web-1", ["lb-1", "lb-2"], groups, hostvars) == ["198.18.101.1", "fd00:18:101::1"]
    assert dsr_vips("web-3", ["lb-1", "lb-2"], groups, hostvars) == ["198.18.101.1", "198.18.101.2"]
    assert dsr_vips("web-2", ["lb-1", "lb-2"], groups, hostvars) == []   # absent: out of every pool
    assert dsr_vips("web-1", [], groups, hostvars) == []


def test_backend_changes_by_host():
    before = {"services": [{"service": "tcp/198.18.100.1:80", "backends": [
        {"address": "198.18.20.11", "port": 80, "weight": 100}, {"address": "198.18.20.12", "port": 80, "weight": 100},
        {"address": "198.18.20.14", "port": 80, "weight": 100}]}]}
    after = {"services": [{"service": "tcp/198.18.100.1:80", "backends": [
        {"address": "198.18.20.11", "port": 80, "weight": 100}, {"address": "198.18.20.12", "port": 80, "weight": 0},
        {"address": "198.18.20.13", "port": 80, "weight": 100}]}]}
    hosts = {("198.18.20.11", 80): "web-1", ("198.18.20.12", 80): "web-2", ("198.18.20.13", 80): "web-3"}
    changes = backend_changes(before, after, hosts, {"198.18.20.14": "web-4"}.get)
    assert [(c["change"], c["host"], c["backend"], c.get("weight_before"), c.get("weight")) for c in changes] == [
        ("weight", "web-2", "198.18.20.12:80", 100, 0),
        ("join", "web-3", "198.18.20.13:80", None, 100),
        ("leave", "web-4", "198.18.20.14:80", 100, None)]
    assert backend_changes(after, after, hosts, lambda a: None) == []


def test_example_inventory_resolves():
    """inventory/example, read by Ansible itself: the balancers' group services resolve, web-3 is drained,
    the dsr backends get their VIPs from the group (hostvars templated as in a play)."""
    import os
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))))
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[os.path.join(root, "inventory", "example")])
    vm = VariableManager(loader=loader, inventory=inv)
    hostvars = HostVars(inventory=inv, variable_manager=vm, loader=loader)   # what a play's tasks see
    lb = vm.get_vars(host=inv.get_host("lb-nat-1"))
    out, origins = resolve_services(lb["xdp_lb_services"], lb["groups"], hostvars, lb["xdp_lb_mode"])
    assert out[0]["backends"] == [{"address": "198.18.20.11", "weight": 100}, {"address": "198.18.20.12", "weight": 100},
                                  {"address": "198.18.20.13", "weight": 0}]
    assert out[2]["backends"] == [{"address": "fd00:18:20::99", "port": 8443, "weight": 50},
                                  {"address": "fd00:18:20::11", "weight": 100, "port": 8443},
                                  {"address": "fd00:18:20::12", "weight": 100, "port": 8443},
                                  {"address": "fd00:18:20::13", "weight": 0, "port": 8443}]
    assert origins[2][("fd00:18:20::13", 8443)] == "web-3"
    model.validate({"interfaces": ["eth0", "eth1"], "services": out})
    dsr = vm.get_vars(host=inv.get_host("lb-dsr-1"))
    out, _o = resolve_services(dsr["xdp_lb_services"], dsr["groups"], hostvars, "dsr")
    model.validate({"interfaces": ["eth0"], "mode": "dsr", "services": out})
    be = vm.get_vars(host=inv.get_host("dsr-web-1"))
    assert dsr_vips("dsr-web-1", be["groups"]["xdp_lb_balancers"], be["groups"], hostvars) == \
        ["198.18.101.1", "fd00:18:101::1"]
