"""An upgrade from an older data plane of ours keeps established flows, under traffic.

Older layouts: ABI 2 (commit 0eb9d95: lb_ct_entry without last_seen, one
lb_ct and one lb_nat_rev for both families, 40-byte keys) and ABI 3 (the
commit before ABI 4: the same tables with last_seen).  ABI 4 splits the
connection tables by family (lb_ct4/lb_ct6, lb_nat4/lb_nat6; 16-byte IPv4
keys) and adds lb_vip_filter.  ABI 5 packs four 16-bit backend ids into
each lb_ring value (ABI 4: one __u32 per entry); the connection tables keep
ABI 4's shapes, but the ring's change recreates the maps all the same.
ABI 6 gives each lb_backend its service's lb_services key (the conntrack
hit compares the packet with it) and drops the service cache lb_svc_cache.
ABI 7 adds lb_ct4_cache, a cache in front of lb_ct4 and nothing else: an
ABI 6 instance keeps every map (nothing to carry over) and the new program
fills the new cache from lb_ct4.

The previous release is deployed by its own engine (a subprocess running the
collection as of that commit, from git), on veths of a namespace of its
own; packets through its program (BPF_PROG_TEST_RUN) make conntrack and NAT
entries.  Then this checkout's engine applies the same configuration while
a thread keeps sending the established flows' next packets and replies
through whatever program is attached to the interfaces at that moment: the
map shapes differ, so the maps are recreated and the connection tables must
be carried over before the swap.  Every packet of the thread, before, during
and after the swap, must be translated exactly as the old program did (zero
flows broken); the new maps must hold every flow with the same backend and
NAT port, last seen now, and the old layout's pins must be gone.
"""
import ctypes as ct
import io
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    bpf, engine, layout, maps, model, netlink)

import dplab as L
from dpframes import client_frame, frame

ROOT = L.ROOT
CLIENTS = ["198.18.0.%d" % h for h in range(10, 18)]
UDP_PORT, TCP_PORT = 53, 80


