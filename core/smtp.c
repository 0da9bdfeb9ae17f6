/* smtp: the SMTP client state machine over an mc_stream (RFC 5321, 3207
 * STARTTLS, 4954 AUTH, 2920 PIPELINING, 1870 SIZE, 6152 8BITMIME, 6531
 * SMTPUTF8, 2034/3463 enhanced status codes). */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "smtp.h"

#define READ_CHUNK    16384
#define DATA_BUF      (64 * 1024)   /* DATA leaves in writes of about this size */
#define DATA_FLUSH_AT 4096          /* flush when less room than this is left */
#define DEFAULT_MAX_RCPTS 100

struct mc__smtp {
    mc_host_ctx            *hc;          /* the context's log and secrets */
    mc_stream              *stream;
    const mc_transport_ops *transport;
    mc_connect_opts         connect;     /* copy; host and ca_file owned */
    char                   *helo;
    bool                    require_starttls;
    int                     max_recipients;
    mc__stage_fn           *on_stage;
    void                   *stage_payload;

    mc__smtp_caps           caps;
    bool                    size_ext;    /* SIZE announced (with or without a limit) */

    mc__buf                 in;          /* bytes read and not yet parsed */
    mc__reply_parser        parser;
    mc__reply               reply;       /* the last complete reply */
    char                   *last;        /* "250 2.0.0 Ok", first line */
    bool                    alive;
    bool                    used;        /* a transaction ran: RSET before the next */
    bool                    rset_due;    /* pipelining: RSET goes with the next MAIL */
    char                   *data_buf;    /* DATA staging, kept for the next message */
};

/* ------------------------------------------------------------ reply parser */

/* An RFC 3463 triplet at the start of t ("5.7.8 ..."), copied into out. */
static void parse_enhanced(const char *t, char out[12])
{
    out[0] = '\0';
    if (!t || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
        return;
    size_t i = 2, d1 = 0;
    while (isdigit((unsigned char)t[i]) && d1 < 3) { i++; d1++; }
    if (!d1 || t[i] != '.')
        return;
    size_t j = i + 1, d2 = 0;
    while (isdigit((unsigned char)t[j]) && d2 < 3) { j++; d2++; }
    if (!d2 || (t[j] != ' ' && t[j] != '\0' && t[j] != '\n') || j >= 12)
        return;
    memcpy(out, t, j);
    out[j] = '\0';
}

/* the numbers in the parser's messages */
_Static_assert(MC__REPLY_LINE_MAX == 4096 && MC__REPLY_LINES_MAX == 1000
               && MC__REPLY_BYTES_MAX == 65536, "update the reply parser's messages");

static void parser_reset(mc__reply_parser *p)
{
    mc__buf_clear(&p->line);
    p->code = 0;
    p->lines = 0;
    p->bytes = 0;
}

/* A protocol violation: say which (p->why), forget the reply so far. */
static int refuse(mc__reply_parser *p, const char *why)
{
    p->why = why;
    parser_reset(p);
    return MC_EPROTO;
}

/* One complete line (CR LF stripped) in p->line. 1: the reply is complete,
 * 0: more lines follow, MC_EPROTO (p->why set). */
static int take_line(mc__reply_parser *p, mc__reply *r)
{
    const char *l = p->line.data;
    size_t n = p->line.len;
    if (!l || n < 3)
        return refuse(p, "a line without a reply code");
    if (memchr(l, '\0', n))
        return refuse(p, "a NUL byte");
    if (l[0] < '2' || l[0] > '5' || !isdigit((unsigned char)l[1])
        || !isdigit((unsigned char)l[2]))
        return refuse(p, "not a reply code");
    char sep = n > 3 ? l[3] : ' ';   /* a bare "250" is a final line */
    if (sep != ' ' && sep != '-')
        return refuse(p, "neither space nor hyphen after the reply code");
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    bool first = p->code == 0;
    if (first) {
        p->code = code;
        r->code = code;
        r->enhanced[0] = '\0';
        mc__buf_clear(&r->text);
    } else if (code != p->code) {
        return refuse(p, "mismatched reply codes across the lines of one reply");
    } else if (mc__buf_put(&r->text, "\n", 1) < 0) {
        return MC_ENOMEM;
    }
    if (mc__buf_put(&r->text, n > 4 ? l + 4 : "", n > 4 ? n - 4 : 0) < 0)
        return MC_ENOMEM;
    if (first)
        parse_enhanced(r->text.data, r->enhanced);
    if (sep == ' ') {
        p->code = 0;
        p->lines = 0;
        p->bytes = 0;
        return 1;
    }
    return 0;
}

int mc__reply_feed(mc__reply_parser *p, const char *data, size_t len, size_t *used,
                   mc__reply *r)
{
    size_t i = 0;
    *used = 0;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t seg = nl ? (size_t)(nl - (data + i)) : len - i;
        /* +1: the CR before the LF is not part of the line */
        if (p->line.len + seg > MC__REPLY_LINE_MAX + 1) {
            *used = len;
            return refuse(p, "a line over 4096 bytes");
        }
        /* the whole reply as received, line ends included: checked before
         * the bytes are kept, so an endless reply never grows memory */
        if (p->bytes + p->line.len + seg + (nl ? 1 : 0) > MC__REPLY_BYTES_MAX) {
            *used = len;
            return refuse(p, "a reply over 65536 bytes");
        }
        if (mc__buf_put(&p->line, data + i, seg) < 0) {
            parser_reset(p);
            return MC_ENOMEM;
        }
        i += seg;
        if (!nl)
            break;
        i++;
        p->bytes += p->line.len + 1;
        if (p->line.len && p->line.data[p->line.len - 1] == '\r')
            p->line.data[--p->line.len] = '\0';
        int rc;
        if (++p->lines > MC__REPLY_LINES_MAX)
            rc = refuse(p, "a reply over 1000 lines");
        else if (p->line.len > MC__REPLY_LINE_MAX)
            rc = refuse(p, "a line over 4096 bytes");
        else
            rc = take_line(p, r);
        mc__buf_clear(&p->line);
        if (rc < 0) {
            parser_reset(p);
            *used = i;
            return rc;
        }
        if (rc == 1) {
            *used = i;
            return 1;
        }
    }
    *used = len;
    return 0;
}

void mc__reply_parser_free(mc__reply_parser *p)
{
    if (!p)
        return;
    mc__buf_free(&p->line);
    p->code = 0;
}

void mc__reply_free(mc__reply *r)
{
    if (!r)
        return;
    mc__buf_free(&r->text);
    r->code = 0;
    r->enhanced[0] = '\0';
}

/* ------------------------------------------------------------ capabilities */

static bool is_mech_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
           || c == '-' || c == '_';
}

static void add_mech(mc__smtp_caps *caps, const char *w, size_t n)
{
    if (n == 0 || n > 40)
        return;
    for (size_t i = 0; i < n; i++)
        if (!is_mech_char(w[i]))
            return;
    char up[41];
    for (size_t i = 0; i < n; i++)
        up[i] = (char)toupper((unsigned char)w[i]);
    up[n] = '\0';
    /* already listed? */
    const char *p = caps->auth_mechs;
    while (*p) {
        size_t m = strcspn(p, " ");
        if (m == n && memcmp(p, up, n) == 0)
            return;
        p += m;
        while (*p == ' ')
            p++;
    }
    size_t have = strlen(caps->auth_mechs);
    size_t need = have + (have ? 1 : 0) + n;
    if (need >= sizeof(caps->auth_mechs))
        return;
    if (have)
        caps->auth_mechs[have++] = ' ';
    memcpy(caps->auth_mechs + have, up, n + 1);
}

