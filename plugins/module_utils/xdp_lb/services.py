# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The services the module installs: in which order systemctl runs.

A service of footprint.plan is ``{what, unit, on, start, paths}``: ``on``
whether it must be installed and enabled, ``start`` whether it runs now
(the health checker and the metrics timer; the restore and NAT guard
units are only enabled: the module's own run did their job), ``paths``
its files (the one named like the unit is its unit file).

The order of a run:

- before anything of a service turned off goes: ``systemctl stop`` (it
  would run on without its unit file), ``systemctl disable`` while its
  unit file is there (stop_plan);
- after the files were written and removed: ``systemctl daemon-reload``
  when a unit file or link changed, then ``systemctl restart`` of each
  service that is on and whose files changed, ``systemctl start`` of one
  that is on but not running (start_plan).

Where systemd is not PID 1 nothing can be asked or run: the commands are
returned as what would have run (a service counts as running when its
files were there).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import command

UNIT_SUFFIXES = (".service", ".timer", ".mount")


def _unit_file(svc):
    return next((p for p in svc["paths"] if os.path.basename(p) == svc["unit"] and
                 os.path.dirname(p).endswith(".wants") is False), None)


def active(unit):
    """``systemctl is-active``: True when the unit runs (or starts)."""
    try:
        rc, dummy, dummy = command.run(["systemctl", "is-active", "--quiet", unit], check=False)
    except command.CommandError:
        return False
    return rc == 0


def stop_plan(svcs, systemd):
    """systemctl commands (argv lists, in order) that turn off each service
    that is off, before its files go.  With systemd: stop when it is active
    (also when an earlier run removed its files and left it running).
    Without: stop and disable while its unit file is there."""
    out = []
    for svc in svcs:
        if svc["on"]:
            continue
        unit_file = _unit_file(svc)
        present = unit_file is not None and os.path.lexists(unit_file)
        if svc.get("stop", True) and (active(svc["unit"]) if systemd else present):
            out.append(["systemctl", "stop", svc["unit"]])
        if present:
            out.append(["systemctl", "disable", svc["unit"]])
    return out


def start_plan(svcs, changed_paths, systemd, check_mode=False):
    """systemctl commands after the files changed: daemon-reload when a unit
    file or link changed, then restart (files changed) or start (not
    running, only asked where systemd runs) of each service to run."""
    changed = set(changed_paths)
    out = []
    if any(path.endswith(UNIT_SUFFIXES) for path in changed):
        out.append(["systemctl", "daemon-reload"])
    for svc in svcs:
        if not (svc["on"] and svc.get("start")):
            continue
        if changed.intersection(svc["paths"]):
            out.append(["systemctl", "restart", svc["unit"]])
        elif systemd and not active(svc["unit"]):
            out.append(["systemctl", "start", svc["unit"]])
    return out


def run(argvs):
    for argv in argvs:
        command.run(argv)


def summary(svcs):
    """{what: {unit, enabled, running}}: the state each service is left in."""
    return dict((svc["what"], dict(unit=svc["unit"], enabled=bool(svc["on"]),
                                   running=bool(svc["on"] and svc.get("start"))))
                for svc in svcs)
