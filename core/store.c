/* store: the context's token-store plugin, opened on first use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json_object.h>  /* never json.h (see host.c) */

#include "store.h"
#include "log.h"

void mc__store_init(mc__store *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
}

int mc__store_setup(mc__store *s, const mc__config *cfg, mc_err **err)
{
    if (!cfg || !cfg->token_store_ops)
        return 0;
    s->type = strdup(cfg->token_store_type);
    s->cfg.path = strdup("token_store");
    if (!s->type || !s->cfg.path) {
        free(s->type);
        free(s->cfg.path);
        s->type = s->cfg.path = NULL;
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
    }
    s->cfg.obj = json_object_get(cfg->token_store_cfg.obj);
    s->plugin = cfg->token_store_ops;
    return 0;
}

bool mc__store_same(const mc__store *s, const mc__config *cfg)
{
    if (!s->plugin)
        return !cfg->token_store_ops;
    if (!cfg->token_store_ops || strcmp(s->type, cfg->token_store_type) != 0)
        return false;
    return json_object_equal(s->cfg.obj, cfg->token_store_cfg.obj) != 0;
}

/* ---- a store whose open failed: every op returns that failure */

static int failed(void *store, mc_err **err)
{
    mc__store *s = store;
    pthread_mutex_lock(&s->lock);
    char msg[sizeof(s->fail_message)];
    memcpy(msg, s->fail_message, sizeof(msg));
    int code = s->fail_code ? s->fail_code : MC_EFILE;
    int outcome = s->fail_outcome;
    pthread_mutex_unlock(&s->lock);
    return mc__error_set(err, code, (mc_outcome)outcome, MC_STAGE_OAUTH, "%s", msg);
}

static int f_lock(void *st, const mc_token_identity *id, long long d, mc_err **err)
{
    (void)id, (void)d;
    return failed(st, err);
}
static void f_unlock(void *st, const mc_token_identity *id) { (void)st, (void)id; }
static int f_load(void *st, const mc_token_identity *id, char **data, size_t *len, mc_err **err)
{
    (void)id, (void)len;
    *data = NULL;
    return failed(st, err);
}
static int f_save(void *st, const mc_token_identity *id, const char *d, size_t n, mc_err **err)
{
    (void)id, (void)d, (void)n;
    return failed(st, err);
}
static int f_remove(void *st, const mc_token_identity *id, mc_err **err)
{
    (void)id;
    return failed(st, err);
}
static int f_put(void *st, const char *state, const char *d, size_t n, long long e, mc_err **err)
{
    (void)state, (void)d, (void)n, (void)e;
    return failed(st, err);
}
static int f_take(void *st, const char *state, char **data, size_t *len, mc_err **err)
{
    (void)state, (void)len;
    *data = NULL;
    return failed(st, err);
}

static const mc_token_store_ops failed_ops = {
    .size = sizeof(mc_token_store_ops),
    .lock = f_lock, .unlock = f_unlock, .load = f_load, .save = f_save, .remove = f_remove,
    .pending_put = f_put, .pending_take = f_take,
};

const mc_token_store_ops *mc__store_ops(mc_host_ctx *hc, mc__store *s, void **arg)
{
    if (!s || !s->plugin)
        return NULL;
    pthread_mutex_lock(&s->lock);
    if (!s->open) {
        mc_err *e = NULL;
        void *h = NULL;
        int rc = s->plugin->open(hc, &s->cfg, &h, &e);
        if (rc == 0) {
            s->handle = h;
            s->open = true;
            s->fail_code = 0;
        } else {
            s->fail_code = rc < 0 ? rc : MC_EFILE;
            s->fail_outcome = e ? (int)e->outcome : (int)MC_OUTCOME_CONFIG;
            snprintf(s->fail_message, sizeof(s->fail_message), "token store %s could not open: %s",
                     s->type, e && e->message ? e->message : mc_strerror(s->fail_code));
            mc__log(hc, MC_LOG_DEBUG, "%s", s->fail_message);
        }
        mc_error_free(e);
    }
    bool open = s->open;
    pthread_mutex_unlock(&s->lock);
    if (!open) {
        *arg = s;
        return &failed_ops;
    }
    *arg = s->handle;
    return s->plugin->ops;
}

void mc__store_fini(mc__store *s)
{
    if (!s)
        return;
    if (s->open && s->plugin->close)
        s->plugin->close(s->handle);
    s->open = false;
    s->handle = NULL;
    if (s->cfg.obj)
        json_object_put(s->cfg.obj);
    s->cfg.obj = NULL;
    free(s->cfg.path);
    free(s->type);
    s->cfg.path = s->type = NULL;
    s->plugin = NULL;
    pthread_mutex_destroy(&s->lock);
}
