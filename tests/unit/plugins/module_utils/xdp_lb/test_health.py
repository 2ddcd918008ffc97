# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health checker logic: hysteresis, weights x health, config validation (pure)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import health, model

STATE = {"config": {"services": [
    {"vip": "198.18.100.1", "port": 80, "protocol": "tcp", "scheduler": "maglev",
     "backends": [{"address": "198.18.1.11", "weight": 100, "port": 80},
                  {"address": "198.18.1.12", "weight": 50, "port": 8080}]}]}}
K1 = "tcp/198.18.100.1:80|198.18.1.11:80"
K2 = "tcp/198.18.100.1:80|198.18.1.12:8080"


class Script:
    """A prober whose answers per address are given in advance."""

    def __init__(self, answers):
        self.answers = dict((k, list(v)) for k, v in answers.items())

    def __call__(self, kind, address, port, spec, timeout):
        ok = self.answers[address].pop(0)
        return ok, None if ok else "refused"


def checker(answers, rise=2, fall=2, status=None):
    conf = health.validate_config({"rise": rise, "fall": fall})
    return health.Checker(conf, status, prober=Script(answers), clock=lambda: 0)


def test_targets_use_the_backend_port():
    assert health.targets_of(STATE) == [
        (K1, "198.18.1.11", 80, "tcp/198.18.100.1:80", "tcp"),
        (K2, "198.18.1.12", 8080, "tcp/198.18.100.1:80", "tcp")]


def test_one_failure_does_not_drain_fall_failures_do():
    c = checker({"198.18.1.11": [False, True, False, False], "198.18.1.12": [True] * 4})
    t = health.targets_of(STATE)
    assert c.step(t) == []          # one failure
    assert c.step(t) == []          # pass resets the count
    assert c.step(t) == []          # one failure again
    assert c.step(t) == [K1]        # second in a row: down
    assert c.backends[K1]["state"] == "down" and c.backends[K2]["state"] == "up"


def test_rise_passes_bring_it_back():
    status = {"backends": {K1: {"state": "down"}}}
    c = checker({"198.18.1.11": [True, False, True, True], "198.18.1.12": [True] * 4}, rise=2, status=status)
    t = health.targets_of(STATE)
    assert [c.step(t) for _i in range(4)] == [[], [], [], [K1]]
    assert c.backends[K1]["state"] == "up"


def test_effective_weights():
    cfg = model.validate({"interfaces": ["eth0"], "services": STATE["config"]["services"]})
    svc = cfg.services[0]
    assert health.effective(svc, frozenset()) is svc
    eff = health.effective(svc, frozenset([K1]))
    assert [(b.address, b.weight) for b in eff.backends] == [("198.18.1.11", 0), ("198.18.1.12", 50)]
    assert [b.weight for b in svc.backends] == [100, 50]       # configured weights untouched
    # all down: the configured weights stay
    assert health.effective(svc, frozenset([K1, K2])) is svc


@pytest.mark.parametrize("conf,field", [({"rise": 0}, "rise"), ({"fall": "2"}, "fall"),
                                        ({"interval": -1}, "interval"),
                                        ({"probes": {"tcp": {"type": "icmp"}}}, "probes[tcp].type")])
def test_bad_config_names_the_field(conf, field):
    with pytest.raises(health.HealthError, match=r"^%s: " % field.replace("[", r"\[").replace("]", r"\]")):
        health.validate_config(conf)
