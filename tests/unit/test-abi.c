/* test-abi: freeze the plugin ABI.
 *
 * Every number below is what include/mailconn/plugin.h (and the parts of
 * mailconn.h that cross the plugin boundary: mc_err, mc_rcpt_result, the
 * codes, outcomes, stages and log levels) compile to on x86_64 today. A
 * change to any of them breaks every plugin built before it: moving,
 * removing or resizing a member needs MC_PLUGIN_ABI_MAJOR bumped (and this
 * table updated with it); appending to an ops table needs the minor bumped.
 * Result records (mc_err, mc_rcpt_result) only grow at the end, so only a
 * lower bound is kept for their size.
 *
 * 1.1 appended mc_stream_ops.set_read_deadline and mc_connect_opts.deadline_ms
 * (the 1.0 members are where they were; see test_minor_growth).
 *
 * 2.0: every transport, auth and engine op and the host's log, redact,
 * secret and tcp_connect take the context (mc_host_ctx *) first; mc_stream
 * gained hc; mc_host_api gained state_dir and token_store; the engine ops
 * gained begin, finish, device_begin and device_wait; the authorize options,
 * the token status and the device authorization are the public structs of
 * mailconn.h (mc_oauth_authorize_options, mc_token_status, mc_oauth_device),
 * frozen here with mc_token_store_ops and mc_token_identity, which reach the
 * engine through host->token_store.
 *
 * 2.1 appended: mc_plugin_desc.init/fini (read when abi_minor >= 1),
 * mc_transport_ops.keys/validate/security, mc_connect_opts.options/proxy,
 * mc_host_api.tls_client/tls_upgrade/cfg_bool; new kinds proxy (mc_proxy_ops,
 * mc_proxy_auth), token-store (mc_store_plugin_ops, with describe) and
 * tls-engine; stage proxy; mc_oauth_engine_ops.store_copy. The 2.0 members
 * are where they were (test_minor_growth).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <cmocka.h>

#include "mailconn/plugin.h"

typedef struct abi_num {
    const char *what;
    long long   actual;
    long long   frozen;
    bool        at_least;   /* actual may exceed frozen */
} abi_num;

