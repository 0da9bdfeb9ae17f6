/* oauth/store: the engine reaches tokens only through an mc_token_store_ops
 * table (mailconn.h): an application's own (host->token_store), or the
 * built-in file store below: <state>/tokens/<server>.json (0600, replaced
 * atomically), the single-flight lock (an in-process mutex per lock file
 * plus flock on <state>/tokens/<server>.lock across processes) and the
 * pending authorizations <state>/pending/<hex SHA-256 of state> (0600,
 * taken once, swept and refused after 600 s).
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
#include <dirent.h>
#include <json-c/json_tokener.h>
#include <openssl/evp.h>
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

int mc__oauth_store_path(const char *state_dir, const char *server, const char *ext,
                         char **out, mc_err **err)
{
    *out = NULL;
    if (!state_dir || !*state_dir)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "no state folder for the OAuth tokens of server %s",
                              server ? server : "?");
    if (!valid_server_name(server))
        return mc__oauth_fail(err, MC_EINVAL, MC_OUTCOME_CONFIG, NULL,
                              "server name \"%s\" cannot name a token file",
                              server ? server : "");
    if (asprintf(out, "%s/tokens/%s%s", state_dir, server, ext) < 0) {
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

/* <state>/<sub> (tokens, pending), checked, as an open folder in *out;
 * with create, it and <state> are made (0700) when missing; without, *out
 * is -1 when either is missing (nothing stored). */
static int open_store_dir(const char *state_dir, const char *sub, bool create, int *out,
                          mc_err **err)
{
    *out = -1;
    char *tpath = NULL;
    if (!state_dir || !*state_dir)
        return mc__oauth_fail(err, MC_ECONFIG, MC_OUTCOME_CONFIG, NULL,
                              "no state folder for the OAuth tokens");
    if (asprintf(&tpath, "%s/%s", state_dir, sub) < 0)
        return oom(err);
    int rc = 0;
    if (create) {
        rc = make_parents(state_dir, err);
        if (!rc && mkdir(state_dir, 0700) != 0 && errno != EEXIST)
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot create %s: %s",
                                state_dir, strerror(errno));
        if (rc) {
            free(tpath);
            return rc;
        }
    }
    int sfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        rc = !create && errno == ENOENT ? 0 : open_failed(state_dir, "open", err);
        free(tpath);
        return rc;
    }
    rc = check_dir(sfd, state_dir, false, err);
    if (!rc && create && mkdirat(sfd, sub, 0700) != 0 && errno != EEXIST)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot create %s: %s", tpath,
                            strerror(errno));
    int tfd = -1;
    if (!rc) {
        tfd = openat(sfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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

/* <state>/tokens for server (the name validated first) */
static int open_tokens_dir(const char *state_dir, const char *server, bool create, int *out,
                           mc_err **err)
{
    *out = -1;
    char *tpath = NULL;
    int rc = mc__oauth_store_path(state_dir, server, "", &tpath, err);
    if (rc)
        return rc;
    free(tpath);
    return open_store_dir(state_dir, "tokens", create, out, err);
}

/* the name of a file of the store inside tokens/: "<server><ext>" */
static char *file_name(const char *server, const char *ext)
{
    char *n = NULL;
    return asprintf(&n, "%s%s", server, ext) < 0 ? NULL : n;
}

/* Read an open file of the store (checked: regular, this user's) into a
 * malloc'd NUL-terminated buffer of at most TOKEN_FILE_MAX bytes. */
static int read_checked(int fd, const char *path, char **data, size_t *len, mc_err **err)
{
    *data = NULL;
    *len = 0;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL, "cannot stat %s: %s", path,
                            strerror(errno));
    if (!rc)
        rc = check_file(&st, path, err);
    if (rc)
        return rc;
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
    if (!rc && !b.data && mc__obuf_put(&b, "", 0))
        rc = oom(err);
    if (rc) {
        mc__obuf_free(&b);
        return rc;
    }
    *data = b.data;   /* NUL-terminated by mc__obuf */
    *len = b.len;
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
                      size_t text_len, mc_err **err)
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
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, text_len) != 0 || fsync(fd) != 0)
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

