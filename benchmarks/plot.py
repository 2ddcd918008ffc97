"""Plots for docs/benchmarks.md from the benchmarks' results.

    make bench-plots            # = .venv/bin/python benchmarks/plot.py

Reads build/bench-{forwarding,fleet,controlplane}/results.json where a
benchmark ran (and copies it to benchmarks/results/<name>.json, which is
committed), else the committed copy; writes docs/img/*.png.
"""
import json
import os
import shutil
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG = os.path.join(ROOT, "docs", "img")
KEPT = os.path.join(ROOT, "benchmarks", "results")
SCALE = "fleet-after-argspec"       # benchmarks/results/<SCALE>.json: the sweep fleet_scale.png shows


def load(name):
    fresh = os.path.join(ROOT, "build", "bench-" + name, "results.json")
    kept = os.path.join(KEPT, name + ".json")
    if os.path.exists(fresh):
        os.makedirs(KEPT, exist_ok=True)
        shutil.copyfile(fresh, kept)
    if not os.path.exists(kept):
        return None
    with open(kept) as f:
        return json.load(f)


def subtitle(doc):
    m = doc["machine"]
    return "%s, %s CPUs, kernel %s" % (m["date"], m["nproc"], m["kernel"])


def forwarding(doc):
    labels = {"xdp-nat": "xdp_lb\nnat", "xdp-dsr": "xdp_lb\ndsr", "xdp-redirect": "xdp_lb\nredirect",
              "nft": "nftables\nDNAT jhash", "plain": "plain\nforwarding", "ref": "generator\nonly (ref)"}
    order = [m for m in ("xdp-nat", "xdp-dsr", "xdp-redirect", "nft", "plain", "ref") if m in doc["summary"]]
    sat = [r for r in doc["results"] if r["rate"] == 0]
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.6))
    ref = doc["summary"].get("ref", {}).get("ns_per_packet_median") or 0
    for i, m in enumerate(order):
        rows = [r for r in sat if r["method"] == m]
        total = statistics.median(r["ns_per_packet"] for r in rows)
        color = "#bbbbbb" if m == "ref" else ("#4878d0" if m.startswith("xdp") else "#ee854a")
        ax.bar(i, min(ref, total), color="#dddddd", label="generator-only reference" if i == 0 else None)
        ax.bar(i, max(0, total - ref), bottom=min(ref, total), color=color)
        ax.scatter([i] * len(rows), [r["ns_per_packet"] for r in rows], color="black", s=10, zorder=3)
        ax.text(i, total, "%.0f" % total, ha="center", va="bottom", fontsize=7)
        pps = [r["pps"] / 1e6 for r in rows]
        per_cpu = [1e3 / r["ns_per_packet"] for r in rows]
        if m == "ref":      # off the scale of the others: in the title instead
            ax2.set_title("Throughput, one CPU (bars: median, dots: rounds)\ngenerator only: %.1f Mpps per CPU"
                          % statistics.median(per_cpu), fontsize=9)
            continue
        ax2.bar(i - 0.2, statistics.median(per_cpu), width=0.4, color=color,
                label="per CPU (1 / CPU per packet)" if i == 0 else None)
        ax2.bar(i + 0.2, statistics.median(pps), width=0.4, color=color, alpha=0.45,
                label="wall clock (CPU shared)" if i == 0 else None)
        ax2.scatter([i - 0.2] * len(per_cpu), per_cpu, color="black", s=8, zorder=3)
        ax2.scatter([i + 0.2] * len(pps), pps, color="black", s=8, zorder=3)
    for a in (ax, ax2):
        a.set_xticks(range(len(order)))
        a.set_xticklabels([labels[m] for m in order], fontsize=8)
        a.grid(axis="y", alpha=0.3)
    ax.set_ylabel("CPU ns per delivered packet, whole path")
    ax.set_title("CPU per packet at saturation (grey: generator reference)", fontsize=9)
    ax.legend(fontsize=7)
    ax2.set_ylabel("Mpps delivered at saturation")
    ax2.legend(fontsize=7)
    # Fixed offered loads: on veth nothing is lost (delivered = sent at every load); what a load costs is
    # the CPU it needs, offered x CPU per packet (the generator falls behind where it gets less).
    loads = sorted({float(k) for m in order for k in doc["summary"][m]["loads"]})
    xs = [0.0] + loads
    for m in order:
        if m == "ref":
            continue
        cost = doc["summary"][m]["ns_per_packet_median"]
        ax3.plot([x / 1e3 for x in xs], [x * cost / 1e9 for x in xs], marker="o", label=labels[m].replace("\n", " "))
    ax3.axhline(1.0, color="black", lw=1, ls=":", label="one CPU")
    ax3.set_xlabel("offered load, kpps")
    ax3.set_ylabel("CPUs the whole path needs")
    ax3.set_title("Fixed offered loads: CPU needed (load x CPU per packet);\nevery frame sent was delivered, "
                  "at every load", fontsize=9)
    ax3.grid(alpha=0.3)
    ax3.legend(fontsize=7)
    fig.suptitle("XDP generator (live frames) -> balancer -> 3 backends, 64-byte UDP, %d flows, veth, "
                 "%g s x %d rounds - %s" % (doc["args"]["flows"], doc["args"]["seconds"], doc["args"]["repeat"],
                                            subtitle(doc)), fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, "forwarding_pps.png"), dpi=100)
    plt.close(fig)


