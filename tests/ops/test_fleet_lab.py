# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/lab/fleet.sh builds what it says and `down` leaves nothing, at any size.

A small fleet (3 balancers, a client each: FLEET_CLIENTS=all, prefix
``xlbfl-``, management 198.19.23.0/24) is built: every balancer's sshd
answers on its management address from the root namespace, every client
routes the VIPs through its own balancer, the backends answer.  Then
`down` is run with another FLEET_SIZE and FLEET_CLIENTS than `up` had:
no namespace, root-side link, process or directory of the prefix is left.
Bad sizes are refused before anything is made.  A few seconds.
"""

from __future__ import absolute_import, division, print_function

import os
import re
import socket
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "lab", "fleet.sh")
PREFIX, MGMT = "xlbfl-", "198.19.23"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


def run(cmd, lab, **env):
    e = dict(os.environ, FLEET_PREFIX=PREFIX, FLEET_MGMT_NET=MGMT, FLEET_DIR=lab)
    e.update(env)
    # The lab's daemons must not inherit the test runner's descriptors (a
    # flock held by the caller would be held by sshd until `down`).
    return subprocess.run(["bash", SCRIPT, cmd], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, close_fds=True)


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, check=False).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(PREFIX))


def links():
    out = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, check=False).stdout
    names = (re.split(r"[:@]", line.split(": ", 1)[1])[0] for line in out.splitlines() if ": " in line)
    return sorted(n for n in names if n.startswith(PREFIX))


def processes(lab):
    """Processes whose command line names the lab's directory (sshd, nginx, dnsmasq)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if lab in cmd:
            found.append((int(pid), cmd))
    return found


def test_fleet_up_and_down(tmp_path):
    lab = str(tmp_path / "lab")
    try:
        r = run("up", lab, FLEET_SIZE="3", FLEET_CLIENTS="all", FLEET_BACKENDS="2")
        assert r.returncode == 0, r.stdout
        assert namespaces() == sorted(PREFIX + n for n in
                                      ("client", "sw", "lb01", "lb02", "lb03", "cl02", "cl03", "be1", "be2"))
        assert links() == sorted(PREFIX + n for n in ("mgmt", "m-lb01", "m-lb02", "m-lb03"))
        for i in (1, 2, 3):
            with socket.create_connection(("%s.%d" % (MGMT, i), 22), timeout=5) as s:
                assert s.recv(64).startswith(b"SSH-2.0-")
        for client in ("client", "cl02", "cl03"):
            route = subprocess.run(["ip", "-n", PREFIX + client, "route", "get", "198.18.100.1"],
                                   stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
            assert "via 198.18.0.1 dev eth0" in route, (client, route)
        be = subprocess.run(["ip", "netns", "exec", PREFIX + "be2", "curl", "-s", "-m", "2", "http://198.18.1.12/"],
                            stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
        assert be.strip() == "be2"
        assert processes(lab)
    finally:
        # another size and client setting than `up`: down finds what exists
        down = run("down", lab, FLEET_SIZE="1", FLEET_CLIENTS="one")
    assert down.returncode == 0, down.stdout
    assert namespaces() == []
    assert links() == []
    assert processes(lab) == []
    assert not os.path.exists(lab)


@pytest.mark.parametrize("env, message", [
    ({"FLEET_SIZE": "100"}, "FLEET_SIZE must be 1..99: 100"),
    ({"FLEET_SIZE": "0"}, "FLEET_SIZE must be 1..99: 0"),
    ({"FLEET_CLIENTS": "some"}, "FLEET_CLIENTS must be one or all: some"),
    ({"FLEET_MGMT_NET": "10.0.0"}, "FLEET_MGMT_NET must be inside 198.18.0.0/15: 10.0.0"),
])
def test_fleet_refuses_bad_settings(tmp_path, env, message):
    lab = str(tmp_path / "lab")
    r = run("up", lab, **env)
    assert r.returncode == 2 and message in r.stdout, r.stdout
    assert namespaces() == [] and links() == [] and not os.path.exists(lab)
