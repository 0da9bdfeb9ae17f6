/* oauth/util: buffers, form encoding, PKCE, URLs, token response and error
 * parsing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json_object.h>
#include <json-c/json_tokener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "oauth.h"

const mc_host_api *mc__oauth_host;

/* ------------------------------------------------------------ buffers */

int mc__obuf_put(mc__obuf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > ((size_t)-1) / 2)
                return MC_ENOMEM;
            cap *= 2;
        }
        char *d = malloc(cap);
        if (!d)
            return MC_ENOMEM;
        if (b->data) {
            memcpy(d, b->data, b->len);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int mc__obuf_puts(mc__obuf *b, const char *s)
{
    return mc__obuf_put(b, s, strlen(s));
}

void mc__obuf_free(mc__obuf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

void mc__oauth_wipe_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* application/x-www-form-urlencoded: unreserved characters kept, the rest
 * %XX (curl_easy_escape does exactly that). */
static char *escape(const char *s)
{
    return curl_easy_escape(NULL, s, (int)strlen(s));
}

static void escape_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        curl_free(s);
    }
}

int mc__oauth_form_add(mc__obuf *b, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *k = escape(key), *v = escape(value);
    int rc = MC_ENOMEM;
    if (k && v) {
        rc = 0;
        if (b->len)
            rc = mc__obuf_puts(b, "&");
        if (!rc)
            rc = mc__obuf_puts(b, k);
        if (!rc)
            rc = mc__obuf_puts(b, "=");
        if (!rc)
            rc = mc__obuf_puts(b, v);
    }
    escape_free(k);
    escape_free(v);
    return rc;
}

/* ------------------------------------------------------------ PKCE */

void mc__oauth_b64url(const unsigned char *in, size_t len, char *out)
{
    size_t n = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = out[i];
        if (c == '=')
            break;
        out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[j] = '\0';
}

int mc__oauth_pkce_verifier(char out[MC__PKCE_VERIFIER_LEN + 1])
{
    unsigned char rnd[32];
    char tmp[48];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return MC_EOAUTH;
    mc__oauth_b64url(rnd, sizeof rnd, tmp);
    memcpy(out, tmp, MC__PKCE_VERIFIER_LEN + 1);
    OPENSSL_cleanse(rnd, sizeof rnd);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return 0;
}

int mc__oauth_pkce_challenge(const char *verifier, char out[44])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char tmp[48];
    if (EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != sizeof md)
        return MC_EOAUTH;
    mc__oauth_b64url(md, sizeof md, tmp);
    memcpy(out, tmp, 44);
    return 0;
}

int mc__oauth_random_state(char out[23])
{
    unsigned char rnd[16];
    char tmp[28];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return MC_EOAUTH;
    mc__oauth_b64url(rnd, sizeof rnd, tmp);
    memcpy(out, tmp, 23);
    return 0;
}

/* ------------------------------------------------------------ errors */

static bool err_is_new(mc_err **err, mc_err *before)
{
    return err && *err && *err != before;
}

static void set_hint(mc_err *e, const char *hint)
{
    if (!hint)
        return;
    char *h = H->strdup(hint);
    if (!h)
        return;
    H->free(e->hint);
    e->hint = h;
}

int mc__oauth_fail(mc_err **err, int code, mc_outcome outcome, const char *hint,
                   const char *fmt, ...)
{
    mc_err *before = err ? *err : NULL;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    H->error(err, code, outcome, MC_STAGE_OAUTH, "%s", n < 0 ? "OAuth failure" : msg);
    free(msg);
    if (err_is_new(err, before)) {
        (*err)->transient = outcome == MC_OUTCOME_TRANSIENT;
        set_hint(*err, hint);
    }
    return code;
}

long long mc__oauth_now(void)
{
    return (long long)time(NULL);
}

long long mc__oauth_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ URLs */

static bool loopback_host(const char *host)
{
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "[::1]") || !strcmp(host, "::1") ||
           !strcasecmp(host, "localhost");
}

