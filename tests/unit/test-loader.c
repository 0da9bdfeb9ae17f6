/* test-loader: the plugin loader (core/loader.c) and the four auth
 * provider plugins, loaded from the build tree as shipped.
 *
 * Purpose-made plugins come from tests/unit/badplugins (built into
 * <build>/tests/unit/badplugins): one per defect, plus auth-probe, a well
 * formed plugin whose constructor counts opens in $MC_TEST_PLUGIN_OPENS and
 * whose entry notes its name in $MC_TEST_PLUGIN_ENTRIES, so a test can tell
 * whether a file was opened and its entry called. The registry's lines go
 * to a host context of the test's own (thc).
 * Each test that copies plugins gets its own temporary folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>

#include "config.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "oauth-keys.h"

/* ------------------------------------------------------------ fixtures */

static char build_root[PATH_MAX];
static char providers_dir[PATH_MAX + 32];
static char transports_dir[PATH_MAX + 32];
static char bad_dir[PATH_MAX + 32];

typedef struct captured {
    char  **lines;
    size_t  n;
} captured;

static captured logs;
static mc_host_ctx thc;

static void capture(mc_log_level level, const char *line, void *payload)
{
    (void)level;
    captured *c = payload;
    char **l = realloc(c->lines, (c->n + 1) * sizeof(*l));
    if (!l)
        return;
    c->lines = l;
    if ((l[c->n] = strdup(line)))
        c->n++;
}

static void logs_clear(void)
{
    for (size_t i = 0; i < logs.n; i++)
        free(logs.lines[i]);
    free(logs.lines);
    logs.lines = NULL;
    logs.n = 0;
    unsetenv("MC_TEST_PLUGIN_ENTRIES");   /* the entries called go with the lines */
}

/* Lines containing every one of the (NULL-terminated) substrings. */
static size_t count_lines(const char *first, ...)
{
    size_t n = 0;
    for (size_t i = 0; i < logs.n; i++) {
        va_list ap;
        va_start(ap, first);
        bool all = true;
        for (const char *s = first; s; s = va_arg(ap, const char *))
            if (!strstr(logs.lines[i], s))
                all = false;
        va_end(ap);
        if (all)
            n++;
    }
    return n;
}

/* How many times the entry of test plugin `name` (NULL: any) was called. */
static size_t entry_count(const char *name)
{
    const char *v = getenv("MC_TEST_PLUGIN_ENTRIES");
    size_t n = 0;
    for (const char *p = v; p && *p;) {
        size_t len = strcspn(p, ";");
        if (!name || (strlen(name) == len && strncmp(p, name, len) == 0))
            n++;
        p += len + (p[len] == ';');
    }
    return n;
}

static void dump_logs(void)
{
    for (size_t i = 0; i < logs.n; i++)
        print_message("log: %s\n", logs.lines[i]);
}

static int setup(void **state)
{
    (void)state;
    logs_clear();
    mc__hc_init(&thc, MC_LOG_DEBUG, capture, &logs);
    unsetenv("MC_TEST_PLUGIN_ENTRIES");
    return 0;
}

/* Profiles built the way the core builds them (mc__oauth_profile): the
 * provider's defaults with the config's common keys over them, params and
 * hints in blocks the core owns, released at teardown. */
static void *profile_owns[16];
static size_t n_profile_owns;

static int tprofile(const mc_auth_ops *ops, const mc_plugin_cfg *cfg, mc_oauth_profile *out,
                    mc_err **err)
{
    assert_true(n_profile_owns < sizeof(profile_owns) / sizeof(profile_owns[0]));
    return mc__oauth_profile(&thc, ops, cfg, out, &profile_owns[n_profile_owns++], err);
}

static int teardown(void **state)
{
    (void)state;
    while (n_profile_owns)
        mc__oauth_profile_release(profile_owns[--n_profile_owns]);
    mc__hc_destroy(&thc);
    logs_clear();
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    const char *root = getenv("MAILCONN_BUILD_ROOT");
    if (root && *root) {
        snprintf(build_root, sizeof(build_root), "%s", root);
    } else {
        /* <root>/tests/unit/test-loader */
        if (!realpath("/proc/self/exe", build_root))
            return -1;
        for (int i = 0; i < 3; i++) {
            char *slash = strrchr(build_root, '/');
            if (!slash)
                return -1;
            *slash = '\0';
        }
    }
    snprintf(providers_dir, sizeof(providers_dir), "%s/providers", build_root);
    snprintf(transports_dir, sizeof(transports_dir), "%s/plugins", build_root);
    snprintf(bad_dir, sizeof(bad_dir), "%s/tests/unit/badplugins", build_root);
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof(probe), "%s/auth-probe.so", bad_dir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "test-loader: %s missing (build the badplugins targets)\n", probe);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ helpers */

