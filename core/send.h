/* send: the pipeline server -> transport -> EHLO/STARTTLS -> AUTH ->
 * MAIL/RCPT/DATA, sessions and the pool (core-internal). */
#ifndef MC_CORE_SEND_H
#define MC_CORE_SEND_H

#include "context.h"
#include "smtp.h"

/** Open a session, reporting each stage's reply to on_stage (mailconn test). */
int mc__session_open_ex(mc_session **out, mc_context *ctx, const char *server,
                        mc__stage_fn *on_stage, void *stage_payload, mc_err **err);

/** The TLS facts of the session's stream (borrowed). */
const mc_stream *mc__session_stream(const mc_session *s);

/** Build the OAuth request for a server (strings borrowed from the config,
 *  except the resolved client secret and the profile's params and hints,
 *  which it owns: release with mc__oauth_request_free).
 *  *engine: the loaded engine's ops. @return 0, MC_EPLUGIN, MC_ESECRET. */
typedef struct mc__oauth_req {
    mc_oauth_request  req;
    mc_oauth_profile  profile;
    char             *secret;
    const mc_oauth_engine_ops *engine;
    void             *profile_own;   /* profile.params and .hints (mc__oauth_profile) */
} mc__oauth_req;
int  mc__oauth_request(mc_context *ctx, const mc_server *srv, mc__oauth_req *out, mc_err **err);
/** The warning for a refresh token issued at `issued` (Unix time) near its
 *  provider's cliff, written to buf ("refresh-token-near-90-day-limit"
 *  within 14 days of refresh_lifetime_days; "refresh-token-near-7-day-
 *  testing-limit" during the last day before refresh_testing_days — past
 *  it the token still works, so the app is not in test status). @return
 *  the length written, 0 when there is nothing to warn about. The one rule
 *  of `mailconn servers` and of the top-level log. */
size_t mc__refresh_warning(char *buf, size_t size, const mc_oauth_profile *p,
                           long long issued, long long now);
void mc__oauth_request_free(mc__oauth_req *r);
/** mc__oauth_request, resolving the client secret only when asked: the
 *  token state (`mailconn servers`) needs the identity, not the secret. */
int  mc__oauth_request_ex(mc_context *ctx, const mc_server *srv, bool resolve_secret,
                          mc__oauth_req *out, mc_err **err);

#endif
