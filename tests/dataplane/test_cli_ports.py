"""`xdp-lb ports list|add|remove` on a real redirect-mode balancer (seed 000's xdp_config, as overrides).

Namespaces xlbp-t<pid>-{c,l,o}: the client sends UDP into front0 of the
balancer, which redirects every frame, unmodified, to one of its egress
veths r0, r1, r2 (peers o0, o1, o2 in the "out" namespace, whose receive
counters say where frames really went).  Configured ports: r0 and r1.
Removing r1 and adding r2 apply at once, survive a boot restore, are
warned about and kept by the next engine run, and end with
`xdp-lb override clear`.  Everything is removed at the end.
"""
import json
import os
import subprocess

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model

import nslab
from nslab import sh
from test_cli import FILES, render_entry_point, ROOT


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, XDP, bpffs)")
    tag = "xlbp-t%d" % os.getpid()
    ns = {"client": tag + "-c", "lb": tag + "-l", "out": tag + "-o"}
    pin_dir = "/sys/fs/bpf/%s" % tag
    state_dir = str(tmp_path / "state")
    xdp_lb = str(tmp_path / "xdp-lb")
    with open(xdp_lb, "w") as f:
        f.write(render_entry_point(os.path.join(ROOT, ".collections")))
    os.chmod(xdp_lb, 0o755)
    params = {"name": "rd", "netns": ns["lb"], "interfaces": ["front0"], "mode": "redirect",
              "redirect_interfaces": ["r0", "r1"], "redirect_algorithm": "flow_hash",
              "source": FILES, "pin_dir": pin_dir, "state_dir": state_dir, "build_dir": str(tmp_path / "build")}
    deployed = False
    try:
        nslab.add_namespaces(ns)
        for name in ns.values():
            # no IPv6 link-local chatter (MLD, ND) on the counted links
            sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "add", "eth0", "netns", ns["client"], "type", "veth", "peer", "name", "front0",
           "netns", ns["lb"])
        links = [(ns["client"], "eth0"), (ns["lb"], "front0")]
        for i in range(3):
            sh("ip", "link", "add", "r%d" % i, "netns", ns["lb"], "type", "veth", "peer", "name", "o%d" % i,
               "netns", ns["out"])
            links += [(ns["lb"], "r%d" % i), (ns["out"], "o%d" % i)]
        for n, dev in links:
            sh("ip", "-n", n, "link", "set", dev, "up")
            sh("ip", "netns", "exec", n, "ethtool", "-K", dev, "gro", "on", "tx", "off")
        sh("ip", "-n", ns["client"], "addr", "add", "198.18.0.2/24", "dev", "eth0")
        sh("ip", "-n", ns["client"], "neigh", "add", "198.18.0.1", "lladdr", "02:00:00:00:00:01", "dev", "eth0")
        deployed = True
        engine.run(model.validate(params))
        yield {"ns": ns, "state_dir": state_dir, "xdp_lb": xdp_lb, "params": params, "pin_dir": pin_dir}
    finally:
        nslab.remove(ns, params, deployed)


