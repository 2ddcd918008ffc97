# shellcheck shell=bash
# Shared pieces of the netns labs scripts/lab/lab.sh, fleet.sh and rolling.sh
# (sourced, not run).  The caller sets:
#   P     name prefix of its namespaces and root-side links
#   DIR   its directory (keys, configs, pid and log files)
#   MGMT  first three octets of its management /24
#   NBE   number of backends (be1..beNBE)
#   KIND  lab | fleet: names the generated files' script and the SSH key
#
# Addresses are the labs' own, inside 198.18.0.0/15 and fd00:18::/32.

# ---- checks of the environment ----------------------------------------------
check_prefix() { # variable-name max-length
  case "$P" in
    *[!a-z0-9-]* | "") echo "$1 must be lower-case letters, digits and '-': $P" >&2; exit 2 ;;
  esac
  [ ${#P} -le "$2" ] || { echo "$1 too long for link names (max $2): $P" >&2; exit 2; }
}
check_backends() { # variable-name value
  case "$2" in [1-9]) ;; *) echo "$1 must be 1..9: $2" >&2; exit 2 ;; esac
}
check_mgmt() { # variable-name
  [[ "$MGMT" =~ ^198\.1[89]\.[0-9]{1,3}$ ]] || { echo "$1 must be inside 198.18.0.0/15: $MGMT" >&2; exit 2; }
}

backends() { local i; for i in $(seq 1 "$NBE"); do echo "be$i"; done; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Namespaces and root-side links named ^${P}(REGEX)$, whatever exists.
matching_namespaces() { # regex
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}($1)\$" || true
}
matching_links() { # regex
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
    | grep -E "^${P}($1)\$" || true
}

