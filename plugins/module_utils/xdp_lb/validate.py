# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Validators for values that become paths or commands on the host.

Each function takes the value and the field that holds it, returns the
value when it is good and raises ValueError naming the field, the value
and the rule otherwise.  Small and self-contained: the module, the role's
footprint and the host command share them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

# sysctl keys as sysctl(8) writes them: a top-level directory of
# /proc/sys, then components of letters, digits, '_', '-' and '@', joined
# by '.'; a '/' inside a component stands for a '.' of an interface name
# (net.ipv4.conf.eth0/100.rp_filter), never at its ends or twice in a row.
# So the key maps onto one path below /proc/sys: no '..', no '//', no
# empty part.
_SYSCTL_TOP = ("abi", "crypto", "debug", "dev", "fs", "kernel", "net", "sunrpc", "user", "vm")
_SYSCTL_PART = r"[A-Za-z0-9_@-]+(?:/[A-Za-z0-9_@-]+)*"
_SYSCTL_KEY = re.compile(r"^(?:%s)(?:\.%s)+$" % ("|".join(_SYSCTL_TOP), _SYSCTL_PART))
_SYSCTL_VALUE = re.compile(r"^[\x20-\x7e]{0,255}$")


def sysctl_key(value, field):
    """A sysctl key that names one file below /proc/sys."""
    if not isinstance(value, str) or len(value) > 255 or not _SYSCTL_KEY.match(value):
        raise ValueError("%s: %r is not a sysctl key (a top-level name such as net, kernel or vm, then "
                         "'.'-separated parts of letters, digits, '_', '-', '@'; '/' only inside a part, "
                         "for a '.' of an interface name)" % (field, value))
    return value


def sysctl_value(value, field):
    """A sysctl value: printable ASCII on one line, at most 255 characters."""
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if not _SYSCTL_VALUE.match(text):
        raise ValueError("%s: %r is not a sysctl value (printable characters on one line, at most 255)"
                         % (field, value))
    return text


# Interface names as the kernel accepts them (dev_valid_name): 1 to 15
# bytes, not '.' or '..', no '/', ':' or white space.  Stricter here: only
# the characters interface names use in practice, so that a name can never
# smuggle another word into a sysctl key or a unit file.
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


def interface_name(value, field):
    """An interface name that is safe in a sysctl key."""
    if not isinstance(value, str) or not _IFNAME.match(value) or value in (".", ".."):
        raise ValueError("%s: %r is not an interface name (1 to 15 letters, digits, '_', '-', '.', '@')"
                         % (field, value))
    return value
