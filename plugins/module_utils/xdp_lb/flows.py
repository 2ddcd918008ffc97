# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``xdp-lb flows``: the live connection table (lb_ct), one row per flow.

client -> VIP -> backend, the NAT source port, and the age since the flow's
last packet when the entry has a last-seen time (``last_seen`` in struct
lb_ct_entry, on the caches' clock: jiffies when the build had XDP_LB_HZ,
else coarse monotonic nanoseconds); without that field there is no age.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout, maps, netlink


def _hostport(address, port):
    return "%s:%d" % ("[%s]" % address if ":" in address else address, port)


def clock_now(defines):
    """(now on the caches' clock, units per second) for a build with ``defines``."""
    hz = (defines or {}).get("XDP_LB_HZ")
    return maps.dataplane_now(hz), float(hz) if hz else 1e9


def has_age():
    return any(name == "last_seen" for name, _t in layout.LbCtEntry._fields_)


def flows(data, vip=None, backend=None, client=None):
    """[{client, vip, backend, backend_id, nat_port, age}] of the live lb_ct, filtered.

    ``vip``: a service key ('udp/198.18.100.1:53') or a VIP address;
    ``backend``: (address, port or None); ``client``: (address, port or None).
    """
    cfg = data["config"]
    ring_size = cfg.get("ring_size") or layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
    max_backends = cfg.get("max_backends") or layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"]
    aged = has_age()
    now, per_s = clock_now((data.get("build") or {}).get("defines")) if aged else (None, None)
    out = []
    with netlink.in_netns(data.get("netns")):
        with maps.MapSet(cfg["pin_dir"]) as ms:
            t = maps.read_tables(ms, ring_size, max_backends)
            bes = t.active_backends()
            for k, v in ms.get("lb_ct").items():
                if k.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                src = layout.unpack_addr(k.src, k.family)
                dst = layout.unpack_addr(k.dst, k.family)
                sport, dport = layout.ntohs(k.sport), layout.ntohs(k.dport)
                proto = maps.PROTO_NAMES.get(k.proto, str(k.proto))
                skey = maps.service_key_str(dst, dport, proto)
                b = bes.get(v.backend_id)
                row = {"client": _hostport(src, sport), "client_address": src, "client_port": sport,
                       "service": skey, "backend_id": v.backend_id,
                       "backend": _hostport(b[1], b[2]) if b else None,
                       "backend_address": b[1] if b else None, "backend_port": b[2] if b else None,
                       "nat_port": layout.ntohs(v.nat_port) or None, "age": None}
                if aged and now is not None and getattr(v, "last_seen", 0):
                    row["age"] = round(max(0, now - v.last_seen) / per_s, 1)
                if vip and vip not in (skey, dst):
                    continue
                if backend and (row["backend_address"] != backend[0] or
                                (backend[1] is not None and row["backend_port"] != backend[1])):
                    continue
                if client and (src != client[0] or (client[1] is not None and sport != client[1])):
                    continue
                out.append(row)
    out.sort(key=lambda r: (r["service"], r["client_address"], r["client_port"]))
    return out
