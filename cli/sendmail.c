/* mailconn sendmail, also run as sendmail, mailq and newaliases: the
 * option forms Postfix's and msmtp's sendmail accept (DESIGN.md "System
 * mail: sendmail and the queue"). Mapped: -t, -i/-oi, -f/-r (also the null
 * sender '<>' and ''), -F, -v, -N/-R/-V (DSN: NOTIFY, RET, ENVID); modes -bm (default), -bi/-I/newaliases (0), -bp/mailq and -q
 * (the queue: cli/queue-cmd.c), -bs/-bd/-bv (64, not a
 * daemon); accepted and ignored: -B, -C, -G, -h, -L, -m, -n, -O, -o…, -p,
 * -U, -X, -e?, -A?. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* The submission helper, for a user (not root) who has no readable config
 * of their own (no --config, no MAILCONN_CONFIG, nothing readable under
 * $XDG_CONFIG_HOME, the system config 0600 root): the setgid mailconn-submit
 * queues for them. NULL: use the config as usual. */
static const char *submit_helper(const cli *c)
{
    if (getuid() == 0 || c->config || (getenv("MAILCONN_CONFIG") && *getenv("MAILCONN_CONFIG")))
        return NULL;
    char *path = mc_config_find(NULL);
    bool readable = path && access(path, R_OK) == 0;
    mc_free(path);
    if (readable)
        return NULL;
    return mc_submit_helper_path();
}

/* Hand the message (stdin, unread) and its envelope to the helper. Returns
 * only when it cannot be run: 75, the message still the caller's. */
static int exec_helper(cli *c, const char *helper, bool t, bool dot_ok, const char *from,
                       const char *full_name, const char *notify, const char *ret,
                       const char *envid, int argc, char **argv, int first)
{
    char **av = calloc((size_t)(argc - first) + 16, sizeof(char *));
    size_t n = 0;
    if (!av) {
        cli_outcome(c, MC_OUTCOME_TRANSIENT);
        return cli_exit(c);
    }
    av[n++] = (char *)"mailconn-submit";
    if (dot_ok) av[n++] = (char *)"-i";
    if (t) av[n++] = (char *)"-t";
#define OPT(flag, v) do { if (v) { av[n++] = (char *)(flag); av[n++] = (char *)(v); } } while (0)
    OPT("-F", full_name);
    OPT("-N", notify);
    OPT("-R", ret);
    OPT("-V", envid);
    OPT("-f", from);
#undef OPT
    av[n++] = (char *)"--";
    for (int i = first; i < argc; i++)
        av[n++] = argv[i];
    fflush(NULL);
    execv(helper, av);
    int e = errno;
    free(av);
    fprintf(stderr, "mailconn: cannot run %s: %s (not queued)\n", helper, strerror(e));
    cli_outcome(c, MC_OUTCOME_TRANSIENT);
    return cli_exit(c);
}

/* The message on stdin; without -i a line holding a single dot ends it. */
static char *read_input(FILE *f, size_t *len, bool dot_ends)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t l;
    if (!buf)
        return NULL;
    while ((l = getline(&line, &lcap, f)) > 0) {
        if (dot_ends && ((l == 2 && line[0] == '.' && line[1] == '\n')
                         || (l == 3 && line[0] == '.' && line[1] == '\r' && line[2] == '\n')))
            break;
        while (n + (size_t)l + 1 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                free(line);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + n, line, (size_t)l);
        n += (size_t)l;
    }
    free(line);
    buf[n] = '\0';
    *len = n;
    return buf;
}

typedef struct add_ctx {
    mc_message *msg;
    bool        t;
    mc_err  **err;
} add_ctx;

static int add_rcpt(const char *addr, void *payload)
{
    add_ctx *a = payload;
    /* -t: named on the command line = added to the message's own, unseen */
    return a->t ? mc_message_add_recipient(a->msg, MC_RCPT_BCC, addr, a->err)
                : mc_message_add_envelope_recipient(a->msg, addr, a->err);
}

/* -bp / mailq: list the queue; -q: flush it, silently */
static int queue_mode(cli *c, const char *mode)
{
    mc_context *ctx = cli_context(c, 0, NULL);
    if (!ctx)
        return cli_exit(c);
    if (strcmp(mode, "p") == 0)
        cli_queue_list(c, ctx);
    else
        cli_queue_run(c, ctx, true, true);
    mc_context_free(ctx);
    return cli_exit(c);
}

