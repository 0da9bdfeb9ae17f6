/* mailconn plugin ABI: the only header plugins include.
 *
 * A plugin is a shared module exporting exactly one symbol, mc_plugin_entry,
 * which returns a constant descriptor. It reaches the core only through the
 * mc_host_api table handed to that entry. Ops tables start with `size` and
 * only grow at the end; removing or reordering a member bumps the major.
 * Version rule: same major, plugin minor <= core minor.
 */
#ifndef MAILCONN_PLUGIN_H
#define MAILCONN_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mailconn/mailconn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_PLUGIN_ABI_MAJOR 1
#define MC_PLUGIN_ABI_MINOR 1   /* 1.1: mc_connect_opts.deadline_ms,
                                  mc_stream_ops.set_read_deadline */

/** Whether the table or options at `p` (starting with its `size`) are large
 *  enough to hold `member` of type T: members added in a later minor are
 *  read only when this holds. */
#define MC_SIZE_HAS(p, T, member) \
    ((p)->size >= offsetof(T, member) + sizeof(((T *)0)->member))

#if defined(__GNUC__)
#define MC_PLUGIN_EXPORT __attribute__((visibility("default")))
#define MC__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MC_PLUGIN_EXPORT
#define MC__PRINTF(a, b)
#endif

typedef enum mc_plugin_kind {
    MC_PLUGIN_TRANSPORT = 1,
    MC_PLUGIN_AUTH = 2,
    MC_PLUGIN_OAUTH_ENGINE = 3,   /* internal: engine-oauth.so */
} mc_plugin_kind;

/* ------------------------------------------------------------- streams */

typedef struct mc_stream mc_stream;

typedef struct mc_stream_ops {
    size_t size;
    /** Read up to len bytes. @return >0 bytes read, 0 when the peer closed,
     *  or a negative MC_E* (MC_ETIMEOUT, MC_ENET, MC_ETLS) with *err set. */
    ssize_t (*read)(mc_stream *s, void *buf, size_t len, mc_err **err);
    /** Write all len bytes. @return 0 or a negative MC_E* with *err set.
     *  Never raises SIGPIPE. */
    int (*write)(mc_stream *s, const void *buf, size_t len, mc_err **err);
    /** Close the connection and free the stream. */
    void (*close)(mc_stream *s);
    /* ABI 1.1 (MC_SIZE_HAS; NULL: not supported) */
    /** Bound the reads that follow: each read() returns by deadline_ms (a
     *  CLOCK_MONOTONIC time in milliseconds) or fails with MC_ETIMEOUT,
     *  whatever the server trickles; every wait inside it (TLS records,
     *  WANT_READ/WANT_WRITE retries) counts. A read takes what is there
     *  before it waits: with a deadline already past it returns the bytes
     *  waiting, or MC_ETIMEOUT at once. While bytes written before are
     *  still being taken by the server (the end of a body in the socket
     *  buffer), the deadline may move to timeout_ms after that progress.
     *  0: no deadline (each read is bounded by timeout_ms from its start).
     *  Writes are not affected: a write fails after timeout_ms without
     *  progress. The SMTP engine sets it before each reply. */
    void (*set_read_deadline)(mc_stream *s, int64_t deadline_ms);
} mc_stream_ops;

/** Base of every stream: placed first in each implementation. */
struct mc_stream {
    const mc_stream_ops *ops;
    bool  encrypted;          /* TLS is up */
    bool  peer_verified;      /* chain and host name verified */
    char  tls_version[16];    /* "TLSv1.3" when encrypted */
    char  tls_cipher[64];
};

typedef struct mc_connect_opts {
    size_t      size;
    const char *host;         /* host name or IP literal */
    uint16_t    port;
    int         timeout_ms;   /* each reply; writes: without progress */
    const char *ca_file;      /* replaces the system store; NULL = system */
    int         tls_min;      /* 12 or 13 */
    /* ABI 1.1 (MC_SIZE_HAS) */
    /** connect() (every address tried, and the TLS handshake of implicit
     *  TLS) and starttls() complete by this CLOCK_MONOTONIC time in
     *  milliseconds, in total; 0: timeout_ms from the call. A transport that
     *  connects through another (a proxy) passes the same deadline on. */
    int64_t     deadline_ms;
} mc_connect_opts;

