/* proxy: a server's "proxy" object, the route built from it, and the
 * tunnel host->tcp_connect makes through it (core-internal). */
#ifndef MC_CORE_PROXY_H
#define MC_CORE_PROXY_H

#include <stdbool.h>
#include "mailconn/plugin.h"
#include "config.h"

struct json_object;

/** The route through one proxy (opaque to plugins: mc_connect_opts.proxy,
 *  mc_oauth_request.proxy). Owned by its mc_server; cfg.obj is borrowed
 *  from the config document. */
struct mc_proxy_route {
    const mc_proxy_ops *ops;
    char               *type;
    char               *host;
    uint16_t            port;
    mc_plugin_cfg       cfg;      /* the proxy object; path owned; diag NULL */
};

/** Validate the proxy object at `path` ("servers[0].proxy") with the
 *  plugin proxy-<type>.so of reg: common keys, the plugin's keys and its
 *  validate, the plaintext credentials rule. Errors go to d. *out: the
 *  route (NULL when the object has errors). @return 0, MC_ENOMEM. */
int mc__proxy_prepare(mc__diag *d, mc__registry *reg, struct json_object *obj,
                      const char *path, struct mc_proxy_route **out);

/** Whether an inline "password" is in the proxy object (the file-mode rule). */
bool mc__proxy_has_inline_secret(struct json_object *obj);

void mc__proxy_route_free(struct mc_proxy_route *r);

/** Wipe the inline proxy passwords of a server object ("proxy" and
 *  "auth.proxy"); to_null: replace them with null too (what the server's
 *  JSON shows). @return 0, MC_ENOMEM. */
int mc__proxy_wipe_secrets(struct json_object *server, bool to_null);

/** Connect to o->proxy's proxy (same deadline as o) and tunnel to
 *  o->host:o->port. Stage MC_STAGE_PROXY on failure: 75 unreachable, 77
 *  credentials refused, 69 tunnel refused; each names the proxy.
 *  @return 0 with *fd_out, or the error. */
int mc__proxy_connect(mc_host_ctx *hc, const mc_connect_opts *o, int *fd_out, mc_err **err);

#endif
