// OAuth for a web application through mailconn.h alone: tests/integration/
// oauth-app (linked to libmailconn.so) runs mc_oauth_begin in one process
// and mc_oauth_finish in a second one, against a real authorization server
// (tests/peers/oidc-peer.js: npm oidc-provider over HTTPS with the test CA).
// The test plays the browser through login and consent up to the redirect
// (a loopback URL nobody listens on: the Location header is the callback
// URL), then checks the tokens with a real send (tests/peers/smtp-peer.js
// accepts a bearer token only when the introspection endpoint says it is
// active). A reused, wrong or expired state and error=access_denied store
// nothing; the pending authorization is a 0600 file in a 0700 folder.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const APP = process.env.MAILCONN_OAUTH_APP;
const transcript = [];
const secrets = new Set();

let pki, op, base, state, cfg, peer, redirect;

/** Run oauth-app; opts.onLine(line, child) sees stdout lines as they come. */
function app(args, opts = {}) {
    return new Promise((resolve, reject) => {
        const env = Object.assign({}, process.env);
        delete env.MAILCONN_STATE_DIR;   // the context's state_dir option is what counts
        delete env.OAUTH_APP_STORE;
        Object.assign(env, opts.env || {});
        const child = spawn(APP, [cfg, state, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
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
            transcript.push(`$ oauth-app ${args.join(' ')}\n${out}${err}`);
            resolve({ code, signal, out, err, last: out.trim().split('\n').pop() || '' });
        });
        child.stdin.end();
    });
}

const show = (r) => `exit ${r.code} ${r.signal || ''}\nstdout:\n${r.out || r.stdout}\nstderr:\n${r.err || r.stderr}`;

function mode(p) {
    return fs.statSync(p).mode & 0o777;
}

function tokenFile(name) {
    return path.join(state, 'tokens', `${name}.json`);
}

function readTokens(name) {
    const t = JSON.parse(fs.readFileSync(tokenFile(name), 'utf8'));
    for (const s of [t.access_token, t.refresh_token]) if (s) secrets.add(s);
    return t;
}

const pendingDir = () => path.join(state, 'pending');
const pendingFiles = () => {
    try { return fs.readdirSync(pendingDir()); } catch (_) { return []; }
};

function parseStatus(line) {
    const m = /^status (.*)$/.exec(line);
    assert.ok(m, `a status line: ${line}`);
    return Object.fromEntries(m[1].split(' ').map((kv) => kv.split('=')));
}

async function status(name, opts) {
    const r = await app(['status', name], opts);
    assert.equal(r.code, 0, show(r));
    return parseStatus(r.last);
}

/** begin: the authorization URL (and the state it carries). */
async function begin(name, opts) {
    const r = await app(['begin', name, redirect], opts);
    assert.equal(r.code, 0, show(r));
    const m = /^url (https:\/\/\S+)$/.exec(r.last);
    assert.ok(m, show(r));
    const url = new URL(m[1]);
    assert.equal(url.searchParams.get('redirect_uri'), redirect);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    return { url: m[1], state: url.searchParams.get('state') };
}

/** The browser: login and consent at oidc-provider, up to the redirect. */
async function browse(url) {
    const p = await op.playBrowser(url, { load: false });
    assert.ok(p.location.startsWith(redirect), p.location);
    return p.location;
}

async function closedPort() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    await new Promise((r) => srv.close(r));
    return port;
}

function send(server) {
    return lib.runLines(['--config', cfg, 'send', '--server', server, '--to', 'rcpt@example.net',
        '--subject', `app ${server}`, '--body', 'hello from a web app'],
    { env: { MAILCONN_STATE_DIR: state } });
}

const authEvents = () => lib.events(peer.out).map((l) => l.slice(l.indexOf(' ') + 1))
    .filter((e) => /^auth(-fail)? /.test(e));

test.before(async () => {
    assert.ok(APP, 'MAILCONN_OAUTH_APP is set (run with meson test)');
    base = lib.tmpdir();
    state = path.join(base, 'state');
    pki = lib.mkca(path.join(base, 'pki'));
    op = await startOidc({ pki, accessTtl: 3600 });
    secrets.add(op.secret);
    peer = await lib.startPeer({
        out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`, '--oauth-style', 'gmail',
            '--token-user', op.account],
    });
    // a loopback callback nobody listens on: the browser's redirect is the URL
    redirect = `http://127.0.0.1:${await closedPort()}/`;
    const endpoints = {
        authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
        device_authorization_url: op.deviceUrl, revocation_url: op.revocationUrl,
        ca_file: pki.ca, timeout_s: 10,
    };
    const google = Object.assign({
        provider: 'google', user: op.account, client_id: 'public',
        scope: 'https://mail.google.com/ offline_access',
    }, endpoints);
    const srv = (name, auth) => ({
        name, host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account }, auth,
    });
    cfg = lib.writeConfig(base, { servers: [
        srv('gmail', google), srv('gmail2', google), srv('gmail3', google),
        srv('outlook', Object.assign({ provider: 'microsoft', tenant: 'organizations',
            user: op.account, client_id: 'conf-post', client_secret: op.secret }, endpoints)),
        srv('plain', { provider: 'basic', user: 'u', password: 'p-Xy7w' }),
    ] });
});

test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
});

