# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend health checks: probes, rise/fall hysteresis, the status file.

The checker (``cli health NAME``, run by netfleet-xdp-lb-health-NAME.service)
probes every backend of the instance from the balancer itself, every
``interval`` seconds:

  tcp   a TCP connection to address:port must be accepted
  http  ``GET path`` must answer with status 2xx or 3xx
  dns   a UDP DNS query (``name``, ``qtype``) must get a response

A backend that is up goes down after ``fall`` failed probes in a row; a
backend that is down comes back after ``rise`` passed probes in a row.
One failed probe never drains.

How health and configured weights combine (one rule, in the engine):
the effective weight of a backend is its configured weight (the module's
parameters, recorded in the state file) if it is up, and 0 if the status
file ``<state_dir>/health/<name>.json`` says it is down.  Weight 0 drains:
the service's ring is rebuilt without it, flows it already has stay
(conntrack).  If every backend of a service is down, the configured
weights stay (nothing would be served either way).  The module and the
checker both go through ``engine``, which applies this rule, so a play run
never puts a down backend back and the checker never reverts a play's
change of weights or backends; the checker re-reads the state file every
round.  On a transition the checker writes the status file, then re-applies
the instance from its state file (``engine.restore``: same build, maps only).

The status file counts only while health checks are on for the instance:
the module's ``health_checks`` option, recorded in the state file
(``enabled``).  With it off the engine ignores the file and removes it, and
a checker that is still running (its unit was removed, or systemd is not
there to stop it) sees it in the state file on its next round, removes its
status file and exits 0; it exits the same way when the state file is gone
(the instance was removed).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import random
import socket
import struct
import time

HEALTH_DIR = "health"
PROBE_TYPES = ("tcp", "http", "dns")
QTYPES = {"A": 1, "AAAA": 28, "TXT": 16}
STATUS_VERSION = 1


class HealthError(Exception):
    pass


# ---- files --------------------------------------------------------------------------

def status_path(state_dir, name):
    return os.path.join(state_dir, HEALTH_DIR, "%s.json" % name)


def config_path(state_dir, name):
    return os.path.join(state_dir, HEALTH_DIR, "%s.conf.json" % name)


def load_status(state_dir, name):
    """The status dict, or None (no file, or not readable as a status file)."""
    try:
        with open(status_path(state_dir, name)) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != STATUS_VERSION:
        return None
    return data


def enabled(state_data):
    """Whether health checks are on in a state dict (``config.health_checks``;
    state files written before that option: on, as they were then)."""
    return bool(((state_data or {}).get("config") or {}).get("health_checks", True))


def remove_status(state_dir, name):
    """Removes the status file; True if there was one."""
    try:
        os.unlink(status_path(state_dir, name))
    except OSError:
        return False
    return True


def backend_key(service_key, address, port):
    """Same form as maps.backend_key_str: 'tcp/198.18.100.1:80|198.18.1.11:80'."""
    return "%s|%s:%d" % (service_key, address, port)


def drained(state_dir, name):
    """Keys of the backends the status file says are down (empty without a file)."""
    data = load_status(state_dir, name)
    if not data:
        return frozenset()
    return frozenset(k for k, v in (data.get("backends") or {}).items()
                     if isinstance(v, dict) and v.get("state") == "down")


def effective(svc, down):
    """``svc`` with the weight of each down backend set to 0 (the rule in the docstring)."""
    keys = [backend_key(svc.key, b.address, b.port) for b in svc.backends]
    if not any(k in down for k in keys):
        return svc
    if all(k in down or b.weight == 0 for k, b in zip(keys, svc.backends)):
        return svc   # all down: keep the configured weights
    out = svc.__class__(svc.vip, svc.family, svc.port, svc.protocol, svc.scheduler, [])
    for k, b in zip(keys, svc.backends):
        out.backends.append(b.__class__(b.address, b.family, 0 if k in down else b.weight, b.port))
    return out


# ---- probes -------------------------------------------------------------------------

def _family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def probe_tcp(address, port, spec, timeout):
    s = socket.socket(_family(address), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
    finally:
        s.close()


def probe_http(address, port, spec, timeout):
    s = socket.socket(_family(address), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        host = spec.get("host") or (address if ":" not in address else "[%s]" % address)
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: netfleet-xdp-lb-health\r\n"
                   "Connection: close\r\n\r\n" % (spec.get("path") or "/", host)).encode("ascii"))
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = s.recv(1024)
            if not chunk:
                break
            head += chunk
    finally:
        s.close()
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise HealthError("not an HTTP response")
    code = int(parts[1])
    if not 200 <= code < 400:
        raise HealthError("HTTP status %d" % code)


