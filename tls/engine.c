/* engine-tls.so: the host's TLS layer (OpenSSL 3), behind host->tls_client
 * and host->tls_upgrade. The only module besides none that links libssl.
 *
 * Two kinds of stream: over a socket (tls_client: our own BIO on the fd)
 * or over another stream (tls_upgrade: the BIO calls the inner stream's
 * read/write, so STARTTLS works over any transport's stream; the inner
 * stream's deadlines bound every wait).
 *
 * Trust: the server's ca_file replaces the system store; otherwise the
 * system store is looked up by hashed directory (never the whole bundle).
 * Verification: chain, then host name (SSL_set1_host) or IP address (IP
 * SANs); no callback can override it. SNI for names only. The socket is
 * driven through a BIO of our own whose writes use MSG_NOSIGNAL, so a peer
 * that closes never raises SIGPIPE.
 *
 * Deadlines: the socket from host->tcp_connect is blocking, but every recv
 * and send here is MSG_DONTWAIT, and each wait is a poll bounded by the time
 * left: the handshake by the connect deadline (mc_connect_opts.deadline_ms),
 * a read by the stream's read deadline (every WANT_READ/WANT_WRITE retry
 * and record counts against the same one), a write by timeout_ms without
 * progress (bytes the socket took). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/sockios.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../plugins/common/fdwait.h"
#include "../core/tls-engine.h"

static const mc_host_api *host;


/* What the BIO sees of the socket. */
typedef struct sock_io {
    int  fd;
    int  last_errno;     /* of the last failed send/recv, 0 otherwise */
    bool eof;            /* recv returned 0 */
    uint64_t sent;       /* bytes the socket took: progress of a write */
    mc_stream *inner;    /* tls_upgrade: the stream under TLS (fd is -1) */
    int  inner_rc;       /* the inner stream's last failure, 0 otherwise */
} sock_io;

typedef struct tls_stream {
    mc_stream   base;    /* first */
    sock_io     io;
    SSL_CTX    *ctx;
    SSL        *ssl;     /* NULL while in the clear */
    BIO_METHOD *meth;
    bool        broken;  /* a fatal TLS error: no close_notify */
    int         timeout_ms;
    int64_t     read_deadline;   /* CLOCK_MONOTONIC ms; 0: timeout_ms per read */
    char        peer[300];
} tls_stream;

static ssize_t stream_read(mc_stream *s, void *buf, size_t len, mc_err **err);
static int64_t read_deadline(const tls_stream *ts);
static int stream_write(mc_stream *s, const void *buf, size_t len, mc_err **err);
static void stream_close(mc_stream *s);
static void stream_set_read_deadline(mc_stream *s, int64_t deadline_ms);

static const mc_stream_ops stream_ops = {
    .size = sizeof(mc_stream_ops),
    .read = stream_read,
    .write = stream_write,
    .close = stream_close,
    .set_read_deadline = stream_set_read_deadline,
};

/* ------------------------------------------------------------ helpers */

static void peer_name(char *out, size_t len, const char *h, uint16_t port)
{
    if (strchr(h, ':'))
        snprintf(out, len, "[%s]:%u", h, (unsigned)port);
    else
        snprintf(out, len, "%s:%u", h, (unsigned)port);
}

static int timeout_s(const tls_stream *ts)
{
    return (ts->timeout_ms + 999) / 1000;
}

/* After an SSL call failed with `e`: wait for what it wants, by *deadline
 * (moved as wait_reply does when `reply`: a read awaiting the server).
 * @return 1 call it again, 0 the deadline passed, -1 not a wait (a real
 * error: report it). */
static int ssl_wait(tls_stream *ts, int e, int64_t *deadline, bool reply)
{
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        return -1;
    int le = ts->io.last_errno;
    if (le != 0 && le != EAGAIN && le != EWOULDBLOCK && le != EINTR)
        return -1;
    int w = e == SSL_ERROR_WANT_WRITE ? mc__fd_wait(ts->io.fd, POLLOUT, *deadline)
            : reply ? mc__fd_wait_reply(ts->io.fd, deadline, ts->timeout_ms)
                    : mc__fd_wait(ts->io.fd, POLLIN, *deadline);
    if (w < 0)
        ts->io.last_errno = errno;
    return w;
}

