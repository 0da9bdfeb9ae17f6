/* mailconn — send mail through SMTP servers that want modern authentication.
 *
 * The only header applications include. Every type is opaque except option
 * structs (first member `version`) and result records (`mc_err`,
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
    MC_STAGE_QUEUE,         /* the spool: writing, reading, locking a queued message */
    MC_STAGE_PROXY,         /* reaching the server through its proxy (SOCKS5, HTTP CONNECT) */
} mc_stage;

/** The server's reply to one recipient. */
typedef struct mc_rcpt_result {
    char *address;
    bool  accepted;
    int   smtp_code;          /* 0 when never asked (an earlier failure) */
    char  enhanced[12];       /* "5.1.1" or "" */
    char *text;               /* the server's text, or NULL; untrusted, as server_text */
} mc_rcpt_result;

/** What the user (or the application acting for them) must do about a
 *  failure: an application maps it to its own UI (a button, a link, a
 *  command); mc_err.hint says it in words that name no front end. */
typedef enum mc_action {
    MC_ACTION_NONE = 0,           /* nothing known to do (or a caller's bug) */
    MC_ACTION_FIX_CONFIG,         /* change the config: see diags / details / hint */
    MC_ACTION_REAUTHORIZE,        /* the stored OAuth grant is no longer good
                                     (revoked, expired, another identity):
                                     authorize the server again */
    MC_ACTION_AUTHORIZE,          /* no token stored yet: authorize the server */
    MC_ACTION_ENABLE_SMTP_AUTH,   /* the provider has SMTP AUTH off for the
                                     tenant or mailbox: an administrator enables it */
    MC_ACTION_GRANT_CONSENT,      /* the user or an administrator must consent
                                     to the app or its scope at the provider */
    MC_ACTION_CHECK_CREDENTIALS,  /* user name, password or token refused: check
                                     them (and the account they belong to) */
    MC_ACTION_RETRY_LATER,        /* transient: the same call may succeed later */
    MC_ACTION_FIX_MESSAGE,        /* the message or an address is at fault */
} mc_action;

/** Static name of an action ("reauthorize", "fix-config"); never NULL
 *  ("unknown" out of range). Thread-safe. */
const char *mc_action_name(mc_action action);

/** One config validation error, for a settings page to put beside its
 *  field. Part of an mc_err; released with it. */
typedef struct mc_diag {
    char *path;       /* the JSON path: "servers[1].port", "servers[0].auth.client_id";
                         "" for the whole document (syntax errors) */
    int   server;     /* the server's index in "servers", or -1 (top level) */
    char *key;        /* within that server: "port", "auth.client_id", "" for
                         the whole server object; with server -1 the top-level
                         path ("log_file", "queue.dir") or "" */
    char *message;    /* what is wrong, without the path ("must be an integer
                         1..65535, got 0") */
} mc_diag;

/** A failure, allocated by the library; release with mc_error_free().
 *  The typedef is mc_err, not mc_error: json-c's <json-c/debug.h> (pulled
 *  in by <json-c/json.h>) declares a function mc_error(), and an
 *  application must be able to include both headers. The struct tag stays
 *  `struct mc_error` (tags and functions do not clash). */
typedef struct mc_error {
    int             code;         /* MC_E..., negative */
    mc_outcome      outcome;
    mc_stage        stage;
    int             smtp_code;    /* e.g. 535; 0 when no server spoke */
    char            enhanced[12]; /* "5.7.8" or "" */
    char           *server_text;  /* reply text as received, secrets redacted; or NULL.
                                     UNTRUSTED: the server chose every byte (terminal
                                     escapes, control characters, invalid UTF-8); escape
                                     it before showing it, as message already is */
    bool            transient;    /* worth retrying later */
    char           *message;      /* one line: what and where; control characters,
                                     C1 and invalid UTF-8 shown as \xHH */
    char           *hint;         /* what to change, for known failures; or NULL */
    mc_rcpt_result *rcpts;        /* per-recipient results, when a transaction ran */
    size_t          n_rcpts;
    char          **details;      /* every error, when there are several (config) */
    size_t          n_details;
    /* v1 additions */
    mc_diag        *diags;        /* config validation errors, one per field
                                     ("two defaults": one per server marked
                                     default, key "default"; an unknown key:
                                     that key); NULL otherwise */
    size_t          n_diags;
    mc_action       action;       /* what to do about it; MC_ACTION_NONE when
                                     nothing is known */
} mc_err;

/** Static text for an error code; never NULL. */
const char *mc_strerror(int code);
/** The code's name without prefix ("EAUTH"); never NULL. */
const char *mc_error_name(int code);
/** The sysexits code for an outcome (DESIGN.md table). */
int mc_outcome_exit_code(mc_outcome outcome);
/** Static name of a stage ("auth"); never NULL. */
const char *mc_stage_name(mc_stage stage);
/** Release an error; NULL is fine. */
void mc_error_free(mc_err *err);

/* ------------------------------------------------------------- logging */

typedef enum mc_log_level {
    MC_LOG_ERROR = 0,
    MC_LOG_WARN = 1,
    MC_LOG_INFO = 2,
    MC_LOG_TRANSCRIPT = 3,    /* the SMTP dialogue, secrets redacted (-v) */
    MC_LOG_DEBUG = 4,         /* -vv */
} mc_log_level;

/** A log sink. `line` has no trailing newline, is already redacted, and
 *  shows control characters (C0 but TAB, DEL, C1), and bytes that are not
 *  UTF-8, as \xHH: what a server said cannot drive a terminal through it.
 *  A context's sink gets that context's lines only. It is called with no
 *  lock of the library held (it may call back: mc_strerror,
 *  mc_context_server...), and may be called from several threads at once. */
typedef void mc_log_fn(mc_log_level level, const char *line, void *payload);

/* ------------------------------------------------------------- context */

typedef struct mc_context mc_context;
typedef struct mc_server mc_server;
typedef struct mc_message mc_message;
typedef struct mc_session mc_session;

