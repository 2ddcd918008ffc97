# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module parameters -> a validated, normalised Config.

Pure: no I/O, no host access.  Every error names the field path and the
value, for example ``services[0].backends[1].weight: -3 is not an integer
from 0 to 1000``.  The same Config round-trips through the state file
(``Config.to_dict`` / ``from_dict``), which is what boot-time restore uses.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout, validate as _v

DEFAULT_STATE_DIR = "/var/lib/netfleet-xdp-lb"
DEFAULT_BUILD_DIR = "/var/cache/netfleet-xdp-lb"
DEFAULT_PIN_BASE = "/sys/fs/bpf/xdp_lb"
DEFAULT_CLANG = "clang"

MODES = ("redirect", "nat", "dsr")
ATTACH_MODES = ("native", "generic")
STATES = ("present", "absent")
SCHEDULERS = tuple(layout.SCHEDULERS)
PROTOCOLS = tuple(layout.PROTOCOLS)
REDIRECT_ALGORITHMS = tuple(layout.REDIRECT_ALGOS)

WEIGHT_MAX = 1000
DEFAULT_WEIGHT = 100
DEFAULT_FLOW_IDLE_TIMEOUT = 30   # seconds a UDP flow may be silent and keep its backend
FLOW_IDLE_TIMEOUT_MAX = 86400 * 7
RING_FACTOR = 100            # ring_size must exceed RING_FACTOR x the largest backend count
RING_SIZE_MAX = 1 << 24      # keeps lb_ring (2 x max_services rings) addressable and sane
MAX_SERVICES_LIMIT = 1024
MAX_BACKENDS_LIMIT = 1 << 16     # backend ids are 16 bits in lb_ring (ABI 5)
CT_SIZE_LIMIT = 1 << 24

SERVICE_KEYS = ("vip", "port", "protocol", "scheduler", "backends", "allow_no_backends")
BACKEND_KEYS = ("address", "weight", "port")
# Service keys the action plugin resolves from the inventory (plugin_utils/inventory_backends.py).
INVENTORY_KEYS = ("backend_group", "backend_port", "backend_weight", "backend_use_ansible_host")

MAX_MAP_MEMORY = _v.MAP_MEMORY_BUDGET >> 20   # MiB, max_map_memory's default

_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# Invalid module parameters; the message names the field, value and rule (validate.py).
ConfigError = _v.ConfigError
_show = _v.show


class Backend:
    __slots__ = ("address", "family", "weight", "port")

    def __init__(self, address, family, weight, port):
        self.address, self.family, self.weight, self.port = address, family, weight, port

    @property
    def key(self):
        """Identity inside its service: the Maglev permutation seed."""
        return "%s:%d" % (self.address, self.port)

    def to_dict(self):
        out = {"address": self.address, "weight": self.weight}
        if self.port:               # 0: dsr, where backends have no port of their own
            out["port"] = self.port
        return out

    def __eq__(self, other):
        return isinstance(other, Backend) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Backend(%s, weight=%d)" % (self.key, self.weight)


class Service:
    __slots__ = ("vip", "family", "port", "protocol", "scheduler", "backends", "allow_no_backends")

    def __init__(self, vip, family, port, protocol, scheduler, backends, allow_no_backends=False):
        self.vip, self.family, self.port = vip, family, port
        self.protocol, self.scheduler, self.backends = protocol, scheduler, backends
        self.allow_no_backends = allow_no_backends

    @property
    def key(self):
        """'tcp/198.18.0.10:80' or 'udp/[fd00:18::10]:53'."""
        host = self.vip if self.family == 4 else "[%s]" % self.vip
        return "%s/%s:%d" % (self.protocol, host, self.port)

    def to_dict(self):
        out = {"vip": self.vip, "port": self.port, "protocol": self.protocol,
               "scheduler": self.scheduler,
               "backends": [b.to_dict() for b in self.backends]}
        if self.allow_no_backends:   # only when set: older state files stay identical
            out["allow_no_backends"] = True
        return out

    def __eq__(self, other):
        return isinstance(other, Service) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Service(%s, %d backends)" % (self.key, len(self.backends))