static char *path_join(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static char *make_tmpdir(void)
{
    /* mkdtemp's template: the prefix and six 'X' */
    static const char prefix[] = "/tmp/mc-test-loader-";
    char *d = malloc(sizeof(prefix) + 6);
    assert_non_null(d);
    memcpy(d, prefix, sizeof(prefix) - 1);
    memset(d + sizeof(prefix) - 1, 'X', 6);
    d[sizeof(prefix) + 5] = '\0';
    assert_non_null(mkdtemp(d));
    return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

static void rm_tree(char *dir)
{
    chmod(dir, 0700);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static void copy_file(const char *src, const char *dir, const char *name, mode_t mode)
{
    char *dst = path_join(dir, name);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(fchmod(out, mode), 0);   /* exact mode, whatever the umask */
    assert_int_equal(close(out), 0);
    free(dst);
}

static void copy_plugin(const char *from_dir, const char *file, const char *to_dir, mode_t mode)
{
    char *src = path_join(from_dir, file);
    copy_file(src, to_dir, file, mode);
    free(src);
}

static int opens(void)
{
    const char *v = getenv("MC_TEST_PLUGIN_OPENS");
    return v ? atoi(v) : 0;
}

static mc__registry *registry_of(const char *const *dirs, size_t n)
{
    mc__registry *reg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_new_dirs(&reg, dirs, n, &err), 0);
    assert_null(err);
    assert_non_null(reg);
    mc__registry_set_log(reg, &thc);
    return reg;
}

typedef struct visit {
    size_t n;
    size_t n_named;
    const char *name;
    const mc__plugin *last;
} visit;

static void count_visit(const mc__plugin *p, void *payload)
{
    visit *v = payload;
    v->n++;
    if (v->name && strcmp(p->desc->name, v->name) == 0) {
        v->n_named++;
        v->last = p;
    }
}

static visit visit_all(mc__registry *reg, const char *name)
{
    visit v = { 0, 0, name, NULL };
    mc__registry_each(reg, count_visit, &v);
    return v;
}

static char *real_of(const char *dir, const char *file)
{
    char *p = path_join(dir, file);
    char *r = realpath(p, NULL);
    assert_non_null(r);
    free(p);
    return r;
}

/* ------------------------------------------------------------ rejections */

static const struct {
    const char *file;
    const char *reason;
    bool        entry_called;
    bool        abi_line;     /* the line is "<file>: <reason>" */
} bad_cases[] = {
    { "auth-abimajor.so", "built for ABI 3.0, this is 2.1", true, true },
    { "auth-abiminor.so", "built for ABI 2.2, this is 2.1", true, false },
    { "auth-noentry.so", "missing entry symbol mc_plugin_entry", false, false },
    { "auth-badkind.so", "unknown kind 9", true, false },
    { "auth-misnamed.so", "descriptor name \"other\" differs from the file name (\"misnamed\")", true, false },
    { "auth-nullops.so", "NULL ops table", true, false },
    { "auth-smallops.so", "ops table too small (size 8, ABI 2.0 needs 80)", true, false },
    { "auth-nodesc.so", "mc_plugin_entry returned no descriptor", true, false },
    { "transport-wrongkind.so", "kind auth does not match the file name (expected transport)", true, false },
    { "auth-abi1.so", "built for ABI 1.0, this is 2.1", true, true },
    { "auth-abi1-1.so", "built for ABI 1.1, this is 2.1", true, true },
    /* ABI 2.1 */
    { "auth-abiminor5.so", "built for ABI 2.5, this is 2.1", true, false },
    { "proxy-wrongkind.so", "kind auth does not match the file name (expected proxy)", true, false },
    { "proxy-nullops.so", "NULL ops table", true, false },
    { "proxy-notunnel.so", "proxy ops without tunnel", true, false },
    { "proxy-smallops.so", "ops table too small (size 8, ABI 2.1 needs", true, false },
    { "proxy-abi20.so", "kind proxy needs ABI 2.1 (built for 2.0)", true, false },
    { "store-noopen.so", "token-store ops without open", true, false },
    { "store-noops.so", "token-store ops without ops", true, false },
    { "auth-initfail.so", "init failed (", true, false },
};
#define N_BAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Each purpose-made bad plugin is rejected with ONE warning line naming the
 * file and the reason; the good one in the same folder loads; asking for a
 * rejected plugin again gives the same reason without reopening it. */
static void test_bad_plugins_rejected(void **state)
{
    (void)state;
    const char *dirs[] = { bad_dir };
    mc__registry *reg = registry_of(dirs, 1);
    assert_int_equal(mc__registry_load_all(reg), 0);

    for (size_t i = 0; i < N_BAD; i++) {
        char *path = path_join(bad_dir, bad_cases[i].file);
        char *line = NULL;
        if (bad_cases[i].abi_line)
            assert_true(asprintf(&line, "%s: %s", path, bad_cases[i].reason) > 0);
        else
            assert_true(asprintf(&line, "plugin %s rejected: %s", path, bad_cases[i].reason) > 0);
        if (count_lines(line, NULL) != 1) {
            dump_logs();
            fail_msg("expected one line: %s", line);
        }
        free(line);
        free(path);
    }
    assert_int_equal(count_lines("rejected", NULL) + count_lines(": built for ABI ", NULL) -
                         count_lines("rejected", ": built for ABI ", NULL),
                     N_BAD);
    /* one line each, and nothing else of these plugins is called */
    assert_int_equal(count_lines("auth-abi1.so: built for ABI 1.0, this is 2.1", NULL), 1);
    assert_int_equal(entry_count("abi1"), 1);
    /* the entry of a plugin without the entry symbol is never called */
    assert_int_equal(entry_count("noentry"), 0);

    /* the good one beside them loaded */
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &p, &err), 0);
    assert_null(err);
    assert_string_equal(p->desc->name, "probe");
    char *probe_real = real_of(bad_dir, "auth-probe.so");
    assert_string_equal(p->file, probe_real);
    free(probe_real);
    visit v = visit_all(reg, NULL);
    /* probe, proxy-good, store-good, initcount, init20 */
    assert_int_equal(v.n, 5);
    /* init of a refused plugin failed: no fini for it, ever */
    assert_int_equal(entry_count("init:initfail"), 1);

    /* asking again: the cached reason, no new open, no new log line */
    size_t lines_before = logs.n;
    static const struct { mc_plugin_kind kind; const char *name; size_t bad; } again[] = {
        { MC_PLUGIN_AUTH, "abimajor", 0 }, { MC_PLUGIN_AUTH, "abiminor", 1 },
        { MC_PLUGIN_AUTH, "noentry", 2 },  { MC_PLUGIN_AUTH, "badkind", 3 },
        { MC_PLUGIN_AUTH, "misnamed", 4 }, { MC_PLUGIN_AUTH, "nullops", 5 },
        { MC_PLUGIN_AUTH, "smallops", 6 }, { MC_PLUGIN_AUTH, "nodesc", 7 },
        { MC_PLUGIN_TRANSPORT, "wrongkind", 8 }, { MC_PLUGIN_AUTH, "abi1", 9 },
        { MC_PLUGIN_AUTH, "abi1-1", 10 }, { MC_PLUGIN_AUTH, "abiminor5", 11 },
        { MC_PLUGIN_PROXY, "wrongkind", 12 }, { MC_PLUGIN_PROXY, "nullops", 13 },
        { MC_PLUGIN_PROXY, "notunnel", 14 }, { MC_PLUGIN_PROXY, "smallops", 15 },
        { MC_PLUGIN_PROXY, "abi20", 16 }, { MC_PLUGIN_TOKEN_STORE, "noopen", 17 },
        { MC_PLUGIN_TOKEN_STORE, "noops", 18 }, { MC_PLUGIN_AUTH, "initfail", 19 },
    };
    for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++) {
        err = NULL;
        p = NULL;
        assert_int_equal(mc__registry_get(reg, again[i].kind, again[i].name, &p, &err), MC_EPLUGIN);
        assert_null(p);
        assert_non_null(err);
        assert_int_equal(err->code, MC_EPLUGIN);
        assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
        assert_int_equal(err->stage, MC_STAGE_PLUGIN);
        assert_non_null(strstr(err->message, bad_cases[again[i].bad].file));
        assert_non_null(strstr(err->message, bad_cases[again[i].bad].reason));
        mc_error_free(err);
    }
    assert_int_equal(logs.n, lines_before);
    assert_int_equal(entry_count("abimajor"), 1);
    mc__registry_free(reg);
}

/* ABI 2.1 init/fini: one init per process load, before any op, over any
 * number of registries (contexts), and one fini when the last lets go,
 * before dlclose; a 2.0 descriptor's init/fini are never read. */
