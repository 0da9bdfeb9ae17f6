/* fuzz-token-store: a token store record as the file store meets it: the
 * bytes are written to <state>/tokens/work.json in a private scratch
 * folder and loaded through mc__oauth_store_load (the openat/O_NOFOLLOW
 * path and its checks), the refresh decision is taken on what was loaded
 * (hostile expires_at and access_issued_at: no overflow, UBSan), and an
 * accepted record is saved (temp file, O_EXCL, renameat) and loaded again
 * unchanged. Tokens that load are always within their character sets, so
 * they can reach SASL framing and a file as they are. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "oauth-host.h"
#include "oauth.h"

#define STORE_FUZZ_MAX (64 * 1024)

static char state_dir[256];
static char token_path[300];

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void scratch(void)
{
    if (state_dir[0])
        return;
    /* tmpfs when there is one: the store fsyncs every save */
    char base[64];
    struct stat st;
    snprintf(base, sizeof base, "%s/fuzz-token-store-XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                 ? "/dev/shm" : "/tmp");
    FUZZ_CHECK(mkdtemp(base) != NULL);
    snprintf(state_dir, sizeof state_dir, "%s/state", base);
    snprintf(token_path, sizeof token_path, "%s/tokens/work.json", state_dir);
}

static void put_file(const uint8_t *data, size_t size)
{
    int fd = open(token_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > STORE_FUZZ_MAX)
        return 0;
    fuzz_oauth_host();
    scratch();

    mc_oauth_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.size = sizeof prof;
    snprintf(prof.token_url, sizeof prof.token_url, "https://login.example.com/token");
    mc_oauth_request req;
    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.server = "work";
    req.provider = "microsoft";
    req.client_id = "client";
    req.user = "me@example.org";
    req.state_dir = state_dir;
    req.refresh_margin_s = size ? data[0] * 10 : 600;
    req.profile = &prof;
    mc__oauth_op op;
    FUZZ_CHECK(mc__oauth_op_init(&op, NULL, &req, NULL) == 0);

    static bool made;
    if (!made) {
        /* the folders, made by the store itself (0700) */
        mc__oauth_store empty;
        memset(&empty, 0, sizeof empty);
        FUZZ_CHECK(mc__oauth_store_save(&op, &req, &empty, NULL) == 0);
        made = true;
    }
    put_file(data, size);

    mc__oauth_store s;
    bool found = false;
    mc_err *err = NULL;
    int rc = mc__oauth_store_load(&op, &req, &s, &found, &err);
    if (rc) {
        FUZZ_CHECK(rc == MC_EFILE || rc == MC_ENOMEM);
        FUZZ_CHECK(!found && err && err->message && err->stage == MC_STAGE_OAUTH);
        FUZZ_CHECK(!s.access_token && !s.refresh_token);
        fuzz_oauth_error_free(err);
        return 0;
    }
    FUZZ_CHECK(found && !err);
    if (s.access_token)
        FUZZ_CHECK(mc__oauth_access_token_ok(s.access_token, strlen(s.access_token)));
    if (s.refresh_token)
        FUZZ_CHECK(mc__oauth_refresh_token_ok(s.refresh_token, strlen(s.refresh_token)));

    /* the refresh decision at a few moments, hostile numbers included */
    static const long long moments[] = { 0, 1700000000LL, 9223372036854775807LL,
                                         -9223372036854775807LL - 1 };
    for (size_t i = 0; i < sizeof moments / sizeof *moments; i++) {
        bool u = mc__oauth_store_usable(&req, &s, moments[i]);
        FUZZ_CHECK(!u || (s.access_token && s.expires_at > moments[i]));
    }

    /* saved and loaded again: the same record */
    FUZZ_CHECK(mc__oauth_store_save(&op, &req, &s, NULL) == 0);
    mc__oauth_store b;
    FUZZ_CHECK(mc__oauth_store_load(&op, &req, &b, &found, NULL) == 0 && found);
    FUZZ_CHECK(mc__oauth_store_identity_matches(&req, &b));
    FUZZ_CHECK(same(b.access_token, s.access_token) && same(b.refresh_token, s.refresh_token));
    FUZZ_CHECK(same(b.scope, s.scope));
    FUZZ_CHECK(b.expires_at == s.expires_at && b.access_issued_at == s.access_issued_at &&
               b.refresh_issued_at == s.refresh_issued_at &&
               b.refresh_used_at == s.refresh_used_at);
    mc__oauth_store_clear(&b);
    mc__oauth_store_clear(&s);
    return 0;
}
