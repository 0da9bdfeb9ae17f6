/* mailconn — send mail through SMTP servers that want modern authentication.
 *
 * The only header applications include. Every type is opaque except option
 * structs (first member `version`) and result records (`mc_error`,
 * `mc_rcpt_result`), whose members are only ever appended.
 *
 * Threads: an mc_context may be used from several threads at once. An
 * mc_message or mc_session belongs to one thread at a time.
 */
#ifndef MAILCONN_H
#define MAILCONN_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MC_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- errors */

/** Error codes: 0 is success, every failure is negative. Numbers are never
 *  reused; a retired code stays reserved. */
#define MC_ERRNO_MAP(X)                                              \
    X(EINVAL,    -1,  "invalid argument")                            \
    X(ENOMEM,    -2,  "out of memory")                               \
    X(ECONFIG,   -3,  "configuration error")                         \
    X(EPLUGIN,   -4,  "plugin error")                                \
    X(ENOSERVER, -5,  "no such server")                              \
    X(EFILE,     -6,  "file cannot be read")                         \
    X(EMESSAGE,  -7,  "bad message or address")                      \
    X(EAUTH,     -8,  "authentication refused")                      \
    X(EREFUSED,  -9,  "refused by the server")                       \
    X(EPROTO,    -10, "protocol violation")                          \
    X(ETEMP,     -11, "transient failure")                           \
    X(ENET,      -12, "network error")                               \
    X(ETIMEOUT,  -13, "timed out")                                   \
    X(ETLS,      -14, "TLS failure")                                 \
    X(EUNKNOWN,  -15, "outcome unknown: the message may have been accepted") \
    X(EUSAGE,    -16, "bad command line")                            \
    X(ENOTSUP,   -17, "operation not supported")                     \
    X(EOAUTH,    -18, "OAuth failure")                               \
    X(ESECRET,   -19, "secret unavailable or unsafe")                \
    X(ERCPT,     -20, "some recipients were refused")

typedef enum mc_errno {
    MC_OK = 0,
#define MC__ERR_ENUM(name, val, text) MC_##name = (val),
    MC_ERRNO_MAP(MC__ERR_ENUM)
#undef MC__ERR_ENUM
} mc_errno;

/** Outcome classes, most serious first: the CLI's exit code is that of the
 *  most serious outcome of the run (DESIGN.md, "Outcomes and errors"). */
typedef enum mc_outcome {
    MC_OUTCOME_OK = 0,
    MC_OUTCOME_CONFIG,      /* exit 78 */
    MC_OUTCOME_USAGE,       /* exit 64 */
    MC_OUTCOME_NOINPUT,     /* exit 66 */
    MC_OUTCOME_DATA,        /* exit 65 */
    MC_OUTCOME_AUTH,        /* exit 77 */
    MC_OUTCOME_PERMANENT,   /* exit 69 */
    MC_OUTCOME_PROTOCOL,    /* exit 76 */
    MC_OUTCOME_TRANSIENT,   /* exit 75 */
    MC_OUTCOME_UNKNOWN,     /* exit 75: connection died after the final dot */
} mc_outcome;

/** Where a failure happened. */
typedef enum mc_stage {
    MC_STAGE_NONE = 0,
    MC_STAGE_CONFIG,
    MC_STAGE_PLUGIN,
    MC_STAGE_CONNECT,
    MC_STAGE_TLS,
    MC_STAGE_GREETING,
    MC_STAGE_EHLO,
    MC_STAGE_STARTTLS,
    MC_STAGE_AUTH,
    MC_STAGE_MAIL,
    MC_STAGE_RCPT,
    MC_STAGE_DATA,
    MC_STAGE_QUIT,
    MC_STAGE_OAUTH,
    MC_STAGE_MESSAGE,
} mc_stage;

/** The server's reply to one recipient. */
typedef struct mc_rcpt_result {
    char *address;
    bool  accepted;
    int   smtp_code;          /* 0 when never asked (an earlier failure) */
    char  enhanced[12];       /* "5.1.1" or "" */
    char *text;               /* the server's text, or NULL */
} mc_rcpt_result;

/** A failure, allocated by the library; release with mc_error_free(). */
typedef struct mc_error {
    int             code;         /* MC_E..., negative */
    mc_outcome      outcome;
    mc_stage        stage;
    int             smtp_code;    /* e.g. 535; 0 when no server spoke */
    char            enhanced[12]; /* "5.7.8" or "" */
    char           *server_text;  /* reply text as received, secrets redacted; or NULL */
    bool            transient;    /* worth retrying later */
    char           *message;      /* one line: what and where */
    char           *hint;         /* what to change, for known failures; or NULL */
    mc_rcpt_result *rcpts;        /* per-recipient results, when a transaction ran */
    size_t          n_rcpts;
    char          **details;      /* every error, when there are several (config) */
    size_t          n_details;
} mc_error;

