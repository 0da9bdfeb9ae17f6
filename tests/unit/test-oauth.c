/* test-oauth: the OAuth engine's pure parts and its token store, with the
 * engine's sources compiled in and a small host table of the test's own
 * (the engine never links the core). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "oauth.h"

/* ------------------------------------------------------------ host table */

/* the six placeholder characters mkstemp and mkdtemp replace */
#define TEMPLATE_TAIL "\x58\x58\x58\x58\x58\x58"

static char log_text[16384];
static char *redacted[64];
static size_t n_redacted;

static void t_log(mc_host_ctx *hc, mc_log_level level, const char *fmt, ...)
{
    (void)hc;
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    size_t used = strlen(log_text);
    if (used < sizeof log_text - 2) {
        vsnprintf(log_text + used, sizeof log_text - used - 1, fmt, ap);
        strcat(log_text, "\n");
    }
    va_end(ap);
}

static void t_redact(mc_host_ctx *hc, const char *s)
{
    (void)hc;
    if (n_redacted < 64)
        redacted[n_redacted++] = strdup(s);
}

static void *t_alloc(size_t n) { return calloc(1, n ? n : 1); }
static char *t_strdup(const char *s) { return s ? strdup(s) : NULL; }
static void t_free(void *p) { free(p); }
static void t_free_secret(char *s) { mc__oauth_wipe_free(s); }

static int t_error(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                   const char *fmt, ...)
{
    if (!err || *err)
        return code;
    mc_err *e = calloc(1, sizeof *e);
    if (!e)
        return code;
    e->code = code;
    e->outcome = outcome;
    e->stage = stage;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&e->message, fmt, ap) < 0)
        e->message = NULL;
    va_end(ap);
    *err = e;
    return code;
}

static void err_free(mc_err *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->hint);
    free(e->server_text);
    free(e);
}

static int t_file_replace(const char *path, const char *data, size_t len, int mode,
                          mc_err **err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%s", path, TEMPLATE_TAIL);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return t_error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "mkstemp");
    fchmod(fd, (mode_t)mode);
    ssize_t n = write(fd, data, len);
    fsync(fd);
    close(fd);
    if (n != (ssize_t)len || rename(tmp, path) != 0) {
        unlink(tmp);
        return t_error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "write");
    }
    return 0;
}

static int t_run_command(const char *c, int t, char **out, mc_err **err)
{
    (void)c;
    (void)t;
    *out = NULL;
    return t_error(err, MC_ESECRET, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "no commands here");
}

/* the context handle the tests pass: a state folder and, when set, an
 * application's token store (the engine asks the host for both) */
struct mc_host_ctx {
    const char               *state_dir;
    const mc_token_store_ops *store;
    void                     *store_arg;
};

static const char *t_state_dir(mc_host_ctx *hc)
{
    return hc ? hc->state_dir : NULL;
}

static const mc_token_store_ops *t_token_store(mc_host_ctx *hc, void **store_out)
{
    *store_out = hc ? hc->store_arg : NULL;
    return hc ? hc->store : NULL;
}

static const mc_host_api test_host = {
    .size = sizeof(mc_host_api),
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .log = t_log,
    .redact = t_redact,
    .alloc = t_alloc,
    .strdup = t_strdup,
    .free = t_free,
    .free_secret = t_free_secret,
    .error = t_error,
    .file_replace = t_file_replace,
    .run_command = t_run_command,
    .state_dir = t_state_dir,
    .token_store = t_token_store,
};

static const mc_oauth_engine_ops *engine;

/* ------------------------------------------------------------ fixtures */

static const mc_hint ms_hints[] = {
    { "AADSTS700082", "the refresh token expired from inactivity" },
    { "AADSTS7000012", "set auth.tenant to the tenant the app belongs to" },
    { NULL, NULL },
};

static const char *const test_params[] = {
    "access_type=offline", "prompt=consent", "login_hint=a b&c=d", NULL,
};

typedef struct fixture {
    char             dir[256];
    char             state[300];
    mc_oauth_profile profile;
    mc_oauth_request req;
    mc__oauth_op     op;
} fixture;

/* the op the store functions work with, for the request as it is now */
static mc__oauth_op *OP(fixture *f)
{
    assert_int_equal(mc__oauth_op_init(&f->op, NULL, &f->req, NULL), 0);
    return &f->op;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test-oauth-%s", TEMPLATE_TAIL);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof f->state, "%s/state/mailconn", f->dir);
    f->profile.size = sizeof f->profile;
    snprintf(f->profile.authorization_url, MC_URL_MAX, "https://login.example.com/authorize?tenant=x");
    /* a closed loopback port: any network attempt fails fast */
    snprintf(f->profile.token_url, MC_URL_MAX, "http://127.0.0.1:1/token");
    snprintf(f->profile.scope, sizeof f->profile.scope, "https://mail.google.com/ offline_access");
    f->profile.params = test_params;
    f->profile.flows = MC_FLOW_AUTH_CODE | MC_FLOW_PASTE | MC_FLOW_DEVICE;
    f->profile.hints = ms_hints;
    f->req = (mc_oauth_request){
        .size = sizeof(mc_oauth_request),
        .server = "s1",
        .provider = "microsoft",
        .client_id = "client-1",
        .client_secret = NULL,
        .client_auth = "none",
        .user = "me@example.org",
        .grant = "authorization_code",
        .state_dir = f->state,
        .timeout_s = 5,
        .refresh_margin_s = 600,
        .profile = &f->profile,
    };
    log_text[0] = '\0';
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ PKCE */

static void pkce_rfc7636_appendix_b(void **state)
{
    (void)state;
    char challenge[44];
    assert_int_equal(mc__oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                                              challenge), 0);
    assert_string_equal(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

static void pkce_verifier_is_random_base64url(void **state)
{
    (void)state;
    char a[MC__PKCE_VERIFIER_LEN + 1], b[MC__PKCE_VERIFIER_LEN + 1];
    assert_int_equal(mc__oauth_pkce_verifier(a), 0);
    assert_int_equal(mc__oauth_pkce_verifier(b), 0);
    assert_int_equal(strlen(a), 43);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < 43; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               a[i]));
    char st[23];
    assert_int_equal(mc__oauth_random_state(st), 0);
    assert_int_equal(strlen(st), 22);
}

/* ------------------------------------------------------------ token responses */

