/* store-postgresql.so: a token store on PostgreSQL for a fleet of machines
 * sharing one grant (DESIGN.md "Token stores and fleets", issue 14).
 *
 * "token_store": {"type": "postgresql", conninfo from one secret source
 * ("conninfo", "conninfo_env", "conninfo_file", "conninfo_command"),
 * "table" (default "mailconn_tokens"), "namespace" (default "default"),
 * "lock_timeout_s" (default 30, 1..3600), the key from one secret source
 * ("key_file", "key_env", "key_command": 32 bytes, base64 or hex, first
 * line), "key_id" (optional; default derived from the key)}.
 *
 * Tables (created if missing, under an advisory lock; schema 1 recorded as
 * the token table's comment): <table> (namespace, server) -> key_id, record
 * (version || nonce || AES-256-GCM ciphertext || tag, the identity as
 * associated data) and <table>_pending (namespace, SHA-256 of state) ->
 * key_id, record, expires.
 *
 * Connections: lock() takes a connection of its own (from a small idle
 * list, else a new one) and keeps it, with its transaction open, until
 * unlock() commits; load/save/remove from the thread holding the lock of
 * that server run on that connection, inside that transaction. Every other
 * op runs on the store's one shared connection, serialised by a mutex. A
 * process that dies closes its connections, and PostgreSQL ends their
 * transactions and row locks with them. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mailconn/plugin.h"
#include "pgcrypt.h"

#define SCHEMA_VERSION 1
#define SCHEMA_COMMENT "mailconn token store schema "
#define TABLE_MAX 54          /* + "_pending" stays within NAMEDATALEN - 1 */
#define NAMESPACE_MAX 200
#define IDLE_MAX 4
#define STATEMENT_TIMEOUT_MS 30000
#define RECORD_MAX (1 << 20)

static const mc_host_api *H;

typedef struct held {
    struct held *next;
    char        *server;
    pthread_t    thread;
    PGconn      *conn;
} held;

typedef struct pgstore {
    char           *conninfo;               /* secret: wiped */
    char            conninfo_key[32];       /* the config key it came from */
    uint8_t         key[PGC_KEY_LEN];       /* secret: wiped */
    char            key_id[PGC_KEYID_MAX + 1];
    char           *table, *ns;
    char           *qt, *qp;                /* quoted: "table", "table_pending" */
    long            lock_timeout_ms;
    char            where[256];             /* host=... port=... dbname=... (no password) */
    pthread_mutex_t mu;                     /* main, locks, idle */
    PGconn         *main;
    held           *locks;
    PGconn         *idle[IDLE_MAX];
    int             n_idle;
} pgstore;

static const char *const conninfo_keys[] = { "conninfo", "conninfo_env", "conninfo_file",
                                             "conninfo_command", NULL };
static const char *const key_keys[] = { "key_file", "key_env", "key_command", NULL };
static const char *const keys[] = { "conninfo", "conninfo_env", "conninfo_file",
                                    "conninfo_command", "table", "namespace", "lock_timeout_s",
                                    "key_file", "key_env", "key_command", "key_id", NULL };

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool ident_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TABLE_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int count_sources(const mc_plugin_cfg *cfg, const char *const *k, const char **first,
                         const char **second)
{
    int n = 0;
    *first = *second = NULL;
    for (; *k; k++) {
        if (H->cfg_has(cfg, *k)) {
            if (n == 0)
                *first = *k;
            else if (n == 1)
                *second = *k;
            n++;
        }
    }
    return n;
}

/* libpq's message with every quoted fragment that is not a conninfo
 * keyword dropped: a malformed conninfo may be quoted back (a password) */
