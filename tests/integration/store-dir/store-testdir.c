/* store-testdir.so: a directory-backed token store for the tests (issue 11):
 * "token_store": {"type": "testdir", "dir": "/abs/path"}. Records in
 * <dir>/<server>.rec, refresh locks flock(2) on <dir>/<server>.lock,
 * pending authorizations in <dir>/pending-<hex of state>. Writes are atomic
 * (O_EXCL temp file, fsync, rename). Every open of the store appends a line
 * to <dir>/opens (the tests count them). */
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

#include "mailconn/plugin.h"

static const mc_host_api *H;

typedef struct held {
    struct held *next;
    char        *server;
    int          fd;
} held;

typedef struct tdir {
    char           *dir;
    pthread_mutex_t mu;
    held           *locks;
} tdir;

static const char *const keys[] = { "dir", NULL };

static bool name_ok(const char *s)
{
    if (!s || !*s || s[0] == '.' || strlen(s) > 200)
        return false;
    for (; *s; s++)
        if (*s == '/')
            return false;
    return true;
}

static void validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *d = H->cfg_string(cfg, "dir");
    if (!H->cfg_has(cfg, "dir"))
        H->cfg_error(cfg, "dir", "is required (an absolute folder)");
    else if (!d || d[0] != '/')
        H->cfg_error(cfg, "dir", "must be an absolute path");
}

static int sys_err(mc_err **err, const char *what, const char *path)
{
    return H->error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: %s %s: %s", what,
                    path, strerror(errno));
}

static int open_store(mc_host_ctx *hc, const mc_plugin_cfg *cfg, void **store, mc_err **err)
{
    (void)hc;
    const char *d = H->cfg_string(cfg, "dir");
    if (!d)
        return H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: no dir");
    if (mkdir(d, 0700) < 0 && errno != EEXIST)
        return sys_err(err, "cannot create", d);
    struct stat st;
    if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode)) {
        if (errno == 0)
            errno = ENOTDIR;
        return sys_err(err, "cannot use", d);
    }
    tdir *t = calloc(1, sizeof(*t));
    if (!t || !(t->dir = strdup(d))) {
        free(t);
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    }
    pthread_mutex_init(&t->mu, NULL);
    char *p = NULL;
    if (asprintf(&p, "%s/opens", d) >= 0) {
        int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            char line[32];
            int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
            if (write(fd, line, (size_t)n) < 0) { /* counted best-effort */ }
            close(fd);
        }
        free(p);
    }
    *store = t;
    return 0;
}

static void close_store(void *store)
{
    tdir *t = store;
    if (!t)
        return;
    while (t->locks) {
        held *h = t->locks;
        t->locks = h->next;
        close(h->fd);
        free(h->server);
        free(h);
    }
    pthread_mutex_destroy(&t->mu);
    free(t->dir);
    free(t);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *file_of(tdir *t, const char *prefix, const char *name, const char *suffix)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s%s%s", t->dir, prefix, name, suffix) < 0 ? NULL : p;
}

static int t_lock(void *store, const mc_token_identity *id, long long deadline_ms, mc_err **err)
{
    tdir *t = store;
    if (!name_ok(id->server))
        return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: bad server");
    char *p = file_of(t, "", id->server, ".lock");
    if (!p)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int rc = sys_err(err, "cannot open", p);
        free(p);
        return rc;
    }
    /* an flock dies with its holder; each open file description is its own
     * lock, so threads of this process exclude each other too */
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK || now_ms() >= deadline_ms) {
            int rc = errno == EWOULDBLOCK
                ? H->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH,
                           "testdir: %s is held", p)
                : sys_err(err, "cannot lock", p);
            close(fd);
            free(p);
            return rc;
        }
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    free(p);
    held *h = calloc(1, sizeof(*h));
    if (!h || !(h->server = strdup(id->server))) {
        free(h);
        close(fd);
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    }
    h->fd = fd;
    pthread_mutex_lock(&t->mu);
    h->next = t->locks;
    t->locks = h;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

static void t_unlock(void *store, const mc_token_identity *id)
{
    tdir *t = store;
    pthread_mutex_lock(&t->mu);
    for (held **pp = &t->locks; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->server, id->server) == 0) {
            held *h = *pp;
            *pp = h->next;
            close(h->fd);
            free(h->server);
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

static int read_all(const char *p, char **data, size_t *len, mc_err **err)
{
    *data = NULL;
    *len = 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : sys_err(err, "cannot read", p);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
        close(fd);
        errno = EINVAL;
        return sys_err(err, "cannot use", p);
    }
    char *b = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (b && got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!b)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    b[got] = '\0';
    *data = b;
    *len = got;
    return 0;
}

