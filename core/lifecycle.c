/* lifecycle: config generations and reload, pools shared across them,
 * disconnect, and the reaper that QUITs idle connections on time.
 * See lifecycle.h for the model. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "buf.h"
#include "context.h"
#include "lifecycle.h"
#include "net.h"

/* The reaper never sleeps longer than this, whatever is idle: every wait
 * is bounded (and a clock oddity costs one extra scan, no more). */
#define REAPER_MAX_SLEEP_MS 30000
/* A reload or disconnect QUITs at most this many connections per batch
 * taken out under the lock (the rest in further batches). */
#define BATCH 32

void mc__life_init(mc_context *ctx)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->life.wake, &a);
    pthread_condattr_destroy(&a);
    ctx->life.gen = NULL;
    ctx->life.reaper_on = false;
    ctx->life.stop = false;
    ctx->life.next_due = LLONG_MAX;
}

/* ---------------------------------------------------------------- generations */

/* The server's identity for a reload: the JSON text of its object in the
 * document (json-c's plain form, key order as written), "default" left
 * out (moving the default mark changes no connection). Built only when a
 * reload compares two generations, never for a context that does not
 * reload (no hashing, so a CLI run never initialises libcrypto for it),
 * and wiped after the comparison, since an inline secret passes through. A
 * secret's *source* is in the text (password_file, password_env, ...); a
 * password file whose content changed under an unchanged object is not
 * seen: the object must change (or mc_context_disconnect be called) for
 * connections to log in again. @return 0, MC_ENOMEM. */
static int server_text(const mc__config *cfg, size_t i, mc__buf *b)
{
    struct json_object *arr = NULL, *obj;
    b->secret = true;   /* wiped on growth and free */
    if (!cfg->doc || !json_object_object_get_ex(cfg->doc, "servers", &arr)
        || !(obj = json_object_array_get_idx(arr, i)) || !json_object_is_type(obj, json_type_object))
        return 0;   /* no document behind it (not for a loaded or parsed config) */
    int rc = mc__buf_puts(b, "{");
    json_object_object_foreach(obj, key, val) {
        if (strcmp(key, "default") == 0)
            continue;
        struct json_object *k = json_object_new_string(key);
        if (!k) {
            rc = MC_ENOMEM;
            break;
        }
        if (rc == 0)
            rc = mc__buf_printf(b, "%s:%s,", json_object_to_json_string_ext(k, JSON_C_TO_STRING_PLAIN),
                                json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
        json_object_put(k);
    }
    return rc < 0 ? MC_ENOMEM : 0;
}

/* Whether server i of a and server j of b are the same object (out of
 * memory: not the same, so the server gets a new pool: safe). */
static bool same_server(const mc__config *a, size_t i, const mc__config *b, size_t j)
{
    mc__buf x = MC__BUF_INIT, y = MC__BUF_INIT;
    bool same = server_text(a, i, &x) == 0 && server_text(b, j, &y) == 0 && x.len == y.len
                && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
    mc__buf_free(&x);
    mc__buf_free(&y);
    return same;
}

static void pool_free(mc__pool *p)
{
    if (!p)
        return;
    for (size_t j = 0; j < p->n_idle; j++)
        mc__smtp_quit(p->idle[j].smtp);
    free(p->idle);
    free(p);
}

/* Free a generation no one uses (outside ctx->lock): pools no other
 * generation holds, the config. */
static void gen_free(mc_context *ctx, mc__gen *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        mc__pool *p = g->pools[i];
        if (!p)
            continue;
        pthread_mutex_lock(&ctx->lock);
        bool last = --p->gens == 0;
        pthread_mutex_unlock(&ctx->lock);
        if (last)
            pool_free(p);
    }
    free(g->pools);
    mc__config_free(g->cfg);
    free(g);
}

