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
#                the others: veth to front0p in the same namespace
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
# off where local sockets send into XDP (/work/shared/LAB-NOTES.md).
#
# The balancers come provisioned like hosts from a prepared image: the nat
# mode's sysctls (what the role sets with xdp_lb_manage_sysctl, see
# roles/xdp_lb/vars/main.yml) are set here, per network namespace.
#
# Environment:
#   FLEET_PREFIX    name prefix of namespaces and root-side links (xlbf-)
#   FLEET_DIR       keys, configs, pid and log files (build/molecule/fleet/lab)
#   FLEET_MGMT_NET  first three octets of the management /24 (198.19.20)
#   FLEET_SIZE      number of balancers, 1..99 (12)
#   FLEET_BACKENDS  number of backends, 1..9 (3)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
P=${FLEET_PREFIX:-xlbf-}
DIR=${FLEET_DIR:-$here/build/molecule/fleet/lab}
MGMT=${FLEET_MGMT_NET:-198.19.20}
SIZE=${FLEET_SIZE:-12}
NBE=${FLEET_BACKENDS:-3}

case "$P" in
  *[!a-z0-9-]* | "") echo "FLEET_PREFIX must be lower-case letters, digits and '-': $P" >&2; exit 2 ;;
esac
[ ${#P} -le 8 ] || { echo "FLEET_PREFIX too long for link names (max 8): $P" >&2; exit 2; }
[[ "$SIZE" =~ ^[1-9][0-9]?$ ]] || { echo "FLEET_SIZE must be 1..99: $SIZE" >&2; exit 2; }
case "$NBE" in [1-9]) ;; *) echo "FLEET_BACKENDS must be 1..9: $NBE" >&2; exit 2 ;; esac
[[ "$MGMT" =~ ^198\.1[89]\.[0-9]{1,3}$ ]] || { echo "FLEET_MGMT_NET must be inside 198.18.0.0/15: $MGMT" >&2; exit 2; }

balancers() { local i; for i in $(seq 1 "$SIZE"); do printf 'lb%02d\n' "$i"; done; }
backends() { local i; for i in $(seq 1 "$NBE"); do echo "be$i"; done; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# What exists of a fleet with this prefix, whatever its size.
fleet_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}(client|sw|lb[0-9]+|be[0-9]+)\$" || true
}
fleet_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
    | grep -E "^${P}(mgmt|m-lb[0-9]+)\$" || true
}

# ---- down -------------------------------------------------------------------
down() {
  local ns pids link
  # Every process in the fleet's namespaces was started by this script
  # (sshd and its sessions, nginx, dnsmasq) or through it: end them by pid.
  for ns in $(fleet_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
  done
  for ns in $(fleet_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      sleep 0.3
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(fleet_links); do
    ip link del "$link" 2>/dev/null || true
  done
  # Only a directory this script made (it holds the marker) is removed.
  if [ -e "$DIR/.xdp-lb-fleet" ]; then rm -rf "$DIR"; fi
}

# ---- up ---------------------------------------------------------------------
mkns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  in_ns "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

addr() { # ns dev v4/len v6/len
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" -6 addr add "$4" dev "$2" nodad
  ip -n "$1" link set "$2" up
}

sshd_host() { # name host-octet
  local lb=$1 octet=$2 d=$DIR/$1
  mkdir -p "$d/etc/systemd" /run/sshd
  ip link add "${P}m-$lb" type veth peer name mgmt0 netns "${P}$lb"
  ip link set "${P}m-$lb" master "${P}mgmt" up
  ip -n "${P}$lb" addr add "$MGMT.$octet/24" dev mgmt0
  ip -n "${P}$lb" link set mgmt0 up
  ssh-keygen -q -t ed25519 -N '' -C "${P}$lb-host" -f "$d/ssh_host_ed25519_key"
  cat >"$d/sshd_config" <<EOF
# sshd for the fleet host ${P}$lb (generated by scripts/lab/fleet.sh)
ListenAddress $MGMT.$octet:22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
KexAlgorithms curve25519-sha256
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
EOF
  in_ns "${P}$lb" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
}

backend_servers() { # name number
  local be=$1 d=$DIR/$1 v4=198.18.1.$(( 10 + $2 )) v6=fd00:18:1::$(( 10 + $2 ))
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
# nginx for fleet backend $be (generated by scripts/lab/fleet.sh)
worker_processes 1;
pid $d/nginx.pid;
error_log $d/nginx-error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen $v4:80;
        listen [$v6]:80;
        default_type text/plain;
        return 200 "$be\n";
    }
}
EOF
  in_ns "${P}$be" nginx -e "$d/nginx-error.log" -p "$d" -c "$d/nginx.conf"
  in_ns "${P}$be" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address="$v4" --listen-address="$v6" --port=53 \
    --pid-file="$d/dnsmasq.pid" --log-facility="$d/dnsmasq.log" \
    --user=dnsmasq --group=nogroup \
    --txt-record="whoami.lab,$be" --host-record="whoami.lab,$v4,$v6"
}