static void scrub(const char *msg, char *out, size_t n)
{
    size_t o = 0;
    if (!n)
        return;
    PQconninfoOption *defs = PQconndefaults();
    for (const char *p = msg ? msg : ""; *p && o + 1 < n; p++) {
        if (*p == '\n' || *p == '\r')
            break;                  /* the first line says it; the rest is advice */
        if (*p == '"') {
            const char *e = strchr(p + 1, '"');
            if (e) {
                size_t len = (size_t)(e - p - 1);
                /* an address is no secret: digits, dots and colons */
                bool keyword = len > 0 && strspn(p + 1, "0123456789abcdefABCDEF.:") >= len;
                for (PQconninfoOption *d = defs; d && d->keyword; d++)
                    if (strlen(d->keyword) == len && !strncmp(d->keyword, p + 1, len))
                        keyword = true;
                if (keyword && o + len + 3 < n) {
                    memcpy(out + o, p, len + 2);
                    o += len + 2;
                } else if (o + 6 < n) {
                    memcpy(out + o, "\"...\"", 5);
                    o += 5;
                }
                p = e;
                continue;
            }
        }
        out[o++] = *p;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    PQconninfoFree(defs);
}

/* ------------------------------------------------------------ validate */

static void validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    const char *a, *b;
    int n = count_sources(cfg, conninfo_keys, &a, &b);
    if (n == 0)
        H->cfg_error(cfg, NULL, "the conninfo is required from one source: conninfo, "
                     "conninfo_env, conninfo_file or conninfo_command");
    else if (n > 1)
        H->cfg_error(cfg, b, "\"%s\" is set too; use exactly one source for the conninfo", a);
    for (const char *const *k = conninfo_keys; *k; k++)
        if (H->cfg_has(cfg, *k) && (!H->cfg_string(cfg, *k) || !*H->cfg_string(cfg, *k)))
            H->cfg_error(cfg, *k, "must be a non-empty string");
    const char *inline_ci = H->cfg_string(cfg, "conninfo");
    if (inline_ci && *inline_ci) {
        char *e = NULL;
        PQconninfoOption *o = PQconninfoParse(inline_ci, &e);
        if (!o) {
            char m[256];
            scrub(e, m, sizeof(m));
            H->cfg_error(cfg, "conninfo", "not a valid libpq conninfo: %s", e ? m : "out of memory");
        }
        PQconninfoFree(o);
        PQfreemem(e);
    }
    n = count_sources(cfg, key_keys, &a, &b);
    if (n == 0)
        H->cfg_error(cfg, NULL, "the encryption key is required from one source: key_file, "
                     "key_env or key_command (32 bytes, base64 or hex)");
    else if (n > 1)
        H->cfg_error(cfg, b, "\"%s\" is set too; use exactly one source for the key", a);
    for (const char *const *k = key_keys; *k; k++)
        if (H->cfg_has(cfg, *k) && (!H->cfg_string(cfg, *k) || !*H->cfg_string(cfg, *k)))
            H->cfg_error(cfg, *k, "must be a non-empty string");
    if (H->cfg_has(cfg, "table") && !ident_ok(H->cfg_string(cfg, "table")))
        H->cfg_error(cfg, "table", "must be an SQL identifier: [a-z_][a-z0-9_]{0,%d}",
                     TABLE_MAX - 1);
    if (H->cfg_has(cfg, "namespace")) {
        const char *s = H->cfg_string(cfg, "namespace");
        if (!s || !*s || strlen(s) > NAMESPACE_MAX)
            H->cfg_error(cfg, "namespace", "must be a string of 1..%d characters", NAMESPACE_MAX);
    }
    if (H->cfg_has(cfg, "lock_timeout_s")) {
        long v = H->cfg_int(cfg, "lock_timeout_s", -1), w = H->cfg_int(cfg, "lock_timeout_s", -2);
        if (v != w)
            H->cfg_error(cfg, "lock_timeout_s", "must be an integer (seconds, 1..3600)");
        else if (v < 1 || v > 3600)
            H->cfg_error(cfg, "lock_timeout_s", "must be 1..3600 seconds, got %ld", v);
    }
    if (H->cfg_has(cfg, "key_id") && !pgc_key_id_ok(H->cfg_string(cfg, "key_id")))
        H->cfg_error(cfg, "key_id", "must be [A-Za-z0-9._-]{1,64}");
}

/* ------------------------------------------------------------ connections */

static int oom(mc_err **err)
{
    return H->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH, "out of memory");
}

/* an error of a connection: the server went away (75) or refused us (78) */
static int conn_error(pgstore *s, PGconn *c, const char *what, mc_err **err)
{
    char m[512];
    scrub(c ? PQerrorMessage(c) : "out of memory", m, sizeof(m));
    bool config = strstr(m, "authentication failed") || strstr(m, "pg_hba.conf") ||
                  strstr(m, "does not exist") || strstr(m, "permission denied") ||
                  strstr(m, "invalid connection option") || strstr(m, "certificate");
    return H->error(err, config ? MC_ECONFIG : MC_ENET,
                    config ? MC_OUTCOME_CONFIG : MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH,
                    "postgresql at %s: %s: %s", s->where, what, m);
}