static void test_init_fini_once(void **state)
{
    (void)state;
    const char *dirs[] = { bad_dir };
    mc__registry *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = registry_of(dirs, 1);
        const mc__plugin *p = NULL;
        mc_err *err = NULL;
        assert_int_equal(mc__registry_get(r[i], MC_PLUGIN_AUTH, "initcount", &p, &err), 0);
        assert_int_equal(mc__registry_get(r[i], MC_PLUGIN_AUTH, "init20", &p, &err), 0);
        assert_int_equal(p->desc->abi_minor, 0);
        assert_null(err);
    }
    /* a load_all after get: the same module, no second init */
    assert_int_equal(mc__registry_load_all(r[1]), 0);
    assert_int_equal(entry_count("init:initcount"), 1);
    assert_int_equal(entry_count("initcount"), 1);
    assert_int_equal(entry_count("fini:initcount"), 0);
    /* init came after the entry: "initcount;" is before "init:initcount;" */
    const char *v = getenv("MC_TEST_PLUGIN_ENTRIES");
    assert_non_null(v);
    const char *e = strstr(v, ";initcount;") ? strstr(v, ";initcount;") + 1 : strstr(v, "initcount;");
    assert_non_null(e);
    assert_true(e < strstr(v, "init:initcount;"));
    mc__registry_free(r[0]);
    mc__registry_free(r[2]);
    assert_int_equal(entry_count("fini:initcount"), 0);
    mc__registry_free(r[1]);
    assert_int_equal(entry_count("fini:initcount"), 1);
    assert_int_equal(entry_count("init:initcount"), 1);
    /* the 2.0 one: its init/fini pointers exist but are never read */
    assert_int_equal(entry_count("init:init20"), 0);
    assert_int_equal(entry_count("fini:init20"), 0);
    assert_int_equal(entry_count("init20"), 1);
}

/* A registry that only ever calls get(): each bad plugin is opened once,
 * its rejection logged once, and the error names the file and the reason. */
static void test_lazy_get_rejects_once(void **state)
{
    (void)state;
    const char *dirs[] = { bad_dir };
    mc__registry *reg = registry_of(dirs, 1);
    for (int round = 0; round < 3; round++) {
        const mc__plugin *p = NULL;
        mc_err *err = NULL;
        assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "abimajor", &p, &err), MC_EPLUGIN);
        assert_non_null(strstr(err->message, "/auth-abimajor.so: built for ABI 3.0, this is 2.1"));
        mc_error_free(err);
    }
    assert_int_equal(entry_count("abimajor"), 1);
    assert_int_equal(count_lines("auth-abimajor.so: built for ABI", NULL), 1);
    /* nothing else in the folder was opened */
    assert_int_equal(entry_count(NULL), 1);
    assert_int_equal(visit_all(reg, NULL).n, 0);
    mc__registry_free(reg);
}

/* Two registries (two contexts) with one module: its entry runs once while
 * either holds it (the entry writes the module's globals: calling it again
 * under another context's running ops would race), again after both let
 * it go. */
static void test_entry_once_per_process(void **state)
{
    (void)state;
    const char *dirs[] = { bad_dir };
    mc__registry *r1 = registry_of(dirs, 1), *r2 = registry_of(dirs, 1);
    const mc__plugin *p1 = NULL, *p2 = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(r1, MC_PLUGIN_AUTH, "probe", &p1, &err), 0);
    assert_int_equal(mc__registry_get(r2, MC_PLUGIN_AUTH, "probe", &p2, &err), 0);
    assert_ptr_equal(p1->desc, p2->desc);
    assert_int_equal(entry_count("probe"), 1);
    mc__registry_free(r1);
    mc__registry *r3 = registry_of(dirs, 1);
    assert_int_equal(mc__registry_get(r3, MC_PLUGIN_AUTH, "probe", &p1, &err), 0);
    assert_int_equal(entry_count("probe"), 1);   /* r2 still holds it */
    mc__registry_free(r2);
    mc__registry_free(r3);
    mc__registry *r4 = registry_of(dirs, 1);
    assert_int_equal(mc__registry_get(r4, MC_PLUGIN_AUTH, "probe", &p1, &err), 0);
    assert_int_equal(entry_count("probe"), 2);   /* all let go: entered afresh */
    mc__registry_free(r4);
}

static void test_missing_and_invalid_names(void **state)
{
    (void)state;
    char *a = make_tmpdir();
    const char *dirs[] = { a, bad_dir };
    mc__registry *reg = registry_of(dirs, 2);
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_TRANSPORT, "foo", &p, &err), MC_EPLUGIN);
    char *want = NULL;
    assert_true(asprintf(&want, "no plugin transport-foo.so in %s:%s", a, bad_dir) > 0);
    assert_string_equal(err->message, want);
    assert_int_equal(err->outcome, MC_OUTCOME_CONFIG);
    assert_int_equal(err->stage, MC_STAGE_PLUGIN);
    free(want);
    mc_error_free(err);

    /* a name is never a path */
    err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "../badplugins/auth-probe", &p, &err),
                     MC_EPLUGIN);
    assert_non_null(strstr(err->message, "invalid plugin name"));
    mc_error_free(err);
    assert_false(mc__registry_exists(reg, MC_PLUGIN_AUTH, "../x"));

    /* exists() looks without opening */
    int before = opens();
    assert_true(mc__registry_exists(reg, MC_PLUGIN_AUTH, "probe"));
    assert_false(mc__registry_exists(reg, MC_PLUGIN_AUTH, "nothere"));
    assert_false(mc__registry_exists(reg, MC_PLUGIN_TRANSPORT, "probe"));
    assert_int_equal(opens(), before);
    assert_int_equal(entry_count(NULL), 0);

    mc__registry_free(reg);
    rm_tree(a);
}

/* Files without a known prefix are ignored; a known prefix with a bad name
 * is rejected with one line. */
static void test_file_names(void **state)
{
    (void)state;
    char *a = make_tmpdir();
    char *probe = path_join(bad_dir, "auth-probe.so");
    copy_file(probe, a, "libprobe.so", 0644);
    copy_file(probe, a, "auth-probe.so.bak", 0644);
    copy_file(probe, a, "auth-Bad_Name.so", 0644);
    free(probe);
    const char *dirs[] = { a };
    mc__registry *reg = registry_of(dirs, 1);
    int before = opens();
    assert_int_equal(mc__registry_load_all(reg), 0);
    assert_int_equal(opens(), before);
    assert_int_equal(visit_all(reg, NULL).n, 0);
    assert_int_equal(count_lines("auth-Bad_Name.so rejected: bad file name", NULL), 1);
    assert_int_equal(count_lines("libprobe", NULL), 0);
    assert_int_equal(count_lines("auth-probe.so.bak", NULL), 0);
    mc__registry_free(reg);
    rm_tree(a);
}

/* ------------------------------------------------------------ file modes */

static void expect_mode_rejection(const char *dir, const char *file, const char *reason)
{
    const char *dirs[] = { dir };
    mc__registry *reg = registry_of(dirs, 1);
    int before = opens();
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)(strlen(file) - strlen("auth-") - 3),
             file + strlen("auth-"));
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, name, &p, &err), MC_EPLUGIN);
    char *path = path_join(dir, file);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, reason));
    assert_int_equal(count_lines(path, "rejected", reason, NULL), 1);
    free(path);
    mc_error_free(err);
    /* checked with stat before dlopen: the file was never opened */
    assert_int_equal(opens(), before);
    assert_int_equal(entry_count(NULL), 0);
    assert_int_equal(mc__registry_load_all(reg), 0);
    assert_int_equal(visit_all(reg, NULL).n, 0);
    mc__registry_free(reg);
}

