/* smtp: the engine over an in-memory mc_stream. Scripted server replies go
 * in (one chunk per read() call; the end of the script is the peer
 * closing), the exact client transcript comes out, every write() call
 * recorded on its own so the tests can count them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "smtp.h"

/* ------------------------------------------------------------ fixture */

#define MAX_WRITES 4096

typedef struct mem_stream {
    mc_stream          base;
    const char *const *script;      /* NULL-terminated: then the peer closes */
    size_t             next, off;
    size_t             reads;
    mc__buf            writes[MAX_WRITES];
    size_t             n_writes;
    bool               closed;
    int                starttls_calls;
    const mc_connect_opts *starttls_opts;
    int64_t            read_deadline;   /* probe_ops: the last deadline set */
    int                probes;          /* reads with a deadline already past */
    bool               nothing_waiting; /* such a read times out */
} mem_stream;

static ssize_t mem_read(mc_stream *st, void *buf, size_t len, mc_err **err)
{
    mem_stream *m = (mem_stream *)st;
    m->reads++;
    if (m->read_deadline && m->read_deadline <= mc__mono_ms()) {
        m->probes++;
        if (m->nothing_waiting)
            return mc__error_set(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                 "timed out");
    }
    if (!m->script || !m->script[m->next])
        return 0;
    const char *c = m->script[m->next] + m->off;
    size_t n = strlen(c);
    if (n > len)
        n = len;
    memcpy(buf, c, n);
    m->off += n;
    if (m->script[m->next][m->off] == '\0') {
        m->next++;
        m->off = 0;
    }
    return (ssize_t)n;
}

static int mem_write(mc_stream *st, const void *buf, size_t len, mc_err **err)
{
    (void)err;
    mem_stream *m = (mem_stream *)st;
    assert_false(m->closed);
    assert_true(m->n_writes < MAX_WRITES);
    assert_int_equal(mc__buf_put(&m->writes[m->n_writes++], buf, len), 0);
    return 0;
}

static void mem_close(mc_stream *st)
{
    mem_stream *m = (mem_stream *)st;
    assert_false(m->closed);   /* closed exactly once */
    m->closed = true;
}

static const mc_stream_ops mem_ops = {
    .size = sizeof(mc_stream_ops),
    .read = mem_read,
    .write = mem_write,
    .close = mem_close,
};

static void mem_set_read_deadline(mc_stream *st, int64_t deadline_ms)
{
    ((mem_stream *)st)->read_deadline = deadline_ms;
}

/* A stream that keeps read deadlines (ABI 1.1): the engine can look for
 * bytes waiting without waiting for any. */
static const mc_stream_ops probe_ops = {
    .size = sizeof(mc_stream_ops),
    .read = mem_read,
    .write = mem_write,
    .close = mem_close,
    .set_read_deadline = mem_set_read_deadline,
};

/* A fake STARTTLS: the "handshake" just flips encrypted. */
/* The context the streams and engines log to (their lines, their secrets). */
static mc_host_ctx thc;

static int fake_starttls(mc_host_ctx *hc, mc_stream *st, const mc_connect_opts *o,
                         mc_err **err)
{
    (void)hc;
    (void)err;
    mem_stream *m = (mem_stream *)st;
    m->starttls_calls++;
    m->starttls_opts = o;
    st->encrypted = true;
    return 0;
}

static const mc_transport_ops fake_transport = {
    .size = sizeof(mc_transport_ops),
    .default_port = 587,
    .starttls = fake_starttls,
};

static const mc_connect_opts connect_opts = {
    .size = sizeof(mc_connect_opts),
    .host = "smtp.example.com",
    .port = 587,
    .timeout_ms = 1000,
    .tls_min = 12,
};

static mem_stream *new_stream(const char *const *script, bool encrypted)
{
    mem_stream *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->base.ops = &mem_ops;
    m->base.encrypted = encrypted;
    m->base.hc = &thc;          /* as a transport sets it */
    m->script = script;
    return m;
}

static void free_stream(mem_stream *m)
{
    for (size_t i = 0; i < m->n_writes; i++)
        mc__buf_free(&m->writes[i]);
    free(m);
}

/* Everything written from write number `from` on, concatenated. */
static char *transcript_from(const mem_stream *m, size_t from)
{
    mc__buf all = MC__BUF_INIT;
    assert_int_equal(mc__buf_puts(&all, ""), 0);
    for (size_t i = from; i < m->n_writes; i++)
        assert_int_equal(mc__buf_put(&all, m->writes[i].data, m->writes[i].len), 0);
    return mc__buf_detach(&all);
}

static void assert_transcript(const mem_stream *m, size_t from, const char *expect)
{
    char *t = transcript_from(m, from);
    assert_string_equal(t, expect);
    free(t);
}

static mc__smtp_opts default_opts(mem_stream *m)
{
    mc__smtp_opts o = {
        .stream = &m->base,
        .transport = &fake_transport,
        .connect = &connect_opts,
        .helo = "client.example",
        .max_recipients = 100,
    };
    return o;
}

static mc__smtp *open_ok(mem_stream *m)
{
    mc__smtp_opts o = default_opts(m);
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    int rc = mc__smtp_open(&s, &o, &err);
    if (rc != 0)
        fail_msg("open: %d %s", rc, err ? err->message : "");
    assert_non_null(s);
    return s;
}

/* The message body a test writer hands to the sink, in pieces. */
typedef struct body {
    const char *data;
    size_t      len;
    size_t      piece;    /* bytes per sink call; 0 = all at once */
    int         calls;
} body;

static int body_writer(void *payload, mc__sink_fn *sink, void *sp, mc_err **err)
{
    body *b = payload;
    b->calls++;
    size_t piece = b->piece ? b->piece : b->len;
    for (size_t off = 0; off < b->len; off += piece) {
        size_t n = b->len - off < piece ? b->len - off : piece;
        int rc = sink(sp, b->data + off, n, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static mc__envelope env_of(const char *from, const char *const *rcpts, size_t n)
{
    mc__envelope e = { .from = from, .rcpts = rcpts, .n_rcpts = n };
    return e;
}

#define EHLO_PIPE "250-mx.example.com Hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n" \
                  "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_PLAIN "250-mx.example.com Hello\r\n250 8BITMIME\r\n"

/* ------------------------------------------------------------ reply parser */

/* Feed `in` in pieces of `piece` bytes; returns the final feed result. */
static int feed_pieces(mc__reply_parser *p, const char *in, size_t piece, mc__reply *r,
                       size_t *consumed)
{
    size_t len = strlen(in), off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece, used = 0;
        rc = mc__reply_feed(p, in + off, n, &used, r);
        off += used;
        if (rc != 0)
            break;
        assert_int_equal(used, n);   /* 0: everything consumed */
    }
    *consumed = off;
    return rc;
}

static void test_reply_split_across_reads(void **state)
{
    (void)state;
    static const char in[] = "250-mx.example.com\r\n250-SIZE 100\r\n250 2.0.0 HELP\r\n";
    /* every split point, including between CR and LF */
    for (size_t piece = 1; piece <= sizeof(in); piece++) {
        mc__reply_parser p = { 0 };
        mc__reply r = { 0 };
        size_t used = 0;
        assert_int_equal(feed_pieces(&p, in, piece, &r, &used), 1);
        assert_int_equal(used, sizeof(in) - 1);
        assert_int_equal(r.code, 250);
        assert_string_equal(r.text.data, "mx.example.com\nSIZE 100\n2.0.0 HELP");
        mc__reply_free(&r);
        mc__reply_parser_free(&p);
    }
}

static void test_reply_several_in_one_read(void **state)
{
    (void)state;
    static const char in[] = "250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n354 End data\r\n";
    mc__reply_parser p = { 0 };
    mc__reply r = { 0 };
    size_t used = 0, off = 0;

    assert_int_equal(mc__reply_feed(&p, in, strlen(in), &used, &r), 1);
    assert_int_equal(used, strlen("250 2.1.0 Ok\r\n"));
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enhanced, "2.1.0");
    off += used;

    assert_int_equal(mc__reply_feed(&p, in + off, strlen(in) - off, &used, &r), 1);
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enhanced, "5.1.1");
    assert_string_equal(r.text.data, "5.1.1 No such user");
    off += used;

    assert_int_equal(mc__reply_feed(&p, in + off, strlen(in) - off, &used, &r), 1);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.enhanced, "");
    off += used;
    assert_int_equal(off, strlen(in));
    mc__reply_free(&r);
    mc__reply_parser_free(&p);
}

