/* sasl: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER encodings (core-internal).
 * Every output buffer is marked secret (wiped on free). */
#ifndef MC_CORE_SASL_H
#define MC_CORE_SASL_H

#include "buf.h"

/** base64("\0" user "\0" password) */
int mc__sasl_plain(mc__buf *out, const char *user, const char *password);
/** base64("user=" U "\x01auth=Bearer " T "\x01\x01") */
int mc__sasl_xoauth2(mc__buf *out, const char *user, const char *token);
/** base64("n,a=" U ",\x01host=" H "\x01port=" P "\x01auth=Bearer " T "\x01\x01");
 *  ',' and '=' in U are escaped as =2C and =3D (RFC 5801). */
int mc__sasl_oauthbearer(mc__buf *out, const char *user, const char *host, unsigned port,
                         const char *token);

/** Decode a 334 challenge from XOAUTH2/OAUTHBEARER: base64 JSON with
 *  status, scope (and schemes / openid-configuration). Missing members
 *  are NULL. @return 0, MC_EPROTO (not base64 or not a JSON object). */
typedef struct mc__sasl_failure {
    char *status;
    char *scope;
    char *schemes;
} mc__sasl_failure;
int  mc__sasl_parse_failure(const char *b64, mc__sasl_failure *out);
void mc__sasl_failure_free(mc__sasl_failure *f);

/** The first of `prefs` (NULL-terminated) that the server offers in
 *  `offered` (space-separated, any case); `forced`, when non-NULL, is the
 *  only candidate. NULL when none in common. */
const char *mc__sasl_choose(const char *const *prefs, const char *offered, const char *forced);

#endif
