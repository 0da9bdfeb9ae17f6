/* secret: each source (inline, _file, _env, _command), its safety rules
 * and the command bound; the log module's redaction and escaping. */
/* temporary paths are short; snprintf truncation cannot happen here */
#if !defined(__clang__)   /* gcc only: temp-path snprintf calls */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>

#include "config.h"
#include "log.h"
#include "secret.h"

typedef struct fixture {
    char dir[512];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    /* mkdtemp() replaces the six X */
    snprintf(f->dir, sizeof(f->dir), "%s/mc-secret-" "X" "X" "X" "X" "X" "X",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    unsetenv("CREDENTIALS_DIRECTORY");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    unsetenv("CREDENTIALS_DIRECTORY");
    free(f);
    return 0;
}

static void write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* An "auth" object as the config module hands it to providers. */
typedef struct authcfg {
    mc_plugin_cfg cfg;
} authcfg;

static void auth_new(authcfg *a, const char *json)
{
    a->cfg.obj = json_tokener_parse(json);
    assert_non_null(a->cfg.obj);
    a->cfg.path = strdup("servers[0].auth");
    a->cfg.diag = NULL;
}

static void auth_free(authcfg *a)
{
    json_object_put(a->cfg.obj);
    free(a->cfg.path);
}

/* The context secrets are registered in. */
static mc_host_ctx thc;

/* Resolve `name` from `json`; on failure *msg gets the error message. */
static int resolve(const char *json, const char *name, char **out, char **msg)
{
    authcfg a;
    auth_new(&a, json);
    mc_err *err = NULL;
    int rc = mc__secret_resolve(&thc, &a.cfg, name, out, &err);
    if (msg)
        *msg = err ? strdup(err->message) : NULL;
    if (rc < 0) {
        assert_non_null(err);
        assert_int_equal(err->code, rc);
        assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
        assert_int_equal(err->stage, MC_STAGE_CONFIG);
    }
    mc_error_free(err);
    auth_free(&a);
    return rc;
}

static void test_absent_is_not_an_error(void **state)
{
    (void)state;
    char *v = (char *)"sentinel";
    assert_int_equal(resolve("{\"provider\":\"basic\",\"user\":\"u\"}", "password", &v, NULL), 0);
    assert_null(v);
    mc__secret_free(NULL);
}

static void test_inline_is_registered_for_redaction(void **state)
{
    (void)state;
    char *v = NULL;
    assert_int_equal(resolve("{\"password\":\"inline-Pa55word\"}", "password", &v, NULL), 0);
    assert_string_equal(v, "inline-Pa55word");
    char *red = mc__redact_dup(&thc, "AUTH with inline-Pa55word now");
    assert_string_equal(red, "AUTH with <redacted> now");
    free(red);
    mc__secret_free(v);
}

static void test_two_sources_refused(void **state)
{
    (void)state;
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve("{\"password\":\"a\",\"password_env\":\"X\"}", "password", &v, &msg),
                     MC_ESECRET);
    assert_null(v);
    assert_string_equal(msg, "servers[0].auth: \"password\" and \"password_env\" are both set; "
                             "use exactly one source for the password");
    free(msg);
}

static void test_file_0600_first_line(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], json[PATH_MAX];
    snprintf(path, sizeof(path), "%s/pw", f->dir);
    write_file(path, "file-secret-1\r\nsecond line\n", 0600);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    char *v = NULL;
    assert_int_equal(resolve(json, "password", &v, NULL), 0);
    assert_string_equal(v, "file-secret-1");
    mc__secret_free(v);

    /* no newline at all: the whole file */
    write_file(path, "no-newline-secret", 0400);
    assert_int_equal(resolve(json, "password", &v, NULL), 0);
    assert_string_equal(v, "no-newline-secret");
    mc__secret_free(v);
}

static void test_file_group_readable_refused(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], json[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/pw", f->dir);
    snprintf(json, sizeof(json), "{\"client_secret_file\":\"%s\"}", path);
    char *v = NULL, *msg = NULL;

    write_file(path, "s3cr3t\n", 0644);
    assert_int_equal(resolve(json, "client_secret", &v, &msg), MC_ESECRET);
    assert_null(v);
    snprintf(want, sizeof(want), "servers[0].auth.client_secret_file: \"%s\" is readable by group "
                                 "or others (mode 0644); chmod 600 it", path);
    assert_string_equal(msg, want);
    free(msg);

    write_file(path, "s3cr3t\n", 0640);
    assert_int_equal(resolve(json, "client_secret", &v, &msg), MC_ESECRET);
    assert_non_null(strstr(msg, "(mode 0640)"));
    free(msg);
}

