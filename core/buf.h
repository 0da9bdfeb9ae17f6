/* buf: a growable byte buffer, always NUL-terminated (core-internal). */
#ifndef MC_CORE_BUF_H
#define MC_CORE_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include "error.h"

typedef struct mc__buf {
    char  *data;     /* NULL until the first append; NUL-terminated after */
    size_t len;
    size_t cap;
    bool   secret;   /* wiped on growth and on free */
} mc__buf;

#define MC__BUF_INIT { NULL, 0, 0, false }

int  mc__buf_grow(mc__buf *b, size_t extra);                /* 0 or MC_ENOMEM */
int  mc__buf_put(mc__buf *b, const void *p, size_t n);
int  mc__buf_puts(mc__buf *b, const char *s);
int  mc__buf_printf(mc__buf *b, const char *fmt, ...) MC__FMT(2, 3);
void mc__buf_consume(mc__buf *b, size_t n);                 /* drop n bytes from the front */
void mc__buf_clear(mc__buf *b);                             /* len = 0, keep memory */
char *mc__buf_detach(mc__buf *b);                           /* caller frees; never NULL unless OOM */
void mc__buf_free(mc__buf *b);



/** A byte sink: accept len bytes. @return 0 or a negative MC_E* with *err set. */
typedef int mc__sink_fn(void *payload, const void *data, size_t len, mc_err **err);

/* base64 (OpenSSL EVP underneath) */
int mc__base64_encode(mc__buf *out, const void *data, size_t len);
/** Strict decode (whitespace not allowed). @return 0, MC_EPROTO on bad input, MC_ENOMEM. */
int mc__base64_decode(mc__buf *out, const char *b64, size_t len);
/** Length of the valid UTF-8 sequence at s (at most n bytes available): 1
 *  for ASCII, 0 when invalid (RFC 3629: overlong forms, surrogates, values
 *  past U+10FFFF and truncated sequences refused). */
size_t mc__utf8_seq(const unsigned char *s, size_t n);

#endif
