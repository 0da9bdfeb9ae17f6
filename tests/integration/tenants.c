/* Two tenants in one process (issue 10, acceptance 3), public API only.
 *
 *   tenants N CONFIG_A STATE_A PORT_A SECRET_A CONFIG_B STATE_B PORT_B SECRET_B
 *
 * Two contexts, each from config_json (CONFIG_x: the JSON text, a server
 * named "main" on its own peer at PORT_x, sender sender@tenant-x.test, a
 * password or client secret SECRET_x of its own, or "-" when the tenants
 * share one), each with its own state_dir and log sink at MC_LOG_TRANSCRIPT. Four threads, two per tenant, send N
 * messages each. Then, while B's threads keep sending, A's context is freed;
 * B's threads send N more each after that.
 *
 * Every line a sink gets is checked: the thread that produced it works for
 * the sink's tenant (a thread-local tag set by each worker, and by main
 * around the free), it names neither the other tenant's port, sender nor
 * password, and a "connected to" line names its own port. From inside the
 * sink the library is called back: mc_strerror, mc_context_server (whose
 * port must be the tenant's own) and mc_context_set_default (which takes
 * the context's lock): a sink called with a library lock held deadlocks
 * here, and a watchdog ends the run after 120 s with exit 3.
 *
 * Prints one JSON line per tenant: {"tenant":"a","sent":..,"failed":..,
 * "lines":..,"mail_from":..,"bad":..,"after_free":..} and exits 0 when
 * every check passed, 1 otherwise (the reasons on stderr).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailconn/mailconn.h"

#define THREADS_PER_TENANT 2

typedef struct tenant {
    char            name;          /* 'a' or 'b' */
    unsigned        port;
    const char     *password;      /* NULL: not the tenant's own */
    const char     *state_dir;
    const char     *config_json;
    char            sender[64];    /* "sender@tenant-a.test" */
    char            port_text[32]; /* "port 12345 " as "connected to" says it */
    struct tenant  *other;
    mc_context     *_Atomic ctx;
    pthread_mutex_t lock;          /* the counters below */
    long            lines, mail_from, bad, after_free, sent, failed;
} tenant;

static tenant tenants[2];
static _Thread_local tenant *current;   /* whom this thread works for */
static atomic_bool a_freed;
static int per_thread;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static bool done;

static void bad_line(tenant *t, const char *why, const char *line)
{
    fprintf(stderr, "tenant %c: %s: %s\n", t->name, why, line);
    t->bad++;
}

static void sink(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    tenant *t = payload;
    /* back into the library from inside the sink: no lock of the library is
     * held here, so none of these may block */
    const char *s = mc_strerror(MC_ENET);
    mc_context *ctx = atomic_load(&t->ctx);
    unsigned port = 0;
    int set_rc = 0;
    if (ctx) {
        port = mc_server_port(mc_context_server(ctx, "main"));
        mc_err *e = NULL;
        set_rc = mc_context_set_default(ctx, "main", &e);   /* in memory: memory only */
        mc_error_free(e);
    }
    pthread_mutex_lock(&t->lock);
    t->lines++;
    if (atomic_load(&a_freed))
        t->after_free++;
    if (!s || !*s)
        bad_line(t, "mc_strerror from the sink", line);
    if (ctx && port != t->port)
        bad_line(t, "mc_context_server from the sink gave another port", line);
    if (set_rc != 0 && ctx)
        bad_line(t, "mc_context_set_default of an in-memory config failed", line);
    if (current != t)
        bad_line(t, current ? "a line of the other tenant's thread" : "a line of no tenant's thread",
                 line);
    if (strstr(line, t->other->sender) || strstr(line, t->other->port_text)
        || (t->other->password && strstr(line, t->other->password)))
        bad_line(t, "the other tenant's port, sender or password", line);
    if (t->password && strstr(line, t->password))
        bad_line(t, "its own password, unredacted", line);
    if (strncmp(line, "connected to ", 13) == 0 && !strstr(line, t->port_text))
        bad_line(t, "connected to a port not its own", line);
    if (strncmp(line, "C: MAIL FROM:<", 14) == 0) {
        if (strncmp(line + 14, t->sender, strlen(t->sender)) == 0)
            t->mail_from++;
        else
            bad_line(t, "MAIL FROM another sender", line);
    }
    pthread_mutex_unlock(&t->lock);
}

static int send_one(tenant *t, int id, int i)
{
    mc_message *msg = NULL;
    mc_err *err = NULL;
    char subject[96], text[128], to[64];
    snprintf(subject, sizeof(subject), "tenant-%c thread %d message %d", t->name, id, i);
    snprintf(text, sizeof(text), "body of tenant %c thread %d message %d\n", t->name, id, i);
    snprintf(to, sizeof(to), "rcpt@tenant-%c.test", t->name);
    int rc = mc_message_new(&msg, &err);
    if (rc == 0)
        rc = mc_message_add_recipient(msg, MC_RCPT_TO, to, &err);
    if (rc == 0)
        rc = mc_message_set_subject(msg, subject, &err);
    if (rc == 0)
        rc = mc_message_set_text(msg, text, strlen(text), &err);
    if (rc == 0)
        rc = mc_send(atomic_load(&t->ctx), "main", msg, &err);
    pthread_mutex_lock(&t->lock);
    if (rc == 0) {
        t->sent++;
    } else {
        t->failed++;
        fprintf(stderr, "%s: %s\n", subject, err && err->message ? err->message : mc_strerror(rc));
    }
    pthread_mutex_unlock(&t->lock);
    mc_error_free(err);
    mc_message_free(msg);
    return rc;
}

