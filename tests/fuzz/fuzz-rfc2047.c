/* fuzz-rfc2047: the header encoders (mc__rfc2047_encode for Subject and
 * display names, mc__rfc2231_param for attachment file names). Each output
 * is decoded here again and must give back the input byte for byte; lines
 * end in CRLF followed by white space (folding) and never pass 998 octets;
 * an encoded word is at most 75 characters.
 * The first byte is `used` (what is already on the line); the rest is the
 * text, up to its first NUL (the encoders take C strings). */
#include <ctype.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "message.h"

#define TEXT_MAX (8 * 1024)

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Folding: every CR is followed by LF and then a space or tab; no line of
 * a header is longer than 998 octets (counting `used` on the first). */
static void check_lines(const char *s, size_t n, size_t used)
{
    size_t line = used;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            FUZZ_CHECK(i + 2 < n && s[i + 1] == '\n' && (s[i + 2] == ' ' || s[i + 2] == '\t'));
            line = 0;
            i++;
            continue;
        }
        FUZZ_CHECK(s[i] != '\n' && s[i] != '\0');
        line++;
        FUZZ_CHECK(line <= 998);
    }
}

/* Decode the encoded words of s (separated by CRLF SP) into out. */
static void decode_words(const char *s, size_t n, mc__buf *out)
{
    size_t i = 0;
    while (i < n) {
        if (i > 0) {
            FUZZ_CHECK(n - i >= 3 && !memcmp(s + i, "\r\n ", 3));
            i += 3;
        }
        FUZZ_CHECK(n - i >= 12 && !memcmp(s + i, "=?UTF-8?", 8));
        char kind = s[i + 8];
        FUZZ_CHECK((kind == 'Q' || kind == 'B') && s[i + 9] == '?');
        size_t p = i + 10, e = p;
        while (e + 1 < n && !(s[e] == '?' && s[e + 1] == '='))
            e++;
        FUZZ_CHECK(e + 1 < n);
        FUZZ_CHECK(e + 2 - i <= 75);   /* RFC 2047 section 2 */
        if (kind == 'B') {
            FUZZ_CHECK(mc__base64_decode(out, s + p, e - p) == 0);
        } else {
            for (size_t k = p; k < e; k++) {
                char c = s[k];
                if (c == '_') {
                    FUZZ_CHECK(mc__buf_put(out, " ", 1) == 0);
                } else if (c == '=') {
                    FUZZ_CHECK(k + 2 < e);
                    int hi = hexval(s[k + 1]), lo = hexval(s[k + 2]);
                    FUZZ_CHECK(hi >= 0 && lo >= 0);
                    char b = (char)(hi * 16 + lo);
                    FUZZ_CHECK(mc__buf_put(out, &b, 1) == 0);
                    k += 2;
                } else {
                    /* RFC 2047 section 5 (3): what may stand in a phrase */
                    FUZZ_CHECK(isalnum((unsigned char)c) || strchr("!*+-/", c));
                    FUZZ_CHECK(mc__buf_put(out, &c, 1) == 0);
                }
            }
        }
        i = e + 2;
    }
}

static void check_2047(const char *text, size_t used)
{
    mc__buf out = MC__BUF_INIT;
    int rc = mc__rfc2047_encode(&out, text, used);
    FUZZ_CHECK(rc == 0);
    const char *s = out.data ? out.data : "";
    size_t n = out.len;
    check_lines(s, n, used);
    mc__buf back = MC__BUF_INIT;
    FUZZ_CHECK(mc__buf_put(&back, "", 0) == 0);
    if (n >= 2 && !memcmp(s, "=?", 2)) {
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)s[i] < 0x7f);
        decode_words(s, n, &back);
    } else {
        /* copied as it is, folded: unfolding gives the text back */
        FUZZ_CHECK(!strstr(s, "=?"));
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
                i++;
                continue;
            }
            FUZZ_CHECK(mc__buf_put(&back, s + i, 1) == 0);
        }
    }
    FUZZ_CHECK(back.len == strlen(text) && !memcmp(back.data, text, back.len));
    mc__buf_free(&back);
    mc__buf_free(&out);
}

/* Decode one RFC 2231 parameter as written by mc__rfc2231_param. */
static void check_2231(const char *value)
{
    static const char name[] = "filename";
    const size_t nl = sizeof name - 1;
    mc__buf out = MC__BUF_INIT;
    FUZZ_CHECK(mc__rfc2231_param(&out, name, value) == 0);
    const char *s = out.data ? out.data : "";
    size_t n = out.len;
    check_lines(s, n, strlen("Content-Disposition: attachment; "));
    mc__buf back = MC__BUF_INIT;
    FUZZ_CHECK(mc__buf_put(&back, "", 0) == 0);
    size_t i = 0, seg = 0;
    bool charset_seen = false;
    while (i < n) {
        if (seg) {
            FUZZ_CHECK(n - i >= 4 && !memcmp(s + i, ";\r\n ", 4));
            i += 4;
        }
        FUZZ_CHECK(n - i > nl && !memcmp(s + i, name, nl));
        i += nl;
        bool ext = false;
        if (s[i] == '*') {
            i++;
            if (isdigit((unsigned char)s[i])) {
                size_t num = 0;
                while (i < n && isdigit((unsigned char)s[i]))
                    num = num * 10 + (size_t)(s[i++] - '0');
                FUZZ_CHECK(num == seg);
                if (i < n && s[i] == '*') {
                    ext = true;
                    i++;
                }
            } else {
                FUZZ_CHECK(seg == 0);
                ext = true;
            }
        }
        FUZZ_CHECK(i < n && s[i] == '=');
        i++;
        if (ext) {
            if (!charset_seen) {
                FUZZ_CHECK(seg == 0 && n - i >= 7 && !memcmp(s + i, "UTF-8''", 7));
                i += 7;
                charset_seen = true;
            }
            while (i < n && s[i] != ';') {
                char c = s[i];
                if (c == '%') {
                    FUZZ_CHECK(i + 2 < n);
                    int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
                    FUZZ_CHECK(hi >= 0 && lo >= 0);
                    char b = (char)(hi * 16 + lo);
                    FUZZ_CHECK(mc__buf_put(&back, &b, 1) == 0);
                    i += 3;
                } else {
                    /* attribute-char of RFC 2231 section 7 */
                    FUZZ_CHECK(isalnum((unsigned char)c) || (c && strchr("!#$&+-.^_`|~", c)));
                    FUZZ_CHECK(mc__buf_put(&back, &c, 1) == 0);
                    i++;
                }
            }
        } else {
            FUZZ_CHECK(!charset_seen && i < n && s[i] == '"');
            i++;
            while (i < n && s[i] != '"') {
                if (s[i] == '\\')
                    i++;
                FUZZ_CHECK(i < n && (unsigned char)s[i] >= 32 && (unsigned char)s[i] < 127);
                FUZZ_CHECK(mc__buf_put(&back, s + i, 1) == 0);
                i++;
            }
            FUZZ_CHECK(i < n);
            i++;
        }
        seg++;
    }
    FUZZ_CHECK(back.len == strlen(value) && !memcmp(back.data, value, back.len));
    mc__buf_free(&back);
    mc__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > TEXT_MAX)
        return 0;
    size_t used = data[0] & 0x7f;
    char *text = fuzz_cstr(data + 1, size - 1);
    if (!text)
        return 0;
    check_2047(text, used);
    check_2231(text);
    free(text);
    return 0;
}