static void test_file_under_credentials_directory(void **state)
{
    fixture *f = *state;
    char creds[PATH_MAX], twin[PATH_MAX], path[PATH_MAX], json[PATH_MAX];
    snprintf(creds, sizeof(creds), "%s/creds", f->dir);
    snprintf(twin, sizeof(twin), "%s/creds2", f->dir);
    assert_int_equal(mkdir(creds, 0700), 0);
    assert_int_equal(mkdir(twin, 0700), 0);
    setenv("CREDENTIALS_DIRECTORY", creds, 1);

    snprintf(path, sizeof(path), "%s/relay", creds);
    write_file(path, "cred-secret\n", 0644);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve(json, "password", &v, NULL), 0);
    assert_string_equal(v, "cred-secret");
    mc__secret_free(v);

    /* a folder whose name merely starts the same is not under it */
    snprintf(path, sizeof(path), "%s/relay", twin);
    write_file(path, "cred-secret\n", 0644);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
    assert_non_null(strstr(msg, "readable by group or others"));
    free(msg);
}

static void test_file_missing_and_empty(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], json[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/none", f->dir);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: cannot read \"%s\": %s", path,
             strerror(ENOENT));
    assert_string_equal(msg, want);
    free(msg);

    write_file(path, "\n", 0600);
    assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: \"%s\" is empty", path);
    assert_string_equal(msg, want);
    free(msg);
}

static void test_env(void **state)
{
    (void)state;
    char *v = NULL, *msg = NULL;
    setenv("MC_TEST_SECRET", "env-secret-42", 1);
    assert_int_equal(resolve("{\"password_env\":\"MC_TEST_SECRET\"}", "password", &v, NULL), 0);
    assert_string_equal(v, "env-secret-42");
    mc__secret_free(v);

    setenv("MC_TEST_SECRET", "", 1);
    assert_int_equal(resolve("{\"password_env\":\"MC_TEST_SECRET\"}", "password", &v, &msg),
                     MC_ESECRET);
    assert_string_equal(msg, "servers[0].auth.password_env: environment variable MC_TEST_SECRET is empty");
    free(msg);

    unsetenv("MC_TEST_SECRET");
    assert_int_equal(resolve("{\"password_env\":\"MC_TEST_SECRET\"}", "password", &v, &msg),
                     MC_ESECRET);
    assert_string_equal(msg, "servers[0].auth.password_env: environment variable MC_TEST_SECRET is not set");
    free(msg);
    assert_null(v);
}

static void test_command_first_line(void **state)
{
    (void)state;
    char *v = NULL;
    assert_int_equal(resolve("{\"client_secret_command\":\"printf 'cmd-secret-7\\\\r\\\\nnext\\\\n'\"}",
                             "client_secret", &v, NULL), 0);
    assert_string_equal(v, "cmd-secret-7");
    char *red = mc__redact_dup(&thc, "x=cmd-secret-7");
    assert_string_equal(red, "x=<redacted>");
    free(red);
    mc__secret_free(v);
}

static void test_command_nonzero_exit(void **state)
{
    (void)state;
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve("{\"password_command\":\"echo printed-anyway; exit 3\"}", "password",
                             &v, &msg), MC_ESECRET);
    assert_null(v);
    assert_string_equal(msg, "servers[0].auth.password_command: command exited with status 3");
    free(msg);

    mc_err *err = NULL;
    assert_int_equal(mc__secret_command("kill -9 $$", 5000, &v, &err), MC_ESECRET);
    assert_string_equal(err->message, "command was killed by signal 9");
    mc_error_free(err);
    err = NULL;

    assert_int_equal(mc__secret_command("true", 5000, &v, &err), MC_ESECRET);
    assert_string_equal(err->message, "command printed nothing");
    mc_error_free(err);
}

