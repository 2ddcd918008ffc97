# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netfleet.xdp_lb.xdp_lb_info through AnsibleModule with real argument sets,
on state directories of its own (instances with live maps are read in
tests/examples and tests/integration/targets/xdp_lb)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb_info

from modutils import exits, fails


def _state(state_dir, name, data):
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "%s.json" % name), "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))


@pytest.mark.parametrize("over, message", [
    ({"colour": "blue"}, "Unsupported parameters for (basic.py) module: colour"),
    ({"name": ["a", "b"]}, "name: ['a', 'b'] is not a valid instance name"),
    ({"name": "../etc/passwd"}, "name: ../etc/passwd is not a valid instance name"),
    ({"name": "a.b"}, "name: a.b is not a valid instance name"),
])
def test_errors(tmp_path, over, message):
    res = fails(xdp_lb_info.main, dict(state_dir=str(tmp_path / "state"), **over))
    assert message in res["msg"]
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("check_mode", [False, True])
def test_reads_every_instance_and_changes_nothing(tmp_path, check_mode):
    state_dir = str(tmp_path / "state")
    pin_dir = str(tmp_path / "pins")       # no pins: nothing deployed
    _state(state_dir, "web", {"version": 1, "name": "web", "config": {
        "mode": "nat", "attach_mode": "native", "pin_dir": pin_dir, "interfaces": ["xlbutnone0", "lo"]}})
    _state(state_dir, "broken", "{not json")
    before = sorted(os.listdir(state_dir))
    res = exits(xdp_lb_info.main, {"state_dir": state_dir}, check_mode=check_mode)
    assert res["changed"] is False
    by_name = dict((i["name"], i) for i in res["instances"])
    assert sorted(by_name) == ["broken", "web"]
    assert "is not valid JSON" in by_name["broken"]["error"]
    web = by_name["web"]
    assert (web["mode"], web["pin_dir"], web["program"], web["maps"]) == ("nat", pin_dir, None, {})
    assert web["interfaces"]["xlbutnone0"] == {"ifindex": None, "prog_id": None, "mode": None, "ours": False,
                                               "tag": None}
    assert web["interfaces"]["lo"]["ifindex"] == 1 and web["interfaces"]["lo"]["ours"] is False
    assert sorted(os.listdir(state_dir)) == before


def test_one_instance_by_name(tmp_path):
    state_dir = str(tmp_path / "state")
    res = exits(xdp_lb_info.main, {"state_dir": state_dir, "name": "web"})
    assert res["instances"] == [{"name": "web", "error": "no state file %s/web.json" % state_dir}]
    assert exits(xdp_lb_info.main, {"state_dir": state_dir})["instances"] == []
    assert not os.path.exists(state_dir)