typedef struct mc_token_store_ops mc_token_store_ops;

/** How mc_context_new() finds its config and plugins. A caller built for
 *  an older version (1) still works: members after its version's are not
 *  read. */
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
    /* version 2 */
    const char *config_json;      /* the config as NUL-terminated text (copied): no
                                     config file is read, and edits change memory only */
    const char *state_dir;        /* this context's tokens, locks, pending authorizations;
                                     NULL: $MAILCONN_STATE_DIR, $STATE_DIRECTORY, XDG */
    const mc_token_store_ops *token_store;   /* an application's store, or NULL */
    void       *token_store_payload;         /* its `store` argument */
} mc_context_options;

#define MC_CONTEXT_OPTIONS_VERSION 2
#define MC_CONTEXT_OPTIONS_INIT { MC_CONTEXT_OPTIONS_VERSION, NULL, NULL, 0, NULL, MC_LOG_WARN, \
                                  NULL, NULL, NULL, NULL, NULL, NULL }

/** Load every plugin and validate every server (what `check` does). */
#define MC_CONTEXT_ALL_PLUGINS   (1u << 0)
/** Resolve every secret and open every ca_file (`check --secrets`). */
#define MC_CONTEXT_SECRETS       (1u << 1)
/** Prepare only opts->server (what `send` does): shape of the whole config
 *  is validated, provider validation only for that server. */
#define MC_CONTEXT_ONE_SERVER    (1u << 2)
/** No config at all: only the plugins (what `plugins` does). */
#define MC_CONTEXT_NO_CONFIG     (1u << 3)
/** The config alone: its shape validated, no plugin loaded, no provider
 *  validation, no token store or network touched (what `servers --names`
 *  does, so a shell's TAB never waits). */
#define MC_CONTEXT_CONFIG_ONLY   (1u << 4)

/**
 * Create a context: read and validate the config, find the plugins.
 * @return 0, MC_ECONFIG (err->details lists every error), MC_EPLUGIN,
 *         MC_ENOSERVER, MC_ENOMEM.
 * Thread-safe once created.
 */
int mc_context_new(mc_context **out, const mc_context_options *opts, mc_err **err);
/** The config file mc_context_new() would read for explicit_path (NULL:
 *  $MAILCONN_CONFIG, XDG, /etc, as DESIGN.md says), whether or not it
 *  exists. @return a path (release with mc_free), NULL when out of memory.
 *  Thread-safe. */
char *mc_config_find(const char *explicit_path);
/**
 * A failure the application reports itself (a bad command line, a message
 * it could not read, a config that does not load), written as one line
 * "command=... outcome=failed exit=N stage=... error=\"...\"" to the
 * top-level log_file / syslog of the config at config_path (NULL: where
 * mc_context_new looks), even when that config fails to load but its log
 * keys are valid. err: the error (skipped when the library logged it
 * already, as mc_send does), or NULL with `text`. Thread-safe.
 */
void mc_log_failure(const char *config_path, const char *command, int exit_code,
                    const mc_err *err, const char *text);
/**
 * Release a context: stop and join its idle reaper thread, QUIT every
 * pooled connection, free its config and unload its plugins. NULL is fine.
 * Not thread-safe with other calls on the same context: every call on ctx
 * (mc_send, an open mc_session, a reload...) must have returned, and every
 * session been closed, before it; none may start after it.
 */
void mc_context_free(mc_context *ctx);

/**
 * Read, validate and prepare a new config, then swap it in atomically.
 *
 * The config comes from opts->config_path, or, when that is NULL (or opts
 * is NULL), from the path the context's config came from. It is checked as
 * mc_context_new() does: the whole shape, then the plugins and provider
 * validation (opts->flags MC_CONTEXT_ALL_PLUGINS, MC_CONTEXT_SECRETS,
 * MC_CONTEXT_ONE_SERVER with opts->server, as for mc_context_new()). The
 * context's log sink and level, plugin folder and state folder are its own
 * and stay: opts->log, log_level, log_payload and plugin_dir are ignored.
 * On any error the old config stays in use and err carries the errors
 * (err->details lists every config error).
 *
 * On success, calls that start afterwards use the new config; calls in
 * flight (an mc_send, an open mc_session) finish on the old one, which is
 * freed when the last of them ends. A server whose object is the same in
 * both configs (same name and same JSON text, "default" aside) keeps its
 * pooled connections. The pooled connections of a server whose object
 * changed (any key: host, auth, a secret or the *source* of a secret...)
 * or that went away are closed with QUIT: idle ones before this returns,
 * those in use when their call ends. A secret whose source is unchanged but
 * whose value changed (a password file rewritten, an environment variable)
 * is not a change of the object: its authenticated connections stay
 * pooled; call mc_context_disconnect() to log in again with it.
 *
 * mc_server pointers from before a reload are invalid after it; look
 * servers up by name again. Thread-safe: may run while other threads send
 * or hold sessions; not while the same context runs the accessors returning
 * an mc_server *, mc_context_config_path() or an
 * mc_queue_* call (these read the current config without a reference). A
 * context made with
 * MC_CONTEXT_NO_CONFIG has nothing to reload (MC_EUSAGE).
 *
 * @return 0, MC_ECONFIG, MC_EFILE, MC_EPLUGIN, MC_ENOSERVER (with
 *         MC_CONTEXT_ONE_SERVER), MC_EUSAGE, MC_EINVAL (ctx NULL, unknown
 *         options version or flags), MC_ENOMEM.
 */
int mc_context_reload(mc_context *ctx, const mc_context_options *opts, mc_err **err);

/**
 * Close pooled connections on demand: the idle connections of `server`
 * (by name; NULL: of every server) are closed with QUIT before this
 * returns; those in use by a call are closed with QUIT when that call ends,
 * instead of going back to the pool. Later calls open new connections (and
 * authenticate again). An unknown name closes nothing. Thread-safe.
 */
