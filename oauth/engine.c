/* oauth/engine: the engine's ops and its one exported symbol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "oauth.h"

static bool is_client_credentials(const mc_oauth_request *req)
{
    return req->grant && !strcmp(req->grant, "client_credentials");
}

static int check_request(const mc_oauth_request *req, mc_err **err)
{
    if (!req || req->size < sizeof(mc_oauth_request) || !req->profile ||
        req->profile->size < sizeof(mc_oauth_profile))
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_CONFIG, NULL,
                              "OAuth request without a profile");
    if (!req->client_id || !*req->client_id)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "server %s: auth.client_id is required", req->server);
    if (req->client_auth && strcmp(req->client_auth, "none") && !req->client_secret)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "server %s: auth.client_auth \"%s\" needs a client secret",
                              req->server, req->client_auth);
    return mc__oauth_check_url(req->profile->token_url, "token_url", err);
}

/* min(refresh_margin_s, half the token's lifetime): a token that lives
 * shorter than twice the margin is not refreshed on every send */
static long long margin(const mc_oauth_request *req, const mc__oauth_store *s)
{
    long long m = req->refresh_margin_s >= 0 ? req->refresh_margin_s : MC__OAUTH_DEFAULT_MARGIN;
    if (s->access_issued_at > 0 && s->expires_at > s->access_issued_at &&
        s->expires_at - s->access_issued_at <= 2 * MC__OAUTH_EXPIRES_MAX) {
        /* both positive, expires_at the larger: the difference fits */
        /* rounded up: a 1 s token is due at once */
        long long half = (s->expires_at - s->access_issued_at + 1) / 2;
        if (half < m)
            m = half;
    }
    return m;
}

bool mc__oauth_store_usable(const mc_oauth_request *req, const mc__oauth_store *s,
                            long long now)
{
    /* expires_at comes from a file: compared without overflow (a
     * difference too large for long long is far more than any margin) */
    long long left;
    if (!s->access_token || s->expires_at <= now)
        return false;
    return __builtin_sub_overflow(s->expires_at, now, &left) || left > margin(req, s);
}

static bool usable(const mc_oauth_request *req, const mc__oauth_store *s)
{
    return mc__oauth_store_usable(req, s, mc__oauth_now());
}

static int mismatch(const mc_oauth_request *req, const mc__oauth_store *s, mc_err **err)
{
    char hint[256];
    snprintf(hint, sizeof hint, "authorize server %s again", req->server);
    mc_err *before = err ? *err : NULL;
    int rc = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, hint,
                            "tokens stored for another identity (provider %s, client %s, user %s) "
                            "for server %s",
                            s->provider ? s->provider : "-", s->client_id ? s->client_id : "-",
                            s->user ? s->user : "-", req->server);
    if (err && *err && *err != before)
        (*err)->action = MC_ACTION_REAUTHORIZE;
    return rc;
}

static int hand_out(const mc__oauth_store *s, char **out, mc_err **err)
{
    *out = H->strdup(s->access_token);
    if (!*out)
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    return 0;
}

