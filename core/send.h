/* send: the pipeline server -> transport -> EHLO/STARTTLS -> AUTH ->
 * MAIL/RCPT/DATA, sessions and the pool (core-internal). */
#ifndef MC_CORE_SEND_H
#define MC_CORE_SEND_H

#include "context.h"
#include "smtp.h"

/** Open a session, reporting each stage's reply to on_stage (mailconn test). */
int mc__session_open_ex(mc_session **out, mc_context *ctx, const char *server,
                        mc__stage_fn *on_stage, void *stage_payload, mc_error **err);

/** The TLS facts of the session's stream (borrowed). */
const mc_stream *mc__session_stream(const mc_session *s);

/** Build the OAuth request for a server (strings borrowed from the config,
 *  except the resolved client secret: release with mc__oauth_request_free).
 *  *engine: the loaded engine's ops. @return 0, MC_EPLUGIN, MC_ESECRET. */
typedef struct mc__oauth_req {
    mc_oauth_request  req;
    mc_oauth_profile  profile;
    char             *secret;
    const mc_oauth_engine_ops *engine;
} mc__oauth_req;
int  mc__oauth_request(mc_context *ctx, const mc_server *srv, mc__oauth_req *out, mc_error **err);
void mc__oauth_request_free(mc__oauth_req *r);
/** mc__oauth_request, resolving the client secret only when asked: the
 *  token state (`mailconn servers`) needs the identity, not the secret. */
int  mc__oauth_request_ex(mc_context *ctx, const mc_server *srv, bool resolve_secret,
                          mc__oauth_req *out, mc_error **err);

#endif
