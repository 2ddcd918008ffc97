# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The YAML examples of the documentation are true.

Every fenced ```yaml (or ```yml) block of README.md, roles/*/README.md and
docs/**/*.md is extracted and checked by what it is:

- a playbook (a list of plays): ``ansible-playbook --syntax-check``, and the
  variables each play gives a role of this collection (play vars, the role
  entry's vars and parameters) against that role's meta/argument_specs.yml;
- an inventory (``all:`` or groups with ``hosts:``/``children:``):
  ``ansible-inventory --list``, then every host's variables, templated by
  Ansible, against the argument specs of the roles playbooks/site.yml gives
  its groups;
- a variables fragment (a mapping of ``xdp_lb_*`` keys): against the role
  whose prefix it uses.

The argument specs are checked with ``ansible.builtin.validate_argument_spec``
(what a role runs before its tasks).  The xdp_lb role's variables then go
through the module's own validation (model.validate: ranges, addresses,
mode rules), and xdp_lb_backend's VIPs must be IP addresses, so a doc
example that the role would refuse at run time fails here.  Addresses in
examples must be in 198.18.0.0/15 or fd00::/8.

inventory/example is checked like an inventory block.

A block that is deliberately not runnable is marked in the document, on the
line right before its fence, with ``<!-- example: not checked: <why> -->``.