int mc__oauth_check_url(const char *url, const char *what, mc_err **err)
{
    if (!url || !*url)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "no %s configured", what);
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (!u)
        return MC_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                            "%s is not a valid URL: %s", what, url);
    } else if (strcasecmp(scheme, "https") &&
               !(strcasecmp(scheme, "http") == 0 && loopback_host(host))) {
        rc = mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG,
                            "use an https:// URL (plain http is allowed only to 127.0.0.1, [::1] or localhost)",
                            "%s must use https: %s", what, url);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static int query_add(CURLU *u, const char *k, const char *v)
{
    if (!v)
        return 0;
    mc__obuf b = MC__OBUF_INIT;
    int rc = mc__oauth_form_add(&b, k, v);
    if (!rc && curl_url_set(u, CURLUPART_QUERY, b.data, CURLU_APPENDQUERY) != CURLUE_OK)
        rc = MC_ENOMEM;
    mc__obuf_free(&b);
    return rc;
}

int mc__oauth_authorize_url(const mc_oauth_request *req, const char *redirect_uri,
                            const char *state, const char *challenge, char **out,
                            mc_err **err)
{
    const mc_oauth_profile *p = req->profile;
    *out = NULL;
    int rc = mc__oauth_check_url(p->authorization_url, "authorization_url", err);
    if (rc)
        return rc;
    CURLU *u = curl_url();
    if (!u)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, p->authorization_url, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "authorization_url is not a valid URL: %s", p->authorization_url);
    }
    rc = query_add(u, "response_type", "code");
    if (!rc)
        rc = query_add(u, "client_id", req->client_id);
    if (!rc)
        rc = query_add(u, "redirect_uri", redirect_uri);
    if (!rc && p->scope[0])
        rc = query_add(u, "scope", p->scope);
    if (!rc)
        rc = query_add(u, "state", state);
    if (!rc && challenge) {
        rc = query_add(u, "code_challenge", challenge);
        if (!rc)
            rc = query_add(u, "code_challenge_method", "S256");
    }
    for (size_t i = 0; !rc && p->params && p->params[i]; i++) {
        const char *kv = p->params[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            continue;
        char *k = strndup(kv, (size_t)(eq - kv));
        rc = k ? query_add(u, k, eq + 1) : MC_ENOMEM;
        free(k);
    }
    char *s = NULL;
    if (!rc && curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
        rc = MC_ENOMEM;
    if (!rc) {
        *out = strdup(s);
        if (!*out)
            rc = MC_ENOMEM;
    }
    curl_free(s);
    curl_url_cleanup(u);
    if (rc)
        return H->error(err, rc, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "out of memory");
    return 0;
}

static char *unescape(const char *s, size_t n)
{
    /* '+' is a space in form-encoded queries */
    char *tmp = strndup(s, n);
    if (!tmp)
        return NULL;
    for (char *c = tmp; *c; c++)
        if (*c == '+')
            *c = ' ';
    int outlen = 0;
    char *u = curl_easy_unescape(NULL, tmp, (int)strlen(tmp), &outlen);
    char *r = NULL;
    if (u && (size_t)outlen == strlen(u))   /* no NUL inside */
        r = strdup(u);
    if (u) {
        OPENSSL_cleanse(u, (size_t)outlen);
        curl_free(u);
    }
    mc__oauth_wipe_free(tmp);
    return r;
}

int mc__oauth_parse_redirect(const char *url, mc__oauth_redirect *out)
{
    memset(out, 0, sizeof *out);
    if (!url)
        return MC_EINVAL;
    while (*url == ' ' || *url == '\t')
        url++;
    CURLU *u = curl_url();
    char *q = NULL;
    if (!u)
        return MC_ENOMEM;
    CURLUcode uc;
    if (url[0] == '/') {
        uc = curl_url_set(u, CURLUPART_URL, "http://127.0.0.1", 0);
        if (uc == CURLUE_OK)
            uc = curl_url_set(u, CURLUPART_URL, url, 0);   /* relative: resolved */
    } else {
        size_t n = strcspn(url, " \t\r\n");
        char *tmp = strndup(url, n);
        uc = tmp ? curl_url_set(u, CURLUPART_URL, tmp, 0) : CURLUE_OUT_OF_MEMORY;
        mc__oauth_wipe_free(tmp);
    }
    if (uc != CURLUE_OK || curl_url_get(u, CURLUPART_QUERY, &q, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return MC_EINVAL;
    }
    int rc = 0;
    for (const char *p = q; *p && !rc;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t kn = (size_t)(eq - p);
            char **slot = NULL;
            if (kn == 4 && !memcmp(p, "code", 4))
                slot = &out->code;
            else if (kn == 5 && !memcmp(p, "state", 5))
                slot = &out->state;
            else if (kn == 5 && !memcmp(p, "error", 5))
                slot = &out->error;
            else if (kn == 17 && !memcmp(p, "error_description", 17))
                slot = &out->error_description;
            if (slot && !*slot) {
                *slot = unescape(eq + 1, n - kn - 1);
                if (!*slot)
                    rc = MC_EINVAL;
            }
        }
        p += n;
        if (*p == '&')
            p++;
    }
    OPENSSL_cleanse(q, strlen(q));
    curl_free(q);
    curl_url_cleanup(u);
    if (rc)
        mc__oauth_redirect_clear(out);
    return rc;
}

void mc__oauth_redirect_clear(mc__oauth_redirect *r)
{
    mc__oauth_wipe_free(r->code);
    free(r->state);
    free(r->error);
    free(r->error_description);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ responses */

static json_object *parse_json(const char *body, size_t len)
{
    if (!body || len == 0 || len > MC__OAUTH_BODY_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = (size_t)json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || je != json_tokener_success) {
        json_object_put(o);
        return NULL;
    }
    for (; used < len; used++) {         /* trailing white space only */
        char c = body[used];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_object_put(o);
            return NULL;
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* wipe the text of a string member (json-c frees without wiping) */
static void wipe_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
        char *s = (char *)json_object_get_string(v);
        OPENSSL_cleanse(s, (size_t)json_object_get_string_len(v));
    }
}

static void json_put_wiped(json_object *o)
{
    if (!o)
        return;
    static const char *const keys[] = { "access_token", "refresh_token", "id_token",
                                        "device_code", NULL };
    for (size_t i = 0; keys[i]; i++)
        wipe_member(o, keys[i]);
    json_object_put(o);
}

/* member of type t: 1 found, 0 absent (or null), -1 wrong type */
static int get_typed(json_object *o, const char *key, json_type t, json_object **v)
{
    *v = NULL;
    if (!json_object_object_get_ex(o, key, v) || !*v || json_object_is_type(*v, json_type_null))
        return 0;
    return json_object_is_type(*v, t) ? 1 : -1;
}

bool mc__oauth_access_token_ok(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'))
            break;
        i++;
    }
    if (i == 0)
        return false;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

bool mc__oauth_refresh_token_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static void show_value(json_object *v, char shown[48])
{
    snprintf(shown, 48, "%s", json_object_get_string(v));
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
}

/* "3600", "-5", "3600.5": an optional '-', digits, an optional fraction */
static bool numeric_text(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && s[i] == '-')
        i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < len && s[i] == '.') {
        i++;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    }
    return digits > 0 && i == len;
}

