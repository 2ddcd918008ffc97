# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""UDP and TCP echo server for the operations test (stdlib only).

Runs inside a lab backend's namespace (``ip netns exec <prefix>beN``)::

    python3 echo_server.py --name be2 --port 7777 [--pid-file F] [--max-seconds 600]

UDP: every datagram comes back with `` <name>`` appended.
TCP: a new connection first gets ``<name>\\n``; every line then comes back
with `` <name>`` before its newline.  So the client learns which backend
answered each datagram and holds each connection.

Listens on every address (in nat mode requests arrive for the backend's
own address).  Ends by itself after --max-seconds, on SIGTERM or SIGINT.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import selectors
import signal
import socket
import time

BUF = 1 << 20


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, default=7777)
    p.add_argument("--pid-file")
    p.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args()
    name = args.name.encode()

    sel = selectors.DefaultSelector()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    udp.bind(("::", args.port))
    udp.setblocking(False)
    tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("::", args.port))
    tcp.listen(128)
    tcp.setblocking(False)
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "listen")
    pending = {}   # connection -> bytes received without a newline yet

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    deadline = time.monotonic() + args.max_seconds

    def close(conn):
        sel.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    while not stop and time.monotonic() < deadline:
        for key, _ev in sel.select(timeout=0.5):
            sock, kind = key.fileobj, key.data
            if kind == "udp":
                for _i in range(64):
                    try:
                        data, addr = sock.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    try:
                        sock.sendto(data + b" " + name, addr)
                    except OSError:
                        pass
            elif kind == "listen":
                try:
                    conn, _addr = sock.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                try:
                    conn.sendall(name + b"\n")
                except OSError:
                    conn.close()
                    continue
                conn.setblocking(False)
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    close(sock)
                    continue
                if not data:
                    close(sock)
                    continue
                buf = pending[sock] + data
                *lines, rest = buf.split(b"\n")
                pending[sock] = rest
                out = b"".join(line + b" " + name + b"\n" for line in lines)
                if out:
                    try:
                        sock.setblocking(True)
                        sock.sendall(out)
                        sock.setblocking(False)
                    except OSError:
                        close(sock)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    if args.pid_file:
        try:
            os.unlink(args.pid_file)
        except OSError:
            pass


if __name__ == "__main__":
    main()
