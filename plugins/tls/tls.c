/* transport-tls: implicit TLS from the first byte (port 465 by default). */
#include "mailconn/plugin.h"
#include "../common/tls.h"

static int tls_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                       mc_err **err)
{
    return mc__tls_stream_open(hc, out, o, true, err);
}

static const mc_transport_ops tls_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 465,
    .connect = tls_connect,
    .starttls = NULL,
};

static const mc_plugin_desc tls_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "tls",
    .version = MC_VERSION_STRING,
    .summary = "SMTP over implicit TLS (OpenSSL), certificate and host name verified",
    .ops = &tls_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    mc__tls_set_host(h);
    return &tls_desc;
}
