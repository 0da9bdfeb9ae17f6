// Hostile OAuth endpoints (issue 9, points 3 OAuth part, 6, 7, 9, 11): what a
// token or device authorization endpoint says is checked and bounded, and a
// stray request to the loopback listener does not cancel an authorization.
// The token and device endpoints here are tests/peers/token-fault.js, a
// FAULT INJECTOR (no real authorization server sends CR LF in a token, an
// interval of 2^63-1 or expires_in -5); the loopback test uses the real
// authorization server of the tests (tests/peers/oidc-peer.js, npm
// oidc-provider) and sends the forged request itself. Sends go to the real
// SMTP server (tests/peers/smtp-peer.js, npm smtp-server) with --tokens.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const BIN = process.env.MAILCONN_BIN;
const NORMAL = process.env.MAILCONN_SANITIZE === 'none';
const USER = 'me@example.org';
const secrets = new Set();
const transcript = [];

let pki, base;

test.before(() => {
    assert.ok(BIN, 'MAILCONN_BIN is set (run with meson test)');
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
});

test.after(async () => {
    await lib.stopAll();
    // no token, secret or AUTH payload in anything the CLI printed
    const all = transcript.join('\n');
    for (const s of secrets) assert.ok(!all.includes(s), `a secret leaked into the output: ${s.slice(0, 6)}...`);
});

const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** Run the CLI with its own state folder (lib.runLines); every run's
 *  output is kept for the final secrets check. */
