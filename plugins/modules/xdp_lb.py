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
  - An option given as null is treated as not given (the action plugin drops it, also inside
    O(host_command), O(health_checks), O(metrics), O(sysctls) and O(packages)), so its default applies.
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
      - Health checks of this instance's backends. With O(health_checks.enabled) the module installs the
        B(health checker), a service (C(netfleet-xdp-lb-health-<name>.service), the host command's
        C(xdp-lb health <name>)) with its settings file C(<state_dir>/health/<name>.conf.json), enables it and
        starts it now (restarts it when its unit or settings changed). It probes every backend from the balancer
        every O(health_checks.interval) seconds; O(health_checks.fall) failures in a row drain a backend
        (weight 0, so no new flows while existing ones stay), O(health_checks.rise) passes in a row bring back its
        configured weight. Runs of the module keep what the checker drained.
      - Turned off (or O(state=absent)), the checker is stopped and disabled before its unit, settings and
        status file are removed, and every backend has its configured weight. The setting is kept in the state
        file, so boot-time restore follows it; state files written before this option existed count as on.
      - Installs the host command (see O(host_command)) the checker runs.
      - The settings are validated before anything changes; errors name the field and the value.
    type: dict
    suboptions:
      enabled:
        description: Whether the health checker runs.
        type: bool
        default: false
      interval:
        description: Seconds between two rounds of probes, 0.05 to 3600.
        type: float
        default: 2
      timeout:
        description: Seconds a probe may take, 0.05 to 3600.
        type: float
        default: 1
      rise:
        description: Passes in a row that bring a drained backend back, 1 to 100.
        type: int
        default: 2
      fall:
        description: Failures in a row that drain a backend, 1 to 100.
        type: int
        default: 2
      probes:
        description:
          - Probe per protocol (V(tcp), V(udp)) or per service (C(tcp/198.18.100.1:80),
            C(udp/[fd00:18:100::1]:53)), each a dict with a C(type). Type C(tcp) connects. Type C(http) (with
            C(path) and C(host)) sends a GET and wants 2xx or 3xx. Type C(dns) (with C(name) and C(qtype) V(A),
            V(AAAA) or V(TXT)) wants any answer. Another type is an error naming the probe.
          - "Default: C({tcp: {type: tcp}, udp: {type: dns, name: '.', qtype: A}})."
        type: dict
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
  restore_at_boot:
    description:
      - V(true) installs and enables the B(restore unit) (C(netfleet-xdp-lb-restore.service), C(xdp-lb restore --all)
        at boot, every balancer of the host back from its state file) and the B(NAT guard unit)
        (C(netfleet-xdp-lb-guard.service), C(xdp-lb guard --all) before the network comes up). They are enabled
        for the next boot and not started; this module run has done what they do. Installs the host command
        (see O(host_command)).
      - V(false) stops and disables both, then removes them. Not set leaves them as they are.
      - With O(state=absent) and no other instance left in O(state_dir), a value (V(true) or V(false)) removes
        them.
    type: bool
  host_command:
    description:
      - The host command B(xdp-lb) (C(<bin_dir>/xdp-lb), docs/cli.md) and the B(engine) it runs (this module's
        code, installed under O(host_command.engine_dir)). The entry point runs C(python -I) and puts the
        installed engine first on C(sys.path) itself, so it never imports from the current directory or
        C(PYTHONPATH). Files left by an older engine are removed.
      - Installed whenever O(restore_at_boot), O(health_checks.enabled) or O(metrics.enabled) is on, whose units
        run it.
    type: dict
    suboptions:
      install:
        description:
          - V(true) installs the host command and the engine. V(false) removes them when nothing else needs
            them and no other instance is left. Not set leaves them as they are (unless a unit needs them).
        type: bool
      engine_dir:
        description: Directory of the installed engine tree.
        type: path
        default: /usr/local/lib/netfleet-xdp-lb
      bin_dir:
        description: Directory of the C(xdp-lb) entry point.
        type: path
        default: /usr/local/sbin
      python:
        description: The Python that runs the host command and the units (it must see bcc and pyroute2).
        type: path
        default: /usr/bin/python3
  systemd_dir:
    description: Where unit files and their enabling links go.
    type: path
    default: /etc/systemd/system
  metrics:
    description:
      - Counters for node_exporter's textfile collector. With O(metrics.enabled) the module installs the
        B(metrics service) (C(xdp-lb metrics --out <directory>/netfleet-xdp-lb.prom), every balancer of the
        host) and the B(metrics timer) that runs it every O(metrics.interval), enables and starts the timer,
        and writes the B(metrics file) now when it is not there yet.
      - O(metrics.enabled=false) stops and disables the timer, then removes both units and the metrics file.
        Not set leaves them as they are; with O(state=absent) and no other instance left, a value removes them.
    type: dict
    suboptions:
      enabled:
        description: Whether the counters are exported.
        type: bool
      directory:
        description: The textfile collector's directory.
        type: path
        default: /var/lib/prometheus/node-exporter
      interval:
        description: How often, as a systemd time span (C(15s), C(1min)).
        type: str
        default: 15s
  sysctls:
    description:
      - The kernel parameters the mode needs, set now and persisted in a B(sysctl file). V(nat) and V(dsr) need
        C(net.ipv4.ip_forward=1) and C(net.ipv6.conf.all.forwarding=1); V(nat) also
        C(net.ipv4.conf.<interface>.accept_local=1) and C(net.ipv4.conf.<interface>.rp_filter=2) (loose) on each
        of O(interfaces).
      - The value each key had before it was first set is kept (C(<state_dir>/role/<name>.sysctl.json), the
        B(sysctl saved values)); a key no longer needed, and every key at O(state=absent), gets it back.
      - Keys are validated against a strict pattern before anything changes (a top-level name such as C(net),
        then C(.)-separated parts; C(/) stands for a C(.) of an interface name).
    type: dict
    suboptions:
      manage:
        description: Whether the module sets and persists them. V(false) leaves every sysctl alone.
        type: bool
        default: false
      extra:
        description: More sysctls to set and persist with the same file (key to value).
        type: dict
        default: {}
      file:
        description: The sysctl file. Defaults to C(/etc/sysctl.d/60-netfleet-xdp-lb-<name>.conf).
        type: path
  mount_bpffs:
    description:
      - Mount bpffs on C(/sys/fs/bpf) now if it is not (mode C(0700)), and at boot. systemd 239 and later
        mount it themselves; older systemd gets a B(bpffs mount unit) (C(sys-fs-bpf.mount)), enabled.
      - In check mode an unmounted bpffs means the balancer counts as deployed from scratch.
      - V(false) leaves bpffs alone; with O(state=absent) of the last instance, V(true) removes the mount unit
        (bpffs stays mounted; other BPF users may have pins there).
    type: bool
    default: false
  packages:
    description:
      - The packages the balancer needs (clang, llvm, libbpf headers, bpftool, bcc and pyroute2 for the system
        Python, nftables), checked with one query per run.
    type: dict
    suboptions:
      policy:
        description:
          - V(install) installs the missing ones with the host's package manager (apt, dnf, yum) before the
            balancer is configured.
          - V(verify) fails, naming them, when some are missing; nothing changes.
          - V(ignore) does not look.
        type: str
        choices: [install, verify, ignore]
        default: ignore
      names:
        description:
          - The list. Default by the host's distribution or OS family (C(/etc/os-release)) for Debian and Ubuntu,
            Fedora and RHEL; another OS must give it.
        type: list
        elements: str
      extra:
        description: More packages, in addition to O(packages.names) or the default list.
        type: list
        elements: str
        default: []
      update_cache:
        description: With apt, refresh the package cache before installing when it is older than
          O(packages.cache_valid_time).
        type: bool
        default: true
      cache_valid_time:
        description: Seconds the apt cache counts as fresh.
        type: int
        default: 3600
  _sources:
    description:
      - Internal. The action plugin sets it to the data-plane source files. Do not set it.
    type: dict
