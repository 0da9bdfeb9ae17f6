/* net: TCP connect with bounded waits (core-internal, libc only). */
#ifndef MC_CORE_NET_H
#define MC_CORE_NET_H

#include "mailconn/plugin.h"

/** Resolve o->host (IPv4 and IPv6), try every address in turn with a
 *  non-blocking connect, all of them by o->deadline_ms (0: o->timeout_ms
 *  from now); the socket returned is blocking with SO_RCVTIMEO/SO_SNDTIMEO
 *  = timeout_ms, TCP_NODELAY and close-on-exec. @return 0, MC_ENET
 *  (refused, unreachable, unresolvable: transient, stage connect),
 *  MC_ETIMEOUT. */
int mc__tcp_connect(const mc_connect_opts *o, int *fd_out, mc_err **err);

/** CLOCK_MONOTONIC in milliseconds: the clock of every deadline. */
int64_t mc__mono_ms(void);

/** o's deadline (mc_connect_opts.deadline_ms of ABI 1.1), or timeout_ms
 *  from now when it has none. */
int64_t mc__connect_deadline(const mc_connect_opts *o);

#endif
