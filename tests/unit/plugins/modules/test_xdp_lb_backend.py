# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netfleet.xdp_lb.xdp_lb_backend through main(), for real: in a forked
child that has its own (anonymous) network namespace, so the VIPs on its
lo and its net.ipv4.conf.all.* sysctls are its own; files in a temporary
directory.  systemd is not PID 1 here: the result says what would have
run."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb_backend

from modutils import run_module
from netns_fork import in_own_netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")


def test_present_rerun_change_absent(tmp_path):
    base = dict(systemd_dir=str(tmp_path / "systemd"), state_dir=str(tmp_path / "state"),
                sysctls=dict(file=str(tmp_path / "sysctl.conf")))

    def scenario():
        def run(**kw):
            return run_module(xdp_lb_backend.main, dict(base, **kw), check_mode=kw.pop("_check", False)).result

        def sysctl(key):
            with open("/proc/sys/net/ipv4/conf/all/" + key) as handle:
                return handle.read().strip()

        def addrs():
            return sorted(os.popen("ip -j addr show dev lo").read().count(v) for v in ("198.18.100.1", "fd00:18:100::1"))
        before = dict((k, sysctl(k)) for k in ("arp_ignore", "arp_announce", "rp_filter"))
        out = {"before": before}
        out["check"] = run_module(xdp_lb_backend.main, dict(base, vips=["198.18.100.1", "fd00:18:100::1"]),
                                  check_mode=True, diff=True).result
        out["check_addrs"] = addrs()
        out["first"] = run(vips=["198.18.100.1", "fd00:18:100::1"])
        out["first_sysctl"] = dict((k, sysctl(k)) for k in before)
        out["first_addrs"] = addrs()
        out["rerun"] = run(vips=["198.18.100.1", "fd00:18:100::1"])
        out["drop"] = run(vips=["198.18.100.1"])
        out["bad"] = run(vips=["198.18.100.1", "not-an-ip"])
        out["absent"] = run(state="absent", vips=["198.18.100.1"])
        out["absent_sysctl"] = dict((k, sysctl(k)) for k in before)
        out["absent_addrs"] = addrs()
        return out

    out = in_own_netns(scenario)
    unit = tmp_path / "systemd" / "netfleet-xdp-lb-backend.service"
    assert out["check"]["changed"] is True and out["check"]["vips_added"] == ["198.18.100.1/32", "fd00:18:100::1/128"]
    assert "backend VIP unit %s: missing" % unit in out["check"]["drift"]
    assert out["check_addrs"] == [0, 0]
    first = out["first"]
    assert first["changed"] is True and first["vips_added"] == ["198.18.100.1/32", "fd00:18:100::1/128"]
    assert "sysctl net.ipv4.conf.all.arp_ignore=1" in first["changed_items"]
    assert first["systemctl"] == ["systemctl daemon-reload"] and first["systemctl_ran"] is False
    assert out["first_sysctl"] == {"arp_ignore": "1", "arp_announce": "2", "rp_filter": "2"}
    assert out["first_addrs"] == [1, 1]
    assert out["rerun"]["changed"] is False and out["rerun"]["drift"] == [] and out["rerun"]["systemctl"] == []
    assert out["drop"]["changed"] is True and out["drop"]["vips_removed"] == ["fd00:18:100::1/128"]
    assert out["bad"]["failed"] and out["bad"]["msg"] == "vips[1]: 'not-an-ip' is not an IP address; nothing changed"
    absent = out["absent"]
    assert absent["changed"] is True and absent["vips_removed"] == ["198.18.100.1/32"]
    assert absent["systemctl"] == ["systemctl disable netfleet-xdp-lb-backend.service", "systemctl daemon-reload"]
    assert out["absent_sysctl"] == out["before"] and out["absent_addrs"] == [0, 0]
    assert sorted(os.listdir(str(tmp_path))) == ["systemd"]
    assert os.listdir(str(tmp_path / "systemd" / "multi-user.target.wants")) == []