static PGconn *connect_db(pgstore *s, mc_err **err)
{
    const char *kw[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
    const char *val[] = { "10", "mailconn", s->conninfo, NULL };
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        conn_error(s, c, "cannot connect", err);
        PQfinish(c);
        return NULL;
    }
    char sql[96];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", STATEMENT_TIMEOUT_MS);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        conn_error(s, c, "cannot set statement_timeout", err);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* the store's shared connection, (re)connected; s->mu held */
static PGconn *main_conn(pgstore *s, mc_err **err)
{
    if (s->main && PQstatus(s->main) != CONNECTION_OK) {
        PQfinish(s->main);
        s->main = NULL;
    }
    if (!s->main)
        s->main = connect_db(s, err);
    return s->main;
}

static int query_error(pgstore *s, PGconn *c, PGresult *r, const char *what, mc_err **err)
{
    if (PQstatus(c) != CONNECTION_OK || !r)
        return conn_error(s, c, what, err);
    char m[512];
    scrub(PQresultErrorMessage(r), m, sizeof(m));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 42xxx (no table, no privilege), 28xxx: the setup; the rest: transient */
    bool config = state && (!strncmp(state, "42", 2) || !strncmp(state, "28", 2));
    return H->error(err, config ? MC_ECONFIG : MC_ENET,
                    config ? MC_OUTCOME_CONFIG : MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH,
                    "token store postgresql (%s, table %s): %s: %s", s->where, s->table, what,
                    m);
}

static PGresult *exec(PGconn *c, const char *sql, int n, const char *const *vals,
                      const int *lens, const int *fmts)
{
    return PQexecParams(c, sql, n, NULL, vals, lens, fmts, 1);
}

static bool cmd_ok(PGresult *r)
{
    ExecStatusType t = PQresultStatus(r);
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

static void exec_simple(PGconn *c, const char *sql)
{
    PQclear(PQexec(c, sql));
}

/* ------------------------------------------------------------ schema */

static int schema_of(pgstore *s, PGconn *c, bool *exists, int *version, mc_err **err)
{
    const char *v[] = { s->qt };
    PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL, "
                               "coalesce(obj_description(to_regclass($1), 'pg_class'), '')",
                               1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = query_error(s, c, r, "cannot read the schema", err);
        PQclear(r);
        return rc;
    }
    *exists = PQgetvalue(r, 0, 0)[0] == 't';
    *version = 0;
    const char *cm = PQgetvalue(r, 0, 1);
    if (!strncmp(cm, SCHEMA_COMMENT, strlen(SCHEMA_COMMENT)))
        *version = atoi(cm + strlen(SCHEMA_COMMENT));
    PQclear(r);
    return 0;
}

static int setup_schema(pgstore *s, PGconn *c, mc_err **err)
{
    bool exists = false;
    int version = 0;
    int rc = schema_of(s, c, &exists, &version, err);
    if (rc)
        return rc;
    if (!exists) {
        /* two nodes starting at once: one creates, the other waits here */
        char *sql = NULL;
        if (asprintf(&sql,
                     "BEGIN;"
                     "SELECT pg_advisory_xact_lock(hashtext('mailconn token store ' || %s));"
                     "CREATE TABLE IF NOT EXISTS %s (namespace text NOT NULL, server text NOT "
                     "NULL, key_id text, record bytea, updated_at timestamptz NOT NULL DEFAULT "
                     "now(), PRIMARY KEY (namespace, server));"
                     "CREATE TABLE IF NOT EXISTS %s (namespace text NOT NULL, state_hash text "
                     "NOT NULL, key_id text NOT NULL, record bytea NOT NULL, expires bigint NOT "
                     "NULL, PRIMARY KEY (namespace, state_hash));"
                     "COMMENT ON TABLE %s IS '" SCHEMA_COMMENT "%d';"
                     "COMMIT",
                     "current_database()", s->qt, s->qp, s->qt, SCHEMA_VERSION) < 0)
            return oom(err);
        PGresult *r = PQexec(c, sql);
        free(sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = query_error(s, c, r, "cannot create the tables", err);
            PQclear(r);
            exec_simple(c, "ROLLBACK");
            return rc;
        }
        PQclear(r);
        if ((rc = schema_of(s, c, &exists, &version, err)))
            return rc;
    }
    if (version == 0)
        return H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                        "token store postgresql (%s): table %s exists but is not a mailconn "
                        "token table (its comment names no \"" SCHEMA_COMMENT "N\")",
                        s->where, s->table);
    if (version > SCHEMA_VERSION)
        return H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                        "token store postgresql (%s): table %s has schema %d, newer than this "
                        "mailconn's (%d)", s->where, s->table, version, SCHEMA_VERSION);
    return 0;
}

/* ------------------------------------------------------------ open, close */

static void describe_where(pgstore *s, PQconninfoOption *o)
{
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL,
               *ssl = NULL;
    for (PQconninfoOption *p = o; p && p->keyword; p++) {
        if (!p->val || !*p->val)
            continue;
        if (!strcmp(p->keyword, "host"))
            host = p->val;
        else if (!strcmp(p->keyword, "hostaddr"))
            hostaddr = p->val;
        else if (!strcmp(p->keyword, "port"))
            port = p->val;
        else if (!strcmp(p->keyword, "dbname"))
            db = p->val;
        else if (!strcmp(p->keyword, "user"))
            user = p->val;
        else if (!strcmp(p->keyword, "sslmode"))
            ssl = p->val;
    }
    size_t n = 0;
    n += (size_t)snprintf(s->where + n, sizeof(s->where) - n, "host=%.80s",
                          host ? host : hostaddr ? hostaddr : "(default)");
#define ADD(k, v) if ((v) && n < sizeof(s->where)) \
        n += (size_t)snprintf(s->where + n, sizeof(s->where) - n, " " k "=%.60s", (v))
    ADD("port", port);
    ADD("dbname", db);
    ADD("user", user);
    ADD("sslmode", ssl);
#undef ADD
}

