/* fdwait: waits on a socket bounded by a CLOCK_MONOTONIC deadline, shared by
 * the bundled transports (plain, and tls/starttls through plugins/common/tls.c).
 * Compiled into each plugin (hidden like everything else there). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <linux/sockios.h>

#include "fdwait.h"

void mc__errno_text(char *out, size_t len, int e)
{
    char tmp[128];
    snprintf(out, len, "%s", strerror_r(e, tmp, sizeof(tmp)));
    if (out[0] && isupper((unsigned char)out[0]) && !isupper((unsigned char)out[1]))
        out[0] = (char)tolower((unsigned char)out[0]);
}

int64_t mc__mono_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for `events` or deadline (mono_ms) passes.
 * @return 1 ready (or in error: the next call says which), 0 the deadline
 * passed, -1 poll failed (errno). */
int mc__fd_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mc__mono_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Bytes written and not yet taken by the server (sent and unacknowledged,
 * or still queued); 0 when unknown. */
int mc__fd_send_queue(int fd)
{
    int n = 0;
#ifdef SIOCOUTQ
    if (ioctl(fd, SIOCOUTQ, &n) < 0)
        n = 0;
#else
    (void)fd;
#endif
    return n;
}

/* Wait until fd is readable or *deadline passes. While bytes written
 * before are still leaving (the send queue shrinks), *deadline is moved to
 * at least timeout_ms after that progress: a server cannot answer what it
 * has not read yet (the end of a large body still in the socket buffer), and
 * until it has, the body's rule holds, timeout_ms without progress.
 * @return as wait_fd. */
int mc__fd_wait_reply(int fd, int64_t *deadline, int timeout_ms)
{
    int queued = mc__fd_send_queue(fd);
    for (;;) {
        int64_t left = *deadline - mc__mono_now_ms();
        if (left <= 0)
            return 0;
        if (queued > 0 && left > 100)
            left = 100;   /* look at the queue again soon */
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
        if (queued > 0) {
            int q = mc__fd_send_queue(fd);
            if (q < queued && *deadline < mc__mono_now_ms() + timeout_ms)
                *deadline = mc__mono_now_ms() + timeout_ms;
            queued = q;
        }
    }
}
