# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's Python libraries the modules need (pyroute2, bcc): which are missing.

No ansible import here: the module passes its ``missing_required_lib``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, netlink


def missing():
    """[(library and its Debian package, import error text)] of every library that did not import."""
    out = []
    if not netlink.HAS_PYROUTE2:
        out.append(("pyroute2 (python3-pyroute2)", str(netlink.PYROUTE2_IMPORT_ERROR)))
    if not bpf.HAS_BCC:
        out.append(("bcc (python3-bpfcc or python3-bcc)", str(bpf.BCC_IMPORT_ERROR)))
    return out


def fail_if_missing(module, missing_required_lib):
    """``module.fail_json`` naming the first missing library (``missing_required_lib`` gives the text)."""
    for lib, error in missing():
        module.fail_json(msg=missing_required_lib(lib), exception=error)
