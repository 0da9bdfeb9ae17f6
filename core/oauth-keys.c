/* oauth-keys: the common OAuth keys, their rules, and the profile the core
 * builds from a provider's defaults and the config (DESIGN.md "OAuth
 * providers are data, truly"). A provider lists only its own extra keys,
 * validates only its own rules and returns its defaults; everything here
 * is the core's, so no provider copies it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "host.h"
#include "oauth-keys.h"

const char *const mc__oauth_common_keys[] = {
    "user", "client_id", "client_secret", "client_secret_file", "client_secret_env",
    "client_secret_command", "client_auth", "scope", "params", "redirect_uri", "timeout_s",
    "ca_file", "mechanism", "access_token_command", "grant", "authorization_url", "token_url",
    "device_authorization_url", "revocation_url", NULL,
};

static bool one_of(const char *s, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

bool mc__oauth_common_key(const char *key)
{
    return key && one_of(key, mc__oauth_common_keys);
}

const char **mc__auth_keys(const mc_auth_ops *ops)
{
    size_t n = 0, k = 0;
    while (ops->keys && ops->keys[n])
        n++;
    size_t extra = ops->oauth ? sizeof(mc__oauth_common_keys) / sizeof(mc__oauth_common_keys[0]) : 1;
    const char **all = calloc(n + extra, sizeof(*all));
    if (!all)
        return NULL;
    if (ops->oauth)
        for (size_t i = 0; mc__oauth_common_keys[i]; i++)
            all[k++] = mc__oauth_common_keys[i];
    for (size_t i = 0; i < n; i++)
        if (!ops->oauth || !mc__oauth_common_key(ops->keys[i]))   /* a 2.0 provider's copy */
            all[k++] = ops->keys[i];
    all[k] = NULL;
    return all;
}

/* ------------------------------------------------------------- rules */

static const char *const mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };
static const char *const secret_keys[] = {
    "client_secret", "client_secret_file", "client_secret_env", "client_secret_command", NULL,
};
static const char *const url_keys[] = {
    "authorization_url", "token_url", "device_authorization_url", "revocation_url", NULL,
};

#define SECRET_SOURCES "client_secret, client_secret_file, client_secret_env or client_secret_command"

static bool has_secret(const mc_plugin_cfg *cfg)
{
    for (size_t i = 0; secret_keys[i]; i++)
        if (mc__host()->cfg_has(cfg, secret_keys[i]))
            return true;
    return false;
}

bool mc__oauth_endpoint_ok(const char *url)
{
    static const char *const loopback[] = { "127.0.0.1", "[::1]", "localhost", NULL };
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    if (strncmp(url, "https://", 8) == 0)
        return url[8] != '\0' && url[8] != '/' && url[8] != ':';
    if (strncmp(url, "http://", 7) == 0) {
        const char *h = url + 7;
        for (size_t i = 0; loopback[i]; i++) {
            size_t n = strlen(loopback[i]);
            if (strncmp(h, loopback[i], n) == 0 && (h[n] == ':' || h[n] == '/' || h[n] == '\0'))
                return true;
        }
    }
    return false;
}

static void check_url(const mc_plugin_cfg *cfg, const char *key)
{
    const mc_host_api *host = mc__host();
    const char *url = host->cfg_string(cfg, key);
    if (!url)
        return;
    if (strlen(url) >= MC_URL_MAX)
        host->cfg_error(cfg, key, "must be at most %d bytes long", MC_URL_MAX - 1);
    else if (!mc__oauth_endpoint_ok(url))
        host->cfg_error(cfg, key,
                        "must be an https:// URL (http:// only to 127.0.0.1, [::1] or "
                        "localhost), got \"%s\"", url);
}

/* The rules every OAuth provider shares (they were the providers' until
 * ABI 2.1; the messages are the same). */
