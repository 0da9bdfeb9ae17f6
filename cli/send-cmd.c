/* mailconn send and test (sendmail: sendmail.c). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct strv {
    char **v;
    size_t n;
} strv;

static int strv_push(strv *s, char *p)
{
    char **n = realloc(s->v, (s->n + 1) * sizeof(*n));
    if (!n)
        return -1;
    s->v = n;
    s->v[s->n++] = p;
    return 0;
}

/* All of f (a -t message from a file or stdin), NUL-terminated. */
static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0, r;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    buf[n] = '\0';   /* n < cap: the buffer grows when it is full */
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = read_stream(f, len);
    int saved = errno;
    fclose(f);
    errno = saved;
    return b;
}

static size_t accepted_count(const mc_err *err)
{
    size_t n = 0;
    for (size_t i = 0; err && i < err->n_rcpts; i++)
        n += err->rcpts[i].accepted;
    return n;
}

/* Report one message's outcome: "sent ..." on stdout only when accepted. */
static void report_send(cli *c, const char *label, const mc_message *msg, int rc,
                        const mc_err *err, bool quiet)
{
    /* the server's words, shown escaped (mc_text_escape) */
    char *reply = msg && mc_message_last_reply(msg) ? mc_text_escape(mc_message_last_reply(msg))
                                                    : NULL;
    if (rc == 0) {
        size_t n = mc_message_recipient_count(msg);
        if (!quiet)
            printf("sent %s: %zu recipient%s: %s\n", label, n, n == 1 ? "" : "s",
                   reply ? reply : "");
        free(reply);
        return;
    }
    if (rc == MC_ERCPT && !quiet)
        printf("sent %s: %zu of %zu recipients: %s\n", label, accepted_count(err),
               err ? err->n_rcpts : 0, reply ? reply : "");
    free(reply);
    cli_report(c, label, err, rc);
}

/* ---------------------------------------------------------------- send -t batch */

typedef struct batch {
    cli         *c;
    mc_context  *ctx;
    const char  *server;
    const char  *from;
    const char  *dsn[3];      /* --dsn-notify, --dsn-ret, --envid */
    char       **files;
    size_t       n_files;
    size_t       next;
    pthread_mutex_t lock;
    bool         queue;       /* --queue: each message queued, not sent */
    bool         progress;    /* stderr is a terminal and the batch is long */
    size_t       done, failed;
    struct timespec shown;    /* when the progress line was last drawn */
} batch;

#define PROGRESS_MIN_FILES 20

/* The progress line, on a terminal only: "mailconn: 120/1000 sent, 2 failed".
 * Redrawn at most every 100 ms, erased before any other output. Called with
 * b->lock held. */
static void progress_draw(batch *b, bool force)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - b->shown.tv_sec) * 1000 + (now.tv_nsec - b->shown.tv_nsec) / 1000000;
    if (!force && ms < 100)
        return;
    b->shown = now;
    fprintf(stderr, "\r\033[Kmailconn: %zu/%zu sent, %zu failed", b->done - b->failed,
            b->n_files, b->failed);
    fflush(stderr);
}

static void progress_erase(void)
{
    fputs("\r\033[K", stderr);
    fflush(stderr);
}

