# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""BPF objects, programs and maps, from Python, without a hand-written bpf() layer.

Two libraries share the work (bcc links libbpf dynamically, so both are one
libbpf in the process):

* bcc (Debian ``python3-bpfcc``, Fedora ``python3-bcc``): map element
  operations and opening pinned objects (``bcc.libbcc.lib``).
* libbpf (``libbpf.so.1``, through ctypes): opening and loading the compiled
  ELF object.  bcc cannot load a precompiled object with BTF-defined maps
  pinned by name: its loader compiles C at run time, which needs kernel
  headers that hosts (this one included) often lack.  libbpf also gives
  ``BPF_PROG_TEST_RUN``, which bcc does not wrap.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import array
import ctypes as ct
import errno
import os

try:
    from bcc.libbcc import lib as _bcc
    HAS_BCC = True
    BCC_IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the host
    _bcc = None
    HAS_BCC = False
    BCC_IMPORT_ERROR = exc

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

_LOG_SIZE = 4 * 1024 * 1024


class BPFError(Exception):
    """A BPF operation failed.  ``log`` holds verifier/libbpf lines if any."""

    def __init__(self, msg, log=None):
        super(BPFError, self).__init__(msg)
        self.log = log or []


def _libbpf():
    lib = getattr(_libbpf, "lib", None)
    if lib is None:
        try:
            lib = ct.CDLL("libbpf.so.1", use_errno=True)
        except OSError as exc:
            raise BPFError("libbpf.so.1 not found (install libbpf1 / libbpf): %s" % exc)
        # Errors come back to the caller (with the verifier log); keep
        # libbpf's own printing off stderr.
        lib.libbpf_set_print.restype = ct.c_void_p
        lib.libbpf_set_print.argtypes = [ct.c_void_p]
        lib.libbpf_set_print(None)
        lib.bpf_object__open_file.restype = ct.c_void_p
        lib.bpf_object__open_file.argtypes = [ct.c_char_p, ct.c_void_p]
        lib.bpf_object__load.argtypes = [ct.c_void_p]
        lib.bpf_object__close.argtypes = [ct.c_void_p]
        lib.bpf_object__close.restype = None
        lib.bpf_object__find_program_by_name.restype = ct.c_void_p
        lib.bpf_object__find_program_by_name.argtypes = [ct.c_void_p, ct.c_char_p]
        lib.bpf_program__fd.argtypes = [ct.c_void_p]
        lib.bpf_object__find_map_by_name.restype = ct.c_void_p
        lib.bpf_object__find_map_by_name.argtypes = [ct.c_void_p, ct.c_char_p]
        lib.bpf_map__fd.argtypes = [ct.c_void_p]
        lib.bpf_object__next_map.restype = ct.c_void_p
        lib.bpf_object__next_map.argtypes = [ct.c_void_p, ct.c_void_p]
        lib.bpf_map__name.restype = ct.c_char_p
        lib.bpf_map__name.argtypes = [ct.c_void_p]
        lib.libbpf_get_error.restype = ct.c_long
        lib.libbpf_get_error.argtypes = [ct.c_void_p]
        lib.bpf_prog_test_run_opts.argtypes = [ct.c_int, ct.c_void_p]
        lib.bpf_prog_get_fd_by_id.argtypes = [ct.c_uint32]
        lib.bpf_map_get_fd_by_id.argtypes = [ct.c_uint32]
        lib.bpf_obj_pin.argtypes = [ct.c_int, ct.c_char_p]
        lib.bpf_xdp_query.argtypes = [ct.c_int, ct.c_int, ct.c_void_p]
        lib.bpf_xdp_attach.argtypes = [ct.c_int, ct.c_int, ct.c_uint32, ct.c_void_p]
        lib.bpf_obj_get.argtypes = [ct.c_char_p]
        lib.bpf_map__type.argtypes = [ct.c_void_p]
        lib.bpf_map__pin_path.restype = ct.c_char_p
        lib.bpf_map__pin_path.argtypes = [ct.c_void_p]
        lib.bpf_map__set_pin_path.argtypes = [ct.c_void_p, ct.c_char_p]
        lib.bpf_map__reuse_fd.argtypes = [ct.c_void_p, ct.c_int]
        for name in ("bpf_map__key_size", "bpf_map__value_size", "bpf_map__max_entries"):
            getattr(lib, name).restype = ct.c_uint32
            getattr(lib, name).argtypes = [ct.c_void_p]
        _libbpf.lib = lib
    return lib


