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

#define MC_PLUGIN_ABI_MAJOR 2
#define MC_PLUGIN_ABI_MINOR 1   /* 2.1: kinds proxy and token-store; init/fini;
                                  transport keys/validate/security and
                                  connect options/proxy; the host's TLS layer.
                                  2.0: the context handle (mc_host_ctx) passed
                                  to every op and host call that needs it;
                                  1.1 had mc_connect_opts.deadline_ms and
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

/** The context a plugin op serves: its log sink and level, its redaction
 *  list, its state folder and token store. Opaque. Every op gets it as its
 *  first parameter, and passes it on to the host calls that need it; a
 *  plugin keeps no context of its own (a stream keeps its connect's handle
 *  in mc_stream.hc: a connection never outlives its context). Valid for
 *  the duration of the op. */
typedef struct mc_host_ctx mc_host_ctx;

typedef enum mc_plugin_kind {
    MC_PLUGIN_TRANSPORT = 1,
    MC_PLUGIN_AUTH = 2,
    MC_PLUGIN_OAUTH_ENGINE = 3,   /* internal: engine-oauth.so */
    MC_PLUGIN_PROXY = 4,          /* 2.1: proxy-<name>.so, ops mc_proxy_ops */
    MC_PLUGIN_TOKEN_STORE = 5,    /* 2.1: store-<name>.so, ops mc_store_plugin_ops */
    MC_PLUGIN_TLS_ENGINE = 6,     /* 2.1, internal: engine-tls.so, the host's TLS layer */
} mc_plugin_kind;

/* ------------------------------------------------------------- streams */

typedef struct mc_stream mc_stream;

/** A plugin's part of the config (a server's "auth", "proxy" or
 *  "transport_options" object, the top-level "token_store"). Opaque. */
typedef struct mc_plugin_cfg mc_plugin_cfg;

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
    mc_host_ctx *hc;          /* the context of the connect() that made it: the
                                 transport sets it, for its read/write logging */
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
    /* ABI 2.1 (MC_SIZE_HAS) */
    /** The server's "transport_options" object (validated by the
     *  transport's validate), or NULL; read with host->cfg_*. */
    const mc_plugin_cfg *options;
    /** The route through the server's proxy, or NULL: opaque; a transport
     *  passes `o` on to host->tcp_connect, which tunnels through it, so
     *  every transport composes with every proxy. */
    const struct mc_proxy_route *proxy;
} mc_connect_opts;

/** What a transport's stream is (ABI 2.1): `check` applies the rule
 *  "no credentials over an unencrypted connection" from it without
 *  connecting, and `send` asserts that the stream agrees (encrypted before
 *  AUTH). */
typedef enum mc_transport_security {
    MC_SECURITY_UNDECLARED = 0,   /* a 2.0 transport: judged by its name */
    MC_SECURITY_PLAINTEXT = 1,
    MC_SECURITY_TLS = 2,          /* encrypted from the first byte */
    MC_SECURITY_STARTTLS = 3,     /* upgraded before EHLO's AUTH, never falls back */
} mc_transport_security;

typedef struct mc_transport_ops {
    size_t   size;
    uint16_t default_port;
    /** Connect (and for implicit TLS, handshake). @return 0, MC_ENET,
     *  MC_ETIMEOUT (stage connect), MC_ETLS (stage tls). */
    int (*connect)(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o, mc_err **err);
    /** Upgrade `s` in place after the server's 220 to STARTTLS; NULL when
     *  the transport has no STARTTLS. Bytes already waiting from the server
     *  are an error (response injection). On failure the caller closes s.
     *  @return 0, MC_ETLS. */
    int (*starttls)(mc_host_ctx *hc, mc_stream *s, const mc_connect_opts *o, mc_err **err);
    /* ABI 2.1 (MC_SIZE_HAS; NULL / 0: none) */
    /** Keys of the server's "transport_options" object, NULL-terminated;
     *  NULL: the transport takes none (the object is then an error). */
    const char *const *keys;
    /** Check the options' semantic rules; report with host->cfg_error. */
    void (*validate)(mc_host_ctx *hc, const mc_plugin_cfg *options);
    mc_transport_security security;
    /** For a transport whose options decide (a "tls" switch): the security
     *  of a connection with these options (NULL when the server has none;
     *  called after validate, also when validate reported a problem, so
     *  read them defensively). NULL: `security` holds for every
     *  connection. `check` calls it without connecting, `send` before
     *  AUTH, so both apply the one rule. */
    mc_transport_security (*security_of)(mc_host_ctx *hc, const mc_plugin_cfg *options);
} mc_transport_ops;

