"""XDP traffic generator: prepared UDP frames, sent by the kernel as XDP frames.

The program (xdp_trafficgen.c) runs under BPF_PROG_TEST_RUN with
BPF_F_TEST_XDP_LIVE_FRAMES, the way xdp-trafficgen works: the kernel feeds
it page-pool frames as if received on DEV (``ingress_ifindex``) and
transmits every frame it returns XDP_TX for out of DEV (ndo_xdp_xmit), in
batches of ``batch`` frames (a NAPI poll's worth, 64), after which the
receiving side runs in this process's softirq on this CPU.  No socket and
no sk_buff are on the sender's side; on a veth the peer receives XDP
frames, as from a NIC.  A frame the device refuses still counts as sent:
a veth refuses frames while its peer's ring (256) is full, and counts
them in ``ethtool -S``'s tx_queue_N_xdp_xmit_errors
(tests/dataplane/test_trafficgen.py accounts for every frame so).

Frames: FLOWS prepared Ethernet/IPv4/UDP frames of 60 bytes (64 on the wire),
one per flow (source address and port vary), checksums complete; the
program writes frame ``n mod FLOWS`` for the n-th transmission.

Rate: 0 = as fast as the CPU allows; otherwise the program paces itself
(one frame every 1/RATE s, XDP_DROP for the runs in between: at a set
rate the generator spins, so its CPU time means nothing there).  Each
syscall runs for about 0.5 s: the kernel sets up a page pool per call
(about 20 ms here), which small calls would pay again and again.

As a command (the forwarding benchmark starts it in the client's network
namespace, pinned to one CPU)::

    trafficgen.py --dev eth0 --dst-mac MAC --flows 4096 --rate 0 --seconds 5

prints ``ready`` when the program is loaded and about to send, then one
JSON line: {"sent": frames the program handed to the kernel, "elapsed": s,
"calls": syscalls}.  Stops after SECONDS, or at COUNT frames.
"""
import argparse
import ctypes as ct
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, build  # noqa: E402

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
XDP_TX = 3
FRAME_LEN = 60          # GEN_FRAME_LEN - 4 in xdp_trafficgen.c
SLOT_LEN = 64
FRAMES_MAX = 65536
MAX_BATCH = 256         # the kernel's TEST_XDP_MAX_BATCH


class GenError(Exception):
    pass


# ---- frames -------------------------------------------------------------------------
def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def _mac(text):
    raw = bytes(int(x, 16) for x in text.split(":"))
    if len(raw) != 6:
        raise GenError("not a MAC address: %r" % text)
    return raw


