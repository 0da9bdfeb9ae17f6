/* config: JSON (json-c, strict) -> servers. Validation collects every
 * error with its JSON path; the default rule; atomic save.
 *
 * Reading happens in three passes over one text:
 *   1. json-c's strict tokener (syntax errors with line and column);
 *   2. a small scan of the same text for what json-c lets through: doubled
 *      keys in one object (json-c keeps the last silently), single-quoted
 *      strings, NaN/Infinity, raw control characters, invalid UTF-8;
 *   3. a walk of the document: types, ranges, unknown keys, the default
 *      rule, secret single-source.
 * mc__config_prepare() adds what needs the plugins. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json_object.h>
#include <json-c/json_object_iterator.h>  /* never json.h: its debug.h declares a function mc_error */
#include <json-c/json_tokener.h>
#include <json-c/linkhash.h>        /* json_object_object_foreach */
#include <openssl/crypto.h>

#include "buf.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "message.h"   /* mc__charset_usable */
#include "oauth-keys.h"
#include "proxy.h"
#include "secret.h"

#define CONFIG_MAX (4 * 1024 * 1024)   /* a config larger than this is a mistake */
#define SHOW_MAX 96                    /* longest value quoted in a message */
#define TOP "top level"
/* the six placeholder letters mkstemp() replaces */
#define MKSTEMP_SUFFIX "X" "X" "X" "X" "X" "X"

/* ------------------------------------------------------------- diagnostics */

/* Append a line unless it is there already: 1 added, 0 there, MC_ENOMEM. */
static int diag_line(mc__diag *d, char *line)
{
    /* a provider may report what the core already did: say it once */
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->lines[i], line) == 0) {
            free(line);
            return 0;
        }
    }
    char **l = realloc(d->lines, (d->n + 1) * sizeof(*l));
    if (!l) {
        free(line);
        return MC_ENOMEM;
    }
    d->lines = l;
    d->lines[d->n++] = line;
    return 1;
}

static int diag_item(mc__diag *d, const char *path, size_t path_len, const char *message)
{
    mc__diag_item *it = realloc(d->items, (d->n_items + 1) * sizeof(*it));
    if (!it)
        return MC_ENOMEM;
    d->items = it;
    mc__diag_item n = { strndup(path, path_len), strdup(message) };
    if (!n.path || !n.message) {
        free(n.path);
        free(n.message);
        return MC_ENOMEM;
    }
    d->items[d->n_items++] = n;
    return 0;
}

int mc__diag_item_add(mc__diag *d, const char *path, const char *message)
{
    if (!d)
        return 0;
    return diag_item(d, path ? path : "", path ? strlen(path) : 0, message ? message : "");
}

int mc__diag_add(mc__diag *d, const char *fmt, ...)
{
    if (!d)
        return 0;
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MC_ENOMEM;
    int rc = diag_line(d, line);
    if (rc <= 0)
        return rc;
    line = d->lines[d->n - 1];
    /* "servers[1].auth.client_id: required ..." (cfg_error, secrets):
     * the path is what comes before the first ": " */
    const char *sep = strncmp(line, "servers[", 8) == 0 ? strstr(line, ": ") : NULL;
    if (sep)
        return diag_item(d, line, (size_t)(sep - line), sep + 2) < 0 ? MC_ENOMEM : 0;
    return diag_item(d, "", 0, line) < 0 ? MC_ENOMEM : 0;
}

static const char *objname(const char *path);

int mc__diag_add_at(mc__diag *d, const char *path, const char *item_path, const char *message)
{
    if (!d)
        return 0;
    char *line = NULL;
    if (asprintf(&line, "%s: %s", objname(path), message) < 0)
        return MC_ENOMEM;
    int rc = diag_line(d, line);
    if (rc <= 0)
        return rc;
    const char *ip = item_path ? item_path : path;
    return diag_item(d, ip, strlen(ip), message) < 0 ? MC_ENOMEM : 1;
}

void mc__diag_free(mc__diag *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->lines[i]);
    free(d->lines);
    for (size_t i = 0; i < d->n_items; i++) {
        free(d->items[i].path);
        free(d->items[i].message);
    }
    free(d->items);
    d->lines = NULL;
    d->n = 0;
    d->items = NULL;
    d->n_items = 0;
}

/* Turn collected lines into an MC_ECONFIG error: message = the first line
 * and how many more; details = every line. */
static int diag_error(const mc__diag *d, mc_err **err)
{
    if (!err || !d->n)
        return MC_ECONFIG;
    if (!*err) {
        if (d->n > 1)
            mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "%s (and %zu more)",
                          d->lines[0], d->n - 1);
        else
            mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "%s", d->lines[0]);
    }
    for (size_t i = 0; i < d->n; i++)
        mc__error_detail(*err, d->lines[i]);
    for (size_t i = 0; i < d->n_items; i++)
        mc__error_diag(*err, d->items[i].path, d->items[i].message);
    mc__error_set_action(err, MC_ACTION_FIX_CONFIG, NULL);
    return MC_ECONFIG;
}

static int oom(mc_err **err)
{
    return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONFIG, NULL);
}

/* ------------------------------------------------------------- small helpers */

/* JSON text of a string (quoted, escaped), cut to SHOW_MAX; malloc'd. */
static char *quote_len(const char *s, size_t len)
{
    json_object *o = json_object_new_string_len(s, (int)(len > INT_MAX ? INT_MAX : len));
    if (!o)
        return NULL;
    const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN
                                                      | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *r = strdup(t ? t : "\"\"");
    json_object_put(o);
    return r;
}

/* A value as json-c prints it, for "got ..." (cut at SHOW_MAX). */
static const char *show(json_object *v, char *buf, size_t n)
{
    const char *t = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN
                                                      | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!t)
        t = "?";
    size_t len = strlen(t);
    if (len < n && len <= SHOW_MAX) {
        memcpy(buf, t, len + 1);
        return buf;
    }
    size_t cut = SHOW_MAX < n - 4 ? SHOW_MAX : n - 4;
    while (cut > 0 && ((unsigned char)t[cut] & 0xC0) == 0x80)
        cut--;                       /* never split a UTF-8 sequence */
    memcpy(buf, t, cut);
    memcpy(buf + cut, "...", 4);
    return buf;
}

static bool ident_like(const char *k)
{
    if (!*k)
        return false;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '$')
            return false;
    return true;
}

/* parent.key, or parent["odd key"]; the top level has path "". */
static char *path_key(const char *parent, const char *key)
{
    char *r = NULL;
    int n;
    if (ident_like(key)) {
        n = *parent ? asprintf(&r, "%s.%s", parent, key) : asprintf(&r, "%s", key);
    } else {
        char *q = quote_len(key, strlen(key));
        if (!q)
            return NULL;
        n = asprintf(&r, "%s[%s]", parent, q);
        free(q);
    }
    return n < 0 ? NULL : r;
}

static char *path_index(const char *parent, size_t i)
{
    char *r = NULL;
    return asprintf(&r, "%s[%zu]", parent, i) < 0 ? NULL : r;
}

static const char *objname(const char *path)
{
    return *path ? path : TOP;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest of `keys` to `key` when it is a likely typo, else NULL. */
static const char *suggest(const char *key, const char *const *keys)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; keys && keys[i]; i++) {
        size_t d = edit_distance(key, keys[i]);
        if (d < bd) {
            bd = d;
            best = keys[i];
        }
    }
    return best;
}

/* ------------------------------------------------------------- text scan */

typedef struct frame {
    bool         obj;
    bool         expect_key;
    size_t       index;
    char        *path;
    char        *key;       /* current member's key */
    json_object *seen;      /* keys of this object (a hash set) */
} frame;

static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;                      /* columns count characters, not bytes */
        }
    }
    *line = l;
    *col = c;
}

static void syntax_error(mc__diag *d, const char *name, const char *text, size_t off,
                         const char *what)
{
    size_t line, col;
    line_col(text, off, &line, &col);
    mc__diag_add(d, "%s:%zu:%zu: JSON syntax error: %s", name, line, col, what);
}

static bool number_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return false;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return false;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    return i == n;
}

static void frame_free(frame *f)
{
    free(f->path);
    free(f->key);
    json_object_put(f->seen);
}

/*
 * Second pass over text json-c accepted: token rules json-c does not
 * enforce, and duplicate keys (reported "path: duplicate key "k"").
 * Returns false on a syntax problem (one error added), true otherwise.
 */
static bool scan_text(const char *name, const char *text, size_t n, mc__diag *d, bool *nomem)
{
    frame *st = NULL;
    size_t depth = 0, cap = 0;
    bool ok = true;
    json_tokener *ktok = json_tokener_new();
    if (!ktok) {
        *nomem = true;
        return true;
    }
    size_t i = 0;
    while (i < n && ok && !*nomem) {
        char c = text[i];
        switch (c) {
        case ' ': case '\t': case '\r': case '\n': case ':':
            i++;
            break;
        case '{': case '[': {
            char *path;
            if (depth == 0) {
                path = strdup("");
            } else {
                frame *top = &st[depth - 1];
                path = top->obj ? path_key(top->path, top->key ? top->key : "")
                                : path_index(top->path, top->index);
            }
            if (depth == cap) {
                size_t nc = cap ? cap * 2 : 8;
                frame *ns = realloc(st, nc * sizeof(*ns));
                if (!ns) {
                    free(path);
                    *nomem = true;
                    break;
                }
                st = ns;
                cap = nc;
            }
            if (!path) {
                *nomem = true;
                break;
            }
            st[depth] = (frame){ .obj = c == '{', .expect_key = c == '{', .path = path };
            if (c == '{' && !(st[depth].seen = json_object_new_object())) {
                free(path);
                *nomem = true;
                break;
            }
            depth++;
            i++;
            break;
        }
        case '}': case ']':
            if (depth > 0)
                frame_free(&st[--depth]);
            i++;
            break;
        case ',':
            if (depth > 0) {
                if (st[depth - 1].obj)
                    st[depth - 1].expect_key = true;
                else
                    st[depth - 1].index++;
            }
            i++;
            break;
        case '"': {
            size_t j = i + 1;
            while (j < n && text[j] != '"' && ok) {
                unsigned char u = (unsigned char)text[j];
                if (u == '\\') {
                    j += 2;
                } else if (u < 0x20) {
                    syntax_error(d, name, text, j, "unescaped control character in a string");
                    ok = false;
                } else {
                    size_t l = mc__utf8_seq((const unsigned char *)text + j, n - j);
                    if (!l) {
                        syntax_error(d, name, text, j, "invalid UTF-8 in a string");
                        ok = false;
                    }
                    j += l;
                }
            }
            if (!ok)
                break;
            if (j >= n) {
                syntax_error(d, name, text, i, "unterminated string");
                ok = false;
                break;
            }
            frame *top = depth ? &st[depth - 1] : NULL;
            if (top && top->obj && top->expect_key) {
                top->expect_key = false;
                json_tokener_reset(ktok);
                json_object *k = json_tokener_parse_ex(ktok, text + i, (int)(j + 1 - i));
                if (!k || !json_object_is_type(k, json_type_string)) {
                    json_object_put(k);
                    *nomem = true;
                    break;
                }
                const char *ks = json_object_get_string(k);
                size_t klen = (size_t)json_object_get_string_len(k);
                char *q = quote_len(ks, klen);
                if (!q) {
                    json_object_put(k);
                    *nomem = true;
                    break;
                }
                if (strlen(ks) != klen || strpbrk(ks, "\r\n")) {
                    char *msg = NULL;
                    if (asprintf(&msg, "key %s must not contain NUL, CR or LF", q) < 0
                        || mc__diag_add_at(d, top->path, NULL, msg) < 0)
                        *nomem = true;
                    free(msg);
                } else {
                    json_object *cnt = NULL;
                    if (json_object_object_get_ex(top->seen, ks, &cnt)) {
                        int32_t times = json_object_get_int(cnt);
                        char *msg = NULL, *kp = NULL;
                        if (times == 1
                            && (asprintf(&msg, "duplicate key %s", q) < 0
                                || !(kp = path_key(top->path, ks))
                                || mc__diag_add_at(d, top->path, kp, msg) < 0))
                            *nomem = true;
                        free(msg);
                        free(kp);
                        json_object_set_int(cnt, times + 1);
                    } else {
                        json_object_object_add(top->seen, ks, json_object_new_int(1));
                    }
                }
                free(q);
                free(top->key);
                top->key = strdup(ks);
                json_object_put(k);
                if (!top->key)
                    *nomem = true;
            }
            i = j + 1;
            break;
        }
        case '\'':
            syntax_error(d, name, text, i, "strings must be in double quotes");
            ok = false;
            break;
        default: {
            size_t j = i;
            while (j < n && !strchr(" \t\r\n,:]}[{\"", text[j]))
                j++;
            size_t len = j - i;
            bool lit = (len == 4 && !memcmp(text + i, "true", 4))
                       || (len == 5 && !memcmp(text + i, "false", 5))
                       || (len == 4 && !memcmp(text + i, "null", 4))
                       || number_ok(text + i, len);
            if (!lit || len == 0) {
                syntax_error(d, name, text, i, "invalid literal (expected a number, true, false or null)");
                ok = false;
            }
            i = j > i ? j : i + 1;
            break;
        }
        }
    }
    while (depth > 0)
        frame_free(&st[--depth]);
    free(st);
    json_tokener_free(ktok);
    return ok;
}

