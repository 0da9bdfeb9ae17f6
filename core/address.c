/* address: RFC 5321 mailbox checks (SMTPUTF8 aware) and RFC 5322 header
 * mailbox / address-list parsing. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "error.h"
#include "message.h"

#define LOCAL_MAX 64
#define ADDRESS_MAX 254
#define DOMAIN_MAX 253
#define LABEL_MAX 63

/* A printable copy of s for error messages (malloc'd, or NULL): controls
 * become '?', long input is cut. */
static char *shown(const char *s, size_t n)
{
    size_t max = n > 80 ? 80 : n;
    char *p = malloc(max + 4);
    if (!p)
        return NULL;
    size_t i;
    for (i = 0; i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        p[i] = (c < 32 || c == 127) ? '?' : (char)c;
    }
    if (max < n) {
        memcpy(p + i, "...", 3);
        i += 3;
    }
    p[i] = '\0';
    return p;
}

static int bad(mc_err **err, const char *addr, const char *why)
{
    char *s = shown(addr, strlen(addr));
    mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                  "address \"%s\": %s", s ? s : "", why);
    free(s);
    return MC_EMESSAGE;
}

static bool is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* dot-atom (RFC 5321 Dot-string, RFC 6531 UTF-8 atext). */
static const char *check_dot_string(const unsigned char *s, size_t n)
{
    if (n == 0)
        return "empty local part";
    bool atom_start = true;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '.') {
            if (atom_start)
                return i == 0 ? "local part starts with a dot" : "two dots in a row";
            atom_start = true;
            i++;
            continue;
        }
        if (c == ' ' || c == '\t')
            return "space outside quotes";
        if (c >= 0x80) {
            size_t l = mc__utf8_seq(s + i, n - i);
            if (!l)
                return "invalid UTF-8";
            i += l;
        } else if (is_atext(c)) {
            i++;
        } else {
            return "character not allowed in the local part";
        }
        atom_start = false;
    }
    if (atom_start)
        return "local part ends with a dot";
    return NULL;
}

/* Quoted-string local part; *end = index after the closing quote. */
static const char *check_quoted(const unsigned char *s, size_t n, size_t *end)
{
    size_t i = 1;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"') {
            *end = i + 1;
            return NULL;
        }
        if (c == '\\') {
            if (i + 1 >= n || s[i + 1] < 32 || s[i + 1] > 126)
                return "bad escape in quoted local part";
            i += 2;
        } else if (c >= 0x80) {
            size_t l = mc__utf8_seq(s + i, n - i);
            if (!l)
                return "invalid UTF-8";
            i += l;
        } else if (c < 32 || c == 127) {
            return "control character in quoted local part";
        } else {
            i++;
        }
    }
    return "unterminated quoted local part";
}

static const char *check_domain(const unsigned char *s, size_t n)
{
    if (n == 0)
        return "empty domain";
    if (s[0] == '[') {
        if (s[n - 1] != ']' || n < 3)
            return "bad address literal";
        char lit[64];
        size_t ln = n - 2;
        if (ln >= sizeof(lit))
            return "bad address literal";
        memcpy(lit, s + 1, ln);
        lit[ln] = '\0';
        unsigned char tmp[16];
        if (strncasecmp(lit, "IPv6:", 5) == 0) {
            if (inet_pton(AF_INET6, lit + 5, tmp) != 1)
                return "bad IPv6 address literal";
        } else if (inet_pton(AF_INET, lit, tmp) != 1) {
            return "bad address literal";
        }
        return NULL;
    }
    if (n > DOMAIN_MAX)
        return "domain longer than 253 octets";
    size_t label = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '.') {
            if (label == 0)
                return "empty label in domain";
            if (s[i - 1] == '-')
                return "domain label ends with a hyphen";
            label = 0;
            i++;
            continue;
        }
        if (c == '-' && label == 0)
            return "domain label starts with a hyphen";
        size_t l = 1;
        if (c >= 0x80) {
            l = mc__utf8_seq(s + i, n - i);
            if (!l)
                return "invalid UTF-8";
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                     || c == '-')) {
            return c == ' ' ? "space outside quotes" : "character not allowed in the domain";
        }
        label += l;
        if (label > LABEL_MAX)
            return "domain label longer than 63 octets";
        i += l;
    }
    if (label == 0)
        return "domain ends with a dot";
    if (s[n - 1] == '-')
        return "domain label ends with a hyphen";
    return NULL;
}

