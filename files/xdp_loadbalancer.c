// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * xdp_loadbalancer.c - netfleet.xdp_lb data plane.
 *
 * One XDP program, xdp_lb(), in three modes (lb_config.mode):
 *
 *   redirect  frames go unmodified to one of the lb_tx_ports (round robin
 *             per CPU, or a 5-tuple hash so a flow stays on one port);
 *   nat       client -> VIP:port becomes snat:port -> backend:bport, and the
 *             backend's replies are translated back (lb_ct4/6, lb_nat4/6);
 *   dsr       client -> VIP:port keeps its addresses and goes to the
 *             backend's MAC; the backend answers the client directly.
 *
 * The entry function reads top to bottom: parse, decide, act.  Everything
 * the control plane writes is described in xdp_lb.h (mirrored by
 * plugins/module_utils/xdp_lb/layout.py); docs/design.md is the contract.
 *
 * Rules that keep the program safe to put in front of a host:
 *  - Nothing that is not plain Ethernet + IPv4/IPv6 (no options, fragments
 *    or extension headers) + TCP/UDP, with TTL > 1, is ever rewritten: it
 *    goes to the kernel untouched (XDP_PASS).
 *  - A packet is only modified once the next hop is known (or, for nat,
 *    once the kernel is to resolve it): a failed lookup leaves it intact.
 *  - A GRO/GSO aggregate (generic mode, see is_aggregate()) keeps its
 *    partial checksum valid; nat hands it to the kernel to forward.
 *  - Build with -DXDP_LB_DEBUG for bpf_printk tracing; without it the hot
 *    path prints nothing.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdp_lb.h"

/* Address families as the kernel numbers them (include/linux/socket.h is
 * not a UAPI header, so they are spelled out here). */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define ETH_P_8021Q_ 0x8100         /* VLAN tags: passed (see parse_ethhdr) */
#define ETH_P_8021AD_ 0x88A8

#define IP_MF_ 0x2000               /* IPv4 "more fragments" */
#define IP_OFFSET_ 0x1FFF           /* IPv4 fragment offset */
#define IPV4_HDR_LEN 20             /* ihl == 5: the only IPv4 header we rewrite */
#define IPV6_HDR_LEN 40
#define IPV6_FLOWINFO_MASK_ bpf_htonl(0x0FFFFFFF)
#define LB_MIN_TTL 1                /* TTL/hop limit <= this: the kernel's business */

#define ADDR_WORDS 4                /* __u32 words in an address (IPv6) */

/* Hash constants (odd multipliers with good avalanche, and seeds that keep
 * the ring hash, the port hash and the redirect hash independent). */
#define LB_HASH_MUL1 0x9E3779B1u
#define LB_HASH_MUL2 0x7FEB352Du
#define LB_HASH_MUL3 0x846CA68Bu
#define LB_HASH_ADD 0xE6546B64u
#define LB_SEED_FLOW 0x2C1B3C6Du    /* 5-tuple: five_tuple/maglev rings, redirect */
#define LB_SEED_ADDR 0x297A2D39u    /* src+dst address: ip_hash rings */
#define LB_SEED_PORT 0x51ED270Bu    /* NAT source port probing */
#define LB_SEED_NH 0x6A09E667u      /* next-hop cache slot of a NAT reply */
#define LB_SEED_VIP 0x3C6EF372u     /* VIP filter bit of a destination address */
#define LB_SEED_CT 0xBB67AE85u      /* lb_ct4_cache line and tag of an IPv4 flow */

#ifdef XDP_LB_DEBUG
#define lb_debug(fmt, ...) bpf_printk("xdp_lb: " fmt, ##__VA_ARGS__)
#else
#define lb_debug(fmt, ...) do { } while (0)
#endif

/* ---- maps ----------------------------------------------------------------
 * All pinned by name: a new program (same object, new build) shares them,
 * so an upgrade keeps conntrack and the control plane's tables. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, XDP_LB_MAX_SERVICES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_ring_word);
	__uint(max_entries, XDP_LB_RINGS * XDP_LB_RING_WORDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, XDP_LB_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* Connection tables, one per family: an IPv4 key is 16 bytes (lb_flow4),
 * an IPv6 one 40 (lb_flow), and the hit path hashes and compares the key
 * (ABI 3 had one table with 40-byte keys for both). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow4);
	__type(value, struct lb_ct_entry);
	__uint(max_entries, XDP_LB_CT_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow);
	__type(value, struct lb_ct_entry);
	__uint(max_entries, XDP_LB_CT_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow4);
	__type(value, struct lb_nat_entry);
	__uint(max_entries, XDP_LB_CT_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nat4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow);
	__type(value, struct lb_nat_entry);
	__uint(max_entries, XDP_LB_CT_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nat6 SEC(".maps");

/* The IPv4 conntrack cache (see xdp_lb.h, lb_ct4_cache): a plain array, so
 * a lookup is an index and one cache line.  Mmapable, so that its values
 * start on a page and every line is one line of the CPU's cache. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_ct_cache_line);
	__uint(max_entries, XDP_LB_CT_CACHE_LINES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct4_cache SEC(".maps");

/* VIP filter (see xdp_lb.h, lb_vip_filter): an array, so the lookup is
 * inlined and costs one load, where a hash lookup hashes and compares. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, XDP_LB_VIP_FILTER_WORDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_vip_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counter);
	__uint(max_entries, XDP_LB_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counter);
	__uint(max_entries, XDP_LB_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_be_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counter);
	__uint(max_entries, XDP_LB_MAX_REDIRECT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_port_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XDP_LB_MAX_REDIRECT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rr SEC(".maps");

/* Next-hop cache (see next_hop()): per CPU, so entries are written without
 * locks and each CPU refreshes its own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_nexthop);
	__uint(max_entries, XDP_LB_NH_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nexthop SEC(".maps");

/* ---- per-packet state ------------------------------------------------------ */

/* TCP and UDP both start with the two ports; the checksum sits at a
 * different offset in each. */
struct l4_ports {
	__be16 source;
	__be16 dest;
};

struct lb_packet {
	struct lb_flow flow;        /* as parsed: addresses, ports, proto, family */
	struct lb_flow4 flow4;      /* IPv4: the same flow as lb_ct4's key */
	struct ethhdr *eth;
	struct iphdr *ip4;          /* exactly one of ip4/ip6 is set */
	struct ipv6hdr *ip6;
	struct l4_ports *ports;     /* NULL unless TCP/UDP */
	__sum16 *l4_check;          /* TCP/UDP checksum field */
	__u32 len;                  /* frame bytes, for the counters */
	__u16 l3_len;               /* IPv4 tot_len / IPv6 header + payload, host order */
	__u8 partial;               /* an aggregate: l4_check holds the pseudo-header
				     * sum (CHECKSUM_PARTIAL), see is_aggregate() */
	__u32 ingress;              /* ctx->ingress_ifindex (three dependent loads): read
				     * once by next_hop() */
	__u64 now;                  /* the caches' clock, 0 until cache_clock() reads it */
	__u8 tcp_syn;               /* TCP SYN without ACK: a connection starts */
};

/* ---- parsing (xdp-tutorial style: cursor in, next protocol out) ---------- */

struct hdr_cursor {
	void *pos;
};

/* Returns the EtherType (network order), or -1 if the header is cut short.
 * VLAN tags are returned as such and passed by the caller: the program never
 * rewrites a tagged frame (it would have to know the tag's meaning). */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end,
					struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;

	/* The verifier only lets us read eth->h_proto after this check. */
	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	*ethhdr = eth;
	return eth->h_proto;
}

/* IPv4 without options, not a fragment, TTL > 1, total length inside the
 * frame.  Returns the L4 protocol, or -1 for anything the kernel should
 * see as is. */
