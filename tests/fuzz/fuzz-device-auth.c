/* fuzz-device-auth: the device authorization endpoint's answer (RFC 8628
 * 3.2, mc__oauth_device_parse). An accepted answer has its three strings
 * (without a NUL cut short), an interval of 1 .. 60 s and an expires_in of
 * 1 s .. 1 year whatever was sent (numbers, numeric strings, huge values),
 * so the polling loop's sums cannot overflow; a refused one is one error
 * line of stage oauth. */
#include <string.h>

#include "fuzz.h"
#include "oauth-host.h"
#include "oauth.h"

#define DEVICE_FUZZ_MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > DEVICE_FUZZ_MAX)
        return 0;
    fuzz_oauth_host();
    mc__oauth_device d;
    memset(&d, 0x5a, sizeof d);
    mc_err *err = NULL;
    int rc = mc__oauth_device_parse("https://login.example.com/devicecode", (const char *)data,
                                    size, &d, &err);
    if (rc == 0) {
        FUZZ_CHECK(!err);
        FUZZ_CHECK(d.device_code && *d.device_code && d.user_code && d.verification_uri);
        FUZZ_CHECK(d.interval >= 1 && d.interval <= MC__OAUTH_INTERVAL_MAX);
        FUZZ_CHECK(d.expires_in >= 1 && d.expires_in <= MC__OAUTH_EXPIRES_MAX);
        /* what flow_device computes from them */
        long long wake = mc__oauth_mono_ms() + d.interval * 1000;
        long long deadline = mc__oauth_mono_ms() + d.expires_in * 1000;
        FUZZ_CHECK(wake > 0 && deadline > 0);
    } else {
        FUZZ_CHECK(rc == MC_EOAUTH || rc == MC_ENOMEM);
        FUZZ_CHECK(err && err->code == rc && err->message && err->stage == MC_STAGE_OAUTH);
        FUZZ_CHECK(!strpbrk(err->message, "\r\n"));
        FUZZ_CHECK(!d.device_code && !d.user_code && !d.verification_uri && !d.message);
    }
    mc__oauth_device_clear(&d);
    fuzz_oauth_error_free(err);
    return 0;
}
