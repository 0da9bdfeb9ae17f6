// The OAuth engine end to end against a real authorization server
// (tests/peers/oidc-peer.js: npm oidc-provider over HTTPS with the test CA).
// tests/integration/oauth-probe runs one engine operation per process; it
// prints only the SHA-256 prefix of a token, which the test compares with
// the token file and with the server's introspection.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc, request } = require('../peers/oauth-lib');

const PROBE = process.env.MAILCONN_OAUTH_PROBE;
const transcript = [];          // every probe's stdout + stderr
const secrets = new Set();      // every token and secret seen

function sha16(s) {
    return lib.sha256(s).slice(0, 16);
}

/** Run the probe; opts.onLine(line, child) sees stdout lines as they come. */
function probe(op, o, opts = {}) {
    const args = [op, '--server', o.server, '--state', o.state, '--provider', o.provider || 'manual',
        '--auth', JSON.stringify(o.auth), '-v', ...(opts.args || [])];
    return new Promise((resolve, reject) => {
        const child = spawn(PROBE, args, { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        let pending = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs || 60000);
        child.stdout.on('data', (d) => {
            out += d;
            pending += d;
            let nl;
            while ((nl = pending.indexOf('\n')) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                if (opts.onLine) Promise.resolve(opts.onLine(line, child)).catch((e) => {
                    err += `\n[test: ${e.message}]`;
                    child.kill('SIGKILL');
                });
            }
        });
        child.stderr.on('data', (d) => { err += d; });
        child.on('error', reject);
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            transcript.push(out, err);
            const lines = out.trim().split('\n');
            resolve({ code, signal, out, err, last: lines[lines.length - 1] || '' });
        });
        if (!opts.keepStdin) child.stdin.end();
    });
}

function tokenFile(o) {
    return path.join(o.state, 'tokens', `${o.server}.json`);
}

function readTokens(o) {
    const t = JSON.parse(fs.readFileSync(tokenFile(o), 'utf8'));
    if (t.access_token) secrets.add(t.access_token);
    if (t.refresh_token) secrets.add(t.refresh_token);
    return t;
}

/** Make the stored access token expired (the file keeps mode 0600). */
function expire(o) {
    const t = readTokens(o);
    t.expires_at = 0;
    fs.writeFileSync(tokenFile(o), JSON.stringify(t));
}

function mode(p) {
    return fs.statSync(p).mode & 0o777;
}

async function closedPort() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    await new Promise((r) => srv.close(r));
    return port;
}

let op;      // the OAuth server
let base;    // tmpdir
function server(name, auth) {
    return {
        server: name,
        state: path.join(base, 'state'),
        auth: Object.assign({
            user: op.account,
            authorization_url: op.authorizationUrl,
            token_url: op.tokenUrl,
            device_authorization_url: op.deviceUrl,
            revocation_url: op.revocationUrl,
            scope: 'https://mail.google.com/ offline_access',
            ca_file: op.pki.ca,
            timeout_s: 10,
        }, auth),
    };
}

const PUBLIC = { client_id: 'public', client_auth: 'none' };
let browserServer;   // authorized through the browser flow (public client)
let deviceServer;    // authorized through the device flow (conf-post)

test.before(async () => {
    assert.ok(PROBE, 'MAILCONN_OAUTH_PROBE is set (run with meson test)');
    base = lib.tmpdir();
    op = await startOidc({ accessTtl: 3600 });
    secrets.add(op.secret);
});

test.after(async () => {
    if (op) await op.stop();
});

async function browserFlow(o, extra = {}) {
    let played = null;
    const r = await probe('browser', o, {
        args: ['--wait', '30'],
        onLine: async (line) => {
            const m = /^say (https:\/\/\S+)$/.exec(line);
            if (m && !played) {
                played = await op.playBrowser(m[1]);
                if (extra.onPlayed) await extra.onPlayed(played);
            }
        },
    });
    return { r, played };
}

test('authorization code + PKCE over a loopback redirect stores a refresh token 0600', async () => {
    browserServer = server('browser', PUBLIC);
    const { r, played } = await browserFlow(browserServer);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.last, /^ok browser$/);
    assert.ok(played, 'the probe printed the authorization URL');
    assert.equal(played.status, 200, 'the loopback listener answered the redirect');
    assert.match(played.body, /close this window/);
    const u = new URL(played.location);
    assert.equal(u.hostname, '127.0.0.1');
    assert.ok(u.searchParams.get('code') && u.searchParams.get('state'));
    assert.equal(mode(tokenFile(browserServer)), 0o600);
    assert.equal(mode(path.join(browserServer.state, 'tokens')), 0o700);
    assert.equal(mode(browserServer.state), 0o700);
    const t = readTokens(browserServer);
    assert.ok(t.refresh_token, 'a refresh token is stored');
    assert.deepEqual(t.identity, { provider: 'manual', client_id: 'public', user: op.account,
                                   token_url: op.tokenUrl });
    // the stored token is what the engine hands out, and the server knows it
    const tok = await probe('token', browserServer);
    assert.equal(tok.code, 0, tok.out + tok.err);
    assert.equal(tok.last, `ok token sha256=${sha16(t.access_token)}`);
    const info = await op.introspect(t.access_token);
    assert.equal(info.active, true);
    assert.equal(info.client_id, 'public');
    assert.match(info.scope, /https:\/\/mail\.google\.com\//);
});

