#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: xdp_lb
short_description: Run an XDP/eBPF layer-4 load balancer on Linux interfaces
version_added: 0.1.0
description:
  - Builds the collection's XDP data plane with clang, loads it with its maps pinned in bpffs,
    attaches it to one or more interfaces and keeps its tables (services, backends, Maglev rings,
    redirect ports, NAT settings) in the state the task describes.
  - Three modes. C(redirect) sends every IP frame unchanged out of one of O(redirect_interfaces).
    C(nat) rewrites client to VIP traffic into NAT-source to backend traffic and translates the
    replies back. C(dsr) (direct server return) only rewrites the destination MAC address; backends
    answer clients directly.
  - Idempotent. A rerun compares the build hash, the program attached to every interface and the
    live map content with the task, and changes nothing if they match.
  - Upgrades never leave an interface without a program. The new program shares the pinned maps
    (connection tracking and counters survive), the maps are brought up to date, then the program
    is swapped in atomically (C(XDP_FLAGS_REPLACE) with the expected old program).
  - Nothing is half applied. Parameters are validated before the host is touched. If a step fails
    after the first write, the previous map content and program come back and the task fails.
  - Concurrent runs for one instance are serialised with a lock file in O(state_dir).
  - Must run through its action plugin (the normal case). The plugin ships the collection's
    C(files/xdp_loadbalancer.c) and C(files/xdp_lb.h) to the host unless O(source) is set.
author:
  - netfleet.xdp_lb contributors (@netfleet)
extends_documentation_fragment:
  - netfleet.xdp_lb.xdp_lb
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: full
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Nothing is compiled, loaded or written; the result says what would change.
  diff_mode:
    support: full
    details: C(before) is read from the live maps and attachments, C(after) is what the task asks for.
  platform:
    platforms: linux
