/* reload: mc_context_reload / mc_context_disconnect / the idle reaper
 * through the public API only (linked to libmailconn.so), driven by
 * test-reload.js against tests/peers/smtp-peer.js --users-file --report-quit.
 *
 *   reload stress CONFIG USERS_FILE PORT
 *     Two servers on the peer: "relay" (user app, password changed 5 times)
 *     and "keep" (user keep, never changed). One message to keep (its
 *     connection stays idle), then 4 threads send to relay continuously
 *     while, 5 times: the peer's password changes (USERS_FILE replaced),
 *     some sends complete (after the 4th change, with the pool emptied by
 *     mc_context_disconnect so that new logins meet the new password),
 *     CONFIG is rewritten with the new password and mc_context_reload() is
 *     called. Before reload 3 a session is opened
 *     (mc_session_open) and it sends after the reload: a call in flight
 *     finishes on the old config. Every send must succeed, or fail only at
 *     AUTH with 535 while the server had the new password and the context
 *     the old one (its call overlapped the window between a password change
 *     and the reload that followed). A config with errors is then refused
 *     (MC_ECONFIG, err->details) and sends go on with the old one. Then, each time waiting for one line
 *     on stdin so the driver can read the peer's events:
 *       "checkpoint reloaded"  after the threads stopped;
 *       "checkpoint relay"     after mc_context_disconnect(ctx, "relay");
 *       "checkpoint all"       after mc_context_disconnect(ctx, NULL).
 *     Last line: "ok sends=N failed-old-password=F session-across-reload=1
 *     sends-across-reload=S", exit 0; or
 *     "FAIL ..." lines and exit 1.
 *
 *   reload idle CONFIG PORT
 *     relay with idle_timeout_s 1 (the users file stays as written by the
 *     driver: app:idle): one message, then "sent" and wait for a line on
 *     stdin (the driver watches the peer for QUIT) before freeing. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailconn/mailconn.h"

#define THREADS 4
#define RELOADS 5
#define MAX_SENDS 200000
#define WAIT_MS 20000   /* any wait for sends to complete: bounded */

static mc_context *ctx;

/* every shared member below is under `lock` */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static long seq;                     /* event order: send starts/ends, changes */
static long completed;
static bool stop;
static long peer_changed[RELOADS];   /* seq when the peer took password k+1 */
static long reloaded[RELOADS];       /* seq when reload k+1 returned */
static int n_changes;                /* peer changes so far */

typedef struct rec {
    long start, end;
    int  rc;
    int  stage;
    int  smtp_code;
    char what[160];
} rec;
static rec *recs;
static long n_recs;

static int fails;
#define FAIL(...) do { printf("FAIL "); printf(__VA_ARGS__); printf("\n"); fails++; } while (0)

static int write_file(const char *path, const char *text)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0 || chmod(tmp, 0600) != 0 || rename(tmp, path) != 0)
        return -1;
    return 0;
}

static int write_config(const char *path, unsigned port, const char *password, int idle_s)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"servers\": [\n"
             "  {\"name\": \"relay\", \"host\": \"127.0.0.1\", \"port\": %u, \"transport\": \"plain\",\n"
             "   \"allow_plaintext_auth\": true, \"idle_timeout_s\": %d, \"default\": true,\n"
             "   \"sender\": {\"address\": \"sender@example.org\"},\n"
             "   \"auth\": {\"provider\": \"basic\", \"user\": \"app\", \"password\": \"%s\"}},\n"
             "  {\"name\": \"keep\", \"host\": \"127.0.0.1\", \"port\": %u, \"transport\": \"plain\",\n"
             "   \"allow_plaintext_auth\": true, \"idle_timeout_s\": 60,\n"
             "   \"sender\": {\"address\": \"keep@example.org\"},\n"
             "   \"auth\": {\"provider\": \"basic\", \"user\": \"keep\", \"password\": \"kp\"}}\n"
             "]}\n", port, idle_s, password, port);
    return write_file(path, text);
}

