# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ctypes mirror of files/xdp_lb.h: the structs, enums and maps the data plane shares.

Keep this file and the header in step; tests/unit checks the sizes against
the compiled object's BTF.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes as ct
import ipaddress
import socket
import struct

ABI_VERSION = 7

# Defaults of the compile-time sizes (override with build defines).
DEFAULT_SIZES = {
    "XDP_LB_MAX_SERVICES": 32,
    "XDP_LB_MAX_BACKENDS": 4096,
    "XDP_LB_RING_SIZE": 65537,
    "XDP_LB_CT_SIZE": 65536,
    "XDP_LB_MAX_REDIRECT": 64,
    "XDP_LB_PORT_PROBES": 8,
    "XDP_LB_NH_TTL_MS": 100,
    "XDP_LB_NH_REPLY_SLOTS": 256,
    "XDP_LB_VIP_FILTER_BITS": 65536,
}

MODE_NONE, MODE_REDIRECT, MODE_NAT, MODE_DSR = 0, 1, 2, 3
MODES = {"redirect": MODE_REDIRECT, "nat": MODE_NAT, "dsr": MODE_DSR}

REDIRECT_ALGOS = {"round_robin": 0, "flow_hash": 1}
SCHEDULERS = {"ip_hash": 0, "five_tuple": 1, "maglev": 2}

STATS = ("pass", "drop", "redirect", "tx", "no_backend", "ct_full", "fib_miss", "nat_reply")

BACKEND_ACTIVE = 0x1
CFG_SNAT_V4 = 0x1
CFG_SNAT_V6 = 0x2

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}

Addr = ct.c_uint32 * 4