static uint64_t parse_u64(const char *p, size_t n)
{
    uint64_t v = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return 0;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

static bool keyword_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* One EHLO line after the first: "KEYWORD [params]". */
static void parse_cap_line(mc__smtp_caps *caps, bool *size_ext, const char *l, size_t n)
{
    while (n && (l[n - 1] == ' ' || l[n - 1] == '\t' || l[n - 1] == '\r'))
        n--;
    size_t k = 0;
    while (k < n && l[k] != ' ' && l[k] != '\t' && l[k] != '=')
        k++;
    const char *params = l + k;
    size_t pn = n - k;
    if (keyword_is(l, k, "STARTTLS")) {
        caps->starttls = true;
    } else if (keyword_is(l, k, "PIPELINING")) {
        caps->pipelining = true;
    } else if (keyword_is(l, k, "8BITMIME")) {
        caps->eightbitmime = true;
    } else if (keyword_is(l, k, "SMTPUTF8")) {
        caps->smtputf8 = true;
    } else if (keyword_is(l, k, "ENHANCEDSTATUSCODES")) {
        caps->enhanced = true;
    } else if (keyword_is(l, k, "DSN")) {
        caps->dsn = true;
    } else if (keyword_is(l, k, "SIZE")) {
        if (k < n && l[k] == '=')
            return;
        *size_ext = true;
        while (pn && (*params == ' ' || *params == '\t')) {
            params++;
            pn--;
        }
        size_t dn = 0;
        while (dn < pn && params[dn] != ' ' && params[dn] != '\t')
            dn++;
        caps->size = parse_u64(params, dn);
    } else if (keyword_is(l, k, "AUTH")) {
        /* "AUTH PLAIN LOGIN" and the old "AUTH=PLAIN LOGIN" */
        caps->auth = true;
        size_t i = 0;
        while (i < pn) {
            while (i < pn && (params[i] == ' ' || params[i] == '\t' || params[i] == '='))
                i++;
            size_t w = i;
            while (i < pn && params[i] != ' ' && params[i] != '\t')
                i++;
            add_mech(caps, params + w, i - w);
        }
    }
}

static void parse_caps(const char *text, mc__smtp_caps *caps, bool *size_ext)
{
    memset(caps, 0, sizeof(*caps));
    *size_ext = false;
    if (!text)
        return;
    caps->esmtp = true;
    /* the first line is the server's name and greeting, not a keyword */
    const char *p = strchr(text, '\n');
    while (p) {
        p++;
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        parse_cap_line(caps, size_ext, p, n);
        p = end;
    }
}

void mc__smtp_parse_caps(const char *ehlo_text, mc__smtp_caps *caps)
{
    bool size_ext;
    if (caps)
        parse_caps(ehlo_text, caps, &size_ext);
}

/* ------------------------------------------------------------ dot-stuffing */

enum { DS_LINE_START = 0, DS_MID = 1, DS_AFTER_CR = 2 };

size_t mc__dotstuff_run(mc__dotstuff *st, const char *in, size_t len, char *out)
{
    size_t o = 0;
    int state = st->state;
    /* the next CR at or after i: one scan per chunk when the input has
     * bare LF line ends (files written on Unix), one per line otherwise */
    const char *cr = len ? memchr(in, '\r', len) : NULL;
    for (size_t i = 0; i < len; i++) {
        if (state == DS_MID) {
            /* the rest of a line goes out as one copy (memchr, not a byte
             * loop: this is the hot path of every DATA) */
            if (cr && cr < in + i)
                cr = memchr(in + i, '\r', len - i);
            const char *nl = memchr(in + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - in) : len;
            if (cr && (size_t)(cr - in) < end)
                end = (size_t)(cr - in);
            memcpy(out + o, in + i, end - i);
            o += end - i;
            i = end;
            if (i == len)
                break;
        }
        char c = in[i];
        if (state == DS_AFTER_CR) {
            state = DS_LINE_START;
            if (c == '\n')
                continue;   /* the LF of a CRLF whose CR is already out */
        }
        if (c == '\r') {
            out[o++] = '\r';
            out[o++] = '\n';
            state = DS_AFTER_CR;
        } else if (c == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            state = DS_LINE_START;
        } else {
            if (c == '.' && state == DS_LINE_START)
                out[o++] = '.';
            out[o++] = c;
            state = DS_MID;
        }
    }
    st->state = state;
    return o;
}

size_t mc__dotstuff_end(mc__dotstuff *st, char *out)
{
    size_t o = 0;
    if (st->state == DS_MID) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    st->state = DS_LINE_START;
    return o + 3;
}

/* ------------------------------------------------------------ engine I/O */

static char *first_line(const mc__smtp *s)
{
    const char *t = s->reply.text.data ? s->reply.text.data : "";
    char *line = strndup(t, strcspn(t, "\n"));
    if (!line)
        return NULL;
    char *r = mc__redact_dup(s->hc, line);
    free(line);
    return r;
}

static void notify(mc__smtp *s, mc_stage stage)
{
    if (!s->on_stage)
        return;
    char *line = first_line(s);
    s->on_stage(s->stage_payload, stage, s->reply.code, line ? line : "");
    free(line);
}

/* Fill *err from the current reply: code, enhanced code, server text. */
static int fail_reply(mc__smtp *s, mc_err **err, int rc, mc_outcome oc, mc_stage stage,
                      const char *fmt, ...) MC__FMT(6, 7);
static int fail_reply(mc__smtp *s, mc_err **err, int rc, mc_outcome oc, mc_stage stage,
                      const char *fmt, ...)
{
    bool fresh = err && !*err;
    va_list ap;
    va_start(ap, fmt);
    mc__error_setv(err, rc, oc, stage, fmt, ap);
    va_end(ap);
    if (fresh && *err) {
        const char *text = s->reply.text.data ? s->reply.text.data : "";
        char *red = mc__redact_dup(s->hc, text);
        mc__error_reply(*err, s->reply.code, red ? red : "");
        free(red);
    }
    return rc;
}

/* The current reply is a refusal (or unexpected): the matching error. */
static int reply_error(mc__smtp *s, mc_stage stage, const char *what, mc_err **err)
{
    int code = s->reply.code;
    int rc;
    mc_outcome oc;
    if (code >= 400 && code < 500) {
        rc = MC_ETEMP;
        oc = MC_OUTCOME_TRANSIENT;
    } else if (code >= 500 && stage == MC_STAGE_AUTH) {
        rc = MC_EAUTH;
        oc = MC_OUTCOME_AUTH;
    } else if (code >= 500) {
        rc = MC_EREFUSED;
        oc = MC_OUTCOME_PERMANENT;
    } else {
        rc = MC_EPROTO;
        oc = MC_OUTCOME_PROTOCOL;
    }
    char *line = first_line(s);
    fail_reply(s, err, rc, oc, stage, "%s%s: %d %s", code < 400 ? "unexpected reply to " : "",
               what, code, line ? line : "");
    free(line);
    return rc;
}

/* Hand a lower layer's error up unchanged (its stage filled in when it
 * has none). */
static int pass_lower(mc_err **err, mc_err *lower, int rc, mc_stage stage)
{
    if (lower && lower->stage == MC_STAGE_NONE)
        lower->stage = stage;
    if (err && !*err && lower) {
        *err = lower;
        return rc;
    }
    if (err && !*err)
        mc__error_set(err, rc, mc__outcome_of(rc), stage, "%s", mc_strerror(rc));
    mc_error_free(lower);
    return rc;
}

static void log_reply(const mc__smtp *s)
{
    if (mc__log_level(s->hc) < MC_LOG_TRANSCRIPT)
        return;
    const char *t = s->reply.text.data ? s->reply.text.data : "";
    for (;;) {
        size_t n = strcspn(t, "\n");
        bool last = t[n] == '\0';
        mc__log(s->hc, MC_LOG_TRANSCRIPT, "S: %03d%c%.*s", s->reply.code, last ? ' ' : '-',
                (int)n, t);
        if (last)
            break;
        t += n + 1;
    }
}

/* A complete reply is in s->reply: log it, keep its first line. */
static void got_reply(mc__smtp *s)
{
    log_reply(s);
    free(s->last);
    char *line = first_line(s);
    if (!line || asprintf(&s->last, "%03d %s", s->reply.code, line) < 0)
        s->last = NULL;
    free(line);
    if (s->reply.code == 421)
        s->alive = false;   /* the server is closing the connection */
}

static int reply_timeout_ms(const mc__smtp *s)
{
    return s->connect.timeout_ms > 0 ? s->connect.timeout_ms : 60000;
}

/* The time the reply now awaited must be complete by: timeout_ms from now,
 * however the server trickles it. Handed to the stream when it keeps
 * deadlines (ABI 1.1: it also waits while the server is still reading what
 * was written, a body's end in the socket buffer); returned, to be checked
 * between reads, for a stream that does not (0: the stream keeps it). */
static int64_t reply_deadline(mc__smtp *s)
{
    int64_t deadline = mc__mono_ms() + reply_timeout_ms(s);
    const mc_stream_ops *ops = s->stream->ops;
    if (MC_SIZE_HAS(ops, mc_stream_ops, set_read_deadline) && ops->set_read_deadline) {
        ops->set_read_deadline(s->stream, deadline);
        return 0;
    }
    return deadline;
}

/* What a stream says when its read deadline passes. */
static ssize_t reply_timed_out(const mc__smtp *s, mc_err **lower)
{
    const char *h = s->connect.host ? s->connect.host : "server";
    return mc__error_set(lower, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                         strchr(h, ':') ? "[%s]:%u: timed out after %d s waiting for the server"
                                        : "%s:%u: timed out after %d s waiting for the server",
                         h, (unsigned)s->connect.port, (reply_timeout_ms(s) + 999) / 1000);
}

/* Read one complete reply into s->reply. after_dot: the final dot is out,
 * so anything but one complete, parsable reply (a lost connection, a
 * timeout, a malformed or oversized reply) means the outcome is unknown. */
static int read_reply(mc__smtp *s, mc_stage stage, bool after_dot, mc_err **err)
{
    int64_t deadline = reply_deadline(s);
    for (;;) {
        if (s->in.len) {
            size_t used = 0;
            int rc = mc__reply_feed(&s->parser, s->in.data, s->in.len, &used, &s->reply);
            mc__buf_consume(&s->in, used);
            if (rc == 1) {
                got_reply(s);
                return 0;
            }
            if (rc < 0) {
                s->alive = false;
                if (after_dot)
                    return mc__error_set(err, MC_EUNKNOWN, MC_OUTCOME_UNKNOWN, MC_STAGE_DATA,
                                         "unparsable reply after the final dot (%s): the "
                                         "message may have been accepted and is not resent",
                                         rc == MC_ENOMEM ? "out of memory" : s->parser.why);
                if (rc == MC_ENOMEM)
                    return mc__error_set(err, rc, MC_OUTCOME_TRANSIENT, stage, "out of memory");
                return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, stage,
                                     "the server broke the protocol at %s: malformed reply "
                                     "(%s)", mc_stage_name(stage), s->parser.why);
            }
        }
        char chunk[READ_CHUNK];
        mc_err *lower = NULL;
        ssize_t n = !deadline || mc__mono_ms() < deadline
                    ? s->stream->ops->read(s->stream, chunk, sizeof(chunk), &lower)
                    : reply_timed_out(s, &lower);
        if (n > 0) {
            if (mc__buf_put(&s->in, chunk, (size_t)n) < 0) {
                s->alive = false;
                return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, stage,
                                     "out of memory");
            }
            continue;
        }
        s->alive = false;
        if (after_dot) {
            mc__error_set(err, MC_EUNKNOWN, MC_OUTCOME_UNKNOWN, MC_STAGE_DATA,
                          "connection lost after the final dot (%s): the message may have "
                          "been accepted and is not resent",
                          lower && lower->message ? lower->message : "closed by the server");
            mc_error_free(lower);
            return MC_EUNKNOWN;
        }
        if (n == 0) {
            mc_error_free(lower);
            return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, stage,
                                 "connection closed by the server at %s", mc_stage_name(stage));
        }
        return pass_lower(err, lower, (int)n, stage);
    }
}

