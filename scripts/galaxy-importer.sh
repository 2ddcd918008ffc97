#!/usr/bin/env bash
# Galaxy's importer on the built collection (part of `make lint`): the
# checks Galaxy runs when the tarball is uploaded (metadata, licences,
# documentation through ansible-doc, ansible-lint, changelog), with the
# settings in .galaxy-importer.cfg (no ansible-test: `make sanity` runs it).
# Fails on any error or warning the importer reports.
#
# galaxy.yml has no `repository` (the project has no public home yet) and
# Galaxy refuses a collection without one.  Until it has one, the tarball
# checked here is built from a copy of the checkout whose galaxy.yml gets
# `repository: $XDP_LB_REPOSITORY` (default: the checkout as a file:// URL,
# which says where this build came from and is never published), and the
# script says so.  With `repository` in galaxy.yml the checkout is built as
# it is.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"

tmp=$(mktemp -d /tmp/xdp-lb-importer.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

src="$tmp/src"
mkdir -p "$src"
# tracked and new (not ignored) files: what a release would contain
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$here" && xargs -0 cp -P --parents -t "$src")
if ! grep -q '^repository:' "$src/galaxy.yml"; then
  repo=${XDP_LB_REPOSITORY:-file://$here}
  echo "galaxy-importer.sh: galaxy.yml has no repository (Galaxy needs one to publish);" \
       "checking with repository: $repo"
  printf 'repository: %s\n' "$repo" >>"$src/galaxy.yml"
fi
(cd "$src" && ANSIBLE_CONFIG="$here/ansible.cfg" ansible-galaxy collection build --output-path "$tmp/out" >/dev/null)
tarball=$(ls "$tmp"/out/netfleet-xdp_lb-*.tar.gz)

# The importer works in a directory of its own and runs ansible-doc and
# ansible-lint itself; none of this checkout's ANSIBLE_* settings apply.
log="$tmp/importer.log"
(cd "$tmp" && env -u ANSIBLE_CONFIG GALAXY_IMPORTER_CONFIG="$here/.galaxy-importer.cfg" HOME="$tmp" \
   python -m galaxy_importer.main "$tarball") >"$log" 2>&1 || { cat "$log"; echo "galaxy-importer: FAILED" >&2; exit 1; }
if grep -E '^(WARNING|ERROR|CRITICAL)' "$log"; then
  echo "galaxy-importer: the importer reported the above ($(basename "$tarball"))" >&2
  exit 1
fi
echo "galaxy-importer: OK ($(basename "$tarball"), $(grep -c . "$log") lines of importer output, no warning)"
