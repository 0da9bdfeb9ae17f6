/* Test providers for test-oauthkeys (issue 11: the engine owns the common
 * OAuth keys and copies the profile's strings).
 *
 * Default build, auth-dataonly.so (ABI 2.1): a data-only OAuth provider as
 * an out-of-tree author writes it. Its keys list only its own "region"; its
 * validate checks only that; its profile's params are built in a scratch
 * buffer it rewrites on every call (as good as the stack: gone once the
 * call returns), so a core that borrowed them would see another call's.
 *
 * -DLEGACY, auth-legacy20.so (ABI 2.0): a provider written before, which
 * lists the common keys itself, repeats a common rule and applies the
 * config's overrides itself: it must keep working unchanged. */
#include <stdio.h>
#include <string.h>

#include "mailconn/plugin.h"

static const mc_host_api *host;

static const char *const mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };

#ifndef LEGACY
static const char *const keys[] = { "region", NULL };
#else
static const char *const keys[] = {
    "user", "client_id", "client_secret", "client_secret_file", "client_secret_env",
    "client_secret_command", "client_auth", "scope", "params", "redirect_uri", "timeout_s",
    "ca_file", "mechanism", "access_token_command", "grant", "authorization_url", "token_url",
    "device_authorization_url", "revocation_url", "region", NULL,
};
#endif

static const mc_hint hints[] = { { "region_down", "try another auth.region" }, { NULL, NULL } };

static const char *region(const mc_plugin_cfg *cfg)
{
    const char *r = host->cfg_string(cfg, "region");
    return r ? r : "eu";
}

static void validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *r = host->cfg_string(cfg, "region");
    if (r && strcmp(r, "eu") != 0 && strcmp(r, "us") != 0)
        host->cfg_error(cfg, "region", "must be \"eu\" or \"us\", got \"%s\"", r);
#ifdef LEGACY
    /* a 2.0 provider's copy of a common rule: reported once all the same */
    if (!host->cfg_has(cfg, "user"))
        host->cfg_error(cfg, "user", "required (the account that logs in to the SMTP server)");
#endif
}

/* Rewritten on every call: the params of one call are gone at the next. */
static char scratch[3][64];
static const char *scratch_params[4];

static int profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg, mc_oauth_profile *out,
                   mc_err **err)
{
    (void)hc;
    (void)err;
    const char *r = region(cfg);
    memset(scratch, 'X', sizeof(scratch));
    snprintf(scratch[0], sizeof(scratch[0]), "region=%s", r);
    snprintf(scratch[1], sizeof(scratch[1]), "audience=mail-%s", r);
    size_t n = 0;
    scratch_params[n++] = scratch[0];
    scratch_params[n++] = scratch[1];
#ifdef LEGACY
    /* applies the config itself, as 2.0 providers did: its params merged
     * (a config "k" replacing its own), its endpoints over the defaults */
    const char *name = NULL, *v = NULL;
    for (size_t i = 0; (v = host->cfg_member(cfg, "params", i, &name)) || name; i++, name = NULL) {
        if (!v || n >= 3)
            continue;
        size_t klen = strlen(name);
        for (size_t j = 0; j < n; j++)
            if (!strncmp(scratch_params[j], name, klen) && scratch_params[j][klen] == '=')
                scratch_params[j] = scratch[2] + 63;   /* "" marks it removed */
        snprintf(scratch[2], 63, "%s=%s", name, v);
        scratch[2][63] = '\0';
        scratch_params[n++] = scratch[2];
    }
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        if (*scratch_params[j])
            scratch_params[k++] = scratch_params[j];
    n = k;
    const char *t = host->cfg_string(cfg, "token_url");
    snprintf(out->token_url, sizeof(out->token_url), "%s", t ? t : "https://legacy.invalid/token");
#else
    snprintf(out->token_url, sizeof(out->token_url), "https://%s.example.invalid/token", r);
#endif
    scratch_params[n] = NULL;
    snprintf(out->authorization_url, sizeof(out->authorization_url),
             "https://%s.example.invalid/authorize", r);
    snprintf(out->scope, sizeof(out->scope), "mail.send");
    out->params = scratch_params;
    out->flows = MC_FLOW_AUTH_CODE | MC_FLOW_PASTE;
    out->default_headless = MC_FLOW_PASTE;
    out->hints = hints;
    return 0;
}

static const mc_auth_ops ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = mechanisms,
    .keys = keys,
    .smtp_host = "smtp.example.invalid",
    .smtp_port = 465,
    .smtp_transport = "tls",
    .oauth = true,
    .validate = validate,
    .oauth_profile = profile,
};

static const mc_plugin_desc desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
#ifdef LEGACY
    .abi_minor = 0,
    .name = "legacy20",
#else
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .name = "dataonly",
#endif
    .kind = MC_PLUGIN_AUTH,
    .version = "1",
    .summary = "test provider (issue 11: data-only OAuth)",
    .ops = &ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &desc;
}
