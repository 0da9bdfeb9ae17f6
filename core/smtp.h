/* smtp: the SMTP client state machine over an mc_stream (RFC 5321 and
 * extensions), core-internal. One mc__smtp is one connection, used by one
 * thread at a time. Every line sent and received is logged at
 * MC_LOG_TRANSCRIPT ("C: ...", "S: ..."), AUTH payloads redacted. */
#ifndef MC_CORE_SMTP_H
#define MC_CORE_SMTP_H

#include <stdbool.h>
#include <stdint.h>
#include "mailconn/plugin.h"
#include "buf.h"

#define MC__REPLY_LINE_MAX 4096   /* longer: protocol violation */
/* One whole reply (greeting, EHLO, a 334 challenge, anything): at most this
 * many lines and bytes as received (line ends included), or it is a
 * protocol violation, so what a server sends never grows memory unbounded. */
#define MC__REPLY_LINES_MAX 1000
#define MC__REPLY_BYTES_MAX (64 * 1024)

typedef struct mc__smtp_caps {
    bool     esmtp;          /* EHLO accepted */
    bool     starttls, pipelining, eightbitmime, smtputf8, enhanced, auth;
    uint64_t size;           /* SIZE limit, 0 = none announced */
    char     auth_mechs[256];/* space-separated, upper-case, as offered */
    bool     dsn;            /* DSN (RFC 3461) */
} mc__smtp_caps;

/** One reply, possibly multi-line. */
typedef struct mc__reply {
    int    code;             /* 3 digits */
    char   enhanced[12];     /* from the first line when present */
    mc__buf text;            /* lines' text after "NNN-"/"NNN " joined by '\n' */
} mc__reply;

/** Incremental reply parser over bytes as they arrive (fuzzed).
 *  feed(): returns 1 when a whole reply is in r (*used = bytes consumed; the
 *  bytes after it are left to the caller, untouched), 0 when more bytes are
 *  needed (all consumed), or MC_EPROTO (unparsable line, a NUL byte,
 *  mismatched codes across lines, a line over MC__REPLY_LINE_MAX, a reply
 *  over MC__REPLY_LINES_MAX lines or MC__REPLY_BYTES_MAX bytes), with
 *  `why` saying which (static text). */
typedef struct mc__reply_parser {
    mc__buf     line;
    int         code;        /* of the first line, 0 before */
    bool        enhanced_ok; /* the server announced ENHANCEDSTATUSCODES */
    size_t      lines;       /* complete lines of the reply so far */
    size_t      bytes;       /* bytes of those lines, line ends included */
    const char *why;         /* after MC_EPROTO: what was wrong */
} mc__reply_parser;
int  mc__reply_feed(mc__reply_parser *p, const char *data, size_t len, size_t *used,
                    mc__reply *r);
void mc__reply_parser_free(mc__reply_parser *p);
void mc__reply_free(mc__reply *r);

/** Parse EHLO reply text (lines joined by '\n') into caps (fuzzed). */
void mc__smtp_parse_caps(const char *ehlo_text, mc__smtp_caps *caps);

/** CRLF normalisation + dot-stuffing, streaming: bare LF and bare CR become
 *  CRLF, a '.' at the start of a line is doubled. `out` must have room for
 *  2 * len + 2 bytes. Returns bytes written to out. */
typedef struct mc__dotstuff { int state; } mc__dotstuff;
size_t mc__dotstuff_run(mc__dotstuff *st, const char *in, size_t len, char *out);
/** The terminator: "\r\n.\r\n", or ".\r\n" when the data ended with a line
 *  end. Writes into out (6 bytes room), returns its length. */
size_t mc__dotstuff_end(mc__dotstuff *st, char *out);

typedef void mc__stage_fn(void *payload, mc_stage stage, int code, const char *text);

typedef struct mc__smtp_opts {
    mc_stream              *stream;      /* taken over: closed by mc__smtp_free, or on a failed open */
    const mc_transport_ops *transport;   /* its starttls is used when require_starttls */
    const mc_connect_opts  *connect;     /* for starttls, and the OAUTHBEARER host/port */
    const char             *helo;        /* EHLO name; NULL: the local host name */
    bool                    require_starttls;
    int                     max_recipients;  /* per transaction, >= 1 */
    mc__stage_fn           *on_stage;    /* each stage's final reply (mailconn test), or NULL */
    void                   *stage_payload;
    mc_host_ctx            *hc;          /* where its lines go, whose secrets are redacted
                                            (NULL: the stream's, s->hc) */
} mc__smtp_opts;

typedef struct mc__smtp mc__smtp;

/**
 * Connect-time dialogue on an open stream: greeting, EHLO (HELO when EHLO
 * is refused), and with require_starttls: STARTTLS (not offered or a non-220
 * reply: MC_EREFUSED stage starttls, outcome PERMANENT; bytes buffered after
 * the 220: MC_EREFUSED stage starttls), the upgrade, every capability
 * forgotten, EHLO again.
 * Errors carry stage, reply code, enhanced code, server text.
 * @return 0, MC_EREFUSED (5xx), MC_ETEMP (4xx), MC_EPROTO, MC_ENET,
 *         MC_ETIMEOUT, MC_ETLS.
 */
