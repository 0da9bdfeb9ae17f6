/* settings.c — the backend of a product's "mail servers" settings page,
 * built on <mailconn/mailconn.h> alone.
 *
 * A product that embeds mailconn (a gateway, a ticketing system) keeps each
 * tenant's mail settings in its own database and shows them on a page with
 * "Add server", "Edit", "Delete", "Make default", "Send test email" and
 * "Connect account" (OAuth). This program is that page's backend as a
 * command line, one request per process, the way a web application's
 * request handlers would call the library:
 *
 *   settings --db FILE [--state DIR] show               the config text
 *   settings --db FILE [--state DIR] get NAME           one server, secrets as null
 *   settings --db FILE [--state DIR] put JSON|-         add or replace a server
 *   settings --db FILE [--state DIR] remove NAME
 *   settings --db FILE [--state DIR] default NAME       move the default mark
 *   settings check FILE                                 validate a whole config
 *   settings --db FILE [--state DIR] test NAME [TO]     "Send test email"
 *   settings --db FILE [--state DIR] send NAME|- TO SUBJECT TEXT
 *   settings --db FILE [--state DIR] oauth-begin NAME REDIRECT_URI
 *   settings callback-listen PORT [WAIT_S]              the OAuth redirect target
 *   settings --db FILE [--state DIR] oauth-finish NAME CALLBACK_URL
 *   settings --db FILE [--state DIR] status NAME        what is stored for a grant
 *   settings --db FILE [--state DIR] revoke NAME        "Disconnect account"
 *
 * The "database" is the file FILE: it holds the tenant's config as JSON
 * text. The program reads that text itself and gives it to the library as
 * mc_context_options.config_json, so mailconn never opens a config file;
 * after an edit it asks the library for the new text
 * (mc_context_config_json) and stores it back. In a real product those two
 * steps are a SELECT and an UPDATE in one transaction.
 *
 * --state DIR is the tenant's own state folder (OAuth tokens, refresh
 * locks, pending authorizations): give every tenant its own, or its own
 * token store (mc_context_options.token_store), and two tenants with a
 * server of the same name never see each other's tokens.
 *
 * Build:
 *   cc -std=gnu11 settings.c $(pkg-config --cflags --libs mailconn) -o settings
 *
 * Exit codes: 0 done, 64 bad command line, 66 the database file cannot be
 * read, otherwise mc_outcome_exit_code() of the library's error (78 a
 * config the library refused, 77 authentication refused, 75 try later...).
 * Errors go to stderr, one fact per line:
 *
 *   settings: put: servers[1].port: must be an integer 1..65535, got 70000
 *     code=ECONFIG stage=config
 *     diag: servers[1].port server=1 key=port: must be an integer 1..65535...
 *     action: <mc_action_name(err->action)>
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <mailconn/mailconn.h>

#define EXIT_USAGE    64
#define EXIT_NOINPUT  66
#define EXIT_SOFTWARE 70
#define EXIT_TEMPFAIL 75

#define DB_MAX (1024 * 1024)      /* a tenant's config is small; refuse more */

/* ------------------------------------------------------------ errors */

/* Show a library error the way a settings page would: the one-line message,
 * then the facts a UI keys on. For a config the library refused, each diag
 * names the server (its index in "servers") and the key, so the page can
 * put the message next to the right field. The action says what the user
 * must do, independent of any UI; a product maps it to its own button
 * ("Re-authorize", "Check the password"...). Everything here is escaped
 * already except server_text, which the server chose byte by byte. */
