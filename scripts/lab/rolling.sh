#!/usr/bin/env bash
# A small fleet for rolling deploys (playbooks/rolling.yml): scripts/lab/fleet.sh
# with ROLLING_SIZE balancers, where every balancer gets a client of its
# own, so that a gate can send real traffic through each one (run as root).
#
#   rolling.sh up      build it (tears down leftovers of the same prefix first)
#   rolling.sh down    remove everything it made; safe when nothing exists
#
# fleet.sh gives lbNN a front0 veth whose peer is `${P}client` for lb01 and
# `front0p` inside lbNN itself for the others.  This script moves each
# front0p into a client namespace `${P}clNN` (NN >= 02) and gives it the
# client address, so every balancer's front side looks like lb01's:
#
#   ${P}client / ${P}clNN  eth0 198.18.0.2/24 fd00:18::2/64, VIPs
#                          198.18.100.0/24, fd00:18:100::/64 via 198.18.0.1
#      |
#   ${P}lbNN  front0 198.18.0.1/24, back0 198.18.1.(100+NN)/24  (sshd on M.NN)
#      |
#   ${P}sw -- ${P}be1..N  (nginx and dnsmasq, answering "beN")
#
# It also writes $ROLLING_DIR/inventory.yml (group xdp_lb_balancers, each
# host with xdp_lb_gate_netns naming its client) for playbooks/rolling.yml.
#
# Environment:
#   ROLLING_PREFIX    prefix of namespaces and root-side links (xlbr-)
#   ROLLING_DIR       lab directory (build/ops/rolling/lab)
#   ROLLING_MGMT_NET  first three octets of the management /24 (198.19.40)
#   ROLLING_SIZE      balancers (3)
#   ROLLING_BACKENDS  backends (3)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
P=${ROLLING_PREFIX:-xlbr-}
DIR=${ROLLING_DIR:-$here/build/ops/rolling/lab}
MGMT=${ROLLING_MGMT_NET:-198.19.40}
SIZE=${ROLLING_SIZE:-3}
NBE=${ROLLING_BACKENDS:-3}

# shellcheck source=scripts/lab/lib.sh
. "$(dirname "$0")/lib.sh"

fleet() {
  FLEET_PREFIX=$P FLEET_DIR=$DIR FLEET_MGMT_NET=$MGMT FLEET_SIZE=$SIZE FLEET_BACKENDS=$NBE \
    bash "$here/scripts/lab/fleet.sh" "$@"
}

down() {
  del_namespaces 'cl[0-9]+'
  fleet down
}

up() {
  down
  fleet up
  local n lb cl
  for n in $(seq 2 "$SIZE"); do
    lb=$(printf '%slb%02d' "$P" "$n")
    cl=$(printf '%scl%02d' "$P" "$n")
    mkns "$cl"
    ip -n "$lb" link set front0p netns "$cl"
    ip -n "$cl" link set front0p name eth0
    # As for the fleet's client (offloads included).
    client_eth0 "$cl"
  done
  # Provisioned hosts: bpffs is mounted in each balancer's mount namespace
  # (sshd's, which its sessions share), as systemd does at boot.
  for n in $(seq 1 "$SIZE"); do
    lb=$(printf 'lb%02d' "$n")
    nsenter -t "$(cat "$DIR/$lb/sshd.pid")" -m mount -t bpf -o rw,nosuid,nodev,noexec,mode=700 bpf /sys/fs/bpf
  done
  inventory >"$DIR/inventory.yml"
}

inventory() {
  local n
  cat <<EOF
# Inventory of the rolling-deploy lab (written by scripts/lab/rolling.sh up).
all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: $DIR/id_ed25519
    ansible_python_interpreter: /usr/bin/python3
    # Lab hosts only (new host keys every run): no host key checking.
    ansible_host_key_checking: false
    ansible_ssh_common_args: >-
      -o KexAlgorithms=curve25519-sha256 -o UserKnownHostsFile=/dev/null
      -o StrictHostKeyChecking=no -o IdentitiesOnly=yes -o LogLevel=ERROR
    ansible_become: false
    rolling_dir: $DIR
  children:
    xdp_lb_balancers:
      hosts:
EOF
  for n in $(seq 1 "$SIZE"); do
    printf '        %slb%02d:\n          ansible_host: %s.%d\n' "$P" "$n" "$MGMT" "$n"
    if [ "$n" = 1 ]; then
      printf '          xdp_lb_gate_netns: %sclient\n' "$P"
    else
      printf '          xdp_lb_gate_netns: %scl%02d\n' "$P" "$n"
    fi
  done
  cat <<EOF
      vars:
        lab_host: "{{ inventory_hostname | regex_replace('^$P', '') }}"
        xdp_lb_mode: nat
        xdp_lb_interfaces: [front0, back0]
        xdp_lb_attach_mode: native
        # Provisioned hosts sharing one file system: host paths of their own.
        xdp_lb_install_packages: false
        xdp_lb_manage_bpffs: false
        xdp_lb_restore_unit: false
        xdp_lb_state_dir: "$DIR/{{ lab_host }}/state"
        xdp_lb_sysctl_file: "$DIR/{{ lab_host }}/etc/60-netfleet-xdp-lb.conf"
        xdp_lb_systemd_dir: "$DIR/{{ lab_host }}/etc/systemd"
        xdp_lb_engine_dir: "$DIR/{{ lab_host }}/engine"
        xdp_lb_bin_dir: "$DIR/{{ lab_host }}/bin"
        xdp_lb_build_dir: "$DIR/build-cache"
        # The gate runs on this machine, in the balancer's client namespace.
        xdp_lb_gate_host: localhost
EOF
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
