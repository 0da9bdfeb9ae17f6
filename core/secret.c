/* secret: passwords and client secrets from their one source: inline,
 * <name>_file (first line), <name>_env, or <name>_command (/bin/sh -c, first
 * line of stdout, bounded). Every resolved value is registered for
 * redaction and wiped when released. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <openssl/crypto.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "secret.h"

extern char **environ;

#define SECRET_MAX (64 * 1024)          /* longest first line of a file or a command */
#define SECRET_KEEP (SECRET_MAX + 2)    /* enough to tell a longer line (CR LF) */
#define COMMAND_TIMEOUT_MS (10 * 1000)  /* DESIGN.md: *_command has 10 s */

static int fail(mc_err **err, const char *fmt, ...) MC__FMT(2, 3);

static int fail(mc_err **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc__error_setv(err, MC_ESECRET, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, fmt, ap);
    va_end(ap);
    return MC_ESECRET;
}

void mc__secret_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* The first line of data (trailing CR/LF stripped), or NULL on OOM. */
static char *first_line(const char *data, size_t len)
{
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data) : len;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Length of the first line of data without its CR LF (all of data when
 * there is no LF). */
static size_t line_length(const char *data, size_t len)
{
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data) : len;
    while (nl && n > 0 && data[n - 1] == '\r')
        n--;
    return n;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void describe_bound(char *buf, size_t n, int timeout_ms)
{
    if (timeout_ms % 1000 == 0)
        snprintf(buf, n, "%d s", timeout_ms / 1000);
    else
        snprintf(buf, n, "%d ms", timeout_ms);
}

static int spawn_shell(const char *command, int out_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int rc;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
        return rc;
    if ((rc = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigemptyset(&none);
    sigfillset(&all);
    /* stdin from /dev/null: the command must not eat our stdin (sendmail
     * mode reads the message there); its own process group, so a timeout
     * kills whatever it started too */
    if ((rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0
        && (rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) == 0
        && (rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                                   | POSIX_SPAWN_SETSIGDEF)) == 0
        && (rc = posix_spawnattr_setpgroup(&at, 0)) == 0
        && (rc = posix_spawnattr_setsigmask(&at, &none)) == 0
        && (rc = posix_spawnattr_setsigdefault(&at, &all)) == 0) {
        char *argv[] = { "sh", "-c", (char *)command, NULL };
        rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
    }
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int mc__secret_command(const char *command, int timeout_ms, char **out, mc_err **err)
{
    char bound[32];
    int pfd[2];
    pid_t pid;

    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!command || !*command)
        return fail(err, "command is empty");
    if (timeout_ms <= 0)
        timeout_ms = COMMAND_TIMEOUT_MS;
    describe_bound(bound, sizeof(bound), timeout_ms);

    if (pipe2(pfd, O_CLOEXEC) < 0)
        return fail(err, "cannot run command: %s", strerror(errno));
    int rc = spawn_shell(command, pfd[1], &pid);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        return fail(err, "cannot run /bin/sh: %s", strerror(rc));
    }

    mc__buf b = MC__BUF_INIT;
    b.secret = true;
    long long deadline = now_ms() + timeout_ms;
    bool timed_out = false, oom = false;
    int read_errno = 0;
    char tmp[4096];

    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = { .fd = pfd[0], .events = POLLIN };
        int pr = poll(&p, 1, (int)left);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            read_errno = errno;
            break;
        }
        if (pr == 0) {
            timed_out = true;
            break;
        }
        ssize_t n = read(pfd[0], tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            read_errno = errno;
            break;
        }
        if (n == 0)
            break;
        /* keep reading to the end (the child must not block on a full
         * pipe) but keep only enough to tell a line too long */
        if (b.len < SECRET_KEEP) {
            size_t keep = (size_t)n;
            if (keep > SECRET_KEEP - b.len)
                keep = SECRET_KEEP - b.len;
            if (mc__buf_put(&b, tmp, keep) < 0)
                oom = true;
        }
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(pfd[0]);

    /* stdout is closed; the exit status must come within the same bound */
    int status = 0;
    bool have_status = false;
    while (!timed_out && !read_errno) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            have_status = true;
            break;
        }
        if (r < 0 && errno != EINTR)
            break;          /* ECHILD: the application reaps children itself */
        long long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        poll(NULL, 0, left < 10 ? (int)left : 10);
    }
    if (timed_out || read_errno) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        mc__buf_free(&b);
        if (timed_out)
            return fail(err, "command did not finish within %s and was killed", bound);
        return fail(err, "cannot read the command's output: %s", strerror(read_errno));
    }
    if (oom) {
        mc__buf_free(&b);
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    }
    if (have_status && WIFSIGNALED(status)) {
        mc__buf_free(&b);
        return fail(err, "command was killed by signal %d", WTERMSIG(status));
    }
    if (have_status && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        mc__buf_free(&b);
        return fail(err, "command exited with status %d", WEXITSTATUS(status));
    }
    if (b.len && memchr(b.data, '\0', b.len)) {
        mc__buf_free(&b);
        return fail(err, "command printed a NUL byte");
    }
    if (line_length(b.data ? b.data : "", b.len) > SECRET_MAX) {
        mc__buf_free(&b);
        return fail(err, "the command's first line is longer than %d KiB", SECRET_MAX / 1024);
    }
    char *line = first_line(b.data ? b.data : "", b.len);
    mc__buf_free(&b);
    if (!line)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
    if (!*line) {
        free(line);
        return fail(err, "command printed nothing");
    }
    *out = line;
    return 0;
}

/* Whether path lies under $CREDENTIALS_DIRECTORY (systemd prepares that
 * folder for the service alone). */
