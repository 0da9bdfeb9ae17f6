/* transport-tls: implicit TLS from the first byte (port 465 by default), on
 * the host's TLS layer (host->tcp_connect, then host->tls_client). */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailconn/plugin.h"

static const mc_host_api *host;

static int tls_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                       mc_err **err)
{
    if (!out || !o || !o->host)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                           "transport tls: no host given");
    *out = NULL;
    /* one deadline for the TCP connect and the handshake */
    mc_connect_opts c = { 0 };
    memcpy(&c, o, o->size < sizeof(c) ? o->size : sizeof(c));
    c.size = sizeof(c);
    if (c.deadline_ms <= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        c.deadline_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000
                        + (c.timeout_ms > 0 ? c.timeout_ms : 60000);
    }
    int fd = -1;
    int rc = host->tcp_connect(hc, &c, &fd, err);
    if (rc < 0)
        return rc;
    if ((rc = host->tls_client(hc, fd, &c, out, err)) < 0)
        close(fd);
    return rc;
}

static const mc_transport_ops tls_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 465,
    .connect = tls_connect,
    .starttls = NULL,
    .security = MC_SECURITY_TLS,
};

static const mc_plugin_desc tls_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "tls",
    .version = MC_VERSION_STRING,
    .summary = "SMTP over implicit TLS, certificate and host name verified",
    .ops = &tls_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &tls_desc;
}
