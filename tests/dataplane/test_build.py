"""The object itself: debug printing only on request, memory budget, upgrade in place."""
import os

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, build, layout
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run

import dplab as L
from dpframes import client_frame

MIB = 1024 * 1024


def _xlated(prog_fd):
    prog_id = bpf.fd_info(prog_fd)["prog_id"]
    return run(["bpftool", "prog", "dump", "xlated", "id", prog_id])[1]


def _helpers_in_elf(obj):
    """Helper calls in the ELF's disassembly (call N, N = helper id)."""
    out = run(["llvm-objdump", "-d", "--no-show-raw-insn", obj])[1]
    return {int(line.split("call")[1].split()[0]) for line in out.splitlines()
            if "\tcall " in line or " call " in line}


BPF_FUNC_TRACE_PRINTK, BPF_FUNC_TRACE_VPRINTK = 6, 177


def test_printk_only_with_debug(lab, build_dir, obj_path):
    debug_obj = build.compile_object(L.FILES, build_dir, {"XDP_LB_DEBUG": True})[0]
    assert debug_obj != obj_path
    assert not _helpers_in_elf(obj_path) & {BPF_FUNC_TRACE_PRINTK, BPF_FUNC_TRACE_VPRINTK}
    assert _helpers_in_elf(debug_obj) & {BPF_FUNC_TRACE_PRINTK, BPF_FUNC_TRACE_VPRINTK}
    assert "trace_printk" not in _xlated(lab.prog_fd)
    # The debug build passes the verifier too (sharing the pinned maps).
    with bpf.LoadedObject(debug_obj, lab.pin_root) as debug:
        assert "trace_printk" in _xlated(debug.prog_fd)


def test_map_memory_within_budget(lab):
    memlock = lab.map_memlock()
    total = sum(memlock.values())
    print("map memlock (MiB): %s, total %.1f" % (
        {k: round(v / MIB, 2) for k, v in sorted(memlock.items())}, total / MIB))
    assert set(memlock) == set(layout.MAPS)
    assert total <= 64 * MIB
    assert memlock["lb_ring"] >= 8 * MIB     # the ring is really there, default size (4 ids a value)
    # what grows with the CPU count: the per-CPU maps; the defaults stay within
    # 64 MiB up to 64 possible CPUs (docs/design.md)
    ncpu = bpf.possible_cpus()
    percpu = sum(memlock[n] for n, (_k, _v, pc) in layout.MAPS.items() if pc)
    assert total - percpu + percpu * 64 // ncpu <= 64 * MIB


def test_reload_shares_pinned_maps_and_state(lab, obj_path):
    lab.configure(layout.MODE_NAT)
    vip, ids = L.setup_service(lab, 4, "tcp")
    lab.set_tx_port(0, "xlbdp2p")
    first = client_frame(L.CLIENT4, vip, "tcp", 47000, 80)
    action, out = lab.run(first)
    assert action == L.XDP_REDIRECT
    ids_before = {name: bpf.fd_info(lab.maps[name].fd)["map_id"] for name in layout.MAPS}
    lab.load(obj_path)              # the same object again: an upgrade in place
    ids_after = {name: bpf.fd_info(lab.maps[name].fd)["map_id"] for name in layout.MAPS}
    assert ids_after == ids_before
    assert lab.run(first) == (L.XDP_REDIRECT, out)
    assert lab.maps["lb_tx_ports"].lookup(layout.U32(0)).value == lab.ifindex["xlbdp2p"]
    # bpffs's own iterator files aside, the pin root holds the maps, by name.
    assert set(os.listdir(lab.pin_root)) - {"maps.debug", "progs.debug"} == set(layout.MAPS)


def test_pinned_map_of_other_size_is_refused(lab, build_dir):
    other = build.compile_object(L.FILES, build_dir, {"XDP_LB_MAX_REDIRECT": 8})[0]
    with pytest.raises(bpf.BPFError, match="lb_tx_ports"):
        bpf.LoadedObject(other, lab.pin_root)
