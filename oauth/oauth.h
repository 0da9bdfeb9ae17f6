/* oauth: internals of the OAuth engine module (engine-oauth.so).
 *
 * The engine reaches the core only through the host table handed to
 * mc_plugin_entry (mc__oauth_host). Everything here has hidden visibility;
 * the module exports mc_plugin_entry alone. */
#ifndef MC_OAUTH_H
#define MC_OAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "mailconn/mailconn.h"
#include "mailconn/plugin.h"

/** The host table: set by mc_plugin_entry (or a unit test's stand-in). */
extern const mc_host_api *mc__oauth_host;
#define H mc__oauth_host

#define MC__OAUTH_BODY_MAX (1024 * 1024)   /* response bodies are capped here */
#define MC__OAUTH_DEFAULT_TIMEOUT 30
#define MC__OAUTH_DEFAULT_MARGIN 600
#define MC__OAUTH_DEFAULT_EXPIRES 3600     /* a token response without expires_in */
#define MC__OAUTH_EXPIRES_MAX (365LL * 86400)   /* expires_in is clamped to 1 s .. 1 year */
#define MC__OAUTH_INTERVAL_MAX 60          /* device polling: every 1 .. 60 s */

/* ------------------------------------------------------------ buffers */

/** A growable NUL-terminated buffer; wiped on growth and release. */
typedef struct mc__obuf {
    char  *data;
    size_t len;
    size_t cap;
} mc__obuf;

#define MC__OBUF_INIT { NULL, 0, 0 }

int  mc__obuf_put(mc__obuf *b, const void *p, size_t n);     /* 0, MC_ENOMEM */
int  mc__obuf_puts(mc__obuf *b, const char *s);
void mc__obuf_free(mc__obuf *b);                             /* wipes */

/** Append "key=value" form-urlencoded (with '&' between pairs).
 *  @return 0, MC_ENOMEM. */
int mc__oauth_form_add(mc__obuf *b, const char *key, const char *value);

/** Wipe and free a plain malloc'd string; NULL is fine. */
void mc__oauth_wipe_free(char *s);

/* ------------------------------------------------------------ PKCE, state */

#define MC__PKCE_VERIFIER_LEN 43
/** A random code verifier: 43 characters of base64url (32 random bytes). */
int mc__oauth_pkce_verifier(char out[MC__PKCE_VERIFIER_LEN + 1]);
/** S256 challenge: base64url(SHA-256(verifier)) without padding (43 chars). */
int mc__oauth_pkce_challenge(const char *verifier, char out[44]);
/** A random state value (base64url of 16 bytes: 22 chars). */
int mc__oauth_random_state(char out[23]);
/** base64url without padding of len bytes into out (room for 4*len/3+4). */
void mc__oauth_b64url(const unsigned char *in, size_t len, char *out);

/* ------------------------------------------------------------ URLs */

/** The authorization URL: profile authorization_url plus response_type,
 *  client_id, redirect_uri, scope, state, code_challenge (S256) and the
 *  profile's params. *out malloc'd. @return 0, MC_ECONFIG, MC_ENOMEM. */
int mc__oauth_authorize_url(const mc_oauth_request *req, const char *redirect_uri,
                            const char *state, const char *challenge, char **out,
                            mc_err **err);

/** Whether url may be used for a token request: https, or http to a
 *  loopback host. @return 0, MC_ECONFIG (stage oauth). */
int mc__oauth_check_url(const char *url, const char *what, mc_err **err);

/** Parse the query of a redirect URL (full URL, or a request target
 *  "/path?query"). Values are unescaped, malloc'd; absent ones NULL. */
typedef struct mc__oauth_redirect {
    char *code;
    char *state;
    char *error;
    char *error_description;
} mc__oauth_redirect;
int  mc__oauth_parse_redirect(const char *url, mc__oauth_redirect *out);   /* 0, MC_EINVAL */
void mc__oauth_redirect_clear(mc__oauth_redirect *r);

/* ------------------------------------------------------------ responses */

