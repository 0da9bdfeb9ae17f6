/* lifecycle: the context's config generations (reload), the per-server
 * connection pools they share, disconnect and the idle reaper
 * (core-internal).
 *
 * A generation (mc__gen) is one config with its pools. The context holds a
 * reference to the current one; every call that uses the config (mc_send,
 * a session) takes one under ctx->lock (mc__gen_take) and drops it at its
 * end (mc__gen_drop), so a reload never frees a config under a call in
 * flight: the old generation goes when its last user drops it.
 *
 * Pools are shared between generations: a server whose object is the same
 * in the old and the new config (same name, same JSON text but "default")
 * keeps its pool, so its idle connections, its in-use ones and its
 * max_connections count survive a reload. A server that changed or went
 * away has its pool retired: idle connections QUIT at once, those in use
 * QUIT when they come back, nothing is pooled there again.
 *
 * Locking: every member below is under ctx->lock, except where noted. */
#ifndef MC_CORE_LIFECYCLE_H
#define MC_CORE_LIFECYCLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"
#include "smtp.h"

typedef struct mc_context mc_context;

typedef struct mc__pooled {
    mc__smtp  *smtp;
    long long  idle_since;     /* mc__mono_ms() (net.h) when it went back to the pool */
} mc__pooled;

/** Per-server pool: idle connections (oldest first) and how many exist. */
typedef struct mc__pool {
    mc__pooled *idle;
    size_t      n_idle;
    size_t      cap_idle;
    int         open;          /* idle + in use */
    unsigned    epoch;         /* bumped by disconnect: connections taken out
                                  under an older epoch QUIT when returned */
    bool        retired;       /* its server changed or went away in a reload */
    int         idle_timeout_s;/* of its server: the reaper's limit */
    unsigned    gens;          /* generations holding it */
} mc__pool;

/** One config and its pools (see the top of this file). */
typedef struct mc__gen {
    mc__config    *cfg;        /* owned */
    mc__pool     **pools;      /* one per server, by mc_server.index */
    size_t         n;          /* cfg->n_servers */
    unsigned       refs;       /* the context's + each call in flight */
} mc__gen;

/** The context's lifecycle state, embedded in struct mc_context. */
typedef struct mc__life {
    mc__gen        *gen;       /* current; NULL without a config */
    pthread_cond_t  wake;      /* CLOCK_MONOTONIC: the reaper sleeps on it */
    pthread_t       reaper;
    bool            reaper_on; /* started (lazily, by the first idle connection) */
    bool            stop;      /* mc_context_free: the reaper returns */
    long long       next_due;  /* mc__mono_ms() of the reaper's next wake-up */
} mc__life;

/** Set up ctx->life (after ctx->lock is initialised). */
void mc__life_init(mc_context *ctx);
/** Make ctx->cfg (loaded and prepared by mc_context_new) the first
 *  generation. @return 0 or MC_ENOMEM (ctx->cfg is then left as it was). */
int  mc__life_adopt(mc_context *ctx, mc_err **err);
/** Stop and join the reaper, QUIT every idle connection, free the current
 *  generation and its config (or ctx->cfg when none was adopted). For
 *  mc_context_free: no call may be in flight. */
void mc__life_fini(mc_context *ctx);

/**
 * Swap the context's config for `next` (loaded, validated and prepared
 * against ctx->reg, e.g. by mc_context_reload or an edit): new calls use
 * `next`; calls in flight finish on the old config, which is freed when the
 * last of them ends. Servers unchanged (name and JSON text but "default")
 * keep their pool; the pools of servers that changed or went away are
 * retired (idle connections QUIT here, in-use ones when returned).
 * Thread-safe. On success the context owns `next`; on error (MC_ENOMEM,
 * MC_EINVAL) nothing changed and the caller still owns it.
 */
int mc__context_swap_config(mc_context *ctx, mc__config *next, mc_err **err);

/** A reference to the current generation (NULL without a config). */
mc__gen *mc__gen_take(mc_context *ctx);
/** Drop a reference from mc__gen_take (NULL is fine); the last one frees
 *  the generation. Not with ctx->lock held. */
void mc__gen_drop(mc_context *ctx, mc__gen *g);

/** With ctx->lock held: a connection went idle in pool p at `since`; start
 *  the reaper if it is not running, wake it when this is due earlier than
 *  its next wake-up. */
void mc__life_idle_locked(mc_context *ctx, const mc__pool *p, long long since);

#endif
