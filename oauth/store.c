/* oauth/store: <state>/tokens/<server>.json (0600, replaced atomically through
 * host->file_replace) and the single-flight lock: an in-process mutex per
 * server plus flock on <state>/tokens/<server>.lock across processes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>
#include <openssl/crypto.h>

#include "oauth.h"

#define TOKEN_FILE_MAX (256 * 1024)

static bool valid_server_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int mc__oauth_store_path(const mc_oauth_request *req, const char *ext, char **out,
                         mc_error **err)
{
    *out = NULL;
    if (!req->state_dir || !*req->state_dir)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "no state folder for the OAuth tokens of server %s",
                              req->server ? req->server : "?");
    if (!valid_server_name(req->server))
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_CONFIG, NULL,
                              "server name \"%s\" cannot name a token file",
                              req->server ? req->server : "");
    if (asprintf(out, "%s/tokens/%s%s", req->state_dir, req->server, ext) < 0) {
        *out = NULL;
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    return 0;
}

static int make_dirs(const mc_oauth_request *req, mc_error **err)
{
    /* <state> and its missing parents, then tokens/, each 0700 */
    char *path = NULL;
    if (asprintf(&path, "%s/tokens", req->state_dir) < 0)
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    int rc = 0;
    for (char *p = path + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL,
                                    "cannot create %s: %s", path, strerror(errno));
                break;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    free(path);
    return rc;
}

void mc__oauth_store_clear(mc__oauth_store *s)
{
    free(s->provider);
    free(s->client_id);
    free(s->user);
    free(s->token_url);
    mc__oauth_wipe_free(s->access_token);
    mc__oauth_wipe_free(s->refresh_token);
    free(s->scope);
    memset(s, 0, sizeof *s);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

bool mc__oauth_store_identity_matches(const mc_oauth_request *req, const mc__oauth_store *s)
{
    return !strcmp(nz(req->provider), nz(s->provider)) &&
           !strcmp(nz(req->client_id), nz(s->client_id)) &&
           !strcmp(nz(req->user), nz(s->user)) &&
           !strcmp(nz(req->profile ? req->profile->token_url : NULL), nz(s->token_url));
}

static char *str_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return strdup(json_object_get_string(v));
}

static long long int_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return 0;
    return (long long)json_object_get_int64(v);
}

static void wipe_str(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        OPENSSL_cleanse((char *)json_object_get_string(v),
                        (size_t)json_object_get_string_len(v));
}

int mc__oauth_store_parse(const char *text, size_t len, mc__oauth_store *out)
{
    memset(out, 0, sizeof *out);
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return MC_ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
              json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    json_object *id = NULL;
    if (ok && (!json_object_object_get_ex(o, "identity", &id) ||
               !json_object_is_type(id, json_type_object)))
        ok = false;
    if (ok) {
        out->provider = str_member(id, "provider");
        out->client_id = str_member(id, "client_id");
        out->user = str_member(id, "user");
        out->token_url = str_member(id, "token_url");
        out->access_token = str_member(o, "access_token");
        out->expires_at = int_member(o, "expires_at");
        out->refresh_token = str_member(o, "refresh_token");
        out->refresh_issued_at = int_member(o, "refresh_issued_at");
        out->refresh_used_at = int_member(o, "refresh_used_at");
        out->scope = str_member(o, "scope");
        if (out->access_token && !*out->access_token) {
            free(out->access_token);
            out->access_token = NULL;
        }
        if (out->refresh_token && !*out->refresh_token) {
            free(out->refresh_token);
            out->refresh_token = NULL;
        }
        wipe_str(o, "access_token");
        wipe_str(o, "refresh_token");
    }
    json_object_put(o);
    return ok ? 0 : MC_EFILE;
}

static json_object *jstr(const char *s)
{
    return s ? json_object_new_string(s) : json_object_new_null();
}