static void test_reply_line_forms(void **state)
{
    (void)state;
    static const struct { const char *in; int code; const char *text; } ok[] = {
        { "250\r\n", 250, "" },                    /* bare code: final */
        { "250 ok\n", 250, "ok" },                 /* bare LF */
        { "220-a\n220 b\r\n", 220, "a\nb" },
        { "421 4.7.0 closing\r\n", 421, "4.7.0 closing" },
        { "250-\r\n250 \r\n", 250, "\n" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        mc__reply_parser p = { 0 };
        mc__reply r = { 0 };
        size_t used = 0;
        assert_int_equal(mc__reply_feed(&p, ok[i].in, strlen(ok[i].in), &used, &r), 1);
        assert_int_equal(used, strlen(ok[i].in));
        assert_int_equal(r.code, ok[i].code);
        assert_string_equal(r.text.data, ok[i].text);
        mc__reply_free(&r);
        mc__reply_parser_free(&p);
    }
}

static void test_reply_protocol_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "250-a\r\n251 b\r\n",    /* mismatched codes across lines */
        "2x0 hi\r\n",            /* non-digit code */
        "abc\r\n",
        "25\r\n",                /* too short */
        "250xhello\r\n",         /* neither ' ' nor '-' */
        "\r\n",                  /* empty line */
        "650 no such class\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mc__reply_parser p = { 0 };
        mc__reply r = { 0 };
        size_t used = 0;
        int rc = mc__reply_feed(&p, bad[i], strlen(bad[i]), &used, &r);
        if (rc != MC_EPROTO)
            fail_msg("accepted %s", bad[i]);
        mc__reply_free(&r);
        mc__reply_parser_free(&p);
    }

    /* a 5000-byte line: in one piece and in small pieces (never completed) */
    char *big = malloc(5003);
    assert_non_null(big);
    memcpy(big, "250 ", 4);
    memset(big + 4, 'x', 4996);
    memcpy(big + 5000, "\r\n", 3);
    for (size_t piece = 1; piece <= 5002; piece *= 7) {
        mc__reply_parser p = { 0 };
        mc__reply r = { 0 };
        size_t used = 0;
        assert_int_equal(feed_pieces(&p, big, piece, &r, &used), MC_EPROTO);
        /* the parser never held more than one line's worth */
        assert_true(p.line.cap <= 2 * (MC__REPLY_LINE_MAX + 2));
        mc__reply_free(&r);
        mc__reply_parser_free(&p);
    }
    free(big);

    /* exactly MC__REPLY_LINE_MAX bytes is fine */
    char *max = malloc(MC__REPLY_LINE_MAX + 3);
    assert_non_null(max);
    memcpy(max, "250 ", 4);
    memset(max + 4, 'y', MC__REPLY_LINE_MAX - 4);
    memcpy(max + MC__REPLY_LINE_MAX, "\r\n", 3);
    mc__reply_parser p = { 0 };
    mc__reply r = { 0 };
    size_t used = 0;
    assert_int_equal(mc__reply_feed(&p, max, strlen(max), &used, &r), 1);
    assert_int_equal(r.text.len, MC__REPLY_LINE_MAX - 4);
    mc__reply_free(&r);
    mc__reply_parser_free(&p);
    free(max);
}

/* ------------------------------------------------------------ capabilities */

static void test_caps_table(void **state)
{
    (void)state;
    mc__smtp_caps c;

    mc__smtp_parse_caps("smtp.gmail.com at your service\nSIZE 35882577\n8BITMIME\n"
                        "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\n"
                        "ENHANCEDSTATUSCODES\nPIPELINING\nCHUNKING\nSMTPUTF8", &c);
    assert_true(c.esmtp);
    assert_false(c.starttls);
    assert_true(c.pipelining && c.eightbitmime && c.smtputf8 && c.enhanced && c.auth);
    assert_int_equal(c.size, 35882577);
    assert_string_equal(c.auth_mechs, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH");

    /* lower case, the old AUTH= form merged without duplicates, STARTTLS */
    mc__smtp_parse_caps("mx\nstarttls\nauth plain login\nAUTH=LOGIN CRAM-MD5\nsize", &c);
    assert_true(c.starttls && c.auth);
    assert_false(c.pipelining);
    assert_int_equal(c.size, 0);    /* SIZE without a limit */
    assert_string_equal(c.auth_mechs, "PLAIN LOGIN CRAM-MD5");

    /* the first line is the server's name: keywords there do not count */
    mc__smtp_parse_caps("STARTTLS PIPELINING", &c);
    assert_true(c.esmtp);
    assert_false(c.starttls || c.pipelining);

    /* junk */
    mc__smtp_parse_caps("mx\nSIZE 12abc\nSIZE 99999999999999999999999\nAUTH p<l>ain\nXYZZY", &c);
    assert_true(c.size == UINT64_MAX);
    assert_false(c.starttls);
    assert_string_equal(c.auth_mechs, "");

    /* an auth list longer than the buffer is cut at a word, stays terminated */
    mc__buf big = MC__BUF_INIT;
    assert_int_equal(mc__buf_puts(&big, "mx\nAUTH"), 0);
    for (int i = 0; i < 60; i++)
        assert_int_equal(mc__buf_printf(&big, " MECH-%02d", i), 0);
    mc__smtp_parse_caps(big.data, &c);
    assert_true(strlen(c.auth_mechs) < sizeof(c.auth_mechs));
    assert_true(strncmp(c.auth_mechs, "MECH-00 MECH-01", 15) == 0);
    assert_int_not_equal(c.auth_mechs[strlen(c.auth_mechs) - 1], ' ');
    mc__buf_free(&big);
}

/* ------------------------------------------------------------ dot-stuffing */

static void test_dotstuff_table(void **state)
{
    (void)state;
    static const struct {
        const char *chunks[4];
        const char *out;      /* stuffed data, terminator included */
    } cases[] = {
        { { "a\r\n.b\r\n" },              "a\r\n..b\r\n.\r\n" },
        { { "." },                        "..\r\n.\r\n" },
        { { ".\r\n" },                    "..\r\n.\r\n" },
        { { "a\r", "\nb" },               "a\r\nb\r\n.\r\n" },       /* CR|LF split: one line end */
        { { "a\r", "\n.b" },              "a\r\n..b\r\n.\r\n" },
        { { "a\r\n", ".", "x" },          "a\r\n..x\r\n.\r\n" },     /* dot alone at a chunk start */
        { { "a\rb" },                     "a\r\nb\r\n.\r\n" },       /* bare CR */
        { { "a\nb\n" },                   "a\r\nb\r\n.\r\n" },       /* bare LF */
        { { "a\n", "\n" },                "a\r\n\r\n.\r\n" },
        { { "a\r" },                      "a\r\n.\r\n" },            /* ends in a bare CR */
        { { "\r\r\n" },                   "\r\n\r\n.\r\n" },
        { { "last line" },                "last line\r\n.\r\n" },    /* no final newline */
        { { "x.y\r\n..\r\n" },            "x.y\r\n...\r\n.\r\n" },   /* one dot added */
        { { "" },                         ".\r\n" },
        { { "a\r", "", "\n", ".\r\n" },   "a\r\n..\r\n.\r\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mc__dotstuff st = { 0 };
        char out[256];
        size_t o = 0;
        for (size_t j = 0; j < 4 && cases[i].chunks[j]; j++) {
            size_t len = strlen(cases[i].chunks[j]);
            size_t n = mc__dotstuff_run(&st, cases[i].chunks[j], len, out + o);
            assert_true(n <= 2 * len + 2);
            o += n;
        }
        o += mc__dotstuff_end(&st, out + o);
        out[o] = '\0';
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\"", i, out);
    }
}

/* ------------------------------------------------------------ open */

static void test_multiline_greeting_and_ehlo(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220-mx.example.com ESMTP\r\n220-no UCE\r\n", "220 ready\r\n",
        "250-mx.example.com\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n"
        "250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n",
        "221 bye\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp *s = open_ok(m);
    assert_transcript(m, 0, "EHLO client.example\r\n");
    const mc__smtp_caps *c = mc__smtp_get_caps(s);
    assert_true(c->esmtp && c->starttls && c->pipelining && c->eightbitmime && c->enhanced);
    assert_int_equal(c->size, 1000);
    assert_string_equal(c->auth_mechs, "PLAIN LOGIN");
    assert_string_equal(mc__smtp_last_reply(s), "250 mx.example.com");
    assert_true(mc__smtp_alive(s));
    assert_false(mc__smtp_encrypted(s));

    mc__smtp_quit(s);
    assert_transcript(m, 0, "EHLO client.example\r\nQUIT\r\n");
    assert_true(m->closed);
    free_stream(m);
}

static void test_helo_fallback(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 old.example\r\n", "502 5.5.1 command not recognized\r\n", "250 old.example\r\n",
        NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp *s = open_ok(m);
    assert_transcript(m, 0, "EHLO client.example\r\nHELO client.example\r\n");
    assert_false(mc__smtp_get_caps(s)->esmtp);
    assert_false(mc__smtp_get_caps(s)->pipelining);
    mc__smtp_free(s);
    assert_true(m->closed);
    free_stream(m);
}

static void test_greeting_refused(void **state)
{
    (void)state;
    static const char *const script[] = { "554 5.3.2 no service for you\r\n", NULL };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    mc__smtp *s = (mc__smtp *)&o;   /* must be reset to NULL */
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EREFUSED);
    assert_null(s);
    assert_true(m->closed);
    assert_int_equal(m->n_writes, 0);
    assert_int_equal(err->stage, MC_STAGE_GREETING);
    assert_int_equal(err->outcome, MC_OUTCOME_PERMANENT);
    assert_int_equal(err->smtp_code, 554);
    assert_string_equal(err->enhanced, "5.3.2");
    assert_string_equal(err->server_text, "5.3.2 no service for you");
    mc_error_free(err);
    free_stream(m);
}

