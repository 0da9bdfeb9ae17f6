// Transports against real peers: the plain, tls and starttls plugins, loaded
// through the core registry by tests/integration/tls-probe.c, talk to
// smtp-server (tests/peers/smtp-peer.js) with certificates from a throwaway CA.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');
const lib = require('../peers/lib');

const PROBE = process.env.MAILCONN_TLS_PROBE;
if (!PROBE) throw new Error('MAILCONN_TLS_PROBE is not set (run with meson test)');

let pki;
test.before(() => {
    pki = lib.mkca(path.join(lib.tmpdir(), 'pki'));
});
test.after(() => lib.stopAll());

/** Run the probe: {code, line, ok, stage, name, outcome, message}. */
async function probe(args, env) {
    const r = await lib.run(PROBE, args, { timeoutMs: 30000, env });
    assert.equal(r.timedOut, false, `tls-probe ran over its time: ${r.stderr}`);
    const line = r.stdout.trim().split('\n').pop() || '';
    const res = { code: r.code, line, stderr: r.stderr };
    let m = /^ok (\S+) (\S+) verified=([01])$/.exec(line);
    if (m) return Object.assign(res, { ok: true, version: m[1], cipher: m[2], verified: m[3] === '1' });
    m = /^error stage=(\S+) code=(\S+) outcome=(\d+) (.*)$/.exec(line);
    assert.ok(m, `tls-probe printed neither ok nor error: ${JSON.stringify(r)}`);
    return Object.assign(res, { ok: false, stage: m[1], name: m[2], outcome: Number(m[3]), message: m[4] });
}

function assertOk(r, what) {
    assert.equal(r.ok, true, `${what}: ${r.line} ${r.stderr}`);
    assert.equal(r.code, 0, what);
}

function assertFail(r, { stage, name, exit, match }) {
    assert.equal(r.ok, false, `expected a failure, got: ${r.line}`);
    assert.equal(r.stage, stage, r.line);
    assert.equal(r.name, name, r.line);
    assert.equal(r.code, exit, `exit code: ${r.line}`);
    if (match) assert.match(r.message, match);
}

const tlsPeer = (t, which, extra = {}) => lib.startPeer(Object.assign({
    t, tls: 'implicit', cert: pki[which].cert, key: pki[which].key,
}, extra));

/** A TCP port nothing listens on: bound once, then closed. */
async function deadPort() {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const port = s.address().port;
    await new Promise((r) => s.close(r));
    return port;
}

/** A server that accepts and never says a word. */
async function silentServer(t) {
    const socks = new Set();
    const s = net.createServer((c) => { socks.add(c); c.on('error', () => {}); });
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    t.after(() => { for (const c of socks) c.destroy(); s.close(); });
    return s.address().port;
}

test('plain: greeting, EHLO and QUIT in the clear', async (t) => {
    const peer = await lib.startPeer({ t });
    const r = await probe(['plain', '127.0.0.1', String(peer.port)]);
    assertOk(r, 'plain');
    assert.equal(r.version, 'none');
    assert.equal(r.verified, false);
    await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
    const ev = lib.events(peer.out);
    assert.equal(lib.sessions(peer.out).length, 1);
    assert.ok(!ev.some((l) => / secure/.test(l)), ev.join('\n'));
});

test('tls: 127.0.0.1 verified through the IP SAN, no SNI for an IP literal', async (t) => {
    const peer = await tlsPeer(t, 'server');
    const r = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertOk(r, 'tls 127.0.0.1');
    assert.equal(r.verified, true);
    assert.match(r.version, /^TLSv1\.[23]$/);
    assert.notEqual(r.cipher, 'none');
    await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
    assert.ok(lib.events(peer.out).some((l) => / secure -$/.test(l)), lib.events(peer.out).join('\n'));
});

test('tls: localhost verified through the DNS SAN, with SNI', async (t) => {
    const peer = await tlsPeer(t, 'server');
    const r = await probe(['tls', 'localhost', String(peer.port), '--ca', pki.ca]);
    assertOk(r, 'tls localhost');
    assert.equal(r.verified, true);
    await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
    assert.ok(lib.events(peer.out).some((l) => / secure localhost$/.test(l)), lib.events(peer.out).join('\n'));
});

test('tls: ::1 verified through the IPv6 SAN', async (t) => {
    let peer;
    try {
        peer = await tlsPeer(t, 'server', { host: '::1' });
    } catch (e) {
        if (/EADDRNOTAVAIL|EAFNOSUPPORT/.test(e.message)) return t.skip('no IPv6 loopback here');
        throw e;
    }
    const r = await probe(['tls', '::1', String(peer.port), '--ca', pki.ca]);
    assertOk(r, 'tls ::1');
    assert.equal(r.verified, true);
});

test('tls: the server cert for the wrong IP and the wrong name is refused', async (t) => {
    const peer = await tlsPeer(t, 'wronghost');
    const byIp = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertFail(byIp, { stage: 'tls', name: 'MC_ETLS', exit: 69,
        match: /^127\.0\.0\.1:\d+: certificate verify failed: IP address mismatch/ });
    const byName = await probe(['tls', 'localhost', String(peer.port), '--ca', pki.ca]);
    assertFail(byName, { stage: 'tls', name: 'MC_ETLS', exit: 69,
        match: /^localhost:\d+: certificate verify failed: hostname mismatch/ });
});