static void test_command_stdin_is_not_ours(void **state)
{
    (void)state;
    /* cat reads stdin: /dev/null ends it at once, whatever the test's
     * stdin is (a terminal would otherwise block until the bound) */
    char *v = NULL;
    mc_err *err = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(mc__secret_command("cat; echo after-cat", 5000, &v, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_string_equal(v, "after-cat");
    assert_true(b.tv_sec - a.tv_sec < 4);
    mc__secret_free(v);
}

/* The state letter of /proc/<pid>/stat, or 0 when the process is gone. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

static void test_command_killed_at_bound(void **state)
{
    fixture *f = *state;
    char pidfile[PATH_MAX], cmd[2 * PATH_MAX];
    snprintf(pidfile, sizeof(pidfile), "%s/pid", f->dir);
    /* the shell starts a grandchild that never finishes and waits for it */
    snprintf(cmd, sizeof(cmd), "sleep 300 & echo $! > '%s'; wait", pidfile);

    char *v = NULL;
    mc_err *err = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(mc__secret_command(cmd, 1000, &v, &err), MC_ESECRET);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_null(v);
    assert_string_equal(err->message, "command did not finish within 1 s and was killed");
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    mc_error_free(err);
    double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(took >= 0.9);
    assert_true(took < 5.0);

    /* the whole process group got SIGKILL: the grandchild is gone or a
     * zombie waiting for its new parent (delivery is asynchronous: allow
     * it up to 5 s, checking every 10 ms) */
    FILE *fp = fopen(pidfile, "r");
    assert_non_null(fp);
    int gpid = 0;
    assert_int_equal(fscanf(fp, "%d", &gpid), 1);
    fclose(fp);
    char st = proc_state((pid_t)gpid);
    for (int waited = 0; waited < 5000 && !(st == 0 || st == 'Z' || st == 'X'); waited += 10) {
        poll(NULL, 0, 10);
        st = proc_state((pid_t)gpid);
    }
    assert_true(st == 0 || st == 'Z' || st == 'X');
}

static void test_command_bound_in_ms(void **state)
{
    (void)state;
    char *v = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__secret_command("exec sleep 300", 300, &v, &err), MC_ESECRET);
    assert_string_equal(err->message, "command did not finish within 300 ms and was killed");
    mc_error_free(err);
}

/* A first line of 64 KiB is the limit: one byte more is an error, not a
 * secret cut short (issue 9). */
static void test_command_line_over_64k_refused(void **state)
{
    (void)state;
    char *v = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__secret_command("head -c 65536 /dev/zero | tr '\\0' a; echo", 5000, &v,
                                        &err), 0);
    assert_int_equal(strlen(v), 65536);
    mc__secret_free(v);
    v = NULL;
    assert_int_equal(mc__secret_command("head -c 65536 /dev/zero | tr '\\0' a; printf '\\r\\n'",
                                        5000, &v, &err), 0);
    assert_int_equal(strlen(v), 65536);
    mc__secret_free(v);
    v = NULL;
    /* one more byte, with or without a newline, and far more (the child is
     * still read to its end) */
    static const char *const over[] = {
        "head -c 65537 /dev/zero | tr '\\0' a; echo",
        "head -c 65537 /dev/zero | tr '\\0' a",
        "head -c 3000000 /dev/zero | tr '\\0' a",
    };
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        assert_int_equal(mc__secret_command(over[i], 5000, &v, &err), MC_ESECRET);
        assert_null(v);
        assert_string_equal(err->message, "the command's first line is longer than 64 KiB");
        mc_error_free(err);
        err = NULL;
    }
    /* through a config key: named by its JSON path */
    char *msg = NULL;
    assert_int_equal(resolve("{\"password_command\":\"head -c 70000 /dev/zero | tr '\\\\0' b\"}",
                             "password", &v, &msg), MC_ESECRET);
    assert_string_equal(msg, "servers[0].auth.password_command: the command's first line is "
                             "longer than 64 KiB");
    free(msg);
}

static void test_file_line_over_64k_refused(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], json[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/pw", f->dir);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    char *big = malloc(65538 + 1);
    assert_non_null(big);
    memset(big, 'p', 65536);
    memcpy(big + 65536, "\n", 2);
    write_file(path, big, 0600);
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve(json, "password", &v, NULL), 0);
    assert_int_equal(strlen(v), 65536);
    mc__secret_free(v);
    v = NULL;
    memcpy(big + 65536, "pp", 3);
    write_file(path, big, 0600);
    assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
    assert_null(v);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: \"%s\": the first line is longer "
                                 "than 64 KiB", path);
    assert_string_equal(msg, want);
    free(msg);
    free(big);
}

/* A secret file others could change is not the user's secret (issue 9):
 * group- or other-writable, or in a folder others can write. */
static void test_file_others_can_change_refused(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], json[PATH_MAX], want[3 * PATH_MAX], sub[PATH_MAX];
    snprintf(path, sizeof(path), "%s/pw", f->dir);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    char *v = NULL, *msg = NULL;
    static const mode_t modes[] = { 0620, 0602, 0622 };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(path, "s3cr3t\n", modes[i]);
        assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
        assert_null(v);
        snprintf(want, sizeof(want), "servers[0].auth.password_file: %s: writable by group or "
                                     "others (mode %04o): not trusted (others could change it)",
                 path, (unsigned)modes[i]);
        assert_string_equal(msg, want);
        free(msg);
    }
    /* 0600 in a folder others can write (not sticky) */
    snprintf(sub, sizeof(sub), "%s/open", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/pw", sub);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    write_file(path, "s3cr3t\n", 0600);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(resolve(json, "password", &v, &msg), MC_ESECRET);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: %s: the folder of %s is writable "
                                 "by group or others (mode 0777): not trusted (others could "
                                 "change it)", sub, path);
    assert_string_equal(msg, want);
    free(msg);
    /* the same folder made the user's alone: accepted */
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(resolve(json, "password", &v, NULL), 0);
    assert_string_equal(v, "s3cr3t");
    mc__secret_free(v);
}

