/* config: JSON (json-c) -> servers; validation with JSON paths; the
 * default rule; atomic save (core-internal). */
#ifndef MC_CORE_CONFIG_H
#define MC_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "mailconn/plugin.h"
#include "error.h"

struct json_object;
typedef struct mc__registry mc__registry;

/** One field error behind a line: its JSON path and the message alone. */
typedef struct mc__diag_item {
    char *path;
    char *message;
} mc__diag_item;

/** The diagnostics sink behind mc_plugin_cfg / cfg_error: every error,
 *  each "path: message" (lines), and per field (items: usually one per
 *  line; "two defaults" has one per server marked). */
typedef struct mc__diag {
    char          **lines;
    size_t          n;
    mc__diag_item  *items;
    size_t          n_items;
} mc__diag;

/** Add one line; its item is read back from the line ("servers[N]...:
 *  message"; any other line: path "" and the whole line). A line already
 *  there is not added again. */
int  mc__diag_add(mc__diag *d, const char *fmt, ...) MC__FMT(2, 3);
/** Add one line "objname(path): message" with its item (path, message).
 *  @return 1 when added, 0 when the line was there already, MC_ENOMEM. */
int  mc__diag_add_at(mc__diag *d, const char *path, const char *item_path, const char *message);
/** Add an item without a line (a further field of the last line). */
int  mc__diag_item_add(mc__diag *d, const char *path, const char *message);
void mc__diag_free(mc__diag *d);

/** What plugins see as mc_plugin_cfg: a JSON object and its path. */
struct mc_plugin_cfg {
    struct json_object *obj;   /* borrowed from the config document */
    char               *path;  /* "servers[1].auth" */
    mc__diag           *diag;  /* where cfg_error() appends */
};

typedef enum mc__addr_case { MC__CASE_INSENSITIVE = 0, MC__CASE_SENSITIVE = 1 } mc__addr_case;

/** One server, every default applied. */
struct mc_server {
    size_t   index;            /* position in "servers" */
    char    *name;
    char    *host;             /* after provider defaults; never NULL once prepared */
    uint16_t port;             /* after defaults */
    char    *transport;        /* after defaults */
    char    *sender_address;   /* NULL when absent */
    char    *sender_name;
    bool     sender_override;
    bool     has_auth;
    char    *auth_provider;    /* NULL without auth */
    char    *auth_mechanism;   /* forced mechanism, or NULL */
    char    *auth_user;
    mc_plugin_cfg auth_cfg;    /* valid when has_auth */
    char    *ca_file;
    int      tls_min;          /* 12 or 13 */
    char    *helo;             /* NULL: the local host name */
    int      timeout_s;        /* 60 */
    int      max_recipients;   /* 100 */
    int      max_connections;  /* 10; provider may lower the default */
    bool     max_connections_set;
    int      idle_timeout_s;   /* 30 */
    mc__addr_case address_case;
    char    *charset;          /* "UTF-8" */
    bool     allow_plaintext_auth;
    int      refresh_margin_s; /* 600 */
    char    *log_file;
    bool     is_default;       /* after the default rule */
    bool     default_marked;   /* "default": true in the file */
    bool     port_set, transport_set, host_set;
    /* "proxy" and "auth.proxy" (core/proxy.c): objects borrowed from doc */
    struct json_object    *proxy_obj;
    struct mc_proxy_route *proxy;          /* after prepare; NULL: direct */
    int                    auth_proxy_mode; /* 0 the server's, 1 "none", 2 its own */
    struct json_object    *auth_proxy_obj;
    struct mc_proxy_route *auth_proxy_own;
    /* "transport_options": checked against the transport's keys and
     * validate by mc__config_prepare, passed as mc_connect_opts.options;
     * obj NULL when absent */
    mc_plugin_cfg          transport_cfg;
};

typedef struct mc__alias { char *name; char *address; } mc__alias;