#define SIZE(T, size, align)                                                  \
    { "sizeof(" #T ")", (long long)sizeof(T), size, false },                  \
    { "_Alignof(" #T ")", (long long)_Alignof(T), align, false }
#define SIZE_MIN(T, size, align)                                              \
    { "sizeof(" #T ")", (long long)sizeof(T), size, true },                   \
    { "_Alignof(" #T ")", (long long)_Alignof(T), align, false }
#define MEMBER(T, m, off, size)                                               \
    { "offsetof(" #T ", " #m ")", (long long)offsetof(T, m), off, false },    \
    { "sizeof(" #T "." #m ")", (long long)sizeof(((T *)0)->m), size, false }
#define CONST(name, value) { #name, (long long)(name), value, false }

static const abi_num struct_sizes[] = {
    SIZE(mc_stream_ops, 40, 8),
    SIZE(mc_stream, 104, 8),
    SIZE(mc_connect_opts, 64, 8),                /* 2.1: options, proxy */
    SIZE(mc_transport_ops, 64, 8),               /* 2.1: keys, validate, security, security_of */
    SIZE(mc_transport_security, 4, 4),
    SIZE(mc_proxy_auth, 16, 8),                  /* 2.1 */
    SIZE(mc_proxy_ops, 40, 8),                   /* 2.1 */
    SIZE(mc_store_plugin_ops, 56, 8),            /* 2.1 */
    SIZE(mc_credentials, 16, 8),
    SIZE(mc_hint, 16, 8),
    SIZE(mc_oauth_profile, 9264, 8),
    SIZE(mc_auth_ops, 80, 8),
    SIZE(mc_oauth_request, 112, 8),   /* 2.1 appended proxy */
    SIZE(mc_oauth_authorize_options, 56, 8),
    SIZE_MIN(mc_token_status, 392, 8),   /* versioned: only appended to */
    SIZE(mc_oauth_device, 40, 8),
    SIZE(mc_oauth_engine_ops, 96, 8),
    SIZE(mc_token_store_ops, 64, 8),
    SIZE(mc_token_identity, 40, 8),
    SIZE(mc_host_api, 184, 8),                   /* 2.1: tls_client, tls_upgrade, cfg_bool */
    SIZE(mc_plugin_desc, 56, 8),                 /* 2.1: init, fini */
    SIZE_MIN(mc_err, 120, 8),
    SIZE_MIN(mc_rcpt_result, 40, 8),
};

static const abi_num struct_members[] = {
    MEMBER(mc_stream_ops, size, 0, 8),
    MEMBER(mc_stream_ops, read, 8, 8),
    MEMBER(mc_stream_ops, write, 16, 8),
    MEMBER(mc_stream_ops, close, 24, 8),
    MEMBER(mc_stream_ops, set_read_deadline, 32, 8),     /* 1.1 */
    MEMBER(mc_stream, ops, 0, 8),
    MEMBER(mc_stream, encrypted, 8, 1),
    MEMBER(mc_stream, peer_verified, 9, 1),
    MEMBER(mc_stream, tls_version, 10, 16),
    MEMBER(mc_stream, tls_cipher, 26, 64),
    MEMBER(mc_stream, hc, 96, 8),                        /* 2.0 */
    MEMBER(mc_connect_opts, size, 0, 8),
    MEMBER(mc_connect_opts, host, 8, 8),
    MEMBER(mc_connect_opts, port, 16, 2),
    MEMBER(mc_connect_opts, timeout_ms, 20, 4),
    MEMBER(mc_connect_opts, ca_file, 24, 8),
    MEMBER(mc_connect_opts, tls_min, 32, 4),
    MEMBER(mc_connect_opts, deadline_ms, 40, 8),         /* 1.1 */
    MEMBER(mc_connect_opts, options, 48, 8),             /* 2.1 */
    MEMBER(mc_connect_opts, proxy, 56, 8),
    MEMBER(mc_transport_ops, size, 0, 8),
    MEMBER(mc_transport_ops, default_port, 8, 2),
    MEMBER(mc_transport_ops, connect, 16, 8),
    MEMBER(mc_transport_ops, starttls, 24, 8),
    MEMBER(mc_transport_ops, keys, 32, 8),               /* 2.1 */
    MEMBER(mc_transport_ops, validate, 40, 8),
    MEMBER(mc_transport_ops, security, 48, 4),
    MEMBER(mc_transport_ops, security_of, 56, 8),
    MEMBER(mc_proxy_auth, user, 0, 8),                   /* 2.1 */
    MEMBER(mc_proxy_auth, password, 8, 8),
    MEMBER(mc_proxy_ops, size, 0, 8),
    MEMBER(mc_proxy_ops, default_port, 8, 2),
    MEMBER(mc_proxy_ops, keys, 16, 8),
    MEMBER(mc_proxy_ops, validate, 24, 8),
    MEMBER(mc_proxy_ops, tunnel, 32, 8),
    MEMBER(mc_store_plugin_ops, size, 0, 8),             /* 2.1 */
    MEMBER(mc_store_plugin_ops, keys, 8, 8),
    MEMBER(mc_store_plugin_ops, validate, 16, 8),
    MEMBER(mc_store_plugin_ops, open, 24, 8),
    MEMBER(mc_store_plugin_ops, close, 32, 8),
    MEMBER(mc_store_plugin_ops, ops, 40, 8),
    MEMBER(mc_store_plugin_ops, describe, 48, 8),
    MEMBER(mc_credentials, user, 0, 8),
    MEMBER(mc_credentials, password, 8, 8),
    MEMBER(mc_hint, match, 0, 8),
    MEMBER(mc_hint, hint, 8, 8),
    MEMBER(mc_oauth_profile, size, 0, 8),
    MEMBER(mc_oauth_profile, authorization_url, 8, 2048),
    MEMBER(mc_oauth_profile, token_url, 2056, 2048),
    MEMBER(mc_oauth_profile, device_authorization_url, 4104, 2048),
    MEMBER(mc_oauth_profile, revocation_url, 6152, 2048),
    MEMBER(mc_oauth_profile, scope, 8200, 1024),
    MEMBER(mc_oauth_profile, params, 9224, 8),
    MEMBER(mc_oauth_profile, flows, 9232, 4),
    MEMBER(mc_oauth_profile, default_headless, 9236, 4),
    MEMBER(mc_oauth_profile, rotates_refresh, 9240, 1),
    MEMBER(mc_oauth_profile, refresh_lifetime_days, 9244, 4),
    MEMBER(mc_oauth_profile, hints, 9248, 8),
    MEMBER(mc_oauth_profile, refresh_testing_days, 9256, 4),
    MEMBER(mc_auth_ops, size, 0, 8),
    MEMBER(mc_auth_ops, mechanisms, 8, 8),
    MEMBER(mc_auth_ops, keys, 16, 8),
    MEMBER(mc_auth_ops, smtp_host, 24, 8),
    MEMBER(mc_auth_ops, smtp_port, 32, 2),
    MEMBER(mc_auth_ops, smtp_transport, 40, 8),
    MEMBER(mc_auth_ops, max_connections, 48, 4),
    MEMBER(mc_auth_ops, oauth, 52, 1),
    MEMBER(mc_auth_ops, validate, 56, 8),
    MEMBER(mc_auth_ops, credentials, 64, 8),
    MEMBER(mc_auth_ops, oauth_profile, 72, 8),
    MEMBER(mc_oauth_request, size, 0, 8),
    MEMBER(mc_oauth_request, server, 8, 8),
    MEMBER(mc_oauth_request, provider, 16, 8),
    MEMBER(mc_oauth_request, client_id, 24, 8),
    MEMBER(mc_oauth_request, client_secret, 32, 8),
    MEMBER(mc_oauth_request, client_auth, 40, 8),
    MEMBER(mc_oauth_request, user, 48, 8),
    MEMBER(mc_oauth_request, grant, 56, 8),
    MEMBER(mc_oauth_request, redirect_uri, 64, 8),
    MEMBER(mc_oauth_request, ca_file, 72, 8),
    MEMBER(mc_oauth_request, state_dir, 80, 8),
    MEMBER(mc_oauth_request, timeout_s, 88, 4),
    MEMBER(mc_oauth_request, refresh_margin_s, 92, 4),
    MEMBER(mc_oauth_request, profile, 96, 8),
    MEMBER(mc_oauth_request, proxy, 104, 8),
    MEMBER(mc_oauth_authorize_options, version, 0, 4),
    MEMBER(mc_oauth_authorize_options, flow, 4, 4),
    MEMBER(mc_oauth_authorize_options, port, 8, 4),
    MEMBER(mc_oauth_authorize_options, browser, 16, 8),
    MEMBER(mc_oauth_authorize_options, wait_s, 24, 4),
    MEMBER(mc_oauth_authorize_options, say, 32, 8),
    MEMBER(mc_oauth_authorize_options, ask, 40, 8),
    MEMBER(mc_oauth_authorize_options, payload, 48, 8),
    MEMBER(mc_token_status, version, 0, 4),
    MEMBER(mc_token_status, stored, 4, 1),
    MEMBER(mc_token_status, identity_mismatch, 5, 1),
    MEMBER(mc_token_status, access_expires, 8, 8),
    MEMBER(mc_token_status, refresh_issued, 16, 8),
    MEMBER(mc_token_status, refresh_used, 24, 8),
    MEMBER(mc_token_status, days_left, 32, 4),
    MEMBER(mc_token_status, warning, 36, 64),
    MEMBER(mc_token_status, store_code, 100, 4),
    MEMBER(mc_token_status, store_message, 104, 256),
    MEMBER(mc_token_status, grant, 360, 32),
    MEMBER(mc_oauth_device, user_code, 0, 8),
    MEMBER(mc_oauth_device, verification_uri, 8, 8),
    MEMBER(mc_oauth_device, verification_uri_complete, 16, 8),
    MEMBER(mc_oauth_device, expires_in, 24, 4),
    MEMBER(mc_oauth_device, interval, 28, 4),
    MEMBER(mc_oauth_device, device_code, 32, 8),
    MEMBER(mc_token_store_ops, size, 0, 8),
    MEMBER(mc_token_store_ops, lock, 8, 8),
    MEMBER(mc_token_store_ops, unlock, 16, 8),
    MEMBER(mc_token_store_ops, load, 24, 8),
    MEMBER(mc_token_store_ops, save, 32, 8),
    MEMBER(mc_token_store_ops, remove, 40, 8),
    MEMBER(mc_token_store_ops, pending_put, 48, 8),
    MEMBER(mc_token_store_ops, pending_take, 56, 8),
    MEMBER(mc_token_identity, server, 0, 8),
    MEMBER(mc_token_identity, provider, 8, 8),
    MEMBER(mc_token_identity, client_id, 16, 8),
    MEMBER(mc_token_identity, user, 24, 8),
    MEMBER(mc_token_identity, token_url, 32, 8),
    MEMBER(mc_oauth_engine_ops, size, 0, 8),
    MEMBER(mc_oauth_engine_ops, token, 8, 8),
    MEMBER(mc_oauth_engine_ops, invalidate, 16, 8),
    MEMBER(mc_oauth_engine_ops, authorize, 24, 8),
    MEMBER(mc_oauth_engine_ops, import_refresh, 32, 8),
    MEMBER(mc_oauth_engine_ops, revoke, 40, 8),
    MEMBER(mc_oauth_engine_ops, status, 48, 8),
    MEMBER(mc_oauth_engine_ops, begin, 56, 8),           /* 2.0 */
    MEMBER(mc_oauth_engine_ops, finish, 64, 8),
    MEMBER(mc_oauth_engine_ops, device_begin, 72, 8),
    MEMBER(mc_oauth_engine_ops, device_wait, 80, 8),
    MEMBER(mc_oauth_engine_ops, store_copy, 88, 8),      /* 2.1 */
    MEMBER(mc_host_api, size, 0, 8),
    MEMBER(mc_host_api, abi_major, 8, 2),
    MEMBER(mc_host_api, abi_minor, 10, 2),
    MEMBER(mc_host_api, log, 16, 8),
    MEMBER(mc_host_api, redact, 24, 8),
    MEMBER(mc_host_api, alloc, 32, 8),
    MEMBER(mc_host_api, strdup, 40, 8),
    MEMBER(mc_host_api, free, 48, 8),
    MEMBER(mc_host_api, free_secret, 56, 8),
    MEMBER(mc_host_api, error, 64, 8),
    MEMBER(mc_host_api, cfg_string, 72, 8),
    MEMBER(mc_host_api, cfg_has, 80, 8),
    MEMBER(mc_host_api, cfg_int, 88, 8),
    MEMBER(mc_host_api, cfg_member, 96, 8),
    MEMBER(mc_host_api, cfg_error, 104, 8),
    MEMBER(mc_host_api, secret, 112, 8),
    MEMBER(mc_host_api, tcp_connect, 120, 8),
    MEMBER(mc_host_api, file_replace, 128, 8),
    MEMBER(mc_host_api, run_command, 136, 8),
    MEMBER(mc_host_api, state_dir, 144, 8),              /* 2.0 */
    MEMBER(mc_host_api, token_store, 152, 8),
    MEMBER(mc_host_api, tls_client, 160, 8),             /* 2.1 */
    MEMBER(mc_host_api, tls_upgrade, 168, 8),
    MEMBER(mc_host_api, cfg_bool, 176, 8),
    MEMBER(mc_plugin_desc, abi_major, 0, 2),
    MEMBER(mc_plugin_desc, abi_minor, 2, 2),
    MEMBER(mc_plugin_desc, kind, 4, 4),
    MEMBER(mc_plugin_desc, name, 8, 8),
    MEMBER(mc_plugin_desc, version, 16, 8),
    MEMBER(mc_plugin_desc, summary, 24, 8),
    MEMBER(mc_plugin_desc, ops, 32, 8),
    MEMBER(mc_plugin_desc, init, 40, 8),                 /* 2.1 */
    MEMBER(mc_plugin_desc, fini, 48, 8),
    MEMBER(mc_err, code, 0, 4),
    MEMBER(mc_err, outcome, 4, 4),
    MEMBER(mc_err, stage, 8, 4),
    MEMBER(mc_err, smtp_code, 12, 4),
    MEMBER(mc_err, enhanced, 16, 12),
    MEMBER(mc_err, server_text, 32, 8),
    MEMBER(mc_err, transient, 40, 1),
    MEMBER(mc_err, message, 48, 8),
    MEMBER(mc_err, hint, 56, 8),
    MEMBER(mc_err, rcpts, 64, 8),
    MEMBER(mc_err, n_rcpts, 72, 8),
    MEMBER(mc_err, details, 80, 8),
    MEMBER(mc_err, n_details, 88, 8),
    MEMBER(mc_err, diags, 96, 8),                          /* v1 additions */
    MEMBER(mc_err, n_diags, 104, 8),
    MEMBER(mc_err, action, 112, 4),
    MEMBER(mc_rcpt_result, address, 0, 8),
    MEMBER(mc_rcpt_result, accepted, 8, 1),
    MEMBER(mc_rcpt_result, smtp_code, 12, 4),
    MEMBER(mc_rcpt_result, enhanced, 16, 12),
    MEMBER(mc_rcpt_result, text, 32, 8),
};

static const abi_num constants[] = {
    CONST(MC_PLUGIN_ABI_MAJOR, 2),
    CONST(MC_PLUGIN_ABI_MINOR, 1),
    CONST(MC_PLUGIN_TRANSPORT, 1),
    CONST(MC_PLUGIN_AUTH, 2),
    CONST(MC_PLUGIN_OAUTH_ENGINE, 3),
    CONST(MC_PLUGIN_PROXY, 4),                           /* 2.1 */
    CONST(MC_PLUGIN_TOKEN_STORE, 5),
    CONST(MC_PLUGIN_TLS_ENGINE, 6),
    CONST(MC_SECURITY_UNDECLARED, 0),
    CONST(MC_SECURITY_PLAINTEXT, 1),
    CONST(MC_SECURITY_TLS, 2),
    CONST(MC_SECURITY_STARTTLS, 3),
    CONST(MC_FLOW_AUTH_CODE, 1),
    CONST(MC_FLOW_PASTE, 2),
    CONST(MC_FLOW_DEVICE, 4),
    CONST(MC_FLOW_CLIENT_CREDENTIALS, 8),
    CONST(MC_URL_MAX, 2048),
    CONST(MC_TOKEN_STATUS_VERSION, 1),
    CONST(MC_OAUTH_AUTHORIZE_OPTIONS_VERSION, 1),
    CONST(MC_LOG_ERROR, 0),
    CONST(MC_LOG_WARN, 1),
    CONST(MC_LOG_INFO, 2),
    CONST(MC_LOG_TRANSCRIPT, 3),
    CONST(MC_LOG_DEBUG, 4),
    CONST(MC_OUTCOME_OK, 0),
    CONST(MC_OUTCOME_CONFIG, 1),
    CONST(MC_OUTCOME_USAGE, 2),
    CONST(MC_OUTCOME_NOINPUT, 3),
    CONST(MC_OUTCOME_DATA, 4),
    CONST(MC_OUTCOME_AUTH, 5),
    CONST(MC_OUTCOME_PERMANENT, 6),
    CONST(MC_OUTCOME_PROTOCOL, 7),
    CONST(MC_OUTCOME_TRANSIENT, 8),
    CONST(MC_OUTCOME_UNKNOWN, 9),
    CONST(MC_STAGE_NONE, 0),
    CONST(MC_STAGE_CONFIG, 1),
    CONST(MC_STAGE_PLUGIN, 2),
    CONST(MC_STAGE_CONNECT, 3),
    CONST(MC_STAGE_TLS, 4),
    CONST(MC_STAGE_GREETING, 5),
    CONST(MC_STAGE_EHLO, 6),
    CONST(MC_STAGE_STARTTLS, 7),
    CONST(MC_STAGE_AUTH, 8),
    CONST(MC_STAGE_MAIL, 9),
    CONST(MC_STAGE_RCPT, 10),
    CONST(MC_STAGE_DATA, 11),
    CONST(MC_STAGE_QUIT, 12),
    CONST(MC_STAGE_OAUTH, 13),
    CONST(MC_STAGE_MESSAGE, 14),
    CONST(MC_STAGE_QUEUE, 15),
    CONST(MC_STAGE_PROXY, 16),                           /* 2.1 */
    CONST(MC_OK, 0),
    CONST(MC_EINVAL, -1),
    CONST(MC_ENOMEM, -2),
    CONST(MC_ECONFIG, -3),
    CONST(MC_EPLUGIN, -4),
    CONST(MC_ENOSERVER, -5),
    CONST(MC_EFILE, -6),
    CONST(MC_EMESSAGE, -7),
    CONST(MC_EAUTH, -8),
    CONST(MC_EREFUSED, -9),
    CONST(MC_EPROTO, -10),
    CONST(MC_ETEMP, -11),
    CONST(MC_ENET, -12),
    CONST(MC_ETIMEOUT, -13),
    CONST(MC_ETLS, -14),
    CONST(MC_EUNKNOWN, -15),
    CONST(MC_EUSAGE, -16),
    CONST(MC_ENOTSUP, -17),
    CONST(MC_EOAUTH, -18),
    CONST(MC_ESECRET, -19),
    CONST(MC_ERCPT, -20),
};

static void check_table(const abi_num *t, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = t[i].at_least ? t[i].actual >= t[i].frozen : t[i].actual == t[i].frozen;
        if (!ok) {
            print_error("ABI changed: %s is %lld, frozen at %s%lld\n", t[i].what, t[i].actual,
                        t[i].at_least ? ">= " : "", t[i].frozen);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

#define CHECK(t) check_table(t, sizeof(t) / sizeof(t[0]))

static void test_abi_version(void **state)
{
    (void)state;
    assert_int_equal(MC_PLUGIN_ABI_MAJOR, 2);
    assert_int_equal(MC_PLUGIN_ABI_MINOR, 1);
    assert_string_equal(MC_PLUGIN_ENTRY_SYMBOL, "mc_plugin_entry");
}

static void test_struct_sizes(void **state)
{
    (void)state;
    CHECK(struct_sizes);
}

static void test_struct_members(void **state)
{
    (void)state;
    CHECK(struct_members);
}

static void test_constants(void **state)
{
    (void)state;
    CHECK(constants);
}

/* The version rule the loader relies on: the ABI version comes first in
 * the descriptor and every ops table starts with its size. */
static void test_descriptor_head(void **state)
{
    (void)state;
    assert_int_equal(offsetof(mc_plugin_desc, abi_major), 0);
    assert_int_equal(offsetof(mc_plugin_desc, abi_minor), 2);
    assert_int_equal(offsetof(mc_transport_ops, size), 0);
    assert_int_equal(offsetof(mc_auth_ops, size), 0);
    assert_int_equal(offsetof(mc_oauth_engine_ops, size), 0);
    assert_int_equal(offsetof(mc_stream_ops, size), 0);
    assert_int_equal(offsetof(mc_host_api, size), 0);
    assert_int_equal(offsetof(mc_oauth_profile, size), 0);
    assert_int_equal(offsetof(mc_oauth_request, size), 0);
    assert_int_equal(offsetof(mc_connect_opts, size), 0);
    assert_int_equal(offsetof(mc_oauth_authorize_options, version), 0);
    assert_int_equal(offsetof(mc_token_status, version), 0);
    assert_int_equal(offsetof(mc_token_store_ops, size), 0);
    assert_int_equal(offsetof(mc_stream, ops), 0);
    assert_int_equal(offsetof(mc_proxy_ops, size), 0);
    assert_int_equal(offsetof(mc_store_plugin_ops, size), 0);
}

/* A member added in a minor is read only when the table is large enough:
 * a table of an older minor (its size as that minor compiled it) lacks the
 * newer members. (1.0 -> 1.1 is the example kept: 2.0 has no minor yet.) */
static void test_minor_growth(void **state)
{
    (void)state;
    mc_stream_ops ops10 = { .size = 32 };
    mc_stream_ops ops11 = { .size = sizeof(mc_stream_ops) };
    assert_false(MC_SIZE_HAS(&ops10, mc_stream_ops, set_read_deadline));
    assert_true(MC_SIZE_HAS(&ops10, mc_stream_ops, close));
    assert_true(MC_SIZE_HAS(&ops11, mc_stream_ops, set_read_deadline));
    mc_connect_opts o10 = { .size = 40 };
    mc_connect_opts o11 = { .size = sizeof(mc_connect_opts) };
    assert_false(MC_SIZE_HAS(&o10, mc_connect_opts, deadline_ms));
    assert_true(MC_SIZE_HAS(&o10, mc_connect_opts, tls_min));
    assert_true(MC_SIZE_HAS(&o11, mc_connect_opts, deadline_ms));
    /* 2.0 -> 2.1: a 2.0 transport's table ends at starttls, a 2.0
     * connect options at deadline_ms; a 2.0 descriptor before init */
    mc_transport_ops t20 = { .size = 32 };
    mc_transport_ops t21 = { .size = sizeof(mc_transport_ops) };
    assert_true(MC_SIZE_HAS(&t20, mc_transport_ops, starttls));
    assert_false(MC_SIZE_HAS(&t20, mc_transport_ops, keys));
    assert_false(MC_SIZE_HAS(&t20, mc_transport_ops, validate));
    assert_false(MC_SIZE_HAS(&t20, mc_transport_ops, security));
    assert_true(MC_SIZE_HAS(&t21, mc_transport_ops, security));
    mc_connect_opts o20 = { .size = 48 };
    assert_true(MC_SIZE_HAS(&o20, mc_connect_opts, deadline_ms));
    assert_false(MC_SIZE_HAS(&o20, mc_connect_opts, options));
    assert_false(MC_SIZE_HAS(&o20, mc_connect_opts, proxy));
    assert_int_equal(offsetof(mc_plugin_desc, init), 40);   /* a 2.0 desc is 40 bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_version),
        cmocka_unit_test(test_struct_sizes),
        cmocka_unit_test(test_struct_members),
        cmocka_unit_test(test_constants),
        cmocka_unit_test(test_descriptor_head),
        cmocka_unit_test(test_minor_growth),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