static void close_store(void *store);

static int open_store(mc_host_ctx *hc, const mc_plugin_cfg *cfg, void **store, mc_err **err)
{
    *store = NULL;
    pgstore *s = calloc(1, sizeof(*s));
    if (!s)
        return oom(err);
    pthread_mutex_init(&s->mu, NULL);
    int rc = 0;
    const char *a = NULL, *b = NULL;
    count_sources(cfg, conninfo_keys, &a, &b);
    snprintf(s->conninfo_key, sizeof(s->conninfo_key), "%s", a ? a : "conninfo");

    const char *t = H->cfg_string(cfg, "table");
    const char *ns = H->cfg_string(cfg, "namespace");
    s->table = strdup(t ? t : "mailconn_tokens");
    s->ns = strdup(ns ? ns : "default");
    s->lock_timeout_ms = H->cfg_int(cfg, "lock_timeout_s", 30) * 1000L;
    if (!s->table || !s->ns) {
        rc = oom(err);
        goto fail;
    }
    if (!ident_ok(s->table) || s->lock_timeout_ms < 1000 || s->lock_timeout_ms > 3600000) {
        rc = H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "token_store: table or lock_timeout_s is invalid (mailconn check says why)");
        goto fail;
    }

    /* the key */
    char *keytext = NULL;
    if ((rc = H->secret(hc, cfg, "key", &keytext, err)))
        goto fail;
    count_sources(cfg, key_keys, &a, &b);
    if (!keytext) {
        rc = H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "token_store: the encryption key is required (key_file, key_env or "
                      "key_command)");
        goto fail;
    }
    H->redact(hc, keytext);
    const char *why = NULL;
    int kr = pgc_parse_key(keytext, s->key, &why);
    H->free_secret(keytext);
    if (kr) {
        rc = H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "token_store.%s: %s",
                      a ? a : "key_file", why);
        goto fail;
    }
    const char *kid = H->cfg_string(cfg, "key_id");
    if (kid && pgc_key_id_ok(kid))
        snprintf(s->key_id, sizeof(s->key_id), "%s", kid);
    else
        pgc_key_id(s->key, s->key_id);

    /* the conninfo */
    char *ci = NULL;
    if ((rc = H->secret(hc, cfg, "conninfo", &ci, err)))
        goto fail;
    if (!ci) {
        rc = H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "token_store: the conninfo is required (conninfo, conninfo_env, "
                      "conninfo_file or conninfo_command)");
        goto fail;
    }
    s->conninfo = strdup(ci);
    H->free_secret(ci);
    if (!s->conninfo) {
        rc = oom(err);
        goto fail;
    }
    H->redact(hc, s->conninfo);
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->conninfo, &perr);
    if (!opts) {
        char m[256];
        scrub(perr, m, sizeof(m));
        PQfreemem(perr);
        rc = H->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "token_store.%s: not a valid libpq conninfo: %s", s->conninfo_key, m);
        goto fail;
    }
    for (PQconninfoOption *p = opts; p->keyword; p++)
        if (!strcmp(p->keyword, "password") && p->val && strlen(p->val) >= 4)
            H->redact(hc, p->val);
    describe_where(s, opts);
    PQconninfoFree(opts);

    /* reachable, the tables there */
    pthread_mutex_lock(&s->mu);
    PGconn *c = main_conn(s, err);
    if (!c) {
        pthread_mutex_unlock(&s->mu);
        rc = MC_ENET;
        if (err && *err)
            rc = (*err)->code;
        goto fail;
    }
    char *q1 = PQescapeIdentifier(c, s->table, strlen(s->table));
    char pend[TABLE_MAX + 16];
    snprintf(pend, sizeof(pend), "%s_pending", s->table);
    char *q2 = PQescapeIdentifier(c, pend, strlen(pend));
    if (q1)
        s->qt = strdup(q1);
    if (q2)
        s->qp = strdup(q2);
    PQfreemem(q1);
    PQfreemem(q2);
    if (!s->qt || !s->qp)
        rc = oom(err);
    else
        rc = setup_schema(s, c, err);
    pthread_mutex_unlock(&s->mu);
    if (rc)
        goto fail;
    H->log(hc, MC_LOG_DEBUG, "token store postgresql: %s table=%s namespace=%s key=%s", s->where,
           s->table, s->ns, s->key_id);
    *store = s;
    return 0;
