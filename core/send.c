/* send: server -> transport -> EHLO/STARTTLS -> AUTH -> MAIL/RCPT/DATA.
 * Sessions, the per-server pool, throttling retries and the OAuth glue. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "host.h"
#include "log.h"
#include "message.h"
#include "net.h"
#include "oauth-keys.h"
#include "sasl.h"
#include "secret.h"
#include "send.h"

#define THROTTLE_RETRIES 3
#define TOKEN_COMMAND_TIMEOUT_MS 10000

struct mc_session {
    mc_context             *ctx;
    mc__gen                *gen;          /* srv's config: a reference (lifecycle.h) */
    bool                    owns_gen;     /* mc_session_close drops it (mc_send drops its own) */
    unsigned                epoch;        /* pooled: the pool's epoch when taken out */
    mc_server              *srv;
    const mc_transport_ops *tops;
    mc_connect_opts         copts;
    mc__smtp               *smtp;
    mc__stage_fn           *on_stage;
    void                   *stage_payload;
    bool                    pooled;
    bool                    move_on_throttle; /* mc_send will retry elsewhere: return at once */
    bool                    reused;       /* smtp came from the pool or a previous message */
    char                    last_reply[1024];
};

/* ---------------------------------------------------------------- hints */

/* Known SMTP refusals and what to change (PROVIDERS.md). Matched against
 * the enhanced code; `oauth` limits an entry to token mechanisms. */
static const struct {
    const char *enhanced;
    int         oauth;    /* -1 any, 0 password mechanisms, 1 token mechanisms */
    const char *hint;     /* UI-neutral: names no command of one front end */
    mc_action   action;
} smtp_hints[] = {
    { "5.7.30", -1, "the server no longer accepts basic authentication: use an OAuth provider "
                    "(\"provider\": \"microsoft\") and authorize the server",
      MC_ACTION_FIX_CONFIG },
    { "5.7.139", -1, "SMTP AUTH is disabled for the tenant or the mailbox: enable it "
                     "(Set-CASMailbox -Identity <user> -SmtpClientAuthenticationDisabled $false)",
      MC_ACTION_ENABLE_SMTP_AUTH },
    { "5.7.3", 1, "the token was refused: check that auth.user is the account that authorized, "
                  "that the token is for outlook.office.com (not Graph), and that SMTP AUTH is "
                  "enabled for the mailbox", MC_ACTION_CHECK_CREDENTIALS },
    { "5.7.8", 1, "the token was refused: check that auth.user is the account that authorized "
                  "and that the scope includes https://mail.google.com/",
      MC_ACTION_CHECK_CREDENTIALS },
    { "5.7.8", 0, "wrong user name or password (Gmail needs an app password, with 2-step "
                  "verification on)", MC_ACTION_CHECK_CREDENTIALS },
};

static bool is_token_mech(const char *mech)
{
    return mech && (strcmp(mech, "XOAUTH2") == 0 || strcmp(mech, "OAUTHBEARER") == 0);
}

static void add_hint(mc_err *e, const mc_oauth_profile *profile, const char *mech)
{
    if (!e || e->hint)
        return;
    if (profile && profile->hints && e->server_text) {
        for (const mc_hint *h = profile->hints; h->match; h++) {
            if (strstr(e->server_text, h->match) || strstr(e->enhanced, h->match)) {
                mc__error_hint(e, h->hint);
                return;
            }
        }
    }
    for (size_t i = 0; i < sizeof(smtp_hints) / sizeof(smtp_hints[0]); i++) {
        if (strcmp(e->enhanced, smtp_hints[i].enhanced) != 0)
            continue;
        if (smtp_hints[i].oauth >= 0 && smtp_hints[i].oauth != (int)is_token_mech(mech))
            continue;
        mc__error_hint(e, smtp_hints[i].hint);
        e->action = smtp_hints[i].action;
        return;
    }
}

/* A refusal of the message itself (MAIL, RCPT, DATA): the provider's hints
 * too, e.g. Microsoft's SendAsDenied (PROVIDERS.md). */
