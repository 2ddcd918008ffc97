// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Receiver of the forwarding benchmark, attached to each backend's eth0:
 * counts the UDP packets to the benchmark's port (per CPU) and drops
 * them, so the backend spends nothing on them beyond the count.  Other
 * traffic (ARP, neighbour discovery) passes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef BENCH_PORT
#define BENCH_PORT 9000
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} rx_count SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 key = 0;
	__u64 *n;

	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP || ip->ihl != 5 ||
	    udp->dest != bpf_htons(BENCH_PORT))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&rx_count, &key);
	if (n)
		*n += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
