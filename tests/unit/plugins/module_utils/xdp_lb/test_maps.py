# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""maps: stable ids, desired tables, plan ordering, apply/rollback (on a fake map set)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import flowhash, layout, maps
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.maps import Tables
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.model import validate

RING = 1009


def cfg_of(services, **over):
    params = {"interfaces": ["xlbit0"], "ring_size": RING, "services": services}
    params.update(over)
    return validate(params)


WEB = {"vip": "198.18.0.10", "port": 80, "backends": [{"address": "198.18.1.1"}, {"address": "198.18.1.2"}]}
DNS = {"vip": "fd00:18::53", "port": 53, "protocol": "udp", "scheduler": "ip_hash",
       "backends": [{"address": "fd00:18::1:1"}]}


def desired(cfg, live=None, prev_ids=None, snat4="198.18.2.1", snat6="fd00:18:2::1", tx=None):
    live = live or Tables()
    sids, bids = maps.assign_ids(cfg.services, live, prev_ids, cfg.max_services, cfg.max_backends)
    want = maps.desired_tables(cfg, sids, bids, live, snat4, snat6, tx)
    return sids, bids, want


def test_first_apply_order_and_content():
    cfg = cfg_of([WEB, DNS])
    sids, bids, want = desired(cfg)
    assert sids == {"tcp/198.18.0.10:80": 0, "udp/[fd00:18::53]:53": 1}
    assert bids == {"tcp/198.18.0.10:80|198.18.1.1:80": 1, "tcp/198.18.0.10:80|198.18.1.2:80": 2,
                    "udp/[fd00:18::53]:53|fd00:18::1:1:53": 3}
    ops = maps.plan(Tables(), want, RING)
    steps = [op.step for op in ops]
    # backends (each new id first gets zeroed counters), rings, the VIPs' filter bits, services,
    # config; in that order
    assert steps == ["backends"] * 6 + ["rings"] * 2 + ["vip_filter"] * 2 + ["services"] * 2 + ["config"]
    bits = layout.DEFAULT_SIZES["XDP_LB_VIP_FILTER_BITS"]
    for vip, op in zip(("198.18.0.10", "fd00:18::53"), sorted(
            [o for o in ops if o.step == "vip_filter"],
            key=lambda o: o.key != flowhash.vip_filter_bit("198.18.0.10", bits) // 64)):
        bit = flowhash.vip_filter_bit(vip, bits)
        assert op.map == "lb_vip_filter" and op.key == bit // 64 and op.new >> (bit % 64) & 1
    assert [(op.map, op.kind) for op in ops[:2]] == [("lb_be_stats", "clear"), ("lb_backends", "update")]
    be = layout.LbBackend.from_buffer_copy(want.backends[1])
    assert (be.flags, be.service_id, layout.ntohs(be.port), be.family) == (1, 0, 80, 2)
    assert layout.unpack_addr(be.addr, be.family) == "198.18.1.1"
    svc = layout.LbService.from_buffer_copy(want.services["udp/[fd00:18::53]:53"][1])
    assert (svc.id, svc.ring_slot, svc.sched) == (1, 0, layout.SCHEDULERS["ip_hash"])
    conf = maps.decode_config(layout.LbConfig.from_buffer_copy(want.config))
    assert conf == {"mode": "nat", "redirect_algorithm": "flow_hash", "redirect_count": 0,
                    "nat_port_min": 20000, "nat_port_max": 32767, "nat_source_ipv4": "198.18.2.1",
                    "nat_source_ipv6": "fd00:18:2::1", "flow_idle_timeout": 30}
    assert len(want.rings[0]) == RING and set(want.rings[0]) == {1, 2}


def test_no_change_means_no_ops():
    cfg = cfg_of([WEB, DNS])
    _s, _b, want = desired(cfg)
    live = want                      # what the first apply leaves behind
    _s2, _b2, again = desired(cfg, live)
    assert maps.plan(live, again, RING) == []


def test_weight_change_writes_inactive_ring_then_flips():
    cfg = cfg_of([WEB])
    _s, _b, live = desired(cfg)
    changed = cfg_of([dict(WEB, backends=[{"address": "198.18.1.1", "weight": 300}, {"address": "198.18.1.2"}])])
    sids, bids, want = desired(changed, live)
    ops = maps.plan(live, want, RING)
    assert [(op.step, op.map, op.kind) for op in ops] == [
        ("rings", "lb_ring", "ring"), ("services", "lb_services", "update")]
    assert ops[0].key == (0, 1)       # the inactive slot, written in full
    assert len(ops[0].new) == RING
    assert layout.LbService.from_buffer_copy(ops[1].new).ring_slot == 1
    # and back: slot 0 again
    _s, _b, back = desired(cfg, want)
    ops = maps.plan(want, back, RING)
    assert ops[0].key == (0, 0)


def test_backend_removed_and_added_keeps_ids_stable():
    cfg = cfg_of([dict(WEB, backends=[{"address": "198.18.1.%d" % i} for i in (1, 2, 3)])])
    _s, bids, live = desired(cfg)
    cfg2 = cfg_of([dict(WEB, backends=[{"address": "198.18.1.%d" % i} for i in (1, 3, 4)])])
    _s, bids2, want = desired(cfg2, live)
    k = "tcp/198.18.0.10:80|198.18.1.%d:80"
    assert bids2[k % 1] == bids[k % 1] and bids2[k % 3] == bids[k % 3]
    # the new backend must not take the removed one's id in the same run
    assert bids2[k % 4] not in bids.values()
    ops = maps.plan(live, want, RING)
    assert [op.step for op in ops] == ["backends", "backends", "rings", "services", "removed_backends"]
    removed = ops[-1]
    assert removed.key == bids[k % 2]
    assert bytes(layout.LbBackend()) == removed.new     # flags 0: the slot is cleared
    # next run: the cleared id is free again and is reused first
    cfg3 = cfg_of([dict(WEB, backends=[{"address": "198.18.1.%d" % i} for i in (1, 3, 4, 5)])])
    after_removal = Tables(want.config, want.services, dict(want.backends), want.rings)
    _s, bids3, _w = desired(cfg3, after_removal)
    assert bids3[k % 5] == bids[k % 2]


def test_ids_come_back_from_the_state_file_after_reboot():
    cfg = cfg_of([WEB, DNS])
    sids, bids, _w = desired(cfg)
    # reverse the order: without prev ids they would be allocated differently
    cfg_rev = cfg_of([DNS, WEB])
    sids2, bids2, _w = desired(cfg_rev, Tables(), {"services": sids, "backends": bids})
    assert sids2 == sids and bids2 == bids
    sids3, bids3, _w = desired(cfg_rev, Tables())
    assert sids3 != sids


def test_live_ids_win_over_state_file():
    cfg = cfg_of([WEB])
    _s, _b, live = desired(cfg)
    sids, bids, _w = desired(cfg, live, {"services": {"tcp/198.18.0.10:80": 7},
                                         "backends": {"tcp/198.18.0.10:80|198.18.1.1:80": 9}})
    assert sids["tcp/198.18.0.10:80"] == 0 and bids["tcp/198.18.0.10:80|198.18.1.1:80"] == 1


def test_removed_service_after_new_and_id_not_reused_in_same_run():
    cfg = cfg_of([WEB])
    _s, _b, live = desired(cfg)
    cfg2 = cfg_of([DNS])
    sids, bids, want = desired(cfg2, live)
    assert sids["udp/[fd00:18::53]:53"] == 1
    ops = maps.plan(live, want, RING)
    steps = [op.step for op in ops]
    # the new VIP's filter bit before its service, the old one's cleared after its removal
    assert steps == ["backends", "backends", "rings", "vip_filter", "services", "removed_services",
                     "removed_vip_filter", "removed_backends", "removed_backends"]
    assert ops[5].kind == "delete" and ops[5].note == "tcp/198.18.0.10:80"
    assert ops[3].new == live.vip_filter.get(ops[3].key, 0) | want.vip_filter[ops[3].key]
    assert ops[6].new == want.vip_filter.get(ops[6].key)


def test_scheduler_change_ip_hash_to_five_tuple_keeps_the_ring():
    cfg = cfg_of([DNS])
    _s, _b, live = desired(cfg)
    cfg2 = cfg_of([dict(DNS, scheduler="five_tuple")])
    _s, _b, want = desired(cfg2, live)
    ops = maps.plan(live, want, RING)
    assert [(op.step, op.kind) for op in ops] == [("services", "update")]
    assert layout.LbService.from_buffer_copy(ops[0].new).ring_slot == 0


def test_redirect_ports_grow_before_config_and_shrink_after():
    r = validate({"interfaces": ["xlbit0"], "mode": "redirect", "redirect_interfaces": ["a", "b", "c"]})
    _s, _b, live = desired(r, tx=[11, 12, 13])
    ops = maps.plan(Tables(), live, RING)
    assert [op.step for op in ops] == ["tx_ports"] * 3 + ["config"]
    r2 = validate({"interfaces": ["xlbit0"], "mode": "redirect", "redirect_interfaces": ["a"]})
    _s, _b, want = desired(r2, live, tx=[11])
    ops = maps.plan(live, want, RING)
    assert [(op.step, op.kind, op.key) for op in ops] == [
        ("config", "update", 0), ("removed_tx_ports", "delete", 1), ("removed_tx_ports", "delete", 2)]
    assert maps.decode_config(layout.LbConfig.from_buffer_copy(want.config))["redirect_count"] == 1
    assert maps.decode_config(layout.LbConfig.from_buffer_copy(want.config))["nat_source_ipv4"] is None


def test_summarize_counts_per_map_and_step():
    cfg = cfg_of([WEB])
    _s, _b, want = desired(cfg)
    lines = maps.summarize(maps.plan(Tables(), want, RING))
    assert lines == ["lb_backends: backends 2 entries",
                     "lb_ring: rings 1 entry (tcp/198.18.0.10:80 slot 0)",
                     "lb_vip_filter: vip filter 1 entry",
                     "lb_services: services 1 entry (tcp/198.18.0.10:80)",
                     "lb_config: config 1 entry"]


def test_expected_map_shapes():
    shapes = maps.expected_map_shapes({"XDP_LB_RING_SIZE": 101, "XDP_LB_MAX_SERVICES": 4})
    assert shapes["lb_ring"][1:] == (4, 8, 2 * 4 * 26)      # 101 ids, 4 to a value
    assert shapes["lb_services"] == (1, 20, 16, 4)
    assert shapes["lb_backends"][1:] == (4, 44, 4096)      # ABI 6: with the service key
    assert "lb_svc_cache" not in shapes


def test_backends_carry_their_service_key():
    """ABI 6: each backend holds the lb_services key of its service (the
    conntrack hit compares the packet with it)."""
    cfg = cfg_of([WEB, DNS])
    sids, bids, want = desired(cfg)
    for svc in cfg.services:
        key, dummy = want.services[svc.key]
        for b in svc.backends:
            be = layout.LbBackend.from_buffer_copy(
                want.backends[bids[maps.backend_key_str(svc.key, b.address, b.port)]])
            assert be.service_id == sids[svc.key] and bytes(be.service) == key


class FakeMap:
    def __init__(self, name, store, fail_on=None):
        self.name, self.store, self.fail_on = name, store, fail_on

    def _k(self, key):
        return bytes(key) if not isinstance(key, int) else key

    def update(self, key, value, flags=0):
        if self.fail_on is not None and self.fail_on(self.name, key):
            raise OSError("injected failure on %s" % self.name)
        self.store[(self.name, self._k(key))] = bytes(value) if not isinstance(value, list) else "percpu"

    def delete(self, key):
        self.store.pop((self.name, self._k(key)), None)
        return True

    def update_batch(self, keys, values):
        for k, v in zip(keys, values):
            self.store[(self.name, k)] = v


class FakeMapSet:
    def __init__(self, fail_on=None):
        self.store = {}
        self.fail_on = fail_on

    def get(self, name):
        return FakeMap(name, self.store, self.fail_on)


def test_apply_failure_restores_previous_content(monkeypatch):
    monkeypatch.setattr(maps.bpf, "possible_cpus", lambda: 2)
    cfg = cfg_of([WEB])
    _s, _b, live = desired(cfg)
    ms = FakeMapSet()
    maps.apply(ms, maps.plan(Tables(), live, RING))
    before = dict(ms.store)
    cfg2 = cfg_of([dict(WEB, backends=[{"address": "198.18.1.1"}, {"address": "198.18.1.9"}])])
    _s, _b, want = desired(cfg2, live)
    ops = maps.plan(live, want, RING)
    # fail at the last write: clearing the removed backend (after backends, rings and services)
    ms.fail_on = lambda name, key: name == "lb_backends" and bytes(key) == bytes(layout.U32(2))
    with pytest.raises(OSError):
        maps.apply(ms, ops)

    def content(store):
        # arrays: a zeroed entry is an absent one; the inactive ring and counters are not content
        zero = bytes(layout.LbBackend())
        return dict((k, v) for k, v in store.items()
                    if k[0] not in ("lb_ring", "lb_be_stats") and v != zero)
    assert content(ms.store) == content(before)
    assert ("lb_backends", bytes(layout.U32(3))) in ms.store     # the new backend was written, then undone


def _final_tables(history):
    """The desired tables after applying each config of ``history`` in turn (live = the previous)."""
    live = Tables()
    for services in history:
        dummy, bids, want = desired(cfg_of(services), live)
        live = Tables(want.config, want.services, dict(want.backends), want.rings)
    return live, bids


def _addr_digest(t, skey):
    sid = t.service_entry(skey)[0]
    return maps.ring_addr_digest(t.rings[sid], t.backends), maps.ring_digest(t.rings[sid])


def test_ring_addr_digest_is_independent_of_history():
    """A host that saw an add and a removal gives its backends other ids
    than one deployed straight to the final state: the id-level ring digest
    differs, the address-level one does not."""
    b = ["198.18.1.%d" % i for i in range(1, 6)]
    final = [dict(WEB, backends=[{"address": a} for a in (b[0], b[2], b[3])])]
    straight, ids1 = _final_tables([final])
    winding, ids2 = _final_tables([
        [dict(WEB, backends=[{"address": a} for a in (b[1], b[4])])],
        [dict(WEB, backends=[{"address": a} for a in (b[1], b[4], b[0])])],
        [dict(WEB, backends=[{"address": a} for a in (b[4], b[0], b[2], b[3])])],
        final])
    assert ids1 != ids2
    addr1, ring1 = _addr_digest(straight, "tcp/198.18.0.10:80")
    addr2, ring2 = _addr_digest(winding, "tcp/198.18.0.10:80")
    assert ring1 != ring2
    assert addr1 == addr2 and len(addr1) == 64
    # a different backend (address or port) is a different table
    other, dummy = _final_tables([[dict(WEB, backends=[{"address": a} for a in (b[0], b[2], b[4])])]])
    assert _addr_digest(other, "tcp/198.18.0.10:80")[0] != addr1
    port, dummy = _final_tables([[dict(WEB, backends=[{"address": b[0]}, {"address": b[2]},
                                                      {"address": b[3], "port": 8080}])]])
    assert _addr_digest(port, "tcp/198.18.0.10:80")[0] != addr1
    assert maps.ring_addr_digest(None, {}) is None


def test_dataplane_now_reads_jiffies_from_timer_list(tmp_path):
    timer = tmp_path / "timer_list"
    timer.write_text("Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 1 nsecs\n\n"
                     "jiffies: 4295067296\n")
    assert maps.dataplane_now(250, str(timer)) == 4295067296


def test_dataplane_now_estimates_jiffies_without_timer_list(tmp_path):
    import time
    hz = 250
    want = (2 ** 32 - 300 * hz) + time.clock_gettime_ns(time.CLOCK_MONOTONIC) * hz // 10 ** 9
    assert abs(maps.dataplane_now(hz, str(tmp_path / "missing")) - want) <= hz


def test_dataplane_now_without_hz_is_coarse_monotonic_ns():
    import time
    now = maps.dataplane_now(None)
    assert abs(now - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) < 10 ** 8


def test_flow_idle_timeout_goes_into_lb_config():
    dummy, dummy, want = desired(cfg_of([WEB], flow_idle_timeout=90))
    assert layout.LbConfig.from_buffer_copy(want.config).flow_idle_timeout == 90
