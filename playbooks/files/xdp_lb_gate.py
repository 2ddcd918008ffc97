#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Traffic gate of playbooks/rolling.yml: real requests through one balancer.

Runs on a client host (``ansible.builtin.script`` with ``delegate_to``),
standard library only.  For every probe it makes ``--attempts`` requests,
each a new flow (a new socket, so a new source port):

  {"type": "http", "address": VIP, "port": 80, "path": "/", "host": NAME}
      GET, the status must be 2xx or 3xx; the answer is the body (stripped)
  {"type": "tcp", "address": VIP, "port": P}
      the connection must be accepted; no answer
  {"type": "dns", "address": VIP, "port": 53, "name": "whoami.lab", "qtype": "TXT"}
      a UDP query; a response with the query's id must come back (any
      rcode); the answer is the first TXT string or A/AAAA address

A probe may list ``answers``: every answer must be one of them and each
must be seen at least once (e.g. the names of the healthy backends, which
proves that every one of them serves through this balancer).

Every attempt must succeed.  Prints one JSON object, exits 0 if the gate
passed, 1 if not, 2 on bad arguments.  ``--netns NAME`` enters the network
namespace /run/netns/NAME first (labs).
"""

from __future__ import absolute_import, division, print_function

import argparse
import ctypes
import ctypes.util
import json
import os
import random
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
QTYPES = {"A": 1, "AAAA": 28, "TXT": 16}


def enter_netns(name):
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (name, os.strerror(err)))
    finally:
        os.close(fd)


def _family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _connect(probe, timeout):
    s = socket.socket(_family(probe["address"]), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((probe["address"], int(probe["port"])))
    except Exception:
        s.close()
        raise
    return s


def probe_tcp(probe, timeout):
    _connect(probe, timeout).close()
    return None


def probe_http(probe, timeout):
    s = _connect(probe, timeout)
    try:
        host = probe.get("host") or (probe["address"] if ":" not in probe["address"] else "[%s]" % probe["address"])
        req = "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: xdp-lb-gate\r\nConnection: close\r\n\r\n" % (
            probe.get("path", "/"), host)
        s.sendall(req.encode("ascii"))
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ValueError("not an HTTP response: %r" % data[:80])
    code = int(status[1])
    if not 200 <= code < 400:
        raise ValueError("HTTP status %d" % code)
    return body.decode("utf-8", "replace").strip()


def _dns_query(qid, name, qtype):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        if label:
            q += struct.pack("!B", len(label)) + label.encode("ascii")
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def _skip_name(msg, off):
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += n + 1


def _dns_answer(msg, qtype):
    qd, an = struct.unpack("!HH", msg[4:8])
    off = 12
    for _i in range(qd):
        off = _skip_name(msg, off) + 4
    for _i in range(an):
        off = _skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype != qtype:
            continue
        if rtype == 16 and rdata:
            return rdata[1:1 + rdata[0]].decode("utf-8", "replace")
        if rtype == 1 and rdlen == 4:
            return socket.inet_ntop(socket.AF_INET, rdata)
        if rtype == 28 and rdlen == 16:
            return socket.inet_ntop(socket.AF_INET6, rdata)
    return None


def probe_dns(probe, timeout):
    qtype = QTYPES[str(probe.get("qtype", "A")).upper()]
    qid = random.SystemRandom().randrange(1, 65535)
    s = socket.socket(_family(probe["address"]), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((probe["address"], int(probe.get("port", 53))))
        s.send(_dns_query(qid, probe.get("name", "."), qtype))
        while True:
            msg = s.recv(4096)
            if len(msg) >= 12 and struct.unpack("!H", msg[:2])[0] == qid and msg[2] & 0x80:
                break
    finally:
        s.close()
    return _dns_answer(msg, qtype)


PROBES = {"tcp": probe_tcp, "http": probe_http, "dns": probe_dns}


def run_probe(probe, attempts, timeout, max_errors=3):
    name = "%s %s port %s" % (probe["type"], probe["address"], probe.get("port", 53))
    res = {"probe": name, "attempts": 0, "failed": 0, "answers": {}, "errors": []}
    for _i in range(attempts):
        res["attempts"] += 1
        try:
            answer = PROBES[probe["type"]](probe, timeout)
        except Exception as exc:   # any failure of the attempt fails the gate
            res["failed"] += 1
            res["errors"].append("%s: %s" % (type(exc).__name__, exc))
            if len(res["errors"]) >= max_errors:
                break
            continue
        if answer is not None:
            res["answers"][answer] = res["answers"].get(answer, 0) + 1
    expected = probe.get("answers")
    if expected:
        unexpected = sorted(set(res["answers"]) - set(expected))
        missing = sorted(set(expected) - set(res["answers"]))
        if unexpected:
            res["errors"].append("unexpected answers: %s" % ", ".join(unexpected))
        if missing:
            res["errors"].append("no answer from: %s" % ", ".join(missing))
    res["ok"] = not res["errors"]
    return res


def check(probes):
    if not isinstance(probes, list) or not probes:
        raise ValueError("--probes: %r is not a non-empty JSON list" % (probes,))
    for i, p in enumerate(probes):
        if not isinstance(p, dict) or p.get("type") not in PROBES:
            raise ValueError("--probes[%d].type: %r is not one of %s" % (
                i, p.get("type") if isinstance(p, dict) else p, ", ".join(sorted(PROBES))))
        if not p.get("address"):
            raise ValueError("--probes[%d].address: is required" % i)
        if p["type"] != "dns" and not p.get("port"):
            raise ValueError("--probes[%d].port: is required" % i)


def main(argv=None):
    ap = argparse.ArgumentParser(description="netfleet.xdp_lb rolling-deploy traffic gate")
    ap.add_argument("--probes", required=True, help="JSON list of probes")
    ap.add_argument("--attempts", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt")
    ap.add_argument("--netns", help="network namespace to run in (/run/netns/NAME)")
    args = ap.parse_args(argv)
    try:
        probes = json.loads(args.probes)
        check(probes)
        if args.attempts < 1:
            raise ValueError("--attempts: %d is not a positive number" % args.attempts)
    except ValueError as exc:
        print(json.dumps({"ok": False, "msg": str(exc)}))
        return 2
    if args.netns:
        enter_netns(args.netns)
    results = [run_probe(p, args.attempts, args.timeout) for p in probes]
    ok = all(r["ok"] for r in results)
    print(json.dumps({"ok": ok, "netns": args.netns, "probes": results}, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
