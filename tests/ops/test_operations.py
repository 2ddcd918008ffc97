"""Zero-loss operations: every change under continuous traffic, through the real playbook.

One netns lab (scripts/lab/lab.sh via playbooks/lab.yml; prefix ``xlbo-``,
management net 198.19.30.0/24, four backends), a UDP and TCP echo server on
port 7777 of every backend (echo_server.py), the balancer deployed with
``ansible-playbook -i <lab inventory> site.yml`` in nat mode with Maglev on
198.18.100.1:7777 and [fd00:18:100::1]:7777 (UDP and TCP, backends be1..be3
by their IPv4 and IPv6 addresses).  Then, while traffic.py runs in the
client namespace (2,000 UDP datagrams per second over 64 flows, half of
them IPv6; 25 long-lived TCP connections per family, 50 in all, each
sending every 10 ms), one playbook run per step:

  upgrade   a changed data-plane source (xdp_lb_source), new build swapped in
  add       be4 joins
  remove    be3 leaves
  drain     be2 gets weight 0
  rerun     the same inventory again (changed=0)
  reboot    detach, remove the pins, run the restore unit's ExecStart command
            (the NAT guard stays, as it does between a detach and an attach:
            no TCP reset or ICMP unreachable may leave the balancer)
  restored  traffic after the restore

and the traffic tool's books are closed per step.  The measured table is
written to build/ops/operations.json and printed (``make test-ops`` shows it).
"""
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "ops")
OUT = os.path.join(ROOT, "build", "ops", "zero-loss")
LAB_DIR = os.path.join(OUT, "lab")
PREFIX = "xlbo-"
MGMT = "198.19.30"
NBACKENDS = 4
VIP = "198.18.100.1"
VIP6 = "fd00:18:100::1"
PORT = 7777
TCP_PER_VIP = 25
PING_INTERVAL = 0.01
RATE = int(os.environ.get("XDP_LB_OPS_RATE", "2000"))
# The change steps run site.yml with the role's host preparation (bpffs,
# sysctls, restore unit; done by the first deploy, none of it touches the
# data plane) turned off: on a loaded 2-core machine the full role takes
# over a minute per run.  XDP_LB_OPS_FULL_ROLE=1 runs the whole role every time.
FULL_ROLE = os.environ.get("XDP_LB_OPS_FULL_ROLE", "0") == "1"
# XDP_LB_OPS_NAT_GUARD=0 deploys without the NAT guard, to measure what it
# prevents (the reboot step then only reports the balancer's resets).
NAT_GUARD = os.environ.get("XDP_LB_OPS_NAT_GUARD", "1") == "1"
INVENTORY = os.path.join(LAB_DIR, "inventory.yml")
STATE_DIR = os.path.join(LAB_DIR, "host", "var", "lib", "netfleet-xdp-lb")
UNIT = os.path.join(LAB_DIR, "host", "etc", "systemd", "system", "netfleet-xdp-lb-restore.service")
PIN_DIR = "/sys/fs/bpf/xdp_lb/default"
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def _env():
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update({"LAB_PREFIX": PREFIX, "LAB_DIR": LAB_DIR, "LAB_MGMT_NET": MGMT,
                "LAB_BACKENDS": str(NBACKENDS)})
    return env


def _lab_down():
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "lab", "lab.sh"), "down"], env=_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def playbook(name, *args):
    """Run ansible-playbook from the checkout; returns (recap totals, log path)."""
    log = os.path.join(OUT, "%s.log" % name)
    with open(log, "w") as f:
        rc = subprocess.run(["ansible-playbook"] + list(args), cwd=ROOT, env=_env(), stdout=f,
                            stderr=subprocess.STDOUT, check=False).returncode
    text = open(log).read()
    assert rc == 0, "ansible-playbook %s failed (rc %d), log %s:\n%s" % (" ".join(args), rc, log, text[-3000:])
    recap = text[text.rfind("PLAY RECAP"):]
    totals = dict((k, sum(int(v) for v in re.findall(r"\b%s=(\d+)" % k, recap)))
                  for k in ("ok", "changed", "failed", "unreachable"))
    return totals, log