void mc_context_disconnect(mc_context *ctx, const char *server);
/** The config file path in use (borrowed). */
const char *mc_context_config_path(const mc_context *ctx);

/** Number of servers in the config. */
size_t mc_context_server_count(const mc_context *ctx);
/** The i-th server (borrowed until the next mc_context_reload() or
 *  mc_context_free()), NULL when out of range. */
const mc_server *mc_context_server_at(const mc_context *ctx, size_t i);
/** A server by name; NULL name = the default server. Borrowed, as
 *  mc_context_server_at(); NULL when none. */
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
 * key order kept); a config given as text changes in memory only. The
 * context reflects the new default on success.
 * @return 0, MC_ENOSERVER, MC_EFILE, MC_ENOMEM.
 */
int mc_context_set_default(mc_context *ctx, const char *name, mc_err **err);

/* ------------------------------------------------------------- editing
 *
 * A settings page edits the config through the context: every edit is
 * validated as a whole (shape and provider rules) before anything
 * changes, and an error changes nothing (diags name the fields). A config
 * read from a file is saved atomically (temp file, fsync, rename; mode
 * kept; a symlink replaced at its target; key order kept); a config given
 * as text changes in memory only. Pooled idle connections of a server
 * whose object changed or disappeared are closed. Edits are serialised
 * with each other and with sends picking a connection; for now an edit
 * that succeeds must not overlap a send or session on the same context
 * (mc_context_reload will lift this). mc_server pointers obtained before
 * an edit are invalid after a successful one (look servers up by name
 * again). */

/** Release a string the library returned (mc_context_config_json,
 *  mc_server_json). NULL is fine. Secret-free text only: nothing to wipe. */
void mc_free(void *p);

/**
 * The current config text, keys in their order. It includes inline
 * secrets as they are in the config (what would be saved): treat it as
 * secret (mc_server_json gives a server without them).
 * @param out  a new string, release with mc_free()
 * @return 0, MC_EINVAL (no context or no config), MC_ENOMEM. Thread-safe.
 */
int mc_context_config_json(char **out, const mc_context *ctx);

/**
 * Add a server, or replace the server of the same "name", from one JSON
 * object. A secret member given as null ("password": null,
 * "client_secret": null) keeps the current inline secret of that server
 * (a settings page saves an edit without asking for the password again);
 * null for a new server, or where the server had no such inline secret,
 * is an error (a diag at that key). The replaced server's place in
 * "servers" is kept; a new one is appended.
 * @return 0, MC_ECONFIG (err->diags: the errors of the resulting config;
 *         nothing changed), MC_EFILE (saving failed; nothing changed),
 *         MC_EINVAL, MC_ENOMEM. Thread-safe.
 */
int mc_context_put_server(mc_context *ctx, const char *server_json, mc_err **err);

/**
 * Remove the server `name`. Removing the last server, or one that leaves
 * the config invalid, is MC_ECONFIG (nothing changed).
 * @return 0, MC_ENOSERVER, MC_ECONFIG, MC_EFILE, MC_EINVAL, MC_ENOMEM.
 * Thread-safe.
 */
int mc_context_remove_server(mc_context *ctx, const char *name, mc_err **err);

/**
 * One server's object as JSON (its keys in order), with every inline
 * secret value ("password", "client_secret") replaced by null: what a
 * settings page shows, and may send back to mc_context_put_server().
 * @param name  NULL: the default server
 * @param out   a new string, release with mc_free()
 * @return 0, MC_ENOSERVER, MC_EINVAL, MC_ENOMEM. Thread-safe.
 */
int mc_server_json(char **out, const mc_context *ctx, const char *name);

/**
 * Validate config text without a context: the shape rules, and with
 * MC_CONTEXT_ALL_PLUGINS each server's transport and provider rules (the
 * plugins of the default plugin path are loaded for the call). No file is
 * read or written, no secret resolved, no command run.
 * @param flags  0 or MC_CONTEXT_ALL_PLUGINS (other MC_CONTEXT_* flags:
 *               MC_EINVAL)
 * @return 0, MC_ECONFIG (err->diags), MC_EPLUGIN, MC_EINVAL, MC_ENOMEM.
 *         Thread-safe.
 */
int mc_config_check(const char *json, unsigned flags, mc_err **err);

/** Every loaded plugin, for listing: kind ("transport", "auth"), name, version, file. */
typedef void mc_plugin_visit_fn(const char *kind, const char *name, const char *version,
                                const char *summary, const char *file, void *payload);
void mc_context_plugins(mc_context *ctx, mc_plugin_visit_fn *fn, void *payload);

/**
 * The context's token store (DESIGN.md "Token stores and fleets"), in
 * `desc` (size n): "application" (mc_context_options.token_store), the
 * config's token-store plugin's name ("postgresql"), or "file
 * <state>/tokens" (the built-in store). A plugin store is opened here when
 * it is not yet (else on the first OAuth op); it stays open until
 * mc_context_free.
 * @return 0, or why the plugin store cannot open (its error in *err).
 * Thread-safe.
 */
int mc_context_token_store(mc_context *ctx, char *desc, size_t n, mc_err **err);

/** One server's result in mc_token_store_copy: rc 0 copied, 1 nothing
 *  stored there (skipped), < 0 the failure (err says why). */
typedef void mc_token_copy_fn(const char *server, int rc, const mc_err *err, void *payload);

/**
 * Copy every OAuth server's stored record (as stored: the tokens and their
 * identity) from one token store to the other, each under its refresh lock
 * (`mailconn store copy --from file --to postgresql`). One of `from` and
 * `to` is "file", the built-in store under the context's state folder; the
 * other names the context's store: the config's token-store plugin
 * ("postgresql") or "application". A record for another identity is not
 * copied. fn (may be NULL) hears each OAuth server's result.
 * @return the number of records copied (>= 0); MC_EINVAL (outcome USAGE:
 *         from/to do not name these stores); the store's error when it cannot
 *         open; else, after trying every server, the first server's failure.
 * Thread-safe.
 */
