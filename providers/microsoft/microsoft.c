/* auth-microsoft: Exchange Online / Microsoft 365 / Outlook.com over OAuth2
 * (XOAUTH2, OAUTHBEARER). Default endpoints built from its own keys,
 * authority + tenant; the core owns the common OAuth keys and their rules
 * and applies the config's endpoints and scope over these defaults. */
#include <stdio.h>
#include <string.h>

#include "mailconn/plugin.h"

#define MS_AUTHORITY      "https://login.microsoftonline.com"
#define MS_TENANT         "common"
#define MS_SCOPE          "https://outlook.office.com/SMTP.Send offline_access"
#define MS_SCOPE_APP_ONLY "https://outlook.office365.com/.default"

static const mc_host_api *host;

/* only its own: the common OAuth keys are the core's */
static const char *const ms_keys[] = { "authority", "tenant", NULL };
static const char *const ms_mechanisms[] = { "XOAUTH2", "OAUTHBEARER", NULL };

static const mc_hint ms_hints[] = {
    { "AADSTS7000012",
      "the grant was obtained for another tenant: set auth.tenant to the tenant of the account" },
    { "AADSTS700082",
      "the refresh token expired from inactivity" },
    { "AADSTS65001",
      "consent is missing for the app or the SMTP.Send scope: have the user or an "
      "administrator grant it" },
    { "AADSTS7000218",
      "a client secret is required, or enable \"Allow public client flows\" for the app" },
    /* found since (PROVIDERS.md); UI-neutral: they name what to do, never a
     * command of one front end */
    { "AADSTS50173",
      "the grant was revoked (the password was changed or reset): authorize this server again" },
    { "AADSTS70043",
      "the refresh token expired under a Conditional Access sign-in frequency policy: "
      "authorize this server again (the tenant's administrator sets how often)" },
    { "AADSTS7000222",
      "the client secret has expired: create a new one in the app registration "
      "(Certificates & secrets) and set it as auth.client_secret" },
    { "AADSTS700016",
      "the application is not known in this tenant: check auth.client_id and auth.tenant "
      "(a single-tenant app needs its own tenant, not \"common\")" },
    { "5.7.139",
      "SMTP AUTH is disabled for the tenant or the mailbox: "
      "Set-CASMailbox -SmtpClientAuthenticationDisabled $false" },
    { "5.7.30",
      "basic authentication for SMTP is off for this tenant: use OAuth (the microsoft "
      "provider) and authorize this server" },
    { "SendAsDenied",
      "the signed-in user has no Send As right for the From address (a shared mailbox): "
      "have an administrator grant it, or send from the user's own address" },
    { "4.2.0",
      "Exchange could not log on to the mailbox (transient): often auth.user is not the "
      "mailbox's user, or the mailbox is being moved; try again later" },
    { "5.7.3",
      "wrong auth.user for the token, or a token for another audience (such as Graph "
      "instead of outlook.office.com), or SMTP AUTH disabled for the mailbox" },
    { NULL, NULL },
};