int mc__oauth_json_seconds(json_object *o, const char *key, long long lo, long long hi,
                           long long *out, char shown[48])
{
    json_object *v = NULL;
    if (shown)
        shown[0] = '\0';
    if (!json_object_object_get_ex(o, key, &v) || !v || json_object_is_type(v, json_type_null))
        return 0;
    if (shown)
        show_value(v, shown);
    if (json_object_is_type(v, json_type_int)) {
        /* json-c saturates what int64 cannot hold */
        int64_t n = json_object_get_int64(v);
        if (n < 0)
            return -2;
        *out = n < lo ? lo : n > hi ? hi : (long long)n;
        return 1;
    }
    double d;
    if (json_object_is_type(v, json_type_double)) {
        d = json_object_get_double(v);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (!numeric_text(s, len))
            return -1;
        d = strtod(s, NULL);          /* ERANGE: +-HUGE_VAL, clamped below */
    } else {
        return -1;
    }
    if (d != d)                       /* NaN */
        return -1;
    if (d < 0)
        return -2;
    /* compared as doubles, so the conversion below is always in range */
    *out = d < (double)lo ? lo : d > (double)hi ? hi : (long long)d;
    return 1;
}

void mc__oauth_tokens_clear(mc__oauth_tokens *t)
{
    mc__oauth_wipe_free(t->access_token);
    mc__oauth_wipe_free(t->refresh_token);
    free(t->scope);
    memset(t, 0, sizeof *t);
    t->expires_in = -1;
}

static int bad_response(mc_err **err, const char *url, const char *fmt, ...)
    MC__PRINTF(3, 4);
