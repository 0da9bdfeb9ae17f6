/* proxy: a server's "proxy" object ({"type", "host", "port", "user", one
 * password source, "allow_plaintext_auth", the plugin's own keys}), the
 * route the core builds from it, and the tunnel: connect to the proxy by
 * the connection's deadline, then the plugin's tunnel op to the target
 * name and port. Environment variables such as https_proxy are never read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/linkhash.h>
#include <openssl/crypto.h>

#include "error.h"
#include "log.h"
#include "host.h"
#include "loader.h"
#include "net.h"
#include "proxy.h"
#include "secret.h"

static const char *const common_keys[] = {
    "type", "host", "port", "user", "password", "password_file", "password_env",
    "password_command", "allow_plaintext_auth", NULL,
};
static const char *const password_keys[] = {
    "password", "password_file", "password_env", "password_command", NULL,
};

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static int at(mc__diag *d, const char *path, const char *key, const char *msg)
{
    char *kp = NULL;
    if (key && asprintf(&kp, "%s.%s", path, key) < 0)
        return MC_ENOMEM;
    int rc = mc__diag_add_at(d, key ? kp : path, NULL, msg);
    free(kp);
    return rc < 0 ? MC_ENOMEM : 0;
}

static int atf(mc__diag *d, const char *path, const char *key, const char *fmt, ...)
    MC__FMT(4, 5);
static int atf(mc__diag *d, const char *path, const char *key, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MC_ENOMEM;
    int rc = at(d, path, key, msg);
    free(msg);
    return rc;
}

/* A string without NUL, CR or LF, not empty. */
static bool good_string(json_object *v)
{
    if (!json_object_is_type(v, json_type_string))
        return false;
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    return len > 0 && strlen(s) == len && !strpbrk(s, "\r\n");
}

static bool loopback(const char *h)
{
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0
           || strcmp(h, "[::1]") == 0;
}

bool mc__proxy_has_inline_secret(json_object *obj)
{
    return obj && json_object_is_type(obj, json_type_object)
           && json_object_object_get_ex(obj, "password", NULL);
}

void mc__proxy_route_free(struct mc_proxy_route *r)
{
    if (!r)
        return;
    free(r->type);
    free(r->host);
    free(r->cfg.path);
    free(r);
}

int mc__proxy_prepare(mc__diag *d, mc__registry *reg, json_object *obj, const char *path,
                      struct mc_proxy_route **out)
{
    *out = NULL;
    if (!json_object_is_type(obj, json_type_object))
        return at(d, path, NULL, "must be an object {\"type\": \"socks5\" or \"http\", "
                                 "\"host\": ..., \"port\": ...}");
    size_t before = d->n;
    json_object *v;
    const char *type = NULL, *host = NULL;
    int port = 0;
    bool plaintext_ok = false, has_user = false, has_password = false;
    int rc = 0;

