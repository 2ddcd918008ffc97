# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin for netfleet.xdp_lb.xdp_lb: ships the data-plane source to the host.

Unless the task sets ``source`` (a directory on the host) or removes the
instance, the collection's files/xdp_loadbalancer.c and files/xdp_lb.h are
read here, on the controller, and passed to the module in the internal
option ``_sources``.  The module writes them to <build_dir>/src/<hash>/ and
compiles there, so hosts need no copy of the collection.

Services that name an inventory group (``backend_group``) get their
backends resolved here, from the task's ``groups`` and ``hostvars``
(plugin_utils/inventory_backends.py); a resolution error fails the task
before the module runs, so nothing on the host changes.  The result then
carries ``backend_changes`` (backends that join, leave or change weight,
by inventory host name and address) and, in diff mode, the same as text.

An option given as null is dropped here, as if it were not given (also
inside the dict options): a role maps a variable left at null onto an
option as ``"{{ var }}"``, without ``if var is not none else omit``, which
costs the controller a larger template to compile per option and host.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.netfleet.xdp_lb.plugins.plugin_utils import inventory_backends

SOURCE_FILES = ("xdp_loadbalancer.c", "xdp_lb.h")
# dict options whose null suboptions are dropped like null options
DICT_OPTIONS = ("host_command", "health_checks", "metrics", "sysctls", "packages")
FILES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "files")


def without_nulls(args):
    """The task's arguments without the options (and DICT_OPTIONS' suboptions) given as null."""
    out = dict((k, v) for k, v in args.items() if v is not None)
    for name in DICT_OPTIONS:
        if isinstance(out.get(name), dict):
            out[name] = dict((k, v) for k, v in out[name].items() if v is not None)
    return out


def read_sources(directory=FILES_DIR):
    out = {}
    for name in SOURCE_FILES:
        path = os.path.normpath(os.path.join(directory, name))
        try:
            with open(path, "rb") as f:
                out[name] = to_text(f.read(), errors="surrogate_or_strict")
        except (IOError, OSError) as exc:
            raise AnsibleActionFail("cannot read the data-plane source %s: %s" % (path, exc))
    return out


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = without_nulls(self._task.args)
        if "_sources" in args:
            raise AnsibleActionFail("_sources is set by the action plugin; use source for a directory "
                                    "on the host")
        services = args.get("services")
        if isinstance(services, (list, tuple)):
            # Ansible's own conversion of a list element to a dict names no index
            for i, svc in enumerate(services):
                if not isinstance(svc, dict):
                    raise AnsibleActionFail("services[%d]: %r is not a mapping (vip, port, protocol, scheduler, "
                                            "backends); nothing changed" % (i, svc))
        if args.get("state", "present") != "absent" and not args.get("source"):
            args["_sources"] = read_sources()
        origins = None
        if args.get("state", "present") != "absent" and inventory_backends.uses_groups(args.get("services")):
            task_vars = task_vars or {}
            try:
                args["services"], origins = inventory_backends.resolve_services(
                    args["services"], task_vars.get("groups") or {}, task_vars.get("hostvars") or {},
                    args.get("mode") or "nat")
            except inventory_backends.InventoryBackendError as exc:
                raise AnsibleActionFail("inventory backends: %s; nothing changed" % exc)
        wrap_async = self._task.async_val and not self._connection.has_native_async
        module_result = self._execute_module(module_name="netfleet.xdp_lb.xdp_lb", module_args=args,
                                             task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            # with async, the job still needs the temporary directory
            self._remove_tmp_path(self._connection._shell.tmpdir)
        # the source text would otherwise sit in every registered result
        invocation = module_result.get("invocation", {}).get("module_args")
        if isinstance(invocation, dict) and "_sources" in invocation:
            invocation["_sources"] = "(%s shipped by the action plugin)" % ", ".join(SOURCE_FILES)
        # ... and so would every file of host_setup (the engine tree among them)
        host = invocation.get("host_setup") if isinstance(invocation, dict) else None
        if isinstance(host, dict):
            for spec in host.get("files") or []:
                if isinstance(spec, dict) and isinstance(spec.get("content"), str):
                    spec["content"] = "(%d characters)" % len(spec["content"])
        if origins is not None and not module_result.get("failed"):
            self._annotate(module_result, origins, task_vars)
        result.update(module_result)
        return result

    def _annotate(self, module_result, origins, task_vars):
        """Inventory host names on the result's backends, and backend_changes."""
        hosts = {}
        for found in origins.values():
            hosts.update(found)
        for svc in module_result.get("services") or []:
            for b in svc.get("backends") or []:
                host = hosts.get((b.get("address"), b.get("port") or 0)) or hosts.get((b.get("address"), 0))
                if host:
                    b["host"] = host
        diffs = module_result.get("diff")
        diff = diffs[0] if isinstance(diffs, list) and diffs else diffs
        if not isinstance(diff, dict) or "after" not in diff:
            return
        changes = backend_changes(diff.get("before") or {}, diff.get("after") or {}, hosts,
                                  lambda address: host_of(address, task_vars))
        module_result["backend_changes"] = changes
        if changes:
            sign = {"join": "+", "leave": "-", "weight": "~"}
            text = "".join("%s %s %s %s%s\n" % (sign[c["change"]], c["service"], c["host"] or "(not in the inventory)",
                                                c["backend"], weight_text(c)) for c in changes)
            extra = {"before_header": "backends", "after_header": "backends", "prepared": text}
            module_result["diff"] = (diffs if isinstance(diffs, list) else [diffs]) + [extra]


def weight_text(change):
    if change["change"] == "weight":
        return " weight %s -> %s" % (change["weight_before"], change["weight"])
    if change["change"] == "join":
        return " weight %s" % change["weight"]
    return ""


def host_of(address, task_vars):
    """The inventory host whose xdp_lb_backend_ipv4/6 is ``address`` (a backend that left its group)."""
    hostvars = (task_vars or {}).get("hostvars") or {}
    for host in sorted(((task_vars or {}).get("groups") or {}).get("all") or []):
        for name in ("xdp_lb_backend_ipv4", "xdp_lb_backend_ipv6"):
            try:
                if hostvars[host].get(name) == address:
                    return host
            except Exception:   # pylint: disable=broad-except  # an unrelated host's broken variable
                continue
    return None


def _backend_str(address, port):
    host = "[%s]" % address if ":" in address else address
    return "%s:%d" % (host, port) if port else address


def backend_changes(before, after, hosts, lookup):
    """Backends that join, leave or change weight between the diff's before and after.

    ``hosts``: {(address, port): inventory host} of the resolved groups;
    ``lookup(address)`` names the host of a backend that left them.
    """
    def table(side):
        out = {}
        for svc in side.get("services") or []:
            for b in svc.get("backends") or []:
                out[(svc.get("service"), b.get("address"), b.get("port") or 0)] = b.get("weight")
        return out
    old, new = table(before), table(after)
    changes = []
    for key in sorted(set(old) | set(new), key=lambda k: tuple(str(x) for x in k)):
        service, address, port = key
        if key in old and key in new and old[key] == new[key]:
            continue
        host = hosts.get((address, port))
        if host is None and key not in new:
            host = lookup(address)
        item = {"service": service, "host": host, "address": address, "port": port,
                "backend": _backend_str(address, port)}
        if key not in old:
            item.update(change="join", weight=new[key])
        elif key not in new:
            item.update(change="leave", weight_before=old[key])
        else:
            item.update(change="weight", weight_before=old[key], weight=new[key])
        changes.append(item)
    return changes
