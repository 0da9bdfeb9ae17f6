/* fuzz-session: the SMTP engine (core/smtp.c: the reply parser and the
 * dialogue above it) fed WHOLE server sessions: the greeting, EHLO,
 * STARTTLS, AUTH, MAIL, RCPT, DATA, the replies before and after the final
 * dot, handed to the client in pieces split at pseudo-random points, as a
 * socket does. The invariants are DESIGN.md's promises:
 *   - a message is reported sent only when its final dot went out and the
 *     server's bytes after that point are exactly one complete 2xx reply
 *     (nothing read before the dot answers it, nothing more came after);
 *   - outcome unknown only once the final dot went out;
 *   - every failure carries an outcome and a message.
 *
 * Input: byte 0 seeds the split points (with its top bit set, reads end
 * where replies end and nothing is ever waiting early, as from a server
 * that answers in time); byte 1 is flags (bits 0-1: AUTH none / PLAIN /
 * LOGIN / XOAUTH2, bit 2: require STARTTLS, bits 3-4: 1-4 recipients,
 * bit 5: a second message on the connection, bit 6: a 100 KB body, bit 7:
 * the end of the input is a timeout rather than a close); the rest is what
 * the server sends. The stream keeps read deadlines (ABI 1.1), so the
 * engine's look for bytes waiting before the final dot is fuzzed too. */
#include <stdbool.h>
#include <string.h>

#include "error.h"
#include "fuzz.h"
#include "net.h"
#include "smtp.h"

#define SESSION_INPUT_MAX (256 * 1024)
#define BIG_BODY (100 * 1024)

typedef struct fuzz_stream {
    mc_stream      base;
    const uint8_t *data;
    size_t         size, off;   /* off: bytes handed to the client so far */
    uint32_t       rng;
    bool           timeout_at_end;
    bool           by_reply;        /* reads end where replies end */
    int64_t        read_deadline;   /* set_read_deadline: 0 none */
    bool           closed;
    size_t         dot_at;      /* off when the last final dot went out, or SIZE_MAX */
    const char    *end_mark;    /* how the final write of a message ends */
} fuzz_stream;

/* bytes [from, to) of the session are whole replies; with `one`: exactly
 * one, and a 2xx */
static bool whole_replies(const uint8_t *data, size_t from, size_t to, bool one)
{
    mc__reply_parser p;
    memset(&p, 0, sizeof p);
    mc__reply r;
    memset(&r, 0, sizeof r);
    size_t n = 0;
    bool ok = true;
    while (ok && from < to) {
        size_t used = 0;
        int rc = mc__reply_feed(&p, (const char *)data + from, to - from, &used, &r);
        from += used;
        ok = rc == 1;
        n++;
    }
    if (one)
        ok = ok && n == 1 && r.code >= 200 && r.code < 300;
    mc__reply_free(&r);
    mc__reply_parser_free(&p);
    return ok;
}

