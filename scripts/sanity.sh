#!/usr/bin/env bash
# ansible-test sanity for the collection.  tests/sanity/ignore-*.txt stay
# empty: fix, do not ignore.
#
#   scripts/sanity.sh                 all sanity tests
#   scripts/sanity.sh --test pylint   one test (extra arguments go to ansible-test)
#
# The sanity tests' pinned requirements (pylint, yamllint, voluptuous, ...)
# go into a virtualenv of their own, outside the checkout, made here from
# PyPI (ansible-test --venv would bootstrap pip from ci-files.testing.ansible.com,
# which this lab cannot reach).  It holds the ansible-core of requirements-dev.txt.
#
# ansible-test needs the collection at .../ansible_collections/netfleet/xdp_lb;
# the tracked (and new, not ignored) files are copied to a temporary tree.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
svenv=${XDP_LB_SANITY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/netfleet-xdp-lb/sanity-venv}
core=$(grep -i '^ansible-core' "$here/requirements-dev.txt")
if [ ! -x "$svenv/bin/ansible-test" ] || [ "$(cat "$svenv/.core" 2>/dev/null)" != "$core" ]; then
  rm -rf "$svenv"
  /usr/bin/python3 -m venv "$svenv"
  "$svenv/bin/pip" install -q --upgrade pip
  "$svenv/bin/pip" install -q "$core"
  echo "$core" > "$svenv/.core"
fi
export PATH="$svenv/bin:$PATH"

# ansible-test makes a virtualenv per sanity test and bootstraps pip in it with
# get-pip.py from ci-files.testing.ansible.com (unreachable here).  Its cache
# slot gets a stand-in: the interpreter's bundled pip (ensurepip), then a
# normal "pip install" of the pinned pip from PyPI with the same arguments.
pip_version=$(grep -oP "pip='\K[0-9.]+" \
  "$("$svenv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -s "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cat > "$get_pip" <<'PY'
# Stand-in for get-pip.py written by netfleet.xdp_lb scripts/sanity.sh:
# bundled pip first, then pip install (from PyPI) with get-pip's arguments.
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
PY
fi
py=$("$svenv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

tmp=$(mktemp -d /tmp/xdp-lb-sanity.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/netfleet/xdp_lb"
mkdir -p "$dest"
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$here" && xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q . && git add -A   # ansible-test lists the collection's files with git

ansible-test sanity --requirements --python "$py" --color no "$@"
