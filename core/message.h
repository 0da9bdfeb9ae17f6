/* message: RFC 5322 / MIME composer, parser for -t/sendmail input, and a
 * streaming writer; addresses (core-internal). The layout of mc_message is
 * private to message.c. */
#ifndef MC_CORE_MESSAGE_H
#define MC_CORE_MESSAGE_H

#include <stdbool.h>
#include <stdint.h>
#include "mailconn/mailconn.h"
#include "buf.h"

/* ---- addresses */

/** Validate an RFC 5321 mailbox (local@domain; quoted local parts, IP
 *  literals [1.2.3.4] / [IPv6:...], UTF-8 allowed for SMTPUTF8). With
 *  allow_bare, a bare local name without '@' passes (aliases resolve it).
 *  NUL, CR, LF, '<', '>' and spaces outside quotes are refused.
 *  @return 0 or MC_EMESSAGE (outcome DATA, stage MESSAGE) naming it. */
int mc__address_check(const char *addr, bool allow_bare, mc_err **err);
/** Extract the addr-spec from a header mailbox ("Name <a@b>", "a@b (c)",
 *  "<a@b>"). *out malloc'd. @return 0 or MC_EMESSAGE. */
int mc__address_extract(const char *mailbox, char **out, mc_err **err);
/** Split an address-list header value (To/Cc/Bcc, groups, quoted commas)
 *  into addr-specs; calls fn for each. @return 0, MC_EMESSAGE. */
int mc__address_list(const char *value, int (*fn)(void *payload, const char *addr),
                     void *payload, mc_err **err);
/** True when addr has non-ASCII bytes. */
bool mc__address_utf8(const char *addr);

/* ---- header encodings */

/** RFC 2047 encoded words (UTF-8, B or Q, each word <= 75 chars, lines
 *  folded) for a header value; plain ASCII without specials is copied.
 *  `used` = characters already on the line (e.g. strlen("Subject: ")). */
int mc__rfc2047_encode(mc__buf *out, const char *text, size_t used);
/** RFC 2231 parameter: `name="value"` for ASCII, `name*=UTF-8''pct` for
 *  non-ASCII, continuation `name*0*=` when long. Appended to out. */
int mc__rfc2231_param(mc__buf *out, const char *name, const char *value);
/** Content type for a file name from /etc/mime.types (read once, cached),
 *  with a small built-in fallback; "application/octet-stream" otherwise. */
const char *mc__mime_type(const char *filename);

/* ---- preparing for a server */

typedef struct mc__msg_defaults {
    const char *sender_address;    /* server's sender.address or NULL */
    const char *sender_name;
    bool        sender_override;   /* From and MAIL FROM always sender_address */
    bool        case_sensitive;    /* address_case */
    const char *(*alias)(void *payload, const char *name);  /* bare names; NULL result = none */
    void       *alias_payload;
    const char *domain;            /* for Message-ID; NULL: from the sender */
    const char *charset;           /* the server's charset: text and HTML that the message
                                      composes (UTF-8) are converted to it; NULL: UTF-8 */
} mc__msg_defaults;

/**
 * Apply a server's rules before sending: envelope sender (explicit, else
 * sender.address, else From:), a sender without a domain replaced by
 * sender.address, sender.override, From: filled when missing, aliases for
 * bare recipients (none: MC_EMESSAGE with a hint), lower-casing, Date and
 * Message-ID when missing, 8BITMIME / SMTPUTF8 needs, the exact size.
 * Idempotent per server: may be called again for another server.
 * @return 0, MC_EMESSAGE (no recipient, no sender, bad address), MC_EFILE.
 */
int mc__message_prepare(mc_message *m, const mc__msg_defaults *d, mc_err **err);

const char *mc__message_envelope_from(const mc_message *m);
size_t      mc__message_rcpt_count(const mc_message *m);
const char *const *mc__message_rcpts(const mc_message *m);
bool        mc__message_8bit(const mc_message *m);
bool        mc__message_smtputf8(const mc_message *m);
uint64_t    mc__message_size(const mc_message *m);

/** Record the final reply of a send (copied). */
int mc__message_set_reply(mc_message *m, const char *reply);

/** Write the whole message (headers and body, CRLF line ends, lines never
 *  over 998 octets; attachments streamed from their files in chunks).
 *  Signature of mc__writer_fn. @return 0, MC_EFILE, or the sink's error. */
int mc__message_write(void *msg, mc__sink_fn *sink, void *sink_payload, mc_err **err);

/** Parse header block of raw input: calls fn(name, unfolded value) for each
 *  header; *body_off = offset of the body. @return 0, MC_EMESSAGE (a line
 *  that is neither a header nor a continuation before the blank line, NUL).
 *  Fuzzed. */
int mc__header_parse(const char *data, size_t len,
                     int (*fn)(void *payload, const char *name, const char *value),
                     void *payload, size_t *body_off, mc_err **err);

/* ---- appended by the message module */

/** Where the addr-spec of one header mailbox sits in s[0..n): inside the
 *  angle brackets (*angle true), else the span between leading and trailing
 *  white space and comments. @return 0 or MC_EMESSAGE (unbalanced). */
int mc__mailbox_span(const char *s, size_t n, size_t *off, size_t *len, bool *angle);

/* ---- appended by engineer L (lazy 8-bit scan) */

/** True when the message may hold 8-bit data, without reading anything:
 *  known 8-bit, or a parsed file whose body past the first chunk has not
 *  been scanned yet. Enough for BODY=8BITMIME to a server offering it
 *  (RFC 6152 allows declaring it for a body that is 7-bit after all).
 *  mc__message_8bit() instead scans such a file on first use (cached). */
bool mc__message_8bit_maybe(const mc_message *m);

/* ---- appended by helper E (sendmail compatibility, issue 12) */

/** mc_message_parse() for sendmail input, read as Postfix reads it: an
 *  mbox "From " first line is dropped; a first line that is not a header
 *  field makes the whole input body; a later line that is neither a header
 *  field nor a continuation ends the header block and starts the body (the
 *  blank line between them is written when the message is). A header block
 *  with a NUL or bare CR is still MC_EMESSAGE. */
int mc__message_parse_sendmail(mc_message **out, const char *data, size_t len, mc_err **err);

#define MC__SYSTEM_ALIASES "/etc/aliases"
/** The target of `name` (any case) in /etc/aliases, for a config without
 *  "aliases": only entries whose every target is an address (no |command,
 *  /file, :include: or bare name) are read; continuation lines and #
 *  comments as in aliases(5). Read once per process. Borrowed, or NULL. */
const char *mc__system_alias(const char *name);

/** The DSN requests of mc_message_set_dsn(), canonical upper case: NOTIFY
 *  ("NEVER" or e.g. "FAILURE,DELAY"), RET ("FULL"/"HDRS"), ENVID; each
 *  NULL when not requested. Borrowed. */
void mc__message_dsn(const mc_message *m, const char **notify, const char **ret,
                     const char **envid);

/* ---- appended by helper H-D (charset, issue 10) */

/** Whether `charset` can carry composed mail text: iconv knows it (from
 *  UTF-8) and it writes ASCII and line ends as they are (UTF-16, UTF-7 and
 *  EBCDIC do not). UTF-8 under any case is always usable. On failure `why`
 *  gets a phrase such as `unknown charset "X" (iconv does not know it)`.
 *  For the config's check of servers[].charset. @return true when usable. */
bool mc__charset_usable(const char *charset, char *why, size_t why_size);

#endif
