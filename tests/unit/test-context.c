/* test-context: mc_context_options version 2 (config_json, state_dir,
 * token_store), version 1 callers, MC_CONTEXT_CONFIG_ONLY, mc_config_find,
 * mc_log_failure, and the per-context state plugins reach through the host
 * table (log, redact, state_dir, token_store act on the hc given).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "host.h"
#include "log.h"

static char tmp[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/mc-test-context-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    char p[300];
    snprintf(p, sizeof(p), "%s/state", tmp);
    setenv("MAILCONN_STATE_DIR", p, 1);
    snprintf(p, sizeof(p), "%s/nowhere.json", tmp);
    setenv("MAILCONN_CONFIG", p, 1);   /* never read in these tests unless named */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static const char good_json[] =
    "{\"servers\":[{\"name\":\"main\",\"host\":\"127.0.0.1\",\"port\":2525,"
    "\"transport\":\"plain\",\"sender\":{\"address\":\"a@example.test\"}}]}";

static char *write_file(const char *name, const char *text)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", tmp, name) > 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(p, 0600);
    return p;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------ sinks */

typedef struct lines {
    char   text[8192];
    size_t n;
} lines;

static void sink(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    lines *l = payload;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "%s\n", line);
    l->n++;
}

static mc_context *json_context(const char *json, const char *state_dir, mc_log_fn *fn,
                                void *payload)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = json;
    o.state_dir = state_dir;
    o.log = fn;
    o.log_payload = payload;
    o.log_level = MC_LOG_INFO;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc != 0)
        fail_msg("mc_context_new: %s", err && err->message ? err->message : mc_strerror(rc));
    return ctx;
}

/* ------------------------------------------------------------ tests */

/* config_json: parsed from memory, no path, and an edit is never saved. */
static void test_config_json_in_memory(void **state)
{
    (void)state;
    mc_context *ctx = json_context(good_json, NULL, NULL, NULL);
    assert_null(mc_context_config_path(ctx));
    assert_int_equal(mc_context_server_count(ctx), 1);
    assert_string_equal(mc_server_name(mc_context_server(ctx, "main")), "main");
    mc_err *err = NULL;
    assert_int_equal(mc_context_set_default(ctx, "main", &err), 0);   /* memory only */
    assert_true(mc_server_is_default(mc_context_server(ctx, "main")));
    mc_error_free(err);
    assert_int_equal(access(getenv("MAILCONN_CONFIG"), F_OK), -1);   /* nothing written */
    mc_context_free(ctx);

    /* a bad text: MC_ECONFIG with the diagnostics */
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = "{\"servers\":[{\"name\":1}]}";
    ctx = NULL;
    err = NULL;
    assert_int_equal(mc_context_new(&ctx, &o, &err), MC_ECONFIG);
    assert_null(ctx);
    assert_non_null(err);
    assert_true(err->n_details > 0);
    mc_error_free(err);
}

/* A caller built for version 1 passes a struct that ends after
 * log_payload: nothing after it is read (under ASan, a read past it would
 * be reported), and the context loads its config_path. */
static void test_version_1_options(void **state)
{
    (void)state;
    char *cfg = write_file("v1.json", good_json);
    /* mc_context_options as version 1 of mailconn.h declared it */
    typedef struct v1_options {
        unsigned    version;
        const char *config_path;
        const char *plugin_dir;
        unsigned    flags;
        const char *server;
        mc_log_level log_level;
        mc_log_fn  *log;
        void       *log_payload;
    } v1_options;
    assert_int_equal(sizeof(v1_options), offsetof(mc_context_options, config_json));
    v1_options *o = calloc(1, sizeof(*o));   /* exactly that much: nothing after it */
    assert_non_null(o);
    o->version = 1;
    o->config_path = cfg;
    o->log_level = MC_LOG_WARN;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, (const mc_context_options *)(void *)o, &err);
    if (rc)
        fail_msg("v1: %s", err && err->message ? err->message : mc_strerror(rc));
    assert_string_equal(mc_context_config_path(ctx), cfg);
    /* no state_dir member: the environment's */
    assert_string_equal(mc__host()->state_dir(&ctx->hc), getenv("MAILCONN_STATE_DIR"));
    assert_null(mc__host()->token_store(&ctx->hc, NULL));
    mc_context_free(ctx);
    free(o);

    mc_context_options bad = MC_CONTEXT_OPTIONS_INIT;
    bad.version = 3;
    err = NULL;
    assert_int_equal(mc_context_new(&ctx, &bad, &err), MC_EINVAL);
    mc_error_free(err);
    free(cfg);
}