static void provider_hint(mc_session *s, mc_err *e)
{
    const mc__plugin *prov;
    if (!e || e->hint || !e->smtp_code || !s->srv->auth_provider
        || (e->stage != MC_STAGE_MAIL && e->stage != MC_STAGE_RCPT && e->stage != MC_STAGE_DATA)
        || mc__registry_get(s->ctx->reg, MC_PLUGIN_AUTH, s->srv->auth_provider, &prov, NULL) < 0)
        return;
    const mc_auth_ops *ops = prov->desc->ops;
    mc_oauth_profile prof;
    void *own = NULL;
    if (!ops->oauth || !ops->oauth_profile || !e->server_text
        || mc__oauth_profile(&s->ctx->hc, ops, &s->srv->auth_cfg, &prof, &own, NULL) < 0)
        return;
    for (const mc_hint *h = prof.hints; h && h->match; h++) {
        if (strstr(e->server_text, h->match) || strstr(e->enhanced, h->match)) {
            mc__error_hint(e, h->hint);
            break;
        }
    }
    mc__oauth_profile_release(own);
}

/* ---------------------------------------------------------------- OAuth */

int mc__oauth_request(mc_context *ctx, const mc_server *srv, mc__oauth_req *out, mc_err **err)
{
    return mc__oauth_request_ex(ctx, srv, true, out, err);
}

int mc__oauth_request_ex(mc_context *ctx, const mc_server *srv, bool resolve_secret,
                         mc__oauth_req *out, mc_err **err)
{
    const mc__plugin *prov, *eng;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = mc__registry_get(ctx->reg, MC_PLUGIN_AUTH, srv->auth_provider, &prov, err)) < 0)
        return rc;
    const mc_auth_ops *ops = prov->desc->ops;
    if (!ops->oauth || !ops->oauth_profile)
        return mc__error_set(err, MC_EUSAGE, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "server \"%s\" uses provider \"%s\", which does not use OAuth",
                             srv->name, srv->auth_provider);
    if ((rc = mc__registry_get(ctx->reg, MC_PLUGIN_OAUTH_ENGINE, "oauth", &eng, err)) < 0)
        return rc;
    out->engine = eng->desc->ops;
    /* the provider's defaults, the config's common keys over them, copied */
    if ((rc = mc__error_fill_stage(err, mc__oauth_profile(&ctx->hc, ops, &srv->auth_cfg, &out->profile,
                                                          &out->profile_own, err),
                                   MC_STAGE_CONFIG)) < 0)
        return rc;
    if (resolve_secret
        && (rc = mc__secret_resolve(&ctx->hc, &srv->auth_cfg, "client_secret", &out->secret,
                                    err)) < 0)
        return rc;

    const mc_plugin_cfg *c = &srv->auth_cfg;
    mc_oauth_request *r = &out->req;
    r->size = sizeof(*r);
    r->server = srv->name;
    r->provider = srv->auth_provider;
    r->client_id = mc__host()->cfg_string(c, "client_id");
    r->client_secret = out->secret;
    r->client_auth = mc__host()->cfg_string(c, "client_auth");
    if (!r->client_auth)
        r->client_auth = out->secret ? "post" : "none";
    r->user = srv->auth_user;
    r->grant = mc__host()->cfg_string(c, "grant");
    if (!r->grant)
        r->grant = "authorization_code";
    r->redirect_uri = mc__host()->cfg_string(c, "redirect_uri");
    r->ca_file = mc__host()->cfg_string(c, "ca_file");
    r->state_dir = ctx->hc.state_dir;
    r->timeout_s = (int)mc__host()->cfg_int(c, "timeout_s", 30);
    r->refresh_margin_s = srv->refresh_margin_s;
    r->profile = &out->profile;
    r->proxy = srv->auth_proxy_mode == 1 ? NULL
               : srv->auth_proxy_mode == 2 ? srv->auth_proxy_own : srv->proxy;
    return 0;
}

void mc__oauth_request_free(mc__oauth_req *r)
{
    if (!r)
        return;
    mc__secret_free(r->secret);
    r->secret = NULL;
    mc__oauth_profile_release(r->profile_own);
    r->profile_own = NULL;
}

/* ---------------------------------------------------------------- AUTH */

static int auth_basic(mc_session *s, const mc_auth_ops *ops, const char *mech, mc_err **err)
{
    mc_credentials cr = { NULL, NULL };
    int rc = mc__error_fill_stage(err, ops->credentials(&s->ctx->hc, &s->srv->auth_cfg, &cr, err),
                                  MC_STAGE_AUTH);
    if (rc == 0) {
        mc__redact_add(&s->ctx->hc, cr.password);
        mc__sasl_creds c = { .user = cr.user, .password = cr.password };
        rc = mc__smtp_auth(s->smtp, mech, &c, s->srv->allow_plaintext_auth, err);
        if (rc < 0 && err)
            add_hint(*err, NULL, mech);
    }
    free(cr.user);
    mc__secret_free(cr.password);
    return rc;
}

