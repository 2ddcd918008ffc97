# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line for hosts: restore instances after boot, show their status.

    python3 -m ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli restore --all
    python3 -m ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli restore web
    python3 -m ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli status [web]
    python3 -m ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli metrics --out FILE
    python3 -m ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli health web [--rounds N]


(with PYTHONPATH holding the ansible_collections tree; the xdp_lb role
installs one and a systemd unit running ``restore --all``, and with
xdp_lb_metrics_enabled a timer running ``metrics --out``).  restore and
status print JSON on stdout; metrics writes the counters ``status`` reads in
Prometheus text format (metrics.py) to FILE, atomically, or to stdout with
``--out -``.  The exit status is 0 if every instance is fine, 1 if any
failed (metrics still writes the file, with ``xdp_lb_up 0`` for it), 2 on
usage errors.  health runs until stopped (or for --rounds rounds): it probes
the instance's backends and drains/undrains them (health.py), writing
``<state-dir>/health/<name>.json``; it logs transitions on stderr.  It
exits 0, removing that file, when health checks are off for the instance
or its state file is gone (a restart then finds the same and ends).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    engine, health, metrics, model, netlink, state)


def _parser():
    p = argparse.ArgumentParser(
        prog="xdp-lb", description="netfleet.xdp_lb host helper: restore pinned load balancers, show status")
    p.add_argument("--state-dir", default=model.DEFAULT_STATE_DIR,
                   help="directory of the instances' state files (default: %(default)s)")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("restore", help="load, configure and attach instances from their state files")
    r.add_argument("name", nargs="?", help="instance to restore")
    r.add_argument("--all", action="store_true", help="every instance with a state file")
    r.add_argument("--check", action="store_true", help="only report what would change")
    s = sub.add_parser("status", help="attachments, services and counters (JSON)")
    s.add_argument("name", nargs="?", help="only this instance")
    m = sub.add_parser("metrics", help="counters in Prometheus text format (node_exporter textfile collector)")
    m.add_argument("name", nargs="?", help="only this instance")
    m.add_argument("--out", required=True, metavar="FILE",
                   help="file to write (atomically: temporary file + rename), '-' for stdout")
    h = sub.add_parser("health", help="probe the backends of an instance, drain the failing ones (runs until stopped)")
    h.add_argument("name", help="instance")
    h.add_argument("--config", metavar="FILE",
                   help="checker settings, JSON (default: <state-dir>/health/<name>.conf.json if it exists)")
    h.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: run until stopped)")
    return p


def _log(msg):
    sys.stderr.write("xdp-lb health: %s\n" % msg)
    sys.stderr.flush()


def _health(args):
    conf_file = args.config or health.config_path(args.state_dir, args.name)
    try:
        raw = None
        if args.config or os.path.exists(conf_file):
            with open(conf_file) as f:
                raw = json.load(f)
        conf = health.validate_config(raw)
    except (IOError, OSError, ValueError, health.HealthError) as exc:
        sys.stderr.write("health: --config %s: %s\n" % (conf_file, exc))
        return 2
    checker = health.Checker(conf, health.load_status(args.state_dir, args.name))
    status_file = health.status_path(args.state_dir, args.name)
    state_file = state.state_path(args.state_dir, args.name)
    applied = False
    rounds = 0
    while True:
        start = time.time()
        try:
            data = state.load(state_file)
        except state.StateError as exc:
            _log(str(exc))
            data = None
        else:
            # Turned off or removed (health.py): the unit may be gone, or no
            # systemd may be there to stop this process; its status must not
            # drain anything, so it goes with the checker.
            why = "the instance has no state file any more" if data is None else \
                "health checks are off in the state file" if not health.enabled(data) else None
            if why:
                health.remove_status(args.state_dir, args.name)
                _log("%s: %s; status file removed, stopping" % (args.name, why))
                return 0
        changed = []
        if data is not None:
            with netlink.in_netns(data.get("netns")):
                changed = checker.step(health.targets_of(data))
        state.write_atomic(status_file, state.dumps(checker.status(args.name)))
        for key in changed:
            b = checker.backends[key]
            _log("%s %s is %s (%s)" % (args.name, key, b["state"], b["last"]))
        # Apply after a transition, and once at start (the maps may predate the status file).
        if data is not None and (changed or not applied):
            res = engine.restore(args.state_dir, args.name).get(args.name) or {}
            if res.get("failed"):
                _log("applying %s failed: %s" % (args.name, res.get("msg")))
            else:
                applied = True
                if res.get("changed"):
                    _log("%s: %s" % (args.name, "; ".join(res.get("changes") or [])))
        rounds += 1
        if args.rounds and rounds >= args.rounds:
            return 0
        time.sleep(max(0.0, conf["interval"] - (time.time() - start)))


def _brief(result):
    if result.get("failed"):
        return {"failed": True, "msg": result.get("msg")}
    return dict((k, result.get(k)) for k in ("changed", "changes", "interfaces", "program", "warnings"))


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "restore":
        if bool(args.all) == bool(args.name):
            parser.print_usage(sys.stderr)
            sys.stderr.write("restore: give an instance name or --all\n")
            return 2
        results = engine.restore(args.state_dir, None if args.all else args.name, check_mode=args.check)
        out = dict((n, _brief(r)) for n, r in results.items())
        sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
        failed = [n for n, r in results.items() if r.get("failed")]
        for n in failed:
            sys.stderr.write("xdp-lb restore %s: %s\n" % (n, results[n].get("msg")))
        return 1 if failed else 0
    if args.command == "status":
        instances = engine.info(args.state_dir, args.name)
        sys.stdout.write(json.dumps(instances, indent=2, sort_keys=True, default=str) + "\n")
        return 1 if any("error" in i for i in instances) else 0
    if args.command == "metrics":
        instances = engine.info(args.state_dir, args.name)
        text = metrics.render(instances)
        if args.out == "-":
            sys.stdout.write(text)
        else:
            if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
                sys.stderr.write("metrics: --out %s: directory %s does not exist\n"
                                 % (args.out, os.path.dirname(os.path.abspath(args.out))))
                return 2
            state.write_atomic(args.out, text)
        for i in instances:
            if "error" in i:
                sys.stderr.write("xdp-lb metrics %s: %s\n" % (i.get("name"), i["error"]))
        return 1 if any("error" in i for i in instances) else 0
    if args.command == "health":
        return _health(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
