/* oauth/flows: the interactive grants of `mailconn auth`: authorization code
 * with PKCE over a loopback redirect (RFC 8252), the paste mode, and the
 * device authorization grant (RFC 8628). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>
#include <openssl/crypto.h>

#include "oauth.h"

#define GMAIL_SCOPE "https://mail.google.com/"

extern char **environ;

#define REQUEST_MAX 8192

static long long mono_ms(void)
{
    return mc__oauth_mono_ms();
}

static void say(mc_host_ctx *hc, const mc_oauth_authorize_options *o, const char *fmt, ...)
    MC__PRINTF(3, 4);
static void say(mc_host_ctx *hc, const mc_oauth_authorize_options *o, const char *fmt, ...)
{
    char line[MC_URL_MAX + 4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o && o->say)
        o->say(line, o->payload);
    else
        H->log(hc, MC_LOG_WARN, "%s", line);
}

static int wait_s(const mc_oauth_authorize_options *o)
{
    return o->wait_s > 0 ? o->wait_s : 300;
}

/* Store the tokens of a fresh grant, under the lock. */
static int store_fresh(mc__oauth_op *op, const mc_oauth_request *req, const mc__oauth_tokens *t,
                       mc_err **err)
{
    int rc = mc__oauth_lock(op, req, err);
    if (!rc) {
        mc__oauth_store s;
        memset(&s, 0, sizeof s);
        rc = mc__oauth_store_tokens(op, req, &s, t, false, err);
        mc__oauth_store_clear(&s);
        mc__oauth_unlock(op);
    }
    return rc;
}

/* Redeem an authorization code and store the tokens. */
static int redeem(mc__oauth_op *op, const mc_oauth_request *req, const char *code,
                  const char *redirect_uri, const char *verifier, mc_err **err)
{
    mc__obuf form = MC__OBUF_INIT;
    int rc = mc__oauth_form_add(&form, "grant_type", "authorization_code");
    if (!rc)
        rc = mc__oauth_form_add(&form, "code", code);
    if (!rc)
        rc = mc__oauth_form_add(&form, "redirect_uri", redirect_uri);
    if (!rc)
        rc = mc__oauth_form_add(&form, "code_verifier", verifier);
    if (rc) {
        mc__obuf_free(&form);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    mc__oauth_tokens t;
    rc = mc__oauth_token_request(op->hc, req, req->profile->token_url, form.data, &t, NULL, err);
    mc__obuf_free(&form);
    if (rc)
        return rc;
    rc = store_fresh(op, req, &t, err);
    if (!rc && !t.refresh_token)
        H->log(op->hc, MC_LOG_WARN,
               "server %s: the OAuth server issued no refresh token: sending works until the "
               "access token expires (Google needs access_type=offline and prompt=consent; "
               "Microsoft needs the offline_access scope)", req->server);
    mc__oauth_tokens_clear(&t);
    return rc;
}

/* The redirect's state and code (or error): shared by loopback and paste. */
static int check_redirect(const mc_oauth_request *req, const mc__oauth_redirect *r,
                          const char *state, mc_err **err)
{
    if (r->error) {
        int rc;
        mc_err *before = err ? *err : NULL;
        if (!strcmp(r->error, "access_denied")) {
            rc = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, NULL,
                                "authorization for server %s was denied (%s%s%s)", req->server,
                                r->error, r->error_description ? ": " : "",
                                r->error_description ? r->error_description : "");
            if (err && *err && *err != before)
                (*err)->action = MC_ACTION_GRANT_CONSENT;
        } else
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT, NULL,
                                "authorization for server %s failed (%s%s%s)", req->server,
                                r->error, r->error_description ? ": " : "",
                                r->error_description ? r->error_description : "");
        return rc;
    }
    if (!r->state || strcmp(r->state, state))
        return mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH,
                              "start the authorization again and use the newest URL",
                              "the redirect's state does not match this authorization "
                              "(a stale or forged redirect)");
    if (!r->code || !*r->code)
        return mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH, NULL,
                              "the redirect carries no authorization code");
    return 0;
}

