/* mailconn-bench: the library side of bench/run, and a load driver for
 * tests (test-pool.js). Public API only.
 *
 *   mailconn-bench --config FILE [--server NAME] [--count N] [--size BYTES]
 *                  [--threads T] [--per-session K] [--to ADDR] [--quiet]
 *
 * Sends N messages of about BYTES bytes each (headers included). Without
 * --per-session they go through mc_send() and the context's pool (T
 * threads share one context); with --per-session K each thread opens a
 * session, sends K messages, closes it and opens the next (so every K
 * messages there is a new connection and, with OAuth, a new AUTH that needs
 * a token). Prints "sent N failed F seconds S rate R" and exits 0 when every
 * message was accepted, 1 otherwise (each failure on stderr), 2 on a bad
 * command line. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mailconn/mailconn.h"

static mc_context *ctx;
static const char *server;
static const char *to = "rcpt@example.org";
static char *body;
static size_t body_len;
static long count = 1000;
static long per_session;
static long next_index;
static long sent, failed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static long take(void)
{
    pthread_mutex_lock(&lock);
    long i = next_index < count ? next_index++ : -1;
    pthread_mutex_unlock(&lock);
    return i;
}

static void result(long i, int rc, const mc_err *err)
{
    pthread_mutex_lock(&lock);
    if (rc == 0) {
        sent++;
    } else {
        failed++;
        fprintf(stderr, "message %ld: %s: %s\n", i, mc_error_name(rc),
                err && err->message ? err->message : mc_strerror(rc));
    }
    pthread_mutex_unlock(&lock);
}

static int make_message(mc_message **msg, long i, mc_err **err)
{
    char subject[64];
    snprintf(subject, sizeof(subject), "bench message %ld", i);
    int rc = mc_message_new(msg, err);
    if (rc == 0)
        rc = mc_message_add_recipient(*msg, MC_RCPT_TO, to, err);
    if (rc == 0)
        rc = mc_message_set_subject(*msg, subject, err);
    if (rc == 0)
        rc = mc_message_set_text(*msg, body, body_len, err);
    return rc;
}

static void *worker(void *arg)
{
    (void)arg;
    mc_session *s = NULL;
    long in_session = 0;
    for (long i; (i = take()) >= 0;) {
        mc_message *msg = NULL;
        mc_err *err = NULL;
        int rc = make_message(&msg, i, &err);
        if (rc == 0 && per_session > 0) {
            if (!s && (rc = mc_session_open(&s, ctx, server, &err)) == 0)
                in_session = 0;
            if (rc == 0) {
                rc = mc_session_send(s, msg, &err);
                if (++in_session >= per_session || rc != 0) {
                    mc_session_close(s);
                    s = NULL;
                }
            }
        } else if (rc == 0) {
            rc = mc_send(ctx, server, msg, &err);
        }
        result(i, rc, err);
        mc_error_free(err);
        mc_message_free(msg);
    }
    mc_session_close(s);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "server", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 'b' },
        { "threads", required_argument, NULL, 't' },
        { "per-session", required_argument, NULL, 'k' },
        { "to", required_argument, NULL, 'r' },
        { "quiet", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    long size = 2048, threads = 1;
    bool quiet = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 's': server = optarg; break;
        case 'n': count = atol(optarg); break;
        case 'b': size = atol(optarg); break;
        case 't': threads = atol(optarg); break;
        case 'k': per_session = atol(optarg); break;
        case 'r': to = optarg; break;
        case 'q': quiet = true; break;
        default: return 2;
        }
    }
    if (!config || count < 1 || size < 1 || threads < 1 || threads > 64 || per_session < 0
        || optind != argc) {
        fprintf(stderr, "usage: mailconn-bench --config FILE [--server NAME] [--count N] "
                        "[--size BYTES] [--threads 1..64] [--per-session K] [--to ADDR] [--quiet]\n");
        return 2;
    }

    /* a text body of 72-character lines; the headers make up the rest */
    body_len = size > 400 ? (size_t)size - 300 : 100;
    body = malloc(body_len);
    if (!body)
        return 1;
    for (size_t i = 0; i < body_len; i++)
        body[i] = (i % 73 == 72) ? '\n' : (char)('a' + i % 26);
    body[body_len - 1] = '\n';

    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = config;
    o.flags = MC_CONTEXT_ONE_SERVER;
    o.server = server;
    mc_err *err = NULL;
    if (mc_context_new(&ctx, &o, &err) != 0) {
        fprintf(stderr, "mailconn-bench: %s\n", err && err->message ? err->message : "no context");
        mc_error_free(err);
        free(body);
        return 1;
    }

    double t0 = now_s();
    pthread_t th[64];
    long started = 0;
    for (long i = 1; i < threads; i++)
        if (pthread_create(&th[started], NULL, worker, NULL) == 0)
            started++;
    worker(NULL);
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double secs = now_s() - t0;
    mc_context_free(ctx);   /* QUIT on the pooled connections */
    free(body);
    if (!quiet || failed)
        printf("sent %ld failed %ld seconds %.3f rate %.0f\n", sent, failed, secs,
               secs > 0 ? (double)sent / secs : 0.0);
    return failed ? 1 : 0;
}
