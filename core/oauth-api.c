/* oauth-api: the public OAuth functions of mailconn.h (mc_oauth_*), built on
 * the OAuth engine's ops and the request send.c makes for a server. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "context.h"
#include "error.h"
#include "host.h"
#include "log.h"
#include "secret.h"
#include "send.h"

/* The server's OAuth request, or why there is none. */
static int prepare(mc_context *ctx, const char *server, bool resolve_secret, mc__oauth_req *r,
                   const mc_server **srv_out, mc_err **err)
{
    memset(r, 0, sizeof(*r));
    if (!ctx)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no context");
    const mc_server *srv = mc_context_server(ctx, server);
    if (!srv)
        return server ? mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                      "no server named \"%s\"", server)
                      : mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                                      "no default server");
    if (srv_out)
        *srv_out = srv;
    if (!srv->auth_provider)
        return mc__error_set(err, MC_ENOTSUP, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "server \"%s\" has no authentication configured", srv->name);
    if (mc__host()->cfg_string(&srv->auth_cfg, "access_token_command"))
        return mc__error_set(err, MC_ENOTSUP, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "server \"%s\" takes its tokens from access_token_command: "
                             "mailconn keeps none", srv->name);
    const mc__plugin *prov;
    int rc = mc__registry_get(ctx->reg, MC_PLUGIN_AUTH, srv->auth_provider, &prov, err);
    if (rc < 0)
        return rc;
    const mc_auth_ops *ops = prov->desc->ops;
    if (!ops->oauth || !ops->oauth_profile)
        return mc__error_set(err, MC_ENOTSUP, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "server \"%s\" uses provider \"%s\", which does not use OAuth",
                             srv->name, srv->auth_provider);
    rc = mc__oauth_request_ex(ctx, srv, resolve_secret, r, err);
    if (rc < 0) {
        mc__oauth_request_free(r);
        return rc;
    }
    if (!r->engine || r->engine->size < sizeof(mc_oauth_engine_ops)) {
        mc__oauth_request_free(r);
        return mc__error_set(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "the OAuth engine is older than this library");
    }
    return 0;
}

int mc_oauth_begin(char **authorization_url, mc_context *ctx, const char *server,
                   const char *redirect_uri, mc_err **err)
{
    if (!authorization_url)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "no place for the authorization URL");
    *authorization_url = NULL;
    if (!redirect_uri || !*redirect_uri)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "mc_oauth_begin needs the application's redirect_uri");
    mc__oauth_req r;
    int rc = prepare(ctx, server, false, &r, NULL, err);
    if (rc < 0)
        return rc;
    r.req.redirect_uri = redirect_uri;
    rc = r.engine->begin(&ctx->hc, &r.req, authorization_url, err);
    mc__oauth_request_free(&r);
    return rc;
}

int mc_oauth_finish(mc_context *ctx, const char *server, const char *callback_url, mc_err **err)
{
    if (!callback_url || !*callback_url)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "mc_oauth_finish needs the callback URL");
    mc__oauth_req r;
    int rc = prepare(ctx, server, true, &r, NULL, err);
    if (rc < 0)
        return rc;
    rc = r.engine->finish(&ctx->hc, &r.req, callback_url, err);
    mc__oauth_request_free(&r);
    return rc;
}

void mc_oauth_device_free(mc_oauth_device *dev)
{
    if (!dev)
        return;
    free(dev->user_code);
    free(dev->verification_uri);
    free(dev->verification_uri_complete);
    mc__secret_free(dev->device_code);
    free(dev);
}