/* ------------------------------------------------------------- proxies (2.1) */

/** Credentials for the proxy (resolved by the core from the proxy object's
 *  "user" and its password source), or NULL members. Borrowed. */
typedef struct mc_proxy_auth {
    const char *user;
    const char *password;
} mc_proxy_auth;

typedef struct mc_proxy_ops {
    size_t   size;
    uint16_t default_port;
    /** Keys the proxy object takes besides the common ones ("type", "host",
     *  "port", "user", "password" and its sources, "allow_plaintext_auth"),
     *  NULL-terminated, or NULL. */
    const char *const *keys;
    void (*validate)(mc_host_ctx *hc, const mc_plugin_cfg *cfg);
    /** fd is connected to the proxy: make it a tunnel to host:port (the
     *  name as given: the proxy resolves it) by deadline_ms. Stage
     *  MC_STAGE_PROXY; @return 0, MC_ENET / MC_ETIMEOUT (outcome
     *  TRANSIENT), MC_EAUTH (the proxy refused the credentials; outcome
     *  AUTH), MC_EREFUSED (the proxy refused the tunnel; outcome PERMANENT,
     *  the message gives its status), MC_EPROTO. Each names the proxy. */
    int (*tunnel)(mc_host_ctx *hc, int fd, const char *host, uint16_t port,
                  const mc_proxy_auth *auth, const mc_plugin_cfg *cfg, int64_t deadline_ms,
                  mc_err **err);
} mc_proxy_ops;

/* ------------------------------------------------------------- token stores (2.1) */

/** A token-store plugin: the config's top-level "token_store" object
 *  ({"type": NAME, ...}) names store-NAME.so. */
typedef struct mc_store_plugin_ops {
    size_t size;
    /** Keys besides "type", NULL-terminated, or NULL. */
    const char *const *keys;
    void (*validate)(mc_host_ctx *hc, const mc_plugin_cfg *cfg);
    /** Open the store for a context: *store is the `store` argument of
     *  ops. @return 0, or the store's error (MC_ECONFIG, MC_EFILE...). */
    int  (*open)(mc_host_ctx *hc, const mc_plugin_cfg *cfg, void **store, mc_err **err);
    void (*close)(void *store);
    const mc_token_store_ops *ops;
    /* ABI 2.1 (MC_SIZE_HAS; NULL: none) */
    /** Where the store is and its health, for `mailconn servers`, in buf
     *  (size len): one line, never a secret ("host=... table=... (schema 1,
     *  reachable)"). @return 0, or why it is unhealthy (buf still says where). */
    int  (*describe)(void *store, char *buf, size_t len, mc_err **err);
} mc_store_plugin_ops;

/* ------------------------------------------------------------- auth */


/** Basic credentials; strings from host->strdup, released by the core
 *  (wiped first). */
typedef struct mc_credentials {
    char *user;
    char *password;
} mc_credentials;

/* OAuth flows a provider allows: MC_FLOW_* in mailconn.h. */

#define MC_URL_MAX 2048

/** A known failure and what to tell the user: `match` is a substring of an
 *  OAuth error (error, error_description) or of an SMTP reply. */
typedef struct mc_hint {
    const char *match;
    const char *hint;
} mc_hint;

/** What an OAuth provider tells the engine. Filled by oauth_profile() with
 *  the provider's defaults; the core then applies the config's common keys
 *  over them and copies what the profile points to (see mc_auth_ops). */
