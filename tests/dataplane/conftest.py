"""Session lab for the data-plane tests: one compiled object, one namespace.

The pytest process runs inside the namespace for the whole session (see
dplab.py) and returns to its own namespace at the end, also on failure.
"""
import os

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build

from dplab import FILES, Lab


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("the data-plane tests load BPF programs and create namespaces: run as root")


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xlbdp-build"))


@pytest.fixture(scope="session")
def obj_path(build_dir):
    return build.compile_object(FILES, build_dir, build.host_defines())[0]


@pytest.fixture(scope="session")
def lab_session(obj_path):
    _need_root()
    lab = Lab().start(obj_path)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def lab(lab_session):
    """The session lab with empty maps."""
    lab_session.reset()
    return lab_session


@pytest.fixture
def one_cpu():
    """Runs the test on one CPU: the caches are per CPU, so a test that
    expects a packet to find what an earlier one left must not migrate."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture
def use_build(lab, build_dir, obj_path, one_cpu):
    """use_build(**defines): the lab runs the data plane built with these
    defines and the host's (XDP_LB_HZ; XDP_LB_HZ=None leaves it out) on
    the same maps until the test ends, then the default one.  The test runs
    on one CPU (see one_cpu)."""
    def use(**defines):
        lab.load(build.compile_object(FILES, build_dir, dict(build.host_defines(), **defines))[0])
        return lab
    try:
        yield use
    finally:
        lab.load(obj_path)