static void tokens_number_expires_in(void **state)
{
    (void)state;
    const char *body = "{\"token_type\":\"Bearer\",\"access_token\":\"AT-1\",\"expires_in\":3599,"
                       "\"refresh_token\":\"RT-1\",\"scope\":\"https://mail.google.com/\"}";
    mc__oauth_tokens t;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_parse_tokens(body, strlen(body), &t, &err), 0);
    assert_null(err);
    assert_string_equal(t.access_token, "AT-1");
    assert_string_equal(t.refresh_token, "RT-1");
    assert_string_equal(t.scope, "https://mail.google.com/");
    assert_int_equal(t.expires_in, 3599);
    mc__oauth_tokens_clear(&t);
}

static void tokens_string_expires_in_and_case(void **state)
{
    (void)state;
    const char *body = "{\"token_type\":\"bearer\",\"access_token\":\"AT-2\",\"expires_in\":\"3600\"}";
    mc__oauth_tokens t;
    assert_int_equal(mc__oauth_parse_tokens(body, strlen(body), &t, NULL), 0);
    assert_int_equal(t.expires_in, 3600);
    assert_null(t.refresh_token);     /* Google's refresh: none, the old one is kept */
    mc__oauth_tokens_clear(&t);
    const char *none = "{\"access_token\":\"AT-3\"}";
    assert_int_equal(mc__oauth_parse_tokens(none, strlen(none), &t, NULL), 0);
    assert_int_equal(t.expires_in, -1);
    mc__oauth_tokens_clear(&t);
}

static void expect_bad_tokens(const char *body)
{
    mc__oauth_tokens t;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_parse_tokens(body, strlen(body), &t, &err), MC_EOAUTH);
    assert_non_null(err);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_int_equal(err->stage, MC_STAGE_OAUTH);
    assert_null(t.access_token);
    err_free(err);
}

static void tokens_missing_or_wrong_types(void **state)
{
    (void)state;
    expect_bad_tokens("{\"token_type\":\"Bearer\",\"expires_in\":3599}");
    expect_bad_tokens("{\"access_token\":42}");
    expect_bad_tokens("{\"access_token\":\"\"}");
    expect_bad_tokens("{\"access_token\":\"A\",\"expires_in\":\"soon\"}");
    expect_bad_tokens("{\"access_token\":\"A\",\"expires_in\":-5}");
    expect_bad_tokens("{\"access_token\":\"A\",\"expires_in\":true}");
    expect_bad_tokens("{\"access_token\":\"A\",\"refresh_token\":7}");
    expect_bad_tokens("{\"access_token\":\"A\",\"token_type\":[]}");
    expect_bad_tokens("{\"access_token\":\"A\",\"token_type\":\"mac\"}");
    expect_bad_tokens("{\"access_token\":\"A\",\"scope\":{}}");
    expect_bad_tokens("[\"access_token\"]");
    expect_bad_tokens("{\"access_token\":\"A\"} trailing");
    expect_bad_tokens("{'access_token':'A'}");          /* strict mode */
    expect_bad_tokens("<html>Bad gateway</html>");
    expect_bad_tokens("");
}

/* ------------------------------------------------------------ error bodies */

static void error_microsoft_aadsts700082(void **state)
{
    fixture *f = *state;
    const char *body =
        "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS700082: The refresh token "
        "has expired due to inactivity. The token was issued on 2024-01-01.\",\"error_codes\":"
        "[700082],\"timestamp\":\"2024-05-01 10:00:00Z\",\"trace_id\":\"t\",\"correlation_id\":\"c\"}";
    mc_err *err = NULL;
    char *oe = NULL;
    assert_int_equal(mc__oauth_error_from(400, body, strlen(body), &f->req, &oe, &err), MC_EAUTH);
    assert_string_equal(oe, "invalid_grant");
    free(oe);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_int_equal(err->stage, MC_STAGE_OAUTH);
    assert_non_null(strstr(err->message, "AADSTS700082"));
    assert_non_null(err->hint);
    assert_non_null(strstr(err->hint, "expired from inactivity"));
    assert_non_null(strstr(err->hint, "authorize server s1 again"));
    assert_int_equal(err->action, MC_ACTION_REAUTHORIZE);
    err_free(err);
}

static void error_microsoft_code_only_in_error_codes(void **state)
{
    fixture *f = *state;
    /* the hint matches through error_codes even when the text lacks it */
    const char *body = "{\"error\":\"invalid_grant\",\"error_description\":\"wrong tenant\","
                       "\"error_codes\":[7000012]}";
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_error_from(400, body, strlen(body), &f->req, NULL, &err), MC_EAUTH);
    assert_non_null(strstr(err->hint, "auth.tenant"));
    err_free(err);
}

