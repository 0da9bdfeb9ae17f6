// The connection pool (issue 6): throttling replies move a message to
// another connection and never deliver it twice, and an OAuth server's
// token endpoint sees one request however many sends follow.
//
// Peers: tests/peers/smtp-peer.js (npm smtp-server) with
// --throttle-sessions, which answers MAIL with `432 4.3.2` on the chosen
// connections (1 = the first to arrive), as Exchange Online does to a
// client over its connection limit; tests/peers/oidc-peer.js (npm
// oidc-provider) for tokens, which smtp-peer checks by RFC 7662
// introspection (--introspect), so every AUTH is proven against the real
// authorization server.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const BIN = process.env.MAILCONN_BIN;
const BENCH = process.env.MAILCONN_BENCH;

test.after(() => lib.stopAll());

const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** N message files in dir, each with its own Message-ID. */
function messages(dir, n, tag) {
    const files = [];
    for (let i = 1; i <= n; i++) {
        const f = path.join(dir, `${tag}-${i}.eml`);
        fs.writeFileSync(f, `From: sender@example.org\nTo: rcpt@example.net\n` +
            `Subject: ${tag} ${i}\nMessage-ID: <${tag}-${i}@pool.test>\n\nmessage ${i} of ${n}\n`);
        files.push(f);
    }
    return files;
}

function plainConfig(dir, peer) {
    return lib.writeConfig(dir, { servers: [{ name: 'relay', host: '127.0.0.1', port: peer.port,
        transport: 'plain', sender: { address: 'sender@example.org' } }] });
}

/** Message-IDs the peer stored, with the connection (session) each came over. */
async function stored(peer) {
    const msgs = await lib.readMessages(peer.out);
    return msgs.map((m) => ({ id: m.messageId, session: m.meta.sessionId }));
}

/** Session ids in order of connection (1 = the first). */
function sessionNumber(peer) {
    const ids = lib.sessions(peer.out);
    return (id) => ids.indexOf(id) + 1;
}

const throttled = (peer) => lib.events(peer.out).filter((l) => / throttled$/.test(l));

test('432 4.3.2 on connections 1 and 3, --jobs 3: all 30 delivered once, none over 1 or 3', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, extraArgs: ['--throttle-sessions', '1,3'] });
    const cfg = plainConfig(dir, peer);
    const files = messages(dir, 30, 'jobs');
    const r = await lib.runCli(['--config', cfg, 'send', '-t', '--jobs', '3', ...files]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('sent ')).length, 30, show(r));
    assert.doesNotMatch(r.stderr, /mailconn:/, show(r));
    const got = await stored(peer);
    const ids = got.map((m) => m.id).sort();
    const want = files.map((_, i) => `<jobs-${i + 1}@pool.test>`).sort();
    assert.deepEqual(ids, want, 'every message exactly once');
    const num = sessionNumber(peer);
    for (const m of got) assert.ok(![1, 3].includes(num(m.session)), `${m.id} over connection ${num(m.session)}`);
    assert.ok(throttled(peer).length >= 1, 'the peer did throttle');
    // at most max_connections (10) at once, and far fewer connections than messages
    assert.ok(lib.sessions(peer.out).length <= 6, `${lib.sessions(peer.out).length} connections`);
});

test('one connection throttled twice in a row: the message moves on and arrives once', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, extraArgs: ['--throttle-sessions', '1,2'] });
    const cfg = plainConfig(dir, peer);
    const files = messages(dir, 5, 'seq');
    const r = await lib.runCli(['--config', cfg, 'send', '-t', ...files]);
    assert.equal(r.code, 0, show(r));
    const got = await stored(peer);
    assert.deepEqual(got.map((m) => m.id).sort(), files.map((_, i) => `<seq-${i + 1}@pool.test>`).sort());
    const num = sessionNumber(peer);
    assert.deepEqual([...new Set(got.map((m) => num(m.session)))], [3], 'all over the third connection');
    assert.equal(throttled(peer).length, 2);
});

