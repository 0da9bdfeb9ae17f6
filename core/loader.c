/* loader: find and dlopen plugins, check the ABI, registry by kind+name.
 *
 * Search order: the plugin_dir argument, $MAILCONN_PLUGIN_PATH (a colon
 * list), the build tree when the running program lives under it, then the
 * installed plugin folder. A folder reached twice is searched once; a file
 * reached twice (two folders, a symlink) is loaded once; a different file
 * with a kind+name already loaded is skipped with a warning naming both.
 * Every rejection is one MC_LOG_WARN line naming the file and the reason,
 * and is remembered, so a rejected file is never opened twice.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "tls-engine.h"
#include "log.h"

#ifndef MC_PLUGIN_DIR
#define MC_PLUGIN_DIR "/usr/local/lib/mailconn/plugins"
#endif
#ifndef MC_BUILD_ROOT
#define MC_BUILD_ROOT ""
#endif
#ifndef MC_BUILD_PLUGIN_DIRS
#define MC_BUILD_PLUGIN_DIRS ""
#endif

/* Under a sanitizer keep modules mapped after dlclose, so leak reports at
 * exit still resolve the plugins' symbols. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOADER_DLFLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
#else
#define LOADER_DLFLAGS (RTLD_NOW | RTLD_LOCAL)
#endif

#define NAME_MAX_LEN 64

typedef struct search_dir {
    char *path;      /* as given (trailing slashes removed) */
    char *key;       /* real path when it resolves, else path: for duplicates */
} search_dir;

typedef struct loaded {
    mc__plugin pub;  /* desc, file (real path), handle */
    char      *path; /* where it was found */
} loaded;

typedef struct failure {
    char *real;      /* real path of the rejected file (or the path found) */
    char *message;   /* "plugin <file> rejected: <reason>" */
} failure;

struct mc__registry {
    pthread_mutex_t lock;   /* recursive: each() callbacks may call get() */
    search_dir     *dirs;
    size_t          n_dirs;
    loaded        **plugins;
    size_t          n_plugins;
    failure        *failures;
    size_t          n_failures;
    mc_host_ctx    *hc;     /* where lines go (NULL: stderr) */
    unsigned        depth;  /* of the recursive lock */
    char          **pend;   /* lines made under the lock, logged after it */
    mc_log_level   *pend_level;
    size_t          n_pend;
};

/* Lines are never logged with the lock held (a sink may call back into the
 * library): made under it, logged by reg_unlock once the outermost holder
 * lets go. */
static void reg_lock(mc__registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    reg->depth++;
}

static void reg_unlock(mc__registry *reg)
{
    char **pend = NULL;
    mc_log_level *lvl = NULL;
    size_t n = 0;
    if (--reg->depth == 0) {
        pend = reg->pend;
        lvl = reg->pend_level;
        n = reg->n_pend;
        reg->pend = NULL;
        reg->pend_level = NULL;
        reg->n_pend = 0;
    }
    mc_host_ctx *hc = reg->hc;
    pthread_mutex_unlock(&reg->lock);
    for (size_t i = 0; i < n; i++) {
        mc__log(hc, lvl[i], "%s", pend[i]);
        free(pend[i]);
    }
    free(pend);
    free(lvl);
}

/* A line to log when the lock is released (called with it held). */
static void defer_log(mc__registry *reg, mc_log_level level, const char *fmt, ...) MC__FMT(3, 4);
static void defer_log(mc__registry *reg, mc_log_level level, const char *fmt, ...)
{
    if (level > mc__log_level(reg->hc))
        return;
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char **p = realloc(reg->pend, (reg->n_pend + 1) * sizeof(*p));
    if (p)
        reg->pend = p;
    mc_log_level *l = p ? realloc(reg->pend_level, (reg->n_pend + 1) * sizeof(*l)) : NULL;
    if (!l) {
        free(line);
        return;
    }
    reg->pend_level = l;
    p[reg->n_pend] = line;
    l[reg->n_pend++] = level;
}