size_t mc__refresh_warning(char *buf, size_t size, const mc_oauth_profile *p,
                           long long issued, long long now)
{
    if (!issued || now < issued || size == 0)
        return 0;
    long long days = (now - issued) / 86400;
    int n = 0;
    if (p->refresh_lifetime_days && days + 14 >= (long long)p->refresh_lifetime_days)
        n = snprintf(buf, size, "refresh-token-near-%u-day-limit", p->refresh_lifetime_days);
    else if (p->refresh_testing_days && days + 1 == (long long)p->refresh_testing_days)
        n = snprintf(buf, size, "refresh-token-near-%u-day-testing-limit",
                     p->refresh_testing_days);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* A refresh token near its provider's cliff (mc__refresh_warning, the rule
 * of `mailconn servers`) is warned about in the top-level log, where cron
 * users see it: they never run `servers`. */
static void warn_refresh_age(const mc_session *s, const mc__oauth_req *r)
{
    const mc__config *cfg = s->gen->cfg;
    mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
    char what[64];
    if ((!r->profile.refresh_lifetime_days && !r->profile.refresh_testing_days) || !cfg
        || (!cfg->log_file && cfg->syslog_facility < 0) || !r->engine->status
        || r->engine->status(&s->ctx->hc, &r->req, &st) < 0 || !st.refresh_issued)
        return;
    long long now = (long long)time(NULL);
    if (!mc__refresh_warning(what, sizeof(what), &r->profile, st.refresh_issued, now))
        return;
    long long days = (now - st.refresh_issued) / 86400;
    char line[512];
    snprintf(line, sizeof(line), "server=%s warning=%s "
             "refresh-age=%lldd hint=\"authorize server %s again before it expires\" "
             "action=reauthorize",
             s->srv->name, what, days, s->srv->name);
    mc__toplog top = { cfg->log_file, cfg->syslog_facility };
    mc__toplog_write(&s->ctx->hc, &top, LOG_WARNING, line);
}

static int auth_oauth(mc_session *s, const char *mech, mc_err **err)
{
    const mc_server *srv = s->srv;
    const char *cmd = mc__host()->cfg_string(&srv->auth_cfg, "access_token_command");
    mc__sasl_creds c = { .user = srv->auth_user };
    char *token = NULL;
    int rc;

    if (cmd) {
        /* tokens managed elsewhere: used as given, never refreshed */
        if ((rc = mc__secret_command(cmd, TOKEN_COMMAND_TIMEOUT_MS, &token, err)) < 0) {
            if (err && *err) {
                (*err)->code = MC_EAUTH;
                (*err)->outcome = MC_OUTCOME_AUTH;
                (*err)->stage = MC_STAGE_OAUTH;
            }
            return MC_EAUTH;
        }
        mc__redact_add(&s->ctx->hc, token);
        c.token = token;
        rc = mc__smtp_auth(s->smtp, mech, &c, srv->allow_plaintext_auth, err);
        if (rc < 0 && err)
            add_hint(*err, NULL, mech);
        mc__secret_free(token);
        return rc;
    }

    mc__oauth_req r;
    if ((rc = mc__oauth_request(s->ctx, srv, &r, err)) < 0)
        goto out;
    for (int attempt = 0; attempt < 2; attempt++) {
        mc_err *e = NULL;
        if ((rc = mc__error_fill_stage(err, r.engine->token(&s->ctx->hc, &r.req, &token, err),
                                       MC_STAGE_OAUTH)) < 0)
            goto out;
        mc__redact_add(&s->ctx->hc, token);
        c.token = token;
        rc = mc__smtp_auth(s->smtp, mech, &c, srv->allow_plaintext_auth, &e);
        if (rc == 0) {
            warn_refresh_age(s, &r);
            break;
        }
        add_hint(e, &r.profile, mech);
        /* a refused token: forget it, refresh once, retry once (no loop) */
        bool retry = attempt == 0 && rc == MC_EAUTH && e && e->smtp_code >= 500
                     && mc__smtp_alive(s->smtp) && !cmd;
        if (retry) {
            mc__log(&s->ctx->hc, MC_LOG_INFO, "%s: token refused (%d %s); refreshing once",
                    srv->name, e->smtp_code, e->enhanced);
            r.engine->invalidate(&s->ctx->hc, &r.req, token, NULL);
            mc__secret_free(token);
            token = NULL;
            mc_error_free(e);
            continue;
        }
        if (err && !*err)
            *err = e;
        else
            mc_error_free(e);
        break;
    }
out:
    mc__secret_free(token);
    mc__oauth_request_free(&r);
    return rc;
}

