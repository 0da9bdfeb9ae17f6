/* message: RFC 5322 / MIME composer, parser for `send -t` and sendmail
 * input, and the streaming writer.
 *
 * Layout. mc__message_prepare() renders everything except file contents
 * into one memory buffer and a list of segments: memory ranges, the raw
 * body of a parsed message (memory or file range) and attachments (a file
 * encoded as base64 while writing). The exact size is the sum of the
 * segments; an attachment's size comes from its length n:
 * 4 * ceil(n / 3) characters in lines of 76 (57 input bytes), each followed
 * by CRLF. mc__message_write() walks the segments through a staging buffer
 * of STAGE_CAP bytes, so the footprint is constant whatever the file sizes.
 *
 * Transfer encodings. The composer never emits 8bit: a text part is 7bit
 * when it is pure ASCII (no NUL) with lines of at most 998 octets, and
 * quoted-printable otherwise; attachments are base64. A
 * text part set from a file (mc_message_set_text_file) follows the same
 * rules through the same streaming encoder (textenc): prepare reads the
 * file once to choose the encoding and count the exact encoded size, the
 * writer encodes it again chunk by chunk. So
 * mc__message_8bit() is false for composed messages and says, for parsed
 * ones, whether the input's header or body holds a byte over 127. A file
 * larger than the header pass's read is scanned past it only on that
 * first question (mc__message_8bit_maybe() asks nothing: RFC 6152 lets a
 * client declare BODY=8BITMIME for a body that turns out 7-bit).
 *
 * Charset. Composed text and HTML are UTF-8; for a server whose charset is
 * another, prepare converts them with iconv (a text file chunk by chunk,
 * in the scan and again in the writer) and the encoding rules above apply
 * to the converted bytes; the label is the configured name. What the
 * charset cannot represent fails prepare (MC_EMESSAGE), so nothing is
 * sent. Headers stay RFC 2047 UTF-8; parsed messages are not converted.
 */
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "buf.h"
#include "error.h"
#include "message.h"

#define STAGE_CAP   (96 * 1024)            /* largest single sink call */
#define B64_LINE_IN 57                     /* input bytes per 76-char line */
#define B64_CHUNK   (B64_LINE_IN * 864)    /* 49248 bytes read -> 67392 written */
#define RAW_CHUNK   (64 * 1024)
#define TEXT_CHUNK  (11 * 1024)            /* text file bytes per encoder call */
#define HEADER_MAX  (8 * 1024 * 1024)      /* header block of a parsed file */
#define LINE_SOFT   78
#define LINE_HARD   998

typedef struct strvec {
    char  **v;
    size_t  n;
} strvec;

typedef struct xheader {
    char *name;
    char *value;
} xheader;

/* A header of a parsed message: its unfolded value and its raw span. */
typedef struct phdr {
    char  *name;
    char  *value;
    size_t off, len;
} phdr;

typedef struct attachment {
    char    *path;
    char    *fname;
    uint64_t size;
} attachment;

typedef enum seg_kind { SEG_MEM, SEG_RAW, SEG_FILE, SEG_B64FILE, SEG_TEXTFILE } seg_kind;

typedef struct seg {
    seg_kind    kind;
    size_t      off, len;     /* SEG_MEM: range of m->mem; SEG_RAW: of m->raw */
    const char *path;         /* SEG_FILE, SEG_B64FILE, SEG_TEXTFILE */
    uint64_t    foff, fsize;  /* file range (SEG_FILE), file size (SEG_B64FILE, _TEXTFILE) */
    uint64_t    osize;        /* SEG_TEXTFILE: encoded size */
    bool        qp;           /* SEG_TEXTFILE: quoted-printable, else 7bit */
    const char *charset;      /* SEG_TEXTFILE: converted from UTF-8 to it; NULL: as it is */
} seg;

struct mc_message {
    bool parsed;

    /* composed (and explicit settings on parsed messages) */
    char      *from_addr, *from_name;
    bool       from_set;           /* mc_message_set_from was called */
    char      *env_from;
    strvec     to, cc, bcc, env_rcpts;
    strvec     rto, rcc, rbcc;         /* parsed: Resent-To/Cc/Bcc */
    strvec     xrcpt;                  /* parsed: recipients added by the caller */
    char      *dsn_notify, *dsn_ret, *dsn_envid;   /* mc__message_set_dsn */
    char      *subject;
    char      *text, *html;
    size_t     text_len, html_len;
    bool       has_text, has_html;
    char      *text_path;          /* mc_message_set_text_file: text streamed from it */
    uint64_t   tf_size, tf_osize;  /* its size and encoded size when last scanned */
    bool       tf_qp;              /* it needs quoted-printable */
    bool       tf_marker;          /* it contains "=_mc_" (boundaries are checked) */
    attachment *att;
    size_t     n_att;
    xheader   *xh;
    size_t     n_xh;
    char      *fallback_name;      /* mc_message_set_from_name: when no From: */
    char      *last_reply;         /* final reply of the last send */
    char      *date;               /* Date: value, generated once */
    char      *msgid;              /* without angle brackets */

    /* parsed */
    char      *raw;                /* the whole input, or the header block (file) */
    size_t     raw_len, body_off;
    char      *body_path;          /* mc_message_parse_file */
    phdr      *ph;
    size_t     n_ph;
    long       from_idx;           /* index of From: in ph, -1 when none */
    bool       has_date, has_msgid, raw_8bit;
    bool       scan_pending;       /* body_path from scan_off on not scanned yet */
    off_t      scan_off;

    /* prepared */
    bool       prepared;
    char      *p_env_from;
    char     **p_rcpts;
    size_t     p_n;
    bool       p_smtputf8;
    mc__buf    mem;
    char      *p_charset;          /* the server's charset when not UTF-8 (converting) */
    char      *c_text, *c_html;    /* text and HTML converted to it */
    size_t     c_text_len, c_html_len;
    const char *v_text, *v_html;   /* what goes out: m->text/html or their conversion */
    size_t     v_text_len, v_html_len;
    seg       *segs;
    size_t     n_segs, cap_segs;
    size_t     mem_mark;
    uint64_t   size;
};

/* ------------------------------------------------------------ helpers */

static int oom(mc_err **err)
{
    return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                         "out of memory");
}

static int msg_error(mc_err **err, const char *fmt, const char *arg)
{
    return mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE, fmt, arg);
}

static int file_error(mc_err **err, const char *what, const char *path, int e)
{
    return mc__error_set(err, MC_EFILE, MC_OUTCOME_NOINPUT, MC_STAGE_MESSAGE,
                         "%s %s: %s", what, path, strerror(e));
}

static int vec_add(strvec *v, const char *s)
{
    char **p = realloc(v->v, (v->n + 1) * sizeof(*p));
    if (!p)
        return MC_ENOMEM;
    v->v = p;
    if (!(p[v->n] = strdup(s)))
        return MC_ENOMEM;
    v->n++;
    return 0;
}

static void vec_free(strvec *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static bool has_crlf(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

/* OR a block together (the compiler vectorises a loop without an early
 * exit) and test the high bit once per block: 4 MiB bodies are scanned
 * before every send, and a byte loop was a third of the time there. */
static bool is_ascii(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    while (n) {
        size_t k = n < 4096 ? n : 4096;
        unsigned char acc = 0;
        for (size_t i = 0; i < k; i++)
            acc |= p[i];
        if (acc & 0x80)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Does addr have a domain ('@' outside a quoted local part)? */
static bool has_domain(const char *addr)
{
    bool q = false;
    for (const char *p = addr; *p; p++) {
        if (*p == '\\' && q && p[1]) {
            p++;
            continue;
        }
        if (*p == '"')
            q = !q;
        else if (*p == '@' && !q)
            return true;
    }
    return false;
}

static const char *domain_of(const char *addr)
{
    if (!addr || !has_domain(addr))
        return NULL;
    return strrchr(addr, '@') + 1;
}

static void ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static size_t line_len(const mc__buf *b)
{
    size_t i = b->len;
    while (i > 0 && b->data[i - 1] != '\n')
        i--;
    return b->len - i;
}

static int random_hex(char *out, size_t bytes)
{
    unsigned char r[32];
    if (bytes > sizeof(r) || RAND_bytes(r, (int)bytes) != 1)
        return -1;
    for (size_t i = 0; i < bytes; i++)
        sprintf(out + 2 * i, "%02x", r[i]);
    return 0;
}

/* ------------------------------------------------- RFC 2047 / folding */

/* Copy ASCII text folding at white space so lines stay within 78 octets
 * where a word allows it; MC_EMESSAGE when a line must exceed 998. */
static int fold_ascii(mc__buf *out, const char *t, size_t n, size_t used)
{
    size_t line = used, i = 0;
    while (i < n) {
        size_t j = i, k;
        while (j < n && is_wsp(t[j]))
            j++;
        k = j;
        while (k < n && !is_wsp(t[k]))
            k++;
        size_t seg = k - i;
        if (line + seg > LINE_SOFT && j > i && k > j && i > 0) {
            if (mc__buf_put(out, "\r\n", 2) < 0)
                return MC_ENOMEM;
            line = 0;
        }
        if (line + seg > LINE_HARD)
            return MC_EMESSAGE;
        if (mc__buf_put(out, t + i, seg) < 0)
            return MC_ENOMEM;
        line += seg;
        i = k;
    }
    return 0;
}

static bool q_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

/* Bytes of the character at s: a valid UTF-8 sequence, else 1. */
static size_t char_len(const unsigned char *s, size_t n)
{
    size_t l = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 1;
    if (l > n)
        return 1;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 1;
    return l;
}

static int encode_words(mc__buf *out, const char *text, size_t n, size_t used)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t q_cost = 0;
    for (size_t i = 0; i < n; i++)
        q_cost += (q_safe(s[i]) || s[i] == ' ') ? 1 : 3;
    bool use_q = q_cost <= 4 * ((n + 2) / 3);
    bool first = true;
    size_t i = 0;
    while (i < n) {
        size_t max_word = 75;
        if (first) {
            max_word = used < 76 ? 76 - used : 0;
            if (max_word > 75)
                max_word = 75;
            if (max_word < 24)
                max_word = 24;
        }
        size_t payload_max = max_word - 12;   /* "=?UTF-8?X?" + "?=" */
        size_t j = i, cost = 0;
        while (j < n) {
            size_t cl = char_len(s + j, n - j), c;
            if (use_q) {
                c = cost;
                for (size_t k = 0; k < cl; k++)
                    c += (q_safe(s[j + k]) || s[j + k] == ' ') ? 1 : 3;
            } else {
                c = 4 * ((j + cl - i + 2) / 3);
            }
            if (c > payload_max)
                break;
            cost = c;
            j += cl;
        }
        if (j == i)
            j = i + char_len(s + i, n - i);
        if (!first && mc__buf_put(out, "\r\n ", 3) < 0)
            return MC_ENOMEM;
        if (mc__buf_puts(out, use_q ? "=?UTF-8?Q?" : "=?UTF-8?B?") < 0)
            return MC_ENOMEM;
        if (use_q) {
            for (size_t k = i; k < j; k++) {
                int r;
                if (s[k] == ' ')
                    r = mc__buf_put(out, "_", 1);
                else if (q_safe(s[k]))
                    r = mc__buf_put(out, s + k, 1);
                else
                    r = mc__buf_printf(out, "=%02X", s[k]);
                if (r < 0)
                    return MC_ENOMEM;
            }
        } else if (mc__base64_encode(out, s + i, j - i) < 0) {
            return MC_ENOMEM;
        }
        if (mc__buf_put(out, "?=", 2) < 0)
            return MC_ENOMEM;
        first = false;
        i = j;
    }
    return 0;
}

/* Text that must be encoded: bytes over 127, controls, or "=?". */
static bool needs_2047(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c >= 0x7f || (c < 0x20 && c != '\t'))
            return true;
        if (c == '=' && i + 1 < n && t[i + 1] == '?')
            return true;
    }
    return false;
}

int mc__rfc2047_encode(mc__buf *out, const char *text, size_t used)
{
    size_t n = strlen(text);
    if (!needs_2047(text, n)) {
        size_t mark = out->len;
        int rc = fold_ascii(out, text, n, used);
        if (rc == 0)
            return 0;
        if (rc == MC_ENOMEM)
            return rc;
        out->len = mark;   /* a word too long for a line: encode it */
        if (out->data)
            out->data[mark] = '\0';
    }
    return encode_words(out, text, n, used);
}

/* ----------------------------------------------------------- RFC 2231 */

static bool attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c && strchr("!#$&+-.^_`|~", c));
}

