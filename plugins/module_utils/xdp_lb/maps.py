# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The control plane's view of the maps: read live content, compute the difference, apply it.

Three layers, the first two pure:

* ``Tables``: the content of lb_config, lb_services, lb_backends, the live
  ring of each service and lb_tx_ports, as plain comparable values (struct
  bytes, tuples).  ``read_tables`` fills one from pinned maps,
  ``desired_tables`` from a validated Config plus stable ids.
* ``plan``: the ordered operations that turn live into desired, in the
  order docs/design.md sets (backends -> inactive rings -> services ->
  removed services -> removed backends -> redirect ports -> config).
* ``apply``: runs a plan on open maps; on any failure writes the previous
  values back (newest first) and re-raises.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import array
import ctypes as ct
import hashlib
import os
import socket
import sys
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, flowhash, layout, maglev

PROTO_NAMES = dict((v, k) for k, v in layout.PROTOCOLS.items())
SCHED_NAMES = dict((v, k) for k, v in layout.SCHEDULERS.items())
MODE_NAMES = {layout.MODE_NONE: "none", layout.MODE_REDIRECT: "redirect", layout.MODE_NAT: "nat",
              layout.MODE_DSR: "dsr"}
ALGO_NAMES = dict((v, k) for k, v in layout.REDIRECT_ALGOS.items())

# Maps whose size depends on build defines, and how.
BPF_MAP_TYPES = {"lb_config": 2, "lb_services": 1, "lb_ring": 2, "lb_backends": 2, "lb_ct4": 9,
                 "lb_ct6": 9, "lb_nat4": 9, "lb_nat6": 9, "lb_vip_filter": 2, "lb_stats": 6,
                 "lb_be_stats": 6, "lb_port_stats": 6, "lb_tx_ports": 14, "lb_rr": 6, "lb_nexthop": 6,
                 "lb_ct4_cache": 2}


ARRAYS = ("lb_config", "lb_ring", "lb_backends", "lb_vip_filter")


class MapError(Exception):
    pass


# ---- keys and structs -------------------------------------------------------------

def service_key_str(vip, port, protocol):
    host = vip if ":" not in vip else "[%s]" % vip
    return "%s/%s:%d" % (protocol, host, port)


def backend_key_str(service_key, address, port):
    return "%s|%s:%d" % (service_key, address, port)


def service_key_struct(svc):
    addr, family = layout.pack_addr(svc.vip)
    return layout.LbServiceKey(vip=addr, port=layout.htons(svc.port),
                               proto=layout.PROTOCOLS[svc.protocol], family=family)


def decode_service_key(key):
    """LbServiceKey -> 'tcp/198.18.0.10:80' (None if not ours to read)."""
    vip = layout.unpack_addr(key.vip, key.family)
    return service_key_str(vip, layout.ntohs(key.port), PROTO_NAMES.get(key.proto, str(key.proto)))


def backend_struct(backend, service_id, service_key, active=True):
    """LbBackend of ``backend``, a backend of the service with id
    ``service_id`` and lb_services key ``service_key`` (LbServiceKey)."""
    addr, family = layout.pack_addr(backend.address)
    return layout.LbBackend(addr=addr, port=layout.htons(backend.port) if backend.port else 0,
                            family=family, flags=layout.BACKEND_ACTIVE if active else 0,
                            service_id=service_id, service=service_key)


def decode_backend(value):
    """LbBackend -> (service_id, address, port (host order), active)."""
    if value.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return (value.service_id, layout.unpack_addr(value.addr, value.family), layout.ntohs(value.port),
            bool(value.flags & layout.BACKEND_ACTIVE))


def config_struct(mode, redirect_algorithm, redirect_count, port_min, port_max, snat_v4, snat_v6,
                  flow_idle_timeout=0):
    cfg = layout.LbConfig(mode=layout.MODES[mode], redirect_algo=layout.REDIRECT_ALGOS[redirect_algorithm],
                          redirect_count=redirect_count, port_min=port_min, port_max=port_max,
                          flow_idle_timeout=flow_idle_timeout)
    flags = 0
    if snat_v4:
        cfg.snat_v4 = layout.pack_addr(snat_v4)[0][0]
        flags |= layout.CFG_SNAT_V4
    if snat_v6:
        cfg.snat_v6 = layout.pack_addr(snat_v6)[0]
        flags |= layout.CFG_SNAT_V6
    cfg.flags = flags
    return cfg


def decode_config(value):
    out = {"mode": MODE_NAMES.get(value.mode, str(value.mode)),
           "redirect_algorithm": ALGO_NAMES.get(value.redirect_algo, str(value.redirect_algo)),
           "redirect_count": value.redirect_count, "nat_port_min": value.port_min,
           "nat_port_max": value.port_max, "nat_source_ipv4": None, "nat_source_ipv6": None,
           "flow_idle_timeout": value.flow_idle_timeout}
    if value.flags & layout.CFG_SNAT_V4:
        out["nat_source_ipv4"] = layout.unpack_addr(layout.Addr(value.snat_v4, 0, 0, 0), socket.AF_INET)
    if value.flags & layout.CFG_SNAT_V6:
        out["nat_source_ipv6"] = layout.unpack_addr(value.snat_v6, socket.AF_INET6)
    return out


