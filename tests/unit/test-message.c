/* test-message: RFC 2047 / 2231 encodings, header injection, the MIME
 * composer (round trip through the parser), exact size, parsing for -t and
 * sendmail, mc__message_prepare's rules, and streaming of large files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "message.h"
#include "smtp.h"   /* mc__dotstuff: what the DATA phase does to the body */

/* ---------------------------------------------------------------- helpers */

typedef struct out {
    mc__buf  b;
    bool     keep;
    size_t   calls, max_call;
    uint64_t total;
    char     tail[64];
    size_t   tail_len;
} out;

static int sink(void *payload, const void *data, size_t len, mc_err **err)
{
    (void)err;
    out *o = payload;
    o->calls++;
    o->total += len;
    if (len > o->max_call)
        o->max_call = len;
    if (o->keep && mc__buf_put(&o->b, data, len) < 0)
        return MC_ENOMEM;
    size_t k = len < sizeof(o->tail) ? len : sizeof(o->tail);
    memcpy(o->tail, (const char *)data + len - k, k);
    o->tail_len = k;
    return 0;
}

static void check_lines(const char *s, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            if (i == 0 || s[i - 1] != '\r')
                fail_msg("bare LF at offset %zu", i);
            line = 0;
        } else if (s[i] == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n')
                fail_msg("bare CR at offset %zu", i);
        } else if (++line > 998) {
            fail_msg("line longer than 998 octets at offset %zu", i);
        }
    }
}

static void prepare_ok(mc_message *m, const mc__msg_defaults *d)
{
    mc_err *err = NULL;
    int rc = mc__message_prepare(m, d, &err);
    if (rc != 0)
        fail_msg("prepare: %s", err ? err->message : "?");
}

/* Write a prepared message; asserts size == bytes written, and CRLF lines of
 * at most 998 octets when strict. Caller frees. */
static char *render(mc_message *m, size_t *len, bool strict)
{
    out o = { .keep = true };
    mc_err *err = NULL;
    int rc = mc__message_write(m, sink, &o, &err);
    if (rc != 0)
        fail_msg("write: %s", err ? err->message : "?");
    assert_int_equal(o.b.len, mc__message_size(m));
    char *s = mc__buf_detach(&o.b);
    if (strict)
        check_lines(s, o.total);
    *len = o.total;
    return s;
}

/* s begins with the literal lit */
#define assert_prefix(s, lit) assert_true(strncmp((s), lit, sizeof(lit) - 1) == 0)

static const mc__msg_defaults D0 = { .sender_address = NULL };

typedef struct hdrs {
    char  *name[64];
    char  *value[64];
    size_t n;
} hdrs;

static int hdr_cb(void *payload, const char *name, const char *value)
{
    hdrs *h = payload;
    if (h->n >= 64)
        return -1;
    h->name[h->n] = strdup(name);
    h->value[h->n] = strdup(value);
    h->n++;
    return 0;
}

static size_t parse_hdrs(const char *s, size_t n, hdrs *h)
{
    size_t body = 0;
    memset(h, 0, sizeof(*h));
    mc_err *err = NULL;
    if (mc__header_parse(s, n, hdr_cb, h, &body, &err) != 0)
        fail_msg("header parse: %s", err ? err->message : "?");
    return body;
}

static const char *hget(const hdrs *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}

static size_t hcount(const hdrs *h, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < h->n; i++)
        c += strcasecmp(h->name[i], name) == 0;
    return c;
}

static void hfree(hdrs *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->name[i]);
        free(h->value[i]);
    }
    h->n = 0;
}

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : toupper((unsigned char)c) - 'A' + 10;
}

/* Decode RFC 2047 words in an (unfolded) header value. */
static char *decode_2047(const char *s)
{
    mc__buf o = MC__BUF_INIT;
    bool prev_word = false;
    const char *p = s;
    while (*p) {
        if (strncmp(p, "=?UTF-8?", 8) == 0 && (p[8] == 'B' || p[8] == 'Q') && p[9] == '?') {
            char enc = p[8];
            const char *pl = p + 10, *end = strstr(pl, "?=");
            assert_non_null(end);
            if (enc == 'B') {
                assert_int_equal(mc__base64_decode(&o, pl, (size_t)(end - pl)), 0);
            } else {
                for (const char *q = pl; q < end; q++) {
                    if (*q == '_') {
                        mc__buf_put(&o, " ", 1);
                    } else if (*q == '=') {
                        char c = (char)(hexval(q[1]) * 16 + hexval(q[2]));
                        mc__buf_put(&o, &c, 1);
                        q += 2;
                    } else {
                        mc__buf_put(&o, q, 1);
                    }
                }
            }
            p = end + 2;
            prev_word = true;
            continue;
        }
        if (prev_word && (*p == ' ' || *p == '\t')) {
            const char *q = p;
            while (*q == ' ' || *q == '\t')
                q++;
            if (strncmp(q, "=?UTF-8?", 8) == 0) {
                p = q;
                continue;
            }
        }
        mc__buf_put(&o, p, 1);
        prev_word = false;
        p++;
    }
    mc__buf_grow(&o, 0);
    return mc__buf_detach(&o);
}

/* Remove folding (CRLF before white space). */
static char *unfold(const char *s)
{
    mc__buf o = MC__BUF_INIT;
    for (; *s; s++) {
        if (s[0] == '\r' && s[1] == '\n') {
            s++;
            continue;
        }
        mc__buf_put(&o, s, 1);
    }
    mc__buf_grow(&o, 0);
    return mc__buf_detach(&o);
}

static size_t max_line(const char *s)
{
    size_t m = 0, l = 0;
    for (; *s; s++) {
        if (*s == '\n' || *s == '\r') {
            l = 0;
            continue;
        }
        if (++l > m)
            m = l;
    }
    return m;
}

static char *qp_decode(const char *s, size_t n)
{
    mc__buf o = MC__BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2;
        } else if (s[i] == '=') {
            assert_true(i + 2 < n && isxdigit((unsigned char)s[i + 1])
                        && isxdigit((unsigned char)s[i + 2]));
            char c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            mc__buf_put(&o, &c, 1);
            i += 2;
        } else {
            mc__buf_put(&o, s + i, 1);
        }
    }
    mc__buf_grow(&o, 0);
    return mc__buf_detach(&o);
}

/* Base64 with CRLF line breaks: every line <= 76, decoded into o. */
static void b64_lines_decode(const char *s, size_t n, mc__buf *o)
{
    size_t i = 0;
    while (i < n) {
        const char *e = memchr(s + i, '\r', n - i);
        size_t l = e ? (size_t)(e - (s + i)) : n - i;
        assert_true(l <= 76);
        assert_int_equal(mc__base64_decode(o, s + i, l), 0);
        i += l + (e ? 2 : 0);
    }
}

/* The value of a parameter (name="v" or name=v) in a header value; copy. */
static char *param(const char *v, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s=", name);
    const char *p = strstr(v, key);
    if (!p)
        return NULL;
    p += strlen(key);
    if (*p == '"') {
        const char *e = strchr(p + 1, '"');
        return strndup(p + 1, (size_t)(e - p - 1));
    }
    size_t l = strcspn(p, "; \t");
    return strndup(p, l);
}

typedef struct part {
    const char *start;   /* headers */
    size_t      len;     /* headers + CRLF CRLF + body */
} part;

/* Split a multipart body at its delimiters; returns the number of parts
 * and asserts the closing delimiter is there. */
static size_t split_parts(const char *body, size_t n, const char *bnd, part *parts, size_t max)
{
    char delim[128];
    snprintf(delim, sizeof(delim), "--%s", bnd);
    size_t dl = strlen(delim), count = 0;
    const char *p = body, *end = body + n;
    const char *cur = NULL;
    bool closed = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        if ((size_t)(le - p) >= dl && memcmp(p, delim, dl) == 0) {
            if (cur) {
                assert_true(count < max);
                parts[count].start = cur;
                parts[count].len = (size_t)(p - cur) - 2;   /* CRLF before the delimiter */
                count++;
            }
            if (p + dl + 2 <= end && memcmp(p + dl, "--", 2) == 0) {
                closed = true;
                break;
            }
            cur = le;
        }
        p = le;
    }
    assert_true(closed);
    return count;
}

/* Part headers and body. */
static void part_split(const part *pt, hdrs *h, const char **body, size_t *blen)
{
    size_t off = parse_hdrs(pt->start, pt->len, h);
    *body = pt->start + off;
    *blen = pt->len >= off ? pt->len - off : 0;
}

static char *tmpdir;

static int group_setup(void **state)
{
    (void)state;
    char t[64] = "/tmp/test-message-";
    memset(t + strlen(t), 'X', 6);   /* the mkdtemp template */
    assert_non_null(mkdtemp(t));
    tmpdir = strdup(t);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    free(tmpdir);
    return 0;
}

static char *write_file(const char *name, const void *data, size_t n)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

static mc_message *simple(void)
{
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_set_from(m, "from@example.com", NULL, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "to@example.com", NULL), 0);
    return m;
}

/* ---------------------------------------------------------- mime.types */

static void *mime_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        if (strcmp(mc__mime_type("x.pdf"), "application/pdf") != 0)
            return (void *)1;
    return NULL;
}

/* First in the group: the cache is filled while 8 threads race for it. */
static void test_mime_type_threads(void **state)
{
    (void)state;
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mime_thread, NULL), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_null(r);
    }
}

static void test_mime_type(void **state)
{
    (void)state;
    assert_string_equal(mc__mime_type("report.pdf"), "application/pdf");
    assert_string_equal(mc__mime_type("/a/b/PHOTO.PNG"), "image/png");
    assert_string_equal(mc__mime_type("notes.txt"), "text/plain");
    assert_string_equal(mc__mime_type("backup.tar.gz"), "application/gzip");
    assert_string_equal(mc__mime_type("Makefile"), "application/octet-stream");
    assert_string_equal(mc__mime_type("dir.d/noext"), "application/octet-stream");
    assert_string_equal(mc__mime_type("x.zzqqunknown"), "application/octet-stream");
    assert_string_equal(mc__mime_type("trailingdot."), "application/octet-stream");
}

/* ------------------------------------------------------------ RFC 2047 */

static void test_rfc2047_ascii_passthrough(void **state)
{
    (void)state;
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2047_encode(&b, "Re: [list] hello, world; (ok)", 9), 0);
    assert_string_equal(b.data, "Re: [list] hello, world; (ok)");
    mc__buf_free(&b);
}

static void test_rfc2047_utf8_subject(void **state)
{
    (void)state;
    const char *subj = "Grüße aus Köln — ünïcödé ✓";
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2047_encode(&b, subj, 9), 0);
    assert_non_null(strstr(b.data, "=?UTF-8?"));
    for (size_t i = 0; i < b.len; i++)
        assert_true((unsigned char)b.data[i] < 0x80);
    char *u = unfold(b.data), *d = decode_2047(u);
    assert_string_equal(d, subj);
    free(u);
    free(d);
    mc__buf_free(&b);

    /* ASCII holding "=?" would be misread: it is encoded too */
    assert_int_equal(mc__rfc2047_encode(&b, "a =?x?= b", 9), 0);
    assert_non_null(strstr(b.data, "=?UTF-8?"));
    u = unfold(b.data);
    d = decode_2047(u);
    assert_string_equal(d, "a =?x?= b");
    free(u);
    free(d);
    mc__buf_free(&b);
}

static void test_rfc2047_long_ascii_folded(void **state)
{
    (void)state;
    mc__buf subj = MC__BUF_INIT;
    for (int i = 0; i < 40; i++)
        mc__buf_printf(&subj, "%sword%d", i ? " " : "", i);
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2047_encode(&b, subj.data, 9), 0);
    assert_null(strstr(b.data, "=?"));          /* folded, not encoded */
    assert_non_null(strstr(b.data, "\r\n "));
    /* every line, the first with "Subject: ", fits in 78 */
    const char *p = b.data;
    size_t first = strcspn(p, "\r");
    assert_true(first + 9 <= 78);
    assert_true(max_line(b.data) <= 78);
    char *u = unfold(b.data);
    assert_string_equal(u, subj.data);
    free(u);
    mc__buf_free(&b);
    mc__buf_free(&subj);

    /* one word longer than a line is encoded instead, lines stay short */
    char big[1300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(mc__rfc2047_encode(&b, big, 9), 0);
    assert_true(max_line(b.data) <= 76);
    u = unfold(b.data);
    char *d = decode_2047(u);
    assert_string_equal(d, big);
    free(u);
    free(d);
    mc__buf_free(&b);
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t l = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
        if (!l)
            return false;
        for (size_t i = 1; i < l; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += l;
    }
    return true;
}