async function mc(state, args, opts = {}) {
    const r = await lib.runLines(args, Object.assign({}, opts,
        { env: Object.assign({ MAILCONN_STATE_DIR: state }, opts.env || {}) }));
    transcript.push(`$ mailconn ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    return r;
}

/** A fault token endpoint over HTTPS with the given certificate (default: the good one). */
function faultToken(t, script, pair = pki.server) {
    return lib.startScript('token-fault.js', { t, out: lib.tmpdir(t), script,
        args: ['--cert', pair.cert, '--key', pair.key] });
}

/** The /token and /devicecode requests the fault endpoint got. */
function requests(fault, p) {
    let lines = [];
    try { lines = fs.readFileSync(path.join(fault.out, 'events.log'), 'utf8').split('\n'); } catch (_) { /* none */ }
    return lines.filter((l) => l.split(' ')[2] === p).length;
}

/** A config with one OAuth server "hostile" at the fault endpoint. */
function setup(t, fault, o = {}) {
    const dir = lib.tmpdir(t);
    const state = path.join(dir, 'state');
    const host = o.host || '127.0.0.1';
    const u = `https://${host}:${fault.port}`;
    const auth = Object.assign({
        provider: 'manual', user: USER, client_id: 'app-id', client_auth: 'none', scope: 'smtp',
        authorization_url: `${u}/authorize`, token_url: `${u}/token`,
        device_authorization_url: `${u}/devicecode`, ca_file: pki.ca, timeout_s: 10,
    }, o.auth || {});
    const srv = Object.assign({
        name: 'hostile', host: '127.0.0.1', port: o.smtpPort || 1, transport: 'tls', ca_file: pki.ca,
        sender: { address: USER }, auth,
    }, o.server || {});
    const cfg = lib.writeConfig(dir, { servers: [srv] });
    const rt = path.join(dir, 'rt');
    fs.writeFileSync(rt, 'imported-refresh-Qm2v\n', { mode: 0o600 });
    secrets.add('imported-refresh-Qm2v');
    return { dir, state, cfg, rt, tokenFile: path.join(state, 'tokens', 'hostile.json') };
}

const importRt = (s) => mc(s.state, ['--config', s.cfg, 'auth', '--server', 'hostile',
    '--refresh-token-file', s.rt]);

const ok = (access, extra = {}) => ({ status: 200, body: Object.assign({ token_type: 'Bearer',
    access_token: access, refresh_token: 'fault-refresh-Zp4w', expires_in: 3600 }, extra) });
secrets.add('fault-refresh-Zp4w');

// ------------------------------------------------------------ point 7: tokens are checked

test('an access token outside RFC 6750 b64token is refused, naming the endpoint, never stored', async (t) => {
    for (const bad of ['AT-1\r\nMAIL FROM:<evil@example.net>', 'AT-2\u0000hidden', 'AT 3', 'AT\t4', 'AT\u00015']) {
        const fault = await faultToken(t, { '/token': ok(bad) });
        const s = setup(t, fault);
        const r = await importRt(s);
        assert.equal(r.code, 75, show(r));
        assert.match(r.stderr, /^mailconn: hostile: oauth: token endpoint https:\/\/127\.0\.0\.1:\d+\/token answered an access_token with characters outside RFC 6750's b64token set/m, show(r));
        assert.equal(fs.existsSync(s.tokenFile), false, 'no token file written');
        assert.ok(!r.stderr.includes('evil@example.net'));
    }
});

test('a refresh token with CR, LF, TAB, 0x01, NUL or SP is refused, never stored', async (t) => {
    for (const bad of ['RT\r\nx', 'RT\nx', 'RT\tx', 'RT\u0001x', 'RT\u0000hidden', 'RT x']) {
        const fault = await faultToken(t, { '/token': ok('AT-good', { refresh_token: bad }) });
        const s = setup(t, fault);
        const r = await importRt(s);
        assert.equal(r.code, 75, show(r));
        assert.match(r.stderr, /^mailconn: hostile: oauth: token endpoint https:\/\/127\.0\.0\.1:\d+\/token answered a refresh_token with a control character, space or NUL/m, show(r));
        assert.equal(fs.existsSync(s.tokenFile), false, 'no token file written');
    }
});

// ------------------------------------------------------------ point 6 and 11: numbers

test('expires_in -5 is reported as negative, not as "not a number"', async (t) => {
    for (const v of [-5, '-5']) {
        const fault = await faultToken(t, { '/token': ok('AT-neg', { expires_in: v }) });
        const s = setup(t, fault);
        const r = await importRt(s);
        assert.equal(r.code, 75, show(r));
        assert.match(r.stderr, /answered a negative expires_in \(-5\)/, show(r));
        assert.doesNotMatch(r.stderr, /not a number/);
        assert.equal(fs.existsSync(s.tokenFile), false);
    }
});

test('expires_in as a string, huge or zero: accepted, clamped to 1 s .. 1 year', async (t) => {
    const YEAR = 365 * 86400;
    const cases = [['3600', 3600, 3600], [9223372036854775807n, YEAR, YEAR], [1e300, YEAR, YEAR],
        ['99999999999999999999999', YEAR, YEAR], [0, 1, 1], [3600.9, 3600, 3600]];
    for (const [v, lo, hi] of cases) {
        // a BigInt is written as the JSON number it is
        const body = JSON.stringify({ token_type: 'Bearer', access_token: 'AT-clamp',
            refresh_token: 'fault-refresh-Zp4w', expires_in: typeof v === 'bigint' ? '@@' : v })
            .replace('"@@"', String(v));
        const fault = await faultToken(t, { '/token': { status: 200, body } });
        const s = setup(t, fault);
        const before = Math.floor(Date.now() / 1000);
        const r = await importRt(s);
        const after = Math.ceil(Date.now() / 1000);
        assert.equal(r.code, 0, `${String(v)}: ${show(r)}`);
        const f = JSON.parse(fs.readFileSync(s.tokenFile, 'utf8'));
        assert.ok(f.expires_at >= before + lo && f.expires_at <= after + hi,
            `expires_in ${String(v)}: expires_at ${f.expires_at} not within now+${lo}..now+${hi}`);
    }
});

test('a short-lived token is not refreshed on every send: margin = min(refresh_margin_s, lifetime/2)', async (t) => {
    const peer = await lib.startPeer({ t, out: lib.tmpdir(t), tls: 'implicit', cert: pki.server.cert,
        key: pki.server.key, tokens: `${USER}:AT-short-lived`, enhanced: true });
    secrets.add('AT-short-lived');
    // 300 s tokens; the default margin is 600 s
    const fault = await faultToken(t, { '/token': ok('AT-short-lived', { expires_in: 300 }) });
    const s = setup(t, fault, { smtpPort: peer.port });
    const imp = await importRt(s);
    assert.equal(imp.code, 0, show(imp));
    for (let i = 0; i < 2; i++) {
        const r = await mc(s.state, ['--config', s.cfg, 'send', '--server', 'hostile', '--to',
            'rcpt@example.net', '--subject', `short ${i}`, '--body', 'hello']);
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, /^sent /m);
    }
    assert.equal(requests(fault, '/token'), 1, 'only the import asked the token endpoint');
    assert.equal(await lib.messageCount(peer.out), 2);
});

// ------------------------------------------------------------ point 6 and 3: device polling

function deviceAnswer(extra) {
    return { status: 200, body: Object.assign({ device_code: 'dev-code-Hh3k', user_code: 'ABCD-EFGH',
        verification_uri: 'https://example.com/device', expires_in: 4 }, extra) };
}
const PENDING = { status: 400, body: { error: 'authorization_pending' } };

const device = (s, timeoutMs) => mc(s.state, ['--config', s.cfg, 'auth', '--server', 'hostile',
    '--device'], { timeoutMs: timeoutMs || 60000 });

test('device interval 2^63-1, 9.2e15 or "9200000000000000": clamped to 60 s, no poll storm, bounded', async (t) => {
    for (const iv of ['9223372036854775807', '9.2e15', '"9200000000000000"']) {
        const body = JSON.stringify(deviceAnswer({ interval: '@@' }).body).replace('"@@"', iv);
        const fault = await faultToken(t, { '/devicecode': { status: 200, body }, '/token': PENDING });
        const s = setup(t, fault);
        const r = await device(s, 30000);
        assert.equal(r.code, 75, `interval ${iv}: ${show(r)}`);
        assert.match(r.stderr, /was not approved in time/, show(r));
        assert.ok(requests(fault, '/token') <= 1, `interval ${iv}: ${requests(fault, '/token')} token polls`);
        if (NORMAL) assert.ok(r.ms < 10000, `interval ${iv}: took ${r.ms} ms`);
    }
});

test('device interval -1 or "soon", expires_in -5: refused with what they are, no poll', async (t) => {
    for (const [extra, re] of [[{ interval: -1 }, /negative interval \(-1\)/],
        [{ interval: 'soon' }, /an interval that is not a number \(soon\)/],
        [{ expires_in: -5 }, /negative expires_in \(-5\)/]]) {
        const fault = await faultToken(t, { '/devicecode': deviceAnswer(extra), '/token': PENDING });
        const s = setup(t, fault);
        const r = await device(s);
        assert.equal(r.code, 75, show(r));
        assert.match(r.stderr, /^mailconn: hostile: oauth: device authorization endpoint https:\/\/127\.0\.0\.1:\d+\/devicecode answered/m);
        assert.match(r.stderr, re, show(r));
        assert.equal(requests(fault, '/token'), 0);
    }
});

test('device interval 0 and "1" as a string: polled every second (not a busy loop), then stored', async (t) => {
    for (const iv of [0, '1']) {
        const fault = await faultToken(t, { '/devicecode': deviceAnswer({ interval: iv, expires_in: 30 }),
            '/token': [PENDING, PENDING, ok('AT-device')] });
        const s = setup(t, fault);
        const r = await device(s);
        assert.equal(r.code, 0, show(r));
        assert.equal(requests(fault, '/token'), 3);
        if (NORMAL) assert.ok(r.ms >= 2500, `three polls a second apart took ${r.ms} ms`);
        assert.ok(fs.existsSync(s.tokenFile));
    }
});

test('device polling ends at its deadline even when the token endpoint is slow', async (t) => {
    // expires_in 3 s; each poll answered only after 20 s (timeout_s is 10)
    const fault = await faultToken(t, { '/devicecode': deviceAnswer({ interval: 1, expires_in: 3 }),
        '/token': Object.assign({ delayMs: 20000 }, PENDING) });
    const s = setup(t, fault);
    const r = await device(s, 40000);
    assert.equal(r.code, 75, show(r));
    assert.equal(requests(fault, '/token'), 1);
    if (NORMAL) assert.ok(r.ms < 7000, `bounded by expires_in (3 s), took ${r.ms} ms`);
});

// ------------------------------------------------------------ point 11: the CA hint

test('hint "set auth.ca_file" for an unknown CA only, not for a wrong host or an expired certificate', async (t) => {
    const hintOf = (r) => (r.stderr.match(/^mailconn: hint: .*$/m) || [''])[0];
    const cases = [
        ['untrusted', pki.untrusted, '127.0.0.1', true],
        ['wronghost', pki.wronghost, '127.0.0.1', false],
        ['expired', pki.expired, '127.0.0.1', false],
    ];
    for (const [what, pair, host, wantHint] of cases) {
        const fault = await faultToken(t, { '/token': ok('AT-tls') }, pair);
        const s = setup(t, fault, { host });
        const r = await importRt(s);
        assert.equal(r.code, 69, `${what}: ${show(r)}`);
        assert.match(r.stderr, /^mailconn: hostile: oauth: TLS verification of https:\/\/127\.0\.0\.1:\d+\/token failed/m, show(r));
        if (wantHint) assert.match(hintOf(r), /set auth\.ca_file/, `${what}: ${show(r)}`);
        else assert.doesNotMatch(r.stderr, /auth\.ca_file/, `${what}: ${show(r)}`);
        assert.equal(requests(fault, '/token'), 0, 'no request got through');
    }
});

// ------------------------------------------------------------ point 9: the loopback listener

function get(url) {
    return new Promise((resolve, reject) => {
        const req = http.get(url, { timeout: 5000 }, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('timeout', () => req.destroy(new Error('GET timed out')));
        req.on('error', reject);
    });
}

test('a request with a wrong state gets an error page; the listener waits for the real redirect (beside a silent connection)', async (t) => {
    const op = await startOidc({ pki, accessTtl: 3600 });
    t.after(() => op.stop());
    secrets.add(op.secret);
    const dir = lib.tmpdir(t);
    const state = path.join(dir, 'state');
    const cfg = lib.writeConfig(dir, { servers: [{
        name: 'corp', host: '127.0.0.1', port: 1, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account },
        auth: { provider: 'manual', user: op.account, client_id: 'conf-basic', client_auth: 'basic',
            client_secret: op.secret, scope: 'smtp offline_access', authorization_url: op.authorizationUrl,
            token_url: op.tokenUrl, ca_file: pki.ca, timeout_s: 10 },
    }] });
    // a browser command that does nothing: the test plays the browser
    const browser = path.join(dir, 'no-browser');
    fs.writeFileSync(browser, '#!/bin/sh\nexit 0\n', { mode: 0o700 });
    const seen = [];
    let played = false;
    let took = 0;
    const r = await mc(state, ['--config', cfg, 'auth', '--server', 'corp', '--browser'], {
        env: { BROWSER: browser },
        onLine: async (line, child) => {
            const m = /^(https:\/\/\S+)$/.exec(line.trim());
            if (!m || played) return;
            played = true;
            const p = await op.playBrowser(m[1], { load: false });
            const real = new URL(p.location);
            // a local user who connects and says nothing holds no one up
            const silent = net.connect(Number(real.port), '127.0.0.1');
            silent.on('error', () => { /* closed by the listener */ });
            await new Promise((res) => silent.once('connect', res));
            t.after(() => silent.destroy());
            const t0 = Date.now();
            // any local user: a forged state, no state, an error with a forged state
            const forged = new URL(real);
            forged.searchParams.set('state', 'forged-state');
            seen.push(await get(forged.href));
            const none = new URL(real);
            none.searchParams.delete('state');
            seen.push(await get(none.href));
            const denied = new URL(`${real.origin}/?error=access_denied&state=forged-state`);
            seen.push(await get(denied.href));
            seen.push(await get(real.href));
            took = Date.now() - t0;
            child.stdin.end();
        },
    });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(seen.map((x) => x.status), [400, 400, 400, 200]);
    if (NORMAL) assert.ok(took < 3000, `four requests beside a silent connection took ${took} ms`);
    assert.match(seen[0].body, /does not belong to the authorization/);
    assert.match(r.stdout, /^authorized: tokens stored for server corp$/m);
    assert.match(r.stderr, /whose state does not match; still waiting/);
    assert.ok(fs.existsSync(path.join(state, 'tokens', 'corp.json')));
});

// ------------------------------------------------------------ point 4: `servers` shows the store's refusal

test('`mailconn servers` shows an unsafe token store with its path (exit 78)', async (t) => {
    const peer = await lib.startPeer({ t, out: lib.tmpdir(t), tls: 'implicit', cert: pki.server.cert,
        key: pki.server.key, tokens: `${USER}:AT-servers`, enhanced: true });
    secrets.add('AT-servers');
    const fault = await faultToken(t, { '/token': ok('AT-servers') });
    const s = setup(t, fault, { smtpPort: peer.port });
    const imp = await importRt(s);
    assert.equal(imp.code, 0, show(imp));
    fs.chmodSync(path.join(s.state, 'tokens'), 0o755);
    const r = await mc(s.state, ['--config', s.cfg, 'servers']);
    assert.equal(r.code, 78, show(r));
    assert.match(r.stdout, /hostile .* token=refused\(see the error above\)/);
    assert.ok(r.stderr.includes(`${path.join(s.state, 'tokens')} is open to group or others (mode 0755, must be 0700)`), show(r));
    const send = await mc(s.state, ['--config', s.cfg, 'send', '--server', 'hostile', '--to',
        'rcpt@example.net', '--subject', 'x', '--body', 'y']);
    assert.equal(send.code, 78, show(send));
    assert.equal(await lib.messageCount(peer.out), 0);
    assert.match(send.stderr, /^mailconn: \S+: oauth: token store refused: .*tokens is open to group or others/m);
});