static void error_google_invalid_grant(void **state)
{
    fixture *f = *state;
    f->profile.hints = NULL;
    const char *body = "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                       "expired or revoked.\"}";
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_error_from(400, body, strlen(body), &f->req, NULL, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_non_null(strstr(err->message, "Token has been expired or revoked."));
    assert_string_equal(err->hint, "authorize server s1 again");   /* no CLI command */
    assert_int_equal(err->action, MC_ACTION_REAUTHORIZE);
    err_free(err);
}

static void error_config_and_transient(void **state)
{
    fixture *f = *state;
    mc_err *err = NULL;
    const char *ic = "{\"error\":\"invalid_client\",\"error_description\":\"client authentication failed\"}";
    assert_int_equal(mc__oauth_error_from(401, ic, strlen(ic), &f->req, NULL, &err), MC_ECONFIG);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_false(err->transient);
    err_free(err);
    err = NULL;
    const char *is = "{\"error\":\"invalid_scope\"}";            /* Google, device + Gmail */
    assert_int_equal(mc__oauth_error_from(400, is, strlen(is), &f->req, NULL, &err), MC_ECONFIG);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    err_free(err);
    err = NULL;
    assert_int_equal(mc__oauth_error_from(503, "oops", 4, &f->req, NULL, &err), MC_EOAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_true(err->transient);
    err_free(err);
    err = NULL;
    assert_int_equal(mc__oauth_error_from(400, "<html/>", 7, &f->req, NULL, &err), MC_EOAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    err_free(err);
    err = NULL;
    const char *ad = "{\"error\":\"access_denied\"}";
    assert_int_equal(mc__oauth_error_from(400, ad, strlen(ad), &f->req, NULL, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    err_free(err);
    err = NULL;
    /* device polling: pending is not a failure */
    const char *pend = "{\"error\":\"authorization_pending\"}";
    char *oe = NULL;
    assert_int_equal(mc__oauth_error_from(400, pend, strlen(pend), &f->req, &oe, &err), MC_ETEMP);
    assert_null(err);
    assert_string_equal(oe, "authorization_pending");
    free(oe);
}

/* ------------------------------------------------------------ URLs */

static void authorize_url_params_and_escaping(void **state)
{
    fixture *f = *state;
    char *url = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_authorize_url(&f->req, "http://127.0.0.1:5555/", "st-1",
                                             "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                                             &url, &err), 0);
    assert_null(err);
    /* curl may write %XX in either case: compare without case */
    assert_true(!strncmp(url, "https://login.example.com/authorize?tenant=x&", 45));
    assert_non_null(strcasestr(url, "&response_type=code"));
    assert_non_null(strcasestr(url, "&client_id=client-1"));
    assert_non_null(strcasestr(url, "&redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2F"));
    assert_non_null(strcasestr(url, "&scope=https%3A%2F%2Fmail.google.com%2F%20offline_access"));
    assert_non_null(strcasestr(url, "&state=st-1"));
    assert_non_null(strcasestr(url, "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    assert_non_null(strcasestr(url, "&code_challenge_method=S256"));
    assert_non_null(strcasestr(url, "&access_type=offline"));
    assert_non_null(strcasestr(url, "&prompt=consent"));
    assert_non_null(strcasestr(url, "&login_hint=a%20b%26c%3Dd"));
    free(url);

    /* plain http only to loopback */
    snprintf(f->profile.authorization_url, MC_URL_MAX, "http://login.example.com/authorize");
    assert_int_equal(mc__oauth_authorize_url(&f->req, "http://127.0.0.1/", "s", NULL, &url, &err),
                     MC_ECONFIG);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    err_free(err);
    err = NULL;
    assert_int_equal(mc__oauth_check_url("http://127.0.0.1:8080/token", "t", NULL), 0);
    assert_int_equal(mc__oauth_check_url("http://[::1]:8080/token", "t", NULL), 0);
    assert_int_equal(mc__oauth_check_url("http://localhost/token", "t", NULL), 0);
    assert_int_equal(mc__oauth_check_url("https://oauth2.googleapis.com/token", "t", NULL), 0);
    assert_int_equal(mc__oauth_check_url("http://127.0.0.1.evil.example/t", "t", NULL), MC_ECONFIG);
    assert_int_equal(mc__oauth_check_url("ftp://127.0.0.1/t", "t", NULL), MC_ECONFIG);
    assert_int_equal(mc__oauth_check_url("", "t", NULL), MC_ECONFIG);
}

static void form_encoding(void **state)
{
    (void)state;
    mc__obuf b = MC__OBUF_INIT;
    assert_int_equal(mc__oauth_form_add(&b, "grant_type", "refresh_token"), 0);
    assert_int_equal(mc__oauth_form_add(&b, "refresh_token", "a b&c=d/+%"), 0);
    assert_int_equal(mc__oauth_form_add(&b, "absent", NULL), 0);
    assert_string_equal(b.data, "grant_type=refresh_token&refresh_token=a%20b%26c%3Dd%2F%2B%25");
    mc__obuf_free(&b);
}

static void redirect_parsing(void **state)
{
    (void)state;
    mc__oauth_redirect r;
    assert_int_equal(mc__oauth_parse_redirect("  http://127.0.0.1/?state=xyz&code=ab%2Fc+d&x=1\n", &r), 0);
    assert_string_equal(r.code, "ab/c d");
    assert_string_equal(r.state, "xyz");
    assert_null(r.error);
    mc__oauth_redirect_clear(&r);
    assert_int_equal(mc__oauth_parse_redirect("/?error=access_denied&error_description=no%20way&state=s", &r), 0);
    assert_null(r.code);
    assert_string_equal(r.error, "access_denied");
    assert_string_equal(r.error_description, "no way");
    mc__oauth_redirect_clear(&r);
    assert_int_equal(mc__oauth_parse_redirect("not a url at all", &r), MC_EINVAL);
    assert_int_equal(mc__oauth_parse_redirect("http://127.0.0.1/?code=a%00b&state=s", &r), MC_EINVAL);
}

/* ------------------------------------------------------------ token store */

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void store_tokens(fixture *f, const char *at, long long expires_at, const char *rt)
{
    mc__oauth_store s;
    memset(&s, 0, sizeof s);
    s.access_token = at ? strdup(at) : NULL;
    s.expires_at = expires_at;
    s.refresh_token = rt ? strdup(rt) : NULL;
    s.refresh_issued_at = 1700000000;
    s.refresh_used_at = 1700000500;
    s.scope = strdup("https://mail.google.com/");
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), 0);
    assert_null(err);
    mc__oauth_store_clear(&s);
}

static void store_round_trip_modes(void **state)
{
    fixture *f = *state;
    store_tokens(f, "AT-stored", 1900000000LL, "RT-stored");
    char path[600];
    snprintf(path, sizeof path, "%s/tokens/s1.json", f->state);
    assert_int_equal(mode_of(path), 0600);
    snprintf(path, sizeof path, "%s/tokens", f->state);
    assert_int_equal(mode_of(path), 0700);
    assert_int_equal(mode_of(f->state), 0700);

    mc__oauth_store s;
    bool found = false;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, NULL), 0);
    assert_true(found);
    assert_true(mc__oauth_store_identity_matches(&f->req, &s));
    assert_string_equal(s.provider, "microsoft");
    assert_string_equal(s.client_id, "client-1");
    assert_string_equal(s.user, "me@example.org");
    assert_string_equal(s.token_url, "http://127.0.0.1:1/token");
    assert_string_equal(s.access_token, "AT-stored");
    assert_string_equal(s.refresh_token, "RT-stored");
    assert_true(s.expires_at == 1900000000LL);
    assert_true(s.refresh_issued_at == 1700000000LL);
    assert_true(s.refresh_used_at == 1700000500LL);
    assert_string_equal(s.scope, "https://mail.google.com/");
    mc__oauth_store_clear(&s);

    /* the engine hands out the cached token without any request */
    char *tok = NULL;
    mc_err *err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    assert_string_equal(tok, "AT-stored");
    mc__oauth_wipe_free(tok);

    mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
    assert_int_equal(engine->status(NULL, &f->req, &st), 0);
    assert_true(st.stored);
    assert_false(st.identity_mismatch);
    assert_true(st.access_expires == 1900000000LL);
    assert_true(st.refresh_issued == 1700000000LL);

    /* a corrupt file is an error, not an empty store */
    snprintf(path, sizeof path, "%s/tokens/s1.json", f->state);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"identity\":", fp);
    fclose(fp);
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, &err), MC_EFILE);
    assert_non_null(err);
    err_free(err);
}

static void store_identity_mismatch_refused(void **state)
{
    fixture *f = *state;
    store_tokens(f, "AT-other", 1900000000LL, "RT-other");
    f->req.user = "someone-else@example.org";
    char *tok = NULL;
    mc_err *err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EAUTH);
    assert_null(tok);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_non_null(strstr(err->message, "another identity"));
    assert_null(strstr(err->message, "mailconn auth"));
    assert_string_equal(err->hint, "authorize server s1 again");
    assert_int_equal(err->action, MC_ACTION_REAUTHORIZE);
    err_free(err);
    mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
    assert_int_equal(engine->status(NULL, &f->req, &st), 0);
    assert_false(st.stored);
    assert_true(st.identity_mismatch);
    /* another token endpoint is another identity too */
    f->req.user = "me@example.org";
    snprintf(f->profile.token_url, MC_URL_MAX, "http://127.0.0.1:2/token");
    err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EAUTH);
    err_free(err);
}