static void check_words(const char *enc, const char *orig, size_t used)
{
    /* lines: the first after `used` characters, each <= 76 */
    const char *p = enc;
    size_t lineno = 0;
    while (*p) {
        size_t l = strcspn(p, "\r");
        assert_true(l + (lineno == 0 ? used : 0) <= 76);
        p += l;
        if (*p)
            p += 2;
        lineno++;
    }
    /* each word <= 75 and decodes to whole characters on its own */
    char *u = unfold(enc);
    char *save = NULL;
    char *copy = strdup(u);
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        assert_true(strlen(w) <= 75);
        assert_true(strncmp(w, "=?UTF-8?", 8) == 0);
        char *d = decode_2047(w);
        assert_true(utf8_valid(d));
        free(d);
    }
    free(copy);
    char *d = decode_2047(u);
    assert_string_equal(d, orig);
    free(d);
    free(u);
}

static void test_rfc2047_word_length(void **state)
{
    (void)state;
    mc__buf s = MC__BUF_INIT;
    for (int i = 0; i < 40; i++)
        mc__buf_puts(&s, "ä€😀 Straße ");
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2047_encode(&b, s.data, 9), 0);
    assert_true(strstr(b.data, "\r\n ") != NULL);
    check_words(b.data, s.data, 9);
    mc__buf_free(&b);
    mc__buf_free(&s);

    /* mostly ASCII: Q encoding, same limits */
    const char *q = "Réunion de l'équipe: ordre du jour pour la semaine prochaine, "
                    "avec les points à aborder et les décisions à prendre ensemble";
    assert_int_equal(mc__rfc2047_encode(&b, q, 9), 0);
    assert_non_null(strstr(b.data, "=?UTF-8?Q?"));
    check_words(b.data, q, 9);
    mc__buf_free(&b);
}

/* ------------------------------------------------------------ RFC 2231 */

static char *pct_decode(const char *s)
{
    mc__buf o = MC__BUF_INIT;
    for (; *s; s++) {
        if (*s == '%') {
            char c = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            mc__buf_put(&o, &c, 1);
            s += 2;
        } else {
            mc__buf_put(&o, s, 1);
        }
    }
    mc__buf_grow(&o, 0);
    return mc__buf_detach(&o);
}

static void test_rfc2231_ascii(void **state)
{
    (void)state;
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2231_param(&b, "filename", "report 2024.pdf"), 0);
    assert_string_equal(b.data, "filename=\"report 2024.pdf\"");
    mc__buf_clear(&b);
    assert_int_equal(mc__rfc2231_param(&b, "filename", "a\"b\\c.txt"), 0);
    assert_string_equal(b.data, "filename=\"a\\\"b\\\\c.txt\"");
    mc__buf_free(&b);
}

static void test_rfc2231_utf8(void **state)
{
    (void)state;
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2231_param(&b, "filename", "Grüße 1.pdf"), 0);
    assert_string_equal(b.data, "filename*=UTF-8''Gr%C3%BC%C3%9Fe%201.pdf");
    mc__buf_free(&b);
}

static void test_rfc2231_long_continuation(void **state)
{
    (void)state;
    mc__buf name = MC__BUF_INIT;
    for (int i = 0; i < 12; i++)
        mc__buf_puts(&name, "Überweisung-");
    mc__buf_puts(&name, "final.pdf");
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__rfc2231_param(&b, "filename", name.data), 0);
    assert_true(strncmp(b.data, "filename*0*=UTF-8''", 19) == 0);
    assert_non_null(strstr(b.data, ";\r\n filename*1*="));
    assert_true(max_line(b.data) <= 78);
    /* reassemble: segments in order, percent-decoded, equal the name */
    mc__buf joined = MC__BUF_INIT;
    char *copy = unfold(b.data), *save = NULL;
    int idx = 0;
    for (char *seg = strtok_r(copy, ";", &save); seg; seg = strtok_r(NULL, ";", &save)) {
        while (*seg == ' ')
            seg++;
        char key[32];
        snprintf(key, sizeof(key), "filename*%d*=", idx);
        assert_true(strncmp(seg, key, strlen(key)) == 0);
        seg += strlen(key);
        if (idx == 0) {
            assert_true(strncmp(seg, "UTF-8''", 7) == 0);
            seg += 7;
        }
        mc__buf_puts(&joined, seg);
        idx++;
    }
    assert_true(idx >= 3);
    char *d = pct_decode(joined.data);
    assert_string_equal(d, name.data);
    free(d);
    free(copy);
    mc__buf_free(&joined);
    mc__buf_free(&b);

    /* long ASCII: quoted continuations */
    char ascii[151];
    memset(ascii, 'a', 150);
    ascii[150] = '\0';
    assert_int_equal(mc__rfc2231_param(&b, "filename", ascii), 0);
    assert_true(strncmp(b.data, "filename*0=\"", 12) == 0);
    assert_non_null(strstr(b.data, ";\r\n filename*1=\""));
    assert_true(max_line(b.data) <= 78);
    mc__buf_free(&b);
    mc__buf_free(&name);
}

/* ---------------------------------------------------- header injection */

static void expect_refused(int rc, mc_err *err)
{
    assert_int_equal(rc, MC_EMESSAGE);
    assert_non_null(err);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    mc_error_free(err);
}

/* the call is evaluated before err is read */
#define expect_refused_rc(call, errp)            \
    do {                                         \
        int rc_ = (call);                        \
        expect_refused(rc_, *(errp));            \
    } while (0)

