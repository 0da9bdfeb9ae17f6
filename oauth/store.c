/* oauth/store: <state>/tokens/<server>.json (0600, replaced atomically) and
 * the single-flight lock: an in-process mutex per server plus flock on
 * <state>/tokens/<server>.lock across processes.
 *
 * The store trusts nothing it does not own (DESIGN.md "Token stores and
 * fleets", `file`): <state> must be this user's and not writable by group
 * or others, tokens/ this user's and 0700 (created so), each file in it a
 * regular file of this user's. Files are opened relative to the tokens/
 * folder (openat, O_NOFOLLOW), a new file is written to a temp file made
 * with O_EXCL and renamed over the old one; a violation is an error naming
 * the path and what is wrong (MC_EFILE, outcome CONFIG), never a silent use. */
#include <errno.h>
#include <stdarg.h>
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
#include <openssl/rand.h>

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
                         mc_err **err)
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

static int oom(mc_err **err)
{
    return mc__oauth_fail(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, NULL, "out of memory");
}

/* the missing parents of <state>, each 0700 (not <state> itself) */
static int make_parents(const char *state_dir, mc_err **err)
{
    char *path = strdup(state_dir);
    if (!path)
        return oom(err);
    int rc = 0;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL,
                                "cannot create %s: %s", path, strerror(errno));
            break;
        }
        *p = '/';
    }
    free(path);
    return rc;
}

static int unsafe(mc_err **err, const char *hint, const char *fmt, ...) MC__PRINTF(3, 4);
static int unsafe(mc_err **err, const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, hint, "token store refused: %s", msg);
}

/* A folder of the store: this user's; tokens/ (private) 0700, <state> not
 * writable by group or others. */
