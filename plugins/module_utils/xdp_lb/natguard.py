# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NAT guard: silence instead of resets while no program is attached (nat mode).

While an XDP program in nat mode runs, the backends' replies to
NAT-source:NAT-port are translated before the kernel sees them.  While none
runs (after a reboot until the restore command attached it, or during a
detach-then-attach swap), the kernel gets those packets itself, finds no
socket and answers with TCP resets (ICMP port unreachable for UDP): the
backends then tear down connections whose state could have come back.

The guard is one nftables table per instance, ``inet netfleet_xdp_lb_<name>``,
in the instance's network namespace, whose prerouting chain (priority raw,
before conntrack) drops TCP and UDP packets to the NAT source addresses
within the NAT port range, with a counter.  XDP runs before nftables: while
the program is attached, the packets it translates never reach the rule,
only those it hands to the kernel unchanged (a reply with no NAT entry),
which are dropped instead of reset.  The module keeps the table in place
(nat_guard: true, the default, in nat mode) and removes it otherwise; the
restore command (re)creates it before it loads and attaches the program.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import tempfile

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run, CommandError

NFT = "nft"


class GuardError(Exception):
    pass


def table_name(instance):
    return "netfleet_xdp_lb_%s" % instance


def ruleset(instance, snat_v4, snat_v6, port_min, port_max):
    """The table's nft text (creating or replacing it in one transaction)."""
    t = table_name(instance)
    lines = ["add table inet %s" % t, "delete table inet %s" % t, "table inet %s {" % t,
             "  chain guard {",
             "    type filter hook prerouting priority raw; policy accept;"]
    for fam, addr in (("ip", snat_v4), ("ip6", snat_v6)):
        if addr:
            lines.append("    %s daddr %s meta l4proto { tcp, udp } th dport %d-%d counter drop"
                         % (fam, addr, port_min, port_max))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def want(cfg, snat):
    """What the guard must be for ``cfg`` ({"v4", "v6", "ports"}), None for no guard."""
    if cfg.mode != "nat" or not cfg.nat_guard or not (snat.get(4) or snat.get(6)):
        return None
    return {"table": table_name(cfg.name), "ipv4": snat.get(4), "ipv6": snat.get(6),
            "ports": [cfg.nat_port_min, cfg.nat_port_max]}


def _nft(args):
    try:
        return run([NFT] + args)
    except CommandError as exc:
        if exc.rc == 127:
            raise GuardError("nat_guard needs nft (install nftables) or set nat_guard: false")
        raise GuardError("nft %s: %s" % (" ".join(args), (exc.stderr or exc.stdout).strip()))


def present(instance):
    """Whether the guard table exists in this network namespace."""
    try:
        rc, _out, _err = run([NFT, "list", "table", "inet", table_name(instance)], check=False)
    except CommandError:
        return False
    return rc == 0


def apply(instance, spec):
    """Create or replace the table for ``spec`` (from ``want``)."""
    text = ruleset(instance, spec["ipv4"], spec["ipv6"], spec["ports"][0], spec["ports"][1])
    fd, path = tempfile.mkstemp(prefix="xdp-lb-guard-", suffix=".nft")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        _nft(["-f", path])
    finally:
        os.unlink(path)


def remove(instance):
    """Delete the table; True if it was there."""
    if not present(instance):
        return False
    _nft(["delete", "table", "inet", table_name(instance)])
    return True


def dropped(instance):
    """Packets the guard dropped so far (sum of its counters), None without a table."""
    try:
        rc, out, _err = run([NFT, "list", "table", "inet", table_name(instance)], check=False)
    except CommandError:
        return None
    if rc != 0:
        return None
    total = 0
    words = out.split()
    for i, w in enumerate(words):
        if w == "packets" and i + 1 < len(words) and words[i + 1].isdigit():
            total += int(words[i + 1])
    return total
