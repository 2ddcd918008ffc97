# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health checks (xdp_lb_health_checks) on the netns lab (prefix xlbr-h-).

The role installs netfleet-xdp-lb-health-default.service; there is no
systemd as PID 1 here, so the test runs the unit's ExecStart (with its
Environment) itself, in the balancer's network and mount namespace (the
ones its sshd, hence Ansible, uses), and ends it at the end.

- one failed probe (nginx on be2 stopped for a single round) drains nothing;
- nginx on be2 stopped: be2 leaves the TCP rings within a bounded time
  (status file, ring digests), new HTTP requests all succeed on be1/be3;
  UDP (dnsmasq on be2 still up) keeps be2;
- a play run meanwhile changes nothing and keeps be2 drained;
- nginx started again: be2 is back after `rise` passes, rings as before.

A checker that is turned off or removed drains nothing (issue 12), with a
real checker process marking be2 down (nginx stopped) meanwhile:

- xdp_lb_health_checks turned off: on that run the TCP rings in the live
  maps are the deployed ones again (be2 has its configured weight, though
  it is still down), the module's result says what systemctl would have run
  (stop, disable, daemon-reload: no systemd here), and the checker process
  ends by itself (the state file says health checks are off) and removes
  its status; a stale status file written back is applied neither by a play
  run nor by boot-time restore;
- xdp_lb_state absent: the checker ends (no state file) and leaves no
  status file; the result names the same systemctl commands.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shlex
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "xlbr-h-"
LAB = os.path.join(ROOT, "build", "ops", "health", "lab")
STATE_DIR = os.path.join(LAB, "host", "var", "lib", "netfleet-xdp-lb")
UNIT = os.path.join(LAB, "host", "etc", "systemd", "system", "netfleet-xdp-lb-health-default.service")
STATUS = os.path.join(STATE_DIR, "health", "default.json")
VIP = "198.18.100.1"
TCP = ["tcp/198.18.100.1:80", "tcp/[fd00:18:100::1]:80"]
UDP = ["udp/198.18.100.1:53", "udp/[fd00:18:100::1]:53"]
BE2 = {"tcp/198.18.100.1:80": "198.18.1.12:80", "tcp/[fd00:18:100::1]:80": "fd00:18:1::12:80"}
BOUND = 30   # seconds within which a transition must show (interval 0.5 s, rise = fall = 2)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, XDP)")

EXTRA = {
    "xdp_lb_install_packages": False,
    # The restore unit is covered elsewhere (molecule, demo); the engine is installed for the checker.
    "xdp_lb_restore_unit": False,
    "xdp_lb_health_checks": True,
    "xdp_lb_health_interval": 0.5,
    "xdp_lb_health_timeout": 0.5,
    "xdp_lb_health_rise": 2,
    "xdp_lb_health_fall": 2,
    "xdp_lb_health_probes": {"tcp": {"type": "http", "path": "/"},
                             "udp": {"type": "dns", "name": "whoami.lab", "qtype": "TXT"}},
}


def sh(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, **kw)


