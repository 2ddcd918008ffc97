"""The host command `xdp-lb` against a real balancer: namespaces, veth, XDP, real packets.

A nat instance (engine.run, the module's code path) in a namespace lab of
its own (prefix xlbc-t<pid>) with two backends on one backend host; the
command is the module's own entry point (units.entry_point, with the
engine dir = this checkout), run as
a separate process with the system Python from a directory holding a
planted `ansible_collections` tree and with a hostile PYTHONPATH.

- status: attachments (ours), both backends, packets per backend equal to
  what was sent, conntrack fill; --json and tables; differences named;
- drain under traffic: established UDP flows stay on the drained backend,
  new flows never go to it; undrain brings it back; weight N;
- an override survives a boot restore (pins and attachments gone, then
  `xdp-lb restore --all`) and is named by the next engine run (a module
  run) as a warning and kept; clear_overrides ends it;
- bad input: one line, exit 2 or 1, the override file and maps unchanged.
Everything it makes is removed at the end, also on failure.
"""
import json
import os
import random
import shutil
import subprocess
import tempfile

import pytest
import yaml

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    engine, explain, flows, maps, model, overrides, state, units)

import nslab
from nslab import sh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "files")
VIP = "198.18.100.1"
SVC = "198.18.100.1:53/udp"
KEY = "udp/198.18.100.1:53"
BE1, BE2 = "198.18.1.11", "198.18.1.12"


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, XDP, bpffs)")
    tag = "xlbc-t%d" % os.getpid()
    ns = {"client": tag + "-c", "lb": tag + "-l", "be": tag + "-b"}
    pin_dir = "/sys/fs/bpf/%s" % tag
    state_dir = str(tmp_path / "state")
    # the entry point, and a hostile working directory / PYTHONPATH around it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    xdp_lb = str(bin_dir / "xdp-lb")
    with open(xdp_lb, "w") as f:
        f.write(units.entry_point("/usr/bin/python3", os.path.join(ROOT, ".collections")))
    os.chmod(xdp_lb, 0o755)
    evil = tmp_path / "evil"
    planted = evil / "ansible_collections" / "netfleet" / "xdp_lb" / "plugins" / "module_utils" / "xdp_lb"
    planted.mkdir(parents=True)
    for d in [evil / "ansible_collections", evil / "ansible_collections" / "netfleet",
              evil / "ansible_collections" / "netfleet" / "xdp_lb",
              evil / "ansible_collections" / "netfleet" / "xdp_lb" / "plugins",
              evil / "ansible_collections" / "netfleet" / "xdp_lb" / "plugins" / "module_utils", planted]:
        (d / "__init__.py").write_text("open(%r, 'w').write('planted code ran')\n" % str(tmp_path / "PWNED"))
    (planted / "cli.py").write_text("open(%r, 'w').write('planted code ran')\n" % str(tmp_path / "PWNED"))
    params = {
        "name": "web", "netns": ns["lb"], "interfaces": ["front0", "back0"], "mode": "nat",
        "services": [{"vip": VIP, "port": 53, "protocol": "udp", "scheduler": "maglev",
                      "backends": [{"address": BE1, "weight": 100}, {"address": BE2, "weight": 100}]}],
        "ring_size": 257, "max_services": 4, "max_backends": 16, "conntrack_size": 4096,
        "source": FILES, "pin_dir": pin_dir, "state_dir": state_dir, "build_dir": str(tmp_path / "build")}
    deployed = False
    try:
        nslab.nat_topology(ns, [BE1, BE2])
        deployed = True
        engine.run(model.validate(params))
        yield {"ns": ns, "state_dir": state_dir, "tmp": tmp_path, "xdp_lb": xdp_lb, "evil": str(evil),
               "params": params, "pin_dir": pin_dir}
    finally:
        nslab.remove(ns, params, deployed)


