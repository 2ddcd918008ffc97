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

Every attempt must succeed.  Timing, all set by options (rolling.yml
passes its xdp_lb_gate_* variables):

  --attempts N     requests per probe (30)
  --timeout S      seconds one request may take (1)
  --interval S     pause between two requests of a probe (0)
  --max-errors N   a probe stops after N failed requests (1); any failed
                   request fails the gate, this only says how many more
                   are tried for the report
  --keep-going     run the remaining probes after one failed (default:
                   stop: the gate has failed anyway)

so a balancer that answers nothing is detected after max-errors x
(timeout + interval) seconds, and a healthy one passes after attempts x
(answer time + interval) per probe.  Prints one JSON object (with the
seconds the gate took), exits 0 if the gate passed, 1 if not, 2 on bad
arguments.  ``--netns NAME`` enters the network
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
import time

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


def run_probe(probe, attempts, timeout, max_errors=1, interval=0.0):
    name = "%s %s port %s" % (probe["type"], probe["address"], probe.get("port", 53))
    res = {"probe": name, "attempts": 0, "failed": 0, "answers": {}, "errors": []}
    for i in range(attempts):
        if i and interval:
            time.sleep(interval)
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
    ap.add_argument("--attempts", type=int, default=30, help="requests per probe, each a new flow")
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds per request")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between two requests of a probe")
    ap.add_argument("--max-errors", type=int, default=1,
                    help="failed requests after which a probe stops (any failure fails the gate)")
    ap.add_argument("--keep-going", action="store_true",
                    help="run the other probes after one failed (default: stop there)")
    ap.add_argument("--netns", help="network namespace to run in (/run/netns/NAME)")
    args = ap.parse_args(argv)
    try:
        probes = json.loads(args.probes)
        check(probes)
        if args.attempts < 1:
            raise ValueError("--attempts: %d is not a positive number" % args.attempts)
        if args.max_errors < 1:
            raise ValueError("--max-errors: %d is not a positive number" % args.max_errors)
        if not args.timeout > 0:
            raise ValueError("--timeout: %s is not a positive number of seconds" % args.timeout)
        if args.interval < 0:
            raise ValueError("--interval: %s is negative" % args.interval)
    except ValueError as exc:
        print(json.dumps({"ok": False, "msg": str(exc)}))
        return 2
    if args.netns:
        enter_netns(args.netns)
    start = time.monotonic()
    results = []
    for p in probes:
        results.append(run_probe(p, args.attempts, args.timeout, args.max_errors, args.interval))
        if not results[-1]["ok"] and not args.keep_going:
            break
    skipped = [p["type"] + " " + p["address"] for p in probes[len(results):]]
    ok = all(r["ok"] for r in results) and not skipped
    print(json.dumps({"ok": ok, "netns": args.netns, "probes": results, "skipped": skipped,
                      "seconds": round(time.monotonic() - start, 3)}, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
