/* Purpose-made plugins for test-loader: one source, each variant built with
 * its own -D flags (see meson.build). Every variant notes a call of its
 * entry (appending "<name>;" to $MC_TEST_PLUGIN_ENTRIES: at entry there is
 * no context to log to) and bumps $MC_TEST_PLUGIN_OPENS from a constructor,
 * so the test can tell whether the loader opened the file and called the
 * entry. */
#include <stdio.h>
#include <stdlib.h>

#include "mailconn/plugin.h"

#ifndef BAD_NAME
#error "BAD_NAME must be defined"
#endif
#ifndef BAD_ABI_MAJOR
#define BAD_ABI_MAJOR MC_PLUGIN_ABI_MAJOR
#endif
#ifndef BAD_ABI_MINOR
#define BAD_ABI_MINOR MC_PLUGIN_ABI_MINOR
#endif
#ifndef BAD_KIND
#define BAD_KIND MC_PLUGIN_AUTH
#endif
#ifndef BAD_OPS_SIZE
#define BAD_OPS_SIZE sizeof(mc_auth_ops)
#endif
#ifndef BAD_OPS
#define BAD_OPS (&probe_ops)
#endif
#ifndef BAD_DESC
#define BAD_DESC (&probe_desc)
#endif
#ifndef BAD_ENTRY
#define BAD_ENTRY mc_plugin_entry
#endif

/* BAD_OPS_KIND picks the ops table: 1 auth (default), 4 proxy, 5 token
 * store. BAD_NO_TUNNEL / BAD_NO_OPEN / BAD_NO_STORE_OPS drop a required op;
 * BAD_INIT adds init/fini that append "init:<name>;" / "fini:<name>;" to
 * $MC_TEST_PLUGIN_ENTRIES; BAD_INIT_FAIL makes init fail. */
#ifndef BAD_OPS_KIND
#define BAD_OPS_KIND 1
#endif

static void note(const char *what)
{
    const char *v = getenv("MC_TEST_PLUGIN_ENTRIES");
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s%s%s;", v ? v : "", what, BAD_NAME);
    setenv("MC_TEST_PLUGIN_ENTRIES", buf, 1);
}

#ifdef BAD_INIT
static int probe_init(const mc_host_api *host, mc_err **err)
{
    (void)host;
    (void)err;
    note("init:");
#ifdef BAD_INIT_FAIL
    return MC_EPLUGIN;
#else
    return 0;
#endif
}

static void probe_fini(void)
{
    note("fini:");
}
#endif

#if BAD_OPS_KIND == 4
__attribute__((unused)) static int probe_tunnel(mc_host_ctx *hc, int fd, const char *host, uint16_t port,
                        const mc_proxy_auth *auth, const mc_plugin_cfg *cfg, int64_t deadline_ms,
                        mc_err **err)
{
    (void)hc, (void)fd, (void)host, (void)port, (void)auth, (void)cfg, (void)deadline_ms;
    (void)err;
    return MC_EPROTO;
}
#ifndef BAD_OPS_SIZE_PROXY
#define BAD_OPS_SIZE_PROXY sizeof(mc_proxy_ops)
#endif
static const mc_proxy_ops probe_proxy_ops = {
    .size = BAD_OPS_SIZE_PROXY,
    .default_port = 1080,
#ifndef BAD_NO_TUNNEL
    .tunnel = probe_tunnel,
#endif
};
#undef BAD_OPS
#define BAD_OPS (&probe_proxy_ops)
#elif BAD_OPS_KIND == 5
__attribute__((unused)) static const mc_token_store_ops probe_token_ops = { .size = sizeof(mc_token_store_ops) };
__attribute__((unused)) static int probe_open(mc_host_ctx *hc, const mc_plugin_cfg *cfg, void **store, mc_err **err)
{
    (void)hc, (void)cfg, (void)err;
    *store = NULL;
    return 0;
}
static const mc_store_plugin_ops probe_store_ops = {
    .size = sizeof(mc_store_plugin_ops),
#ifndef BAD_NO_OPEN
    .open = probe_open,
#endif
#ifndef BAD_NO_STORE_OPS
    .ops = &probe_token_ops,
#endif
};
#undef BAD_OPS
#define BAD_OPS (&probe_store_ops)
#endif

static const char *const probe_mechanisms[] = { "PLAIN", NULL };
static const char *const probe_keys[] = { "user", NULL };

__attribute__((unused)) static const mc_auth_ops probe_ops = {
    .size = BAD_OPS_SIZE,
    .mechanisms = probe_mechanisms,
    .keys = probe_keys,
};

__attribute__((unused)) static const mc_plugin_desc probe_desc = {
    .abi_major = BAD_ABI_MAJOR,
    .abi_minor = BAD_ABI_MINOR,
    .kind = (mc_plugin_kind)BAD_KIND,
    .name = BAD_NAME,
    .version = "0.0.1",
    .summary = "test-loader plugin",
    .ops = BAD_OPS,
#ifdef BAD_INIT
    .init = probe_init,
    .fini = probe_fini,
#endif
};

__attribute__((constructor)) static void count_open(void)
{
    const char *v = getenv("MC_TEST_PLUGIN_OPENS");
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", (v ? atoi(v) : 0) + 1);
    setenv("MC_TEST_PLUGIN_OPENS", buf, 1);
}

MC_PLUGIN_EXPORT const mc_plugin_desc *BAD_ENTRY(const mc_host_api *host);
const mc_plugin_desc *BAD_ENTRY(const mc_host_api *host)
{
    (void)host;
    note("");
    return BAD_DESC;
}
