/* queue: queue IDs (shape, order, uniqueness, what is refused), the retry
 * schedule (doubling, capped), the spool format (metadata and state lines
 * round-trip; broken ones refused), and the "queue" config keys. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "queue.h"

static void test_id_shape_and_order(void **state)
{
    (void)state;
    char a[MC_QUEUE_ID_SIZE], b[MC_QUEUE_ID_SIZE], c[MC_QUEUE_ID_SIZE];
    assert_int_equal(mc__queue_make_id(a, 1796300000000000LL), 0);
    assert_int_equal(mc__queue_make_id(b, 1796300000000001LL), 0);
    assert_int_equal(mc__queue_make_id(c, 1796300000000001LL), 0);
    assert_int_equal(strlen(a), MC__QUEUE_ID_LEN);
    assert_true(mc__queue_id_valid(a));
    assert_true(mc__queue_id_valid(b));
    /* the time part first, in hex: IDs sort by submit time */
    assert_memory_equal(a, "661B", 4);
    assert_true(strcmp(a, b) < 0);
    /* same microsecond: the random part tells them apart */
    assert_memory_equal(b, c, 13);
    assert_string_not_equal(b, c);
    /* only [0-9A-F]: shell-safe, no path */
    for (size_t i = 0; a[i]; i++)
        assert_non_null(strchr("0123456789ABCDEF", a[i]));
}

static void test_id_unique(void **state)
{
    (void)state;
    enum { N = 2000 };
    char (*ids)[MC_QUEUE_ID_SIZE] = calloc(N, MC_QUEUE_ID_SIZE);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        assert_int_equal(mc__queue_make_id(ids[i], 1796300000000000LL), 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    free(ids);
}

static void test_id_refused(void **state)
{
    (void)state;
    const char *bad[] = { NULL, "", "661BAC56468D6A1016C2", "661BAC56468D6A1016C2E0",
                          "661bac56468d6a1016c2e", "../../etc/passwd12345", "661BAC56468D6A1016C2.",
                          "661BAC56468D6A1016C2E.state", "661BAC56468D6-A1016C2" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(mc__queue_id_valid(bad[i]));
    assert_true(mc__queue_id_valid("661BAC56468D6A1016C2E"));
}

static void test_pause(void **state)
{
    (void)state;
    /* retry_s, doubling, at most an hour */
    assert_int_equal(mc__queue_pause(60, 1), 60);
    assert_int_equal(mc__queue_pause(60, 2), 120);
    assert_int_equal(mc__queue_pause(60, 3), 240);
    assert_int_equal(mc__queue_pause(60, 6), 1920);
    assert_int_equal(mc__queue_pause(60, 7), 3600);
    assert_int_equal(mc__queue_pause(60, 100000), 3600);
    assert_int_equal(mc__queue_pause(1, 1), 1);
    assert_int_equal(mc__queue_pause(1, 5), 16);
    assert_int_equal(mc__queue_pause(3600, 1), 3600);
    assert_int_equal(mc__queue_pause(3000, 2), 3600);
    assert_int_equal(mc__queue_pause(0, 1), 1);   /* never below a second */
}

static void test_meta_round_trip(void **state)
{
    (void)state;
    char *rcpts[] = { "a@example.test", "b\"q@example.test" };
    mc__queue_meta m = { .submitted = 1796300000, .uid = 1000, .user = "alice",
                         .server = "gmail", .from = "", .rcpts = rcpts, .n_rcpts = 2,
                         .notify = "NEVER", .envid = "id\n1", .size = 12345 };
    snprintf(m.id, sizeof(m.id), "661BAC56468D6A1016C2E");
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__queue_meta_format(&m, &b), 0);
    /* one line: the first "\n" ends it, whatever the values hold */
    assert_non_null(b.data);
    assert_ptr_equal(strchr(b.data, '\n'), b.data + b.len - 1);
    mc__queue_meta p;
    assert_int_equal(mc__queue_meta_parse(&p, b.data, b.len - 1), 0);
    assert_string_equal(p.id, m.id);
    assert_int_equal(p.submitted, 1796300000);
    assert_int_equal(p.uid, 1000);
    assert_string_equal(p.user, "alice");
    assert_string_equal(p.server, "gmail");
    assert_string_equal(p.from, "");
    assert_int_equal(p.n_rcpts, 2);
    assert_string_equal(p.rcpts[1], "b\"q@example.test");
    assert_string_equal(p.notify, "NEVER");
    assert_null(p.ret);
    assert_string_equal(p.envid, "id\n1");
    assert_int_equal(p.size, 12345);
    mc__queue_meta_clear(&p);
    mc__buf_free(&b);
}

static void test_meta_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "{",
        "[]",
        "{\"v\":2,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[\"a@b\"],\"size\":1}",
        /* an ID that would name another file */
        "{\"v\":1,\"id\":\"../x\",\"submitted\":1,\"uid\":0,\"user\":\"u\",\"from\":\"\","
        "\"rcpts\":[\"a@b\"],\"size\":1}",
        /* no recipient */
        "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[],\"size\":1}",
        /* a negative size, a string uid */
        "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[\"a@b\"],\"size\":-1}",
        "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":\"0\",\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[\"a@b\"],\"size\":1}",
        /* trailing bytes: a cut or joined line */
        "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[\"a@b\"],\"size\":1}x",
        "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,\"user\":\"u\","
        "\"from\":\"\",\"rcpts\":[\"a@b\"],\"si",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mc__queue_meta p;
        assert_int_equal(mc__queue_meta_parse(&p, bad[i], strlen(bad[i])), MC_EFILE);
    }
    const char *good = "{\"v\":1,\"id\":\"661BAC56468D6A1016C2E\",\"submitted\":1,\"uid\":0,"
                       "\"user\":\"u\",\"from\":\"\",\"rcpts\":[\"a@b\"],\"size\":1}";
    mc__queue_meta p;
    assert_int_equal(mc__queue_meta_parse(&p, good, strlen(good)), 0);
    mc__queue_meta_clear(&p);
}