static __always_inline int parse_iphdr(struct hdr_cursor *nh, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;
	__u16 tot_len;

	if ((void *)(iph + 1) > data_end)
		return -1;
	/* Options shift the L4 header by a variable amount; they are rare
	 * enough on service traffic to leave to the kernel, and keeping the
	 * header fixed-size keeps every later offset a constant for the
	 * verifier. */
	if (iph->version != 4 || iph->ihl != IPV4_HDR_LEN / 4)
		return -1;
	if (iph->frag_off & bpf_htons(IP_MF_ | IP_OFFSET_))
		return -1;
	if (iph->ttl <= LB_MIN_TTL)
		return -1;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < IPV4_HDR_LEN || (void *)iph + tot_len > data_end)
		return -1;
	nh->pos = iph + 1;
	*iphdr = iph;
	return iph->protocol;
}

/* IPv6 without extension headers (nexthdr must be TCP or UDP), hop limit
 * > 1, payload inside the frame.  Returns the L4 protocol or -1.  Telling
 * an extension header from an upper-layer protocol needs a list; requiring
 * TCP/UDP also keeps ICMPv6 (neighbour discovery) with the host in
 * redirect mode, where IPv4 of any protocol is sent on. */
static __always_inline int parse_ip6hdr(struct hdr_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	if (ip6h->version != 6 || ip6h->hop_limit <= LB_MIN_TTL)
		return -1;
	if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP)
		return -1;
	if ((void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len) > data_end)
		return -1;
	nh->pos = ip6h + 1;
	*ip6hdr = ip6h;
	return ip6h->nexthdr;
}

/* TCP/UDP: the ports and a pointer to the checksum.  The whole fixed
 * header must be in the frame (the checksum is its last field we touch),
 * and inside the IP length (l4_room). */
static __always_inline int parse_l4(struct hdr_cursor *nh, void *data_end, __u8 proto,
				    __u32 l4_room, struct lb_packet *pkt)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcph = nh->pos;

		if ((void *)(tcph + 1) > data_end || l4_room < sizeof(*tcph))
			return -1;
		pkt->l4_check = &tcph->check;
		pkt->tcp_syn = tcph->syn && !tcph->ack;
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *udph = nh->pos;

		if ((void *)(udph + 1) > data_end || l4_room < sizeof(*udph))
			return -1;
		pkt->l4_check = &udph->check;
	} else {
		return -1;
	}
	pkt->ports = nh->pos;
	pkt->flow.sport = pkt->ports->source;
	pkt->flow.dport = pkt->ports->dest;
	return 0;
}

/* Fills pkt from the frame.  Returns 0 for a packet we may act on, 1 for an
 * IP packet without TCP/UDP ports (redirect mode still sends it), -1 for
 * anything to pass untouched. */
static __always_inline int parse_packet(struct xdp_md *ctx, struct lb_packet *pkt)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor nh = { .pos = data };
	int eth_type, proto;

	pkt->len = data_end - data;
	eth_type = parse_ethhdr(&nh, data_end, &pkt->eth);
	if (eth_type == bpf_htons(ETH_P_IP)) {
		proto = parse_iphdr(&nh, data_end, &pkt->ip4);
		if (proto < 0)
			return -1;
		pkt->flow.family = AF_INET;
		pkt->flow.src[0] = pkt->ip4->saddr;
		pkt->flow.dst[0] = pkt->ip4->daddr;
		pkt->l3_len = bpf_ntohs(pkt->ip4->tot_len);
		pkt->flow.proto = proto;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return 1;
		if (parse_l4(&nh, data_end, proto, pkt->l3_len - IPV4_HDR_LEN, pkt) < 0)
			return -1;
		pkt->flow4.src = pkt->flow.src[0];
		pkt->flow4.dst = pkt->flow.dst[0];
		pkt->flow4.sport = pkt->flow.sport;
		pkt->flow4.dport = pkt->flow.dport;
		pkt->flow4.proto = proto;
		return 0;
	}
	if (eth_type == bpf_htons(ETH_P_IPV6)) {
		proto = parse_ip6hdr(&nh, data_end, &pkt->ip6);
		if (proto < 0)
			return -1;
		pkt->flow.family = AF_INET6;
		__builtin_memcpy(pkt->flow.src, &pkt->ip6->saddr, sizeof(pkt->flow.src));
		__builtin_memcpy(pkt->flow.dst, &pkt->ip6->daddr, sizeof(pkt->flow.dst));
		pkt->l3_len = bpf_ntohs(pkt->ip6->payload_len) + IPV6_HDR_LEN;
		pkt->flow.proto = proto;
		return parse_l4(&nh, data_end, proto, pkt->l3_len - IPV6_HDR_LEN, pkt);
	}
	/* Not IP, VLAN-tagged, or cut short. */
	return -1;
}

/* ---- hashing ----------------------------------------------------------------
 * Multiply-rotate mixing per 32-bit word, then a final avalanche, in the
 * spirit of jhash/lookup3: cheap, and every input bit moves every output
 * bit.  The control plane never needs these values (rings are filled by
 * position), so they are free to change between builds. */

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

static __always_inline __u32 hash_word(__u32 h, __u32 w)
{
	w *= LB_HASH_MUL1;
	w = rol32(w, 15);
	h ^= w;
	h = rol32(h, 13);
	return h * 5 + LB_HASH_ADD;
}