static void no_token_stored(void **state)
{
    fixture *f = *state;
    char *tok = NULL;
    mc_err *err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_string_equal(err->message, "no token stored for server s1");
    assert_string_equal(err->hint, "authorize server s1");
    assert_int_equal(err->action, MC_ACTION_AUTHORIZE);
    err_free(err);
}

static void refresh_margin_and_endpoint_down(void **state)
{
    fixture *f = *state;
    /* 100 s left, margin 600: must refresh; the endpoint is a closed port */
    store_tokens(f, "AT-nearly-expired", mc__oauth_now() + 100, "RT-secret-value");
    char *tok = NULL;
    mc_err *err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EOAUTH);
    assert_null(tok);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_true(err->transient);
    assert_int_equal(err->stage, MC_STAGE_OAUTH);
    err_free(err);
    /* with a margin of 60 s, the same token is still good */
    f->req.refresh_margin_s = 60;
    err = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    assert_string_equal(tok, "AT-nearly-expired");
    mc__oauth_wipe_free(tok);
    /* tokens never reach the log */
    assert_null(strstr(log_text, "RT-secret-value"));
    assert_null(strstr(log_text, "AT-nearly-expired"));
}

static void invalidate_only_matching(void **state)
{
    fixture *f = *state;
    store_tokens(f, "AT-current", 1900000000LL, "RT-x");
    mc_err *err = NULL;
    assert_int_equal(engine->invalidate(NULL, &f->req, "AT-older", &err), 0);
    char *tok = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    assert_string_equal(tok, "AT-current");
    mc__oauth_wipe_free(tok);
    assert_int_equal(engine->invalidate(NULL, &f->req, "AT-current", &err), 0);
    mc__oauth_store s;
    bool found = false;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, NULL), 0);
    assert_true(found);
    assert_null(s.access_token);
    assert_string_equal(s.refresh_token, "RT-x");    /* the refresh token stays */
    mc__oauth_store_clear(&s);
}

static void revoke_without_endpoint_deletes(void **state)
{
    fixture *f = *state;
    store_tokens(f, "AT-r", 1900000000LL, "RT-r");
    mc_err *err = NULL;
    assert_int_equal(engine->revoke(NULL, &f->req, &err), 0);
    assert_null(err);
    char path[600];
    snprintf(path, sizeof path, "%s/tokens/s1.json", f->state);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/tokens/s1.lock", f->state);
    assert_int_equal(access(path, F_OK), -1);
}

static void bad_server_name_refused(void **state)
{
    fixture *f = *state;
    f->req.server = "../escape";
    char *tok = NULL;
    mc_err *err = NULL;
    assert_int_not_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    assert_non_null(err);
    err_free(err);
}

/* ------------------------------------------------------------ hostile values (issue 9) */

static long long expires_of(const char *body)
{
    mc__oauth_tokens t;
    mc_err *err = NULL;
    int rc = mc__oauth_parse_tokens(body, strlen(body), &t, &err);
    if (rc) {
        err_free(err);
        return -100;
    }
    assert_null(err);
    long long e = t.expires_in;
    mc__oauth_tokens_clear(&t);
    return e;
}

static void tokens_expires_in_clamped(void **state)
{
    (void)state;
    const long long year = 365LL * 86400;
    assert_int_equal(expires_of("{\"access_token\":\"A\",\"expires_in\":\"3600\"}"), 3600);
    assert_int_equal(expires_of("{\"access_token\":\"A\",\"expires_in\":3600.9}"), 3600);
    assert_int_equal(expires_of("{\"access_token\":\"A\",\"expires_in\":0}"), 1);
    assert_int_equal(expires_of("{\"access_token\":\"A\",\"expires_in\":\"0\"}"), 1);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":9223372036854775807}") == year);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":99999999999999999999999}") == year);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":1e300}") == year);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":\"9223372036854775808\"}") == year);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":\"1e999\"}") == -100);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":\" 3600\"}") == -100);
    assert_true(expires_of("{\"access_token\":\"A\",\"expires_in\":\"\"}") == -100);

    /* a negative value is reported as what it is */
    const char *neg[] = { "{\"access_token\":\"A\",\"expires_in\":-5}",
                          "{\"access_token\":\"A\",\"expires_in\":\"-5\"}",
                          "{\"access_token\":\"A\",\"expires_in\":-9223372036854775808}",
                          "{\"access_token\":\"A\",\"expires_in\":-1e300}" };
    for (size_t i = 0; i < sizeof neg / sizeof *neg; i++) {
        mc__oauth_tokens t;
        mc_err *err = NULL;
        assert_int_equal(mc__oauth_parse_tokens_from("https://t.example/token", neg[i],
                                                     strlen(neg[i]), &t, &err), MC_EOAUTH);
        assert_non_null(strstr(err->message, "negative expires_in"));
        assert_null(strstr(err->message, "not a number"));
        assert_non_null(strstr(err->message, "https://t.example/token"));
        err_free(err);
    }
    mc__oauth_tokens t;
    mc_err *err = NULL;
    const char *soon = "{\"access_token\":\"A\",\"expires_in\":\"soon\"}";
    assert_int_equal(mc__oauth_parse_tokens(soon, strlen(soon), &t, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "not a number (soon)"));
    err_free(err);
}