static int bad_response(mc_err **err, const char *url, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                          "token endpoint%s%s answered %s", url ? " " : "", url ? url : "", what);
}

int mc__oauth_parse_tokens(const char *body, size_t len, mc__oauth_tokens *out,
                           mc_err **err)
{
    return mc__oauth_parse_tokens_from(NULL, body, len, out, err);
}

int mc__oauth_parse_tokens_from(const char *url, const char *body, size_t len,
                                mc__oauth_tokens *out, mc_err **err)
{
    memset(out, 0, sizeof *out);
    out->expires_in = -1;
    json_object *o = parse_json(body, len);
    if (!o)
        return bad_response(err, url, "a body that is not a JSON object");
    json_object *v = NULL;
    int rc = 0;
    int r = get_typed(o, "access_token", json_type_string, &v);
    if (r <= 0 || json_object_get_string_len(v) == 0) {
        rc = bad_response(err, url, "%s", r < 0 ? "an access_token that is not a string"
                                                : "no access_token");
        goto done;
    }
    /* RFC 6750 2.1: the token goes into SASL framing and a file as it is */
    if (!mc__oauth_access_token_ok(json_object_get_string(v),
                                   (size_t)json_object_get_string_len(v))) {
        rc = bad_response(err, url, "an access_token with characters outside RFC 6750's "
                                    "b64token set (refused, never used)");
        goto done;
    }
    out->access_token = strdup(json_object_get_string(v));
    r = get_typed(o, "token_type", json_type_string, &v);
    if (r < 0) {
        rc = bad_response(err, url, "a token_type that is not a string");
        goto done;
    }
    if (r > 0 && strcasecmp(json_object_get_string(v), "bearer")) {
        /* the server's text in a one-line message: no control characters */
        char type[33];
        snprintf(type, sizeof type, "%s", json_object_get_string(v));
        for (char *c = type; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
        rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                            "token endpoint%s%s issued a \"%s\" token, not a Bearer token",
                            url ? " " : "", url ? url : "", type);
        goto done;
    }
    char shown[48];
    long long secs = 0;
    r = mc__oauth_json_seconds(o, "expires_in", 1, MC__OAUTH_EXPIRES_MAX, &secs, shown);
    if (r == -1) {
        rc = bad_response(err, url, "an expires_in that is not a number (%s)", shown);
        goto done;
    }
    if (r == -2) {
        rc = bad_response(err, url, "a negative expires_in (%s)", shown);
        goto done;
    }
    out->expires_in = r > 0 ? secs : -1;
    r = get_typed(o, "refresh_token", json_type_string, &v);
    if (r < 0) {
        rc = bad_response(err, url, "a refresh_token that is not a string");
        goto done;
    }
    if (r > 0 && json_object_get_string_len(v) > 0) {
        if (!mc__oauth_refresh_token_ok(json_object_get_string(v),
                                        (size_t)json_object_get_string_len(v))) {
            rc = bad_response(err, url, "a refresh_token with a control character, space or "
                                        "NUL (refused, never stored)");
            goto done;
        }
        out->refresh_token = strdup(json_object_get_string(v));
        if (!out->refresh_token) {
            rc = H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "out of memory");
            goto done;
        }
    }
    r = get_typed(o, "scope", json_type_string, &v);
    if (r < 0) {
        rc = bad_response(err, url, "a scope that is not a string");
        goto done;
    }
    if (r > 0)
        out->scope = strdup(json_object_get_string(v));
    if (!out->access_token || (r > 0 && !out->scope))
        rc = H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "out of memory");
done:
    json_put_wiped(o);
    if (rc)
        mc__oauth_tokens_clear(out);
    return rc;
}

/* the profile's hint whose match occurs in text */
static const char *profile_hint(const mc_oauth_profile *p, const char *text)
{
    if (!p || !p->hints || !text)
        return NULL;
    for (const mc_hint *h = p->hints; h->match; h++)
        if (*h->match && strstr(text, h->match))
            return h->hint;
    return NULL;
}

