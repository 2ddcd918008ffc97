#!/usr/bin/env bash
# `make test-molecule`: the roles as users run them, over SSH, with molecule.
#
#   molecule/default  one balancer (lab.sh, prefix xlbm-): converge,
#                     idempotence, real curl/dig traffic, xdp_lb_info counters
#   molecule/fleet    12 balancers (fleet.sh, prefix xlbf-) in one play:
#                     idempotence on all, same lookup tables on all, traffic
#
# Each scenario runs `molecule test` (destroy, syntax, create, converge,
# idempotence, verify, destroy).  Whatever happens (failure, crash, Ctrl-C)
# the labs are torn down on exit, this run's SSH control masters are closed,
# and the script checks that nothing is left: no xlbm-/xlbf- namespaces or
# links, no process started from build/molecule, and none of the BPF
# programs and maps the scenarios saw still alive (their pins lived in the
# lab hosts' own mount namespaces).  Full logs: build/molecule/<scenario>.log.
#
#   MOLECULE_SCENARIOS  scenarios to run, in order (default: "default fleet")
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
OUT=$here/build/molecule
SCENARIOS=${MOLECULE_SCENARIOS:-default fleet}

[ "$(id -u)" = 0 ] || { echo "run-molecule: run as root (network namespaces, XDP)" >&2; exit 1; }
[ -e .collections/ansible_collections/netfleet/xdp_lb ] || {
  echo "run-molecule: collection not linked; run make deps" >&2; exit 1; }

lab_down() {
  LAB_PREFIX=xlbm- LAB_DIR=$OUT/default/lab bash scripts/lab/lab.sh down || true
  FLEET_PREFIX=xlbf- FLEET_DIR=$OUT/fleet/lab bash scripts/lab/fleet.sh down || true
}

