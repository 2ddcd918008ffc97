# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``xdp-lb top``: live rates (packets/s, bits/s) per backend, verdict and redirect port.

Two reads of the per-CPU counters (engine.instance_info) an interval apart;
the rate is the difference over the measured time between the reads.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine


def sample(data):
    """(monotonic time, {("backend"|"verdict"|"port", name): (packets, bytes)})."""
    info = engine.instance_info(data)
    out = {}
    for s in info.get("services") or []:
        for b in s["backends"]:
            host = b["address"] if ":" not in b["address"] else "[%s]" % b["address"]
            out[("backend", "%s %s:%d" % (s["service"], host, b["port"]))] = (b.get("packets", 0), b.get("bytes", 0))
    for name, c in (info.get("stats") or {}).items():
        out[("verdict", name)] = (c.get("packets", 0), c.get("bytes", 0))
    for p in info.get("redirect_ports") or []:
        name = "%s %s" % (p["slot"], p.get("interface") or p.get("ifindex"))
        out[("port", name)] = (p.get("packets", 0), p.get("bytes", 0))
    return time.monotonic(), out


def rates(before, after):
    """{"interval": s, "backends"|"verdicts"|"ports": [{"name", "pps", "bps"}]} between two samples."""
    (t0, a), (t1, b) = before, after
    dt = max(t1 - t0, 1e-6)
    out = {"interval": round(dt, 3), "backends": [], "verdicts": [], "ports": []}
    group = {"backend": "backends", "verdict": "verdicts", "port": "ports"}
    for key in sorted(b):
        p0, b0 = a.get(key, (0, 0))
        p1, b1 = b[key]
        out[group[key[0]]].append({"name": key[1], "pps": round(max(0, p1 - p0) / dt, 1),
                                   "bps": round(max(0, b1 - b0) * 8 / dt, 1),
                                   "packets": p1, "bytes": b1})
    return out
