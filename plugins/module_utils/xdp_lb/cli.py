# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line for hosts (``xdp-lb``): restore instances after boot, status, operator overrides.

The role installs it as ``<xdp_lb_bin_dir>/xdp-lb`` (docs/cli.md), an entry
point that puts the installed engine alone first on sys.path (python3 -I:
no current directory, no PYTHONPATH) and calls ``main``.  The operator's
subcommands live in operate.py (status, drain, undrain, weight, ports,
override), explain.py, flows.py, top.py and trace.py and print tables (views.py), or JSON with
``--json``.  Exit status: 0 ok,
1 a state problem (not root, bpffs or the instance's pins missing, applying
failed), 2 usage (malformed input, unknown instance, service or backend).

    xdp-lb restore --all | restore web [--check]
    xdp-lb guard --all | guard web
    xdp-lb status [web] [--json]
    xdp-lb drain|undrain BACKEND [-s VIP:PORT/PROTO] [-i web];  xdp-lb weight BACKEND N [...]
    xdp-lb override list|clear [web] [-s ...] [-b ...]
    xdp-lb explain CLIENT[:PORT] VIP:PORT/PROTO [-i web]
    xdp-lb flows [web] [--vip V] [--backend B] [--client C] [--count]
    xdp-lb top [web] [--once] [--interval S]
    xdp-lb ports list [rd] | ports add|remove IFACE [-i rd]
    xdp-lb trace [web] [--seconds N]
    xdp-lb metrics --out FILE
    xdp-lb health web [--rounds N]

