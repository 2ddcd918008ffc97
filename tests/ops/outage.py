# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a service stops answering: DNS queries every --interval seconds (stdlib only).

    ip netns exec <client> python3 outage.py --vip 198.18.100.1 --port 53

sends a TXT query for --name every --interval seconds, round robin over
--flows UDP sockets (fixed source ports: established flows), until a line
``stop`` (or end of stdin) arrives, then prints one JSON object: queries
sent and answered, and the outage: the longest time between two answered
queries' send times while queries in between went unanswered, with its
start and end relative to the first query.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import selectors
import socket
import struct
import sys
import threading
import time


def query(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        q += struct.pack("!B", len(label)) + label.encode("ascii")
    return q + b"\0" + struct.pack("!HH", 16, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--name", default="whoami.lab")
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--flows", type=int, default=16)
    p.add_argument("--max-seconds", type=float, default=300)
    a = p.parse_args()
    fam = socket.AF_INET6 if ":" in a.vip else socket.AF_INET
    socks = []
    sel = selectors.DefaultSelector()
    for _i in range(a.flows):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.connect((a.vip, a.port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    sent_at = {}       # qid -> send time
    answered = set()
    stop = threading.Event()

    def control():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=control, daemon=True).start()
    t0 = time.monotonic()
    qid = 0
    next_send = t0
    while not stop.is_set() and time.monotonic() - t0 < a.max_seconds:
        now = time.monotonic()
        if now >= next_send:
            qid = (qid % 65535) + 1 if len(sent_at) < 65535 else None
            if qid is None:
                break
            try:
                socks[qid % len(socks)].send(query(qid, a.name))
            except OSError:
                pass
            sent_at[qid] = now - t0
            next_send += a.interval
        for key, _ev in sel.select(timeout=max(0.0, min(0.005, next_send - time.monotonic()))):
            try:
                msg = key.fileobj.recv(4096)
            except OSError:
                continue
            if len(msg) >= 2:
                answered.add(struct.unpack("!H", msg[:2])[0])
    time.sleep(1.0)
    for key, _ev in sel.select(timeout=0):
        try:
            msg = key.fileobj.recv(4096)
            answered.add(struct.unpack("!H", msg[:2])[0])
        except OSError:
            pass
    order = sorted(sent_at.items(), key=lambda kv: kv[1])
    worst, worst_at, last_ok, gap_open = 0.0, None, None, False
    for q, t in order:
        if q in answered:
            if gap_open and last_ok is not None and t - last_ok > worst:
                worst, worst_at = t - last_ok, (last_ok, t)
            last_ok, gap_open = t, False
        else:
            gap_open = True
    if gap_open and order:      # never answered again
        end = order[-1][1]
        if last_ok is None or end - last_ok > worst:
            worst, worst_at = end - (last_ok or 0.0), (last_ok or 0.0, end)
    print(json.dumps({"sent": len(sent_at), "answered": len(answered & set(sent_at)),
                      "lost": len(set(sent_at) - answered), "outage_seconds": round(worst, 3),
                      "outage_between": [round(x, 3) for x in worst_at] if worst_at else None,
                      "interval": a.interval}, sort_keys=True))


if __name__ == "__main__":
    main()
