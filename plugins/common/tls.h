/* Shared TLS stream of the tls and starttls transport plugins (compiled into
 * both modules; hidden: neither exports anything but mc_plugin_entry).
 *
 * One stream type: a TCP socket that reads and writes in the clear until
 * TLS is up, and through SSL after. OpenSSL 3, nothing process-wide. */
#ifndef MC_PLUGINS_COMMON_TLS_H
#define MC_PLUGINS_COMMON_TLS_H

#include <stdbool.h>
#include "mailconn/plugin.h"

/** Remember the host table (called by each plugin's entry): the process's
 *  one table, the same for every context. Everything per context comes
 *  with each call (hc) and stays in the stream (mc_stream.hc). */
void mc__tls_set_host(const mc_host_api *host);

/** Connect over TCP (host->tcp_connect); with `implicit`, do the TLS
 *  handshake at once: both by one deadline, o->deadline_ms (0: timeout_ms
 *  from the call). The stream keeps read deadlines (set_read_deadline) and
 *  fails a write after timeout_ms without progress.
 *  @return 0, MC_ENET, MC_ETIMEOUT (stage connect or tls),
 *  MC_ETLS (stage tls, outcome PERMANENT), MC_ECONFIG (ca_file unreadable:
 *  outcome CONFIG, stage tls), MC_ENOMEM. */
int mc__tls_stream_open(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o, bool implicit,
                        mc_err **err);

/** STARTTLS: upgrade a clear stream opened by mc__tls_stream_open in place,
 *  the handshake by o->deadline_ms (0: timeout_ms from the call).
 *  Bytes already waiting from the server: MC_EREFUSED, outcome PERMANENT,
 *  stage starttls (response injection). hc: the context logging the
 *  handshake (the stream's own, s->hc, when NULL). On failure the stream stays in the
 *  clear and the caller closes it. @return 0, MC_EREFUSED, MC_ETLS,
 *  MC_ECONFIG, MC_ENET, MC_ETIMEOUT. */
int mc__tls_stream_upgrade(mc_host_ctx *hc, mc_stream *s, const mc_connect_opts *o, mc_err **err);

#endif