static void expect_token_refused(const char *body, const char *what)
{
    mc__oauth_tokens t;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_parse_tokens_from("https://idp.example/oauth2/token", body,
                                                 strlen(body), &t, &err), MC_EOAUTH);
    assert_non_null(err);
    assert_int_equal(err->stage, MC_STAGE_OAUTH);
    assert_non_null(strstr(err->message, "https://idp.example/oauth2/token"));
    assert_non_null(strstr(err->message, what));
    assert_null(t.access_token);
    assert_null(t.refresh_token);
    err_free(err);
}

static void tokens_character_sets(void **state)
{
    (void)state;
    /* RFC 6750 b64token */
    const char *bad_at[] = { "A B", "A\\r\\nMAIL FROM:<x>", "A\\tB", "A\\u0001", "A\\u0000hidden",
                             "=", "A=B", "A\\\"", "caf\\u00e9", "A,B", "\\u007f" };
    for (size_t i = 0; i < sizeof bad_at / sizeof *bad_at; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"access_token\":\"%s\",\"refresh_token\":\"R\"}", bad_at[i]);
        expect_token_refused(body, "b64token");
    }
    /* refresh tokens: VSCHAR without SP */
    const char *bad_rt[] = { "R T", "R\\r\\n", "R\\tT", "R\\u0001", "R\\u0000hidden", "\\u00ff" };
    for (size_t i = 0; i < sizeof bad_rt / sizeof *bad_rt; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"access_token\":\"A\",\"refresh_token\":\"%s\"}", bad_rt[i]);
        expect_token_refused(body, "refresh_token with a control character");
    }
    const char *good = "{\"access_token\":\"ya29.a0-_~+/xyz==\",\"refresh_token\":\"1//0g!#$%&'()*+,-./:;<=>?@[]^_`{|}~\"}";
    mc__oauth_tokens t;
    assert_int_equal(mc__oauth_parse_tokens(good, strlen(good), &t, NULL), 0);
    assert_string_equal(t.access_token, "ya29.a0-_~+/xyz==");
    mc__oauth_tokens_clear(&t);
    assert_true(mc__oauth_access_token_ok("abc", 3));
    assert_false(mc__oauth_access_token_ok("ab\0c", 4));
    assert_false(mc__oauth_refresh_token_ok("ab\0c", 4));
    assert_false(mc__oauth_refresh_token_ok("", 0));
}

static int device_of(const char *extra, mc__oauth_device *d, mc_err **err)
{
    char body[1024];
    snprintf(body, sizeof body, "{\"device_code\":\"DC\",\"user_code\":\"ABCD\","
             "\"verification_uri\":\"https://v.example/\"%s}", extra);
    return mc__oauth_device_parse("https://idp.example/devicecode", body, strlen(body), d, err);
}

static long long interval_of(const char *extra)
{
    mc__oauth_device d;
    mc_err *err = NULL;
    if (device_of(extra, &d, &err)) {
        err_free(err);
        return -100;
    }
    long long i = d.interval;
    mc__oauth_device_clear(&d);
    return i;
}

static void device_answer_clamped(void **state)
{
    (void)state;
    assert_int_equal(interval_of(""), 5);
    assert_int_equal(interval_of(",\"interval\":2"), 2);
    assert_int_equal(interval_of(",\"interval\":\"7\""), 7);
    assert_int_equal(interval_of(",\"interval\":0"), 1);
    assert_int_equal(interval_of(",\"interval\":9223372036854775807"), 60);
    assert_int_equal(interval_of(",\"interval\":9.2e15"), 60);
    assert_int_equal(interval_of(",\"interval\":\"9223372036854775807\""), 60);
    assert_int_equal(interval_of(",\"interval\":-1"), -100);
    assert_int_equal(interval_of(",\"interval\":\"fast\""), -100);
    assert_int_equal(interval_of(",\"interval\":[]"), -100);

    mc__oauth_device d;
    mc_err *err = NULL;
    assert_int_equal(device_of(",\"expires_in\":9223372036854775807", &d, &err), 0);
    assert_true(d.expires_in == 365LL * 86400);
    assert_string_equal(d.device_code, "DC");
    mc__oauth_device_clear(&d);
    assert_int_equal(device_of(",\"expires_in\":\"900\",\"verification_uri_complete\":\"https://v/?c\"",
                               &d, &err), 0);
    assert_int_equal(d.expires_in, 900);
    assert_string_equal(d.verification_uri_complete, "https://v/?c");
    mc__oauth_device_clear(&d);

    assert_int_equal(device_of(",\"expires_in\":-5", &d, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "negative expires_in (-5)"));
    assert_non_null(strstr(err->message, "https://idp.example/devicecode"));
    err_free(err);
    err = NULL;
    const char *nul = "{\"device_code\":\"D\\u0000C\",\"user_code\":\"A\",\"verification_uri\":\"https://v/\"}";
    assert_int_equal(mc__oauth_device_parse(NULL, nul, strlen(nul), &d, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "NUL"));
    err_free(err);
    err = NULL;
    const char *none = "{\"user_code\":\"A\",\"verification_url\":\"https://v/\"}";
    assert_int_equal(mc__oauth_device_parse(NULL, none, strlen(none), &d, &err), MC_EOAUTH);
    err_free(err);
    err = NULL;
    const char *google = "{\"device_code\":\"D\",\"user_code\":\"A\",\"verification_url\":\"https://g/\",\"expires_in\":1800,\"interval\":5}";
    assert_int_equal(mc__oauth_device_parse(NULL, google, strlen(google), &d, &err), 0);
    assert_string_equal(d.verification_uri, "https://g/");
    mc__oauth_device_clear(&d);
}

static void refresh_margin_half_lifetime(void **state)
{
    fixture *f = *state;
    /* a 300 s token, 290 s left, margin 600: half its lifetime (150 s) is
     * the margin, so it is used, not refreshed on every send */
    mc__oauth_tokens t = { strdup("AT-short"), strdup("RT-short"), NULL, 300 };
    mc__oauth_store s;
    memset(&s, 0, sizeof s);
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_store_tokens(OP(f), &f->req, &s, &t, false, &err), 0);
    mc__oauth_tokens_clear(&t);
    assert_true(s.expires_at - s.access_issued_at == 300);
    s.access_issued_at -= 10;
    s.expires_at -= 10;
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), 0);
    char *tok = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    assert_null(err);
    assert_string_equal(tok, "AT-short");
    mc__oauth_wipe_free(tok);
    /* 100 s left of 300: under half, refreshed (the endpoint is down) */
    s.access_issued_at -= 190;
    s.expires_at -= 190;
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), 0);
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EOAUTH);
    assert_null(tok);
    err_free(err);
    err = NULL;
    /* expires_at from a hostile file: no overflow, just expired */
    s.access_issued_at = -9223372036854775807LL;
    s.expires_at = 9223372036854775807LL;
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), 0);
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), 0);
    mc__oauth_wipe_free(tok);
    s.expires_at = -9223372036854775807LL - 1;
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), 0);
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EOAUTH);
    err_free(err);
    mc__oauth_store_clear(&s);
    /* the store clamps what a grant says (expires_in arrives clamped) */
    mc__oauth_tokens big = { strdup("AT-big"), NULL, NULL, 9223372036854775807LL };
    memset(&s, 0, sizeof s);
    err = NULL;
    assert_int_equal(mc__oauth_store_tokens(OP(f), &f->req, &s, &big, false, &err), 0);
    assert_true(s.expires_at - s.access_issued_at == 365LL * 86400);
    mc__oauth_tokens_clear(&big);
    mc__oauth_store_clear(&s);
}