static uint32_t next_rand(uint32_t *x)
{
    /* xorshift32 */
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static ssize_t fs_read(mc_stream *st, void *buf, size_t len, mc_err **err)
{
    fuzz_stream *f = (fuzz_stream *)st;
    FUZZ_CHECK(!f->closed && len > 0);
    if (f->read_deadline && f->read_deadline <= mc__mono_ms()) {
        /* a deadline already past (the engine looking for bytes waiting
         * before the final dot): now and then nothing has arrived yet */
        if (f->off < f->size && (f->by_reply || (next_rand(&f->rng) & 1)))
            return mc__error_set(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                 "timed out");
    }
    if (f->off >= f->size) {
        if (f->timeout_at_end)
            return mc__error_set(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                 "timed out");
        return 0;
    }
    uint32_t r = next_rand(&f->rng);
    /* small pieces, a line at a time, now and then a large piece; or, for
     * a well-timed server, one reply at a time (up to a line whose fourth
     * byte is not '-') */
    size_t n = 1 + (r >> 8) % 64;
    if (f->by_reply) {
        n = 0;
        while (f->off + n < f->size) {
            const uint8_t *l = f->data + f->off + n;
            const uint8_t *nl = memchr(l, '\n', f->size - f->off - n);
            size_t ll = nl ? (size_t)(nl - l) + 1 : f->size - f->off - n;
            n += ll;
            if (ll < 4 || l[3] != '-')
                break;
        }
    } else if ((r & 3) == 0) {
        n = 1 + (r >> 8) % 8192;
    } else if ((r & 3) == 1) {
        const uint8_t *nl = memchr(f->data + f->off, '\n', f->size - f->off);
        n = nl ? (size_t)(nl - (f->data + f->off)) + 1 : f->size - f->off;
    }
    if (n > len)
        n = len;
    if (n > f->size - f->off)
        n = f->size - f->off;
    memcpy(buf, f->data + f->off, n);
    f->off += n;
    return (ssize_t)n;
}

static int fs_write(mc_stream *st, const void *buf, size_t len, mc_err **err)
{
    (void)err;
    fuzz_stream *f = (fuzz_stream *)st;
    FUZZ_CHECK(!f->closed);
    size_t m = strlen(f->end_mark);
    if (len >= m && memcmp((const char *)buf + len - m, f->end_mark, m) == 0) {
        /* the final dot goes out only when every byte the server sent so
         * far was a whole reply the client consumed: nothing can be taken
         * for the reply to this dot that was sent before it */
        FUZZ_CHECK(whole_replies(f->data, 0, f->off, false));
        f->dot_at = f->off;
    }
    return 0;
}

static void fs_close(mc_stream *st)
{
    fuzz_stream *f = (fuzz_stream *)st;
    FUZZ_CHECK(!f->closed);   /* closed exactly once */
    f->closed = true;
}

static void fs_set_read_deadline(mc_stream *st, int64_t deadline_ms)
{
    ((fuzz_stream *)st)->read_deadline = deadline_ms;
}

static const mc_stream_ops fs_ops = {
    .size = sizeof(mc_stream_ops),
    .read = fs_read,
    .write = fs_write,
    .close = fs_close,
    .set_read_deadline = fs_set_read_deadline,
};

static int fake_starttls(mc_host_ctx *hc, mc_stream *st, const mc_connect_opts *o,
                         mc_err **err)
{
    (void)hc;
    (void)o;
    (void)err;
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

typedef struct body {
    bool big;
} body;

static int body_writer(void *payload, mc__sink_fn *sink, void *sp, mc_err **err)
{
    body *b = payload;
    static const char line[] = "a line of the fuzz body, with a dot:\n.\n";
    if (b->big) {
        for (size_t n = 0; n < BIG_BODY; n += sizeof(line) - 1) {
            int rc = sink(sp, line, sizeof(line) - 1, err);
            if (rc < 0)
                return rc;
        }
    }
    return sink(sp, "fuzz body end\n", 14, err);
}

static void check_error(int rc, const mc_err *e)
{
    FUZZ_CHECK(rc < 0);
    FUZZ_CHECK(e != NULL);
    FUZZ_CHECK(e->code == rc);
    FUZZ_CHECK(e->outcome != MC_OUTCOME_OK);
    FUZZ_CHECK(e->message != NULL);
    FUZZ_CHECK(strlen(e->enhanced) < sizeof e->enhanced);
}

/* One message; returns false when the connection is no longer usable. */
static bool send_one(mc__smtp *s, fuzz_stream *f, unsigned nrcpt, bool big)
{
    static const char *const rcpts[] = { "r1@example.com", "r2@example.com",
                                         "r3@example.com", "r4@example.com" };
    mc__envelope env = { .from = "a@example.com", .rcpts = rcpts, .n_rcpts = nrcpt,
                         .size = big ? BIG_BODY : 14 };
    body b = { .big = big };
    mc_rcpt_result *res = NULL;
    mc_err *err = NULL;
    f->dot_at = SIZE_MAX;
    int rc = mc__smtp_send(s, &env, body_writer, &b, &res, &err);
    bool dot = f->dot_at != SIZE_MAX;
    if (rc == 0 || rc == MC_ERCPT) {
        /* reported sent (to some): a final dot went out; when to all, what
         * came after the last one is exactly the one reply that accepted it */
        FUZZ_CHECK(dot);
        if (rc == 0)
            FUZZ_CHECK(whole_replies(f->data, f->dot_at, f->off, true));
        size_t acc = 0;
        for (size_t i = 0; i < nrcpt; i++)
            acc += res[i].accepted;
        FUZZ_CHECK(acc > 0);
        FUZZ_CHECK(rc == 0 ? acc == nrcpt : acc < nrcpt);
    }
    if (rc == MC_EUNKNOWN) {
        FUZZ_CHECK(dot);
        FUZZ_CHECK(err && err->outcome == MC_OUTCOME_UNKNOWN);
    }
    if (rc < 0 && rc != MC_ERCPT)
        check_error(rc, err);
    if (rc < 0 && err && err->outcome == MC_OUTCOME_UNKNOWN)
        FUZZ_CHECK(dot);
    mc__rcpts_free(res, nrcpt);
    mc_error_free(err);
    return (rc == 0 || rc == MC_ERCPT) && mc__smtp_alive(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > SESSION_INPUT_MAX)
        return 0;
    uint8_t seed = data[0], flags = data[1];
    data += 2;
    size -= 2;

    fuzz_stream *f = calloc(1, sizeof(*f));
    FUZZ_CHECK(f != NULL);
    f->base.ops = &fs_ops;
    f->data = data;
    f->size = size;
    f->rng = 0x9e3779b9u ^ ((uint32_t)seed * 0x01000193u);
    if (!f->rng)
        f->rng = 1;
    f->timeout_at_end = (flags & 0x80) != 0;
    f->by_reply = (seed & 0x80) != 0;
    f->end_mark = "fuzz body end\r\n.\r\n";
    f->dot_at = SIZE_MAX;

    mc__smtp_opts o = {
        .stream = &f->base,
        .transport = &fake_transport,
        .connect = &connect_opts,
        .helo = "client.example",
        .require_starttls = (flags & 0x04) != 0,
        .max_recipients = 2,
    };
    mc__smtp *s = NULL;
    mc_err *err = NULL;
    int rc = mc__smtp_open(&s, &o, &err);
    if (rc < 0) {
        check_error(rc, err);
        FUZZ_CHECK(s == NULL && f->closed);
        FUZZ_CHECK(err->outcome != MC_OUTCOME_UNKNOWN);
        mc_error_free(err);
        free(f);
        return 0;
    }
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(!o.require_starttls || mc__smtp_encrypted(s));

    unsigned mech = flags & 0x03;
    if (mech) {
        static const char *const mechs[] = { NULL, "PLAIN", "LOGIN", "XOAUTH2" };
        mc__sasl_creds c = { .user = "user@example.com", .password = "pw", .token = "tok" };
        rc = mc__smtp_auth(s, mechs[mech], &c, true, &err);
        if (rc < 0) {
            check_error(rc, err);
            FUZZ_CHECK(err->outcome != MC_OUTCOME_UNKNOWN);
        }
        mc_error_free(err);
        err = NULL;
    }
    if (rc == 0) {
        unsigned nrcpt = 1 + ((flags >> 3) & 0x03);
        bool big = (flags & 0x40) != 0;
        if (send_one(s, f, nrcpt, big) && (flags & 0x20))
            send_one(s, f, nrcpt, big);
    }
    mc__smtp_quit(s);
    FUZZ_CHECK(f->closed);
    free(f);
    return 0;
}