typedef struct mc_transport_ops {
    size_t   size;
    uint16_t default_port;
    /** Connect (and for implicit TLS, handshake). @return 0, MC_ENET,
     *  MC_ETIMEOUT (stage connect), MC_ETLS (stage tls). */
    int (*connect)(mc_stream **out, const mc_connect_opts *o, mc_err **err);
    /** Upgrade `s` in place after the server's 220 to STARTTLS; NULL when
     *  the transport has no STARTTLS. Bytes already waiting from the server
     *  are an error (response injection). On failure the caller closes s.
     *  @return 0, MC_ETLS. */
    int (*starttls)(mc_stream *s, const mc_connect_opts *o, mc_err **err);
} mc_transport_ops;

/* ------------------------------------------------------------- auth */

/** A plugin's part of the config (a server's "auth" object). Opaque. */
typedef struct mc_plugin_cfg mc_plugin_cfg;

/** Basic credentials; strings from host->strdup, released by the core
 *  (wiped first). */
typedef struct mc_credentials {
    char *user;
    char *password;
} mc_credentials;

/** OAuth flows a provider allows (bit set). */
#define MC_FLOW_AUTH_CODE          (1u << 0)   /* browser + loopback redirect */
#define MC_FLOW_PASTE              (1u << 1)   /* paste the redirect URL back */
#define MC_FLOW_DEVICE             (1u << 2)
#define MC_FLOW_CLIENT_CREDENTIALS (1u << 3)

#define MC_URL_MAX 2048

/** A known failure and what to tell the user: `match` is a substring of an
 *  OAuth error (error, error_description) or of an SMTP reply. */
typedef struct mc_hint {
    const char *match;
    const char *hint;
} mc_hint;

/** What an OAuth provider tells the engine. Filled by oauth_profile(). */
typedef struct mc_oauth_profile {
    size_t size;
    char   authorization_url[MC_URL_MAX];
    char   token_url[MC_URL_MAX];
    char   device_authorization_url[MC_URL_MAX];
    char   revocation_url[MC_URL_MAX];
    char   scope[1024];
    /** extra authorization parameters: "k=v" pairs, NULL-terminated; static
     *  or borrowed from the config */
    const char *const *params;
    unsigned flows;              /* MC_FLOW_* allowed */
    unsigned default_headless;   /* MC_FLOW_* to use without a display */
    bool     rotates_refresh;    /* store the new refresh token on every use */
    unsigned refresh_lifetime_days; /* warn when near; 0 = none known */
    const mc_hint *hints;        /* NULL-terminated by match == NULL */
    /* ABI 1.1 (the core zeroes the profile before oauth_profile fills it) */
    /** Refresh tokens of an app still in the provider's test status die
     *  this many days after they were issued (Google "Testing": 7); the
     *  core warns during the last day before it. 0 = none known. */
    unsigned refresh_testing_days;
} mc_oauth_profile;

typedef struct mc_auth_ops {
    size_t size;
    /** SASL mechanisms in the provider's preference order, NULL-terminated. */
    const char *const *mechanisms;
    /** Keys the provider accepts in "auth" besides "provider", NULL-terminated. */
    const char *const *keys;
    /** SMTP defaults, or NULL / 0 when none. */
    const char *smtp_host;
    uint16_t    smtp_port;
    const char *smtp_transport;
    unsigned    max_connections;
    bool        oauth;             /* tokens come from the OAuth engine */
    /** Check the provider's semantic rules; report each problem with
     *  host->cfg_error() (which prefixes the JSON path). */
    void (*validate)(const mc_plugin_cfg *cfg);
    /** basic: user + password. @return 0, MC_ESECRET, MC_ECONFIG. */
    int (*credentials)(const mc_plugin_cfg *cfg, mc_credentials *out, mc_err **err);
    /** OAuth providers: the profile. @return 0, MC_ECONFIG. */
    int (*oauth_profile)(const mc_plugin_cfg *cfg, mc_oauth_profile *out, mc_err **err);
} mc_auth_ops;

