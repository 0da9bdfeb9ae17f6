/* The mailconn command: shared between its files. */
#ifndef MC_CLI_H
#define MC_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include "mailconn/mailconn.h"

/* sysexits (DESIGN.md) */
#define EX_OK_ 0
#define EX_USAGE_ 64
#define EX_DATAERR_ 65
#define EX_NOINPUT_ 66
#define EX_UNAVAILABLE_ 69
#define EX_TEMPFAIL_ 75
#define EX_PROTOCOL_ 76
#define EX_NOPERM_ 77
#define EX_CONFIG_ 78

typedef struct cli {
    const char *config;
    const char *plugin_dir;
    int         verbose;       /* -v: 1, -vv: 2 */
    mc_outcome  worst;         /* most serious outcome so far */
} cli;

/** Record an outcome; the exit code is that of the most serious. */
void cli_outcome(cli *c, mc_outcome o);
int  cli_exit(const cli *c);
/** Print an error on stderr ("mailconn: LABEL: stage: ...") and record it. */
void cli_report(cli *c, const char *label, const mc_err *err, int code);
/** Usage error: message on stderr, outcome USAGE. */
int  cli_usage(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Format, escape (mc_text_escape: server text may hold terminal controls)
 *  and write one line to f, newline added: the CLI's one output path. */
void cli_print_line(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** A context for a command (flags MC_CONTEXT_*). On failure reports and
 *  returns NULL. */
mc_context *cli_context(cli *c, unsigned flags, const char *server);

int cmd_send(cli *c, int argc, char **argv);
int cmd_test(cli *c, int argc, char **argv);
int cmd_sendmail(cli *c, int argc, char **argv);
int cmd_auth(cli *c, int argc, char **argv);
/* cli/queue-cmd.c: `queue`, and the queue side of sendmail */
int cmd_queue(cli *c, int argc, char **argv);
/* cli/store-cmd.c: `store copy` */
int cmd_store(cli *c, int argc, char **argv);
/** The queue, listed as mailq lists it ("Mail queue is empty" without one). */
int cli_queue_list(cli *c, mc_context *ctx);
/** Deliver what is due (flush: everything not held); quiet: no summary. */
int cli_queue_run(cli *c, mc_context *ctx, bool flush, bool quiet);
/** Queue msg durably and start delivery in a detached process. A failure
 *  to queue is outcome TRANSIENT (75) unless the message itself is bad. */
int cli_queue_submit(cli *c, mc_context *ctx, const char *server, mc_message *msg,
                     char *id_out, mc_err **err);
/** " token=..." for an OAuth server (`servers`); nothing otherwise.
 *  @return MC_EFILE when the token store refused (the line on stderr says
 *  why: `servers` exits 78), MC_ENET / MC_ETIMEOUT when it is down (75),
 *  else 0. */
int cli_server_token_state(mc_context *ctx, const mc_server *srv);

#endif
