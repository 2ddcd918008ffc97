"""Markdown tables for docs/benchmarks.md from benchmarks/fleet/run.py's results.

    .venv/bin/python benchmarks/fleet/tables.py [benchmarks/results/fleet.json] [--settings benchmarks/results/fleet-settings.json]
"""
import json
import sys

PHASES = ("first", "rerun", "change", "rolling")


def fmt(v, nd=2):
    return "" if v is None else ("%.*f" % (nd, v))


def summary(doc):
    print("| hosts | rounds | ping s | CPU s/host: ping | first | rerun | change | rolling "
          "| controller CPU / ping: first | rerun | change | rolling | wall / ping: first | rerun | change | rolling |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in doc["summary"]:
        if r["transport"] != "ssh":
            continue
        cells = [str(r["hosts"]), str(r["rounds"]), fmt(r["ping"], 1), fmt(r["ping_cpu"] / r["hosts"], 3)]
        # a phase not run (--phases): blank
        cells += [fmt(r[k + "_cpu"] / r["hosts"], 3) if k + "_cpu" in r else "" for k in PHASES]
        cells += ["**%sx** (%s-%s)" % (fmt(r.get(k + "_cpu_x")), fmt(r[k + "_cpu_x_range"][0]),
                                       fmt(r[k + "_cpu_x_range"][1])) if k + "_cpu_x" in r else "" for k in PHASES]
        cells += ["%sx (%s-%s)" % (fmt(r.get(k + "_x"), 1), fmt(r[k + "_x_range"][0], 1),
                                   fmt(r[k + "_x_range"][1], 1)) if k + "_x" in r else "" for k in PHASES]
        print("| " + " | ".join(cells) + " |")
    print()
    print("| hosts | hosts' CPU s/host: first | rerun | change | rolling | machine busy CPU s: ping | first | rerun "
          "| change | rolling | wall s: first | rerun | change | rolling |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in doc["summary"]:
        if r["transport"] != "ssh":
            continue
        cells = [str(r["hosts"])]
        cells += [fmt(r[k + "_hosts_cpu"] / r["hosts"], 2) if r.get(k + "_hosts_cpu") is not None else ""
                  for k in PHASES]
        cells += [fmt(r.get(k + "_machine_cpu"), 1) for k in ("ping",) + PHASES]
        cells += [fmt(r.get(k), 1) for k in PHASES]
        print("| " + " | ".join(cells) + " |")


def rounds(doc):
    print("| hosts | round | ping s (runs) | CPU s ctl ping / first / rerun / change / rolling | hosts CPU s first / rerun "
          "/ change / rolling | wall s first / rerun / change / rolling | rerun changed | load avg after ping; before first; before rolling |")
    print("|---:|---:|---|---|---|---|---|---|")
    for r in doc["rows"]:
        if "error" in r:
            print("| %d | %d | failed: %s | | | | | |" % (r["hosts"], r["round"], r["error"][:80]))
            continue
        print("| %d | %d | %s (%s) | %s | %s | %s | %s | %s; %s; %s |" % (
            r["hosts"], r["round"], fmt(r["ping"], 1), ", ".join("%.1f" % x for x in r["ping_all"]),
            " / ".join(fmt(r.get(k + "_cpu"), 1) for k in ("ping",) + PHASES),
            " / ".join(fmt(r.get(k + "_hosts_cpu"), 1) for k in PHASES),
            " / ".join(fmt(r.get(k), 1) for k in PHASES),
            r.get("rerun_changed"), r.get("ping_load", "").split()[0] if r.get("ping_load") else "",
            (r.get("first_load_before") or "-").split()[0], (r.get("rolling_load_before") or "-").split()[0]))


def settings(doc):
    ratio = any("rerun_cpu_x" in r for r in doc["settings_summary"])
    print("| variant | rounds | ping s | ping CPU s | setup s | setup CPU s | rerun s (range) | rerun controller CPU s (range) "
          "| per host | hosts' CPU s |" + (" rerun CPU / ping (range) |" if ratio else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if ratio else ""))
    for r in doc["settings_summary"]:
        x = (" **%sx** (%s-%s) |" % (fmt(r["rerun_cpu_x"]), fmt(r["rerun_cpu_x_range"][0]),
                                     fmt(r["rerun_cpu_x_range"][1]))) if ratio and "rerun_cpu_x" in r else ""
        print(("| %s | %d | %s | %s | %s | %s | %s (%s-%s) | %s (%s-%s) | %s | %s |" + x) % (
            r["variant"], r["rounds"], fmt(r.get("ping"), 1), fmt(r.get("ping_cpu"), 1), fmt(r.get("setup"), 1),
            fmt(r.get("setup_cpu"), 1), fmt(r["rerun"], 1), fmt(r["rerun_range"][0], 1), fmt(r["rerun_range"][1], 1),
            fmt(r["rerun_cpu"], 1), fmt(r["rerun_cpu_range"][0], 1), fmt(r["rerun_cpu_range"][1], 1),
            fmt(r["rerun_cpu"] / r["hosts"], 3), fmt(r.get("rerun_hosts_cpu"), 1)))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--settings" in args:
        i = args.index("--settings")
        with open(args[i + 1]) as f:
            settings(json.load(f))
        del args[i:i + 2]
    if args or "--settings" not in sys.argv:
        with open(args[0] if args else "benchmarks/results/fleet.json") as f:
            d = json.load(f)
        summary(d)
        print()
        rounds(d)
