"""The controller's main process (serial) next to its workers, without cProfile, on one fleet of N hosts.

    FLEET_BENCH_PREFIX=xlbsp- FLEET_BENCH_MGMT_NET=198.19.24 FLEET_BENCH_OUT=build/bench-fleet-main \
      .venv/bin/python benchmarks/fleet/main_process.py 25

Builds the fleet (run.py's fleet_up), runs a one-task ping play, site.yml
(first deploy), site.yml twice more (reruns) and the ping play again, each
through profile_controller.py --cpu-only, and writes
$FLEET_BENCH_OUT/main-N.json: per run the main process's own CPU, its
children's (workers, ssh clients) and the controller cgroup's.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (benchmarks/fleet/run.py)

PING = """- name: ping
  hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
"""


def main():
    n = int(sys.argv[1])
    os.makedirs(run.OUT, exist_ok=True)
    ping_book = os.path.join(run.OUT, "ping.yml")
    with open(ping_book, "w") as f:
        f.write(PING)
    site = os.path.join(run.ROOT, "site.yml")
    prof = [os.path.join(run.VENV, "python"), os.path.join(run.HERE, "profile_controller.py")]
    run.cg_make("controller")
    run.cg_add("controller", os.getpid())
    res = {}
    run.fleet_up(n)
    try:
        inv = run.write_inventory(n)
        env = run.ansible_env("ssh", forks=50)
        env.pop("ANSIBLE_CALLBACKS_ENABLED")
        for phase, book in (("ping", ping_book), ("first", site), ("rerun", site), ("rerun2", site),
                            ("ping2", ping_book)):
            out = os.path.join(run.OUT, "main-%d-%s" % (n, phase))
            # pylint: disable-next=unpacking-non-sequence  # pylint takes `run` for another benchmark's run.py
            m, r = run.timed(prof + [out, "--cpu-only", "--", "-i", inv, book], env)
            with open(os.path.join(out, "cpu.json")) as f:
                d = json.load(f)
            d.update(controller_cgroup=round(m["cpu"], 2), rc=r.returncode)
            res[phase] = d
            print(phase, d, flush=True)
    finally:
        run.fleet_down(n)
        run.cg_remove("controller")
    with open(os.path.join(run.OUT, "main-%d.json" % n), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
