# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every task of the modules' EXAMPLES runs for real.

The EXAMPLES blocks of plugins/modules/xdp_lb.py and xdp_lb_info.py are read
from the module files (a new example is picked up without touching this
test), mapped onto network namespaces of the test's own and run with
ansible-playbook (local connection):

- the playbook runs inside the namespace ``xlbex-host`` and in a private
  mount namespace with its own bpffs at /sys/fs/bpf (the host's mounts are
  not touched); the pins go away with that mount namespace;
- every interface an example names becomes a veth (``xeNN``, peer ``xpNN``
  in ``xlbex-peer``), one set per instance name, because one interface holds
  one XDP program and the examples are independent;
- a ``netns:`` of an example becomes ``xlbex-<name>``, with its interfaces in it;
- each instance's interface towards its backends gets the first address of
  each backend's /24 (IPv4) or /64 (IPv6), so that NAT source detection and
  dsr's on-link check find a route; the examples' addresses must be in
  198.18.0.0/15 or fd00::/8 (the test refuses others);
- host paths (``source``, ``state_dir``) map to the test's temporary
  directories, state_dir and build_dir default to them (module_defaults);
- variables an example leaves to the user (``web_services``, ...) are VARS.

Order: the examples that deploy (document order), then the xdp_lb_info
examples (they read what the first ones deployed), then the ones that remove
(``state: absent``).  Between the last two phases, and after them, the
test reads the interfaces' XDP attachments with ``ip -d -j link`` (not with
the modules under test).

Check mode: no task is forced into check mode; every task runs as written.
The one example that uses check mode ("Preview a change") asks for it itself;
the test checks that it reported changes and that the instance's backends
are still those of its last real run.

Everything made is removed in a finally (namespaces, with their veths, the
programs attached to them and the managed neighbour entries; temporary
directories); a run killed half way is cleaned at the next start.  Run as
root, under ``flock /tmp/xdplb-lab.lock``.
"""

import ast
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = ("xdp_lb", "xdp_lb_info")
FQCN = "netfleet.xdp_lb.%s"
PREFIX = "xlbex-"
HOST_NS = PREFIX + "host"
PEER_NS = PREFIX + "peer"
LAB_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fd00::/8"))

# What the examples leave to the user.
VARS = {
    "web_services": [{"vip": "198.18.0.10", "port": 80, "backends": [
        {"address": "198.18.2.11"}, {"address": "198.18.2.12", "weight": 50}]}],
    "lab_services": [{"vip": "198.18.0.20", "port": 53, "protocol": "udp", "backends": [
        {"address": "198.18.4.11"}, {"address": "198.18.4.12"}]}],
}
# The inventory groups the examples take backends from (backend_group), with
# the per-host addresses the action plugin resolves them to.
GROUPS = {
    "web": {"web-1": {"xdp_lb_backend_ipv4": "198.18.2.21", "xdp_lb_backend_ipv6": "fd00:18::2:21"},
            "web-2": {"xdp_lb_backend_ipv4": "198.18.2.22", "xdp_lb_backend_ipv6": "fd00:18::2:22"}},
}


def backend_addresses(svc):
    """Literal backends and those of the service's backend_group, of the VIP's family."""
    out = [b["address"] if isinstance(b, dict) else b for b in svc.get("backends") or []]
    if svc.get("backend_group"):
        group = svc["backend_group"]
        assert group in GROUPS, "an example uses the inventory group %s: give it hosts in GROUPS" % group
        key = "xdp_lb_backend_ipv%d" % ipaddress.ip_address(svc["vip"]).version
        out += [hv[key] for hv in GROUPS[group].values()]
    return out


def inventory():
    """localhost (the balancer) and the GROUPS, as an inventory file's content."""
    return {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                            "ansible_python_interpreter": "/usr/bin/python3"}},
                    "children": dict((g, {"hosts": hosts}) for g, hosts in GROUPS.items())}}