static void batch_one(batch *b, const char *file)
{
    mc_message *msg = NULL;
    mc_err *err = NULL;
    const char *label = file ? file : "stdin";
    int rc;

    if (file) {
        rc = mc_message_parse_file(&msg, file, &err);
    } else {
        size_t len = 0;
        char *data = read_stream(stdin, &len);
        rc = data ? mc_message_parse(&msg, data, len, &err) : MC_ENOMEM;
        free(data);
    }
    if (rc == 0 && b->from) {
        /* -t: --from is the envelope sender; of "Name <a>", the address */
        char *addr = NULL;
        if (strchr(b->from, '<') && (rc = mc_mailbox_parse(&addr, NULL, b->from, &err)) < 0)
            addr = NULL;
        if (rc == 0)
            rc = mc_message_set_envelope_from(msg, addr ? addr : b->from, &err);
        mc_free(addr);
    }
    if (rc == 0 && (b->dsn[0] || b->dsn[1] || b->dsn[2]))
        rc = mc_message_set_dsn(msg, b->dsn[0], b->dsn[1], b->dsn[2], &err);
    char id[MC_QUEUE_ID_SIZE] = "";
    if (rc == 0 && b->queue) {
        rc = cli_queue_submit(b->c, b->ctx, b->server, msg, id, &err);
    } else if (rc == 0) {
        rc = mc_send(b->ctx, b->server, msg, &err);
        /* the connection dropped before the final dot: nothing of the
         * message was taken, so it goes once more on a new connection (a
         * drop after the dot is MC_EUNKNOWN and never resent) */
        if ((rc == MC_ENET || rc == MC_ETIMEOUT) && err && err->stage != MC_STAGE_CONNECT) {
            mc_error_free(err);
            err = NULL;
            rc = mc_send(b->ctx, b->server, msg, &err);
        }
    }
    pthread_mutex_lock(&b->lock);
    if (b->progress)
        progress_erase();
    if (rc == 0 && b->queue)
        cli_print_line(stdout, "queued %s: %s", label, id);
    else
        report_send(b->c, label, msg, rc, err, false);
    fflush(stdout);
    b->done++;
    b->failed += rc != 0;
    if (b->progress)
        progress_draw(b, b->done == b->n_files);
    pthread_mutex_unlock(&b->lock);
    mc_error_free(err);
    mc_message_free(msg);
}

static void *batch_worker(void *p)
{
    batch *b = p;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        size_t i = b->next++;
        pthread_mutex_unlock(&b->lock);
        if (i >= b->n_files)
            return NULL;
        batch_one(b, b->files[i]);
    }
}

/* ---------------------------------------------------------------- send */

/* --from A or --from 'Name <a@b>': the address for From: and the envelope,
 * the name (unquoted) for From:; without a name the library writes
 * sender.name when A is sender.address. */
static int set_from(mc_message *msg, const char *from, mc_err **err)
{
    if (!strchr(from, '<')) {
        int rc = mc_message_set_from(msg, from, NULL, err);
        return rc < 0 ? rc : mc_message_set_envelope_from(msg, from, err);
    }
    char *addr = NULL, *name = NULL;
    int rc = mc_mailbox_parse(&addr, &name, from, err);
    if (rc < 0)
        return rc;
    rc = mc_message_set_from(msg, addr, name && *name ? name : NULL, err);
    if (rc == 0)
        rc = mc_message_set_envelope_from(msg, addr, err);
    mc_free(name);
    mc_free(addr);
    return rc;
}

enum { O_SERVER = 256, O_FROM, O_TO, O_CC, O_BCC, O_SUBJECT, O_BODY, O_BODY_FILE,
       O_HTML_FILE, O_ATTACH, O_JOBS, O_DSN_NOTIFY, O_DSN_RET, O_ENVID, O_QUEUE };