int mc_token_store_copy(mc_context *ctx, const char *from, const char *to, mc_token_copy_fn *fn,
                        void *payload, mc_err **err);

/* ------------------------------------------------------------- lifecycle */

/**
 * Swap in a new config atomically ("rebuild gateway"): opts as for
 * mc_context_new (config_path or config_json; plugin_dir, flags and the log
 * sink of the context stay). Calls in flight finish on the old config, new
 * calls use the new one; pooled connections of servers that changed or
 * disappeared are closed (QUIT). On error the old config stays.
 * @return 0, MC_ECONFIG (err->diags), MC_EPLUGIN, MC_ENOMEM. Thread-safe.
 */
int mc_context_reload(mc_context *ctx, const mc_context_options *opts, mc_err **err);
/** QUIT and close the idle pooled connections of `server` (NULL: of every
 *  server). Connections in use close when they come back. Thread-safe. */
void mc_context_disconnect(mc_context *ctx, const char *server);

/* ------------------------------------------------------------- testing */

/** Called for each stage of mc_server_test as it happens: the server's
 *  reply (untrusted, as mc_err.server_text), or the TLS facts
 *  ("TLSv1.3 TLS_AES_256_GCM_SHA384, certificate verified"). */
typedef void mc_test_fn(mc_stage stage, const char *line, void *payload);

/**
 * The staged check behind `mailconn test`: connect, TLS, greeting, EHLO,
 * STARTTLS, AUTH over a new, non-pooled connection, bounded by the server's
 * deadlines; with `to`, a short test message to it (else no transaction).
 * @param fn  each stage's line, or NULL
 * @return 0, or the failing stage's error (err->stage, smtp_code, action).
 * Thread-safe.
 */
int mc_server_test(mc_context *ctx, const char *server, const char *to, mc_test_fn *fn,
                   void *payload, mc_err **err);

/* ------------------------------------------------------------- OAuth */

/** OAuth flows (bit set: what a provider allows; one: what to run). */
#define MC_FLOW_AUTH_CODE          (1u << 0)   /* browser + loopback redirect */
#define MC_FLOW_PASTE              (1u << 1)   /* paste the redirect URL back */
#define MC_FLOW_DEVICE             (1u << 2)
#define MC_FLOW_CLIENT_CREDENTIALS (1u << 3)

/** What is stored for a server's grant (never a token). Version first:
 *  set it to MC_TOKEN_STATUS_VERSION; members are only appended. */
typedef struct mc_token_status {
    unsigned  version;            /* MC_TOKEN_STATUS_VERSION */
    bool      stored;             /* a record for this server's identity */
    bool      identity_mismatch;  /* a record for another identity */
    long long access_expires;     /* Unix time, 0 = none */
    long long refresh_issued;     /* Unix time, 0 = none */
    long long refresh_used;
    int       days_left;          /* before the provider's known refresh-token cliff
                                     (Microsoft 90 days, Google "Testing" 7); -1: none */
    char      warning[64];        /* "refresh-token-near-90-day-limit", or "" */
    int       store_code;         /* 0, or the MC_E* code of the store's trouble */
    char      store_message[256]; /* what is wrong with the store, or "" */
    char      grant[32];          /* the server's grant: "authorization_code",
                                     "device_code", "client_credentials"; or
                                     "access_token_command" (with MC_ENOTSUP) */
} mc_token_status;

#define MC_TOKEN_STATUS_VERSION 1

/** A device authorization in progress (RFC 8628), allocated by the library:
 *  release with mc_oauth_device_free(). Show user_code and verification_uri
 *  (or verification_uri_complete) to the person. */
typedef struct mc_oauth_device {
    char     *user_code;
    char     *verification_uri;
    char     *verification_uri_complete;   /* or NULL */
    int       expires_in;                  /* seconds */
    int       interval;                    /* polling, seconds */
    char     *device_code;                 /* the library's: never show it */
} mc_oauth_device;

/** How mc_oauth_authorize() runs an interactive flow. */
typedef struct mc_oauth_authorize_options {
    unsigned    version;          /* MC_OAUTH_AUTHORIZE_OPTIONS_VERSION */
    unsigned    flow;             /* one MC_FLOW_*; 0: browser, or the provider's
                                     headless default without a display */
    int         port;             /* loopback redirect port; 0: any */
    const char *browser;          /* command given the URL; NULL: say it only */
    int         wait_s;           /* bound on waiting for the person; 0: 300 */
    void      (*say)(const char *line, void *payload);     /* prompts, the URL */
    char     *(*ask)(const char *prompt, void *payload);   /* a malloc'd line, or NULL */
    void       *payload;
} mc_oauth_authorize_options;

#define MC_OAUTH_AUTHORIZE_OPTIONS_VERSION 1
#define MC_OAUTH_AUTHORIZE_OPTIONS_INIT { MC_OAUTH_AUTHORIZE_OPTIONS_VERSION, 0, 0, NULL, 0, \
                                          NULL, NULL, NULL }

/**
 * Start the authorization code flow for a web application's own callback:
 * a PKCE verifier and a `state` are kept by the token store as a pending
 * authorization for 600 s; send the browser to *authorization_url
 * (release with mc_free). redirect_uri: the application's callback URL,
 * registered with the provider.
 * @return 0, MC_ENOSERVER, MC_ENOTSUP (not an OAuth server), MC_ECONFIG,
 *         MC_EFILE (store), MC_ENOMEM. Thread-safe.
 */
int mc_oauth_begin(char **authorization_url, mc_context *ctx, const char *server,
                   const char *redirect_uri, mc_err **err);
/**
 * The browser came back: callback_url is the whole URL it arrived at. The
 * pending authorization its state names is taken (once, from this or
 * another process sharing the store), the code redeemed with the verifier,
 * the tokens stored. A wrong, reused or expired state, and
 * error=access_denied, store nothing.
 * @return 0, MC_EAUTH (denied: action GRANT_CONSENT), MC_EOAUTH (state
 *         unknown, reused or expired; the token endpoint refused),
 *         MC_EINVAL, MC_ENOSERVER, MC_ENOTSUP. Thread-safe.
 */
