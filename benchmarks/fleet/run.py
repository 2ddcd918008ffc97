"""Deploy cost of site.yml and playbooks/rolling.yml on 1 to 50 SSH hosts, next to `ansible -m ping`.

    make bench-fleet            # = .venv/bin/python benchmarks/fleet/run.py --hosts 1,4,12,25,50 --transports ssh

Runs as root.  For each host count N: scripts/lab/fleet.sh builds N
balancer hosts (prefix xlbb-, management net 198.19.50.0/24, each its own
network and mount namespace behind its own sshd, each with a client
namespace of its own: FLEET_CLIENTS=all), then, timed:

  ping      `ansible all -m ping` (median of 3)
  first     `ansible-playbook site.yml` on fresh hosts (nat, 4 services,
            packages checked, restore unit installed, each host compiling
            into its own build dir: what a new host costs)
  rerun     the same again: must report changed=0 on every host
  change    site.yml with one backend less in one service (what a
            backend change costs): must change every host
  rolling   playbooks/rolling.yml putting the backend back, in batches
            (--batches, serial's list form), each host gated with real
            traffic from its client namespace (HTTP and DNS through the VIP)

each of them --rounds times (default 3) on a fleet built anew; the
summary gives the medians of the times, of the per-round ratios to ping
and of the CPU times.  With every phase three CPU times are recorded:

  controller  user + system of every process the benchmark starts
              (ansible and its workers, the ssh clients and their
              ControlPersist masters, the gate), from a cpuacct cgroup
              of its own (<prefix>controller), so masters that outlive a
              command still count; the older measure (rusage of waited-for
              children: without the masters) is kept as *_cpu_rusage
  hosts       user + system of the balancers' sshd and all it runs (the
              module runs, the compiles): a cpuacct cgroup <prefix>hosts
              holding every balancer's sshd
  machine     busy CPU of the whole machine (/proc/stat), i.e. the two
              above plus whatever else ran: on a shared machine the rest
              is other people's work

with plain SSH (ControlPersist, pipelining, from ansible.cfg) and, if
importable and asked for, with Mitogen (strategy mitogen_linear; the fleet
is rebuilt so its first deploy is a first deploy too).
benchmarks/fleet/callback_plugins/task_timer.py records the wall time of
every task; the slowest tasks of each run land in the results.  Traffic:
SSH to the namespaces, and the gate's requests inside the lab.

`--settings N` instead measures controller settings on one fleet of N hosts
(first deploy once, then --rounds rounds of ping and reruns, one per
variant, interleaved): forks, strategy free, pipelining off, ControlPersist
off, fact gathering (`-m setup` next to `-m ping`, unless --no-setup),
Mitogen; and the role itself: `no_check` (the rerun without the role's
argument check, `--skip-tags always`), `module_only` (the module alone,
benchmarks/fleet/module_only.yml) and `before` (the rerun with another
checkout of the collection: FLEET_BENCH_BEFORE names a collections
directory, i.e. one holding ansible_collections/netfleet/xdp_lb, made e.g.
with `git archive main`).  With --profile DIR, after the rounds, one
rerun of `base` and of `before` each under
benchmarks/fleet/profile_controller.py (into DIR/<variant>, and
DIR/<variant>-cpu with --cpu-only).

Environment (so that parallel runs do not collide): FLEET_BENCH_PREFIX
(xlbb-), FLEET_BENCH_MGMT_NET (198.19.50), FLEET_BENCH_OUT
(build/bench-fleet), FLEET_BENCH_BEFORE (variant `before`).
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
OUT = os.environ.get("FLEET_BENCH_OUT") or os.path.join(ROOT, "build", "bench-fleet")
LAB = os.path.join(OUT, "lab")
P = os.environ.get("FLEET_BENCH_PREFIX") or "xlbb-"
MGMT = os.environ.get("FLEET_BENCH_MGMT_NET") or "198.19.50"
CGROUP = "/sys/fs/cgroup/cpuacct"
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
             backends: [{tcp4}]}}
          - {{vip: 198.18.100.1, port: 53, protocol: udp, scheduler: five_tuple,
             backends: [{{address: 198.18.1.11}}, {{address: 198.18.1.12}}, {{address: 198.18.1.13}}]}}
          - {{vip: "fd00:18:100::1", port: 80, protocol: tcp, scheduler: maglev,
             backends: [{{address: "fd00:18:1::11"}}, {{address: "fd00:18:1::12"}}, {{address: "fd00:18:1::13"}}]}}
          - {{vip: "fd00:18:100::1", port: 53, protocol: udp, scheduler: ip_hash,
             backends: [{{address: "fd00:18:1::11"}}, {{address: "fd00:18:1::12"}}, {{address: "fd00:18:1::13"}}]}}
        # Packages: checked (they are installed on this machine); no mirror to refresh from.
        xdp_lb_install_packages: true
        xdp_lb_update_package_cache: false
        # playbooks/rolling.yml: the gate runs here, in each balancer's client
        # namespace (xdp_lb_gate_netns, per host), through the VIP.
        xdp_lb_gate_host: localhost
        xdp_lb_gate_probes:
          - {{type: http, address: 198.18.100.1, port: 80}}
          - {{type: dns, address: 198.18.100.1, port: 53, name: whoami.lab, qtype: TXT}}
"""