def ring_digest(ring, full=False):
    """Digest of a ring's content: short (12 hex digits, diff output) or ``full`` (SHA-256 hex).

    The short digest is the start of the full one.
    """
    if ring is None:
        return None
    values = array.array("I", ring)     # 4-byte unsigned on every Linux platform
    if sys.byteorder == "big":
        values.byteswap()
    digest = hashlib.sha256(values.tobytes()).hexdigest()
    return digest if full else digest[:12]


# The part of an lb_backend that says where a client goes: address (16
# bytes), port (2, network order; 0 = the service's port) and family (1).
BACKEND_ADDR_BYTES = 19


def ring_addr_digest(ring, backends):
    """SHA-256 hex of the address-level table of a ring: per slot, the
    backend's address, port and family as lb_backends holds them
    (``backends``: Tables.backends, {id: LbBackend bytes}), 19 zero bytes
    for an empty slot.

    Unlike ``ring_digest`` it does not depend on backend ids, which depend
    on a host's history (adds and removals reuse freed ids): two hosts whose
    tables send every flow to the same address and port have the same
    digest, whatever ids they gave their backends.
    """
    if ring is None:
        return None
    empty = bytes(BACKEND_ADDR_BYTES)
    enc = {}
    for bid, raw in backends.items():
        if layout.LbBackend.from_buffer_copy(raw).flags & layout.BACKEND_ACTIVE:
            enc[bid] = bytes(raw[:BACKEND_ADDR_BYTES])
    return hashlib.sha256(b"".join(enc.get(i, empty) for i in ring)).hexdigest()


def expected_map_shapes(sizes):
    """{map name: (type, key_size, value_size, max_entries)} for build ``sizes``."""
    s = dict(layout.DEFAULT_SIZES)
    s.update(sizes)
    entries = {
        "lb_config": 1, "lb_services": s["XDP_LB_MAX_SERVICES"],
        "lb_ring": 2 * s["XDP_LB_MAX_SERVICES"] * layout.ring_words(s["XDP_LB_RING_SIZE"]),
        "lb_backends": s["XDP_LB_MAX_BACKENDS"], "lb_ct4": s["XDP_LB_CT_SIZE"],
        "lb_ct6": s["XDP_LB_CT_SIZE"], "lb_nat4": s["XDP_LB_CT_SIZE"], "lb_nat6": s["XDP_LB_CT_SIZE"],
        "lb_vip_filter": s["XDP_LB_VIP_FILTER_BITS"] // 64, "lb_stats": layout.STATS.__len__(),
        "lb_be_stats": s["XDP_LB_MAX_BACKENDS"], "lb_port_stats": s["XDP_LB_MAX_REDIRECT"],
        "lb_tx_ports": s["XDP_LB_MAX_REDIRECT"], "lb_rr": 1,
        "lb_nexthop": s["XDP_LB_MAX_BACKENDS"] + s["XDP_LB_NH_REPLY_SLOTS"],
        "lb_ct4_cache": layout.ct_cache_lines(s["XDP_LB_CT_SIZE"]),
    }
    out = {}
    for name, (ktype, vtype, _percpu) in layout.MAPS.items():
        out[name] = (BPF_MAP_TYPES[name], ct.sizeof(ktype), ct.sizeof(vtype), entries[name])
    return out


# ---- pinned maps ------------------------------------------------------------------

class FlowTable:
    """A connection table of both families as one: lb_ct (lb_ct4 + lb_ct6) or
    lb_nat_rev (lb_nat4 + lb_nat6), keyed by layout.LbFlow of either family
    (an IPv4 key goes to the IPv4 map as layout.LbFlow4)."""

    def __init__(self, v4, v6, cache=None):
        self.v4, self.v6, self.cache = v4, v6, cache
        self._lines = int(bpf.fd_info(cache.fd)["max_entries"]) if cache else 0

    def _pick(self, flow):
        if flow.family == socket.AF_INET:
            return self.v4, layout.flow4_of(flow)
        return self.v6, flow

    def _forget(self, m, key):
        """An IPv4 entry written here: empty its line of lb_ct4_cache, which
        would otherwise answer for the flow until its next refresh."""
        if self.cache is not None and m is self.v4:
            index = flowhash.ct_cache_hash(key) % self._lines
            self.cache.update(layout.U32(index), layout.LbCtCacheLine())

    def lookup(self, flow):
        m, key = self._pick(flow)
        return m.lookup(key)

    def update(self, flow, value, flags=bpf.BPF_ANY):
        m, key = self._pick(flow)
        m.update(key, value, flags)
        self._forget(m, key)

    def delete(self, flow):
        m, key = self._pick(flow)
        gone = m.delete(key)
        self._forget(m, key)
        return gone

    def keys(self):
        return [layout.flow_of4(k) for k in self.v4.keys()] + self.v6.keys()

    def items(self):
        return [(layout.flow_of4(k), v) for k, v in self.v4.items()] + self.v6.items()

    def close(self):
        pass        # the two maps belong to whoever opened them


