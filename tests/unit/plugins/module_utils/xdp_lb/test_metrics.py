"""Prometheus text format of the counters (metrics.py): pure, from engine.info-shaped data."""
import os
import re

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import metrics, state

# One sample line of the text exposition format: name{label="value",...} number
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} '
                     r'(-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text):
    """{(name, frozenset(labels)): value}, checking every line's grammar and HELP/TYPE order."""
    out, typed = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _h, _t, name, mtype = line.split(" ")
            assert name not in typed, "TYPE twice for %s" % name
            assert mtype in ("counter", "gauge")
            typed[name] = mtype
            continue
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name = m.group(1)
        assert name in typed, "sample before its TYPE: %r" % line
        labels = frozenset((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                           for k, v in _LABEL.findall(m.group(2)))
        key = (name, labels)
        assert key not in out, "duplicate series %r" % (key,)
        out[key] = float(m.group(3))
    for name, mtype in typed.items():
        if mtype == "counter":
            assert name.endswith("_total")
    return out


def L(**kw):
    return frozenset(kw.items())


WEB = {
    "name": "web", "mode": "nat", "netns": None,
    "program": {"id": 280, "tag": "592db18b994f390f", "pinned": True},
    "interfaces": {"front0": {"ifindex": 2, "prog_id": 280, "mode": "native", "tag": "592db18b994f390f",
                              "ours": True},
                   "back0": {"ifindex": 3, "prog_id": None, "mode": None, "tag": None, "ours": False}},
    "services": [
        {"service": "tcp/198.18.100.1:80", "id": 0, "scheduler": "maglev", "ring_slot": 1, "ring": "abc",
         "backends": [{"address": "198.18.1.11", "port": 0, "id": 1, "weight": 100, "packets": 7, "bytes": 490},
                      {"address": "198.18.1.12", "port": 8080, "id": 2, "weight": 0, "packets": 0,
                       "bytes": 0}]},
        {"service": "udp/[fd00:18:100::1]:53", "id": 1, "scheduler": "ip_hash", "ring_slot": 0, "ring": "def",
         "backends": [{"address": "fd00:18:1::11", "port": 53, "id": 3, "weight": None,
                       "packets": 2 ** 40, "bytes": 2 ** 50}]},
    ],
    "stats": {"pass": {"packets": 10, "bytes": 524}, "tx": {"packets": 7, "bytes": 490},
              "nat_reply": {"packets": 1, "bytes": 47}},
    "redirect_ports": [],
    "conntrack": {"flows": 5, "nat_flows": 4},
}


def test_render_counters_and_labels():
    got = parse(metrics.render([WEB]))
    assert got[("xdp_lb_up", L(instance="web"))] == 1
    svc = "tcp/198.18.100.1:80"
    # backend port 0 means the service's port
    assert got[("xdp_lb_packets_total", L(instance="web", service=svc, backend="198.18.1.11:80"))] == 7
    assert got[("xdp_lb_bytes_total", L(instance="web", service=svc, backend="198.18.1.11:80"))] == 490
    assert got[("xdp_lb_backend_weight", L(instance="web", service=svc, backend="198.18.1.12:8080"))] == 0
    v6 = ("udp/[fd00:18:100::1]:53", "[fd00:18:1::11]:53")
    assert got[("xdp_lb_packets_total", L(instance="web", service=v6[0], backend=v6[1]))] == 2 ** 40
    # no weight known (no state record): no weight sample, counters still there
    assert ("xdp_lb_backend_weight", L(instance="web", service=v6[0], backend=v6[1])) not in got
    assert got[("xdp_lb_verdict_packets_total", L(instance="web", verdict="nat_reply"))] == 1
    assert got[("xdp_lb_verdict_bytes_total", L(instance="web", verdict="pass"))] == 524
    assert got[("xdp_lb_program_info", L(instance="web", interface="front0", prog_id="280", mode="native",
                                         tag="592db18b994f390f"))] == 1
    assert got[("xdp_lb_program_info", L(instance="web", interface="back0", prog_id="", mode="",
                                         tag="592db18b994f390f"))] == 0
    assert got[("xdp_lb_conntrack_entries", L(instance="web", table="nat_flows"))] == 4
    # big counters stay exact integers (no float formatting)
    assert "} %d\n" % 2 ** 50 in metrics.render([WEB])


def test_failed_instance_is_down_and_others_still_reported():
    text = metrics.render([{"name": "broken", "error": "no state file /x/broken.json"}, WEB])
    got = parse(text)
    assert got[("xdp_lb_up", L(instance="broken"))] == 0
    assert got[("xdp_lb_up", L(instance="web"))] == 1
    assert not [k for k in got if dict(k[1]).get("instance") == "broken" and k[0] != "xdp_lb_up"]


def test_redirect_ports():
    inst = {"name": "r", "interfaces": {}, "services": [], "stats": {},
            "redirect_ports": [{"slot": 0, "ifindex": 4, "interface": "out0", "packets": 3, "bytes": 180},
                               {"slot": 1, "ifindex": 9, "interface": None, "packets": 0, "bytes": 0}],
            "conntrack": {}}
    got = parse(metrics.render([inst]))
    assert got[("xdp_lb_redirect_packets_total", L(instance="r", interface="out0", slot="0"))] == 3
    assert got[("xdp_lb_redirect_bytes_total", L(instance="r", interface="9", slot="1"))] == 0


def test_escaping_in_label_values():
    inst = dict(WEB, name='we"b\\x\ny')
    got = parse(metrics.render([inst]))
    assert got[("xdp_lb_up", L(instance='we"b\\x\ny'))] == 1
    assert metrics.escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_no_instances_gives_empty_file():
    assert metrics.render([]) == ""


def test_help_and_type_once_per_metric_in_fixed_order():
    text = metrics.render([WEB, dict(WEB, name="other")])
    types = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    order = [m[0] for m in metrics.METRICS]
    assert types == [n for n in order if n in types]
    assert len(types) == len(set(types))
    parse(text)


def test_backend_label():
    assert metrics.backend_label("198.18.1.11", 0, 80) == "198.18.1.11:80"
    assert metrics.backend_label("fd00:18:1::11", 53, 53) == "[fd00:18:1::11]:53"


def test_write_atomic_replaces_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "netfleet-xdp-lb.prom"
    target.write_text("old\n")
    state.write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert sorted(os.listdir(str(tmp_path))) == ["netfleet-xdp-lb.prom"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "netfleet-xdp-lb.prom"
    target.write_text("old\n")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(state.os, "rename", boom)
    with pytest.raises(OSError):
        state.write_atomic(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(str(tmp_path))) == ["netfleet-xdp-lb.prom"]