# The TCP/IPv4 service's backends: all three, or (phase "change") one less.
TCP4 = {3: "{address: 198.18.1.11}, {address: 198.18.1.12}, {address: 198.18.1.13}",
        2: "{address: 198.18.1.11}, {address: 198.18.1.12}"}


def sh(argv, env=None, check=True):
    return subprocess.run(argv, env=env, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)


def fleet(cmd, n):
    env = dict(os.environ, FLEET_PREFIX=P, FLEET_DIR=LAB, FLEET_MGMT_NET=MGMT, FLEET_SIZE=str(n),
               FLEET_BACKENDS="3", FLEET_CLIENTS="all")
    return sh(["bash", os.path.join(ROOT, "scripts", "lab", "fleet.sh"), cmd], env=env, check=(cmd == "up"))


# One file system for all hosts: each host's paths inside the fleet dir, as
# literal host variables (as a real inventory's would be: an expression
# here is rendered again at every reference, in every task's worker, and
# would count as the role's controller time).
HOST = ("        {p}lb{i:02d}: {{ansible_host: {mgmt}.{i}, xdp_lb_state_dir: {d}/state, "
        "xdp_lb_sysctl_file: {d}/etc/60-netfleet-xdp-lb-default.conf, xdp_lb_systemd_dir: {d}/etc/systemd, "
        "xdp_lb_engine_dir: {d}/engine, xdp_lb_bin_dir: {d}/bin, xdp_lb_build_dir: {d}/cache, "
        "xdp_lb_gate_netns: {client}}}")


def write_inventory(n, tcp4=3):
    lines = []
    for i in range(1, n + 1):
        client = "%sclient" % P if i == 1 else "%scl%02d" % (P, i)
        lines.append(HOST.format(p=P, i=i, mgmt=MGMT, d="%s/lb%02d" % (LAB, i), client=client))
    hosts = "\n".join(lines)
    path = os.path.join(OUT, "inventory-%d-%d.yml" % (n, tcp4))
    with open(path, "w") as f:
        f.write(INVENTORY.format(lab=LAB, hosts=hosts, tcp4=TCP4[tcp4]))
    return path


def mitogen_strategy_dir():
    try:
        import ansible_mitogen
    except ImportError:
        return None
    return os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")


# Controller settings (--settings): environment on top of ansible.cfg's.
# "base" is ansible.cfg (pipelining, ControlPersist 120s, curve25519) with
# the forks of the run (--forks).
SSH_ARGS_NO_PERSIST = "-o ControlMaster=no -o KexAlgorithms=curve25519-sha256"
VARIANTS = {
    "base": {},
    "forks12": {"ANSIBLE_FORKS": "12"},
    "forks25": {"ANSIBLE_FORKS": "25"},
    "forks50": {"ANSIBLE_FORKS": "50"},
    "free": {"ANSIBLE_STRATEGY": "free"},
    "no_pipelining": {"ANSIBLE_PIPELINING": "False"},
    "no_controlpersist": {"ANSIBLE_SSH_ARGS": SSH_ARGS_NO_PERSIST},
    "mitogen": {"transport": "mitogen"},
    # not settings: the module alone (module_only.yml), the floor of the role's rerun; the
    # rerun without the role's argument check; the rerun with another checkout of the collection
    "module_only": {"phase": "module_only"},
    "no_check": {"args": ["--skip-tags", "always"]},
    "before": {"ANSIBLE_COLLECTIONS_PATH": os.environ.get("FLEET_BENCH_BEFORE") or ""},
}