static void test_header_injection(void **state)
{
    (void)state;
    mc_message *m = simple();
    mc_err *err = NULL;
    expect_refused_rc(mc_message_set_subject(m, "hi\r\nBcc: victim@example.com", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_set_subject(m, "hi\nX: y", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_set_subject(m, "hi\rX: y", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_set_from(m, "a@example.com", "Eve\r\nBcc: v@example.com", &err),
                      &err);
    err = NULL;
    expect_refused_rc(mc_message_set_from(m, "a@example.com\r\nBcc: v@example.com", NULL, &err),
                      &err);
    err = NULL;
    expect_refused_rc(mc_message_add_recipient(m, MC_RCPT_TO, "v@example.com\nX: y", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_add_envelope_recipient(m, "v@example.com\r\n", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_set_envelope_from(m, "a@example.com\r\nRCPT TO:<x@y.z>", &err),
                      &err);
    err = NULL;
    expect_refused_rc(mc_message_add_header(m, "X-Tag", "ok\r\nBcc: v@example.com", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_add_header(m, "X-Tag\r\nBcc", "v@example.com", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_add_header(m, "X:Tag", "v", &err), &err);
    err = NULL;
    expect_refused_rc(mc_message_add_header(m, "Bcc", "v@example.com", &err), &err);

    /* nothing of the refused values reached the message */
    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    assert_null(strstr(s, "victim"));
    assert_null(strstr(s, "v@example.com"));
    assert_null(strstr(s, "X: y"));
    assert_null(strstr(s, "Eve"));
    assert_int_equal(mc__message_rcpt_count(m), 1);
    free(s);
    mc_message_free(m);
}

/* ------------------------------------------------ compose + round trip */

static void test_compose_roundtrip(void **state)
{
    (void)state;
    unsigned char bin[5000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 131 + (i >> 3));
    char *att = write_file("Grüße.pdf", bin, sizeof(bin));

    const char *text = "Hallo Jörg,\nline two\n\nbye\n";
    const char *html = "<p>Hallo <b>J&ouml;rg</b></p>\n";
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_set_from(m, "jorg@example.com", "Jörg Müller", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "a@example.com", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "b@example.org", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_CC, "c@example.net", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_BCC, "hidden@example.com", NULL), 0);
    assert_int_equal(mc_message_set_subject(m, "Résumé ✓", NULL), 0);
    assert_int_equal(mc_message_set_text(m, text, strlen(text), NULL), 0);
    assert_int_equal(mc_message_set_html(m, html, strlen(html), NULL), 0);
    assert_int_equal(mc_message_add_attachment(m, att, NULL), 0);
    assert_int_equal(mc_message_add_header(m, "X-Mailer", "mailconn-test", NULL), 0);
    prepare_ok(m, &D0);

    size_t n;
    char *s = render(m, &n, true);

    /* Bcc: never written, but in the envelope */
    assert_null(strcasestr(s, "\nBcc:"));
    assert_null(strstr(s, "hidden@example.com"));
    assert_int_equal(mc__message_rcpt_count(m), 4);
    const char *const *r = mc__message_rcpts(m);
    assert_string_equal(r[3], "hidden@example.com");
    assert_string_equal(mc__message_envelope_from(m), "jorg@example.com");
    assert_false(mc__message_8bit(m));
    assert_false(mc__message_smtputf8(m));

    hdrs h;
    size_t body_off = parse_hdrs(s, n, &h);
    char *from = decode_2047(hget(&h, "From"));
    assert_string_equal(from, "Jörg Müller <jorg@example.com>");
    free(from);
    assert_string_equal(hget(&h, "To"), "a@example.com, b@example.org");
    assert_string_equal(hget(&h, "Cc"), "c@example.net");
    char *subj = decode_2047(hget(&h, "Subject"));
    assert_string_equal(subj, "Résumé ✓");
    free(subj);
    assert_string_equal(hget(&h, "MIME-Version"), "1.0");
    assert_string_equal(hget(&h, "X-Mailer"), "mailconn-test");
    /* Date: "Sat, 23 Nov 2024 14:17:00 +0100" */
    const char *date = hget(&h, "Date");
    assert_non_null(date);
    char wd[4], mon[4], sign;
    int day, year, hh, mm, ss, tz;
    assert_int_equal(sscanf(date, "%3s, %d %3s %d %d:%d:%d %c%4d", wd, &day, mon, &year, &hh,
                            &mm, &ss, &sign, &tz), 9);
    assert_true(date[3] == ',');
    assert_true(sign == '+' || sign == '-');
    assert_true(year >= 2024);
    /* Message-ID: <32 hex digits @ the sender's domain> */
    const char *mid = hget(&h, "Message-ID");
    assert_int_equal(strlen(mid), 1 + 32 + 1 + strlen("example.com") + 1);
    assert_true(mid[0] == '<' && mid[33] == '@');
    for (int i = 1; i < 33; i++)
        assert_true(isxdigit((unsigned char)mid[i]));
    assert_true(strncmp(mid + 1, mc_message_id(m), 32) == 0);
    assert_string_equal(mc_message_id(m) + 33, "example.com");

    /* structure: mixed( alternative(plain, html), attachment ) */
    const char *ct = hget(&h, "Content-Type");
    assert_true(strncmp(ct, "multipart/mixed;", 16) == 0);
    char *b1 = param(ct, "boundary");
    assert_non_null(b1);
    part outer[4];
    assert_int_equal(split_parts(s + body_off, n - body_off, b1, outer, 4), 2);

    hdrs ah;
    const char *abody;
    size_t alen;
    part_split(&outer[0], &ah, &abody, &alen);
    const char *act = hget(&ah, "Content-Type");
    assert_true(strncmp(act, "multipart/alternative;", 22) == 0);
    char *b2 = param(act, "boundary");
    assert_string_not_equal(b1, b2);
    part inner[4];
    assert_int_equal(split_parts(abody, alen, b2, inner, 4), 2);

    hdrs th;
    const char *tb;
    size_t tl;
    part_split(&inner[0], &th, &tb, &tl);
    assert_string_equal(hget(&th, "Content-Type"), "text/plain; charset=UTF-8");
    assert_string_equal(hget(&th, "Content-Transfer-Encoding"), "quoted-printable");
    char *dec = qp_decode(tb, tl);
    assert_string_equal(dec, "Hallo Jörg,\r\nline two\r\n\r\nbye");
    free(dec);
    hfree(&th);

    part_split(&inner[1], &th, &tb, &tl);
    assert_string_equal(hget(&th, "Content-Type"), "text/html; charset=UTF-8");
    assert_string_equal(hget(&th, "Content-Transfer-Encoding"), "7bit");
    assert_int_equal(tl, strlen(html) + 1 - 2);   /* LF -> CRLF, last CRLF is the delimiter's */
    assert_memory_equal(tb, "<p>Hallo <b>J&ouml;rg</b></p>", tl);
    hfree(&th);
    hfree(&ah);

    part_split(&outer[1], &ah, &abody, &alen);
    assert_string_equal(hget(&ah, "Content-Type"),
                        "application/pdf; name*=UTF-8''Gr%C3%BC%C3%9Fe.pdf");
    assert_string_equal(hget(&ah, "Content-Transfer-Encoding"), "base64");
    assert_string_equal(hget(&ah, "Content-Disposition"),
                        "attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf");
    mc__buf raw = MC__BUF_INIT;
    b64_lines_decode(abody, alen, &raw);
    assert_int_equal(raw.len, sizeof(bin));
    assert_memory_equal(raw.data, bin, sizeof(bin));
    mc__buf_free(&raw);
    hfree(&ah);

    /* boundaries occur only as delimiters */
    size_t count = 0;
    for (const char *p = s; (p = strstr(p, b2)); p++)
        count++;
    assert_int_equal(count, 1 + 3);   /* parameter + 2 delimiters + closing */

    free(b1);
    free(b2);
    hfree(&h);
    free(s);
    mc_message_free(m);
    free(att);
}

static void test_bcc_only_in_envelope(void **state)
{
    (void)state;
    mc_message *m = simple();
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_BCC, "secret@example.com", NULL), 0);
    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    assert_null(strstr(s, "secret@example.com"));
    assert_null(strcasestr(s, "\nBcc:"));
    assert_int_equal(mc__message_rcpt_count(m), 2);
    assert_string_equal(mc__message_rcpts(m)[1], "secret@example.com");
    free(s);
    mc_message_free(m);

    /* parsed: the Bcc header is dropped, its addresses kept */
    const char *in = "From: a@example.com\nTo: b@example.com\n"
                     "Bcc: Hidden <secret@example.com>,\n other@example.com\nSubject: x\n\nbody\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, false);
    assert_null(strstr(s, "secret@example.com"));
    assert_null(strstr(s, "other@example.com"));
    assert_null(strstr(s, "Bcc"));
    assert_int_equal(mc__message_rcpt_count(m), 3);
    assert_string_equal(mc__message_rcpts(m)[1], "secret@example.com");
    assert_string_equal(mc__message_rcpts(m)[2], "other@example.com");
    free(s);
    mc_message_free(m);
}

static void test_text_encodings(void **state)
{
    (void)state;
    /* pure ASCII, short lines: 7bit, bytes unchanged but CRLF */
    mc_message *m = simple();
    const char *t = "line one\nline two\r\n.dot line\n";
    assert_int_equal(mc_message_set_text(m, t, strlen(t), NULL), 0);
    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "7bit");
    assert_string_equal(hget(&h, "Content-Type"), "text/plain; charset=UTF-8");
    assert_string_equal(s + off, "line one\r\nline two\r\n.dot line\r\n");
    hfree(&h);
    free(s);
    mc_message_free(m);

    /* a 2000-octet line: quoted-printable, lines <= 76, decodes back */
    m = simple();
    char longl[2001];
    for (int i = 0; i < 2000; i++)
        longl[i] = (char)('a' + i % 26);
    longl[2000] = '\0';
    longl[500] = '=';
    longl[999] = ' ';
    assert_int_equal(mc_message_set_text(m, longl, 2000, NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "quoted-printable");
    assert_true(max_line(s + off) <= 76);
    char *d = qp_decode(s + off, n - off);
    assert_int_equal(strlen(d), 2002);
    assert_memory_equal(d, longl, 2000);
    assert_string_equal(d + 2000, "\r\n");
    free(d);
    hfree(&h);
    free(s);
    mc_message_free(m);

    /* trailing white space and NUL are encoded */
    m = simple();
    const char tw[] = "end with space \nnul\0here\n";
    assert_int_equal(mc_message_set_text(m, tw, sizeof(tw) - 1, NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "quoted-printable");
    assert_string_equal(s + off, "end with space=20\r\nnul=00here\r\n");
    hfree(&h);
    free(s);
    mc_message_free(m);
}

static void test_html_only_and_empty(void **state)
{
    (void)state;
    mc_message *m = simple();
    assert_int_equal(mc_message_set_html(m, "<b>x</b>", 8, NULL), 0);
    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Type"), "text/html; charset=UTF-8");
    assert_string_equal(s + off, "<b>x</b>\r\n");
    hfree(&h);
    free(s);
    mc_message_free(m);

    m = simple();
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Type"), "text/plain; charset=UTF-8");
    assert_int_equal(off, n);
    assert_null(hget(&h, "Subject"));
    hfree(&h);
    free(s);
    mc_message_free(m);
}

static void test_add_header(void **state)
{
    (void)state;
    mc_message *m = simple();
    mc__buf v = MC__BUF_INIT;
    for (int i = 0; i < 30; i++)
        mc__buf_printf(&v, "%stoken%d", i ? " " : "", i);
    assert_int_equal(mc_message_add_header(m, "X-Long", v.data, NULL), 0);
    assert_int_equal(mc_message_add_header(m, "X-Name", "Grüße", NULL), 0);
    assert_int_equal(mc_message_add_header(m, "Message-ID", "<custom.1@example.com>", NULL), 0);
    assert_string_equal(mc_message_id(m), "custom.1@example.com");
    /* a single word too long for any line is refused */
    char big[1100];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    mc_err *err = NULL;
    expect_refused_rc(mc_message_add_header(m, "X-Big", big, &err), &err);

    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    assert_true(max_line(s) <= 78);
    assert_string_equal(hget(&h, "X-Long"), v.data);   /* folded, unfolds to the value */
    char *d = decode_2047(hget(&h, "X-Name"));
    assert_string_equal(d, "Grüße");
    free(d);
    assert_string_equal(hget(&h, "Message-ID"), "<custom.1@example.com>");
    assert_int_equal(hcount(&h, "Message-ID"), 1);
    (void)off;
    hfree(&h);
    free(s);
    mc__buf_free(&v);
    mc_message_free(m);
}

static void test_long_address_list_and_name_only(void **state)
{
    (void)state;
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    /* sendmail -F: a display name for the From: written from sender.address */
    mc_err *err = NULL;
    expect_refused_rc(mc_message_set_from_name(m, "Cron\r\nBcc: x@example.com", &err), &err);
    assert_int_equal(mc_message_set_from_name(m, "CronDaemon", NULL), 0);
    for (int i = 0; i < 40; i++) {
        char a[64];
        snprintf(a, sizeof(a), "recipient.number%02d@example.com", i);
        assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, a, NULL), 0);
    }
    mc__msg_defaults d = { .sender_address = "cron@example.net" };
    prepare_ok(m, &d);
    size_t n;
    char *s = render(m, &n, true);
    assert_true(max_line(s) <= 78);
    hdrs h;
    parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "From"), "CronDaemon <cron@example.net>");
    const char *to = hget(&h, "To");
    assert_prefix(to, "recipient.number00@example.com, recipient.number01@example.com,");
    assert_non_null(strstr(to, "recipient.number39@example.com"));
    assert_int_equal(mc__message_rcpt_count(m), 40);
    assert_int_equal(mc_message_recipient_count(m), 40);
    hfree(&h);
    free(s);
    mc_message_free(m);
}

static void test_from_name_and_reply(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "cron@example.net", .sender_name = "Config" };
    /* -F is ignored when the message has a From: */
    const char *in = "From: Someone <someone@example.com>\nTo: t@example.com\n\nx\n";
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_int_equal(mc_message_set_from_name(m, "CronDaemon", NULL), 0);
    prepare_ok(m, &d);
    size_t n;
    char *s = render(m, &n, false);
    assert_prefix(s, "From: Someone <someone@example.com>\r\n");
    assert_null(strstr(s, "CronDaemon"));
    free(s);
    mc_message_free(m);

    /* without From: it names the sender, before sender.name */
    in = "To: t@example.com\n\nx\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_int_equal(mc_message_set_from_name(m, "CronDaemon", NULL), 0);
    prepare_ok(m, &d);
    s = render(m, &n, false);
    assert_non_null(strstr(s, "\r\nFrom: CronDaemon <cron@example.net>\r\n"));
    free(s);

    /* the final reply recorded by the sender is kept for the caller */
    assert_null(mc_message_last_reply(m));
    assert_int_equal(mc__message_set_reply(m, "250 2.0.0 Ok: queued"), 0);
    assert_string_equal(mc_message_last_reply(m), "250 2.0.0 Ok: queued");
    mc_message_free(m);
}

static void test_display_names(void **state)
{
    (void)state;
    static const struct { const char *name, *want; } cases[] = {
        { "John Doe", "John Doe <j@example.com>" },
        { "Doe, John", "\"Doe, John\" <j@example.com>" },
        { "A \"quoted\" one", "\"A \\\"quoted\\\" one\" <j@example.com>" },
        { "J. R. Smith", "\"J. R. Smith\" <j@example.com>" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mc_message *m = NULL;
        assert_int_equal(mc_message_new(&m, NULL), 0);
        assert_int_equal(mc_message_set_from(m, "j@example.com", cases[i].name, NULL), 0);
        assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "t@example.com", NULL), 0);
        prepare_ok(m, &D0);
        size_t n;
        char *s = render(m, &n, true);
        hdrs h;
        parse_hdrs(s, n, &h);
        assert_string_equal(hget(&h, "From"), cases[i].want);
        hfree(&h);
        free(s);
        mc_message_free(m);
    }
}

/* --------------------------------------------------------- exact size */

static void check_shape(mc_message *m, const mc__msg_defaults *d, bool strict)
{
    prepare_ok(m, d);
    uint64_t size = mc__message_size(m);
    assert_true(size > 0);
    size_t n;
    char *s = render(m, &n, strict);   /* asserts size == bytes written */
    assert_int_equal(n, size);
    /* a second write produces the same bytes (split transactions) */
    size_t n2;
    char *s2 = render(m, &n2, strict);
    assert_int_equal(n, n2);
    assert_memory_equal(s, s2, n);
    free(s);
    free(s2);
}

static void test_size_equals_bytes_written(void **state)
{
    (void)state;
    mc_message *m = simple();
    check_shape(m, &D0, true);
    assert_int_equal(mc_message_set_subject(m, "Größe", NULL), 0);
    assert_int_equal(mc_message_set_text(m, "ä\nb", 4, NULL), 0);
    check_shape(m, &D0, true);
    assert_int_equal(mc_message_set_html(m, "<i>x</i>", 8, NULL), 0);
    check_shape(m, &D0, true);

    /* a text ending in a blank line keeps it inside a multipart */
    {
        mc_message *e = simple();
        char *p = write_file("one.txt", "1", 1);
        assert_int_equal(mc_message_set_text(e, "abc\n\n", 5, NULL), 0);
        assert_int_equal(mc_message_add_attachment(e, p, NULL), 0);
        check_shape(e, &D0, true);
        size_t en;
        char *es = render(e, &en, true);
        assert_non_null(strstr(es, "7bit\r\n\r\nabc\r\n\r\n--=_mc_"));
        free(es);
        /* and an empty one still separates headers from the delimiter */
        assert_int_equal(mc_message_set_text(e, "", 0, NULL), 0);
        check_shape(e, &D0, true);
        es = render(e, &en, true);
        assert_non_null(strstr(es, "7bit\r\n\r\n\r\n--=_mc_"));
        free(es);
        free(p);
        mc_message_free(e);
    }

    /* attachments of sizes around the base64 line and chunk lengths */
    static const size_t sizes[] = { 0, 1, 2, 3, 56, 57, 58, 114, 115, 49247, 49248, 49249,
                                    100000 };
    unsigned char *data = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "att%zu.bin", sizes[i]);
        char *p = write_file(name, data, sizes[i]);
        assert_int_equal(mc_message_add_attachment(m, p, NULL), 0);
        free(p);
    }
    check_shape(m, &D0, true);

    /* the attachments' bytes survive */
    size_t n;
    char *s = render(m, &n, true);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    char *b1 = param(hget(&h, "Content-Type"), "boundary");
    part parts[20];
    size_t np = split_parts(s + off, n - off, b1, parts, 20);
    assert_int_equal(np, 1 + sizeof(sizes) / sizeof(sizes[0]));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        hdrs ph;
        const char *body;
        size_t blen;
        part_split(&parts[i + 1], &ph, &body, &blen);
        mc__buf raw = MC__BUF_INIT;
        b64_lines_decode(body, blen, &raw);
        assert_int_equal(raw.len, sizes[i]);
        if (sizes[i])
            assert_memory_equal(raw.data, data, sizes[i]);
        mc__buf_free(&raw);
        hfree(&ph);
    }
    free(b1);
    hfree(&h);
    free(s);
    free(data);
    mc_message_free(m);

    /* parsed, from memory and from a file */
    const char *in = "From: a@example.com\nTo: b@example.com\nSubject: s\n\nbody\n.\nend";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    check_shape(m, &D0, false);
    mc_message_free(m);
    char *p = write_file("size.eml", in, strlen(in));
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    check_shape(m, &D0, false);
    mc_message_free(m);
    free(p);
}