static __always_inline __u32 hash_final(__u32 h)
{
	h ^= h >> 16;
	h *= LB_HASH_MUL2;
	h ^= h >> 15;
	h *= LB_HASH_MUL3;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 hash_addrs(const struct lb_flow *f, __u32 h)
{
	h = hash_word(h, f->src[0]);
	h = hash_word(h, f->dst[0]);
	if (f->family == AF_INET6) {
		h = hash_word(h, f->src[1]);
		h = hash_word(h, f->src[2]);
		h = hash_word(h, f->src[3]);
		h = hash_word(h, f->dst[1]);
		h = hash_word(h, f->dst[2]);
		h = hash_word(h, f->dst[3]);
	}
	return h;
}

/* ip_hash: the client and the VIP only, so every connection of a client
 * lands on the same backend. */
static __always_inline __u32 hash_ip_pair(const struct lb_flow *f)
{
	return hash_final(hash_addrs(f, LB_SEED_ADDR));
}

static __always_inline __u32 hash_flow(const struct lb_flow *f, __u32 seed)
{
	__u32 h = hash_addrs(f, seed);

	h = hash_word(h, (__u32)f->sport | ((__u32)f->dport << 16));
	h = hash_word(h, f->proto);
	return hash_final(h);
}

/* ---- VIP filter ----------------------------------------------------------------
 * The first question for a packet in nat and dsr mode (after the nat reply
 * check, which compares one address): may its destination be a VIP?  Most
 * of a balancer host's other traffic is not for a service, and answering
 * "no" here spares it the conntrack miss (a 1 MiB bucket array) and the
 * lb_services miss.  The bit is a hash of the address alone (the
 * control plane computes the same one, flowhash.vip_filter_bit()); a set
 * bit can be another address's, so it only sends the packet on to the full
 * path, never past it. */

static __always_inline __u32 vip_filter_bit(const struct lb_flow *f)
{
	__u32 h = f->dst[0];

	if (f->family == AF_INET6) {
		h = hash_word(h, f->dst[1]);
		h = hash_word(h, f->dst[2]);
		h = hash_word(h, f->dst[3]);
	}
	return hash_final(h ^ LB_SEED_VIP) & (XDP_LB_VIP_FILTER_BITS - 1);
}

static __always_inline int maybe_vip(const struct lb_packet *pkt)
{
	__u32 bit = vip_filter_bit(&pkt->flow);
	__u32 word = bit / 64;
	__u64 *bits = bpf_map_lookup_elem(&lb_vip_filter, &word);

	return bits && ((*bits >> (bit % 64)) & 1);
}

/* ---- connection tables (one per family) ------------------------------------------
 * The key is the packet's own flow: lb_flow4 for IPv4 (16 bytes), lb_flow
 * for IPv6.  Every access goes through these, with the map named in each
 * branch.  Left alone, clang merges the two branches' calls into one whose
 * map pointer is chosen at run time; the verifier then cannot inline the
 * lookup (or call the map's own update) and the kernel makes an indirect
 * call instead, which cost the hit path ~15 ns here.  LB_KEEP, an empty asm
 * on the IPv4 branch's result, makes the two branches differ. */
#define LB_KEEP(x) asm volatile("" : "+r"(x))
/* One load or store of the whole word, in program order (the cache's ways
 * are written by every CPU). */
#define READ_ONCE_(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE_(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

static __always_inline struct lb_ct_entry *ct_lookup(struct lb_packet *pkt)
{
	struct lb_ct_entry *ct;

	if (pkt->flow.family == AF_INET) {
		ct = bpf_map_lookup_elem(&lb_ct4, &pkt->flow4);
		LB_KEEP(ct);
		return ct;
	}
	return bpf_map_lookup_elem(&lb_ct6, &pkt->flow);
}

static __always_inline void ct_insert(struct lb_packet *pkt, const struct lb_ct_entry *entry)
{
	long rc;

	if (pkt->flow.family == AF_INET) {
		rc = bpf_map_update_elem(&lb_ct4, &pkt->flow4, entry, BPF_ANY);
		LB_KEEP(rc);
	} else {
		bpf_map_update_elem(&lb_ct6, &pkt->flow, entry, BPF_ANY);
	}
}

/* The reply entry of this packet's flow (a packet from a backend). */
static __always_inline struct lb_nat_entry *nat_lookup(struct lb_packet *pkt)
{
	struct lb_nat_entry *nat;

	if (pkt->flow.family == AF_INET) {
		nat = bpf_map_lookup_elem(&lb_nat4, &pkt->flow4);
		LB_KEEP(nat);
		return nat;
	}
	return bpf_map_lookup_elem(&lb_nat6, &pkt->flow);
}

/* ---- checksums (RFC 1624: HC' = ~(~HC + ~m + m')) ---------------------------
 * The one's complement sum does not care about byte order as long as every
 * word is taken the same way, so words are summed as loaded (network order
 * in host registers) 32 bits at a time and folded at the end. */

static __always_inline __u64 csum_diff32(__u64 sum, __u32 from, __u32 to)
{
	return sum + (__u32)~from + to;
}

static __always_inline __u16 csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static __always_inline __u16 csum_fold_add(__u16 check, __u64 diff)
{
	return (__u16)~csum_fold64((__u16)~check + diff);
}

static __always_inline __u64 csum_diff_addrs(const __u32 *from, const __u32 *to, __u8 family)
{
	__u64 diff = csum_diff32(0, from[0], to[0]);

	if (family == AF_INET6) {
		diff = csum_diff32(diff, from[1], to[1]);
		diff = csum_diff32(diff, from[2], to[2]);
		diff = csum_diff32(diff, from[3], to[3]);
	}
	return diff;
}

/* Rewrites source and destination address and port, with incremental
 * checksums.  IPv4 UDP without a checksum (0) stays without; a UDP checksum
 * that comes out as 0 is sent as 0xffff (0 means "none"). */
static __always_inline void rewrite_l3l4(struct lb_packet *pkt, const __u32 *saddr,
					 const __u32 *daddr, __be16 sport, __be16 dport)
{
	struct lb_flow *f = &pkt->flow;
	__u64 addr_diff, l4_diff;
	__u16 check;

	addr_diff = csum_diff_addrs(f->src, saddr, f->family) +
		    csum_diff_addrs(f->dst, daddr, f->family);
	l4_diff = csum_diff32(addr_diff,
			      (__u32)f->sport | ((__u32)f->dport << 16),
			      (__u32)sport | ((__u32)dport << 16));

	check = *pkt->l4_check;
	if (pkt->partial) {
		/* An aggregate's field is the pseudo-header sum, not yet
		 * complemented; the ports are summed with the payload when the
		 * kernel (or the NIC) completes it: only the addresses count. */
		*pkt->l4_check = ~csum_fold_add(~check, addr_diff);
	} else if (f->proto == IPPROTO_TCP) {
		*pkt->l4_check = csum_fold_add(check, l4_diff);
	} else if (check || f->family == AF_INET6) {
		check = csum_fold_add(check, l4_diff);
		*pkt->l4_check = check ? check : 0xffff;
	}
	pkt->ports->source = sport;
	pkt->ports->dest = dport;

	/* Branch on the header pointers, not on f->family: the verifier does
	 * not connect the two and would see a NULL ip6 on the "not IPv4" path. */
	if (pkt->ip4) {
		pkt->ip4->check = csum_fold_add(pkt->ip4->check, addr_diff);
		pkt->ip4->saddr = saddr[0];
		pkt->ip4->daddr = daddr[0];
	} else if (pkt->ip6) {
		__builtin_memcpy(&pkt->ip6->saddr, saddr, sizeof(pkt->ip6->saddr));
		__builtin_memcpy(&pkt->ip6->daddr, daddr, sizeof(pkt->ip6->daddr));
	}
}

/* ---- counters ---------------------------------------------------------------- */

static __always_inline void count(void *map, __u32 key, __u32 bytes)
{
	struct lb_counter *c = bpf_map_lookup_elem(map, &key);

	/* Per-CPU values: plain adds, no atomics needed. */
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Every packet ends here: its verdict in lb_stats, and the reason for drops
 * and kernel hand-offs (no_backend, ct_full, fib_miss) next to it. */
static __always_inline int verdict(struct lb_packet *pkt, int action, int reason)
{
	__u32 stat = XDP_LB_STAT_PASS;

	if (action == XDP_DROP)
		stat = XDP_LB_STAT_DROP;
	else if (action == XDP_TX)
		stat = XDP_LB_STAT_TX;
	else if (action == XDP_REDIRECT)
		stat = XDP_LB_STAT_REDIRECT;
	count(&lb_stats, stat, pkt->len);
	if (reason >= 0)
		count(&lb_stats, reason, pkt->len);
	return action;
}

#define NO_REASON (-1)

/* ---- the next-hop cache and the conntrack clock ------------------------------
 * A per-CPU cache spares the hit path its most expensive step: lb_nexthop
 * (bpf_fib_lookup results, see next_hop()).  It goes stale by time only,
 * on a clock read at most once per packet; lb_ct_entry.last_seen is on
 * the same clock (see ct_stale()).  Built with XDP_LB_HZ (the
 * kernel's CONFIG_HZ, which the control plane reads from the kernel's
 * config and passes to clang), the clock is bpf_jiffies64(), the cheapest
 * there is; without it, bpf_ktime_get_coarse_ns(), a few ns more.  Both
 * move once per tick, precise enough for lifetimes of milliseconds
 * (bpf_ktime_get_ns() costs ~45 ns on a VM).  LB_MS() turns milliseconds
 * into the clock's unit, at least one tick; LB_SEC() seconds (a run-time
 * value: lb_config.flow_idle_timeout). */

#ifdef XDP_LB_HZ
#define LB_CLOCK() bpf_jiffies64()
#define LB_MS(ms) (((__u64)(ms) * XDP_LB_HZ + 999) / 1000)
#define LB_SEC(s) ((__u64)(s) * XDP_LB_HZ)
#else
#define LB_CLOCK() bpf_ktime_get_coarse_ns()
#define LB_MS(ms) ((__u64)(ms) * 1000000)
#define LB_SEC(s) ((__u64)(s) * 1000000000ULL)
#endif

static __always_inline __u64 cache_clock(struct lb_packet *pkt)
{
	if (!pkt->now)
		pkt->now = LB_CLOCK();
	return pkt->now;
}

/* ---- next hop ------------------------------------------------------------------
 *
 * bpf_fib_lookup() gives the egress interface and both MACs as the kernel
 * would forward the packet.  It is the most expensive step of a forwarded
 * packet (a FIB walk, a device and a neighbour lookup: about as much as the
 * rest of the conntrack-hit path together), so its successful results are
 * kept in lb_nexthop, per CPU, for XDP_LB_NH_TTL_MS:
 *
 *  - slot: the backend id (forward direction, nat and dsr), or a reply slot
 *    chosen by a hash of the client and VIP addresses (nat replies);
 *  - an entry is used only for the same destination address and family
 *    (a backend id may be reused for another address, reply slots are
 *    shared by every pair that hashes to them), the same source address
 *    (nat: the NAT address, replies: the VIP; dsr: the client's address is
 *    not compared), the same ingress interface, and a packet no longer
 *    than the MTU the lookup reported; anything else does the full lookup;
 *  - only BPF_FIB_LKUP_RET_SUCCESS is kept: unresolved neighbours
 *    (NO_NEIGH, handed to the kernel so that it resolves them) and failures
 *    are looked up again on every packet.
 *
 * The price: a change of route, neighbour MAC or MTU is seen after at most
 * XDP_LB_NH_TTL_MS (the control plane can zero entries to make it
 * immediate; an egress interface that goes down meanwhile loses the
 * packets sent to it until then), and flows to one backend (one client, for replies) are
 * assumed to share one route: policy routing on L4 ports, TOS/flow label
 * or (dsr) the client's address, and multipath spreading of such flows,
 * are not honoured within the lifetime of an entry.  Build with
 * -DXDP_LB_NH_TTL_MS=0 to look every packet up.
 */

#define NH_TTL LB_MS(XDP_LB_NH_TTL_MS)
#define NH_NO_SLOT 0xFFFFFFFF       /* no cache slot: always the full lookup */

enum hop_result {
	HOP_SEND,                   /* MACs set; action says XDP_TX or XDP_REDIRECT */
	HOP_NO_NEIGH,               /* route found, neighbour unresolved */
	HOP_FAIL,                   /* no usable route (or forwarding off) */
};

/* Writes the MACs and picks the action for egress interface out_ifindex. */
static __always_inline enum hop_result hop_send(struct lb_packet *pkt, const __u8 *dmac,
						const __u8 *smac, __u32 out_ifindex,
						int *action)
{
	__builtin_memcpy(pkt->eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(pkt->eth->h_source, smac, ETH_ALEN);
	if (out_ifindex == pkt->ingress)
		*action = XDP_TX;
	else
		*action = bpf_redirect(out_ifindex, 0);
	return HOP_SEND;
}

#if XDP_LB_NH_TTL_MS
/* Addresses as stored in the program's structs: IPv4 in word 0 (the other
 * words are not read: an IPv4 source may be lb_config.snat_v4, one word). */
static __always_inline int addr_equal(const __u32 *a, const __u32 *b, __u8 family)
{
	if (a[0] != b[0])
		return 0;
	return family == AF_INET || (a[1] == b[1] && a[2] == b[2] && a[3] == b[3]);
}

static __always_inline void addr_copy(__u32 *dst, const __u32 *src, __u8 family)
{
	dst[0] = src[0];
	if (family == AF_INET6) {
		dst[1] = src[1];
		dst[2] = src[2];
		dst[3] = src[3];
	}
}

/* Does the entry still answer this lookup?  (An empty one never does:
 * expires 0.) */
static __always_inline int nh_cache_valid(struct lb_packet *pkt, const struct lb_nexthop *nh,
					  const __u32 *saddr, const __u32 *daddr)
{
	__u8 family = pkt->flow.family;

	if (cache_clock(pkt) >= nh->expires || nh->family != family ||
	    nh->in_ifindex != pkt->ingress || pkt->l3_len > nh->mtu)
		return 0;
	if (!addr_equal(nh->daddr, daddr, family))
		return 0;
	return !saddr || addr_equal(nh->saddr, saddr, family);
}

/* Keeps a successful lookup.  bpf_fib_lookup() checked pkt->l3_len against
 * the route's MTU; newer kernels also return that MTU in mtu_result (a union
 * with tot_len), older ones leave tot_len as it was: either way the stored
 * value is a length known to fit. */
static __always_inline void nh_cache_put(struct lb_packet *pkt, struct lb_nexthop *nh,
					 const struct bpf_fib_lookup *fib,
					 const __u32 *saddr, const __u32 *daddr)
{
	__u8 family = pkt->flow.family;

	__builtin_memset(nh, 0, sizeof(*nh));
	addr_copy(nh->daddr, daddr, family);
	if (saddr)
		addr_copy(nh->saddr, saddr, family);
	nh->family = family;
	nh->in_ifindex = pkt->ingress;
	nh->out_ifindex = fib->ifindex;
	nh->mtu = fib->mtu_result;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->expires = cache_clock(pkt) + NH_TTL;
}
#endif

/* bpf_fib_lookup() for the packet with the given addresses and ports, from
 * the ingress interface; a success is also kept in nh (if not NULL). */
static __always_inline enum hop_result fib_next_hop(struct xdp_md *ctx, struct lb_packet *pkt,
						    const __u32 *saddr, const __u32 *daddr,
						    __be16 sport, __be16 dport, int *action,
						    struct lb_nexthop *nh)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	fib.family = pkt->flow.family;
	fib.l4_protocol = pkt->flow.proto;
	fib.sport = sport;
	fib.dport = dport;
	fib.tot_len = pkt->l3_len;
	fib.ifindex = pkt->ingress;
	if (pkt->ip4) {
		fib.tos = pkt->ip4->tos;
		fib.ipv4_src = saddr ? saddr[0] : pkt->flow.src[0];
		fib.ipv4_dst = daddr[0];
	} else if (pkt->ip6) {
		fib.flowinfo = *(__be32 *)pkt->ip6 & IPV6_FLOWINFO_MASK_;
		__builtin_memcpy(fib.ipv6_src, saddr ? saddr : pkt->flow.src, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, daddr, sizeof(fib.ipv6_dst));
	}

	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return HOP_NO_NEIGH;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		lb_debug("fib lookup failed: %d", rc);
		return HOP_FAIL;
	}
#if XDP_LB_NH_TTL_MS
	if (nh)
		nh_cache_put(pkt, nh, &fib, saddr, daddr);
#endif
	return hop_send(pkt, fib.dmac, fib.smac, fib.ifindex, action);
}

/* ---- aggregates (GRO/GSO packets in generic mode) -------------------------------
 *
 * Generic XDP (xdpgeneric) runs on the skb after GRO, so a TCP stream can
 * arrive as one packet of up to 64 KiB made of many segments (so does a
 * locally sent GSO packet crossing a veth).  Two of its properties differ
 * from a frame's:
 *
 *  - it is longer than the MTU: bpf_fib_lookup() answers FRAG_NEEDED, and
 *    generic XDP's redirect refuses a packet longer than the egress MTU
 *    (xdp_ok_fwd_dev(): dropped), whatever its segments;
 *  - its L4 checksum is CHECKSUM_PARTIAL: the field holds the folded
 *    pseudo-header sum (tcp_gro_complete(), udp_gro_complete()), which
 *    the kernel completes per segment.
 *
 * So nat rewrites an aggregate with the update a partial checksum needs
 * (rewrite_l3l4(): the addresses only, not complemented) and hands it to
 * the kernel, which forwards it as it forwards a packet whose neighbour is
 * unresolved, and cuts it into segments on the way out.  dsr and redirect
 * modes cannot (the kernel would not forward a frame addressed to another
 * MAC): an aggregate fails the lookup (dsr: passed untouched, fib_miss) or
 * the redirect, as before.
 *
 * XDP cannot read skb->ip_summed, so the rule is: a packet longer than the
 * ingress device's MTU whose checksum field equals the pseudo-header sum of
 * its own addresses, protocol and L4 length.  Only an aggregate can be
 * longer than the MTU (a veth drops longer frames; a NIC does not deliver
 * them), and the kernel wrote that field itself; a frame that is too long
 * for another reason keeps the old path, unless its checksum happens to
 * equal that sum (1 in 65536).  Not recognised (docs/design.md,
 * "Aggregates"): a partial packet that fits the MTU.  Native XDP never sees
 * an aggregate as one buffer. */

static __always_inline __u16 pseudo_sum(const struct lb_packet *pkt)
{
	const struct lb_flow *f = &pkt->flow;
	__u64 sum;

	if (f->family == AF_INET) {
		sum = (__u64)f->src[0] + f->dst[0] + bpf_htons((__u16)f->proto) +
		      bpf_htons((__u16)(pkt->l3_len - IPV4_HDR_LEN));
	} else {
		sum = (__u64)f->src[0] + f->src[1] + f->src[2] + f->src[3] +
		      f->dst[0] + f->dst[1] + f->dst[2] + f->dst[3] +
		      bpf_htonl((__u32)f->proto) + bpf_htonl((__u32)pkt->l3_len - IPV6_HDR_LEN);
	}
	return csum_fold64(sum);
}

/* Sets and returns pkt->partial (see above).  The cheap test comes first: a
 * frame's full checksum is almost never its pseudo-header sum, so the
 * helper call is made for aggregates only. */
static __always_inline int is_aggregate(struct xdp_md *ctx, struct lb_packet *pkt)
{
	__u32 mtu = 0;

	pkt->partial = 0;
	if (*pkt->l4_check != pseudo_sum(pkt))
		return 0;
	if (bpf_check_mtu(ctx, 0, &mtu, 0, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED)
		return 0;
	pkt->partial = mtu != 0 && mtu < pkt->l3_len;
	return pkt->partial;
}

/* The next hop towards daddr (source saddr; NULL: the packet's own source,
 * not part of the cache check): lb_nexthop[slot] while it answers, else
 * bpf_fib_lookup() (always, for slot NH_NO_SLOT).  On success writes both
 * MACs and sets *action; the caller rewrites L3/L4 itself. */
static __always_inline enum hop_result next_hop(struct xdp_md *ctx, struct lb_packet *pkt,
						__u32 slot, const __u32 *saddr,
						const __u32 *daddr, __be16 sport, __be16 dport,
						int *action)
{
	struct lb_nexthop *nh = NULL;

	pkt->ingress = ctx->ingress_ifindex;
#if XDP_LB_NH_TTL_MS
	if (slot != NH_NO_SLOT)
		nh = bpf_map_lookup_elem(&lb_nexthop, &slot);
	if (nh && nh_cache_valid(pkt, nh, saddr, daddr))
		return hop_send(pkt, nh->dmac, nh->smac, nh->out_ifindex, action);
#endif
	return fib_next_hop(ctx, pkt, saddr, daddr, sport, dport, action, nh);
}

/* lb_nexthop slot of a reply from ``vip`` to ``client`` (the reply slots
 * follow the backend ids).  A collision only costs full lookups: the entry
 * names both addresses. */
static __always_inline __u32 nh_reply_slot(const __u32 *vip, const __u32 *client, __u8 family)
{
#if XDP_LB_NH_REPLY_SLOTS
	__u32 h = hash_word(LB_SEED_NH, client[0]);

	h = hash_word(h, vip[0]);
	if (family == AF_INET6) {
		h = hash_word(h, client[1]);
		h = hash_word(h, client[2]);
		h = hash_word(h, client[3]);
		h = hash_word(h, vip[1]);
		h = hash_word(h, vip[2]);
		h = hash_word(h, vip[3]);
	}
	return XDP_LB_MAX_BACKENDS + hash_final(h) % XDP_LB_NH_REPLY_SLOTS;
#else
	return NH_NO_SLOT;
#endif
}

/* ---- redirect mode ------------------------------------------------------------- */

static __always_inline int lb_redirect(struct lb_packet *pkt, const struct lb_config *cfg)
{
	__u32 count_ports = cfg->redirect_count;
	__u32 zero = 0, slot;
	int action;

	if (count_ports == 0 || count_ports > XDP_LB_MAX_REDIRECT)
		return verdict(pkt, XDP_PASS, NO_REASON);

	if (cfg->redirect_algo == XDP_LB_FLOW_HASH) {
		slot = hash_flow(&pkt->flow, LB_SEED_FLOW) % count_ports;
	} else {
		__u32 *rr = bpf_map_lookup_elem(&lb_rr, &zero);

		if (!rr)
			return verdict(pkt, XDP_PASS, NO_REASON);
		slot = *rr % count_ports;
		*rr = slot + 1;
	}

	/* An empty slot (port removed under us) passes the frame. */
	action = bpf_redirect_map(&lb_tx_ports, slot, XDP_PASS);
	lb_debug("redirect: slot %u, action %d", slot, action);
	if (action == XDP_REDIRECT)
		count(&lb_port_stats, slot, pkt->len);
	return verdict(pkt, action, NO_REASON);
}

/* ---- nat reply direction ----------------------------------------------------------- */

static __always_inline int is_snat_addr(const struct lb_packet *pkt, const struct lb_config *cfg)
{
	const __u32 *dst = pkt->flow.dst;

	if (pkt->flow.family == AF_INET)
		return (cfg->flags & XDP_LB_CFG_SNAT_V4) && dst[0] == cfg->snat_v4;
	return (cfg->flags & XDP_LB_CFG_SNAT_V6) &&
	       dst[0] == cfg->snat_v6[0] && dst[1] == cfg->snat_v6[1] &&
	       dst[2] == cfg->snat_v6[2] && dst[3] == cfg->snat_v6[3];
}

/* backend:bport -> snat:nat_port becomes VIP:vport -> client:cport.
 * Returns -1 if this is not a reply of ours (the caller goes on). */
static __always_inline int lb_nat_reply(struct xdp_md *ctx, struct lb_packet *pkt,
					const struct lb_config *cfg)
{
	struct lb_nat_entry *nat;
	int action = XDP_PASS;
	enum hop_result hop;

	if (!is_snat_addr(pkt, cfg))
		return -1;
	nat = nat_lookup(pkt);
	if (!nat)
		return -1;

	if (is_aggregate(ctx, pkt)) {           /* the kernel forwards it */
		rewrite_l3l4(pkt, nat->vip, nat->client, nat->vip_port, nat->client_port);
		return verdict(pkt, XDP_PASS, XDP_LB_STAT_NAT_REPLY);
	}
	hop = next_hop(ctx, pkt, nh_reply_slot(nat->vip, nat->client, pkt->flow.family), nat->vip,
		       nat->client, nat->vip_port, nat->client_port, &action);
	if (hop == HOP_FAIL)
		return verdict(pkt, XDP_PASS, XDP_LB_STAT_FIB_MISS);
	rewrite_l3l4(pkt, nat->vip, nat->client, nat->vip_port, nat->client_port);
	if (hop == HOP_NO_NEIGH)
		return verdict(pkt, XDP_PASS, XDP_LB_STAT_FIB_MISS);
	return verdict(pkt, action, XDP_LB_STAT_NAT_REPLY);
}

/* ---- scheduling -------------------------------------------------------------------- */

static __always_inline int addr_same(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Backend ``id`` if present, active and of the packet's family. */
static __always_inline struct lb_backend *active_backend(__u32 id, __u8 family)
{
	struct lb_backend *be;

	if (id == 0)
		return NULL;
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be || !(be->flags & XDP_LB_BACKEND_ACTIVE) || be->family != family)
		return NULL;
	return be;
}

/* A backend we may send this flow to: active, of the packet's family and
 * of this service. */
static __always_inline struct lb_backend *usable_backend(__u32 id, const struct lb_service *svc,
							 __u8 family)
{
	struct lb_backend *be = active_backend(id, family);

	return be && be->service_id == svc->id ? be : NULL;
}

/* lb_services[(dst, dport, proto, family)]. */
static __always_inline struct lb_service *lookup_service(struct lb_packet *pkt)
{
	struct lb_service_key key = {};

	__builtin_memcpy(key.vip, pkt->flow.dst, sizeof(key.vip));
	key.port = pkt->flow.dport;
	key.proto = pkt->flow.proto;
	key.family = pkt->flow.family;
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* A conntrack hit without the lb_services lookup.  The entry names the
 * backend, and the backend carries the key of its service (written by the
 * control plane with the backend, lb_backend.service): if that is this
 * packet's destination, port and protocol, the flow keeps its backend, as
 * usable_backend() would decide after the lookup (the control plane keeps
 * lb_services[service] == service_id while the backend is active, and
 * clears a service's backends when it removes the service).  Otherwise
 * (NULL) the caller looks the service up. */
static __always_inline struct lb_backend *known_flow(struct lb_packet *pkt,
						     const struct lb_ct_entry *ct)
{
	const struct lb_flow *f = &pkt->flow;
	struct lb_backend *be;

	be = active_backend(ct->backend_id, f->family);
	if (!be)
		return NULL;
	if (be->service.port != f->dport || be->service.proto != f->proto ||
	    be->service.family != f->family || !addr_same(be->service.vip, f->dst))
		return NULL;
	return be;
}

/* New flow: hash -> the service's live ring -> backend id. */
static __always_inline __u32 pick_backend(const struct lb_packet *pkt, const struct lb_service *svc)
{
	struct lb_ring_word *word;
	__u32 hash, pos, index;

	/* The array lookup bounds-checks the index anyway; these keep one
	 * service from reading another's ring on a bad id or slot. */
	if (svc->id >= XDP_LB_MAX_SERVICES || svc->ring_slot > 1)
		return 0;
	if (svc->sched == XDP_LB_SCHED_IP_HASH)
		hash = hash_ip_pair(&pkt->flow);
	else
		hash = hash_flow(&pkt->flow, LB_SEED_FLOW);
	pos = hash % XDP_LB_RING_SIZE;
	index = (svc->id * 2 + svc->ring_slot) * XDP_LB_RING_WORDS + pos / XDP_LB_RING_LANES;
	word = bpf_map_lookup_elem(&lb_ring, &index);
	return word ? word->id[pos % XDP_LB_RING_LANES] : 0;
}

/* Claims a NAT source port for a new flow: port_min + (hash + i) % span,
 * i < XDP_LB_PORT_PROBES.  The claim is the insert of the reply flow into
 * lb_nat4/lb_nat6 with BPF_NOEXIST, which is atomic across CPUs: two flows
 * can never share backend:bport <-> snat:port.  Returns the port (network
 * order) or 0 if none was free. */
static __always_inline __be16 nat_alloc_port(const struct lb_packet *pkt,
					     const struct lb_config *cfg,
					     const struct lb_backend *be, __u32 be_id,
					     const __u32 *snat, __be16 bport)
{
	struct lb_nat_entry entry = {};
	struct lb_flow reply = {};
	__u32 span, hash, i;

	if (cfg->port_min == 0 || cfg->port_max < cfg->port_min)
		return 0;
	span = (__u32)cfg->port_max - cfg->port_min + 1;

	__builtin_memcpy(entry.client, pkt->flow.src, sizeof(entry.client));  /* zero-padded */
	__builtin_memcpy(entry.vip, pkt->flow.dst, sizeof(entry.vip));
	entry.client_port = pkt->flow.sport;
	entry.vip_port = pkt->flow.dport;
	entry.backend_id = be_id;

	/* Always the 5-tuple, whatever the scheduler: with ip_hash all
	 * connections of one client would otherwise probe the same ports. */
	hash = hash_flow(&pkt->flow, LB_SEED_PORT);

	if (pkt->flow.family == AF_INET) {
		/* snat may point at lb_config.snat_v4, a single word. */
		struct lb_flow4 reply4 = {
			.src = be->addr[0], .dst = snat[0], .sport = bport, .proto = pkt->flow.proto,
		};

#pragma unroll
		for (i = 0; i < XDP_LB_PORT_PROBES; i++) {
			reply4.dport = bpf_htons((__u16)(cfg->port_min + (hash + i) % span));
			if (bpf_map_update_elem(&lb_nat4, &reply4, &entry, BPF_NOEXIST) == 0)
				return reply4.dport;
		}
		return 0;
	}

	__builtin_memcpy(reply.src, be->addr, sizeof(reply.src));
	__builtin_memcpy(reply.dst, snat, sizeof(reply.dst));
	reply.sport = bport;
	reply.proto = pkt->flow.proto;
	reply.family = AF_INET6;
#pragma unroll
	for (i = 0; i < XDP_LB_PORT_PROBES; i++) {
		reply.dport = bpf_htons((__u16)(cfg->port_min + (hash + i) % span));
		if (bpf_map_update_elem(&lb_nat6, &reply, &entry, BPF_NOEXIST) == 0)
			return reply.dport;
	}
	return 0;
}

/* ---- conntrack expiry ----------------------------------------------------------------
 * An entry keeps a flow on its backend while the flow lasts; a new flow
 * that happens to reuse the 5-tuple must not inherit it, or a drained
 * backend keeps getting clients that reuse ports (NTP, resolvers, NAT
 * gateways).  As in Katran: a TCP SYN without ACK always starts a new
 * connection, and a UDP flow silent for longer than
 * lb_config.flow_idle_timeout has ended.  Other TCP packets keep the
 * backend however long the connection was idle (its state lives on the
 * backend).  A rescheduled flow that lands on the backend it had keeps its
 * entry and NAT port (a retransmitted SYN, or a ring that did not change):
 * only a move to another backend claims a new port and releases the old
 * reply entry (nat_release()). */

/* Is this packet a new flow although its flow's entry, last seen at
 * ``last_seen``, names a backend? */
static __always_inline int ct_stale(struct lb_packet *pkt, const struct lb_config *cfg,
				    __u64 last_seen)
{
	__u64 idle;

	if (pkt->flow.proto == IPPROTO_TCP)
		return pkt->tcp_syn;
	if (!cfg->flow_idle_timeout)
		return 0;
	/* Signed: another CPU may have stored a tick later than ours. */
	idle = cache_clock(pkt) - last_seen;
	return (__s64)idle > (__s64)LB_SEC(cfg->flow_idle_timeout);
}

/* Marks an entry seen now.  The clock moves once per tick, so at high
 * rates most packets find the value current and leave the cache line
 * clean for the other CPUs. */
static __always_inline void ct_touch(struct lb_packet *pkt, __u64 *last_seen)
{
	__u64 now = cache_clock(pkt);

	if (*last_seen != now)
		*last_seen = now;
}

/* Does reply entry ``nat`` still belong to client flow ``f``? */
static __always_inline int nat_names_flow(const struct lb_nat_entry *nat, const struct lb_flow *f)
{
	return nat && nat->client_port == f->sport && nat->vip_port == f->dport &&
	       addr_same(nat->client, f->src) && addr_same(nat->vip, f->dst);
}

/* nat: the flow moves from ``old``'s backend to another one: delete the
 * old reply entry (old backend:bport -> snat:old port), so that the port
 * is free again and late packets from the old backend are not translated
 * into the new connection.  Only an entry that still names this client
 * flow is deleted; if the old backend's slot was cleared (removed), its
 * address is unknown and the entry is left to the LRU (it can only match
 * packets from that address, and holds one port meanwhile). */
static __always_inline void nat_release(const struct lb_packet *pkt, const __u32 *snat,
					const struct lb_ct_entry *old)
{
	const struct lb_flow *f = &pkt->flow;
	struct lb_flow reply = {};
	struct lb_nat_entry *nat;
	struct lb_backend *be;
	__u32 id = old->backend_id;
	__be16 sport;

	if (!old->nat_port)
		return;
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be || be->family != f->family)
		return;
	sport = be->port ? be->port : f->dport;
	if (f->family == AF_INET) {
		struct lb_flow4 reply4 = {
			.src = be->addr[0], .dst = snat[0], .sport = sport, .dport = old->nat_port,
			.proto = f->proto,
		};

		long rc;

		nat = bpf_map_lookup_elem(&lb_nat4, &reply4);
		if (nat_names_flow(nat, f)) {
			rc = bpf_map_delete_elem(&lb_nat4, &reply4);
			LB_KEEP(rc);
		}
		return;
	}
	__builtin_memcpy(reply.src, be->addr, sizeof(reply.src));
	__builtin_memcpy(reply.dst, snat, sizeof(reply.dst));
	reply.sport = sport;
	reply.dport = old->nat_port;
	reply.proto = f->proto;
	reply.family = AF_INET6;
	nat = bpf_map_lookup_elem(&lb_nat6, &reply);
	if (nat_names_flow(nat, f))
		bpf_map_delete_elem(&lb_nat6, &reply);
}


/* ---- the IPv4 conntrack cache (lb_ct4_cache, in front of lb_ct4) -------------------
 * An established IPv4 flow's packet reads its entry from one line of a
 * plain array instead of lb_ct4's hash bucket and LRU element: with many
 * flows those are cold lines on pages of their own, and they were most of
 * a conntrack hit.  lb_ct4 stays the table of record (xdp_lb.h): every
 * entry the data plane writes goes to both, a miss fills a way from lb_ct4,
 * and a way is trusted for XDP_LB_CT_SYNC_MS at a time; after that the next
 * packet looks the lb_ct4 entry up again (the LRU sees the flow used, and
 * last_seen is refreshed), writes it back if the LRU evicted it meanwhile,
 * and refills the way if lb_ct4 has the flow otherwise.  A way only saves
 * a lookup: the backend it names is checked like any other (known_flow()). */

/* The packet's conntrack entry: a copy (the entry function reads this
 * one, whichever table it came from). */
struct ct_ref {
	struct lb_ct_entry copy;
	__u32 hash;                     /* IPv4: the flow's cache hash */
	__u8 stale;                     /* the entry names a backend, but the packet
					 * starts a new flow (ct_stale()) */
};

/* The refresh period: the smallest power of two of clock units that
 * covers XDP_LB_CT_SYNC_MS (256 jiffies at HZ 250, 2^30 ns without
 * XDP_LB_HZ), so that "the same period" is a shift: a 64-bit division,
 * twice on every hit, cost more than the rest of the cache's check. */
#define LB_CT_SYNC_SHIFT (64 - __builtin_clzll((LB_MS(XDP_LB_CT_SYNC_MS) - 1) | 1))
#define LB_CT_SYNC (1ULL << LB_CT_SYNC_SHIFT)

static __always_inline __u64 ct_cache_tag(__u32 hash, const struct lb_ct_entry *e)
{
	return hash | ((__u64)(__u16)e->backend_id << 32) | ((__u64)e->nat_port << 48);
}

/* The way of the packet's flow in its line, or NULL; *tag is its tag,
 * read once and checked (a nonzero tag of the flow's hash).  Only that
 * value may be used: another CPU may replace the way at any moment, and a
 * second read can give its zero or the next flow's tag. */
static __always_inline struct lb_ct_cache_way *ct_cache_way(struct lb_ct_cache_line *line,
							    const struct lb_flow4 *f, __u32 hash,
							    __u64 *tag)
{
	struct lb_ct_cache_way *w;
	__u64 t;
	int i;

#pragma unroll
	for (i = 0; i < XDP_LB_CT_CACHE_WAYS; i++) {
		w = &line->way[i];
		t = READ_ONCE_(w->tag);
		if ((__u32)t == hash && t && w->flow.src == f->src &&
		    w->flow.dst == f->dst && w->flow.sport == f->sport && w->flow.dport == f->dport &&
		    w->flow.proto == f->proto) {
			*tag = t;
			return w;
		}
	}
	return NULL;
}

/* Writes ``e`` into the IPv4 flow's way, or (none yet) into an empty way
 * or the one least recently seen.  The tag goes last, after a zero: a
 * reader on another CPU sees the old flow, no flow, or the new one.  (The
 * line is looked up again, not kept from ct_find(): a pointer kept that
 * long would multiply the verifier's states.) */
static __always_inline void ct_cache_fill(struct lb_packet *pkt, __u32 hash,
					  const struct lb_ct_entry *e)
{
	__u32 index = hash % XDP_LB_CT_CACHE_LINES;
	struct lb_ct_cache_line *line;
	struct lb_ct_cache_way *w;
	__u64 tag;

	if (pkt->flow.family != AF_INET)
		return;
	line = bpf_map_lookup_elem(&lb_ct4_cache, &index);
	if (!line)
		return;
	w = ct_cache_way(line, &pkt->flow4, hash, &tag);
	if (!w) {
		w = &line->way[0];
		if (w->tag && (!line->way[1].tag || line->way[1].last_seen < w->last_seen))
			w = &line->way[1];
	}
	WRITE_ONCE_(w->tag, 0);
	w->flow = pkt->flow4;
	WRITE_ONCE_(w->last_seen, e->last_seen);
	WRITE_ONCE_(w->tag, ct_cache_tag(hash, e));
}

/* Fills ref->copy with the packet's conntrack entry: from its way while
 * the way is trusted (until the clock crosses an LB_CT_SYNC boundary),
 * else from lb_ct4/lb_ct6 (and back into lb_ct4 if it lost a flow its
 * way still has).  Returns 0 if the flow has none.  Sets
 * ref->stale (ct_stale()); an entry that is not stale is marked seen now,
 * in the table and the way, here: pointers to them kept for later would
 * multiply the verifier's states.  An lb_ct4 entry read without a way may
 * lag its flow by up to LB_CT_SYNC (packets counted in a way that has
 * since been replaced): such a UDP flow is stale only that much later,
 * never earlier. */
static __always_inline int ct_find(struct lb_packet *pkt, const struct lb_config *cfg,
				   struct ct_ref *ref)
{
	struct lb_ct_cache_line *line = NULL;
	struct lb_ct_cache_way *w = NULL;
	struct lb_ct_entry *ct;
	__u64 tag = 0, lag = 0;
	__u32 index;

	if (pkt->flow.family == AF_INET) {
		ref->hash = hash_flow(&pkt->flow, LB_SEED_CT);
		index = ref->hash % XDP_LB_CT_CACHE_LINES;
		line = bpf_map_lookup_elem(&lb_ct4_cache, &index);
		if (line)
			w = ct_cache_way(line, &pkt->flow4, ref->hash, &tag);
	}
	if (w) {
		/* last_seen is the flow's only if the tag is still the one
		 * checked (the writer stores last_seen before the tag). */
		ref->copy.last_seen = READ_ONCE_(w->last_seen);
		if (READ_ONCE_(w->tag) != tag)
			w = NULL;       /* replaced meanwhile: a miss */
	}
	if (w) {
		ref->copy.backend_id = (__u16)(tag >> 32);
		ref->copy.nat_port = (__u16)(tag >> 48);
		if (cache_clock(pkt) >> LB_CT_SYNC_SHIFT == ref->copy.last_seen >> LB_CT_SYNC_SHIFT)
			goto found;
	}
	ct = ct_lookup(pkt);
	if (!ct && w) {
		/* lb_ct4 lost the flow: its LRU evicted the entry while the
		 * way answered for it (lookups that mark it used come once a
		 * period).  The way writes it back: an active flow keeps its
		 * backend and NAT port, as it did when every packet looked
		 * lb_ct4 up. */
		ct_insert(pkt, &ref->copy);
		goto found;
	}
	if (!ct)
		return 0;
	if (w && (__u16)ct->backend_id == ref->copy.backend_id && ct->nat_port == ref->copy.nat_port) {
		/* The refresh: lb_ct4 learns what the way saw. */
		if ((__s64)(ref->copy.last_seen - ct->last_seen) > 0)
			ct->last_seen = ref->copy.last_seen;
	} else {
		ref->copy.backend_id = (__u16)ct->backend_id;
		ref->copy.nat_port = ct->nat_port;
		ref->copy.last_seen = ct->last_seen;
		if (line) {
			lag = LB_CT_SYNC;
			ct_cache_fill(pkt, ref->hash, ct);
			w = ct_cache_way(line, &pkt->flow4, ref->hash, &tag);
		}
	}
	ref->stale = ct_stale(pkt, cfg, ref->copy.last_seen + lag);
	if (!ref->stale)
		ct_touch(pkt, &ct->last_seen);
	goto touch_way;
found:
	ref->stale = ct_stale(pkt, cfg, ref->copy.last_seen);
touch_way:
	if (!ref->stale && w)
		ct_touch(pkt, &w->last_seen);
	return 1;
}

/* Stores a new or rescheduled flow's entry: lb_ct4/lb_ct6 and the cache. */
static __always_inline void ct_store(struct lb_packet *pkt, struct ct_ref *ref,
				     const struct lb_ct_entry *entry)
{
	ct_insert(pkt, entry);
	ct_cache_fill(pkt, ref->hash, entry);
}

/* ---- entry ------------------------------------------------------------------------- */

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	struct lb_packet pkt = {};
	struct lb_ct_entry *ct = NULL, new_ct = {};
	struct ct_ref ref = {};
	struct lb_service *svc = NULL;
	struct lb_backend *be = NULL;
	struct lb_config *cfg;
	__u32 zero = 0, be_id = 0;
	const __u32 *snat;
	__be16 nat_port = 0, bport;
	enum hop_result hop;
	int parsed, found, known = 0, action = XDP_PASS;

	/* ---- parse ---- */
	parsed = parse_packet(ctx, &pkt);
	if (parsed < 0)
		return verdict(&pkt, XDP_PASS, NO_REASON);

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg || cfg->mode == XDP_LB_MODE_NONE)
		return verdict(&pkt, XDP_PASS, NO_REASON);

	/* ---- decide ---- */
	if (cfg->mode == XDP_LB_MODE_REDIRECT)
		return lb_redirect(&pkt, cfg);
	if (parsed > 0)             /* IP without ports: not a service */
		return verdict(&pkt, XDP_PASS, NO_REASON);

	if (cfg->mode == XDP_LB_MODE_NAT) {
		int reply = lb_nat_reply(ctx, &pkt, cfg);

		if (reply >= 0)
			return reply;
	} else if (cfg->mode != XDP_LB_MODE_DSR) {
		return verdict(&pkt, XDP_PASS, NO_REASON);
	}
	if (!maybe_vip(&pkt))       /* no service has this address */
		return verdict(&pkt, XDP_PASS, NO_REASON);

	/* Known flow: keep its backend while that backend is active and of
	 * the flow's service (a draining backend, weight 0, is out of the ring
	 * but still active), unless the packet starts a new flow on the old
	 * entry (ct_stale()).  The backend's own copy of its service's key
	 * answers for the service (known_flow()); otherwise, and for every
	 * other packet, lb_services does: not a service, pass. */
	found = ct_find(&pkt, cfg, &ref);
	if (found && !ref.stale)
		ct = &ref.copy;
	if (ct)
		be = known_flow(&pkt, ct);
	if (!be) {
		svc = lookup_service(&pkt);
		if (!svc)
			return verdict(&pkt, XDP_PASS, NO_REASON);
		if (ct)
			be = usable_backend(ct->backend_id, svc, pkt.flow.family);
	}
	if (be) {
		known = 1;
		be_id = ct->backend_id;
		nat_port = ct->nat_port;
	} else {
		/* A new flow, or its backend is gone: scheduled afresh.  With
		 * ``found``, ref.copy is the entry it had. */
		be_id = pick_backend(&pkt, svc);
		be = usable_backend(be_id, svc, pkt.flow.family);
		if (!be) {
			lb_debug("no backend for service %u", svc->id);
			return verdict(&pkt, XDP_DROP, XDP_LB_STAT_NO_BACKEND);
		}
		if (found && ref.copy.backend_id == be_id) {
			/* The new flow lands where the old one was: same entry
			 * and NAT port, seen now. */
			known = 1;
			nat_port = ref.copy.nat_port;
			new_ct = ref.copy;
			new_ct.last_seen = cache_clock(&pkt);
			ct_store(&pkt, &ref, &new_ct);
		}
	}

	/* ---- act: dsr ---- */
	if (cfg->mode == XDP_LB_MODE_DSR) {
		if (!known) {
			lb_debug("dsr: new flow to backend %u", be_id);
			new_ct.backend_id = be_id;
			new_ct.last_seen = cache_clock(&pkt);
			ct_store(&pkt, &ref, &new_ct);
		}
		/* Route towards the backend, packet addresses unchanged: only
		 * the MACs change.  Unresolved: the kernel gets it untouched. */
		hop = next_hop(ctx, &pkt, be_id, NULL, be->addr, pkt.flow.sport,
			       pkt.flow.dport, &action);
		if (hop != HOP_SEND)
			return verdict(&pkt, XDP_PASS, XDP_LB_STAT_FIB_MISS);
		count(&lb_be_stats, be_id, pkt.len);
		return verdict(&pkt, action, NO_REASON);
	}

	/* ---- act: nat ---- */
	bport = be->port ? be->port : pkt.flow.dport;
	snat = pkt.flow.family == AF_INET ? &cfg->snat_v4 : cfg->snat_v6;
	if (!(cfg->flags & (pkt.flow.family == AF_INET ? XDP_LB_CFG_SNAT_V4 : XDP_LB_CFG_SNAT_V6)))
		return verdict(&pkt, XDP_DROP, NO_REASON);  /* no source address to NAT to */
	if (!nat_port) {
		nat_port = nat_alloc_port(&pkt, cfg, be, be_id, snat, bport);
		if (!nat_port) {
			lb_debug("no free nat port for service %u", be->service_id);
			return verdict(&pkt, XDP_DROP, XDP_LB_STAT_CT_FULL);
		}
		lb_debug("nat: new flow to backend %u, port %u", be_id, bpf_ntohs(nat_port));
		if (found)
			nat_release(&pkt, snat, &ref.copy);
		new_ct.backend_id = be_id;
		new_ct.nat_port = nat_port;
		new_ct.last_seen = cache_clock(&pkt);
		ct_store(&pkt, &ref, &new_ct);
	}

	if (is_aggregate(ctx, &pkt)) {          /* the kernel forwards it */
		rewrite_l3l4(&pkt, snat, be->addr, nat_port, bport);
		count(&lb_be_stats, be_id, pkt.len);
		return verdict(&pkt, XDP_PASS, NO_REASON);
	}
	hop = next_hop(ctx, &pkt, be_id, snat, be->addr, nat_port, bport, &action);
	if (hop == HOP_FAIL)
		return verdict(&pkt, XDP_PASS, XDP_LB_STAT_FIB_MISS);
	rewrite_l3l4(&pkt, snat, be->addr, nat_port, bport);
	count(&lb_be_stats, be_id, pkt.len);
	if (hop == HOP_NO_NEIGH)    /* the kernel forwards the rewritten packet */
		return verdict(&pkt, XDP_PASS, XDP_LB_STAT_FIB_MISS);
	return verdict(&pkt, action, NO_REASON);
}

char _license[] SEC("license") = "Dual BSD/GPL";