def ansible_env(transport, timer_out=None, forks=12, extra=None):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=VENV + ":" + os.environ.get("PATH", ""), ANSIBLE_FORKS=str(forks),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_timer")
    if timer_out:
        env["TASK_TIMER_OUT"] = timer_out
    if transport == "mitogen":
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen_strategy_dir()
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    env.update(extra or {})
    return env


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- CPU accounting -----------------------------------------------------------
# cpuacct cgroups (v1, as on this machine): <P>controller holds this
# process (so everything it starts), <P>hosts every balancer's sshd.

def cg_path(name):
    return os.path.join(CGROUP, P + name)


def cg_make(name):
    path = cg_path(name)
    if not os.path.isdir(CGROUP):
        return None
    os.makedirs(path, exist_ok=True)
    return path


def cg_add(name, pid):
    path = cg_path(name)
    if os.path.isdir(path):
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def cg_usage(name):
    """CPU seconds (user + system) of the cgroup, or None without cgroups."""
    try:
        with open(os.path.join(cg_path(name), "cpuacct.usage")) as f:
            return int(f.read()) / 1e9
    except OSError:
        return None


def cg_remove(name):
    """Move what is left to the root cgroup and remove it."""
    path = cg_path(name)
    if not os.path.isdir(path):
        return
    for dummy in range(20):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = f.read().split()
        except OSError:
            return
        for pid in pids:
            try:
                with open(os.path.join(CGROUP, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.1)


def machine_busy():
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def timed(argv, env):
    """{wall, cpu (controller cgroup), cpu_rusage, hosts_cpu, machine_cpu} and the result."""
    c0, h0, m0 = cg_usage("controller"), cg_usage("hosts"), machine_busy()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = sh(argv, env=env, check=False)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1, h1, m1 = cg_usage("controller"), cg_usage("hosts"), machine_busy()
    rus = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"wall": wall, "cpu_rusage": rus, "cpu": rus if c0 is None else c1 - c0,
           "hosts_cpu": None if h0 is None else h1 - h0, "machine_cpu": m1 - m0}
    return out, r


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


def fleet_up(n):
    fleet("up", n)
    if cg_make("hosts"):
        for i in range(1, n + 1):
            with open(os.path.join(LAB, "lb%02d" % i, "sshd.pid")) as f:
                cg_add("hosts", int(f.read().strip()))


def fleet_down(n):
    fleet("down", n)
    cg_remove("hosts")


def ping(n, inv, env, times=3):
    """Median wall and CPU of `times` runs of `ansible all -m ping` (or another module)."""
    runs = []
    for dummy in range(times):
        m, r = timed([os.path.join(VENV, "ansible"), "-i", inv, "all", "-m", "ansible.builtin.ping"], env)
        if r.returncode != 0:
            raise RuntimeError("ping failed:\n" + r.stdout[-3000:])
        runs.append(m)
    return runs


def module_runs(n, inv, env, module, times):
    runs = []
    for dummy in range(times):
        m, r = timed([os.path.join(VENV, "ansible"), "-i", inv, "all", "-m", module], env)
        if r.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (module, r.stdout[-3000:]))
        runs.append(m)
    return runs


def median_of(runs, key):
    vals = [x[key] for x in runs if x[key] is not None]
    return round(statistics.median(vals), 2) if vals else None


def median_range(vals):
    """Median of ``vals`` and [min, max], rounded to 2 places."""
    return round(statistics.median(vals), 2), [round(min(vals), 2), round(max(vals), 2)]


# phase -> (playbook, inventory variant (TCP/IPv4 backends), extra args, what every host must report)
PHASES = {
    "first": ("site.yml", 3, [], "changed"),
    "rerun": ("site.yml", 3, [], "unchanged"),
    "change": ("site.yml", 2, [], "changed"),
    "rolling": (os.path.join("playbooks", "rolling.yml"), 3, None, "changed"),
    # --settings, variant module_only: the module without the role
    "module_only": (os.path.join("benchmarks", "fleet", "module_only.yml"), 3, [], "unchanged"),
}


