# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The input validators, in one place: instance names, state paths,
addresses, interface names, sysctl keys and values, the map memory budget.

Pure functions (no I/O).  Each returns the normalised value or raises
``ConfigError(path, value, rule)``, whose message names the field, the
value and the rule, for example ``services[0].vip: fd00::1%eth0 has an IPv6
scope id ('%eth0'); give the address alone``.  model.py (module
parameters and state files), the modules, xdp_lb_info and the host command
(cli.py, operate.py) all use these, so a name or address means the same
everywhere.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import os
import re


class ConfigError(ValueError):
    """Invalid input; the message names the field, the value and the rule."""

    def __init__(self, path, value, problem):
        self.path, self.value, self.problem = path, value, problem
        super(ConfigError, self).__init__("%s: %s %s" % (path, show(value), problem))


def show(value):
    """How a value appears in an error message."""
    if isinstance(value, str):
        return value if value and value == value.strip() and value.isprintable() else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(value)


# ---- instance names and the files named after them ------------------------------------

# Instance names name files (<state_dir>/<name>.json) and bpffs directories:
# no dots (bpffs refuses them, and no '..'), no '/', at most 64 characters.
NAME_RULE = "letters, digits, '_' and '-', at most 64, starting with a letter or digit"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def instance_name(value, path="name"):
    """An instance name, or ConfigError."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(path, value, "is not a valid instance name (%s)" % NAME_RULE)
    return value


def state_file(state_dir, name, path="name"):
    """``<state_dir>/<name>.json`` for a valid ``name``: never outside state_dir."""
    return os.path.join(state_dir, "%s.json" % instance_name(name, path))


# ---- interface names --------------------------------------------------------------------

# Linux takes almost any bytes up to IFNAMSIZ - 1 (15) except '/', ':' and
# whitespace (dev_valid_name).  The names go into sysctl keys, unit files
# and commands, so the portable subset udev, systemd and ip(8) produce:
# letters, digits, '_', '-', '.', not starting with '-' or '.'.
IFNAMSIZ = 16
IFNAME_RULE = "1-%d characters: letters, digits, '_', '-' and '.', not starting with '-' or '.'" % (IFNAMSIZ - 1)
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def interface_name(value, path="interface"):
    """A network interface name, or ConfigError."""
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > IFNAMSIZ - 1 \
            or not _IFNAME.match(value):
        raise ConfigError(path, value, "is not a valid interface name (%s)" % IFNAME_RULE)
    return value


# ---- addresses --------------------------------------------------------------------------

def address(value, path="address", special_ok=False):
    """``(normalised address, 4 or 6)`` of an IPv4 or IPv6 address, or ConfigError.

    Always refused: an IPv6 scope id (``fd00::1%eth0``: the maps hold the
    address alone, so two spellings would name one key).  Unless
    ``special_ok``, also what cannot be a VIP, a backend or a NAT source:
    unspecified, loopback, link-local, multicast, broadcast and IPv4-mapped
    IPv6 addresses.
    """
    if not isinstance(value, str):
        raise ConfigError(path, value, "is not an IPv4 or IPv6 address")
    text = value.strip()
    if "%" in text:
        raise ConfigError(path, value, "has an IPv6 scope id (%r); give the address alone (scoped, "
                          "link-local addresses cannot be balanced)" % text[text.index("%"):])
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(path, value, "is not an IPv4 or IPv6 address")
    if not special_ok:
        problem = special(ip)
        if problem:
            raise ConfigError(path, value, "is not a unicast address of a host: it is %s" % problem)
    return str(ip), ip.version


def special(ip):
    """What makes ``ip`` (an ipaddress object) unusable as a VIP, backend or
    NAT source, or None."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and (ip == ipaddress.IPv4Address("255.255.255.255") or
                            ip in ipaddress.IPv4Network("0.0.0.0/8")):
        return "a broadcast or 'this network' address"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address (give the IPv4 address)"
    return None


# ---- map memory -------------------------------------------------------------------------

# What the pinned maps of one instance may take, in bytes (locked kernel
# memory, charged to the memory cgroup).  The defaults need about 40 MiB.
MAP_MEMORY_BUDGET = 1 << 30
_HASH_ELEM_OVERHEAD = 48       # struct htab_elem before key and value (kernel 6.x, 64-bit)
_PERCPU_TYPES = (5, 6, 10)     # BPF_MAP_TYPE_PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
_HASH_TYPES = (1, 5, 9, 10)    # HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH


