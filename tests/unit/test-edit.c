/* edit: the editing API (mc_context_put_server, _remove_server,
 * mc_server_json, mc_context_config_json, mc_config_check, set_default in
 * memory) on contexts made from a config file in a temp folder, and the
 * mc__config_* text helpers on in-memory configs. */
/* temporary paths are short; snprintf truncation cannot happen here */
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "edit.h"
#include "log.h"
#include "secret.h"

#define PW "s3cret-Pw-9q"

static const char base[] =
    "{\n"
    "  \"servers\": [\n"
    "    {\n"
    "      \"name\": \"a\",\n"
    "      \"host\": \"a.example\",\n"
    "      \"transport\": \"starttls\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"p\",\n"
    "      \"host\": \"p.example\",\n"
    "      \"transport\": \"tls\",\n"
    "      \"auth\": {\n"
    "        \"provider\": \"basic\",\n"
    "        \"user\": \"u1\",\n"
    "        \"password\": \"" PW "\"\n"
    "      },\n"
    "      \"default\": true\n"
    "    }\n"
    "  ]\n"
    "}\n";

typedef struct fixture {
    char dir[512];
    char path[600];
    mc_context *ctx;
} fixture;

static void write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static mc_context *open_ctx(const char *path)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = path;
    o.flags = MC_CONTEXT_ALL_PLUGINS;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    if (mc_context_new(&ctx, &o, &err) < 0)
        print_error("context: %s\n", err && err->message ? err->message : "?");
    mc_error_free(err);
    assert_non_null(ctx);
    return ctx;
}

static int setup_mode(void **state, mode_t mode)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/mc-edit-" "X" "X" "X" "X" "X" "X", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/config.json", f->dir);
    write_file(f->path, base, mode);
    f->ctx = open_ctx(f->path);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_mode(state, 0600);
}

static int teardown(void **state)
{
    fixture *f = *state;
    mc_context_free(f->ctx);
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *config_json(const mc_context *ctx)
{
    char *t = NULL;
    assert_int_equal(mc_context_config_json(&t, ctx), 0);
    assert_non_null(t);
    return t;
}

static const mc_diag *diag_at(const mc_err *e, const char *path)
{
    for (size_t i = 0; e && i < e->n_diags; i++)
        if (strcmp(e->diags[i].path, path) == 0)
            return &e->diags[i];
    for (size_t i = 0; e && i < e->n_diags; i++)
        print_error("  diag %s | %d | %s | %s\n", e->diags[i].path, e->diags[i].server,
                    e->diags[i].key, e->diags[i].message);
    return NULL;
}

/* The password the context would log in with. */
static char *resolved_password(mc_context *ctx, const char *name)
{
    const mc_server *s = mc_context_server(ctx, name);
    assert_non_null(s);
    char *v = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__secret_resolve(NULL, &s->auth_cfg, "password", &v, &err), 0);
    mc_error_free(err);
    return v;
}

/* ------------------------------------------------------------- tests */

static void test_config_json_is_the_text(void **state)
{
    fixture *f = *state;
    char *t = config_json(f->ctx);
    assert_string_equal(t, base);             /* as read: key order and all */
    mc_free(t);
    assert_int_equal(mc_context_config_json(NULL, f->ctx), MC_EINVAL);
    char *o = (char *)"x";
    assert_int_equal(mc_context_config_json(&o, NULL), MC_EINVAL);
    assert_null(o);
}

