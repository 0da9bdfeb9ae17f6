/* The host's TLS layer (ABI 2.1): the ops table of the internal module
 * engine-tls.so (kind MC_PLUGIN_TLS_ENGINE). Private to the core and the
 * module: not part of plugin.h. host->tls_client and host->tls_upgrade load
 * the module through the context's registry on first use and call these. */
#ifndef MC_CORE_TLS_ENGINE_H
#define MC_CORE_TLS_ENGINE_H

#include "mailconn/plugin.h"

typedef struct mc__tls_engine_ops {
    size_t size;
    /** host->tls_client: see plugin.h. */
    int (*client)(mc_host_ctx *hc, int fd, const mc_connect_opts *o, mc_stream **out,
                  mc_err **err);
    /** host->tls_upgrade: a TLS stream over (*s)'s own read/write (any
     *  stream); it owns *s and closes it with itself. */
    int (*upgrade)(mc_host_ctx *hc, mc_stream **s, const mc_connect_opts *o, mc_err **err);
} mc__tls_engine_ops;

#endif
