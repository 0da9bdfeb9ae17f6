/* oauth/http: token endpoint requests through the libcurl easy API.
 * https only (http to loopback), no redirects, TLS verified, bounded
 * timeouts, bodies capped at 1 MB. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/x509_vfy.h>

#include "oauth.h"

#define SYSTEM_CA_PATH "/etc/ssl/certs"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* the module may be unloaded: give curl's own global state back */
__attribute__((destructor)) static void curl_fini(void)
{
    if (curl_init_rc == CURLE_OK)
        curl_global_cleanup();
}

typedef struct sink {
    mc__obuf *body;
    bool      too_big;
    bool      oom;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    if (s->body->len + n > MC__OAUTH_BODY_MAX) {
        s->too_big = true;
        return 0;                 /* aborts the transfer */
    }
    if (mc__obuf_put(s->body, ptr, n)) {
        s->oom = true;
        return 0;
    }
    return n;
}

void mc__oauth_http_free(mc__oauth_http *h)
{
    mc__obuf_free(&h->body);
    h->status = 0;
}

/* The certificate's chain ends at a CA this client does not know: the one
 * case auth.ca_file helps with (not a wrong host name, not an expired or
 * revoked certificate). */
static bool unknown_ca(long verify)
{
    switch (verify) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return true;
    default:
        return false;
    }
}

static int curl_failure(mc_err **err, CURLcode cc, long verify, const char *url,
                        const char *detail)
{
    const char *why = detail && *detail ? detail : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT,
                              unknown_ca(verify)
                                  ? "set auth.ca_file to the CA that signed the OAuth server's "
                                    "certificate"
                                  : NULL,
                              "TLS verification of %s failed: %s", url, why);
    case CURLE_SSL_CACERT_BADFILE:
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT,
                              "check that auth.ca_file names a readable PEM file of CA certificates",
                              "TLS verification of %s failed: %s", url, why);
    case CURLE_SSL_CERTPROBLEM:
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT, NULL,
                              "TLS verification of %s failed: %s", url, why);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "cannot request %s: %s", url, why);
    default:
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "cannot reach %s: %s", url, why);
    }
}

/* The engine's HTTP through the server's proxy (mc_oauth_request.proxy,
 * ABI 2.1): libcurl gets a socket the host tunnelled (host->tcp_connect
 * with the route) from CURLOPT_OPENSOCKETFUNCTION, already connected; the
 * proxy resolves the name (a CURLOPT_RESOLVE entry keeps libcurl from
 * resolving it here; its address is never used). Environment proxies are
 * off either way (CURLOPT_PROXY ""). */
typedef struct tunnel_ctx {
    mc_host_ctx *hc;
    const mc_oauth_request *req;
    char         host[256];
    uint16_t     port;
    int          timeout_ms;
    long long    deadline_ms;
    mc_err     **err;      /* the tunnel's failure goes here, instead of curl's */
    int          rc;       /* and its code */
} tunnel_ctx;

static curl_socket_t open_tunnel(void *payload, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)addr;
    tunnel_ctx *t = payload;
    if (purpose != CURLSOCKTYPE_IPCXN || t->rc)
        return CURL_SOCKET_BAD;
    mc_connect_opts o = {
        .size = sizeof(o),
        .host = t->host,
        .port = t->port,
        .timeout_ms = t->timeout_ms,
        .deadline_ms = t->deadline_ms,
        .proxy = t->req->proxy,
    };
    int fd = -1;
    int rc = H->tcp_connect(t->hc, &o, &fd, t->err);
    if (rc < 0) {
        t->rc = rc;
        return CURL_SOCKET_BAD;
    }
    return fd;
}

static int already_connected(void *payload, curl_socket_t fd, curlsocktype purpose)
{
    (void)payload;
    (void)fd;
    (void)purpose;
    return CURL_SOCKOPT_ALREADY_CONNECTED;
}

/* host and port of url for the tunnel. @return 0, -1 not parsable. */
static int url_target(const char *url, tunnel_ctx *t)
{
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        size_t n = strlen(h);
        const char *b = h;
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            b = h + 1;
            n -= 2;
        }
        long port = strtol(p, NULL, 10);
        if (n > 0 && n < sizeof(t->host) && port > 0 && port < 65536) {
            memcpy(t->host, b, n);
            t->host[n] = 0;
            t->port = (uint16_t)port;
            rc = 0;
        }
    }
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

int mc__oauth_post(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                   const char *form, mc__oauth_http *out, mc_err **err)
{
    return mc__oauth_post_until(hc, req, url, form, 0, out, err);
}

