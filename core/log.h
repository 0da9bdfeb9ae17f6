/* log: one sink and one redaction list per process (core-internal).
 * Every line is redacted against the registered secrets and escaped
 * (mc__escape_put) before it reaches the sink. */
#ifndef MC_CORE_LOG_H
#define MC_CORE_LOG_H

#include <stdarg.h>
#include <stdio.h>
#include "buf.h"
#include "error.h"

/** Append text (len bytes) to b as a terminal may show it safely: C0
 *  controls but TAB (so CR, LF and ESC), DEL, C1 controls (U+0080..U+009F)
 *  and every byte that is not valid UTF-8 become "\xHH", one per byte;
 *  everything else, a backslash included, stays as it is. Every line that
 *  may carry a server's words (SMTP replies, OAuth error texts, device-flow
 *  messages) goes through this before a terminal or a file: the log sink,
 *  the -v transcript, log_file, the CLI's reports. @return 0 or MC_ENOMEM. */
int mc__escape_put(mc__buf *b, const char *text, size_t len);
/** Install the sink (NULL: stderr, prefixed "mailconn: ") and the level. */
void mc__log_setup(mc_log_level level, mc_log_fn *fn, void *payload);
mc_log_level mc__log_level(void);
void mc__log(mc_log_level level, const char *fmt, ...) MC__FMT(2, 3);
void mc__logv(mc_log_level level, const char *fmt, va_list ap);
/** Register a secret (copied; length >= 4). */
void mc__redact_add(const char *secret);
/** A copy of s with every registered secret replaced by "<redacted>";
 *  NULL on OOM. */
char *mc__redact_dup(const char *s);
/** Forget every secret (wiping them): mc_context_free of the last context. */
void mc__redact_reset(void);

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
 *  LOG_WARNING, LOG_ERR). The line is redacted and escaped
 *  (mc__escape_put) here. */
void mc__toplog_write(const mc__toplog *to, int pri, const char *line);
/** Note that err's failure is in the top-level log already (the send path
 *  logged it with its envelope): mc__toplog_failure skips it. Forgotten by
 *  mc_error_free (mc__toplog_forget). */
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
