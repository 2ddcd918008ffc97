# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The state directory and the host requirements, shared by xdp_lb and xdp_lb_info.
    DOCUMENTATION = r'''
options:
  state_dir:
    description:
      - Directory of the per-instance state files (C(<name>.json)) and lock files (C(<name>.lock)).
      - The state file records the applied configuration, the build, the program and the stable
        service and backend ids; it is what boot-time restore reads.
    type: path
    default: /var/lib/netfleet-xdp-lb
requirements:
  - Linux 5.11 or later with BPF and XDP; managed neighbour entries for C(mode=dsr) need 5.16. The
    feature list and the versions it comes from are in C(docs/design.md) of the collection, section
    "Kernel requirements". Only Linux 6.18 is tested.
  - root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for bpffs).
  - bpffs mounted at C(/sys/fs/bpf).
  - pyroute2 (Debian C(python3-pyroute2)), bcc's Python bindings (C(python3-bpfcc) / C(python3-bcc))
    and libbpf 1.x (C(libbpf.so.1)) for the Python interpreter that runs the module.
'''