int mc__address_check(const char *addr, bool allow_bare, mc_err **err)
{
    if (!addr)
        return mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                             "missing address");
    const unsigned char *s = (const unsigned char *)addr;
    size_t n = strlen(addr);
    if (n == 0)
        return mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                             "empty address");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n')
            return bad(err, addr, "line break in address");
        if (s[i] == '<' || s[i] == '>')
            return bad(err, addr, "angle bracket in address");
    }
    if (n > ADDRESS_MAX)
        return bad(err, addr, "longer than 254 octets");

    size_t local_end;
    const char *why;
    if (s[0] == '"') {
        why = check_quoted(s, n, &local_end);
        if (why)
            return bad(err, addr, why);
        if (local_end < n && s[local_end] != '@')
            return bad(err, addr, "text after the quoted local part");
    } else {
        const char *at = memchr(addr, '@', n);
        local_end = at ? (size_t)(at - addr) : n;
        why = check_dot_string(s, local_end);
        if (why)
            return bad(err, addr, why);
    }
    if (local_end > LOCAL_MAX)
        return bad(err, addr, "local part longer than 64 octets");
    if (local_end == n) {
        if (!allow_bare)
            return bad(err, addr, "no domain");
        return 0;
    }
    why = check_domain(s + local_end + 1, n - local_end - 1);
    if (why)
        return bad(err, addr, why);
    return 0;
}

bool mc__address_utf8(const char *addr)
{
    for (const unsigned char *p = (const unsigned char *)addr; p && *p; p++)
        if (*p >= 0x80)
            return true;
    return false;
}

/* ---- header syntax: comments, quoted strings, angle addresses */

/* Skip a comment starting at s[i] == '('; returns the index after it, or
 * n when unterminated (*ok false). */
static size_t skip_comment(const char *s, size_t n, size_t i, bool *ok)
{
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            i += 2;
            continue;
        }
        if (c == '(')
            depth++;
        else if (c == ')' && --depth == 0)
            return i + 1;
        i++;
    }
    *ok = false;
    return n;
}

static size_t skip_quoted(const char *s, size_t n, size_t i, bool *ok)
{
    i++;
    while (i < n) {
        if (s[i] == '\\' && i + 1 < n) {
            i += 2;
            continue;
        }
        if (s[i] == '"')
            return i + 1;
        i++;
    }
    *ok = false;
    return n;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copy s[0..n) without comments and without leading/trailing white space. */
static int strip_comments(const char *s, size_t n, char **out)
{
    mc__buf b = MC__BUF_INIT;
    bool ok = true;
    for (size_t i = 0; i < n;) {
        if (s[i] == '(') {
            i = skip_comment(s, n, i, &ok);
            continue;
        }
        if (s[i] == '"') {
            size_t e = skip_quoted(s, n, i, &ok);
            if (mc__buf_put(&b, s + i, e - i) < 0)
                goto oom;
            i = e;
            continue;
        }
        if (mc__buf_put(&b, s + i, 1) < 0)
            goto oom;
        i++;
    }
    if (!b.data && mc__buf_grow(&b, 0) < 0)
        goto oom;
    size_t a = 0, z = b.len;
    while (a < z && is_wsp(b.data[a]))
        a++;
    while (z > a && is_wsp(b.data[z - 1]))
        z--;
    memmove(b.data, b.data + a, z - a);
    b.data[z - a] = '\0';
    *out = b.data;
    return ok ? 0 : MC_EMESSAGE;
oom:
    mc__buf_free(&b);
    return MC_ENOMEM;
}

/* Where the addr-spec of one mailbox sits in s[0..n): inside the angle
 * brackets, else the text between leading and trailing white space and
 * comments. Exposed to message.c (via mc__mailbox_span) for rewriting From:. */
int mc__mailbox_span(const char *s, size_t n, size_t *off, size_t *len, bool *angle)
{
    bool ok = true;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '(') {
            i = skip_comment(s, n, i, &ok);
        } else if (c == '"') {
            i = skip_quoted(s, n, i, &ok);
        } else if (c == '<') {
            size_t j = i + 1;
            while (j < n && s[j] != '>') {
                if (s[j] == '"')
                    j = skip_quoted(s, n, j, &ok);
                else
                    j++;
            }
            if (j >= n || !ok)
                return MC_EMESSAGE;
            *off = i + 1;
            *len = j - i - 1;
            *angle = true;
            return 0;
        } else {
            i++;
        }
        if (!ok)
            return MC_EMESSAGE;
    }
    /* no angle brackets: from the first to the end of the last character
     * that is neither white space nor part of a comment */
    size_t a = n, z = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '(') {
            i = skip_comment(s, n, i, &ok);
            continue;
        }
        if (is_wsp(s[i])) {
            i++;
            continue;
        }
        if (a == n)
            a = i;
        i = s[i] == '"' ? skip_quoted(s, n, i, &ok) : i + 1;
        z = i;
    }
    if (!ok)
        return MC_EMESSAGE;
    if (a == n)
        a = z = 0;
    *off = a;
    *len = z - a;
    *angle = false;
    return 0;
}

