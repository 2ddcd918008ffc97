# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables for people: what ``xdp-lb`` prints without ``--json`` (pure functions, no I/O)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time


_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?[kMGTP]?B?$")


def table(headers, rows, indent="  "):
    """Left-aligned text columns, numbers right-aligned; one string."""
    rows = [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    numeric = [all(_NUMBER.match(r[i]) or r[i] == "-" for r in rows)
               and any(r[i] != "-" for r in rows) for i in range(len(headers))]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]))
        return (indent + "  ".join(out)).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in rows])


def human(n, unit=""):
    """1234567 -> '1.2M' (counts and rates)."""
    n = float(n)
    for suffix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return ("%d%s%s" % (n, suffix, unit)) if suffix == "" else ("%.1f%s%s" % (n, suffix, unit))
        n /= 1000.0
    return "%.1fP%s" % (n, unit)


def overrides_ports(ports):
    ports = ports or {}
    return (["redirect port %s added" % n for n in ports.get("add", [])] +
            ["redirect port %s removed" % n for n in ports.get("remove", [])])


def _override(o):
    if not o:
        return "-"
    return {"drain": "drain", "undrain": "undrain", "weight": "weight %s" % o.get("weight")}[o["action"]]


def status(info):
    """One instance's status (operate.status) as text."""
    if "error" in info:
        return "instance %s: ERROR %s" % (info.get("name"), info["error"])
    prog = info.get("program") or {}
    netns = "  netns %s" % info["netns"] if info.get("netns") else ""
    lines = ["instance %s  mode %s%s" % (info.get("name"), info.get("mode"), netns),
             "program %s  tag %s  build %s" % (prog.get("id") or "-", prog.get("tag") or "-",
                                               (info.get("build") or "-")[:12])]
    rows = []
    for name, a in sorted((info.get("interfaces") or {}).items()):
        rows.append([name, a.get("prog_id"), a.get("mode"), a.get("tag"),
                     "yes" if a.get("ours") else ("no" if a.get("prog_id") else "-")])
    lines.append(table(["interface", "prog", "mode", "tag", "ours"], rows))
    for s in info.get("services") or []:
        lines.append("")
        lines.append("service %s  %s  ring %s" % (s["service"], s.get("scheduler"), s.get("ring") or "-"))
        rows = []
        for b in s["backends"]:
            host = b["address"] if ":" not in b["address"] else "[%s]" % b["address"]
            rows.append(["%s:%d" % (host, b["port"]), b.get("configured_weight"), b.get("effective_weight"),
                         b.get("health", "-"), _override(b.get("override")), b.get("packets", 0),
                         human(b.get("bytes", 0), "B")])
        if rows:
            lines.append(table(["backend", "weight", "eff", "health", "override", "packets", "bytes"], rows))
        else:
            lines.append("  (no backends)")
    if info.get("redirect_ports"):
        lines.append("")
        lines.append(table(["port", "interface", "packets", "bytes"],
                           [[p["slot"], p.get("interface"), p.get("packets", 0), human(p.get("bytes", 0), "B")]
                            for p in info["redirect_ports"]]))
    ct = info.get("conntrack") or {}
    size = (info.get("config") or {}).get("conntrack_size") or ""
    lines.append("")
    lines.append("conntrack  %s flows%s, %s NAT flows" % (ct.get("flows", "-"), " of %s" % size if size else "",
                                                          ct.get("nat_flows", "-")))
    stats = info.get("stats") or {}
    if stats:
        lines.append("verdicts   " + "  ".join("%s %s" % (k, human(v.get("packets", 0)))
                                               for k, v in sorted(stats.items()) if v.get("packets")))
    for text in [v["text"] for v in (info.get("overrides") or {}).values()] + \
            overrides_ports(info.get("redirect_overrides")):
        lines.append("override   %s" % text)
    diffs = info.get("differences") or []
    lines.append("state file %s" % ("matches the live host" if not diffs else "differs:"))
    for d in diffs + (info.get("problems") or []):
        lines.append("  ! %s" % d)
    return "\n".join(lines)


def flows(rows, aged):
    """``xdp-lb flows`` as a table (age only when conntrack entries have a last-seen time)."""
    if not rows:
        return "no flows"
    headers = ["client", "service", "backend", "nat port"] + (["age s"] if aged else [])
    return table(headers, [[r["client"], r["service"], r["backend"] or "(gone: %d)" % r["backend_id"],
                            r["nat_port"]] + ([r["age"]] if aged else []) for r in rows], indent="")


def top(name, r):
    """One ``xdp-lb top`` screen: fits 80 columns (long names are cut on the left)."""
    lines = ["xdp-lb top  %s  %s  interval %.1f s" % (name, time_hms(), r["interval"])]
    for title, key, quiet in (("backend", "backends", False), ("verdict", "verdicts", True),
                              ("redirect port", "ports", False)):
        rows = [x for x in r[key] if not quiet or x["pps"] or x["packets"]]
        if not rows:
            continue
        lines.append("")
        lines.append(table([title, "pkt/s", "bit/s", "packets"],
                           [[_cut(x["name"], 44), human(x["pps"]), human(x["bps"]), human(x["packets"])]
                            for x in rows], indent=""))
    return "\n".join(lines)


def _cut(text, width):
    return text if len(text) <= width else "..." + text[-(width - 3):]


def time_hms():
    return time.strftime("%H:%M:%S")


def override_result(res, verb):
    lines = []
    for key in res.get("backends") or res.get("cleared") or []:
        lines.append("%s %s %s" % (res["instance"], verb, key.replace("|", " backend ")))
    if not lines:
        lines.append("%s: nothing to %s" % (res["instance"], verb))
    for c in res.get("changes") or []:
        lines.append("  applied: %s" % c)
    return "\n".join(lines)
