/* transport-example: a template for an out-of-tree transport plugin.
 *
 * Built from the installed headers alone (pkg-config --cflags mailconn),
 * installed as transport-example.so into `pkg-config --variable=plugindir
 * mailconn`; a server selects it with "transport": "example". It shows:
 *
 *   - the one exported symbol, mc_plugin_entry, returning a constant
 *     descriptor, and the host table kept for the ops;
 *   - options of its own in the server's "transport_options" object: the
 *     keys declared in `keys` (any other key is refused by the core, with
 *     its JSON path) and checked by `validate` with host->cfg_error, which
 *     prefixes the path (servers[N].transport_options.KEY);
 *   - connecting with host->tcp_connect (which also tunnels through the
 *     server's "proxy") and TLS from the host's layer, host->tls_client:
 *     certificate chain and host name verified, ca_file and tls_min
 *     honoured, no OpenSSL here;
 *   - its security declaration, from which `check` and `send` apply one
 *     rule for credentials.
 *
 * Options:
 *   "tls": true | false   implicit TLS (default true); false: TCP in clear
 *   "sni": "name"         the name sent as SNI and verified in the
 *                         certificate instead of the server's host (a
 *                         server reached by IP address); needs tls
 *
 * Security: the transport declares MC_SECURITY_TLS and, since "tls": false
 * exists, `security_of`, which gives the security of a connection with
 * the server's options: TLS, or MC_SECURITY_PLAINTEXT with "tls": false.
 * `check` calls it without connecting and `send` before AUTH, so both
 * apply one rule: credentials in clear need the server's
 * "allow_plaintext_auth": true, and a connection declared TLS whose stream
 * is not encrypted never gets them. Never declare more than a
 * configuration delivers.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mailconn/plugin.h>

static const mc_host_api *host;

static const char *const example_keys[] = { "tls", "sni", NULL };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ options */

/* A boolean member: cfg_bool gives dflt for a value of another type, so
 * two calls with different defaults tell a boolean from anything else. */
static bool is_bool(const mc_plugin_cfg *cfg, const char *key)
{
    return host->cfg_bool(cfg, key, false) == host->cfg_bool(cfg, key, true);
}

static void example_validate(mc_host_ctx *hc, const mc_plugin_cfg *cfg)
{
    (void)hc;
    if (host->cfg_has(cfg, "tls") && !is_bool(cfg, "tls"))
        host->cfg_error(cfg, "tls", "must be true or false");
    if (host->cfg_has(cfg, "sni")) {
        const char *sni = host->cfg_string(cfg, "sni");
        if (!sni || !*sni || strlen(sni) > 253 || strspn(sni, "abcdefghijklmnopqrstuvwxyz"
                                                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "0123456789.-") != strlen(sni))
            host->cfg_error(cfg, "sni", "must be a host name");
        else if (!host->cfg_bool(cfg, "tls", true))
            host->cfg_error(cfg, "sni", "needs \"tls\": true");
    }
}

/* ------------------------------------------------------------ a stream in clear */

/* With "tls": false the transport keeps the socket itself. TLS streams
 * come from host->tls_client and are the host's. */
typedef struct clear_stream {
    mc_stream base;            /* first: the core sees an mc_stream */
    int       fd;
    int       timeout_ms;
    int64_t   read_deadline;   /* 0: none */
} clear_stream;

static ssize_t clear_read(mc_stream *s, void *buf, size_t len, mc_err **err)
{
    clear_stream *c = (clear_stream *)s;
    int64_t end = c->read_deadline ? c->read_deadline : now_ms() + c->timeout_ms;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "transport example: read: %s", strerror(errno));
        int64_t left = end - now_ms();
        if (left <= 0)
            return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "transport example: no reply in time");
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, left > 60000 ? 60000 : (int)left) < 0 && errno != EINTR)
            return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "transport example: poll: %s", strerror(errno));
    }
}

