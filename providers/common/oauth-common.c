/* oauth-common: validation and profile helpers shared by the google,
 * microsoft and manual providers (compiled into each module, hidden). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth-common.h"

const char *const mc__oauth_mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };

static const mc_host_api *host;

void mc__oauth_init(const mc_host_api *h)
{
    host = h;
}

const mc_host_api *mc__oauth_host(void)
{
    return host;
}

static const char *const secret_keys[] = {
    "client_secret", "client_secret_file", "client_secret_env", "client_secret_command", NULL,
};

#define SECRET_SOURCES "client_secret, client_secret_file, client_secret_env or client_secret_command"

bool mc__oauth_has_secret(const mc_plugin_cfg *cfg)
{
    for (size_t i = 0; secret_keys[i]; i++)
        if (host->cfg_has(cfg, secret_keys[i]))
            return true;
    return false;
}

const char *mc__oauth_grant(const mc_plugin_cfg *cfg)
{
    const char *g = host->cfg_string(cfg, "grant");
    return g ? g : "authorization_code";
}

bool mc__oauth_external_token(const mc_plugin_cfg *cfg)
{
    return host->cfg_has(cfg, "access_token_command");
}

static bool one_of(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

bool mc__oauth_url_ok(const char *url)
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

int mc__oauth_check_url(const mc_plugin_cfg *cfg, const char *key)
{
    const char *url = host->cfg_string(cfg, key);
    if (!url)
        return 0;
    if (strlen(url) >= MC_URL_MAX) {
        host->cfg_error(cfg, key, "must be at most %d bytes long", MC_URL_MAX - 1);
        return 1;
    }
    if (!mc__oauth_url_ok(url)) {
        host->cfg_error(cfg, key,
                        "must be an https:// URL (http:// only to 127.0.0.1, [::1] or "
                        "localhost), got \"%s\"", url);
        return 1;
    }
    return 0;
}

int mc__oauth_validate(const mc_plugin_cfg *cfg)
{
    static const char *const client_auths[] = { "post", "basic", "none", NULL };
    static const char *const grants[] = {
        "authorization_code", "device_code", "client_credentials", NULL,
    };
    static const char *const url_keys[] = {
        "authorization_url", "token_url", "device_authorization_url", "revocation_url", NULL,
    };
    int n = 0;
    const char *s;

    if (!host->cfg_has(cfg, "user")) {
        host->cfg_error(cfg, "user", "required (the account that logs in to the SMTP server)");
        n++;
    } else if ((s = host->cfg_string(cfg, "user")) && !*s) {
        host->cfg_error(cfg, "user", "must not be empty");
        n++;
    }
    if (!mc__oauth_external_token(cfg) && !host->cfg_has(cfg, "client_id")) {
        host->cfg_error(cfg, "client_id", "required (the OAuth client ID of the app registration)");
        n++;
    } else if ((s = host->cfg_string(cfg, "client_id")) && !*s) {
        host->cfg_error(cfg, "client_id", "must not be empty");
        n++;
    }
    if ((s = host->cfg_string(cfg, "client_auth"))) {
        if (!one_of(s, client_auths)) {
            host->cfg_error(cfg, "client_auth", "must be \"post\", \"basic\" or \"none\", got \"%s\"", s);
            n++;
        } else if (strcmp(s, "none") != 0 && !mc__oauth_has_secret(cfg)) {
            host->cfg_error(cfg, "client_auth", "\"%s\" needs a client secret (%s)", s, SECRET_SOURCES);
            n++;
        }
    }
    if ((s = host->cfg_string(cfg, "grant"))) {
        if (!one_of(s, grants)) {
            host->cfg_error(cfg, "grant",
                            "must be \"authorization_code\", \"device_code\" or "
                            "\"client_credentials\", got \"%s\"", s);
            n++;
        } else if (strcmp(s, "client_credentials") == 0 && !mc__oauth_has_secret(cfg)) {
            host->cfg_error(cfg, "grant", "\"client_credentials\" needs a client secret (%s)",
                            SECRET_SOURCES);
            n++;
        }
    }
    if ((s = host->cfg_string(cfg, "mechanism")) && !one_of(s, mc__oauth_mechanisms)) {
        host->cfg_error(cfg, "mechanism", "must be \"XOAUTH2\" or \"OAUTHBEARER\", got \"%s\"", s);
        n++;
    }
    for (size_t i = 0; url_keys[i]; i++)
        n += mc__oauth_check_url(cfg, url_keys[i]);
    return n;
}

int mc__oauth_copy(char *dst, size_t size, const char *src, const char *key, mc_err **err)
{
    size_t len = src ? strlen(src) : 0;
    if (len >= size) {
        dst[0] = '\0';
        return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                           "auth.%s: must be at most %zu bytes long", key, size - 1);
    }
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
    return 0;
}

/* ------------------------------------------------------------ params */