fail:
    close_store(s);
    return rc ? rc : MC_ECONFIG;
}

static void close_store(void *store)
{
    pgstore *s = store;
    if (!s)
        return;
    while (s->locks) {
        held *h = s->locks;
        s->locks = h->next;
        PQfinish(h->conn);          /* rolls back */
        free(h->server);
        free(h);
    }
    for (int i = 0; i < s->n_idle; i++)
        PQfinish(s->idle[i]);
    PQfinish(s->main);
    if (s->conninfo) {
        OPENSSL_cleanse(s->conninfo, strlen(s->conninfo));
        free(s->conninfo);
    }
    OPENSSL_cleanse(s->key, sizeof(s->key));
    free(s->table);
    free(s->ns);
    free(s->qt);
    free(s->qp);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------ the lock */

static bool server_ok(const char *server)
{
    return server && *server && strlen(server) <= 200;
}

static int bad_server(mc_err **err)
{
    return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                    "token store postgresql: bad server name");
}

/* the connection of the lock this thread holds on server, or NULL */
static PGconn *held_conn(pgstore *s, const char *server)
{
    PGconn *c = NULL;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&s->mu);
    for (held *h = s->locks; h; h = h->next)
        if (pthread_equal(h->thread, self) && !strcmp(h->server, server)) {
            c = h->conn;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return c;
}

static void give_back(pgstore *s, PGconn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->mu);
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE &&
        s->n_idle < IDLE_MAX) {
        s->idle[s->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    PQfinish(c);
}

static int pg_lock(void *store, const mc_token_identity *id, long long deadline_ms, mc_err **err)
{
    pgstore *s = store;
    if (!server_ok(id->server))
        return bad_server(err);
    PGconn *c = NULL;
    pthread_mutex_lock(&s->mu);
    while (!c && s->n_idle > 0) {
        c = s->idle[--s->n_idle];
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!c && !(c = connect_db(s, err)))
        return err && *err ? (*err)->code : MC_ENET;

    const char *v[] = { s->ns, id->server };
    char *sql = NULL;
    int rc = 0;
    PGresult *r = NULL;
    /* a row to lock (committed at once, so no other node waits on it) */
    if (asprintf(&sql, "INSERT INTO %s (namespace, server) VALUES ($1, $2) "
                       "ON CONFLICT DO NOTHING", s->qt) < 0) {
        PQfinish(c);
        return oom(err);
    }
    r = exec(c, sql, 2, v, NULL, NULL);
    free(sql);
    if (!cmd_ok(r)) {
        rc = query_error(s, c, r, "cannot make the lock row", err);
        goto fail;
    }
    PQclear(r);
    r = PQexec(c, "BEGIN");
    if (!cmd_ok(r)) {
        rc = query_error(s, c, r, "cannot begin", err);
        goto fail;
    }
    PQclear(r);
    long long wait = deadline_ms - now_ms();
    if (wait > s->lock_timeout_ms)
        wait = s->lock_timeout_ms;
    if (wait < 1)
        wait = 1;
    char set[64];
    snprintf(set, sizeof(set), "SET LOCAL lock_timeout = %lld", wait);
    r = PQexec(c, set);
    if (!cmd_ok(r)) {
        rc = query_error(s, c, r, "cannot set lock_timeout", err);
        goto fail;
    }
    PQclear(r);
    if (asprintf(&sql, "SELECT 1 FROM %s WHERE namespace = $1 AND server = $2 FOR UPDATE",
                 s->qt) < 0) {
        r = NULL;
        rc = oom(err);
        goto fail;
    }
    r = exec(c, sql, 2, v, NULL, NULL);
    free(sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && !strcmp(st, "55P03"))
            rc = H->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_OAUTH,
                          "token store postgresql (%s): the refresh lock of server %s (table "
                          "%s, namespace %s) is held by another session; gave up after %lld ms "
                          "(lock_timeout_s %ld)", s->where, id->server, s->table, s->ns, wait,
                          s->lock_timeout_ms / 1000);
        else
            rc = query_error(s, c, r, "cannot take the refresh lock", err);
        goto fail;
    }
    PQclear(r);
    held *h = calloc(1, sizeof(*h));
    if (!h || !(h->server = strdup(id->server))) {
        free(h);
        r = NULL;
        rc = oom(err);
        goto fail;
    }
    h->thread = pthread_self();
    h->conn = c;
    pthread_mutex_lock(&s->mu);
    h->next = s->locks;
    s->locks = h;
    pthread_mutex_unlock(&s->mu);
    return 0;
fail:
    PQclear(r);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        exec_simple(c, "ROLLBACK");
    give_back(s, c);
    return rc;
}