/* Under the lock: refresh (or fetch with client_credentials) and store. */
static int renew(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_store *s,
                 mc_err **err)
{
    const mc_oauth_profile *p = req->profile;
    mc__obuf form = MC__OBUF_INIT;
    int rc;
    bool cc = is_client_credentials(req);
    if (cc) {
        rc = mc__oauth_form_add(&form, "grant_type", "client_credentials");
        if (!rc && p->scope[0])
            rc = mc__oauth_form_add(&form, "scope", p->scope);
    } else {
        /* no scope: RFC 6749 section 6, the scope originally granted (a
         * server may have dropped part of what was asked, offline_access) */
        rc = mc__oauth_form_add(&form, "grant_type", "refresh_token");
        if (!rc)
            rc = mc__oauth_form_add(&form, "refresh_token", s->refresh_token);
    }
    if (rc) {
        mc__obuf_free(&form);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    H->log(op->hc, MC_LOG_DEBUG, "oauth: server %s: %s", req->server,
           cc ? "requesting an access token (client credentials)"
              : "refreshing access token <redacted> with refresh token <redacted>");
    mc__oauth_tokens t;
    rc = mc__oauth_token_request(op->hc, req, p->token_url, form.data, &t, NULL, err);
    mc__obuf_free(&form);
    if (rc)
        return rc;
    if (cc && t.refresh_token) {            /* not meant for this grant */
        mc__oauth_wipe_free(t.refresh_token);
        t.refresh_token = NULL;
    }
    rc = mc__oauth_store_tokens(op, req, s, &t, !cc, err);
    mc__oauth_tokens_clear(&t);
    return rc;
}

static int engine_token(mc_host_ctx *hc, const mc_oauth_request *req, char **out,
                        mc_err **err)
{
    *out = NULL;
    int rc = check_request(req, err);
    mc__oauth_op op;
    if (!rc)
        rc = mc__oauth_op_init(&op, hc, req, err);
    if (rc)
        return rc;
    mc__oauth_store s;
    bool found = false;
    bool cc = is_client_credentials(req);

    /* fast path: a cached token far enough from expiry, no lock */
    rc = mc__oauth_store_load(&op, req, &s, &found, cc ? NULL : err);
    if (rc && !cc)
        return rc;
    if (!rc && found && mc__oauth_store_identity_matches(req, &s) && usable(req, &s)) {
        rc = hand_out(&s, out, err);
        mc__oauth_store_clear(&s);
        return rc;
    }
    /* the token seen before waiting: a different one after the wait is fresh */
    char *seen = s.access_token;
    s.access_token = NULL;
    mc__oauth_store_clear(&s);

    rc = mc__oauth_lock(&op, req, err);
    if (rc) {
        mc__oauth_wipe_free(seen);
        return rc;
    }
    /* re-read: another thread or process may have refreshed meanwhile */
    /* client_credentials: a bad file is simply replaced */
    rc = mc__oauth_store_load(&op, req, &s, &found, cc ? NULL : err);
    if (rc && !cc)
        goto out;
    rc = 0;
    if (found && !mc__oauth_store_identity_matches(req, &s)) {
        if (!cc) {
            rc = mismatch(req, &s, err);
            goto out;
        }
        mc__oauth_store_clear(&s);   /* client_credentials: fetch for this identity */
        found = false;
    }
    /* usable, or refreshed by another thread or process while this one
     * waited (a provider whose tokens live shorter than the margin) */
    if (found && (usable(req, &s) ||
                  (s.access_token && s.expires_at > mc__oauth_now() &&
                   (!seen || strcmp(seen, s.access_token))))) {
        H->log(hc, MC_LOG_DEBUG,
               "oauth: server %s: using the access token another request refreshed",
               req->server);
        rc = hand_out(&s, out, err);
        goto out;
    }
    if (!cc && (!found || !s.refresh_token)) {
        char hint[256];
        snprintf(hint, sizeof hint, "authorize server %s", req->server);
        mc_err *before = err ? *err : NULL;
        rc = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, hint,
                            "no token stored for server %s", req->server);
        if (err && *err && *err != before)
            (*err)->action = MC_ACTION_AUTHORIZE;
        goto out;
    }
    rc = renew(&op, req, &s, err);
    if (!rc)
        rc = hand_out(&s, out, err);
out:
    mc__oauth_unlock(&op);
    mc__oauth_store_clear(&s);
    mc__oauth_wipe_free(seen);
    return rc;
}