Real runs: the playbook examples deploy the roles to groups of hosts
(packages, systemd units, XDP on the hosts' interfaces); they are not run
here.  The roles themselves run for real in molecule/ and tests/ops, the
modules' examples in tests/examples.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import ipaddress
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import model
from ansible_collections.netfleet.xdp_lb.plugins.plugin_utils import inventory_backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md"] + sorted(glob.glob("roles/*/README.md", root_dir=ROOT)) + \
    sorted(glob.glob("docs/**/*.md", root_dir=ROOT, recursive=True))
ROLES = ("xdp_lb", "xdp_lb_backend")
SKIP = re.compile(r"<!--\s*example:\s*not checked:\s*(\S.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```\s*(yaml|yml)\s*$")
LAB_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fd00::/8"))
BIN = os.path.dirname(sys.executable)
UNDEFINED = "__xlbdoc_undefined__"      # what the variables dump holds for a variable not set


def blocks(text):
    """[(line number, skip reason or None, block text)] of the fenced YAML blocks."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, m.group(1)
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(prev)
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        out.append((start + 1, skip.group(1) if skip else None, "\n".join(body) + "\n"))
        i += 1
    return out


def doc_blocks():
    out = []
    for doc in DOCS:
        with open(os.path.join(ROOT, doc)) as f:
            for line, skip, text in blocks(f.read()):
                out.append(pytest.param(doc, line, skip, text, id="%s:%d" % (doc, line)))
    return out


def kind(data):
    play_keys = ("hosts", "import_playbook", "ansible.builtin.import_playbook")
    if isinstance(data, list) and data and all(isinstance(p, dict) and any(k in p for k in play_keys) for p in data):
        return "playbook"
    if isinstance(data, dict) and data and ("all" in data or all(
            isinstance(v, dict) and ("hosts" in v or "children" in v) for v in data.values())):
        return "inventory"
    if isinstance(data, dict) and data and all(str(k).startswith("xdp_lb_") for k in data):
        return "vars"
    return None


def role_of_var(name):
    for role in ("xdp_lb_backend", "xdp_lb_pull"):
        if name.startswith(role + "_"):
            return role
    return "xdp_lb"


def spec(role):
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as f:
        return yaml.safe_load(f)["argument_specs"]["main"]["options"]


def site_groups():
    """{group or host pattern: [role]} from playbooks/site.yml."""
    with open(os.path.join(ROOT, "playbooks", "site.yml")) as f:
        plays = yaml.safe_load(f)
    out = {}
    for play in plays:
        roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles") or []]
        out.setdefault(play["hosts"], []).extend(r.split(".")[-1] for r in roles)
    return out


def ansible(args, tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0")
    return subprocess.run([os.path.join(BIN, args[0])] + args[1:], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


def validation_play(hosts, role, play_vars=None, dump=None):
    """A play that checks the role's variables as the role would (validate_argument_spec)
    and writes those of them that are defined, templated, to ``dump`` (per host)."""
    options = spec(role)
    names = sorted(options)
    tasks = [{"name": "%s: argument spec" % role, "ansible.builtin.validate_argument_spec": {
        "argument_spec": options}}]
    if dump:
        tasks.append({"name": "%s: variables" % role, "delegate_to": "localhost", "ansible.builtin.copy": {
            "dest": "%s-%s-{{ inventory_hostname }}.json" % (dump, role), "mode": "0600",
            "content": "{%% set names = %s %%}{{ dict(names | zip(query('ansible.builtin.vars', *names, "
                       "default='%s'))) | to_json }}" % (json.dumps(names), UNDEFINED)}})
    play = {"name": "Variables of role %s" % role, "hosts": hosts, "gather_facts": False, "tasks": tasks}
    if play_vars:
        play["vars"] = play_vars
    return play


def in_lab(value, where):
    """Every address in vips, backends and VIP lists is in the test ranges."""
    ip = ipaddress.ip_address(str(value))
    assert any(ip in net for net in LAB_NETS), "%s: %s is outside 198.18.0.0/15 and fd00::/8" % (where, value)


def resolve_groups(params, where, inventory):
    """Services with backend_group as the action plugin hands them to the module:
    resolved from ``inventory`` ((groups, hostvars)), or, for a fragment with no
    inventory, checked on their literal backends only."""
    services = params.get("services")
    if not inventory_backends.uses_groups(services):
        return
    if inventory is None:
        services = [dict((k, v) for k, v in s.items() if k not in inventory_backends.GROUP_KEYS)
                    if isinstance(s, dict) else s for s in services]
        for s in services:
            if isinstance(s, dict) and not s.get("backends"):
                s["backends"], s["allow_no_backends"] = [], True
        params["services"] = services
        return
    try:
        params["services"] = inventory_backends.resolve_services(
            services, inventory[0], inventory[1], params.get("mode", "nat"))[0]
    except inventory_backends.InventoryBackendError as exc:
        raise AssertionError("%s: %s" % (where, exc))


def inventory_of(listed):
    """(groups, hostvars) of ``ansible-inventory --list`` output, groups with their children's hosts."""
    def hosts(group, seen=()):
        entry = listed.get(group) or {}
        out = set(entry.get("hosts") or [])
        for child in entry.get("children") or []:
            if child not in seen:
                out |= hosts(child, seen + (group,))
        return out
    groups = dict((g, sorted(hosts(g))) for g in listed if g != "_meta")
    return groups, listed.get("_meta", {}).get("hostvars", {})


def check_values(role, values, where, inventory=None):
    """What the role would refuse at run time beyond its argument spec."""
    values = dict((k, v) for k, v in values.items() if v != UNDEFINED)
    if role == "xdp_lb":
        params = dict((k[len("xdp_lb_"):], v) for k, v in values.items()
                      if k[len("xdp_lb_"):] in model.Config.FIELDS + ("services",) and v is not None)
        resolve_groups(params, where, inventory)
        params.setdefault("interfaces", ["eth0"])       # the role's default is empty: not this check's concern
        params.pop("state", None)
        try:
            cfg = model.validate(params)
        except model.ConfigError as exc:
            raise AssertionError("%s: xdp_lb_%s" % (where, exc))
        for s in cfg.services:
            in_lab(s.vip, where)
            for b in s.backends:
                in_lab(b.address, where)
    elif role == "xdp_lb_backend":
        for i, vip in enumerate(values.get("xdp_lb_backend_vips") or []):
            try:
                in_lab(vip, where)
            except ValueError:
                raise AssertionError("%s: xdp_lb_backend_vips[%d]: %s is not an IP address" % (where, i, vip))


def check_playbook(data, path, where, tmp_path):
    res = ansible(["ansible-playbook", "--syntax-check", "-i", "localhost,", path], tmp_path)
    assert res.returncode == 0, "%s: syntax check failed:\n%s%s" % (where, res.stdout, res.stderr)
    plays = []
    for play in data:
        for entry in play.get("roles") or []:
            entry = {"role": entry} if isinstance(entry, str) else entry
            name = entry.get("role") or entry.get("name")
            if not name.startswith("netfleet.xdp_lb."):
                continue
            role = name.split(".")[-1]
            given = dict(play.get("vars") or {})
            given.update(entry.get("vars") or {})
            given.update((k, v) for k, v in entry.items() if k.startswith("xdp_lb_"))
            plays.append((role, given))
    for i, (role, given) in enumerate(plays):
        check_vars(given, "%s, play role %s" % (where, role), tmp_path / ("p%d" % i), role=role)


def check_vars(data, where, tmp_path, role=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    roles = [role] if role else sorted(set(role_of_var(k) for k in data))
    dump = str(tmp_path / "vars")
    book = tmp_path / "validate.yml"
    book.write_text(yaml.safe_dump([validation_play("localhost", r, data, dump) for r in roles]))
    res = ansible(["ansible-playbook", "-i", "localhost,", "-c", "local", str(book)], tmp_path)
    assert res.returncode == 0, "%s: argument spec:\n%s%s" % (where, res.stdout, res.stderr)
    for r in roles:
        with open("%s-%s-localhost.json" % (dump, r)) as f:
            check_values(r, json.load(f), where)


def check_inventory(path, where, tmp_path):
    res = ansible(["ansible-inventory", "-i", path, "--list"], tmp_path)
    assert res.returncode == 0, "%s: ansible-inventory failed:\n%s%s" % (where, res.stdout, res.stderr)
    listed = json.loads(res.stdout)
    assert listed.get("_meta", {}).get("hostvars") or any(
        (g.get("hosts") for g in listed.values() if isinstance(g, dict))), "%s: no hosts" % where
    dump = str(tmp_path / "vars")
    plays = [validation_play(hosts, role, dump=dump) for hosts, roles in sorted(site_groups().items())
             for role in roles]
    book = tmp_path / "validate.yml"
    book.write_text(yaml.safe_dump(plays))
    res = ansible(["ansible-playbook", "-i", path, "-c", "local", str(book)], tmp_path)
    assert res.returncode == 0, "%s: argument specs:\n%s%s" % (where, res.stdout, res.stderr)
    inventory = inventory_of(listed)
    checked = sorted(glob.glob(dump + "-*.json"))
    assert checked, "%s: no host of the inventory is in a group of playbooks/site.yml" % where
    for name in checked:
        base = os.path.basename(name)[len("vars-"):-len(".json")]
        role = "xdp_lb_backend" if base.startswith("xdp_lb_backend-") else "xdp_lb"
        host = base[len(role) + 1:]
        with open(name) as f:
            check_values(role, json.load(f), "%s, host %s" % (where, host), inventory)
    return listed


@pytest.mark.parametrize("doc, line, skip, text", doc_blocks())
def test_doc_yaml_block(doc, line, skip, text, tmp_path):
    where = "%s:%d" % (doc, line)
    if skip:
        pytest.skip("%s is marked not checked: %s" % (where, skip))
    data = yaml.safe_load(text)
    what = kind(data)
    assert what, ("%s: neither a playbook, an inventory nor xdp_lb_* variables; make it one, or mark it with "
                  "<!-- example: not checked: <why> --> on the line before the fence" % where)
    path = tmp_path / "example.yml"
    path.write_text(text)
    if what == "playbook":
        check_playbook(data, str(path), where, tmp_path)
    elif what == "inventory":
        check_inventory(str(path), where, tmp_path)
    else:
        check_vars(data, where, tmp_path)


def test_docs_have_yaml_examples():
    """The extractor finds the blocks it should (a changed fence style would silently check nothing)."""
    found = [p.id for p in doc_blocks()]
    assert "roles/xdp_lb/README.md:145" in found or any(i.startswith("roles/xdp_lb/README.md:") for i in found)
    assert any(i.startswith("roles/xdp_lb_backend/README.md:") for i in found)


def test_example_inventory(tmp_path):
    listed = check_inventory(os.path.join(ROOT, "inventory", "example"), "inventory/example", tmp_path)
    hosts = set(listed["_meta"]["hostvars"])
    assert {"lb-nat-1", "lb-dsr-1", "lb-redirect-1", "web-1", "web-2"} <= hosts


# -- the checker can fail ---------------------------------------------------------------------------------

def test_extractor_honours_the_marker():
    text = "a\n<!-- example: not checked: needs a real NIC -->\n```yaml\n- hosts: x\n```\n\n```yml\nxdp_lb_mode: nat\n```\n"
    assert blocks(text) == [(3, "needs a real NIC", "- hosts: x\n"), (7, None, "xdp_lb_mode: nat\n")]


@pytest.mark.parametrize("data, message", [
    ({"xdp_lb_mode": "tunnel"}, "value of xdp_lb_mode must be one of"),
    # the argument spec checks types and choices, naming the variable ...
    ({"xdp_lb_ring_size": "big"}, "argument 'xdp_lb_ring_size' is of type str"),
    ({"xdp_lb_services": ["web"]}, "option 'xdp_lb_services'"),
    ({"xdp_lb_health_probes": "tcp"}, "argument 'xdp_lb_health_probes' is of type str"),
    # ... the module the entries of services (meta/argument_specs.yml is lean: one task per host runs it)
    ({"xdp_lb_services": [{"port": 80, "backends": []}]}, "xdp_lb_services[0].vip: None is required"),
    ({"xdp_lb_services": [{"vip": "198.18.0.1", "port": 80, "backends": [{"address": "198.18.1.1", "weight": 2000}]}]},
     "xdp_lb_services[0].backends[0].weight: 2000 is not an integer from 0 to 1000"),
    ({"xdp_lb_services": [{"vip": "192.0.2.1", "port": 80, "backends": [{"address": "198.18.1.1"}]}]},
     "192.0.2.1 is outside 198.18.0.0/15"),
    ({"xdp_lb_backend_vips": ["not-an-ip"]}, "xdp_lb_backend_vips[0]: not-an-ip is not an IP address"),
])
def test_bad_variables_fail(data, message, tmp_path):
    with pytest.raises(AssertionError) as info:
        check_vars(data, "bad", tmp_path)
    assert message in str(info.value)


def test_bad_playbook_fails(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("- hosts: all\n  tasks:\n    - ansible.builtin.debug: {msg: x}\n      no_such_keyword: 1\n")
    with pytest.raises(AssertionError) as info:
        check_playbook(yaml.safe_load(path.read_text()), str(path), "bad", tmp_path)
    assert "syntax check failed" in str(info.value)
    path.write_text("- hosts: all\n  roles:\n    - role: netfleet.xdp_lb.xdp_lb\n      vars: {xdp_lb_interfaces: eth0 eth1,"
                    " xdp_lb_attach_mode: offload}\n")
    with pytest.raises(AssertionError) as info:
        check_playbook(yaml.safe_load(path.read_text()), str(path), "bad", tmp_path)
    assert "xdp_lb_attach_mode must be one of" in str(info.value)


def test_bad_inventory_fails(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"xdp_lb_balancers": {"hosts": {"lb1": {
        "xdp_lb_interfaces": ["eth0"], "xdp_lb_ring_size": 65536}}}}}}))
    with pytest.raises(AssertionError) as info:
        check_inventory(str(path), "bad", tmp_path)
    assert "host lb1: xdp_lb_ring_size: 65536 is not a prime number" in str(info.value)
