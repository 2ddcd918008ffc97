"""Counters: one per verdict (packets and bytes), reasons next to them, per backend."""
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import layout

import dplab as L
from dpframes import client_frame, frame


def test_every_verdict_and_reason_is_counted(lab):
    lab.configure(layout.MODE_NAT, port_min=40000, port_max=40001)
    vip, ids = L.setup_service(lab, 4, "tcp", backends=L.BACKENDS4[:1])
    L.setup_service(lab, 4, "udp", port=53, sid=1, backends=[L.LOCAL_BACKEND4])
    L.setup_service(lab, 4, "udp", port=54, sid=2, backends=[L.NO_NEIGH4])
    lab.add_service(vip, 55, "udp", 3)
    lab.fill_ring(3, [])

    sent = {}

    def send(name, frame_, dev="xlbdp0", want=None):
        action, out = lab.run(frame_, dev)
        assert L.ACTIONS[action] == want, name
        sent.setdefault(want, []).append(len(frame_))
        return out

    send("not ours", client_frame(L.CLIENT4, "198.18.9.9", "tcp", 1, 80), want="pass")
    fwd = [client_frame(L.CLIENT4, vip, "tcp", 2000 + i, 80, payload=b"x" * i) for i in range(2)]
    for f in fwd:
        send("to backends", f, want="redirect")
    send("ct full", client_frame(L.CLIENT4, vip, "tcp", 3000, 80), want="drop")
    send("same link", client_frame(L.CLIENT4, vip, "udp", 3001, 53), want="tx")
    send("no neighbour", client_frame(L.CLIENT4, vip, "udp", 3002, 54), want="pass")
    send("no backend", client_frame(L.CLIENT4, vip, "udp", 3003, 55, payload=b"yy"), want="drop")
    entry = lab.ct_entry(L.flow_key(L.CLIENT4, vip, 2000, 80, "tcp"))
    be = L.BACKENDS4[ids.index(entry.backend_id)]
    send("reply", frame(be, L.SNAT4, "tcp", 80, layout.ntohs(entry.nat_port),
                        smac=L.NEIGH[be][1], dmac=L.MAC["xlbdp1"]), dev="xlbdp1", want="redirect")

    stats = lab.stats()
    for verdict in ("pass", "drop", "redirect", "tx"):
        assert stats[verdict] == len(sent.get(verdict, [])), verdict
        assert lab.stat_bytes(verdict) == sum(sent.get(verdict, [])), verdict
    assert (stats["ct_full"], stats["no_backend"], stats["fib_miss"], stats["nat_reply"]) == \
        (1, 1, 1, 1)
    assert lab.stat_bytes("no_backend") == len(client_frame(L.CLIENT4, vip, "udp", 3003, 55,
                                                            payload=b"yy"))
    # Per backend: the packets forwarded to it (tx, redirect, or handed to the
    # kernel translated), with their bytes.
    per_backend = {bid: lab.backend_packets(bid) for bid in range(1, 32)}
    assert sum(per_backend[i] for i in ids) == 2
    assert per_backend[9] == 1 and per_backend[17] == 1
    assert sum(per_backend.values()) == 4
    be_bytes = sum(lab._counter("lb_be_stats", i)[1] for i in ids)
    assert be_bytes == sum(len(f) for f in fwd)
