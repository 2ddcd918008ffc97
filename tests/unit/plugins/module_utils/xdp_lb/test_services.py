# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module starts, stops, enables and disables what it installs, in order.

systemd is not PID 1 on this machine, so ``systemctl`` here is a STAND-IN:
a shell script first on PATH that records its argv and whether the unit
file it is about exists at that moment, and answers ``is-active`` from
marker files that its start/restart create and its stop removes.  The
module is told that systemd runs by replacing hostsetup.host_os's answer
(service_mgr) only; everything else (files, links, the order) is real, in
temporary directories.

- turned on: files written, then daemon-reload, then the health checker
  and the metrics timer restarted (started); the metrics file is there
  after the first run; the restore and NAT guard units are enabled
  (links), not started; a rerun runs nothing but is-active questions;
- turned off or absent: stop, disable (unit file still there), files
  removed, daemon-reload;
- without systemd: nothing runs, the result says what would have run;
- check mode: only questions, nothing changes;
- a failing balancer run (bad pin_dir) removes nothing of the footprint.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import footprint, hostsetup, units
from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb as module
from netns_fork import in_own_netns

ROOT = os.getuid() == 0
HEALTH = units.health_unit_name("t1")
pytestmark = pytest.mark.skipif(not ROOT, reason="the module writes root-owned files")

# The systemctl stand-in (see the docstring).
STAND_IN = """#!/bin/sh
unit="$2"; [ "$1" = is-active ] && unit="$3"
if [ -n "$unit" ] && [ -e "$SYSTEMCTL_UNITS/$unit" ]; then f=present; else f=gone; fi
[ -z "$unit" ] && f=-
echo "$* | unit file $f" >> "$SYSTEMCTL_LOG"
case "$1" in
  is-active) [ -e "$SYSTEMCTL_ACTIVE/$3" ] ;;
  start|restart) touch "$SYSTEMCTL_ACTIVE/$2" ;;
  stop) rm -f "$SYSTEMCTL_ACTIVE/$2" ;;
esac
"""


class Stand:
    def __init__(self, tmp_path):
        self.bin = tmp_path / "bin"
        self.systemd = tmp_path / "systemd"
        self.active = tmp_path / "active"
        self.log = tmp_path / "systemctl.log"
        for d in (self.bin, self.systemd, self.active):
            d.mkdir()

    def lines(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def stand(tmp_path, monkeypatch):
    s = Stand(tmp_path)
    script = s.bin / "systemctl"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (s.bin, os.environ["PATH"]))
    monkeypatch.setenv("SYSTEMCTL_LOG", str(s.log))
    monkeypatch.setenv("SYSTEMCTL_ACTIVE", str(s.active))
    monkeypatch.setenv("SYSTEMCTL_UNITS", str(s.systemd))
    return s


def pretend_systemd(monkeypatch):
    """Only the answer to 'does systemd run' is replaced."""
    real = hostsetup.host_os

    def host_os():
        return dict(real(), service_mgr="systemd")
    monkeypatch.setattr(hostsetup, "host_os", host_os)


def opts(tmp_path, stand, **over):
    out = dict(
        restore_at_boot=None, systemd_dir=str(stand.systemd), mount_bpffs=False,
        host_command=dict(install=None, engine_dir=str(tmp_path / "engine"), bin_dir=str(tmp_path / "sbin"),
                          python="/usr/bin/python3"),
        health_checks=dict(enabled=False, interval=2.0, timeout=1.0, rise=2, fall=2, probes=None),
        metrics=dict(enabled=None, directory=str(tmp_path / "metrics"), interval="15s"),
        sysctls=dict(manage=False, extra={}, file=None),
        packages=dict(policy="ignore", names=None, extra=[], update_cache=True, cache_valid_time=3600))
    for key, value in over.items():
        if isinstance(value, dict):
            out[key] = dict(out[key], **value)
        else:
            out[key] = value
    return out


