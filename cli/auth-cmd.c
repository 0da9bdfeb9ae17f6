/* mailconn auth, and the token state shown by `mailconn servers`. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "host.h"
#include "log.h"
#include "secret.h"
#include "send.h"   /* core-internal: the OAuth request for a server */

/* The engine's lines carry what the provider sent (device-flow message,
 * verification_uri, user_code): shown escaped. */
static void say(void *payload, const char *line)
{
    (void)payload;
    cli_print_line(stderr, "%s", line);
    fflush(stderr);
}

static char *ask(void *payload, const char *prompt)
{
    (void)payload;
    char *line = NULL;
    size_t cap = 0;
    char *safe = mc_text_escape(prompt);
    fputs(safe ? safe : "", stderr);
    free(safe);
    fflush(stderr);
    ssize_t n = getline(&line, &cap, stdin);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static const char *flow_name(unsigned flow)
{
    switch (flow) {
    case MC_FLOW_AUTH_CODE: return "browser";
    case MC_FLOW_PASTE: return "paste";
    case MC_FLOW_DEVICE: return "device";
    case MC_FLOW_CLIENT_CREDENTIALS: return "client credentials";
    default: return "?";
    }
}

static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = buf, *e = buf + n;
    while (*s && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    char *tok = strndup(s, (size_t)(e - s));
    OPENSSL_cleanse(buf, sizeof(buf));
    return tok;
}

/* xdg-open, when it is on $PATH: opens the URL in the desktop's browser. */
static bool have_xdg_open(void)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        return false;
    char *dirs = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/xdg-open", *d ? d : ".");
        found = access(file, X_OK) == 0;
    }
    free(dirs);
    return found;
}

enum { A_SERVER = 300, A_BROWSER, A_PORT, A_PASTE, A_DEVICE, A_RTF, A_REVOKE };

int cmd_auth(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, A_SERVER },
        { "browser", no_argument, NULL, A_BROWSER },
        { "port", required_argument, NULL, A_PORT },
        { "paste", no_argument, NULL, A_PASTE },
        { "device", no_argument, NULL, A_DEVICE },
        { "refresh-token-file", required_argument, NULL, A_RTF },
        { "revoke", no_argument, NULL, A_REVOKE },
        { NULL, 0, NULL, 0 },
    };
    const char *server = NULL, *rtf = NULL;
    unsigned flow = 0;
    int nflows = 0, port = 0, ch;
    bool revoke = false, port_set = false;

    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case A_SERVER: server = optarg; break;
        case A_BROWSER: flow = MC_FLOW_AUTH_CODE; nflows++; break;
        case A_PASTE: flow = MC_FLOW_PASTE; nflows++; break;
        case A_DEVICE: flow = MC_FLOW_DEVICE; nflows++; break;
        case A_RTF: rtf = optarg; break;
        case A_REVOKE: revoke = true; break;
        case A_PORT: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 65535)
                return cli_usage(c, "auth: --port must be 1..65535, got \"%s\"", optarg);
            port = (int)v;
            port_set = true;
            break;
        }
        default: return cli_usage(c, "auth: bad option");
        }
    }
    if (optind < argc)
        return cli_usage(c, "auth: unexpected argument \"%s\"", argv[optind]);
    if (nflows > 1 || (revoke && (nflows || rtf)) || (rtf && nflows))
        return cli_usage(c, "auth: choose one of --browser, --paste, --device, "
                            "--refresh-token-file, --revoke");
    if (port_set && flow != MC_FLOW_AUTH_CODE)
        return cli_usage(c, "auth: --port goes with --browser");

    char *imported = NULL;
    if (rtf && !(imported = read_token_file(rtf))) {
        fprintf(stderr, "mailconn: %s: %s\n", rtf, strerror(errno));
        cli_outcome(c, MC_OUTCOME_NOINPUT);
        return cli_exit(c);
    }

    mc_context *ctx = cli_context(c, MC_CONTEXT_ONE_SERVER, server);
    mc_err *err = NULL;
    mc__oauth_req r;
    bool have_req = false;
    int rc = 0;
    if (!ctx)
        goto out;
    const mc_server *srv = mc_context_server(ctx, server);
    if (!srv->auth_provider) {
        cli_usage(c, "auth: server \"%s\" has no authentication configured", srv->name);
        goto out;
    }
    have_req = true;
    if ((rc = mc__oauth_request(ctx, srv, &r, &err)) < 0)
        goto report;

    if (revoke) {
        if ((rc = r.engine->revoke(&r.req, &err)) == 0)
            printf("revoked: tokens for server %s forgotten\n", srv->name);
    } else if (imported) {
        mc__redact_add(imported);
        if ((rc = r.engine->import_refresh(&r.req, imported, &err)) == 0)
            printf("authorized: refresh token imported for server %s\n", srv->name);
    } else if (strcmp(r.req.grant, "client_credentials") == 0) {
        char *tok = NULL;
        rc = r.engine->token(&r.req, &tok, &err);
        mc__secret_free(tok);
        if (rc == 0)
            printf("authorized: client credentials work for server %s\n", srv->name);
    } else {
        const char *browser = getenv("BROWSER");
        const char *x11 = getenv("DISPLAY"), *wayland = getenv("WAYLAND_DISPLAY");
        bool display = (browser && *browser) || (x11 && *x11) || (wayland && *wayland);
        /* auth.grant "device_code" asks for the device flow; else a browser
         * when there is a display, else the provider's headless flow */
        if (!flow && strcmp(r.req.grant, "device_code") == 0)
            flow = MC_FLOW_DEVICE;
        if (!flow)
            flow = display && (r.profile.flows & MC_FLOW_AUTH_CODE) ? MC_FLOW_AUTH_CODE
                                                                  : r.profile.default_headless;
        if (!(r.profile.flows & flow)) {
            cli_usage(c, "auth: provider %s does not allow the %s flow%s", srv->auth_provider,
                      flow_name(flow),
                      flow == MC_FLOW_DEVICE && strcmp(srv->auth_provider, "google") == 0
                          ? " (Google does not grant the Gmail scope to devices: use --paste "
                            "or --browser)" : "");
            goto out;
        }
        mc_oauth_authorize_opts o = {
            .size = sizeof(o),
            .flow = flow,
            .port = port,
            /* $BROWSER, else xdg-open on a desktop; else the URL is only printed */
            .browser = browser && *browser ? browser
                       : flow == MC_FLOW_AUTH_CODE && display && have_xdg_open() ? "xdg-open"
                                                                                 : NULL,
            .wait_s = 300,
            .say = say,
            .ask = ask,
        };
        if ((rc = r.engine->authorize(&r.req, &o, &err)) == 0)
            printf("authorized: tokens stored for server %s\n", srv->name);
    }