int mc__oauth_error_from(long status, const char *body, size_t len,
                         const mc_oauth_request *req, char **oauth_error, mc_err **err)
{
    if (oauth_error)
        *oauth_error = NULL;
    json_object *o = parse_json(body, len);
    json_object *v = NULL;
    const char *error = NULL, *desc = NULL;
    if (o && get_typed(o, "error", json_type_string, &v) > 0)
        error = json_object_get_string(v);
    if (o && get_typed(o, "error_description", json_type_string, &v) > 0)
        desc = json_object_get_string(v);
    mc__obuf text = MC__OBUF_INIT;
    int rc = 0;
    if (error) {
        rc |= mc__obuf_puts(&text, error);
        if (desc) {
            rc |= mc__obuf_puts(&text, " ");
            rc |= mc__obuf_puts(&text, desc);
        }
        /* Microsoft: error_codes [700082] -> "AADSTS700082" */
        if (o && get_typed(o, "error_codes", json_type_array, &v) > 0) {
            size_t n = json_object_array_length(v);
            for (size_t i = 0; i < n && i < 8; i++) {
                json_object *c = json_object_array_get_idx(v, i);
                if (c && json_object_is_type(c, json_type_int)) {
                    char num[40];
                    snprintf(num, sizeof num, " AADSTS%lld", (long long)json_object_get_int64(c));
                    rc |= mc__obuf_puts(&text, num);
                }
            }
        }
    }
    const char *server = req && req->server ? req->server : "?";
    const mc_oauth_profile *prof = req ? req->profile : NULL;
    const char *phint = rc ? NULL : profile_hint(prof, text.data);
    char shown[512];
    snprintf(shown, sizeof shown, "%s%s%s", error ? error : "", desc ? ": " : "",
             desc ? desc : "");
    /* the description is the server's text: keep it to one line */
    for (char *c = shown; *c; c++)
        if (*c == '\r' || *c == '\n')
            *c = ' ';
    int code;
    if (oauth_error && error &&
        (!strcmp(error, "authorization_pending") || !strcmp(error, "slow_down"))) {
        /* device polling: not a failure, err untouched */
        *oauth_error = strdup(error);
        mc__obuf_free(&text);
        json_put_wiped(o);
        return *oauth_error ? MC_ETEMP : MC_ENOMEM;
    }
    if (status >= 500 && status <= 599) {
        code = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, phint,
                              "token endpoint for server %s answered HTTP %ld%s%s", server,
                              status, error ? ": " : "", error ? shown : "");
    } else if (!error) {
        code = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, phint,
                              "token endpoint for server %s answered HTTP %ld without an OAuth error",
                              server, status);
    } else if (!strcmp(error, "invalid_grant")) {
        char hint[1024];
        snprintf(hint, sizeof hint, "%s%sauthorize server %s again",
                 phint ? phint : "", phint ? "; " : "", server);
        mc_err *before = err ? *err : NULL;
        code = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, hint,
                              "OAuth server for server %s refused the grant (%s)", server, shown);
        if (err && *err && *err != before)
            (*err)->action = MC_ACTION_REAUTHORIZE;
    } else if (!strcmp(error, "invalid_client") || !strcmp(error, "invalid_scope") ||
               !strcmp(error, "unauthorized_client") ||
               !strcmp(error, "unsupported_grant_type") || !strcmp(error, "invalid_request")) {
        const char *h = phint;
        if (!h && !strcmp(error, "invalid_client"))
            h = "check auth.client_id, the client secret and auth.client_auth";
        else if (!h && !strcmp(error, "invalid_scope"))
            h = "check auth.scope and the scopes the application may request";
        code = mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, h,
                              "OAuth server for server %s refused the client (%s)", server, shown);
    } else if (!strcmp(error, "access_denied")) {
        mc_err *before = err ? *err : NULL;
        code = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, phint,
                              "authorization for server %s was denied (%s)", server, shown);
        if (err && *err && *err != before)
            (*err)->action = MC_ACTION_GRANT_CONSENT;
    } else if (!strcmp(error, "expired_token")) {
        code = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, phint,
                              "authorization for server %s expired before it was approved (%s)",
                              server, shown);
    } else if (!strcmp(error, "temporarily_unavailable") || !strcmp(error, "server_error")) {
        code = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, phint,
                              "OAuth server for server %s is unavailable (%s)", server, shown);
    } else {
        code = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT, phint,
                              "OAuth server for server %s refused the request (%s)", server, shown);
    }
    if (oauth_error && error)
        *oauth_error = strdup(error);
    mc__obuf_free(&text);
    json_put_wiped(o);
    return code;
}
