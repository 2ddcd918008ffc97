#!/usr/bin/env bash
# A fleet of balancer hosts in network namespaces, for the molecule scenario
# molecule/fleet (run as root).
#
#   fleet.sh up      build it (tears down leftovers of the same prefix first)
#   fleet.sh down    remove everything it made; safe when nothing exists
#   fleet.sh status  list the fleet's namespaces and processes
#
# Topology (defaults; P = FLEET_PREFIX, M = FLEET_MGMT_NET, NN = 01..FLEET_SIZE):
#
#   root ns: bridge ${P}mgmt M.254/24 (SSH to the balancers)
#      |-- veth ${P}m-lbNN -> ${P}lbNN mgmt0 M.NN   (sshd of its own)
#
#   ${P}lbNN   front0 198.18.0.1/24 fd00:18::1/64
#                lb01: veth to ${P}client eth0 198.18.0.2/24 fd00:18::2/64, which
#                routes the VIPs 198.18.100.0/24, fd00:18:100::/64 via lb01;
#                the others: veth to front0p in the same namespace, or with
#                FLEET_CLIENTS=all to eth0 of a client ${P}clNN of their own
#                (addressed and routed as ${P}client: a gate can send real
#                traffic through every balancer, playbooks/rolling.yml)
#              back0  198.18.1.(100+NN)/24 fd00:18:1::(100+NN)/64
#      |
#   ${P}sw     bridge br0: every balancer's back0 and every backend
#      |
#   ${P}beN    eth0 198.18.1.(10+N)/24 fd00:18:1::(10+N)/64 (N = 1..FLEET_BACKENDS)
#              nginx on TCP 80 and dnsmasq on UDP 53, both answering "beN"
#              (as in scripts/lab/lab.sh); the balancers' NAT addresses are
#              on-link, so the backends need no routes.
#
# Every balancer host is `ip netns exec ${P}lbNN sshd`: its own network stack
# and its own mount namespace, hence its own bpffs and pins.  Offloads as in
# lab.sh: GRO on where the balancers' XDP sends frames, tx checksum offload
# off where local sockets send into XDP, no GRO on the way to a balancer
# (/work/shared/LAB-NOTES.md, lib.sh's backend_port).
#
# The balancers come provisioned like hosts from a prepared image: the nat
# mode's sysctls (what the role sets with xdp_lb_manage_sysctl, see
# roles/xdp_lb/vars/main.yml) are set here, per network namespace.
#
# Environment:
#   FLEET_PREFIX    name prefix of namespaces and root-side links (xlbf-)
#   FLEET_DIR       keys, configs, pid and log files (build/molecule/fleet/lab)
#   FLEET_MGMT_NET  first three octets of the management /24 (198.19.20)
#   FLEET_SIZE      number of balancers, 1..99 (12); the management /24
#                   holds them (.1-.99) and the bridge (.254)
#   FLEET_BACKENDS  number of backends, 1..9 (3)
#   FLEET_CLIENTS   one: a client for lb01 only; all: one per balancer (one)
#
# `down` removes whatever exists with the prefix (namespaces ${P}client,
# ${P}sw, ${P}lbNN, ${P}clNN, ${P}beN and root-side links ${P}mgmt,
# ${P}m-lbNN), whatever size or client setting built it.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
P=${FLEET_PREFIX:-xlbf-}
DIR=${FLEET_DIR:-$here/build/molecule/fleet/lab}
MGMT=${FLEET_MGMT_NET:-198.19.20}
SIZE=${FLEET_SIZE:-12}
NBE=${FLEET_BACKENDS:-3}
CLIENTS=${FLEET_CLIENTS:-one}

# shellcheck source=scripts/lab/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034 # read by lib.sh
KIND=fleet
check_prefix FLEET_PREFIX 8
[[ "$SIZE" =~ ^[1-9][0-9]?$ ]] || { echo "FLEET_SIZE must be 1..99: $SIZE" >&2; exit 2; }
check_backends FLEET_BACKENDS "$NBE"
check_mgmt FLEET_MGMT_NET
case "$CLIENTS" in one | all) ;; *) echo "FLEET_CLIENTS must be one or all: $CLIENTS" >&2; exit 2 ;; esac

balancers() { local i; for i in $(seq 1 "$SIZE"); do printf 'lb%02d\n' "$i"; done; }

# What exists of a fleet with this prefix, whatever its size.
NAMESPACES='client|sw|lb[0-9]+|cl[0-9]+|be[0-9]+'

down() { teardown "$NAMESPACES" 'mgmt|m-lb[0-9]+' .xdp-lb-fleet; }

up() {
  down
  init_dir .xdp-lb-fleet "FLEET_DIR exists and is not a fleet directory"
  local lb be n

  mkns "${P}client"
  mkns "${P}sw"
  ip -n "${P}sw" link add br0 type bridge
  ip -n "${P}sw" link set br0 up
  mgmt_bridge

  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    mkns "${P}$be"
    backend_port "$be" "$n"
    backend_servers "$be" "$n" off 0 0
  done

  n=0
  for lb in $(balancers); do
    n=$(( n + 1 ))
    mkns "${P}$lb"
    if [ "$n" = 1 ]; then
      veth front0 "${P}$lb" eth0 "${P}client"
      client_eth0 "${P}client"
    elif [ "$CLIENTS" = all ]; then
      mkns "${P}cl${lb#lb}"
      veth front0 "${P}$lb" eth0 "${P}cl${lb#lb}"
      client_eth0 "${P}cl${lb#lb}"
    else
      veth front0 "${P}$lb" front0p "${P}$lb"
      ip -n "${P}$lb" link set front0p up
      in_ns "${P}$lb" ethtool -K front0p gro on >/dev/null
    fi
    addr "${P}$lb" front0 198.18.0.1/24 fd00:18::1/64
    veth back0 "${P}$lb" "$lb" "${P}sw"
    ip -n "${P}sw" link set "$lb" master br0 up
    addr "${P}$lb" back0 "198.18.1.$(( 100 + n ))/24" "fd00:18:1::$(( 100 + n ))/64"
    in_ns "${P}sw" ethtool -K "$lb" gro on >/dev/null
    in_ns "${P}$lb" ethtool -K front0 gro on >/dev/null
    in_ns "${P}$lb" ethtool -K back0 gro on >/dev/null
    in_ns "${P}$lb" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
      net.ipv4.conf.front0.accept_local=1 net.ipv4.conf.back0.accept_local=1 \
      net.ipv4.conf.front0.rp_filter=2 net.ipv4.conf.back0.rp_filter=2
    mkdir -p "$DIR/$lb/etc/systemd"
    mgmt_host "${P}$lb" "$n"
    sshd_host "${P}$lb" "$n"
  done
  wait_ready
}

# Wait (up to 30 s: 50 sshds start on a loaded machine) until every sshd
# accepts connections and every backend answers locally (no traffic
# crosses a balancer here).
wait_ready() {
  local i n ok
  for i in $(seq 1 300); do
    ok=1
    for n in $(seq 1 "$SIZE"); do
      bash -c "exec 3<>/dev/tcp/$MGMT.$n/22" 2>/dev/null || { ok=0; break; }
    done
    # shellcheck disable=SC2046 # one backend name a word
    backends_answer $(backends) || ok=0
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "fleet servers did not come up; logs under $DIR" >&2
  return 1
}

# shellcheck disable=SC2046 # one namespace a word
status() { show_status $(matching_namespaces "$NAMESPACES"); }

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
