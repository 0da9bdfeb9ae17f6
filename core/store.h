/* store: the context's token store (DESIGN.md "Token stores and fleets"):
 * the application's (mc_context_options.token_store), else the config's
 * token-store plugin, else the built-in file store (core-internal). */
#ifndef MC_CORE_STORE_H
#define MC_CORE_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include "config.h"

/** One per context. The plugin named by the config's "token_store" is
 *  opened on first use (host->token_store: the first OAuth op, or
 *  mc_context_token_store), never when the context is made, so `check`
 *  validates without touching a database; it stays open until
 *  mc_context_free closes it (before the plugin is unloaded). An open that
 *  fails is tried again on the next use; meanwhile every op of the store
 *  returns that failure (the engine never falls back to the file store). */
typedef struct mc__store {
    pthread_mutex_t lock;
    const mc_store_plugin_ops *plugin;   /* NULL: no plugin */
    char           *type;                /* the plugin's name */
    mc_plugin_cfg   cfg;                 /* its object (a reference held), path "token_store" */
    void           *handle;              /* open's *store */
    bool            open;
    int             fail_code;           /* the last open's failure, or 0 */
    int             fail_outcome;
    char            fail_message[256];
} mc__store;

void mc__store_init(mc__store *s);
/** Take the prepared config's plugin (cfg->token_store_ops), if any.
 *  @return 0, MC_ENOMEM. */
int  mc__store_setup(mc__store *s, const mc__config *cfg, mc_err **err);
/** Whether cfg names the token store s was set up with (reload). */
bool mc__store_same(const mc__store *s, const mc__config *cfg);
/** The plugin's ops and their `store` argument, opening it on first use;
 *  NULL without a plugin. */
const mc_token_store_ops *mc__store_ops(mc_host_ctx *hc, mc__store *s, void **arg);
/** Close the plugin's store and release s. */
void mc__store_fini(mc__store *s);

#endif