up() {
  down
  if [ -e "$DIR" ] && [ ! -e "$DIR/.xdp-lb-fleet" ] && [ -n "$(ls -A "$DIR")" ]; then
    echo "FLEET_DIR exists and is not a fleet directory: $DIR" >&2; exit 2
  fi
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  echo "$P" >"$DIR/.xdp-lb-fleet"
  local lb be n

  mkns "${P}client"
  mkns "${P}sw"
  ip -n "${P}sw" link add br0 type bridge
  ip -n "${P}sw" link set br0 up
  ip link add "${P}mgmt" type bridge
  ip addr add "$MGMT.254/24" dev "${P}mgmt"
  ip link set "${P}mgmt" up
  ssh-keygen -q -t ed25519 -N '' -C "${P}fleet" -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"

  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    mkns "${P}$be"
    ip link add eth0 netns "${P}$be" type veth peer name "$be" netns "${P}sw"
    ip -n "${P}sw" link set "$be" master br0 up
    addr "${P}$be" eth0 "198.18.1.$(( 10 + n ))/24" "fd00:18:1::$(( 10 + n ))/64"
    in_ns "${P}$be" ethtool -K eth0 tx off gro on >/dev/null
    in_ns "${P}sw" ethtool -K "$be" gro on >/dev/null
    backend_servers "$be" "$n"
  done

  n=0
  for lb in $(balancers); do
    n=$(( n + 1 ))
    mkns "${P}$lb"
    if [ "$n" = 1 ]; then
      ip link add front0 netns "${P}$lb" type veth peer name eth0 netns "${P}client"
      addr "${P}client" eth0 198.18.0.2/24 fd00:18::2/64
      ip -n "${P}client" route add 198.18.100.0/24 via 198.18.0.1
      ip -n "${P}client" -6 route add fd00:18:100::/64 via fd00:18::1
      in_ns "${P}client" ethtool -K eth0 tx off gro on >/dev/null
    else
      ip link add front0 netns "${P}$lb" type veth peer name front0p netns "${P}$lb"
      ip -n "${P}$lb" link set front0p up
      in_ns "${P}$lb" ethtool -K front0p gro on >/dev/null
    fi
    addr "${P}$lb" front0 198.18.0.1/24 fd00:18::1/64
    ip link add back0 netns "${P}$lb" type veth peer name "$lb" netns "${P}sw"
    ip -n "${P}sw" link set "$lb" master br0 up
    addr "${P}$lb" back0 "198.18.1.$(( 100 + n ))/24" "fd00:18:1::$(( 100 + n ))/64"
    in_ns "${P}sw" ethtool -K "$lb" gro on >/dev/null
    in_ns "${P}$lb" ethtool -K front0 gro on >/dev/null
    in_ns "${P}$lb" ethtool -K back0 gro on >/dev/null
    in_ns "${P}$lb" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
      net.ipv4.conf.front0.accept_local=1 net.ipv4.conf.back0.accept_local=1 \
      net.ipv4.conf.front0.rp_filter=2 net.ipv4.conf.back0.rp_filter=2
    sshd_host "$lb" "$n"
  done
  wait_ready
}

# Wait until every sshd accepts connections and every backend answers
# locally (no traffic crosses a balancer here).
wait_ready() {
  local i n be ok
  for i in $(seq 1 50); do
    ok=1
    for n in $(seq 1 "$SIZE"); do
      bash -c "exec 3<>/dev/tcp/$MGMT.$n/22" 2>/dev/null || { ok=0; break; }
    done
    n=0
    for be in $(backends); do
      n=$(( n + 1 ))
      in_ns "${P}$be" curl -s -m 1 -o /dev/null "http://198.18.1.$(( 10 + n ))/" || ok=0
      in_ns "${P}$be" dig +short +time=1 +tries=1 TXT whoami.lab "@fd00:18:1::$(( 10 + n ))" >/dev/null || ok=0
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "fleet servers did not come up; logs under $DIR" >&2
  return 1
}

status() {
  local ns
  for ns in $(fleet_namespaces); do
    echo "$ns: $(ip -n "$ns" -br link | awk '{print $1}' | tr '\n' ' ')| pids: $(ip netns pids "$ns" | tr '\n' ' ')"
  done
  ip -br link show "${P}mgmt" 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
