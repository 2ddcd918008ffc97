# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a function in a forked child that has a new, anonymous network
namespace: what it changes (addresses on lo, net.* sysctls) is its own and
goes with the child.  Needs root."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import json
import os
import traceback

CLONE_NEWNET = 0x40000000


def in_own_netns(fn):
    """fn() in a forked child with a new network namespace; its return value (JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            out = {"ok": fn()}
        except BaseException:        # pylint: disable=broad-except
            out = {"error": traceback.format_exc()}
        with os.fdopen(write, "w") as handle:
            json.dump(out, handle)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out["ok"]
