# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's subcommands of ``xdp-lb`` (cli.py parses, this file acts).

``status``: engine.info plus what the maps do not know (configured weights,
health, overrides) and what differs from the state file.
``drain``/``undrain``/``weight``/``override list|clear``: change the
instance's overrides (overrides.py) and apply them at once through the
engine's own run (engine.restore: the rings are rebuilt as a play would,
maps written by maps.plan/apply, rolled back on failure); if applying
fails the overrides file is put back as it was.

Errors are ``UsageError`` (exit 2: malformed or unknown names) and
``StateError`` (exit 1: the host is not as it should be); both carry one
line naming what is wrong.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    engine, health, maps, model, netlink, overrides, state, validate)


class UsageError(Exception):
    """Exit 2: what the operator typed is malformed or names nothing."""


class HostError(Exception):
    """Exit 1: the host or instance is not in a state to answer."""


_SERVICE = re.compile(r"^(?:(?P<p1>tcp|udp)/)?(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>[0-9]{1,5})(?:/(?P<p2>tcp|udp))?$")
_BACKEND = re.compile(r"^(?P<host>\[[^\]]+\]|[0-9.]+|[0-9A-Fa-f:]+)(?::(?P<port>[0-9]{1,5}))?$")


# ---- names the operator types ---------------------------------------------------------

def need_root():
    if os.geteuid() != 0:
        raise HostError("needs root (it reads and writes BPF maps); run it with sudo")


def address(text, what):
    try:
        return validate.address(text.strip("[]"), what, special_ok=True)[0]
    except validate.ConfigError:
        raise UsageError("%s: %r is not an IPv4 or IPv6 address (no scope id)" % (what, text))


def port(text, what):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError("%s: port %r is not a number from 1 to 65535" % (what, text))
    return int(text)


def service_key(text):
    """'198.18.100.1:80/tcp', '[fd00::1]:53/udp' or 'tcp/198.18.100.1:80' -> the service key."""
    m = _SERVICE.match(text or "")
    if not m or bool(m.group("p1")) == bool(m.group("p2")):
        raise UsageError("service %r: expected VIP:PORT/PROTO, e.g. 198.18.100.1:80/tcp or [fd00::1]:53/udp" % text)
    vip = address(m.group("host"), "service %s: VIP" % text)
    return maps.service_key_str(vip, port(m.group("port"), "service %s" % text), m.group("p1") or m.group("p2"))


def backend_spec(text, what="backend"):
    """'198.18.1.12', '198.18.1.12:8080', '[fd00::12]:80' -> (address, port or None)."""
    m = _BACKEND.match(text or "")
    if not m or (m.group("port") and ":" in m.group("host") and not m.group("host").startswith("[")):
        # a bare IPv6 address takes no port (fd00::12:80 is an address)
        try:
            return address(text, what), None
        except UsageError:
            raise UsageError("%s %r: expected ADDRESS or ADDRESS:PORT ([IPv6]:PORT)" % (what, text))
    return address(m.group("host"), what), (
        port(m.group("port"), "%s %s" % (what, text)) if m.group("port") else None)


def weight(text):
    if not str(text).isdigit() or not 0 <= int(text) <= model.WEIGHT_MAX:
        raise UsageError("weight %r is not an integer from 0 to %d" % (text, model.WEIGHT_MAX))
    return int(text)


# ---- instances ------------------------------------------------------------------------

def instance(state_dir, name):
    """(name, state dict) of ``name``, or of the only instance when ``name`` is None."""
    if name is not None:
        try:
            validate.instance_name(name, "instance")
        except validate.ConfigError as exc:
            raise UsageError(str(exc))
    if not os.path.isdir(state_dir):
        raise HostError("state directory %s does not exist: no load balancer was deployed here" % state_dir)
    names = state.instances(state_dir)
    if name is None:
        if len(names) != 1:
            raise UsageError("give an instance: %s" % (", ".join(names) if names else
                                                       "there is none (no state file in %s)" % state_dir))
        name = names[0]
    elif name not in names:
        raise UsageError("unknown instance %r (instances here: %s)" % (name, ", ".join(names) or "none"))
    try:
        data = state.load(state.state_path(state_dir, name))
    except state.StateError as exc:
        raise HostError(str(exc))
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise HostError("state file %s has no configuration" % state.state_path(state_dir, name))
    return name, data


def check_live(data):
    """bpffs mounted and the instance's pins there (else HostError)."""
    pin_dir = data["config"].get("pin_dir") or ""
    try:
        engine.check_bpffs(pin_dir)
    except engine.EngineError as exc:
        raise HostError(str(exc))
    if not os.path.exists(os.path.join(pin_dir, engine.PROG_PIN)):
        raise HostError("instance %s has no pinned program in %s (rebooted? run 'xdp-lb restore %s')"
                        % (data.get("name"), pin_dir, data.get("name")))


def services_of(data):
    try:
        return model.Config.from_dict(data["config"]).services
    except model.ConfigError as exc:
        raise HostError("state file of instance %s: config.%s" % (data.get("name"), exc))