#define PARAM_SEG 60

int mc__rfc2231_param(mc__buf *out, const char *name, const char *value)
{
    const unsigned char *v = (const unsigned char *)value;
    size_t n = strlen(value);
    bool plain = true;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 32 || v[i] > 126)
            plain = false;
    /* the value as a list of units that must not be split */
    mc__buf enc = MC__BUF_INIT;
    int rc = 0;
    if (plain) {
        size_t qlen = n;
        for (size_t i = 0; i < n; i++)
            if (v[i] == '"' || v[i] == '\\')
                qlen++;
        if (qlen <= PARAM_SEG) {
            rc = mc__buf_printf(out, "%s=\"", name);
            for (size_t i = 0; i < n && rc == 0; i++) {
                if (v[i] == '"' || v[i] == '\\')
                    rc = mc__buf_put(out, "\\", 1);
                if (rc == 0)
                    rc = mc__buf_put(out, v + i, 1);
            }
            return rc ? rc : mc__buf_put(out, "\"", 1);
        }
        /* long ASCII: name*0="..."; name*1="..." */
        size_t seg = 0, i = 0;
        while (i < n && rc == 0) {
            if (seg)
                rc = mc__buf_puts(out, ";\r\n ");
            if (rc == 0)
                rc = mc__buf_printf(out, "%s*%zu=\"", name, seg);
            size_t used = 0;
            while (i < n && rc == 0) {
                size_t u = (v[i] == '"' || v[i] == '\\') ? 2 : 1;
                if (used + u > PARAM_SEG)
                    break;
                if (u == 2)
                    rc = mc__buf_put(out, "\\", 1);
                if (rc == 0)
                    rc = mc__buf_put(out, v + i, 1);
                used += u;
                i++;
            }
            if (rc == 0)
                rc = mc__buf_put(out, "\"", 1);
            seg++;
        }
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = attr_char(v[i]) ? mc__buf_put(&enc, v + i, 1) : mc__buf_printf(&enc, "%%%02X", v[i]);
    if (rc == 0 && !enc.data)
        rc = mc__buf_grow(&enc, 0);
    if (rc < 0) {
        mc__buf_free(&enc);
        return rc;
    }
    if (enc.len + 7 <= PARAM_SEG) {
        rc = mc__buf_printf(out, "%s*=UTF-8''%s", name, enc.data);
        mc__buf_free(&enc);
        return rc;
    }
    size_t seg = 0, i = 0;
    while (i < enc.len && rc == 0) {
        if (seg)
            rc = mc__buf_puts(out, ";\r\n ");
        if (rc == 0)
            rc = mc__buf_printf(out, "%s*%zu*=%s", name, seg, seg ? "" : "UTF-8''");
        size_t used = seg ? 0 : 7;
        while (i < enc.len && rc == 0) {
            size_t u = enc.data[i] == '%' ? 3 : 1;
            if (used + u > PARAM_SEG)
                break;
            rc = mc__buf_put(out, enc.data + i, u);
            used += u;
            i += u;
        }
        seg++;
    }
    mc__buf_free(&enc);
    return rc;
}

/* ---------------------------------------------------------- mime.types */

typedef struct ext_type {
    char       *ext;
    const char *type;
    size_t      order;
} ext_type;

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;
static ext_type *mime_tab;
static size_t mime_n;

static int ext_cmp(const void *a, const void *b)
{
    const ext_type *x = a, *y = b;
    int c = strcmp(x->ext, y->ext);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void mime_load(void)
{
    FILE *f = fopen("/etc/mime.types", "re");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    while (getline(&line, &cap, f) > 0) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *type = strtok_r(line, " \t\r\n", &save);
        if (!type || !strchr(type, '/'))
            continue;
        char *type_copy = NULL;
        for (char *e = strtok_r(NULL, " \t\r\n", &save); e; e = strtok_r(NULL, " \t\r\n", &save)) {
            if (!type_copy && !(type_copy = strdup(type)))
                break;
            if (mime_n == alloc) {
                size_t na = alloc ? alloc * 2 : 1024;
                ext_type *t = realloc(mime_tab, na * sizeof(*t));
                if (!t)
                    break;
                mime_tab = t;
                alloc = na;
            }
            char *ext = strdup(e);
            if (!ext)
                break;
            ascii_lower(ext);
            mime_tab[mime_n].ext = ext;
            mime_tab[mime_n].type = type_copy;
            mime_tab[mime_n].order = mime_n;
            mime_n++;
        }
    }
    free(line);
    fclose(f);
    if (mime_n)
        qsort(mime_tab, mime_n, sizeof(*mime_tab), ext_cmp);
}

static const struct { const char *ext, *type; } mime_fallback[] = {
    { "txt", "text/plain" },       { "log", "text/plain" },
    { "htm", "text/html" },        { "html", "text/html" },
    { "csv", "text/csv" },         { "ics", "text/calendar" },
    { "pdf", "application/pdf" },  { "json", "application/json" },
    { "xml", "application/xml" },  { "zip", "application/zip" },
    { "gz", "application/gzip" },  { "tar", "application/x-tar" },
    { "png", "image/png" },        { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },      { "gif", "image/gif" },
    { "svg", "image/svg+xml" },    { "webp", "image/webp" },
    { "mp3", "audio/mpeg" },       { "mp4", "video/mp4" },
    { "eml", "message/rfc822" },   { "doc", "application/msword" },
    { "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
    { "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
};

const char *mc__mime_type(const char *filename)
{
    static const char dflt[] = "application/octet-stream";
    if (!filename)
        return dflt;
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    const char *dot = strrchr(base, '.');
    if (!dot || !dot[1] || strlen(dot + 1) >= 32)
        return dflt;
    char ext[32];
    strcpy(ext, dot + 1);
    ascii_lower(ext);
    pthread_once(&mime_once, mime_load);
    size_t lo = 0, hi = mime_n;
    while (lo < hi) {   /* first entry for ext: the first line of the file wins */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(mime_tab[mid].ext, ext) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < mime_n && strcmp(mime_tab[lo].ext, ext) == 0)
        return mime_tab[lo].type;
    for (size_t i = 0; i < sizeof(mime_fallback) / sizeof(mime_fallback[0]); i++)
        if (strcmp(mime_fallback[i].ext, ext) == 0)
            return mime_fallback[i].type;
    return dflt;
}

/* --------------------------------------------------------- public API */

int mc_message_new(mc_message **out, mc_err **err)
{
    if (!out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "no out");
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return oom(err);
    (*out)->from_idx = -1;
    return 0;
}

static void unprepare(mc_message *m)
{
    free(m->p_env_from);
    m->p_env_from = NULL;
    for (size_t i = 0; i < m->p_n; i++)
        free(m->p_rcpts[i]);
    free(m->p_rcpts);
    m->p_rcpts = NULL;
    m->p_n = 0;
    mc__buf_free(&m->mem);
    free(m->p_charset);
    free(m->c_text);
    free(m->c_html);
    m->p_charset = m->c_text = m->c_html = NULL;
    m->c_text_len = m->c_html_len = 0;
    m->v_text = m->v_html = NULL;
    m->v_text_len = m->v_html_len = 0;
    free(m->segs);
    m->segs = NULL;
    m->n_segs = m->cap_segs = 0;
    m->mem_mark = 0;
    m->size = 0;
    m->p_smtputf8 = false;
    m->prepared = false;
}

void mc_message_free(mc_message *m)
{
    if (!m)
        return;
    unprepare(m);
    free(m->from_addr);
    free(m->from_name);
    free(m->env_from);
    vec_free(&m->to);
    vec_free(&m->cc);
    vec_free(&m->bcc);
    vec_free(&m->env_rcpts);
    vec_free(&m->rto);
    vec_free(&m->rcc);
    vec_free(&m->rbcc);
    vec_free(&m->xrcpt);
    free(m->dsn_notify);
    free(m->dsn_ret);
    free(m->dsn_envid);
    free(m->subject);
    free(m->text);
    free(m->text_path);
    free(m->html);
    for (size_t i = 0; i < m->n_att; i++) {
        free(m->att[i].path);
        free(m->att[i].fname);
    }
    free(m->att);
    for (size_t i = 0; i < m->n_xh; i++) {
        free(m->xh[i].name);
        free(m->xh[i].value);
    }
    free(m->xh);
    free(m->fallback_name);
    free(m->last_reply);
    free(m->date);
    free(m->msgid);
    free(m->raw);
    free(m->body_path);
    for (size_t i = 0; i < m->n_ph; i++) {
        free(m->ph[i].name);
        free(m->ph[i].value);
    }
    free(m->ph);
    free(m);
}

#define CHECK_MSG(m)                                                                    \
    do {                                                                                \
        if (!(m))                                                                       \
            return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,    \
                                 "no message");                                         \
    } while (0)

static int replace_str(char **dst, const char *src, mc_err **err)
{
    char *c = NULL;
    if (src && !(c = strdup(src)))
        return oom(err);
    free(*dst);
    *dst = c;
    return 0;
}

int mc_message_set_from(mc_message *m, const char *address, const char *display_name,
                        mc_err **err)
{
    CHECK_MSG(m);
    if (has_crlf(display_name))
        return msg_error(err, "From display name: %s", "line break refused");
    int rc = mc__address_check(address, true, err);
    if (rc < 0)
        return rc;
    if ((rc = replace_str(&m->from_addr, address, err)) < 0
        || (rc = replace_str(&m->from_name, display_name && *display_name ? display_name : NULL,
                             err)) < 0)
        return rc;
    m->from_set = true;
    return 0;
}

int mc_message_set_from_name(mc_message *m, const char *display_name, mc_err **err)
{
    CHECK_MSG(m);
    if (has_crlf(display_name))
        return msg_error(err, "From display name: %s", "line break refused");
    return replace_str(&m->fallback_name, display_name && *display_name ? display_name : NULL,
                       err);
}

int mc_message_set_envelope_from(mc_message *m, const char *address, mc_err **err)
{
    CHECK_MSG(m);
    /* the null reverse-path (RFC 5321 4.5.5): kept as "" */
    if (address && (!*address || strcmp(address, "<>") == 0))
        return replace_str(&m->env_from, "", err);
    int rc = mc__address_check(address, true, err);
    if (rc < 0)
        return rc;
    return replace_str(&m->env_from, address, err);
}

int mc_message_add_recipient(mc_message *m, mc_rcpt_kind kind, const char *address,
                             mc_err **err)
{
    CHECK_MSG(m);
    if (kind != MC_RCPT_TO && kind != MC_RCPT_CC && kind != MC_RCPT_BCC)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "unknown recipient kind %d", (int)kind);
    int rc = mc__address_check(address, true, err);
    if (rc < 0)
        return rc;
    /* a parsed message keeps its header: an added recipient is unseen, and
     * joins whichever recipient headers prepare uses (Resent-* or not) */
    strvec *v = m->parsed ? &m->xrcpt
                : kind == MC_RCPT_CC ? &m->cc : kind == MC_RCPT_BCC ? &m->bcc : &m->to;
    return vec_add(v, address) < 0 ? oom(err) : 0;
}

