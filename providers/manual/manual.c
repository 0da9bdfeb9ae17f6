/* auth-manual: any OAuth2 provider, every endpoint from the config
 * (XOAUTH2, OAUTHBEARER). No SMTP defaults. */
#include <string.h>

#include "mailconn/plugin.h"
#include "../common/oauth-common.h"

static const mc_host_api *host;

static const char *const manual_keys[] = { MC__OAUTH_COMMON_KEYS, NULL };

static bool client_credentials(const mc_plugin_cfg *cfg)
{
    return strcmp(mc__oauth_grant(cfg), "client_credentials") == 0;
}

static void manual_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    mc__oauth_validate(cfg);
    if (mc__oauth_external_token(cfg))
        return;   /* tokens come from access_token_command: no endpoint is used */
    if (!host->cfg_has(cfg, "token_url"))
        host->cfg_error(cfg, "token_url", "required by the manual provider (the token endpoint)");
    bool has_auth = host->cfg_has(cfg, "authorization_url");
    bool has_device = host->cfg_has(cfg, "device_authorization_url");
    if (!client_credentials(cfg) && !has_auth && !has_device)
        host->cfg_error(cfg, NULL,
                        "the manual provider needs authorization_url or "
                        "device_authorization_url (unless \"grant\" is \"client_credentials\")");
    const char *grant = host->cfg_string(cfg, "grant");
    if (grant && strcmp(grant, "device_code") == 0 && !has_device)
        host->cfg_error(cfg, "device_authorization_url",
                        "required when \"grant\" is \"device_code\"");
}

static int manual_profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg,
                          mc_oauth_profile *out, mc_err **err)
{
    (void)hc;
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    int rc;
#define FIELD(field, key)                                                            \
    if ((rc = mc__oauth_copy(out->field, sizeof(out->field), host->cfg_string(cfg, key), \
                             key, err)) < 0)                                         \
        return rc;
    FIELD(authorization_url, "authorization_url")
    FIELD(token_url, "token_url")
    FIELD(device_authorization_url, "device_authorization_url")
    FIELD(revocation_url, "revocation_url")
    FIELD(scope, "scope")
#undef FIELD
    if (!(out->params = mc__oauth_params(cfg, NULL)))
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    /* the flows follow from the endpoints present */
    out->flows = 0;
    if (out->authorization_url[0])
        out->flows |= MC_FLOW_AUTH_CODE | MC_FLOW_PASTE;
    if (out->device_authorization_url[0])
        out->flows |= MC_FLOW_DEVICE;
    if (out->token_url[0] && mc__oauth_has_secret(cfg))
        out->flows |= MC_FLOW_CLIENT_CREDENTIALS;
    if (out->flows & MC_FLOW_DEVICE)
        out->default_headless = MC_FLOW_DEVICE;
    else if (out->flows & MC_FLOW_PASTE)
        out->default_headless = MC_FLOW_PASTE;
    else
        out->default_headless = out->flows & MC_FLOW_CLIENT_CREDENTIALS;
    out->rotates_refresh = false;
    out->refresh_lifetime_days = 0;
    out->hints = NULL;
    return 0;
}

static const mc_auth_ops manual_ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = mc__oauth_mechanisms,
    .keys = manual_keys,
    .smtp_host = NULL,
    .smtp_port = 0,
    .smtp_transport = NULL,
    .max_connections = 0,
    .oauth = true,
    .validate = manual_validate,
    .credentials = NULL,
    .oauth_profile = manual_profile,
};

static const mc_plugin_desc manual_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_AUTH,
    .name = "manual",
    .version = MC_VERSION_STRING,
    .summary = "any OAuth2 provider, endpoints from the config (XOAUTH2, OAUTHBEARER)",
    .ops = &manual_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    mc__oauth_init(h);
    return &manual_desc;
}