class Config:
    """A validated instance configuration (state=present or absent)."""

    FIELDS = ("name", "state", "interfaces", "mode", "attach_mode", "redirect_interfaces",
              "redirect_algorithm", "nat_source_ipv4", "nat_source_ipv6", "nat_port_min",
              "nat_port_max", "flow_idle_timeout", "ring_size", "max_services", "max_backends",
              "conntrack_size", "debug", "clang", "netns", "source", "pin_dir", "state_dir", "build_dir",
              "health_checks", "preflight", "nat_guard", "max_map_memory")

    def __init__(self, **kw):
        for field in self.FIELDS:
            setattr(self, field, kw.get(field))
        self.services = kw.get("services") or []

    def defines(self):
        """Compile-time defines for build.compile_object (always explicit)."""
        out = {
            "XDP_LB_MAX_SERVICES": self.max_services,
            "XDP_LB_MAX_BACKENDS": self.max_backends,
            "XDP_LB_RING_SIZE": self.ring_size,
            "XDP_LB_CT_SIZE": self.conntrack_size,
        }
        if self.debug:
            out["XDP_LB_DEBUG"] = True
        out.update(build.host_defines())
        return out

    @property
    def state_file(self):
        return os.path.join(self.state_dir, "%s.json" % self.name)

    @property
    def lock_file(self):
        return os.path.join(self.state_dir, "%s.lock" % self.name)

    def families(self):
        return sorted(set(s.family for s in self.services))

    def to_dict(self):
        out = dict((f, getattr(self, f)) for f in self.FIELDS)
        out["interfaces"] = list(self.interfaces or [])
        out["redirect_interfaces"] = list(self.redirect_interfaces or [])
        out["services"] = [s.to_dict() for s in self.services]
        if out.get("max_map_memory") in (None, MAX_MAP_MEMORY):   # state files written before it stay identical
            out.pop("max_map_memory", None)
        return out

    def map_memory(self, ncpus=None):
        """Bytes the maps of this build take (validate.map_memory), or
        ConfigError naming the sizes when they exceed max_map_memory."""
        from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import maps
        sizes = dict(layout.DEFAULT_SIZES)
        sizes.update(XDP_LB_MAX_SERVICES=self.max_services, XDP_LB_MAX_BACKENDS=self.max_backends,
                     XDP_LB_RING_SIZE=self.ring_size, XDP_LB_CT_SIZE=self.conntrack_size)
        fields = {"ring_size": self.ring_size, "max_services": self.max_services,
                  "max_backends": self.max_backends, "conntrack_size": self.conntrack_size}
        budget = (self.max_map_memory or MAX_MAP_MEMORY) << 20
        return _v.check_map_memory(maps.expected_map_shapes(sizes), ncpus or possible_cpus(), fields, budget,
                                   "max_map_memory")

    @classmethod
    def from_dict(cls, data):
        """Re-validate a dict produced by to_dict (e.g. read from a state file)."""
        params = dict(data)
        # State files written before health_checks existed: the status file
        # applied then (health.enabled reads them the same way).
        params.setdefault("health_checks", True)
        return validate(params)


def possible_cpus(path="/sys/devices/system/cpu/possible"):
    """CPUs the kernel sizes per-CPU maps for ('0-3' -> 4); os.cpu_count() if unreadable."""
    try:
        with open(path) as f:
            text = f.read().strip()
        n = 0
        for part in text.split(","):
            lo, _sep, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n
    except (IOError, OSError, ValueError):
        return os.cpu_count() or 1


def _int(path, value, lo, hi, what=None):
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.match(r"^\s*-?\d+\s*$", value):
            value = int(value)
        else:
            raise ConfigError(path, value, "is not %s" % (what or "an integer from %d to %d" % (lo, hi)))
    if not lo <= value <= hi:
        raise ConfigError(path, value, "is not %s" % (what or "an integer from %d to %d" % (lo, hi)))
    return value


def _bool(path, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "on", "1", "no", "false", "off", "0"):
        return value.lower() in ("yes", "true", "on", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(path, value, "is not a boolean")


def _str(path, value, allow_empty=False):
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ConfigError(path, value, "is not a non-empty string")
    return value


def _choice(path, value, choices):
    if value not in choices:
        raise ConfigError(path, value, "is not one of %s" % ", ".join(choices))
    return value


def _ip(path, value):
    """A VIP, backend or NAT source: unicast, no scope id (validate.address)."""
    return _v.address(value, path)


def _ifname(path, value):
    return _v.interface_name(value, path)


def _iflist(path, value, required):
    if value is None:
        value = []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, value, "is not a list of interface names")
    out = []
    for i, name in enumerate(value):
        name = _ifname("%s[%d]" % (path, i), name)
        if name in out:
            raise ConfigError("%s[%d]" % (path, i), name, "is listed twice")
        out.append(name)
    if required and not out:
        raise ConfigError(path, value, "must name at least one interface")
    return out


