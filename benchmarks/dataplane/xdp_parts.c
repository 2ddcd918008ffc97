// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Benchmark parts: the expensive steps of the load balancer's conntrack-hit
 * path, one per program, so their cost can be read next to the whole.
 * Each returns XDP_TX when its step succeeded (run.py checks), and leaves
 * the frame alone, so the kernel's repeat measures the step every time.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdp_lb.h"

#define AF_INET 2
#define LAB_SRC 0xC6120101          /* 198.18.1.1 (dplab.py: xlbdp1's address) */
#define LAB_DST 0xC612010A          /* 198.18.1.10 (a neighbour on xlbdp1) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, XDP_LB_MAX_SERVICES);
} parts_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow);
	__type(value, struct lb_ct_entry);
	__uint(max_entries, XDP_LB_CT_SIZE);
} parts_flows SEC(".maps");

/* bpf_fib_lookup as xdp_lb calls it (IPv4, resolved neighbour). */
SEC("xdp")
int parts_fib(struct xdp_md *ctx)
{
	struct bpf_fib_lookup fib = {};

	fib.family = AF_INET;
	fib.l4_protocol = 6;
	fib.tot_len = 50;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = bpf_htonl(LAB_SRC);
	fib.ipv4_dst = bpf_htonl(LAB_DST);
	return bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) == BPF_FIB_LKUP_RET_SUCCESS ?
	       XDP_TX : XDP_PASS;
}

/* A hit in a HASH map keyed like lb_services (run.py inserts key vip[0]=1). */
SEC("xdp")
int parts_service(struct xdp_md *ctx)
{
	struct lb_service_key key = {};

	key.vip[0] = 1;
	return bpf_map_lookup_elem(&parts_services, &key) ? XDP_TX : XDP_PASS;
}

/* A hit in an LRU_HASH keyed like lb_ct (run.py inserts key src[0]=1). */
SEC("xdp")
int parts_ct(struct xdp_md *ctx)
{
	struct lb_flow key = {};

	key.src[0] = 1;
	return bpf_map_lookup_elem(&parts_flows, &key) ? XDP_TX : XDP_PASS;
}

/* The next-hop cache's clocks: a tick counter and the coarse clock. */
SEC("xdp")
int parts_jiffies(struct xdp_md *ctx)
{
	return bpf_jiffies64() ? XDP_TX : XDP_PASS;
}

SEC("xdp")
int parts_coarse_ns(struct xdp_md *ctx)
{
	return bpf_ktime_get_coarse_ns() ? XDP_TX : XDP_PASS;
}

SEC("xdp")
int parts_ktime_ns(struct xdp_md *ctx)
{
	return bpf_ktime_get_ns() ? XDP_TX : XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