static void run_browser(mc_host_ctx *hc, const char *browser, const char *url, pid_t *pid)
{
    *pid = -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    char *argv[] = { (char *)browser, (char *)url, NULL };
    if (posix_spawnp(pid, browser, &fa, NULL, argv, environ) != 0) {
        H->log(hc, MC_LOG_WARN, "cannot run the browser command %s: %s", browser, strerror(errno));
        *pid = -1;
    }
    posix_spawn_file_actions_destroy(&fa);
}

static void reap_browser(mc_host_ctx *hc, pid_t pid)
{
    if (pid > 0) {
        /* a browser launcher normally exits at once; never wait long on it */
        for (int i = 0; i < 50; i++) {
            if (waitpid(pid, NULL, WNOHANG) != 0)
                return;
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        H->log(hc, MC_LOG_DEBUG, "oauth: the browser command is still running; not waited for");
    }
}

static void answer(int fd, int status, const char *title, const char *text)
{
    char page[1024], msg[1400];
    int n = snprintf(page, sizeof page,
                     "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>mailconn</title>"
                     "</head><body><h1>%s</h1><p>%s</p></body></html>\n", title, text);
    int m = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                     "Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
                     status, status == 200 ? "OK" : status == 400 ? "Bad Request" : "Not Found",
                     n, page);
    if (m > 0)
        (void)!send(fd, msg, (size_t)m, MSG_NOSIGNAL);
}

/* The listener serves several connections at once, each bounded in size
 * and time: a local user who connects and says nothing (or trickles)
 * holds one slot for CLIENT_WAIT_MS, never the browser's redirect. */
#define CLIENTS_MAX 8
#define CLIENT_WAIT_MS 5000

typedef struct client {
    int       fd;              /* -1: free */
    long long deadline;
    size_t    len;
    char      buf[REQUEST_MAX + 1];
} client;

static void client_close(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    OPENSSL_cleanse(c->buf, sizeof c->buf);
    c->fd = -1;
    c->len = 0;
}

/* The target of a GET request head; MC_EINVAL for anything else. */
static int request_target(const char *buf, char **target)
{
    *target = NULL;
    if (strncmp(buf, "GET ", 4))
        return MC_EINVAL;
    const char *t = buf + 4;
    size_t n = strcspn(t, " \r\n");
    if (n == 0 || t[0] != '/')
        return MC_EINVAL;
    *target = strndup(t, n);
    return *target ? 0 : MC_ENOMEM;
}

/* Read what client c sent. @return 1 a whole request head is there (or the
 * size bound is reached), 0 more to come, -1 the connection is done. */
static int client_read(client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, REQUEST_MAX - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return c->len >= REQUEST_MAX || strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n") ? 1 : 0;
}