static bool is_ip_literal(const char *h)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* The most telling OpenSSL error reason on this thread's queue, or NULL. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r;
}

/* ------------------------------------------------------------ the BIO */

static int bio_write(BIO *b, const char *buf, int len)
{
    sock_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (io->inner) {
        int r = io->inner->ops->write(io->inner, buf, (size_t)len, NULL);
        if (r < 0) {
            io->inner_rc = r;
            if (r == MC_ETIMEOUT)
                BIO_set_retry_write(b);   /* not fatal to the SSL */
            return -1;
        }
        io->inner_rc = 0;
        io->sent += (uint64_t)len;
        return len;
    }
    ssize_t n = send(io->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        io->last_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_write(b);
        return -1;
    }
    io->last_errno = 0;
    io->sent += (uint64_t)n;
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sock_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (io->inner) {
        ssize_t r = io->inner->ops->read(io->inner, buf, (size_t)len, NULL);
        if (r < 0) {
            io->inner_rc = (int)r;
            if (r == MC_ETIMEOUT)
                BIO_set_retry_read(b);    /* a read deadline: not fatal to the SSL */
            return -1;
        }
        io->inner_rc = 0;
        if (r == 0)
            io->eof = true;
        return (int)r;
    }
    ssize_t n = recv(io->fd, buf, (size_t)len, MSG_DONTWAIT);
    if (n < 0) {
        io->last_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        return -1;
    }
    io->last_errno = 0;
    if (n == 0)
        io->eof = true;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    sock_io *io = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return io && io->eof;
    default:
        return 0;
    }
}

/* One BIO type index for the module: OpenSSL hands out only a few
 * (BIO_get_new_index), so never one per connection. */
static pthread_once_t bio_index_once = PTHREAD_ONCE_INIT;
static int bio_index = -1;

static void bio_index_init(void)
{
    bio_index = BIO_get_new_index();
}

static int bio_type(void)
{
    pthread_once(&bio_index_once, bio_index_init);
    return (bio_index > 0 ? bio_index : 0) | BIO_TYPE_SOURCE_SINK;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

/* ------------------------------------------------------------ set-up */

static void tls_free(tls_stream *ts)
{
    if (ts->ssl)
        SSL_free(ts->ssl);       /* frees the BIO too */
    if (ts->ctx)
        SSL_CTX_free(ts->ctx);
    if (ts->meth)
        BIO_meth_free(ts->meth);
    ts->ssl = NULL;
    ts->ctx = NULL;
    ts->meth = NULL;
}

static int load_trust(tls_stream *ts, const mc_connect_opts *o, mc_err **err)
{
    if (o->ca_file && o->ca_file[0]) {
        FILE *f = fopen(o->ca_file, "r");
        if (!f) {
            char why[128];
            mc__errno_text(why, sizeof(why), errno);
            return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_TLS,
                               "ca_file %s: cannot be read: %s", o->ca_file, why);
        }
        fclose(f);
        if (SSL_CTX_load_verify_locations(ts->ctx, o->ca_file, NULL) != 1) {
            const char *r = ssl_reason();
            return host->error(err, MC_ECONFIG, MC_OUTCOME_CONFIG, MC_STAGE_TLS,
                               "ca_file %s: no usable PEM certificate in it%s%s",
                               o->ca_file, r ? ": " : "", r ? r : "");
        }
        return 0;
    }
    /* The system store by hashed directory: certificates are read on demand,
     * not parsed all at once. $SSL_CERT_DIR may be a colon list. */
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (!dir || !dir[0])
        dir = X509_get_default_cert_dir();
    if (SSL_CTX_load_verify_locations(ts->ctx, NULL, dir) != 1)
        host->log(ts->base.hc, MC_LOG_DEBUG, "TLS: cannot use the system certificate directory %s",
                  dir);
    ERR_clear_error();
    return 0;
}