static int send_raw(mc__smtp *s, mc_stage stage, const void *data, size_t len, mc_err **err)
{
    if (!s->alive)
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, stage,
                             "connection to the server is closed");
    mc_err *lower = NULL;
    int rc = s->stream->ops->write(s->stream, data, len, &lower);
    if (rc < 0) {
        s->alive = false;
        return pass_lower(err, lower, rc, stage);
    }
    mc_error_free(lower);
    return 0;
}

/* Append "line\r\n" to b and log it (as `shown` when it carries a secret). */
static int add_line(const mc__smtp *s, mc__buf *b, const char *line, const char *shown)
{
    mc__log(s->hc, MC_LOG_TRANSCRIPT, "C: %s", shown ? shown : line);
    if (mc__buf_puts(b, line) < 0 || mc__buf_put(b, "\r\n", 2) < 0)
        return MC_ENOMEM;
    return 0;
}

/* Send one command line and read its reply. */
static int command(mc__smtp *s, mc_stage stage, const char *line, const char *shown,
                   mc_err **err)
{
    mc__buf b = MC__BUF_INIT;
    b.secret = shown != NULL;
    int rc = add_line(s, &b, line, shown);
    if (rc < 0)
        rc = mc__error_set(err, rc, MC_OUTCOME_TRANSIENT, stage, "out of memory");
    else
        rc = send_raw(s, stage, b.data, b.len, err);
    mc__buf_free(&b);
    if (rc == 0)
        rc = read_reply(s, stage, false, err);
    return rc;
}

/* ------------------------------------------------------------ open */

static char *local_name(void)
{
    char name[256];
    if (gethostname(name, sizeof(name) - 1) < 0)
        return strdup("localhost");
    name[sizeof(name) - 1] = '\0';
    bool ok = name[0] != '\0';
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '-' || *p == '.';
    return strdup(ok ? name : "localhost");
}

static int greeting(mc__smtp *s, mc_err **err)
{
    int rc = read_reply(s, MC_STAGE_GREETING, false, err);
    if (rc < 0)
        return rc;
    notify(s, MC_STAGE_GREETING);
    if (s->reply.code == 220)
        return 0;
    return reply_error(s, MC_STAGE_GREETING, "greeting", err);
}

