# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data plane's flow hashes in Python (files/xdp_loadbalancer.c, "hashing").

The one copy the engine (``xdp-lb explain``) and the data-plane tests use:
which ring slot a new flow takes (hash_flow with SEED_FLOW, or hash_ip_pair
for ip_hash), which NAT source port it tries first (SEED_PORT), which redirect port it
leaves by, which bit of lb_vip_filter stands for a VIP (vip_filter_bit), and
which line of lb_ct4_cache holds an IPv4 flow (ct_cache_hash).  tests/dataplane/test_flowhash.py proves it
equal to the C code on thousands of random flows through BPF_PROG_TEST_RUN
(ct_cache_hash: tests/dataplane/test_ct_cache.py, on hundreds).
Addresses are words as the program loads them: the 16 bytes of
struct lb_flow's src/dst (IPv4 in the first 4) read as little-endian u32.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import struct

M32 = 0xFFFFFFFF
SEED_FLOW, SEED_ADDR, SEED_PORT = 0x2C1B3C6D, 0x297A2D39, 0x51ED270B
SEED_VIP = 0x3C6EF372
SEED_CT = 0xBB67AE85


def _rol(w, s):
    return ((w << s) | (w >> (32 - s))) & M32


def _word(h, w):
    w = _rol((w * 0x9E3779B1) & M32, 15)
    h = _rol(h ^ w, 13)
    return (h * 5 + 0xE6546B64) & M32


def _final(h):
    h ^= h >> 16
    h = (h * 0x7FEB352D) & M32
    h ^= h >> 15
    h = (h * 0x846CA68B) & M32
    return h ^ (h >> 16)


def _words(packed):
    """16 address bytes as the four little-endian words the program loads."""
    return struct.unpack("<4I", packed)


def _addr16(address):
    ip = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    return ip + b"\0" * (16 - len(ip))


def _hash_addrs(src, dst, h):
    s, d = _words(_addr16(src)), _words(_addr16(dst))
    h = _word(_word(h, s[0]), d[0])
    if ":" in src:
        for w in s[1:] + d[1:]:
            h = _word(h, w)
    return h


def hash_ip_pair(src, dst):
    """ip_hash: client and VIP addresses only."""
    return _final(_hash_addrs(src, dst, SEED_ADDR))


def hash_flow(src, dst, sport, dport, proto, seed=SEED_FLOW):
    """The 5-tuple hash (ports in host order, proto a number)."""
    h = _hash_addrs(src, dst, seed)
    h = _word(h, struct.unpack("<I", struct.pack("!HH", sport, dport))[0])
    return _final(_word(h, proto))


def vip_filter_bit(address, bits):
    """The lb_vip_filter bit of destination ``address`` (``bits``: XDP_LB_VIP_FILTER_BITS)."""
    w = _words(_addr16(address))
    h = w[0]
    if ":" in address:
        for x in w[1:]:
            h = _word(h, x)
    return _final(h ^ SEED_VIP) & (bits - 1)


def ct_cache_hash(key):
    """The lb_ct4_cache hash of a layout.LbFlow4 (fields as the map holds
    them: ports in network order): its line is this % XDP_LB_CT_CACHE_LINES."""
    h = _word(_word(SEED_CT, key.src), key.dst)
    h = _word(h, key.sport | (key.dport << 16))
    return _final(_word(h, key.proto))