static int ts_lock(void *s, const mc_token_identity *id, long long d, mc_err **e)
{
    (void)s; (void)id; (void)d; (void)e;
    return 0;
}

/* state_dir and token_store: per context, what host->state_dir and
 * host->token_store give a plugin for that context's hc. */
static void test_state_dir_and_token_store(void **state)
{
    (void)state;
    static const mc_token_store_ops ops = { .size = sizeof(mc_token_store_ops), .lock = ts_lock };
    int payload_a = 1;
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = good_json;
    o.state_dir = "/srv/tenant-a/state";
    o.token_store = &ops;
    o.token_store_payload = &payload_a;
    mc_context *a = NULL, *b;
    mc_err *err = NULL;
    assert_int_equal(mc_context_new(&a, &o, &err), 0);
    b = json_context(good_json, "/srv/tenant-b/state", NULL, NULL);

    const mc_host_api *h = mc__host();
    assert_string_equal(h->state_dir(&a->hc), "/srv/tenant-a/state");
    assert_string_equal(h->state_dir(&b->hc), "/srv/tenant-b/state");
    void *store = NULL;
    assert_ptr_equal(h->token_store(&a->hc, &store), &ops);
    assert_ptr_equal(store, &payload_a);
    store = &store;
    assert_null(h->token_store(&b->hc, &store));
    assert_null(store);
    mc_context_free(a);
    mc_context_free(b);

    /* a table of another size is refused */
    static const mc_token_store_ops small = { .size = 8 };
    o.token_store = &small;
    a = NULL;
    assert_int_equal(mc_context_new(&a, &o, &err), MC_EINVAL);
    assert_null(a);
    mc_error_free(err);
}

/* MC_CONTEXT_CONFIG_ONLY: no plugin looked for, no provider validation. */
static void test_config_only(void **state)
{
    (void)state;
    static const char json[] =
        "{\"servers\":[{\"name\":\"x\",\"host\":\"127.0.0.1\",\"transport\":\"no-such-transport\","
        "\"auth\":{\"provider\":\"no-such-provider\",\"user\":\"u\"}}]}";
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = json;
    o.flags = MC_CONTEXT_CONFIG_ONLY;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc)
        fail_msg("config only: %s", err && err->message ? err->message : mc_strerror(rc));
    assert_int_equal(mc_context_server_count(ctx), 1);
    assert_string_equal(mc_server_name(mc_context_server_at(ctx, 0)), "x");
    mc_context_free(ctx);
    /* the same without the flag: the plugins are looked for */
    o.flags = 0;
    ctx = NULL;
    assert_int_equal(mc_context_new(&ctx, &o, &err), MC_ECONFIG);
    assert_null(ctx);
    mc_error_free(err);
}

static void test_config_find(void **state)
{
    (void)state;
    char *p = mc_config_find("/etc/elsewhere.json");
    assert_string_equal(p, "/etc/elsewhere.json");
    free(p);   /* mc_free, when the library has it, is free() */
    p = mc_config_find(NULL);
    assert_string_equal(p, getenv("MAILCONN_CONFIG"));
    free(p);
}

/* mc_log_failure: one line to the config's top-level log_file, even when
 * the config does not load; an error marked twice as logged and forgotten
 * once is not taken for logged (one mark per error). */