(``--state-dir DIR`` before the subcommand; the xdp_lb role installs the
entry point, a systemd unit running ``restore --all``, one running
``guard --all`` before the network comes up (the NAT guards
recorded in the state files, natguard.py: no resets until restore ran), and with
xdp_lb_metrics_enabled a timer running ``metrics --out``).  restore prints
JSON on stdout; metrics writes the counters ``status`` reads in Prometheus
text format (metrics.py) to FILE, atomically, or to stdout with
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
    engine, explain, flows, health, metrics, model, natguard, netlink, operate, overrides, state, top, trace, validate,
    views)


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line (exit 2)."""

    def error(self, message):
        self.exit(2, "%s: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _parser():
    p = _Parser(
        prog="xdp-lb", description="netfleet.xdp_lb host tool: status, drain/undrain/weight backends, "
        "restore pinned load balancers. Exit status: 0 ok, 1 state problem, 2 usage error.")
    p.add_argument("--state-dir", default=model.DEFAULT_STATE_DIR,
                   help="directory of the instances' state files (default: %(default)s)")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("restore", help="load, configure and attach instances from their state files")
    r.add_argument("name", nargs="?", help="instance to restore")
    r.add_argument("--all", action="store_true", help="every instance with a state file")
    r.add_argument("--check", action="store_true", help="only report what would change")
    g = sub.add_parser("guard", help="put the NAT guards of nat-mode instances in place from their state files "
                                     "(at boot, before the network)")
    g.add_argument("name", nargs="?", help="instance")
    g.add_argument("--all", action="store_true", help="every instance with a state file")
    s = sub.add_parser("status", help="attachments, services, backends, counters, overrides, differences")
    s.add_argument("name", nargs="?", help="only this instance")
    s.add_argument("--json", action="store_true", help="JSON instead of tables")
    for verb, text in (("drain", "no new flows for a backend (established flows stay), at once"),
                       ("undrain", "end a drain (also takes a backend the health checker has down)"),
                       ("weight", "set a backend's weight (0..%d) at once" % model.WEIGHT_MAX)):
        d = sub.add_parser(verb, help=text, description=text + "; kept as an override across "
                           "restores and play runs until 'xdp-lb override clear'.")
        d.add_argument("backend", metavar="BACKEND", help="ADDRESS or ADDRESS:PORT ([IPv6]:PORT)")
        if verb == "weight":
            d.add_argument("weight", metavar="N", help="weight 0..%d" % model.WEIGHT_MAX)
        d.add_argument("-s", "--service", metavar="VIP:PORT/PROTO",
                       help="only in this service (default: every service the backend is in)")
        d.add_argument("-i", "--instance", help="instance (default: the only one)")
        d.add_argument("--json", action="store_true", help="JSON instead of text")
    e = sub.add_parser("explain", help="which backend a flow has (conntrack) or would get (ring and hash), and why")
    e.add_argument("client", metavar="CLIENT[:PORT]", help="client address and source port ([IPv6]:PORT); "
                   "the port may be left out for ip_hash services")
    e.add_argument("service", metavar="VIP:PORT/PROTO", help="the service, e.g. 198.18.100.1:80/tcp")
    e.add_argument("-i", "--instance", help="instance (default: the only one)")
    e.add_argument("--json", action="store_true", help="JSON instead of text")
    f = sub.add_parser("flows", help="the live connection table: client -> VIP -> backend, NAT port, age")
    f.add_argument("name", nargs="?", help="instance (default: the only one)")
    f.add_argument("--vip", metavar="VIP|VIP:PORT/PROTO", help="only flows to this VIP or service")
    f.add_argument("--backend", metavar="ADDRESS[:PORT]", help="only flows on this backend")
    f.add_argument("--client", metavar="ADDRESS[:PORT]", help="only flows of this client")
    f.add_argument("--count", action="store_true", help="only the number of flows")
    f.add_argument("--json", action="store_true", help="JSON instead of a table")
    t = sub.add_parser("top", help="live rates per backend, verdict and redirect port, every second")
    t.add_argument("name", nargs="?", help="instance (default: the only one)")
    t.add_argument("--once", action="store_true", help="one sample (over --interval) and exit")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    t.add_argument("--json", action="store_true", help="JSON lines instead of tables")
    pp = sub.add_parser("ports", help="redirect mode: list, add or remove egress ports at once")
    psub = pp.add_subparsers(dest="action")
    pl = psub.add_parser("list", help="the redirect ports in effect, configured and overridden")
    pl.add_argument("name", nargs="?", help="instance (default: the only one)")
    pl.add_argument("--json", action="store_true", help="JSON instead of text")
    for verb in ("add", "remove"):
        pa = psub.add_parser(verb, help="%s a redirect port (an override, until 'xdp-lb override clear')" % verb)
        pa.add_argument("interface", help="interface name")
        pa.add_argument("-i", "--instance", help="instance (default: the only one)")
        pa.add_argument("--json", action="store_true", help="JSON instead of text")
    tr = sub.add_parser("trace", help="decisions of live packets for a bounded time (swaps a debug build in and out)")
    tr.add_argument("name", nargs="?", help="instance (default: the only one)")
    tr.add_argument("--seconds", type=float, default=10.0, help="how long to trace, 1..600 (default 10)")
    tr.add_argument("--json", action="store_true", help="JSON lines instead of text")
    o = sub.add_parser("override", help="list or clear the operator's overrides")
    osub = o.add_subparsers(dest="action")
    ol = osub.add_parser("list", help="the overrides of an instance")
    ol.add_argument("name", nargs="?", help="instance (default: the only one)")
    ol.add_argument("--json", action="store_true", help="JSON instead of text")
    oc = osub.add_parser("clear", help="end overrides (all, of a service, or of a backend) and apply")
    oc.add_argument("name", nargs="?", help="instance (default: the only one)")
    oc.add_argument("-s", "--service", metavar="VIP:PORT/PROTO", help="only this service's")
    oc.add_argument("-b", "--backend", metavar="ADDRESS[:PORT]", help="only this backend's")
    oc.add_argument("--json", action="store_true", help="JSON instead of text")
    m = sub.add_parser("metrics", help="counters in Prometheus text format (node_exporter textfile collector)")
    m.add_argument("name", nargs="?", help="only this instance")
    m.add_argument("--out", required=True, metavar="FILE",
                   help="file to write (atomically: temporary file + rename), '-' for stdout")
    h = sub.add_parser("health", help="probe the backends of an instance, drain the failing ones (runs until stopped)")
    h.add_argument("name", help="instance")
    h.add_argument("--config", metavar="FILE",
                   help="checker settings, JSON (default: <state-dir>/health/<name>.conf.json if it exists)")
    h.add_argument("--rounds", type=_rounds, default=0, help="stop after this many rounds (0: run until stopped)")
    return p


def _rounds(text):
    """--rounds: a whole number >= 0 (argparse reports the error, exit 2)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError("%r is not a whole number of rounds (0: run until stopped)" % text)
    return int(text)


# Subcommands whose positional ``name`` (or -i/--instance) is an instance name.
def _check_names(args):
    """Exit-2 message for an instance name that is not one (validate.instance_name), or None."""
    for attr, what in (("name", "instance"), ("instance", "--instance")):
        value = getattr(args, attr, None)
        if value is not None:
            try:
                validate.instance_name(value, what)
            except validate.ConfigError as exc:
                return str(exc)
    return None


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