int mc__oauth_post_until(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                         const char *form, long long deadline_ms, mc__oauth_http *out,
                         mc_err **err)
{
    memset(out, 0, sizeof *out);
    int rc = mc__oauth_check_url(url, "OAuth endpoint", err);
    if (rc)
        return rc;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "libcurl cannot start: %s", curl_easy_strerror(curl_init_rc));
    CURL *c = curl_easy_init();
    if (!c)
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");

    mc__obuf body = MC__OBUF_INIT;
    char *user = NULL, *pass = NULL;
    struct curl_slist *headers = NULL, *resolve = NULL;
    tunnel_ctx tun = { .hc = hc, .req = req, .err = err };
    bool routed = MC_SIZE_HAS(req, mc_oauth_request, proxy) && req->proxy;
    const char *auth = req->client_auth;
    if (!auth)
        auth = req->client_secret ? "post" : "none";
    rc = form && *form ? mc__obuf_puts(&body, form) : mc__obuf_put(&body, "", 0);
    if (!rc && !strcmp(auth, "basic")) {
        /* RFC 6749 2.3.1: form-urlencode id and secret, then Basic */
        user = curl_easy_escape(c, req->client_id ? req->client_id : "", 0);
        pass = curl_easy_escape(c, req->client_secret ? req->client_secret : "", 0);
        if (!user || !pass)
            rc = MC_ENOMEM;
    } else if (!rc) {
        rc = mc__oauth_form_add(&body, "client_id", req->client_id);
        if (!rc && !strcmp(auth, "post"))
            rc = mc__oauth_form_add(&body, "client_secret", req->client_secret);
    }
    headers = curl_slist_append(headers, "Accept: application/json");
    if (headers)
        headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
    if (rc || !headers) {
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
        goto done;
    }

    int t = req->timeout_s > 0 ? req->timeout_s : MC__OAUTH_DEFAULT_TIMEOUT;
    long long t_ms = (long long)t * 1000;
    if (deadline_ms > 0) {
        /* the whole request ends by the caller's deadline too */
        long long left = deadline_ms - mc__oauth_mono_ms();
        if (left <= 0) {
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                                "no time left to request %s", url);
            goto done;
        }
        if (left < t_ms)
            t_ms = left;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    sink s = { &out->body, false, false };
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");   /* never http(s)_proxy from the environment */
    if (routed) {
        char entry[300];
        if (url_target(url, &tun) < 0) {
            rc = mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                                "cannot request %s: no host and port in it", url);
            goto done;
        }
        tun.timeout_ms = (int)t_ms;
        tun.deadline_ms = mc__oauth_mono_ms() + t_ms;
        snprintf(entry, sizeof(entry), strchr(tun.host, ':') ? "[%s]:%u:127.0.0.1"
                                                             : "%s:%u:127.0.0.1",
                 tun.host, (unsigned)tun.port);
        resolve = curl_slist_append(NULL, entry);
        if (!resolve) {
            rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
            goto done;
        }
        curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_tunnel);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &tun);
        curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, already_connected);
        curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, &tun);
        H->log(hc, MC_LOG_DEBUG, "oauth: %s through the server's proxy", url);
    }
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_file) {
        curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file);   /* replaces the system store */
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    } else {
        curl_easy_setopt(c, CURLOPT_CAPATH, SYSTEM_CA_PATH);
    }
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)t_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)t_ms);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)MC__OAUTH_BODY_MAX);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mailconn/" MC_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
    }
    H->log(hc, MC_LOG_DEBUG, "oauth: POST %s (client auth %s)", url, auth);
    CURLcode cc = curl_easy_perform(c);
    if (s.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                            "%s answered a body over %d bytes", url, MC__OAUTH_BODY_MAX);
    } else if (s.oom) {
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    } else if (cc != CURLE_OK && tun.rc) {
        rc = tun.rc;   /* the proxy's failure (in *err): stage proxy, naming it */
    } else if (cc != CURLE_OK) {
        long verify = 0;
        curl_easy_getinfo(c, CURLINFO_SSL_VERIFYRESULT, &verify);
        rc = curl_failure(err, cc, verify, url, errbuf);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        H->log(hc, MC_LOG_DEBUG, "oauth: %s answered HTTP %ld (%zu bytes)", url, out->status,
               out->body.len);
    }
done:
    if (rc)
        mc__oauth_http_free(out);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    if (user) {
        OPENSSL_cleanse(user, strlen(user));
        curl_free(user);
    }
    if (pass) {
        OPENSSL_cleanse(pass, strlen(pass));
        curl_free(pass);
    }
    curl_easy_cleanup(c);
    mc__obuf_free(&body);
    return rc;
}

int mc__oauth_token_request(mc_host_ctx *hc, const mc_oauth_request *req, const char *url,
                            const char *form, mc__oauth_tokens *out, char **oauth_error,
                            mc_err **err)
{
    return mc__oauth_token_request_until(hc, req, url, form, 0, out, oauth_error, err);
}

int mc__oauth_token_request_until(mc_host_ctx *hc, const mc_oauth_request *req,
                                  const char *url, const char *form, long long deadline_ms,
                                  mc__oauth_tokens *out, char **oauth_error, mc_err **err)
{
    mc__oauth_http h;
    memset(out, 0, sizeof *out);
    out->expires_in = -1;
    if (oauth_error)
        *oauth_error = NULL;
    int rc = mc__oauth_post_until(hc, req, url, form, deadline_ms, &h, err);
    if (rc)
        return rc;
    if (h.status >= 200 && h.status <= 299) {
        rc = mc__oauth_parse_tokens_from(url, h.body.data, h.body.len, out, err);
        if (!rc) {
            H->redact(hc, out->access_token);
            if (out->refresh_token)
                H->redact(hc, out->refresh_token);
            H->log(hc, MC_LOG_DEBUG, "oauth: received access token <redacted>%s, expires in %lld s",
                   out->refresh_token ? " and refresh token <redacted>" : "", out->expires_in);
        }
    } else {
        rc = mc__oauth_error_from(h.status, h.body.data, h.body.len, req, oauth_error, err);
    }
    mc__oauth_http_free(&h);
    return rc;
}