int cmd_sendmail(cli *c, int argc, char **argv)
{
    const char *prog = strrchr(argv[0], '/');
    prog = prog ? prog + 1 : argv[0];
    if (strcmp(prog, "mailq") == 0)
        return queue_mode(c, "p");
    if (strcmp(prog, "newaliases") == 0)
        return EX_OK_;

    bool t = false, dot_ok = false;
    const char *from = NULL, *full_name = NULL, *mode = "m";
    const char *notify = NULL, *ret = NULL, *envid = NULL;
    int ch;

    /* getopt as Postfix's sendmail uses it: clusters (-ti), values attached
     * or separate, options after the recipients too; -q takes an optional
     * attached value (-q30m) */
    static const char optstring[] = ":A:B:C:F:GIL:N:O:R:UV:X:b:e:f:h:imno:p:q::r:tvx";
    optind = 0;
    opterr = 0;
    while ((ch = getopt(argc, argv, optstring)) != -1) {
        switch (ch) {
        case 't': t = true; break;
        case 'i': dot_ok = true; break;
        case 'o':
            if (strcmp(optarg, "i") == 0)
                dot_ok = true;
            /* other -o options (-oem, -odi, -oQ...) are accepted and ignored */
            break;
        case 'f':
        case 'r': from = optarg; break;
        case 'F': full_name = optarg; break;
        case 'v': c->verbose++; break;
        case 'b': mode = optarg; break;
        case 'I': mode = "i"; break;     /* initialize the alias database: as -bi */
        case 'q': mode = "q"; break;
        /* DSN (RFC 3461), checked by mc_message_set_dsn */
        case 'N': notify = optarg; break;
        case 'R': ret = optarg; break;
        case 'V': envid = optarg; break;
        case 'A': case 'B': case 'C': case 'e': case 'h': case 'L': case 'O': case 'p':
        case 'X':
        case 'G': case 'm': case 'n': case 'U': case 'x':
            break;   /* accepted and ignored (-B: the body type is detected anyway) */
        case ':':
            return cli_usage(c, "sendmail: -%c needs a value", optopt);
        default:
            return cli_usage(c, "sendmail: unsupported option -%c", optopt);
        }
    }

    if (strcmp(mode, "i") == 0)
        return EX_OK_;   /* aliases live in the config: nothing to rebuild */
    if (strcmp(mode, "p") == 0 || strcmp(mode, "q") == 0)
        return queue_mode(c, mode);
    if (strcmp(mode, "s") == 0 || strcmp(mode, "d") == 0 || strcmp(mode, "v") == 0)
        return cli_usage(c, "sendmail: -b%s: mailconn is not a daemon", mode);
    if (strcmp(mode, "m") != 0)
        return cli_usage(c, "sendmail: -b%s is not supported", mode);

    const char *helper = submit_helper(c);
    if (helper)
        return exec_helper(c, helper, t, dot_ok, from, full_name, notify, ret, envid, argc, argv,
                           optind);

    size_t len = 0;
    char *data = read_input(stdin, &len, !dot_ok);
    if (!data) {
        fprintf(stderr, "mailconn: cannot read the message from standard input\n");
        cli_outcome(c, MC_OUTCOME_NOINPUT);
        return cli_exit(c);
    }
    mc_context *ctx = cli_context(c, MC_CONTEXT_ONE_SERVER, NULL);
    mc_message *msg = NULL;
    mc_err *err = NULL;
    char *sender = NULL;
    int rc = 0;
    if (!ctx)
        goto done;
    if ((rc = mc_message_parse_ex(&msg, data, len, MC_PARSE_SENDMAIL, &err)) < 0)
        goto report;
    if (from && *from && strcmp(from, "<>") != 0 && strpbrk(from, "<(\"")) {
        /* "Name <a@b>" or "<a@b>": the address inside */
        if ((rc = mc_mailbox_parse(&sender, NULL, from, &err)) < 0)
            goto report;
        from = *sender ? sender : "<>";
    }
    if (from && (rc = mc_message_set_envelope_from(msg, from, &err)) < 0)
        goto report;
    if (full_name && (rc = mc_message_set_from_name(msg, full_name, &err)) < 0)
        goto report;
    if ((notify || ret || envid) && (rc = mc_message_set_dsn(msg, notify, ret, envid, &err)) < 0)
        goto report;
    /* recipients: each argument an address list ("a@x,b@y" as cron passes
     * MAILTO, "Name <a@x>") */
    add_ctx a = { msg, t, &err };
    size_t named = 0;
    for (int i = optind; i < argc; i++) {
        if ((rc = mc_address_list_split(argv[i], add_rcpt, &a, &err)) < 0)
            goto report;
        named++;
    }
    if (!t && !named) {
        rc = MC_EUSAGE;
        cli_usage(c, "sendmail: no recipients (name them, or use -t)");
        goto done;
    }
    /* with a queue: written durably, exit 0, delivered in the background */
    rc = mc_queue_configured(ctx) ? cli_queue_submit(c, ctx, NULL, msg, NULL, &err)
                                  : mc_send(ctx, NULL, msg, &err);
report:
    /* silent on success, as sendmail is */
    if (rc < 0)
        cli_report(c, "stdin", err, rc);
done:
    mc_error_free(err);
    mc_message_free(msg);
    mc_context_free(ctx);
    free(sender);
    free(data);
    return cli_exit(c);
}
