/* oauth-keys: what the core owns for every OAuth provider (mc_auth_ops.oauth
 * true): the common "auth" keys and their rules, and the profile built from
 * the provider's defaults with the config's common keys applied over them,
 * in storage of the core's own (core-internal). */
#ifndef MC_CORE_OAUTH_KEYS_H
#define MC_CORE_OAUTH_KEYS_H

#include <stdbool.h>

#include "mailconn/plugin.h"

/** The keys every OAuth provider accepts in "auth" (NULL-terminated): user,
 *  client_id, the client secret and its sources, client_auth, scope,
 *  params, redirect_uri, timeout_s, ca_file, mechanism,
 *  access_token_command, grant and the four endpoint URLs. */
extern const char *const mc__oauth_common_keys[];

/** Whether `key` is one of mc__oauth_common_keys. */
bool mc__oauth_common_key(const char *key);

/** The keys `ops` accepts in "auth" besides "provider": ops->keys, plus the
 *  common keys when ops->oauth. NULL-terminated array of borrowed strings
 *  (release the array with free()); NULL when out of memory. */
const char **mc__auth_keys(const mc_auth_ops *ops);

/** Whether `url` is acceptable for an OAuth endpoint: https://HOST..., or
 *  http:// to 127.0.0.1, [::1] or localhost; no space or control byte. */
bool mc__oauth_endpoint_ok(const char *url);

/** Validate a server's "auth" object: for an OAuth provider the common
 *  rules first (user, client_id unless access_token_command, client_auth,
 *  grant, mechanism, each URL key present), then ops->validate (its own
 *  rules). Problems go to cfg->diag with their JSON paths (a line reported
 *  twice, as by a 2.0 provider repeating the common rules, is kept once). */
void mc__auth_validate(mc_host_ctx *hc, const mc_auth_ops *ops, const mc_plugin_cfg *cfg);

/** The profile of an OAuth provider for `cfg`: *out zeroed, filled by
 *  ops->oauth_profile (its defaults), then the config's authorization_url,
 *  token_url, device_authorization_url, revocation_url and scope replace
 *  the provider's, and the config's "params" merge into the provider's (a
 *  config "k" replaces a provider "k=..."). The params array and the hints
 *  are copied into one block the core owns: *own, released with
 *  mc__oauth_profile_release() (out->params and out->hints point into it),
 *  so the provider may hand out stack or temporary strings.
 *  @return 0, the provider's error, MC_ECONFIG (a key too long), MC_ENOMEM. */
int  mc__oauth_profile(mc_host_ctx *hc, const mc_auth_ops *ops, const mc_plugin_cfg *cfg,
                       mc_oauth_profile *out, void **own, mc_err **err);
/** Release what mc__oauth_profile() kept. NULL is fine. */
void mc__oauth_profile_release(void *own);

#endif
