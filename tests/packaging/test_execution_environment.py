# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment (docs/awx.md): ``ansible-builder create`` and
what the image build would do with its output, without a container engine.

    .venv/bin/python -m pytest -q tests/packaging     (make test-packaging; no root, no lab)

In a temporary directory: the collection is built (``ansible-galaxy
collection build``, as docs/awx.md says) next to a copy of
docs/awx/execution-environment.yml and its requirements.yml;
``ansible-builder create`` writes the build context.  Checked:

- the Containerfile starts from the definition's base image, installs
  ansible-core 2.19 and ansible-runner, installs the collections of
  requirements.yml and runs ansible-builder's introspection;
- the context holds requirements.yml and the collection tarball, and the
  tarball holds meta/execution-environment.yml and the two files it names;
- the galaxy stage's step (``ansible-galaxy collection install -r
  requirements.yml`` in _build) and the builder stage's step (the
  context's own ``introspect.py introspect``) run here on the context
  give the image's dependency lists: the SSH client and no Python
  package; nothing of the hosts' toolchain (clang, bcc, pyroute2, ...);
- ansible-builder refuses a definition with a wrong key, naming it.

Building the image itself needs podman or docker, which this machine does
not have (docs/awx.md says so).
"""
import glob
import os
import shutil
import tarfile

import pytest
import yaml

from pkghelp import ROOT, VENV_BIN, ok, run, user_env

BUILDER = os.path.join(VENV_BIN, "ansible-builder")
# Packages that belong on the balancer hosts (the role installs them), never in the image.
HOST_SIDE = ("clang", "llvm", "libbpf", "bpftool", "bcc", "bpfcc", "pyroute2", "nftables", "python3-bpfcc")


@pytest.mark.skipif(not os.path.exists(BUILDER), reason="ansible-builder is not installed (requirements-dev.txt)")
def test_builder_create_and_introspection(workdir):
    home = os.path.join(workdir, "home")
    ee = os.path.join(workdir, "ee")
    os.makedirs(home)
    shutil.copytree(os.path.join(ROOT, "docs", "awx"), ee)
    env = user_env(home)

    build_env = dict(env, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    ok(run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", ee], ROOT, build_env))
    built = glob.glob(os.path.join(ee, "netfleet-xdp_lb-*.tar.gz"))
    assert len(built) == 1, built
    os.rename(built[0], os.path.join(ee, "netfleet-xdp_lb.tar.gz"))

    context = os.path.join(workdir, "context")
    out = ok(run([BUILDER, "create", "-f", os.path.join(ee, "execution-environment.yml"), "-c", context,
                  "--output-filename", "Containerfile"], ee, env))
    assert "Complete!" in out, out

    with open(os.path.join(ee, "execution-environment.yml")) as f:
        definition = yaml.safe_load(f)
    with open(os.path.join(context, "Containerfile")) as f:
        containerfile = f.read()
    assert 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "introspect.py introspect --write-bindep=/tmp/src/bindep.txt --write-pip=/tmp/src/requirements.txt" \
        in containerfile
    assert "/output/scripts/install-from-bindep" in containerfile

    build = os.path.join(context, "_build")
    with open(os.path.join(build, "requirements.yml")) as f:
        reqs = yaml.safe_load(f)
    assert reqs["collections"] == [{"name": "collections/netfleet-xdp_lb.tar.gz", "type": "file"}], reqs
    tarball = os.path.join(build, "collections", "netfleet-xdp_lb.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        meta = yaml.safe_load(tar.extractfile("meta/execution-environment.yml"))
    assert meta["version"] == 3, meta
    for path in meta["dependencies"].values():
        assert path in names, "%s (named by meta/execution-environment.yml) is not in the tarball" % path

    # The galaxy stage: install requirements.yml from _build (its WORKDIR).
    share = os.path.join(workdir, "usr-share-ansible", "collections")
    ok(run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml",
            "--collections-path", share], build, env))
    assert os.path.isfile(os.path.join(share, "ansible_collections", "netfleet", "xdp_lb", "MANIFEST.json"))

    # The builder stage: the context's own introspection script on what was installed.
    pip_out = os.path.join(workdir, "requirements.txt")
    bindep_out = os.path.join(workdir, "bindep.txt")
    report = ok(run([os.path.join(VENV_BIN, "python"), os.path.join(build, "scripts", "introspect.py"), "introspect",
                     share, "--write-pip", pip_out, "--write-bindep", bindep_out], workdir, env))
    assert not os.path.exists(pip_out), "no Python package beyond ansible-core expected:\n" + report
    with open(bindep_out) as f:
        bindep = [line.strip() for line in f if line.strip()]
    assert sorted(bindep) == ["openssh-client [platform:dpkg]  # from collection netfleet.xdp_lb",
                              "openssh-clients [platform:rpm]  # from collection netfleet.xdp_lb"], bindep
    for line in bindep:
        assert not line.split()[0].startswith(HOST_SIDE), line


@pytest.mark.skipif(not os.path.exists(BUILDER), reason="ansible-builder is not installed (requirements-dev.txt)")
def test_builder_refuses_a_wrong_key(workdir):
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    with open(os.path.join(ROOT, "docs", "awx", "execution-environment.yml")) as f:
        definition = yaml.safe_load(f)
    definition["dependencies"]["pyhton"] = ["pyroute2"]
    path = os.path.join(workdir, "execution-environment.yml")
    with open(path, "w") as f:
        yaml.safe_dump(definition, f)
    proc = run([BUILDER, "create", "-f", path, "-c", os.path.join(workdir, "context")], workdir, user_env(home))
    assert proc.returncode != 0, proc.stdout
    assert "pyhton" in proc.stdout, proc.stdout
    assert not os.path.exists(os.path.join(workdir, "context", "Containerfile"))
