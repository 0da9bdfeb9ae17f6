/* proxy-socks5: a tunnel through a SOCKS5 proxy (RFC 1928), with
 * user/password authentication (RFC 1929) when credentials are given. The
 * proxy resolves the name (ATYP 3, as socks5h does); IP literals go as
 * IPv4 (ATYP 1) or IPv6 (ATYP 4). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>


#include "mailconn/plugin.h"

#include "../common/fdwait.h"
#include "../common/proxyio.h"

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

static const char *reply_text(unsigned rep)
{
    switch (rep) {
    case 1: return "general SOCKS server failure";
    case 2: return "connection not allowed by ruleset";
    case 3: return "network unreachable";
    case 4: return "host unreachable";
    case 5: return "connection refused";
    case 6: return "TTL expired";
    case 7: return "command not supported";
    case 8: return "address type not supported";
    default: return "unknown reply";
    }
}

static int s5_tunnel(mc_host_ctx *hc, int fd, const char *name, uint16_t port,
                     const mc_proxy_auth *auth, const mc_plugin_cfg *cfg, int64_t deadline,
                     mc_err **err)
{
    (void)cfg;
    bool creds = auth && (auth->user || auth->password);
    size_t ulen = creds && auth->user ? strlen(auth->user) : 0;
    size_t plen = creds && auth->password ? strlen(auth->password) : 0;
    if (creds && (ulen > 255 || plen > 255))
        return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_PROXY,
                           "the SOCKS5 user and password are limited to 255 bytes each");
    /* greeting: no auth, or user/password only when credentials are given */
    unsigned char greet[3] = { 5, 1, creds ? 2 : 0 };
    if (mc__pio_send_all(fd, greet, sizeof(greet), deadline) < 0)
        return io_error(err, "sending the SOCKS5 greeting");
    unsigned char r[2];
    if (mc__pio_recv_exact(fd, r, 2, deadline) < 0)
        return io_error(err, "reading the SOCKS5 method");
    if (r[0] != 5)
        return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                           "not a SOCKS5 proxy (version %u)", (unsigned)r[0]);
    if (r[1] == 0xFF)
        return host->error(err, creds ? MC_EAUTH : MC_EAUTH, MC_OUTCOME_AUTH, MC_STAGE_PROXY,
                           creds ? "authentication refused: the proxy accepts no "
                                   "user/password method"
                                 : "authentication refused: the proxy requires credentials");
    if (r[1] == 2 && creds) {
        unsigned char msg[3 + 255 + 255];
        size_t n = 0;
        msg[n++] = 1;
        msg[n++] = (unsigned char)ulen;
        memcpy(msg + n, auth->user ? auth->user : "", ulen);
        n += ulen;
        msg[n++] = (unsigned char)plen;
        memcpy(msg + n, auth->password ? auth->password : "", plen);
        n += plen;
        int s = mc__pio_send_all(fd, msg, n, deadline);
        explicit_bzero(msg, sizeof(msg));
        if (s < 0)
            return io_error(err, "sending the SOCKS5 credentials");
        if (mc__pio_recv_exact(fd, r, 2, deadline) < 0)
            return io_error(err, "reading the SOCKS5 authentication status");
        if (r[1] != 0)
            return host->error(err, MC_EAUTH, MC_OUTCOME_AUTH, MC_STAGE_PROXY,
                               "authentication refused for user \"%s\" (status %u)",
                               auth->user ? auth->user : "", (unsigned)r[1]);
    } else if (r[1] != 0) {
        return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                           "the proxy chose method %u, which was not offered", (unsigned)r[1]);
    }

    unsigned char req[4 + 1 + 255 + 2];
    size_t n = 0;
    req[n++] = 5;
    req[n++] = 1;   /* CONNECT */
    req[n++] = 0;
    struct in_addr a4;
    struct in6_addr a6;
    char lit[64] = "";
    size_t hl = strlen(name);
    if (hl > 2 && name[0] == '[' && name[hl - 1] == ']' && hl - 2 < sizeof(lit)) {
        memcpy(lit, name + 1, hl - 2);
        lit[hl - 2] = 0;
    } else if (hl < sizeof(lit)) {
        memcpy(lit, name, hl + 1);
    }
    if (lit[0] && inet_pton(AF_INET, lit, &a4) == 1) {
        req[n++] = 1;
        memcpy(req + n, &a4, 4);
        n += 4;
    } else if (lit[0] && inet_pton(AF_INET6, lit, &a6) == 1) {
        req[n++] = 4;
        memcpy(req + n, &a6, 16);
        n += 16;
    } else {
        if (hl == 0 || hl > 255)
            return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_PROXY,
                               "host name of %zu bytes: SOCKS5 takes 1..255", hl);
        req[n++] = 3;
        req[n++] = (unsigned char)hl;
        memcpy(req + n, name, hl);
        n += hl;
    }
    req[n++] = (unsigned char)(port >> 8);
    req[n++] = (unsigned char)(port & 0xFF);
    if (mc__pio_send_all(fd, req, n, deadline) < 0)
        return io_error(err, "sending the SOCKS5 CONNECT");
    unsigned char rep[4];
    if (mc__pio_recv_exact(fd, rep, 4, deadline) < 0)
        return io_error(err, "reading the SOCKS5 reply");
    if (rep[0] != 5)
        return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                           "bad SOCKS5 reply version %u", (unsigned)rep[0]);
    if (rep[1] != 0)
        return host->error(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_PROXY,
                           "CONNECT to %s:%u refused: SOCKS5 reply %u (%s)", name,
                           (unsigned)port, (unsigned)rep[1], reply_text(rep[1]));
    size_t rest;
    unsigned char tail[255 + 2];
    if (rep[3] == 1) {
        rest = 4 + 2;
    } else if (rep[3] == 4) {
        rest = 16 + 2;
    } else if (rep[3] == 3) {
        unsigned char l;
        if (mc__pio_recv_exact(fd, &l, 1, deadline) < 0)
            return io_error(err, "reading the SOCKS5 reply");
        rest = (size_t)l + 2;
    } else {
        return host->error(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, MC_STAGE_PROXY,
                           "bad SOCKS5 reply address type %u", (unsigned)rep[3]);
    }
    if (mc__pio_recv_exact(fd, tail, rest, deadline) < 0)
        return io_error(err, "reading the SOCKS5 reply");
    host->log(hc, MC_LOG_DEBUG, "socks5: tunnel to %s:%u open", name, (unsigned)port);
    return 0;
}

static const mc_proxy_ops s5_ops = {
    .size = sizeof(mc_proxy_ops),
    .default_port = 1080,
    .keys = NULL,
    .validate = NULL,
    .tunnel = s5_tunnel,
};

static const mc_plugin_desc s5_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_PROXY,
    .name = "socks5",
    .version = MC_VERSION_STRING,
    .summary = "SOCKS5 proxy (RFC 1928, user/password RFC 1929; the proxy resolves names)",
    .ops = &s5_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &s5_desc;
}