/* A generation for cfg, every pool new (not yet published: no lock). */
static int gen_new(mc__gen **out, mc__config *cfg, mc_err **err)
{
    size_t n = cfg->n_servers;
    mc__gen *g = calloc(1, sizeof(*g));
    if (!g)
        goto oom;
    g->n = n;
    g->pools = calloc(n ? n : 1, sizeof(*g->pools));
    if (!g->pools)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (!(g->pools[i] = calloc(1, sizeof(mc__pool))))
            goto oom;
        g->pools[i]->idle_timeout_s = cfg->servers[i].idle_timeout_s;
        g->pools[i]->gens = 1;
    }
    g->refs = 1;
    *out = g;
    return 0;
oom:
    if (g) {
        for (size_t i = 0; g->pools && i < n; i++)
            free(g->pools[i]);
        free(g->pools);
        free(g);
    }
    return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
}

mc__gen *mc__gen_take(mc_context *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    mc__gen *g = ctx->life.gen;
    if (g)
        g->refs++;
    pthread_mutex_unlock(&ctx->lock);
    return g;
}

void mc__gen_drop(mc_context *ctx, mc__gen *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&ctx->lock);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&ctx->lock);
    if (last)
        gen_free(ctx, g);
}

int mc__life_adopt(mc_context *ctx, mc_err **err)
{
    mc__gen *g = NULL;
    int rc = gen_new(&g, ctx->cfg, err);
    if (rc < 0)
        return rc;
    g->cfg = ctx->cfg;
    pthread_mutex_lock(&ctx->lock);
    ctx->life.gen = g;
    pthread_mutex_unlock(&ctx->lock);
    return 0;
}

/* QUIT a list of connections taken out of pools (outside ctx->lock). */
static void quit_all(mc__smtp **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mc__smtp_quit(list[i]);
}

/* With ctx->lock held: move up to `room` idle connections of p into list. */
static size_t take_idle(mc__pool *p, mc__smtp **list, size_t room)
{
    size_t n = 0;
    while (p->n_idle && n < room) {
        list[n++] = p->idle[--p->n_idle].smtp;
        p->open--;
    }
    return n;
}

int mc__context_swap_config(mc_context *ctx, mc__config *next, mc_err **err)
{
    if (!ctx || !next)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "no context or config");
    mc__gen *g = NULL;
    int rc = gen_new(&g, next, err);
    if (rc < 0)
        return rc;
    g->cfg = next;
    mc__pool **spare = calloc(g->n ? g->n : 1, sizeof(*spare));   /* new pools not used */
    if (!spare) {
        g->cfg = NULL;
        gen_free(ctx, g);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
    }
    size_t n_spare = 0;

    pthread_mutex_lock(&ctx->lock);
    mc__gen *old = ctx->life.gen;
    /* an unchanged server keeps its pool */
    for (size_t j = 0; old && j < g->n; j++) {
        for (size_t i = 0; i < old->n; i++) {
            mc__pool *op = old->pools[i];
            if (op->retired || strcmp(old->cfg->servers[i].name, next->servers[j].name) != 0)
                continue;
            if (same_server(old->cfg, i, next, j)) {
                spare[n_spare++] = g->pools[j];
                g->pools[j] = op;
                op->gens++;
            }
            break;
        }
    }
    /* the others are retired: idle ones QUIT below, in-use ones when back */
    for (size_t i = 0; old && i < old->n; i++) {
        mc__pool *op = old->pools[i];
        bool kept = false;
        for (size_t j = 0; j < g->n && !kept; j++)
            kept = g->pools[j] == op;
        if (!kept)
            op->retired = true;
    }
    ctx->life.gen = g;
    ctx->cfg = next;
    /* the context's reference to old is dropped only after the loop below:
     * until then a call in flight ending cannot free it under us */
    pthread_cond_broadcast(&ctx->freed);
    pthread_mutex_unlock(&ctx->lock);

    for (size_t k = 0; k < n_spare; k++)
        free(spare[k]);
    free(spare);
    if (!old)
        return 0;
    /* QUIT the retired pools' idle connections, a batch at a time */
    for (size_t i = 0; i < old->n; i++) {
        for (;;) {
            mc__smtp *list[BATCH];
            size_t n = 0;
            pthread_mutex_lock(&ctx->lock);
            if (old->pools[i]->retired)
                n = take_idle(old->pools[i], list, BATCH);
            pthread_cond_broadcast(&ctx->freed);
            pthread_mutex_unlock(&ctx->lock);
            quit_all(list, n);
            if (n < BATCH)
                break;
        }
    }
    mc__gen_drop(ctx, old);   /* the context's: freed now or by the last call in flight */
    return 0;
}