int mc_message_add_envelope_recipient(mc_message *m, const char *address, mc_err **err)
{
    CHECK_MSG(m);
    int rc = mc__address_check(address, true, err);
    if (rc < 0)
        return rc;
    return vec_add(&m->env_rcpts, address) < 0 ? oom(err) : 0;
}

int mc_message_set_subject(mc_message *m, const char *subject, mc_err **err)
{
    CHECK_MSG(m);
    if (has_crlf(subject))
        return msg_error(err, "Subject: %s", "line break refused");
    return replace_str(&m->subject, subject, err);
}

static int refuse_parsed(mc_message *m, const char *what, mc_err **err)
{
    if (m->parsed)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "%s: the message was parsed, its body cannot change", what);
    return 0;
}

static int set_body(char **dst, size_t *dlen, bool *has, const char *t, size_t len,
                    mc_err **err)
{
    char *c = NULL;
    if (t) {
        if (!(c = malloc(len + 1)))
            return oom(err);
        memcpy(c, t, len);
        c[len] = '\0';
    }
    free(*dst);
    *dst = c;
    *dlen = t ? len : 0;
    *has = t != NULL;
    return 0;
}

int mc_message_set_text(mc_message *m, const char *text, size_t len, mc_err **err)
{
    CHECK_MSG(m);
    int rc = refuse_parsed(m, "text", err);
    if (rc == 0 && (rc = set_body(&m->text, &m->text_len, &m->has_text, text, len, err)) == 0) {
        free(m->text_path);
        m->text_path = NULL;
    }
    return rc;
}

int mc_message_set_html(mc_message *m, const char *html, size_t len, mc_err **err)
{
    CHECK_MSG(m);
    int rc = refuse_parsed(m, "html", err);
    return rc ? rc : set_body(&m->html, &m->html_len, &m->has_html, html, len, err);
}

/* Size of a regular, readable file. */
static int file_size(const char *path, uint64_t *size, const char *what, mc_err **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(err, what, path, errno);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return file_error(err, what, path, e);
    }
    close(fd);
    if (!S_ISREG(st.st_mode))
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_NOINPUT, MC_STAGE_MESSAGE,
                             "%s %s: not a regular file", what, path);
    *size = (uint64_t)st.st_size;
    return 0;
}

int mc_message_set_text_file(mc_message *m, const char *path, mc_err **err)
{
    CHECK_MSG(m);
    int rc = refuse_parsed(m, "text", err);
    if (rc)
        return rc;
    if (!path || !*path)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "text file: no path");
    uint64_t size;
    if ((rc = file_size(path, &size, "text file", err)) < 0)
        return rc;
    if ((rc = replace_str(&m->text_path, path, err)) < 0)
        return rc;
    free(m->text);
    m->text = NULL;
    m->text_len = 0;
    m->has_text = true;
    return 0;
}

int mc_message_add_attachment(mc_message *m, const char *path, mc_err **err)
{
    CHECK_MSG(m);
    int rc = refuse_parsed(m, "attachment", err);
    if (rc)
        return rc;
    if (!path || !*path)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "attachment: no path");
    uint64_t size;
    if ((rc = file_size(path, &size, "attachment", err)) < 0)
        return rc;
    const char *base = strrchr(path, '/');
    base = base && base[1] ? base + 1 : path;
    if (has_crlf(base))
        return msg_error(err, "attachment: %s", "line break in the file name");
    attachment *a = realloc(m->att, (m->n_att + 1) * sizeof(*a));
    if (!a)
        return oom(err);
    m->att = a;
    a += m->n_att;
    a->path = strdup(path);
    a->fname = strdup(base);
    a->size = size;
    if (!a->path || !a->fname) {
        free(a->path);
        free(a->fname);
        return oom(err);
    }
    m->n_att++;
    return 0;
}

static const char *const reserved_headers[] = {
    "From", "To", "Cc", "Bcc", "Subject", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding",
};

/* The Message-ID inside its angle brackets; a copy. */
static char *msgid_strip(const char *v)
{
    const char *a = strchr(v, '<'), *z = a ? strchr(a, '>') : NULL;
    if (a && z)
        return strndup(a + 1, (size_t)(z - a - 1));
    while (is_wsp(*v))
        v++;
    size_t n = strlen(v);
    while (n && is_wsp(v[n - 1]))
        n--;
    return strndup(v, n);
}

int mc_message_add_header(mc_message *m, const char *name, const char *value, mc_err **err)
{
    CHECK_MSG(m);
    if (!name || !value)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "header: missing name or value");
    size_t nl = strlen(name);
    if (nl == 0 || nl > 76)
        return msg_error(err, "header name \"%s\": must be 1..76 characters", name);
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 33 || c > 126 || c == ':') {
            if (c == '\r' || c == '\n')
                return msg_error(err, "header name: %s", "line break refused");
            return msg_error(err, "header name \"%s\": invalid character", name);
        }
    }
    if (has_crlf(value))
        return msg_error(err, "header %s: line break refused", name);
    for (size_t i = 0; i < sizeof(reserved_headers) / sizeof(reserved_headers[0]); i++)
        if (strcasecmp(name, reserved_headers[i]) == 0)
            return msg_error(err, "header %s: set by its own function", name);
    if (strcasecmp(name, "Message-ID") == 0) {
        char *id = msgid_strip(value);
        if (!id)
            return oom(err);
        if (!*id || has_crlf(id)) {
            free(id);
            return msg_error(err, "header %s: empty", name);
        }
        free(m->msgid);
        m->msgid = id;
        return 0;
    }
    if (strcasecmp(name, "Date") == 0)
        return replace_str(&m->date, value, err);
    if (is_ascii(value, strlen(value)) && !needs_2047(value, strlen(value))) {
        mc__buf tmp = MC__BUF_INIT;
        int rc = fold_ascii(&tmp, value, strlen(value), nl + 2);
        mc__buf_free(&tmp);
        if (rc == MC_ENOMEM)
            return oom(err);
        if (rc < 0)
            return msg_error(err, "header %s: a word longer than a line (998 octets)", name);
    }
    xheader *x = realloc(m->xh, (m->n_xh + 1) * sizeof(*x));
    if (!x)
        return oom(err);
    m->xh = x;
    x += m->n_xh;
    x->name = strdup(name);
    x->value = strdup(value);
    if (!x->name || !x->value) {
        free(x->name);
        free(x->value);
        return oom(err);
    }
    m->n_xh++;
    return 0;
}

const char *mc_message_id(const mc_message *m)
{
    return m ? m->msgid : NULL;
}

/* ------------------------------------------------------------ parsing */

typedef int hdr_fn(void *payload, const char *name, const char *value, size_t off, size_t len);

static char *shown(const char *s, size_t n)
{
    size_t max = n > 60 ? 60 : n;
    char *p = malloc(max + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        p[i] = (c < 32 || c == 127) ? '?' : (char)c;
    }
    p[max] = '\0';
    return p;
}

/* lenient (sendmail input, as Postfix's cleanup reads it): a first line
 * that is not a header field makes everything body, and a later line that
 * is neither a header field nor a continuation starts the body. */
static int parse_headers(const char *data, size_t len, hdr_fn *fn, void *payload,
                         size_t *body_off, bool lenient, mc_err **err)
{
    mc__buf name = MC__BUF_INIT, value = MC__BUF_INIT;
    bool have = false;
    size_t pos = 0, hoff = 0;
    unsigned line = 0;
    int rc = 0;
    *body_off = len;

#define FLUSH()                                                                      \
    do {                                                                             \
        if (have) {                                                                  \
            size_t a = 0, z = value.len;                                             \
            while (a < z && is_wsp(value.data[a]))                                   \
                a++;                                                                 \
            while (z > a && is_wsp(value.data[z - 1]))                               \
                z--;                                                                 \
            value.data[z] = '\0';                                                    \
            rc = fn(payload, name.data, value.data + a, hoff, pos - hoff);           \
            have = false;                                                            \
            if (rc)                                                                  \
                goto done;                                                           \
        }                                                                            \
    } while (0)

    while (pos < len) {
        line++;
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        size_t next = nl ? end + 1 : len;
        size_t cend = end;
        if (cend > pos && data[cend - 1] == '\r')
            cend--;
        if (memchr(data + pos, '\0', cend - pos)) {
            rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                               "header line %u: NUL byte", line);
            goto done;
        }
        if (memchr(data + pos, '\r', cend - pos)) {
            rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                               "header line %u: bare CR", line);
            goto done;
        }
        if (cend == pos) {
            FLUSH();
            *body_off = next;
            goto done;
        }
        if (is_wsp(data[pos])) {
            if (!have && lenient) {
                *body_off = pos;   /* only on the first line: no header at all */
                goto done;
            }
            if (!have) {
                rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                                   "header line %u: continuation without a header", line);
                goto done;
            }
            if (mc__buf_put(&value, data + pos, cend - pos) < 0)
                goto nomem;
            pos = next;
            continue;
        }
        size_t i = pos;
        while (i < cend && (unsigned char)data[i] >= 33 && (unsigned char)data[i] <= 126
               && data[i] != ':')
            i++;
        size_t ne = i;
        while (i < cend && is_wsp(data[i]))
            i++;
        if (ne == pos || i >= cend || data[i] != ':') {
            if (lenient) {
                FLUSH();
                *body_off = pos;
                goto done;
            }
            char *s = shown(data + pos, cend - pos);
            rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                               "header line %u: not a header field: \"%s\"", line,
                               s ? s : "");
            free(s);
            goto done;
        }
        FLUSH();
        mc__buf_clear(&name);
        mc__buf_clear(&value);
        if (mc__buf_put(&name, data + pos, ne - pos) < 0
            || mc__buf_put(&value, data + i + 1, cend - i - 1) < 0)
            goto nomem;
        have = true;
        hoff = pos;
        pos = next;
    }
    FLUSH();
    *body_off = len;
    goto done;
#undef FLUSH
nomem:
    rc = oom(err);
done:
    mc__buf_free(&name);
    mc__buf_free(&value);
    return rc;
}

typedef struct plain_cb {
    int (*fn)(void *payload, const char *name, const char *value);
    void *payload;
} plain_cb;

static int plain_hdr(void *payload, const char *name, const char *value, size_t off, size_t len)
{
    (void)off;
    (void)len;
    plain_cb *p = payload;
    return p->fn(p->payload, name, value);
}

int mc__header_parse(const char *data, size_t len,
                     int (*fn)(void *payload, const char *name, const char *value),
                     void *payload, size_t *body_off, mc_err **err)
{
    size_t dummy;
    if (!data && len)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "no data");
    plain_cb p = { fn, payload };
    return parse_headers(data ? data : "", len, plain_hdr, &p, body_off ? body_off : &dummy, false,
                         err);
}

typedef struct collect {
    mc_message *m;
    mc_err  **err;
} collect;

static int add_cb(void *payload, const char *addr)
{
    return vec_add(payload, addr) < 0 ? MC_ENOMEM : 0;
}

static int first_cb(void *payload, const char *addr)
{
    char **first = payload;
    if (!*first && !(*first = strdup(addr)))
        return MC_ENOMEM;
    return 0;
}

