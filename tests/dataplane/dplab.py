"""A network namespace for running the data plane with BPF_PROG_TEST_RUN.

The process itself moves into the namespace (setns) so that the ingress
ifindex given to the test run, bpf_fib_lookup's routes and neighbours and
the DEVMAP's ifindexes all refer to the namespace's devices.  Used by the
tests in this directory and by benchmarks/dataplane/run.py.

Topology (one namespace, ``xlbdp-<tag>``; every address in 198.18.0.0/15
or fd00:18::/32):

    xlbdp0  198.18.0.1/24  fd00:18::1/64    "client side"
            neighbours: clients .10-.17 (::10-::17), local backend .20 (::20)
    xlbdp1  198.18.1.1/24  fd00:18:1::1/64  "backend side", also the SNAT address
            neighbours: backends .10-.13 (::10-::13); .99 (::99) has none
    xlbdp2  no address                      extra port for redirect mode
    xlbdp0p/xlbdp1p/xlbdp2p                 the veth peers (up, no address)
"""
import ctypes as ct
import os
import socket
import struct
import tempfile

from pyroute2 import netns as pr_netns

from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb import bpf, flowhash, layout, maps
from ansible_collections.netfleet.xdp_lb.plugins.module_utils.xdp_lb.command import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "files")

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}

# Interface MACs (fixed so expected frames can be written down).
MAC = {"xlbdp0": "02:18:00:00:00:01", "xlbdp1": "02:18:00:00:01:01", "xlbdp2": "02:18:00:00:02:01"}
LB4 = {"xlbdp0": "198.18.0.1", "xlbdp1": "198.18.1.1"}
LB6 = {"xlbdp0": "fd00:18::1", "xlbdp1": "fd00:18:1::1"}
SNAT4, SNAT6 = LB4["xlbdp1"], LB6["xlbdp1"]
VIP4, VIP6 = "198.18.2.1", "fd00:18:2::1"


def _host_mac(side, host):
    return "02:00:00:00:%02x:%02x" % (side, host)


def _neighbours():
    """address -> (device, MAC) of every PERMANENT neighbour."""
    out = {}
    for host in list(range(10, 18)) + [20]:
        out["198.18.0.%d" % host] = ("xlbdp0", _host_mac(0, host))
        out["fd00:18::%d" % host] = ("xlbdp0", _host_mac(0, host))
    for host in range(10, 14):
        out["198.18.1.%d" % host] = ("xlbdp1", _host_mac(1, host))
        out["fd00:18:1::%d" % host] = ("xlbdp1", _host_mac(1, host))
    return out


NEIGH = _neighbours()
CLIENT4, CLIENT6 = "198.18.0.10", "fd00:18::10"
BACKENDS4 = ["198.18.1.10", "198.18.1.11", "198.18.1.12", "198.18.1.13"]
BACKENDS6 = ["fd00:18:1::10", "fd00:18:1::11", "fd00:18:1::12", "fd00:18:1::13"]
LOCAL_BACKEND4, LOCAL_BACKEND6 = "198.18.0.20", "fd00:18::20"   # same link as clients
NO_NEIGH4, NO_NEIGH6 = "198.18.1.99", "fd00:18:1::99"             # on link, unresolved
NO_ROUTE4, NO_ROUTE6 = "198.18.7.7", "fd00:18:7::7"               # no route at all


def _setup_batch():
    lines = []
    for dev in ("xlbdp0", "xlbdp1", "xlbdp2"):
        lines.append("link add %s address %s type veth peer name %sp" % (dev, MAC[dev], dev))
    for dev in ("lo", "xlbdp0", "xlbdp0p", "xlbdp1", "xlbdp1p", "xlbdp2", "xlbdp2p"):
        lines.append("link set dev %s up" % dev)
    for dev in ("xlbdp0", "xlbdp1"):
        lines.append("address add %s/24 dev %s" % (LB4[dev], dev))
        lines.append("address add %s/64 dev %s nodad" % (LB6[dev], dev))
    for addr, (dev, mac) in sorted(NEIGH.items()):
        lines.append("neigh replace %s lladdr %s dev %s nud permanent" % (addr, mac, dev))
    return "\n".join(lines) + "\n"


