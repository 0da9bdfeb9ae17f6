/* test-address: RFC 5321 mailbox validation, header mailbox extraction,
 * address lists (groups, quoted commas, comments). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

typedef struct addr_case {
    const char *addr;
    bool        allow_bare;
    bool        valid;
} addr_case;

static const char LONG_LOCAL_64[] =
    "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff1234";
static const char LONG_LOCAL_65[] =
    "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff12345";

static void test_check_table(void **state)
{
    (void)state;
    static const addr_case cases[] = {
        /* valid */
        { "user@example.com", false, true },
        { "first.last@example.com", false, true },
        { "user+tag@example.com", false, true },
        { "x@y", false, true },
        { "!#$%&'*+-/=?^_`{|}~@example.org", false, true },
        { "\"john doe\"@example.com", false, true },
        { "\"a\\\"b\"@example.com", false, true },
        { "user@[192.168.0.1]", false, true },
        { "user@[IPv6:2001:db8::1]", false, true },
        { "user@sub-domain.example.co.uk", false, true },
        { "用户@例子.广告", false, true },
        { "jörg@müller.de", false, true },
        { "root", true, true },
        { "john.doe", true, true },
        { "UPPER@EXAMPLE.COM", false, true },
        { "user@localhost", false, true },
        /* invalid */
        { "root", false, false },
        { "", false, false },
        { "@example.com", false, false },
        { "user@", false, false },
        { ".user@example.com", false, false },
        { "user.@example.com", false, false },
        { "us..er@example.com", false, false },
        { "us er@example.com", false, false },
        { "user@exa mple.com", false, false },
        { "<user@example.com>", false, false },
        { "user@example.com\r\nRCPT TO:<evil@x>", false, false },
        { "user\n@example.com", false, false },
        { "user@-example.com", false, false },
        { "user@example-.com", false, false },
        { "user@example..com", false, false },
        { "user@example.com.", false, false },
        { "user@[300.1.1.1]", false, false },
        { "user@[IPv6:zz::1]", false, false },
        { "user@[1.2.3.4", false, false },
        { "\"unterminated@example.com", false, false },
        { "\"quoted\"x@example.com", false, false },
        { "a(b)@example.com", false, false },
        { "user@exam_ple.com", false, false },
        { "\xff\xfe@example.com", false, false },
        { "user@ex\xc3(.com", false, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mc_err *err = NULL;
        int rc = mc__address_check(cases[i].addr, cases[i].allow_bare, &err);
        if (cases[i].valid) {
            if (rc != 0)
                fail_msg("\"%s\" should be valid: %s", cases[i].addr, err ? err->message : "");
            assert_null(err);
        } else {
            if (rc != MC_EMESSAGE)
                fail_msg("\"%s\" should be refused (rc %d)", cases[i].addr, rc);
            assert_non_null(err);
            assert_int_equal(err->code, MC_EMESSAGE);
            assert_int_equal(err->outcome, MC_OUTCOME_DATA);
            assert_int_equal(err->stage, MC_STAGE_MESSAGE);
            /* the message is one line even when the address held a line break */
            assert_null(strpbrk(err->message, "\r\n"));
            mc_error_free(err);
        }
    }
}