static int ehlo(mc__smtp *s, mc_err **err)
{
    memset(&s->caps, 0, sizeof(s->caps));
    s->size_ext = false;
    s->parser.enhanced_ok = false;
    char *line = NULL;
    if (asprintf(&line, "EHLO %s", s->helo) < 0)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_EHLO, "out of memory");
    int rc = command(s, MC_STAGE_EHLO, line, NULL, err);
    free(line);
    if (rc < 0)
        return rc;
    if (s->reply.code == 250) {
        parse_caps(s->reply.text.data, &s->caps, &s->size_ext);
        s->parser.enhanced_ok = s->caps.enhanced;
        notify(s, MC_STAGE_EHLO);
        return 0;
    }
    if (s->reply.code < 500) {
        notify(s, MC_STAGE_EHLO);
        return reply_error(s, MC_STAGE_EHLO, "EHLO", err);
    }
    /* EHLO refused (500, 502): an old server, HELO */
    if (asprintf(&line, "HELO %s", s->helo) < 0)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_EHLO, "out of memory");
    rc = command(s, MC_STAGE_EHLO, line, NULL, err);
    free(line);
    if (rc < 0)
        return rc;
    notify(s, MC_STAGE_EHLO);
    if (s->reply.code == 250)
        return 0;
    return reply_error(s, MC_STAGE_EHLO, "HELO", err);
}

static int starttls(mc__smtp *s, mc_err **err)
{
    if (!s->caps.starttls)
        return mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                             "server does not offer STARTTLS; refusing to continue in plaintext");
    if (!s->transport || !s->transport->starttls)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_STARTTLS,
                             "the transport cannot upgrade a connection to TLS");
    int rc = command(s, MC_STAGE_STARTTLS, "STARTTLS", NULL, err);
    if (rc < 0)
        return rc;
    notify(s, MC_STAGE_STARTTLS);
    if (s->reply.code != 220) {
        if (s->reply.code >= 400 && s->reply.code < 500)
            return reply_error(s, MC_STAGE_STARTTLS, "STARTTLS", err);
        char *line = first_line(s);
        fail_reply(s, err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                   "STARTTLS refused: %d %s", s->reply.code, line ? line : "");
        free(line);
        return MC_EREFUSED;
    }
    if (s->in.len || s->parser.line.len) {
        s->alive = false;
        return mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                             "server sent data after its STARTTLS reply (response injection)");
    }
    mc_err *lower = NULL;
    s->connect.deadline_ms = mc__mono_ms() + reply_timeout_ms(s);   /* the handshake's */
    rc = s->transport->starttls(s->hc, s->stream, &s->connect, &lower);
    if (rc < 0) {
        s->alive = false;
        return pass_lower(err, lower, rc, MC_STAGE_TLS);
    }
    mc_error_free(lower);
    if (s->on_stage) {
        char line[160];
        snprintf(line, sizeof(line), "%s %s, certificate %s", s->stream->tls_version,
                 s->stream->tls_cipher, s->stream->peer_verified ? "verified" : "NOT verified");
        s->on_stage(s->stage_payload, MC_STAGE_TLS, 0, line);
    }
    /* forget everything learnt in plaintext */
    memset(&s->caps, 0, sizeof(s->caps));
    s->size_ext = false;
    return ehlo(s, err);
}

int mc__smtp_open(mc__smtp **out, const mc__smtp_opts *o, mc_err **err)
{
    if (!out) {
        if (o && o->stream)
            o->stream->ops->close(o->stream);
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "no output");
    }
    *out = NULL;
    if (!o || !o->stream || !o->stream->ops) {
        if (o && o->stream && o->stream->ops)
            o->stream->ops->close(o->stream);
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "no stream");
    }
    mc__smtp *s = calloc(1, sizeof(*s));
    if (!s) {
        o->stream->ops->close(o->stream);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_GREETING,
                             "out of memory");
    }
    s->stream = o->stream;
    s->hc = o->hc ? o->hc : o->stream->hc;
    s->transport = o->transport;
    if (o->connect) {
        s->connect = *o->connect;
        s->connect.host = o->connect->host ? strdup(o->connect->host) : NULL;
        s->connect.ca_file = o->connect->ca_file ? strdup(o->connect->ca_file) : NULL;
    }
    s->connect.size = sizeof(s->connect);
    s->helo = o->helo ? strdup(o->helo) : local_name();
    s->require_starttls = o->require_starttls;
    s->max_recipients = o->max_recipients >= 1 ? o->max_recipients : DEFAULT_MAX_RCPTS;
    s->on_stage = o->on_stage;
    s->stage_payload = o->stage_payload;
    s->alive = true;
    if (!s->helo || (o->connect && o->connect->host && !s->connect.host)
        || (o->connect && o->connect->ca_file && !s->connect.ca_file)) {
        mc__smtp_free(s);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_GREETING,
                             "out of memory");
    }
    int rc = greeting(s, err);
    if (rc == 0)
        rc = ehlo(s, err);
    if (rc == 0 && s->require_starttls)
        rc = starttls(s, err);
    if (rc < 0) {
        mc__smtp_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const mc__smtp_caps *mc__smtp_get_caps(const mc__smtp *s)
{
    return s ? &s->caps : NULL;
}

bool mc__smtp_encrypted(const mc__smtp *s)
{
    return s && s->stream && s->stream->encrypted;
}

const mc_stream *mc__smtp_stream(const mc__smtp *s)
{
    return s ? s->stream : NULL;
}

const char *mc__smtp_last_reply(const mc__smtp *s)
{
    return s && s->last ? s->last : "";
}

bool mc__smtp_alive(const mc__smtp *s)
{
    return s && s->alive;
}

/* ------------------------------------------------------------ AUTH */

/* Send a line that carries a secret (logged as `shown`), read the reply. */
static int secret_command(mc__smtp *s, const char *prefix, const mc__buf *payload,
                          const char *shown, mc_err **err)
{
    mc__buf line = MC__BUF_INIT;
    line.secret = true;
    int rc = 0;
    if (mc__buf_puts(&line, prefix) < 0
        || (payload->data && mc__buf_put(&line, payload->data, payload->len) < 0))
        rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_AUTH, "out of memory");
    if (rc == 0)
        rc = command(s, MC_STAGE_AUTH, line.data, shown, err);
    mc__buf_free(&line);
    return rc;
}

/* XOAUTH2 / OAUTHBEARER after a 334 carrying the JSON failure: answer
 * (empty line / "AQ=="), read the final reply, report status and scope. */
static int oauth_failure(mc__smtp *s, const char *mech, const char *answer, mc_err **err)
{
    mc__sasl_failure f;
    bool parsed = mc__sasl_parse_failure(s->reply.text.data, &f) == 0;
    int rc = command(s, MC_STAGE_AUTH, answer, NULL, err);
    if (rc < 0) {
        if (parsed)
            mc__sasl_failure_free(&f);
        return rc;
    }
    notify(s, MC_STAGE_AUTH);
    if (s->reply.code == 235) {
        if (parsed)
            mc__sasl_failure_free(&f);
        return 0;
    }
    int code = s->reply.code;
    if (code >= 400 && code < 500) {
        rc = MC_ETEMP;
    } else {
        rc = MC_EAUTH;
    }
    char *line = first_line(s);
    if (parsed)
        fail_reply(s, err, rc, rc == MC_ETEMP ? MC_OUTCOME_TRANSIENT : MC_OUTCOME_AUTH,
                   MC_STAGE_AUTH, "%s refused: status %s, scope %s (%d %s)", mech,
                   f.status ? f.status : "?", f.scope ? f.scope : "?", code, line ? line : "");
    else
        fail_reply(s, err, rc, rc == MC_ETEMP ? MC_OUTCOME_TRANSIENT : MC_OUTCOME_AUTH,
                   MC_STAGE_AUTH, "%s refused: %d %s", mech, code, line ? line : "");
    free(line);
    if (parsed)
        mc__sasl_failure_free(&f);
    return rc;
}

