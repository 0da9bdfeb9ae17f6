/* pgcrypt: see pgcrypt.h. */
#include "pgcrypt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

static const char bad_len[] = "must be 32 bytes: 64 hex digits or 44 characters of base64 "
                              "(openssl rand -base64 32)";

int pgc_parse_key(const char *text, uint8_t key[PGC_KEY_LEN], const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = bad_len;
    if (!text)
        return -1;
    const char *s = text, *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    size_t n = (size_t)(e - s);
    uint8_t out[PGC_KEY_LEN];
    if (n == 2 * PGC_KEY_LEN) {
        bool hex = true;
        for (size_t i = 0; i < PGC_KEY_LEN && hex; i++) {
            int h = hexval((unsigned char)s[2 * i]), l = hexval((unsigned char)s[2 * i + 1]);
            if (h < 0 || l < 0)
                hex = false;
            else
                out[i] = (uint8_t)(h << 4 | l);
        }
        if (hex) {
            memcpy(key, out, PGC_KEY_LEN);
            OPENSSL_cleanse(out, sizeof(out));
            return 0;
        }
    }
    /* base64: 43 characters, or 44 with one '=' */
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n != 43) {
        OPENSSL_cleanse(out, sizeof(out));
        return -1;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            *why = "is neither hex nor base64";
            OPENSSL_cleanse(out, sizeof(out));
            acc = 0;
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < PGC_KEY_LEN)
                out[o] = (uint8_t)(acc >> bits);
            o++;
        }
    }
    bool ok = o == PGC_KEY_LEN && (acc & ((1u << bits) - 1)) == 0;
    if (ok)
        memcpy(key, out, PGC_KEY_LEN);
    OPENSSL_cleanse(out, sizeof(out));
    acc = 0;
    return ok ? 0 : -1;
}

void pgc_key_id(const uint8_t key[PGC_KEY_LEN], char out[PGC_KEYID_MAX + 1])
{
    static const char label[] = "mailconn token key";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(c, label, sizeof(label) - 1) == 1 &&
              EVP_DigestUpdate(c, key, PGC_KEY_LEN) == 1 && EVP_DigestFinal_ex(c, md, &mdlen) == 1;
    EVP_MD_CTX_free(c);
    if (!ok) {
        snprintf(out, PGC_KEYID_MAX + 1, "k-unknown");
        return;
    }
    out[0] = 'k';
    for (int i = 0; i < 6; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", md[i]);
}

bool pgc_key_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PGC_KEYID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static uint8_t *aad_build(const char *const *f, size_t nf, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < nf; i++)
        total += 4 + (f[i] ? strlen(f[i]) : 0);
    uint8_t *b = malloc(total ? total : 1), *p = b;
    if (!b)
        return NULL;
    for (size_t i = 0; i < nf; i++) {
        size_t n = f[i] ? strlen(f[i]) : 0;
        p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8),
        p[3] = (uint8_t)n;
        if (n)
            memcpy(p + 4, f[i], n);
        p += 4 + n;
    }
    *len = total;
    return b;
}

uint8_t *pgc_aad_token(const char *namespace_, const char *server, const char *provider,
                       const char *client_id, const char *user, const char *token_url,
                       size_t *len)
{
    const char *f[] = { "mailconn-token-v1", namespace_, server, provider, client_id, user,
                        token_url };
    return aad_build(f, sizeof(f) / sizeof(f[0]), len);
}

uint8_t *pgc_aad_pending(const char *namespace_, const char *state, size_t *len)
{
    const char *f[] = { "mailconn-pending-v1", namespace_, state };
    return aad_build(f, sizeof(f) / sizeof(f[0]), len);
}

int pgc_seal(const uint8_t key[PGC_KEY_LEN], const uint8_t *aad, size_t aad_len,
             const uint8_t *plain, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len > (size_t)1 << 30 || aad_len > (size_t)1 << 20)
        return -1;
    uint8_t *b = malloc(len + PGC_OVERHEAD);
    if (!b)
        return -1;
    b[0] = PGC_VERSION;
    uint8_t *nonce = b + 1, *ct = b + 1 + PGC_NONCE_LEN, *tag = ct + len;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = c && RAND_bytes(nonce, PGC_NONCE_LEN) == 1 &&
              EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, PGC_NONCE_LEN, NULL) == 1 &&
              EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
              (aad_len == 0 || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
              (len == 0 || EVP_EncryptUpdate(c, ct, &n, plain, (int)len) == 1) &&
              EVP_EncryptFinal_ex(c, ct + (len ? n : 0), &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, PGC_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        OPENSSL_cleanse(b, len + PGC_OVERHEAD);
        free(b);
        return -1;
    }
    *out = b;
    *out_len = len + PGC_OVERHEAD;
    return 0;
}

int pgc_open(const uint8_t key[PGC_KEY_LEN], const uint8_t *aad, size_t aad_len,
             const uint8_t *sealed, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!sealed || len < PGC_OVERHEAD || sealed[0] != PGC_VERSION || len > ((size_t)1 << 30))
        return -1;
    size_t n = len - PGC_OVERHEAD;
    const uint8_t *nonce = sealed + 1, *ct = sealed + 1 + PGC_NONCE_LEN, *tag = ct + n;
    char *b = malloc(n + 1);
    if (!b)
        return -3;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int m = 0, fin = 0;
    uint8_t tagcopy[PGC_TAG_LEN];
    memcpy(tagcopy, tag, PGC_TAG_LEN);
    bool setup = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, PGC_NONCE_LEN, NULL) == 1 &&
                 EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) == 1;
    bool ok = setup && (aad_len == 0 || EVP_DecryptUpdate(c, NULL, &m, aad, (int)aad_len) == 1) &&
              (n == 0 || EVP_DecryptUpdate(c, (uint8_t *)b, &m, ct, (int)n) == 1) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, PGC_TAG_LEN, tagcopy) == 1 &&
              EVP_DecryptFinal_ex(c, (uint8_t *)b + (n ? m : 0), &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        /* never hand out unauthenticated plaintext */
        OPENSSL_cleanse(b, n + 1);
        free(b);
        return setup ? -2 : -3;
    }
    b[n] = '\0';
    *out = b;
    *out_len = n;
    return 0;
}