static void pg_unlock(void *store, const mc_token_identity *id)
{
    pgstore *s = store;
    held *h = NULL;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&s->mu);
    for (held **pp = &s->locks; *pp; pp = &(*pp)->next)
        if (pthread_equal((*pp)->thread, self) && !strcmp((*pp)->server, id->server)) {
            h = *pp;
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    if (!h)
        return;
    /* COMMIT (an aborted transaction rolls back) */
    PGresult *r = PQexec(h->conn, "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(h->conn);
        h->conn = NULL;
    }
    give_back(s, h->conn);
    free(h->server);
    free(h);
}

/* ------------------------------------------------------------ records */

/* run fn on the lock's connection of this thread, or on the shared one */
typedef int query_fn(pgstore *s, PGconn *c, void *arg, mc_err **err);

static void drop_err(mc_err *e)
{
    if (!e)
        return;
    H->free(e->message);
    H->free(e->hint);
    H->free(e->server_text);
    H->free(e);
}

static int with_conn(pgstore *s, const char *server, query_fn *fn, void *arg, mc_err **err)
{
    PGconn *c = server ? held_conn(s, server) : NULL;
    if (c)
        return fn(s, c, arg, err);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        mc_err *e = NULL;
        c = main_conn(s, &e);
        rc = c ? fn(s, c, arg, &e) : (e ? e->code : MC_ENET);
        /* the shared connection died (a server restart): once more */
        if (rc && attempt == 0 && c && PQstatus(c) != CONNECTION_OK) {
            drop_err(e);
            continue;
        }
        if (e && err && !*err)
            *err = e;
        else
            drop_err(e);
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

typedef struct rec_arg {
    const mc_token_identity *id;
    const char *data;
    size_t      len;
    char      **out;
    size_t     *out_len;
} rec_arg;

static uint8_t *aad_of(pgstore *s, const mc_token_identity *id, size_t *n)
{
    return pgc_aad_token(s->ns, id->server, id->provider, id->client_id, id->user, id->token_url,
                         n);
}

static int decrypt_error(pgstore *s, int pr, const char *what, const char *name,
                         const char *stored_kid, mc_err **err)
{
    if (pr == -3)
        return oom(err);
    if (stored_kid && strcmp(stored_kid, s->key_id))
        return H->error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                        "token store postgresql (table %s, namespace %s): the %s of %s was "
                        "encrypted with key %s, but the configured key is %s (a wrong key, or "
                        "keys rotated: copy the records with the old key first)",
                        s->table, s->ns, what, name, stored_kid, s->key_id);
    if (pr == -1)
        return H->error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                        "token store postgresql (table %s, namespace %s): the %s of %s is not an "
                        "encrypted mailconn record", s->table, s->ns, what, name);
    return H->error(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                    "token store postgresql (table %s, namespace %s): the %s of %s does not "
                    "decrypt for this identity (provider, client_id, user, token endpoint, "
                    "server): it was moved from another identity or altered, or the key is "
                    "wrong; authorize %s again", s->table, s->ns, what, name, name);
}

static int q_load(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    rec_arg *a = arg;
    char *sql = NULL;
    if (asprintf(&sql, "SELECT key_id, record FROM %s WHERE namespace = $1 AND server = $2",
                 s->qt) < 0)
        return oom(err);
    const char *v[] = { s->ns, a->id->server };
    PGresult *r = exec(c, sql, 2, v, NULL, NULL);
    free(sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = query_error(s, c, r, "cannot read the record", err);
        PQclear(r);
        return rc;
    }
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, 1)) {
        PQclear(r);
        return 0;
    }
    char kid[PGC_KEYID_MAX + 1];
    int kl = PQgetlength(r, 0, 0);
    snprintf(kid, sizeof(kid), "%.*s", kl > PGC_KEYID_MAX ? PGC_KEYID_MAX : kl,
             PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    size_t aadn = 0;
    uint8_t *aad = aad_of(s, a->id, &aadn);
    if (!aad) {
        PQclear(r);
        return oom(err);
    }
    char name[256];
    snprintf(name, sizeof(name), "server %s", a->id->server);
    int pr = strcmp(kid, s->key_id) ? -2
             : pgc_open(s->key, aad, aadn, (const uint8_t *)PQgetvalue(r, 0, 1),
                        (size_t)PQgetlength(r, 0, 1), a->out, a->out_len);
    free(aad);
    PQclear(r);
    return pr ? decrypt_error(s, pr, "record", name, kid, err) : 0;
}

static int pg_load(void *store, const mc_token_identity *id, char **data, size_t *len,
                   mc_err **err)
{
    pgstore *s = store;
    *data = NULL;
    *len = 0;
    if (!server_ok(id->server))
        return bad_server(err);
    rec_arg a = { .id = id, .out = data, .out_len = len };
    return with_conn(s, id->server, q_load, &a, err);
}