static void test_put_adds(void **state)
{
    fixture *f = *state;
    struct stat before, after;
    assert_int_equal(stat(f->path, &before), 0);
    mc_err *err = NULL;
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"c\", \"host\": \"c.example\", "
                                                   "\"transport\": \"tls\", \"port\": 2465}", &err), 0);
    assert_null(err);
    assert_int_equal(mc_context_server_count(f->ctx), 3);
    const mc_server *c = mc_context_server(f->ctx, "c");
    assert_non_null(c);
    assert_int_equal(mc_server_port(c), 2465);
    assert_string_equal(mc_server_name(mc_context_server(f->ctx, NULL)), "p");   /* default kept */

    /* saved atomically: a new file (rename) with the old mode, nothing
     * else left in the folder, and the text is what the context says */
    assert_int_equal(stat(f->path, &after), 0);
    assert_int_not_equal(before.st_ino, after.st_ino);
    assert_int_equal(after.st_mode & 07777, 0600);
    assert_int_equal(count_entries(f->dir), 1);
    char *disk = slurp(f->path), *mem = config_json(f->ctx);
    assert_string_equal(disk, mem);
    /* key order kept: "a" before "p" before "c", host before transport */
    const char *pa = strstr(disk, "\"a\""), *pp = strstr(disk, "\"p\""), *pc = strstr(disk, "\"c\"");
    assert_true(pa && pp && pc && pa < pp && pp < pc);
    assert_true(strstr(disk, "\"host\"") < strstr(disk, "\"transport\""));
    free(disk);
    mc_free(mem);

    /* and a fresh context reads the same */
    mc_context *again = open_ctx(f->path);
    assert_int_equal(mc_context_server_count(again), 3);
    mc_context_free(again);
}

static void test_put_null_keeps_password(void **state)
{
    fixture *f = *state;
    mc_err *err = NULL;
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"p\", \"host\": \"p2.example\", "
                                                   "\"transport\": \"tls\", \"auth\": {"
                                                   "\"provider\": \"basic\", \"user\": \"u2\", "
                                                   "\"password\": null}}", &err), 0);
    assert_null(err);
    const mc_server *p = mc_context_server(f->ctx, "p");
    assert_string_equal(mc_server_host(p), "p2.example");
    assert_int_equal(p->index, 1);                         /* its place kept */
    char *pw = resolved_password(f->ctx, "p");
    assert_string_equal(pw, PW);
    mc__secret_free(pw);
    char *t = config_json(f->ctx);
    assert_non_null(strstr(t, "\"password\": \"" PW "\""));
    assert_non_null(strstr(t, "\"u2\""));
    assert_null(strstr(t, "\"default\""));                 /* the object was replaced */
    mc_free(t);
    /* the replaced server was the default: now none is marked */
    assert_null(mc_context_server(f->ctx, NULL));

    /* a new password replaces it */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"p\", \"host\": \"p2.example\", "
                                                   "\"transport\": \"tls\", \"auth\": {"
                                                   "\"provider\": \"basic\", \"user\": \"u2\", "
                                                   "\"password\": \"new-Pw-77\"}}", &err), 0);
    pw = resolved_password(f->ctx, "p");
    assert_string_equal(pw, "new-Pw-77");
    mc__secret_free(pw);
}

/* The proxy's password (and auth.proxy's) follows the same rule as auth's. */
static void test_put_null_keeps_proxy_password(void **state)
{
    fixture *f = *state;
    mc_err *err = NULL;
#define PROXIED(pw) "{\"name\": \"a\", \"host\": \"a.example\", \"transport\": \"starttls\", " \
                    "\"proxy\": {\"type\": \"socks5\", \"host\": \"127.0.0.1\", \"port\": 1080, "  \
                    "\"user\": \"pu\", \"password\": " pw "}}"
    assert_int_equal(mc_context_put_server(f->ctx, PROXIED("\"proxy-Pw-31\""), &err), 0);
    assert_null(err);
    assert_int_equal(mc_context_put_server(f->ctx, PROXIED("null"), &err), 0);
    assert_null(err);
    char *t = config_json(f->ctx);
    assert_non_null(strstr(t, "\"password\": \"proxy-Pw-31\""));
    mc_free(t);
    /* a new server has nothing to keep: an error at the key's path */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"n\", \"host\": \"n.example\", "
                                                   "\"transport\": \"tls\", \"proxy\": {\"type\": "
                                                   "\"http\", \"host\": \"127.0.0.1\", \"user\": \"pu\", "
                                                   "\"password\": null}}", &err), MC_ECONFIG);
    assert_non_null(diag_at(err, "servers[2].proxy.password"));
    mc_error_free(err);
