# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""maps.service_rings: a ring is built only when its inputs or its live copy changed.

The recorded digests come from the previous run (its ``record``); ``live``
is what read_tables gives, here the desired tables of the previous run
(what its apply left in the maps).  maglev.build_table is replaced by a
counting wrapper, so a test sees whether a ring was built.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, health, layout, maglev, maps
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.maps import Tables
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.model import validate

RING = 1009
WEB = {"vip": "198.18.0.10", "port": 80,
       "backends": [{"address": "198.18.1.1"}, {"address": "198.18.1.2"}, {"address": "198.18.1.3"}]}
DNS = {"vip": "fd00:18::53", "port": 53, "protocol": "udp", "scheduler": "ip_hash",
       "backends": [{"address": "fd00:18::1:1"}, {"address": "fd00:18::1:2", "weight": 300}]}
WEB_KEY = "tcp/198.18.0.10:80"
DNS_KEY = "udp/[fd00:18::53]:53"


def cfg_of(services, ring_size=RING):
    return validate({"interfaces": ["xlbit0"], "ring_size": ring_size, "services": services})


@pytest.fixture
def builds(monkeypatch):
    """List of the schedulers of the rings built (every call of maglev.build_table)."""
    calls = []
    real = maglev.build_table

    def counting(scheduler, backends, size, empty=0):
        calls.append(scheduler)
        return real(scheduler, backends, size, empty)
    monkeypatch.setattr(maglev, "build_table", counting)
    return calls


def step(cfg, live=None, recorded=None, down=frozenset()):
    """One run's ring part, as the engine does it: (rings, record, built, want tables)."""
    live = live or Tables()
    sids, bids = maps.assign_ids(cfg.services, live, None, cfg.max_services, cfg.max_backends)
    services = [health.effective(s, down) for s in cfg.services]
    rings, record, built = maps.service_rings(services, sids, bids, cfg.ring_size, live, recorded)
    want = maps.desired_tables(cfg, sids, bids, live, "198.18.2.1", "fd00:18:2::1", [], rings)
    return rings, record, built, want


def test_first_run_builds_every_ring_and_records_its_digests(builds):
    cfg = cfg_of([WEB, DNS])
    rings, record, built, want = step(cfg)
    assert sorted(built) == [WEB_KEY, DNS_KEY] and sorted(builds) == ["ip_hash", "maglev"]
    for skey in (WEB_KEY, DNS_KEY):
        assert record[skey]["ring"] == maps.ring_digest(rings[skey], full=True)
        assert len(record[skey]["inputs"]) == 64
        assert rings[skey] == want.rings[maps.assign_ids(cfg.services, Tables(), None, 4, 4096)[0][skey]]


def test_no_op_rerun_takes_the_live_rings_and_plans_nothing(builds):
    cfg = cfg_of([WEB, DNS])
    _r, record, _b, live = step(cfg)
    del builds[:]
    rings, record2, built, want = step(cfg, live, record)
    assert built == [] and builds == []
    assert record2 == record
    sid = live.service_entry(WEB_KEY)[0]
    assert rings[WEB_KEY] is live.rings[sid]      # the live ring itself, not a copy built again
    assert maps.plan(live, want, RING) == []


def test_state_file_round_trip_of_the_record(builds):
    """The record survives JSON (the state file) and still matches."""
    import json
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    del builds[:]
    _r, _rec, built, _w = step(cfg, live, json.loads(json.dumps(record)))
    assert built == [] and builds == []


@pytest.mark.parametrize("change", ["weight", "backend added", "backend removed", "scheduler", "port"])
def test_changed_inputs_build_the_ring_again(builds, change):
    cfg = cfg_of([WEB, DNS])
    _r, record, _b, live = step(cfg)
    web = dict(WEB)
    if change == "weight":
        web["backends"] = [{"address": "198.18.1.1", "weight": 50}] + WEB["backends"][1:]
    elif change == "backend added":
        web["backends"] = WEB["backends"] + [{"address": "198.18.1.4"}]
    elif change == "backend removed":
        web["backends"] = WEB["backends"][:2]
    elif change == "scheduler":
        web["scheduler"] = "five_tuple"
    elif change == "port":
        web["backends"] = [{"address": "198.18.1.1", "port": 8080}] + WEB["backends"][1:]
    del builds[:]
    rings, record2, built, want = step(cfg_of([web, DNS]), live, record)
    assert built == [WEB_KEY]                     # DNS did not change: taken from the maps
    assert record2[WEB_KEY]["inputs"] != record[WEB_KEY]["inputs"]
    assert record2[DNS_KEY] == record[DNS_KEY]
    ops = maps.plan(live, want, RING)
    rings_written = [op for op in ops if op.step == "rings"]
    if change == "scheduler" and rings[WEB_KEY] == live.rings[live.service_entry(WEB_KEY)[0]]:
        assert rings_written == []
    else:
        assert [op.note.split()[0] for op in rings_written] == [WEB_KEY]


def test_ring_size_is_an_input(builds):
    _r, record, _b, live = step(cfg_of([WEB]))
    _r, record2, built, _w = step(cfg_of([WEB], ring_size=1013), live, record)
    assert built == [WEB_KEY] and record2[WEB_KEY]["inputs"] != record[WEB_KEY]["inputs"]