static int handshake_error(tls_stream *ts, mc_err **err)
{
    long vr = SSL_get_verify_result(ts->ssl);
    if (vr != X509_V_OK)
        return host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                           "%s: certificate verify failed: %s", ts->peer,
                           X509_verify_cert_error_string(vr));
    /* a connection closed or reset without a TLS alert is a dropped
     * connection (transient), whether the FIN or the RST came first */
    unsigned long last = ERR_peek_last_error();
    bool eof = last && ERR_GET_LIB(last) == ERR_LIB_SSL
               && ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    const char *r = ssl_reason();
    if (r && !eof)
        return host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                           "%s: TLS handshake failed: %s", ts->peer, r);
    if (ts->io.inner_rc)
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                           "%s: the connection failed during the TLS handshake", ts->peer);
    if (ts->io.last_errno) {
        char why[128];
        mc__errno_text(why, sizeof(why), ts->io.last_errno);
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                           "%s: %s during the TLS handshake", ts->peer, why);
    }
    return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                       "%s: the server closed the connection during the TLS handshake",
                       ts->peer);
}

/* Set up SSL on ts->io.fd and handshake, all by deadline (mono_ms). On
 * failure everything TLS is released and the stream is left in the clear. */
static int handshake(tls_stream *ts, const mc_connect_opts *o, int64_t deadline,
                     mc_err **err)
{
    int rc;
    ERR_clear_error();
    ts->ctx = SSL_CTX_new(TLS_client_method());
    if (!ts->ctx) {
        rc = host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                         "%s: cannot create a TLS context", ts->peer);
        goto fail;
    }
    int min = o->tls_min == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ts->ctx, min) != 1) {
        rc = host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                         "%s: cannot set the minimum TLS version", ts->peer);
        goto fail;
    }
    SSL_CTX_set_verify(ts->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(ts->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if ((rc = load_trust(ts, o, err)) < 0)
        goto fail;

    ts->ssl = SSL_new(ts->ctx);
    ts->meth = BIO_meth_new(bio_type(), "mailconn-socket");
    if (!ts->ssl || !ts->meth) {
        rc = host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                         "%s: cannot create a TLS connection", ts->peer);
        goto fail;
    }
    BIO_meth_set_write(ts->meth, bio_write);
    BIO_meth_set_read(ts->meth, bio_read);
    BIO_meth_set_ctrl(ts->meth, bio_ctrl);
    BIO_meth_set_create(ts->meth, bio_create);
    BIO_meth_set_destroy(ts->meth, bio_destroy);
    BIO *bio = BIO_new(ts->meth);
    if (!bio) {
        rc = host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                         "%s: cannot create a TLS connection", ts->peer);
        goto fail;
    }
    BIO_set_data(bio, &ts->io);
    SSL_set_bio(ts->ssl, bio, bio);   /* the SSL owns it now */

    if (is_ip_literal(o->host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ts->ssl), o->host) != 1) {
            rc = host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                             "%s: cannot check the certificate for this IP address", ts->peer);
            goto fail;
        }
    } else {
        SSL_set_hostflags(ts->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ts->ssl, o->host) != 1
            || SSL_set_tlsext_host_name(ts->ssl, o->host) != 1) {
            rc = host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                             "%s: cannot check the certificate for this host name", ts->peer);
            goto fail;
        }
    }

    if (ts->io.inner && ts->io.inner->ops->set_read_deadline)
        ts->io.inner->ops->set_read_deadline(ts->io.inner, deadline);
    for (;;) {
        ts->io.last_errno = 0;
        ts->io.inner_rc = 0;
        int r = SSL_connect(ts->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ts->ssl, r);
        int w = ts->io.inner ? (ts->io.inner_rc == MC_ETIMEOUT ? 0 : -1)
                             : ssl_wait(ts, e, &deadline, false);
        if (w > 0)
            continue;
        if (w == 0)
            rc = host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS,
                             "%s: timed out after %d s in the TLS handshake", ts->peer,
                             timeout_s(ts));
        else
            rc = handshake_error(ts, err);
        goto fail;
    }

    /* SSL_VERIFY_PEER fails the handshake on any verification error; check
     * again that a verified certificate is there. */
    if (SSL_get_verify_result(ts->ssl) != X509_V_OK || !SSL_get0_peer_certificate(ts->ssl)) {
        rc = host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_TLS,
                         "%s: certificate verify failed: no verified certificate", ts->peer);
        goto fail;
    }
    if (ts->io.inner && ts->io.inner->ops->set_read_deadline)
        ts->io.inner->ops->set_read_deadline(ts->io.inner, ts->read_deadline);
    ts->base.encrypted = true;
    ts->base.peer_verified = true;
    snprintf(ts->base.tls_version, sizeof(ts->base.tls_version), "%s", SSL_get_version(ts->ssl));
    const char *cipher = SSL_get_cipher_name(ts->ssl);
    snprintf(ts->base.tls_cipher, sizeof(ts->base.tls_cipher), "%s", cipher ? cipher : "");
    host->log(ts->base.hc, MC_LOG_DEBUG, "TLS: %s: %s %s, certificate verified", ts->peer,
              ts->base.tls_version, ts->base.tls_cipher);
    return 0;

