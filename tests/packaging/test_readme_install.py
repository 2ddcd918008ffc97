# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""README.md "Use it on your hosts", step by step, outside the checkout.

    .venv/bin/python -m pytest -q tests/packaging     (make test-packaging; no root, no lab)

In a temporary directory under /tmp: ``ansible-galaxy collection build``
(run in the checkout, as the README says), then a directory of the user's
own with its own ansible.cfg (``collections_path = ./collections``, nothing
that names the checkout), a copy of inventory/example and of site.yml, and
there: the collection is not found before the install (so nothing leaks
in from the checkout), ``ansible-galaxy collection install`` of the
tarball, ``ansible-doc netfleet.xdp_lb.xdp_lb`` (and ``-t role`` for the role)
from the installed copy,
and ``ansible-playbook --syntax-check`` of both ``netfleet.xdp_lb.site``
and the copied site.yml.  The environment is the caller's without any
ANSIBLE_* variable (``make`` exports ANSIBLE_CONFIG) and with a HOME of its
own (no ~/.ansible collections).  The directory is removed at the end.
"""
import glob
import json
import os
import shutil
import tarfile

from pkghelp import ROOT, VENV_BIN, ok, run, user_env


def test_readme_install_from_own_directory(workdir):
    assert not os.path.realpath(workdir).startswith(os.path.realpath(ROOT) + os.sep)
    home = os.path.join(workdir, "home")
    lb = os.path.join(workdir, "lb")
    os.makedirs(home)

    # In the checkout: build (its ansible.cfg applies there, as for a user).
    build_env = dict(user_env(home), ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    ok(run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", lb], ROOT, build_env))
    tarballs = glob.glob(os.path.join(lb, "netfleet-xdp_lb-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())
    for needed in ("COPYING", "LICENSES/GPL-3.0-or-later.txt", "LICENSES/GPL-2.0-only.txt",
                   "LICENSES/BSD-2-Clause.txt", "meta/runtime.yml", "CHANGELOG.md", "changelogs/changelog.yaml",
                   "playbooks/site.yml", "plugins/modules/xdp_lb.py", "files/xdp_loadbalancer.c"):
        assert needed in names, "%s missing from %s" % (needed, os.path.basename(tarballs[0]))
    for unwanted in (".venv", ".collections", "build", ".galaxy-importer.cfg", ".git"):
        assert not any(n == unwanted or n.startswith(unwanted + "/") for n in names), unwanted
    shutil.copytree(os.path.join(ROOT, "inventory", "example"), os.path.join(lb, "inventory"))
    shutil.copy(os.path.join(ROOT, "site.yml"), lb)

    # The user's directory: its own ansible.cfg, nothing pointing at the checkout.
    with open(os.path.join(lb, "ansible.cfg"), "w") as f:
        f.write("[defaults]\ncollections_path = ./collections\n")
    real_root = os.path.realpath(ROOT)
    for dirpath, _dirs, files in os.walk(lb):
        for name in files:
            if name.endswith(".tar.gz"):
                continue
            with open(os.path.join(dirpath, name)) as f:
                text = f.read()
            assert ROOT not in text and real_root not in text, os.path.join(dirpath, name)
    env = user_env(home)
    ansible_doc = [os.path.join(VENV_BIN, "ansible-doc"), "netfleet.xdp_lb.xdp_lb"]

    # Not installed yet: not found (the checkout does not leak in).
    before = run(ansible_doc, lb, env)
    assert before.returncode != 0 or "netfleet.xdp_lb.xdp_lb was not found" in before.stdout, before.stdout[-2000:]

    ok(run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", os.path.basename(tarballs[0])], lb, env))
    installed = os.path.join(lb, "collections", "ansible_collections", "netfleet", "xdp_lb")
    assert os.path.isdir(installed) and not os.path.islink(installed)
    with open(os.path.join(installed, "MANIFEST.json")) as f:
        assert json.load(f)["collection_info"]["name"] == "xdp_lb"

    listed = ok(run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "list", "netfleet.xdp_lb"], lb, env))
    assert os.path.join(lb, "collections", "ansible_collections") in listed, listed

    doc = ok(run(ansible_doc, lb, env))
    assert os.path.join(installed, "plugins", "modules", "xdp_lb.py") in doc, doc[:500]
    assert "Linux 5.11 or later" in doc
    ok(run(ansible_doc[:1] + ["netfleet.xdp_lb.xdp_lb_info"], lb, env))
    # the role's documentation: its lean argument spec, each variable naming its module option
    role_doc = " ".join(ok(run(ansible_doc[:1] + ["-t", "role", "netfleet.xdp_lb.xdp_lb"], lb, env)).split())
    assert "ENTRY POINT: *main*" in role_doc and "xdp_lb_ring_size" in role_doc, role_doc[:2000]
    assert "Module option `ring_size' (of module netfleet.xdp_lb.xdp_lb)" in role_doc, role_doc[:2000]

    for playbook in ("netfleet.xdp_lb.site", "site.yml"):
        out = ok(run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "inventory", playbook, "--syntax-check"],
                     lb, env))
        assert "ERROR" not in out, out
        listed = ok(run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "inventory", playbook, "--list-tasks"],
                        lb, env))
        assert "netfleet.xdp_lb.xdp_lb : " in listed and "netfleet.xdp_lb.xdp_lb_backend : " in listed, listed
