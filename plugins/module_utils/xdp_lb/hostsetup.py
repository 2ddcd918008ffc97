# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files, links, directories and sysctls: compare the host with a manifest, and apply it.

footprint.py builds the manifest from the module's options (what the
balancer needs around it); this file knows only paths and values.
``compare`` lists each difference as one line ("drift") naming the path
or key, ``prepare`` checks everything that will be written, ``commit``
makes the host match, files replaced atomically.

A manifest (every key optional):

- ``directories``: ``{path, mode}``, owned by root;
- ``files``: ``{path, content, mode}``, regular files owned by root; unit
  files (``.service``, ``.timer``, ``.mount``) are checked with
  ``systemd-analyze verify`` before they are installed, when it exists;
- ``links``: ``{path, src}``: symbolic links;
- ``absent``: paths that must not exist (files or links);
- ``sysctl``: ``{key: value}``, live values (sysctl's key syntax: with '.'
  as separator a '/' is a '.' in an interface name);
- ``sysctl_saved_legacy``: where an earlier version kept them (read when
  ``sysctl_saved`` is missing; list it among ``absent`` to move it);
- ``sysctl_saved``: path of a JSON file with the values the keys of
  ``sysctl`` had before they were first set; keys no longer wanted get
  their saved value back.  Must hold exactly the keys of ``sysctl``;
- ``bpffs`` (compare only): bpffs mounted on /sys/fs/bpf;
- ``bpffs_unit``: ``{path, content, mode, link}``, a file and a link
  like the others under systemd older than 239 (fold_bpffs_unit);
- ``engine_dir``: the engine tree (this package, read from the code that
  runs: an AnsiballZ payload or the collection) under this directory, as
  more ``files`` and ``directories`` (fold_engine_tree);

Services (start, stop, enable, disable) are services.py's; packages are
packages.py's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import json
import os
import pkgutil
import re
import shutil
import stat
import tempfile

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import command
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.state import write_atomic

ENGINE_PACKAGE = "ansible_collections.netfleet.xdp_lb.plugins.module_utils"
BPFFS = "/sys/fs/bpf"
SYSTEMD_MOUNTS_BPFFS = 239
UNIT_SUFFIXES = (".service", ".timer", ".mount")


class HostSetupError(Exception):
    pass


# ---- reading ------------------------------------------------------------------

def _lstat(path):
    try:
        return os.lstat(path)
    except OSError:
        return None


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _mode(spec):
    return None if spec.get("mode") is None else int(str(spec["mode"]), 8)


def _owner_mode(path, st, spec):
    out = []
    if st.st_uid != 0 or st.st_gid != 0:
        out.append("%s: owner %d:%d, want root:root" % (path, st.st_uid, st.st_gid))
    mode = _mode(spec)
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        out.append("%s: mode %04o, want %s" % (path, stat.S_IMODE(st.st_mode), spec["mode"]))
    return out


def _present_as(path, is_kind, kind):
    """(lstat result or None, drift lines) of a path that must be a ``kind``."""
    st = _lstat(path)
    if st is None:
        return None, ["%s: missing" % path]
    if not is_kind(st.st_mode):
        return None, ["%s: not a %s" % (path, kind)]
    return st, []


def compare_file(spec):
    st, out = _present_as(spec["path"], stat.S_ISREG, "regular file")
    if st is None:
        return out
    out = _owner_mode(spec["path"], st, spec)
    if _read(spec["path"]) != spec["content"].encode("utf-8"):
        out.append("%s: content differs" % spec["path"])
    return out


def compare_directory(spec):
    st, out = _present_as(spec["path"], stat.S_ISDIR, "directory")
    return out if st is None else _owner_mode(spec["path"], st, spec)


def compare_link(spec):
    path = spec["path"]
    try:
        target = os.readlink(path)
    except OSError:
        return ["%s: not a link" % path]
    if target != spec["src"]:
        return ["%s: points at %s, want %s" % (path, target, spec["src"])]
    return []


def compare_absent(path):
    return [] if _lstat(path) is None else ["%s: present, want absent" % path]


def sysctl_path(key):
    """/proc/sys path of a sysctl key."""
    return "/proc/sys/" + key.translate(str.maketrans("./", "/."))


def read_sysctl(key):
    """The live value, None when the key does not exist."""
    try:
        with open(sysctl_path(key)) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def read_saved(path):
    """The saved sysctl values ({} without a file)."""
    if _lstat(path) is None:
        return {}
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except (IOError, OSError, ValueError) as exc:
        raise HostSetupError("%s: unreadable saved sysctl values (%s)" % (path, exc))
    if not isinstance(saved, dict):
        raise HostSetupError("%s: saved sysctl values are not a JSON object" % path)
    return dict((str(k), str(v)) for k, v in saved.items())