close_ssh_masters() {
  local sock
  for sock in "$CP_DIR"/*; do
    [ -S "$sock" ] || continue
    ssh -o ControlPath="$sock" -O exit lab-host >/dev/null 2>&1 || true
  done
  rm -rf "$CP_DIR"
}

# The BPF objects a scenario recorded (verify.yml) must be gone once its lab
# is: a pin left anywhere, or a program still attached, would keep them.
bpf_objects_alive() {
  local f kind id host alive=""
  for f in "$OUT"/*.bpf-ids; do
    [ -e "$f" ] || continue
    while read -r kind id host; do
      [ -n "${id:-}" ] || continue
      if bpftool "$kind" show id "$id" >/dev/null 2>&1; then alive+=" $kind:$id($host)"; fi
    done <"$f"
  done
  echo "$alive"
}

# /sys/fs/bpf of the mount namespace this script runs in: what is mounted
# there (nothing, on a fresh machine) and, if a bpffs is, the entries of the
# scenarios' names at its top.  The lab hosts mount bpffs in mount
# namespaces of their own, so neither may change during the run.
bpffs_here() {
  findmnt -rn -o ID,FSTYPE --mountpoint /sys/fs/bpf | sed 's/^/mount /' || true
  if findmnt -rn -t bpf --mountpoint /sys/fs/bpf >/dev/null; then
    find /sys/fs/bpf -mindepth 1 -maxdepth 1 -printf 'entry %f\n' | grep -E '^entry (xlbm|xlbf|xdp_lb)' | sort || true
  fi
}

leftovers() {
  local bad=0 x
  x=$(ip netns list | awk '{print $1}' | grep -E '^(xlbm-|xlbf-)' || true)
  [ -z "$x" ] || { echo "leftover namespaces: $x"; bad=1; }
  x=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(xlbm-|xlbf-)' || true)
  [ -z "$x" ] || { echo "leftover links: $x"; bad=1; }
  x=$(pgrep -af "$OUT/|$CP_DIR" || true)
  [ -z "$x" ] || { echo "leftover processes:"; echo "$x"; bad=1; }
  # Programs and maps are freed asynchronously after their last reference.
  for _ in $(seq 1 50); do
    x=$(bpf_objects_alive)
    [ -n "$x" ] || break
    sleep 0.2
  done
  [ -z "$x" ] || { echo "BPF objects still alive:$x"; bad=1; }
  x=$(bpffs_here | diff "$OUT/bpffs-before" - || true)
  [ -z "$x" ] || { echo "/sys/fs/bpf of this mount namespace changed (the lab hosts have their own):"; echo "$x"; bad=1; }
  return $bad
}

declare -a report=()
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  lab_down >/dev/null 2>&1
  close_ssh_masters
  rmdir "$OUT/default" "$OUT/fleet" 2>/dev/null
  if ! leftovers; then
    echo "run-molecule: cleanup left something behind (see above)" >&2
    [ "$rc" = 0 ] && rc=1
  fi
  echo
  echo "== molecule durations (s)"
  printf '%s\n' "${report[@]}"
  [ "$rc" = 0 ] && echo "run-molecule: OK" || echo "run-molecule: FAILED (exit $rc); logs in $OUT" >&2
  exit "$rc"
}

mkdir -p "$OUT"
# SSH control masters of this run live in a directory of their own (short:
# socket paths are limited to 107 bytes), so they can be closed at the end.
CP_DIR=$(mktemp -d /tmp/xlbm-cp.XXXXXX)
export ANSIBLE_SSH_CONTROL_PATH_DIR=$CP_DIR
rm -f "$OUT"/*.bpf-ids
# Compile once per run (the scenarios share this cache, as hosts could).
rm -rf "$OUT/build-cache"
bpffs_here >"$OUT/bpffs-before"
trap cleanup EXIT
trap 'exit 130' INT TERM

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Runs `molecule test -s NAME`, logs everything to $OUT/NAME.log, shows the
# actions, recaps and failures, times every action and names the slowest
# tasks of the long ones (wall time of a task over all hosts).
run_scenario() {
  local name=$1 log=$OUT/$1.log start rc
  start=$EPOCHREALTIME
  echo "== molecule test -s $name (log: $log)"
  rm -f "$OUT/$name.times" "$OUT/$name.tasks"
  set +e
  molecule test -s "$name" 2>&1 | tee "$log" | {
    local t0=$EPOCHREALTIME line action task="" tt=0
    end_task() {
      [ -n "$task" ] && echo "$(since "$tt") $task" >>"$OUT/$name.tasks"
      task=""
    }
    while IFS= read -r line; do
      case $line in
        "TASK ["*) end_task; task=${line#TASK \[}; task=${task%%\]*}; tt=$EPOCHREALTIME ;;
        "PLAY "*) end_task ;;
      esac
      case $line in
        *"[$name > "*"] Executing"*)
          t0=$EPOCHREALTIME
          action=${line#*"[$name > "}; action=${action%%]*}
          rm -f "$OUT/$name.tasks"
          echo "-- $action" ;;
        *"[$name > "*"] Executed"*)
          end_task
          action=${line#*"[$name > "}; action=${action%%]*}
          echo "   $action: ${line##*Executed: } ($(since "$t0") s)"
          echo "$name $action $(since "$t0")" >>"$OUT/$name.times"
          if [ -s "$OUT/$name.tasks" ] && [ "$(since "$t0" | cut -d. -f1)" -ge 20 ]; then
            echo "   slowest tasks (s):"
            sort -rn "$OUT/$name.tasks" | head -n 5 | sed 's/^/     /'
          fi ;;
        "PLAY RECAP"*) echo "   $line" ;;
        *" : ok="*) echo "   $line" ;;
        "fatal:"* | "failed:"* | *"[ERROR]"* | "CRITICAL"* | "ERROR"*) echo "   $line" ;;
        *"ring "*" of "*" hosts"* | *" answers, counter +"*) echo "   $line" ;;
      esac
    done
  }
  rc=${PIPESTATUS[0]}
  set -e
  report+=("$(printf '%-8s total %6s: %s' "$name" "$(since "$start")" \
    "$(awk '{printf "%s %s  ", $2, $3}' "$OUT/$name.times" 2>/dev/null)")")
  rm -f "$OUT/$name.times" "$OUT/$name.tasks"
  if [ "$rc" != 0 ]; then
    echo "molecule test -s $name failed (exit $rc); last lines of $log:" >&2
    tail -n 60 "$log" >&2
    return "$rc"
  fi
}

for s in $SCENARIOS; do
  run_scenario "$s"
done
