"""Damaged state files and bad command lines against the running instance.

A state file with a wrong type gives one error naming the file and the key
in the module, xdp_lb_info and the host command (restore, status, metrics,
guard, flows), never a traceback; metrics still writes ``xdp_lb_up 0``.
The command refuses malformed instance names (no path out of the state
directory), negative rounds and a missing state directory.  The host
snapshot is identical after each case (the damaged file is the "before").
"""
import json
import os

import pytest

from badlab import BE1, cli, info, module

# (id, change to the state dict, the key the error names, the value shown)
DAMAGE = [
    ("ids-str", lambda d: d.update(ids="x"), "ids", "'x'"),
    ("neighbours-str", lambda d: d.update(neighbours="x"), "neighbours", "'x'"),
    ("config-str", lambda d: d.update(config="x"), "config", "'x'"),
    ("ids-services-list", lambda d: d["ids"].update(services=[1]), "ids.services", "[1]"),
    ("ids-backend-id-str", lambda d: d["ids"]["backends"].update(dict.fromkeys(d["ids"]["backends"], "7")),
     "ids.backends[", "'7'"),
    ("neighbour-pair", lambda d: d.update(neighbours=[["198.18.1.11"]]), "neighbours[0]", "['198.18.1.11']"),
    ("program-str", lambda d: d.update(program="x"), "program", "'x'"),
    ("program-id-str", lambda d: d["program"].update(id="12"), "program.id", "'12'"),
    ("build-list", lambda d: d.update(build=[]), "build", "[]"),
    ("services-str", lambda d: d["config"].update(services="x"), "config.services", "'x'"),
    ("service-str", lambda d: d["config"]["services"].__setitem__(0, "x"), "config.services[0]", "'x'"),
    ("backend-int", lambda d: d["config"]["services"][0]["backends"].__setitem__(0, 3),
     "config.services[0].backends[0]", "3"),
    ("weight-str", lambda d: d["config"]["services"][0]["backends"][0].update(weight="x"),
     "config.services[0].backends[0].weight", "'x'"),
    ("ring-size-str", lambda d: d["config"].update(ring_size="x"), "config.ring_size", "'x'"),
    ("pin-dir-int", lambda d: d["config"].update(pin_dir=5), "config.pin_dir", "5"),
    ("interfaces-str", lambda d: d["config"].update(interfaces="front0"), "config.interfaces", "'front0'"),
    ("debug-str", lambda d: d["config"].update(debug="yes"), "config.debug", "'yes'"),
    ("rings-list", lambda d: d.update(rings=["x"]), "rings", "['x']"),
    ("interfaces-list", lambda d: d.update(interfaces=["front0"]), "interfaces", "['front0']"),
    ("nat-guard-ports", lambda d: d["nat_guard"].update(ports="20000-32767"), "nat_guard.ports", "'20000-32767'"),
    ("nat-source-int", lambda d: d.update(nat_source={"ipv4": 1}), "nat_source.ipv4", "1"),
]


@pytest.fixture
def damaged(lab, request):
    """The instance's state file with one change; put back (bytes and times) afterwards."""
    path = os.path.join(lab["state_dir"], "bi.json")
    with open(path, "rb") as f:
        saved = f.read()
    st = os.stat(path)
    data = json.loads(saved)
    request.param(data)
    with open(path, "w") as f:
        json.dump(data, f)
    try:
        yield path
    finally:
        with open(path, "wb") as f:
            f.write(saved)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _expect(path, key, value):
    return "state file %s: %s" % (path, key), value


@pytest.mark.parametrize("damaged,key,value", [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE],
                         indirect=["damaged"])