def guard(state_dir, name=None):
    """Create the NAT guard recorded in each state file (in its netns); {name: result}."""
    out = {}
    for n in [name] if name else state.instances(state_dir):
        try:
            data = state.load(state.state_path(state_dir, n))
            spec = (data or {}).get("nat_guard")
            if not spec:
                out[n] = {"changed": False, "guard": None}
                continue
            with netlink.in_netns(data.get("netns")):
                there = natguard.present(n)
                if not there:
                    natguard.apply(n, spec)
            out[n] = {"changed": not there, "guard": spec}
        except (state.StateError, natguard.GuardError, netlink.NetError, OSError) as exc:
            out[n] = {"failed": True, "msg": str(exc)}
    return out


def _brief(result):
    if result.get("failed"):
        return {"failed": True, "msg": result.get("msg")}
    return dict((k, result.get(k)) for k in ("changed", "changes", "interfaces", "program", "warnings"))


def _out(args, data, text):
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(text + "\n")


def _operate(parser, args):
    operate.need_root()
    if args.command == "status":
        names = [operate.instance(args.state_dir, args.name)] if args.name else None
        if names is None:
            if not os.path.isdir(args.state_dir):
                raise operate.HostError("state directory %s does not exist: no load balancer was deployed here"
                                        % args.state_dir)
            names = []
            for n in state.instances(args.state_dir):
                try:
                    names.append(operate.instance(args.state_dir, n))
                except operate.HostError as exc:
                    names.append((n, {"error": str(exc)}))
        out = []
        for n, data in names:
            if "error" in data:
                out.append({"name": n, "error": data["error"]})
                continue
            try:
                operate.check_live(data)
                out.append(operate.status(args.state_dir, n, data))
            except operate.HostError as exc:
                out.append({"name": n, "error": str(exc)})
            except (OSError, ValueError) as exc:
                out.append({"name": n, "error": str(exc)})
        if args.name and "error" in out[0]:
            raise operate.HostError(out[0]["error"])
        _out(args, out, "\n\n".join(views.status(i) for i in out) or "no instances in %s" % args.state_dir)
        return 1 if any("error" in i for i in out) else 0
    if args.command == "explain":
        client, cport = operate.backend_spec(args.client, "client")
        skey = operate.service_key(args.service)
        name, data = operate.instance(args.state_dir, args.instance)
        keys = [s.key for s in operate.services_of(data)]
        if skey not in keys:
            raise operate.UsageError("unknown service %s in instance %s (services: %s)"
                                     % (args.service, name, ", ".join(keys) or "none"))
        operate.check_live(data)
        res = explain.explain(data, client, cport, skey)
        who = client if cport is None else "%s:%d" % ("[%s]" % client if ":" in client else client, cport)
        _out(args, res, "%s -> %s: %s flow, backend %s\n  why: %s%s" % (
            who, skey, res.get("state", "no service"), res.get("backend") or "none", res["reason"],
            "\n  NAT source port %s" % res["nat_port"] if res.get("nat_port") else ""))
        return 0
    if args.command == "trace":
        if not 1 <= args.seconds <= 600:
            raise operate.UsageError("--seconds %s is not a number from 1 to 600" % args.seconds)
        name, data = operate.instance(args.state_dir, args.name)
        operate.check_live(data)

        def emit(text):
            sys.stdout.write((json.dumps({"instance": name, "decision": text}) if args.json else text) + "\n")
            sys.stdout.flush()
        try:
            n = trace.run(data, args.seconds, emit)
        except KeyboardInterrupt:
            return 0
        sys.stderr.write("xdp-lb trace: %d decisions in %g s; the normal program is back\n" % (n, args.seconds))
        return 0
    if args.command == "top":
        if not 0.1 <= args.interval <= 3600:
            raise operate.UsageError("--interval %s is not a number of seconds from 0.1 to 3600" % args.interval)
        name, data = operate.instance(args.state_dir, args.name)
        operate.check_live(data)
        before = top.sample(data)
        try:
            while True:
                time.sleep(args.interval)
                after = top.sample(data)
                r = top.rates(before, after)
                before = after
                if args.json:
                    sys.stdout.write(json.dumps(dict(r, instance=name), sort_keys=True) + "\n")
                else:
                    clear = "\033[H\033[2J" if sys.stdout.isatty() and not args.once else ""
                    sys.stdout.write(clear + views.top(name, r) + "\n")
                sys.stdout.flush()
                if args.once:
                    return 0
        except KeyboardInterrupt:
            return 0
    if args.command == "flows":
        vip = None
        if args.vip:
            vip = operate.service_key(args.vip) if "/" in args.vip else operate.address(args.vip, "--vip")
        backend = operate.backend_spec(args.backend) if args.backend else None
        client = operate.backend_spec(args.client, "client") if args.client else None
        name, data = operate.instance(args.state_dir, args.name)
        operate.check_live(data)
        rows = flows.flows(data, vip, backend, client)
        if args.count:
            _out(args, {"flows": len(rows)}, str(len(rows)))
        else:
            _out(args, rows, views.flows(rows, flows.has_age()))
        return 0
    if args.command == "ports":
        if args.action is None:
            raise operate.UsageError("give 'list', 'add IFACE' or 'remove IFACE'")
        if args.action == "list":
            name, data = operate.instance(args.state_dir, args.name)
            res = operate.ports(args.state_dir, name, data)
            text = "\n".join(["%s redirect ports: %s" % (name, ", ".join(res["ports"]) or "none")] +
                             ["  override: %s" % x for x in overrides.describe_ports(res["overrides"])])
            _out(args, res, text)
            return 0
        name, data = operate.instance(args.state_dir, args.instance)
        res = operate.set_port(args.state_dir, name, data, args.action, args.interface)
        _out(args, res, "\n".join(["%s redirect ports: %s" % (name, ", ".join(res["ports"]))] +
                                  ["  applied: %s" % c for c in res["changes"]]))
        return 0
    if args.command == "override":
        if args.action is None:
            raise operate.UsageError("give 'list' or 'clear'")
        name, data = operate.instance(args.state_dir, args.name)
        if args.action == "list":
            ovr = overrides.load(args.state_dir, name)
            ports = overrides.load_ports(args.state_dir, name)
            lines = [overrides.describe(k, v) for k, v in sorted(ovr.items())] + overrides.describe_ports(ports)
            _out(args, {"backends": ovr, "redirect_ports": ports}, "\n".join(lines) or "%s: no overrides" % name)
            return 0
        res = operate.clear_overrides(args.state_dir, name, data, args.service, args.backend)
        _out(args, res, views.override_result(res, "cleared override of"))
        return 0
    value = operate.weight(args.weight) if args.command == "weight" else None
    operate.backend_spec(args.backend)
    if args.service:
        operate.service_key(args.service)
    name, data = operate.instance(args.state_dir, args.instance)
    res = operate.set_override(args.state_dir, name, data, args.service, args.backend, args.command, value)
    verb = {"drain": "drained", "undrain": "undrained", "weight": "weight %s for" % value}[args.command]
    _out(args, res, views.override_result(res, verb))
    return 0


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    bad = _check_names(args) if args.command else None
    if bad:
        sys.stderr.write("xdp-lb %s: %s\n" % (args.command, bad))
        return 2
    if args.command in ("restore", "guard") and args.all and not os.path.isdir(args.state_dir):
        sys.stderr.write("xdp-lb %s: --state-dir %s does not exist: no load balancer was deployed here\n"
                         % (args.command, args.state_dir))
        return 1
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
    if args.command == "guard":
        if bool(args.all) == bool(args.name):
            parser.print_usage(sys.stderr)
            sys.stderr.write("guard: give an instance name or --all\n")
            return 2
        results = guard(args.state_dir, None if args.all else args.name)
        sys.stdout.write(json.dumps(results, indent=2, sort_keys=True) + "\n")
        failed = [n for n, r in results.items() if r.get("failed")]
        for n in failed:
            sys.stderr.write("xdp-lb guard %s: %s\n" % (n, results[n].get("msg")))
        return 1 if failed else 0
    if args.command in ("status", "drain", "undrain", "weight", "override", "explain", "flows", "top", "ports", "trace"):
        try:
            return _operate(parser, args)
        except operate.UsageError as exc:
            sys.stderr.write("xdp-lb %s: %s\n" % (args.command, exc))
            return 2
        except (operate.HostError, engine.EngineError, overrides.OverrideError, trace.TraceError) as exc:
            sys.stderr.write("xdp-lb %s: %s\n" % (args.command, exc))
            return 1
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