static int authenticate(mc_session *s, mc_err **err)
{
    const mc__plugin *prov;
    int rc;
    if ((rc = mc__registry_get(s->ctx->reg, MC_PLUGIN_AUTH, s->srv->auth_provider, &prov, err)) < 0)
        return rc;
    const mc_auth_ops *ops = prov->desc->ops;
    const mc__smtp_caps *caps = mc__smtp_get_caps(s->smtp);
    const char *mech = caps->auth ? mc__sasl_choose(ops->mechanisms, caps->auth_mechs,
                                                    s->srv->auth_mechanism) : NULL;
    if (!mech) {
        mc__buf mine = MC__BUF_INIT;
        for (const char *const *m = ops->mechanisms; m && *m; m++)
            mc__buf_printf(&mine, "%s%s", mine.len ? " " : "", *m);
        rc = mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_AUTH,
                           "%s: no SASL mechanism in common: the server offers \"%s\", "
                           "provider %s uses %s", s->srv->name,
                           caps->auth ? caps->auth_mechs : "no AUTH",
                           s->srv->auth_provider,
                           s->srv->auth_mechanism ? s->srv->auth_mechanism : mine.data);
        mc__buf_free(&mine);
        return rc;
    }
    mc__log(&s->ctx->hc, MC_LOG_DEBUG, "%s: AUTH %s as %s", s->srv->name, mech,
            s->srv->auth_user ? s->srv->auth_user : "?");
    return ops->oauth ? auth_oauth(s, mech, err) : auth_basic(s, ops, mech, err);
}

/* ---------------------------------------------------------------- connections */

static void stage(mc_session *s, mc_stage st, int code, const char *text)
{
    if (s->on_stage)
        s->on_stage(s->stage_payload, st, code, text);
}

/* The transcript line for a TLS stream; with report, the `tls` stage too
 * (implicit TLS: the engine reports it itself after a STARTTLS upgrade). */
static void tls_facts(mc_session *s, const mc_stream *st, bool report)
{
    char line[160];
    if (!st || !st->encrypted)
        return;
    snprintf(line, sizeof(line), "%s %s, certificate %s", st->tls_version, st->tls_cipher,
             st->peer_verified ? "verified" : "NOT verified");
    mc__log(&s->ctx->hc, MC_LOG_TRANSCRIPT, "TLS: %s", line);
    if (report)
        stage(s, MC_STAGE_TLS, 0, line);
}

static int connect_session(mc_session *s, mc_err **err)
{
    mc_stream *stream = NULL;
    int rc = mc__error_fill_stage(err, s->tops->connect(&s->ctx->hc, &stream, &s->copts, err),
                                  MC_STAGE_CONNECT);
    if (rc < 0)
        return rc;
    char where[300];
    snprintf(where, sizeof(where), "%s port %u (%s)", s->srv->host, (unsigned)s->srv->port,
             s->srv->transport);
    mc__log(&s->ctx->hc, MC_LOG_TRANSCRIPT, "connected to %s", where);
    stage(s, MC_STAGE_CONNECT, 0, where);
    tls_facts(s, stream, true);

    mc__smtp_opts o = {
        .stream = stream,
        .transport = s->tops,
        .connect = &s->copts,
        .helo = s->srv->helo,
        .require_starttls = s->tops->starttls != NULL,
        .max_recipients = s->srv->max_recipients,
        .on_stage = s->on_stage,
        .stage_payload = s->stage_payload,
        .hc = &s->ctx->hc,
    };
    if ((rc = mc__smtp_open(&s->smtp, &o, err)) < 0)
        return rc;
    if (o.require_starttls)
        tls_facts(s, mc__smtp_stream(s->smtp), false);
    if (s->srv->has_auth && (rc = authenticate(s, err)) < 0) {
        mc__smtp_quit(s->smtp);
        s->smtp = NULL;
        return rc;
    }
    s->reused = false;
    return 0;
}