fail:
    if (ts->io.inner && ts->io.inner->ops->set_read_deadline)
        ts->io.inner->ops->set_read_deadline(ts->io.inner, ts->read_deadline);
    ERR_clear_error();
    tls_free(ts);
    return rc;
}

/* ------------------------------------------------------------ ops */

static int64_t read_deadline(const tls_stream *ts)
{
    return ts->read_deadline ? ts->read_deadline : mc__mono_now_ms() + ts->timeout_ms;
}

static ssize_t clear_read(tls_stream *ts, void *buf, size_t len, mc_err **err)
{
    int64_t deadline = read_deadline(ts);
    for (;;) {
        ssize_t n = recv(ts->io.fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = mc__fd_wait_reply(ts->io.fd, &deadline, ts->timeout_ms);
            if (ts->read_deadline)
                ts->read_deadline = deadline;   /* moved while the server read */
            if (w > 0)
                continue;
            if (w == 0)
                return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                   "%s: timed out after %d s waiting for the server",
                                   ts->peer, timeout_s(ts));
        }
        char why[128];
        mc__errno_text(why, sizeof(why), errno);
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: %s", ts->peer, why);
    }
}

/* Every byte, failing after timeout_ms without progress. */
static int clear_write(tls_stream *ts, const char *p, size_t len, mc_err **err)
{
    int64_t idle_until = mc__mono_now_ms() + ts->timeout_ms;
    while (len > 0) {
        ssize_t n = send(ts->io.fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = mc__fd_wait(ts->io.fd, POLLOUT, idle_until);
                if (w > 0)
                    continue;
                if (w == 0)
                    return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                                       "%s: timed out after %d s sending to the server",
                                       ts->peer, timeout_s(ts));
            }
            char why[128];
            mc__errno_text(why, sizeof(why), errno);
            return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "%s: %s", ts->peer, why);
        }
        p += n;
        len -= (size_t)n;
        idle_until = mc__mono_now_ms() + ts->timeout_ms;
    }
    return 0;
}

/* A failed SSL_read/SSL_write: the error to report (timed_out: its wait
 * ran out). */
static int io_error(tls_stream *ts, bool reading, bool timed_out, mc_err **err)
{
    if (timed_out) {
        if (!reading)
            ts->broken = true;   /* a record half sent */
        return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           reading ? "%s: timed out after %d s waiting for the server"
                                   : "%s: timed out after %d s sending to the server",
                           ts->peer, timeout_s(ts));
    }
    ts->broken = true;
    if (ts->io.inner_rc)
        return host->error(err, ts->io.inner_rc == MC_ETIMEOUT ? MC_ETIMEOUT : MC_ENET,
                           MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: the connection under TLS failed", ts->peer);
    if (ts->io.last_errno) {
        char why[128];
        mc__errno_text(why, sizeof(why), ts->io.last_errno);
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: %s", ts->peer, why);
    }
    const char *r = ssl_reason();
    return host->error(err, MC_ETLS, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                       "%s: TLS error: %s", ts->peer,
                       r ? r : (ts->io.eof ? "the server closed the connection" : "unknown"));
}