/** Static text for an error code; never NULL. */
const char *mc_strerror(int code);
/** The code's name without prefix ("EAUTH"); never NULL. */
const char *mc_error_name(int code);
/** The sysexits code for an outcome (DESIGN.md table). */
int mc_outcome_exit_code(mc_outcome outcome);
/** Static name of a stage ("auth"); never NULL. */
const char *mc_stage_name(mc_stage stage);
/** Release an error; NULL is fine. */
void mc_error_free(mc_error *err);

/* ------------------------------------------------------------- logging */

typedef enum mc_log_level {
    MC_LOG_ERROR = 0,
    MC_LOG_WARN = 1,
    MC_LOG_INFO = 2,
    MC_LOG_TRANSCRIPT = 3,    /* the SMTP dialogue, secrets redacted (-v) */
    MC_LOG_DEBUG = 4,         /* -vv */
} mc_log_level;

/** A log sink. `line` has no trailing newline and is already redacted. */
typedef void mc_log_fn(mc_log_level level, const char *line, void *payload);

/* ------------------------------------------------------------- context */

typedef struct mc_context mc_context;
typedef struct mc_server mc_server;
typedef struct mc_message mc_message;
typedef struct mc_session mc_session;

/** How mc_context_new() finds its config and plugins. */
typedef struct mc_context_options {
    unsigned    version;          /* MC_CONTEXT_OPTIONS_VERSION */
    const char *config_path;      /* NULL: $MAILCONN_CONFIG, XDG, /etc (DESIGN.md) */
    const char *plugin_dir;       /* searched first; or NULL */
    unsigned    flags;            /* MC_CONTEXT_* below */
    const char *server;           /* with MC_CONTEXT_ONE_SERVER: the server to
                                     prepare (NULL: the default) */
    mc_log_level log_level;       /* lines above this level are dropped */
    mc_log_fn  *log;              /* NULL: stderr */
    void       *log_payload;
} mc_context_options;

#define MC_CONTEXT_OPTIONS_VERSION 1
#define MC_CONTEXT_OPTIONS_INIT { MC_CONTEXT_OPTIONS_VERSION, NULL, NULL, 0, NULL, MC_LOG_WARN, NULL, NULL }

/** Load every plugin and validate every server (what `check` does). */
#define MC_CONTEXT_ALL_PLUGINS   (1u << 0)
/** Resolve every secret and open every ca_file (`check --secrets`). */
#define MC_CONTEXT_SECRETS       (1u << 1)
/** Prepare only opts->server (what `send` does): shape of the whole config
 *  is validated, provider validation only for that server. */
#define MC_CONTEXT_ONE_SERVER    (1u << 2)
/** No config at all: only the plugins (what `plugins` does). */
#define MC_CONTEXT_NO_CONFIG     (1u << 3)

/**
 * Create a context: read and validate the config, find the plugins.
 * @return 0, MC_ECONFIG (err->details lists every error), MC_EPLUGIN,
 *         MC_ENOSERVER, MC_ENOMEM.
 * Thread-safe once created.
 */
int mc_context_new(mc_context **out, const mc_context_options *opts, mc_error **err);
/** Release a context, its pooled connections and plugins. NULL is fine. */
void mc_context_free(mc_context *ctx);
/** The config file path in use (borrowed). */
const char *mc_context_config_path(const mc_context *ctx);

/** Number of servers in the config. */
size_t mc_context_server_count(const mc_context *ctx);
/** The i-th server (borrowed until ctx is freed), NULL when out of range. */
const mc_server *mc_context_server_at(const mc_context *ctx, size_t i);
/** A server by name; NULL name = the default server. Borrowed; NULL when none. */
const mc_server *mc_context_server(const mc_context *ctx, const char *name);

const char *mc_server_name(const mc_server *srv);
const char *mc_server_host(const mc_server *srv);
unsigned    mc_server_port(const mc_server *srv);
const char *mc_server_transport(const mc_server *srv);
/** The auth provider's name, or NULL without authentication. */
const char *mc_server_provider(const mc_server *srv);
const char *mc_server_sender(const mc_server *srv);
bool        mc_server_is_default(const mc_server *srv);