test('tls: a certificate from an unknown CA is refused', async (t) => {
    const peer = await tlsPeer(t, 'untrusted');
    const r = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertFail(r, { stage: 'tls', name: 'MC_ETLS', exit: 69,
        match: /certificate verify failed: unable to get local issuer certificate/ });
    assert.equal(lib.messageCount(peer.out), 0);
});

test('tls: an expired certificate is refused, naming the expiry', async (t) => {
    const peer = await tlsPeer(t, 'expired');
    const r = await probe(['tls', 'localhost', String(peer.port), '--ca', pki.ca]);
    assertFail(r, { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /certificate verify failed: .*expired/ });
});

test('trust: the system store is read by hashed directory; ca_file replaces it', async (t) => {
    const peer = await tlsPeer(t, 'server');
    const port = String(peer.port);
    // a private "system" store holding only the test CA, as c_rehash leaves it
    const store = lib.tmpdir(t);
    fs.copyFileSync(pki.ca, path.join(store, 'test-ca.pem'));
    const rh = await lib.run('openssl', ['rehash', store], { timeoutMs: 20000 });
    assert.equal(rh.code, 0, rh.stderr);
    const env = { SSL_CERT_DIR: store, SSL_CERT_FILE: path.join(store, 'absent.pem') };

    assertOk(await probe(['tls', '127.0.0.1', port], env), 'system store via SSL_CERT_DIR');
    // ca_file naming another CA: no fallback to the store that would trust the server
    assertFail(await probe(['tls', '127.0.0.1', port, '--ca', pki.otherCa], env),
        { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /unable to get local issuer certificate/ });
    // the real system store does not know the throwaway CA
    const empty = lib.tmpdir(t);
    assertFail(await probe(['tls', '127.0.0.1', port], { SSL_CERT_DIR: empty }),
        { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /certificate verify failed/ });
});

test('tls: tls_min 1.3 against a TLS 1.2-only server fails; 1.2 works', async (t) => {
    const peer = await tlsPeer(t, 'server', { tlsMax: '1.2' });
    const port = String(peer.port);
    const r12 = await probe(['tls', '127.0.0.1', port, '--ca', pki.ca]);
    assertOk(r12, 'tls 1.2');
    assert.equal(r12.version, 'TLSv1.2');
    const r13 = await probe(['tls', '127.0.0.1', port, '--ca', pki.ca, '--tls-min', '13']);
    assertFail(r13, { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /TLS handshake failed/ });
});

test('tls: an unreadable ca_file is a config error naming the file', async (t) => {
    const peer = await tlsPeer(t, 'server');
    const missing = path.join(lib.tmpdir(t), 'no-such-ca.pem');
    const r = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', missing]);
    assertFail(r, { stage: 'tls', name: 'MC_ECONFIG', exit: 78 });
    assert.ok(r.message.includes(missing), r.message);
    assert.match(r.message, /no such file/);
    // and a file with no certificate in it
    const junk = path.join(lib.tmpdir(t), 'junk.pem');
    fs.writeFileSync(junk, 'not a certificate\n');
    const r2 = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', junk]);
    assertFail(r2, { stage: 'tls', name: 'MC_ECONFIG', exit: 78 });
    assert.ok(r2.message.includes(junk), r2.message);
});

