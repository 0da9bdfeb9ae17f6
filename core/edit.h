/* edit: changing the config of a live context (core-internal). */
#ifndef MC_CORE_EDIT_H
#define MC_CORE_EDIT_H

#include "context.h"

/**
 * Make `next` (validated and prepared: mc__config_prepare) the config of
 * ctx. Under ctx->lock: the pools array is rebuilt for next's servers; a
 * server whose object is unchanged (same name, equal JSON) keeps its pool
 * and idle connections; the idle connections of servers that changed or
 * disappeared are closed (QUIT, after the lock is released); the old
 * config is freed. Takes next in every case (freed on error).
 *
 * Current limits (mc_context_reload will build on this and lift them):
 * - no call may be in flight on ctx: a session holds a pointer to its
 *   mc_server in the old config and returns its connection to the pool of
 *   that server's old index; mc_server pointers handed out before are
 *   invalid after the swap;
 * - readers of ctx->cfg outside ctx->lock (mc_context_server, mc_send's
 *   lookup) are not synchronised with the swap.
 * @return 0, MC_ENOMEM (nothing changed).
 */
int mc__context_swap_config(mc_context *ctx, mc__config *next, mc_err **err);

#endif
