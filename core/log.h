/* log: one sink, level and redaction list per context (core-internal).
 * Every line is redacted against the context's secrets and escaped
 * (mc__escape_put) before it reaches the sink. */
#ifndef MC_CORE_LOG_H
#define MC_CORE_LOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include "buf.h"
#include "error.h"
#include "mailconn/plugin.h"

/** Append text (len bytes) to b as a terminal may show it safely: C0
 *  controls but TAB (so CR, LF and ESC), DEL, C1 controls (U+0080..U+009F)
 *  and every byte that is not valid UTF-8 become "\xHH", one per byte;
 *  everything else, a backslash included, stays as it is. Every line that
 *  may carry a server's words (SMTP replies, OAuth error texts, device-flow
 *  messages) goes through this before a terminal or a file: the log sink,
 *  the -v transcript, log_file, the CLI's reports. @return 0 or MC_ENOMEM. */
int mc__escape_put(mc__buf *b, const char *text, size_t len);
/** The context a plugin op serves, and every core log call: its sink,
 *  level and redaction list, its state folder and token store. One per
 *  mc_context (embedded in it); a test or tool without a context may keep
 *  its own (mc__hc_init / mc__hc_destroy). Nothing here is process-wide. */
struct mc_host_ctx {
    pthread_mutex_t lock;         /* level, sink, secrets */
    mc_log_level    level;
    mc_log_fn      *sink;         /* NULL: stderr, prefixed "mailconn: " */
    void           *sink_payload;
    char          **secrets;
    size_t          n_secrets;
    char           *state_dir;    /* owned; NULL until set */
    const mc_token_store_ops *token_store;   /* the application's, or NULL */
    void           *token_store_payload;
    struct mc__store *store;      /* the context's token-store plugin (store.h), or NULL */
    struct mc__registry *reg;     /* the context's plugins (host->tls_*), or NULL */
};

/** Initialise hc with a sink (NULL: stderr) and a level. */
void mc__hc_init(mc_host_ctx *hc, mc_log_level level, mc_log_fn *fn, void *payload);
/** Wipe hc's secrets, free its state_dir. */
void mc__hc_destroy(mc_host_ctx *hc);
/** Replace hc's sink and level. */
void mc__log_setup(mc_host_ctx *hc, mc_log_level level, mc_log_fn *fn, void *payload);
/** hc's level (NULL: MC_LOG_WARN, the level of lines without a context). */
mc_log_level mc__log_level(mc_host_ctx *hc);
/** One line to hc's sink, redacted against hc's secrets and escaped: the
 *  line is made under hc's lock, the sink called after it is released (so a
 *  sink may call back into the library: mc_strerror, mc_context_server).
 *  Sinks of one context may be called from several threads at once.
 *  hc NULL (no context: the top-level log's own trouble): stderr at
 *  MC_LOG_WARN. */
void mc__log(mc_host_ctx *hc, mc_log_level level, const char *fmt, ...) MC__FMT(3, 4);
void mc__logv(mc_host_ctx *hc, mc_log_level level, const char *fmt, va_list ap);
/** Register a secret in hc (copied; length >= 4). hc NULL: nothing. */
void mc__redact_add(mc_host_ctx *hc, const char *secret);
/** A copy of s with every secret registered in hc replaced by
 *  "<redacted>" (hc NULL: a plain copy); NULL on OOM. */
char *mc__redact_dup(mc_host_ctx *hc, const char *s);

/* ---- the top-level log (DESIGN.md "System mail", Logging): the config's
 * top-level "log_file" and "syslog" get one line per message outcome and
 * per failure, those before a server is chosen included. */

/** Where top-level lines go: log_file (NULL: none), syslog facility
 *  (LOG_MAIL...; -1: none). */
typedef struct mc__toplog {
    const char *log_file;
    int         facility;
} mc__toplog;

/** Write one line to to's sinks: appended to log_file (created 0600, never
 *  through a symbolic link) after a UTC time stamp, and sent to /dev/log
 *  with ident "mailconn[PID]" at priority facility|pri (LOG_INFO,
 *  LOG_WARNING, LOG_ERR). The line is redacted (against hc's secrets; hc
 *  NULL: none) and escaped (mc__escape_put) here. */
void mc__toplog_write(mc_host_ctx *hc, const mc__toplog *to, int pri, const char *line);
/** Note that err's failure is in the top-level log already (the send path
 *  logged it with its envelope): mc__toplog_failure skips it. Forgotten by
 *  mc_error_free (mc__toplog_forget), so a later error at the same address
 *  is not taken for it. Keyed on the error's address: one set per process,
 *  which is right for every context at once, since an mc_err belongs to
 *  the process (any context may make it, any thread report it) and each
 *  address names one live error at a time. Marking fails safe: out of
 *  memory, the error is not marked and is logged twice rather than never. */
void mc__toplog_mark(const mc_err *err);
void mc__toplog_forget(const mc_err *err);
/**
 * A failure the application reports (the CLI: bad command line 64, bad
 * message 65, config 78, and every other error it shows): one line,
 * "command=... outcome=failed exit=N stage=... error=\"...\"", to the
 * top-level log of the config at config_path (NULL: where mc_context_new
 * looks; read by mc__config_toplog, so a config that fails to load still
 * logs when its top-level log keys are valid). err: the error (skipped when
 * marked), or NULL with text (a usage error).
 */
void mc__toplog_failure(const char *config_path, const char *command, int exit_code,
                        const mc_err *err, const char *text);

#endif
