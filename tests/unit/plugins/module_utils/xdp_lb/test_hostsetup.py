# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""hostsetup: the role's one-run comparison of a host with its manifest
(real files in a temporary directory, the real /proc/sys and mountinfo)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import hostsetup, packages

ROOT = os.getuid() == 0


@pytest.fixture
def tree(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\n")
    unit.chmod(0o644)
    (tmp_path / "wants").mkdir(mode=0o755)
    os.chmod(str(tmp_path / "wants"), 0o755)
    os.symlink(str(unit), str(tmp_path / "wants" / "x.service"))
    return tmp_path


def manifest(tree, **extra):
    out = {
        "files": [{"path": str(tree / "x.service"), "content": "[Unit]\n", "mode": "0644"}],
        "directories": [{"path": str(tree / "wants"), "mode": "0755"}],
        "links": [{"path": str(tree / "wants" / "x.service"), "src": str(tree / "x.service")}],
        "absent": [str(tree / "gone")],
    }
    out.update(extra)
    return out


@pytest.mark.skipif(not ROOT, reason="files must be owned by root")
def test_in_sync(tree):
    assert hostsetup.compare(manifest(tree))["drift"] == []


@pytest.mark.skipif(not ROOT, reason="files must be owned by root")
def test_each_difference_is_one_named_line(tree):
    (tree / "x.service").write_text("[Unit]\nchanged\n")
    (tree / "x.service").chmod(0o600)
    os.unlink(str(tree / "wants" / "x.service"))
    os.symlink("/elsewhere", str(tree / "wants" / "x.service"))
    (tree / "gone").write_text("")
    drift = hostsetup.compare(manifest(tree))["drift"]
    assert drift == [
        "%s: mode 0600, want 0644" % (tree / "x.service"),
        "%s: content differs" % (tree / "x.service"),
        "%s: points at /elsewhere, want %s" % (tree / "wants" / "x.service", tree / "x.service"),
        "%s: present, want absent" % (tree / "gone"),
    ]


def test_missing_and_wrong_kind(tree):
    m = {"files": [{"path": str(tree / "nope"), "content": ""},
                   {"path": str(tree / "wants"), "content": ""}],
         "directories": [{"path": str(tree / "x.service")}],
         "links": [{"path": str(tree / "x.service"), "src": "/x"}]}
    assert hostsetup.compare(m)["drift"] == [
        "%s: not a directory" % (tree / "x.service"),
        "%s: missing" % (tree / "nope"),
        "%s: not a regular file" % (tree / "wants"),
        "%s: not a link" % (tree / "x.service"),
    ]


def test_sysctl_live_values():
    with open("/proc/sys/net/ipv4/ip_forward") as handle:
        live = handle.read().strip()
    other = "0" if live == "1" else "1"
    assert hostsetup.compare_sysctl({"net.ipv4.ip_forward": live}, None) == []
    assert hostsetup.compare_sysctl({"net.ipv4.ip_forward": other}, None) == [
        "sysctl net.ipv4.ip_forward: %s, want %s" % (live, other)]
    assert hostsetup.compare_sysctl({"net.ipv4.no_such_key": "1"}, None) == [
        "sysctl net.ipv4.no_such_key: no such key"]


def test_sysctl_key_with_an_interface_name_holding_a_dot():
    assert hostsetup.sysctl_path("net.ipv4.conf.eth0/100.rp_filter") == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
    assert hostsetup.sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"


@pytest.mark.skipif(not ROOT, reason="files must be owned by root")
def test_sysctl_saved_keys(tmp_path):
    live = hostsetup.read_sysctl("net.ipv4.ip_forward")
    saved = tmp_path / "saved.json"
    want = {"net.ipv4.ip_forward": live}
    assert hostsetup.compare_sysctl(want, str(saved)) == ["%s: missing" % saved]
    saved.write_text(json.dumps({"net.ipv4.ip_forward": "0"}))
    saved.chmod(0o600)
    assert hostsetup.compare_sysctl(want, str(saved)) == []
    saved.write_text(json.dumps({"net.ipv4.ip_forward": "1", "c": "0"}))
    assert hostsetup.compare_sysctl(want, str(saved)) == [
        "%s: saved keys c, net.ipv4.ip_forward, want net.ipv4.ip_forward" % saved]
    saved.write_text("{not json")
    assert hostsetup.compare_sysctl(want, str(saved))[0].startswith("%s: unreadable" % saved)
    # No keys: the file must be gone.
    assert hostsetup.compare_sysctl({}, str(saved)) == ["%s: present, want absent" % saved]


def test_sysctl_plan_keeps_the_oldest_value_and_restores_keys_no_longer_wanted(tmp_path, monkeypatch):
    live = {"a.b": "1", "a.c": "5", "a.d": "7"}
    monkeypatch.setattr(hostsetup, "read_sysctl", live.get)
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"a.b": "0", "a.d": "3"}))
    keep, writes = hostsetup.sysctl_plan({"a.b": "1", "a.c": "6"}, str(saved))
    assert keep == {"a.b": "0", "a.c": "5"}          # a.b saved before; a.c live now
    assert writes == {"a.c": "6", "a.d": "3"}         # a.b already 1; a.d back to its saved value
    with pytest.raises(hostsetup.HostSetupError, match="sysctl: no such key on this host: x.y"):
        hostsetup.sysctl_plan({"x.y": "1"}, str(saved))


