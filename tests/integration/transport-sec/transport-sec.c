/* Custom transports for test-transport-security.js (issue 11): one source,
 * one module per declaration. SEC_NAME "clear" declares
 * MC_SECURITY_PLAINTEXT; "liar" declares MC_SECURITY_TLS but connects in
 * the clear (a buggy transport, which send must catch before AUTH). Both
 * take "transport_options" {"fail": "TEXT"}: validate refuses an empty
 * string; connect fails with TEXT, so a test sees the options reach
 * mc_connect_opts.options; with TEXT "nostage:..." the error has no stage,
 * which the core fills in (connect). */
#include <stdio.h>
#include <string.h>

#include "mailconn/plugin.h"
#include "fdstream.h"

#ifndef SEC_NAME
#error SEC_NAME is required
#endif
#ifndef SEC_SECURITY
#error SEC_SECURITY is required
#endif

static const mc_host_api *host;
static const char *const sec_keys[] = { "fail", NULL };

static void sec_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *f = host->cfg_string(cfg, "fail");
    if (host->cfg_has(cfg, "fail") && (!f || !*f))
        host->cfg_error(cfg, "fail", "must be a non-empty string");
}

static int sec_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                       mc_err **err)
{
    const mc_plugin_cfg *opt = o && MC_SIZE_HAS(o, mc_connect_opts, options) ? o->options : NULL;
    const char *f = opt ? host->cfg_string(opt, "fail") : NULL;
    /* "nostage:..." leaves the stage to the caller (the stage filling rule) */
    if (f)
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT,
                           strncmp(f, "nostage:", 8) == 0 ? MC_STAGE_NONE : MC_STAGE_CONNECT,
                           "transport " SEC_NAME ": %s", f);
    return mc__fd_stream_open(hc, out, o, err);
}

static const mc_transport_ops sec_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 25,
    .connect = sec_connect,
    .keys = sec_keys,
    .validate = sec_validate,
    .security = SEC_SECURITY,
};

static const mc_plugin_desc sec_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = SEC_NAME,
    .version = "1",
    .summary = "test transport (" SEC_NAME ")",
    .ops = &sec_ops,
};

MC_PLUGIN_EXPORT const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    mc__fd_stream_set_host(h);
    return &sec_desc;
}
