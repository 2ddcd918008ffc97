#!/usr/bin/env bash
# ansible-test runs this (a script target) instead of a generated playbook
# with "roles: [xdp_lb]", which would resolve to the collection's own role.
set -eux
ansible-playbook runme.yml -i "${INVENTORY_PATH:-../../inventory}" "$@"
