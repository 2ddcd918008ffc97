# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/xdp_lb: its lean argument spec, its task and the module agree.

Ansible checks meta/argument_specs.yml in a task of its own on every host
and run, templating and copying the whole options tree (docs/benchmarks.md,
"The role made cheaper on the controller"), so the spec stays lean: per
variable its type, choices, elements, default and one line naming the
module option it maps onto, no nested options (the module checks those
entries).  Here: each such line names the option tasks/main.yml really
passes the variable to, that option exists in the module's documentation,
every variable has its default in defaults/main.yml, and the spec does not
grow back nested options or long descriptions.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import yaml

from ansible_collections.netfleet.xdp_lb.plugins.modules import xdp_lb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "xdp_lb")
MODULE_OPTION = re.compile(r"O\(netfleet\.xdp_lb\.xdp_lb#module:([a-z0-9_.]+)\)")
PLAIN = re.compile(r"^\{\{ (xdp_lb_[a-z0-9_]+) \}\}$")
OLDER_NAMES = {"xdp_lb_install_packages"}       # no option of its own: the default of xdp_lb_packages_policy


def load(*path):
    with open(os.path.join(ROLE, *path)) as f:
        return yaml.safe_load(f)


def spec():
    return load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def task_mapping():
    """{variable: module option path} from tasks/main.yml (one plain "{{ var }}" per option)."""
    tasks = load("tasks", "main.yml")
    assert len(tasks) == 1, "the role is one module task"
    args = tasks[0]["netfleet.xdp_lb.xdp_lb"]
    out, literal = {}, []
    for key, value in args.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            path = key if sub is None else "%s.%s" % (key, sub)
            m = PLAIN.match(v) if isinstance(v, str) else None
            if m:
                out[m.group(1)] = path
            else:
                literal.append(path)
    assert literal == ["host_command.install"], "options not given as a plain variable: %s" % literal
    return out


def module_paths():
    """The module's options and the suboptions of its dict options (its argument spec, which
    validate-modules holds to its documentation)."""
    out = set()
    for name, opt in xdp_lb.ARGUMENT_SPEC.items():
        out.add(name)
        for sub in (opt.get("options") or {}):
            out.add("%s.%s" % (name, sub))
    return out


def test_each_variable_names_the_option_it_maps_onto():
    mapping, paths = task_mapping(), module_paths()
    for var, opt in spec().items():
        if var in OLDER_NAMES:
            continue
        named = MODULE_OPTION.findall(opt.get("description") or "")
        assert named, "%s: its description names no module option" % var
        assert named[0] == mapping.get(var), "%s: described as %s, passed to %s" % (var, named[0], mapping.get(var))
        assert named[0] in paths, "%s: %s is not an option of the module" % (var, named[0])


def test_task_passes_only_specified_variables():
    assert set(task_mapping()) <= set(spec())


def test_defaults_cover_the_spec():
    defaults = load("defaults", "main.yml")
    assert set(spec()) == set(defaults)
    for var, opt in spec().items():
        if "default" in opt:
            assert opt["default"] == defaults[var], "%s: spec default %r, defaults/main.yml %r" % (
                var, opt["default"], defaults[var])


def test_spec_stays_lean():
    for var, opt in spec().items():
        assert "options" not in opt, "%s: nested options (the module checks the entries)" % var
        assert set(opt) <= {"type", "choices", "elements", "default", "description", "required"}, var
        assert isinstance(opt.get("description"), str) and len(opt["description"]) <= 160, \
            "%s: one line naming the module option; the module's documentation is the long one" % var