@pytest.mark.skipif(not ROOT, reason="files must be owned by root")
def test_apply_makes_the_host_match_and_is_then_in_sync(tree):
    unit = tree / "etc" / "y.timer"
    m = manifest(tree,
                 files=[{"path": str(unit), "content": "[Timer]\nOnBootSec=1s\n[Install]\nWantedBy=timers.target\n",
                         "mode": "0640"}],
                 directories=[{"path": str(tree / "state"), "mode": "0700"}],
                 links=[{"path": str(tree / "wants" / "y.timer"), "src": str(unit)}])
    (tree / "gone").write_text("")
    (tree / "wants" / "y.timer").write_text("a file where the link goes")
    before = hostsetup.compare(m)["drift"]
    assert len(before) == 4
    changed = hostsetup.apply(m)
    assert sorted(changed) == sorted([str(tree / "state"), str(unit), str(tree / "wants" / "y.timer"),
                                      str(tree / "gone")])
    assert hostsetup.compare(m)["drift"] == []
    assert oct(os.stat(str(unit)).st_mode & 0o777) == "0o640"
    assert os.readlink(str(tree / "wants" / "y.timer")) == str(unit)
    assert hostsetup.apply(m) == []


@pytest.mark.skipif(not ROOT, reason="files must be owned by root")
def test_apply_checks_everything_before_it_writes(tree):
    m = manifest(tree, files=[{"path": str(tree / "new.service"), "content": "[Unit]\n"}],
                 sysctl={"net.ipv4.no_such_key": "1"}, sysctl_saved=str(tree / "saved.json"))
    with pytest.raises(hostsetup.HostSetupError, match="no_such_key"):
        hostsetup.apply(m)
    assert not (tree / "new.service").exists()


@pytest.mark.skipif(not ROOT or not shutil.which("systemd-analyze"), reason="needs root and systemd-analyze")
def test_apply_refuses_a_unit_systemd_analyze_rejects(tree):
    bad = tree / "bad.service"
    m = {"files": [{"path": str(bad), "content": "[Service]\nExecStart=relative/path\n"}]}
    with pytest.raises(hostsetup.HostSetupError, match="systemd-analyze verify bad.service failed"):
        hostsetup.apply(m)
    assert not bad.exists()


def test_packages_from_a_query_program(tmp_path, monkeypatch):
    # A query program that reports 'a' and 'c' installed, whatever it is asked.
    query = tmp_path / "query"
    query.write_text("#!/bin/sh\nprintf 'ii a\\nun b\\nii c\\n'\n")
    query.chmod(0o755)
    monkeypatch.setitem(packages.QUERY, "xlbut", [str(query)])
    assert packages.missing(["a", "b", "d"], "xlbut") == ["b", "d"]
    # A query that cannot run, or no query: everything missing.
    monkeypatch.setitem(packages.QUERY, "xlbut", [str(tmp_path / "no-such-program")])
    assert packages.missing(["a"], "xlbut") == ["a"]
    assert packages.missing(["a"], "unknown") == ["a"]


def test_package_list_by_os():
    debian = {"distribution": "Ubuntu", "family": "Debian"}
    assert packages.package_list({"names": None, "extra": ["x", "clang"]}, debian) == packages.BY_OS["Debian"] + ["x"]
    assert packages.package_list({"names": ["a"], "extra": []}, debian) == ["a"]
    with pytest.raises(packages.PackageError, match="no package list for NixOS"):
        packages.package_list({"names": None, "extra": []}, {"distribution": "NixOS", "family": "NixOS"})