test('tls: a server that does not speak TLS fails the handshake', async (t) => {
    const peer = await lib.startPeer({ t });
    const r = await probe(['tls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertFail(r, { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /TLS handshake failed/ });
});

test('starttls: upgraded in place, verified, EHLO again over TLS', async (t) => {
    const peer = await lib.startPeer({ t, tls: 'starttls', cert: pki.server.cert, key: pki.server.key });
    const r = await probe(['starttls', 'localhost', String(peer.port), '--ca', pki.ca]);
    assertOk(r, 'starttls');
    assert.equal(r.verified, true);
    assert.match(r.version, /^TLSv1\.[23]$/);
    await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
    const ev = lib.events(peer.out).map((l) => l.split(' ').slice(1).join(' '));
    assert.deepEqual(ev, ['connect', 'secure localhost', 'close']);
});

test('starttls: a certificate failure after STARTTLS is a tls-stage error', async (t) => {
    const peer = await lib.startPeer({ t, tls: 'starttls', cert: pki.expired.cert, key: pki.expired.key });
    const r = await probe(['starttls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertFail(r, { stage: 'tls', name: 'MC_ETLS', exit: 69, match: /certificate has expired/ });
});

test('starttls: bytes after the 220 are refused before any handshake (response injection)', async (t) => {
    // A fault injector, not an SMTP server: real servers never do this. It
    // answers STARTTLS with "220" and a forged "250" in one write, as a
    // man in the middle would (CVE-2011-0411).
    let afterStarttls = null;
    const socks = new Set();
    const srv = net.createServer((c) => {
        socks.add(c);
        c.on('error', () => {});
        let buf = '';
        let upgraded = false;
        c.write('220 injector.test ESMTP\r\n');
        c.on('data', (d) => {
            if (upgraded) {
                afterStarttls = Buffer.concat([afterStarttls, d]);
                return;
            }
            buf += d.toString('latin1');
            let nl;
            while (!upgraded && (nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl).trim().toUpperCase();
                buf = buf.slice(nl + 1);
                if (line.startsWith('EHLO')) {
                    c.write('250-injector.test\r\n250 STARTTLS\r\n');
                } else if (line === 'STARTTLS') {
                    upgraded = true;
                    afterStarttls = Buffer.from(buf, 'latin1');
                    c.write('220 go ahead\r\n250 injected\r\n');
                } else {
                    c.write('500 what\r\n');
                }
            }
        });
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => { for (const c of socks) c.destroy(); srv.close(); });

    const r = await probe(['starttls', '127.0.0.1', String(srv.address().port), '--ca', pki.ca]);
    assertFail(r, { stage: 'starttls', name: 'MC_EREFUSED', exit: 69, match: /response injection/ });
    assert.ok(afterStarttls !== null, 'the injector never saw STARTTLS');
    // no ClientHello (0x16...) left the client
    assert.equal(afterStarttls.length, 0, `client sent ${afterStarttls.length} bytes after STARTTLS`);
});

test('starttls: a server without STARTTLS is never used in the clear', async (t) => {
    const peer = await lib.startPeer({ t, tls: 'starttls', cert: pki.server.cert, key: pki.server.key,
        starttls: false });
    const r = await probe(['starttls', '127.0.0.1', String(peer.port), '--ca', pki.ca]);
    assertFail(r, { stage: 'starttls', name: 'MC_EREFUSED', exit: 69 });
    await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
    assert.ok(!lib.events(peer.out).some((l) => / (auth|mail|secure)/.test(l)), lib.events(peer.out).join('\n'));
});

test('connect: a refused port is a transient connect-stage error naming host:port', async () => {
    const port = await deadPort();
    const r = await probe(['plain', '127.0.0.1', String(port)]);
    assertFail(r, { stage: 'connect', name: 'MC_ENET', exit: 75 });
    assert.equal(r.message, `127.0.0.1:${port}: connection refused`);
    const r6 = await probe(['tls', 'localhost', String(port), '--ca', pki.ca]);
    assertFail(r6, { stage: 'connect', name: 'MC_ENET', exit: 75, match: /^localhost:\d+: connection refused$/ });
});

test('connect: an unresolvable name is a connect-stage error', async () => {
    const r = await probe(['plain', 'no-such-host.invalid', '25']);
    assertFail(r, { stage: 'connect', name: 'MC_ENET', exit: 75, match: /^no-such-host\.invalid:25: / });
});

test('timeouts: a silent server times out within the bound, in TLS and in the clear', async (t) => {
    const port = String(await silentServer(t));
    let start = Date.now();
    const r = await probe(['tls', '127.0.0.1', port, '--ca', pki.ca, '--timeout-ms', '500']);
    assertFail(r, { stage: 'tls', name: 'MC_ETIMEOUT', exit: 75, match: /timed out/ });
    assert.ok(Date.now() - start < 5000, 'the TLS handshake wait was not bounded');
    start = Date.now();
    const p = await probe(['plain', '127.0.0.1', port, '--timeout-ms', '500']);
    assertFail(p, { stage: 'greeting', name: 'MC_ETIMEOUT', exit: 75,
        match: /^127\.0\.0\.1:\d+: timed out after 1 s waiting for the server$/ });
    assert.ok(Date.now() - start < 5000, 'the read wait was not bounded');
});

/** A server that greets and hangs up at once (clear or TLS). */
async function hangUpServer(t, secure) {
    const greetAndGo = (c) => {
        c.on('error', () => {});
        c.end('220 closing.test ESMTP\r\n', () => c.destroy());
    };
    const srv = secure
        ? tls.createServer({ cert: fs.readFileSync(pki.server.cert), key: fs.readFileSync(pki.server.key) }, greetAndGo)
        : net.createServer(greetAndGo);
    srv.on('tlsClientError', () => {});
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    return String(srv.address().port);
}

test('writes to a peer that closed fail with an error, never SIGPIPE', async (t) => {
    for (const [transport, secure] of [['plain', false], ['tls', true]]) {
        const port = await hangUpServer(t, secure);
        // 16 MB: far more than the socket buffers hold, so send() meets the closed peer
        const r = await lib.run(PROBE, [transport, '127.0.0.1', port, '--ca', pki.ca, '--flood', String(16 << 20)],
            { timeoutMs: 30000 });
        assert.equal(r.signal, null, `${transport}: the probe died of ${r.signal}`);
        const line = r.stdout.trim();
        assert.match(line, /^error stage=data code=MC_ENET outcome=\d+ 127\.0\.0\.1:\d+: (broken pipe|connection reset by peer)$/,
            `${transport}: ${line} ${r.stderr}`);
        assert.equal(r.code, 75, `${transport}: ${line}`);
    }
});
