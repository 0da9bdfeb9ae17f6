/* context: config, plugins and the connection pool behind the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "log.h"

#define FLAGS_KNOWN (MC_CONTEXT_ALL_PLUGINS | MC_CONTEXT_SECRETS | MC_CONTEXT_ONE_SERVER \
                     | MC_CONTEXT_NO_CONFIG)

char *mc__state_dir(void)
{
    const char *v;
    char *out = NULL;
    if ((v = getenv("MAILCONN_STATE_DIR")) && *v)
        return strdup(v);
    if ((v = getenv("STATE_DIRECTORY")) && *v) {
        /* systemd may pass several, colon-separated: the first is ours */
        size_t n = strcspn(v, ":");
        return strndup(v, n);
    }
    if ((v = getenv("XDG_STATE_HOME")) && *v) {
        if (asprintf(&out, "%s/mailconn", v) < 0)
            return NULL;
        return out;
    }
    v = getenv("HOME");
    if (asprintf(&out, "%s/.local/state/mailconn", v && *v ? v : "/root") < 0)
        return NULL;
    return out;
}

int mc_context_new(mc_context **out, const mc_context_options *opts, mc_err **err)
{
    mc_context_options dflt = MC_CONTEXT_OPTIONS_INIT;
    int rc;

    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "out is NULL");
    *out = NULL;
    if (!opts)
        opts = &dflt;
    if (opts->version != MC_CONTEXT_OPTIONS_VERSION || (opts->flags & ~FLAGS_KNOWN))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_context_options: unknown version or flags");
    mc__log_setup(opts->log_level, opts->log, opts->log_payload);

    mc_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_mutex_init(&ctx->edit_lock, NULL);
    pthread_cond_init(&ctx->freed, NULL);
    mc__life_init(ctx);

    if ((rc = mc__registry_new(&ctx->reg, opts->plugin_dir, err)) < 0)
        goto fail;
    if (opts->flags & MC_CONTEXT_NO_CONFIG) {
        mc__registry_load_all(ctx->reg);
        *out = ctx;
        return 0;
    }
    if (!(ctx->state_dir = mc__state_dir())) {
        rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
        goto fail;
    }

    char *path = mc__config_find(opts->config_path);
    if (!path) {
        rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
        goto fail;
    }
    rc = mc__config_load(&ctx->cfg, path, err);
    free(path);
    if (rc < 0)
        goto fail;

    const mc_server *only = NULL;
    if (opts->flags & MC_CONTEXT_ONE_SERVER) {
        only = mc__config_server(ctx->cfg, opts->server);
        if (!only) {
            if (opts->server)
                rc = mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                   "no server named \"%s\" in %s", opts->server, ctx->cfg->path);
            else
                rc = mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                   "no default server in %s: name one with --server, or mark one "
                                   "\"default\": true", ctx->cfg->path);
            goto fail;
        }
    }
    if (opts->flags & MC_CONTEXT_ALL_PLUGINS)
        mc__registry_load_all(ctx->reg);
    if ((rc = mc__config_prepare(ctx->cfg, ctx->reg, only, err)) < 0)
        goto fail;
    if ((opts->flags & MC_CONTEXT_SECRETS) && (rc = mc__config_check_secrets(ctx->cfg, err)) < 0)
        goto fail;

    if ((rc = mc__life_adopt(ctx, err)) < 0)   /* the first generation: lifecycle.c */
        goto fail;
    *out = ctx;
    return 0;
fail:
    mc_context_free(ctx);
    return rc;
}

void mc_context_free(mc_context *ctx)
{
    if (!ctx)
        return;
    mc__life_fini(ctx);   /* reaper, pooled connections, the config */
    mc__registry_free(ctx->reg);
    free(ctx->state_dir);
    pthread_cond_destroy(&ctx->freed);
    pthread_mutex_destroy(&ctx->lock);
    pthread_mutex_destroy(&ctx->edit_lock);
    free(ctx);
}

const char *mc_context_config_path(const mc_context *ctx)
{
    return ctx && ctx->cfg ? ctx->cfg->path : NULL;
}

size_t mc_context_server_count(const mc_context *ctx)
{
    return ctx && ctx->cfg ? ctx->cfg->n_servers : 0;
}

const mc_server *mc_context_server_at(const mc_context *ctx, size_t i)
{
    return ctx && ctx->cfg && i < ctx->cfg->n_servers ? &ctx->cfg->servers[i] : NULL;
}

const mc_server *mc_context_server(const mc_context *ctx, const char *name)
{
    return ctx && ctx->cfg ? mc__config_server(ctx->cfg, name) : NULL;
}

const char *mc_server_name(const mc_server *srv) { return srv ? srv->name : NULL; }
const char *mc_server_host(const mc_server *srv) { return srv ? srv->host : NULL; }
unsigned mc_server_port(const mc_server *srv) { return srv ? srv->port : 0; }
const char *mc_server_transport(const mc_server *srv) { return srv ? srv->transport : NULL; }
const char *mc_server_provider(const mc_server *srv) { return srv ? srv->auth_provider : NULL; }
const char *mc_server_sender(const mc_server *srv) { return srv ? srv->sender_address : NULL; }
bool mc_server_is_default(const mc_server *srv) { return srv && srv->is_default; }

int mc_context_set_default(mc_context *ctx, const char *name, mc_err **err)
{
    if (!ctx || !ctx->cfg || !name)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "no context or name");
    pthread_mutex_lock(&ctx->lock);
    int rc = mc__config_set_default(ctx->cfg, name, err);
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

struct visit {
    mc_plugin_visit_fn *fn;
    void *payload;
};

static void visit_one(const mc__plugin *p, void *payload)
{
    struct visit *v = payload;
    v->fn(mc__plugin_kind_name(p->desc->kind), p->desc->name, p->desc->version,
          p->desc->summary, p->file, v->payload);
}

void mc_context_plugins(mc_context *ctx, mc_plugin_visit_fn *fn, void *payload)
{
    if (!ctx || !fn)
        return;
    struct visit v = { fn, payload };
    mc__registry_each(ctx->reg, visit_one, &v);
}