char *mc__oauth_store_serialise(const mc_oauth_request *req, const mc__oauth_store *s)
{
    json_object *o = json_object_new_object();
    json_object *id = json_object_new_object();
    if (!o || !id) {
        json_object_put(o);
        json_object_put(id);
        return NULL;
    }
    json_object_object_add(id, "provider", jstr(req->provider));
    json_object_object_add(id, "client_id", jstr(req->client_id));
    json_object_object_add(id, "user", jstr(req->user));
    json_object_object_add(id, "token_url", jstr(req->profile ? req->profile->token_url : NULL));
    json_object_object_add(o, "identity", id);
    json_object_object_add(o, "access_token", jstr(s->access_token));
    json_object_object_add(o, "expires_at", json_object_new_int64(s->expires_at));
    json_object_object_add(o, "refresh_token", jstr(s->refresh_token));
    json_object_object_add(o, "refresh_issued_at", json_object_new_int64(s->refresh_issued_at));
    json_object_object_add(o, "refresh_used_at", json_object_new_int64(s->refresh_used_at));
    json_object_object_add(o, "scope", jstr(s->scope));
    size_t n = 0;
    const char *text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *r = NULL;
    if (text) {
        r = malloc(n + 2);
        if (r) {
            memcpy(r, text, n);
            r[n] = '\n';
            r[n + 1] = '\0';
        }
        OPENSSL_cleanse((char *)text, n);
    }
    wipe_str(o, "access_token");
    wipe_str(o, "refresh_token");
    json_object_put(o);
    return r;
}

int mc__oauth_store_load(const mc_oauth_request *req, mc__oauth_store *out, bool *found,
                         mc_error **err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".json", &path, err);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            rc = 0;
        else
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot read %s: %s",
                                path, strerror(errno));
        free(path);
        return rc;
    }
    mc__obuf b = MC__OBUF_INIT;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot read %s: %s",
                                path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > TOKEN_FILE_MAX) {
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "%s is too large", path);
            break;
        }
        if (mc__obuf_put(&b, chunk, (size_t)n)) {
            rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
            break;
        }
    }
    OPENSSL_cleanse(chunk, sizeof chunk);
    close(fd);
    if (!rc) {
        if (mc__oauth_store_parse(b.data ? b.data : "", b.len, out)) {
            char hint[256];
            snprintf(hint, sizeof hint, "run `mailconn auth --server %s`", req->server);
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_AUTH, hint,
                                "token file %s is not valid", path);
        } else {
            *found = true;
            if (out->access_token)
                H->redact(out->access_token);
            if (out->refresh_token)
                H->redact(out->refresh_token);
        }
    }
    mc__obuf_free(&b);
    free(path);
    return rc;
}

int mc__oauth_store_save(const mc_oauth_request *req, const mc__oauth_store *s, mc_error **err)
{
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".json", &path, err);
    if (rc)
        return rc;
    rc = make_dirs(req, err);
    char *text = rc ? NULL : mc__oauth_store_serialise(req, s);
    if (!rc && !text)
        rc = mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    if (!rc)
        rc = H->file_replace(path, text, strlen(text), 0600, err);
    mc__oauth_wipe_free(text);
    free(path);
    return rc;
}

int mc__oauth_store_delete(const mc_oauth_request *req, mc_error **err)
{
    static const char *const exts[] = { ".json", ".lock" };
    for (size_t i = 0; i < 2; i++) {
        char *path = NULL;
        int rc = mc__oauth_store_path(req, exts[i], &path, err);
        if (rc)
            return rc;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot remove %s: %s",
                                path, strerror(errno));
            free(path);
            return rc;
        }
        free(path);
    }
    return 0;
}