static int collect_hdr(void *payload, const char *name, const char *value, size_t off,
                       size_t len)
{
    collect *c = payload;
    mc_message *m = c->m;
    phdr *p = realloc(m->ph, (m->n_ph + 1) * sizeof(*p));
    if (!p)
        return oom(c->err);
    m->ph = p;
    p += m->n_ph;
    p->name = strdup(name);
    p->value = strdup(value);
    p->off = off;
    p->len = len;
    if (!p->name || !p->value) {
        free(p->name);
        free(p->value);
        return oom(c->err);
    }
    m->n_ph++;
    int rc = 0;
    strvec *v = strcasecmp(name, "To") == 0 ? &m->to
                : strcasecmp(name, "Cc") == 0 ? &m->cc
                : strcasecmp(name, "Bcc") == 0 ? &m->bcc
                : strcasecmp(name, "Resent-To") == 0 ? &m->rto
                : strcasecmp(name, "Resent-Cc") == 0 ? &m->rcc
                : strcasecmp(name, "Resent-Bcc") == 0 ? &m->rbcc : NULL;
    if (v) {
        rc = mc__address_list(value, add_cb, v, c->err);
    } else if (strcasecmp(name, "From") == 0 && m->from_idx < 0) {
        m->from_idx = (long)m->n_ph - 1;
        rc = mc__address_list(value, first_cb, &m->from_addr, c->err);
    } else if (strcasecmp(name, "Date") == 0) {
        m->has_date = true;
    } else if (strcasecmp(name, "Message-ID") == 0 && !m->has_msgid) {
        m->has_msgid = true;
        if (!(m->msgid = msgid_strip(value)))
            rc = MC_ENOMEM;
        else if (!*m->msgid) {
            free(m->msgid);
            m->msgid = NULL;
        }
    }
    if (rc == MC_ENOMEM)
        return oom(c->err);
    return rc;
}

static int parse_into(mc_message *m, size_t hdr_len, bool lenient, mc_err **err)
{
    collect c = { m, err };
    size_t body_off;
    int rc = parse_headers(m->raw, hdr_len, collect_hdr, &c, &body_off, lenient, err);
    if (rc < 0)
        return rc;
    m->body_off = body_off;
    if (!is_ascii(m->raw, body_off))
        m->raw_8bit = true;
    return 0;
}

static int parse_mem(mc_message **out, const char *data, size_t len, bool lenient,
                     mc_err **err)
{
    if (!out || (!data && len))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "no data");
    *out = NULL;
    mc_message *m;
    int rc = mc_message_new(&m, err);
    if (rc < 0)
        return rc;
    m->parsed = true;
    if (!(m->raw = malloc(len + 1))) {
        mc_message_free(m);
        return oom(err);
    }
    if (len)
        memcpy(m->raw, data, len);
    m->raw[len] = '\0';
    m->raw_len = len;
    if ((rc = parse_into(m, len, lenient, err)) < 0) {
        mc_message_free(m);
        return rc;
    }
    if (!is_ascii(m->raw + m->body_off, len - m->body_off))
        m->raw_8bit = true;
    *out = m;
    return 0;
}

int mc_message_parse(mc_message **out, const char *data, size_t len, mc_err **err)
{
    return parse_mem(out, data, len, false, err);
}

int mc__message_parse_sendmail(mc_message **out, const char *data, size_t len, mc_err **err)
{
    if (!out || (!data && len))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "no data");
    /* an mbox "From " line first: dropped; "From  : a@b" is a header (the
     * obsolete syntax allows blanks before the colon), not an mbox line */
    size_t k = 4;
    while (k < len && (data[k] == ' ' || data[k] == '\t'))
        k++;
    if (len >= 5 && memcmp(data, "From ", 5) == 0 && !(k < len && data[k] == ':')) {
        const char *nl = memchr(data, '\n', len);
        size_t skip = nl ? (size_t)(nl - data) + 1 : len;
        data += skip;
        len -= skip;
    }
    return parse_mem(out, data, len, true, err);
}

int mc_message_parse_ex(mc_message **out, const char *data, size_t len, unsigned flags,
                        mc_err **err)
{
    if (out)
        *out = NULL;
    if (flags & ~MC_PARSE_SENDMAIL)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "parse: unknown flags 0x%x", flags & ~MC_PARSE_SENDMAIL);
    return flags & MC_PARSE_SENDMAIL ? mc__message_parse_sendmail(out, data, len, err)
                                     : parse_mem(out, data, len, false, err);
}

/* NOTIFY: "NEVER", or a list of SUCCESS, FAILURE, DELAY without repeats;
 * the canonical upper-case form in out (at least 32 bytes). */
static bool dsn_notify_canon(const char *v, char *out)
{
    static const char *const items[] = { "SUCCESS", "FAILURE", "DELAY" };
    if (strcasecmp(v, "never") == 0) {
        strcpy(out, "NEVER");
        return true;
    }
    out[0] = '\0';
    unsigned seen = 0;
    for (const char *p = v;;) {
        size_t n = strcspn(p, ","), k = 0;
        while (k < 3 && !(strlen(items[k]) == n && strncasecmp(p, items[k], n) == 0))
            k++;
        if (k == 3 || (seen & (1u << k)))
            return false;
        seen |= 1u << k;
        if (*out)
            strcat(out, ",");
        strcat(out, items[k]);
        if (!p[n])
            return true;
        p += n + 1;
    }
}

int mc_message_set_dsn(mc_message *m, const char *notify, const char *ret, const char *envid,
                       mc_err **err)
{
    CHECK_MSG(m);
    char nb[32];
    if (notify && !dsn_notify_canon(notify, nb))
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "DSN notify \"%s\": expected NEVER, or a list of SUCCESS, FAILURE, "
                             "DELAY", notify);
    if (ret && strcasecmp(ret, "full") != 0 && strcasecmp(ret, "hdrs") != 0)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "DSN ret \"%s\": expected FULL or HDRS", ret);
    if (envid) {
        size_t n = strlen(envid);
        bool ok = n >= 1 && n <= 100;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)envid[i] >= 33 && (unsigned char)envid[i] <= 126;
        if (!ok)
            return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "%s",
                                 "DSN envid: expected 1..100 printable ASCII characters");
    }
    const char *r = !ret ? NULL : strcasecmp(ret, "full") == 0 ? "FULL" : "HDRS";
    int rc;
    if ((rc = replace_str(&m->dsn_notify, notify ? nb : NULL, err)) < 0
        || (rc = replace_str(&m->dsn_ret, r, err)) < 0
        || (rc = replace_str(&m->dsn_envid, envid, err)) < 0)
        return rc;
    return 0;
}

void mc__message_dsn(const mc_message *m, const char **notify, const char **ret,
                     const char **envid)
{
    *notify = m ? m->dsn_notify : NULL;
    *ret = m ? m->dsn_ret : NULL;
    *envid = m ? m->dsn_envid : NULL;
}

/* Offset just after the blank line ending the header block within data,
 * scanning complete lines from *scan on; false when not (yet) found. */
static bool header_end(const char *data, size_t len, size_t *scan, size_t *body_off)
{
    size_t pos = *scan;
    for (;;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (!nl) {
            *scan = pos;
            return false;
        }
        size_t end = (size_t)(nl - data);
        if (end == pos || (end == pos + 1 && data[pos] == '\r')) {
            *body_off = end + 1;
            return true;
        }
        pos = end + 1;
    }
}

static ssize_t read_full(int fd, char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int mc_message_parse_file(mc_message **out, const char *path, mc_err **err)
{
    if (!out || !path)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE, "no path");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(err, "message", path, errno);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return file_error(err, "message", path, e);
    }
    mc__buf b = MC__BUF_INIT;
    int rc;
    size_t scan = 0, body_off = 0;
    bool found = false, eof = false;
    while (!found && !eof) {
        if (b.len >= HEADER_MAX) {
            rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                               "message %s: header block larger than 8 MiB", path);
            goto fail;
        }
        if (mc__buf_grow(&b, RAW_CHUNK) < 0) {
            rc = oom(err);
            goto fail;
        }
        ssize_t r = read_full(fd, b.data + b.len, RAW_CHUNK);
        if (r < 0) {
            rc = file_error(err, "message", path, errno);
            goto fail;
        }
        b.len += (size_t)r;
        b.data[b.len] = '\0';
        eof = r < RAW_CHUNK;
        found = header_end(b.data, b.len, &scan, &body_off);
    }
    if (!S_ISREG(st.st_mode) || eof) {
        /* a pipe or device: read it all and parse from memory; a file read
         * whole already (at most RAW_CHUNK bytes) is kept in memory too, so
         * sending it opens, stats and reads it no second time */
        while (!eof) {
            if (mc__buf_grow(&b, RAW_CHUNK) < 0) {
                rc = oom(err);
                goto fail;
            }
            ssize_t r = read_full(fd, b.data + b.len, RAW_CHUNK);
            if (r < 0) {
                rc = file_error(err, "message", path, errno);
                goto fail;
            }
            if (r == 0)
                break;
            b.len += (size_t)r;
        }
        close(fd);
        rc = mc_message_parse(out, b.data ? b.data : "", b.len, err);
        mc__buf_free(&b);
        return rc;
    }
    mc_message *m = NULL;
    if ((rc = mc_message_new(&m, err)) < 0)
        goto fail;
    m->parsed = true;
    if (!b.data && mc__buf_grow(&b, 0) < 0) {
        mc_message_free(m);
        rc = oom(err);
        goto fail;
    }
    size_t hdr_len = found ? body_off : b.len;
    /* the body read so far is scanned for 8-bit bytes now; the rest of the
     * file only when someone asks (mc__message_8bit): with a server that
     * offers 8BITMIME nobody does, and the file is read once, by the send */
    bool eight = !is_ascii(b.data + hdr_len, b.len - hdr_len);
    m->scan_pending = !eight;
    m->scan_off = (off_t)b.len;
    close(fd);
    fd = -1;
    b.len = hdr_len;
    b.data[hdr_len] = '\0';
    m->raw = mc__buf_detach(&b);
    m->raw_len = hdr_len;
    m->raw_8bit = eight;
    if (!(m->body_path = strdup(path))) {
        mc_message_free(m);
        return oom(err);
    }
    if ((rc = parse_into(m, hdr_len, false, err)) < 0) {
        mc_message_free(m);
        return rc;
    }
    *out = m;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    mc__buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------- charset */

/* Text and HTML that the message composes arrive in UTF-8; a server with
 * another "charset" gets them converted by iconv (a fresh descriptor per
 * part and send: iconv_t is not shared). A text file is converted chunk
 * by chunk; a UTF-8 sequence split by a chunk boundary is carried over
 * (tail). Parsed messages are never converted. */

static bool charset_is_utf8(const char *cs)
{
    return !cs || !*cs || strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "UTF8") == 0;
}

typedef struct conv {
    iconv_t     cd;
    const char *charset;
    const char *what;       /* "text", "HTML", "text file PATH": for messages */
    uint64_t    line;       /* line of the next input byte, from 1 */
    char        tail[4];    /* an incomplete UTF-8 sequence carried to the next call */
    size_t      ntail;
} conv;

/* Every printable ASCII character, TAB, CR and LF: what a charset must
 * write unchanged to carry mail text. */
static const char ascii_probe[] =
    "\t\r\n !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
    "abcdefghijklmnopqrstuvwxyz{|}~\r\n";

static bool probe_ascii(iconv_t cd)
{
    char out[2 * sizeof(ascii_probe) + 32];
    char *ip = (char *)ascii_probe, *op = out;
    size_t il = sizeof(ascii_probe) - 1, ol = sizeof(out);
    if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1 || il
        || iconv(cd, NULL, NULL, &op, &ol) == (size_t)-1)
        return false;
    iconv(cd, NULL, NULL, NULL, NULL);   /* back to the initial state */
    return (size_t)(op - out) == sizeof(ascii_probe) - 1
           && memcmp(out, ascii_probe, sizeof(ascii_probe) - 1) == 0;
}

