"""Deploy time of site.yml on 1, 4 and 12 SSH hosts, next to `ansible -m ping` on the same hosts.

    make bench-fleet            # = .venv/bin/python benchmarks/fleet/run.py --hosts 1,4,12

Runs as root.  For each host count N: scripts/lab/fleet.sh builds N
balancer hosts (prefix xlbb-, management net 198.19.50.0/24, each its own
network and mount namespace behind its own sshd), then, timed:

  ping      `ansible all -m ping` (median of 3)
  first     `ansible-playbook site.yml` on fresh hosts (nat, 4 services,
            packages checked, restore unit installed, each host compiling
            into its own build dir: what a new host costs)
  rerun     the same again: must report changed=0 on every host

each of them --rounds times (default 3) on a fleet built anew; the
summary gives the medians of the times and of the per-round ratios to
ping.  With every phase the controller's CPU time (user + system of
ansible and its ssh processes) is recorded: in this lab the hosts' module
runs share the controller's CPUs.

with plain SSH (ControlPersist, pipelining, from ansible.cfg) and, if
importable, with Mitogen (strategy mitogen_linear; the fleet is rebuilt so
its first deploy is a first deploy too).  benchmarks/fleet/callback_plugins/
task_timer.py records the wall time of every task; the slowest tasks of
each run land in the results.  Traffic: SSH to the namespaces only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "build", "bench-fleet")
LAB = os.path.join(OUT, "lab")
P, MGMT = "xlbb-", "198.19.50"
VENV = os.path.join(ROOT, ".venv", "bin")

INVENTORY = """# written by benchmarks/fleet/run.py
all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: {lab}/id_ed25519
    ansible_python_interpreter: /usr/bin/python3
    ansible_become: false
    # Lab hosts only (new host keys every run): no host key checking, for
    # ssh and for Mitogen (which reads ansible_host_key_checking).
    ansible_host_key_checking: false
    ansible_ssh_common_args: -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR
  children:
    xdp_lb_balancers:
      hosts:
{hosts}
      vars:
        xdp_lb_mode: nat
        xdp_lb_interfaces: [front0, back0]
        xdp_lb_attach_mode: native
        xdp_lb_services:
          - {{vip: 198.18.100.1, port: 80, protocol: tcp, scheduler: maglev,
             backends: [{{address: 198.18.1.11}}, {{address: 198.18.1.12}}, {{address: 198.18.1.13}}]}}
          - {{vip: 198.18.100.1, port: 53, protocol: udp, scheduler: five_tuple,
             backends: [{{address: 198.18.1.11}}, {{address: 198.18.1.12}}, {{address: 198.18.1.13}}]}}
          - {{vip: "fd00:18:100::1", port: 80, protocol: tcp, scheduler: maglev,
             backends: [{{address: "fd00:18:1::11"}}, {{address: "fd00:18:1::12"}}, {{address: "fd00:18:1::13"}}]}}
          - {{vip: "fd00:18:100::1", port: 53, protocol: udp, scheduler: ip_hash,
             backends: [{{address: "fd00:18:1::11"}}, {{address: "fd00:18:1::12"}}, {{address: "fd00:18:1::13"}}]}}
        # Packages: checked (they are installed on this machine); no mirror to refresh from.
        xdp_lb_install_packages: true
        xdp_lb_update_package_cache: false
