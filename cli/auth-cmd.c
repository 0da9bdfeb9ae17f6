/* mailconn auth, and the token state shown by `mailconn servers`. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"   /* the public API only: mailconn.h */

/* Wipe and free a secret the CLI read (a refresh token file). */
static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* The engine's lines carry what the provider sent (device-flow message,
 * verification_uri, user_code): shown escaped. */
static void say(const char *line, void *payload)
{
    (void)payload;
    cli_print_line(stderr, "%s", line);
    fflush(stderr);
}

static char *ask(const char *prompt, void *payload)
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
    explicit_bzero(buf, sizeof(buf));
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
    int rc = 0;
    if (!ctx)
        goto out;
    const mc_server *srv = mc_context_server(ctx, server);
    const char *name = mc_server_name(srv);
    if (!mc_server_provider(srv)) {
        cli_usage(c, "auth: server \"%s\" has no authentication configured", name);
        goto out;
    }

    if (revoke) {
        if ((rc = mc_oauth_revoke(ctx, name, &err)) == 0)
            printf("revoked: tokens for server %s forgotten\n", name);
    } else if (imported) {
        if ((rc = mc_oauth_import(ctx, name, imported, &err)) == 0)
            printf("authorized: refresh token imported for server %s\n", name);
    } else {
        const char *browser = getenv("BROWSER");
        const char *x11 = getenv("DISPLAY"), *wayland = getenv("WAYLAND_DISPLAY");
        bool display = (browser && *browser) || (x11 && *x11) || (wayland && *wayland);
        mc_oauth_authorize_options o = MC_OAUTH_AUTHORIZE_OPTIONS_INIT;
        /* flow 0: the library picks (auth.grant device_code: the device
         * flow; a browser with a display; else the provider's headless one) */
        o.flow = flow;
        o.port = port;
        /* $BROWSER, else xdg-open on a desktop (a browser flow); else the
         * URL is only printed */
        o.browser = browser && *browser ? browser
                    : (flow == MC_FLOW_AUTH_CODE || !flow) && display && have_xdg_open()
                        ? "xdg-open" : NULL;
        o.wait_s = 300;
        o.say = say;
        o.ask = ask;
        if ((rc = mc_oauth_authorize(ctx, name, &o, &err)) == 0) {
            mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
            if (mc_oauth_get_status(&st, ctx, name) == 0 &&
                strcmp(st.grant, "client_credentials") == 0)
                printf("authorized: client credentials work for server %s\n", name);
            else
                printf("authorized: tokens stored for server %s\n", name);
        }
    }
    if (rc < 0)
        cli_report(c, name, err, rc);
out:
    mc_error_free(err);
    mc_context_free(ctx);
    wipe_free(imported);
    return cli_exit(c);
}

int cli_server_token_state(mc_context *ctx, const mc_server *srv)
{
    if (!mc_server_provider(srv))
        return 0;
    mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
    int rc = mc_oauth_get_status(&st, ctx, mc_server_name(srv));
    if (rc == MC_ENOTSUP && strcmp(st.grant, "access_token_command") == 0) {
        printf(" token=from-access_token_command");
        return 0;
    }
    if (rc < 0)
        return 0;   /* not an OAuth server */
    if (st.store_code) {
        printf(" token=refused(see the error above)");
        /* the error "above": on stderr before the line is complete */
        fflush(stdout);
        cli_print_line(stderr, "mailconn: server %s: %s", mc_server_name(srv), st.store_message);
        /* a store that is down (a database) is transient, not a refusal */
        return st.store_code == MC_ENET || st.store_code == MC_ETIMEOUT ? st.store_code : MC_EFILE;
    }
    if (!st.stored) {
        if (strcmp(st.grant, "client_credentials") == 0)
            printf(" token=fetched-when-needed");
        else
            printf(" token=%s", st.identity_mismatch ? "other-identity(run mailconn auth)"
                                                     : "none(run mailconn auth)");
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
        if (st.warning[0])
            printf(" WARNING:%s", st.warning);
    }
    return 0;
}