static ssize_t stream_read(mc_stream *s, void *buf, size_t len, mc_err **err)
{
    tls_stream *ts = (tls_stream *)s;
    if (!ts->ssl)
        return clear_read(ts, buf, len, err);
    if (ts->broken)
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: the TLS connection is broken", ts->peer);
    /* SSL_read_ex first: a record already buffered (SSL_pending) needs no
     * wait; every wait after, for a record or a WANT_WRITE, counts against
     * the one deadline */
    int64_t deadline = read_deadline(ts);
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        ts->io.last_errno = 0;
        if (SSL_read_ex(ts->ssl, buf, len, &n) == 1)
            return (ssize_t)n;
        int e = SSL_get_error(ts->ssl, 0);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL && ts->io.last_errno == 0 && ERR_peek_error() == 0)
            return 0;   /* EOF without close_notify: the server closed */
        int w = ts->io.inner ? (ts->io.inner_rc == MC_ETIMEOUT ? 0 : -1)
                             : ssl_wait(ts, e, &deadline, true);
        if (ts->read_deadline)
            ts->read_deadline = deadline;   /* moved while the server read */
        if (w > 0)
            continue;
        int rc = io_error(ts, true, w == 0, err);
        ERR_clear_error();
        return rc;
    }
}

static int stream_write(mc_stream *s, const void *buf, size_t len, mc_err **err)
{
    tls_stream *ts = (tls_stream *)s;
    if (!ts->ssl)
        return clear_write(ts, buf, len, err);
    if (ts->broken)
        return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                           "%s: the TLS connection is broken", ts->peer);
    const char *p = buf;
    int64_t idle_until = mc__mono_now_ms() + ts->timeout_ms;
    uint64_t sent = ts->io.sent;
    while (len > 0) {
        size_t n = 0;
        ERR_clear_error();
        ts->io.last_errno = 0;
        int ok = SSL_write_ex(ts->ssl, p, len, &n);
        if (ts->io.sent != sent) {   /* progress: the socket took bytes */
            sent = ts->io.sent;
            idle_until = mc__mono_now_ms() + ts->timeout_ms;
        }
        if (ok == 1) {
            p += n;
            len -= n;
            continue;
        }
        int e = SSL_get_error(ts->ssl, 0);
        int w = ts->io.inner ? (ts->io.inner_rc == MC_ETIMEOUT ? 0 : -1)
                             : ssl_wait(ts, e, &idle_until, false);
        if (w > 0)
            continue;   /* retried with the same buffer, as OpenSSL requires */
        int rc = io_error(ts, false, w == 0, err);
        ERR_clear_error();
        return rc;
    }
    return 0;
}

static void stream_close(mc_stream *s)
{
    if (!s)
        return;
    tls_stream *ts = (tls_stream *)s;
    if (ts->ssl && !ts->broken) {
        /* close_notify, best effort: never waits (MSG_DONTWAIT), never
         * reads the reply */
        SSL_shutdown(ts->ssl);
    }
    ERR_clear_error();
    tls_free(ts);
    if (ts->io.inner)
        ts->io.inner->ops->close(ts->io.inner);
    else if (ts->io.fd >= 0)
        close(ts->io.fd);
    host->free(ts);
}

static void stream_set_read_deadline(mc_stream *s, int64_t deadline_ms)
{
    tls_stream *ts = (tls_stream *)s;
    ts->read_deadline = deadline_ms > 0 ? deadline_ms : 0;
    if (ts->io.inner && ts->io.inner->ops->set_read_deadline)
        ts->io.inner->ops->set_read_deadline(ts->io.inner, ts->read_deadline);
}

/* ------------------------------------------------------------ engine ops */

