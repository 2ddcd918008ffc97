"""A snapshot of what the balancer can change on a host, to compare before and after a bad input.

``take(lab)`` records, for the lab's network namespaces and directories:

- the XDP program attached to each link (id and mode, ``ip -j link``);
- the pins under the instance's pin_dir (names, inode, the map or program id
  bpftool reports) and every map's contents (``bpftool map dump``) except
  the per-CPU counters and caches the data plane itself writes on any packet
  (IPv6 neighbour discovery on the lab's links counts there);
- the files under the state and build directories (path, mode, size,
  mtime, SHA-256), lock files included;
- the sysctls the balancer's namespace depends on, its addresses and routes,
  and its nftables ruleset (the NAT guard).

Two snapshots compare with ``==``; ``diff(a, b)`` names what differs.
"""
import hashlib
import json
import os
import subprocess

# written by the data plane per packet, not by the control plane
LIVE_MAPS = ("lb_stats", "lb_be_stats", "lb_port_stats", "lb_nexthop", "lb_rr")
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/rp_filter",
           "net/ipv4/conf/front0/rp_filter", "net/ipv4/conf/back0/rp_filter",
           "net/ipv4/conf/front0/accept_local", "net/ipv4/conf/back0/accept_local")


def _out(*argv):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True).stdout


def _links(ns):
    out = {}
    for link in json.loads(_out("ip", "-n", ns, "-j", "-d", "link", "show")):
        xdp = link.get("xdp") or {}
        prog = xdp.get("prog") or {}
        out[link["ifname"]] = {"xdp_prog": prog.get("id"), "xdp_mode": xdp.get("mode"), "mtu": link.get("mtu"),
                               "state": link.get("operstate")}
    return out


def _pins(pin_dir):
    out = {}
    if not os.path.isdir(pin_dir):
        return out
    for name in sorted(os.listdir(pin_dir)):
        path = os.path.join(pin_dir, name)
        st = os.lstat(path)
        entry = {"inode": st.st_ino, "mode": oct(st.st_mode)}
        r = subprocess.run(["bpftool", "-j", "map", "show", "pinned", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, check=False)
        if r.returncode == 0:
            info = json.loads(r.stdout)
            entry["map"] = {k: info.get(k) for k in ("id", "type", "bytes_key", "bytes_value", "max_entries")}
            if name not in LIVE_MAPS:
                dump = _out("bpftool", "-j", "map", "dump", "pinned", path)
                entry["contents"] = hashlib.sha256(dump.encode()).hexdigest()
        else:
            info = json.loads(_out("bpftool", "-j", "prog", "show", "pinned", path))
            entry["prog"] = {k: info.get(k) for k in ("id", "tag")}
        out[name] = entry
    return out


def _files(top):
    out = {}
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files) + [d + "/" for d in dirs]:
            path = os.path.join(root, name.rstrip("/"))
            st = os.lstat(path)
            entry = {"mode": oct(st.st_mode), "size": st.st_size, "mtime": st.st_mtime_ns}
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, top)] = entry
    return out


def _sysctls(ns):
    out = {}
    for key in SYSCTLS:
        r = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/" + key], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
        out[key] = r.stdout.strip() if r.returncode == 0 else None
    return out


def take(lab):
    """The snapshot of ``lab`` (a dict with ns, pin_dir, state_dir, build_dir)."""
    lb = lab["ns"]["lb"]
    return {
        "links": dict((role, _links(ns)) for role, ns in sorted(lab["ns"].items())),
        "pins": _pins(lab["pin_dir"]),
        "state_dir": _files(lab["state_dir"]),
        "build_dir": _files(lab["build_dir"]),
        "sysctls": _sysctls(lb),
        "addresses": _out("ip", "-n", lb, "-br", "addr"),
        "routes": _out("ip", "-n", lb, "route") + _out("ip", "-n", lb, "-6", "route"),
        "nft": _out("ip", "netns", "exec", lb, "nft", "list", "ruleset"),
    }


def diff(a, b, prefix=""):
    """Lines naming what differs between two snapshots (empty: identical)."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append("%s%s: added %r" % (prefix, k, b[k]))
            elif k not in b:
                out.append("%s%s: removed" % (prefix, k))
            else:
                out.extend(diff(a[k], b[k], "%s%s." % (prefix, k)))
    elif a != b:
        out.append("%s %r -> %r" % (prefix.rstrip("."), a, b))
    return out
