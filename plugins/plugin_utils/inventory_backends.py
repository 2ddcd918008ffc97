# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends from inventory groups, resolved on the controller.

A service of ``xdp_lb_services`` may name an inventory group
(``backend_group: web``); every host of the group is one backend, described
by its own variables (host_vars, group_vars or a dynamic inventory):

- ``xdp_lb_backend_ipv4``: service address for IPv4 services
- ``xdp_lb_backend_ipv6``: service address for IPv6 services
- ``xdp_lb_backend_port``: backend port (nat mode; dsr keeps the vip's port)
- ``xdp_lb_backend_weight``: 0 to 1000
- ``xdp_lb_backend_pool_state``: ``active`` (default), ``drain`` (weight 0:
  no new flows, established ones stay), ``absent`` (not a backend at all).
  (Not ``xdp_lb_backend_state``: role xdp_lb_backend uses that name for
  its own present/absent.)

Service-level defaults: ``backend_port``, ``backend_weight``, and
``backend_use_ansible_host`` (take ``ansible_host`` when the host has no
address variable of the service's family; off unless set, because
``ansible_host`` is usually the management address).

Pure: it reads the ``groups`` and ``hostvars`` it is given (the action
plugin passes the task's, the filter plugin the template's) and never
contacts a host.  The group's backends come after the literal ones, sorted
by address, port and host name, so every balancer resolving the same group
gets the same list in the same order whatever the inventory order.  Every
error names the service, the group and the host.

Effective state of a backend, one rule (docs/operations.md): absent >
operator override > inventory drain > health down > weight.  Here: absent
removes the host, drain sets weight 0; the engine applies health drains.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import re

GROUP_KEYS = ("backend_group", "backend_port", "backend_weight", "backend_use_ansible_host")
HOST_STATES = ("active", "drain", "absent")
WEIGHT_MAX = 1000
DEFAULT_WEIGHT = 100
_MISSING = object()


class InventoryBackendError(ValueError):
    """A service's backends cannot be resolved from the inventory."""


def _int(value, lo, hi):
    """value as an int in [lo, hi] (digit strings, as INI inventories give, too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.match(r"^\s*-?\d+\s*$", value):
        value = int(value)
    if isinstance(value, int) and lo <= value <= hi:
        return int(value)
    return None


def _bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "on", "1", "no", "false", "off", "0"):
        return value.lower() in ("yes", "true", "on", "1")
    return None


def _address(value, family):
    """Normalised address string of ``family``, or None."""
    if not isinstance(value, str):
        return None
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if ip.version != family or ip.is_unspecified or ip.is_multicast:
        return None
    return str(ip)


def service_label(index, svc):
    """'services[0] (tcp/198.18.0.10:80)' as far as the entry allows."""
    label = "services[%d]" % index
    if isinstance(svc, dict):
        vip, port = svc.get("vip"), svc.get("port")
        host = "[%s]" % vip if isinstance(vip, str) and ":" in vip else vip
        label += " (%s/%s:%s)" % (svc.get("protocol") or "tcp", host, port)
    return label


def _get(hv, name):
    try:
        value = hv.get(name, _MISSING)
    except Exception as exc:   # an undefined variable in a dynamic inventory's template
        raise InventoryBackendError("%s cannot be read: %s" % (name, exc))
    return value


def _family(label, svc):
    vip = svc.get("vip")
    if isinstance(vip, str):
        try:
            return ipaddress.ip_address(vip.strip()).version
        except ValueError:
            pass
    raise InventoryBackendError("%s.vip: %r is not an IPv4 or IPv6 address (needed to pick the backends' "
                                "address family)" % (label, vip))


def _literal_key(item, svc_port, mode, family):
    """(address, port) of a literal backend entry, or None if the module will reject it anyway."""
    if isinstance(item, str):
        item = {"address": item}
    if not isinstance(item, dict):
        return None
    address = _address(item.get("address"), family)
    if address is None:
        return None
    if mode == "dsr":
        return address, 0
    port = item.get("port")
    port = svc_port if port is None else _int(port, 1, 65535)
    return address, port


def resolve_service(index, svc, groups, hostvars, mode):
    """One service entry -> (entry for the module, origins).

    ``origins``: {(address, port): inventory host name} of the group's
    backends (port 0 in dsr mode, else the backend port).  An entry
    without ``backend_group`` comes back unchanged.
    """
    if not isinstance(svc, dict) or not any(k in svc for k in GROUP_KEYS):
        return svc, {}
    label = service_label(index, svc)
    group = svc.get("backend_group")
    if group is None:
        used = [k for k in GROUP_KEYS if k in svc and k != "backend_group"]
        raise InventoryBackendError("%s: %s is only used with backend_group" % (label, used[0]))
    if not isinstance(group, str) or not group.strip():
        raise InventoryBackendError("%s.backend_group: %r is not a group name" % (label, group))
    family = _family(label, svc)
    where = "%s: backend_group %s" % (label, group)
    if group not in groups:
        raise InventoryBackendError("%s: the inventory has no group %s" % (where, group))

    svc_port = _int(svc.get("port"), 1, 65535)
    defaults = {}
    raw = svc.get("backend_weight")
    defaults["weight"] = DEFAULT_WEIGHT if raw is None else _int(raw, 0, WEIGHT_MAX)
    if defaults["weight"] is None:
        raise InventoryBackendError("%s.backend_weight: %r is not an integer from 0 to %d"
                                    % (label, raw, WEIGHT_MAX))
    raw = svc.get("backend_port")
    if raw is not None and mode == "dsr":
        raise InventoryBackendError("%s.backend_port: %r is not allowed in dsr mode (backends receive the "
                                    "vip's port unchanged)" % (label, raw))
    defaults["port"] = None if raw is None else _int(raw, 1, 65535)
    if raw is not None and defaults["port"] is None:
        raise InventoryBackendError("%s.backend_port: %r is not an integer from 1 to 65535" % (label, raw))
    raw = svc.get("backend_use_ansible_host")
    use_ansible_host = False if raw is None else _bool(raw)
    if use_ansible_host is None:
        raise InventoryBackendError("%s.backend_use_ansible_host: %r is not a boolean" % (label, raw))

    literal = svc.get("backends")
    if literal is not None and not isinstance(literal, (list, tuple)):
        raise InventoryBackendError("%s.backends: %r is not a list (the literal backends next to backend_group)"
                                    % (label, literal))
    literal = list(literal or [])
    taken = {}
    for j, item in enumerate(literal):
        key = _literal_key(item, svc_port, mode, family)
        if key is not None:
            taken.setdefault(key, "backends[%d]" % j)

    found, origins, skipped = [], {}, []
    var = "xdp_lb_backend_ipv%d" % family
    for host in groups[group] or []:
        hv = hostvars[host]
        at = "%s: host %s" % (where, host)
        try:
            state = _get(hv, "xdp_lb_backend_pool_state")
            state = "active" if state in (_MISSING, None) else state
            if state not in HOST_STATES:
                raise InventoryBackendError("xdp_lb_backend_pool_state: %r is not one of %s"
                                            % (state, ", ".join(HOST_STATES)))
            if state == "absent":
                skipped.append(host)
                continue
            value = _get(hv, var)
            source = var
            if value in (_MISSING, None):
                if not use_ansible_host:
                    raise InventoryBackendError(
                        "has no %s (the service is IPv%d; set it in the host's variables, or set "
                        "backend_use_ansible_host: true on the service to use ansible_host)" % (var, family))
                value = _get(hv, "ansible_host")
                value = host if value in (_MISSING, None) else value
                source = "ansible_host (backend_use_ansible_host)"
            address = _address(value, family)
            if address is None:
                raise InventoryBackendError("%s: %r is not a unicast IPv%d address" % (source, value, family))
            weight = _get(hv, "xdp_lb_backend_weight")
            if weight in (_MISSING, None):
                weight = defaults["weight"]
            elif _int(weight, 0, WEIGHT_MAX) is None:
                raise InventoryBackendError("xdp_lb_backend_weight: %r is not an integer from 0 to %d"
                                            % (weight, WEIGHT_MAX))
            else:
                weight = _int(weight, 0, WEIGHT_MAX)
            port = _get(hv, "xdp_lb_backend_port")
            if port in (_MISSING, None):
                port = defaults["port"]
            elif _int(port, 1, 65535) is None:
                raise InventoryBackendError("xdp_lb_backend_port: %r is not an integer from 1 to 65535" % (port,))
            else:
                port = _int(port, 1, 65535)
        except InventoryBackendError as exc:
            raise InventoryBackendError("%s: %s" % (at, exc))
        if mode == "dsr":
            port = None   # a host's port is for nat services; dsr keeps the vip's port
        key = (address, 0 if mode == "dsr" else (port or svc_port))
        if key in taken:
            raise InventoryBackendError("%s: %s is also %s of the service (the same backend twice)"
                                        % (at, _show_key(key), taken[key]))
        taken[key] = "host %s of group %s" % (host, group)
        entry = {"address": address, "weight": 0 if state == "drain" else weight}
        if port is not None:
            entry["port"] = port
        found.append((ipaddress.ip_address(address).packed, key[1], host, entry))
        origins[key] = host

    allow = _bool(svc.get("allow_no_backends")) if svc.get("allow_no_backends") is not None else False
    if not found and not allow:
        why = "it has no hosts" if not groups[group] else \
            "every host is absent (xdp_lb_backend_pool_state: absent: %s)" % ", ".join(sorted(skipped))
        raise InventoryBackendError("%s resolves to no backend: %s; set allow_no_backends: true on the "
                                    "service to allow a service without backends" % (where, why))
    if found and not allow and not any(f[3]["weight"] > 0 for f in found) and not _literal_weight(literal):
        raise InventoryBackendError("%s resolves to no usable backend: every host has weight 0 or is drained "
                                    "(%s); set allow_no_backends: true on the service to allow it"
                                    % (where, ", ".join(sorted(f[2] for f in found))))
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    out = dict((k, v) for k, v in svc.items() if k not in GROUP_KEYS)
    out["backends"] = literal + [f[3] for f in found]
    return out, origins


def _literal_weight(literal):
    """Whether a literal entry may carry a positive weight (the module checks the rest)."""
    for item in literal:
        if isinstance(item, str):
            return True
        if isinstance(item, dict) and (item.get("weight") is None or _int(item.get("weight"), 1, WEIGHT_MAX)):
            return True
    return False


def _show_key(key):
    address, port = key
    if not port:
        return address
    return "%s:%d" % (address, port) if ":" not in address else "[%s]:%d" % (address, port)


def resolve_services(services, groups, hostvars, mode="nat"):
    """All service entries -> (entries for the module, {service index: origins}).

    Raises InventoryBackendError naming the service, group and host.
    """
    if not isinstance(services, (list, tuple)):
        return services, {}
    out, origins = [], {}
    for i, svc in enumerate(services):
        entry, found = resolve_service(i, svc, groups, hostvars, mode)
        out.append(entry)
        if found:
            origins[i] = found
    return out, origins


def uses_groups(services):
    return isinstance(services, (list, tuple)) and any(
        isinstance(s, dict) and any(k in s for k in GROUP_KEYS) for s in services)


def backend_host_state(hv):
    state = _get(hv, "xdp_lb_backend_pool_state")
    return "active" if state in (_MISSING, None) else state


def dsr_vips(host, balancers, groups, hostvars):
    """The VIPs ``host`` must hold as a dsr backend: of every dsr service on
    ``balancers`` (their ``xdp_lb_mode`` and ``xdp_lb_services``) whose
    backend_group holds ``host``, or whose literal backends hold one of the
    host's ``xdp_lb_backend_ipv4``/``ipv6`` addresses.  A host whose state
    is ``absent`` gets none.  Sorted by family and address, no duplicates."""
    hv = hostvars[host]
    if backend_host_state(hv) == "absent":
        return []
    own = set()
    for fam in (4, 6):
        value = _get(hv, "xdp_lb_backend_ipv%d" % fam)
        if value not in (_MISSING, None):
            address = _address(value, fam)
            if address is None:
                raise InventoryBackendError("host %s: xdp_lb_backend_ipv%d: %r is not a unicast IPv%d address"
                                            % (host, fam, value, fam))
            own.add(address)
    vips = set()
    for lb in balancers or []:
        lbv = hostvars[lb]
        if _get(lbv, "xdp_lb_mode") != "dsr":
            continue
        services = _get(lbv, "xdp_lb_services")
        if not isinstance(services, (list, tuple)):
            continue
        for i, svc in enumerate(services):
            if not isinstance(svc, dict) or not isinstance(svc.get("vip"), str):
                continue
            try:
                ip = ipaddress.ip_address(svc["vip"].strip())
            except ValueError:
                raise InventoryBackendError("balancer %s: %s.vip: %r is not an IPv4 or IPv6 address"
                                            % (lb, service_label(i, svc), svc["vip"]))
            group = svc.get("backend_group")
            mine = isinstance(group, str) and host in (groups.get(group) or [])
            for item in svc.get("backends") or []:
                item = {"address": item} if isinstance(item, str) else item
                if isinstance(item, dict) and _address(item.get("address"), ip.version) in own:
                    mine = True
            if mine:
                vips.add((ip.version, ip.packed, str(ip)))
    return [v[2] for v in sorted(vips)]