def test_damaged_state_file(lab, damaged, snap, key, value, tmp_path):
    start, shown = _expect(damaged, key, value)
    # the module, as a rerun of the play
    res = module(lab).result
    assert res.get("failed") and res["msg"].startswith(start) and shown in res["msg"], res
    # xdp_lb_info
    res = info(lab, name="bi").result
    assert not res.get("failed") and res["instances"][0]["error"].startswith(start), res
    # the host command: restore; for the three and a few more, status, flows, guard too
    # (exit 1, one line, no traceback); each command is a process of its own, which is what costs
    every = key in ("ids", "neighbours", "config", "config.services[0]", "program.id", "nat_guard.ports")
    for args in (["restore", "bi"], ["status", "bi"], ["flows", "bi"], ["guard", "bi"])[:None if every else 1]:
        r = cli(lab, *args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert start in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    # metrics: the file is written, with xdp_lb_up 0 for the instance
    out = tmp_path / "xdp_lb.prom"
    r = cli(lab, "metrics", "--out", str(out))
    assert r.returncode == 1 and start in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert 'xdp_lb_up{instance="bi"} 0' in out.read_text()


@pytest.mark.parametrize("text,error", [
    ("{not json", "is not valid JSON"),
    ("[]", "has an unknown format"),
    ('{"version": 2}', "has an unknown format (version 2)"),
], ids=["not-json", "list", "version"])
def test_unreadable_state_file(lab, snap, text, error):
    path = os.path.join(lab["state_dir"], "bi.json")
    with open(path, "rb") as f:
        saved = f.read()
    st = os.stat(path)
    try:
        with open(path, "w") as f:
            f.write(text)
        before_run = os.stat(path).st_mtime_ns
        res = module(lab).result
        assert res.get("failed") and error in res["msg"], res
        r = cli(lab, "restore", "bi")
        assert r.returncode == 1 and error in r.stderr and "Traceback" not in r.stderr, r.stderr
        r = cli(lab, "metrics", "--out", "-")
        assert r.returncode == 1 and 'xdp_lb_up{instance="bi"} 0' in r.stdout, (r.stdout, r.stderr)
        assert os.stat(path).st_mtime_ns == before_run
    finally:
        with open(path, "wb") as f:
            f.write(saved)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# (id, arguments, exit status, text in the one-line error)
CLI_CASES = [
    ("restore-traversal", ["restore", "../evil/x"], 2, "instance: ../evil/x is not a valid instance name"),
    ("restore-dots", ["restore", ".."], 2, "instance: .. is not a valid instance name"),
    ("guard-traversal", ["guard", "../../etc/x"], 2, "instance: ../../etc/x is not a valid instance name"),
    ("status-traversal", ["status", "../bi"], 2, "instance: ../bi is not a valid instance name"),
    ("metrics-traversal", ["metrics", "../bi", "--out", "-"], 2, "instance: ../bi is not a valid instance name"),
    ("health-traversal", ["health", "../bi", "--rounds", "1"], 2, "instance: ../bi is not a valid instance name"),
    ("flows-slash", ["flows", "a/b"], 2, "instance: a/b is not a valid instance name"),
    ("drain-instance", ["drain", BE1, "-i", "../bi"], 2, "--instance: ../bi is not a valid instance name"),
    ("health-rounds-negative", ["health", "bi", "--rounds", "-1"], 2, "argument --rounds: '-1' is not a whole number"),
    ("health-rounds-text", ["health", "bi", "--rounds", "x"], 2, "argument --rounds: 'x' is not a whole number"),
    ("trace-seconds", ["trace", "bi", "--seconds", "0"], 2, "--seconds 0.0 is not a number from 1 to 600"),
    ("top-interval", ["top", "bi", "--once", "--interval", "0"], 2, "--interval 0.0 is not a number of seconds"),
    ("explain-scoped", ["explain", "fd00::1%eth0", "198.18.100.1:80/tcp", "-i", "bi"], 2,
     "client 'fd00::1%eth0': expected ADDRESS or ADDRESS:PORT"),
    ("weight-range", ["weight", BE1, "1001", "-i", "bi"], 2, "weight '1001' is not an integer from 0 to 1000"),
    ("ports-ifname", ["ports", "add", "x;y", "-i", "bi"], 2, "redirect ports exist only in redirect mode"),
    ("metrics-out-dir", ["metrics", "--out", "/nonexistent/dir/x.prom"], 2, "directory /nonexistent/dir does not exist"),
    ("restore-both", ["restore", "bi", "--all"], 2, "give an instance name or --all"),
]


@pytest.mark.parametrize("args,code,text", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses(lab, snap, args, code, text):
    r = cli(lab, *args)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    assert text in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("command", ["restore", "guard"])
def test_all_without_state_dir(lab, snap, command):
    missing = str(lab["tmp"] / "no-such-state-dir")
    r = cli(lab, command, "--all", state_dir=missing)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "--state-dir %s does not exist" % missing in r.stderr and r.stdout == ""
    assert not os.path.exists(missing)


def test_info_refuses_bad_name(lab, snap):
    res = info(lab, name="../bi").result
    assert res.get("failed") and res["msg"].startswith("name: ../bi is not a valid instance name"), res


def test_instance_still_serves(lab, snap):
    """After the suite's cases (and the damaged files put back) the instance is intact: a rerun changes nothing."""
    res = module(lab).result
    assert not res.get("failed") and res["changed"] is False, res