class MapSet:
    """The pinned maps of one instance, opened on demand."""

    def __init__(self, pin_dir):
        self.pin_dir = pin_dir
        self._maps = {}

    def path(self, name):
        return os.path.join(self.pin_dir, name)

    def exists(self, name=None):
        """All maps that hold state are pinned (caches may be missing: an
        instance pinned by an older build gets them with the next load)."""
        names = [name] if name else [n for n in layout.MAPS if n not in layout.CACHE_MAPS]
        return all(os.path.exists(self.path(n)) for n in names)

    def any_exists(self):
        return any(os.path.exists(self.path(n)) for n in layout.MAPS)

    def get(self, name):
        """The pinned map ``name``.  "lb_ct" and "lb_nat_rev" are the
        connection tables of both families (FlowTable); in maps of a layout
        before ABI 4 they are the single tables of that name (legacy)."""
        if name in layout.FLOW_TABLES and name not in self._maps:
            v4, v6 = layout.FLOW_TABLES[name]
            if not os.path.exists(self.path(v4)) and os.path.exists(self.path(name)):
                return self.legacy(name)
            cache = self.get("lb_ct4_cache") if name == "lb_ct" and self.exists("lb_ct4_cache") else None
            return FlowTable(self.get(v4), self.get(v6), cache)
        m = self._maps.get(name)
        if m is None:
            ktype, vtype, percpu = layout.MAPS[name]
            m = bpf.Map.pinned(self.path(name), ktype, vtype, percpu=percpu)
            self._maps[name] = m
        return m

    def legacy(self, name):
        """A connection table of a layout before ABI 4 (layout.LEGACY_MAPS),
        keyed by LbFlow, its values read by their size."""
        m = self._maps.get(name)
        if m is None:
            fd = bpf.obj_get(self.path(name))
            size = int(bpf.fd_info(fd).get("value_size", 0))
            vtype = layout.CT_ENTRY_LAYOUTS.get(size, layout.LbCtEntry) if name == "lb_ct" \
                else layout.LbNatEntry
            m = bpf.Map(fd, layout.LbFlow, vtype)
            self._maps[name] = m
        return m

    def info(self, name):
        """fdinfo of the pinned map: map_id, map_type, key_size, value_size, max_entries."""
        m = self.legacy(name) if name in layout.LEGACY_MAPS else self.get(name)
        fields = bpf.fd_info(m.fd)
        return dict((k, int(fields[k])) for k in ("map_id", "map_type", "key_size", "value_size", "max_entries")
                    if k in fields)

    def shape_mismatch(self, sizes):
        """Names of pinned maps whose shape differs from what ``sizes`` builds."""
        want = expected_map_shapes(sizes)
        bad = []
        for name in layout.MAPS:
            if not os.path.exists(self.path(name)):
                continue
            i = self.info(name)
            have = (i.get("map_type"), i.get("key_size"), i.get("value_size"), i.get("max_entries"))
            if have != want[name]:
                bad.append(name)
        # maps of an older layout of ours that this one replaces
        bad.extend(n for n in sorted(layout.LEGACY_MAPS) + sorted(layout.OBSOLETE_MAPS)
                   if os.path.exists(self.path(n)))
        return bad

    def foreign(self, sizes):
        """[(name, what differs)] of pinned maps that are neither of this
        layout (any size) nor of an older layout of ours (layout.OLDER_SHAPES):
        another type, key size or value size than any of ours had."""
        want = expected_map_shapes(sizes)
        out = []
        for name in list(layout.MAPS) + sorted(layout.LEGACY_MAPS):
            if not os.path.exists(self.path(name)):
                continue
            i = self.info(name)
            have = (i.get("map_type"), i.get("key_size"), i.get("value_size"))
            ours = [want[name][:3]] if name in want else []
            ours += layout.OLDER_SHAPES.get(name, [])
            if have in ours:
                continue
            ref = ours[0]
            diff = ["%s %s (ours: %s)" % (label, h, r) for label, h, r in
                    zip(("type", "key size", "value size"), have, ref) if h != r]
            out.append((name, ", ".join(diff)))
        return out

    def ids(self):
        return dict((n, self.info(n).get("map_id")) for n in layout.MAPS if os.path.exists(self.path(n)))

    def close(self):
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- carrying connection tracking into recreated maps -----------------------------
#
# A build whose map shapes differ (a size option, or a new layout such as
# lb_ct_entry gaining last_seen in ABI 3) gets new maps.  Before its program
# replaces the running one, the engine copies lb_ct and lb_nat_rev from the
# old maps into the new ones, so established flows keep their backend (and
# NAT port): ``migrate_flows``.