void mc__registry_set_log(mc__registry *reg, mc_host_ctx *hc)
{
    if (reg)
        reg->hc = hc;
}

mc_host_ctx *mc__registry_hc(const mc__registry *reg)
{
    return reg ? reg->hc : NULL;
}

static const struct {
    mc_plugin_kind kind;
    const char    *prefix;
    const char    *only;      /* the one name this kind takes, or NULL */
    size_t         ops_min;   /* size of the ops table of the kind's first ABI */
    uint16_t       since;     /* the ABI 2.x minor that added the kind */
} kinds[] = {
    /* engine-tls.so is the TLS engine, every other engine-*.so an OAuth
     * engine: the name-bound entry comes first */
    { MC_PLUGIN_TLS_ENGINE,   "engine-",    "tls", sizeof(mc__tls_engine_ops), 1 },
    { MC_PLUGIN_TRANSPORT,    "transport-", NULL, offsetof(mc_transport_ops, keys), 0 },
    { MC_PLUGIN_AUTH,         "auth-",      NULL, sizeof(mc_auth_ops), 0 },
    { MC_PLUGIN_OAUTH_ENGINE, "engine-",    NULL, sizeof(mc_oauth_engine_ops), 0 },
    { MC_PLUGIN_PROXY,        "proxy-",     NULL, sizeof(mc_proxy_ops), 1 },
    { MC_PLUGIN_TOKEN_STORE,  "store-",     NULL, offsetof(mc_store_plugin_ops, describe), 1 },
};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

const char *mc__plugin_kind_name(mc_plugin_kind kind)
{
    switch (kind) {
    case MC_PLUGIN_TRANSPORT: return "transport";
    case MC_PLUGIN_AUTH: return "auth";
    case MC_PLUGIN_OAUTH_ENGINE: return "oauth-engine";
    case MC_PLUGIN_PROXY: return "proxy";
    case MC_PLUGIN_TOKEN_STORE: return "token-store";
    case MC_PLUGIN_TLS_ENGINE: return "tls-engine";
    }
    return "unknown";
}

static const char *kind_prefix(mc_plugin_kind kind)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].kind == kind)
            return kinds[i].prefix;
    return NULL;
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* "auth-basic.so" -> MC_PLUGIN_AUTH, "basic". @return 1 a plugin file name,
 * 0 not a plugin file (unknown prefix or no .so), -1 a known prefix with a
 * name outside [a-z0-9-]{1,64}. */
