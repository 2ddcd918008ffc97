# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory-driven backends on the lab, under traffic, through the real playbook.

The lab (playbooks/lab.yml, prefix ``xlbi-``, management 198.19.50.0/24,
four backends, nat mode) with a UDP and TCP echo server on port 7777 of
every backend.  The balancer's services name an inventory group
(``backend_group: web``) and never an address: the backends are inventory
hosts with ``xdp_lb_backend_ipv4``/``_ipv6``, unreachable over SSH (they
run no sshd), which the resolution never contacts.  One site.yml run per
step, each with an inventory of its own:

  deploy    web = be1..be3 (be4 is in the inventory, not in the group)
  add       be4 joins web: --check --diff first names it (host and address)
            and changes nothing; the run adds it, new flows reach it, no
            existing flow moves
  (traffic restarts, so that be4 has established flows too)
  drain     xdp_lb_backend_pool_state: drain on be4: its flows stay, no new ones
  rerun     the same inventory: changed=0
  remove    be4 leaves web: only be4's flows move
  dynamic   the same pool from a dynamic-style inventory (the constructed
            plugin builds group web from a host variable): changed=0, the
            same backends and rings
  failure   a group host without an address: the task fails naming
            service, group and host, and the live tables are unchanged

A second test builds the dsr lab (``-e lab_mode=dsr``) whose inventory
declares the services once, on the balancer, in group form: the backends
get their VIPs from the group (role xdp_lb_backend) and answer through it.
"""

from __future__ import absolute_import, division, print_function

import copy
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from test_operations import Lab, _row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "ops")
OUT = os.path.join(ROOT, "build", "ops", "inventory")
LAB_DIR = os.path.join(OUT, "lab")
PREFIX = "xlbi-"
MGMT = "198.19.50"
NBACKENDS = 4
VIP = "198.18.100.1"
PORT = 7777
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# SSH control masters of these runs live here, so they can be closed at the end.
CP_DIR = os.path.join("/tmp", "xlbi-cp")
STATE_DIR = os.path.join(LAB_DIR, "host", "var", "lib", "netfleet-xdp-lb")
SERVICES = [{"vip": VIP, "port": PORT, "protocol": proto, "scheduler": "maglev", "backend_group": "web"}
            for proto in ("udp", "tcp")] + [
    {"vip": "fd00:18:100::1", "port": 80, "protocol": "tcp", "scheduler": "maglev", "backend_group": "web"}]


def env(prefix=PREFIX, lab_dir=LAB_DIR, mgmt=MGMT, backends=NBACKENDS):
    out = dict(os.environ)
    out["PATH"] = VENV_BIN + os.pathsep + out.get("PATH", "")
    out["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    out["ANSIBLE_NOCOLOR"] = "1"
    out["ANSIBLE_SSH_CONTROL_PATH_DIR"] = CP_DIR
    out.update({"LAB_PREFIX": prefix, "LAB_DIR": lab_dir, "LAB_MGMT_NET": mgmt, "LAB_BACKENDS": str(backends)})
    return out


def close_ssh_masters():
    if os.path.isdir(CP_DIR):
        for sock in os.listdir(CP_DIR):
            subprocess.run(["ssh", "-o", "ControlPath=%s" % os.path.join(CP_DIR, sock), "-O", "exit", "x"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(CP_DIR, ignore_errors=True)


def run(name, args, expect_rc=0, environ=None):
    """ansible-playbook ARGS; returns (recap totals, output)."""
    log = os.path.join(OUT, "%s.log" % name)
    with open(log, "w") as f:
        rc = subprocess.run(["ansible-playbook"] + list(args), cwd=ROOT, env=environ or env(), stdout=f,
                            stderr=subprocess.STDOUT, check=False).returncode
    text = open(log).read()
    assert rc == expect_rc, "ansible-playbook %s: rc %d, log %s:\n%s" % (" ".join(args), rc, log, text[-3000:])
    recap = text[text.rfind("PLAY RECAP"):]
    totals = dict((k, sum(int(v) for v in re.findall(r"\b%s=(\d+)" % k, recap)))
                  for k in ("ok", "changed", "failed", "unreachable"))
    return totals, text


class Inventory:
    """The lab's own inventory (connection, paths), with its services in group form."""

    def __init__(self):
        with open(os.path.join(LAB_DIR, "inventory.yml")) as f:
            self.base = yaml.safe_load(f)
        children = self.base["all"]["children"]
        # every backend is an inventory host; group web is the pool
        self.hostvars = children.pop("lab_web")["hosts"]
        children.pop("lab_backends", None)
        lb = children["xdp_lb_balancers"]["vars"]
        lb["xdp_lb_services"] = SERVICES
        lb["xdp_lb_install_packages"] = False

    def write(self, step, web, hostvars=None, prepare=False):
        data = copy.deepcopy(self.base)
        hosts = copy.deepcopy(self.hostvars)
        for host, extra in (hostvars or {}).items():
            hosts[PREFIX + host].update(extra)
        children = data["all"]["children"]
        children["lab_backends_all"] = {"hosts": hosts}
        children["web"] = {"hosts": dict((PREFIX + h, None) for h in web)}
        if not prepare:
            # the host preparation was done by the first deploy (test_operations does the same)
            children["xdp_lb_balancers"]["vars"].update(
                {"xdp_lb_manage_bpffs": False, "xdp_lb_manage_sysctl": False})
        path = os.path.join(OUT, "inventory-%s.yml" % step)
        with open(path, "w") as f:
            yaml.safe_dump(data, f, default_flow_style=False)
        return path

    def write_dynamic(self, web):
        """A dynamic-style inventory: hosts carry a 'pools' variable, the constructed plugin makes the groups."""
        data = copy.deepcopy(self.base)
        hosts = copy.deepcopy(self.hostvars)
        for host, hv in hosts.items():
            hv["pools"] = ["web"] if host[len(PREFIX):] in web else []
        data["all"]["children"]["lab_backends_all"] = {"hosts": hosts}
        data["all"]["children"]["xdp_lb_balancers"]["vars"].update(
            {"xdp_lb_manage_bpffs": False, "xdp_lb_manage_sysctl": False})
        static = os.path.join(OUT, "dynamic", "10-hosts.yml")
        os.makedirs(os.path.dirname(static), exist_ok=True)
        with open(static, "w") as f:
            yaml.safe_dump(data, f, default_flow_style=False)
        with open(os.path.join(OUT, "dynamic", "20-constructed.yml"), "w") as f:
            yaml.safe_dump({"plugin": "ansible.builtin.constructed", "strict": True,
                            "groups": {"web": "'web' in (pools | default([]))"}}, f)
        return os.path.join(OUT, "dynamic")