/* Parameter arrays handed out so far: a profile borrows one, so each lives
 * until the module is unloaded. Identical content is handed out once. */
typedef struct param_set {
    struct param_set *next;
    char            **items;   /* "k=v", NULL-terminated */
} param_set;

static pthread_mutex_t params_lock = PTHREAD_MUTEX_INITIALIZER;
static param_set *param_sets;

static void items_free(char **items)
{
    if (!items)
        return;
    for (size_t i = 0; items[i]; i++)
        free(items[i]);
    free(items);
}

__attribute__((destructor)) static void params_release(void)
{
    pthread_mutex_lock(&params_lock);
    while (param_sets) {
        param_set *p = param_sets;
        param_sets = p->next;
        items_free(p->items);
        free(p);
    }
    pthread_mutex_unlock(&params_lock);
}

static bool same_items(char *const *a, char *const *b)
{
    size_t i;
    for (i = 0; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return !a[i] && !b[i];
}

/* Whether auth.params has a member called `key` (the part of "k=v" before '='). */
static bool config_has_param(const mc_plugin_cfg *cfg, const char *kv)
{
    size_t klen = strcspn(kv, "=");
    const char *name;
    for (size_t i = 0;; i++) {
        name = NULL;
        const char *v = host->cfg_member(cfg, "params", i, &name);
        if (!v && !name)
            return false;
        if (name && strlen(name) == klen && strncmp(name, kv, klen) == 0)
            return true;
    }
}

const char *const *mc__oauth_params(const mc_plugin_cfg *cfg, const char *const *base)
{
    size_t n_base = 0, n_cfg = 0;
    while (base && base[n_base])
        n_base++;
    for (;; n_cfg++) {
        const char *name = NULL;
        if (!host->cfg_member(cfg, "params", n_cfg, &name) && !name)
            break;
    }
    char **items = calloc(n_base + n_cfg + 1, sizeof(*items));
    if (!items)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_base; i++) {
        if (config_has_param(cfg, base[i]))
            continue;
        if (!(items[k++] = strdup(base[i])))
            goto oom;
    }
    for (size_t i = 0; i < n_cfg; i++) {
        const char *name = NULL;
        const char *v = host->cfg_member(cfg, "params", i, &name);
        if (!v || !name)
            continue;   /* not a string: the config check reports it */
        if (asprintf(&items[k++], "%s=%s", name, v) < 0) {
            items[k - 1] = NULL;
            goto oom;
        }
    }

    pthread_mutex_lock(&params_lock);
    for (param_set *p = param_sets; p; p = p->next) {
        if (same_items(p->items, items)) {
            pthread_mutex_unlock(&params_lock);
            items_free(items);
            return (const char *const *)p->items;
        }
    }
    param_set *p = calloc(1, sizeof(*p));
    if (!p) {
        pthread_mutex_unlock(&params_lock);
        goto oom;
    }
    p->items = items;
    p->next = param_sets;
    param_sets = p;
    pthread_mutex_unlock(&params_lock);
    return (const char *const *)items;
oom:
    items_free(items);
    return NULL;
}
