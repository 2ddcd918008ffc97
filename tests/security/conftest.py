"""The security tests (#13, docs/design.md "Trust model"): an unprivileged
user (nobody) plants files and links where root works; each is refused or
replaced, never followed or loaded.  They import the namespace lab of the
command-line tests (tests/dataplane/nslab.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dataplane"))


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.skip("the security tests run as root and act as nobody in child processes")
