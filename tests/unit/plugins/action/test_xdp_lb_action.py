# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugin drops options given as null, so a role maps a variable left at null with a plain
"{{ var }}" (roles/xdp_lb/tasks/main.yml) and the module's default applies."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.netfleet.xdp_lb.plugins.action import xdp_lb as action
from ansible_collections.netfleet.xdp_lb.plugins.action.xdp_lb import without_nulls
from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb


def test_null_options_and_suboptions_are_dropped():
    args = {"name": "default", "ring_size": None, "nat_source_ipv4": None, "debug": False, "services": [],
            "packages": {"policy": "install", "names": None, "extra": []},
            "health_checks": {"enabled": False, "probes": None}}
    want = {"name": "default", "debug": False, "services": [], "packages": {"policy": "install", "extra": []},
            "health_checks": {"enabled": False}}
    assert without_nulls(args) == want
    assert args["ring_size"] is None and args["packages"]["names"] is None      # the task's own args stay


def test_false_zero_and_empty_stay():
    args = {"flow_idle_timeout": 0, "interfaces": [], "preflight": False, "sysctls": {"extra": {}, "manage": False}}
    assert without_nulls(args) == args


def test_dict_options_are_the_modules():
    """Every dict option of the module is one whose null suboptions are dropped (a new one must be added)."""
    dicts = set(k for k, v in xdp_lb.ARGUMENT_SPEC.items() if v.get("type") == "dict" and v.get("options"))
    assert dicts == set(action.DICT_OPTIONS)