def last_commit_of(abi):
    """The last commit whose data plane is ``abi`` (parent of the one that made it abi + 1).
    For ABI 2 that is 0eb9d95."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "log", "--format=%H", "-G",
                              "define XDP_LB_ABI_VERSION %d" % (abi + 1), "--", "files/xdp_lb.h"],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return (out[-1] + "^") if out else None


@pytest.fixture(scope="module", params=[2, 3, 4, 5, 6], ids=["abi2-0eb9d95", "abi3", "abi4", "abi5", "abi6"])
def old_tree(request):
    """The older collection, extracted as .../ansible_collections/netfleet/xdp_lb."""
    abi = request.param
    rev = last_commit_of(abi)
    if rev is None:
        pytest.skip("no git history with the ABI %d data plane (not a git checkout?)" % abi)
    tmp = tempfile.mkdtemp(prefix="xlbup-old-")
    try:
        data = subprocess.run(["git", "-C", ROOT, "archive", rev, "files", "plugins"],
                              capture_output=True, check=True).stdout
        dest = os.path.join(tmp, "ansible_collections", "netfleet", "xdp_lb")
        os.makedirs(dest)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest)
        # releases with the trust checks (ABI 4 on) refuse a source writable by group or others
        for top, dirs, files in os.walk(tmp):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.chmod(name, os.stat(name).st_mode & ~0o022)
        with open(os.path.join(dest, "files", "xdp_lb.h")) as f:
            assert "#define XDP_LB_ABI_VERSION %d" % abi in f.read()
        yield tmp, abi
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def uplab():
    if os.geteuid() != 0:
        pytest.skip("loads BPF programs and creates a namespace: run as root")
    lab = L.Lab("up%d" % os.getpid())
    work = tempfile.mkdtemp(prefix="xlbup-")
    try:
        # the namespace and bpffs only: the engines load the programs
        lab._make_netns()
        lab._enter_netns()
        lab._mount_bpffs()
        yield lab, work
    finally:
        try:
            lab.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)


def params(lab, work, source, state="present"):
    return {
        "name": "xlbup", "state": state, "interfaces": ["xlbdp0", "xlbdp1"], "mode": "nat",
        "attach_mode": "generic", "nat_source_ipv4": L.SNAT4, "nat_source_ipv6": L.SNAT6,
        "nat_port_min": 30000, "nat_port_max": 39999, "source": source,
        "pin_dir": os.path.join(lab.pin_root, "xlbup"), "state_dir": os.path.join(work, "state"),
        "build_dir": os.path.join(work, "build"),
        "services": [
            {"vip": L.VIP4, "port": TCP_PORT, "protocol": "tcp", "scheduler": "maglev",
             "backends": [{"address": a} for a in L.BACKENDS4[:3]]},
            {"vip": L.VIP4, "port": UDP_PORT, "protocol": "udp", "scheduler": "maglev",
             "backends": [{"address": a} for a in L.BACKENDS4[1:4]]},
            {"vip": L.VIP6, "port": TCP_PORT, "protocol": "tcp",
             "backends": [{"address": a} for a in L.BACKENDS6[:2]]},
        ]}


def old_engine(old_tree, p):
    """The ABI 2 engine applies ``p`` (a subprocess: its own modules)."""
    code = ("import json, sys\n"
            "from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model\n"
            "r = engine.run(model.validate(json.loads(sys.argv[1])))\n"
            "print(json.dumps(r.get('warnings')))\n")
    env = dict(os.environ, PYTHONPATH=old_tree)
    r = subprocess.run([sys.executable, "-c", code, json.dumps(p)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, "the older engine failed: %s" % r.stderr[-2000:]


def flows():
    """(frame in, ingress) of client flows: TCP v4, UDP v4, TCP v6."""
    out = []
    for i, client in enumerate(CLIENTS):
        for sport in (33000 + i, 34000 + i):
            out.append(client_frame(client, L.VIP4, "tcp", sport, TCP_PORT))
            out.append(client_frame(client, L.VIP4, "udp", sport, UDP_PORT))
    for sport in range(35000, 35008):
        out.append(client_frame(L.CLIENT6, L.VIP6, "tcp", sport, TCP_PORT))
    return out


def run_pinned(lab, pin_dir, frames, dev="xlbdp0"):
    fd = bpf.obj_get(os.path.join(pin_dir, "prog"))
    try:
        return [bpf.test_run(fd, f, ingress_ifindex=lab.ifindex[dev])[:2] for f in frames]
    finally:
        os.close(fd)


def table(pin_dir, name):
    """{LbFlow bytes: value} of connection table ``name`` ("lb_ct", "lb_nat_rev"), any layout."""
    with maps.MapSet(pin_dir) as ms:
        return dict((bytes(k), v) for k, v in ms.get(name).items())


class Traffic(threading.Thread):
    """Sends ``frames`` (and ``back``, the replies) again and again through
    the program attached to the ingress interface at that moment, until
    stopped; records every result that differs from ``want`` / ``want_back``.
    (A thread made after the lab entered its namespace is in it too.)"""

    def __init__(self, lab, frames, want, back, want_back):
        super().__init__(daemon=True)
        self.lab = lab
        # replies first: a reply entry that did not come along is passed, not translated
        self.jobs = [("xlbdp1", back, want_back), ("xlbdp0", frames, want)]
        self.stop = threading.Event()
        self.rounds, self.programs, self.broken, self.errors = 0, set(), [], []

    def run(self):
        try:
            while not self.stop.is_set():
                for dev, frames, want in self.jobs:
                    idx = self.lab.ifindex[dev]
                    prog_id = netlink.xdp_query(idx)["prog_id"]
                    fd = bpf.prog_fd_by_id(prog_id)
                    try:
                        for i, f in enumerate(frames):
                            got = bpf.test_run(fd, f, ingress_ifindex=idx)[:2]
                            if got != want[i]:
                                self.broken.append((prog_id, dev, i))
                    finally:
                        os.close(fd)
                    self.programs.add(prog_id)
                self.rounds += 1
        except Exception as exc:      # reported by the test
            self.errors.append(exc)


def owners(pin_dir):
    with maps.MapSet(pin_dir) as ms:
        return maps.flow_owners(ms)


def replies(outs):
    """The backend's answer to every translated frame (swapped addresses and ports)."""
    out = []
    for action, data in outs:
        assert action == L.XDP_REDIRECT
        v6 = data[12:14] == b"\x86\xdd"
        l3 = 14
        proto = "tcp" if data[l3 + (6 if v6 else 9)] == 6 else "udp"
        if v6:
            src = str(ipaddress.IPv6Address(data[l3 + 8:l3 + 24]))
            dst = str(ipaddress.IPv6Address(data[l3 + 24:l3 + 40]))
            l4 = l3 + 40
        else:
            src = ".".join(str(b) for b in data[l3 + 12:l3 + 16])
            dst = ".".join(str(b) for b in data[l3 + 16:l3 + 20])
            l4 = l3 + 20
        sport, dport = int.from_bytes(data[l4:l4 + 2], "big"), int.from_bytes(data[l4 + 2:l4 + 4], "big")
        out.append(frame(dst, src, proto, dport, sport, smac=L.NEIGH[dst][1], dmac=L.MAC["xlbdp1"],
                         payload=b"answer"))
    return out


