/* error: the code tables, the outcome -> exit code map, and mc_err
 * building (first error wins, reply and enhanced code parsing). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "error.h"

static void test_tables(void **state)
{
    (void)state;
    static const int codes[] = {
#define X(name, val, text) MC_##name,
        MC_ERRNO_MAP(X)
#undef X
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(mc_strerror(codes[i]), "unknown error");
        assert_string_not_equal(mc_error_name(codes[i]), "UNKNOWN");
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);   /* numbers never reused */
    }
    assert_string_equal(mc_error_name(MC_EAUTH), "EAUTH");
    assert_string_equal(mc_strerror(0), "success");
    assert_string_equal(mc_strerror(-9999), "unknown error");
    assert_string_equal(mc_stage_name(MC_STAGE_STARTTLS), "starttls");
    assert_string_equal(mc_stage_name((mc_stage)999), "unknown");
}

static void test_exit_codes(void **state)
{
    (void)state;
    /* DESIGN.md "Outcomes and errors" */
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_OK), 0);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_CONFIG), 78);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_USAGE), 64);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_NOINPUT), 66);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_DATA), 65);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_AUTH), 77);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_PERMANENT), 69);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_PROTOCOL), 76);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_TRANSIENT), 75);
    assert_int_equal(mc_outcome_exit_code(MC_OUTCOME_UNKNOWN), 75);
    /* the enum is ordered by precedence: 78, 64, 66, 65, 77, 69, 76, 75 */
    assert_true(MC_OUTCOME_CONFIG < MC_OUTCOME_USAGE && MC_OUTCOME_USAGE < MC_OUTCOME_NOINPUT
                && MC_OUTCOME_NOINPUT < MC_OUTCOME_DATA && MC_OUTCOME_DATA < MC_OUTCOME_AUTH
                && MC_OUTCOME_AUTH < MC_OUTCOME_PERMANENT
                && MC_OUTCOME_PERMANENT < MC_OUTCOME_PROTOCOL
                && MC_OUTCOME_PROTOCOL < MC_OUTCOME_TRANSIENT
                && MC_OUTCOME_TRANSIENT < MC_OUTCOME_UNKNOWN);
}

static void test_first_error_wins(void **state)
{
    (void)state;
    mc_err *e = NULL;
    assert_int_equal(mc__error_set(&e, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                                   "%s:%d: connection refused", "127.0.0.1", 25), MC_ENET);
    assert_int_equal(mc__error_set(&e, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_EHLO, "later"),
                     MC_EPROTO);
    assert_int_equal(e->code, MC_ENET);
    assert_int_equal(e->stage, MC_STAGE_CONNECT);
    assert_true(e->transient);
    assert_string_equal(e->message, "127.0.0.1:25: connection refused");
    mc_error_free(e);
    /* NULL err: the code still comes back */
    assert_int_equal(mc__error_set(NULL, MC_EAUTH, MC_OUTCOME_AUTH, MC_STAGE_AUTH, "x"), MC_EAUTH);
    mc_error_free(NULL);
}

static void test_reply_enhanced(void **state)
{
    (void)state;
    static const struct { int code; const char *text; const char *enh; bool transient; } t[] = {
        { 535, "5.7.8 Username and Password not accepted.", "5.7.8", false },
        { 432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "4.3.2", true },
        { 550, "5.7.139 Authentication unsuccessful", "5.7.139", false },
        { 250, "2.0.0", "2.0.0", false },
        { 554, "Transaction failed", "", false },
        { 550, "5.7 not a triplet", "", false },
        { 550, "5.1.1234 too many digits", "", false },
        { 421, "9.9.9 not a class", "", true },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        mc_err *e = NULL;
        mc__error_set(&e, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_MAIL, "refused");
        mc__error_reply(e, t[i].code, t[i].text);
        assert_int_equal(e->smtp_code, t[i].code);
        assert_string_equal(e->enhanced, t[i].enh);
        assert_string_equal(e->server_text, t[i].text);
        assert_int_equal(e->transient, t[i].transient);
        mc_error_free(e);
    }
}

