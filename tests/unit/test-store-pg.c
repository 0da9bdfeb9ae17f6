/* store-postgresql's record encryption and key parsing (plugins/
 * store-postgresql/pgcrypt.c, issue 14): AES-256-GCM round trip, the
 * identity (every field, and the namespace) bound as associated data, a
 * wrong key or an altered byte refused (never garbage), a fresh nonce per
 * seal; keys as hex or base64 (with or without padding, URL-safe), 32
 * bytes exactly, blanks and the newline ignored; key ids. No database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pgcrypt.h"

static const char *const ID[] = { "default", "gmail", "google", "public", "u@example.org",
                                  "https://127.0.0.1/token" };

static uint8_t *aad(const char *const f[6], size_t *n)
{
    return pgc_aad_token(f[0], f[1], f[2], f[3], f[4], f[5], n);
}

static void key_of(uint8_t k[PGC_KEY_LEN], uint8_t fill)
{
    for (int i = 0; i < PGC_KEY_LEN; i++)
        k[i] = (uint8_t)(fill + i);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t k[PGC_KEY_LEN];
    key_of(k, 1);
    const char rec[] = "{\"access_token\":\"ya29.secret-access\",\"refresh_token\":\"1//rt\"}";
    size_t an = 0, sn = 0, pn = 0;
    uint8_t *a = aad(ID, &an), *sealed = NULL;
    char *plain = NULL;
    assert_non_null(a);
    assert_int_equal(pgc_seal(k, a, an, (const uint8_t *)rec, strlen(rec), &sealed, &sn), 0);
    assert_int_equal(sn, strlen(rec) + PGC_OVERHEAD);
    assert_int_equal(sealed[0], PGC_VERSION);
    assert_null(memmem(sealed, sn, "secret-access", 13));   /* not in clear */
    assert_int_equal(pgc_open(k, a, an, sealed, sn, &plain, &pn), 0);
    assert_int_equal(pn, strlen(rec));
    assert_string_equal(plain, rec);
    free(plain);

    /* a second seal of the same record: another nonce, other bytes */
    uint8_t *again = NULL;
    size_t gn = 0;
    assert_int_equal(pgc_seal(k, a, an, (const uint8_t *)rec, strlen(rec), &again, &gn), 0);
    assert_memory_not_equal(sealed + 1, again + 1, PGC_NONCE_LEN);
    free(again);

    /* an empty record seals too */
    assert_int_equal(pgc_seal(k, a, an, (const uint8_t *)"", 0, &again, &gn), 0);
    assert_int_equal(pgc_open(k, a, an, again, gn, &plain, &pn), 0);
    assert_int_equal(pn, 0);
    free(plain);
    free(again);
    free(sealed);
    free(a);
}

static void test_identity_bound(void **state)
{
    (void)state;
    uint8_t k[PGC_KEY_LEN];
    key_of(k, 7);
    size_t an = 0, sn = 0, pn = 0;
    uint8_t *a = aad(ID, &an), *sealed = NULL;
    assert_int_equal(pgc_seal(k, a, an, (const uint8_t *)"record", 6, &sealed, &sn), 0);
    /* every field of the identity, and the namespace, matters */
    for (int f = 0; f < 6; f++) {
        const char *other[6];
        memcpy(other, ID, sizeof(other));
        other[f] = "someone-else";
        size_t on = 0;
        uint8_t *oa = aad(other, &on);
        char *plain = (char *)"untouched";
        assert_int_equal(pgc_open(k, oa, on, sealed, sn, &plain, &pn), -2);
        assert_null(plain);   /* never garbage */
        free(oa);
    }
    /* fields cannot run into each other ("ab","c" vs "a","bc") */
    size_t n1 = 0, n2 = 0;
    uint8_t *a1 = pgc_aad_token("ab", "c", "", "", "", "", &n1),
            *a2 = pgc_aad_token("a", "bc", "", "", "", "", &n2);
    assert_false(n1 == n2 && memcmp(a1, a2, n1) == 0);
    free(a1);
    free(a2);
    /* the pending authorization's data is another domain */
    size_t pa = 0;
    uint8_t *p = pgc_aad_pending("default", "gmail", &pa);
    char *plain = NULL;
    assert_int_equal(pgc_open(k, p, pa, sealed, sn, &plain, &pn), -2);
    free(p);
    /* a wrong key, an altered byte anywhere, a short or foreign record */
    uint8_t k2[PGC_KEY_LEN];
    key_of(k2, 8);
    assert_int_equal(pgc_open(k2, a, an, sealed, sn, &plain, &pn), -2);
    for (size_t i = 1; i < sn; i++) {
        sealed[i] ^= 0x01;
        assert_int_equal(pgc_open(k, a, an, sealed, sn, &plain, &pn), -2);
        assert_null(plain);
        sealed[i] ^= 0x01;
    }
    assert_int_equal(pgc_open(k, a, an, sealed, PGC_OVERHEAD - 1, &plain, &pn), -1);
    sealed[0] = 2;
    assert_int_equal(pgc_open(k, a, an, sealed, sn, &plain, &pn), -1);
    sealed[0] = PGC_VERSION;
    assert_int_equal(pgc_open(k, a, an, sealed, sn, &plain, &pn), 0);
    free(plain);
    free(sealed);
    free(a);
}