static int engine_invalidate(mc_host_ctx *hc, const mc_oauth_request *req, const char *token,
                             mc_err **err)
{
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!token)
        return 0;
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    if (!rc)
        rc = mc__oauth_lock(&op, req, err);
    if (rc)
        return rc;
    mc__oauth_store s;
    bool found = false;
    rc = mc__oauth_store_load(&op, req, &s, &found, err);
    if (!rc && found && mc__oauth_store_identity_matches(req, &s) && s.access_token &&
        !strcmp(s.access_token, token)) {
        mc__oauth_wipe_free(s.access_token);
        s.access_token = NULL;
        s.expires_at = 0;
        rc = mc__oauth_store_save(&op, req, &s, err);
        H->log(hc, MC_LOG_DEBUG, "oauth: server %s: access token <redacted> forgotten",
               req->server);
    }
    mc__oauth_store_clear(&s);
    mc__oauth_unlock(&op);
    return rc;
}

static int engine_authorize(mc_host_ctx *hc, const mc_oauth_request *req,
                            const mc_oauth_authorize_options *o, mc_err **err)
{
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!o || o->version < 1)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "authorization options missing");
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    return rc ? rc : mc__oauth_authorize(&op, req, o, err);
}

static int engine_import(mc_host_ctx *hc, const mc_oauth_request *req,
                         const char *refresh_token, mc_err **err)
{
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!refresh_token || !*refresh_token)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "the refresh token to import is empty");
    H->redact(hc, refresh_token);
    if (!mc__oauth_refresh_token_ok(refresh_token, strlen(refresh_token)))
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "the refresh token to import has a control character, space or "
                              "8-bit byte in it");
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    if (!rc)
        rc = mc__oauth_lock(&op, req, err);
    if (rc)
        return rc;
    mc__oauth_store s;
    memset(&s, 0, sizeof s);
    s.refresh_token = strdup(refresh_token);
    if (!s.refresh_token) {
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    } else {
        s.refresh_issued_at = mc__oauth_now();
        /* redeem once: proves the token before anything is stored */
        rc = renew(&op, req, &s, err);
    }
    mc__oauth_store_clear(&s);
    mc__oauth_unlock(&op);
    return rc;
}

static int engine_revoke(mc_host_ctx *hc, const mc_oauth_request *req, mc_err **err)
{
    int rc = check_request(req, err);
    mc__oauth_op op;
    if (!rc)
        rc = mc__oauth_op_init(&op, hc, req, err);
    if (!rc)
        rc = mc__oauth_lock(&op, req, err);
    if (rc)
        return rc;
    mc__oauth_store s;
    bool found = false;
    rc = mc__oauth_store_load(&op, req, &s, &found, err);
    const char *url = req->profile->revocation_url;
    const char *token = found ? (s.refresh_token ? s.refresh_token : s.access_token) : NULL;
    if (!rc && token && url[0] && mc__oauth_store_identity_matches(req, &s)) {
        mc__obuf form = MC__OBUF_INIT;
        rc = mc__oauth_form_add(&form, "token", token);
        if (!rc)
            rc = mc__oauth_form_add(&form, "token_type_hint",
                                    s.refresh_token ? "refresh_token" : "access_token");
        mc__oauth_http h;
        if (rc)
            rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
        else
            rc = mc__oauth_post(hc, req, url, form.data, &h, err);
        mc__obuf_free(&form);
        if (!rc) {
            /* RFC 7009: 200 even for an unknown token */
            if (h.status < 200 || h.status > 299)
                rc = mc__oauth_error_from(h.status, h.body.data, h.body.len, req, NULL, err);
            mc__oauth_http_free(&h);
        }
        if (!rc)
            H->log(hc, MC_LOG_INFO, "server %s: token revoked at %s", req->server, url);
    }
    if (!rc)
        rc = mc__oauth_store_delete(&op, req, err);
    mc__oauth_store_clear(&s);
    mc__oauth_unlock(&op);
    return rc;
}

/* mc_token_store_copy: the record, as stored, from one store to the other,
 * each under its lock (the source's taken first; always file, then the
 * other store, so two copies in opposite directions cannot deadlock) */
