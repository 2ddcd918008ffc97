# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-instance state file and the run lock.

``<state_dir>/<name>.json`` records what was applied: the validated
config, the build (hash, object, source dir), the program id, the stable
service/backend ids, per service the digests of its ring's inputs and of
the ring (``maps.service_rings``: a rerun with the same inputs takes the
live ring instead of building it), the resolved NAT source addresses and
the managed neighbour entries.  It is enough to restore the instance after
a reboot (``engine.restore``) and lets a rerun compare instead of rewrite.

``<state_dir>/<name>.lock`` serialises concurrent runs (fcntl.flock).
It is opened with O_NOFOLLOW (a planted link is refused, never followed)
and goes with the instance: ``Lock(remove=True)`` (state absent) unlinks
it while holding it; a run that waited on the removed file takes the new
one instead.  State files are read only when they are regular files of
root's that group and others cannot write (trust.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import json
import os
import stat

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import trust

STATE_VERSION = 1


class StateError(Exception):
    pass


def state_path(state_dir, name):
    return os.path.join(state_dir, "%s.json" % name)


def lock_path(state_dir, name):
    return os.path.join(state_dir, "%s.lock" % name)


def load(path):
    """The state dict, or None if there is no state file."""
    try:
        with _open_state(path) as f:
            data = json.load(f)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise StateError("cannot read state file %s: %s" % (path, exc))
    except ValueError as exc:
        raise StateError("state file %s is not valid JSON (%s); remove it and run again" % (path, exc))
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateError("state file %s has an unknown format (version %r)"
                         % (path, data.get("version") if isinstance(data, dict) else None))
    check_shape(data, path)
    return data


def _open_state(path):
    """The state file for reading: not through a link, root's, not writable by others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError("state file %s is a symbolic link: root reads only the state files it "
                             "wrote; remove it and run again" % path)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in trust.trusted_uids() or st.st_mode & 0o022:
        os.close(fd)
        raise StateError("state file %s is not a regular file of root's that only root can write "
                         "(mode %04o, uid %d): root did not write it; remove it and run again"
                         % (path, stat.S_IMODE(st.st_mode), st.st_uid))
    return os.fdopen(fd)


def dumps(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_atomic(path, text, mode=0o644):
    """Write ``text`` to ``path``: temporary file beside it, fsync, rename over.

    Readers see the old file or the new one, never a part; a failure leaves
    the old file and no temporary file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    trust.atomic_write(os.path.abspath(path), text.encode("utf-8") if isinstance(text, str) else text, mode)


def save(path, data):
    """Write the state file atomically; mode 0600."""
    write_atomic(path, dumps(dict(data, version=STATE_VERSION)), 0o600)


def remove(path):
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise


def instances(state_dir):
    """Names of the instances with a state file in ``state_dir``."""
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))


class Lock:
    """Exclusive flock on ``<state_dir>/<name>.lock`` for the duration of a run.

    ``create=False`` (check mode) never writes: without the lock file there
    is nothing to serialise against, and an existing one is locked shared.
    ``remove=True`` (state absent) unlinks the lock file at the end, while
    still holding it.
    """

    def __init__(self, state_dir, name, create=True, remove=False):
        self.path = lock_path(state_dir, name)
        self.create = create
        self.remove = remove and create
        self.fd = None

    def _open(self, flags, how):
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not flags & os.O_CREAT:
                return None
            if exc.errno == errno.ELOOP:
                raise StateError("lock file %s is a symbolic link: refusing to follow it (it could point "
                                 "at any file); remove it and run again" % self.path)
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in trust.trusted_uids():
            os.close(fd)
            raise StateError("lock file %s is not a regular file of root's (mode %04o, uid %d); remove it "
                             "and run again" % (self.path, stat.S_IMODE(st.st_mode), st.st_uid))
        fcntl.flock(fd, how)
        try:
            now = os.lstat(self.path)
        except OSError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            # removed (state absent) or replaced while we waited: take the current one
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        return fd

    def __enter__(self):
        if self.create:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                try:
                    trust.make_dir(directory, "state_dir")
                except trust.TrustError as exc:
                    raise StateError(str(exc))
            while self.fd is None:
                self.fd = self._open(os.O_RDWR | os.O_CREAT, fcntl.LOCK_EX)
        elif os.path.lexists(self.path):
            self.fd = self._open(os.O_RDONLY, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            if self.remove:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ---- the shape of a state file --------------------------------------------------------
#
# A state file edited by hand or damaged must give one clear error naming
# the file and the key, never an exception deep in the engine (the module,
# xdp_lb_info and every xdp-lb command read it).  Only types are checked
# here; what the values mean is model.validate's job (Config.from_dict).

_STR, _INT, _BOOL, _LIST, _DICT = (str,), (int,), (bool,), (list,), (dict,)
# config keys -> types (None is accepted for each: the option's default)
_CONFIG = {
    "name": _STR, "state": _STR, "interfaces": _LIST, "mode": _STR, "attach_mode": _STR,
    "redirect_interfaces": _LIST, "redirect_algorithm": _STR, "nat_source_ipv4": _STR,
    "nat_source_ipv6": _STR, "nat_port_min": _INT, "nat_port_max": _INT, "flow_idle_timeout": _INT,
    "ring_size": _INT, "max_services": _INT, "max_backends": _INT, "conntrack_size": _INT,
    "max_map_memory": _INT, "debug": _BOOL, "clang": _STR, "netns": _STR, "source": _STR, "pin_dir": _STR,
    "state_dir": _STR, "build_dir": _STR, "health_checks": _BOOL, "preflight": _BOOL, "nat_guard": _BOOL,
    "services": _LIST,
}
_TOP = {"name": _STR, "netns": _STR, "config": _DICT, "build": _DICT, "program": _DICT, "ids": _DICT,
        "rings": _DICT, "nat_source": _DICT, "neighbours": _LIST, "interfaces": _DICT, "nat_guard": _DICT}
_WHAT = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "a mapping"}