static void test_ehlo_protocol_violation(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n251 SIZE\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EPROTO);
    assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
    assert_int_equal(err->stage, MC_STAGE_EHLO);
    assert_true(m->closed);
    mc_error_free(err);
    free_stream(m);

    /* a 5000-byte greeting line */
    char *big = malloc(5003);
    assert_non_null(big);
    memcpy(big, "220 ", 4);
    memset(big + 4, 'g', 4996);
    memcpy(big + 5000, "\r\n", 3);
    const char *script2[] = { big, NULL };
    m = new_stream(script2, false);
    o = default_opts(m);
    err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EPROTO);
    assert_int_equal(err->stage, MC_STAGE_GREETING);
    assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
    mc_error_free(err);
    free_stream(m);
    free(big);
}

static void test_closed_during_greeting(void **state)
{
    (void)state;
    static const char *const script[] = { "220-mx\r\n", NULL };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_ENET);
    assert_int_equal(err->stage, MC_STAGE_GREETING);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_true(err->transient);
    mc_error_free(err);
    free_stream(m);
}

/* ------------------------------------------------------------ STARTTLS */

static void test_starttls_not_offered(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n250-AUTH PLAIN\r\n250 PIPELINING\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    o.require_starttls = true;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EREFUSED);
    assert_null(s);
    assert_int_equal(err->stage, MC_STAGE_STARTTLS);
    assert_int_equal(err->outcome, MC_OUTCOME_PERMANENT);
    assert_string_equal(err->message,
                        "server does not offer STARTTLS; refusing to continue in plaintext");
    /* nothing but EHLO left: no STARTTLS, AUTH or MAIL */
    assert_transcript(m, 0, "EHLO client.example\r\n");
    assert_int_equal(m->starttls_calls, 0);
    assert_true(m->closed);
    mc_error_free(err);
    free_stream(m);
}

static void test_starttls_refused(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    o.require_starttls = true;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_ETEMP);
    assert_int_equal(err->stage, MC_STAGE_STARTTLS);
    assert_int_equal(err->smtp_code, 454);
    assert_int_equal(m->starttls_calls, 0);
    assert_transcript(m, 0, "EHLO client.example\r\nSTARTTLS\r\n");
    mc_error_free(err);
    free_stream(m);

    static const char *const script2[] = {
        "220 mx\r\n", "250-mx\r\n250 STARTTLS\r\n", "502 5.5.1 no\r\n", NULL,
    };
    m = new_stream(script2, false);
    o = default_opts(m);
    o.require_starttls = true;
    err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EREFUSED);
    assert_int_equal(err->stage, MC_STAGE_STARTTLS);
    assert_int_equal(err->outcome, MC_OUTCOME_PERMANENT);
    assert_int_equal(err->smtp_code, 502);
    assert_int_equal(m->starttls_calls, 0);
    mc_error_free(err);
    free_stream(m);
}

static void test_starttls_injection(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n250 STARTTLS\r\n",
        "220 2.0.0 go ahead\r\n250-injected\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    o.require_starttls = true;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EREFUSED);
    assert_int_equal(err->stage, MC_STAGE_STARTTLS);
    assert_string_equal(err->message,
                        "server sent data after its STARTTLS reply (response injection)");
    assert_int_equal(m->starttls_calls, 0);   /* no handshake was attempted */
    assert_false(m->base.encrypted);
    assert_transcript(m, 0, "EHLO client.example\r\nSTARTTLS\r\n");
    assert_true(m->closed);
    mc_error_free(err);
    free_stream(m);
}

static void test_starttls_upgrade_forgets_caps(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n",
        "250-mx\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-AUTH LOGIN\r\n250 STARTTLS\r\n",
        "220 2.0.0 Ready to start TLS\r\n",
        "250-mx\r\n250-AUTH PLAIN XOAUTH2\r\n250 8BITMIME\r\n",
        NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    o.require_starttls = true;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), 0);
    assert_null(err);
    assert_int_equal(m->starttls_calls, 1);
    assert_non_null(m->starttls_opts);
    assert_string_equal(m->starttls_opts->host, "smtp.example.com");
    assert_true(mc__smtp_encrypted(s));
    assert_transcript(m, 0, "EHLO client.example\r\nSTARTTLS\r\nEHLO client.example\r\n");
    /* only what the second EHLO said */
    const mc__smtp_caps *c = mc__smtp_get_caps(s);
    assert_false(c->starttls);
    assert_false(c->pipelining);
    assert_int_equal(c->size, 0);
    assert_true(c->eightbitmime);
    assert_string_equal(c->auth_mechs, "PLAIN XOAUTH2");
    mc__smtp_free(s);
    free_stream(m);
}

