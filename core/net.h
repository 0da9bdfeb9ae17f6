/* net: TCP connect with bounded waits (core-internal, libc only). */
#ifndef MC_CORE_NET_H
#define MC_CORE_NET_H

#include "mailconn/plugin.h"

/** Resolve o->host (IPv4 and IPv6), try every address in turn with a
 *  non-blocking connect bounded by o->timeout_ms; the socket returned is
 *  blocking with SO_RCVTIMEO/SO_SNDTIMEO = timeout_ms, TCP_NODELAY and
 *  close-on-exec. @return 0, MC_ENET (refused, unreachable, unresolvable:
 *  transient, stage connect), MC_ETIMEOUT. */
int mc__tcp_connect(const mc_connect_opts *o, int *fd_out, mc_error **err);

#endif
