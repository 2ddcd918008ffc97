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
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import json
import os
import tempfile

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
        with open(path) as f:
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
    return data


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
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    """

    def __init__(self, state_dir, name, create=True):
        self.path = lock_path(state_dir, name)
        self.create = create
        self.fd = None

    def __enter__(self):
        if self.create:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        elif os.path.exists(self.path):
            self.fd = os.open(self.path, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