/* ------------------------------------------------------------- validation */

typedef struct pctx {
    mc__config *cfg;
    mc__diag   *d;
    char       *inline_at;   /* path of the first inline secret */
    bool        nomem;
} pctx;

static void bad(pctx *p, const char *path, const char *fmt, ...) MC__FMT(3, 4);

/* One error at path; item_path (NULL: path) is the field a UI marks. */
static int bad_atv(pctx *p, const char *path, const char *item_path, const char *fmt, va_list ap)
{
    char *msg = NULL;
    int rc = 0;
    if (vasprintf(&msg, fmt, ap) < 0 || (rc = mc__diag_add_at(p->d, path, item_path, msg)) < 0)
        p->nomem = true;
    free(msg);
    return rc;
}

static int bad_at(pctx *p, const char *path, const char *item_path, const char *fmt, ...)
    MC__FMT(4, 5);

static int bad_at(pctx *p, const char *path, const char *item_path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = bad_atv(p, path, item_path, fmt, ap);
    va_end(ap);
    return rc;
}

static void bad(pctx *p, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bad_atv(p, path, NULL, fmt, ap);
    va_end(ap);
}

static char *dup_or_flag(pctx *p, const char *s)
{
    char *r = strdup(s);
    if (!r)
        p->nomem = true;
    return r;
}

/* A string without NUL, CR or LF; non-empty unless allow_empty. Secret
 * values are never shown. */
static bool want_string(pctx *p, const char *path, json_object *v, bool allow_empty,
                        bool secret, const char **out)
{
    char sb[SHOW_MAX + 8];
    if (!json_object_is_type(v, json_type_string)) {
        if (secret)
            bad(p, path, "must be a string");
        else
            bad(p, path, "must be a string, got %s", show(v, sb, sizeof(sb)));
        return false;
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len || strpbrk(s, "\r\n")) {
        if (secret)
            bad(p, path, "must not contain NUL, CR or LF");
        else
            bad(p, path, "must not contain NUL, CR or LF, got %s", show(v, sb, sizeof(sb)));
        return false;
    }
    if (!allow_empty && len == 0) {
        bad(p, path, "must not be empty");
        return false;
    }
    *out = s;
    return true;
}

static bool want_int(pctx *p, const char *path, json_object *v, long lo, long hi, int *out)
{
    char sb[SHOW_MAX + 8];
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        int64_t x = json_object_get_int64(v);
        /* json-c keeps values past INT64_MAX as uint64: they saturate here */
        if (x >= lo && x <= hi && !(x == INT64_MAX && errno)) {
            *out = (int)x;
            return true;
        }
    }
    bad(p, path, "must be an integer %ld..%ld, got %s", lo, hi, show(v, sb, sizeof(sb)));
    return false;
}

static bool want_bool(pctx *p, const char *path, json_object *v, bool *out)
{
    char sb[SHOW_MAX + 8];
    if (!json_object_is_type(v, json_type_boolean)) {
        bad(p, path, "must be true or false, got %s", show(v, sb, sizeof(sb)));
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

/* One of `choices` (NULL-terminated); index in *out. */
static bool want_enum(pctx *p, const char *path, json_object *v, const char *const *choices,
                      int *out)
{
    char sb[SHOW_MAX + 8];
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        for (int i = 0; choices[i]; i++) {
            if (strlen(choices[i]) == len && strcmp(s, choices[i]) == 0) {
                *out = i;
                return true;
            }
        }
    }
    mc__buf b = MC__BUF_INIT;
    size_t n = 0;
    while (choices[n])
        n++;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            mc__buf_puts(&b, i + 1 == n ? " or " : ", ");
        mc__buf_printf(&b, "\"%s\"", choices[i]);
    }
    bad(p, path, "must be %s, got %s", b.data ? b.data : "", show(v, sb, sizeof(sb)));
    mc__buf_free(&b);
    return false;
}

static bool host_ok(const char *s)
{
    if (strlen(s) > 255)
        return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (!(isalnum(*c) || *c == '.' || *c == '-' || *c == '_' || *c == ':' || *c == '['
              || *c == ']' || *c >= 0x80))
            return false;
    return true;
}

static bool address_ok(const char *s)
{
    const char *at = strrchr(s, '@');
    if (!at || at == s || !at[1] || strlen(s) > 320)
        return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c <= 0x20 || *c == 0x7F || *c == '<' || *c == '>' || *c == ',' || *c == ';')
            return false;
    return true;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* Set a char* field from a validated string. */
static void set_str(pctx *p, char **field, const char *s)
{
    free(*field);
    *field = dup_or_flag(p, s);
}

/* ----- server fields */

typedef void field_fn(pctx *p, mc_server *s, const char *path, json_object *v);

static void f_name(pctx *p, mc_server *s, const char *path, json_object *v)
{
    const char *str;
    char sb[SHOW_MAX + 8];
    if (!want_string(p, path, v, false, false, &str))
        return;
    if (!name_ok(str)) {
        bad(p, path, "must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot, got %s",
            show(v, sb, sizeof(sb)));
        return;
    }
    set_str(p, &s->name, str);
}

/* A string that is a host name or IP literal, into *dst; false otherwise. */
static bool want_host(pctx *p, const char *path, json_object *v, char **dst)
{
    const char *str;
    char sb[SHOW_MAX + 8];
    if (!want_string(p, path, v, false, false, &str))
        return false;
    if (!host_ok(str)) {
        bad(p, path, "must be a host name or IP literal, got %s", show(v, sb, sizeof(sb)));
        return false;
    }
    set_str(p, dst, str);
    return true;
}

static void f_host(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (want_host(p, path, v, &s->host))
        s->host_set = true;
}

static void f_port(pctx *p, mc_server *s, const char *path, json_object *v)
{
    int x;
    if (want_int(p, path, v, 1, 65535, &x)) {
        s->port = (uint16_t)x;
        s->port_set = true;
    }
}

static void f_transport(pctx *p, mc_server *s, const char *path, json_object *v)
{
    const char *str;
    if (want_string(p, path, v, false, false, &str)) {
        set_str(p, &s->transport, str);
        s->transport_set = true;
    }
}

static const char *const sender_keys[] = { "address", "name", "override", NULL };

static void unknown_key(pctx *p, const char *objpath, const char *key, const char *const *known,
                        const char *what)
{
    char *q = quote_len(key, strlen(key));
    if (!q) {
        p->nomem = true;
        return;
    }
    /* the line names the object; the field is the key itself */
    char *kp = path_key(objpath, key);
    if (!kp) {
        free(q);
        p->nomem = true;
        return;
    }
    const char *sug = suggest(key, known);
    if (sug)
        bad_at(p, objpath, kp, "unknown key %s%s (did you mean \"%s\"?)", q, what ? what : "", sug);
    else
        bad_at(p, objpath, kp, "unknown key %s%s", q, what ? what : "");
    free(kp);
    free(q);
}

static bool want_object(pctx *p, const char *path, json_object *v)
{
    char sb[SHOW_MAX + 8];
    if (json_object_is_type(v, json_type_object))
        return true;
    bad(p, path, "must be an object, got %s", show(v, sb, sizeof(sb)));
    return false;
}

static void f_sender(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (!want_object(p, path, v))
        return;
    json_object_object_foreach(v, key, val) {
        char *kp = path_key(path, key);
        if (!kp) {
            p->nomem = true;
            return;
        }
        const char *str;
        char sb[SHOW_MAX + 8];
        if (strcmp(key, "address") == 0) {
            if (want_string(p, kp, val, false, false, &str)) {
                if (address_ok(str))
                    set_str(p, &s->sender_address, str);
                else
                    bad(p, kp, "must be an address like user@example.org, got %s",
                        show(val, sb, sizeof(sb)));
            }
        } else if (strcmp(key, "name") == 0) {
            if (want_string(p, kp, val, true, false, &str))
                set_str(p, &s->sender_name, str);
        } else if (strcmp(key, "override") == 0) {
            want_bool(p, kp, val, &s->sender_override);
        } else {
            unknown_key(p, path, key, sender_keys, NULL);
        }
        free(kp);
    }
}

/* Keys every provider may use; their types are checked here, whether the
 * provider accepts them is checked in mc__config_prepare(). */
static const char *const auth_string_keys[] = {
    "user", "password_file", "password_env", "password_command",
    "client_id", "client_secret_file", "client_secret_env", "client_secret_command",
    "scope", "redirect_uri", "ca_file", "mechanism", "access_token_command",
    "authority", "tenant", "authorization_url", "token_url", "device_authorization_url",
    "revocation_url", NULL,
};
static const char *const auth_secret_keys[] = { "password", "client_secret", NULL };
static const char *const client_auth_values[] = { "post", "basic", "none", NULL };
static const char *const grant_values[] = {
    "authorization_code", "device_code", "client_credentials", NULL,
};
static const char *const source_suffixes[] = { "", "_file", "_env", "_command", NULL };

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* "a", "b" and "c" */
static void join_quoted(mc__buf *b, const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            mc__buf_puts(b, i + 1 == n ? " and " : ", ");
        mc__buf_printf(b, "\"%s\"", items[i]);
    }
}

