# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-task wall time (ansible-core 2.19 ships no profile_tasks callback).

Enable with ANSIBLE_CALLBACK_PLUGINS=<this dir> ANSIBLE_CALLBACKS_ENABLED=task_timer.
For every task: wall time from its start to the last host's result, and per
host the time from the task's start to that host's result.  With
TASK_TIMER_OUT=<file> the records are written there as JSON at the end;
a summary of the slowest tasks goes to the display.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: task_timer
type: aggregate
short_description: wall time per task and host (benchmarks/fleet)
description:
  - Records when each task starts and when each host's result arrives.
requirements:
  - enable in configuration
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.tasks = []
        self.current = None
        self.t0 = time.time()

    def _start(self, task, kind="task"):
        now = time.time()
        if self.current is not None:
            self.current["end"] = self.current.get("end") or now
        path = task.get_path() or ""
        self.current = {"name": task.get_name(), "action": task.action, "path": path, "kind": kind,
                        "start": now, "end": None, "hosts": {}, "status": {}}
        self.tasks.append(self.current)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task, "handler")

    def _result(self, result, status):
        if self.current is None:
            return
        now = time.time()
        host = result._host.get_name()
        self.current["hosts"][host] = round(now - self.current["start"], 4)
        self.current["status"][host] = status
        self.current["end"] = now

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        end = time.time()
        if self.current is not None and self.current["end"] is None:
            self.current["end"] = end
        for t in self.tasks:
            t["wall"] = round((t["end"] or end) - t["start"], 4)
        out = os.environ.get("TASK_TIMER_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"total": round(end - self.t0, 3), "tasks": self.tasks}, f, indent=1)
        top = sorted(self.tasks, key=lambda t: -t["wall"])[:12]
        self._display.display("task_timer: %.1f s in total; slowest tasks:" % (end - self.t0))
        for t in top:
            skipped = sum(1 for s in t["status"].values() if s == "skipped")
            note = "(skipped on %d)" % skipped if skipped else ""
            self._display.display("  %7.2f s  %-60s %s" % (t["wall"], t["name"][:60], note))
