# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""state file and lock; the engine's pure helpers (bpffs detection, sources option)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import subprocess
import sys

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, state


def test_save_load_roundtrip_and_mode(tmp_path):
    path = str(tmp_path / "sub" / "web.json")
    assert state.load(path) is None
    state.save(path, {"name": "web", "ids": {"backends": {"a": 1}}})
    data = state.load(path)
    assert data == {"name": "web", "ids": {"backends": {"a": 1}}, "version": state.STATE_VERSION}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert state.instances(str(tmp_path / "sub")) == ["web"]
    assert state.remove(path) is True and state.remove(path) is False


def test_load_rejects_garbage(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(state.StateError, match="not valid JSON"):
        state.load(str(path))
    path.write_text('{"version": 99}')
    with pytest.raises(state.StateError, match="unknown format"):
        state.load(str(path))


def test_lock_is_exclusive(tmp_path):
    with state.Lock(str(tmp_path), "web"):
        fd = os.open(str(tmp_path / "web.lock"), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    # released: another process can take it
    code = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    subprocess.check_call([sys.executable, "-c", code, str(tmp_path / "web.lock")])


def test_check_mode_lock_writes_nothing(tmp_path):
    d = tmp_path / "none"
    with state.Lock(str(d), "web", create=False):
        pass
    assert not d.exists()


MOUNTINFO = """\
22 1 0:21 / / rw,relatime - ext4 /dev/root rw
23 22 0:22 / /sys rw,nosuid - sysfs sysfs rw
24 23 0:23 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700
25 22 0:24 / /tmp/with\\040space rw - tmpfs tmpfs rw
"""


def test_mount_of(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_text(MOUNTINFO)
    assert engine.mount_of("/sys/fs/bpf/xdp_lb/web", str(mi)) == ("/sys/fs/bpf", "bpf")
    assert engine.mount_of("/sys/fs/bpfx", str(mi)) == ("/sys", "sysfs")
    assert engine.mount_of("/var/lib", str(mi)) == ("/", "ext4")
    assert engine.mount_of("/tmp/with space/x", str(mi)) == ("/tmp/with space", "tmpfs")


_real_mount_of = engine.mount_of


def test_check_bpffs_error_says_how_to_mount(tmp_path, monkeypatch):
    mi = tmp_path / "mountinfo"
    mi.write_text(MOUNTINFO.replace("24 23 0:23 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700\n", ""))
    monkeypatch.setattr(engine, "mount_of", lambda path: _real_mount_of(path, str(mi)))
    with pytest.raises(engine.EngineError) as info:
        engine.check_bpffs("/sys/fs/bpf/xdp_lb/web")
    msg = str(info.value)
    assert "bpffs is not mounted at /sys/fs/bpf" in msg
    assert "mount -t bpf bpf /sys/fs/bpf" in msg and "/etc/fstab" in msg


def test_sources_option_is_checked():
    with pytest.raises(engine.EngineError, match="must map exactly"):
        engine.sources_from_option({"xdp_loadbalancer.c": "int x;"})
    out = engine.sources_from_option({"xdp_loadbalancer.c": "int x;", "xdp_lb.h": "/* h */"})
    assert out == {"xdp_loadbalancer.c": b"int x;", "xdp_lb.h": b"/* h */"}


def test_check_bpffs_elsewhere(tmp_path, monkeypatch):
    mi = tmp_path / "mountinfo"
    mi.write_text(MOUNTINFO)
    monkeypatch.setattr(engine, "mount_of", lambda path: _real_mount_of(path, str(mi)))
    engine.check_bpffs("/sys/fs/bpf/xdp_lb/web")          # fine
    with pytest.raises(engine.EngineError, match="pin_dir /var/lib/x is not on bpffs .it is on /, a ext4 mount."):
        engine.check_bpffs("/var/lib/x")


@pytest.mark.parametrize("change,key", [
    ({"ids": "x"}, "ids is 'x', not a mapping"),
    ({"neighbours": "x"}, "neighbours is 'x', not a list"),
    ({"config": "x"}, "config is 'x', not a mapping"),
    ({"neighbours": [["198.18.0.1", 3]]}, "neighbours[0] is ['198.18.0.1', 3], not an [address, interface] pair"),
    ({"ids": {"services": {"tcp/198.18.0.1:80": True}}}, "ids.services['tcp/198.18.0.1:80'] is True, not an integer"),
    ({"config": {"services": [{"vip": "198.18.0.1", "port": "80"}]}}, "config.services[0].port is '80'"),
])
def test_wrong_types_name_file_and_key(tmp_path, change, key):
    path = str(tmp_path / "web.json")
    state.save(path, dict({"config": {}}, **change))
    with pytest.raises(state.StateError) as exc:
        state.load(path)
    assert str(exc.value).startswith("state file %s: %s" % (path, key)), str(exc.value)