static int q_save(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    rec_arg *a = arg;
    size_t aadn = 0, n = 0;
    uint8_t *aad = aad_of(s, a->id, &aadn), *sealed = NULL;
    if (!aad || pgc_seal(s->key, aad, aadn, (const uint8_t *)a->data, a->len, &sealed, &n)) {
        free(aad);
        return oom(err);
    }
    free(aad);
    char *sql = NULL;
    if (asprintf(&sql, "INSERT INTO %s (namespace, server, key_id, record, updated_at) "
                       "VALUES ($1, $2, $3, $4, now()) ON CONFLICT (namespace, server) DO UPDATE "
                       "SET key_id = EXCLUDED.key_id, record = EXCLUDED.record, updated_at = now()",
                 s->qt) < 0) {
        free(sealed);
        return oom(err);
    }
    const char *v[] = { s->ns, a->id->server, s->key_id, (const char *)sealed };
    int lens[] = { 0, 0, 0, (int)n };
    int fmts[] = { 0, 0, 0, 1 };
    PGresult *r = exec(c, sql, 4, v, lens, fmts);
    free(sql);
    free(sealed);
    int rc = cmd_ok(r) ? 0 : query_error(s, c, r, "cannot save the record", err);
    PQclear(r);
    return rc;
}

static int pg_save(void *store, const mc_token_identity *id, const char *data, size_t len,
                   mc_err **err)
{
    pgstore *s = store;
    if (!server_ok(id->server))
        return bad_server(err);
    if (len > RECORD_MAX)
        return H->error(err, MC_EINVAL, MC_OUTCOME_CONFIG, MC_STAGE_OAUTH,
                        "token store postgresql: the record is too large");
    rec_arg a = { .id = id, .data = data, .len = len };
    return with_conn(s, id->server, q_save, &a, err);
}

static int q_remove(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    rec_arg *a = arg;
    char *sql = NULL;
    if (asprintf(&sql, "UPDATE %s SET record = NULL, key_id = NULL, updated_at = now() "
                       "WHERE namespace = $1 AND server = $2", s->qt) < 0)
        return oom(err);
    const char *v[] = { s->ns, a->id->server };
    PGresult *r = exec(c, sql, 2, v, NULL, NULL);
    free(sql);
    int rc = cmd_ok(r) ? 0 : query_error(s, c, r, "cannot remove the record", err);
    PQclear(r);
    return rc;
}

static int pg_remove(void *store, const mc_token_identity *id, mc_err **err)
{
    pgstore *s = store;
    if (!server_ok(id->server))
        return bad_server(err);
    rec_arg a = { .id = id };
    return with_conn(s, id->server, q_remove, &a, err);
}

/* ------------------------------------------------------------ pending */

typedef struct pend_arg {
    const char *state;
    char        hash[65];
    const char *data;
    size_t      len;
    long long   expires;
    char      **out;
    size_t     *out_len;
} pend_arg;

static int hash_state(const char *state, char out[65])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_Digest(state, strlen(state), md, &n, EVP_sha256(), NULL) != 1)
        return -1;
    for (unsigned i = 0; i < 32 && i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int q_put(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    pend_arg *a = arg;
    char *sql = NULL, now[32], exp[32];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    snprintf(exp, sizeof(exp), "%lld", a->expires);
    /* sweep the expired ones (of every namespace: none is any use) */
    if (asprintf(&sql, "DELETE FROM %s WHERE expires < $1", s->qp) < 0)
        return oom(err);
    const char *sv[] = { now };
    PQclear(exec(c, sql, 1, sv, NULL, NULL));
    free(sql);
    size_t aadn = 0, n = 0;
    uint8_t *aad = pgc_aad_pending(s->ns, a->state, &aadn), *sealed = NULL;
    if (!aad || pgc_seal(s->key, aad, aadn, (const uint8_t *)a->data, a->len, &sealed, &n)) {
        free(aad);
        return oom(err);
    }
    free(aad);
    if (asprintf(&sql, "INSERT INTO %s (namespace, state_hash, key_id, record, expires) VALUES "
                       "($1, $2, $3, $4, $5) ON CONFLICT (namespace, state_hash) DO UPDATE SET "
                       "key_id = EXCLUDED.key_id, record = EXCLUDED.record, "
                       "expires = EXCLUDED.expires", s->qp) < 0) {
        free(sealed);
        return oom(err);
    }
    const char *v[] = { s->ns, a->hash, s->key_id, (const char *)sealed, exp };
    int lens[] = { 0, 0, 0, (int)n, 0 };
    int fmts[] = { 0, 0, 0, 1, 0 };
    PGresult *r = exec(c, sql, 5, v, lens, fmts);
    free(sql);
    free(sealed);
    int rc = cmd_ok(r) ? 0 : query_error(s, c, r, "cannot keep the pending authorization", err);
    PQclear(r);
    return rc;
}

static int pg_pending_put(void *store, const char *state, const char *data, size_t len,
                          long long expires, mc_err **err)
{
    pgstore *s = store;
    pend_arg a = { .state = state, .data = data, .len = len, .expires = expires };
    if (!state || !*state || len > RECORD_MAX || hash_state(state, a.hash))
        return H->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_OAUTH,
                        "token store postgresql: bad pending authorization");
    return with_conn(s, NULL, q_put, &a, err);
}

