"""The xdp_lb role's own controller cost, without hosts: its argument check and its option rendering.

    .venv/bin/python benchmarks/fleet/role_cost.py [--hosts 50] [--rounds 3] [ROLE_DIR ...]

For every ROLE_DIR (default: roles/xdp_lb of this checkout; give another
checkout's, e.g. one made with `git archive main roles | tar -x -C DIR`, to
compare) a copy of the role is made in which the module task calls a no-op
action plugin (`args_only`: it returns what it was given and contacts
nothing).  Everything else is the role's own: meta/argument_specs.yml (so
ansible-core prepends its validate_argument_spec task), defaults/main.yml,
tasks/main.yml with all its templates.  `ansible-playbook` runs it on
--hosts inventory hosts with the local connection and the variables of
benchmarks/fleet/run.py's inventory, and the CPU of the whole process tree
(main process and workers) is measured; so is a play of one no-op task per
host (the floor any task costs) and the same role with the argument check
skipped (`--skip-tags always`).  Rounds alternate the variants.  What this
leaves out and the fleet benchmark (run.py) has: SSH, the module's transfer
and result, the hosts.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, ".venv", "bin")

ACTION = '''from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        result.update(changed=False, args_seen=len(self._task.args))
        return result
'''

NOOP_ROLE_TASKS = '''- name: A task that does nothing
  args_only: {}
'''

SERVICES = [
    {"vip": "198.18.100.1", "port": 80, "protocol": "tcp", "scheduler": "maglev",
     "backends": [{"address": "198.18.1.11"}, {"address": "198.18.1.12"}, {"address": "198.18.1.13"}]},
    {"vip": "198.18.100.1", "port": 53, "protocol": "udp", "scheduler": "five_tuple",
     "backends": [{"address": "198.18.1.11"}, {"address": "198.18.1.12"}, {"address": "198.18.1.13"}]},
    {"vip": "fd00:18:100::1", "port": 80, "protocol": "tcp", "scheduler": "maglev",
     "backends": [{"address": "fd00:18:1::11"}, {"address": "fd00:18:1::12"}, {"address": "fd00:18:1::13"}]},
    {"vip": "fd00:18:100::1", "port": 53, "protocol": "udp", "scheduler": "ip_hash",
     "backends": [{"address": "fd00:18:1::11"}, {"address": "fd00:18:1::12"}, {"address": "fd00:18:1::13"}]},
]


def make(work, label, role_dir):
    """work/label/: roles/xdp_lb (module task -> args_only), action_plugins, inventory, playbook."""
    base = os.path.join(work, label)
    role = os.path.join(base, "roles", "xdp_lb")
    shutil.copytree(role_dir, role)
    tasks = os.path.join(role, "tasks", "main.yml")
    with open(tasks) as f:
        text = f.read()
    if "netfleet.xdp_lb.xdp_lb:" not in text:
        sys.exit("%s: no netfleet.xdp_lb.xdp_lb task" % tasks)
    with open(tasks, "w") as f:
        f.write(text.replace("netfleet.xdp_lb.xdp_lb:", "args_only:"))
    os.makedirs(os.path.join(base, "action_plugins"))
    with open(os.path.join(base, "action_plugins", "args_only.py"), "w") as f:
        f.write(ACTION)
    noop = os.path.join(base, "roles", "noop", "tasks")
    os.makedirs(noop)
    with open(os.path.join(noop, "main.yml"), "w") as f:
        f.write(NOOP_ROLE_TASKS)
    for name in ("xdp_lb", "noop"):
        with open(os.path.join(base, name + ".yml"), "w") as f:
            f.write("- hosts: all\n  gather_facts: false\n  roles: [%s]\n" % name)
    return base


def inventory(path, n):
    hosts = {}
    for i in range(1, n + 1):
        d = "/nonexistent/lb%02d" % i
        hosts["lb%02d" % i] = {
            "xdp_lb_state_dir": d + "/state", "xdp_lb_sysctl_file": d + "/etc/60-netfleet-xdp-lb-default.conf",
            "xdp_lb_systemd_dir": d + "/etc/systemd", "xdp_lb_engine_dir": d + "/engine",
            "xdp_lb_bin_dir": d + "/bin", "xdp_lb_build_dir": d + "/cache"}
    inv = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                   "children": {"xdp_lb_balancers": {"hosts": hosts, "vars": {
                       "xdp_lb_mode": "nat", "xdp_lb_interfaces": ["front0", "back0"],
                       "xdp_lb_attach_mode": "native", "xdp_lb_services": SERVICES,
                       "xdp_lb_install_packages": True, "xdp_lb_update_package_cache": False}}}}}
    with open(path, "w") as f:
        json.dump(inv, f)


def run(base, book, inv, extra=()):
    env = dict(os.environ, ANSIBLE_FORKS="50", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_ROLES_PATH=os.path.join(base, "roles"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"))
    env.pop("ANSIBLE_CONFIG", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([os.path.join(VENV, "ansible-playbook"), "-i", inv, os.path.join(base, book)] + list(extra),
                       cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit("%s %s failed:\n%s" % (base, book, r.stdout[-4000:]))
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("roles", nargs="*", default=[os.path.join(ROOT, "roles", "xdp_lb")])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="role-cost-")
    try:
        inv = os.path.join(work, "inventory.json")
        inventory(inv, args.hosts)
        bases = [(os.path.abspath(r), make(work, "r%d" % i, r)) for i, r in enumerate(args.roles)]
        variants = [("noop", bases[0][1], "noop.yml", ())]
        for role, base in bases:
            variants.append(("role " + role, base, "xdp_lb.yml", ()))
            variants.append(("role without the check " + role, base, "xdp_lb.yml", ("--skip-tags", "always")))
        cpu = dict((v[0], []) for v in variants)
        for rnd in range(args.rounds):
            for label, base, book, extra in (variants if rnd % 2 == 0 else list(reversed(variants))):
                cpu[label].append(run(base, book, inv, extra))
        out = {"hosts": args.hosts, "rounds": args.rounds, "cpu_s": cpu}
        print("%d hosts, %d rounds, CPU s of ansible-playbook and its workers (median, per host, runs)"
              % (args.hosts, args.rounds))
        for label, vals in cpu.items():
            print("  %-70s %6.2f %7.4f  %s" % (label[-70:], statistics.median(vals),
                                               statistics.median(vals) / args.hosts,
                                               " ".join("%.2f" % v for v in vals)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