/* A plugin file writable by group or by others is refused before dlopen. */
static void test_writable_file_rejected(void **state)
{
    (void)state;
    static const mode_t modes[] = { 0664, 0646, 0620 };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char *a = make_tmpdir();
        copy_plugin(bad_dir, "auth-probe.so", a, modes[i]);
        expect_mode_rejection(a, "auth-probe.so", "the file is writable by group or others");
        rm_tree(a);
        logs_clear();
    }
    /* a real provider too; the same copy at 0644 loads */
    char *a = make_tmpdir();
    copy_plugin(providers_dir, "auth-basic.so", a, 0666);
    const char *dirs[] = { a };
    mc__registry *reg = registry_of(dirs, 1);
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "basic", &p, &err), MC_EPLUGIN);
    assert_non_null(strstr(err->message, "auth-basic.so rejected: the file is writable by group or others (mode 0666)"));
    mc_error_free(err);
    mc__registry_free(reg);
    char *f = path_join(a, "auth-basic.so");
    assert_int_equal(chmod(f, 0644), 0);
    free(f);
    reg = registry_of(dirs, 1);
    err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "basic", &p, &err), 0);
    assert_string_equal(p->desc->name, "basic");
    mc__registry_free(reg);
    rm_tree(a);
}

/* A plugin in a folder writable by group or others is refused before dlopen;
 * the same folder at 0755 loads it. */
static void test_writable_folder_rejected(void **state)
{
    (void)state;
    static const mode_t modes[] = { 0770, 0707 };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char *a = make_tmpdir();
        copy_plugin(bad_dir, "auth-probe.so", a, 0644);
        assert_int_equal(chmod(a, modes[i]), 0);
        expect_mode_rejection(a, "auth-probe.so", "is writable by group or others");
        char want[64];
        snprintf(want, sizeof(want), "(mode %04o)", (unsigned)modes[i]);
        assert_int_equal(count_lines("its folder", a, want, NULL), 1);
        logs_clear();

        assert_int_equal(chmod(a, 0755), 0);
        const char *dirs[] = { a };
        mc__registry *reg = registry_of(dirs, 1);
        const mc__plugin *p = NULL;
        mc_err *err = NULL;
        int before = opens();
        assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &p, &err), 0);
        assert_null(err);
        assert_int_equal(opens(), before + 1);
        mc__registry_free(reg);
        rm_tree(a);
        logs_clear();
    }
}

/* ------------------------------------------------------------ duplicates */

/* The same file reached through two search entries for one folder, a
 * symlinked folder, and a symlinked file is loaded once, silently. */
static void test_same_file_loaded_once(void **state)
{
    (void)state;
    char *a = make_tmpdir();
    copy_plugin(bad_dir, "auth-probe.so", a, 0644);
    char *b = make_tmpdir();                  /* b/link -> a */
    char *b_link = path_join(b, "link");
    assert_int_equal(symlink(a, b_link), 0);
    char *c = make_tmpdir();                  /* c/auth-probe.so -> a/auth-probe.so */
    char *a_probe = path_join(a, "auth-probe.so");
    char *c_probe = path_join(c, "auth-probe.so");
    assert_int_equal(symlink(a_probe, c_probe), 0);
    char *a_slash = NULL;
    assert_true(asprintf(&a_slash, "%s/", a) > 0);

    const char *dirs[] = { a, a_slash, b_link, c, a };
    mc__registry *reg = registry_of(dirs, 5);
    int before = opens();
    assert_int_equal(mc__registry_load_all(reg), 0);
    assert_int_equal(mc__registry_load_all(reg), 0);   /* twice: still once */
    visit v = visit_all(reg, "probe");
    assert_int_equal(v.n, 1);
    assert_int_equal(v.n_named, 1);
    char *real = realpath(a_probe, NULL);
    assert_string_equal(v.last->file, real);
    free(real);
    assert_int_equal(opens(), before + 1);
    assert_int_equal(entry_count("probe"), 1);
    assert_int_equal(count_lines("skipped", NULL), 0);
    assert_int_equal(count_lines("rejected", NULL), 0);

    /* the same folder three ways is searched once */
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "nothere", &p, &err), MC_EPLUGIN);
    char *want = NULL;
    assert_true(asprintf(&want, "no plugin auth-nothere.so in %s:%s", a, c) > 0);
    assert_string_equal(err->message, want);
    free(want);
    mc_error_free(err);

    mc__registry_free(reg);
    free(a_slash);
    free(a_probe);
    free(c_probe);
    free(b_link);
    rm_tree(c);
    rm_tree(b);
    rm_tree(a);
}

/* A different file with a kind+name already loaded is skipped with one
 * warning naming both files; the first in search order wins and the second
 * is never opened. */
static void test_duplicate_name_skipped(void **state)
{
    (void)state;
    char *a = make_tmpdir(), *b = make_tmpdir();
    copy_plugin(bad_dir, "auth-probe.so", a, 0644);
    copy_plugin(bad_dir, "auth-probe.so", b, 0644);
    char *a_probe = path_join(a, "auth-probe.so"), *b_probe = path_join(b, "auth-probe.so");
    char *a_real = realpath(a_probe, NULL);
    assert_non_null(a_real);

    const char *dirs[] = { a, b };
    mc__registry *reg = registry_of(dirs, 2);
    int before = opens();
    assert_int_equal(mc__registry_load_all(reg), 0);
    visit v = visit_all(reg, "probe");
    assert_int_equal(v.n_named, 1);
    assert_string_equal(v.last->file, a_real);
    assert_int_equal(opens(), before + 1);
    char *want = NULL;
    assert_true(asprintf(&want, "plugin %s skipped: auth \"probe\" is already loaded from %s",
                         b_probe, a_probe) > 0);
    if (count_lines(want, NULL) != 1) {
        dump_logs();
        fail_msg("expected one line: %s", want);
    }
    assert_int_equal(count_lines("skipped", NULL), 1);
    /* a second load_all does not warn again */
    assert_int_equal(mc__registry_load_all(reg), 0);
    assert_int_equal(count_lines("skipped", NULL), 1);
    mc__registry_free(reg);

    /* lazily: get() returns the first and does not look further */
    logs_clear();
    reg = registry_of(dirs, 2);
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &p, &err), 0);
    assert_string_equal(p->file, a_real);
    assert_int_equal(count_lines("skipped", NULL), 0);
    mc__registry_free(reg);

    /* a bad first copy does not hide a good later one */
    logs_clear();
    char *a_file = path_join(a, "auth-probe.so");
    assert_int_equal(chmod(a_file, 0666), 0);
    reg = registry_of(dirs, 2);
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &p, &err), 0);
    char *b_real = realpath(b_probe, NULL);
    assert_string_equal(p->file, b_real);
    assert_int_equal(count_lines(a_probe, "rejected", NULL), 1);
    free(b_real);
    free(a_file);
    mc__registry_free(reg);

    free(want);
    free(a_real);
    free(a_probe);
    free(b_probe);
    rm_tree(a);
    rm_tree(b);
}

/* ------------------------------------------------------------ search path */

/* plugin_dir first, then $MAILCONN_PLUGIN_PATH (colon list, duplicates and
 * empty entries dropped), then the build tree (this test runs from it). */
