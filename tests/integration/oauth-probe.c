/* oauth-probe: run one OAuth engine operation for tests/integration/test-oauth.js.
 * Loads engine-oauth.so and an OAuth provider plugin through the core
 * registry; the provider turns the "auth" JSON into a profile, as in a config.
 *
 *   oauth-probe OP --server NAME --state DIR --provider P --auth JSON
 *               [--threads N] [--port N] [--browser CMD] [--wait S]
 *               [--refresh-token-file F] [--token-file F] [-v]
 *   OP: token | invalidate | browser | paste | device | import | revoke | status
 *
 * "auth" is a server's auth object: client_id, client_secret (inline here),
 * client_auth, user, grant, scope, ca_file, timeout_s, redirect_uri,
 * refresh_margin_s and the provider's endpoint keys.
 *
 * Prints a single result line on stdout (prompts of the interactive flows
 * come before it, each as "say <line>"); never a token, only the first 16
 * hex digits of its SHA-256:
 *   ok token sha256=<16 hex> [threads=N distinct=K]
 *   ok status stored=0|1 mismatch=0|1 access_expires=N refresh_issued=N refresh_used=N
 *   ok <op>
 *   error code=<NAME> outcome=<n> exit=<sysexits> message=<...> hint=<...>
 * Exit: 0, the outcome's sysexits code, or 2 for usage problems.
 * -v (or MAILCONN_PROBE_DEBUG) logs at debug level on stderr (redacted). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mailconn/plugin.h"
#include "config.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "oauth-keys.h"

typedef struct probe {
    const mc_oauth_engine_ops *engine;
    mc_oauth_request           req;
    mc_oauth_profile           profile;
} probe;

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

static int jint(json_object *o, const char *key, int dflt)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int))
        return json_object_get_int(v);
    return dflt;
}

static void sha_prefix(const char *token, char out[17])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int report(mc_err *err, int rc)
{
    if (!rc)
        return 0;
    mc_outcome outcome = err ? err->outcome : MC_OUTCOME_PERMANENT;
    int code = mc_outcome_exit_code(outcome);
    printf("error code=%s outcome=%d exit=%d transient=%d message=%s hint=%s\n",
           mc_error_name(rc), (int)outcome, code, err && err->transient ? 1 : 0,
           err && err->message ? err->message : "-",
           err && err->hint ? err->hint : "-");
    return code;
}

static void say(const char *line, void *payload)
{
    (void)payload;
    printf("say %s\n", line);
    fflush(stdout);
}

static char *ask(const char *prompt, void *payload)
{
    (void)payload;
    printf("ask %s\n", prompt);
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* The probe's own context (what a mc_context hands the engine): its lines
 * to stderr, --state as its state folder, no token store of an application. */
static mc_host_ctx hc;

typedef struct worker {
    probe     *p;
    pthread_t  th;
    char      *token;
    mc_err  *err;
    int        rc;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    w->rc = w->p->engine->token(&hc, &w->p->req, &w->token, &w->err);
    return NULL;
}

static int op_token(probe *p, int threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    worker w[64];
    memset(w, 0, sizeof w);
    for (int i = 0; i < threads; i++) {
        w[i].p = p;
        if (pthread_create(&w[i].th, NULL, work, &w[i]) != 0) {
            w[i].rc = MC_ENOMEM;
            w[i].th = 0;
        }
    }
    for (int i = 0; i < threads; i++)
        if (w[i].th)
            pthread_join(w[i].th, NULL);
    int code = 0, distinct = 0;
    char first[17] = "", sha[17];
    char seen[64][17];
    for (int i = 0; i < threads; i++) {
        if (w[i].rc && !code) {
            code = report(w[i].err, w[i].rc);
            continue;
        }
        if (w[i].rc)
            continue;
        sha_prefix(w[i].token, sha);
        if (!first[0])
            memcpy(first, sha, sizeof sha);
        bool dup = false;
        for (int k = 0; k < distinct; k++)
            dup |= !strcmp(seen[k], sha);
        if (!dup)
            memcpy(seen[distinct++], sha, sizeof sha);
    }
    if (!code) {
        if (threads > 1)
            printf("ok token sha256=%s threads=%d distinct=%d\n", first, threads, distinct);
        else
            printf("ok token sha256=%s\n", first);
    }
    for (int i = 0; i < threads; i++) {
        if (w[i].token) {
            OPENSSL_cleanse(w[i].token, strlen(w[i].token));
            free(w[i].token);
        }
        mc_error_free(w[i].err);
    }
    return code;
}

static char *read_file_trimmed(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
                   s[len - 1] == '\n'))
        s[--len] = '\0';
    char *r = strdup(s);
    OPENSSL_cleanse(buf, sizeof buf);
    return r;
}

