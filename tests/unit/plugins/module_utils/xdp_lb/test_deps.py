# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""deps: the modules' "library missing" failure (pure logic; imports faked)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys

import pytest

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, deps, netlink


class Failed(Exception):
    pass


class FakeModule:
    def fail_json(self, **kw):
        raise Failed(kw)


def test_nothing_missing_does_not_fail(monkeypatch):
    monkeypatch.setattr(netlink, "HAS_PYROUTE2", True)
    monkeypatch.setattr(bpf, "HAS_BCC", True)
    assert deps.missing() == []
    deps.fail_if_missing(FakeModule(), missing_required_lib)


@pytest.mark.parametrize("pyroute2, bcc, lib, error", [
    (False, True, "pyroute2 (python3-pyroute2)", "No module named 'pyroute2'"),
    (True, False, "bcc (python3-bpfcc or python3-bcc)", "No module named 'bcc'"),
    (False, False, "pyroute2 (python3-pyroute2)", "No module named 'pyroute2'"),   # the first one
])
def test_missing_library_fails_with_the_module_text(monkeypatch, pyroute2, bcc, lib, error):
    monkeypatch.setattr(netlink, "HAS_PYROUTE2", pyroute2)
    monkeypatch.setattr(netlink, "PYROUTE2_IMPORT_ERROR", ImportError("No module named 'pyroute2'"))
    monkeypatch.setattr(bpf, "HAS_BCC", bcc)
    monkeypatch.setattr(bpf, "BCC_IMPORT_ERROR", ImportError("No module named 'bcc'"))
    with pytest.raises(Failed) as info:
        deps.fail_if_missing(FakeModule(), missing_required_lib)
    assert info.value.args[0] == {"msg": missing_required_lib(lib), "exception": error}
    assert "Failed to import the required Python library (%s)" % lib in info.value.args[0]["msg"]


def test_the_engine_does_not_import_pyroute2_until_it_is_used():
    """A nat or redirect run needs no pyroute2 (its import is a quarter of a
    module run): importing the engine and the module's helpers must not
    import it; the first IPRoute use does."""
    code = (
        "import sys\n"
        "from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import deps, engine, hostsetup, netlink\n"
        "assert deps.missing() == [], deps.missing()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pyroute2'], 'imported at start'\n"
        "with netlink.iproute() as ipr:\n"
        "    assert 'pyroute2' not in sys.modules, 'imported by iproute()'\n"
        "    assert netlink.route_to(ipr, '127.0.0.1')['oif'] == netlink.link_index('lo')\n"
        "assert 'pyroute2' in sys.modules\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.stdout.strip().endswith("ok"), out.stdout