static int clear_write(mc_stream *s, const void *buf, size_t len, mc_err **err)
{
    clear_stream *c = (clear_stream *)s;
    const char *p = buf;
    while (len > 0) {
        /* the socket's SO_SNDTIMEO (timeout_ms, from tcp_connect) bounds
         * each send without progress; MSG_NOSIGNAL: never SIGPIPE */
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return host->error(err, MC_ETIMEOUT, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "transport example: write timed out");
        if (n <= 0)
            return host->error(err, MC_ENET, MC_OUTCOME_TRANSIENT, MC_STAGE_NONE,
                               "transport example: write: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void clear_close(mc_stream *s)
{
    clear_stream *c = (clear_stream *)s;
    if (!c)
        return;
    close(c->fd);
    host->free(c);
}

static void clear_set_read_deadline(mc_stream *s, int64_t deadline_ms)
{
    ((clear_stream *)s)->read_deadline = deadline_ms;
}

static const mc_stream_ops clear_ops = {
    .size = sizeof(mc_stream_ops),
    .read = clear_read,
    .write = clear_write,
    .close = clear_close,
    .set_read_deadline = clear_set_read_deadline,
};

/* ------------------------------------------------------------ connect */

static int example_connect(mc_host_ctx *hc, mc_stream **out, const mc_connect_opts *o,
                           mc_err **err)
{
    if (!out || !o || !o->host)
        return host->error(err, MC_EINVAL, MC_OUTCOME_USAGE, MC_STAGE_CONNECT,
                           "transport example: no host given");
    *out = NULL;
    /* a copy of the core's options at this header's size (an older core's
     * are shorter: the rest stays zero), with one deadline for the TCP
     * connect and the handshake */
    mc_connect_opts c = { 0 };
    memcpy(&c, o, o->size < sizeof(c) ? o->size : sizeof(c));
    c.size = sizeof(c);
    if (c.deadline_ms <= 0)
        c.deadline_ms = now_ms() + (c.timeout_ms > 0 ? c.timeout_ms : 60000);

    const mc_plugin_cfg *opt = c.options;     /* NULL without "transport_options" */
    bool tls = host->cfg_bool(opt, "tls", true);
    const char *sni = host->cfg_string(opt, "sni");

    int fd = -1;
    int rc = host->tcp_connect(hc, &c, &fd, err);   /* through c.proxy when set */
    if (rc < 0)
        return rc;
    host->log(hc, MC_LOG_DEBUG, "transport example: connected to %s:%u, %s", c.host,
              (unsigned)c.port, tls ? "TLS" : "in clear");

    if (tls) {
        mc_connect_opts t = c;
        if (sni)
            t.host = sni;   /* the name to send and to verify */
        if ((rc = host->tls_client(hc, fd, &t, out, err)) < 0)
            close(fd);      /* on failure the fd is still ours */
        return rc;
    }

    clear_stream *s = host->alloc(sizeof(*s));
    if (!s) {
        close(fd);
        return host->error(err, MC_ENOMEM, MC_OUTCOME_TRANSIENT, MC_STAGE_CONNECT,
                           "transport example: out of memory");
    }
    s->base.ops = &clear_ops;
    s->base.hc = hc;
    s->fd = fd;
    s->timeout_ms = c.timeout_ms > 0 ? c.timeout_ms : 60000;
    *out = &s->base;
    return 0;
}

/* ------------------------------------------------------------ descriptor */

/* What a connection with these options is (see the top). */
static mc_transport_security example_security_of(mc_host_ctx *hc, const mc_plugin_cfg *options)
{
    (void)hc;
    return options && !host->cfg_bool(options, "tls", true) ? MC_SECURITY_PLAINTEXT
                                                             : MC_SECURITY_TLS;
}

static const mc_transport_ops example_ops = {
    .size = sizeof(mc_transport_ops),
    .default_port = 465,
    .connect = example_connect,
    .starttls = NULL,                   /* no STARTTLS: see tls_upgrade for one */
    .keys = example_keys,
    .validate = example_validate,
    .security = MC_SECURITY_TLS,        /* the default, "tls": true */
    .security_of = example_security_of, /* "tls": false is plaintext */
};

static const mc_plugin_desc example_desc = {
    .abi_major = MC_PLUGIN_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .kind = MC_PLUGIN_TRANSPORT,
    .name = "example",                  /* the file is transport-example.so */
    .version = "1.0",
    .summary = "example transport: implicit TLS from the host's layer, or TCP in clear",
    .ops = &example_ops,
};

const mc_plugin_desc *mc_plugin_entry(const mc_host_api *h)
{
    /* refuse a core without the host calls used here (an older 2.x) */
    if (!h || h->abi_major != MC_PLUGIN_ABI_MAJOR || !MC_SIZE_HAS(h, mc_host_api, cfg_bool))
        return NULL;
    host = h;
    return &example_desc;
}
