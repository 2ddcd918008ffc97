/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * xdp_lb.h - the data plane's contract with its control plane.
 *
 * Every struct here is written or read by Python
 * (plugins/module_utils/xdp_lb/layout.py mirrors them field by field);
 * change both together and bump XDP_LB_ABI_VERSION.
 *
 * Conventions:
 *  - Addresses are 16 bytes.  IPv4 uses addr[0] (network byte order), the
 *    rest is zero.  IPv6 is the address as on the wire.
 *  - Ports are in network byte order unless the field says "host order".
 *  - Sizes are compile-time defines with defaults; the control plane passes
 *    -D overrides and reads the same values back to size its own tables.
 */
#ifndef XDP_LB_H
#define XDP_LB_H

#include <linux/types.h>

#define XDP_LB_ABI_VERSION 7

/* ---- sizes (override with -D at build time) ---------------------------- */
#ifndef XDP_LB_MAX_SERVICES
#define XDP_LB_MAX_SERVICES 32      /* services (VIP, port, proto) */
#endif
#ifndef XDP_LB_MAX_BACKENDS
#define XDP_LB_MAX_BACKENDS 4096    /* backend slots over all services; id 0 is "none" */
#endif
#if XDP_LB_MAX_BACKENDS > 65536
#error "XDP_LB_MAX_BACKENDS: backend ids are 16 bits in lb_ring (at most 65536)"
#endif
#ifndef XDP_LB_RING_SIZE
#define XDP_LB_RING_SIZE 65537      /* per-service lookup table, prime */
#endif
#ifndef XDP_LB_CT_SIZE
#define XDP_LB_CT_SIZE 65536        /* flows tracked (LRU), each direction and family */
#endif
/* lb_ct4_cache: XDP_LB_CT_CACHE_WAYS IPv4 flows per 64-byte line,
 * as many flows in all as the largest power of two <= XDP_LB_CT_SIZE. */
#define XDP_LB_CT_CACHE_WAYS 2
#define LB_FILL1_(x) ((x) | ((x) >> 1))
#define LB_FILL2_(x) (LB_FILL1_(x) | (LB_FILL1_(x) >> 2))
#define LB_FILL4_(x) (LB_FILL2_(x) | (LB_FILL2_(x) >> 4))
#define LB_FILL8_(x) (LB_FILL4_(x) | (LB_FILL4_(x) >> 8))
#define LB_FILL16_(x) (LB_FILL8_(x) | (LB_FILL8_(x) >> 16))
#define LB_POW2_FLOOR(x) ((LB_FILL16_((__u32)(x)) >> 1) + 1)
#define XDP_LB_CT_CACHE_LINES (LB_POW2_FLOOR(XDP_LB_CT_SIZE) / XDP_LB_CT_CACHE_WAYS)
#ifndef XDP_LB_CT_SYNC_MS
#define XDP_LB_CT_SYNC_MS 1000      /* a cached flow refreshes its lb_ct4 entry this often
				     * (rounded up to a power of two of clock units) */
#endif
#ifndef XDP_LB_MAX_REDIRECT
#define XDP_LB_MAX_REDIRECT 64      /* egress ports in redirect mode */
#endif
#ifndef XDP_LB_PORT_PROBES
#define XDP_LB_PORT_PROBES 8        /* NAT source ports tried per new flow */
#endif
#ifndef XDP_LB_NH_TTL_MS
#define XDP_LB_NH_TTL_MS 100        /* next-hop cache lifetime; 0 = no cache */
#endif
/* XDP_LB_HZ: the kernel's CONFIG_HZ, if known (the control plane passes it):
 * the cache and conntrack clock counts jiffies, else coarse nanoseconds. */
#ifndef XDP_LB_NH_REPLY_SLOTS
#define XDP_LB_NH_REPLY_SLOTS 256   /* next-hop cache slots for NAT replies (by client), per CPU */
#endif

#ifndef XDP_LB_VIP_FILTER_BITS
#define XDP_LB_VIP_FILTER_BITS 65536 /* lb_vip_filter bits, a power of two */
#endif
#define XDP_LB_VIP_FILTER_WORDS (XDP_LB_VIP_FILTER_BITS / 64)

/* lb_nexthop: backend ids first, then the reply slots. */
#define XDP_LB_NH_ENTRIES (XDP_LB_MAX_BACKENDS + XDP_LB_NH_REPLY_SLOTS)

/* Each service owns two rings (double buffer): the control plane fills the
 * inactive one, then flips lb_service.ring_slot with a single map update. */
#define XDP_LB_RINGS (XDP_LB_MAX_SERVICES * 2)

/* lb_ring packs XDP_LB_RING_LANES 16-bit backend ids into each 8-byte
 * array value (ABI 5; before, one __u32 id per entry, which the kernel
 * stores in an 8-byte slot: four times the memory). */
