/* sasl: the SASL encodings byte for byte (PROVIDERS.md, RFC 4616, 7628),
 * the XOAUTH2 / OAUTHBEARER failure JSON, and the choice of mechanism. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sasl.h"

/* Decode out (base64) and compare with the expected raw bytes. */
static void assert_decodes_to(const mc__buf *out, const char *raw, size_t raw_len)
{
    assert_non_null(out->data);
    mc__buf dec = MC__BUF_INIT;
    assert_int_equal(mc__base64_decode(&dec, out->data, out->len), 0);
    assert_int_equal(dec.len, raw_len);
    assert_memory_equal(dec.data, raw, raw_len);
    mc__buf_free(&dec);
}

static void test_plain_encoding(void **state)
{
    (void)state;
    mc__buf out = MC__BUF_INIT;
    assert_int_equal(mc__sasl_plain(&out, "user", "secret"), 0);
    static const char raw[] = "\0user\0secret";
    assert_decodes_to(&out, raw, sizeof(raw) - 1);
    assert_string_equal(out.data, "AHVzZXIAc2VjcmV0");
    assert_true(out.secret);   /* wiped on free */
    mc__buf_free(&out);

    /* empty password and a non-ASCII user are encoded as given */
    assert_int_equal(mc__sasl_plain(&out, "j\xc3\xb6rg", ""), 0);
    static const char raw2[] = "\0j\xc3\xb6rg\0";
    assert_decodes_to(&out, raw2, sizeof(raw2) - 1);
    mc__buf_free(&out);

    assert_int_equal(mc__sasl_plain(&out, NULL, "x"), MC_EINVAL);
    mc__buf_free(&out);
}

static void test_xoauth2_encoding(void **state)
{
    (void)state;
    mc__buf out = MC__BUF_INIT;
    assert_int_equal(mc__sasl_xoauth2(&out, "me@example.com", "tok123"), 0);
    static const char raw[] = "user=me@example.com\x01" "auth=Bearer tok123\x01\x01";
    assert_decodes_to(&out, raw, sizeof(raw) - 1);
    assert_string_equal(out.data,
                        "dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sxMjMBAQ==");
    assert_true(out.secret);
    mc__buf_free(&out);
}

static void test_oauthbearer_encoding(void **state)
{
    (void)state;
    mc__buf out = MC__BUF_INIT;
    assert_int_equal(mc__sasl_oauthbearer(&out, "me@example.com", "smtp.example.com", 587,
                                          "tok123"), 0);
    static const char raw[] =
        "n,a=me@example.com,\x01host=smtp.example.com\x01port=587\x01" "auth=Bearer tok123\x01\x01";
    assert_decodes_to(&out, raw, sizeof(raw) - 1);
    assert_string_equal(out.data, "bixhPW1lQGV4YW1wbGUuY29tLAFob3N0PXNtdHAuZXhhbXBsZS5jb20B"
                                  "cG9ydD01ODcBYXV0aD1CZWFyZXIgdG9rMTIzAQE=");
    assert_true(out.secret);
    mc__buf_free(&out);
}

static void test_oauthbearer_user_escaping(void **state)
{
    (void)state;
    mc__buf out = MC__BUF_INIT;
    /* RFC 5801: ',' -> =2C, '=' -> =3D in the authzid */
    assert_int_equal(mc__sasl_oauthbearer(&out, "a,b=c@x", "h", 465, "t"), 0);
    static const char raw[] = "n,a=a=2Cb=3Dc@x,\x01host=h\x01port=465\x01" "auth=Bearer t\x01\x01";
    assert_decodes_to(&out, raw, sizeof(raw) - 1);
    mc__buf_free(&out);
}

static void test_parse_failure_gmail(void **state)
{
    (void)state;
    mc__sasl_failure f;
    assert_int_equal(mc__sasl_parse_failure(
        "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
        &f), 0);
    assert_string_equal(f.status, "400");
    assert_string_equal(f.schemes, "Bearer");
    assert_string_equal(f.scope, "https://mail.google.com/");
    mc__sasl_failure_free(&f);
    assert_null(f.status);

    /* a trailing CRLF / space from the reply line is tolerated */
    assert_int_equal(mc__sasl_parse_failure(
        "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ== \r\n",
        &f), 0);
    assert_string_equal(f.status, "401");
    mc__sasl_failure_free(&f);
}

