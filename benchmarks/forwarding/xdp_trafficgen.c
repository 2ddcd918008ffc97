// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Traffic generator of the forwarding benchmark, run by BPF_PROG_TEST_RUN
 * with BPF_F_TEST_XDP_LIVE_FRAMES (benchmarks/forwarding/trafficgen.py):
 * the kernel hands it page-pool frames "received" on the client's eth0 and
 * transmits what it returns XDP_TX for out of that device, as an XDP frame,
 * into the peer (the balancer's front0): no socket, no sk_buff on the way.
 *
 * Each run copies the next prepared frame (userspace fills gen_frames with
 * whole Ethernet/IPv4/UDP frames, checksums included, one per flow) over the
 * page.  The whole frame is written every time because the kernel does not
 * restore page contents when it recycles a page, and the path it came back
 * from (a NAT rewrite, the stack) may have changed them.
 *
 * Rate: with gen_config.interval_ns set, a frame goes out only when its
 * time has come (one every interval_ns on this CPU); the runs in between
 * return XDP_DROP (the page goes straight back to the pool), so the
 * generator spins between frames and its CPU time says nothing at a set
 * rate.  BPF_PROG_TEST_RUN sets up a page pool per call (about 20 ms
 * here), so pacing from userspace with small calls cannot work.
 *
 * gen_sent counts the frames handed to the kernel for transmission: what
 * the generator claims to send (tests/dataplane/test_trafficgen.py checks
 * it against a counter on the peer). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define GEN_FRAME_LEN 64	/* bytes per slot; frames are 60 (64 on the wire with the FCS) */
#define GEN_FRAMES_MAX 65536	/* prepared frames at most (a power of two) */

struct gen_frame {
	__u8 data[GEN_FRAME_LEN];
};

struct gen_config {
	__u32 mask;		/* frames in use - 1 (their count is a power of two) */
	__u32 pad;
	__u64 interval_ns;	/* 0: every run transmits (full speed) */
};

struct gen_pace {
	__u64 next_ns;		/* when the next frame is due (bpf_ktime_get_ns) */
};

/* Frames up to this late are caught up (in a burst): the kernel's set-up
 * of each call (its page pool) pauses the generator for about 20 ms.  Later
 * than that (a preempted generator) the schedule restarts. */
#define GEN_MAX_LAG_NS 50000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_frame);
	__uint(max_entries, GEN_FRAMES_MAX);
} gen_frames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_config);
	__uint(max_entries, 1);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} gen_sent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_pace);
	__uint(max_entries, 1);
} gen_pace SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct gen_config *cfg;
	struct gen_pace *pace;
	struct gen_frame *f;
	__u32 key = 0, idx;
	__u64 *sent, now;

	cfg = bpf_map_lookup_elem(&gen_config, &key);
	sent = bpf_map_lookup_elem(&gen_sent, &key);
	pace = bpf_map_lookup_elem(&gen_pace, &key);
	if (!cfg || !sent || !pace)
		return XDP_ABORTED;
	if (cfg->interval_ns) {
		now = bpf_ktime_get_ns();
		if (now < pace->next_ns)
			return XDP_DROP;
		if (now - pace->next_ns > GEN_MAX_LAG_NS)
			pace->next_ns = now;
		pace->next_ns += cfg->interval_ns;
	}
	/* The page holds the frame userspace passed in (data_in): 60 bytes. */
	if (data + GEN_FRAME_LEN - 4 > data_end)
		return XDP_ABORTED;
	idx = (__u32)*sent & cfg->mask;
	f = bpf_map_lookup_elem(&gen_frames, &idx);
	if (!f)
		return XDP_ABORTED;
	__builtin_memcpy(data, f->data, GEN_FRAME_LEN - 4);
	*sent += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