#undef PROXIED
}

static void expect_unchanged(fixture *f, const char *text_before)
{
    char *t = config_json(f->ctx);
    assert_string_equal(t, text_before);
    mc_free(t);
    char *disk = slurp(f->path);
    assert_string_equal(disk, base);
    free(disk);
    assert_int_equal(mc_context_server_count(f->ctx), 2);
    assert_int_equal(count_entries(f->dir), 1);
}

static void test_put_bad_changes_nothing(void **state)
{
    fixture *f = *state;
    char *before = config_json(f->ctx);
    mc_err *err = NULL;

    /* port 0 on the existing server "a" (index 0) */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"a\", \"host\": \"a.example\", "
                                                   "\"transport\": \"starttls\", \"port\": 0}", &err),
                     MC_ECONFIG);
    assert_int_equal(err->action, MC_ACTION_FIX_CONFIG);
    const mc_diag *d = diag_at(err, "servers[0].port");
    assert_non_null(d);
    assert_int_equal(d->server, 0);
    assert_string_equal(d->key, "port");
    mc_error_free(err);
    err = NULL;
    expect_unchanged(f, before);

    /* an unknown key on a new server (index 2) */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"n\", \"host\": \"n.example\", "
                                                   "\"transport\": \"tls\", \"prot\": 25}", &err),
                     MC_ECONFIG);
    d = diag_at(err, "servers[2].prot");
    assert_non_null(d);
    assert_int_equal(d->server, 2);
    assert_string_equal(d->key, "prot");
    assert_non_null(strstr(d->message, "did you mean \"port\""));
    mc_error_free(err);
    err = NULL;
    expect_unchanged(f, before);

    /* a provider rule (through the plugin): google without client_id */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"g\", \"auth\": {\"provider\": "
                                                   "\"google\", \"user\": \"u@example.org\"}}", &err),
                     MC_ECONFIG);
    d = diag_at(err, "servers[2].auth.client_id");
    assert_non_null(d);
    assert_int_equal(d->server, 2);
    assert_string_equal(d->key, "auth.client_id");
    mc_error_free(err);
    err = NULL;
    expect_unchanged(f, before);

    /* null for a new server, and for one without an inline password */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"n\", \"host\": \"n.example\", "
                                                   "\"transport\": \"tls\", \"auth\": {\"provider\": "
                                                   "\"basic\", \"user\": \"u\", \"password\": null}}",
                                           &err), MC_ECONFIG);
    d = diag_at(err, "servers[2].auth.password");
    assert_non_null(d);
    assert_string_equal(d->key, "auth.password");
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"a\", \"host\": \"a.example\", "
                                                   "\"transport\": \"tls\", \"auth\": {\"provider\": "
                                                   "\"basic\", \"user\": \"u\", \"password\": null}}",
                                           &err), MC_ECONFIG);
    assert_non_null(diag_at(err, "servers[0].auth.password"));
    mc_error_free(err);
    err = NULL;
    expect_unchanged(f, before);

    /* not JSON, not an object, no name, a doubled key */
    static const char *const junk[] = {
        "{\"name\": \"a\",", "[1]", "{\"host\": \"x.example\"}",
        "{\"name\": \"a\", \"name\": \"b\", \"host\": \"x.example\", \"transport\": \"tls\"}",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        assert_int_equal(mc_context_put_server(f->ctx, junk[i], &err), MC_ECONFIG);
        assert_true(err->n_diags >= 1);
        mc_error_free(err);
        err = NULL;
    }
    expect_unchanged(f, before);
    assert_int_equal(mc_context_put_server(NULL, "{}", &err), MC_EINVAL);
    mc_error_free(err);
    mc_free(before);
}