int mc__smtp_auth(mc__smtp *s, const char *mechanism, const mc__sasl_creds *c,
                  bool allow_plaintext, mc_err **err)
{
    if (!s || !mechanism || !c || !c->user)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_AUTH,
                             "AUTH needs a mechanism and a user");
    /* one rule with `check` (config.c): a transport that declares TLS or
     * STARTTLS must deliver an encrypted stream, whatever
     * allow_plaintext_auth says; any other needs allow_plaintext_auth to
     * send credentials in clear */
    mc_transport_security sec = mc__transport_security(s->transport, s->hc, s->connect.options);
    if (!s->stream->encrypted && (sec == MC_SECURITY_TLS || sec == MC_SECURITY_STARTTLS))
        return mc__error_set(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_AUTH,
                             "refusing to send credentials: the transport declares %s but the "
                             "connection is not encrypted",
                             sec == MC_SECURITY_TLS ? "TLS" : "STARTTLS");
    if (!s->stream->encrypted && !allow_plaintext)
        return mc__error_set(err, MC_EAUTH, MC_OUTCOME_CONFIG, MC_STAGE_AUTH,
                             "refusing to send credentials over an unencrypted connection");
    if (!s->alive)
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_AUTH,
                             "connection to the server is closed");
    bool plain = strcasecmp(mechanism, "PLAIN") == 0;
    bool login = strcasecmp(mechanism, "LOGIN") == 0;
    bool xoauth2 = strcasecmp(mechanism, "XOAUTH2") == 0;
    bool bearer = strcasecmp(mechanism, "OAUTHBEARER") == 0;
    if (!plain && !login && !xoauth2 && !bearer)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_AUTH,
                             "unsupported SASL mechanism %s", mechanism);
    if (((plain || login) && !c->password) || ((xoauth2 || bearer) && !c->token))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_AUTH,
                             "%s needs a %s", mechanism, plain || login ? "password" : "token");

    mc__buf payload = MC__BUF_INIT;
    payload.secret = true;
    int rc = 0;
    const char *mech = plain ? "PLAIN" : login ? "LOGIN" : xoauth2 ? "XOAUTH2" : "OAUTHBEARER";

    if (plain || xoauth2 || bearer) {
        if (plain)
            rc = mc__sasl_plain(&payload, c->user, c->password);
        else if (xoauth2)
            rc = mc__sasl_xoauth2(&payload, c->user, c->token);
        else
            rc = mc__sasl_oauthbearer(&payload, c->user,
                                      s->connect.host ? s->connect.host : "", s->connect.port,
                                      c->token);
        if (rc < 0) {
            mc__buf_free(&payload);
            return mc__error_set(err, rc, mc__outcome_of(rc), MC_STAGE_AUTH,
                                 "cannot encode the %s response", mech);
        }
        char prefix[32], shown[48];
        snprintf(prefix, sizeof(prefix), "AUTH %s ", mech);
        snprintf(shown, sizeof(shown), "AUTH %s <redacted>", mech);
        rc = secret_command(s, prefix, &payload, shown, err);
        mc__buf_free(&payload);
        if (rc < 0)
            return rc;
        if (s->reply.code == 334 && (xoauth2 || bearer))
            return oauth_failure(s, mech, xoauth2 ? "" : "AQ==", err);
    } else {
        rc = command(s, MC_STAGE_AUTH, "AUTH LOGIN", NULL, err);
        /* answer the prompts in order: user, then password */
        for (int step = 0; rc == 0 && step < 2 && s->reply.code == 334; step++) {
            const char *v = step == 0 ? c->user : c->password;
            mc__buf_clear(&payload);
            rc = mc__base64_encode(&payload, v, strlen(v));
            if (rc < 0)
                rc = mc__error_set(err, rc, MC_OUTCOME_TRANSIENT, MC_STAGE_AUTH,
                                   "out of memory");
            else
                rc = secret_command(s, "", &payload, "<redacted>", err);
        }
        mc__buf_free(&payload);
        if (rc < 0)
            return rc;
    }
    if (s->reply.code == 334) {
        /* a challenge we have no answer for: cancel (RFC 4954) */
        rc = command(s, MC_STAGE_AUTH, "*", NULL, err);
        if (rc < 0)
            return rc;
        notify(s, MC_STAGE_AUTH);
        if (s->reply.code < 400)
            return fail_reply(s, err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_AUTH,
                              "AUTH %s: unexpected challenge, exchange cancelled", mech);
        char what[32];
        snprintf(what, sizeof(what), "AUTH %s", mech);
        return reply_error(s, MC_STAGE_AUTH, what, err);
    }
    notify(s, MC_STAGE_AUTH);
    if (s->reply.code == 235)
        return 0;
    char what[32];
    snprintf(what, sizeof(what), "AUTH %s", mech);
    return reply_error(s, MC_STAGE_AUTH, what, err);
}

/* ------------------------------------------------------------ sending */

typedef struct data_sink {
    mc__smtp    *s;
    mc__dotstuff ds;
    char        *buf;    /* DATA_BUF + room for the terminator */
    size_t       len;
    uint64_t     total;
} data_sink;

static int sink_flush(data_sink *d, mc_err **err)
{
    if (!d->len)
        return 0;
    int rc = send_raw(d->s, MC_STAGE_DATA, d->buf, d->len, err);
    d->len = 0;
    return rc;
}

static int sink_write(void *payload, const void *data, size_t len, mc_err **err)
{
    data_sink *d = payload;
    const char *p = data;
    while (len) {
        size_t room = DATA_BUF - d->len;
        if (room < DATA_FLUSH_AT) {
            int rc = sink_flush(d, err);
            if (rc < 0)
                return rc;
            room = DATA_BUF;
        }
        size_t n = (room - 2) / 2;
        if (n > len)
            n = len;
        d->len += mc__dotstuff_run(&d->ds, p, n, d->buf + d->len);
        d->total += n;
        p += n;
        len -= n;
    }
    return 0;
}

static mc_rcpt_result *copy_rcpts(const mc_rcpt_result *r, size_t n)
{
    mc_rcpt_result *c = calloc(n ? n : 1, sizeof(*c));
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        c[i] = r[i];
        c[i].address = r[i].address ? strdup(r[i].address) : NULL;
        c[i].text = r[i].text ? strdup(r[i].text) : NULL;
    }
    return c;
}

static void record(mc__smtp *s, mc_rcpt_result *r)
{
    r->smtp_code = s->reply.code;
    r->accepted = s->reply.code >= 200 && s->reply.code < 300;
    memcpy(r->enhanced, s->reply.enhanced, sizeof(r->enhanced));
    free(r->text);
    r->text = s->reply.text.data ? mc__redact_dup(s->hc, s->reply.text.data) : NULL;
}