int mc_oauth_finish(mc_context *ctx, const char *server, const char *callback_url, mc_err **err);
/** Device flow, first half (the provider's device endpoint). */
int mc_oauth_device_begin(mc_oauth_device **out, mc_context *ctx, const char *server,
                          mc_err **err);
/** Device flow, second half: poll until approved (tokens stored), denied
 *  (MC_EAUTH), expired or wait_s passed (MC_ETIMEOUT). */
int mc_oauth_device_wait(mc_context *ctx, const char *server, const mc_oauth_device *dev,
                         int wait_s, mc_err **err);
void mc_oauth_device_free(mc_oauth_device *dev);
/** Store a refresh token obtained elsewhere, after redeeming it once. */
int mc_oauth_import(mc_context *ctx, const char *server, const char *refresh_token, mc_err **err);
/** Revoke the grant at the provider (when it has a revocation endpoint)
 *  and delete the stored record. */
int mc_oauth_revoke(mc_context *ctx, const char *server, mc_err **err);
/** What is stored for server. @return 0, MC_ENOSERVER, MC_ENOTSUP (not
 *  an OAuth server, or access_token_command), MC_EINVAL (version). */
int mc_oauth_get_status(mc_token_status *status, mc_context *ctx, const char *server);
/** An interactive flow as the CLI runs it (loopback browser, paste, device). */
int mc_oauth_authorize(mc_context *ctx, const char *server, const mc_oauth_authorize_options *opts,
                       mc_err **err);

/* ------------------------------------------------------------- token stores */

/** Whose record it is: stored with it and checked on load, and for a store
 *  that encrypts, the associated data it binds the record to. */
typedef struct mc_token_identity {
    const char *server;           /* the server's name: the record's key */
    const char *provider;
    const char *client_id;
    const char *user;             /* "" when none */
    const char *token_url;
} mc_token_identity;

/**
 * A token store (DESIGN.md "Token stores and fleets"): the built-in file
 * store, a token-store plugin, or an application's own
 * (mc_context_options.token_store). Records are opaque bytes. `store` is
 * the payload given with the ops. Every op may be called from several
 * threads at once. Errors: fill *err (use a code such as MC_EFILE with
 * outcome CONFIG for a store that is unsafe or misconfigured, TRANSIENT for
 * one that is down). Memory returned in *data is malloc'd by the store and
 * wiped and freed by the library.
 */
struct mc_token_store_ops {
    size_t size;                  /* sizeof(mc_token_store_ops) */
    /** Take id->server's refresh lock by deadline_ms (CLOCK_MONOTONIC, ms):
     *  single flight across threads, processes and, for a shared store,
     *  machines; a holder that dies must not keep it.
     *  @return 0, MC_ETIMEOUT, or the store's error. */
    int  (*lock)(void *store, const mc_token_identity *id, long long deadline_ms, mc_err **err);
    void (*unlock)(void *store, const mc_token_identity *id);
    /** The record: *data and *len; none: 0 with *data NULL. */
    int  (*load)(void *store, const mc_token_identity *id, char **data, size_t *len,
                 mc_err **err);
    /** Replace the record atomically (called inside the lock). */
    int  (*save)(void *store, const mc_token_identity *id, const char *data, size_t len,
                 mc_err **err);
    /** Delete the record (none: 0). */
    int  (*remove)(void *store, const mc_token_identity *id, mc_err **err);
    /** Keep a pending authorization under `state` until `expires` (Unix s). */
    int  (*pending_put)(void *store, const char *state, const char *data, size_t len,
                        long long expires, mc_err **err);
    /** Take (read and delete: once) the pending authorization under state;
     *  none or expired: 0 with *data NULL. */
    int  (*pending_take)(void *store, const char *state, char **data, size_t *len,
                         mc_err **err);
};

/* ------------------------------------------------------------- messages */

typedef enum mc_rcpt_kind { MC_RCPT_TO = 0, MC_RCPT_CC = 1, MC_RCPT_BCC = 2 } mc_rcpt_kind;

/** A new, empty message. @return 0 or MC_ENOMEM. */
int  mc_message_new(mc_message **out, mc_err **err);
/**
 * Parse a complete RFC 5322 message (for `send -t` and `sendmail`):
 * recipients come from To/Cc/Bcc, Bcc is removed, Date and Message-ID are
 * added when missing. Bare LF line ends are accepted.
 * @return 0, MC_EMESSAGE (bad header), MC_ENOMEM.
 */
int  mc_message_parse(mc_message **out, const char *data, size_t len, mc_err **err);
/** mc_message_parse_ex() flag: read the input as sendmail(8) reads its
 *  standard input (Postfix's cleanup rules), for programs that pipe mail
 *  into /usr/sbin/sendmail:
 *  - a first line "From ..." (an mbox separator) is dropped;
 *  - a first line that is not a header field ("Name: value") makes the
 *    whole input the body: the message has no header of its own (its
 *    recipients then come from mc_message_add_envelope_recipient());
 *  - a later line that is neither a header field nor a continuation ends
 *    the header block and starts the body, as if a blank line stood before
 *    it (one is written when the message is); without the flag that line
 *    is MC_EMESSAGE.
 *  A NUL or a bare CR in the header block is MC_EMESSAGE either way. */
#define MC_PARSE_SENDMAIL (1u << 0)

/**
 * mc_message_parse() with flags. With flags 0 it is mc_message_parse().
 * The input is copied; `data` may be freed on return.
 * @param out    the new message; the caller releases it with mc_message_free()
 * @param flags  0 or MC_PARSE_SENDMAIL
 * @return 0, MC_EMESSAGE (bad header: outcome DATA, stage MESSAGE, the
 *         message names the line), MC_EINVAL (unknown flag, out NULL, data
 *         NULL with len > 0: outcome USAGE), MC_ENOMEM. On failure *out is NULL.
 * Thread-safe (no shared state).
 */
