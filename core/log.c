/* log: one sink, one level and one redaction list per context; the one
 * escaping function every line that may carry a server's words goes
 * through before it reaches a terminal or a file. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "config.h"
#include "log.h"

void mc__hc_init(mc_host_ctx *hc, mc_log_level lvl, mc_log_fn *fn, void *payload)
{
    memset(hc, 0, sizeof(*hc));
    pthread_mutex_init(&hc->lock, NULL);
    hc->level = lvl;
    hc->sink = fn;
    hc->sink_payload = payload;
}

void mc__hc_destroy(mc_host_ctx *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->n_secrets; i++) {
        OPENSSL_cleanse(hc->secrets[i], strlen(hc->secrets[i]));
        free(hc->secrets[i]);
    }
    free(hc->secrets);
    hc->secrets = NULL;
    hc->n_secrets = 0;
    free(hc->state_dir);
    hc->state_dir = NULL;
    pthread_mutex_destroy(&hc->lock);
}

void mc__log_setup(mc_host_ctx *hc, mc_log_level lvl, mc_log_fn *fn, void *payload)
{
    if (!hc)
        return;
    pthread_mutex_lock(&hc->lock);
    hc->level = lvl;
    hc->sink = fn;
    hc->sink_payload = payload;
    pthread_mutex_unlock(&hc->lock);
}

mc_log_level mc__log_level(mc_host_ctx *hc)
{
    if (!hc)
        return MC_LOG_WARN;
    pthread_mutex_lock(&hc->lock);
    mc_log_level l = hc->level;
    pthread_mutex_unlock(&hc->lock);
    return l;
}

void mc__redact_add(mc_host_ctx *hc, const char *secret)
{
    if (!hc || !secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&hc->lock);
    for (size_t i = 0; i < hc->n_secrets; i++) {
        if (strcmp(hc->secrets[i], secret) == 0) {
            pthread_mutex_unlock(&hc->lock);
            return;
        }
    }
    char **s = realloc(hc->secrets, (hc->n_secrets + 1) * sizeof(*s));
    if (s) {
        hc->secrets = s;
        if ((hc->secrets[hc->n_secrets] = strdup(secret)))
            hc->n_secrets++;
    }
    pthread_mutex_unlock(&hc->lock);
}

/* Called with hc's lock held (hc NULL: no secrets). */
static char *redact_locked(const mc_host_ctx *hc, const char *s)
{
    mc__buf out = MC__BUF_INIT;
    const char *p = s;
    size_t n_secrets = hc ? hc->n_secrets : 0;
    while (*p) {
        size_t best = 0;
        for (size_t i = 0; i < n_secrets; i++) {
            size_t n = strlen(hc->secrets[i]);
            if (n > best && strncmp(p, hc->secrets[i], n) == 0)
                best = n;
        }
        if (best) {
            if (mc__buf_puts(&out, "<redacted>") < 0)
                goto oom;
            p += best;
        } else {
            if (mc__buf_put(&out, p, 1) < 0)
                goto oom;
            p++;
        }
    }
    if (mc__buf_put(&out, "", 0) < 0)
        goto oom;
    return mc__buf_detach(&out);
oom:
    mc__buf_free(&out);
    return NULL;
}

char *mc__redact_dup(mc_host_ctx *hc, const char *s)
{
    if (!hc)
        return redact_locked(NULL, s);
    pthread_mutex_lock(&hc->lock);
    char *r = redact_locked(hc, s);
    pthread_mutex_unlock(&hc->lock);
    return r;
}

/* ---------------------------------------------------------------- escaping */

/* Length of the valid UTF-8 sequence at s that is not a C1 control
 * (U+0080..U+009F: C2 80..C2 9F), or 0. */
static size_t utf8_ok(const unsigned char *s, size_t n)
{
    size_t len = mc__utf8_seq(s, n);
    if (len == 2 && s[0] == 0xc2 && s[1] <= 0x9f)
        return 0;
    return len;
}

