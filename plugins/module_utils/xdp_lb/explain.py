# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``xdp-lb explain``: which backend a flow has, or would get, and why.

The data plane's own decision, read from the live maps: a conntrack entry
(lb_ct[flow]) whose backend is still usable (active, of the service, as
the program's usable_backend() checks) keeps the flow there; otherwise the
flow is new and takes ring[hash % ring_size] of the service's live ring
slot, the hash being the 5-tuple (five_tuple, maglev) or the address pair
(ip_hash) with the program's seeds (flowhash.py, proven equal to the C
code by tests/dataplane/test_flowhash.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    flowhash, layout, maps, netlink)


def _flow(client, cport, vip, port, proto):
    s, family = layout.pack_addr(client)
    d, _f = layout.pack_addr(vip)
    return layout.LbFlow(src=s, dst=d, sport=layout.htons(cport or 0), dport=layout.htons(port),
                         proto=layout.PROTOCOLS[proto], family=family)


def explain(data, client, cport, skey):
    """Dict: the flow, 'established' or 'new', the backend and the reason.

    ``skey``: 'tcp/198.18.100.1:80'; ``cport`` may be None only for ip_hash
    services (the client port does not matter there).
    """
    cfg = data["config"]
    proto, rest = skey.split("/", 1)
    vip, port = rest.rsplit(":", 1)
    vip, port = vip.strip("[]"), int(port)
    ring_size = cfg.get("ring_size") or layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
    max_backends = cfg.get("max_backends") or layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"]
    out = {"client": client, "client_port": cport, "service": skey}
    with netlink.in_netns(data.get("netns")):
        with maps.MapSet(cfg["pin_dir"]) as ms:
            t = maps.read_tables(ms, ring_size, max_backends)
            entry = t.service_entry(skey)
            if entry is None:
                out.update(verdict="pass", backend=None,
                           reason="%s is not in lb_services: the packet goes to the kernel" % skey)
                return out
            sid, slot, sched = entry
            sched_name = maps.SCHED_NAMES.get(sched, str(sched))
            out.update(service_id=sid, ring_slot=slot, scheduler=sched_name)
            backends = t.active_backends()
            ct = None
            if cport is not None:
                ct = ms.get("lb_ct").lookup(_flow(client, cport, vip, port, proto))
            stale = None
            if ct is not None:
                b = backends.get(ct.backend_id)
                out["nat_port"] = ct.nat_port and layout.ntohs(ct.nat_port) or None
                if b and b[3] and b[0] == sid and (":" in b[1]) == (":" in client):
                    out.update(state="established", backend_id=ct.backend_id, backend=_hostport(b[1], b[2]),
                               reason="conntrack entry (lb_ct) of this flow names backend %d" % ct.backend_id)
                    return out
                stale = ct.backend_id
            if cport is None and sched_name != "ip_hash":
                out.update(state="new", backend=None,
                           reason="%s hashes the client port too: give CLIENT:PORT" % sched_name)
                return out
            if sched_name == "ip_hash":
                h = flowhash.hash_ip_pair(client, vip)
                how = "ip_hash: hash of client and VIP"
            else:
                h = flowhash.hash_flow(client, vip, cport, port, layout.PROTOCOLS[proto])
                how = "%s: hash of the 5-tuple" % sched_name
            ring = t.rings.get(sid) or ()
            pos = h % ring_size
            bid = ring[pos] if pos < len(ring) else 0
            b = backends.get(bid)
            out.update(state="new", hash=h, ring_position=pos, backend_id=bid or None,
                       backend=_hostport(b[1], b[2]) if b and b[3] else None)
            why = "%s = %d, ring slot %d position %d holds backend %s" % (how, h, slot, pos, bid or "none")
            if stale is not None:
                why = "conntrack entry names backend %d, no longer usable; new flow: %s" % (stale, why)
            if not out["backend"]:
                why += " (no usable backend: the packet is dropped as no_backend)"
            out["reason"] = why
    return out


def _hostport(address, port):
    return "%s:%d" % ("[%s]" % address if ":" in address else address, port)