static void check_sources(pctx *p, const char *path, json_object *auth, const char *secret)
{
    char keys[4][48];
    const char *set[4];
    size_t n = 0;
    for (size_t i = 0; source_suffixes[i]; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%s%s", secret, source_suffixes[i]);
        if (json_object_object_get_ex(auth, keys[i], NULL))
            set[n++] = keys[i];
    }
    if (n < 2)
        return;
    mc__buf b = MC__BUF_INIT;
    join_quoted(&b, set, n);
    bad(p, path, "%s are %s set; use exactly one source for the %s", b.data ? b.data : "",
        n == 2 ? "both" : "all", secret);
    mc__buf_free(&b);
}

static void f_auth(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (!want_object(p, path, v))
        return;
    s->has_auth = true;
    s->auth_cfg.obj = v;
    free(s->auth_cfg.path);
    s->auth_cfg.path = dup_or_flag(p, path);

    json_object *prov = NULL;
    if (!json_object_object_get_ex(v, "provider", &prov)) {
        char *kp = path_key(path, "provider");
        bad(p, kp ? kp : path, "is required (basic, google, microsoft, manual or another provider plugin)");
        free(kp);
    }
    json_object_object_foreach(v, key, val) {
        char *kp = path_key(path, key);
        if (!kp) {
            p->nomem = true;
            return;
        }
        const char *str;
        int idx, x;
        char sb[SHOW_MAX + 8];
        if (strcmp(key, "provider") == 0) {
            if (want_string(p, kp, val, false, false, &str))
                set_str(p, &s->auth_provider, str);
        } else if (strcmp(key, "proxy") == 0) {
            if (json_object_is_type(val, json_type_string)
                && strcmp(json_object_get_string(val), "none") == 0) {
                s->auth_proxy_mode = 1;
            } else if (json_object_is_type(val, json_type_object)) {
                s->auth_proxy_mode = 2;
                s->auth_proxy_obj = val;
                if (mc__proxy_has_inline_secret(val)) {
                    p->cfg->inline_secret = true;
                    if (!p->inline_at)
                        p->inline_at = dup_or_flag(p, kp);
                }
            } else {
                bad(p, kp, "must be a proxy object or \"none\", got %s", show(val, sb, sizeof(sb)));
            }
        } else if (in_list(key, auth_secret_keys)) {
            if (want_string(p, kp, val, false, true, &str)) {
                p->cfg->inline_secret = true;
                if (!p->inline_at)
                    p->inline_at = dup_or_flag(p, kp);
            }
        } else if (strcmp(key, "client_auth") == 0) {
            want_enum(p, kp, val, client_auth_values, &idx);
        } else if (strcmp(key, "grant") == 0) {
            want_enum(p, kp, val, grant_values, &idx);
        } else if (strcmp(key, "timeout_s") == 0) {
            want_int(p, kp, val, 1, 600, &x);
        } else if (strcmp(key, "params") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                bad(p, kp, "must be an object of strings, got %s", show(val, sb, sizeof(sb)));
            } else {
                json_object_object_foreach(val, pk, pv) {
                    char *pp = path_key(kp, pk);
                    if (!pp) {
                        p->nomem = true;
                        break;
                    }
                    if (!*pk)
                        bad(p, kp, "parameter names must not be empty");
                    else
                        want_string(p, pp, pv, true, false, &str);
                    free(pp);
                }
            }
        } else if (in_list(key, auth_string_keys)) {
            if (want_string(p, kp, val, false, false, &str)) {
                if (strcmp(key, "user") == 0)
                    set_str(p, &s->auth_user, str);
                else if (strcmp(key, "mechanism") == 0)
                    set_str(p, &s->auth_mechanism, str);
            }
        }
        /* other keys: the provider decides (mc__config_prepare) */
        free(kp);
    }
    check_sources(p, path, v, "password");
    check_sources(p, path, v, "client_secret");
}

static void f_ca_file(pctx *p, mc_server *s, const char *path, json_object *v)
{
    const char *str;
    if (want_string(p, path, v, false, false, &str))
        set_str(p, &s->ca_file, str);
}

static void f_tls_min(pctx *p, mc_server *s, const char *path, json_object *v)
{
    static const char *const versions[] = { "1.2", "1.3", NULL };
    int idx;
    if (want_enum(p, path, v, versions, &idx))
        s->tls_min = idx == 0 ? 12 : 13;
}

static void f_helo(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_host(p, path, v, &s->helo);
}

static void f_timeout(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_int(p, path, v, 1, 3600, &s->timeout_s);
}

static void f_max_rcpt(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_int(p, path, v, 1, 10000, &s->max_recipients);
}

static void f_max_conn(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (want_int(p, path, v, 1, 100, &s->max_connections))
        s->max_connections_set = true;
}

static void f_idle(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_int(p, path, v, 0, 3600, &s->idle_timeout_s);
}

static void f_case(pctx *p, mc_server *s, const char *path, json_object *v)
{
    static const char *const cases[] = { "insensitive", "sensitive", NULL };
    int idx;
    if (want_enum(p, path, v, cases, &idx))
        s->address_case = idx == 0 ? MC__CASE_INSENSITIVE : MC__CASE_SENSITIVE;
}

static void f_charset(pctx *p, mc_server *s, const char *path, json_object *v)
{
    const char *str;
    char sb[SHOW_MAX + 8];
    if (!want_string(p, path, v, false, false, &str))
        return;
    for (const char *c = str; *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("-_.:+", *c)) {
            bad(p, path, "must be a charset name such as \"UTF-8\", got %s", show(v, sb, sizeof(sb)));
            return;
        }
    }
    char why[160];
    if (!mc__charset_usable(str, why, sizeof(why))) {
        bad(p, path, "%s", why);
        return;
    }
    set_str(p, &s->charset, str);
}

static void f_plaintext(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_bool(p, path, v, &s->allow_plaintext_auth);
}

static void f_refresh(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_int(p, path, v, 0, 86400, &s->refresh_margin_s);
}

static void f_log_file(pctx *p, mc_server *s, const char *path, json_object *v)
{
    const char *str;
    if (want_string(p, path, v, false, false, &str))
        set_str(p, &s->log_file, str);
}

static void f_proxy(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (!want_object(p, path, v))
        return;
    s->proxy_obj = v;   /* checked with its plugin by mc__config_prepare */
    if (mc__proxy_has_inline_secret(v)) {
        p->cfg->inline_secret = true;
        if (!p->inline_at) {
            char *kp = path_key(path, "password");
            p->inline_at = kp;
            if (!kp)
                p->nomem = true;
        }
    }
}

static void f_transport_options(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (!want_object(p, path, v))
        return;
    s->transport_cfg.obj = v;   /* checked with its plugin by mc__config_prepare */
    free(s->transport_cfg.path);
    s->transport_cfg.path = dup_or_flag(p, path);
}

static void f_default(pctx *p, mc_server *s, const char *path, json_object *v)
{
    want_bool(p, path, v, &s->default_marked);
}

static const struct server_field {
    const char *key;
    field_fn   *fn;
} server_fields[] = {
    { "name", f_name },
    { "host", f_host },
    { "port", f_port },
    { "transport", f_transport },
    { "sender", f_sender },
    { "auth", f_auth },
    { "ca_file", f_ca_file },
    { "tls_min_version", f_tls_min },
    { "helo", f_helo },
    { "timeout_s", f_timeout },
    { "max_recipients", f_max_rcpt },
    { "max_connections", f_max_conn },
    { "idle_timeout_s", f_idle },
    { "address_case", f_case },
    { "charset", f_charset },
    { "allow_plaintext_auth", f_plaintext },
    { "refresh_margin_s", f_refresh },
    { "log_file", f_log_file },
    { "default", f_default },
    { "proxy", f_proxy },
    { "transport_options", f_transport_options },
};
#define N_SERVER_FIELDS (sizeof(server_fields) / sizeof(server_fields[0]))

static const char *const *server_key_list(void)
{
    static const char *keys[N_SERVER_FIELDS + 1];
    for (size_t i = 0; i < N_SERVER_FIELDS; i++)
        keys[i] = server_fields[i].key;
    keys[N_SERVER_FIELDS] = NULL;
    return keys;
}

static void server_defaults(mc_server *s, size_t index)
{
    s->index = index;
    s->tls_min = 12;
    s->timeout_s = 60;
    s->max_recipients = 100;
    s->max_connections = 10;
    s->idle_timeout_s = 30;
    s->address_case = MC__CASE_INSENSITIVE;
    s->refresh_margin_s = 600;
}

static void parse_server(pctx *p, mc_server *s, const char *path, json_object *v)
{
    if (!want_object(p, path, v))
        return;
    const char *const *known = server_key_list();
    json_object_object_foreach(v, key, val) {
        const struct server_field *f = NULL;
        for (size_t i = 0; i < N_SERVER_FIELDS; i++) {
            if (strcmp(server_fields[i].key, key) == 0) {
                f = &server_fields[i];
                break;
            }
        }
        if (!f) {
            unknown_key(p, path, key, known, NULL);
            continue;
        }
        char *kp = path_key(path, key);
        if (!kp) {
            p->nomem = true;
            return;
        }
        f->fn(p, s, kp, val);
        free(kp);
    }
    if (!json_object_object_get_ex(v, "name", NULL)) {
        char *kp = path_key(path, "name");
        bad(p, kp ? kp : path, "is required");
        free(kp);
    }
    if (!s->charset)
        s->charset = dup_or_flag(p, "UTF-8");
}

static void parse_aliases(pctx *p, json_object *v)
{
    if (!json_object_is_type(v, json_type_object)) {
        char sb[SHOW_MAX + 8];
        bad(p, "aliases", "must be an object of local name -> address, got %s", show(v, sb, sizeof(sb)));
        return;
    }
    size_t n = (size_t)json_object_object_length(v);
    p->cfg->aliases = calloc(n ? n : 1, sizeof(*p->cfg->aliases));
    if (!p->cfg->aliases) {
        p->nomem = true;
        return;
    }
    json_object_object_foreach(v, key, val) {
        char *kp = path_key("aliases", key);
        if (!kp) {
            p->nomem = true;
            return;
        }
        const char *str;
        char sb[SHOW_MAX + 8];
        if (!*key || strchr(key, '@') || strpbrk(key, " \t")) {
            char *q = quote_len(key, strlen(key));
            bad(p, "aliases", "%s is not a local name (no domain, no spaces)", q ? q : "key");
            free(q);
        } else if (want_string(p, kp, val, false, false, &str)) {
            if (!address_ok(str)) {
                bad(p, kp, "must be an address like user@example.org, got %s", show(val, sb, sizeof(sb)));
            } else {
                mc__alias *a = &p->cfg->aliases[p->cfg->n_aliases];
                a->name = dup_or_flag(p, key);
                a->address = dup_or_flag(p, str);
                p->cfg->n_aliases++;
            }
        }
        free(kp);
    }
}

static const char *const top_keys[] = { "servers", "aliases", "log_file", "syslog", "queue",
                                         "token_store", "$schema", NULL };

/* "token_store": {"type": NAME, ...}: the shape here; the plugin's keys
 * and rules in mc__config_prepare (prepare_token_store). */