int mc__escape_put(mc__buf *b, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        for (;;) {          /* the longest run shown as it is */
            if (run >= len)
                break;
            unsigned c = s[run];
            if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
                run++;
                continue;
            }
            size_t u = c >= 0x80 ? utf8_ok(s + run, len - run) : 0;
            if (!u)
                break;
            run += u;
        }
        if (run > i && mc__buf_put(b, s + i, run - i) < 0)
            return MC_ENOMEM;
        if (run >= len)
            break;
        char esc[4] = { '\\', 'x', hex[s[run] >> 4], hex[s[run] & 15] };
        if (mc__buf_put(b, esc, sizeof(esc)) < 0)
            return MC_ENOMEM;
        i = run + 1;
    }
    /* an empty text still yields "" rather than NULL data */
    return mc__buf_put(b, "", 0);
}

char *mc_text_escape(const char *text)
{
    if (!text)
        return NULL;
    mc__buf b = MC__BUF_INIT;
    if (mc__escape_put(&b, text, strlen(text)) < 0) {
        mc__buf_free(&b);
        return NULL;
    }
    return mc__buf_detach(&b);
}

/* ---------------------------------------------------------------- lines */

void mc__logv(mc_host_ctx *hc, mc_log_level lvl, const char *fmt, va_list ap)
{
    mc_log_fn *sink = NULL;
    void *payload = NULL;
    char *raw = NULL, *red;
    if (hc) {
        /* the line is made under the lock (level, secrets), the sink called
         * after it: a sink may call back into the library */
        pthread_mutex_lock(&hc->lock);
        if (lvl > hc->level) {
            pthread_mutex_unlock(&hc->lock);
            return;
        }
        sink = hc->sink;
        payload = hc->sink_payload;
        if (vasprintf(&raw, fmt, ap) < 0) {
            pthread_mutex_unlock(&hc->lock);
            return;
        }
        red = redact_locked(hc, raw);
        pthread_mutex_unlock(&hc->lock);
    } else {
        if (lvl > MC_LOG_WARN || vasprintf(&raw, fmt, ap) < 0)
            return;
        red = strdup(raw);
    }
    OPENSSL_cleanse(raw, strlen(raw));
    free(raw);
    /* a line may quote a server (the transcript, OAuth errors): shown escaped */
    char *line = red ? mc_text_escape(red) : NULL;
    free(red);
    if (!line)
        return;
    if (sink)
        sink(lvl, line, payload);
    else
        fprintf(stderr, "mailconn: %s\n", line);
    free(line);
}

void mc__log(mc_host_ctx *hc, mc_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc__logv(hc, lvl, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- the top-level log */

#define SYSLOG_TEXT_MAX 4000   /* a datagram every syslog daemon takes whole */

static pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
static const mc_err **marks;
static size_t n_marks, cap_marks;

void mc__toplog_mark(const mc_err *err)
{
    if (!err)
        return;
    pthread_mutex_lock(&mark_lock);
    for (size_t i = 0; i < n_marks; i++) {
        if (marks[i] == err) {   /* once: one forget must clear it */
            pthread_mutex_unlock(&mark_lock);
            return;
        }
    }
    if (n_marks == cap_marks) {
        size_t cap = cap_marks ? cap_marks * 2 : 8;
        const mc_err **m = realloc(marks, cap * sizeof(*m));
        if (m) {
            marks = m;
            cap_marks = cap;
        }
    }
    if (n_marks < cap_marks)
        marks[n_marks++] = err;
    pthread_mutex_unlock(&mark_lock);
}

/* Whether err is marked; forget it when `drop`. */
static bool marked(const mc_err *err, bool drop)
{
    bool found = false;
    pthread_mutex_lock(&mark_lock);
    for (size_t i = 0; i < n_marks; i++) {
        if (marks[i] == err) {
            found = true;
            if (drop)
                marks[i] = marks[--n_marks];
            break;
        }
    }
    if (drop && !n_marks) {
        free(marks);
        marks = NULL;
        cap_marks = 0;
    }
    pthread_mutex_unlock(&mark_lock);
    return found;
}

void mc__toplog_forget(const mc_err *err)
{
    if (err)
        marked(err, true);
}

/* RFC 3164 on the local socket, as syslog(3) writes it, without touching
 * the application's openlog() ident: "<PRI>Mmm dd hh:mm:ss mailconn[PID]: text". */
static void send_syslog(int pri, const char *text)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(when, sizeof(when), "%b %e %H:%M:%S", &tm))
        snprintf(when, sizeof(when), "Jan  1 00:00:00");
    char *msg = NULL;
    int n = asprintf(&msg, "<%d>%s mailconn[%ld]: %.*s", pri, when, (long)getpid(),
                     SYSLOG_TEXT_MAX, text);
    if (n < 0)
        return;
    struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/dev/log" };
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa)) < 0
        && errno == EPROTOTYPE) {
        /* a stream socket (some daemons): one NUL-terminated message */
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            (void)!send(fd, msg, (size_t)n + 1, MSG_NOSIGNAL);
    }
    if (fd >= 0)
        close(fd);
    free(msg);
}

