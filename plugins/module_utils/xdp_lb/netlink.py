# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Netlink through pyroute2: links, XDP attach/replace/detach, routes, neighbours, netns.

Callers open one ``IPRoute()`` (context-managed) *after* entering the
network namespace: a netlink socket belongs to the namespace it was made in.

Two pyroute2 0.7 details are worked around here:

* its ``ifinfmsg`` packs ``IFLA_XDP_FLAGS`` in two bytes, which the kernel
  rejects (ERANGE), and ``IPRoute.link("set", xdp_flags=...)`` drops the
  flags: XDP changes are sent as a small RTM_SETLINK message of our own
  (``_XdpSetLink``) that carries ``IFLA_XDP_{FD,FLAGS,EXPECTED_FD}`` as the
  kernel defines them;
* its ``ndmsg`` does not know ``NDA_FLAGS_EXT``, needed for "managed"
  neighbour entries (kernel >= 5.16), hence ``_NeighExt``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import os
import socket

try:
    from pyroute2 import IPRoute
    from pyroute2 import netns as _netns
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NLA_F_NESTED
    from pyroute2.netlink import nla, nlmsg
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.rtnl import RTM_NEWNEIGH, RTM_SETLINK, RTM_DELNEIGH
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the host
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc
    IPRoute = None
    NetlinkError = OSError
    nla = nlmsg = ifinfmsg = ndmsg = object
    NLA_F_NESTED = 0

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
# IFLA_XDP_ATTACHED as pyroute2 reports it -> our attach_mode names.
ATTACHED_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi"}

NETNS_DIR = "/var/run/netns"

NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NUD_STATES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
              0x20: "failed", 0x40: "noarp", 0x80: "permanent", 0x00: "none"}
NTF_EXT_MANAGED = 0x1
NDA_FLAGS_EXT = 15


class NetError(Exception):
    """A netlink operation failed; the message says which and why."""


def iproute():
    """A new IPRoute socket (use as a context manager), in the current network namespace."""
    need_pyroute2()
    return IPRoute()


def need_pyroute2():
    if not HAS_PYROUTE2:
        raise NetError("pyroute2 is missing (install python3-pyroute2 or pip install pyroute2): %s"
                       % PYROUTE2_IMPORT_ERROR)


if HAS_PYROUTE2:
    class _XdpSetLink(nlmsg):
        """RTM_SETLINK with only IFLA_XDP, its flags encoded as the u32 the kernel wants.

        A direct nlmsg subclass with nested classes of its own names, for
        the reason given at _NeighExt.
        """
        fields = ifinfmsg.fields
        nla_map = ((43, "IFLA_XDP", "xdp_setlink_attrs"),)

        class xdp_setlink_attrs(nla):
            nla_flags = NLA_F_NESTED
            nla_map = (
                ("IFLA_XDP_UNSPEC", "none"),
                ("IFLA_XDP_FD", "int32"),
                ("IFLA_XDP_ATTACHED", "uint8"),
                ("IFLA_XDP_FLAGS", "uint32"),
                ("IFLA_XDP_PROG_ID", "uint32"),
                ("IFLA_XDP_DRV_PROG_ID", "uint32"),
                ("IFLA_XDP_SKB_PROG_ID", "uint32"),
                ("IFLA_XDP_HW_PROG_ID", "uint32"),
                ("IFLA_XDP_EXPECTED_FD", "int32"),
            )

    class _NeighExt(nlmsg):
        """A neighbour message that can carry NDA_FLAGS_EXT (managed entries).

        Not a subclass of ndmsg: pyroute2 compiles an nla_map once per class
        hierarchy, and a subclass of an already used ndmsg would encode with
        the parent's map (silently dropping NDA_FLAGS_EXT).
        """
        fields = ndmsg.fields
        nla_map = ((1, "NDA_DST", "ipaddr"), (15, "NDA_FLAGS_EXT", "uint32"))


# ---- namespaces -------------------------------------------------------------------

def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def enter_netns(name):
    """Move this process into network namespace ``name`` (for good)."""
    need_pyroute2()
    if not os.path.exists(netns_path(name)):
        raise NetError("network namespace %s not found (%s does not exist)" % (name, netns_path(name)))
    try:
        _netns.setns(name, flags=0)
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
            _netns.setns(home)
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


def link_name(ipr, index):
    try:
        return ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
    except NetlinkError:
        return None


