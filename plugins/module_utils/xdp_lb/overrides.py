# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Operator overrides: what ``xdp-lb drain|undrain|weight`` keeps for an instance.

``<state_dir>/overrides/<name>.json`` holds, per backend key
('tcp/198.18.100.1:80|198.18.1.12:80', the form of maps.backend_key_str),
``{"action": "drain"|"weight"|"undrain", "weight": N, "since": epoch}``:

* drain: weight 0 (no new flows; established flows stay on it);
* weight: weight N (0..1000) instead of the configured one;
* undrain: the configured weight even while the health checker says down;

and, in redirect mode, ``redirect_ports: {"add": [...], "remove": [...]}``
(``xdp-lb ports add|remove``): interfaces added to or taken out of the
configured redirect_interfaces.

Every run of the engine (module, boot restore, the health checker's
re-apply) takes the file into account with ``effective``; a module run
warns with each override (``warnings``) and keeps it, unless it was asked
to clear them (``clear_overrides``).  The precedence rule
(docs/operations.md): absent > operator override > inventory drain >
health down > weight.  Absent and inventory drain are resolved on the
controller (a drained host arrives with weight 0), so here an override
wins over the configured weight and over health; ``undrain`` cannot make a
configured weight 0 usable (give it a weight instead).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import health, model, state, validate

OVERRIDE_DIR = "overrides"
VERSION = 1
ACTIONS = ("drain", "weight", "undrain")


def _is_ifname(value):
    try:
        return bool(validate.interface_name(value))
    except validate.ConfigError:
        return False


class OverrideError(Exception):
    """A bad override request or file; the message names what is wrong."""


def path(state_dir, name):
    return os.path.join(state_dir, OVERRIDE_DIR, "%s.json" % name)


def _valid_entry(key, item):
    if not isinstance(item, dict) or item.get("action") not in ACTIONS:
        return False
    if item["action"] == "weight":
        w = item.get("weight")
        return isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= model.WEIGHT_MAX
    return True


def _read(state_dir, name):
    """{"backends": {...}, "redirect_ports": {"add": [...], "remove": [...]}} (empty without a file)."""
    p = path(state_dir, name)
    empty = {"backends": {}, "redirect_ports": {"add": [], "remove": []}}
    try:
        with open(p) as f:
            data = json.load(f)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return empty
        raise OverrideError("cannot read overrides file %s: %s" % (p, exc))
    except ValueError as exc:
        raise OverrideError("overrides file %s is not valid JSON (%s); fix it or remove it with "
                            "'xdp-lb override clear'" % (p, exc))
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("backends"), dict):
        raise OverrideError("overrides file %s has an unknown format" % p)
    bad = [k for k, v in data["backends"].items() if not _valid_entry(k, v)]
    if bad:
        raise OverrideError("overrides file %s: entry %s is not a valid override" % (p, bad[0]))
    ports = data.get("redirect_ports") or {}
    if not isinstance(ports, dict) or not all(
            isinstance(ports.get(k, []), list) and all(_is_ifname(n) for n in ports.get(k, []))
            for k in ("add", "remove")):
        raise OverrideError("overrides file %s: redirect_ports is not {add: [interfaces], remove: [interfaces]}" % p)
    return {"backends": dict(data["backends"]),
            "redirect_ports": {"add": list(ports.get("add", [])), "remove": list(ports.get("remove", []))}}


def load(state_dir, name):
    """{backend key: entry} (empty without a file); a corrupt file is an OverrideError."""
    return _read(state_dir, name)["backends"]


def load_ports(state_dir, name):
    """{"add": [interfaces], "remove": [interfaces]}: the operator's redirect port changes."""
    return _read(state_dir, name)["redirect_ports"]


def save(state_dir, name, backends, ports=None):
    """Write the overrides atomically (mode 0600); nothing left: remove the file.

    ``ports`` None keeps the file's redirect port overrides."""
    p = path(state_dir, name)
    if ports is None:
        try:
            ports = load_ports(state_dir, name)
        except OverrideError:
            ports = {"add": [], "remove": []}
    if not backends and not ports.get("add") and not ports.get("remove"):
        state.remove(p)
        return
    state.write_atomic(p, state.dumps({"version": VERSION, "name": name, "backends": backends,
                                       "redirect_ports": ports}), 0o600)


def redirect_ports(configured, ports):
    """The redirect interfaces in effect: configured minus removed, plus added (in that order)."""
    out = [n for n in configured if n not in ports.get("remove", [])]
    return out + [n for n in ports.get("add", []) if n not in out]


def describe_ports(ports):
    """Lines naming the redirect port overrides."""
    return (["redirect port %s added" % n for n in ports.get("add", [])] +
            ["redirect port %s removed" % n for n in ports.get("remove", [])])


def describe(key, item):
    """One line naming an override, for warnings and status."""
    what = {"drain": "drained", "undrain": "undrained (health ignored)",
            "weight": "weight %s" % item.get("weight")}[item["action"]]
    since = item.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else ""
    return "%s %s%s" % (key.replace("|", " backend "), what, when)


def override_weight(item, configured):
    if item["action"] == "drain":
        return 0
    if item["action"] == "weight":
        return item["weight"]
    return configured


def effective(svc, down, overrides):
    """``svc`` with the weights new flows use: overrides, then health (health.effective), then configured."""
    keys = [health.backend_key(svc.key, b.address, b.port) for b in svc.backends]
    ov = dict((k, overrides[k]) for k in keys if k in overrides)
    base = health.effective(svc, frozenset(k for k in down if k not in ov))
    if not ov:
        return base
    out = svc.__class__(svc.vip, svc.family, svc.port, svc.protocol, svc.scheduler, [])
    for k, b, conf in zip(keys, base.backends, svc.backends):
        w = override_weight(ov[k], conf.weight) if k in ov else b.weight
        out.backends.append(b.__class__(b.address, b.family, w, b.port))
    return out


def stale(cfg_services, overrides):
    """Override keys that name no backend of the configuration."""
    keys = set(health.backend_key(s.key, b.address, b.port) for s in cfg_services for b in s.backends)
    return sorted(k for k in overrides if k not in keys)
