/* fuzz-token-file: the OAuth engine's token store parser
 * (mc__oauth_store_parse). A file it accepts is written again
 * (mc__oauth_store_serialise) and read back: every member survives, and
 * the identity still matches. */
#include <string.h>

#include "fuzz.h"
#include "oauth-host.h"
#include "oauth.h"

#define FILE_FUZZ_MAX (64 * 1024)

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FILE_FUZZ_MAX)
        return 0;
    fuzz_oauth_host();
    mc__oauth_store s;
    memset(&s, 0x5a, sizeof s);
    int rc = mc__oauth_store_parse((const char *)data, size, &s);
    if (rc != 0) {
        FUZZ_CHECK(rc == MC_EFILE || rc == MC_ENOMEM);
        mc__oauth_store_clear(&s);
        return 0;
    }
    FUZZ_CHECK(!s.access_token || *s.access_token);
    FUZZ_CHECK(!s.refresh_token || *s.refresh_token);

    mc_oauth_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.size = sizeof prof;
    bool url_fits = !s.token_url || strlen(s.token_url) < sizeof prof.token_url;
    if (s.token_url && url_fits)
        memcpy(prof.token_url, s.token_url, strlen(s.token_url) + 1);
    mc_oauth_request req;
    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.server = "work";
    req.provider = s.provider;
    req.client_id = s.client_id;
    req.user = s.user;
    req.profile = &prof;

    char *text = mc__oauth_store_serialise(&req, &s);
    FUZZ_CHECK(text != NULL);
    mc__oauth_store b;
    FUZZ_CHECK(mc__oauth_store_parse(text, strlen(text), &b) == 0);
    FUZZ_CHECK(same(b.provider, s.provider) && same(b.client_id, s.client_id) &&
               same(b.user, s.user));
    if (url_fits) {
        /* a token_url of null is written as "" by the profile */
        FUZZ_CHECK(same(b.token_url, s.token_url ? s.token_url : ""));
        FUZZ_CHECK(mc__oauth_store_identity_matches(&req, &b));
    }
    FUZZ_CHECK(same(b.access_token, s.access_token) && same(b.refresh_token, s.refresh_token));
    FUZZ_CHECK(same(b.scope, s.scope));
    FUZZ_CHECK(b.expires_at == s.expires_at && b.refresh_issued_at == s.refresh_issued_at &&
               b.refresh_used_at == s.refresh_used_at);
    mc__oauth_wipe_free(text);
    mc__oauth_store_clear(&b);
    mc__oauth_store_clear(&s);
    return 0;
}
