# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pull mode on 12 balancers (docs/pull.md): no controller in the loop.

    flock /tmp/xdplb-fleet-pull.lock .venv/bin/python -m pytest -q -s tests/ops/test_pull.py

scripts/lab/fleet.sh builds 12 balancer hosts (prefix xlbp-, management
198.19.21.0/24, FLEET_DIR build/ops/pull/lab), each a network namespace
with its own sshd and mount namespace (its own bpffs).  An inventory
repository is made as a user would: ansible.cfg, inventory (the 12
balancers in xdp_lb_balancers and xdp_lb_pull, backends in group
fleet_web), site.yml importing netfleet.xdp_lb.site and netfleet.xdp_lb.pull,
and the collection vendored under collections/ (``ansible-galaxy
collection build`` + ``install -p collections``); it is pushed to a bare
repository the hosts clone over file://.

On each host (``nsenter`` into its sshd's mount and network namespaces)
tests/ops/pull_loop.py runs ``ansible-pull --url file://... --limit
xlbp-lbNN ... site.yml`` every PULL_INTERVAL seconds (default 120): the
timer's stand-in, as systemd is not PID 1 here.  Checked:

1. every host's first run converges (rc 0, changes), the second one, on
   the same commit, changes nothing (changed=0);
2. every host installed the pull units; their ExecStart is the command the
   loop runs, and ``systemd-analyze verify`` accepts both;
3. the twelve hosts' address-level tables (xdp_lb_info ring_addr_digest,
   read over SSH) are equal for every service;
4. a commit changing a backend's weight reaches every host in the first
   run that starts after it, within one interval of the commit; the
   tables are equal on all hosts again and differ from before.