def status(lab):
    """The live instance (the CLI on the balancer, in its own namespaces)."""
    return lab.status()


def live_backends(st):
    return dict((s["service"], sorted((b["address"], b["weight"]) for b in s["backends"])) for s in st["services"])


def tables(st):
    """What the maps hold, without the counters: services, rings, backends with ids and weights."""
    return [(s["service"], s["ring"], sorted((b["address"], b["port"], b["id"], b["weight"]) for b in s["backends"]))
            for s in st["services"]]


def be(n, weight=100, v6=False):
    return ("fd00:18:1::%d" % (10 + n) if v6 else "198.18.1.%d" % (10 + n), weight)


class InvLab(Lab):
    def up(self):
        os.makedirs(OUT, exist_ok=True)
        run("lab-up", ["playbooks/lab.yml", "-e", "lab_prefix=%s" % PREFIX, "-e", "lab_dir=%s" % LAB_DIR,
                       "-e", "lab_mgmt_net=%s" % MGMT, "-e", "lab_backends=%d" % NBACKENDS])
        for n in range(1, NBACKENDS + 1):
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", "%sbe%d" % (PREFIX, n), "/usr/bin/python3",
                 os.path.join(HERE, "echo_server.py"), "--name", "be%d" % n, "--port", str(PORT),
                 "--max-seconds", "900"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(LAB_DIR, "echo-be%d.log" % n), "w")))
        return self

    def start_traffic(self, tcp=32):
        self.traffic = subprocess.Popen(
            ["ip", "netns", "exec", "%sclient" % PREFIX, "/usr/bin/python3", os.path.join(HERE, "traffic.py"),
             "--vip", VIP, "--port", str(PORT), "--tcp-port", str(PORT), "--rate", "1000", "--tcp", str(tcp),
             "--max-seconds", "400"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(OUT, "traffic.err"), "a"),
            universal_newlines=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        return self.expect("ready", 30)


@pytest.fixture(scope="module")
def lab(monkeypatch_module):
    if os.geteuid() != 0:
        pytest.skip("builds a netns lab and loads XDP programs: run as root")
    lab = InvLab()
    try:
        yield lab.up()
    finally:
        close_ssh_masters()
        lab.close()
    assert PREFIX not in subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, check=False).stdout.decode()