static tls_stream *stream_new(mc_host_ctx *hc, const mc_connect_opts *o)
{
    tls_stream *ts = host->alloc(sizeof(*ts));
    if (!ts)
        return NULL;
    ts->base.ops = &stream_ops;
    ts->base.hc = hc;
    ts->io.fd = -1;
    ts->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
    peer_name(ts->peer, sizeof(ts->peer), o->host, o->port);
    return ts;
}

static int64_t handshake_deadline(const mc_connect_opts *o, int timeout_ms)
{
    return MC_SIZE_HAS(o, mc_connect_opts, deadline_ms) && o->deadline_ms > 0
           ? o->deadline_ms : mc__mono_now_ms() + timeout_ms;
}

static int engine_client(mc_host_ctx *hc, int fd, const mc_connect_opts *o, mc_stream **out,
                         mc_err **err)
{
    if (!out || !o || !o->host || fd < 0)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_TLS,
                           "tls_client: no host or socket given");
    *out = NULL;
    mc_connect_opts c = { 0 };
    memcpy(&c, o, o->size < sizeof(c) ? o->size : sizeof(c));
    c.size = sizeof(c);
    tls_stream *ts = stream_new(hc, &c);
    if (!ts)
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_TLS, "out of memory");
    ts->io.fd = fd;
    int rc = handshake(ts, &c, handshake_deadline(&c, ts->timeout_ms), err);
    if (rc < 0) {
        host->free(ts);   /* the caller still owns fd */
        return rc;
    }
    *out = &ts->base;
    return 0;
}

static int engine_upgrade(mc_host_ctx *hc, mc_stream **s, const mc_connect_opts *o, mc_err **err)
{
    if (!s || !*s || !o || !o->host)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_STARTTLS,
                           "tls_upgrade: no stream or host given");
    mc_stream *inner = *s;
    if (inner->encrypted)
        return host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                           "STARTTLS on a stream that is already encrypted");
    if (!MC_SIZE_HAS(inner->ops, mc_stream_ops, set_read_deadline)
        || !inner->ops->set_read_deadline)
        return host->error(err, MC_ETLS, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                           "STARTTLS: the transport's stream has no read deadlines");
    if (!hc)
        hc = inner->hc;
    mc_connect_opts c = { 0 };
    memcpy(&c, o, o->size < sizeof(c) ? o->size : sizeof(c));
    c.size = sizeof(c);
    tls_stream *ts = stream_new(hc, &c);
    if (!ts)
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_STARTTLS,
                           "out of memory");
    /* Anything the server sent after its 220 would be read as if it came
     * through TLS: refuse (CVE-2011-0411 style response injection). A read
     * with a deadline already past returns the bytes waiting, or
     * MC_ETIMEOUT at once (mc_stream_ops.set_read_deadline). */
    char ch;
    inner->ops->set_read_deadline(inner, 1);
    ssize_t n = inner->ops->read(inner, &ch, 1, NULL);
    inner->ops->set_read_deadline(inner, 0);
    if (n > 0) {
        int rc = host->error(err, MC_EREFUSED, MC_OUTCOME_PERMANENT, MC_STAGE_STARTTLS,
                             "%s: server sent data after its STARTTLS reply (response injection)",
                             ts->peer);
        host->free(ts);
        return rc;
    }
    if (n == 0 || n != MC_ETIMEOUT) {
        int rc = host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_STARTTLS,
                             "%s: the server closed the connection after its STARTTLS reply",
                             ts->peer);
        host->free(ts);
        return rc;
    }
    ts->io.inner = inner;
    int rc = handshake(ts, &c, handshake_deadline(&c, ts->timeout_ms), err);
    if (rc < 0) {
        host->free(ts);   /* *s unchanged: the caller closes it */
        return rc;
    }
    *s = &ts->base;
    return 0;
}

static const mc__tls_engine_ops engine_ops = {
    .size = sizeof(mc__tls_engine_ops),
    .client = engine_client,
    .upgrade = engine_upgrade,
};

static const mc_plugin_desc engine_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TLS_ENGINE,
    .name = "tls",
    .version = MC_VERSION_STRING,
    .summary = "the host's TLS layer (OpenSSL): certificate and host name verified",
    .ops = &engine_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    host = h;
    return &engine_desc;
}