static int usage(void)
{
    fprintf(stderr, "usage: oauth-probe token|invalidate|browser|paste|device|import|revoke|status "
                    "--server NAME --state DIR --provider P --auth JSON [options]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *op = argv[1];
    const char *server = NULL, *state = NULL, *provider = NULL, *auth = NULL;
    const char *browser = NULL, *rt_file = NULL, *token_file = NULL;
    int threads = 1, port = 0, wait = 60;
    bool verbose = getenv("MAILCONN_PROBE_DEBUG") != NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-v")) {
            verbose = true;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--server")) server = v;
        else if (!strcmp(a, "--state")) state = v;
        else if (!strcmp(a, "--provider")) provider = v;
        else if (!strcmp(a, "--auth")) auth = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--browser")) browser = v;
        else if (!strcmp(a, "--wait")) wait = atoi(v);
        else if (!strcmp(a, "--refresh-token-file")) rt_file = v;
        else if (!strcmp(a, "--token-file")) token_file = v;
        else return usage();
    }
    if (!server || !state || !provider || !auth)
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    mc__hc_init(&hc, verbose ? MC_LOG_DEBUG : MC_LOG_WARN, NULL, NULL);
    if (!(hc.state_dir = strdup(state)))
        return 2;

    json_object *cfg_obj = json_tokener_parse(auth);
    if (!cfg_obj || !json_object_is_type(cfg_obj, json_type_object)) {
        fprintf(stderr, "oauth-probe: --auth is not a JSON object\n");
        json_object_put(cfg_obj);
        return 2;
    }
    /* the provider needs "provider" like a real config */
    json_object_object_add(cfg_obj, "provider", json_object_new_string(provider));
    mc__diag diag = { 0 };
    mc_plugin_cfg cfg = { cfg_obj, (char *)"servers[0].auth", &diag };

    mc__registry *reg = NULL;
    mc_err *err = NULL;
    const mc__plugin *auth_plugin = NULL, *engine_plugin = NULL;
    int code = 0;
    int rc = mc__registry_new(&reg, NULL, &err);
    mc__registry_set_log(reg, &hc);
    if (!rc)
        rc = mc__registry_get(reg, MC_PLUGIN_AUTH, provider, &auth_plugin, &err);
    if (!rc)
        rc = mc__registry_get(reg, MC_PLUGIN_OAUTH_ENGINE, "oauth", &engine_plugin, &err);
    probe p;
    memset(&p, 0, sizeof p);
    void *profile_own = NULL;
    if (!rc) {
        const mc_auth_ops *aops = auth_plugin->desc->ops;
        /* the core's common OAuth rules and overrides, as for a config */
        mc__auth_validate(&hc, aops, &cfg);
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "oauth-probe: config: %s\n", diag.lines[i]);
        rc = mc__oauth_profile(&hc, aops, &cfg, &p.profile, &profile_own, &err);
    }
    if (rc) {
        code = report(err, rc);
        goto done;
    }
    p.engine = engine_plugin->desc->ops;
    const char *secret = jstr(cfg_obj, "client_secret");
    if (secret)
        mc__redact_add(&hc, secret);
    p.req = (mc_oauth_request){
        .size = sizeof(mc_oauth_request),
        .server = server,
        .provider = provider,
        .client_id = jstr(cfg_obj, "client_id"),
        .client_secret = secret,
        .client_auth = jstr(cfg_obj, "client_auth") ? jstr(cfg_obj, "client_auth")
                       : secret ? "post" : "none",
        .user = jstr(cfg_obj, "user"),
        .grant = jstr(cfg_obj, "grant") ? jstr(cfg_obj, "grant") : "authorization_code",
        .redirect_uri = jstr(cfg_obj, "redirect_uri"),
        .ca_file = jstr(cfg_obj, "ca_file"),
        .state_dir = state,
        .timeout_s = jint(cfg_obj, "timeout_s", 30),
        .refresh_margin_s = jint(cfg_obj, "refresh_margin_s", 600),
        .profile = &p.profile,
    };

    if (!strcmp(op, "token")) {
        code = op_token(&p, threads);
    } else if (!strcmp(op, "invalidate")) {
        char *t = token_file ? read_file_trimmed(token_file) : NULL;
        rc = p.engine->invalidate(&hc, &p.req, t, &err);
        if (t) {
            OPENSSL_cleanse(t, strlen(t));
            free(t);
        }
        code = report(err, rc);
        if (!rc)
            printf("ok invalidate\n");
    } else if (!strcmp(op, "browser") || !strcmp(op, "paste") || !strcmp(op, "device")) {
        mc_oauth_authorize_options o = {
            .version = MC_OAUTH_AUTHORIZE_OPTIONS_VERSION,
            .flow = !strcmp(op, "browser") ? MC_FLOW_AUTH_CODE
                    : !strcmp(op, "paste") ? MC_FLOW_PASTE : MC_FLOW_DEVICE,
            .port = port,
            .browser = browser,
            .wait_s = wait,
            .say = say,
            .ask = ask,
        };
        rc = p.engine->authorize(&hc, &p.req, &o, &err);
        code = report(err, rc);
        if (!rc)
            printf("ok %s\n", op);
    } else if (!strcmp(op, "import")) {
        char *t = rt_file ? read_file_trimmed(rt_file) : NULL;
        if (!t) {
            fprintf(stderr, "oauth-probe: import needs --refresh-token-file\n");
            code = 2;
            goto done;
        }
        rc = p.engine->import_refresh(&hc, &p.req, t, &err);
        OPENSSL_cleanse(t, strlen(t));
        free(t);
        code = report(err, rc);
        if (!rc)
            printf("ok import\n");
    } else if (!strcmp(op, "revoke")) {
        rc = p.engine->revoke(&hc, &p.req, &err);
        code = report(err, rc);
        if (!rc)
            printf("ok revoke\n");
    } else if (!strcmp(op, "status")) {
        mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
        rc = p.engine->status(&hc, &p.req, &st);
        if (rc) {
            printf("error code=%s\n", mc_error_name(rc));
            code = 1;
        } else {
            printf("ok status stored=%d mismatch=%d access_expires=%lld refresh_issued=%lld "
                   "refresh_used=%lld\n", st.stored, st.identity_mismatch, st.access_expires,
                   st.refresh_issued, st.refresh_used);
        }
    } else {
        code = usage();
    }
done:
    mc_error_free(err);
    mc__oauth_profile_release(profile_own);
    mc__registry_free(reg);
    mc__diag_free(&diag);
    json_object_put(cfg_obj);
    mc__hc_destroy(&hc);
    return code;
}