static int check_dir(int fd, const char *path, bool private_dir, mc_err **err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot stat %s: %s",
                              path, strerror(errno));
    char hint[1200];
    if (!S_ISDIR(st.st_mode))
        return unsafe(err, NULL, "%s is not a folder", path);
    if (st.st_uid != geteuid()) {
        snprintf(hint, sizeof hint, "remove %s (or chown it to uid %u) and authorize again", path,
                 (unsigned)geteuid());
        return unsafe(err, hint, "%s is owned by uid %u, not by this user (uid %u)", path,
                      (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (private_dir && (st.st_mode & 077)) {
        snprintf(hint, sizeof hint, "chmod 700 %s, after checking the files in it", path);
        return unsafe(err, hint, "%s is open to group or others (mode %04o, must be 0700)", path,
                      (unsigned)(st.st_mode & 07777));
    }
    if (!private_dir && (st.st_mode & 022)) {
        snprintf(hint, sizeof hint, "chmod go-w %s, after checking the files in it", path);
        return unsafe(err, hint, "%s is writable by group or others (mode %04o)", path,
                      (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* A file of the store, open: a regular file of this user's. */
static int check_file(const struct stat *st, const char *path, mc_err **err)
{
    char hint[1200];
    if (!S_ISREG(st->st_mode)) {
        snprintf(hint, sizeof hint, "remove %s and authorize again", path);
        return unsafe(err, hint, "%s is not a regular file", path);
    }
    if (st->st_uid != geteuid()) {
        snprintf(hint, sizeof hint, "remove %s and authorize again", path);
        return unsafe(err, hint, "%s is owned by uid %u, not by this user (uid %u)", path,
                      (unsigned)st->st_uid, (unsigned)geteuid());
    }
    return 0;
}

/* open(at) failed on a name of the store: a symbolic link says so */
static int open_failed(const char *path, const char *what, mc_err **err)
{
    int e = errno;
    char hint[1200];
    if (e == ELOOP || e == EMLINK) {
        snprintf(hint, sizeof hint, "remove %s and authorize again", path);
        return unsafe(err, hint, "%s is a symbolic link", path);
    }
    struct stat st;
    if (e == ENOTDIR && lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* O_DIRECTORY | O_NOFOLLOW on a symbolic link: ENOTDIR */
        snprintf(hint, sizeof hint, "remove %s and authorize again", path);
        return unsafe(err, hint, "%s is a symbolic link", path);
    }
    if (e == ENOTDIR)
        return unsafe(err, NULL, "%s is not a folder", path);
    return mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot %s %s: %s", what, path,
                          strerror(e));
}

/* <state>/tokens, checked, as an open folder in *out; with create, it and
 * <state> are made (0700) when missing; without, *out is -1 when either
 * is missing (nothing stored). */
static int open_tokens_dir(const mc_oauth_request *req, bool create, int *out, mc_err **err)
{
    *out = -1;
    char *tpath = NULL;
    int rc = mc__oauth_store_path(req, "", &tpath, err);   /* validates state and name */
    if (rc)
        return rc;
    free(tpath);
    if (asprintf(&tpath, "%s/tokens", req->state_dir) < 0)
        return oom(err);
    if (create) {
        rc = make_parents(req->state_dir, err);
        if (!rc && mkdir(req->state_dir, 0700) != 0 && errno != EEXIST)
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot create %s: %s",
                                req->state_dir, strerror(errno));
        if (rc) {
            free(tpath);
            return rc;
        }
    }
    int sfd = open(req->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        rc = !create && errno == ENOENT ? 0 : open_failed(req->state_dir, "open", err);
        free(tpath);
        return rc;
    }
    rc = check_dir(sfd, req->state_dir, false, err);
    if (!rc && create && mkdirat(sfd, "tokens", 0700) != 0 && errno != EEXIST)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot create %s: %s", tpath,
                            strerror(errno));
    int tfd = -1;
    if (!rc) {
        tfd = openat(sfd, "tokens", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tfd < 0 && !(!create && errno == ENOENT))
            rc = open_failed(tpath, "open", err);
    }
    if (!rc && tfd >= 0)
        rc = check_dir(tfd, tpath, true, err);
    close(sfd);
    free(tpath);
    if (rc) {
        if (tfd >= 0)
            close(tfd);
        return rc;
    }
    *out = tfd;
    return 0;
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

/* a token member: absent or empty is fine (0, *out NULL); one outside its
 * character set (or with a NUL inside) makes the file invalid (-1) */
static int token_member(json_object *o, const char *key, bool access, char **out)
{
    *out = NULL;
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return 0;
    const char *t = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n == 0)
        return 0;
    if (access ? !mc__oauth_access_token_ok(t, n) : !mc__oauth_refresh_token_ok(t, n))
        return -1;
    *out = strdup(t);
    return 0;
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
        if (token_member(o, "access_token", true, &out->access_token) ||
            token_member(o, "refresh_token", false, &out->refresh_token))
            ok = false;
        out->expires_at = int_member(o, "expires_at");
        out->access_issued_at = int_member(o, "access_issued_at");
        out->refresh_issued_at = int_member(o, "refresh_issued_at");
        out->refresh_used_at = int_member(o, "refresh_used_at");
        out->scope = str_member(o, "scope");
        wipe_str(o, "access_token");
        wipe_str(o, "refresh_token");
    }
    json_object_put(o);
    if (!ok)
        mc__oauth_store_clear(out);
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
    json_object_object_add(o, "access_issued_at", json_object_new_int64(s->access_issued_at));
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

/* the name of a file of the store inside tokens/: "<server><ext>" */
static char *file_name(const mc_oauth_request *req, const char *ext)
{
    char *n = NULL;
    return asprintf(&n, "%s%s", req->server, ext) < 0 ? NULL : n;
}

int mc__oauth_store_load(const mc_oauth_request *req, mc__oauth_store *out, bool *found,
                         mc_err **err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".json", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(req, false, &dfd, err);
    if (rc || dfd < 0) {
        free(path);
        return rc;
    }
    char *name = file_name(req, ".json");
    /* O_NONBLOCK: a FIFO in its place must not hang the open */
    bool named = name != NULL;
    int fd = named ? openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) : -1;
    int e = errno;
    free(name);
    close(dfd);
    if (fd < 0) {
        errno = e;
        if (!named)
            rc = oom(err);
        else if (e == ENOENT)
            rc = 0;
        else
            rc = open_failed(path, "read", err);
        free(path);
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot stat %s: %s", path,
                            strerror(errno));
    if (!rc)
        rc = check_file(&st, path, err);
    if (rc) {
        close(fd);
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
            rc = oom(err);
            break;
        }
    }
    OPENSSL_cleanse(chunk, sizeof chunk);
    close(fd);
    if (!rc) {
        if (mc__oauth_store_parse(b.data ? b.data : "", b.len, out)) {
            char hint[256];
            snprintf(hint, sizeof hint, "authorize server %s again", req->server);
            mc_err *before = err ? *err : NULL;
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_AUTH, hint,
                                "token file %s is not valid", path);
            if (err && *err && *err != before)
                (*err)->action = MC_ACTION_REAUTHORIZE;
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

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replace tokens/<name> with text: a temp file beside it (O_EXCL, 0600,
 * never chowned), fsync, renameat, fsync of the folder. What the name is
 * now must be a regular file of this user's (or nothing). */
static int replace_at(int dfd, const char *name, const char *path, const char *text,
                      mc_err **err)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            char hint[1200];
            snprintf(hint, sizeof hint, "remove %s and authorize again", path);
            return unsafe(err, hint, "%s is a symbolic link", path);
        }
        int rc = check_file(&st, path, err);
        if (rc)
            return rc;
    } else if (errno != ENOENT) {
        return mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot stat %s: %s", path,
                              strerror(errno));
    }
    char tmp[128];
    int fd = -1;
    for (int i = 0; i < 16 && fd < 0; i++) {
        unsigned char rnd[8];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            break;
        snprintf(tmp, sizeof tmp, ".%.64s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp", name, rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        return mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL,
                              "cannot create a temporary file beside %s: %s", path,
                              strerror(errno));
    int rc = 0;
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot write %s: %s", path,
                            strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot write %s: %s", path,
                            strerror(errno));
    if (!rc && renameat(dfd, tmp, dfd, name) != 0)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot replace %s: %s", path,
                            strerror(errno));
    if (rc)
        unlinkat(dfd, tmp, 0);
    else
        (void)fsync(dfd);
    return rc;
}