def match_backends(data, service, backend):
    """Backend keys of the instance matching SERVICE (or any) and ADDRESS[:PORT]."""
    skey = service_key(service) if service else None
    addr, bport = backend_spec(backend)
    svcs = services_of(data)
    if skey and skey not in [s.key for s in svcs]:
        raise UsageError("unknown service %s in instance %s (services: %s)"
                         % (service, data.get("name"), ", ".join(s.key for s in svcs) or "none"))
    out = []
    for s in svcs:
        if skey and s.key != skey:
            continue
        for b in s.backends:
            if b.address == addr and (bport is None or b.port == bport):
                out.append((health.backend_key(s.key, b.address, b.port), s, b))
    if not out:
        raise UsageError("no backend %s%s in instance %s" % (backend, " in service %s" % skey if skey else "",
                                                             data.get("name")))
    return out


# ---- overrides ------------------------------------------------------------------------

def _apply(state_dir, name, new, old, new_ports=None, old_ports=None):
    overrides.save(state_dir, name, new, new_ports)
    res = engine.restore(state_dir, name).get(name) or {}
    if res.get("failed"):
        overrides.save(state_dir, name, old, old_ports)
        raise HostError("applying failed, overrides left as they were: %s" % res.get("msg"))
    return res


def set_port(state_dir, name, data, action, ifname):
    """ports add|remove IFACE: the redirect interfaces in effect change at once."""
    cfg = data["config"]
    if cfg.get("mode") != "redirect":
        raise UsageError("instance %s is in %s mode: redirect ports exist only in redirect mode"
                         % (name, cfg.get("mode")))
    try:
        validate.interface_name(ifname, "interface")
    except validate.ConfigError as exc:
        raise UsageError(str(exc))
    check_live(data)
    try:
        backends = overrides.load(state_dir, name)
        old = overrides.load_ports(state_dir, name)
    except overrides.OverrideError as exc:
        raise HostError(str(exc))
    configured = cfg.get("redirect_interfaces") or []
    now = overrides.redirect_ports(configured, old)
    new = {"add": [n for n in old["add"] if n != ifname], "remove": [n for n in old["remove"] if n != ifname]}
    if action == "add":
        if ifname in now:
            raise UsageError("%s is already a redirect port of %s (%s)" % (ifname, name, ", ".join(now)))
        with netlink.in_netns(data.get("netns")):
            if netlink.link_index(ifname) is None:
                raise UsageError("interface %s not found%s" % (
                    ifname, " in network namespace %s" % data["netns"] if data.get("netns") else ""))
        if ifname not in configured:
            new["add"].append(ifname)
    else:
        if ifname not in now:
            raise UsageError("%s is not a redirect port of %s (ports: %s)" % (ifname, name, ", ".join(now) or "none"))
        if len(now) == 1:
            raise UsageError("%s is the last redirect port of %s: removing it would leave none" % (ifname, name))
        if ifname in configured:
            new["remove"].append(ifname)
    res = _apply(state_dir, name, backends, backends, new, old)
    return {"instance": name, "ports": overrides.redirect_ports(configured, new), "changes": res.get("changes") or [],
            "overrides": new}


def ports(state_dir, name, data):
    cfg = data["config"]
    if cfg.get("mode") != "redirect":
        raise UsageError("instance %s is in %s mode: redirect ports exist only in redirect mode"
                         % (name, cfg.get("mode")))
    try:
        p = overrides.load_ports(state_dir, name)
    except overrides.OverrideError as exc:
        raise HostError(str(exc))
    configured = cfg.get("redirect_interfaces") or []
    return {"instance": name, "configured": configured, "overrides": p,
            "ports": overrides.redirect_ports(configured, p)}


def set_override(state_dir, name, data, service, backend, action, value=None):
    """drain/undrain/weight: returns {"backends": [...], "changes": [...], "overrides": {...}}."""
    check_live(data)
    try:
        old = overrides.load(state_dir, name)
    except overrides.OverrideError as exc:
        raise HostError(str(exc))
    new = dict(old)
    down = health.drained(state_dir, name)
    touched = []
    for key, _svc, b in match_backends(data, service, backend):
        if action == "undrain":
            new.pop(key, None)
            if key in down:
                # still down by health: the operator says it takes flows anyway
                new[key] = {"action": "undrain", "since": time.time()}
            if b.weight == 0:
                raise UsageError("backend %s has configured weight 0 (inventory drain or weight 0), undrain "
                                 "cannot give it flows: use 'xdp-lb weight N'" % key.replace("|", " "))
        elif action == "drain":
            new[key] = {"action": "drain", "since": time.time()}
        else:
            new[key] = {"action": "weight", "weight": value, "since": time.time()}
        touched.append(key)
    res = _apply(state_dir, name, new, old) if new != old else {"changes": []}
    return {"instance": name, "backends": touched, "changes": res.get("changes") or [],
            "overrides": new}