/* ------------------------------------------------------------ AUTH */

static void test_auth_plain_exact(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN, "235 2.7.0 Authentication successful\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    mc__sasl_creds c = { .user = "user", .password = "secret" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), 0);
    assert_null(err);
    assert_transcript(m, mark, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
    assert_int_equal(m->n_writes, mark + 1);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_auth_login_exact(void **state)
{
    (void)state;
    /* the prompts are answered in order, whatever they say */
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN, "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n",
        "235 2.7.0 ok\r\n", NULL,
    };
    static const char *const odd[] = {
        "220 mx\r\n", EHLO_PLAIN, "334 \r\n", "334 Zm9v\r\n", "235 ok\r\n", NULL,
    };
    const char *const *scripts[] = { script, odd };
    for (size_t i = 0; i < 2; i++) {
        mem_stream *m = new_stream(scripts[i], true);
        mc__smtp *s = open_ok(m);
        size_t mark = m->n_writes;
        mc__sasl_creds c = { .user = "user", .password = "secret" };
        mc_err *err = NULL;
        assert_int_equal(mc__smtp_auth(s, "LOGIN", &c, false, &err), 0);
        assert_transcript(m, mark, "AUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\n");
        mc__smtp_free(s);
        free_stream(m);
    }
}

static void test_auth_refused(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    mc__sasl_creds c = { .user = "user", .password = "wrong" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_int_equal(err->stage, MC_STAGE_AUTH);
    assert_int_equal(err->smtp_code, 535);
    assert_string_equal(err->enhanced, "5.7.8");
    assert_string_equal(err->server_text, "5.7.8 Username and Password not accepted.\n5.7.8 Learn more");
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_xoauth2_failure(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n",
        "535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials\r\n",
        NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    mc__sasl_creds c = { .user = "me@example.com", .token = "tok123" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "XOAUTH2", &c, false, &err), MC_EAUTH);
    /* the initial response, then an empty line */
    assert_transcript(m, mark,
                      "AUTH XOAUTH2 dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sxMjMBAQ==\r\n"
                      "\r\n");
    assert_int_equal(err->outcome, MC_OUTCOME_AUTH);
    assert_int_equal(err->stage, MC_STAGE_AUTH);
    assert_int_equal(err->smtp_code, 535);
    assert_string_equal(err->enhanced, "5.7.8");
    assert_non_null(strstr(err->message, "XOAUTH2 refused: status 401, scope https://mail.google.com/"));
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_oauthbearer_failure(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL3gvLndlbGwta25vd24ifQ==\r\n",
        "535 5.7.8 Authentication failed\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    mc__sasl_creds c = { .user = "me@example.com", .token = "tok123" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "OAUTHBEARER", &c, false, &err), MC_EAUTH);
    /* host and port from the connect options; the failure answered with 0x01 */
    assert_transcript(m, mark,
                      "AUTH OAUTHBEARER bixhPW1lQGV4YW1wbGUuY29tLAFob3N0PXNtdHAuZXhhbXBsZS5jb20B"
                      "cG9ydD01ODcBYXV0aD1CZWFyZXIgdG9rMTIzAQE=\r\n"
                      "AQ==\r\n");
    assert_int_equal(err->smtp_code, 535);
    assert_string_equal(err->enhanced, "5.7.8");
    assert_non_null(strstr(err->message, "OAUTHBEARER refused: status invalid_token, scope mail"));
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_auth_refused_in_plaintext(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN, "235 ok\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    mc__sasl_creds c = { .user = "user", .password = "secret" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), MC_EAUTH);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_int_equal(err->stage, MC_STAGE_AUTH);
    assert_string_equal(err->message, "refusing to send credentials over an unencrypted connection");
    assert_int_equal(m->n_writes, mark);   /* nothing written */
    mc_error_free(err);

    /* allowed explicitly: it goes */
    err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, true, &err), 0);
    assert_transcript(m, mark, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
    mc__smtp_free(s);
    free_stream(m);
}

static void capture_log(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    mc__buf *b = payload;
    assert_int_equal(mc__buf_puts(b, line), 0);
    assert_int_equal(mc__buf_puts(b, "\n"), 0);
}

static void test_transcript_redaction(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN, "235 ok\r\n",
        "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "235 ok\r\n",
        "535 5.7.8 no\r\n", NULL,
    };
    mc__buf log = MC__BUF_INIT;
    mc__log_setup(&thc, MC_LOG_DEBUG, capture_log, &log);
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    /* the password is NOT registered for redaction here: the engine itself
     * must never log it or the payloads */
    mc__sasl_creds c = { .user = "user", .password = "hunter2pw" };
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), 0);
    assert_int_equal(mc__smtp_auth(s, "LOGIN", &c, false, &err), 0);
    mc__sasl_creds t = { .user = "user", .token = "ya29.tokentoken" };
    assert_int_equal(mc__smtp_auth(s, "XOAUTH2", &t, false, &err), MC_EAUTH);
    mc_error_free(err);
    mc__smtp_free(s);
    mc__log_setup(&thc, MC_LOG_WARN, NULL, NULL);

    assert_non_null(log.data);
    assert_non_null(strstr(log.data, "C: AUTH PLAIN <redacted>\n"));
    assert_non_null(strstr(log.data, "C: AUTH LOGIN\n"));
    assert_non_null(strstr(log.data, "C: <redacted>\n"));
    assert_non_null(strstr(log.data, "C: AUTH XOAUTH2 <redacted>\n"));
    assert_non_null(strstr(log.data, "S: 235 ok\n"));
    /* neither the secrets nor any payload */
    assert_null(strstr(log.data, "hunter2pw"));
    assert_null(strstr(log.data, "ya29.tokentoken"));
    mc__buf plain = MC__BUF_INIT, pw = MC__BUF_INIT, user = MC__BUF_INIT;
    assert_int_equal(mc__sasl_plain(&plain, "user", "hunter2pw"), 0);
    assert_int_equal(mc__base64_encode(&pw, "hunter2pw", 9), 0);
    assert_int_equal(mc__base64_encode(&user, "user", 4), 0);
    assert_null(strstr(log.data, plain.data));
    assert_null(strstr(log.data, pw.data));
    assert_null(strstr(log.data, user.data));
    assert_null(strstr(log.data, "dXNlcj1"));   /* XOAUTH2 payload prefix */
    /* and they were sent */
    char *sent = transcript_from(m, 0);
    assert_non_null(strstr(sent, plain.data));
    assert_non_null(strstr(sent, pw.data));
    free(sent);
    mc__buf_free(&plain);
    mc__buf_free(&pw);
    mc__buf_free(&user);
    mc__buf_free(&log);
    free_stream(m);
}

/* ------------------------------------------------------------ sending */

