# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A backend of a dsr-mode balancer: its VIPs on an interface, the ARP and
reverse-path sysctls, and the boot unit that adds the VIPs (module
xdp_lb_backend).

Everything is checked (addresses, interface, sysctl keys, unit file)
before the first change.  The VIPs the module added are remembered in
``<state_dir>/vips.json``, so that a VIP dropped from the list is removed;
the sysctls' values from before the first change in
``<state_dir>/sysctl.json`` (hostsetup's saved values).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import os

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import command, hostsetup, services, units, validate


class BackendError(Exception):
    pass


def normalise_vips(vips):
    """['198.18.0.1/32', 'fd00::1/128'] from addresses; errors name the entry."""
    out = []
    for i, value in enumerate(vips or []):
        try:
            ip = ipaddress.ip_address(str(value))
        except ValueError:
            raise BackendError("vips[%d]: %r is not an IP address" % (i, value))
        entry = "%s/%d" % (ip, ip.max_prefixlen)
        if entry not in out:
            out.append(entry)
    return out


def addresses(interface):
    """The interface's addresses as 'address/prefixlen'."""
    dummy, out, dummy = command.run(["ip", "-j", "addr", "show", "dev", interface])
    data = json.loads(out or "[]")
    return ["%s/%d" % (a["local"], a["prefixlen"]) for link in data for a in link.get("addr_info", [])]


def read_saved_vips(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError):
        return []
    except ValueError as exc:
        raise BackendError("%s: unreadable (%s)" % (path, exc))
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        raise BackendError("%s: not a list of addresses" % path)
    return data


def plan(p):
    """The manifest (hostsetup) and the VIP changes for the module's params."""
    validate.interface_name(p["interface"], "interface")
    if not os.path.exists(os.path.join("/sys/class/net", p["interface"])):
        raise BackendError("interface: %s not found" % p["interface"])
    present = p["state"] == "present"
    want = normalise_vips(p["vips"]) if present else []
    state_dir = p["state_dir"]
    saved_vips_path = os.path.join(state_dir, "vips.json")
    saved = read_saved_vips(saved_vips_path)
    have = addresses(p["interface"])
    add = [v for v in want if v not in have]
    delete = [v for v in (saved if present else saved + normalise_vips(p["vips"]))
              if v not in want and v in have]
    delete = sorted(set(delete), key=delete.index)

    systemd = p["systemd_dir"]
    unit_path = os.path.join(systemd, units.BACKEND_UNIT)
    link_path = os.path.join(systemd, "multi-user.target.wants", units.BACKEND_UNIT)
    m = dict(directories=[], files=[], links=[], absent=[], sysctl={}, sysctl_saved=None, what={})
    if present:
        m["directories"].append(dict(path=state_dir, mode="0700", what="backend state directory"))
        m["files"].append(dict(path=saved_vips_path, mode="0600", content=json.dumps(want, indent=1) + "\n",
                               what="VIPs added by the module"))
    boot = present and p["boot_unit"] and want
    if boot:
        m["directories"].append(dict(path=os.path.dirname(link_path), mode="0755", what="systemd wants directory"))
        m["files"].append(dict(path=unit_path, mode="0644", content=units.backend_unit(p["interface"], want),
                               what="backend VIP unit"))
        m["links"].append(dict(path=link_path, src=unit_path, what="backend VIP unit (enabled)"))
    else:
        m["absent"] += [link_path, unit_path]
        m["what"].update({link_path: "backend VIP unit (enabled)", unit_path: "backend VIP unit"})
    sysctls = p["sysctls"]
    if sysctls["manage"]:
        m["sysctl"] = dict(units.BACKEND_SYSCTLS) if present else {}
        m["sysctl_saved"] = os.path.join(state_dir, "sysctl.json")
        m["what"][m["sysctl_saved"]] = "sysctl saved values"
        if present:
            m["files"].append(dict(path=sysctls["file"], mode="0644", content=units.backend_sysctl_file(),
                                   what="sysctl file"))
        else:
            m["absent"].append(sysctls["file"])
            m["what"][sysctls["file"]] = "sysctl file"
    if not present:
        m["absent"].append(state_dir)
        m["what"][state_dir] = "backend state directory"
    for spec in m["files"] + m["links"] + m["directories"]:
        m["what"][spec["path"]] = spec["what"]
    # Turned off: disabled before its files go, not stopped (its ExecStop
    # would remove the VIPs this run keeps).
    svc = [dict(what="backend VIP unit", unit=units.BACKEND_UNIT, on=bool(boot), start=False, stop=False,
                paths=[link_path, unit_path])]
    return m, add, delete, svc


def label(m, line):
    path, sep, rest = line.partition(": ")
    what = m["what"].get(path)
    return "%s %s%s%s" % (what, path, sep, rest) if what else line


def run(p, check_mode):
    """Returns the result dict; raises BackendError/HostSetupError before any
    change on bad input."""
    m, add, delete, svc = plan(p)
    host_os = hostsetup.host_os()
    systemd = host_os["service_mgr"] == "systemd"
    found = hostsetup.compare(m)
    prep = hostsetup.prepare(m, found) if found["drift"] and not check_mode else None
    stops = services.stop_plan(svc, systemd)
    changed = []
    changed_paths = [line.split(": ", 1)[0] for line in found["drift"]] if check_mode else []
    if not check_mode:
        if systemd:
            services.run(stops)
        for vip in delete:
            command.run(["ip", "addr", "del", vip, "dev", p["interface"]])
        if prep is not None:
            removed = hostsetup.remove_absent(m)
            written = hostsetup.commit(dict(m, absent=[]), prep)
            changed_paths = removed + written
            changed += ["%s: removed" % label(m, x) for x in removed]
            changed += [x if x.startswith("sysctl ") else "%s: written" % label(m, x) for x in written]
        for vip in add:
            command.run(["ip", "addr", "add", vip, "dev", p["interface"]])
    starts = services.start_plan(svc, changed_paths, systemd, check_mode)
    if not check_mode and systemd:
        services.run(starts)
    argvs = stops + starts
    return dict(changed=bool(add or delete or found["drift"] or stops), vips_added=add, vips_removed=delete,
                drift=[label(m, line) for line in found["drift"]], changed_items=changed,
                systemctl=[" ".join(a) for a in argvs], systemctl_ran=systemd and not check_mode, os=host_os,
                diff_files=[dict(before_header=label(m, s["path"]), after_header=label(m, s["path"]),
                                 before=_read(s["path"]), after=s["content"]) for s in found["files"]])


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return ""
