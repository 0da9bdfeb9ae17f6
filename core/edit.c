/* edit: the public editing calls (DESIGN.md "Embedding API", "Editing")
 * and the swap of a live context's config. The text side (put, remove,
 * reparse, save) is config.c's; here: locking, validation order, the
 * pools. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json_object.h>
#include <json-c/json_util.h>

#include "edit.h"
#include "error.h"
#include "log.h"

void mc_free(void *p)
{
    free(p);
}

/* The server object of s in its config's document, or NULL. */
static json_object *server_obj(const mc__config *cfg, const mc_server *s)
{
    json_object *servers = NULL;
    if (!cfg->doc || !json_object_object_get_ex(cfg->doc, "servers", &servers)
        || !json_object_is_type(servers, json_type_array)
        || s->index >= json_object_array_length(servers))
        return NULL;
    return json_object_array_get_idx(servers, s->index);
}

/* The swap itself, ctx->lock held. Connections to close go to *quit
 * (*n_quit of them), to be closed once the lock is released. */
static int swap_locked(mc_context *ctx, mc__config *next, mc__smtp ***quit, size_t *n_quit)
{
    mc__config *old = ctx->cfg;
    size_t n_old = old ? old->n_servers : 0;
    mc__pool *pools = calloc(next->n_servers ? next->n_servers : 1, sizeof(*pools));
    bool *kept = calloc(n_old ? n_old : 1, sizeof(*kept));
    if (!pools || !kept) {
        free(pools);
        free(kept);
        return MC_ENOMEM;
    }
    for (size_t j = 0; j < next->n_servers && ctx->pools; j++) {
        const mc_server *ns = &next->servers[j];
        for (size_t i = 0; i < n_old; i++) {
            const mc_server *os = &old->servers[i];
            if (kept[i] || !os->name || !ns->name || strcmp(os->name, ns->name) != 0)
                continue;
            json_object *a = server_obj(old, os), *b = server_obj(next, ns);
            if (a && b && json_object_equal(a, b)) {
                pools[j] = ctx->pools[i];           /* idle connections stay */
                kept[i] = true;
            }
            break;
        }
    }
    /* what is not kept closes */
    size_t n = 0;
    for (size_t i = 0; i < n_old && ctx->pools; i++)
        if (!kept[i])
            n += ctx->pools[i].n_idle;
    mc__smtp **q = n ? calloc(n, sizeof(*q)) : NULL;
    if (n && !q) {
        free(pools);
        free(kept);
        return MC_ENOMEM;
    }
    n = 0;
    for (size_t i = 0; i < n_old && ctx->pools; i++) {
        if (kept[i])
            continue;
        for (size_t k = 0; k < ctx->pools[i].n_idle; k++)
            q[n++] = ctx->pools[i].idle[k].smtp;
        free(ctx->pools[i].idle);
    }
    free(ctx->pools);
    free(kept);
    ctx->pools = pools;
    ctx->cfg = next;
    mc__config_free(old);
    pthread_cond_broadcast(&ctx->freed);
    *quit = q;
    *n_quit = n;
    return 0;
}

static void quit_all(mc__smtp **q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mc__smtp_quit(q[i]);
    free(q);
}

int mc__context_swap_config(mc_context *ctx, mc__config *next, mc_err **err)
{
    if (!ctx || !next) {
        mc__config_free(next);
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no context or config");
    }
    mc__smtp **q = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ctx->lock);
    int rc = swap_locked(ctx, next, &q, &n);
    pthread_mutex_unlock(&ctx->lock);
    if (rc < 0) {
        mc__config_free(next);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    }
    quit_all(q, n);
    return 0;
}

/* The text of the edited config -> validated, prepared, saved, swapped
 * in. ctx->lock is held across all of it, so two edits never build on
 * the same old config; nothing changes unless every step succeeds. */
static int apply_text(mc_context *ctx, char *text, size_t len, mc_err **err)
{
    mc__config *next = NULL;
    int rc = mc__config_reparse(&next, ctx->cfg, text, len, err);
    mc__text_free(text);
    if (rc == 0)
        rc = mc__config_prepare(next, ctx->reg, NULL, err);
    if (rc == 0)
        rc = mc__config_save(next, err);
    mc__smtp **q = NULL;
    size_t n = 0;
    if (rc == 0 && swap_locked(ctx, next, &q, &n) < 0)
        rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    else if (rc == 0)
        next = NULL;
    mc__config_free(next);
    pthread_mutex_unlock(&ctx->lock);
    quit_all(q, n);
    return rc;
}

int mc_context_put_server(mc_context *ctx, const char *server_json, mc_err **err)
{
    if (!ctx || !server_json)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or server");
    pthread_mutex_lock(&ctx->lock);
    char *text = NULL;
    size_t len = 0;
    int rc = ctx->cfg ? mc__config_put_text(&text, &len, ctx->cfg, server_json, err)
                      : mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                                      "the context has no config");
    if (rc < 0) {
        pthread_mutex_unlock(&ctx->lock);
        return rc;
    }
    return apply_text(ctx, text, len, err);
}

int mc_context_remove_server(mc_context *ctx, const char *name, mc_err **err)
{
    if (!ctx || !name)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or server name");
    pthread_mutex_lock(&ctx->lock);
    char *text = NULL;
    size_t len = 0;
    int rc = ctx->cfg ? mc__config_remove_text(&text, &len, ctx->cfg, name, err)
                      : mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                                      "the context has no config");
    if (rc < 0) {
        pthread_mutex_unlock(&ctx->lock);
        return rc;
    }
    return apply_text(ctx, text, len, err);
}

int mc_context_config_json(char **out, const mc_context *ctx)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!ctx)
        return MC_EINVAL;
    mc_context *c = (mc_context *)ctx;     /* the lock only */
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    if (!c->cfg || !c->cfg->text)
        rc = MC_EINVAL;
    else if (!(*out = malloc(c->cfg->text_len + 1)))
        rc = MC_ENOMEM;
    else {
        memcpy(*out, c->cfg->text, c->cfg->text_len);
        (*out)[c->cfg->text_len] = '\0';
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int mc_server_json(char **out, const mc_context *ctx, const char *name)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!ctx)
        return MC_EINVAL;
    mc_context *c = (mc_context *)ctx;
    pthread_mutex_lock(&c->lock);
    int rc = c->cfg ? mc__config_server_json(out, c->cfg, name) : MC_EINVAL;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int mc_config_check(const char *json, unsigned flags, mc_err **err)
{
    if (!json)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no config text");
    if (flags & ~MC_CONTEXT_ALL_PLUGINS)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "mc_config_check: unknown flags");
    mc__config *cfg = NULL;
    int rc = mc__config_parse(&cfg, json, strlen(json), err);
    if (rc == 0 && (flags & MC_CONTEXT_ALL_PLUGINS)) {
        mc__registry *reg = NULL;
        if ((rc = mc__registry_new(&reg, NULL, err)) == 0) {
            mc__registry_load_all(reg);
            rc = mc__config_prepare(cfg, reg, NULL, err);
        }
        mc__registry_free(reg);
    }
    mc__config_free(cfg);
    return rc;
}