def ansible_env(cp_dir):
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_SSH_CONTROL_PATH_DIR=cp_dir, PYTHONDONTWRITEBYTECODE="1")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("health")
    cp_dir = str(tmp / "cp")
    lab_env = dict(os.environ, LAB_PREFIX=PREFIX, LAB_DIR=LAB)
    procs = []
    try:
        up = sh([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), os.path.join(ROOT, "playbooks", "lab.yml"),
                 "-e", "lab_prefix=%s" % PREFIX, "-e", "lab_dir=%s" % LAB, "-e", "lab_mgmt_net=198.19.40"],
                env=ansible_env(cp_dir), cwd=ROOT)
        assert up.returncode == 0, up.stdout.decode()[-3000:]
        yield {"tmp": tmp, "cp_dir": cp_dir, "procs": procs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if os.path.isdir(cp_dir):
            for sock in os.listdir(cp_dir):
                sh(["ssh", "-o", "ControlPath=%s" % os.path.join(cp_dir, sock), "-O", "exit", "x"])
        sh(["bash", os.path.join(ROOT, "scripts", "lab", "lab.sh"), "down"], env=lab_env)
    assert PREFIX not in sh(["ip", "netns", "list"]).stdout.decode()


def site(lab, name, *args, **overrides):
    vars_file = lab["tmp"] / ("%s.json" % name)
    vars_file.write_text(json.dumps(dict(EXTRA, **overrides)))
    proc = sh([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", os.path.join(LAB, "inventory.yml"),
               os.path.join(ROOT, "playbooks", "site.yml"), "-e", "@%s" % vars_file] + list(args),
              # results as JSON where -v prints them (module_result reads them)
              env=dict(ansible_env(lab["cp_dir"]), ANSIBLE_CALLBACK_RESULT_FORMAT="json"), cwd=ROOT)
    out = proc.stdout.decode("utf-8", "replace")
    (lab["tmp"] / ("%s.log" % name)).write_text(out)
    assert proc.returncode == 0, out[-4000:]
    return out


def sshd_pid():
    with open(os.path.join(LAB, "lb", "sshd.pid")) as f:
        return f.read().strip()


def unit_command():
    """(argv, env) of the health unit's ExecStart."""
    env = dict(os.environ)
    argv = None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line.startswith("Environment="):
                k, v = line[len("Environment="):].split("=", 1)
                env[k] = v
            elif line.startswith("ExecStart="):
                argv = shlex.split(line[len("ExecStart="):])
    assert argv and argv[-2:] == ["health", "default"], argv
    return ["nsenter", "-t", sshd_pid(), "-m", "-n"] + argv, env


def cli(*args):
    """The engine's command line on the balancer (its mount and network namespace)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"), PYTHONDONTWRITEBYTECODE="1")
    proc = sh(["nsenter", "-t", sshd_pid(), "-m", "-n", "/usr/bin/python3", "-m",
               "ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.cli",
               "--state-dir", STATE_DIR] + list(args), env=env)
    assert proc.returncode == 0, proc.stdout.decode()
    return json.loads(proc.stdout.decode())


def rings():
    """{service: ring digest} from the balancer's live maps (cli status)."""
    return dict((s["service"], s["ring"]) for s in cli("status", "--json", "default")[0]["services"])


def status():
    with open(STATUS) as f:
        return json.load(f)["backends"]


def be2(st, svc):
    return st["%s|%s" % (svc, BE2[svc])]


def nginx(action):
    d = os.path.join(LAB, "be2")
    pid_file = os.path.join(d, "nginx.pid")
    if action == "stop":
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        for _i in range(100):
            if not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        raise AssertionError("nginx of be2 did not stop")
    p = sh(["ip", "netns", "exec", PREFIX + "be2", "nginx", "-e", os.path.join(d, "nginx-error.log"), "-p", d,
            "-c", os.path.join(d, "nginx.conf")])
    assert p.returncode == 0, p.stdout.decode()


def wait_for(what, check):
    deadline = time.time() + BOUND
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError("not within %d s: %s; status: %s" % (BOUND, what, json.dumps(status(), indent=1)))


def http_through_lb(answers):
    """30 GETs to the VIP from the client, each a new flow: all must succeed, answered by exactly ``answers``."""
    probes = [{"type": "http", "address": VIP, "port": 80, "answers": answers}]
    g = sh(["/usr/bin/python3", os.path.join(ROOT, "playbooks", "files", "xdp_lb_gate.py"), "--netns",
            PREFIX + "client", "--attempts", "30", "--timeout", "2", "--probes", json.dumps(probes)])
    assert g.returncode == 0, g.stdout.decode()


def test_health_checker_drains_and_restores_a_backend(lab):
    site(lab, "1-deploy")
    deployed = rings()
    argv, env = unit_command()

    # -- one failed probe does not drain ----------------------------------------
    one = sh(argv + ["--rounds", "1"], env=env)
    assert one.returncode == 0, one.stdout.decode()
    assert all(v["state"] == "up" for v in status().values()), status()
    nginx("stop")
    one = sh(argv + ["--rounds", "1"], env=env)
    assert one.returncode == 0, one.stdout.decode()
    st = status()
    for svc in TCP:
        assert be2(st, svc)["state"] == "up" and be2(st, svc)["fails"] == 1, st
    assert rings() == deployed
    nginx("start")
    one = sh(argv + ["--rounds", "1"], env=env)
    st = status()
    assert all(be2(st, svc)["fails"] == 0 and be2(st, svc)["state"] == "up" for svc in TCP), st

    # -- the checker as its unit runs it ----------------------------------------
    log = open(str(lab["tmp"] / "health.log"), "w")
    lab["procs"].append(subprocess.Popen(argv, env=env, stdout=log, stderr=log))
    nginx("stop")
    wait_for("be2 drained from the TCP services",
             lambda: all(be2(status(), svc)["state"] == "down" for svc in TCP))
    wait_for("TCP rings rebuilt without be2",
             lambda: all(rings()[s] != deployed[s] for s in TCP))
    now = rings()
    assert all(now[s] == deployed[s] for s in UDP), (now, deployed)   # dnsmasq on be2 still answers
    http_through_lb(["be1", "be3"])

    # -- a play run does not fight the checker -----------------------------------
    out = site(lab, "2-rerun-drained")
    section = out.split("TASK [netfleet.xdp_lb.xdp_lb : Configure the load balancer]")[1].split("TASK [")[0]
    assert "ok: [xlbr-h-lb]" in section, section
    assert rings() == now
    http_through_lb(["be1", "be3"])

    # -- back after rise passes ---------------------------------------------------
    nginx("start")
    wait_for("be2 up again", lambda: all(be2(status(), svc)["state"] == "up" for svc in TCP))
    wait_for("rings as deployed", lambda: rings() == deployed)
    http_through_lb(["be1", "be2", "be3"])
    assert lab["procs"][0].poll() is None, "the checker ended"
    log.close()
    text = open(str(lab["tmp"] / "health.log")).read()
    assert "198.18.1.12:80 is down" in text and "198.18.1.12:80 is up" in text, text


# ---- a checker that is turned off or removed drains nothing --------------------

SYSTEMCTL_OFF = ["systemctl stop netfleet-xdp-lb-health-default.service",
                 "systemctl disable netfleet-xdp-lb-health-default.service", "systemctl daemon-reload"]


def end_checkers(lab):
    """Ends the checkers an earlier test started (one checker at a time)."""
    for p in lab["procs"]:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(10)


def start_checker(lab, name):
    """The checker as its unit runs it, in the background: (process, log path)."""
    argv, env = unit_command()
    path = str(lab["tmp"] / name)
    with open(path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    lab["procs"].append(proc)
    return proc, path


def nginx_running():
    try:
        with open(os.path.join(LAB, "be2", "nginx.pid")) as f:
            return os.path.exists("/proc/%d" % int(f.read().strip()))
    except (IOError, OSError, ValueError):
        return False


def drain_be2(deployed):
    nginx("stop")
    wait_for("be2 drained from the TCP services",
             lambda: os.path.exists(STATUS) and all(be2(status(), svc)["state"] == "down" for svc in TCP))
    wait_for("TCP rings rebuilt without be2", lambda: all(rings()[s] != deployed[s] for s in TCP))


def module_result(out, task):
    """The xdp_lb module's result in a -v run (its task's section: 'changed: [host] => {...}')."""
    section = out.split("TASK [netfleet.xdp_lb.xdp_lb : %s]" % task)[1].split("TASK [")[0]
    return json.JSONDecoder().raw_decode(section.split(" => ", 1)[1])[0]


def ended(proc, log, why):
    """The checker process ended by itself (exit 0), saying why, and took its status file along."""
    try:
        proc.wait(BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError("the checker still runs %d s after the run; log: %s" % (BOUND, open(log).read()))
    text = open(log).read()
    assert proc.returncode == 0, text
    assert "default: %s; status file removed, stopping" % why in text, text
    assert not os.path.exists(STATUS)


def test_turning_health_checks_off_ends_the_checker_and_restores_configured_weights(lab):
    end_checkers(lab)
    site(lab, "3-deploy")
    deployed = rings()
    proc, log = start_checker(lab, "health-off.log")
    try:
        drain_be2(deployed)
        drained_status = open(STATUS).read()
        assert proc.poll() is None

        out = site(lab, "4-health-off", "-v", xdp_lb_health_checks=False)
        result = module_result(out, "Configure the load balancer")
        # no systemd as PID 1 here: what would have run, in its order
        assert result["footprint"]["systemctl"] == SYSTEMCTL_OFF, result["footprint"]
        assert result["footprint"]["systemctl_ran"] is False
        # that run: be2 (still down) back in the rings with its configured weight (live maps)
        assert rings() == deployed
        assert not os.path.exists(UNIT)
        ended(proc, log, "health checks are off in the state file")
        assert rings() == deployed

        # A stale status file of the disabled checker is never applied: not by
        # boot-time restore (the engine alone) nor by a play run.
        with open(STATUS, "w") as f:
            f.write(drained_status)
        restored = cli("restore", "default")["default"]
        assert not restored.get("failed"), restored
        assert rings() == deployed and not os.path.exists(STATUS), restored
        with open(STATUS, "w") as f:
            f.write(drained_status)
        site(lab, "5-health-off-stale-status", xdp_lb_health_checks=False)
        assert rings() == deployed and not os.path.exists(STATUS)
    finally:
        if not nginx_running():
            nginx("start")


def test_state_absent_ends_the_checker(lab):
    end_checkers(lab)
    site(lab, "6-health-on-again")
    deployed = rings()
    proc, log = start_checker(lab, "health-absent.log")
    try:
        drain_be2(deployed)
        out = site(lab, "7-absent", "-v", xdp_lb_state="absent")
        result = module_result(out, "Configure the load balancer")
        assert result["footprint"]["systemctl"] == SYSTEMCTL_OFF, result["footprint"]
        assert not os.path.exists(UNIT) and not os.path.exists(os.path.join(STATE_DIR, "default.json"))
        ended(proc, log, "the instance has no state file any more")
    finally:
        if not nginx_running():
            nginx("start")
