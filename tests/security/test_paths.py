"""Trusted paths, files root creates, object digests, lock and state files (no network).

Each test builds its directories under a root-owned temporary directory
in /tmp (sticky, as on a real host), lets ``nobody`` (uid 65534, in a
child process) plant what it can, and checks that root refuses the path
naming it and its mode, or replaces the planted file without following or
loading it; root's own files ("victim") are unchanged.  Everything is
removed at the end, also on failure.
"""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import (
    build, engine, hostsetup, model, state, trust)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "files")
NOBODY = 65534
PRECIOUS = b"root's file, must not change\n"


def as_nobody(*argv):
    """Run argv as nobody:nogroup (setpriv, no capabilities); its exit status."""
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "--"]
                          + list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False).returncode


@pytest.fixture
def top():
    """A root-owned 0755 directory in /tmp (sticky parent), removed at the end."""
    d = tempfile.mkdtemp(prefix="xlbt-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def victim(top):
    """A root-owned file in a directory only root can enter."""
    vault = os.path.join(top, "vault")
    os.mkdir(vault, 0o755)
    path = os.path.join(vault, "precious")
    with open(path, "wb") as f:
        f.write(PRECIOUS)
    os.chmod(path, 0o644)
    yield path
    with open(path, "rb") as f:
        assert f.read() == PRECIOUS, "root wrote through a planted link into %s" % path
    assert os.stat(path).st_uid == 0 and stat.S_IMODE(os.stat(path).st_mode) == 0o644


def opened_to_nobody(path):
    """Let nobody write in ``path`` (as a careless admin would), return a function that closes it again."""
    os.chmod(path, 0o777)
    return lambda: os.chmod(path, 0o755)


def params(top, **kw):
    p = {"name": "web", "interfaces": ["xlbt-nope0"], "mode": "redirect", "redirect_interfaces": ["xlbt-nope1"],
         "source": FILES, "state_dir": os.path.join(top, "state"), "build_dir": os.path.join(top, "build"),
         "pin_dir": "/sys/fs/bpf/xlbt-t%d" % os.getpid()}
    p.update(kw)
    return p


# ---- directories ---------------------------------------------------------------

def test_world_writable_build_dir_is_refused_before_anything_changes(top):
    bd = os.path.join(top, "build")
    os.mkdir(bd)
    os.chmod(bd, 0o777)
    cfg = model.validate(params(top))
    with pytest.raises(engine.EngineError) as info:
        engine.run(cfg)
    msg = str(info.value)
    assert msg.startswith("build_dir: %s is writable by group or others (mode 0777, owner root (uid 0))" % bd), msg
    # nothing made: no state dir, lock, object or pins
    assert sorted(os.listdir(top)) == ["build"] and os.listdir(bd) == []
    assert not os.path.exists(cfg.pin_dir)


@pytest.mark.parametrize("field", ["state_dir", "build_dir", "pin_dir", "source"])
def test_untrusted_dirs_are_refused_naming_path_mode_and_owner(top, field):
    # owned by nobody
    d = os.path.join(top, "mine")
    os.mkdir(d, 0o755)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(trust.TrustError) as info:
        trust.trusted_dir(d, field)
    assert str(info.value).startswith("%s: %s is not owned by root (mode 0755, owner nobody (uid 65534))"
                                      % (field, d)), info.value
    # below a group-writable, non-sticky parent
    parent = os.path.join(top, "shared")
    os.mkdir(parent)
    os.chmod(parent, 0o775)
    with pytest.raises(trust.TrustError) as info:
        trust.trusted_dir(os.path.join(parent, "x"), field)
    assert str(info.value).startswith("%s: parent %s is writable by group or others and not sticky "
                                      "(mode 0775, owner root (uid 0))" % (field, parent)), info.value
    # below a parent owned by nobody (even a sticky one)
    os.chown(parent, NOBODY, NOBODY)
    os.chmod(parent, 0o1777)
    with pytest.raises(trust.TrustError, match=r"parent %s is not owned by root .mode 1777, owner nobody"
                       % parent):
        trust.trusted_dir(os.path.join(parent, "x"), field)


def test_sticky_parent_and_missing_dirs_pass(top):
    sticky = os.path.join(top, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)                      # as /tmp, or a bpffs mounted by hand (mode 1777)
    trust.trusted_dir(os.path.join(sticky, "a", "b"), "build_dir")      # missing: root creates them
    trust.make_dir(os.path.join(sticky, "a", "b"), "build_dir")
    assert os.stat(os.path.join(sticky, "a", "b")).st_uid == 0
    # a directory nobody made first in the sticky parent is refused after make_dir too
    assert as_nobody("mkdir", os.path.join(sticky, "squat")) == 0
    with pytest.raises(trust.TrustError, match="squat is not owned by root"):
        trust.make_dir(os.path.join(sticky, "squat", "build"), "build_dir")
    assert not os.path.exists(os.path.join(sticky, "squat", "build"))


def test_symlinked_dirs_are_refused(top):
    real = os.path.join(top, "real")
    os.mkdir(real, 0o755)
    link = os.path.join(top, "build")
    os.symlink(real, link)
    with pytest.raises(trust.TrustError, match="build_dir: %s is a symbolic link \\(to %s\\)" % (link, real)):
        trust.trusted_dir(link, "build_dir")
    with pytest.raises(engine.EngineError, match="build_dir: %s is a symbolic link" % link):
        engine.run(model.validate(params(top)))
    # a parent that is a root-owned link to a trusted directory is fine (/var/run -> /run) ...
    trust.trusted_dir(os.path.join(link, "sub"), "build_dir")
    # ... one that nobody made is not
    sticky = os.path.join(top, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    assert as_nobody("ln", "-s", real, os.path.join(sticky, "lnk")) == 0
    with pytest.raises(trust.TrustError, match="lnk .parent of .*. is a symbolic link owned by nobody"):
        trust.trusted_dir(os.path.join(sticky, "lnk", "build"), "build_dir")


def test_dotdot_in_paths_is_refused_not_normalised():
    for field, value in (("pin_dir", "/sys/fs/bpf/xdp_lb/../other"), ("state_dir", "/var/lib/x/../y"),
                         ("build_dir", "/var/cache/./b")):
        with pytest.raises(model.ConfigError) as info:
            model.validate({"name": "web", "interfaces": ["eth0"], "mode": "redirect",
                            "redirect_interfaces": ["eth1"], field: value})
        assert str(info.value) == "%s: %s must not contain '.' or '..' components (give the directory " \
                                  "itself)" % (field, value)


# ---- objects ---------------------------------------------------------------------

def _planted_object(top, bd):
    """An ELF object nobody could have built (the data plane with other
    defines), and the name of the one root wants."""
    other = os.path.join(top, "other")
    os.mkdir(other, 0o755)
    with open(build.compile_object(FILES, other, {"XDP_LB_MAX_REDIRECT": 8})[0], "rb") as f:
        evil = f.read()
    sources = build.read_sources(FILES)
    digest = build.build_hash(sources, {}, build.compiler_version())
    return evil, build.object_path(bd, digest)


def test_object_planted_by_nobody_is_rebuilt_never_used(top):
    bd = os.path.join(top, "build")
    os.mkdir(bd, 0o755)
    evil, obj = _planted_object(top, bd)
    drop = os.path.join(top, "evil.o")
    with open(drop, "wb") as f:
        f.write(evil)
    os.chmod(drop, 0o644)
    close = opened_to_nobody(bd)
    # nobody plants the object under the name root wants and a matching digest file
    assert as_nobody("cp", drop, obj) == 0
    assert as_nobody("sh", "-c", "echo %s > %s" % (hashlib.sha256(evil).hexdigest(), build.digest_path(obj))) == 0
    # the world-writable build_dir itself is refused
    with pytest.raises(trust.TrustError, match="build_dir: %s is writable by group or others .mode 0777" % bd):
        trust.trusted_dir(bd, "build_dir")
    close()
    assert os.stat(obj).st_uid == NOBODY
    sha, why = build.verify_object(obj)
    assert sha is None and "not a regular file of root's" in why
    out, _digest, cached = build.compile_object(FILES, bd, {})
    assert out == obj and not cached
    st = os.stat(obj)
    with open(obj, "rb") as f:
        data = f.read()
    assert st.st_uid == 0 and data != evil and data.startswith(b"\x7fELF")
    assert os.stat(build.digest_path(obj)).st_uid == 0
    assert build.verify_object(obj)[0] == hashlib.sha256(data).hexdigest()


def test_object_with_wrong_digest_is_rebuilt_and_refused_by_restore_digest(top):
    bd = os.path.join(top, "build")
    os.mkdir(bd, 0o755)
    obj = build.compile_object(FILES, bd, {})[0]
    good = build.verify_object(obj)[0]
    with open(obj, "ab") as f:       # root-owned, altered afterwards
        f.write(b"\0")
    sha, why = build.verify_object(obj)
    assert sha is None and "does not match its digest file" in why
    assert build.compile_object(FILES, bd, {})[2] is False           # compiled again
    assert build.verify_object(obj)[0]
    # the digest recorded in the state file is checked too
    sha, why = build.verify_object(obj, "0" * 64)
    assert sha is None and "does not match the digest in the state file" in why
    assert build.verify_object(obj, build.verify_object(obj)[0])[0] is not None
    assert good   # a digest was written with the first build


def test_compiler_that_writes_no_object_is_refused(top):
    bd = os.path.join(top, "build")
    os.mkdir(bd, 0o755)
    with pytest.raises(build.BuildError, match="exited 0 but wrote no BPF object .* empty, 0 bytes"):
        build.compile_object(FILES, bd, {}, clang="/bin/echo", compiler="echo")
    assert os.listdir(bd) == []


def test_restore_rebuilds_only_with_the_recorded_root_owned_compiler(top):
    bd = os.path.join(top, "build")
    os.mkdir(bd, 0o755)
    cfg = model.validate(params(top))
    b = engine.desired_build(cfg)
    assert b.clang and os.path.isabs(b.clang)
    # a "compiler" nobody wrote: never run
    fake = os.path.join(top, "tmp")
    os.mkdir(fake)
    os.chmod(fake, 0o1777)
    marker = os.path.join(top, "RAN")
    clang = os.path.join(fake, "clang")
    assert as_nobody("sh", "-c", "printf '#!/bin/sh\\ntouch %s\\necho clang version 99\\n' > %s && chmod 755 %s"
                     % (marker, clang, clang)) == 0
    rec = engine.Build(b.digest, b.obj, FILES, clang=clang, recorded=True)
    with pytest.raises(engine.EngineError) as info:
        engine.compile_build(cfg, rec)
    msg = str(info.value)
    assert msg.startswith("%s is missing, and it cannot be rebuilt: clang: %s is not owned by root or is "
                          "writable by group or others (mode 0755, owner nobody (uid 65534))" % (b.obj, clang)), msg
    assert not os.path.exists(marker) and not os.path.exists(b.obj)
    # no recorded compiler: fails clearly
    rec = engine.Build(b.digest, b.obj, FILES, recorded=True)
    with pytest.raises(engine.EngineError, match="the state file records no compiler path; run the playbook"):
        engine.compile_build(cfg, rec)
    # paths in the state file must be those the engine derives
    with pytest.raises(engine.EngineError, match="state file names the object '/tmp/evil.o'"):
        engine.recorded_build(cfg, {"hash": b.digest, "object": "/tmp/evil.o", "source_dir": FILES})
    with pytest.raises(engine.EngineError, match="state file names the source dir '/tmp'"):
        engine.recorded_build(cfg, {"hash": b.digest, "object": b.obj, "source_dir": "/tmp"})
    # the recorded, root-owned compiler rebuilds the recorded build
    rec = engine.recorded_build(cfg, {"hash": b.digest, "object": b.obj, "source_dir": FILES, "clang": b.clang})
    assert engine.compile_build(cfg, rec) == b.obj and rec.sha256 == build.verify_object(b.obj)[0]


# ---- files root creates ------------------------------------------------------------

def test_source_tmp_and_source_links_are_replaced_not_followed(top, victim):
    bd = os.path.join(top, "build")
    os.mkdir(bd, 0o755)
    sources = dict((k, v.decode()) for k, v in build.read_sources(FILES).items())
    cfg = model.validate(params(top, source=None))
    b = engine.desired_build(cfg, sources)
    src = b.source_dir
    os.makedirs(src, 0o755)
    close = opened_to_nobody(src)
    for name in (build.SOURCE, build.HEADER):
        for suffix in ("", ".tmp"):
            assert as_nobody("ln", "-s", victim, os.path.join(src, name + suffix)) == 0
    close()
    obj = engine.compile_build(cfg, b)
    for name in (build.SOURCE, build.HEADER):
        path = os.path.join(src, name)
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0
        with open(path, "rb") as f:
            assert f.read() == sources[name].encode()
    assert build.verify_object(obj)[0]
    # the victim fixture checks that root's file is unchanged


def test_lock_file_link_is_refused(top, victim):
    sd = os.path.join(top, "state")
    os.mkdir(sd, 0o755)
    close = opened_to_nobody(sd)
    assert as_nobody("ln", "-s", victim, state.lock_path(sd, "web")) == 0
    close()
    for create in (True, False):
        with pytest.raises(state.StateError, match="lock file %s is a symbolic link: refusing to follow it"
                           % state.lock_path(sd, "web")):
            with state.Lock(sd, "web", create=create):
                pass
    # a lock file nobody owns
    os.unlink(state.lock_path(sd, "web"))
    close = opened_to_nobody(sd)
    assert as_nobody("touch", state.lock_path(sd, "web")) == 0
    close()
    with pytest.raises(state.StateError, match="is not a regular file of root's .mode 0644, uid 65534"):
        with state.Lock(sd, "web"):
            pass


def test_state_file_link_or_foreign_file_is_refused_and_replaced(top, victim):
    sd = os.path.join(top, "state")
    os.mkdir(sd, 0o755)
    path = state.state_path(sd, "web")
    close = opened_to_nobody(sd)
    assert as_nobody("ln", "-s", victim, path) == 0
    close()
    with pytest.raises(state.StateError, match="state file %s is a symbolic link" % path):
        state.load(path)
    state.save(path, {"name": "web"})          # replaces the link
    assert stat.S_ISREG(os.lstat(path).st_mode) and state.load(path)["name"] == "web"
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(state.StateError, match="is not a regular file of root's that only root can write .mode "
                       "0600, uid 65534"):
        state.load(path)


def test_lock_goes_with_the_instance(top):
    sd = os.path.join(top, "state")
    os.mkdir(sd, 0o755)
    cfg = model.validate({"name": "never", "state": "absent", "interfaces": ["xlbt-nope0"], "state_dir": sd,
                          "build_dir": os.path.join(top, "build"), "pin_dir": "/sys/fs/bpf/xlbt-never"})
    res = engine.run(cfg)
    assert not res["changed"] and os.listdir(sd) == []       # absent of an unknown instance: no lock file
    state.save(state.state_path(sd, "never"), {"name": "never", "config": {}})
    with state.Lock(sd, "never"):
        pass
    assert os.path.exists(state.lock_path(sd, "never"))
    res = engine.run(cfg)
    assert res["changed"] and os.listdir(sd) == []            # state file and lock file gone


def test_lock_removed_while_waited_on_is_not_shared(top):
    """A run waiting on the lock file that a state: absent run removes
    takes a new lock file, not the removed one (two runs at once)."""
    sd = os.path.join(top, "state")
    os.mkdir(sd, 0o755)
    held, seen = threading.Event(), {}

    def absent_run():
        with state.Lock(sd, "web", remove=True):
            seen["old"] = os.stat(state.lock_path(sd, "web")).st_ino
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=absent_run)
    t.start()
    try:
        assert held.wait(10)
        started = time.time()
        with state.Lock(sd, "web") as lock:
            waited = time.time() - started
            mine = os.fstat(lock.fd).st_ino
            assert mine == os.stat(state.lock_path(sd, "web")).st_ino
    finally:
        t.join()
    assert waited > 0.3, "the second run did not wait for the first"
    assert os.path.exists(state.lock_path(sd, "web"))


# ---- host_setup directories ---------------------------------------------------------

def test_host_setup_does_not_chown_through_links(top):
    theirs = os.path.join(top, "theirs")
    os.mkdir(theirs, 0o700)
    os.chown(theirs, NOBODY, NOBODY)
    link = os.path.join(top, "etc-dir")
    os.symlink(theirs, link)
    with pytest.raises(hostsetup.HostSetupError, match="%s: .*symbolic link.*root does not chown or chmod" % link):
        hostsetup._ensure_directory(link, 0o755)
    st = os.stat(theirs)
    assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o700