notes:
  - The options O(restore_at_boot), O(host_command), O(health_checks), O(metrics), O(sysctls), O(mount_bpffs)
    and O(packages) describe the host around the balancer. Their artifacts are compared first, every check runs
    before anything changes (unit files with C(systemd-analyze verify) where it exists), the balancer is
    configured, then services turned off are stopped and disabled, their files removed, files written atomically,
    systemd reloaded and what is on started. Where systemd is not PID 1 (a container, a lab namespace) nothing is
    started or stopped and RV(footprint.systemctl) lists what would have run. They are not allowed with
    O(netns), because sysctls and mounts would apply to the module's own namespaces.
  - The units run sandboxed (read-only system, their own C(/tmp), only the capabilities bpf(), netlink and
    namespaces need); C(plugins/module_utils/xdp_lb/units.py) gives each directive with its reason.
  - After a reboot the pins and attachments are gone. Run C(xdp-lb restore --all) (the host command
    O(host_command) installs, and that O(restore_at_boot) runs at boot) to restore every
    instance from its state file.
  - In O(mode=nat), packets whose next hop is not resolved yet go to the kernel already rewritten.
    The host must forward them (C(net.ipv4.ip_forward)), accept its own NAT source address as a
    packet source (C(net.ipv4.conf.<if>.accept_local)) and have a loose or disabled C(rp_filter).
    O(sysctls.manage) sets these sysctls.
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
footprint:
  description: What the module found and did around the balancer (O(restore_at_boot), O(host_command),
    O(health_checks), O(metrics), O(sysctls), O(mount_bpffs), O(packages)).
  returned: when O(netns) is not set
  type: dict
  contains:
    in_sync:
      description: True when the host held every artifact as the options want (RV(footprint.drift) empty, no
        missing package).
      type: bool
      sample: true
    drift:
      description: One line per difference found before this run changed anything, naming the artifact by what
        it is, its path or key and what was found.
      type: list
      elements: str
      sample: ["restore unit /etc/systemd/system/netfleet-xdp-lb-restore.service: missing",
               "sysctl net.ipv4.ip_forward: 0, want 1"]
    changed:
      description: What this run changed, by what it is (empty in check mode).
      type: list
      elements: str
      sample: ["health checker /etc/systemd/system/netfleet-xdp-lb-health-web.service: written",
               "sysctl net.ipv4.ip_forward=1", "metrics file /var/lib/prometheus/node-exporter/netfleet-xdp-lb.prom: written"]
    services:
      description: Each service the options name, by what it is, with its unit and whether it is left enabled
        and running.
      type: dict
      sample: {"health checker": {"unit": "netfleet-xdp-lb-health-web.service", "enabled": true, "running": true}}
    systemctl:
      description:
        - The systemctl commands of this run in the order they ran (stop and disable of what is turned off,
          daemon-reload, restart or start of what is on), or would have run where RV(footprint.systemctl_ran)
          is false.
      type: list
      elements: str
      sample: ["systemctl stop netfleet-xdp-lb-health-web.service",
               "systemctl disable netfleet-xdp-lb-health-web.service", "systemctl daemon-reload"]
    systemctl_ran:
      description: Whether the commands of RV(footprint.systemctl) ran; false in check mode and where systemd
        is not PID 1 (then they are what would have run).
      type: bool
      sample: true
    packages:
      description: The package list that was checked (empty with O(packages.policy=ignore)).
      type: list
      elements: str
      sample: [clang, llvm, libbpf-dev]
    missing_packages:
      description: Packages of the list that were not installed before this run.
      type: list
      elements: str
      sample: []
    bpffs_mounted:
      description: Whether bpffs was mounted on C(/sys/fs/bpf) before this run.
      type: bool
      sample: true
    systemd_version:
      description: systemd's version (0 without systemctl), read when O(mount_bpffs) is on.
      type: int
      sample: 252
    os:
      description: The host's distribution and OS family (named as Ansible's facts name them), package
        manager (C(apt), C(dnf5), C(dnf), C(yum), ... or C(unknown)) and service manager (C(systemd)
        when systemd is PID 1, else the name of PID 1).
      type: dict
      sample: {distribution: Debian, family: Debian, pkg_mgr: apt, service_mgr: systemd}
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    command, deps, engine, footprint, hostsetup, model, packages, state)