static void test_search_order(void **state)
{
    (void)state;
    char *p = make_tmpdir(), *e1 = make_tmpdir(), *e2 = make_tmpdir();
    char *old = getenv("MAILCONN_PLUGIN_PATH") ? strdup(getenv("MAILCONN_PLUGIN_PATH")) : NULL;
    char *env = NULL;
    assert_true(asprintf(&env, "%s:%s::%s/", e1, e2, e1) > 0);
    assert_int_equal(setenv("MAILCONN_PLUGIN_PATH", env, 1), 0);

    mc__registry *reg = NULL;
    mc_err *err = NULL;
    assert_int_equal(mc__registry_new(&reg, p, &err), 0);
    const mc__plugin *pl = NULL;
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "nothere", &pl, &err), MC_EPLUGIN);
    char *prefix = NULL;
    assert_true(asprintf(&prefix, "no plugin auth-nothere.so in %s:%s:%s:", p, e1, e2) > 0);
    if (strncmp(err->message, prefix, strlen(prefix)) != 0)
        fail_msg("got \"%s\", expected it to start with \"%s\"", err->message, prefix);
    /* the build tree's plugin folders follow */
    char *prov = NULL;
    assert_true(asprintf(&prov, ":%s:", providers_dir) > 0);
    assert_non_null(strstr(err->message + strlen(prefix) - 1, prov));
    /* e1 is listed once */
    assert_null(strstr(err->message + strlen(prefix), e1));
    mc_error_free(err);
    err = NULL;

    /* the build tree provides the real plugins */
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "basic", &pl, &err), 0);
    mc__registry_free(reg);

    /* the first in search order wins: plugin_dir before the environment */
    copy_plugin(bad_dir, "auth-probe.so", e1, 0644);
    copy_plugin(bad_dir, "auth-probe.so", p, 0644);
    assert_int_equal(mc__registry_new(&reg, p, &err), 0);
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &pl, &err), 0);
    char *want = real_of(p, "auth-probe.so");
    assert_string_equal(pl->file, want);
    free(want);
    mc__registry_free(reg);
    /* without plugin_dir the environment comes first */
    assert_int_equal(mc__registry_new(&reg, NULL, &err), 0);
    assert_int_equal(mc__registry_get(reg, MC_PLUGIN_AUTH, "probe", &pl, &err), 0);
    want = real_of(e1, "auth-probe.so");
    assert_string_equal(pl->file, want);
    free(want);
    mc__registry_free(reg);

    if (old) {
        setenv("MAILCONN_PLUGIN_PATH", old, 1);
        free(old);
    } else {
        unsetenv("MAILCONN_PLUGIN_PATH");
    }
    free(prov);
    free(prefix);
    free(env);
    rm_tree(p);
    rm_tree(e1);
    rm_tree(e2);
}

/* ------------------------------------------------------------ good plugins */

static bool plugin_file_exists(const char *dir, const char *file)
{
    char *p = path_join(dir, file);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* The shipped plugins load next to the bad ones (bad folder first), with
 * descriptors that match their file names. */
static void test_good_plugins_load_beside_bad(void **state)
{
    (void)state;
    const char *dirs[] = { bad_dir, providers_dir, transports_dir };
    mc__registry *reg = registry_of(dirs, 3);
    assert_int_equal(mc__registry_load_all(reg), 0);
    assert_int_equal(count_lines("rejected", NULL) + count_lines(": built for ABI ", NULL) -
                         count_lines("rejected", ": built for ABI ", NULL),
                     N_BAD);

    static const char *const providers[] = { "basic", "google", "manual", "microsoft" };
    for (size_t i = 0; i < 4; i++) {
        const mc__plugin *p = NULL;
        mc_err *err = NULL;
        if (mc__registry_get(reg, MC_PLUGIN_AUTH, providers[i], &p, &err) != 0)
            fail_msg("auth %s: %s", providers[i], err ? err->message : "?");
        assert_int_equal(p->desc->kind, MC_PLUGIN_AUTH);
        assert_string_equal(p->desc->name, providers[i]);
        assert_int_equal(p->desc->abi_major, MC_PLUGIN_ABI_MAJOR);
        assert_non_null(p->desc->version);
        assert_non_null(p->desc->summary);
        const mc_auth_ops *ops = p->desc->ops;
        assert_true(ops->size >= sizeof(mc_auth_ops));
        assert_non_null(ops->validate);
        assert_non_null(ops->mechanisms);
        assert_non_null(ops->keys);
    }
    size_t n_transports = 0;
    static const char *const transports[] = { "plain", "tls", "starttls" };
    for (size_t i = 0; i < 3; i++) {
        char file[64];
        snprintf(file, sizeof(file), "transport-%s.so", transports[i]);
        if (!plugin_file_exists(transports_dir, file))
            continue;
        const mc__plugin *p = NULL;
        mc_err *err = NULL;
        if (mc__registry_get(reg, MC_PLUGIN_TRANSPORT, transports[i], &p, &err) != 0)
            fail_msg("transport %s: %s", transports[i], err ? err->message : "?");
        assert_int_equal(p->desc->kind, MC_PLUGIN_TRANSPORT);
        assert_string_equal(p->desc->name, transports[i]);
        n_transports++;
    }
    /* load_all opens the proxy plugins of the same folder too */
    size_t n_proxies = 0;
    if (plugin_file_exists(transports_dir, "proxy-socks5.so"))
        n_proxies++;
    if (plugin_file_exists(transports_dir, "proxy-http.so"))
        n_proxies++;
    /* probe + the 4 providers + the transports and proxies present */
    assert_int_equal(visit_all(reg, NULL).n, 5 + 4 + n_transports + n_proxies);   /* 5 good in bad_dir */
    assert_string_equal(mc__plugin_kind_name(MC_PLUGIN_TRANSPORT), "transport");
    assert_string_equal(mc__plugin_kind_name(MC_PLUGIN_AUTH), "auth");
    assert_string_equal(mc__plugin_kind_name(MC_PLUGIN_OAUTH_ENGINE), "oauth-engine");
    mc__registry_free(reg);
}

typedef struct race {
    mc__registry     *reg;
    const mc__plugin *got;
    int               rc;
} race;

static void *race_get(void *arg)
{
    race *r = arg;
    r->rc = mc__registry_get(r->reg, MC_PLUGIN_AUTH, "microsoft", &r->got, NULL);
    return NULL;
}

/* Many threads asking for the same plugin at once get the one instance. */
static void test_get_thread_safe(void **state)
{
    (void)state;
    const char *dirs[] = { providers_dir };
    mc__registry *reg = registry_of(dirs, 1);
    enum { N = 8 };
    pthread_t t[N];
    race r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (race){ reg, NULL, 1 };
        assert_int_equal(pthread_create(&t[i], NULL, race_get, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].rc, 0);
        assert_ptr_equal(r[i].got, r[0].got);
    }
    assert_int_equal(visit_all(reg, NULL).n, 1);
    mc__registry_free(reg);
}

/* ------------------------------------------------------------ providers */

typedef struct tcfg {
    mc_plugin_cfg cfg;
    mc__diag      diag;
} tcfg;

static void tcfg_init(tcfg *t, const char *json)
{
    memset(t, 0, sizeof(*t));
    t->cfg.obj = json_tokener_parse(json);
    assert_non_null(t->cfg.obj);
    t->cfg.path = strdup("servers[0].auth");
    assert_non_null(t->cfg.path);
    t->cfg.diag = &t->diag;
}

static void tcfg_free(tcfg *t)
{
    json_object_put(t->cfg.obj);
    free(t->cfg.path);
    mc__diag_free(&t->diag);
}

