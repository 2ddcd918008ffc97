# -*- coding: utf-8 -*-
"""maps.MapSet.foreign: our maps, older maps of ours, foreign maps (issue 13).

Real maps (bpf_map_create) pinned in the session's private bpffs
(tests/conftest.py); no program, namespace or link.  A pin dir of this
layout, or of the ABI 2 / ABI 3 layout (single lb_ct / lb_nat_rev, older
lb_config), has no foreign map; a map of another type, key size or value
size is named with what differs.
"""
import ctypes as ct
import os
import shutil

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, layout, maps

SIZES = {}


@pytest.fixture
def pin_dir():
    if os.geteuid() != 0:
        pytest.skip("creates BPF maps: run as root")
    path = "/sys/fs/bpf/xlbfm-%d" % os.getpid()
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pin(pin_dir, name, map_type, key_size, value_size, entries=4):
    lib = bpf._libbpf()
    lib.bpf_map_create.restype = ct.c_int
    fd = lib.bpf_map_create(ct.c_int(map_type), name[:15].encode(), ct.c_uint32(key_size),
                            ct.c_uint32(value_size), ct.c_uint32(entries), None)
    assert fd >= 0, "bpf_map_create %s failed" % name
    path = os.path.join(pin_dir, name)
    if os.path.exists(path):
        os.unlink(path)
    try:
        bpf.obj_pin(fd, path)
    finally:
        os.close(fd)


def pin_layout(pin_dir):
    for name, (mtype, key, value, entries) in maps.expected_map_shapes(SIZES).items():
        pin(pin_dir, name, mtype, key, value, 64 if mtype == 14 else 4)   # entries do not matter


def foreign(pin_dir):
    with maps.MapSet(pin_dir) as ms:
        return ms.foreign(SIZES), ms.shape_mismatch(SIZES)


def test_this_layout_is_ours(pin_dir):
    pin_layout(pin_dir)
    bad, mismatch = foreign(pin_dir)
    assert bad == []
    assert "lb_ct4" in mismatch            # 4 entries: a size change, ours


def test_older_layouts_are_ours(pin_dir):
    pin_layout(pin_dir)
    for name in ("lb_ct4", "lb_ct6", "lb_nat4", "lb_nat6", "lb_vip_filter"):
        os.unlink(os.path.join(pin_dir, name))
    pin(pin_dir, "lb_config", 2, 4, 40, 1)          # ABI 2's lb_config
    pin(pin_dir, "lb_ct", 9, 40, 8)                 # ABI 2's lb_ct (ABI 3: 16-byte values)
    pin(pin_dir, "lb_nat_rev", 9, 40, 40)
    bad, mismatch = foreign(pin_dir)
    assert bad == []
    assert {"lb_config", "lb_ct", "lb_nat_rev"} <= set(mismatch)      # an upgrade: recreated
    pin(pin_dir, "lb_ct", 9, 40, 16)
    assert foreign(pin_dir)[0] == []


@pytest.mark.parametrize("name, shape, what", [
    ("lb_ct4", (1, 16, 12), "type 1 (ours: 9), value size 12 (ours: 16)"),
    ("lb_services", (1, 24, 16), "key size 24 (ours: 20)"),
    ("lb_ct", (9, 40, 24), "value size 24 (ours: 8)"),
])
def test_foreign_map_is_named_with_what_differs(pin_dir, name, shape, what):
    pin_layout(pin_dir)
    pin(pin_dir, name, *shape)
    assert foreign(pin_dir)[0] == [(name, what)]


def test_layout_knows_its_older_shapes():
    assert layout.OLDER_SHAPES["lb_ct"] == [(9, ct.sizeof(layout.LbFlow), ct.sizeof(layout.LbCtEntryV2)),
                                            (9, ct.sizeof(layout.LbFlow), ct.sizeof(layout.LbCtEntry))]