int mc_oauth_device_begin(mc_oauth_device **out, mc_context *ctx, const char *server,
                          mc_err **err)
{
    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "no place for the device authorization");
    *out = NULL;
    mc__oauth_req r;
    int rc = prepare(ctx, server, true, &r, NULL, err);
    if (rc < 0)
        return rc;
    mc_oauth_device *d = calloc(1, sizeof(*d));
    if (!d) {
        mc__oauth_request_free(&r);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH,
                             "out of memory");
    }
    rc = r.engine->device_begin(&ctx->hc, &r.req, d, err);
    mc__oauth_request_free(&r);
    if (rc < 0) {
        mc_oauth_device_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int mc_oauth_device_wait(mc_context *ctx, const char *server, const mc_oauth_device *dev,
                         int wait_s, mc_err **err)
{
    if (!dev)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "no device authorization to wait for");
    mc__oauth_req r;
    int rc = prepare(ctx, server, true, &r, NULL, err);
    if (rc < 0)
        return rc;
    rc = r.engine->device_wait(&ctx->hc, &r.req, dev, wait_s, err);
    mc__oauth_request_free(&r);
    return rc;
}

int mc_oauth_import(mc_context *ctx, const char *server, const char *refresh_token, mc_err **err)
{
    if (ctx && refresh_token)
        mc__redact_add(&ctx->hc, refresh_token);   /* before anything can log it */
    mc__oauth_req r;
    int rc = prepare(ctx, server, true, &r, NULL, err);
    if (rc < 0)
        return rc;
    rc = r.engine->import_refresh(&ctx->hc, &r.req, refresh_token, err);
    mc__oauth_request_free(&r);
    return rc;
}

int mc_oauth_revoke(mc_context *ctx, const char *server, mc_err **err)
{
    mc__oauth_req r;
    int rc = prepare(ctx, server, true, &r, NULL, err);
    if (rc < 0)
        return rc;
    rc = r.engine->revoke(&ctx->hc, &r.req, err);
    mc__oauth_request_free(&r);
    return rc;
}

/* days before the provider's refresh-token cliff, or -1 without one */
static int days_left(const mc_oauth_profile *p, long long issued, long long now)
{
    if (!issued || now < issued)
        return -1;
    long long days = (now - issued) / 86400;
    unsigned limit = p->refresh_lifetime_days ? p->refresh_lifetime_days : p->refresh_testing_days;
    if (!limit)
        return -1;
    long long left = (long long)limit - days;
    return left < 0 ? 0 : (int)left;
}

int mc_oauth_get_status(mc_token_status *status, mc_context *ctx, const char *server)
{
    if (!status || status->version < 1)
        return MC_EINVAL;
    unsigned version = status->version;
    memset(status, 0, sizeof(*status));
    status->version = version;
    status->days_left = -1;
    mc__oauth_req r;
    const mc_server *srv = NULL;
    int rc = prepare(ctx, server, false, &r, &srv, NULL);
    if (rc == MC_ENOTSUP && srv && srv->auth_provider &&
        mc__host()->cfg_string(&srv->auth_cfg, "access_token_command"))
        snprintf(status->grant, sizeof(status->grant), "access_token_command");
    if (rc < 0)
        return rc;
    rc = r.engine->status(&ctx->hc, &r.req, status);
    status->version = version;
    if (rc < 0 && !status->store_code) {
        status->store_code = rc;
        snprintf(status->store_message, sizeof(status->store_message), "%s", mc_strerror(rc));
    }
    snprintf(status->grant, sizeof(status->grant), "%s", r.req.grant);
    if (status->stored && status->refresh_issued) {
        long long now = (long long)time(NULL);
        status->days_left = days_left(&r.profile, status->refresh_issued, now);
        mc__refresh_warning(status->warning, sizeof(status->warning), &r.profile,
                            status->refresh_issued, now);
    }
    mc__oauth_request_free(&r);
    return 0;
}

static const char *flow_name(unsigned flow)
{
    switch (flow) {
    case MC_FLOW_AUTH_CODE: return "browser";
    case MC_FLOW_PASTE: return "paste";
    case MC_FLOW_DEVICE: return "device";
    case MC_FLOW_CLIENT_CREDENTIALS: return "client credentials";
    default: return "?";
    }
}

static bool have_display(void)
{
    const char *b = getenv("BROWSER"), *x11 = getenv("DISPLAY"), *wl = getenv("WAYLAND_DISPLAY");
    return (b && *b) || (x11 && *x11) || (wl && *wl);
}