@pytest.fixture(scope="module")
def monkeypatch_module():
    """test_operations' Lab helpers read its module constants: point them at this lab."""
    import test_operations as ops
    names = ("OUT", "LAB_DIR", "PREFIX", "MGMT", "NBACKENDS", "STATE_DIR", "UNIT")
    saved = dict((k, getattr(ops, k)) for k in names)
    ops.OUT, ops.LAB_DIR, ops.PREFIX, ops.MGMT, ops.NBACKENDS, ops.STATE_DIR = (
        OUT, LAB_DIR, PREFIX, MGMT, NBACKENDS, STATE_DIR)
    ops.UNIT = os.path.join(LAB_DIR, "host", "etc", "systemd", "system", "netfleet-xdp-lb-restore.service")
    try:
        yield ops
    finally:
        for k, v in saved.items():
            setattr(ops, k, v)


def intact(r, tcp):
    assert r["sent"] > 500, r
    assert (r["lost"], r["moved_flows"], r["probe_failures"]) == (0, 0, 0), r
    assert r["tcp_survived"] == r["tcp_open"] == tcp, r


def test_pool_is_an_inventory_group(lab):
    inv = Inventory()
    totals, _out = run("deploy", ["-i", inv.write("deploy", ["be1", "be2", "be3"], prepare=True), "site.yml"])
    assert totals["changed"] > 0 and totals["failed"] == 0
    st = status(lab)
    assert live_backends(st)["udp/%s:%d" % (VIP, PORT)] == [be(1), be(2), be(3)]
    assert live_backends(st)["tcp/[fd00:18:100::1]:80"] == [be(1, v6=True), be(2, v6=True), be(3, v6=True)]

    ready = lab.start_traffic()
    assert sorted(ready["tcp"]) == ["be1", "be2", "be3"], ready
    steps, changed = {}, {}

    # add: the preview names the host and changes nothing; the run adds it
    lab.phase("add")
    path = inv.write("add", ["be1", "be2", "be3", "be4"])
    totals, out = run("add-check", ["-i", path, "site.yml", "--check", "--diff"])
    assert "+ udp/198.18.100.1:7777 xlbi-be4 198.18.1.14:7777 weight 100" in out, out[-3000:]
    assert "+ tcp/[fd00:18:100::1]:80 xlbi-be4 [fd00:18:1::14]:80 weight 100" in out, out[-3000:]
    assert live_backends(status(lab)) == live_backends(st)          # check mode changed nothing
    totals, out = run("add", ["-i", path, "site.yml"])
    changed["add"] = totals["changed"]
    time.sleep(1.5)
    after_add = status(lab)
    assert live_backends(after_add)["tcp/%s:%d" % (VIP, PORT)] == [be(1), be(2), be(3), be(4)]
    report = lab.stop_traffic()
    steps.update((ph["name"], _row(ph)) for ph in report["phases"])
    intact(steps["add"], 32)                              # nothing established moved
    assert "be4" in steps["add"]["probes"], steps["add"]   # new flows reach be4

    # fresh traffic: now be4 holds established flows too
    ready = lab.start_traffic()
    assert sorted(ready["tcp"]) == ["be1", "be2", "be3", "be4"], ready
    on_be4 = ready["tcp"]["be4"]

    lab.phase("drain")
    path = inv.write("drain", ["be1", "be2", "be3", "be4"], {"be4": {"xdp_lb_backend_pool_state": "drain"}})
    totals, out = run("drain", ["-i", path, "site.yml", "--diff"])
    changed["drain"] = totals["changed"]
    assert "~ udp/198.18.100.1:7777 xlbi-be4 198.18.1.14:7777 weight 100 -> 0" in out, out[-3000:]
    time.sleep(1.5)

    lab.phase("rerun")
    totals, out = run("rerun", ["-i", path, "site.yml"])
    changed["rerun"] = totals["changed"]
    time.sleep(1.0)

    lab.phase("remove")
    path = inv.write("remove", ["be1", "be2", "be3"])
    totals, out = run("remove", ["-i", path, "site.yml", "--diff"])
    changed["remove"] = totals["changed"]
    assert "- udp/198.18.100.1:7777 xlbi-be4 198.18.1.14:7777" in out, out[-3000:]
    time.sleep(1.5)
    after_remove = status(lab)

    lab.phase("dynamic")
    totals, out = run("dynamic", ["-i", inv.write_dynamic(["be1", "be2", "be3"]), "site.yml"])
    changed["dynamic"] = totals["changed"]
    time.sleep(1.0)
    after_dynamic = status(lab)

    lab.phase("failure")
    path = inv.write("failure", ["be1", "be2", "be3"], {"be2": {"xdp_lb_backend_ipv4": None}})
    totals, out = run("failure", ["-i", path, "site.yml"], expect_rc=2)
    assert ("inventory backends: services[0] (udp/198.18.100.1:7777): backend_group web: host xlbi-be2: "
            "has no xdp_lb_backend_ipv4") in " ".join(out.split()), out[-3000:]
    time.sleep(1.0)
    after_failure = status(lab)
    report = lab.stop_traffic()
    steps.update((ph["name"], _row(ph)) for ph in report["phases"])
    with open(os.path.join(OUT, "inventory.json"), "w") as f:
        json.dump({"steps": steps, "changed": changed, "report": report}, f, indent=1, sort_keys=True)
    print("\nchanged per step: %s" % changed)
    for name in ("add", "drain", "rerun", "remove", "dynamic", "failure"):
        r = steps[name]
        print("%-8s sent %6d lost %4d moved %3d tcp %2d/%-2d probes %s" % (
            name, r["sent"], r["lost"], r["moved_flows"], r["tcp_survived"], r["tcp_open"], r["probes"]))

    # drain: be4's established flows stay (nothing lost, nothing moved), new flows avoid it
    intact(steps["drain"], 32)
    assert "be4" not in steps["drain"]["probes"] and on_be4 > 0, (steps["drain"], ready)
    # rerun: nothing to do
    assert changed["rerun"] == 0, changed
    intact(steps["rerun"], 32)
    # remove: only be4's flows move or break
    r = steps["remove"]
    assert set(f for f, _t in r["moved"]) <= {"be4"}, r
    assert set(r["lost_by_backend"]) <= {"be4"}, r
    assert set(r["tcp_broken_backends"]) <= {"be4"}, r
    assert r["tcp_survived"] == 32 - on_be4, (r, on_be4)
    assert "be4" not in r["probes"] and r["probe_failures"] == 0, r
    assert live_backends(after_remove)["tcp/%s:%d" % (VIP, PORT)] == [be(1), be(2), be(3)]
    # dynamic inventory: the same pool, the same tables, nothing changed
    assert changed["dynamic"] == 0, changed
    assert tables(after_dynamic) == tables(after_remove)
    assert steps["dynamic"]["lost"] == 0 and steps["dynamic"]["moved_flows"] == 0, steps["dynamic"]
    # failure: nothing changed on the host
    assert tables(after_failure) == tables(after_dynamic)
    assert steps["failure"]["lost"] == 0 and steps["failure"]["moved_flows"] == 0, steps["failure"]


