/* A TCP stream in the clear (host->tcp_connect), the stream of the plain
 * transport and the inner stream of starttls (host->tls_upgrade wraps it). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <ctype.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "mailconn/plugin.h"

#include "fdwait.h"
#include "fdstream.h"

static const mc_host_api *host;

void mc__fd_stream_set_host(const mc_host_api *h)
{
    host = h;
}

/* The socket from host->tcp_connect is blocking; every recv and send here
 * is MSG_DONTWAIT after a poll bounded by the time left, so a server that
 * trickles bytes cannot stretch a deadline. */
typedef struct plain_stream {
    mc_stream base;      /* first */
    int       fd;
    int       timeout_ms;
    int64_t   read_deadline;   /* CLOCK_MONOTONIC ms; 0: timeout_ms per read */
    char      peer[300];
} plain_stream;

static ssize_t plain_read(mc_stream *s, void *buf, size_t len, mc_err **err)
{
    plain_stream *ps = (plain_stream *)s;
    int64_t deadline = ps->read_deadline ? ps->read_deadline : mc__mono_now_ms() + ps->timeout_ms;
    for (;;) {
        ssize_t n = recv(ps->fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = mc__fd_wait_reply(ps->fd, &deadline, ps->timeout_ms);
            if (ps->read_deadline)
                ps->read_deadline = deadline;   /* moved while the server read */
            if (w > 0)
                continue;
            if (w == 0)
                return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                   "%s: timed out after %d s waiting for the server",
                                   ps->peer, (ps->timeout_ms + 999) / 1000);
        }
        char why[128];
        mc__errno_text(why, sizeof(why), errno);
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: %s", ps->peer, why);
    }
}

/* Every byte, failing after timeout_ms without progress. */
static int plain_write(mc_stream *s, const void *buf, size_t len, mc_err **err)
{
    plain_stream *ps = (plain_stream *)s;
    const char *p = buf;
    int64_t idle_until = mc__mono_now_ms() + ps->timeout_ms;
    while (len > 0) {
        ssize_t n = send(ps->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            p += n;
            len -= (size_t)n;
            idle_until = mc__mono_now_ms() + ps->timeout_ms;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = mc__fd_wait(ps->fd, POLLOUT, idle_until);
            if (w > 0)
                continue;
            if (w == 0)
                return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                   "%s: timed out after %d s sending to the server",
                                   ps->peer, (ps->timeout_ms + 999) / 1000);
        }
        char why[128];
        mc__errno_text(why, sizeof(why), errno);
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: %s", ps->peer, why);
    }
    return 0;
}

static void plain_set_read_deadline(mc_stream *s, int64_t deadline_ms)
{
    ((plain_stream *)s)->read_deadline = deadline_ms > 0 ? deadline_ms : 0;
}

static void plain_close(mc_stream *s)
{
    if (!s)
        return;
    plain_stream *ps = (plain_stream *)s;
    if (ps->fd >= 0)
        close(ps->fd);
    host->free(ps);
}

static const mc_stream_ops plain_stream_ops = {
    .size = sizeof(mc_stream_ops),
    .read = plain_read,
    .write = plain_write,
    .close = plain_close,
    .set_read_deadline = plain_set_read_deadline,
};

int mc__fd_stream_open(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                       mc_err **err)
{
    if (!out || !o || !o->host)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                           "transport: no host given");
    *out = NULL;
    int fd = -1;
    int rc = host->tcp_connect(hc, o, &fd, err);
    if (rc < 0)
        return rc;
    plain_stream *ps = host->alloc(sizeof(*ps));
    if (!ps) {
        close(fd);
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                           "out of memory");
    }
    ps->base.ops = &plain_stream_ops;
    ps->base.hc = hc;
    ps->fd = fd;
    ps->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
    if (strchr(o->host, ':'))
        snprintf(ps->peer, sizeof(ps->peer), "[%s]:%u", o->host, (unsigned)o->port);
    else
        snprintf(ps->peer, sizeof(ps->peer), "%s:%u", o->host, (unsigned)o->port);
    *out = &ps->base;
    return 0;
}

