# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A health checker that is turned off or removed drains nothing (issue 12).

- the module turns a service of host_setup.stop_on_remove off in the order
  stop, disable, remove its files, daemon-reload: proven through the
  module's main() with real files in a temporary directory and, because
  systemd is not PID 1 on this machine, a ``systemctl`` stand-in on PATH
  (a shell script that records its argv, and whether the unit file still
  exists at that moment, and answers is-active from a file).  Where systemd
  does not run, the result says what would have run and nothing runs;
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

from ansible.module_utils.testing import patch_module_args

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import health, hostsetup, model, state
from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb as module

UNIT = "netfleet-xdp-lb-health-t1.service"
ROOT = os.getuid() == 0
COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5 + [".collections"]))

# Stands in for systemd's systemctl (systemd is not PID 1 here): appends one
# line per call to $SYSTEMCTL_LOG, "<argv> | unit file present|gone";
# is-active answers from $SYSTEMCTL_ACTIVE (the file exists: active), stop
# removes that file.
STAND_IN = """#!/bin/sh
if [ -e "$SYSTEMCTL_UNIT_FILE" ]; then f=present; else f=gone; fi
echo "$* | unit file $f" >> "$SYSTEMCTL_LOG"
case "$1" in
  is-active) [ -e "$SYSTEMCTL_ACTIVE" ] ;;
  stop) rm -f "$SYSTEMCTL_ACTIVE" ;;
esac
"""


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    """The systemctl stand-in first on PATH; returns its log reader and paths."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    log = tmp_path / "systemctl.log"
    active = tmp_path / "active"
    systemd = tmp_path / "systemd"
    systemd.mkdir()
    (systemd / "multi-user.target.wants").mkdir()
    unit_file = systemd / UNIT
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    monkeypatch.setenv("SYSTEMCTL_LOG", str(log))
    monkeypatch.setenv("SYSTEMCTL_ACTIVE", str(active))
    monkeypatch.setenv("SYSTEMCTL_UNIT_FILE", str(unit_file))

    class Stand:
        pass
    stand = Stand()
    stand.active = active
    stand.unit_file = unit_file
    stand.link = systemd / "multi-user.target.wants" / UNIT
    stand.lines = lambda: log.read_text().splitlines() if log.exists() else []
    return stand


def install_checker(stand, state_dir):
    """The files the role leaves for a health checker that runs."""
    stand.unit_file.write_text("[Service]\nExecStart=/bin/true\n")
    os.symlink(str(stand.unit_file), str(stand.link))
    (state_dir / "health").mkdir(parents=True)
    conf = state_dir / "health" / "t1.conf.json"
    status = state_dir / "health" / "t1.json"
    conf.write_text("{}\n")
    status.write_text("{}\n")
    stand.active.write_text("")
    return [str(stand.link), str(stand.unit_file), str(conf), str(status)]


def run_main(args, monkeypatch, capsys, service_mgr=None):
    """module.main() with ``args``; the host's service manager as given (the
    machine lacks systemd as PID 1).  Returns the result dict."""
    if service_mgr:
        real = hostsetup.host_os

        def host_os():
            out = real()
            out["service_mgr"] = service_mgr
            return out
        monkeypatch.setattr(hostsetup, "host_os", host_os)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def absent_args(tmp_path, files):
    return {
        "name": "t1", "state": "absent", "state_dir": str(tmp_path / "state"),
        "pin_dir": "/sys/fs/bpf/xdp_lb/netfleet-test-never-pinned",
        "host_setup": {"packages": [], "absent": files, "systemd_reload": True,
                       "stop_on_remove": [{"unit": UNIT, "paths": files}]},
    }


def test_stop_plan(systemctl, tmp_path):
    manifest = {"stop_on_remove": [{"unit": UNIT, "paths": [str(systemctl.link), str(systemctl.unit_file)]}]}
    stop = ["systemctl", "stop", UNIT]
    disable = ["systemctl", "disable", UNIT]
    systemctl.unit_file.write_text("")
    systemctl.active.write_text("")
    assert hostsetup.stop_plan(manifest, "systemd") == [stop, disable]
    os.unlink(str(systemctl.active))
    assert hostsetup.stop_plan(manifest, "systemd") == [disable]
    # files removed by an earlier run, the service still running: stopped
    systemctl.active.write_text("")
    os.unlink(str(systemctl.unit_file))
    assert hostsetup.stop_plan(manifest, "systemd") == [stop]
    os.unlink(str(systemctl.active))
    assert hostsetup.stop_plan(manifest, "systemd") == []
    assert systemctl.lines() == ["is-active --quiet %s | unit file %s" % (UNIT, f)
                                 for f in ("present", "present", "gone", "gone")]
    # without systemd nothing is asked: what would run while the unit file is there
    systemctl.unit_file.write_text("")
    assert hostsetup.stop_plan(manifest, "init") == [stop, disable]
    os.unlink(str(systemctl.unit_file))
    assert hostsetup.stop_plan(manifest, "init") == []
    assert len(systemctl.lines()) == 4
    assert hostsetup.systemctl_lines([stop, disable], True, ["x.service"]) == [
        "systemctl stop %s" % UNIT, "systemctl disable %s" % UNIT, "systemctl daemon-reload",
        "systemctl restart x.service"]


@pytest.mark.skipif(not ROOT, reason="the module removes root's files")
def test_module_stops_and_disables_before_the_files_go_then_reloads(systemctl, tmp_path, monkeypatch, capsys):
    files = install_checker(systemctl, tmp_path / "state")
    result = run_main(absent_args(tmp_path, files), monkeypatch, capsys, service_mgr="systemd")
    assert not result.get("failed"), result
    assert systemctl.lines() == [
        "is-active --quiet %s | unit file present" % UNIT,
        "stop %s | unit file present" % UNIT,
        "disable %s | unit file present" % UNIT,
        "daemon-reload | unit file gone",
    ]
    report = result["host_setup"]
    assert report["systemctl"] == ["systemctl stop %s" % UNIT, "systemctl disable %s" % UNIT,
                                   "systemctl daemon-reload"]
    assert report["systemctl_ran"] is True and report["systemd_reloaded"] is True
    assert sorted(report["changed_items"]) == sorted(files)
    assert result["changed"] is True
    assert not any(os.path.lexists(path) for path in files)

    # again: nothing runs but the question whether it runs
    result = run_main(absent_args(tmp_path, files), monkeypatch, capsys, service_mgr="systemd")
    assert systemctl.lines()[4:] == ["is-active --quiet %s | unit file gone" % UNIT]
    assert result["changed"] is False and result["host_setup"]["systemctl"] == []


@pytest.mark.skipif(not ROOT, reason="the module removes root's files")
def test_checker_left_running_by_an_earlier_run_is_stopped(systemctl, tmp_path, monkeypatch, capsys):
    """The state this issue left hosts in: unit file removed, checker running."""
    (tmp_path / "state").mkdir()
    systemctl.active.write_text("")
    files = [str(systemctl.link), str(systemctl.unit_file)]
    result = run_main(absent_args(tmp_path, files), monkeypatch, capsys, service_mgr="systemd")
    assert systemctl.lines() == ["is-active --quiet %s | unit file gone" % UNIT, "stop %s | unit file gone" % UNIT]
    assert result["changed"] is True and result["host_setup"]["systemctl"] == ["systemctl stop %s" % UNIT]


@pytest.mark.skipif(not ROOT, reason="the module removes root's files")
def test_without_systemd_the_result_says_what_would_have_run(systemctl, tmp_path, monkeypatch, capsys):
    assert hostsetup.host_os()["service_mgr"] != "systemd", "this test is for a host without systemd"
    files = install_checker(systemctl, tmp_path / "state")
    result = run_main(absent_args(tmp_path, files), monkeypatch, capsys)
    assert systemctl.lines() == []
    report = result["host_setup"]
    assert report["systemctl"] == ["systemctl stop %s" % UNIT, "systemctl disable %s" % UNIT,
                                   "systemctl daemon-reload"]
    assert report["systemctl_ran"] is False and report["systemd_reloaded"] is False
    assert not any(os.path.lexists(path) for path in files)


@pytest.mark.skipif(not ROOT, reason="the module removes root's files")
def test_check_mode_says_what_would_run_and_changes_nothing(systemctl, tmp_path, monkeypatch, capsys):
    files = install_checker(systemctl, tmp_path / "state")
    args = dict(absent_args(tmp_path, files), _ansible_check_mode=True)
    result = run_main(args, monkeypatch, capsys, service_mgr="systemd")
    assert systemctl.lines() == ["is-active --quiet %s | unit file present" % UNIT]
    assert result["changed"] is True and result["host_setup"]["systemctl_ran"] is False
    assert result["host_setup"]["systemctl"] == ["systemctl stop %s" % UNIT, "systemctl disable %s" % UNIT,
                                                 "systemctl daemon-reload"]
    assert all(os.path.lexists(path) for path in files)


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
