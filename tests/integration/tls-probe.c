/* tls-probe: open a connection with one transport plugin from the core
 * registry and report what TLS came up, for tests/integration/test-transport.js.
 *
 *   tls-probe TRANSPORT HOST PORT [--ca FILE] [--tls-min 12|13] [--timeout-ms N]
 *             [--flood BYTES]
 *
 * plain and tls: read the greeting, EHLO, QUIT. starttls: greeting, EHLO,
 * STARTTLS, the transport's upgrade, EHLO again over TLS, QUIT. The SMTP here
 * is the minimum, read one byte at a time so nothing the server sent beyond a
 * reply is consumed (the SMTP engine proper lives in core/smtp.c).
 * --flood BYTES: right after the greeting, write that many bytes without
 * reading (a server that has closed makes the write fail: it must fail with
 * an error, never kill the probe with SIGPIPE); a write error is stage data.
 *
 * Prints one line and exits:
 *   ok <tls_version|none> <cipher|none> verified=<0|1>                    exit 0
 *   error stage=<stage> code=<MC_ name> outcome=<n> <message>             exit
 *     mc_outcome_exit_code(outcome) (69 permanent, 75 transient, 78 config)
 *   usage problems: exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailconn/plugin.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "log.h"

#define LINE_MAX_LEN 4096

/* Read one SMTP reply, byte by byte. @return the code, or a negative MC_E*. */
static int read_reply(mc_stream *s, mc_stage stage, char *text, size_t text_len,
                      mc_err **err)
{
    char line[LINE_MAX_LEN];
    size_t n = 0;
    text[0] = '\0';
    for (int lines = 0; lines < 100;) {
        char c;
        ssize_t r = s->ops->read(s, &c, 1, err);
        if (r < 0) {
            if (err && *err && (*err)->stage == MC_STAGE_NONE)
                (*err)->stage = stage;
            return (int)r;
        }
        if (r == 0)
            return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, stage,
                                 "the server closed the connection");
        if (c != '\n') {
            if (n + 1 >= sizeof(line))
                return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, stage,
                                     "reply line over %d bytes", LINE_MAX_LEN);
            line[n++] = c;
            continue;
        }
        if (n && line[n - 1] == '\r')
            n--;
        line[n] = '\0';
        lines++;
        if (n < 3 || line[0] < '2' || line[0] > '5' || (n > 3 && line[3] != ' ' && line[3] != '-'))
            return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, stage,
                                 "unparsable reply line \"%s\"", line);
        size_t used = strlen(text);
        snprintf(text + used, text_len - used, "%s%s", used ? "\n" : "", line);
        if (n == 3 || line[3] == ' ')
            return atoi(line);
        n = 0;
    }
    return mc__error_set(err, MC_EPROTO, MC_OUTCOME_PROTOCOL, stage, "reply of over 100 lines");
}

static int command(mc_stream *s, const char *cmd, mc_stage stage, int want,
                   char *text, size_t text_len, mc_err **err)
{
    char buf[512];
    int len = snprintf(buf, sizeof(buf), "%s\r\n", cmd);
    int rc = s->ops->write(s, buf, (size_t)len, err);
    if (rc < 0) {
        if (err && *err && (*err)->stage == MC_STAGE_NONE)
            (*err)->stage = stage;
        return rc;
    }
    int code = read_reply(s, stage, text, text_len, err);
    if (code < 0)
        return code;
    if (code != want) {
        mc__error_set(err, code >= 500 ? MC_EREFUSED : MC_ETEMP,
                      code >= 500 ? MC_OUTCOME_PERMANENT : MC_OUTCOME_TRANSIENT, stage,
                      "%s: the server answered %d", cmd, code);
        if (err && *err)
            mc__error_reply(*err, code, text);
        return code >= 500 ? MC_EREFUSED : MC_ETEMP;
    }
    return 0;
}

static int flood(mc_stream *s, size_t bytes, mc_err **err)
{
    static char chunk[65536];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (i % 64 == 63) ? '\n' : 'x';
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < sizeof(chunk) ? bytes - done : sizeof(chunk);
        int rc = s->ops->write(s, chunk, n, err);
        if (rc < 0) {
            if (err && *err && (*err)->stage == MC_STAGE_NONE)
                (*err)->stage = MC_STAGE_DATA;
            return rc;
        }
        done += n;
    }
    return 0;
}