/** An access token of RFC 6750's b64token set: 1*( ALPHA / DIGIT / "-" /
 *  "." / "_" / "~" / "+" / "/" ) *"=" (len bytes, no NUL). */
bool mc__oauth_access_token_ok(const char *s, size_t len);
/** A refresh token of printable ASCII without SP (%x21-7E; RFC 6749 A.17
 *  less the space): no control character, NUL, SP or 8-bit byte. */
bool mc__oauth_refresh_token_ok(const char *s, size_t len);

/** A count of seconds in JSON member key: a number or a numeric string
 *  ("3600"), clamped to lo..hi (a huge value is the longest the caller
 *  allows). @return 1 (*out set), 0 absent or null, -1 not a number, -2
 *  negative; shown (when non-NULL, size 48) gets the value as sent,
 *  control characters as '?', for a message. */
struct json_object;
int mc__oauth_json_seconds(struct json_object *o, const char *key, long long lo, long long hi,
                           long long *out, char shown[48]);

typedef struct mc__oauth_tokens {
    char     *access_token;    /* malloc'd, wiped on clear */
    char     *refresh_token;   /* NULL when none was issued */
    char     *scope;
    long long expires_in;      /* seconds; -1 when absent */
} mc__oauth_tokens;

void mc__oauth_tokens_clear(mc__oauth_tokens *t);

/** Parse a successful token response (strict JSON).
 *  @return 0, MC_EOAUTH (outcome TRANSIENT: unparsable, missing
 *  access_token, wrong types, a token_type other than Bearer). */
int mc__oauth_parse_tokens(const char *body, size_t len, mc__oauth_tokens *out,
                           mc_err **err);
/** The same, naming the endpoint url in every message. Also refused: an
 *  access token outside b64token, a refresh token with a control
 *  character, SP or NUL, a negative expires_in; expires_in is clamped to
 *  1 s .. 1 year (numeric strings accepted). */
int mc__oauth_parse_tokens_from(const char *url, const char *body, size_t len,
                                mc__oauth_tokens *out, mc_err **err);

/** Turn an error answer (HTTP status + body) into an mc_err:
 *  invalid_grant -> MC_EAUTH (AUTH, hint to run `mailconn auth`),
 *  invalid_client / invalid_scope / unauthorized_client -> MC_ECONFIG,
 *  access_denied -> MC_EAUTH, 5xx or unparsable -> MC_EOAUTH TRANSIENT.
 *  Profile hints matched against "error error_description AADSTSn...".
 *  If the body carries an RFC 6749 error, *oauth_error (when non-NULL)
 *  receives a malloc'd copy of it; with oauth_error non-NULL,
 *  authorization_pending and slow_down leave err untouched and return
 *  MC_ETEMP (device polling). @return the code. */
int mc__oauth_error_from(long status, const char *body, size_t len,
                         const mc_oauth_request *req, char **oauth_error, mc_err **err);

/** Fill *err and, when the error was created by this call, set its hint.
 *  @return code. */
int mc__oauth_fail(mc_err **err, int code, mc_outcome outcome, const char *hint,
                   const char *fmt, ...) MC__PRINTF(5, 6);

/* ------------------------------------------------------------ one op's context */

/** The built-in file store (its ops' `store` argument): <state>/tokens/,
 *  <state>/pending/. The lock it holds lives here, for the op's duration. */
typedef struct mc__oauth_file {
    const char  *state_dir;
    mc_host_ctx *hc;
    void        *mutex;        /* held: the in-process mutex of <server>.lock */
    int          fd;           /* held: the flock'd <server>.lock, or -1 */
} mc__oauth_file;

extern const mc_token_store_ops mc__oauth_file_store;

/** What one engine op works with: the context handle, the token store (the
 *  application's through host->token_store, else the built-in file store
 *  under req->state_dir or host->state_dir) and the record's identity.
 *  Lives on the op's stack: the engine keeps no per-context state. */
typedef struct mc__oauth_op {
    mc_host_ctx              *hc;
    const mc_token_store_ops *store;
    void                     *store_arg;
    bool                      builtin;     /* store is the file store */
    mc__oauth_file            file;
    mc_token_identity         id;
    bool                      locked;
} mc__oauth_op;