static bool has_crlf(const char *a)
{
    return strpbrk(a, "\r\n") != NULL;
}

/* Move a locally built error into *err (the first error wins). */
static int hand_over(mc_err **err, mc_err *local, int rc)
{
    if (err && !*err)
        *err = local;
    else
        mc_error_free(local);
    return rc;
}

/* What one transaction did. */
typedef struct txn {
    size_t accepted;     /* recipients accepted in this transaction */
    bool   full;         /* a 452: the server takes no more recipients now */
    size_t n_deferred;   /* recipients to send in a further transaction */
} txn;

/* Bytes waiting in the connection, without waiting for any: a stream that
 * keeps read deadlines (ABI 1.1) tries a read before it waits, so one read
 * with a deadline already past hands over what is there, or times out at
 * once. Appended to s->in. @return 0, or the error of a connection found
 * closed or broken (nothing was waiting: MC_ETIMEOUT, which is fine). A
 * stream of ABI 1.0 is not asked: only what was read already counts. */
static int probe_pending(mc__smtp *s, mc_err **err)
{
    const mc_stream_ops *ops = s->stream->ops;
    if (!MC_SIZE_HAS(ops, mc_stream_ops, set_read_deadline) || !ops->set_read_deadline)
        return 0;
    char chunk[READ_CHUNK];
    mc_err *lower = NULL;
    ops->set_read_deadline(s->stream, mc__mono_ms());   /* now: no wait */
    ssize_t n = ops->read(s->stream, chunk, sizeof(chunk), &lower);
    ops->set_read_deadline(s->stream, 0);
    if (n > 0 && mc__buf_put(&s->in, chunk, (size_t)n) < 0)
        n = MC_ENOMEM;
    if (n > 0 || n == MC_ETIMEOUT) {
        mc_error_free(lower);
        return 0;
    }
    s->alive = false;
    if (n == 0) {
        mc_error_free(lower);
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_DATA,
                             "connection closed by the server before the final dot");
    }
    if (n == MC_ENOMEM) {
        mc_error_free(lower);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_DATA,
                             "out of memory");
    }
    return pass_lower(err, lower, (int)n, MC_STAGE_DATA);
}

/* Between the 354 and the final dot the server has nothing to say: the
 * only reply still due is the one to the dot. Bytes waiting from it (read
 * and not yet parsed: a reply sent in the same write as the 354, say; or
 * arrived in the connection meanwhile, see probe_pending) are a protocol
 * violation, and a reply there is not the final reply: the message is not
 * sent. Except one complete 421 and nothing after it: the server is
 * closing (RFC 5321 3.8), a transient failure. Either way the connection
 * is dropped without the final dot, so the server discards whatever data
 * it got. `when`: "before the message data", ... */
static int early_reply(mc__smtp *s, const char *when, mc_err **err)
{
    if (!s->in.len) {
        int rc = probe_pending(s, err);
        if (rc < 0 || !s->in.len)
            return rc;
    }
    s->alive = false;
    size_t used = 0;
    int rc = mc__reply_feed(&s->parser, s->in.data, s->in.len, &used, &s->reply);
    mc__buf_consume(&s->in, used);
    if (rc == 1) {
        got_reply(s);
        if (s->reply.code == 421 && !s->in.len)
            return reply_error(s, MC_STAGE_DATA, "DATA", err);
    }
    int code = rc == 1 ? s->reply.code : 0;
    parser_reset(&s->parser);
    mc__buf_clear(&s->in);
    if (code)
        return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_DATA,
                             "the server broke the protocol at data: a %d reply %s, which is "
                             "not the final reply; the message was not sent", code, when);
    return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_DATA,
                         "the server broke the protocol at data: bytes %s, which are not the "
                         "final reply; the message was not sent", when);
}

/* DATA after a 354: the body through dot-stuffing, the terminator in the
 * same final write (once nothing is waiting from the server), then the
 * final reply: exactly one, with nothing after it. */
static int send_body(mc__smtp *s, mc__writer_fn *writer, void *writer_payload, mc_err **err)
{
    data_sink d = { .s = s };
    if (!s->data_buf)
        s->data_buf = malloc(DATA_BUF + 16);
    d.buf = s->data_buf;
    if (!d.buf) {
        s->alive = false;   /* DATA is open and cannot be finished */
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_DATA,
                             "out of memory");
    }
    int rc = writer(writer_payload, sink_write, &d, err);
    if (rc == 0) {
        if ((rc = early_reply(s, "before the final dot", err)) < 0)
            return rc;
        d.len += mc__dotstuff_end(&d.ds, d.buf + d.len);
        mc__log(s->hc, MC_LOG_TRANSCRIPT, "C: <message data, %" PRIu64 " bytes>", d.total);
        mc__log(s->hc, MC_LOG_TRANSCRIPT, "C: .");
        rc = sink_flush(&d, err);
    } else {
        /* never finish a message whose data is incomplete: drop the
         * connection without the final dot, so the server discards it */
        if (err && !*err)
            mc__error_set(err, rc, mc__outcome_of(rc), MC_STAGE_DATA,
                          "message data could not be produced");
        s->alive = false;
    }
    if (rc < 0)
        return rc;
    rc = read_reply(s, MC_STAGE_DATA, true, err);
    if (rc == 0 && s->in.len) {
        s->alive = false;
        return mc__error_set(err, MC_EUNKNOWN, MC_OUTCOME_UNKNOWN, MC_STAGE_DATA,
                             "more than one reply after the final dot (%d, then more): the "
                             "message may have been accepted and is not resent", s->reply.code);
    }
    return rc;
}

/* The DATA reply when no recipient was accepted: a 354 still needs an
 * (empty) end of data. Then RSET. */
static int abandon(mc__smtp *s, bool data_answered, mc_err **err)
{
    if (data_answered && s->reply.code == 354) {
        mc__log(s->hc, MC_LOG_TRANSCRIPT, "C: .");
        int rc = send_raw(s, MC_STAGE_DATA, ".\r\n", 3, err);
        if (rc == 0)
            rc = read_reply(s, MC_STAGE_DATA, false, err);
        if (rc < 0)
            return rc;
    }
    if (!s->alive)
        return 0;
    int rc = command(s, MC_STAGE_RCPT, "RSET", NULL, err);
    if (rc < 0)
        return rc;
    if (s->reply.code != 250)
        return reply_error(s, MC_STAGE_RCPT, "RSET", err);
    s->used = false;
    return 0;
}

/* Results of this transaction's accepted recipients after a refused DATA
 * or end of data: they did not get the message. */
static void unaccept(mc__smtp *s, mc_rcpt_result *res, const size_t *batch, size_t k)
{
    for (size_t j = 0; j < k; j++)
        if (res[batch[j]].accepted)
            record(s, &res[batch[j]]);
}