#define XDP_LB_RING_LANES 4
#define XDP_LB_RING_WORDS ((XDP_LB_RING_SIZE + XDP_LB_RING_LANES - 1) / XDP_LB_RING_LANES)

/* ---- enums -------------------------------------------------------------- */
enum xdp_lb_mode {
	XDP_LB_MODE_NONE = 0,       /* not configured yet: everything passes */
	XDP_LB_MODE_REDIRECT = 1,
	XDP_LB_MODE_NAT = 2,
	XDP_LB_MODE_DSR = 3,
};

enum xdp_lb_redirect_algo {
	XDP_LB_RR = 0,              /* per packet round robin (per CPU) */
	XDP_LB_FLOW_HASH = 1,       /* 5-tuple hash: a flow stays on one port */
};

enum xdp_lb_sched {
	XDP_LB_SCHED_IP_HASH = 0,     /* hash(src ip, dst ip) */
	XDP_LB_SCHED_FIVE_TUPLE = 1,  /* hash(5-tuple), ring filled by weight */
	XDP_LB_SCHED_MAGLEV = 2,      /* hash(5-tuple), Maglev-filled ring */
};

/* Index into lb_stats. */
enum xdp_lb_stat {
	XDP_LB_STAT_PASS = 0,         /* not ours, or handed to the kernel */
	XDP_LB_STAT_DROP = 1,         /* dropped by rule (see C source) */
	XDP_LB_STAT_REDIRECT = 2,     /* XDP_REDIRECT to another interface */
	XDP_LB_STAT_TX = 3,           /* XDP_TX back out of the same interface */
	XDP_LB_STAT_NO_BACKEND = 4,   /* service matched, no backend (dropped) */
	XDP_LB_STAT_CT_FULL = 5,      /* no free NAT port for a new flow (dropped) */
	XDP_LB_STAT_FIB_MISS = 6,     /* next hop unresolved: passed to the kernel */
	XDP_LB_STAT_NAT_REPLY = 7,    /* reverse-translated replies (also counted as tx/redirect) */
	XDP_LB_STAT_MAX = 8,
};

/* lb_backend.flags */
#define XDP_LB_BACKEND_ACTIVE 0x1   /* cleared when the backend is removed */

/* lb_config.flags */
#define XDP_LB_CFG_SNAT_V4 0x1      /* snat_v4 is set */
#define XDP_LB_CFG_SNAT_V6 0x2      /* snat_v6 is set */

/* ---- map values and keys ------------------------------------------------- */

/* lb_config[0]: instance-wide settings. */
struct lb_config {
	__u32 mode;                 /* enum xdp_lb_mode */
	__u32 redirect_algo;        /* enum xdp_lb_redirect_algo */
	__u32 redirect_count;       /* lb_tx_ports entries 0..n-1 in use */
	__u32 flags;                /* XDP_LB_CFG_* */
	__u16 port_min;             /* NAT source port pool, host order */
	__u16 port_max;             /* inclusive, host order */
	__u32 snat_v4;              /* NAT source address towards backends */
	__u32 snat_v6[4];
	__u32 flow_idle_timeout;    /* seconds: a UDP flow idle longer starts anew
				     * (see lb_ct_entry); 0 = never */
};

/* lb_services key. */
struct lb_service_key {
	__u32 vip[4];
	__u16 port;                 /* network order */
	__u8 proto;                 /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;                /* AF_INET / AF_INET6 */
};

struct lb_service {
	__u32 id;                   /* 0..XDP_LB_MAX_SERVICES-1 */
	__u32 ring_slot;            /* 0 or 1: which of the two rings is live */
	__u32 sched;                /* enum xdp_lb_sched */
	__u32 flags;                /* reserved, 0 */
};

/* lb_ring[(id * 2 + ring_slot) * XDP_LB_RING_WORDS + pos / XDP_LB_RING_LANES]
 * .id[pos % XDP_LB_RING_LANES], pos = hash % XDP_LB_RING_SIZE, holds a
 * backend id (0: no backend).  The lanes after a ring's last position are
 * zero. */
struct lb_ring_word {
	__u16 id[XDP_LB_RING_LANES];
};

/* lb_backends[id], id 1..XDP_LB_MAX_BACKENDS-1.  ``service`` (ABI 6) is
 * the key its service has in lb_services, written with the backend: a
 * conntrack hit compares the packet with it instead of looking the service
 * up (see known_flow()).  All zero (a backend written by an older control
 * plane) matches no packet: those flows take the lb_services lookup. */
struct lb_backend {
	__u32 addr[4];
	__u16 port;                 /* network order; 0 = the service port (nat only) */
	__u8 family;
	__u8 flags;                 /* XDP_LB_BACKEND_* */
	__u32 service_id;
	struct lb_service_key service;  /* lb_services key of service_id */
};

/* A flow as seen on the wire: the key of the IPv6 connection tables
 * (lb_ct6, lb_nat6), and the program's parsed flow of either family. */
