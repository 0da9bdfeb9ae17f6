/* fuzz-redirect: what comes back from the browser in `mailconn auth`.
 * First byte even: the HTTP request the loopback listener reads
 * (client_read and request_target in oauth/flows.c, fed through a socket
 * in fragments whose size comes from that byte), then its target parsed as
 * the listener does; odd: the redirect URL a person pastes
 * (mc__oauth_parse_redirect). Either way check_redirect then judges it
 * against this authorization's state.
 * flows.c is compiled into this file to reach its static parser; the
 * other engine sources are linked as they are. */
#include "../../oauth/flows.c"

#include "fuzz.h"
#include "oauth-host.h"

#define STATE "Fuzz-State_0123456789a"

static void judge(const char *url)
{
    mc__oauth_redirect r;
    memset(&r, 0x5a, sizeof r);
    int rc = mc__oauth_parse_redirect(url, &r);
    if (rc != 0) {
        FUZZ_CHECK(rc == MC_EINVAL || rc == MC_ENOMEM);
        FUZZ_CHECK(!r.code && !r.state && !r.error && !r.error_description);
        return;
    }
    mc_oauth_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.size = sizeof prof;
    mc_oauth_request req;
    memset(&req, 0, sizeof req);
    req.size = sizeof req;
    req.server = "work";
    req.profile = &prof;
    mc_err *err = NULL;
    rc = check_redirect(&req, &r, STATE, &err);
    if (rc == 0) {
        /* only a redirect for this authorization, with a code, is redeemed */
        FUZZ_CHECK(!err && !r.error && r.state && !strcmp(r.state, STATE));
        FUZZ_CHECK(r.code && *r.code);
    } else {
        FUZZ_CHECK(err && err->code == rc && err->message);
        FUZZ_CHECK(rc == MC_EAUTH || rc == MC_EOAUTH);
    }
    fuzz_oauth_error_free(err);
    mc__oauth_redirect_clear(&r);
}

/* Send data over a SOCK_SEQPACKET pair in `step`-byte messages (each recv
 * of the listener returns at most one), then end it. */
static void loopback(const uint8_t *data, size_t size, size_t step)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    if (size / step > 256)
        step = size / 256 + 1;   /* the socket queues a few hundred messages */
    for (size_t off = 0; off < size;) {
        size_t n = size - off < step ? size - off : step;
        if (send(sv[1], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)n)
            break;
        off += n;
    }
    shutdown(sv[1], SHUT_WR);
    /* what the listener does with one connection's bytes */
    client *c = calloc(1, sizeof *c);
    if (!c) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    c->fd = sv[0];
    int st;
    while ((st = client_read(c)) == 0)
        ;
    char *target = NULL;
    int rc = st < 0 ? MC_ENET : request_target(c->buf, &target);
    c->fd = -1;                 /* closed below */
    client_close(c);
    free(c);
    if (rc == 0) {
        FUZZ_CHECK(target && target[0] == '/' && !strpbrk(target, " \r\n"));
        judge(target);
        mc__oauth_wipe_free(target);
    } else {
        FUZZ_CHECK(!target);
        FUZZ_CHECK(rc == MC_EINVAL || rc == MC_ENET || rc == MC_ENOMEM);
    }
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 2 * REQUEST_MAX)
        return 0;
    fuzz_oauth_host();
    bool pasted = data[0] & 1;
    if (pasted) {
        char *line = fuzz_cstr(data + 1, size - 1);
        if (line)
            judge(line);
        free(line);
        return 0;
    }
    size_t step;
    fuzz_split(&data, &size, &step);
    loopback(data, size, step);
    return 0;
}