static int flow_loopback(mc__oauth_op *op, const mc_oauth_request *req,
                         const mc_oauth_authorize_options *o,
                         const char *state, const char *verifier, const char *challenge,
                         mc_err **err)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return mc__oauth_fail(err, MC_ENET, MC_OUTCOME_TRANSIENT, NULL, "socket: %s",
                              strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)(o->port > 0 && o->port < 65536 ? o->port : 0));
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 8) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        int e = errno;
        close(lfd);
        return mc__oauth_fail(err, MC_ENET, MC_OUTCOME_TRANSIENT,
                              o->port > 0 ? "choose another --port" : NULL,
                              "cannot listen on 127.0.0.1:%d: %s", o->port, strerror(e));
    }
    char redirect[MC_URL_MAX];
    if (req->redirect_uri && *req->redirect_uri)
        snprintf(redirect, sizeof redirect, "%s", req->redirect_uri);
    else
        snprintf(redirect, sizeof redirect, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
    char *url = NULL;
    int rc = mc__oauth_authorize_url(req, redirect, state, challenge, &url, err);
    if (rc) {
        close(lfd);
        return rc;
    }
    say(op->hc, o, "Open this URL in a browser to authorize mailconn for server %s:", req->server);
    say(op->hc, o, "%s", url);
    say(op->hc, o, "Waiting for the redirect on 127.0.0.1:%u (at most %d s)...", ntohs(sa.sin_port),
        wait_s(o));
    pid_t browser = -1;
    if (o->browser && *o->browser)
        run_browser(op->hc, o->browser, url, &browser);
    free(url);

    long long deadline = mono_ms() + (long long)wait_s(o) * 1000;
    mc__oauth_redirect r;
    memset(&r, 0, sizeof r);
    bool got = false;
    client *cl = calloc(CLIENTS_MAX, sizeof *cl);
    if (!cl) {
        close(lfd);
        reap_browser(op->hc, browser);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    for (size_t i = 0; i < CLIENTS_MAX; i++)
        cl[i].fd = -1;
    while (!got) {
        long long now = mono_ms();
        if (now >= deadline) {
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT,
                                "authorize again, or use the paste or device flow",
                                "no redirect from the browser within %d s", wait_s(o));
            break;
        }
        /* one poll for the listener and every connection, until the
         * earliest deadline (at most 1 s) */
        struct pollfd p[1 + CLIENTS_MAX];
        size_t slot_of[1 + CLIENTS_MAX];
        nfds_t np = 0;
        long long wake = deadline;
        p[np++] = (struct pollfd){ lfd, POLLIN, 0 };
        for (size_t i = 0; i < CLIENTS_MAX; i++) {
            if (cl[i].fd < 0)
                continue;
            slot_of[np] = i;
            p[np++] = (struct pollfd){ cl[i].fd, POLLIN, 0 };
            if (cl[i].deadline < wake)
                wake = cl[i].deadline;
        }
        long long wait = wake - now;
        int n = poll(p, np, (int)(wait < 0 ? 0 : wait > 1000 ? 1000 : wait));
        if (n < 0 && errno != EINTR) {
            rc = mc__oauth_fail(err, MC_ENET, MC_OUTCOME_TRANSIENT, NULL, "poll: %s",
                                strerror(errno));
            break;
        }
        now = mono_ms();
        for (nfds_t k = 1; n > 0 && k < np && !got; k++) {
            client *c = &cl[slot_of[k]];
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)) || c->fd != p[k].fd)
                continue;
            int st = client_read(c);
            if (st == 0)
                continue;
            if (st < 0) {
                client_close(c);
                continue;
            }
            char *target = NULL;
            mc__oauth_redirect cand;
            if (request_target(c->buf, &target) != 0) {
                answer(c->fd, 400, "Bad request", "mailconn expected the authorization redirect.");
            } else if (mc__oauth_parse_redirect(target, &cand) != 0 ||
                       (!cand.code && !cand.error)) {
                /* a favicon or a stray visitor */
                answer(c->fd, 404, "Not found", "This is mailconn's authorization listener.");
                if (!mc__oauth_parse_redirect(target, &cand))
                    mc__oauth_redirect_clear(&cand);
            } else if (!cand.state || strcmp(cand.state, state)) {
                /* not this authorization's redirect (stale, or any local
                 * user's request): refused, and the listener keeps waiting
                 * for the real one until the bound */
                answer(c->fd, 400, "Authorization not accepted",
                       "This request does not belong to the authorization mailconn is waiting "
                       "for. Use the newest URL mailconn printed.");
                mc__oauth_redirect_clear(&cand);
                say(op->hc, o,
                    "Ignored a request to 127.0.0.1:%u whose state does not match; still "
                    "waiting...", ntohs(sa.sin_port));
            } else if (cand.error) {
                answer(c->fd, 200, "Authorization refused",
                       "mailconn was not authorized. You can close this window.");
                r = cand;
                got = true;
            } else {
                answer(c->fd, 200, "mailconn is authorized",
                       "You can close this window and return to the terminal.");
                r = cand;
                got = true;
            }
            mc__oauth_wipe_free(target);
            client_close(c);
        }
        /* connections past their own bound are dropped */
        for (size_t i = 0; i < CLIENTS_MAX; i++)
            if (cl[i].fd >= 0 && now >= cl[i].deadline)
                client_close(&cl[i]);
        if (got || n <= 0 || !(p[0].revents & POLLIN))
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the pending connection stays: no busy loop on it */
                struct timespec ts = { 0, 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
            }
            continue;
        }
        /* a free slot, else the one waiting longest makes room */
        size_t use = 0;
        for (size_t i = 0; i < CLIENTS_MAX; i++) {
            if (cl[i].fd < 0) {
                use = i;
                break;
            }
            if (cl[i].deadline < cl[use].deadline)
                use = i;
        }
        client_close(&cl[use]);
        cl[use].fd = cfd;
        cl[use].len = 0;
        cl[use].buf[0] = '\0';
        cl[use].deadline = now + CLIENT_WAIT_MS < deadline ? now + CLIENT_WAIT_MS : deadline;
    }
    for (size_t i = 0; i < CLIENTS_MAX; i++)
        client_close(&cl[i]);
    free(cl);
    close(lfd);
    reap_browser(op->hc, browser);
    if (got) {
        rc = check_redirect(req, &r, state, err);
        if (!rc)
            rc = redeem(op, req, r.code, redirect, verifier, err);
    }
    mc__oauth_redirect_clear(&r);
    return rc;
}

