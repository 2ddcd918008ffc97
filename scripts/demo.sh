#!/usr/bin/env bash
# The demo (`make demo`): build the netns lab, deploy site.yml to its
# balancer over SSH, send traffic from the client to the VIPs, show how it
# spread over the backends, deploy again (changed=0), run the boot-time
# restore command, remove the balancer (state absent), tear the lab down.
# The lab goes away on every exit, also on failure or Ctrl-C.
#
# Exit status is non-zero if any step fails, any request fails, a
# backend gets no request of a protocol/family, a bulk transfer fails or a
# TCP checksum error is counted.
#
#   DEMO_REQUESTS  requests per protocol and family (default 30)
#   DEMO_BULK_BYTES  bytes of the bulk download and upload per family
#                  (default 8388608, the lab's /bulk file)
#   DEMO_KEEP=1    leave the lab up at the end (tear down with
#                  ansible-playbook playbooks/lab-destroy.yml)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$here/ansible.cfg"
export ANSIBLE_NOCOLOR=1
N=${DEMO_REQUESTS:-30}
P=xlb-
LAB=$here/build/lab
INV=$LAB/inventory.yml
LOG=$here/build/demo
VIP4=198.18.100.1
VIP6=fd00:18:100::1

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: FAILED: $*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ "${DEMO_KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
    echo "lab left up (DEMO_KEEP=1); remove it with: ansible-playbook playbooks/lab-destroy.yml"
  else
    say "lab down"
    ansible-playbook playbooks/lab-destroy.yml >"$LOG/lab-destroy.log" 2>&1 \
      || bash scripts/lab/lab.sh down || true
  fi
  [ "$rc" = 0 ] && echo "demo: OK" || echo "demo: failed (exit $rc); logs in $LOG" >&2
  exit "$rc"
}

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, XDP)"
mkdir -p "$LOG"
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a playbook, keeps its output in $LOG/<name>.log, prints the recap.
play() {
  local name=$1; shift
  if ! ansible-playbook "$@" >"$LOG/$name.log" 2>&1; then
    tail -n 40 "$LOG/$name.log" >&2
    die "ansible-playbook $* (log: $LOG/$name.log)"
  fi
  sed -n '/^PLAY RECAP/,$p' "$LOG/$name.log" | sed '/^$/d'
}

recap_changed() { sed -n '/^PLAY RECAP/,$p' "$LOG/$1.log" | grep -o 'changed=[0-9]*' | awk -F= '{s+=$2} END {print s+0}'; }

say "lab up (playbooks/lab.yml)"
play lab-up playbooks/lab.yml
bash scripts/lab/lab.sh status

say "deploy: ansible-playbook -i build/lab/inventory.yml site.yml"
play site-1 -i "$INV" site.yml

# Sends N requests of one kind from the client, prints one answer per line
# ("be2") or "FAIL".
requests() { # curl4|curl6|dig4|dig6
  # shellcheck disable=SC2016  # the single-quoted script expands in the inner bash
  ip netns exec "${P}client" bash -c '
    n=$1 kind=$2 vip4=$3 vip6=$4
    for i in $(seq 1 "$n"); do
      case $kind in
        curl4) out=$(curl -s -m 3 "http://$vip4/") ;;
        curl6) out=$(curl -s -m 3 -g "http://[$vip6]/") ;;
        dig4)  out=$(dig +short +time=2 +tries=1 TXT whoami.lab "@$vip4") ;;
        dig6)  out=$(dig +short +time=2 +tries=1 TXT whoami.lab "@$vip6") ;;
      esac
      out=${out//\"/}
      case $out in be[0-9]) echo "$out" ;; *) echo FAIL ;; esac
    done' _ "$N" "$1" "$VIP4" "$VIP6"
}

traffic() {
  local bad=0 kind label out be
  printf '\n%-16s' "service"
  for be in be1 be2 be3; do printf '%6s' "$be"; done
  printf '%8s\n' "failed"
  for kind in curl4 curl6 dig4 dig6; do
    case $kind in
      curl4) label="tcp/80  IPv4" ;; curl6) label="tcp/80  IPv6" ;;
      dig4)  label="udp/53  IPv4" ;; dig6)  label="udp/53  IPv6" ;;
    esac
    out=$(requests "$kind")
    printf '%-16s' "$label"
    for be in be1 be2 be3; do
      c=$(grep -cx "$be" <<<"$out" || true)
      printf '%6s' "$c"
      [ "$c" -gt 0 ] || bad=1
    done
    c=$(grep -cx FAIL <<<"$out" || true)
    printf '%8s\n' "$c"
    [ "$c" = 0 ] || bad=1
  done
  return $bad
}

