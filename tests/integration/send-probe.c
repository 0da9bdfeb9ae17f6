/* send-probe: send one message through the PUBLIC API (mailconn.h only) and
 * print the outcome as one JSON line, so tests/integration/test-faults.js
 * can assert the fields the CLI does not print (the transient flag, the
 * error code name, the stage) exactly.
 *
 *   send-probe CONFIG [SERVER] [--to A] [--body-file F]
 *
 * Prints, on stdout, one line:
 *   {"rc":0,"code":"OK","outcome":0,"exit":0,"stage":"none","smtp_code":0,
 *    "enhanced":"","transient":false,"message":"","reply":"250 ..."}
 * or the same with the mc_err fields of a failure. The exit code is 0
 * whenever that line was printed (the test compares the JSON, and the CLI's
 * own exit code separately), 2 for a usage problem. Never a secret: the
 * error text is what the library already redacted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailconn/mailconn.h"

static void jstr(const char *key, const char *v, int comma)
{
    printf("\"%s\":\"", key);
    for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    printf("\"%s", comma ? "," : "");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *server = NULL, *to = "to@example.test", *body_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--body-file") == 0 && i + 1 < argc)
            body_file = argv[++i];
        else if (!config)
            config = argv[i];
        else if (!server)
            server = argv[i];
        else
            config = NULL, i = argc;
    }
    if (!config) {
        fprintf(stderr, "usage: send-probe CONFIG [SERVER] [--to A] [--body-file F]\n");
        return 2;
    }

    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = config;
    o.flags = MC_CONTEXT_ONE_SERVER;
    o.server = server;
    o.log_level = getenv("MAILCONN_PROBE_DEBUG") ? MC_LOG_DEBUG : MC_LOG_WARN;
    mc_context *ctx = NULL;
    mc_message *msg = NULL;
    mc_err *err = NULL;
    char *body = NULL;
    size_t body_len = 0;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc == 0)
        rc = mc_message_new(&msg, &err);
    if (rc == 0)
        rc = mc_message_add_recipient(msg, MC_RCPT_TO, to, &err);
    if (rc == 0)
        rc = mc_message_set_subject(msg, "send-probe", &err);
    if (rc == 0) {
        if (body_file && !(body = slurp(body_file, &body_len))) {
            fprintf(stderr, "send-probe: cannot read %s\n", body_file);
            mc_message_free(msg);
            mc_context_free(ctx);
            return 2;
        }
        rc = body ? mc_message_set_text(msg, body, body_len, &err)
                  : mc_message_set_text(msg, "probe body\n", 11, &err);
    }
    if (rc == 0)
        rc = mc_send(ctx, server, msg, &err);

    printf("{\"rc\":%d,", rc);
    jstr("code", mc_error_name(rc), 1);
    printf("\"outcome\":%d,\"exit\":%d,", err ? (int)err->outcome : 0,
           err ? mc_outcome_exit_code(err->outcome) : 0);
    jstr("stage", mc_stage_name(err ? err->stage : MC_STAGE_NONE), 1);
    printf("\"smtp_code\":%d,", err ? err->smtp_code : 0);
    jstr("enhanced", err ? err->enhanced : "", 1);
    printf("\"transient\":%s,", err && err->transient ? "true" : "false");
    jstr("message", err && err->message ? err->message : "", 1);
    jstr("reply", msg && mc_message_last_reply(msg) ? mc_message_last_reply(msg) : "", 0);
    printf("}\n");
    fflush(stdout);

    mc_error_free(err);
    mc_message_free(msg);
    mc_context_free(ctx);
    free(body);
    return 0;
}
