/* context: config + registry + connection pool (core-internal). */
#ifndef MC_CORE_CONTEXT_H
#define MC_CORE_CONTEXT_H

#include <pthread.h>
#include <time.h>
#include "config.h"
#include "lifecycle.h"
#include "loader.h"
#include "log.h"
#include "smtp.h"
#include "store.h"

struct mc_context {
    mc_host_ctx     hc;        /* first: what plugins get; the log sink, level,
                                  secrets, state_dir (hc.state_dir), token store */
    mc__config     *cfg;       /* the current config (life.gen->cfg), NULL with
                                  MC_CONTEXT_NO_CONFIG; a reload replaces it:
                                  a call in flight uses its mc__gen's cfg */
    mc__registry   *reg;
    pthread_mutex_t lock;      /* pools, generations, the reaper */
    pthread_mutex_t edit_lock; /* serialises edits and reloads: each builds on the
                                  current config and swaps it (never held by a send) */
    pthread_cond_t  freed;     /* a connection went back or closed */
    mc__life        life;      /* generations, pools, reaper: lifecycle.h */
    mc__store       store;     /* the config's token-store plugin, opened on first use */
};

/** The context an hc belongs to (every hc the core hands out is a
 *  context's). */
static inline mc_context *mc__context_of(mc_host_ctx *hc)
{
    return (mc_context *)(void *)hc;
}

/** <state>: $MAILCONN_STATE_DIR, $STATE_DIRECTORY, $XDG_STATE_HOME/mailconn,
 *  ~/.local/state/mailconn. malloc'd. */
char *mc__state_dir(void);

#endif