def backend(n, weight=100):
    return {"address": "198.18.1.%d" % (10 + n), "weight": weight}


def v6(b):
    """The IPv6 address of backend ``b`` (198.18.1.N -> fd00:18:1::N)."""
    return "fd00:18:1::%s" % b["address"].rsplit(".", 1)[1]


def write_vars(step, backends, source=None, prepare=True):
    """Extra vars of one step: the echo services on udp and tcp 7777, both Maglev."""
    data = {
        # the lab host has the packages (scripts/install-deps.sh)
        "xdp_lb_install_packages": False,
        "xdp_lb_nat_guard": NAT_GUARD,
        "xdp_lb_services": [{"vip": vip, "port": PORT, "protocol": proto, "scheduler": "maglev",
                             "backends": [dict(b, address=addr(b)) for b in backends]}
                            for vip, addr in ((VIP, lambda b: b["address"]), (VIP6, v6))
                            for proto in ("udp", "tcp")],
    }
    if not prepare and not FULL_ROLE:
        data.update({"xdp_lb_manage_bpffs": False, "xdp_lb_manage_sysctl": False})
    if source:
        data["xdp_lb_source"] = source
    path = os.path.join(OUT, "vars-%s.json" % step)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path


class Lab:
    """The lab, the echo servers and the traffic tool; ``close`` ends what it started."""

    def __init__(self):
        self.procs = []
        self.traffic = None
        self.lines = queue.Queue()

    def up(self):
        os.makedirs(OUT, exist_ok=True)
        playbook("lab-up", "playbooks/lab.yml", "-e", "lab_prefix=%s" % PREFIX, "-e", "lab_dir=%s" % LAB_DIR,
                 "-e", "lab_mgmt_net=%s" % MGMT, "-e", "lab_backends=%d" % NBACKENDS)
        for n in range(1, NBACKENDS + 1):
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", "%sbe%d" % (PREFIX, n), "/usr/bin/python3",
                 os.path.join(HERE, "echo_server.py"), "--name", "be%d" % n, "--port", str(PORT),
                 "--max-seconds", "900"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(LAB_DIR, "echo-be%d.log" % n), "w")))
        return self

    def sshd_pid(self):
        with open(os.path.join(LAB_DIR, "lb", "sshd.pid")) as f:
            return f.read().strip()

    def on_lb(self, argv, env=None, check=True):
        """Run argv in the balancer host as its sshd sees it (its bpffs mount and netns)."""
        pre = ["nsenter", "-t", self.sshd_pid(), "-m", "-n"]
        if env:
            pre += ["env"] + ["%s=%s" % kv for kv in sorted(env.items())]
        p = subprocess.run(pre + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if check and p.returncode:
            raise AssertionError("%s: rc %d\n%s\n%s" % (" ".join(argv), p.returncode,
                                                        p.stdout.decode()[-2000:], p.stderr.decode()[-2000:]))
        return p

    def unit_command(self):
        """(argv, environment) of the installed restore unit's ExecStart."""
        env, argv = {}, None
        with open(UNIT) as f:
            for line in f:
                line = line.strip()
                if line.startswith("Environment="):
                    k, _sep, v = line[len("Environment="):].partition("=")
                    env[k] = v
                elif line.startswith("ExecStart="):
                    argv = shlex.split(line[len("ExecStart="):])
        assert argv, "no ExecStart in %s" % UNIT
        return argv, env

    def kernel_answers(self):
        """What the balancer's kernel sent back itself: TCP resets, ICMP(v6) unreachables, and
        the NAT guard's drops (its nft counters)."""
        snmp = self.on_lb(["cat", "/proc/net/snmp", "/proc/net/snmp6"]).stdout.decode()
        rows, out = {}, {}
        for line in snmp.splitlines():
            words = line.split()
            if words and words[0].endswith(":"):
                rows.setdefault(words[0], []).append(words[1:])
            elif len(words) == 2:
                out[words[0]] = int(words[1])
        tcp = dict(zip(rows["Tcp:"][0], rows["Tcp:"][1]))
        icmp = dict(zip(rows["Icmp:"][0], rows["Icmp:"][1]))
        nft = self.on_lb(["nft", "list", "table", "inet", "netfleet_xdp_lb_default"], check=False)
        drops = sum(int(n) for n in re.findall(r"counter packets (\d+)", nft.stdout.decode())) \
            if nft.returncode == 0 else None
        return {"tcp_out_rsts": int(tcp["OutRsts"]), "icmp_out_unreach": int(icmp["OutDestUnreachs"]),
                "icmp6_out_unreach": out.get("Icmp6OutDestUnreachs", 0), "guard_drops": drops}

    def status(self):
        """`cli status` of the instance on the balancer (JSON), through the unit's engine."""
        argv, env = self.unit_command()
        i = argv.index("restore")
        p = self.on_lb(argv[:i] + ["status", "--json", "default"], env=env)
        return json.loads(p.stdout)[0]

    # -- traffic --
    def start_traffic(self):
        self.traffic = subprocess.Popen(
            ["ip", "netns", "exec", "%sclient" % PREFIX, "/usr/bin/python3", os.path.join(HERE, "traffic.py"),
             "--vip", VIP, "--vip", VIP6, "--port", str(PORT), "--tcp-port", str(PORT), "--rate", str(RATE),
             "--tcp", str(TCP_PER_VIP), "--ping-interval", str(PING_INTERVAL), "--max-seconds", "420"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(OUT, "traffic.err"), "w"),
            universal_newlines=True, bufsize=1)
        threading.Thread(target=self._reader, daemon=True).start()
        return self.expect("ready", 30)

    def _reader(self):
        for line in self.traffic.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, event, timeout):
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError("traffic.py: no %r within %ds (see %s/traffic.err)" % (event, timeout, OUT))
            if line is None:
                raise AssertionError("traffic.py ended before %r (see %s/traffic.err)" % (event, OUT))
            data = json.loads(line)
            if data.get("event") == event:
                return data

    def phase(self, name):
        self.traffic.stdin.write("phase %s\n" % name)
        self.traffic.stdin.flush()
        return self.expect("phase", 30)

    def stop_traffic(self):
        self.traffic.stdin.write("stop\n")
        self.traffic.stdin.flush()
        report = self.expect("report", 60)
        self.traffic.wait(timeout=30)
        return report

    def close(self):
        if self.traffic and self.traffic.poll() is None:
            # a failed step: keep what the traffic saw for the post-mortem
            try:
                with open(os.path.join(OUT, "traffic-at-failure.json"), "w") as f:
                    json.dump(self.stop_traffic(), f, indent=1, sort_keys=True)
            except (AssertionError, OSError, ValueError, subprocess.TimeoutExpired):
                pass
        for p in ([self.traffic] if self.traffic else []) + self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        _lab_down()


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the operations test builds a netns lab and loads XDP programs: run as root")
    if not os.path.exists(os.path.join(VENV_BIN, "ansible-playbook")):
        pytest.skip("no .venv/bin/ansible-playbook: run make deps")
    lab = Lab()
    try:
        yield lab.up()
    finally:
        lab.close()