int mc__address_extract(const char *mailbox, char **out, mc_err **err)
{
    *out = NULL;
    if (!mailbox)
        return mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                             "missing address");
    size_t n = strlen(mailbox), off, len;
    bool angle;
    if (mc__mailbox_span(mailbox, n, &off, &len, &angle) < 0)
        return bad(err, mailbox, "unbalanced quotes, comment or angle brackets");
    char *a = NULL;
    int rc = strip_comments(mailbox + off, len, &a);
    if (rc == MC_ENOMEM) {
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                             "out of memory");
    }
    if (rc < 0) {
        free(a);
        return bad(err, mailbox, "unbalanced quotes or comment");
    }
    /* an obsolete source route "<@a,@b:user@c>" */
    if (angle && a[0] == '@') {
        char *colon = strchr(a, ':');
        if (colon)
            memmove(a, colon + 1, strlen(colon + 1) + 1);
    }
    if (a[0] == '\0') {
        free(a);
        return bad(err, mailbox, "no address");
    }
    rc = mc__address_check(a, true, err);
    if (rc < 0) {
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int mc__address_list(const char *value, int (*fn)(void *payload, const char *addr),
                     void *payload, mc_err **err)
{
    if (!value)
        return 0;
    size_t n = strlen(value);
    size_t start = 0;
    bool ok = true, in_angle = false;
    for (size_t i = 0; i <= n;) {
        char c = i < n ? value[i] : ',';
        if (i < n && c == '(') {
            i = skip_comment(value, n, i, &ok);
        } else if (i < n && c == '"') {
            i = skip_quoted(value, n, i, &ok);
        } else if (c == '<') {
            in_angle = true;
            i++;
        } else if (c == '>') {
            in_angle = false;
            i++;
        } else if (!in_angle && c == ':') {
            /* group: the text so far is its display name */
            start = ++i;
        } else if ((!in_angle && (c == ',' || c == ';')) || i == n) {
            /* one element: skip it when it is only white space and comments */
            size_t e = i;
            char *el = NULL;
            int rc = strip_comments(value + start, e - start, &el);
            if (rc == MC_ENOMEM)
                return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                                     "out of memory");
            bool empty = !el || el[0] == '\0';
            free(el);
            if (rc < 0)
                return bad(err, value, "unbalanced quotes or comment");
            if (!empty) {
                char *one = strndup(value + start, e - start);
                if (!one)
                    return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT,
                                         MC_STAGE_MESSAGE, "out of memory");
                char *addr = NULL;
                rc = mc__address_extract(one, &addr, err);
                free(one);
                if (rc < 0)
                    return rc;
                rc = fn(payload, addr);
                free(addr);
                if (rc)
                    return rc;
            }
            start = ++i;
        } else {
            i++;
        }
        if (!ok)
            return bad(err, value, "unbalanced quotes or comment");
    }
    if (in_angle)
        return bad(err, value, "unbalanced angle brackets");
    return 0;
}

/* ------------------------------------------------------- public calls */

typedef struct split_cb {
    int (*fn)(const char *addr, void *payload);
    void *payload;
} split_cb;

static int split_one(void *payload, const char *addr)
{
    split_cb *c = payload;
    return c->fn(addr, c->payload);
}

int mc_address_list_split(const char *value, int (*fn)(const char *addr, void *payload),
                          void *payload, mc_err **err)
{
    if (!fn)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "address list: no callback");
    split_cb c = { fn, payload };
    return mc__address_list(value, split_one, &c, err);
}

/* The display name of a phrase s[0..n): comments dropped, quoted strings
 * unquoted, runs of white space one space, trimmed. NULL when empty
 * (*oom set when out of memory). */
static char *phrase_text(const char *s, size_t n, bool *oom)
{
    mc__buf b = MC__BUF_INIT;
    bool ok = true, space = false;
    for (size_t i = 0; i < n;) {
        const char *part = s + i;
        size_t plen = 1;
        bool quoted = false;
        if (s[i] == '(') {
            i = skip_comment(s, n, i, &ok);
            space = true;   /* a comment separates words */
            continue;
        }
        if (is_wsp(s[i])) {
            space = true;
            i++;
            continue;
        }
        if (s[i] == '"') {
            size_t e = skip_quoted(s, n, i, &ok);
            part = s + i + 1;
            plen = e - i - (ok ? 2 : 1);
            quoted = true;
            i = e;
        } else {
            i++;
        }
        if (space && b.len && mc__buf_put(&b, " ", 1) < 0)
            goto nomem;
        space = false;
        for (size_t k = 0; k < plen; k++) {
            if (quoted && part[k] == '\\' && k + 1 < plen)
                k++;
            if (mc__buf_put(&b, part + k, 1) < 0)
                goto nomem;
        }
    }
    if (!b.len) {
        mc__buf_free(&b);
        return NULL;
    }
    return mc__buf_detach(&b);
nomem:
    mc__buf_free(&b);
    *oom = true;
    return NULL;
}

