# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compile the data plane with clang, cached by content hash.

The cache key is a SHA-256 over the source files, the defines and the
compiler's version line: the same inputs on the same compiler never compile
twice, and any change to them gives a new object next to the old one.

Each object ``xdp_lb-<hash>.o`` has its SHA-256 in ``xdp_lb-<hash>.o.sha256``
beside it, both written by root (trust.atomic_write); a cached object is
used only when both are root's and the digest matches (``verify_object``),
otherwise it is compiled again and replaced.  The engine records the
digest in the state file too, and restore loads only an object that
matches it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import hashlib
import os
import re
import tempfile

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import trust
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run, CommandError

SOURCE = "xdp_loadbalancer.c"
HEADER = "xdp_lb.h"


class BuildError(Exception):
    pass


def compiler_version(clang="clang"):
    """The first line of ``clang --version``; BuildError unless the program
    runs and says it is clang (``/bin/false``, ``/bin/echo``, gcc are not)."""
    try:
        out = run([clang, "--version"])[1]
    except CommandError as exc:
        if exc.rc == 127:
            raise BuildError("clang not found (%s): install clang and llvm, or set the clang "
                             "option to its path" % clang)
        raise BuildError("clang: %s is not a working clang ('%s --version' exited %s)" % (clang, clang, exc.rc))
    lines = out.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if "clang" not in first.lower():
        raise BuildError("clang: %s does not identify as clang ('%s --version' says %r); set the clang option "
                         "to a clang binary" % (clang, clang, first[:80]))
    return first


def read_sources(source_dir):
    """{file name: bytes} of the data-plane source and its shared header."""
    out = {}
    for name in (SOURCE, HEADER):
        path = os.path.join(source_dir, name)
        try:
            with open(path, "rb") as f:
                out[name] = f.read()
        except IOError as exc:
            raise BuildError("cannot read %s: %s" % (path, exc))
    return out


_HZ = {}


def kernel_hz(release=None, boot="/boot", proc_config="/proc/config.gz"):
    """The running kernel's CONFIG_HZ from /boot/config-<release> or
    /proc/config.gz; None when neither says.  Read once per process and
    arguments (Config.defines() asks on every call)."""
    key = (release, boot, proc_config)
    if key not in _HZ:
        _HZ[key] = _read_kernel_hz(release, boot, proc_config)
    return _HZ[key]


def _read_kernel_hz(release, boot, proc_config):
    release = release or os.uname()[2]
    candidates = [(os.path.join(boot, "config-" + release), open), (proc_config, gzip.open)]
    for path, opener in candidates:
        try:
            with opener(path, "rt") as handle:
                for line in handle:
                    match = re.match(r"CONFIG_HZ=(\d+)\s*$", line)
                    if match:
                        return int(match.group(1))
        except (IOError, OSError, EOFError):
            continue
    return None


def host_defines():
    """Defines that depend on the running kernel: XDP_LB_HZ (the caches
    then use the cheaper jiffies clock) when CONFIG_HZ can be read."""
    hz = kernel_hz()
    return {"XDP_LB_HZ": hz} if hz else {}


def define_args(defines):
    args = []
    for key in sorted(defines):
        value = defines[key]
        if value is True:
            args.append("-D%s" % key)
        elif value is not None and value is not False:     # 0 is a value (0 == False)
            args.append("-D%s=%s" % (key, value))
    return args


def build_hash(sources, defines, compiler):
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name] + b"\0")
    h.update("\0".join(define_args(defines)).encode() + b"\0")
    h.update(compiler.encode())
    return h.hexdigest()


def system_include_dirs(clang="clang"):
    """The multiarch include dir (asm/ headers) that -target bpf does not search."""
    dirs = []
    for argv in ([clang, "-print-multiarch"], ["gcc", "-dumpmachine"]):
        try:
            triple = run(argv, check=False)[1].strip()
        except CommandError:
            continue
        if triple and os.path.isdir("/usr/include/" + triple):
            dirs.append("/usr/include/" + triple)
            break
    return dirs


def object_path(build_dir, digest):
    return os.path.join(build_dir, "xdp_lb-%s.o" % digest[:16])


def digest_path(obj):
    return obj + ".sha256"


def verify_object(obj, expect=None):
    """(SHA-256 of ``obj``, None) when ``obj`` and its digest file are
    regular files of root's, not writable by others, and the content
    matches the digest file (and ``expect``, the digest the state file
    recorded, when given); else (None, why not)."""
    data = trust.read_trusted(obj)
    if data is None:
        if not os.path.lexists(obj):
            return None, "%s is missing" % obj
        return None, "%s is not a regular file of root's that only root can write" % obj
    recorded = trust.read_trusted(digest_path(obj))
    if recorded is None:
        return None, "%s has no digest file of root's (%s)" % (obj, digest_path(obj))
    sha = hashlib.sha256(data).hexdigest()
    recorded = recorded.decode("ascii", "replace").strip()
    if sha != recorded:
        return None, "%s does not match its digest file (%s, recorded %s)" % (obj, sha[:16], recorded[:16])
    if expect and sha != expect:
        return None, "%s does not match the digest in the state file (%s, recorded %s)" % (
            obj, sha[:16], expect[:16])
    return sha, None


def compile_object(source_dir, build_dir, defines=None, clang="clang", compiler=None):
    """Compile ``source_dir``'s data plane into ``build_dir``.

    Returns ``(object path, digest, cached)``.  A cached object that does
    not verify (``verify_object``: planted, altered, no digest file) is
    compiled again and replaced.
    """
    defines = dict(defines or {})
    sources = read_sources(source_dir)
    compiler = compiler or compiler_version(clang)
    digest = build_hash(sources, defines, compiler)
    obj = object_path(build_dir, digest)
    if verify_object(obj)[0]:
        return obj, digest, True
    try:
        trust.make_dir(build_dir, "build_dir")
    except trust.TrustError as exc:
        raise BuildError(str(exc))
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".o", dir=build_dir)
    os.close(fd)
    argv = [clang, "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
            "-I", source_dir] + ["-I%s" % d for d in system_include_dirs(clang)] + \
        define_args(defines) + ["-c", os.path.join(source_dir, SOURCE), "-o", tmp]
    try:
        run(argv)
        with open(tmp, "rb") as f:
            data = f.read()
        if not data.startswith(b"\x7fELF"):
            raise BuildError("clang: %s exited 0 but wrote no BPF object (%s is %s, %d bytes): set the clang option "
                             "to a clang binary" % (clang, tmp, "not ELF" if data else "empty", len(data)))
        # digest first: an object without its digest file is never used
        trust.atomic_write(digest_path(obj), (hashlib.sha256(data).hexdigest() + "\n").encode(), 0o644)
        os.chmod(tmp, 0o644)
        os.rename(tmp, obj)
    except CommandError as exc:
        raise BuildError("compiling %s failed:\n%s" % (SOURCE, (exc.stderr or exc.stdout).strip()))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return obj, digest, False
