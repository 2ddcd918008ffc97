"""tests/hermetic.py: the private mount namespace with its own bpffs that
pytest (tests/conftest.py) and the benchmarks run in, and the check that
the host's /sys/fs/bpf did not change.  Real mounts, each in a namespace
that dies with the process that made it."""
import os
import subprocess
import sys
import textwrap

import pytest

import hermetic

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")


def mounts_at(point, mountinfo="/proc/self/mountinfo"):
    """[(fstype, super options, optional fields)] of the mounts at point, bottom first."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == point:
                out.append((fields[sep + 1], fields[sep + 3], fields[6:sep]))
    return out


def py(code, *wrap):
    """Run code in a new Python (tests/ importable) and return its stdout."""
    env = dict(os.environ, PYTHONPATH=TESTS, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(list(wrap) + [sys.executable, "-c", textwrap.dedent(code)], env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_session_runs_in_its_own_bpffs():
    assert hermetic.active()
    fstype, opts, dummy = mounts_at("/sys/fs/bpf")[-1]
    assert fstype == "bpf" and "mode=700" in opts.split(",")
    assert os.stat("/sys/fs/bpf").st_mode & 0o777 == 0o700
    # every mount private: nothing propagates to or from the host
    with open("/proc/self/mountinfo") as f:
        tagged = [line for line in f if " shared:" in line or " master:" in line]
    assert tagged == []


def test_nothing_reaches_the_parent(tmp_path):
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    out = py("""
        import os, subprocess, hermetic
        assert hermetic.enter_private_bpffs() and hermetic.enter_private_bpffs()   # the second: no-op
        print(sorted(n for n in os.listdir("/sys/fs/bpf") if n.startswith("xlb")))
        os.mkdir("/sys/fs/bpf/xlbu-child")
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "%s"], check=True)
        open("%s/file", "w").close()
        print(hermetic.host_changes())
        """ % (tmp_path, tmp_path))
    assert out == "[]\n[]\n"          # an empty bpffs of its own; the parent's unchanged
    with open("/proc/self/mountinfo") as f:
        assert f.read() == before
    assert os.listdir(str(tmp_path)) == []
    assert not os.path.exists("/sys/fs/bpf/xlbu-child")


def test_host_changes_are_reported():
    # The "host" is a namespace of its own too (unshare), with a bpffs: what
    # the child does to it through nsenter goes when the child exits.
    out = py("""
        import os, subprocess, hermetic
        hermetic.enter_private_bpffs()
        print(hermetic.host_changes())
        host = ["nsenter", "--mount=/proc/%d/fd/%d" % (os.getpid(), hermetic._state["host_ns"])]
        subprocess.run(host + ["mkdir", "/sys/fs/bpf/xlbu-leak", "/sys/fs/bpf/other"], check=True)
        print(hermetic.host_changes())
        subprocess.run(host + ["mount", "-t", "tmpfs", "tmpfs", "/sys/fs/bpf"], check=True)
        print(hermetic.host_changes())
        """, "unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t bpf bpf /sys/fs/bpf && exec "$@"', "-")
    first, second, third = out.splitlines()
    assert first == "[]"
    assert second == "[\"new entries in the host's /sys/fs/bpf: xlbu-leak\"]"
    assert "mounts at /sys/fs/bpf of the host changed: before ['/sys/fs/bpf bpf" in third
    assert "/sys/fs/bpf tmpfs" in third and "xlbu-leak" not in third


def test_refuses_a_threaded_process():
    out = py("""
        import threading, hermetic
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        try:
            hermetic.enter_private_bpffs()
        except hermetic.HermeticError as exc:
            print(exc)
        finally:
            stop.set()
        print(hermetic.active())
        """)
    assert "the process has 2 threads" in out and out.endswith("False\n")
