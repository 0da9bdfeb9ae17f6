/* sasl: the SASL encodings (PLAIN, XOAUTH2, OAUTHBEARER), the XOAUTH2 /
 * OAUTHBEARER failure challenge, and the choice of a mechanism. The AUTH
 * dialogue itself lives in smtp.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json_object.h>   /* never json.h: its debug.h declares a function mc_error */
#include <json-c/json_tokener.h>

#include "sasl.h"

/* base64 of a secret scratch buffer into out (marked secret); the scratch
 * buffer is wiped and released. */
static int encode_secret(mc__buf *out, mc__buf *raw)
{
    out->secret = true;
    int rc = raw->data ? mc__base64_encode(out, raw->data, raw->len) : MC_ENOMEM;
    mc__buf_free(raw);
    return rc;
}

int mc__sasl_plain(mc__buf *out, const char *user, const char *password)
{
    if (!out || !user || !password)
        return MC_EINVAL;
    mc__buf raw = MC__BUF_INIT;
    raw.secret = true;
    if (mc__buf_put(&raw, "", 1) < 0 || mc__buf_puts(&raw, user) < 0
        || mc__buf_put(&raw, "", 1) < 0 || mc__buf_puts(&raw, password) < 0) {
        mc__buf_free(&raw);
        return MC_ENOMEM;
    }
    return encode_secret(out, &raw);
}

int mc__sasl_xoauth2(mc__buf *out, const char *user, const char *token)
{
    if (!out || !user || !token)
        return MC_EINVAL;
    mc__buf raw = MC__BUF_INIT;
    raw.secret = true;
    if (mc__buf_printf(&raw, "user=%s\x01" "auth=Bearer %s\x01\x01", user, token) < 0) {
        mc__buf_free(&raw);
        return MC_ENOMEM;
    }
    return encode_secret(out, &raw);
}

int mc__sasl_oauthbearer(mc__buf *out, const char *user, const char *host, unsigned port,
                         const char *token)
{
    if (!out || !user || !host || !token)
        return MC_EINVAL;
    mc__buf raw = MC__BUF_INIT;
    raw.secret = true;
    int rc = mc__buf_puts(&raw, "n,a=");
    /* RFC 5801 saslname: ',' and '=' are escaped */
    for (const char *p = user; rc == 0 && *p; p++) {
        if (*p == ',')
            rc = mc__buf_puts(&raw, "=2C");
        else if (*p == '=')
            rc = mc__buf_puts(&raw, "=3D");
        else
            rc = mc__buf_put(&raw, p, 1);
    }
    if (rc == 0)
        rc = mc__buf_printf(&raw, ",\x01host=%s\x01port=%u\x01" "auth=Bearer %s\x01\x01",
                            host, port, token);
    if (rc < 0) {
        mc__buf_free(&raw);
        return MC_ENOMEM;
    }
    return encode_secret(out, &raw);
}

/* A member as a string: JSON strings as they are, numbers as their text
 * (some servers send "status":401). Anything else: NULL. */
static int member_string(json_object *obj, const char *key, char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v)
        return 0;
    if (json_object_is_type(v, json_type_string)) {
        *out = strdup(json_object_get_string(v));
    } else if (json_object_is_type(v, json_type_int)) {
        if (asprintf(out, "%lld", (long long)json_object_get_int64(v)) < 0)
            *out = NULL;
    } else {
        return 0;
    }
    return *out ? 0 : MC_ENOMEM;
}

int mc__sasl_parse_failure(const char *b64, mc__sasl_failure *out)
{
    if (!out)
        return MC_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!b64)
        return MC_EPROTO;
    size_t len = strlen(b64);
    while (len && (b64[len - 1] == ' ' || b64[len - 1] == '\r' || b64[len - 1] == '\n'))
        len--;
    mc__buf json = MC__BUF_INIT;
    int rc = mc__base64_decode(&json, b64, len);
    if (rc < 0 || !json.data || json.len == 0 || json.len > INT32_MAX
        || memchr(json.data, '\0', json.len)) {
        mc__buf_free(&json);
        return rc == MC_ENOMEM ? MC_ENOMEM : MC_EPROTO;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        mc__buf_free(&json);
        return MC_ENOMEM;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, json.data, (int)json.len);
    bool whole = obj && json_tokener_get_error(tok) == json_tokener_success
                 && json_tokener_get_parse_end(tok) == json.len;
    json_tokener_free(tok);
    mc__buf_free(&json);
    if (!whole || !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return MC_EPROTO;
    }
    rc = member_string(obj, "status", &out->status);
    if (rc == 0)
        rc = member_string(obj, "scope", &out->scope);
    if (rc == 0)
        rc = member_string(obj, "schemes", &out->schemes);
    json_object_put(obj);
    if (rc < 0)
        mc__sasl_failure_free(out);
    return rc;
}

void mc__sasl_failure_free(mc__sasl_failure *f)
{
    if (!f)
        return;
    free(f->status);
    free(f->scope);
    free(f->schemes);
    memset(f, 0, sizeof(*f));
}

/* Is `mech` one of the space-separated words of `offered` (any case)? */
static bool offers(const char *offered, const char *mech)
{
    size_t n = strlen(mech);
    if (!offered || n == 0)
        return false;
    const char *p = offered;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - w) == n && strncasecmp(w, mech, n) == 0)
            return true;
    }
    return false;
}

const char *mc__sasl_choose(const char *const *prefs, const char *offered, const char *forced)
{
    if (forced) {
        if (!offers(offered, forced))
            return NULL;
        if (!prefs)
            return forced;
        /* the provider must be able to feed it: return its own spelling */
        for (size_t i = 0; prefs[i]; i++)
            if (strcasecmp(prefs[i], forced) == 0)
                return prefs[i];
        return NULL;
    }
    if (!prefs)
        return NULL;
    for (size_t i = 0; prefs[i]; i++)
        if (offers(offered, prefs[i]))
            return prefs[i];
    return NULL;
}