typedef struct mc_oauth_profile {
    size_t size;
    char   authorization_url[MC_URL_MAX];
    char   token_url[MC_URL_MAX];
    char   device_authorization_url[MC_URL_MAX];
    char   revocation_url[MC_URL_MAX];
    char   scope[1024];
    /** extra authorization parameters: "k=v" pairs, NULL-terminated, or
     *  NULL; the config's "params" are merged in by the core (a config "k"
     *  replaces the provider's "k=..."). Borrowed for the duration of the
     *  oauth_profile call only (2.1): the core copies the array and its
     *  strings, so they may be on the provider's stack or temporary. */
    const char *const *params;
    unsigned flows;              /* MC_FLOW_* allowed */
    unsigned default_headless;   /* MC_FLOW_* to use without a display */
    bool     rotates_refresh;    /* store the new refresh token on every use */
    unsigned refresh_lifetime_days; /* warn when near; 0 = none known */
    const mc_hint *hints;        /* NULL-terminated by match == NULL; copied by
                                    the core like params (2.1) */
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
    /** Keys the provider accepts in "auth" besides "provider", NULL-terminated.
     *  OAuth providers (oauth true, ABI 2.1): the engine owns the common
     *  OAuth keys (user, client_id, client_secret and its _file/_env/_command
     *  sources, client_auth, scope, params, redirect_uri, timeout_s, ca_file,
     *  mechanism, access_token_command, grant, authorization_url, token_url,
     *  device_authorization_url, revocation_url): the core accepts them and
     *  checks their rules itself; list only your extras. A 2.0 provider that
     *  lists them too still works (duplicates are harmless). */
    const char *const *keys;
    /** SMTP defaults, or NULL / 0 when none. */
    const char *smtp_host;
    uint16_t    smtp_port;
    const char *smtp_transport;
    unsigned    max_connections;
    bool        oauth;             /* tokens come from the OAuth engine */
    /** Check the provider's semantic rules; report each problem with
     *  host->cfg_error() (which prefixes the JSON path). For an OAuth
     *  provider it runs after the core's common rules (a line reported
     *  twice is kept once), so it checks only the provider's own. */
    void (*validate)(mc_host_ctx *hc, const mc_plugin_cfg *cfg);
    /** basic: user + password. @return 0, MC_ESECRET, MC_ECONFIG. */
    int (*credentials)(mc_host_ctx *hc, const mc_plugin_cfg *cfg, mc_credentials *out,
                       mc_err **err);
    /** OAuth providers: the profile, the provider's defaults (*out zeroed,
     *  its size set). The engine then applies the config's
     *  authorization_url, token_url, device_authorization_url,
     *  revocation_url and scope over them and merges "params" (2.1: a
     *  provider need not, and one that does gets the same result), and
     *  copies the profile's strings: params and hints may be borrowed for
     *  the duration of the call. @return 0, MC_ECONFIG. */
    int (*oauth_profile)(mc_host_ctx *hc, const mc_plugin_cfg *cfg, mc_oauth_profile *out,
                         mc_err **err);
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
    /* ABI 2.1 (MC_SIZE_HAS) */
    /** The route for the engine's HTTP (auth.proxy, else the server's
     *  proxy), or NULL: connect with host->tcp_connect and this route in
     *  mc_connect_opts.proxy; never an environment proxy. */
    const struct mc_proxy_route *proxy;
} mc_oauth_request;

/* The interactive flows take mc_oauth_authorize_options, the status is an
 * mc_token_status, the device flow an mc_oauth_device: the public structs
 * of mailconn.h, which the engine fills for the application directly. */

