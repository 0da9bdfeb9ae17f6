/* error: building mc_err records (core-internal). */
#ifndef MC_CORE_ERROR_H
#define MC_CORE_ERROR_H

#include <stdarg.h>
#include "mailconn/mailconn.h"

#if defined(__GNUC__)
#define MC__FMT(a, b) __attribute__((format(printf, a, b)))
#else
#define MC__FMT(a, b)
#endif

/** Fill *err (when err and not already set: the first error wins, a lower
 *  error is never re-wrapped) and return code. message is formatted. */
int mc__error_set(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                  const char *fmt, ...) MC__FMT(5, 6);
int mc__error_setv(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                   const char *fmt, va_list ap);

/** Record what an SMTP server said: reply code, enhanced code (parsed from
 *  text when it starts with one), the server text (copied). Sets transient
 *  for 4xx. Call after mc__error_set on the same error. */
void mc__error_reply(mc_err *err, int smtp_code, const char *text);
/** Set the hint (copied); replaces an earlier one. */
void mc__error_hint(mc_err *err, const char *hint);
/** Append one detail line (config errors). */
int mc__error_detail(mc_err *err, const char *line);
/** Set what to do about *err (when err and *err): the action, and the
 *  hint (copied) when hint is non-NULL. UI-neutral words only: a hint
 *  names no command of one front end. */
void mc__error_set_action(mc_err **err, mc_action action, const char *hint);
/** Append one field error: path ("servers[1].port", "" for the whole
 *  document) and message (without the path); server and key are derived
 *  from path. @return 0 or MC_ENOMEM. */
int mc__error_diag(mc_err *err, const char *path, const char *message);
/** Split a JSON path into the server index (-1 when not under
 *  "servers[N]") and the key within it; *key points into path. */
int mc__diag_path_split(const char *path, const char **key);
/** Move per-recipient results into err (takes ownership). */
void mc__error_rcpts(mc_err *err, mc_rcpt_result *rcpts, size_t n);
void mc__rcpts_free(mc_rcpt_result *rcpts, size_t n);

/** Default outcome for a code (for code paths that don't know better). */
mc_outcome mc__outcome_of(int code);

/** The stage filling rule for plugin errors (docs/plugins.md): a plugin
 *  may leave the stage MC_STAGE_NONE; the caller of the op fills in the
 *  stage the op runs in. @return rc unchanged. */
int mc__error_fill_stage(mc_err **err, int rc, mc_stage stage);

#endif