int mc_oauth_authorize(mc_context *ctx, const char *server, const mc_oauth_authorize_options *opts,
                       mc_err **err)
{
    static const mc_oauth_authorize_options defaults = MC_OAUTH_AUTHORIZE_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    if (opts->version < 1)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                             "mc_oauth_authorize_options.version is not set");
    mc__oauth_req r;
    const mc_server *srv = NULL;
    int rc = prepare(ctx, server, true, &r, &srv, err);
    if (rc < 0)
        return rc;
    if (strcmp(r.req.grant, "client_credentials") == 0) {
        /* nothing to authorize: fetching a token proves the credentials */
        char *tok = NULL;
        rc = r.engine->token(&ctx->hc, &r.req, &tok, err);
        mc__secret_free(tok);
        mc__oauth_request_free(&r);
        return rc;
    }
    unsigned flow = opts->flow;
    /* auth.grant "device_code" asks for the device flow; else a browser
     * when there is a display, else the provider's headless flow */
    if (!flow && strcmp(r.req.grant, "device_code") == 0)
        flow = MC_FLOW_DEVICE;
    if (!flow)
        flow = have_display() && (r.profile.flows & MC_FLOW_AUTH_CODE) ? MC_FLOW_AUTH_CODE
                                                                    : r.profile.default_headless;
    if (!(r.profile.flows & flow)) {
        rc = mc__error_set(err, MC_ENOTSUP, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                           "provider %s does not allow the %s flow%s", srv->auth_provider,
                           flow_name(flow),
                           flow == MC_FLOW_DEVICE && strcmp(srv->auth_provider, "google") == 0
                               ? " (Google does not grant the Gmail scope to devices: use "
                                 "the paste or browser flow)" : "");
        mc__oauth_request_free(&r);
        return rc;
    }
    mc_oauth_authorize_options o = *opts;
    o.flow = flow;
    rc = r.engine->authorize(&ctx->hc, &r.req, &o, err);
    mc__oauth_request_free(&r);
    return rc;
}

int mc_token_store_copy(mc_context *ctx, const char *from, const char *to, mc_token_copy_fn *fn,
                        void *payload, mc_err **err)
{
    if (!ctx || !from || !to)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "no context, or no store to copy from or to");
    const char *other = ctx->hc.token_store ? "application"
                        : ctx->store.plugin ? ctx->store.type : NULL;
    bool to_store = strcmp(from, "file") == 0;
    const char *named = to_store ? to : from;
    if (!other)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "the token store is the file store (the config names no "
                             "\"token_store\"): nothing to copy %s", to_store ? "to" : "from");
    if ((!to_store && strcmp(to, "file") != 0) || strcmp(named, other) != 0)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "copy between \"file\" and this context's token store \"%s\" "
                             "(asked: from \"%s\" to \"%s\")", other, from, to);
    char desc[512];
    int rc = mc_context_token_store(ctx, desc, sizeof(desc), err);
    if (rc < 0)
        return rc;
    int copied = 0, first = 0;
    for (size_t i = 0; i < mc_context_server_count(ctx); i++) {
        const mc_server *srv = mc_context_server_at(ctx, i);
        mc__oauth_req r;
        mc_err *e = NULL;
        rc = prepare(ctx, srv->name, true, &r, NULL, &e);
        if (rc == MC_ENOTSUP) {          /* not an OAuth server: nothing kept */
            mc_error_free(e);
            continue;
        }
        bool done = false;
        if (rc == 0 && !MC_SIZE_HAS(r.engine, mc_oauth_engine_ops, store_copy))
            rc = mc__error_set(&e, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                               "the OAuth engine cannot copy token records");
        else if (rc == 0)
            rc = r.engine->store_copy(&ctx->hc, &r.req, to_store, &done, &e);
        mc__oauth_request_free(&r);
        if (rc == 0 && done)
            copied++;
        if (fn)
            fn(srv->name, rc < 0 ? rc : done ? 0 : 1, e, payload);
        if (rc < 0 && !first) {
            first = rc;
            if (err && !*err) {
                *err = e;
                e = NULL;
            }
        }
        mc_error_free(e);
    }
    return first ? first : copied;
}
