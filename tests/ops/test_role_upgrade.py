# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host deployed by the previous role upgrades in place (issue 14).

The previous role (commit 4036ef5: a Jinja-rendered ``host_setup``
manifest) deploys a nat balancer with restore unit, metrics and health
checks; then this checkout's role runs on the same host with the same
inventory, then once more.  Checked:

- the balancer is not touched (no engine change, same program and maps);
- only what really differs is written: the units (sandboxing, the entry
  point instead of PYTHONPATH; the timer's and the sysctl file's header
  names the module now), the entry point,
  the engine files that differ between the two commits (exactly those:
  ``git diff --name-only`` of plugins/module_utils) and the metrics file
  the previous role never wrote; the health checker's settings, links,
  directories, live sysctls and unchanged engine files are not;
- what the previous role left that this one no longer writes goes: its
  saved sysctl values move from <state_dir>/role/ to <state_dir>/sysctl/
  (the values from before the first change stay the saved ones) and the
  role's directory is removed;
- the second run changes nothing.

The "host" is ansible-playbook (local connection) in a private mount
namespace with its own bpffs and an anonymous network namespace with a
veth pair, every path of the role in a temporary directory: nothing of the
machine is touched and everything goes with the namespaces.  systemd is not
PID 1 here: the result lists what would have run.  Run as root, under
``flock /tmp/xdplb-lab.lock``.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OLD = "4036ef5"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, XDP)")

PLAYBOOK = """- hosts: localhost
  gather_facts: false
  roles:
    - role: netfleet.xdp_lb.xdp_lb
"""

# The host: bpffs, a veth pair with the balancer's side addressed towards
# its backend, then the role three times (previous, this one, this one).
SCRIPT = r"""set -eu
# /sys of this network namespace (as ip netns exec does), then its bpffs.
mount -t sysfs sysfs /sys
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
ip link add xlbu0 type veth peer name xlbu1
ip addr add 198.18.1.1/24 dev xlbu0
ip link set xlbu0 up
ip link set xlbu1 up
run() {  # collections path, output file
  ANSIBLE_COLLECTIONS_PATH="$1" ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_CALLBACK_RESULT_FORMAT=json \
  ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_NOCOLOR=1 \
  ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_CONFIG="$DIR/ansible.cfg" \
    "$PLAYBOOK_BIN" -v -i localhost, -c local -e @"$DIR/vars.json" "$DIR/site.yml" > "$2" 2>&1 || true
}
run "$DIR/old" "$DIR/old.log"
cp -a "$DIR/state/role" "$DIR/role-before" || cat "$DIR/old.log"
run "$ROOT/.collections" "$DIR/new1.log"
run "$ROOT/.collections" "$DIR/new2.log"
"""


def module_result(path):
    """(the role's module result, the host's PLAY RECAP counts) of a -v run."""
    with open(path) as handle:
        out = handle.read()
    sections = out.split("TASK [netfleet.xdp_lb.xdp_lb : Configure the load balancer]")
    assert len(sections) >= 2, out[-3000:]
    section = sections[-1].split("TASK [")[0].split("PLAY RECAP")[0]
    result = json.JSONDecoder().raw_decode(section.split(" => ", 1)[1])[0]
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert recap, out[-3000:]
    return result, {"changed": int(recap.group(2)), "failures": int(recap.group(4))}


