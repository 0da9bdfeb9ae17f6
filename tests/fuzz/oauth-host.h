/* oauth-host: the host table the OAuth engine's fuzz targets hand the
 * engine sources compiled into them (the engine never links the core),
 * like tests/unit/test-oauth.c does. */
#ifndef MC_FUZZ_OAUTH_HOST_H
#define MC_FUZZ_OAUTH_HOST_H

#include "mailconn/plugin.h"

/** Install the table as mc__oauth_host (idempotent). */
void fuzz_oauth_host(void);
/** Free an mc_err made by the table's error(); NULL is fine. */
void fuzz_oauth_error_free(mc_err *e);

#endif