test('begin in one process, finish in another: tokens stored, a send with XOAUTH2 works', async () => {
    const before = await status('gmail');
    assert.equal(before.stored, '0');
    assert.equal(before.grant, 'authorization_code');
    const b = await begin('gmail');
    // the pending authorization: a 0600 file named by SHA-256 in a 0700 folder
    assert.equal(mode(pendingDir()), 0o700);
    const files = pendingFiles();
    assert.equal(files.length, 1);
    assert.match(files[0], /^[0-9a-f]{64}$/);
    assert.equal(files[0], lib.sha256(b.state));
    assert.equal(mode(path.join(pendingDir(), files[0])), 0o600);
    assert.ok(!fs.readFileSync(path.join(pendingDir(), files[0]), 'utf8').includes(b.state));
    assert.ok(!fs.existsSync(tokenFile('gmail')), 'nothing stored before finish');

    const cb = await browse(b.url);
    const f = await app(['finish', 'gmail', cb]);
    assert.equal(f.code, 0, show(f));
    assert.equal(f.last, 'ok finish');
    assert.deepEqual(pendingFiles(), [], 'the pending authorization was taken');
    assert.equal(mode(tokenFile('gmail')), 0o600);
    const t = readTokens('gmail');
    assert.ok(t.access_token && t.refresh_token);
    assert.deepEqual(t.identity, { provider: 'google', client_id: 'public', user: op.account,
                                   token_url: op.tokenUrl });

    const after = await status('gmail');
    assert.equal(after.stored, '1');
    assert.ok(Number(after.access_expires) > Date.now() / 1000);
    assert.ok(Math.abs(Number(after.refresh_issued) - Date.now() / 1000) < 120);
    assert.equal(after.days_left, '7');          // Google's "Testing" cliff
    assert.equal(after.store_code, '0');

    const s = await send('gmail');
    assert.equal(s.code, 0, show(s));
    assert.deepEqual(authEvents(), [`auth XOAUTH2 ${op.account}`]);

    // the same callback again: refused, the stored tokens untouched
    const bytes = fs.readFileSync(tokenFile('gmail'));
    const again = await app(['finish', 'gmail', cb]);
    assert.equal(again.code, 1, show(again));
    assert.match(again.last, /^error EOAUTH outcome=5 stage=oauth .*state is unknown, used already or expired/);
    assert.deepEqual(fs.readFileSync(tokenFile('gmail')), bytes);
});

test('a wrong state stores nothing; a reused one after revoke stores nothing; revoke deletes', async () => {
    const b = await begin('gmail2');
    const cb = await browse(b.url);
    const wrong = new URL(cb);
    wrong.searchParams.set('state', `${b.state}x`);
    const w = await app(['finish', 'gmail2', wrong.toString()]);
    assert.equal(w.code, 1, show(w));
    assert.match(w.last, /^error EOAUTH outcome=5 /);
    assert.ok(!fs.existsSync(tokenFile('gmail2')));
    assert.equal((await status('gmail2')).stored, '0');
    // another server's finish does not take it either
    const other = await app(['finish', 'gmail3', cb]);
    assert.equal(other.code, 1, show(other));
    assert.match(other.last, /^error EOAUTH .*another server or identity/);
    assert.ok(!fs.existsSync(tokenFile('gmail3')));

    // that used the pending authorization up: start again, finish right
    const b2 = await begin('gmail2');
    const cb2 = await browse(b2.url);
    const ok = await app(['finish', 'gmail2', cb2]);
    assert.equal(ok.code, 0, show(ok));
    const rt = readTokens('gmail2').refresh_token;
    assert.equal((await op.introspect(rt)).active, true);

    const rv = await app(['revoke', 'gmail2']);
    assert.equal(rv.code, 0, show(rv));
    assert.equal(rv.last, 'ok revoke');
    assert.ok(!fs.existsSync(tokenFile('gmail2')), 'revoke deletes the record');
    assert.equal((await status('gmail2')).stored, '0');
    assert.equal((await op.introspect(rt)).active, false, 'revoked at the provider');

    // the used callback once more: refused, nothing stored
    const re = await app(['finish', 'gmail2', cb2]);
    assert.equal(re.code, 1, show(re));
    assert.match(re.last, /^error EOAUTH /);
    assert.ok(!fs.existsSync(tokenFile('gmail2')));
});