static void test_state_round_trip(void **state)
{
    (void)state;
    char *left[] = { "b@example.test" };
    mc__queue_state s = { .attempts = 3, .next_try = 1796300240, .reason = "rcpt: 451 later",
                          .held = true, .unknown = true, .has_rcpts = true, .rcpts = left,
                          .n_rcpts = 1 };
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__queue_state_format(&s, &b), 0);
    mc__queue_state p;
    assert_int_equal(mc__queue_state_parse(&p, b.data, b.len), 0);
    assert_int_equal(p.attempts, 3);
    assert_int_equal(p.next_try, 1796300240);
    assert_string_equal(p.reason, "rcpt: 451 later");
    assert_true(p.held);
    assert_true(p.unknown);
    assert_true(p.has_rcpts);
    assert_int_equal(p.n_rcpts, 1);
    assert_string_equal(p.rcpts[0], "b@example.test");
    mc__queue_state_clear(&p);
    mc__buf_free(&b);
    /* without recipients: the message's own are pending */
    mc__queue_state s2 = { .attempts = 1 };
    assert_int_equal(mc__queue_state_format(&s2, &b), 0);
    assert_int_equal(mc__queue_state_parse(&p, b.data, b.len), 0);
    assert_false(p.has_rcpts);
    assert_false(p.held);
    assert_null(p.reason);
    mc__queue_state_clear(&p);
    mc__buf_free(&b);
    assert_int_equal(mc__queue_state_parse(&p, "{\"attempts\":1}", 14), MC_EFILE);
    assert_int_equal(mc__queue_state_parse(&p, "{\"attempts\":-1,\"next_try\":0}", 28), MC_EFILE);
}

static int load(const char *text, mc__config **out, mc_err **err)
{
    return mc__config_parse(out, text, strlen(text), err);
}

static void test_config_keys(void **state)
{
    (void)state;
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    const char *srv = "\"servers\":[{\"name\":\"l\",\"host\":\"h\",\"transport\":\"plain\"}]";
    char text[512];
    snprintf(text, sizeof(text), "{%s}", srv);
    assert_int_equal(load(text, &cfg, &err), 0);
    assert_false(cfg->has_queue);
    mc__config_free(cfg);
    snprintf(text, sizeof(text), "{%s,\"queue\":{}}", srv);
    assert_int_equal(load(text, &cfg, &err), 0);
    assert_true(cfg->has_queue);
    assert_int_equal(cfg->queue_max_age_s, 432000);
    assert_int_equal(cfg->queue_retry_s, 60);
    assert_null(cfg->queue_dir);
    mc__config_free(cfg);
    snprintf(text, sizeof(text), "{%s,\"queue\":{\"max_age_s\":5,\"retry_s\":2,\"dir\":\"/q\"}}",
             srv);
    assert_int_equal(load(text, &cfg, &err), 0);
    assert_int_equal(cfg->queue_max_age_s, 5);
    assert_int_equal(cfg->queue_retry_s, 2);
    assert_string_equal(cfg->queue_dir, "/q");
    mc__config_free(cfg);
    snprintf(text, sizeof(text),
             "{%s,\"queue\":{\"retry_s\":3601,\"max_age_s\":0,\"dir\":\"q\",\"dirr\":1}}", srv);
    assert_int_equal(load(text, &cfg, &err), MC_ECONFIG);
    assert_non_null(err);
    assert_int_equal(err->n_details, 4);
    bool seen[4] = { false };
    for (size_t i = 0; i < err->n_details; i++) {
        seen[0] |= strstr(err->details[i], "queue.retry_s: must be an integer 1..3600") != NULL;
        seen[1] |= strstr(err->details[i], "queue.max_age_s: must be an integer 1..") != NULL;
        seen[2] |= strstr(err->details[i], "queue.dir: must be an absolute path") != NULL;
        seen[3] |= strstr(err->details[i], "queue: unknown key \"dirr\" (did you mean \"dir\"?)")
                   != NULL;
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i]);
    mc_error_free(err);
    err = NULL;
    snprintf(text, sizeof(text), "{%s,\"queue\":true}", srv);
    assert_int_equal(load(text, &cfg, &err), MC_ECONFIG);
    assert_non_null(strstr(err->details[0], "queue: must be an object"));
    mc_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_shape_and_order),
        cmocka_unit_test(test_id_unique),
        cmocka_unit_test(test_id_refused),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_meta_round_trip),
        cmocka_unit_test(test_meta_refused),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
