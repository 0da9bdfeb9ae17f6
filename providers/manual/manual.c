/* auth-manual: any OAuth2 provider, every endpoint from the config
 * (XOAUTH2, OAUTHBEARER). No SMTP defaults, no endpoint defaults: the core
 * owns the common OAuth keys and their rules and puts the config's
 * endpoints into the profile; this adds the rule that they are there. */
#include <string.h>

#include "mailconn/plugin.h"

static const mc_host_api *host;

static const char *const manual_mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };
/* no keys of its own: the common OAuth keys are the core's */
static const char *const manual_keys[] = { NULL };

static bool client_credentials(const mc_plugin_cfg *cfg)
{
    const char *g = host->cfg_string(cfg, "grant");
    return g && strcmp(g, "client_credentials") == 0;
}

static bool has_secret(const mc_plugin_cfg *cfg)
{
    static const char *const keys[] = {
        "client_secret", "client_secret_file", "client_secret_env", "client_secret_command", NULL,
    };
    for (size_t i = 0; keys[i]; i++)
        if (host->cfg_has(cfg, keys[i]))
            return true;
    return false;
}

static void manual_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    if (host->cfg_has(cfg, "access_token_command"))
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

/* A non-empty string key. */
static bool present(const mc_plugin_cfg *cfg, const char *key)
{
    const char *s = host->cfg_string(cfg, key);
    return s && *s;
}

static int manual_profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg,
                          mc_oauth_profile *out, mc_err **err)
{
    (void)hc;
    (void)err;
    /* no defaults: the core fills the endpoints, scope and params from the
     * config; the flows follow from the endpoints present */
    out->flows = 0;
    if (present(cfg, "authorization_url"))
        out->flows |= MC_FLOW_AUTH_CODE | MC_FLOW_PASTE;
    if (present(cfg, "device_authorization_url"))
        out->flows |= MC_FLOW_DEVICE;
    if (present(cfg, "token_url") && has_secret(cfg))
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
    .mechanisms = manual_mechanisms,
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
    return &manual_desc;
}