/* Open a converter from UTF-8 to cs, or say why not (why_size bytes). */
static iconv_t charset_open(const char *cs, char *why, size_t why_size)
{
    iconv_t cd = iconv_open(cs, "UTF-8");
    if (cd == (iconv_t)-1) {
        snprintf(why, why_size, "unknown charset \"%s\" (iconv does not know it)", cs);
        return cd;
    }
    if (!probe_ascii(cd)) {
        iconv_close(cd);
        snprintf(why, why_size,
                 "charset \"%s\" cannot carry mail text (it changes ASCII or line ends)", cs);
        return (iconv_t)-1;
    }
    return cd;
}

bool mc__charset_usable(const char *charset, char *why, size_t why_size)
{
    char dummy[1];
    if (!why || !why_size) {
        why = dummy;
        why_size = sizeof(dummy);
    }
    *why = '\0';
    if (charset_is_utf8(charset))
        return true;
    iconv_t cd = charset_open(charset, why, why_size);
    if (cd == (iconv_t)-1)
        return false;
    iconv_close(cd);
    return true;
}

static int conv_open(conv *c, const char *charset, const char *what, mc_err **err)
{
    char why[160];
    memset(c, 0, sizeof(*c));
    c->charset = charset;
    c->what = what;
    c->line = 1;
    c->cd = charset_open(charset, why, sizeof(why));
    if (c->cd == (iconv_t)-1)
        return mc__error_set(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_CONFIG,
                             "the server's %s", why);
    return 0;
}

static void conv_close(conv *c)
{
    if (c->cd != (iconv_t)-1 && c->cd)
        iconv_close(c->cd);
    c->cd = (iconv_t)-1;
}

static uint64_t count_lf(const char *s, size_t n)
{
    uint64_t k = 0;
    for (const char *p = s, *e = s + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        k++;
    return k;
}

/* A character worth showing as it is in a message: not a control, a line
 * or paragraph separator, a bidi control, a zero-width one or a BOM. */
static bool cp_showable(unsigned long cp)
{
    return cp >= 0xa0 && !(cp >= 0x200b && cp <= 0x200f) && !(cp >= 0x2028 && cp <= 0x202e)
           && !(cp >= 0x2066 && cp <= 0x2069) && cp != 0xfeff;
}

/* The error for the input at s[0..n) (where iconv stopped; n 0 at an
 * incomplete end), on line `line`. */
static int conv_fail(const conv *c, const unsigned char *s, size_t n, uint64_t line, mc_err **err)
{
    size_t l = n ? mc__utf8_seq(s, n) : 0;
    int rc;
    if (l == 0) {
        char what[40] = "the text ends inside a UTF-8 sequence";
        if (n)
            snprintf(what, sizeof(what), "byte 0x%02X is not UTF-8", s[0]);
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                           "%s line %llu: %s (it is converted from UTF-8 to charset %s)",
                           c->what, (unsigned long long)line, what, c->charset);
        return rc;
    }
    unsigned long cp = l == 1 ? s[0] : s[0] & (0x7f >> l);
    for (size_t i = 1; i < l; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    if (cp_showable(cp))
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                           "%s line %llu: \"%.*s\" (U+%04lX) cannot be written in charset %s",
                           c->what, (unsigned long long)line, (int)l, (const char *)s, cp,
                           c->charset);
    else
        rc = mc__error_set(err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                           "%s line %llu: U+%04lX cannot be written in charset %s", c->what,
                           (unsigned long long)line, cp, c->charset);
    if (err && *err)
        mc__error_hint(*err, "use only characters the server's charset has, or set its "
                             "\"charset\" to \"UTF-8\"");
    return rc;
}

/* Convert in[0..n) and append the result to out. `last`: the input ends
 * here (the shift state is closed; an incomplete sequence is an error).
 * @return 0, MC_EMESSAGE (not representable, not UTF-8), MC_ENOMEM. */
static int conv_run(conv *c, const char *in, size_t n, bool last, mc__buf *out, mc_err **err)
{
    char *joined = NULL;
    if (c->ntail) {
        if (!(joined = malloc(c->ntail + n)))
            return oom(err);
        memcpy(joined, c->tail, c->ntail);
        if (n)
            memcpy(joined + c->ntail, in, n);
        in = joined;
        n += c->ntail;
        c->ntail = 0;
    }
    char *ip = (char *)in;
    size_t il = n;
    int rc = 0;
    for (;;) {
        bool closing = il == 0;
        if (closing && !last)
            break;
        size_t room = 2 * il + 64;
        if (mc__buf_grow(out, room) < 0) {
            rc = oom(err);
            break;
        }
        char *op = out->data + out->len;
        size_t ol = room;
        size_t r = closing ? iconv(c->cd, NULL, NULL, &op, &ol)
                           : iconv(c->cd, &ip, &il, &op, &ol);
        int e = errno;
        out->len = (size_t)(op - out->data);
        out->data[out->len] = '\0';
        if (r == (size_t)-1) {
            if (e == E2BIG)
                continue;
            if (e == EINVAL && !last && il < sizeof(c->tail)) {
                memcpy(c->tail, ip, il);   /* the rest comes with the next chunk */
                c->ntail = il;
                il = 0;
                break;
            }
            size_t done = (size_t)(ip - in);
            rc = conv_fail(c, (const unsigned char *)ip, e == EINVAL ? 0 : il,
                           c->line + count_lf(in, done), err);
            break;
        }
        if (closing)
            break;
    }
    if (rc == 0)
        c->line += count_lf(in, (size_t)(ip - in));
    free(joined);
    return rc;
}

/* ---------------------------------------------------------- preparing */

static int seg_push(mc_message *m, seg s)
{
    if (m->n_segs == m->cap_segs) {
        size_t nc = m->cap_segs ? m->cap_segs * 2 : 8;
        seg *p = realloc(m->segs, nc * sizeof(*p));
        if (!p)
            return MC_ENOMEM;
        m->segs = p;
        m->cap_segs = nc;
    }
    m->segs[m->n_segs++] = s;
    m->size += s.kind == SEG_MEM || s.kind == SEG_RAW ? s.len
               : s.kind == SEG_FILE ? s.fsize
               : s.kind == SEG_TEXTFILE ? s.osize
               : 4 * ((s.fsize + 2) / 3) + 2 * ((s.fsize + B64_LINE_IN - 1) / B64_LINE_IN);
    return 0;
}

/* Close the memory range written since the last mark. */
static int mem_cut(mc_message *m)
{
    if (m->mem.len > m->mem_mark) {
        seg s = { .kind = SEG_MEM, .off = m->mem_mark, .len = m->mem.len - m->mem_mark };
        if (seg_push(m, s) < 0)
            return MC_ENOMEM;
    }
    m->mem_mark = m->mem.len;
    return 0;
}

static bool text_7bit(const char *t, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == 0 || c >= 0x80)
            return false;
        if (c == '\n' || c == '\r')
            line = 0;
        else if (++line > LINE_HARD)
            return false;
    }
    return true;
}

/* The text-part encoder, streaming: lines end at LF, CR or CRLF and go
 * out with CRLF, the last line too; quoted-printable (RFC 2045 6.7) keeps
 * lines within 76 with soft breaks and encodes white space before a line
 * end, so one byte is held back until what follows it is known. Memory
 * bodies and text files go through this one encoder. With out NULL it only
 * counts. At most TEXTENC_MAX(n) bytes out for n in (a held byte with a
 * soft break, "=XX" and the CRLF of the line end). */
typedef struct textenc {
    bool   qp;
    bool   cr;      /* the previous byte was a CR: an LF now ends no line */
    bool   mid;     /* 7bit: inside a line */
    int    held;    /* qp: the byte held back, -1 none */
    size_t col;     /* qp: output column */
} textenc;

#define TEXTENC_INIT(q) { .qp = (q), .held = -1 }
#define TEXTENC_MAX(n)  (8 * (size_t)(n) + 8)

static size_t qp_byte(textenc *st, unsigned char c, bool last, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    bool lit = (c >= 33 && c <= 126 && c != '=') || (is_wsp((char)c) && !last);
    size_t tok = lit ? 1 : 3, o = 0;
    if (st->col + tok > (last ? 76u : 75u)) {
        if (out)
            memcpy(out, "=\r\n", 3);
        o = 3;
        st->col = 0;
    }
    if (out) {
        if (lit) {
            out[o] = (char)c;
        } else {
            out[o] = '=';
            out[o + 1] = hex[c >> 4];
            out[o + 2] = hex[c & 15];
        }
    }
    st->col += tok;
    return o + tok;
}

static size_t textenc_run(textenc *st, const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\n' && st->cr) {
            st->cr = false;
            continue;
        }
        st->cr = c == '\r';
        if (c == '\n' || c == '\r') {
            if (st->qp && st->held >= 0)
                o += qp_byte(st, (unsigned char)st->held, true, out ? out + o : NULL);
            st->held = -1;
            st->col = 0;
            st->mid = false;
            if (out)
                memcpy(out + o, "\r\n", 2);
            o += 2;
        } else if (st->qp) {
            if (st->held >= 0)
                o += qp_byte(st, (unsigned char)st->held, false, out ? out + o : NULL);
            st->held = c;
        } else {
            if (out)
                out[o] = (char)c;
            o++;
            st->mid = true;
        }
    }
    return o;
}

/* The end of the text: the last line's CRLF when it had none. */
static size_t textenc_end(textenc *st, char *out)
{
    size_t o = 0;
    if (st->qp && st->held >= 0)
        o += qp_byte(st, (unsigned char)st->held, true, out);
    if (o || st->mid) {
        if (out)
            memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    st->held = -1;
    st->mid = st->cr = false;
    st->col = 0;
    return o;
}

/* Content of a text part, CRLF line ends, ending in CRLF when not empty. */
static int put_text(mc__buf *b, const char *t, size_t n, bool qp)
{
    textenc st = TEXTENC_INIT(qp);
    for (size_t i = 0; i <= n;) {
        size_t k = n - i < TEXT_CHUNK ? n - i : TEXT_CHUNK;
        if (mc__buf_grow(b, TEXTENC_MAX(k)) < 0)
            return MC_ENOMEM;
        if (k)
            b->len += textenc_run(&st, t + i, k, b->data + b->len);
        else
            b->len += textenc_end(&st, b->data + b->len);
        b->data[b->len] = '\0';
        if (!k)
            break;
        i += k;
    }
    return 0;
}

/* What scan_text_file learns from the bytes that go out, chunk by chunk. */
typedef struct tf_scan {
    textenc  e7, eq;
    uint64_t o7, oq;
    bool     seven, found;
    size_t   line, mk;
} tf_scan;

static void tf_scan_bytes(tf_scan *t, const char *p, size_t n)
{
    static const char marker[] = "=_mc_";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == 0 || c >= 0x80)
            t->seven = false;
        else if (c == '\n' || c == '\r')
            t->line = 0;
        else if (++t->line > LINE_HARD)
            t->seven = false;
        if (!t->found) {
            t->mk = c == (unsigned char)marker[t->mk] ? t->mk + 1 : c == '=' ? 1 : 0;
            t->found = t->mk == sizeof(marker) - 1;
        }
    }
    t->o7 += textenc_run(&t->e7, p, n, NULL);
    t->oq += textenc_run(&t->eq, p, n, NULL);
}

/* Read a text file once: whether it needs quoted-printable (the rule of
 * text_7bit), its exact encoded size, and whether "=_mc_" (the boundary
 * prefix) occurs in it; all of it on the bytes that go out, converted to
 * m->p_charset when there is one (which also checks that every character
 * of the file can be). */
