/* log: one sink, one level and one redaction list per process. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mc_log_level level = MC_LOG_WARN;
static mc_log_fn *sink;
static void *sink_payload;
static char **secrets;
static size_t n_secrets;

void mc__log_setup(mc_log_level lvl, mc_log_fn *fn, void *payload)
{
    pthread_mutex_lock(&lock);
    level = lvl;
    sink = fn;
    sink_payload = payload;
    pthread_mutex_unlock(&lock);
}

mc_log_level mc__log_level(void)
{
    pthread_mutex_lock(&lock);
    mc_log_level l = level;
    pthread_mutex_unlock(&lock);
    return l;
}

void mc__redact_add(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_secrets; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&lock);
            return;
        }
    }
    char **s = realloc(secrets, (n_secrets + 1) * sizeof(*s));
    if (s) {
        secrets = s;
        if ((secrets[n_secrets] = strdup(secret)))
            n_secrets++;
    }
    pthread_mutex_unlock(&lock);
}

void mc__redact_reset(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_secrets; i++) {
        OPENSSL_cleanse(secrets[i], strlen(secrets[i]));
        free(secrets[i]);
    }
    free(secrets);
    secrets = NULL;
    n_secrets = 0;
    pthread_mutex_unlock(&lock);
}

/* Called with the lock held. */
static char *redact_locked(const char *s)
{
    mc__buf out = MC__BUF_INIT;
    const char *p = s;
    while (*p) {
        size_t best = 0;
        for (size_t i = 0; i < n_secrets; i++) {
            size_t n = strlen(secrets[i]);
            if (n > best && strncmp(p, secrets[i], n) == 0)
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
    return mc__buf_detach(&out);
oom:
    mc__buf_free(&out);
    return NULL;
}

char *mc__redact_dup(const char *s)
{
    pthread_mutex_lock(&lock);
    char *r = redact_locked(s);
    pthread_mutex_unlock(&lock);
    return r;
}

void mc__logv(mc_log_level lvl, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&lock);
    if (lvl > level) {
        pthread_mutex_unlock(&lock);
        return;
    }
    char *raw = NULL;
    if (vasprintf(&raw, fmt, ap) < 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    char *line = redact_locked(raw);
    OPENSSL_cleanse(raw, strlen(raw));
    free(raw);
    if (line) {
        if (sink)
            sink(lvl, line, sink_payload);
        else
            fprintf(stderr, "mailconn: %s\n", line);
        free(line);
    }
    pthread_mutex_unlock(&lock);
}

void mc__log(mc_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc__logv(lvl, fmt, ap);
    va_end(ap);
}