/* ------------------------------------------------------------- OAuth engine */

/** Everything the engine needs for one server's tokens. Strings borrowed. */
typedef struct mc_oauth_request {
    size_t      size;
    const char *server;          /* names the token file */
    const char *provider;        /* identity: provider, client_id, user, token_url */
    const char *client_id;
    const char *client_secret;   /* NULL for public clients */
    const char *client_auth;     /* "post", "basic", "none" */
    const char *user;
    const char *grant;           /* "authorization_code", "device_code", "client_credentials" */
    const char *redirect_uri;    /* NULL: http://127.0.0.1:PORT/ */
    const char *ca_file;         /* auth.ca_file: replaces the system store */
    const char *state_dir;       /* <state>; tokens go to <state>/tokens/ */
    int         timeout_s;       /* HTTP, each request */
    int         refresh_margin_s;
    const mc_oauth_profile *profile;
} mc_oauth_request;

/** Options of an interactive authorization (`mailconn auth`). */
typedef struct mc_oauth_authorize_opts {
    size_t      size;
    unsigned    flow;            /* one MC_FLOW_* */
    int         port;            /* loopback port, 0 = ephemeral */
    const char *browser;         /* command given the URL, or NULL: print only */
    int         wait_s;          /* bound on waiting for the person */
    /* prompts and the pasted URL go through these (the CLI: stderr/stdin) */
    void      (*say)(void *payload, const char *line);
    char     *(*ask)(void *payload, const char *prompt);   /* malloc'd line or NULL */
    void       *payload;
} mc_oauth_authorize_opts;

/** What `mailconn servers` shows (never a token). */
typedef struct mc_oauth_status {
    bool     stored;             /* a token file for this identity */
    bool     identity_mismatch;  /* a file for another identity */
    long long access_expires;    /* unix time, 0 = none */
    long long refresh_issued;    /* unix time, 0 = none */
    long long refresh_used;
} mc_oauth_status;

typedef struct mc_oauth_engine_ops {
    size_t size;
    /** A current access token: cached while further than refresh_margin_s
     *  from expiry, else refreshed (or, for client_credentials, fetched);
     *  single-flight across threads and processes (flock on <server>.lock).
     *  *out from host->strdup, release with host->free_secret.
     *  @return 0, MC_EAUTH (no token stored, identity mismatch,
     *  invalid_grant: outcome AUTH with a hint to run `mailconn auth`),
     *  MC_ECONFIG (invalid_client, invalid_scope: outcome CONFIG),
     *  MC_EOAUTH (endpoint down, slow, 5xx: outcome TRANSIENT). */
    int (*token)(const mc_oauth_request *req, char **out, mc_err **err);
    /** Forget `token` as the cached access token (the server refused it),
     *  so the next token() refreshes. */
    int (*invalidate)(const mc_oauth_request *req, const char *token, mc_err **err);
    /** Run an interactive flow and store the tokens. */
    int (*authorize)(const mc_oauth_request *req, const mc_oauth_authorize_opts *o,
                     mc_err **err);
    /** Store a refresh token obtained elsewhere (and redeem it once). */
    int (*import_refresh)(const mc_oauth_request *req, const char *refresh_token,
                          mc_err **err);
    /** Revoke at the provider when it has a revocation endpoint, then delete
     *  the stored tokens. */
    int (*revoke)(const mc_oauth_request *req, mc_err **err);
    int (*status)(const mc_oauth_request *req, mc_oauth_status *out);
} mc_oauth_engine_ops;