def _bad(path, key, value, what):
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    raise StateError("state file %s: %s is %s, not %s (the file was edited or damaged: put back a good copy, "
                     "or remove it and run the play again)" % (path, key, text, what))


def _typed(path, key, value, types, optional=True):
    if value is None and optional:
        return
    ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
    if not ok:
        _bad(path, key, value, " or ".join(_WHAT[t] for t in types))


def check_shape(data, path):
    """StateError naming ``path`` and the key unless ``data`` has the types
    the engine reads (top-level records, config, ids, neighbours)."""
    for key, types in sorted(_TOP.items()):
        _typed(path, key, data.get(key), types)
    cfg = data.get("config") or {}
    for key, types in sorted(_CONFIG.items()):
        _typed(path, "config.%s" % key, cfg.get(key), types)
    for key in ("interfaces", "redirect_interfaces"):
        for i, name in enumerate(cfg.get(key) or []):
            _typed(path, "config.%s[%d]" % (key, i), name, _STR, optional=False)
    for i, svc in enumerate(cfg.get("services") or []):
        where = "config.services[%d]" % i
        _typed(path, where, svc, _DICT, optional=False)
        for key, types in (("vip", _STR), ("port", _INT), ("protocol", _STR), ("scheduler", _STR),
                           ("backends", _LIST), ("allow_no_backends", _BOOL)):
            _typed(path, "%s.%s" % (where, key), svc.get(key), types, optional=key not in ("vip", "port"))
        for j, b in enumerate(svc.get("backends") or []):
            bwhere = "%s.backends[%d]" % (where, j)
            _typed(path, bwhere, b, _DICT, optional=False)
            for key, types in (("address", _STR), ("weight", _INT), ("port", _INT)):
                _typed(path, "%s.%s" % (bwhere, key), b.get(key), types, optional=key != "address")
    ids = data.get("ids") or {}
    for kind in ("services", "backends"):
        _typed(path, "ids.%s" % kind, ids.get(kind), _DICT)
        for k, v in sorted((ids.get(kind) or {}).items()):
            _typed(path, "ids.%s[%r]" % (kind, k), v, _INT, optional=False)
    for k, v in sorted((data.get("rings") or {}).items()):
        _typed(path, "rings[%r]" % k, v, _DICT, optional=False)
    for i, item in enumerate(data.get("neighbours") or []):
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            _bad(path, "neighbours[%d]" % i, item, "an [address, interface] pair")
    for name, spec in sorted((data.get("interfaces") or {}).items()):
        _typed(path, "interfaces[%r]" % name, spec, _DICT, optional=False)
    program = data.get("program") or {}
    _typed(path, "program.id", program.get("id"), _INT)
    build = data.get("build") or {}
    for key, types in (("hash", _STR), ("object", _STR), ("source_dir", _STR), ("defines", _DICT)):
        _typed(path, "build.%s" % key, build.get(key), types)
    for key in ("ipv4", "ipv6"):
        _typed(path, "nat_source.%s" % key, (data.get("nat_source") or {}).get(key), _STR)
    guard = data.get("nat_guard")
    if guard is not None:
        for key in ("table", "ipv4", "ipv6"):
            _typed(path, "nat_guard.%s" % key, guard.get(key), _STR, optional=key != "table")
        ports = guard.get("ports")
        if not (isinstance(ports, list) and len(ports) == 2 and all(isinstance(p, int) for p in ports)):
            _bad(path, "nat_guard.ports", ports, "a [first, last] pair of port numbers")