test('error=access_denied: EAUTH, nothing stored, the pending authorization gone', async () => {
    const b = await begin('gmail3');
    await op.deny();
    const cb = await browse(b.url);
    assert.equal(new URL(cb).searchParams.get('error'), 'access_denied');
    const r = await app(['finish', 'gmail3', cb]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.last, /^error EAUTH outcome=5 stage=oauth .*denied/);
    assert.ok(!fs.existsSync(tokenFile('gmail3')));
    assert.deepEqual(pendingFiles(), []);
});

test('a pending authorization older than 600 s is refused and swept', async () => {
    const b = await begin('gmail3');
    const cb = await browse(b.url);
    const [f] = pendingFiles();
    const old = Date.now() / 1000 - 700;
    fs.utimesSync(path.join(pendingDir(), f), old, old);
    const r = await app(['finish', 'gmail3', cb]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.last, /^error EOAUTH /);
    assert.ok(!fs.existsSync(tokenFile('gmail3')));
    assert.deepEqual(pendingFiles(), []);
});

test('device flow: device_begin then device_wait in the application', async () => {
    let approved = false;
    const r = await app(['device', 'outlook', '30'], {
        onLine: async (line) => {
            const m = /^device user_code=(\S+) uri=(\S+) interval=(\d+)/.exec(line);
            if (m && !approved) {
                approved = true;
                await op.approveDevice(m[1]);
            }
        },
    });
    assert.ok(approved, show(r));
    assert.equal(r.code, 0, show(r));
    assert.equal(r.last, 'ok device');
    assert.ok(readTokens('outlook').refresh_token);
    const st = await status('outlook');
    assert.equal(st.stored, '1');
    assert.equal(st.days_left, '90');
});

test("the application's own token store (mc_context_options.token_store) is used, not files", async () => {
    const dir = lib.tmpdir();
    const env = { env: { OAUTH_APP_STORE: dir } };
    const pendingBefore = pendingFiles().length;
    const b = await begin('gmail3', env);
    assert.deepEqual(fs.readdirSync(dir), [`pend-${b.state}`]);
    assert.equal(pendingFiles().length, pendingBefore, 'nothing in the file store');
    const cb = await browse(b.url);
    // a context with the file store does not know this state
    const miss = await app(['finish', 'gmail3', cb]);
    assert.equal(miss.code, 1, show(miss));
    assert.match(miss.last, /^error EOAUTH /);
    const f = await app(['finish', 'gmail3', cb], env);
    assert.equal(f.code, 0, show(f));
    const rec = JSON.parse(fs.readFileSync(path.join(dir, 'rec-gmail3'), 'utf8'));
    for (const s of [rec.access_token, rec.refresh_token]) if (s) secrets.add(s);
    assert.equal(rec.identity.client_id, 'public');
    assert.ok(rec.refresh_token);
    assert.ok(!fs.existsSync(tokenFile('gmail3')), 'no token file');
    assert.equal((await status('gmail3', env)).stored, '1');
    assert.equal((await status('gmail3')).stored, '0');
    const again = await app(['finish', 'gmail3', cb], env);
    assert.equal(again.code, 1, show(again));
    assert.match(again.last, /^error EOAUTH /);
    const rv = await app(['revoke', 'gmail3'], env);
    assert.equal(rv.code, 0, show(rv));
    assert.ok(!fs.existsSync(path.join(dir, 'rec-gmail3')));
    assert.equal((await op.introspect(rec.refresh_token)).active, false);
});

test('status: no such server, a server without OAuth', async () => {
    const none = await app(['status', 'nope']);
    assert.equal(none.code, 1, show(none));
    assert.match(none.last, /^error ENOSERVER /);
    const plain = await app(['status', 'plain']);
    assert.equal(plain.code, 1, show(plain));
    assert.match(plain.last, /^error ENOTSUP /);
    const b = await app(['begin', 'plain', redirect]);
    assert.equal(b.code, 1, show(b));
    assert.match(b.last, /^error ENOTSUP /);
});

test('no token or secret in any output', () => {
    const all = transcript.join('\n');
    for (const s of secrets) assert.ok(!all.includes(s), 'a secret was printed');
});