/* ------------------------------------------------------------- host API */

typedef struct mc_host_api {
    size_t   size;
    uint16_t abi_major, abi_minor;

    /* logging: redacted against every registered secret */
    void (*log)(mc_log_level level, const char *fmt, ...) MC__PRINTF(2, 3);
    /** Register a secret so no log line shows it. */
    void (*redact)(const char *secret);

    /* memory */
    void *(*alloc)(size_t n);          /* zeroed; NULL on failure */
    char *(*strdup)(const char *s);
    void  (*free)(void *p);
    void  (*free_secret)(char *s);     /* wipe, then free; NULL is fine */

    /** Fill *err (when err is non-NULL) and return code. */
    int (*error)(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                 const char *fmt, ...) MC__PRINTF(5, 6);

    /* config accessors: read-only, for the plugin's own part */
    /** A string member, or NULL when absent or not a string. Borrowed. */
    const char *(*cfg_string)(const mc_plugin_cfg *cfg, const char *key);
    bool (*cfg_has)(const mc_plugin_cfg *cfg, const char *key);
    /** An integer member, or dflt when absent. */
    long (*cfg_int)(const mc_plugin_cfg *cfg, const char *key, long dflt);
    /** The i-th member of object `key`: its name in *name, its string value
     *  returned; NULL past the end. Borrowed. */
    const char *(*cfg_member)(const mc_plugin_cfg *cfg, const char *key, size_t i,
                              const char **name);
    /** Report a validation problem at <path>.<key> (key NULL: the object). */
    void (*cfg_error)(const mc_plugin_cfg *cfg, const char *key, const char *fmt, ...)
        MC__PRINTF(3, 4);

    /** Resolve secret `name` ("password", "client_secret") from its one
     *  source (inline, _file, _env, _command). *out from host->strdup;
     *  release with free_secret. Absent: 0 and *out = NULL.
     *  @return 0, MC_ESECRET. */
    int (*secret)(const mc_plugin_cfg *cfg, const char *name, char **out, mc_err **err);

    /** TCP connect trying every resolved address, all by o->deadline_ms
     *  (1.1; 0: timeout_ms from the call); the socket is blocking with
     *  SO_RCVTIMEO/SO_SNDTIMEO = timeout_ms and TCP_NODELAY (poll it and
     *  use MSG_DONTWAIT to keep a deadline). @return 0, MC_ENET,
     *  MC_ETIMEOUT. */
    int (*tcp_connect)(const mc_connect_opts *o, int *fd_out, mc_err **err);

    /** Replace `path` atomically with data (temp file in the same folder,
     *  fsync, rename; a symlink replaced at its target) with file mode
     *  `mode` (< 0: keep the existing file's). @return 0, MC_EFILE. */
    int (*file_replace)(const char *path, const char *data, size_t len, int mode,
                        mc_err **err);
    /** Run a command with /bin/sh -c; first line of stdout in *out (release
     *  with free_secret); bounded by timeout_ms. @return 0, MC_ESECRET. */
    int (*run_command)(const char *command, int timeout_ms, char **out, mc_err **err);
} mc_host_api;

/* ------------------------------------------------------------- descriptor */

typedef struct mc_plugin_desc {
    uint16_t       abi_major, abi_minor;   /* first, never moved */
    mc_plugin_kind kind;
    const char    *name;                   /* [a-z0-9-], the file name says it too */
    const char    *version;
    const char    *summary;
    const void    *ops;                    /* mc_transport_ops, mc_auth_ops, ... */
} mc_plugin_desc;

#define MC_PLUGIN_ENTRY_SYMBOL "mc_plugin_entry"
typedef const mc_plugin_desc *mc_plugin_entry_fn(const mc_host_api *host);
/* declared through the typedef, so a plugin with the wrong signature won't compile */
MC_PLUGIN_EXPORT mc_plugin_entry_fn mc_plugin_entry;

#ifdef __cplusplus
}
#endif
#endif