static void common_rules(const mc_plugin_cfg *cfg)
{
    static const char *const client_auths[] = { "post", "basic", "none", NULL };
    static const char *const grants[] = {
        "authorization_code", "device_code", "client_credentials", NULL,
    };
    const mc_host_api *host = mc__host();
    const char *s;

    if (!host->cfg_has(cfg, "user"))
        host->cfg_error(cfg, "user", "required (the account that logs in to the SMTP server)");
    else if ((s = host->cfg_string(cfg, "user")) && !*s)
        host->cfg_error(cfg, "user", "must not be empty");
    if (!host->cfg_has(cfg, "access_token_command") && !host->cfg_has(cfg, "client_id"))
        host->cfg_error(cfg, "client_id", "required (the OAuth client ID of the app registration)");
    else if ((s = host->cfg_string(cfg, "client_id")) && !*s)
        host->cfg_error(cfg, "client_id", "must not be empty");
    if ((s = host->cfg_string(cfg, "client_auth"))) {
        if (!one_of(s, client_auths))
            host->cfg_error(cfg, "client_auth", "must be \"post\", \"basic\" or \"none\", got \"%s\"", s);
        else if (strcmp(s, "none") != 0 && !has_secret(cfg))
            host->cfg_error(cfg, "client_auth", "\"%s\" needs a client secret (%s)", s, SECRET_SOURCES);
    }
    if ((s = host->cfg_string(cfg, "grant"))) {
        if (!one_of(s, grants))
            host->cfg_error(cfg, "grant",
                            "must be \"authorization_code\", \"device_code\" or "
                            "\"client_credentials\", got \"%s\"", s);
        else if (strcmp(s, "client_credentials") == 0 && !has_secret(cfg))
            host->cfg_error(cfg, "grant", "\"client_credentials\" needs a client secret (%s)",
                            SECRET_SOURCES);
    }
    if ((s = host->cfg_string(cfg, "mechanism")) && !one_of(s, mechanisms))
        host->cfg_error(cfg, "mechanism", "must be \"XOAUTH2\" or \"OAUTHBEARER\", got \"%s\"", s);
    for (size_t i = 0; url_keys[i]; i++)
        check_url(cfg, url_keys[i]);
}

void mc__auth_validate(mc_host_ctx *hc, const mc_auth_ops *ops, const mc_plugin_cfg *cfg)
{
    if (ops->oauth)
        common_rules(cfg);
    /* a 2.0 provider repeating the common rules: the diagnostics sink
     * keeps each line once */
    if (ops->validate)
        ops->validate(hc, cfg);
}

/* ------------------------------------------------------------- profile */

/* Whether the config's "params" has a member named like kv's "k". */
static bool config_has_param(const mc_plugin_cfg *cfg, const char *kv)
{
    size_t klen = strcspn(kv, "=");
    for (size_t i = 0;; i++) {
        const char *name = NULL;
        const char *v = mc__host()->cfg_member(cfg, "params", i, &name);
        if (!v && !name)
            return false;
        if (name && strlen(name) == klen && strncmp(name, kv, klen) == 0)
            return true;
    }
}

/* A string appended to the block. */
typedef struct block {
    char  *data;
    size_t used, size;
} block;

static char *put(block *b, const char *s, const char *eq, const char *v)
{
    if (!s)
        return NULL;
    size_t n = strlen(s), ne = eq ? strlen(eq) : 0, nv = v ? strlen(v) : 0;
    char *dst = b->data + b->used;
    memcpy(dst, s, n);
    memcpy(dst + n, eq ? eq : "", ne);
    memcpy(dst + n + ne, v ? v : "", nv);
    dst[n + ne + nv] = '\0';
    b->used += n + ne + nv + 1;
    return dst;
}

static int override(char *dst, size_t size, const mc_plugin_cfg *cfg, const char *key,
                    mc_err **err)
{
    const char *v = mc__host()->cfg_string(cfg, key);
    if (!v)
        return 0;
    size_t len = strlen(v);
    if (len >= size)
        return mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "auth.%s: must be at most %zu bytes long", key, size - 1);
    memcpy(dst, v, len + 1);
    return 0;
}

