/* buf: growable byte buffer; base64 through OpenSSL's EVP encoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "buf.h"

int mc__buf_grow(mc__buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return MC_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p;
    if (b->secret) {
        /* never leave a copy of a secret behind in freed memory */
        p = malloc(cap);
        if (!p)
            return MC_ENOMEM;
        if (b->data) {
            memcpy(p, b->data, b->len + 1);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
    } else {
        p = realloc(b->data, cap);
        if (!p)
            return MC_ENOMEM;
    }
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int mc__buf_put(mc__buf *b, const void *p, size_t n)
{
    if (mc__buf_grow(b, n) < 0)
        return MC_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int mc__buf_puts(mc__buf *b, const char *s)
{
    return mc__buf_put(b, s, strlen(s));
}

int mc__buf_printf(mc__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || mc__buf_grow(b, (size_t)n) < 0)
        return MC_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void mc__buf_consume(mc__buf *b, size_t n)
{
    if (n >= b->len) {
        mc__buf_clear(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    if (b->secret)
        OPENSSL_cleanse(b->data + b->len, n);
    b->data[b->len] = '\0';
}

void mc__buf_clear(mc__buf *b)
{
    if (b->data) {
        if (b->secret)
            OPENSSL_cleanse(b->data, b->len);
        b->data[0] = '\0';
    }
    b->len = 0;
}

char *mc__buf_detach(mc__buf *b)
{
    if (!b->data && mc__buf_grow(b, 0) < 0)
        return NULL;
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void mc__buf_free(mc__buf *b)
{
    if (b->data && b->secret)
        OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int mc__base64_encode(mc__buf *out, const void *data, size_t len)
{
    if (len > (size_t)INT32_MAX / 2)
        return MC_ENOMEM;
    size_t need = 4 * ((len + 2) / 3);
    if (mc__buf_grow(out, need) < 0)
        return MC_ENOMEM;
    int n = EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)len);
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    return 0;
}

int mc__base64_decode(mc__buf *out, const char *b64, size_t len)
{
    if (len % 4 != 0 || len > (size_t)INT32_MAX / 2)
        return MC_EPROTO;
    for (size_t i = 0; i < len; i++) {
        char c = b64[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                  || c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok)
            return MC_EPROTO;
        if (c != '=' && i > 0 && b64[i - 1] == '=')
            return MC_EPROTO;
    }
    if (mc__buf_grow(out, len / 4 * 3) < 0)
        return MC_ENOMEM;
    int n = EVP_DecodeBlock((unsigned char *)out->data + out->len,
                            (const unsigned char *)b64, (int)len);
    if (n < 0)
        return MC_EPROTO;
    /* EVP_DecodeBlock counts the padding bytes as zeros: drop them */
    size_t pad = 0;
    if (len && b64[len - 1] == '=')
        pad++;
    if (len > 1 && b64[len - 2] == '=')
        pad++;
    out->len += (size_t)n - pad;
    out->data[out->len] = '\0';
    return 0;
}

size_t mc__utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}
