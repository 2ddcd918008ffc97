# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Netlink: links, XDP attach/replace/detach, routes, neighbours, netns.

XDP programs are queried, attached, replaced and detached through libbpf
(``bpf_xdp_query``, ``bpf_xdp_attach``: RTM_SETLINK with
``IFLA_XDP_{FD,FLAGS,EXPECTED_FD}``); pyroute2 0.7's own ``ifinfmsg`` packs
``IFLA_XDP_FLAGS`` in two bytes, which the kernel rejects (ERANGE).
Interface indexes and names come from ``if_nametoindex``/``if_indextoname``,
the source address towards a backend from the route lookup of a connected
UDP socket (which sends nothing).  Everything else (routes and neighbours
for dsr, network namespaces) goes through pyroute2, imported and connected
on first use: its package imports every module it has (0.1-0.25 s, a
quarter of a module run), and a run in nat or redirect mode needs none of
it.  All of it acts in the calling thread's network namespace: enter it
first (``in_netns``).

pyroute2 0.7's ``ndmsg`` does not know ``NDA_FLAGS_EXT``, needed for
"managed" neighbour entries (kernel >= 5.16), hence ``NeighExt``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import importlib.util
import ipaddress
import os
import socket
import types

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf

# Whether pyroute2 is installed (found, not imported: see _pyroute2()).
try:
    HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None
except (ImportError, ValueError):  # pragma: no cover - depends on the host
    HAS_PYROUTE2 = False
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else ImportError("No module named 'pyroute2'")

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
# XDP_ATTACHED_* (bpf_xdp_query's attach_mode) -> our attach_mode names.
ATTACHED_MODES = {1: "native", 2: "generic", 3: "offload", 4: "multi"}

NETNS_DIR = "/var/run/netns"

NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NUD_STATES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
              0x20: "failed", 0x40: "noarp", 0x80: "permanent", 0x00: "none"}
NTF_EXT_MANAGED = 0x1
NDA_FLAGS_EXT = 15


class NetError(Exception):
    """A netlink operation failed; the message says which and why."""


def need_pyroute2():
    if not HAS_PYROUTE2:
        raise NetError("pyroute2 is missing (install python3-pyroute2 or pip install pyroute2): %s"
                       % PYROUTE2_IMPORT_ERROR)


def _pyroute2():
    """pyroute2's names used here, imported on the first call."""
    pr = getattr(_pyroute2, "names", None)
    if pr is not None:
        return pr
    need_pyroute2()
    try:
        from pyroute2 import IPRoute
        from pyroute2 import netns
        from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
        from pyroute2.netlink import nlmsg
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.rtnl import RTM_NEWNEIGH, RTM_DELNEIGH
        from pyroute2.netlink.rtnl.ndmsg import ndmsg
    except Exception as exc:  # pragma: no cover - depends on the host
        raise NetError("pyroute2 does not import: %s" % exc)

    class NeighExt(nlmsg):
        """A neighbour message that can carry NDA_FLAGS_EXT (managed entries).

        A direct nlmsg subclass, not a subclass of ndmsg: pyroute2 compiles
        an nla_map once per class hierarchy, and a subclass of an already
        used ndmsg would encode with the parent's map (silently dropping
        NDA_FLAGS_EXT).
        """
        fields = ndmsg.fields
        nla_map = ((1, "NDA_DST", "ipaddr"), (15, "NDA_FLAGS_EXT", "uint32"))

    _pyroute2.names = types.SimpleNamespace(
        IPRoute=IPRoute, netns=netns, NetlinkError=NetlinkError, ndmsg=ndmsg, NeighExt=NeighExt,
        NLM_F_ACK=NLM_F_ACK, NLM_F_CREATE=NLM_F_CREATE, NLM_F_REPLACE=NLM_F_REPLACE, NLM_F_REQUEST=NLM_F_REQUEST,
        RTM_NEWNEIGH=RTM_NEWNEIGH, RTM_DELNEIGH=RTM_DELNEIGH)
    return _pyroute2.names