/* ------------------------------------------------------------- parsing */

typedef struct seen {
    char  *v[16];
    size_t n;
} seen;

static int seen_cb(void *payload, const char *name, const char *value)
{
    seen *s = payload;
    assert_true(s->n < 16);
    assert_true(asprintf(&s->v[s->n++], "%s=%s", name, value) > 0);
    return 0;
}

static void seen_free(seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    s->n = 0;
}

static void test_header_parse(void **state)
{
    (void)state;
    const char *in = "Subject: a long\r\n  folded\r\n\tsubject  \r\n"
                     "X-Empty:\r\n"
                     "Received : from x\r\n"
                     "\r\n"
                     "Body: not a header\r\n";
    seen s = { .n = 0 };
    size_t body = 0;
    assert_int_equal(mc__header_parse(in, strlen(in), seen_cb, &s, &body, NULL), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.v[0], "Subject=a long  folded\tsubject");
    assert_string_equal(s.v[1], "X-Empty=");
    assert_string_equal(s.v[2], "Received=from x");
    assert_string_equal(in + body, "Body: not a header\r\n");
    seen_free(&s);

    /* LF only, no body at all */
    in = "A: 1\nB: 2";
    assert_int_equal(mc__header_parse(in, strlen(in), seen_cb, &s, &body, NULL), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[1], "B=2");
    assert_int_equal(body, strlen(in));
    seen_free(&s);

    /* errors name the line */
    static const struct { const char *in; size_t len; const char *want; } bad[] = {
        { "Subject: x\nthis is not a header\n\nbody", 0, "line 2" },
        { " continued\nA: b\n\n", 0, "line 1" },
        { "A: b\nB: c\nNoColon\n\n", 0, "line 3" },
        { "A: b\nB: c\0d\n\n", 12, "line 2" },
        { "A: b\rB: c\n\n", 0, "line 1" },
        { ": empty name\n\n", 0, "line 1" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mc_err *err = NULL;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].in);
        assert_int_equal(mc__header_parse(bad[i].in, len, seen_cb, &s, &body, &err),
                         MC_EMESSAGE);
        assert_non_null(err);
        if (!strstr(err->message, bad[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err->message, bad[i].want);
        mc_error_free(err);
        seen_free(&s);
    }
}

static void test_parse_folded_groups_crlf(void **state)
{
    (void)state;
    const char *in =
        "From: \"Doe, John\" <John@Example.com>\r\n"
        "To: undisclosed-recipients:;\r\n"
        "Cc: \"Smith, Ann\" <ann@example.org>,\r\n"
        " bob@example.org (Bob, the builder),\r\n"
        "\tTeam: c@example.net, d@example.net;\r\n"
        "Subject: folded\r\n"
        "  over two lines\r\n"
        "Message-ID: <given.1@example.com>\r\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        "\r\n"
        "Body line 1\r\n"
        "From the body\r\n";
    mc_message *m = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc_message_parse(&m, in, strlen(in), &err), 0);
    assert_string_equal(mc_message_id(m), "given.1@example.com");
    prepare_ok(m, &D0);
    assert_string_equal(mc__message_envelope_from(m), "john@example.com");
    assert_int_equal(mc__message_rcpt_count(m), 4);
    const char *const *r = mc__message_rcpts(m);
    assert_string_equal(r[0], "ann@example.org");
    assert_string_equal(r[1], "bob@example.org");
    assert_string_equal(r[2], "c@example.net");
    assert_string_equal(r[3], "d@example.net");
    assert_false(mc__message_8bit(m));

    /* output: the input unchanged (CRLF), no Date or Message-ID added */
    size_t n;
    char *s = render(m, &n, true);
    assert_int_equal(n, strlen(in));
    assert_memory_equal(s, in, n);
    assert_string_equal(mc_message_id(m), "given.1@example.com");
    free(s);
    mc_message_free(m);
}

static void test_parse_lf_adds_date_and_id(void **state)
{
    (void)state;
    const char *in = "From: a@example.com\nTo: b@example.com\nSubject: x\n  y\n\nline\nnot CRLF\n";
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_null(mc_message_id(m));
    prepare_ok(m, &D0);
    assert_non_null(mc_message_id(m));
    size_t n;
    char *s = render(m, &n, false);
    /* header lines end in CRLF, the body is passed through as it came */
    const char *body = strstr(s, "\r\n\r\n");
    assert_non_null(body);
    check_lines(s, (size_t)(body - s) + 4);
    assert_string_equal(body + 4, "line\nnot CRLF\n");
    assert_prefix(s, "From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\n  y\r\n");
    hdrs h;
    parse_hdrs(s, n, &h);
    assert_int_equal(hcount(&h, "Date"), 1);
    assert_int_equal(hcount(&h, "Message-ID"), 1);
    char want[128];
    snprintf(want, sizeof(want), "<%s>", mc_message_id(m));
    assert_string_equal(hget(&h, "Message-ID"), want);
    hfree(&h);

    /* prepared again (another server): Date and Message-ID stay the same */
    char *id = strdup(mc_message_id(m));
    prepare_ok(m, &D0);
    size_t n2;
    char *s2 = render(m, &n2, false);
    assert_int_equal(n, n2);
    assert_memory_equal(s, s2, n);
    assert_string_equal(id, mc_message_id(m));
    free(id);
    free(s2);
    free(s);
    mc_message_free(m);

    /* a bad header line fails the parse with its line number */
    mc_err *err = NULL;
    const char *badin = "From: a@example.com\nTo: b@example.com\nbroken line\n\nbody";
    assert_int_equal(mc_message_parse(&m, badin, strlen(badin), &err), MC_EMESSAGE);
    assert_null(m);
    assert_non_null(strstr(err->message, "line 3"));
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    mc_error_free(err);
}

/* A file read whole by the header pass (up to 64 KiB) is kept in memory:
 * sending it opens the file no second time, so it sends what was parsed
 * even when the file is gone or rewritten since. */
static void test_parse_small_file_in_memory(void **state)
{
    (void)state;
    const char *text = "From: a@example.com\nTo: b@example.com\nSubject: s\n\nfirst body\n";
    char *p = write_file("small.eml", text, strlen(text));
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    assert_int_equal(unlink(p), 0);
    prepare_ok(m, &D0);
    assert_false(mc__message_8bit(m));
    size_t n;
    char *s = render(m, &n, false);
    const char *body = strstr(s, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "first body\n");
    free(s);
    mc_message_free(m);
    free(p);

    /* 8-bit at the very end of a small file */
    const char *t8 = "From: a@example.com\nTo: b@example.com\n\nok \xc3\xa9";
    p = write_file("small8.eml", t8, strlen(t8));
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    free(write_file("small8.eml", "To: c@example.com\n\nother\n", 26));
    prepare_ok(m, &D0);
    assert_true(mc__message_8bit(m));
    assert_int_equal(mc__message_rcpt_count(m), 1);
    assert_string_equal(mc__message_rcpts(m)[0], "b@example.com");
    s = render(m, &n, false);
    assert_non_null(strstr(s, "ok \xc3\xa9"));
    assert_null(strstr(s, "other"));
    free(s);
    mc_message_free(m);
    free(p);
}

/* A file larger than the header pass's read is not scanned for 8-bit
 * bytes at parse time: mc__message_8bit_maybe() reads nothing and says
 * "maybe" (BODY=8BITMIME to a server offering it, RFC 6152), and
 * mc__message_8bit() scans the rest on first use and caches the answer. */
static void test_parse_file_8bit_scan_is_lazy(void **state)
{
    (void)state;
    mc__buf file = MC__BUF_INIT;
    mc__buf_puts(&file, "From: a@example.com\nTo: b@example.com\n\n");
    for (int i = 0; i < 4000; i++)   /* 320 KB of 7-bit lines */
        mc__buf_puts(&file, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                            "abcdefghijklmnopqrstuvwxy\n");
    char *p = write_file("lazy.eml", file.data, file.len);

    /* 7-bit: maybe until asked, then known 7-bit */
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    prepare_ok(m, &D0);
    assert_true(mc__message_8bit_maybe(m));
    assert_false(mc__message_8bit(m));
    assert_false(mc__message_8bit_maybe(m));
    mc_message_free(m);

    /* the scan happens on the question, not at parse: an 8-bit byte written
     * near the end after parsing is found */
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    prepare_ok(m, &D0);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\xc3\xa9", 2, (off_t)file.len - 10), 2);
    close(fd);
    assert_true(mc__message_8bit_maybe(m));
    assert_true(mc__message_8bit(m));
    assert_true(mc__message_8bit(m));   /* cached */
    assert_true(mc__message_8bit_maybe(m));
    mc_message_free(m);

    /* 8-bit within the first chunk: known at parse, no question needed */
    file.data[file.len - 300000] = (char)0xe9;
    free(write_file("lazy.eml", file.data, file.len));
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    assert_int_equal(unlink(p), 0);
    assert_true(mc__message_8bit(m));
    mc_message_free(m);

    /* small files and memory input are scanned whole: no "maybe" */
    const char *in = "From: a@example.com\nTo: b@example.com\n\nplain\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_false(mc__message_8bit_maybe(m));
    assert_false(mc__message_8bit(m));
    mc_message_free(m);
    mc__buf_free(&file);
    free(p);
}

