/* context: config, plugins and the connection pool behind the public API. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "log.h"

#define FLAGS_KNOWN (MC_CONTEXT_ALL_PLUGINS | MC_CONTEXT_SECRETS | MC_CONTEXT_ONE_SERVER \
                     | MC_CONTEXT_NO_CONFIG | MC_CONTEXT_CONFIG_ONLY)

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

/* The members of mc_context_options version 1 (before config_json). */
#define OPTIONS_V1_SIZE offsetof(mc_context_options, config_json)

int mc_context_new(mc_context **out, const mc_context_options *opts_in, mc_err **err)
{
    mc_context_options opts = MC_CONTEXT_OPTIONS_INIT;
    int rc;

    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "out is NULL");
    *out = NULL;
    if (opts_in) {
        /* a caller built for version 1 has nothing after log_payload: read
         * only what its version has */
        if (opts_in->version == 1)
            memcpy(&opts, opts_in, OPTIONS_V1_SIZE);
        else if (opts_in->version == MC_CONTEXT_OPTIONS_VERSION)
            opts = *opts_in;
        else
            return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                                 "mc_context_options: unknown version %u", opts_in->version);
    }
    if (opts.flags & ~FLAGS_KNOWN)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_context_options: unknown flags");
    if (opts.token_store && opts.token_store->size < sizeof(mc_token_store_ops))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_context_options.token_store: size %zu is not that of "
                             "mc_token_store_ops (%zu)", opts.token_store->size,
                             sizeof(mc_token_store_ops));

    mc_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
    mc__hc_init(&ctx->hc, opts.log_level, opts.log, opts.log_payload);
    ctx->hc.token_store = opts.token_store;
    ctx->hc.token_store_payload = opts.token_store ? opts.token_store_payload : NULL;
    mc__store_init(&ctx->store);
    ctx->hc.store = &ctx->store;
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_mutex_init(&ctx->edit_lock, NULL);
    pthread_cond_init(&ctx->freed, NULL);
    mc__life_init(ctx);

    if ((rc = mc__registry_new(&ctx->reg, opts.plugin_dir, err)) < 0)
        goto fail;
    mc__registry_set_log(ctx->reg, &ctx->hc);
    ctx->hc.reg = ctx->reg;   /* host->tls_client / tls_upgrade load engine-tls here */
    ctx->hc.state_dir = opts.state_dir ? strdup(opts.state_dir) : mc__state_dir();
    if (!ctx->hc.state_dir) {
        rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
        goto fail;
    }
    if (opts.flags & MC_CONTEXT_NO_CONFIG) {
        mc__registry_load_all(ctx->reg);
        *out = ctx;
        return 0;
    }

    if (opts.config_json) {
        /* in memory: cfg->path stays NULL, so nothing is ever saved */
        rc = mc__config_parse(&ctx->cfg, opts.config_json, strlen(opts.config_json), err);
    } else {
        char *path = mc__config_find(opts.config_path);
        if (!path) {
            rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "out of memory");
            goto fail;
        }
        rc = mc__config_load(&ctx->cfg, path, err);
        free(path);
    }
    if (rc < 0)
        goto fail;
    const char *where = ctx->cfg->path ? ctx->cfg->path : "the config";

    const mc_server *only = NULL;
    if (opts.flags & MC_CONTEXT_ONE_SERVER) {
        only = mc__config_server(ctx->cfg, opts.server);
        if (!only) {
            if (opts.server)
                rc = mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                   "no server named \"%s\" in %s", opts.server, where);
            else
                rc = mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                   "no default server in %s: name a server, or mark one "
                                   "\"default\": true", where);
            goto fail;
        }
    }
    if (!(opts.flags & MC_CONTEXT_CONFIG_ONLY)) {
        if (opts.flags & MC_CONTEXT_ALL_PLUGINS)
            mc__registry_load_all(ctx->reg);
        if ((rc = mc__config_prepare(ctx->cfg, ctx->reg, only, err)) < 0)
            goto fail;
        if ((opts.flags & MC_CONTEXT_SECRETS)
            && (rc = mc__config_check_secrets(ctx->cfg, err)) < 0)
            goto fail;
        if ((rc = mc__store_setup(&ctx->store, ctx->cfg, err)) < 0)
            goto fail;
    }

    if ((rc = mc__life_adopt(ctx, err)) < 0)   /* the first generation: lifecycle.c */
        goto fail;
    *out = ctx;
    return 0;
fail:
    mc_context_free(ctx);
    return rc;
}

char *mc_config_find(const char *explicit_path)
{
    return mc__config_find(explicit_path);
}

void mc_log_failure(const char *config_path, const char *command, int exit_code,
                    const mc_err *err, const char *text)
{
    mc__toplog_failure(config_path, command, exit_code, err, text);
}

void mc_context_free(mc_context *ctx)
{
    if (!ctx)
        return;
    mc__life_fini(ctx);   /* reaper, pooled connections, the config */
    mc__store_fini(&ctx->store);   /* closed before its plugin is unloaded */
    ctx->hc.store = NULL;
    mc__registry_free(ctx->reg);
    pthread_cond_destroy(&ctx->freed);
    pthread_mutex_destroy(&ctx->lock);
    pthread_mutex_destroy(&ctx->edit_lock);
    mc__hc_destroy(&ctx->hc);   /* this context's secrets wiped; no other's touched */
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

int mc_context_token_store(mc_context *ctx, char *desc, size_t n, mc_err **err)
{
    if (!ctx || !desc || !n)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or buffer");
    if (ctx->hc.token_store) {
        snprintf(desc, n, "application");
        return 0;
    }
    if (!ctx->store.plugin) {
        snprintf(desc, n, "file %s/tokens", ctx->hc.state_dir ? ctx->hc.state_dir : "?");
        return 0;
    }
    snprintf(desc, n, "%s", ctx->store.type);
    void *arg = NULL;
    mc__store_ops(&ctx->hc, &ctx->store, &arg);
    pthread_mutex_lock(&ctx->store.lock);
    bool open = ctx->store.open;
    int code = ctx->store.fail_code ? ctx->store.fail_code : MC_EFILE;
    mc_outcome outcome = (mc_outcome)ctx->store.fail_outcome;
    char msg[sizeof(ctx->store.fail_message)];
    memcpy(msg, ctx->store.fail_message, sizeof(msg));
    void *handle = ctx->store.handle;
    const mc_store_plugin_ops *po = ctx->store.plugin;
    pthread_mutex_unlock(&ctx->store.lock);
    if (open && MC_SIZE_HAS(po, mc_store_plugin_ops, describe) && po->describe) {
        /* where it is and its health (the plugin's line, no secret) */
        char line[400] = "";
        mc_err *e = NULL;
        int rc = po->describe(handle, line, sizeof(line), &e);
        if (line[0])
            snprintf(desc, n, "%s %s", ctx->store.type, line);
        if (rc < 0) {
            if (err && !*err)
                *err = e;
            else
                mc_error_free(e);
            return rc;
        }
        mc_error_free(e);
    }
    if (open)
        return 0;
    return mc__error_set(err, code, outcome, MC_STAGE_OAUTH, "%s", msg);
}