static int write_atomic(tdir *t, const char *p, const char *pre, size_t prelen, const char *data,
                        size_t len, mc_err **err)
{
    static unsigned long seq;
    unsigned long n = __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED);
    char *tmp = NULL;
    if (asprintf(&tmp, "%s/.tmp-%ld-%lu", t->dir, (long)getpid(), n) < 0)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int rc = sys_err(err, "cannot create", tmp);
        free(tmp);
        return rc;
    }
    bool ok = (prelen == 0 || write(fd, pre, prelen) == (ssize_t)prelen)
              && (len == 0 || write(fd, data, len) == (ssize_t)len) && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, p) < 0) {
        int rc = sys_err(err, "cannot write", p);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return 0;
}

static int t_load(void *store, const mc_token_identity *id, char **data, size_t *len,
                  mc_err **err)
{
    tdir *t = store;
    if (!name_ok(id->server))
        return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: bad server");
    char *p = file_of(t, "", id->server, ".rec");
    if (!p)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    int rc = read_all(p, data, len, err);
    free(p);
    return rc;
}

static int t_save(void *store, const mc_token_identity *id, const char *data, size_t len,
                  mc_err **err)
{
    tdir *t = store;
    if (!name_ok(id->server))
        return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: bad server");
    char *p = file_of(t, "", id->server, ".rec");
    if (!p)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    int rc = write_atomic(t, p, NULL, 0, data, len, err);
    free(p);
    return rc;
}

static int t_remove(void *store, const mc_token_identity *id, mc_err **err)
{
    tdir *t = store;
    if (!name_ok(id->server))
        return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "testdir: bad server");
    char *p = file_of(t, "", id->server, ".rec");
    if (!p)
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    int rc = unlink(p) < 0 && errno != ENOENT ? sys_err(err, "cannot remove", p) : 0;
    free(p);
    return rc;
}

static char *pending_file(tdir *t, const char *state)
{
    size_t n = strlen(state);
    if (n > 200)
        return NULL;
    char hex[401];
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)state[i]);
    hex[2 * n] = '\0';
    return file_of(t, "pending-", hex, "");
}

static int t_pending_put(void *store, const char *state, const char *data, size_t len,
                         long long expires, mc_err **err)
{
    tdir *t = store;
    char *p = pending_file(t, state);
    if (!p)
        return H->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH, "testdir: bad state");
    char pre[32];
    int n = snprintf(pre, sizeof(pre), "%lld\n", expires);
    int rc = write_atomic(t, p, pre, (size_t)n, data, len, err);
    free(p);
    return rc;
}

static int t_pending_take(void *store, const char *state, char **data, size_t *len,
                          mc_err **err)
{
    tdir *t = store;
    *data = NULL;
    *len = 0;
    char *p = pending_file(t, state);
    if (!p)
        return 0;
    /* take: rename first, so two takers cannot both read it */
    char *mine = NULL;
    if (asprintf(&mine, "%s.taken-%ld", p, (long)getpid()) < 0) {
        free(p);
        return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, NULL);
    }
    if (rename(p, mine) < 0) {
        int rc = errno == ENOENT ? 0 : sys_err(err, "cannot take", p);
        free(p);
        free(mine);
        return rc;
    }
    free(p);
    char *b = NULL;
    size_t n = 0;
    int rc = read_all(mine, &b, &n, err);
    unlink(mine);
    free(mine);
    if (rc < 0 || !b)
        return rc;
    char *nl = memchr(b, '\n', n);
    long long expires = nl ? strtoll(b, NULL, 10) : 0;
    if (!nl || expires < (long long)time(NULL)) {
        H->free_secret ? H->free_secret(b) : free(b);
        return 0;
    }
    size_t off = (size_t)(nl + 1 - b);
    memmove(b, nl + 1, n - off);
    b[n - off] = '\0';
    *data = b;
    *len = n - off;
    return 0;
}

static const mc_token_store_ops store_ops = {
    .size = sizeof(mc_token_store_ops),
    .lock = t_lock,
    .unlock = t_unlock,
    .load = t_load,
    .save = t_save,
    .remove = t_remove,
    .pending_put = t_pending_put,
    .pending_take = t_pending_take,
};

static const mc_store_plugin_ops plugin_ops = {
    .size = sizeof(mc_store_plugin_ops),
    .keys = keys,
    .validate = validate,
    .open = open_store,
    .close = close_store,
    .ops = &store_ops,
};

static const mc_plugin_desc desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TOKEN_STORE,
    .name = "testdir",
    .version = "0.0.1",
    .summary = "directory-backed token store for the tests",
    .ops = &plugin_ops,
};

MC_PLUGIN_EXPORT const mc_plugin_desc *mc_plugin_entry(const mc_host_api *host);
const mc_plugin_desc *mc_plugin_entry(const mc_host_api *host)
{
    H = host;
    return &desc;
}