void mc__toplog_write(mc_host_ctx *hc, const mc__toplog *to, int pri, const char *line)
{
    if (!to || !line || (!to->log_file && to->facility < 0))
        return;
    char *red = mc__redact_dup(hc, line);
    char *text = red ? mc_text_escape(red) : NULL;
    free(red);
    if (!text)
        return;
    if (to->log_file) {
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        mc__buf b = MC__BUF_INIT;
        mc__buf_printf(&b, "%s %s\n", when, text);
        /* O_NOFOLLOW: root's cron mail must not follow a link someone
         * planted where the log goes */
        int fd = open(to->log_file,
                      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (fd < 0 || !b.data || write(fd, b.data, b.len) != (ssize_t)b.len)
            mc__log(hc, MC_LOG_WARN, "cannot append to log_file %s: %s", to->log_file,
                    b.data ? strerror(errno) : "out of memory");
        if (fd >= 0)
            close(fd);
        mc__buf_free(&b);
    }
    if (to->facility >= 0)
        send_syslog(to->facility | pri, text);
    free(text);
}

void mc__toplog_failure(const char *config_path, const char *command, int exit_code,
                        const mc_err *err, const char *text)
{
    if (err && marked(err, false))
        return;                /* the send path logged it, with its envelope */
    char *path = mc__config_find(config_path), *log_file = NULL;
    int facility = -1;
    if (!path || mc__config_toplog(path, &log_file, &facility) < 0) {
        free(path);
        return;
    }
    free(path);
    mc__buf line = MC__BUF_INIT;
    mc__buf_printf(&line, "command=%s outcome=failed exit=%d", command ? command : "mailconn",
                   exit_code);
    if (err) {
        mc__buf_printf(&line, " stage=%s", mc_stage_name(err->stage));
        if (err->smtp_code && err->server_text)
            mc__buf_printf(&line, " reply=\"%d %s\"", err->smtp_code, err->server_text);
        mc__buf_puts(&line, " error=\"");
        if (err->n_details) {
            for (size_t i = 0; i < err->n_details; i++)
                mc__buf_printf(&line, "%s%s", i ? "; " : "", err->details[i]);
        } else {
            mc__buf_puts(&line, err->message ? err->message : mc_strerror(err->code));
        }
        mc__buf_puts(&line, "\"");
    } else {
        mc__buf_printf(&line, " error=\"%s\"", text ? text : "");
    }
    mc__toplog to = { log_file, facility };
    if (line.data)
        mc__toplog_write(NULL, &to, LOG_ERR, line.data);
    mc__buf_free(&line);
    free(log_file);
}
