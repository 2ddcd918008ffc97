# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A health checker that is turned off or removed drains nothing (issue 12).

- the order in which the module stops, disables and removes a checker that
  is turned off is test_services.py's;
- health checks on or off is the module's health_checks option, kept in
  the state file (state files from before it: on);
- the checker itself (``cli health``, a real process) exits and removes its
  status file when health checks are off or the instance is gone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import health, model, state

COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5 + [".collections"]))


def test_health_checks_is_an_option_kept_in_the_state_file():
    params = {"name": "t1", "interfaces": ["lo"], "services": [
        {"vip": "198.18.0.1", "port": 80, "backends": [{"address": "198.18.1.1"}]}]}
    assert model.validate(params).health_checks is False
    cfg = model.validate(dict(params, health_checks=True))
    assert cfg.to_dict()["health_checks"] is True
    assert model.Config.from_dict(cfg.to_dict()).health_checks is True
    off = model.validate(params).to_dict()
    assert model.Config.from_dict(off).health_checks is False
    del off["health_checks"]   # a state file written before the option
    assert model.Config.from_dict(off).health_checks is True
    assert health.enabled({"config": off}) is True
    assert health.enabled({"config": dict(off, health_checks=False)}) is False
    with pytest.raises(model.ConfigError, match="health_checks: maybe is not a boolean"):
        model.validate(dict(params, health_checks="maybe"))


def checker(state_dir):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli",
                           "--state-dir", str(state_dir), "health", "t1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60, check=False)


@pytest.mark.parametrize("record", ["off", "gone"])
def test_the_checker_ends_and_removes_its_status_when_off_or_removed(tmp_path, record):
    """The checker's own command (no systemd needed for this path): it reads
    the state file before it probes anything."""
    (tmp_path / "health").mkdir()
    status = tmp_path / "health" / "t1.json"
    status.write_text(json.dumps({"version": health.STATUS_VERSION, "backends": {
        "tcp/198.18.0.1:80|198.18.1.1:80": {"state": "down"}}}))
    if record == "off":
        cfg = model.validate({"name": "t1", "interfaces": ["lo"], "health_checks": False, "services": [
            {"vip": "198.18.0.1", "port": 80, "backends": [{"address": "198.18.1.1"}]}]})
        state.write_atomic(str(tmp_path / "t1.json"), state.dumps(
            {"version": state.STATE_VERSION, "name": "t1", "config": cfg.to_dict()}))
    proc = checker(tmp_path)
    assert proc.returncode == 0, proc.stderr
    why = "health checks are off in the state file" if record == "off" else "the instance has no state file any more"
    assert ("t1: %s; status file removed, stopping" % why) in proc.stderr.decode()
    assert not status.exists()