int  mc_message_parse_ex(mc_message **out, const char *data, size_t len, unsigned flags,
                         mc_err **err);
/** As mc_message_parse(), from a file whose body is streamed at send time.
 *  @return 0, MC_EFILE, MC_EMESSAGE, MC_ENOMEM. */
int  mc_message_parse_file(mc_message **out, const char *path, mc_err **err);
void mc_message_free(mc_message *msg);

/** From: header; display_name may be NULL or non-ASCII (RFC 2047). With
 *  display_name NULL and address equal to the server's sender.address
 *  (ASCII case ignored), the From: header carries sender.name. */
int  mc_message_set_from(mc_message *msg, const char *address, const char *display_name, mc_err **err);
/** Envelope sender (MAIL FROM); default: the server's sender.address, else From.
 *  "" or "<>" is the null reverse-path (MAIL FROM:<>, RFC 5321 4.5.5), which
 *  sender.override still replaces. */
int  mc_message_set_envelope_from(mc_message *msg, const char *address, mc_err **err);
int  mc_message_add_recipient(mc_message *msg, mc_rcpt_kind kind, const char *address, mc_err **err);
/** Envelope-only recipient (sendmail's command-line recipients). */
int  mc_message_add_envelope_recipient(mc_message *msg, const char *address, mc_err **err);
int  mc_message_set_subject(mc_message *msg, const char *subject, mc_err **err);
/**
 * The plain-text body: len bytes of UTF-8 (copied; NUL bytes are data).
 * LF, CR and CRLF line ends all go out as CRLF; the part is 7bit when its
 * bytes are ASCII without NUL and its lines are at most 998 octets, else
 * quoted-printable. Charset: labelled charset=UTF-8, unless the server the
 * message is sent through has another "charset" (e.g. "ISO-8859-1"): the
 * text is then converted to it with iconv at each send, labelled with that
 * name, and the transfer encoding chosen on the converted bytes. A
 * character that charset cannot represent, or bytes that are not UTF-8,
 * fail that send before MAIL with MC_EMESSAGE (outcome DATA, stage
 * MESSAGE; the message names the charset, the line and the character).
 * Subject and display names are not converted: their RFC 2047 encoded
 * words are UTF-8 whatever the charset. Parsed messages are never converted.
 * @return 0, MC_EINVAL (a parsed message), MC_ENOMEM.
 */
int  mc_message_set_text(mc_message *msg, const char *text, size_t len, mc_err **err);
/** The HTML body (text/html, alongside the text in multipart/alternative
 *  when both are set): as mc_message_set_text(), charset included. */
int  mc_message_set_html(mc_message *msg, const char *html, size_t len, mc_err **err);
/**
 * The plain-text body from a file, streamed at send time like an
 * attachment (constant memory whatever its size), with the rules of
 * mc_message_set_text(): 7bit when it is ASCII without NUL and its lines
 * are at most 998 octets, else quoted-printable; LF, CR and CRLF line ends
 * all go out as CRLF; UTF-8, converted chunk by chunk to a server's other
 * "charset" (a character it lacks: MC_EMESSAGE at send, before MAIL, naming
 * the file, line and character). Each send reads the file twice (the
 * encoding and exact size, then the data); a file that changes in between
 * fails that send with MC_EFILE. Replaces a text set before (and
 * mc_message_set_text() replaces this one).
 * @param msg   a composed message (a parsed one: MC_EINVAL)
 * @param path  a regular, readable file; copied, the file is not kept open
 * @return 0, MC_EFILE (missing, unreadable or not a regular file: outcome
 *         NOINPUT, the message names the path), MC_EINVAL, MC_ENOMEM.
 */
int  mc_message_set_text_file(mc_message *msg, const char *path, mc_err **err);
/** Attach a file, streamed at send time; content type from its extension. */
int  mc_message_add_attachment(mc_message *msg, const char *path, mc_err **err);
/** An extra header; CR or LF in the value is refused (header injection). */
int  mc_message_add_header(mc_message *msg, const char *name, const char *value, mc_err **err);
/** The Message-ID (without angle brackets) once known, else NULL. Borrowed. */
const char *mc_message_id(const mc_message *msg);
/** Display name for the From: header written from the server's
 *  sender.address when the message has none (sendmail -F). */
int  mc_message_set_from_name(mc_message *msg, const char *display_name, mc_err **err);
/**
 * Delivery status notification requests (RFC 3461): RET and ENVID go with
 * MAIL FROM, NOTIFY and ORCPT (rfc822;<the envelope recipient>, for ASCII
 * addresses) with each RCPT TO, when the server offers DSN; a server without DSN gets none of them
 * (an MC_LOG_INFO line says so) and the message still goes.
 * @param notify  NULL (the server's default), "NEVER", or a comma list of
 *                SUCCESS, FAILURE, DELAY; any case
 * @param ret     NULL, "FULL" or "HDRS"; any case
 * @param envid   NULL, or 1..100 printable ASCII characters (sent as xtext)
 * Each call replaces all three. Strings are copied.
 * @return 0, MC_EINVAL (a value out of range: outcome USAGE, the message
 *         names it), MC_ENOMEM.
 */
int  mc_message_set_dsn(mc_message *msg, const char *notify, const char *ret, const char *envid,
                        mc_err **err);