static bool under_credentials_dir(const char *path)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return false;
    char *rdir = realpath(dir, NULL);
    char *rpath = realpath(path, NULL);
    bool under = false;
    if (rdir && rpath) {
        size_t n = strlen(rdir);
        while (n > 1 && rdir[n - 1] == '/')
            n--;
        under = strncmp(rpath, rdir, n) == 0 && rpath[n] == '/';
    }
    free(rdir);
    free(rpath);
    return under;
}

static int read_secret_file(const char *where, const char *path, char **out, mc_err **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(err, "%s: cannot read \"%s\": %s", where, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(err, "%s: cannot read \"%s\": %s", where, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, "%s: \"%s\" is not a regular file", where, path);
    }
    if ((st.st_mode & (S_IRGRP | S_IROTH)) && !under_credentials_dir(path)) {
        close(fd);
        return fail(err, "%s: \"%s\" is readable by group or others (mode %04o); chmod 600 it",
                    where, path, (unsigned)(st.st_mode & 07777));
    }
    /* a secret someone else can replace is theirs, not the user's */
    char why[PATH_MAX + 256];
    if (!mc__file_trusted(path, &st, why, sizeof(why))) {
        close(fd);
        return fail(err, "%s: %s: not trusted (others could change it)", where, why);
    }
    mc__buf b = MC__BUF_INIT;
    b.secret = true;
    char tmp[4096];
    int rc = 0;
    while (b.len < SECRET_KEEP) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = fail(err, "%s: cannot read \"%s\": %s", where, path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (mc__buf_put(&b, tmp, (size_t)n) < 0) {
            rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
            break;
        }
        if (memchr(tmp, '\n', (size_t)n))
            break;          /* the first line is all we need */
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(fd);
    if (rc == 0) {
        const char *data = b.data ? b.data : "";
        const char *nl = memchr(data, '\n', b.len);
        size_t first = nl ? (size_t)(nl - data) : b.len;
        char *line = NULL;
        if (memchr(data, '\0', first))
            rc = fail(err, "%s: \"%s\" holds a NUL byte in its first line", where, path);
        else if (line_length(data, b.len) > SECRET_MAX)
            rc = fail(err, "%s: \"%s\": the first line is longer than %d KiB", where, path,
                      SECRET_MAX / 1024);
        else if (!(line = first_line(data, b.len)))
            rc = mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
        else if (!*line)
            rc = fail(err, "%s: \"%s\" is empty", where, path);
        if (rc == 0)
            *out = line;
        else
            mc__secret_free(line);
    }
    mc__buf_free(&b);
    return rc;
}

static const char *const suffixes[] = { "", "_file", "_env", "_command" };
enum { SRC_INLINE, SRC_FILE, SRC_ENV, SRC_COMMAND, N_SRC };

int mc__secret_resolve(mc_host_ctx *hc, const mc_plugin_cfg *cfg, const char *name, char **out,
                       mc_err **err)
{
    if (!out || !name)
        return MC_EINVAL;
    *out = NULL;
    if (!cfg || !cfg->obj || !json_object_is_type(cfg->obj, json_type_object))
        return 0;

    const char *base = cfg->path ? cfg->path : "auth";
    char keys[N_SRC][64];
    json_object *vals[N_SRC];
    int which = -1, count = 0, second = -1;
    for (int i = 0; i < N_SRC; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%s%s", name, suffixes[i]);
        vals[i] = NULL;
        if (json_object_object_get_ex(cfg->obj, keys[i], &vals[i])) {
            count++;
            if (which < 0)
                which = i;
            else if (second < 0)
                second = i;
        }
    }
    if (count == 0)
        return 0;
    if (count > 1)
        return fail(err, "%s: \"%s\" and \"%s\" are both set; use exactly one source for the %s",
                    base, keys[which], keys[second], name);

    char where[512];
    snprintf(where, sizeof(where), "%s.%s", base, keys[which]);
    json_object *v = vals[which];
    if (!json_object_is_type(v, json_type_string))
        return fail(err, "%s: must be a string", where);
    const char *s = json_object_get_string(v);
    size_t slen = (size_t)json_object_get_string_len(v);
    if (slen == 0)
        return fail(err, "%s: must not be empty", where);
    if (strlen(s) != slen || strpbrk(s, "\r\n"))
        return fail(err, "%s: must not contain NUL, CR or LF", where);

    char *value = NULL;
    int rc = 0;
    switch (which) {
    case SRC_INLINE:
        if (!(value = strdup(s)))
            return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
        break;
    case SRC_FILE:
        rc = read_secret_file(where, s, &value, err);
        break;
    case SRC_ENV: {
        const char *e = getenv(s);
        if (!e)
            return fail(err, "%s: environment variable %s is not set", where, s);
        if (!*e)
            return fail(err, "%s: environment variable %s is empty", where, s);
        if (!(value = strdup(e)))
            return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
        break;
    }
    case SRC_COMMAND: {
        mc_err *e = NULL;
        rc = mc__secret_command(s, COMMAND_TIMEOUT_MS, &value, &e);
        if (rc < 0) {
            if (rc == MC_ESECRET)
                fail(err, "%s: %s", where, e && e->message ? e->message : mc_strerror(rc));
            else
                mc__error_set(err, rc, e ? e->outcome : mc__outcome_of(rc), MC_STAGE_CONFIG,
                              "%s", e && e->message ? e->message : mc_strerror(rc));
        }
        mc_error_free(e);
        break;
    }
    default:
        break;
    }
    if (rc < 0)
        return rc;
    mc__redact_add(hc, value);
    *out = value;
    return 0;
}