/* base64 of a JSON text, for the cases below */
static char *b64(const char *s)
{
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__base64_encode(&b, s, strlen(s)), 0);
    return mc__buf_detach(&b);
}

static void test_parse_failure_garbage(void **state)
{
    (void)state;
    mc__sasl_failure f;
    /* not base64 */
    assert_int_equal(mc__sasl_parse_failure("!!!not base64!!!", &f), MC_EPROTO);
    assert_null(f.status);
    assert_int_equal(mc__sasl_parse_failure("", &f), MC_EPROTO);
    assert_int_equal(mc__sasl_parse_failure(NULL, &f), MC_EPROTO);

    static const char *const bad_json[] = {
        "not json",
        "[1,2,3]",                         /* not an object */
        "\"status\"",
        "{\"status\":\"401\"} trailing",   /* garbage after the object */
        "{'status':'401'}",                /* strict mode: no single quotes */
        "{\"status\":\"401\",}",           /* strict mode: no trailing comma */
        "{\"status\":\"4",                 /* truncated */
    };
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        char *enc = b64(bad_json[i]);
        int rc = mc__sasl_parse_failure(enc, &f);
        if (rc != MC_EPROTO)
            fail_msg("accepted %s", bad_json[i]);
        assert_null(f.status);
        free(enc);
    }

    /* members of the wrong type are absent, not misread; numbers are text */
    char *enc = b64("{\"status\":401,\"scope\":{\"a\":1},\"schemes\":[\"Bearer\"]}");
    assert_int_equal(mc__sasl_parse_failure(enc, &f), 0);
    assert_string_equal(f.status, "401");
    assert_null(f.scope);
    assert_null(f.schemes);
    mc__sasl_failure_free(&f);
    free(enc);

    /* an empty object is fine: every member absent */
    enc = b64("{}");
    assert_int_equal(mc__sasl_parse_failure(enc, &f), 0);
    assert_null(f.status);
    assert_null(f.scope);
    mc__sasl_failure_free(&f);
    free(enc);
}

static void test_choose(void **state)
{
    (void)state;
    static const char *const basic[] = { "PLAIN", "LOGIN", NULL };
    static const char *const oauth[] = { "XOAUTH2", "OAUTHBEARER", NULL };

    /* the provider's order wins over the server's */
    assert_string_equal(mc__sasl_choose(basic, "LOGIN PLAIN XOAUTH2", NULL), "PLAIN");
    assert_string_equal(mc__sasl_choose(oauth, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
                                        NULL), "XOAUTH2");
    assert_string_equal(mc__sasl_choose(oauth, "OAUTHBEARER", NULL), "OAUTHBEARER");
    /* Microsoft after STARTTLS: LOGIN XOAUTH2 only */
    assert_string_equal(mc__sasl_choose(basic, "LOGIN XOAUTH2", NULL), "LOGIN");
    /* any case, whole words only */
    assert_string_equal(mc__sasl_choose(basic, "cram-md5 login", NULL), "LOGIN");
    assert_null(mc__sasl_choose(basic, "PLAINX XLOGIN PLAIN-CLIENTTOKEN", NULL));
    /* none in common */
    assert_null(mc__sasl_choose(basic, "XOAUTH2 CRAM-MD5", NULL));
    assert_null(mc__sasl_choose(basic, "", NULL));
    assert_null(mc__sasl_choose(basic, NULL, NULL));

    /* forced: that one only */
    assert_string_equal(mc__sasl_choose(basic, "PLAIN LOGIN", "LOGIN"), "LOGIN");
    assert_string_equal(mc__sasl_choose(basic, "PLAIN LOGIN", "login"), "LOGIN");
    assert_null(mc__sasl_choose(basic, "PLAIN", "LOGIN"));            /* not offered */
    assert_null(mc__sasl_choose(basic, "PLAIN XOAUTH2", "XOAUTH2"));  /* provider can't feed it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_encoding),
        cmocka_unit_test(test_xoauth2_encoding),
        cmocka_unit_test(test_oauthbearer_encoding),
        cmocka_unit_test(test_oauthbearer_user_escaping),
        cmocka_unit_test(test_parse_failure_gmail),
        cmocka_unit_test(test_parse_failure_garbage),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests_name("sasl", tests, NULL, NULL);
}
