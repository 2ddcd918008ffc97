"""A bpffs of their own for the tests and the benchmarks, in a private mount namespace.

Nothing mounts bpffs at /sys/fs/bpf on a fresh machine, and a test must not
change the host's mounts.  ``enter_private_bpffs()`` moves the calling
process into a mount namespace of its own and gives it a fresh bpffs:

1. ``unshare(CLONE_NEWNS)``: a copy of the mount table, for this process and
   every process it starts afterwards (they inherit it);
2. ``mount --make-rprivate /``: no mount or unmount in the copy reaches the
   namespace it came from (nor the other way), whatever propagation the
   host's mounts have (systemd makes them shared);
3. ``mount -t bpf -o mode=700 bpf /sys/fs/bpf``: an empty bpffs over
   whatever was there (the host's bpffs, if it has one, is neither seen nor
   touched).

The pins made there go with the namespace (when its last process exits), so
an interrupted run leaves none.  ``ip netns exec`` gives its command a mount
namespace of its own with a fresh /sys: the lab hosts (sshd started that
way) do not see this bpffs and mount their own, as before.

pytest calls it at session start (tests/conftest.py), the benchmarks as
their first step; the shell scripts do the same with
``unshare -m --propagation private`` (scripts/run-integration.sh, .ci/run).
``unshare(CLONE_NEWNS)`` moves the calling thread only, so it must run
while the process has a single thread.

``host_changes()`` reads /sys/fs/bpf of the namespace the process came from
(kept open) and says what changed there since: the end-of-session check
that no test reached the host's mounts.
"""
import ctypes
import ctypes.util
import os
import subprocess

BPFFS = "/sys/fs/bpf"
# Names the tests, benchmarks and labs pin under (xlbdp-, xlbo-, xlbb-,
# xlbit-, xlbm-, ...; the module's default pin root xdp_lb).
OWN_PREFIXES = ("xlb", "xdp_lb")

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000

_state = {"host_ns": None, "before": None}


class HermeticError(RuntimeError):
    pass


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise HermeticError("%s: %s" % (what, os.strerror(err)))


def threads():
    """Number of threads of this process (Python's and native ones)."""
    return len(os.listdir("/proc/self/task"))


def active():
    """Whether this process already entered its private bpffs."""
    return _state["host_ns"] is not None


def enter_private_bpffs():
    """Enter a private mount namespace with an empty bpffs at /sys/fs/bpf (mode 700).

    Returns True once done (again: nothing more happens), False when not
    root (then nothing is done: the tests that need root skip).  Raises
    HermeticError when the process already has a second thread or a step
    fails (then the process may be in the new namespace without its bpffs;
    the host is untouched either way)."""
    if active():
        return True
    if os.geteuid() != 0:
        return False
    n = threads()
    if n != 1:
        raise HermeticError("enter_private_bpffs: the process has %d threads; unshare(CLONE_NEWNS) would move "
                            "only this one: call it before any thread is started" % n)
    host_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        libc = _libc()
        _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
        _check(libc.mount(b"bpf", BPFFS.encode(), b"bpf", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b"mode=700"),
               "mount -t bpf bpf %s" % BPFFS)
    except BaseException:
        os.close(host_ns)
        raise
    _state["host_ns"] = host_ns
    _state["before"] = _host_bpffs()
    return True


def _host_bpffs():
    """(mounts at or below /sys/fs/bpf, our entries at its top) in the namespace the process came from."""
    path = "/proc/%s/fd/%s" % (os.getpid(), _state["host_ns"])
    out = subprocess.run(["nsenter", "--mount=" + path, "sh", "-c",
                          "cat /proc/self/mountinfo; echo --; ls -A %s" % BPFFS],
                         check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    info, names = out.split("\n--\n", 1)
    mounts = []
    for line in info.splitlines():
        fields = line.split()
        point, fstype = fields[4], fields[fields.index("-") + 1]
        if point == BPFFS or point.startswith(BPFFS + "/"):
            mounts.append("%s %s (mount id %s)" % (point, fstype, fields[0]))
    own = sorted(n for n in names.split() if n.startswith(OWN_PREFIXES))
    return mounts, own


def host_changes():
    """What changed at /sys/fs/bpf of the host (the namespace the process
    came from) since enter_private_bpffs(): a list of lines, empty when
    nothing did (or when the process never entered one)."""
    if not active():
        return []
    (mounts0, own0), (mounts1, own1) = _state["before"], _host_bpffs()
    out = []
    if mounts0 != mounts1:
        out.append("mounts at %s of the host changed: before %s, now %s"
                   % (BPFFS, mounts0 or "none", mounts1 or "none"))
    new = sorted(set(own1) - set(own0))
    if new:
        out.append("new entries in the host's %s: %s" % (BPFFS, " ".join(new)))
    return out
