/* fuzz-reply: the incremental SMTP reply parser (mc__reply_feed). The
 * input, after its first byte, is fed in fragments whose size comes from
 * that byte (hiredis), the way bytes arrive from a socket; the replies and
 * the error must be exactly those of feeding the same bytes in one piece. */
#include <string.h>

#include "fuzz.h"
#include "smtp.h"

#define REPLY_INPUT_MAX (64 * 1024)
#define REPLIES_MAX 64

typedef struct outcome {
    size_t n;                 /* complete replies */
    int    codes[REPLIES_MAX];
    char  *texts[REPLIES_MAX];
    int    error;             /* 0 or the error that ended the stream */
} outcome;

static void check_reply(const mc__reply *r)
{
    FUZZ_CHECK(r->code >= 200 && r->code <= 599);
    FUZZ_CHECK(strlen(r->enhanced) < sizeof r->enhanced);
    if (r->enhanced[0])
        FUZZ_CHECK(r->text.data && !strncmp(r->text.data, r->enhanced, strlen(r->enhanced)));
    FUZZ_CHECK(r->text.len == 0 || (r->text.data && r->text.data[r->text.len] == '\0'));
}

/* Feed data[0..size) in pieces of `step` bytes, as read_reply does: each
 * piece is appended to what is still unparsed, and fed until it yields no
 * more complete replies. */
static void run(const uint8_t *data, size_t size, size_t step, outcome *o)
{
    mc__reply_parser p;
    memset(&p, 0, sizeof p);
    mc__reply r;
    memset(&r, 0, sizeof r);
    mc__buf in = MC__BUF_INIT;
    memset(o, 0, sizeof *o);
    size_t off = 0;
    while (off < size && !o->error) {
        size_t n = size - off < step ? size - off : step;
        FUZZ_CHECK(mc__buf_put(&in, data + off, n) == 0);
        off += n;
        while (in.len && !o->error) {
            size_t used = (size_t)-1;
            int rc = mc__reply_feed(&p, in.data, in.len, &used, &r);
            FUZZ_CHECK(used <= in.len);
            mc__buf_consume(&in, used);
            if (rc < 0) {
                FUZZ_CHECK(rc == MC_EPROTO);
                o->error = rc;
            } else if (rc == 1) {
                check_reply(&r);
                if (o->n < REPLIES_MAX) {
                    o->codes[o->n] = r.code;
                    o->texts[o->n] = strdup(r.text.data ? r.text.data : "");
                    FUZZ_CHECK(o->texts[o->n] != NULL);
                }
                o->n++;
            } else {
                FUZZ_CHECK(rc == 0 && in.len == 0);   /* all consumed */
                break;
            }
        }
    }
    mc__buf_free(&in);
    mc__reply_parser_free(&p);
    mc__reply_free(&r);
}

static void outcome_free(outcome *o)
{
    for (size_t i = 0; i < o->n && i < REPLIES_MAX; i++)
        free(o->texts[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > REPLY_INPUT_MAX)
        return 0;
    size_t step;
    fuzz_split(&data, &size, &step);
    outcome whole, pieces;
    run(data, size, size ? size : 1, &whole);
    run(data, size, step, &pieces);
    FUZZ_CHECK(whole.n == pieces.n);
    FUZZ_CHECK(whole.error == pieces.error);
    for (size_t i = 0; i < whole.n && i < REPLIES_MAX; i++) {
        FUZZ_CHECK(whole.codes[i] == pieces.codes[i]);
        FUZZ_CHECK(strcmp(whole.texts[i], pieces.texts[i]) == 0);
    }
    outcome_free(&whole);
    outcome_free(&pieces);
    return 0;
}