typedef struct mc__config {
    char               *path;       /* as given; NULL for a config from text */
    bool                in_memory;  /* from text (mc__config_parse): edits change
                                       memory only, nothing is saved */
    char               *text;       /* the current text: as read, or as the last
                                       edit wrote it (holds inline secrets: wiped) */
    size_t              text_len;
    struct json_object *doc;        /* the parsed document (kept for save) */
    mc_server          *servers;
    size_t              n_servers;
    mc__alias          *aliases;
    size_t              n_aliases;
    mc_server          *def;        /* the default server or NULL */
    bool                inline_secret; /* some server has an inline secret */
    char               *log_file;   /* top-level "log_file": every outcome and failure */
    int                 syslog_facility; /* top-level "syslog": LOG_MAIL...; -1: off */
    /* top-level "queue" (DESIGN.md "System mail"): has_queue when present */
    bool                has_queue;
    int                 queue_max_age_s; /* 432000 */
    int                 queue_retry_s;   /* 60: the first pause, doubling up to 3600 */
    char               *queue_dir;      /* NULL: <state>/queue (system config: spooldir) */
    /* top-level "token_store" (DESIGN.md "Token stores and fleets"):
     * type NULL when absent (the built-in file store) */
    char               *token_store_type;  /* "file" or a plugin's name */
    mc_plugin_cfg       token_store_cfg;   /* obj borrowed from doc; path "token_store" */
    const mc_store_plugin_ops *token_store_ops; /* after prepare; NULL: the file store */
} mc__config;

/** The system config: it may not name a queue "dir" (the system queue is
 *  the build's spooldir). */
#define MC__SYSTEM_CONFIG "/etc/mailconn/config.json"

/** Where the config lives: --config, $MAILCONN_CONFIG,
 *  $XDG_CONFIG_HOME/mailconn/config.json (~/.config when unset),
 *  /etc/mailconn/config.json (first that exists among the last two; the
 *  XDG path when neither does). Returns a malloc'd string or NULL on OOM. */
char *mc__config_find(const char *explicit_path);

struct stat;
/** Whether a file is safe to take commands or secrets from (st: its
 *  fstat/stat): owned by the user or root, not writable by group or others,
 *  and the same for every folder from its own up to "/" (of the name as
 *  given and of what it resolves to), a root-owned sticky folder such as
 *  /tmp excepted. When not, why (size n) reads "PATH: what is wrong". */
bool mc__file_trusted(const char *path, const struct stat *st, char *why, size_t n);

/**
 * Read and validate the shape of the whole config: strict JSON (syntax
 * errors with line and column), duplicate keys, types, ranges, unknown
 * keys, strings without NUL/CR/LF, names, secret single-source, the default
 * rule, file mode (inline secret in a group/other-readable file), trust
 * (mc__file_trusted: the config, then its secret files and ca_files, before
 * any secret is read or command run: MC_ECONFIG). Errors are
 * collected in err->details, each "path: message"; err->message is the first
 * and the count.
 * @return 0, MC_EFILE (cannot read: outcome CONFIG), MC_ECONFIG, MC_ENOMEM.
 */
int mc__config_load(mc__config **out, const char *path, mc_err **err);
/** Parse from memory: an in-memory config (in_memory, no path; no
 *  file-mode checks). Shape only: mc__config_prepare() adds the plugins'
 *  rules. */
int mc__config_parse(mc__config **out, const char *text, size_t len, mc_err **err);

/**
 * The top-level log of a config that may not load (the CLI's failures
 * before a server is chosen, 78 included): read path as mc__config_load
 * does (a file others could change is not read) and take "log_file" and
 * "syslog" when the document is JSON and these two keys are valid, whatever
 * else is wrong in it. *log_file (malloc'd, or NULL) and *facility (-1: no
 * syslog) are set in any case. @return 0 when found, MC_ECONFIG otherwise.
 */
int mc__config_toplog(const char *path, char **log_file, int *facility);