int mc_mailbox_parse(char **address, char **display_name, const char *mailbox, mc_err **err)
{
    if (address)
        *address = NULL;
    if (display_name)
        *display_name = NULL;
    if (!address || !mailbox)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "mailbox: no %s", address ? "mailbox" : "address output");
    size_t n = strlen(mailbox), off = 0, len = 0;
    bool angle = false;
    if (strpbrk(mailbox, "\r\n"))
        return bad(err, mailbox, "line break in a mailbox");
    if (mc__mailbox_span(mailbox, n, &off, &len, &angle) < 0)
        return bad(err, mailbox, "unbalanced quotes, comment or angle brackets");
    if (angle) {
        /* after the '>': only white space and comments ("a <b>, c <d>" is a list) */
        bool ok = true;
        for (size_t i = off + len + 1; i < n && ok;) {
            if (mailbox[i] == '(')
                i = skip_comment(mailbox, n, i, &ok);
            else if (is_wsp(mailbox[i]))
                i++;
            else
                return bad(err, mailbox, "text after the address (one mailbox expected)");
        }
        if (!ok)
            return bad(err, mailbox, "unbalanced comment");
    }
    char *addr = NULL;
    int rc = mc__address_extract(mailbox, &addr, err);
    if (rc < 0)
        return rc;
    char *name = NULL;
    if (angle && display_name) {
        bool nomem = false;
        name = phrase_text(mailbox, off - 1, &nomem);
        if (nomem) {
            free(addr);
            return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                                 "out of memory");
        }
    }
    *address = addr;
    if (display_name)
        *display_name = name;
    return 0;
}

/* ------------------------------------------------------- /etc/aliases */

typedef struct sys_alias {
    char *name;
    char *target;
} sys_alias;

static pthread_once_t sys_once = PTHREAD_ONCE_INIT;
static sys_alias *sys_tab;
static size_t sys_n;

static int addr_only(void *payload, const char *addr)
{
    (void)payload;
    /* |command, /file and :include: are no addresses (nor is a bare name) */
    return mc__address_check(addr, false, NULL) == 0 && addr[0] != '|' && addr[0] != '/'
           && addr[0] != '"' ? 0 : MC_EMESSAGE;
}

/* One logical line "name: target, target": kept when every target is an
 * address. */
static void sys_entry(char *line)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return;
    *colon = '\0';
    char *name = line, *target = colon + 1;
    size_t n = strlen(name);
    while (n && is_wsp(name[n - 1]))
        name[--n] = '\0';
    while (*target && is_wsp(*target))
        target++;
    size_t tn = strlen(target);
    while (tn && (is_wsp(target[tn - 1]) || target[tn - 1] == '\n' || target[tn - 1] == '\r'))
        target[--tn] = '\0';
    if (!n || !tn || strpbrk(name, " \t") || mc__address_list(target, addr_only, NULL, NULL) != 0)
        return;
    sys_alias *t = realloc(sys_tab, (sys_n + 1) * sizeof(*t));
    if (!t)
        return;
    sys_tab = t;
    if (!(t[sys_n].name = strdup(name)))
        return;
    if (!(t[sys_n].target = strdup(target))) {
        free(t[sys_n].name);
        return;
    }
    sys_n++;
}

static void sys_load(void)
{
    FILE *f = fopen(MC__SYSTEM_ALIASES, "re");
    if (!f)
        return;
    mc__buf entry = MC__BUF_INIT;
    char *line = NULL;
    size_t cap = 0;
    ssize_t l;
    while ((l = getline(&line, &cap, f)) > 0) {
        if (line[0] == '#')
            continue;
        if (is_wsp(line[0]) && entry.len) {   /* continuation */
            if (mc__buf_put(&entry, " ", 1) < 0 || mc__buf_put(&entry, line, (size_t)l) < 0)
                break;
            continue;
        }
        if (entry.len)
            sys_entry(entry.data);
        mc__buf_clear(&entry);
        if (!is_wsp(line[0]) && line[0] != '\n' && mc__buf_put(&entry, line, (size_t)l) < 0)
            break;
    }
    if (entry.len)
        sys_entry(entry.data);
    free(line);
    mc__buf_free(&entry);
    fclose(f);
}

const char *mc__system_alias(const char *name)
{
    if (!name)
        return NULL;
    pthread_once(&sys_once, sys_load);
    for (size_t i = 0; i < sys_n; i++)
        if (strcasecmp(sys_tab[i].name, name) == 0)
            return sys_tab[i].target;
    return NULL;
}