def fleet(doc):
    """Medians over the rounds (doc["summary"]); older results have one row per host count."""
    rows = doc.get("summary") or [r for r in doc["rows"] if "error" not in r]
    fig, ax = plt.subplots(figsize=(8, 4.4))
    styles = {"ssh": "-", "mitogen": "--"}
    for transport in sorted(set(r["transport"] for r in rows)):
        sel = sorted([r for r in rows if r["transport"] == transport], key=lambda r: r["hosts"])
        x = [r["hosts"] for r in sel]
        for key, color, label in (("first", "#d65f5f", "first deploy"), ("rerun", "#4878d0", "rerun"),
                                  ("ping", "#6acc64", "ansible -m ping")):
            if key == "ping" and transport != "ssh":
                continue
            ax.plot(x, [r[key] for r in sel], styles.get(transport, ":"), marker="o", color=color,
                    label="%s (%s)" % (label, transport))
        if transport == "ssh":
            for key, factor, color in (("first", 3, "#d65f5f"), ("rerun", 2, "#4878d0")):
                ax.plot(x, [factor * r["ping"] for r in sel], ":", color=color, alpha=0.6,
                        label="target %s: %dx ping" % (key, factor))
    ax.set_xlabel("hosts (network namespaces behind their own sshd)")
    ax.set_ylabel("wall time, s")
    ax.set_xticks(sorted(set(r["hosts"] for r in rows)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("site.yml deploy time by host count (medians) - %s" % subtitle(doc), fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, "fleet_deploy.png"), dpi=100)
    plt.close(fig)


def fleet_scale(doc, before=None, before_label="before"):
    """Cost against host count: controller CPU per host by phase (with the
    targets, relative to ping), the hosts' own CPU per host, wall time.
    ``before``: an older run whose controller CPU per host for a rerun and a
    first deploy is drawn thin and dashed next to the new one."""
    rows = [r for r in doc.get("summary") or [] if r["transport"] == "ssh" and "ping_cpu" in r]
    if not rows or not any("change_cpu" in r for r in rows):
        return False
    rows.sort(key=lambda r: r["hosts"])
    x = [r["hosts"] for r in rows]
    phases = (("ping", "#6acc64", "ansible -m ping"), ("first", "#d65f5f", "first deploy"),
              ("rerun", "#4878d0", "rerun"), ("change", "#956cb4", "backend change"),
              ("rolling", "#8c613c", "rolling.yml (gated)"))
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4.4))
    for key, color, label in phases:
        sel = [r for r in rows if key + "_cpu" in r]
        if not sel:
            continue
        xs = [r["hosts"] for r in sel]
        a1.plot(xs, [r[key + "_cpu"] / r["hosts"] for r in sel], "-o", color=color, label=label)
        if key != "ping" and all(r.get(key + "_hosts_cpu") is not None for r in sel):
            a2.plot(xs, [r[key + "_hosts_cpu"] / r["hosts"] for r in sel], "-o", color=color, label=label)
        a3.plot(xs, [r[key] for r in sel], "-o", color=color, label=label)
    for factor, color in ((2, "#4878d0"), (3, "#d65f5f")):
        a1.plot(x, [factor * r["ping_cpu"] / r["hosts"] for r in rows], ":", color=color, alpha=0.7,
                label="target: %dx ping" % factor)
    old = sorted([r for r in (before or {}).get("summary") or [] if r["transport"] == "ssh" and "ping_cpu" in r],
                 key=lambda r: r["hosts"])
    for key, color, label in (("first", "#d65f5f", "first deploy"), ("rerun", "#4878d0", "rerun")):
        sel = [r for r in old if key + "_cpu" in r]
        if sel:
            a1.plot([r["hosts"] for r in sel], [r[key + "_cpu"] / r["hosts"] for r in sel], "--", lw=1,
                    color=color, alpha=0.45, label="%s, %s" % (label, before_label))
    a1.set_title("controller CPU per host (medians)", fontsize=9)
    a1.set_ylabel("CPU s per host (ansible, workers, ssh)")
    a2.set_title("hosts' own CPU per host (sshd + module runs)", fontsize=9)
    a2.set_ylabel("CPU s per host")
    a3.set_title("wall time (2 CPUs shared with the hosts and others)", fontsize=9)
    a3.set_ylabel("s")
    for a in (a1, a2, a3):
        a.set_xscale("log")
        a.set_xticks(x)
        a.set_xticklabels([str(v) for v in x])
        a.set_xlabel("hosts")
        a.grid(alpha=0.3)
    a1.set_ylim(bottom=0)
    a2.set_ylim(bottom=0)
    a1.legend(fontsize=7)
    a3.legend(fontsize=7)
    fig.suptitle("site.yml%s against host count - %s%s" % (
        " and rolling.yml" if any("rolling_cpu" in r for r in rows) else "", subtitle(doc),
        (" (dashed: %s, run of %s)" % (before_label, before["machine"]["date"])) if old else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, "fleet_scale.png"), dpi=100)
    plt.close(fig)
    return True


