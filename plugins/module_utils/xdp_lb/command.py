# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place that runs external programs: argument lists, never a shell."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess


class CommandError(Exception):
    def __init__(self, argv, rc, stdout, stderr):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        detail = (stderr or stdout or "").strip()
        super(CommandError, self).__init__(
            "%s exited %s%s" % (argv[0], rc, (": " + detail) if detail else ""))


def run(argv, check=True, timeout=300):
    """Run ``argv``; return (rc, stdout, stderr) as text.

    A missing program raises CommandError with rc 127 naming it.
    """
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise CommandError(argv, 127, "", "%s: command not found" % argv[0])
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out, err)
    return proc.returncode, out, err