def _abspath(path, value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(path, value, "is not an absolute path")
    if any(part in (".", "..") for part in value.split("/")):
        # checked as given, not normalised away: the path root uses is the one the user sees
        raise ConfigError(path, value, "must not contain '.' or '..' components (give the directory itself)")
    return os.path.normpath(value)


def is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def check_name(name, path="name"):
    """An instance name (it names files and bpffs directories), or ConfigError."""
    return _v.instance_name(name, path)


def _unknown(path, data, known):
    extra = sorted(str(k) for k in data if k not in known)
    if extra:
        raise ConfigError(path, extra[0], "is not a known key (known: %s)" % ", ".join(known))


def _backend(path, data, svc_family, svc_port, mode):
    if not isinstance(data, dict):
        if isinstance(data, str):
            data = {"address": data}
        else:
            raise ConfigError(path, data, "is not a mapping with an address")
    _unknown(path, data, BACKEND_KEYS)
    if data.get("address") is None:
        raise ConfigError(path + ".address", None, "is required")
    address, family = _ip(path + ".address", data["address"])
    if family != svc_family:
        raise ConfigError(path + ".address", address,
                          "is IPv%d but the service vip is IPv%d" % (family, svc_family))
    weight = data.get("weight")
    weight = DEFAULT_WEIGHT if weight is None else _int(
        path + ".weight", weight, 0, WEIGHT_MAX, "an integer from 0 to %d" % WEIGHT_MAX)
    port = data.get("port")
    if mode == "dsr":
        if port not in (None, 0):   # 0 is how to_dict/state files say "no port"
            raise ConfigError(path + ".port", port,
                              "is not allowed in dsr mode (backends receive the vip's port unchanged)")
        port = 0
    else:
        port = svc_port if port is None else _int(path + ".port", port, 1, 65535)
    return Backend(address, family, weight, port)


def _service(path, data, mode):
    if not isinstance(data, dict):
        raise ConfigError(path, data, "is not a mapping (vip, port, protocol, scheduler, backends)")
    for key in INVENTORY_KEYS:
        if key in data:
            raise ConfigError("%s.%s" % (path, key), data[key],
                              "is resolved from the inventory by the xdp_lb action plugin, which did not "
                              "run (call the module as netfleet.xdp_lb.xdp_lb, not through another action)")
    _unknown(path, data, SERVICE_KEYS)
    for req in ("vip", "port"):
        if data.get(req) is None:
            raise ConfigError("%s.%s" % (path, req), None, "is required")
    vip, family = _ip(path + ".vip", data["vip"])
    port = _int(path + ".port", data["port"], 1, 65535)
    protocol = data.get("protocol")
    protocol = "tcp" if protocol is None else _choice(path + ".protocol", protocol, PROTOCOLS)
    scheduler = data.get("scheduler")
    scheduler = "maglev" if scheduler is None else _choice(path + ".scheduler", scheduler, SCHEDULERS)
    raw = data.get("backends")
    if raw is None:
        raw = []
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(path + ".backends", raw, "is not a list")
    backends, seen = [], {}
    for j, item in enumerate(raw):
        bpath = "%s.backends[%d]" % (path, j)
        b = _backend(bpath, item, family, port, mode)
        if b.key in seen:
            raise ConfigError(bpath, b.address if mode == "dsr" else b.key,
                              "duplicates %s.backends[%d]" % (path, seen[b.key]))
        seen[b.key] = j
        backends.append(b)
    allow = data.get("allow_no_backends")
    allow = False if allow is None else _bool(path + ".allow_no_backends", allow)
    if not allow and mode in ("nat", "dsr"):
        key = Service(vip, family, port, protocol, scheduler, []).key
        if not backends:
            raise ConfigError(path + ".backends", [], "is empty: service %s has no backend (%s mode needs at "
                              "least one; set allow_no_backends: true to allow a service that serves "
                              "nothing)" % (key, mode))
        if not any(b.weight > 0 for b in backends):
            raise ConfigError(path + ".backends", "[%d backends, all weight 0]" % len(backends),
                              "leave service %s without a usable backend (it would serve nothing); give "
                              "one a weight above 0, or set allow_no_backends: true" % key)
    return Service(vip, family, port, protocol, scheduler, backends, allow)


def validate(params):
    """Validate module parameters (a dict) and return a Config.

    Keys with value None take their default.  Raises ConfigError.  Only
    canonical option names: AnsibleModule resolves aliases (``interface``)
    and the module passes the canonical names alone.
    """
    p = dict((k, v) for k, v in params.items() if not k.startswith("_"))
    _unknown("options", p, Config.FIELDS + ("services", "recreate_foreign_maps"))
    cfg = Config()
    cfg.state = _choice("state", p.get("state") or "present", STATES)
    present = cfg.state == "present"
    cfg.interfaces = _iflist("interfaces", p.get("interfaces"), required=False)
    name = p.get("name")
    if name is None:
        if not cfg.interfaces:
            raise ConfigError("interfaces", p.get("interfaces"), "must name at least one interface (or set name)")
        # the first interface, made safe for file and bpffs names ("eth0.100" -> "eth0_100")
        name = re.sub(r"[^A-Za-z0-9_-]", "_", cfg.interfaces[0])
    cfg.name = check_name(name)
    if present and not cfg.interfaces:
        raise ConfigError("interfaces", p.get("interfaces"), "must name at least one interface")
    cfg.netns = p.get("netns")
    if cfg.netns is not None:
        if not isinstance(cfg.netns, str) or not _NETNS.match(cfg.netns):
            raise ConfigError("netns", cfg.netns, "is not a valid network namespace name")
    cfg.pin_dir = _abspath("pin_dir", p.get("pin_dir") or os.path.join(DEFAULT_PIN_BASE, name))
    cfg.state_dir = _abspath("state_dir", p.get("state_dir") or DEFAULT_STATE_DIR)
    cfg.build_dir = _abspath("build_dir", p.get("build_dir") or DEFAULT_BUILD_DIR)
    if cfg.pin_dir.rstrip("/") in ("/sys/fs/bpf", ""):
        raise ConfigError("pin_dir", cfg.pin_dir, "must be a directory of its own below the bpffs mount")
    if "." in cfg.pin_dir:
        raise ConfigError("pin_dir", cfg.pin_dir, "must not contain '.' (bpffs refuses such names)")
    cfg.source = None if p.get("source") is None else _abspath("source", p["source"])
    cfg.clang = _str("clang", p.get("clang") or DEFAULT_CLANG)
    cfg.debug = _bool("debug", p.get("debug") if p.get("debug") is not None else False)
    # Whether a health checker runs for the instance: only then does its
    # status file (health.py) drain backends.
    cfg.health_checks = _bool("health_checks", p.get("health_checks") if p.get("health_checks") is not None
                              else False)
    cfg.preflight = _bool("preflight", p.get("preflight") if p.get("preflight") is not None else True)
    cfg.nat_guard = _bool("nat_guard", p.get("nat_guard") if p.get("nat_guard") is not None else True)
    # A request for this run, not configuration: not recorded in the state file.
    cfg.recreate_foreign_maps = _bool("recreate_foreign_maps", p.get("recreate_foreign_maps") or False)

    cfg.mode = _choice("mode", p.get("mode") or "nat", MODES)
    cfg.attach_mode = _choice("attach_mode", p.get("attach_mode") or "native", ATTACH_MODES)
    cfg.redirect_algorithm = _choice("redirect_algorithm", p.get("redirect_algorithm") or "flow_hash",
                                     REDIRECT_ALGORITHMS)

    sizes = layout.DEFAULT_SIZES
    cfg.max_services = _int("max_services", p.get("max_services") if p.get("max_services") is not None
                            else sizes["XDP_LB_MAX_SERVICES"], 1, MAX_SERVICES_LIMIT)
    cfg.max_backends = _int("max_backends", p.get("max_backends") if p.get("max_backends") is not None
                            else sizes["XDP_LB_MAX_BACKENDS"], 2, MAX_BACKENDS_LIMIT)
    cfg.conntrack_size = _int("conntrack_size", p.get("conntrack_size") if p.get("conntrack_size") is not None
                              else sizes["XDP_LB_CT_SIZE"], 16, CT_SIZE_LIMIT)
    ring = p.get("ring_size") if p.get("ring_size") is not None else sizes["XDP_LB_RING_SIZE"]
    cfg.ring_size = _int("ring_size", ring, 3, RING_SIZE_MAX, "a prime from 3 to %d" % RING_SIZE_MAX)
    if not is_prime(cfg.ring_size):
        raise ConfigError("ring_size", cfg.ring_size, "is not a prime number (e.g. 65537, 131071, 262139)")
    cfg.max_map_memory = _int("max_map_memory", p.get("max_map_memory") if p.get("max_map_memory") is not None
                              else MAX_MAP_MEMORY, 16, 1 << 20, "a number of MiB from 16 to %d" % (1 << 20))

    cfg.nat_port_min = _int("nat_port_min", p.get("nat_port_min") if p.get("nat_port_min") is not None
                            else 20000, 1, 65535)
    cfg.nat_port_max = _int("nat_port_max", p.get("nat_port_max") if p.get("nat_port_max") is not None
                            else 32767, 1, 65535)
    if cfg.nat_port_min > cfg.nat_port_max:
        raise ConfigError("nat_port_min", cfg.nat_port_min, "is greater than nat_port_max (%d)" % cfg.nat_port_max)
    cfg.flow_idle_timeout = _int("flow_idle_timeout", p.get("flow_idle_timeout")
                                 if p.get("flow_idle_timeout") is not None else DEFAULT_FLOW_IDLE_TIMEOUT,
                                 0, FLOW_IDLE_TIMEOUT_MAX, "a number of seconds from 0 (never) to %d"
                                 % FLOW_IDLE_TIMEOUT_MAX)
    for fam in (4, 6):
        key = "nat_source_ipv%d" % fam
        value = p.get(key)
        if value is not None:
            addr, version = _ip(key, value)
            if version != fam:
                raise ConfigError(key, value, "is not an IPv%d address" % fam)
            value = addr
        setattr(cfg, key, value)

    cfg.redirect_interfaces = _iflist("redirect_interfaces", p.get("redirect_interfaces"), required=False)
    raw = p.get("services")
    if raw is None:
        raw = []
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("services", raw, "is not a list")
    if not present:
        cfg.services = []
        cfg.redirect_interfaces = []
        return cfg
    # before any build: clang takes minutes to fail on sizes that overflow
    cfg.map_memory()

    if cfg.mode == "redirect":
        if not cfg.redirect_interfaces:
            raise ConfigError("redirect_interfaces", p.get("redirect_interfaces"),
                              "must name at least one interface in redirect mode")
        limit = sizes["XDP_LB_MAX_REDIRECT"]
        if len(cfg.redirect_interfaces) > limit:
            raise ConfigError("redirect_interfaces", len(cfg.redirect_interfaces),
                              "interfaces are more than the data plane's %d redirect slots" % limit)
        if raw:
            raise ConfigError("services", "[%d services]" % len(raw),
                              "are not used in redirect mode (it forwards every IP packet); remove them "
                              "or use mode nat or dsr")
    elif cfg.redirect_interfaces:
        raise ConfigError("redirect_interfaces", cfg.redirect_interfaces, "are only used in redirect mode")

    services, seen = [], {}
    for i, item in enumerate(raw):
        svc = _service("services[%d]" % i, item, cfg.mode)
        if svc.key in seen:
            raise ConfigError("services[%d]" % i, svc.key, "duplicates services[%d]" % seen[svc.key])
        seen[svc.key] = i
        services.append(svc)
    cfg.services = services
    vips = dict((s.vip, i) for i, s in reversed(list(enumerate(services))))
    nat_sources = dict((getattr(cfg, "nat_source_ipv%d" % f), "nat_source_ipv%d" % f) for f in (4, 6))
    for i, svc in enumerate(services):
        for j, b in enumerate(svc.backends):
            where = "services[%d].backends[%d].address" % (i, j)
            if b.address in vips:
                raise ConfigError(where, b.address, "is the vip of services[%d]: a backend must be another "
                                  "address than the balancer's VIPs" % vips[b.address])
            if b.address in nat_sources:
                raise ConfigError(where, b.address, "is the balancer's own NAT source (%s): a backend must be "
                                  "another host" % nat_sources[b.address])
    if len(services) > cfg.max_services:
        raise ConfigError("services", "[%d services]" % len(services),
                          "are more than max_services (%d)" % cfg.max_services)
    total = sum(len(s.backends) for s in services)
    if total > cfg.max_backends - 1:
        raise ConfigError("services", "[%d backends]" % total,
                          "are more than max_backends - 1 (%d; id 0 is reserved)" % (cfg.max_backends - 1))
    largest = max([len(s.backends) for s in services] or [0])
    if largest and cfg.ring_size <= RING_FACTOR * largest:
        index = [len(s.backends) for s in services].index(largest)
        raise ConfigError("ring_size", cfg.ring_size,
                          "is too small: it must be greater than %d x the largest backend count (%d, "
                          "services[%d])" % (RING_FACTOR, largest, index))
    for fam in (4, 6):
        key = "nat_source_ipv%d" % fam
        if getattr(cfg, key) is not None and (cfg.mode != "nat"):
            raise ConfigError(key, getattr(cfg, key), "is only used in nat mode")
        if getattr(cfg, key) is not None and getattr(cfg, key) in vips:
            raise ConfigError(key, getattr(cfg, key), "is the vip of services[%d]: the NAT source must be an "
                              "address of the balancer that is not a VIP" % vips[getattr(cfg, key)])
    return cfg
