/* transport-plain: SMTP over TCP in the clear (port 25 by default). */
#include "mailconn/plugin.h"
#include "../common/fdstream.h"

static int plain_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                         mc_err **err)
{
    return mc__fd_stream_open(hc, out, o, err);
}

static const mc_transport_ops plain_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 25,
    .connect = plain_connect,
    .starttls = NULL,
    .security = MC_SECURITY_PLAINTEXT,
};

static const mc_plugin_desc plain_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "plain",
    .version = MC_VERSION_STRING,
    .summary = "SMTP over TCP without encryption",
    .ops = &plain_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    mc__fd_stream_set_host(h);
    return &plain_desc;
}