/* ---------------------------------------------------------------- reaper */

static void *reaper_main(void *arg)
{
    mc_context *ctx = arg;
    pthread_mutex_lock(&ctx->lock);
    while (!ctx->life.stop) {
        long long now = mc__mono_ms();
        long long due = LLONG_MAX;
        mc__smtp *list[BATCH];
        size_t n = 0;
        mc__gen *g = ctx->life.gen;
        for (size_t i = 0; g && i < g->n; i++) {
            mc__pool *p = g->pools[i];
            long long limit = (long long)p->idle_timeout_s * 1000;
            /* oldest first: idle[0] has waited longest */
            size_t k = 0;
            while (k < p->n_idle && n < BATCH && now - p->idle[k].idle_since >= limit)
                list[n++] = p->idle[k++].smtp;
            if (k) {
                memmove(p->idle, p->idle + k, (p->n_idle - k) * sizeof(*p->idle));
                p->n_idle -= k;
                p->open -= (int)k;
            }
            if (p->n_idle && p->idle[0].idle_since + limit < due)
                due = p->idle[0].idle_since + limit;
        }
        if (n) {
            pthread_cond_broadcast(&ctx->freed);
            pthread_mutex_unlock(&ctx->lock);
            quit_all(list, n);
            pthread_mutex_lock(&ctx->lock);
            continue;
        }
        long long until = now + REAPER_MAX_SLEEP_MS;
        if (due < until)
            until = due;
        ctx->life.next_due = until;
        struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L };
        int w = pthread_cond_timedwait(&ctx->life.wake, &ctx->lock, &ts);
        (void)w;   /* woken, timed out or spurious: scan again */
    }
    pthread_mutex_unlock(&ctx->lock);
    return NULL;
}

void mc__life_idle_locked(mc_context *ctx, const mc__pool *p, long long since)
{
    long long due = since + (long long)p->idle_timeout_s * 1000;
    if (ctx->life.stop)
        return;
    if (!ctx->life.reaper_on) {
        /* when it cannot start, idle connections are still dropped at the
         * next acquire (pool_acquire's own check), as before; the next
         * connection to go idle tries again */
        if (pthread_create(&ctx->life.reaper, NULL, reaper_main, ctx) == 0)
            ctx->life.reaper_on = true;
        return;
    }
    if (due < ctx->life.next_due) {
        ctx->life.next_due = due;
        pthread_cond_signal(&ctx->life.wake);
    }
}

void mc__life_fini(mc_context *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    ctx->life.stop = true;
    bool on = ctx->life.reaper_on;
    pthread_cond_signal(&ctx->life.wake);
    pthread_mutex_unlock(&ctx->lock);
    if (on)
        pthread_join(ctx->life.reaper, NULL);
    ctx->life.reaper_on = false;

    mc__gen *g = ctx->life.gen;
    ctx->life.gen = NULL;
    if (g) {
        /* the context's reference; a call still in flight is misuse
         * (mc_context_free must not race other calls) */
        g->refs = 0;
        gen_free(ctx, g);
    } else {
        mc__config_free(ctx->cfg);
    }
    ctx->cfg = NULL;
    pthread_cond_destroy(&ctx->life.wake);
}

/* ---------------------------------------------------------------- public */

void mc_context_disconnect(mc_context *ctx, const char *server)
{
    if (!ctx)
        return;
    mc__gen *g = mc__gen_take(ctx);
    for (size_t i = 0; g && i < g->n; i++) {
        if (server && strcmp(g->cfg->servers[i].name, server) != 0)
            continue;
        bool first = true;
        for (;;) {
            mc__smtp *list[BATCH];
            pthread_mutex_lock(&ctx->lock);
            if (first)
                g->pools[i]->epoch++;   /* in use now: QUIT when returned */
            first = false;
            size_t n = take_idle(g->pools[i], list, BATCH);
            pthread_cond_broadcast(&ctx->freed);
            pthread_mutex_unlock(&ctx->lock);
            quit_all(list, n);
            if (n < BATCH)
                break;
        }
    }
    mc__gen_drop(ctx, g);
}