def _round8(n):
    return (n + 7) & ~7


def map_memory(shapes, ncpus):
    """{map name: bytes} for ``shapes`` ({name: (type, key size, value size,
    entries)}, maps.expected_map_shapes) on ``ncpus`` possible CPUs: the
    entries' keys and values as the kernel lays them out, without the small
    fixed cost of each map."""
    out = {}
    for name, (mtype, ksize, vsize, entries) in shapes.items():
        percpu = mtype in _PERCPU_TYPES
        value = _round8(vsize)
        per_cpu = value * ncpus if percpu else 0
        if mtype in _HASH_TYPES:       # element: header, key, value (or a pointer to the per-CPU values)
            each = _HASH_ELEM_OVERHEAD + _round8(ksize) + (8 if percpu else value) + per_cpu
        else:
            each = per_cpu if percpu else value
        out[name] = entries * each
    return out


def check_map_memory(shapes, ncpus, fields, budget=MAP_MEMORY_BUDGET, budget_field=None):
    """ConfigError unless the maps fit the budget (and each map's entries
    fit the kernel's u32 max_entries).  ``fields``: the option values
    named in the message, e.g. {'ring_size': 65537, 'max_services': 32};
    ``budget_field``: the option that sets the budget, if one does."""
    named = ", ".join("%s %d" % (k, v) for k, v in sorted(fields.items()))
    for name, shape in sorted(shapes.items()):
        if shape[3] >= 1 << 32:
            raise ConfigError("map sizes", "[%s]" % named, "make %s %d entries, more than a BPF map holds (%d)"
                              % (name, shape[3], (1 << 32) - 1))
    sizes = map_memory(shapes, ncpus)
    total = sum(sizes.values())
    if total > budget:
        top = sorted(sizes.items(), key=lambda kv: -kv[1])[:2]
        raise ConfigError("map sizes", "[%s]" % named,
                          "need %s of map memory (%s) on %d CPUs, more than the budget of %s%s; lower them%s "
                          "(lb_ring is 2 x max_services x ring_size / 4 entries)"
                          % (mib(total), ", ".join("%s %s" % (n, mib(b)) for n, b in top), ncpus, mib(budget),
                             " (%s)" % budget_field if budget_field else "",
                             " or raise %s" % budget_field if budget_field else ""))
    return total


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


# ---- sysctl keys and values -----------------------------------------------------------

# sysctl keys as sysctl(8) writes them: a top-level directory of
# /proc/sys, then components of letters, digits, '_', '-' and '@', joined
# by '.'; a '/' inside a component stands for a '.' of an interface name
# (net.ipv4.conf.eth0/100.rp_filter), never at its ends or twice in a row.
# So the key maps onto one path below /proc/sys: no '..', no '//', no
# empty part.
_SYSCTL_TOP = ("abi", "crypto", "debug", "dev", "fs", "kernel", "net", "sunrpc", "user", "vm")
_SYSCTL_PART = r"[A-Za-z0-9_@-]+(?:/[A-Za-z0-9_@-]+)*"
_SYSCTL_KEY = re.compile(r"^(?:%s)(?:\.%s)+\Z" % ("|".join(_SYSCTL_TOP), _SYSCTL_PART))
_SYSCTL_VALUE = re.compile(r"^[\x20-\x7e]{0,255}\Z")


def sysctl_key(value, path):
    """A sysctl key that names one file below /proc/sys, or ConfigError."""
    if not isinstance(value, str) or len(value) > 255 or not _SYSCTL_KEY.match(value):
        raise ConfigError(path, value, "is not a sysctl key (a top-level name such as net, kernel or vm, then "
                          "'.'-separated parts of letters, digits, '_', '-', '@'; '/' only inside a part, "
                          "for a '.' of an interface name)")
    return value


def sysctl_value(value, path):
    """A sysctl value: printable ASCII on one line, at most 255 characters."""
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if not _SYSCTL_VALUE.match(text):
        raise ConfigError(path, value, "is not a sysctl value (printable characters on one line, at most 255)")
    return text