say "traffic: $N requests per row from ${P}client to $VIP4 and $VIP6"
traffic || die "a request failed or a backend got nothing"

# Bulk TCP both ways through each VIP (molecule/shared/traffic.py --bulk):
# every transfer complete and intact, no TCP checksum error anywhere.
bulk() {
  local out
  out=$(ip netns exec "${P}client" python3 molecule/shared/traffic.py --bulk "$BULK" \
    --lab-prefix "$P" --vip4 "$VIP4" --vip6 "$VIP6") || return 1
  python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
bad = 0
for name, t in sorted(r["bulk"].items()):
    ok = t["rc"] == 0 and t["intact"] and t["bytes"] == r["bulk_bytes"]
    bad += not ok
    print("%-10s %9d bytes %7.3f s  %s%s" % (name, t["bytes"], t["seconds"], "ok" if ok else "FAILED",
                                           "" if ok else " " + json.dumps(t)))
print("TCP checksum errors: " + ", ".join("%s %d" % kv for kv in sorted(r["csum_errors"].items())))
bad += sum(r["csum_errors"].values()) != 0
sys.exit(1 if bad else 0)
PY
}

BULK=${DEMO_BULK_BYTES:-8388608}
say "bulk: $BULK bytes down and up through each VIP (TCP 80)"
bulk || die "a bulk transfer failed or a TCP checksum error was counted"

say "deploy again: nothing to change"
play site-2 -i "$INV" site.yml
changed=$(recap_changed site-2)
[ "$changed" = 0 ] || die "second run reported changed=$changed (log: $LOG/site-2.log)"
echo "second run: changed=0"

say "boot-time restore: simulate a reboot, then run what netfleet-xdp-lb-restore.service runs"
lb_ssh() {
  ssh -i "$LAB/id_ed25519" -o BatchMode=yes -o KexAlgorithms=curve25519-sha256 \
    -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR \
    root@198.19.0.1 "$@"
}
# The lab keeps the files a real host has under /etc in build/lab/host/.
unit=$LAB/host/etc/systemd/system/netfleet-xdp-lb-restore.service
cmd=$(sed -n 's/^ExecStart=//p' "$unit")
env_path=$(sed -n 's/^Environment=PYTHONPATH=//p' "$unit")
# What a reboot loses: the attachments and the pinned maps (bpffs is empty).
lb_ssh 'ip link set dev front0 xdp off && ip link set dev back0 xdp off && rm -rf /sys/fs/bpf/xdp_lb'
echo "detached the program and removed its pins:"
ip -n "${P}lb" -br link show front0
if ip netns exec "${P}client" curl -s -m 2 "http://$VIP4/" >/dev/null; then
  die "the VIP still answers with the program detached"
fi
echo "VIP down. Restore: PYTHONPATH=$env_path $cmd"
lb_ssh "PYTHONPATH=$env_path $cmd" >"$LOG/restore.json" || { cat "$LOG/restore.json"; die "restore command failed"; }
python3 - "$LOG/restore.json" <<'PY'
import json, sys
for name, r in json.load(open(sys.argv[1])).items():
    ifs = ", ".join("%s %s prog %s" % (k, v.get("mode"), v.get("prog_id"))
                    for k, v in sorted((r.get("interfaces") or {}).items()))
    print("instance %s: changed=%s failed=%s; %s" % (name, r.get("changed"), r.get("failed", False), ifs))
PY
traffic || die "traffic after restore"

say "remove: site.yml -e xdp_lb_state=absent"
play site-absent -i "$INV" site.yml -e xdp_lb_state=absent
if ip netns exec "${P}client" curl -s -m 2 "http://$VIP4/" >/dev/null; then
  die "the VIP still answers after state absent"
fi
echo "VIP no longer served; program detached:"
ip -n "${P}lb" -br link show front0
