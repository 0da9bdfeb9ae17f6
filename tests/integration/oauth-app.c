/* oauth-app: a web application's OAuth, through mailconn.h alone (linked to
 * libmailconn.so), for tests/integration/test-oauth-app.js. Each run is one
 * process with its own context: begin in one, finish in another.
 *
 *   oauth-app CONFIG STATE_DIR begin SERVER REDIRECT_URI  -> "url URL"
 *   oauth-app CONFIG STATE_DIR finish SERVER CALLBACK_URL -> "ok finish"
 *   oauth-app CONFIG STATE_DIR status SERVER
 *       -> "status stored=0|1 mismatch=0|1 access_expires=N refresh_issued=N
 *           days_left=N warning=W grant=G store_code=N"
 *   oauth-app CONFIG STATE_DIR revoke SERVER              -> "ok revoke"
 *   oauth-app CONFIG STATE_DIR reload SERVER NEW_CONFIG   -> status (the
 *       store in use), then mc_context_reload(NEW_CONFIG): "ok reload"
 *   oauth-app CONFIG STATE_DIR device SERVER WAIT_S
 *       -> "device user_code=U uri=V interval=N expires_in=N" (flushed), then
 *          waits: "ok device"
 *
 * With $OAUTH_APP_STORE set to a folder, the context gets the application's
 * own token store (mc_context_options.token_store): records and pending
 * authorizations as files in that folder, named "rec-SERVER" and
 * "pend-STATE" (a test store: no safety checks), the lock an flock.
 *
 * A failure prints "error NAME outcome=N stage=S message" and exits 1; a
 * bad command line exits 2. The test compares these, never passes them on. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "mailconn/mailconn.h"

static int fail(int rc, mc_err *err)
{
    printf("error %s outcome=%d stage=%s %s\n", mc_error_name(rc), err ? (int)err->outcome : -1,
           err ? mc_stage_name(err->stage) : "-", err && err->message ? err->message : "-");
    mc_error_free(err);
    return 1;
}

/* ------------------------------------------------------------ the application's store */

typedef struct app_store {
    const char *dir;
    int         lock_fd;
} app_store;

static char *app_path(const app_store *a, const char *kind, const char *key)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s-%s", a->dir, kind, key) < 0 ? NULL : p;
}

static int app_fail(mc_err **err, const char *what)
{
    (void)err;   /* the library fills a generic error when the store does not */
    fprintf(stderr, "oauth-app store: %s: %s\n", what, strerror(errno));
    return MC_EFILE;
}

