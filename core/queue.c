/* queue: the durable spool (DESIGN.md "System mail: sendmail and the
 * queue"). Submission writes tmp/<QID> (fsync), links it to <QID> and
 * fsyncs the folder: a runner, which reads only final names, never sees a
 * partial message. A message file never changes; its <QID>.state is
 * replaced atomically by whoever holds the message's flock. Folders and
 * files are checked as the token store checks its own (the user's, 0700 /
 * 0600, O_NOFOLLOW, openat). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json_object.h>  /* never json.h: its debug.h declares a function mc_error */
#include <json-c/json_tokener.h>
#include <openssl/rand.h>

#include "context.h"
#include "log.h"
#include "message.h"
#include "queue.h"

#define TMP_STALE_S 60        /* an unlocked temp file this old is a dead writer's */
#define NOTICE_HEADERS_MAX (64 * 1024)

/* ---------------------------------------------------------------- IDs */

int mc__queue_make_id(char *out, long long usec)
{
    unsigned char r[4];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return MC_ENOMEM;
    snprintf(out, MC_QUEUE_ID_SIZE, "%013llX%02X%02X%02X%02X",
             (unsigned long long)usec & 0xFFFFFFFFFFFFFULL, r[0], r[1], r[2], r[3]);
    return 0;
}