static int dialogue(mc_stream *s, const mc_transport_ops *ops, const mc_connect_opts *o,
                    bool starttls, size_t flood_bytes, mc_err **err)
{
    char text[8192];
    int code = read_reply(s, MC_STAGE_GREETING, text, sizeof(text), err);
    if (code < 0)
        return code;
    if (code != 220)
        return mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_GREETING,
                             "greeting %d", code);
    int rc;
    if (flood_bytes && (rc = flood(s, flood_bytes, err)) < 0)
        return rc;
    rc = command(s, "EHLO tls-probe.test", MC_STAGE_EHLO, 250, text, sizeof(text), err);
    if (rc < 0)
        return rc;
    if (starttls) {
        if (!strstr(text, "STARTTLS"))
            return mc__error_set(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                                 "the server does not offer STARTTLS");
        if ((rc = command(s, "STARTTLS", MC_STAGE_STARTTLS, 220, text, sizeof(text), err)) < 0)
            return rc;
        if ((rc = ops->starttls(s->hc, s, o, err)) < 0)
            return rc;
        if ((rc = command(s, "EHLO tls-probe.test", MC_STAGE_EHLO, 250, text, sizeof(text),
                          err)) < 0)
            return rc;
    }
    return command(s, "QUIT", MC_STAGE_QUIT, 221, text, sizeof(text), err);
}

static int usage(void)
{
    fprintf(stderr, "usage: tls-probe TRANSPORT HOST PORT [--ca FILE] [--tls-min 12|13]"
                    " [--timeout-ms N] [--flood BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *transport = argv[1];
    mc_connect_opts o = {
        .size = sizeof(o),
        .host = argv[2],
        .port = (uint16_t)atoi(argv[3]),
        .timeout_ms = 10000,
        .ca_file = NULL,
        .tls_min = 12,
    };
    size_t flood_bytes = 0;
    for (int i = 4; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "--ca"))
            o.ca_file = argv[++i];
        else if (!strcmp(argv[i], "--tls-min"))
            o.tls_min = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout-ms"))
            o.timeout_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--flood"))
            flood_bytes = (size_t)strtoull(argv[++i], NULL, 10);
        else
            return usage();
    }
    mc_host_ctx hc;   /* the probe's own context: its lines to stderr */
    mc__hc_init(&hc, getenv("TLS_PROBE_DEBUG") ? MC_LOG_DEBUG : MC_LOG_WARN, NULL, NULL);

    mc_err *err = NULL;
    mc__registry *reg = NULL;
    const mc__plugin *plugin = NULL;
    mc_stream *s = NULL;
    int rc = mc__registry_new(&reg, NULL, &err);
    mc__registry_set_log(reg, &hc);
    hc.reg = reg;   /* host->tls_client / tls_upgrade load engine-tls.so from it */
    if (rc == 0)
        rc = mc__registry_get(reg, MC_PLUGIN_TRANSPORT, transport, &plugin, &err);
    if (rc == 0) {
        const mc_transport_ops *ops = plugin->desc->ops;
        bool starttls = ops->starttls != NULL;
        rc = ops->connect(&hc, &s, &o, &err);
        if (rc == 0)
            rc = dialogue(s, ops, &o, starttls, flood_bytes, &err);
        if (rc == 0)
            printf("ok %s %s verified=%d\n", s->encrypted ? s->tls_version : "none",
                   s->encrypted ? s->tls_cipher : "none", s->peer_verified ? 1 : 0);
        if (s)
            s->ops->close(s);
    }
    int status = 0;
    if (rc < 0) {
        int code = err ? err->code : rc;
        mc_outcome outcome = err ? err->outcome : mc__outcome_of(rc);
        printf("error stage=%s code=MC_%s outcome=%d %s\n",
               mc_stage_name(err ? err->stage : MC_STAGE_NONE), mc_error_name(code),
               (int)outcome, err && err->message ? err->message : mc_strerror(code));
        status = mc_outcome_exit_code(outcome);
    }
    mc_error_free(err);
    mc__registry_free(reg);
    mc__hc_destroy(&hc);
    return status;
}