static int engine_store_copy(mc_host_ctx *hc, const mc_oauth_request *req, bool to_store,
                             bool *copied, mc_err **err)
{
    *copied = false;
    int rc = check_request(req, err);
    mc__oauth_op other, file;
    if (!rc)
        rc = mc__oauth_op_init(&other, hc, req, err);
    if (rc)
        return rc;
    if (other.builtin)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "the token store is the file store: nothing to copy");
    mc__oauth_op_init_file(&file, hc, req);
    mc__oauth_op *src = to_store ? &file : &other, *dst = to_store ? &other : &file;
    rc = mc__oauth_lock(&file, req, err);
    if (rc)
        return rc;
    rc = mc__oauth_lock(&other, req, err);
    if (rc) {
        mc__oauth_unlock(&file);
        return rc;
    }
    char *data = NULL;
    size_t len = 0;
    rc = src->store->load(src->store_arg, &src->id, &data, &len, err);
    if (rc && err && !*err)
        rc = mc__oauth_fail(err, rc, MC_OUTCOME_CONFIG, NULL, "the token store could not read "
                            "the record of server %s", req->server);
    if (!rc && data) {
        mc__oauth_store s;
        if (mc__oauth_store_parse(data, len, &s))
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_AUTH, NULL,
                                "the stored token record of server %s is not valid",
                                req->server);
        else {
            if (!mc__oauth_store_identity_matches(req, &s))
                rc = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, NULL,
                                    "the stored tokens of server %s are for another identity "
                                    "(provider, client_id, user or token endpoint): not copied",
                                    req->server);
            mc__oauth_store_clear(&s);
        }
        if (!rc) {
            rc = dst->store->save(dst->store_arg, &dst->id, data, len, err);
            if (rc && err && !*err)
                rc = mc__oauth_fail(err, rc, MC_OUTCOME_CONFIG, NULL, "the token store could "
                                    "not save the record of server %s", req->server);
            *copied = rc == 0;
        }
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    mc__oauth_unlock(&other);
    mc__oauth_unlock(&file);
    return rc;
}

static int engine_status(mc_host_ctx *hc, const mc_oauth_request *req, mc_token_status *out)
{
    if (!out || out->version < 1)
        return MC_EINVAL;
    unsigned version = out->version;
    memset(out, 0, sizeof *out);
    out->version = version;
    out->days_left = -1;
    if (!req || !req->profile)
        return MC_EINVAL;
    mc__oauth_op op;
    mc_err *e = NULL;
    mc__oauth_store s;
    bool found = false;
    memset(&s, 0, sizeof s);
    int rc = mc__oauth_op_init(&op, hc, req, &e);
    if (!rc)
        rc = mc__oauth_store_load(&op, req, &s, &found, &e);
    if (rc) {
        /* what is wrong with the store, for `servers` and a settings page */
        out->store_code = rc;
        snprintf(out->store_message, sizeof out->store_message, "%s",
                 e && e->message ? e->message : "token store unreadable");
        H->log(hc, MC_LOG_DEBUG, "oauth: server %s: %s", req->server ? req->server : "?",
               out->store_message);
    }
    if (e) {
        H->free(e->message);
        H->free(e->hint);
        H->free(e->server_text);
        H->free(e);
    }
    if (rc || !found) {
        mc__oauth_store_clear(&s);
        return rc;
    }
    if (!mc__oauth_store_identity_matches(req, &s)) {
        out->identity_mismatch = true;
    } else {
        out->stored = s.access_token || s.refresh_token;
        out->access_expires = s.access_token ? s.expires_at : 0;
        out->refresh_issued = s.refresh_token ? s.refresh_issued_at : 0;
        out->refresh_used = s.refresh_used_at;
    }
    mc__oauth_store_clear(&s);
    return 0;
}

static int engine_begin(mc_host_ctx *hc, const mc_oauth_request *req, char **url_out,
                        mc_err **err)
{
    if (url_out)
        *url_out = NULL;
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!url_out)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL, "no place for the URL");
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    return rc ? rc : mc__oauth_begin(&op, req, url_out, err);
}

