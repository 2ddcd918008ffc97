"""A running instance is never replaced by a program with empty maps, and
restore loads only a verified object (namespaces, veth, XDP, real packets).

The nat lab of the command-line tests (tests/dataplane/nslab.py, prefix
xlbt-t<pid>): a client sends UDP flows to the VIP, the balancer keeps
them in conntrack.  Then:

- the same instance with another pin_dir is refused, and the program, its
  attachments and its conntrack entries stay as they were;
- a bpffs mounted anew over /sys/fs/bpf (by hand: mode 1777) while the
  program runs: the run is refused, the program and its maps stay;
- boot (attachments and pins gone) with an object that does not match the
  digest in the state file: restore with a compiler nobody planted in the
  state file fails clearly and runs nothing; with the recorded compiler it
  rebuilds the recorded build and loads that, not the planted object.
Everything is removed at the end, also on failure.
"""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    build, engine, maps, model, netlink, state)

import nslab
from nslab import sh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "files")
VIP = "198.18.100.1"
BE1, BE2 = "198.18.1.11", "198.18.1.12"
NOBODY = 65534


@pytest.fixture
def lab(tmp_path):
    tag = "xlbt-t%d" % os.getpid()
    ns = {"client": tag + "-c", "lb": tag + "-l", "be": tag + "-b"}
    params = {
        "name": "web", "netns": ns["lb"], "interfaces": ["front0", "back0"], "mode": "nat",
        "services": [{"vip": VIP, "port": 53, "protocol": "udp", "scheduler": "maglev",
                      "backends": [{"address": BE1}, {"address": BE2}]}],
        "ring_size": 257, "max_services": 4, "max_backends": 16, "conntrack_size": 4096,
        "source": FILES, "pin_dir": "/sys/fs/bpf/%s" % tag, "state_dir": str(tmp_path / "state"),
        "build_dir": str(tmp_path / "build")}
    deployed = False
    try:
        nslab.nat_topology(ns, [BE1, BE2])
        deployed = True
        engine.run(model.validate(params))
        yield {"ns": ns, "params": params, "tmp": tmp_path}
    finally:
        nslab.remove(ns, params, deployed)
        other = params["pin_dir"] + "x"
        if os.path.isdir(other):
            engine.remove_pins(other)


def send_udp(lab, ports):
    nslab.send_udp(lab["ns"], VIP, ports)


def live(lab):
    """(program id attached per interface, pinned program id, conntrack flows)."""
    info = engine.info(lab["params"]["state_dir"], "web")[0]
    return (dict((n, i["prog_id"]) for n, i in info["interfaces"].items()),
            (info["program"] or {}).get("id"), info["conntrack"].get("flows"))


def test_changed_pin_dir_is_refused_with_maps_intact(lab):
    send_udp(lab, range(41000, 41040))
    before = live(lab)
    assert before[2] >= 40 and set(before[0].values()) == {before[1]}, before
    old, new = lab["params"]["pin_dir"], lab["params"]["pin_dir"] + "x"
    with pytest.raises(engine.EngineError) as info:
        engine.run(model.validate(dict(lab["params"], pin_dir=new)))
    assert str(info.value).startswith(
        "pin_dir: %s differs from %s, where instance web runs (attached to back0, front0): a new pin_dir would "
        "start a new program with empty maps (conntrack lost)" % (new, old)), info.value
    assert not os.path.exists(new)
    assert live(lab) == before
    # '..' is not normalised into another directory
    with pytest.raises(model.ConfigError, match=r"pin_dir: %s/\.\./other must not contain" % old):
        model.validate(dict(lab["params"], pin_dir=old + "/../other"))
    # the unchanged instance still runs the same program with the same flows
    res = engine.run(model.validate(lab["params"]))
    assert not res["changed"], res["changes"]
    assert live(lab) == before


def test_bpffs_mounted_anew_under_a_running_instance_is_refused(lab):
    send_udp(lab, range(42000, 42030))
    before = live(lab)
    assert before[2] >= 30
    # another mount namespace with a fresh bpffs mounted by hand (mode 1777: a sticky parent, accepted)
    code = ("import json, subprocess, sys\n"
            "sys.path.insert(0, %r)\n"
            "from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model\n"
            "subprocess.check_call(['mount', '-t', 'bpf', 'bpf', '/sys/fs/bpf'])\n"
            "try:\n"
            "    engine.run(model.validate(json.loads(sys.argv[1])))\n"
            "except engine.EngineError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(3)\n" % os.path.join(ROOT, ".collections"))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", code,
                        json.dumps(lab["params"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, check=False)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.startswith("back0, front0 run(s) program %d of instance web, but %s does not hold its pins "
                               "(bpffs not mounted at /sys/fs/bpf, or mounted anew, while the program runs)"
                               % (before[1], lab["params"]["pin_dir"])), r.stdout
    assert live(lab) == before


def test_restore_loads_only_a_verified_object(lab):
    p = lab["params"]
    sfile = state.state_path(p["state_dir"], "web")
    data = state.load(sfile)
    rec = data["build"]
    obj = rec["object"]
    assert rec["object_sha256"] == build.verify_object(obj)[0] and os.path.isabs(rec["clang"])
    # boot: attachments and pins gone
    for dev in ("front0", "back0"):
        sh("ip", "-n", lab["ns"]["lb"], "link", "set", "dev", dev, "xdpdrv", "off")
    engine.remove_pins(p["pin_dir"])
    # an object of other shapes under the recorded name, with a digest file to match (as if
    # build_dir had been writable): only the state file's digest tells it apart
    other = str(lab["tmp"] / "other")
    os.mkdir(other)
    with open(build.compile_object(FILES, other, {"XDP_LB_MAX_REDIRECT": 8})[0], "rb") as f:
        planted = f.read()
    with open(obj, "wb") as f:
        f.write(planted)
    with open(build.digest_path(obj), "w") as f:
        f.write(__import__("hashlib").sha256(planted).hexdigest() + "\n")
    # a compiler in the state file that nobody wrote is never run
    fake_dir = lab["tmp"] / "fake"
    fake_dir.mkdir()
    os.chmod(str(fake_dir), 0o755)
    fake, marker = str(fake_dir / "clang"), str(lab["tmp"] / "RAN")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\ntouch %s\n" % marker)
    os.chmod(fake, 0o755)
    os.chown(fake, NOBODY, NOBODY)
    state.save(sfile, dict(data, build=dict(rec, clang=fake)))
    res = engine.restore(p["state_dir"], "web")["web"]
    assert res.get("failed"), res
    assert res["msg"].startswith("%s does not match the digest in the state file" % obj), res["msg"]
    assert "cannot be rebuilt: clang: %s is not owned by root" % fake in res["msg"], res["msg"]
    assert not os.path.exists(marker)
    with netlink.in_netns(lab["ns"]["lb"]):
        assert [a["prog_id"] for _n, _i, a in engine.programs_on(["front0", "back0"])] == []
    # the recorded compiler: the recorded build is compiled again and loaded, not the planted object
    state.save(sfile, data)
    res = engine.restore(p["state_dir"], "web")["web"]
    assert not res.get("failed"), res
    with open(obj, "rb") as f:
        assert f.read() != planted
    after = state.load(sfile)["build"]
    assert after["object_sha256"] == build.verify_object(obj)[0] and after["hash"] == rec["hash"]
    with maps.MapSet(p["pin_dir"]) as ms:
        assert ms.shape_mismatch(model.validate(p).defines()) == []
    send_udp(lab, range(43000, 43020))
    attached, pinned, flows = live(lab)
    assert set(attached.values()) == {pinned} and flows >= 20