static int session_new(mc_session **out, mc_context *ctx, mc__gen *gen, mc_server *srv,
                       mc_err **err)
{
    const mc__plugin *tp;
    int rc = mc__registry_get(ctx->reg, MC_PLUGIN_TRANSPORT, srv->transport, &tp, err);
    if (rc < 0)
        return rc;
    mc_session *s = calloc(1, sizeof(*s));
    if (!s)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE, "out of memory");
    s->ctx = ctx;
    s->gen = gen;
    s->srv = srv;
    s->tops = tp->desc->ops;
    s->copts = (mc_connect_opts){
        .size = sizeof(mc_connect_opts),
        .host = srv->host,
        .port = srv->port,
        .timeout_ms = srv->timeout_s * 1000,
        .ca_file = srv->ca_file,
        .tls_min = srv->tls_min,
        .options = srv->transport_cfg.obj ? &srv->transport_cfg : NULL,
        .proxy = srv->proxy,
    };
    *out = s;
    return 0;
}

static mc_server *find_server(mc__gen *gen, const char *name, mc_err **err)
{
    mc_server *srv = gen ? mc__config_server(gen->cfg, name) : NULL;
    if (!srv) {
        if (name)
            mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                          "no server named \"%s\"", name);
        else
            mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                          "no default server: name a server, or mark one \"default\": true");
    }
    return srv;
}

int mc__session_open_ex(mc_session **out, mc_context *ctx, const char *server,
                        mc__stage_fn *on_stage, void *stage_payload, mc_err **err)
{
    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "out is NULL");
    *out = NULL;
    mc__gen *gen = ctx ? mc__gen_take(ctx) : NULL;   /* dropped by mc_session_close */
    mc_server *srv = find_server(gen, server, err);
    if (!srv) {
        mc__gen_drop(ctx, gen);
        return MC_ENOSERVER;
    }
    mc_session *s = NULL;
    int rc = session_new(&s, ctx, gen, srv, err);
    if (rc < 0) {
        mc__gen_drop(ctx, gen);
        return rc;
    }
    s->owns_gen = true;
    s->on_stage = on_stage;
    s->stage_payload = stage_payload;
    if ((rc = connect_session(s, err)) < 0) {
        mc_session_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* mc_server_test's stage lines: a reply as "<code> <text>", the connect and
 * TLS facts as they are. */
typedef struct test_relay {
    mc_test_fn *fn;
    void       *payload;
} test_relay;

static void relay_stage(void *payload, mc_stage stage, int code, const char *text)
{
    test_relay *r = payload;
    if (!r->fn)
        return;
    char *line = NULL;
    if (code && asprintf(&line, "%d %s", code, text ? text : "") < 0)
        line = NULL;
    r->fn(stage, line ? line : text ? text : "", r->payload);
    free(line);
}

int mc_server_test(mc_context *ctx, const char *server, const char *to, mc_test_fn *fn,
                   void *payload, mc_err **err)
{
    static const char text[] = "This is a test message sent by `mailconn test`.\n";
    test_relay r = { fn, payload };
    mc_session *s = NULL;
    mc_message *msg = NULL;
    if (!ctx)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "no context");
    /* a session of its own: a new connection, never one from the pool */
    int rc = mc__session_open_ex(&s, ctx, server, relay_stage, &r, err);
    if (rc == 0 && to && (rc = mc_message_new(&msg, err)) == 0
        && (rc = mc_message_add_recipient(msg, MC_RCPT_TO, to, err)) == 0
        && (rc = mc_message_set_subject(msg, "mailconn test message", err)) == 0
        && (rc = mc_message_set_text(msg, text, sizeof(text) - 1, err)) == 0)
        rc = mc_session_send(s, msg, err);
    mc_message_free(msg);
    mc_session_close(s);
    return rc;
}

int mc_session_open(mc_session **out, mc_context *ctx, const char *server, mc_err **err)
{
    return mc__session_open_ex(out, ctx, server, NULL, NULL, err);
}

const mc_stream *mc__session_stream(const mc_session *s)
{
    return s && s->smtp ? mc__smtp_stream(s->smtp) : NULL;
}

const char *mc_session_last_reply(const mc_session *s)
{
    return s ? s->last_reply : NULL;
}

void mc_session_close(mc_session *s)
{
    if (!s)
        return;
    mc__smtp_quit(s->smtp);
    if (s->owns_gen)
        mc__gen_drop(s->ctx, s->gen);
    free(s);
}

/* ---------------------------------------------------------------- sending */

static const char *alias_lookup(void *payload, const char *name)
{
    /* the config's aliases; without any, /etc/aliases' address entries */
    const mc__config *cfg = payload;
    return cfg && cfg->n_aliases ? mc__config_alias(cfg, name) : mc__system_alias(name);
}

