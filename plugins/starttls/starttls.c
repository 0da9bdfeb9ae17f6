/* transport-starttls: TCP in the clear until the server's 220 to STARTTLS,
 * then TLS in place (port 587 by default). */
#include "mailconn/plugin.h"
#include "../common/tls.h"

static int starttls_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                            mc_err **err)
{
    return mc__tls_stream_open(hc, out, o, false, err);
}

static int starttls_upgrade(mc_host_ctx *hc, mc_stream *s, const mc_connect_opts *o,
                            mc_err **err)
{
    return mc__tls_stream_upgrade(hc, s, o, err);
}

static const mc_transport_ops starttls_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 587,
    .connect = starttls_connect,
    .starttls = starttls_upgrade,
};

static const mc_plugin_desc starttls_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "starttls",
    .version = MC_VERSION_STRING,
    .summary = "SMTP upgraded to TLS with STARTTLS (OpenSSL), certificate and host name verified",
    .ops = &starttls_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    mc__tls_set_host(h);
    return &starttls_desc;
}