static int flow_paste(mc__oauth_op *op, const mc_oauth_request *req,
                      const mc_oauth_authorize_options *o,
                      const char *state, const char *verifier, const char *challenge,
                      mc_err **err)
{
    if (!o->ask)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "paste mode needs a way to read the redirect URL");
    char redirect[MC_URL_MAX];
    if (req->redirect_uri && *req->redirect_uri)
        snprintf(redirect, sizeof redirect, "%s", req->redirect_uri);
    else if (o->port > 0)
        snprintf(redirect, sizeof redirect, "http://127.0.0.1:%d/", o->port);
    else
        snprintf(redirect, sizeof redirect, "http://127.0.0.1/");
    char *url = NULL;
    int rc = mc__oauth_authorize_url(req, redirect, state, challenge, &url, err);
    if (rc)
        return rc;
    say(op->hc, o,
        "Open this URL in a browser on any machine and authorize mailconn for server %s:",
        req->server);
    say(op->hc, o, "%s", url);
    say(op->hc, o, "The browser then fails to load a page at %s: copy that page's whole address "
        "from the address bar and paste it here.", redirect);
    free(url);
    char *line = o->ask("Redirect URL: ", o->payload);
    if (!line)
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "no redirect URL was pasted");
    mc__oauth_redirect r;
    if (mc__oauth_parse_redirect(line, &r) != 0) {
        mc__oauth_wipe_free(line);
        return mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH,
                              "paste the complete address, starting with http://",
                              "the pasted text is not a redirect URL");
    }
    mc__oauth_wipe_free(line);
    rc = check_redirect(req, &r, state, err);
    if (!rc)
        rc = redeem(op, req, r.code, redirect, verifier, err);
    mc__oauth_redirect_clear(&r);
    return rc;
}

/* ------------------------------------------------------------ device */

void mc__oauth_device_clear(mc__oauth_device *d)
{
    mc__oauth_wipe_free(d->device_code);
    free(d->user_code);
    free(d->verification_uri);
    free(d->verification_uri_complete);
    free(d->message);
    memset(d, 0, sizeof *d);
}

/* a string member: 1 (*out malloc'd), 0 absent or not a string, -1 with a
 * NUL inside (json-c keeps the length; strdup would cut it short) */
static int jget(json_object *o, const char *key, char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return 0;
    const char *t = json_object_get_string(v);
    if (strlen(t) != (size_t)json_object_get_string_len(v))
        return -1;
    *out = strdup(t);
    return *out ? 1 : -1;
}

static int device_bad(mc_err **err, const char *url, const char *fmt, ...) MC__PRINTF(3, 4);
static int device_bad(mc_err **err, const char *url, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                          "device authorization endpoint%s%s answered %s", url ? " " : "",
                          url ? url : "", what);
}

