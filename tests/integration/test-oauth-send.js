// OAuth end to end through the CLI: `mailconn auth` obtains tokens from a
// real authorization server (tests/peers/oidc-peer.js: npm oidc-provider
// over HTTPS with the test CA), `mailconn send` hands them to a real SMTP
// server (tests/peers/smtp-peer.js: npm smtp-server) that accepts a bearer
// token only when oidc-provider's introspection endpoint says it is active.
// Provider errors that oidc-provider cannot produce (Microsoft AADSTS
// bodies, Google's invalid_scope to a device request) come from the fault
// injector tests/peers/token-fault.js; SMTP refusals that smtp-server does
// not make come from smtp-peer's --auth-reply and from fault-peer.js.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const lib = require('../peers/lib');
const { startOidc, request } = require('../peers/oauth-lib');

const BIN = process.env.MAILCONN_BIN;
const transcript = [];      // every CLI run: args, stdout, stderr
const secrets = new Set();  // every token and secret the tests know of

let pki, op, base, state;

test.before(async () => {
    assert.ok(BIN, 'MAILCONN_BIN is set (run with meson test)');
    base = lib.tmpdir();
    state = path.join(base, 'state');
    pki = lib.mkca(path.join(base, 'pki'));
    op = await startOidc({ pki, accessTtl: 3600 });
    secrets.add(op.secret);
});

test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
});

// ------------------------------------------------------------ helpers

function tokenFile(name) {
    return path.join(state, 'tokens', `${name}.json`);
}

function readTokens(name) {
    return JSON.parse(fs.readFileSync(tokenFile(name), 'utf8'));
}

/** Remember every token stored so far, and the AUTH payloads made of them. */
function collectSecrets() {
    let names = [];
    try { names = fs.readdirSync(path.join(state, 'tokens')); } catch (_) { return; }
    for (const f of names.filter((n) => n.endsWith('.json'))) {
        let t;
        try { t = JSON.parse(fs.readFileSync(path.join(state, 'tokens', f), 'utf8')); } catch (_) { continue; }
        for (const s of [t.access_token, t.refresh_token]) {
            if (typeof s === 'string' && s) addToken(s, t.identity && t.identity.user);
        }
    }
}

function addToken(tok, user) {
    secrets.add(tok);
    if (user) {
        secrets.add(Buffer.from(`user=${user}\x01auth=Bearer ${tok}\x01\x01`).toString('base64'));
    }
}

/** Run the CLI with this file's state folder (lib.runLines); every run's
 *  output is kept, and the secrets seen so far collected, for the final
 *  secrets check. Resolves {code, stdout, stderr}. */