/* The one escaping function (core/log.c): what a terminal acts on becomes
 * \xHH; text, TAB, UTF-8 and backslashes stay (issue 9). */
static void test_escape(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        { "plain text\twith a tab", "plain text\twith a tab" },
        { "", "" },
        { "\x1b]0;pwn\x07 \x1b[2J", "\\x1b]0;pwn\\x07 \\x1b[2J" },
        { "cr\rlf\nnul-less \x01\x1f\x7f", "cr\\x0dlf\\x0anul-less \\x01\\x1f\\x7f" },
        /* C1 as UTF-8: U+0080, U+009B (CSI), U+009F; U+00A0 and later are text */
        { "\xc2\x80\xc2\x9b\xc2\x9f \xc2\xa0", "\\xc2\\x80\\xc2\\x9b\\xc2\\x9f \xc2\xa0" },
        { "Gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x93\xa7", "Gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x93\xa7" },
        /* invalid UTF-8: lone bytes, overlong, surrogate, past U+10FFFF, truncated */
        { "\xff\xfe\x80", "\\xff\\xfe\\x80" },
        { "\xc0\xaf \xe0\x80\xaf", "\\xc0\\xaf \\xe0\\x80\\xaf" },
        { "\xed\xa0\x80", "\\xed\\xa0\\x80" },
        { "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80" },
        { "end \xe2\x82", "end \\xe2\\x82" },
        { "\xe2\x82x", "\\xe2\\x82x" },
        /* a backslash is text; escaping twice changes nothing */
        { "C:\\dir \\x1b", "C:\\dir \\x1b" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = mc_text_escape(cases[i].in);
        assert_non_null(e);
        assert_string_equal(e, cases[i].out);
        char *twice = mc_text_escape(e);
        assert_string_equal(twice, e);
        free(twice);
        free(e);
    }
    assert_null(mc_text_escape(NULL));
    /* a NUL inside the length is escaped too */
    mc__buf b = MC__BUF_INIT;
    assert_int_equal(mc__escape_put(&b, "a\0b", 3), 0);
    assert_string_equal(b.data, "a\\x00b");
    mc__buf_free(&b);
}

/* Every log line reaches the sink escaped, and an error message is stored
 * escaped; the error's server_text stays as received. */
static char *last_line;
static void capture(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    (void)payload;
    free(last_line);
    last_line = strdup(line);
}

static void test_log_and_error_escaped(void **state)
{
    (void)state;
    mc__log_setup(&thc, MC_LOG_DEBUG, capture, NULL);
    mc__log(&thc, MC_LOG_TRANSCRIPT, "S: %s", "554 \x1b]0;pwn\x07 \x1b[2J");
    assert_string_equal(last_line, "S: 554 \\x1b]0;pwn\\x07 \\x1b[2J");
    mc__log_setup(&thc, MC_LOG_WARN, NULL, NULL);
    free(last_line);
    last_line = NULL;

    mc_err *err = NULL;
    mc__error_set(&err, MC_EOAUTH, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "token endpoint: %s",
                  "invalid_grant \x1b[2J\xc2\x9b");
    mc__error_reply(err, 554, "5.7.1 \x1b]0;pwn\x07");
    assert_string_equal(err->message, "token endpoint: invalid_grant \\x1b[2J\\xc2\\x9b");
    assert_string_equal(err->server_text, "5.7.1 \x1b]0;pwn\x07");
    mc_error_free(err);
}

static void test_wrong_type_not_shown(void **state)
{
    (void)state;
    char *v = NULL, *msg = NULL;
    assert_int_equal(resolve("{\"password\":[\"hunter2\"]}", "password", &v, &msg), MC_ESECRET);
    assert_string_equal(msg, "servers[0].auth.password: must be a string");
    assert_null(strstr(msg, "hunter2"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_absent_is_not_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_is_registered_for_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_sources_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_0600_first_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_group_readable_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_under_credentials_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_missing_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_first_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_nonzero_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_stdin_is_not_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_killed_at_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_bound_in_ms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type_not_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line_over_64k_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_line_over_64k_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_others_can_change_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_and_error_escaped, setup, teardown),
    };
    mc__hc_init(&thc, MC_LOG_WARN, NULL, NULL);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mc__hc_destroy(&thc);
    return rc;
}
