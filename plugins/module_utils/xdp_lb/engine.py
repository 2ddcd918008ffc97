# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan and apply an instance: build, load, sync maps, attach; or remove it.

``run(cfg, ...)`` is what the module calls, ``restore(...)`` what boot-time
restore (cli.py) calls, ``info(...)`` what xdp_lb_info calls.

A run first validates the host (bpffs, interfaces, compiler, routes),
reads what is there (state file, pinned program, attached programs, live
map content), computes a plan, and only then writes, in this order:

0. nat mode: put the NAT guard (natguard.py) in place, so that while no
   program is attached the kernel drops backends' packets to the NAT ports
   instead of resetting them;
1. compile (cached); if the build changed, pre-flight (preflight.py: the
   new object against scratch maps, on synthetic packets; a mismatch stops
   the run here, nothing live touched), then load it; it shares the pinned
   maps, so conntrack and counters survive;
2. sync the maps (maps.plan/apply: backends, rings, services, ...);
3. pin the new program and swap it in on every interface with
   XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD (never detach-then-attach);
4. detach from interfaces no longer listed, keep DSR neighbours resolved,
   write the state file.

A failure in 2 or 3 writes the previous map content back, re-attaches the
previous program and re-raises: nothing stays half applied.  Check mode
stops after the plan: no compile, no load, no writes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    bpf, build, health, layout, maps, model, natguard, netlink, overrides, preflight, state, trust)
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.maps import Tables

BPFFS = "/sys/fs/bpf"
PROG_PIN = "prog"
STAGING = "staging"   # resized maps are pinned here, then renamed into place
MOUNTINFO = "/proc/self/mountinfo"


class EngineError(Exception):
    """A run failed; the message is meant for the user as is."""


# ---- host checks ------------------------------------------------------------------

def mount_of(path, mountinfo=MOUNTINFO):
    """(mount point, fs type) of the mount holding ``path``."""
    best = ("/", None)
    path = os.path.abspath(path)
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ")
            fstype = fields[sep + 1]
            if path == point or path.startswith(point.rstrip("/") + "/") or point == "/":
                if len(point) >= len(best[0]):
                    best = (point, fstype)
    return best


def check_bpffs(pin_dir):
    point, fstype = mount_of(pin_dir)
    if fstype == "bpf":
        return
    how = ("mount it with 'mount -t bpf bpf %s' and make it permanent with the /etc/fstab line "
           "'bpf %s bpf defaults 0 0'" % (BPFFS, BPFFS))
    if pin_dir == BPFFS or pin_dir.startswith(BPFFS + "/"):
        raise EngineError("bpffs is not mounted at %s (pin_dir %s is on %s, a %s mount): %s"
                          % (BPFFS, pin_dir, point, fstype, how))
    raise EngineError("pin_dir %s is not on bpffs (it is on %s, a %s mount): use a directory under %s, "
                      "where bpffs is mounted (if it is not: %s)" % (pin_dir, point, fstype, BPFFS, how))


def check_trust(cfg, pin_dirs=()):
    """trust.py: the directories root writes to, compiles from and loads
    from are root's and only root can write them (docs/design.md, "Trust
    model").  Raises EngineError naming the option, path, mode and owner."""
    try:
        dirs = [("state_dir", cfg.state_dir), ("pin_dir", cfg.pin_dir)] + [("pin_dir", d) for d in pin_dirs]
        if cfg.state == "present":
            dirs += [("build_dir", cfg.build_dir)] + ([("source", cfg.source)] if cfg.source else [])
        for field, path in dirs:
            trust.trusted_dir(path, field)
    except trust.TrustError as exc:
        raise EngineError(str(exc))


def _short(digest):
    return digest[:16] if digest else None


# ---- the build we want ------------------------------------------------------------

class Build:
    """Which data plane to run: digest, object path and where its source is."""

    def __init__(self, digest, obj, source_dir, sources=None, compiler=None, sha256=None, clang=None,
                 recorded=False):
        self.digest, self.obj, self.source_dir = digest, obj, source_dir
        self.sources, self.compiler = sources, compiler
        self.sha256 = sha256        # of the object (build.verify_object), recorded in the state file
        self.clang = clang          # the compiler's absolute path, recorded for restore
        self.recorded = recorded    # restore: taken from the state file


def resolve_compiler(clang):
    """The absolute path of the ``clang`` option (PATH lookup), checked
    with trust.trusted_file; None when it is not found (compiler_version
    then says so)."""
    path = shutil.which(clang)
    if path is None:
        return None
    path = os.path.abspath(path)
    try:
        trust.trusted_file(path, "clang")
    except trust.TrustError as exc:
        raise EngineError(str(exc))
    return path


def sources_from_option(value):
    """The action plugin's ``_sources`` ({file name: text}) as bytes, checked."""
    if not isinstance(value, dict) or set(value) != {build.SOURCE, build.HEADER}:
        raise EngineError("internal option _sources must map exactly %s and %s to their text"
                          % (build.SOURCE, build.HEADER))
    return dict((k, v.encode("utf-8") if not isinstance(v, bytes) else v) for k, v in value.items())


def desired_build(cfg, sources=None):
    """Build for ``cfg``: from cfg.source (a host directory) or the shipped ``sources``."""
    try:
        if cfg.source:
            if not os.path.isdir(cfg.source):
                raise EngineError("source: %s is not a directory" % cfg.source)
            data = build.read_sources(cfg.source)
            source_dir = cfg.source
        elif sources is not None:
            data = sources_from_option(sources)
            tag = hashlib.sha256(b"".join(k.encode() + b"\0" + data[k] + b"\0" for k in sorted(data)))
            source_dir = os.path.join(cfg.build_dir, "src", tag.hexdigest()[:16])
        else:
            raise EngineError("no data-plane source: run the module through its action plugin "
                              "(netfleet.xdp_lb.xdp_lb) or set source to a directory holding %s and %s"
                              % (build.SOURCE, build.HEADER))
        clang = resolve_compiler(cfg.clang)
        compiler = build.compiler_version(clang or cfg.clang)
    except build.BuildError as exc:
        raise EngineError(str(exc))
    digest = build.build_hash(data, cfg.defines(), compiler)
    obj = build.object_path(cfg.build_dir, digest)
    return Build(digest, obj, source_dir, data, compiler, sha256=build.verify_object(obj)[0], clang=clang)