INITIAL_JIFFIES_SECONDS = 300       # the kernel starts jiffies 300 s before wrapping 32 bits
CLOCK_MONOTONIC_COARSE = 6          # Linux's clock id (time.CLOCK_MONOTONIC_COARSE is not everywhere)


def dataplane_now(hz, timer_list="/proc/timer_list"):
    """The data plane's clock now: bpf_jiffies64() for a build with
    XDP_LB_HZ=``hz``, else bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE).

    jiffies come from /proc/timer_list; without it they are estimated from
    the monotonic clock (the kernel's INITIAL_JIFFIES plus ticks since boot,
    within a fraction of a second: fine for a last-seen time)."""
    if not hz:
        return time.clock_gettime_ns(getattr(time, "CLOCK_MONOTONIC_COARSE", CLOCK_MONOTONIC_COARSE))
    try:
        with open(timer_list) as f:
            for line in f:
                if line.startswith("jiffies:"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError, IndexError):
        pass
    initial = (2 ** 32 - INITIAL_JIFFIES_SECONDS * hz) % 2 ** 32
    return initial + time.clock_gettime_ns(time.CLOCK_MONOTONIC) * hz // 1000000000


def flow_owners(ms):
    """{backend id: backend key str} of the backends in pinned maps ``ms``
    (active or draining; removed slots are empty), or None if their
    lb_services or lb_backends cannot be read with this layout."""
    want = {"lb_services": [(ct.sizeof(layout.LbServiceKey), ct.sizeof(layout.LbService))],
            "lb_backends": [(ct.sizeof(layout.U32), size) for size in layout.BACKEND_LAYOUTS]}
    infos = {}
    for name, shapes in want.items():
        if not ms.exists(name):
            return None
        infos[name] = ms.info(name)
        if (infos[name].get("key_size"), infos[name].get("value_size")) not in shapes:
            return None
    services = dict((v.id, decode_service_key(k)) for k, v in ms.get("lb_services").items())
    backends = bpf.Map(ms.get("lb_backends").fd, layout.U32,
                       layout.BACKEND_LAYOUTS[infos["lb_backends"]["value_size"]], owned=False)
    out = {}
    for bid, value in enumerate(backends.lookup_batch(0, infos["lb_backends"]["max_entries"])):
        d = decode_backend(value) if bid else None
        if d is not None and d[3] and d[0] in services:
            out[bid] = backend_key_str(services[d[0]], d[1], d[2])
    return out


def _flow_sources(ms):
    """{"lb_ct": [(map, key kind, value type)], "lb_nat_rev": [...]} of the
    connection tables in pinned maps ``ms``, whatever layout of ours pinned
    them (key kind 4: LbFlow4, 6: LbFlow), or None if one is missing or of
    a shape no layout of ours had."""
    out = {}
    for name, (v4, v6) in sorted(layout.FLOW_TABLES.items()):
        values = layout.CT_ENTRY_LAYOUTS if name == "lb_ct" else {ct.sizeof(layout.LbNatEntry): layout.LbNatEntry}
        if ms.exists(v4) and ms.exists(v6):
            parts = [(v4, 4, ct.sizeof(layout.LbFlow4)), (v6, 6, ct.sizeof(layout.LbFlow))]
        elif ms.exists(name):
            parts = [(name, 6, ct.sizeof(layout.LbFlow))]
        else:
            return None
        out[name] = []
        for pin, kind, key_size in parts:
            info = ms.info(pin)
            if info.get("key_size") != key_size or info.get("value_size") not in values:
                return None
            ktype = layout.LbFlow4 if kind == 4 else layout.LbFlow
            m = bpf.Map(ms.legacy(pin).fd if pin in layout.LEGACY_MAPS else ms.get(pin).fd, ktype,
                        values[info["value_size"]], owned=False)
            out[name].append((m, kind))
    return out


def migratable(ms):
    """Can ``migrate_flows`` read the connection tables of pinned maps ``ms``?"""
    return _flow_sources(ms) is not None and flow_owners(ms) is not None


