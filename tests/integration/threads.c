/* N threads sending M messages each through ONE mc_context (public API
 * only). Prints "sent N" and exits 0 when every send succeeded; otherwise
 * prints each failure and exits 1.
 *   threads CONFIG THREADS PER_THREAD TO */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailconn/mailconn.h"

static mc_context *ctx;
static const char *to;
static int per_thread;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    for (int i = 0; i < per_thread; i++) {
        mc_message *msg = NULL;
        mc_err *err = NULL;
        char subject[64], text[128];
        snprintf(subject, sizeof(subject), "thread %d message %d", id, i);
        snprintf(text, sizeof(text), "body of thread %d message %d\n", id, i);
        int rc = mc_message_new(&msg, &err);
        if (rc == 0)
            rc = mc_message_add_recipient(msg, MC_RCPT_TO, to, &err);
        if (rc == 0)
            rc = mc_message_set_subject(msg, subject, &err);
        if (rc == 0)
            rc = mc_message_set_text(msg, text, strlen(text), &err);
        if (rc == 0)
            rc = mc_send(ctx, NULL, msg, &err);
        if (rc != 0) {
            pthread_mutex_lock(&lock);
            failures++;
            fprintf(stderr, "%s: %s\n", subject, err && err->message ? err->message : mc_strerror(rc));
            pthread_mutex_unlock(&lock);
        }
        mc_error_free(err);
        mc_message_free(msg);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: threads CONFIG THREADS PER_THREAD TO\n");
        return 2;
    }
    int n = atoi(argv[2]);
    per_thread = atoi(argv[3]);
    to = argv[4];
    if (n < 1 || n > 64 || per_thread < 1)
        return 2;
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = argv[1];
    o.flags = MC_CONTEXT_ONE_SERVER;
    mc_err *err = NULL;
    if (mc_context_new(&ctx, &o, &err) != 0) {
        fprintf(stderr, "context: %s\n", err ? err->message : "?");
        mc_error_free(err);
        return 1;
    }
    pthread_t th[64];
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, worker, (void *)(long)i);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    mc_context_free(ctx);
    printf("sent %d, failed %d\n", n * per_thread - failures, failures);
    return failures ? 1 : 0;
}