def play(n, phase, transport, args, row, env_extra=None, label=None, extra_args=None):
    book, tcp4, extra, expect = PHASES[phase]
    inv = write_inventory(n, tcp4)
    if extra_args is not None:
        extra = extra_args
    elif extra is None:
        extra = ["-e", json.dumps({"xdp_lb_rolling_batches": json.loads(args.batches)})]
    name = label or phase
    variant = "-" + row["variant"] if "variant" in row else ""
    tfile = os.path.join(OUT, "tasks-%d-%s-%s%s.json" % (n, transport, name, variant))
    load = loadavg()
    m, r = timed([os.path.join(VENV, "ansible-playbook"), "-i", inv, os.path.join(ROOT, book)] + extra,
                 ansible_env(transport, tfile, args.forks, env_extra))
    rc = recap(r.stdout)
    changed = sorted(set(h["changed"] for h in rc.values()))
    bad = r.returncode != 0 or len(rc) != n or (expect == "unchanged" and changed != [0]) \
        or (expect == "changed" and 0 in changed)
    if bad:
        log = os.path.join(OUT, "failed-%d-%s-%s.log" % (n, transport, name))
        with open(log, "w") as f:
            f.write(r.stdout)
        raise RuntimeError("%s on %d hosts (%s) failed: rc %d, changed %s, see %s" % (
            name, n, transport, r.returncode, changed, log))
    row[name] = round(m["wall"], 2)
    row[name + "_cpu"] = round(m["cpu"], 2)
    row[name + "_cpu_rusage"] = round(m["cpu_rusage"], 2)
    row[name + "_hosts_cpu"] = None if m["hosts_cpu"] is None else round(m["hosts_cpu"], 2)
    row[name + "_machine_cpu"] = round(m["machine_cpu"], 2)
    row[name + "_load_before"] = load
    row[name + "_changed"] = changed
    row[name + "_tasks_ok"] = sorted(set(h["ok"] for h in rc.values()))
    row[name + "_slowest"] = slowest(tfile)
    print("%2d hosts %-8s %-17s %6.1f s (ping %.1f s: %.1fx)  CPU s controller %.1f (%.2fx ping) hosts %s "
          "machine %.1f  changed %s  load before %s" % (
              n, transport, name, m["wall"], row["ping"], m["wall"] / row["ping"], m["cpu"],
              m["cpu"] / row["ping_cpu"], row[name + "_hosts_cpu"], m["machine_cpu"], changed, load), flush=True)


def ping_row(n, transport, args, row, env_extra=None, times=3):
    inv = write_inventory(n)
    runs = ping(n, inv, ansible_env(transport, forks=args.forks, extra=env_extra), times)
    row["ping"] = median_of(runs, "wall")
    row["ping_all"] = [round(x["wall"], 2) for x in runs]
    for key in ("cpu", "cpu_rusage", "hosts_cpu", "machine_cpu"):
        row["ping_" + key] = median_of(runs, key)
    row["ping_load"] = loadavg()


def bench(n, transport, args):
    row = {"hosts": n, "transport": transport, "forks": args.forks, "batches": args.batches}
    fleet_up(n)
    try:
        ping_row(n, transport, args, row)
        for phase in args.phases.split(","):
            play(n, phase, transport, args, row)
        row["rerun_idempotent"] = row.get("rerun_changed") == [0]
        row["load_end"] = loadavg()
    finally:
        fleet_down(n)
    return row