typedef struct mc_oauth_engine_ops {
    size_t size;
    /** A current access token: cached while further than refresh_margin_s
     *  from expiry, else refreshed (or, for client_credentials, fetched);
     *  single-flight across threads and processes (the token store's lock).
     *  *out from host->strdup, release with host->free_secret.
     *  @return 0, MC_EAUTH (no token stored: action AUTHORIZE; identity
     *  mismatch, invalid_grant: action REAUTHORIZE; outcome AUTH),
     *  MC_ECONFIG (invalid_client, invalid_scope: outcome CONFIG),
     *  MC_EOAUTH (endpoint down, slow, 5xx: outcome TRANSIENT). */
    int (*token)(mc_host_ctx *hc, const mc_oauth_request *req, char **out, mc_err **err);
    /** Forget `token` as the cached access token (the server refused it),
     *  so the next token() refreshes. */
    int (*invalidate)(mc_host_ctx *hc, const mc_oauth_request *req, const char *token,
                      mc_err **err);
    /** Run an interactive flow (loopback browser, paste, device) and store
     *  the tokens. */
    int (*authorize)(mc_host_ctx *hc, const mc_oauth_request *req,
                     const mc_oauth_authorize_options *o, mc_err **err);
    /** Store a refresh token obtained elsewhere (and redeem it once). */
    int (*import_refresh)(mc_host_ctx *hc, const mc_oauth_request *req,
                          const char *refresh_token, mc_err **err);
    /** Revoke at the provider when it has a revocation endpoint, then delete
     *  the stored tokens. */
    int (*revoke)(mc_host_ctx *hc, const mc_oauth_request *req, mc_err **err);
    /** What is stored (never a token). @return 0, MC_EFILE (store unsafe). */
    int (*status)(mc_host_ctx *hc, const mc_oauth_request *req, mc_token_status *out);
    /** Authorization code flow for a web application's own callback: a
     *  PKCE verifier and a state, kept by the token store as a pending
     *  authorization for 600 s; *url_out (host->strdup) is where to send
     *  the browser. req->redirect_uri is the application's callback.
     *  @return 0, MC_ECONFIG (no authorization endpoint), MC_ENOMEM. */
    int (*begin)(mc_host_ctx *hc, const mc_oauth_request *req, char **url_out, mc_err **err);
    /** The browser came back to callback_url (the whole URL): take the
     *  pending authorization its state names (once), redeem the code, store
     *  the tokens. A wrong, reused or expired state, or error=access_denied,
     *  stores nothing. @return 0, MC_EAUTH (access_denied: action
     *  GRANT_CONSENT), MC_EOAUTH (bad/expired state; the endpoint's
     *  refusal), MC_EINVAL (not a callback URL). */
    int (*finish)(mc_host_ctx *hc, const mc_oauth_request *req, const char *callback_url,
                  mc_err **err);
    /** Device flow, first half: ask the device authorization endpoint.
     *  *out filled (strings from host->strdup; release with
     *  mc_oauth_device_free semantics: host->free each). */
    int (*device_begin)(mc_host_ctx *hc, const mc_oauth_request *req, mc_oauth_device *out,
                        mc_err **err);
    /** Device flow, second half: poll (at dev->interval, slow_down obeyed)
     *  until the person approved, denied, dev expired or wait_s passed;
     *  store the tokens. @return 0, MC_EAUTH (denied), MC_ETIMEOUT. */
    int (*device_wait)(mc_host_ctx *hc, const mc_oauth_request *req,
                       const mc_oauth_device *dev, int wait_s, mc_err **err);
    /* ABI 2.1 (MC_SIZE_HAS) */
    /** Copy req->server's record between the built-in file store (under
     *  state_dir(hc)) and hc's token store, under both stores' locks;
     *  to_store: file -> hc's store, else the other way. A record for
     *  another identity is refused (MC_EAUTH). *copied: false when none is
     *  stored. @return 0, or the store's error. */
    int (*store_copy)(mc_host_ctx *hc, const mc_oauth_request *req, bool to_store,
                      bool *copied, mc_err **err);
} mc_oauth_engine_ops;

/* ------------------------------------------------------------- host API */

