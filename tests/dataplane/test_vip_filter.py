"""The VIP filter (lb_vip_filter): packets to an address that is no VIP pass
before any conntrack or service lookup; the filter is consulted first.

- The engine's bit (flowhash.vip_filter_bit) is the program's: for random
  IPv4 and IPv6 VIPs, a service whose VIP bit is set (from Python) is
  forwarded, and the same service with the bit clear is passed, conntrack
  entry or not.
- An address that shares a VIP's bit is only a "maybe": it goes on to the
  full path, which passes it (not a service).
"""
import ctypes as ct
import random

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import flowhash, layout, maps

import dplab as L
from dpframes import client_frame

BITS = layout.DEFAULT_SIZES["XDP_LB_VIP_FILTER_BITS"]
ADDRESSES = 64


def _address(rng, family):
    if family == 4:
        return "198.%d.%d.%d" % (rng.choice((18, 19)), rng.randrange(0, 256), rng.randrange(1, 255))
    return "fd00:%x::%x:%x" % (rng.randrange(0, 0x10000), rng.randrange(0, 0x10000),
                               rng.randrange(1, 0x10000))


def _clear_filter(lab):
    words = BITS // 64
    lab.maps["lb_vip_filter"].update_batch([layout.U32(i) for i in range(words)],
                                           [ct.c_uint64(0)] * words)


@pytest.mark.parametrize("family", [4, 6])
def test_engine_bit_is_the_programs(lab, family):
    rng = random.Random("vip-filter/%d" % family)
    lab.configure(layout.MODE_NAT)
    backend = (L.BACKENDS4 if family == 4 else L.BACKENDS6)[0]
    lab.set_backend(1, backend, 0)
    lab.fill_ring(0, [1])
    client = L.CLIENT4 if family == 4 else L.CLIENT6
    for n in range(ADDRESSES):
        vip = _address(rng, family)
        key = lab.add_service(vip, 80, "tcp", 0)          # sets the bit flowhash computes
        try:
            first = client_frame(client, vip, "tcp", 20000 + n, 80)
            assert lab.run(first)[0] == L.XDP_REDIRECT, vip
            assert lab.ct_entry(L.flow_key(client, vip, 20000 + n, 80, "tcp")) is not None
            # the bit cleared: passed, although the service and the flow's entry exist
            _clear_filter(lab)
            passed = lab.stats()["pass"]
            assert lab.run(first)[0] == L.XDP_PASS, vip
            assert lab.stats()["pass"] == passed + 1
        finally:
            lab.maps["lb_services"].delete(key)


def test_address_sharing_a_vips_bit_takes_the_full_path(lab):
    lab.configure(layout.MODE_NAT)
    vip, dummy = L.setup_service(lab, 4, "tcp")
    bit = flowhash.vip_filter_bit(vip, BITS)
    rng = random.Random("vip-filter/collision")
    other = None
    while other is None:                    # 1 in 65536 addresses shares it
        cand = _address(rng, 4)
        if cand != vip and flowhash.vip_filter_bit(cand, BITS) == bit:
            other = cand
    assert lab.run(client_frame(L.CLIENT4, other, "tcp", 21000, 80))[0] == L.XDP_PASS
    assert lab.ct_entry(L.flow_key(L.CLIENT4, other, 21000, 80, "tcp")) is None
    assert lab.run(client_frame(L.CLIENT4, vip, "tcp", 21000, 80))[0] == L.XDP_REDIRECT


def test_filter_words_of_the_vips():
    words = maps.vip_filter_words(["198.18.0.10", "198.18.0.10", "fd00:18::10"])
    assert sum(bin(w).count("1") for w in words.values()) == 2
    for vip in ("198.18.0.10", "fd00:18::10"):
        bit = flowhash.vip_filter_bit(vip, BITS)
        assert words[bit // 64] >> (bit % 64) & 1