async function mc(args, opts = {}) {
    const r = await lib.runLines(args, Object.assign({}, opts,
        { env: Object.assign({ MAILCONN_STATE_DIR: state }, opts.env || {}) }));
    transcript.push(`$ mailconn ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    collectSecrets();
    return r;
}

const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function send(cfg, server, extra = [], opts = {}) {
    return mc(['--config', cfg, ...(opts.verbose || []), 'send', '--server', server,
        '--to', 'rcpt@example.net', '--subject', opts.subject || `via ${server}`,
        '--body', 'hello over OAuth', ...extra], opts);
}

/** `mailconn auth --paste`: play the browser, paste the redirect URL. */
function pasteAuth(cfg, server) {
    let played = false;
    return mc(['--config', cfg, 'auth', '--server', server, '--paste'], {
        onLine: async (line, child) => {
            const m = /^(https:\/\/\S+)$/.exec(line.trim());
            if (m && !played) {
                played = true;
                const p = await op.playBrowser(m[1], { load: false });
                child.stdin.end(`${p.location}\n`);
            }
        },
    });
}

/** `mailconn auth --device`: approve the user code at the OAuth server. */
function deviceAuth(cfg, server) {
    let approved = false;
    return mc(['--config', cfg, 'auth', '--server', server, '--device'], {
        onLine: async (line, child) => {
            const m = /enter the code (\S+)/.exec(line);
            if (m && !approved) {
                approved = true;
                await op.approveDevice(m[1]);
                child.stdin.end();
            }
        },
    });
}

/** The OAuth endpoints of the local server, for any provider. */
function endpoints(extra = {}) {
    return Object.assign({
        authorization_url: op.authorizationUrl,
        token_url: op.tokenUrl,
        device_authorization_url: op.deviceUrl,
        revocation_url: op.revocationUrl,
        ca_file: pki.ca,
        timeout_s: 10,
    }, extra);
}

/** An smtp-peer that checks bearer tokens at oidc-provider's introspection. */
function oauthPeer(t, o = {}) {
    const args = ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
        '--introspect-client', `conf-basic:${op.secret}`];
    if (o.style) args.push('--oauth-style', o.style);
    if (o.mechs) args.push('--oauth-mechs', o.mechs);
    if (o.refuseFirst) args.push('--refuse-first-auth', String(o.refuseFirst));
    if (o.tokenUser) args.push('--token-user', o.tokenUser);
    if (o.authReply) args.push('--auth-reply', o.authReply);
    // out: removed at exit, after the peer stopped (it writes until then)
    return lib.startPeer({
        t, out: lib.tmpdir(), tls: o.tls || 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: args,
    });
}

function server(name, peer, transport, auth, extra = {}) {
    return Object.assign({
        name, host: '127.0.0.1', port: peer.port, transport, ca_file: pki.ca,
        sender: { address: op.account },
        auth,
    }, extra);
}

function config(dir, servers, name) {
    return lib.writeConfig(dir, { servers: [].concat(servers) }, name);
}

/** The peer's events without the session ids. */
function events(peer) {
    return lib.events(peer.out).map((l) => l.slice(l.indexOf(' ') + 1));
}

const authEvents = (peer) => events(peer).filter((e) => /^auth(-fail)? /.test(e));

async function refreshes(fn) {
    const c0 = await op.counts();
    const r = await fn();
    const c1 = await op.counts();
    const d = (k) => (c1.token[k] || 0) - (c0.token[k] || 0);
    return { r, refresh: d('refresh_token'), cc: d('client_credentials'), counts: c1, before: c0 };
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

const GOOGLE_AUTH = () => Object.assign({
    provider: 'google', user: op.account, client_id: 'public',
    // oidc-provider issues a refresh token for offline_access
    scope: 'https://mail.google.com/ offline_access',
}, endpoints());

const MS_AUTH = () => Object.assign({
    provider: 'microsoft', tenant: 'organizations', user: op.account, client_id: 'conf-post',
    client_secret: op.secret,
}, endpoints());

// ------------------------------------------------------------ three shapes deliver

let google;     // {cfg, name, peer}: authorized through `mailconn auth --paste`
let microsoft;  // authorized through `mailconn auth --device`
let manual;     // authorized through `mailconn auth --browser`

test('Google-shaped (tls, XOAUTH2): `auth --paste` then send delivers; token file 0600', async () => {
    const peer = await oauthPeer(null, { style: 'gmail', tokenUser: op.account });
    const dir = lib.tmpdir();
    const cfg = config(dir, server('gmail', peer, 'tls', GOOGLE_AUTH()));
    const a = await pasteAuth(cfg, 'gmail');
    assert.equal(a.code, 0, show(a));
    assert.match(a.stdout, /^authorized: tokens stored for server gmail$/m);
    assert.equal(mode(tokenFile('gmail')), 0o600);
    assert.equal(mode(path.join(state, 'tokens')), 0o700);
    const t = readTokens('gmail');
    assert.ok(t.refresh_token && t.access_token);
    assert.deepEqual(t.identity, { provider: 'google', client_id: 'public', user: op.account,
                                   token_url: op.tokenUrl });

    const r = await send(cfg, 'gmail', [], { subject: 'gmail shape' });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent .*250/m);
    assert.deepEqual(authEvents(peer), [`auth XOAUTH2 ${op.account}`]);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.subject, 'gmail shape');
    assert.equal(m.meta.user, op.account);
    assert.equal(m.meta.mailFrom, op.account);
    assert.equal(m.meta.secure, true);
    google = { cfg, dir, name: 'gmail', peer };
});

test('Microsoft-shaped (starttls, XOAUTH2): `auth --device` then send-as delivers', async () => {
    const peer = await oauthPeer(null, { tls: 'starttls', style: 'microsoft', tokenUser: op.account });
    const dir = lib.tmpdir();
    const shared = 'shared-mailbox@example.org';
    const cfg = config(dir, server('outlook', peer, 'starttls', MS_AUTH(),
        { sender: { address: shared, name: 'Shared' } }));
    const a = await deviceAuth(cfg, 'outlook');
    assert.equal(a.code, 0, show(a));
    assert.match(a.stderr, /enter the code/);
    assert.equal(mode(tokenFile('outlook')), 0o600);
    assert.ok(readTokens('outlook').refresh_token);

    const r = await send(cfg, 'outlook', [], { subject: 'outlook shape' });
    assert.equal(r.code, 0, show(r));
    // who logs in (auth.user) and who sends (sender.address) are separate
    assert.deepEqual(authEvents(peer), [`auth XOAUTH2 ${op.account}`]);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.meta.user, op.account);
    assert.equal(m.meta.mailFrom, shared);
    assert.equal(m.from[0].address, shared);
    assert.ok(events(peer).includes('secure -') || events(peer).some((e) => e.startsWith('secure ')));
    microsoft = { cfg, dir, name: 'outlook', peer };
});

test('manual provider (OAUTHBEARER): `auth --browser` then send; forced and only-offered', async () => {
    const both = await oauthPeer(null, { mechs: 'XOAUTH2,OAUTHBEARER' });
    const only = await oauthPeer(null, { mechs: 'OAUTHBEARER' });
    const dir = lib.tmpdir();
    const auth = Object.assign({
        provider: 'manual', user: op.account, client_id: 'conf-basic', client_auth: 'basic',
        client_secret: op.secret, scope: 'smtp offline_access',
    }, endpoints());
    const forced = config(dir, server('corp', both, 'tls', Object.assign({ mechanism: 'OAUTHBEARER' }, auth)),
        'forced.json');
    const browser = path.join(dir, 'fake-browser');
    fs.writeFileSync(browser, `#!/bin/sh\nexec "${process.execPath}" "${path.join(lib.PEERS_DIR, 'oauth-lib.js')}" play "$1" "${pki.ca}"\n`,
        { mode: 0o700 });
    const a = await mc(['--config', forced, 'auth', '--server', 'corp', '--browser'],
        { env: { BROWSER: browser } });
    assert.equal(a.code, 0, show(a));
    assert.equal(mode(tokenFile('corp')), 0o600);

    const r1 = await send(forced, 'corp');
    assert.equal(r1.code, 0, show(r1));
    assert.deepEqual(authEvents(both), [`auth OAUTHBEARER ${op.account}`],
        'auth.mechanism forces OAUTHBEARER though XOAUTH2 is offered');
    const plain = config(dir, server('corp', only, 'tls', auth), 'only.json');
    const r2 = await send(plain, 'corp');
    assert.equal(r2.code, 0, show(r2));
    assert.deepEqual(authEvents(only), [`auth OAUTHBEARER ${op.account}`]);
    assert.equal((await lib.readMessages(only.out)).length, 1);
    manual = { cfg: plain, dir, name: 'corp', peer: only };
});

