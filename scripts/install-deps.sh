#!/usr/bin/env bash
# Installs everything this repository's lab, demo and test suite need on a
# Debian/Ubuntu machine (run as root). Idempotent: safe to run again.
#   - Debian packages: the BPF toolchain, bcc and pyroute2 for the system
#     Python (the interpreter Ansible modules run on), lab servers, tools.
#   - .venv: a virtualenv on the system Python with --system-site-packages,
#     so bcc/pyroute2 from Debian are importable next to pinned ansible-core,
#     molecule, ansible-lint, scapy and pytest from PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}

pkgs=(clang llvm libbpf-dev bpftool xdp-tools gcc make
      python3-bpfcc python3-pyroute2 python3-venv python3-pip
      iproute2 ethtool nftables conntrack shellcheck
      openssh-server openssh-client nginx-light dnsmasq-base dnsutils curl socat)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/ansible-playbook" ] || ! cmp -s "$here/requirements-dev.txt" "$venv/.requirements-dev.txt"; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements-dev.txt"
  cp "$here/requirements-dev.txt" "$venv/.requirements-dev.txt"
fi
echo "dependencies ready: $venv"
