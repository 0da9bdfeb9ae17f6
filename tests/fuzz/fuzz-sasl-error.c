/* fuzz-sasl-error: the XOAUTH2 / OAUTHBEARER failure challenge parser
 * (mc__sasl_parse_failure: base64 of a JSON object with status, scope,
 * schemes). The first byte picks the shape: even, the rest is the 334
 * text as the server sent it; odd, the rest is the JSON, base64-encoded
 * here, so the JSON parser is reached at every mutation. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "sasl.h"

#define CHALLENGE_MAX (32 * 1024)

static void check(const char *b64)
{
    mc__sasl_failure f;
    memset(&f, 0x5a, sizeof f);   /* the parser must clear it */
    int rc = mc__sasl_parse_failure(b64, &f);
    FUZZ_CHECK(rc == 0 || rc == MC_EPROTO);
    if (rc != 0) {
        FUZZ_CHECK(!f.status && !f.scope && !f.schemes);
        return;
    }
    /* the members are printed into an error message: plain C strings */
    if (f.status)
        FUZZ_CHECK(strlen(f.status) < CHALLENGE_MAX);
    if (f.scope)
        FUZZ_CHECK(strlen(f.scope) < CHALLENGE_MAX);
    if (f.schemes)
        FUZZ_CHECK(strlen(f.schemes) < CHALLENGE_MAX);
    mc__sasl_failure_free(&f);
    FUZZ_CHECK(!f.status && !f.scope && !f.schemes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > CHALLENGE_MAX)
        return 0;
    bool encode = data[0] & 1;
    data++;
    size--;
    if (!encode) {
        char *text = fuzz_cstr(data, size);
        if (text)
            check(text);
        free(text);
        return 0;
    }
    mc__buf b64 = MC__BUF_INIT;
    FUZZ_CHECK(mc__base64_encode(&b64, data, size) == 0);
    if (b64.data)
        check(b64.data);
    mc__buf_free(&b64);
    return 0;
}
