/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Stub header for the deliberately broken data plane (see xdp_loadbalancer.c). */
#ifndef XDP_LB_H
#define XDP_LB_H
#endif
