#!/usr/bin/env bash
# Makes this checkout importable as the collection netfleet.xdp_lb:
# .collections/ansible_collections/netfleet/xdp_lb -> the repository root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/.collections/ansible_collections/netfleet"
ln -sfn "$here" "$here/.collections/ansible_collections/netfleet/xdp_lb"