/* RFC 3461 4: xtext, "+XX" for '+', '=' and anything outside '!'..'~' */
static int put_xtext(mc__buf *b, const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        int rc = *p >= '!' && *p <= '~' && *p != '+' && *p != '='
                 ? mc__buf_put(b, p, 1) : mc__buf_printf(b, "+%02X", *p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* "RCPT TO:<a>", with NOTIFY= and ORCPT= when DSN was asked and offered
 * (ORCPT only for an ASCII address: rfc822 is an ASCII type). malloc'd. */
static char *rcpt_line(const mc__smtp *s, const mc__envelope *env, const char *rcpt)
{
    mc__buf b = MC__BUF_INIT;
    int rc = mc__buf_printf(&b, "RCPT TO:<%s>", rcpt);
    if (rc == 0 && env->dsn_notify && s->caps.dsn) {
        rc = mc__buf_printf(&b, " NOTIFY=%s", env->dsn_notify);
        bool ascii = true;
        for (const char *p = rcpt; *p; p++)
            ascii = ascii && (unsigned char)*p < 0x80;
        if (rc == 0 && ascii && (rc = mc__buf_puts(&b, " ORCPT=rfc822;")) == 0)
            rc = put_xtext(&b, rcpt);
    }
    if (rc < 0) {
        mc__buf_free(&b);
        return NULL;
    }
    return mc__buf_detach(&b);
}

static int transaction(mc__smtp *s, const mc__envelope *env, const size_t *batch, size_t k,
                       mc__writer_fn *writer, void *writer_payload, mc_rcpt_result *res,
                       size_t *deferred, txn *t, mc_err **err)
{
    memset(t, 0, sizeof(*t));
    bool pipe = s->caps.pipelining;
    /* RSET after an earlier transaction: in the same write as MAIL when
     * pipelining (RFC 2920 allows it anywhere in a group), which saves a
     * round trip per message */
    bool rset = pipe && s->rset_due;
    s->rset_due = false;
    mc__buf mail = MC__BUF_INIT;
    int rc = mc__buf_printf(&mail, "MAIL FROM:<%s>", env->from);
    if (rc == 0 && s->size_ext && env->size)
        rc = mc__buf_printf(&mail, " SIZE=%" PRIu64, env->size);
    if (rc == 0 && env->eightbit && s->caps.eightbitmime)
        rc = mc__buf_puts(&mail, " BODY=8BITMIME");
    if (rc == 0 && env->smtputf8 && s->caps.smtputf8)
        rc = mc__buf_puts(&mail, " SMTPUTF8");
    if (rc == 0 && env->dsn_ret && s->caps.dsn)
        rc = mc__buf_printf(&mail, " RET=%s", env->dsn_ret);
    if (rc == 0 && env->dsn_envid && s->caps.dsn && (rc = mc__buf_puts(&mail, " ENVID=")) == 0)
        rc = put_xtext(&mail, env->dsn_envid);
    if (rc == 0 && (env->dsn_notify || env->dsn_ret || env->dsn_envid) && !s->caps.dsn)
        mc__log(s->hc, MC_LOG_INFO, "the server does not offer DSN: NOTIFY, RET and ENVID dropped");
    if (rc < 0) {
        mc__buf_free(&mail);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MAIL, "out of memory");
    }

    s->used = true;
    if (pipe) {
        /* MAIL, every RCPT and DATA in one write (RFC 2920) */
        mc__buf cmds = MC__BUF_INIT;
        rc = rset ? add_line(s, &cmds, "RSET", NULL) : 0;
        if (rc == 0)
            rc = add_line(s, &cmds, mail.data, NULL);
        for (size_t j = 0; rc == 0 && j < k; j++) {
            char *line = rcpt_line(s, env, env->rcpts[batch[j]]);
            rc = line ? add_line(s, &cmds, line, NULL) : MC_ENOMEM;
            free(line);
        }
        if (rc == 0)
            rc = add_line(s, &cmds, "DATA", NULL);
        if (rc < 0)
            rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MAIL,
                               "out of memory");
        else
            rc = send_raw(s, MC_STAGE_MAIL, cmds.data, cmds.len, err);
        mc__buf_free(&cmds);
    } else {
        rc = command(s, MC_STAGE_MAIL, mail.data, NULL, err);
    }
    mc__buf_free(&mail);
    if (rc < 0)
        return rc;
    if (rset) {
        if ((rc = read_reply(s, MC_STAGE_MAIL, false, err)) < 0)
            return rc;
        if (s->reply.code != 250) {
            /* the MAIL, RCPT and DATA behind it are in flight: drop the
             * connection rather than guess at the state (no data was sent) */
            rc = reply_error(s, MC_STAGE_MAIL, "RSET", err);
            s->alive = false;
            return rc;
        }
    }
    if (pipe && (rc = read_reply(s, MC_STAGE_MAIL, false, err)) < 0)
        return rc;
    notify(s, MC_STAGE_MAIL);

    if (s->reply.code < 200 || s->reply.code >= 300) {
        /* MAIL refused: the error is this reply; the pipelined RCPT and
         * DATA replies are still to be read */
        mc_err *local = NULL;
        rc = reply_error(s, MC_STAGE_MAIL, "MAIL FROM", &local);
        if (s->reply.code < 400)
            s->alive = false;   /* a 3xx: what the server expects next is unknown */
        if (pipe && s->alive) {
            int r2 = 0;
            for (size_t j = 0; r2 == 0 && j < k && s->alive; j++)
                r2 = read_reply(s, MC_STAGE_RCPT, false, NULL);
            if (r2 == 0 && s->alive)
                r2 = read_reply(s, MC_STAGE_DATA, false, NULL);
            if (r2 == 0 && s->alive)
                abandon(s, true, NULL);
        } else if (s->alive) {
            abandon(s, false, NULL);
        }
        return hand_over(err, local, rc);
    }

    for (size_t j = 0; j < k; j++) {
        if (!pipe) {
            char *line = rcpt_line(s, env, env->rcpts[batch[j]]);
            if (!line)
                return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_RCPT,
                                     "out of memory");
            rc = command(s, MC_STAGE_RCPT, line, NULL, err);
            free(line);
        } else {
            rc = read_reply(s, MC_STAGE_RCPT, false, err);
        }
        if (rc < 0)
            return rc;
        notify(s, MC_STAGE_RCPT);
        if (s->reply.code >= 300 && s->reply.code < 400) {
            /* a 354 (or any 3xx) is no recipient's answer: the server may
             * have taken the DATA as begun; drop the connection */
            s->alive = false;
            return reply_error(s, MC_STAGE_RCPT, "RCPT TO", err);
        }
        mc_rcpt_result *r = &res[batch[j]];
        record(s, r);
        if (r->accepted) {
            t->accepted++;
        } else if (s->reply.code == 421) {
            return reply_error(s, MC_STAGE_RCPT, "RCPT TO", err);
        } else if (s->reply.code == 452) {
            /* too many recipients for now (RFC 5321 4.5.3.1.10) */
            t->full = true;
            if (pipe) {
                deferred[t->n_deferred++] = batch[j];
            } else {
                for (size_t m = j; m < k; m++)
                    deferred[t->n_deferred++] = batch[m];
                break;
            }
        }
    }

    if (t->accepted == 0) {
        if (pipe && (rc = read_reply(s, MC_STAGE_DATA, false, err)) < 0)
            return rc;
        return abandon(s, pipe, err);
    }

    if (pipe)
        rc = read_reply(s, MC_STAGE_DATA, false, err);
    else
        rc = command(s, MC_STAGE_DATA, "DATA", NULL, err);
    if (rc < 0)
        return rc;
    if (s->reply.code != 354) {
        notify(s, MC_STAGE_DATA);
        unaccept(s, res, batch, k);
        rc = reply_error(s, MC_STAGE_DATA, "DATA", err);
        if (s->reply.code < 400)
            s->alive = false;   /* a 2xx or other 3xx to DATA: the state is unknown */
        else if (s->alive)
            abandon(s, false, NULL);
        return rc;
    }
    /* nothing may wait behind the 354 (a reply in the same write is no
     * reply to the data, which is not sent yet) */
    if ((rc = early_reply(s, "before the message data", err)) < 0) {
        if (rc == MC_ETEMP)
            unaccept(s, res, batch, k);
        return rc;
    }
    rc = send_body(s, writer, writer_payload, err);
    if (rc < 0)
        return rc;
    notify(s, MC_STAGE_DATA);
    if (s->reply.code < 200 || s->reply.code >= 300) {
        unaccept(s, res, batch, k);
        return reply_error(s, MC_STAGE_DATA, "end of data", err);
    }
    return 0;
}