static char *path_in(const fixture *f, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s%s%s", f->state, *rel ? "/" : "", rel) > 0);
    return p;
}

static void expect_refused(fixture *f, const char *path, const char *what)
{
    mc__oauth_store s;
    bool found = true;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, &err), MC_EFILE);
    assert_false(found);
    assert_non_null(err);
    if (!strstr(err->message, path) || !strstr(err->message, what))
        fprintf(stderr, "want \"%s\" and \"%s\" in: %s\n", path, what, err->message);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_int_equal(err->stage, MC_STAGE_OAUTH);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, what));
    err_free(err);
    err = NULL;
    memset(&s, 0, sizeof s);
    s.access_token = strdup("AT-root");
    s.refresh_token = strdup("RT-root");
    assert_int_equal(mc__oauth_store_save(OP(f), &f->req, &s, &err), MC_EFILE);
    assert_non_null(strstr(err->message, path));
    mc__oauth_store_clear(&s);
    err_free(err);
    err = NULL;
    char *tok = NULL;
    assert_int_equal(engine->token(NULL, &f->req, &tok, &err), MC_EFILE);
    assert_null(tok);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    err_free(err);
    /* status() has no error record: the log names what is wrong */
    log_text[0] = '\0';
    mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
    assert_int_equal(engine->status(NULL, &f->req, &st), MC_EFILE);
    assert_false(st.stored);
    assert_non_null(strstr(log_text, path));
}

static void store_refuses_what_it_does_not_own(void **state)
{
    fixture *f = *state;
    store_tokens(f, "AT-mine", 1900000000LL, "RT-mine");
    char *tokens = path_in(f, "tokens");
    char *file = path_in(f, "tokens/s1.json");

    /* <state> writable by others */
    assert_int_equal(chmod(f->state, 0777), 0);
    expect_refused(f, f->state, "writable by group or others");
    assert_int_equal(chmod(f->state, 0775), 0);
    expect_refused(f, f->state, "writable by group or others");
    assert_int_equal(chmod(f->state, 0755), 0);     /* readable is fine */
    mc__oauth_store s;
    bool found = false;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, NULL), 0);
    assert_true(found);
    mc__oauth_store_clear(&s);

    /* tokens/ open to group or others */
    assert_int_equal(chmod(tokens, 0750), 0);
    expect_refused(f, tokens, "must be 0700");
    assert_int_equal(chmod(tokens, 0700), 0);

    /* a symlinked token file: not read, not written through */
    char *target = NULL;
    assert_true(asprintf(&target, "%s/elsewhere.json", f->dir) > 0);
    assert_int_equal(rename(file, target), 0);
    assert_int_equal(symlink(target, file), 0);
    struct stat before, after;
    assert_int_equal(stat(target, &before), 0);
    expect_refused(f, file, "symbolic link");
    assert_int_equal(stat(target, &after), 0);
    assert_true(before.st_size == after.st_size && before.st_mtime == after.st_mtime &&
                before.st_ino == after.st_ino);
    assert_int_equal(unlink(file), 0);

    /* a FIFO in its place does not hang the load */
    assert_int_equal(mkfifo(file, 0600), 0);
    expect_refused(f, file, "not a regular file");
    assert_int_equal(unlink(file), 0);

    /* tokens/ a symlink to a folder */
    char *real = NULL;
    assert_true(asprintf(&real, "%s/real-tokens", f->dir) > 0);
    assert_int_equal(rename(tokens, real), 0);
    assert_int_equal(symlink(real, tokens), 0);
    expect_refused(f, tokens, "symbolic link");
    assert_int_equal(unlink(tokens), 0);
    assert_int_equal(rename(real, tokens), 0);

    if (geteuid() == 0) {
        /* owned by another user: the folder, then the file */
        assert_int_equal(rename(target, file), 0);
        assert_int_equal(chown(tokens, 4242, 4242), 0);
        expect_refused(f, tokens, "owned by uid 4242");
        assert_int_equal(chown(tokens, 0, 0), 0);
        assert_int_equal(chown(file, 4242, 4242), 0);
        expect_refused(f, file, "owned by uid 4242");
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_uid, 4242);       /* not replaced, not chowned */
        assert_int_equal(chown(f->state, 4242, 4242), 0);
        expect_refused(f, f->state, "owned by uid 4242");
    }
    free(real);
    free(target);
    free(tokens);
    free(file);
}

/* ------------------------------------------------------------ pending authorizations */

/* the state= value of an authorization URL (malloc'd) */
static char *state_of(const char *url)
{
    const char *p = strstr(url, "&state=");
    if (!p)
        p = strstr(url, "?state=");
    assert_non_null(p);
    p += 7;
    return strndup(p, strcspn(p, "&"));
}