/* seconds member: the default when absent, clamped to lo..hi, else refused */
static int device_seconds(json_object *o, const char *key, long long dflt, long long lo,
                          long long hi, long long *out, const char *url, mc_err **err)
{
    char shown[48];
    int r = mc__oauth_json_seconds(o, key, lo, hi, out, shown);
    if (r == 0)
        *out = dflt;
    if (r == -1)
        return device_bad(err, url, "an %s that is not a number (%s)", key, shown);
    if (r == -2)
        return device_bad(err, url, "a negative %s (%s)", key, shown);
    return 0;
}

int mc__oauth_device_parse(const char *url, const char *body, size_t len, mc__oauth_device *d,
                           mc_err **err)
{
    memset(d, 0, sizeof *d);
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, body, (int)(len > MC__OAUTH_BODY_MAX
                                                                ? MC__OAUTH_BODY_MAX : len));
    bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
              json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    int rc = 0;
    if (!ok) {
        rc = device_bad(err, url, "a body that is not a JSON object");
        goto done;
    }
    int r1 = jget(o, "device_code", &d->device_code);
    int r2 = jget(o, "user_code", &d->user_code);
    int r3 = jget(o, "verification_uri", &d->verification_uri);
    if (r3 == 0)
        r3 = jget(o, "verification_url", &d->verification_uri);   /* Google */
    int r4 = jget(o, "verification_uri_complete", &d->verification_uri_complete);
    int r5 = jget(o, "message", &d->message);
    if (r1 < 0 || r2 < 0 || r3 < 0 || r4 < 0 || r5 < 0) {
        rc = device_bad(err, url, "a string with a NUL in it");
        goto done;
    }
    if (!d->device_code || !*d->device_code || !d->user_code || !d->verification_uri) {
        rc = device_bad(err, url, "without device_code, user_code and verification_uri");
        goto done;
    }
    rc = device_seconds(o, "expires_in", 600, 1, MC__OAUTH_EXPIRES_MAX, &d->expires_in, url, err);
    if (!rc)
        rc = device_seconds(o, "interval", 5, 1, MC__OAUTH_INTERVAL_MAX, &d->interval, url, err);
done:
    if (o) {
        json_object *v = NULL;
        if (json_object_object_get_ex(o, "device_code", &v) &&
            json_object_is_type(v, json_type_string))
            OPENSSL_cleanse((char *)json_object_get_string(v),
                            (size_t)json_object_get_string_len(v));
    }
    json_object_put(o);
    if (rc)
        mc__oauth_device_clear(d);
    return rc;
}

