/* net: the connect deadline (mc_connect_opts.deadline_ms, ABI 1.1) and the
 * reply deadlines the SMTP engine hands to a stream (set_read_deadline), or
 * keeps itself for a stream of ABI 1.0 that has no such member.
 *
 * The blackhole is a loopback listener that never accepts and whose accept
 * queue is full: the kernel drops further SYNs, so a connect to it hangs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "smtp.h"

/* ------------------------------------------------------------ blackhole */

typedef struct blackhole {
    int      listener;
    int      fillers[8];
    int      n_fillers;
    uint16_t port;
} blackhole;

/* Connect non-blocking; 1 when it completed within 300 ms. */
static int fill_one(blackhole *b)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    b->fillers[b->n_fillers++] = fd;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(b->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return 1;
    assert_int_equal(errno, EINPROGRESS);
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    return poll(&p, 1, 300) == 1;
}

static void blackhole_open(blackhole *b)
{
    memset(b, 0, sizeof(*b));
    b->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(b->listener >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(b->listener, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(b->listener, 1), 0);
    socklen_t sl = sizeof(a);
    assert_int_equal(getsockname(b->listener, (struct sockaddr *)&a, &sl), 0);
    b->port = ntohs(a.sin_port);
    while (b->n_fillers < 8 && fill_one(b))
        ;
    if (b->n_fillers >= 8)
        fail_msg("the accept queue of a listen(fd, 1) never filled");
}

static void blackhole_close(blackhole *b)
{
    for (int i = 0; i < b->n_fillers; i++)
        close(b->fillers[i]);
    close(b->listener);
}

/* ------------------------------------------------------------ connect */

static void test_connect_deadline_default(void **state)
{
    (void)state;
    int64_t now = mc__mono_ms();
    mc_connect_opts o = { .size = sizeof(o), .timeout_ms = 5000 };
    int64_t d = mc__connect_deadline(&o);
    assert_true(d >= now + 5000 && d < now + 5000 + 1000);
    o.deadline_ms = now + 123;
    assert_int_equal(mc__connect_deadline(&o), now + 123);
    /* options of ABI 1.0 end before deadline_ms: never read */
    o.size = offsetof(mc_connect_opts, deadline_ms);
    d = mc__connect_deadline(&o);
    assert_true(d >= now + 5000);
}

/* The deadline in the options bounds the connect, not timeout_ms. */
static void test_connect_blackhole_deadline(void **state)
{
    (void)state;
    blackhole b;
    blackhole_open(&b);
    mc_connect_opts o = {
        .size = sizeof(o), .host = "127.0.0.1", .port = b.port, .timeout_ms = 30000,
    };
    int64_t t0 = mc__mono_ms();
    o.deadline_ms = t0 + 300;
    int fd = -1;
    mc_err *err = NULL;
    assert_int_equal(mc__tcp_connect(&o, &fd, &err), MC_ETIMEOUT);
    int64_t took = mc__mono_ms() - t0;
    assert_int_equal(fd, -1);
    assert_non_null(err);
    assert_int_equal(err->stage, MC_STAGE_CONNECT);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_non_null(strstr(err->message, "timed out"));
    mc_error_free(err);
    assert_true(took >= 250);
    assert_true(took < 3000);

    /* a deadline already past: no wait at all */
    err = NULL;
    o.deadline_ms = mc__mono_ms() - 1;
    t0 = mc__mono_ms();
    assert_int_equal(mc__tcp_connect(&o, &fd, &err), MC_ETIMEOUT);
    assert_true(mc__mono_ms() - t0 < 200);
    mc_error_free(err);
    blackhole_close(&b);
}

/* ------------------------------------------------------------ replies */

/* A server that trickles: each read() returns one byte after `pace_ms`. */
typedef struct slow_stream {
    mc_stream   base;
    const char *text;
    size_t      off;
    int         pace_ms;
    int         deadlines_set;
    int64_t     last_deadline;
} slow_stream;

static ssize_t slow_read(mc_stream *st, void *buf, size_t len, mc_err **err)
{
    (void)err;
    slow_stream *s = (slow_stream *)st;
    if (!s->text[s->off] || len == 0)
        return 0;
    struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)s->pace_ms * 1000000L };
    nanosleep(&ts, NULL);   /* the server's pace, not a synchronisation */
    ((char *)buf)[0] = s->text[s->off++];
    return 1;
}