test('auth.grant "device_code": `mailconn auth` with no flag runs the device flow', async (t) => {
    const peer = await oauthPeer(t, { tls: 'starttls' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('outlook-dev', peer, 'starttls',
        Object.assign(MS_AUTH(), { grant: 'device_code' })));
    let approved = false;
    // a display is there: without the grant this would be the browser flow
    const a = await mc(['--config', cfg, 'auth', '--server', 'outlook-dev'], {
        env: { DISPLAY: ':99' },
        onLine: async (line, child) => {
            const m = /enter the code (\S+)/.exec(line);
            if (m && !approved) {
                approved = true;
                await op.approveDevice(m[1]);
                child.stdin.end();
            }
        },
    });
    assert.equal(a.code, 0, show(a));
    assert.ok(approved, 'the device flow ran');
    const r = await send(cfg, 'outlook-dev');
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(authEvents(peer), [`auth XOAUTH2 ${op.account}`]);
});

// ------------------------------------------------------------ refresh

/** Age the stored access token of a 3600 s lifetime: `left` s remain. The
 *  margin is min(refresh_margin_s, half the lifetime) (DESIGN.md), so a
 *  margin over the lifetime alone no longer counts a fresh token expired. */
function nearExpiry(name, left) {
    const t = readTokens(name);
    const now = Math.floor(Date.now() / 1000);
    t.expires_at = now + left;
    t.access_issued_at = now + left - 3600;
    fs.writeFileSync(tokenFile(name), JSON.stringify(t));
}

test('an access token within refresh_margin_s of expiry is refreshed before the send', async () => {
    // 1000 s left: within min(7200, 3600 / 2), not within the default 600
    nearExpiry('gmail', 1000);
    const before = readTokens('gmail');
    const cfg = config(google.dir, server('gmail', google.peer, 'tls', GOOGLE_AUTH(),
        { refresh_margin_s: 7200 }), 'margin.json');
    const n0 = authEvents(google.peer).length;
    const { r, refresh } = await refreshes(() => send(cfg, 'gmail'));
    assert.equal(r.code, 0, show(r));
    assert.equal(refresh, 1, 'one refresh request at the OAuth server');
    const after = readTokens('gmail');
    assert.notEqual(after.access_token, before.access_token);
    assert.deepEqual(authEvents(google.peer).slice(n0), [`auth XOAUTH2 ${op.account}`],
        'the refreshed token was accepted at the first AUTH');
    assert.equal((await op.introspect(after.access_token)).active, true);
    // the default margin: the fresh token is used as it is
    const { r: r2, refresh: again } = await refreshes(() => send(google.cfg, 'gmail'));
    assert.equal(r2.code, 0, show(r2));
    assert.equal(again, 0);
});

test('a token the SMTP server refuses once is refreshed once and the send succeeds', async (t) => {
    // --refuse-first-auth: see smtp-peer.js (revoking at oidc-provider kills the grant)
    const peer = await oauthPeer(t, { style: 'gmail', refuseFirst: 1 });
    const cfg = config(google.dir, server('gmail', peer, 'tls', GOOGLE_AUTH()), 'refuse1.json');
    const { r, refresh } = await refreshes(() => send(cfg, 'gmail', [], { verbose: ['-v'] }));
    assert.equal(r.code, 0, show(r));
    assert.equal(refresh, 1, 'exactly one refresh');
    assert.deepEqual(authEvents(peer), [
        `auth XOAUTH2 ${op.account}`, `auth-fail XOAUTH2 ${op.account}`,
        `auth XOAUTH2 ${op.account}`,
    ]);
    assert.ok(events(peer).includes('auth-answer XOAUTH2 ok'),
        'the client answered the 334 JSON challenge with an empty line');
    assert.equal(lib.messageCount(peer.out), 1);
});

test('a token refused again after the refresh ends with 77, no loop', async (t) => {
    const peer = await oauthPeer(t, { style: 'gmail', refuseFirst: 5 });
    const cfg = config(google.dir, server('gmail', peer, 'tls', GOOGLE_AUTH()), 'refuse5.json');
    const { r, refresh } = await refreshes(() => send(cfg, 'gmail'));
    assert.equal(r.code, 77, show(r));
    assert.equal(refresh, 1);
    assert.equal(authEvents(peer).filter((e) => e.startsWith('auth ')).length, 2,
        'exactly two AUTH attempts');
    assert.match(r.stderr, /^mailconn: .*auth.*535 5\.7\.8/m);
    assert.match(r.stderr, /status 401/, 'the JSON status is in the error');
    assert.equal(lib.messageCount(peer.out), 0);
});

test('OAUTHBEARER refusal: the client answers 0x01 (AQ==), then 535; retried once', async (t) => {
    const peer = await oauthPeer(t, { mechs: 'OAUTHBEARER', refuseFirst: 5 });
    const auth = Object.assign({
        provider: 'manual', user: op.account, client_id: 'conf-basic', client_auth: 'basic',
        client_secret: op.secret, scope: 'smtp offline_access',
    }, endpoints());
    const cfg = config(manual.dir, server('corp', peer, 'tls', auth), 'bearer-refused.json');
    const { r, refresh } = await refreshes(() => send(cfg, 'corp'));
    assert.equal(r.code, 77, show(r));
    assert.equal(refresh, 1);
    assert.deepEqual(events(peer).filter((e) => e.startsWith('auth-answer')),
        ['auth-answer OAUTHBEARER ok', 'auth-answer OAUTHBEARER ok']);
    assert.match(r.stderr, /OAUTHBEARER refused: status invalid_token/);
});

// ------------------------------------------------------------ outcomes

test('send with no token stored ends with 77 and says to run `mailconn auth`', async (t) => {
    const peer = await oauthPeer(t);
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('never-authorized', peer, 'tls', GOOGLE_AUTH()));
    const r = await send(cfg, 'never-authorized');
    assert.equal(r.code, 77, show(r));
    assert.match(r.stderr, /^mailconn: .*no token stored for server never-authorized/m);
    assert.match(r.stderr, /^mailconn: hint: run `mailconn auth --server never-authorized`/m);
    assert.equal(lib.messageCount(peer.out), 0);
});