int mc__oauth_device_start(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_device *d,
                           mc_err **err)
{
    memset(d, 0, sizeof *d);
    const mc_oauth_profile *p = req->profile;
    int rc = mc__oauth_check_url(p->device_authorization_url, "device_authorization_url", err);
    if (rc)
        return rc;
    mc__obuf form = MC__OBUF_INIT;
    if (p->scope[0] && mc__oauth_form_add(&form, "scope", p->scope)) {
        mc__obuf_free(&form);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    mc__oauth_http h;
    rc = mc__oauth_post(op->hc, req, p->device_authorization_url, form.data, &h, err);
    mc__obuf_free(&form);
    if (rc)
        return rc;
    if (h.status < 200 || h.status > 299) {
        char *oerr = NULL;
        mc_err *before = err ? *err : NULL;
        rc = mc__oauth_error_from(h.status, h.body.data, h.body.len, req, &oerr, err);
        mc__oauth_http_free(&h);
        /* Google answers a device request for the Gmail scope with a bare
         * invalid_scope: the scope is not on its device-flow allow-list */
        if (oerr && !strcmp(oerr, "invalid_scope") && strstr(p->scope, GMAIL_SCOPE) &&
            err && *err && *err != before) {
            char *h2 = H->strdup("Google's device flow does not grant the Gmail scope ("
                                 GMAIL_SCOPE "): authorize with the browser or paste "
                                 "flow instead");
            if (h2) {
                H->free((*err)->hint);
                (*err)->hint = h2;
            }
        }
        free(oerr);
        return rc;
    }
    rc = mc__oauth_device_parse(p->device_authorization_url, h.body.data ? h.body.data : "",
                                h.body.len, d, err);
    mc__oauth_http_free(&h);
    if (rc)
        return rc;
    H->redact(op->hc, d->device_code);
    return 0;
}

int mc__oauth_device_poll(mc__oauth_op *op, const mc_oauth_request *req,
                          const char *device_code, long long interval, long long bound_s,
                          int timeout_code, mc_err **err)
{
    const mc_oauth_profile *p = req->profile;
    /* interval 1 .. 60 s, bound_s at most a year: no sum below can
     * overflow; one absolute deadline bounds it all */
    long long deadline = mono_ms() + bound_s * 1000;
    mc__obuf poll_form = MC__OBUF_INIT;
    int rc = mc__oauth_form_add(&poll_form, "grant_type",
                                "urn:ietf:params:oauth:grant-type:device_code");
    if (!rc)
        rc = mc__oauth_form_add(&poll_form, "device_code", device_code);
    if (rc) {
        mc__obuf_free(&poll_form);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    for (;;) {
        long long wake = mono_ms() + interval * 1000;
        if (wake > deadline) {
            rc = mc__oauth_fail(err, timeout_code, MC_OUTCOME_TRANSIENT,
                                "authorize with the device flow again and enter the code sooner",
                                "the device code for server %s was not approved in time",
                                req->server);
            break;
        }
        for (long long left; (left = wake - mono_ms()) > 0;) {
            struct timespec ts = { (time_t)(left / 1000), (long)(left % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
        mc__oauth_tokens t;
        char *oerr = NULL;
        rc = mc__oauth_token_request_until(op->hc, req, p->token_url, poll_form.data, deadline,
                                           &t, &oerr, err);
        if (rc == MC_ETEMP && oerr && !strcmp(oerr, "slow_down")) {
            /* RFC 8628 3.5: 5 s more, within the clamp */
            interval = interval + 5 > MC__OAUTH_INTERVAL_MAX ? MC__OAUTH_INTERVAL_MAX
                                                             : interval + 5;
            H->log(op->hc, MC_LOG_DEBUG, "oauth: slow_down: polling every %lld s", interval);
        }
        free(oerr);
        if (rc == MC_ETEMP)
            continue;
        if (!rc) {
            rc = store_fresh(op, req, &t, err);
            mc__oauth_tokens_clear(&t);
        }
        break;
    }
    mc__obuf_free(&poll_form);
    return rc;
}

static int flow_device(mc__oauth_op *op, const mc_oauth_request *req,
                       const mc_oauth_authorize_options *o, mc_err **err)
{
    mc__oauth_device d;
    int rc = mc__oauth_device_start(op, req, &d, err);
    if (rc)
        return rc;
    if (d.message)
        say(op->hc, o, "%s", d.message);
    say(op->hc, o, "To authorize mailconn for server %s, visit %s and enter the code %s",
        req->server, d.verification_uri, d.user_code);
    if (d.verification_uri_complete)
        say(op->hc, o, "(or open %s)", d.verification_uri_complete);
    long long bound = d.expires_in < wait_s(o) ? d.expires_in : wait_s(o);
    say(op->hc, o, "Waiting for the approval (at most %lld s)...", bound);
    rc = mc__oauth_device_poll(op, req, d.device_code, d.interval, bound, MC_EOAUTH, err);
    mc__oauth_device_clear(&d);
    return rc;
}

int mc__oauth_authorize(mc__oauth_op *op, const mc_oauth_request *req,
                        const mc_oauth_authorize_options *o, mc_err **err)
{
    const mc_oauth_profile *p = req->profile;
    if (o->flow == MC_FLOW_CLIENT_CREDENTIALS || (req->grant && !strcmp(req->grant, "client_credentials"))) {
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE,
                              "with grant client_credentials, `send` fetches tokens itself",
                              "server %s uses client credentials: there is nothing to authorize",
                              req->server);
    }
    if (p->flows && !(p->flows & o->flow))
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG,
                              o->flow == MC_FLOW_DEVICE ? "use the browser or paste flow" : "use the device flow",
                              "the provider of server %s does not allow this flow", req->server);
    if (o->flow == MC_FLOW_DEVICE)
        return flow_device(op, req, o, err);
    if (o->flow != MC_FLOW_AUTH_CODE && o->flow != MC_FLOW_PASTE)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL, "unknown OAuth flow %u",
                              o->flow);
    char verifier[MC__PKCE_VERIFIER_LEN + 1], challenge[44], state[23];
    if (mc__oauth_pkce_verifier(verifier) || mc__oauth_pkce_challenge(verifier, challenge) ||
        mc__oauth_random_state(state))
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "no random bytes for PKCE");
    int rc = o->flow == MC_FLOW_PASTE
                 ? flow_paste(op, req, o, state, verifier, challenge, err)
                 : flow_loopback(op, req, o, state, verifier, challenge, err);
    OPENSSL_cleanse(verifier, sizeof verifier);
    return rc;
}

/* ------------------------------------------------------------ web applications */

/* The pending authorization mc_oauth_begin keeps: whose it is, where the
 * browser returns, the PKCE verifier and when it stops being good. */
static char *pending_record(const mc_oauth_request *req, const char *redirect,
                            const char *verifier, long long expires)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    const char *tu = req->profile ? req->profile->token_url : NULL;
    json_object_object_add(o, "server", json_object_new_string(req->server ? req->server : ""));
    json_object_object_add(o, "provider",
                           json_object_new_string(req->provider ? req->provider : ""));
    json_object_object_add(o, "client_id",
                           json_object_new_string(req->client_id ? req->client_id : ""));
    json_object_object_add(o, "user", json_object_new_string(req->user ? req->user : ""));
    json_object_object_add(o, "token_url", json_object_new_string(tu ? tu : ""));
    json_object_object_add(o, "redirect_uri", json_object_new_string(redirect));
    json_object_object_add(o, "verifier", json_object_new_string(verifier));
    json_object_object_add(o, "expires", json_object_new_int64(expires));
    size_t n = 0;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    char *r = text ? strndup(text, n) : NULL;
    if (text)
        OPENSSL_cleanse((char *)text, n);
    json_object *v = NULL;
    if (json_object_object_get_ex(o, "verifier", &v))
        OPENSSL_cleanse((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
    json_object_put(o);
    return r;
}

int mc__oauth_begin(mc__oauth_op *op, const mc_oauth_request *req, char **url_out,
                    mc_err **err)
{
    *url_out = NULL;
    const char *redirect = req->redirect_uri;
    if (!redirect || !*redirect)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "server %s: the application's redirect_uri is required",
                              req->server);
    if (strlen(redirect) >= MC_URL_MAX)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "server %s: the redirect_uri is too long", req->server);
    if (req->grant && !strcmp(req->grant, "client_credentials"))
        return mc__oauth_fail(err, MC_ENOTSUP, MC_OUTCOME_USAGE, NULL,
                              "server %s uses client credentials: there is nothing to authorize",
                              req->server);
    if (req->profile->flows && !(req->profile->flows & (MC_FLOW_AUTH_CODE | MC_FLOW_PASTE)))
        return mc__oauth_fail(err, MC_ENOTSUP, MC_OUTCOME_CONFIG, NULL,
                              "the provider of server %s does not allow the authorization code "
                              "flow", req->server);
    char verifier[MC__PKCE_VERIFIER_LEN + 1], challenge[44], state[23];
    if (mc__oauth_pkce_verifier(verifier) || mc__oauth_pkce_challenge(verifier, challenge) ||
        mc__oauth_random_state(state))
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "no random bytes for PKCE");
    char *url = NULL;
    int rc = mc__oauth_authorize_url(req, redirect, state, challenge, &url, err);
    long long expires = mc__oauth_now() + MC__OAUTH_PENDING_TTL;
    char *rec = rc ? NULL : pending_record(req, redirect, verifier, expires);
    if (!rc && !rec)
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    if (!rc)
        rc = mc__oauth_pending_put(op, state, rec, strlen(rec), expires, err);
    if (!rc && !(*url_out = H->strdup(url)))
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    if (!rc)
        H->log(op->hc, MC_LOG_DEBUG, "oauth: server %s: authorization pending for %d s",
               req->server, MC__OAUTH_PENDING_TTL);
    mc__oauth_wipe_free(rec);
    free(url);
    OPENSSL_cleanse(verifier, sizeof verifier);
    OPENSSL_cleanse(state, sizeof state);
    return rc;
}