def examples(module):
    """The EXAMPLES tasks of plugins/modules/<module>.py (read, not imported)."""
    path = os.path.join(ROOT, "plugins", "modules", "%s.py" % module)
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["EXAMPLES"]:
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no EXAMPLES" % path)


def module_of(task):
    for key in task:
        if key.startswith("netfleet.xdp_lb."):
            return key
    return None


class Lab:
    """Names, namespaces and paths the examples are mapped onto."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.state_dir = os.path.join(tmp, "state")
        self.build_dir = os.path.join(tmp, "build")
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        for name in ("xdp_loadbalancer.c", "xdp_lb.h"):
            shutil.copy(os.path.join(ROOT, "files", name), src)
        self.paths = {"/opt/xdp_lb/src": src, "/srv/xdp-lb/state": self.state_dir}
        self.links = {}          # (netns, instance, example's name) -> (our name, peer name)
        self.netns = {None: HOST_NS}
        self.addresses = {}      # our netns -> {interface: [address/prefix]}

    def ns(self, name):
        if name not in self.netns:
            self.netns[name] = PREFIX + name
            assert len(self.netns[name]) <= 64
        return self.netns[name]

    def link(self, netns, instance, name):
        key = (netns, instance, name)
        if key not in self.links:
            n = len(self.links)
            self.links[key] = ("xe%02d" % n, "xp%02d" % n)
        return self.links[key][0]

    def path(self, option, value):
        if value.startswith("{{"):
            return value
        assert value in self.paths, "an example uses the host path %s=%s: map it in Lab.paths" % (option, value)
        return self.paths[value]

    def services(self, value):
        """The services of an example; "{{ var }}" is looked up in VARS."""
        if isinstance(value, str):
            name = value.strip("{} ")
            assert name in VARS, "an example uses the variable %s: give it a value in VARS" % name
            value = VARS[name]
        return value or []

    def map_xdp_lb(self, args):
        args = dict(args)
        instance = args.get("name") or args.get("interfaces", args.get("interface"))
        netns = args.get("netns")
        our_ns = self.ns(netns) if netns else HOST_NS
        if netns:
            args["netns"] = our_ns
        for key in ("interfaces", "interface", "redirect_interfaces"):
            if key in args:
                names = args[key] if isinstance(args[key], list) else [args[key]]
                mapped = [self.link(our_ns, str(instance), n) for n in names]
                args[key] = mapped if isinstance(args[key], list) else mapped[0]
        for key in ("source", "state_dir", "build_dir", "pin_dir"):
            if key in args:
                args[key] = self.path(key, args[key])
        # addresses: towards each backend, on the instance's last interface
        ifaces = args.get("interfaces", args.get("interface"))
        ifaces = ifaces if isinstance(ifaces, list) else [ifaces] if ifaces else []
        for svc in self.services(args.get("services")):
            for addr in [svc["vip"]] + backend_addresses(svc):
                ip = ipaddress.ip_address(addr)
                assert any(ip in net for net in LAB_NETS), \
                    "example address %s is outside 198.18.0.0/15 and fd00::/8" % addr
            if not ifaces:
                continue
            for b in backend_addresses(svc):
                ip = ipaddress.ip_address(b)
                net = ipaddress.ip_network("%s/%d" % (ip, 24 if ip.version == 4 else 64), strict=False)
                mine = "%s/%d" % (net[1], net.prefixlen)
                have = [a for addrs in self.addresses.get(our_ns, {}).values() for a in addrs]
                if mine not in have:
                    self.addresses.setdefault(our_ns, {}).setdefault(ifaces[-1], []).append(mine)
        return args

    def map_info(self, args):
        args = dict(args or {})
        if "state_dir" in args:
            args["state_dir"] = self.path("state_dir", args["state_dir"])
        return args

    def setup_commands(self):
        out = [["ip", "netns", "add", ns] for ns in sorted(set(self.netns.values()) | {PEER_NS})]
        for ns in sorted(set(self.netns.values()) | {PEER_NS}):
            out.append(["ip", "-n", ns, "link", "set", "lo", "up"])
        for (ns, _inst, _name), (ours, peer) in sorted(self.links.items(), key=lambda kv: kv[1]):
            out += [["ip", "-n", ns, "link", "add", ours, "type", "veth", "peer", "name", peer, "netns", PEER_NS],
                    ["ip", "-n", ns, "link", "set", ours, "up"],
                    ["ip", "-n", PEER_NS, "link", "set", peer, "up"]]
        for ns, ifaces in sorted(self.addresses.items()):
            for ifname, addrs in sorted(ifaces.items()):
                for a in addrs:
                    out.append(["ip", "-n", ns, "addr", "add", a, "dev", ifname] + (["nodad"] if ":" in a else []))
        return out

    def attached(self):
        """{(netns, interface): XDP program id or None} of every mapped interface."""
        out = {}
        for ns in sorted(set(ns for ns, _i, _n in self.links)):
            links = json.loads(subprocess.check_output(["ip", "-n", ns, "-d", "-j", "link", "show"]))
            for link in links:
                out[(ns, link["ifname"])] = (link.get("xdp") or {}).get("prog", {}).get("id")
        return out


def cleanup():
    """Remove the test's namespaces (their veths, XDP attachments and neighbour entries go with them)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    for name in names:
        if name.startswith(PREFIX):
            subprocess.run(["ip", "netns", "del", name], check=False)