def run_footprint(tmp_path, options, check_mode=False, present=True):
    """Mode redirect: no sysctl of its own (only what a test adds, in a
    network namespace of its own)."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    manifest = footprint.plan(options, "t1", "redirect", ["lo"], str(state_dir), str(tmp_path / "build"),
                              present=present)
    fp = footprint.Footprint(manifest, check_mode)
    fp.check()
    fp.prepare_host()
    changed = fp.apply()
    return changed, fp.report


ON = dict(restore_at_boot=True, health_checks=dict(enabled=True), metrics=dict(enabled=True))


def test_turned_on_runs_now_in_order(stand, tmp_path, monkeypatch):
    pretend_systemd(monkeypatch)
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, **ON))
    assert changed is True
    assert stand.lines() == [
        "daemon-reload | unit file -",
        "restart %s | unit file present" % HEALTH,
        "restart %s | unit file present" % units.METRICS_TIMER,
    ]
    assert report["systemctl"] == ["systemctl daemon-reload", "systemctl restart %s" % HEALTH,
                                   "systemctl restart %s" % units.METRICS_TIMER]
    assert report["systemctl_ran"] is True
    # Enabled by their links; restore and guard are not started.
    for unit, wants in ((units.RESTORE_UNIT, "multi-user"), (units.GUARD_UNIT, "multi-user"),
                        (HEALTH, "multi-user"), (units.METRICS_TIMER, "timers")):
        assert os.readlink(str(stand.systemd / ("%s.target.wants" % wants) / unit)) == str(stand.systemd / unit)
    assert report["services"]["restore unit"] == {"unit": units.RESTORE_UNIT, "enabled": True, "running": False}
    assert report["services"]["health checker"]["running"] is True
    # The metrics file is there after the first run, written as the service writes it.
    prom = tmp_path / "metrics" / units.METRICS_FILE
    assert prom.exists()
    assert "metrics file %s: written" % prom in report["changed"]
    # Named by what they are.
    assert "restore unit %s: written" % (stand.systemd / units.RESTORE_UNIT) in report["changed"]
    assert "health checker %s: written" % (stand.systemd / HEALTH) in report["changed"]
    assert "NAT guard unit %s: written" % (stand.systemd / units.GUARD_UNIT) in report["changed"]

    # A rerun: in sync, only questions.
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, **ON))
    assert changed is False and report["in_sync"] is True and report["drift"] == []
    assert stand.lines()[3:] == ["is-active --quiet %s | unit file present" % HEALTH,
                                 "is-active --quiet %s | unit file present" % units.METRICS_TIMER]
    assert report["systemctl"] == []

    # A changed setting restarts the checker, reloads systemd first.
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, restore_at_boot=True,
                                                   health_checks=dict(enabled=True, fall=3), metrics=dict(enabled=True)))
    assert report["drift"] == ["health checker settings %s: content differs" % (tmp_path / "state/health/t1.conf.json"),
                               "health checker %s: content differs" % (stand.systemd / HEALTH)]
    assert report["systemctl"][:2] == ["systemctl daemon-reload", "systemctl restart %s" % HEALTH]


def test_turned_off_is_stopped_and_disabled_before_its_files_go(stand, tmp_path, monkeypatch):
    pretend_systemd(monkeypatch)
    run_footprint(tmp_path, opts(tmp_path, stand, **ON))
    n = len(stand.lines())
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, restore_at_boot=False,
                                                   health_checks=dict(enabled=False), metrics=dict(enabled=False)))
    assert changed is True
    # The questions first (before anything changes), then the actions.
    lines = stand.lines()[n:]
    assert [line for line in lines if line.startswith("is-active")] == lines[:4]
    assert lines[4:] == [
        "disable %s | unit file present" % units.RESTORE_UNIT,
        "disable %s | unit file present" % units.GUARD_UNIT,
        "stop %s | unit file present" % HEALTH,
        "disable %s | unit file present" % HEALTH,
        "stop %s | unit file present" % units.METRICS_TIMER,
        "disable %s | unit file present" % units.METRICS_TIMER,
        "daemon-reload | unit file -",
    ]
    assert not any(os.path.lexists(str(stand.systemd / u)) for u in (
        units.RESTORE_UNIT, units.GUARD_UNIT, HEALTH, units.METRICS_TIMER, units.METRICS_SERVICE))
    assert not (tmp_path / "metrics" / units.METRICS_FILE).exists()
    assert "metrics file %s: removed" % (tmp_path / "metrics" / units.METRICS_FILE) in report["changed"]
    assert "health checker %s: removed" % (stand.systemd / HEALTH) in report["changed"]


def test_without_systemd_the_result_says_what_would_have_run(stand, tmp_path):
    assert hostsetup.host_os()["service_mgr"] != "systemd", "this test is for a host without systemd as PID 1"
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, **ON))
    assert stand.lines() == [] and report["systemctl_ran"] is False
    assert report["systemctl"] == ["systemctl daemon-reload", "systemctl restart %s" % HEALTH,
                                   "systemctl restart %s" % units.METRICS_TIMER]
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, health_checks=dict(enabled=False)))
    assert report["systemctl"] == ["systemctl stop %s" % HEALTH, "systemctl disable %s" % HEALTH,
                                   "systemctl daemon-reload"]
    assert stand.lines() == []


def test_check_mode_asks_and_changes_nothing(stand, tmp_path, monkeypatch):
    pretend_systemd(monkeypatch)
    changed, report = run_footprint(tmp_path, opts(tmp_path, stand, **ON), check_mode=True)
    assert changed is True and report["changed"] == ["metrics file %s: written" % (tmp_path / "metrics" / units.METRICS_FILE)]
    assert report["systemctl_ran"] is False
    assert all(line.startswith("is-active") for line in stand.lines())
    assert os.listdir(str(stand.systemd)) == [] and not (tmp_path / "metrics").exists()


def module_run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def test_module_absent_stops_disables_removes_then_reloads(stand, tmp_path, monkeypatch, capsys):
    pretend_systemd(monkeypatch)
    base = dict(name="t1", state_dir=str(tmp_path / "state"), systemd_dir=str(stand.systemd),
                host_command=dict(engine_dir=str(tmp_path / "engine"), bin_dir=str(tmp_path / "sbin")),
                metrics=dict(directory=str(tmp_path / "metrics")))
    run_footprint(tmp_path, opts(tmp_path, stand, **ON))
    n = len(stand.lines())
    result = module_run(dict(base, state="absent", restore_at_boot=True, metrics=dict(base["metrics"], enabled=True),
                             host_command=dict(base["host_command"], install=True),
                             pin_dir="/sys/fs/bpf/xdp_lb/netfleet-test-never-pinned"), capsys)
    assert not result.get("failed"), result
    lines = stand.lines()[n:]
    assert lines[-1] == "daemon-reload | unit file -"
    assert "stop %s | unit file present" % HEALTH in lines
    assert lines.index("disable %s | unit file present" % HEALTH) > lines.index("stop %s | unit file present" % HEALTH)
    assert result["changed"] is True
    # The last instance took the host-wide artifacts with it.
    assert sorted(os.listdir(str(stand.systemd))) == ["multi-user.target.wants", "timers.target.wants"]
    assert not (tmp_path / "engine").exists() and not (tmp_path / "sbin" / "xdp-lb").exists()


def test_a_failing_balancer_run_removes_nothing(stand, tmp_path, monkeypatch, capsys):
    """Issue 13: metrics turned off, but the balancer run fails (here: its
    pin_dir is not on bpffs): the metrics units stay."""
    run_footprint(tmp_path, opts(tmp_path, stand, metrics=dict(enabled=True)))
    before = sorted(os.listdir(str(stand.systemd)))
    result = module_run(dict(name="t1", interfaces=["lo"], state_dir=str(tmp_path / "state"),
                             build_dir=str(tmp_path / "build"), pin_dir=str(tmp_path / "pins"),
                             systemd_dir=str(stand.systemd), metrics=dict(enabled=False,
                                                                          directory=str(tmp_path / "metrics")),
                             services=[{"vip": "198.18.0.10", "port": 80,
                                        "backends": [{"address": "198.18.1.1"}]}]), capsys)
    assert result["failed"] and "not on bpffs" in result["msg"], result
    assert sorted(os.listdir(str(stand.systemd))) == before
    assert (tmp_path / "metrics" / units.METRICS_FILE).exists()


@pytest.mark.parametrize("over, msg", [
    (dict(health_checks=dict(enabled=True, interval=0)),
     "health_checks.interval: 0.0 is not a number of seconds from 0.05 to 3600; nothing changed"),
    (dict(health_checks=dict(enabled=True, probes={"tcp": {"type": "icmp"}})),
     "health_checks.probes[tcp].type: 'icmp' is not one of "),
    (dict(sysctls=dict(manage=True, extra={"//.//.tmp": 1})),
     "sysctls.extra: //.//.tmp is not a sysctl key"),
    (dict(sysctls=dict(manage=True, extra={"net.ipv4..x": 1})),
     "sysctls.extra: net.ipv4..x is not a sysctl key"),
    (dict(sysctls=dict(manage=True, extra={"net.core.somaxconn": "1\n2"})),
     "sysctls.extra[net.core.somaxconn]: '1\\n2' is not a sysctl value"),
])
def test_bad_footprint_input_is_named_and_changes_nothing(stand, tmp_path, capsys, over, msg):
    args = dict(name="t1", interfaces=["lo"], state_dir=str(tmp_path / "state"), build_dir=str(tmp_path / "build"),
                systemd_dir=str(stand.systemd), services=[{"vip": "198.18.0.10", "port": 80,
                                                           "backends": [{"address": "198.18.1.1"}]}])
    args.update(over)
    result = module_run(args, capsys)
    assert result["failed"] and msg in result["msg"], result
    assert os.listdir(str(stand.systemd)) == [] and not (tmp_path / "state").exists()


def test_saved_sysctls_of_the_earlier_role_move(stand, tmp_path):
    """The role kept the values from before the first change in
    <state_dir>/role/<name>.sysctl.json; the module moves them to
    <state_dir>/sysctl/<name>.json (the oldest values stay the saved ones)
    and removes what the role left.  In a network namespace of its own
    (net.* sysctls are per namespace); the live value is wanted as it is."""
    def scenario():
        live = hostsetup.read_sysctl("net.ipv4.ip_forward")
        old = "0" if live == "1" else "1"
        (tmp_path / "state" / "role").mkdir(parents=True)
        (tmp_path / "state" / "role" / "t1.sysctl.json").write_text(json.dumps({"net.ipv4.ip_forward": old}))
        options = opts(tmp_path, stand, sysctls=dict(manage=True, extra={"net.ipv4.ip_forward": live},
                                                     file=str(tmp_path / "sysctl.conf")))
        first = run_footprint(tmp_path, options)
        return dict(old=old, live_after=hostsetup.read_sysctl("net.ipv4.ip_forward"), live=live,
                    first=first, rerun=run_footprint(tmp_path, options))
    out = in_own_netns(scenario)
    changed, report = out["first"]
    assert changed is True and out["live_after"] == out["live"]
    saved = tmp_path / "state" / "sysctl" / "t1.json"
    assert json.loads(saved.read_text()) == {"net.ipv4.ip_forward": out["old"]}
    assert not (tmp_path / "state" / "role").exists()
    assert "directory of the earlier role %s: removed" % (tmp_path / "state" / "role") in report["changed"]
    assert not any(line.startswith("sysctl net.") for line in report["changed"])
    changed, report = out["rerun"]
    assert changed is False and report["drift"] == []


@pytest.mark.parametrize("field", ["systemd_dir", "host_command.bin_dir"])
def test_units_and_the_host_command_go_only_into_trusted_directories(stand, tmp_path, field):
    """A unit or the xdp-lb entry point written into a directory others can
    write to could be swapped for their own: refused before anything is
    written, naming the option, the path and its mode."""
    options = opts(tmp_path, stand, restore_at_boot=True, host_command=dict(install=True))
    path = options["systemd_dir"] if field == "systemd_dir" else options["host_command"]["bin_dir"]
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    (tmp_path / "state").mkdir(exist_ok=True)
    before = sorted(os.listdir(str(tmp_path)))
    with pytest.raises(footprint.FootprintError, match=r"%s: %s is writable by group or others \(mode 0777"
                       % (re.escape(field), re.escape(path))):
        run_footprint(tmp_path, options)
    assert sorted(os.listdir(str(tmp_path))) == before and os.listdir(path) == []
