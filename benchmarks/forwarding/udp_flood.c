// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Traffic generator of the forwarding benchmark (xdp-trafficgen does not
 * load on this kernel): FLOWS connected UDP sockets, source ports
 * SPORT..SPORT+FLOWS-1, sending PAYLOAD-byte datagrams with sendmmsg in
 * batches, round robin over the sockets, for SECONDS seconds or COUNT
 * datagrams, whichever comes first.  Prints one line:
 *   sent=<n> errors=<n> seconds=<wall> utime=<s> stime=<s>
 *
 *   udp_flood DST_IP DST_PORT SRC_IP SPORT FLOWS SECONDS COUNT PAYLOAD
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_FLOWS 1024

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_in dst = { .sin_family = AF_INET }, src = { .sin_family = AF_INET };
	static char payload[1500];
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { .iov_base = payload };
	int fds[MAX_FLOWS], flows, i, n;
	unsigned long long sent = 0, errors = 0, count, iter = 0;
	double seconds, start, deadline;
	struct rusage ru;

	if (argc != 9) {
		fprintf(stderr, "usage: %s DST_IP DST_PORT SRC_IP SPORT FLOWS SECONDS COUNT PAYLOAD\n", argv[0]);
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &src.sin_addr) != 1) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	dst.sin_port = htons(atoi(argv[2]));
	flows = atoi(argv[5]);
	seconds = atof(argv[6]);
	count = strtoull(argv[7], NULL, 10);
	iov.iov_len = atoi(argv[8]);
	if (flows < 1 || flows > MAX_FLOWS || iov.iov_len > sizeof(payload) || seconds <= 0 || seconds > 120) {
		fprintf(stderr, "bad FLOWS (1..%d), PAYLOAD or SECONDS (0..120]\n", MAX_FLOWS);
		return 2;
	}
	for (i = 0; i < flows; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
		src.sin_port = htons(atoi(argv[4]) + i);
		if (fds[i] < 0 || bind(fds[i], (void *)&src, sizeof(src)) || connect(fds[i], (void *)&dst, sizeof(dst))) {
			perror("socket/bind/connect");
			return 1;
		}
	}
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	start = now();
	deadline = start + seconds;
	for (i = 0; sent < count; i = (i + 1) % flows) {
		if ((iter++ & 31) == 0 && now() >= deadline)
			break;
		n = sendmmsg(fds[i], msgs, BATCH, 0);
		if (n < 0) {
			if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
				perror("sendmmsg");
				return 1;
			}
			errors++;
			continue;
		}
		sent += n;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("sent=%llu errors=%llu seconds=%.3f utime=%.3f stime=%.3f\n", sent, errors, now() - start,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	return 0;
}
