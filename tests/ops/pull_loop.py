# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's stand-in for netfleet-xdp-lb-pull.timer (no systemd as PID 1 here).

    pull_loop.py --host NAME --interval SECONDS --checkout DIR --log RUNS.jsonl --out OUTPUT.log -- ARGV...

Runs ARGV (the pull service's ExecStart) every INTERVAL seconds, counted
from the start of the previous run as OnUnitActiveSec does; a run that
takes longer is followed by the next one at once; runs never overlap (a
oneshot unit is not started while it runs).  After each run one JSON line
goes to RUNS.jsonl: start, end, wall and CPU seconds (the run's process
tree, from wait4), exit status, the checkout's commit and the PLAY RECAP
counts for NAME.  The run's output is appended to OUTPUT.log.  SIGTERM
ends the loop and the run in progress (its process group).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

_stop = {"flag": False, "child": None}


def _terminate(signum, frame):
    _stop["flag"] = True
    child = _stop["child"]
    if child:
        try:
            os.killpg(child, signal.SIGTERM)
        except OSError:
            pass


def recap(text, host):
    """The PLAY RECAP counts of HOST in an ansible-playbook output."""
    counts = None
    for m in re.finditer(r"^%s\s*:\s*(.*)$" % re.escape(host), text, re.M):
        counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1)))
    return counts


def commit_of(checkout):
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout.strip() or None
    except OSError:
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--checkout", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("argv", nargs="+")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    n = 0
    while not _stop["flag"]:
        n += 1
        start = time.time()
        with open(args.out, "a") as out:
            out.write("\n=== run %d %s\n" % (n, time.strftime("%H:%M:%S")))
            out.flush()
            size = out.tell()
            proc = subprocess.Popen(args.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            _stop["child"] = proc.pid
            status, usage = os.wait4(proc.pid, 0)[1:]
            _stop["child"] = None
        end = time.time()
        with open(args.out) as f:
            f.seek(size)
            text = f.read()
        rec = {"host": args.host, "run": n, "start": start, "end": end, "wall": round(end - start, 3),
               "cpu": round(usage.ru_utime + usage.ru_stime, 3), "rc": os.waitstatus_to_exitcode(status),
               "commit": commit_of(args.checkout), "recap": recap(text, args.host)}
        with open(args.log, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        while not _stop["flag"] and time.time() < start + args.interval:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