def test_upgrade_keeps_established_flows_under_traffic(old_tree, uplab):
    tree, abi = old_tree
    lab, work = uplab
    old_src = os.path.join(tree, "ansible_collections", "netfleet", "xdp_lb", "files")
    p_old = params(lab, work, old_src)
    pin_dir = p_old["pin_dir"]
    old_engine(tree, p_old)
    traffic = None
    try:
        frames = flows()
        before = run_pinned(lab, pin_dir, frames)
        assert all(a == L.XDP_REDIRECT for a, dummy in before)
        back = replies(before)
        back_before = run_pinned(lab, pin_dir, back, "xlbdp1")
        assert all(a == L.XDP_REDIRECT for a, dummy in back_before)
        ct_old = table(pin_dir, "lb_ct")
        nat_old = table(pin_dir, "lb_nat_rev")
        assert len(ct_old) == len(frames) and len(nat_old) == len(frames)
        with maps.MapSet(pin_dir) as ms:                    # the old layout
            if abi < 4:
                assert ms.info("lb_ct")["value_size"] == (8 if abi == 2 else 16)
                assert ms.info("lb_ct")["key_size"] == 40 and not ms.exists("lb_ct4")
            else:
                assert ms.info("lb_ct4")["key_size"] == 16
            assert ms.info("lb_ring")["value_size"] == (8 if abi >= 5 else 4)
            assert ms.info("lb_backends")["value_size"] == \
                ct.sizeof(layout.LbBackendV5 if abi < 6 else layout.LbBackend)
            assert not ms.exists("lb_ct4_cache")
            map_ids_old = ms.ids()
        ids_old = owners(pin_dir)
        old_prog = netlink.xdp_query(lab.ifindex["xlbdp0"])["prog_id"]

        # the upgrade, under traffic: this checkout's engine, same configuration
        traffic = Traffic(lab, frames, before, back, back_before)
        traffic.start()
        while traffic.rounds < 2 and traffic.is_alive():
            traffic.stop.wait(0.05)
        cfg = model.validate(params(lab, work, L.FILES))
        result = engine.run(cfg)
        new_prog = netlink.xdp_query(lab.ifindex["xlbdp0"])["prog_id"]
        done = traffic.rounds
        while traffic.rounds < done + 2 and traffic.is_alive():
            traffic.stop.wait(0.05)
        traffic.stop.set()
        traffic.join()
        assert not traffic.errors, traffic.errors
        assert new_prog != old_prog and {old_prog, new_prog} <= traffic.programs
        assert traffic.broken == [], "%d packets translated otherwise than before the upgrade, " \
            "e.g. %s" % (len(traffic.broken), traffic.broken[:5])
        if abi < 6:
            assert any("carried %d flows and %d NAT" % (len(frames), len(frames)) in w
                       for w in result["warnings"]), result["warnings"]
        else:
            # ABI 7 only adds a cache (lb_ct4_cache): every map is kept as it is
            assert not any("recreated" in w for w in result["warnings"]), result["warnings"]
            with maps.MapSet(pin_dir) as ms:
                assert dict((n, i) for n, i in ms.ids().items() if n in map_ids_old) == map_ids_old
        hz = cfg.defines().get("XDP_LB_HZ")
        now = maps.dataplane_now(hz)

        ct_new = table(pin_dir, "lb_ct")
        nat_new = table(pin_dir, "lb_nat_rev")
        for name in list(layout.LEGACY_MAPS) + list(layout.OBSOLETE_MAPS):  # the old layout's pins are gone
            assert not os.path.exists(os.path.join(pin_dir, name))
        with maps.MapSet(pin_dir) as ms:
            assert ms.info("lb_ct4")["key_size"] == 16 and len(ms.get("lb_ct4").keys()) == 32
            assert ms.info("lb_ring")["value_size"] == 8
            # every backend carries its service's key (ABI 6)
            keys = dict((v.id, bytes(k)) for k, v in ms.get("lb_services").items())
            bes = [b for b in ms.get("lb_backends").lookup_batch(0, ms.info("lb_backends")["max_entries"])
                   if b.flags & layout.BACKEND_ACTIVE]
            assert bes and all(bytes(b.service) == keys[b.service_id] for b in bes)
            # the VIP filter holds the VIPs' bits, and nothing else
            words = ms.get("lb_vip_filter").lookup_batch(0, ms.info("lb_vip_filter")["max_entries"])
            assert dict((i, w) for i, w in enumerate(words) if w) == \
                maps.vip_filter_words([L.VIP4, L.VIP6])
        ids_new = owners(pin_dir)
        assert set(ct_new) == set(ct_old) and set(nat_new) == set(nat_old)
        for key, old in ct_old.items():
            new = ct_new[key]
            assert ids_new[new.backend_id] == ids_old[old.backend_id]     # same backend
            assert new.nat_port == old.nat_port
            assert 0 <= now - new.last_seen <= 60 * (hz or 1000000000)  # last seen: the upgrade
        for key, old in nat_old.items():
            assert ids_new[nat_new[key].backend_id] == ids_old[old.backend_id]
            assert bytes(nat_new[key])[:36] == bytes(old)[:36]          # client, vip, ports

        # the new program forwards and answers the flows exactly as the old one did
        assert run_pinned(lab, pin_dir, frames) == before
        assert run_pinned(lab, pin_dir, replies(before), "xlbdp1") == back_before
        with maps.MapSet(pin_dir) as ms:            # whose IPv4 flows are in lb_ct4_cache now
            lines = ms.info("lb_ct4_cache")["max_entries"]
            cached = [w for line in ms.get("lb_ct4_cache").lookup_batch(0, lines) for w in line.way
                      if L.ct_cache_way_valid(w)]
            assert sorted(bytes(w.flow) for w in cached) == sorted(bytes(k) for k in ms.get("lb_ct4").keys())
        with open(cfg.state_file) as f:
            rec = json.load(f)["build"]
        assert rec["abi"] == layout.ABI_VERSION
        assert rec["map_shapes"]["lb_ct4"] == [9, 16, 16, cfg.conntrack_size]
        assert rec["map_shapes"]["lb_ct6"] == [9, 40, 16, cfg.conntrack_size]
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join()
        engine.run(model.validate(params(lab, work, L.FILES, state="absent")))


