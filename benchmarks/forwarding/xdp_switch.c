// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The fast path of the forwarding benchmark's switch, attached to the
 * bridge port that faces the balancer (the lab's sw namespace): IPv4
 * frames to a known destination MAC go straight to that backend's port by
 * XDP redirect, as a hardware switch would forward them without the host's
 * CPU.  Everything else (ARP, unknown destinations) passes to the bridge.
 *
 * On veth the Linux bridge turns every XDP frame into an sk_buff and costs
 * more CPU per packet than a balancer does; the same for every method, it
 * would hide the differences the benchmark is there to show.  This program
 * costs one lookup and one redirect per packet, also the same for every
 * method. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);		/* destination MAC in the low 6 bytes, as in the frame */
	__type(value, __u32);		/* ifindex of the port (this namespace) */
	__uint(max_entries, 64);
} switch_ports SEC(".maps");

SEC("xdp")
int xdp_switch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 mac = 0;
	__u32 *port;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	__builtin_memcpy(&mac, eth->h_dest, ETH_ALEN);
	port = bpf_map_lookup_elem(&switch_ports, &mac);
	if (!port)
		return XDP_PASS;
	return bpf_redirect(*port, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