def compare_sysctl(values, saved_path):
    out = []
    for key in sorted(values):
        live = read_sysctl(key)
        if live is None:
            out.append("sysctl %s: no such key" % key)
        elif live != str(values[key]):
            out.append("sysctl %s: %s, want %s" % (key, live, values[key]))
    if saved_path is None:
        return out
    if not values:
        return out + compare_absent(saved_path)
    st = _lstat(saved_path)
    if st is None:
        return out + ["%s: missing" % saved_path]
    out += _owner_mode(saved_path, st, {"mode": "0600"})
    try:
        saved = sorted(read_saved(saved_path))
    except HostSetupError as exc:
        return out + [str(exc)]
    if saved != sorted(values):
        out.append("%s: saved keys %s, want %s" % (saved_path, ", ".join(saved), ", ".join(sorted(values))))
    return out


def bpffs_mounted(mountinfo="/proc/self/mountinfo"):
    """As findmnt --types bpf --mountpoint /sys/fs/bpf."""
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split(" - ", 1)
            if len(fields) == 2 and fields[0].split()[4] == BPFFS and fields[1].split()[0] == "bpf":
                return True
    return False


# /etc/os-release ID -> distribution as Ansible's facts name it, and the
# ID or ID_LIKE values of each OS family.
DISTRIBUTIONS = {
    "debian": "Debian", "ubuntu": "Ubuntu", "linuxmint": "Linux Mint", "raspbian": "Debian",
    "fedora": "Fedora", "rhel": "RedHat", "centos": "CentOS", "rocky": "Rocky",
    "almalinux": "AlmaLinux", "ol": "OracleLinux", "amzn": "Amazon",
    "opensuse-leap": "openSUSE Leap", "opensuse-tumbleweed": "openSUSE Tumbleweed", "sles": "SLES",
    "arch": "Archlinux", "alpine": "Alpine",
}
FAMILIES = (
    ("Debian", ("debian", "ubuntu")),
    ("RedHat", ("rhel", "fedora", "centos")),
    ("Suse", ("suse", "opensuse", "sles")),
    ("Archlinux", ("arch",)),
    ("Alpine", ("alpine",)),
)
PACKAGE_MANAGERS = (
    ("apt", "/usr/bin/apt-get"), ("dnf5", "/usr/bin/dnf5"), ("dnf", "/usr/bin/dnf"), ("yum", "/usr/bin/yum"),
    ("zypper", "/usr/bin/zypper"), ("pacman", "/usr/bin/pacman"), ("apk", "/sbin/apk"),
)


def read_os_release(path="/etc/os-release"):
    out = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    out[key] = value.strip().strip('"').strip("'")
    except (IOError, OSError):
        pass
    return out


def host_os(os_release="/etc/os-release", root="/"):
    """What the role needs to know of the host: ``distribution`` and
    ``family`` (named as Ansible's facts name them: Debian, RedHat, ...),
    ``pkg_mgr`` (apt, dnf5, dnf, yum, ...; "unknown") and ``service_mgr``
    ("systemd" when systemd runs, else PID 1's name).  Read from
    /etc/os-release, the package managers' paths and /run/systemd/system;
    cheaper than Ansible's fact collectors, which a module would ship and
    compile on every run."""
    rel = read_os_release(os_release)
    ident = rel.get("ID", "").lower()
    like = rel.get("ID_LIKE", "").lower().split()
    distribution = DISTRIBUTIONS.get(ident, rel.get("NAME", "") or "unknown")
    family = distribution
    for name, members in FAMILIES:
        if ident in members or any(value in members for value in like):
            family = name
            break
    pkg_mgr = next((name for name, path in PACKAGE_MANAGERS
                    if os.path.exists(os.path.join(root, path.lstrip("/")))), "unknown")
    if os.path.isdir(os.path.join(root, "run/systemd/system")):
        service_mgr = "systemd"
    else:
        try:
            with open(os.path.join(root, "proc/1/comm")) as handle:
                service_mgr = handle.read().strip() or "unknown"
        except (IOError, OSError):
            service_mgr = "unknown"
    return {"distribution": distribution, "family": family, "pkg_mgr": pkg_mgr, "service_mgr": service_mgr}


def systemd_version():
    """systemd's version number, 0 when systemctl does not run."""
    try:
        dummy, out, dummy = command.run(["systemctl", "--version"], check=False)
    except command.CommandError:
        return 0
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


def fold_bpffs_unit(manifest):
    """The manifest with ``bpffs_unit`` among its files and links when
    systemd is older than 239 (newer systemd mounts bpffs itself and
    refuses such a unit), and the systemd version it found (None when
    there is no ``bpffs_unit``)."""
    unit = manifest.get("bpffs_unit")
    if not unit:
        return manifest, None
    version = systemd_version()
    if version >= SYSTEMD_MOUNTS_BPFFS:
        return manifest, version
    out = dict(manifest)
    what = unit.get("what")
    out["files"] = list(manifest.get("files") or []) + [
        {"path": unit["path"], "content": unit["content"], "mode": unit.get("mode"), "what": what}]
    out["links"] = list(manifest.get("links") or []) + [{"path": unit["link"], "src": unit["path"],
                                                         "what": what and what + " (enabled)"}]
    return out, version


