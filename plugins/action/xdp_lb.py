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
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

SOURCE_FILES = ("xdp_loadbalancer.c", "xdp_lb.h")
FILES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "files")


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
        args = dict(self._task.args)
        if "_sources" in args:
            raise AnsibleActionFail("_sources is set by the action plugin; use source for a directory "
                                    "on the host")
        if args.get("state", "present") != "absent" and not args.get("source"):
            args["_sources"] = read_sources()
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
        result.update(module_result)
        return result