report:
    if (rc < 0)
        cli_report(c, srv->name, err, rc);
out:
    if (have_req)
        mc__oauth_request_free(&r);
    mc_error_free(err);
    mc_context_free(ctx);
    mc__secret_free(imported);
    return cli_exit(c);
}

int cli_server_token_state(mc_context *ctx, const mc_server *srv)
{
    if (!srv->auth_provider)
        return 0;
    if (mc__host()->cfg_string(&srv->auth_cfg, "access_token_command")) {
        printf(" token=from-access_token_command");
        return 0;
    }
    mc__oauth_req r;
    mc_oauth_status st = { 0 };
    if (mc__oauth_request_ex(ctx, srv, false, &r, NULL) < 0)
        return 0;
    int rc = r.engine->status(&r.req, &st);
    if (rc == MC_EFILE) {
        printf(" token=refused(see the error above)");
        mc__oauth_request_free(&r);
        return rc;
    }
    if (rc < 0 || !st.stored) {
        if (strcmp(r.req.grant, "client_credentials") == 0)
            printf(" token=fetched-when-needed");
        else
            printf(" token=%s", st.identity_mismatch ? "other-identity(run mailconn auth)"
                                                     : "none(run mailconn auth)");
        mc__oauth_request_free(&r);
        return 0;
    }
    time_t now = time(NULL);
    if (st.access_expires > now)
        printf(" token=stored access-expires-in=%lldm", (long long)(st.access_expires - now) / 60);
    else
        printf(" token=stored access=expired");
    if (st.refresh_issued) {
        long long days = (now - st.refresh_issued) / 86400;
        printf(" refresh-age=%lldd", days);
        char what[64];
        if (mc__refresh_warning(what, sizeof(what), &r.profile, st.refresh_issued, now))
            printf(" WARNING:%s", what);
    }
    mc__oauth_request_free(&r);
    return 0;
}
