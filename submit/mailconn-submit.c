/* mailconn-submit: the setgid submission helper (DESIGN.md "System mail:
 * sendmail and the queue"; the postdrop pattern). Installed as
 * $libexecdir/mailconn/mailconn-submit, group mailconn-submit, mode 2755.
 *
 * It trusts nothing of its caller but the message and its envelope: the
 * environment is cleared before anything else, no config is read, no
 * option names a path, the spool folder is the build's (MC_SPOOL_DIR,
 * meson -Dspooldir). It writes <spool>/drop/t.<random> (0600, the caller's
 * own file), fsyncs it, renames it to d.<random> and syncs the file system
 * (syncfs: the folder itself cannot be opened for an fsync, the group may
 * not read it): the runner (`mailconn queue run`, root) reads only d.* names, so it never sees
 * a partial message. The drop folder is 1730 root:mailconn-submit: the
 * group may add files but not list them, and the sticky bit keeps one
 * user's file from another. The runner takes the submitting uid from the
 * file's owner (and checks it against the uid written here), prepares the
 * message with the system config and writes its Received: line.
 *
 * Usage: mailconn-submit [-i] [-t] [-F NAME] [-N DSN] [-R RET] [-V ENVID]
 *                        [-f SENDER] [--] RECIPIENT...   (message on stdin)
 * Exit: 0 queued, 64 usage, 65 bad input, 75 not queued (the message stays
 * with the caller), 71 internal trouble. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MC_SPOOL_DIR
#define MC_SPOOL_DIR "/var/spool/mailconn"
#endif

#include "submit.h"   /* core/submit.h: the drop file, shared with the runner */

#define EX_USAGE_    64
#define EX_DATAERR_  65
#define EX_OSERR_    71
#define EX_TEMPFAIL_ 75

#ifdef __SANITIZE_ADDRESS__
/* Sanitized builds only: LeakSanitizer cannot run in a setgid process
 * (not dumpable, no ptrace of itself); there it is off, and the tests
 * check the helper's leaks in a plain run. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return getegid() != getgid() ? "detect_leaks=0" : "";
}
#endif

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "mailconn-submit: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: mailconn-submit [-i] [-t] [-F NAME] [-N DSN] [-R RET] [-V ENVID] "
                    "[-f SENDER] [--] RECIPIENT...\n");
    return EX_USAGE_;
}

/* A value that goes on one line of the drop file: printable, bounded. */
static bool value_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return false;
    return true;
}

typedef struct out {
    int    fd;
    char   buf[65536];
    size_t len;
    unsigned long long total;
    int    err;
} out;

static int out_flush(out *o)
{
    size_t off = 0;
    while (off < o->len) {
        ssize_t n = write(o->fd, o->buf + off, o->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            o->err = n < 0 ? errno : ENOSPC;
            return -1;
        }
        off += (size_t)n;
    }
    o->len = 0;
    return 0;
}

static int out_put(out *o, const void *data, size_t len)
{
    const char *d = data;
    o->total += len;
    while (len) {
        size_t k = sizeof(o->buf) - o->len;
        if (k > len)
            k = len;
        memcpy(o->buf + o->len, d, k);
        o->len += k;
        d += k;
        len -= k;
        if (o->len == sizeof(o->buf) && out_flush(o) < 0)
            return -1;
    }
    return 0;
}

static int out_line(out *o, const char *key, const char *value)
{
    if (out_put(o, key, strlen(key)) < 0 || out_put(o, " ", 1) < 0
        || out_put(o, value, strlen(value)) < 0 || out_put(o, "\n", 1) < 0)
        return -1;
    return 0;
}