def migrate_flows(old, new, backend_ids, now):
    """Copy the connection tables from pinned maps ``old`` into ``new``.

    ``old`` may be of this layout (lb_ct4/6, lb_nat4/6) or of an older one
    of ours (lb_ct, lb_nat_rev: both families in one table with LbFlow
    keys, up to ABI 3); ``new`` is of this layout.  ``backend_ids``:
    {backend key str: id} of the new tables; an entry follows its backend
    (same service, address and port) to its id there, and is left behind
    if that backend is gone.  lb_ct entries of any known layout
    (layout.CT_ENTRY_LAYOUTS) are converted to the new one, last seen
    ``now`` (on the data plane's clock).  Returns {"flows", "nat_flows",
    "dropped"}: entries copied and left behind.
    """
    owners = flow_owners(old)
    remap = {}
    for bid, bkey in owners.items():
        if bkey in backend_ids:
            remap[bid] = backend_ids[bkey]
    sources = _flow_sources(old)
    out = {"flows": 0, "nat_flows": 0, "dropped": 0}
    for name, counter in (("lb_ct", "flows"), ("lb_nat_rev", "nat_flows")):
        writer = new.get(name)
        writer = FlowTable(writer.v4, writer.v6)    # new maps: their cache is empty
        for reader, kind in sources[name]:
            for key, value in reader.items():
                bid = remap.get(value.backend_id)
                if bid is None:
                    out["dropped"] += 1
                    continue
                if kind == 4:
                    key = layout.flow_of4(key)
                if name == "lb_ct":
                    value = layout.LbCtEntry(backend_id=bid, nat_port=value.nat_port, last_seen=now)
                else:
                    value.backend_id = bid
                writer.update(key, value)
                out[counter] += 1
    return out


# ---- tables -----------------------------------------------------------------------

class Tables:
    """Map content in comparable form.

    config    bytes of LbConfig (None: never written)
    services  {service key str: (key bytes, LbService bytes)}
    backends  {id: LbBackend bytes}   (only entries with a family: written by us)
    rings     {service id: tuple of backend ids}  (the live slot of each service)
    tx_ports  {slot: ifindex}
    vip_filter {word index: u64}   (lb_vip_filter, non-zero words only)
    """

    def __init__(self, config=None, services=None, backends=None, rings=None, tx_ports=None,
                 vip_filter=None):
        self.config = config
        self.services = services or {}
        self.backends = backends or {}
        self.rings = rings or {}
        self.tx_ports = tx_ports or {}
        self.vip_filter = vip_filter or {}

    def service_entry(self, skey):
        """(id, ring_slot, sched) of a service, or None."""
        item = self.services.get(skey)
        if item is None:
            return None
        v = layout.LbService.from_buffer_copy(item[1])
        return v.id, v.ring_slot, v.sched

    def active_backends(self):
        """{id: (service_id, address, port, active)} of the backends the map holds.

        Decoded once per content of ``backends`` (ids, plan and the diff all ask).
        """
        memo = getattr(self, "_decoded", None)
        if memo is not None and memo[0] == self.backends:
            return dict(memo[1])
        out = {}
        for bid, raw in self.backends.items():
            d = decode_backend(layout.LbBackend.from_buffer_copy(raw))
            if d is not None:
                out[bid] = d
        self._decoded = (dict(self.backends), out)
        return dict(out)


def read_tables(maps, ring_size, max_backends, max_redirect=None):
    """Read the live content of an instance's maps (missing maps read as empty)."""
    max_redirect = max_redirect or layout.DEFAULT_SIZES["XDP_LB_MAX_REDIRECT"]
    t = Tables()
    if not maps.exists():
        return t
    cfg = maps.get("lb_config").lookup(layout.U32(0))
    if cfg is not None and bytes(cfg) != bytes(layout.LbConfig()):
        t.config = bytes(cfg)
    for key, value in maps.get("lb_services").items():
        t.services[decode_service_key(key)] = (bytes(key), bytes(value))
    for bid, value in enumerate(maps.get("lb_backends").lookup_batch(0, max_backends)):
        if bid and value.family:
            t.backends[bid] = bytes(value)
    ring = maps.get("lb_ring")
    for _skey, (_k, raw) in t.services.items():
        svc = layout.LbService.from_buffer_copy(raw)
        if svc.ring_slot > 1:
            t.rings[svc.id] = None
            continue
        start = layout.ring_index(svc.id, svc.ring_slot, 0, ring_size)
        t.rings[svc.id] = layout.ring_unpack(ring.lookup_batch(start, layout.ring_words(ring_size)), ring_size)
    ports = maps.get("lb_tx_ports")
    for slot in range(max_redirect):
        v = ports.lookup(layout.U32(slot))
        if v is not None:
            t.tx_ports[slot] = int(v.value)
    if os.path.exists(maps.path("lb_vip_filter")):      # not in maps of ABI 3 and before
        filt = maps.get("lb_vip_filter")
        words = int(bpf.fd_info(filt.fd).get("max_entries", 0))
        for index, value in enumerate(filt.lookup_batch(0, words)):
            if value:
                t.vip_filter[index] = int(value)
    return t


