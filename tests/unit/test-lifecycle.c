/* lifecycle: config generations and what a swap keeps. An unchanged server
 * (the "default" mark aside) keeps its pool; a changed one (a password, a
 * secret's source, key order) or a removed one has its pool retired; the
 * old generation lives while a reference holds it; disconnect bumps only
 * the named pool's epoch; reload refuses what it cannot read and keeps the
 * old config. No network: the pools hold no connection. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "lifecycle.h"

static mc_context *no_config_context(void)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.flags = MC_CONTEXT_NO_CONFIG;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc_context_new(&ctx, &o, &err), 0);
    mc_error_free(err);
    return ctx;
}

#define SRV(name, extra) \
    "{\"name\": \"" name "\", \"host\": \"127.0.0.1\", \"port\": 2525, \"transport\": \"plain\"" extra "}"
#define AUTH(pw) ", \"allow_plaintext_auth\": true, \"auth\": {\"provider\": \"basic\", \"user\": \"u\", " pw "}"

static mc__config *parsed(mc_context *ctx, const char *text)
{
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    int rc = mc__config_parse(&cfg, text, strlen(text), &err);
    if (rc == 0)
        rc = mc__config_prepare(cfg, ctx->reg, NULL, &err);
    if (rc != 0)
        fail_msg("%s: %s", text, err && err->message ? err->message : "?");
    mc_error_free(err);
    return cfg;
}

static mc__pool *pool_of(mc__gen *g, const char *name)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->cfg->servers[i].name, name) == 0)
            return g->pools[i];
    return NULL;
}

static void swap(mc_context *ctx, const char *text)
{
    mc_err *err = NULL;
    assert_int_equal(mc__context_swap_config(ctx, parsed(ctx, text), &err), 0);
    mc_error_free(err);
}

static void test_swap_keeps_unchanged_pools(void **state)
{
    (void)state;
    mc_context *ctx = no_config_context();
    assert_null(mc__gen_take(ctx));
    swap(ctx, "{\"servers\": [" SRV("a", ", \"default\": true") ", "
              SRV("b", AUTH("\"password\": \"one\"")) ", " SRV("c", "") ", "
              SRV("e", AUTH("\"password_env\": \"PW\"")) ", " SRV("f", ", \"timeout_s\": 9, \"helo\": \"h\"") "]}");
    mc__gen *g1 = mc__gen_take(ctx);
    assert_non_null(g1);
    assert_ptr_equal(ctx->cfg, g1->cfg);
    assert_int_equal(g1->refs, 2);   /* the context's and ours */
    mc__pool *a = pool_of(g1, "a"), *b = pool_of(g1, "b"), *c = pool_of(g1, "c");
    mc__pool *e = pool_of(g1, "e"), *f = pool_of(g1, "f");

    /* a: only the default mark moves; b: the password changes; c: gone;
     * e: the secret's source changes; f: same keys, another order; d: new */
    swap(ctx, "{\"servers\": [" SRV("a", "") ", "
              SRV("b", AUTH("\"password\": \"two\"")) ", " SRV("d", ", \"default\": true") ", "
              SRV("e", AUTH("\"password_file\": \"/nonexistent/pw\"")) ", "
              SRV("f", ", \"helo\": \"h\", \"timeout_s\": 9") "]}");
    mc__gen *g2 = mc__gen_take(ctx);
    assert_ptr_not_equal(g1, g2);
    assert_ptr_equal(ctx->cfg, g2->cfg);
    assert_int_equal(g1->refs, 1);   /* ours only: still alive for a call in flight */
    assert_string_equal(g1->cfg->servers[2].name, "c");

    assert_ptr_equal(pool_of(g2, "a"), a);
    assert_false(a->retired);
    assert_int_equal(a->gens, 2);
    assert_ptr_not_equal(pool_of(g2, "b"), b);
    assert_true(b->retired);
    assert_true(c->retired);
    assert_ptr_not_equal(pool_of(g2, "e"), e);
    assert_true(e->retired);
    assert_ptr_not_equal(pool_of(g2, "f"), f);   /* key order counts (documented) */
    assert_true(f->retired);
    assert_false(pool_of(g2, "d")->retired);

    mc__gen_drop(ctx, g1);           /* the last reference: freed (ASan: no leak) */
    assert_int_equal(a->gens, 1);

    /* disconnect: only the named pool's epoch; NULL: all */
    unsigned ea = pool_of(g2, "a")->epoch, ed = pool_of(g2, "d")->epoch;
    mc_context_disconnect(ctx, "a");
    assert_int_equal(pool_of(g2, "a")->epoch, ea + 1);
    assert_int_equal(pool_of(g2, "d")->epoch, ed);
    mc_context_disconnect(ctx, NULL);
    assert_int_equal(pool_of(g2, "a")->epoch, ea + 2);
    assert_int_equal(pool_of(g2, "d")->epoch, ed + 1);
    mc_context_disconnect(ctx, "nope");
    mc__gen_drop(ctx, g2);
    mc_context_free(ctx);
}

