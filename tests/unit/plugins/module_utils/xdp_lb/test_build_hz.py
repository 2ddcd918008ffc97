# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""build.kernel_hz: CONFIG_HZ from /boot/config-<release> or /proc/config.gz."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build


def test_boot_config_first(tmp_path):
    (tmp_path / "config-6.1.0").write_text("CONFIG_HZ_250=y\nCONFIG_HZ=250\n")
    with gzip.open(str(tmp_path / "config.gz"), "wt") as handle:
        handle.write("CONFIG_HZ=1000\n")
    assert build.kernel_hz("6.1.0", boot=str(tmp_path), proc_config=str(tmp_path / "config.gz")) == 250


def test_proc_config_gz(tmp_path):
    with gzip.open(str(tmp_path / "config.gz"), "wt") as handle:
        handle.write("# CONFIG_HZ_PERIODIC is not set\nCONFIG_HZ_1000=y\nCONFIG_HZ=1000\n")
    assert build.kernel_hz("6.1.0", boot=str(tmp_path), proc_config=str(tmp_path / "config.gz")) == 1000


def test_unknown(tmp_path):
    (tmp_path / "config.gz").write_text("not gzip")
    assert build.kernel_hz("6.1.0", boot=str(tmp_path), proc_config=str(tmp_path / "config.gz")) is None
    assert build.kernel_hz("6.1.0", boot=str(tmp_path), proc_config=str(tmp_path / "missing")) is None
