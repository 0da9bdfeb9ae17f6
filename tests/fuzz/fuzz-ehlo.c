/* fuzz-ehlo: the EHLO capability parser (mc__smtp_parse_caps) over reply
 * text as the reply parser hands it on (lines joined by '\n'), and the
 * SASL mechanism choice made from what it found. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sasl.h"
#include "smtp.h"

#define EHLO_MAX (64 * 1024)

/* Is w one of the space-separated words of list? */
static bool has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, " ");
        if (m == n && !memcmp(p, w, n))
            return true;
        p += m;
        while (*p == ' ')
            p++;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > EHLO_MAX)
        return 0;
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    mc__smtp_caps caps;
    memset(&caps, 0x5a, sizeof caps);   /* the parser must set every member */
    mc__smtp_parse_caps(text, &caps);
    FUZZ_CHECK(caps.esmtp);
    size_t n = strnlen(caps.auth_mechs, sizeof caps.auth_mechs);
    FUZZ_CHECK(n < sizeof caps.auth_mechs);
    FUZZ_CHECK(n == 0 || caps.auth);
    /* upper-case mechanism names, one space between, none twice */
    const char *p = caps.auth_mechs;
    while (*p) {
        size_t w = strcspn(p, " ");
        FUZZ_CHECK(w > 0 && w <= 40);
        for (size_t i = 0; i < w; i++)
            FUZZ_CHECK(isupper((unsigned char)p[i]) || isdigit((unsigned char)p[i]) ||
                       p[i] == '-' || p[i] == '_');
        const char *q = p + w;
        while (*q) {
            q++;
            size_t v = strcspn(q, " ");
            FUZZ_CHECK(!(v == w && !memcmp(p, q, w)));
            q += v;
        }
        p += w;
        if (*p) {
            p++;
            FUZZ_CHECK(*p && *p != ' ');
        }
    }
    static const char *const prefs[] = { "XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN", NULL };
    const char *m = mc__sasl_choose(prefs, caps.auth_mechs, NULL);
    FUZZ_CHECK(!m || has_word(caps.auth_mechs, m));
    const char *f = mc__sasl_choose(prefs, caps.auth_mechs, "plain");
    FUZZ_CHECK(!f || !strcmp(f, "PLAIN"));

    /* the same text without its first line is only the greeting line moved:
     * a capability never comes from the first line */
    mc__smtp_caps first;
    const char *nl = strchr(text, '\n');
    size_t line1 = nl ? (size_t)(nl - text) : size;
    char *only = fuzz_cstr((const uint8_t *)text, line1);
    if (only) {
        mc__smtp_parse_caps(only, &first);
        FUZZ_CHECK(!first.starttls && !first.auth && !first.pipelining && first.size == 0 &&
                   first.auth_mechs[0] == '\0');
        free(only);
    }
    free(text);
    return 0;
}