class _IPRoute(object):
    """pyroute2's IPRoute, made (and pyroute2 imported) on first use."""

    def __init__(self):
        self._ipr = None

    def __getattr__(self, name):
        if self._ipr is None:
            self._ipr = _pyroute2().IPRoute()
        return getattr(self._ipr, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


def iproute():
    """An IPRoute socket (use as a context manager) in the current network
    namespace, opened when first used."""
    need_pyroute2()
    return _IPRoute()


# ---- namespaces -------------------------------------------------------------------

def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def enter_netns(name):
    """Move this process into network namespace ``name`` (for good)."""
    need_pyroute2()
    if not os.path.exists(netns_path(name)):
        raise NetError("network namespace %s not found (%s does not exist)" % (name, netns_path(name)))
    try:
        _pyroute2().netns.setns(name, flags=0)
    except OSError as exc:
        raise NetError("cannot enter network namespace %s: %s" % (name, exc))


@contextlib.contextmanager
def in_netns(name):
    """Run a block in network namespace ``name`` (None: stay), then come back."""
    if not name:
        yield
        return
    need_pyroute2()
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        enter_netns(name)
        try:
            yield
        finally:
            _pyroute2().netns.setns(home)
    finally:
        os.close(home)


def current_netns_id():
    """Inode of this process's network namespace (to tell namespaces apart)."""
    return os.stat("/proc/self/ns/net").st_ino


# ---- links and XDP ----------------------------------------------------------------

def link_index(name):
    """ifindex of ``name`` in this network namespace, or None if there is no
    such interface (if_nametoindex: pyroute2's link_lookup dumps every link)."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError):
        return None


def link_name(index):
    """Name of interface ``index`` in this network namespace, or None."""
    try:
        return socket.if_indextoname(index)
    except (OSError, ValueError, OverflowError):
        return None


def xdp_query(index):
    """What is attached: {'prog_id': int or 0, 'mode': 'native'|'generic'|...|None}."""
    try:
        prog_id, mode = bpf.xdp_query(index)
    except bpf.BPFError as exc:
        raise NetError(str(exc))
    return {"prog_id": prog_id, "mode": ATTACHED_MODES.get(mode) if prog_id else None}


def _check_fd(fd, what):
    # A negative fd in IFLA_XDP_FD means "detach": never let one through by accident.
    if not isinstance(fd, int) or fd < 0:
        raise NetError("refusing to attach: invalid %s fd %r" % (what, fd))


def xdp_attach(ifname, index, fd, mode, expected_fd=None):
    """Attach program ``fd`` in ``mode`` ('native' or 'generic').

    Without ``expected_fd``: only if nothing is attached
    (XDP_FLAGS_UPDATE_IF_NOEXIST).  With it: atomically replace exactly that
    program (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD); the interface is never
    without a program.
    """
    _check_fd(fd, "program")
    flags = MODE_FLAGS[mode]
    if expected_fd is None:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    else:
        _check_fd(expected_fd, "expected program")
    code = bpf.xdp_attach(index, fd, flags, expected_fd)
    if not code:
        return
    if mode == "native" and code in (errno.EOPNOTSUPP, errno.EINVAL):
        raise NetError("interface %s does not support native XDP; set attach_mode: generic" % ifname)
    if code == errno.EBUSY:
        raise NetError("interface %s already has another XDP program attached; detach it first "
                       "(ip link set dev %s xdp off) or use the instance that owns it" % (ifname, ifname))
    if code == errno.EEXIST:
        raise NetError("interface %s: the attached XDP program changed under us or is attached in "
                       "another mode (native and generic cannot be mixed): %s" % (ifname, os.strerror(code)))
    raise NetError("attaching XDP to %s (%s) failed: %s" % (ifname, mode, os.strerror(code)))


def xdp_detach(ifname, index, mode, expected_fd):
    """Detach the program in ``mode`` only if it is still ``expected_fd``'s."""
    _check_fd(expected_fd, "expected program")
    code = bpf.xdp_attach(index, -1, MODE_FLAGS[mode], expected_fd)
    if code:
        raise NetError("detaching XDP from %s failed: %s" % (ifname, os.strerror(code)))


# ---- routes and addresses ---------------------------------------------------------

def route_to(ipr, address):
    """How the kernel would reach ``address``: {'oif', 'gateway', 'prefsrc'} or None."""
    try:
        routes = ipr.route("get", dst=address)
    except _pyroute2().NetlinkError:
        return None
    if not routes:
        return None
    r = routes[0]
    return {"oif": r.get_attr("RTA_OIF"), "gateway": r.get_attr("RTA_GATEWAY"),
            "prefsrc": r.get_attr("RTA_PREFSRC"), "type": r["type"]}


def source_address(address):
    """The source address the kernel would use towards ``address`` (None if
    no route): a UDP socket's connect() makes the kernel's route and source
    address choice, as ``ip route get`` shows it, and sends nothing."""
    family = _family(address)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))
        except OSError:
            return None
        return sock.getsockname()[0]