# ---- down -------------------------------------------------------------------
del_namespaces() { # regex
  local ns pids left=0
  # Every process inside these namespaces was started by the lab (sshd and
  # its sessions, nginx, dnsmasq) or by whoever ran commands there: end them
  # by pid so the namespaces can go away.  One grace period for all of them
  # (a 50-host fleet would otherwise wait 50 times).
  for ns in $(matching_namespaces "$1"); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086 # one pid a word
    if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; left=1; fi
  done
  [ "$left" = 0 ] || sleep 0.3
  for ns in $(matching_namespaces "$1"); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086 # one pid a word
    if [ -n "$pids" ]; then kill -9 $pids 2>/dev/null || true; fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

teardown() { # namespace-regex link-regex marker-file
  local link
  del_namespaces "$1"
  for link in $(matching_links "$2"); do
    ip link del "$link" 2>/dev/null || true
  done
  # Only a directory this script made (it holds the marker) is removed.
  if [ -e "$DIR/$3" ]; then rm -rf "$DIR"; fi
}

# ---- status -----------------------------------------------------------------
show_status() { # namespaces...
  local ns
  for ns in "$@"; do
    echo "$ns: $(ip -n "$ns" -br link | awk '{print $1}' | tr '\n' ' ')| pids: $(ip netns pids "$ns" | tr '\n' ' ')"
  done
  ip -br link show "${P}mgmt" 2>/dev/null || true
}

# ---- up ---------------------------------------------------------------------
init_dir() { # marker-file error-message
  if [ -e "$DIR" ] && [ ! -e "$DIR/$1" ] && [ -n "$(ls -A "$DIR")" ]; then
    echo "$2: $DIR" >&2; exit 2
  fi
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  echo "$P" >"$DIR/$1"
}

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

# The client side of a balancer's front0: eth0 of NS, VIPs routed via it.
client_eth0() { # ns
  addr "$1" eth0 198.18.0.2/24 fd00:18::2/64
  ip -n "$1" route add 198.18.100.0/24 via 198.18.0.1
  ip -n "$1" -6 route add fd00:18:100::/64 via fd00:18::1
  # tx checksum offload off (native XDP rewrites locally sent packets), GRO
  # on (frames redirected back to it).
  in_ns "$1" ethtool -K eth0 tx off gro on >/dev/null
}

# The management bridge in the root namespace, and one key for root on
# every host of the lab.
mgmt_bridge() {
  ip link add "${P}mgmt" type bridge
  ip addr add "$MGMT.254/24" dev "${P}mgmt"
  ip link set "${P}mgmt" up
  ssh-keygen -q -t ed25519 -N '' -C "${P}$KIND" -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
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
# sshd for the $KIND host $ns (generated by scripts/lab/$KIND.sh)
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

# Backend NAME number N: eth0 198.18.1.(10+N)/24 fd00:18:1::(10+N)/64 on the
# switch's bridge br0 (port NAME in ${P}sw).  The backend sends frames of
# the MTU with full checksums (tx checksum offload off, hence no TSO), and
# the switch's port keeps them so: GRO off.  A GRO aggregate on its way to a
# balancer's native XDP interface is cut up again by the veth in front of
# it, but its segments keep a partial checksum (the pseudo-header sum) that
# native XDP cannot complete: the lab would corrupt what no real NIC
# delivers (docs/design.md, "Aggregates").
backend_port() { # name number
  local be=$1 n=$2
  veth eth0 "${P}$be" "$be" "${P}sw"
  ip -n "${P}sw" link set "$be" master br0 up
  addr "${P}$be" eth0 "198.18.1.$(( 10 + n ))/24" "fd00:18:1::$(( 10 + n ))/64"
  in_ns "${P}$be" ethtool -K eth0 tx off gro on >/dev/null
  in_ns "${P}sw" ethtool -K "$be" gro off >/dev/null
}

# Size of each backend's /bulk file (bytes).
BULK_BYTES=${LAB_BULK_BYTES:-8388608}

# nginx on TCP 80 and dnsmasq on UDP 53 in ${P}NAME, both answering NAME
# (nginx also serves /bulk and takes PUT under /upload/).
#   access-log  on | off
#   nginx-any   1: nginx listens on any address (dsr mode: requests arrive
#               for the VIP, on lo); 0: on the backend's addresses only
#   dns-any     1: dnsmasq also answers on addresses added later (the VIPs,
#               which role xdp_lb_backend adds to lo); 0: the backend's only
backend_servers() { # name number access-log nginx-any dns-any
  local be=$1 d=$DIR/$1 v4=198.18.1.$(( 10 + $2 )) v6=fd00:18:1::$(( 10 + $2 ))
  local access_log=off listen
  [ "$3" = on ] && access_log=$d/nginx-access.log
  if [ "$4" = 1 ]; then
    listen="        # Any address: in dsr mode requests arrive for the VIP (on lo).
        listen 80;
        listen [::]:80;"
  else
    listen="        listen $v4:80;
        listen [$v6]:80;"
  fi
  mkdir -p "$d/tmp" "$d/upload"
  # The bulk file (/bulk): deterministic, so a client knows its digest
  # (molecule/shared/traffic.py --bulk).
  python3 -c 'import random, sys; n = int(sys.argv[1]); sys.stdout.buffer.write(random.Random(n).randbytes(n))' \
    "$BULK_BYTES" >"$d/bulk.bin"
  cat >"$d/nginx.conf" <<EOF
# nginx for $KIND backend $be (generated by scripts/lab/$KIND.sh)
# The worker runs as root: it reads /bulk and writes uploads under the lab's
# directory, which may sit below a directory only root can enter (mktemp -d).
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $access_log;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
$listen
        default_type text/plain;
        # Bulk TCP both ways: a download of $BULK_BYTES bytes, and uploads
        # (PUT, kept under $d/upload, answered 201 once stored).
        location = /bulk {
            alias $d/bulk.bin;
            default_type application/octet-stream;
        }
        location /upload/ {
            root $d;
            dav_methods PUT;
            client_max_body_size 64m;
        }
        location / {
            return 200 "$be\n";
        }
    }
}
EOF
  in_ns "${P}$be" nginx -e "$d/nginx-error.log" -p "$d" -c "$d/nginx.conf"
  local bind=(--bind-interfaces --listen-address="$v4" --listen-address="$v6")
  [ "$5" = 1 ] && bind=(--bind-dynamic --interface=eth0 --interface=lo)
  in_ns "${P}$be" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    "${bind[@]}" --port=53 \
    --pid-file="$d/dnsmasq.pid" --log-facility="$d/dnsmasq.log" \
    --user=dnsmasq --group=nogroup \
    --txt-record="whoami.lab,$be" --host-record="whoami.lab,$v4,$v6"
}

# Whether every backend's servers answer locally (no traffic crosses a
# balancer here); all are asked either way.
backends_answer() { # backend-names...
  local be n=0 ok=0
  for be in "$@"; do
    n=$(( n + 1 ))
    in_ns "${P}$be" curl -s -m 1 -o /dev/null "http://198.18.1.$(( 10 + n ))/" || ok=1
    in_ns "${P}$be" dig +short +time=1 +tries=1 TXT whoami.lab "@fd00:18:1::$(( 10 + n ))" >/dev/null || ok=1
  done
  return "$ok"
}
