/* fuzz-config: the config parser (mc__config_parse: strict JSON, shape,
 * types, ranges, names, the default rule) over arbitrary bytes. */
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define CONFIG_MAX (64 * 1024)   /* a real config is a few kB */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > CONFIG_MAX)
        return 0;
    mc__config *cfg = NULL;
    mc_err *err = NULL;
    int rc = mc__config_parse(&cfg, (const char *)data, size, &err);
    if (rc == 0) {
        FUZZ_CHECK(cfg != NULL && err == NULL);
        size_t defaults = 0;
        for (size_t i = 0; i < cfg->n_servers; i++) {
            const mc_server *s = &cfg->servers[i];
            FUZZ_CHECK(s->name != NULL && s->index == i);
            FUZZ_CHECK(mc__config_server(cfg, s->name) == s);   /* names are unique */
            if (s->is_default)
                defaults++;
        }
        FUZZ_CHECK(defaults <= 1);
        FUZZ_CHECK(mc__config_server(cfg, NULL) == cfg->def);
        for (size_t i = 0; i < cfg->n_aliases; i++)
            FUZZ_CHECK(cfg->aliases[i].name && cfg->aliases[i].address);
    } else {
        FUZZ_CHECK(cfg == NULL);
        FUZZ_CHECK(rc < 0 && err != NULL && err->code == rc && err->message != NULL);
        FUZZ_CHECK(!strchr(err->message, '\n'));   /* one line (STYLE.md section 4) */
        for (size_t i = 0; i < err->n_details; i++)
            FUZZ_CHECK(err->details[i] != NULL && !strchr(err->details[i], '\n'));
    }
    mc__config_free(cfg);
    mc_error_free(err);
    return 0;
}