static int send_to(const char *server, const char *subject, mc_err **err)
{
    mc_message *msg = NULL;
    int rc = mc_message_new(&msg, err);
    if (rc == 0)
        rc = mc_message_add_recipient(msg, MC_RCPT_TO, "rcpt@example.net", err);
    if (rc == 0)
        rc = mc_message_set_subject(msg, subject, err);
    if (rc == 0)
        rc = mc_message_set_text(msg, "reload test\n", 12, err);
    if (rc == 0)
        rc = mc_send(ctx, server, msg, err);
    mc_message_free(msg);
    return rc;
}

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    for (int i = 0;; i++) {
        char subject[64];
        snprintf(subject, sizeof(subject), "thread %d message %d", id, i);
        pthread_mutex_lock(&lock);
        if (stop || n_recs >= MAX_SENDS) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        rec *r = &recs[n_recs++];
        r->start = ++seq;
        pthread_mutex_unlock(&lock);

        mc_err *err = NULL;
        int rc = send_to(NULL, subject, &err);

        pthread_mutex_lock(&lock);
        r->end = ++seq;
        r->rc = rc;
        r->stage = err ? (int)err->stage : 0;
        r->smtp_code = err ? err->smtp_code : 0;
        snprintf(r->what, sizeof(r->what), "%s", err && err->message ? err->message : mc_strerror(rc));
        completed++;
        pthread_cond_broadcast(&done_cond);
        pthread_mutex_unlock(&lock);
        mc_error_free(err);
    }
}

/* Wait (bounded) until `more` further sends have completed. */
static bool wait_sends(long more)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&lock);
    long want = completed + more;
    int w = 0;
    while (completed < want && w == 0)
        w = pthread_cond_timedwait(&done_cond, &lock, &dl);
    bool ok = completed >= want;
    pthread_mutex_unlock(&lock);
    return ok;
}

/* The driver answers each checkpoint with one line (or closes stdin). */
static void checkpoint(const char *name)
{
    char line[64];
    printf("checkpoint %s\n", name);
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        FAIL("no answer from the driver at checkpoint %s", name);
}

static long mark(void)
{
    pthread_mutex_lock(&lock);
    long s = ++seq;
    pthread_mutex_unlock(&lock);
    return s;
}

static int new_context(const char *config)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = config;
    mc_err *err = NULL;
    if (mc_context_new(&ctx, &o, &err) != 0) {
        printf("FAIL context: %s\n", err && err->message ? err->message : "?");
        mc_error_free(err);
        return -1;
    }
    return 0;
}

