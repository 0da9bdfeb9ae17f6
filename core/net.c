/* net: TCP connect with bounded waits. Every resolved address (IPv4 and
 * IPv6) is tried in turn with a non-blocking connect and poll, all of them
 * by one deadline; the socket handed back is blocking, with per-wait
 * timeouts (for plugins of ABI 1.0, which read it blocking), TCP_NODELAY and
 * close-on-exec. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "error.h"

#define DEFAULT_TIMEOUT_MS 60000

int64_t mc__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mc__connect_deadline(const mc_connect_opts *o)
{
    if (o && MC_SIZE_HAS(o, mc_connect_opts, deadline_ms) && o->deadline_ms > 0)
        return o->deadline_ms;
    int timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    return mc__mono_ms() + timeout_ms;
}

/* "host:port", or "[v6]:port" for an IPv6 literal. */
static void peer_name(char *out, size_t len, const char *host, uint16_t port)
{
    if (strchr(host, ':'))
        snprintf(out, len, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(out, len, "%s:%u", host, (unsigned)port);
}

/* strerror with a lower-case first letter: "connection refused". */
static void reason(char *out, size_t len, int e)
{
    char tmp[128];
    const char *s = strerror_r(e, tmp, sizeof(tmp));
    snprintf(out, len, "%s", s);
    if (out[0] && isupper((unsigned char)out[0]) && !isupper((unsigned char)out[1]))
        out[0] = (char)tolower((unsigned char)out[0]);
}

/* Wait for a non-blocking connect until deadline (mc__mono_ms). @return 0,
 * or an errno value (ETIMEDOUT when the deadline passed). */
static int wait_connected(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mc__mono_ms();
        if (left <= 0)
            return ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            continue;   /* the loop checks the clock */
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            return errno;
        return soerr;
    }
}

static int make_blocking(int fd, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return errno;
    struct timeval tv = {
        .tv_sec = timeout_ms / 1000,
        .tv_usec = (timeout_ms % 1000) * 1000,
    };
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0
        || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return errno;
    return 0;
}

/* One address, by deadline. @return the connected socket, or -1 with *e
 * set. */
static int try_one(const struct addrinfo *ai, int64_t deadline, int timeout_ms, int *e)
{
    if (deadline - mc__mono_ms() <= 0) {
        *e = ETIMEDOUT;
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno == EINPROGRESS || errno == EINTR)
            rc = wait_connected(fd, deadline);
        else
            rc = errno;
    }
    if (rc == 0)
        rc = make_blocking(fd, timeout_ms);
    if (rc != 0) {
        close(fd);
        *e = rc;
        return -1;
    }
    return fd;
}

int mc__tcp_connect(const mc_connect_opts *o, int *fd_out, mc_err **err)
{
    if (!o || !o->host || !o->host[0] || !fd_out)
        return mc__error_set(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                             "tcp connect: no host given");
    *fd_out = -1;

    char peer[300];
    peer_name(peer, sizeof(peer), o->host, o->port);
    if (o->port == 0)
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                             "%s: port 0 is not a port to connect to", peer);
    int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    int64_t deadline = mc__connect_deadline(o);

    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)o->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_protocol = IPPROTO_TCP,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(o->host, port, &hints, &res);
    if (g != 0) {
        char why[160];
        if (g == EAI_SYSTEM)
            reason(why, sizeof(why), errno);
        else
            snprintf(why, sizeof(why), "%s", gai_strerror(g));
        if (why[0] && isupper((unsigned char)why[0]) && !isupper((unsigned char)why[1]))
            why[0] = (char)tolower((unsigned char)why[0]);
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                             "%s: cannot resolve the host name: %s", peer, why);
    }

    int last = 0, tried = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int e = 0;
        tried++;
        int fd = try_one(ai, deadline, timeout_ms, &e);
        if (fd >= 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return 0;
        }
        last = e;
    }
    freeaddrinfo(res);

    if (tried == 0)
        return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                             "%s: the host name has no address", peer);
    if (last == ETIMEDOUT)
        return mc__error_set(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                             "%s: timed out after %d s connecting", peer,
                             (timeout_ms + 999) / 1000);
    char why[128];
    reason(why, sizeof(why), last);
    return mc__error_set(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                         "%s: %s", peer, why);
}