static void parse_token_store(pctx *p, json_object *v)
{
    const char *str;
    json_object *t;
    if (!want_object(p, "token_store", v))
        return;
    if (!json_object_object_get_ex(v, "type", &t)) {
        bad(p, "token_store.type", "is required: \"file\" or a token-store plugin's name");
        return;
    }
    if (!want_string(p, "token_store.type", t, false, false, &str))
        return;
    size_t n = strlen(str);
    bool ok = n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (str[i] >= 'a' && str[i] <= 'z') || (str[i] >= '0' && str[i] <= '9') || str[i] == '-';
    if (!ok) {
        bad(p, "token_store.type", "must be \"file\" or a plugin name ([a-z0-9-]{1,64}), got \"%.64s\"",
            str);
        return;
    }
    set_str(p, &p->cfg->token_store_type, str);
    p->cfg->token_store_cfg.obj = v;
    free(p->cfg->token_store_cfg.path);
    p->cfg->token_store_cfg.path = dup_or_flag(p, "token_store");
    if (strcmp(str, "file") != 0)
        return;
    json_object_object_foreach(v, key, val) {
        (void)val;
        if (strcmp(key, "type") == 0)
            continue;
        char *kp = path_key("token_store", key);
        if (!kp) {
            p->nomem = true;
            return;
        }
        bad_at(p, kp, kp, "unknown key (the file store takes only \"type\")");
        free(kp);
    }
}

/* "queue": {"max_age_s", "retry_s", "dir"} (DESIGN.md "System mail"). */
static void parse_queue(pctx *p, json_object *v)
{
    static const char *const keys[] = { "max_age_s", "retry_s", "dir", NULL };
    if (!want_object(p, "queue", v))
        return;
    p->cfg->has_queue = true;
    json_object_object_foreach(v, key, val) {
        const char *str;
        if (strcmp(key, "max_age_s") == 0)
            want_int(p, "queue.max_age_s", val, 1, 31536000, &p->cfg->queue_max_age_s);
        else if (strcmp(key, "retry_s") == 0)
            want_int(p, "queue.retry_s", val, 1, 3600, &p->cfg->queue_retry_s);
        else if (strcmp(key, "dir") == 0) {
            if (want_string(p, "queue.dir", val, false, false, &str)) {
                if (str[0] != '/')
                    bad(p, "queue.dir", "must be an absolute path, got \"%s\"", str);
                else
                    set_str(p, &p->cfg->queue_dir, str);
            }
        } else
            unknown_key(p, "queue", key, keys, NULL);
    }
}

/* "syslog": true (mail), false, or a facility name. */
static const struct { const char *name; int facility; } facilities[] = {
    { "mail", LOG_MAIL },     { "user", LOG_USER },     { "daemon", LOG_DAEMON },
    { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
    { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
    { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

/* The top-level log keys, shared by validate_doc and mc__config_toplog. */
static void top_log_key(pctx *p, const char *key, json_object *val)
{
    char sb[SHOW_MAX + 8];
    const char *str;
    if (strcmp(key, "log_file") == 0) {
        if (want_string(p, "log_file", val, false, false, &str))
            set_str(p, &p->cfg->log_file, str);
        return;
    }
    if (json_object_is_type(val, json_type_boolean)) {
        p->cfg->syslog_facility = json_object_get_boolean(val) ? LOG_MAIL : -1;
        return;
    }
    if (json_object_is_type(val, json_type_string)) {
        for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++) {
            if ((size_t)json_object_get_string_len(val) == strlen(facilities[i].name)
                && strcmp(json_object_get_string(val), facilities[i].name) == 0) {
                p->cfg->syslog_facility = facilities[i].facility;
                return;
            }
        }
    }
    bad(p, "syslog", "must be true, false or a facility name (\"mail\", \"user\", \"daemon\", "
                     "\"local0\"..\"local7\"), got %s", show(val, sb, sizeof(sb)));
}

static void validate_doc(pctx *p, json_object *root)
{
    mc__config *cfg = p->cfg;
    char sb[SHOW_MAX + 8];
    if (!json_object_is_type(root, json_type_object)) {
        bad(p, "", "must be an object with \"servers\", got %s", show(root, sb, sizeof(sb)));
        return;
    }
    json_object_object_foreach(root, key, val) {
        const char *str;
        if (strcmp(key, "servers") == 0) {
            if (!json_object_is_type(val, json_type_array)) {
                bad(p, "servers", "must be an array of servers, got %s", show(val, sb, sizeof(sb)));
                continue;
            }
            size_t n = json_object_array_length(val);
            if (n == 0) {
                bad(p, "servers", "must hold at least one server");
                continue;
            }
            cfg->servers = calloc(n, sizeof(*cfg->servers));
            if (!cfg->servers) {
                p->nomem = true;
                return;
            }
            cfg->n_servers = n;
            for (size_t i = 0; i < n; i++) {
                server_defaults(&cfg->servers[i], i);
                char *sp = path_index("servers", i);
                if (!sp) {
                    p->nomem = true;
                    return;
                }
                parse_server(p, &cfg->servers[i], sp, json_object_array_get_idx(val, i));
                free(sp);
            }
        } else if (strcmp(key, "aliases") == 0) {
            parse_aliases(p, val);
        } else if (strcmp(key, "log_file") == 0 || strcmp(key, "syslog") == 0) {
            top_log_key(p, key, val);
        } else if (strcmp(key, "queue") == 0) {
            parse_queue(p, val);
        } else if (strcmp(key, "token_store") == 0) {
            parse_token_store(p, val);
        } else if (strcmp(key, "$schema") == 0) {
            want_string(p, "$schema", val, true, false, &str);
        } else {
            unknown_key(p, "", key, top_keys, NULL);
        }
    }
    if (!json_object_object_get_ex(root, "servers", NULL))
        bad(p, "servers", "is required (an array of servers)");

    /* names unique */
    for (size_t i = 0; i < cfg->n_servers; i++) {
        mc_server *s = &cfg->servers[i];
        if (!s->name)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (cfg->servers[j].name && strcmp(cfg->servers[j].name, s->name) == 0) {
                char path[64];
                snprintf(path, sizeof(path), "servers[%zu].name", i);
                bad(p, path, "duplicate name \"%s\" (servers[%zu] has it too)", s->name, j);
                break;
            }
        }
    }

    /* the default rule */
    size_t marked = 0;
    for (size_t i = 0; i < cfg->n_servers; i++)
        marked += cfg->servers[i].default_marked;
    if (marked > 1) {
        mc__buf b = MC__BUF_INIT;
        size_t k = 0;
        for (size_t i = 0; i < cfg->n_servers; i++) {
            mc_server *s = &cfg->servers[i];
            if (!s->default_marked)
                continue;
            if (k > 0)
                mc__buf_puts(&b, k + 1 == marked ? " and " : ", ");
            if (s->name)
                mc__buf_printf(&b, "\"%s\"", s->name);
            else
                mc__buf_printf(&b, "servers[%zu]", i);
            k++;
        }
        /* one line; one field per server marked */
        char first[48] = "servers";
        for (size_t i = 0; i < cfg->n_servers; i++) {
            if (cfg->servers[i].default_marked) {
                snprintf(first, sizeof(first), "servers[%zu].default", i);
                break;
            }
        }
        char *msg = NULL;
        if (asprintf(&msg, "%zu servers are marked default (%s); mark at most one", marked,
                     b.data ? b.data : "") < 0) {
            p->nomem = true;
        } else if (bad_at(p, "servers", first, "%s", msg) > 0) {
            bool seen_first = false;
            for (size_t i = 0; i < cfg->n_servers; i++) {
                if (!cfg->servers[i].default_marked)
                    continue;
                if (!seen_first) {
                    seen_first = true;
                    continue;
                }
                char at[48];
                snprintf(at, sizeof(at), "servers[%zu].default", i);
                if (mc__diag_item_add(p->d, at, msg) < 0)
                    p->nomem = true;
            }
        }
        free(msg);
        mc__buf_free(&b);
    } else if (marked == 1) {
        for (size_t i = 0; i < cfg->n_servers; i++)
            if (cfg->servers[i].default_marked)
                cfg->def = &cfg->servers[i];
    } else if (cfg->n_servers == 1) {
        cfg->def = &cfg->servers[0];
    }
    if (cfg->def)
        cfg->def->is_default = true;
}

/* Wipe the inline secrets of one server object. */
static void wipe_server_secrets(json_object *s)
{
    json_object *auth = NULL;
    mc__proxy_wipe_secrets(s, false);
    if (!json_object_is_type(s, json_type_object)
        || !json_object_object_get_ex(s, "auth", &auth)
        || !json_object_is_type(auth, json_type_object))
        return;
    for (size_t k = 0; auth_secret_keys[k]; k++) {
        json_object *v = NULL;
        if (json_object_object_get_ex(auth, auth_secret_keys[k], &v)
            && json_object_is_type(v, json_type_string))
            OPENSSL_cleanse((char *)json_object_get_string(v),
                            (size_t)json_object_get_string_len(v));
    }
}

/* Wipe inline secrets held by the document before it is released. */
static void wipe_doc_secrets(json_object *doc)
{
    json_object *servers = NULL;
    if (!json_object_is_type(doc, json_type_object)
        || !json_object_object_get_ex(doc, "servers", &servers)
        || !json_object_is_type(servers, json_type_array))
        return;
    for (size_t i = 0; i < json_object_array_length(servers); i++) {
        json_object *s = json_object_array_get_idx(servers, i), *auth = NULL;
        mc__proxy_wipe_secrets(s, false);
        if (!json_object_is_type(s, json_type_object)
            || !json_object_object_get_ex(s, "auth", &auth)
            || !json_object_is_type(auth, json_type_object))
            continue;
        for (size_t k = 0; auth_secret_keys[k]; k++) {
            json_object *v = NULL;
            if (json_object_object_get_ex(auth, auth_secret_keys[k], &v)
                && json_object_is_type(v, json_type_string))
                OPENSSL_cleanse((char *)json_object_get_string(v),
                                (size_t)json_object_get_string_len(v));
        }
    }
}

static void server_free(mc_server *s)
{
    free(s->name);
    free(s->host);
    free(s->transport);
    free(s->sender_address);
    free(s->sender_name);
    free(s->auth_provider);
    free(s->auth_mechanism);
    free(s->auth_user);
    free(s->auth_cfg.path);
    free(s->transport_cfg.path);
    free(s->ca_file);
    free(s->helo);
    free(s->charset);
    free(s->log_file);
    mc__proxy_route_free(s->proxy);
    mc__proxy_route_free(s->auth_proxy_own);
}

void mc__config_free(mc__config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_servers; i++)
        server_free(&cfg->servers[i]);
    free(cfg->servers);
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        free(cfg->aliases[i].name);
        free(cfg->aliases[i].address);
    }
    free(cfg->aliases);
    free(cfg->log_file);
    free(cfg->queue_dir);
    free(cfg->token_store_type);
    free(cfg->token_store_cfg.path);
    if (cfg->doc) {
        wipe_doc_secrets(cfg->doc);
        json_object_put(cfg->doc);
    }
    if (cfg->text) {
        OPENSSL_cleanse(cfg->text, cfg->text_len);
        free(cfg->text);
    }
    free(cfg->path);
    free(cfg);
}

/* Parse and validate text. Errors go to d; *inline_at (malloc'd) names the
 * first inline secret. Returns the config (possibly with errors in d), or
 * NULL on OOM. */