int mc__smtp_open(mc__smtp **out, const mc__smtp_opts *o, mc_err **err);

/** (Named _get_: mc__smtp_caps is the type.) */
const mc__smtp_caps *mc__smtp_get_caps(const mc__smtp *s);
bool mc__smtp_encrypted(const mc__smtp *s);
/** The stream, for TLS facts. Borrowed. */
const mc_stream *mc__smtp_stream(const mc__smtp *s);
/** The last complete reply ("250 2.0.0 Ok"), first line, borrowed. */
const char *mc__smtp_last_reply(const mc__smtp *s);
/** False once the connection is known dead (read/write failed, 421). */
bool mc__smtp_alive(const mc__smtp *s);

/** What AUTH needs; unused members NULL. */
typedef struct mc__sasl_creds {
    const char *user;
    const char *password;    /* PLAIN, LOGIN */
    const char *token;       /* XOAUTH2, OAUTHBEARER */
} mc__sasl_creds;

/**
 * AUTH with one mechanism (PLAIN with an initial response, LOGIN, XOAUTH2,
 * OAUTHBEARER). A 334 with base64 JSON to XOAUTH2/OAUTHBEARER is answered
 * with an empty line / "AQ==" and its status and scope go into the error
 * message. Refusal: MC_EAUTH, outcome AUTH, stage auth, with the reply.
 * Refuses (MC_EAUTH, outcome CONFIG) when the stream is not encrypted and
 * allow_plaintext is false; refuses (MC_ETLS, outcome PERMANENT) when the
 * transport declares MC_SECURITY_TLS or _STARTTLS and the stream is not
 * encrypted, whatever allow_plaintext says.
 * @return 0, MC_EAUTH, MC_ETEMP (4xx), MC_EPROTO, MC_ENET, MC_ETIMEOUT.
 */
int mc__smtp_auth(mc__smtp *s, const char *mechanism, const mc__sasl_creds *c,
                  bool allow_plaintext, mc_err **err);

typedef struct mc__envelope {
    const char        *from;
    const char *const *rcpts;
    size_t             n_rcpts;
    uint64_t           size;       /* for SIZE=, 0 = unknown */
    bool               eightbit;   /* BODY=8BITMIME */
    bool               smtputf8;
    /* DSN (RFC 3461), sent when the server offers it; NULL = not asked */
    const char        *dsn_notify; /* NOTIFY= on each RCPT, with ORCPT=rfc822;<rcpt> */
    const char        *dsn_ret;    /* RET= on MAIL */
    const char        *dsn_envid;  /* ENVID= (xtext) on MAIL */
} mc__envelope;

/** Writes the whole message (raw bytes, LF or CRLF) into sink. May be
 *  called more than once (split transactions). */
typedef int mc__writer_fn(void *payload, mc__sink_fn *sink, void *sink_payload, mc_err **err);

/**
 * Deliver one message: MAIL FROM (SIZE=, BODY=8BITMIME, SMTPUTF8 when
 * offered and needed; a message larger than the server's SIZE, or an 8-bit
 * body for a server without 8BITMIME (RFC 6152 §3), is refused before MAIL
 * with MC_EMESSAGE, outcome DATA), RCPT per recipient in
 * transactions of at most max_recipients (a 452 after at least one accepted
 * recipient sends the rest in a new transaction; with none accepted it is a
 * transient failure), DATA streamed through dot-stuffing in large writes;
 * PIPELINING (MAIL, RCPTs and DATA in one write) when offered. RSET first
 * when a previous transaction ran on this connection.
 * Between the 354 and the final dot the server has nothing to say: bytes
 * waiting from it when the data is about to start or before the dot (what
 * was read and not parsed; with a stream of ABI 1.1 also what is waiting
 * in the connection, looked for without waiting) are MC_EPROTO, stage data,
 * and the connection is dropped without the dot, except one complete 421
 * (MC_ETEMP). A 3xx to MAIL or RCPT (a 354 to a pipelined RCPT), or a
 * 2xx to DATA, is MC_EPROTO and drops the connection. After the dot,
 * anything but exactly one complete, parsable reply is MC_EUNKNOWN.
 * *rcpts_out (always set on return, caller frees with mc__rcpts_free) has
 * one result per recipient.
 * @return 0 (all accepted), MC_ERCPT (some refused: the others got it;
 *         outcome PERMANENT or TRANSIENT), MC_EREFUSED / MC_ETEMP (MAIL,
 *         DATA or final reply), MC_EUNKNOWN (after the final dot: the
 *         connection lost, a timeout, a malformed, oversized or second
 *         reply), MC_EPROTO, MC_ENET, MC_ETIMEOUT, MC_EMESSAGE.
 */
int mc__smtp_send(mc__smtp *s, const mc__envelope *env, mc__writer_fn *writer,
                  void *writer_payload, mc_rcpt_result **rcpts_out, mc_err **err);

int  mc__smtp_noop(mc__smtp *s, mc_err **err);
/** QUIT (best effort, bounded) and close; NULL is fine. */
void mc__smtp_quit(mc__smtp *s);
/** Close without QUIT; NULL is fine. */
void mc__smtp_free(mc__smtp *s);

#endif