def clear_overrides(state_dir, name, data, service=None, backend=None):
    check_live(data)
    try:
        old = overrides.load(state_dir, name)
    except overrides.OverrideError:
        old = None   # a corrupt file: clearing all of it is the way out
    if old is None:
        if service or backend:
            raise HostError("overrides file %s is corrupt: clear all of it ('xdp-lb override clear %s')"
                            % (overrides.path(state_dir, name), name))
        new, cleared = {}, ["(corrupt file)"]
    elif backend:
        keys = set(k for k, _s, _b in match_backends(data, service, backend))
        new = dict((k, v) for k, v in old.items() if k not in keys)
        cleared = sorted(k for k in old if k in keys)
    elif service:
        skey = service_key(service)
        new = dict((k, v) for k, v in old.items() if not k.startswith(skey + "|"))
        cleared = sorted(k for k in old if k not in new)
    else:
        new, cleared = {}, sorted(old)
        try:
            p = overrides.load_ports(state_dir, name)
        except overrides.OverrideError:
            p = {"add": [], "remove": []}
        if p["add"] or p["remove"]:
            cleared += overrides.describe_ports(p)
            res = _apply(state_dir, name, new, old or {}, {"add": [], "remove": []}, p)
            return {"instance": name, "cleared": cleared, "changes": res.get("changes") or [], "overrides": new}
    res = _apply(state_dir, name, new, old or {}) if new != old else {"changes": []}
    return {"instance": name, "cleared": cleared, "changes": res.get("changes") or [], "overrides": new}


# ---- status ---------------------------------------------------------------------------

def status(state_dir, name, data):
    """engine.instance_info plus configured/effective weights, health, overrides and differences."""
    info = engine.instance_info(data)
    cfg_services = services_of(data)
    down = health.drained(state_dir, name)
    try:
        ovr = overrides.load(state_dir, name)
    except overrides.OverrideError as exc:
        ovr = {}
        info.setdefault("problems", []).append(str(exc))
    eff = dict((s.key, overrides.effective(s, down, ovr)) for s in cfg_services)
    configured = dict((health.backend_key(s.key, b.address, b.port), b.weight)
                      for s in cfg_services for b in s.backends)
    effective = dict((health.backend_key(s.key, b.address, b.port), b.weight)
                     for s in eff.values() for b in s.backends)
    for svc in info.get("services") or []:
        for bk in svc["backends"]:
            key = health.backend_key(svc["service"], bk["address"], bk["port"])
            bk["configured_weight"] = configured.get(key)
            bk["effective_weight"] = effective.get(key)
            bk["health"] = "down" if key in down else "up"
            bk["override"] = ovr.get(key)
    info["overrides"] = dict((k, dict(v, text=overrides.describe(k, v))) for k, v in sorted(ovr.items()))
    try:
        info["redirect_overrides"] = overrides.load_ports(state_dir, name)
    except overrides.OverrideError:
        info["redirect_overrides"] = {"add": [], "remove": []}
    info["differences"] = differences(data, info, cfg_services)
    return info


def differences(data, info, cfg_services):
    """What the live host has that the state file does not say, one line each."""
    out = []
    prog = (data.get("program") or {}).get("id")
    pinned = (info.get("program") or {}).get("id")
    if pinned is None:
        out.append("no pinned program in %s (state file: program %s)" % (info.get("pin_dir"), prog))
    elif prog != pinned:
        out.append("pinned program is %s, the state file says %s" % (pinned, prog))
    want_modes = data.get("interfaces") or {}
    for ifname, a in sorted((info.get("interfaces") or {}).items()):
        if a.get("ifindex") is None:
            out.append("interface %s does not exist" % ifname)
        elif not a.get("prog_id"):
            out.append("interface %s has no XDP program" % ifname)
        elif not a.get("ours"):
            out.append("interface %s runs XDP program %s, not this instance's" % (ifname, a["prog_id"]))
        elif (want_modes.get(ifname) or {}).get("mode") not in (None, a.get("mode")):
            out.append("interface %s is attached %s, the state file says %s"
                       % (ifname, a.get("mode"), want_modes[ifname]["mode"]))
    if not info.get("maps"):
        out.append("maps are not pinned in %s" % info.get("pin_dir"))
        return out
    live = dict((s["service"], s) for s in info.get("services") or [])
    rings = data.get("rings") or {}
    for s in cfg_services:
        if s.key not in live:
            out.append("service %s is not in the maps" % s.key)
            continue
        have = set((b["address"], b["port"]) for b in live[s.key]["backends"])
        for b in s.backends:
            if (b.address, b.port) not in have:
                out.append("backend %s|%s:%d is not in the maps" % (s.key, b.address, b.port))
        rec = (rings.get(s.key) or {}).get("ring")
        if rec and live[s.key].get("ring") and not rec.startswith(live[s.key]["ring"]):
            out.append("ring of %s differs from the one the state file records" % s.key)
    for key in sorted(set(live) - set(s.key for s in cfg_services)):
        out.append("service %s is in the maps but not in the state file" % key)
    return out
