"""Where the controller's CPU goes in one ansible-playbook run: cProfile of the main process and of every worker.

    .venv/bin/python benchmarks/fleet/profile_controller.py OUTDIR -- -i INVENTORY site.yml
    .venv/bin/python benchmarks/fleet/profile_controller.py OUTDIR --report [--top 25]
    .venv/bin/python benchmarks/fleet/profile_controller.py OUTDIR --cpu-only -- -i INVENTORY site.yml

`--cpu-only` profiles nothing: it writes OUTDIR/cpu.json with the main
process's own CPU seconds (the strategy loop: serial, whatever the forks)
and those of its children (workers and their ssh clients).

Runs ansible-playbook (ansible-core's own entry point, in this process) with
cProfile on the process CPU clock (time.process_time): the main process
(strategy, variable manager, callbacks, result queue) into OUTDIR/main.prof,
and every forked worker (one per task and host: templating the task's
arguments, the action plugin, building and sending the module, reading its
result) into OUTDIR/worker-<task>-<pid>.prof.  `--report` sums them: CPU
seconds per task name (workers), then the top functions by cumulative CPU
over all workers and of the main process, and the Jinja templates the
workers compiled (ansible-core 2.19 compiles a template string every time
it renders it, in every worker): count, distinct strings, and the most
compiled ones (OUTDIR/worker-*.templates.json).  What cProfile does not see:
fork itself and the page faults that follow it, the ssh clients and their
ControlPersist masters (benchmarks/fleet/run.py's controller cgroup counts
those), and cProfile's own overhead (it inflates Python-heavy code, roughly
by 1.5-2x: compare shares, not absolute seconds).
"""
import cProfile
import glob
import json
import os
import pstats
import re
import sys
import time


def run(outdir, argv):
    os.makedirs(outdir, exist_ok=True)
    for old in glob.glob(os.path.join(outdir, "*.prof")) + glob.glob(os.path.join(outdir, "*.templates.json")):
        os.unlink(old)
    from ansible.executor.process import worker

    original = worker.WorkerProcess._run

    from ansible._internal._templating import _engine

    compile_template = _engine.TemplateEngine._compile_template
    compiled = {}

    def counted(self, template, options):
        key = str(template)
        compiled[key] = compiled.get(key, 0) + 1
        return compile_template(self, template, options)

    _engine.TemplateEngine._compile_template = counted

    def profiled(self):
        compiled.clear()
        prof = cProfile.Profile(time.process_time)
        try:
            return prof.runcall(original, self)
        finally:
            name = re.sub(r"[^A-Za-z0-9]+", "_", self._task.get_name())[:60]
            base = os.path.join(outdir, "worker-%s-%d" % (name, os.getpid()))
            prof.dump_stats(base + ".prof")
            with open(base + ".templates.json", "w") as f:
                json.dump(compiled, f)

    worker.WorkerProcess._run = profiled
    from ansible.cli.playbook import main
    sys.argv = ["ansible-playbook"] + argv
    prof = cProfile.Profile(time.process_time)
    try:
        return prof.runcall(main)
    finally:
        prof.dump_stats(os.path.join(outdir, "main.prof"))


def cpu_only(outdir, argv):
    import resource
    os.makedirs(outdir, exist_ok=True)
    from ansible.cli.playbook import main
    sys.argv = ["ansible-playbook"] + argv
    t0 = time.monotonic()
    try:
        return main()
    finally:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.path.join(outdir, "cpu.json"), "w") as f:
            json.dump({"main_cpu": round(me.ru_utime + me.ru_stime, 3),
                       "children_cpu": round(kids.ru_utime + kids.ru_stime, 3),
                       "wall": round(time.monotonic() - t0, 3)}, f)


def total(stats):
    return sum(v[2] for v in stats.stats.values())     # tottime over all functions


def report(outdir, top):
    files = sorted(glob.glob(os.path.join(outdir, "worker-*.prof")))
    per_task = {}
    for path in files:
        task = re.match(r"worker-(.*)-\d+\.prof$", os.path.basename(path)).group(1)
        s = pstats.Stats(path)
        n, cpu = per_task.get(task, (0, 0.0))
        per_task[task] = (n + 1, cpu + total(s))
    templates = {}
    for path in glob.glob(os.path.join(outdir, "worker-*.templates.json")):
        task = re.match(r"worker-(.*)-\d+\.templates\.json$", os.path.basename(path)).group(1)
        with open(path) as f:
            for text, count in json.load(f).items():
                per = templates.setdefault(task, {})
                per[text] = per.get(text, 0) + count
    main = pstats.Stats(os.path.join(outdir, "main.prof"))
    print("main process: %.2f s CPU (profiled)" % total(main))
    print("workers: %d, %.2f s CPU (profiled)" % (len(files), sum(c for dummy, c in per_task.values())))
    print("\n%-62s %7s %9s %9s" % ("task (worker processes)", "workers", "CPU s", "per run"))
    for task, (n, cpu) in sorted(per_task.items(), key=lambda kv: -kv[1][1]):
        print("%-62s %7d %9.2f %9.3f" % (task[:62], n, cpu, cpu / n))
    print("\n%-62s %9s %9s %9s" % ("task: templates compiled by its workers", "compiles", "distinct", "per run"))
    for task, per in sorted(templates.items(), key=lambda kv: -sum(kv[1].values())):
        print("%-62s %9d %9d %9.1f" % (task[:62], sum(per.values()), len(per), sum(per.values()) / per_task[task][0]))
    for task, per in sorted(templates.items(), key=lambda kv: -sum(kv[1].values()))[:2]:
        print("\nmost compiled in %s (count, length, start):" % task[:60])
        for text, count in sorted(per.items(), key=lambda kv: -kv[1] * len(kv[0]))[:top]:
            print("  %5d %6d  %s" % (count, len(text), " ".join(text.split())[:90]))
    if files:
        allw = pstats.Stats(files[0])
        for path in files[1:]:
            allw.add(path)
        print("\n---- all workers, by cumulative CPU ----")
        allw.sort_stats("cumulative").print_stats(top)
    print("\n---- main process, by cumulative CPU ----")
    main.sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    if sys.argv[2] == "--cpu-only":
        sys.exit(cpu_only(out, sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:]))
    if sys.argv[2] == "--report":
        report(out, int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--top" else 25)
    else:
        args = sys.argv[3:] if sys.argv[2] == "--" else sys.argv[2:]
        sys.exit(run(out, args))