class LbConfig(ct.Structure):
    _fields_ = [
        ("mode", ct.c_uint32),
        ("redirect_algo", ct.c_uint32),
        ("redirect_count", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("port_min", ct.c_uint16),
        ("port_max", ct.c_uint16),
        ("snat_v4", ct.c_uint32),
        ("snat_v6", Addr),
        ("flow_idle_timeout", ct.c_uint32),
    ]


class LbServiceKey(ct.Structure):
    _fields_ = [
        ("vip", Addr),
        ("port", ct.c_uint16),
        ("proto", ct.c_uint8),
        ("family", ct.c_uint8),
    ]


class LbService(ct.Structure):
    _fields_ = [
        ("id", ct.c_uint32),
        ("ring_slot", ct.c_uint32),
        ("sched", ct.c_uint32),
        ("flags", ct.c_uint32),
    ]


class LbBackendV5(ct.Structure):
    """lb_backend up to ABI 5 (no service key): read when migrating older maps."""
    _fields_ = [
        ("addr", Addr),
        ("port", ct.c_uint16),
        ("family", ct.c_uint8),
        ("flags", ct.c_uint8),
        ("service_id", ct.c_uint32),
    ]


class LbBackend(ct.Structure):
    """struct lb_backend (ABI 6): LbBackendV5 and the lb_services key of its service."""
    _fields_ = LbBackendV5._fields_ + [("service", LbServiceKey)]


# lb_backends value layouts by value size (migration of older maps).
BACKEND_LAYOUTS = {ct.sizeof(LbBackendV5): LbBackendV5, ct.sizeof(LbBackend): LbBackend}


class LbFlow(ct.Structure):
    _fields_ = [
        ("src", Addr),
        ("dst", Addr),
        ("sport", ct.c_uint16),
        ("dport", ct.c_uint16),
        ("proto", ct.c_uint8),
        ("family", ct.c_uint8),
        ("pad", ct.c_uint16),
    ]


class LbFlow4(ct.Structure):
    """struct lb_flow4: the key of lb_ct4 and lb_nat4 (ABI 4)."""
    _fields_ = [
        ("src", ct.c_uint32),
        ("dst", ct.c_uint32),
        ("sport", ct.c_uint16),
        ("dport", ct.c_uint16),
        ("proto", ct.c_uint8),
        ("pad", ct.c_uint8 * 3),
    ]


def flow4_of(flow):
    """LbFlow (IPv4) -> LbFlow4."""
    return LbFlow4(src=flow.src[0], dst=flow.dst[0], sport=flow.sport, dport=flow.dport,
                   proto=flow.proto)


def flow_of4(key):
    """LbFlow4 -> LbFlow (family AF_INET, address in word 0)."""
    f = LbFlow(sport=key.sport, dport=key.dport, proto=key.proto, family=socket.AF_INET)
    f.src[0] = key.src
    f.dst[0] = key.dst
    return f


class LbCtEntry(ct.Structure):
    _fields_ = [
        ("backend_id", ct.c_uint32),
        ("nat_port", ct.c_uint16),
        ("pad", ct.c_uint16),
        ("last_seen", ct.c_uint64),
    ]


class LbCtEntryV2(ct.Structure):
    """lb_ct_entry up to ABI 2 (no last_seen): read when migrating older maps."""
    _fields_ = [
        ("backend_id", ct.c_uint32),
        ("nat_port", ct.c_uint16),
        ("pad", ct.c_uint16),
    ]


# lb_ct value layouts by value size: what a pinned lb_ct holds, whatever
# build pinned it (the migration in engine.py converts between them).
CT_ENTRY_LAYOUTS = {ct.sizeof(LbCtEntryV2): LbCtEntryV2, ct.sizeof(LbCtEntry): LbCtEntry}


class LbNatEntry(ct.Structure):
    _fields_ = [
        ("client", Addr),
        ("vip", Addr),
        ("client_port", ct.c_uint16),
        ("vip_port", ct.c_uint16),
        ("backend_id", ct.c_uint32),
    ]


class LbCtCacheWay(ct.Structure):
    """struct lb_ct_cache_way: an IPv4 flow's copy of its lb_ct4 entry (ABI 7)."""
    _fields_ = [
        ("flow", LbFlow4),
        ("tag", ct.c_uint64),           # hash | backend_id << 32 | nat_port << 48; 0 = empty
        ("last_seen", ct.c_uint64),
    ]


CT_CACHE_WAYS = 2


class LbCtCacheLine(ct.Structure):
    """struct lb_ct_cache_line: one value of lb_ct4_cache."""
    _fields_ = [("way", LbCtCacheWay * CT_CACHE_WAYS)]


def ct_cache_lines(ct_size):
    """lb_ct4_cache's lines for XDP_LB_CT_SIZE ``ct_size`` (XDP_LB_CT_CACHE_LINES):
    the largest power of two <= ct_size flows, CT_CACHE_WAYS per line."""
    return (1 << (int(ct_size).bit_length() - 1)) // CT_CACHE_WAYS


RING_LANES = 4                  # backend ids per lb_ring value (ABI 5)


class LbRingWord(ct.Structure):
    """lb_ring value: RING_LANES 16-bit backend ids (struct lb_ring_word)."""
    _fields_ = [("id", ct.c_uint16 * RING_LANES)]


class LbCounter(ct.Structure):
    _fields_ = [
        ("packets", ct.c_uint64),
        ("bytes", ct.c_uint64),
    ]


class LbNexthop(ct.Structure):
    _fields_ = [
        ("daddr", Addr),
        ("saddr", Addr),
        ("expires", ct.c_uint64),
        ("in_ifindex", ct.c_uint32),
        ("out_ifindex", ct.c_uint32),
        ("mtu", ct.c_uint16),
        ("family", ct.c_uint8),
        ("pad", ct.c_uint8),
        ("dmac", ct.c_uint8 * 6),
        ("smac", ct.c_uint8 * 6),
    ]


U32 = ct.c_uint32

# name -> (key type, value type, per-CPU).  Names are the pin names.
MAPS = {
    "lb_config": (U32, LbConfig, False),
    "lb_services": (LbServiceKey, LbService, False),
    "lb_ring": (U32, LbRingWord, False),
    "lb_backends": (U32, LbBackend, False),
    "lb_ct4": (LbFlow4, LbCtEntry, False),
    "lb_ct6": (LbFlow, LbCtEntry, False),
    "lb_nat4": (LbFlow4, LbNatEntry, False),
    "lb_nat6": (LbFlow, LbNatEntry, False),
    "lb_vip_filter": (U32, ct.c_uint64, False),
    "lb_stats": (U32, LbCounter, True),
    "lb_be_stats": (U32, LbCounter, True),
    "lb_port_stats": (U32, LbCounter, True),
    "lb_tx_ports": (U32, U32, False),
    "lb_rr": (U32, U32, True),
    "lb_nexthop": (U32, LbNexthop, True),
    "lb_ct4_cache": (U32, LbCtCacheLine, False),
}

# The connection tables as one table each, keyed by LbFlow of either family
# (maps.FlowTable): the IPv4 map first.
FLOW_TABLES = {"lb_ct": ("lb_ct4", "lb_ct6"), "lb_nat_rev": ("lb_nat4", "lb_nat6")}

# Pin names of maps of older layouts of ours that this one no longer has:
# up to ABI 3, one connection table per direction for both families, keyed
# by LbFlow (the engine migrates their entries, then removes the pins).
LEGACY_MAPS = {"lb_ct": (9, ct.sizeof(LbFlow)), "lb_nat_rev": (9, ct.sizeof(LbFlow))}

# (map type, key size, value size) of our maps in older layouts, where they
# differ from this one's: ABI 2 (lb_config without flow_idle_timeout,
# lb_ct_entry without last_seen) and ABI 3; both had lb_ct and lb_nat_rev;
# up to ABI 5, lb_backend without its service key.  A pinned map of one of these shapes is an upgrade (migrated); one of
# another shape is not ours, and is refused (maps.MapSet.foreign).
OLDER_SHAPES = {
    "lb_ring": [(2, 4, 4)],
    "lb_backends": [(2, 4, 24)],
    "lb_config": [(2, 4, 40)],
    "lb_ct": [(9, 40, 8), (9, 40, 16)],
    "lb_nat_rev": [(9, 40, 40)],
}

# Maps that only cache what the data plane can find again (zeroing them is
# always safe; an instance pinned before they existed lacks them).
CACHE_MAPS = ("lb_nexthop", "lb_ct4_cache")

# Pin names of maps of older layouts that hold nothing to carry over (a
# cache), with their (type, key size, value size): up to ABI 5 the service
# cache lb_svc_cache.  Their presence makes the maps recreated, and the
# engine removes their pins after the swap.
OBSOLETE_MAPS = {"lb_svc_cache": (6, 4, 40)}


def pack_addr(address):
    """'198.18.0.1' or 'fd00::1' -> (Addr, family AF_*)."""
    ip = ipaddress.ip_address(address)
    out = Addr()
    if ip.version == 4:
        out[0] = struct.unpack("=I", ip.packed)[0]
    else:
        for i in range(4):
            out[i] = struct.unpack("=I", ip.packed[i * 4:i * 4 + 4])[0]
    return out, FAMILIES[ip.version]


def unpack_addr(addr, family):
    raw = b"".join(struct.pack("=I", addr[i]) for i in range(4))
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def htons(port):
    return socket.htons(port)


def ntohs(port):
    return socket.ntohs(port)


def ring_words(ring_size):
    """lb_ring values per ring: RING_LANES positions each, the last one padded with zeros."""
    return (ring_size + RING_LANES - 1) // RING_LANES


def ring_index(service_id, slot, position, ring_size):
    """Index into lb_ring of the value that holds a service's ring slot (0/1) at
    ``position`` (lane ``position % RING_LANES`` of it)."""
    return (service_id * 2 + slot) * ring_words(ring_size) + position // RING_LANES


def ring_pack(ring):
    """A ring (backend ids by position) as lb_ring values (LbRingWord)."""
    out = []
    for start in range(0, len(ring), RING_LANES):
        word = LbRingWord()
        for lane, bid in enumerate(ring[start:start + RING_LANES]):
            word.id[lane] = bid
        out.append(word)
    return out


def ring_unpack(words, ring_size):
    """The ring (tuple of backend ids, ``ring_size`` long) held in lb_ring values ``words``."""
    out = []
    for word in words:
        out.extend(word.id)
    return tuple(out[:ring_size])
