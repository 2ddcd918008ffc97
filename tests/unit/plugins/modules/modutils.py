# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive a module's main() through AnsibleModule, as community.general's
tests/unit/plugins/modules/utils.py does: the module arguments go in the way
Ansible passes them, exit_json and fail_json raise instead of exiting."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json

from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils.testing import patch_module_args     # ansible-core 2.19+
except ImportError:      # older ansible-core: the same by hand
    @contextlib.contextmanager
    def patch_module_args(args=None):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}))):
            yield


class AnsibleExitJson(Exception):
    def __init__(self, result, params):
        super(AnsibleExitJson, self).__init__(result)
        self.result, self.params = result, params


class AnsibleFailJson(Exception):
    def __init__(self, result, params):
        super(AnsibleFailJson, self).__init__(result.get("msg"))
        self.result, self.params = result, params


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs, dict(self.params))


def _fail_json(self, msg, **kwargs):
    kwargs["failed"], kwargs["msg"] = True, msg
    raise AnsibleFailJson(kwargs, dict(self.params))


def run_module(main, args, check_mode=False, diff=False):
    """(exit or fail exception) of main() with ``args``; warnings in result['warnings']."""
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    warnings = []
    with patch_module_args(args), \
            mock.patch.multiple(basic.AnsibleModule, exit_json=_exit_json, fail_json=_fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", lambda self, w: warnings.append(w)):
        try:
            main()
        except (AnsibleExitJson, AnsibleFailJson) as exc:
            exc.result.setdefault("warnings", warnings)
            return exc
    raise AssertionError("main() returned without exit_json or fail_json")


def exits(main, args, **kw):
    out = run_module(main, args, **kw)
    assert isinstance(out, AnsibleExitJson), "expected success, got: %s" % out.result
    return out.result


def fails(main, args, **kw):
    out = run_module(main, args, **kw)
    assert isinstance(out, AnsibleFailJson), "expected a failure, got: %s" % out.result
    return out.result