"""


def sh(argv, env=None, check=True):
    return subprocess.run(argv, env=env, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)


def fleet(cmd, n):
    env = dict(os.environ, FLEET_PREFIX=P, FLEET_DIR=LAB, FLEET_MGMT_NET=MGMT, FLEET_SIZE=str(n),
               FLEET_BACKENDS="3")
    return sh(["bash", os.path.join(ROOT, "scripts", "lab", "fleet.sh"), cmd], env=env, check=(cmd == "up"))


# One file system for all hosts: each host's paths inside the fleet dir, as
# literal host variables (as a real inventory's would be: an expression
# here is rendered again at every reference, in every task's worker, and
# would count as the role's controller time).
HOST = ("        {p}lb{i:02d}: {{ansible_host: {mgmt}.{i}, xdp_lb_state_dir: {d}/state, "
        "xdp_lb_sysctl_file: {d}/etc/60-netfleet-xdp-lb-default.conf, xdp_lb_systemd_dir: {d}/etc/systemd, "
        "xdp_lb_engine_dir: {d}/engine, xdp_lb_bin_dir: {d}/bin, xdp_lb_build_dir: {d}/cache}}")


def write_inventory(n):
    hosts = "\n".join(HOST.format(p=P, i=i, mgmt=MGMT, d="%s/lb%02d" % (LAB, i)) for i in range(1, n + 1))
    path = os.path.join(OUT, "inventory-%d.yml" % n)
    with open(path, "w") as f:
        f.write(INVENTORY.format(lab=LAB, hosts=hosts))
    return path


def mitogen_strategy_dir():
    try:
        import ansible_mitogen
    except ImportError:
        return None
    return os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")


def ansible_env(transport, timer_out=None):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=VENV + ":" + os.environ.get("PATH", ""), ANSIBLE_FORKS="12",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_timer")
    if timer_out:
        env["TASK_TIMER_OUT"] = timer_out
    if transport == "mitogen":
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_dir()
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    return env


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(argv, env):
    """(wall s, result, controller CPU s: user + system of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = sh(argv, env=env, check=False)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def recap(output):
    """{host: {ok, changed, failed, unreachable}} from the PLAY RECAP."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M):
        out[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                           "failed": int(m.group(5))}
    return out


def slowest(timer_file, top=8):
    try:
        with open(timer_file) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    tasks = sorted(data["tasks"], key=lambda t: -t["wall"])[:top]
    return [{"name": t["name"], "wall": round(t["wall"], 2)} for t in tasks]


def bench(n, transport, args):
    inv = write_inventory(n)
    row = {"hosts": n, "transport": transport}
    fleet("up", n)
    try:
        pings, cpus = [], []
        for dummy in range(3):
            dt, r, cpu = timed([os.path.join(VENV, "ansible"), "-i", inv, "all", "-m", "ansible.builtin.ping"],
                               ansible_env(transport))
            if r.returncode != 0:
                raise RuntimeError("ping failed:\n" + r.stdout[-3000:])
            pings.append(dt)
            cpus.append(cpu)
        row["ping"] = statistics.median(pings)
        row["ping_all"] = [round(x, 2) for x in pings]
        row["ping_cpu"] = round(statistics.median(cpus), 2)
        for phase in ("first", "rerun"):
            tfile = os.path.join(OUT, "tasks-%d-%s-%s.json" % (n, transport, phase))
            load = loadavg()
            dt, r, cpu = timed([os.path.join(VENV, "ansible-playbook"), "-i", inv, os.path.join(ROOT, "site.yml")],
                               ansible_env(transport, tfile))
            rc = recap(r.stdout)
            if r.returncode != 0 or len(rc) != n:
                with open(os.path.join(OUT, "failed-%d-%s-%s.log" % (n, transport, phase)), "w") as f:
                    f.write(r.stdout)
                raise RuntimeError("%s on %d hosts (%s) failed: rc %d, see %s" % (phase, n, transport, r.returncode, OUT))
            row[phase] = dt
            row[phase + "_cpu"] = round(cpu, 2)
            row[phase + "_load_before"] = load
            row[phase + "_changed"] = sorted(set(h["changed"] for h in rc.values()))
            row[phase + "_tasks_ok"] = sorted(set(h["ok"] for h in rc.values()))
            row[phase + "_slowest"] = slowest(tfile)
            print("%2d hosts %-8s %-5s %6.1f s  (ping %.1f s: %.1fx)  controller CPU %.1f s  changed %s  "
                  "load before %s" % (n, transport, phase, dt, row["ping"], dt / row["ping"], cpu,
                                      row[phase + "_changed"], load), flush=True)
        row["rerun_idempotent"] = row["rerun_changed"] == [0]
        row["load_end"] = loadavg()
    finally:
        fleet("down", n)
    return row


def summary(rows):
    """Per host count and transport: medians of the times, of the ratios to
    ping (each round's own) and of the controller CPU, with the ratios'
    range."""
    out = []
    keys = sorted(set((r["hosts"], r["transport"]) for r in rows if "error" not in r))
    for n, transport in keys:
        sel = [r for r in rows if "error" not in r and (r["hosts"], r["transport"]) == (n, transport)]
        item = {"hosts": n, "transport": transport, "rounds": len(sel),
                "rerun_idempotent": all(r["rerun_idempotent"] for r in sel)}
        for key in ("ping", "first", "rerun", "ping_cpu", "first_cpu", "rerun_cpu"):
            item[key] = round(statistics.median(r[key] for r in sel), 2)
        for key in ("first", "rerun"):
            ratios = [r[key] / r["ping"] for r in sel]
            item[key + "_x"] = round(statistics.median(ratios), 2)
            item[key + "_x_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
        out.append(item)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--hosts", default="1,4,12")
    ap.add_argument("--transports", default="ssh,mitogen")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each host count and transport")
    ap.add_argument("--json", default=os.path.join(OUT, "results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    os.makedirs(OUT, exist_ok=True)
    transports = args.transports.split(",")
    notes = []
    if "mitogen" in transports and mitogen_strategy_dir() is None:
        transports.remove("mitogen")
        notes.append("mitogen not importable in the venv: skipped")
    rows = []
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1])
    ver = sh([os.path.join(VENV, "ansible"), "--version"]).stdout.splitlines()[0]
    doc = {"machine": {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(),
                       "mem_gib": round(mem / 1048576, 1), "kernel": platform.release(), "ansible": ver},
           "rows": rows, "notes": notes}
    # host counts outermost: both transports see about the same background load
    for n in [int(x) for x in args.hosts.split(",")]:
        for transport in transports:
            for rnd in range(1, args.rounds + 1):
                try:
                    row = bench(n, transport, args)
                except RuntimeError as exc:
                    print("FAILED: %s" % exc, flush=True)
                    row = {"hosts": n, "transport": transport, "error": str(exc)}
                row["round"] = rnd
                rows.append(row)
                doc["summary"] = summary(rows)
                doc["loadavg_end"] = loadavg()
                with open(args.json, "w") as f:    # after every row: a partial run keeps its results
                    json.dump(doc, f, indent=1)
    print("\nhosts transport rounds  ping s  first s (x ping)  rerun s (x ping)  controller CPU s "
          "ping/first/rerun  all reruns changed=0   (medians)")
    for r in doc["summary"]:
        print("%5d %-9s %6d %7.1f  %7.1f (%4.1f)    %7.1f (%4.1f)    %4.1f/%4.1f/%4.1f    %s" % (
            r["hosts"], r["transport"], r["rounds"], r["ping"], r["first"], r["first_x"], r["rerun"],
            r["rerun_x"], r["ping_cpu"], r["first_cpu"], r["rerun_cpu"], r["rerun_idempotent"]))
    for note in notes:
        print(note)
    print("results: %s" % args.json)


if __name__ == "__main__":
    main()
