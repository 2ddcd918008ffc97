"""Operator overrides (overrides.py), the names xdp-lb parses (operate.py) and its entry point."""
import json
import os
import subprocess

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import model, operate, overrides, units

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 5))
SKEY = "tcp/198.18.100.1:80"


def service(weights):
    cfg = model.validate({"name": "t", "interfaces": ["lo"], "mode": "nat", "services": [
        {"vip": "198.18.100.1", "port": 80, "protocol": "tcp",
         "backends": [{"address": "198.18.1.%d" % (11 + i), "weight": w} for i, w in enumerate(weights)]}]})
    return cfg.services[0]


def key(n):
    return "%s|198.18.1.%d:80" % (SKEY, n)


def weights(svc):
    return [b.weight for b in svc.backends]


def test_precedence_override_over_health_over_weight():
    svc = service([100, 100, 100])
    assert weights(overrides.effective(svc, frozenset(), {})) == [100, 100, 100]
    # health down
    assert weights(overrides.effective(svc, frozenset([key(12)]), {})) == [100, 0, 100]
    # operator drain wins over health up, weight over health down, undrain over health down
    ovr = {key(11): {"action": "drain"}, key(12): {"action": "weight", "weight": 7},
           key(13): {"action": "undrain"}}
    assert weights(overrides.effective(svc, frozenset([key(12), key(13)]), ovr)) == [0, 7, 100]
    # configured weight 0 (inventory drain): undrain keeps 0, weight N gives flows
    svc0 = service([0, 100])
    assert weights(overrides.effective(svc0, frozenset(), {key(11): {"action": "undrain"}})) == [0, 100]
    assert weights(overrides.effective(svc0, frozenset(), {key(11): {"action": "weight", "weight": 5}})) == [5, 100]
    # the configured service is never modified
    assert weights(svc) == [100, 100, 100]


def test_files_round_trip_and_corrupt(tmp_path):
    d = str(tmp_path)
    assert overrides.load(d, "web") == {}
    overrides.save(d, "web", {key(11): {"action": "drain", "since": 1.0}})
    assert overrides.load(d, "web") == {key(11): {"action": "drain", "since": 1.0}}
    assert oct(os.stat(overrides.path(d, "web")).st_mode & 0o777) == "0o600"
    overrides.save(d, "web", {})
    assert not os.path.exists(overrides.path(d, "web"))
    for text in ("{x", json.dumps({"version": 1, "backends": {key(11): {"action": "weight", "weight": 5000}}}),
                 json.dumps({"version": 9, "backends": {}}), json.dumps({"version": 1, "backends": "x"})):
        with open(overrides.path(d, "web"), "w") as f:
            f.write(text)
        with pytest.raises(overrides.OverrideError) as exc:
            overrides.load(d, "web")
        assert overrides.path(d, "web") in str(exc.value)


def test_stale_and_describe():
    svc = service([100])
    assert overrides.stale([svc], {key(11): {}, key(99): {}}) == [key(99)]
    assert overrides.describe(key(11), {"action": "weight", "weight": 3, "since": 0}) == \
        "%s backend 198.18.1.11:80 weight 3 since 1970-01-01 00:00:00 UTC" % SKEY


@pytest.mark.parametrize("text,want", [
    ("198.18.100.1:80/tcp", "tcp/198.18.100.1:80"), ("[fd00::1]:53/udp", "udp/[fd00::1]:53"),
    ("tcp/198.18.100.1:80", "tcp/198.18.100.1:80"), ("[FD00:0::1]:53/udp", "udp/[fd00::1]:53")])
def test_service_names(text, want):
    assert operate.service_key(text) == want


@pytest.mark.parametrize("text", ["198.18.100.1:80", "tcp/198.18.100.1:80/udp", "x:80/tcp", "1.2.3.4:0/tcp",
                                  "1.2.3.4:65536/tcp", "", "fd00::1:53/udp"])
def test_bad_service_names(text):
    with pytest.raises(operate.UsageError):
        operate.service_key(text)


@pytest.mark.parametrize("text,want", [
    ("198.18.1.12", ("198.18.1.12", None)), ("198.18.1.12:8080", ("198.18.1.12", 8080)),
    ("[fd00::12]:80", ("fd00::12", 80)), ("fd00::12", ("fd00::12", None))])
def test_backend_names(text, want):
    assert operate.backend_spec(text) == want


@pytest.mark.parametrize("text", ["web-3", "198.18.1.300", "1.2.3.4:0", "[fd00::12]:x", ""])
def test_bad_backend_names(text):
    with pytest.raises(operate.UsageError):
        operate.backend_spec(text)


@pytest.mark.parametrize("text", ["-1", "1001", "x", "1.5", ""])
def test_bad_weights(text):
    with pytest.raises(operate.UsageError):
        operate.weight(text)


def test_entry_point_ignores_cwd_and_pythonpath(tmp_path):
    """The module's xdp-lb entry point (units.entry_point) runs the engine it names,
    not a planted tree in the current directory or in PYTHONPATH."""
    script = tmp_path / "xdp-lb"
    script.write_text(units.entry_point("/usr/bin/python3", os.path.join(ROOT, ".collections")))
    script.chmod(0o755)
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil"
    d = evil
    for part in ("ansible_collections", "netfleet", "xdp_lb", "plugins", "module_utils", "xdp_lb"):
        d = d / part
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("open(%r, 'w').close()\n" % str(marker))
    (d / "cli.py").write_text("open(%r, 'w').close()\n" % str(marker))
    r = subprocess.run([str(script), "--help"], cwd=str(evil), env=dict(os.environ, PYTHONPATH=str(evil)),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "drain" in r.stdout and "Exit status: 0 ok, 1 state problem, 2 usage error" in r.stdout
    assert not marker.exists()
    r = subprocess.run([str(script), "weight", "198.18.1.1", "5000"], cwd=str(evil),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert r.returncode in (1, 2) and len(r.stderr.splitlines()) == 1


def test_redirect_ports_and_file(tmp_path):
    assert overrides.redirect_ports(["r0", "r1"], {"add": ["r2"], "remove": ["r1"]}) == ["r0", "r2"]
    assert overrides.redirect_ports(["r0", "r1"], {"add": ["r0"], "remove": []}) == ["r0", "r1"]
    d = str(tmp_path)
    overrides.save(d, "rd", {}, {"add": ["r2"], "remove": []})
    assert overrides.load_ports(d, "rd") == {"add": ["r2"], "remove": []}
    # saving backends keeps the port overrides; clearing both removes the file
    overrides.save(d, "rd", {key(11): {"action": "drain"}})
    assert overrides.load_ports(d, "rd") == {"add": ["r2"], "remove": []}
    overrides.save(d, "rd", {}, {"add": [], "remove": []})
    assert not os.path.exists(overrides.path(d, "rd"))
    with open(overrides.path(d, "rd"), "w") as f:
        json.dump({"version": 1, "backends": {}, "redirect_ports": {"add": ["a/b"]}}, f)
    with pytest.raises(overrides.OverrideError):
        overrides.load_ports(d, "rd")
