/* fuzz-header: the header parser of `-t` / `sendmail` input
 * (mc__header_parse), and mc_message_parse and the lenient
 * mc__message_parse_sendmail with what follows them for such input:
 * mc__message_prepare for a server and mc__message_write. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "message.h"

#define MESSAGE_INPUT_MAX (64 * 1024)

typedef struct seen {
    size_t headers;
} seen;

static int on_header(void *payload, const char *name, const char *value)
{
    seen *s = payload;
    FUZZ_CHECK(name && value && *name);
    for (const char *c = name; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 33 && (unsigned char)*c <= 126 && *c != ':');
    /* unfolded: no line break survives into a value */
    FUZZ_CHECK(!strpbrk(value, "\r\n"));
    s->headers++;
    return 0;
}

static int sink(void *payload, const void *data, size_t len, mc_err **err)
{
    (void)err;
    mc__buf *out = payload;
    FUZZ_CHECK(mc__buf_put(out, data, len) == 0);
    return 0;
}

/* The header block that goes to the server: CRLF line ends only, and no
 * Bcc header (blind copies stay blind). */
static void check_written(const char *w, size_t n)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < n; i++)
        if (!memcmp(w + i, "\r\n\r\n", 4)) {
            end = w + i + 2;
            break;
        }
    FUZZ_CHECK(end != NULL);
    size_t hn = (size_t)(end - w);
    for (size_t i = 0; i < hn; i++) {
        if (w[i] == '\n')
            FUZZ_CHECK(i > 0 && w[i - 1] == '\r');
        if (w[i] == '\r')
            FUZZ_CHECK(i + 1 < hn && w[i + 1] == '\n');
        if (i == 0 || w[i - 1] == '\n')
            FUZZ_CHECK(strncasecmp(w + i, "Bcc:", 4) != 0 &&
                       strncasecmp(w + i, "Bcc ", 4) != 0);
    }
}

/* Prepare a parsed message for a server and write it: the envelope is
 * clean, the size announced is the size written, the header block CRLF. */
static void prepare_and_write(mc_message *m)
{
    mc_err *err = NULL;
    mc__msg_defaults d = {
        .sender_address = "sender@example.com",
        .sender_name = "Sender",
        .domain = "example.com",
    };
    int rc = mc__message_prepare(m, &d, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err && mc__message_envelope_from(m));
        FUZZ_CHECK(mc__address_check(mc__message_envelope_from(m), false, NULL) == 0);
        const char *const *rcpts = mc__message_rcpts(m);
        for (size_t i = 0; i < mc__message_rcpt_count(m); i++)
            FUZZ_CHECK(rcpts[i] && !strpbrk(rcpts[i], "\r\n<>"));
        mc__buf out = MC__BUF_INIT;
        rc = mc__message_write(m, sink, &out, &err);
        FUZZ_CHECK(rc == 0 && !err);
        /* the size announced with SIZE= is the size written */
        FUZZ_CHECK(out.len == mc__message_size(m));
        check_written(out.data ? out.data : "", out.len);
        mc__buf_free(&out);
    } else {
        FUZZ_CHECK(err && err->code == rc && err->message);
    }
    mc_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MESSAGE_INPUT_MAX)
        return 0;
    const char *text = (const char *)data;

    seen s = { 0 };
    size_t body_off = (size_t)-1;
    mc_err *err = NULL;

    /* sendmail's reading never refuses more than the strict one */
    mc_message *sm = NULL;
    int src = mc__message_parse_sendmail(&sm, text, size, &err);
    if (src == 0) {
        FUZZ_CHECK(sm && !err);
        /* a recipient, as sendmail's command line gives one */
        FUZZ_CHECK(mc_message_add_envelope_recipient(sm, "to@example.com", NULL) == 0);
        prepare_and_write(sm);
        mc_message_free(sm);
    } else {
        FUZZ_CHECK(!sm && err && err->code == src && err->message);
        mc_error_free(err);
        err = NULL;
    }

    int rc = mc__header_parse(text, size, on_header, &s, &body_off, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err && body_off <= size);
    } else {
        FUZZ_CHECK(rc == MC_EMESSAGE && err && err->code == rc && err->message);
        FUZZ_CHECK(!strpbrk(err->message, "\r\n"));
    }
    mc_error_free(err);

    err = NULL;
    mc_message *m = NULL;
    int mrc = mc_message_parse(&m, text, size, &err);
    if (mrc != 0) {
        FUZZ_CHECK(!m && err && err->code == mrc && err->message);
        FUZZ_CHECK(!strpbrk(err->message, "\r\n"));
        /* what the header parser refuses, the message parser refuses */
        mc_error_free(err);
        return 0;
    }
    FUZZ_CHECK(rc == 0 && m && !err);
    /* what the strict parser takes, sendmail's reading takes too */
    FUZZ_CHECK(src == 0);
    prepare_and_write(m);
    mc_message_free(m);
    return 0;
}
