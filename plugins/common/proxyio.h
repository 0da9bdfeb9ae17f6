/* proxyio: bounded socket I/O for the proxy plugins (see proxyio.c). */
#ifndef MAILCONN_PLUGINS_PROXYIO_H
#define MAILCONN_PLUGINS_PROXYIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Write all of buf by deadline. @return 0, or -1 with errno (ETIMEDOUT). */
int mc__pio_send_all(int fd, const void *buf, size_t len, int64_t deadline);
/** Read exactly len bytes by deadline. @return 0, or -1 with errno
 *  (ETIMEDOUT; ECONNRESET when the peer closed first). */
int mc__pio_recv_exact(int fd, void *buf, size_t len, int64_t deadline);
/** Read what is there (at least 1 byte) by deadline. @return bytes, 0 the
 *  peer closed, -1 with errno. */
ssize_t mc__pio_recv_some(int fd, void *buf, size_t len, int64_t deadline);

#endif