static void random_name(char *name, size_t n, char kind, const unsigned char *r)
{
    snprintf(name, n, "%c.%02x%02x%02x%02x%02x%02x%02x%02x", kind, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

int main(int argc, char **argv)
{
    /* nothing of the caller's environment: no TMPDIR, no locale, no
     * MAILCONN_* (the test hooks included), no LD_* (the loader drops those
     * for a setgid program already) */
    clearenv();
    umask(077);
    signal(SIGXFSZ, SIG_IGN);   /* a caller's RLIMIT_FSIZE: a write error, not a death */
    /* 0, 1 and 2 open, so no file of ours becomes someone's stderr */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            return EX_OSERR_;

    bool t = false, dot_ok = false;
    const char *from = NULL, *full_name = NULL, *notify = NULL, *ret = NULL, *envid = NULL;
    int ch;
    optind = 1;
    opterr = 0;
    /* "+": options end at the first recipient; no long options, no path */
    while ((ch = getopt(argc, argv, "+:F:N:R:V:f:it")) != -1) {
        switch (ch) {
        case 'i': dot_ok = true; break;
        case 't': t = true; break;
        case 'f': from = optarg; break;
        case 'F': full_name = optarg; break;
        case 'N': notify = optarg; break;
        case 'R': ret = optarg; break;
        case 'V': envid = optarg; break;
        case ':': {
            char o[2] = { (char)optopt, 0 };
            return usage("-%s needs a value", o);
        }
        default: {
            /* -C FILE, -X FILE, -q, -b?, a config, a queue folder: not here */
            char o[2] = { (char)optopt, 0 };
            return usage("-%s is not accepted (the helper takes only the envelope)", o);
        }
        }
    }
    size_t n_rcpts = (size_t)(argc - optind);
    if (!n_rcpts && !t)
        return usage("%s", "no recipients (name them, or use -t)");
    if (n_rcpts > MC_SUBMIT_MAX_RCPTS)
        return usage("%s", "too many recipients");
    if ((from && !value_ok(from, MC_SUBMIT_MAX_VALUE))
        || (full_name && !value_ok(full_name, MC_SUBMIT_MAX_VALUE))
        || (notify && !value_ok(notify, MC_SUBMIT_MAX_VALUE))
        || (ret && !value_ok(ret, MC_SUBMIT_MAX_VALUE))
        || (envid && !value_ok(envid, MC_SUBMIT_MAX_VALUE)))
        return usage("%s", "an envelope value is too long or holds control characters");
    for (int i = optind; i < argc; i++)
        if (!*argv[i] || !value_ok(argv[i], MC_SUBMIT_MAX_VALUE))
            return usage("%s", "a recipient is empty, too long or holds control characters");

    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    char user[256];
    snprintf(user, sizeof(user), "%s", pw && pw->pw_name[0] && value_ok(pw->pw_name, 200)
                                           ? pw->pw_name : "");

    /* O_PATH: the group may write and search the folder, not read it */
    int dfd = open(MC_SPOOL_DIR "/" MC_SUBMIT_DROP, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "mailconn-submit: cannot open %s: %s (is mailconn installed, with its "
                        "spool folder?)\n", MC_SPOOL_DIR "/" MC_SUBMIT_DROP, strerror(errno));
        return EX_TEMPFAIL_;
    }
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        fprintf(stderr, "mailconn-submit: no random bytes: %s\n", strerror(errno));
        return EX_OSERR_;
    }
    char tmp[32], fin[32];
    random_name(tmp, sizeof(tmp), 't', r);
    random_name(fin, sizeof(fin), 'd', r + 8);

    out o = { .fd = -1 };
    o.fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (o.fd < 0) {
        fprintf(stderr, "mailconn-submit: cannot create a file in %s: %s\n",
                MC_SPOOL_DIR "/" MC_SUBMIT_DROP, strerror(errno));
        return EX_TEMPFAIL_;
    }
    char num[32];
    snprintf(num, sizeof(num), "%u", (unsigned)uid);
    int rc = out_line(&o, MC_SUBMIT_MAGIC, "1");
    if (!rc) rc = out_line(&o, "uid", num);
    if (!rc && user[0]) rc = out_line(&o, "user", user);
    if (!rc && from) rc = out_line(&o, "from", *from ? from : "<>");
    if (!rc && full_name) rc = out_line(&o, "fullname", full_name);
    if (!rc && notify) rc = out_line(&o, "notify", notify);
    if (!rc && ret) rc = out_line(&o, "ret", ret);
    if (!rc && envid) rc = out_line(&o, "envid", envid);
    if (!rc && t) rc = out_line(&o, "flag", "t");
    for (int i = optind; !rc && i < argc; i++)
        rc = out_line(&o, "rcpt", argv[i]);
    if (!rc) rc = out_put(&o, "\n", 1);
    unsigned long long head = o.total;

    /* the message: to the end (-i), or to a line holding a single dot */
    bool bad = false;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t l;
    while (!rc && (l = getline(&line, &lcap, stdin)) > 0) {
        if (!dot_ok && ((l == 2 && line[0] == '.' && line[1] == '\n')
                        || (l == 3 && line[0] == '.' && line[1] == '\r' && line[2] == '\n')))
            break;
        if (o.total - head + (size_t)l > MC_SUBMIT_MAX_SIZE) {
            bad = true;
            break;
        }
        rc = out_put(&o, line, (size_t)l);
    }
    free(line);
    bool read_err = ferror(stdin);
    if (!rc)
        rc = out_flush(&o);
    if (!rc && !bad && !read_err && fsync(o.fd) != 0) {
        o.err = errno;
        rc = -1;
    }
    if (rc || bad || read_err) {
        close(o.fd);
        unlinkat(dfd, tmp, 0);
        if (bad)
            fprintf(stderr, "mailconn-submit: the message is larger than %u bytes\n",
                    (unsigned)MC_SUBMIT_MAX_SIZE);
        else if (read_err)
            fprintf(stderr, "mailconn-submit: cannot read the message from standard input\n");
        else
            fprintf(stderr, "mailconn-submit: cannot write to %s: %s (not queued)\n",
                    MC_SPOOL_DIR "/" MC_SUBMIT_DROP, strerror(o.err));
        return bad ? EX_DATAERR_ : EX_TEMPFAIL_;
    }
    /* visible under its final name only complete: rename, then the folder
     * (with the whole file system: the only sync open to an unreadable one) */
    if (renameat(dfd, tmp, dfd, fin) != 0 || syncfs(o.fd) != 0) {
        int e = errno;
        close(o.fd);
        unlinkat(dfd, tmp, 0);
        unlinkat(dfd, fin, 0);
        fprintf(stderr, "mailconn-submit: cannot queue in %s: %s (not queued)\n",
                MC_SPOOL_DIR "/" MC_SUBMIT_DROP, strerror(e));
        return EX_TEMPFAIL_;
    }
    close(o.fd);
    close(dfd);
    return 0;
}