def test_bpffs_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("36 25 0:30 / /sys/fs/bpf rw,nosuid shared:9 - bpf bpf rw,mode=700\n")
    assert hostsetup.bpffs_mounted(str(info))
    info.write_text("36 25 0:30 / /sys/fs/bpf rw,nosuid shared:9 - tmpfs tmpfs rw\n"
                    "37 25 0:31 / /sys/fs/bpf/x rw - bpf bpf rw\n")
    assert not hostsetup.bpffs_mounted(str(info))


@pytest.mark.parametrize("release, distribution, family", [
    ('ID=debian\nVERSION_ID="12"\n', "Debian", "Debian"),
    ('ID=ubuntu\nID_LIKE=debian\n', "Ubuntu", "Debian"),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "Rocky", "RedHat"),
    ('ID=fedora\n', "Fedora", "RedHat"),
    ('ID=pop\nID_LIKE="ubuntu debian"\nNAME="Pop!_OS"\n', "Pop!_OS", "Debian"),
    ('ID=nixos\nNAME=NixOS\n', "NixOS", "NixOS"),
])
def test_host_os(tmp_path, release, distribution, family):
    (tmp_path / "os-release").write_text(release)
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "dnf").write_text("")
    (root / "run" / "systemd" / "system").mkdir(parents=True)
    got = hostsetup.host_os(os_release=str(tmp_path / "os-release"), root=str(root))
    assert got == {"distribution": distribution, "family": family, "pkg_mgr": "dnf", "service_mgr": "systemd"}


def test_host_os_without_systemd_or_package_manager(tmp_path):
    root = tmp_path / "root"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "1" / "comm").write_text("init\n")
    got = hostsetup.host_os(os_release=str(tmp_path / "none"), root=str(root))
    assert got == {"distribution": "unknown", "family": "unknown", "pkg_mgr": "unknown", "service_mgr": "init"}


def test_engine_sources_are_the_whole_module_utils_tree():
    here = os.path.dirname(os.path.abspath(hostsetup.__file__))
    root = os.path.dirname(here)
    want = dict((os.path.relpath(os.path.join(d, name), root), None)
                for d in (root, here) for name in os.listdir(d) if name.endswith(".py"))
    got = hostsetup.engine_sources()
    assert sorted(got) == sorted(want)
    for rel, text in got.items():
        with open(os.path.join(root, rel)) as handle:
            assert handle.read() == text, rel


def test_engine_tree_folds_into_files_and_directories(tmp_path):
    manifest = hostsetup.fold_engine_tree({"engine_dir": str(tmp_path / "engine"), "files": [{"path": "/x", "content": ""}]})
    base = str(tmp_path / "engine" / "ansible_collections" / "netfleet" / "xdp_lb" / "plugins" / "module_utils")
    assert manifest["directories"] == [{"path": base, "mode": "0755"}, {"path": base + "/xdp_lb", "mode": "0755"}]
    paths = [spec["path"] for spec in manifest["files"]]
    assert paths[0] == "/x" and base + "/__init__.py" in paths and base + "/xdp_lb/engine.py" in paths
    assert all(spec["mode"] == "0644" for spec in manifest["files"][1:])
    assert hostsetup.fold_engine_tree({"files": []}) == {"files": []}


def test_engine_leftovers_are_removed(tmp_path):
    """What an older engine left (a module it no longer has, bytecode) is
    among the absent paths, named "engine leftover"."""
    base = tmp_path / "engine" / "ansible_collections" / "netfleet" / "xdp_lb" / "plugins" / "module_utils"
    (base / "xdp_lb" / "__pycache__").mkdir(parents=True)
    (base / "xdp_lb" / "oldmodule.py").write_text("")
    (base / "xdp_lb" / "engine.py").write_text("")
    manifest = hostsetup.fold_engine_tree({"engine_dir": str(tmp_path / "engine"), "what": {}})
    assert manifest["absent"] == [str(base / "xdp_lb" / "__pycache__"), str(base / "xdp_lb" / "oldmodule.py")]
    assert manifest["what"][str(base / "xdp_lb" / "oldmodule.py")] == "engine leftover"