DSR_PREFIX = "xlbj-"
DSR_DIR = os.path.join(OUT, "dsr-lab")


def test_dsr_backends_take_vips_from_the_group():
    """The dsr lab (playbooks/lab.yml -e lab_mode=dsr): its inventory declares the services once, on the
    balancer, with backend_group: lab_web; each backend (over SSH, role xdp_lb_backend) gets the VIPs from
    that, and requests through the balancer are answered by every backend."""
    if os.geteuid() != 0:
        pytest.skip("builds a netns lab and loads XDP programs: run as root")
    dsr_env = env(prefix=DSR_PREFIX, lab_dir=DSR_DIR, mgmt="198.19.51", backends=3)
    os.makedirs(OUT, exist_ok=True)
    try:
        run("dsr-lab-up", ["playbooks/lab.yml", "-e", "lab_prefix=%s" % DSR_PREFIX, "-e", "lab_dir=%s" % DSR_DIR,
                           "-e", "lab_mgmt_net=198.19.51", "-e", "lab_mode=dsr"], environ=dsr_env)
        inventory = os.path.join(DSR_DIR, "inventory.yml")
        with open(inventory) as f:
            text = f.read()
        assert "backend_group: lab_web" in text and "address:" not in text   # no duplicated service list
        totals, out = run("dsr-deploy", ["-i", inventory, "site.yml"], environ=dsr_env)
        assert totals["failed"] == 0 and totals["changed"] > 0
        for n in (1, 2, 3):
            addr = subprocess.run(["ip", "netns", "exec", "%sbe%d" % (DSR_PREFIX, n), "ip", "-j", "addr", "show",
                                   "dev", "lo"], stdout=subprocess.PIPE, check=True).stdout.decode()
            have = sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in json.loads(addr)[0]["addr_info"])
            assert "198.18.100.1/32" in have and "fd00:18:100::1/128" in have, (n, have)
        traffic = subprocess.run(
            ["ip", "netns", "exec", DSR_PREFIX + "client", "/usr/bin/python3",
             os.path.join(ROOT, "molecule", "shared", "traffic.py"), "--requests", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        result = json.loads(traffic.stdout.decode())
        for service, r in sorted(result.items()):
            assert r["failed"] == 0 and len(r["answers"]) == 3, (service, r)
        print("\ndsr through the group: %s" % dict((k, v["answers"]) for k, v in sorted(result.items())))
    finally:
        close_ssh_masters()
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "lab", "lab.sh"), "down"], env=dsr_env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    assert DSR_PREFIX not in subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE,
                                            check=False).stdout.decode()