static int parse_file_name(const char *fname, mc_plugin_kind *kind, char name[NAME_MAX_LEN + 1])
{
    size_t len = strlen(fname);
    if (len < 4 || strcmp(fname + len - 3, ".so") != 0)
        return 0;
    for (size_t i = 0; i < N_KINDS; i++) {
        size_t pl = strlen(kinds[i].prefix);
        if (strncmp(fname, kinds[i].prefix, pl) != 0)
            continue;
        const char *n = fname + pl;
        size_t nl = len - pl - 3;
        if (kinds[i].only && (strlen(kinds[i].only) != nl || strncmp(n, kinds[i].only, nl) != 0))
            continue;
        if (!valid_name(n, nl))
            return -1;
        memcpy(name, n, nl);
        name[nl] = '\0';
        *kind = kinds[i].kind;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ search path */

static int add_dir(mc__registry *reg, const char *dir, size_t len)
{
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len == 0)
        return 0;
    char *path = strndup(dir, len);
    if (!path)
        return MC_ENOMEM;
    /* the folder's identity (device and inode: one stat, where realpath
     * costs a readlink per path component at every start) */
    char *key = NULL;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (asprintf(&key, "@%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino) < 0)
            key = NULL;
    } else {
        key = strdup(path);
    }
    if (!key) {
        free(path);
        return MC_ENOMEM;
    }
    for (size_t i = 0; i < reg->n_dirs; i++) {
        if (strcmp(reg->dirs[i].key, key) == 0) {
            free(path);
            free(key);
            return 0;
        }
    }
    search_dir *d = realloc(reg->dirs, (reg->n_dirs + 1) * sizeof(*d));
    if (!d) {
        free(path);
        free(key);
        return MC_ENOMEM;
    }
    reg->dirs = d;
    d[reg->n_dirs].path = path;
    d[reg->n_dirs].key = key;
    reg->n_dirs++;
    return 0;
}

static int add_dir_list(mc__registry *reg, const char *list)
{
    if (!list)
        return 0;
    const char *p = list;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        int rc = add_dir(reg, p, len);
        if (rc < 0)
            return rc;
        if (!colon)
            return 0;
        p = colon + 1;
    }
}

/* Whether the running program lives under the build tree. */
static bool run_from_build_tree(void)
{
    if (!MC_BUILD_ROOT[0])
        return false;
    /* the kernel's link is already the resolved path (one readlink, where
     * realpath would walk /proc and every component) */
    char exe[PATH_MAX], root[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0 || !realpath(MC_BUILD_ROOT, root))
        return false;
    exe[len] = '\0';
    size_t n = strlen(root);
    return strncmp(exe, root, n) == 0 && exe[n] == '/';
}

const char *mc_submit_helper_path(void)
{
    const char *h = run_from_build_tree() ? MC_BUILD_ROOT "/submit/mailconn-submit"
                                          : MC_HELPER_DIR "/mailconn-submit";
    return access(h, X_OK) == 0 ? h : NULL;
}

static mc__registry *registry_alloc(void)
{
    mc__registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&reg->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return reg;
}

int mc__registry_new(mc__registry **out, const char *plugin_dir, mc_err **err)
{
    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_PLUGIN,
                             "mc__registry_new: out is NULL");
    *out = NULL;
    mc__registry *reg = registry_alloc();
    if (!reg)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_PLUGIN, NULL);
    int rc = 0;
    if (plugin_dir)
        rc = add_dir(reg, plugin_dir, strlen(plugin_dir));
    if (rc == 0)
        rc = add_dir_list(reg, getenv("MAILCONN_PLUGIN_PATH"));
    if (rc == 0 && run_from_build_tree())
        rc = add_dir_list(reg, MC_BUILD_PLUGIN_DIRS);
    if (rc == 0)
        rc = add_dir(reg, MC_PLUGIN_DIR, strlen(MC_PLUGIN_DIR));
    if (rc < 0) {
        mc__registry_free(reg);
        return mc__error_set(err, rc, MC_OUTCOME_TRANSIENT, MC_STAGE_PLUGIN, NULL);
    }
    *out = reg;
    return 0;
}

int mc__registry_new_dirs(mc__registry **out, const char *const *dirs, size_t n,
                          mc_err **err)
{
    if (!out || (n && !dirs))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_PLUGIN,
                             "mc__registry_new_dirs: bad arguments");
    *out = NULL;
    mc__registry *reg = registry_alloc();
    if (!reg)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_PLUGIN, NULL);
    for (size_t i = 0; i < n; i++) {
        int rc = dirs[i] ? add_dir(reg, dirs[i], strlen(dirs[i])) : 0;
        if (rc < 0) {
            mc__registry_free(reg);
            return mc__error_set(err, rc, MC_OUTCOME_TRANSIENT, MC_STAGE_PLUGIN, NULL);
        }
    }
    *out = reg;
    return 0;
}

/* ------------------------------------------------------------ loading */

/* Remember a rejection; *msg_out (when non-NULL) gets a copy of the line. */
static void remember_failure(mc__registry *reg, const char *real, char *message, char **msg_out)
{
    if (msg_out && !*msg_out)
        *msg_out = strdup(message);
    failure *f = realloc(reg->failures, (reg->n_failures + 1) * sizeof(*f));
    char *r = strdup(real);
    if (!f || !r) {
        if (f)
            reg->failures = f;
        free(r);
        free(message);
        return;
    }
    reg->failures = f;
    f[reg->n_failures].real = r;
    f[reg->n_failures].message = message;
    reg->n_failures++;
}

