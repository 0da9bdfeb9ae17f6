/* A TCP stream in the clear, shared by the plain and starttls transports
 * (hidden: neither exports anything but mc_plugin_entry). */
#ifndef MC_PLUGINS_COMMON_FDSTREAM_H
#define MC_PLUGINS_COMMON_FDSTREAM_H

#include "mailconn/plugin.h"

/** Remember the host table (each plugin's entry calls it). */
void mc__fd_stream_set_host(const mc_host_api *host);
/** Connect over TCP (host->tcp_connect) by o->deadline_ms; reads keep read
 *  deadlines, a write fails after timeout_ms without progress.
 *  @return 0, MC_ENET, MC_ETIMEOUT, MC_ENOMEM. */
int mc__fd_stream_open(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                       mc_err **err);

#endif