/**
 * Split one mailbox as people write it in From: or on a command line:
 * "Name <a@b>", "\"Doe, J.\" <a@b>", "<a@b>", "a@b", "a@b (comment)".
 * The display name is the phrase before '<': comments dropped, quoted
 * strings unquoted (backslash escapes removed), white space runs made one
 * space, trimmed; RFC 2047 encoded words are left as written. Without
 * angle brackets there is no display name (a comment is not one). The
 * address is checked as mc_message_set_from() checks it (a bare local name
 * without a domain passes); an obsolete source route "<@a:b@c>" is dropped.
 * Use it for what a user typed (mailconn send --from 'Name <a@b>'):
 * mc_message_set_from(msg, address, display_name, &err).
 * @param address       out: the address; release with mc_free()
 * @param display_name  out: the name, or NULL when there is none (release
 *                      with mc_free()); pass NULL when only the address is wanted
 * @param mailbox       one mailbox (not a list, no line break)
 * @return 0, MC_EMESSAGE (no address, "<>", more than one mailbox,
 *         unbalanced quotes, comment or angle brackets, a line break, a bad
 *         address: outcome DATA, stage MESSAGE), MC_EINVAL (address or mailbox
 *         NULL), MC_ENOMEM. On failure the outputs are NULL.
 * Thread-safe (no shared state).
 */
int  mc_mailbox_parse(char **address, char **display_name, const char *mailbox, mc_err **err);

/**
 * Split an address list (the value of To:, Cc:, Bcc:, or sendmail's
 * recipient arguments "a@x,b@y") into its addresses, in order:
 * "a@x, Name <b@y>, \"Doe, J.\" <c@z>, team: d@w, e@w;" gives a@x, b@y,
 * c@z, d@w, e@w. Display names, comments and group names are dropped;
 * empty elements and empty groups ("undisclosed-recipients:;") give
 * nothing; folding white space is allowed. Each address is checked as
 * mc_message_add_recipient() checks it (a bare local name passes: aliases
 * may resolve it at send time).
 * @param value    the list; NULL or "" gives no call
 * @param fn       called once per address; `addr` is borrowed for the call;
 *                 a non-zero return stops the split and is returned
 * @param payload  passed to fn
 * @return 0, fn's non-zero value, MC_EMESSAGE (unbalanced quotes, comment
 *         or angle brackets, a bad address: outcome DATA, stage MESSAGE;
 *         fn has then been called for the addresses before it), MC_EINVAL
 *         (fn NULL), MC_ENOMEM.
 * Thread-safe (no shared state).
 */
int  mc_address_list_split(const char *value, int (*fn)(const char *addr, void *payload),
                           void *payload, mc_err **err);

/** Envelope recipients, once the message was prepared for a server. */
size_t mc_message_recipient_count(const mc_message *msg);
/** The server's reply after the final dot of the last send
 *  ("250 2.0.0 Ok: queued"), or NULL. Borrowed. Untrusted, as
 *  mc_err.server_text: escape it before showing it. */
const char *mc_message_last_reply(const mc_message *msg);

/* ------------------------------------------------------------- sending */

/**
 * Send one message through `server` (NULL: the default), over a pooled
 * connection. On partial success (some recipients refused) returns MC_ERCPT
 * and err->rcpts says who got it.
 * @return 0 when every recipient accepted; a negative MC_E* code otherwise.
 * Thread-safe.
 */
int mc_send(mc_context *ctx, const char *server, mc_message *msg, mc_err **err);

/** A connection to one server, for sending many messages in a row. */
int  mc_session_open(mc_session **out, mc_context *ctx, const char *server, mc_err **err);
int  mc_session_send(mc_session *s, mc_message *msg, mc_err **err);
/** The final reply of the last accepted message ("250 2.0.0 Ok: queued"), borrowed;
 *  untrusted, as mc_err.server_text. */
const char *mc_session_last_reply(const mc_session *s);
/** QUIT and close. NULL is fine. */
void mc_session_close(mc_session *s);

/* ---------------------------------------------------------------- queue */

/* The durable queue (DESIGN.md "System mail: sendmail and the queue"),
 * present when the config has a top-level "queue" object. The queue
 * folder: "queue.dir", else <state>/queue; with /etc/mailconn/config.json,
 * <spooldir>/queue, the submission helper's drop folder <spooldir>/drop
 * beside it. In the queue folder (0700, the user's own; files 0600):
 *   <QID>        one message: a metadata line (JSON: id, submit time, uid,
 *                user, envelope, DSN), then the message bytes; written as
 *                tmp/<QID> (fsync), linked to its final name, folder fsynced;
 *                never changed after; locked (flock) by whoever works on it
 *   <QID>.state  what changes: attempts, next try, last reason, held, the
 *                recipients still pending; replaced atomically
 *   tmp/         files being written (a runner never reads them); a dead
 *                writer's (unlocked, a minute old) are swept by runs
 * Queue IDs are 21 characters [0-9A-F]: the submit time in microseconds
 * (13 hex digits, so IDs sort by age) and 8 random hex digits.
 * Every call is safe from several threads and processes at once: a
 * message is worked on by one caller at a time (its lock); a runner skips
 * a message another one holds. */

#define MC_QUEUE_ID_SIZE 32   /* a queue ID with its NUL fits */

/** `text` as it may be shown on a terminal, in a log or a web page's text:
 *  C0 controls but TAB, DEL, C1 controls (U+0080..U+009F) and bytes that
 *  are not valid UTF-8 become \xHH; everything else is kept (escaping
 *  twice changes nothing). For what a server said (mc_err.server_text,
 *  reply texts) before showing it: mailconn's own log lines and messages
 *  are escaped already. @return a new string (release with free()), NULL
 *  for NULL or when out of memory. Thread-safe. */
char *mc_text_escape(const char *text);

/** Whether ctx's config has a queue. */
bool mc_queue_configured(const mc_context *ctx);

/** The setgid submission helper of this library's build (mailconn-submit,
 *  the postdrop pattern: it queues a message for any local user into the
 *  system queue's drop folder; see "Replacing the system MTA"): in the
 *  build tree when the running program is, else
 *  $libexecdir/mailconn/mailconn-submit. Its command line: -i, -t, -F NAME,
 *  -N, -R, -V, -f SENDER, then "--" and the recipients; the message on
 *  stdin. @return a static path, or NULL when it is not installed
 *  (not executable by the caller). Thread-safe. */