def xdp_query(ipr, index):
    """What is attached: {'prog_id': int or 0, 'mode': 'native'|'generic'|...|None}."""
    link = ipr.get_links(index)[0]
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return {"prog_id": 0, "mode": None}
    attached = xdp.get_attr("IFLA_XDP_ATTACHED")
    prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
    if not prog_id:
        # multi-attach reports per-mode ids only
        prog_id = xdp.get_attr("IFLA_XDP_DRV_PROG_ID") or xdp.get_attr("IFLA_XDP_SKB_PROG_ID") or 0
    return {"prog_id": int(prog_id), "mode": ATTACHED_MODES.get(attached) if attached else None}


def _xdp_set(ipr, index, fd, flags, expected_fd=None):
    msg = _XdpSetLink()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    attrs = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]
    if expected_fd is not None:
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    msg["attrs"] = [("IFLA_XDP", {"attrs": attrs})]
    ipr.nlm_request(msg, msg_type=RTM_SETLINK, msg_flags=NLM_F_REQUEST | NLM_F_ACK)


def _check_fd(fd, what):
    # A negative fd in IFLA_XDP_FD means "detach": never let one through by accident.
    if not isinstance(fd, int) or fd < 0:
        raise NetError("refusing to attach: invalid %s fd %r" % (what, fd))


def xdp_attach(ipr, ifname, index, fd, mode, expected_fd=None):
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
        flags |= XDP_FLAGS_REPLACE
    try:
        _xdp_set(ipr, index, fd, flags, expected_fd)
    except NetlinkError as exc:
        code = exc.code
        if mode == "native" and code in (errno.EOPNOTSUPP, errno.EINVAL):
            raise NetError("interface %s does not support native XDP; set attach_mode: generic" % ifname)
        if code == errno.EBUSY:
            raise NetError("interface %s already has another XDP program attached; detach it first "
                           "(ip link set dev %s xdp off) or use the instance that owns it" % (ifname, ifname))
        if code == errno.EEXIST:
            raise NetError("interface %s: the attached XDP program changed under us or is attached in "
                           "another mode (native and generic cannot be mixed): %s" % (ifname, os.strerror(code)))
        raise NetError("attaching XDP to %s (%s) failed: %s" % (ifname, mode, os.strerror(code)))


def xdp_detach(ipr, ifname, index, mode, expected_fd):
    """Detach the program in ``mode`` only if it is still ``expected_fd``'s."""
    _check_fd(expected_fd, "expected program")
    try:
        _xdp_set(ipr, index, -1, MODE_FLAGS[mode] | XDP_FLAGS_REPLACE, expected_fd)
    except NetlinkError as exc:
        raise NetError("detaching XDP from %s failed: %s" % (ifname, os.strerror(exc.code)))


# ---- routes and addresses ---------------------------------------------------------

def route_to(ipr, address):
    """How the kernel would reach ``address``: {'oif', 'gateway', 'prefsrc'} or None."""
    try:
        routes = ipr.route("get", dst=address)
    except NetlinkError:
        return None
    if not routes:
        return None
    r = routes[0]
    return {"oif": r.get_attr("RTA_OIF"), "gateway": r.get_attr("RTA_GATEWAY"),
            "prefsrc": r.get_attr("RTA_PREFSRC"), "type": r["type"]}


def source_address(ipr, address):
    """The source address the kernel would use towards ``address`` (None if no route)."""
    route = route_to(ipr, address)
    return route["prefsrc"] if route else None


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
    msg = _NeighExt()
    msg["family"] = _family(address)
    msg["ifindex"] = index
    msg["state"] = 0
    msg["flags"] = 0
    msg["attrs"] = [("NDA_DST", address), ("NDA_FLAGS_EXT", NTF_EXT_MANAGED)]
    try:
        ipr.nlm_request(msg, msg_type=RTM_NEWNEIGH,
                        msg_flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    except NetlinkError as exc:
        raise NetError("cannot add a managed neighbour entry for %s: %s" % (address, os.strerror(exc.code)))


def delete_neighbour(ipr, address, index):
    msg = ndmsg()
    msg["family"] = _family(address)
    msg["ifindex"] = index
    msg["attrs"] = [("NDA_DST", address)]
    try:
        ipr.nlm_request(msg, msg_type=RTM_DELNEIGH, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
    except NetlinkError as exc:
        if exc.code != errno.ENOENT:
            raise NetError("cannot delete neighbour entry %s: %s" % (address, os.strerror(exc.code)))