options:
  interfaces:
    description:
      - Interfaces the program is attached to. One program and one set of maps serve all of them.
      - In O(mode=nat) list both the client side and the backend side, so the backends' replies
        are translated back.
      - Required when O(state=present).
    type: list
    elements: str
    aliases: [interface]
  name:
    description:
      - Instance name. It names the state file, the lock file and the default O(pin_dir).
      - Letters, digits, C(_) and C(-) only, because bpffs refuses names containing dots.
      - Defaults to the first of O(interfaces), with other characters turned into C(_).
    type: str
  state:
    description:
      - V(present) builds, loads, attaches and configures the instance.
      - V(absent) detaches the program from its interfaces, but only where the attached program is
        this instance's. It also removes the pins, the managed neighbour entries and the state
        file. The build cache stays.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - V(redirect) forwards every IP frame unmodified to one of O(redirect_interfaces).
      - V(nat) load-balances O(services) with source and destination NAT.
      - V(dsr) load-balances O(services) by rewriting only the destination MAC. The backends must be
        on a directly connected network and must hold the VIP on a local interface.
    type: str
    choices: [redirect, nat, dsr]
    default: nat
  attach_mode:
    description:
      - V(native) attaches in driver mode (fast).
      - V(generic) attaches in the kernel's generic (skb) mode, which works on any interface.
      - There is no silent fallback. If the driver cannot run XDP, the task fails and says to set
        V(generic).
      - A change of attach mode detaches the program briefly, because the kernel cannot hold
        native and generic programs on one interface at the same time.
    type: str
    choices: [native, generic]
    default: native
  redirect_interfaces:
    description:
      - Egress interfaces for O(mode=redirect), in slot order. Other modes do not use them.
      - Frames redirected into a veth are only delivered if the peer has an XDP program or GRO
        enabled.
    type: list
    elements: str
  redirect_algorithm:
    description:
      - How O(mode=redirect) picks the egress interface.
      - V(flow_hash) hashes the 5-tuple, so a flow stays on one port.
      - V(round_robin) rotates per packet, separately on each CPU.
    type: str
    choices: [round_robin, flow_hash]
    default: flow_hash
  services:
    description:
      - Virtual services for O(mode=nat) and O(mode=dsr). Each one is unique by O(services[].vip),
        O(services[].port) and O(services[].protocol).
      - The module validates the entries itself, so that errors name the exact path, for example
        C(services[0].backends[1].weight).
    type: list
    elements: dict
    default: []
    suboptions:
      vip:
        description:
          - Virtual IP address (IPv4 or IPv6) the clients connect to.
          - A unicast address without an IPv6 scope id (C(%eth0)); loopback, link-local, unspecified,
            multicast and IPv4-mapped addresses are refused, here and for backends and NAT sources.
        type: str
        required: true
      port:
        description: Service port, 1 to 65535.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      scheduler:
        description:
          - V(maglev) uses Maglev consistent hashing of the 5-tuple. When a backend leaves, only its
            own share of flows moves.
          - V(five_tuple) uses a weighted table indexed by the 5-tuple hash.
          - V(ip_hash) uses the same table indexed by a hash of the source and destination
            addresses, so a client sticks to one backend.
        type: str
        choices: [ip_hash, five_tuple, maglev]
        default: maglev
      backend_group:
        description:
          - Inventory group whose hosts are backends of this service, resolved on the controller by the
            action plugin from C(groups) and C(hostvars) (the backend hosts are never contacted; an
            unreachable host is still a backend unless its variables say otherwise).
          - Each host's service address is its C(xdp_lb_backend_ipv4) or C(xdp_lb_backend_ipv6) variable,
            by the family of O(services[].vip). Its C(xdp_lb_backend_port) (nat only; dsr ignores it),
            C(xdp_lb_backend_weight) (0 to 1000) and C(xdp_lb_backend_pool_state) (V(active); V(drain), weight
            0, established flows stay; V(absent), not a backend) override O(services[].backend_port) and
            O(services[].backend_weight).
          - The group's backends follow the literal O(services[].backends), sorted by address, port and
            host name, so every balancer gets the same list whatever the inventory order.
          - Fails before the module runs, naming the service, group and host, when the group does not
            exist, resolves to no backend (unless O(services[].allow_no_backends)), a host has no address
            of the service's family, a host's variable has the wrong type or range, or a backend comes
            both from the group and from a literal entry.
          - In diff mode the result lists the backends that join, leave or change weight, by inventory
            host name and address (RV(backend_changes)).
        type: str
      backend_port:
        description:
          - Default backend port of the O(services[].backend_group) hosts (O(mode=nat) only). Defaults to
            the service port.
        type: int
      backend_weight:
        description: Default weight of the O(services[].backend_group) hosts.
        type: int
        default: 100
      backend_use_ansible_host:
        description:
          - Use a host's C(ansible_host) as its service address when it has no C(xdp_lb_backend_ipv4)
            (IPv4 service) or C(xdp_lb_backend_ipv6) (IPv6 service).
          - Off by default, because C(ansible_host) is usually a management address.
        type: bool
        default: false
      allow_no_backends:
        description:
          - Allow the service to have no usable backend (no backends, an empty or all-absent
            O(services[].backend_group), or every weight 0). It then serves nothing.
          - Without it such a service is an error naming the service, so that a typo or a drained pool
            does not silently black-hole a VIP.
        type: bool
        default: false
      backends:
        description:
          - The service's literal backends. In O(mode=nat) and O(mode=dsr), together with the hosts of
            O(services[].backend_group), at least one with a weight above 0 (see
            O(services[].allow_no_backends)).
          - Same address family as O(services[].vip).
          - Optional when O(services[].backend_group) is set.
        type: list
        elements: dict
        suboptions:
          address:
            description: Backend IP address.
            type: str
            required: true
          weight:
            description:
              - Relative share of new flows, 0 to 1000.
              - V(0) drains the backend. It gets no new flows, while flows it already has stay
                with it.
            type: int
            default: 100
          port:
            description:
              - Backend port (O(mode=nat) only). Defaults to the service port.
              - Not allowed in O(mode=dsr), where backends receive the VIP's port unchanged.
            type: int
  nat_source_ipv4:
    description:
      - Source address the load balancer uses towards IPv4 backends in O(mode=nat).
      - Detected when not set. It is the source address the kernel would use towards the first
        IPv4 backend (a route lookup).
      - When set, it must be an address the host (or O(netns)) has on one of its interfaces, and not
        a VIP; the module fails before changing anything otherwise.
    type: str
  nat_source_ipv6:
    description:
      - Like O(nat_source_ipv4), for IPv6 backends.
    type: str
  nat_port_min:
    description: Lowest source port of the NAT port pool.
    type: int
    default: 20000
  nat_port_max:
    description: Highest source port of the NAT port pool (inclusive).
    type: int
    default: 32767
  flow_idle_timeout:
    description:
      - Seconds a UDP flow may be silent and keep its backend (O(mode=nat) and O(mode=dsr)).
        Its next packet after a longer silence is a new flow, scheduled afresh, so it honours
        the current weights and drains (a client that reuses its source port, such as NTP, a
        DNS resolver or a NAT gateway, no longer sticks to a drained backend).
      - V(0) keeps UDP flows on their backend until the connection table needs the room.
      - TCP does not time out; a SYN without ACK on a known flow is always a new connection,
        whatever this value.
      - Written into the data plane's configuration map, so a change needs no recompile and
        keeps connection tracking.
    type: int
    default: 30
  ring_size:
    description:
      - Entries in each service's lookup table. Must be a prime greater than 100 times the largest
        backend count of a service.
      - Compile-time size. Changing it recreates the maps, so connection tracking and counters
        start empty.
    type: int
    default: 65537
  max_services:
    description: Compile-time capacity of the services table. Changing it recreates the maps.
    type: int
    default: 32
  max_backends:
    description:
      - Compile-time capacity of the backend table, summed over all services. Id 0 is reserved.
        At most 65536 (backend ids are 16 bits in the rings).
      - Changing it recreates the maps.
    type: int
    default: 4096
  conntrack_size:
    description:
      - Flows tracked in each direction (LRU), a compile-time size. Changing it recreates the maps.
    type: int
    default: 65536
  max_map_memory:
    description:
      - Memory budget in MiB for the instance's BPF maps. The module computes what O(ring_size),
        O(max_services), O(max_backends) and O(conntrack_size) take (lb_ring alone is 2 x O(max_services)
        x O(ring_size) 16-bit backend ids; per-CPU maps count once per possible CPU) and fails before compiling,
        naming the sizes, the figure and the budget, when they need more.
      - The defaults need about 39 MiB on 2 CPUs and 62 MiB on 64.
    type: int
    default: 1024
  debug:
    description:
      - Build with C(XDP_LB_DEBUG), which traces decisions with C(bpf_printk) to
        C(/sys/kernel/tracing/trace_pipe). Slow; for troubleshooting only.
    type: bool
    default: false
  clang:
    description: The clang compiler to build with (name in C(PATH) or absolute path).
    type: str
    default: clang
  health_checks:
    description:
      - Whether a health checker runs for this instance (C(cli health <name>), which the
        netfleet.xdp_lb.xdp_lb role runs as C(netfleet-xdp-lb-health-<name>.service) when
        C(xdp_lb_health_checks) is on). Only then does its status file
        C(<state_dir>/health/<name>.json) drain backends, that is give weight 0 to those it marks
        down.
      - V(false) ignores that file and removes it, so every backend has its configured weight. The
        value is kept in the state file, so boot-time restore and the checker follow it too. A
        checker that still runs sees it there, removes its status file and exits. State files written
        before this option existed count as V(true).
    type: bool
    default: false
  preflight:
    description:
      - Before a new program is loaded against the live maps and attached (a new build, first deploy,
        restore after boot), run it with C(BPF_PROG_TEST_RUN) against scratch copies of the maps filled
        from this configuration, on synthetic packets for every service and family (a new flow, its
        second packet, the backend's reply in nat mode, a packet to no service), with the first
        interface's ifindex so that next hops come from the host's routes and neighbours. Verdicts,
        addresses, ports, checksums and MACs must match what the configuration and the host say;
        otherwise the task fails naming the packet, the expected and the actual result, and the
        running program stays attached. The live maps, NAT ports and counters are not touched.
      - V(false) skips the check (see docs/operations.md "Pre-flight" for what it costs and catches).
    type: bool
    default: true
  nat_guard:
    description:
      - nat mode. Keep an nftables table (C(inet netfleet_xdp_lb_<name>), priority raw, in the instance's
        network namespace) that drops TCP and UDP packets to the NAT source addresses within
        O(nat_port_min)..O(nat_port_max). XDP sees those packets first, so the rule only acts while no
        program is attached (after a reboot until the restore command ran, or during a detach and
        attach), so that the kernel drops the backends' packets instead of answering them with resets.
        The restore command creates it before it attaches the program.
      - Requires C(nft). V(false), or another mode, removes the table.
    type: bool
    default: true
  netns:
    description:
      - Name of a network namespace under C(/var/run/netns) to work in.
      - The module process enters it before any netlink or BPF work, so interface names and
        redirect ifindexes resolve there. The state file and bpffs pins stay in the host's mount
        namespace.
    type: str
  source:
    description:
      - Directory on the managed host that holds C(xdp_loadbalancer.c) and C(xdp_lb.h), to build
        instead of the collection's copy.
      - When it is not set, the action plugin reads the collection's C(files/) on the controller
        and the module writes them to C(<build_dir>/src/<hash>/) before compiling.
    type: path
  pin_dir:
    description:
      - bpffs directory for the instance's pinned maps and program (C(prog)).
      - Defaults to C(/sys/fs/bpf/xdp_lb/<name>).
      - Like O(build_dir), O(state_dir) and O(source), it must belong to root and not be writable by group
        or others, with parents that belong to root and are either not writable by others or sticky (a
        bpffs mounted by hand has mode 1777); no symbolic link, no C(.) or C(..) components. Otherwise the
        run fails before anything changes, naming the path, its mode and its owner.
      - Changing it for a running instance fails (its program and maps are pinned at the old path); remove
        the instance (O(state=absent)) and deploy it again to move it.
    type: path
  build_dir:
    description:
      - Build cache. Objects are named after the SHA-256 of source, header, defines and compiler,
        so the same input is never compiled twice.
      - Each object has its SHA-256 in a digest file beside it, also recorded in the state file; an
        object that does not match, or is not root's, is compiled again and never loaded.
    type: path
    default: /var/cache/netfleet-xdp-lb
  recreate_foreign_maps:
    description:
      - What to do when O(pin_dir) holds a pinned map of the instance whose map type, key size or value
        size is neither this data plane's nor that of an older layout of it. A map of an older layout
        of ours is an upgrade (the maps are recreated and established flows carried over), and so is a
        map that only differs in size, after a change of O(conntrack_size) for example.
      - V(false) refuses, naming each such map and what differs, and changes no map, program or
        attachment.
      - V(true) recreates every map of the instance; connection tracking and counters start empty.
        A request for this run, not kept in the state file.
    type: bool
    default: false
  clear_overrides:
    description:
      - End the operator's runtime overrides of this instance (C(xdp-lb drain), C(undrain), C(weight);
        kept in O(state_dir)/overrides/<name>.json) with this run. Without it a run keeps every
        override and warns naming each one.
    type: bool
    default: false
  host_setup:
    description:
      - Also manage the host around the balancer in the same run (what the netfleet.xdp_lb.xdp_lb role
        uses, so that a rerun on an unchanged host is one module run). Files (unit files, the sysctl
        file), the engine tree of this module run, their directories and links, paths that must be
        absent, live sysctl values with the values they had before, the bpffs mount, a check of
        installed packages, and a systemd reload or unit restarts after changes.
      - Compared first; every difference is one line in RV(host_setup.drift). Everything is checked
        before anything is written (unit files with C(systemd-analyze verify) where it exists, sysctl
        keys), the balancer is configured, then the host setup is applied; files are replaced
        atomically.
      - If packages of the list are missing the module changes nothing and fails, returning them in
        RV(missing_packages) (the role installs them and runs it again).
      - Returns what it found of the host in RV(host_setup.os) (distribution, OS family, package and
        service manager, from C(/etc/os-release) and the file system), so that the role needs no fact
        gathering.
      - Not with O(netns) (sysctls and mounts would apply to the module's own namespaces).
    type: dict
    suboptions:
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
            Written to C(/proc/sys) when they differ; persisting them is a file in O(host_setup.files).
        type: dict
        default: {}
      sysctl_saved:
        description:
          - A JSON file (mode C(0600)) with the value each key of O(host_setup.sysctl) had before it was first set.
            Keys that are in it but no longer in O(host_setup.sysctl) get their saved value back and leave it. Absent
            when O(host_setup.sysctl) is empty.
          - Without it, previous values are not kept.
        type: path
      packages:
        description:
          - Packages that must be installed. When not given, the list of O(host_setup.packages_by_os)
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
          - Packages that must be installed in addition.
        type: list
        elements: str
        default: []
      bpffs:
        description:
          - Mount bpffs on C(/sys/fs/bpf) if it is not. In check mode that is reported, and the balancer
            counts as deployed from scratch.
        type: bool
        default: false
      bpffs_unit:
        description:
          - The C(sys-fs-bpf.mount) unit and its enabling link, managed like O(host_setup.files) and
            O(host_setup.links) only when systemd is older than 239; newer systemd mounts bpffs itself
            and refuses such a unit.
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
            description: The enabling link, pointing at O(host_setup.bpffs_unit.path).
            type: path
            required: true
      engine_dir:
        description:
          - Install the engine tree (the collection's C(plugins/module_utils)) under this directory, for
            the restore command and the health and metrics units (C(PYTHONPATH) of their units). The files
            are the code of this module run, so the installed engine is the one that configured the
            balancer; managed like O(host_setup.files) (mode C(0644), directories C(0755)).
        type: path
      systemd_reload:
        description:
          - Run C(systemctl daemon-reload) when this run changed a unit file or a link to one (a path
            ending in C(.service), C(.timer) or C(.mount)) and systemd runs on the host.
        type: bool
        default: false
      restart_on_change:
        description:
          - Units to restart (C(systemctl restart)) when this run changed one of their paths, where
            systemd runs; after the daemon-reload.
        type: list
        elements: dict
        default: []
        suboptions:
          unit:
            description: The unit's name.
            type: str
            required: true
          paths:
            description: Paths of O(host_setup.files), O(host_setup.links) or O(host_setup.absent).
            type: list
            elements: path
            required: true
      stop_on_remove:
        description:
          - Services that are turned off, with their paths in O(host_setup.absent). Before those paths are
            removed (and before the balancer is configured), each unit is stopped (C(systemctl stop)) and
            disabled (C(systemctl disable)); after they are removed, systemd is reloaded
            (O(host_setup.systemd_reload)). Removing a unit file alone leaves its service running.
          - Where systemd runs, a unit is stopped when it is active (also after an earlier run removed its
            files) and disabled while its unit file (the path named like the unit) exists. Where it does not
            run, nothing is run and RV(host_setup.systemctl) says what would have run.
        type: list
        elements: dict
        default: []
        suboptions:
          unit:
            description: The unit's name.
            type: str
            required: true
          paths:
            description: Its paths among O(host_setup.absent); the one named like the unit is its unit file.
            type: list
            elements: path
            required: true
  _sources:
    description:
      - Internal. The action plugin sets it to the data-plane source files. Do not set it.
    type: dict
notes:
  - In O(host_setup), package queries use C(dpkg-query) (apt) or C(rpm) (dnf, yum); with another
    package manager every package counts as missing.
  - After a reboot the pins and attachments are gone. Run C(xdp-lb restore --all) (the host command
    the netfleet.xdp_lb.xdp_lb role installs, with a systemd unit running it) to restore every
    instance from its state file.
  - In O(mode=nat), packets whose next hop is not resolved yet go to the kernel already rewritten.
    The host must forward them (C(net.ipv4.ip_forward)), accept its own NAT source address as a
    packet source (C(net.ipv4.conf.<if>.accept_local)) and have a loose or disabled C(rp_filter).
    The netfleet.xdp_lb.xdp_lb role sets these sysctls.
  - In O(mode=dsr), the module keeps each backend's neighbour entry "managed" (C(NTF_EXT_MANAGED),
    Linux 5.16 and later), so the kernel keeps it resolved even without traffic. Without a
    resolved neighbour, packets go to the kernel untouched. The module warns if it cannot create
    such an entry. It leaves C(PERMANENT) and C(NOARP) entries alone.
  - The data-plane contract, map layout, apply order and the kernel versions each feature needs
    are in C(docs/design.md) of the collection.
seealso:
  - module: netfleet.xdp_lb.xdp_lb_info
'''

EXAMPLES = r'''
# The backends are the hosts of the inventory group "web", each with
# xdp_lb_backend_ipv4 (and xdp_lb_backend_ipv6 for IPv6 services) in its
# host_vars; xdp_lb_backend_pool_state: drain (or absent) on a host drains it.
- name: NAT load balancer whose backends are the inventory group web
  netfleet.xdp_lb.xdp_lb:
    name: web
    interfaces: [eth0, eth1]
    mode: nat
    services:
      - vip: 198.18.0.10
        port: 80
        backend_group: web
        backend_port: 8080
      - vip: "fd00:18::10"
        port: 80
        backend_group: web
        backends:   # literal entries and a group together
          - address: "fd00:18::2:99"

- name: NAT load balancer for a web service, literal backends
  netfleet.xdp_lb.xdp_lb:
    name: web
    interfaces: [eth0, eth1]
    mode: nat
    services:
      - vip: 198.18.0.10
        port: 80
        protocol: tcp
        backends:
          - address: 198.18.2.11
          - address: 198.18.2.12
            weight: 200
          - address: 198.18.2.13
            port: 8080

- name: Drain one backend (existing flows stay, new ones go elsewhere)
  netfleet.xdp_lb.xdp_lb:
    name: web
    interfaces: [eth0, eth1]
    services:
      - vip: 198.18.0.10
        port: 80
        backends:
          - address: 198.18.2.11
            weight: 0
          - address: 198.18.2.12

- name: Direct server return for DNS, IPv6, client addresses hashed
  netfleet.xdp_lb.xdp_lb:
    name: dns
    interface: eth0
    mode: dsr
    services:
      - vip: "fd00:18::53"
        port: 53
        protocol: udp
        scheduler: ip_hash
        backends:
          - address: "fd00:18::1:1"
          - address: "fd00:18::1:2"

- name: Spread all traffic of eth0 over two uplinks, in generic mode
  netfleet.xdp_lb.xdp_lb:
    name: spread
    interfaces: [eth0]
    mode: redirect
    attach_mode: generic
    redirect_interfaces: [eth1, eth2]
    redirect_algorithm: flow_hash

- name: Preview a change
  netfleet.xdp_lb.xdp_lb:
    name: web
    interfaces: [eth0, eth1]
    services: "{{ web_services }}"
  check_mode: true
  diff: true

- name: Build from a source tree on the host, inside a network namespace
  netfleet.xdp_lb.xdp_lb:
    name: lab
    netns: lb1
    interfaces: [veth0]
    source: /opt/xdp_lb/src
    services: "{{ lab_services }}"

- name: Remove the load balancer
  netfleet.xdp_lb.xdp_lb:
    name: web
    state: absent
'''

RETURN = r'''
name:
  description: Instance name.
  returned: always
  type: str
  sample: web
state:
  description: The instance's state after the task.
  returned: always
  type: str
  sample: present
mode:
  description: Load-balancing mode.
  returned: when O(state=present)
  type: str
  sample: nat
pin_dir:
  description: bpffs directory of the instance's pins.
  returned: always
  type: str
  sample: /sys/fs/bpf/xdp_lb/web
state_file:
  description: Path of the instance's state file.
  returned: always
  type: str
  sample: /var/lib/netfleet-xdp-lb/web.json
netns:
  description: Network namespace the module worked in (null for the host's).
  returned: when O(state=present)
  type: str
  sample: null
changes:
  description: What was (or, in check mode, would be) done, one line per step.
  returned: always
  type: list
  elements: str
  sample: ["load program build 4b1899b569df9d0d", "replace program on eth0 (native)",
           "lb_backends: backends 1 entry"]
interfaces:
  description: Every interface of the instance with the program attached to it after the task.
  returned: when O(state=present)
  type: dict
  sample: {"eth0": {"ifindex": 2, "prog_id": 280, "mode": "native"}}
  contains:
    ifindex:
      description: Interface index (in O(netns) if set).
      type: int
    prog_id:
      description: Id of the attached XDP program (0 if none).
      type: int
    mode:
      description: Attach mode as the kernel reports it (V(native), V(generic)), null if none.
      type: str
program:
  description: The instance's pinned program and build.
  returned: when O(state=present)
  type: dict
  contains:
    id:
      description: Kernel id of the pinned program (null in check mode before the first run).
      type: int
      sample: 280
    tag:
      description: Program tag (hash of the instructions).
      type: str
      sample: 592db18b994f390f
    build:
      description: SHA-256 over source, header, defines and compiler version.
      type: str
    object:
      description: Path of the compiled object in the build cache.
      type: str
      sample: /var/cache/netfleet-xdp-lb/xdp_lb-4b1899b569df9d0d.o
    source_dir:
      description: Directory the object was (or would be) built from.
      type: str
    loaded:
      description: Whether this task loaded a new program.
      type: bool
preflight:
  description: What the pre-flight check of a newly loaded program ran (see O(preflight)).
  returned: when a new program was loaded with O(preflight=true)
  type: dict
  contains:
    cases:
      description: Synthetic packets run and checked.
      type: int
      sample: 8
    seconds:
      description: Time the check took (scratch load, map fill, test runs).
      type: float
      sample: 0.21
maps:
  description: Kernel ids of the pinned maps by name. An upgrade keeps them.
  returned: when O(state=present)
  type: dict
  sample: {"lb_config": 313, "lb_ct": 315}
services:
  description: The configured services with their stable ids and their backends' ids.
  returned: when O(state=present)
  type: list
  elements: dict
  contains:
    service:
      description: C(protocol/vip:port).
      type: str
      sample: tcp/198.18.0.10:80
    id:
      description: Service id (index of its rings).
      type: int
    scheduler:
      description: Scheduler name.
      type: str
    ring:
      description: Short digest of the service's lookup table content.
      type: str
    backends:
      description: Backends with C(address), C(port), C(weight), the stable C(id) and, for backends of an
        inventory group, the inventory C(host).
      type: list
      elements: dict
backend_changes:
  description:
    - Backends that join, leave or change weight (C(change) is C(join), C(leave) or C(weight)), by
      C(service), inventory C(host) (null if no host of the inventory has that address), C(address),
      C(port), C(backend) (the address and port as text), C(weight) and C(weight_before).
    - Only for tasks with a O(services[].backend_group), in diff mode (also with check mode).
  returned: when a service uses backend_group and diff mode is on
  type: list
  elements: dict
  sample: [{change: join, service: tcp/198.18.100.1:80, host: web-3, address: 198.18.20.13, port: 80,
            backend: "198.18.20.13:80", weight: 100}]
nat_source_ipv4:
  description: NAT source address used for IPv4 backends (configured or detected), null if unused.
  returned: when O(state=present)
  type: str
  sample: 198.18.2.1
nat_source_ipv6:
  description: NAT source address used for IPv6 backends, null if unused.
  returned: when O(state=present)
  type: str
  sample: null
diff:
  description: Before and after (services, backends, mode, program, interfaces), in diff mode.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: What the host had before the task (C(state=absent) if nothing).
      type: dict
    after:
      description: What the task asks for.
      type: dict
host_setup:
  description: What O(host_setup) found and did.
  returned: when O(host_setup) is given
  type: dict
  contains:
    in_sync:
      description: True when RV(host_setup.drift) is empty.
      type: bool
      sample: true
    drift:
      description: One line per difference found before this run changed anything, naming the path,
        key or package and what was found.
      type: list
      elements: str
      sample: ["/etc/sysctl.d/60-netfleet-xdp-lb-default.conf: content differs"]
    changed_items:
      description: Paths written, linked or removed and sysctls written (C(sysctl key=value)); empty
        in check mode.
      type: list
      elements: str
      sample: ["/etc/systemd/system/netfleet-xdp-lb-restore.service", "sysctl net.ipv4.ip_forward=1"]
    packages:
      description: The package list that was checked.
      type: list
      elements: str
      sample: [clang, llvm, libbpf-dev]
    bpffs_mounted:
      description: Whether bpffs was mounted on C(/sys/fs/bpf) before this run.
      type: bool
      sample: true
    systemd_reloaded:
      description: Whether C(systemctl daemon-reload) ran (O(host_setup.systemd_reload)).
      type: bool
      sample: false
    restarted:
      description: Units restarted (O(host_setup.restart_on_change)).
      type: list
      elements: str
      sample: [netfleet-xdp-lb-health-default.service]
    systemctl:
      description:
        - The systemctl commands of this run in the order they ran (stop and disable of
          O(host_setup.stop_on_remove), daemon-reload, restarts), or would have run where
          RV(host_setup.systemctl_ran) is false.
      type: list
      elements: str
      sample: ["systemctl stop netfleet-xdp-lb-health-default.service",
               "systemctl disable netfleet-xdp-lb-health-default.service", "systemctl daemon-reload"]
    systemctl_ran:
      description: Whether the commands of RV(host_setup.systemctl) ran; false in check mode and where systemd
        does not run (then they are what would have run).
      type: bool
      sample: true
    systemd_version:
      description: systemd's version (0 without systemctl), read when O(host_setup.bpffs_unit) is given.
      type: int
      sample: 252
    os:
      description: The host's distribution and OS family (named as Ansible's facts name them), package
        manager (C(apt), C(dnf5), C(dnf), C(yum), ... or C(unknown)) and service manager (C(systemd)
        when systemd runs, else the name of PID 1).
      type: dict
      sample: {distribution: Debian, family: Debian, pkg_mgr: apt, service_mgr: systemd}
missing_packages:
  description: Packages of O(host_setup) that are not installed; the module then changed nothing and
    failed.
  returned: when packages are missing
  type: list
  elements: str
  sample: [clang]
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import deps, engine, hostsetup, model

# What prints "ii <name>" for each installed package of a list (another
# package manager: no query, every package counts as missing).
RPM_QUERY = ['rpm', '--query', '--queryformat=ii %{NAME}\n']
PACKAGE_QUERY = {
    'apt': ['dpkg-query', '--show', '--showformat=${db:Status-Abbrev}${Package}\n'],
    'dnf': RPM_QUERY,
    'dnf5': RPM_QUERY,
    'yum': RPM_QUERY,
}

HOST_SETUP_SPEC = dict(
    files=dict(type='list', elements='dict', default=[], options=dict(
        path=dict(type='path', required=True),
        content=dict(type='str', required=True),
        mode=dict(type='str'))),
    directories=dict(type='list', elements='dict', default=[], options=dict(
        path=dict(type='path', required=True),
        mode=dict(type='str'))),
    links=dict(type='list', elements='dict', default=[], options=dict(
        path=dict(type='path', required=True),
        src=dict(type='path', required=True))),
    absent=dict(type='list', elements='path', default=[]),
    sysctl=dict(type='dict', default={}),
    sysctl_saved=dict(type='path'),
    packages=dict(type='list', elements='str'),
    packages_by_os=dict(type='dict', default={}),
    extra_packages=dict(type='list', elements='str', default=[]),
    bpffs=dict(type='bool', default=False),
    bpffs_unit=dict(type='dict', options=dict(
        path=dict(type='path', required=True),
        content=dict(type='str', required=True),
        mode=dict(type='str'),
        link=dict(type='path', required=True))),
    engine_dir=dict(type='path'),
    systemd_reload=dict(type='bool', default=False),
    restart_on_change=dict(type='list', elements='dict', default=[], options=dict(
        unit=dict(type='str', required=True),
        paths=dict(type='list', elements='path', required=True))),
    stop_on_remove=dict(type='list', elements='dict', default=[], options=dict(
        unit=dict(type='str', required=True),
        paths=dict(type='list', elements='path', required=True))),
)

ARGUMENT_SPEC = dict(
    interfaces=dict(type='list', elements='str', aliases=['interface']),
    name=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    mode=dict(type='str', default='nat', choices=['redirect', 'nat', 'dsr']),
    attach_mode=dict(type='str', default='native', choices=['native', 'generic']),
    redirect_interfaces=dict(type='list', elements='str'),
    redirect_algorithm=dict(type='str', default='flow_hash', choices=['round_robin', 'flow_hash']),
    services=dict(type='list', elements='dict', default=[]),
    nat_source_ipv4=dict(type='str'),
    nat_source_ipv6=dict(type='str'),
    nat_port_min=dict(type='int', default=20000),
    nat_port_max=dict(type='int', default=32767),
    flow_idle_timeout=dict(type='int', default=30),
    ring_size=dict(type='int', default=65537),
    max_services=dict(type='int', default=32),
    max_backends=dict(type='int', default=4096),
    conntrack_size=dict(type='int', default=65536),
    max_map_memory=dict(type='int', default=1024),
    debug=dict(type='bool', default=False),
    clang=dict(type='str', default='clang'),
    health_checks=dict(type='bool', default=False),
    preflight=dict(type='bool', default=True),
    nat_guard=dict(type='bool', default=True),
    netns=dict(type='str'),
    source=dict(type='path'),
    pin_dir=dict(type='path'),
    state_dir=dict(type='path', default=model.DEFAULT_STATE_DIR),
    build_dir=dict(type='path', default=model.DEFAULT_BUILD_DIR),
    host_setup=dict(type='dict', options=HOST_SETUP_SPEC),
    recreate_foreign_maps=dict(type='bool', default=False),
    clear_overrides=dict(type='bool', default=False),
    _sources=dict(type='dict'),
)


def package_list(host, host_os):
    """host_setup's packages, or its packages_by_os entry for the host's
    distribution, else OS family, else 'default'; then extra_packages."""
    packages = host['packages']
    if packages is None:
        by_os = host['packages_by_os']
        key = next((k for k in (host_os['distribution'], host_os['family'], 'default') if k in by_os), None)
        if key is None:
            raise hostsetup.HostSetupError(
                "packages_by_os: no package list for %s (%s family) and no 'default'; give packages "
                "(xdp_lb_packages in the role), or provision the host and give packages: [] "
                "(xdp_lb_install_packages: false)" % (host_os['distribution'], host_os['family']))
        packages = by_os[key]
    packages = list(packages or [])
    return packages + [name for name in host['extra_packages'] if name not in packages]


def file_diffs(files):
    """Before/after of the files that differ (compare()'s ``files``), for --diff."""
    out = []
    for spec in files:
        try:
            with open(spec['path']) as handle:
                before = handle.read()
        except (IOError, OSError, UnicodeDecodeError):
            before = ''
        out.append(dict(before_header=spec['path'], after_header=spec['path'], before=before, after=spec['content']))
    return out


def host_setup_start(module, host):
    """Before the balancer: the host's OS, packages, the comparison, and
    every check of what will be written.  Fails (changing nothing) on
    missing packages or bad input.  Returns (manifest, report, plan, the
    file specs that differ, the systemctl commands that turn off the units of
    stop_on_remove)."""
    for field in ('files', 'directories'):
        for spec in host[field]:
            if spec.get('mode') is not None:
                try:
                    int(spec['mode'], 8)
                except ValueError:
                    module.fail_json(msg='host_setup.%s: mode %r of %s is not an octal number'
                                     % (field, spec['mode'], spec['path']))
    host_os = hostsetup.host_os()
    manifest = dict(host)
    manifest['sysctl'] = dict((str(k), str(v)) for k, v in host['sysctl'].items())
    manifest['package_query'] = PACKAGE_QUERY.get(host_os['pkg_mgr'])
    report = dict(in_sync=False, drift=[], changed_items=[], packages=[], os=host_os, systemd_reloaded=False,
                  restarted=[], systemctl=[], systemctl_ran=False)
    found = dict(files=[])
    stops = []
    try:
        manifest['packages'] = package_list(host, host_os)
        manifest, version = hostsetup.fold_bpffs_unit(hostsetup.fold_engine_tree(manifest))
        found = hostsetup.compare(manifest)
        report.update(in_sync=not found['drift'], drift=found['drift'], packages=manifest['packages'],
                      bpffs_mounted=found['bpffs_mounted'])
        if version is not None:
            report['systemd_version'] = version
        if found['missing_packages']:
            module.fail_json(msg='host_setup: packages not installed: %s; nothing changed'
                             % ', '.join(found['missing_packages']),
                             missing_packages=found['missing_packages'], host_setup=report)
        plan = None
        if found['drift'] and not module.check_mode:
            plan = hostsetup.prepare(manifest, found)
        stops = hostsetup.stop_plan(manifest, host_os['service_mgr'])
    except hostsetup.HostSetupError as exc:
        module.fail_json(msg='host_setup: %s' % exc, host_setup=report)
    except (IOError, OSError) as exc:
        module.fail_json(msg='host_setup: %s' % exc, host_setup=report)
    return manifest, report, plan, found['files'], stops


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[('state', 'present', ('interfaces',))],
        supports_check_mode=True,
    )
    host = module.params['host_setup']
    manifest = report = plan = differing = None
    stops = []
    if host is not None and module.params['netns']:
        module.fail_json(msg='host_setup: not with netns %r (sysctls and mounts would apply to the '
                         "module's own namespaces)" % module.params['netns'])
    if host is not None:
        # Packages first: without them bcc and pyroute2 may be missing too.
        manifest, report, plan, differing, stops = host_setup_start(module, host)
    # Where systemd does not run (or in check mode) systemctl commands are
    # only reported (host_setup.systemctl), as what would have run.
    systemd = host is not None and report['os']['service_mgr'] == 'systemd' and not module.check_mode
    deps.fail_if_missing(module, missing_required_lib)

    # The options by their canonical names: module.params also holds each
    # alias given (interface), which AnsibleModule has already resolved.
    params = dict((k, module.params[k]) for k in ARGUMENT_SPEC if not k.startswith('_') and k not in ('host_setup', 'clear_overrides'))
    try:
        cfg = model.validate(params)
    except model.ConfigError as exc:
        module.fail_json(msg=str(exc), field=exc.path)
    try:
        # Before anything changes: the directories root writes to and loads from (trust.py).
        engine.check_trust(cfg)
    except engine.EngineError as exc:
        module.fail_json(msg=str(exc), name=cfg.name)

    if host is not None and cfg.state == 'present':
        # Before host_setup changes anything (the engine checks again).
        for field in ('interfaces', 'redirect_interfaces'):
            for i, name in enumerate(module.params[field] or []):
                if not os.path.exists(os.path.join('/sys/class/net', name)):
                    module.fail_json(msg='%s[%d]: interface %s not found' % (field, i, name), host_setup=report)

    if host is not None and host['bpffs'] and not report['bpffs_mounted'] and module.check_mode:
        # Nothing to inspect without bpffs: everything would be created.
        result = dict(changed=True, name=cfg.name, state=cfg.state,
                      msg='bpffs is not mounted at %s yet: the balancer would be deployed from scratch'
                      % hostsetup.BPFFS)
    else:
        try:
            if host is not None and host['bpffs'] and not report['bpffs_mounted']:
                hostsetup.mount_bpffs()
            if stops and systemd:
                # What is turned off stops first and is disabled while its
                # unit file is still there (a removed unit file does not stop
                # a running service).
                hostsetup.run_stops(stops)
            if plan is not None:
                # Before the balancer: a feature turned off goes first (the
                # health checker's status must not drain backends any more).
                report['changed_items'] = hostsetup.remove_absent(manifest)
            result = engine.run(cfg, check_mode=module.check_mode, sources=module.params['_sources'],
                                diff=module._diff, clear_overrides=module.params['clear_overrides'])
        except (engine.EngineError, hostsetup.command.CommandError) as exc:
            module.fail_json(msg=str(exc), name=cfg.name, **({'host_setup': report} if report else {}))
    for warning in result.pop('warnings', []):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)

    if host is not None:
        if plan is not None:
            try:
                report['changed_items'] += hostsetup.commit(manifest, plan)
            except (IOError, OSError, hostsetup.HostSetupError) as exc:
                module.fail_json(msg='host_setup: the balancer is configured, the host setup failed: %s' % exc,
                                 host_setup=report)
        # What changed, or in check mode what would (the paths of the drift lines).
        changed = report['changed_items'] if plan is not None else \
            [line.split(': ', 1)[0] for line in report['drift']] if module.check_mode else []
        reload_, units = hostsetup.systemd_actions(manifest, changed, 'systemd')
        if plan is not None and systemd:
            try:
                hostsetup.run_systemd(reload_, units)
            except hostsetup.command.CommandError as exc:
                module.fail_json(msg='host_setup: the balancer and the files are in place, systemctl failed: %s' % exc,
                                 host_setup=report)
            report.update(systemd_reloaded=reload_, restarted=units)
        report.update(systemctl=hostsetup.systemctl_lines(stops, reload_, units), systemctl_ran=systemd)
        host_changed = bool(report['changed_items']) or bool(stops) or (module.check_mode and not report['in_sync'])
        result['changed'] = result.get('changed', False) or host_changed
        if module._diff and not report['in_sync']:
            diffs = [result['diff']] if result.get('diff') else []
            result['diff'] = diffs + file_diffs(differing)
        result['host_setup'] = report
    module.exit_json(**result)


if __name__ == '__main__':
    main()
