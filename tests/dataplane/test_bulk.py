"""Bulk TCP through the real generic-mode path, with GRO aggregates.

BPF_PROG_TEST_RUN cannot make a GRO packet (an skb with gso_size and a
CHECKSUM_PARTIAL checksum), so these tests build a small network and let
the kernel make them: the program is attached in generic mode (xdpgeneric)
to the balancer's interfaces, and the switch in front of them runs GRO on
its ports, as a bridge or a virtual NIC with receive offloads does.

    xlbbk-cl  eth0 198.18.0.30 fd00:18::30 (tx checksum offload and TSO off:
       |      it sends full-checksum frames of the MTU, as a NIC delivers them)
    xlbbk-sw  br1: cl + xlbdp0p                br0: be + xlbdp1p
       |                                       br2: rd + xlbdp2p
    lab ns    xlbdp0 198.18.0.1 (client side)  xlbdp1 198.18.1.1 (backends, SNAT)
              xlbdp2 198.18.3.1 (redirect mode's port)
    xlbbk-be  eth0 198.18.1.30 fd00:18:1::30, the VIPs on lo (dsr)
    xlbbk-rd  eth0 198.18.3.30 fd00:18:3::30 with the MAC of xlbdp0 (redirect
              mode keeps the frame as the client sent it), the VIPs on lo

The switch's ports towards the hosts (cl, be, rd) aggregate what they
receive (GRO; on for the nat aggregate tests, off for the frame tests of
every mode) and cut what they send back into frames with full checksums
(TSO, GSO and checksum offload off), so both ends verify every segment's
checksum: an aggregate forwarded with a wrong partial checksum shows up as
TcpInCsumErrors at the receiving end.  The lab's counters prove that
aggregates crossed the program: bytes per packet above the MTU.  dsr and
redirect cannot forward aggregates in generic mode (docs/design.md,
"Aggregates"), so they are tested with frames.
"""
import contextlib
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, layout

import dplab as L

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bulk_peer.py")
NS = {"cl": "xlbbk-cl", "sw": "xlbbk-sw", "be": "xlbbk-be", "rd": "xlbbk-rd"}
CLIENT = {4: "198.18.0.30", 6: "fd00:18::30"}
BACKEND = {4: "198.18.1.30", 6: "fd00:18:1::30"}
REDIRECT_HOST = {4: "198.18.3.30", 6: "fd00:18:3::30"}
PORT = 8080
SIZE = 8 << 20              # bytes each way: several MiB, a fraction of a second
XDP_FLAGS_SKB_MODE = 1 << 1
MTU_FRAME = 1514


def sh(*cmd, ns=None, check=True):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=60)


def ip(ns, *args):
    return sh("ip", "-n", ns, *args)


def _host_link(host, sw_port, addr4, addr6, mac=None):
    """eth0 in NS[host] <-> sw_port in the switch, offloads as described above."""
    ns = NS[host]
    sh("ip", "link", "add", "eth0", "netns", ns, *(["address", mac] if mac else []),
       "type", "veth", "peer", "name", sw_port, "netns", NS["sw"])
    ip(ns, "addr", "add", addr4 + "/24", "dev", "eth0")
    ip(ns, "-6", "addr", "add", addr6 + "/64", "dev", "eth0", "nodad")
    ip(ns, "link", "set", "eth0", "up")
    sh("ethtool", "-K", "eth0", "tx", "off", ns=ns)
    sh("ethtool", "-K", sw_port, "gro", "on", "tso", "off", "gso", "off", "tx", "off",
       ns=NS["sw"])


def _bridge(name, *ports):
    ip(NS["sw"], "link", "add", name, "type", "bridge")
    ip(NS["sw"], "link", "set", name, "up")
    for port in ports:
        ip(NS["sw"], "link", "set", port, "master", name, "up")


def _build(lab):
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
        ip(ns, "link", "set", "lo", "up")
        sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=ns)
    for dev in ("xlbdp0p", "xlbdp1p", "xlbdp2p"):
        sh("ip", "link", "set", dev, "netns", NS["sw"])
    sh("ip", "addr", "add", "198.18.3.1/24", "dev", "xlbdp2")
    sh("ip", "-6", "addr", "add", "fd00:18:3::1/64", "dev", "xlbdp2", "nodad")
    # What the role sets for nat mode: packets the kernel forwards for the
    # program (unresolved neighbours) carry the NAT address as source.
    sh("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
       "net.ipv4.conf.all.accept_local=1")
    _host_link("cl", "cl", CLIENT[4], CLIENT[6])
    _host_link("be", "be", BACKEND[4], BACKEND[6])
    _host_link("rd", "rd", REDIRECT_HOST[4], REDIRECT_HOST[6], mac=L.MAC["xlbdp0"])
    _bridge("br1", "cl", "xlbdp0p")
    _bridge("br0", "be", "xlbdp1p")
    _bridge("br2", "rd", "xlbdp2p")
    ip(NS["cl"], "route", "add", "198.18.2.0/24", "via", "198.18.0.1")
    ip(NS["cl"], "-6", "route", "add", "fd00:18:2::/64", "via", "fd00:18::1")
    for host, gw4, gw6 in (("be", "198.18.1.1", "fd00:18:1::1"),
                           ("rd", "198.18.3.1", "fd00:18:3::1")):
        ip(NS[host], "route", "add", "default", "via", gw4)
        ip(NS[host], "-6", "route", "add", "default", "via", gw6)
        ip(NS[host], "addr", "add", L.VIP4 + "/32", "dev", "lo")
        ip(NS[host], "-6", "addr", "add", L.VIP6 + "/128", "dev", "lo", "nodad")


