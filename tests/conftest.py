"""Makes the checkout importable as ansible_collections.netfleet.xdp_lb, and
runs the session in a private mount namespace with a bpffs of its own
(tests/hermetic.py): nothing a test mounts or pins reaches the host's
mounts, and nothing mounted by hand on the host is needed."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_LINK = os.path.join(ROOT, ".collections", "ansible_collections", "netfleet", "xdp_lb")
if not os.path.exists(_LINK):
    subprocess.check_call(["bash", os.path.join(ROOT, "scripts", "link-collection.sh")])
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, HERE)

import hermetic  # noqa: E402  (tests/hermetic.py)


def pytest_sessionstart(session):
    """As root: a private mount namespace with an empty bpffs at /sys/fs/bpf,
    before any test (and any thread) runs; test subprocesses inherit it."""
    hermetic.enter_private_bpffs()


def pytest_sessionfinish(session, exitstatus):
    """The session fails if /sys/fs/bpf of the host changed meanwhile."""
    changes = hermetic.host_changes()
    if changes:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in changes:
            if reporter is not None:
                reporter.write_line("hermetic: " + line, red=True, bold=True)
            else:
                sys.stderr.write("hermetic: %s\n" % line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
