// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Benchmark baseline: the cheapest XDP program.  Measured the same way as
 * the load balancer, its time is the measuring loop's own overhead. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
