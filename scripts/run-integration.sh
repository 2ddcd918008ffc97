#!/usr/bin/env bash
# Runs the ansible-test integration target tests/integration/targets/xdp_lb
# on this machine (root, real kernel: netns, veth, XDP, bpffs), in a mount
# namespace of its own with its own bpffs (the host's mounts stay as they are).
#
#   scripts/run-integration.sh                 ansible-test integration (the default)
#   XDP_LB_IT_RUNNER=playbook scripts/...      the same target through plain ansible-playbook
#   extra arguments go to ansible-test (e.g. -vvv)
#
# ansible-test wants the collection at .../ansible_collections/netfleet/xdp_lb
# and does not follow this checkout's .collections symlink, so the tracked
# files are copied into a temporary tree first (removed on exit).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"
runner=${XDP_LB_IT_RUNNER:-ansible-test}

if [ "$(id -u)" != 0 ]; then
  echo "run-integration.sh: needs root (XDP, netns, bpffs)" >&2
  exit 1
fi

# Both runners run in a private mount namespace with a bpffs of its own at
# /sys/fs/bpf (mode 700, as tests/hermetic.py makes pytest's): the module
# pins there, nothing mounted by hand is needed, and no mount or pin of the
# run reaches the host's mounts (they go with the namespace).  unshare and
# bash exec in place, so $$ stays this script's pid: the variable marks the
# process that made the namespace, not one that inherited it.
if [ "${XDP_LB_IT_PRIVATE_BPFFS:-}" != "$$" ]; then
  # shellcheck disable=SC2016 # $0 and $@ of the inner bash
  exec unshare -m --propagation private env XDP_LB_IT_PRIVATE_BPFFS="$$" bash -c \
    'mount -t bpf -o nosuid,nodev,noexec,mode=700 bpf /sys/fs/bpf && exec bash "$0" "$@"' "$0" "$@"
fi

tmp=$(mktemp -d /tmp/xdp-lb-it.XXXXXX)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

if [ "$runner" = playbook ]; then
  # Fallback: the same target through ansible-playbook on localhost, with
  # the system Python (bcc and pyroute2 come from Debian packages).
  ANSIBLE_CONFIG="$here/ansible.cfg" \
    ansible-playbook -i localhost, "$here/tests/integration/targets/xdp_lb/runme.yml" \
      -e xlbit_hosts=localhost -e ansible_connection=local \
      -e ansible_python_interpreter=/usr/bin/python3 \
      -e xlbit_collections_root="$here/.collections" "$@"
  exit $?
fi

dest="$tmp/ansible_collections/netfleet/xdp_lb"
mkdir -p "$dest"
# tracked and new (not ignored) files: what a release would contain
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$here" || exit 1; xargs -0 cp --parents -t "$dest" 2>/dev/null || true)
cd "$dest"
{ git init -q . && git add -A; } >/dev/null 2>&1 || true   # ansible-test lists content with git when present

# --local: this machine is the target; its Python is the venv's, which sees
# Debian's bcc and pyroute2 (--system-site-packages).
ansible-test integration xdp_lb --local --allow-destructive --allow-root \
  --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no "$@"