typedef struct mc_host_api {
    size_t   size;
    uint16_t abi_major, abi_minor;

    /* logging: to hc's sink at hc's level, redacted against every secret
     * registered in hc (hc NULL: nothing is logged) */
    void (*log)(mc_host_ctx *hc, mc_log_level level, const char *fmt, ...) MC__PRINTF(3, 4);
    /** Register a secret (length >= 4) in hc so none of hc's log lines shows it. */
    void (*redact)(mc_host_ctx *hc, const char *secret);

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
    int (*secret)(mc_host_ctx *hc, const mc_plugin_cfg *cfg, const char *name, char **out,
                  mc_err **err);

    /** TCP connect trying every resolved address, all by o->deadline_ms
     *  (1.1; 0: timeout_ms from the call); the socket is blocking with
     *  SO_RCVTIMEO/SO_SNDTIMEO = timeout_ms and TCP_NODELAY (poll it and
     *  use MSG_DONTWAIT to keep a deadline). @return 0, MC_ENET,
     *  MC_ETIMEOUT. */
    int (*tcp_connect)(mc_host_ctx *hc, const mc_connect_opts *o, int *fd_out, mc_err **err);

    /** Replace `path` atomically with data (temp file in the same folder,
     *  fsync, rename; a symlink replaced at its target) with file mode
     *  `mode` (< 0: keep the existing file's). @return 0, MC_EFILE. */
    int (*file_replace)(const char *path, const char *data, size_t len, int mode,
                        mc_err **err);
    /** Run a command with /bin/sh -c; first line of stdout in *out (release
     *  with free_secret); bounded by timeout_ms. @return 0, MC_ESECRET. */
    int (*run_command)(const char *command, int timeout_ms, char **out, mc_err **err);

    /* ABI 2.0 */
    /** hc's state folder (<state>: tokens/, pending/), borrowed. */
    const char *(*state_dir)(mc_host_ctx *hc);
    /** hc's token store: the application's (mc_context_options.token_store)
     *  or, later, a token-store plugin the config names; *store_out is the
     *  `store` argument of its ops. NULL: none, the engine uses its
     *  built-in file store under state_dir(hc). */
    const mc_token_store_ops *(*token_store)(mc_host_ctx *hc, void **store_out);

    /* ABI 2.1: the TLS layer of the bundled transports, for any transport
     * (verification of chain and host name, SNI for names, IP SANs for
     * literals, o->ca_file, o->tls_min, no SIGPIPE); a plugin never
     * re-implements certificate checks. */
    /** Wrap the connected fd in a verified TLS client stream, handshake
     *  done by o->deadline_ms. On success *out owns fd (its close closes
     *  fd); on failure the caller still owns fd. @return 0, MC_ETLS (stage
     *  tls), MC_ETIMEOUT, MC_ENET. */
    int (*tls_client)(mc_host_ctx *hc, int fd, const mc_connect_opts *o, mc_stream **out,
                      mc_err **err);
    /** STARTTLS: replace *s with a verified TLS stream over it (the new
     *  stream owns the old one and closes it with itself). Bytes already
     *  waiting from the server are an error (response injection). On
     *  failure *s is unchanged and the caller closes it. @return 0,
     *  MC_ETLS. */
    int (*tls_upgrade)(mc_host_ctx *hc, mc_stream **s, const mc_connect_opts *o, mc_err **err);
    /** 2.1: a boolean member, or dflt when absent or not a boolean (check
     *  the type in validate: cfg_has and a cfg_bool with each default). */
    bool (*cfg_bool)(const mc_plugin_cfg *cfg, const char *key, bool dflt);
} mc_host_api;

/* ------------------------------------------------------------- descriptor */

typedef struct mc_plugin_desc {
    uint16_t       abi_major, abi_minor;   /* first, never moved */
    mc_plugin_kind kind;
    const char    *name;                   /* [a-z0-9-], the file name says it too */
    const char    *version;
    const char    *summary;
    const void    *ops;                    /* mc_transport_ops, mc_auth_ops, ... */
    /* ABI 2.1 (read when abi_minor >= 1; NULL: none) */
    /** Called once per process load, before any op, with the host table
     *  the entry got. @return 0, or the plugin is refused (one line). */
    int  (*init)(const mc_host_api *host, mc_err **err);
    /** Called once, before the module is unloaded. */
    void (*fini)(void);
} mc_plugin_desc;

#define MC_PLUGIN_ENTRY_SYMBOL "mc_plugin_entry"
typedef const mc_plugin_desc *mc_plugin_entry_fn(const mc_host_api *host);
/* declared through the typedef, so a plugin with the wrong signature won't compile */
MC_PLUGIN_EXPORT mc_plugin_entry_fn mc_plugin_entry;

#ifdef __cplusplus
}
#endif
#endif