def settings(n, args, doc):
    """One fleet of n hosts: first deploy, then rounds of ping, setup and a rerun per variant."""
    variants = args.variants.split(",")
    if "mitogen" in variants and mitogen_strategy_dir() is None:
        variants.remove("mitogen")
        doc["notes"].append("mitogen not importable in the venv: skipped")
    if "before" in variants and not VARIANTS["before"]["ANSIBLE_COLLECTIONS_PATH"]:
        variants.remove("before")
        doc["notes"].append("before: FLEET_BENCH_BEFORE not set: skipped")
    elif "before" in variants:
        doc["before_collections"] = VARIANTS["before"]["ANSIBLE_COLLECTIONS_PATH"]
    rows = doc["settings"] = []
    fleet_up(n)
    try:
        row = {"hosts": n}
        ping_row(n, "ssh", args, row)
        play(n, "first", "ssh", args, row)
        doc["settings_first"] = row
        inv = write_inventory(n)
        for rnd in range(1, args.rounds + 1):
            order = variants if rnd % 2 else list(reversed(variants))      # interleaved, both ways
            for variant in order:
                extra = dict(VARIANTS[variant])
                transport = extra.pop("transport", "ssh")
                phase = extra.pop("phase", "rerun")
                extra_args = extra.pop("args", None)
                row = {"hosts": n, "variant": variant, "round": rnd, "transport": transport,
                       "forks": int(extra.get("ANSIBLE_FORKS", args.forks))}
                try:
                    ping_row(n, transport, args, row, extra, times=1)
                    if not args.no_setup:
                        setup = module_runs(n, inv, ansible_env(transport, forks=args.forks, extra=extra),
                                            "ansible.builtin.setup", 1)
                        row["setup"] = round(setup[0]["wall"], 2)
                        row["setup_cpu"] = round(setup[0]["cpu"], 2)
                    play(n, phase, transport, args, row, extra, label="rerun", extra_args=extra_args)
                except RuntimeError as exc:
                    print("FAILED: %s" % exc, flush=True)
                    row["error"] = str(exc)
                rows.append(row)
                with open(args.json, "w") as f:
                    json.dump(doc, f, indent=1)
        if args.profile:
            doc["profile"] = profile_reruns(n, args, [v for v in ("base", "before") if v in variants])
    finally:
        fleet_down(n)
    out = []
    for variant in variants:
        sel = [r for r in rows if r["variant"] == variant and "error" not in r]
        if not sel:
            continue
        item = {"variant": variant, "hosts": n, "rounds": len(sel)}
        for key in ("ping", "ping_cpu", "setup", "setup_cpu", "rerun", "rerun_cpu", "rerun_hosts_cpu",
                    "rerun_machine_cpu"):
            vals = [r[key] for r in sel if r.get(key) is not None]
            if vals:
                item[key], item[key + "_range"] = median_range(vals)
        ratios = [r["rerun_cpu"] / r["ping_cpu"] for r in sel if r.get("rerun_cpu") and r.get("ping_cpu")]
        if ratios:      # controller CPU of the rerun over that of the ping just before it
            item["rerun_cpu_x"], item["rerun_cpu_x_range"] = median_range(ratios)
        out.append(item)
    doc["settings_summary"] = out
    return out


def profile_reruns(n, args, variants):
    """A rerun per variant under profile_controller.py: cProfile (shares) and --cpu-only (main process)."""
    inv = write_inventory(n)
    out = {}
    for variant in variants:
        env = ansible_env("ssh", forks=args.forks, extra=VARIANTS[variant])
        for mode in ("profile", "cpu"):
            where = os.path.join(args.profile, variant + ("-cpu" if mode == "cpu" else ""))
            argv = [os.path.join(VENV, "python"), os.path.join(HERE, "profile_controller.py"), where]
            argv += (["--cpu-only", "--"] if mode == "cpu" else ["--"]) + ["-i", inv, os.path.join(ROOT, "site.yml")]
            m, r = timed(argv, env)
            rc = recap(r.stdout)
            got = {"cpu": round(m["cpu"], 2), "wall": round(m["wall"], 2), "rc": r.returncode,
                   "changed": sorted(set(h["changed"] for h in rc.values()))}
            out["%s-%s" % (variant, mode)] = got
            print("profile %s %s: rc %d, controller CPU %.1f s, changed %s" % (
                variant, mode, r.returncode, m["cpu"], got["changed"]), flush=True)
    return out


PHASE_KEYS = ("first", "rerun", "change", "rolling")


