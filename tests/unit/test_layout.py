"""layout.py's ctypes structs match the compiled data plane's BTF, field by field."""
import ctypes as ct
import os
import re

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import build, layout
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run

FILES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "files")

STRUCTS = {
    "lb_config": layout.LbConfig,
    "lb_service_key": layout.LbServiceKey,
    "lb_service": layout.LbService,
    "lb_backend": layout.LbBackend,
    "lb_flow": layout.LbFlow,
    "lb_flow4": layout.LbFlow4,
    "lb_ct_entry": layout.LbCtEntry,
    "lb_nat_entry": layout.LbNatEntry,
    "lb_counter": layout.LbCounter,
}

_STRUCT = re.compile(r"^\[\d+\] STRUCT '(\w+)' size=(\d+) vlen=\d+$")
_MEMBER = re.compile(r"^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)$")


@pytest.fixture(scope="module")
def btf_dump(tmp_path_factory):
    """`bpftool btf dump ... format raw` of the data plane built with default sizes."""
    obj = build.compile_object(FILES, str(tmp_path_factory.mktemp("build")), {})[0]
    return run(["bpftool", "btf", "dump", "file", obj, "format", "raw"])[1]


@pytest.fixture(scope="module")
def btf_structs(btf_dump):
    """{struct name: (size, [(member, byte offset)])}."""
    structs, current = {}, None
    for line in btf_dump.splitlines():
        m = _STRUCT.match(line)
        if m:
            current = structs.setdefault(m.group(1), (int(m.group(2)), []))
            continue
        m = _MEMBER.match(line)
        if m and current is not None:
            current[1].append((m.group(1), int(m.group(2)) // 8))
        elif not line.startswith(("\t", " ")):
            current = None
    return structs


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_matches_btf(btf_structs, name):
    assert name in btf_structs, "struct %s is not in the object's BTF" % name
    size, members = btf_structs[name]
    cls = STRUCTS[name]
    assert size == ct.sizeof(cls), "%s: BTF size %d, layout.py %d" % (name, size, ct.sizeof(cls))
    assert [(field, getattr(cls, field).offset) for field, dummy in cls._fields_] == members


def test_map_table_names_every_map(btf_dump):
    """layout.MAPS and the object agree on the map names (they are the pin names)."""
    assert set(re.findall(r"VAR '(lb_\w+)' type_id", btf_dump)) == set(layout.MAPS)