class _OpenOpts(ct.Structure):
    """struct bpf_object_open_opts (libbpf >= 1.0), 80 bytes on LP64."""
    _fields_ = [
        ("sz", ct.c_size_t),
        ("object_name", ct.c_char_p),
        ("relaxed_maps", ct.c_bool),
        ("pin_root_path", ct.c_char_p),
        ("_stub", ct.c_uint32),
        ("kconfig", ct.c_char_p),
        ("btf_custom_path", ct.c_char_p),
        ("kernel_log_buf", ct.c_void_p),
        ("kernel_log_size", ct.c_size_t),
        ("kernel_log_level", ct.c_uint32),
        ("_end", ct.c_uint32),
    ]


class _TestRunOpts(ct.Structure):
    """struct bpf_test_run_opts, 80 bytes on LP64."""
    _fields_ = [
        ("sz", ct.c_size_t),
        ("data_in", ct.c_void_p),
        ("data_out", ct.c_void_p),
        ("data_size_in", ct.c_uint32),
        ("data_size_out", ct.c_uint32),
        ("ctx_in", ct.c_void_p),
        ("ctx_out", ct.c_void_p),
        ("ctx_size_in", ct.c_uint32),
        ("ctx_size_out", ct.c_uint32),
        ("retval", ct.c_uint32),
        ("repeat", ct.c_int),
        ("duration", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("cpu", ct.c_uint32),
        ("batch_size", ct.c_uint32),
    ]


class _XdpQueryOpts(ct.Structure):
    """struct bpf_xdp_query_opts as libbpf 1.0 and 1.1 define it, 32 bytes on
    LP64 (newer libbpf versions take this size and fill only these fields)."""
    _fields_ = [
        ("sz", ct.c_size_t),
        ("prog_id", ct.c_uint32),
        ("drv_prog_id", ct.c_uint32),
        ("hw_prog_id", ct.c_uint32),
        ("skb_prog_id", ct.c_uint32),
        ("attach_mode", ct.c_uint8),
    ]


class _XdpAttachOpts(ct.Structure):
    """struct bpf_xdp_attach_opts, 16 bytes on LP64."""
    _fields_ = [("sz", ct.c_size_t), ("old_prog_fd", ct.c_int)]


class XdpMd(ct.Structure):
    """struct xdp_md, as BPF_PROG_TEST_RUN takes it in ctx_in."""
    _fields_ = [(name, ct.c_uint32) for name in (
        "data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex")]


def _err(what, rc=None):
    code = ct.get_errno() or (-rc if rc is not None and rc < 0 else 0) or errno.EINVAL
    return BPFError("%s: %s" % (what, os.strerror(code)))


def verifier_tail(log, lines=25):
    """The last meaningful lines of a verifier log (where it says why)."""
    text = [line for line in log.splitlines() if line.strip()]
    return text[-lines:]


_DEVMAP_TYPES = (14, 25)   # BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_DEVMAP_HASH


def _reuse_pinned_devmaps(lib, obj):
    """Hand libbpf the pinned DEVMAPs of ``obj`` itself.

    The kernel adds BPF_F_RDONLY_PROG to a DEVMAP's flags, so libbpf < 1.3
    finds a pinned DEVMAP "incompatible" with the object's definition and
    the second load of the same object fails with EINVAL.  Here the pinned
    map is checked (type, key, value, entries) and given to libbpf as a
    reused fd, with the pin path cleared so libbpf does not check it again.
    """
    m = None
    while True:
        m = lib.bpf_object__next_map(obj, m)
        if not m:
            return
        mtype = lib.bpf_map__type(m)
        path = lib.bpf_map__pin_path(m)
        if mtype not in _DEVMAP_TYPES or not path or not os.path.exists(path):
            continue
        fd = obj_get(path.decode())
        try:
            info = fd_info(fd)
            have = tuple(int(info.get(k, -1)) for k in
                         ("map_type", "key_size", "value_size", "max_entries"))
            want = (mtype, lib.bpf_map__key_size(m), lib.bpf_map__value_size(m),
                    lib.bpf_map__max_entries(m))
            if have != want:
                raise BPFError("pinned map %s does not match the object (type, key, value, "
                               "entries): %s, object has %s" % (path.decode(), have, want))
            if lib.bpf_map__reuse_fd(m, fd) < 0 or lib.bpf_map__set_pin_path(m, None) < 0:
                raise _err("cannot reuse pinned map %s" % path.decode())
        finally:
            os.close(fd)   # libbpf keeps its own duplicate


class LoadedObject:
    """A loaded BPF object: its maps pinned under ``pin_root`` by name."""

    def __init__(self, path, pin_root=None, prog_name="xdp_lb"):
        lib = _libbpf()
        self._lib = lib
        self._log = ct.create_string_buffer(_LOG_SIZE)
        opts = _OpenOpts()
        opts.sz = ct.sizeof(_OpenOpts)
        opts.pin_root_path = pin_root.encode() if pin_root else None
        opts.kernel_log_buf = ct.cast(self._log, ct.c_void_p)
        opts.kernel_log_size = _LOG_SIZE
        opts.kernel_log_level = 0   # libbpf retries with level 1 on failure
        obj = lib.bpf_object__open_file(path.encode(), ct.byref(opts))
        if not obj or lib.libbpf_get_error(obj):
            raise _err("cannot open BPF object %s" % path)
        self._obj = obj
        try:
            _reuse_pinned_devmaps(lib, obj)
        except BPFError:
            self.close()
            raise
        rc = lib.bpf_object__load(obj)
        if rc:
            log = self._log.value.decode("utf-8", "replace")
            lib.bpf_object__close(obj)
            self._obj = None
            code = -rc if rc < 0 else errno.EINVAL
            raise BPFError("loading %s failed: %s" % (path, os.strerror(code)),
                           log=verifier_tail(log))
        prog = lib.bpf_object__find_program_by_name(obj, prog_name.encode())
        if not prog:
            self.close()
            raise BPFError("program %s not found in %s" % (prog_name, path))
        self.prog_fd = lib.bpf_program__fd(prog)

    def map_fd(self, name):
        m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BPFError("map %s not found in object" % name)
        return self._lib.bpf_map__fd(m)

    def map_names(self):
        names, m = [], None
        while True:
            m = self._lib.bpf_object__next_map(self._obj, m)
            if not m:
                return names
            names.append(self._lib.bpf_map__name(m).decode())

    def close(self):
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def obj_get(path):
    """fd of a pinned program or map; raises instead of returning -1."""
    fd = _libbpf().bpf_obj_get(path.encode())
    if fd < 0:
        raise _err("cannot open pinned object %s" % path, fd)
    return fd


def obj_pin(fd, path):
    rc = _libbpf().bpf_obj_pin(fd, path.encode())
    if rc < 0:
        raise _err("cannot pin at %s" % path, rc)


def prog_fd_by_id(prog_id):
    fd = _libbpf().bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise _err("no BPF program with id %d" % prog_id, fd)
    return fd


def fd_info(fd):
    """Fields of /proc/self/fdinfo for a BPF fd (prog_id, prog_tag, map_id, ...)."""
    info = {}
    with open("/proc/self/fdinfo/%d" % fd) as f:
        for line in f:
            key, dummy, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def xdp_query(ifindex):
    """(program id, XDP_ATTACHED_* mode) of the XDP program on interface
    ``ifindex`` in this network namespace; id 0 when there is none.  With
    programs in several modes (multi): the driver's, else the generic one."""
    opts = _XdpQueryOpts()
    opts.sz = ct.sizeof(_XdpQueryOpts)
    rc = _libbpf().bpf_xdp_query(ifindex, 0, ct.byref(opts))
    if rc < 0:
        raise _err("cannot query the XDP program of interface %d" % ifindex, rc)
    return opts.prog_id or opts.drv_prog_id or opts.skb_prog_id, opts.attach_mode


def xdp_attach(ifindex, prog_fd, flags, old_prog_fd=None):
    """bpf_xdp_attach (RTM_SETLINK with IFLA_XDP): attach ``prog_fd`` to
    interface ``ifindex`` with XDP_FLAGS_* ``flags`` (-1 detaches); with
    ``old_prog_fd``, only if that program is the attached one
    (XDP_FLAGS_REPLACE and IFLA_XDP_EXPECTED_FD).  Returns 0, or the
    errno the kernel answered."""
    opts = _XdpAttachOpts()
    opts.sz = ct.sizeof(_XdpAttachOpts)
    opts.old_prog_fd = old_prog_fd if old_prog_fd is not None else 0
    rc = _libbpf().bpf_xdp_attach(ifindex, prog_fd, flags, ct.byref(opts))
    return -rc if rc < 0 else 0


def possible_cpus():
    """Number of possible CPUs: the stride of per-CPU map values."""
    with open("/sys/devices/system/cpu/possible") as f:
        spec = f.read().strip()
    count = 0
    for part in spec.split(","):
        lo, dummy, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


def test_run(prog_fd, data, ingress_ifindex=0, repeat=1):
    """Run an XDP program on ``data`` (BPF_PROG_TEST_RUN).

    Returns ``(retval, data_out, avg_ns)``.
    """
    inbuf = ct.create_string_buffer(bytes(data), len(data))
    outbuf = ct.create_string_buffer(len(data) + 4096)
    opts = _TestRunOpts()
    opts.sz = ct.sizeof(_TestRunOpts)
    opts.data_in = ct.cast(inbuf, ct.c_void_p)
    opts.data_size_in = len(data)
    opts.data_out = ct.cast(outbuf, ct.c_void_p)
    opts.data_size_out = len(outbuf)
    opts.repeat = repeat
    ctx = None
    if ingress_ifindex:
        ctx = XdpMd(data=0, data_end=len(data), ingress_ifindex=ingress_ifindex)
        opts.ctx_in = ct.cast(ct.byref(ctx), ct.c_void_p)
        opts.ctx_size_in = ct.sizeof(ctx)
    rc = _libbpf().bpf_prog_test_run_opts(prog_fd, ct.byref(opts))
    if rc < 0:
        raise _err("BPF_PROG_TEST_RUN failed", rc)
    return opts.retval, outbuf.raw[:opts.data_size_out], opts.duration


def _need_bcc():
    if not HAS_BCC:
        raise BPFError("bcc's Python bindings are missing (install python3-bpfcc "
                       "or python3-bcc): %s" % BCC_IMPORT_ERROR)
    return _bcc


def _c_array(ctype, items):
    """ctypes array of ``items``; plain u32 ones are packed by array('I'), ten times faster."""
    if ctype is ct.c_uint32 and array.array("I").itemsize == 4:
        try:
            return (ctype * len(items)).from_buffer(array.array("I", items))
        except (TypeError, OverflowError):   # not plain u32 ints (c_uint32 objects, ...): the generic way
            pass
    return (ctype * len(items))(*items)


class Map:
    """A BPF map opened by fd, with ctypes key and value types.

    Per-CPU maps take and return a list with one value per possible CPU.
    """

    def __init__(self, fd, key_type, value_type, percpu=False, owned=True):
        self.fd = fd
        self.key_type = key_type
        self.value_type = value_type
        self.percpu = percpu
        self._owned = owned
        self._ncpu = possible_cpus() if percpu else 1

    @classmethod
    def pinned(cls, path, key_type, value_type, percpu=False):
        return cls(obj_get(path), key_type, value_type, percpu=percpu)

    def close(self):
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _value_buf(self):
        if not self.percpu:
            return self.value_type()
        return (self.value_type * self._ncpu)()

    def lookup(self, key):
        """The value for ``key``, or None if absent."""
        value = self._value_buf()
        if _need_bcc().bpf_lookup_elem(self.fd, ct.byref(key), ct.byref(value)) < 0:
            if ct.get_errno() == errno.ENOENT:
                return None
            raise _err("map lookup failed")
        return list(value) if self.percpu else value

    def update(self, key, value, flags=BPF_ANY):
        if self.percpu and isinstance(value, (list, tuple)):
            buf = (self.value_type * self._ncpu)(*value)
        else:
            buf = value
        if _need_bcc().bpf_update_elem(self.fd, ct.byref(key), ct.byref(buf), flags) < 0:
            raise _err("map update failed")

    def delete(self, key):
        """Delete ``key``; returns False if it was not there."""
        if _need_bcc().bpf_delete_elem(self.fd, ct.byref(key)) < 0:
            if ct.get_errno() == errno.ENOENT:
                return False
            raise _err("map delete failed")
        return True

    def keys(self):
        lib = _need_bcc()
        keys = []
        cur, nxt = None, self.key_type()
        while True:
            rc = lib.bpf_get_next_key(self.fd, ct.byref(cur) if cur is not None else None,
                                      ct.byref(nxt))
            if rc < 0:
                if ct.get_errno() == errno.ENOENT:
                    return keys
                raise _err("map iteration failed")
            keys.append(nxt)
            cur, nxt = nxt, self.key_type()

    def items(self):
        out = []
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                out.append((k, v))
        return out

    def lookup_batch(self, start, count):
        """Values of the ``count`` array keys from ``start`` on, in one syscall.

        (BPF_MAP_LOOKUP_BATCH, array maps only; fewer if the map ends first.)
        """
        keys = (self.key_type * count)()
        values = (self.value_type * count)()
        n = ct.c_uint32(count)
        out_batch = self.key_type()
        in_batch = ct.byref(self.key_type(start - 1)) if start > 0 else None
        if _need_bcc().bpf_lookup_batch(self.fd, in_batch, ct.byref(out_batch), ct.byref(keys),
                                        ct.byref(values), ct.byref(n)) < 0:
            if ct.get_errno() != errno.ENOENT:
                raise _err("map batch lookup failed")
        return values[:n.value]

    def update_batch(self, keys, values):
        """Update many entries in one syscall (array maps: contiguous keys)."""
        count = ct.c_uint32(len(keys))
        karr = _c_array(self.key_type, keys)
        varr = _c_array(self.value_type, values)
        if _need_bcc().bpf_update_batch(self.fd, ct.byref(karr), ct.byref(varr),
                                        ct.byref(count)) < 0:
            raise _err("map batch update failed")