/** Fill op for req. @return 0, MC_EPLUGIN (an application's store without
 *  the ops it must have). */
int mc__oauth_op_init(mc__oauth_op *op, mc_host_ctx *hc, const mc_oauth_request *req,
                      mc_err **err);
/** The same for the built-in file store under req's (or hc's) state folder,
 *  whatever hc's token store is (mc_token_store_copy). */
void mc__oauth_op_init_file(mc__oauth_op *op, mc_host_ctx *hc, const mc_oauth_request *req);

/* ------------------------------------------------------------ HTTP */

typedef struct mc__oauth_http {
    long     status;           /* HTTP status */
    mc__obuf body;             /* response body (wiped on free) */
} mc__oauth_http;

/** POST form (application/x-www-form-urlencoded) to url. Client
 *  authentication per req->client_auth is added here: "post" puts
 *  client_id + client_secret in the form, "basic" sends HTTP Basic with
 *  form-urlencoded id:secret, "none" puts client_id in the form.
 *  @return 0 with *out filled (any status), MC_ECONFIG (bad URL),
 *  MC_EOAUTH (network, timeout, TLS, body over 1 MB). */
int mc__oauth_post(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                   const char *form, mc__oauth_http *out, mc_err **err);
void mc__oauth_http_free(mc__oauth_http *h);
/** The same, ending by deadline_ms (mc__oauth_mono_ms; 0 = none) as well
 *  as within timeout_s. */
int mc__oauth_post_until(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                         const char *form, long long deadline_ms, mc__oauth_http *out,
                         mc_err **err);

/** POST a token request and parse the answer (2xx: tokens; else the error
 *  mapping of mc__oauth_error_from). oauth_error as there. */
int mc__oauth_token_request(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                            const char *form, mc__oauth_tokens *out, char **oauth_error,
                            mc_err **err);
int mc__oauth_token_request_until(mc_host_ctx *hc, const mc_oauth_request *req,
                                  const char *url, const char *form, long long deadline_ms,
                                  mc__oauth_tokens *out, char **oauth_error, mc_err **err);

/* ------------------------------------------------------------ token store */

typedef struct mc__oauth_store {
    char     *provider, *client_id, *user, *token_url;   /* identity */
    char     *access_token;
    long long expires_at;
    long long access_issued_at;   /* when the access token came; 0 = unknown */
    char     *refresh_token;
    long long refresh_issued_at;
    long long refresh_used_at;
    char     *scope;
} mc__oauth_store;

void mc__oauth_store_clear(mc__oauth_store *s);
/** Paths <state>/tokens/<server><ext>; malloc'd. @return 0, MC_ECONFIG (no
 *  state folder), MC_EINVAL (a server name that cannot name a file). */
int  mc__oauth_store_path(const char *state_dir, const char *server, const char *ext,
                          char **out, mc_err **err);
/** Load the record through op's store. *found false when there is none.
 *  @return 0, MC_EFILE (unreadable or corrupt; for the file store, also not
 *  safely the store's own: <state> another user's or writable by group or
 *  others, tokens/ another user's or not 0700, the file a symbolic link,
 *  not a regular file or another user's: outcome CONFIG, the path named),
 *  or the application store's error. */
int  mc__oauth_store_load(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_store *out,
                          bool *found, mc_err **err);
/** Serialise (the identity from req) and save through op's store; the file
 *  store replaces the file atomically, 0600: an O_EXCL temp file in
 *  tokens/, renamed over the name (which must be a regular file of this
 *  user's, or nothing); creates <state> and <state>/tokens 0700, checked as
 *  for load. @return 0, MC_EFILE. */
int  mc__oauth_store_save(mc__oauth_op *op, const mc_oauth_request *req,
                          const mc__oauth_store *s, mc_err **err);
/** Parse / serialise a token record (exposed for the unit test). */
int  mc__oauth_store_parse(const char *text, size_t len, mc__oauth_store *out);
char *mc__oauth_store_serialise(const mc_oauth_request *req, const mc__oauth_store *s);
bool mc__oauth_store_identity_matches(const mc_oauth_request *req, const mc__oauth_store *s);
/** The access token is good at now for longer than the refresh margin:
 *  min(refresh_margin_s, half the token's lifetime when known). */