def xdp_lb(lab, *args):
    r = subprocess.run([lab["xdp_lb"], "--state-dir", lab["state_dir"]] + list(args), check=False, cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    with open(os.path.join(ROOT, "build", "cli", "session.txt"), "a") as f:
        f.write("# xdp-lb %s\n%s%s(exit %d)\n\n" % (" ".join(args), r.stdout, r.stderr, r.returncode))
    return r


def received(lab):
    out = {}
    for i in range(3):
        p = subprocess.run(["ip", "netns", "exec", lab["ns"]["out"], "cat",
                            "/sys/class/net/o%d/statistics/rx_packets" % i],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True)
        out["r%d" % i] = int(p.stdout)
    return out


def send(lab, count, base):
    code = ("import socket\n"
            "for i in range(%d):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind(('198.18.0.2', %d + i))\n"
            "    s.sendto(b'x' * 20, ('198.18.0.1', 9))\n"
            "    s.close()\n" % (count, base))
    sh("ip", "netns", "exec", lab["ns"]["client"], "/usr/bin/python3", "-c", code)


def delta(lab, count, base):
    before = received(lab)
    send(lab, count, base)
    after = received(lab)
    return dict((k, after[k] - before[k]) for k in after)


def test_ports_add_remove_restore_and_clear(lab):
    os.makedirs(os.path.join(ROOT, "build", "cli"), exist_ok=True)
    d = delta(lab, 200, 40000)
    assert d["r0"] > 0 and d["r1"] > 0 and d["r2"] == 0 and d["r0"] + d["r1"] >= 200, d
    r = xdp_lb(lab, "ports", "list")
    assert r.returncode == 0 and r.stdout.startswith("rd redirect ports: r0, r1"), r.stdout

    r = xdp_lb(lab, "ports", "remove", "r1")
    assert r.returncode == 0, r.stderr
    assert "rd redirect ports: r0" in r.stdout
    d = delta(lab, 200, 41000)
    assert d["r1"] == 0 and d["r2"] == 0 and d["r0"] >= 200, d
    r = xdp_lb(lab, "ports", "add", "r2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ports"] == ["r0", "r2"]
    d = delta(lab, 200, 42000)
    assert d["r1"] == 0 and d["r0"] > 0 and d["r2"] > 0, d

    r = xdp_lb(lab, "status", "--json")
    st = json.loads(r.stdout)[0]
    assert [p["interface"] for p in st["redirect_ports"]] == ["r0", "r2"]
    assert st["redirect_overrides"] == {"add": ["r2"], "remove": ["r1"]}
    r = xdp_lb(lab, "status")
    assert "override   redirect port r2 added" in r.stdout and "override   redirect port r1 removed" in r.stdout

    # boot: attachments and pins gone; restore keeps the ports as overridden
    sh("ip", "-n", lab["ns"]["lb"], "link", "set", "dev", "front0", "xdpdrv", "off")
    engine.remove_pins(lab["pin_dir"])
    r = xdp_lb(lab, "restore", "--all")
    assert r.returncode == 0, r.stderr
    d = delta(lab, 200, 43000)
    assert d["r1"] == 0 and d["r0"] > 0 and d["r2"] > 0, d
    # the next module run names them and keeps them
    res = engine.run(model.validate(lab["params"]))
    assert not res["changed"], res["changes"]
    texts = " | ".join(res["warnings"])
    assert "operator override kept: redirect port r2 added" in texts
    assert "operator override kept: redirect port r1 removed" in texts

    # bad input, nothing changed
    for args, text in ((["ports", "add", "nope0"], "interface nope0 not found"),
                       (["ports", "add", "r0"], "r0 is already a redirect port of rd"),
                       (["ports", "remove", "r1"], "r1 is not a redirect port of rd"),
                       (["ports", "add", "a/b"], "a/b is not a valid interface name"),
                       (["ports"], "give 'list'")):
        r = xdp_lb(lab, *args)
        assert r.returncode == 2 and text in r.stderr and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    assert xdp_lb(lab, "ports", "remove", "r2").returncode == 0
    r = xdp_lb(lab, "ports", "remove", "r0")
    assert r.returncode == 2 and "last redirect port" in r.stderr
    assert xdp_lb(lab, "ports", "add", "r2").returncode == 0

    r = xdp_lb(lab, "override", "clear")
    assert r.returncode == 0, r.stderr
    assert "redirect port r2 added" in r.stdout
    r = xdp_lb(lab, "ports", "list")
    assert r.stdout.strip() == "rd redirect ports: r0, r1"
    d = delta(lab, 200, 44000)
    assert d["r0"] > 0 and d["r1"] > 0 and d["r2"] == 0, d
    r = xdp_lb(lab, "top", "--once", "--interval", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    assert [p["name"] for p in json.loads(r.stdout)["ports"]] == ["0 r0", "1 r1"]
    r = xdp_lb(lab, "top", "--once", "--interval", "0.5")
    assert "redirect port" in r.stdout and "0 r0" in r.stdout, r.stdout
