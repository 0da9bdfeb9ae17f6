/* mailconn: the command line (DESIGN.md "The command line"). */
#include <ctype.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: mailconn [--config FILE] [--plugin-dir DIR] [-v] COMMAND\n"
    "  plugins                    list all plugins: kind, name, version, file\n"
    "  servers [--names]          list servers, default marked with *; token state\n"
    "  check [--secrets]          validate the config (exit 0, or 78 with every error)\n"
    "  set-default NAME           move the default mark, save atomically\n"
    "  auth [--server NAME] [--browser [--port N]|--paste|--device] [--refresh-token-file F]\n"
    "  auth --revoke [--server NAME]\n"
    "  send [--server NAME] [--from A] --to A [--to A...] [--cc A...] [--bcc A...]\n"
    "       --subject S (--body TEXT | --body-file F) [--html-file F] [--attach F...] [--queue]\n"
    "  send [--server NAME] [--from A] -t [--jobs N] [--queue] [FILE.eml...]\n"
    "  test [--server NAME] --to A\n"
    "  sendmail [-t] [-i] [-f A] [-F NAME] [RCPT...]\n"
    "  queue list|run|flush       the queue; queue drop|hold|release ID...\n"
    "  store copy --from STORE --to STORE  copy the OAuth tokens between file and token_store\n";

void cli_outcome(cli *c, mc_outcome o)
{
    if (o != MC_OUTCOME_OK && (c->worst == MC_OUTCOME_OK || o < c->worst))
        c->worst = o;
}

void cli_print_line(FILE *f, const char *fmt, ...)
{
    va_list ap;
    char *raw = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    char *shown = n < 0 ? NULL : mc_text_escape(raw);
    if (shown)
        fprintf(f, "%s\n", shown);
    else
        fputs("mailconn: out of memory\n", f);
    free(shown);
    free(raw);
}

int cli_exit(const cli *c)
{
    return mc_outcome_exit_code(c->worst);
}

/* The command being run ("send", "sendmail"...), for the top-level log. */
static const char *command_name = "mailconn";

/* The one place the CLI's failures reach the config's top-level log_file
 * and syslog (DESIGN.md "System mail", Logging): usage errors (64), bad
 * messages (65), config errors (78) and every other error it reports; what
 * mc_send logged already, with its envelope, is skipped by the library. */
static void log_failure(const cli *c, mc_outcome o, const mc_err *e, const char *text)
{
    mc_log_failure(c->config, command_name, mc_outcome_exit_code(o), e, text);
}

int cli_usage(cli *c, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    fprintf(stderr, "mailconn: %s\n(see mailconn --help)\n", text ? text : "bad usage");
    log_failure(c, MC_OUTCOME_USAGE, NULL, text ? text : "bad usage");
    free(text);
    cli_outcome(c, MC_OUTCOME_USAGE);
    return cli_exit(c);
}

/* "535 5.7.8 Username and Password not accepted (AUTH PLAIN)": the server's
 * reply first, as it said it (its text carries the enhanced code), then
 * what mailconn adds; the message usually ends with the reply already.
 * The reply is compared and shown escaped, as the message is. */
static char *report_reply(const mc_err *e)
{
    const char *msg = e->message ? e->message : mc_strerror(e->code);
    char *text = e->smtp_code && e->server_text ? mc_text_escape(e->server_text) : NULL;
    char *out = NULL;
    if (!text)
        return strdup(msg);
    char reply[16];
    snprintf(reply, sizeof(reply), "%d ", e->smtp_code);
    size_t ml = strlen(msg), rl = strlen(reply), tl = strlen(text);
    size_t ctx = ml;
    if (ml >= rl + tl && strcmp(msg + ml - tl, text) == 0
        && strncmp(msg + ml - tl - rl, reply, rl) == 0)
        ctx = ml - tl - rl;               /* the message ends with the reply */
    else if (strcmp(msg, text) == 0)
        ctx = 0;                          /* nothing the reply does not say */
    while (ctx && (msg[ctx - 1] == ' ' || msg[ctx - 1] == ':'))
        ctx--;
    if ((ctx ? asprintf(&out, "%s%s (%.*s)", reply, text, (int)ctx, msg)
             : asprintf(&out, "%s%s", reply, text)) < 0)
        out = NULL;
    free(text);
    return out;
}

/* The library's hints name no command (DESIGN.md "Actions, not
 * commands"): what it says to do, in its fixed words, becomes this CLI's
 * command. "authorize server NAME again" / "authorize server NAME" (the
 * words of MC_ACTION_REAUTHORIZE / MC_ACTION_AUTHORIZE) and the flows by
 * name. */