static int app_read(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!buf)
        return -1;
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static int app_write(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static int s_lock(void *store, const mc_token_identity *id, long long deadline_ms, mc_err **err)
{
    (void)deadline_ms;
    app_store *a = store;
    char *p = app_path(a, "lock", id->server);
    a->lock_fd = p ? open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    free(p);
    if (a->lock_fd < 0 || flock(a->lock_fd, LOCK_EX) != 0)
        return app_fail(err, "lock");
    return 0;
}

static void s_unlock(void *store, const mc_token_identity *id)
{
    (void)id;
    app_store *a = store;
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    a->lock_fd = -1;
}

static int s_load(void *store, const mc_token_identity *id, char **data, size_t *len,
                  mc_err **err)
{
    char *p = app_path(store, "rec", id->server);
    int rc = p ? app_read(p, data, len) : -1;
    free(p);
    return rc ? app_fail(err, "load") : 0;
}

static int s_save(void *store, const mc_token_identity *id, const char *data, size_t len,
                  mc_err **err)
{
    char *p = app_path(store, "rec", id->server);
    int rc = p ? app_write(p, data, len) : -1;
    free(p);
    return rc ? app_fail(err, "save") : 0;
}

static int s_remove(void *store, const mc_token_identity *id, mc_err **err)
{
    char *p = app_path(store, "rec", id->server);
    int rc = p && (unlink(p) == 0 || errno == ENOENT) ? 0 : -1;
    free(p);
    return rc ? app_fail(err, "remove") : 0;
}

static int s_pending_put(void *store, const char *state, const char *data, size_t len,
                         long long expires, mc_err **err)
{
    (void)expires;
    char *p = app_path(store, "pend", state);
    int rc = p ? app_write(p, data, len) : -1;
    free(p);
    return rc ? app_fail(err, "pending_put") : 0;
}

static int s_pending_take(void *store, const char *state, char **data, size_t *len,
                          mc_err **err)
{
    char *p = app_path(store, "pend", state);
    int rc = p ? app_read(p, data, len) : -1;
    if (!rc && *data)
        unlink(p);
    free(p);
    return rc ? app_fail(err, "pending_take") : 0;
}

static const mc_token_store_ops app_ops = {
    .size = sizeof(mc_token_store_ops),
    .lock = s_lock,
    .unlock = s_unlock,
    .load = s_load,
    .save = s_save,
    .remove = s_remove,
    .pending_put = s_pending_put,
    .pending_take = s_pending_take,
};

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: oauth-app CONFIG STATE_DIR begin|finish|status|revoke|device "
                        "SERVER [ARG]\n");
        return 2;
    }
    const char *cmd = argv[3], *server = argv[4], *arg = argc > 5 ? argv[5] : NULL;
    mc_context_options o = MC_CONTEXT_OPTIONS_INIT;
    o.config_path = argv[1];
    o.state_dir = argv[2];
    o.log_level = getenv("OAUTH_APP_DEBUG") ? MC_LOG_DEBUG : MC_LOG_WARN;
    app_store store = { getenv("OAUTH_APP_STORE"), -1 };
    if (store.dir && *store.dir) {
        o.token_store = &app_ops;
        o.token_store_payload = &store;
    }
    mc_context *ctx = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &o, &err);
    if (rc < 0)
        return fail(rc, err);

    if (!strcmp(cmd, "begin") && arg) {
        char *url = NULL;
        rc = mc_oauth_begin(&url, ctx, server, arg, &err);
        if (rc == 0)
            printf("url %s\n", url);
        mc_free(url);
    } else if (!strcmp(cmd, "finish") && arg) {
        if ((rc = mc_oauth_finish(ctx, server, arg, &err)) == 0)
            printf("ok finish\n");
    } else if (!strcmp(cmd, "status")) {
        mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
        if ((rc = mc_oauth_get_status(&st, ctx, server)) == 0)
            printf("status stored=%d mismatch=%d access_expires=%lld refresh_issued=%lld "
                   "days_left=%d warning=%s grant=%s store_code=%d\n", st.stored,
                   st.identity_mismatch, st.access_expires, st.refresh_issued, st.days_left,
                   st.warning[0] ? st.warning : "-", st.grant, st.store_code);
    } else if (!strcmp(cmd, "reload") && arg) {
        mc_token_status st = { .version = MC_TOKEN_STATUS_VERSION };
        if ((rc = mc_oauth_get_status(&st, ctx, server)) == 0) {
            printf("status stored=%d store_code=%d\n", st.stored, st.store_code);
            mc_context_options ro = MC_CONTEXT_OPTIONS_INIT;
            ro.config_path = arg;
            if ((rc = mc_context_reload(ctx, &ro, &err)) == 0)
                printf("ok reload\n");
        }
    } else if (!strcmp(cmd, "revoke")) {
        if ((rc = mc_oauth_revoke(ctx, server, &err)) == 0)
            printf("ok revoke\n");
    } else if (!strcmp(cmd, "device")) {
        mc_oauth_device *dev = NULL;
        if ((rc = mc_oauth_device_begin(&dev, ctx, server, &err)) == 0) {
            printf("device user_code=%s uri=%s interval=%d expires_in=%d\n", dev->user_code,
                   dev->verification_uri, dev->interval, dev->expires_in);
            fflush(stdout);
            rc = mc_oauth_device_wait(ctx, server, dev, arg ? atoi(arg) : 30, &err);
            if (rc == 0)
                printf("ok device\n");
        }
        mc_oauth_device_free(dev);
    } else {
        fprintf(stderr, "oauth-app: unknown command %s\n", cmd);
        mc_context_free(ctx);
        return 2;
    }
    mc_context_free(ctx);
    return rc == 0 ? 0 : fail(rc, err);
}
