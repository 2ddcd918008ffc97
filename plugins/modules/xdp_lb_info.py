#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_lb_info
short_description: Report XDP load balancer instances, their attachments and counters
version_added: 0.1.0
description:
  - Reads the instances that netfleet.xdp_lb.xdp_lb manages on the host, either every instance
    with a state file in O(state_dir) or only O(name).
  - For each one it reports the interfaces with the attached program's id, tag and mode, the mode,
    the services with their backends, weights and ids, and counters summed over all CPUs. The
    counters are per backend (packets and bytes forwarded), per verdict of the data plane
    (C(pass), C(drop), C(redirect), C(tx), C(no_backend), C(ct_full), C(fib_miss), C(nat_reply))
    and per redirect port.
  - Read only. It changes nothing and behaves the same in check mode.
author:
  - netfleet.xdp_lb contributors (@netfleet)
extends_documentation_fragment:
  - netfleet.xdp_lb.xdp_lb
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  platform:
    platforms: linux
options:
  name:
    description:
      - Only this instance. Without it, every instance with a state file in O(state_dir).
    type: str
seealso:
  - module: netfleet.xdp_lb.xdp_lb
'''

EXAMPLES = r'''
- name: All load balancers of the host
  netfleet.xdp_lb.xdp_lb_info:
  register: lb

- name: Packets each backend of the first service got
  ansible.builtin.debug:
    msg: "{{ lb.instances[0].services[0].backends | map(attribute='packets') | list }}"

- name: One instance, with its non-default state directory
  netfleet.xdp_lb.xdp_lb_info:
    name: web
    state_dir: /srv/xdp-lb/state
  register: web

- name: Fail if the data plane dropped packets for lack of NAT ports
  ansible.builtin.assert:
    that: web.instances[0].stats.ct_full.packets == 0
'''

RETURN = r'''
instances:
  description: One entry per instance. An instance that cannot be read has only C(name) and C(error).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: web
    error:
      description: Why the instance could not be read (only then present).
      type: str
    netns:
      description: Network namespace of the instance (null for the host's).
      type: str
    mode:
      description: Configured mode (V(redirect), V(nat), V(dsr)).
      type: str
    attach_mode:
      description: Configured attach mode.
      type: str
    pin_dir:
      description: bpffs directory of the pins.
      type: str
    build:
      description: Build hash recorded in the state file.
      type: str
    program:
      description: The pinned program (C(id), C(tag), C(pinned)); null if there is no pin.
      type: dict
    interfaces:
      description:
        - Per interface, C(ifindex), C(prog_id) (attached program, null if none), C(tag), C(mode)
          (V(native), V(generic)) and C(ours) (whether the attached program is this instance's).
      type: dict
      sample: {"eth0": {"ifindex": 2, "prog_id": 280, "tag": "592db18b994f390f", "mode": "native",
                        "ours": true}}
    services:
      description:
        - Services as the maps hold them. Each has C(service) (C(protocol/vip:port)), C(id),
          C(scheduler), C(ring_slot), C(ring), C(ring_addr_digest) and C(backends).
        - C(ring) is a short digest of the live lookup table as it is stored, backend ids per
          slot. Ids depend on a host's history (removed backends free ids that later adds
          reuse), so two hosts with the same inventory can differ here.
        - C(ring_addr_digest) is the SHA-256 (hex) of the address-level table, the backend
          address, port and family per slot (zeros for an empty slot), independent of ids.
          Hosts that send every flow to the same backend report the same value, so compare it
          across a fleet to prove identical forwarding.
        - Each backend has C(address), C(port), C(id), C(weight), and C(packets) and C(bytes)
          summed over all CPUs.
      type: list
      elements: dict
    stats:
      description: Per data-plane verdict, C(packets) and C(bytes) summed over all CPUs.
      type: dict
      sample: {"pass": {"packets": 10, "bytes": 524}, "nat_reply": {"packets": 1, "bytes": 47}}
    redirect_ports:
      description: Per redirect slot, C(slot), C(interface), C(ifindex), C(packets) and C(bytes).
      type: list
      elements: dict
    conntrack:
      description: Entries in the connection tables (C(flows) is lb_ct, C(nat_flows) is lb_nat_rev).
      type: dict
      sample: {"flows": 5, "nat_flows": 5}
    maps:
      description: Kernel ids of the pinned maps by name.
      type: dict
    config:
      description:
        - The live lb_config. It holds C(mode), C(redirect_algorithm), C(redirect_count), the NAT
          port range, the NAT source addresses and C(flow_idle_timeout).
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import deps, engine, model


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str'),
            state_dir=dict(type='path', default=model.DEFAULT_STATE_DIR),
        ),
        supports_check_mode=True,
    )
    if module.params['name'] is not None:
        try:
            model.check_name(module.params['name'])
        except model.ConfigError as exc:
            module.fail_json(msg=str(exc), field=exc.path)
    deps.fail_if_missing(module, missing_required_lib)
    instances = engine.info(module.params['state_dir'], module.params['name'])
    module.exit_json(changed=False, instances=instances)


if __name__ == '__main__':
    main()