/* One warning line "plugin <path> rejected: <reason>", remembered. */
static int reject(mc__registry *reg, const char *path, const char *real, char **msg_out,
                  const char *fmt, ...) MC__FMT(5, 6);
static int reject(mc__registry *reg, const char *path, const char *real, char **msg_out,
                  const char *fmt, ...)
{
    char *reason = NULL, *message = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&reason, fmt, ap);
    va_end(ap);
    if (n < 0 || asprintf(&message, "plugin %s rejected: %s", path, reason) < 0) {
        free(reason);
        defer_log(reg, MC_LOG_WARN, "plugin %s rejected", path);
        return MC_EPLUGIN;
    }
    free(reason);
    defer_log(reg, MC_LOG_WARN, "%s", message);
    remember_failure(reg, real, message, msg_out);
    return MC_EPLUGIN;
}

static bool writable_by_others(const struct stat *st)
{
    return (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

/* Refuse a file or folder that group or others may write (before dlopen). */
static int check_modes(mc__registry *reg, const char *dir, const char *path, const char *real,
                       char **msg_out)
{
    struct stat st;
    if (stat(real, &st) < 0)
        return reject(reg, path, real, msg_out, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return reject(reg, path, real, msg_out, "not a regular file");
    if (writable_by_others(&st))
        return reject(reg, path, real, msg_out,
                      "the file is writable by group or others (mode %04o)",
                      (unsigned)(st.st_mode & 07777));

    /* the folder it was found in, and the folder of its real path */
    char *real_dir = strdup(real);
    if (!real_dir)
        return reject(reg, path, real, msg_out, "out of memory");
    char *slash = strrchr(real_dir, '/');
    if (slash)
        *(slash == real_dir ? slash + 1 : slash) = '\0';
    const char *folders[2] = { dir, real_dir };
    for (size_t i = 0; i < 2; i++) {
        if (stat(folders[i], &st) < 0) {
            int rc = reject(reg, path, real, msg_out, "cannot stat its folder %s: %s",
                            folders[i], strerror(errno));
            free(real_dir);
            return rc;
        }
        if (writable_by_others(&st)) {
            int rc = reject(reg, path, real, msg_out,
                            "its folder %s is writable by group or others (mode %04o)",
                            folders[i], (unsigned)(st.st_mode & 07777));
            free(real_dir);
            return rc;
        }
    }
    free(real_dir);
    return 0;
}

/* Check a descriptor against the file name. @return NULL when good, else a
 * static-or-formatted reason in buf. */
static const char *check_desc(const mc_plugin_desc *d, mc_plugin_kind kind, const char *name,
                              char *buf, size_t size)
{
    if (!d)
        return "mc_plugin_entry returned no descriptor";
    if (d->abi_major != MC_PLUGIN_ABI_MAJOR) {
        /* load_candidate words this one itself ("<file>: built for ABI 1.1,
         * this is 2.0"): not reached */
        snprintf(buf, size, "built for ABI %u.%u, this is %u.%u",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor,
                 (unsigned)MC_PLUGIN_ABI_MAJOR, (unsigned)MC_PLUGIN_ABI_MINOR);
        return buf;
    }
    if (d->abi_minor > MC_PLUGIN_ABI_MINOR) {
        snprintf(buf, size, "built for ABI %u.%u, this is %u.%u",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor,
                 (unsigned)MC_PLUGIN_ABI_MAJOR, (unsigned)MC_PLUGIN_ABI_MINOR);
        return buf;
    }
    size_t k;
    for (k = 0; k < N_KINDS; k++)
        if (kinds[k].kind == d->kind)
            break;
    if (k == N_KINDS) {
        snprintf(buf, size, "unknown kind %d", (int)d->kind);
        return buf;
    }
    if (d->abi_minor < kinds[k].since) {
        snprintf(buf, size, "kind %s needs ABI %u.%u (built for %u.%u)",
                 mc__plugin_kind_name(d->kind), (unsigned)MC_PLUGIN_ABI_MAJOR,
                 (unsigned)kinds[k].since, (unsigned)d->abi_major, (unsigned)d->abi_minor);
        return buf;
    }
    if (d->kind != kind) {
        snprintf(buf, size, "kind %s does not match the file name (expected %s)",
                 mc__plugin_kind_name(d->kind), mc__plugin_kind_name(kind));
        return buf;
    }
    if (!d->name || strcmp(d->name, name) != 0) {
        snprintf(buf, size, "descriptor name \"%.64s\" differs from the file name (\"%s\")",
                 d->name ? d->name : "(null)", name);
        return buf;
    }
    if (!d->version || !d->summary)
        return "descriptor without a version or summary";
    if (!d->ops)
        return "NULL ops table";
    size_t ops_size = *(const size_t *)d->ops;
    if (ops_size < kinds[k].ops_min) {
        snprintf(buf, size, "ops table too small (size %zu, ABI %u.%u needs %zu)",
                 ops_size, (unsigned)MC_PLUGIN_ABI_MAJOR, (unsigned)kinds[k].since,
                 kinds[k].ops_min);
        return buf;
    }
    /* the ops a kind cannot do without */
    if (d->kind == MC_PLUGIN_PROXY && !((const mc_proxy_ops *)d->ops)->tunnel)
        return "proxy ops without tunnel";
    if (d->kind == MC_PLUGIN_TOKEN_STORE) {
        const mc_store_plugin_ops *so = d->ops;
        if (!so->open)
            return "token-store ops without open";
        if (!so->ops)
            return "token-store ops without ops (the mc_token_store_ops table)";
    }
    return NULL;
}

/* A module's entry is called once per process while it is loaded: dlopen
 * gives every registry (every context) the same handle for one file, and
 * the entry writes the module's own globals (its host table pointer), so
 * two contexts loading it at once would race. The first load calls it
 * under entry_lock and keeps the descriptor; later loads take it from
 * here (the lock orders the entry's writes before their reads); the last
 * registry to let the module go forgets it, before dlclose. */
static pthread_mutex_t entry_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct entered {
    void                 *handle;
    const mc_plugin_desc *desc;
    unsigned              refs;
} entered;

static entered *entered_tab;
static size_t n_entered, cap_entered;

/* Called with entry_lock held. */
static const mc_plugin_desc *entered_desc(void *handle)
{
    for (size_t i = 0; i < n_entered; i++)
        if (entered_tab[i].handle == handle)
            return entered_tab[i].desc;
    return NULL;
}

/* One more registry holds handle (first: it was just entered). Called with
 * entry_lock held. @return 0, MC_ENOMEM. */
static int entered_keep(void *handle, const mc_plugin_desc *desc, bool first)
{
    if (!first) {
        for (size_t i = 0; i < n_entered; i++)
            if (entered_tab[i].handle == handle)
                entered_tab[i].refs++;
        return 0;
    }
    if (n_entered == cap_entered) {
        size_t cap = cap_entered ? cap_entered * 2 : 16;
        entered *t = realloc(entered_tab, cap * sizeof(*t));
        if (!t)
            return MC_ENOMEM;
        entered_tab = t;
        cap_entered = cap;
    }
    entered_tab[n_entered++] = (entered){ handle, desc, 1 };
    return 0;
}

/* A registry lets handle go: dlclose it, forgetting it first when it was
 * the last holder. */
static void entered_close(void *handle)
{
    pthread_mutex_lock(&entry_lock);
    for (size_t i = 0; i < n_entered; i++) {
        if (entered_tab[i].handle == handle && --entered_tab[i].refs == 0) {
            /* the last holder: fini once, before the module goes (ABI 2.1) */
            const mc_plugin_desc *d = entered_tab[i].desc;
            if (d && d->abi_minor >= 1 && d->fini)
                d->fini();
            entered_tab[i] = entered_tab[--n_entered];
            break;
        }
    }
    if (!n_entered) {
        free(entered_tab);
        entered_tab = NULL;
        cap_entered = 0;
    }
    dlclose(handle);   /* under the lock: a new load of it waits until it is gone */
    pthread_mutex_unlock(&entry_lock);
}

static loaded *find_loaded(mc__registry *reg, mc_plugin_kind kind, const char *name)
{
    for (size_t i = 0; i < reg->n_plugins; i++) {
        const mc_plugin_desc *d = reg->plugins[i]->pub.desc;
        if (d->kind == kind && strcmp(d->name, name) == 0)
            return reg->plugins[i];
    }
    return NULL;
}

/* Open dir/fname (whose name says kind+name). Called with the lock held.
 * @return 0 with *out, or MC_EPLUGIN with *msg_out (malloc'd) set to why. */
static int load_candidate(mc__registry *reg, const char *dir, const char *fname,
                          mc_plugin_kind kind, const char *name, const mc__plugin **out,
                          char **msg_out)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, fname) < 0)
        return MC_ENOMEM;
    int rc = MC_EPLUGIN;
    char *real = realpath(path, NULL);
    if (!real) {
        rc = reject(reg, path, path, msg_out, "cannot resolve the path: %s", strerror(errno));
        goto done;
    }
    /* the same file reached twice is loaded once */
    for (size_t i = 0; i < reg->n_plugins; i++) {
        if (strcmp(reg->plugins[i]->pub.file, real) == 0) {
            *out = &reg->plugins[i]->pub;
            rc = 0;
            goto done;
        }
    }
    /* a file rejected earlier is not opened again */
    for (size_t i = 0; i < reg->n_failures; i++) {
        if (strcmp(reg->failures[i].real, real) == 0) {
            if (msg_out && !*msg_out)
                *msg_out = strdup(reg->failures[i].message);
            goto done;
        }
    }
    /* a different file with a kind+name already loaded: the first wins */
    loaded *prev = find_loaded(reg, kind, name);
    if (prev) {
        char *message = NULL;
        if (asprintf(&message, "plugin %s skipped: %s \"%s\" is already loaded from %s",
                     path, mc__plugin_kind_name(kind), name, prev->path) >= 0) {
            defer_log(reg, MC_LOG_WARN, "%s", message);
            remember_failure(reg, real, message, msg_out);
        }
        goto done;
    }
    if ((rc = check_modes(reg, dir, path, real, msg_out)) < 0)
        goto done;
    rc = MC_EPLUGIN;

    dlerror();
    void *handle = dlopen(real, LOADER_DLFLAGS);
    if (!handle) {
        const char *e = dlerror();
        reject(reg, path, real, msg_out, "dlopen: %s", e ? e : "unknown error");
        goto done;
    }
    mc_plugin_entry_fn *entry;
    *(void **)&entry = dlsym(handle, MC_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        dlclose(handle);
        reject(reg, path, real, msg_out, "missing entry symbol %s", MC_PLUGIN_ENTRY_SYMBOL);
        goto done;
    }
    pthread_mutex_lock(&entry_lock);
    const mc_plugin_desc *desc = entered_desc(handle);
    bool first = !desc;
    if (first)
        desc = entry(mc__host());   /* once per process while loaded: see entry_lock */
    if (desc && desc->abi_major != MC_PLUGIN_ABI_MAJOR) {
        /* another major: its ops take other arguments (2.0 added the
         * context handle), nothing in it may be called */
        char *message = NULL;
        unsigned major = desc->abi_major, minor = desc->abi_minor;
        pthread_mutex_unlock(&entry_lock);
        dlclose(handle);   /* desc is gone with it */
        if (asprintf(&message, "%s: built for ABI %u.%u, this is %u.%u", path, major, minor,
                     (unsigned)MC_PLUGIN_ABI_MAJOR, (unsigned)MC_PLUGIN_ABI_MINOR) >= 0) {
            defer_log(reg, MC_LOG_WARN, "%s", message);
            remember_failure(reg, real, message, msg_out);
        }
        goto done;
    }
    char why_buf[256];
    const char *why = check_desc(desc, kind, name, why_buf, sizeof(why_buf));
    if (why) {
        pthread_mutex_unlock(&entry_lock);
        dlclose(handle);
        reject(reg, path, real, msg_out, "%s", why);
        goto done;
    }
    /* ABI 2.1: init once per process load, before any op (a 2.0
     * descriptor ends before init/fini) */
    if (first && desc->abi_minor >= 1 && desc->init) {
        mc_err *ierr = NULL;
        int irc = desc->init(mc__host(), &ierr);
        if (irc != 0) {
            char line[512];
            snprintf(line, sizeof(line), "init failed (%s)%s%.400s", mc_strerror(irc),
                     ierr && ierr->message ? ": " : "",
                     ierr && ierr->message ? ierr->message : "");
            for (char *c = line; *c; c++)
                if (*c == '\n' || *c == '\r')
                    *c = ' ';
            mc_error_free(ierr);
            pthread_mutex_unlock(&entry_lock);
            dlclose(handle);   /* no fini: init did not succeed */
            reject(reg, path, real, msg_out, "%s", line);
            goto done;
        }
        mc_error_free(ierr);
    }
    loaded *l = calloc(1, sizeof(*l));
    loaded **list = l ? realloc(reg->plugins, (reg->n_plugins + 1) * sizeof(*list)) : NULL;
    if (list)
        reg->plugins = list;
    if (!list || entered_keep(handle, desc, first) < 0) {
        if (first && desc->abi_minor >= 1 && desc->fini)
            desc->fini();   /* init ran above */
        pthread_mutex_unlock(&entry_lock);
        free(l);
        dlclose(handle);
        rc = MC_ENOMEM;
        goto done;
    }
    pthread_mutex_unlock(&entry_lock);
    l->pub.desc = desc;
    l->pub.file = real;
    l->pub.handle = handle;
    l->path = path;
    real = NULL;
    path = NULL;
    list[reg->n_plugins++] = l;
    defer_log(reg, MC_LOG_DEBUG, "plugin %s loaded: %s %s %s", l->path,
            mc__plugin_kind_name(kind), desc->name, desc->version);
    *out = &l->pub;
    rc = 0;
done:
    free(real);
    free(path);
    return rc;
}

