"""An upgrade from the ABI 2 data plane (lb_ct_entry without last_seen) keeps established flows.

The previous release is deployed by its own engine (a subprocess running the
collection as of the commit before ABI 3, from git), on veths of a namespace
of its own; packets through its pinned program (BPF_PROG_TEST_RUN) make
conntrack and NAT entries.  Then this checkout's engine applies the same
configuration: the map shapes differ (lb_config, lb_ct), so the maps are
recreated and the connection tables must be carried over before the swap.
The new maps must hold every flow with the same backend and NAT port, last
seen now, and the new program must translate the flows' next packets and
replies exactly as the old one did.
"""
import io
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    bpf, engine, layout, maps, model)

import dplab as L
from dpframes import client_frame, frame

ROOT = L.ROOT
CLIENTS = ["198.18.0.%d" % h for h in range(10, 18)]
UDP_PORT, TCP_PORT = 53, 80


def abi2_commit():
    """The last commit whose data plane is ABI 2 (parent of the one that made it 3)."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "log", "--format=%H", "-G",
                              "define XDP_LB_ABI_VERSION 3", "--", "files/xdp_lb.h"],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return (out[-1] + "^") if out else None


@pytest.fixture(scope="module")
def old_tree():
    """The ABI 2 collection, extracted as .../ansible_collections/netfleet/xdp_lb."""
    rev = abi2_commit()
    if rev is None:
        pytest.skip("no git history with the ABI 2 data plane (not a git checkout?)")
    tmp = tempfile.mkdtemp(prefix="xlbup-old-")
    try:
        data = subprocess.run(["git", "-C", ROOT, "archive", rev, "files", "plugins"],
                              capture_output=True, check=True).stdout
        dest = os.path.join(tmp, "ansible_collections", "netfleet", "xdp_lb")
        os.makedirs(dest)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest)
        with open(os.path.join(dest, "files", "xdp_lb.h")) as f:
            assert "#define XDP_LB_ABI_VERSION 2" in f.read()
        yield tmp
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
    subprocess.run([sys.executable, "-c", code, json.dumps(p)], check=True, env=env,
                   capture_output=True, text=True)


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


def table(pin_dir, name, vtype):
    fd = bpf.obj_get(os.path.join(pin_dir, name))
    m = bpf.Map(fd, layout.LbFlow, vtype)
    try:
        return dict((bytes(k), v) for k, v in m.items())
    finally:
        m.close()


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


def test_upgrade_from_abi2_keeps_established_flows(old_tree, uplab):
    lab, work = uplab
    old_src = os.path.join(old_tree, "ansible_collections", "netfleet", "xdp_lb", "files")
    p_old = params(lab, work, old_src)
    pin_dir = p_old["pin_dir"]
    old_engine(old_tree, p_old)
    try:
        frames = flows()
        before = run_pinned(lab, pin_dir, frames)
        assert all(a == L.XDP_REDIRECT for a, dummy in before)
        back_before = run_pinned(lab, pin_dir, replies(before), "xlbdp1")
        ct_old = table(pin_dir, "lb_ct", layout.LbCtEntryV2)
        nat_old = table(pin_dir, "lb_nat_rev", layout.LbNatEntry)
        assert len(ct_old) == len(frames) and len(nat_old) == len(frames)
        with maps.MapSet(pin_dir) as ms:
            assert ms.info("lb_ct")["value_size"] == 8          # the old layout
        ids_old = owners(pin_dir)

        # the upgrade: this checkout's engine, same configuration
        cfg = model.validate(params(lab, work, L.FILES))
        result = engine.run(cfg)
        assert any("carried %d flows and %d NAT" % (len(frames), len(frames)) in w
                   for w in result["warnings"]), result["warnings"]
        hz = cfg.defines().get("XDP_LB_HZ")
        now = maps.dataplane_now(hz)

        ct_new = table(pin_dir, "lb_ct", layout.LbCtEntry)
        nat_new = table(pin_dir, "lb_nat_rev", layout.LbNatEntry)
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
        with open(cfg.state_file) as f:
            rec = json.load(f)["build"]
        assert rec["abi"] == layout.ABI_VERSION
        assert rec["map_shapes"]["lb_ct"] == [9, 40, 16, cfg.conntrack_size]
    finally:
        engine.run(model.validate(params(lab, work, L.FILES, state="absent")))