static int q_take(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    pend_arg *a = arg;
    char *sql = NULL;
    /* DELETE ... RETURNING: taken once, whoever asks first */
    if (asprintf(&sql, "DELETE FROM %s WHERE namespace = $1 AND state_hash = $2 "
                       "RETURNING key_id, record, expires::text", s->qp) < 0)
        return oom(err);
    const char *v[] = { s->ns, a->hash };
    PGresult *r = exec(c, sql, 2, v, NULL, NULL);
    free(sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = query_error(s, c, r, "cannot take the pending authorization", err);
        PQclear(r);
        return rc;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    char kid[PGC_KEYID_MAX + 1], exp[32];
    int kl = PQgetlength(r, 0, 0), el = PQgetlength(r, 0, 2);
    snprintf(kid, sizeof(kid), "%.*s", kl > PGC_KEYID_MAX ? PGC_KEYID_MAX : kl,
             PQgetvalue(r, 0, 0));
    snprintf(exp, sizeof(exp), "%.*s", el > 30 ? 30 : el, PQgetvalue(r, 0, 2));
    if (strtoll(exp, NULL, 10) < (long long)time(NULL)) {   /* expired: as if none */
        PQclear(r);
        return 0;
    }
    size_t aadn = 0;
    uint8_t *aad = pgc_aad_pending(s->ns, a->state, &aadn);
    if (!aad) {
        PQclear(r);
        return oom(err);
    }
    int pr = strcmp(kid, s->key_id) ? -2
             : pgc_open(s->key, aad, aadn, (const uint8_t *)PQgetvalue(r, 0, 1),
                        (size_t)PQgetlength(r, 0, 1), a->out, a->out_len);
    free(aad);
    PQclear(r);
    return pr ? decrypt_error(s, pr, "pending authorization", "its state", kid, err) : 0;
}

static int pg_pending_take(void *store, const char *state, char **data, size_t *len,
                           mc_err **err)
{
    pgstore *s = store;
    *data = NULL;
    *len = 0;
    pend_arg a = { .state = state, .out = data, .out_len = len };
    if (!state || !*state || hash_state(state, a.hash))
        return 0;
    return with_conn(s, NULL, q_take, &a, err);
}

/* ------------------------------------------------------------ describe */

typedef struct desc_arg {
    char  *buf;
    size_t len;
} desc_arg;

static int q_describe(pgstore *s, PGconn *c, void *arg, mc_err **err)
{
    desc_arg *a = arg;
    bool exists = false;
    int version = 0;
    int rc = schema_of(s, c, &exists, &version, err);
    if (rc)
        return rc;
    snprintf(a->buf, a->len, "%s table=%s namespace=%s key=%s (schema %d, reachable)", s->where,
             s->table, s->ns, s->key_id, version);
    return 0;
}

static int describe(void *store, char *buf, size_t len, mc_err **err)
{
    pgstore *s = store;
    if (!buf || !len)
        return MC_EINVAL;
    desc_arg a = { buf, len };
    int rc = with_conn(s, NULL, q_describe, &a, err);
    if (rc)
        snprintf(buf, len, "%s table=%s namespace=%s (unreachable)", s->where, s->table, s->ns);
    return rc;
}

/* ------------------------------------------------------------ descriptor */

static const mc_token_store_ops store_ops = {
    .size = sizeof(mc_token_store_ops),
    .lock = pg_lock,
    .unlock = pg_unlock,
    .load = pg_load,
    .save = pg_save,
    .remove = pg_remove,
    .pending_put = pg_pending_put,
    .pending_take = pg_pending_take,
};

static const mc_store_plugin_ops plugin_ops = {
    .size = sizeof(mc_store_plugin_ops),
    .keys = keys,
    .validate = validate,
    .open = open_store,
    .close = close_store,
    .ops = &store_ops,
    .describe = describe,
};

static const mc_plugin_desc desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TOKEN_STORE,
    .name = "postgresql",
    .version = "1.0.0",
    .summary = "token store on PostgreSQL for fleets (row locks, AES-256-GCM at rest)",
    .ops = &plugin_ops,
};

MC_PLUGIN_EXPORT const mc_plugin_desc *mc_plugin_entry(const mc_host_api *host);
const mc_plugin_desc *mc_plugin_entry(const mc_host_api *host)
{
    H = host;
    return &desc;
}