int cmd_send(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, O_SERVER },
        { "from", required_argument, NULL, O_FROM },
        { "to", required_argument, NULL, O_TO },
        { "cc", required_argument, NULL, O_CC },
        { "bcc", required_argument, NULL, O_BCC },
        { "subject", required_argument, NULL, O_SUBJECT },
        { "body", required_argument, NULL, O_BODY },
        { "body-file", required_argument, NULL, O_BODY_FILE },
        { "html-file", required_argument, NULL, O_HTML_FILE },
        { "attach", required_argument, NULL, O_ATTACH },
        { "jobs", required_argument, NULL, O_JOBS },
        { "dsn-notify", required_argument, NULL, O_DSN_NOTIFY },
        { "dsn-ret", required_argument, NULL, O_DSN_RET },
        { "envid", required_argument, NULL, O_ENVID },
        { "queue", no_argument, NULL, O_QUEUE },
        { NULL, 0, NULL, 0 },
    };
    const char *server = NULL, *from = NULL, *subject = NULL, *body = NULL;
    const char *body_file = NULL, *html_file = NULL;
    const char *dsn[3] = { NULL, NULL, NULL };   /* --dsn-notify, --dsn-ret, --envid */
    strv to = { 0 }, cc = { 0 }, bcc = { 0 }, attach = { 0 };
    bool t = false, queue = false;
    long jobs = 1;
    int ch, ret;

    while ((ch = getopt_long(argc, argv, "t", opts, NULL)) != -1) {
        switch (ch) {
        case O_SERVER: server = optarg; break;
        case O_FROM: from = optarg; break;
        case O_TO: strv_push(&to, optarg); break;
        case O_CC: strv_push(&cc, optarg); break;
        case O_BCC: strv_push(&bcc, optarg); break;
        case O_SUBJECT: subject = optarg; break;
        case O_BODY: body = optarg; break;
        case O_BODY_FILE: body_file = optarg; break;
        case O_HTML_FILE: html_file = optarg; break;
        case O_ATTACH: strv_push(&attach, optarg); break;
        case O_DSN_NOTIFY: dsn[0] = optarg; break;
        case O_DSN_RET: dsn[1] = optarg; break;
        case O_ENVID: dsn[2] = optarg; break;
        case O_QUEUE: queue = true; break;
        case O_JOBS: {
            char *end;
            jobs = strtol(optarg, &end, 10);
            if (*end || jobs < 1 || jobs > 100) {
                ret = cli_usage(c, "send: --jobs must be 1..100, got \"%s\"", optarg);
                goto out;
            }
            break;
        }
        case 't': t = true; break;
        default: ret = cli_usage(c, "send: bad option"); goto out;
        }
    }

    if (t) {
        if (to.n || cc.n || bcc.n || subject || body || body_file || html_file || attach.n) {
            ret = cli_usage(c, "send -t takes recipients and content from the message, not flags");
            goto out;
        }
        mc_context *ctx = cli_context(c, MC_CONTEXT_ONE_SERVER, server);
        if (!ctx) {
            ret = cli_exit(c);
            goto out;
        }
        if (queue && !mc_queue_configured(ctx)) {
            ret = cli_usage(c, "send --queue: no queue configured (a top-level \"queue\" object)");
            mc_context_free(ctx);
            goto out;
        }
        batch b = { .c = c, .ctx = ctx, .server = server, .from = from, .queue = queue,
                    .dsn = { dsn[0], dsn[1], dsn[2] },
                    .files = argv + optind, .n_files = (size_t)(argc - optind) };
        pthread_mutex_init(&b.lock, NULL);
        b.progress = b.n_files >= PROGRESS_MIN_FILES && isatty(STDERR_FILENO);
        if (b.n_files == 0) {
            batch_one(&b, NULL);
        } else {
            size_t n = (size_t)jobs < b.n_files ? (size_t)jobs : b.n_files;
            pthread_t th[100];
            size_t started = 0;
            for (size_t i = 1; i < n; i++)
                if (pthread_create(&th[started], NULL, batch_worker, &b) == 0)
                    started++;
            batch_worker(&b);
            for (size_t i = 0; i < started; i++)
                pthread_join(th[i], NULL);
            if (b.progress)
                fputc('\n', stderr);   /* the last progress line stays */
        }
        pthread_mutex_destroy(&b.lock);
        mc_context_free(ctx);
        ret = cli_exit(c);
        goto out;
    }

    if (optind < argc) {
        ret = cli_usage(c, "send: unexpected argument \"%s\" (files go with -t)", argv[optind]);
        goto out;
    }
    if (!to.n && !cc.n && !bcc.n) {
        ret = cli_usage(c, "send: no recipient (--to, --cc or --bcc)");
        goto out;
    }
    if (!subject) {
        ret = cli_usage(c, "send: --subject is required");
        goto out;
    }
    if (!!body + !!body_file != 1) {
        ret = cli_usage(c, "send: give exactly one of --body and --body-file");
        goto out;
    }

    /* files named on the command line must be readable: 66 before anything
     * is sent; the body file is streamed at send time (constant memory) */
    char *html_data = NULL;
    size_t html_len = 0;
    mc_context *ctx = NULL;
    mc_message *msg = NULL;
    mc_err *err = NULL;
    int rc = 0;
    if ((rc = mc_message_new(&msg, &err)) < 0
        || (body_file && (rc = mc_message_set_text_file(msg, body_file, &err)) < 0)) {
        cli_report(c, NULL, err, rc);
        goto done;
    }
    if (html_file && !(html_data = read_file(html_file, &html_len))) {
        fprintf(stderr, "mailconn: %s: %s\n", html_file, strerror(errno));
        cli_outcome(c, MC_OUTCOME_NOINPUT);
        goto done;
    }

    if (!(ctx = cli_context(c, MC_CONTEXT_ONE_SERVER, server)))
        goto done;
    if (from && (rc = set_from(msg, from, &err)) < 0)
        goto report;
    if ((dsn[0] || dsn[1] || dsn[2])
        && (rc = mc_message_set_dsn(msg, dsn[0], dsn[1], dsn[2], &err)) < 0)
        goto report;
    for (size_t i = 0; i < to.n; i++)
        if ((rc = mc_message_add_recipient(msg, MC_RCPT_TO, to.v[i], &err)) < 0)
            goto report;
    for (size_t i = 0; i < cc.n; i++)
        if ((rc = mc_message_add_recipient(msg, MC_RCPT_CC, cc.v[i], &err)) < 0)
            goto report;
    for (size_t i = 0; i < bcc.n; i++)
        if ((rc = mc_message_add_recipient(msg, MC_RCPT_BCC, bcc.v[i], &err)) < 0)
            goto report;
    if ((rc = mc_message_set_subject(msg, subject, &err)) < 0)
        goto report;
    if (body && (rc = mc_message_set_text(msg, body, strlen(body), &err)) < 0)
        goto report;
    if (html_data && (rc = mc_message_set_html(msg, html_data, html_len, &err)) < 0)
        goto report;
    for (size_t i = 0; i < attach.n; i++)
        if ((rc = mc_message_add_attachment(msg, attach.v[i], &err)) < 0)
            goto report;
    if (queue) {
        /* --queue: written durably, delivered in the background (exit 0) */
        char id[MC_QUEUE_ID_SIZE];
        if (!mc_queue_configured(ctx)) {
            cli_usage(c, "send --queue: no queue configured (a top-level \"queue\" object)");
            goto done;
        }
        if ((rc = cli_queue_submit(c, ctx, server, msg, id, &err)) == 0) {
            cli_print_line(stdout, "queued %s: %s", mc_message_id(msg) ? mc_message_id(msg)
                                                                       : "message", id);
            goto done;
        }
        goto report;
    }
    rc = mc_send(ctx, server, msg, &err);
