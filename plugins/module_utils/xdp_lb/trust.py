# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which paths root may write to, execute or load from (docs/design.md, "Trust model").

Root compiles into ``build_dir``, loads objects from it, keeps its state
and locks in ``state_dir`` and its pins in ``pin_dir``.  Whoever can write
to one of them, or replace one of their parents, steers what root runs.
So a directory is trusted when:

- it is owned by root (or by the user running the engine) and not
  writable by group or others, and is not a symbolic link;
- each parent is owned by root (or that user) and either not writable by
  group or others, or sticky (``/tmp``, a bpffs mounted by hand with its
  default mode 1777): in a sticky parent nobody else can rename or remove
  the root-owned entry below it;
- a parent that is a symbolic link is owned by root and its target is
  trusted the same way (``/var/run`` -> ``/run``).

Components that do not exist yet are fine: root creates them
(``make_dir``, which checks again after creating).  Files are created
only through ``atomic_write`` (O_EXCL|O_NOFOLLOW temporary file, then
rename: a planted symbolic link is replaced, never followed) and read
with ``read_trusted`` (O_NOFOLLOW, owner and mode checked).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import pwd
import stat
import tempfile

MAX_LINKS = 40    # as the kernel's ELOOP limit


class TrustError(Exception):
    """A path root would use is not safe; the message names field, path, mode and owner."""


def trusted_uids():
    return (0, os.geteuid())


def _owner(uid):
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def _describe(st):
    return "mode %04o, owner %s" % (stat.S_IMODE(st.st_mode), _owner(st.st_uid))


def _check_parent(field, path, st, what):
    if st.st_uid not in trusted_uids():
        raise TrustError("%s: %s %s is not owned by root (%s): its owner could swap what root uses "
                         "below it; use a directory whose parents all belong to root"
                         % (field, what, path, _describe(st)))
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise TrustError("%s: %s %s is writable by group or others and not sticky (%s): anyone who can "
                         "write there can replace what root uses below it; chmod go-w %s, or use "
                         "another directory" % (field, what, path, _describe(st), path))


def _check_leaf(field, path, st):
    if stat.S_ISLNK(st.st_mode):
        raise TrustError("%s: %s is a symbolic link (to %s): give the directory itself (root would "
                         "follow a link that its owner can point anywhere)"
                         % (field, path, os.readlink(path)))
    if not stat.S_ISDIR(st.st_mode):
        raise TrustError("%s: %s is not a directory (%s)" % (field, path, _describe(st)))
    if st.st_uid not in trusted_uids():
        raise TrustError("%s: %s is not owned by root (%s): root writes and loads what is there; "
                         "chown root: %s, or use another directory" % (field, path, _describe(st), path))
    if st.st_mode & 0o022:
        raise TrustError("%s: %s is writable by group or others (%s): root writes and loads what is "
                         "there, so anyone who can write there could plant it; chmod go-w %s, or use "
                         "another directory" % (field, path, _describe(st), path))


def _walk(field, path, leaf, links):
    """Check every existing component of absolute ``path``; returns the
    number of symbolic links followed so far."""
    parts = [p for p in path.split("/") if p]
    current = "/"
    _check_parent(field, "/", os.lstat("/"), "parent")
    for i, part in enumerate(parts):
        if part in (".", ".."):
            raise TrustError("%s: %s has a '%s' component: give the path itself" % (field, path, part))
        nxt = os.path.join(current, part)
        try:
            st = os.lstat(nxt)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return links      # root creates the rest
            raise TrustError("%s: cannot inspect %s: %s" % (field, nxt, exc))
        last = i == len(parts) - 1
        if last and leaf:
            _check_leaf(field, nxt, st)
            return links
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                raise TrustError("%s: %s (parent of %s) is a symbolic link owned by %s, not root"
                                 % (field, nxt, path, _owner(st.st_uid)))
            links += 1
            if links > MAX_LINKS:
                raise TrustError("%s: too many symbolic links in %s" % (field, path))
            target = os.path.normpath(os.path.join(current, os.readlink(nxt)))
            links = _walk(field, target, False, links)
            current = os.path.realpath(target)
            continue
        _check_parent(field, nxt, st, "parent" if not last else "directory")
        current = nxt
    return links


def trusted_dir(path, field):
    """Raise TrustError unless root may write to and load from directory ``path``.

    ``field`` (the option: build_dir, state_dir, pin_dir, ...) starts the
    message.  A missing ``path`` passes when its existing parents do.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise TrustError("%s: %r is not an absolute path" % (field, path))
    _walk(field, path, True, 0)


def trusted_file(path, field):
    """Raise TrustError unless ``path`` (for example the compiler) is a
    file owned by root, not writable by group or others, in trusted
    directories.  Symbolic links are followed, each checked."""
    real = os.path.realpath(path)
    _walk(field, os.path.dirname(real), False, 0)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise TrustError("%s: %s: %s" % (field, path, exc.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise TrustError("%s: %s is not a regular file" % (field, path))
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise TrustError("%s: %s%s is not owned by root or is writable by group or others (%s)"
                         % (field, path, "" if real == path else " (%s)" % real, _describe(st)))


def make_dir(path, field, mode=0o755):
    """Create the missing components of ``path`` (``mode``, never through a
    link: mkdir does not follow one), then check the result as trusted_dir."""
    trusted_dir(path, field)
    parts = [p for p in path.split("/") if p]
    current = "/"
    for part in parts:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, mode)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise TrustError("%s: cannot create %s: %s" % (field, current, exc.strerror))
    trusted_dir(path, field)   # what exists now, whoever made it meanwhile


def read_trusted(path):
    """Bytes of regular file ``path`` if root (or this user) owns it and
    group and others cannot write it; None when it is missing, a link or
    anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in trusted_uids() or st.st_mode & 0o022:
            return None
        return f.read()


def atomic_write(path, data, mode=0o644):
    """Write bytes ``data`` to ``path``: a new temporary file beside it
    (O_CREAT|O_EXCL|O_NOFOLLOW, as mkstemp opens), fsync, rename over.  A
    symbolic link or file planted at ``path`` or at any fixed temporary
    name is replaced, never written through."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