static void test_pipelining_one_write(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE,
        /* the server answers the whole batch at once */
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n",
        "250 2.0.0 Ok: queued as ABC\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "b1@x.test", "b2@x.test", "b3@x.test" };
    mc__envelope env = env_of("a@x.test", rcpts, 3);
    body b = { .data = "Subject: hi\n\nhello\n", .len = 19 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_null(err);
    /* MAIL, the RCPTs and DATA leave in ONE write */
    assert_true(m->n_writes >= mark + 2);
    assert_string_equal(m->writes[mark].data,
                        "MAIL FROM:<a@x.test>\r\nRCPT TO:<b1@x.test>\r\nRCPT TO:<b2@x.test>\r\n"
                        "RCPT TO:<b3@x.test>\r\nDATA\r\n");
    /* the body and its terminator in one more write */
    assert_int_equal(m->n_writes, mark + 2);
    assert_string_equal(m->writes[mark + 1].data, "Subject: hi\r\n\r\nhello\r\n.\r\n");
    for (size_t i = 0; i < 3; i++) {
        assert_true(res[i].accepted);
        assert_int_equal(res[i].smtp_code, 250);
        assert_string_equal(res[i].enhanced, "2.1.5");
        assert_string_equal(res[i].address, rcpts[i]);
    }
    assert_string_equal(mc__smtp_last_reply(s), "250 2.0.0 Ok: queued as ABC");
    mc__rcpts_free(res, 3);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_no_pipelining_one_command_per_write(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "b1@x.test", "b2@x.test" };
    mc__envelope env = env_of("a@x.test", rcpts, 2);
    body b = { .data = "x\n", .len = 2 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_int_equal(m->n_writes, mark + 5);
    assert_string_equal(m->writes[mark].data, "MAIL FROM:<a@x.test>\r\n");
    assert_string_equal(m->writes[mark + 1].data, "RCPT TO:<b1@x.test>\r\n");
    assert_string_equal(m->writes[mark + 2].data, "RCPT TO:<b2@x.test>\r\n");
    assert_string_equal(m->writes[mark + 3].data, "DATA\r\n");
    assert_string_equal(m->writes[mark + 4].data, "x\r\n.\r\n");
    mc__rcpts_free(res, 2);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_big_body_few_writes(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n", "250 queued\r\n", NULL,
    };
    /* 1 MB of 76-character lines with LF ends, some starting with '.' */
    size_t len = 1024 * 1024;
    char *data = malloc(len);
    assert_non_null(data);
    size_t dots = 0, lfs = 0;
    for (size_t i = 0; i < len; i++) {
        size_t col = i % 77;
        data[i] = col == 76 ? '\n' : (char)('a' + col % 26);
        if (col == 0 && (i / 77) % 10 == 0) {
            data[i] = '.';
            dots++;
        }
        if (data[i] == '\n')
            lfs++;
    }
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "b@x.test" };
    mc__envelope env = env_of("a@x.test", rcpts, 1);
    body b = { .data = data, .len = len, .piece = 77 };   /* the writer goes line by line */
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    size_t body_writes = m->n_writes - mark - 1;
    assert_true(body_writes < 40);
    assert_true(body_writes >= 2);
    /* every byte arrived, stuffed and normalised */
    char *sent = transcript_from(m, mark + 1);
    size_t last_partial = (len % 77) ? 1 : 0;
    size_t expect = len + lfs + dots + (last_partial ? 2 : 0) + 3;
    assert_int_equal(strlen(sent), expect);
    assert_memory_equal(sent, "..bcdef", 7);
    assert_memory_equal(sent + strlen(sent) - 5, "\r\n.\r\n", 5);
    free(sent);
    mc__rcpts_free(res, 1);
    mc__smtp_free(s);
    free_stream(m);
    free(data);
}

static void test_size_refused_before_mail(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n250-SIZE 1000\r\n250 PIPELINING\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "b@x.test" };
    mc__envelope env = env_of("a@x.test", rcpts, 1);
    env.size = 5000;
    body b = { .data = "x\n", .len = 2 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EMESSAGE);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(err->stage, MC_STAGE_MAIL);
    assert_string_equal(err->message, "message is 5000 bytes, server accepts at most 1000");
    assert_int_equal(m->n_writes, mark);   /* no MAIL written */
    assert_int_equal(b.calls, 0);
    assert_non_null(res);
    assert_false(res[0].accepted);
    assert_int_equal(res[0].smtp_code, 0);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_mail_parameters(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", "250-mx\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
        "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "b@x.test" };
    mc__envelope env = env_of("a@x.test", rcpts, 1);
    env.size = 123;
    env.eightbit = true;
    env.smtputf8 = true;
    body b = { .data = "x\n", .len = 2 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_string_equal(m->writes[mark].data,
                        "MAIL FROM:<a@x.test> SIZE=123 BODY=8BITMIME SMTPUTF8\r\n");
    mc__rcpts_free(res, 1);
    mc__smtp_free(s);
    free_stream(m);

    /* not offered: no SIZE=, no BODY=; an 8-bit body (RFC 6152 section 3)
     * or SMTPUTF8 needed but missing is an error before MAIL */
    static const char *const script2[] = {
        "220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n",
        NULL,
    };
    m = new_stream(script2, true);
    s = open_ok(m);
    mark = m->n_writes;
    env.smtputf8 = false;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EMESSAGE);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_non_null(strstr(err->message, "8BITMIME"));
    assert_int_equal(m->n_writes, mark);
    mc_error_free(err);
    err = NULL;
    mc__rcpts_free(res, 1);
    env.eightbit = false;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_string_equal(m->writes[mark].data, "MAIL FROM:<a@x.test>\r\n");
    mc__rcpts_free(res, 1);
    mark = m->n_writes;
    env.smtputf8 = true;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EMESSAGE);
    assert_int_equal(err->outcome, MC_OUTCOME_DATA);
    assert_int_equal(m->n_writes, mark);
    mc_error_free(err);
    mc__rcpts_free(res, 1);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_max_recipients_split(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "250 ok\r\n", "250 r1\r\n", "250 r2\r\n", "354 go\r\n", "250 one\r\n",
        "250 ok\r\n", "250 r3\r\n", "250 r4\r\n", "354 go\r\n", "250 two\r\n",
        "250 ok\r\n", "250 r5\r\n", "354 go\r\n", "250 three\r\n",
        NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp_opts o = default_opts(m);
    o.max_recipients = 2;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), 0);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x", "r2@x", "r3@x", "r4@x", "r5@x" };
    mc__envelope env = env_of("a@x", rcpts, 5);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_transcript(m, mark,
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\nhi\r\n.\r\n"
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r3@x>\r\nRCPT TO:<r4@x>\r\nDATA\r\nhi\r\n.\r\n"
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r5@x>\r\nDATA\r\nhi\r\n.\r\n");
    assert_int_equal(b.calls, 3);
    for (size_t i = 0; i < 5; i++)
        assert_true(res[i].accepted);
    assert_string_equal(res[4].text, "r5");
    mc__rcpts_free(res, 5);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_452_after_accepted_second_transaction(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "250 ok\r\n", "250 r1\r\n", "452 4.5.3 Too many recipients\r\n", "354 go\r\n",
        "250 one\r\n",
        "250 ok\r\n", "250 r2\r\n", "250 r3\r\n", "354 go\r\n", "250 two\r\n",
        NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x", "r2@x", "r3@x" };
    mc__envelope env = env_of("a@x", rcpts, 3);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_null(err);
    /* r3 was never offered in the first transaction */
    assert_transcript(m, mark,
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\nhi\r\n.\r\n"
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nDATA\r\nhi\r\n.\r\n");
    for (size_t i = 0; i < 3; i++)
        assert_true(res[i].accepted);
    mc__rcpts_free(res, 3);
    mc__smtp_free(s);
    free_stream(m);

    /* pipelined: the 452'd recipient goes again after this DATA */
    static const char *const script2[] = {
        "220 mx\r\n", EHLO_PIPE,
        "250 ok\r\n250 r1\r\n452 4.5.3 Too many\r\n354 go\r\n", "250 one\r\n",
        "250 ok\r\n250 r2\r\n354 go\r\n", "250 two\r\n", NULL,
    };
    m = new_stream(script2, true);
    s = open_ok(m);
    mark = m->n_writes;
    env.n_rcpts = 2;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_transcript(m, mark,
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\nhi\r\n.\r\n"
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\nhi\r\n.\r\n");
    assert_true(res[0].accepted && res[1].accepted);
    mc__rcpts_free(res, 2);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_452_none_accepted_is_transient(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "250 ok\r\n", "452 4.5.3 Too many recipients\r\n", "250 reset\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x", "r2@x" };
    mc__envelope env = env_of("a@x", rcpts, 2);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ETEMP);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_true(err->transient);
    assert_int_equal(err->stage, MC_STAGE_RCPT);
    assert_int_equal(err->smtp_code, 452);
    assert_string_equal(err->enhanced, "4.5.3");
    assert_int_equal(err->n_rcpts, 2);
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nRSET\r\n");
    assert_int_equal(b.calls, 0);
    assert_false(res[0].accepted || res[1].accepted);
    assert_int_equal(res[0].smtp_code, 452);
    mc__rcpts_free(res, 2);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_rejected_recipient_partial(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <r2@x>: Recipient address rejected\r\n"
        "250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 queued\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x", "r2@x", "r3@x" };
    mc__envelope env = env_of("a@x", rcpts, 3);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ERCPT);
    assert_int_equal(err->outcome, MC_OUTCOME_PERMANENT);
    assert_int_equal(err->stage, MC_STAGE_RCPT);
    assert_int_equal(err->smtp_code, 550);
    assert_string_equal(err->enhanced, "5.1.1");
    assert_true(res[0].accepted);
    assert_false(res[1].accepted);
    assert_true(res[2].accepted);
    assert_int_equal(res[1].smtp_code, 550);
    assert_string_equal(res[1].enhanced, "5.1.1");
    assert_string_equal(res[1].text, "5.1.1 <r2@x>: Recipient address rejected");
    /* err carries its own copy */
    assert_int_equal(err->n_rcpts, 3);
    assert_false(err->rcpts[1].accepted);
    assert_string_equal(err->rcpts[1].address, "r2@x");
    assert_true(err->rcpts[2].accepted);
    /* the others got the message */
    assert_transcript(m, mark,
                      "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\n"
                      "DATA\r\nhi\r\n.\r\n");
    mc__rcpts_free(res, 3);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_all_refused_pipelined(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE,
        "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n",
        "250 2.0.0 reset\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EREFUSED);
    assert_int_equal(err->stage, MC_STAGE_RCPT);
    assert_int_equal(err->outcome, MC_OUTCOME_PERMANENT);
    assert_int_equal(err->smtp_code, 550);
    assert_int_equal(b.calls, 0);
    /* the pipelined DATA's 554 consumed, then RSET */
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\nRSET\r\n");
    assert_true(mc__smtp_alive(s));
    assert_int_equal(m->next, 4);   /* every scripted reply read, nothing left over */
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_mail_refused(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE,
        "550 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
        "250 reset\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EREFUSED);
    assert_int_equal(err->stage, MC_STAGE_MAIL);
    assert_int_equal(err->smtp_code, 550);
    assert_string_equal(err->enhanced, "5.7.1");
    assert_string_equal(err->server_text, "5.7.1 sender rejected");
    assert_int_equal(b.calls, 0);
    assert_true(mc__smtp_alive(s));
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_closed_after_final_dot_is_unknown(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EUNKNOWN);
    assert_int_equal(err->outcome, MC_OUTCOME_UNKNOWN);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    assert_non_null(strstr(err->message, "may have been accepted"));
    assert_non_null(strstr(err->message, "not resent"));
    assert_false(mc__smtp_alive(s));
    /* the terminator did go out */
    char *t = transcript_from(m, 0);
    assert_non_null(strstr(t, "hi\r\n.\r\n"));
    free(t);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_closed_before_final_dot_is_net(void **state)
{
    (void)state;
    /* closed while MAIL's reply is awaited */
    static const char *const script[] = { "220 mx\r\n", EHLO_PLAIN, NULL };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ENET);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_int_equal(err->stage, MC_STAGE_MAIL);
    assert_false(mc__smtp_alive(s));
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    /* a dead connection refuses the next message without writing */
    size_t mark = m->n_writes;
    err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ENET);
    assert_int_equal(m->n_writes, mark);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);

    /* closed while DATA's 354 is awaited */
    static const char *const script2[] = { "220 mx\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", NULL };
    m = new_stream(script2, true);
    s = open_ok(m);
    err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ENET);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_421_marks_dead(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN, "421 4.7.0 Too many connections, closing\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ETEMP);
    assert_int_equal(err->smtp_code, 421);
    assert_true(err->transient);
    assert_false(mc__smtp_alive(s));
    size_t mark = m->n_writes;
    mc__smtp_quit(s);              /* no QUIT on a dead connection */
    assert_int_equal(m->n_writes, mark);
    assert_true(m->closed);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    free_stream(m);
}

static void test_rset_between_messages(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PLAIN,
        "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 first\r\n",
        "250 reset\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 second\r\n",
        "250 2.0.0 ok\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    mc__rcpts_free(res, 1);
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\nhi\r\n.\r\n");
    assert_string_equal(mc__smtp_last_reply(s), "250 first");
    mark = m->n_writes;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    mc__rcpts_free(res, 1);
    assert_transcript(m, mark, "RSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\nhi\r\n.\r\n");
    assert_string_equal(mc__smtp_last_reply(s), "250 second");
    mark = m->n_writes;
    assert_int_equal(mc__smtp_noop(s, &err), 0);
    assert_transcript(m, mark, "NOOP\r\n");
    mc__smtp_free(s);
    free_stream(m);
}

typedef struct stage_log {
    mc__buf b;
} stage_log;

static void on_stage(void *payload, mc_stage stage, int code, const char *text)
{
    stage_log *l = payload;
    assert_int_equal(mc__buf_printf(&l->b, "%s %d %s|", mc_stage_name(stage), code, text), 0);
}

static void test_stage_callback(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220-mx ESMTP\r\n220 more\r\n", "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
        "220 go\r\n", "250-mx\r\n250 AUTH PLAIN\r\n", "235 2.7.0 ok\r\n",
        "250 2.1.0 sender ok\r\n", "250 2.1.5 rcpt ok\r\n", "354 go\r\n",
        "250 2.0.0 queued\r\n", NULL,
    };
    mem_stream *m = new_stream(script, false);
    stage_log l = { MC__BUF_INIT };
    mc__smtp_opts o = default_opts(m);
    o.require_starttls = true;
    o.on_stage = on_stage;
    o.stage_payload = &l;
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), 0);
    mc__sasl_creds c = { .user = "u", .password = "p" };
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), 0);
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_string_equal(l.b.data,
                        "greeting 220 mx ESMTP|ehlo 250 mx|starttls 220 go|"
                        "tls 0  , certificate NOT verified|ehlo 250 mx|"
                        "auth 235 2.7.0 ok|mail 250 2.1.0 sender ok|rcpt 250 2.1.5 rcpt ok|"
                        "data 250 2.0.0 queued|");
    mc__rcpts_free(res, 1);
    mc__buf_free(&l.b);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_header_injection_in_envelope(void **state)
{
    (void)state;
    static const char *const script[] = { "220 mx\r\n", EHLO_PLAIN, NULL };
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x>\r\nRCPT TO:<evil@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EMESSAGE);
    assert_int_equal(m->n_writes, mark);
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