bool mc__queue_id_valid(const char *s)
{
    if (!s || strlen(s) != MC__QUEUE_ID_LEN)
        return false;
    for (size_t i = 0; i < MC__QUEUE_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

long mc__queue_pause(int retry_s, unsigned attempts)
{
    long p = retry_s < 1 ? 1 : retry_s;
    for (unsigned i = 1; i < attempts && p < MC__QUEUE_MAX_PAUSE_S; i++)
        p *= 2;
    return p > MC__QUEUE_MAX_PAUSE_S ? MC__QUEUE_MAX_PAUSE_S : p;
}

/* ---------------------------------------------------------------- format */

static int put_str(json_object *o, const char *key, const char *v)
{
    if (!v)
        return 0;
    json_object *s = json_object_new_string(v);
    return s && json_object_object_add(o, key, s) == 0 ? 0 : MC_ENOMEM;
}

static int put_list(json_object *o, const char *key, char *const *v, size_t n)
{
    json_object *a = json_object_new_array();
    if (!a)
        return MC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_new_string(v[i]);
        if (!s || json_object_array_add(a, s) != 0) {
            json_object_put(s);
            json_object_put(a);
            return MC_ENOMEM;
        }
    }
    return json_object_object_add(o, key, a) == 0 ? 0 : MC_ENOMEM;
}

static int put_int(json_object *o, const char *key, long long v)
{
    json_object *i = json_object_new_int64(v);
    return i && json_object_object_add(o, key, i) == 0 ? 0 : MC_ENOMEM;
}

static int put_bool(json_object *o, const char *key, bool v)
{
    json_object *b = json_object_new_boolean(v);
    return b && json_object_object_add(o, key, b) == 0 ? 0 : MC_ENOMEM;
}

static int emit(json_object *o, int rc, mc__buf *out)
{
    if (rc == 0) {
        const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        rc = t && mc__buf_printf(out, "%s\n", t) == 0 ? 0 : MC_ENOMEM;
    }
    json_object_put(o);
    return rc;
}

int mc__queue_meta_format(const mc__queue_meta *m, mc__buf *out)
{
    json_object *o = json_object_new_object();
    if (!o)
        return MC_ENOMEM;
    int rc = put_int(o, "v", 1);
    if (!rc) rc = put_str(o, "id", m->id);
    if (!rc) rc = put_int(o, "submitted", m->submitted);
    if (!rc) rc = put_int(o, "uid", m->uid);
    if (!rc) rc = put_str(o, "user", m->user ? m->user : "");
    if (!rc) rc = put_str(o, "server", m->server);
    if (!rc) rc = put_str(o, "from", m->from ? m->from : "");
    if (!rc) rc = put_list(o, "rcpts", m->rcpts, m->n_rcpts);
    if (!rc) rc = put_str(o, "notify", m->notify);
    if (!rc) rc = put_str(o, "ret", m->ret);
    if (!rc) rc = put_str(o, "envid", m->envid);
    if (!rc) rc = put_int(o, "size", (long long)m->size);
    return emit(o, rc, out);
}

static json_object *parse_obj(const char *text, size_t len)
{
    if (len > (size_t)1 << 24 || memchr(text, '\0', len))
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success
              && json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (!ok || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* a string member; absent: *out NULL, unless required */
static bool get_str(json_object *o, const char *key, bool required, char **out)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return !required;
    if (!json_object_is_type(v, json_type_string)
        || strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
        return false;
    return (*out = strdup(json_object_get_string(v))) != NULL;
}

static bool get_int(json_object *o, const char *key, bool required, long long lo, long long *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return !required;
    if (!json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return *out >= lo;
}

static bool get_list(json_object *o, const char *key, char ***out, size_t *n)
{
    json_object *a;
    *out = NULL;
    *n = 0;
    if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
        return false;
    size_t len = json_object_array_length(a);
    if (!(*out = calloc(len ? len : 1, sizeof(char *))))
        return false;
    for (size_t i = 0; i < len; i++) {
        json_object *s = json_object_array_get_idx(a, i);
        if (!json_object_is_type(s, json_type_string)
            || strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s)
            || !((*out)[i] = strdup(json_object_get_string(s))))
            return false;
        *n = i + 1;
    }
    return true;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void mc__queue_meta_clear(mc__queue_meta *m)
{
    free(m->user);
    free(m->server);
    free(m->from);
    free_list(m->rcpts, m->n_rcpts);
    free(m->notify);
    free(m->ret);
    free(m->envid);
    memset(m, 0, sizeof(*m));
}

int mc__queue_meta_parse(mc__queue_meta *out, const char *line, size_t len)
{
    memset(out, 0, sizeof(*out));
    json_object *o = parse_obj(line, len);
    if (!o)
        return MC_EFILE;
    long long v = 0, uid = 0, size = 0;
    char *id = NULL;
    bool ok = get_int(o, "v", true, 1, &v) && v == 1 && get_str(o, "id", true, &id)
              && mc__queue_id_valid(id) && get_int(o, "submitted", true, 0, &out->submitted)
              && get_int(o, "uid", true, 0, &uid) && get_str(o, "user", true, &out->user)
              && get_str(o, "server", false, &out->server) && get_str(o, "from", true, &out->from)
              && get_list(o, "rcpts", &out->rcpts, &out->n_rcpts) && out->n_rcpts
              && get_str(o, "notify", false, &out->notify) && get_str(o, "ret", false, &out->ret)
              && get_str(o, "envid", false, &out->envid) && get_int(o, "size", true, 0, &size);
    if (ok) {
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->uid = (unsigned)uid;
        out->size = (unsigned long long)size;
    }
    free(id);
    json_object_put(o);
    if (!ok) {
        mc__queue_meta_clear(out);
        return MC_EFILE;
    }
    return 0;
}

int mc__queue_state_format(const mc__queue_state *s, mc__buf *out)
{
    json_object *o = json_object_new_object();
    if (!o)
        return MC_ENOMEM;
    int rc = put_int(o, "attempts", s->attempts);
    if (!rc) rc = put_int(o, "next_try", s->next_try);
    if (!rc) rc = put_str(o, "reason", s->reason);
    if (!rc) rc = put_bool(o, "held", s->held);
    if (!rc) rc = put_bool(o, "unknown", s->unknown);
    if (!rc && s->has_rcpts) rc = put_list(o, "rcpts", s->rcpts, s->n_rcpts);
    return emit(o, rc, out);
}

void mc__queue_state_clear(mc__queue_state *s)
{
    free(s->reason);
    free_list(s->rcpts, s->n_rcpts);
    memset(s, 0, sizeof(*s));
}

int mc__queue_state_parse(mc__queue_state *out, const char *text, size_t len)
{
    memset(out, 0, sizeof(*out));
    while (len && text[len - 1] == '\n')
        len--;
    json_object *o = parse_obj(text, len);
    if (!o)
        return MC_EFILE;
    long long att = 0;
    json_object *v;
    bool ok = get_int(o, "attempts", true, 0, &att) && get_int(o, "next_try", true, 0, &out->next_try)
              && get_str(o, "reason", false, &out->reason);
    if (ok && json_object_object_get_ex(o, "held", &v))
        out->held = json_object_get_boolean(v);
    if (ok && json_object_object_get_ex(o, "unknown", &v))
        out->unknown = json_object_get_boolean(v);
    if (ok && json_object_object_get_ex(o, "rcpts", NULL)) {
        out->has_rcpts = true;
        ok = get_list(o, "rcpts", &out->rcpts, &out->n_rcpts);
    }
    out->attempts = (unsigned)att;
    json_object_put(o);
    if (!ok) {
        mc__queue_state_clear(out);
        return MC_EFILE;
    }
    return 0;
}

/* ---------------------------------------------------------------- folders */

typedef struct qdir {
    char *path;
    int   fd;      /* the queue folder */
    int   tmp;     /* tmp/ */
} qdir;

static int oom(mc_err **err)
{
    return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE, "out of memory");
}

static int io_error(mc_err **err, const char *what, const char *path, const char *name)
{
    int e = errno;
    return mc__error_set(err, MC_EFILE, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE, "cannot %s %s%s%s: %s",
                         what, path, name ? "/" : "", name ? name : "", strerror(e));
}

static int unsafe(mc_err **err, const char *hint, const char *fmt, ...) MC__FMT(3, 4);
static int unsafe(mc_err **err, const char *hint, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int rc = mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_QUEUE, "queue refused: %s",
                           msg);
    if (err && *err && hint)
        mc__error_hint(*err, hint);
    return rc;
}

static void qdir_close(qdir *q)
{
    if (q->fd >= 0)
        close(q->fd);
    if (q->tmp >= 0)
        close(q->tmp);
    free(q->path);
    q->path = NULL;
    q->fd = q->tmp = -1;
}

static char *queue_path(const mc_context *ctx)
{
    const mc__config *cfg = ctx->cfg;
    char *p = NULL;
    if (cfg->queue_dir)
        return strdup(cfg->queue_dir);
    if (cfg->path && strcmp(cfg->path, MC__SYSTEM_CONFIG) == 0)
        return strdup(MC_SPOOL_DIR "/queue");
    if (!ctx->hc.state_dir || asprintf(&p, "%s/queue", ctx->hc.state_dir) < 0)
        return NULL;
    return p;
}

/* A private folder of the queue, open: this user's, 0700. */
static int check_private(int fd, const char *path, mc_err **err)
{
    struct stat st;
    char hint[1200];
    if (fstat(fd, &st) != 0)
        return io_error(err, "stat", path, NULL);
    if (!S_ISDIR(st.st_mode))
        return unsafe(err, NULL, "%s is not a folder", path);
    if (st.st_uid != geteuid()) {
        snprintf(hint, sizeof(hint), "chown it to uid %u, after checking the files in it",
                 (unsigned)geteuid());
        return unsafe(err, hint, "%s is owned by uid %u, not by this user (uid %u)", path,
                      (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (st.st_mode & 077) {
        snprintf(hint, sizeof(hint), "chmod 700 %s, after checking the files in it", path);
        return unsafe(err, hint, "%s is open to group or others (mode %04o, must be 0700)", path,
                      (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

static int open_failed(const char *path, const char *name, mc_err **err)
{
    if (errno == ELOOP || errno == ENOTDIR || errno == EMLINK)
        return unsafe(err, NULL, "%s%s%s is a symbolic link or not a folder", path,
                      name ? "/" : "", name ? name : "");
    return io_error(err, "open", path, name);
}

/* The queue folder and tmp/, checked; with create, made (0700, and the
 * missing parents) when missing; without, q->fd is -1 when it is missing
 * (nothing queued). The parent may not be writable by group or others
 * (a root-owned sticky folder such as /tmp excepted). */
static int qdir_open(const mc_context *ctx, bool create, qdir *q, mc_err **err)
{
    q->fd = q->tmp = -1;
    if (!(q->path = queue_path(ctx)))
        return oom(err);
    int rc = 0;
    if (create) {
        char *p = strdup(q->path);
        if (!p)
            return oom(err);
        for (char *s = p + 1; *s; s++) {
            if (*s != '/')
                continue;
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                rc = io_error(err, "create", p, NULL);
                break;
            }
            *s = '/';
        }
        free(p);
        if (!rc && mkdir(q->path, 0700) != 0 && errno != EEXIST)
            rc = io_error(err, "create", q->path, NULL);
        if (rc)
            return rc;
    }
    char *parent = strdup(q->path), *slash;
    if (!parent)
        return oom(err);
    if ((slash = strrchr(parent, '/')))
        slash[slash == parent ? 1 : 0] = '\0';
    struct stat pst;
    if (stat(parent, &pst) == 0 && (pst.st_mode & 022)
        && !((pst.st_mode & S_ISVTX) && pst.st_uid == 0)) {
        rc = unsafe(err, "use a queue folder inside a folder only you can change",
                    "%s, the queue folder's parent, is writable by group or others (mode %04o)",
                    parent, (unsigned)(pst.st_mode & 07777));
        free(parent);
        return rc;
    }
    free(parent);
    q->fd = open(q->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (q->fd < 0)
        return !create && errno == ENOENT ? 0 : open_failed(q->path, NULL, err);
    if ((rc = check_private(q->fd, q->path, err)) < 0)
        return rc;
    if (mkdirat(q->fd, "tmp", 0700) != 0 && errno != EEXIST)
        return io_error(err, "create", q->path, "tmp");
    q->tmp = openat(q->fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (q->tmp < 0)
        return open_failed(q->path, "tmp", err);
    char tp[4096];
    snprintf(tp, sizeof(tp), "%s/tmp", q->path);
    return check_private(q->tmp, tp, err);
}

static int no_queue(mc_err **err)
{
    return mc__error_set(err, MC_ENOTSUP, MC_OUTCOME_CONFIG, MC_STAGE_QUEUE,
                         "no queue configured (add a top-level \"queue\" object to the config)");
}

bool mc_queue_configured(const mc_context *ctx)
{
    return ctx && ctx->cfg && ctx->cfg->has_queue;
}

/* ---------------------------------------------------------------- log */

void mc__queue_log(const mc_context *ctx, int pri, const char *fmt, ...)
{
    mc__toplog top = { ctx->cfg->log_file, ctx->cfg->syslog_facility };
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    mc_host_ctx *hc = (mc_host_ctx *)&ctx->hc;   /* logging is not a change of ctx */
    mc__log(hc, pri == LOG_INFO ? MC_LOG_INFO : MC_LOG_WARN, "%s", line);
    if (top.log_file || top.facility >= 0)
        mc__toplog_write(hc, &top, pri, line);
    free(line);
}

static void put_rcpts(mc__buf *b, char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mc__buf_printf(b, "%s<%s>", i ? "," : "", v[i]);
}

/* ---------------------------------------------------------------- submit */

typedef struct fsink {
    int      fd;
    mc__buf  b;
    uint64_t written;
    int      err;       /* errno of a failed write */
} fsink;

static int fsink_flush(fsink *f)
{
    size_t off = 0;
    while (off < f->b.len) {
        ssize_t n = write(f->fd, f->b.data + off, f->b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            f->err = n < 0 ? errno : ENOSPC;
            return MC_EFILE;
        }
        off += (size_t)n;
    }
    f->written += f->b.len;
    mc__buf_clear(&f->b);
    return 0;
}

static int fsink_put(void *payload, const void *data, size_t len, mc_err **err)
{
    (void)err;
    fsink *f = payload;
    if (mc__buf_put(&f->b, data, len) < 0)
        return MC_ENOMEM;
    return f->b.len >= 65536 ? fsink_flush(f) : 0;
}

static const char *alias_lookup(void *payload, const char *name)
{
    const mc__config *cfg = payload;
    return cfg && cfg->n_aliases ? mc__config_alias(cfg, name) : mc__system_alias(name);
}

static void rfc5322_date(char *out, size_t n, time_t t)
{
    struct tm tm;
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    gmtime_r(&t, &tm);
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void host_name(char *out, size_t n)
{
    if (gethostname(out, n) != 0 || !*out)
        snprintf(out, n, "localhost");
    out[n - 1] = '\0';
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || *p == '.' || *p == '-'))
            *p = '-';
}

/* The submitting user's name: from the password database, else "uid N";
 * only characters that are safe in a header comment and a log line. */
static char *user_name(uid_t uid)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    char *out = NULL;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_name[0]) {
        out = strdup(res->pw_name);
        for (char *p = out; p && *p; p++)
            if ((unsigned char)*p <= ' ' || *p == '(' || *p == ')' || *p == ';' || *p == '\\'
                || (unsigned char)*p >= 0x7f)
                *p = '_';
    } else if (asprintf(&out, "uid%u", (unsigned)uid) < 0) {
        out = NULL;
    }
    return out;
}

/* Fsync a folder: what was linked or renamed in it is on disk. */
static int sync_dir(int fd, const char *path, mc_err **err)
{
    if (fsync(fd) != 0)
        return io_error(err, "fsync", path, NULL);
    return 0;
}

/* Remove dead writers' temp files: unlocked and older than TMP_STALE_S. */
static void sweep_tmp(const qdir *q)
{
    int dfd = dup(q->tmp);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *de;
    time_t now = time(NULL);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        int fd = openat(q->tmp, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > TMP_STALE_S
            && flock(fd, LOCK_EX | LOCK_NB) == 0)
            unlinkat(q->tmp, de->d_name, 0);
        close(fd);
    }
    closedir(d);
}

/* Write an open message (prepared) durably as a new queued message. */
static int spool_write(mc_context *ctx, const qdir *q, mc_message *msg, const char *server,
                       long long submitted, long long as_uid, char *id_out, mc_err **err)
{
    mc__queue_meta m = { 0 };
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long usec = (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
    if (mc__queue_make_id(m.id, usec) < 0)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE,
                             "random generator failed");
    m.submitted = submitted ? submitted : (long long)tv.tv_sec;
    /* as_uid: the submission helper's user (core/drop.c); -1: this process's */
    m.uid = as_uid >= 0 ? (unsigned)as_uid : (unsigned)getuid();
    int rc = 0;
    const char *notify, *ret, *envid;
    mc__message_dsn(msg, &notify, &ret, &envid);
    m.user = user_name((uid_t)m.uid);
    m.server = server ? strdup(server) : NULL;
    m.from = strdup(mc__message_envelope_from(msg) ? mc__message_envelope_from(msg) : "");
    m.n_rcpts = mc__message_rcpt_count(msg);
    m.rcpts = calloc(m.n_rcpts ? m.n_rcpts : 1, sizeof(char *));
    m.notify = notify ? strdup(notify) : NULL;
    m.ret = ret ? strdup(ret) : NULL;
    m.envid = envid ? strdup(envid) : NULL;
    bool nomem = !m.user || (server && !m.server) || !m.from || !m.rcpts || (notify && !m.notify)
                 || (ret && !m.ret) || (envid && !m.envid);
    for (size_t i = 0; !nomem && i < m.n_rcpts; i++)
        nomem = !(m.rcpts[i] = strdup(mc__message_rcpts(msg)[i]));
    char host[256], date[64];
    host_name(host, sizeof(host));
    rfc5322_date(date, sizeof(date), (time_t)m.submitted);
    mc__buf recv = MC__BUF_INIT, line = MC__BUF_INIT;
    /* RFC 5321 4.4: who handed it over, who took it, the ID, when */
    if (!nomem && mc__buf_printf(&recv, "Received: from %s by %s (mailconn) id %s;\r\n\t%s\r\n",
                                 m.user, host, m.id, date) < 0)
        nomem = true;
    m.size = recv.len + mc__message_size(msg);
    if (nomem || mc__queue_meta_format(&m, &line) < 0) {
        rc = oom(err);
        goto out;
    }

    fsink f = { .fd = -1, .b = MC__BUF_INIT };
    f.fd = openat(q->tmp, m.id, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f.fd < 0) {
        rc = io_error(err, "create", q->path, "tmp");
        goto out;
    }
    flock(f.fd, LOCK_EX);   /* a live writer's temp file is not swept */
    rc = fsink_put(&f, line.data, line.len, err);
    if (!rc)
        rc = fsink_put(&f, recv.data, recv.len, err);
    if (!rc)
        rc = mc__message_write(msg, fsink_put, &f, err);
    if (!rc)
        rc = fsink_flush(&f);
    if (!rc && f.written != line.len + m.size) {
        rc = mc__error_set(err, MC_EFILE, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE,
                           "%s/tmp/%s: the message changed while it was written (%llu bytes, "
                           "expected %llu)", q->path, m.id, (unsigned long long)f.written,
                           (unsigned long long)(line.len + m.size));
    } else if (rc == MC_EFILE && f.err) {
        errno = f.err;
        mc_error_free(err ? *err : NULL);
        if (err)
            *err = NULL;
        rc = io_error(err, "write", q->path, "tmp");
    } else if (rc == MC_ENOMEM && !(err && *err)) {
        rc = oom(err);
    }
    if (!rc && fsync(f.fd) != 0)
        rc = io_error(err, "fsync", q->path, "tmp");
    /* visible under its final name only complete: link, then the folder */
    if (!rc && linkat(q->tmp, m.id, q->fd, m.id, 0) != 0)
        rc = io_error(err, "link", q->path, m.id);
    unlinkat(q->tmp, m.id, 0);
    close(f.fd);
    mc__buf_free(&f.b);
    if (!rc && (rc = sync_dir(q->fd, q->path, err)) < 0)
        unlinkat(q->fd, m.id, 0);
    if (rc)
        goto out;
    if (id_out)
        snprintf(id_out, MC_QUEUE_ID_SIZE, "%s", m.id);
    mc__buf b = MC__BUF_INIT;
    put_rcpts(&b, m.rcpts, m.n_rcpts);
    mc__queue_log(ctx, LOG_INFO, "queue id=%s event=queued uid=%u user=%s from=<%s> to=%s size=%llu", m.id,
         m.uid, m.user, m.from, b.data ? b.data : "", m.size);
    mc__buf_free(&b);
out:
    mc__buf_free(&recv);
    mc__buf_free(&line);
    mc__queue_meta_clear(&m);
    return rc;
}

static int prepare_for(mc_context *ctx, const char *server, mc_message *msg, mc_err **err)
{
    mc_server *srv = mc__config_server(ctx->cfg, server);
    if (!srv)
        return mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             server ? "no server named \"%s\"" : "no default server%s",
                             server ? server : "");
    mc__msg_defaults d = {
        .sender_address = srv->sender_address,
        .sender_name = srv->sender_name,
        .sender_override = srv->sender_override,
        .case_sensitive = srv->address_case == MC__CASE_SENSITIVE,
        .alias = alias_lookup,
        .alias_payload = ctx->cfg,
        .charset = srv->charset,
    };
    return mc__message_prepare(msg, &d, err);
}

int mc_queue_submit(mc_context *ctx, mc_message *msg, const mc_queue_submit_options *opts,
                    char *id_out, mc_err **err)
{
    mc_queue_submit_options dflt = MC_QUEUE_SUBMIT_OPTIONS_INIT;
    if (!ctx || !msg)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "context or message is NULL");
    if (!opts)
        opts = &dflt;
    if (opts->version != MC_QUEUE_SUBMIT_OPTIONS_VERSION)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_queue_submit_options: unknown version");
    if (!mc_queue_configured(ctx))
        return no_queue(err);
    int rc = prepare_for(ctx, opts->server, msg, err);
    if (rc < 0)
        return rc;
    qdir q;
    if ((rc = qdir_open(ctx, true, &q, err)) == 0)
        rc = spool_write(ctx, &q, msg, opts->server, opts->submitted, -1, id_out, err);
    qdir_close(&q);
    return rc;
}

char *mc__queue_path(const mc_context *ctx)
{
    return queue_path(ctx);
}

int mc__queue_spool_as(mc_context *ctx, mc_message *msg, unsigned uid, char *id_out,
                       mc_err **err)
{
    int rc = prepare_for(ctx, NULL, msg, err);
    if (rc < 0)
        return rc;
    qdir q;
    if ((rc = qdir_open(ctx, true, &q, err)) == 0)
        rc = spool_write(ctx, &q, msg, NULL, 0, uid, id_out, err);
    qdir_close(&q);
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef struct qmsg {
    int             fd;        /* the message file, locked when `locked` */
    bool            locked;
    char           *data;      /* the whole file */
    size_t          len;
    size_t          body;      /* offset of the message bytes */
    mc__queue_meta  meta;
    mc__queue_state st;
} qmsg;

static void qmsg_free(qmsg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    free(m->data);
    mc__queue_meta_clear(&m->meta);
    mc__queue_state_clear(&m->st);
    m->fd = -1;
    m->data = NULL;
}

static int read_all(int fd, char **out, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *b = malloc(cap);
    if (!b)
        return -1;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return -1;
            }
            b = nb;
        }
        ssize_t r = pread(fd, b + n, cap - n - 1, (off_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(b);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

/* Open and read <id> (and its state). lock: LOCK_EX (wait), LOCK_EX |
 * LOCK_NB (skip when busy: 1), or 0 (no lock, for listing). @return 0,
 * 1 (gone or busy), MC_EFILE (unreadable or not a complete message). */
static int qmsg_open(const qdir *q, const char *id, int lock, qmsg *m, mc_err **err)
{
    memset(m, 0, sizeof(*m));
    m->fd = openat(q->fd, id, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (m->fd < 0)
        return errno == ENOENT ? 1 : open_failed(q->path, id, err);
    if (lock) {
        while (flock(m->fd, lock) != 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? 1 : io_error(err, "lock", q->path, id);
        }
        m->locked = true;
    }
    struct stat st;
    if (fstat(m->fd, &st) != 0)
        return io_error(err, "stat", q->path, id);
    if (st.st_nlink == 0)
        return 1;   /* delivered or dropped while we waited */
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return unsafe(err, NULL, "%s/%s is not a regular file of this user's", q->path, id);
    if (read_all(m->fd, &m->data, &m->len) < 0)
        return io_error(err, "read", q->path, id);
    char *nl = memchr(m->data, '\n', m->len);
    if (!nl || mc__queue_meta_parse(&m->meta, m->data, (size_t)(nl - m->data)) < 0
        || strcmp(m->meta.id, id) != 0
        || m->len - (size_t)(nl + 1 - m->data) != m->meta.size)
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE,
                             "%s/%s: not a complete queued message", q->path, id);
    m->body = (size_t)(nl + 1 - m->data);

    char sname[MC_QUEUE_ID_SIZE + 8];
    snprintf(sname, sizeof(sname), "%s.state", id);
    int sfd = openat(q->fd, sname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (sfd < 0)
        return errno == ENOENT ? 0 : open_failed(q->path, sname, err);
    char *text = NULL;
    size_t tl = 0;
    int rc = 0;
    if (fstat(sfd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
        rc = unsafe(err, NULL, "%s/%s is not a regular file of this user's", q->path, sname);
    else if (read_all(sfd, &text, &tl) < 0)
        rc = io_error(err, "read", q->path, sname);
    else if (mc__queue_state_parse(&m->st, text, tl) < 0)
        rc = mc__error_set(err, MC_EFILE, MC_OUTCOME_TRANSIENT, MC_STAGE_QUEUE,
                           "%s/%s: not a queue state", q->path, sname);
    free(text);
    close(sfd);
    return rc;
}

/* The recipients still pending. */
static char *const *pending(const qmsg *m, size_t *n)
{
    *n = m->st.has_rcpts ? m->st.n_rcpts : m->meta.n_rcpts;
    return m->st.has_rcpts ? m->st.rcpts : m->meta.rcpts;
}

/* Replace <id>.state (the caller holds the message's lock). */
static int state_save(const qdir *q, const char *id, const mc__queue_state *s, mc_err **err)
{
    char sname[MC_QUEUE_ID_SIZE + 8];
    snprintf(sname, sizeof(sname), "%s.state", id);
    mc__buf b = MC__BUF_INIT;
    if (mc__queue_state_format(s, &b) < 0)
        return oom(err);
    int rc = 0;
    int fd = openat(q->tmp, sname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = io_error(err, "create", q->path, "tmp");
        goto out;
    }
    size_t off = 0;
    while (!rc && off < b.len) {
        ssize_t n = write(fd, b.data + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENOSPC;
            rc = io_error(err, "write", q->path, "tmp");
        } else {
            off += (size_t)n;
        }
    }
    if (!rc && fsync(fd) != 0)
        rc = io_error(err, "fsync", q->path, "tmp");
    close(fd);
    if (!rc && renameat(q->tmp, sname, q->fd, sname) != 0)
        rc = io_error(err, "rename", q->path, sname);
    if (rc)
        unlinkat(q->tmp, sname, 0);
    else
        rc = sync_dir(q->fd, q->path, err);
out:
    mc__buf_free(&b);
    return rc;
}

/* Remove a message (the caller holds its lock): the file first, so a
 * crash in between leaves only a state without a message. */
static int qmsg_remove(const qdir *q, const char *id, mc_err **err)
{
    char sname[MC_QUEUE_ID_SIZE + 8];
    snprintf(sname, sizeof(sname), "%s.state", id);
    if (unlinkat(q->fd, id, 0) != 0 && errno != ENOENT)
        return io_error(err, "remove", q->path, id);
    unlinkat(q->fd, sname, 0);
    return sync_dir(q->fd, q->path, err);
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every queue ID in the folder, sorted (oldest first); stale states
 * (whose message is gone) are removed when `sweep`. */
static int list_ids(const qdir *q, bool sweep, char ***out, size_t *n, mc_err **err)
{
    *out = NULL;
    *n = 0;
    int dfd = dup(q->fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return io_error(err, "read", q->path, NULL);
    }
    lseek(dirfd(d), 0, SEEK_SET);
    rewinddir(d);
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *dot = strchr(de->d_name, '.');
        if (dot && strcmp(dot, ".state") == 0 && sweep) {
            char id[MC_QUEUE_ID_SIZE];
            snprintf(id, sizeof(id), "%.*s", (int)(dot - de->d_name), de->d_name);
            struct stat st;
            if (mc__queue_id_valid(id) && fstatat(q->fd, id, &st, AT_SYMLINK_NOFOLLOW) != 0
                && errno == ENOENT)
                unlinkat(q->fd, de->d_name, 0);
            continue;
        }
        if (!mc__queue_id_valid(de->d_name))
            continue;
        if (*n == cap) {
            char **nv = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(char *));
            if (!nv) {
                rc = oom(err);
                break;
            }
            *out = nv;
        }
        if (!((*out)[*n] = strdup(de->d_name))) {
            rc = oom(err);
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (rc) {
        free_list(*out, *n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*out, *n, sizeof(char *), id_cmp);
    return 0;
}

/* ---------------------------------------------------------------- list */

int mc_queue_list(mc_context *ctx, mc_queue_visit_fn *fn, void *payload, mc_err **err)
{
    if (!ctx || !fn)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "context or callback is NULL");
    if (!mc_queue_configured(ctx))
        return 0;
    qdir q;
    char **ids = NULL;
    size_t n = 0;
    int rc = qdir_open(ctx, false, &q, err);
    if (!rc && q.fd >= 0)
        rc = list_ids(&q, false, &ids, &n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        qmsg m;
        mc_err *e = NULL;
        int r = qmsg_open(&q, ids[i], 0, &m, &e);
        if (r == 0) {
            size_t np;
            char *const *p = pending(&m, &np);
            mc_queue_entry ent = {
                .version = MC_QUEUE_ENTRY_VERSION,
                .id = m.meta.id,
                .submitted = m.meta.submitted,
                .uid = m.meta.uid,
                .user = m.meta.user,
                .sender = m.meta.from,
                .rcpts = (const char *const *)p,
                .n_rcpts = np,
                .size = m.meta.size,
                .attempts = m.st.attempts,
                .next_try = m.st.next_try ? m.st.next_try : m.meta.submitted,
                .reason = m.st.reason,
                .held = m.st.held,
            };
            rc = fn(&ent, payload);
        } else if (r < 0) {
            mc__log(&ctx->hc, MC_LOG_WARN, "%s", e && e->message ? e->message : mc_strerror(r));
        }
        mc_error_free(e);
        qmsg_free(&m);
    }
    free_list(ids, n);
    qdir_close(&q);
    return rc;
}

/* ---------------------------------------------------------------- notices */

/* Server words for a header field: one line, printable ASCII. */
static void put_clean(mc__buf *b, const char *s)
{
    for (; s && *s; s++)
        mc__buf_printf(b, "%c", (unsigned char)*s >= ' ' && (unsigned char)*s < 0x7f ? *s : ' ');
}

typedef struct failure {
    const char *rcpt;
    char        status[16];   /* "5.1.1" */
    char       *diag;         /* "550 5.1.1 No such user", or NULL */
} failure;

typedef struct notice_scan {
    bool is_notice;
} notice_scan;

static int scan_hdr(void *payload, const char *name, const char *value)
{
    notice_scan *s = payload;
    if (strcasecmp(name, "Auto-Submitted") == 0 && strncasecmp(value, "no", 2) != 0)
        s->is_notice = true;
    if (strcasecmp(name, "Content-Type") == 0 && strncasecmp(value, "multipart/report", 16) == 0)
        s->is_notice = true;
    return 0;
}

static size_t header_end(const char *d, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' && d[i + 3] == '\n')
            return i + 2;
    return n;
}

/* Why a message gets no notice: the null sender, a notice itself, or
 * NOTIFY without FAILURE. NULL when it gets one. */
static const char *no_notice(const qmsg *m)
{
    if (!m->meta.from[0])
        return "null sender";
    if (m->meta.notify && !strstr(m->meta.notify, "FAILURE"))
        return "NOTIFY excludes FAILURE";
    notice_scan s = { false };
    size_t size = 0;
    mc__header_parse(m->data + m->body, header_end(m->data + m->body, m->len - m->body), scan_hdr,
                     &s, &size, NULL);
    return s.is_notice ? "the message is a notice" : NULL;
}

static int deliver_one(mc_context *ctx, const qdir *q, const char *id, bool flush,
                       mc_queue_run_stats *st, mc_err **err);

/* One RFC 3464 failure notice about m's failed recipients, queued and
 * tried at once. */
static void send_notice(mc_context *ctx, const qdir *q, const qmsg *m, const failure *f, size_t n,
                        mc_queue_run_stats *st)
{
    const char *why = no_notice(m);
    if (why) {
        mc__queue_log(ctx, LOG_INFO, "queue id=%s event=no-notice reason=\"%s\"", m->meta.id, why);
        return;
    }
    mc_server *srv = mc__config_server(ctx->cfg, m->meta.server);
    const char *from = srv && srv->sender_address ? srv->sender_address : m->meta.from;
    char host[256], now[64], arrived[64], bnd[400];
    host_name(host, sizeof(host));
    rfc5322_date(now, sizeof(now), time(NULL));
    rfc5322_date(arrived, sizeof(arrived), (time_t)m->meta.submitted);
    snprintf(bnd, sizeof(bnd), "%s.%lld/mailconn", m->meta.id, (long long)time(NULL));
    mc__buf b = MC__BUF_INIT;
    mc__buf_printf(&b, "From: Mail Delivery System <%s>\r\nTo: <%s>\r\n"
                       "Subject: Undelivered Mail Returned to Sender\r\nDate: %s\r\n"
                       "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                       "\tboundary=\"%s\"\r\n\r\n"
                       "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
                       "Content-Description: Notification\r\n"
                       "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                       "This is mailconn at %s.\r\n\r\n"
                       "Your message (queue ID %s, queued %s) could not be delivered\r\n"
                       "to the recipients below; no further attempt will be made.\r\n\r\n",
                   from, m->meta.from, now, bnd, bnd, host, m->meta.id, arrived);
    for (size_t i = 0; i < n; i++) {
        mc__buf_printf(&b, "<%s>: ", f[i].rcpt);
        put_clean(&b, f[i].diag ? f[i].diag : "delivery failed");
        mc__buf_puts(&b, "\r\n");
    }
    mc__buf_printf(&b, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
                       "Content-Type: message/delivery-status\r\n\r\n"
                       "Reporting-MTA: dns; %s\r\nX-Mailconn-Queue-ID: %s\r\n",
                   bnd, host, m->meta.id);
    if (m->meta.envid)
        mc__buf_printf(&b, "Original-Envelope-Id: %s\r\n", m->meta.envid);
    mc__buf_printf(&b, "Arrival-Date: %s\r\n", arrived);
    for (size_t i = 0; i < n; i++) {
        mc__buf_printf(&b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n",
                       f[i].rcpt, f[i].status);
        if (f[i].diag) {
            mc__buf_puts(&b, "Diagnostic-Code: smtp; ");
            put_clean(&b, f[i].diag);
            mc__buf_puts(&b, "\r\n");
        }
        mc__buf_printf(&b, "Last-Attempt-Date: %s\r\n", now);
    }
    size_t hl = header_end(m->data + m->body, m->len - m->body);
    if (hl > NOTICE_HEADERS_MAX)
        hl = NOTICE_HEADERS_MAX;
    mc__buf_printf(&b, "\r\n--%s\r\nContent-Description: Undelivered Message Headers\r\n"
                       "Content-Type: text/rfc822-headers\r\n\r\n", bnd);
    mc__buf_put(&b, m->data + m->body, hl);
    mc__buf_printf(&b, "\r\n--%s--\r\n", bnd);

    mc_message *nm = NULL;
    mc_err *e = NULL;
    char nid[MC_QUEUE_ID_SIZE] = "";
    int rc = b.data ? mc__message_parse_sendmail(&nm, b.data, b.len, &e) : MC_ENOMEM;
    if (!rc)
        rc = mc_message_add_envelope_recipient(nm, m->meta.from, &e);
    if (!rc)
        rc = prepare_for(ctx, m->meta.server, nm, &e);
    if (!rc)
        rc = spool_write(ctx, q, nm, m->meta.server, 0, -1, nid, &e);
    mc__buf_free(&b);
    mc_message_free(nm);
    if (rc) {
        mc__queue_log(ctx, LOG_ERR, "queue id=%s event=notice-failed to=<%s> error=\"%s\"", m->meta.id,
             m->meta.from, e && e->message ? e->message : mc_strerror(rc));
        mc_error_free(e);
        return;
    }
    mc_error_free(e);
    st->notices++;
    mc__queue_log(ctx, LOG_INFO, "queue id=%s event=notice notice-id=%s to=<%s>", m->meta.id, nid,
         m->meta.from);
    mc_queue_run_stats ns = { 0 };
    deliver_one(ctx, q, nid, true, &ns, NULL);
    st->delivered += ns.delivered;
    st->deferred += ns.deferred;
}

/* ---------------------------------------------------------------- run */

static bool permanent(const mc_err *e)
{
    return e && (e->outcome == MC_OUTCOME_PERMANENT || e->outcome == MC_OUTCOME_DATA);
}

static char *reason_of(const mc_err *e, int rc)
{
    char *r = NULL;
    if (!e) {
        r = strdup(mc_strerror(rc));
    } else if (asprintf(&r, "%s: %s%s", mc_stage_name(e->stage),
                        e->outcome == MC_OUTCOME_UNKNOWN ? "outcome unknown: " : "",
                        e->message ? e->message : mc_strerror(e->code)) < 0) {
        r = NULL;
    }
    return r;
}

static void status_of(char *out, size_t n, int code, const char *enhanced, bool perm)
{
    if (enhanced && enhanced[0])
        snprintf(out, n, "%s", enhanced);
    else if (code >= 500)
        snprintf(out, n, "5.0.0");
    else
        snprintf(out, n, perm ? "5.0.0" : "4.0.0");
}

static const mc_rcpt_result *result_for(const mc_err *e, const char *rcpt)
{
    for (size_t i = 0; e && i < e->n_rcpts; i++)
        if (e->rcpts[i].address && strcasecmp(e->rcpts[i].address, rcpt) == 0)
            return &e->rcpts[i];
    return NULL;
}

static int deliver_one(mc_context *ctx, const qdir *q, const char *id, bool flush,
                       mc_queue_run_stats *st, mc_err **err)
{
    qmsg m;
    int rc = qmsg_open(q, id, LOCK_EX | LOCK_NB, &m, err);
    if (rc == 1) {
        if (m.fd >= 0 && !m.locked)
            st->busy++;
        qmsg_free(&m);
        return 0;
    }
    if (rc < 0) {
        mc__queue_log(ctx, LOG_ERR, "queue id=%s event=unreadable error=\"%s\"", id,
             err && *err && (*err)->message ? (*err)->message : mc_strerror(rc));
        qmsg_free(&m);
        return rc;
    }
    time_t now = time(NULL);
    if (m.st.held || (!flush && m.st.next_try > now)) {
        qmsg_free(&m);
        return 0;
    }
    size_t np;
    char *const *p = pending(&m, &np);
    failure *fails = calloc(np ? np : 1, sizeof(*fails));
    char **left = calloc(np ? np : 1, sizeof(char *));
    size_t nf = 0, nl = 0, nd = 0;
    mc_err *e = NULL;
    mc_message *msg = NULL;
    if (!fails || !left) {
        rc = oom(err);
        goto out;
    }

    if (now - m.meta.submitted >= ctx->cfg->queue_max_age_s) {
        /* max_age_s: no further try; every pending recipient fails */
        char *why = NULL;
        if (asprintf(&why, "message expired after %lld s in the queue%s%s",
                     (long long)(now - m.meta.submitted), m.st.reason ? "; last try: " : "",
                     m.st.reason ? m.st.reason : "") < 0)
            why = NULL;
        for (size_t i = 0; i < np; i++) {
            fails[nf].rcpt = p[i];
            snprintf(fails[nf].status, sizeof(fails[nf].status), "4.4.7");
            fails[nf++].diag = why ? strdup(why) : NULL;
        }
        mc__queue_log(ctx, LOG_ERR, "queue id=%s event=expired from=<%s> reason=\"%s\"", id, m.meta.from,
             why ? why : "");
        free(why);
        goto settle;
    }

    if (m.st.unknown)
        mc__queue_log(ctx, LOG_WARNING, "queue id=%s event=retry-unknown: the last try ended after the "
                               "final dot without a reply, or its runner died; sending again "
                               "may duplicate it", id);
    /* a try under way counts as an unknown outcome until it ends: a runner
     * killed in it (perhaps after the final dot) leaves that said */
    bool was_unknown = m.st.unknown;
    m.st.unknown = true;
    state_save(q, id, &m.st, NULL);
    m.st.unknown = was_unknown;
    rc = mc__message_parse_sendmail(&msg, m.data + m.body, m.len - m.body, &e);
    if (!rc)
        rc = mc_message_set_envelope_from(msg, m.meta.from, &e);
    for (size_t i = 0; !rc && i < np; i++)
        rc = mc_message_add_envelope_recipient(msg, p[i], &e);
    if (!rc && (m.meta.notify || m.meta.ret || m.meta.envid))
        rc = mc_message_set_dsn(msg, m.meta.notify, m.meta.ret, m.meta.envid, &e);
    if (!rc)
        rc = mc_send(ctx, m.meta.server, msg, &e);
    m.st.attempts++;
    m.st.unknown = rc == MC_EUNKNOWN || (e && e->outcome == MC_OUTCOME_UNKNOWN);
    for (size_t i = 0; i < np; i++) {
        const mc_rcpt_result *r = result_for(e, p[i]);
        if (rc == 0 || (rc == MC_ERCPT && r && r->accepted)) {
            nd++;
        } else if ((r && r->smtp_code >= 500) || (rc != MC_ERCPT && permanent(e)
                                                  && !(r && r->smtp_code >= 400))) {
            fails[nf].rcpt = p[i];
            int code = r && r->smtp_code >= 500 ? r->smtp_code : e ? e->smtp_code : 0;
            const char *enh = r && r->smtp_code >= 500 ? r->enhanced : e ? e->enhanced : "";
            const char *text = r && r->smtp_code >= 500 ? r->text : e ? e->server_text : NULL;
            status_of(fails[nf].status, sizeof(fails[nf].status), code, enh, true);
            if (code && asprintf(&fails[nf].diag, "%d %s", code, text ? text : enh) < 0)
                fails[nf].diag = NULL;
            else if (!code)
                fails[nf].diag = reason_of(e, rc);
            nf++;
        } else {
            left[nl++] = p[i];
        }
    }
    rc = 0;

settle:;
    char *reason = e ? reason_of(e, e->code) : NULL;
    mc__buf rb = MC__BUF_INIT;
    if (nl) {
        put_rcpts(&rb, left, nl);
        mc__queue_state ns = {
            .attempts = m.st.attempts,
            .next_try = (long long)now + mc__queue_pause(ctx->cfg->queue_retry_s, m.st.attempts),
            .reason = reason,
            .unknown = m.st.unknown,
            .has_rcpts = nl != m.meta.n_rcpts || m.st.has_rcpts,
            .rcpts = left,
            .n_rcpts = nl,
        };
        rc = state_save(q, id, &ns, err);
        mc__queue_log(ctx, m.st.unknown ? LOG_WARNING : LOG_INFO,
             "queue id=%s event=deferred from=<%s> to=%s attempts=%u next_try=%llds "
             "reason=\"%s\"%s", id, m.meta.from, rb.data ? rb.data : "", ns.attempts,
             (long long)(ns.next_try - now), reason ? reason : "",
             m.st.unknown ? " (outcome unknown: will be sent again, may duplicate)" : "");
        st->deferred++;
    } else {
        rc = qmsg_remove(q, id, err);
        if (nf)
            st->failed++;
        else
            st->delivered++;
    }
    if (nd)
        mc__queue_log(ctx, LOG_INFO, "queue id=%s event=%s from=<%s> delivered=%zu reply=\"%s\"", id,
             nl || nf ? "partial" : "sent", m.meta.from, nd,
             msg && mc_message_last_reply(msg) ? mc_message_last_reply(msg) : "");
    if (nf) {
        mc__buf fb = MC__BUF_INIT;
        for (size_t i = 0; i < nf; i++)
            mc__buf_printf(&fb, "%s<%s>", i ? "," : "", fails[i].rcpt);
        mc__queue_log(ctx, LOG_ERR, "queue id=%s event=failed from=<%s> to=%s reason=\"%s\"", id,
             m.meta.from, fb.data ? fb.data : "", fails[0].diag ? fails[0].diag : "");
        mc__buf_free(&fb);
        send_notice(ctx, q, &m, fails, nf, st);
    }
    mc__buf_free(&rb);
    free(reason);
out:
    for (size_t i = 0; fails && i < nf; i++)
        free(fails[i].diag);
    free(fails);
    free(left);
    mc_message_free(msg);
    mc_error_free(e);
    qmsg_free(&m);
    return rc;
}

int mc_queue_run(mc_context *ctx, const mc_queue_run_options *opts, mc_queue_run_stats *out,
                 mc_err **err)
{
    mc_queue_run_options dflt = MC_QUEUE_RUN_OPTIONS_INIT;
    mc_queue_run_stats st = { 0 };
    if (!ctx)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE, "context is NULL");
    if (!opts)
        opts = &dflt;
    if (opts->version != MC_QUEUE_RUN_OPTIONS_VERSION || (opts->flags & ~MC_QUEUE_FLUSH))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "mc_queue_run_options: unknown version or flags");
    if (opts->id && !mc__queue_id_valid(opts->id))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_QUEUE,
                             "\"%s\" is not a queue ID", opts->id);
    if (!mc_queue_configured(ctx))
        return no_queue(err);
    if (!opts->id)
        mc__drop_import(ctx);   /* the submission helper's messages (core/drop.c) */
    qdir q;
    char **ids = NULL;
    size_t n = 0;
    int rc = qdir_open(ctx, false, &q, err);
    if (!rc && q.fd >= 0) {
        sweep_tmp(&q);
        rc = list_ids(&q, true, &ids, &n, err);
    }
    bool flush = opts->flags & MC_QUEUE_FLUSH;
    for (size_t i = 0; !rc && i < n; i++) {
        if (opts->id && strcmp(opts->id, ids[i]) != 0)
            continue;
        mc_err *e = NULL;
        int r = deliver_one(ctx, &q, ids[i], flush, &st, &e);
        if (r < 0 && opts->id) {
            rc = r;
            if (err && !*err) {
                *err = e;
                e = NULL;
            }
        }
        mc_error_free(e);
    }
    free_list(ids, n);
    qdir_close(&q);
    if (out)
        *out = st;
    return rc;
}

/* ---------------------------------------------------------------- hold */

static int with_message(mc_context *ctx, const char *id, int what, mc_err **err)
{
    if (!ctx || !id)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_NONE,
                             "context or ID is NULL");
    if (!mc_queue_configured(ctx))
        return no_queue(err);
    if (!mc__queue_id_valid(id))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_QUEUE,
                             "\"%s\" is not a queue ID", id);
    qdir q;
    qmsg m;
    memset(&m, 0, sizeof(m));
    m.fd = -1;
    int rc = qdir_open(ctx, false, &q, err);
    if (!rc && q.fd >= 0)
        rc = qmsg_open(&q, id, LOCK_EX, &m, err);
    else if (!rc)
        rc = 1;
    if (rc == 1) {
        rc = mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_QUEUE,
                           "no queued message %s", id);
    } else if (!rc && what == 'd') {
        rc = qmsg_remove(&q, id, err);
        if (!rc)
            mc__queue_log(ctx, LOG_INFO, "queue id=%s event=dropped from=<%s>", id, m.meta.from);
    } else if (!rc) {
        m.st.held = what == 'h';
        if (what == 'r')
            m.st.next_try = 0;
        rc = state_save(&q, id, &m.st, err);
        if (!rc)
            mc__queue_log(ctx, LOG_INFO, "queue id=%s event=%s", id, what == 'h' ? "held" : "released");
    }
    qmsg_free(&m);
    qdir_close(&q);
    return rc;
}

int mc_queue_drop(mc_context *ctx, const char *id, mc_err **err)
{
    return with_message(ctx, id, 'd', err);
}

int mc_queue_hold(mc_context *ctx, const char *id, mc_err **err)
{
    return with_message(ctx, id, 'h', err);
}

int mc_queue_release(mc_context *ctx, const char *id, mc_err **err)
{
    return with_message(ctx, id, 'r', err);
}