def recorded_build(cfg, rec):
    """restore: the Build the state file records, its paths checked to be
    those the engine itself derives (the object in build_dir, named by the
    build hash; the sources in ``source`` or build_dir/src/)."""
    digest = rec.get("hash")
    if not isinstance(digest, str) or len(digest) != 64:
        raise EngineError("the state file records no build hash; run the playbook again")
    obj = build.object_path(cfg.build_dir, digest)
    if rec.get("object") != obj:
        raise EngineError("the state file names the object %r, not %s (build %s in build_dir): refusing a "
                          "path taken from a file; run the playbook again" % (rec.get("object"), obj, _short(digest)))
    src = rec.get("source_dir")
    if src != cfg.source and (not isinstance(src, str) or
                              os.path.dirname(src) != os.path.join(cfg.build_dir, "src")):
        raise EngineError("the state file names the source dir %r, neither the source option nor below %s/src: "
                          "refusing it; run the playbook again" % (src, cfg.build_dir))
    return Build(digest, obj, src, sha256=rec.get("object_sha256"), clang=rec.get("clang"), recorded=True)


def rebuild_recorded(cfg, b, why):
    """restore: compile build ``b`` again with the recorded compiler, only
    when that compiler is root's and the recorded sources and compiler
    give the recorded build hash."""
    fail = "%s, and it cannot be rebuilt: %%s; run the playbook again" % why
    if not b.clang or not os.path.isabs(b.clang):
        raise EngineError(fail % "the state file records no compiler path")
    try:
        trust.trusted_file(b.clang, "clang")
        trust.trusted_dir(b.source_dir, "source_dir")
        srcs = build.read_sources(b.source_dir)
        version = build.compiler_version(b.clang)
    except (trust.TrustError, build.BuildError) as exc:
        raise EngineError(fail % exc)
    if build.build_hash(srcs, cfg.defines(), version) != b.digest:
        raise EngineError(fail % ("the sources in %s with %s (%s) are not build %s"
                                  % (b.source_dir, b.clang, version, _short(b.digest))))
    for path in (b.obj, build.digest_path(b.obj)):
        if os.path.lexists(path):
            os.unlink(path)
    return build.compile_object(b.source_dir, cfg.build_dir, cfg.defines(), clang=b.clang, compiler=version)


def compile_build(cfg, b):
    """Write shipped sources (if any) and compile; returns the object path."""
    try:
        if not cfg.source and b.sources is not None:
            # build_dir/src/<tag>: created and checked (trust.py); files replaced, never written through
            trust.make_dir(b.source_dir, "build_dir")
            for name, data in b.sources.items():
                path = os.path.join(b.source_dir, name)
                if trust.read_trusted(path) != data:
                    trust.atomic_write(path, data, 0o644)
        sha, why = build.verify_object(b.obj, b.sha256) if b.obj else (None, None)
        if sha:
            b.sha256 = sha
            return b.obj
        if b.recorded:
            obj, digest, _cached = rebuild_recorded(cfg, b, why)
        else:
            obj, digest, _cached = build.compile_object(b.source_dir, cfg.build_dir, cfg.defines(),
                                                        clang=b.clang or cfg.clang, compiler=b.compiler)
        sha, why = build.verify_object(obj)
        if not sha:
            raise EngineError("the compiled object does not verify: %s" % why)
    except (build.BuildError, trust.TrustError) as exc:
        raise EngineError(str(exc))
    b.digest, b.obj, b.sha256 = digest, obj, sha
    return obj


def verifier_message(exc, b):
    lines = list(getattr(exc, "log", None) or [])
    text = "the kernel rejected the data plane (%s, build %s): %s" % (
        os.path.join(b.source_dir or "?", build.SOURCE), _short(b.digest), exc)
    if lines:
        text += "\nverifier log (last lines):\n" + "\n".join(lines)
    return text


# ---- pinned program ---------------------------------------------------------------

def pinned_program(pin_dir):
    """{'fd', 'id', 'tag'} of the pinned program, or None."""
    path = os.path.join(pin_dir, PROG_PIN)
    if not os.path.exists(path):
        return None
    try:
        fd = bpf.obj_get(path)
    except bpf.BPFError:
        return None
    info = bpf.fd_info(fd)
    return {"fd": fd, "id": int(info.get("prog_id", 0)), "tag": info.get("prog_tag")}


def prog_info(fd):
    info = bpf.fd_info(fd)
    return {"fd": fd, "id": int(info.get("prog_id", 0)), "tag": info.get("prog_tag")}


def pin_program(fd, pin_dir):
    """Pin ``fd`` at <pin_dir>/prog, replacing atomically (pin beside, rename over)."""
    path = os.path.join(pin_dir, PROG_PIN)
    tmp = path + "_new"   # bpffs refuses names with dots
    if os.path.exists(tmp):
        os.unlink(tmp)
    bpf.obj_pin(fd, tmp)
    try:
        os.rename(tmp, path)
    except OSError:
        # bpffs without rename support: unlink + pin (the attachment holds the program meanwhile)
        os.unlink(tmp)
        if os.path.exists(path):
            os.unlink(path)
        bpf.obj_pin(fd, path)