/**
 * Move the default mark to `name` and save the config file atomically
 * (temp file, fsync, rename; mode kept; a symlink replaced at its target;
 * key order kept). The context reflects the new default on success.
 * @return 0, MC_ENOSERVER, MC_EFILE, MC_ENOMEM.
 */
int mc_context_set_default(mc_context *ctx, const char *name, mc_error **err);

/** Every loaded plugin, for listing: kind ("transport", "auth"), name, version, file. */
typedef void mc_plugin_visit_fn(const char *kind, const char *name, const char *version,
                                const char *summary, const char *file, void *payload);
void mc_context_plugins(mc_context *ctx, mc_plugin_visit_fn *fn, void *payload);

/* ------------------------------------------------------------- messages */

typedef enum mc_rcpt_kind { MC_RCPT_TO = 0, MC_RCPT_CC = 1, MC_RCPT_BCC = 2 } mc_rcpt_kind;

/** A new, empty message. @return 0 or MC_ENOMEM. */
int  mc_message_new(mc_message **out, mc_error **err);
/**
 * Parse a complete RFC 5322 message (for `send -t` and `sendmail`):
 * recipients come from To/Cc/Bcc, Bcc is removed, Date and Message-ID are
 * added when missing. Bare LF line ends are accepted.
 * @return 0, MC_EMESSAGE (bad header), MC_ENOMEM.
 */
int  mc_message_parse(mc_message **out, const char *data, size_t len, mc_error **err);
/** As mc_message_parse(), from a file whose body is streamed at send time.
 *  @return 0, MC_EFILE, MC_EMESSAGE, MC_ENOMEM. */
int  mc_message_parse_file(mc_message **out, const char *path, mc_error **err);
void mc_message_free(mc_message *msg);

/** From: header; display_name may be NULL or non-ASCII (RFC 2047). */
int  mc_message_set_from(mc_message *msg, const char *address, const char *display_name, mc_error **err);
/** Envelope sender (MAIL FROM); default: the server's sender.address, else From. */
int  mc_message_set_envelope_from(mc_message *msg, const char *address, mc_error **err);
int  mc_message_add_recipient(mc_message *msg, mc_rcpt_kind kind, const char *address, mc_error **err);
/** Envelope-only recipient (sendmail's command-line recipients). */
int  mc_message_add_envelope_recipient(mc_message *msg, const char *address, mc_error **err);
int  mc_message_set_subject(mc_message *msg, const char *subject, mc_error **err);
int  mc_message_set_text(mc_message *msg, const char *text, size_t len, mc_error **err);
int  mc_message_set_html(mc_message *msg, const char *html, size_t len, mc_error **err);
/** Attach a file, streamed at send time; content type from its extension. */
int  mc_message_add_attachment(mc_message *msg, const char *path, mc_error **err);
/** An extra header; CR or LF in the value is refused (header injection). */
int  mc_message_add_header(mc_message *msg, const char *name, const char *value, mc_error **err);
/** The Message-ID (without angle brackets) once known, else NULL. Borrowed. */
const char *mc_message_id(const mc_message *msg);
/** Display name for the From: header written from the server's
 *  sender.address when the message has none (sendmail -F). */
int  mc_message_set_from_name(mc_message *msg, const char *display_name, mc_error **err);
/** Envelope recipients, once the message was prepared for a server. */
size_t mc_message_recipient_count(const mc_message *msg);
/** The server's reply after the final dot of the last send
 *  ("250 2.0.0 Ok: queued"), or NULL. Borrowed. */
const char *mc_message_last_reply(const mc_message *msg);

/* ------------------------------------------------------------- sending */

/**
 * Send one message through `server` (NULL: the default), over a pooled
 * connection. On partial success (some recipients refused) returns MC_ERCPT
 * and err->rcpts says who got it.
 * @return 0 when every recipient accepted; a negative MC_E* code otherwise.
 * Thread-safe.
 */
int mc_send(mc_context *ctx, const char *server, mc_message *msg, mc_error **err);

/** A connection to one server, for sending many messages in a row. */
int  mc_session_open(mc_session **out, mc_context *ctx, const char *server, mc_error **err);
int  mc_session_send(mc_session *s, mc_message *msg, mc_error **err);
/** The final reply of the last accepted message ("250 2.0.0 Ok: queued"), borrowed. */
const char *mc_session_last_reply(const mc_session *s);
/** QUIT and close. NULL is fine. */
void mc_session_close(mc_session *s);

#ifdef __cplusplus
}
#endif
#endif