# The options that describe the host around the balancer (footprint.py).
FOOTPRINT_SPEC = dict(
    restore_at_boot=dict(type='bool'),
    host_command=dict(type='dict', apply_defaults=True, options=dict(
        install=dict(type='bool'),
        engine_dir=dict(type='path', default=footprint.DEFAULT_ENGINE_DIR),
        bin_dir=dict(type='path', default=footprint.DEFAULT_BIN_DIR),
        python=dict(type='path', default=footprint.DEFAULT_PYTHON))),
    systemd_dir=dict(type='path', default=footprint.DEFAULT_SYSTEMD_DIR),
    health_checks=dict(type='dict', apply_defaults=True, options=dict(
        enabled=dict(type='bool', default=False),
        interval=dict(type='float', default=2.0),
        timeout=dict(type='float', default=1.0),
        rise=dict(type='int', default=2),
        fall=dict(type='int', default=2),
        probes=dict(type='dict'))),
    metrics=dict(type='dict', apply_defaults=True, options=dict(
        enabled=dict(type='bool'),
        directory=dict(type='path', default=footprint.DEFAULT_METRICS_DIR),
        interval=dict(type='str', default='15s'))),
    sysctls=dict(type='dict', apply_defaults=True, options=dict(
        manage=dict(type='bool', default=False),
        extra=dict(type='dict', default={}),
        file=dict(type='path'))),
    mount_bpffs=dict(type='bool', default=False),
    packages=dict(type='dict', apply_defaults=True, options=dict(
        policy=dict(type='str', default='ignore', choices=['install', 'verify', 'ignore']),
        names=dict(type='list', elements='str'),
        extra=dict(type='list', elements='str', default=[]),
        update_cache=dict(type='bool', default=True),
        cache_valid_time=dict(type='int', default=3600))),
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
    preflight=dict(type='bool', default=True),
    nat_guard=dict(type='bool', default=True),
    netns=dict(type='str'),
    source=dict(type='path'),
    pin_dir=dict(type='path'),
    state_dir=dict(type='path', default=model.DEFAULT_STATE_DIR),
    build_dir=dict(type='path', default=model.DEFAULT_BUILD_DIR),
    recreate_foreign_maps=dict(type='bool', default=False),
    clear_overrides=dict(type='bool', default=False),
    _sources=dict(type='dict'),
)
ARGUMENT_SPEC.update(FOOTPRINT_SPEC)