#define FLAGS_KNOWN (MC_CONTEXT_ALL_PLUGINS | MC_CONTEXT_SECRETS | MC_CONTEXT_ONE_SERVER)

static int reload(mc_context *ctx, const mc_context_options *opts, mc_err **err);

/* Serialised with the editing calls (ctx->edit_lock): each builds the next
 * config from the current one. */
int mc_context_reload(mc_context *ctx, const mc_context_options *opts, mc_err **err)
{
    if (!ctx)
        return reload(ctx, opts, err);
    pthread_mutex_lock(&ctx->edit_lock);
    int rc = reload(ctx, opts, err);
    pthread_mutex_unlock(&ctx->edit_lock);
    return rc;
}

static int reload(mc_context *ctx, const mc_context_options *opts_in, mc_err **err)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    const mc_context_options *opts = &o;
    mc__config *next = NULL;
    char *path = NULL;
    int rc;

    if (!ctx)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "ctx is NULL");
    /* as mc_context_new: a version-1 caller has nothing after log_payload;
     * the context's plugin folder, log sink, state_dir and token store are
     * the context's and stay (a reload swaps the config only) */
    if (opts_in && opts_in->version == 1)
        memcpy(&o, opts_in, offsetof(mc_context_options, config_json));
    else if (opts_in && opts_in->version == MC_CONTEXT_OPTIONS_VERSION)
        o = *opts_in;
    else if (opts_in)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_context_reload: unknown options version %u", opts_in->version);
    if (opts->flags & ~FLAGS_KNOWN)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_context_reload: unknown flags");

    mc__gen *cur = mc__gen_take(ctx);
    if (!cur)
        return mc__error_set(err, MC_EUSAGE, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "this context has no config to reload (MC_CONTEXT_NO_CONFIG)");
    if (opts->config_json) {
        mc__gen_drop(ctx, cur);
        /* in memory: the new config has no path either, nothing is saved */
        if ((rc = mc__config_parse(&next, opts->config_json, strlen(opts->config_json), err)) < 0)
            return rc;
    } else {
        /* the path the current config came from, unless another is given */
        bool no_file = !opts->config_path && !cur->cfg->path;
        path = opts->config_path ? mc__config_find(opts->config_path)
                                 : (cur->cfg->path ? strdup(cur->cfg->path) : NULL);
        mc__gen_drop(ctx, cur);
        if (no_file)
            return mc__error_set(err, MC_EUSAGE, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                 "this context's config is held in memory: give config_json "
                                 "(or config_path) to reload it");
        if (!path)
            return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                 "out of memory");
        rc = mc__config_load(&next, path, err);
        free(path);
        if (rc < 0)
            return rc;
    }

    const mc_server *only = NULL;
    if (opts->flags & MC_CONTEXT_ONE_SERVER) {
        if (!(only = mc__config_server(next, opts->server))) {
            rc = mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                               opts->server ? "no server named \"%s\" in %s" : "no default server%s in %s",
                               opts->server ? opts->server : "", next->path);
            goto fail;
        }
    }
    if (opts->flags & MC_CONTEXT_ALL_PLUGINS)
        mc__registry_load_all(ctx->reg);
    if ((rc = mc__config_prepare(next, ctx->reg, only, err)) < 0)
        goto fail;
    /* the token store is the context's, open for its whole life: a reload
     * may not change it (DESIGN.md "Token stores and fleets") */
    if (!mc__store_same(&ctx->store, next)) {
        rc = mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                           "token_store: a reload cannot change the token store (it stays "
                           "what the context was made with): make a new context, or restart");
        goto fail;
    }
    if ((opts->flags & MC_CONTEXT_SECRETS) && (rc = mc__config_check_secrets(next, err)) < 0)
        goto fail;
    if ((rc = mc__context_swap_config(ctx, next, err)) < 0)
        goto fail;
    return 0;
fail:
    mc__config_free(next);
    return rc;
}
