/* error: the mc_err record and the code tables (X-macro, libuv style). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

const char *mc_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define X(name, val, text) case MC_##name: return text;
    MC_ERRNO_MAP(X)
#undef X
    default: return "unknown error";
    }
}

const char *mc_error_name(int code)
{
    switch (code) {
    case 0: return "OK";
#define X(name, val, text) case MC_##name: return #name;
    MC_ERRNO_MAP(X)
#undef X
    default: return "UNKNOWN";
    }
}

int mc_outcome_exit_code(mc_outcome outcome)
{
    switch (outcome) {
    case MC_OUTCOME_OK: return 0;
    case MC_OUTCOME_CONFIG: return 78;
    case MC_OUTCOME_USAGE: return 64;
    case MC_OUTCOME_NOINPUT: return 66;
    case MC_OUTCOME_DATA: return 65;
    case MC_OUTCOME_AUTH: return 77;
    case MC_OUTCOME_PERMANENT: return 69;
    case MC_OUTCOME_PROTOCOL: return 76;
    case MC_OUTCOME_TRANSIENT: return 75;
    case MC_OUTCOME_UNKNOWN: return 75;
    }
    return 70;
}

const char *mc_stage_name(mc_stage stage)
{
    static const char *const names[] = {
        [MC_STAGE_NONE] = "none",       [MC_STAGE_CONFIG] = "config",
        [MC_STAGE_PLUGIN] = "plugin",   [MC_STAGE_CONNECT] = "connect",
        [MC_STAGE_TLS] = "tls",         [MC_STAGE_GREETING] = "greeting",
        [MC_STAGE_EHLO] = "ehlo",       [MC_STAGE_STARTTLS] = "starttls",
        [MC_STAGE_AUTH] = "auth",       [MC_STAGE_MAIL] = "mail",
        [MC_STAGE_RCPT] = "rcpt",       [MC_STAGE_DATA] = "data",
        [MC_STAGE_QUIT] = "quit",       [MC_STAGE_OAUTH] = "oauth",
        [MC_STAGE_MESSAGE] = "message", [MC_STAGE_QUEUE] = "queue", [MC_STAGE_PROXY] = "proxy",
    };
    if ((unsigned)stage < sizeof(names) / sizeof(names[0]) && names[stage])
        return names[stage];
    return "unknown";
}

const char *mc_action_name(mc_action action)
{
    static const char *const names[] = {
        [MC_ACTION_NONE] = "none",
        [MC_ACTION_FIX_CONFIG] = "fix-config",
        [MC_ACTION_REAUTHORIZE] = "reauthorize",
        [MC_ACTION_AUTHORIZE] = "authorize",
        [MC_ACTION_ENABLE_SMTP_AUTH] = "enable-smtp-auth",
        [MC_ACTION_GRANT_CONSENT] = "grant-consent",
        [MC_ACTION_CHECK_CREDENTIALS] = "check-credentials",
        [MC_ACTION_RETRY_LATER] = "retry-later",
        [MC_ACTION_FIX_MESSAGE] = "fix-message",
    };
    if ((unsigned)action < sizeof(names) / sizeof(names[0]) && names[action])
        return names[action];
    return "unknown";
}

/* The action an error gets unless the code that sets it knows better. */
static mc_action default_action(mc_outcome outcome)
{
    switch (outcome) {
    case MC_OUTCOME_CONFIG: return MC_ACTION_FIX_CONFIG;
    case MC_OUTCOME_DATA: return MC_ACTION_FIX_MESSAGE;
    case MC_OUTCOME_TRANSIENT: return MC_ACTION_RETRY_LATER;
    default: return MC_ACTION_NONE;
    }
}

mc_outcome mc__outcome_of(int code)
{
    switch (code) {
    case 0: return MC_OUTCOME_OK;
    case MC_ECONFIG: case MC_EPLUGIN: case MC_ESECRET: return MC_OUTCOME_CONFIG;
    case MC_EUSAGE: case MC_ENOSERVER: case MC_EINVAL: return MC_OUTCOME_USAGE;
    case MC_EFILE: return MC_OUTCOME_NOINPUT;
    case MC_EMESSAGE: return MC_OUTCOME_DATA;
    case MC_EAUTH: return MC_OUTCOME_AUTH;
    case MC_EREFUSED: case MC_ETLS: case MC_ERCPT: case MC_ENOTSUP: return MC_OUTCOME_PERMANENT;
    case MC_EPROTO: return MC_OUTCOME_PROTOCOL;
    case MC_EUNKNOWN: return MC_OUTCOME_UNKNOWN;
    default: return MC_OUTCOME_TRANSIENT;   /* ETEMP, ENET, ETIMEOUT, ENOMEM, EOAUTH */
    }
}

void mc__rcpts_free(mc_rcpt_result *rcpts, size_t n)
{
    if (!rcpts)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rcpts[i].address);
        free(rcpts[i].text);
    }
    free(rcpts);
}

void mc_error_free(mc_err *err)
{
    if (!err)
        return;
    mc__toplog_forget(err);   /* no longer "in the top-level log already" */
    free(err->server_text);
    free(err->message);
    free(err->hint);
    mc__rcpts_free(err->rcpts, err->n_rcpts);
    for (size_t i = 0; i < err->n_details; i++)
        free(err->details[i]);
    free(err->details);
    for (size_t i = 0; i < err->n_diags; i++) {
        free(err->diags[i].path);
        free(err->diags[i].key);
        free(err->diags[i].message);
    }
    free(err->diags);
    free(err);
}