static void pending_file_store_once_private_expiring(void **state)
{
    fixture *f = *state;
    mc__oauth_op *op = OP(f);
    mc_err *err = NULL;
    long long now = mc__oauth_now();
    assert_int_equal(mc__oauth_pending_put(op, "state-one", "{\"x\":1}", 7, now + 600, &err), 0);
    assert_null(err);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/pending", f->state);
    assert_int_equal(mode_of(dir), 0700);
    /* named by the hex SHA-256 of the state, never by the state */
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "test \"$(ls '%s' | wc -l)\" = 1 && ! ls '%s' | grep -q state-one",
             dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "test \"$(stat -c %%a '%s'/*)\" = 600", dir);
    assert_int_equal(system(cmd), 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(mc__oauth_pending_take(op, "state-other", &data, &len, &err), 0);
    assert_null(data);
    assert_int_equal(mc__oauth_pending_take(op, "state-one", &data, &len, &err), 0);
    assert_non_null(data);
    assert_int_equal(len, 7);
    assert_memory_equal(data, "{\"x\":1}", 7);
    free(data);
    /* taken once */
    assert_int_equal(mc__oauth_pending_take(op, "state-one", &data, &len, &err), 0);
    assert_null(data);
    /* an expired one is refused */
    assert_int_equal(mc__oauth_pending_put(op, "state-two", "old", 3, now - 1, &err), 0);
    assert_int_equal(mc__oauth_pending_take(op, "state-two", &data, &len, &err), 0);
    assert_null(data);
    /* one older than 600 s (by its file) is swept by the next put */
    assert_int_equal(mc__oauth_pending_put(op, "state-three", "aged", 4, now + 600, &err), 0);
    snprintf(cmd, sizeof cmd, "touch -d @%lld '%s'/*", now - 700, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mc__oauth_pending_put(op, "state-four", "new", 3, now + 600, &err), 0);
    snprintf(cmd, sizeof cmd, "test \"$(ls '%s' | wc -l)\" = 1", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mc__oauth_pending_take(op, "state-three", &data, &len, &err), 0);
    assert_null(data);
    /* an unsafe folder is refused like tokens/ */
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(mc__oauth_pending_put(op, "state-five", "x", 1, now + 600, &err), MC_EFILE);
    assert_non_null(strstr(err->message, "open to group or others"));
    err_free(err);
}

static void begin_finish_state_checked(void **state)
{
    fixture *f = *state;
    f->req.redirect_uri = "http://127.0.0.1:9/callback";
    char *url = NULL;
    mc_err *err = NULL;
    assert_int_equal(engine->begin(NULL, &f->req, &url, &err), 0);
    assert_null(err);
    assert_non_null(strcasestr(url, "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback"));
    assert_non_null(strstr(url, "code_challenge_method=S256"));
    char *st = state_of(url);
    free(url);
    char cb[512];
    /* a wrong state: refused, nothing stored */
    snprintf(cb, sizeof cb, "http://127.0.0.1:9/callback?code=C1&state=%s-not", st);
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "unknown"));
    err_free(err);
    err = NULL;
    /* another identity's pending authorization is not this one's */
    f->req.client_id = "client-2";
    snprintf(cb, sizeof cb, "http://127.0.0.1:9/callback?code=C1&state=%s", st);
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "another server or identity"));
    err_free(err);
    err = NULL;
    /* ...and that used it up */
    f->req.client_id = "client-1";
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "used already"));
    err_free(err);
    err = NULL;
    free(st);

    /* the right state reaches the token endpoint (closed here) with the
     * verifier; the state is used up whatever the endpoint says */
    assert_int_equal(engine->begin(NULL, &f->req, &url, &err), 0);
    st = state_of(url);
    free(url);
    snprintf(cb, sizeof cb, "http://127.0.0.1:9/callback?code=C2&state=%s", st);
    log_text[0] = '\0';
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_non_null(strstr(log_text, "POST http://127.0.0.1:1/token"));
    err_free(err);
    err = NULL;
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    assert_non_null(strstr(err->message, "used already"));
    err_free(err);
    err = NULL;
    free(st);

    /* access_denied: MC_EAUTH, and the pending one is gone */
    assert_int_equal(engine->begin(NULL, &f->req, &url, &err), 0);
    st = state_of(url);
    free(url);
    snprintf(cb, sizeof cb, "http://127.0.0.1:9/callback?error=access_denied&state=%s", st);
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_non_null(strstr(err->message, "denied"));
    err_free(err);
    err = NULL;
    snprintf(cb, sizeof cb, "http://127.0.0.1:9/callback?code=C3&state=%s", st);
    assert_int_equal(engine->finish(NULL, &f->req, cb, &err), MC_EOAUTH);
    err_free(err);
    err = NULL;
    free(st);
    /* not a URL at all */
    assert_int_equal(engine->finish(NULL, &f->req, "not a url", &err), MC_EINVAL);
    err_free(err);
    err = NULL;
    /* nothing was ever stored */
    mc_token_status ts = { .version = MC_TOKEN_STATUS_VERSION };
    assert_int_equal(engine->status(NULL, &f->req, &ts), 0);
    assert_false(ts.stored);
    /* without a redirect_uri there is nothing to begin */
    f->req.redirect_uri = NULL;
    assert_int_equal(engine->begin(NULL, &f->req, &url, &err), MC_EINVAL);
    err_free(err);
}

/* an application's own store: records in memory, nothing on disk */
typedef struct mem_store {
    char  *rec;
    size_t len;
    char   pend_state[64];
    char  *pend;
    size_t pend_len;
    int    locks, unlocks, saves, takes;
} mem_store;

static int m_lock(void *st, const mc_token_identity *id, long long d, mc_err **err)
{
    (void)id; (void)d; (void)err;
    ((mem_store *)st)->locks++;
    return 0;
}
static void m_unlock(void *st, const mc_token_identity *id)
{
    (void)id;
    ((mem_store *)st)->unlocks++;
}
static int m_load(void *st, const mc_token_identity *id, char **data, size_t *len, mc_err **err)
{
    (void)err;
    mem_store *m = st;
    assert_string_equal(id->server, "s1");
    assert_string_equal(id->client_id, "client-1");
    *data = NULL;
    *len = 0;
    if (m->rec) {
        *data = malloc(m->len + 1);
        memcpy(*data, m->rec, m->len + 1);
        *len = m->len;
    }
    return 0;
}
static int m_save(void *st, const mc_token_identity *id, const char *data, size_t len,
                  mc_err **err)
{
    (void)id; (void)err;
    mem_store *m = st;
    free(m->rec);
    m->rec = strndup(data, len);
    m->len = len;
    m->saves++;
    return 0;
}
static int m_remove(void *st, const mc_token_identity *id, mc_err **err)
{
    (void)id; (void)err;
    mem_store *m = st;
    free(m->rec);
    m->rec = NULL;
    return 0;
}
static int m_put(void *st, const char *state, const char *data, size_t len, long long exp,
                 mc_err **err)
{
    (void)exp; (void)err;
    mem_store *m = st;
    snprintf(m->pend_state, sizeof m->pend_state, "%s", state);
    free(m->pend);
    m->pend = strndup(data, len);
    m->pend_len = len;
    return 0;
}
static int m_take(void *st, const char *state, char **data, size_t *len, mc_err **err)
{
    (void)err;
    mem_store *m = st;
    m->takes++;
    *data = NULL;
    if (m->pend && !strcmp(state, m->pend_state)) {
        *data = m->pend;
        *len = m->pend_len;
        m->pend = NULL;
    }
    return 0;
}

