/* oauth-common: what the three OAuth providers (google, microsoft, manual)
 * share. Compiled into each of their modules with hidden visibility: none
 * of these symbols leaves a plugin. */
#ifndef MC_PROVIDERS_OAUTH_COMMON_H
#define MC_PROVIDERS_OAUTH_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "mailconn/plugin.h"

#if defined(__GNUC__)
#define MC__HIDDEN __attribute__((visibility("hidden")))
#else
#define MC__HIDDEN
#endif

/** Keys every OAuth provider accepts (NULL-terminated). */
#define MC__OAUTH_COMMON_KEYS                                                 \
    "user", "client_id", "client_secret", "client_secret_file",               \
    "client_secret_env", "client_secret_command", "client_auth", "scope",     \
    "params", "redirect_uri", "timeout_s", "ca_file", "mechanism",            \
    "access_token_command", "grant", "authorization_url", "token_url",        \
    "device_authorization_url", "revocation_url"

/** SASL mechanisms of every OAuth provider, in preference order. */
MC__HIDDEN extern const char *const mc__oauth_mechanisms[];

/** Keep the host table (call from mc_plugin_entry). */
MC__HIDDEN void mc__oauth_init(const mc_host_api *host);
MC__HIDDEN const mc_host_api *mc__oauth_host(void);

/** Whether any client secret source is configured. */
MC__HIDDEN bool mc__oauth_has_secret(const mc_plugin_cfg *cfg);
/** auth.grant, or "authorization_code" when absent. */
MC__HIDDEN const char *mc__oauth_grant(const mc_plugin_cfg *cfg);
/** Whether tokens come from auth.access_token_command (no endpoints then). */
MC__HIDDEN bool mc__oauth_external_token(const mc_plugin_cfg *cfg);

/** The rules every OAuth provider shares: user, client_id (unless
 *  access_token_command), client_auth, grant, mechanism, and each URL key
 *  present (https://, or http:// to 127.0.0.1, [::1] or localhost). Reports
 *  through host->cfg_error. @return the number of problems reported. */
MC__HIDDEN int mc__oauth_validate(const mc_plugin_cfg *cfg);
/** Check one URL key when present. @return 1 when reported, else 0. */
MC__HIDDEN int mc__oauth_check_url(const mc_plugin_cfg *cfg, const char *key);
/** Whether `url` is acceptable for an OAuth endpoint. */
MC__HIDDEN bool mc__oauth_url_ok(const char *url);

/** Copy src into a profile field of `size` bytes. @return 0 or MC_ECONFIG
 *  (too long: *err names the key). */
MC__HIDDEN int mc__oauth_copy(char *dst, size_t size, const char *src, const char *key,
                              mc_err **err);

/** The authorization parameters: `base` ("k=v", NULL-terminated; may be
 *  NULL) followed by auth.params, a config key replacing a base one of the
 *  same name. The array is kept by the module until it is unloaded (the
 *  same content is returned once), so a profile may borrow it.
 *  @return the array, or NULL when out of memory. */
MC__HIDDEN const char *const *mc__oauth_params(const mc_plugin_cfg *cfg,
                                               const char *const *base);

#endif