/* ------------------------------------------------------------ bounded replies */

/* `lines` lines of `width` bytes each ("250-" or "250 ", x padding, CRLF),
 * the last one final: one reply of lines * width bytes. */
static char *make_reply(const char *code, size_t lines, size_t width)
{
    assert_true(width >= 6);
    char *b = malloc(lines * width + 1);
    assert_non_null(b);
    for (size_t i = 0; i < lines; i++) {
        char *l = b + i * width;
        memcpy(l, code, 3);
        l[3] = i + 1 == lines ? ' ' : '-';
        memset(l + 4, 'x', width - 6);
        memcpy(l + width - 2, "\r\n", 2);
    }
    b[lines * width] = '\0';
    return b;
}

/* Feed a whole reply in pieces of every size given; the same result each
 * time, and the parser never holds more than the caps. */
static int feed_capped(const char *in, const char **why)
{
    static const size_t pieces[] = { 1, 7, 4096, 16384, (size_t)-1 };
    int first = 0;
    for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
        mc__reply_parser p = { 0 };
        mc__reply r = { 0 };
        size_t used = 0;
        int rc = feed_pieces(&p, in, pieces[k] == (size_t)-1 ? strlen(in) : pieces[k], &r, &used);
        assert_true(r.text.cap <= 2 * MC__REPLY_BYTES_MAX);
        assert_true(p.line.cap <= 2 * (MC__REPLY_LINE_MAX + 2));
        if (k == 0)
            first = rc;
        assert_int_equal(rc, first);
        if (rc == 1)
            assert_int_equal(used, strlen(in));
        if (rc < 0 && why)
            *why = p.why;
        mc__reply_free(&r);
        mc__reply_parser_free(&p);
    }
    return first;
}

