/* proxy-http: a tunnel through an HTTP proxy's CONNECT (RFC 9110 9.3.6),
 * with Basic proxy authentication when credentials are given. The
 * response's header is read bounded in size (8 KiB) and by the deadline,
 * one byte at a time so that nothing of the tunnel is taken with it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailconn/plugin.h"

#include "../common/fdwait.h"
#include "../common/proxyio.h"

#define HEADER_MAX 8192

static const mc_host_api *host;

static int io_error(mc_err **err, const char *what)
{
    int e = errno;
    if (e == ETIMEDOUT)
        return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_PROXY,
                           "timed out %s", what);
    char why[128];
    mc__errno_text(why, sizeof(why), e);
    return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_PROXY, "%s: %s", what, why);
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* The status line's text, printable and short. */
static void reason_of(const char *line, char *out, size_t n)
{
    const char *p = strchr(line, ' ');
    p = p ? strchr(p + 1, ' ') : NULL;
    size_t k = 0;
    for (; p && *++p && k + 1 < n && k < 80;)
        out[k++] = isprint((unsigned char)*p) ? *p : '?';
    out[k] = 0;
}

static int http_tunnel(mc_host_ctx *hc, int fd, const char *name, uint16_t port,
                       const mc_proxy_auth *auth, const mc_plugin_cfg *cfg, int64_t deadline,
                       mc_err **err)
{
    (void)cfg;
    char target[300];
    if (strchr(name, ':') && name[0] != '[')
        snprintf(target, sizeof(target), "[%s]:%u", name, (unsigned)port);
    else
        snprintf(target, sizeof(target), "%s:%u", name, (unsigned)port);
    if (strpbrk(target, "\r\n \t"))
        return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_PROXY,
                           "host name not fit for a CONNECT request");

    char *req = NULL;
    size_t reqlen = 0;
    int rc = 0;
    if (auth && (auth->user || auth->password)) {
        const char *u = auth->user ? auth->user : "", *p = auth->password ? auth->password : "";
        if (strchr(u, ':'))
            return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_PROXY,
                               "a Basic proxy user must not contain ':'");
        size_t ul = strlen(u), pl = strlen(p), cl = ul + 1 + pl;
        unsigned char *cred = host->alloc(cl + 1);
        char *b64 = host->alloc(4 * ((cl + 2) / 3) + 1);
        if (cred && b64) {
            memcpy(cred, u, ul);
            cred[ul] = ':';
            memcpy(cred + ul + 1, p, pl);
            base64(cred, cl, b64);
            int n = asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n"
                                   "Proxy-Authorization: Basic %s\r\n\r\n", target, target, b64);
            if (n < 0)
                req = NULL;
            else
                reqlen = (size_t)n;
        }
        if (cred) {
            explicit_bzero(cred, cl);
            host->free(cred);
        }
        if (b64) {
            explicit_bzero(b64, strlen(b64));
            host->free(b64);
        }
    } else {
        int n = asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
        if (n < 0)
            req = NULL;
        else
            reqlen = (size_t)n;
    }
    if (!req)
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_PROXY, "out of memory");
    int s = mc__pio_send_all(fd, req, reqlen, deadline);
    explicit_bzero(req, reqlen);
    free(req);
    if (s < 0)
        return io_error(err, "sending CONNECT");

    char hdr[HEADER_MAX + 1];
    size_t n = 0;
    for (;;) {
        if (n == HEADER_MAX)
            return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                               "the CONNECT response header is over %d bytes", HEADER_MAX);
        if (mc__pio_recv_exact(fd, hdr + n, 1, deadline) < 0)
            return io_error(err, "reading the CONNECT response");
        n++;
        if (n >= 4 && memcmp(hdr + n - 4, "\r\n\r\n", 4) == 0)
            break;
        if (n >= 2 && memcmp(hdr + n - 2, "\n\n", 2) == 0)
            break;
    }
    hdr[n] = 0;
    char *eol = strpbrk(hdr, "\r\n");
    if (eol)
        *eol = 0;
    int status = 0;
    unsigned maj = 0, min = 0;
    if (sscanf(hdr, "HTTP/%u.%u %3d", &maj, &min, &status) != 3 || maj != 1 || status < 100)
        return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                           "not an HTTP response to CONNECT");
    char why[96];
    reason_of(hdr, why, sizeof(why));
    if (status >= 200 && status <= 299) {
        host->log(hc, MC_LOG_DEBUG, "http proxy: tunnel to %s open (%d)", target, status);
        return 0;
    }
    if (status == 407 || status == 401)
        rc = host->error(err, MC_EAUTH, MC_OUTCOME_AUTH, MC_STAGE_PROXY,
                         "authentication refused: HTTP %d %s", status, why);
    else
        rc = host->error(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_PROXY,
                         "CONNECT to %s refused: HTTP %d %s", target, status, why);
    return rc;
}

static const mc_proxy_ops http_ops = {
    .size = sizeof(mc_proxy_ops),
    .default_port = 8080,
    .keys = NULL,
    .validate = NULL,
    .tunnel = http_tunnel,
};

static const mc_plugin_desc http_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_PROXY,
    .name = "http",
    .version = MC_VERSION_STRING,
    .summary = "HTTP CONNECT proxy (RFC 9110 9.3.6, Basic proxy authentication)",
    .ops = &http_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &http_desc;
}