static mc__config *parse_text(const char *name, const char *text, size_t len, mc__diag *d,
                              char **inline_at, bool *nomem)
{
    mc__config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        *nomem = true;
        return NULL;
    }
    cfg->syslog_facility = -1;
    cfg->queue_max_age_s = 432000;
    cfg->queue_retry_s = 60;
    if (!(cfg->text = malloc(len + 1))) {
        *nomem = true;
        return cfg;
    }
    memcpy(cfg->text, text, len);
    cfg->text[len] = '\0';
    cfg->text_len = len;
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        syntax_error(d, name, text, (size_t)(nul - text), "NUL byte");
        return cfg;
    }
    if (len > (size_t)INT_MAX) {
        mc__diag_add(d, "%s: too large", name);
        return cfg;
    }
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    if (!tok) {
        *nomem = true;
        return cfg;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr != json_tokener_success) {
        json_object_put(root);
        if (jerr == json_tokener_continue)
            syntax_error(d, name, text, len, "unexpected end of input");
        else
            syntax_error(d, name, text, end > len ? len : end, json_tokener_error_desc(jerr));
        return cfg;
    }
    for (size_t i = end; i < len; i++) {
        if (!strchr(" \t\r\n", text[i])) {
            syntax_error(d, name, text, i, "unexpected data after the end of the document");
            json_object_put(root);
            return cfg;
        }
    }
    if (!scan_text(name, text, end, d, nomem)) {
        json_object_put(root);
        return cfg;
    }
    cfg->doc = root;
    pctx p = { .cfg = cfg, .d = d };
    validate_doc(&p, root);
    if (p.nomem)
        *nomem = true;
    *inline_at = p.inline_at;
    return cfg;
}

static int finish(mc__config *cfg, mc__diag *d, bool nomem, mc__config **out, mc_err **err)
{
    if (nomem || !cfg) {
        mc__diag_free(d);
        mc__config_free(cfg);
        return oom(err);
    }
    if (d->n) {
        int rc = diag_error(d, err);
        mc__diag_free(d);
        mc__config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int mc__config_parse(mc__config **out, const char *text, size_t len, mc_err **err)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!text && len)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no config text");
    mc__diag d = { 0 };
    bool nomem = false;
    char *inline_at = NULL;
    mc__config *cfg = parse_text("config", text ? text : "", len, &d, &inline_at, &nomem);
    free(inline_at);
    if (cfg)
        cfg->in_memory = true;
    return finish(cfg, &d, nomem, out, err);
}

/* ------------------------------------------------------------- trust */

#define TRUST_HINT "make the file and each of its folders owned by you or root and writable " \
                   "only by their owner (chmod go-w)"

/* One directory on the way to a trusted file: the user's or root's, and
 * writable by nobody else, except a root-owned sticky directory such as
 * /tmp (there nobody but the owner may rename or remove an entry, and the
 * entry itself is checked). OpenSSH's safe_path refuses those as well;
 * Postfix and sudo accept them: a test's or a user's file directly in /tmp
 * is safe as long as it is the user's own. */
static bool dir_trusted(const char *dir, const char *file, uid_t me, char *why, size_t n)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        snprintf(why, n, "%s: cannot check the folder of %s: %s", dir, file, strerror(errno));
        return false;
    }
    if (st.st_uid != me && st.st_uid != 0) {
        snprintf(why, n, "%s: the folder of %s is owned by uid %u, not by you (uid %u) or root",
                 dir, file, (unsigned)st.st_uid, (unsigned)me);
        return false;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_uid == 0 && (st.st_mode & S_ISVTX))) {
        snprintf(why, n, "%s: the folder of %s is writable by group or others (mode %04o)",
                 dir, file, (unsigned)(st.st_mode & 07777));
        return false;
    }
    return true;
}

/* Every folder from path's own up to "/". */
static bool dirs_trusted(const char *path, const char *file, uid_t me, char *why, size_t n)
{
    char *abs = NULL;
    if (path[0] == '/') {
        abs = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (cwd && asprintf(&abs, "%s/%s", cwd, path) < 0)
            abs = NULL;
        free(cwd);
    }
    if (!abs) {
        snprintf(why, n, "%s: cannot check its folders: %s", file, strerror(errno ? errno : ENOMEM));
        return false;
    }
    bool ok = true;
    for (char *slash = strrchr(abs, '/'); ok && slash; slash = strrchr(abs, '/')) {
        if (slash == abs) {
            ok = dir_trusted("/", file, me, why, n);
            break;
        }
        *slash = '\0';
        if (slash[1] == '\0' || strcmp(slash + 1, ".") == 0)
            continue;                     /* "a//b", "a/./b": the same folder */
        ok = dir_trusted(abs, file, me, why, n);
    }
    free(abs);
    return ok;
}

bool mc__file_trusted(const char *path, const struct stat *st, char *why, size_t n)
{
    uid_t me = geteuid();
    if (st->st_uid != me && st->st_uid != 0) {
        snprintf(why, n, "%s: owned by uid %u, not by you (uid %u) or root", path,
                 (unsigned)st->st_uid, (unsigned)me);
        return false;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, n, "%s: writable by group or others (mode %04o)", path,
                 (unsigned)(st->st_mode & 07777));
        return false;
    }
    /* the folders of the name as given (a symlink lives there) and of
     * what it resolves to */
    if (!dirs_trusted(path, path, me, why, n))
        return false;
    char *real = realpath(path, NULL);
    if (!real) {
        snprintf(why, n, "%s: cannot resolve: %s", path, strerror(errno));
        return false;
    }
    bool ok = strcmp(real, path) == 0 || dirs_trusted(real, path, me, why, n);
    free(real);
    return ok;
}

/* A file the config names (a secret file, a ca_file): refused like the
 * config when others could change it. A missing file is reported where it
 * is used, but not in a folder others could plant it in. */
static void check_named_file(mc__diag *d, const char *where, const char *file, bool *nomem)
{
    struct stat st;
    char why[PATH_MAX + 256];
    bool ok;
    if (stat(file, &st) == 0) {
        ok = mc__file_trusted(file, &st, why, sizeof(why));
    } else {
        char *dir = strdup(file), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        ok = !dir || (slash && stat(dir, &st) < 0)
             || dirs_trusted(file, file, geteuid(), why, sizeof(why));
        free(dir);
    }
    if (!ok && mc__diag_add(d, "%s: %s: not trusted (others could change it)", where, why) < 0)
        *nomem = true;
}

static void check_named_files(const mc__config *cfg, mc__diag *d, bool *nomem)
{
    char where[128];
    for (size_t i = 0; i < cfg->n_servers; i++) {
        const mc_server *s = &cfg->servers[i];
        if (s->ca_file) {
            snprintf(where, sizeof(where), "servers[%zu].ca_file", i);
            check_named_file(d, where, s->ca_file, nomem);
        }
        if (!s->has_auth || !s->auth_cfg.obj)
            continue;
        static const char *const keys[] = { "password_file", "client_secret_file", "ca_file", NULL };
        for (size_t k = 0; keys[k]; k++) {
            json_object *v = NULL;
            if (json_object_object_get_ex(s->auth_cfg.obj, keys[k], &v)
                && json_object_is_type(v, json_type_string)) {
                snprintf(where, sizeof(where), "servers[%zu].auth.%s", i, keys[k]);
                check_named_file(d, where, json_object_get_string(v), nomem);
            }
        }
    }
}

/* What a config read from a file must also satisfy (mc__config_load and
 * the successors of mc__config_reparse); sets cfg->path when all holds. */
static void file_rules(mc__config *cfg, const char *path, mode_t mode, const char *inline_at,
                       mc__diag *d, bool *nomem)
{
    if (!cfg)
        return;
    if (cfg->inline_secret && (mode & (S_IRGRP | S_IROTH))) {
        if (mc__diag_add(d, "%s: holds an inline secret (%s) and is readable by group or others "
                            "(mode %04o); chmod 600 it, or use a _file, _env or _command source",
                         path, inline_at ? inline_at : "auth", (unsigned)(mode & 07777)) < 0)
            *nomem = true;
    }
    if (cfg->queue_dir && strcmp(path, MC__SYSTEM_CONFIG) == 0
        && mc__diag_add(d, "%s: queue.dir: not allowed in the system config (the system queue "
                           "is the spool folder built in)", path) < 0)
        *nomem = true;
    if (!*nomem && !d->n)
        check_named_files(cfg, d, nomem);
    if (!*nomem && !d->n && !(cfg->path = strdup(path)))
        *nomem = true;
}

int mc__config_load(mc__config **out, const char *path, mc_err **err)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!path || !*path)
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "no config file");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "%s: cannot read the config: %s", path, strerror(e));
        if (e == ENOENT && err)
            mc__error_hint(*err, "write one (see examples/ and README \"Configuration\"), or give "
                                 "its path explicitly or in $MAILCONN_CONFIG; mailconn looks in "
                                 "$XDG_CONFIG_HOME/mailconn/config.json, then "
                                 "/etc/mailconn/config.json");
        return MC_EFILE;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "%s: cannot read the config: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "%s: not a regular file", path);
    }
    /* a config runs commands (*_command) and names secrets: one that
     * someone else could change is not read at all */
    char why[PATH_MAX + 256];
    if (!mc__file_trusted(path, &st, why, sizeof(why))) {
        close(fd);
        mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                      "%s: config not used (others could change it, and it can run commands)",
                      why);
        if (err)
            mc__error_hint(*err, TRUST_HINT);
        return MC_ECONFIG;
    }
    mc__buf b = MC__BUF_INIT;
    b.secret = true;             /* it may hold inline secrets */
    char tmp[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                               "%s: cannot read the config: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > CONFIG_MAX) {
            rc = mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                               "%s: larger than %d MiB: not a config", path, CONFIG_MAX >> 20);
            break;
        }
        if (mc__buf_put(&b, tmp, (size_t)n) < 0) {
            rc = oom(err);
            break;
        }
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(fd);
    if (rc < 0) {
        mc__buf_free(&b);
        return rc;
    }

    mc__diag d = { 0 };
    bool nomem = false;
    char *inline_at = NULL;
    mc__config *cfg = parse_text(path, b.data ? b.data : "", b.len, &d, &inline_at, &nomem);
    mc__buf_free(&b);
    file_rules(cfg, path, st.st_mode, inline_at, &d, &nomem);
    free(inline_at);
    return finish(cfg, &d, nomem, out, err);
}

int mc__config_toplog(const char *path, char **log_file, int *facility)
{
    *log_file = NULL;
    *facility = -1;
    int fd = path && *path ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : -1;
    if (fd < 0)
        return MC_ECONFIG;
    /* the rule of mc__config_load: a file others could change is not read
     * (it would choose where mailconn writes) */
    struct stat st;
    char why[PATH_MAX + 256];
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX
        || !mc__file_trusted(path, &st, why, sizeof(why))) {
        close(fd);
        return MC_ECONFIG;
    }
    mc__buf b = MC__BUF_INIT;
    b.secret = true;             /* it may hold inline secrets */
    char tmp[8192];
    ssize_t n;
    while (b.len <= CONFIG_MAX && ((n = read(fd, tmp, sizeof(tmp))) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0 && mc__buf_put(&b, tmp, (size_t)n) < 0)
            break;
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(fd);
    json_object *root = NULL;
    json_tokener *tok = b.len && b.len <= CONFIG_MAX ? json_tokener_new() : NULL;
    if (tok) {
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        root = json_tokener_parse_ex(tok, b.data, (int)b.len);
        if (json_tokener_get_error(tok) != json_tokener_success) {
            json_object_put(root);
            root = NULL;
        }
        json_tokener_free(tok);
    }
    mc__buf_free(&b);
    /* each key on its own: a bad "syslog" does not lose a good "log_file" */
    mc__config c = { .syslog_facility = -1 };
    mc__diag d = { 0 };
    pctx p = { .cfg = &c, .d = &d };
    json_object *v;
    if (json_object_is_type(root, json_type_object)) {
        if (json_object_object_get_ex(root, "log_file", &v))
            top_log_key(&p, "log_file", v);
        if (json_object_object_get_ex(root, "syslog", &v))
            top_log_key(&p, "syslog", v);
    }
    mc__diag_free(&d);
    wipe_doc_secrets(root);
    json_object_put(root);
    *log_file = c.log_file;
    *facility = c.syslog_facility;
    return c.log_file || c.syslog_facility >= 0 ? 0 : MC_ECONFIG;
}