    if (!json_object_object_get_ex(obj, "type", &v))
        rc = at(d, path, "type", "is required (\"socks5\", \"http\" or another proxy plugin)");
    else if (!good_string(v))
        rc = at(d, path, "type", "must be a non-empty string");
    else
        type = json_object_get_string(v);
    if (!rc && !json_object_object_get_ex(obj, "host", &v))
        rc = at(d, path, "host", "is required");
    else if (!rc && !good_string(v))
        rc = at(d, path, "host", "must be a non-empty string");
    else if (!rc)
        host = json_object_get_string(v);
    if (!rc && json_object_object_get_ex(obj, "port", &v)) {
        int64_t x = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
        if (x < 1 || x > 65535)
            rc = at(d, path, "port", "must be an integer 1..65535");
        else
            port = (int)x;
    }
    if (!rc && json_object_object_get_ex(obj, "user", &v)) {
        if (!good_string(v))
            rc = at(d, path, "user", "must be a non-empty string");
        has_user = true;
    }
    if (!rc && json_object_object_get_ex(obj, "allow_plaintext_auth", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            rc = at(d, path, "allow_plaintext_auth", "must be true or false");
        else
            plaintext_ok = json_object_get_boolean(v);
    }
    size_t sources = 0;
    for (size_t i = 0; !rc && password_keys[i]; i++) {
        if (!json_object_object_get_ex(obj, password_keys[i], &v))
            continue;
        sources++;
        has_password = true;
        if (!good_string(v))
            rc = at(d, path, password_keys[i], "must be a non-empty string without CR or LF");
    }
    if (!rc && sources > 1)
        rc = at(d, path, NULL, "more than one password source is set; use exactly one of "
                               "\"password\", \"password_file\", \"password_env\" and "
                               "\"password_command\"");
    if (rc)
        return rc;

    const mc_proxy_ops *ops = NULL;
    if (type) {
        const mc__plugin *pl = NULL;
        mc_err *pe = NULL;
        int g = reg ? mc__registry_get(reg, MC_PLUGIN_PROXY, type, &pl, &pe) : MC_EPLUGIN;
        if (g == 0 && pl && pl->desc && pl->desc->ops)
            ops = pl->desc->ops;
        else if (reg && mc__registry_exists(reg, MC_PLUGIN_PROXY, type))
            rc = atf(d, path, "type", "proxy plugin \"%s\" cannot be loaded: %s", type,
                     pe && pe->message ? pe->message : mc_strerror(g));
        else
            rc = atf(d, path, "type", "unknown proxy type \"%s\" (bundled: \"socks5\", \"http\")",
                     type);
        mc_error_free(pe);
        if (rc)
            return rc;
    }

    json_object_object_foreach(obj, key, val) {
        (void)val;
        if (in_list(key, common_keys) || (ops && in_list(key, ops->keys)))
            continue;
        if (!ops)
            continue;   /* the type's error says enough */
        char *kp = NULL;
        if (asprintf(&kp, "%s.%s", path, key) < 0)
            return MC_ENOMEM;
        char *msg = NULL;
        if (asprintf(&msg, "unknown key \"%s\" for proxy type \"%s\"", key, type) < 0) {
            free(kp);
            return MC_ENOMEM;
        }
        rc = mc__diag_add_at(d, path, kp, msg) < 0 ? MC_ENOMEM : 0;
        free(kp);
        free(msg);
        if (rc)
            return rc;
    }
    if (host && (has_user || has_password) && !plaintext_ok && !loopback(host))
        rc = atf(d, path, NULL, "proxy credentials travel in clear: they are sent only to a "
                                "loopback proxy; set \"allow_plaintext_auth\": true to send "
                                "them to %s", host);
    if (rc)
        return rc;

    struct mc_proxy_route *r = calloc(1, sizeof(*r));
    if (!r)
        return MC_ENOMEM;
    r->cfg.obj = obj;
    r->cfg.path = strdup(path);
    if (!r->cfg.path) {
        free(r);
        return MC_ENOMEM;
    }
    if (ops && ops->validate) {
        r->cfg.diag = d;
        ops->validate(mc__registry_hc(reg), &r->cfg);
        r->cfg.diag = NULL;
    }
    if (!ops || d->n > before) {
        mc__proxy_route_free(r);
        return 0;
    }
    r->ops = ops;
    r->type = strdup(type);
    r->host = strdup(host);
    r->port = port ? (uint16_t)port : ops->default_port;
    if (!r->type || !r->host) {
        mc__proxy_route_free(r);
        return MC_ENOMEM;
    }
    if (r->port == 0) {
        mc__proxy_route_free(r);
        return atf(d, path, "port", "is required (proxy type \"%s\" has no default port)", type);
    }
    *out = r;
    return 0;
}

/* "proxy socks5 127.0.0.1:1080" */
static void proxy_name(char *out, size_t n, const struct mc_proxy_route *r)
{
    if (strchr(r->host, ':') && r->host[0] != '[')
        snprintf(out, n, "proxy %s [%s]:%u", r->type, r->host, (unsigned)r->port);
    else
        snprintf(out, n, "proxy %s %s:%u", r->type, r->host, (unsigned)r->port);
}

/* The error of a step, at stage proxy, its message naming the proxy. */
static int restage(mc_err **err, mc_err *e, int rc, const char *name, const char *what)
{
    mc_outcome oc = e ? e->outcome : mc__outcome_of(rc);
    if (rc == MC_EAUTH)
        oc = MC_OUTCOME_AUTH;
    else if (rc == MC_EREFUSED)
        oc = MC_OUTCOME_PERMANENT;
    else if (rc == MC_ENET || rc == MC_ETIMEOUT)
        oc = MC_OUTCOME_TRANSIENT;
    const char *m = e && e->message ? e->message : mc_strerror(rc);
    if (strstr(m, name))
        mc__error_set(err, rc, oc, MC_STAGE_PROXY, "%s", m);
    else
        mc__error_set(err, rc, oc, MC_STAGE_PROXY, "%s: %s%s", name, what, m);
    mc_error_free(e);
    return rc;
}

int mc__proxy_connect(mc_host_ctx *hc, const mc_connect_opts *o, int *fd_out, mc_err **err)
{
    const struct mc_proxy_route *r = o->proxy;
    *fd_out = -1;
    char name[320];
    proxy_name(name, sizeof(name), r);
    if (!o->host || !o->host[0])
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                             "tcp connect: no host given");

