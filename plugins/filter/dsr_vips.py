# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter netfleet.xdp_lb.dsr_vips: the VIPs a dsr backend host must hold."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: dsr_vips
short_description: The VIPs a host serves as a backend of dsr balancers
version_added: 0.2.0
description:
  - Reads the dsr balancers' C(xdp_lb_mode) and C(xdp_lb_services) from C(hostvars) on the controller
    and returns the VIP of every dsr service whose C(backend_group) holds the host, or whose literal
    C(backends) hold the host's C(xdp_lb_backend_ipv4) or C(xdp_lb_backend_ipv6).
  - A host whose C(xdp_lb_backend_pool_state) is C(absent) gets none. A drained host keeps its VIPs
    (its established flows still arrive).
  - So a dsr service is declared once, on the balancers; role netfleet.xdp_lb.xdp_lb_backend uses it
    as the default of C(xdp_lb_backend_vips).
options:
  _input:
    description: The inventory host names of the balancers to look at.
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  host:
    description: The backend host (usually C(inventory_hostname)).
    type: str
    required: true
  groups:
    description: The play's C(groups).
    type: dict
    required: true
'''

EXAMPLES = r'''
xdp_lb_backend_vips: "{{ groups['xdp_lb_balancers'] | netfleet.xdp_lb.dsr_vips(hostvars, inventory_hostname, groups) }}"
'''

RETURN = r'''
_value:
  description: VIP addresses, IPv4 first, sorted, without duplicates.
  type: list
  elements: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.netfleet.xdp_lb.plugins.plugin_utils import inventory_backends


def dsr_vips(balancers, hostvars, host, groups):
    try:
        return inventory_backends.dsr_vips(host, balancers, groups, hostvars)
    except inventory_backends.InventoryBackendError as exc:
        raise AnsibleFilterError("dsr_vips: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"dsr_vips": dsr_vips}
