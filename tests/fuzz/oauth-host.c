/* oauth-host: a minimal host table for the OAuth engine's fuzz targets:
 * logging goes nowhere, memory is the C library's, errors are plain
 * mc_err records; files and commands are refused (a parser never
 * needs them). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth.h"
#include "oauth-host.h"

static void f_log(mc_host_ctx *hc, mc_log_level level, const char *fmt, ...)
{
    (void)hc;
    (void)level;
    /* format it all the same, so a bad argument still shows */
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
}

static void f_redact(mc_host_ctx *hc, const char *s) { (void)hc; (void)s; }
static void *f_alloc(size_t n) { return calloc(1, n ? n : 1); }
static char *f_strdup(const char *s) { return s ? strdup(s) : NULL; }
static void f_free(void *p) { free(p); }
static void f_free_secret(char *s) { mc__oauth_wipe_free(s); }

static int f_error(mc_err **err, int code, mc_outcome outcome, mc_stage stage,
                   const char *fmt, ...)
{
    if (!err || *err)
        return code;
    mc_err *e = calloc(1, sizeof *e);
    if (!e)
        return code;
    e->code = code;
    e->outcome = outcome;
    e->stage = stage;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&e->message, fmt, ap) < 0)
        e->message = NULL;
    va_end(ap);
    *err = e;
    return code;
}

static int f_file_replace(const char *path, const char *data, size_t len, int mode,
                          mc_err **err)
{
    (void)data;
    (void)len;
    (void)mode;
    return f_error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "%s: no files here", path);
}

static int f_run_command(const char *c, int t, char **out, mc_err **err)
{
    (void)c;
    (void)t;
    *out = NULL;
    return f_error(err, MC_ESECRET, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH, "no commands here");
}

static const mc_host_api fuzz_host = {
    .size = sizeof(mc_host_api),
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .log = f_log,
    .redact = f_redact,
    .alloc = f_alloc,
    .strdup = f_strdup,
    .free = f_free,
    .free_secret = f_free_secret,
    .error = f_error,
    .file_replace = f_file_replace,
    .run_command = f_run_command,
};

void fuzz_oauth_host(void)
{
    mc__oauth_host = &fuzz_host;
}

void fuzz_oauth_error_free(mc_err *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->hint);
    free(e->server_text);
    free(e);
}
