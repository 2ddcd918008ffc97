# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A temporary directory under /tmp (outside the checkout) for each test, removed afterwards."""
import shutil
import tempfile

import pytest


@pytest.fixture()
def workdir():
    d = tempfile.mkdtemp(prefix="xdp-lb-pkg-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