def xdp_lb(lab, *args, **kw):
    """Run the installed command the way an operator would: from a directory
    with a planted ansible_collections tree and PYTHONPATH pointing at it."""
    env = dict(os.environ, PYTHONPATH=lab["evil"])
    env.update(kw.pop("env", {}))
    argv = [lab["xdp_lb"], "--state-dir", lab["state_dir"]] + list(args)
    r = subprocess.run(argv, check=False, env=env, cwd=lab["evil"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert not os.path.exists(str(lab["tmp"] / "PWNED")), "the entry point imported planted code"
    # a transcript for docs/cli.md (build/ is not tracked)
    os.makedirs(os.path.join(ROOT, "build", "cli"), exist_ok=True)
    with open(os.path.join(ROOT, "build", "cli", "session.txt"), "a") as f:
        f.write("# xdp-lb %s\n%s%s(exit %d)\n\n" % (" ".join(args), r.stdout, r.stderr, r.returncode))
    return r


def status(lab):
    r = xdp_lb(lab, "status", "--json", "web")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def packets(st):
    return dict((b["address"], b["packets"]) for s in st["services"] for b in s["backends"])


def send_udp(lab, ports):
    nslab.send_udp(lab["ns"], VIP, ports)


def play(lab, **extra):
    """One ansible-playbook run of the xdp_lb module with the instance's parameters; its output."""
    params = dict(lab["params"], **extra)
    book = lab["tmp"] / "play.yml"
    book.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "tasks": [{"name": "Configure", "netfleet.xdp_lb.xdp_lb": params}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    p = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(book)], env=env, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:]
    return p.stdout


def test_status_tables_and_json(lab):
    send_udp(lab, range(40000, 40100))
    st = status(lab)
    assert [(n, a["ours"], a["mode"]) for n, a in sorted(st["interfaces"].items())] == \
        [("back0", True, "native"), ("front0", True, "native")]
    assert st["interfaces"]["front0"]["prog_id"] == st["program"]["id"]
    got = packets(st)
    assert sum(got.values()) == 100 and got[BE1] > 0 and got[BE2] > 0
    assert st["conntrack"]["flows"] == 100
    assert st["differences"] == [] and st["overrides"] == {}
    for b in st["services"][0]["backends"]:
        assert (b["configured_weight"], b["effective_weight"], b["health"], b["override"]) == (100, 100, "up", None)

    r = xdp_lb(lab, "status")   # the only instance, as a table
    assert r.returncode == 0, r.stderr
    assert "instance web  mode nat" in r.stdout and "198.18.1.12:53" in r.stdout
    assert "state file matches the live host" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout

    # a difference: the program detached from one interface by hand
    sh("ip", "-n", lab["ns"]["lb"], "link", "set", "dev", "back0", "xdpdrv", "off")
    st = status(lab)
    assert st["differences"] == ["interface back0 has no XDP program"]
    r = xdp_lb(lab, "status", "web")
    assert "! interface back0 has no XDP program" in r.stdout


def test_drain_under_traffic_restore_and_play_run(lab):
    established = range(41000, 41200)
    send_udp(lab, established)
    before = packets(status(lab))
    on_be2 = before[BE2]
    assert 0 < on_be2 < 200

    r = xdp_lb(lab, "drain", BE2, "-s", SVC)
    assert r.returncode == 0, r.stderr
    assert "web drained %s backend %s:53" % (KEY, BE2) in r.stdout
    st = status(lab)
    b2 = [b for b in st["services"][0]["backends"] if b["address"] == BE2][0]
    assert (b2["effective_weight"], b2["override"]["action"]) == (0, "drain")
    r = xdp_lb(lab, "status")
    assert "override   %s backend %s:53 drained since" % (KEY, BE2) in r.stdout
    assert "198.18.1.12:53     100    0  up      drain" in r.stdout, r.stdout

    # established flows stay on be2, new ones never go there
    send_udp(lab, established)
    after = packets(status(lab))
    assert after[BE2] - before[BE2] == on_be2
    send_udp(lab, range(42000, 42300))
    again = packets(status(lab))
    assert again[BE2] == after[BE2] and again[BE1] - after[BE1] == 300

    # boot: attachments and pins gone; restore applies the override
    for dev in ("front0", "back0"):
        sh("ip", "-n", lab["ns"]["lb"], "link", "set", "dev", dev, "xdpdrv", "off")
    engine.remove_pins(lab["pin_dir"])
    r = xdp_lb(lab, "restore", "--all")
    assert r.returncode == 0, r.stderr
    st = status(lab)
    assert st["differences"] == [] and list(st["overrides"]) == ["%s|%s:53" % (KEY, BE2)]
    send_udp(lab, range(43000, 43200))
    assert packets(status(lab))[BE2] == 0   # fresh maps: be2 got nothing of 200 new flows

    # the next play run (ansible-playbook, the module on localhost) names the override and keeps it
    out = play(lab)
    assert "operator override kept: %s backend %s:53 drained" % (KEY, BE2) in out, out
    assert "changed=0" in out and "failed=0" in out, out
    res = engine.run(model.validate(lab["params"]))
    assert any("operator override kept: %s backend %s:53 drained" % (KEY, BE2) in w for w in res["warnings"])
    assert not res["changed"]
    send_udp(lab, range(44000, 44100))
    assert packets(status(lab))[BE2] == 0

    # weight, undrain
    r = xdp_lb(lab, "weight", BE2 + ":53", "300", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["overrides"]["%s|%s:53" % (KEY, BE2)]["weight"] == 300
    r = xdp_lb(lab, "undrain", BE2)
    assert r.returncode == 0, r.stderr
    assert status(lab)["overrides"] == {}
    assert not os.path.exists(overrides.path(lab["state_dir"], "web"))

    # clear_overrides (the module option, in a play) ends them
    assert xdp_lb(lab, "drain", BE1).returncode == 0
    out = play(lab, clear_overrides=True)
    assert "changed=1" in out and "operator override kept" not in out, out
    assert status(lab)["overrides"] == {}
    # and override clear
    assert xdp_lb(lab, "drain", BE1).returncode == 0
    r = xdp_lb(lab, "override", "list")
    assert "%s backend %s:53 drained" % (KEY, BE1) in r.stdout
    r = xdp_lb(lab, "override", "clear", "web")
    assert r.returncode == 0, r.stderr
    assert status(lab)["overrides"] == {}
    assert all(b["effective_weight"] == 100 for b in status(lab)["services"][0]["backends"])


def test_bad_input(lab):
    assert xdp_lb(lab, "drain", BE2).returncode == 0
    path = overrides.path(lab["state_dir"], "web")
    with open(path) as f:
        saved = f.read()
    st = status(lab)
    cases = [
        (["drain", BE2, "-i", "nope"], 2, "unknown instance 'nope'"),
        (["drain", BE2, "-i", "../x"], 2, "--instance: ../x is not a valid instance name"),
        (["drain", "198.18.1.99"], 2, "no backend 198.18.1.99 in instance web"),
        (["drain", "198.18.1.300"], 2, "backend: '198.18.1.300' is not an IPv4 or IPv6 address"),
        (["drain", "web-3"], 2, "backend 'web-3': expected ADDRESS or ADDRESS:PORT"),
        (["drain", BE2, "-s", "198.18.100.9:53/udp"], 2, "unknown service 198.18.100.9:53/udp"),
        (["drain", BE2, "-s", "198.18.100.1:99999/udp"], 2, "port '99999' is not a number"),
        (["drain", BE2, "-s", "198.18.100.1:53"], 2, "expected VIP:PORT/PROTO"),
        (["weight", BE2, "1001"], 2, "weight '1001' is not an integer from 0 to 1000"),
        (["weight", BE2, "-3"], 2, ""),
        (["status", "nope"], 2, "unknown instance 'nope'"),
        (["frobnicate"], 2, "invalid choice"),
        (["ports", "list"], 2, "instance web is in nat mode: redirect ports exist only in redirect mode"),
        (["ports", "add", "back0"], 2, "redirect ports exist only in redirect mode"),
    ]
    for args, code, text in cases:
        r = xdp_lb(lab, *args)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert r.stdout == ""
    # not root (the script copied where nobody can read it; the engine is this checkout)
    tmp = tempfile.mkdtemp(prefix="xlbc-")
    try:
        os.chmod(tmp, 0o755)
        script = os.path.join(tmp, "xdp-lb")
        shutil.copy(lab["xdp_lb"], script)
        os.chmod(script, 0o755)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script,
                            "--state-dir", lab["state_dir"], "drain", BE1], cwd="/", check=False,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    finally:
        shutil.rmtree(tmp)
    assert r.returncode == 1 and "needs root" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    # bpffs without the instance's pins
    r = xdp_lb(lab, "--state-dir", str(lab["tmp"] / "none"), "status", "web")
    assert r.returncode == 1 and "does not exist" in r.stderr
    # the instance's pins gone (a reboot before the restore): one line, exit 1
    os.rename(os.path.join(lab["pin_dir"], "prog"), os.path.join(lab["pin_dir"], "prog_away"))
    try:
        for args in (["status", "web"], ["drain", BE1], ["flows"], ["explain", "198.18.0.2:1", SVC]):
            r = xdp_lb(lab, *args)
            assert r.returncode == 1 and "has no pinned program" in r.stderr and r.stdout == "", (args, r.stderr)
            assert len(r.stderr.splitlines()) == 1
    finally:
        os.rename(os.path.join(lab["pin_dir"], "prog_away"), os.path.join(lab["pin_dir"], "prog"))
    with open(path) as f:
        assert f.read() == saved
    after = status(lab)
    for s in (st, after):
        for b in s["services"][0]["backends"]:
            b.pop("packets"), b.pop("bytes")
    assert after["services"] == st["services"] and after["program"] == st["program"]


def test_explain_matches_the_data_plane(lab):
    """1,000 random new flows: explain's backend is the one the program puts
    into their conntrack entries; established flows: explain names theirs."""
    data = state.load(state.state_path(lab["state_dir"], "web"))
    rng = random.Random(17)
    ports = rng.sample(range(20000, 60000), 1000)
    want = {}
    for p in ports:
        res = explain.explain(data, "198.18.0.2", p, KEY)
        assert res["state"] == "new" and res["backend"] in ("%s:53" % BE1, "%s:53" % BE2), res
        want[p] = res["backend_id"]
    assert set(want.values()) == set(data["ids"]["backends"].values())
    send_udp(lab, ports)
    with maps.MapSet(lab["pin_dir"]) as ms:
        ct = ms.get("lb_ct")
        got = dict((p, ct.lookup(explain._flow("198.18.0.2", p, VIP, 53, "udp")).backend_id) for p in ports)
    assert got == want
    for p in ports[:100]:
        res = explain.explain(data, "198.18.0.2", p, KEY)
        assert (res["state"], res["backend_id"]) == ("established", want[p]) and res["nat_port"], res

    # the command: an established flow, a new one, JSON, and after a drain
    p = ports[0]
    be = [b for b, i in data["ids"]["backends"].items() if i == want[p]][0].split("|")[1]
    r = xdp_lb(lab, "explain", "198.18.0.2:%d" % p, SVC)
    assert r.returncode == 0, r.stderr
    assert "198.18.0.2:%d -> %s: established flow, backend %s" % (p, KEY, be) in r.stdout
    assert "conntrack entry (lb_ct)" in r.stdout
    r = xdp_lb(lab, "explain", "198.18.0.2:19999", SVC, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["state"] == "new" and res["ring_position"] == res["hash"] % 257
    assert xdp_lb(lab, "drain", BE2).returncode == 0
    for q in rng.sample(range(60001, 65000), 50):
        assert explain.explain(data, "198.18.0.2", q, KEY)["backend"] == "%s:53" % BE1
    on_be2 = [q for q in ports if want[q] == data["ids"]["backends"]["%s|%s:53" % (KEY, BE2)]]
    assert on_be2 and explain.explain(data, "198.18.0.2", on_be2[0], KEY)["backend"] == "%s:53" % BE2
    # bad input
    for args, text in ((["explain", "198.18.0.2:1", "198.18.100.1:53"], "expected VIP:PORT/PROTO"),
                       (["explain", "198.18.0.256:1", SVC], "client: '198.18.0.256'"),
                       (["explain", "198.18.0.2:1", "198.18.100.7:53/udp"], "unknown service 198.18.100.7:53/udp")):
        r = xdp_lb(lab, *args)
        assert r.returncode == 2 and text in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = xdp_lb(lab, "explain", "198.18.0.2", SVC)   # maglev needs the port
    assert r.returncode == 0 and "give CLIENT:PORT" in r.stdout


def test_flows_lists_the_flows_that_exist(lab):
    mine = list(range(46000, 46050))
    send_udp(lab, mine)
    r = xdp_lb(lab, "flows", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert sorted(x["client_port"] for x in rows) == mine
    assert all(x["client_address"] == "198.18.0.2" and x["service"] == KEY and x["nat_port"] for x in rows)
    assert set(x["backend_address"] for x in rows) == {BE1, BE2}
    data = state.load(state.state_path(lab["state_dir"], "web"))
    for x in rows[:20]:
        res = explain.explain(data, "198.18.0.2", x["client_port"], KEY)
        assert (res["state"], res["backend_id"], res["nat_port"]) == ("established", x["backend_id"], x["nat_port"])
    if flows.has_age():
        assert all(x["age"] is not None and 0 <= x["age"] < 60 for x in rows)
    on_be2 = [x for x in rows if x["backend_address"] == BE2]
    r = xdp_lb(lab, "flows", "web")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 51 and r.stdout.startswith("client "), r.stdout
    r = xdp_lb(lab, "flows", "web", "--backend", BE2, "--count")
    assert r.returncode == 0 and r.stdout.strip() == str(len(on_be2))
    r = xdp_lb(lab, "flows", "--client", "198.18.0.2:46007", "--vip", SVC)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "198.18.0.2:46007" in r.stdout
    r = xdp_lb(lab, "flows", "--vip", "198.18.100.9", "--count")
    assert r.stdout.strip() == "0"
    r = xdp_lb(lab, "flows", "--backend", "nope")
    assert r.returncode == 2 and "backend 'nope'" in r.stderr


PACED = r"""
import socket, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
socks = []
for p in range(47000, 47016):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('198.18.0.2', p))
    socks.append(s)
start = time.monotonic()
sent = 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    while sent < rate * now:
        socks[sent % len(socks)].sendto(b'x' * 100, (%r, 53))
        sent += 1
    time.sleep(0.002)
print(sent, time.monotonic() - start)
"""


def test_top_shows_the_generators_rate(lab):
    rate = 1500.0
    gen = subprocess.Popen(["ip", "netns", "exec", lab["ns"]["client"], "/usr/bin/python3", "-c",
                            PACED.replace("%r", repr(VIP)), str(rate), "6"],
                           stdout=subprocess.PIPE, universal_newlines=True)
    try:
        import time
        time.sleep(1.5)
        r = xdp_lb(lab, "top", "--once", "--interval", "2", "--json")
        assert r.returncode == 0, r.stderr
        sample = json.loads(r.stdout)
        t = xdp_lb(lab, "top", "web", "--once")
        out, _err = gen.communicate(timeout=30)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    sent, took = out.split()
    generated = int(sent) / float(took)
    assert abs(generated - rate) < rate * 0.02, generated
    be = sum(x["pps"] for x in sample["backends"])
    assert abs(be - generated) <= generated * 0.10, (be, generated, sample)
    assert abs(sum(x["bps"] for x in sample["backends"]) - generated * 142 * 8) <= generated * 142 * 8 * 0.10
    verdicts = dict((x["name"], x["pps"]) for x in sample["verdicts"])
    assert abs(verdicts["redirect"] + verdicts.get("tx", 0) + verdicts.get("fib_miss", 0) - generated) \
        <= generated * 0.10, verdicts
    assert t.returncode == 0 and "pkt/s" in t.stdout and max(len(x) for x in t.stdout.splitlines()) <= 80, t.stdout
    r = xdp_lb(lab, "top", "--interval", "0")
    assert r.returncode == 2 and "--interval 0.0" in r.stderr


def test_trace_prints_decisions_and_puts_the_program_back(lab):
    """trace swaps the debug build in, prints the decisions of packets sent meanwhile,
    and leaves the same program (id, tag) attached and the state file byte-identical."""
    sfile = state.state_path(lab["state_dir"], "web")
    with open(sfile, "rb") as f:
        saved = f.read()
    before = status(lab)
    ids = dict((n, a["prog_id"]) for n, a in before["interfaces"].items())
    proc = subprocess.Popen([lab["xdp_lb"], "--state-dir", lab["state_dir"], "trace", "web", "--seconds", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd="/")
    try:
        port = 48000
        while proc.poll() is None and port < 58000:
            send_udp(lab, range(port, port + 20))
            port += 20
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(os.path.join(ROOT, "build", "cli", "session.txt"), "a") as f:
        f.write("# xdp-lb trace web --seconds 6\n%s%s(exit %d)\n\n" % (out, err, proc.returncode))
    assert proc.returncode == 0, err
    assert "the normal program is back" in err
    decisions = [x for x in out.splitlines() if "new flow to backend" in x]
    assert decisions, out
    assert all(("(%s %s:53)" % (KEY, BE1)) in x or ("(%s %s:53)" % (KEY, BE2)) in x for x in decisions), decisions[:5]
    after = status(lab)
    assert dict((n, a["prog_id"]) for n, a in after["interfaces"].items()) == ids
    assert after["program"] == before["program"]
    assert after["differences"] == []
    with open(sfile, "rb") as f:
        assert f.read() == saved
    r = xdp_lb(lab, "trace", "--seconds", "0")
    assert r.returncode == 2 and "--seconds 0.0" in r.stderr