int mc__oauth_profile(mc_host_ctx *hc, const mc_auth_ops *ops, const mc_plugin_cfg *cfg,
                      mc_oauth_profile *out, void **own, mc_err **err)
{
    const mc_host_api *host = mc__host();
    *own = NULL;
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    if (!ops->oauth || !ops->oauth_profile)
        return mc__error_set(err, MC_EUSAGE, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "the provider does not use OAuth");
    int rc = ops->oauth_profile(hc, cfg, out, err);
    if (rc < 0)
        return rc;
    out->size = sizeof(*out);

    /* the config's endpoints and scope over the provider's defaults (a
     * 2.0 provider that applied them itself gets the same values again) */
    static const struct { const char *key; size_t off, size; } fields[] = {
        { "authorization_url", offsetof(mc_oauth_profile, authorization_url), MC_URL_MAX },
        { "token_url", offsetof(mc_oauth_profile, token_url), MC_URL_MAX },
        { "device_authorization_url", offsetof(mc_oauth_profile, device_authorization_url),
          MC_URL_MAX },
        { "revocation_url", offsetof(mc_oauth_profile, revocation_url), MC_URL_MAX },
        { "scope", offsetof(mc_oauth_profile, scope), sizeof(out->scope) },
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char *dst = (char *)out + fields[i].off;
        dst[fields[i].size - 1] = '\0';   /* a provider's unterminated field */
        if ((rc = override(dst, fields[i].size, cfg, fields[i].key, err)) < 0)
            return rc;
    }

    /* sizes: the provider's params not replaced by the config's, the
     * config's (string members), the hints */
    const char *const *base = out->params;
    size_t n_base = 0, n_cfg = 0, n_hints = 0, bytes = 0;
    for (; base && base[n_base]; n_base++)
        if (!config_has_param(cfg, base[n_base]))
            bytes += strlen(base[n_base]) + 1;
    for (size_t i = 0;; i++) {
        const char *name = NULL;
        const char *v = host->cfg_member(cfg, "params", i, &name);
        if (!v && !name)
            break;
        if (v && name) {
            n_cfg++;
            bytes += strlen(name) + 1 + strlen(v) + 1;
        }
    }
    for (const mc_hint *h = out->hints; h && h->match; h++, n_hints++)
        bytes += strlen(h->match) + 1 + (h->hint ? strlen(h->hint) + 1 : 0);
    size_t n_params = n_base + n_cfg + 1;
    size_t head = n_params * sizeof(char *) + (n_hints + 1) * sizeof(mc_hint);
    if (n_params > SIZE_MAX / 2 / sizeof(mc_hint) || bytes > SIZE_MAX - head)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    void *mem = calloc(1, head + bytes);
    if (!mem)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    char **params = mem;
    mc_hint *hints = (mc_hint *)(params + n_params);
    block b = { (char *)(hints + n_hints + 1), 0, bytes };

    size_t k = 0;
    for (size_t i = 0; i < n_base; i++)
        if (!config_has_param(cfg, base[i]))
            params[k++] = put(&b, base[i], NULL, NULL);
    for (size_t i = 0;; i++) {
        const char *name = NULL;
        const char *v = host->cfg_member(cfg, "params", i, &name);
        if (!v && !name)
            break;
        if (v && name)   /* not a string: the config check reports it */
            params[k++] = put(&b, name, "=", v);
    }
    params[k] = NULL;
    if (out->hints) {
        for (size_t i = 0; i < n_hints; i++) {
            hints[i].match = put(&b, out->hints[i].match, NULL, NULL);
            hints[i].hint = put(&b, out->hints[i].hint, NULL, NULL);
        }
        hints[n_hints] = (mc_hint){ NULL, NULL };
        out->hints = hints;
    }
    out->params = (const char *const *)params;
    *own = mem;
    return 0;
}

void mc__oauth_profile_release(void *own)
{
    free(own);
}
