/* drop: root's runner takes the submission helper's files (core/submit.h,
 * submit/mailconn-submit.c) from <spooldir>/drop into the system queue.
 * Nothing of a drop file is trusted but its envelope, its message and the
 * uid its owner proves: the file must be a regular file with one link,
 * owned by the uid it names, complete (the helper renames it only after
 * fsync), within the helper's limits; the message is then prepared with
 * the system config, as root's own sendmail would, and queued with a
 * Received: line naming the file's owner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "log.h"
#include "message.h"
#include "queue.h"
#include "submit.h"

#define DROP_TMP_STALE_S 3600     /* a helper's temp file this old is a dead writer's */

static const char drop_path[] = MC_SPOOL_DIR "/" MC_SUBMIT_DROP;

static bool name_is(const char *s, char kind)
{
    if (strlen(s) != MC_SUBMIT_NAME_LEN || s[0] != kind || s[1] != '.')
        return false;
    for (size_t i = 2; i < MC_SUBMIT_NAME_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The drop folder, open and checked: root's, sticky, nothing for others;
 * created (1730 root:mailconn-submit) when missing and the group exists. */
static int drop_open(const mc_context *ctx)
{
    int fd = open(drop_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        struct group *g = getgrnam(MC_SUBMIT_GROUP);
        if (!g)
            return -1;   /* no helper installed: nothing to take */
        /* the spool folder must let the group through (the queue's own
         * creation makes missing parents 0700) */
        struct stat sst;
        if (mkdir(MC_SPOOL_DIR, 0755) != 0 && stat(MC_SPOOL_DIR, &sst) == 0 && sst.st_uid == 0
            && S_ISDIR(sst.st_mode) && (sst.st_mode & 0777) == 0700)
            chmod(MC_SPOOL_DIR, 0755);
        if (mkdir(drop_path, 0700) == 0
            && (chown(drop_path, 0, g->gr_gid) != 0 || chmod(drop_path, 01730) != 0))
            mc__queue_log(ctx, LOG_WARNING, "queue event=drop-refused error=\"cannot set up %s: %s\"",
                 drop_path, strerror(errno));
        fd = open(drop_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != 0 || !(st.st_mode & S_ISVTX) || (st.st_mode & 007)) {
        mc__queue_log(ctx, LOG_WARNING, "queue event=drop-refused error=\"%s must be root's, sticky and "
             "closed to others (mode 1730 root:%s)\"", drop_path, MC_SUBMIT_GROUP);
        close(fd);
        return -1;
    }
    return fd;
}

/* The value of "key " at the start of a header line, or NULL. */
static const char *after(const char *line, const char *key)
{
    size_t n = strlen(key);
    return strncmp(line, key, n) == 0 && line[n] == ' ' ? line + n + 1 : NULL;
}

typedef struct add_ctx {
    mc_message *msg;
    bool        t;
    mc_err  **err;
} add_ctx;

static int add_rcpt(void *payload, const char *addr)
{
    add_ctx *a = payload;
    return a->t ? mc_message_add_recipient(a->msg, MC_RCPT_BCC, addr, a->err)
                : mc_message_add_envelope_recipient(a->msg, addr, a->err);
}

/* One drop file's envelope and message, as sendmail.c maps them. data is
 * NUL-terminated at len. @return 0, or <0 with *why (refused for good). */
static int parse_drop(char *data, size_t len, uid_t owner, mc_message **out, const char **why,
                      mc_err **err)
{
    char *end = strstr(data, "\n\n");
    *out = NULL;
    if (!end || strlen(data) < (size_t)(end - data)) {
        *why = "no end of the envelope";
        return MC_EFILE;
    }
    *end = '\0';
    const char *body = end + 2;
    size_t blen = len - (size_t)(body - data);
    if (blen > MC_SUBMIT_MAX_SIZE) {
        *why = "message too large";
        return MC_EFILE;
    }
    const char *from = NULL, *full = NULL, *notify = NULL, *ret = NULL, *envid = NULL;
    const char *rcpts[MC_SUBMIT_MAX_RCPTS];
    size_t nr = 0;
    bool t = false, uid_ok = false, magic = false;
    char *save = NULL;
    for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        const char *v;
        if (strlen(l) > MC_SUBMIT_MAX_VALUE + 16) {
            *why = "envelope line too long";
            return MC_EFILE;
        }
        for (const unsigned char *p = (const unsigned char *)l; *p; p++)
            if (*p < ' ' || *p == 0x7f) {
                *why = "control character in the envelope";
                return MC_EFILE;
            }
        if (!magic) {
            if (strcmp(l, MC_SUBMIT_MAGIC " 1") != 0) {
                *why = "not a drop file of this version";
                return MC_EFILE;
            }
            magic = true;
        } else if ((v = after(l, "uid"))) {
            char *e;
            unsigned long u = strtoul(v, &e, 10);
            uid_ok = *v && !*e && u == (unsigned long)owner;
        } else if (after(l, "user")) {
            /* advisory: the owner is looked up */
        } else if ((v = after(l, "from"))) {
            from = v;
        } else if ((v = after(l, "fullname"))) {
            full = v;
        } else if ((v = after(l, "notify"))) {
            notify = v;
        } else if ((v = after(l, "ret"))) {
            ret = v;
        } else if ((v = after(l, "envid"))) {
            envid = v;
        } else if (strcmp(l, "flag t") == 0) {
            t = true;
        } else if ((v = after(l, "rcpt")) && nr < MC_SUBMIT_MAX_RCPTS) {
            rcpts[nr++] = v;
        } else {
            *why = "unknown or excess envelope line";
            return MC_EFILE;
        }
    }
    if (!magic || !uid_ok) {
        *why = "the uid it names is not its owner's";
        return MC_EFILE;
    }
    if (!nr && !t) {
        *why = "no recipients";
        return MC_EFILE;
    }
    mc_message *msg = NULL;
    char *sender = NULL;
    int rc = mc__message_parse_sendmail(&msg, body, blen, err);
    if (!rc && from && strcmp(from, "<>") != 0 && strpbrk(from, "<(\"")) {
        if ((rc = mc__address_extract(from, &sender, err)) == 0)
            from = *sender ? sender : "<>";
    }
    if (!rc && from)
        rc = mc_message_set_envelope_from(msg, from, err);
    if (!rc && full)
        rc = mc_message_set_from_name(msg, full, err);
    if (!rc && (notify || ret || envid))
        rc = mc_message_set_dsn(msg, notify, ret, envid, err);
    add_ctx a = { msg, t, err };
    for (size_t i = 0; !rc && i < nr; i++)
        rc = mc__address_list(rcpts[i], add_rcpt, &a, err);
    free(sender);
    if (rc) {
        *why = "bad envelope or message";
        mc_message_free(msg);
        return rc;
    }
    *out = msg;
    return 0;
}

/* Read one d.* file: regular, one link, bounded. @return 0, 1 (skip for
 * now), or <0 with *why (refused for good). */
static int read_drop(int dfd, const char *name, char **data, size_t *len, uid_t *owner,
                     const char **why)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    *data = NULL;
    if (fd < 0) {
        *why = errno == ELOOP ? "a symbolic link" : NULL;
        return errno == ELOOP ? MC_EFILE : 1;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 1;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        *why = "not a regular file with one link";
        return MC_EFILE;
    }
    if ((unsigned long long)st.st_size > MC_SUBMIT_MAX_SIZE + 1100ULL * (MC_SUBMIT_MAX_RCPTS + 16)) {
        close(fd);
        *why = "too large";
        return MC_EFILE;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    ssize_t r = 1;
    while (buf && n < (size_t)st.st_size
           && ((r = read(fd, buf + n, (size_t)st.st_size - n)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0)
            n += (size_t)r;
    close(fd);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        return 1;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    *owner = st.st_uid;
    return 0;
}

void mc__drop_import(mc_context *ctx)
{
    if (geteuid() != 0)
        return;
    char *qp = mc__queue_path(ctx);
    bool system = qp && strcmp(qp, MC_SPOOL_DIR "/queue") == 0;
    free(qp);
    if (!system)
        return;
    int dfd = drop_open(ctx);
    if (dfd < 0)
        return;
    int lfd = dup(dfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        if (lfd >= 0)
            close(lfd);
        close(dfd);
        return;
    }
    struct dirent *de;
    time_t now = time(NULL);
    bool changed = false;
    while ((de = readdir(d))) {
        struct stat st;
        if (name_is(de->d_name, 't')) {
            if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
                && now - st.st_mtime > DROP_TMP_STALE_S)
                unlinkat(dfd, de->d_name, 0);
            continue;
        }
        if (!name_is(de->d_name, 'd'))
            continue;
        char *data = NULL;
        size_t len = 0;
        uid_t owner = 0;
        const char *why = NULL;
        mc_message *msg = NULL;
        mc_err *e = NULL;
        char id[MC_QUEUE_ID_SIZE] = "";
        int rc = read_drop(dfd, de->d_name, &data, &len, &owner, &why);
        if (rc == 0 && (rc = parse_drop(data, len, owner, &msg, &why, &e)) == 0) {
            if ((rc = mc__queue_spool_as(ctx, msg, (unsigned)owner, id, &e)) == 0) {
                unlinkat(dfd, de->d_name, 0);
                changed = true;
                mc__queue_log(ctx, LOG_INFO, "queue id=%s event=taken drop=%s uid=%u", id, de->d_name,
                     (unsigned)owner);
            } else if (e && e->outcome != MC_OUTCOME_TRANSIENT) {
                why = "cannot be queued";
            } else {
                /* the queue cannot take it now (disk full...): next run */
                mc__queue_log(ctx, LOG_WARNING, "queue event=drop-deferred drop=%s uid=%u error=\"%s\"",
                     de->d_name, (unsigned)owner, e && e->message ? e->message : mc_strerror(rc));
                rc = 1;
            }
        }
        if (rc < 0 && why) {
            mc__queue_log(ctx, LOG_WARNING, "queue event=drop-refused drop=%s uid=%u reason=\"%s\"%s%s%s",
                 de->d_name, (unsigned)owner, why, e && e->message ? " error=\"" : "",
                 e && e->message ? e->message : "", e && e->message ? "\"" : "");
            unlinkat(dfd, de->d_name, 0);
            changed = true;
        }
        mc_error_free(e);
        mc_message_free(msg);
        free(data);
    }
    closedir(d);
    if (changed)
        fsync(dfd);
    close(dfd);
}