static void test_remove(void **state)
{
    fixture *f = *state;
    mc_err *err = NULL;
    assert_int_equal(mc_context_remove_server(f->ctx, "zz", &err), MC_ENOSERVER);
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_context_remove_server(f->ctx, "a", &err), 0);
    assert_int_equal(mc_context_server_count(f->ctx), 1);
    assert_null(mc_context_server(f->ctx, "a"));
    assert_string_equal(mc_server_name(mc_context_server(f->ctx, NULL)), "p");
    assert_int_equal(mc_context_server(f->ctx, "p")->index, 0);
    char *disk = slurp(f->path);
    assert_null(strstr(disk, "a.example"));
    assert_non_null(strstr(disk, PW));
    free(disk);
    /* the last one cannot go: a config needs a server */
    assert_int_equal(mc_context_remove_server(f->ctx, "p", &err), MC_ECONFIG);
    assert_non_null(diag_at(err, "servers"));
    mc_error_free(err);
    assert_int_equal(mc_context_server_count(f->ctx), 1);
}

static void test_set_default_file(void **state)
{
    fixture *f = *state;
    mc_err *err = NULL;
    assert_int_equal(mc_context_set_default(f->ctx, "a", &err), 0);
    assert_string_equal(mc_server_name(mc_context_server(f->ctx, NULL)), "a");
    char *disk = slurp(f->path), *mem = config_json(f->ctx);
    assert_string_equal(disk, mem);                 /* the text follows the edit */
    assert_non_null(strstr(disk, "\"default\": true"));
    free(disk);
    mc_free(mem);
}

static void test_server_json_hides_secrets(void **state)
{
    fixture *f = *state;
    char *j = NULL;
    assert_int_equal(mc_server_json(&j, f->ctx, "p"), 0);
    assert_null(strstr(j, PW));
    assert_non_null(strstr(j, "\"password\": null"));
    assert_non_null(strstr(j, "\"user\": \"u1\""));
    /* what a settings page gets back it can save as is: the password stays */
    mc_err *err = NULL;
    assert_int_equal(mc_context_put_server(f->ctx, j, &err), 0);
    mc_free(j);
    char *pw = resolved_password(f->ctx, "p");
    assert_string_equal(pw, PW);
    mc__secret_free(pw);

    j = NULL;
    assert_int_equal(mc_server_json(&j, f->ctx, NULL), 0);     /* the default: p */
    assert_non_null(strstr(j, "\"name\": \"p\""));
    mc_free(j);
    assert_int_equal(mc_server_json(&j, f->ctx, "zz"), MC_ENOSERVER);
    assert_null(j);
}

/* The pool of the current generation's server i (lifecycle.h). */
#define POOL(f, i) ((f)->ctx->life.gen->pools[i])

static void test_swap_keeps_untouched_pools(void **state)
{
    fixture *f = *state;
    /* mark a's pool (no real connection: n_idle stays 0) */
    mc__pool *pa = POOL(f, 0), *pp = POOL(f, 1);
    pa->open = 7;
    mc_err *err = NULL;
    /* p changes: its pool is a new one; a keeps its own */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"p\", \"host\": \"p3.example\", "
                                                   "\"transport\": \"tls\"}", &err), 0);
    assert_ptr_equal(POOL(f, 0), pa);
    assert_int_equal(pa->open, 7);
    assert_ptr_not_equal(POOL(f, 1), pp);
    /* removing "a" moves nothing else: p keeps its (new) pool, now at index 0 */
    mc__pool *pp2 = POOL(f, 1);
    pa->open = 0;
    assert_int_equal(mc_context_remove_server(f->ctx, "a", &err), 0);
    assert_ptr_equal(POOL(f, 0), pp2);
}

static void test_file_rules_on_put(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(f->path, 0644), 0);
    mc_err *err = NULL;
    /* the file already holds an inline secret: any edit is refused now */
    assert_int_equal(mc_context_put_server(f->ctx, "{\"name\": \"c\", \"host\": \"c.example\", "
                                                   "\"transport\": \"tls\"}", &err), MC_ECONFIG);
    assert_non_null(strstr(err->message, "readable by group or others"));
    mc_error_free(err);
    err = NULL;
    char *disk = slurp(f->path);
    assert_string_equal(disk, base);
    free(disk);
    /* removing the server with it is fine, and the mode is kept */
    assert_int_equal(mc_context_remove_server(f->ctx, "p", &err), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
}