struct lb_flow {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;                /* network order */
	__u16 dport;                /* network order */
	__u8 proto;
	__u8 family;
	__u16 pad;                  /* must be zero */
};

/* An IPv4 flow: the key of lb_ct4 and lb_nat4 (ABI 4).  16 bytes instead
 * of lb_flow's 40: less to hash and compare on every conntrack lookup. */
struct lb_flow4 {
	__u32 src;
	__u32 dst;
	__u16 sport;                /* network order */
	__u16 dport;                /* network order */
	__u8 proto;
	__u8 pad[3];                /* must be zero */
};

/* lb_vip_filter[bit / 64] bit (bit % 64), bit = the VIP filter hash of an
 * address (see vip_filter_bit() in the C source, flowhash.vip_filter_bit()
 * in Python): set for every service's VIP.  A clear bit means "no service
 * has this destination address": the packet passes before any conntrack
 * or service lookup.  A set bit only means "maybe" (other addresses share
 * it).  The control plane sets a VIP's bit before it adds the service and
 * clears it after it removed the last service of that address. */

/* lb_ct4_cache[hash % XDP_LB_CT_CACHE_LINES]: copies of lb_ct4 entries,
 * so that a packet of an established IPv4 flow reads one cache line instead
 * of a hash bucket and an LRU element (two or three).  lb_ct4 stays the
 * table of record: the data plane writes both, a way is filled from lb_ct4
 * on a miss, and a cached flow looks its lb_ct4 entry up again (marking it
 * used for the LRU, refreshing its last_seen, writing it back if the LRU
 * evicted it) once every XDP_LB_CT_SYNC_MS, so lb_ct4's last_seen lags by
 * less than that.  A way is valid when ``tag`` is not zero and its low 32
 * bits are the flow's cache hash: ``tag`` (hash, backend id, NAT port) is
 * written last, in one 8-byte store, after a zero, and a reader uses the
 * tag it checked, so a way half written by another CPU is a miss, never
 * another flow's backend.  Zeroing a line is always safe. */
struct lb_ct_cache_way {
	struct lb_flow4 flow;
	__u64 tag;                  /* hash | backend_id << 32 | nat_port << 48 (network order) */
	__u64 last_seen;            /* as lb_ct_entry.last_seen */
};

struct lb_ct_cache_line {
	struct lb_ct_cache_way way[XDP_LB_CT_CACHE_WAYS];
};

/* lb_ct4 / lb_ct6: client flow (client -> VIP) -> chosen backend (nat and dsr).
 * A packet that finds an entry is a new flow all the same (scheduled
 * afresh, honouring weights and drain) when it is a TCP SYN without ACK,
 * or, for UDP, when the entry was last seen more than
 * lb_config.flow_idle_timeout seconds ago; anything else keeps the
 * backend.  Fields appended after ABI 2's three keep their offsets: the
 * control plane migrates older entries (docs/design.md). */
struct lb_ct_entry {
	__u32 backend_id;
	__u16 nat_port;             /* network order, nat only */
	__u16 pad;
	__u64 last_seen;            /* last packet, on the caches' clock (jiffies or
				     * coarse ns, see XDP_LB_HZ) */
};

/* lb_nat4 / lb_nat6: reply flow (backend -> snat address:nat_port) -> client. */
struct lb_nat_entry {
	__u32 client[4];
	__u32 vip[4];
	__u16 client_port;          /* network order */
	__u16 vip_port;             /* network order */
	__u32 backend_id;
};

/* lb_nexthop[slot] (per CPU): a bpf_fib_lookup result the data plane keeps
 * for XDP_LB_NH_TTL_MS.  Slot = backend id (nat and dsr, forward), or
 * XDP_LB_MAX_BACKENDS + hash(client) % XDP_LB_NH_REPLY_SLOTS (nat replies).
 * Written by the data plane only; the control plane may zero entries (an
 * all-zero entry is empty) to make the next packet look the route up. */
struct lb_nexthop {
	__u32 daddr[4];             /* destination looked up (backend or client) */
	__u32 saddr[4];             /* source looked up; all zero for dsr (not compared) */
	__u64 expires;              /* deadline on the caches' clock (jiffies or coarse ns); 0 = empty */
	__u32 in_ifindex;           /* ingress interface the lookup was made for */
	__u32 out_ifindex;          /* egress interface */
	__u16 mtu;                  /* longest L3 packet known to fit (host order) */
	__u8 family;
	__u8 pad;
	__u8 dmac[6];
	__u8 smac[6];
};

/* lb_stats[enum xdp_lb_stat], lb_backend_stats[backend id],
 * lb_port_stats[redirect slot]: per CPU, summed by the reader. */
struct lb_counter {
	__u64 packets;
	__u64 bytes;
};

#endif /* XDP_LB_H */