def _shipped_with_the_module():
    """Never called.  AnsiballZ ships the module_utils that a module's code
    imports, anywhere in it; these imports make it ship cli and what only the
    commands use (health, metrics) and backend, so that engine_sources() finds the whole
    engine in the payload without running them."""
    from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import cli  # pylint: disable=unused-import
    # The xdp_lb_backend module's engine: part of the tree too.
    from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import backend  # pylint: disable=unused-import


def engine_sources():
    """{path relative to plugins/module_utils: source text} of every module
    of the engine, read from the code this process runs (in a module run,
    the AnsiballZ payload: the installed tree is the engine that configured
    the balancer)."""
    names = [ENGINE_PACKAGE, ENGINE_PACKAGE + ".xdp_lb"]
    package = importlib.util.find_spec(names[1])
    names += sorted(names[1] + "." + info.name
                    for info in pkgutil.iter_modules(package.submodule_search_locations) if not info.ispkg)
    out = {}
    depth = len(ENGINE_PACKAGE.split("."))
    for name in names:
        spec = importlib.util.find_spec(name)
        source = spec.loader.get_source(name) if spec is not None else None
        if source is None:
            raise HostSetupError("engine tree: no source of %s to install" % name)
        parts = name.split(".")[depth:]
        if spec.submodule_search_locations is not None:
            parts.append("__init__")
        out["/".join(parts) + ".py"] = source
    return out


def fold_engine_tree(manifest):
    """The manifest with the engine tree under ``engine_dir`` among its
    directories (0755) and files (0644)."""
    root = manifest.get("engine_dir")
    if not root:
        return manifest
    base = os.path.join(root, *ENGINE_PACKAGE.split(".")[:-1]) + "/module_utils"
    sources = engine_sources()
    out = dict(manifest)
    out["directories"] = list(manifest.get("directories") or []) + [
        {"path": path, "mode": "0755"} for path in sorted(set(
            os.path.dirname(os.path.join(base, rel)) for rel in sources))]
    out["files"] = list(manifest.get("files") or []) + [
        {"path": os.path.join(base, rel), "content": sources[rel], "mode": "0644", "what": "engine"}
        for rel in sorted(sources)]
    # What an older engine left that this one no longer has (a module that
    # was renamed or removed, bytecode caches): removed.
    stale = stale_engine_paths(base, sources)
    out["absent"] = list(manifest.get("absent") or []) + stale
    if "what" in manifest:
        out["what"] = dict(manifest["what"], **dict((path, "engine leftover") for path in stale))
    return out


def stale_engine_paths(base, sources):
    """Paths under the installed engine tree ``base`` that are not part of
    ``sources`` (nothing when the tree is not there)."""
    out = []
    for top, dirs, files in os.walk(base):
        rel_top = os.path.relpath(top, base)
        for name in sorted(dirs):
            if name == "__pycache__":
                out.append(os.path.join(top, name))
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_top, name))
            if rel not in sources:
                out.append(os.path.join(top, name))
    return out


def compare(manifest):
    """Returns a dict: ``drift`` (one line per difference, empty when the
    host matches), ``files`` (the file specs that differ) and
    ``bpffs_mounted``."""
    drift = []
    for spec in manifest.get("directories") or []:
        drift += compare_directory(spec)
    files = []
    for spec in manifest.get("files") or []:
        lines = compare_file(spec)
        if lines:
            files.append(spec)
            drift += lines
    for spec in manifest.get("links") or []:
        drift += compare_link(spec)
    for path in manifest.get("absent") or []:
        drift += compare_absent(path)
    drift += compare_sysctl(manifest.get("sysctl") or {}, manifest.get("sysctl_saved"))

    mounted = bpffs_mounted()
    if manifest.get("bpffs") and not mounted:
        drift.append("%s: bpffs not mounted" % BPFFS)

    return {
        "drift": drift,
        "files": files,
        "bpffs_mounted": mounted,
    }


# ---- writing --------------------------------------------------------------------