def remove_pins(pin_dir):
    """Unlink every pin in ``pin_dir`` and the directory; True if anything was there."""
    if not os.path.isdir(pin_dir):
        return False
    for name in os.listdir(pin_dir):
        path = os.path.join(pin_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            remove_pins(path)
        else:
            os.unlink(path)
    os.rmdir(pin_dir)
    return True


def _close(fd):
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def programs_on(names):
    """(name, ifindex, netlink.xdp_query) of each of ``names`` that exists and runs an XDP program."""
    for name in names:
        idx = netlink.link_index(name)
        if idx is None:
            continue
        a = netlink.xdp_query(idx)
        if a["prog_id"]:
            yield name, idx, a


def detach_attached(name, idx, attached):
    """Detach the program ``attached`` (from netlink.xdp_query) from one interface."""
    fd = bpf.prog_fd_by_id(attached["prog_id"])
    try:
        netlink.xdp_detach(name, idx, attached["mode"], fd)
    finally:
        _close(fd)


# ---- descriptions (diff, results, info) --------------------------------------------

def describe_tables(t, weights=None, digests=None):
    """Services and backends as the maps hold them (weights from the state file if known).

    ``digests``: {service id: ring digest} already known for ``t.rings``.
    """
    weights = weights or {}
    digests = digests or {}
    backends = t.active_backends()
    out = []
    for skey in sorted(t.services):
        sid, slot, sched = t.service_entry(skey)
        items = []
        for bid in sorted(backends):
            service_id, address, port, active = backends[bid]
            if service_id != sid or not active:
                continue
            items.append({"address": address, "port": port, "id": bid,
                          "weight": weights.get(maps.backend_key_str(skey, address, port))})
        ring = digests.get(sid) if sid in digests else maps.ring_digest(t.rings.get(sid))
        out.append({"service": skey, "id": sid, "scheduler": maps.SCHED_NAMES.get(sched, str(sched)),
                    "ring": ring, "backends": items})
    return out


def describe_config(cfg, sids, bids, rings, digests=None):
    """Services and backends as ``cfg`` wants them; ``digests``: {service key: full ring digest}."""
    digests = digests or {}
    out = []
    for svc in sorted(cfg.services, key=lambda s: s.key):
        items = []
        for b in sorted(svc.backends, key=lambda b: bids[maps.backend_key_str(svc.key, b.address, b.port)]):
            items.append({"address": b.address, "port": b.port, "weight": b.weight,
                          "id": bids[maps.backend_key_str(svc.key, b.address, b.port)]})
        ring = digests[svc.key][:12] if digests.get(svc.key) else maps.ring_digest(rings.get(svc.key))
        out.append({"service": svc.key, "id": sids[svc.key], "scheduler": svc.scheduler,
                    "ring": ring, "backends": items})
    return out


def weights_of(prev):
    out = {}
    for s in ((prev or {}).get("config") or {}).get("services", []):
        skey = maps.service_key_str(s["vip"], s["port"], s["protocol"])
        for b in s.get("backends", []):
            out[maps.backend_key_str(skey, b["address"], b.get("port", 0))] = b.get("weight")
    return out


# ---- the engine -------------------------------------------------------------------

class Engine:
    """One run for one instance.  ``result`` collects what the module returns."""

    def __init__(self, cfg, check_mode=False, sources=None, build_override=None, want_diff=True,
                 clear_overrides=False):
        self.cfg = cfg
        self.clear_overrides = clear_overrides   # end the operator's overrides (overrides.py)
        self.check = check_mode
        self.sources = sources
        self.build_override = build_override   # restore: Build from the state file
        self.want_diff = want_diff
        self.warnings = []
        self.changes = []
        self.carry = False          # recreated maps: copy the connection tables over
        self.preflight = None
        self._ids = ({}, {})        # (service ids, backend ids) of the planned tables

    # -- entry --
    def run(self):
        cfg = self.cfg
        check_trust(cfg)
        if cfg.state == "absent":
            prev = state.load(cfg.state_file)
            old_pin = ((prev or {}).get("config") or {}).get("pin_dir")
            check_trust(cfg, [old_pin] if isinstance(old_pin, str) and old_pin != cfg.pin_dir else [])
            ns = cfg.netns or (prev or {}).get("netns")
            with netlink.in_netns(ns):
                return self._absent(prev)
        with netlink.in_netns(cfg.netns):
            return self._present()

    # -- present --
    def _present(self):
        cfg = self.cfg
        netlink.need_pyroute2()
        check_bpffs(cfg.pin_dir)
        # Operator overrides (xdp-lb drain|undrain|weight|ports, overrides.py)
        try:
            self.ovr = overrides.load(cfg.state_dir, cfg.name)
            self.ovr_ports = overrides.load_ports(cfg.state_dir, cfg.name)
        except overrides.OverrideError as exc:
            raise EngineError(str(exc))
        if self.clear_overrides:
            self.ovr_clear = bool(self.ovr or overrides.describe_ports(self.ovr_ports))
            self.ovr, self.ovr_ports = {}, {"add": [], "remove": []}
        else:
            self.ovr_clear = False
        self.redirect = overrides.redirect_ports(cfg.redirect_interfaces, self.ovr_ports) \
            if cfg.mode == "redirect" else list(cfg.redirect_interfaces)
        with netlink.iproute() as ipr:
            ifindex = {}
            for field, names in (("interfaces", cfg.interfaces), ("redirect_interfaces", self.redirect)):
                for i, name in enumerate(names):
                    idx = netlink.link_index(name)
                    if idx is None:
                        where = " in network namespace %s" % cfg.netns if cfg.netns else ""
                        raise EngineError("%s[%d]: interface %s not found%s" % (field, i, name, where))
                    ifindex[name] = idx
            b = self.build_override or desired_build(cfg, self.sources)
            with state.Lock(cfg.state_dir, cfg.name, create=not self.check):
                prev = state.load(cfg.state_file)
                pinned = pinned_program(cfg.pin_dir)
                mapset = maps.MapSet(cfg.pin_dir)
                try:
                    return self._present_locked(ipr, ifindex, b, prev, pinned, mapset)
                finally:
                    mapset.close()
                    _close(pinned["fd"] if pinned else None)

    def _snat(self, ipr):
        """NAT source per family in use: configured (an address the host
        has), else what the kernel would use."""
        cfg = self.cfg
        out = {4: None, 6: None}
        if cfg.mode != "nat":
            return out
        for fam in (4, 6):
            value = getattr(cfg, "nat_source_ipv%d" % fam)
            if value is not None and not netlink.has_address(ipr, value):
                raise EngineError("nat_source_ipv%d: %s is not an address of this host%s; replies from the "
                                  "backends would not come back to it (add it to an interface or leave the "
                                  "option out to use the kernel's source address)"
                                  % (fam, value, " (network namespace %s)" % cfg.netns if cfg.netns else ""))
        for fam in cfg.families():
            value = getattr(cfg, "nat_source_ipv%d" % fam)
            if value is None:
                # allow_no_backends: a service may have none; the first that has one
                with_backends = [s for s in cfg.services if s.family == fam and s.backends]
                if not with_backends:
                    continue
                svc = with_backends[0]
                first = svc.backends[0].address
                value = netlink.source_address(first)
                if value is None:
                    raise EngineError("nat_source_ipv%d: cannot detect the source address towards %s "
                                      "(services[%d].backends[0]): no route; add a route or set "
                                      "nat_source_ipv%d" % (fam, first, cfg.services.index(svc), fam))
            out[fam] = value
        return out

    def _neighbours(self, ipr):
        """DSR: (address, ifindex, ifname) of every backend; backends must be on-link."""
        cfg = self.cfg
        out = []
        if cfg.mode != "dsr":
            return out
        for i, svc in enumerate(cfg.services):
            for j, bk in enumerate(svc.backends):
                route = netlink.route_to(ipr, bk.address)
                path = "services[%d].backends[%d].address" % (i, j)
                if route is None or not route.get("oif"):
                    raise EngineError("%s: %s has no route; dsr needs backends on a directly connected "
                                      "network" % (path, bk.address))
                if route.get("gateway"):
                    raise EngineError("%s: %s is reached via gateway %s; dsr rewrites only the MAC "
                                      "address, so backends must be on a directly connected network"
                                      % (path, bk.address, route["gateway"]))
                if route.get("type") not in (None, 1):   # RTN_UNICAST
                    raise EngineError("%s: %s is a local or special address (route type %s), not a backend"
                                      % (path, bk.address, route.get("type")))
                item = (bk.address, route["oif"], netlink.link_name(route["oif"]))
                if item not in out:
                    out.append(item)
        return out

    def _keep_running_instance(self, prev, pinned, attached, dropped):
        """Refuse to start a program with empty maps beside a running one of
        this instance: when pin_dir changed, or when its pins are not there
        (bpffs not mounted, or mounted anew, while the program runs)."""
        cfg = self.cfg
        prev_id = (prev.get("program") or {}).get("id")
        running = sorted([n for n, a in attached.items() if prev_id and a["prog_id"] == prev_id] +
                         [n for n, _i, a in dropped if prev_id and a["prog_id"] == prev_id])
        old_pin = (prev.get("config") or {}).get("pin_dir")
        if old_pin and old_pin != cfg.pin_dir and (running or os.path.lexists(old_pin)):
            raise EngineError(
                "pin_dir: %s differs from %s, where instance %s runs (%s): a new pin_dir would start a "
                "new program with empty maps (conntrack lost) and leave the old pins behind. Keep pin_dir "
                "%s, or remove the instance first (state: absent) and deploy it again with the new pin_dir"
                % (cfg.pin_dir, old_pin, cfg.name,
                   "attached to %s" % ", ".join(running) if running else "its pins are there", old_pin))
        if running and (pinned is None or pinned["id"] != prev_id):
            raise EngineError(
                "%s run(s) program %d of instance %s, but %s does not hold its pins (bpffs not mounted at "
                "%s, or mounted anew, while the program runs): loading now would replace it with a program "
                "with empty maps (conntrack lost). Mount the bpffs that holds the pins again, or remove the "
                "instance (state: absent) to start afresh"
                % (", ".join(running), prev_id, cfg.name, cfg.pin_dir, BPFFS))

    def _present_locked(self, ipr, ifindex, b, prev, pinned, mapset):
        cfg = self.cfg
        sizes = cfg.defines()
        prev = prev or {}
        prev_prog_id = (prev.get("program") or {}).get("id")
        ours = set(i for i in (pinned["id"] if pinned else None, prev_prog_id) if i)

        # what is attached where
        attached = dict((name, netlink.xdp_query(ifindex[name])) for name in cfg.interfaces)
        for i, name in enumerate(cfg.interfaces):
            a = attached[name]
            if a["prog_id"] and a["prog_id"] not in ours:
                raise EngineError("interfaces[%d]: interface %s already has an XDP program (id %d, %s) that "
                                  "instance %s does not manage; detach it first (ip link set dev %s xdp off) or "
                                  "pick another interface" % (i, name, a["prog_id"], a["mode"], cfg.name, name))
        gone = [n for n in sorted((prev.get("interfaces") or {})) if n not in cfg.interfaces]
        dropped = [(name, idx, a) for name, idx, a in programs_on(gone) if a["prog_id"] in ours]
        self._keep_running_instance(prev, pinned, attached, dropped)

        # maps: reuse, or recreate if the build changes their shape; a map
        # that no layout of ours had is not recreated unless asked
        foreign = mapset.foreign(sizes) if mapset.any_exists() else []
        if foreign and not cfg.recreate_foreign_maps:
            raise EngineError("pin_dir %s holds maps that are not this data plane's, nor of an older layout "
                              "of it: %s. Nothing was changed. Remove them, pick another pin_dir, or set "
                              "recreate_foreign_maps: true to replace every map of the instance (connection "
                              "tracking and counters start empty)"
                              % (cfg.pin_dir, "; ".join("%s: %s" % f for f in foreign)))
        resize = mapset.shape_mismatch(sizes) if mapset.any_exists() else []
        # recreated maps get the connection tables' entries before the swap
        self.carry = bool(resize) and not foreign and maps.migratable(mapset)
        if resize and self.carry:
            self.warnings.append("map shapes change (%s): the maps are recreated; established flows "
                                 "(connection tables) are carried over, counters start at zero"
                                 % ", ".join(resize))
        elif foreign:
            self.warnings.append("maps not of this data plane (%s) are recreated as asked "
                                 "(recreate_foreign_maps): conntrack and counters start empty"
                                 % "; ".join("%s: %s" % f for f in foreign))
        elif resize:
            self.warnings.append("map sizes change (%s): the maps are recreated, conntrack and counters "
                                 "start empty" % ", ".join(resize))
        live = Tables() if resize or not mapset.exists() else \
            maps.read_tables(mapset, cfg.ring_size, cfg.max_backends)
        snat = self._snat(ipr)
        tx = [ifindex[n] for n in self.redirect]
        try:
            sids, bids = maps.assign_ids(cfg.services, live, prev.get("ids"), cfg.max_services, cfg.max_backends)
        except maps.MapError as exc:
            raise EngineError(str(exc))
        # Health checks (health.py): backends the checker's status file says
        # are down get weight 0 in the rings; the state file keeps the
        # configured weights.  A ring whose inputs (effective weights, ids,
        # scheduler, size) are those recorded, and whose live copy is still
        # the recorded one, is taken from the maps instead of being built.
        # Only while health checks are on: the status file of a checker that
        # is turned off is never applied, and goes (stale_status below).
        down = health.drained(cfg.state_dir, cfg.name) if cfg.health_checks else frozenset()
        stale_status = health.status_path(cfg.state_dir, cfg.name)
        if cfg.health_checks or not os.path.exists(stale_status):
            stale_status = None
        # Operator overrides (xdp-lb drain|undrain|weight, overrides.py) win
        # over health; a run names each one and keeps it unless told to clear.
        ovr = self.ovr
        if self.ovr_clear:
            self.changes.append("clear the operator overrides (%s)" % overrides.path(cfg.state_dir, cfg.name))
        stale = overrides.stale(cfg.services, ovr)
        kept = ["%s%s" % (overrides.describe(key, ovr[key]),
                          " (no such backend in the configuration: no effect)" if key in stale else "")
                for key in sorted(ovr)]
        if cfg.mode == "redirect":
            kept += overrides.describe_ports(self.ovr_ports)
        for text in kept:
            self.warnings.append("operator override kept: %s; end it with 'xdp-lb override clear' or "
                                 "clear_overrides: true" % text)
        rings, ring_record, built = maps.service_rings(
            [overrides.effective(s, down, ovr) for s in cfg.services], sids, bids, cfg.ring_size, live,
            prev.get("rings"))
        digests = dict((k, v["ring"]) for k, v in ring_record.items())
        # rings taken from the maps: their live digest is known too (diff before)
        live_digests = dict((sids[k], v["ring"][:12]) for k, v in ring_record.items() if k not in built)
        want = maps.desired_tables(cfg, sids, bids, live, snat[4], snat[6], tx, rings)
        ops = maps.plan(live, want, cfg.ring_size)
        self._ids = (sids, bids)
        guard = natguard.want(cfg, snat)
        guard_there = natguard.present(cfg.name)
        guard_change = None
        if guard is not None and (not guard_there or prev.get("nat_guard") != guard):
            guard_change = "apply"
        elif guard is None and guard_there:
            guard_change = "remove"

        # program
        prev_hash = (prev.get("build") or {}).get("hash")
        need_load = bool(pinned is None or prev_hash != b.digest or resize or not mapset.exists())
        attach = []
        for name in cfg.interfaces:
            a = attached[name]
            if need_load or a["prog_id"] != pinned["id"] or a["mode"] != cfg.attach_mode:
                attach.append(name)

        # DSR neighbours
        neigh_want = self._neighbours(ipr)
        neigh_add = []
        for address, idx, ifname in neigh_want:
            n = netlink.neighbour(ipr, address, idx)
            if n is None or not (n["managed"] or n["nud"] & (netlink.NUD_PERMANENT | netlink.NUD_NOARP)):
                neigh_add.append((address, idx, ifname))
        neigh_drop = []
        for address, ifname in prev.get("neighbours") or []:
            if any(address == w[0] and ifname == w[2] for w in neigh_want):
                continue
            idx = netlink.link_index(ifname)
            if idx is None:
                continue
            n = netlink.neighbour(ipr, address, idx)
            if n and n["managed"]:
                neigh_drop.append((address, idx, ifname))

        # the record
        prev_build = prev.get("build") or {}

        def record(program):
            return {
                "version": state.STATE_VERSION,
                "name": cfg.name,
                "netns": cfg.netns,
                "config": cfg.to_dict(),
                "build": {"hash": b.digest, "object": b.obj, "source_dir": b.source_dir,
                          "object_sha256": b.sha256 or (prev_build.get("object_sha256")
                                                        if prev_build.get("hash") == b.digest else None),
                          "clang": b.clang or prev_build.get("clang"),
                          "defines": sizes, "abi": layout.ABI_VERSION,
                          "map_shapes": dict((k, list(v)) for k, v in
                                             sorted(maps.expected_map_shapes(sizes).items()))},
                "program": program,
                "ids": {"services": sids, "backends": bids},
                "rings": ring_record,
                "nat_source": {"ipv4": snat[4], "ipv6": snat[6]},
                "neighbours": [[a, n] for a, _i, n in neigh_want],
                "interfaces": dict((n, {"mode": cfg.attach_mode}) for n in cfg.interfaces),
                "nat_guard": guard,
            }

        program_now = {"id": pinned["id"], "tag": pinned["tag"]} if pinned else None
        if not need_load and prev != record(program_now):
            self.changes.append("state file %s" % cfg.state_file)
        if guard_change == "apply":
            self.changes.append("nat guard: nftables table inet %s drops TCP/UDP to %s ports %d-%d "
                                "while no program is attached" % (
                                    guard["table"], ", ".join(a for a in (guard["ipv4"], guard["ipv6"]) if a),
                                    guard["ports"][0], guard["ports"][1]))
        elif guard_change == "remove":
            self.changes.append("remove nat guard (nftables table inet %s)" % natguard.table_name(cfg.name))
        if need_load:
            self.changes.append("load program build %s%s" % (
                _short(b.digest), " (maps recreated: %s)" % ", ".join(resize) if resize else ""))
        for name in attach:
            a = attached[name]
            verb = "replace program on" if a["prog_id"] else "attach to"
            self.changes.append("%s %s (%s)" % (verb, name, cfg.attach_mode))
        for name, _idx, _a in dropped:
            self.changes.append("detach from %s (no longer listed)" % name)
        self.changes.extend(maps.summarize(ops))
        for address, _idx, ifname in neigh_add:
            self.changes.append("managed neighbour %s on %s" % (address, ifname))
        for address, _idx, ifname in neigh_drop:
            self.changes.append("remove managed neighbour %s on %s" % (address, ifname))
        if stale_status:
            self.changes.append("remove health status %s (health checks are off)" % stale_status)
        changed = bool(self.changes)

        services_after = describe_config(cfg, sids, bids, rings, digests)
        result = {
            "changed": changed, "name": cfg.name, "state": "present", "mode": cfg.mode,
            "pin_dir": cfg.pin_dir, "state_file": cfg.state_file, "netns": cfg.netns,
            "nat_source_ipv4": snat[4], "nat_source_ipv6": snat[6],
            "services": services_after,
            "changes": self.changes,
        }
        if self.want_diff:
            before = {"state": "absent"}
            if prev or pinned or mapset.any_exists():
                cfg_live = maps.decode_config(layout.LbConfig.from_buffer_copy(live.config)) if live.config else {}
                before = {
                    "state": "present",
                    "mode": cfg_live.get("mode"),
                    "program": {"build": _short(prev_hash), "id": pinned["id"] if pinned else None},
                    "interfaces": dict((n, {"prog_id": a["prog_id"], "mode": a["mode"]})
                                       for n, a in attached.items() if a["prog_id"]),
                    "nat_source_ipv4": cfg_live.get("nat_source_ipv4"),
                    "nat_source_ipv6": cfg_live.get("nat_source_ipv6"),
                    "redirect_ports": [netlink.link_name(i) or i for _s, i in sorted(live.tx_ports.items())],
                    "services": describe_tables(live, weights_of(prev), live_digests),
                }
                for name, _idx, a in dropped:
                    before["interfaces"][name] = {"prog_id": a["prog_id"], "mode": a["mode"]}
            after = {
                "state": "present", "mode": cfg.mode,
                "program": {"build": _short(b.digest),
                            "id": "(new)" if need_load else pinned["id"]},
                "interfaces": dict((n, {"prog_id": "(new)" if need_load else pinned["id"],
                                        "mode": cfg.attach_mode}) for n in cfg.interfaces),
                "nat_source_ipv4": snat[4], "nat_source_ipv6": snat[6],
                "redirect_ports": list(self.redirect),
                "services": services_after,
            }
            result["diff"] = {"before": before, "after": after}

        if self.check or not changed:
            result.update(self._report(ifindex, pinned, mapset, b, need_load))
            return result

        # ---- apply ----
        try:
            if guard_change == "apply":
                natguard.apply(cfg.name, guard)
            elif guard_change == "remove":
                natguard.remove(cfg.name)
        except natguard.GuardError as exc:
            raise EngineError("nat_guard: %s" % exc)
        program = self._apply(ipr, ifindex, attached, dropped, b, pinned, mapset, ops, need_load, resize,
                              live, want, neigh_add, neigh_drop)
        state.save(cfg.state_file, record(program))
        if stale_status:
            health.remove_status(cfg.state_dir, cfg.name)
        if self.ovr_clear:
            overrides.save(cfg.state_dir, cfg.name, {}, {"add": [], "remove": []})
        final = pinned_program(cfg.pin_dir)
        try:
            result.update(self._report(ifindex, final, maps.MapSet(cfg.pin_dir), b, need_load))
        finally:
            _close(final["fd"] if final else None)
        if self.preflight:
            result["preflight"] = self.preflight
        if result.get("diff"):
            result["diff"]["after"]["program"]["id"] = program["id"]
            for n in cfg.interfaces:
                result["diff"]["after"]["interfaces"][n]["prog_id"] = program["id"]
        return result

    def _report(self, ifindex, pinned, mapset, b, loaded):
        ifaces = {}
        for name in self.cfg.interfaces:
            a = netlink.xdp_query(ifindex[name])
            ifaces[name] = {"ifindex": ifindex[name], "prog_id": a["prog_id"], "mode": a["mode"]}
        try:
            map_ids = mapset.ids()
        finally:
            mapset.close()
        return {
            "interfaces": ifaces,
            "program": {"id": pinned["id"] if pinned else None, "tag": pinned["tag"] if pinned else None,
                        "build": b.digest, "object": b.obj, "source_dir": b.source_dir,
                        "loaded": bool(loaded and not self.check)},
            "maps": map_ids,
            "warnings": self.warnings,
        }

    def _apply(self, ipr, ifindex, attached, dropped, b, pinned, mapset, ops, need_load, resize, live, want,
               neigh_add, neigh_drop):
        cfg = self.cfg
        created_dirs = []
        for d in (os.path.dirname(cfg.pin_dir), cfg.pin_dir):
            if not os.path.isdir(d):
                os.mkdir(d, 0o700)
                created_dirs.append(d)
        check_trust(cfg)    # what is there now, whoever made it meanwhile
        staging = os.path.join(cfg.pin_dir, STAGING) if resize else None
        loaded = None
        target = mapset
        done = []
        swapped = []        # (name, index) now running the new program
        old_pin_replaced = False
        new = None
        try:
            if need_load:
                obj = compile_build(cfg, b)
                if cfg.preflight:
                    self._preflight(ipr, ifindex, obj, b, want)
                if staging:
                    remove_pins(staging)
                    os.mkdir(staging, 0o700)
                try:
                    loaded = bpf.LoadedObject(obj, pin_root=staging or cfg.pin_dir)
                except bpf.BPFError as exc:
                    raise EngineError(verifier_message(exc, b))
                new = prog_info(loaded.prog_fd)
                if staging:
                    target = maps.MapSet(staging)
            else:
                new = {"fd": pinned["fd"], "id": pinned["id"], "tag": pinned["tag"]}
            if target is not mapset:
                # fresh maps: the diff is against empty tables
                ops = maps.plan(Tables(), want, cfg.ring_size)
            try:
                done = maps.apply(target, ops)
            except (bpf.BPFError, OSError) as exc:
                raise EngineError("writing the maps failed (previous content restored): %s" % exc)
            if target is not mapset and self.carry:
                # last, so that flows the old program starts meanwhile come along
                moved = maps.migrate_flows(mapset, target, self._ids[1],
                                           maps.dataplane_now(cfg.defines().get("XDP_LB_HZ")))
                self.warnings.append("carried %d flows and %d NAT reply entries into the new maps "
                                     "(%d left behind: their backend is gone)"
                                     % (moved["flows"], moved["nat_flows"], moved["dropped"]))

            if need_load:
                pin_program(new["fd"], staging or cfg.pin_dir)
                old_pin_replaced = True
            for name in cfg.interfaces:
                a = attached[name]
                idx = ifindex[name]
                if a["prog_id"] == new["id"] and a["mode"] == cfg.attach_mode:
                    continue
                if a["prog_id"] and a["mode"] != cfg.attach_mode:
                    # native and generic cannot be mixed: this one change detaches first
                    self.warnings.append("%s: attach mode changes from %s to %s; the interface is without "
                                         "a program for a moment" % (name, a["mode"], cfg.attach_mode))
                    old_fd = bpf.prog_fd_by_id(a["prog_id"])
                    try:
                        netlink.xdp_detach(name, idx, a["mode"], old_fd)
                        swapped.append((name, idx, a, "detached"))
                        netlink.xdp_attach(name, idx, new["fd"], cfg.attach_mode)
                        swapped[-1] = (name, idx, a, "attached")
                    finally:
                        _close(old_fd)
                elif a["prog_id"]:
                    old_fd = bpf.prog_fd_by_id(a["prog_id"])
                    try:
                        netlink.xdp_attach(name, idx, new["fd"], cfg.attach_mode, expected_fd=old_fd)
                    finally:
                        _close(old_fd)
                    swapped.append((name, idx, a, "replaced"))
                else:
                    netlink.xdp_attach(name, idx, new["fd"], cfg.attach_mode)
                    swapped.append((name, idx, a, "attached"))
            if staging:
                for name in os.listdir(staging):
                    os.rename(os.path.join(staging, name), os.path.join(cfg.pin_dir, name))
                os.rmdir(staging)
                # an older layout's maps that this one replaced (their entries were carried
                # over), and its caches that this one does not have
                for name in list(layout.LEGACY_MAPS) + list(layout.OBSOLETE_MAPS):
                    if os.path.exists(os.path.join(cfg.pin_dir, name)):
                        os.unlink(os.path.join(cfg.pin_dir, name))
        except Exception as exc:
            problems = self._rollback(swapped, pinned, new, target, done, old_pin_replaced)
            if loaded:
                loaded.close()
            if staging:
                try:
                    remove_pins(staging)
                except OSError:
                    pass
            for d in reversed(created_dirs):
                try:
                    remove_pins(d)
                except OSError:
                    pass
            msg = str(exc) if isinstance(exc, (EngineError, netlink.NetError)) else "%s: %s" % (
                type(exc).__name__, exc)
            if problems:
                msg += "\nrollback was incomplete: " + "; ".join(problems)
            raise EngineError(msg)
        finally:
            if target is not mapset:
                target.close()

        # no longer listed interfaces, then DSR neighbours (after the program runs)
        for name, idx, a in dropped:
            detach_attached(name, idx, a)
        for address, idx, ifname in neigh_add:
            try:
                netlink.set_managed_neighbour(ipr, address, idx)
            except netlink.NetError as exc:
                self.warnings.append("%s; dsr packets to it pass to the kernel until it is resolved" % exc)
        for address, idx, ifname in neigh_drop:
            netlink.delete_neighbour(ipr, address, idx)
        program = {"id": new["id"], "tag": new["tag"]}
        if loaded:
            loaded.close()
        return program

    def _preflight(self, ipr, ifindex, obj, b, want):
        """Run the new object on synthetic packets against scratch maps (preflight.py)."""
        cfg = self.cfg
        sids, bids = self._ids
        try:
            self.preflight = preflight.check(obj, want, cfg, ipr, ifindex,
                                             [ifindex[n] for n in self.redirect], sids, bids)
        except bpf.BPFError as exc:
            raise EngineError(verifier_message(exc, b))
        except preflight.PreflightError as exc:
            raise EngineError("%s\n(build %s from %s; preflight: false skips this check)"
                              % (exc, _short(b.digest), b.source_dir))

    def _rollback(self, swapped, pinned, new, target, done, old_pin_replaced):
        """Undo attachments (newest first), the program pin and the map writes."""
        problems = []
        for name, idx, a, how in reversed(swapped):
            old_fd = None
            try:
                if a["prog_id"]:
                    old_fd = bpf.prog_fd_by_id(a["prog_id"])
                if how == "replaced":
                    netlink.xdp_attach(name, idx, old_fd, a["mode"], expected_fd=new["fd"])
                    continue
                if how == "attached" and new:
                    cur = netlink.xdp_query(idx)
                    if cur["prog_id"] == new["id"]:
                        netlink.xdp_detach(name, idx, cur["mode"], new["fd"])
                if old_fd is not None:
                    netlink.xdp_attach(name, idx, old_fd, a["mode"])
            except (netlink.NetError, bpf.BPFError, OSError) as exc:
                problems.append("%s: %s" % (name, exc))
            finally:
                _close(old_fd)
        if old_pin_replaced:
            try:
                if pinned:
                    pin_program(pinned["fd"], self.cfg.pin_dir)
                else:
                    os.unlink(os.path.join(self.cfg.pin_dir, PROG_PIN))
            except (bpf.BPFError, OSError) as exc:
                problems.append("program pin: %s" % exc)
        problems.extend(maps.revert(target, done))
        return problems

    # -- absent --
    def _absent(self, prev):
        cfg = self.cfg
        netlink.need_pyroute2()
        prev = prev or {}
        changes = []
        # the lock file goes with the instance (removed when this run succeeds)
        with state.Lock(cfg.state_dir, cfg.name, create=not self.check and os.path.isdir(cfg.state_dir)) as lock:
            # the pins are where the instance was installed, whatever this call's default is
            pin_dir = (prev.get("config") or {}).get("pin_dir") or cfg.pin_dir
            pinned = pinned_program(pin_dir)
            ours = set(i for i in (pinned["id"] if pinned else None, (prev.get("program") or {}).get("id")) if i)
            names = list(cfg.interfaces) + [n for n in sorted(prev.get("interfaces") or {}) if n not in cfg.interfaces]
            detach = []
            try:
                with netlink.iproute() as ipr:
                    for name, idx, a in programs_on(names):
                        if a["prog_id"] in ours:
                            detach.append((name, idx, a))
                            changes.append("detach from %s" % name)
                        else:
                            self.warnings.append("%s has XDP program %d, not this instance's: left alone"
                                                 % (name, a["prog_id"]))
                    neigh = []
                    for address, ifname in prev.get("neighbours") or []:
                        idx = netlink.link_index(ifname)
                        n = netlink.neighbour(ipr, address, idx) if idx is not None else None
                        if n and n["managed"]:
                            neigh.append((address, idx, ifname))
                            changes.append("remove managed neighbour %s on %s" % (address, ifname))
                    guard = natguard.present(cfg.name)
                    if guard:
                        changes.append("remove nat guard (nftables table inet %s)" % natguard.table_name(cfg.name))
                    if os.path.isdir(pin_dir):
                        changes.append("remove pins in %s" % pin_dir)
                    if os.path.exists(cfg.state_file):
                        changes.append("remove state file %s" % cfg.state_file)
                    if os.path.exists(health.status_path(cfg.state_dir, cfg.name)):
                        changes.append("remove health status %s" % health.status_path(cfg.state_dir, cfg.name))
                    result = {"changed": bool(changes), "name": cfg.name, "state": "absent", "pin_dir": pin_dir,
                              "state_file": cfg.state_file, "changes": changes, "warnings": self.warnings}
                    if self.want_diff:
                        result["diff"] = {
                            "before": {"state": "present" if changes else "absent",
                                       "interfaces": dict((n, {"prog_id": a["prog_id"], "mode": a["mode"]})
                                                          for n, _i, a in detach),
                                       "program": {"id": pinned["id"] if pinned else None}},
                            "after": {"state": "absent"}}
                    if self.check or not changes:
                        lock.remove = lock.create
                        return result
                    for name, idx, a in detach:
                        detach_attached(name, idx, a)
                    for address, idx, ifname in neigh:
                        netlink.delete_neighbour(ipr, address, idx)
                    if guard:
                        try:
                            natguard.remove(cfg.name)
                        except natguard.GuardError as exc:
                            raise EngineError("nat_guard: %s" % exc)
            finally:
                _close(pinned["fd"] if pinned else None)
            remove_pins(pin_dir)
            state.remove(cfg.state_file)
            health.remove_status(cfg.state_dir, cfg.name)
            lock.remove = lock.create
            return result


def run(cfg, check_mode=False, sources=None, diff=True, clear_overrides=False):
    """Apply (or, in check mode, plan) ``cfg``; returns the module result dict.

    ``clear_overrides``: end the operator's overrides (overrides.py) with this run.
    """
    try:
        return Engine(cfg, check_mode=check_mode, sources=sources, want_diff=diff,
                      clear_overrides=clear_overrides).run()
    except (netlink.NetError, state.StateError, maps.MapError, build.BuildError, trust.TrustError) as exc:
        raise EngineError(str(exc))
    except bpf.BPFError as exc:
        raise EngineError(str(exc) + ("\n" + "\n".join(exc.log) if exc.log else ""))


# ---- restore after boot -----------------------------------------------------------

def restore(state_dir=model.DEFAULT_STATE_DIR, name=None, check_mode=False):
    """Re-apply instance ``name`` (or every instance) from its state file.

    Uses the recorded object (no compiler needed) when it matches the
    digest recorded with it; when it is gone or does not match, recompiles
    it from the recorded source dir with the recorded compiler, if that is
    root's and gives the recorded build hash (rebuild_recorded), else
    fails naming why.  Returns {name: result or error message}.
    """
    if name is not None:
        model.check_name(name)
    elif not os.path.isdir(state_dir):
        raise EngineError("state directory %s does not exist: no load balancer was deployed here" % state_dir)
    names = [name] if name else state.instances(state_dir)
    out = {}
    for n in names:
        path = state.state_path(state_dir, n)
        try:
            data = state.load(path)
            if data is None:
                raise EngineError("no state file %s" % path)
            try:
                cfg = model.Config.from_dict(data["config"])
            except model.ConfigError as exc:
                raise EngineError("state file %s: config.%s" % (path, exc))
            # the recorded object, verified against its recorded digest
            # before it is loaded; missing or altered: rebuilt only with the
            # recorded compiler (compile_build, rebuild_recorded)
            b = recorded_build(cfg, data.get("build") or {})
            eng = Engine(cfg, check_mode=check_mode, build_override=b, want_diff=False)
            out[n] = eng.run()
        except (EngineError, model.ConfigError, state.StateError, netlink.NetError, maps.MapError,
                build.BuildError, bpf.BPFError, trust.TrustError) as exc:
            out[n] = {"failed": True, "msg": str(exc)}
    return out


# ---- info -------------------------------------------------------------------------

def _sum(values):
    return {"packets": sum(v.packets for v in values), "bytes": sum(v.bytes for v in values)}


def _count_keys(m, limit=None):
    return len(m.keys())


def instance_info(data):
    """Live view of one instance (from its state dict): attachments, services, counters."""
    cfg = data.get("config") or {}
    pin_dir = cfg.get("pin_dir")
    out = {"name": data.get("name"), "netns": data.get("netns"), "mode": cfg.get("mode"),
           "attach_mode": cfg.get("attach_mode"), "pin_dir": pin_dir,
           "build": (data.get("build") or {}).get("hash"),
           "interfaces": {}, "services": [], "stats": {}, "redirect_ports": [], "maps": {},
           "conntrack": {}, "program": None}
    pinned = pinned_program(pin_dir) if pin_dir else None
    try:
        if pinned:
            out["program"] = {"id": pinned["id"], "tag": pinned["tag"], "pinned": True}
        with netlink.in_netns(data.get("netns")):
            for name in cfg.get("interfaces") or []:
                idx = netlink.link_index(name)
                if idx is None:
                    out["interfaces"][name] = {"ifindex": None, "prog_id": None, "mode": None,
                                               "ours": False, "tag": None}
                    continue
                a = netlink.xdp_query(idx)
                tag = None
                if a["prog_id"]:
                    try:
                        fd = bpf.prog_fd_by_id(a["prog_id"])
                        tag = bpf.fd_info(fd).get("prog_tag")
                        _close(fd)
                    except bpf.BPFError:
                        pass
                out["interfaces"][name] = {"ifindex": idx, "prog_id": a["prog_id"] or None, "mode": a["mode"],
                                           "tag": tag, "ours": bool(pinned and a["prog_id"] == pinned["id"])}
            redirect = cfg.get("redirect_interfaces") or []
            with maps.MapSet(pin_dir) as ms:
                if not ms.exists():
                    return out
                out["maps"] = ms.ids()
                ring_size = cfg.get("ring_size") or layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
                max_backends = cfg.get("max_backends") or layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"]
                t = maps.read_tables(ms, ring_size, max_backends)
                weights = weights_of(data)
                be_stats = ms.get("lb_be_stats")
                services = describe_tables(t, weights)
                for s in services:
                    entry = t.service_entry(s["service"])
                    s["ring_slot"] = entry[1]
                    s["ring_addr_digest"] = maps.ring_addr_digest(t.rings.get(entry[0]), t.backends)
                    for bk in s["backends"]:
                        counters = be_stats.lookup(layout.U32(bk["id"]))
                        bk.update(_sum(counters or []))
                out["services"] = services
                stats = ms.get("lb_stats")
                for i, name in enumerate(layout.STATS):
                    out["stats"][name] = _sum(stats.lookup(layout.U32(i)) or [])
                ports = ms.get("lb_port_stats")
                for slot, ifidx in sorted(t.tx_ports.items()):
                    item = {"slot": slot, "ifindex": ifidx,
                            "interface": netlink.link_name(ifidx) or
                            (redirect[slot] if slot < len(redirect) else None)}
                    item.update(_sum(ports.lookup(layout.U32(slot)) or []))
                    out["redirect_ports"].append(item)
                out["conntrack"] = {"flows": _count_keys(ms.get("lb_ct")),
                                    "nat_flows": _count_keys(ms.get("lb_nat_rev"))}
                if t.config:
                    out["config"] = maps.decode_config(layout.LbConfig.from_buffer_copy(t.config))
    finally:
        _close(pinned["fd"] if pinned else None)
    return out


def info(state_dir=model.DEFAULT_STATE_DIR, name=None):
    """[instance_info] for ``name`` or every instance with a state file."""
    if name is not None:
        model.check_name(name)
    names = [name] if name else state.instances(state_dir)
    out = []
    for n in names:
        try:
            data = state.load(state.state_path(state_dir, n))
        except state.StateError as exc:
            out.append({"name": n, "error": str(exc)})
            continue
        if data is None:
            if name:
                out.append({"name": n, "error": "no state file %s" % state.state_path(state_dir, n)})
            continue
        try:
            out.append(instance_info(data))
        except (netlink.NetError, bpf.BPFError, maps.MapError, OSError, ValueError) as exc:
            out.append({"name": n, "error": "%s: %s" % (state.state_path(state_dir, n), exc)})
    return out
