# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The text of every file the module installs around the balancer.

One place to read what lands on a host: the host command ``xdp-lb`` (an
entry point that runs the installed engine and nothing else), the restore
unit, the NAT guard unit, the health checker, the metrics service and
timer, the bpffs mount unit and the sysctl file.  Each function takes the
paths and settings it needs and returns the file's content; footprint.py
decides which of them a host gets.

The services run as root with systemd sandboxing (SANDBOX below): each
directive is there with the reason it does not block what the engine
does: bpf() and pins in /sys/fs/bpf, netlink (attach, neighbours,
nftables), entering a network namespace, writing the state directory.
tests/unit/.../test_units.py checks them with ``systemd-analyze security
--offline=true`` and runs each command under an equivalent restriction.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

MANAGED = "# Managed by netfleet.xdp_lb (module xdp_lb); local changes are overwritten."

RESTORE_UNIT = "netfleet-xdp-lb-restore.service"
GUARD_UNIT = "netfleet-xdp-lb-guard.service"
METRICS_SERVICE = "netfleet-xdp-lb-metrics.service"
METRICS_TIMER = "netfleet-xdp-lb-metrics.timer"
METRICS_FILE = "netfleet-xdp-lb.prom"
BPFFS_UNIT = "sys-fs-bpf.mount"
ENTRY_POINT = "xdp-lb"


def health_unit_name(name):
    return "netfleet-xdp-lb-health-%s.service" % name


def entry_point(python, engine_dir):
    """The host command: ``python -I`` (no current directory, no
    PYTHONPATH, no user site), then the installed engine alone first on
    sys.path, whatever the caller's environment."""
    return """#!{python} -I
{managed}
# netfleet.xdp_lb host command (docs/cli.md): runs the engine installed in
# {engine_dir} and nothing from the current directory or PYTHONPATH.
import os
import sys
sys.dont_write_bytecode = True
sys.path[:] = [{engine_json}] + [p for p in sys.path if p not in ("", ".")]
try:
    from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli import main
except ImportError as exc:
    sys.stderr.write("xdp-lb: cannot load the engine from %s (%s)%s\\n" % (
        sys.path[0], exc, "; xdp-lb needs root" if os.geteuid() else ""))
    sys.exit(1)
sys.exit(main())
""".format(python=python, managed=MANAGED, engine_dir=engine_dir, engine_json=json.dumps(engine_dir))


def command(python, bin_dir, state_dir):
    """The engine's command line as the units run it: the entry point with
    its interpreter named (systemd-analyze verify wants an ExecStart binary
    that exists before the entry point is installed)."""
    return "%s -I %s/%s --state-dir %s" % (python, bin_dir, ENTRY_POINT, state_dir)


def sandbox(writable, families="AF_UNIX AF_NETLINK"):
    """[Service] sandboxing shared by the units.  ``writable``: the only
    paths the service may write (besides /sys/fs/bpf)."""
    paths = " ".join(["/sys/fs/bpf"] + ["-" + p for p in writable])
    return """# Sandboxing: what the engine needs stays open, the rest is closed.
# The whole file system is read-only except the pins and the paths it writes.
ProtectSystem=strict
ReadWritePaths={paths}
# No home directories, its own /tmp (clang's temporary files), no devices.
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
# /proc/sys and /sys read-only (ReadWritePaths reopens /sys/fs/bpf); the
# engine sets no sysctl (the module does), loads no kernel module, does not
# touch the kernel log, the clock, the host name or cgroups.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# bpf() needs CAP_BPF, CAP_PERFMON and (pins, older kernels) CAP_SYS_ADMIN,
# which also enters a network namespace (setns); netlink attach, neighbours
# and nftables need CAP_NET_ADMIN; locked memory for maps CAP_IPC_LOCK and
# CAP_SYS_RESOURCE.  Nothing else, and no way to gain more.
CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_NET_ADMIN CAP_IPC_LOCK CAP_SYS_RESOURCE
NoNewPrivileges=yes
# Netlink for the kernel's tables, a UNIX socket for logging; restore and
# the probes add IP.
RestrictAddressFamilies={families}
# Network namespaces only (instances with netns); no user, pid, ipc, uts or
# cgroup namespaces.
RestrictNamespaces=~user pid ipc uts cgroup
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service bpf perf_event_open setns
UMask=0077""".format(paths=paths, families=families)


def restore_unit(python, bin_dir, state_dir, build_dir):
    return """{managed}
# Re-applies every load balancer of this host from its state file
# ({state_dir}/<name>.json, written by the xdp_lb module).  The module's
# own run did the same, so it is enabled for the next boot, not started.
[Unit]
Description=Restore the netfleet XDP load balancers
Wants=network-online.target
After=network-online.target {guard}
RequiresMountsFor=/sys/fs/bpf {state_dir}
ConditionPathIsDirectory={state_dir}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={cmd} restore --all
{sandbox}

[Install]
WantedBy=multi-user.target
""".format(managed=MANAGED, state_dir=state_dir, guard=GUARD_UNIT, cmd=command(python, bin_dir, state_dir),
           # It compiles when an object is missing (build_dir, clang's
           # temporary files in its own /tmp) and finds a NAT source address
           # with a UDP socket's route lookup.
           sandbox=sandbox([state_dir, build_dir], families="AF_UNIX AF_NETLINK AF_INET AF_INET6"))


