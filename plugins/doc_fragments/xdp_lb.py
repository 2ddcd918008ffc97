# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

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
  - Linux with BPF, BTF and XDP (5.10 or later; managed neighbour entries for dsr mode need 5.16).
  - root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for bpffs).
  - bpffs mounted at C(/sys/fs/bpf).
  - pyroute2 (Debian C(python3-pyroute2)), bcc's Python bindings (C(python3-bpfcc) / C(python3-bcc))
    and libbpf 1.x (C(libbpf.so.1)) for the Python interpreter that runs the module.
  - nft (nftables) for the NAT guard in nat mode (C(nat_guard), on by default).
'''