typedef struct worker {
    tenant   *t;
    int       id;
    pthread_t th;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    current = w->t;
    for (int i = 0; i < per_thread; i++)
        send_one(w->t, w->id, i);
    if (w->t->name == 'b') {
        /* keep sending until A is gone, then N more (bounded: the watchdog) */
        int i = per_thread;
        while (!atomic_load(&a_freed) && i < 100000)
            send_one(w->t, w->id, i++);
        for (int k = 0; k < per_thread; k++)
            send_one(w->t, w->id, i++);
    }
    return NULL;
}

static void *watchdog(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 120;
    pthread_mutex_lock(&done_lock);
    while (!done) {
        if (pthread_cond_timedwait(&done_cond, &done_lock, &until) == ETIMEDOUT && !done) {
            fprintf(stderr, "tenants: watchdog: not done after 120 s (a sink deadlocked?)\n");
            fflush(stderr);
            _exit(3);
        }
    }
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

static int context_of(tenant *t)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_json = t->config_json;
    o.state_dir = t->state_dir;
    o.log_level = MC_LOG_TRANSCRIPT;
    o.log = sink;
    o.log_payload = t;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    current = t;
    int rc = mc_context_new(&ctx, &o, &err);
    current = NULL;
    if (rc < 0) {
        fprintf(stderr, "tenant %c: mc_context_new: %s\n", t->name,
                err && err->message ? err->message : mc_strerror(rc));
        for (size_t i = 0; err && i < err->n_details; i++)
            fprintf(stderr, "  %s\n", err->details[i]);
        mc_error_free(err);
        return -1;
    }
    atomic_store(&t->ctx, ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: tenants N CONFIG_A STATE_A PORT_A SECRET_A "
                        "CONFIG_B STATE_B PORT_B SECRET_B\n");
        return 2;
    }
    per_thread = atoi(argv[1]);
    for (int k = 0; k < 2; k++) {
        tenant *t = &tenants[k];
        t->name = (char)('a' + k);
        t->config_json = argv[2 + 4 * k];
        t->state_dir = argv[3 + 4 * k];
        t->port = (unsigned)atoi(argv[4 + 4 * k]);
        t->password = strcmp(argv[5 + 4 * k], "-") ? argv[5 + 4 * k] : NULL;
        t->other = &tenants[1 - k];
        snprintf(t->sender, sizeof(t->sender), "sender@tenant-%c.test", t->name);
        snprintf(t->port_text, sizeof(t->port_text), "port %u ", t->port);
        pthread_mutex_init(&t->lock, NULL);
    }
    pthread_t dog;
    if (pthread_create(&dog, NULL, watchdog, NULL) != 0)
        return 2;
    if (context_of(&tenants[0]) < 0 || context_of(&tenants[1]) < 0)
        return 1;

    worker w[2 * THREADS_PER_TENANT];
    for (int i = 0; i < 2 * THREADS_PER_TENANT; i++) {
        w[i].t = &tenants[i / THREADS_PER_TENANT];
        w[i].id = i;
        if (pthread_create(&w[i].th, NULL, work, &w[i]) != 0)
            return 2;
    }
    /* A's threads finish; B's are still sending: free A under them */
    for (int i = 0; i < THREADS_PER_TENANT; i++)
        pthread_join(w[i].th, NULL);
    current = &tenants[0];                    /* its QUITs are A's lines */
    mc_context *a = atomic_exchange(&tenants[0].ctx, NULL);
    mc_context_free(a);
    current = NULL;
    atomic_store(&a_freed, true);
    for (int i = THREADS_PER_TENANT; i < 2 * THREADS_PER_TENANT; i++)
        pthread_join(w[i].th, NULL);
    current = &tenants[1];
    mc_context *b = atomic_exchange(&tenants[1].ctx, NULL);
    mc_context_free(b);
    current = NULL;

    pthread_mutex_lock(&done_lock);
    done = true;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    pthread_join(dog, NULL);

    int status = 0;
    for (int k = 0; k < 2; k++) {
        tenant *t = &tenants[k];
        printf("{\"tenant\":\"%c\",\"sent\":%ld,\"failed\":%ld,\"lines\":%ld,\"mail_from\":%ld,"
               "\"bad\":%ld,\"after_free\":%ld}\n", t->name, t->sent, t->failed, t->lines,
               t->mail_from, t->bad, t->after_free);
        if (t->failed || t->bad || t->mail_from != t->sent || !t->sent) {
            fprintf(stderr, "tenant %c: failed %ld, bad lines %ld, MAIL FROM lines %ld for %ld "
                    "sent\n", t->name, t->failed, t->bad, t->mail_from, t->sent);
            status = 1;
        }
        pthread_mutex_destroy(&t->lock);
    }
    /* B logged after A was freed: A's free left B's logging intact */
    if (tenants[1].after_free == 0) {
        fprintf(stderr, "tenant b: no line after A's context was freed\n");
        status = 1;
    }
    return status;
}