bool mc__oauth_store_usable(const mc_oauth_request *req, const mc__oauth_store *s,
                            long long now);
/** Remove the record (the file store: the token and lock files).
 *  @return 0, MC_EFILE. */
int  mc__oauth_store_delete(mc__oauth_op *op, const mc_oauth_request *req, mc_err **err);

/** The per-server single-flight lock through op's store (the file store:
 *  an in-process mutex plus flock on <server>.lock), waited for at most
 *  3 * timeout_s + 10 s. @return 0, MC_ETIMEOUT, MC_EFILE. */
int  mc__oauth_lock(mc__oauth_op *op, const mc_oauth_request *req, mc_err **err);
void mc__oauth_unlock(mc__oauth_op *op);

/** Pending authorizations (mc_oauth_begin / finish) through op's store.
 *  take: none, taken already or expired: 0 with *data NULL. */
#define MC__OAUTH_PENDING_TTL 600
int mc__oauth_pending_put(mc__oauth_op *op, const char *state, const char *data, size_t len,
                          long long expires, mc_err **err);
int mc__oauth_pending_take(mc__oauth_op *op, const char *state, char **data, size_t *len,
                           mc_err **err);

/** Seconds since the epoch. */
long long mc__oauth_now(void);
/** Milliseconds of CLOCK_MONOTONIC (deadlines). */
long long mc__oauth_mono_ms(void);

/** Store tokens from a fresh grant (authorize, import): keeps the identity,
 *  refresh_issued_at = now when a refresh token came. Registers the tokens
 *  with the redaction list. @return 0, MC_EFILE. */
int mc__oauth_store_tokens(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_store *s,
                           const mc__oauth_tokens *t, bool refreshed, mc_err **err);

/* ------------------------------------------------------------ flows */

/** A device authorization response (RFC 8628 3.2). */
typedef struct mc__oauth_device {
    char     *device_code;     /* wiped on clear */
    char     *user_code;
    char     *verification_uri;            /* or Google's verification_url */
    char     *verification_uri_complete;   /* NULL when absent */
    char     *message;                     /* Microsoft; NULL when absent */
    long long expires_in;      /* 1 s .. 1 year; 600 when absent */
    long long interval;        /* 1 .. 60 s; 5 when absent */
} mc__oauth_device;

/** Parse a 2xx device authorization body (strict JSON). Numbers may come
 *  as numeric strings; huge ones are clamped; a negative or non-numeric
 *  expires_in or interval, a string with a NUL, or a missing device_code,
 *  user_code or verification_uri is MC_EOAUTH (TRANSIENT) naming url. */
int  mc__oauth_device_parse(const char *url, const char *body, size_t len,
                            mc__oauth_device *d, mc_err **err);
void mc__oauth_device_clear(mc__oauth_device *d);

/** Device flow, first half: the device authorization request (d filled,
 *  the device code registered for redaction). */
int mc__oauth_device_start(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_device *d,
                           mc_err **err);
/** Device flow, second half: poll the token endpoint every interval s
 *  (slow_down obeyed) for at most bound_s, then store the tokens.
 *  @return 0, MC_EAUTH (denied), timeout_code (not approved in time). */
int mc__oauth_device_poll(mc__oauth_op *op, const mc_oauth_request *req,
                          const char *device_code, long long interval, long long bound_s,
                          int timeout_code, mc_err **err);

int mc__oauth_authorize(mc__oauth_op *op, const mc_oauth_request *req,
                        const mc_oauth_authorize_options *o, mc_err **err);
/** mc_oauth_begin / mc_oauth_finish (oauth/flows.c). */
int mc__oauth_begin(mc__oauth_op *op, const mc_oauth_request *req, char **url_out,
                    mc_err **err);
int mc__oauth_finish(mc__oauth_op *op, const mc_oauth_request *req, const char *callback_url,
                     mc_err **err);

#endif