def summary(rows):
    """Per host count and transport: medians of the times, of the ratios to
    ping (each round's own, wall and controller CPU), of the CPU times, with
    the ratios' range."""
    out = []
    keys = sorted(set((r["hosts"], r["transport"]) for r in rows if "error" not in r))
    for n, transport in keys:
        sel = [r for r in rows if "error" not in r and (r["hosts"], r["transport"]) == (n, transport)]
        item = {"hosts": n, "transport": transport, "rounds": len(sel),
                "rerun_idempotent": all(r.get("rerun_idempotent", True) for r in sel)}
        for key in ("ping",) + PHASE_KEYS:
            for suffix in ("", "_cpu", "_cpu_rusage", "_hosts_cpu", "_machine_cpu"):
                vals = [r[key + suffix] for r in sel if r.get(key + suffix) is not None]
                if vals:
                    item[key + suffix] = round(statistics.median(vals), 2)
            if key == "ping" or not all(key in r for r in sel):
                continue
            for suffix, base in (("_x", ""), ("_cpu_x", "_cpu")):
                item[key + suffix], item[key + suffix + "_range"] = median_range(
                    [r[key + base] / r["ping" + base] for r in sel])
            item[key + "_cpu_per_host"] = round(item[key + "_cpu"] / n, 3)
            if item.get(key + "_hosts_cpu") is not None:
                item[key + "_hosts_cpu_per_host"] = round(item[key + "_hosts_cpu"] / n, 3)
        item["ping_cpu_per_host"] = round(item["ping_cpu"] / n, 3)
        out.append(item)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--hosts", default="1,4,12,25,50")
    ap.add_argument("--transports", default="ssh")
    ap.add_argument("--phases", default="first,rerun,change,rolling")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each host count and transport")
    ap.add_argument("--forks", type=int, default=50, help="ANSIBLE_FORKS (ansible.cfg has 12)")
    ap.add_argument("--batches", default='[1, "25%"]', help="rolling.yml's xdp_lb_rolling_batches (JSON)")
    ap.add_argument("--settings", type=int, metavar="N",
                    help="measure controller settings on one fleet of N hosts instead")
    ap.add_argument("--variants", default=",".join(v for v in VARIANTS if v not in ("no_check", "before")),
                    help="with --settings: " + ", ".join(VARIANTS))
    ap.add_argument("--no-setup", action="store_true", help="with --settings: no `ansible -m setup` runs")
    ap.add_argument("--profile", metavar="DIR", help="with --settings: profile a rerun of base and before")
    ap.add_argument("--json", default=None,
                    help="results file (build/bench-fleet/results.json, or settings.json with --settings)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces)")
    os.makedirs(OUT, exist_ok=True)
    args.json = args.json or os.path.join(OUT, "settings.json" if args.settings else "results.json")
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
           "args": {"hosts": args.hosts, "transports": args.transports, "phases": args.phases,
                    "rounds": args.rounds, "forks": args.forks, "batches": args.batches,
                    "settings": args.settings, "prefix": P, "mgmt": MGMT},
           "rows": rows, "notes": notes, "loadavg_start": loadavg()}
    if cg_make("controller"):
        cg_add("controller", os.getpid())
    try:
        if args.settings:
            out = settings(args.settings, args, doc)
            doc["loadavg_end"] = loadavg()
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
            print("\nvariant            ping s  CPU   setup s  CPU   rerun s  CPU ctl  hosts  CPU x ping (range)"
                  "  (medians, %d hosts)" % args.settings)
            for r in out:
                print("%-18s %6.1f %5.1f  %6.1f %5.1f  %6.1f  %6.1f %6s  %s %s" % (
                    r["variant"], r["ping"], r["ping_cpu"], r.get("setup", 0), r.get("setup_cpu", 0),
                    r["rerun"], r["rerun_cpu"], r.get("rerun_hosts_cpu"), r.get("rerun_cpu_x"),
                    r.get("rerun_cpu_x_range")))
            print("results: %s" % args.json)
            return
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
    finally:
        cg_remove("controller")     # this process among what it moves back to the root cgroup
    print("\nhosts transport rounds  ping s  first s (x)  rerun s (x)  change s (x)  rolling s (x)   "
          "controller CPU x ping: first/rerun/change/rolling  (medians)")
    for r in doc.get("summary", []):
        print("%5d %-9s %6d %7.1f  %s   %s" % (
            r["hosts"], r["transport"], r["rounds"], r["ping"],
            "  ".join("%6.1f (%4.1f)" % (r.get(k, 0), r.get(k + "_x", 0)) for k in PHASE_KEYS),
            "/".join("%.2f" % r.get(k + "_cpu_x", 0) for k in PHASE_KEYS)))
    for note in notes:
        print(note)
    print("results: %s" % args.json)


if __name__ == "__main__":
    main()