    int64_t deadline = mc__connect_deadline(o);
    mc_connect_opts po = {
        .size = sizeof(po),
        .host = r->host,
        .port = r->port,
        .timeout_ms = o->timeout_ms,
        .deadline_ms = deadline,
    };
    int fd = -1;
    mc_err *e = NULL;
    int rc = mc__tcp_connect(&po, &fd, &e);
    if (rc < 0)
        return restage(err, e, rc, name, "unreachable: ");

    char *password = NULL;
    if ((rc = mc__secret_resolve(hc, &r->cfg, "password", &password, err)) < 0) {
        close(fd);
        return rc;
    }
    mc_proxy_auth auth = {
        .user = mc__host()->cfg_string(&r->cfg, "user"),
        .password = password,
    };
    if (!auth.user && password)
        auth.user = "";
    mc__log(hc, MC_LOG_DEBUG, "%s: tunnel to %s:%u", name, o->host, (unsigned)o->port);
    rc = r->ops->tunnel(hc, fd, o->host, o->port, auth.user || auth.password ? &auth : NULL,
                        &r->cfg, deadline, &e);
    mc__secret_free(password);
    if (rc < 0) {
        close(fd);
        return restage(err, e, rc, name, "");
    }
    mc_error_free(e);
    *fd_out = fd;
    return 0;
}

static int wipe_one(json_object *proxy, bool to_null)
{
    json_object *v = NULL;
    if (!json_object_is_type(proxy, json_type_object)
        || !json_object_object_get_ex(proxy, "password", &v)
        || !json_object_is_type(v, json_type_string))
        return 0;
    OPENSSL_cleanse((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
    if (to_null && json_object_object_add(proxy, "password", NULL) < 0)
        return MC_ENOMEM;
    return 0;
}

int mc__proxy_wipe_secrets(json_object *server, bool to_null)
{
    json_object *p = NULL, *auth = NULL;
    if (!json_object_is_type(server, json_type_object))
        return 0;
    int rc = 0;
    if (json_object_object_get_ex(server, "proxy", &p))
        rc = wipe_one(p, to_null);
    if (rc == 0 && json_object_object_get_ex(server, "auth", &auth)
        && json_object_is_type(auth, json_type_object)
        && json_object_object_get_ex(auth, "proxy", &p))
        rc = wipe_one(p, to_null);
    return rc;
}