static int scan_text_file(mc_message *m, mc_err **err)
{
    int fd = open(m->text_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(err, "text file", m->text_path, errno);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return file_error(err, "text file", m->text_path, e);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mc__error_set(err, MC_EFILE, MC_OUTCOME_NOINPUT, MC_STAGE_MESSAGE,
                             "text file %s: not a regular file", m->text_path);
    }
    char *chunk = malloc(RAW_CHUNK);
    char *what = NULL;
    if (!chunk || (m->p_charset && asprintf(&what, "text file %s", m->text_path) < 0)) {
        free(chunk);
        close(fd);
        return oom(err);
    }
    tf_scan t = { .e7 = TEXTENC_INIT(false), .eq = TEXTENC_INIT(true), .seven = true };
    conv cv = { .cd = (iconv_t)-1 };
    mc__buf cb = MC__BUF_INIT;
    uint64_t size = 0;
    int rc = m->p_charset ? conv_open(&cv, m->p_charset, what, err) : 0;
    while (rc == 0) {
        ssize_t r = read_full(fd, chunk, RAW_CHUNK);
        if (r < 0) {
            rc = file_error(err, "text file", m->text_path, errno);
            break;
        }
        bool end = r < RAW_CHUNK;
        if (m->p_charset) {
            mc__buf_clear(&cb);
            if ((rc = conv_run(&cv, chunk, (size_t)r, end, &cb, err)) < 0)
                break;
            tf_scan_bytes(&t, cb.data ? cb.data : "", cb.len);
        } else {
            tf_scan_bytes(&t, chunk, (size_t)r);
        }
        size += (uint64_t)r;
        if (end)
            break;
    }
    conv_close(&cv);
    mc__buf_free(&cb);
    free(what);
    free(chunk);
    close(fd);
    if (rc < 0)
        return rc;
    t.o7 += textenc_end(&t.e7, NULL);
    t.oq += textenc_end(&t.eq, NULL);
    /* converted 7-bit text (ISO-2022-JP) is not the file: a boundary is
     * looked for in the file only, so the marker makes it quoted-printable */
    bool qp = !t.seven || (m->p_charset && t.found);
    m->tf_size = size;
    m->tf_qp = qp;
    m->tf_osize = qp ? t.oq : t.o7;
    m->tf_marker = t.found;
    return 0;
}

/* Does the file at path contain needle? Read in overlapping chunks; a
 * read error answers no (sending it fails on that read). */
static bool file_contains(const char *path, const char *needle)
{
    size_t nl = strlen(needle);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char *chunk = malloc(RAW_CHUNK);
    bool hit = false;
    off_t off = 0;
    while (chunk && !hit) {
        ssize_t r = pread(fd, chunk, RAW_CHUNK, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        hit = memmem(chunk, (size_t)r, needle, nl) != NULL;
        if ((size_t)r < nl || r < RAW_CHUNK)
            break;
        off += r - (ssize_t)(nl - 1);
    }
    free(chunk);
    close(fd);
    return hit;
}

/* "UTF-8", or the server's charset (quoted when it is not a MIME token). */
static int put_charset(mc__buf *b, const mc_message *m)
{
    const char *cs = m->p_charset ? m->p_charset : "UTF-8";
    bool token = true;
    for (const char *c = cs; *c; c++)
        if ((unsigned char)*c <= 32 || (unsigned char)*c >= 127 || strchr("()<>@,;:\\\"/[]?=", *c))
            token = false;
    return mc__buf_printf(b, token ? "; charset=%s\r\n" : "; charset=\"%s\"\r\n", cs);
}

static int put_text_part(mc__buf *b, const mc_message *m, const char *type, const char *t,
                         size_t n)
{
    bool qp = !text_7bit(t, n);
    if (mc__buf_printf(b, "Content-Type: %s", type) < 0 || put_charset(b, m) < 0
        || mc__buf_printf(b, "Content-Transfer-Encoding: %s\r\n\r\n",
                          qp ? "quoted-printable" : "7bit") < 0)
        return MC_ENOMEM;
    return put_text(b, t, n, qp);
}

/* The text/plain part: from memory, or a segment streaming the text file
 * (scanned by scan_text_file) through the same encoder. */
static int put_plain_part(mc_message *m)
{
    mc__buf *b = &m->mem;
    if (!m->text_path)
        return put_text_part(b, m, "text/plain", m->v_text ? m->v_text : "", m->v_text_len);
    if (mc__buf_puts(b, "Content-Type: text/plain") < 0 || put_charset(b, m) < 0
        || mc__buf_printf(b, "Content-Transfer-Encoding: %s\r\n\r\n",
                          m->tf_qp ? "quoted-printable" : "7bit") < 0)
        return MC_ENOMEM;
    if (!m->tf_osize)
        return 0;
    seg s = { .kind = SEG_TEXTFILE, .path = m->text_path, .fsize = m->tf_size,
              .osize = m->tf_osize, .qp = m->tf_qp, .charset = m->p_charset };
    if (mem_cut(m) < 0 || seg_push(m, s) < 0)
        return MC_ENOMEM;
    m->mem_mark = b->len;
    return 0;
}

/* The text part's encoded length is zero (its part needs a CRLF before
 * the next delimiter). */
static bool text_empty(const mc_message *m)
{
    return m->text_path ? m->tf_osize == 0 : m->v_text_len == 0;
}

/* A display name as a phrase: atoms as they are, else a quoted string,
 * else (non-ASCII, controls, very long) RFC 2047 encoded words. */
static int put_phrase(mc__buf *b, const char *name)
{
    size_t n = strlen(name);
    if (needs_2047(name, n) || n > 900)
        return encode_words(b, name, n, line_len(b));
    bool atoms = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                     || strchr("!#$%&'*+-/=?^_`{|}~", c);
        if (c == ' ') {
            if (i == 0 || i + 1 == n || name[i + 1] == ' ')
                atoms = false;
        } else if (!atext) {
            atoms = false;
        }
    }
    if (atoms)
        return fold_ascii(b, name, n, line_len(b)) == MC_ENOMEM ? MC_ENOMEM : 0;
    if (mc__buf_put(b, "\"", 1) < 0)
        return MC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((name[i] == '"' || name[i] == '\\') && mc__buf_put(b, "\\", 1) < 0)
            return MC_ENOMEM;
        if (mc__buf_put(b, name + i, 1) < 0)
            return MC_ENOMEM;
    }
    return mc__buf_put(b, "\"", 1);
}

static int put_mailbox(mc__buf *b, const char *name, const char *addr)
{
    if (!name || !*name)
        return mc__buf_puts(b, addr);
    if (put_phrase(b, name) < 0)
        return MC_ENOMEM;
    if (line_len(b) + strlen(addr) + 3 > LINE_SOFT && mc__buf_puts(b, "\r\n") < 0)
        return MC_ENOMEM;
    return mc__buf_printf(b, " <%s>", addr);
}

static int put_addr_header(mc__buf *b, const char *name, const strvec *v)
{
    if (!v->n)
        return 0;
    if (mc__buf_printf(b, "%s: ", name) < 0)
        return MC_ENOMEM;
    for (size_t i = 0; i < v->n; i++) {
        if (i && mc__buf_puts(b, line_len(b) + 2 + strlen(v->v[i]) > LINE_SOFT
                                     ? ",\r\n " : ", ") < 0)
            return MC_ENOMEM;
        if (mc__buf_puts(b, v->v[i]) < 0)
            return MC_ENOMEM;
    }
    return mc__buf_puts(b, "\r\n");
}

static int put_xheaders(mc__buf *b, const mc_message *m)
{
    for (size_t i = 0; i < m->n_xh; i++) {
        const char *v = m->xh[i].value;
        if (mc__buf_printf(b, "%s: ", m->xh[i].name) < 0
            || mc__rfc2047_encode(b, v, strlen(m->xh[i].name) + 2) < 0
            || mc__buf_puts(b, "\r\n") < 0)
            return MC_ENOMEM;
    }
    return 0;
}

static int make_boundary(char *out, const mc_message *m)
{
    for (;;) {
        memcpy(out, "=_mc_", 5);
        if (random_hex(out + 5, 16) < 0)
            return -1;
        /* 7bit text is copied as it is: the boundary must not occur in it
         * (quoted-printable and base64 can never contain "=_") */
        if ((!m->has_text || !m->v_text || !memmem(m->v_text, m->v_text_len, out, strlen(out)))
            && (!m->has_html || !m->v_html || !memmem(m->v_html, m->v_html_len, out, strlen(out)))
            && (!m->text_path || m->tf_qp || !m->tf_marker
                || !file_contains(m->text_path, out)))
            return 0;
    }
}

static int put_alternative(mc__buf *b, mc_message *m, const char *bnd)
{
    if (mc__buf_printf(b, "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n"
                          "--%s\r\n", bnd, bnd) < 0
        || put_plain_part(m) < 0
        || (text_empty(m) && mc__buf_puts(b, "\r\n") < 0)
        || mc__buf_printf(b, "--%s\r\n", bnd) < 0
        || put_text_part(b, m, "text/html", m->v_html, m->v_html_len) < 0
        || (m->v_html_len == 0 && mc__buf_puts(b, "\r\n") < 0)
        || mc__buf_printf(b, "--%s--\r\n", bnd) < 0)
        return MC_ENOMEM;
    return 0;
}

/* The single text part: text, else html, else an empty text/plain. */
static int put_single(mc__buf *b, mc_message *m)
{
    if (!m->has_text && m->has_html)
        return put_text_part(b, m, "text/html", m->v_html, m->v_html_len);
    return put_plain_part(m);
}

/* Text and HTML as they go out: converted to charset unless it is UTF-8
 * (m->p_charset then NULL). */
static int convert_bodies(mc_message *m, const char *charset, mc_err **err)
{
    m->v_text = m->text;
    m->v_text_len = m->text_len;
    m->v_html = m->html;
    m->v_html_len = m->html_len;
    if (charset_is_utf8(charset))
        return 0;
    if (!(m->p_charset = strdup(charset)))
        return oom(err);
    conv cv;
    int rc = conv_open(&cv, charset, "text", err);
    conv_close(&cv);   /* opened only to check the charset before anything else */
    if (rc < 0)
        return rc;
    for (int part = 0; part < 2; part++) {
        const char *src = part ? m->html : m->text;
        size_t n = part ? m->html_len : m->text_len;
        if (!src || (part == 0 && m->text_path))
            continue;
        mc__buf out = MC__BUF_INIT;
        if ((rc = conv_open(&cv, charset, part ? "HTML" : "text", err)) < 0)
            return rc;
        rc = conv_run(&cv, src, n, true, &out, err);
        conv_close(&cv);
        if (rc == 0 && !out.data && mc__buf_grow(&out, 0) < 0)
            rc = oom(err);
        if (rc < 0) {
            mc__buf_free(&out);
            return rc;
        }
        size_t len = out.len;
        char *data = mc__buf_detach(&out);
        if (part) {
            m->c_html = data;
            m->c_html_len = len;
            m->v_html = data;
            m->v_html_len = len;
        } else {
            m->c_text = data;
            m->c_text_len = len;
            m->v_text = data;
            m->v_text_len = len;
        }
    }
    return 0;
}

