/* transport-starttls: TCP in the clear until the server's 220 to STARTTLS,
 * then TLS (port 587 by default), on the host's TLS layer. The stream the
 * engine holds is a handle whose inner stream host->tls_upgrade replaces
 * (the transport's starttls op upgrades in place). */
#include <stdio.h>

#include "mailconn/plugin.h"
#include "../common/fdstream.h"

static const mc_host_api *host;

typedef struct handle {
    mc_stream  base;    /* first */
    mc_stream *inner;   /* the clear TCP stream, then the TLS stream over it */
} handle;

static ssize_t h_read(mc_stream *s, void *buf, size_t len, mc_err **err)
{
    mc_stream *in = ((handle *)s)->inner;
    return in->ops->read(in, buf, len, err);
}

static int h_write(mc_stream *s, const void *buf, size_t len, mc_err **err)
{
    mc_stream *in = ((handle *)s)->inner;
    return in->ops->write(in, buf, len, err);
}

static void h_close(mc_stream *s)
{
    if (!s)
        return;
    handle *h = (handle *)s;
    if (h->inner)
        h->inner->ops->close(h->inner);
    host->free(h);
}

static void h_set_read_deadline(mc_stream *s, int64_t deadline_ms)
{
    mc_stream *in = ((handle *)s)->inner;
    in->ops->set_read_deadline(in, deadline_ms);
}

static const mc_stream_ops handle_ops = {
    .size = sizeof(mc_stream_ops),
    .read = h_read,
    .write = h_write,
    .close = h_close,
    .set_read_deadline = h_set_read_deadline,
};

static int starttls_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                            mc_err **err)
{
    if (!out)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                           "transport starttls: no stream");
    *out = NULL;
    handle *h = host->alloc(sizeof(*h));
    if (!h)
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                           "out of memory");
    int rc = mc__fd_stream_open(hc, &h->inner, o, err);
    if (rc < 0) {
        host->free(h);
        return rc;
    }
    h->base.ops = &handle_ops;
    h->base.hc = hc;
    *out = &h->base;
    return 0;
}

static int starttls_upgrade(mc_host_ctx *hc, mc_stream *s, const mc_connect_opts *o,
                            mc_err **err)
{
    if (!s || s->ops != &handle_ops)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_STARTTLS,
                           "starttls: not a stream of this transport");
    handle *h = (handle *)s;
    if (hc)
        h->base.hc = hc;
    int rc = host->tls_upgrade(h->base.hc, &h->inner, o, err);
    if (rc < 0)
        return rc;
    h->base.encrypted = h->inner->encrypted;
    h->base.peer_verified = h->inner->peer_verified;
    snprintf(h->base.tls_version, sizeof(h->base.tls_version), "%s", h->inner->tls_version);
    snprintf(h->base.tls_cipher, sizeof(h->base.tls_cipher), "%s", h->inner->tls_cipher);
    return 0;
}

static const mc_transport_ops starttls_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 587,
    .connect = starttls_connect,
    .starttls = starttls_upgrade,
    .security = MC_SECURITY_STARTTLS,
};

static const mc_plugin_desc starttls_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "starttls",
    .version = MC_VERSION_STRING,
    .summary = "SMTP upgraded to TLS with STARTTLS, certificate and host name verified",
    .ops = &starttls_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    mc__fd_stream_set_host(h);
    host = h;
    return &starttls_desc;
}