static void print_error(const char *what, int rc, const mc_err *err)
{
    if (!err) {   /* only out of memory leaves no record */
        fprintf(stderr, "settings: %s: %s\n", what, mc_strerror(rc));
        return;
    }
    fprintf(stderr, "settings: %s: %s\n", what, err->message ? err->message : mc_strerror(rc));
    fprintf(stderr, "  code=%s stage=%s", mc_error_name(err->code), mc_stage_name(err->stage));
    if (err->smtp_code)
        fprintf(stderr, " smtp=%d", err->smtp_code);
    if (err->enhanced[0])
        fprintf(stderr, " enhanced=%s", err->enhanced);
    fputc('\n', stderr);
    if (err->server_text) {
        char *text = mc_text_escape(err->server_text);   /* untrusted: escape first */
        if (text)
            fprintf(stderr, "  server said: %s\n", text);
        free(text);
    }
    for (size_t i = 0; i < err->n_diags; i++) {
        const mc_diag *d = &err->diags[i];
        fprintf(stderr, "  diag: %s server=%d key=%s: %s\n", d->path ? d->path : "",
                d->server, d->key ? d->key : "", d->message ? d->message : "");
    }
    if (err->n_diags == 0)   /* errors that are not about one field */
        for (size_t i = 0; i < err->n_details; i++)
            fprintf(stderr, "  detail: %s\n", err->details[i]);
    if (err->action != MC_ACTION_NONE)
        fprintf(stderr, "  action: %s\n", mc_action_name(err->action));
    if (err->hint)
        fprintf(stderr, "  hint: %s\n", err->hint);
}

/* The process exit code for a failed call, and the error released. */
static int fail(const char *what, int rc, mc_err *err)
{
    print_error(what, rc, err);
    int status = err ? mc_outcome_exit_code(err->outcome) : EXIT_SOFTWARE;
    mc_error_free(err);
    return status;
}

/* ------------------------------------------------------------ the "database" */

/* The tenant's config text, as a product would SELECT it. NULL with a
 * message on failure. The text may hold inline secrets (passwords): it is
 * wiped before it is freed (secret_free). */