static void test_keys(void **state)
{
    (void)state;
    uint8_t k[PGC_KEY_LEN], want[PGC_KEY_LEN];
    for (int i = 0; i < PGC_KEY_LEN; i++)
        want[i] = (uint8_t)i;
    const char *why = NULL;
    /* hex, either case, with the file's newline and blanks */
    assert_int_equal(pgc_parse_key("000102030405060708090a0b0c0d0e0f"
                                   "101112131415161718191A1B1C1D1E1F\n", k, &why), 0);
    assert_memory_equal(k, want, PGC_KEY_LEN);
    /* base64 of the same bytes, padded, unpadded, and URL-safe */
    assert_int_equal(pgc_parse_key("  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n", k, &why), 0);
    assert_memory_equal(k, want, PGC_KEY_LEN);
    assert_int_equal(pgc_parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", k, &why), 0);
    assert_memory_equal(k, want, PGC_KEY_LEN);
    for (int i = 0; i < PGC_KEY_LEN; i++)
        want[i] = 0xfb;
    assert_int_equal(pgc_parse_key("-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s=", k, &why), 0);
    assert_memory_equal(k, want, PGC_KEY_LEN);
    /* not 32 bytes, not a key */
    const char *bad[] = { "", "\n", "00", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
                          "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00",
                          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",   /* 31 bytes */
                          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", /* 34 */
                          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",     /* bits left */
                          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd*h8=",
                          "correct horse battery staple correct horse battery staple 1234",
                          NULL };
    for (int i = 0; bad[i]; i++) {
        why = NULL;
        assert_int_equal(pgc_parse_key(bad[i], k, &why), -1);
        assert_non_null(why);
    }
    assert_int_equal(pgc_parse_key(NULL, k, NULL), -1);
}

static void test_key_ids(void **state)
{
    (void)state;
    uint8_t a[PGC_KEY_LEN], b[PGC_KEY_LEN];
    key_of(a, 1);
    key_of(b, 2);
    char ia[PGC_KEYID_MAX + 1], ia2[PGC_KEYID_MAX + 1], ib[PGC_KEYID_MAX + 1];
    pgc_key_id(a, ia);
    pgc_key_id(a, ia2);
    pgc_key_id(b, ib);
    assert_int_equal(strlen(ia), 13);
    assert_int_equal(ia[0], 'k');
    assert_string_equal(ia, ia2);
    assert_string_not_equal(ia, ib);
    assert_true(pgc_key_id_ok(ia));
    assert_true(pgc_key_id_ok("2026-12.prod_key"));
    assert_false(pgc_key_id_ok(""));
    assert_false(pgc_key_id_ok("has space"));
    assert_false(pgc_key_id_ok("quote'"));
    assert_false(pgc_key_id_ok(NULL));
    char longid[80];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[79] = '\0';
    assert_false(pgc_key_id_ok(longid));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_identity_bound),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_key_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