def build_playbooks(lab):
    """(deploy playbook, remove playbook, [(phase, task name, register, example task)])."""
    deploy, info, remove, index = [], [], [], []
    for module in MODULES:
        for i, task in enumerate(examples(module)):
            task = dict(task)
            key = module_of(task)
            if key == FQCN % "xdp_lb":
                task[key] = lab.map_xdp_lb(task[key] or {})
            elif key == FQCN % "xdp_lb_info":
                task[key] = lab.map_info(task[key])
            reg = task.setdefault("register", "xlbex_%s_%d" % (module, i))
            phase = remove if key and (task[key] or {}).get("state") == "absent" else \
                info if module == "xdp_lb_info" else deploy
            phase.append(task)
            index.append(("remove" if phase is remove else "deploy", task["name"], reg, task))
            if key == FQCN % "xdp_lb" and task.get("check_mode") and phase is deploy:
                # what the instance holds right after a check-mode example (read with the info module)
                phase.append({"name": "xlbex: %s after the check-mode task" % task[key]["name"],
                              FQCN % "xdp_lb_info": {"name": task[key]["name"]}, "register": reg + "_after"})
    play = {"hosts": "localhost", "gather_facts": False, "vars": VARS,
            "module_defaults": {FQCN % "xdp_lb": {"state_dir": lab.state_dir, "build_dir": lab.build_dir},
                                FQCN % "xdp_lb_info": {"state_dir": lab.state_dir}}}
    books = []
    for name, tasks in (("deploy", deploy + info), ("remove", remove)):
        # every task's registered result, for the test to read
        d = {"name": "xlbex: results", "ansible.builtin.copy": {
            "content": "{{ {%s} | to_json }}" % ", ".join("%r: %s" % (t["register"], t["register"]) for t in tasks),
            "dest": os.path.join(lab.tmp, "%s.json" % name), "mode": "0600"}}
        books.append([dict(play, name="Examples of the modules: %s" % name, tasks=tasks + [d])])
    return books[0], books[1], index