@contextlib.contextmanager
def bulk_network(obj_path):
    """The network above with the lab (dplab.Lab) in the middle, servers up;
    everything removed on the way out."""
    lab = L.Lab(tag="bulk%d" % os.getpid())
    servers = []
    try:
        lab.start(obj_path)
        _build(lab)
        for host in ("be", "rd"):
            proc = subprocess.Popen(["ip", "netns", "exec", NS[host], sys.executable, PEER,
                                     "serve", "::", str(PORT)], stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout.readline().strip() == "ready"
        yield lab
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        for dev in ("xlbdp0", "xlbdp1"):
            if dev in lab.ifindex:
                bpf.xdp_attach(lab.ifindex[dev], -1, XDP_FLAGS_SKB_MODE)
        for ns in NS.values():
            sh("ip", "netns", "del", ns, check=False)
        lab.stop()


@pytest.fixture(scope="module")
def net(obj_path):
    if os.geteuid() != 0:
        pytest.skip("the bulk tests create namespaces and attach XDP: run as root")
    with bulk_network(obj_path) as lab:
        yield lab


def csum_errors(ns):
    """Tcp InCsumErrors of a namespace (/proc/net/snmp: IPv4 and IPv6)."""
    lines = [line.split() for line in sh("cat", "/proc/net/snmp", ns=ns).stdout.splitlines()
             if line.startswith("Tcp:")]
    return int(dict(zip(lines[0], lines[1]))["InCsumErrors"])


def transfer(verb, vip):
    """["<bytes>", "<sha256>"] as the client (get) or the server (put) saw them,
    or the error."""
    res = sh(sys.executable, PEER, verb, vip, str(PORT), str(SIZE), ns=NS["cl"], check=False)
    return res.stdout.split() if res.returncode == 0 else ["failed", res.stderr[-300:]]


def expected():
    import hashlib
    import random
    return ["%d" % SIZE, hashlib.sha256(random.Random(SIZE).randbytes(SIZE)).hexdigest()]


def _configure(lab, mode, family):
    lab.reset()
    lab.flush_nexthops()
    if mode == "redirect":
        lab.configure(layout.MODE_REDIRECT, redirect_algo=layout.REDIRECT_ALGOS["flow_hash"],
                      redirect_count=1)
        lab.set_tx_port(0, "xlbdp2")
        return L.VIP4 if family == 4 else L.VIP6
    lab.configure(layout.MODE_NAT if mode == "nat" else layout.MODE_DSR)
    vip, dummy = L.setup_service(lab, family, "tcp", port=PORT, backends=[BACKEND[family]])
    return vip


def _upstream_gro(on):
    """GRO on the switch's host ports (aggregates towards the balancer)."""
    for port in ("cl", "be", "rd"):
        sh("ethtool", "-K", port, "gro", "on" if on else "off", ns=NS["sw"])


def _bulk(lab, mode, family, gro):
    """Download and upload SIZE bytes through the VIP with the program
    attached in generic mode; checks both ends.  Returns the lab's stats."""
    vip = _configure(lab, mode, family)
    _upstream_gro(gro)
    ifaces = ["xlbdp0"] if mode == "redirect" else ["xlbdp0", "xlbdp1"]
    for dev in ifaces:
        assert bpf.xdp_attach(lab.ifindex[dev], lab.prog_fd, XDP_FLAGS_SKB_MODE) == 0
    try:
        errors_before = {ns: csum_errors(NS[ns]) for ns in ("cl", "be", "rd")}
        start = time.monotonic()
        down = transfer("get", vip)
        up = transfer("put", vip)
        took = time.monotonic() - start
    finally:
        for dev in ifaces:
            bpf.xdp_attach(lab.ifindex[dev], -1, XDP_FLAGS_SKB_MODE)
    stats = lab.stats()
    assert down == expected(), "download through %s: %s, stats %s" % (mode, down, stats)
    assert up == expected(), "upload through %s: %s, stats %s" % (mode, up, stats)
    errors = {ns: csum_errors(NS[ns]) - errors_before[ns] for ns in errors_before}
    assert errors == {"cl": 0, "be": 0, "rd": 0}, stats
    assert took < 20, took
    return stats


@pytest.mark.parametrize("family", [4, 6])
def test_nat_bulk_with_gro_aggregates(net, family):
    """The switch aggregates both directions: the program translates the
    aggregates (partial checksums) and the kernel forwards and segments
    them; every segment arrives with a valid checksum."""
    lab = net
    stats = _bulk(lab, "nat", family, gro=True)
    # Aggregates crossed the program, in both directions: more bytes per
    # packet handed to the kernel than a frame of the MTU holds.
    assert stats["pass"] > 0 and stats["nat_reply"] > 0, stats
    assert lab.stat_bytes("pass") / stats["pass"] > MTU_FRAME, (stats, lab.stat_bytes("pass"))
    assert stats["fib_miss"] < 10, stats      # the first packets, until neighbours resolve


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mode", ["nat", "dsr", "redirect"])
def test_bulk_generic_frames(net, mode, family):
    """Frames of the MTU (nothing aggregates upstream), every mode."""
    lab = net
    stats = _bulk(lab, mode, family, gro=False)
    assert stats["redirect"] > 1000, stats
    assert lab.stat_bytes("redirect") / stats["redirect"] <= MTU_FRAME, stats