/* ------------------------------------------------------------- prepare */

static const char *const known_transports[] = { "plain", "starttls", "tls", NULL };
static const char *const known_providers[] = { "basic", "google", "manual", "microsoft", NULL };

static void plugin_list(mc__registry *reg, mc_plugin_kind kind, const char *const *names,
                        mc__buf *b)
{
    size_t k = 0;
    for (size_t i = 0; names[i]; i++) {
        if (reg && mc__registry_exists(reg, kind, names[i])) {
            mc__buf_printf(b, "%s%s", k ? ", " : "", names[i]);
            k++;
        }
    }
    if (!k)
        mc__buf_printf(b, "none found");
}

/* A plugin's ops, or NULL with an error naming the server's field. */
static const void *need_plugin(pctx *p, mc__registry *reg, mc_plugin_kind kind,
                               const char *name, const char *path, const char *what)
{
    const mc__plugin *pl = NULL;
    mc_err *pe = NULL;
    int rc = reg ? mc__registry_get(reg, kind, name, &pl, &pe) : MC_EPLUGIN;
    if (rc == 0 && pl && pl->desc && pl->desc->ops) {
        mc_error_free(pe);
        return pl->desc->ops;
    }
    if (reg && mc__registry_exists(reg, kind, name)) {
        bad(p, path, "%s plugin \"%s\" cannot be loaded: %s", what, name,
            pe && pe->message ? pe->message : mc_strerror(rc));
    } else {
        mc__buf b = MC__BUF_INIT;
        plugin_list(reg, kind, kind == MC_PLUGIN_TRANSPORT ? known_transports : known_providers, &b);
        bad(p, path, "unknown %s \"%s\" (plugins: %s)", what, name, b.data ? b.data : "");
        mc__buf_free(&b);
    }
    mc_error_free(pe);
    return NULL;
}

static void prepare_auth(pctx *p, mc_server *s, const mc_auth_ops *ops, const char *spath,
                         mc__registry *reg)
{
    char apath[96];
    snprintf(apath, sizeof(apath), "%s.auth", spath);
    char what[128];
    snprintf(what, sizeof(what), " for provider \"%s\"", s->auth_provider);
    /* an OAuth provider's keys: the engine's common ones plus its own */
    const char **keys = mc__auth_keys(ops);
    if (!keys) {
        p->nomem = true;
        return;
    }
    json_object_object_foreach(s->auth_cfg.obj, key, val) {
        (void)val;
        if (strcmp(key, "provider") == 0 || strcmp(key, "proxy") == 0 || in_list(key, keys))
            continue;
        unknown_key(p, apath, key, keys, what);
    }
    free(keys);
    s->auth_cfg.diag = p->d;
    mc__auth_validate(mc__registry_hc(reg), ops, &s->auth_cfg);
    s->auth_cfg.diag = NULL;
}

/* A server's "transport_options": the transport's keys (none declared:
 * the object is an error), then its validate(). */
static void prepare_transport_options(pctx *p, mc_server *s, const mc_transport_ops *ops,
                                      mc__registry *reg)
{
    const char *path = s->transport_cfg.path;
    const char *const *keys = MC_SIZE_HAS(ops, mc_transport_ops, keys) ? ops->keys : NULL;
    if (!keys) {
        bad(p, path, "transport \"%s\" takes no options", s->transport);
        return;
    }
    char what[96];
    snprintf(what, sizeof(what), " for transport \"%s\"", s->transport);
    json_object_object_foreach(s->transport_cfg.obj, key, val) {
        (void)val;
        if (in_list(key, keys))
            continue;
        char *kp = path_key(path, key);
        char *q = quote_len(key, strlen(key));
        const char *sug = suggest(key, keys);
        if (!kp || !q)
            p->nomem = true;
        else if (sug)
            bad_at(p, kp, kp, "unknown key %s%s (did you mean \"%s\"?)", q, what, sug);
        else
            bad_at(p, kp, kp, "unknown key %s%s", q, what);
        free(kp);
        free(q);
    }
    if (MC_SIZE_HAS(ops, mc_transport_ops, validate) && ops->validate) {
        s->transport_cfg.diag = p->d;
        ops->validate(mc__registry_hc(reg), &s->transport_cfg);
        s->transport_cfg.diag = NULL;
    }
}

mc_transport_security mc__transport_security(const mc_transport_ops *ops, mc_host_ctx *hc,
                                             const mc_plugin_cfg *options)
{
    if (!ops || !MC_SIZE_HAS(ops, mc_transport_ops, security))
        return MC_SECURITY_UNDECLARED;
    if (MC_SIZE_HAS(ops, mc_transport_ops, security_of) && ops->security_of)
        return ops->security_of(hc, options);
    return ops->security;
}

/* Whether credentials over this transport travel unencrypted: what it
 * declares (for these options); a 2.0 transport (undeclared) by its name,
 * as before. */
static bool transport_plaintext(const mc_server *s, const mc_transport_ops *ops, mc__registry *reg)
{
    mc_transport_security sec = mc__transport_security(ops, mc__registry_hc(reg),
                                                       s->transport_cfg.obj ? &s->transport_cfg : NULL);
    if (sec == MC_SECURITY_UNDECLARED)
        return strcmp(s->transport, "plain") == 0;
    return sec != MC_SECURITY_TLS && sec != MC_SECURITY_STARTTLS;
}

static uint16_t table_port(const char *transport)
{
    if (strcmp(transport, "plain") == 0)
        return 25;
    if (strcmp(transport, "tls") == 0)
        return 465;
    if (strcmp(transport, "starttls") == 0)
        return 587;
    return 0;
}

static void prepare_server(pctx *p, mc_server *s, mc__registry *reg)
{
    char spath[48];
    snprintf(spath, sizeof(spath), "servers[%zu]", s->index);
    char fpath[96];

    const mc_auth_ops *aops = NULL;
    bool auth_known = !s->has_auth;
    if (s->has_auth && s->auth_provider) {
        snprintf(fpath, sizeof(fpath), "%s.auth.provider", spath);
        aops = need_plugin(p, reg, MC_PLUGIN_AUTH, s->auth_provider, fpath, "provider");
        if (aops && aops->size < offsetof(mc_auth_ops, oauth_profile)) {
            bad(p, fpath, "provider plugin \"%s\" has an ops table too small for this core",
                s->auth_provider);
            aops = NULL;
        }
        auth_known = aops != NULL;
        if (aops)
            prepare_auth(p, s, aops, spath, reg);
    }

    /* SMTP defaults from the provider */
    if (!s->transport && aops && aops->smtp_transport)
        s->transport = dup_or_flag(p, aops->smtp_transport);
    if (!s->host && aops && aops->smtp_host)
        s->host = dup_or_flag(p, aops->smtp_host);
    if (!s->max_connections_set && aops && aops->max_connections)
        s->max_connections = aops->max_connections > 100 ? 100 : (int)aops->max_connections;

    if (!s->host && auth_known) {
        snprintf(fpath, sizeof(fpath), "%s.host", spath);
        if (s->has_auth)
            bad(p, fpath, "is required (provider \"%s\" has no SMTP defaults)", s->auth_provider);
        else
            bad(p, fpath, "is required");
    }

    const mc_transport_ops *tops = NULL;
    snprintf(fpath, sizeof(fpath), "%s.transport", spath);
    if (!s->transport) {
        if (auth_known) {
            if (s->has_auth)
                bad(p, fpath, "is required: \"plain\", \"starttls\" or \"tls\" (provider \"%s\" "
                              "has no SMTP defaults)", s->auth_provider);
            else
                bad(p, fpath, "is required: \"plain\", \"starttls\" or \"tls\"");
        }
    } else {
        tops = need_plugin(p, reg, MC_PLUGIN_TRANSPORT, s->transport, fpath, "transport");
        if (tops && s->transport_cfg.obj)
            prepare_transport_options(p, s, tops, reg);
    }

    if (!s->port_set && s->transport) {
        uint16_t port = 0;
        if (aops && aops->smtp_port
            && (!aops->smtp_transport || strcmp(aops->smtp_transport, s->transport) == 0))
            port = aops->smtp_port;
        else if (tops && tops->default_port)
            port = tops->default_port;
        else
            port = table_port(s->transport);
        s->port = port;
    }

    mc__proxy_route_free(s->proxy);
    s->proxy = NULL;
    mc__proxy_route_free(s->auth_proxy_own);
    s->auth_proxy_own = NULL;
    if (s->proxy_obj) {
        snprintf(fpath, sizeof(fpath), "%s.proxy", spath);
        if (mc__proxy_prepare(p->d, reg, s->proxy_obj, fpath, &s->proxy) < 0)
            p->nomem = true;
    }
    if (s->auth_proxy_mode == 2 && s->auth_proxy_obj) {
        snprintf(fpath, sizeof(fpath), "%s.auth.proxy", spath);
        if (mc__proxy_prepare(p->d, reg, s->auth_proxy_obj, fpath, &s->auth_proxy_own) < 0)
            p->nomem = true;
    }

    if (s->has_auth && s->transport && transport_plaintext(s, tops, reg) && !s->allow_plaintext_auth) {
        snprintf(fpath, sizeof(fpath), "%s.auth", spath);
        bad(p, fpath, "sending credentials over the %s transport needs "
                      "\"allow_plaintext_auth\": true", s->transport);
    }
}

/* The config's token-store plugin: loaded (never opened: `check` must not
 * reach a database), its keys checked, its validate run. */
static void prepare_token_store(pctx *p, mc__config *cfg, mc__registry *reg)
{
    cfg->token_store_ops = NULL;
    if (!cfg->token_store_type || strcmp(cfg->token_store_type, "file") == 0)
        return;
    const char *type = cfg->token_store_type;
    const mc__plugin *pl = NULL;
    mc_err *pe = NULL;
    int rc = reg ? mc__registry_get(reg, MC_PLUGIN_TOKEN_STORE, type, &pl, &pe) : MC_EPLUGIN;
    if (rc < 0 || !pl || !pl->desc || !pl->desc->ops) {
        bad(p, "token_store.type", "token store \"%s\": %s", type,
            pe && pe->message ? pe->message : mc_strerror(rc < 0 ? rc : MC_EPLUGIN));
        mc_error_free(pe);
        return;
    }
    mc_error_free(pe);
    const mc_store_plugin_ops *ops = pl->desc->ops;
    if (ops->size < sizeof(mc_store_plugin_ops) || !ops->open || !ops->ops
        || ops->ops->size < sizeof(mc_token_store_ops) || !ops->ops->lock || !ops->ops->unlock
        || !ops->ops->load || !ops->ops->save || !ops->ops->remove) {
        bad(p, "token_store.type", "token store plugin \"%s\" lacks open or one of the store's "
                                   "ops (lock, unlock, load, save, remove)", type);
        return;
    }
    char what[96];
    snprintf(what, sizeof(what), " for token store \"%s\"", type);
    json_object_object_foreach(cfg->token_store_cfg.obj, key, val) {
        (void)val;
        if (strcmp(key, "type") == 0 || in_list(key, ops->keys))
            continue;
        char *kp = path_key("token_store", key);
        char *q = quote_len(key, strlen(key));
        if (!kp || !q) {
            free(kp);
            free(q);
            p->nomem = true;
            return;
        }
        const char *sug = suggest(key, ops->keys);
        if (sug)
            bad_at(p, kp, kp, "unknown key %s%s (did you mean \"%s\"?)", q, what, sug);
        else
            bad_at(p, kp, kp, "unknown key %s%s", q, what);
        free(kp);
        free(q);
    }
    if (ops->validate) {
        size_t before = p->d->n;
        cfg->token_store_cfg.diag = p->d;
        ops->validate(mc__registry_hc(reg), &cfg->token_store_cfg);
        cfg->token_store_cfg.diag = NULL;
        if (p->d->n != before)
            return;
    }
    cfg->token_store_ops = ops;
}