static char *db_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "settings: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(DB_MAX + 1);
    size_t len = 0;
    ssize_t n = 1;
    while (text && len < DB_MAX && (n = read(fd, text + len, DB_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!text || n < 0 || len == DB_MAX) {
        fprintf(stderr, "settings: %s: %s\n", path,
                !text ? "out of memory" : n < 0 ? strerror(errno) : "too large");
        if (text)
            explicit_bzero(text, len);
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

static void secret_free(char *text)
{
    if (text)
        explicit_bzero(text, strlen(text));
    free(text);
}

/* Store the new config text, as a product would UPDATE its row: here a
 * temporary file beside the database, fsync, rename, so a crash leaves the
 * old text or the new one, never half of it. Mode 0600: it holds secrets. */
static int db_write(const char *path, const char *text)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        fprintf(stderr, "settings: %s: path too long\n", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "settings: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    int ok = off == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "settings: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* After an edit: the library's text of the whole config (key order kept,
 * secrets included: it is what the next request loads) back to the
 * database. */
static int save(mc_context *ctx, const char *db)
{
    char *text = NULL;
    int rc = mc_context_config_json(&text, ctx);
    if (rc < 0) {
        fprintf(stderr, "settings: config text: %s\n", mc_strerror(rc));
        return EXIT_SOFTWARE;
    }
    int w = db_write(db, text);
    explicit_bzero(text, strlen(text));
    mc_free(text);
    return w == 0 ? 0 : EXIT_TEMPFAIL;
}

/* ------------------------------------------------------------ the context */

/* The library's log lines, per context: each tenant's context has its own
 * sink and payload, so a multi-tenant process can file lines under the
 * tenant they belong to. Lines are redacted and escaped already. */
static void log_line(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    fprintf(stderr, "[%s] %s\n", (const char *)payload, line);
}

/* One request's context over the tenant's config text. one_server: prepare
 * only `server` (NULL: the default), as a send or a test needs no other;
 * else every server and every plugin, validated as a whole (what an editing
 * request wants, so that what it saves every later request can load). */
static int open_context(mc_context **ctx, const char *config_text, const char *state_dir,
                        const char *server, bool one_server)
{
    mc_context_options opts = MC_CONTEXT_OPTIONS_INIT;
    opts.config_json = config_text;      /* copied: no config file is read */
    opts.state_dir = state_dir;          /* NULL: $MAILCONN_STATE_DIR, XDG */
    opts.flags = one_server ? MC_CONTEXT_ONE_SERVER : MC_CONTEXT_ALL_PLUGINS;
    opts.server = server;
    opts.log_level = MC_LOG_WARN;
    opts.log = log_line;
    opts.log_payload = (void *)"mailconn";
    mc_err *err = NULL;
    int rc = mc_context_new(ctx, &opts, &err);
    if (rc < 0)
        return fail("config", rc, err);
    return 0;
}

/* ------------------------------------------------------------ editing */

/* Read a request body: the argument itself, or stdin for "-". */
static char *body_arg(const char *arg)
{
    if (strcmp(arg, "-") != 0)
        return strdup(arg);
    char *text = malloc(DB_MAX + 1);
    size_t len = text ? fread(text, 1, DB_MAX, stdin) : 0;
    if (!text || ferror(stdin) || len == DB_MAX) {
        fprintf(stderr, "settings: stdin: %s\n", text ? "unreadable or too large" : "out of memory");
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* "Save" on the edit form: add the server, or replace the one with its
 * "name". The form does not show stored passwords, so it sends the secret
 * member as null ("password": null) unless the user typed a new one: the
 * library keeps the current secret. Nothing changes when the server is
 * refused; the diags say which field is wrong. */
static int cmd_put(mc_context *ctx, const char *db, const char *arg)
{
    char *json = body_arg(arg);
    if (!json)
        return EXIT_NOINPUT;
    mc_err *err = NULL;
    int rc = mc_context_put_server(ctx, json, &err);
    secret_free(json);
    if (rc < 0)
        return fail("put", rc, err);
    int status = save(ctx, db);
    if (status == 0)
        printf("saved: %zu servers\n", mc_context_server_count(ctx));
    return status;
}

static int cmd_remove(mc_context *ctx, const char *db, const char *name)
{
    mc_err *err = NULL;
    int rc = mc_context_remove_server(ctx, name, &err);
    if (rc < 0)
        return fail("remove", rc, err);
    int status = save(ctx, db);
    if (status == 0)
        printf("removed: %s\n", name);
    return status;
}

/* "Make default": with an in-memory config this changes memory only; the
 * product stores the new text itself. */
static int cmd_default(mc_context *ctx, const char *db, const char *name)
{
    mc_err *err = NULL;
    int rc = mc_context_set_default(ctx, name, &err);
    if (rc < 0)
        return fail("default", rc, err);
    int status = save(ctx, db);
    if (status == 0)
        printf("default: %s\n", name);
    return status;
}

/* What the edit form is filled with: the server's object, every inline
 * secret shown as null (never send a password to a browser). */
static int cmd_get(mc_context *ctx, const char *name)
{
    char *json = NULL;
    int rc = mc_server_json(&json, ctx, name);
    if (rc < 0) {
        fprintf(stderr, "settings: get: %s: %s\n", name, mc_strerror(rc));
        return rc == MC_ENOSERVER ? EXIT_USAGE : EXIT_SOFTWARE;
    }
    printf("%s\n", json);
    mc_free(json);
    return 0;
}

static int cmd_show(mc_context *ctx)
{
    char *json = NULL;
    int rc = mc_context_config_json(&json, ctx);
    if (rc < 0) {
        fprintf(stderr, "settings: show: %s\n", mc_strerror(rc));
        return EXIT_SOFTWARE;
    }
    printf("%s\n", json);
    explicit_bzero(json, strlen(json));
    mc_free(json);
    return 0;
}

/* Validate a whole config (an import, a restore from backup) without a
 * context: every error comes back, each as a diag. */
static int cmd_check(const char *path)
{
    char *text = db_read(path);
    if (!text)
        return EXIT_NOINPUT;
    mc_err *err = NULL;
    int rc = mc_config_check(text, MC_CONTEXT_ALL_PLUGINS, &err);
    secret_free(text);
    if (rc < 0)
        return fail("check", rc, err);
    printf("valid\n");
    return 0;
}

/* ------------------------------------------------------------ "Send test email" */

/* Each stage as it happens: the server's reply (escaped here: the server
 * chose its bytes) or, at the TLS stages, the library's TLS facts. A page
 * would stream these lines to the browser. */
static void test_line(mc_stage stage, const char *line, void *payload)
{
    (void)payload;
    char *text = mc_text_escape(line ? line : "");
    printf("stage %s: %s\n", mc_stage_name(stage), text ? text : "");
    fflush(stdout);
    free(text);
}

/* to NULL: connect, TLS, EHLO and AUTH only, no message. */
static int cmd_test(mc_context *ctx, const char *name, const char *to)
{
    mc_err *err = NULL;
    int rc = mc_server_test(ctx, name, to, test_line, NULL, &err);
    if (rc < 0)
        return fail("test", rc, err);
    printf("test passed: %s\n", name);
    return 0;
}

/* One message through a server ("-": the default), as the product sends
 * its notifications. From: is the server's sender.address. */
static int cmd_send(mc_context *ctx, const char *name, const char *to, const char *subject,
                    const char *text)
{
    mc_message *msg = NULL;
    mc_err *err = NULL;
    int rc = mc_message_new(&msg, &err);
    if (rc == 0)
        rc = mc_message_add_recipient(msg, MC_RCPT_TO, to, &err);
    if (rc == 0)
        rc = mc_message_set_subject(msg, subject, &err);
    if (rc == 0)
        rc = mc_message_set_text(msg, text, strlen(text), &err);
    if (rc == 0)
        rc = mc_send(ctx, name, msg, &err);
    int status = 0;
    if (rc == 0) {
        char *reply = mc_text_escape(mc_message_last_reply(msg));
        printf("sent: %s\n", reply ? reply : "");
        free(reply);
    } else {
        status = fail("send", rc, err);
    }
    mc_message_free(msg);
    return status;
}

/* ------------------------------------------------------------ "Connect account" (OAuth) */

/* Step 1, the "Connect" button: the library makes a PKCE verifier and a
 * state and keeps them in the tenant's token store as a pending
 * authorization (10 minutes); the page sends the browser to the URL.
 * redirect_uri is the product's own callback, registered with the
 * provider. Nothing has to survive in this process: step 3 may run in any
 * process sharing the store. */
static int cmd_oauth_begin(mc_context *ctx, const char *name, const char *redirect_uri)
{
    char *url = NULL;
    mc_err *err = NULL;
    int rc = mc_oauth_begin(&url, ctx, name, redirect_uri, &err);
    if (rc < 0)
        return fail("oauth-begin", rc, err);
    printf("%s\n", url);
    mc_free(url);
    return 0;
}

/* Step 3, the callback route: the whole URL the browser came back with.
 * The library takes the pending authorization its state names (once),
 * redeems the code and stores the tokens. A state it does not know, one
 * already used, or one expired stores nothing and is an error; so is the
 * person's "Deny" (action GRANT_CONSENT). */
static int cmd_oauth_finish(mc_context *ctx, const char *name, const char *callback_url)
{
    mc_err *err = NULL;
    int rc = mc_oauth_finish(ctx, name, callback_url, &err);
    if (rc < 0)
        return fail("oauth-finish", rc, err);
    printf("connected: %s\n", name);
    return 0;
}

static const char *when(long long t, char *buf, size_t size)
{
    if (t == 0)
        return "-";
    snprintf(buf, size, "%lld", t);
    return buf;
}

/* What the page shows next to a connected account: never a token. */
static int cmd_status(mc_context *ctx, const char *name)
{
    mc_token_status st;
    memset(&st, 0, sizeof(st));
    st.version = MC_TOKEN_STATUS_VERSION;   /* version first: set it */
    int rc = mc_oauth_get_status(&st, ctx, name);
    if (rc < 0) {
        fprintf(stderr, "settings: status: %s: %s\n", name, mc_strerror(rc));
        return rc == MC_ENOSERVER || rc == MC_ENOTSUP ? EXIT_USAGE : EXIT_SOFTWARE;
    }
    char a[32], b[32], c[32];
    printf("status %s: stored=%s identity_mismatch=%s access_expires=%s refresh_issued=%s "
           "refresh_used=%s days_left=%d warning=%s store=%s\n",
           name, st.stored ? "yes" : "no", st.identity_mismatch ? "yes" : "no",
           when(st.access_expires, a, sizeof(a)), when(st.refresh_issued, b, sizeof(b)),
           when(st.refresh_used, c, sizeof(c)), st.days_left, st.warning[0] ? st.warning : "-",
           st.store_code ? mc_error_name(st.store_code) : "ok");
    if (st.store_code)
        fprintf(stderr, "settings: status: token store: %s\n", st.store_message);
    return st.store_code ? EXIT_TEMPFAIL : 0;
}

/* "Disconnect account": revoked at the provider when it can, and the
 * stored record deleted. */
static int cmd_revoke(mc_context *ctx, const char *name)
{
    mc_err *err = NULL;
    int rc = mc_oauth_revoke(ctx, name, &err);
    if (rc < 0)
        return fail("revoke", rc, err);
    printf("revoked: %s\n", name);
    return 0;
}

/* ------------------------------------------------------------ step 2: the callback listener */

/* A product's web server has a callback route already; this example has
 * none, so it brings the smallest one: HTTP on 127.0.0.1:PORT (0: any),
 * for one redirect. It prints "listening URL" (the redirect_uri to give
 * oauth-begin), waits at most WAIT_S seconds, answers the browser, prints
 * "callback URL" with the whole URL it came back with, and exits. The URL
 * carries the authorization code: it goes to mc_oauth_finish and nowhere
 * else (a real product does not log it). Loopback HTTP is what RFC 8252
 * allows for a redirect; a product's public callback would be HTTPS. */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(long long deadline)
{
    long long left = deadline - now_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

static void http_reply(int fd, const char *status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
                     status, strlen(body));
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n)
        (void)send(fd, body, strlen(body), MSG_NOSIGNAL);
}

/* Read one request head within the deadline; its target ("/?code=..")
 * copied to target. @return 0, or -1 (not a GET we want, or too slow). */
static int http_target(int fd, long long deadline, char *target, size_t size)
{
    char req[8192];
    size_t len = 0;
    while (len < sizeof(req) - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, remaining(deadline)) <= 0)
            return -1;
        ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    /* "GET <target> HTTP/1.1": an origin-form target, printable ASCII only */
    if (strncmp(req, "GET /", 5) != 0)
        return -1;
    const char *t = req + 4, *end = strchr(t, ' ');
    if (!end || (size_t)(end - t) >= size)
        return -1;
    for (const char *c = t; c < end; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return -1;
    memcpy(target, t, (size_t)(end - t));
    target[end - t] = '\0';
    return 0;
}

static int cmd_callback_listen(const char *port_arg, const char *wait_arg)
{
    char *e;
    long port = strtol(port_arg, &e, 10);
    long wait_s = wait_arg ? strtol(wait_arg, &e, 10) : 120;
    if (*e || port < 0 || port > 65535 || wait_s < 1 || wait_s > 3600) {
        fprintf(stderr, "settings: callback-listen PORT [WAIT_S]: bad number\n");
        return EXIT_USAGE;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 8) != 0
        || getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "settings: callback-listen: %s\n", strerror(errno));
        if (ls >= 0)
            close(ls);
        return EXIT_TEMPFAIL;
    }
    unsigned bound = ntohs(sa.sin_port);
    printf("listening http://127.0.0.1:%u/\n", bound);
    fflush(stdout);

    long long deadline = now_ms() + wait_s * 1000;
    for (;;) {
        struct pollfd p = { .fd = ls, .events = POLLIN };
        if (poll(&p, 1, remaining(deadline)) <= 0) {
            if (now_ms() < deadline)
                continue;   /* EINTR, or the 60 s slice of a longer wait */
            fprintf(stderr, "settings: callback-listen: no redirect within %ld s\n", wait_s);
            close(ls);
            return EXIT_TEMPFAIL;
        }
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        char target[4096];
        long long conn_deadline = now_ms() + 10000;
        if (conn_deadline > deadline)
            conn_deadline = deadline;
        /* only the redirect: a request with state= (or error=) in its query */
        if (http_target(fd, conn_deadline, target, sizeof(target)) != 0
            || !strchr(target, '?') || (!strstr(target, "state=") && !strstr(target, "error="))) {
            http_reply(fd, "404 Not Found", "not an authorization redirect\n");
            close(fd);
            continue;
        }
        http_reply(fd, "200 OK", "Thank you: you may close this window and return to the "
                                 "settings page.\n");
        close(fd);
        close(ls);
        printf("callback http://127.0.0.1:%u%s\n", bound, target);
        return 0;
    }
}

/* ------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr,
            "usage: settings --db FILE [--state DIR] show | get NAME | put JSON|- | remove NAME\n"
            "                | default NAME | test NAME [TO] | send NAME|- TO SUBJECT TEXT\n"
            "                | oauth-begin NAME REDIRECT_URI | oauth-finish NAME CALLBACK_URL\n"
            "                | status NAME | revoke NAME\n"
            "       settings check FILE\n"
            "       settings callback-listen PORT [WAIT_S]\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    const char *db = NULL, *state_dir = NULL;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--state") == 0)
            state_dir = argv[i + 1];
        else
            return usage();
    }
    if (i >= argc)
        return usage();
    const char *cmd = argv[i];
    char **a = argv + i + 1;
    int n = argc - i - 1;

    /* the commands that need no tenant config */
    if (strcmp(cmd, "callback-listen") == 0)
        return n == 1 || n == 2 ? cmd_callback_listen(a[0], n == 2 ? a[1] : NULL) : usage();
    if (strcmp(cmd, "check") == 0)
        return n == 1 ? cmd_check(a[0]) : usage();

    /* The tenant's requests: how many arguments each takes, and whether
     * its first argument names the server it is about. Those prepare that
     * server only (the send path of a busy product loads nothing else); the
     * settings requests (show, get and the edits) load and validate the
     * whole config, so that what an edit saves every later request loads. */
    static const struct {
        const char *name;
        int min, max;
        bool names_server;
    } cmds[] = {
        { "show", 0, 0, false },
        { "get", 1, 1, false },
        { "put", 1, 1, false },
        { "remove", 1, 1, false },
        { "default", 1, 1, false },
        { "test", 1, 2, true },
        { "send", 4, 4, true },
        { "oauth-begin", 2, 2, true },
        { "oauth-finish", 2, 2, true },
        { "status", 1, 1, true },
        { "revoke", 1, 1, true },
    };
    size_t k = 0;
    while (k < sizeof(cmds) / sizeof(cmds[0]) && strcmp(cmds[k].name, cmd) != 0)
        k++;
    if (k == sizeof(cmds) / sizeof(cmds[0]) || n < cmds[k].min || n > cmds[k].max || !db)
        return usage();
    /* "-" as the server of `send`: the default (NULL) */
    const char *server = NULL;
    if (cmds[k].names_server && strcmp(a[0], "-") != 0)
        server = a[0];

    char *config_text = db_read(db);
    if (!config_text)
        return EXIT_NOINPUT;
    mc_context *ctx = NULL;
    int status = open_context(&ctx, config_text, state_dir,
                              cmds[k].names_server ? server : NULL, cmds[k].names_server);
    secret_free(config_text);   /* the context holds its own copy */
    if (status != 0)
        return status;

    if (strcmp(cmd, "show") == 0)
        status = cmd_show(ctx);
    else if (strcmp(cmd, "get") == 0)
        status = cmd_get(ctx, a[0]);
    else if (strcmp(cmd, "put") == 0)
        status = cmd_put(ctx, db, a[0]);
    else if (strcmp(cmd, "remove") == 0)
        status = cmd_remove(ctx, db, a[0]);
    else if (strcmp(cmd, "default") == 0)
        status = cmd_default(ctx, db, a[0]);
    else if (strcmp(cmd, "test") == 0)
        status = cmd_test(ctx, server, n == 2 ? a[1] : NULL);
    else if (strcmp(cmd, "send") == 0)
        status = cmd_send(ctx, server, a[1], a[2], a[3]);
    else if (strcmp(cmd, "oauth-begin") == 0)
        status = cmd_oauth_begin(ctx, server, a[1]);
    else if (strcmp(cmd, "oauth-finish") == 0)
        status = cmd_oauth_finish(ctx, server, a[1]);
    else if (strcmp(cmd, "status") == 0)
        status = cmd_status(ctx, server);
    else
        status = cmd_revoke(ctx, server);
    mc_context_free(ctx);
    return status;
}