static void test_parse_8bit_and_file(void **state)
{
    (void)state;
    const char *in = "From: a@example.com\nTo: b@example.com\nSubject: x\n\nGrüße\n";
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    prepare_ok(m, &D0);
    assert_true(mc__message_8bit(m));
    mc_message_free(m);

    /* from a file: the body is read at write time, from the body offset */
    char big[200000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    for (size_t i = 79; i < sizeof(big); i += 80)
        big[i] = '\n';
    mc__buf file = MC__BUF_INIT;
    mc__buf_puts(&file, "From: a@example.com\nTo: b@example.com\nBcc: blind@example.com\n\n");
    size_t hdr_len = file.len;
    mc__buf_put(&file, big, sizeof(big));
    mc__buf_puts(&file, "tail é\n");
    char *p = write_file("in.eml", file.data, file.len);
    assert_int_equal(mc_message_parse_file(&m, p, NULL), 0);
    prepare_ok(m, &D0);
    assert_true(mc__message_8bit(m));   /* the é at the very end */
    assert_int_equal(mc__message_rcpt_count(m), 2);
    size_t n;
    char *s = render(m, &n, false);
    const char *body = strstr(s, "\r\n\r\n") + 4;
    assert_int_equal(n - (size_t)(body - s), file.len - hdr_len);
    assert_memory_equal(body, file.data + hdr_len, file.len - hdr_len);
    assert_null(strstr(s, "blind@example.com"));
    free(s);

    /* the file shrinks after prepare: the write fails, it never sends less */
    assert_int_equal(truncate(p, (off_t)(hdr_len + 100)), 0);
    out o = { .keep = false };
    mc_err *err = NULL;
    assert_int_equal(mc__message_write(m, sink, &o, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    mc_error_free(err);
    mc_message_free(m);

    /* ASCII file: not 8bit */
    char *q = write_file("ascii.eml", "To: b@example.com\nFrom: a@example.com\n\nhi\n", 40);
    assert_int_equal(mc_message_parse_file(&m, q, NULL), 0);
    prepare_ok(m, &D0);
    assert_false(mc__message_8bit(m));
    mc_message_free(m);

    /* missing file */
    err = NULL;
    char *missing = NULL;
    assert_true(asprintf(&missing, "%s/nope.eml", tmpdir) > 0);
    assert_int_equal(mc_message_parse_file(&m, missing, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    assert_non_null(strstr(err->message, "nope.eml"));
    mc_error_free(err);
    free(missing);
    free(q);
    free(p);
    mc__buf_free(&file);
}

/* ----------------------------------------------------------- prepare */

static const char *alias_fn(void *payload, const char *name)
{
    (void)payload;
    if (strcmp(name, "root") == 0)
        return "Admin@Example.org";
    if (strcmp(name, "ops") == 0)
        return "a@example.org, b@example.org";
    if (strcmp(name, "loop") == 0)
        return "other";
    return NULL;
}

static const char *alias_default_fn(void *payload, const char *name)
{
    (void)payload;
    return strcmp(name, "default") == 0 ? "catchall@example.org" : NULL;
}

static void test_prepare_envelope_sender(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "server@example.net", .sender_name = "Server" };

    /* explicit envelope sender wins */
    mc_message *m = simple();
    assert_int_equal(mc_message_set_envelope_from(m, "bounce@example.com", NULL), 0);
    prepare_ok(m, &d);
    assert_string_equal(mc__message_envelope_from(m), "bounce@example.com");
    mc_message_free(m);

    /* then sender.address, From: untouched */
    m = simple();
    prepare_ok(m, &d);
    assert_string_equal(mc__message_envelope_from(m), "server@example.net");
    size_t n;
    char *s = render(m, &n, true);
    assert_non_null(strstr(s, "\r\nFrom: from@example.com\r\n"));
    free(s);
    mc_message_free(m);

    /* then From: */
    m = simple();
    prepare_ok(m, &D0);
    assert_string_equal(mc__message_envelope_from(m), "from@example.com");
    mc_message_free(m);

    /* nothing at all */
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "to@example.com", NULL), 0);
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EMESSAGE);
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    assert_non_null(err->hint);
    mc_error_free(err);

    /* From: written from sender.address and sender.name when missing */
    prepare_ok(m, &d);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "\r\nFrom: Server <server@example.net>\r\n"));
    free(s);
    mc_message_free(m);

    /* parsed message without From: gets one */
    const char *in = "To: to@example.com\nSubject: x\n\nbody\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    prepare_ok(m, &d);
    s = render(m, &n, false);
    assert_non_null(strstr(s, "\r\nFrom: Server <server@example.net>\r\n"));
    assert_string_equal(mc__message_envelope_from(m), "server@example.net");
    free(s);
    mc_message_free(m);
}

static void test_prepare_bare_sender(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "cron@example.net" };
    /* cron: sendmail -f root, From: root (Cron Daemon) */
    const char *in = "From: root (Cron Daemon)\nTo: admin@example.org\nSubject: cron\n\nout\n";
    mc_message *m = NULL;
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_int_equal(mc_message_set_envelope_from(m, "root", NULL), 0);
    prepare_ok(m, &d);
    assert_string_equal(mc__message_envelope_from(m), "cron@example.net");
    size_t n;
    char *s = render(m, &n, false);
    assert_prefix(s, "From: cron@example.net (Cron Daemon)\r\n");
    free(s);
    mc_message_free(m);

    /* angle form keeps the display name */
    in = "From: Cron Daemon <root>\nTo: admin@example.org\n\nout\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    prepare_ok(m, &d);
    assert_string_equal(mc__message_envelope_from(m), "cron@example.net");
    s = render(m, &n, false);
    assert_prefix(s, "From: Cron Daemon <cron@example.net>\r\n");
    free(s);

    /* without sender.address a bare sender is refused */
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EMESSAGE);
    assert_non_null(strstr(err->message, "\"root\" has no domain"));
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    mc_error_free(err);
    mc_message_free(m);
}

static void test_prepare_override(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "me@gmail.example", .sender_override = true };
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_set_from(m, "someone@other.example", "Some One", NULL), 0);
    assert_int_equal(mc_message_set_envelope_from(m, "bounce@other.example", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "to@example.com", NULL), 0);
    prepare_ok(m, &d);
    assert_string_equal(mc__message_envelope_from(m), "me@gmail.example");
    size_t n;
    char *s = render(m, &n, true);
    assert_non_null(strstr(s, "\r\nFrom: Some One <me@gmail.example>\r\n"));
    assert_null(strstr(s, "other.example"));
    free(s);
    mc_message_free(m);

    /* parsed: From: rewritten, display name kept */
    const char *in = "From: \"Mail Bot\" <bot@elsewhere.example>\nTo: t@example.com\n\nx\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    prepare_ok(m, &d);
    s = render(m, &n, false);
    assert_prefix(s, "From: \"Mail Bot\" <me@gmail.example>\r\n");
    assert_string_equal(mc__message_envelope_from(m), "me@gmail.example");
    free(s);
    mc_message_free(m);
}

static void test_prepare_aliases(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "s@example.net", .alias = alias_fn };
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "root", NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "ops", NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "admin@example.org", NULL), 0);
    prepare_ok(m, &d);
    assert_int_equal(mc__message_rcpt_count(m), 3);   /* admin@ once: lower-cased duplicate */
    assert_string_equal(mc__message_rcpts(m)[0], "admin@example.org");
    assert_string_equal(mc__message_rcpts(m)[1], "a@example.org");
    assert_string_equal(mc__message_rcpts(m)[2], "b@example.org");
    mc_message_free(m);

    /* no alias: refused with the hint */
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "nobody", NULL), 0);
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &d, &err), MC_EMESSAGE);
    assert_string_equal(err->message, "recipient \"nobody\" has no domain and no alias");
    assert_string_equal(err->hint, "add it to \"aliases\" in the config");
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    mc_error_free(err);

    /* without any alias table too */
    err = NULL;
    mc__msg_defaults d2 = { .sender_address = "s@example.net" };
    assert_int_equal(mc__message_prepare(m, &d2, &err), MC_EMESSAGE);
    assert_string_equal(err->hint, "add it to \"aliases\" in the config");
    mc_error_free(err);

    /* an alias to another bare name is refused */
    err = NULL;
    mc_message *m2 = NULL;
    assert_int_equal(mc_message_new(&m2, NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m2, "loop", NULL), 0);
    assert_int_equal(mc__message_prepare(m2, &d, &err), MC_EMESSAGE);
    mc_error_free(err);
    mc_message_free(m2);

    /* the "default" alias catches every other bare name */
    mc__msg_defaults d3 = { .sender_address = "s@example.net", .alias = alias_default_fn };
    prepare_ok(m, &d3);
    assert_int_equal(mc__message_rcpt_count(m), 1);
    assert_string_equal(mc__message_rcpts(m)[0], "catchall@example.org");
    mc_message_free(m);
}

static void test_prepare_case(void **state)
{
    (void)state;
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_set_from(m, "Sender@Example.COM", NULL, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "John.Doe@Example.COM", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_CC, "john.doe@example.com", NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_BCC, "JOHN.DOE@EXAMPLE.COM", NULL), 0);

    mc__msg_defaults insens = { .case_sensitive = false };
    prepare_ok(m, &insens);
    assert_string_equal(mc__message_envelope_from(m), "sender@example.com");
    assert_int_equal(mc__message_rcpt_count(m), 1);
    assert_string_equal(mc__message_rcpts(m)[0], "john.doe@example.com");

    mc__msg_defaults sens = { .case_sensitive = true };
    prepare_ok(m, &sens);
    assert_string_equal(mc__message_envelope_from(m), "Sender@Example.COM");
    assert_int_equal(mc__message_rcpt_count(m), 3);
    assert_string_equal(mc__message_rcpts(m)[0], "John.Doe@Example.COM");
    assert_string_equal(mc__message_rcpts(m)[2], "JOHN.DOE@EXAMPLE.COM");
    mc_message_free(m);
}

static void test_prepare_recipients(void **state)
{
    (void)state;
    /* no recipient */
    mc_message *m = NULL;
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_set_from(m, "a@example.com", NULL, NULL), 0);
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EMESSAGE);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    assert_non_null(strstr(err->message, "no recipients"));
    mc_error_free(err);
    mc_message_free(m);

    /* envelope recipients replace those of the header (sendmail without -t) */
    const char *in = "From: a@example.com\nTo: b@example.com, c@example.com\n\nx\n";
    assert_int_equal(mc_message_parse(&m, in, strlen(in), NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "d@example.com", NULL), 0);
    prepare_ok(m, &D0);
    assert_int_equal(mc__message_rcpt_count(m), 1);
    assert_string_equal(mc__message_rcpts(m)[0], "d@example.com");
    size_t n;
    char *s = render(m, &n, false);
    assert_non_null(strstr(s, "To: b@example.com, c@example.com\r\n"));   /* header unchanged */
    free(s);
    mc_message_free(m);

    /* SMTPUTF8 when an address is not ASCII */
    m = simple();
    prepare_ok(m, &D0);
    assert_false(mc__message_smtputf8(m));
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "用户@例子.广告", NULL), 0);
    prepare_ok(m, &D0);
    assert_true(mc__message_smtputf8(m));
    mc_message_free(m);

    /* an attachment that disappears: MC_EFILE at prepare */
    char *p = write_file("gone.txt", "x", 1);
    m = simple();
    assert_int_equal(mc_message_add_attachment(m, p, NULL), 0);
    unlink(p);
    err = NULL;
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_message_add_attachment(m, p, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    mc_error_free(err);
    /* not prepared: writing is a caller error */
    out o = { .keep = false };
    err = NULL;
    assert_int_equal(mc__message_write(m, sink, &o, &err), MC_EINVAL);
    mc_error_free(err);
    free(p);
    mc_message_free(m);
}

static int failing_sink(void *payload, const void *data, size_t len, mc_err **err)
{
    (void)payload;
    (void)data;
    (void)len;
    return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_DATA, "peer gone");
}

static void test_sink_error_propagates(void **state)
{
    (void)state;
    mc_message *m = simple();
    prepare_ok(m, &D0);
    mc_err *err = NULL;
    assert_int_equal(mc__message_write(m, failing_sink, NULL, &err), MC_ENET);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    mc_error_free(err);
    mc_message_free(m);
}

/* ----------------------------------------------------------- streaming */

static void test_streaming_large_attachment(void **state)
{
    (void)state;
    char *path = NULL;
    assert_true(asprintf(&path, "%s/sparse.bin", tmpdir) > 0);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    const uint64_t big = 20u * 1024 * 1024 + 12345;
    assert_int_equal(ftruncate(fd, (off_t)big), 0);
    close(fd);

    mc_message *m = simple();
    assert_int_equal(mc_message_set_text(m, "see attached", 12, NULL), 0);
    assert_int_equal(mc_message_add_attachment(m, path, NULL), 0);
    prepare_ok(m, &D0);
    uint64_t size = mc__message_size(m);
    uint64_t b64 = 4 * ((big + 2) / 3);
    assert_true(size > b64 + 2 * (b64 / 76));

    out o = { .keep = false };
    mc_err *err = NULL;
    assert_int_equal(mc__message_write(m, sink, &o, &err), 0);
    assert_int_equal(o.total, size);
    assert_true(o.max_call < 1024 * 1024);   /* chunks, not the whole file */
    assert_true(o.calls > 20);
    /* large chunks, not a call per line */
    assert_true(o.calls < size / 32768 + 4);
    assert_true(o.tail_len >= 8);
    assert_memory_equal(o.tail + o.tail_len - 4, "--\r\n", 4);
    mc_message_free(m);
    free(path);
}

/* ------------------------------------------------- text from a file */

/* A single-part message with a fixed Date and Message-ID, its text from
 * memory or from a file: rendered (size checked). Caller frees. */
static char *render_text(const char *t, size_t n, bool from_file, size_t *len)
{
    mc_message *m = simple();
    assert_int_equal(mc_message_add_header(m, "Date", "Thu, 3 Dec 2026 12:00:00 +0000", NULL), 0);
    assert_int_equal(mc_message_add_header(m, "Message-ID", "<fixed@example.com>", NULL), 0);
    char *path = NULL;
    mc_err *err = NULL;
    if (from_file) {
        path = write_file("text-file.txt", t, n);
        if (mc_message_set_text_file(m, path, &err) != 0)
            fail_msg("set_text_file: %s", err ? err->message : "?");
    } else {
        assert_int_equal(mc_message_set_text(m, t, n, NULL), 0);
    }
    prepare_ok(m, &D0);
    char *s = render(m, len, true);
    mc_message_free(m);
    if (path)
        unlink(path);
    free(path);
    return s;
}