def test_backend_order_is_not_an_input():
    svc1 = cfg_of([WEB]).services[0]
    svc2 = cfg_of([dict(WEB, backends=list(reversed(WEB["backends"])))]).services[0]
    _s, bids = maps.assign_ids([svc1], Tables(), None, 4, 4096)
    assert maps.ring_inputs_digest(svc1, bids, RING) == maps.ring_inputs_digest(svc2, bids, RING)


def test_backend_ids_are_an_input():
    """The ring stores ids: same backends under other ids is another ring."""
    svc = cfg_of([WEB]).services[0]
    _s, bids = maps.assign_ids([svc], Tables(), None, 4, 4096)
    other = dict((k, v + 10) for k, v in bids.items())
    assert maps.ring_inputs_digest(svc, bids, RING) != maps.ring_inputs_digest(svc, other, RING)


def test_algorithm_version_is_an_input(monkeypatch):
    svc = cfg_of([WEB]).services[0]
    _s, bids = maps.assign_ids([svc], Tables(), None, 4, 4096)
    before = maps.ring_inputs_digest(svc, bids, RING)
    monkeypatch.setattr(maps, "RING_ALGORITHM", maps.RING_ALGORITHM + 1)
    assert maps.ring_inputs_digest(svc, bids, RING) != before


def test_health_drain_and_recovery_build_the_ring(builds):
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    down = frozenset(["tcp/198.18.0.10:80|198.18.1.2:80"])
    del builds[:]
    rings, drained, built, want = step(cfg, live, record, down)
    assert built == [WEB_KEY]
    bid = maps.assign_ids(cfg.services, live, None, 4, 4096)[1]["tcp/198.18.0.10:80|198.18.1.2:80"]
    assert bid not in rings[WEB_KEY]
    # applied: the next run with the backend still down is a no-op, its recovery builds again
    del builds[:]
    _r, again, built, _w = step(cfg, want, drained, down)
    assert built == [] and again == drained
    _r, recovered, built, _w = step(cfg, want, drained)
    assert built == [WEB_KEY] and recovered == record


def test_ring_changed_by_hand_is_repaired(builds):
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    sid, slot, _sched = live.service_entry(WEB_KEY)
    tampered = list(live.rings[sid])
    tampered[7] = tampered[7] % 3 + 1 if tampered[7] != tampered[8] else tampered[7] + 1
    assert tampered != list(live.rings[sid])
    hand = Tables(live.config, live.services, live.backends, {sid: tuple(tampered)}, live.tx_ports,
                  live.vip_filter)
    del builds[:]
    rings, record2, built, want = step(cfg, hand, record)
    assert built == [WEB_KEY] and record2 == record     # the same inputs give the recorded ring
    ops = maps.plan(hand, want, RING)
    assert [(op.step, op.key) for op in ops] == [("rings", (sid, 1 - slot)), ("services", ops[1].key)]
    assert ops[0].new == live.rings[sid]
    assert layout.LbService.from_buffer_copy(ops[1].new).ring_slot == 1 - slot


def test_unreadable_or_missing_live_ring_builds(builds):
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    sid = live.service_entry(WEB_KEY)[0]
    cases = [
        Tables(),                                                                 # maps recreated / empty
        Tables(live.config, live.services, live.backends, {sid: None}),          # ring slot out of range
        Tables(live.config, live.services, live.backends, {sid: live.rings[sid][:-1]}),   # wrong size
    ]
    for hand in cases:
        del builds[:]
        _r, record2, built, _w = step(cfg, hand, record)
        assert built == [WEB_KEY] and record2 == record


def test_recorded_but_service_id_changed_builds(builds):
    """The live service under another id than this run assigns: its ring is not trusted."""
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    sid = live.service_entry(WEB_KEY)[0]
    sids, bids = maps.assign_ids(cfg.services, live, None, 4, 4096)
    del builds[:]
    _r, _rec, built = maps.service_rings(cfg.services, dict(sids, **{WEB_KEY: sid + 1}), bids, RING, live,
                                         record)
    assert built == [WEB_KEY]


@pytest.mark.parametrize("bad", [None, {}, "garbage", {"inputs": None}, {WEB_KEY: "x"},
                                 {WEB_KEY: {"inputs": 1, "ring": 2}}])
def test_missing_or_odd_record_builds(builds, bad):
    """No record (first run after an upgrade, state file from an older version) or a broken one."""
    cfg = cfg_of([WEB])
    _r, record, _b, live = step(cfg)
    del builds[:]
    _r, record2, built, _w = step(cfg, live, bad if isinstance(bad, dict) else None)
    assert built == [WEB_KEY] and record2 == record


def test_ring_digest_full_and_short():
    ring = tuple(range(1, 50))
    full = maps.ring_digest(ring, full=True)
    assert len(full) == 64 and maps.ring_digest(ring) == full[:12]
    assert maps.ring_digest(None, full=True) is None


def test_describe_with_known_digests_is_unchanged():
    """describe_config/describe_tables given the recorded digests say what they computed before."""
    cfg = cfg_of([WEB, DNS])
    rings, record, _b, live = step(cfg)
    sids, bids = maps.assign_ids(cfg.services, live, None, 4, 4096)
    digests = dict((k, v["ring"]) for k, v in record.items())
    assert engine.describe_config(cfg, sids, bids, rings, digests) == engine.describe_config(cfg, sids, bids, rings)
    live_digests = dict((sids[k], v["ring"][:12]) for k, v in record.items())
    assert engine.describe_tables(live, {}, live_digests) == engine.describe_tables(live, {})