static int build_composed(mc_message *m, const char *from_addr, const char *from_name,
                          const char *charset, mc_err **err)
{
    mc__buf *b = &m->mem;
    int crc = convert_bodies(m, charset, err);
    if (crc < 0)
        return crc;
    if (m->text_path) {
        int rc = scan_text_file(m, err);
        if (rc < 0)
            return rc;
    }
    if (mc__buf_printf(b, "Date: %s\r\nFrom: ", m->date) < 0
        || put_mailbox(b, from_name, from_addr) < 0 || mc__buf_puts(b, "\r\n") < 0
        || put_addr_header(b, "To", &m->to) < 0 || put_addr_header(b, "Cc", &m->cc) < 0)
        return oom(err);
    if (m->subject && (mc__buf_puts(b, "Subject: ") < 0
                       || mc__rfc2047_encode(b, m->subject, 9) < 0
                       || mc__buf_puts(b, "\r\n") < 0))
        return oom(err);
    if (mc__buf_printf(b, "Message-ID: <%s>\r\n", m->msgid) < 0 || put_xheaders(b, m) < 0
        || mc__buf_puts(b, "MIME-Version: 1.0\r\n") < 0)
        return oom(err);

    bool alt = m->has_text && m->has_html;
    if (!m->n_att && !alt)
        return put_single(b, m) < 0 ? oom(err) : 0;

    char b1[40], b2[40];
    if (make_boundary(b1, m) < 0 || make_boundary(b2, m) < 0)
        return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                             "random generator failed");
    if (!m->n_att)
        return put_alternative(b, m, b2) < 0 ? oom(err) : 0;

    if (mc__buf_printf(b, "Content-Type: multipart/mixed;\r\n boundary=\"%s\"\r\n\r\n"
                          "This is a multi-part message in MIME format.\r\n--%s\r\n", b1, b1) < 0)
        return oom(err);
    if ((alt ? put_alternative(b, m, b2) : put_single(b, m)) < 0)
        return oom(err);
    /* an empty body still needs the CRLF that starts the next delimiter */
    bool single_empty = !m->has_text && m->has_html ? m->v_html_len == 0 : text_empty(m);
    if (!alt && single_empty && mc__buf_puts(b, "\r\n") < 0)
        return oom(err);
    for (size_t i = 0; i < m->n_att; i++) {
        const attachment *a = &m->att[i];
        const char *type = mc__mime_type(a->fname);
        if (mc__buf_printf(b, "--%s\r\nContent-Type: %s;\r\n ", b1, type) < 0
            || mc__rfc2231_param(b, "name", a->fname) < 0
            || mc__buf_puts(b, "\r\nContent-Transfer-Encoding: base64\r\n"
                               "Content-Disposition: attachment;\r\n ") < 0
            || mc__rfc2231_param(b, "filename", a->fname) < 0
            || mc__buf_puts(b, "\r\n\r\n") < 0)
            return oom(err);
        uint64_t size;
        int rc = file_size(a->path, &size, "attachment", err);
        if (rc < 0)
            return rc;
        if (size) {
            seg s = { .kind = SEG_B64FILE, .path = a->path, .fsize = size };
            if (mem_cut(m) < 0 || seg_push(m, s) < 0)
                return oom(err);
            m->mem_mark = b->len;
        } else if (mc__buf_puts(b, "\r\n") < 0) {
            return oom(err);
        }
    }
    if (mc__buf_printf(b, "--%s--\r\n", b1) < 0)
        return oom(err);
    return 0;
}

static bool is_bcc(const char *name)
{
    return strcasecmp(name, "Bcc") == 0 || strcasecmp(name, "Resent-Bcc") == 0;
}

/* Copy raw header text with every bare LF turned into CRLF. */
static int put_crlf(mc__buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r') && mc__buf_put(b, "\r", 1) < 0)
            return MC_ENOMEM;
        if (mc__buf_put(b, s + i, 1) < 0)
            return MC_ENOMEM;
    }
    /* the last line without its LF (input ending in a bare CR: end it) */
    if (n && s[n - 1] != '\n' && mc__buf_puts(b, s[n - 1] == '\r' ? "\n" : "\r\n") < 0)
        return MC_ENOMEM;
    return 0;
}

static int build_parsed(mc_message *m, const char *from_addr, const char *from_name,
                        bool rewrite_from, mc_err **err)
{
    mc__buf *b = &m->mem;
    for (size_t i = 0; i < m->n_ph; i++) {
        const phdr *h = &m->ph[i];
        if (is_bcc(h->name))
            continue;
        if ((long)i == m->from_idx && rewrite_from) {
            int rc;
            if (m->from_set) {
                rc = mc__buf_puts(b, "From: ") < 0 || put_mailbox(b, from_name, from_addr) < 0
                     ? MC_ENOMEM : 0;
            } else {
                /* keep the display name and comments, replace the address:
                 * the first mailbox of the list is the one we read */
                const char *v = h->value;
                size_t n = strlen(v), e = 0, off, len;
                bool q = false, angle;
                int depth = 0;
                for (; e < n; e++) {
                    if (v[e] == '\\' && e + 1 < n) {
                        e++;
                        continue;
                    }
                    if (v[e] == '"' && !depth)
                        q = !q;
                    else if (!q && v[e] == '(')
                        depth++;
                    else if (!q && v[e] == ')' && depth)
                        depth--;
                    else if (!q && !depth && v[e] == ',')
                        break;
                }
                if (mc__mailbox_span(v, e, &off, &len, &angle) < 0 || len == 0) {
                    off = len = 0;
                    angle = false;
                }
                rc = mc__buf_puts(b, "From: ") < 0 || mc__buf_put(b, v, off) < 0
                     || mc__buf_puts(b, from_addr) < 0
                     || mc__buf_put(b, v + off + len, e - off - len) < 0
                     ? MC_ENOMEM : 0;
            }
            if (rc < 0 || mc__buf_puts(b, "\r\n") < 0)
                return oom(err);
            continue;
        }
        if (put_crlf(b, m->raw + h->off, h->len) < 0)
            return oom(err);
    }
    if (m->from_idx < 0 && (mc__buf_puts(b, "From: ") < 0
                            || put_mailbox(b, from_name, from_addr) < 0
                            || mc__buf_puts(b, "\r\n") < 0))
        return oom(err);
    if (!m->has_date && mc__buf_printf(b, "Date: %s\r\n", m->date) < 0)
        return oom(err);
    if (!m->has_msgid && mc__buf_printf(b, "Message-ID: <%s>\r\n", m->msgid) < 0)
        return oom(err);
    if (put_xheaders(b, m) < 0 || mc__buf_puts(b, "\r\n") < 0)
        return oom(err);
    if (m->body_path) {
        uint64_t size;
        int rc = file_size(m->body_path, &size, "message", err);
        if (rc < 0)
            return rc;
        if (size < m->body_off)
            return mc__error_set(err, MC_EFILE, MC_OUTCOME_NOINPUT, MC_STAGE_MESSAGE,
                                 "message %s: changed since it was read", m->body_path);
        seg s = { .kind = SEG_FILE, .path = m->body_path, .foff = m->body_off,
                  .fsize = size - m->body_off };
        if (mem_cut(m) < 0 || (s.fsize && seg_push(m, s) < 0))
            return oom(err);
        m->mem_mark = b->len;
    } else if (m->raw_len > m->body_off) {
        seg s = { .kind = SEG_RAW, .off = m->body_off, .len = m->raw_len - m->body_off };
        if (mem_cut(m) < 0 || seg_push(m, s) < 0)
            return oom(err);
        m->mem_mark = b->len;
    }
    return 0;
}

static char *make_date(void)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t t = time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return NULL;
    long off = tm.tm_gmtoff;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    char *s = NULL;
    if (asprintf(&s, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, sign, off / 3600, (off % 3600) / 60) < 0)
        return NULL;
    return s;
}

static char *make_msgid(const char *domain)
{
    char hex[33];
    if (random_hex(hex, 16) < 0)
        return NULL;
    if (!domain || !*domain || !is_ascii(domain, strlen(domain)))
        domain = "localhost";
    char *s = NULL;
    if (asprintf(&s, "%s@%s", hex, domain) < 0)
        return NULL;
    return s;
}

typedef struct rcpt_ctx {
    mc_message              *m;
    const mc__msg_defaults  *d;
    const char              *alias_of;   /* while expanding an alias */
    mc_err               **err;
} rcpt_ctx;

static int rcpt_push(rcpt_ctx *c, const char *addr)
{
    mc_message *m = c->m;
    int rc = mc__address_check(addr, false, c->err);
    if (rc < 0)
        return rc;
    char *a = strdup(addr);
    if (!a)
        return oom(c->err);
    if (!c->d->case_sensitive)
        ascii_lower(a);
    for (size_t i = 0; i < m->p_n; i++) {
        if (strcmp(m->p_rcpts[i], a) == 0) {
            free(a);
            return 0;
        }
    }
    char **v = realloc(m->p_rcpts, (m->p_n + 1) * sizeof(*v));
    if (!v) {
        free(a);
        return oom(c->err);
    }
    m->p_rcpts = v;
    v[m->p_n++] = a;
    return 0;
}

static int alias_item(void *payload, const char *addr)
{
    rcpt_ctx *c = payload;
    if (!has_domain(addr))
        return mc__error_set(c->err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                             "alias of \"%s\": \"%s\" has no domain", c->alias_of, addr);
    return rcpt_push(c, addr);
}

static int rcpt_add(rcpt_ctx *c, const char *addr)
{
    if (has_domain(addr))
        return rcpt_push(c, addr);
    const mc__msg_defaults *d = c->d;
    const char *target = NULL;
    if (d->alias) {
        target = d->alias(d->alias_payload, addr);
        if (!target)
            target = d->alias(d->alias_payload, "default");
    }
    if (!target) {
        int rc = mc__error_set(c->err, MC_EMESSAGE, MC_OUTCOME_DATA, MC_STAGE_MESSAGE,
                               "recipient \"%s\" has no domain and no alias", addr);
        if (c->err)
            mc__error_hint(*c->err, "add it to \"aliases\" in the config");
        return rc;
    }
    c->alias_of = addr;
    int rc = mc__address_list(target, alias_item, c, c->err);
    c->alias_of = NULL;
    return rc;
}

int mc__message_prepare(mc_message *m, const mc__msg_defaults *d, mc_err **err)
{
    static const mc__msg_defaults none;
    CHECK_MSG(m);
    if (!d)
        d = &none;
    unprepare(m);
    const char *sa = d->sender_address && *d->sender_address && has_domain(d->sender_address)
                     ? d->sender_address : NULL;
    int rc;

    /* envelope sender: explicit, else sender.address, else From:; the null
     * sender stays null unless sender.override says otherwise */
    bool null_env = m->env_from && !*m->env_from && !(d->sender_override && sa);
    const char *env = m->env_from && *m->env_from ? m->env_from : sa ? sa : m->from_addr;
    if (null_env)
        env = "";
    if (!env) {
        rc = msg_error(err, "%s", "no sender address");
        if (err)
            mc__error_hint(*err, "set \"sender.address\" in the config, or give a From address");
        return rc;
    }
    if (!null_env && !has_domain(env)) {
        if (!sa) {
            rc = msg_error(err, "sender \"%s\" has no domain", env);
            if (err)
                mc__error_hint(*err, "set \"sender.address\" in the config");
            return rc;
        }
        env = sa;
    }
    if (d->sender_override && sa)
        env = sa;
    if (!null_env && (rc = mc__address_check(env, false, err)) < 0)
        return rc;
    if (!(m->p_env_from = strdup(env)))
        return oom(err);
    if (!d->case_sensitive)
        ascii_lower(m->p_env_from);

    /* From: header */
    const char *from_addr, *from_name = m->from_name;
    if (d->sender_override && sa)
        from_addr = sa;
    else if (m->from_addr)
        from_addr = has_domain(m->from_addr) ? m->from_addr : sa ? sa : env;
    else
        from_addr = sa ? sa : env;
    if (!*from_addr) {   /* the null sender, and nothing else to write in From: */
        rc = msg_error(err, "%s", "no sender address for the From: header");
        if (err)
            mc__error_hint(*err, "set \"sender.address\" in the config, or give a From address");
        return rc;
    }
    /* no name given: the configured one, also for an explicit From that is
     * sender.address itself */
    if (!from_name && (!m->from_addr || (m->from_set && sa && strcasecmp(m->from_addr, sa) == 0)))
        from_name = m->fallback_name ? m->fallback_name : d->sender_name;
    if (from_name && has_crlf(from_name))
        return msg_error(err, "sender name: %s", "line break refused");
    bool rewrite_from = m->from_set || !m->from_addr || strcmp(from_addr, m->from_addr) != 0;

    /* recipients: envelope ones replace those of the header */
    rcpt_ctx c = { m, d, NULL, err };
    if (m->env_rcpts.n) {
        for (size_t i = 0; i < m->env_rcpts.n; i++)
            if ((rc = rcpt_add(&c, m->env_rcpts.v[i])) < 0)
                return rc;
    } else {
        /* RFC 5322 3.6.6: a resent message goes to its Resent-* recipients */
        bool resent = m->rto.n || m->rcc.n || m->rbcc.n;
        const strvec *lists[] = { resent ? &m->rto : &m->to, resent ? &m->rcc : &m->cc,
                                  resent ? &m->rbcc : &m->bcc, &m->xrcpt };
        for (size_t l = 0; l < 4; l++)
            for (size_t i = 0; i < lists[l]->n; i++)
                if ((rc = rcpt_add(&c, lists[l]->v[i])) < 0)
                    return rc;
    }
    if (!m->p_n)
        return msg_error(err, "%s", "no recipients");

    bool utf8 = mc__address_utf8(m->p_env_from) || mc__address_utf8(from_addr);
    for (size_t i = 0; i < m->p_n; i++)
        utf8 = utf8 || mc__address_utf8(m->p_rcpts[i]);
    m->p_smtputf8 = utf8;

    if (!m->date && !(m->parsed && m->has_date) && !(m->date = make_date()))
        return oom(err);
    if (!m->msgid && !(m->parsed && m->has_msgid)) {
        const char *dom = d->domain ? d->domain : domain_of(from_addr);
        if (!dom)
            dom = domain_of(m->p_env_from);
        if (dom && dom[0] == '[')
            dom = NULL;
        if (!(m->msgid = make_msgid(dom)))
            return mc__error_set(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_MESSAGE,
                                 "random generator failed");
    }

    rc = m->parsed ? build_parsed(m, from_addr, from_name, rewrite_from, err)
                   : build_composed(m, from_addr, from_name, d->charset, err);
    if (rc == 0 && mem_cut(m) < 0)
        rc = oom(err);
    if (rc < 0) {
        unprepare(m);
        return rc;
    }
    m->prepared = true;
    return 0;
}

