"""One running balancer for the whole bad-input suite, and the ways users reach it.

The lab is the command-line tests' nat lab (tests/dataplane/nslab.py) under
a prefix of its own (xlbbi-<pid>): client -- front0 [lb] back0 -- backends,
instance ``bi`` attached natively to front0 and back0 with two services.
Each case takes a host snapshot (hostsnap.py), feeds one bad input to the
module (``main()`` through AnsibleModule, or ansible-playbook where the
action plugin matters), xdp_lb_info or the host command, and asserts the
error text and that the snapshot is identical.  Everything the lab made is
removed at the end of the session, also on failure.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "dataplane"))            # nslab

import nslab  # noqa: E402
import hostsnap  # noqa: E402
from badlab import BE1, BE2, base_params  # noqa: E402

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model  # noqa: E402


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, XDP, bpffs)")
    tag = "xlbbi-%d" % os.getpid()
    tmp = tmp_path_factory.mktemp("xlbbi")
    lab = {"ns": {"client": tag + "-c", "lb": tag + "-l", "be": tag + "-b"}, "pin_dir": "/sys/fs/bpf/" + tag,
           "state_dir": str(tmp / "state"), "build_dir": str(tmp / "build"), "tmp": tmp}
    params = base_params(lab)
    made = False
    try:
        made = True
        nslab.nat_topology(lab["ns"], [BE1, BE2])
        res = engine.run(model.validate(params))
        assert res["changed"] and not res.get("failed"), res
        lab["params"] = params
        yield lab
    finally:
        nslab.remove(lab["ns"], params, made)


@pytest.fixture
def snap(lab):
    """Asserts at the end that the host is as it was at the start of the test."""
    before = hostsnap.take(lab)
    yield before
    after = hostsnap.take(lab)
    assert before == after, "the host changed:\n" + "\n".join(hostsnap.diff(before, after))
