/* proxyio: bounded socket I/O for the proxy plugins: every send and recv is
 * MSG_DONTWAIT after a poll bounded by the tunnel's deadline, so a proxy
 * that trickles bytes cannot stretch it. Compiled into each plugin. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "fdwait.h"
#include "proxyio.h"

int mc__pio_send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = mc__fd_wait(fd, POLLOUT, deadline);
        if (w == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (w < 0)
            return -1;
    }
    return 0;
}

ssize_t mc__pio_recv_some(int fd, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = mc__fd_wait(fd, POLLIN, deadline);
        if (w == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (w < 0)
            return -1;
    }
}

int mc__pio_recv_exact(int fd, void *buf, size_t len, int64_t deadline)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = mc__pio_recv_some(fd, p, len, deadline);
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