def if_mac(dev):
    """MAC address of DEV in this network namespace (SIOCGIFHWADDR: /sys may be another namespace's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        raw = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", dev.encode()[:15]))
    return ":".join("%02x" % b for b in raw[18:24])


def udp_frame(src_mac, dst_mac, src, dst, sport, dport, length=FRAME_LEN):
    """One Ethernet/IPv4/UDP frame of ``length`` bytes, IP and UDP checksums set."""
    payload = bytes(length - 42)
    ulen = 8 + len(payload)
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = _csum(s + d + struct.pack("!BBH", 0, 17, ulen) + udp) or 0xffff
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + ip + udp


def flow_frames(flows, src_mac, dst_mac, dst, dport, src_net="198.18.0", src_hosts=8, first_port=10000):
    """``flows`` frames, distinct flows: sources SRC_NET.2 .. .(1+SRC_HOSTS), ports from FIRST_PORT."""
    if flows < 1 or flows > FRAMES_MAX or flows & (flows - 1):
        raise GenError("flows must be a power of two, 1..%d: %r" % (FRAMES_MAX, flows))
    return [udp_frame(src_mac, dst_mac, "%s.%d" % (src_net, 2 + i % src_hosts), dst,
                      first_port + i // src_hosts, dport) for i in range(flows)]


# ---- program ------------------------------------------------------------------------
def compile_program(out_dir):
    """xdp_trafficgen.o in OUT_DIR (same compiler and flags as the other benchmark programs)."""
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "xdp_trafficgen.o")
    subprocess.run(["clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf"] +
                   ["-I%s" % d for d in build.system_include_dirs()] +
                   ["-c", os.path.join(HERE, "xdp_trafficgen.c"), "-o", out], check=True)
    return out


class Frame(ct.Structure):
    _fields_ = [("data", ct.c_ubyte * SLOT_LEN)]


class GenConfig(ct.Structure):
    _fields_ = [("mask", ct.c_uint32), ("pad", ct.c_uint32), ("interval_ns", ct.c_uint64)]


class TrafficGen:
    """The loaded generator, sending on interface index IFINDEX of this network namespace."""

    def __init__(self, obj_path, ifindex, batch=64):
        if not 1 <= batch <= MAX_BATCH:
            raise GenError("batch must be 1..%d: %r" % (MAX_BATCH, batch))
        self.ifindex, self.batch = ifindex, batch
        self.obj = bpf.LoadedObject(obj_path, prog_name="xdp_gen", scratch=True)
        self._sent = bpf.Map(self.obj.map_fd("gen_sent"), ct.c_uint32, ct.c_uint64, percpu=True, owned=False)
        self._template = ct.create_string_buffer(bytes(FRAME_LEN), FRAME_LEN)
        self._mask = 0
        self.calls = 0

    def close(self):
        self.obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_frames(self, frames):
        if not frames or len(frames) > FRAMES_MAX or len(frames) & (len(frames) - 1):
            raise GenError("frame count must be a power of two, 1..%d: %d" % (FRAMES_MAX, len(frames)))
        for f in frames:
            if len(f) != FRAME_LEN:
                raise GenError("frames are %d bytes, got %d" % (FRAME_LEN, len(f)))
        fmap = bpf.Map(self.obj.map_fd("gen_frames"), ct.c_uint32, Frame, owned=False)
        values = []
        for f in frames:
            v = Frame()
            ct.memmove(v.data, f, FRAME_LEN)
            values.append(v)
        fmap.update_batch(list(range(len(frames))), values)
        self._mask = len(frames) - 1
        self._set_config(0)
        self._template = ct.create_string_buffer(frames[0], FRAME_LEN)

    def _set_config(self, interval_ns):
        cfg = bpf.Map(self.obj.map_fd("gen_config"), ct.c_uint32, GenConfig, owned=False)
        cfg.update(ct.c_uint32(0), GenConfig(mask=self._mask, interval_ns=int(interval_ns)))

    def sent(self):
        """Frames the program returned XDP_TX for, since load (all CPUs)."""
        return sum(self._sent.lookup(ct.c_uint32(0)))

    def transmit(self, count):
        """One BPF_PROG_TEST_RUN in live-frames mode: COUNT frames out of the device."""
        opts = bpf._TestRunOpts()
        opts.sz = ct.sizeof(bpf._TestRunOpts)
        opts.data_in = ct.cast(self._template, ct.c_void_p)
        opts.data_size_in = FRAME_LEN
        ctx = bpf.XdpMd(data=0, data_end=FRAME_LEN, ingress_ifindex=self.ifindex)
        opts.ctx_in = ct.cast(ct.byref(ctx), ct.c_void_p)
        opts.ctx_size_in = ct.sizeof(ctx)
        opts.repeat = count
        opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES
        opts.batch_size = self.batch
        rc = bpf._libbpf().bpf_prog_test_run_opts(self.obj.prog_fd, ct.byref(opts))
        self.calls += 1
        if rc < 0:
            raise GenError("BPF_PROG_TEST_RUN (live frames) failed: %s" % os.strerror(ct.get_errno() or -rc))
        if opts.retval != 0:    # the live mode returns 0; the verdicts stay in the kernel
            raise GenError("live-frames run returned %d" % opts.retval)

    def run(self, rate=0, seconds=1.0, count=None):
        """Send at RATE frames/s (0: full speed) for SECONDS, or until COUNT frames
        have gone out; returns the frames sent."""
        self._set_config(1e9 / rate if rate else 0)
        start = self.sent()
        t0 = time.monotonic()
        end = t0 + seconds
        runs = 4096          # runs per call, grown until a call takes about 0.5 s
        while True:
            now = time.monotonic()
            done = self.sent() - start
            if now >= end or (count is not None and done >= count):
                break
            n = runs
            if count is not None and not rate:
                n = min(n, count - done)
            t = time.monotonic()
            self.transmit(n)
            took = time.monotonic() - t
            if took < 0.25 and runs < (1 << 26):
                runs *= 2
            if rate and count is not None and self.sent() - start > count:
                break
        return self.sent() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--dev", required=True, help="device of this network namespace to send out of")
    ap.add_argument("--dst-mac", required=True, help="destination MAC (the peer's)")
    ap.add_argument("--dst", default="198.18.100.1")
    ap.add_argument("--dport", type=int, default=9000)
    ap.add_argument("--src-net", default="198.18.0", help="first three octets of the sources")
    ap.add_argument("--flows", type=int, default=4096, help="a power of two")
    ap.add_argument("--rate", type=float, default=0, help="frames per second, 0: full speed")
    ap.add_argument("--seconds", type=float, default=5.0, help="at most 120")
    ap.add_argument("--count", type=int, default=None, help="frames at most")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--obj", help="compiled xdp_trafficgen.o (default: compile into a temp dir)")
    args = ap.parse_args()
    if not 0 < args.seconds <= 120:
        sys.exit("--seconds must be in (0, 120]: %r" % args.seconds)
    if args.rate < 0:
        sys.exit("--rate must be >= 0: %r" % args.rate)
    try:
        ifindex = socket.if_nametoindex(args.dev)
    except OSError:
        sys.exit("--dev: no interface %r in this network namespace" % args.dev)
    src_mac = if_mac(args.dev)
    obj = args.obj or compile_program(os.path.join("/tmp", "xlbw-gen-%d" % os.getpid()))
    try:
        frames = flow_frames(args.flows, src_mac, args.dst_mac, args.dst, args.dport, args.src_net)
        with TrafficGen(obj, ifindex, batch=args.batch) as gen:
            gen.set_frames(frames)
            print("ready", flush=True)
            t0 = time.monotonic()
            sent = gen.run(args.rate, args.seconds, args.count)
            print(json.dumps({"sent": sent, "elapsed": round(time.monotonic() - t0, 4), "calls": gen.calls}),
                  flush=True)
    except (GenError, bpf.BPFError) as exc:
        sys.exit("trafficgen: %s" % exc)
    finally:
        if not args.obj:
            import shutil
            shutil.rmtree(os.path.dirname(obj), ignore_errors=True)


if __name__ == "__main__":
    main()
