"""`cli metrics --out FILE` against a real balancer: namespaces, veth, XDP, real packets.

Deploys a nat instance with the engine (the module's code path) into a
namespace lab of its own (prefix xlbb-t<pid>), sends UDP datagrams through
it, runs the command line the role's timer runs (with the system Python,
as a separate process) and checks the file against the packets sent and
against engine.info (what xdp_lb_info returns).  Everything it makes is
removed at the end, also on failure.
"""
import os
import re
import subprocess

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model

import nslab
from nslab import sh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "files")
CLI = "ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli"
SENT = 25

_SAMPLE = re.compile(r'^([a-z_]+)\{(.*)\} ([0-9]+)$')
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        out[(m.group(1), frozenset(_LABEL.findall(m.group(2))))] = int(m.group(3))
    return out


def cli(state_dir, *args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(["/usr/bin/python3", "-m", CLI, "--state-dir", state_dir] + list(args), check=False,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


@pytest.fixture
def balancer(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, XDP, bpffs)")
    tag = "xlbb-t%d" % os.getpid()
    ns = {"client": tag + "-c", "lb": tag + "-l", "be": tag + "-b"}
    pin_dir = "/sys/fs/bpf/%s" % tag
    state_dir = str(tmp_path / "state")
    params = {
        "name": "web", "netns": ns["lb"], "interfaces": ["front0", "back0"], "mode": "nat",
        "services": [{"vip": "198.18.100.1", "port": 53, "protocol": "udp", "scheduler": "maglev",
                      "backends": [{"address": "198.18.1.11", "weight": 100},
                                   {"address": "198.18.1.11", "port": 5353, "weight": 0}]}],
        "ring_size": 257, "max_services": 4, "max_backends": 16, "conntrack_size": 1024,
        "source": FILES, "pin_dir": pin_dir, "state_dir": state_dir, "build_dir": str(tmp_path / "build")}
    deployed = False
    try:
        nslab.nat_topology(ns, ["198.18.1.11"])
        deployed = True
        engine.run(model.validate(params))
        yield {"ns": ns, "state_dir": state_dir, "tmp": tmp_path}
    finally:
        nslab.remove(ns, params, deployed)


def send_udp(ns, count):
    code = ("import socket\n"
            "for i in range(%d):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind(('198.18.0.2', 40000 + i))\n"
            "    s.sendto(b'x' * 20, ('198.18.100.1', 53))\n"
            "    s.close()\n" % count)
    sh("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code)


def test_metrics_file_matches_packets_and_info(balancer):
    send_udp(balancer["ns"]["client"], SENT)
    out = str(balancer["tmp"] / "xdp_lb.prom")
    r = cli(balancer["state_dir"], "metrics", "--out", out)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        got = parse(f.read())
    assert sorted(os.listdir(str(balancer["tmp"]))) == ["build", "state", "xdp_lb.prom"]   # no temp files

    svc = "udp/198.18.100.1:53"
    be = frozenset([("instance", "web"), ("service", svc), ("backend", "198.18.1.11:53")])
    drained = frozenset([("instance", "web"), ("service", svc), ("backend", "198.18.1.11:5353")])
    assert got[("xdp_lb_up", frozenset([("instance", "web")]))] == 1
    # every datagram is a new flow (its own source port) to the one backend with weight
    assert got[("xdp_lb_packets_total", be)] == SENT
    assert got[("xdp_lb_bytes_total", be)] == SENT * (14 + 20 + 8 + 20)
    assert got[("xdp_lb_packets_total", drained)] == 0
    assert got[("xdp_lb_backend_weight", be)] == 100
    assert got[("xdp_lb_backend_weight", drained)] == 0
    assert got[("xdp_lb_conntrack_entries", frozenset([("instance", "web"), ("table", "flows")]))] == SENT

    # the same numbers xdp_lb_info reports (engine.info), read after the file.
    # Packets the test does not send (IPv6 neighbour discovery, the backend's
    # ICMP port unreachable) can still arrive in between: they are passed to
    # the kernel, so "pass" may only have grown; every other verdict comes
    # from the datagrams above alone and must be equal.
    info = engine.info(balancer["state_dir"], "web")[0]
    assert "error" not in info
    for verdict, c in info["stats"].items():
        labels = frozenset([("instance", "web"), ("verdict", verdict)])
        packets = got[("xdp_lb_verdict_packets_total", labels)]
        octets = got[("xdp_lb_verdict_bytes_total", labels)]
        if verdict == "pass":
            assert packets <= c["packets"] and octets <= c["bytes"]
        else:
            assert (packets, octets) == (c["packets"], c["bytes"]), verdict
    forwarded = sum(got[("xdp_lb_verdict_packets_total", frozenset([("instance", "web"), ("verdict", v)]))]
                    for v in ("tx", "redirect", "fib_miss"))
    assert forwarded >= SENT
    for ifname, a in info["interfaces"].items():
        labels = frozenset([("instance", "web"), ("interface", ifname), ("prog_id", str(a["prog_id"])),
                            ("mode", "native"), ("tag", a["tag"])])
        assert got[("xdp_lb_program_info", labels)] == 1

    # stdout variant, same content shape
    r = cli(balancer["state_dir"], "metrics", "--out", "-")
    assert r.returncode == 0 and "xdp_lb_packets_total{" in r.stdout


def test_metrics_unreadable_instance_and_bad_out_dir(balancer):
    state_dir = balancer["state_dir"]
    with open(os.path.join(state_dir, "broken.json"), "w") as f:
        f.write("{not json")
    out = str(balancer["tmp"] / "xdp_lb.prom")
    r = cli(state_dir, "metrics", "--out", out)
    assert r.returncode == 1
    assert "broken" in r.stderr
    with open(out) as f:
        got = parse(f.read())
    assert got[("xdp_lb_up", frozenset([("instance", "broken")]))] == 0
    assert got[("xdp_lb_up", frozenset([("instance", "web")]))] == 1
    os.unlink(os.path.join(state_dir, "broken.json"))

    r = cli(state_dir, "metrics", "--out", str(balancer["tmp"] / "missing" / "x.prom"))
    assert r.returncode == 2
    assert "missing" in r.stderr and "does not exist" in r.stderr