static void test_check_lengths(void **state)
{
    (void)state;
    char buf[400];
    snprintf(buf, sizeof(buf), "%s@example.com", LONG_LOCAL_64);
    assert_int_equal(mc__address_check(buf, false, NULL), 0);
    snprintf(buf, sizeof(buf), "%s@example.com", LONG_LOCAL_65);
    assert_int_equal(mc__address_check(buf, false, NULL), MC_EMESSAGE);

    /* a 63-octet label passes, 64 does not */
    char label[70];
    memset(label, 'a', 64);
    label[63] = '\0';
    snprintf(buf, sizeof(buf), "u@%s.com", label);
    assert_int_equal(mc__address_check(buf, false, NULL), 0);
    label[63] = 'a';
    label[64] = '\0';
    snprintf(buf, sizeof(buf), "u@%s.com", label);
    assert_int_equal(mc__address_check(buf, false, NULL), MC_EMESSAGE);

    /* total 254 passes, 255 does not: u@ + 4 labels */
    char dom[300];
    memset(label, 'b', 63);
    label[63] = '\0';
    /* 2 + 63*3 + 3 dots + 60 = 254 */
    snprintf(dom, sizeof(dom), "%s.%s.%s.%.*s", label, label, label, 60, label);
    snprintf(buf, sizeof(buf), "u@%s", dom);
    assert_int_equal(strlen(buf), 254);
    assert_int_equal(mc__address_check(buf, false, NULL), 0);
    snprintf(dom, sizeof(dom), "%s.%s.%s.%.*s", label, label, label, 61, label);
    snprintf(buf, sizeof(buf), "u@%s", dom);
    assert_int_equal(strlen(buf), 255);
    assert_int_equal(mc__address_check(buf, false, NULL), MC_EMESSAGE);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(mc__address_utf8("jörg@example.com"));
    assert_true(mc__address_utf8("user@例子.广告"));
    assert_false(mc__address_utf8("user@example.com"));
}

static void test_extract(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } ok[] = {
        { "John Doe <john@example.com>", "john@example.com" },
        { "\"Doe, John\" <john@example.com>", "john@example.com" },
        { "john@example.com (John Doe)", "john@example.com" },
        { "<john@example.com>", "john@example.com" },
        { "  john@example.com  ", "john@example.com" },
        { "root (Cron Daemon)", "root" },
        { "=?UTF-8?B?SsO2cmc=?= <jorg@example.com>", "jorg@example.com" },
        { "Name (comment) <a@b.example> (trailing)", "a@b.example" },
        { "<@relay.example:user@example.com>", "user@example.com" },
        { "\"john doe\"@example.com", "\"john doe\"@example.com" },
        { "\"Who <me>\" <me@example.com>", "me@example.com" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *a = NULL;
        mc_err *err = NULL;
        int rc = mc__address_extract(ok[i].in, &a, &err);
        if (rc != 0)
            fail_msg("extract \"%s\": %s", ok[i].in, err ? err->message : "?");
        assert_string_equal(a, ok[i].out);
        free(a);
    }
    static const char *const bad[] = {
        "John <john@example.com", "", "   ", "(only a comment)", "a@b c@d",
        "Name <bad@@example.com>", "\"open quote <a@b.example>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *a = NULL;
        mc_err *err = NULL;
        int rc = mc__address_extract(bad[i], &a, &err);
        if (rc != MC_EMESSAGE)
            fail_msg("extract \"%s\" should fail, got %d", bad[i], rc);
        assert_null(a);
        assert_non_null(err);
        mc_error_free(err);
    }
}

typedef struct list {
    char  *v[16];
    size_t n;
} list;

static int collect(void *payload, const char *addr)
{
    list *l = payload;
    if (l->n >= 16)
        return -1;
    l->v[l->n++] = strdup(addr);
    return 0;
}

