/* host: the table plugins reach the core through. Config accessors read
 * json-c here, so plugins never link json-c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json_object.h>
#include <json-c/json_object_iterator.h>  /* never json.h: its debug.h declares a function mc_error */
#include <openssl/crypto.h>

#include "config.h"
#include "host.h"
#include "error.h"
#include "loader.h"
#include "tls-engine.h"
#include "log.h"
#include "net.h"
#include "proxy.h"
#include "secret.h"
#include "store.h"

static void host_log(mc_host_ctx *hc, mc_log_level level, const char *fmt, ...)
{
    if (!hc)
        return;             /* the contract: no context, nothing logged */
    va_list ap;
    va_start(ap, fmt);
    mc__logv(hc, level, fmt, ap);
    va_end(ap);
}

static void host_redact(mc_host_ctx *hc, const char *secret)
{
    mc__redact_add(hc, secret);
}

static const char *host_state_dir(mc_host_ctx *hc)
{
    return hc ? hc->state_dir : NULL;
}

static const mc_token_store_ops *host_token_store(mc_host_ctx *hc, void **store_out)
{
    /* precedence: the application's, the config's plugin, (NULL) the file store */
    if (hc && !hc->token_store && hc->store) {
        void *arg = NULL;
        const mc_token_store_ops *ops = mc__store_ops(hc, hc->store, &arg);
        if (store_out)
            *store_out = arg;
        return ops;
    }
    if (store_out)
        *store_out = hc ? hc->token_store_payload : NULL;
    return hc ? hc->token_store : NULL;
}

static void *host_alloc(size_t n)
{
    return calloc(1, n ? n : 1);
}

static char *host_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void host_free(void *p)
{
    free(p);
}

static void host_free_secret(char *s)
{
    mc__secret_free(s);
}

static int host_error(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc__error_setv(err, code, outcome, stage, fmt, ap);
    va_end(ap);
    return code;
}

static json_object *member(const mc_plugin_cfg *cfg, const char *key)
{
    json_object *v = NULL;
    if (!cfg || !cfg->obj || !json_object_is_type(cfg->obj, json_type_object))
        return NULL;
    return json_object_object_get_ex(cfg->obj, key, &v) ? v : NULL;
}

static const char *cfg_string(const mc_plugin_cfg *cfg, const char *key)
{
    json_object *v = member(cfg, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool cfg_has(const mc_plugin_cfg *cfg, const char *key)
{
    return member(cfg, key) != NULL;
}

static long cfg_int(const mc_plugin_cfg *cfg, const char *key, long dflt)
{
    json_object *v = member(cfg, key);
    return v && json_object_is_type(v, json_type_int) ? (long)json_object_get_int64(v) : dflt;
}

static bool cfg_bool(const mc_plugin_cfg *cfg, const char *key, bool dflt)
{
    json_object *v = member(cfg, key);
    return v && json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : dflt;
}

static const char *cfg_member(const mc_plugin_cfg *cfg, const char *key, size_t i,
                              const char **name)
{
    json_object *o = member(cfg, key);
    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    struct json_object_iterator it = json_object_iter_begin(o), end = json_object_iter_end(o);
    for (size_t k = 0; !json_object_iter_equal(&it, &end); json_object_iter_next(&it), k++) {
        if (k == i) {
            json_object *mv = json_object_iter_peek_value(&it);
            if (name)
                *name = json_object_iter_peek_name(&it);
            return json_object_is_type(mv, json_type_string) ? json_object_get_string(mv) : NULL;
        }
    }
    return NULL;
}

static void cfg_error(const mc_plugin_cfg *cfg, const char *key, const char *fmt, ...)
{
    if (!cfg || !cfg->diag)
        return;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (key)
        mc__diag_add(cfg->diag, "%s.%s: %s", cfg->path, key, msg);
    else
        mc__diag_add(cfg->diag, "%s: %s", cfg->path, msg);
    free(msg);
}

static int host_secret(mc_host_ctx *hc, const mc_plugin_cfg *cfg, const char *name, char **out,
                       mc_err **err)
{
    return mc__secret_resolve(hc, cfg, name, out, err);
}

static int host_tcp_connect(mc_host_ctx *hc, const mc_connect_opts *o, int *fd_out,
                            mc_err **err)
{
    if (o && MC_SIZE_HAS(o, mc_connect_opts, proxy) && o->proxy)
        return mc__proxy_connect(hc, o, fd_out, err);
    return mc__tcp_connect(o, fd_out, err);
}

/* The TLS engine of hc's registry, loaded on first use (a plain send never
 * loads it, so never libssl). */
static const mc__tls_engine_ops *tls_engine(mc_host_ctx *hc, mc_err **err)
{
    if (!hc || !hc->reg) {
        mc__error_set(err, MC_ETLS, MC_OUTCOME_CONFIG, MC_STAGE_TLS,
                      "TLS: no plugin registry for this context (engine-tls.so)");
        return NULL;
    }
    const mc__plugin *p = NULL;
    if (mc__registry_get(hc->reg, MC_PLUGIN_TLS_ENGINE, "tls", &p, err) < 0)
        return NULL;
    return (const mc__tls_engine_ops *)p->desc->ops;
}

static int host_tls_client(mc_host_ctx *hc, int fd, const mc_connect_opts *o, mc_stream **out,
                           mc_err **err)
{
    const mc__tls_engine_ops *e = tls_engine(hc, err);
    return e ? e->client(hc, fd, o, out, err) : MC_ETLS;
}

static int host_tls_upgrade(mc_host_ctx *hc, mc_stream **s, const mc_connect_opts *o,
                            mc_err **err)
{
    const mc__tls_engine_ops *e = tls_engine(hc, err);
    return e ? e->upgrade(hc, s, o, err) : MC_ETLS;
}

static int host_file_replace(const char *path, const char *data, size_t len, int mode,
                             mc_err **err)
{
    return mc__file_replace(path, data, len, mode, err);
}

static int host_run_command(const char *command, int timeout_ms, char **out, mc_err **err)
{
    return mc__secret_command(command, timeout_ms, out, err);
}

static const mc_host_api host_api = {
    .size = sizeof(mc_host_api),
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .log = host_log,
    .redact = host_redact,
    .alloc = host_alloc,
    .strdup = host_strdup,
    .free = host_free,
    .free_secret = host_free_secret,
    .error = host_error,
    .cfg_string = cfg_string,
    .cfg_has = cfg_has,
    .cfg_int = cfg_int,
    .cfg_member = cfg_member,
    .cfg_error = cfg_error,
    .secret = host_secret,
    .tcp_connect = host_tcp_connect,
    .file_replace = host_file_replace,
    .run_command = host_run_command,
    .state_dir = host_state_dir,
    .token_store = host_token_store,
    .tls_client = host_tls_client,
    .tls_upgrade = host_tls_upgrade,
    .cfg_bool = cfg_bool,
};

const mc_host_api *mc__host(void)
{
    return &host_api;
}