static char *cli_hint(const char *hint)
{
    char *out = NULL;
    size_t len = 0;
    FILE *b = open_memstream(&out, &len);
    if (!b)
        return NULL;
    static const struct { const char *lib, *cli; } words[] = {
        { "the browser or paste flow", "`mailconn auth --paste` or `mailconn auth --browser`" },
        { "the paste or device flow", "--paste or --device" },
        { "the device flow again", "`mailconn auth --device` again" },
        { "use the device flow", "use `mailconn auth --device`" },
        { "give its path explicitly or in $MAILCONN_CONFIG", "name it with --config or $MAILCONN_CONFIG" },
    };
    static const char srv[] = "authorize server ";
    const char *p = hint;
    while (*p) {
        if (strncmp(p, srv, sizeof(srv) - 1) == 0) {
            const char *n = p + sizeof(srv) - 1, *e = n;
            while (isalnum((unsigned char)*e) || *e == '.' || *e == '_' || *e == '-')
                e++;
            while (e > n && e[-1] == '.')
                e--;                              /* a sentence's full stop */
            if (e > n) {
                bool again = strncmp(e, " again", 6) == 0;
                fprintf(b, "run `mailconn auth --server %.*s`%s", (int)(e - n), n,
                        again ? " to authorize again" : "");
                p = again ? e + 6 : e;
                continue;
            }
        }
        size_t i = 0;
        for (; i < sizeof(words) / sizeof(words[0]); i++) {
            size_t l = strlen(words[i].lib);
            if (strncmp(p, words[i].lib, l) == 0) {
                fputs(words[i].cli, b);
                p += l;
                break;
            }
        }
        if (i == sizeof(words) / sizeof(words[0]))
            fputc(*p++, b);
    }
    if (fclose(b) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Every line goes out through cli_print_line: what a server said (reply
 * texts, OAuth errors) reaches the terminal escaped. */
void cli_report(cli *c, const char *label, const mc_err *e, int code)
{
    const char *lb = label ? label : "", *sep = label ? ": " : "";
    if (!e) {
        cli_print_line(stderr, "mailconn: %s%s%s", lb, sep, mc_strerror(code));
        log_failure(c, MC_OUTCOME_TRANSIENT, NULL, mc_strerror(code));
        cli_outcome(c, MC_OUTCOME_TRANSIENT);
        return;
    }
    if (e->n_details) {
        for (size_t i = 0; i < e->n_details; i++)
            cli_print_line(stderr, "mailconn: %s", e->details[i]);
    } else {
        char *shown = report_reply(e);
        cli_print_line(stderr, "mailconn: %s%s%s: %s%s", lb, sep, mc_stage_name(e->stage),
                       e->outcome == MC_OUTCOME_UNKNOWN ? "outcome unknown: " : "",
                       shown ? shown : mc_strerror(e->code));
        free(shown);
    }
    for (size_t i = 0; i < e->n_rcpts; i++) {
        const mc_rcpt_result *r = &e->rcpts[i];
        if (r->accepted || !r->smtp_code)
            continue;
        cli_print_line(stderr, "mailconn: %s%srecipient %s refused: %d %s", lb, sep, r->address,
                       r->smtp_code, r->text ? r->text : r->enhanced);
    }
    if (e->hint) {
        char *h = cli_hint(e->hint);
        cli_print_line(stderr, "mailconn: hint: %s", h ? h : e->hint);
        free(h);
    } else if (e->action == MC_ACTION_AUTHORIZE || e->action == MC_ACTION_REAUTHORIZE) {
        cli_print_line(stderr, "mailconn: hint: run `mailconn auth`");
    }
    log_failure(c, e->outcome ? e->outcome : MC_OUTCOME_TRANSIENT, e, NULL);
    cli_outcome(c, e->outcome ? e->outcome : MC_OUTCOME_TRANSIENT);
}

static void log_sink(mc_log_level level, const char *line, void *payload)
{
    (void)payload;
    (void)level;
    cli_print_line(stderr, "%s", line);   /* escaped already; idempotent */
}

mc_context *cli_context(cli *c, unsigned flags, const char *server)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = c->config;
    o.plugin_dir = c->plugin_dir;
    o.flags = flags;
    o.server = server;
    o.log_level = c->verbose >= 2 ? MC_LOG_DEBUG : c->verbose == 1 ? MC_LOG_TRANSCRIPT : MC_LOG_WARN;
    o.log = c->verbose ? log_sink : NULL;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc < 0) {
        cli_report(c, NULL, err, rc);
        mc_error_free(err);
        return NULL;
    }
    return ctx;
}

/* `mailconn plugins`: every loaded plugin grouped by kind (transport, auth,
 * oauth-engine, proxy, token-store, tls-engine), then the built-ins; the
 * columns are as wide as their longest entry. */