def vip_filter_words(vips, bits=None):
    """{word index: u64} of lb_vip_filter with the bits of addresses ``vips`` set."""
    bits = bits or layout.DEFAULT_SIZES["XDP_LB_VIP_FILTER_BITS"]
    out = {}
    for vip in vips:
        bit = flowhash.vip_filter_bit(vip, bits)
        out[bit // 64] = out.get(bit // 64, 0) | (1 << (bit % 64))
    return out


# ---- ids --------------------------------------------------------------------------

def assign_ids(services, live, prev_ids, max_services, max_backends):
    """Stable ids for services and backends.

    ``services``: validated model.Service list.  ``live``: Tables read from
    the maps (authoritative).  ``prev_ids``: {"services": {skey: id},
    "backends": {bkey: id}} from the state file (used when the maps are new,
    e.g. after a reboot, so ids and hence conntrack stay meaningful).
    Ids in use by live entries are never handed to something else in the
    same run: a removed backend's slot is cleared first and reused later.
    """
    prev_ids = prev_ids or {}
    prev_s = prev_ids.get("services", {})
    prev_b = prev_ids.get("backends", {})
    live_backends = live.active_backends()

    sids = {}
    used = set()
    for skey, _item in live.services.items():
        used.add(live.service_entry(skey)[0])
    wanted = [s.key for s in services]
    for skey in wanted:
        entry = live.service_entry(skey)
        if entry is not None:
            sids[skey] = entry[0]
    for skey in wanted:
        if skey in sids:
            continue
        pid = prev_s.get(skey)
        if pid is not None and 0 <= pid < max_services and pid not in used and pid not in sids.values():
            sids[skey] = pid
            used.add(pid)
    taken = set(sids.values()) | used
    free = [i for i in range(max_services) if i not in taken]
    spare = [i for i in range(max_services) if i in used and i not in sids.values()]
    for skey in wanted:
        if skey in sids:
            continue
        if free:
            sids[skey] = free.pop(0)
        elif spare:
            # every id is held by a live service; take one being removed in this run
            sids[skey] = spare.pop(0)
        else:
            raise MapError("no free service id (max_services %d)" % max_services)

    bids = {}
    live_index = {}
    for bid, (sid, address, port, active) in live_backends.items():
        if active:
            live_index[(sid, address, port)] = bid
    busy = set(bid for bid, d in live_backends.items() if d[3])
    for svc in services:
        sid = sids[svc.key]
        for b in svc.backends:
            bkey = backend_key_str(svc.key, b.address, b.port)
            bid = live_index.get((sid, b.address, b.port))
            if bid is not None:
                bids[bkey] = bid
    for svc in services:
        for b in svc.backends:
            bkey = backend_key_str(svc.key, b.address, b.port)
            if bkey in bids:
                continue
            pid = prev_b.get(bkey)
            if pid is not None and 0 < pid < max_backends and pid not in busy and pid not in bids.values():
                bids[bkey] = pid
    taken = busy | set(bids.values())
    nxt = 1
    for svc in services:
        for b in svc.backends:
            bkey = backend_key_str(svc.key, b.address, b.port)
            if bkey in bids:
                continue
            while nxt in taken:
                nxt += 1
            if nxt >= max_backends:
                raise MapError("no free backend id (max_backends %d; %d in use)" % (max_backends, len(taken)))
            bids[bkey] = nxt
            taken.add(nxt)
    return sids, bids


# ---- desired content --------------------------------------------------------------

def ring_items(svc, backend_ids):
    """What a service's ring is built from: [(backend key, weight, backend id)]."""
    return [(b.key, b.weight, backend_ids[backend_key_str(svc.key, b.address, b.port)]) for b in svc.backends]


def service_ring(svc, backend_ids, ring_size):
    return tuple(maglev.build_table(svc.scheduler, ring_items(svc, backend_ids), ring_size))


# Part of every ring inputs digest: change it when maglev.py builds a
# different table from the same inputs, so recorded digests stop matching.
RING_ALGORITHM = 1


def ring_inputs_digest(svc, backend_ids, ring_size):
    """SHA-256 hex of everything ``service_ring`` depends on.

    ``svc`` carries the effective weights (health drains applied), so a
    drain or a recovery changes the digest like a configured weight does.
    The order of the backends does not matter (maglev sorts them by key).
    """
    items = sorted(ring_items(svc, backend_ids))
    text = repr((RING_ALGORITHM, svc.scheduler, ring_size, items))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def service_rings(services, sids, bids, ring_size, live, recorded=None):
    """The ring of every service, and what to record about it.

    Returns ``(rings, record, built)``: ``rings`` {service key: ring tuple},
    ``record`` {service key: {"inputs": inputs digest, "ring": full ring
    digest}} for the state file, ``built`` the keys whose ring was built.

    A ring is not built again when the service's inputs digest equals the
    one ``recorded`` (the previous run's ``record``) and the ring the maps
    hold for it (``live``, read from the service's live slot) still has the
    recorded digest: then that live ring is the one the inputs give.  Any
    other case builds it (new service, changed inputs, maps recreated or
    emptied, a ring changed by hand): the plan then repairs what differs.
    """
    recorded = recorded or {}
    rings, record, built = {}, {}, []
    for svc in services:
        inputs = ring_inputs_digest(svc, bids, ring_size)
        rec = recorded.get(svc.key)
        ring = digest = None
        entry = live.service_entry(svc.key)
        if isinstance(rec, dict) and rec.get("inputs") == inputs and entry is not None \
                and entry[0] == sids[svc.key]:
            have = live.rings.get(entry[0])
            if have is not None and len(have) == ring_size:
                have_digest = ring_digest(have, full=True)
                if have_digest == rec.get("ring"):
                    ring, digest = have, have_digest
        if ring is None:
            ring = service_ring(svc, bids, ring_size)
            digest = ring_digest(ring, full=True)
            built.append(svc.key)
        rings[svc.key] = ring
        record[svc.key] = {"inputs": inputs, "ring": digest}
    return rings, record, built


def desired_tables(cfg, sids, bids, live, snat_v4=None, snat_v6=None, tx_ifindexes=None, rings=None):
    """Tables as they must be for ``cfg``.

    The ring slot of an unchanged service stays; a service whose ring
    changes gets the other slot (written in full before the flip).
    ``rings``: precomputed {service key: ring} (else built here).
    """
    t = Tables()
    tx_ifindexes = tx_ifindexes or []
    t.config = bytes(config_struct(cfg.mode, cfg.redirect_algorithm, len(tx_ifindexes),
                                   cfg.nat_port_min, cfg.nat_port_max,
                                   snat_v4 if cfg.mode == "nat" else None,
                                   snat_v6 if cfg.mode == "nat" else None,
                                   cfg.flow_idle_timeout or 0))
    for slot, ifindex in enumerate(tx_ifindexes):
        t.tx_ports[slot] = ifindex
    t.vip_filter = vip_filter_words([svc.vip for svc in cfg.services])
    for svc in cfg.services:
        sid = sids[svc.key]
        ring = (rings or {}).get(svc.key) or service_ring(svc, bids, cfg.ring_size)
        live_entry = live.service_entry(svc.key)
        if live_entry is not None and live_entry[0] == sid and live_entry[1] in (0, 1):
            slot = live_entry[1] if live.rings.get(sid) == ring else 1 - live_entry[1]
        else:
            slot = 0
        key = service_key_struct(svc)
        value = layout.LbService(id=sid, ring_slot=slot, sched=layout.SCHEDULERS[svc.scheduler], flags=0)
        t.services[svc.key] = (bytes(key), bytes(value))
        t.rings[sid] = ring
        for b in svc.backends:
            t.backends[bids[backend_key_str(svc.key, b.address, b.port)]] = bytes(backend_struct(b, sid, key))
    return t


# ---- plan -------------------------------------------------------------------------

class Op:
    """One map write.  kind: 'update', 'delete', 'ring' (batch write), 'clear' (per-CPU zero)."""

    __slots__ = ("step", "map", "kind", "key", "new", "old", "note")

    def __init__(self, step, map_name, kind, key, new=None, old=None, note=""):
        self.step, self.map, self.kind, self.key = step, map_name, kind, key
        self.new, self.old, self.note = new, old, note

    def __repr__(self):
        return "Op(%s %s %s %r%s)" % (self.step, self.kind, self.map, self.key,
                                      (" " + self.note) if self.note else "")


STEPS = ("backends", "rings", "vip_filter", "services", "removed_services", "removed_vip_filter",
         "removed_backends", "tx_ports", "config", "removed_tx_ports")


def plan(live, want, ring_size):
    """Ordered list of Op turning ``live`` into ``want`` (empty: nothing to do)."""
    ops = []
    live_b = live.backends
    live_active = set(bid for bid, d in live.active_backends().items() if d[3])
    # 1. backends, new or changed (a newly used id starts with zeroed counters)
    for bid in sorted(want.backends):
        if live_b.get(bid) != want.backends[bid]:
            if bid not in live_active:
                ops.append(Op("backends", "lb_be_stats", "clear", bid, note="new backend id"))
            ops.append(Op("backends", "lb_backends", "update", bid, want.backends[bid], live_b.get(bid)))
    # 2. rings: the inactive slot of a new or changed service, in full
    for skey in sorted(want.services):
        svc = layout.LbService.from_buffer_copy(want.services[skey][1])
        entry = live.service_entry(skey)
        if entry is not None and entry[:2] == (svc.id, svc.ring_slot) \
                and live.rings.get(svc.id) == want.rings[svc.id]:
            continue
        ops.append(Op("rings", "lb_ring", "ring", (svc.id, svc.ring_slot), want.rings[svc.id],
                      note="%s slot %d" % (skey, svc.ring_slot)))
    # 3a. VIP filter: the bits of new VIPs, before their services exist
    # (a clear bit passes the packet before any lookup)
    both = dict(live.vip_filter)
    for word, bits in want.vip_filter.items():
        both[word] = both.get(word, 0) | bits
    for word in sorted(both):
        if both[word] != live.vip_filter.get(word):
            ops.append(Op("vip_filter", "lb_vip_filter", "update", word, both[word],
                          live.vip_filter.get(word)))
    # 3. services: new, flipped or changed, one update each
    for skey in sorted(want.services):
        key, raw = want.services[skey]
        live_item = live.services.get(skey)
        if live_item is None or live_item[1] != raw:
            ops.append(Op("services", "lb_services", "update", key, raw,
                          live_item[1] if live_item else None, note=skey))
    # 4. removed services
    for skey in sorted(live.services):
        if skey not in want.services:
            key, raw = live.services[skey]
            ops.append(Op("removed_services", "lb_services", "delete", key, None, raw, note=skey))
    # 4a. VIP filter: bits of addresses no longer a VIP, after their services went
    for word in sorted(both):
        if want.vip_filter.get(word) != both[word]:
            ops.append(Op("removed_vip_filter", "lb_vip_filter", "update", word,
                          want.vip_filter.get(word), both[word]))
    # 5. removed backends: slot cleared (flags 0), id free for a later run
    for bid in sorted(live_b):
        if bid not in want.backends:
            ops.append(Op("removed_backends", "lb_backends", "update", bid,
                          bytes(layout.LbBackend()), live_b[bid]))
    # 6. redirect ports in use, 7. config, 8. ports no longer used (after the count shrank)
    for slot in sorted(want.tx_ports):
        if live.tx_ports.get(slot) != want.tx_ports[slot]:
            ops.append(Op("tx_ports", "lb_tx_ports", "update", slot, want.tx_ports[slot],
                          live.tx_ports.get(slot)))
    if live.config != want.config:
        ops.append(Op("config", "lb_config", "update", 0, want.config, live.config))
    for slot in sorted(live.tx_ports):
        if slot not in want.tx_ports:
            ops.append(Op("removed_tx_ports", "lb_tx_ports", "delete", slot, None, live.tx_ports[slot]))
    order = dict((s, i) for i, s in enumerate(STEPS))
    ops.sort(key=lambda op: order[op.step])   # stable: keeps the order within a step
    return ops


def summarize(ops):
    """Human readable lines for a plan."""
    counts = {}
    for op in ops:
        if op.kind == "clear":
            continue
        counts.setdefault((op.step, op.map), []).append(op)
    lines = []
    for step in STEPS:
        for (s, name), items in sorted(counts.items()):
            if s != step:
                continue
            notes = [op.note for op in items if op.note]
            noun = "entry" if len(items) == 1 else "entries"
            detail = " (%s)" % ", ".join(notes[:8]) if notes else ""
            lines.append("%s: %s %d %s%s" % (name, step.replace("_", " "), len(items), noun, detail))
    return lines


# ---- apply ------------------------------------------------------------------------

def _key(map_name, key):
    ktype = layout.MAPS[map_name][0]
    if isinstance(key, (bytes, bytearray)):
        return ktype.from_buffer_copy(key)
    return ktype(key)


def _value(map_name, value):
    vtype = layout.MAPS[map_name][1]
    if isinstance(value, (bytes, bytearray)):
        return vtype.from_buffer_copy(value)
    return vtype(value)


def _do(maps, op, value):
    m = maps.get(op.map)
    if op.kind == "ring":
        sid, slot = op.key
        ring = value
        start = layout.ring_index(sid, slot, 0, len(ring))
        words = layout.ring_pack(ring)
        m.update_batch(range(start, start + len(words)), words)
    elif op.kind == "clear":
        m.update(layout.U32(op.key), [layout.LbCounter()] * bpf.possible_cpus())
    elif value is None and op.map in ARRAYS:
        m.update(_key(op.map, op.key), layout.MAPS[op.map][1]())   # arrays cannot delete: zero it
    elif value is None:
        m.delete(_key(op.map, op.key))
    else:
        m.update(_key(op.map, op.key), _value(op.map, value))


def apply(maps, ops):
    """Run ``ops``; on failure restore what was changed (newest first) and re-raise.

    Returns the list of ops done, for ``revert`` if a later step fails.
    """
    done = []
    try:
        for op in ops:
            _do(maps, op, op.new)
            done.append(op)
    except Exception:
        revert(maps, done)
        raise
    return done


def revert(maps, done):
    """Write back the previous values of ``done`` ops, newest first (best effort)."""
    errors = []
    for op in reversed(done):
        if op.kind in ("ring", "clear"):
            continue   # an inactive ring / unused counters: nothing reads them
        try:
            _do(maps, op, op.old)
        except Exception as exc:   # keep restoring the rest
            errors.append("%r: %s" % (op, exc))
    return errors
