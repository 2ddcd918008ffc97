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
# checksum state of locally sent packets).
#
# Environment (molecule and parallel runs pick their own):
#   LAB_PREFIX        name prefix of namespaces and root-side links (xlb-)
#   LAB_DIR           keys, configs, pid and log files (build/lab)
#   LAB_MGMT_NET      first three octets of the management /24 (198.19.0)
#   LAB_BACKENDS      number of backends, 1..9 (3)
#   LAB_SSH_BACKENDS  1: backends get a management address and sshd too (0)
#   LAB_DSR           1: backend servers also answer on addresses added
#                     later (the VIPs on lo, for dsr mode) (0)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
P=${LAB_PREFIX:-xlb-}
DIR=${LAB_DIR:-$here/build/lab}
MGMT=${LAB_MGMT_NET:-198.19.0}
NBE=${LAB_BACKENDS:-3}
SSH_BE=${LAB_SSH_BACKENDS:-0}
DSR=${LAB_DSR:-0}

case "$P" in
  *[!a-z0-9-]* | "") echo "LAB_PREFIX must be lower-case letters, digits and '-': $P" >&2; exit 2 ;;
esac
[ ${#P} -le 9 ] || { echo "LAB_PREFIX too long for link names (max 9): $P" >&2; exit 2; }
case "$NBE" in [1-9]) ;; *) echo "LAB_BACKENDS must be 1..9: $NBE" >&2; exit 2 ;; esac
[[ "$MGMT" =~ ^198\.1[89]\.[0-9]{1,3}$ ]] || { echo "LAB_MGMT_NET must be inside 198.18.0.0/15: $MGMT" >&2; exit 2; }