static void list_free(list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static void test_list(void **state)
{
    (void)state;
    list l = { .n = 0 };
    assert_int_equal(mc__address_list("\"Doe, John\" <john@example.com>, "
                                      "jane@example.com (Jane, J.), <x@example.org>",
                                      collect, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "john@example.com");
    assert_string_equal(l.v[1], "jane@example.com");
    assert_string_equal(l.v[2], "x@example.org");
    list_free(&l);

    /* groups: an empty one yields nothing, members of a named one count */
    assert_int_equal(mc__address_list("undisclosed-recipients:;", collect, &l, NULL), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(mc__address_list("Team: a@example.com, \"B, b\" <b@example.com>;, "
                                      "c@example.com", collect, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "a@example.com");
    assert_string_equal(l.v[1], "b@example.com");
    assert_string_equal(l.v[2], "c@example.com");
    list_free(&l);

    /* empty elements and a bare local name (aliases resolve it later) */
    assert_int_equal(mc__address_list(" , root ,, admin@example.com ,", collect, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0], "root");
    assert_string_equal(l.v[1], "admin@example.com");
    list_free(&l);

    /* a bad element fails the list with its reason */
    mc_err *err = NULL;
    assert_int_equal(mc__address_list("a@example.com, b@@example.com", collect, &l, &err),
                     MC_EMESSAGE);
    assert_non_null(err);
    assert_non_null(strstr(err->message, "b@@example.com"));
    mc_error_free(err);
    list_free(&l);
}

static int stop_at_first(void *payload, const char *addr)
{
    (void)addr;
    (*(int *)payload)++;
    return -42;
}

static void test_list_callback_error(void **state)
{
    (void)state;
    int calls = 0;
    assert_int_equal(mc__address_list("a@x.example, b@x.example", stop_at_first, &calls, NULL),
                     -42);
    assert_int_equal(calls, 1);
}

static void test_mailbox_span(void **state)
{
    (void)state;
    size_t off, len;
    bool angle;
    const char *s = "Cron Daemon <root>";
    assert_int_equal(mc__mailbox_span(s, strlen(s), &off, &len, &angle), 0);
    assert_true(angle);
    assert_int_equal(off, 13);
    assert_int_equal(len, 4);
    s = "root (Cron Daemon)";
    assert_int_equal(mc__mailbox_span(s, strlen(s), &off, &len, &angle), 0);
    assert_false(angle);
    assert_int_equal(off, 0);
    assert_int_equal(len, 4);
    s = "  (c) \"a b\"@x.example  (d) ";
    assert_int_equal(mc__mailbox_span(s, strlen(s), &off, &len, &angle), 0);
    assert_int_equal(off, 6);
    assert_int_equal(len, strlen("\"a b\"@x.example"));
}

/* ------------------------------------ public calls (issue 10) */

static int collect_pub(const char *addr, void *payload)
{
    list *l = payload;
    if (l->n >= sizeof(l->v) / sizeof(l->v[0]))
        return -1;
    l->v[l->n++] = strdup(addr);
    return 0;
}

static int stop_second(const char *addr, void *payload)
{
    list *l = payload;
    l->v[l->n++] = strdup(addr);
    return l->n == 2 ? 7 : 0;
}

static void test_list_split(void **state)
{
    (void)state;
    list l = { .n = 0 };
    assert_int_equal(mc_address_list_split("\"Doe, John\" <john@example.com>, jane@example.com "
                                           "(Jane, J.), Team: a@example.com, <b@example.com>;, "
                                           "undisclosed-recipients:;, root,,",
                                           collect_pub, &l, NULL), 0);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[0], "john@example.com");
    assert_string_equal(l.v[1], "jane@example.com");
    assert_string_equal(l.v[2], "a@example.com");
    assert_string_equal(l.v[3], "b@example.com");
    assert_string_equal(l.v[4], "root");
    list_free(&l);
    /* nothing to split: no call */
    assert_int_equal(mc_address_list_split(NULL, collect_pub, &l, NULL), 0);
    assert_int_equal(mc_address_list_split("", collect_pub, &l, NULL), 0);
    assert_int_equal(l.n, 0);
    /* the callback's non-zero value stops it and is returned */
    assert_int_equal(mc_address_list_split("a@x.example, b@x.example, c@x.example", stop_second,
                                           &l, NULL), 7);
    assert_int_equal(l.n, 2);
    list_free(&l);
    /* a bad element: MC_EMESSAGE after the good ones before it */
    mc_err *err = NULL;
    assert_int_equal(mc_address_list_split("a@example.com, b@@example.com, c@example.com",
                                           collect_pub, &l, &err), MC_EMESSAGE);
    assert_int_equal(l.n, 1);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    assert_non_null(strstr(err->message, "b@@example.com"));
    mc_error_free(err);
    list_free(&l);
    err = NULL;
    assert_int_equal(mc_address_list_split("\"open, a@example.com", collect_pub, &l, &err),
                     MC_EMESSAGE);
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_address_list_split("a@example.com", NULL, NULL, &err), MC_EINVAL);
    assert_int_equal(err->outcome, MC_OUTCOME_USAGE);
    mc_error_free(err);
}

static void test_mailbox_parse(void **state)
{
    (void)state;
    static const struct { const char *in, *addr, *name; } ok[] = {
        { "a@example.com", "a@example.com", NULL },
        { "  a@example.com  ", "a@example.com", NULL },
        { "a@example.com (Comment Name)", "a@example.com", NULL },
        { "<a@example.com>", "a@example.com", NULL },
        { "Name <a@example.com>", "a@example.com", "Name" },
        { "  Two   Words\t<a@example.com> ", "a@example.com", "Two Words" },
        { "\"Doe, John\" <a@example.com>", "a@example.com", "Doe, John" },
        { "\"say \\\"hi\\\"\" <a@example.com>", "a@example.com", "say \"hi\"" },
        { "John (the) \"Q.\" Public <a@example.com> (work)", "a@example.com", "John Q. Public" },
        { "J\xc3\xb6rg <j@example.com>", "j@example.com", "J\xc3\xb6rg" },
        { "Robot <robot>", "robot", "Robot" },
        { "\"\" <a@example.com>", "a@example.com", NULL },
        { "Route <@relay.example:a@example.com>", "a@example.com", "Route" },
        { "\"x <y>\" <a@example.com>", "a@example.com", "x <y>" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *addr = NULL, *name = (char *)"unset";
        mc_err *err = NULL;
        if (mc_mailbox_parse(&addr, &name, ok[i].in, &err) != 0)
            fail_msg("%s: %s", ok[i].in, err ? err->message : "?");
        assert_string_equal(addr, ok[i].addr);
        if (ok[i].name)
            assert_string_equal(name, ok[i].name);
        else if (name)
            fail_msg("%s: name \"%s\"", ok[i].in, name);
        free(addr);
        free(name);
        /* without the name output */
        assert_int_equal(mc_mailbox_parse(&addr, NULL, ok[i].in, NULL), 0);
        assert_string_equal(addr, ok[i].addr);
        free(addr);
    }
    static const char *const bad[] = {
        "", "<>", "Name <>", "a@example.com, b@example.com", "A <a@example.com>, B <b@example.com>",
        "A <a@example.com> trailing", "Name <a@example.com", "\"open <a@example.com>",
        "Name <a@example.com>\r\nBcc: x@example.com", "a@@example.com", "(open a@example.com",
        "Name <a@example.com> (open",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *addr = (char *)"unset", *name = (char *)"unset";
        mc_err *err = NULL;
        if (mc_mailbox_parse(&addr, &name, bad[i], &err) != MC_EMESSAGE)
            fail_msg("%s passed", bad[i]);
        assert_null(addr);
        assert_null(name);
        assert_int_equal(err->outcome, MC_OUTCOME_DATA);
        assert_int_equal(err->stage, MC_STAGE_MESSAGE);
        mc_error_free(err);
    }
    char *addr = NULL;
    assert_int_equal(mc_mailbox_parse(NULL, NULL, "a@example.com", NULL), MC_EINVAL);
    assert_int_equal(mc_mailbox_parse(&addr, NULL, NULL, NULL), MC_EINVAL);
    assert_null(addr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_table),
        cmocka_unit_test(test_check_lengths),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_list_callback_error),
        cmocka_unit_test(test_mailbox_span),
        cmocka_unit_test(test_list_split),
        cmocka_unit_test(test_mailbox_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