static const mc_auth_ops *provider(mc__registry **reg, const char *name)
{
    const char *dirs[] = { providers_dir };
    *reg = registry_of(dirs, 1);
    const mc__plugin *p = NULL;
    mc_err *err = NULL;
    if (mc__registry_get(*reg, MC_PLUGIN_AUTH, name, &p, &err) != 0)
        fail_msg("auth %s: %s", name, err ? err->message : "?");
    return p->desc->ops;
}

/* Run validate on `json`; the diagnostics must be exactly `want`
 * (NULL-terminated). */
static void expect_validate(const mc_auth_ops *ops, const char *json, const char *const *want)
{
    tcfg t;
    tcfg_init(&t, json);
    mc__auth_validate(&thc, ops, &t.cfg);   /* the core's rules, then the provider's */
    size_t n = 0;
    while (want[n])
        n++;
    bool same = t.diag.n == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(t.diag.lines[i], want[i]) == 0;
    if (!same) {
        print_error("config %s\n", json);
        for (size_t i = 0; i < t.diag.n; i++)
            print_error("  got:  %s\n", t.diag.lines[i]);
        for (size_t i = 0; i < n; i++)
            print_error("  want: %s\n", want[i]);
        tcfg_free(&t);
        fail();
    }
    tcfg_free(&t);
}

/* EXPECT: exactly these errors; EXPECT_OK: none. */
#define EXPECT(ops, json, ...) \
    expect_validate(ops, json, (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_OK(ops, json) expect_validate(ops, json, (const char *const[]){ NULL })

static void test_manual_validate(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "manual");
    assert_true(ops->oauth);
    assert_null(ops->smtp_host);
    assert_string_equal(ops->mechanisms[0], "XOAUTH2");
    assert_string_equal(ops->mechanisms[1], "OAUTHBEARER");
    assert_null(ops->mechanisms[2]);

    /* missing endpoints: each message names the key */
    EXPECT(ops, "{\"user\":\"u@example.org\",\"client_id\":\"id\"}",
           "servers[0].auth.token_url: required by the manual provider (the token endpoint)",
           "servers[0].auth: the manual provider needs authorization_url or "
           "device_authorization_url (unless \"grant\" is \"client_credentials\")");
    EXPECT(ops, "{\"user\":\"u@example.org\"}",
           "servers[0].auth.client_id: required (the OAuth client ID of the app registration)",
           "servers[0].auth.token_url: required by the manual provider (the token endpoint)",
           "servers[0].auth: the manual provider needs authorization_url or "
           "device_authorization_url (unless \"grant\" is \"client_credentials\")");
    EXPECT(ops, "{\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                "\"authorization_url\":\"https://idp.example/auth\"}",
           "servers[0].auth.user: required (the account that logs in to the SMTP server)");
    /* complete */
    EXPECT_OK(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                "\"device_authorization_url\":\"https://idp.example/device\"}");
    /* client_credentials: no authorization endpoint needed, a secret is */
    EXPECT_OK(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                "\"grant\":\"client_credentials\",\"client_secret_env\":\"S\"}");
    EXPECT(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                "\"grant\":\"client_credentials\"}",
           "servers[0].auth.grant: \"client_credentials\" needs a client secret (client_secret, "
           "client_secret_file, client_secret_env or client_secret_command)");
    EXPECT(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                "\"authorization_url\":\"https://idp.example/auth\",\"grant\":\"device_code\"}",
           "servers[0].auth.device_authorization_url: required when \"grant\" is \"device_code\"");
    /* tokens from a command: no endpoint or client is used */
    EXPECT_OK(ops, "{\"user\":\"u\",\"access_token_command\":\"pass show token\"}");
    mc__registry_free(reg);
}

/* Rules shared by the OAuth providers: URLs, client_auth, grant, mechanism. */
static void test_oauth_common_rules(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "manual");
#define OK_BASE "\"user\":\"u\",\"client_id\":\"id\",\"authorization_url\":\"https://idp.example/a\","
    static const char *const good_urls[] = {
        "https://idp.example/token", "http://127.0.0.1:8080/token", "http://[::1]/token",
        "http://localhost/token", "http://localhost", "https://idp.example:8443/t?x=1",
    };
    for (size_t i = 0; i < sizeof(good_urls) / sizeof(good_urls[0]); i++) {
        char *json = NULL;
        assert_true(asprintf(&json, "{" OK_BASE "\"token_url\":\"%s\"}", good_urls[i]) > 0);
        EXPECT_OK(ops, json);
        free(json);
    }
    static const char *const bad_urls[] = {
        "http://idp.example/token", "http://localhost.evil.example/", "http://127.0.0.1.evil/",
        "ftp://idp.example/", "https://", "idp.example/token", "https://idp.example/a b",
    };
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        char *json = NULL, *want = NULL;
        assert_true(asprintf(&json, "{" OK_BASE "\"token_url\":\"%s\"}", bad_urls[i]) > 0);
        assert_true(asprintf(&want, "servers[0].auth.token_url: must be an https:// URL "
                                    "(http:// only to 127.0.0.1, [::1] or localhost), got \"%s\"",
                             bad_urls[i]) > 0);
        EXPECT(ops, json, want);
        free(json);
        free(want);
    }
    EXPECT(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"client_auth\":\"jwt\"}",
           "servers[0].auth.client_auth: must be \"post\", \"basic\" or \"none\", got \"jwt\"");
    EXPECT(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"client_auth\":\"basic\"}",
           "servers[0].auth.client_auth: \"basic\" needs a client secret (client_secret, "
           "client_secret_file, client_secret_env or client_secret_command)");
    EXPECT_OK(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"client_auth\":\"post\","
                "\"client_secret_file\":\"/s\"}");
    EXPECT_OK(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"client_auth\":\"none\"}");
    EXPECT(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"grant\":\"password\"}",
           "servers[0].auth.grant: must be \"authorization_code\", \"device_code\" or "
           "\"client_credentials\", got \"password\"");
    EXPECT(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"mechanism\":\"PLAIN\"}",
           "servers[0].auth.mechanism: must be \"XOAUTH2\" or \"OAUTHBEARER\", got \"PLAIN\"");
    EXPECT_OK(ops, "{" OK_BASE "\"token_url\":\"https://i/t\",\"mechanism\":\"OAUTHBEARER\"}");
#undef OK_BASE
    mc__registry_free(reg);
}

static void test_manual_profile(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "manual");
    tcfg t;
    tcfg_init(&t, "{\"user\":\"u\",\"client_id\":\"id\",\"token_url\":\"https://idp.example/token\","
                  "\"device_authorization_url\":\"https://idp.example/device\","
                  "\"scope\":\"smtp offline\",\"params\":{\"audience\":\"mail\"}}");
    mc_oauth_profile prof;
    mc_err *err = NULL;
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_int_equal(prof.size, sizeof(prof));
    assert_string_equal(prof.token_url, "https://idp.example/token");
    assert_string_equal(prof.device_authorization_url, "https://idp.example/device");
    assert_string_equal(prof.authorization_url, "");
    assert_string_equal(prof.revocation_url, "");
    assert_string_equal(prof.scope, "smtp offline");
    assert_int_equal(prof.flows, MC_FLOW_DEVICE);
    assert_int_equal(prof.default_headless, MC_FLOW_DEVICE);
    assert_string_equal(prof.params[0], "audience=mail");
    assert_null(prof.params[1]);
    tcfg_free(&t);
    mc__registry_free(reg);
}