static void test_text_file_missing(void **state)
{
    (void)state;
    mc_message *m = simple();
    char *path = NULL;
    assert_true(asprintf(&path, "%s/no-such-body.txt", tmpdir) > 0);
    mc_err *err = NULL;
    assert_int_equal(mc_message_set_text_file(m, path, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);   /* exit 66 */
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, "No such file"));
    mc_error_free(err);
    err = NULL;
    /* a directory is not a body */
    assert_int_equal(mc_message_set_text_file(m, tmpdir, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    assert_non_null(strstr(err->message, "not a regular file"));
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_message_set_text_file(m, NULL, NULL), MC_EINVAL);
    assert_int_equal(mc_message_set_text_file(NULL, path, NULL), MC_EINVAL);
    mc_message_free(m);

    /* removed after it was set: prepare names it */
    m = simple();
    char *body = write_file("gone.txt", "x\n", 2);
    assert_int_equal(mc_message_set_text_file(m, body, NULL), 0);
    unlink(body);
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_NOINPUT);
    assert_non_null(strstr(err->message, body));
    mc_error_free(err);
    mc_message_free(m);
    free(body);

    /* a parsed message keeps its body */
    const char raw[] = "Subject: x\n\nbody\n";
    assert_int_equal(mc_message_parse(&m, raw, sizeof(raw) - 1, NULL), 0);
    assert_int_equal(mc_message_set_text_file(m, path, NULL), MC_EINVAL);
    mc_message_free(m);
    free(path);
}

/* The same text from a file and from memory: the same bytes, whatever the
 * encoding chosen, across the file's read chunks. */
static void test_text_file_equals_memory(void **state)
{
    (void)state;
    static const char *const small[] = {
        "", "a", "a\n", "\n", "\r", "\r\n", "\r\r\n\n", "x\r", "no final newline",
        "line one\nline two\r\n.dot line\n", "end with space \nnul\0here\n",
        "tab at end\t", ("Gr\xc3\xbc\xc3\x9f" "e\n"), "a=b\n=\n",
    };
    static const size_t small_len[] = { 0, 1, 2, 1, 1, 2, 4, 2, 16, 29, 25, 11, 7, 6 };
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
        size_t n1, n2;
        char *a = render_text(small[i], small_len[i], false, &n1);
        char *b = render_text(small[i], small_len[i], true, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a);
        free(b);
    }
    /* large: CRLF pairs and white space straddling every chunk size used
     * (11 KiB encoder calls, 64 KiB reads), a 2000-octet line, 8-bit bytes */
    for (int variant = 0; variant < 2; variant++) {
        size_t n = 300000;
        char *t = malloc(n);
        assert_non_null(t);
        for (size_t i = 0; i < n; i++)
            t[i] = (char)('a' + i % 23);
        for (size_t i = 0; i + 2 < n; i += 1 + (i * 7919) % 97) {
            t[i] = ' ';
            t[i + 1] = '\r';
            t[i + 2] = '\n';
        }
        for (size_t k = 1; k <= 4; k++) {
            size_t at = k * 65536 - 1;
            t[at - 1] = ' ';
            t[at] = '\r';
            t[at + 1] = '\n';
            at = k * 11264 - 1;
            t[at] = '\r';
            t[at + 1] = '\n';
        }
        if (variant) {
            memset(t + 100000, 'q', 2000);          /* too long for 7bit */
            memcpy(t + 200000, "\xc3\xa9", 2);
        }
        size_t n1, n2;
        char *a = render_text(t, n, false, &n1);
        char *b = render_text(t, n, true, &n2);
        assert_non_null(strstr(a, variant ? "quoted-printable" : "7bit"));
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a);
        free(b);
        free(t);
    }
}

/* LF, CR and CRLF line ends all become CRLF; a lone dot line leaves the
 * writer as it is and goes on the wire doubled. */
static void test_text_file_crlf_and_dot(void **state)
{
    (void)state;
    size_t n;
    const char t[] = "one\ntwo\r\nthree\rfour\n.\n..two dots\nlast";
    char *s = render_text(t, sizeof(t) - 1, true, &n);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "7bit");
    assert_string_equal(s + off, "one\r\ntwo\r\nthree\r\nfour\r\n.\r\n..two dots\r\nlast\r\n");
    hfree(&h);

    char *wire = malloc(2 * n + 2);
    assert_non_null(wire);
    mc__dotstuff ds = { 0 };
    size_t w = mc__dotstuff_run(&ds, s, n, wire);
    w += mc__dotstuff_end(&ds, wire + w);
    wire[w] = '\0';
    assert_non_null(strstr(wire, "\r\nfour\r\n..\r\n...two dots\r\nlast\r\n"));
    /* the one line of a single dot is the terminator */
    assert_ptr_equal(strstr(wire, "\r\n.\r\n"), wire + w - 5);
    free(wire);
    free(s);

    /* quoted-printable text too: the dot line is its own line */
    const char u[] = "Gr\xc3\xbc\xc3\x9f" "e\n.\nend\n";
    s = render_text(u, sizeof(u) - 1, true, &n);
    off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "quoted-printable");
    assert_string_equal(s + off, "Gr=C3=BC=C3=9Fe\r\n.\r\nend\r\n");
    hfree(&h);
    free(s);
}

/* A file that changes between prepare and the write fails that write
 * (the announced size would be wrong); with an attachment it is a part. */
static void test_text_file_changed_and_multipart(void **state)
{
    (void)state;
    mc_message *m = simple();
    char *path = write_file("changing.txt", "short\n", 6);
    assert_int_equal(mc_message_set_text_file(m, path, NULL), 0);
    prepare_ok(m, &D0);
    free(write_file("changing.txt", "longer now\n", 11));
    out o = { .keep = false };
    mc_err *err = NULL;
    assert_int_equal(mc__message_write(m, sink, &o, &err), MC_EFILE);
    assert_non_null(strstr(err->message, "changed while it was sent"));
    mc_error_free(err);
    /* prepared again, it goes */
    prepare_ok(m, &D0);
    size_t n;
    char *s = render(m, &n, true);
    assert_non_null(strstr(s, "\r\n\r\nlonger now\r\n"));
    free(s);
    mc_message_free(m);

    /* text file + attachment: multipart/mixed, the text part first */
    m = simple();
    char *att = write_file("att.bin", "\x01\x02\x03", 3);
    free(write_file("changing.txt", "body =_mc_ text\n", 16));
    assert_int_equal(mc_message_set_text_file(m, path, NULL), 0);
    assert_int_equal(mc_message_add_attachment(m, att, NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "multipart/mixed"));
    assert_non_null(strstr(s, "Content-Transfer-Encoding: 7bit\r\n\r\nbody =_mc_ text\r\n--=_mc_"));
    assert_non_null(strstr(s, "AQID\r\n"));
    free(s);
    /* text file + html: multipart/alternative, the file's text first */
    assert_int_equal(mc_message_set_html(m, "<p>h</p>", 8, NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "multipart/alternative"));
    char *tp = strstr(s, "\r\n\r\nbody =_mc_ text\r\n--=_mc_");
    char *hp = strstr(s, "<p>h</p>");
    assert_true(tp && hp && tp < hp);
    free(s);
    assert_int_equal(mc_message_set_html(m, NULL, 0, NULL), 0);
    /* mc_message_set_text replaces the file */
    assert_int_equal(mc_message_set_text(m, "mem\n", 4, NULL), 0);
    prepare_ok(m, &D0);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "\r\n\r\nmem\r\n--=_mc_"));
    assert_null(strstr(s, "body =_mc_"));
    free(s);
    mc_message_free(m);
    free(att);
    free(path);
}

/* ------------------------------------------- sendmail input (issue 12) */

/* Parse as sendmail does, prepare for d with one envelope recipient,
 * render (lines not checked: a raw body keeps its bare LFs for the DATA
 * phase to normalise). Caller frees. */
static char *sendmail_render(const char *in, const mc__msg_defaults *d, size_t *n)
{
    mc_message *m = NULL;
    mc_err *err = NULL;
    if (mc__message_parse_sendmail(&m, in, strlen(in), &err) != 0)
        fail_msg("parse_sendmail: %s", err ? err->message : "?");
    assert_int_equal(mc_message_add_envelope_recipient(m, "to@example.com", NULL), 0);
    prepare_ok(m, d);
    char *s = render(m, n, false);
    mc_message_free(m);
    return s;
}

static void test_parse_sendmail_body_only(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "app@example.net", .sender_name = "App" };
    size_t n;
    /* not a header first: all body; our headers, a blank line, the text */
    char *s = sendmail_render("hello\nSubject: no\n", &d, &n);
    assert_non_null(strstr(s, "From: App <app@example.net>\r\n"));
    const char *sep = strstr(s, "\r\n\r\n");
    assert_non_null(sep);
    assert_string_equal(sep + 4, "hello\nSubject: no\n");
    assert_null(strstr(s, "Subject: no\r\n"));
    free(s);
    /* a header, then a line that is none: the body starts there */
    s = sendmail_render("Warning: x\nmore\n", &d, &n);
    sep = strstr(s, "\r\n\r\n");
    assert_non_null(sep);
    assert_string_equal(sep + 4, "more\n");
    assert_true(strstr(s, "Warning: x\r\n") < sep);
    free(s);
    /* white space first: all body */
    s = sendmail_render(" indented\n", &d, &n);
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, " indented\n");
    free(s);
    /* an mbox From_ line is dropped; the rest parses as usual */
    s = sendmail_render("From root@host Thu Dec  3 12:00:00 2026\nSubject: s\n\nbody\n", &d, &n);
    assert_null(strstr(s, "From root@host"));
    assert_non_null(strstr(s, "Subject: s\r\n"));
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, "body\n");
    free(s);
    /* "From  :" is a header with blanks before its colon (obsolete syntax),
     * not an mbox line: kept (found by fuzz-header) */
    s = sendmail_render("From  : a@b.example\nSubject: s\n\nbody\n", &d, &n);
    assert_non_null(strstr(s, "a@b.example"));
    assert_non_null(strstr(s, "Subject: s\r\n"));
    free(s);
    /* empty input: an empty body */
    s = sendmail_render("", &d, &n);
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, "");
    free(s);

    /* still refused: a bare CR or NUL in a header; and for send -t the
     * strict parser keeps refusing a non-header first line */
    mc_message *m = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__message_parse_sendmail(&m, "Subject: a\rb\n\nx\n", 16, &err), MC_EMESSAGE);
    assert_non_null(strstr(err->message, "bare CR"));
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_message_parse(&m, "hello\n", 6, &err), MC_EMESSAGE);
    assert_non_null(strstr(err->message, "not a header field"));
    mc_error_free(err);
}

static void test_null_sender_and_resent(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "app@example.net", .sender_name = "App" };
    /* "<>" and "" are the null reverse-path; From: still gets an address */
    for (int i = 0; i < 2; i++) {
        mc_message *m = simple();
        assert_int_equal(mc_message_set_envelope_from(m, i ? "" : "<>", NULL), 0);
        prepare_ok(m, &d);
        assert_string_equal(mc__message_envelope_from(m), "");
        mc_message_free(m);
    }
    /* sender.override replaces it too */
    mc__msg_defaults o = d;
    o.sender_override = true;
    mc_message *m = simple();
    assert_int_equal(mc_message_set_envelope_from(m, "<>", NULL), 0);
    prepare_ok(m, &o);
    assert_string_equal(mc__message_envelope_from(m), "app@example.net");
    mc_message_free(m);
    /* null sender, no From and no sender.address: nothing for From: */
    assert_int_equal(mc_message_new(&m, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "to@example.com", NULL), 0);
    assert_int_equal(mc_message_set_envelope_from(m, "<>", NULL), 0);
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &D0, &err), MC_EMESSAGE);
    assert_non_null(strstr(err->message, "From:"));
    mc_error_free(err);
    mc_message_free(m);

    /* Resent-To/Cc/Bcc replace To/Cc/Bcc; Resent-Bcc is not written; an
     * added recipient joins them, unseen */
    const char raw[] = "To: old@example.com\nCc: oldcc@example.com\nSubject: fwd\n"
                       "Resent-To: new@example.com\nResent-Cc: c@example.com\n"
                       "resent-bcc: hidden@example.com\n\nbody\n";
    assert_int_equal(mc_message_parse(&m, raw, sizeof(raw) - 1, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_BCC, "extra@example.com", NULL), 0);
    prepare_ok(m, &d);
    assert_int_equal(mc__message_rcpt_count(m), 4);
    const char *const *r = mc__message_rcpts(m);
    assert_string_equal(r[0], "new@example.com");
    assert_string_equal(r[1], "c@example.com");
    assert_string_equal(r[2], "hidden@example.com");
    assert_string_equal(r[3], "extra@example.com");
    size_t n;
    char *s = render(m, &n, false);
    assert_null(strstr(s, "hidden@example.com"));
    assert_null(strstr(s, "extra@example.com"));
    assert_non_null(strstr(s, "To: old@example.com\r\n"));
    free(s);
    mc_message_free(m);
    /* without Resent-*: To/Cc/Bcc plus the added one */
    const char plain[] = "To: a@example.com\nBcc: b@example.com\n\nbody\n";
    assert_int_equal(mc_message_parse(&m, plain, sizeof(plain) - 1, NULL), 0);
    assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "extra@example.com", NULL), 0);
    prepare_ok(m, &d);
    assert_int_equal(mc__message_rcpt_count(m), 3);
    assert_string_equal(mc__message_rcpts(m)[2], "extra@example.com");
    mc_message_free(m);
}

