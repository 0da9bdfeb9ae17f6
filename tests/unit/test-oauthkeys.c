/* test-oauthkeys: the engine owns the common OAuth keys and copies the
 * profile's strings (issue 11, DESIGN.md "OAuth providers are data,
 * truly"). With the test providers of tests/unit/oauthkeys:
 * - a data-only provider listing only "region" gets client_id, scope,
 *   params... accepted, the common rules run with JSON paths, and an
 *   unknown key refused at servers[0].auth.bogus;
 * - its params, built in a buffer it rewrites on every call, survive the
 *   next call (the core copied them), with the config's merged in; the
 *   authorization URL of mc_oauth_begin carries them;
 * - a 2.0 provider that lists the common keys itself and applies the
 *   overrides itself still works: no duplicate key, line or parameter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>

#include "mailconn/mailconn.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "oauth-keys.h"

static char plugin_dir[PATH_MAX];
static char tmp[64];
static mc_host_ctx thc;

static int setup(void **state)
{
    (void)state;
    char root[PATH_MAX];
    const char *r = getenv("MAILCONN_BUILD_ROOT");
    if (r && *r) {
        snprintf(root, sizeof(root), "%s", r);
    } else {
        /* <root>/tests/unit/test-oauthkeys */
        if (!realpath("/proc/self/exe", root))
            return -1;
        for (int i = 0; i < 3; i++) {
            char *slash = strrchr(root, '/');
            if (!slash)
                return -1;
            *slash = '\0';
        }
    }
    snprintf(plugin_dir, sizeof(plugin_dir), "%.*s/tests/unit/oauthkeys", PATH_MAX - 32, root);
    snprintf(tmp, sizeof(tmp), "/tmp/mc-test-oauthkeys-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    setenv("MAILCONN_CONFIG", "/nonexistent/mailconn.json", 1);
    mc__hc_init(&thc, MC_LOG_WARN, NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mc__hc_destroy(&thc);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* A context for one server with `auth` (JSON members after "provider"). */
static int context(mc_context **ctx, const char *provider, const char *auth, mc_err **err)
{
    char *json = NULL;
    assert_true(asprintf(&json,
                         "{\"servers\":[{\"name\":\"x\",\"sender\":{\"address\":\"a@example.test\"},"
                         "\"auth\":{\"provider\":\"%s\"%s%s}}]}",
                         provider, *auth ? "," : "", auth) > 0);
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = json;
    o.plugin_dir = plugin_dir;
    o.state_dir = tmp;
    o.flags = MC_CONTEXT_ALL_PLUGINS;
    int rc = mc_context_new(ctx, &o, err);
    free(json);
    return rc;
}

/* The context's errors, each "<JSON path>: <message>" from err->diags,
 * must be exactly `want` (NULL-terminated). */
static void expect_errors(const char *provider, const char *auth, const char *const *want)
{
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = context(&ctx, provider, auth, &err);
    size_t n = 0;
    while (want[n])
        n++;
    size_t got = err ? err->n_diags : 0;
    char **lines = calloc(got + 1, sizeof(*lines));
    assert_non_null(lines);
    for (size_t i = 0; i < got; i++)
        assert_true(asprintf(&lines[i], "%s: %s", err->diags[i].path, err->diags[i].message) > 0);
    bool same = (rc == 0) == (n == 0) && got == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(lines[i], want[i]) == 0;
    if (!same) {
        print_error("provider %s, auth {%s}: rc %d %s\n", provider, auth, rc,
                    err && err->message ? err->message : "");
        for (size_t i = 0; i < got; i++)
            print_error("  got:  %s\n", lines[i]);
        for (size_t i = 0; i < n; i++)
            print_error("  want: %s\n", want[i]);
    }
    for (size_t i = 0; i < got; i++)
        free(lines[i]);
    free(lines);
    mc_error_free(err);
    mc_context_free(ctx);
    if (!same)
        fail();
}

#define EXPECT(provider, auth, ...) \
    expect_errors(provider, auth, (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_OK(provider, auth) expect_errors(provider, auth, (const char *const[]){ NULL })

#define COMMON "\"user\":\"me@example.test\",\"client_id\":\"id\",\"client_secret_env\":\"S\"," \
               "\"client_auth\":\"basic\",\"scope\":\"s1 s2\",\"params\":{\"login_hint\":\"me\"}," \
               "\"redirect_uri\":\"http://127.0.0.1:8080/cb\",\"timeout_s\":20,"            \
               "\"mechanism\":\"OAUTHBEARER\",\"grant\":\"authorization_code\","           \
               "\"token_url\":\"https://idp.example/token\","                              \
               "\"authorization_url\":\"https://idp.example/auth\","                       \
               "\"device_authorization_url\":\"https://idp.example/device\","              \
               "\"revocation_url\":\"https://idp.example/revoke\""

/* A provider that lists only its own key: the common keys are accepted,
 * their rules run, unknown keys are refused, each with its JSON path. */
static void test_common_keys_are_the_cores(void **state)
{
    (void)state;
    EXPECT_OK("dataonly", COMMON ",\"region\":\"us\"");
    EXPECT_OK("dataonly", "\"user\":\"u\",\"access_token_command\":\"echo t\"");
    EXPECT_OK("dataonly", "\"user\":\"u\",\"client_id\":\"id\",\"client_secret\":\"x\","
                          "\"ca_file\":\"/etc/ssl/certs/ca-certificates.crt\"");
    EXPECT("dataonly", COMMON ",\"bogus\":1",
           "servers[0].auth.bogus: unknown key \"bogus\" for provider \"dataonly\"");
    /* the suggestion comes from the common keys too */
    EXPECT("dataonly", "\"user\":\"u\",\"client_id\":\"id\",\"scop\":\"s\"",
           "servers[0].auth.scop: unknown key \"scop\" for provider \"dataonly\" "
           "(did you mean \"scope\"?)");
    /* the common rules, then the provider's own */
    EXPECT("dataonly", "\"region\":\"mars\"",
           "servers[0].auth.user: required (the account that logs in to the SMTP server)",
           "servers[0].auth.client_id: required (the OAuth client ID of the app registration)",
           "servers[0].auth.region: must be \"eu\" or \"us\", got \"mars\"");
    EXPECT("dataonly", "\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"http://idp.example/t\"",
           "servers[0].auth.token_url: must be an https:// URL (http:// only to 127.0.0.1, "
           "[::1] or localhost), got \"http://idp.example/t\"");
    EXPECT("dataonly", "\"user\":\"u\",\"client_id\":\"id\",\"grant\":\"client_credentials\"",
           "servers[0].auth.grant: \"client_credentials\" needs a client secret (client_secret, "
           "client_secret_file, client_secret_env or client_secret_command)");
}

/* A 2.0 provider listing the common keys itself and repeating a rule:
 * accepted as before, each line once. */
static void test_legacy_provider(void **state)
{
    (void)state;
    EXPECT_OK("legacy20", COMMON ",\"region\":\"eu\"");
    EXPECT("legacy20", "\"client_id\":\"id\",\"bogus\":true",
           "servers[0].auth.bogus: unknown key \"bogus\" for provider \"legacy20\"",
           "servers[0].auth.user: required (the account that logs in to the SMTP server)");
}

typedef struct tcfg {
    mc_plugin_cfg cfg;
    mc__diag      diag;
} tcfg;

static void tcfg_init(tcfg *t, const char *json)
{
    memset(t, 0, sizeof(*t));
    t->cfg.obj = json_tokener_parse(json);
    assert_non_null(t->cfg.obj);
    t->cfg.path = strdup("servers[0].auth");
    t->cfg.diag = &t->diag;
}

static void tcfg_free(tcfg *t)
{
    json_object_put(t->cfg.obj);
    free(t->cfg.path);
    mc__diag_free(&t->diag);
}

static const mc_auth_ops *provider(mc__registry **reg, const char *name)
{
    const char *dirs[] = { plugin_dir };
    mc_err *err = NULL;
    assert_int_equal(mc__registry_new_dirs(reg, dirs, 1, &err), 0);
    const mc__plugin *p = NULL;
    if (mc__registry_get(*reg, MC_PLUGIN_AUTH, name, &p, &err) != 0)
        fail_msg("auth %s: %s", name, err ? err->message : "?");
    return p->desc->ops;
}

static void expect_params(const mc_oauth_profile *p, const char *const *want)
{
    size_t i = 0;
    for (; want[i]; i++) {
        if (!p->params[i] || strcmp(p->params[i], want[i]) != 0)
            fail_msg("params[%zu]: \"%s\", want \"%s\"", i, p->params[i] ? p->params[i] : "(end)",
                     want[i]);
    }
    if (p->params[i])
        fail_msg("params[%zu]: \"%s\", want the end", i, p->params[i]);
}

#define PARAMS(p, ...) expect_params(p, (const char *const[]){ __VA_ARGS__, NULL })

/* The profile: the provider's defaults, the config's common keys over
 * them, the params and hints copied (the provider's buffer is rewritten by
 * the next call; the first profile must not change). */
static void profile_case(const char *name, bool legacy)
{
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, name);
    tcfg a, b;
    tcfg_init(&a, "{\"user\":\"u\",\"client_id\":\"id\",\"region\":\"us\","
                  "\"params\":{\"audience\":\"mine\",\"login_hint\":\"u@example.test\"}}");
    tcfg_init(&b, "{\"user\":\"u\",\"client_id\":\"id\",\"region\":\"eu\","
                  "\"token_url\":\"http://127.0.0.1:9/t\",\"scope\":\"other\"}");
    mc_oauth_profile pa, pb;
    void *own_a = NULL, *own_b = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__oauth_profile(&thc, ops, &a.cfg, &pa, &own_a, &err), 0);
    assert_int_equal(mc__oauth_profile(&thc, ops, &b.cfg, &pb, &own_b, &err), 0);
    assert_null(err);

    /* a: the provider's region=us kept, its audience replaced by the
     * config's, the config's login_hint added */
    assert_int_equal(pa.size, sizeof(pa));
    assert_string_equal(pa.authorization_url, "https://us.example.invalid/authorize");
    assert_string_equal(pa.token_url, legacy ? "https://legacy.invalid/token"
                                             : "https://us.example.invalid/token");
    assert_string_equal(pa.scope, "mail.send");
    PARAMS(&pa, "region=us", "audience=mine", "login_hint=u@example.test");
    assert_non_null(pa.hints);
    assert_string_equal(pa.hints[0].match, "region_down");
    assert_null(pa.hints[1].match);
    /* b: the config's endpoint and scope win */
    assert_string_equal(pb.token_url, "http://127.0.0.1:9/t");
    assert_string_equal(pb.scope, "other");
    PARAMS(&pb, "region=eu", "audience=mail-eu");
    assert_true(pa.params != pb.params);

    mc__oauth_profile_release(own_a);
    mc__oauth_profile_release(own_b);
    tcfg_free(&a);
    tcfg_free(&b);
    mc__registry_free(reg);
}

static void test_profile_copied(void **state)
{
    (void)state;
    profile_case("dataonly", false);
}

static void test_profile_legacy_idempotent(void **state)
{
    (void)state;
    profile_case("legacy20", true);
}

/* End to end: the authorization URL carries the provider's params and the
 * config's, once each. */
static void test_begin_url(void **state)
{
    (void)state;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    assert_int_equal(context(&ctx, "dataonly",
                             "\"user\":\"u\",\"client_id\":\"id\",\"region\":\"us\","
                             "\"authorization_url\":\"http://127.0.0.1:9/auth\","
                             "\"params\":{\"audience\":\"mine\"}", &err), 0);
    char *url = NULL;
    if (mc_oauth_begin(&url, ctx, "x", "http://127.0.0.1:8080/cb", &err) != 0)
        fail_msg("begin: %s", err && err->message ? err->message : "?");
    assert_true(strncmp(url, "http://127.0.0.1:9/auth?", 24) == 0);
    assert_non_null(strstr(url, "&region=us"));
    assert_non_null(strstr(url, "&audience=mine"));
    assert_null(strstr(url, "audience=mail"));
    mc_free(url);
    mc_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_common_keys_are_the_cores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_legacy_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_url, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