def run_in_lab(lab, script, timeout=900):
    """``script`` (bash) inside HOST_NS with a private mount namespace and bpffs of its own."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=os.path.dirname(sys.executable) + ":" + os.environ.get("PATH", ""),
               ANSIBLE_LOCAL_TEMP=os.path.join(lab.tmp, "ansible-local"),
               ANSIBLE_REMOTE_TEMP=os.path.join(lab.tmp, "ansible-remote"))
    cmd = ["ip", "netns", "exec", HOST_NS, "unshare", "-m", "--propagation", "private", "bash", "-ec",
           "mount -t bpf bpf /sys/fs/bpf\n" + script]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=lab.tmp, start_new_session=True)
    try:
        out = proc.communicate(timeout=timeout)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.skip("runs XDP programs in network namespaces: run as root")
    cleanup()
    tmp = tempfile.mkdtemp(prefix="xlbex-")
    try:
        yield Lab(tmp)
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_examples_parse_and_are_mapped():
    """Pure: every example task names a module, and every xdp_lb/xdp_lb_info example is found."""
    for module in MODULES:
        tasks = examples(module)
        assert tasks and all(isinstance(t, dict) and t.get("name") for t in tasks)
        assert any(module_of(t) == FQCN % module for t in tasks)


def test_every_example_runs(lab):
    deploy, remove, index = build_playbooks(lab)
    for name, book in (("deploy", deploy), ("remove", remove)):
        with open(os.path.join(lab.tmp, "%s.yml" % name), "w") as f:
            yaml.safe_dump(book, f, sort_keys=False)
    for cmd in lab.setup_commands():
        subprocess.run(cmd, check=True)
    with open(os.path.join(lab.tmp, "inventory.yml"), "w") as f:
        yaml.safe_dump(inventory(), f)
    ap = "ansible-playbook -i inventory.yml"
    script = "\n".join([
        "%s deploy.yml" % ap,
        "for ns in %s; do ip -n $ns -d -j link show > attached-$ns.json; done" % " ".join(sorted(set(
            ns for ns, _i, _n in lab.links))),
        "%s remove.yml" % ap,
    ])
    rc, out = run_in_lab(lab, script)
    assert rc == 0, out

    results = {}
    for name in ("deploy", "remove"):
        with open(os.path.join(lab.tmp, "%s.json" % name)) as f:
            results.update(json.load(f))
    assert set(reg for _p, _n, reg, _t in index) <= set(results), "an example did not run"
    for _phase, name, reg, task in index:
        res = results[reg]
        assert not res.get("failed") and not res.get("skipped"), (name, res)

    # what the deploy phase left attached, read with ip (not with the modules under test)
    mid = {}
    for ns in set(ns for ns, _i, _n in lab.links):
        with open(os.path.join(lab.tmp, "attached-%s.json" % ns)) as f:
            for link in json.load(f):
                mid[(ns, link["ifname"])] = (link.get("xdp") or {}).get("prog", {}).get("id")
    after = lab.attached()
    removed = set()
    for _phase, name, reg, task in index:
        args = task.get(FQCN % "xdp_lb")
        if args is None:
            continue
        if args.get("state") == "absent":
            removed.add(args["name"])
    for (ns, instance, _name), (ours, _peer) in lab.links.items():
        uses = [t[FQCN % "xdp_lb"] for _p, _n, _r, t in index if FQCN % "xdp_lb" in t
                and (t[FQCN % "xdp_lb"].get("name") == instance)
                and ours in (t[FQCN % "xdp_lb"].get("interfaces") or [t[FQCN % "xdp_lb"].get("interface")])]
        if not uses:
            continue         # a redirect target: no program of its own
        assert mid[(ns, ours)], "%s's interface %s (%s) had no XDP program after the deploy examples" % (
            instance, ours, ns)
        if instance in removed:
            assert not after[(ns, ours)], "%s's interface %s still has XDP program %s after removal" % (
                instance, ours, after[(ns, ours)])
        else:
            assert after[(ns, ours)] == mid[(ns, ours)]

    # an example that previews (check mode) reports its changes and makes none: the instance's
    # backends are still those of the last real run of that instance
    last = {}
    for _phase, name, reg, task in index:
        args = task.get(FQCN % "xdp_lb")
        if args is None:
            continue
        if not task.get("check_mode"):
            last[args["name"]] = lab.services(args.get("services"))
            continue
        res = results[reg]
        assert res["changes"] and isinstance(res.get("diff"), dict), (name, res)
        live = results[reg + "_after"]["instances"][0]["services"]
        want = [sorted((b["address"], b.get("weight", 100)) for b in svc["backends"]) for svc in last[args["name"]]]
        assert [sorted((b["address"], b["weight"]) for b in svc["backends"]) for svc in live] == want, (name, live)
