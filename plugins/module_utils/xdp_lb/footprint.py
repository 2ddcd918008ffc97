# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The balancer's host footprint: from the module's domain options to the
artifacts on the host.

``plan`` turns the options (restore_at_boot, host_command, health_checks,
metrics, sysctls, mount_bpffs, packages) into what must be on the host:
files, links, directories and paths that must be absent, each named by
what it is ("restore unit", "health checker", ...), the sysctls the mode
needs, and the services with the state they must be in.  It is pure: it
reads nothing but what it is given, so it is unit tested on its own.

``Footprint`` runs a plan in the module's order:

1. ``check`` (before anything changes): the OS, the packages, every
   difference from the host (hostsetup.compare), every check of what will
   be written (sysctl keys exist, unit files pass systemd-analyze verify).
2. ``prepare_host`` (only what the balancer needs to run): missing
   packages installed, bpffs mounted.
3. (the balancer, engine.run: it checks its own input before it changes
   anything)
4. ``apply``: services turned off are stopped and disabled, then their
   files go; files and links are written (atomically) and sysctls set;
   systemd is reloaded; what is turned on is started (or restarted when
   its unit or settings changed); the metrics file is written once if it
   is not there yet.

An option left unset (None) leaves its artifacts alone, so the module
without them manages nothing around the balancer; the role sets them all.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    health, hostsetup, packages, services, state, trust, units, validate)

DEFAULT_ENGINE_DIR = "/usr/local/lib/netfleet-xdp-lb"
DEFAULT_BIN_DIR = "/usr/local/sbin"
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_SYSTEMD_DIR = "/etc/systemd/system"
DEFAULT_METRICS_DIR = "/var/lib/prometheus/node-exporter"
HEALTH_DEFAULTS = dict(enabled=False, interval=2.0, timeout=1.0, rise=2, fall=2,
                       probes=health.DEFAULTS["probes"])


class FootprintError(Exception):
    pass


def sysctl_file_path(name):
    return "/etc/sysctl.d/60-netfleet-xdp-lb-%s.conf" % name


def sysctl_saved_path(state_dir, name):
    """The values the sysctls had before they were first set."""
    return os.path.join(state_dir, "sysctl", "%s.json" % name)


def sysctl_saved_legacy(state_dir, name):
    """Where the role kept them before the module owned them: read once, then
    moved to sysctl_saved_path (hosts upgrade in place)."""
    return os.path.join(state_dir, "role", "%s.sysctl.json" % name)