test('a revoked refresh token ends with 77 and the hint to run `mailconn auth`', async (t) => {
    const peer = await oauthPeer(t);
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('revoked', peer, 'tls', GOOGLE_AUTH(), { refresh_margin_s: 7200 }));
    const a = await pasteAuth(cfg, 'revoked');
    assert.equal(a.code, 0, show(a));
    const rt = readTokens('revoked').refresh_token;
    const rv = await request(op.revocationUrl, {
        method: 'POST', ca: fs.readFileSync(pki.ca),
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `token=${encodeURIComponent(rt)}&token_type_hint=refresh_token&client_id=public`,
    });
    assert.equal(rv.status, 200, rv.body);
    const r = await send(cfg, 'revoked');
    assert.equal(r.code, 77, show(r));
    assert.match(r.stderr, /invalid_grant/);
    assert.match(r.stderr, /^mailconn: hint: .*run `mailconn auth --server revoked`/m);
});

test('a wrong client secret ends with 78', async (t) => {
    const dir = lib.tmpdir(t);
    const auth = Object.assign(MS_AUTH(), { client_secret: 'not-the-client-secret' });
    secrets.add('not-the-client-secret');
    const cfg = config(dir, server('outlook', microsoft.peer, 'starttls', auth,
        { refresh_margin_s: 7200 }));
    nearExpiry('outlook', 1000);
    const { r, refresh } = await refreshes(() => send(cfg, 'outlook'));
    assert.equal(r.code, 78, show(r));
    assert.equal(refresh, 1, 'the refresh was tried (and refused)');
    assert.match(r.stderr, /invalid_client/);
});

test('a token endpoint that is down ends with 75', async (t) => {
    const peer = await oauthPeer(t);
    const dir = lib.tmpdir(t);
    const port = await closedPort();
    const cfg = config(dir, server('down', peer, 'tls', {
        provider: 'manual', user: op.account, client_id: 'conf-post', client_secret: op.secret,
        grant: 'client_credentials', scope: 'smtp', token_url: `https://127.0.0.1:${port}/token`,
        ca_file: pki.ca, timeout_s: 5,
    }));
    const r = await send(cfg, 'down');
    assert.equal(r.code, 75, show(r));
    assert.match(r.stderr, /^mailconn: .*oauth/m);
});

