#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_lb_backend
short_description: Prepare a backend of a dsr-mode netfleet XDP load balancer
version_added: 0.2.0
description:
  - In direct server return the balancer only rewrites the destination MAC, so packets reach the backend still
    addressed to the VIP and the backend answers the client from the VIP. This module makes a host such a backend.
  - Puts the O(vips) on O(interface) (IPv4 C(/32), IPv6 C(/128)) now and, with O(boot_unit), at boot (the
    B(backend VIP unit) C(netfleet-xdp-lb-backend.service), enabled).
  - With O(sysctls.manage) sets C(net.ipv4.conf.all.arp_ignore=1), C(arp_announce=2) and C(rp_filter=2) (loose),
    persisted in the B(sysctl file); their values from before the first change are kept and come back with
    O(state=absent).
  - Everything is checked (addresses, interface, sysctl keys, the unit file with C(systemd-analyze verify) where it
    exists) before the first change. A VIP dropped from the list is removed on the next run.
  - Where systemd is PID 1 it is reloaded after the unit changed; elsewhere RV(systemctl) says what would have run.
author:
  - netfleet.xdp_lb contributors (@netfleet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The unit and sysctl files that differ, before and after, headed by what they are.
  platform:
    platforms: linux
options:
  state:
    description: V(present) configures the backend; V(absent) removes the VIPs, the unit, the sysctl file and
      O(state_dir), and puts the sysctls back.
    type: str
    choices: [present, absent]
    default: present
  vips:
    description: The VIPs this backend serves.
    type: list
    elements: str
    default: []
  interface:
    description: The interface that carries the VIPs (loopback accepts them and never answers ARP for them).
    type: str
    default: lo
  boot_unit:
    description: Install and enable the unit that adds the VIPs at boot. V(false) disables and removes it.
    type: bool
    default: true
  systemd_dir:
    description: Where the unit file and its enabling link go.
    type: path
    default: /etc/systemd/system
  sysctls:
    description: The ARP and reverse-path sysctls.
    type: dict
    suboptions:
      manage:
        description: Set, persist and (with O(state=absent)) restore them.
        type: bool
        default: true
      file:
        description: The sysctl file.
        type: path
        default: /etc/sysctl.d/60-netfleet-xdp-lb-backend.conf
  state_dir:
    description: Keeps the sysctl values from before the first change and the VIPs the module added.
    type: path
    default: /var/lib/netfleet-xdp-lb-backend
seealso:
  - module: netfleet.xdp_lb.xdp_lb
'''

EXAMPLES = r'''
- name: Serve two VIPs of a dsr balancer
  netfleet.xdp_lb.xdp_lb_backend:
    vips: [198.18.100.1, "fd00:18:100::1"]

- name: Stop serving them
  netfleet.xdp_lb.xdp_lb_backend:
    state: absent
    vips: [198.18.100.1, "fd00:18:100::1"]
'''

RETURN = r'''
vips_added:
  description: VIPs added (or that would be, in check mode), as address/prefix length.
  returned: always
  type: list
  elements: str
  sample: [198.18.100.1/32]
vips_removed:
  description: VIPs removed (or that would be).
  returned: always
  type: list
  elements: str
  sample: []
drift:
  description: One line per difference of the files and sysctls, naming what it is.
  returned: always
  type: list
  elements: str
  sample: ["backend VIP unit /etc/systemd/system/netfleet-xdp-lb-backend.service: missing"]
changed_items:
  description: What this run wrote or removed, by what it is.
  returned: always
  type: list
  elements: str
  sample: ["sysctl net.ipv4.conf.all.arp_ignore=1"]
systemctl:
  description: The systemctl commands that ran, or would have run where RV(systemctl_ran) is false.
  returned: always
  type: list
  elements: str
  sample: ["systemctl daemon-reload"]
systemctl_ran:
  description: Whether they ran (false in check mode and where systemd is not PID 1).
  returned: always
  type: bool
  sample: false
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import backend, command, hostsetup


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', default='present', choices=['present', 'absent']),
            vips=dict(type='list', elements='str', default=[]),
            interface=dict(type='str', default='lo'),
            boot_unit=dict(type='bool', default=True),
            systemd_dir=dict(type='path', default='/etc/systemd/system'),
            sysctls=dict(type='dict', apply_defaults=True, options=dict(
                manage=dict(type='bool', default=True),
                file=dict(type='path', default='/etc/sysctl.d/60-netfleet-xdp-lb-backend.conf'))),
            state_dir=dict(type='path', default='/var/lib/netfleet-xdp-lb-backend'),
        ),
        supports_check_mode=True,
    )
    try:
        result = backend.run(module.params, module.check_mode)
    except (ValueError, backend.BackendError, hostsetup.HostSetupError) as exc:
        module.fail_json(msg='%s; nothing changed' % exc)
    except (IOError, OSError, command.CommandError) as exc:
        module.fail_json(msg=str(exc))
    diffs = result.pop('diff_files')
    if module._diff and diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