/* Google: the device grant is refused for Gmail with an explanation; the
 * profile carries Google's endpoints and parameters, and overrides win. */
static void test_google(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "google");
    assert_true(ops->oauth);
    assert_string_equal(ops->smtp_host, "smtp.gmail.com");
    assert_int_equal(ops->smtp_port, 465);
    assert_string_equal(ops->smtp_transport, "tls");
    assert_null(ops->credentials);

    EXPECT(ops, "{\"user\":\"me@gmail.com\",\"client_id\":\"id\",\"grant\":\"device_code\"}",
           "servers[0].auth.grant: \"device_code\" is not allowed for Gmail: Google's device "
           "flow does not grant the https://mail.google.com/ scope (invalid_scope); use "
           "\"authorization_code\" (browser or paste)");
    EXPECT_OK(ops, "{\"user\":\"me@gmail.com\",\"client_id\":\"id\"}");
    EXPECT_OK(ops, "{\"user\":\"me@gmail.com\",\"client_id\":\"id\",\"grant\":\"authorization_code\","
                "\"client_secret_file\":\"/etc/mailconn/google.secret\"}");

    tcfg t;
    tcfg_init(&t, "{\"user\":\"me@gmail.com\",\"client_id\":\"id\"}");
    mc_oauth_profile prof;
    mc_err *err = NULL;
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.authorization_url, "https://accounts.google.com/o/oauth2/v2/auth");
    assert_string_equal(prof.token_url, "https://oauth2.googleapis.com/token");
    assert_string_equal(prof.device_authorization_url, "https://oauth2.googleapis.com/device/code");
    assert_string_equal(prof.revocation_url, "https://oauth2.googleapis.com/revoke");
    assert_string_equal(prof.scope, "https://mail.google.com/");
    assert_string_equal(prof.params[0], "access_type=offline");
    assert_string_equal(prof.params[1], "prompt=consent");
    assert_null(prof.params[2]);
    assert_int_equal(prof.flows, MC_FLOW_AUTH_CODE | MC_FLOW_PASTE);
    assert_int_equal(prof.default_headless, MC_FLOW_PASTE);
    assert_false(prof.rotates_refresh);
    assert_int_equal(prof.refresh_lifetime_days, 0);
    bool grant_hint = false, scope_hint = false, smtp_hint = false;
    for (const mc_hint *h = prof.hints; h && h->match; h++) {
        if (strcmp(h->match, "invalid_grant") == 0)
            grant_hint = strstr(h->hint, "Testing") && strstr(h->hint, "7 days")
                         && strstr(h->hint, "within days of authorizing");
        if (strcmp(h->match, "invalid_scope") == 0)
            scope_hint = strstr(h->hint, "device flow") != NULL;
        if (strcmp(h->match, "5.7.8") == 0)
            smtp_hint = strstr(h->hint, "auth.user") != NULL;
    }
    assert_true(grant_hint && scope_hint && smtp_hint);
    tcfg_free(&t);

    /* explicit keys win; config params add to (and replace) Google's */
    tcfg_init(&t, "{\"user\":\"me@gmail.com\",\"client_id\":\"id\","
                  "\"token_url\":\"http://127.0.0.1:9999/token\",\"scope\":\"s1 s2\","
                  "\"authorization_url\":\"http://localhost:9999/auth\","
                  "\"params\":{\"login_hint\":\"me@gmail.com\",\"prompt\":\"select_account\"}}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.token_url, "http://127.0.0.1:9999/token");
    assert_string_equal(prof.authorization_url, "http://localhost:9999/auth");
    assert_string_equal(prof.revocation_url, "https://oauth2.googleapis.com/revoke");
    assert_string_equal(prof.scope, "s1 s2");
    assert_string_equal(prof.params[0], "access_type=offline");
    assert_string_equal(prof.params[1], "login_hint=me@gmail.com");
    assert_string_equal(prof.params[2], "prompt=select_account");
    assert_null(prof.params[3]);
    /* each profile has its own copy of the parameters (the core owns them) */
    mc_oauth_profile again;
    assert_int_equal(tprofile(ops, &t.cfg, &again, &err), 0);
    assert_ptr_not_equal(again.params, prof.params);
    for (size_t i = 0; i < 4; i++)
        assert_true(prof.params[i] ? again.params[i] && !strcmp(prof.params[i], again.params[i])
                                   : !again.params[i]);
    assert_null(err);
    tcfg_free(&t);
    mc__registry_free(reg);
}

/* Microsoft: endpoints from authority + tenant, explicit URLs win, the
 * client-credentials scope, the tenant rule. */