class Lab:
    """Namespace, private bpffs and the loaded data plane; ``stop()`` undoes all."""

    def __init__(self, tag=None):
        self.tag = tag or str(os.getpid())
        self.ns = "xlbdp-%s" % self.tag
        self.pin_root = "/sys/fs/bpf/xlbdp-%s" % self.tag
        self._orig_ns = None
        self._ns_made = False
        self._mounted = False
        self.obj = None
        self.maps = {}
        self.ifindex = {}
        self._rings = {}            # (service id, slot) -> ids last written
        self._ring_u32 = False      # lb_ring of ABI 4 and before (see load)
        self._service_keys = {}     # service id -> LbServiceKey (add_service)
        self._backend_sids = {}     # backend id -> service id (set_backend)

    # ---- lifecycle ----------------------------------------------------------
    def start(self, obj_path):
        try:
            self._make_netns()
            self._enter_netns()
            self._mount_bpffs()
            self.load(obj_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_netns(self):
        run(["ip", "netns", "add", self.ns])
        self._ns_made = True
        with tempfile.NamedTemporaryFile("w", prefix="xlbdp-", suffix=".ip") as f:
            f.write(_setup_batch())
            f.flush()
            run(["ip", "-n", self.ns, "-batch", f.name])
        run(["ip", "netns", "exec", self.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv6.conf.all.forwarding=1"])

    def _enter_netns(self):
        self._orig_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        pr_netns.setns(self.ns, flags=0)
        self.ifindex = {dev: socket.if_nametoindex(dev) for dev in
                        ("xlbdp0", "xlbdp0p", "xlbdp1", "xlbdp1p", "xlbdp2", "xlbdp2p")}

    def _mount_bpffs(self):
        os.makedirs(self.pin_root, exist_ok=True)
        run(["mount", "-t", "bpf", "bpf", self.pin_root])
        self._mounted = True

    def load(self, obj_path):
        """Load ``obj_path`` sharing the pinned maps (a second call = an upgrade)."""
        new = bpf.LoadedObject(obj_path, self.pin_root)
        self.close_maps()
        if self.obj:
            self.obj.close()
        self.obj = new
        self.prog_fd = new.prog_fd
        have = set(new.map_names())
        for name, (ktype, vtype, percpu) in layout.MAPS.items():
            if name in have:        # an older revision's object (benchmark baseline) lacks some
                self.maps[name] = bpf.Map(new.map_fd(name), ktype, vtype, percpu=percpu, owned=False)
        # up to ABI 4 (benchmark baseline): one __u32 backend id per lb_ring entry
        self._ring_u32 = "lb_ring" in have and int(bpf.fd_info(new.map_fd("lb_ring"))["value_size"]) == 4
        if self._ring_u32:
            self.maps["lb_ring"] = bpf.Map(new.map_fd("lb_ring"), layout.U32, layout.U32, owned=False)
        for name, (v4, v6) in layout.FLOW_TABLES.items():     # "lb_ct", "lb_nat_rev": both families
            if v4 in have:
                self.maps[name] = maps.FlowTable(self.maps[v4], self.maps[v6],
                                                 self.maps.get("lb_ct4_cache") if name == "lb_ct" else None)
            elif name in have:      # up to ABI 3: one table, LbFlow keys (values: a prefix of ours)
                self.maps[name] = bpf.Map(new.map_fd(name), layout.LbFlow, layout.MAPS[v4][1],
                                          owned=False)
        return new

    def close_maps(self):
        self.maps = {}

    def stop(self):
        errors = []
        self.close_maps()
        if self.obj:
            self.obj.close()
            self.obj = None
        if self._orig_ns is not None:
            try:
                pr_netns.setns(self._orig_ns)
            except OSError as exc:
                errors.append(exc)
            os.close(self._orig_ns)
            self._orig_ns = None
        if self._ns_made:
            run(["ip", "netns", "del", self.ns], check=False)
            self._ns_made = False
        if self._mounted:
            run(["umount", self.pin_root], check=False)
            self._mounted = False
        if os.path.isdir(self.pin_root):
            try:
                os.rmdir(self.pin_root)
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # ---- running packets -----------------------------------------------------
    def run(self, frame, dev="xlbdp0", repeat=1):
        """(action, output bytes) of one test run with ingress ``dev``."""
        retval, out, dummy = bpf.test_run(self.prog_fd, bytes(frame),
                                          ingress_ifindex=self.ifindex[dev], repeat=repeat)
        return retval, out

    # ---- map writers (deliberately small; the control plane has its own) -----
    def configure(self, mode, redirect_algo=0, redirect_count=0, snat=True,
                  port_min=40000, port_max=40999, flow_idle_timeout=0):
        cfg = layout.LbConfig(mode=mode, redirect_algo=redirect_algo,
                              redirect_count=redirect_count, port_min=port_min,
                              port_max=port_max, flow_idle_timeout=flow_idle_timeout)
        if snat:
            cfg.snat_v4 = layout.pack_addr(SNAT4)[0][0]
            cfg.snat_v6 = layout.pack_addr(SNAT6)[0]
            cfg.flags = layout.CFG_SNAT_V4 | layout.CFG_SNAT_V6
        self.maps["lb_config"].update(layout.U32(0), cfg)
        return cfg

    def add_service(self, vip, port, proto, sid, sched=layout.SCHEDULERS["five_tuple"],
                    ring_slot=0):
        addr, family = layout.pack_addr(vip)
        key = layout.LbServiceKey(vip=addr, port=layout.htons(port),
                                  proto=layout.PROTOCOLS[proto], family=family)
        self.vip_filter_add(vip)
        # as the control plane does: the backends of service ``sid`` carry its key
        self._service_keys[sid] = key
        for bid, bsid in sorted(self._backend_sids.items()):
            if bsid == sid:
                be = self.maps["lb_backends"].lookup(layout.U32(bid))
                be.service = key
                self.maps["lb_backends"].update(layout.U32(bid), be)
        self.maps["lb_services"].update(key, layout.LbService(id=sid, ring_slot=ring_slot,
                                                              sched=sched))
        return key

    def vip_filter_add(self, vip):
        """Set ``vip``'s bit in lb_vip_filter (as the control plane does before
        it adds a service): without it the program passes the VIP's packets."""
        for word, bits in maps.vip_filter_words([vip]).items():
            m = self.maps.get("lb_vip_filter")
            if m is None:           # an object from before the filter
                return
            m.update(layout.U32(word), ct.c_uint64(m.lookup(layout.U32(word)).value | bits))

    def set_backend(self, bid, addr, sid, port=0, active=True):
        """Backend ``bid`` of service ``sid``, with that service's key if
        add_service wrote it already (add_service fills it in later)."""
        packed, family = layout.pack_addr(addr)
        self._backend_sids[bid] = sid
        self.maps["lb_backends"].update(layout.U32(bid), layout.LbBackend(
            addr=packed, port=layout.htons(port), family=family,
            flags=layout.BACKEND_ACTIVE if active else 0, service_id=sid,
            service=self._service_keys.get(sid, layout.LbServiceKey())))

    def fill_ring(self, sid, ids, slot=0):
        """Ring position p -> ids[p % len(ids)] (an empty list clears the ring).

        Rings are 65537 entries: an unchanged ring is not written again."""
        if self._rings.get((sid, slot), ()) == tuple(ids):
            return
        size = layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
        base = layout.ring_index(sid, slot, 0, size)
        if ids:
            vals = (ids * (size // len(ids) + 1))[:size]
        else:
            vals = [0] * size
        if self._ring_u32:
            base = (sid * 2 + slot) * size
            self.maps["lb_ring"].update_batch(range(base, base + size), vals)
        else:
            words = layout.ring_pack(vals)
            self.maps["lb_ring"].update_batch(range(base, base + len(words)), words)
        self._rings[(sid, slot)] = tuple(ids)

    def ring_at(self, sid, position, slot=0):
        size = layout.DEFAULT_SIZES["XDP_LB_RING_SIZE"]
        index = layout.ring_index(sid, slot, position, size)
        if self._ring_u32:
            return self.maps["lb_ring"].lookup(layout.U32((sid * 2 + slot) * size + position)).value
        return self.maps["lb_ring"].lookup(layout.U32(index)).id[position % layout.RING_LANES]

    def set_tx_port(self, slot, dev):
        self.maps["lb_tx_ports"].update(layout.U32(slot), layout.U32(self.ifindex[dev]))

    def reset(self, backends=range(0, 64)):
        """Empty state between tests: config, services, backends, flows, counters.

        Rings keep their content (rewriting them is the slow part): without
        a service they are unreachable, and setup_service/fill_ring write
        what a test needs."""
        self.maps["lb_config"].update(layout.U32(0), layout.LbConfig())
        self._service_keys = {}
        self._backend_sids = {}
        for name in ("lb_services", "lb_ct", "lb_nat_rev"):
            m = self.maps[name]
            for key in m.keys():
                m.delete(key)
        for bid in backends:
            self.maps["lb_backends"].update(layout.U32(bid), layout.LbBackend())
        if "lb_ct4_cache" in self.maps:
            self._zero("lb_ct4_cache", self.ct_cache_lines(), percpu=False)
        if "lb_vip_filter" in self.maps:
            self._zero("lb_vip_filter", layout.DEFAULT_SIZES["XDP_LB_VIP_FILTER_BITS"] // 64, percpu=False)
        zero = [layout.LbCounter()] * bpf.possible_cpus()
        for i in range(len(layout.STATS)):
            self.maps["lb_stats"].update(layout.U32(i), zero)
        for bid in backends:
            self.maps["lb_be_stats"].update(layout.U32(bid), zero)
        for slot in range(8):
            self.maps["lb_port_stats"].update(layout.U32(slot), zero)
            self.maps["lb_tx_ports"].delete(layout.U32(slot))
        self.maps["lb_rr"].update(layout.U32(0), [layout.U32(0)] * bpf.possible_cpus())
        self.flush_nexthops()

    def _zero(self, name, count, percpu=True):
        vtype = layout.MAPS[name][1]
        self.maps[name].update_batch([layout.U32(i) for i in range(count)],
                                     [vtype()] * (count * (bpf.possible_cpus() if percpu else 1)))

    def ct_cache_lines(self):
        return int(bpf.fd_info(self.maps["lb_ct4_cache"].fd)["max_entries"])

    def flush_nexthops(self):
        """Empty the next-hop cache (every slot, every CPU), as the control
        plane may: tests change neighbours and backends between cases."""
        self._zero("lb_nexthop", layout.DEFAULT_SIZES["XDP_LB_MAX_BACKENDS"] +
                   layout.DEFAULT_SIZES["XDP_LB_NH_REPLY_SLOTS"])

    # ---- readers ----------------------------------------------------------------
    def _counter(self, name, index):
        per_cpu = self.maps[name].lookup(layout.U32(index))
        return (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))

    def stats(self):
        """{stat name: packets} summed over CPUs."""
        return {name: self._counter("lb_stats", i)[0] for i, name in enumerate(layout.STATS)}

    def stat_bytes(self, name):
        return self._counter("lb_stats", layout.STATS.index(name))[1]

    def backend_packets(self, bid):
        return self._counter("lb_be_stats", bid)[0]

    def port_packets(self, slot):
        return self._counter("lb_port_stats", slot)[0]

    def ct_entry(self, flow):
        return self.maps["lb_ct"].lookup(flow)

    def map_memlock(self):
        """{map name: memlock bytes} of the pinned maps (fdinfo)."""
        out = {}
        for name in layout.MAPS:
            fd = bpf.obj_get(os.path.join(self.pin_root, name))
            try:
                out[name] = int(bpf.fd_info(fd)["memlock"])
            finally:
                os.close(fd)
        return out


def mac_bytes(mac):
    """'02:00:00:00:01:0a' -> the 6 bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def ct_cache_way_valid(way):
    """Does this lb_ct4_cache way hold a flow?  A nonzero tag whose low 32
    bits are its flow's cache hash (files/xdp_lb.h)."""
    return way.tag != 0 and way.tag & 0xFFFFFFFF == flowhash.ct_cache_hash(way.flow)


def flow_key(src, dst, sport, dport, proto):
    """layout.LbFlow for a flow as seen on the wire."""
    s, family = layout.pack_addr(src)
    d, dummy = layout.pack_addr(dst)
    return layout.LbFlow(src=s, dst=d, sport=layout.htons(sport), dport=layout.htons(dport),
                         proto=layout.PROTOCOLS[proto] if isinstance(proto, str) else proto,
                         family=family)


# ---- the data plane's hash: the engine's one copy (flowhash.py) --------------------
SEED_FLOW, SEED_ADDR, SEED_PORT = flowhash.SEED_FLOW, flowhash.SEED_ADDR, flowhash.SEED_PORT
hash_ip_pair = flowhash.hash_ip_pair
hash_flow = flowhash.hash_flow
_addr16 = flowhash._addr16


# ---- checksums, written independently of the C code -------------------------------
def ones_sum(data, start=0):
    """One's complement sum of 16-bit big-endian words (end-around carry)."""
    if len(data) % 2:
        data += b"\0"
    s = start + sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo_header(src, dst, proto, length):
    a, b = _addr16(src), _addr16(dst)
    if ":" in src:
        return a + b + struct.pack("!IxxxB", length, proto)
    return a[:4] + b[:4] + struct.pack("!xBH", proto, length)


def setup_service(lab, family, proto, port=80, backends=None, sid=0, backend_port=0,
                  sched="five_tuple", first_id=None):
    """A service on the VIP of ``family`` with ``backends`` (addresses; default
    the first backend), ring filled round robin.  Returns (vip, backend ids)."""
    vip = VIP4 if family == 4 else VIP6
    if backends is None:
        backends = [(BACKENDS4 if family == 4 else BACKENDS6)[0]]
    first = first_id if first_id is not None else sid * 8 + 1
    ids = []
    for i, addr in enumerate(backends):
        lab.set_backend(first + i, addr, sid, port=backend_port)
        ids.append(first + i)
    lab.add_service(vip, port, proto, sid, sched=layout.SCHEDULERS[sched])
    lab.fill_ring(sid, ids)
    return vip, ids