report:
    report_send(c, msg && mc_message_id(msg) ? mc_message_id(msg) : "message", msg, rc, err, false);
done:
    mc_error_free(err);
    mc_message_free(msg);
    mc_context_free(ctx);
    free(html_data);
    ret = cli_exit(c);
out:
    free(to.v);
    free(cc.v);
    free(bcc.v);
    free(attach.v);
    return ret;
}

/* ---------------------------------------------------------------- test */

static void test_stage(mc_stage stage, const char *line, void *payload)
{
    (void)payload;
    cli_print_line(stdout, "%-9s %s", mc_stage_name(stage), line ? line : "");
    fflush(stdout);
}

int cmd_test(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, O_SERVER },
        { "to", required_argument, NULL, O_TO },
        { NULL, 0, NULL, 0 },
    };
    const char *server = NULL, *to = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case O_SERVER: server = optarg; break;
        case O_TO: to = optarg; break;
        default: return cli_usage(c, "test: bad option");
        }
    }
    if (!to || optind < argc)
        return cli_usage(c, "usage: mailconn test [--server NAME] --to A");
    mc_context *ctx = cli_context(c, MC_CONTEXT_ONE_SERVER, server);
    if (!ctx)
        return cli_exit(c);
    mc_err *err = NULL;
    int rc = mc_server_test(ctx, server, to, test_stage, NULL, &err);
    if (rc == 0) {
        printf("succeeded\n");
    } else {
        printf("failed at %s\n", err ? mc_stage_name(err->stage) : "?");
        cli_report(c, NULL, err, rc);
    }
    mc_error_free(err);
    mc_context_free(ctx);
    return cli_exit(c);
}

/* sendmail: cli/sendmail.c */