static int engine_finish(mc_host_ctx *hc, const mc_oauth_request *req, const char *callback_url,
                         mc_err **err)
{
    int rc = check_request(req, err);
    if (rc)
        return rc;
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    return rc ? rc : mc__oauth_finish(&op, req, callback_url, err);
}

static char *hdup(const char *s)
{
    return s ? H->strdup(s) : NULL;
}

static int engine_device_begin(mc_host_ctx *hc, const mc_oauth_request *req,
                               mc_oauth_device *out, mc_err **err)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!out)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL, "no device record");
    if (req->profile->flows && !(req->profile->flows & MC_FLOW_DEVICE))
        return mc__oauth_fail(err, MC_ENOTSUP, MC_OUTCOME_CONFIG, NULL,
                              "the provider of server %s does not allow the device flow",
                              req->server);
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    mc__oauth_device d;
    memset(&d, 0, sizeof d);
    if (!rc)
        rc = mc__oauth_device_start(&op, req, &d, err);
    if (rc)
        return rc;
    out->user_code = hdup(d.user_code);
    out->verification_uri = hdup(d.verification_uri);
    out->verification_uri_complete = hdup(d.verification_uri_complete);
    out->device_code = hdup(d.device_code);
    out->expires_in = (int)d.expires_in;    /* 1 s .. 1 year */
    out->interval = (int)d.interval;        /* 1 .. 60 s */
    if (!out->user_code || !out->verification_uri || !out->device_code ||
        (d.verification_uri_complete && !out->verification_uri_complete)) {
        H->free(out->user_code);
        H->free(out->verification_uri);
        H->free(out->verification_uri_complete);
        H->free_secret(out->device_code);
        memset(out, 0, sizeof *out);
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    mc__oauth_device_clear(&d);
    return rc;
}

static int engine_device_wait(mc_host_ctx *hc, const mc_oauth_request *req,
                              const mc_oauth_device *dev, int wait_s, mc_err **err)
{
    int rc = check_request(req, err);
    if (rc)
        return rc;
    if (!dev || !dev->device_code || !*dev->device_code)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "no device authorization to wait for");
    mc__oauth_op op;
    rc = mc__oauth_op_init(&op, hc, req, err);
    if (rc)
        return rc;
    H->redact(hc, dev->device_code);
    long long interval = dev->interval < 1 ? 5 : dev->interval > MC__OAUTH_INTERVAL_MAX
                                                     ? MC__OAUTH_INTERVAL_MAX : dev->interval;
    long long bound = wait_s > 0 ? wait_s : 300;
    if (dev->expires_in > 0 && dev->expires_in < bound)
        bound = dev->expires_in;
    return mc__oauth_device_poll(&op, req, dev->device_code, interval, bound, MC_ETIMEOUT, err);
}

static const mc_oauth_engine_ops engine_ops = {
    .size = sizeof(mc_oauth_engine_ops),
    .token = engine_token,
    .invalidate = engine_invalidate,
    .authorize = engine_authorize,
    .import_refresh = engine_import,
    .revoke = engine_revoke,
    .status = engine_status,
    .begin = engine_begin,
    .finish = engine_finish,
    .device_begin = engine_device_begin,
    .device_wait = engine_device_wait,
    .store_copy = engine_store_copy,
};

static const mc_plugin_desc engine_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_OAUTH_ENGINE,
    .name = "oauth",
    .version = MC_VERSION_STRING,
    .summary = "OAuth 2.0 client: authorization code + PKCE, device code, client credentials, "
               "refresh; token store",
    .ops = &engine_ops,
};

MC_PLUGIN_EXPORT const mc_plugin_desc *mc_plugin_entry(const mc_host_api *host)
{
    if (!host || host->size < sizeof(mc_host_api) || host->abi_major != MC_PLUGIN_ABI_MAJOR)
        return NULL;
    mc__oauth_host = host;
    return &engine_desc;
}