/**
 * Second pass, with plugins: the transport and provider of each server
 * (every server, or only `only` when non-NULL) must exist in the registry;
 * the provider's keys are checked and its validate() runs; provider SMTP
 * defaults fill host/port/transport; host required unless the provider has
 * defaults; "transport_options" against the transport's keys and
 * validate(); auth over a transport that is not encrypted (its declared
 * security, or for an undeclared one the name "plain") without
 * allow_plaintext_auth is an error.
 * Errors appended like mc__config_load.
 * @return 0, MC_ECONFIG, MC_ENOMEM.
 */
int mc__config_prepare(mc__config *cfg, mc__registry *reg, const mc_server *only,
                       mc_err **err);

/** Resolve every secret and open every ca_file of every server
 *  (`check --secrets`). Errors collected. @return 0, MC_ECONFIG. */
int mc__config_check_secrets(mc__config *cfg, mc_err **err);

/** A server by name (NULL: the default). */
mc_server *mc__config_server(mc__config *cfg, const char *name);

/** Alias lookup for a bare local name; NULL when none. */
const char *mc__config_alias(const mc__config *cfg, const char *name);

/* ----- editing (the text side of core/edit.c). None of these changes
 * cfg: each builds the text of a successor, which mc__config_reparse()
 * validates and mc__config_save() writes. Texts may hold inline secrets:
 * release them with mc__text_free(). */

/** The text of `cfg` with one server put: server_json's object replaces
 *  the server of the same "name" (at its index) or is appended; a secret
 *  member ("password", "client_secret") given as null takes the current
 *  server's inline value (none to take: an error at that key). The text
 *  is the document re-printed (keys in order, 2-space indent).
 *  @return 0, MC_ECONFIG (err->diags), MC_EINVAL, MC_ENOMEM. */
int mc__config_put_text(char **out, size_t *len, const mc__config *cfg, const char *server_json,
                        mc_err **err);
/** The text of `cfg` without the server `name`.
 *  @return 0, MC_ENOSERVER, MC_EINVAL, MC_ENOMEM. */
int mc__config_remove_text(char **out, size_t *len, const mc__config *cfg, const char *name,
                           mc_err **err);
/** Read `text` as the successor of `like`: in memory when like is, else
 *  with like's path and the file rules of mc__config_load (an inline
 *  secret in a group/other-readable file; files it names trusted). Shape
 *  only (mc__config_prepare next). @return as mc__config_load. */
int mc__config_reparse(mc__config **out, const mc__config *like, const char *text, size_t len,
                       mc_err **err);
/** Write cfg->text to cfg->path atomically, mode kept (mc__file_replace);
 *  an in-memory config: nothing to do. @return 0, MC_EFILE, MC_ENOMEM. */
int mc__config_save(const mc__config *cfg, mc_err **err);
/** One server's object (name NULL: the default) as JSON text, every inline
 *  secret value null. @return 0, MC_ENOSERVER, MC_ENOMEM. */
int mc__config_server_json(char **out, const mc__config *cfg, const char *name);
/** Wipe and release a text of these functions. NULL is fine. */
void mc__text_free(char *text);

/** Move the default mark and save atomically (an in-memory config: memory
 *  only). @return 0, MC_ENOSERVER, MC_EFILE. */
int mc__config_set_default(mc__config *cfg, const char *name, mc_err **err);

/** Atomic replace of `path` (a symlink: its target) with `data`: temp file
 *  in the same folder, fsync, rename, fsync of the folder; mode `mode`
 *  (or, when mode < 0, the original file's mode). @return 0 or MC_EFILE. */
int mc__file_replace(const char *path, const char *data, size_t len, int mode, mc_err **err);

void mc__config_free(mc__config *cfg);

/** What a connection of this transport with these options is: its
 *  security_of, else its security; UNDECLARED for a 2.0 transport (then
 *  judged by its name). */
mc_transport_security mc__transport_security(const mc_transport_ops *ops, mc_host_ctx *hc,
                                             const mc_plugin_cfg *options);

#endif