def guard_unit(python, bin_dir, state_dir):
    return """{managed}
# Puts back the NAT guard (nftables) of every nat-mode load balancer of
# this host from its state file before the network comes up, so that the
# kernel drops backends' packets to the NAT ports until the restore unit
# attached the program, instead of resetting them.
[Unit]
Description=NAT guard of the netfleet XDP load balancers
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target
After=local-fs.target
RequiresMountsFor={state_dir}
ConditionPathIsDirectory={state_dir}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={cmd} guard --all
{sandbox}

[Install]
WantedBy=multi-user.target
""".format(managed=MANAGED, state_dir=state_dir, cmd=command(python, bin_dir, state_dir),
           sandbox=sandbox([state_dir]))


def health_unit(python, bin_dir, state_dir, name, settings):
    return """{managed}
# Health checks of the load balancer {name}: probes its backends every
# {interval} s; {fall} failures in a row drain a backend (weight 0), {rise}
# passes bring it back.  Settings: {state_dir}/health/{name}.conf.json,
# status: {state_dir}/health/{name}.json.
[Unit]
Description=Health checks of the netfleet XDP load balancer {name}
Wants=network-online.target
After=network-online.target {restore}
RequiresMountsFor=/sys/fs/bpf {state_dir}
ConditionPathExists={state_dir}/{name}.json

[Service]
Type=simple
ExecStart={cmd} health {name}
# It exits 0 by itself when health checks are off or the instance is gone.
Restart=on-failure
RestartSec=5
{sandbox}

[Install]
WantedBy=multi-user.target
""".format(managed=MANAGED, name=name, interval=settings["interval"], fall=settings["fall"],
           rise=settings["rise"], state_dir=state_dir, restore=RESTORE_UNIT,
           cmd=command(python, bin_dir, state_dir),
           # Probes connect to backends over IPv4 and IPv6.
           sandbox=sandbox([state_dir], families="AF_UNIX AF_NETLINK AF_INET AF_INET6"))


def health_settings(settings):
    """The checker's settings file (health.validate_config reads it)."""
    return json.dumps(settings, indent=4, sort_keys=True) + "\n"


def metrics_service(python, bin_dir, state_dir, directory):
    return """{managed}
# Writes the counters of every load balancer of this host (the state files
# in {state_dir}) for node_exporter's textfile collector.
# Started by {timer}.
[Unit]
Description=Export the netfleet XDP load balancer counters for node_exporter
After={restore}
RequiresMountsFor=/sys/fs/bpf {state_dir} {directory}
ConditionPathIsDirectory={state_dir}

[Service]
Type=oneshot
Nice=10
ExecStart={cmd} metrics --out {directory}/{file}
{sandbox}
""".format(managed=MANAGED, state_dir=state_dir, timer=METRICS_TIMER, restore=RESTORE_UNIT, directory=directory,
           cmd=command(python, bin_dir, state_dir), file=METRICS_FILE,
           # It reads the maps and writes only its file (a temporary file
           # beside it, renamed over).
           sandbox=sandbox([directory]))


def metrics_timer(interval):
    return """{managed}
[Unit]
Description=Export the netfleet XDP load balancer counters every {interval}

[Timer]
OnBootSec={interval}
OnUnitActiveSec={interval}
AccuracySec=1s

[Install]
WantedBy=timers.target
""".format(managed=MANAGED, interval=interval)


def bpffs_unit():
    """For systemd older than 239 (newer ones mount bpffs themselves)."""
    return """{managed}
# BPF file system: the load balancer's maps are pinned here.
[Unit]
Description=BPF file system
Documentation=https://docs.kernel.org/bpf/
DefaultDependencies=no
Before=local-fs.target umount.target
After=swap.target

[Mount]
What=bpf
Where=/sys/fs/bpf
Type=bpf
Options=rw,nosuid,nodev,noexec,relatime,mode=700

[Install]
WantedBy=local-fs.target
""".format(managed=MANAGED)


def sysctl_file(name, mode, interfaces, values):
    lines = [MANAGED, "# Instance %s, mode %s, interfaces %s." % (name, mode, ", ".join(interfaces))]
    lines += ["%s = %s" % (key, values[key]) for key in sorted(values)]
    return "\n".join(lines) + "\n"


BACKEND_UNIT = "netfleet-xdp-lb-backend.service"
BACKEND_SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
                   "net.ipv4.conf.all.rp_filter": "2"}


def backend_unit(interface, vips):
    """A dsr backend's boot unit: its VIPs on ``interface`` before the network."""
    lines = [MANAGED,
             "# Adds the VIPs this host serves behind a dsr-mode netfleet XDP balancer.",
             "[Unit]",
             "Description=Add the netfleet XDP load balancer VIPs to %s" % interface,
             "Wants=network-pre.target",
             "Before=network-pre.target",
             "",
             "[Service]",
             "Type=oneshot",
             "RemainAfterExit=yes"]
    lines += ["ExecStart=/usr/sbin/ip addr replace %s dev %s" % (vip, interface) for vip in vips]
    lines += ["ExecStop=-/usr/sbin/ip addr del %s dev %s" % (vip, interface) for vip in vips]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def backend_sysctl_file():
    lines = [MANAGED, "# ARP and reverse path settings for a dsr backend."]
    lines += ["%s = %s" % (key, BACKEND_SYSCTLS[key]) for key in sorted(BACKEND_SYSCTLS)]
    return "\n".join(lines) + "\n"
