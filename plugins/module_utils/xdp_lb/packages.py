# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The packages the balancer needs on its host: which, which are missing,
and installing them.

One query per run (``dpkg-query`` or ``rpm -q`` over the whole list); the
package manager runs only when something is missing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import command


class PackageError(Exception):
    pass


# Per distribution or OS family (the host's distribution first, then its
# family), for the system Python that runs the module and the host command.
#   Debian and Ubuntu: linux-libc-dev gives the uapi and asm headers clang
#   needs for -target bpf.
#   Fedora, RHEL and derivatives: RHEL needs EPEL for python3-pyroute2.
BY_OS = {
    "Debian": ["clang", "llvm", "libbpf-dev", "bpftool", "linux-libc-dev", "python3-bpfcc", "python3-pyroute2",
               "nftables"],
    "RedHat": ["clang", "llvm", "libbpf-devel", "bpftool", "kernel-headers", "python3-pyroute2", "python3-bcc",
               "nftables"],
}

# What prints "ii <name>" for each installed package of a list.
RPM_QUERY = ["rpm", "--query", "--queryformat=ii %{NAME}\n"]
QUERY = {
    "apt": ["dpkg-query", "--show", "--showformat=${db:Status-Abbrev}${Package}\n"],
    "dnf": RPM_QUERY,
    "dnf5": RPM_QUERY,
    "yum": RPM_QUERY,
}
INSTALL = {
    "apt": ["apt-get", "install", "--yes", "--quiet", "--no-install-recommends"],
    "dnf": ["dnf", "install", "--assumeyes", "--quiet"],
    "dnf5": ["dnf5", "install", "--assumeyes", "--quiet"],
    "yum": ["yum", "install", "--assumeyes", "--quiet"],
}
APT_CACHE = "/var/cache/apt/pkgcache.bin"


def package_list(opts, host_os):
    """O(packages.names), or the list for the host's distribution, else its
    family; then O(packages.extra)."""
    names = opts.get("names")
    if names is None:
        names = BY_OS.get(host_os["distribution"]) or BY_OS.get(host_os["family"])
        if names is None:
            raise PackageError("packages: no package list for %s (%s family); give packages.names, or "
                               "provision the host and set packages.policy: ignore"
                               % (host_os["distribution"], host_os["family"]))
    names = list(names)
    return names + [name for name in opts.get("extra") or [] if name not in names]


def missing(names, pkg_mgr):
    """The names that are not installed (all of them without a query)."""
    if not names:
        return []
    query = QUERY.get(pkg_mgr)
    have = set()
    if query:
        try:
            dummy, out, dummy = command.run(query + list(names), check=False)
        except command.CommandError:
            out = ""
        have = set(line[3:].strip() for line in out.splitlines() if line.startswith("ii "))
    return [name for name in names if name not in have]


def check_installable(host_os):
    if host_os["pkg_mgr"] not in INSTALL:
        raise PackageError("packages: cannot install with package manager %r on %s; install them yourself "
                           "and set packages.policy: verify or ignore" % (host_os["pkg_mgr"], host_os["distribution"]))


def install(names, host_os, update_cache=True, cache_valid_time=3600):
    """Installs ``names`` with the host's package manager (apt: after an
    update when the cache is older than ``cache_valid_time`` seconds)."""
    check_installable(host_os)
    mgr = host_os["pkg_mgr"]
    if mgr == "apt":
        os.environ["DEBIAN_FRONTEND"] = "noninteractive"
        try:
            age = time.time() - os.stat(APT_CACHE).st_mtime
        except OSError:
            age = None
        if update_cache and (age is None or age > cache_valid_time):
            command.run(["apt-get", "update", "--quiet"], timeout=900)
    try:
        command.run(INSTALL[mgr] + list(names), timeout=1800)
    except command.CommandError as exc:
        raise PackageError("packages: installing %s failed: %s" % (", ".join(names), exc))