static void test_log_failure(void **state)
{
    (void)state;
    char *log = NULL;
    assert_true(asprintf(&log, "%s/top.log", tmp) > 0);
    char *text = NULL;
    assert_true(asprintf(&text, "{\"log_file\":\"%s\",\"servers\":[{\"name\":7}]}", log) > 0);
    char *cfg = write_file("bad.json", text);
    mc_log_failure(cfg, "send", 64, NULL, "bad option --frob");
    char *got = read_all(log);
    assert_non_null(got);
    assert_non_null(strstr(got, "command=send outcome=failed exit=64 error=\"bad option --frob\""));
    free(got);

    mc_err *e = NULL;
    mc__error_set(&e, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT, "connection refused");
    mc__toplog_mark(e);
    mc__toplog_mark(e);
    mc_log_failure(cfg, "send", 75, e, NULL);          /* marked: skipped */
    got = read_all(log);
    assert_null(strstr(got, "exit=75"));
    free(got);
    mc__toplog_forget(e);                               /* as mc_error_free does */
    mc_log_failure(cfg, "send", 75, e, NULL);
    got = read_all(log);
    assert_non_null(strstr(got, "command=send outcome=failed exit=75 stage=connect "
                                "error=\"connection refused\""));
    free(got);
    mc_error_free(e);
    free(cfg);
    free(text);
    free(log);
}

/* host->log and host->redact act on the hc given: one context's lines and
 * secrets never reach another's sink; freeing one leaves the other's. */
static void test_per_context_log(void **state)
{
    (void)state;
    lines la = { "", 0 }, lb = { "", 0 };
    mc_context *a = json_context(good_json, NULL, sink, &la);
    mc_context *b = json_context(good_json, NULL, sink, &lb);
    const mc_host_api *h = mc__host();
    h->redact(&a->hc, "secret-of-a");
    h->log(&a->hc, MC_LOG_WARN, "a says secret-of-a");
    h->log(&b->hc, MC_LOG_WARN, "b says secret-of-a");
    h->log(NULL, MC_LOG_WARN, "nobody's line");
    assert_string_equal(la.text, "a says <redacted>\n");
    assert_string_equal(lb.text, "b says secret-of-a\n");
    mc_context_free(a);
    h->log(&b->hc, MC_LOG_WARN, "b after a is gone");
    assert_string_equal(lb.text, "b says secret-of-a\nb after a is gone\n");
    assert_int_equal(la.n, 1);
    /* the level is the context's own */
    mc__log_setup(&b->hc, MC_LOG_WARN, sink, &lb);
    h->log(&b->hc, MC_LOG_DEBUG, "dropped");
    assert_int_equal(lb.n, 2);
    mc_context_free(b);
}

/* A sink is called with no lock of the library held: from inside it the
 * library may be called back, a line logged to the same context included
 * (what a plugin called from the sink's thread would do). Under a lock
 * this self-deadlocks: alarm() bounds the wait. */
typedef struct reentry {
    mc_context *ctx;
    lines       l;
    int         depth;
    unsigned    port;
} reentry;

static void reentrant_sink(mc_log_level level, const char *line, void *payload)
{
    reentry *r = payload;
    sink(level, line, &r->l);
    if (!r->ctx || r->depth++)
        return;
    assert_non_null(mc_strerror(MC_ENET));
    r->port = mc_server_port(mc_context_server(r->ctx, "main"));
    mc__host()->log(&r->ctx->hc, MC_LOG_WARN, "from inside the sink");
}

static void test_sink_may_call_back(void **state)
{
    (void)state;
    reentry r = { .ctx = NULL };
    mc_context *ctx = json_context(good_json, NULL, reentrant_sink, &r);
    r.ctx = ctx;
    alarm(20);                       /* a deadlock ends the test (SIGALRM) */
    mc__host()->log(&ctx->hc, MC_LOG_WARN, "first");
    alarm(0);
    assert_string_equal(r.l.text, "first\nfrom inside the sink\n");
    assert_int_equal(r.port, 2525);
    mc_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_json_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_1_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_dir_and_token_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_context_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_may_call_back, setup, teardown),
    };
    return cmocka_run_group_tests_name("context", tests, NULL, NULL);
}