def _snapshot(lab, pin_dir, state_file):
    """What a refused run must leave as it was: attachments, pins and map ids, the state file."""
    with maps.MapSet(pin_dir) as ms:
        ids = ms.ids()
    with open(state_file) as f:
        record = f.read()
    return (sorted(os.listdir(pin_dir)), ids, record,
            [netlink.xdp_query(lab.ifindex[d])["prog_id"] for d in ("xlbdp0", "xlbdp1")])


def _create_map(map_type, key_size, value_size, entries):
    lib = bpf._libbpf()
    lib.bpf_map_create.restype = ct.c_int
    fd = lib.bpf_map_create(ct.c_int(map_type), b"foreign", ct.c_uint32(key_size),
                            ct.c_uint32(value_size), ct.c_uint32(entries), None)
    assert fd >= 0, "bpf_map_create failed"
    return fd


def test_foreign_map_refused_unless_recreate_asked(uplab):
    """issue 13: a pinned map that is neither ours nor of an older layout of ours
    (here lb_ct4 replaced by a HASH with 12-byte values) is refused, naming the
    map and what differs, and nothing changes; with recreate_foreign_maps the
    maps are recreated."""
    lab, work = uplab
    p = params(lab, work, L.FILES)
    pin_dir = p["pin_dir"]
    cfg = model.validate(p)
    engine.run(cfg)
    try:
        path = os.path.join(pin_dir, "lb_ct4")
        os.unlink(path)
        fd = _create_map(1, 16, 12, 128)
        try:
            bpf.obj_pin(fd, path)
        finally:
            os.close(fd)
        before = _snapshot(lab, pin_dir, cfg.state_file)
        with pytest.raises(engine.EngineError) as err:
            engine.run(model.validate(p))
        msg = str(err.value)
        assert "lb_ct4: type 1 (ours: 9), value size 12 (ours: 16)" in msg, msg
        assert "recreate_foreign_maps" in msg and "Nothing was changed" in msg
        assert _snapshot(lab, pin_dir, cfg.state_file) == before

        result = engine.run(model.validate(dict(p, recreate_foreign_maps=True)))
        assert any("recreated as asked" in w and "lb_ct4" in w for w in result["warnings"]), \
            result["warnings"]
        with maps.MapSet(pin_dir) as ms:
            assert ms.foreign(cfg.defines()) == []
            i = ms.info("lb_ct4")
            assert (i["map_type"], i["key_size"], i["value_size"]) == (9, 16, 16)
        assert run_pinned(lab, pin_dir, flows()[:4])[0][0] == L.XDP_REDIRECT
    finally:
        engine.run(model.validate(params(lab, work, L.FILES, state="absent")))
