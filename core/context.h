/* context: config + registry + connection pool (core-internal). */
#ifndef MC_CORE_CONTEXT_H
#define MC_CORE_CONTEXT_H

#include <pthread.h>
#include <time.h>
#include "config.h"
#include "loader.h"
#include "log.h"
#include "smtp.h"

typedef struct mc__pooled {
    mc__smtp *smtp;
    time_t    idle_since;
} mc__pooled;

/** Per-server pool: idle connections and how many exist in all. */
typedef struct mc__pool {
    mc__pooled *idle;
    size_t      n_idle;
    size_t      cap_idle;
    int         open;          /* idle + in use */
} mc__pool;

struct mc_context {
    mc_host_ctx     hc;        /* first: what plugins get; the log sink, level,
                                  secrets, state_dir (hc.state_dir), token store */
    mc__config     *cfg;       /* NULL with MC_CONTEXT_NO_CONFIG */
    mc__registry   *reg;
    pthread_mutex_t lock;      /* pools */
    pthread_cond_t  freed;     /* a connection went back or closed */
    mc__pool       *pools;     /* one per server, by index */
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
