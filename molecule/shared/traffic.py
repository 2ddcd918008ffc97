#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Client side of the molecule traffic checks.

Run inside the lab's client namespace (``ip netns exec <prefix>client``).
Sends N requests per service with curl (TCP 80, nginx) and dig (UDP 53,
dnsmasq), IPv4 and IPv6, each request from its own source port, and prints
one JSON object: per service (named as xdp_lb_info names it,
``tcp/198.18.100.1:80``) the number of requests, of failures, and of
answers per backend address.

Every lab backend ``beN`` answers with its name; its addresses are
198.18.1.(10+N) and fd00:18:1::(10+N) (scripts/lab/lab.sh, scripts/lab/fleet.sh).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import random
import re
import subprocess

ANSWER = re.compile(r'^"?be([0-9])"?$')


def backend_address(n, family):
    return "198.18.1.%d" % (10 + n) if family == 4 else "fd00:18:1::%d" % (10 + n)


def one(kind, family, vip, src, port):
    """One request; returns (backend number or None, error text)."""
    host = vip if family == 4 else "[%s]" % vip
    if kind == "tcp":
        argv = ["curl", "-sS", "-g", "-m", "3", "--local-port", str(port), "http://%s/" % host]
    else:
        argv = ["dig", "+short", "+time=2", "+tries=1", "-b", "%s#%d" % (src, port),
                "TXT", "whoami.lab", "@%s" % vip]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    out = proc.stdout.decode("utf-8", "replace").strip()
    m = ANSWER.match(out)
    if proc.returncode == 0 and m:
        return int(m.group(1)), None
    return None, "%s (source port %d): rc %d: %s" % (" ".join(argv[:1] + argv[-2:]), port, proc.returncode, out[:200])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=30, help="requests per service")
    p.add_argument("--vip4", default="198.18.100.1")
    p.add_argument("--vip6", default="fd00:18:100::1")
    p.add_argument("--src4", default="198.18.0.2")
    p.add_argument("--src6", default="fd00:18::2")
    args = p.parse_args()

    services = [("tcp", 4, args.vip4, 80), ("tcp", 6, args.vip6, 80),
                ("udp", 4, args.vip4, 53), ("udp", 6, args.vip6, 53)]
    # Distinct source ports for every request of this run (a random base so
    # that a rerun does not meet its own TIME_WAIT sockets).
    base = random.SystemRandom().randrange(20000, 60000 - len(services) * args.requests)
    out = {}
    for k, (proto, family, vip, port) in enumerate(services):
        name = "%s/%s:%d" % (proto, vip if family == 4 else "[%s]" % vip, port)
        src = args.src4 if family == 4 else args.src6
        res = {"requests": args.requests, "failed": 0, "answers": {}, "errors": [],
               "source_ports": [base + k * args.requests, base + (k + 1) * args.requests - 1]}
        for i in range(args.requests):
            be, err = one(proto, family, vip, src, base + k * args.requests + i)
            if be is None:
                res["failed"] += 1
                if len(res["errors"]) < 5:
                    res["errors"].append(err)
                continue
            addr = backend_address(be, family)
            res["answers"][addr] = res["answers"].get(addr, 0) + 1
        out[name] = res
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