test('client_credentials: send fetches its own token, no `mailconn auth`', async (t) => {
    const peer = await oauthPeer(t, { mechs: 'XOAUTH2' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('app-only', peer, 'tls', {
        provider: 'microsoft', user: 'app@example.org', client_id: 'conf-basic', client_auth: 'basic',
        client_secret: op.secret, grant: 'client_credentials', scope: 'smtp',
        token_url: op.tokenUrl, ca_file: pki.ca, timeout_s: 10,
    }));
    assert.equal(fs.existsSync(tokenFile('app-only')), false);
    const { r, cc } = await refreshes(() => send(cfg, 'app-only'));
    assert.equal(r.code, 0, show(r));
    assert.equal(cc, 1, 'one client_credentials request');
    assert.deepEqual(authEvents(peer), ['auth XOAUTH2 app@example.org']);
    // cached for the next send
    const { r: r2, cc: cc2 } = await refreshes(() => send(cfg, 'app-only'));
    assert.equal(r2.code, 0, show(r2));
    assert.equal(cc2, 0);
});

test('`mailconn servers` shows token state and never a token', async () => {
    const dir = lib.tmpdir();
    const cfg = config(dir, [
        server('gmail', google.peer, 'tls', GOOGLE_AUTH()),
        // the state needs no secret: this one is not set, and no command runs
        server('outlook', microsoft.peer, 'starttls', Object.assign(MS_AUTH(),
            { client_secret: undefined, client_secret_env: 'MC_G_UNSET_SECRET' })),
        server('nothing-yet', google.peer, 'tls', GOOGLE_AUTH()),
        server('vault', google.peer, 'tls', { provider: 'manual', user: 'v@example.org',
            access_token_command: 'echo never-run >&2; exit 1' }),
        server('cc', google.peer, 'tls', {
            provider: 'manual', user: 'a@example.org', client_id: 'conf-post', client_secret: op.secret,
            grant: 'client_credentials', token_url: op.tokenUrl, ca_file: pki.ca,
        }),
    ]);
    const r = await mc(['--config', cfg, 'servers']);
    assert.equal(r.code, 0, show(r));
    const line = (n) => r.stdout.split('\n').find((l) => l.includes(` ${n} `)) || '';
    assert.match(line('gmail'), /token=stored access-expires-in=[1-6]?\dm refresh-age=0d/);
    assert.match(line('outlook'), /token=stored access-expires-in=\d+m refresh-age=0d/);
    assert.match(line('nothing-yet'), /token=none\(run mailconn auth\)/);
    assert.match(line('cc'), /token=fetched-when-needed/);
    assert.match(line('vault'), /token=from-access_token_command/);
    assert.doesNotMatch(r.stderr, /never-run/);
    // an old Microsoft refresh token (90-day limit) gets a warning
    const t = readTokens('outlook');
    t.refresh_issued_at -= 85 * 86400;
    fs.writeFileSync(tokenFile('outlook'), JSON.stringify(t), { mode: 0o600 });
    const r2 = await mc(['--config', cfg, 'servers']);
    assert.match(r2.stdout, /outlook .*refresh-age=85d WARNING:refresh-token-near-90-day-limit/);
    for (const s of secrets) {
        assert.equal((r.stdout + r.stderr + r2.stdout).includes(s), false, 'a token in `servers`');
    }
});

test('`mailconn auth --revoke` revokes and forgets the tokens; the next send is 77', async (t) => {
    const peer = await oauthPeer(t);
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('to-revoke', peer, 'tls', GOOGLE_AUTH()));
    const a = await pasteAuth(cfg, 'to-revoke');
    assert.equal(a.code, 0, show(a));
    const tok = readTokens('to-revoke');
    const c0 = await op.counts();
    const r = await mc(['--config', cfg, 'auth', '--server', 'to-revoke', '--revoke']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^revoked: tokens for server to-revoke forgotten$/m);
    assert.equal((await op.counts()).revocation - c0.revocation, 1);
    assert.equal(fs.existsSync(tokenFile('to-revoke')), false);
    assert.equal((await op.introspect(tok.access_token)).active, false);
    const s = await send(cfg, 'to-revoke');
    assert.equal(s.code, 77, show(s));
    assert.match(s.stderr, /run `mailconn auth --server to-revoke`/);
});

test('--refresh-token-file imports a refresh token obtained elsewhere', async (t) => {
    // a refresh token from a grant the test makes itself, through a paste flow
    const peer = await oauthPeer(t);
    const dir = lib.tmpdir(t);
    const cfg = config(dir, [server('donor', peer, 'tls', GOOGLE_AUTH()),
                             server('imported', peer, 'tls', GOOGLE_AUTH())]);
    const a = await pasteAuth(cfg, 'donor');
    assert.equal(a.code, 0, show(a));
    const f = path.join(dir, 'refresh-token');
    fs.writeFileSync(f, `\n  ${readTokens('donor').refresh_token}  \n`, { mode: 0o600 });
    const i = await mc(['--config', cfg, 'auth', '--server', 'imported', '--refresh-token-file', f]);
    assert.equal(i.code, 0, show(i));
    assert.match(i.stdout, /refresh token imported for server imported/);
    assert.equal(mode(tokenFile('imported')), 0o600);
    const r = await send(cfg, 'imported');
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(authEvents(peer), [`auth XOAUTH2 ${op.account}`]);
});