test('throttled on every connection: 3 retries, then transient (75), nothing delivered', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, extraArgs: ['--throttle-sessions', '1,2,3,4,5,6,7,8,9,10'] });
    const cfg = plainConfig(dir, peer);
    const files = messages(dir, 1, 'never');
    const r = await lib.runCli(['--config', cfg, 'send', '-t', ...files]);
    assert.equal(r.code, 75, show(r));
    assert.match(r.stderr, /432/, show(r));
    assert.doesNotMatch(r.stdout, /^sent /m, show(r));
    assert.equal(lib.messageCount(peer.out), 0);
    // the first try and 3 retries, each on a new connection
    assert.equal(throttled(peer).length, 4);
    assert.equal(lib.sessions(peer.out).length, 4);
});

/** Run a program, call onLine for each stdout line (bounded). */
function runLines(bin, args, env, onLine, timeoutMs = 60000) {
    return new Promise((resolve, reject) => {
        const child = spawn(bin, args, { env: Object.assign({}, process.env, env),
            stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        let pending = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        const take = (d) => {
            pending += d;
            let nl;
            while ((nl = pending.indexOf('\n')) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                Promise.resolve(onLine(line, child)).catch((e) => {
                    err += `\n[test: ${e.message}]`;
                    child.kill('SIGKILL');
                });
            }
        };
        child.stdout.on('data', (d) => { out += d; take(d.toString()); });
        child.stderr.on('data', (d) => { err += d; take(d.toString()); });
        child.stdin.on('error', () => {});
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout: out, stderr: err }); });
    });
}

test('only a refresh token stored: 10,000 sends over many connections make one token request', async (t) => {
    assert.ok(BENCH, 'MAILCONN_BENCH is set (run with meson test)');
    const dir = lib.tmpdir(t);
    const pki = lib.mkca(path.join(dir, 'pki'));
    const op = await startOidc({ pki, t, accessTtl: 3600 });
    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`] });
    const state = path.join(dir, 'state');
    const cfg = lib.writeConfig(dir, { servers: [{
        name: 'oauth', host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account },
        auth: { provider: 'manual', user: op.account, client_id: 'conf-post', client_secret: op.secret,
            token_url: op.tokenUrl, device_authorization_url: op.deviceUrl, grant: 'device_code',
            scope: 'smtp offline_access', ca_file: pki.ca, timeout_s: 10 },
    }] });
    const env = { MAILCONN_STATE_DIR: state };

    // a person authorizes once (device flow): a refresh token is stored
    let approved = false;
    const a = await runLines(BIN, ['--config', cfg, 'auth', '--server', 'oauth', '--device'], env,
        async (line, child) => {
            const m = /enter the code (\S+)/.exec(line);
            if (m && !approved) {
                approved = true;
                await op.approveDevice(m[1]);
                child.stdin.end();
            }
        });
    assert.equal(a.code, 0, show(a));
    // ... and only it: the access token is forgotten
    const file = path.join(state, 'tokens', 'oauth.json');
    const tok = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.ok(tok.refresh_token, 'a refresh token was stored');
    delete tok.access_token;
    delete tok.expires_at;
    fs.writeFileSync(file, JSON.stringify(tok), { mode: 0o600 });

    await op.reset();
    // 4 threads, a new connection (so a new AUTH, so a token) every 500 messages
    const r = await lib.run(BENCH, ['--config', cfg, '--count', '10000', '--size', '600',
        '--threads', '4', '--per-session', '500', '--to', 'rcpt@example.net'],
    { env, timeoutMs: 170000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent 10000 failed 0 /, show(r));
    const counts = await op.counts();
    const requests = Object.values(counts.token).reduce((s, n) => s + n, 0);
    assert.deepEqual(counts.token, { refresh_token: 1 }, `token requests: ${JSON.stringify(counts.token)}`);
    assert.equal(requests, 1);
    // every connection authenticated with a token the server confirmed
    const auths = lib.events(peer.out).filter((l) => / auth (XOAUTH2|OAUTHBEARER) /.test(l));
    assert.ok(auths.length >= 20, `${auths.length} AUTHs`);
    assert.equal(lib.events(peer.out).filter((l) => / auth-fail /.test(l)).length, 0);
    assert.ok(counts.introspection >= auths.length, 'each AUTH was checked by introspection');
    assert.equal(lib.messageCount(peer.out), 10000);
});
