# -*- coding: utf-8 -*-
# Copyright: (c) 2026, netfleet.xdp_lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Counters of the load balancers in Prometheus text format (node_exporter textfile collector).

``render(instances)`` turns what ``engine.info`` returns (the same data the
xdp_lb_info module reports) into text: pure, no I/O.  The CLI puts it in
place with ``state.write_atomic``, the way the textfile collector needs it:
written to a temporary file in the same directory (whose name does not end
in ``.prom``, so the collector never reads a half-written file), then
renamed over the target.

Metrics (label ``instance`` is the balancer's instance name, not
Prometheus' own ``instance`` target label: node_exporter's scrape config
usually relabels it to ``exported_instance``):

    xdp_lb_up{instance}                                       1 if the instance could be read
    xdp_lb_program_info{instance,interface,prog_id,mode,tag}  1 if the instance's program is attached
    xdp_lb_packets_total{instance,service,backend}            packets forwarded to the backend
    xdp_lb_bytes_total{instance,service,backend}              bytes of those packets
    xdp_lb_backend_weight{instance,service,backend}           configured weight
    xdp_lb_verdict_packets_total{instance,verdict}            per data-plane verdict
    xdp_lb_verdict_bytes_total{instance,verdict}
    xdp_lb_redirect_packets_total{instance,interface,slot}    redirect mode, per egress port
    xdp_lb_redirect_bytes_total{instance,interface,slot}
    xdp_lb_conntrack_entries{instance,table}                  lb_ct (flows), lb_nat_rev (nat_flows)
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


# name -> (type, help); the order of the output.
METRICS = (
    ("xdp_lb_up", "gauge", "1 if the load balancer instance could be read, 0 if not."),
    ("xdp_lb_program_info", "gauge",
     "XDP program attached to an interface of the instance; 1 if it is the instance's own program."),
    ("xdp_lb_packets_total", "counter", "Packets the data plane forwarded to the backend."),
    ("xdp_lb_bytes_total", "counter", "Bytes of the packets the data plane forwarded to the backend."),
    ("xdp_lb_backend_weight", "gauge", "Configured weight of the backend (0: drained)."),
    ("xdp_lb_verdict_packets_total", "counter", "Packets per data-plane verdict."),
    ("xdp_lb_verdict_bytes_total", "counter", "Bytes per data-plane verdict."),
    ("xdp_lb_redirect_packets_total", "counter", "Packets sent out of a redirect port (redirect mode)."),
    ("xdp_lb_redirect_bytes_total", "counter", "Bytes sent out of a redirect port (redirect mode)."),
    ("xdp_lb_conntrack_entries", "gauge", "Entries in a connection table (flows: lb_ct, nat_flows: lb_nat_rev)."),
)


def escape_label(value):
    """A label value as the text format wants it (backslash, quote, newline escaped)."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(pairs):
    return ",".join('%s="%s"' % (k, escape_label("" if v is None else v)) for k, v in pairs)


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def backend_label(address, port, service_port):
    """'198.18.1.11:80' or '[fd00:18:1::11]:80' (port 0: the service's port)."""
    port = port or service_port or 0
    host = "[%s]" % address if ":" in address else address
    return "%s:%d" % (host, port)


def _service_port(service):
    try:
        return int(str(service).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def samples(instances):
    """{metric name: [(labels, value)]} for the instances ``engine.info`` returned."""
    out = dict((name, []) for name, _t, _h in METRICS)
    for inst in instances:
        name = inst.get("name")
        ok = "error" not in inst
        out["xdp_lb_up"].append(((("instance", name),), 1 if ok else 0))
        if not ok:
            continue
        program = inst.get("program") or {}
        for ifname in sorted(inst.get("interfaces") or {}):
            a = inst["interfaces"][ifname] or {}
            labels = (("instance", name), ("interface", ifname), ("prog_id", a.get("prog_id") or ""),
                      ("mode", a.get("mode") or ""), ("tag", a.get("tag") or program.get("tag") or ""))
            out["xdp_lb_program_info"].append((labels, 1 if a.get("ours") else 0))
        for svc in inst.get("services") or []:
            skey = svc.get("service")
            sport = _service_port(skey)
            for bk in svc.get("backends") or []:
                labels = (("instance", name), ("service", skey),
                          ("backend", backend_label(bk.get("address"), bk.get("port"), sport)))
                out["xdp_lb_packets_total"].append((labels, bk.get("packets", 0)))
                out["xdp_lb_bytes_total"].append((labels, bk.get("bytes", 0)))
                if bk.get("weight") is not None:
                    out["xdp_lb_backend_weight"].append((labels, bk["weight"]))
        for verdict in sorted(inst.get("stats") or {}):
            c = inst["stats"][verdict]
            labels = (("instance", name), ("verdict", verdict))
            out["xdp_lb_verdict_packets_total"].append((labels, c.get("packets", 0)))
            out["xdp_lb_verdict_bytes_total"].append((labels, c.get("bytes", 0)))
        for port in inst.get("redirect_ports") or []:
            labels = (("instance", name), ("interface", port.get("interface") or port.get("ifindex")),
                      ("slot", port.get("slot")))
            out["xdp_lb_redirect_packets_total"].append((labels, port.get("packets", 0)))
            out["xdp_lb_redirect_bytes_total"].append((labels, port.get("bytes", 0)))
        for table in sorted(inst.get("conntrack") or {}):
            out["xdp_lb_conntrack_entries"].append(
                ((("instance", name), ("table", table)), inst["conntrack"][table]))
    return out


def render(instances):
    """The text file: HELP and TYPE of every metric that has samples, then its samples."""
    data = samples(instances)
    lines = []
    for name, mtype, text in METRICS:
        if not data[name]:
            continue
        lines.append("# HELP %s %s" % (name, text.replace("\\", "\\\\").replace("\n", "\\n")))
        lines.append("# TYPE %s %s" % (name, mtype))
        for labels, value in data[name]:
            lines.append("%s{%s} %s" % (name, _labels(labels), _number(value)))
    return "\n".join(lines) + "\n" if lines else ""