int mc__error_setv(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                   const char *fmt, va_list ap)
{
    if (!err || *err)
        return code;
    mc_err *e = calloc(1, sizeof(*e));
    if (!e)
        return code;
    e->code = code;
    e->outcome = outcome;
    e->stage = stage;
    e->transient = outcome == MC_OUTCOME_TRANSIENT || outcome == MC_OUTCOME_UNKNOWN;
    e->action = default_action(outcome);
    char *raw = NULL;
    if (fmt && vasprintf(&raw, fmt, ap) < 0)
        raw = NULL;
    /* the message is one line for display and may quote a server (an OAuth
     * error_description, a reply): escaped like every log line */
    e->message = raw ? mc_text_escape(raw) : NULL;
    free(raw);
    if (!e->message)
        e->message = strdup(mc_strerror(code));
    *err = e;
    return code;
}

int mc__error_set(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc__error_setv(err, code, outcome, stage, fmt, ap);
    va_end(ap);
    return code;
}

void mc__error_reply(mc_err *err, int smtp_code, const char *text)
{
    if (!err)
        return;
    err->smtp_code = smtp_code;
    err->enhanced[0] = '\0';
    free(err->server_text);
    err->server_text = text ? strdup(text) : NULL;
    if (smtp_code >= 400 && smtp_code < 500) {
        err->transient = true;
        if (err->action == MC_ACTION_NONE)
            err->action = MC_ACTION_RETRY_LATER;
    } else if (smtp_code >= 500 && err->stage == MC_STAGE_AUTH && err->outcome == MC_OUTCOME_AUTH
               && err->action == MC_ACTION_NONE) {
        err->action = MC_ACTION_CHECK_CREDENTIALS;   /* 535 and the like */
    }
    /* an enhanced code leads the text: "5.7.8 Username..." (RFC 3463) */
    if (text && (text[0] == '2' || text[0] == '4' || text[0] == '5') && text[1] == '.') {
        size_t i = 2, digits = 0;
        while (isdigit((unsigned char)text[i]) && digits < 3) { i++; digits++; }
        if (digits && text[i] == '.') {
            size_t j = i + 1, d2 = 0;
            while (isdigit((unsigned char)text[j]) && d2 < 3) { j++; d2++; }
            if (d2 && (text[j] == ' ' || text[j] == '\0' || text[j] == '\n')
                && j < sizeof(err->enhanced)) {
                memcpy(err->enhanced, text, j);
                err->enhanced[j] = '\0';
            }
        }
    }
}

void mc__error_hint(mc_err *err, const char *hint)
{
    if (!err)
        return;
    free(err->hint);
    err->hint = hint ? strdup(hint) : NULL;
}

int mc__error_detail(mc_err *err, const char *line)
{
    if (!err)
        return 0;
    char **d = realloc(err->details, (err->n_details + 1) * sizeof(*d));
    if (!d)
        return MC_ENOMEM;
    err->details = d;
    if (!(d[err->n_details] = strdup(line)))
        return MC_ENOMEM;
    err->n_details++;
    return 0;
}

void mc__error_rcpts(mc_err *err, mc_rcpt_result *rcpts, size_t n)
{
    if (!err) {
        mc__rcpts_free(rcpts, n);
        return;
    }
    mc__rcpts_free(err->rcpts, err->n_rcpts);
    err->rcpts = rcpts;
    err->n_rcpts = n;
}

void mc__error_set_action(mc_err **err, mc_action action, const char *hint)
{
    if (!err || !*err)
        return;
    (*err)->action = action;
    if (hint)
        mc__error_hint(*err, hint);
}

int mc__diag_path_split(const char *path, const char **key)
{
    static const char pre[] = "servers[";
    *key = path ? path : "";
    if (!path || strncmp(path, pre, sizeof(pre) - 1) != 0)
        return -1;
    const char *p = path + sizeof(pre) - 1;
    long n = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        n = n * 10 + (*p - '0');
        if (n > 1000000)
            return -1;
        p++;
    }
    if (*p != ']')
        return -1;
    p++;
    if (*p == '.')
        p++;
    else if (*p && *p != '[')
        return -1;
    *key = p;
    return (int)n;
}

int mc__error_diag(mc_err *err, const char *path, const char *message)
{
    if (!err)
        return 0;
    mc_diag *d = realloc(err->diags, (err->n_diags + 1) * sizeof(*d));
    if (!d)
        return MC_ENOMEM;
    err->diags = d;
    const char *key;
    int server = mc__diag_path_split(path ? path : "", &key);
    mc_diag n = {
        .path = strdup(path ? path : ""),
        .server = server,
        .key = strdup(key),
        .message = strdup(message ? message : ""),
    };
    if (!n.path || !n.key || !n.message) {
        free(n.path);
        free(n.key);
        free(n.message);
        return MC_ENOMEM;
    }
    d[err->n_diags++] = n;
    return 0;
}

int mc__error_fill_stage(mc_err **err, int rc, mc_stage stage)
{
    if (rc < 0 && err && *err && (*err)->stage == MC_STAGE_NONE)
        (*err)->stage = stage;
    return rc;
}