/* The error for a send where not every recipient got the message. */
static int rcpt_outcome(mc_rcpt_result *res, size_t n, mc_err **err)
{
    size_t acc = 0;
    const mc_rcpt_result *perm = NULL, *temp = NULL;
    for (size_t i = 0; i < n; i++) {
        if (res[i].accepted)
            acc++;
        else if (res[i].smtp_code >= 500 && !perm)
            perm = &res[i];
        else if (res[i].smtp_code >= 400 && res[i].smtp_code < 500 && !temp)
            temp = &res[i];
    }
    if (acc == n)
        return 0;
    bool fresh = err && !*err;
    int rc;
    const mc_rcpt_result *first;
    if (acc > 0) {
        first = perm ? perm : temp;
        rc = mc__error_set(err, MC_ERCPT, perm ? MC_OUTCOME_PERMANENT : MC_OUTCOME_TRANSIENT,
                           MC_STAGE_RCPT, "%zu of %zu recipients refused; the others got the message",
                           n - acc, n);
    } else if (temp || !perm) {
        /* none accepted and a retry may help (4xx, or never asked) */
        first = temp ? temp : perm;
        rc = mc__error_set(err, MC_ETEMP, MC_OUTCOME_TRANSIENT, MC_STAGE_RCPT,
                           "no recipient accepted: %d %s", first ? first->smtp_code : 0,
                           first && first->text ? first->text : "");
    } else {
        first = perm;
        rc = mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_RCPT,
                           "no recipient accepted: %d %s", first->smtp_code,
                           first->text ? first->text : "");
    }
    if (fresh && *err) {
        if (first)
            mc__error_reply(*err, first->smtp_code, first->text);
        (*err)->transient = (*err)->outcome == MC_OUTCOME_TRANSIENT;
    }
    return rc;
}

int mc__smtp_send(mc__smtp *s, const mc__envelope *env, mc__writer_fn *writer,
                  void *writer_payload, mc_rcpt_result **rcpts_out, mc_err **err)
{
    if (rcpts_out)
        *rcpts_out = NULL;
    if (!s || !env || !env->from || !writer || !rcpts_out || (env->n_rcpts && !env->rcpts))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MAIL,
                             "send needs a connection, an envelope and a writer");
    size_t n = env->n_rcpts;
    if (n == 0)
        return mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                             "the message has no recipients");
    mc_rcpt_result *res = calloc(n, sizeof(*res));
    size_t *queue = calloc(n, sizeof(*queue));
    size_t *deferred = calloc(n, sizeof(*deferred));
    if (!res || !queue || !deferred) {
        free(res);
        free(queue);
        free(deferred);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MAIL, "out of memory");
    }
    *rcpts_out = res;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        queue[i] = i;
        if (!env->rcpts[i] || !(res[i].address = strdup(env->rcpts[i]))) {
            rc = env->rcpts[i] ? mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT,
                                               MC_STAGE_MAIL, "out of memory")
                               : mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_RCPT,
                                               "recipient %zu is NULL", i);
            goto out;
        }
        if (has_crlf(env->rcpts[i])) {
            rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_RCPT,
                               "recipient %zu contains CR or LF", i);
            goto out;
        }
    }
    if (has_crlf(env->from)) {
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MAIL,
                           "envelope sender contains CR or LF");
        goto out;
    }
    if (env->size && s->caps.size && env->size > s->caps.size) {
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MAIL,
                           "message is %" PRIu64 " bytes, server accepts at most %" PRIu64,
                           env->size, s->caps.size);
        goto out;
    }
    if (env->smtputf8 && !s->caps.smtputf8) {
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MAIL,
                           "message needs SMTPUTF8 (non-ASCII addresses) and the server does "
                           "not offer it");
        goto out;
    }
    if (env->eightbit && !s->caps.eightbitmime) {
        /* RFC 6152 section 3: no 8-bit data to a server without 8BITMIME */
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MAIL,
                           "message has 8-bit data and the server does not offer "
                           "8BITMIME");
        goto out;
    }
    if (!s->alive) {
        rc = mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_MAIL,
                           "connection to the server is closed");
        goto out;
    }
    s->rset_due = s->used && s->caps.pipelining;
    if (s->used && !s->caps.pipelining) {
        rc = command(s, MC_STAGE_MAIL, "RSET", NULL, err);
        if (rc == 0 && s->reply.code != 250)
            rc = reply_error(s, MC_STAGE_MAIL, "RSET", err);
        if (rc < 0)
            goto out;
        s->used = false;
    }

    size_t qlen = n;
    bool asked = false;
    while (qlen) {
        size_t k = qlen < (size_t)s->max_recipients ? qlen : (size_t)s->max_recipients;
        txn t;
        asked = true;
        rc = transaction(s, env, queue, k, writer, writer_payload, res, deferred, &t, err);
        if (rc < 0)
            goto out;
        if (t.accepted == 0 && t.full)
            break;   /* the server takes none now: transient failure */
        /* next queue: the deferred recipients first, then the unsent */
        memmove(queue + t.n_deferred, queue + k, (qlen - k) * sizeof(*queue));
        memcpy(queue, deferred, t.n_deferred * sizeof(*queue));
        qlen = qlen - k + t.n_deferred;
    }

    rc = rcpt_outcome(res, n, err);

out:
    if (rc < 0 && asked && err && *err && !(*err)->rcpts) {
        mc_rcpt_result *c = copy_rcpts(res, n);
        if (c)
            mc__error_rcpts(*err, c, n);
    }
    free(queue);
    free(deferred);
    return rc;
}

int mc__smtp_noop(mc__smtp *s, mc_err **err)
{
    if (!s)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "no connection");
    int rc = command(s, MC_STAGE_NONE, "NOOP", NULL, err);
    if (rc < 0)
        return rc;
    if (s->reply.code == 250)
        return 0;
    return reply_error(s, MC_STAGE_NONE, "NOOP", err);
}

void mc__smtp_quit(mc__smtp *s)
{
    if (!s)
        return;
    if (s->alive) {
        mc_err *e = NULL;
        /* best effort: the stream bounds the wait */
        command(s, MC_STAGE_QUIT, "QUIT", NULL, &e);
        mc_error_free(e);
    }
    mc__smtp_free(s);
}

void mc__smtp_free(mc__smtp *s)
{
    if (!s)
        return;
    if (s->stream)
        s->stream->ops->close(s->stream);
    free((char *)s->connect.host);
    free((char *)s->connect.ca_file);
    free(s->helo);
    mc__buf_free(&s->in);
    mc__reply_parser_free(&s->parser);
    mc__reply_free(&s->reply);
    free(s->last);
    free(s->data_buf);
    free(s);
}
