# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files the module installs (units.py): systemd accepts the units,
their sandboxing is rated by ``systemd-analyze security --offline=true``,
and each unit's command runs under an equivalent restriction here
(molecule/shared/sandboxed.py: a private mount namespace with everything
read-only but the unit's ReadWritePaths, and its capability bounding set),
which is shown to refuse a write outside them.  systemd is not PID 1 on
this machine: the units themselves are not started.  Molecule's verify runs
the same commands against a deployed balancer."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import units

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 5))
SANDBOXED = os.path.join(ROOT, "molecule", "shared", "sandboxed.py")
ANALYZE = shutil.which("systemd-analyze")
# "OK" in systemd-analyze's rating goes up to 4.9; the units are near 3.
THRESHOLD = 40     # systemd-analyze counts in tenths: 4.0


@pytest.fixture
def installed(tmp_path):
    """The entry point (running this checkout's engine) and the units that
    run it, in temporary directories."""
    bin_dir, state_dir, metrics = tmp_path / "sbin", tmp_path / "state", tmp_path / "metrics"
    for d in (bin_dir, state_dir, metrics, tmp_path / "units"):
        d.mkdir()
    entry = bin_dir / "xdp-lb"
    entry.write_text(units.entry_point("/usr/bin/python3", os.path.join(ROOT, ".collections")))
    entry.chmod(0o755)
    args = ("/usr/bin/python3", str(bin_dir), str(state_dir))
    texts = {
        units.RESTORE_UNIT: units.restore_unit(*args, build_dir=str(tmp_path / "build")),
        units.GUARD_UNIT: units.guard_unit(*args),
        units.health_unit_name("t1"): units.health_unit(*args, name="t1",
                                                        settings={"interval": 2, "rise": 2, "fall": 2}),
        units.METRICS_SERVICE: units.metrics_service(*args, directory=str(metrics)),
        units.METRICS_TIMER: units.metrics_timer("15s"),
        units.BACKEND_UNIT: units.backend_unit("lo", ["198.18.100.1/32"]),
    }
    # The bpffs mount unit is for systemd older than 239: this systemd refuses
    # it (an API file system), so it is left out here.
    paths = {}
    for name, text in texts.items():
        paths[name] = tmp_path / "units" / name
        paths[name].write_text(text)
    return paths, state_dir, metrics


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed")
def test_systemd_verifies_every_unit(installed):
    paths, dummy, dummy = installed
    for name, path in paths.items():
        proc = subprocess.run([ANALYZE, "verify", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        assert proc.returncode == 0, (name, proc.stdout)


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", [units.RESTORE_UNIT, units.GUARD_UNIT, units.health_unit_name("t1"),
                                  units.METRICS_SERVICE])
def test_security_rating(installed, unit):
    paths, dummy, dummy = installed
    proc = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=%d" % THRESHOLD, unit],
                          cwd=str(paths[unit].parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Overall exposure level for %s" % unit in proc.stdout
    for need in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_BPF"):
        assert need in paths[unit].read_text()


def test_every_sandbox_directive_has_its_reason():
    block = units.sandbox(["/x"]).splitlines()
    for i, line in enumerate(block):
        if not line.startswith("#"):
            j = i
            while j > 0 and not block[j - 1].startswith("#"):
                j -= 1
            assert j > 0, "%s has no comment above it" % line


def sandboxed(unit, *args):
    return subprocess.run(["/usr/bin/python3", SANDBOXED, str(unit)] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd="/", timeout=120, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a private mount namespace)")
def test_the_restriction_refuses_writes_outside_the_writable_paths(tmp_path):
    ok, probe = tmp_path / "rw", "/etc/netfleet-xdp-lb-sandbox-probe"
    ok.mkdir()
    unit = tmp_path / "probe.service"
    unit.write_text("[Service]\nExecStart=/bin/sh -c 'touch %s/x && ! touch %s && ! sysctl -qw "
                    "net.ipv4.ip_forward=1 && ! touch /usr/x'\nReadWritePaths=/sys/fs/bpf -%s\n"
                    "CapabilityBoundingSet=CAP_NET_ADMIN\n" % (ok, probe, ok))
    proc = sandboxed(unit)
    assert proc.returncode == 0, proc.stderr
    assert (ok / "x").exists() and not os.path.exists(probe)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a private mount namespace)")
def test_each_units_command_runs_under_its_restriction(installed):
    """With no balancer in the state directory (molecule's verify runs them on
    a deployed one): restore, guard, metrics and the health checker do their
    job and exit 0 under the sandbox."""
    paths, state_dir, metrics = installed
    proc = sandboxed(paths[units.RESTORE_UNIT])
    assert proc.returncode == 0 and proc.stdout.strip() == "{}", proc.stderr
    proc = sandboxed(paths[units.GUARD_UNIT])
    assert proc.returncode == 0, proc.stderr
    proc = sandboxed(paths[units.METRICS_SERVICE])
    assert proc.returncode == 0, proc.stderr
    assert (metrics / units.METRICS_FILE).exists()
    proc = sandboxed(paths[units.health_unit_name("t1")])
    assert proc.returncode == 0 and "t1: the instance has no state file" in proc.stderr, proc.stderr
