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
    const char *v = getenv("MC_TEST_PLUGIN_ENTRIES");
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s%s;", v ? v : "", BAD_NAME);
    setenv("MC_TEST_PLUGIN_ENTRIES", buf, 1);
    return BAD_DESC;
}
