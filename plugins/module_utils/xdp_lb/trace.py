# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``xdp-lb trace``: the data plane's decisions of live packets, for a bounded time.

The normal program has no tracing on its hot path (lb_debug() compiles to
nothing).  For a trace the engine builds the same source with XDP_LB_DEBUG
(bpf_printk of each decision: new NAT/DSR flow to backend N, NAT port,
redirect slot, no backend, FIB failure), loads it sharing the instance's
pinned maps and swaps it in on every interface with XDP_FLAGS_REPLACE,
the way an upgrade does (engine.run).  It reads trace_pipe for the given
time, then swaps the normal program back in (the same program: same id
and tag, REPLACE against the debug one), re-pins it and puts the state file
back byte for byte, also when interrupted or failing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import select
import subprocess
import time

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import engine, model, netlink, state

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_LINE = re.compile(r"xdp_lb: (.*)$")
_BACKEND = re.compile(r"backend (\d+)")


class TraceError(Exception):
    pass


def trace_pipe():
    """Path of trace_pipe; mounts tracefs at /sys/kernel/tracing if no tracefs is mounted."""
    for d in TRACEFS:
        if os.path.exists(os.path.join(d, "trace_pipe")):
            return os.path.join(d, "trace_pipe")
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS[0]], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TraceError("tracefs is not mounted and mounting it at %s failed: %s" % (TRACEFS[0], exc))
    return os.path.join(TRACEFS[0], "trace_pipe")


def decode(line, backends):
    """A trace_pipe line of ours -> its decision, backend ids named; None for other lines."""
    m = _LINE.search(line)
    if not m:
        return None
    text = m.group(1).strip()
    return _BACKEND.sub(lambda b: "backend %s (%s)" % (b.group(1), backends.get(int(b.group(1)), "?")), text)


def run(data, seconds, emit):
    """Swap the debug build in, emit decoded decisions for ``seconds``, swap the normal program back."""
    cfg_dict = dict(data["config"])
    pin_dir = cfg_dict["pin_dir"]
    sfile = state.state_path(cfg_dict["state_dir"], data["name"])
    with open(sfile, "rb") as f:
        saved_state = f.read()
    normal = engine.pinned_program(pin_dir)
    if normal is None:
        raise TraceError("instance %s has no pinned program" % data["name"])
    backends = dict((i, k.replace("|", " ")) for k, i in ((data.get("ids") or {}).get("backends") or {}).items())
    cfg_dict.update(debug=True, source=(data.get("build") or {}).get("source_dir"))
    count = 0
    try:
        try:
            cfg = model.validate(cfg_dict)
            engine.run(cfg, diff=False)
        except (engine.EngineError, model.ConfigError) as exc:
            raise TraceError("the debug build could not be swapped in: %s" % exc)
        pipe = open(trace_pipe(), "rb", buffering=0)
        try:
            end = time.monotonic() + seconds
            buf = b""
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                ready, _w, _x = select.select([pipe], [], [], min(left, 0.2))
                if not ready:
                    continue
                buf += os.read(pipe.fileno(), 65536)
                lines = buf.split(b"\n")
                buf = lines.pop()
                for raw in lines:
                    text = decode(raw.decode("utf-8", "replace"), backends)
                    if text is not None:
                        count += 1
                        emit(text)
        finally:
            pipe.close()
    finally:
        _restore(data, normal, saved_state, sfile)
    return count


def _restore(data, normal, saved_state, sfile):
    cfg = data["config"]
    problems = []
    with netlink.in_netns(data.get("netns")):
        for name, spec in sorted((data.get("interfaces") or {}).items()):
            idx = netlink.link_index(name)
            if idx is None:
                continue
            cur = netlink.xdp_query(idx)
            if cur["prog_id"] == normal["id"] or not cur["prog_id"]:
                continue
            fd = None
            try:
                fd = engine.bpf.prog_fd_by_id(cur["prog_id"])
                netlink.xdp_attach(name, idx, normal["fd"], spec.get("mode") or cfg.get("attach_mode"),
                                   expected_fd=fd)
            except Exception as exc:   # keep restoring the other interfaces
                problems.append("%s: %s" % (name, exc))
            finally:
                engine._close(fd)
    try:
        engine.pin_program(normal["fd"], cfg["pin_dir"])
        state.write_atomic(sfile, saved_state.decode("utf-8"), 0o600)
    except Exception as exc:
        problems.append("pin/state: %s" % exc)
    engine._close(normal["fd"])
    if problems:
        raise TraceError("putting the normal program back was incomplete (run 'xdp-lb restore %s'): %s"
                         % (data["name"], "; ".join(problems)))
