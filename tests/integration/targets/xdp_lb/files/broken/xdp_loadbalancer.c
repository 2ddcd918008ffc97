// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Deliberately broken data plane for the integration test: it compiles, but
 * reads the packet without a bounds check, so the kernel verifier refuses it
 * ("invalid access to packet").
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xdp_lb.h"

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;

	return data[64] ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