Per-host wall and CPU seconds of the first, no-change and change runs (12
hosts at once on this machine's 2 shared CPUs) go to
build/ops/pull/results.json (benchmarks/results/pull.json is a copy).
Everything (loops, fleet, repositories) is removed at the end, also on
failure.
"""

from __future__ import absolute_import, division, print_function

import glob
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
PREFIX = "xlbp-"
MGMT = "198.19.21"
SIZE = 12
BASE = os.path.join(ROOT, "build", "ops", "pull")
LAB = os.path.join(BASE, "lab")
INTERVAL = float(os.environ.get("PULL_INTERVAL", "120"))
HOSTS = ["%slb%02d" % (PREFIX, n) for n in range(1, SIZE + 1)]
BACKENDS = {"be1": ("198.18.1.11", "fd00:18:1::11"), "be2": ("198.18.1.12", "fd00:18:1::12"),
            "be3": ("198.18.1.13", "fd00:18:1::13")}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, XDP)")


def sh(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False, **kw)


def ok(proc):
    assert proc.returncode == 0, "%s failed (rc %d):\n%s" % (" ".join(proc.args), proc.returncode, proc.stdout[-4000:])
    return proc.stdout


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(extra)
    return env


# ---- the inventory repository ------------------------------------------------

def inventory_files(repo_url, weights):
    hosts = "\n".join("        %s: {}" % h for h in HOSTS)
    backends = "\n".join(
        "        %s%s: {xdp_lb_backend_ipv4: %s, xdp_lb_backend_ipv6: \"%s\"%s}"
        % (PREFIX, be, v4, v6, (", xdp_lb_backend_weight: %d" % weights[be]) if be in weights else "")
        for be, (v4, v6) in sorted(BACKENDS.items()))
    return {
        "ansible.cfg": (
            "# The inventory repository's own settings: ansible-pull runs the\n"
            "# playbook in the checkout, so this file and the vendored collection apply.\n"
            "[defaults]\n"
            "collections_path = ./collections\n"
            "interpreter_python = /usr/bin/python3\n"
            "gathering = explicit\n"
            "retry_files_enabled = false\n"),
        "site.yml": (
            "---\n"
            "- name: Deploy netfleet.xdp_lb\n"
            "  ansible.builtin.import_playbook: netfleet.xdp_lb.site\n"
            "- name: Keep pulling\n"
            "  ansible.builtin.import_playbook: netfleet.xdp_lb.pull\n"),
        "inventory/hosts.yml": (
            "---\n"
            "all:\n"
            "  children:\n"
            "    xdp_lb_balancers:\n"
            "      hosts:\n%s\n"
            "    xdp_lb_pull:\n"
            "      children:\n"
            "        xdp_lb_balancers: {}\n"
            "    fleet_web:\n"
            "      hosts:\n%s\n") % (hosts, backends),
        "inventory/group_vars/all.yml": (
            "---\n"
            "# The pull runs as root on the host itself: no become (the lab has no sudo).\n"
            "ansible_become: false\n"),
        "inventory/group_vars/xdp_lb_balancers.yml": (
            "---\n"
            "pull_lab: %(lab)s\n"
            "pull_host_dir: \"{{ pull_lab }}/{{ inventory_hostname | regex_replace('^%(prefix)s', '') }}\"\n"
            "xdp_lb_mode: nat\n"
            "xdp_lb_interfaces: [front0, back0]\n"
            "xdp_lb_attach_mode: native\n"
            "xdp_lb_services:\n"
            "  - {vip: 198.18.100.1, port: 80, protocol: tcp, scheduler: maglev, backend_group: fleet_web}\n"
            "  - {vip: 198.18.100.1, port: 53, protocol: udp, scheduler: five_tuple, backend_group: fleet_web}\n"
            "  - {vip: \"fd00:18:100::1\", port: 80, protocol: tcp, scheduler: maglev, backend_group: fleet_web}\n"
            "# Hosts provisioned like those of molecule/fleet (packages and sysctls\n"
            "# in place), every path the host's own inside the lab directory.\n"
            "xdp_lb_install_packages: false\n"
            "xdp_lb_manage_sysctl: false\n"
            "xdp_lb_restore_unit: false\n"
            "xdp_lb_state_dir: \"{{ pull_host_dir }}/state\"\n"
            "xdp_lb_systemd_dir: \"{{ pull_host_dir }}/etc/systemd\"\n"
            "xdp_lb_engine_dir: \"{{ pull_host_dir }}/engine\"\n"
            "xdp_lb_bin_dir: \"{{ pull_host_dir }}/bin\"\n"
            "xdp_lb_metrics_dir: \"{{ pull_host_dir }}/metrics\"\n"
            "xdp_lb_build_dir: \"{{ pull_host_dir }}/build-cache\"\n"
            "# Pull mode: the timer that keeps this going.\n"
            "xdp_lb_pull_url: %(url)s\n"
            "xdp_lb_pull_checkout: main\n"
            "xdp_lb_pull_directory: \"{{ pull_host_dir }}/pull/checkout\"\n"
            "xdp_lb_pull_command: %(pull)s\n"
            "xdp_lb_pull_interval: %(interval)ds\n"
            "xdp_lb_pull_splay: 0\n"
            "xdp_lb_pull_systemd_dir: \"{{ pull_host_dir }}/etc/systemd\"\n"
        ) % {"lab": LAB, "prefix": PREFIX, "url": repo_url, "pull": os.path.join(VENV_BIN, "ansible-pull"),
             "interval": int(INTERVAL)},
    }


def write_files(work, files):
    for rel, text in files.items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def git(work, *args):
    return ok(sh(["git", "-C", work, "-c", "user.name=lab", "-c", "user.email=lab@example.invalid"] + list(args)))


def pull_argv(repo_url, host):
    """What the role writes as ExecStart (roles/xdp_lb_pull/vars/main.yml), for HOST."""
    return [os.path.join(VENV_BIN, "ansible-pull"), "--url", repo_url, "--checkout", "main",
            "--directory", os.path.join(LAB, host[len(PREFIX):], "pull", "checkout"),
            "--inventory", "inventory", "--limit", host, "--clean", "site.yml"]


# ---- the lab ----------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    fleet_env = dict(os.environ, FLEET_PREFIX=PREFIX, FLEET_MGMT_NET=MGMT, FLEET_DIR=LAB,
                     FLEET_SIZE=str(SIZE), FLEET_BACKENDS="3")
    script = os.path.join(ROOT, "scripts", "lab", "fleet.sh")
    loops = {}
    state = {"loops": loops}
    try:
        shutil.rmtree(os.path.join(BASE, "work"), ignore_errors=True)
        shutil.rmtree(os.path.join(BASE, "repo.git"), ignore_errors=True)
        ok(sh(["bash", script, "up"], env=fleet_env))
        yield state
    finally:
        stop_loops(loops)
        try:
            # The runs' records and output stay for a look afterwards (build/ops/pull/logs).
            logs = os.path.join(BASE, "logs")
            shutil.rmtree(logs, ignore_errors=True)
            os.makedirs(logs)
            for path in glob.glob(os.path.join(LAB, "lb*", "pull-runs.jsonl")) + \
                    glob.glob(os.path.join(LAB, "lb*", "pull.log")):
                shutil.copy(path, os.path.join(logs, "%s-%s" % (os.path.basename(os.path.dirname(path)),
                                                                os.path.basename(path))))
        finally:
            sh(["bash", script, "down"], env=fleet_env)
        for d in ("work", "repo.git", "trivial"):
            shutil.rmtree(os.path.join(BASE, d), ignore_errors=True)


def stop_loops(loops):
    """SIGTERM to each loop (it ends its run in progress), SIGKILL after 30 s."""
    for proc in loops.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in loops.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_loop(host, argv):
    d = os.path.join(LAB, host[len(PREFIX):])
    with open(os.path.join(d, "sshd.pid")) as f:
        sshd = f.read().strip()
    home = os.path.join(d, "home")
    os.makedirs(home, exist_ok=True)
    env = {"PATH": "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" % VENV_BIN,
           "HOME": home, "LANG": "C.UTF-8", "ANSIBLE_NOCOLOR": "1"}
    loop = [os.path.join(VENV_BIN, "python"), os.path.join(ROOT, "tests", "ops", "pull_loop.py"),
            "--host", host, "--interval", str(INTERVAL), "--checkout", argv[argv.index("--directory") + 1],
            "--log", os.path.join(d, "pull-runs.jsonl"), "--out", os.path.join(d, "pull.log"), "--"] + argv
    # The host's own mount (bpffs) and network namespaces, as its sshd has them.
    return subprocess.Popen(["nsenter", "-t", sshd, "-m", "-n", "--"] + loop, env=env, cwd="/",
                            stdin=subprocess.DEVNULL, start_new_session=True)


def runs(host):
    path = os.path.join(LAB, host[len(PREFIX):], "pull-runs.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def tail(host, n=3000):
    path = os.path.join(LAB, host[len(PREFIX):], "pull.log")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()[-n:]


def wait_for(pred, timeout, what, loops):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = pred()
        if done:
            return done
        for host, proc in loops.items():
            assert proc.poll() is None, "%s: pull loop exited (%s)\n%s" % (host, proc.returncode, tail(host))
        time.sleep(2)
    pytest.fail("%s: not within %d s; runs so far: %s" % (
        what, timeout, json.dumps({h: [(r["run"], r["rc"], r["wall"]) for r in runs(h)] for h in HOSTS})))


def tables():
    """{host: {service: (ring_addr_digest, backends with weights)}}, read over SSH with xdp_lb_info."""
    inv = os.path.join(BASE, "ssh-inventory.yml")
    lines = ["all:", "  vars:", "    ansible_user: root",
             "    ansible_ssh_private_key_file: %s/id_ed25519" % LAB,
             "    ansible_ssh_common_args: -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
             " -o IdentitiesOnly=yes -o LogLevel=ERROR -o KexAlgorithms=curve25519-sha256",
             "    ansible_python_interpreter: /usr/bin/python3", "  hosts:"]
    for n, host in enumerate(HOSTS, 1):
        lines.append("    %s: {ansible_host: %s.%d, st: %s/%s/state}" % (host, MGMT, n, LAB, host[len(PREFIX):]))
    with open(inv, "w") as f:
        f.write("\n".join(lines) + "\n")
    # Each host's xdp_lb_info result as a JSON file on this side.
    out_dir = os.path.join(BASE, "tables")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    play = os.path.join(BASE, "read-tables.yml")
    with open(play, "w") as f:
        f.write("- hosts: all\n  gather_facts: false\n  tasks:\n"
                "    - netfleet.xdp_lb.xdp_lb_info: {state_dir: '{{ st }}'}\n      register: info\n"
                "    - ansible.builtin.copy: {content: '{{ info | to_json }}', dest: '%s/{{ inventory_hostname }}.json',"
                " mode: '0644'}\n      delegate_to: localhost\n" % out_dir)
    env = dict(os.environ, ANSIBLE_FORKS=str(SIZE), ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_NOCOLOR="1")
    out = sh([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inv, play], env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:]
    data = {}
    for path in glob.glob(os.path.join(out_dir, "*.json")):
        with open(path) as f:
            data[os.path.basename(path)[:-5]] = json.load(f)
    shutil.rmtree(out_dir, ignore_errors=True)
    result = {}
    for host, res in data.items():
        inst = res["instances"]
        assert len(inst) == 1 and "error" not in inst[0], "%s: %s" % (host, json.dumps(res)[:2000])
        assert [i["ours"] for i in inst[0]["interfaces"].values()] == [True, True], host
        result[host] = dict((s["service"], (s["ring_addr_digest"],
                                            sorted("%s %s" % (b["address"], b["weight"]) for b in s["backends"])))
                            for s in inst[0]["services"])
    assert sorted(result) == HOSTS, sorted(result)
    return result


def same_everywhere(tabs):
    first = tabs[HOSTS[0]]
    assert len(first) == 3 and all(table[0] for table in first.values()), first
    for host in HOSTS:
        assert tabs[host] == first, "%s differs from %s:\n%s\n%s" % (host, HOSTS[0], tabs[host], first)
    return first


def trivial_pull(base):
    """(wall, CPU seconds) of one ansible-pull of a one-task playbook."""
    work, bare = os.path.join(base, "work"), os.path.join(base, "repo.git")
    if not os.path.isdir(bare):
        write_files(work, {"site.yml": "- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - ansible.builtin.debug: {msg: pulled}\n",
                           "hosts.yml": "all:\n  hosts:\n    me: {}\n"})
        git(work, "init", "-q", "-b", "main")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "one task")
        ok(sh(["git", "clone", "-q", "--bare", work, bare]))
    env = {"PATH": "%s:/usr/sbin:/usr/bin:/sbin:/bin" % VENV_BIN, "HOME": base, "LANG": "C.UTF-8"}
    start = time.time()
    proc = subprocess.Popen([os.path.join(VENV_BIN, "ansible-pull"), "--url", "file://" + bare,
                             "--directory", os.path.join(base, "checkout"), "--inventory", "hosts.yml",
                             "--limit", "me", "--clean", "site.yml"], stdout=subprocess.DEVNULL, env=env, cwd="/")
    status, usage = os.wait4(proc.pid, 0)[1:]
    assert os.waitstatus_to_exitcode(status) == 0
    return time.time() - start, usage.ru_utime + usage.ru_stime


def summary(values):
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "per_host": [round(v, 2) for v in values]}


def test_pull_fleet_converges_and_follows_commits(lab):
    work = os.path.join(BASE, "work")
    bare = os.path.join(BASE, "repo.git")
    url = "file://" + bare
    os.makedirs(work)
    env = clean_env(HOME=os.path.join(BASE, "home"), PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
    os.makedirs(env["HOME"], exist_ok=True)

    # The repository as a user makes it: inventory, playbook, vendored collection.
    write_files(work, inventory_files(url, {}))
    ok(sh([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", BASE],
          cwd=ROOT, env=dict(env, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))))
    tarball = glob.glob(os.path.join(BASE, "netfleet-xdp_lb-*.tar.gz"))
    assert len(tarball) == 1, tarball
    ok(sh([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-p", "collections", tarball[0]],
          cwd=work, env=env))
    os.unlink(tarball[0])
    assert os.path.isfile(os.path.join(work, "collections", "ansible_collections", "netfleet", "xdp_lb",
                                       "MANIFEST.json"))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Balancers, backends, the collection")
    ok(sh(["git", "clone", "-q", "--bare", work, bare]))
    git(work, "remote", "add", "origin", bare)
    first_commit = git(work, "rev-parse", "HEAD").strip()

    # 1. One loop per host; first run and the no-change run.
    argv = dict((h, pull_argv(url, h)) for h in HOSTS)
    t0 = time.time()
    for host in HOSTS:
        lab["loops"][host] = start_loop(host, argv[host])
    wait_for(lambda: all(len(runs(h)) >= 2 for h in HOSTS), 1500, "two runs on every host", lab["loops"])
    for host in HOSTS:
        r1, r2 = runs(host)[:2]
        assert r1["rc"] == 0 and r1["recap"] and r1["recap"]["failed"] == 0, "%s run 1: %s\n%s" % (host, r1, tail(host))
        assert r1["recap"]["changed"] > 0 and r1["commit"] == first_commit, (host, r1)
        assert r2["rc"] == 0 and r2["recap"] == dict(r2["recap"], changed=0, failed=0), \
            "%s run 2 (no change) changed something: %s\n%s" % (host, r2, tail(host))
        assert r2["commit"] == first_commit, (host, r2)

    # 2. The units each host installed run what the loop runs, and verify.
    for host in HOSTS:
        units = os.path.join(LAB, host[len(PREFIX):], "etc", "systemd")
        service = os.path.join(units, "netfleet-xdp-lb-pull.service")
        timer = os.path.join(units, "netfleet-xdp-lb-pull.timer")
        with open(service) as f:
            exec_start = [line[len("ExecStart="):] for line in f.read().splitlines() if line.startswith("ExecStart=")]
        assert [shlex.split(e) for e in exec_start] == [argv[host]], exec_start
        with open(timer) as f:
            assert "OnUnitActiveSec=%ds" % int(INTERVAL) in f.read().splitlines()
        assert os.path.islink(os.path.join(units, "timers.target.wants", "netfleet-xdp-lb-pull.timer"))
        ok(sh(["systemd-analyze", "verify", service, timer]))

    # 3. Equal tables on all twelve.
    before = same_everywhere(tables())

    # 4. A backend's weight changes in the repository.
    write_files(work, inventory_files(url, {"be2": 300}))
    git(work, "commit", "-q", "-am", "be2 weight 300")
    new_commit = git(work, "rev-parse", "HEAD").strip()
    git(work, "push", "-q", "origin", "main")
    t_commit = time.time()      # the commit can be fetched from here on

    def applied():
        """Per host, the run that brought the new commit (a run that started
        just before the push may fetch after it: that one applied it)."""
        out = {}
        for h in HOSTS:
            new = [r for r in runs(h) if r["commit"] == new_commit]
            if not new:
                return None
            out[h] = new[0]
        return out

    reached = wait_for(applied, INTERVAL + 900, "the new commit on every host", lab["loops"])
    for host, r in reached.items():
        assert r["rc"] == 0 and r["recap"]["failed"] == 0, "%s: %s\n%s" % (host, r, tail(host))
        assert r["recap"]["changed"] > 0, (host, r)
        # It started within one interval of the commit (the timer's promise).
        assert r["start"] - t_commit <= INTERVAL + 2, (host, r["start"] - t_commit)
        # Every run that started after the commit ran it.
        assert all(x["commit"] == new_commit for x in runs(host) if x["start"] > t_commit), (host, runs(host))
    after = same_everywhere(tables())
    changed = [svc for svc in after if after[svc][0] != before[svc][0]]
    assert changed, "no table changed: %s" % after
    for svc, table in after.items():
        backends = table[1]
        assert "198.18.1.12 300" in backends or "fd00:18:1::12 300" in backends, (svc, backends)

    # ansible-pull's own floor: the same command on a repository whose
    # playbook is one debug task (what a run costs before the role does
    # anything), once the fleet's loops are stopped.
    stop_loops(lab["loops"])
    floor = [trivial_pull(os.path.join(BASE, "trivial")) for attempt in range(3)]

    # Figures for docs/pull.md and docs/scaling.md.
    first = [runs(h)[0] for h in HOSTS]
    nochange = [runs(h)[1] for h in HOSTS]
    change = [reached[h] for h in HOSTS]
    results = {
        "what": "ansible-pull of a file:// inventory repository (collection vendored), site.yml limited to "
                "the host itself, %d hosts (network namespaces) pulling at once on %d shared CPUs" % (
                    SIZE, os.cpu_count()),
        "command": "flock /tmp/xdplb-fleet-pull.lock .venv/bin/python -m pytest -q -s tests/ops/test_pull.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hosts": SIZE, "interval_s": INTERVAL, "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "first_run": {"wall_s": summary([r["wall"] for r in first]), "cpu_s": summary([r["cpu"] for r in first])},
        "no_change_run": {"wall_s": summary([r["wall"] for r in nochange]),
                          "cpu_s": summary([r["cpu"] for r in nochange])},
        "change_run": {"wall_s": summary([r["wall"] for r in change]), "cpu_s": summary([r["cpu"] for r in change]),
                       "changed_tasks": summary([r["recap"]["changed"] for r in change])},
        "change_reach_s": {
            "note": "from the push of the commit to the start and the end of the host's run that "
                    "applied it (a run that started just before the push and fetched after it counts)",
            "start_after_commit": summary([r["start"] - t_commit for r in change]),
            "applied_after_commit": summary([r["end"] - t_commit for r in change])},
        "first_converge_all_hosts_s": round(max(r["end"] for r in first) - t0, 1),
        "trivial_pull": {"note": "ansible-pull of a repository whose playbook is one debug task, "
                                 "one host, the fleet's loops stopped",
                         "wall_s": summary([f[0] for f in floor]), "cpu_s": summary([f[1] for f in floor])},
    }
    os.makedirs(BASE, exist_ok=True)
    with open(os.path.join(BASE, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    print(json.dumps(results, indent=2, sort_keys=True))
