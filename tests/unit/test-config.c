/* config: strict JSON, every error with its path (table of bad configs),
 * defaults from providers and transports, the default rule, file-mode
 * rules, and the atomic save of set-default. */
/* temporary paths are short; snprintf truncation cannot happen here */
#if !defined(__clang__)   /* gcc only: temp-path snprintf calls */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "loader.h"
#include "log.h"

/* ------------------------------------------------------------- syscall doubles */

/* -Wl,--wrap=rename / --wrap=fsync: the core's calls come here. */
int __real_rename(const char *from, const char *to);
int __real_fsync(int fd);
int __wrap_rename(const char *from, const char *to);
int __wrap_fsync(int fd);

static int rename_fails;       /* errno to fail with, 0 = pass through */
static bool kill_in_fsync;     /* the child of the crash test dies here */
static int fsync_calls;

int __wrap_rename(const char *from, const char *to)
{
    if (rename_fails) {
        errno = rename_fails;
        return -1;
    }
    return __real_rename(from, to);
}

int __wrap_fsync(int fd)
{
    fsync_calls++;
    if (kill_in_fsync)
        raise(SIGKILL);
    return __real_fsync(fd);
}

/* ------------------------------------------------------------- fixtures */

static mc__registry *reg;

static int group_setup(void **state)
{
    (void)state;
    mc_err *err = NULL;
    if (mc__registry_new(&reg, NULL, &err) < 0) {
        print_error("registry: %s\n", err ? err->message : "?");
        mc_error_free(err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mc__registry_free(reg);
    return 0;
}

typedef struct fixture {
    char dir[512];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    /* mkdtemp() replaces the six X */
    snprintf(f->dir, sizeof(f->dir), "%s/mc-config-" "X" "X" "X" "X" "X" "X",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    rename_fails = 0;
    kill_in_fsync = false;
    fsync_calls = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    rename_fails = 0;
    free(f);
    return 0;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* malloc'd content of a file; *len its size. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    buf[st.st_size] = '\0';
    close(fd);
    if (len)
        *len = (size_t)st.st_size;
    return buf;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* parse + prepare with the real plugins */
static int load_text(const char *text, size_t len, mc__config **out, mc_err **err)
{
    int rc = mc__config_parse(out, text, len, err);
    if (rc == 0 && (rc = mc__config_prepare(*out, reg, NULL, err)) < 0) {
        mc__config_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------- the table */

#define MAX_ERRS 8

typedef struct bad_case {
    const char *what;
    const char *json;
    size_t      len;            /* 0: strlen(json) */
    const char *errors[MAX_ERRS];
} bad_case;

/* A valid server to build bad configs around. */
#define OKS "{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\"}"
#define ONE(x) "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\"," x "}]}"
#define BASIC "\"provider\":\"basic\",\"user\":\"u\",\"password_env\":\"PW\""

static const bad_case bad_cases[] = {
    /* ---- syntax */
    { "syntax error with line and column",
      "{\n  \"servers\": [\n    {\"name\": \"a\",, \"host\": \"x\"}\n  ]\n}\n", 0,
      { "config:3:18: JSON syntax error: quoted object property name expected" } },
    { "trailing comma",
      "{\"servers\": [" OKS ",]}", 0,
      { "config:1:69: JSON syntax error: unexpected character" } },
    { "trailing garbage",
      "{\"servers\": [" OKS "]} x", 0,
      { "config:1:71: JSON syntax error: unexpected character" } },
    { "second document",
      "{\"servers\": [" OKS "]}\n{}", 0,
      { "config:2:1: JSON syntax error: unexpected character" } },
    { "unterminated document",
      "{\"servers\": [", 0,
      { "config:1:14: JSON syntax error: unexpected end of input" } },
    { "empty file",
      "", 0,
      { "config:1:1: JSON syntax error: unexpected end of input" } },
    { "single-quoted string",
      "{'servers': []}", 0,
      { "config:1:2: JSON syntax error: strings must be in double quotes" } },
    { "NaN is not JSON",
      "{\"servers\": [{\"name\":\"a\",\"port\":NaN}]}", 0,
      { "config:1:33: JSON syntax error: invalid literal (expected a number, true, false or null)" } },
    { "raw NUL byte in the file",
      "{\"servers\": \0[]}", 16,
      { "config:1:13: JSON syntax error: NUL byte" } },
    { "raw control character inside a string",
      "{\"servers\": [{\"name\":\"a\tb\"}]}", 0,
      { "config:1:24: JSON syntax error: unescaped control character in a string" } },
    { "invalid UTF-8",
      "{\"servers\": [{\"name\":\"a\xff\"}]}", 0,
      { "config:1:24: JSON syntax error: invalid UTF-8 in a string" } },

    /* ---- duplicate keys */
    { "doubled default in one server",
      ONE("\"default\":true,\"default\":false"), 0,
      { "servers[0]: duplicate key \"default\"" } },
    { "duplicate key spelled with an escape",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"h\\u006fst\":\"i.example\",\"transport\":\"plain\"}]}", 0,
      { "servers[0]: duplicate key \"host\"" } },
    { "duplicate key at the top level and in auth",
      "{\"servers\":[],\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\","
      "\"auth\":{" BASIC ",\"user\":\"v\"}}]}", 0,
      { "top level: duplicate key \"servers\"", "servers[0].auth: duplicate key \"user\"" } },

    /* ---- shape of the document */
    { "top level not an object", "[]", 0,
      { "top level: must be an object with \"servers\", got []" } },
    { "servers missing", "{}", 0, { "servers: is required (an array of servers)" } },
    { "servers not an array", "{\"servers\":{\"name\":\"a\"}}", 0,
      { "servers: must be an array of servers, got {\"name\":\"a\"}" } },
    { "servers empty", "{\"servers\":[]}", 0, { "servers: must hold at least one server" } },
    { "server not an object", "{\"servers\":[5]}", 0, { "servers[0]: must be an object, got 5" } },
    { "unknown top-level key",
      "{\"servers\":[" OKS "],\"server\":[]}", 0,
      { "top level: unknown key \"server\" (did you mean \"servers\"?)" } },
    { "$schema must be a string",
      "{\"$schema\":1,\"servers\":[" OKS "]}", 0,
      { "$schema: must be a string, got 1" } },

    /* ---- server fields */
    { "port as a string", ONE("\"port\":\"587a\""), 0,
      { "servers[0].port: must be an integer 1..65535, got \"587a\"" } },
    { "port zero", ONE("\"port\":0"), 0,
      { "servers[0].port: must be an integer 1..65535, got 0" } },
    { "port too large", ONE("\"port\":65536"), 0,
      { "servers[0].port: must be an integer 1..65535, got 65536" } },
    { "port as a float", ONE("\"port\":587.0"), 0,
      { "servers[0].port: must be an integer 1..65535, got 587.0" } },
    { "port past int64", ONE("\"port\":99999999999999999999"), 0,
      { "servers[0].port: must be an integer 1..65535, got 18446744073709551615" } },
    { "host not a string", ONE("\"hostx\":1,\"host\":5"), 0,
      { "servers[0]: duplicate key \"host\"",
        "servers[0].host: must be a string, got 5",    /* json-c keeps the first key's place */
        "servers[0]: unknown key \"hostx\" (did you mean \"host\"?)" } },
    { "CR inside host",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\\r\\nRCPT TO:<x>\",\"transport\":\"plain\"}]}", 0,
      { "servers[0].host: must not contain NUL, CR or LF, got \"h.example\\r\\nRCPT TO:<x>\"" } },
    { "NUL inside a string (\\u0000)",
      ONE("\"sender\":{\"address\":\"me@x.example\",\"name\":\"Me\\u0000You\"}"), 0,
      { "servers[0].sender.name: must not contain NUL, CR or LF, got \"Me\\u0000You\"" } },
    { "host with a space", ONE("\"helo\":\"my host\""), 0,
      { "servers[0].helo: must be a host name or IP literal, got \"my host\"" } },
    { "transport not a string", ONE("\"transport\":[\"tls\"]"), 0,
      { "servers[0]: duplicate key \"transport\"",
        "servers[0].transport: must be a string, got [\"tls\"]" } },
    { "unknown transport",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"smoke\"}]}", 0,
      { "servers[0].transport: unknown transport \"smoke\" (plugins: plain, starttls, tls)" } },
    { "missing transport",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\"}]}", 0,
      { "servers[0].transport: is required: \"plain\", \"starttls\" or \"tls\"" } },
    { "missing host without auth",
      "{\"servers\":[{\"name\":\"a\",\"transport\":\"tls\"}]}", 0,
      { "servers[0].host: is required" } },
    { "missing host for a basic-auth server",
      "{\"servers\":[{\"name\":\"a\",\"transport\":\"tls\",\"auth\":{" BASIC "}}]}", 0,
      { "servers[0].host: is required (provider \"basic\" has no SMTP defaults)" } },
    { "unknown server key", ONE("\"hots\":\"x\""), 0,
      { "servers[0]: unknown key \"hots\" (did you mean \"host\"?)" } },
    { "unknown server key, no suggestion", ONE("\"colour\":\"red\""), 0,
      { "servers[0]: unknown key \"colour\"" } },
    { "timeout_s out of range", ONE("\"timeout_s\":0,\"idle_timeout_s\":3601"), 0,
      { "servers[0].timeout_s: must be an integer 1..3600, got 0",
        "servers[0].idle_timeout_s: must be an integer 0..3600, got 3601" } },
    { "limits out of range",
      ONE("\"max_recipients\":10001,\"max_connections\":0,\"refresh_margin_s\":-1"), 0,
      { "servers[0].max_recipients: must be an integer 1..10000, got 10001",
        "servers[0].max_connections: must be an integer 1..100, got 0",
        "servers[0].refresh_margin_s: must be an integer 0..86400, got -1" } },
    { "bad tls_min_version", ONE("\"tls_min_version\":\"1.1\""), 0,
      { "servers[0].tls_min_version: must be \"1.2\" or \"1.3\", got \"1.1\"" } },
    { "tls_min_version as a number", ONE("\"tls_min_version\":1.3"), 0,
      { "servers[0].tls_min_version: must be \"1.2\" or \"1.3\", got 1.3" } },
    { "bad address_case", ONE("\"address_case\":\"upper\""), 0,
      { "servers[0].address_case: must be \"insensitive\" or \"sensitive\", got \"upper\"" } },
    { "booleans must be booleans", ONE("\"default\":\"yes\",\"allow_plaintext_auth\":1"), 0,
      { "servers[0].default: must be true or false, got \"yes\"",
        "servers[0].allow_plaintext_auth: must be true or false, got 1" } },
    { "bad charset", ONE("\"charset\":\"utf 8\""), 0,
      { "servers[0].charset: must be a charset name such as \"UTF-8\", got \"utf 8\"" } },
    { "empty ca_file", ONE("\"ca_file\":\"\""), 0,
      { "servers[0].ca_file: must not be empty" } },

    /* ---- names */
    { "name with a slash",
      "{\"servers\":[{\"name\":\"../x\",\"host\":\"h.example\",\"transport\":\"plain\"}]}", 0,
      { "servers[0].name: must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot, got \"../x\"" } },
    { "name starting with a dot",
      "{\"servers\":[{\"name\":\".hidden\",\"host\":\"h.example\",\"transport\":\"plain\"}]}", 0,
      { "servers[0].name: must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot, got \".hidden\"" } },
    { "name too long",
      "{\"servers\":[{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
      "\"host\":\"h.example\",\"transport\":\"plain\"}]}", 0,
      { "servers[0].name: must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot, "
        "got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"" } },
    { "name missing",
      "{\"servers\":[{\"host\":\"h.example\",\"transport\":\"plain\"}]}", 0,
      { "servers[0].name: is required" } },
    { "duplicate names",
      "{\"servers\":[" OKS "," OKS "]}", 0,
      { "servers[1].name: duplicate name \"a\" (servers[0] has it too)" } },

    /* ---- the default rule */
    { "two defaults",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"plain\",\"default\":true},"
      "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"plain\",\"default\":true}]}", 0,
      { "servers: 2 servers are marked default (\"a\" and \"b\"); mark at most one" } },
    { "three defaults",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"plain\",\"default\":true},"
      "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"plain\",\"default\":true},"
      "{\"name\":\"c\",\"host\":\"h.example\",\"transport\":\"plain\",\"default\":true}]}", 0,
      { "servers: 3 servers are marked default (\"a\", \"b\" and \"c\"); mark at most one" } },

    /* ---- sender, aliases */
    { "unknown sender key and bad address",
      ONE("\"sender\":{\"adress\":\"me@x.example\",\"address\":\"me\",\"override\":\"no\"}"), 0,
      { "servers[0].sender: unknown key \"adress\" (did you mean \"address\"?)",
        "servers[0].sender.address: must be an address like user@example.org, got \"me\"",
        "servers[0].sender.override: must be true or false, got \"no\"" } },
    { "sender not an object", ONE("\"sender\":\"me@x.example\""), 0,
      { "servers[0].sender: must be an object, got \"me@x.example\"" } },
    { "aliases",
      "{\"servers\":[" OKS "],\"aliases\":{\"root\":\"admin\",\"a@b\":\"x@y.example\",\"ok\":5}}", 0,
      { "aliases.root: must be an address like user@example.org, got \"admin\"",
        "aliases: \"a@b\" is not a local name (no domain, no spaces)",
        "aliases.ok: must be a string, got 5" } },
    { "aliases not an object", "{\"servers\":[" OKS "],\"aliases\":[]}", 0,
      { "aliases: must be an object of local name -> address, got []" } },

    /* ---- auth */
    { "auth not an object", ONE("\"auth\":\"basic\""), 0,
      { "servers[0].auth: must be an object, got \"basic\"" } },
    { "provider missing", ONE("\"auth\":{\"user\":\"u\"}"), 0,
      { "servers[0].auth.provider: is required (basic, google, microsoft, manual or another provider plugin)" } },
    { "unknown provider", ONE("\"auth\":{\"provider\":\"yahoo\",\"user\":\"u\"}"), 0,
      { "servers[0].auth.provider: unknown provider \"yahoo\" (plugins: basic, google, manual, microsoft)" } },
    { "two sources for one secret",
      ONE("\"auth\":{\"provider\":\"basic\",\"user\":\"u\",\"password_file\":\"/p\",\"password_env\":\"PW\"}"), 0,
      { "servers[0].auth: \"password_file\" and \"password_env\" are both set; use exactly one source for the password" } },
    { "three sources for the client secret",
      ONE("\"auth\":{\"provider\":\"manual\",\"user\":\"u\",\"client_id\":\"c\","
          "\"token_url\":\"https://t.example/token\",\"authorization_url\":\"https://t.example/auth\","
          "\"client_secret\":\"s\",\"client_secret_env\":\"E\",\"client_secret_command\":\"pass x\"}"), 0,
      { "servers[0].auth: \"client_secret\", \"client_secret_env\" and \"client_secret_command\" are all set; "
        "use exactly one source for the client_secret" } },
    { "inline secret of the wrong type is not shown",
      ONE("\"auth\":{\"provider\":\"basic\",\"user\":\"u\",\"password\":[\"hunter2\"]}"), 0,
      { "servers[0].auth.password: must be a string" } },
    { "unknown auth key for basic",
      ONE("\"auth\":{" BASIC ",\"tenant\":\"common\"}"), 0,
      { "servers[0].auth: unknown key \"tenant\" for provider \"basic\"" } },
    { "unknown auth key with a suggestion",
      ONE("\"auth\":{" BASIC ",\"usr\":\"u\"}"), 0,
      { "servers[0].auth: unknown key \"usr\" for provider \"basic\" (did you mean \"user\"?)" } },
    { "auth over plain without allow_plaintext_auth",
      "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"plain\",\"auth\":{" BASIC "}}]}", 0,
      { "servers[0].auth: sending credentials over the plain transport needs \"allow_plaintext_auth\": true" } },
    { "manual provider missing endpoints",
      ONE("\"auth\":{\"provider\":\"manual\",\"user\":\"u\",\"client_id\":\"c\"}"), 0,
      { "servers[0].auth.token_url: required by the manual provider (the token endpoint)",
        "servers[0].auth: the manual provider needs authorization_url or device_authorization_url "
        "(unless \"grant\" is \"client_credentials\")" } },
    { "params not an object of strings",
      ONE("\"auth\":{\"provider\":\"google\",\"user\":\"u@gmail.com\",\"client_id\":\"c\","
          "\"params\":{\"prompt\":\"consent\",\"max_age\":5}}"), 0,
      { "servers[0].auth.params.max_age: must be a string, got 5" } },
    { "params not an object",
      ONE("\"auth\":{\"provider\":\"google\",\"user\":\"u@gmail.com\",\"client_id\":\"c\","
          "\"params\":[\"prompt=consent\"]}"), 0,
      { "servers[0].auth.params: must be an object of strings, got [\"prompt=consent\"]" } },
    { "auth timeout_s range",
      ONE("\"auth\":{\"provider\":\"google\",\"user\":\"u@gmail.com\",\"client_id\":\"c\",\"timeout_s\":601}"), 0,
      { "servers[0].auth.timeout_s: must be an integer 1..600, got 601" } },
    { "client_auth and grant values",
      ONE("\"auth\":{\"provider\":\"microsoft\",\"user\":\"u@x.example\",\"client_id\":\"c\","
          "\"client_auth\":\"jwt\",\"grant\":\"implicit\"}"), 0,
      { "servers[0].auth.client_auth: must be \"post\", \"basic\" or \"none\", got \"jwt\"",
        "servers[0].auth.grant: must be \"authorization_code\", \"device_code\" or \"client_credentials\", got \"implicit\"" } },
    { "mechanism the provider does not offer",
      ONE("\"auth\":{" BASIC ",\"mechanism\":\"XOAUTH2\"}"), 0,
      { "servers[0].auth.mechanism: must be \"PLAIN\" or \"LOGIN\", got \"XOAUTH2\"" } },

    /* ---- everything at once */
    { "several servers, several problems: all reported",
      "{\"servers\":[{\"name\":\"../x\",\"host\":\"h.example\",\"port\":\"587a\",\"transport\":\"tls\"},"
      "{\"name\":\"b\",\"transport\":\"plain\",\"auth\":{" BASIC "},\"default\":true,\"default\":true},"
      "{\"name\":\"c\",\"host\":\"h\\rx\",\"transport\":\"tls\",\"max_connections\":101}],"
      "\"colour\":1}", 0,
      { "servers[1]: duplicate key \"default\"",
        "servers[0].name: must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot, got \"../x\"",
        "servers[0].port: must be an integer 1..65535, got \"587a\"",
        "servers[2].host: must not contain NUL, CR or LF, got \"h\\rx\"",
        "servers[2].max_connections: must be an integer 1..100, got 101",
        "top level: unknown key \"colour\"" } },
    { "errors from prepare: all servers at once",
      "{\"servers\":[{\"name\":\"a\",\"transport\":\"smoke\"},"
      "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"plain\",\"auth\":{" BASIC "}},"
      "{\"name\":\"c\",\"host\":\"h.example\",\"transport\":\"tls\",\"auth\":{\"provider\":\"nope\"}}]}", 0,
      { "servers[0].host: is required",
        "servers[0].transport: unknown transport \"smoke\" (plugins: plain, starttls, tls)",
        "servers[1].auth: sending credentials over the plain transport needs \"allow_plaintext_auth\": true",
        "servers[2].auth.provider: unknown provider \"nope\" (plugins: basic, google, manual, microsoft)" } },
    /* ---- the top-level log (issue 12) */
    { "syslog: an unknown facility",
      "{\"syslog\":\"kern\",\"servers\":[" OKS "]}", 0,
      { "syslog: must be true, false or a facility name (\"mail\", \"user\", \"daemon\", "
        "\"local0\"..\"local7\"), got \"kern\"" } },
    { "syslog: a number",
      "{\"syslog\":1,\"servers\":[" OKS "]}", 0,
      { "syslog: must be true, false or a facility name (\"mail\", \"user\", \"daemon\", "
        "\"local0\"..\"local7\"), got 1" } },
    { "top-level log_file: empty, and a misspelt key",
      "{\"log_file\":\"\",\"sylog\":true,\"servers\":[" OKS "]}", 0,
      { "log_file: must not be empty",
        "top level: unknown key \"sylog\" (did you mean \"syslog\"?)" } },
    { "top-level log_file: not a string",
      "{\"log_file\":[],\"servers\":[" OKS "]}", 0,
      { "log_file: must be a string, got []" } },
};

static void test_bad_configs(void **state)
{
    (void)state;
    size_t failures = 0, n_cases = sizeof(bad_cases) / sizeof(bad_cases[0]);
    assert_true(n_cases >= 40);
    for (size_t i = 0; i < n_cases; i++) {
        const bad_case *c = &bad_cases[i];
        size_t len = c->len ? c->len : strlen(c->json);
        mc__config *cfg = NULL;
        mc_err *err = NULL;
        int rc = load_text(c->json, len, &cfg, &err);
        size_t want = 0;
        while (want < MAX_ERRS && c->errors[want])
            want++;
        bool ok = rc == MC_ECONFIG && err && err->code == MC_ECONFIG
                  && err->outcome == MC_OUTCOME_CONFIG && err->stage == MC_STAGE_CONFIG
                  && err->n_details == want && !cfg;
        for (size_t k = 0; ok && k < want; k++)
            ok = strcmp(err->details[k], c->errors[k]) == 0;
        if (ok) {
            /* the message is the first error and how many more */
            char msg[1024];
            if (want > 1)
                snprintf(msg, sizeof(msg), "%s (and %zu more)", c->errors[0], want - 1);
            else
                snprintf(msg, sizeof(msg), "%s", c->errors[0]);
            ok = strcmp(err->message, msg) == 0;
        }
        if (!ok) {
            failures++;
            print_error("case %zu \"%s\": rc %d, want %zu error(s)\n", i, c->what, rc, want);
            for (size_t k = 0; k < want; k++)
                print_error("  want: %s\n", c->errors[k]);
            for (size_t k = 0; err && k < err->n_details; k++)
                print_error("  got:  %s\n", err->details[k]);
            if (err)
                print_error("  message: %s\n", err->message);
        }
        mc_error_free(err);
        mc__config_free(cfg);
    }
    assert_int_equal(failures, 0);
}

/* ------------------------------------------------------------- good configs */

static const char *source_root(void)
{
    const char *s = getenv("MAILCONN_SOURCE_ROOT");
    return s && *s ? s : ".";
}

static mc__config *load_example(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/examples/%s", source_root(), name);
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    int rc = mc__config_load(&cfg, path, &err);
    if (rc == 0 && (rc = mc__config_prepare(cfg, reg, NULL, &err)) < 0) {
        mc__config_free(cfg);
        cfg = NULL;
    }
    if (rc < 0) {
        print_error("%s: %s\n", path, err ? err->message : "?");
        for (size_t k = 0; err && k < err->n_details; k++)
            print_error("  %s\n", err->details[k]);
    }
    mc_error_free(err);
    assert_int_equal(rc, 0);
    return cfg;
}

static void test_examples(void **state)
{
    (void)state;
    mc__config *cfg = load_example("gmail.json");
    mc_server *s = mc__config_server(cfg, NULL);
    assert_non_null(s);
    assert_string_equal(s->name, "gmail");
    assert_string_equal(s->host, "smtp.gmail.com");   /* provider defaults */
    assert_int_equal(s->port, 465);
    assert_string_equal(s->transport, "tls");
    assert_string_equal(s->auth_provider, "google");
    assert_string_equal(s->auth_user, "me@gmail.com");
    assert_true(s->is_default);
    assert_int_equal(s->max_connections, 10);
    mc__config_free(cfg);

    cfg = load_example("outlook.json");
    s = mc__config_server(cfg, "outlook");
    assert_non_null(s);
    assert_string_equal(s->host, "smtp.office365.com");
    assert_int_equal(s->port, 587);
    assert_string_equal(s->transport, "starttls");
    assert_int_equal(s->max_connections, 3);          /* Exchange Online's limit */
    assert_string_equal(s->auth_provider, "microsoft");
    mc__config_free(cfg);

    cfg = load_example("manual.json");
    s = mc__config_server(cfg, NULL);
    assert_non_null(s);
    assert_string_equal(s->host, "smtp.corp.example");
    assert_int_equal(s->port, 587);
    assert_string_equal(s->auth_provider, "manual");
    assert_string_equal(s->auth_mechanism, "OAUTHBEARER");
    mc__config_free(cfg);

    cfg = load_example("relay.json");
    s = mc__config_server(cfg, NULL);
    assert_non_null(s);
    assert_string_equal(s->name, "relay");
    assert_string_equal(s->transport, "starttls");
    assert_string_equal(s->ca_file, "/etc/ssl/private-ca.pem");
    assert_string_equal(s->auth_provider, "basic");
    assert_string_equal(s->auth_user, "app");
    assert_true(s->sender_override);
    assert_string_equal(mc__config_alias(cfg, "root"), "admin@example.org");
    assert_null(mc__config_alias(cfg, "nobody"));
    mc__config_free(cfg);

    cfg = load_example("local.json");
    s = mc__config_server(cfg, NULL);
    assert_non_null(s);
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, 2525);
    assert_string_equal(s->transport, "plain");
    assert_false(s->has_auth);
    assert_int_equal(s->timeout_s, 10);
    mc__config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    const char *json =
        "{\"servers\":["
        "{\"name\":\"p\",\"host\":\"h.example\",\"transport\":\"plain\"},"
        "{\"name\":\"t\",\"host\":\"h.example\",\"transport\":\"tls\"},"
        "{\"name\":\"s\",\"host\":\"h.example\",\"transport\":\"starttls\"},"
        "{\"name\":\"g\",\"transport\":\"starttls\",\"auth\":{\"provider\":\"google\","
        "\"user\":\"u@gmail.com\",\"client_id\":\"c\"}},"
        "{\"name\":\"m\",\"auth\":{\"provider\":\"microsoft\",\"user\":\"u@x.example\","
        "\"client_id\":\"c\"},\"max_connections\":7,\"port\":2587}"
        "]}";
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(load_text(json, strlen(json), &cfg, &err), 0);
    assert_null(err);
    assert_int_equal(cfg->n_servers, 5);
    assert_null(cfg->def);                      /* several servers, none marked */
    assert_null(mc__config_server(cfg, NULL));

    mc_server *p = mc__config_server(cfg, "p");
    assert_int_equal(p->port, 25);
    assert_int_equal(p->timeout_s, 60);
    assert_int_equal(p->max_recipients, 100);
    assert_int_equal(p->max_connections, 10);
    assert_int_equal(p->idle_timeout_s, 30);
    assert_int_equal(p->refresh_margin_s, 600);
    assert_int_equal(p->tls_min, 12);
    assert_int_equal(p->address_case, MC__CASE_INSENSITIVE);
    assert_string_equal(p->charset, "UTF-8");
    assert_false(p->allow_plaintext_auth);
    assert_null(p->helo);
    assert_false(p->is_default);
    assert_int_equal(mc__config_server(cfg, "t")->port, 465);
    assert_int_equal(mc__config_server(cfg, "s")->port, 587);

    /* google's 465 belongs to its tls default: with starttls the port is 587 */
    mc_server *g = mc__config_server(cfg, "g");
    assert_string_equal(g->host, "smtp.gmail.com");
    assert_string_equal(g->transport, "starttls");
    assert_int_equal(g->port, 587);

    /* explicit values win over the provider's */
    mc_server *m = mc__config_server(cfg, "m");
    assert_string_equal(m->host, "smtp.office365.com");
    assert_int_equal(m->port, 2587);
    assert_int_equal(m->max_connections, 7);
    mc__config_free(cfg);
}

static void test_default_rule(void **state)
{
    (void)state;
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    const char *lone = "{\"servers\":[{\"name\":\"only\",\"host\":\"h.example\",\"transport\":\"tls\"}]}";
    assert_int_equal(mc__config_parse(&cfg, lone, strlen(lone), &err), 0);
    assert_non_null(cfg->def);
    assert_string_equal(cfg->def->name, "only");
    assert_true(cfg->def->is_default);
    assert_false(cfg->def->default_marked);
    mc__config_free(cfg);

    const char *marked = "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"tls\"},"
                         "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"tls\",\"default\":true},"
                         "{\"name\":\"c\",\"host\":\"h.example\",\"transport\":\"tls\",\"default\":false}]}";
    assert_int_equal(mc__config_parse(&cfg, marked, strlen(marked), &err), 0);
    assert_string_equal(mc__config_server(cfg, NULL)->name, "b");
    assert_false(mc__config_server(cfg, "a")->is_default);
    assert_false(mc__config_server(cfg, "c")->is_default);
    assert_null(mc__config_server(cfg, "zz"));
    mc__config_free(cfg);
}

static void test_never_crashes_on_bytes(void **state)
{
    (void)state;
    /* a few hostile shapes; the fuzz target does the rest */
    const char *inputs[] = {
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"servers\":[{\"name\":\"a\",\"auth\":{\"provider\":{},\"params\":{\"\":1}}}]}",
        "{\"servers\":[{\"name\":\"a\",\"auth\":{\"provider\":\"basic\",\"password\":null}}]}",
        "{\"\\u0000\":1,\"\\u0000x\":2}",
        "{\"servers\":[null,true,\"x\",[],{}]}",
        "\"just a string\"",
        "-",
        "{\"a\":\"\\ud800\"}",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        mc__config *cfg = NULL;
        mc_err *err = NULL;
        int rc = load_text(inputs[i], strlen(inputs[i]), &cfg, &err);
        assert_int_equal(rc, MC_ECONFIG);
        assert_non_null(err);
        assert_true(err->n_details >= 1);
        mc_error_free(err);
    }
    /* every prefix of a good config: never a crash, never a success with
     * half a document */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/examples/manual.json", source_root());
    size_t len;
    char *text = slurp(path, &len);
    for (size_t n = 0; n + 2 < len; n++) {
        mc__config *cfg = NULL;
        mc_err *err = NULL;
        assert_int_equal(mc__config_parse(&cfg, text, n, &err), MC_ECONFIG);
        assert_null(cfg);
        mc_error_free(err);
    }
    free(text);
}

/* ------------------------------------------------------------- files */

static void test_inline_secret_file_mode(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    const char *json = "{\"servers\":[{\"name\":\"r\",\"host\":\"h.example\",\"transport\":\"tls\","
                       "\"auth\":{\"provider\":\"basic\",\"user\":\"u\",\"password\":\"inline-pw\"}}]}";
    mc__config *cfg = NULL;
    mc_err *err = NULL;

    write_file(path, json, strlen(json), 0644);
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    assert_null(cfg);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_int_equal(err->n_details, 1);
    snprintf(want, sizeof(want), "%s: holds an inline secret (servers[0].auth.password) and is "
             "readable by group or others (mode 0644); chmod 600 it, or use a _file, _env or "
             "_command source", path);
    assert_string_equal(err->details[0], want);
    mc_error_free(err);
    err = NULL;

    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    assert_non_null(strstr(err->message, "(mode 0640)"));
    mc_error_free(err);
    err = NULL;

    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(mc__config_load(&cfg, path, &err), 0);
    assert_true(cfg->inline_secret);
    assert_string_equal(cfg->path, path);
    mc__config_free(cfg);

    /* no inline secret: a world-readable file is fine */
    const char *env = "{\"servers\":[{\"name\":\"r\",\"host\":\"h.example\",\"transport\":\"tls\","
                      "\"auth\":{\"provider\":\"basic\",\"user\":\"u\",\"password_env\":\"PW\"}}]}";
    write_file(path, env, strlen(env), 0644);
    assert_int_equal(mc__config_load(&cfg, path, &err), 0);
    assert_false(cfg->inline_secret);
    mc__config_free(cfg);
}

/* A config others could change runs nothing (issue 9): refused before it
 * is parsed, naming the path and what is wrong; root-owned sticky folders
 * such as /tmp are fine for the user's own file. */
static void test_config_others_can_change(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], want[3 * PATH_MAX], sub[PATH_MAX], link[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    const char *json = "{\"servers\":[{\"name\":\"r\",\"host\":\"h.example\",\"transport\":\"tls\","
                       "\"auth\":{\"provider\":\"basic\",\"user\":\"u\","
                       "\"password_command\":\"echo pw\"}}]}";
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    static const mode_t modes[] = { 0666, 0620, 0602, 0660 };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(path, json, strlen(json), modes[i]);
        assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
        assert_null(cfg);
        assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
        assert_int_equal(err->stage, MC_STAGE_CONFIG);
        snprintf(want, sizeof(want), "%s: writable by group or others (mode %04o): config not "
                 "used (others could change it, and it can run commands)", path,
                 (unsigned)modes[i]);
        assert_string_equal(err->message, want);
        assert_non_null(err->hint);
        assert_non_null(strstr(err->hint, "chmod go-w"));
        mc_error_free(err);
        err = NULL;
    }
    /* the user's own 0600 file in a folder others can write */
    snprintf(sub, sizeof(sub), "%s/open", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/config.json", sub);
    write_file(path, json, strlen(json), 0600);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    snprintf(want, sizeof(want), "%s: the folder of %s is writable by group or others (mode "
             "0777): config not used (others could change it, and it can run commands)", sub, path);
    assert_string_equal(err->message, want);
    mc_error_free(err);
    err = NULL;
    /* a symlink in a safe folder to a file in that folder: the resolved
     * path's folders count too */
    snprintf(link, sizeof(link), "%s/link.json", f->dir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(mc__config_load(&cfg, link, &err), MC_ECONFIG);
    assert_non_null(strstr(err->message, "the folder of"));
    assert_non_null(strstr(err->message, "(mode 0777)"));
    mc_error_free(err);
    err = NULL;
    /* sticky: accepted only when root owns the folder (as /tmp) */
    assert_int_equal(chmod(sub, 01777), 0);
    int rc = mc__config_load(&cfg, link, &err);
    if (geteuid() == 0) {
        assert_int_equal(rc, 0);
        mc__config_free(cfg);
        cfg = NULL;
    } else {
        assert_int_equal(rc, MC_ECONFIG);
        assert_non_null(strstr(err->message, "(mode 1777)"));
        mc_error_free(err);
        err = NULL;
    }
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(mc__config_load(&cfg, link, &err), 0);
    mc__config_free(cfg);
    cfg = NULL;
    if (geteuid() == 0) {
        /* owned by another user (root may chown): refused; a root-owned
         * file is fine for anyone */
        assert_int_equal(chown(path, 64123, 64123), 0);
        assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
        snprintf(want, sizeof(want), "%s: owned by uid 64123, not by you (uid 0) or root: config "
                 "not used (others could change it, and it can run commands)", path);
        assert_string_equal(err->message, want);
        mc_error_free(err);
        err = NULL;
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(chown(sub, 64123, 64123), 0);
        assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
        assert_non_null(strstr(err->message, "the folder of"));
        assert_non_null(strstr(err->message, "is owned by uid 64123"));
        mc_error_free(err);
        err = NULL;
        assert_int_equal(chown(sub, 0, 0), 0);
    }
}

/* The secret files and ca_files a safe config names: the same rule, every
 * one reported with its JSON path; a missing one is left to where it is used. */
static void test_config_named_files_others_can_change(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], pw[PATH_MAX], ca[PATH_MAX], json[4 * PATH_MAX], want[3 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    snprintf(pw, sizeof(pw), "%s/pw", f->dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", f->dir);
    write_file(pw, "s3cr3t\n", 7, 0620);
    write_file(ca, "not a cert\n", 11, 0646);
    snprintf(json, sizeof(json),
             "{\"servers\":[{\"name\":\"r\",\"host\":\"h.example\",\"transport\":\"tls\","
             "\"ca_file\":\"%s\",\"auth\":{\"provider\":\"basic\",\"user\":\"u\","
             "\"password_file\":\"%s\"}},"
             "{\"name\":\"m\",\"host\":\"h.example\",\"transport\":\"tls\","
             "\"ca_file\":\"%s/missing.pem\"}]}", ca, pw, f->dir);
    write_file(path, json, strlen(json), 0600);
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    assert_null(cfg);
    assert_int_equal(err->n_details, 2);
    snprintf(want, sizeof(want), "servers[0].ca_file: %s: writable by group or others (mode "
             "0646): not trusted (others could change it)", ca);
    assert_string_equal(err->details[0], want);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: %s: writable by group or others "
             "(mode 0620): not trusted (others could change it)", pw);
    assert_string_equal(err->details[1], want);
    mc_error_free(err);
    err = NULL;
    assert_int_equal(chmod(pw, 0600), 0);
    assert_int_equal(chmod(ca, 0644), 0);
    assert_int_equal(mc__config_load(&cfg, path, &err), 0);
    mc__config_free(cfg);
    cfg = NULL;

    /* missing, in a folder others can write: someone could plant it */
    char open_dir[PATH_MAX];
    snprintf(open_dir, sizeof(open_dir), "%s/open", f->dir);
    assert_int_equal(mkdir(open_dir, 0700), 0);
    assert_int_equal(chmod(open_dir, 0777), 0);
    snprintf(json, sizeof(json),
             "{\"servers\":[{\"name\":\"m\",\"host\":\"h.example\",\"transport\":\"tls\","
             "\"ca_file\":\"%s/later.pem\"}]}", open_dir);
    write_file(path, json, strlen(json), 0600);
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    assert_int_equal(err->n_details, 1);
    snprintf(want, sizeof(want), "servers[0].ca_file: %s: the folder of %s/later.pem is writable "
             "by group or others (mode 0777): not trusted (others could change it)", open_dir,
             open_dir);
    assert_string_equal(err->details[0], want);
    mc_error_free(err);
}

static void test_load_missing(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/none.json", f->dir);
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_EFILE);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    snprintf(want, sizeof(want), "%s: cannot read the config: %s", path, strerror(ENOENT));
    assert_string_equal(err->message, want);
    assert_non_null(err->hint);                  /* says where mailconn looks */
    assert_non_null(strstr(err->hint, "$MAILCONN_CONFIG"));
    assert_null(strstr(err->hint, "--config"));   /* UI-neutral: no CLI option */
    mc_error_free(err);

    /* a syntax error names the file */
    write_file(path, "{\n,", 3, 0600);
    err = NULL;
    assert_int_equal(mc__config_load(&cfg, path, &err), MC_ECONFIG);
    snprintf(want, sizeof(want), "%s:2:1: JSON syntax error: quoted object property name expected", path);
    assert_string_equal(err->message, want);
    mc_error_free(err);
}

static void test_find(void **state)
{
    fixture *f = *state;
    char xdg[PATH_MAX], want[2 * PATH_MAX];
    char *p;

    p = mc__config_find("/explicit.json");
    assert_string_equal(p, "/explicit.json");
    free(p);

    setenv("MAILCONN_CONFIG", "/from/env.json", 1);
    p = mc__config_find(NULL);
    assert_string_equal(p, "/from/env.json");
    free(p);
    unsetenv("MAILCONN_CONFIG");

    snprintf(xdg, sizeof(xdg), "%s/xdg", f->dir);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    snprintf(want, sizeof(want), "%s/mailconn/config.json", xdg);
    p = mc__config_find(NULL);
    /* no file at all: the XDG path (unless this machine has /etc's) */
    if (access("/etc/mailconn/config.json", F_OK) != 0)
        assert_string_equal(p, want);
    free(p);
    assert_int_equal(mkdir(xdg, 0700), 0);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/mailconn", xdg);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(want, "{}", 2, 0600);
    p = mc__config_find(NULL);
    assert_string_equal(p, want);
    free(p);

    unsetenv("XDG_CONFIG_HOME");
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", f->dir, 1);
    p = mc__config_find(NULL);
    snprintf(want, sizeof(want), "%s/.config/mailconn/config.json", f->dir);
    if (access("/etc/mailconn/config.json", F_OK) != 0)
        assert_string_equal(p, want);
    free(p);
    if (old_home)
        setenv("HOME", old_home, 1);
    else
        unsetenv("HOME");
    free(old_home);
}

static void test_check_secrets(void **state)
{
    fixture *f = *state;
    char json[4 * PATH_MAX], want[2 * PATH_MAX];
    snprintf(json, sizeof(json),
             "{\"servers\":[{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"tls\","
             "\"ca_file\":\"%s/ca.pem\",\"auth\":{\"provider\":\"basic\",\"user\":\"u\","
             "\"password_file\":\"%s/pw\"}}]}", f->dir, f->dir);
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(load_text(json, strlen(json), &cfg, &err), 0);
    assert_int_equal(mc__config_check_secrets(cfg, &err), MC_ECONFIG);
    assert_int_equal(err->n_details, 2);
    snprintf(want, sizeof(want), "servers[0].ca_file: cannot read \"%s/ca.pem\": %s", f->dir,
             strerror(ENOENT));
    assert_string_equal(err->details[0], want);
    snprintf(want, sizeof(want), "servers[0].auth.password_file: cannot read \"%s/pw\": %s", f->dir,
             strerror(ENOENT));
    assert_string_equal(err->details[1], want);
    mc_error_free(err);
    err = NULL;

    snprintf(want, sizeof(want), "%s/ca.pem", f->dir);
    write_file(want, "x", 1, 0644);
    snprintf(want, sizeof(want), "%s/pw", f->dir);
    write_file(want, "pw-from-file\n", 13, 0600);
    assert_int_equal(mc__config_check_secrets(cfg, &err), 0);
    assert_null(err);
    mc__config_free(cfg);
}

/* ------------------------------------------------------------- set-default */

static const char two_servers[] =
    "{\n"
    "  \"$schema\": \"https://example.org/mailconn.schema.json\",\n"
    "  \"servers\": [\n"
    "    { \"name\": \"a\", \"host\": \"h.example\", \"transport\": \"tls\", \"default\": true,\n"
    "      \"log_file\": \"/var/log/mailconn/a.log\" },\n"
    "    { \"name\": \"b\", \"port\": 2525, \"host\": \"h.example\", \"transport\": \"plain\" }\n"
    "  ],\n"
    "  \"aliases\": { \"root\": \"admin@example.org\" }\n"
    "}\n";

/* What set-default "b" writes: key order kept, slashes unescaped, the old
 * mark gone, the new one appended to b. */
static const char two_servers_b[] =
    "{\n"
    "  \"$schema\": \"https://example.org/mailconn.schema.json\",\n"
    "  \"servers\": [\n"
    "    {\n"
    "      \"name\": \"a\",\n"
    "      \"host\": \"h.example\",\n"
    "      \"transport\": \"tls\",\n"
    "      \"log_file\": \"/var/log/mailconn/a.log\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"b\",\n"
    "      \"port\": 2525,\n"
    "      \"host\": \"h.example\",\n"
    "      \"transport\": \"plain\",\n"
    "      \"default\": true\n"
    "    }\n"
    "  ],\n"
    "  \"aliases\": {\n"
    "    \"root\": \"admin@example.org\"\n"
    "  }\n"
    "}\n";

static mc__config *load_path(const char *path)
{
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    if (mc__config_load(&cfg, path, &err) < 0)
        print_error("%s\n", err ? err->message : "?");
    mc_error_free(err);
    assert_non_null(cfg);
    return cfg;
}

static void test_set_default_moves_mark(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    write_file(path, two_servers, strlen(two_servers), 0640);

    mc__config *cfg = load_path(path);
    assert_string_equal(cfg->def->name, "a");
    mc_err *err = NULL;
    assert_int_equal(mc__config_set_default(cfg, "b", &err), 0);
    assert_null(err);
    assert_true(fsync_calls >= 1);
    /* in memory */
    assert_string_equal(mc__config_server(cfg, NULL)->name, "b");
    assert_false(mc__config_server(cfg, "a")->is_default);
    assert_true(mc__config_server(cfg, "b")->is_default);
    mc__config_free(cfg);

    /* on disk: exact text, mode kept, nothing else left in the folder */
    char *text = slurp(path, NULL);
    assert_string_equal(text, two_servers_b);
    free(text);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(count_entries(f->dir), 1);

    cfg = load_path(path);
    assert_string_equal(cfg->def->name, "b");
    /* and back: moving to the current default changes nothing */
    assert_int_equal(mc__config_set_default(cfg, "a", &err), 0);
    assert_int_equal(mc__config_set_default(cfg, "a", &err), 0);
    mc__config_free(cfg);
    cfg = load_path(path);
    assert_string_equal(cfg->def->name, "a");
    assert_false(mc__config_server(cfg, "b")->default_marked);
    mc__config_free(cfg);
}

static void test_set_default_unknown_server(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    write_file(path, two_servers, strlen(two_servers), 0600);
    mc__config *cfg = load_path(path);
    mc_err *err = NULL;
    assert_int_equal(mc__config_set_default(cfg, "zz", &err), MC_ENOSERVER);
    char want[2 * PATH_MAX];
    snprintf(want, sizeof(want), "no server named \"zz\" in %s", path);
    assert_string_equal(err->message, want);
    mc_error_free(err);
    assert_string_equal(cfg->def->name, "a");
    mc__config_free(cfg);
    char *text = slurp(path, NULL);
    assert_string_equal(text, two_servers);
    free(text);
}

static void test_set_default_symlink(void **state)
{
    fixture *f = *state;
    char real_dir[PATH_MAX], real[PATH_MAX], link[PATH_MAX];
    snprintf(real_dir, sizeof(real_dir), "%s/real", f->dir);
    assert_int_equal(mkdir(real_dir, 0700), 0);
    snprintf(real, sizeof(real), "%s/config.json", real_dir);
    snprintf(link, sizeof(link), "%s/link.json", f->dir);
    write_file(real, two_servers, strlen(two_servers), 0600);
    assert_int_equal(symlink(real, link), 0);

    mc__config *cfg = load_path(link);
    mc_err *err = NULL;
    assert_int_equal(mc__config_set_default(cfg, "b", &err), 0);
    mc__config_free(cfg);

    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));                  /* still a link */
    char *text = slurp(real, NULL);                    /* the target changed */
    assert_string_equal(text, two_servers_b);
    free(text);
    assert_int_equal(stat(real, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(count_entries(real_dir), 1);
    assert_int_equal(count_entries(f->dir), 2);        /* link + real/ */
}

static void test_set_default_rename_fails(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    write_file(path, two_servers, strlen(two_servers), 0644);
    mc__config *cfg = load_path(path);

    rename_fails = EIO;
    mc_err *err = NULL;
    assert_int_equal(mc__config_set_default(cfg, "b", &err), MC_EFILE);
    rename_fails = 0;
    char want[2 * PATH_MAX];
    snprintf(want, sizeof(want), "%s: cannot replace the file: %s", path, strerror(EIO));
    assert_string_equal(err->message, want);
    mc_error_free(err);

    /* the original is byte-identical, no temporary file is left, and the
     * context still has the old default */
    size_t len;
    char *text = slurp(path, &len);
    assert_int_equal(len, strlen(two_servers));
    assert_memory_equal(text, two_servers, len);
    free(text);
    assert_int_equal(count_entries(f->dir), 1);
    assert_string_equal(cfg->def->name, "a");
    assert_true(mc__config_server(cfg, "a")->is_default);
    assert_false(mc__config_server(cfg, "b")->is_default);
    mc__config_free(cfg);
}

static void test_set_default_killed_in_fsync(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    write_file(path, two_servers, strlen(two_servers), 0644);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mc__config *cfg = NULL;
        if (mc__config_load(&cfg, path, NULL) < 0)
            _exit(2);
        kill_in_fsync = true;
        mc__config_set_default(cfg, "b", NULL);
        _exit(0);                 /* reached only if fsync was never called */
    }
    int status = 0;
    pid_t r = 0;
    for (int waited = 0; waited < 10000 && (r = waitpid(pid, &status, WNOHANG)) == 0; waited += 10)
        poll(NULL, 0, 10);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the child did not die within 10 s");
    }
    assert_int_equal(r, pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    /* the file is the old one, whole */
    size_t len;
    char *text = slurp(path, &len);
    assert_int_equal(len, strlen(two_servers));
    assert_memory_equal(text, two_servers, len);
    free(text);
    mc__config *cfg = load_path(path);
    assert_string_equal(cfg->def->name, "a");
    mc__config_free(cfg);
}

static void test_file_replace_new_file(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tok.json", f->dir);
    mc_err *err = NULL;
    assert_int_equal(mc__file_replace(path, "{}\n", 3, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char *text = slurp(path, NULL);
    assert_string_equal(text, "{}\n");
    free(text);
    /* an explicit mode replaces the old one; -1 keeps it */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(mc__file_replace(path, "[]\n", 3, -1, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(mc__file_replace(path, "1\n", 2, 0600, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(count_entries(f->dir), 1);

    /* a folder that does not exist: an error naming the file */
    char bad[PATH_MAX];
    snprintf(bad, sizeof(bad), "%s/no/such/file", f->dir);
    assert_int_equal(mc__file_replace(bad, "x", 1, 0600, &err), MC_EFILE);
    assert_non_null(strstr(err->message, bad));
    mc_error_free(err);
}

/* The top-level "log_file" and "syslog" (issue 12): parsed beside "servers". */
static void test_top_log_keys(void **state)
{
    (void)state;
    static const struct { const char *json; const char *log_file; int facility; } cases[] = {
        { "{\"servers\":[" OKS "]}", NULL, -1 },
        { "{\"syslog\":true,\"servers\":[" OKS "]}", NULL, LOG_MAIL },
        { "{\"syslog\":false,\"log_file\":\"/var/log/m.log\",\"servers\":[" OKS "]}",
          "/var/log/m.log", -1 },
        { "{\"syslog\":\"mail\",\"servers\":[" OKS "]}", NULL, LOG_MAIL },
        { "{\"syslog\":\"user\",\"servers\":[" OKS "]}", NULL, LOG_USER },
        { "{\"syslog\":\"daemon\",\"servers\":[" OKS "]}", NULL, LOG_DAEMON },
        { "{\"syslog\":\"local0\",\"servers\":[" OKS "]}", NULL, LOG_LOCAL0 },
        { "{\"syslog\":\"local7\",\"servers\":[" OKS "]}", NULL, LOG_LOCAL7 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mc__config *cfg = NULL;
        mc_err *err = NULL;
        assert_int_equal(load_text(cases[i].json, strlen(cases[i].json), &cfg, &err), 0);
        if (cases[i].log_file)
            assert_string_equal(cfg->log_file, cases[i].log_file);
        else
            assert_null(cfg->log_file);
        assert_int_equal(cfg->syslog_facility, cases[i].facility);
        mc__config_free(cfg);
    }
}

/* mc__config_toplog: the top-level log of a config that does not load
 * (the CLI's 78s), but never of one others could change or that is no
 * JSON document. */
static void test_toplog_of_failing_config(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", f->dir);
    char *log_file = NULL;
    int facility = 0;
    static const struct { const char *json; mode_t mode; int rc; const char *log_file; int facility; } cases[] = {
        /* invalid in a server: the top-level keys still count */
        { "{\"log_file\":\"/l\",\"syslog\":\"local3\",\"servers\":[{\"name\":\"a\",\"port\":\"x\"}]}",
          0600, 0, "/l", LOG_LOCAL3 },
        /* unsafe: an inline secret in a group-readable file */
        { "{\"log_file\":\"/l\",\"servers\":[{\"name\":\"a\",\"host\":\"h.example\","
          "\"auth\":{\"provider\":\"basic\",\"user\":\"u\",\"password\":\"pw-inline\"}}]}",
          0640, 0, "/l", -1 },
        /* a bad syslog does not lose a good log_file, nor the reverse */
        { "{\"log_file\":\"/l\",\"syslog\":\"kern\"}", 0600, 0, "/l", -1 },
        { "{\"log_file\":\"\",\"syslog\":true}", 0600, 0, NULL, LOG_MAIL },
        /* not read: others could change it; not JSON; no top-level log */
        { "{\"log_file\":\"/l\",\"servers\":[]}", 0666, MC_ECONFIG, NULL, -1 },
        { "{\"log_file\":\"/l\",\"servers\":[", 0600, MC_ECONFIG, NULL, -1 },
        { "[\"log_file\"]", 0600, MC_ECONFIG, NULL, -1 },
        { "{\"syslog\":false}", 0600, MC_ECONFIG, NULL, -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, cases[i].json, strlen(cases[i].json), cases[i].mode);
        assert_int_equal(mc__config_toplog(path, &log_file, &facility), cases[i].rc);
        if (cases[i].log_file)
            assert_string_equal(log_file, cases[i].log_file);
        else
            assert_null(log_file);
        assert_int_equal(facility, cases[i].facility);
        free(log_file);
        log_file = NULL;
    }
    snprintf(path, sizeof(path), "%s/none.json", f->dir);
    assert_int_equal(mc__config_toplog(path, &log_file, &facility), MC_ECONFIG);
    assert_null(log_file);
    assert_int_equal(facility, -1);
}

/* ------------------------------------------------------------- field errors */

static void dump_diags(const mc_err *e)
{
    for (size_t i = 0; e && i < e->n_diags; i++)
        print_error("  diag %s | %d | %s | %s\n", e->diags[i].path, e->diags[i].server,
                    e->diags[i].key, e->diags[i].message);
}

/* The diag at path, or NULL (then every diag is shown). */
static const mc_diag *diag_at(const mc_err *e, const char *path)
{
    for (size_t i = 0; e && i < e->n_diags; i++)
        if (strcmp(e->diags[i].path, path) == 0)
            return &e->diags[i];
    dump_diags(e);
    return NULL;
}

static void test_diags_fields(void **state)
{
    (void)state;
    /* a bad port at servers[1], a google server without client_id at
     * servers[2] (a provider error, through cfg_error), a manual one
     * without client_id at servers[3], an unknown key at servers[0] */
    static const char text[] =
        "{\"servers\":["
        "{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\",\"colour\":1},"
        "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"starttls\",\"port\":0},"
        "{\"name\":\"g\",\"auth\":{\"provider\":\"google\",\"user\":\"u@example.org\"}},"
        "{\"name\":\"m\",\"host\":\"h.example\",\"transport\":\"tls\",\"auth\":{\"provider\":\"manual\","
        "\"user\":\"u@example.org\",\"token_url\":\"https://127.0.0.1/t\"}}"
        "]}";
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    /* shape errors stop before prepare: take them first */
    assert_int_equal(mc__config_parse(&cfg, text, strlen(text), &err), MC_ECONFIG);
    assert_non_null(err);
    assert_int_equal(err->action, MC_ACTION_FIX_CONFIG);
    assert_int_equal(err->n_diags, err->n_details);
    const mc_diag *d = diag_at(err, "servers[1].port");
    assert_non_null(d);
    assert_int_equal(d->server, 1);
    assert_string_equal(d->key, "port");
    assert_string_equal(d->message, "must be an integer 1..65535, got 0");
    d = diag_at(err, "servers[0].colour");
    assert_non_null(d);
    assert_int_equal(d->server, 0);
    assert_string_equal(d->key, "colour");
    assert_string_equal(d->message, "unknown key \"colour\"");
    /* details as before: whole lines */
    bool line = false;
    for (size_t i = 0; i < err->n_details; i++)
        line |= strcmp(err->details[i], "servers[1].port: must be an integer 1..65535, got 0") == 0;
    assert_true(line);
    mc_error_free(err);
    err = NULL;

    /* the provider errors, with the shape fixed */
    static const char text2[] =
        "{\"servers\":["
        "{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\"},"
        "{\"name\":\"g\",\"auth\":{\"provider\":\"google\",\"user\":\"u@example.org\"}},"
        "{\"name\":\"m\",\"host\":\"h.example\",\"transport\":\"tls\",\"auth\":{\"provider\":\"manual\","
        "\"user\":\"u@example.org\",\"token_url\":\"https://127.0.0.1/t\",\"bogus\":true}}"
        "]}";
    assert_int_equal(load_text(text2, strlen(text2), &cfg, &err), MC_ECONFIG);
    assert_int_equal(err->action, MC_ACTION_FIX_CONFIG);
    d = diag_at(err, "servers[1].auth.client_id");
    assert_non_null(d);
    assert_int_equal(d->server, 1);
    assert_string_equal(d->key, "auth.client_id");
    assert_non_null(strstr(d->message, "required"));
    assert_null(strstr(d->message, "servers["));
    d = diag_at(err, "servers[2].auth.client_id");
    assert_non_null(d);
    assert_int_equal(d->server, 2);
    assert_string_equal(d->key, "auth.client_id");
    d = diag_at(err, "servers[2].auth.bogus");
    assert_non_null(d);
    assert_string_equal(d->key, "auth.bogus");
    assert_int_equal(err->n_diags, err->n_details);
    mc_error_free(err);
}

static void test_diags_two_defaults(void **state)
{
    (void)state;
    static const char text[] =
        "{\"servers\":["
        "{\"name\":\"a\",\"host\":\"h.example\",\"transport\":\"starttls\",\"default\":true},"
        "{\"name\":\"b\",\"host\":\"h.example\",\"transport\":\"starttls\"},"
        "{\"name\":\"c\",\"host\":\"h.example\",\"transport\":\"starttls\",\"default\":true}"
        "],\"log_file\":3}";
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__config_parse(&cfg, text, strlen(text), &err), MC_ECONFIG);
    assert_int_equal(err->n_details, 2);          /* one line each, as before */
    assert_int_equal(err->n_diags, 3);
    const mc_diag *d = diag_at(err, "servers[0].default");
    assert_non_null(d);
    assert_int_equal(d->server, 0);
    assert_string_equal(d->key, "default");
    assert_non_null(strstr(d->message, "2 servers are marked default"));
    d = diag_at(err, "servers[2].default");
    assert_non_null(d);
    assert_int_equal(d->server, 2);
    assert_string_equal(d->key, "default");
    for (size_t i = 0; i < err->n_diags; i++)
        assert_int_not_equal(err->diags[i].server, 1);   /* b is not marked */
    d = diag_at(err, "log_file");
    assert_non_null(d);
    assert_int_equal(d->server, -1);
    assert_string_equal(d->key, "log_file");
    mc_error_free(err);

    /* a syntax error: the whole document */
    err = NULL;
    assert_int_equal(mc__config_parse(&cfg, "{\"servers\": [", 13, &err), MC_ECONFIG);
    assert_int_equal(err->n_diags, 1);
    assert_string_equal(err->diags[0].path, "");
    assert_int_equal(err->diags[0].server, -1);
    assert_string_equal(err->diags[0].key, "");
    mc_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_rule),
        cmocka_unit_test(test_diags_fields),
        cmocka_unit_test(test_diags_two_defaults),
        cmocka_unit_test(test_top_log_keys),
        cmocka_unit_test_setup_teardown(test_toplog_of_failing_config, setup, teardown),
        cmocka_unit_test(test_never_crashes_on_bytes),
        cmocka_unit_test_setup_teardown(test_inline_secret_file_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_moves_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_unknown_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_rename_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_default_killed_in_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_replace_new_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_others_can_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_named_files_others_can_change, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