static bool member_is(json_object *o, const char *key, const char *want)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
           !strcmp(json_object_get_string(v), want ? want : "");
}

static const char *member_str(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int stale_state(const mc_oauth_request *req, const char *why, mc_err **err)
{
    return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_AUTH,
                          "start the authorization again (mc_oauth_begin) and use the newest URL",
                          "the callback's state %s (server %s): nothing stored", why,
                          req->server);
}

int mc__oauth_finish(mc__oauth_op *op, const mc_oauth_request *req, const char *callback_url,
                     mc_err **err)
{
    mc__oauth_redirect r;
    if (!callback_url || mc__oauth_parse_redirect(callback_url, &r) != 0)
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_USAGE, NULL,
                              "not a callback URL (server %s)", req->server);
    int rc = 0;
    char *data = NULL;
    size_t len = 0;
    json_object *o = NULL;
    /* the pending authorization is taken (used up) whatever the callback
     * says: a denied or failed one cannot be finished later either */
    if (r.state && *r.state)
        rc = mc__oauth_pending_take(op, r.state, &data, &len, err);
    if (rc)
        goto out;
    if (r.error) {
        if (!strcmp(r.error, "access_denied")) {
            mc_err *before = err ? *err : NULL;
            rc = mc__oauth_fail(err, MC_EAUTH, MC_OUTCOME_AUTH,
                                "the person did not grant consent: start again and accept",
                                "authorization for server %s was denied (%s%s%s)", req->server,
                                r.error, r.error_description ? ": " : "",
                                r.error_description ? r.error_description : "");
            if (err && *err && *err != before)
                (*err)->action = MC_ACTION_GRANT_CONSENT;
        } else
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_PERMANENT, NULL,
                                "authorization for server %s failed (%s%s%s)", req->server,
                                r.error, r.error_description ? ": " : "",
                                r.error_description ? r.error_description : "");
        goto out;
    }
    if (!r.state || !*r.state) {
        rc = stale_state(req, "is missing", err);
        goto out;
    }
    if (!data) {
        rc = stale_state(req, "is unknown, used already or expired", err);
        goto out;
    }
    json_tokener *tok = json_tokener_new();
    if (tok) {
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, data, (int)len);
        if (json_tokener_get_error(tok) != json_tokener_success)
            o = (json_object_put(o), NULL);
        json_tokener_free(tok);
    }
    json_object *ev = NULL;
    const char *verifier = o ? member_str(o, "verifier") : NULL;
    const char *redirect = o ? member_str(o, "redirect_uri") : NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !verifier || !redirect ||
        !json_object_object_get_ex(o, "expires", &ev) || !json_object_is_type(ev, json_type_int)) {
        rc = stale_state(req, "names a pending authorization that is not valid", err);
        goto out;
    }
    if (json_object_get_int64(ev) <= mc__oauth_now()) {
        rc = stale_state(req, "has expired", err);
        goto out;
    }
    if (!member_is(o, "server", req->server) || !member_is(o, "provider", req->provider) ||
        !member_is(o, "client_id", req->client_id) || !member_is(o, "user", req->user) ||
        !member_is(o, "token_url", req->profile->token_url)) {
        rc = stale_state(req, "belongs to another server or identity", err);
        goto out;
    }
    if (!r.code || !*r.code) {
        rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_AUTH, NULL,
                            "the callback carries no authorization code (server %s)",
                            req->server);
        goto out;
    }
    rc = redeem(op, req, r.code, redirect, verifier, err);
out:
    if (o) {
        json_object *v = NULL;
        if (json_object_object_get_ex(o, "verifier", &v) &&
            json_object_is_type(v, json_type_string))
            OPENSSL_cleanse((char *)json_object_get_string(v),
                            (size_t)json_object_get_string_len(v));
        json_object_put(o);
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    mc__oauth_redirect_clear(&r);
    return rc;
}
