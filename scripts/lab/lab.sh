#!/usr/bin/env bash
# Network-namespace lab for netfleet.xdp_lb, on this host (run as root).
#
#   lab.sh up      build it (tears down leftovers of the same prefix first)
#   lab.sh down    remove everything it made; safe when nothing exists
#   lab.sh status  list the lab's namespaces, links and processes
#
# Topology (defaults; P = LAB_PREFIX, M = LAB_MGMT_NET):
#
#   root ns: bridge ${P}mgmt M.254/24  (SSH to the lab hosts)
#      |-- veth ${P}m-lb   -> ${P}lb  mgmt0  M.1        (sshd)
#      |-- veth ${P}m-beN  -> ${P}beN mgmt0  M.(10+N)   (sshd, LAB_SSH_BACKENDS=1 only)
#
#   ${P}client  eth0 198.18.0.2/24 fd00:18::2/64
#      |          routes 198.18.100.0/24 and fd00:18:100::/64 (the VIPs) via the lb
#   ${P}lb      front0 198.18.0.1/24 fd00:18::1/64
#               back0  198.18.1.1/24 fd00:18:1::1/64
#      |
#   ${P}sw      bridge br0, ports lb, be1..beN
#      |
#   ${P}beN     eth0 198.18.1.(10+N)/24 fd00:18:1::(10+N)/64, default route via the lb
#               nginx on TCP 80 and dnsmasq on UDP 53, both answering "beN"
#
# XDP on veth (docs: /work/shared/LAB-NOTES.md): frames redirected into a
# veth are dropped unless its peer runs XDP or has GRO on, so GRO is on for
# every peer that receives frames from the lb; tx checksum offload is off on
# the client's and the backends' veths (native XDP loses the partial
# checksum state of locally sent packets).  Nothing aggregates frames on
# their way to the lb (GRO off on the switch's backend ports): native XDP
# gets frames of the MTU with full checksums, as a NIC delivers them.
#
# Environment (molecule and parallel runs pick their own):
#   LAB_PREFIX        name prefix of namespaces and root-side links (xlb-)
#   LAB_DIR           keys, configs, pid and log files (build/lab)
#   LAB_MGMT_NET      first three octets of the management /24 (198.19.0)
#   LAB_BACKENDS      number of backends, 1..9 (3)
#   LAB_SSH_BACKENDS  1: backends get a management address and sshd too (0)
#   LAB_DSR           1: backend servers also answer on addresses added
#                     later (the VIPs on lo, for dsr mode) (0)
#   LAB_BULK_BYTES    size of each backend's /bulk file (8388608)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
P=${LAB_PREFIX:-xlb-}
DIR=${LAB_DIR:-$here/build/lab}
MGMT=${LAB_MGMT_NET:-198.19.0}
NBE=${LAB_BACKENDS:-3}
SSH_BE=${LAB_SSH_BACKENDS:-0}
DSR=${LAB_DSR:-0}

# shellcheck source=scripts/lab/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034 # read by lib.sh
KIND=lab
check_prefix LAB_PREFIX 9
check_backends LAB_BACKENDS "$NBE"
check_mgmt LAB_MGMT_NET

namespaces() { echo "${P}client" "${P}lb" "${P}sw"; local b; for b in $(backends); do echo "${P}$b"; done; }
ns_exists() { [ -e "/run/netns/$1" ]; }

down() { teardown 'client|lb|sw|be[0-9]' 'mgmt|m-lb|m-be[0-9]' .xdp-lb-lab; }

up() {
  down
  init_dir .xdp-lb-lab "LAB_DIR exists and is not a lab directory"
  sysctl -qw net.ipv6.conf.default.accept_dad=0 >/dev/null 2>&1 || true
  local ns be n
  for ns in $(namespaces); do mkns "$ns"; done

  # management bridge in the root namespace; SSH access: one key for root
  # on every lab host.
  mgmt_bridge

  # client <-> lb.  Offloads for XDP on veth (see the header) are set as
  # the links are made.
  veth eth0 "${P}client" front0 "${P}lb"
  client_eth0 "${P}client"
  addr "${P}lb" front0 198.18.0.1/24 fd00:18::1/64

  # lb <-> switch <-> backends
  ip -n "${P}sw" link add br0 type bridge
  ip -n "${P}sw" link set br0 up
  veth back0 "${P}lb" lb "${P}sw"
  addr "${P}lb" back0 198.18.1.1/24 fd00:18:1::1/64
  ip -n "${P}sw" link set lb master br0 up
  in_ns "${P}sw" ethtool -K lb gro on >/dev/null
  in_ns "${P}lb" ethtool -K front0 gro on >/dev/null
  in_ns "${P}lb" ethtool -K back0 gro on >/dev/null
  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    backend_port "$be" "$n"
    ip -n "${P}$be" route add default via 198.18.1.1
    ip -n "${P}$be" -6 route add default via fd00:18:1::1
  done

  mgmt_host "${P}lb" 1
  sshd_host "${P}lb" 1
  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    if [ "$SSH_BE" = 1 ]; then
      mgmt_host "${P}$be" $(( 10 + n ))
      sshd_host "${P}$be" $(( 10 + n ))
    fi
    # nginx on any address; dnsmasq too in dsr mode.
    backend_servers "$be" "$n" on 1 "$DSR"
  done
  wait_ready
}

# Wait until every server answers locally (no traffic crosses the lb here).
wait_ready() {
  local i ok
  for i in $(seq 1 50); do
    ok=1
    # shellcheck disable=SC2046 # one backend name a word
    backends_answer $(backends) || ok=0
    bash -c "exec 3<>/dev/tcp/$MGMT.1/22" 2>/dev/null || ok=0
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "lab servers did not come up; logs under $DIR" >&2
  return 1
}

status() {
  local ns existing=()
  for ns in $(namespaces); do
    if ns_exists "$ns"; then existing+=("$ns"); fi
  done
  show_status "${existing[@]}"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