def footprint_used(params):
    """Whether an option asks for something around the balancer."""
    return (params['restore_at_boot'] is not None or params['host_command']['install'] is not None
            or params['health_checks']['enabled'] or params['metrics']['enabled'] is not None
            or params['sysctls']['manage'] or params['mount_bpffs'] or params['packages']['policy'] != 'ignore')


def start_footprint(module, cfg):
    """The footprint's plan and every check of it, before anything changes."""
    p = module.params
    others = [n for n in state.instances(cfg.state_dir) if n != cfg.name]
    opts = dict((k, p[k]) for k in FOOTPRINT_SPEC)
    try:
        manifest = footprint.plan(opts, cfg.name, cfg.mode, list(cfg.interfaces or []), cfg.state_dir,
                                  cfg.build_dir, present=cfg.state == 'present', others=others)
        fp = footprint.Footprint(manifest, module.check_mode)
        fp.check()
    except (ValueError, footprint.FootprintError, packages.PackageError, hostsetup.HostSetupError) as exc:
        module.fail_json(msg='%s; nothing changed' % exc, name=cfg.name)
    except (IOError, OSError) as exc:
        module.fail_json(msg='footprint: %s; nothing changed' % exc, name=cfg.name)
    return fp


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[('state', 'present', ('interfaces',))],
        supports_check_mode=True,
    )
    p = module.params
    used = footprint_used(p)
    if used and p['netns']:
        module.fail_json(msg='restore_at_boot, host_command, health_checks, metrics, sysctls, mount_bpffs and '
                         "packages: not with netns %r (sysctls and mounts would apply to the module's own "
                         'namespaces)' % p['netns'])

    # The options by their canonical names: module.params also holds each
    # alias given (interface), which AnsibleModule has already resolved.
    params = dict((k, p[k]) for k in ARGUMENT_SPEC
                  if not k.startswith('_') and k not in FOOTPRINT_SPEC and k != 'clear_overrides')
    params['health_checks'] = p['health_checks']['enabled']
    try:
        cfg = model.validate(params)
    except model.ConfigError as exc:
        module.fail_json(msg=str(exc), field=exc.path)
    try:
        # Before anything changes: the directories root writes to and loads from (trust.py).
        engine.check_trust(cfg)
    except engine.EngineError as exc:
        module.fail_json(msg=str(exc), name=cfg.name)

    if used and cfg.state == 'present':
        # Before the footprint changes anything (the engine checks again).
        for field in ('interfaces', 'redirect_interfaces'):
            for i, name in enumerate(p[field] or []):
                if not os.path.exists(os.path.join('/sys/class/net', name)):
                    module.fail_json(msg='%s[%d]: interface %s not found; nothing changed' % (field, i, name))

    # Without netns the footprint is compared (and checked) on every run: an
    # option left unset leaves its artifacts alone, the health checker of
    # the instance follows health_checks.
    fp = start_footprint(module, cfg) if not p['netns'] else None
    if fp is not None:
        # Packages first: without them bcc and pyroute2 may be missing too.
        try:
            fp.prepare_host()
        except (packages.PackageError, command.CommandError) as exc:
            module.fail_json(msg=str(exc), footprint=fp.report)
    deps.fail_if_missing(module, missing_required_lib)

    if fp is not None and fp.bpffs_missing and module.check_mode:
        # Nothing to inspect without bpffs: everything would be created.
        result = dict(changed=True, name=cfg.name, state=cfg.state,
                      msg='bpffs is not mounted at %s yet: the balancer would be deployed from scratch'
                      % hostsetup.BPFFS)
    else:
        try:
            result = engine.run(cfg, check_mode=module.check_mode, sources=p['_sources'],
                                diff=module._diff, clear_overrides=p['clear_overrides'])
        except (engine.EngineError, command.CommandError) as exc:
            module.fail_json(msg=str(exc), name=cfg.name, **({'footprint': fp.report} if fp else {}))
    for warning in result.pop('warnings', []):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)

    if fp is not None:
        try:
            changed = fp.apply()
        except (IOError, OSError, command.CommandError) as exc:
            module.fail_json(msg='the balancer is configured, its footprint failed: %s' % exc, footprint=fp.report)
        result['changed'] = result.get('changed', False) or changed
        if module._diff:
            diffs = fp.file_diffs()
            if diffs:
                result['diff'] = ([result['diff']] if result.get('diff') else []) + diffs
        result['footprint'] = fp.report
    module.exit_json(**result)


if __name__ == '__main__':
    main()