size_t mc_message_recipient_count(const mc_message *m)
{
    return m ? m->p_n : 0;
}

const char *mc_message_last_reply(const mc_message *m)
{
    return m ? m->last_reply : NULL;
}

int mc__message_set_reply(mc_message *m, const char *reply)
{
    if (!m)
        return MC_EINVAL;
    char *c = NULL;
    if (reply && !(c = strdup(reply)))
        return MC_ENOMEM;
    free(m->last_reply);
    m->last_reply = c;
    return 0;
}

const char *mc__message_envelope_from(const mc_message *m)
{
    return m ? m->p_env_from : NULL;
}

size_t mc__message_rcpt_count(const mc_message *m)
{
    return m ? m->p_n : 0;
}

const char *const *mc__message_rcpts(const mc_message *m)
{
    return m ? (const char *const *)m->p_rcpts : NULL;
}

/* The deferred part of the 8-bit scan of a parsed file: from scan_off to
 * the end, stopping at the first byte over 127. A file that cannot be read
 * is left as it is: sending it fails on that read with the file's error. */
static void scan_rest(mc_message *m)
{
    m->scan_pending = false;
    int fd = open(m->body_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char *chunk = malloc(RAW_CHUNK);
    off_t off = m->scan_off;
    while (chunk && !m->raw_8bit) {
        ssize_t r = pread(fd, chunk, RAW_CHUNK, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        m->raw_8bit = !is_ascii(chunk, (size_t)r);
        off += r;
    }
    free(chunk);
    close(fd);
}

bool mc__message_8bit(const mc_message *m)
{
    if (!m || !m->parsed)
        return false;
    if (m->scan_pending)
        scan_rest((mc_message *)m);   /* cached: the message is not shared */
    return m->raw_8bit;
}

bool mc__message_8bit_maybe(const mc_message *m)
{
    return m && m->parsed && (m->raw_8bit || m->scan_pending);
}

bool mc__message_smtputf8(const mc_message *m)
{
    return m && m->p_smtputf8;
}

uint64_t mc__message_size(const mc_message *m)
{
    return m && m->prepared ? m->size : 0;
}

/* ------------------------------------------------------------ writing */

typedef struct writer {
    mc__buf      stage;
    mc__sink_fn *sink;
    void        *payload;
    mc_err   **err;
} writer;

static int flush(writer *w)
{
    if (!w->stage.len)
        return 0;
    int rc = w->sink(w->payload, w->stage.data, w->stage.len, w->err);
    mc__buf_clear(&w->stage);
    return rc;
}

static int stage_put(writer *w, const char *p, size_t n)
{
    while (n) {
        if (w->stage.len == STAGE_CAP) {
            int rc = flush(w);
            if (rc)
                return rc;
        }
        size_t k = STAGE_CAP - w->stage.len;
        if (k > n)
            k = n;
        if (mc__buf_put(&w->stage, p, k) < 0)
            return oom(w->err);
        p += k;
        n -= k;
    }
    return 0;
}

static int changed(writer *w, const char *path)
{
    return mc__error_set(w->err, MC_EFILE, MC_OUTCOME_NOINPUT, MC_STAGE_MESSAGE,
                         "%s: changed while it was sent", path);
}

static int write_b64(writer *w, const seg *s, char *in)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(w->err, "attachment", s->path, errno);
    uint64_t left = s->fsize;
    int rc = 0;
    while (left && rc == 0) {
        size_t want = left < B64_CHUNK ? (size_t)left : B64_CHUNK;
        ssize_t got = read_full(fd, in, want);
        if (got < 0) {
            rc = file_error(w->err, "attachment", s->path, errno);
            break;
        }
        if ((size_t)got != want) {
            rc = changed(w, s->path);
            break;
        }
        size_t lines = (want + B64_LINE_IN - 1) / B64_LINE_IN;
        size_t out = 4 * ((want + 2) / 3) + 2 * lines;
        if (w->stage.len + out > STAGE_CAP && (rc = flush(w)) != 0)
            break;
        if (mc__buf_grow(&w->stage, out) < 0) {
            rc = oom(w->err);
            break;
        }
        unsigned char *o = (unsigned char *)w->stage.data + w->stage.len;
        for (size_t i = 0; i < want; i += B64_LINE_IN) {
            size_t k = want - i < B64_LINE_IN ? want - i : B64_LINE_IN;
            int e = EVP_EncodeBlock(o, (const unsigned char *)in + i, (int)k);
            o += e;
            *o++ = '\r';
            *o++ = '\n';
        }
        w->stage.len += out;
        w->stage.data[w->stage.len] = '\0';
        left -= want;
    }
    if (rc == 0) {
        char extra;
        ssize_t r = read(fd, &extra, 1);
        if (r > 0)
            rc = changed(w, s->path);
    }
    close(fd);
    return rc;
}

static int write_raw_file(writer *w, const seg *s)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(w->err, "message", s->path, errno);
    int rc = 0;
    if (lseek(fd, (off_t)s->foff, SEEK_SET) < 0)
        rc = file_error(w->err, "message", s->path, errno);
    uint64_t left = s->fsize;
    while (left && rc == 0) {
        if (w->stage.len >= STAGE_CAP && (rc = flush(w)) != 0)
            break;
        size_t room = STAGE_CAP - w->stage.len;
        size_t want = left < room ? (size_t)left : room;
        if (mc__buf_grow(&w->stage, want) < 0) {
            rc = oom(w->err);
            break;
        }
        ssize_t got = read_full(fd, w->stage.data + w->stage.len, want);
        if (got < 0) {
            rc = file_error(w->err, "message", s->path, errno);
            break;
        }
        if ((size_t)got != want) {
            rc = changed(w, s->path);
            break;
        }
        w->stage.len += want;
        w->stage.data[w->stage.len] = '\0';
        left -= want;
    }
    close(fd);
    return rc;
}

/* A text file through the text encoder (converted to s->charset first,
 * when there is one): exactly the bytes and the encoded size that prepare
 * counted, else the file changed. */
static int write_text_file(writer *w, const seg *s, char *in)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return file_error(w->err, "text file", s->path, errno);
    textenc st = TEXTENC_INIT(s->qp);
    conv cv = { .cd = (iconv_t)-1 };
    mc__buf cb = MC__BUF_INIT;
    uint64_t left = s->fsize, out = 0;
    int rc = s->charset ? conv_open(&cv, s->charset, s->path, w->err) : 0;
    while (rc == 0) {
        /* one byte more than expected is read to see the end */
        size_t want = left < TEXT_CHUNK ? (size_t)left + 1 : TEXT_CHUNK;
        ssize_t got = read_full(fd, in, want);
        if (got < 0) {
            rc = file_error(w->err, "text file", s->path, errno);
            break;
        }
        if ((uint64_t)got > left || (got == 0 && left)) {
            rc = changed(w, s->path);
            break;
        }
        const char *src = in;
        size_t sn = (size_t)got;
        if (s->charset) {
            mc__buf_clear(&cb);
            /* it converted when prepare read it: a failure now is a change */
            if (conv_run(&cv, in, (size_t)got, got == 0, &cb, NULL) < 0) {
                rc = changed(w, s->path);
                break;
            }
            src = cb.data ? cb.data : "";
            sn = cb.len;
        }
        for (size_t i = 0; i < sn || got == 0;) {
            size_t k = sn - i < TEXT_CHUNK ? sn - i : TEXT_CHUNK;
            if (w->stage.len + TEXTENC_MAX(k) > STAGE_CAP && (rc = flush(w)) != 0)
                break;
            if (mc__buf_grow(&w->stage, TEXTENC_MAX(k)) < 0) {
                rc = oom(w->err);
                break;
            }
            char *o = w->stage.data + w->stage.len;
            size_t n = k ? textenc_run(&st, src + i, k, o) : textenc_end(&st, o);
            w->stage.len += n;
            w->stage.data[w->stage.len] = '\0';
            out += n;
            if (!k)
                break;
            i += k;
        }
        left -= (uint64_t)got;
        if (got == 0)
            break;
    }
    if (rc == 0 && out != s->osize)
        rc = changed(w, s->path);
    conv_close(&cv);
    mc__buf_free(&cb);
    close(fd);
    return rc;
}

int mc__message_write(void *msg, mc__sink_fn *sink, void *sink_payload, mc_err **err)
{
    mc_message *m = msg;
    if (!m || !sink)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "no message or sink");
    if (!m->prepared)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_MESSAGE,
                             "message written before mc__message_prepare");
    writer w = { MC__BUF_INIT, sink, sink_payload, err };
    char *in = NULL;
    int rc = 0;
    if (mc__buf_grow(&w.stage, STAGE_CAP) < 0)
        return oom(err);
    for (size_t i = 0; i < m->n_segs && rc == 0; i++) {
        const seg *s = &m->segs[i];
        switch (s->kind) {
        case SEG_MEM:
            rc = stage_put(&w, m->mem.data + s->off, s->len);
            break;
        case SEG_RAW:
            rc = stage_put(&w, m->raw + s->off, s->len);
            break;
        case SEG_FILE:
            rc = write_raw_file(&w, s);
            break;
        case SEG_B64FILE:
            if (!in && !(in = malloc(B64_CHUNK))) {
                rc = oom(err);
                break;
            }
            rc = write_b64(&w, s, in);
            break;
        case SEG_TEXTFILE:
            if (!in && !(in = malloc(B64_CHUNK))) {
                rc = oom(err);
                break;
            }
            rc = write_text_file(&w, s, in);
            break;
        }
    }
    if (rc == 0)
        rc = flush(&w);
    free(in);
    mc__buf_free(&w.stage);
    return rc;
}