def controlplane(doc):
    order = ("maglev", "read", "plan", "write", "digest", "state", "other")
    colors = ("#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4", "#8c613c", "#bbbbbb")
    kinds = [k for k in ("weight", "replace", "no-op") if k in doc["summary"]]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for i, kind in enumerate(kinds):
        left = 0
        sm = doc["summary"][kind]
        split = sm.get("cpu_split_median") or sm["split_median"]
        for name, color in zip(order, colors):
            v = split.get(name, 0)
            ax.barh(i, v, left=left, height=0.5, color=color, label=name if i == 0 else None)
            left += v
        spread = [[sm["total_median"] - sm["total_min"]], [sm["total_max"] - sm["total_median"]]]
        ax.errorbar([sm["total_median"]], [i + 0.32], xerr=spread, fmt="kv", ms=5, capsize=3,
                    label="wall time (median, min-max)" if i == 0 else None)
    ax.axvline(1.0, color="black", lw=1, ls=":")
    ax.text(1.01, -0.45, "target 1 s", fontsize=8)
    ax.set_yticks(range(len(kinds)))
    ax.set_yticklabels(["%s\nCPU %.2f s, wall %.2f s" % (k, doc["summary"][k].get("cpu_median", 0),
                                                         doc["summary"][k]["total_median"]) for k in kinds],
                       fontsize=8)
    ax.set_xlabel("seconds: bars = process CPU time per step (median), markers = wall time")
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    ax.set_xlim(0, max([doc["summary"][k]["total_max"] for k in kinds] + [1.0]) * 1.1)   # the target shows
    ax.set_ylim(-0.6, len(kinds) - 0.2 + 0.8)
    ax.set_title("One change to a service with %d backends (ring %d), engine on real maps\n%s" % (
        doc["args"]["backends"], doc["args"]["ring_size"], subtitle(doc)), fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(IMG, "controlplane_split.png"), dpi=100)
    plt.close(fig)


def main():
    os.makedirs(IMG, exist_ok=True)
    for name, fn in (("forwarding", forwarding), ("fleet", fleet), ("controlplane", controlplane)):
        doc = load(name)
        if doc is None:
            print("%s: no results yet" % name)
            continue
        fn(doc)
        print("%s: plotted" % name)
        # the cost-by-host-count plot: the latest sweep (issue #19, after the lean argument spec),
        # with the run of fleet.json (before the role's rewrite) dashed next to it
        scale = load(SCALE) if name == "fleet" else None
        if name == "fleet" and fleet_scale(scale or doc, before=doc if scale else None,
                                           before_label="before the role rewrite (#14)"):
            print("fleet: scale plotted from %s" % (SCALE if scale else name))


if __name__ == "__main__":
    main()
