/* fuzz-address: the address checks of command-line and header input
 * (mc__address_check, mc__address_extract, mc__address_list). The first
 * byte's low bit is allow_bare; the rest is the text. */
#include <string.h>

#include "fuzz.h"
#include "message.h"

#define ADDRESS_INPUT_MAX (16 * 1024)

/* An error is well formed: the code returned, one line (messages quote the
 * input, and go to logs and terminals). */
static void check_err(int rc, mc_err *err)
{
    FUZZ_CHECK(rc == MC_EMESSAGE);
    FUZZ_CHECK(err && err->code == rc && err->message);
    FUZZ_CHECK(!strpbrk(err->message, "\r\n"));
}

static int each(void *payload, const char *addr)
{
    size_t *n = payload;
    FUZZ_CHECK(addr != NULL);
    mc_err *err = NULL;
    FUZZ_CHECK(mc__address_check(addr, true, &err) == 0 && !err);
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > ADDRESS_INPUT_MAX)
        return 0;
    bool allow_bare = data[0] & 1;
    char *s = fuzz_cstr(data + 1, size - 1);
    if (!s)
        return 0;

    mc_err *err = NULL;
    int rc = mc__address_check(s, allow_bare, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err);
        FUZZ_CHECK(strlen(s) <= 254 && !strpbrk(s, "\r\n<>"));
        FUZZ_CHECK(allow_bare || strchr(s, '@'));
        FUZZ_CHECK(mc__address_check(s, true, NULL) == 0);
    } else {
        check_err(rc, err);
    }
    mc_error_free(err);

    /* extract: its result is a valid address, and extracting it again
     * gives it back unchanged */
    err = NULL;
    char *a = NULL;
    rc = mc__address_extract(s, &a, &err);
    if (rc == 0) {
        FUZZ_CHECK(a && !err);
        FUZZ_CHECK(mc__address_check(a, true, NULL) == 0);
        char *again = NULL;
        FUZZ_CHECK(mc__address_extract(a, &again, NULL) == 0);
        FUZZ_CHECK(again && !strcmp(a, again));
        free(again);
        free(a);
    } else {
        FUZZ_CHECK(!a);
        check_err(rc, err);
    }
    mc_error_free(err);

    err = NULL;
    size_t n = 0;
    rc = mc__address_list(s, each, &n, &err);
    if (rc != 0)
        check_err(rc, err);
    else
        FUZZ_CHECK(!err);
    mc_error_free(err);
    free(s);
    return 0;
}