@pytest.fixture
def host():
    d = tempfile.mkdtemp(prefix="xlbu-", dir=os.path.join(ROOT, "build")
                         if os.path.isdir(os.path.join(ROOT, "build")) else None)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_previous_role_upgrades_in_place(host):
    old = os.path.join(host, "old", "ansible_collections", "netfleet", "xdp_lb")
    os.makedirs(old)
    archive = subprocess.run(["git", "-C", ROOT, "archive", OLD], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
    with open(os.path.join(host, "site.yml"), "w") as f:
        f.write(PLAYBOOK)
    with open(os.path.join(host, "ansible.cfg"), "w") as f:
        f.write("[defaults]\nretry_files_enabled = False\n")
    paths = dict(
        xdp_lb_state_dir=os.path.join(host, "state"), xdp_lb_build_dir=os.path.join(host, "build"),
        xdp_lb_systemd_dir=os.path.join(host, "systemd"), xdp_lb_engine_dir=os.path.join(host, "engine"),
        xdp_lb_bin_dir=os.path.join(host, "bin"), xdp_lb_metrics_dir=os.path.join(host, "metrics"),
        xdp_lb_sysctl_file=os.path.join(host, "sysctl.d", "60-netfleet-xdp-lb-default.conf"))
    variables = dict(paths, xdp_lb_interfaces=["xlbu0"], xdp_lb_mode="nat", xdp_lb_install_packages=False,
                     xdp_lb_metrics_enabled=True, xdp_lb_health_checks=True,
                     xdp_lb_services=[{"vip": "198.18.100.1", "port": 80,
                                       "backends": [{"address": "198.18.1.11"}, {"address": "198.18.1.12"}]}])
    with open(os.path.join(host, "vars.json"), "w") as f:
        json.dump(variables, f)
    env = dict(os.environ, DIR=host, ROOT=ROOT, PLAYBOOK_BIN=os.path.join(ROOT, ".venv", "bin", "ansible-playbook"))
    proc = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "bash", "-c", SCRIPT], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]

    before, stats = module_result(os.path.join(host, "old.log"))
    assert stats["failures"] == 0 and before["changed"], before
    first, stats = module_result(os.path.join(host, "new1.log"))
    assert stats["failures"] == 0, first

    # The balancer: untouched, unless the data plane itself changed since
    # OLD; then its one change is that upgrade (a new program, the maps of
    # the older layout migrated), and the second run below changes nothing.
    if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", OLD, "--", "files/"], check=False).returncode == 0:
        assert first["changes"] == [], first["changes"]
        assert first["program"]["id"] == before["program"]["id"] and first["maps"] == before["maps"]
    else:
        assert first["changes"][0].startswith("load program build"), first["changes"]
        assert first["program"]["id"] != before["program"]["id"]

    # What was written or removed, by what it is.
    fp = first["footprint"]
    engine = sorted(line.split(" ", 1)[1].rsplit(": ", 1)[0] for line in fp["changed"] if line.startswith("engine "))
    others = sorted(line for line in fp["changed"] if not line.startswith("engine "))
    sysd, state = paths["xdp_lb_systemd_dir"], paths["xdp_lb_state_dir"]
    assert others == sorted([
        "NAT guard unit %s/netfleet-xdp-lb-guard.service: written" % sysd,
        "directory of the earlier role %s/role: removed" % state,
        "health checker %s/netfleet-xdp-lb-health-default.service: written" % sysd,
        "host command xdp-lb %s/xdp-lb: written" % paths["xdp_lb_bin_dir"],
        "metrics file %s/netfleet-xdp-lb.prom: written" % paths["xdp_lb_metrics_dir"],
        "metrics service %s/netfleet-xdp-lb-metrics.service: written" % sysd,
        "metrics timer %s/netfleet-xdp-lb-metrics.timer: written" % sysd,
        "restore unit %s/netfleet-xdp-lb-restore.service: written" % sysd,
        "sysctl file %s: written" % paths["xdp_lb_sysctl_file"],
        "sysctl saved values %s/sysctl/default.json: written" % state,
        "sysctl saved values of the earlier role %s/role/default.sysctl.json: removed" % state,
        "sysctl saved values directory %s/sysctl: written" % state,
    ]), fp["changed"]
    # Exactly the engine files that differ between the two commits.
    diff = subprocess.run(["git", "-C", ROOT, "diff", "--name-only", OLD, "--", "plugins/module_utils"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.split()
    base = os.path.join(paths["xdp_lb_engine_dir"], "ansible_collections", "netfleet", "xdp_lb")
    assert engine == sorted(os.path.join(base, rel) for rel in diff
                            if os.path.exists(os.path.join(ROOT, rel))), engine
    # The saved values are those from before the first change.
    with open(os.path.join(host, "role-before", "default.sysctl.json")) as f:
        old_saved = json.load(f)
    with open(os.path.join(state, "sysctl", "default.json")) as f:
        assert json.load(f) == old_saved
    assert not os.path.exists(os.path.join(state, "role"))
    assert fp["systemctl"] == ["systemctl daemon-reload", "systemctl restart netfleet-xdp-lb-health-default.service",
                               "systemctl restart netfleet-xdp-lb-metrics.timer"]
    assert fp["systemctl_ran"] is False

    second, stats = module_result(os.path.join(host, "new2.log"))
    assert stats["failures"] == 0 and stats["changed"] == 0, second
    assert second["footprint"]["in_sync"] and second["footprint"]["drift"] == []