def dns_query(qid, name, qtype):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        if label:
            q += struct.pack("!B", len(label)) + label.encode("ascii")
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def probe_dns(address, port, spec, timeout):
    qid = random.SystemRandom().randrange(1, 65535)
    qtype = QTYPES.get(str(spec.get("qtype") or "A").upper(), 1)
    s = socket.socket(_family(address), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        s.send(dns_query(qid, spec.get("name") or ".", qtype))
        while True:
            msg = s.recv(4096)
            if len(msg) >= 12 and struct.unpack("!H", msg[:2])[0] == qid and msg[2] & 0x80:
                return
    finally:
        s.close()


PROBES = {"tcp": probe_tcp, "http": probe_http, "dns": probe_dns}


def probe(kind, address, port, spec, timeout):
    """(True, None) if the backend passed, else (False, reason)."""
    try:
        PROBES[kind](address, port, spec, timeout)
    except (socket.error, socket.timeout, HealthError, OSError) as exc:
        return False, "%s: %s" % (type(exc).__name__, exc)
    return True, None


# ---- configuration ------------------------------------------------------------------

DEFAULTS = {"interval": 2.0, "timeout": 1.0, "rise": 2, "fall": 2,
            "probes": {"tcp": {"type": "tcp"}, "udp": {"type": "dns", "name": ".", "qtype": "A"}}}


def validate_config(data):
    """Checker settings (the role's health config file) -> dict; errors name the field and value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HealthError("health config: %r is not a mapping" % (data,))
    out = dict(DEFAULTS)
    out["probes"] = dict(DEFAULTS["probes"])
    for key in ("interval", "timeout"):
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 3600:
                raise HealthError("%s: %r is not a number of seconds from 0.05 to 3600" % (key, v))
            out[key] = float(v)
    for key in ("rise", "fall"):
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100:
                raise HealthError("%s: %r is not an integer from 1 to 100" % (key, v))
            out[key] = v
    probes = data.get("probes") or {}
    if not isinstance(probes, dict):
        raise HealthError("probes: %r is not a mapping (protocol or service -> probe)" % (probes,))
    for where, spec in probes.items():
        if not isinstance(spec, dict) or spec.get("type") not in PROBE_TYPES:
            raise HealthError("probes[%s].type: %r is not one of %s" % (
                where, spec.get("type") if isinstance(spec, dict) else spec, ", ".join(PROBE_TYPES)))
        out["probes"][where] = dict(spec)
    return out


def probe_spec(conf, svc_key, protocol):
    """The probe for a service: by service key ('tcp/198.18.100.1:80'), else by protocol."""
    return conf["probes"].get(svc_key) or conf["probes"].get(protocol) or {"type": "tcp"}


# ---- the checker --------------------------------------------------------------------

def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class Checker:
    """Per-backend state machine over rounds of probes.

    ``backends`` of a round: [(key, address, port, service key, protocol)].
    ``step`` probes them, updates the hysteresis counters and returns the
    keys whose state changed.
    """

    def __init__(self, conf, status=None, prober=probe, clock=time.time):
        self.conf = conf
        self.prober = prober
        self.clock = clock
        self.backends = {}
        for key, item in ((status or {}).get("backends") or {}).items():
            if isinstance(item, dict) and item.get("state") in ("up", "down"):
                # a restart (or a run with --rounds) goes on where the last one stopped
                self.backends[key] = {"state": item["state"], "passes": _count(item.get("passes")),
                                      "fails": _count(item.get("fails")), "last": item.get("last"),
                                      "since": item.get("since")}

    def step(self, targets):
        changed = []
        live = set()
        for key, address, port, svc_key, protocol in targets:
            live.add(key)
            b = self.backends.setdefault(key, {"state": "up", "passes": 0, "fails": 0, "last": None,
                                               "since": self.clock()})
            spec = probe_spec(self.conf, svc_key, protocol)
            ok, reason = self.prober(spec["type"], address, port or 0, spec, self.conf["timeout"])
            b["last"] = "pass" if ok else reason
            if ok:
                b["passes"] += 1
                b["fails"] = 0
                if b["state"] == "down" and b["passes"] >= self.conf["rise"]:
                    b["state"], b["since"] = "up", self.clock()
                    changed.append(key)
            else:
                b["fails"] += 1
                b["passes"] = 0
                if b["state"] == "up" and b["fails"] >= self.conf["fall"]:
                    b["state"], b["since"] = "down", self.clock()
                    changed.append(key)
        for key in list(self.backends):
            if key not in live:
                del self.backends[key]
        return changed

    def status(self, name):
        return {"version": STATUS_VERSION, "name": name, "updated": self.clock(),
                "interval": self.conf["interval"], "rise": self.conf["rise"], "fall": self.conf["fall"],
                "backends": dict((k, dict(v)) for k, v in sorted(self.backends.items()))}


def targets_of(state_data):
    """[(key, address, port, service key, protocol)] of every backend in a state dict."""
    out = []
    cfg = (state_data or {}).get("config") or {}
    for s in cfg.get("services") or []:
        host = s["vip"] if ":" not in s["vip"] else "[%s]" % s["vip"]
        svc_key = "%s/%s:%d" % (s["protocol"], host, s["port"])
        for b in s.get("backends") or []:
            port = b.get("port") or 0
            # dsr backends have no port of their own: they serve the service port
            out.append((backend_key(svc_key, b["address"], port), b["address"], port or s["port"],
                        svc_key, s["protocol"]))
    return out
