"""Helpers of the bad-input suite (conftest.py holds the fixtures): the instance's
parameters, and running the module, xdp_lb_info, the host command and ansible-playbook."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "plugins", "modules"))   # modutils

from modutils import run_module, AnsibleExitJson  # noqa: E402

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