def has_address(ipr, address):
    """Whether an interface of this network namespace has ``address``."""
    want = ipaddress.ip_address(address)
    for msg in ipr.get_addr(family=_family(address)):
        for attr in ("IFA_LOCAL", "IFA_ADDRESS"):
            value = msg.get_attr(attr)
            if value and ipaddress.ip_address(value) == want:
                return True
    return False


# ---- neighbours -------------------------------------------------------------------

def _family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def neighbour(ipr, address, index):
    """{'state': name, 'lladdr', 'managed': bool} of the entry, or None."""
    for n in ipr.get_neighbours(family=_family(address), ifindex=index, dst=address):
        if n.get_attr("NDA_DST") != address or n["ifindex"] != index:
            continue
        managed = any(name == "UNKNOWN" and val.get("header", {}).get("type") == NDA_FLAGS_EXT
                      for name, val in n["attrs"]) or bool(n.get_attr("NDA_FLAGS_EXT"))
        return {"state": NUD_STATES.get(n["state"], str(n["state"])), "lladdr": n.get_attr("NDA_LLADDR"),
                "managed": managed, "nud": n["state"]}
    return None


def set_managed_neighbour(ipr, address, index):
    """Create or turn an entry into a "managed" one: the kernel keeps it resolved.

    (NTF_EXT_MANAGED, Linux >= 5.16: the kernel re-probes the neighbour
    periodically so it stays REACHABLE without traffic.)
    """
    pr = _pyroute2()
    msg = pr.NeighExt()
    msg["family"] = _family(address)
    msg["ifindex"] = index
    msg["state"] = 0
    msg["flags"] = 0
    msg["attrs"] = [("NDA_DST", address), ("NDA_FLAGS_EXT", NTF_EXT_MANAGED)]
    try:
        ipr.nlm_request(msg, msg_type=pr.RTM_NEWNEIGH,
                        msg_flags=pr.NLM_F_REQUEST | pr.NLM_F_ACK | pr.NLM_F_CREATE | pr.NLM_F_REPLACE)
    except pr.NetlinkError as exc:
        raise NetError("cannot add a managed neighbour entry for %s: %s" % (address, os.strerror(exc.code)))


def delete_neighbour(ipr, address, index):
    pr = _pyroute2()
    msg = pr.ndmsg()
    msg["family"] = _family(address)
    msg["ifindex"] = index
    msg["attrs"] = [("NDA_DST", address)]
    try:
        ipr.nlm_request(msg, msg_type=pr.RTM_DELNEIGH, msg_flags=pr.NLM_F_REQUEST | pr.NLM_F_ACK)
    except pr.NetlinkError as exc:
        if exc.code != errno.ENOENT:
            raise NetError("cannot delete neighbour entry %s: %s" % (address, os.strerror(exc.code)))
