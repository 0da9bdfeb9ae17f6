/* provider-example: a data-only OAuth provider, built out of tree against
 * the installed headers (docs/plugins.md walks through it).
 *
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags mailconn) \
 *      -o auth-example.so provider-example.c
 *   install -m 0644 auth-example.so "$(pkg-config --variable=plugindir mailconn)"
 *
 * A config then uses it as
 *
 *   "auth": { "provider": "example", "user": "me@example.invalid",
 *             "client_id": "...", "region": "eu" }
 *
 * Everything OAuth has in common is the engine's: it accepts and checks the
 * common keys (user, client_id, client_secret and its sources, client_auth,
 * scope, params, redirect_uri, timeout_s, ca_file, mechanism,
 * access_token_command, grant and the endpoint URLs), applies the config's
 * endpoints, scope and params over the defaults returned here, and copies
 * the profile's strings. So the provider lists only its own key ("region"),
 * checks only its own rule, and may build its params in a stack buffer.
 * Its one exported symbol is mc_plugin_entry.
 */
#include <stdio.h>
#include <string.h>

#include <mailconn/plugin.h>

static const mc_host_api *host;

static const char *const example_mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };

/* only the provider's own keys: the common OAuth keys are the engine's */
static const char *const example_keys[] = { "region", NULL };

static const char *const regions[] = { "eu", "us", NULL };

/* Known failures and what to tell the user (matched in OAuth errors and
 * SMTP replies). */
static const mc_hint example_hints[] = {
    { "invalid_grant", "the refresh token expired or was revoked: authorize this server again" },
    { "wrong_region", "the account lives in the other region: set auth.region" },
    { NULL, NULL },
};

static const char *region_of(const mc_plugin_cfg *cfg)
{
    const char *r = host->cfg_string(cfg, "region");
    return r ? r : "eu";
}

/* The provider's own rule; the engine has checked the common keys already.
 * host->cfg_error prefixes the JSON path: servers[N].auth.region. */
static void example_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    if (!host->cfg_has(cfg, "region"))
        return;
    const char *r = host->cfg_string(cfg, "region");
    for (size_t i = 0; r && regions[i]; i++)
        if (strcmp(r, regions[i]) == 0)
            return;
    host->cfg_error(cfg, "region", "must be \"eu\" or \"us\"%s%s%s", r ? ", got \"" : "",
                    r ? r : "", r ? "\"" : "");
}

/* The defaults for this region. A config's authorization_url, token_url,
 * device_authorization_url, revocation_url and scope win over these, and
 * its "params" are merged into ours: the engine does that, not us. */
static int example_profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg, mc_oauth_profile *out,
                           mc_err **err)
{
    (void)hc;
    (void)err;
    const char *r = region_of(cfg);
    snprintf(out->authorization_url, sizeof(out->authorization_url),
             "https://login.%s.example.invalid/oauth2/authorize", r);
    snprintf(out->token_url, sizeof(out->token_url),
             "https://login.%s.example.invalid/oauth2/token", r);
    snprintf(out->device_authorization_url, sizeof(out->device_authorization_url),
             "https://login.%s.example.invalid/oauth2/device", r);
    snprintf(out->revocation_url, sizeof(out->revocation_url),
             "https://login.%s.example.invalid/oauth2/revoke", r);
    snprintf(out->scope, sizeof(out->scope), "https://example.invalid/smtp offline_access");

    /* built on the stack: the engine copies the array and its strings
     * before this call returns */
    char audience[64];
    snprintf(audience, sizeof(audience), "audience=smtp.%s.example.invalid", r);
    const char *params[] = { audience, "access_type=offline", NULL };
    out->params = params;

    out->flows = MC_FLOW_AUTH_CODE | MC_FLOW_PASTE | MC_FLOW_DEVICE;
    out->default_headless = MC_FLOW_DEVICE;
    out->rotates_refresh = true;
    out->refresh_lifetime_days = 90;
    out->hints = example_hints;
    return 0;
}

static const mc_auth_ops example_ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = example_mechanisms,
    .keys = example_keys,
    .smtp_host = "smtp.example.invalid",
    .smtp_port = 465,
    .smtp_transport = "tls",
    .max_connections = 0,
    .oauth = true,
    .validate = example_validate,
    .credentials = NULL,
    .oauth_profile = example_profile,
};

static const mc_plugin_desc example_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_AUTH,
    .name = "example",   /* the file is auth-example.so */
    .version = "1.0",
    .summary = "example OAuth provider (data only; examples/plugin)",
    .ops = &example_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &example_desc;
}
