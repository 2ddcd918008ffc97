"""Makes the checkout importable as ansible_collections.netfleet.xdp_lb."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINK = os.path.join(ROOT, ".collections", "ansible_collections", "netfleet", "xdp_lb")
if not os.path.exists(_LINK):
    subprocess.check_call(["bash", os.path.join(ROOT, "scripts", "link-collection.sh")])
sys.path.insert(0, os.path.join(ROOT, ".collections"))
