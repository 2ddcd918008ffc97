#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_lb_host
short_description: Compare a host with the setup of the xdp_lb role and apply it, in one module run
version_added: 0.2.0
description:
  - Manages the files around the load balancer that the netfleet.xdp_lb.xdp_lb role installs (unit
    files, the engine tree, the sysctl file), their directories and links, paths that must be absent,
    and live sysctl values with the values they had before (kept in O(sysctl_saved) so that removing
    the balancer can put them back), all in one run.
  - Reports every difference as one line in RV(drift), naming the path, key or package and what was
    found. In check mode that is all it does; otherwise it makes the host match.
  - Also checks (never changes) installed packages, the bpffs mount and interfaces, and returns the
    facts the role needs (C(os_family), C(distribution), C(pkg_mgr), C(service_mgr)), collected as
    M(ansible.builtin.setup) collects them.
  - The role runs it once in check mode before anything else; when nothing differs it skips its setup
    tasks, so that a rerun on an unchanged host costs two module runs (this one and
    netfleet.xdp_lb.xdp_lb) instead of about thirty.
  - Everything is checked before anything is written (unit files with C(systemd-analyze verify) where
    it exists, sysctl keys), so bad input changes nothing; files are replaced atomically.
author:
  - netfleet.xdp_lb contributors (@netfleet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  facts:
    support: full
  platform:
    platforms: linux
options:
  files:
    description:
      - Regular files owned by root:root with this content and mode. Missing parent directories are
        created with mode C(0755).
      - Unit files (names ending in C(.service), C(.timer), C(.mount)) are checked with
        C(systemd-analyze verify) before they are installed, where it exists.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The whole content.
        type: str
        required: true
      mode:
        description: Mode as an octal string, for example C("0644"). Default C(0644) when written; not
          compared when omitted.
        type: str
  directories:
    description:
      - Directories owned by root:root with this mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      mode:
        description: Mode as an octal string. Default C(0755) when created; not compared when omitted.
        type: str
  links:
    description:
      - Symbolic links and the target they point at.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The link.
        type: path
        required: true
      src:
        description: Its target.
        type: path
        required: true
  absent:
    description:
      - Paths that must not exist (files, links or directories, removed with what they hold).
    type: list
    elements: path
    default: []
  sysctl:
    description:
      - Live kernel parameters, key (sysctl syntax, C(/) for a C(.) in an interface name) to value.
        Written to C(/proc/sys) when they differ; persisting them is a file in O(files).
    type: dict
    default: {}
  sysctl_saved:
    description:
      - A JSON file (mode C(0600)) with the value each key of O(sysctl) had before it was first set.
        Keys that are in it but no longer in O(sysctl) get their saved value back and leave it. Absent
        when O(sysctl) is empty.
      - Without it, previous values are not kept.
    type: path
  packages:
    description:
      - Packages that must be installed (checked only). When not given, the list of O(packages_by_os)
        for the host's distribution, else for its OS family, else for C(default), else none.
    type: list
    elements: str
  packages_by_os:
    description:
      - Package lists keyed by distribution or OS family name (as the facts name them), and C(default).
    type: dict
    default: {}
  extra_packages:
    description:
      - Packages that must be installed in addition (checked only).
    type: list
    elements: str
    default: []
  bpffs:
    description:
      - Whether bpffs must be mounted on C(/sys/fs/bpf) (checked only).
    type: bool
    default: false
  bpffs_unit:
    description:
      - The C(sys-fs-bpf.mount) unit and its enabling link, checked (only) when systemd is older than
        239; newer systemd mounts bpffs itself and refuses such a unit.
    type: dict
    suboptions:
      path:
        description: The unit file.
        type: path
        required: true
      content:
        description: Its content.
        type: str
        required: true
      mode:
        description: Its mode as an octal string.
        type: str
      link:
        description: The enabling link, pointing at O(bpffs_unit.path).
        type: path
        required: true
  interfaces:
    description:
      - Network interfaces that must exist. Missing ones are returned in RV(missing_interfaces), not in
        RV(drift), being an inventory error which this module cannot mend.
    type: list
    elements: str
    default: []
notes:
  - Package queries use C(dpkg-query) (apt) or C(rpm) (dnf, yum); with another package manager every
    package counts as missing.
  - Packages, bpffs and interfaces are only reported; the role installs and mounts with its own tasks.
seealso:
  - module: netfleet.xdp_lb.xdp_lb
'''

EXAMPLES = r'''
- name: What differs from the restore unit, IPv4 forwarding and the packages the role wants?
  netfleet.xdp_lb.xdp_lb_host:
    files:
      - path: /etc/systemd/system/netfleet-xdp-lb-restore.service
        content: "{{ lookup('ansible.builtin.template', 'netfleet-xdp-lb-restore.service.j2') }}"
        mode: "0644"
    links:
      - path: /etc/systemd/system/multi-user.target.wants/netfleet-xdp-lb-restore.service
        src: /etc/systemd/system/netfleet-xdp-lb-restore.service
    sysctl:
      net.ipv4.ip_forward: "1"
    sysctl_saved: /var/lib/netfleet-xdp-lb/role/default.sysctl.json
    packages_by_os:
      Debian: [clang, libbpf-dev, bpftool]
    bpffs: true
    interfaces: [eth0]
  check_mode: true
  register: host

- name: Show what differs
  ansible.builtin.debug:
    var: host.drift
  when: not host.in_sync

- name: Make it so (packages and bpffs are only reported)
  netfleet.xdp_lb.xdp_lb_host:
    files:
      - path: /etc/sysctl.d/60-forwarding.conf
        content: "net.ipv4.ip_forward = 1\n"
    sysctl:
      net.ipv4.ip_forward: "1"
    sysctl_saved: /var/lib/netfleet-xdp-lb/role/default.sysctl.json
'''

RETURN = r'''
in_sync:
  description: True when RV(drift) is empty (before this run changed anything).
  returned: always
  type: bool
  sample: false
drift:
  description: One line per difference found before this run changed anything, naming the path, key
    or package and what was found.
  returned: always
  type: list
  elements: str
  sample: ["/etc/sysctl.d/60-netfleet-xdp-lb-default.conf: content differs", "package clang: not installed"]
changed_items:
  description: Paths written, linked or removed and sysctls written (C(sysctl key=value)); empty in
    check mode.
  returned: always
  type: list
  elements: str
  sample: ["/etc/systemd/system/netfleet-xdp-lb-restore.service", "sysctl net.ipv4.ip_forward=1"]
packages:
  description: The package list that was checked (after O(packages_by_os) and O(extra_packages)).
  returned: always
  type: list
  elements: str
  sample: [clang, llvm, libbpf-dev]
missing_packages:
  description: Packages of RV(packages) that are not installed.
  returned: always
  type: list
  elements: str
  sample: [clang]
missing_interfaces:
  description: Interfaces of O(interfaces) the host does not have.
  returned: always
  type: list
  elements: str
  sample: []
bpffs_mounted:
  description: Whether bpffs is mounted on C(/sys/fs/bpf).
  returned: always
  type: bool
  sample: true
systemd_version:
  description: systemd's version (0 without systemctl); only read when O(bpffs_unit) is given.
  returned: when O(bpffs_unit) is given
  type: int
  sample: 252
ansible_facts:
  description: Facts as M(ansible.builtin.setup) names them, from its distribution, pkg_mgr and
    service_mgr collectors (also C(system), C(kernel) and the like, which those collectors need).
  returned: always
  type: dict
  contains:
    os_family:
      description: OS family.
      type: str
      sample: Debian
    distribution:
      description: Distribution.
      type: str
      sample: Debian
    pkg_mgr:
      description: Package manager.
      type: str
      sample: apt
    service_mgr:
      description: Service manager.
      type: str
      sample: systemd
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.facts import ansible_collector
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible.module_utils.facts.system.distribution import DistributionFactCollector
from ansible.module_utils.facts.system.pkg_mgr import PkgMgrFactCollector
from ansible.module_utils.facts.system.platform import PlatformFactCollector
from ansible.module_utils.facts.system.service_mgr import ServiceMgrFactCollector

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import hostsetup

# What prints "ii <name>" for each installed package of a list.
PACKAGE_QUERY = {
    "apt": ["dpkg-query", "--show", "--showformat=${db:Status-Abbrev}${Package}\n"],
    "dnf": ["rpm", "--query", "--queryformat=ii %{NAME}\n"],
    "dnf5": ["rpm", "--query", "--queryformat=ii %{NAME}\n"],
    "yum": ["rpm", "--query", "--queryformat=ii %{NAME}\n"],
}
# A query that reports nothing installed: every package counts as missing.
NO_QUERY = ["true"]


def os_facts(module):
    """The facts setup's distribution, pkg_mgr and service_mgr collectors
    give, named as setup names them (ansible_ prefix)."""
    collector = ansible_collector.get_ansible_collector(
        # Only these (default_collectors would import, and ship, every one).
        all_collector_classes=[PlatformFactCollector, DistributionFactCollector,
                               PkgMgrFactCollector, ServiceMgrFactCollector],
        namespace=PrefixFactNamespace(namespace_name="ansible", prefix="ansible_"),
        gather_subset=["!all", "distribution", "pkg_mgr", "service_mgr"],
        minimal_gather_subset=frozenset(),
        gather_timeout=10,
        filter_spec=[])
    facts = collector.collect(module=module)
    # Not these two: "module_setup" tells Ansible's smart gathering that a
    # full setup ran, which would keep later plays from gathering.
    for key in ("module_setup", "gather_subset", "ansible_module_setup", "ansible_gather_subset"):
        facts.pop(key, None)
    return facts


def package_list(params, facts):
    if params["packages"] is not None:
        packages = list(params["packages"])
    else:
        by_os = params["packages_by_os"]
        packages = None
        for key in (facts.get("ansible_distribution"), facts.get("ansible_os_family"), "default"):
            if key in by_os:
                packages = list(by_os[key] or [])
                break
        packages = packages or []
    return packages + [name for name in params["extra_packages"] if name not in packages]


def file_diffs(files):
    """Before/after of the files that differ, for --diff."""
    out = []
    for spec in files:
        if not hostsetup.compare_file(spec):
            continue
        try:
            with open(spec["path"]) as handle:
                before = handle.read()
        except (IOError, OSError, UnicodeDecodeError):
            before = ""
        out.append(dict(before_header=spec["path"], after_header=spec["path"],
                        before=before, after=spec["content"]))
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str"))),
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="str"))),
            links=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                src=dict(type="path", required=True))),
            absent=dict(type="list", elements="path", default=[]),
            sysctl=dict(type="dict", default={}),
            sysctl_saved=dict(type="path"),
            packages=dict(type="list", elements="str"),
            packages_by_os=dict(type="dict", default={}),
            extra_packages=dict(type="list", elements="str", default=[]),
            bpffs=dict(type="bool", default=False),
            bpffs_unit=dict(type="dict", options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str"),
                link=dict(type="path", required=True))),
            interfaces=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for field in ("files", "directories"):
        for spec in params[field]:
            if spec.get("mode") is not None:
                try:
                    int(spec["mode"], 8)
                except ValueError:
                    module.fail_json(msg="%s: mode %r of %s is not an octal number"
                                     % (field, spec["mode"], spec["path"]))

    facts = os_facts(module)
    packages = package_list(params, facts)
    manifest = dict(params)
    manifest["sysctl"] = dict((str(k), str(v)) for k, v in params["sysctl"].items())
    manifest["packages"] = packages
    manifest["package_query"] = PACKAGE_QUERY.get(facts.get("ansible_pkg_mgr"), NO_QUERY)
    try:
        result = hostsetup.compare(manifest)
        diff = file_diffs(params["files"]) if module._diff and result["drift"] else []
        changed_items = []
        if result["drift"] and not module.check_mode:
            changed_items = hostsetup.apply(manifest)
    except hostsetup.HostSetupError as exc:
        module.fail_json(msg=str(exc), ansible_facts=facts)
    except (IOError, OSError) as exc:
        module.fail_json(msg="host setup failed: %s" % exc, ansible_facts=facts)

    changed = bool(changed_items) if not module.check_mode else bool(
        [line for line in result["drift"] if not line.startswith("package ") and "bpffs not mounted" not in line])
    module.exit_json(changed=changed, in_sync=not result["drift"], packages=packages,
                     changed_items=changed_items, diff=diff, ansible_facts=facts, **result)


if __name__ == "__main__":
    main()