def _services(status):
    """What must survive a reboot: per service its scheduler, ring digest and backends."""
    return dict((s["service"], {"scheduler": s["scheduler"], "ring": s["ring"],
                                "backends": sorted((b["address"], b["port"], b["id"], b["weight"])
                                                   for b in s["backends"])})
                for s in status["services"])


def _row(ph):
    u, t = ph["udp"], ph["tcp"]
    return {"step": ph["name"], "seconds": ph["seconds"], "sent": u["sent"], "received": u["received"],
            "lost": u["lost"], "lost_by_backend": u["lost_by_backend"], "moved_flows": u["moved_flows"],
            "moved": sorted(set((m["from"], m["to"]) for m in u["moved"])),
            "tcp_open": t["open_at_start"], "tcp_survived": t["survived"], "tcp_broken": len(t["broken"]),
            "tcp_stalled": len(t["stalled"]), "tcp_broken_backends": sorted(b["backend"] for b in t["broken"]),
            "probes": ph["probes"], "probe_failures": len(ph["probe_failures"])}


def _print_table(rows, extra):
    head = "%-9s %7s %7s %7s %5s %6s %9s  %s" % (
        "step", "sent", "recv", "lost", "moved", "tcp ok", "tcp brkn", "new TCP flows per backend")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append("%-9s %7d %7d %7d %5d %3d/%-2d %9d  %s" % (
            r["step"], r["sent"], r["received"], r["lost"], r["moved_flows"], r["tcp_survived"], r["tcp_open"],
            r["tcp_broken"] + r["tcp_stalled"], " ".join("%s:%d" % kv for kv in sorted(r["probes"].items()))))
    text = "\n".join(lines + [""] + extra)
    print("\n" + text)
    return text