const char *mc_submit_helper_path(void);

typedef struct mc_queue_submit_options {
    unsigned    version;          /* MC_QUEUE_SUBMIT_OPTIONS_VERSION */
    const char *server;           /* the server to deliver through; NULL: the default */
    long long   submitted;        /* the submit time (Unix seconds) to record; 0: now.
                                     For imports from another queue, and tests */
} mc_queue_submit_options;

#define MC_QUEUE_SUBMIT_OPTIONS_VERSION 1
#define MC_QUEUE_SUBMIT_OPTIONS_INIT { MC_QUEUE_SUBMIT_OPTIONS_VERSION, NULL, 0 }

/**
 * Write msg into the queue durably, prepared for its server as mc_send
 * would (envelope, aliases, Date, Message-ID), with a Received: line naming
 * the submitting user (getuid). On return 0 the message is on disk (file
 * and folder fsynced); on failure nothing of it is left in the queue.
 * msg stays the caller's (prepared, as after mc_send); delivery is
 * mc_queue_run's, in this process or another.
 * @param id_out  MC_QUEUE_ID_SIZE bytes for the new ID, or NULL
 * @return 0, MC_ENOTSUP (no queue configured: outcome CONFIG), MC_EMESSAGE,
 *         MC_EFILE (the queue folder unsafe: outcome CONFIG; cannot write,
 *         e.g. disk full: outcome TRANSIENT; stage QUEUE), MC_ENOMEM.
 */
int mc_queue_submit(mc_context *ctx, mc_message *msg, const mc_queue_submit_options *opts,
                    char *id_out, mc_err **err);

/** One queued message, as listed. Members are only appended. Borrowed:
 *  valid during the visit callback only. */
typedef struct mc_queue_entry {
    unsigned            version;      /* MC_QUEUE_ENTRY_VERSION */
    const char         *id;
    long long           submitted;    /* Unix seconds */
    unsigned            uid;          /* the submitting user */
    const char         *user;
    const char         *sender;       /* envelope sender; "" for the null sender */
    const char *const  *rcpts;        /* the recipients still pending */
    size_t              n_rcpts;
    unsigned long long  size;         /* bytes of the message */
    unsigned            attempts;
    long long           next_try;     /* Unix seconds */
    const char         *reason;       /* why the last try failed, or NULL; untrusted
                                         (a server's words): escape before showing */
    bool                held;
} mc_queue_entry;

#define MC_QUEUE_ENTRY_VERSION 1

/** Called once per message, oldest first; a non-zero return stops the listing. */
typedef int mc_queue_visit_fn(const mc_queue_entry *entry, void *payload);

/**
 * List the queue (no lock taken: a message being delivered is listed as
 * it was). No queue configured, or none created yet: no call, 0.
 * @return 0, the callback's non-zero value, MC_EFILE (folder unsafe or
 *         unreadable), MC_ENOMEM.
 */
int mc_queue_list(mc_context *ctx, mc_queue_visit_fn *fn, void *payload, mc_err **err);

/** mc_queue_run(): deliver every message not held, due or not. */
#define MC_QUEUE_FLUSH (1u << 0)

typedef struct mc_queue_run_options {
    unsigned    version;          /* MC_QUEUE_RUN_OPTIONS_VERSION */
    unsigned    flags;            /* MC_QUEUE_FLUSH */
    const char *id;               /* only this message (held or not due: skipped); or NULL */
} mc_queue_run_options;

#define MC_QUEUE_RUN_OPTIONS_VERSION 1
#define MC_QUEUE_RUN_OPTIONS_INIT { MC_QUEUE_RUN_OPTIONS_VERSION, 0, NULL }

/** What one run did. Members are only appended. */
typedef struct mc_queue_run_stats {
    size_t delivered;   /* messages every recipient of which now has it */
    size_t deferred;    /* messages left for a later try */
    size_t failed;      /* messages given up (permanent refusal or max_age_s) */
    size_t notices;     /* failure notices queued */
    size_t busy;        /* skipped: another runner holds them */
} mc_queue_run_stats;

/**
 * Deliver what is due (with MC_QUEUE_FLUSH: everything not held). Per
 * message: every pending recipient accepted -> removed; a recipient refused
 * with 5xx -> dropped from it, the others still delivered; 4xx, network
 * trouble, an outcome unknown after the final dot (retried, logged "may
 * duplicate") and local trouble (auth, config) -> kept, next try after
 * retry_s, doubling per attempt up to 3600 s; permanent refusal, or older
 * than max_age_s -> removed. A recipient given up gets the envelope sender
 * one failure notice (RFC 3464), unless the sender is null, the message is
 * a notice itself (Auto-Submitted, multipart/report) or NOTIFY excludes
 * FAILURE. Every event goes to the top-level log. Run as root on the
 * system queue (the build's spooldir) without opts->id, it first takes the
 * mailconn-submit helper's files from <spooldir>/drop into the queue.
 * @param out  counts, or NULL
 * @return 0 (failures of single messages are counted and logged, not
 *         returned), MC_ENOTSUP (no queue), MC_EFILE, MC_ENOMEM; with
 *         opts->id, MC_EINVAL (no such message) or that message's error.
 */
int mc_queue_run(mc_context *ctx, const mc_queue_run_options *opts, mc_queue_run_stats *out,
                 mc_err **err);

/** Remove a queued message (waits for a runner working on it).
 *  @return 0, MC_EINVAL (no such message: outcome USAGE), MC_ENOTSUP, MC_EFILE. */
int mc_queue_drop(mc_context *ctx, const char *id, mc_err **err);
/** Keep a message from being delivered until released; as mc_queue_drop. */
int mc_queue_hold(mc_context *ctx, const char *id, mc_err **err);
/** Release a held message, due at once; as mc_queue_drop. */
int mc_queue_release(mc_context *ctx, const char *id, mc_err **err);

#ifdef __cplusplus
}
#endif
#endif