static void test_microsoft(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "microsoft");
    assert_string_equal(ops->smtp_host, "smtp.office365.com");
    assert_int_equal(ops->smtp_port, 587);
    assert_string_equal(ops->smtp_transport, "starttls");
    assert_int_equal(ops->max_connections, 3);
    mc_oauth_profile prof;
    mc_err *err = NULL;
    tcfg t;

    /* defaults: login.microsoftonline.com, tenant common */
    tcfg_init(&t, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\"}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.authorization_url,
                        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize");
    assert_string_equal(prof.token_url, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    assert_string_equal(prof.device_authorization_url,
                        "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode");
    assert_string_equal(prof.revocation_url, "");
    assert_string_equal(prof.scope, "https://outlook.office.com/SMTP.Send offline_access");
    assert_int_equal(prof.flows, MC_FLOW_AUTH_CODE | MC_FLOW_PASTE | MC_FLOW_DEVICE
                                 | MC_FLOW_CLIENT_CREDENTIALS);
    assert_int_equal(prof.default_headless, MC_FLOW_DEVICE);
    assert_true(prof.rotates_refresh);
    assert_int_equal(prof.refresh_lifetime_days, 90);
    assert_null(prof.params[0]);
    static const char *const codes[] = {
        "AADSTS7000012", "AADSTS700082", "AADSTS65001", "AADSTS7000218", "5.7.139", "5.7.3", "5.7.30",
        "AADSTS50173", "AADSTS70043", "AADSTS7000222", "AADSTS700016", "SendAsDenied", "4.2.0",
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        bool found = false;
        for (const mc_hint *h = prof.hints; h->match; h++)
            found = found || strcmp(h->match, codes[i]) == 0;
        if (!found)
            fail_msg("no hint for %s", codes[i]);
    }
    /* issue 9: the replies and token errors as Microsoft sends them get
     * their hint (the first that matches), UI-neutral: no CLI command */
    static const struct { const char *text, *match, *says; } seen[] = {
        { "5.7.30 Basic authentication is not supported for Client Submission.", "5.7.30",
          "basic authentication for SMTP is off" },
        { "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; "
          "Failed to process message due to a permanent exception", "SendAsDenied", "Send As right" },
        { "4.2.0 STOREDRV; mailbox logon failure; MapiExceptionLogonFailed", "4.2.0",
          "could not log on to the mailbox" },
        { "invalid_grant AADSTS50173: The provided grant has expired due to it being revoked",
          "AADSTS50173", "authorize this server again" },
        { "invalid_grant AADSTS70043: The refresh token has expired or is invalid due to sign-in "
          "frequency checks by conditional access", "AADSTS70043", "authorize this server again" },
        { "invalid_client AADSTS7000222: The provided client secret keys are expired.",
          "AADSTS7000222", "client secret has expired" },
        { "unauthorized_client AADSTS700016: Application with identifier 'x' was not found in the "
          "directory 'contoso'.", "AADSTS700016", "check auth.client_id and auth.tenant" },
    };
    for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
        const mc_hint *first = NULL;
        for (const mc_hint *h = prof.hints; h->match && !first; h++)
            if (strstr(seen[i].text, h->match))
                first = h;
        assert_non_null(first);
        assert_string_equal(first->match, seen[i].match);
        if (!strstr(first->hint, seen[i].says))
            fail_msg("hint for %s: \"%s\"", seen[i].match, first->hint);
        assert_null(strstr(first->hint, "mailconn"));
    }
    /* the first hint matching "550 5.7.30 ..." is the 5.7.30 one, not 5.7.3 */
    for (const mc_hint *h = prof.hints; h->match; h++) {
        if (strstr("550 5.7.30 Basic authentication is not supported", h->match)) {
            assert_string_equal(h->match, "5.7.30");
            break;
        }
    }
    tcfg_free(&t);

    /* authority (trailing slash stripped) + tenant */
    tcfg_init(&t, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\","
                  "\"authority\":\"https://login.microsoftonline.us/\","
                  "\"tenant\":\"contoso.onmicrosoft.com\"}");
    EXPECT_OK(ops, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\","
                "\"authority\":\"https://login.microsoftonline.us/\","
                "\"tenant\":\"contoso.onmicrosoft.com\"}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.authorization_url,
                        "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/authorize");
    assert_string_equal(prof.token_url,
                        "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token");
    assert_string_equal(prof.device_authorization_url,
                        "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/devicecode");
    tcfg_free(&t);

    /* an explicit token_url wins over authority + tenant */
    tcfg_init(&t, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\",\"tenant\":\"organizations\","
                  "\"token_url\":\"http://127.0.0.1:8080/mock/token\"}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.token_url, "http://127.0.0.1:8080/mock/token");
    assert_string_equal(prof.authorization_url,
                        "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize");
    tcfg_free(&t);

    /* client credentials: the app-only scope; an explicit scope still wins */
    tcfg_init(&t, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\",\"tenant\":\"contoso.com\","
                  "\"grant\":\"client_credentials\",\"client_secret_env\":\"MS_SECRET\"}");
    EXPECT_OK(ops, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\",\"tenant\":\"contoso.com\","
                "\"grant\":\"client_credentials\",\"client_secret_env\":\"MS_SECRET\"}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.scope, "https://outlook.office365.com/.default");
    tcfg_free(&t);
    tcfg_init(&t, "{\"user\":\"me@contoso.com\",\"client_id\":\"id\",\"grant\":\"client_credentials\","
                  "\"client_secret_env\":\"MS_SECRET\",\"scope\":\"https://outlook.office365.us/.default\"}");
    assert_int_equal(tprofile(ops, &t.cfg, &prof, &err), 0);
    assert_string_equal(prof.scope, "https://outlook.office365.us/.default");
    tcfg_free(&t);
    assert_null(err);

    /* tenant and authority rules */
    EXPECT(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"tenant\":\"contoso/../x\"}",
           "servers[0].auth.tenant: must be a tenant ID, a domain, \"common\", \"organizations\" "
           "or \"consumers\" ([A-Za-z0-9.-], not empty), got \"contoso/../x\"");
    EXPECT(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"tenant\":\"\"}",
           "servers[0].auth.tenant: must be a tenant ID, a domain, \"common\", \"organizations\" "
           "or \"consumers\" ([A-Za-z0-9.-], not empty), got \"\"");
    EXPECT(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"authority\":\"http://login.example\"}",
           "servers[0].auth.authority: must be an https:// URL (http:// only to 127.0.0.1, "
           "[::1] or localhost), got \"http://login.example\"");
    EXPECT_OK(ops, "{\"user\":\"u\",\"client_id\":\"id\",\"grant\":\"device_code\"}");
    mc__registry_free(reg);
}

/* basic: validate rules and credentials() from password_env. */
static void test_basic(void **state)
{
    (void)state;
    mc__registry *reg;
    const mc_auth_ops *ops = provider(&reg, "basic");
    assert_false(ops->oauth);
    assert_string_equal(ops->mechanisms[0], "PLAIN");
    assert_string_equal(ops->mechanisms[1], "LOGIN");
    assert_null(ops->mechanisms[2]);
    assert_null(ops->oauth_profile);

    EXPECT(ops, "{\"user\":\"app\"}",
           "servers[0].auth: needs one of password, password_file, password_env, password_command");
    EXPECT(ops, "{\"password_env\":\"X\"}",
           "servers[0].auth.user: required (the user name to log in with)");
    EXPECT(ops, "{\"user\":\"app\",\"password_env\":\"X\",\"mechanism\":\"CRAM-MD5\"}",
           "servers[0].auth.mechanism: must be \"PLAIN\" or \"LOGIN\", got \"CRAM-MD5\"");
    EXPECT_OK(ops, "{\"user\":\"app\",\"password_command\":\"pass relay\",\"mechanism\":\"LOGIN\"}");

    assert_int_equal(setenv("MC_TEST_LOADER_PW", "s3cret-relay-pw", 1), 0);
    tcfg t;
    tcfg_init(&t, "{\"user\":\"app\",\"password_env\":\"MC_TEST_LOADER_PW\"}");
    mc_credentials cred = { NULL, NULL };
    mc_err *err = NULL;
    if (ops->credentials(&thc, &t.cfg, &cred, &err) != 0)
        fail_msg("credentials: %s", err ? err->message : "?");
    assert_string_equal(cred.user, "app");
    assert_string_equal(cred.password, "s3cret-relay-pw");
    const mc_host_api *host = mc__host();
    host->free(cred.user);
    host->free_secret(cred.password);
    tcfg_free(&t);

    /* an unset variable is a secret error, not an empty password */
    assert_int_equal(unsetenv("MC_TEST_LOADER_PW"), 0);
    tcfg_init(&t, "{\"user\":\"app\",\"password_env\":\"MC_TEST_LOADER_PW\"}");
    cred = (mc_credentials){ NULL, NULL };
    assert_int_equal(ops->credentials(&thc, &t.cfg, &cred, &err), MC_ESECRET);
    assert_non_null(err);
    assert_null(cred.password);
    mc_error_free(err);
    tcfg_free(&t);
    mc__registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_plugins_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_get_rejects_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_once_per_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_fini_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_file_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_folder_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_file_loaded_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_name_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_plugins_load_beside_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_thread_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oauth_common_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_google, setup, teardown),
        cmocka_unit_test_setup_teardown(test_microsoft, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
    };
    return cmocka_run_group_tests_name("loader", tests, group_setup, NULL);
}