static const mc_token_store_ops mem_ops = {
    sizeof(mc_token_store_ops), m_lock, m_unlock, m_load, m_save, m_remove, m_put, m_take,
};

static void application_store_used(void **state)
{
    fixture *f = *state;
    mem_store m;
    memset(&m, 0, sizeof m);
    mc_host_ctx hc = { NULL, &mem_ops, &m };
    mc__oauth_op op;
    assert_int_equal(mc__oauth_op_init(&op, &hc, &f->req, NULL), 0);
    assert_false(op.builtin);
    /* a record saved through the ops is what the engine hands out */
    mc__oauth_store s;
    memset(&s, 0, sizeof s);
    s.access_token = strdup("AT-in-memory");
    s.expires_at = 1900000000LL;
    s.refresh_token = strdup("RT-in-memory");
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_store_save(&op, &f->req, &s, &err), 0);
    mc__oauth_store_clear(&s);
    assert_non_null(strstr(m.rec, "\"identity\""));
    char *tok = NULL;
    assert_int_equal(engine->token(&hc, &f->req, &tok, &err), 0);
    assert_string_equal(tok, "AT-in-memory");
    mc__oauth_wipe_free(tok);
    mc_token_status ts = { .version = MC_TOKEN_STATUS_VERSION };
    assert_int_equal(engine->status(&hc, &f->req, &ts), 0);
    assert_true(ts.stored);
    /* an invalidate goes through its lock */
    assert_int_equal(engine->invalidate(&hc, &f->req, "AT-in-memory", &err), 0);
    assert_int_equal(m.locks, 1);
    assert_int_equal(m.unlocks, 1);
    assert_null(strstr(m.rec, "AT-in-memory"));
    /* pending authorizations too */
    f->req.redirect_uri = "https://app.example/cb";
    char *url = NULL;
    assert_int_equal(engine->begin(&hc, &f->req, &url, &err), 0);
    char *st = state_of(url);
    assert_string_equal(st, m.pend_state);
    assert_non_null(strstr(m.pend, "\"verifier\""));
    char cb[256];
    snprintf(cb, sizeof cb, "https://app.example/cb?error=access_denied&state=%s", st);
    assert_int_equal(engine->finish(&hc, &f->req, cb, &err), MC_EAUTH);
    err_free(err);
    err = NULL;
    assert_int_equal(m.takes, 1);
    assert_null(m.pend);
    free(st);
    free(url);
    /* revoke (no endpoint) removes the record */
    assert_int_equal(engine->revoke(&hc, &f->req, &err), 0);
    assert_null(m.rec);
    /* and not a file was written */
    assert_int_equal(access(f->state, F_OK), -1);
}

static void store_save_creates_private_and_leaves_no_temp(void **state)
{
    fixture *f = *state;
    mode_t old = umask(0);
    store_tokens(f, "AT-1", 1900000000LL, "RT-1");
    store_tokens(f, "AT-2", 1900000000LL, "RT-2");
    umask(old);
    char *tokens = path_in(f, "tokens");
    char *file = path_in(f, "tokens/s1.json");
    assert_int_equal(mode_of(tokens), 0700);
    assert_int_equal(mode_of(f->state), 0700);
    assert_int_equal(mode_of(file), 0600);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", tokens);
    assert_int_equal(system(cmd), 0);
    mc__oauth_store s;
    bool found = false;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, NULL), 0);
    assert_string_equal(s.access_token, "AT-2");
    mc__oauth_store_clear(&s);
    /* a token file whose token would break SASL framing is not valid */
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("{\"identity\":{\"provider\":\"microsoft\",\"client_id\":\"client-1\",\"user\":"
          "\"me@example.org\",\"token_url\":\"http://127.0.0.1:1/token\"},"
          "\"access_token\":\"AT\\r\\nQUIT\",\"expires_at\":1900000000}", fp);
    fclose(fp);
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_store_load(OP(f), &f->req, &s, &found, &err), MC_EFILE);
    err_free(err);
    /* an import with a control character is refused before any request */
    err = NULL;
    assert_int_equal(engine->import_refresh(NULL, &f->req, "RT\r\nX", &err), MC_EINVAL);
    assert_non_null(strstr(err->message, "control character"));
    err_free(err);
    free(tokens);
    free(file);
}

int main(void)
{
    const mc_plugin_desc *d = mc_plugin_entry(&test_host);
    if (!d || d->kind != MC_PLUGIN_OAUTH_ENGINE || strcmp(d->name, "oauth"))
        return 1;
    engine = d->ops;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pkce_rfc7636_appendix_b),
        cmocka_unit_test(pkce_verifier_is_random_base64url),
        cmocka_unit_test(tokens_number_expires_in),
        cmocka_unit_test(tokens_string_expires_in_and_case),
        cmocka_unit_test(tokens_missing_or_wrong_types),
        cmocka_unit_test_setup_teardown(error_microsoft_aadsts700082, setup, teardown),
        cmocka_unit_test_setup_teardown(error_microsoft_code_only_in_error_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(error_google_invalid_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(error_config_and_transient, setup, teardown),
        cmocka_unit_test_setup_teardown(authorize_url_params_and_escaping, setup, teardown),
        cmocka_unit_test(form_encoding),
        cmocka_unit_test(redirect_parsing),
        cmocka_unit_test_setup_teardown(store_round_trip_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(store_identity_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(no_token_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(refresh_margin_and_endpoint_down, setup, teardown),
        cmocka_unit_test_setup_teardown(invalidate_only_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(revoke_without_endpoint_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_server_name_refused, setup, teardown),
        cmocka_unit_test(tokens_expires_in_clamped),
        cmocka_unit_test(tokens_character_sets),
        cmocka_unit_test(device_answer_clamped),
        cmocka_unit_test_setup_teardown(refresh_margin_half_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(store_refuses_what_it_does_not_own, setup, teardown),
        cmocka_unit_test_setup_teardown(pending_file_store_once_private_expiring, setup, teardown),
        cmocka_unit_test_setup_teardown(begin_finish_state_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(application_store_used, setup, teardown),
        cmocka_unit_test_setup_teardown(store_save_creates_private_and_leaves_no_temp, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests_name("oauth", tests, NULL, NULL);
    for (size_t i = 0; i < n_redacted; i++)
        free(redacted[i]);
    return rc;
}