def test_changes_under_traffic(lab):
    be = backend
    src_v2 = os.path.join(LAB_DIR, "src-v2")
    os.makedirs(src_v2)
    for name in ("xdp_loadbalancer.c", "xdp_lb.h"):
        shutil.copy(os.path.join(ROOT, "files", name), src_v2)
    with open(os.path.join(src_v2, "xdp_loadbalancer.c"), "a") as f:
        f.write("\n/* netfleet ops test: same program, new source (a new build hash) */\n")

    totals, _log = playbook("deploy", "-i", INVENTORY, "site.yml", "-e", "@" + write_vars("deploy", [be(1), be(2), be(3)]))
    assert totals["changed"] > 0
    before = lab.status()
    ready = lab.start_traffic()
    assert sorted(ready["tcp"]) == ["be1", "be2", "be3"], ready

    steps = [
        ("upgrade", [be(1), be(2), be(3)], src_v2),
        ("add", [be(1), be(2), be(3), be(4)], src_v2),
        ("remove", [be(1), be(2), be(4)], src_v2),
        ("drain", [be(1), be(2, weight=0), be(4)], src_v2),
        ("rerun", [be(1), be(2, weight=0), be(4)], src_v2),
    ]
    changed, seconds = {}, {}
    for step, backends, source in steps:
        lab.phase(step)
        t0 = time.monotonic()
        totals, _log = playbook(step, "-i", INVENTORY, "site.yml", "-e", "@" + write_vars(step, backends, source, prepare=False))
        seconds[step] = round(time.monotonic() - t0, 1)
        changed[step] = totals["changed"]
        if step == "upgrade":
            after_upgrade = lab.status()
        time.sleep(1.5)   # traffic on the new state before the books close

    # reboot: what a reboot loses (attachments, pins), then the unit's command
    lab.phase("reboot")
    ring_before = lab.status()
    answers_before = lab.kernel_answers()
    assert (answers_before["guard_drops"] is not None) == NAT_GUARD, answers_before
    lab.on_lb(["ip", "link", "set", "dev", "front0", "xdp", "off"])
    lab.on_lb(["ip", "link", "set", "dev", "back0", "xdp", "off"])
    lab.on_lb(["rm", "-rf", PIN_DIR])
    assert not lab.on_lb(["test", "-e", PIN_DIR], check=False).returncode == 0
    time.sleep(1.0)
    argv, env = lab.unit_command()
    restore = json.loads(lab.on_lb(argv, env=env).stdout)
    assert restore["default"]["changed"] and not restore["default"].get("failed"), restore
    ring_after = lab.status()
    time.sleep(1.0)
    answers_after = lab.kernel_answers()
    lab.phase("restored")
    time.sleep(3.0)
    report = lab.stop_traffic()

    rows = [_row(ph) for ph in report["phases"]]
    by = dict((r["step"], r) for r in rows)
    extra = ["playbook seconds: %s" % seconds, "playbook changed: %s" % changed,
             "build: deploy %s, upgrade %s; program id %s -> %s" % (
                 before["build"], after_upgrade["build"], before["program"]["id"], after_upgrade["program"]["id"]),
             "rings before reboot: %s" % dict((s["service"], s["ring"]) for s in ring_before["services"]),
             "rings after restore: %s" % dict((s["service"], s["ring"]) for s in ring_after["services"]),
             "balancer kernel across the reboot: before %s, after %s" % (answers_before, answers_after)]
    text = _print_table(rows, extra)
    with open(os.path.join(OUT, "operations.json"), "w") as f:
        json.dump({"rate": RATE, "rows": rows, "playbook_seconds": seconds, "changed": changed,
                   "kernel_answers": {"before_reboot": answers_before, "after_restore": answers_after},
                   "report": report}, f, indent=1, sort_keys=True)
    with open(os.path.join(OUT, "operations.txt"), "w") as f:
        f.write(text + "\n")

    def intact(r):
        """No datagram lost, no flow moved, every TCP connection alive, new flows served."""
        assert r["sent"] > RATE, r            # the step really ran under traffic
        assert (r["lost"], r["moved_flows"]) == (0, 0), r
        assert r["tcp_survived"] == r["tcp_open"] == 2 * TCP_PER_VIP, r
        assert r["probe_failures"] == 0, r

    # a. upgrade: a new build, swapped in
    assert after_upgrade["build"] != before["build"]
    assert after_upgrade["program"]["id"] != before["program"]["id"]
    assert set(i["prog_id"] for i in after_upgrade["interfaces"].values()) == {after_upgrade["program"]["id"]}
    intact(by["upgrade"])
    # b. add: existing flows stay (conntrack), new ones reach be4 too
    intact(by["add"])
    assert "be4" in by["add"]["probes"], by["add"]
    # c. remove be3: only be3's flows move or break; nothing new goes there
    r = by["remove"]
    assert set(f for f, _t in r["moved"]) == {"be3"}, r
    assert set(r["lost_by_backend"]) <= {"be3"}, r
    assert set(r["tcp_broken_backends"]) <= {"be3"}, r
    assert r["tcp_survived"] == r["tcp_open"] - r["tcp_broken"] - r["tcp_stalled"]
    assert "be3" not in r["probes"] and r["probe_failures"] == 0, r
    survivors = sum(1 for c in report["tcp"] if c["backend"] != "be3")
    assert r["tcp_survived"] == survivors, (r, report["tcp"])
    # d. drain be2: its flows stay, new ones avoid it
    d = by["drain"]
    assert (d["lost"], d["moved_flows"], d["probe_failures"]) == (0, 0, 0), d
    assert d["tcp_survived"] == d["tcp_open"] == survivors, d
    assert "be2" not in d["probes"] and sorted(d["probes"]) == ["be1", "be4"], d
    # e. rerun: nothing changes, nothing is lost
    assert changed["rerun"] == 0, changed
    e = by["rerun"]
    assert (e["lost"], e["moved_flows"], e["probe_failures"]) == (0, 0, 0), e
    assert e["tcp_survived"] == e["tcp_open"] == survivors, e
    # f. reboot: same services, backends and Maglev rings after the restore
    assert _services(ring_after) == _services(ring_before)
    assert ring_after["build"] == ring_before["build"]
    assert ring_after["program"]["id"] != ring_before["program"]["id"]
    # no reset from the balancer's kernel while nothing was attached: the NAT guard dropped
    # the backends' packets to the NAT ports instead
    # (ICMP unreachables are recorded, not asserted: clients' packets to the VIP, which no
    # address of the balancer holds, get "no route" from it while nothing is attached)
    if NAT_GUARD:
        assert answers_after["tcp_out_rsts"] == answers_before["tcp_out_rsts"], (answers_before, answers_after)
        assert answers_after["guard_drops"] > answers_before["guard_drops"], (answers_before, answers_after)
    f = by["restored"]
    assert f["lost"] == 0 and f["probe_failures"] == 0, f
    assert "be2" not in f["probes"] and "be3" not in f["probes"], f