int mc__oauth_store_save(const mc_oauth_request *req, const mc__oauth_store *s, mc_err **err)
{
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".json", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(req, true, &dfd, err);
    char *name = rc ? NULL : file_name(req, ".json");
    char *text = name ? mc__oauth_store_serialise(req, s) : NULL;
    if (!rc && (!name || !text))
        rc = oom(err);
    if (!rc)
        rc = replace_at(dfd, name, path, text, err);
    if (dfd >= 0)
        close(dfd);
    mc__oauth_wipe_free(text);
    free(name);
    free(path);
    return rc;
}

int mc__oauth_store_delete(const mc_oauth_request *req, mc_err **err)
{
    static const char *const exts[] = { ".json", ".lock" };
    int dfd = -1;
    int rc = open_tokens_dir(req, false, &dfd, err);
    if (rc || dfd < 0)
        return rc;
    for (size_t i = 0; i < 2 && !rc; i++) {
        char *path = NULL;
        rc = mc__oauth_store_path(req, exts[i], &path, err);
        char *name = rc ? NULL : file_name(req, exts[i]);
        if (!rc && !name)
            rc = oom(err);
        if (!rc && unlinkat(dfd, name, 0) != 0 && errno != ENOENT)
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot remove %s: %s",
                                path, strerror(errno));
        free(name);
        free(path);
    }
    close(dfd);
    return rc;
}

int mc__oauth_store_tokens(const mc_oauth_request *req, mc__oauth_store *s,
                           const mc__oauth_tokens *t, bool refreshed, mc_err **err)
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
    /* expires_in arrives clamped to 1 s .. 1 year (mc__oauth_parse_tokens) */
    long long in = t->expires_in >= 0 ? t->expires_in : MC__OAUTH_DEFAULT_EXPIRES;
    if (in < 1)
        in = 1;
    if (in > MC__OAUTH_EXPIRES_MAX)
        in = MC__OAUTH_EXPIRES_MAX;
    s->access_issued_at = now;
    s->expires_at = now + in;
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

int mc__oauth_lock(const mc_oauth_request *req, mc__oauth_held *out, mc_err **err)
{
    out->mutex = NULL;
    out->fd = -1;
    char *path = NULL;
    int rc = mc__oauth_store_path(req, ".lock", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(req, true, &dfd, err);
    if (rc) {
        free(path);
        return rc;
    }
    pthread_mutex_t *m = mutex_for(path);
    if (!m) {
        close(dfd);
        free(path);
        return oom(err);
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
            close(dfd);
            free(path);
            return rc;
        }
    }
    char *name = file_name(req, ".lock");
    int fd = name ? openat(dfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                           0600)
                  : -1;
    if (fd < 0)
        rc = name ? open_failed(path, "open", err) : oom(err);
    free(name);
    close(dfd);
    struct stat st;
    if (!rc && fstat(fd, &st) != 0)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot stat %s: %s", path,
                            strerror(errno));
    if (!rc)
        rc = check_file(&st, path, err);
    if (rc) {
        if (fd >= 0)
            close(fd);
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