static void test_reply_line_cap(void **state)
{
    (void)state;
    const char *why = NULL;
    char *in = make_reply("250", MC__REPLY_LINES_MAX, 8);
    assert_int_equal(feed_capped(in, NULL), 1);      /* exactly 1000 lines */
    free(in);
    in = make_reply("250", MC__REPLY_LINES_MAX + 1, 8);
    assert_int_equal(feed_capped(in, &why), MC_EPROTO);   /* 1001 */
    assert_string_equal(why, "a reply over 1000 lines");
    free(in);
    /* bare "250-" lines count too */
    in = make_reply("220", MC__REPLY_LINES_MAX + 1, 6);
    assert_int_equal(feed_capped(in, NULL), MC_EPROTO);
    free(in);
}

static void test_reply_byte_cap(void **state)
{
    (void)state;
    const char *why = NULL;
    /* 16 lines of 4096 bytes (4094 + CRLF: within the line limit): 65536 */
    char *in = make_reply("250", 16, 4096);
    assert_int_equal(strlen(in), MC__REPLY_BYTES_MAX);
    assert_int_equal(feed_capped(in, NULL), 1);
    free(in);

    /* one byte more: refused, however it is split */
    in = make_reply("250", 16, 4096);
    size_t len = strlen(in);
    char *more = malloc(len + 2);
    assert_non_null(more);
    memcpy(more, in, 4);             /* line 1 one byte wider */
    more[4] = 'y';
    memcpy(more + 5, in + 4, len - 4 + 1);
    assert_int_equal(strlen(more), MC__REPLY_BYTES_MAX + 1);
    assert_int_equal(feed_capped(more, &why), MC_EPROTO);
    assert_string_equal(why, "a reply over 65536 bytes");
    free(more);
    free(in);

    /* an endless continuation (no final line ever): refused by the caps
     * after at most 1000 lines / 64 KiB, never completed, memory bounded */
    char *line = make_reply("220", 2, 100);   /* "220-xx..\r\n220 xx..\r\n" */
    line[100 + 3] = '-';                      /* both lines continue */
    mc__reply_parser p = { 0 };
    mc__reply r = { 0 };
    size_t fed = 0, used = 0;
    int rc = 0;
    while (rc == 0 && fed < 10 * 1000 * 1000) {
        rc = mc__reply_feed(&p, line, 200, &used, &r);
        fed += used;
    }
    assert_int_equal(rc, MC_EPROTO);
    assert_true(fed <= MC__REPLY_BYTES_MAX + 200);
    assert_true(r.text.cap <= 2 * MC__REPLY_BYTES_MAX);
    mc__reply_free(&r);
    mc__reply_parser_free(&p);
    free(line);
}

/* A send over `script`; returns rc, *err set, b's calls counted. */
static int send_script(const char *const *script, mem_stream **mout, mc__smtp **sout,
                       body *b, mc_rcpt_result **res, mc_err **err, size_t *mark)
{
    mem_stream *m = new_stream(script, true);
    mc__smtp *s = open_ok(m);
    *mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    *mout = m;
    *sout = s;
    return mc__smtp_send(s, &env, body_writer, b, res, err);
}

static void test_reply_before_the_data_is_not_final(void **state)
{
    (void)state;
    /* 354 and 250 in one write: the 250 answers no data (none was sent) */
    static const char *const pipe_script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n", NULL,
    };
    static const char *const plain_script[] = {
        "220 mx\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n250 2.0.0 queued\r\n",
        NULL,
    };
    /* half a reply behind the 354 */
    static const char *const partial_script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n25", NULL,
    };
    /* a 421 and more: not "one complete 421" */
    static const char *const more_script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n421 4.3.2 bye\r\n250 ok\r\n", NULL,
    };
    const char *const *scripts[] = { pipe_script, plain_script, partial_script, more_script };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        mem_stream *m;
        mc__smtp *s;
        body b = { .data = "hi\n", .len = 3 };
        mc_rcpt_result *res = NULL;
        mc_err *err = NULL;
        size_t mark;
        assert_int_equal(send_script(scripts[i], &m, &s, &b, &res, &err, &mark), MC_EPROTO);
        assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
        assert_int_equal(err->stage, MC_STAGE_DATA);
        assert_non_null(strstr(err->message, "not sent"));
        assert_int_equal(b.calls, 0);              /* no data went out */
        assert_false(mc__smtp_alive(s));
        char *t = transcript_from(m, mark);
        assert_null(strstr(t, "\r\n.\r\n"));
        assert_non_null(strstr(t, "DATA\r\n"));
        free(t);
        mc__rcpts_free(res, 1);
        mc_error_free(err);
        mc__smtp_free(s);
        free_stream(m);
    }
}

static void test_421_before_the_data_is_transient(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n421 4.3.2 shutting down\r\n", NULL,
    };
    mem_stream *m;
    mc__smtp *s;
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    size_t mark;
    assert_int_equal(send_script(script, &m, &s, &b, &res, &err, &mark), MC_ETEMP);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    assert_int_equal(err->smtp_code, 421);
    assert_string_equal(err->enhanced, "4.3.2");
    assert_true(err->transient);
    assert_int_equal(b.calls, 0);
    assert_false(res[0].accepted);
    assert_false(mc__smtp_alive(s));
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\n");
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_354_to_rcpt_is_protocol(void **state)
{
    (void)state;
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n354 go\r\n354 go\r\n", NULL,
    };
    mem_stream *m;
    mc__smtp *s;
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    size_t mark;
    assert_int_equal(send_script(script, &m, &s, &b, &res, &err, &mark), MC_EPROTO);
    assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
    assert_int_equal(err->stage, MC_STAGE_RCPT);
    assert_int_equal(err->smtp_code, 354);
    assert_int_equal(b.calls, 0);
    assert_false(mc__smtp_alive(s));
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\n");
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