static void test_swap_refuses_null(void **state)
{
    (void)state;
    mc_context *ctx = no_config_context();
    mc_err *err = NULL;
    assert_int_equal(mc__context_swap_config(ctx, NULL, &err), MC_EINVAL);
    mc_error_free(err);
    mc_context_free(ctx);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/mc-test-lifecycle-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Options version 2: a context whose config is held in memory reloads
 * from new text (config_json), still in memory; bad text keeps the old. */
static void test_reload_config_json(void **state)
{
    (void)state;
    mc_err *err = NULL;
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = "{\"servers\": [" SRV("a", ", \"default\": true") "]}";
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_new(&ctx, &o, &err), 0);
    mc_context_options n = MC_CONTEXT_OPTIONS_INIT;
    n.config_json = "{\"servers\": [" SRV("a", "") ", " SRV("b", ", \"default\": true") "]}";
    assert_int_equal(mc_context_reload(ctx, &n, &err), 0);
    assert_non_null(mc_context_server(ctx, "b"));
    assert_string_equal(mc_server_name(mc_context_server(ctx, NULL)), "b");
    assert_null(mc_context_config_path(ctx));
    n.config_json = "{\"servers\": [{\"name\": \"c\", \"port\": 0}]}";
    assert_int_equal(mc_context_reload(ctx, &n, &err), MC_ECONFIG);
    assert_true(err->n_diags >= 1);
    mc_error_free(err);
    assert_non_null(mc_context_server(ctx, "b"));
    assert_null(mc_context_server(ctx, "c"));
    mc_context_free(ctx);
}

static void test_reload_errors_keep_the_old_config(void **state)
{
    (void)state;
    mc_err *err = NULL;

    /* no config at all, and a config with no file: nothing to read again */
    mc_context *ctx = no_config_context();
    assert_int_equal(mc_context_reload(ctx, NULL, &err), MC_EUSAGE);
    mc_error_free(err);
    err = NULL;
    swap(ctx, "{\"servers\": [" SRV("a", "") "]}");
    assert_int_equal(mc_context_reload(ctx, NULL, &err), MC_EUSAGE);
    mc_error_free(err);
    err = NULL;
    mc_context_free(ctx);

    char *path = write_tmp("{\"servers\": [" SRV("a", ", \"default\": true") "]}");
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = path;
    assert_int_equal(mc_context_new(&ctx, &o, &err), 0);
    const mc__config *before = ctx->cfg;

    /* bad options */
    mc_context_options v = MC_CONTEXT_OPTIONS_INIT;
    v.version = 99;
    assert_int_equal(mc_context_reload(ctx, &v, &err), MC_EINVAL);
    mc_error_free(err);
    err = NULL;
    v.version = 1;
    v.flags = MC_CONTEXT_NO_CONFIG;
    assert_int_equal(mc_context_reload(ctx, &v, &err), MC_EINVAL);
    mc_error_free(err);
    err = NULL;

    /* a config with errors: every one in details, the old config stays */
    FILE *f = fopen(path, "w");
    fputs("{\"servers\": [{\"name\": \"a\", \"port\": \"x\"}, {\"name\": \"b\", \"bogus\": 1}]}", f);
    fclose(f);
    assert_int_equal(mc_context_reload(ctx, NULL, &err), MC_ECONFIG);
    assert_non_null(err);
    assert_true(err->n_details >= 2);
    mc_error_free(err);
    err = NULL;
    assert_ptr_equal(ctx->cfg, before);
    assert_non_null(mc_context_server(ctx, "a"));
    /* the shape is fine, the provider check (prepare) is not */
    f = fopen(path, "w");
    fputs("{\"servers\": [" SRV("b", ", \"allow_plaintext_auth\": true, \"auth\": {\"provider\": \"nope\"}") "]}", f);
    fclose(f);
    assert_int_equal(mc_context_reload(ctx, NULL, &err), MC_ECONFIG);
    assert_non_null(err);
    assert_non_null(strstr(err->message, "servers[0].auth"));
    mc_error_free(err);
    err = NULL;
    assert_ptr_equal(ctx->cfg, before);

    /* a good one, by the same path: swapped in */
    f = fopen(path, "w");
    fputs("{\"servers\": [" SRV("b", ", \"default\": true") "]}", f);
    fclose(f);
    assert_int_equal(mc_context_reload(ctx, NULL, &err), 0);
    assert_null(mc_context_server(ctx, "a"));
    assert_string_equal(mc_server_name(mc_context_server(ctx, NULL)), "b");
    mc_context_free(ctx);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swap_keeps_unchanged_pools),
        cmocka_unit_test(test_swap_refuses_null),
        cmocka_unit_test(test_reload_errors_keep_the_old_config),
        cmocka_unit_test(test_reload_config_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
