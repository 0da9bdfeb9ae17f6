/* fuzz-token-response: the OAuth engine's token endpoint answers: a
 * success body (mc__oauth_parse_tokens) and an error answer with its
 * HTTP status (mc__oauth_error_from, with a profile's hints as for
 * Microsoft). The first byte picks the status and whether the caller
 * polls (device grant); the rest is the body. */
#include <string.h>

#include "fuzz.h"
#include "oauth-host.h"
#include "oauth.h"

#define BODY_FUZZ_MAX (64 * 1024)   /* the engine caps bodies at 1 MB */

static const mc_hint hints[] = {
    { "AADSTS700082", "the refresh token expired from inactivity" },
    { "AADSTS50076", "multi-factor authentication is required" },
    { "invalid_grant", "the grant was revoked" },
    { NULL, NULL },
};

static void check_error(int rc, const mc_err *err)
{
    FUZZ_CHECK(err && err->code == rc && err->message && err->stage == MC_STAGE_OAUTH);
    /* the server's text goes into one line */
    FUZZ_CHECK(!strpbrk(err->message, "\r\n"));
    FUZZ_CHECK(!err->hint || !strpbrk(err->hint, "\r\n"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = { 200, 400, 401, 403, 429, 500, 502, 503 };
    if (size == 0 || size > BODY_FUZZ_MAX)
        return 0;
    fuzz_oauth_host();
    long status = statuses[data[0] & 7];
    bool polling = data[0] & 8;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    mc__oauth_tokens t;
    memset(&t, 0x5a, sizeof t);
    mc_err *err = NULL;
    int rc = mc__oauth_parse_tokens(body, len, &t, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err && t.access_token && *t.access_token);
        FUZZ_CHECK(t.expires_in >= -1);
        FUZZ_CHECK(!t.refresh_token || *t.refresh_token);
    } else {
        FUZZ_CHECK(rc == MC_EOAUTH);
        check_error(rc, err);
        FUZZ_CHECK(err->outcome == MC_OUTCOME_TRANSIENT && err->transient);
        FUZZ_CHECK(!t.access_token && !t.refresh_token && !t.scope);
    }
    mc__oauth_tokens_clear(&t);
    fuzz_oauth_error_free(err);

    mc_oauth_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.size = sizeof prof;
    snprintf(prof.token_url, sizeof prof.token_url, "https://login.example.com/token");
    prof.hints = hints;
    mc_oauth_request req;
    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.server = "work";
    req.client_id = "client";
    req.profile = &prof;
    err = NULL;
    char *oerr = NULL;
    rc = mc__oauth_error_from(status, body, len, &req, polling ? &oerr : NULL, &err);
    if (rc == MC_ETEMP) {
        /* device polling goes on: no error, the RFC 6749 code handed back */
        FUZZ_CHECK(polling && !err && oerr);
        FUZZ_CHECK(!strcmp(oerr, "authorization_pending") || !strcmp(oerr, "slow_down"));
    } else {
        FUZZ_CHECK(rc == MC_EOAUTH || rc == MC_EAUTH || rc == MC_ECONFIG);
        check_error(rc, err);
        if (status >= 500)
            FUZZ_CHECK(rc == MC_EOAUTH && err->transient);
        if (rc == MC_EAUTH && err->outcome == MC_OUTCOME_AUTH && oerr &&
            !strcmp(oerr, "invalid_grant"))
            FUZZ_CHECK(err->hint && strstr(err->hint, "authorize server") &&
                       err->action == MC_ACTION_REAUTHORIZE);
    }
    free(oerr);
    fuzz_oauth_error_free(err);
    return 0;
}