backends() { local i; for i in $(seq 1 "$NBE"); do echo "be$i"; done; }
namespaces() { echo "${P}client" "${P}lb" "${P}sw"; local b; for b in $(backends); do echo "${P}$b"; done; }
# What exists of a lab with this prefix, whatever its size.
lab_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}(client|lb|sw|be[0-9])\$" || true
}
lab_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
    | grep -E "^${P}(mgmt|m-lb|m-be[0-9])\$" || true
}
ns_exists() { [ -e "/run/netns/$1" ]; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- down -------------------------------------------------------------------
down() {
  local ns pids link
  # Every process inside the lab's namespaces was started by the lab (sshd
  # and its sessions, nginx, dnsmasq) or by whoever ran commands there: end
  # them by pid so the namespaces can go away.
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
  done
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      sleep 0.3
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(lab_links); do
    ip link del "$link" 2>/dev/null || true
  done
  # Only a directory this script made (it holds the marker) is removed.
  if [ -e "$DIR/.xdp-lb-lab" ]; then rm -rf "$DIR"; fi
}

# ---- up ---------------------------------------------------------------------
mkns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  # Addresses are usable at once (no duplicate address detection wait).
  in_ns "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

# veth NAME_A in NS_A <-> NAME_B in NS_B (NS "" = root namespace)
veth() {
  local a=$1 nsa=$2 b=$3 nsb=$4
  ip link add "$a" ${nsa:+netns "$nsa"} type veth peer name "$b" ${nsb:+netns "$nsb"}
}

addr() { # ns dev v4/len v6/len
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" -6 addr add "$4" dev "$2" nodad
  ip -n "$1" link set "$2" up
}

mgmt_host() { # ns host-octet
  local ns=$1 octet=$2 root_end=${P}m-${1#"$P"}
  veth "$root_end" "" mgmt0 "$ns"
  ip link set "$root_end" master "${P}mgmt" up
  ip -n "$ns" addr add "$MGMT.$octet/24" dev mgmt0
  ip -n "$ns" link set mgmt0 up
}

sshd_host() { # ns host-octet
  local ns=$1 octet=$2 d=$DIR/${1#"$P"}
  mkdir -p "$d" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C "${ns}-host" -f "$d/ssh_host_ed25519_key"
  cat >"$d/sshd_config" <<EOF
# sshd for the lab host $ns (generated by scripts/lab/lab.sh)
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
  in_ns "$ns" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
}

backend_servers() { # name octet
  local be=$1 n=$2 d=$DIR/$1 v4=198.18.1.$(( 10 + $2 )) v6=fd00:18:1::$(( 10 + $2 ))
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
# nginx for lab backend $be (generated by scripts/lab/lab.sh)
worker_processes 1;
pid $d/nginx.pid;
error_log $d/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $d/nginx-access.log;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        # Any address: in dsr mode requests arrive for the VIP (on lo).
        listen 80;
        listen [::]:80;
        default_type text/plain;
        return 200 "$be\n";
    }
}
EOF
  in_ns "${P}$be" nginx -e "$d/nginx-error.log" -p "$d" -c "$d/nginx.conf"
  local bind=(--bind-interfaces --listen-address="$v4" --listen-address="$v6")
  # dsr: also the VIPs, which role xdp_lb_backend adds to lo later.
  [ "$DSR" = 1 ] && bind=(--bind-dynamic --interface=eth0 --interface=lo)
  in_ns "${P}$be" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    "${bind[@]}" --port=53 \
    --pid-file="$d/dnsmasq.pid" --log-facility="$d/dnsmasq.log" \
    --user=dnsmasq --group=nogroup \
    --txt-record="whoami.lab,$be" --host-record="whoami.lab,$v4,$v6"
}

up() {
  down
  if [ -e "$DIR" ] && [ ! -e "$DIR/.xdp-lb-lab" ] && [ -n "$(ls -A "$DIR")" ]; then
    echo "LAB_DIR exists and is not a lab directory: $DIR" >&2; exit 2
  fi
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  echo "$P" >"$DIR/.xdp-lb-lab"
  sysctl -qw net.ipv6.conf.default.accept_dad=0 >/dev/null 2>&1 || true
  local ns be n
  for ns in $(namespaces); do mkns "$ns"; done

  # management bridge in the root namespace
  ip link add "${P}mgmt" type bridge
  ip addr add "$MGMT.254/24" dev "${P}mgmt"
  ip link set "${P}mgmt" up

  # client <-> lb
  veth eth0 "${P}client" front0 "${P}lb"
  addr "${P}client" eth0 198.18.0.2/24 fd00:18::2/64
  addr "${P}lb" front0 198.18.0.1/24 fd00:18::1/64
  ip -n "${P}client" route add 198.18.100.0/24 via 198.18.0.1
  ip -n "${P}client" -6 route add fd00:18:100::/64 via fd00:18::1

  # lb <-> switch <-> backends
  ip -n "${P}sw" link add br0 type bridge
  ip -n "${P}sw" link set br0 up
  veth back0 "${P}lb" lb "${P}sw"
  addr "${P}lb" back0 198.18.1.1/24 fd00:18:1::1/64
  ip -n "${P}sw" link set lb master br0 up
  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    veth eth0 "${P}$be" "$be" "${P}sw"
    ip -n "${P}sw" link set "$be" master br0 up
    addr "${P}$be" eth0 "198.18.1.$(( 10 + n ))/24" "fd00:18:1::$(( 10 + n ))/64"
    ip -n "${P}$be" route add default via 198.18.1.1
    ip -n "${P}$be" -6 route add default via fd00:18:1::1
  done

  # Offloads for XDP on veth (see the header).
  in_ns "${P}client" ethtool -K eth0 tx off gro on >/dev/null
  in_ns "${P}sw" ethtool -K lb gro on >/dev/null
  for be in $(backends); do
    in_ns "${P}$be" ethtool -K eth0 tx off gro on >/dev/null
    in_ns "${P}sw" ethtool -K "$be" gro on >/dev/null
  done
  in_ns "${P}lb" ethtool -K front0 gro on >/dev/null
  in_ns "${P}lb" ethtool -K back0 gro on >/dev/null

  # SSH access: one key for root on every lab host.
  ssh-keygen -q -t ed25519 -N '' -C "${P}lab" -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  mgmt_host "${P}lb" 1
  sshd_host "${P}lb" 1
  n=0
  for be in $(backends); do
    n=$(( n + 1 ))
    if [ "$SSH_BE" = 1 ]; then
      mgmt_host "${P}$be" $(( 10 + n ))
      sshd_host "${P}$be" $(( 10 + n ))
    fi
    backend_servers "$be" "$n"
  done
  wait_ready
}

# Wait until every server answers locally (no traffic crosses the lb here).
wait_ready() {
  local be n i ok
  for i in $(seq 1 50); do
    ok=1
    n=0
    for be in $(backends); do
      n=$(( n + 1 ))
      in_ns "${P}$be" curl -s -m 1 -o /dev/null "http://198.18.1.$(( 10 + n ))/" || ok=0
      in_ns "${P}$be" dig +short +time=1 +tries=1 TXT whoami.lab "@fd00:18:1::$(( 10 + n ))" >/dev/null || ok=0
    done
    bash -c "exec 3<>/dev/tcp/$MGMT.1/22" 2>/dev/null || ok=0
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "lab servers did not come up; logs under $DIR" >&2
  return 1
}

status() {
  local ns
  for ns in $(namespaces); do
    if ns_exists "$ns"; then
      echo "$ns: $(ip -n "$ns" -br link | awk '{print $1}' | tr '\n' ' ')| pids: $(ip netns pids "$ns" | tr '\n' ' ')"
    fi
  done
  ip -br link show "${P}mgmt" 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