static char *joined_dirs(const mc__registry *reg)
{
    mc__buf b = MC__BUF_INIT;
    for (size_t i = 0; i < reg->n_dirs; i++)
        if (mc__buf_printf(&b, "%s%s", i ? ":" : "", reg->dirs[i].path) < 0)
            break;
    if (!b.data)
        mc__buf_puts(&b, "(no plugin folders)");
    return mc__buf_detach(&b);
}

int mc__registry_get(mc__registry *reg, mc_plugin_kind kind, const char *name,
                     const mc__plugin **out, mc_err **err)
{
    if (!reg || !name || !out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_PLUGIN,
                             "mc__registry_get: bad arguments");
    *out = NULL;
    const char *prefix = kind_prefix(kind);
    if (!prefix)
        return mc__error_set(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_PLUGIN,
                             "unknown plugin kind %d", (int)kind);
    if (!valid_name(name, strlen(name)))
        return mc__error_set(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_PLUGIN,
                             "invalid plugin name \"%.64s\": expected [a-z0-9-]{1,64}", name);
    char fname[NAME_MAX_LEN + 16];
    snprintf(fname, sizeof(fname), "%s%s.so", prefix, name);

    reg_lock(reg);
    loaded *l = find_loaded(reg, kind, name);
    if (l) {
        *out = &l->pub;
        reg_unlock(reg);
        return 0;
    }
    bool found = false;
    char *why = NULL;
    int rc = MC_EPLUGIN;
    for (size_t i = 0; i < reg->n_dirs; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", reg->dirs[i].path, fname) < 0) {
            rc = MC_ENOMEM;
            break;
        }
        struct stat st;
        bool present = stat(path, &st) == 0 || errno != ENOENT;
        free(path);
        if (!present)
            continue;
        found = true;
        rc = load_candidate(reg, reg->dirs[i].path, fname, kind, name, out, &why);
        if (rc == 0 || rc == MC_ENOMEM)
            break;
    }
    if (rc == 0) {
        reg_unlock(reg);
        free(why);
        return 0;
    }
    if (rc == MC_ENOMEM) {
        reg_unlock(reg);
        free(why);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_PLUGIN, NULL);
    }
    if (!found) {
        char *dirs = joined_dirs(reg);
        reg_unlock(reg);
        mc__error_set(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_PLUGIN,
                      "no plugin %s in %s", fname, dirs ? dirs : "(out of memory)");
        free(dirs);
        free(why);
        return MC_EPLUGIN;
    }
    reg_unlock(reg);
    mc__error_set(err, MC_EPLUGIN, MC_OUTCOME_CONFIG, MC_STAGE_PLUGIN, "%s",
                  why ? why : fname);
    free(why);
    return MC_EPLUGIN;
}

