"""One running balancer for the whole bad-input suite, and the ways users reach it.

The lab is the command-line tests' nat lab (tests/dataplane/nslab.py) under
a prefix of its own (xlbbi-<pid>): client -- front0 [lb] back0 -- backends,
instance ``bi`` attached natively to front0 and back0 with two services.
Each case takes a host snapshot (hostsnap.py), feeds one bad input to the
module (``main()`` through AnsibleModule, or ansible-playbook where the
action plugin matters), xdp_lb_info or the host command, and asserts the
error text and that the snapshot is identical.  Everything the lab made is
removed at the end of the session, also on failure.
"""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "dataplane"))            # nslab
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "plugins", "modules"))   # modutils

import nslab  # noqa: E402
import hostsnap  # noqa: E402
from modutils import run_module, AnsibleExitJson  # noqa: E402

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model  # noqa: E402
from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb, xdp_lb_info  # noqa: E402

FILES = os.path.join(ROOT, "files")
VIP, VIP2 = "198.18.100.1", "198.18.100.2"
BE1, BE2 = "198.18.1.11", "198.18.1.12"


def base_params(lab):
    return {
        "name": "bi", "netns": lab["ns"]["lb"], "interfaces": ["front0", "back0"], "mode": "nat",
        "services": [
            {"vip": VIP, "port": 80, "protocol": "tcp",
             "backends": [{"address": BE1, "weight": 100}, {"address": BE2, "weight": 100}]},
            {"vip": VIP2, "port": 53, "protocol": "udp", "backends": [{"address": BE1}]}],
        "ring_size": 257, "max_services": 4, "max_backends": 16, "conntrack_size": 4096,
        "source": FILES, "pin_dir": lab["pin_dir"], "state_dir": lab["state_dir"], "build_dir": lab["build_dir"]}


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, XDP, bpffs)")
    tag = "xlbbi-%d" % os.getpid()
    tmp = tmp_path_factory.mktemp("xlbbi")
    lab = {"ns": {"client": tag + "-c", "lb": tag + "-l", "be": tag + "-b"}, "pin_dir": "/sys/fs/bpf/" + tag,
           "state_dir": str(tmp / "state"), "build_dir": str(tmp / "build"), "tmp": tmp}
    params = base_params(lab)
    made = False
    try:
        made = True
        nslab.nat_topology(lab["ns"], [BE1, BE2])
        res = engine.run(model.validate(params))
        assert res["changed"] and not res.get("failed"), res
        lab["params"] = params
        yield lab
    finally:
        nslab.remove(lab["ns"], params, made)


@pytest.fixture
def snap(lab):
    """Asserts at the end that the host is as it was at the start of the test."""
    before = hostsnap.take(lab)
    yield before
    after = hostsnap.take(lab)
    assert before == after, "the host changed:\n" + "\n".join(hostsnap.diff(before, after))


def module(lab, main=None, **over):
    """The xdp_lb module's main() with the instance's parameters changed by ``over`` (None removes)."""
    args = dict(lab["params"])
    for k, v in over.items():
        if v is None:
            args.pop(k, None)
        else:
            args[k] = v
    return run_module(main or xdp_lb.main, args)


def module_fails(lab, **over):
    out = module(lab, **over)
    assert not isinstance(out, AnsibleExitJson), "accepted: %s" % out.result
    return out.result["msg"]


def info(lab, **args):
    out = run_module(xdp_lb_info.main, dict({"state_dir": lab["state_dir"]}, **args))
    return out


SHIM = ("import sys; sys.path[:0] = [%r]; "
        "from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import cli; "
        "sys.exit(cli.main())" % os.path.join(ROOT, ".collections"))


def cli(lab, *args, **kw):
    """``xdp-lb --state-dir <lab's> ARGS`` as a separate process; CompletedProcess."""
    state_dir = kw.pop("state_dir", lab["state_dir"])
    return subprocess.run([sys.executable, "-c", SHIM, "--state-dir", state_dir] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          cwd=str(lab["tmp"]))


def playbook(lab, **over):
    """One ansible-playbook run of the module (through its action plugin); (rc, output)."""
    args = dict(lab["params"], **over)
    book = lab["tmp"] / "play.yml"
    book.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": [{"name": "Configure", "netfleet.xdp_lb.xdp_lb": args}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    p = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(book)], env=env, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return p.returncode, p.stdout