static bool tenant_ok(const char *t)
{
    if (!*t)
        return false;
    for (const char *p = t; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* authority without trailing slashes, into buf. */
static size_t authority_base(const mc_plugin_cfg *cfg, char *buf, size_t size)
{
    const char *a = host->cfg_string(cfg, "authority");
    if (!a)
        a = MS_AUTHORITY;
    size_t len = strlen(a);
    while (len > 0 && a[len - 1] == '/')
        len--;
    if (len >= size)
        len = size - 1;
    memcpy(buf, a, len);
    buf[len] = '\0';
    return len;
}

/* <authority>/<tenant>/oauth2/v2.0/<what>. @return 0 or -1 when too long. */
static int build_url(const mc_plugin_cfg *cfg, const char *what, char *out, size_t size)
{
    char base[MC_URL_MAX];
    authority_base(cfg, base, sizeof(base));
    const char *tenant = host->cfg_string(cfg, "tenant");
    int n = snprintf(out, size, "%s/%s/oauth2/v2.0/%s", base, tenant ? tenant : MS_TENANT, what);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* The rule of the core's endpoint keys, for auth.authority. */
static bool url_ok(const char *url)
{
    static const char *const loopback[] = { "127.0.0.1", "[::1]", "localhost", NULL };
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    if (strncmp(url, "https://", 8) == 0)
        return url[8] != '\0' && url[8] != '/' && url[8] != ':';
    if (strncmp(url, "http://", 7) == 0) {
        const char *h = url + 7;
        for (size_t i = 0; loopback[i]; i++) {
            size_t n = strlen(loopback[i]);
            if (strncmp(h, loopback[i], n) == 0 && (h[n] == ':' || h[n] == '/' || h[n] == '\0'))
                return true;
        }
    }
    return false;
}

static void ms_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *t = host->cfg_string(cfg, "tenant");
    if (t && !tenant_ok(t))
        host->cfg_error(cfg, "tenant",
                        "must be a tenant ID, a domain, \"common\", \"organizations\" or "
                        "\"consumers\" ([A-Za-z0-9.-], not empty), got \"%s\"", t);
    const char *a = host->cfg_string(cfg, "authority");
    if (!a)
        return;
    char url[MC_URL_MAX];
    if (strlen(a) >= MC_URL_MAX)
        host->cfg_error(cfg, "authority", "must be at most %d bytes long", MC_URL_MAX - 1);
    else if (!url_ok(a))
        host->cfg_error(cfg, "authority",
                        "must be an https:// URL (http:// only to 127.0.0.1, [::1] or "
                        "localhost), got \"%s\"", a);
    else if (build_url(cfg, "devicecode", url, sizeof(url)) < 0)
        host->cfg_error(cfg, "authority", "too long to build the endpoint URLs");
}

/* The defaults; an explicit endpoint or scope in the config is applied over
 * them by the core. */
static int ms_profile(mc_host_ctx *hc, const mc_plugin_cfg *cfg,
                      mc_oauth_profile *out, mc_err **err)
{
    (void)hc;
    static const struct { const char *key, *what; size_t off; } urls[] = {
        { "authorization_url", "authorize", offsetof(mc_oauth_profile, authorization_url) },
        { "token_url", "token", offsetof(mc_oauth_profile, token_url) },
        { "device_authorization_url", "devicecode",
          offsetof(mc_oauth_profile, device_authorization_url) },
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char *dst = (char *)out + urls[i].off;
        /* too long matters only when the config gives no explicit one */
        if (build_url(cfg, urls[i].what, dst, MC_URL_MAX) < 0) {
            dst[0] = '\0';
            if (!host->cfg_has(cfg, urls[i].key))
                return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                                   "auth.authority: too long to build the endpoint URLs");
        }
    }
    /* Microsoft has no revocation endpoint: only an explicit one is used */
    const char *grant = host->cfg_string(cfg, "grant");
    snprintf(out->scope, sizeof(out->scope), "%s",
             grant && strcmp(grant, "client_credentials") == 0 ? MS_SCOPE_APP_ONLY : MS_SCOPE);
    out->params = NULL;
    out->flows = MC_FLOW_AUTH_CODE | MC_FLOW_PASTE | MC_FLOW_DEVICE | MC_FLOW_CLIENT_CREDENTIALS;
    out->default_headless = MC_FLOW_DEVICE;
    out->rotates_refresh = true;
    out->refresh_lifetime_days = 90;
    out->hints = ms_hints;
    return 0;
}

static const mc_auth_ops ms_ops = {
    .size = sizeof(mc_auth_ops),
    .mechanisms = ms_mechanisms,
    .keys = ms_keys,
    .smtp_host = "smtp.office365.com",
    .smtp_port = 587,
    .smtp_transport = "starttls",
    .max_connections = 3,
    .oauth = true,
    .validate = ms_validate,
    .credentials = NULL,
    .oauth_profile = ms_profile,
};

static const mc_plugin_desc ms_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_AUTH,
    .name = "microsoft",
    .version = MC_VERSION_STRING,
    .summary = "Microsoft 365, Exchange Online, Outlook.com: OAuth2 (XOAUTH2, OAUTHBEARER)",
    .ops = &ms_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &ms_desc;
}