/* ------------------------------------------------------------- in memory */

static void test_in_memory_helpers(void **state)
{
    (void)state;
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__config_parse(&cfg, base, strlen(base), &err), 0);
    assert_true(cfg->in_memory);
    assert_null(cfg->path);
    assert_memory_equal(cfg->text, base, strlen(base));

    /* set_default: memory only, the text follows */
    assert_int_equal(mc__config_set_default(cfg, "a", &err), 0);
    assert_string_equal(cfg->def->name, "a");
    assert_non_null(strstr(cfg->text, "\"default\": true"));
    assert_true(strstr(cfg->text, "\"default\": true") < strstr(cfg->text, "\"p\""));
    assert_int_equal(mc__config_save(cfg, &err), 0);      /* nothing to save */

    /* put: a successor text, the old config untouched */
    char *before = strdup(cfg->text);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(mc__config_put_text(&text, &len, cfg, "{\"name\": \"p\", \"host\": \"q.example\", "
                                                        "\"transport\": \"tls\", \"auth\": {\"provider\": "
                                                        "\"basic\", \"user\": \"u\", \"password\": null}}",
                                         &err), 0);
    assert_string_equal(cfg->text, before);
    assert_non_null(strstr(text, PW));
    assert_non_null(strstr(text, "q.example"));
    mc__config *next = NULL;
    assert_int_equal(mc__config_reparse(&next, cfg, text, len, &err), 0);
    mc__text_free(text);
    assert_true(next->in_memory);
    assert_string_equal(mc__config_server(next, "p")->host, "q.example");
    assert_string_equal(next->def->name, "a");

    /* the server as a page shows it */
    char *j = NULL;
    assert_int_equal(mc__config_server_json(&j, next, "p"), 0);
    assert_null(strstr(j, PW));
    assert_non_null(strstr(j, "\"password\": null"));
    free(j);

    /* remove */
    assert_int_equal(mc__config_remove_text(&text, &len, next, "a", &err), 0);
    assert_null(strstr(text, "a.example"));
    mc__text_free(text);
    assert_int_equal(mc__config_remove_text(&text, &len, next, "zz", &err), MC_ENOSERVER);
    mc_error_free(err);
    free(before);
    mc__config_free(next);
    mc__config_free(cfg);
}

static void test_config_check(void **state)
{
    (void)state;
    mc_err *err = NULL;
    assert_int_equal(mc_config_check(base, 0, &err), 0);
    assert_int_equal(mc_config_check(base, MC_CONTEXT_ALL_PLUGINS, &err), 0);
    assert_null(err);
    static const char google[] =
        "{\"servers\": [{\"name\": \"g\", \"auth\": {\"provider\": \"google\", \"user\": \"u@example.org\"}}]}";
    assert_int_equal(mc_config_check(google, 0, &err), 0);          /* shape only */
    assert_int_equal(mc_config_check(google, MC_CONTEXT_ALL_PLUGINS, &err), MC_ECONFIG);
    const mc_diag *d = diag_at(err, "servers[0].auth.client_id");
    assert_non_null(d);
    assert_int_equal(d->server, 0);
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_config_check("{\"servers\": [{\"name\": \"a\", \"port\": 0}]}", 0, &err),
                     MC_ECONFIG);
    assert_non_null(diag_at(err, "servers[0].port"));
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_config_check(base, MC_CONTEXT_SECRETS, &err), MC_EINVAL);
    mc_error_free(err);
    assert_int_equal(mc_config_check(NULL, 0, NULL), MC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_json_is_the_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_adds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_null_keeps_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_null_keeps_proxy_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_bad_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_json_hides_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_keeps_untouched_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_rules_on_put, setup, teardown),
        cmocka_unit_test(test_in_memory_helpers),
        cmocka_unit_test(test_config_check),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
