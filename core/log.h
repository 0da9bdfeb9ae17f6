/* log: one sink and one redaction list per process (core-internal).
 * Every line is redacted against the registered secrets before it reaches
 * the sink. */
#ifndef MC_CORE_LOG_H
#define MC_CORE_LOG_H

#include <stdarg.h>
#include "error.h"

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

#endif