test('--browser runs the browser command with the URL as its one argument', async () => {
    const o = server('browser-cmd', PUBLIC);
    const cmd = path.join(base, 'fake-browser');
    fs.writeFileSync(cmd, `#!/bin/sh\nexec "${process.execPath}" "${path.join(lib.PEERS_DIR, 'oauth-lib.js')}" play "$1" "${op.pki.ca}"\n`,
        { mode: 0o700 });
    const r = await probe('browser', o, { args: ['--wait', '30', '--browser', cmd] });
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.last, /^ok browser$/);
    assert.ok(readTokens(o).refresh_token);
});

test('the paste mode redeems the pasted redirect URL; a wrong state is refused', async () => {
    const o = server('paste', PUBLIC);
    const r = await probe('paste', o, {
        keepStdin: true,
        onLine: async (line, child) => {
            const m = /^say (https:\/\/\S+)$/.exec(line);
            if (m) {
                const played = await op.playBrowser(m[1], { load: false });
                child.stdin.end(`${played.location}\n`);
            }
        },
    });
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.last, /^ok paste$/);
    assert.ok(readTokens(o).refresh_token);

    const o2 = server('paste2', PUBLIC);
    const bad = await probe('paste', o2, {
        keepStdin: true,
        onLine: async (line, child) => {
            const m = /^say (https:\/\/\S+)$/.exec(line);
            if (m) {
                const played = await op.playBrowser(m[1], { load: false });
                const u = new URL(played.location);
                u.searchParams.set('state', 'forged');
                child.stdin.end(`${u}\n`);
            }
        },
    });
    assert.equal(bad.code, 77, bad.out + bad.err);
    assert.match(bad.last, /code=EAUTH .*state does not match/);
    assert.equal(fs.existsSync(tokenFile(o2)), false);
});

test('consent refused in the browser ends with 77', async () => {
    const o = server('denied', PUBLIC);
    await op.deny();
    const { r } = await browserFlow(o);
    assert.equal(r.code, 77, r.out + r.err);
    assert.match(r.last, /code=EAUTH .*denied/);
    assert.equal(fs.existsSync(tokenFile(o)), false);
});

test('the device flow stores a refresh token 0600 once the test approves the code', async () => {
    deviceServer = server('device', { client_id: 'conf-post', client_secret: op.secret });
    let approved = false;
    const r = await probe('device', deviceServer, {
        args: ['--wait', '30'],
        onLine: async (line) => {
            const m = /enter the code (\S+)/.exec(line);
            if (m && !approved) {
                approved = true;
                await op.approveDevice(m[1]);
            }
        },
    });
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.last, /^ok device$/);
    assert.ok(approved);
    assert.equal(mode(tokenFile(deviceServer)), 0o600);
    const t = readTokens(deviceServer);
    assert.ok(t.refresh_token);
    assert.equal((await op.introspect(t.access_token)).active, true);
});

test('a device code refused by the user ends with 77', async () => {
    const o = server('device-denied', { client_id: 'conf-post', client_secret: op.secret });
    const r = await probe('device', o, {
        args: ['--wait', '30'],
        onLine: async (line) => {
            const m = /enter the code (\S+)/.exec(line);
            if (m) await op.approveDevice(m[1], { deny: true });
        },
    });
    assert.equal(r.code, 77, r.out + r.err);
    assert.match(r.last, /code=EAUTH/);
});

test('an expired access token is refreshed; the rotated refresh token is stored', async () => {
    const before = readTokens(browserServer);
    expire(browserServer);
    const c0 = await op.counts();
    const r = await probe('token', browserServer);
    assert.equal(r.code, 0, r.out + r.err);
    const after = readTokens(browserServer);
    assert.notEqual(after.access_token, before.access_token);
    assert.notEqual(after.refresh_token, before.refresh_token, 'rotation: a new refresh token');
    assert.ok(after.refresh_used_at > 0);
    assert.equal(r.last, `ok token sha256=${sha16(after.access_token)}`);
    assert.equal((await op.introspect(after.access_token)).active, true);
    const c1 = await op.counts();
    assert.equal((c1.token.refresh_token || 0) - (c0.token.refresh_token || 0), 1);
    assert.equal(mode(tokenFile(browserServer)), 0o600);
});