int mc__oauth_store_tokens(const mc_oauth_request *req, mc__oauth_store *s,
                           const mc__oauth_tokens *t, bool refreshed, mc_error **err)
{
    long long now = mc__oauth_now();
    char *at = strdup(t->access_token);
    char *rt = t->refresh_token ? strdup(t->refresh_token) : NULL;
    char *sc = t->scope ? strdup(t->scope) : NULL;
    if (!at || (t->refresh_token && !rt) || (t->scope && !sc)) {
        mc__oauth_wipe_free(at);
        mc__oauth_wipe_free(rt);
        free(sc);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    mc__oauth_wipe_free(s->access_token);
    s->access_token = at;
    s->expires_at = now + (t->expires_in >= 0 ? t->expires_in : MC__OAUTH_DEFAULT_EXPIRES);
    if (rt) {                       /* rotated (or first): keep the new one */
        mc__oauth_wipe_free(s->refresh_token);
        s->refresh_token = rt;
        s->refresh_issued_at = now;
    }
    if (refreshed)
        s->refresh_used_at = now;
    if (sc) {
        free(s->scope);
        s->scope = sc;
    }
    return mc__oauth_store_save(req, s, err);
}

/* ------------------------------------------------------------ locks */

typedef struct server_mutex {
    struct server_mutex *next;
    pthread_mutex_t      m;
    char                 key[];
} server_mutex;

static pthread_mutex_t mutexes_lock = PTHREAD_MUTEX_INITIALIZER;
static server_mutex   *mutexes;

__attribute__((destructor)) static void mutexes_free(void)
{
    while (mutexes) {
        server_mutex *n = mutexes->next;
        pthread_mutex_destroy(&mutexes->m);
        free(mutexes);
        mutexes = n;
    }
}

static pthread_mutex_t *mutex_for(const char *key)
{
    pthread_mutex_lock(&mutexes_lock);
    server_mutex *m = mutexes;
    while (m && strcmp(m->key, key))
        m = m->next;
    if (!m) {
        m = calloc(1, sizeof *m + strlen(key) + 1);
        if (m) {
            pthread_mutex_init(&m->m, NULL);
            strcpy(m->key, key);
            m->next = mutexes;
            mutexes = m;
        }
    }
    pthread_mutex_unlock(&mutexes_lock);
    return m ? &m->m : NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mc__oauth_lock(const mc_oauth_request *req, mc__oauth_held *out, mc_error **err)
{
    out->mutex = NULL;
    out->fd = -1;
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".lock", &path, err);
    if (rc)
        return rc;
    rc = make_dirs(req, err);
    if (rc) {
        free(path);
        return rc;
    }
    pthread_mutex_t *m = mutex_for(path);
    if (!m) {
        free(path);
        return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
    }
    /* the holder makes at most a few HTTP requests, each bounded */
    int t = req->timeout_s > 0 ? req->timeout_s : MC__OAUTH_DEFAULT_TIMEOUT;
    long long deadline = now_ms() + (long long)(3 * t + 10) * 1000;
    struct timespec pause = { 0, 20 * 1000 * 1000 };
    for (;;) {
        struct timespec abs;
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_sec += 3 * t + 10;
        int e = pthread_mutex_timedlock(m, &abs);
        if (e == 0)
            break;
        if (e != EINTR) {
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                                "another thread holds the token lock of server %s too long",
                                req->server);
            free(path);
            return rc;
        }
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot open %s: %s", path,
                            strerror(errno));
        pthread_mutex_unlock(m);
        free(path);
        return rc;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot lock %s: %s",
                                path, strerror(errno));
            break;
        }
        if (now_ms() > deadline) {
            rc = mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                                "another process holds %s too long", path);
            break;
        }
        nanosleep(&pause, NULL);
    }
    free(path);
    if (rc) {
        close(fd);
        pthread_mutex_unlock(m);
        return rc;
    }
    out->mutex = m;
    out->fd = fd;
    return 0;
}

void mc__oauth_unlock(mc__oauth_held *l)
{
    if (l->fd >= 0) {
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    if (l->mutex)
        pthread_mutex_unlock((pthread_mutex_t *)l->mutex);
    l->fd = -1;
    l->mutex = NULL;
}
