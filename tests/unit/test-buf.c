/* buf: growth, formatting, consuming, detaching; strict base64. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"

static void test_grow_put_printf(void **state)
{
    (void)state;
    mc__buf b = MC__BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(mc__buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    assert_non_null(strstr(b.data, ",999,"));
    assert_int_equal(mc__buf_put(&b, "\0x", 2), 0);   /* binary bytes count */
    assert_int_equal(b.data[b.len], '\0');
    mc__buf_consume(&b, 4);
    assert_memory_equal(b.data, "2,3,", 4);
    mc__buf_consume(&b, b.len + 10);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    mc__buf_puts(&b, "kept");
    char *s = mc__buf_detach(&b);
    assert_string_equal(s, "kept");
    assert_null(b.data);
    free(s);
    mc__buf empty = MC__BUF_INIT;
    s = mc__buf_detach(&empty);   /* never NULL: an empty string */
    assert_string_equal(s, "");
    free(s);
    mc__buf_free(&b);
}

static void test_secret_buffer(void **state)
{
    (void)state;
    mc__buf b = MC__BUF_INIT;
    b.secret = true;
    for (int i = 0; i < 100; i++)
        mc__buf_puts(&b, "secret-");
    assert_int_equal(b.len, 700);
    mc__buf_clear(&b);
    assert_int_equal(b.len, 0);
    mc__buf_free(&b);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct { const char *plain; const char *b64; } v[] = {   /* RFC 4648 §10 */
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        mc__buf e = MC__BUF_INIT, d = MC__BUF_INIT;
        assert_int_equal(mc__base64_encode(&e, v[i].plain, strlen(v[i].plain)), 0);
        assert_string_equal(e.data, v[i].b64);
        assert_int_equal(mc__base64_decode(&d, v[i].b64, strlen(v[i].b64)), 0);
        assert_int_equal(d.len, strlen(v[i].plain));
        assert_memory_equal(d.data ? d.data : "", v[i].plain, d.len);
        mc__buf_free(&e);
        mc__buf_free(&d);
    }
    static const char *const bad[] = { "Zg=", "Zg==Zg==", "Z===", "Zm9v\n", "Zm 9", "Zm9*", "=Zm9" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mc__buf d = MC__BUF_INIT;
        assert_int_equal(mc__base64_decode(&d, bad[i], strlen(bad[i])), MC_EPROTO);
        mc__buf_free(&d);
    }
    /* binary round trip, every byte value */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    mc__buf e = MC__BUF_INIT, d = MC__BUF_INIT;
    assert_int_equal(mc__base64_encode(&e, all, sizeof(all)), 0);
    assert_int_equal(mc__base64_decode(&d, e.data, e.len), 0);
    assert_int_equal(d.len, sizeof(all));
    assert_memory_equal(d.data, all, sizeof(all));
    mc__buf_free(&e);
    mc__buf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_put_printf),
        cmocka_unit_test(test_secret_buffer),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
