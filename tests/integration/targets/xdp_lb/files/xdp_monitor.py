# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Watch the XDP program ids of interfaces until a stop file appears.

    xdp_monitor.py NETNS STOP_FILE OUT_FILE IFNAME...

Polls IFLA_XDP (pyroute2) as fast as it can and writes JSON to OUT_FILE:
{"samples": n, "empty": {ifname: samples without a program}, "ids": {ifname: [ids seen]}}.
Used around an upgrade to show that the interfaces always had a program.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys
import time

from pyroute2 import IPRoute, netns


def main(argv):
    ns, stop, out = argv[1], argv[2], argv[3]
    names = argv[4:]
    netns.setns(ns, flags=0)
    empty = dict((n, 0) for n in names)
    seen = dict((n, []) for n in names)
    samples = 0
    deadline = time.time() + 300
    with IPRoute() as ipr:
        index = dict((n, ipr.link_lookup(ifname=n)[0]) for n in names)
        while not os.path.exists(stop) and time.time() < deadline:
            for n in names:
                xdp = ipr.get_links(index[n])[0].get_attr("IFLA_XDP")
                prog = xdp.get_attr("IFLA_XDP_PROG_ID") if xdp is not None else None
                if not prog:
                    empty[n] += 1
                elif prog not in seen[n]:
                    seen[n].append(prog)
            samples += 1
    with open(out, "w") as f:
        json.dump({"samples": samples, "empty": empty, "ids": seen}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