test('auth.access_token_command is used as given and never refreshed', async (t) => {
    // a token the test fetches itself (client credentials at oidc-provider)
    const basic = 'Basic ' + Buffer.from(`conf-basic:${encodeURIComponent(op.secret)}`).toString('base64');
    const tr = await request(op.tokenUrl, {
        method: 'POST', ca: fs.readFileSync(pki.ca),
        headers: { Authorization: basic, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&scope=smtp',
    });
    assert.equal(tr.status, 200, tr.body);
    const token = JSON.parse(tr.body).access_token;
    addToken(token, 'vault@example.org');
    const dir = lib.tmpdir(t);
    const tf = path.join(dir, 'token');
    fs.writeFileSync(tf, `${token}\n`, { mode: 0o600 });
    const calls = path.join(dir, 'calls');
    const auth = {
        provider: 'manual', user: 'vault@example.org',
        access_token_command: `echo x >> '${calls}'; cat '${tf}'`,
    };
    const good = await oauthPeer(t, { tokenUser: 'vault@example.org' });
    const cfg = config(dir, server('vault', good, 'tls', auth));
    const { r, refresh, cc, counts, before } = await refreshes(() => send(cfg, 'vault'));
    assert.equal(r.code, 0, show(r));
    assert.equal(refresh + cc, 0);
    assert.deepEqual(authEvents(good), ['auth XOAUTH2 vault@example.org']);
    // refused: no refresh and no second attempt (mailconn does not own the token)
    const bad = await oauthPeer(t, { refuseFirst: 5 });
    const cfg2 = config(dir, server('vault', bad, 'tls', auth), 'refused.json');
    const r2 = await send(cfg2, 'vault');
    assert.equal(r2.code, 77, show(r2));
    assert.equal(authEvents(bad).filter((e) => e.startsWith('auth ')).length, 1);
    const after = await op.counts();
    assert.deepEqual(after.token, counts.token, 'no token request at the OAuth server');
    assert.deepEqual(before.token, counts.token);
    assert.equal(fs.readFileSync(calls, 'utf8'), 'x\nx\n', 'the command ran once per send');
    assert.equal(fs.existsSync(tokenFile('vault')), false, 'nothing stored');
});

// ------------------------------------------------------------ hints

let fakeSmtp;   // offers XOAUTH2 over TLS; the token never reaches it in these tests
async function faultToken(t, script) {
    return lib.startScript('token-fault.js', { t, out: lib.tmpdir(), script, args: ['--cert', pki.server.cert, '--key', pki.server.key] });
}

function faultAuth(fault, extra = {}) {
    const u = `https://127.0.0.1:${fault.port}`;
    return Object.assign({
        provider: 'microsoft', user: op.account, client_id: 'app-id', tenant: 'contoso.example',
        authorization_url: `${u}/authorize`, token_url: `${u}/token`,
        device_authorization_url: `${u}/devicecode`, ca_file: pki.ca, timeout_s: 10,
    }, extra);
}

const TOKENS = (n) => ({
    status: 200,
    body: { token_type: 'Bearer', access_token: `fault-access-${n}-x7Yq`, expires_in: '3599',
            refresh_token: `fault-refresh-${n}-Zp4w`, scope: 'https://outlook.office.com/SMTP.Send' },
});
for (let i = 1; i <= 3; i++) {
    secrets.add(`fault-access-${i}-x7Yq`);
    secrets.add(`fault-refresh-${i}-Zp4w`);
}
const AAD = (status, error, code, text) => ({
    status,
    body: { error, error_description: `AADSTS${code}: ${text} Trace ID: 0000 Correlation ID: 1111 Timestamp: 2025-01-01 00:00:00Z`,
            error_codes: [code], timestamp: '2025-01-01 00:00:00Z', trace_id: '0000', correlation_id: '1111' },
});

/** Import a refresh token against the fault endpoint (its first /token reply). */
async function importAt(t, fault, name, auth, cfgExtra = {}) {
    if (!fakeSmtp) fakeSmtp = await oauthPeer(null, { mechs: 'XOAUTH2' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server(name, fakeSmtp, 'tls', auth, cfgExtra));
    const f = path.join(dir, 'rt');
    fs.writeFileSync(f, 'imported-refresh-token-Qm2v\n', { mode: 0o600 });
    secrets.add('imported-refresh-token-Qm2v');
    const r = await mc(['--config', cfg, 'auth', '--server', name, '--refresh-token-file', f]);
    return { cfg, r };
}

const hint = (r) => (r.stderr.match(/^mailconn: hint: .*$/m) || [''])[0];

test('hint: AADSTS7000012 (grant for another tenant) -> set auth.tenant', async (t) => {
    const fault = await faultToken(t, { '/token': AAD(400, 'invalid_grant', 7000012,
        'The grant was obtained from a different tenant.') });
    const { r } = await importAt(t, fault, 'aad-tenant', faultAuth(fault));
    assert.equal(r.code, 77, show(r));
    assert.match(hint(r), /another tenant: set auth\.tenant/);
});

test('hint: AADSTS700082 (refresh token expired from inactivity) -> run `mailconn auth`', async (t) => {
    const fault = await faultToken(t, { '/token': [TOKENS(1), AAD(400, 'invalid_grant', 700082,
        'The refresh token has expired due to inactivity.')] });
    const { cfg, r: imp } = await importAt(t, fault, 'aad-inactive', faultAuth(fault), { refresh_margin_s: 7200 });
    assert.equal(imp.code, 0, show(imp));
    const r = await send(cfg, 'aad-inactive');
    assert.equal(r.code, 77, show(r));
    assert.match(hint(r), /expired from inactivity; run `mailconn auth --server aad-inactive` to authorize again/);
});

test('hint: AADSTS65001 (consent missing)', async (t) => {
    const fault = await faultToken(t, { '/token': AAD(400, 'invalid_grant', 65001,
        "The user or administrator has not consented to use the application with ID 'app-id'.") });
    const { r } = await importAt(t, fault, 'aad-consent', faultAuth(fault));
    assert.equal(r.code, 77, show(r));
    assert.match(hint(r), /consent is missing/);
});

test('hint: AADSTS7000218 (client secret needed or public client flows off), device flow', async (t) => {
    const fault = await faultToken(t, {
        '/devicecode': { status: 200, body: { device_code: 'dev-code-Hh3k', user_code: 'ABCD-EFGH',
            verification_uri: 'https://microsoft.com/devicelogin', expires_in: 900, interval: 1,
            message: 'To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate.' } },
        '/token': AAD(401, 'invalid_client', 7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    });
    secrets.add('dev-code-Hh3k');
    if (!fakeSmtp) fakeSmtp = await oauthPeer(null, { mechs: 'XOAUTH2' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('aad-public', fakeSmtp, 'tls', faultAuth(fault)));
    const r = await mc(['--config', cfg, 'auth', '--server', 'aad-public', '--device'], { timeoutMs: 30000 });
    assert.equal(r.code, 78, show(r));
    assert.match(r.stderr, /enter the code ABCD-EFGH/);
    assert.match(hint(r), /client secret is required, or enable "Allow public client flows"/);
});

test('hint: Google invalid_scope on a device request -> the Gmail scope needs --paste/--browser', async (t) => {
    const fault = await faultToken(t, { '/device/code': { status: 400, body: { error: 'invalid_scope' } } });
    if (!fakeSmtp) fakeSmtp = await oauthPeer(null, { mechs: 'XOAUTH2' });
    const dir = lib.tmpdir(t);
    const u = `https://127.0.0.1:${fault.port}`;
    // Google's endpoints through the manual provider: nothing stops the device request
    const cfg = config(dir, server('gmail-device', fakeSmtp, 'tls', {
        provider: 'manual', user: op.account, client_id: 'google-client', client_secret: 'g-secret-Vb8n',
        token_url: `${u}/token`, device_authorization_url: `${u}/device/code`,
        scope: 'https://mail.google.com/', ca_file: pki.ca, timeout_s: 10,
    }));
    secrets.add('g-secret-Vb8n');
    const r = await mc(['--config', cfg, 'auth', '--server', 'gmail-device', '--device']);
    assert.equal(r.code, 78, show(r));
    assert.match(r.stderr, /invalid_scope/);
    assert.match(hint(r), /device flow does not grant the Gmail scope.*--paste/);
    // and the google provider says so before asking
    const g = config(dir, server('gmail-dev2', fakeSmtp, 'tls', GOOGLE_AUTH()), 'google.json');
    const r2 = await mc(['--config', g, 'auth', '--server', 'gmail-dev2', '--device']);
    assert.equal(r2.code, 64, show(r2));
    assert.match(r2.stderr, /Google does not grant the Gmail scope to devices/);
});

test('hint: Google invalid_grant days after authorization -> app left in Testing (7 days)', async (t) => {
    const fault = await faultToken(t, { '/token': [TOKENS(2), { status: 400,
        body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' } }] });
    const u = `https://127.0.0.1:${fault.port}`;
    const { cfg, r: imp } = await importAt(t, fault, 'gmail-testing', {
        provider: 'google', user: op.account, client_id: 'google-client', client_secret: 'g-secret-Vb8n',
        token_url: `${u}/token`, authorization_url: `${u}/auth`, ca_file: pki.ca, timeout_s: 10,
    }, { refresh_margin_s: 7200 });
    assert.equal(imp.code, 0, show(imp));
    const r = await send(cfg, 'gmail-testing');
    assert.equal(r.code, 77, show(r));
    assert.match(hint(r), /Testing.*7 days/);
    assert.match(hint(r), /mailconn auth/);
});

test('hint: 535 5.7.139 (SMTP AUTH disabled for the tenant or mailbox)', async (t) => {
    const peer = await oauthPeer(t, { tls: 'starttls',
        authReply: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('outlook', peer, 'starttls', MS_AUTH()));
    const r = await send(cfg, 'outlook');
    assert.equal(r.code, 77, show(r));
    assert.match(r.stderr, /535 5\.7\.139/);
    assert.match(hint(r), /SMTP AUTH is disabled .*Set-CASMailbox .*SmtpClientAuthenticationDisabled \$false/);
});

test('hint: 535 5.7.3 after XOAUTH2 (wrong user or audience)', async (t) => {
    // Microsoft's shape: 535 5.7.3 at once; the token belongs to another user
    const peer = await oauthPeer(t, { tls: 'starttls', style: 'microsoft', tokenUser: 'someone-else@example.org' });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('outlook', peer, 'starttls', MS_AUTH()));
    const r = await send(cfg, 'outlook');
    assert.equal(r.code, 77, show(r));
    assert.match(r.stderr, /535 5\.7\.3 /);
    assert.equal(events(peer).filter((e) => e.startsWith('auth ')).length, 2);
    assert.equal(events(peer).some((e) => e.startsWith('auth-answer')), false, 'no 334 in this shape');
    assert.match(hint(r), /wrong auth\.user for the token.*audience/);
});

test('hint: 550 5.7.30 to basic auth -> use OAuth', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t, out: lib.tmpdir(), script: {
        ehlo: ['250-fault-peer', '250-ENHANCEDSTATUSCODES', '250 AUTH PLAIN LOGIN'],
        replies: { AUTH: '550 5.7.30 Basic authentication is not supported for Client Submission.' },
    } });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, {
        name: 'legacy', host: '127.0.0.1', port: peer.port, transport: 'plain', allow_plaintext_auth: true,
        sender: { address: 'me@example.org' },
        auth: { provider: 'basic', user: 'me@example.org', password_env: 'MC_G_PASSWORD' },
    });
    const r = await send(cfg, 'legacy', [], { env: { MC_G_PASSWORD: 'basic-pw-Ty6u' } });
    secrets.add('basic-pw-Ty6u');
    assert.equal(r.code, 77, show(r));
    assert.match(r.stderr, /550 5\.7\.30/);
    assert.match(hint(r), /no longer accepts basic authentication: use an OAuth provider/);
});

// ------------------------------------------------------------ libcurl, secrets

test('a basic-auth send does not load libcurl; an OAuth send does', async (t) => {
    const peer = await lib.startPeer({ t, out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        users: { app: 'basic-pw-Ty6u' } });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('relay', peer, 'tls',
        { provider: 'basic', user: 'app', password_env: 'MC_G_PASSWORD' }));
    const r = await send(cfg, 'relay', [], { env: { MC_G_PASSWORD: 'basic-pw-Ty6u', LD_DEBUG: 'libs' } });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /transport-tls\.so/, 'LD_DEBUG listed the loaded modules');
    assert.match(r.stderr, /engine-tls\.so/);   // control for the plain send's test below
    assert.match(r.stderr, /libssl\.so/);
    assert.doesNotMatch(r.stderr, /libcurl/);
    assert.doesNotMatch(r.stderr, /engine-oauth/);
    // control: the OAuth send loads the engine and libcurl with it
    const o = await send(google.cfg, 'gmail', [], { env: { LD_DEBUG: 'libs' } });
    assert.equal(o.code, 0, show(o));
    assert.match(o.stderr, /engine-oauth\.so/);
    assert.match(o.stderr, /libcurl/);
});

// Issue 11 moved TLS into engine-tls.so and added proxies: a plain send with
// basic auth (allowed in clear to loopback by the config) still maps no TLS
// or HTTP code at all.
test('a plain send loads neither libssl, engine-tls, libcurl nor a proxy plugin', async (t) => {
    const peer = await lib.startPeer({ t, out: lib.tmpdir(), users: { app: 'basic-pw-Ty6u' } });
    const dir = lib.tmpdir(t);
    const cfg = config(dir, server('relay', peer, 'plain',
        { provider: 'basic', user: 'app', password_env: 'MC_G_PASSWORD' },
        { ca_file: undefined, allow_plaintext_auth: true }));
    const r = await send(cfg, 'relay', [], { env: { MC_G_PASSWORD: 'basic-pw-Ty6u', LD_DEBUG: 'libs' } });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /transport-plain\.so/, 'LD_DEBUG listed the loaded modules');
    assert.match(r.stderr, /auth-basic\.so/);
    for (const re of [/libssl\.so/, /engine-tls\.so/, /libcurl/, /engine-oauth/, /proxy-/])
        assert.doesNotMatch(r.stderr, re);
    assert.ok(events(peer).some((e) => /^auth (PLAIN|LOGIN) app$/.test(e)), events(peer).join("\n"));
});

test('-v and -vv transcripts of OAuth sends and auth show no token, secret or AUTH payload', async () => {
    const v = await send(google.cfg, 'gmail', [], { verbose: ['-v'] });
    const vv = await send(microsoft.cfg, 'outlook', [], { verbose: ['-vv'] });
    const vvb = await send(manual.cfg, 'corp', [], { verbose: ['-vv'] });
    for (const r of [v, vv, vvb]) assert.equal(r.code, 0, show(r));
    assert.match(v.stderr, /C: AUTH XOAUTH2 <redacted>/);
    assert.match(vvb.stderr, /C: AUTH OAUTHBEARER <redacted>/);
    // an OAUTHBEARER payload for every token seen
    for (const s of [...secrets]) {
        secrets.add(Buffer.from(`n,a=${op.account},\x01host=127.0.0.1\x01port=${manual.peer.port}\x01auth=Bearer ${s}\x01\x01`).toString('base64'));
    }
    collectSecrets();
    assert.ok(transcript.length > 30, `${transcript.length} runs`);
    assert.ok(secrets.size > 20, `${secrets.size} secrets`);
    const all = transcript.join('\n');
    for (const s of secrets) {
        assert.equal(all.includes(s), false, `a secret of ${s.length} characters leaked: ${s.slice(0, 6)}...`);
    }
});