def mode_sysctls(mode, interfaces):
    """What each mode needs from the kernel (values as sysctl prints them).

    nat: the kernel forwards what XDP passes up (first packets of a flow
    whose next hop is not resolved yet); they carry the host's own NAT
    address as source (accept_local) and a VIP or client address as source
    (loose reverse path filter: 2).  A '.' of an interface name is a '/'
    in the key.  dsr: forwarding for the packets XDP passes on untouched.
    """
    out = {}
    if mode in ("nat", "dsr"):
        out.update({"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
    if mode == "nat":
        for i, name in enumerate(interfaces):
            validate.interface_name(name, "interfaces[%d]" % i)
            key = "net.ipv4.conf.%s" % name.replace(".", "/")
            out.update({key + ".accept_local": "1", key + ".rp_filter": "2"})
    return out


def health_settings(opts):
    """The checker's settings from O(health_checks), validated as the checker
    validates them; errors name health_checks.<field> and the value."""
    data = dict((k, opts.get(k)) for k in ("interval", "timeout", "rise", "fall", "probes")
                if opts.get(k) is not None)
    try:
        return health.validate_config(data)
    except health.HealthError as exc:
        raise FootprintError("health_checks.%s" % exc)


def _unit(systemd_dir, unit, what, content, wants, mode="0644"):
    """Files and the enabling link of a unit."""
    path = os.path.join(systemd_dir, unit)
    return ([dict(what=what, path=path, content=content, mode=mode)],
            [dict(what=what + " (enabled)", path=os.path.join(systemd_dir, wants, unit), src=path)])


def _unit_paths(systemd_dir, unit, wants):
    return [os.path.join(systemd_dir, wants, unit), os.path.join(systemd_dir, unit)]


def plan(opts, name, mode, interfaces, state_dir, build_dir, present=True, others=()):
    """What the host must hold for the options ``opts`` (the module's
    footprint options) of instance ``name``.  ``others``: the other
    instances with a state file in ``state_dir`` (host-wide artifacts go
    with the last one).  Raises FootprintError/ValueError on bad input."""
    systemd = opts["systemd_dir"]
    cmd = opts["host_command"]
    python, bin_dir, engine_dir = cmd["python"], cmd["bin_dir"], cmd["engine_dir"]
    hc = opts["health_checks"]
    metrics = opts["metrics"]
    sysctls = opts["sysctls"]
    out = dict(directories=[], files=[], links=[], absent=[], sysctl={}, sysctl_saved=None,
               engine_dir=None, bpffs=False, bpffs_unit=None, services=[], metrics_file=None,
               what={}, packages=opts["packages"], state_dir=state_dir)
    what = out["what"]
    if not present:
        out["packages"] = dict(out["packages"], policy="ignore")

    def absent(label, paths):
        for path in paths:
            out["absent"].append(path)
            what[path] = label

    last = present is False and not others
    # Each host-wide feature: on, off (explicitly), or left alone (None);
    # state=absent turns off what the options name when no instance is left.
    restore = opts["restore_at_boot"]
    metrics_on = metrics["enabled"]
    install = cmd["install"]
    if not present:
        restore = False if (restore is not None and last) else None
        metrics_on = False if (metrics_on is not None and last) else None
        install = False if (install is not None and last) else None
    health_on = bool(hc["enabled"]) and present

    # ---- the engine and the host command
    need_engine = bool(install) or bool(restore) or bool(metrics_on) or health_on
    if need_engine:
        out["directories"].append(dict(what="host command directory", path=bin_dir, mode="0755"))
        out["files"].append(dict(what="host command xdp-lb", path=os.path.join(bin_dir, units.ENTRY_POINT),
                                 mode="0755", content=units.entry_point(python, engine_dir)))
        out["engine_dir"] = engine_dir
    elif install is False and not others:
        absent("host command xdp-lb", [os.path.join(bin_dir, units.ENTRY_POINT)])
        absent("engine", [engine_dir])

    # ---- restore at boot: the restore unit and the NAT guard unit
    boot_units = ((units.RESTORE_UNIT, "restore unit"), (units.GUARD_UNIT, "NAT guard unit"))
    if restore or health_on:
        out["directories"].append(dict(what="systemd wants directory",
                                       path=os.path.join(systemd, "multi-user.target.wants"), mode="0755"))
    if restore:
        contents = {units.RESTORE_UNIT: units.restore_unit(python, bin_dir, state_dir, build_dir),
                    units.GUARD_UNIT: units.guard_unit(python, bin_dir, state_dir)}
        for unit, label in boot_units:
            files, links = _unit(systemd, unit, label, contents[unit], "multi-user.target.wants")
            out["files"] += files
            out["links"] += links
            # Enabled for the next boot; the module's own run did their job.
            out["services"].append(dict(what=label, unit=unit, on=True, start=False,
                                        paths=[f["path"] for f in files]))
    elif restore is False:
        for unit, label in boot_units:
            paths = _unit_paths(systemd, unit, "multi-user.target.wants")
            absent(label, paths)
            out["services"].append(dict(what=label, unit=unit, on=False, paths=paths))

    # ---- health checker (per instance)
    unit = units.health_unit_name(name)
    conf = health.config_path(state_dir, name)
    if health_on:
        settings = health_settings(hc)
        out["directories"].append(dict(what="health directory", path=os.path.dirname(conf), mode="0755"))
        out["files"].append(dict(what="health checker settings", path=conf, mode="0644",
                                 content=units.health_settings(settings)))
        files, links = _unit(systemd, unit, "health checker", units.health_unit(
            python, bin_dir, state_dir, name, settings), "multi-user.target.wants")
        out["files"] += files
        out["links"] += links
        out["services"].append(dict(what="health checker", unit=unit, on=True, start=True,
                                    paths=[f["path"] for f in files] + [conf]))
    else:
        paths = _unit_paths(systemd, unit, "multi-user.target.wants")
        absent("health checker", paths)
        absent("health checker settings", [conf])
        absent("health checker status", [health.status_path(state_dir, name)])
        out["services"].append(dict(what="health checker", unit=unit, on=False, paths=paths))

    # ---- metrics for node_exporter (host-wide)
    directory = metrics["directory"]
    prom = os.path.join(directory, units.METRICS_FILE)
    if metrics_on:
        out["directories"] += [dict(what="metrics directory", path=directory, mode="0755"),
                               dict(what="systemd timers directory",
                                    path=os.path.join(systemd, "timers.target.wants"), mode="0755")]
        svc_path = os.path.join(systemd, units.METRICS_SERVICE)
        out["files"].append(dict(what="metrics service", path=svc_path, mode="0644",
                                 content=units.metrics_service(python, bin_dir, state_dir, directory)))
        files, links = _unit(systemd, units.METRICS_TIMER, "metrics timer",
                             units.metrics_timer(metrics["interval"]), "timers.target.wants")
        out["files"] += files
        out["links"] += links
        out["services"].append(dict(what="metrics timer", unit=units.METRICS_TIMER, on=True, start=True,
                                    paths=[svc_path] + [f["path"] for f in files]))
        out["metrics_file"] = prom
    elif metrics_on is False:
        paths = _unit_paths(systemd, units.METRICS_TIMER, "timers.target.wants")
        absent("metrics timer", paths)
        absent("metrics service", [os.path.join(systemd, units.METRICS_SERVICE)])
        absent("metrics file", [prom])
        out["services"].append(dict(what="metrics timer", unit=units.METRICS_TIMER, on=False, paths=paths))

    # ---- sysctls the mode needs, and the extra ones (per instance)
    if sysctls["manage"]:
        path = sysctls["file"] or sysctl_file_path(name)
        saved = sysctl_saved_path(state_dir, name)
        values = mode_sysctls(mode, interfaces) if present else {}
        for key, value in sorted((sysctls["extra"] or {}).items()):
            validate.sysctl_key(key, "sysctls.extra")
            if present:
                values[key] = validate.sysctl_value(value, "sysctls.extra[%s]" % key)
        for key in values:
            validate.sysctl_key(key, "sysctls")
        out["directories"].append(dict(what="sysctl saved values directory", path=os.path.dirname(saved),
                                       mode="0700"))
        out["sysctl"] = values
        out["sysctl_saved"] = saved
        what[saved] = "sysctl saved values"
        legacy = sysctl_saved_legacy(state_dir, name)
        out["sysctl_saved_legacy"] = legacy
        if os.path.lexists(legacy):
            absent("sysctl saved values of the earlier role", [legacy])
            if os.listdir(os.path.dirname(legacy)) == [os.path.basename(legacy)]:
                absent("directory of the earlier role", [os.path.dirname(legacy)])
        if values:
            out["directories"].append(dict(what="sysctl directory", path=os.path.dirname(path), mode="0755"))
            out["files"].append(dict(what="sysctl file", path=path, mode="0644",
                                     content=units.sysctl_file(name, mode, interfaces, values)))
        else:
            absent("sysctl file", [path])
        if not present:
            # The saved values' directory goes with the last instance.
            out["directories"].pop()
            if last:
                absent("sysctl saved values directory", [os.path.dirname(saved)])

    # ---- bpffs: mounted now, and at boot by a unit where systemd does not
    # mount it itself
    bpffs_paths = [os.path.join(systemd, "local-fs.target.wants", units.BPFFS_UNIT),
                   os.path.join(systemd, units.BPFFS_UNIT)]
    if opts["mount_bpffs"] and present:
        out["bpffs"] = True
        out["bpffs_unit"] = dict(what="bpffs mount unit", path=bpffs_paths[1], content=units.bpffs_unit(),
                                 mode="0644", link=bpffs_paths[0])
    elif opts["mount_bpffs"] and last:
        # bpffs itself stays mounted: other BPF users may have pins there.
        absent("bpffs mount unit", bpffs_paths)

    for spec in out["files"] + out["links"] + out["directories"]:
        what[spec["path"]] = spec["what"]
    # Root writes programs and units into these: they must be trusted
    # directories (trust.py) before anything is written.
    written = [spec["path"] for spec in out["files"] + out["links"]]
    out["trusted"] = [(field, path) for field, path in (("host_command.bin_dir", bin_dir),
                                                        ("host_command.engine_dir", engine_dir),
                                                        ("systemd_dir", systemd))
                      if path and (path == out["engine_dir"] or
                                   any(p.startswith(path.rstrip("/") + "/") for p in written))]
    return out


class Footprint:
    """One module run's footprint: check, prepare_host, (balancer), apply."""

    def __init__(self, manifest, check_mode):
        self.manifest = manifest
        self.check_mode = check_mode
        self.os = hostsetup.host_os()
        self.systemd = self.os["service_mgr"] == "systemd"
        self.found = dict(files=[], drift=[])
        self.plan = None
        self.stops = []
        self.report = dict(in_sync=False, drift=[], changed=[], os=self.os, packages=[], missing_packages=[],
                           services={}, systemctl=[], systemctl_ran=False, bpffs_mounted=None)

    # -- 1. before anything changes
    def check(self):
        m = self.manifest
        for field, path in m.get("trusted", ()):
            try:
                trust.trusted_dir(path, field)
            except trust.TrustError as exc:
                raise FootprintError(str(exc))
        pkg = m["packages"]
        if pkg["policy"] != "ignore":
            names = packages.package_list(pkg, self.os)
            missing = packages.missing(names, self.os["pkg_mgr"])
            self.report.update(packages=names, missing_packages=missing)
            if missing and pkg["policy"] == "verify":
                raise FootprintError("packages not installed: %s (packages.policy: verify)"
                                     % ", ".join(missing))
            if missing:
                packages.check_installable(self.os)
        self.manifest, version = hostsetup.fold_bpffs_unit(hostsetup.fold_engine_tree(m))
        if version is not None:
            self.report["systemd_version"] = version
        what = self.manifest["what"] = dict(self.manifest["what"])
        for spec in self.manifest["files"] + self.manifest["links"] + self.manifest["directories"]:
            if spec.get("what"):
                what.setdefault(spec["path"], spec["what"])
        self.found = hostsetup.compare(self.manifest)
        self.report.update(drift=[self._label_line(line) for line in self.found["drift"]], in_sync=not self.found["drift"] and
                           not self.report["missing_packages"], bpffs_mounted=self.found["bpffs_mounted"])
        if self.found["drift"] and not self.check_mode:
            self.plan = hostsetup.prepare(self.manifest, self.found)
        self.stops = services.stop_plan(self.manifest["services"], self.systemd)

    @property
    def bpffs_missing(self):
        return self.manifest["bpffs"] and not self.found["bpffs_mounted"]

    # -- 2. what the balancer needs to run
    def prepare_host(self):
        if self.check_mode:
            return
        if self.report["missing_packages"]:
            pkg = self.manifest["packages"]
            packages.install(self.report["missing_packages"], self.os, pkg["update_cache"], pkg["cache_valid_time"])
            self.report["changed"].append("packages installed: %s" % ", ".join(self.report["missing_packages"]))
        if self.bpffs_missing:
            hostsetup.mount_bpffs()
            self.report["changed"].append("bpffs mounted on %s" % hostsetup.BPFFS)

    def _label_line(self, line):
        path, sep, rest = line.partition(": ")
        what = self.manifest["what"].get(path)
        return "%s %s%s%s" % (what, path, sep, rest) if what else line

    def _label(self, path):
        what = self.manifest["what"].get(path)
        return "%s %s" % (what, path) if what else path

    # -- 4. after the balancer
    def apply(self):
        """Stops, removals, writes, daemon-reload, starts; returns True when
        something changed (or would, in check mode)."""
        m = self.manifest
        changed_paths = []
        if self.check_mode:
            changed_paths = [line.split(": ", 1)[0] for line in self.found["drift"]]
        else:
            if self.systemd:
                services.run(self.stops)
            if self.plan is not None:
                removed = hostsetup.remove_absent(m)
                written = hostsetup.commit(dict(m, absent=[]), self.plan)
                changed_paths = removed + written
                self.report["changed"] += ["%s: removed" % self._label(p) for p in removed]
                self.report["changed"] += [p if p.startswith("sysctl ") else "%s: written" % self._label(p)
                                           for p in written]
        starts = services.start_plan(m["services"], changed_paths, self.systemd, self.check_mode)
        argvs = self.stops + starts
        if not self.check_mode and self.systemd:
            services.run(starts)
        self.report.update(systemctl=[" ".join(a) for a in argvs], systemctl_ran=self.systemd and not self.check_mode,
                           services=services.summary(m["services"]))
        prom = m.get("metrics_file")
        if prom and not os.path.exists(prom):
            if not self.check_mode:
                write_metrics(m["state_dir"], prom)
            self.report["changed"].append("metrics file %s: written" % prom)
        return bool(self.report["changed"]) or bool(self.stops) or \
            (self.check_mode and bool(self.found["drift"] or self.report["missing_packages"]
                                      or self.bpffs_missing or argvs))

    def file_diffs(self):
        """Before/after of each file that differs, headed by what it is."""
        out = []
        for spec in self.found["files"]:
            try:
                with open(spec["path"]) as handle:
                    before = handle.read()
            except (IOError, OSError, UnicodeDecodeError):
                before = ""
            header = self._label(spec["path"])
            out.append(dict(before_header=header, after_header=header, before=before, after=spec["content"]))
        for line in self.found["drift"]:
            path = line.split(": ", 1)[0]
            if path in self.manifest["absent"] and os.path.isfile(path):
                header = self._label(path)
                with open(path, errors="replace") as handle:
                    out.append(dict(before_header=header, after_header=header + " (absent)",
                                    before=handle.read(), after=""))
        return out


def write_metrics(state_dir, path):
    """What the metrics service runs (``xdp-lb metrics --out``), in this
    process: the file is there from the first run, not the timer's first
    tick."""
    from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, metrics
    state.write_atomic(path, metrics.render(engine.info(state_dir, None)))
