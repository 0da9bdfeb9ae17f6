/* queue: the durable spool behind mc_queue_* (core-internal): queue IDs,
 * the on-disk format of a message and of its state, the retry schedule.
 * The layout is described in mailconn.h ("queue"). */
#ifndef MC_CORE_QUEUE_H
#define MC_CORE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include "mailconn/mailconn.h"
#include "buf.h"

/** The spool folder built in, used with the system config (which may not
 *  name another queue): the system queue is its queue/ (0700, the runner's),
 *  and the submission helper's drop/ goes beside it, so the helper's group
 *  never needs to reach into the queue itself. */
#ifndef MC_SPOOL_DIR
#define MC_SPOOL_DIR "/var/spool/mailconn"
/** The queue folder of ctx's config (malloc'd), or NULL (no memory). */
char *mc__queue_path(const mc_context *ctx);
/** Queue msg as mc_queue_submit does (default server), recorded as
 *  submitted by uid (the submission helper's user; core/drop.c). */
int mc__queue_spool_as(mc_context *ctx, mc_message *msg, unsigned uid, char *id_out,
                       mc_err **err);
/** Root's runner, when ctx's queue is the built-in spool's: move the
 *  helper's files of <spooldir>/drop into the queue (core/drop.c). Problems
 *  are logged; a file that cannot be queued now stays for the next run. */
void mc__drop_import(mc_context *ctx);

#endif

#define MC__QUEUE_ID_LEN 21            /* 13 hex digits of time, 8 random */
#define MC__QUEUE_MAX_PAUSE_S 3600     /* the doubling pause stops here */

/** A new queue ID for a submit time in microseconds: 13 upper-case hex
 *  digits of the time, then 8 random ones (RAND_bytes). out: at least
 *  MC_QUEUE_ID_SIZE bytes. @return 0, or MC_ENOMEM (no randomness). */
int mc__queue_make_id(char *out, long long usec);
/** Whether s is a queue ID as mc__queue_make_id writes them (also what
 *  keeps a caller's ID from naming any other file). */
bool mc__queue_id_valid(const char *s);
/** The pause after `attempts` failed tries (>= 1): retry_s, doubled per
 *  further try, at most MC__QUEUE_MAX_PAUSE_S. */
long mc__queue_pause(int retry_s, unsigned attempts);

/** What never changes about a queued message: its file's first line. */
typedef struct mc__queue_meta {
    char               id[MC_QUEUE_ID_SIZE];
    long long          submitted;   /* Unix seconds */
    unsigned           uid;
    char              *user;
    char              *server;      /* NULL: the default */
    char              *from;        /* "" for the null sender */
    char             **rcpts;
    size_t             n_rcpts;
    char              *notify, *ret, *envid;  /* DSN requests, or NULL */
    unsigned long long size;        /* bytes of the message after the line */
} mc__queue_meta;

/** What changes: `<QID>.state`. */
typedef struct mc__queue_state {
    unsigned  attempts;
    long long next_try;              /* Unix seconds; 0: due */
    char     *reason;                /* last failure, or NULL */
    bool      held;
    bool      unknown;               /* the last try ended after the final dot */
    bool      has_rcpts;             /* rcpts replaces meta's recipients */
    char    **rcpts;
    size_t    n_rcpts;
} mc__queue_state;

/** The metadata line (JSON, one line, "\n" ended), appended to out.
 *  @return 0 or MC_ENOMEM. */
int mc__queue_meta_format(const mc__queue_meta *m, mc__buf *out);
/** Parse a metadata line (without its "\n"). @return 0, or MC_EFILE when
 *  it is not one (missing or mistyped members, a bad ID). */
int mc__queue_meta_parse(mc__queue_meta *out, const char *line, size_t len);
void mc__queue_meta_clear(mc__queue_meta *m);

int mc__queue_state_format(const mc__queue_state *s, mc__buf *out);
int mc__queue_state_parse(mc__queue_state *out, const char *text, size_t len);
void mc__queue_state_clear(mc__queue_state *s);

/** The queue folder of ctx's config (malloc'd), or NULL (no memory). */
char *mc__queue_path(const mc_context *ctx);
/** Queue msg as mc_queue_submit does (default server), recorded as
 *  submitted by uid (the submission helper's user; core/drop.c). */
int mc__queue_spool_as(mc_context *ctx, mc_message *msg, unsigned uid, char *id_out,
                       mc_err **err);
/** Root's runner, when ctx's queue is the built-in spool's: move the
 *  helper's files of <spooldir>/drop into the queue (core/drop.c). Problems
 *  are logged; a file that cannot be queued now stays for the next run. */
void mc__drop_import(mc_context *ctx);

/** One line about the queue, to the context's log and to the top-level
 *  log_file / syslog (pri: LOG_INFO, LOG_WARNING, LOG_ERR). */
void mc__queue_log(const mc_context *ctx, int pri, const char *fmt, ...) MC__FMT(3, 4);

#endif