int mc__config_prepare(mc__config *cfg, mc__registry *reg, const mc_server *only, mc_err **err)
{
    if (!cfg)
        return MC_EINVAL;
    mc__diag d = { 0 };
    pctx p = { .cfg = cfg, .d = &d };
    prepare_token_store(&p, cfg, reg);
    for (size_t i = 0; i < cfg->n_servers; i++) {
        if (only && only != &cfg->servers[i])
            continue;
        prepare_server(&p, &cfg->servers[i], reg);
    }
    if (p.nomem) {
        mc__diag_free(&d);
        return oom(err);
    }
    int rc = d.n ? diag_error(&d, err) : 0;
    mc__diag_free(&d);
    return rc;
}

/* ------------------------------------------------------------- secrets */

static void check_readable(pctx *p, const char *path, const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        bad(p, path, "cannot read \"%s\": %s", file, strerror(errno));
        return;
    }
    close(fd);
}

int mc__config_check_secrets(mc__config *cfg, mc_err **err)
{
    if (!cfg)
        return MC_EINVAL;
    mc__diag d = { 0 };
    pctx p = { .cfg = cfg, .d = &d };
    for (size_t i = 0; i < cfg->n_servers; i++) {
        mc_server *s = &cfg->servers[i];
        char path[96];
        if (s->ca_file) {
            snprintf(path, sizeof(path), "servers[%zu].ca_file", i);
            check_readable(&p, path, s->ca_file);
        }
        /* the proxies' passwords: the server's, and auth's own */
        json_object *px[2] = { s->proxy_obj, s->auth_proxy_mode == 2 ? s->auth_proxy_obj : NULL };
        for (size_t k = 0; k < 2; k++) {
            if (!px[k] || !json_object_is_type(px[k], json_type_object))
                continue;
            snprintf(path, sizeof(path), k ? "servers[%zu].auth.proxy" : "servers[%zu].proxy", i);
            mc_plugin_cfg pc = { .obj = px[k], .path = path };
            char *value = NULL;
            mc_err *e = NULL;
            if (mc__secret_resolve(NULL, &pc, "password", &value, &e) < 0)
                if (mc__diag_add(&d, "%s", e && e->message ? e->message : "secret unavailable") < 0)
                    p.nomem = true;
            mc__secret_free(value);
            mc_error_free(e);
        }
        if (!s->has_auth)
            continue;
        for (size_t k = 0; auth_secret_keys[k]; k++) {
            char *value = NULL;
            mc_err *e = NULL;
            if (mc__secret_resolve(NULL, &s->auth_cfg, auth_secret_keys[k], &value, &e) < 0)
                if (mc__diag_add(&d, "%s", e && e->message ? e->message : "secret unavailable") < 0)
                    p.nomem = true;
            mc__secret_free(value);
            mc_error_free(e);
        }
        json_object *ca = NULL;
        if (json_object_object_get_ex(s->auth_cfg.obj, "ca_file", &ca)
            && json_object_is_type(ca, json_type_string)) {
            snprintf(path, sizeof(path), "servers[%zu].auth.ca_file", i);
            check_readable(&p, path, json_object_get_string(ca));
        }
    }
    if (p.nomem) {
        mc__diag_free(&d);
        return oom(err);
    }
    int rc = d.n ? diag_error(&d, err) : 0;
    mc__diag_free(&d);
    return rc;
}

/* ------------------------------------------------------------- lookups */

mc_server *mc__config_server(mc__config *cfg, const char *name)
{
    if (!cfg)
        return NULL;
    if (!name)
        return cfg->def;
    for (size_t i = 0; i < cfg->n_servers; i++)
        if (cfg->servers[i].name && strcmp(cfg->servers[i].name, name) == 0)
            return &cfg->servers[i];
    return NULL;
}

const char *mc__config_alias(const mc__config *cfg, const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->n_aliases; i++)   /* names match as mail's local parts do: any case */
        if (strcasecmp(cfg->aliases[i].name, name) == 0)
            return cfg->aliases[i].address;
    return NULL;
}

char *mc__config_find(const char *explicit_path)
{
    if (explicit_path && *explicit_path)
        return strdup(explicit_path);
    const char *env = getenv("MAILCONN_CONFIG");
    if (env && *env)
        return strdup(env);
    char *xdg = NULL;
    const char *xh = getenv("XDG_CONFIG_HOME");
    int n;
    if (xh && xh[0] == '/') {
        n = asprintf(&xdg, "%s/mailconn/config.json", xh);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd pw, *res = NULL;
            char pbuf[4096];
            if (getpwuid_r(getuid(), &pw, pbuf, sizeof(pbuf), &res) == 0 && res)
                home = res->pw_dir;
        }
        if (!home || !*home)
            home = "/";
        n = asprintf(&xdg, "%s/.config/mailconn/config.json", strcmp(home, "/") == 0 ? "" : home);
    }
    if (n < 0)
        return NULL;
    if (access(xdg, F_OK) == 0)
        return xdg;
    static const char etc[] = "/etc/mailconn/config.json";
    if (access(etc, F_OK) == 0) {
        free(xdg);
        return strdup(etc);
    }
    return xdg;
}

/* ------------------------------------------------------------- saving */

static int file_error(mc_err **err, const char *path, const char *what, int e)
{
    return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG, "%s: cannot %s: %s",
                         path, what, strerror(e));
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int mc__file_replace(const char *path, const char *data, size_t len, int mode, mc_err **err)
{
    if (!path || !*path || (!data && len))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no file to write");

    /* a symlink is replaced at its target, so the link stays a link */
    char *target = realpath(path, NULL);
    struct stat st;
    bool exists = false;
    if (target) {
        if (stat(target, &st) == 0)
            exists = true;
    } else if (errno == ENOENT) {
        if (!(target = strdup(path)))
            return oom(err);
    } else {
        return file_error(err, path, "resolve the path", errno);
    }
    if (exists && !S_ISREG(st.st_mode)) {
        free(target);
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "%s: not a regular file", path);
    }
    mode_t fmode = mode >= 0 ? (mode_t)mode & 07777 : exists ? st.st_mode & 07777 : 0600;

    const char *slash = strrchr(target, '/');
    char *dir = slash ? strndup(target, slash == target ? 1 : (size_t)(slash - target)) : strdup(".");
    char *tmp = NULL;
    if (!dir || asprintf(&tmp, "%s/.%s.%s", strcmp(dir, "/") == 0 ? "" : dir,
                         slash ? slash + 1 : target, MKSTEMP_SUFFIX) < 0) {
        free(dir);
        free(target);
        return oom(err);
    }

    int rc = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = file_error(err, path, "create a temporary file beside it", errno);
        goto out;
    }
    if (write_all(fd, data, len) < 0) {
        rc = file_error(err, path, "write the temporary file", errno);
    } else if (fchmod(fd, fmode) < 0) {
        rc = file_error(err, path, "set the mode of the temporary file", errno);
    } else {
        if (exists && (st.st_uid != geteuid() || st.st_gid != getegid())
            && fchown(fd, st.st_uid, st.st_gid) < 0) {
            /* not allowed to give it away: the new file stays ours */
            mc__log(NULL, MC_LOG_DEBUG, "%s: owner not kept: %s", path, strerror(errno));
        }
        if (fsync(fd) < 0)
            rc = file_error(err, path, "flush the temporary file to disk", errno);
    }
    if (close(fd) < 0 && rc == 0)
        rc = file_error(err, path, "write the temporary file", errno);
    if (rc == 0 && rename(tmp, target) < 0)
        rc = file_error(err, path, "replace the file", errno);
    if (rc < 0) {
        unlink(tmp);
        goto out;
    }
    /* make the rename itself durable */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) < 0)
            mc__log(NULL, MC_LOG_DEBUG, "%s: folder not flushed: %s", dir, strerror(errno));
        close(dfd);
    }
out:
    free(tmp);
    free(dir);
    free(target);
    return rc;
}

/* Move the mark in one document. */
static void mark_default(json_object *doc, size_t index)
{
    json_object *servers = NULL;
    if (!json_object_object_get_ex(doc, "servers", &servers))
        return;
    for (size_t i = 0; i < json_object_array_length(servers); i++) {
        json_object *s = json_object_array_get_idx(servers, i), *v = NULL;
        if (!json_object_is_type(s, json_type_object))
            continue;
        if (i == index)
            json_object_object_add(s, "default", json_object_new_boolean(1));
        else if (json_object_object_get_ex(s, "default", &v) && json_object_get_boolean(v))
            json_object_object_del(s, "default");
    }
}

/* The document as saved: pretty, keys in order, a final newline; the
 * text may hold inline secrets (a secret buffer, wiped on release). */
static int doc_text(json_object *doc, char **out, size_t *len)
{
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY
                                                           | JSON_C_TO_STRING_SPACED
                                                           | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text)
        return MC_ENOMEM;
    size_t n = strlen(text);
    char *r = malloc(n + 2);
    if (r) {
        memcpy(r, text, n);
        r[n] = '\n';
        r[n + 1] = '\0';
    }
    OPENSSL_cleanse((char *)text, n);   /* json-c's print buffer */
    if (!r)
        return MC_ENOMEM;
    *out = r;
    *len = n + 1;
    return 0;
}

void mc__text_free(char *text)
{
    if (!text)
        return;
    OPENSSL_cleanse(text, strlen(text));
    free(text);
}

int mc__config_save(const mc__config *cfg, mc_err **err)
{
    if (!cfg)
        return MC_EINVAL;
    if (cfg->in_memory)
        return 0;
    if (!cfg->path || !cfg->text)
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "the config was not read from a file: nothing to save");
    return mc__file_replace(cfg->path, cfg->text, cfg->text_len, -1, err);
}