/* From: without a name: sender.name when the address is sender.address */
static void test_from_sender_address_keeps_name(void **state)
{
    (void)state;
    mc__msg_defaults d = { .sender_address = "app@example.net", .sender_name = "App" };
    static const struct { const char *from, *want; } cases[] = {
        { "app@example.net", "\r\nFrom: App <app@example.net>\r\n" },
        { "App@Example.NET", "\r\nFrom: App <App@Example.NET>\r\n" },
        { "other@example.net", "\r\nFrom: other@example.net\r\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mc_message *m = NULL;
        assert_int_equal(mc_message_new(&m, NULL), 0);
        assert_int_equal(mc_message_set_from(m, cases[i].from, NULL, NULL), 0);
        assert_int_equal(mc_message_add_recipient(m, MC_RCPT_TO, "to@example.com", NULL), 0);
        prepare_ok(m, &d);
        size_t n;
        char *s = render(m, &n, true);
        if (!strstr(s, cases[i].want))
            fail_msg("From for %s:\n%s", cases[i].from, s);
        free(s);
        mc_message_free(m);
    }
}

static void test_set_dsn(void **state)
{
    (void)state;
    mc_message *m = simple();
    const char *n, *r, *e;
    mc__message_dsn(m, &n, &r, &e);
    assert_null(n);
    assert_null(r);
    assert_null(e);
    assert_int_equal(mc_message_set_dsn(m, "failure,Delay", "hdrs", "id-1", NULL), 0);
    mc__message_dsn(m, &n, &r, &e);
    assert_string_equal(n, "FAILURE,DELAY");
    assert_string_equal(r, "HDRS");
    assert_string_equal(e, "id-1");
    assert_int_equal(mc_message_set_dsn(m, "Never", NULL, NULL, NULL), 0);
    mc__message_dsn(m, &n, &r, &e);
    assert_string_equal(n, "NEVER");
    assert_null(r);
    assert_null(e);
    static const char *const bad_notify[] = { "", "never,success", "success,success", "sometimes",
                                              "success,", ",delay" };
    for (size_t i = 0; i < sizeof(bad_notify) / sizeof(bad_notify[0]); i++) {
        mc_err *err = NULL;
        assert_int_equal(mc_message_set_dsn(m, bad_notify[i], NULL, NULL, &err), MC_EINVAL);
        assert_int_equal(err->outcome, MC_OUTCOME_USAGE);
        mc_error_free(err);
    }
    char longid[102];
    memset(longid, 'x', 101);
    longid[101] = '\0';
    assert_int_equal(mc_message_set_dsn(m, NULL, "body", NULL, NULL), MC_EINVAL);
    assert_int_equal(mc_message_set_dsn(m, NULL, NULL, "", NULL), MC_EINVAL);
    assert_int_equal(mc_message_set_dsn(m, NULL, NULL, "a b", NULL), MC_EINVAL);
    assert_int_equal(mc_message_set_dsn(m, NULL, NULL, longid, NULL), MC_EINVAL);
    longid[100] = '\0';
    assert_int_equal(mc_message_set_dsn(m, NULL, NULL, longid, NULL), 0);
    /* a refused call leaves what was set */
    mc__message_dsn(m, &n, &r, &e);
    assert_null(n);
    assert_string_equal(e, longid);
    mc_message_free(m);
}

/* ------------------------------------------------ charset (issue 10) */

/* A message with a fixed Date and Message-ID whose text (and html, when
 * not NULL) is t, or its text from a file holding t; prepared for a server
 * with that charset and rendered. Caller frees. */
static char *render_cs(const char *charset, const char *t, size_t n, const char *html,
                       bool from_file, size_t *len)
{
    mc_message *m = simple();
    assert_int_equal(mc_message_add_header(m, "Date", "Thu, 3 Dec 2026 12:00:00 +0000", NULL), 0);
    assert_int_equal(mc_message_add_header(m, "Message-ID", "<fixed@example.com>", NULL), 0);
    char *path = NULL;
    if (from_file) {
        path = write_file("cs-text.txt", t, n);
        assert_int_equal(mc_message_set_text_file(m, path, NULL), 0);
    } else {
        assert_int_equal(mc_message_set_text(m, t, n, NULL), 0);
    }
    if (html)
        assert_int_equal(mc_message_set_html(m, html, strlen(html), NULL), 0);
    mc__msg_defaults d = { .charset = charset };
    prepare_ok(m, &d);
    char *s = render(m, len, true);
    mc_message_free(m);
    if (path)
        unlink(path);
    free(path);
    return s;
}

/* Prepare the text t for charset: the error (caller frees), asserted to
 * be code with nothing prepared. */
static mc_err *prepare_cs_fails(const char *charset, const char *t, size_t n, bool from_file,
                                int code, char **path_out)
{
    mc_message *m = simple();
    char *path = NULL;
    if (from_file) {
        path = write_file("cs-bad.txt", t, n);
        assert_int_equal(mc_message_set_text_file(m, path, NULL), 0);
    } else {
        assert_int_equal(mc_message_set_text(m, t, n, NULL), 0);
    }
    mc__msg_defaults d = { .charset = charset };
    mc_err *err = NULL;
    assert_int_equal(mc__message_prepare(m, &d, &err), code);
    assert_non_null(err);
    assert_int_equal(mc__message_size(m), 0);   /* nothing to send */
    mc_message_free(m);
    if (path_out)
        *path_out = path;
    else
        free(path);
    return err;
}

static void test_charset_latin1(void **state)
{
    (void)state;
    size_t n;
    const char text[] = "Gr\xc3\xbc\xc3\x9f" "e\n";   /* Grüße */
    char *s = render_cs("ISO-8859-1", text, sizeof(text) - 1, NULL, false, &n);
    hdrs h;
    size_t off = parse_hdrs(s, n, &h);
    assert_string_equal(hget(&h, "Content-Type"), "text/plain; charset=ISO-8859-1");
    assert_string_equal(hget(&h, "Content-Transfer-Encoding"), "quoted-printable");
    assert_string_equal(s + off, "Gr=FC=DFe\r\n");
    hfree(&h);
    free(s);

    /* the same message again for a UTF-8 server: UTF-8 (prepare is per server) */
    mc_message *m = simple();
    assert_int_equal(mc_message_set_text(m, text, sizeof(text) - 1, NULL), 0);
    mc__msg_defaults latin = { .charset = "ISO-8859-1" }, utf8 = { .charset = "utf-8" };
    prepare_ok(m, &latin);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "charset=ISO-8859-1\r\n"));
    assert_non_null(strstr(s, "\r\n\r\nGr=FC=DFe\r\n"));
    free(s);
    prepare_ok(m, &utf8);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "charset=UTF-8\r\n"));
    assert_non_null(strstr(s, "\r\n\r\nGr=C3=BC=C3=9Fe\r\n"));
    free(s);
    mc_message_free(m);

    /* text and HTML both converted and labelled; ASCII stays 7bit */
    s = render_cs("ISO-8859-15", "price 5 \xe2\x82\xac\n", 11, "<p>caf\xc3\xa9</p>", false, &n);
    assert_non_null(strstr(s, "Content-Type: text/plain; charset=ISO-8859-15\r\n"
                              "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                              "price 5 =A4\r\n"));
    assert_non_null(strstr(s, "Content-Type: text/html; charset=ISO-8859-15\r\n"
                              "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                              "<p>caf=E9</p>\r\n"));
    free(s);
    s = render_cs("US-ASCII", "plain\n", 6, NULL, false, &n);
    assert_non_null(strstr(s, "Content-Type: text/plain; charset=US-ASCII\r\n"
                              "Content-Transfer-Encoding: 7bit\r\n\r\nplain\r\n"));
    free(s);
    /* a name with a tspecial is quoted */
    s = render_cs("ISO_8859-1:1987", "x\n", 2, NULL, false, &n);
    assert_non_null(strstr(s, "Content-Type: text/plain; charset=\"ISO_8859-1:1987\"\r\n"));
    free(s);
    /* the charset only changes the body: the Subject stays UTF-8 words */
    m = simple();
    assert_int_equal(mc_message_set_subject(m, "Gr\xc3\xbc\xc3\x9f" "e", NULL), 0);
    assert_int_equal(mc_message_set_text(m, "x", 1, NULL), 0);
    prepare_ok(m, &latin);
    s = render(m, &n, true);
    assert_non_null(strstr(s, "Subject: =?UTF-8?"));
    free(s);
    mc_message_free(m);
}

static void test_charset_unrepresentable(void **state)
{
    (void)state;
    const char euro[] = "first line\nprice 5 \xe2\x82\xac\n";
    mc_err *err = prepare_cs_fails("ISO-8859-1", euro, sizeof(euro) - 1, false, MC_EMESSAGE, NULL);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);   /* exit 65 */
    assert_int_equal(err->stage, MC_STAGE_MESSAGE);
    assert_non_null(strstr(err->message, "ISO-8859-1"));
    assert_non_null(strstr(err->message, "U+20AC"));
    assert_non_null(strstr(err->message, "\"\xe2\x82\xac\""));
    assert_non_null(strstr(err->message, "text line 2"));
    assert_non_null(err->hint);
    mc_error_free(err);

    /* not UTF-8 at all */
    err = prepare_cs_fails("ISO-8859-1", "ok\n\xff\n", 4, false, MC_EMESSAGE, NULL);
    assert_non_null(strstr(err->message, "text line 2: byte 0xFF is not UTF-8"));
    mc_error_free(err);
    err = prepare_cs_fails("ISO-8859-1", "ends in \xc3", 9, false, MC_EMESSAGE, NULL);
    assert_non_null(strstr(err->message, "ends inside a UTF-8 sequence"));
    mc_error_free(err);
    /* a control character is named, not shown */
    err = prepare_cs_fails("ISO-8859-1", "\xe2\x80\xae", 3, false, MC_EMESSAGE, NULL);
    assert_non_null(strstr(err->message, "U+202E cannot be written"));
    assert_null(strstr(err->message, "\xe2\x80\xae"));
    mc_error_free(err);

    /* the HTML part is checked too */
    mc_message *m = simple();
    assert_int_equal(mc_message_set_text(m, "ok", 2, NULL), 0);
    assert_int_equal(mc_message_set_html(m, "<p>\xe2\x82\xac</p>", 10, NULL), 0);
    mc__msg_defaults d = { .charset = "ISO-8859-1" };
    err = NULL;
    assert_int_equal(mc__message_prepare(m, &d, &err), MC_EMESSAGE);
    assert_non_null(strstr(err->message, "HTML line 1"));
    mc_error_free(err);
    mc_message_free(m);

    /* from a file: named by its path, the line counted across chunks (the
     * euro sign split by the 64 KiB read) */
    size_t big = 3 * 65536;
    char *t = malloc(big);
    for (size_t i = 0; i < big; i++)
        t[i] = (i % 64 == 63) ? '\n' : 'a';
    memcpy(t + 65535, "\xe2\x82\xac", 3);
    size_t lines_before = 0;
    for (size_t i = 0; i < 65535; i++)
        lines_before += t[i] == '\n';
    char *path = NULL;
    err = prepare_cs_fails("ISO-8859-1", t, big, true, MC_EMESSAGE, &path);
    char want[64];
    snprintf(want, sizeof(want), " line %zu: \"\xe2\x82\xac\" (U+20AC)", lines_before + 1);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, want));
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    mc_error_free(err);
    free(path);
    free(t);
    err = prepare_cs_fails("ISO-8859-1", "tail \xe2\x82", 7, true, MC_EMESSAGE, NULL);
    assert_non_null(strstr(err->message, "ends inside a UTF-8 sequence"));
    mc_error_free(err);
}

