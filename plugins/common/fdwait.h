/* fdwait: waits on a socket bounded by a deadline (see fdwait.c). */
#ifndef MAILCONN_PLUGINS_FDWAIT_H
#define MAILCONN_PLUGINS_FDWAIT_H

#include <stddef.h>
#include <stdint.h>

/** strerror_r(e) into out, lower-cased first letter ("connection reset"). */
void mc__errno_text(char *out, size_t len, int e);
/** CLOCK_MONOTONIC in milliseconds: the clock of every deadline. */
int64_t mc__mono_now_ms(void);
/** Wait until fd is ready for `events` or `deadline` passes.
 *  @return 1 ready (or in error: the next call says which), 0 the deadline
 *  passed, -1 poll failed (errno). */
int mc__fd_wait(int fd, short events, int64_t deadline);
/** Bytes written to fd and not yet taken by the peer; 0 when unknown. */
int mc__fd_send_queue(int fd);
/** Wait until fd is readable or *deadline passes; while bytes written
 *  before are still leaving, *deadline moves to at least timeout_ms after
 *  that progress (the body's rule). @return as mc__fd_wait. */
int mc__fd_wait_reply(int fd, int64_t *deadline, int timeout_ms);

#endif
