# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Continuous traffic through the load balancer, counted per phase (stdlib only).

Runs inside the lab's client namespace::

    ip netns exec <prefix>client python3 traffic.py --vip 198.18.100.1 --port 7777

against a service whose backends run tests/ops/echo_server.py (UDP and TCP
echo that append the backend's name).  It

* sends numbered UDP datagrams at a fixed rate (--rate, default 2000 per
  second) from --flows sockets (one source port each, so flows spread over
  the backends), and records which backend answered each sequence number;
* keeps --tcp long-lived TCP connections open and pings each of them every
  --ping-interval seconds; a reset or end of file breaks a connection, an
  answer outstanding longer than --stall seconds stalls it;
* at the end of each phase opens --probes new TCP connections and records
  which backend took them (where new flows go now).

Phases are named on stdin: ``phase NAME`` ends the current phase and starts
the next (a datagram belongs to the phase in which it was sent), ``stop``
(or end of stdin, or --max-seconds, or --max-packets) stops sending, waits
--grace seconds for late answers and prints the report.  Every line on
stdout is one JSON object: ``{"event": "ready"}`` when the connections are
up and every flow has been answered, ``{"event": "phase"}`` after each
switch, ``{"event": "report"}`` at the end.  Per phase the report gives
UDP sent/received/lost (also by the backend the flow was on), the flows
that moved to another backend (from, to), the TCP connections open at the
start, broken, stalled and survived, and the probes per backend.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import selectors
import socket
import sys
import threading
import time

BUF = 1 << 20


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


class Conn:
    """One long-lived TCP connection."""

    def __init__(self, cid, sock, backend):
        self.id, self.sock, self.backend = cid, sock, backend
        self.buf = b""
        self.alive = True
        self.broken_phase = None
        self.reason = None
        self.ping = 0            # number of the last ping sent
        self.sent_at = None      # monotonic time of the outstanding ping (None: answered)
        self.answers = 0


class Traffic:
    def __init__(self, args):
        self.a = args
        self.max_packets = min(args.max_packets, int(args.rate * args.max_seconds) + 1)
        self.phase_of = bytearray(self.max_packets)     # phase index of every sequence number
        self.reply = bytearray(self.max_packets)        # backend index + 1 of its answer (0: none)
        self.names = []                                 # backend index -> name
        self.phases = [{"name": args.first_phase, "started": time.monotonic()}]
        self.cur = 0
        self.sent = 0
        self.send_errors = 0
        self.tcp_lock = threading.Lock()
        self.conns = []
        self.stop_send = threading.Event()
        self.stop_recv = threading.Event()
        self.done_sending = threading.Event()
        self.sel = selectors.DefaultSelector()
        self.udp = []
        self.dest = (args.vip, args.port)

    # ---- setup ------------------------------------------------------------------------
    def _backend_index(self, name):
        try:
            return self.names.index(name)
        except ValueError:
            self.names.append(name)
            return len(self.names) - 1

    def open_tcp(self, timeout=3.0):
        """A new connection and the backend's greeting; (socket, name) or (None, error)."""
        s = None
        try:
            s = socket.create_connection((self.a.vip, self.a.tcp_port), timeout=timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    raise OSError("closed before the greeting")
                data += chunk
            return s, data.strip().decode("ascii", "replace")
        except OSError as exc:
            if s is not None:
                s.close()
            return None, "%s" % (exc,)

    def setup(self):
        for _i in range(self.a.flows):
            u = socket.socket(socket.AF_INET6 if ":" in self.a.vip else socket.AF_INET, socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
            u.bind(("", 0))
            u.setblocking(False)
            self.udp.append(u)
            self.sel.register(u, selectors.EVENT_READ, None)
        for i in range(self.a.tcp):
            s, name = self.open_tcp()
            if s is None:
                raise SystemExit("traffic: TCP connection %d to %s:%d failed: %s"
                                 % (i, self.a.vip, self.a.tcp_port, name))
            s.setblocking(False)
            c = Conn(i, s, name)
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)

    # ---- sending ----------------------------------------------------------------------
    def sender(self):
        rate, flows = float(self.a.rate), len(self.udp)
        t0 = time.monotonic()
        next_ping = t0
        try:
            while not self.stop_send.is_set() and self.sent < self.max_packets:
                now = time.monotonic()
                if now - t0 > self.a.max_seconds:
                    break
                due = min(int((now - t0) * rate), self.max_packets)
                while self.sent < due:
                    seq = self.sent
                    self.phase_of[seq] = self.cur
                    try:
                        self.udp[seq % flows].sendto(b"%d" % seq, self.dest)
                    except OSError:
                        self.send_errors += 1
                    self.sent += 1
                if now >= next_ping:
                    self._ping_all(now)
                    next_ping = now + self.a.ping_interval
                time.sleep(0.001)
        finally:
            self.done_sending.set()

    def _ping_all(self, now):
        with self.tcp_lock:
            for c in self.conns:
                if not c.alive or c.sent_at is not None:
                    continue
                c.ping += 1
                try:
                    c.sock.send(b"P %d\n" % c.ping)
                    c.sent_at = now
                except OSError as exc:
                    self._break(c, "send: %s" % exc)

    def _break(self, c, reason):
        c.alive = False
        c.broken_phase = self.cur
        c.reason = reason
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    # ---- receiving --------------------------------------------------------------------
    def receiver(self):
        while not self.stop_recv.is_set():
            for key, _ev in self.sel.select(timeout=0.2):
                if key.data is None:
                    self._read_udp(key.fileobj)
                else:
                    self._read_tcp(key.data)

    def _read_udp(self, u):
        for _i in range(64):
            try:
                data = u.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                seq, name = data.split(b" ", 1)
                seq = int(seq)
            except ValueError:
                continue
            if 0 <= seq < self.max_packets and not self.reply[seq]:
                self.reply[seq] = self._backend_index(name.decode("ascii", "replace")) + 1

    def _read_tcp(self, c):
        with self.tcp_lock:
            if not c.alive:
                return
            try:
                data = c.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._break(c, "recv: %s" % exc)
                return
            if not data:
                self._break(c, "closed by the peer")
                return
            c.buf += data
            while b"\n" in c.buf:
                line, c.buf = c.buf.split(b"\n", 1)
                parts = line.split()
                if len(parts) == 3 and parts[0] == b"P" and parts[1] == b"%d" % c.ping:
                    if parts[2].decode("ascii", "replace") != c.backend:
                        self._break(c, "answered by %s" % parts[2].decode("ascii", "replace"))
                        return
                    c.sent_at = None
                    c.answers += 1

    # ---- phases -----------------------------------------------------------------------
    def _probe(self):
        out, failures = {}, []
        for _i in range(self.a.probes):
            s, name = self.open_tcp(timeout=2.0)
            if s is None:
                failures.append(name)
                continue
            s.close()   # the client closes first: its TIME_WAIT keeps the 4-tuple from reuse
            out[name] = out.get(name, 0) + 1
        return out, failures

    def _stalled(self, now):
        with self.tcp_lock:
            return [c.id for c in self.conns
                    if c.alive and c.sent_at is not None and now - c.sent_at > self.a.stall]

    def end_phase(self):
        """Close the current phase's books (probes, stalls, who was open)."""
        ph = self.phases[self.cur]
        ph["probes"], ph["probe_failures"] = self._probe()
        ph["stalled"] = self._stalled(time.monotonic())
        ph["ended"] = time.monotonic()

    def new_phase(self, name):
        self.end_phase()
        with self.tcp_lock:
            self.phases.append({"name": name, "started": time.monotonic(),
                                "open_at_start": [c.id for c in self.conns if c.alive]})
            self.cur = len(self.phases) - 1
        emit({"event": "phase", "name": name, "index": self.cur, "sent": self.sent})

    def wait_ready(self, timeout=15.0):
        """Until every UDP flow and TCP connection has been answered once."""
        end = time.monotonic() + timeout
        flows = len(self.udp)
        while time.monotonic() < end:
            got = set(seq % flows for seq in range(self.sent) if self.reply[seq])
            with self.tcp_lock:
                pinged = all(c.answers for c in self.conns)
            if len(got) == flows and pinged:
                return True
            time.sleep(0.2)
        return False

    # ---- report -----------------------------------------------------------------------
    def report(self):
        flows = len(self.udp)
        names = self.names
        out = []
        per = [{"sent": 0, "received": 0, "lost": 0, "lost_by_backend": {}, "answers": {}, "moved": []}
               for _i in self.phases]
        last = [None] * flows    # last backend index seen per flow
        for seq in range(self.sent):
            p = per[self.phase_of[seq]]
            f = seq % flows
            r = self.reply[seq]
            p["sent"] += 1
            if r:
                be = r - 1
                p["received"] += 1
                p["answers"][names[be]] = p["answers"].get(names[be], 0) + 1
                if last[f] is not None and last[f] != be:
                    p["moved"].append({"flow": f, "seq": seq, "from": names[last[f]], "to": names[be]})
                last[f] = be
            else:
                p["lost"] += 1
                key = names[last[f]] if last[f] is not None else "unknown"
                p["lost_by_backend"][key] = p["lost_by_backend"].get(key, 0) + 1
        for i, ph in enumerate(self.phases):
            opened = ph.get("open_at_start", [c.id for c in self.conns])
            broken = [{"conn": c.id, "backend": c.backend, "reason": c.reason}
                      for c in self.conns if c.broken_phase == i]
            stalled = [{"conn": cid, "backend": self.conns[cid].backend} for cid in ph.get("stalled", [])]
            gone = set(b["conn"] for b in broken) | set(s["conn"] for s in stalled)
            udp = per[i]
            udp["moved_flows"] = len(set(m["flow"] for m in udp["moved"]))
            out.append({
                "name": ph["name"],
                "seconds": round(ph.get("ended", time.monotonic()) - ph["started"], 2),
                "udp": udp,
                "tcp": {"open_at_start": len(opened), "open_backends": self._count_backends(opened),
                        "broken": broken, "stalled": stalled,
                        "survived": len([cid for cid in opened if cid not in gone])},
                "probes": ph.get("probes", {}), "probe_failures": ph.get("probe_failures", []),
            })
        return {"event": "report", "rate": self.a.rate, "flows": flows, "sent": self.sent,
                "send_errors": self.send_errors, "backends": sorted(names),
                "tcp": [{"conn": c.id, "backend": c.backend, "alive": c.alive, "reason": c.reason}
                        for c in self.conns],
                "phases": out}

    def _count_backends(self, ids):
        out = {}
        for cid in ids:
            b = self.conns[cid].backend
            out[b] = out.get(b, 0) + 1
        return out

    # ---- main -------------------------------------------------------------------------
    def finish(self, rx):
        """Stop sending, wait for late answers, check every connection once more."""
        self.stop_send.set()
        self.done_sending.wait()
        time.sleep(self.a.grace)
        self._ping_all(time.monotonic())
        time.sleep(min(self.a.stall, 2.0))
        self.end_phase()
        self.stop_recv.set()
        rx.join()
        for u in self.udp:
            u.close()
        for c in self.conns:
            if c.alive:
                c.sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=7777, help="UDP port of the service")
    p.add_argument("--tcp-port", type=int, default=7777, help="TCP port of the service")
    p.add_argument("--rate", type=float, default=2000.0, help="UDP datagrams per second")
    p.add_argument("--flows", type=int, default=64, help="UDP source ports")
    p.add_argument("--tcp", type=int, default=16, help="long-lived TCP connections")
    p.add_argument("--ping-interval", type=float, default=0.2)
    p.add_argument("--stall", type=float, default=3.0, help="seconds without an answer that stall a connection")
    p.add_argument("--probes", type=int, default=32, help="new TCP connections at the end of each phase")
    p.add_argument("--grace", type=float, default=1.5, help="seconds to wait for late answers")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--max-packets", type=int, default=2000000)
    p.add_argument("--first-phase", default="baseline")
    args = p.parse_args()
    if not (0 < args.rate <= 20000 and 0 < args.flows <= 1024 and 0 <= args.tcp <= 256):
        p.error("--rate 1..20000, --flows 1..1024, --tcp 0..256")

    t = Traffic(args)
    t.setup()
    rx = threading.Thread(target=t.receiver, daemon=True)
    tx = threading.Thread(target=t.sender, daemon=True)
    rx.start()
    tx.start()
    if not t.wait_ready():
        t.finish(rx)
        emit(t.report())
        raise SystemExit("traffic: not every flow was answered within 15 s")
    emit({"event": "ready", "tcp": t._count_backends([c.id for c in t.conns]), "sent": t.sent})

    def control():
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "phase" and len(words) == 2:
                t.new_phase(words[1])
            elif words[0] == "stop":
                break
        t.stop_send.set()

    ctl = threading.Thread(target=control, daemon=True)
    ctl.start()
    while not t.stop_send.is_set() and not t.done_sending.is_set():
        time.sleep(0.1)
    t.finish(rx)
    emit(t.report())


if __name__ == "__main__":
    main()