def verify_unit(name, content):
    """systemd-analyze verify of a unit before it is installed (a copy
    under its own name in a temporary directory).  Raises on failure;
    does nothing where systemd-analyze is missing."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return
    tmp = tempfile.mkdtemp(prefix="netfleet-xdp-lb-unit.")
    try:
        path = os.path.join(tmp, name)
        with open(path, "w") as handle:
            handle.write(content)
        rc, out, err = command.run([analyze, "verify", path], check=False)
        if rc != 0:
            raise HostSetupError("systemd-analyze verify %s failed: %s" % (name, (err or out).strip()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure_directory(path, mode):
    if not os.path.isdir(path):
        parent = os.path.dirname(path.rstrip("/"))
        if parent and not os.path.isdir(parent):
            _ensure_directory(parent, 0o755)
        os.mkdir(path, mode)
    # owner and mode of the directory itself, never of what a link points at
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise HostSetupError("%s: %s (a symbolic link? root does not chown or chmod through one)"
                             % (path, exc.strerror))
    try:
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _make_parent(path):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        _ensure_directory(parent, 0o755)


def sysctl_plan(values, saved_path, legacy_path=None):
    """(saved values to keep, {key: value} to write) for the wanted
    ``values``; raises when a wanted key does not exist on the host.
    Without a file at ``saved_path``, the saved values are read from
    ``legacy_path`` (where an earlier version kept them)."""
    saved_old = read_saved(saved_path) if saved_path else {}
    if saved_path and not saved_old and _lstat(saved_path) is None and legacy_path:
        saved_old = read_saved(legacy_path)
    current = {}
    for key in set(values) | set(saved_old):
        live = read_sysctl(key)
        if live is not None:
            current[key] = live
    missing = sorted(key for key in values if key not in current)
    if missing:
        raise HostSetupError("sysctl: no such key on this host: %s" % ", ".join(missing))
    # The oldest known value of every key the mode needs.
    saved_new = dict((key, saved_old.get(key, current[key])) for key in values)
    # Keys no longer needed go back to their saved value (if they still exist).
    target = dict((key, value) for key, value in saved_old.items() if key not in values and key in current)
    target.update((key, str(value)) for key, value in values.items())
    return saved_new, dict((key, value) for key, value in target.items() if current.get(key) != value)


def mount_bpffs():
    """mount -t bpf at /sys/fs/bpf, with the options systemd uses."""
    command.run(["mount", "-t", "bpf", "-o", "rw,nosuid,nodev,noexec,relatime,mode=700", "bpf", BPFFS])


def prepare(manifest, found):
    """Everything commit() will do, checked before anything is written:
    unit files verified, sysctl keys present, saved values readable.
    ``found`` is compare()'s result.  Raises HostSetupError; returns the
    plan for commit()."""
    saved_new, sysctl_writes = sysctl_plan(manifest.get("sysctl") or {}, manifest.get("sysctl_saved"),
                                           manifest.get("sysctl_saved_legacy"))
    files = found["files"]
    for spec in files:
        if spec["path"].endswith(UNIT_SUFFIXES):
            verify_unit(os.path.basename(spec["path"]), spec["content"])
    return {"files": files, "saved": saved_new, "sysctl": sysctl_writes}


def remove_absent(manifest):
    """Removes the manifest's absent paths; returns those it removed."""
    changed = []
    for path in manifest.get("absent") or []:
        st = _lstat(path)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            changed.append(path)
    return changed


def commit(manifest, plan):
    """Makes the host match the manifest's directories, files, links,
    absent paths and sysctls, as prepare() planned.  Returns the paths and
    sysctls (``sysctl key=value``) it changed."""
    changed = []
    for spec in manifest.get("directories") or []:
        if compare_directory(spec):
            _ensure_directory(spec["path"], _mode(spec) or 0o755)
            changed.append(spec["path"])
    for spec in plan["files"]:
        _make_parent(spec["path"])
        write_atomic(spec["path"], spec["content"], _mode(spec) or 0o644)
        changed.append(spec["path"])
    for spec in manifest.get("links") or []:
        if compare_link(spec):
            _make_parent(spec["path"])
            if _lstat(spec["path"]) is not None:
                os.unlink(spec["path"])
            os.symlink(spec["src"], spec["path"])
            changed.append(spec["path"])
    changed += remove_absent(manifest)

    saved_path = manifest.get("sysctl_saved")
    if saved_path:
        if plan["saved"]:
            text = json.dumps(plan["saved"], indent=4, sort_keys=True) + "\n"
            if compare_file({"path": saved_path, "content": text, "mode": "0600"}):
                _make_parent(saved_path)
                write_atomic(saved_path, text, 0o600)
                changed.append(saved_path)
        elif _lstat(saved_path) is not None:
            os.unlink(saved_path)
            changed.append(saved_path)
    for key in sorted(plan["sysctl"]):
        with open(sysctl_path(key), "w") as handle:
            handle.write(plan["sysctl"][key])
        changed.append("sysctl %s=%s" % (key, plan["sysctl"][key]))
    return changed


def apply(manifest):
    """compare(), prepare() then commit(): bad input changes nothing."""
    return commit(manifest, prepare(manifest, compare(manifest)))
