/* auth-google: Gmail and Google Workspace over OAuth2 (XOAUTH2,
 * OAUTHBEARER). Data plus its own rules: the core owns the common OAuth keys
 * and their rules, and applies the config's over these defaults; the OAuth
 * engine runs the flows. */
#include <stdio.h>
#include <string.h>

#include "mailconn/plugin.h"

#define GOOGLE_AUTHORIZATION_URL "https://accounts.google.com/o/oauth2/v2/auth"
#define GOOGLE_TOKEN_URL         "https://oauth2.googleapis.com/token"
#define GOOGLE_DEVICE_URL        "https://oauth2.googleapis.com/device/code"
#define GOOGLE_REVOCATION_URL    "https://oauth2.googleapis.com/revoke"
#define GOOGLE_SCOPE             "https://mail.google.com/"

static const mc_host_api *host;

static const char *const google_mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };
/* no keys of its own: the common OAuth keys are the core's */
static const char *const google_keys[] = { NULL };

/* access_type=offline and prompt=consent: without them no refresh token */
static const char *const google_params[] = { "access_type=offline", "prompt=consent", NULL };

static const mc_hint google_hints[] = {
    { "invalid_scope",
      "Google refused the scope: its device flow does not grant the Gmail scope "
      "(https://mail.google.com/), so authorize with the browser or paste flow "
      "(grant \"authorization_code\"); otherwise check auth.scope" },
    { "invalid_grant",
      "the refresh token expired or was revoked; when this happens within days of "
      "authorizing, the app's OAuth consent screen is still in Testing status, "
      "where refresh tokens die after 7 days: set it to \"In production\"" },
    { "5.7.8",
      "Gmail refused the token: check auth.user matches the account that authorized" },
    { NULL, NULL },
};

static void google_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *grant = host->cfg_string(cfg, "grant");
    if (grant && strcmp(grant, "device_code") == 0)
        host->cfg_error(cfg, "grant",
                        "\"device_code\" is not allowed for Gmail: Google's device flow does "
                        "not grant the https://mail.google.com/ scope (invalid_scope); use "
                        "\"authorization_code\" (browser or paste)");
    else if (grant && strcmp(grant, "client_credentials") == 0)
        host->cfg_error(cfg, "grant",
                        "\"client_credentials\" is not offered by Google for Gmail; use "
                        "\"authorization_code\" (browser or paste)");
}

static int google_profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg,
                          mc_oauth_profile *out, mc_err **err)
{
    (void)hc;
    (void)cfg;
    (void)err;
    snprintf(out->authorization_url, sizeof(out->authorization_url), "%s", GOOGLE_AUTHORIZATION_URL);
    snprintf(out->token_url, sizeof(out->token_url), "%s", GOOGLE_TOKEN_URL);
    snprintf(out->device_authorization_url, sizeof(out->device_authorization_url), "%s",
             GOOGLE_DEVICE_URL);
    snprintf(out->revocation_url, sizeof(out->revocation_url), "%s", GOOGLE_REVOCATION_URL);
    snprintf(out->scope, sizeof(out->scope), "%s", GOOGLE_SCOPE);
    out->params = google_params;
    out->flows = MC_FLOW_AUTH_CODE | MC_FLOW_PASTE;
    out->default_headless = MC_FLOW_PASTE;
    out->rotates_refresh = false;
    out->refresh_lifetime_days = 0;
    out->refresh_testing_days = 7;   /* apps left in "Testing" status */
    out->hints = google_hints;
    return 0;
}

static const mc_auth_ops google_ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = google_mechanisms,
    .keys = google_keys,
    .smtp_host = "smtp.gmail.com",
    .smtp_port = 465,
    .smtp_transport = "tls",
    .max_connections = 0,
    .oauth = true,
    .validate = google_validate,
    .credentials = NULL,
    .oauth_profile = google_profile,
};

static const mc_plugin_desc google_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_AUTH,
    .name = "google",
    .version = MC_VERSION_STRING,
    .summary = "Gmail and Google Workspace: OAuth2 (XOAUTH2, OAUTHBEARER)",
    .ops = &google_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &google_desc;
}