static void test_charset_unknown(void **state)
{
    (void)state;
    char why[160];
    assert_true(mc__charset_usable("UTF-8", why, sizeof(why)));
    assert_true(mc__charset_usable("utf8", why, sizeof(why)));
    assert_true(mc__charset_usable(NULL, NULL, 0));
    assert_true(mc__charset_usable("ISO-8859-1", why, sizeof(why)));
    assert_true(mc__charset_usable("latin1", why, sizeof(why)));
    assert_true(mc__charset_usable("ISO-2022-JP", why, sizeof(why)));
    assert_false(mc__charset_usable("NO-SUCH-CHARSET", why, sizeof(why)));
    assert_string_equal(why, "unknown charset \"NO-SUCH-CHARSET\" (iconv does not know it)");
    static const char *const unfit[] = { "UTF-16", "UTF-16LE", "UTF-32", "UTF-7", "EBCDIC-US" };
    for (size_t i = 0; i < sizeof(unfit) / sizeof(unfit[0]); i++) {
        if (mc__charset_usable(unfit[i], why, sizeof(why)))
            fail_msg("%s passed", unfit[i]);
        assert_non_null(strstr(why, "cannot carry mail text"));
    }
    /* at send: a configuration error, before anything else */
    mc_err *err = prepare_cs_fails("NO-SUCH-CHARSET", "x", 1, false, MC_ECONFIG, NULL);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_non_null(strstr(err->message, "NO-SUCH-CHARSET"));
    mc_error_free(err);
    err = prepare_cs_fails("UTF-16", "x", 1, true, MC_ECONFIG, NULL);
    assert_non_null(strstr(err->message, "UTF-16"));
    mc_error_free(err);
}

/* A stateful 7-bit charset: the shift back to ASCII at the very end comes
 * from iconv's flush, for memory text and for a file alike. */
static void test_charset_iso2022jp(void **state)
{
    (void)state;
    const char text[] = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";   /* 日本語, no line end */
    const char want[] = "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
                        "Content-Transfer-Encoding: 7bit\r\n\r\n"
                        "\x1b$BF|K\\8l\x1b(B\r\n";
    for (int f = 0; f < 2; f++) {
        size_t n;
        char *s = render_cs("ISO-2022-JP", text, sizeof(text) - 1, NULL, f, &n);
        if (!strstr(s, want))
            fail_msg("%s:\n%s", f ? "file" : "memory", s);
        free(s);
    }
    /* with the boundary prefix in it, the file's text is quoted-printable
     * (a boundary is looked for in the file, not in its conversion) */
    const char mk[] = "=_mc_ \xe6\x97\xa5\n";
    size_t n;
    char *s = render_cs("ISO-2022-JP", mk, sizeof(mk) - 1, "<p>x</p>", true, &n);
    assert_non_null(strstr(s, "charset=ISO-2022-JP\r\nContent-Transfer-Encoding: quoted-printable"));
    free(s);
}

/* A text file converted chunk by chunk (64 KiB reads in prepare, 11 KiB in
 * the writer) gives the bytes of the same text converted in one piece,
 * with multi-byte characters split by both chunk sizes. */
static void test_charset_text_file_streaming(void **state)
{
    (void)state;
    static const char unit[] = "\xc3\xbc\xe2\x82\xac";   /* ü€ */
    const size_t big = 300 * 1024;
    char *t = malloc(big + 8);
    size_t pre;
    for (pre = 0; pre < 200; pre++) {
        size_t n = 0;
        for (size_t i = 0; i < pre; i++)
            t[n++] = 'x';
        for (size_t k = 0; n + 6 < big; k++) {
            memcpy(t + n, unit, 5);
            n += 5;
            if (k % 15 == 14)
                t[n++] = '\n';
        }
        t[n] = '\0';
        /* continuation bytes at both chunk boundaries */
        if ((t[65536] & 0xc0) == 0x80 && (t[11264] & 0xc0) == 0x80 && (t[2 * 11264] & 0xc0) == 0x80)
            break;
    }
    assert_true(pre < 200);
    size_t tn = strlen(t), n1, n2;
    char *mem = render_cs("ISO-8859-15", t, tn, NULL, false, &n1);
    char *file = render_cs("ISO-8859-15", t, tn, NULL, true, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(mem, file, n1);
    assert_non_null(strstr(mem, "charset=ISO-8859-15\r\nContent-Transfer-Encoding: quoted-printable"));
    assert_non_null(strstr(mem, "=FC=A4=FC=A4"));
    free(mem);
    free(file);
    /* UTF-8 servers: unchanged bytes from a file, as before */
    mem = render_cs(NULL, t, tn, NULL, false, &n1);
    file = render_cs("UTF-8", t, tn, NULL, true, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(mem, file, n1);
    assert_non_null(strstr(mem, "=C3=BC=E2=82=AC"));
    free(mem);
    free(file);
    free(t);
}

/* A file that changes between prepare and write: MC_EFILE, also when the
 * change makes it unconvertible. */
static void test_charset_text_file_changed(void **state)
{
    (void)state;
    mc_message *m = simple();
    char *path = write_file("cs-change.txt", "caf\xc3\xa9\n", 6);
    assert_int_equal(mc_message_set_text_file(m, path, NULL), 0);
    mc__msg_defaults d = { .charset = "ISO-8859-1" };
    prepare_ok(m, &d);
    free(write_file("cs-change.txt", "caf\xe2\x82\xac", 6));   /* same size */
    out o = { .keep = false };
    mc_err *err = NULL;
    assert_int_equal(mc__message_write(m, sink, &o, &err), MC_EFILE);
    assert_non_null(strstr(err->message, "changed while it was sent"));
    mc_error_free(err);
    mc_message_free(m);
    unlink(path);
    free(path);
}

/* ------------------------------------------ mc_message_parse_ex (issue 10) */

static void test_parse_ex(void **state)
{
    (void)state;
    mc_message *m = (mc_message *)&m;
    mc_err *err = NULL;
    const char mbox[] = "From root@host Thu Dec  3 12:00:00 2026\nSubject: s\nTo: a@example.com\n\nbody\n";
    const char loose[] = "Subject: s\nTo: a@example.com\nnot a header\n";
    /* flags 0: mc_message_parse */
    assert_int_equal(mc_message_parse_ex(&m, loose, sizeof(loose) - 1, 0, &err), MC_EMESSAGE);
    assert_null(m);
    assert_non_null(strstr(err->message, "not a header field"));
    mc_error_free(err);
    err = NULL;
    assert_int_equal(mc_message_parse_ex(&m, mbox, sizeof(mbox) - 1, 0, &err), MC_EMESSAGE);
    mc_error_free(err);
    err = NULL;
    /* MC_PARSE_SENDMAIL: the From_ line dropped, a non-header line starts the body */
    mc__msg_defaults d = { .sender_address = "app@example.net" };
    assert_int_equal(mc_message_parse_ex(&m, mbox, sizeof(mbox) - 1, MC_PARSE_SENDMAIL, &err), 0);
    prepare_ok(m, &d);
    size_t n;
    char *s = render(m, &n, false);
    assert_null(strstr(s, "From root@host"));
    assert_non_null(strstr(s, "Subject: s\r\n"));
    assert_true(strstr(s, "Subject: s\r\n") < strstr(s, "\r\n\r\n"));
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, "body\n");
    free(s);
    mc_message_free(m);
    assert_int_equal(mc_message_parse_ex(&m, loose, sizeof(loose) - 1, MC_PARSE_SENDMAIL, &err), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "to@example.com", NULL), 0);
    prepare_ok(m, &d);
    s = render(m, &n, false);
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, "not a header\n");
    assert_true(strstr(s, "Subject: s\r\n") < strstr(s, "\r\n\r\n"));
    free(s);
    mc_message_free(m);
    /* a first line that is no header: everything is body */
    assert_int_equal(mc_message_parse_ex(&m, "hello\nTo: x@y\n", 14, MC_PARSE_SENDMAIL, NULL), 0);
    assert_int_equal(mc_message_add_envelope_recipient(m, "to@example.com", NULL), 0);
    prepare_ok(m, &d);
    s = render(m, &n, false);
    assert_string_equal(strstr(s, "\r\n\r\n") + 4, "hello\nTo: x@y\n");
    free(s);
    mc_message_free(m);
    /* still refused with the flag: NUL or bare CR in the header block */
    assert_int_equal(mc_message_parse_ex(&m, "Subject: a\0b\n\nx\n", 16, MC_PARSE_SENDMAIL, &err),
                     MC_EMESSAGE);
    assert_non_null(strstr(err->message, "NUL"));
    mc_error_free(err);
    err = NULL;
    /* misuse */
    m = (mc_message *)&m;
    assert_int_equal(mc_message_parse_ex(&m, "x: y\n\n", 6, 1u << 7, &err), MC_EINVAL);
    assert_null(m);
    assert_int_equal(err->outcome, MC_OUTCOME_USAGE);
    mc_error_free(err);
    assert_int_equal(mc_message_parse_ex(NULL, "x: y\n\n", 6, 0, NULL), MC_EINVAL);
    assert_int_equal(mc_message_parse_ex(&m, NULL, 3, MC_PARSE_SENDMAIL, NULL), MC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mime_type_threads),
        cmocka_unit_test(test_mime_type),
        cmocka_unit_test(test_rfc2047_ascii_passthrough),
        cmocka_unit_test(test_rfc2047_utf8_subject),
        cmocka_unit_test(test_rfc2047_long_ascii_folded),
        cmocka_unit_test(test_rfc2047_word_length),
        cmocka_unit_test(test_rfc2231_ascii),
        cmocka_unit_test(test_rfc2231_utf8),
        cmocka_unit_test(test_rfc2231_long_continuation),
        cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_compose_roundtrip),
        cmocka_unit_test(test_bcc_only_in_envelope),
        cmocka_unit_test(test_text_encodings),
        cmocka_unit_test(test_html_only_and_empty),
        cmocka_unit_test(test_add_header),
        cmocka_unit_test(test_display_names),
        cmocka_unit_test(test_from_name_and_reply),
        cmocka_unit_test(test_long_address_list_and_name_only),
        cmocka_unit_test(test_size_equals_bytes_written),
        cmocka_unit_test(test_header_parse),
        cmocka_unit_test(test_parse_folded_groups_crlf),
        cmocka_unit_test(test_parse_lf_adds_date_and_id),
        cmocka_unit_test(test_parse_8bit_and_file),
        cmocka_unit_test(test_parse_file_8bit_scan_is_lazy),
        cmocka_unit_test(test_parse_small_file_in_memory),
        cmocka_unit_test(test_prepare_envelope_sender),
        cmocka_unit_test(test_prepare_bare_sender),
        cmocka_unit_test(test_prepare_override),
        cmocka_unit_test(test_prepare_aliases),
        cmocka_unit_test(test_prepare_case),
        cmocka_unit_test(test_prepare_recipients),
        cmocka_unit_test(test_sink_error_propagates),
        cmocka_unit_test(test_streaming_large_attachment),
        cmocka_unit_test(test_text_file_missing),
        cmocka_unit_test(test_text_file_equals_memory),
        cmocka_unit_test(test_text_file_crlf_and_dot),
        cmocka_unit_test(test_text_file_changed_and_multipart),
        cmocka_unit_test(test_parse_sendmail_body_only),
        cmocka_unit_test(test_null_sender_and_resent),
        cmocka_unit_test(test_from_sender_address_keeps_name),
        cmocka_unit_test(test_set_dsn),
        cmocka_unit_test(test_charset_latin1),
        cmocka_unit_test(test_charset_unrepresentable),
        cmocka_unit_test(test_charset_unknown),
        cmocka_unit_test(test_charset_iso2022jp),
        cmocka_unit_test(test_charset_text_file_streaming),
        cmocka_unit_test(test_charset_text_file_changed),
        cmocka_unit_test(test_parse_ex),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