bool mc__registry_exists(mc__registry *reg, mc_plugin_kind kind, const char *name)
{
    const char *prefix = kind_prefix(kind);
    if (!reg || !name || !prefix || !valid_name(name, strlen(name)))
        return false;
    for (size_t i = 0; i < reg->n_dirs; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s%s.so", reg->dirs[i].path, prefix, name) < 0)
            return false;
        struct stat st;
        bool ok = stat(path, &st) == 0 && S_ISREG(st.st_mode);
        free(path);
        if (ok)
            return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_dir(mc__registry *reg, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        defer_log(reg, MC_LOG_DEBUG, "plugin folder %s: %s", dir, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        mc_plugin_kind kind;
        char name[NAME_MAX_LEN + 1];
        if (parse_file_name(de->d_name, &kind, name) == 0)
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn)
            break;
        names = nn;
        if (!(names[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        mc_plugin_kind kind;
        char name[NAME_MAX_LEN + 1];
        const mc__plugin *p;
        if (parse_file_name(names[i], &kind, name) < 0) {
            char *path = NULL;
            if (asprintf(&path, "%s/%s", dir, names[i]) >= 0) {
                bool seen = false;
                for (size_t k = 0; k < reg->n_failures && !seen; k++)
                    seen = strcmp(reg->failures[k].real, path) == 0;
                if (!seen)
                    reject(reg, path, path, NULL,
                           "bad file name: expected <kind>-<name>.so with a name of [a-z0-9-]{1,%d}",
                           NAME_MAX_LEN);
                free(path);
            }
        } else {
            load_candidate(reg, dir, names[i], kind, name, &p, NULL);
        }
        free(names[i]);
    }
    free(names);
}

int mc__registry_load_all(mc__registry *reg)
{
    if (!reg)
        return MC_EINVAL;
    reg_lock(reg);
    for (size_t i = 0; i < reg->n_dirs; i++)
        load_dir(reg, reg->dirs[i].path);
    reg_unlock(reg);
    return 0;
}

void mc__registry_each(mc__registry *reg,
                       void (*fn)(const mc__plugin *p, void *payload), void *payload)
{
    if (!reg || !fn)
        return;
    reg_lock(reg);
    for (size_t i = 0; i < reg->n_plugins; i++)
        fn(&reg->plugins[i]->pub, payload);
    reg_unlock(reg);
}

void mc__registry_free(mc__registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n_plugins; i++) {
        loaded *l = reg->plugins[i];
        if (l->pub.handle)
            entered_close(l->pub.handle);
        free(l->pub.file);
        free(l->path);
        free(l);
    }
    free(reg->plugins);
    for (size_t i = 0; i < reg->n_failures; i++) {
        free(reg->failures[i].real);
        free(reg->failures[i].message);
    }
    free(reg->failures);
    for (size_t i = 0; i < reg->n_pend; i++)
        free(reg->pend[i]);
    free(reg->pend);
    free(reg->pend_level);
    for (size_t i = 0; i < reg->n_dirs; i++) {
        free(reg->dirs[i].path);
        free(reg->dirs[i].key);
    }
    free(reg->dirs);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}
