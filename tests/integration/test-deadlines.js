// Deadlines, not per-read timeouts (issue 9, point 3): timeout_s bounds the
// connect, the TLS handshake and each reply in total, however a server
// trickles its bytes; the message body fails only after timeout_s without
// progress. The real server (tests/peers/smtp-peer.js, npm smtp-server)
// sits behind tests/peers/trickle-peer.js, a FAULT INJECTOR relay that only
// changes the pace: one byte of the server's every N ms (greeting, replies,
// the TLS handshake), or the client's bytes read in steps with a pause after
// each. Each case runs `mailconn send` and asserts the exit code, the stage
// and "timed out" on stderr, that nothing says "sent" and the server stored
// nothing, and (normal build only) the wall time: under 2 * timeout_s + 2 s.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const sanitized = (process.env.MAILCONN_SANITIZE || 'none') !== 'none';

let pki;
let base;
test.before(() => {
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
});
test.after(() => lib.stopAll());

function config(dir, peer, extra) {
    return lib.writeConfig(dir, {
        servers: [Object.assign({
            name: 'slow',
            host: '127.0.0.1',
            port: peer.port,
            transport: 'plain',
            sender: { address: 'app@example.test' },
        }, extra)],
    });
}

async function send(cfg, args) {
    const t0 = Date.now();
    const r = await lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test',
        '--subject', 'deadline', ...(args || ['--body', 'deadline test\n'])], { timeoutMs: 120000 });
    r.ms = Date.now() - t0;
    return r;
}

const relay = (t, target, args) => lib.startScript('trickle-peer.js', {
    t, args: ['--target', `127.0.0.1:${target.port}`, ...args],
});

/** A failure within the bound: exit 75, `stage`, "timed out", not sent. */
function assertTimedOut(r, { stage, timeoutS, server }) {
    const ctx = `\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}\n(${r.ms} ms)`;
    assert.equal(r.signal, null, `the CLI died of a signal${ctx}`);
    assert.equal(r.timedOut, false, `the CLI hung${ctx}`);
    assert.equal(r.code, 75, `exit code${ctx}`);
    assert.match(r.stderr, new RegExp(`^mailconn: .*${stage}: .*timed out`, 'm'), `stage and timeout${ctx}`);
    assert.doesNotMatch(r.stdout, /^sent/m, `reported as sent${ctx}`);
    if (server) assert.equal(lib.messageCount(server.out), 0, `the server stored a message${ctx}`);
    if (!sanitized) {
        const bound = (2 * timeoutS + 2) * 1000;
        assert.ok(r.ms < bound, `took ${r.ms} ms, bound ${bound} ms${ctx}`);
        assert.ok(r.ms >= timeoutS * 1000 - 100, `gave up early: ${r.ms} ms${ctx}`);
    }
}

test('a greeting trickled 1 byte / 1.5 s: timed out at the greeting within timeout_s 2', async (t) => {
    const server = await lib.startPeer({ t });
    const slow = await relay(t, server, ['--down-interval-ms', '1500']);
    const r = await send(config(lib.tmpdir(t), slow, { timeout_s: 2 }));
    assertTimedOut(r, { stage: 'greeting', timeoutS: 2, server });
});

test('a whole dialogue trickled 0.3 s / byte at timeout_s 1: fails, never "sent"', async (t) => {
    const server = await lib.startPeer({ t });
    const slow = await relay(t, server, ['--down-interval-ms', '300']);
    const r = await send(config(lib.tmpdir(t), slow, { timeout_s: 1 }));
    assertTimedOut(r, { stage: 'greeting', timeoutS: 1, server });
});

test('an implicit TLS handshake trickled 1 byte / s: timed out at stage tls within timeout_s 3', async (t) => {
    const server = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key });
    const slow = await relay(t, server, ['--down-interval-ms', '1000']);
    const r = await send(config(lib.tmpdir(t), slow, { timeout_s: 3, transport: 'tls', ca_file: pki.ca }));
    assertTimedOut(r, { stage: 'tls', timeoutS: 3, server });
    assert.match(r.stderr, /TLS handshake/, r.stderr);
});

test('the TLS handshake after STARTTLS trickled 1 byte / s: timed out at stage tls within timeout_s 3', async (t) => {
    const server = await lib.startPeer({ t, tls: 'starttls', cert: pki.server.cert, key: pki.server.key });
    // greeting, EHLO and the 220 to STARTTLS at full speed, the handshake trickled
    const slow = await relay(t, server, ['--down-interval-ms', '1000', '--trickle-after', 'STARTTLS\r\n']);
    const r = await send(config(lib.tmpdir(t), slow, { timeout_s: 3, transport: 'starttls', ca_file: pki.ca }));
    assertTimedOut(r, { stage: 'tls', timeoutS: 3, server });
    assert.match(r.stderr, /TLS handshake/, r.stderr);
});

test('a blackholed connect (full accept queue on loopback): timed out at stage connect', async (t) => {
    const hole = await lib.startScript('trickle-peer.js', { t, args: ['--blackhole'] });
    const r = await send(config(lib.tmpdir(t), hole, { timeout_s: 2 }));
    assertTimedOut(r, { stage: 'connect', timeoutS: 2 });
});

test('a body read slowly but steadily takes longer than timeout_s and is still sent', async (t) => {
    const dir = lib.tmpdir(t);
    const body = path.join(dir, 'body.txt');
    const line = Buffer.from('y'.repeat(76) + '\n');
    const chunk = Buffer.concat(Array(2048).fill(line));
    const fd = fs.openSync(body, 'w');
    for (let i = 0; i < 80; i++) fs.writeSync(fd, chunk);   // 12.6 MB
    fs.closeSync(fd);
    const server = await lib.startPeer({ t });
    // every read of the relay's is followed by 40 ms without reading
    const slow = await relay(t, server, ['--up-pause-ms', '40']);
    const r = await send(config(dir, slow, { timeout_s: 2 }), ['--body-file', body]);
    const ctx = `\nstderr:\n${r.stderr}\n(${r.ms} ms)`;
    assert.equal(r.code, 0, `exit code${ctx}`);
    assert.match(r.stdout, /^sent/m, ctx);
    // the body took more than timeout_s: only its progress is bounded
    assert.ok(r.ms > 2000, `the body was not slow enough to prove anything: ${r.ms} ms`);
    await lib.waitFor(() => lib.messageCount(server.out) === 1, 10000, 25, 'the message stored');
    const [m] = await lib.readMessages(server.out);
    // every line of the body arrived (CRLF on the wire)
    const y = 'y'.repeat(76);
    const got = m.raw.toString('latin1').split('\r\n').filter((l) => l === y).length;
    assert.equal(got, 80 * 2048, 'the lines of the body the server stored');
});