int mc__config_set_default(mc__config *cfg, const char *name, mc_err **err)
{
    if (!cfg || !name)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG, "no server name");
    mc_server *t = mc__config_server(cfg, name);
    if (!t)
        return mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "no server named \"%s\"%s%s", name, cfg->path ? " in " : "",
                             cfg->path ? cfg->path : "");
    if ((!cfg->path && !cfg->in_memory) || !cfg->doc)
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "the config was not read from a file: nothing to save");

    /* edit a copy, save it (a file config), and only then change what is
     * in memory */
    json_object *copy = NULL;
    if (json_object_deep_copy(cfg->doc, &copy, NULL) < 0 || !copy)
        return oom(err);
    mark_default(copy, t->index);
    char *text = NULL;
    size_t len = 0;
    int rc = doc_text(copy, &text, &len) < 0 ? oom(err) : 0;
    wipe_doc_secrets(copy);
    json_object_put(copy);
    if (rc == 0 && !cfg->in_memory)
        rc = mc__file_replace(cfg->path, text, len, -1, err);
    if (rc < 0) {
        mc__text_free(text);
        return rc;
    }

    mark_default(cfg->doc, t->index);
    for (size_t i = 0; i < cfg->n_servers; i++) {
        cfg->servers[i].is_default = &cfg->servers[i] == t;
        cfg->servers[i].default_marked = &cfg->servers[i] == t;
    }
    cfg->def = t;
    if (cfg->text) {
        OPENSSL_cleanse(cfg->text, cfg->text_len);
        free(cfg->text);
    }
    cfg->text = text;
    cfg->text_len = len;
    return 0;
}

/* ------------------------------------------------------------- editing */

/* The "servers" array of a document, or NULL. */
static json_object *doc_servers(json_object *doc)
{
    json_object *servers = NULL;
    if (!json_object_is_type(doc, json_type_object)
        || !json_object_object_get_ex(doc, "servers", &servers)
        || !json_object_is_type(servers, json_type_array))
        return NULL;
    return servers;
}

/* Index of the server object named `name` in the document, or -1. */
static long doc_server_index(json_object *doc, const char *name)
{
    json_object *servers = doc_servers(doc);
    for (size_t i = 0; servers && i < json_object_array_length(servers); i++) {
        json_object *s = json_object_array_get_idx(servers, i), *n = NULL;
        if (json_object_is_type(s, json_type_object) && json_object_object_get_ex(s, "name", &n)
            && json_object_is_type(n, json_type_string)
            && strcmp(json_object_get_string(n), name) == 0)
            return (long)i;
    }
    return -1;
}

/* Strict parse of one JSON object given on its own (a server to put):
 * syntax errors and doubled keys as for a config. NULL with errors in d. */
static json_object *parse_object(const char *name, const char *text, mc__diag *d, bool *nomem)
{
    size_t len = strlen(text);
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    if (!tok) {
        *nomem = true;
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = len <= (size_t)INT_MAX ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr != json_tokener_success || !o) {
        json_object_put(o);
        syntax_error(d, name, text, jerr == json_tokener_continue || end > len ? len : end,
                     jerr == json_tokener_continue ? "unexpected end of input"
                                                   : json_tokener_error_desc(jerr));
        return NULL;
    }
    for (size_t i = end; i < len; i++) {
        if (!strchr(" \t\r\n", text[i])) {
            syntax_error(d, name, text, i, "unexpected data after the end of the document");
            wipe_server_secrets(o);
            json_object_put(o);
            return NULL;
        }
    }
    if (!scan_text(name, text, end, d, nomem) || d->n) {
        wipe_server_secrets(o);
        json_object_put(o);
        return NULL;
    }
    return o;
}


/* obj[a] (or obj[a][b]) when it is an object, else NULL. */
static json_object *sub_object(json_object *obj, const char *a, const char *b)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, a, &v) || !json_object_is_type(v, json_type_object))
        return NULL;
    if (b && (!json_object_object_get_ex(v, b, &v) || !json_object_is_type(v, json_type_object)))
        return NULL;
    return v;
}

/* In a server being put, `"key": null` keeps the stored inline secret of the
 * same place (obj is servers[N].where): copied from old_obj, else an error
 * at the key's path. */
static void keep_null_secrets(pctx *p, const char *spath, const char *name, const char *where,
                              json_object *obj, json_object *old_obj, bool exists,
                              const char *const *keys, bool *nomem)
{
    for (size_t k = 0; obj && keys[k]; k++) {
        json_object *v = NULL, *ov = NULL;
        if (!json_object_object_get_ex(obj, keys[k], &v) || v)
            continue;
        char kp[128];
        snprintf(kp, sizeof(kp), "%s.%s.%s", spath, where, keys[k]);
        if (!exists) {
            bad(p, kp, "null keeps the current secret, but server \"%s\" is new: give the %s",
                name, keys[k]);
        } else if (!old_obj || !json_object_object_get_ex(old_obj, keys[k], &ov)
                   || !json_object_is_type(ov, json_type_string)) {
            bad(p, kp, "null keeps the current secret, but server \"%s\" has no inline %s: "
                       "give it", name, keys[k]);
        } else {
            json_object *copy = json_object_new_string_len(json_object_get_string(ov),
                                                           json_object_get_string_len(ov));
            if (!copy || json_object_object_add(obj, keys[k], copy) < 0) {
                json_object_put(copy);
                *nomem = true;
            }
        }
    }
}

int mc__config_put_text(char **out, size_t *len, const mc__config *cfg, const char *server_json,
                        mc_err **err)
{
    if (!out || !len || !cfg || !cfg->doc || !server_json)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "no config or no server");
    *out = NULL;
    *len = 0;
    mc__diag d = { 0 };
    bool nomem = false;
    json_object *srv = parse_object("server", server_json, &d, &nomem);
    json_object *servers = doc_servers(cfg->doc);
    size_t n = servers ? json_object_array_length(servers) : 0;
    long idx = -1;
    char spath[48];
    snprintf(spath, sizeof(spath), "servers[%zu]", n);
    pctx p = { .d = &d };
    json_object *nv = NULL;
    if (srv && !json_object_is_type(srv, json_type_object)) {
        char sb[SHOW_MAX + 8];
        bad(&p, spath, "must be an object, got %s", show(srv, sb, sizeof(sb)));
    } else if (srv && (!json_object_object_get_ex(srv, "name", &nv)
                       || !json_object_is_type(nv, json_type_string))) {
        char kp[64];
        snprintf(kp, sizeof(kp), "%s.name", spath);
        bad(&p, kp, "is required (a server is put by its name)");
    } else if (srv) {
        idx = doc_server_index(cfg->doc, json_object_get_string(nv));
        if (idx >= 0)
            snprintf(spath, sizeof(spath), "servers[%ld]", idx);
        /* null secrets keep the current ones: auth's, the proxy's, auth.proxy's */
        json_object *old = idx >= 0 ? json_object_array_get_idx(servers, (size_t)idx) : NULL;
        static const char *const proxy_secret_keys[] = { "password", NULL };
        static const struct { const char *a, *b; const char *const *keys; } places[] = {
            { "auth", NULL, auth_secret_keys },
            { "proxy", NULL, proxy_secret_keys },
            { "auth", "proxy", proxy_secret_keys },
        };
        for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
            char where[32];
            snprintf(where, sizeof(where), "%s%s%s", places[i].a, places[i].b ? "." : "",
                     places[i].b ? places[i].b : "");
            keep_null_secrets(&p, spath, json_object_get_string(nv), where,
                              sub_object(srv, places[i].a, places[i].b),
                              old ? sub_object(old, places[i].a, places[i].b) : NULL, old != NULL,
                              places[i].keys, &nomem);
        }
    }
    int rc = 0;
    json_object *copy = NULL;
    if (nomem || p.nomem) {
        rc = oom(err);
    } else if (d.n || !srv) {
        rc = diag_error(&d, err);
    } else if (json_object_deep_copy(cfg->doc, &copy, NULL) < 0 || !copy) {
        rc = oom(err);
    } else {
        json_object *cs = doc_servers(copy);
        if (!cs) {
            /* a config without "servers" could not have loaded */
            rc = oom(err);
        } else if (idx >= 0) {
            wipe_server_secrets(json_object_array_get_idx(cs, (size_t)idx));
            rc = json_object_array_put_idx(cs, (size_t)idx, srv) < 0 ? oom(err) : 0;
        } else {
            rc = json_object_array_add(cs, srv) < 0 ? oom(err) : 0;
        }
        if (rc == 0)
            srv = NULL;            /* the copy owns it */
        if (rc == 0 && doc_text(copy, out, len) < 0)
            rc = oom(err);
        wipe_doc_secrets(copy);
        json_object_put(copy);
    }
    if (srv) {
        wipe_server_secrets(srv);
        json_object_put(srv);
    }
    mc__diag_free(&d);
    return rc;
}

int mc__config_remove_text(char **out, size_t *len, const mc__config *cfg, const char *name,
                           mc_err **err)
{
    if (!out || !len || !cfg || !cfg->doc || !name)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "no config or no server name");
    *out = NULL;
    *len = 0;
    long idx = doc_server_index(cfg->doc, name);
    if (idx < 0)
        return mc__error_set(err, MC_ENOSERVER, MC_OUTCOME_USAGE, MC_STAGE_CONFIG,
                             "no server named \"%s\"%s%s", name, cfg->path ? " in " : "",
                             cfg->path ? cfg->path : "");
    json_object *copy = NULL;
    if (json_object_deep_copy(cfg->doc, &copy, NULL) < 0 || !copy)
        return oom(err);
    json_object *cs = doc_servers(copy);
    wipe_server_secrets(json_object_array_get_idx(cs, (size_t)idx));
    int rc = json_object_array_del_idx(cs, (size_t)idx, 1) < 0 || doc_text(copy, out, len) < 0
                 ? oom(err) : 0;
    wipe_doc_secrets(copy);
    json_object_put(copy);
    return rc;
}

int mc__config_reparse(mc__config **out, const mc__config *like, const char *text, size_t len,
                       mc_err **err)
{
    if (!out || !like || !text)
        return MC_EINVAL;
    *out = NULL;
    if (like->in_memory || !like->path)
        return mc__config_parse(out, text, len, err);
    /* the file rules against the file as it is now (its mode is kept) */
    struct stat st;
    if (stat(like->path, &st) < 0)
        return file_error(err, like->path, "check the config", errno);
    mc__diag d = { 0 };
    bool nomem = false;
    char *inline_at = NULL;
    mc__config *cfg = parse_text(like->path, text, len, &d, &inline_at, &nomem);
    file_rules(cfg, like->path, st.st_mode, inline_at, &d, &nomem);
    free(inline_at);
    return finish(cfg, &d, nomem, out, err);
}

int mc__config_server_json(char **out, const mc__config *cfg, const char *name)
{
    if (!out || !cfg || !cfg->doc)
        return MC_EINVAL;
    *out = NULL;
    const mc_server *t = mc__config_server((mc__config *)cfg, name);
    json_object *servers = doc_servers(cfg->doc);
    if (!t || !servers || t->index >= json_object_array_length(servers))
        return MC_ENOSERVER;
    json_object *copy = NULL;
    if (json_object_deep_copy(json_object_array_get_idx(servers, t->index), &copy, NULL) < 0
        || !copy)
        return MC_ENOMEM;
    wipe_server_secrets(copy);
    json_object *auth = NULL;
    int rc = 0;
    if (json_object_object_get_ex(copy, "auth", &auth) && json_object_is_type(auth, json_type_object)) {
        for (size_t k = 0; auth_secret_keys[k] && rc == 0; k++) {
            json_object *v = NULL;
            if (json_object_object_get_ex(auth, auth_secret_keys[k], &v)
                && json_object_is_type(v, json_type_string)
                && json_object_object_add(auth, auth_secret_keys[k], NULL) < 0)
                rc = MC_ENOMEM;
        }
    }
    if (rc == 0)
        rc = mc__proxy_wipe_secrets(copy, true);
    size_t len = 0;
    if (rc == 0)
        rc = doc_text(copy, out, &len);
    json_object_put(copy);
    return rc;
}