typedef struct plugin_row {
    char *kind, *name, *version, *file;
} plugin_row;

typedef struct plugin_rows {
    plugin_row *v;
    size_t n;
    bool oom;
} plugin_rows;

static void collect_plugin(const char *kind, const char *name, const char *version,
                           const char *summary, const char *file, void *payload)
{
    (void)summary;
    plugin_rows *r = payload;
    plugin_row *v = realloc(r->v, (r->n + 1) * sizeof(*v));
    if (!v) {
        r->oom = true;
        return;
    }
    r->v = v;
    plugin_row *row = &v[r->n];
    row->kind = strdup(kind ? kind : "?");
    row->name = strdup(name ? name : "?");
    row->version = strdup(version ? version : "?");
    row->file = strdup(file ? file : "?");
    if (!row->kind || !row->name || !row->version || !row->file) {
        free(row->kind), free(row->name), free(row->version), free(row->file);
        r->oom = true;
        return;
    }
    r->n++;
}

static size_t kind_rank(const char *kind)
{
    static const char *const order[] = { "transport", "auth", "oauth-engine", "proxy",
                                         "token-store", "tls-engine" };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (strcmp(kind, order[i]) == 0)
            return i;
    return sizeof(order) / sizeof(order[0]);
}

static int row_cmp(const void *a, const void *b)
{
    const plugin_row *x = a, *y = b;
    size_t rx = kind_rank(x->kind), ry = kind_rank(y->kind);
    if (rx != ry)
        return rx < ry ? -1 : 1;
    int c = strcmp(x->kind, y->kind);
    return c ? c : strcmp(x->name, y->name);
}

/* The parts of the library that are no plugin file but answer for a kind. */
static const struct { const char *kind, *name; } builtins[] = {
    { "token-store", "file" },
};

static void print_plugins(plugin_rows *r)
{
    /* the built-ins are rows too, so they sort into their kind's group */
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        collect_plugin(builtins[i].kind, builtins[i].name, "(built in)", NULL, "", r);
    qsort(r->v, r->n, sizeof(*r->v), row_cmp);
    int wk = 0, wn = 0, wv = 0;
    for (size_t i = 0; i < r->n; i++) {
        int k = (int)strlen(r->v[i].kind), n = (int)strlen(r->v[i].name);
        int v = r->v[i].file[0] ? (int)strlen(r->v[i].version) : 0;
        wk = k > wk ? k : wk;
        wn = n > wn ? n : wn;
        wv = v > wv ? v : wv;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].file[0])
            printf("%-*s %-*s %-*s %s\n", wk, r->v[i].kind, wn, r->v[i].name, wv,
                   r->v[i].version, r->v[i].file);
        else
            printf("%-*s %-*s %s\n", wk, r->v[i].kind, wn, r->v[i].name, r->v[i].version);
    }
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].kind), free(r->v[i].name), free(r->v[i].version), free(r->v[i].file);
    free(r->v);
}

static int cmd_plugins(cli *c, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage(c, "plugins takes no arguments");
    mc_context *ctx = cli_context(c, MC_CONTEXT_NO_CONFIG, NULL);
    if (!ctx)
        return cli_exit(c);
    plugin_rows rows = { 0 };
    mc_context_plugins(ctx, collect_plugin, &rows);
    mc_context_free(ctx);
    if (rows.oom)
        fprintf(stderr, "mailconn: out of memory listing the plugins\n");
    print_plugins(&rows);
    return rows.oom ? 71 : cli_exit(c);
}

/* `servers --names`: one server name a line, for shell completion. The
 * config alone: no plugin, no token store, no network, so a TAB never
 * waits. */
static int print_server_names(cli *c)
{
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = c->config;
    o.flags = MC_CONTEXT_CONFIG_ONLY;
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc < 0) {
        cli_report(c, NULL, err, rc);
        mc_error_free(err);
        return cli_exit(c);
    }
    for (size_t i = 0; i < mc_context_server_count(ctx); i++)
        cli_print_line(stdout, "%s", mc_server_name(mc_context_server_at(ctx, i)));
    mc_context_free(ctx);
    return cli_exit(c);
}