test('8 threads x 2 processes with an expired token make exactly one refresh request', async () => {
    expire(deviceServer);
    const c0 = await op.counts();
    const [a, b] = await Promise.all([
        probe('token', deviceServer, { args: ['--threads', '8'] }),
        probe('token', deviceServer, { args: ['--threads', '8'] }),
    ]);
    assert.equal(a.code, 0, a.out + a.err);
    assert.equal(b.code, 0, b.out + b.err);
    const t = readTokens(deviceServer);
    assert.equal(a.last, `ok token sha256=${sha16(t.access_token)} threads=8 distinct=1`);
    assert.equal(b.last, a.last);
    const c1 = await op.counts();
    assert.equal((c1.token.refresh_token || 0) - (c0.token.refresh_token || 0), 1,
        `refresh requests: ${JSON.stringify(c1.token)} vs ${JSON.stringify(c0.token)}`);
});

test('client credentials: fetched and cached; a wrong secret ends with 78', async () => {
    const o = server('app', { client_id: 'conf-basic', client_auth: 'basic', client_secret: op.secret,
                              grant: 'client_credentials', scope: 'smtp' });
    const c0 = await op.counts();
    const r1 = await probe('token', o);
    const r2 = await probe('token', o);
    assert.equal(r1.code, 0, r1.out + r1.err);
    assert.equal(r2.last, r1.last, 'the cached token is reused');
    const c1 = await op.counts();
    assert.equal((c1.token.client_credentials || 0) - (c0.token.client_credentials || 0), 1);
    assert.equal((await op.introspect(readTokens(o).access_token)).active, true);

    const wrong = server('app-wrong', { client_id: 'conf-post', client_secret: 'not-the-secret',
                                        grant: 'client_credentials', scope: 'smtp' });
    secrets.add('not-the-secret');
    const bad = await probe('token', wrong);
    assert.equal(bad.code, 78, bad.out + bad.err);
    assert.match(bad.last, /code=ECONFIG .*invalid_client/);
});

test('a refresh with a wrong client secret ends with 78', async () => {
    const o = Object.assign({}, deviceServer, {
        auth: Object.assign({}, deviceServer.auth, { client_secret: 'also-not-the-secret' }),
    });
    secrets.add('also-not-the-secret');
    expire(o);
    const r = await probe('token', o);
    assert.equal(r.code, 78, r.out + r.err);
    assert.match(r.last, /code=ECONFIG /);
});

test('a token endpoint that is down ends with 75 (transient)', async () => {
    const port = await closedPort();
    const o = Object.assign({}, deviceServer, {
        auth: Object.assign({}, deviceServer.auth),
    });
    // another token endpoint is another identity: use a fresh server name
    o.server = 'down';
    o.auth.token_url = `https://127.0.0.1:${port}/token`;
    o.auth.grant = 'client_credentials';
    const r = await probe('token', o);
    assert.equal(r.code, 75, r.out + r.err);
    assert.match(r.last, /code=EOAUTH .*transient=1/);
});

test('a revoked refresh token ends with 77 and says to run `mailconn auth`', async () => {
    const t = readTokens(browserServer);
    const rv = await request(op.revocationUrl, {
        method: 'POST', ca: fs.readFileSync(op.pki.ca),
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `token=${encodeURIComponent(t.refresh_token)}&token_type_hint=refresh_token&client_id=public`,
    });
    assert.equal(rv.status, 200, rv.body);
    expire(browserServer);
    const r = await probe('token', browserServer);
    assert.equal(r.code, 77, r.out + r.err);
    // the library's hint names no CLI command (the CLI maps it: test-oauth-send.js)
    assert.match(r.last, /code=EAUTH .*invalid_grant.*hint=authorize server browser again/);
});

test('import redeems a refresh token once; revoke revokes it and forgets the files', async () => {
    const t = readTokens(deviceServer);
    const o = server('imported', { client_id: 'conf-post', client_secret: op.secret });
    const f = path.join(base, 'rt.txt');
    fs.writeFileSync(f, `  ${t.refresh_token}\n`, { mode: 0o600 });
    const r = await probe('import', o, { args: ['--refresh-token-file', f] });
    assert.equal(r.code, 0, r.out + r.err);
    const imported = readTokens(o);
    assert.ok(imported.access_token && imported.refresh_token);
    const st = await probe('status', o);
    assert.match(st.last, /^ok status stored=1 mismatch=0 access_expires=[1-9]\d* refresh_issued=[1-9]/);

    const c0 = await op.counts();
    const rv = await probe('revoke', o);
    assert.equal(rv.code, 0, rv.out + rv.err);
    assert.equal((await op.counts()).revocation - c0.revocation, 1);
    assert.equal(fs.existsSync(tokenFile(o)), false);
    assert.equal((await op.introspect(imported.access_token)).active, false,
        'revoking the refresh token revoked its grant');
    const after = await probe('token', o);
    assert.equal(after.code, 77);
    assert.match(after.last, /no token stored for server imported/);
});

test('no token or secret appears in any probe output or debug log', () => {
    assert.ok(transcript.length > 10);
    assert.ok(secrets.size > 5);
    const all = transcript.join('\n');
    assert.match(all, /<redacted>/, 'the debug logs ran');
    for (const s of secrets) {
        assert.equal(all.includes(s), false, `a secret of ${s.length} characters leaked`);
    }
});