static void test_after_dot_unparsable_is_unknown(void **state)
{
    (void)state;
    char *long_line = make_reply("250", 1, 5000);
    char *many = make_reply("250", MC__REPLY_LINES_MAX + 1, 8);
    const char *const after[] = {
        "250-2.0.0 queued\r\n550 5.0.0 or not\r\n",   /* mixed codes */
        "250 2.0.0 queued\r\n250 2.0.0 again\r\n",    /* two replies */
        "250 2.0.0 queued\r\n5",                      /* a reply and a half */
        "2x0 queued\r\n",
        long_line,
        many,
    };
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        const char *script[] = { "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n",
                                 after[i], NULL };
        mem_stream *m;
        mc__smtp *s;
        body b = { .data = "hi\n", .len = 3 };
        mc_rcpt_result *res = NULL;
        mc_err *err = NULL;
        size_t mark;
        int rc = send_script(script, &m, &s, &b, &res, &err, &mark);
        if (rc != MC_EUNKNOWN)
            fail_msg("after-dot reply %zu: %d %s", i, rc, err ? err->message : "");
        assert_int_equal(err->outcome, MC_OUTCOME_UNKNOWN);
        assert_int_equal(err->stage, MC_STAGE_DATA);
        assert_non_null(strstr(err->message, "may have been accepted"));
        assert_false(mc__smtp_alive(s));
        char *t = transcript_from(m, mark);
        assert_non_null(strstr(t, "hi\r\n.\r\n"));   /* the dot did go out */
        free(t);
        mc__rcpts_free(res, 1);
        mc_error_free(err);
        mc__smtp_free(s);
        free_stream(m);
    }
    free(long_line);
    free(many);
}

static void test_caps_in_the_dialogue(void **state)
{
    (void)state;
    /* an EHLO reply of 1001 lines */
    char *ehlo = make_reply("250", MC__REPLY_LINES_MAX + 1, 20);
    const char *script[] = { "220 mx\r\n", ehlo, NULL };
    mem_stream *m = new_stream(script, false);
    mc__smtp_opts o = default_opts(m);
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_open(&s, &o, &err), MC_EPROTO);
    assert_int_equal(err->stage, MC_STAGE_EHLO);
    assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
    assert_non_null(strstr(err->message, "1000 lines"));
    mc_error_free(err);
    free_stream(m);
    free(ehlo);

    /* a 334 challenge of 70 KB */
    char *challenge = make_reply("334", 20, 3500);
    const char *script2[] = { "220 mx\r\n", "250-mx\r\n250 AUTH PLAIN\r\n", challenge, NULL };
    m = new_stream(script2, true);
    s = open_ok(m);
    mc__sasl_creds c = { .user = "u", .password = "p" };
    err = NULL;
    assert_int_equal(mc__smtp_auth(s, "PLAIN", &c, false, &err), MC_EPROTO);
    assert_int_equal(err->stage, MC_STAGE_AUTH);
    assert_non_null(strstr(err->message, "65536 bytes"));
    assert_false(mc__smtp_alive(s));
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
    free(challenge);
}

static void test_probe_before_the_dot(void **state)
{
    (void)state;
    /* the 250 is not read with the 354, but waiting when the data starts */
    static const char *const script[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n", "250 2.0.0 queued\r\n", NULL,
    };
    mem_stream *m = new_stream(script, true);
    m->base.ops = &probe_ops;
    mc__smtp *s = open_ok(m);
    size_t mark = m->n_writes;
    static const char *const rcpts[] = { "r1@x" };
    mc__envelope env = env_of("a@x", rcpts, 1);
    body b = { .data = "hi\n", .len = 3 };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_EPROTO);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    assert_int_equal(err->outcome, MC_OUTCOME_PROTOCOL);
    assert_non_null(strstr(err->message, "250 reply before the message data"));
    assert_int_equal(m->probes, 1);
    assert_int_equal(b.calls, 0);
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\n");
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);

    /* nothing waiting: looked for before the data and before the dot */
    m = new_stream(script, true);
    m->base.ops = &probe_ops;
    m->nothing_waiting = true;
    s = open_ok(m);
    mark = m->n_writes;
    err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), 0);
    assert_int_equal(m->probes, 2);
    assert_string_equal(mc__smtp_last_reply(s), "250 2.0.0 queued");
    assert_transcript(m, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\nhi\r\n.\r\n");
    mc__rcpts_free(res, 1);
    mc__smtp_free(s);
    free_stream(m);

    /* closed by the server before the dot: not sent, a dropped connection */
    static const char *const closed[] = {
        "220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n", NULL,
    };
    m = new_stream(closed, true);
    m->base.ops = &probe_ops;
    s = open_ok(m);
    err = NULL;
    assert_int_equal(mc__smtp_send(s, &env, body_writer, &b, &res, &err), MC_ENET);
    assert_int_equal(err->stage, MC_STAGE_DATA);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_false(mc__smtp_alive(s));
    mc__rcpts_free(res, 1);
    mc_error_free(err);
    mc__smtp_free(s);
    free_stream(m);
}

int main(void)
{
    mc__hc_init(&thc, MC_LOG_WARN, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_split_across_reads),
        cmocka_unit_test(test_reply_several_in_one_read),
        cmocka_unit_test(test_reply_line_forms),
        cmocka_unit_test(test_reply_protocol_errors),
        cmocka_unit_test(test_caps_table),
        cmocka_unit_test(test_dotstuff_table),
        cmocka_unit_test(test_multiline_greeting_and_ehlo),
        cmocka_unit_test(test_helo_fallback),
        cmocka_unit_test(test_greeting_refused),
        cmocka_unit_test(test_ehlo_protocol_violation),
        cmocka_unit_test(test_closed_during_greeting),
        cmocka_unit_test(test_starttls_not_offered),
        cmocka_unit_test(test_starttls_refused),
        cmocka_unit_test(test_starttls_injection),
        cmocka_unit_test(test_starttls_upgrade_forgets_caps),
        cmocka_unit_test(test_auth_plain_exact),
        cmocka_unit_test(test_auth_login_exact),
        cmocka_unit_test(test_auth_refused),
        cmocka_unit_test(test_xoauth2_failure),
        cmocka_unit_test(test_oauthbearer_failure),
        cmocka_unit_test(test_auth_refused_in_plaintext),
        cmocka_unit_test(test_transcript_redaction),
        cmocka_unit_test(test_pipelining_one_write),
        cmocka_unit_test(test_no_pipelining_one_command_per_write),
        cmocka_unit_test(test_big_body_few_writes),
        cmocka_unit_test(test_size_refused_before_mail),
        cmocka_unit_test(test_mail_parameters),
        cmocka_unit_test(test_max_recipients_split),
        cmocka_unit_test(test_452_after_accepted_second_transaction),
        cmocka_unit_test(test_452_none_accepted_is_transient),
        cmocka_unit_test(test_rejected_recipient_partial),
        cmocka_unit_test(test_all_refused_pipelined),
        cmocka_unit_test(test_mail_refused),
        cmocka_unit_test(test_closed_after_final_dot_is_unknown),
        cmocka_unit_test(test_closed_before_final_dot_is_net),
        cmocka_unit_test(test_421_marks_dead),
        cmocka_unit_test(test_rset_between_messages),
        cmocka_unit_test(test_stage_callback),
        cmocka_unit_test(test_header_injection_in_envelope),
        cmocka_unit_test(test_reply_line_cap),
        cmocka_unit_test(test_reply_byte_cap),
        cmocka_unit_test(test_reply_before_the_data_is_not_final),
        cmocka_unit_test(test_421_before_the_data_is_transient),
        cmocka_unit_test(test_354_to_rcpt_is_protocol),
        cmocka_unit_test(test_after_dot_unparsable_is_unknown),
        cmocka_unit_test(test_caps_in_the_dialogue),
        cmocka_unit_test(test_probe_before_the_dot),
    };
    return cmocka_run_group_tests_name("smtp", tests, NULL, NULL);
}