static int stress(const char *config, const char *users, unsigned port)
{
    char pw[32], uline[128];
    recs = calloc(MAX_SENDS, sizeof(*recs));
    if (!recs || write_file(users, "app:p0,keep:kp\n") != 0 || write_config(config, port, "p0", 30) != 0) {
        printf("FAIL cannot write the users file or the config\n");
        return 1;
    }
    if (new_context(config) < 0)
        return 1;

    mc_err *err = NULL;
    if (send_to("keep", "to keep", &err) != 0)
        FAIL("send to keep: %s", err && err->message ? err->message : "?");
    mc_error_free(err);
    err = NULL;

    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(long)i);

    mc_session *held = NULL;
    long in_flight = 0;
    if (!wait_sends(20))
        FAIL("the first 20 sends did not complete in time");
    for (int k = 0; k < RELOADS && !fails; k++) {
        snprintf(pw, sizeof(pw), "p%d", k + 1);
        if (k == 2) {
            /* a call in flight across the reload: a session on the old config */
            if (mc_session_open(&held, ctx, "relay", &err) != 0)
                FAIL("session open: %s", err && err->message ? err->message : "?");
            mc_error_free(err);
            err = NULL;
        }
        /* the server changes its password first ... */
        snprintf(uline, sizeof(uline), "app:%s,keep:kp\n", pw);
        if (write_file(users, uline) != 0)
            FAIL("cannot write %s", users);
        long s = mark();
        pthread_mutex_lock(&lock);
        peer_changed[k] = s;
        n_changes = k + 1;
        pthread_mutex_unlock(&lock);
        /* once, new logins meet the changed server before the config
         * follows: they must fail as "old password" and nothing else */
        if (k == 3)
            mc_context_disconnect(ctx, "relay");
        /* ... some sends complete meanwhile (on connections already logged in) ... */
        if (!wait_sends(10))
            FAIL("sends stalled after password change %d", k + 1);
        if (k == 3)
            checkpoint("window");   /* connections in use at the disconnect QUIT on return */
        /* ... then the config follows and is reloaded */
        if (write_config(config, port, pw, 30) != 0)
            FAIL("cannot write %s", config);
        int rc = mc_context_reload(ctx, NULL, &err);
        s = mark();
        if (rc != 0)
            FAIL("reload %d: %s", k + 1, err && err->message ? err->message : mc_strerror(rc));
        mc_error_free(err);
        err = NULL;
        pthread_mutex_lock(&lock);
        reloaded[k] = s;
        pthread_mutex_unlock(&lock);
        if (held) {
            /* the session was opened (and logged in) on the old config */
            mc_message *msg = NULL;
            rc = mc_message_new(&msg, &err);
            if (rc == 0)
                rc = mc_message_add_recipient(msg, MC_RCPT_TO, "rcpt@example.net", &err);
            if (rc == 0)
                rc = mc_message_set_text(msg, "in flight\n", 10, &err);
            if (rc == 0)
                rc = mc_session_send(held, msg, &err);
            if (rc != 0)
                FAIL("the session opened before reload %d: %s", k + 1,
                     err && err->message ? err->message : mc_strerror(rc));
            else
                in_flight++;
            mc_error_free(err);
            err = NULL;
            mc_message_free(msg);
            mc_session_close(held);
            held = NULL;
        }
        if (!wait_sends(20))
            FAIL("sends stalled after reload %d", k + 1);
    }
    if (!fails) {
        /* a config with an error: refused, the old one stays (sends go on) */
        char bad[4096];
        snprintf(bad, sizeof(bad), "{\"servers\": [{\"name\": \"relay\", \"host\": \"127.0.0.1\", "
                 "\"port\": \"x\", \"transport\": \"plain\", \"auth\": {\"provider\": \"nope\"}}]}\n");
        if (write_file(config, bad) != 0)
            FAIL("cannot write %s", config);
        int rc = mc_context_reload(ctx, NULL, &err);
        if (rc != MC_ECONFIG || !err || !err->n_details || !strstr(err->details[0], "servers[0]"))
            FAIL("bad config: %s, %s", mc_error_name(rc), err && err->message ? err->message : "no error");
        mc_error_free(err);
        err = NULL;
        if (write_config(config, port, pw, 30) != 0)   /* as it was, for the checks below */
            FAIL("cannot write %s", config);
        if (!wait_sends(10))
            FAIL("sends stalled after the refused reload");
        if (send_to("keep", "keep after the refused reload", &err) != 0)
            FAIL("send to keep after the refused reload: %s", err && err->message ? err->message : "?");
        mc_error_free(err);
        err = NULL;
    }
    pthread_mutex_lock(&lock);
    stop = true;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    /* every failure: AUTH 535 by a call that overlapped a change window */
    long failed_old = 0, spanning = 0;
    for (long i = 0; i < n_recs; i++) {
        rec *r = &recs[i];
        for (int k = 0; k < n_changes; k++) {
            if (r->start < reloaded[k] && r->end > reloaded[k])
                spanning++;   /* in flight while reload k+1 ran */
        }
        if (r->rc == 0)
            continue;
        bool window = false;
        for (int k = 0; k < n_changes; k++)
            window = window || (r->start < reloaded[k] && r->end > peer_changed[k]);
        if (r->rc == MC_EAUTH && r->stage == MC_STAGE_AUTH && r->smtp_code == 535 && window)
            failed_old++;
        else
            FAIL("send %ld (seq %ld..%ld): %s (%s, stage %d, smtp %d)", i, r->start, r->end,
                 r->what, mc_error_name(r->rc), r->stage, r->smtp_code);
    }
    if (fails) {
        mc_context_free(ctx);
        return 1;
    }
    checkpoint("reloaded");
    mc_context_disconnect(ctx, "relay");
    checkpoint("relay");
    mc_context_disconnect(ctx, NULL);
    checkpoint("all");
    mc_context_free(ctx);
    printf("ok sends=%ld failed-old-password=%ld session-across-reload=%ld sends-across-reload=%ld\n",
           n_recs, failed_old, in_flight, spanning);
    free(recs);
    return fails ? 1 : 0;
}

static int idle(const char *config, unsigned port)
{
    if (write_config(config, port, "idle", 1) != 0) {
        printf("FAIL cannot write the config\n");
        return 1;
    }
    if (new_context(config) < 0)
        return 1;
    mc_err *err = NULL;
    int rc = send_to("relay", "idle", &err);
    if (rc != 0)
        FAIL("send: %s", err && err->message ? err->message : mc_strerror(rc));
    mc_error_free(err);
    printf("sent\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        FAIL("no answer from the driver");
    mc_context_free(ctx);
    printf(fails ? "FAIL\n" : "ok\n");
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "stress") == 0)
        return stress(argv[2], argv[3], (unsigned)atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "idle") == 0)
        return idle(argv[2], (unsigned)atoi(argv[3]));
    fprintf(stderr, "usage: reload stress CONFIG USERS_FILE PORT | reload idle CONFIG PORT\n");
    return 2;
}
