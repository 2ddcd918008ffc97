# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a unit's ExecStart under restrictions equivalent to its sandboxing.

systemd is not PID 1 on the lab hosts, so it cannot start the units.  This
reads a unit file and runs its command (plus the arguments given) the way
its [Service] sandbox would let it run, by means available here:

- ProtectSystem=strict, ProtectHome, ProtectKernelTunables: a private mount
  namespace in which every mount is remounted read-only, except /dev,
  /proc (but /proc/sys is read-only), /sys/fs/bpf and the unit's
  ReadWritePaths (bind-mounted onto themselves first, so they stay
  writable);
- CapabilityBoundingSet and NoNewPrivileges: setpriv --bounding-set and
  --no-new-privs.

RestrictAddressFamilies, SystemCallFilter and RestrictNamespaces need
seccomp and are not reproduced (systemd-analyze security checks them).

usage: python3 sandboxed.py UNIT_FILE [ARG ...]; exits with the command's status.
"""

import os
import shlex
import subprocess
import sys


def directives(path):
    out = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if "=" in line and not line.startswith(("#", "[")):
                key, value = line.split("=", 1)
                out.setdefault(key, []).append(value)
    return out


def main():
    unit = directives(sys.argv[1])
    argv = shlex.split(unit["ExecStart"][0]) + sys.argv[2:]
    writable = []
    for value in unit.get("ReadWritePaths", []):
        for path in value.split():
            optional = path.startswith("-")
            path = path.lstrip("-")
            if os.path.exists(path):
                writable.append(path)
            elif not optional:
                sys.exit("ReadWritePaths %s does not exist" % path)
    caps = ",".join("+" + cap.lower()[len("cap_"):] for cap in unit["CapabilityBoundingSet"][0].split())
    script = """set -eu
for p in "$@"; do mount --bind "$p" "$p"; done
findmnt -rn -o TARGET | while read -r m; do
  m=$(printf '%b' "$m")
  case "$m" in /dev|/dev/*|/proc|/proc/*|/sys/fs/bpf|/sys/fs/bpf/*) continue ;; esac
  keep=no
  for p in "$@"; do [ "$m" = "$p" ] && keep=yes; done
  [ $keep = yes ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
"""
    wrapped = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               script + 'exec setpriv --bounding-set -all,%s --no-new-privs -- %s' % (
                   caps, " ".join(shlex.quote(a) for a in argv)), "sandboxed"] + writable
    return subprocess.call(wrapped)


if __name__ == "__main__":
    sys.exit(main())
