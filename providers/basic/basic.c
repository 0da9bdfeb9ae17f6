/* auth-basic: user name and password (SASL PLAIN, LOGIN). */
#include <string.h>

#include "mailconn/plugin.h"

static const mc_host_api *host;

static const char *const basic_mechanisms[] = { "PLAIN", "LOGIN", NULL };

static const char *const basic_keys[] = {
    "user", "password", "password_file", "password_env", "password_command", "mechanism", NULL,
};

static const char *const password_sources[] = {
    "password", "password_file", "password_env", "password_command", NULL,
};

static void basic_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *s;
    if (!host->cfg_has(cfg, "user"))
        host->cfg_error(cfg, "user", "required (the user name to log in with)");
    else if ((s = host->cfg_string(cfg, "user")) && !*s)
        host->cfg_error(cfg, "user", "must not be empty");

    bool any = false;
    for (size_t i = 0; password_sources[i]; i++)
        any = any || host->cfg_has(cfg, password_sources[i]);
    if (!any)
        host->cfg_error(cfg, NULL,
                        "needs one of password, password_file, password_env, password_command");

    if ((s = host->cfg_string(cfg, "mechanism")) && strcmp(s, "PLAIN") != 0
        && strcmp(s, "LOGIN") != 0)
        host->cfg_error(cfg, "mechanism", "must be \"PLAIN\" or \"LOGIN\", got \"%s\"", s);
}

static int basic_credentials(mc_host_ctx *hc, const mc_plugin_cfg *cfg, mc_credentials *out,
                             mc_err **err)
{
    out->user = NULL;
    out->password = NULL;
    const char *user = host->cfg_string(cfg, "user");
    if (!user)
        return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                           "auth.user: required (the user name to log in with)");
    char *password = NULL;
    int rc = host->secret(hc, cfg, "password", &password, err);
    if (rc < 0)
        return rc;
    if (!password)
        return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                           "auth: needs one of password, password_file, password_env, "
                           "password_command");
    if (!(out->user = host->strdup(user))) {
        host->free_secret(password);
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    }
    out->password = password;
    return 0;
}

static const mc_auth_ops basic_ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = basic_mechanisms,
    .keys = basic_keys,
    .smtp_host = NULL,
    .smtp_port = 0,
    .smtp_transport = NULL,
    .max_connections = 0,
    .oauth = false,
    .validate = basic_validate,
    .credentials = basic_credentials,
    .oauth_profile = NULL,
};

static const mc_plugin_desc basic_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_AUTH,
    .name = "basic",
    .version = MC_VERSION_STRING,
    .summary = "user name and password (PLAIN, LOGIN)",
    .ops = &basic_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &basic_desc;
}