static int slow_write(mc_stream *st, const void *buf, size_t len, mc_err **err)
{
    (void)st;
    (void)buf;
    (void)len;
    (void)err;
    return 0;
}

static void slow_close(mc_stream *st)
{
    (void)st;
}

static void slow_set_read_deadline(mc_stream *st, int64_t deadline_ms)
{
    slow_stream *s = (slow_stream *)st;
    s->deadlines_set++;
    s->last_deadline = deadline_ms;
}

/* ABI 1.0: the table ends after close. */
static const mc_stream_ops ops_10 = {
    .size = offsetof(mc_stream_ops, set_read_deadline),
    .read = slow_read,
    .write = slow_write,
    .close = slow_close,
    .set_read_deadline = slow_set_read_deadline,   /* beyond its size: never called */
};

static const mc_stream_ops ops_11 = {
    .size = sizeof(mc_stream_ops),
    .read = slow_read,
    .write = slow_write,
    .close = slow_close,
    .set_read_deadline = slow_set_read_deadline,
};

static int open_slow(slow_stream *s, mc_err **err)
{
    mc_connect_opts c = { .size = sizeof(c), .host = "127.0.0.1", .port = 25, .timeout_ms = 200 };
    mc__smtp_opts o = { .stream = &s->base, .connect = &c, .helo = "client.test" };
    mc__smtp *smtp = NULL;
    int rc = mc__smtp_open(&smtp, &o, err);
    if (rc == 0)
        mc__smtp_free(smtp);
    return rc;
}

/* A stream of ABI 1.0 cannot be told a deadline: the engine checks it
 * between reads, so a greeting trickled byte by byte still times out
 * (within timeout_ms and one read), and the 1.0 table's size is honoured. */
static void test_reply_deadline_stream_10(void **state)
{
    (void)state;
    slow_stream s = { .base.ops = &ops_10, .text = "220 trickled greeting, one byte at a time\r\n",
                      .pace_ms = 20 };
    mc_err *err = NULL;
    int64_t t0 = mc__mono_ms();
    assert_int_equal(open_slow(&s, &err), MC_ETIMEOUT);
    int64_t took = mc__mono_ms() - t0;
    assert_non_null(err);
    assert_int_equal(err->stage, MC_STAGE_GREETING);
    assert_int_equal(err->outcome, MC_OUTCOME_TRANSIENT);
    assert_non_null(strstr(err->message, "timed out"));
    mc_error_free(err);
    assert_int_equal(s.deadlines_set, 0);
    assert_true(s.off < strlen(s.text));
    assert_true(took >= 190 && took < 1000);
}

/* A stream of ABI 1.1 is handed timeout_ms from the start of each reply. */
static void test_reply_deadline_stream_11(void **state)
{
    (void)state;
    slow_stream s = { .base.ops = &ops_11, .text = "220 hi\r\n250 ok\r\n", .pace_ms = 1 };
    mc_err *err = NULL;
    int64_t t0 = mc__mono_ms();
    assert_int_equal(open_slow(&s, &err), 0);
    assert_null(err);
    assert_int_equal(s.deadlines_set, 2);   /* the greeting, the EHLO reply */
    assert_true(s.last_deadline >= t0 + 200);
    assert_true(s.last_deadline <= mc__mono_ms() + 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_deadline_default),
        cmocka_unit_test(test_connect_blackhole_deadline),
        cmocka_unit_test(test_reply_deadline_stream_10),
        cmocka_unit_test(test_reply_deadline_stream_11),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
