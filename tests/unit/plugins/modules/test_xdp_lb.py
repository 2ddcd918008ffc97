# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netfleet.xdp_lb.xdp_lb where users enter it: main() through AnsibleModule
with real argument sets (aliases, defaults, type conversion and required_if
by AnsibleModule, then the module's own checks).

Only what needs no BPF or bpffs runs here: every error is raised before the
host is touched, and state=absent / the footprint options work on temporary
directories.  Loading, attaching and check mode of state=present run for
real in tests/examples (every task of the EXAMPLES) and
tests/integration/targets/xdp_lb.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb

from modutils import exits, fails, run_module

MISSING_IF = "xlbutnone0"       # an interface that does not exist


@pytest.fixture
def dirs(tmp_path):
    """state_dir and build_dir in a temporary directory (not created: a
    failing run must not create them)."""
    return {"state_dir": str(tmp_path / "state"), "build_dir": str(tmp_path / "build")}


def args(dirs, **over):
    out = dict(dirs, name="xlbut", interfaces=[MISSING_IF], services=[
        {"vip": "198.18.0.10", "port": 80, "backends": [{"address": "198.18.1.1"}, {"address": "198.18.1.2"}]}])
    out.update(over)
    return out


def svc(**over):
    s = {"vip": "198.18.0.10", "port": 80, "backends": [{"address": "198.18.1.1"}]}
    s.update(over)
    return s


def assert_untouched(dirs):
    assert not os.path.exists(dirs["state_dir"]) and not os.path.exists(dirs["build_dir"])


# -- the alias ---------------------------------------------------------------------------------------

def test_alias_interface_reaches_validation_as_interfaces(dirs):
    """interface: is the documented alias; its value is validated as interfaces."""
    res = fails(xdp_lb.main, dict(dirs, name="xlbut", interface="a/b"))
    assert res["msg"].startswith("interfaces[0]: a/b is not a valid interface name")
    assert res["field"] == "interfaces[0]"


def test_alias_interface_in_the_documented_dsr_example(dirs, tmp_path):
    """The EXAMPLES' dsr task (interface: eth0) passes validation; it stops only
    where the host is needed (bpffs), not at 'mutually exclusive'."""
    services = [{"vip": "fd00:18::53", "port": 53, "protocol": "udp", "scheduler": "ip_hash",
                 "backends": [{"address": "fd00:18::1:1"}, {"address": "fd00:18::1:2"}]}]
    out = run_module(xdp_lb.main, dict(dirs, name="dns", interface="eth0", mode="dsr", pin_dir=str(tmp_path / "pins"),
                                       services=services))
    assert "mutually exclusive" not in out.result["msg"]
    assert out.result["msg"].startswith("pin_dir %s is not on bpffs" % (tmp_path / "pins"))
    assert out.params["interfaces"] == ["eth0"]
    assert_untouched(dirs)


def test_alias_interface_with_state_absent(dirs):
    res = exits(xdp_lb.main, dict(dirs, name="xlbut", interface=MISSING_IF, state="absent"))
    assert res["changed"] is False and res["state"] == "absent" and res["changes"] == []


def test_alias_as_a_list(dirs):
    res = fails(xdp_lb.main, dict(dirs, name="xlbut", interface=["xlbut0", "xlbut0"]))
    assert res["msg"].startswith("interfaces[1]: xlbut0 is listed twice")


# -- AnsibleModule's checks --------------------------------------------------------------------------

@pytest.mark.parametrize("over, message", [
    ({"colour": "blue"}, "Unsupported parameters for (basic.py) module: colour"),
    ({"mode": "tunnel"}, "value of mode must be one of: redirect, nat, dsr, got: tunnel"),
    ({"state": "gone"}, "value of state must be one of: present, absent, got: gone"),
    ({"attach_mode": "offload"}, "value of attach_mode must be one of: native, generic, got: offload"),
    ({"redirect_algorithm": "random"}, "value of redirect_algorithm must be one of: round_robin, flow_hash, got: random"),
    ({"nat_port_min": "many"}, "argument 'nat_port_min' is of type"),
    ({"ring_size": "big"}, "argument 'ring_size' is of type"),
    ({"debug": "maybe"}, "argument 'debug' is of type"),
    ({"services": "198.18.0.10"}, "Elements value for option 'services' is of type"),
    ({"services": ["198.18.0.10"]}, "Elements value for option 'services' is of type str and we were unable to "
                                    "convert to dict"),
    ({"host_setup": {"files": []}}, "Unsupported parameters for (basic.py) module: host_setup"),
    ({"sysctls": {"managed": True}}, "Unsupported parameters for (basic.py) module: sysctls.managed"),
    ({"packages": {"policy": "maybe"}}, "value of policy must be one of: install, verify, ignore, got: maybe"),
    ({"health_checks": {"interval": "often"}}, "argument 'interval' is of type"),
])
def test_argument_spec_errors(dirs, over, message):
    res = fails(xdp_lb.main, args(dirs, **over))
    assert message in res["msg"]
    assert_untouched(dirs)


def test_required_if(dirs):
    params = args(dirs)
    del params["interfaces"]
    res = fails(xdp_lb.main, params)
    assert res["msg"] == "state is present but all of the following are missing: interfaces"
    assert_untouched(dirs)


def test_conversion_by_the_argument_spec(dirs):
    """Strings convert as Ansible converts them (a port "65536" still fails
    in the module's range check, naming field and value)."""
    res = fails(xdp_lb.main, args(dirs, nat_port_max="70000"))
    assert res["msg"].startswith("nat_port_max: 70000 is not an integer from 1 to 65535")
    res = fails(xdp_lb.main, args(dirs, interfaces="xlbut0,xlbut0"))
    assert res["msg"].startswith("interfaces[1]: xlbut0 is listed twice")


# -- the module's own checks: every one names field and value, nothing is touched -------------------

@pytest.mark.parametrize("over, field, message", [
    ({"interfaces": ["a/b"]}, "interfaces[0]", "a/b is not a valid interface name"),
    ({"interfaces": ["xlbut0", "x" * 16]}, "interfaces[1]", "%s is not a valid interface name" % ("x" * 16)),
    ({"interfaces": ["xlbut0", "xlbut0"]}, "interfaces[1]", "xlbut0 is listed twice"),
    ({"name": "../etc"}, "name", "../etc is not a valid instance name"),
    ({"name": "web.1"}, "name", "web.1 is not a valid instance name"),
    ({"netns": "a/b"}, "netns", "a/b is not a valid network namespace name"),
    ({"pin_dir": "relative/dir"}, "pin_dir", "relative/dir is not an absolute path"),
    ({"pin_dir": "/sys/fs/bpf"}, "pin_dir", "/sys/fs/bpf must be a directory of its own below the bpffs mount"),
    ({"pin_dir": "/sys/fs/bpf/a.b"}, "pin_dir", "/sys/fs/bpf/a.b must not contain '.'"),
    ({"source": "relative"}, "source", "relative is not an absolute path"),
    ({"clang": " "}, "clang", "' ' is not a non-empty string"),
    # services
    ({"interfaces": None}, "interfaces", "None must name at least one interface"),
    ({"interfaces": []}, "interfaces", "[] must name at least one interface"),
    ({"services": [svc(), svc(vip="not-an-ip")]}, "services[1].vip", "not-an-ip is not an IPv4 or IPv6 address"),
    ({"services": [svc(vip="224.0.0.1")]}, "services[0].vip", "224.0.0.1 is not a unicast address"),
    ({"services": [svc(vip=None)]}, "services[0].vip", "None is required"),
    ({"services": [svc(port=None)]}, "services[0].port", "None is required"),
    ({"services": [svc(port=0)]}, "services[0].port", "0 is not an integer from 1 to 65535"),
    ({"services": [svc(port="http")]}, "services[0].port", "http is not an integer from 1 to 65535"),
    ({"services": [svc(protocol="sctp")]}, "services[0].protocol", "sctp is not one of tcp, udp"),
    ({"services": [svc(scheduler="rr")]}, "services[0].scheduler", "rr is not one of ip_hash, five_tuple, maglev"),
    ({"services": [svc(colour="blue")]}, "services[0]", "colour is not a known key"),
    ({"services": [svc(), svc(port=81), svc(port="80")]}, "services[2]", "tcp/198.18.0.10:80 duplicates services[0]"),
    ({"services": [svc(backends=[])]}, "services[0].backends", "[] is empty: service tcp/198.18.0.10:80 has no backend"),
    ({"services": [svc(backends="198.18.1.1")]}, "services[0].backends", "198.18.1.1 is not a list"),
    # backends
    ({"services": [svc(), svc(port=81), svc(port=82, backends=[{"address": "198.18.1.x"}])]},
     "services[2].backends[0].address", "198.18.1.x is not an IPv4 or IPv6 address"),
    ({"services": [svc(backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.2", "weight": -3}])]},
     "services[0].backends[1].weight", "-3 is not an integer from 0 to 1000"),
    ({"services": [svc(backends=[{"address": "198.18.1.1", "weight": 1001}])]},
     "services[0].backends[0].weight", "1001 is not an integer from 0 to 1000"),
    ({"services": [svc(backends=[{"address": "198.18.1.1", "port": 70000}])]},
     "services[0].backends[0].port", "70000 is not an integer from 1 to 65535"),
    ({"services": [svc(backends=[{"weight": 5}])]}, "services[0].backends[0].address", "None is required"),
    ({"services": [svc(backends=[{"address": "198.18.1.1", "zone": "a"}])]},
     "services[0].backends[0]", "zone is not a known key"),
    ({"services": [svc(backends=[{"address": "fd00:18::1"}])]},
     "services[0].backends[0].address", "fd00:18::1 is IPv6 but the service vip is IPv4"),
    ({"services": [svc(backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.1", "port": 80}])]},
     "services[0].backends[1]", "198.18.1.1:80 duplicates services[0].backends[0]"),
    ({"services": [svc(backends=[42])]}, "services[0].backends[0]", "42 is not a mapping with an address"),
    ({"mode": "dsr", "services": [svc(backends=[{"address": "198.18.1.1", "port": 8080}])]},
     "services[0].backends[0].port", "8080 is not allowed in dsr mode"),
    ({"mode": "dsr", "services": [svc(backends=["198.18.1.1", "198.18.1.1"])]},
     "services[0].backends[1]", "198.18.1.1 duplicates services[0].backends[0]"),
    # redirect mode
    ({"mode": "redirect", "services": []}, "redirect_interfaces", "None must name at least one interface in redirect mode"),
    ({"mode": "redirect", "redirect_interfaces": ["xlbut1", "a b"], "services": []},
     "redirect_interfaces[1]", "a b is not a valid interface name"),
    ({"mode": "redirect", "redirect_interfaces": ["xlbut1"]}, "services", "[1 services] are not used in redirect mode"),
    ({"redirect_interfaces": ["xlbut1"]}, "redirect_interfaces", "['xlbut1'] are only used in redirect mode"),
    # sizes
    ({"ring_size": 65536}, "ring_size", "65536 is not a prime number"),
    ({"ring_size": 1}, "ring_size", "1 is not a prime from 3 to"),
    ({"ring_size": 199}, "ring_size", "199 is too small: it must be greater than 100 x the largest backend count "
                                      "(2, services[0])"),
    ({"max_services": 0}, "max_services", "0 is not an integer from 1 to 1024"),
    ({"max_services": 1, "services": [svc(), svc(port=81)]}, "services", "[2 services] are more than max_services (1)"),
    ({"max_backends": 2}, "services", "[2 backends] are more than max_backends - 1 (1; id 0 is reserved)"),
    ({"conntrack_size": 8}, "conntrack_size", "8 is not an integer from 16 to"),
    # nat
    ({"nat_port_min": 0}, "nat_port_min", "0 is not an integer from 1 to 65535"),
    ({"nat_port_min": 40000, "nat_port_max": 30000}, "nat_port_min", "40000 is greater than nat_port_max (30000)"),
    ({"nat_source_ipv4": "fd00:18::1"}, "nat_source_ipv4", "fd00:18::1 is not an IPv4 address"),
    ({"nat_source_ipv6": "198.18.0.1"}, "nat_source_ipv6", "198.18.0.1 is not an IPv6 address"),
    ({"nat_source_ipv4": "bogus"}, "nat_source_ipv4", "bogus is not an IPv4 or IPv6 address"),
    ({"mode": "dsr", "nat_source_ipv4": "198.18.0.1"}, "nat_source_ipv4", "198.18.0.1 is only used in nat mode"),
])
def test_validation_errors(dirs, over, field, message):
    res = fails(xdp_lb.main, args(dirs, **over))
    assert res["msg"].startswith("%s: %s" % (field, message)), res["msg"]
    assert res["field"] == field
    assert_untouched(dirs)


def test_absent_validates_too(dirs):
    res = fails(xdp_lb.main, dict(dirs, name="../x", state="absent"))
    assert res["msg"].startswith("name: ../x is not a valid instance name")
    res = fails(xdp_lb.main, dict(dirs, state="absent"))
    assert res["msg"].startswith("interfaces: None must name at least one interface (or set name)")
    assert_untouched(dirs)


def test_pin_dir_not_on_bpffs(dirs):
    """The first check of the host: pin_dir must be on bpffs (a temporary
    directory is not, whether or not bpffs is mounted at /sys/fs/bpf)."""
    res = fails(xdp_lb.main, args(dirs, pin_dir="/tmp/xlbut-not-bpffs"))
    assert res["msg"].startswith("pin_dir /tmp/xlbut-not-bpffs is not on bpffs")
    assert not os.path.exists("/tmp/xlbut-not-bpffs")
    assert_untouched(dirs)


# -- the footprint options' checks --------------------------------------------------------------------

def test_footprint_not_with_netns(dirs, tmp_path):
    res = fails(xdp_lb.main, args(dirs, netns="xlbut-ns", restore_at_boot=True, systemd_dir=str(tmp_path)))
    assert "not with netns 'xlbut-ns'" in res["msg"]
    assert os.listdir(str(tmp_path)) == []


def test_footprint_missing_interface_changes_nothing(dirs, tmp_path):
    res = fails(xdp_lb.main, args(dirs, interfaces=["lo", MISSING_IF], restore_at_boot=True,
                                  systemd_dir=str(tmp_path / "systemd")))
    assert res["msg"] == "interfaces[1]: interface %s not found; nothing changed" % MISSING_IF
    assert not (tmp_path / "systemd").exists()
    assert_untouched(dirs)


def test_footprint_validation_error_changes_nothing(dirs, tmp_path):
    res = fails(xdp_lb.main, args(dirs, services=[svc(port=0)], restore_at_boot=True,
                                  systemd_dir=str(tmp_path / "systemd")))
    assert res["msg"].startswith("services[0].port: 0 is not an integer from 1 to 65535")
    assert not (tmp_path / "systemd").exists()


def test_footprint_packages_verify(dirs, tmp_path):
    res = fails(xdp_lb.main, args(dirs, interfaces=["lo"], restore_at_boot=True, systemd_dir=str(tmp_path / "systemd"),
                                  packages={"policy": "verify", "names": ["xlbut-no-such-package", "python3"]}))
    assert res["msg"] == ("packages not installed: xlbut-no-such-package (packages.policy: verify); "
                          "nothing changed")
    assert not (tmp_path / "systemd").exists()
    assert_untouched(dirs)


def test_interface_with_a_semicolon_is_named(dirs, tmp_path):
    res = fails(xdp_lb.main, args(dirs, interfaces=["lo;x"], sysctls={"manage": True}))
    assert "lo;x" in res["msg"] and res["msg"].startswith("interfaces[0]"), res["msg"]
    assert_untouched(dirs)


# -- state=absent and the footprint for real on temporary directories, with check mode and diff ------------

def _installed(dirs, tmp_path, name="xlbut"):
    """A state file and a pin directory as a deployed instance leaves them
    (the pins here are plain files: absent removes what is in pin_dir)."""
    pin_dir = tmp_path / "pins"
    pin_dir.mkdir()
    (pin_dir / "lb_config").write_text("")
    os.makedirs(dirs["state_dir"])
    state_file = os.path.join(dirs["state_dir"], "%s.json" % name)
    with open(state_file, "w") as f:
        json.dump({"version": 1, "name": name, "config": {"pin_dir": str(pin_dir), "interfaces": [MISSING_IF]},
                   "interfaces": {MISSING_IF: {}}, "neighbours": []}, f)
    return pin_dir, state_file


def test_absent_check_mode_then_for_real(dirs, tmp_path):
    pin_dir, state_file = _installed(dirs, tmp_path)
    params = dict(dirs, name="xlbut", state="absent")
    res = exits(xdp_lb.main, params, check_mode=True, diff=True)
    assert res["changed"] is True
    assert res["changes"] == ["remove pins in %s" % pin_dir, "remove state file %s" % state_file]
    assert res["diff"] == {"before": {"state": "present", "interfaces": {}, "program": {"id": None}},
                           "after": {"state": "absent"}}
    assert pin_dir.is_dir() and os.path.exists(state_file)        # check mode changed nothing

    res = exits(xdp_lb.main, params)
    assert res["changed"] is True and "diff" not in res
    assert not pin_dir.exists() and not os.path.exists(state_file)

    res = exits(xdp_lb.main, params, check_mode=True)
    assert res["changed"] is False and res["changes"] == []
    assert exits(xdp_lb.main, params)["changed"] is False


def test_footprint_check_mode_then_for_real(dirs, tmp_path):
    """The footprint with state=absent (no balancer; the last instance):
    check mode reports what would go and removes nothing; a run removes the
    restore unit named as such; a rerun is in sync."""
    systemd = tmp_path / "systemd"
    (systemd / "multi-user.target.wants").mkdir(parents=True)
    unit = systemd / "netfleet-xdp-lb-restore.service"
    unit.write_text("[Unit]\n")
    params = dict(dirs, name="xlbut", state="absent", restore_at_boot=True, systemd_dir=str(systemd))
    res = exits(xdp_lb.main, params, check_mode=True, diff=True)
    assert res["changed"] is True
    assert res["footprint"]["drift"] == ["restore unit %s: present, want absent" % unit]
    assert res["footprint"]["changed"] == [] and unit.exists()
    assert {"before_header": "restore unit %s" % unit, "after_header": "restore unit %s (absent)" % unit,
            "before": "[Unit]\n", "after": ""} in res["diff"]

    res = exits(xdp_lb.main, params)
    assert res["changed"] is True and res["footprint"]["changed"] == ["restore unit %s: removed" % unit]
    assert not unit.exists()

    res = exits(xdp_lb.main, params, check_mode=True)
    assert res["changed"] is False and res["footprint"]["in_sync"] is True