static int cmd_servers(cli *c, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--names") == 0)
        return print_server_names(c);
    if (argc > 1)
        return cli_usage(c, "servers: unknown argument \"%s\" (usage: mailconn servers [--names])",
                         argv[1]);
    mc_context *ctx = cli_context(c, 0, NULL);
    if (!ctx)
        return cli_exit(c);
    for (size_t i = 0; i < mc_context_server_count(ctx); i++) {
        const mc_server *s = mc_context_server_at(ctx, i);
        printf("%c %-16s %s:%u %-8s auth=%s", mc_server_is_default(s) ? '*' : ' ',
               mc_server_name(s), mc_server_host(s), mc_server_port(s), mc_server_transport(s),
               mc_server_provider(s) ? mc_server_provider(s) : "none");
        if (mc_server_sender(s))
            printf(" sender=%s", mc_server_sender(s));
        int ts = cli_server_token_state(ctx, s);
        if (ts == MC_EFILE)
            cli_outcome(c, MC_OUTCOME_CONFIG);   /* the store refused: 78 */
        else if (ts < 0)
            cli_outcome(c, MC_OUTCOME_TRANSIENT); /* the store is down: 75 */
        putchar('\n');
    }
    /* the token store and its health: a plugin store is opened here */
    char store[512];
    mc_err *serr = NULL;
    if (mc_context_token_store(ctx, store, sizeof(store), &serr) < 0) {
        printf("token store: %s (unavailable: see the error above)\n", store);
        fflush(stdout);
        cli_print_line(stderr, "mailconn: %s", serr && serr->message ? serr->message
                                                                     : "token store unavailable");
        cli_outcome(c, serr ? serr->outcome : MC_OUTCOME_CONFIG);
    } else {
        printf("token store: %s\n", store);
    }
    mc_error_free(serr);
    mc_context_free(ctx);
    return cli_exit(c);
}

static int cmd_check(cli *c, int argc, char **argv)
{
    unsigned flags = MC_CONTEXT_ALL_PLUGINS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--secrets") == 0)
            flags |= MC_CONTEXT_SECRETS;
        else
            return cli_usage(c, "check: unknown argument \"%s\"", argv[i]);
    }
    mc_context *ctx = cli_context(c, flags, NULL);
    if (!ctx)
        return cli_exit(c);
    printf("%s: ok, %zu server%s\n", mc_context_config_path(ctx), mc_context_server_count(ctx),
           mc_context_server_count(ctx) == 1 ? "" : "s");
    mc_context_free(ctx);
    return cli_exit(c);
}

static int cmd_set_default(cli *c, int argc, char **argv)
{
    if (argc != 2)
        return cli_usage(c, "usage: mailconn set-default NAME");
    mc_context *ctx = cli_context(c, 0, NULL);
    if (!ctx)
        return cli_exit(c);
    mc_err *err = NULL;
    int rc = mc_context_set_default(ctx, argv[1], &err);
    if (rc < 0)
        cli_report(c, NULL, err, rc);
    else
        printf("default server: %s\n", argv[1]);
    mc_error_free(err);
    mc_context_free(ctx);
    return cli_exit(c);
}

int main(int argc, char **argv)
{
    cli c = { 0 };
    char *prog = basename(argv[0]);
    command_name = prog;
    if (strcmp(prog, "sendmail") == 0 || strcmp(prog, "mailq") == 0
        || strcmp(prog, "newaliases") == 0)
        return cmd_sendmail(&c, argc, argv);

    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "plugin-dir", required_argument, NULL, 'p' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    /* '+': stop at the command; its own flags are parsed by the command */
    while ((ch = getopt_long(argc, argv, "+c:p:vhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': c.config = optarg; break;
        case 'p': c.plugin_dir = optarg; break;
        case 'v': c.verbose++; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': printf("mailconn %s\n", MC_VERSION_STRING); return 0;
        default: return cli_usage(&c, "bad option");
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return EX_USAGE_;
    }
    char *cmd = argv[optind];
    command_name = cmd;
    int cargc = argc - optind;
    char **cargv = argv + optind;
    optind = 0;   /* reset getopt for the command's own parsing */
    if (strcmp(cmd, "plugins") == 0)
        return cmd_plugins(&c, cargc, cargv);
    if (strcmp(cmd, "servers") == 0)
        return cmd_servers(&c, cargc, cargv);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(&c, cargc, cargv);
    if (strcmp(cmd, "set-default") == 0)
        return cmd_set_default(&c, cargc, cargv);
    if (strcmp(cmd, "send") == 0)
        return cmd_send(&c, cargc, cargv);
    if (strcmp(cmd, "test") == 0)
        return cmd_test(&c, cargc, cargv);
    if (strcmp(cmd, "sendmail") == 0)
        return cmd_sendmail(&c, cargc, cargv);
    if (strcmp(cmd, "auth") == 0)
        return cmd_auth(&c, cargc, cargv);
    if (strcmp(cmd, "queue") == 0)
        return cmd_queue(&c, cargc, cargv);
    if (strcmp(cmd, "store") == 0)
        return cmd_store(&c, cargc, cargv);
    return cli_usage(&c, "unknown command \"%s\"", cmd);
}