/* One line per message outcome: to the server's log_file (as it always
 * was) and to the config's top-level log (log_file, syslog); a failure or
 * a partial delivery is marked, so the application's report of the same
 * error (mc__toplog_failure) is not logged twice. */
static void log_outcome(const mc_session *s, mc_message *msg, const char *outcome,
                        const char *reply, const mc_err *e)
{
    const mc_server *srv = s->srv;
    const mc__config *cfg = s->gen->cfg;
    mc__toplog top = { cfg ? cfg->log_file : NULL, cfg ? cfg->syslog_facility : -1 };
    if (!srv->log_file && !top.log_file && top.facility < 0)
        return;
    mc__buf line = MC__BUF_INIT;
    mc__buf_printf(&line, "server=%s from=<%s> to=", srv->name,
                   mc__message_envelope_from(msg) ? mc__message_envelope_from(msg) : "");
    const char *const *r = mc__message_rcpts(msg);
    for (size_t i = 0; i < mc__message_rcpt_count(msg); i++)
        mc__buf_printf(&line, "%s<%s>", i ? "," : "", r[i]);
    char *shown = mc_text_escape(reply ? reply : "");   /* a server's words: escaped */
    mc__buf_printf(&line, " outcome=%s reply=\"%s\" message-id=<%s>", outcome,
                   shown ? shown : "", mc_message_id(msg) ? mc_message_id(msg) : "");
    free(shown);
    if (line.data && (top.log_file || top.facility >= 0)) {
        mc__toplog_write(&s->ctx->hc, &top, strcmp(outcome, "sent") == 0      ? LOG_INFO
                               : strcmp(outcome, "partial") == 0 ? LOG_WARNING
                                                                 : LOG_ERR,
                         line.data);
        mc__toplog_mark(e);
    }
    if (!srv->log_file) {
        mc__buf_free(&line);
        return;
    }
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    char *safe = line.data ? mc__redact_dup(&s->ctx->hc, line.data) : NULL;
    mc__buf out = MC__BUF_INIT;
    if (safe)
        mc__buf_printf(&out, "%s %s\n", when, safe);
    int fd = open(srv->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || !out.data || write(fd, out.data, out.len) < 0)
        mc__log(&s->ctx->hc, MC_LOG_WARN, "%s: cannot append to log_file %s: %s", srv->name,
                srv->log_file, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(safe);
    mc__buf_free(&out);
    mc__buf_free(&line);
}

static bool is_throttle(const mc_err *e)
{
    return e && e->code == MC_ETEMP
           && (e->smtp_code == 421 || (e->smtp_code == 432 && strcmp(e->enhanced, "4.3.2") == 0));
}

/* Nothing of the message was accepted and the connection is gone: safe to
 * reopen and send again. */
static bool is_early_drop(const mc_err *e)
{
    return e && (e->code == MC_ENET || e->code == MC_ETIMEOUT || e->code == MC_EPROTO)
           && (e->stage == MC_STAGE_MAIL || e->stage == MC_STAGE_RCPT);
}

/* Pause before a throttled message is tried again: 0.25, 1, 4 s. */
static void throttle_pause(int attempt)
{
    long ms = 250L << (2 * attempt);
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int send_one(mc_session *s, mc_message *msg, mc_err **err)
{
    mc_server *srv = s->srv;
    mc__msg_defaults d = {
        .sender_address = srv->sender_address,
        .sender_name = srv->sender_name,
        .sender_override = srv->sender_override,
        .case_sensitive = srv->address_case == MC__CASE_SENSITIVE,
        .alias = alias_lookup,
        .alias_payload = s->gen->cfg,
        .charset = srv->charset,
    };
    int rc = mc__message_prepare(msg, &d, err);
    if (rc < 0)
        return rc;
    mc__envelope env = {
        .from = mc__message_envelope_from(msg),
        .rcpts = mc__message_rcpts(msg),
        .n_rcpts = mc__message_rcpt_count(msg),
        .size = mc__message_size(msg),
        .smtputf8 = mc__message_smtputf8(msg),
    };
    mc__message_dsn(msg, &env.dsn_notify, &env.dsn_ret, &env.dsn_envid);

    bool reopened = false;
    for (int attempt = 0;; attempt++) {
        mc_err *e = NULL;
        mc_rcpt_result *rcpts = NULL;
        if (s->smtp && !mc__smtp_alive(s->smtp)) {
            mc__smtp_free(s->smtp);
            s->smtp = NULL;
        }
        if (!s->smtp && (rc = connect_session(s, &e)) < 0)
            goto failed;
        /* BODY=8BITMIME: to a server that offers it, declared for any body
         * that may be 8-bit (a large file is not scanned: RFC 6152 allows
         * it for a 7-bit body); otherwise the body is scanned, and an 8-bit
         * one is refused before MAIL */
        const mc__smtp_caps *caps = mc__smtp_get_caps(s->smtp);
        env.eightbit = caps && caps->eightbitmime ? mc__message_8bit_maybe(msg)
                                                  : mc__message_8bit(msg);
        rc = mc__smtp_send(s->smtp, &env, mc__message_write, msg, &rcpts, &e);
        if (rc == 0 || rc == MC_ERCPT) {
            snprintf(s->last_reply, sizeof(s->last_reply), "%s", mc__smtp_last_reply(s->smtp));
            mc__message_set_reply(msg, s->last_reply);
            if (rc == MC_ERCPT && e) {
                mc__error_rcpts(e, rcpts, env.n_rcpts);
                rcpts = NULL;
            }
            mc__rcpts_free(rcpts, env.n_rcpts);
            s->reused = true;
            log_outcome(s, msg, rc == 0 ? "sent" : "partial", s->last_reply, e);
            if (err && !*err)
                *err = e;
            else
                mc_error_free(e);
            return rc;
        }
        if (e && !e->rcpts) {
            mc__error_rcpts(e, rcpts, env.n_rcpts);
            rcpts = NULL;
        }
        mc__rcpts_free(rcpts, env.n_rcpts);
        if (s->reused && !reopened && is_early_drop(e)) {
            /* a pooled connection that died while idle: reopen once */
            mc__log(&s->ctx->hc, MC_LOG_INFO,
                    "%s: connection lost before the message was sent; reopening", srv->name);
            reopened = true;
            mc__smtp_free(s->smtp);
            s->smtp = NULL;
            mc_error_free(e);
            continue;
        }
        if (is_throttle(e) && s->move_on_throttle) {
            /* mc_send backs off and moves the message to another connection */
            rc = e->code;
            if (err && !*err)
                *err = e;
            else
                mc_error_free(e);
            return rc;
        }
        if (is_throttle(e) && !s->pooled && attempt < THROTTLE_RETRIES) {
            /* a session of its own: back off and retry on this connection
             * (a new one after 421) */
            mc__log(&s->ctx->hc, MC_LOG_INFO, "%s: throttled (%d %s); retry %d of %d", srv->name,
                    e->smtp_code, e->enhanced, attempt + 1, THROTTLE_RETRIES);
            if (e->smtp_code == 421) {
                mc__smtp_free(s->smtp);
                s->smtp = NULL;
            }
            mc_error_free(e);
            throttle_pause(attempt);
            continue;
        }
failed:
        provider_hint(s, e);
        log_outcome(s, msg, e && e->code == MC_EUNKNOWN ? "unknown" : "failed",
                    e && e->server_text ? e->server_text : (e ? e->message : ""), e);
        if (s->smtp && !mc__smtp_alive(s->smtp)) {
            mc__smtp_free(s->smtp);
            s->smtp = NULL;
        }
        rc = e ? e->code : rc;
        if (err && !*err)
            *err = e;
        else
            mc_error_free(e);
        return rc;
    }
}

int mc_session_send(mc_session *s, mc_message *msg, mc_err **err)
{
    if (!s || !msg)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "session or message is NULL");
    return send_one(s, msg, err);
}

/* ---------------------------------------------------------------- pool */

static int pool_acquire(mc_context *ctx, mc__gen *gen, mc_server *srv, mc_session **out,
                        mc_err **err)
{
    mc__pool *p = gen->pools[srv->index];
    unsigned epoch;
    mc__smtp *stale[16];
    size_t n_stale = 0;
    mc__smtp *smtp = NULL;
    int rc = 0;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += srv->timeout_s;

    pthread_mutex_lock(&ctx->lock);
    for (;;) {
        long long now = mc__mono_ms();
        /* drop idle connections past idle_timeout_s, oldest first (the
         * reaper does it on time; this is for a reaper that could not start) */
        while (p->n_idle && n_stale < 16
               && now - p->idle[0].idle_since >= (long long)srv->idle_timeout_s * 1000) {
            stale[n_stale++] = p->idle[0].smtp;
            memmove(p->idle, p->idle + 1, --p->n_idle * sizeof(*p->idle));
            p->open--;
        }
        if (p->n_idle && !p->retired) {
            smtp = p->idle[--p->n_idle].smtp;   /* the most recently used */
            break;
        }
        if (p->open < srv->max_connections) {
            p->open++;
            break;
        }
        if (pthread_cond_timedwait(&ctx->freed, &ctx->lock, &deadline) != 0) {
            rc = mc__error_set(err, MC_ETEMP, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                               "%s: all %d connections stayed busy for %d s", srv->name,
                               srv->max_connections, srv->timeout_s);
            break;
        }
    }
    epoch = p->epoch;
    pthread_mutex_unlock(&ctx->lock);
    for (size_t i = 0; i < n_stale; i++)
        mc__smtp_quit(stale[i]);
    if (rc < 0)
        return rc;

    mc_session *s = NULL;
    if ((rc = session_new(&s, ctx, gen, srv, err)) < 0) {
        pthread_mutex_lock(&ctx->lock);
        p->open--;
        pthread_cond_signal(&ctx->freed);
        pthread_mutex_unlock(&ctx->lock);
        mc__smtp_quit(smtp);
        return rc;
    }
    s->smtp = smtp;
    s->reused = smtp != NULL;
    s->pooled = true;
    s->epoch = epoch;
    *out = s;
    return 0;
}

static void pool_release(mc_context *ctx, mc_session *s)
{
    mc__pool *p = s->gen->pools[s->srv->index];
    mc__smtp *drop = NULL, *quit = NULL;
    pthread_mutex_lock(&ctx->lock);
    if (s->smtp && mc__smtp_alive(s->smtp) && (p->retired || s->epoch != p->epoch)) {
        /* its server changed in a reload, or a disconnect ran while it was out */
        quit = s->smtp;
        p->open--;
    } else if (s->smtp && mc__smtp_alive(s->smtp)) {
        if (p->n_idle == p->cap_idle) {
            size_t cap = p->cap_idle ? p->cap_idle * 2 : 4;
            mc__pooled *n = realloc(p->idle, cap * sizeof(*n));
            if (n) {
                p->idle = n;
                p->cap_idle = cap;
            }
        }
        if (p->n_idle < p->cap_idle) {
            long long now = mc__mono_ms();
            p->idle[p->n_idle++] = (mc__pooled){ s->smtp, now };
            mc__life_idle_locked(ctx, p, now);   /* the reaper QUITs it on time */
        } else {
            drop = s->smtp;
            p->open--;
        }
    } else {
        drop = s->smtp;
        p->open--;
    }
    pthread_cond_signal(&ctx->freed);
    pthread_mutex_unlock(&ctx->lock);
    mc__smtp_free(drop);
    mc__smtp_quit(quit);
    free(s);
}


int mc_send(mc_context *ctx, const char *server, mc_message *msg, mc_err **err)
{
    if (!ctx || !msg)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "context or message is NULL");
    mc__gen *gen = mc__gen_take(ctx);   /* this call's config, even across a reload */
    mc_server *srv = find_server(gen, server, err);
    if (!srv) {
        mc__gen_drop(ctx, gen);
        return MC_ENOSERVER;
    }
    for (int attempt = 0;; attempt++) {
        mc_session *s = NULL;
        mc_err *e = NULL;
        int rc = pool_acquire(ctx, gen, srv, &s, err);
        if (rc < 0) {
            mc__gen_drop(ctx, gen);
            return rc;
        }
        s->move_on_throttle = attempt < THROTTLE_RETRIES;
        rc = send_one(s, msg, &e);
        if (is_throttle(e) && attempt < THROTTLE_RETRIES) {
            /* This connection is throttled (421, 432 4.3.2): close it, back
             * off, and try the message again on another connection, idle
             * in the pool or new. Nothing of it was accepted. */
            mc__log(&s->ctx->hc, MC_LOG_INFO, "%s: throttled (%d %s); moving the message to "
                    "another connection (retry %d of %d)", srv->name, e->smtp_code, e->enhanced,
                    attempt + 1, THROTTLE_RETRIES);
            mc__smtp_quit(s->smtp);
            s->smtp = NULL;
            pool_release(ctx, s);
            mc_error_free(e);
            throttle_pause(attempt);
            continue;
        }
        pool_release(ctx, s);
        if (err && !*err)
            *err = e;
        else
            mc_error_free(e);
        mc__gen_drop(ctx, gen);
        return rc;
    }
}