/* ------------------------------------------------------------ the file store */

static int file_load(void *store, const mc_token_identity *id, char **data, size_t *len,
                     mc_err **err)
{
    mc__oauth_file *f = store;
    *data = NULL;
    *len = 0;
    char *path = NULL;
    int rc = mc__oauth_store_path(f->state_dir, id->server, ".json", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(f->state_dir, id->server, false, &dfd, err);
    if (rc || dfd < 0) {
        free(path);
        return rc;
    }
    char *name = file_name(id->server, ".json");
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
    rc = read_checked(fd, path, data, len, err);
    close(fd);
    free(path);
    return rc;
}

static int file_save(void *store, const mc_token_identity *id, const char *data, size_t len,
                     mc_err **err)
{
    mc__oauth_file *f = store;
    char *path = NULL;
    int rc = mc__oauth_store_path(f->state_dir, id->server, ".json", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(f->state_dir, id->server, true, &dfd, err);
    char *name = rc ? NULL : file_name(id->server, ".json");
    if (!rc && !name)
        rc = oom(err);
    if (!rc)
        rc = replace_at(dfd, name, path, data, len, err);
    if (dfd >= 0)
        close(dfd);
    free(name);
    free(path);
    return rc;
}

static int file_remove(void *store, const mc_token_identity *id, mc_err **err)
{
    mc__oauth_file *f = store;
    static const char *const exts[] = { ".json", ".lock" };
    int dfd = -1;
    int rc = open_tokens_dir(f->state_dir, id->server, false, &dfd, err);
    if (rc || dfd < 0)
        return rc;
    for (size_t i = 0; i < 2 && !rc; i++) {
        char *path = NULL;
        rc = mc__oauth_store_path(f->state_dir, id->server, exts[i], &path, err);
        char *name = rc ? NULL : file_name(id->server, exts[i]);
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

static int file_lock(void *store, const mc_token_identity *id, long long deadline_ms,
                     mc_err **err)
{
    mc__oauth_file *f = store;
    f->mutex = NULL;
    f->fd = -1;
    char *path = NULL;
    int rc = mc__oauth_store_path(f->state_dir, id->server, ".lock", &path, err);
    if (rc)
        return rc;
    int dfd = -1;
    rc = open_tokens_dir(f->state_dir, id->server, true, &dfd, err);
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
    struct timespec pause = { 0, 20 * 1000 * 1000 };
    for (;;) {
        long long left = deadline_ms - now_ms();
        struct timespec abs;
        clock_gettime(CLOCK_REALTIME, &abs);
        if (left > 0) {
            abs.tv_sec += (time_t)(left / 1000);
            abs.tv_nsec += (long)(left % 1000) * 1000000L;
            if (abs.tv_nsec >= 1000000000L) {
                abs.tv_sec++;
                abs.tv_nsec -= 1000000000L;
            }
        }
        int e = pthread_mutex_timedlock(m, &abs);
        if (e == 0)
            break;
        if (e != EINTR) {
            rc = mc__oauth_fail(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, NULL,
                                "another thread holds the token lock of server %s too long",
                                id->server);
            close(dfd);
            free(path);
            return rc;
        }
    }
    char *name = file_name(id->server, ".lock");
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
        if (now_ms() > deadline_ms) {
            rc = mc__oauth_fail(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, NULL,
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
    f->mutex = m;
    f->fd = fd;
    return 0;
}

static void file_unlock(void *store, const mc_token_identity *id)
{
    (void)id;
    mc__oauth_file *f = store;
    if (f->fd >= 0) {
        flock(f->fd, LOCK_UN);
        close(f->fd);
    }
    if (f->mutex)
        pthread_mutex_unlock((pthread_mutex_t *)f->mutex);
    f->fd = -1;
    f->mutex = NULL;
}

/* ------------------------------------------------------------ pending */

/* the file name of a pending authorization: hex SHA-256 of its state (the
 * state itself, a bearer of the authorization, never names a file) */
static int pending_name(const char *state, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!state || EVP_Digest(state, strlen(state), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* remove the entries of pending/ older than the TTL (and leftovers) */
static void pending_sweep(int dfd)
{
    int d2 = dup(dfd);
    DIR *dir = d2 >= 0 ? fdopendir(d2) : NULL;
    if (!dir) {
        if (d2 >= 0)
            close(d2);
        return;
    }
    long long now = mc__oauth_now();
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (st.st_uid == geteuid() && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) &&
            (long long)st.st_mtime < now - MC__OAUTH_PENDING_TTL)
            unlinkat(dfd, de->d_name, 0);
    }
    closedir(dir);
}

static int file_pending_put(void *store, const char *state, const char *data, size_t len,
                            long long expires, mc_err **err)
{
    mc__oauth_file *f = store;
    char name[65];
    if (pending_name(state, name))
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL,
                              "cannot name a pending authorization");
    int dfd = -1;
    int rc = open_store_dir(f->state_dir, "pending", true, &dfd, err);
    if (rc)
        return rc;
    pending_sweep(dfd);
    char *path = NULL, *text = NULL;
    int hl = 0;
    if (asprintf(&path, "%s/pending/%s", f->state_dir, name) < 0)
        path = NULL;
    /* the expiry first, the record after it */
    char header[32];
    hl = snprintf(header, sizeof header, "%lld\n", expires);
    text = path ? malloc((size_t)hl + len + 1) : NULL;
    if (!text) {
        rc = oom(err);
    } else {
        memcpy(text, header, (size_t)hl);
        memcpy(text + hl, data, len);
        text[(size_t)hl + len] = '\0';
        rc = replace_at(dfd, name, path, text, (size_t)hl + len, err);
        OPENSSL_cleanse(text, (size_t)hl + len);
    }
    free(text);
    free(path);
    close(dfd);
    return rc;
}

static int file_pending_take(void *store, const char *state, char **data, size_t *len,
                             mc_err **err)
{
    mc__oauth_file *f = store;
    *data = NULL;
    *len = 0;
    char name[65];
    if (pending_name(state, name))
        return 0;
    int dfd = -1;
    int rc = open_store_dir(f->state_dir, "pending", false, &dfd, err);
    if (rc || dfd < 0)
        return rc;
    pending_sweep(dfd);
    /* taken once: renamed away first (atomic: of two takers one wins) */
    char taken[128];
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        close(dfd);
        return mc__oauth_fail(err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, NULL, "no random bytes");
    }
    snprintf(taken, sizeof taken, ".%.16s.%02x%02x%02x%02x%02x%02x%02x%02x.taken", name, rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        close(dfd);
        return 0;   /* none (or taken already) */
    }
    char *path = NULL;
    if (asprintf(&path, "%s/pending/%s", f->state_dir, name) < 0) {
        close(dfd);
        return oom(err);
    }
    if (S_ISLNK(st.st_mode)) {
        unlinkat(dfd, name, 0);
        rc = unsafe(err, NULL, "%s is a symbolic link", path);
        goto out;
    }
    if (renameat(dfd, name, dfd, taken) != 0) {
        rc = errno == ENOENT ? 0
                             : mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_CONFIG, NULL,
                                              "cannot take %s: %s", path, strerror(errno));
        goto out;
    }
    int fd = openat(dfd, taken, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        rc = open_failed(path, "read", err);
        unlinkat(dfd, taken, 0);
        goto out;
    }
    char *text = NULL;
    size_t n = 0;
    rc = read_checked(fd, path, &text, &n, err);
    bool fresh = fstat(fd, &st) == 0 &&
                 (long long)st.st_mtime >= mc__oauth_now() - MC__OAUTH_PENDING_TTL;
    close(fd);
    unlinkat(dfd, taken, 0);
    if (rc)
        goto out;
    char *nl = memchr(text, '\n', n);
    char *end = NULL;
    long long expires = nl ? strtoll(text, &end, 10) : 0;
    if (fresh && nl && end == nl && expires > mc__oauth_now()) {
        size_t hl = (size_t)(nl + 1 - text);
        memmove(text, nl + 1, n - hl);
        text[n - hl] = '\0';
        OPENSSL_cleanse(text + n - hl, hl);
        *data = text;
        *len = n - hl;
        text = NULL;
    }
    if (text) {
        OPENSSL_cleanse(text, n);
        free(text);
    }
out:
    free(path);
    close(dfd);
    return rc;
}

const mc_token_store_ops mc__oauth_file_store = {
    .size = sizeof(mc_token_store_ops),
    .lock = file_lock,
    .unlock = file_unlock,
    .load = file_load,
    .save = file_save,
    .remove = file_remove,
    .pending_put = file_pending_put,
    .pending_take = file_pending_take,
};

/* ------------------------------------------------------------ through the ops */

static const char *nzs(const char *s)
{
    return s ? s : "";
}

int mc__oauth_op_init(mc__oauth_op *op, mc_host_ctx *hc, const mc_oauth_request *req,
                      mc_err **err)
{
    memset(op, 0, sizeof *op);
    op->hc = hc;
    op->file.fd = -1;
    op->file.hc = hc;
    op->file.state_dir = req->state_dir && *req->state_dir ? req->state_dir
                         : H->state_dir ? H->state_dir(hc) : NULL;
    op->id.server = nzs(req->server);
    op->id.provider = nzs(req->provider);
    op->id.client_id = nzs(req->client_id);
    op->id.user = nzs(req->user);
    op->id.token_url = nzs(req->profile ? req->profile->token_url : NULL);
    void *arg = NULL;
    const mc_token_store_ops *app = H->token_store ? H->token_store(hc, &arg) : NULL;
    if (app) {
        if (app->size < sizeof(mc_token_store_ops) || !app->lock || !app->unlock ||
            !app->load || !app->save || !app->remove)
            return mc__oauth_fail(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, NULL,
                                  "the application's token store lacks lock, unlock, load, "
                                  "save or remove");
        op->store = app;
        op->store_arg = arg;
        return 0;
    }
    op->store = &mc__oauth_file_store;
    op->store_arg = &op->file;
    op->builtin = true;
    return 0;
}

void mc__oauth_op_init_file(mc__oauth_op *op, mc_host_ctx *hc, const mc_oauth_request *req)
{
    memset(op, 0, sizeof *op);
    op->hc = hc;
    op->file.fd = -1;
    op->file.hc = hc;
    op->file.state_dir = req->state_dir && *req->state_dir ? req->state_dir
                         : H->state_dir ? H->state_dir(hc) : NULL;
    op->id.server = nzs(req->server);
    op->id.provider = nzs(req->provider);
    op->id.client_id = nzs(req->client_id);
    op->id.user = nzs(req->user);
    op->id.token_url = nzs(req->profile ? req->profile->token_url : NULL);
    op->store = &mc__oauth_file_store;
    op->store_arg = &op->file;
    op->builtin = true;
}

/* an application's store failed without saying why */
static int store_failed(mc__oauth_op *op, int rc, const char *what, mc_err **err)
{
    if (rc >= 0)
        rc = MC_EFILE;
    if (err && !*err)
        mc__oauth_fail(err, rc, MC_OUTCOME_CONFIG, NULL, "the token store could not %s the "
                       "record of server %s", what, op->id.server);
    return rc;
}

static void wipe_buf(char *p, size_t n)
{
    if (p) {
        OPENSSL_cleanse(p, n);
        free(p);
    }
}

int mc__oauth_store_load(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_store *out,
                         bool *found, mc_err **err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    char *data = NULL;
    size_t len = 0;
    int rc = op->store->load(op->store_arg, &op->id, &data, &len, err);
    if (rc) {
        wipe_buf(data, len);
        return store_failed(op, rc, "read", err);
    }
    if (!data)
        return 0;
    if (mc__oauth_store_parse(data, len, out)) {
        char hint[256], *path = NULL;
        snprintf(hint, sizeof hint, "authorize server %s again", req->server);
        mc_err *before = err ? *err : NULL;
        if (op->builtin)
            mc__oauth_store_path(op->file.state_dir, req->server, ".json", &path, NULL);
        if (path)
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_AUTH, hint,
                                "token file %s is not valid", path);
        else
            rc = mc__oauth_fail(err, MC_EFILE, MC_OUTCOME_AUTH, hint,
                                "the stored token record of server %s is not valid",
                                req->server);
        if (err && *err && *err != before)
            (*err)->action = MC_ACTION_REAUTHORIZE;
        free(path);
    } else {
        *found = true;
        if (out->access_token)
            H->redact(op->hc, out->access_token);
        if (out->refresh_token)
            H->redact(op->hc, out->refresh_token);
    }
    wipe_buf(data, len);
    return rc;
}

int mc__oauth_store_save(mc__oauth_op *op, const mc_oauth_request *req,
                         const mc__oauth_store *s, mc_err **err)
{
    char *text = mc__oauth_store_serialise(req, s);
    if (!text)
        return oom(err);
    int rc = op->store->save(op->store_arg, &op->id, text, strlen(text), err);
    mc__oauth_wipe_free(text);
    return rc ? store_failed(op, rc, "save", err) : 0;
}

int mc__oauth_store_delete(mc__oauth_op *op, const mc_oauth_request *req, mc_err **err)
{
    (void)req;
    int rc = op->store->remove(op->store_arg, &op->id, err);
    return rc ? store_failed(op, rc, "remove", err) : 0;
}

int mc__oauth_lock(mc__oauth_op *op, const mc_oauth_request *req, mc_err **err)
{
    /* the holder makes at most a few HTTP requests, each bounded */
    int t = req->timeout_s > 0 ? req->timeout_s : MC__OAUTH_DEFAULT_TIMEOUT;
    long long deadline = now_ms() + (long long)(3 * t + 10) * 1000;
    int rc = op->store->lock(op->store_arg, &op->id, deadline, err);
    if (rc)
        return store_failed(op, rc, "lock", err);
    op->locked = true;
    return 0;
}

void mc__oauth_unlock(mc__oauth_op *op)
{
    if (op->locked)
        op->store->unlock(op->store_arg, &op->id);
    op->locked = false;
}

int mc__oauth_pending_put(mc__oauth_op *op, const char *state, const char *data, size_t len,
                          long long expires, mc_err **err)
{
    if (!op->store->pending_put || !op->store->pending_take)
        return mc__oauth_fail(err, MC_ENOTSUP, MC_OUTCOME_CONFIG, NULL,
                              "the token store keeps no pending authorizations");
    int rc = op->store->pending_put(op->store_arg, state, data, len, expires, err);
    return rc ? store_failed(op, rc, "keep the pending authorization for", err) : 0;
}

int mc__oauth_pending_take(mc__oauth_op *op, const char *state, char **data, size_t *len,
                           mc_err **err)
{
    *data = NULL;
    *len = 0;
    if (!op->store->pending_take)
        return mc__oauth_fail(err, MC_ENOTSUP, MC_OUTCOME_CONFIG, NULL,
                              "the token store keeps no pending authorizations");
    int rc = op->store->pending_take(op->store_arg, state, data, len, err);
    if (rc) {
        wipe_buf(*data, *len);
        *data = NULL;
        return store_failed(op, rc, "take the pending authorization for", err);
    }
    return 0;
}

int mc__oauth_store_tokens(mc__oauth_op *op, const mc_oauth_request *req, mc__oauth_store *s,
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
    return mc__oauth_store_save(op, req, s, err);
}

