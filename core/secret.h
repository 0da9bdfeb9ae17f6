/* secret: resolving passwords and client secrets from their one source
 * (core-internal). */
#ifndef MC_CORE_SECRET_H
#define MC_CORE_SECRET_H

#include "mailconn/plugin.h"

/** Resolve `name` in cfg from inline, <name>_file (first line; refused when
 *  group/other-readable unless under $CREDENTIALS_DIRECTORY, and when others
 *  could change it: mc__file_trusted), <name>_env, or <name>_command
 *  (/bin/sh -c, first line of stdout, 10 s limit, non-zero exit is an
 *  error). A first line longer than 64 KiB is an error, never cut. The value
 *  is registered for redaction in hc (NULL: nowhere). Absent: 0 and
 *  *out = NULL. @return 0 or MC_ESECRET (outcome CONFIG, stage CONFIG),
 *  MC_ENOMEM. */
int mc__secret_resolve(mc_host_ctx *hc, const mc_plugin_cfg *cfg, const char *name, char **out,
                       mc_err **err);

/** Run `command` with /bin/sh -c, return the first line of its stdout
 *  (limit `timeout_ms`; a first line over 64 KiB is an error). Used for *_command and access_token_command.
 *  @return 0, MC_ESECRET. */
int mc__secret_command(const char *command, int timeout_ms, char **out, mc_err **err);

/** Wipe and free. NULL is fine. */
void mc__secret_free(char *s);

#endif
