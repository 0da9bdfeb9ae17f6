/* mailconn queue list|run|flush|drop ID|hold ID|release ID, and the
 * queue side of sendmail (-bp/mailq, -q, submission): DESIGN.md "System
 * mail: sendmail and the queue". Only the mc_queue_* API. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct list_ctx {
    size_t             n;
    unsigned long long bytes;
} list_ctx;

/* Postfix's mailq shape: ID ('!' when held), size, arrival time, sender;
 * the last reason in parentheses; the recipients, indented. */
static int print_entry(const mc_queue_entry *e, void *payload)
{
    list_ctx *l = payload;
    if (!l->n)
        printf("%-22s %8s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
               "-Sender/Recipient-------");
    char when[32];
    time_t t = (time_t)e->submitted;
    struct tm tm;
    strftime(when, sizeof(when), "%a %b %e %H:%M:%S", localtime_r(&t, &tm));
    cli_print_line(stdout, "%s%-*s %8llu %-20s %s", e->id, (int)(22 - strlen(e->id)),
                   e->held ? "!" : "", e->size, when, e->sender[0] ? e->sender : "<>");
    if (e->reason)
        cli_print_line(stdout, "(%s)", e->reason);
    for (size_t i = 0; i < e->n_rcpts; i++)
        cli_print_line(stdout, "%53s%s", "", e->rcpts[i]);
    putchar('\n');
    l->n++;
    l->bytes += e->size;
    return 0;
}

int cli_queue_list(cli *c, mc_context *ctx)
{
    list_ctx l = { 0, 0 };
    mc_err *err = NULL;
    int rc = mc_queue_list(ctx, print_entry, &l, &err);
    if (rc < 0)
        cli_report(c, "queue", err, rc);
    mc_error_free(err);
    if (!l.n && rc >= 0)
        puts("Mail queue is empty");
    else if (l.n)
        printf("-- %llu Kbytes in %zu Request%s.\n", (l.bytes + 1023) / 1024, l.n,
               l.n == 1 ? "" : "s");
    return cli_exit(c);
}

int cli_queue_run(cli *c, mc_context *ctx, bool flush, bool quiet)
{
    if (!mc_queue_configured(ctx))
        return cli_exit(c);   /* nothing queued: nothing to do */
    mc_queue_run_options o = MC_QUEUE_RUN_OPTIONS_INIT;
    o.flags = flush ? MC_QUEUE_FLUSH : 0;
    mc_queue_run_stats st = { 0 };
    mc_err *err = NULL;
    int rc = mc_queue_run(ctx, &o, &st, &err);
    if (rc < 0)
        cli_report(c, "queue", err, rc);
    else if (!quiet)
        printf("queue: %zu delivered, %zu deferred, %zu failed, %zu notices, %zu busy\n",
               st.delivered, st.deferred, st.failed, st.notices, st.busy);
    mc_error_free(err);
    return cli_exit(c);
}

/* Delivery at once, for the queue's owner (or root): a detached process
 * (double fork, setsid, standard streams on /dev/null) runs what is due;
 * the caller returns at once and never waits for it. */
static void kick_runner(cli *c)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return;   /* the next run will deliver it */
    if (pid > 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;   /* the intermediate child, which exits at once */
        return;
    }
    if (setsid() < 0 || fork() != 0)
        _exit(0);
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    /* a context of its own, every server prepared: the queue may hold
     * messages for servers other than the submitter's */
    mc_context *ctx = cli_context(c, 0, NULL);
    mc_queue_run_options o = MC_QUEUE_RUN_OPTIONS_INIT;
    if (ctx)
        mc_queue_run(ctx, &o, NULL, NULL);
    _exit(0);
}

int cli_queue_submit(cli *c, mc_context *ctx, const char *server, mc_message *msg,
                     char *id_out, mc_err **err)
{
    mc_queue_submit_options o = MC_QUEUE_SUBMIT_OPTIONS_INIT;
    o.server = server;
    /* TEST HOOK (tests/integration/test-queue.js, max_age_s): the submit
     * time to record, in Unix seconds; it only ages the caller's own
     * message in the caller's own queue */
    const char *t = getenv("MAILCONN_TEST_QUEUE_SUBMITTED");
    if (t && *t)
        o.submitted = strtoll(t, NULL, 10);
    char id[MC_QUEUE_ID_SIZE];
    int rc = mc_queue_submit(ctx, msg, &o, id, err);
    if (rc < 0) {
        /* DESIGN.md: any failure to queue is 75, the message left with
         * the caller; a bad message or address stays what it is */
        if (err && *err && (*err)->stage == MC_STAGE_QUEUE)
            (*err)->outcome = MC_OUTCOME_TRANSIENT;
        return rc;
    }
    if (c->verbose)
        cli_print_line(stderr, "mailconn: queued as %s", id);
    if (id_out)
        memcpy(id_out, id, MC_QUEUE_ID_SIZE);
    if (!getenv("MAILCONN_TEST_QUEUE_NO_RUNNER"))
        kick_runner(c);
    return 0;
}

static const char queue_usage[] =
    "usage: mailconn queue list | run | flush | drop ID... | hold ID... | release ID...";

int cmd_queue(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage(c, "%s", queue_usage);
    const char *sub = argv[1];
    bool takes_ids = strcmp(sub, "drop") == 0 || strcmp(sub, "hold") == 0
                     || strcmp(sub, "release") == 0;
    if (!takes_ids && strcmp(sub, "list") != 0 && strcmp(sub, "run") != 0
        && strcmp(sub, "flush") != 0)
        return cli_usage(c, "queue: unknown command \"%s\" (%s)", sub, queue_usage);
    if (takes_ids ? argc < 3 : argc > 2)
        return cli_usage(c, "%s", queue_usage);
    mc_context *ctx = cli_context(c, 0, NULL);
    if (!ctx)
        return cli_exit(c);
    if (strcmp(sub, "list") == 0)
        cli_queue_list(c, ctx);
    else if (strcmp(sub, "run") == 0 || strcmp(sub, "flush") == 0)
        cli_queue_run(c, ctx, strcmp(sub, "flush") == 0, false);
    for (int i = 2; takes_ids && i < argc; i++) {
        mc_err *err = NULL;
        int rc = sub[0] == 'd'   ? mc_queue_drop(ctx, argv[i], &err)
                 : sub[0] == 'h' ? mc_queue_hold(ctx, argv[i], &err)
                                 : mc_queue_release(ctx, argv[i], &err);
        if (rc < 0)
            cli_report(c, argv[i], err, rc);
        else
            cli_print_line(stdout, "%s: %s", argv[i],
                           sub[0] == 'd' ? "dropped" : sub[0] == 'h' ? "held" : "released");
        mc_error_free(err);
    }
    mc_context_free(ctx);
    return cli_exit(c);
}
