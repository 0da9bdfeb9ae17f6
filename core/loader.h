/* loader: find and dlopen plugins, check the ABI, registry by kind+name
 * (core-internal). */
#ifndef MC_CORE_LOADER_H
#define MC_CORE_LOADER_H

#include <stdbool.h>
#include "mailconn/plugin.h"

typedef struct mc__plugin {
    const mc_plugin_desc *desc;
    char                 *file;     /* real path */
    void                 *handle;   /* dlopen handle */
} mc__plugin;

typedef struct mc__registry mc__registry;

/** A registry searching, in order: plugin_dir (may be NULL),
 *  $MAILCONN_PLUGIN_PATH (colon list), the build tree when run from it,
 *  the installed $libdir/mailconn/plugins. Nothing is opened yet.
 *  @return 0, MC_ENOMEM. */
int mc__registry_new(mc__registry **out, const char *plugin_dir, mc_err **err);

/** Open every plugin in the search path. Rejected files are logged at
 *  MC_LOG_WARN, one line each naming the file and why (a plugin of another
 *  ABI major: "<file>: built for ABI 1.1, this is 2.0"); good plugins still
 *  load. @return 0 (even when some were rejected). */
int mc__registry_load_all(mc__registry *reg);

/** The plugin of this kind and name, opening `<kind>-<name>.so` from the
 *  search path on first use (kind transport: "transport-", auth: "auth-",
 *  engine: "engine-"). @return 0, MC_EPLUGIN (not found or rejected; the
 *  message names the file or says none was found). Thread-safe. */
int mc__registry_get(mc__registry *reg, mc_plugin_kind kind, const char *name,
                     const mc__plugin **out, mc_err **err);

/** Whether a plugin file for kind+name exists in the search path, without
 *  opening it. */
bool mc__registry_exists(mc__registry *reg, mc_plugin_kind kind, const char *name);

/** Visit every loaded plugin in load order. */
void mc__registry_each(mc__registry *reg,
                       void (*fn)(const mc__plugin *p, void *payload), void *payload);

/** Where the registry's lines (rejections, loads) go: hc's sink (NULL,
 *  the default: stderr at MC_LOG_WARN). The lines are logged after the
 *  registry's lock is released. */
void mc__registry_set_log(mc__registry *reg, mc_host_ctx *hc);
/** The hc given to mc__registry_set_log (what a provider's validate()
 *  gets), or NULL. */
mc_host_ctx *mc__registry_hc(const mc__registry *reg);

/** "transport", "auth", "oauth-engine". */
const char *mc__plugin_kind_name(mc_plugin_kind kind);

/** dlclose everything and free. NULL is fine. */
void mc__registry_free(mc__registry *reg);

/** A registry searching exactly `dirs` (n of them, in order): no
 *  environment, no build tree, no installed folder. For tests and tools
 *  that must control the search path. @return 0, MC_ENOMEM. */
int mc__registry_new_dirs(mc__registry **out, const char *const *dirs, size_t n,
                          mc_err **err);

#endif
