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

/* The text of the edited config -> validated, prepared, saved, swapped
 * in (mc__context_swap_config: calls in flight finish on the old config,
 * changed servers' pools retire). ctx->edit_lock is held across all of it,
 * so two edits, or an edit and a reload, never build on the same old
 * config; nothing changes unless every step succeeds. */
static int apply_text(mc_context *ctx, char *text, size_t len, mc_err **err)
{
    mc__config *next = NULL;
    int rc = mc__config_reparse(&next, ctx->cfg, text, len, err);
    mc__text_free(text);
    if (rc == 0)
        rc = mc__config_prepare(next, ctx->reg, NULL, err);
    if (rc == 0)
        rc = mc__config_save(next, err);
    if (rc == 0 && (rc = mc__context_swap_config(ctx, next, err)) == 0)
        next = NULL;
    mc__config_free(next);
    pthread_mutex_unlock(&ctx->edit_lock);
    return rc;
}

/* One edit: build the next config's text from the current one (put or
 * remove), then apply it; ctx->edit_lock held from the read to the swap. */
typedef int edit_fn(char **text, size_t *len, const mc__config *cfg, const char *arg, mc_err **err);

static int edit(mc_context *ctx, edit_fn *fn, const char *arg, mc_err **err)
{
    pthread_mutex_lock(&ctx->edit_lock);
    char *text = NULL;
    size_t len = 0;
    int rc = ctx->cfg ? fn(&text, &len, ctx->cfg, arg, err)
                      : mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                                      "the context has no config");
    if (rc < 0) {
        pthread_mutex_unlock(&ctx->edit_lock);
        return rc;
    }
    return apply_text(ctx, text, len, err);
}

int mc_context_put_server(mc_context *ctx, const char *server_json, mc_err **err)
{
    if (!ctx || !server_json)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or server");
    return edit(ctx, mc__config_put_text, server_json, err);
}

int mc_context_remove_server(mc_context *ctx, const char *name, mc_err **err)
{
    if (!ctx || !name)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or server name");
    return edit(ctx, mc__config_remove_text, name, err);
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