static void test_details_hint_rcpts(void **state)
{
    (void)state;
    mc_err *e = NULL;
    mc__error_set(&e, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "two errors");
    assert_int_equal(mc__error_detail(e, "servers[0].port: a"), 0);
    assert_int_equal(mc__error_detail(e, "servers[1].host: b"), 0);
    assert_int_equal(e->n_details, 2);
    assert_string_equal(e->details[1], "servers[1].host: b");
    mc__error_hint(e, "first");
    mc__error_hint(e, "second");
    assert_string_equal(e->hint, "second");
    mc_rcpt_result *r = calloc(1, sizeof(*r));
    r->address = strdup("a@example.test");
    r->smtp_code = 550;
    mc__error_rcpts(e, r, 1);
    assert_int_equal(e->n_rcpts, 1);
    assert_string_equal(e->rcpts[0].address, "a@example.test");
    mc_error_free(e);   /* frees details, hint, rcpts: ASan proves it */
}

static void test_actions(void **state)
{
    (void)state;
    assert_string_equal(mc_action_name(MC_ACTION_NONE), "none");
    assert_string_equal(mc_action_name(MC_ACTION_REAUTHORIZE), "reauthorize");
    assert_string_equal(mc_action_name(MC_ACTION_AUTHORIZE), "authorize");
    assert_string_equal(mc_action_name(MC_ACTION_FIX_CONFIG), "fix-config");
    assert_string_equal(mc_action_name(MC_ACTION_FIX_MESSAGE), "fix-message");
    assert_string_equal(mc_action_name((mc_action)999), "unknown");
    for (int a = MC_ACTION_NONE; a <= MC_ACTION_FIX_MESSAGE; a++)
        assert_string_not_equal(mc_action_name((mc_action)a), "unknown");

    /* the default follows the outcome; set_action overrides, hint copied */
    mc_err *e = NULL;
    mc__error_set(&e, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "x");
    assert_int_equal(e->action, MC_ACTION_FIX_CONFIG);
    mc__error_set_action(&e, MC_ACTION_REAUTHORIZE, "authorize server s again");
    assert_int_equal(e->action, MC_ACTION_REAUTHORIZE);
    assert_string_equal(e->hint, "authorize server s again");
    mc__error_set_action(&e, MC_ACTION_GRANT_CONSENT, NULL);   /* hint kept */
    assert_string_equal(e->hint, "authorize server s again");
    mc_error_free(e);
    e = NULL;
    mc__error_set(&e, MC_EAUTH, MC_OUTCOME_AUTH, MC_STAGE_AUTH, "x");
    assert_int_equal(e->action, MC_ACTION_NONE);
    mc__error_reply(e, 454, "4.7.0 try later");
    assert_int_equal(e->action, MC_ACTION_RETRY_LATER);
    mc_error_free(e);
    mc__error_set_action(NULL, MC_ACTION_FIX_CONFIG, "x");      /* no error: nothing */
}

static void test_diags(void **state)
{
    (void)state;
    mc_err *e = NULL;
    mc__error_set(&e, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "bad");
    static const struct { const char *path; int server; const char *key; } cases[] = {
        { "servers[1].port", 1, "port" },
        { "servers[12].auth.client_id", 12, "auth.client_id" },
        { "servers[0]", 0, "" },
        { "servers[3][\"odd key\"]", 3, "[\"odd key\"]" },
        { "servers", -1, "servers" },
        { "queue.dir", -1, "queue.dir" },
        { "", -1, "" },
        { "servers[x].port", -1, "servers[x].port" },
        { "servers[1]x", -1, "servers[1]x" },
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc__error_diag(e, cases[i].path, "msg"), 0);
    assert_int_equal(e->n_diags, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(e->diags[i].path, cases[i].path);
        assert_int_equal(e->diags[i].server, cases[i].server);
        assert_string_equal(e->diags[i].key, cases[i].key);
        assert_string_equal(e->diags[i].message, "msg");
    }
    mc_error_free(e);   /* frees the diags: ASan proves it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_reply_enhanced),
        cmocka_unit_test(test_details_hint_rcpts),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_diags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
