// Secret hygiene (issue 5): representative CLI runs with -v (the SMTP
// transcript) and -vv (debug logs) — every transport with AUTH PLAIN and
// LOGIN, a -t batch, a fault case, OAuth sends with XOAUTH2 and OAUTHBEARER
// (tokens from oidc-peer, checked by smtp-peer at the introspection
// endpoint), `mailconn auth --refresh-token-file`, `servers`,
// `check --secrets` — then no password, access token, refresh token, client
// secret or base64 AUTH payload (PLAIN, LOGIN's base64 user and password,
// XOAUTH2, OAUTHBEARER) may appear in any stdout or stderr, nor in any file
// mailconn wrote outside the token store (log_file included).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const USER = 'hygiene-user';
const PASSWORD = 'Hyg-pass-w0rd-93127';
const CLIENT_SECRET = 'Hyg-client-secret-55310';
const BOGUS_REFRESH = 'Hyg-refresh-token-not-issued-7740';
const b64 = (s) => Buffer.from(s, 'binary').toString('base64');

const outputs = [];          // [what, text]
const secrets = new Map();   // text -> what it is
function secret(value, what) {
    if (value && value.length >= 4) secrets.set(value, what);
}

let pki;
let op;
let work;      // the config, log_file and state live here: scanned at the end
let inputs;    // files the test writes for mailconn to read (not scanned)
let state;

test.before(async () => {
    const base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
    op = await startOidc({ pki, secret: CLIENT_SECRET, accessTtl: 3600 });
    work = path.join(base, 'work');
    inputs = path.join(base, 'inputs');
    state = path.join(work, 'state');
    fs.mkdirSync(work, { mode: 0o700 });
    fs.mkdirSync(inputs, { mode: 0o700 });
    secret(PASSWORD, 'password');
    secret(b64(PASSWORD), 'LOGIN base64 password');
    secret(b64(USER), 'LOGIN base64 user');
    secret(b64(`\0${USER}\0${PASSWORD}`), 'AUTH PLAIN payload');
    secret(b64(`${USER}\0${USER}\0${PASSWORD}`), 'AUTH PLAIN payload with authzid');
    secret(CLIENT_SECRET, 'client secret');
    secret(b64(`conf-post:${CLIENT_SECRET}`), 'HTTP Basic client credentials');
    secret(encodeURIComponent(CLIENT_SECRET), 'client secret, form-encoded');
    secret(BOGUS_REFRESH, 'refresh token (imported)');
});
test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
});

const ENV = { MC_HYG_PASSWORD: PASSWORD, MC_HYG_SECRET: CLIENT_SECRET, MAILCONN_STATE_DIR: '' };

async function cli(what, cfg, args, expect) {
    const r = await lib.runCli(['--config', cfg, ...args], {
        env: Object.assign({}, ENV, { MAILCONN_STATE_DIR: state }), timeoutMs: 60000,
    });
    outputs.push([`${what} (stdout)`, r.stdout], [`${what} (stderr)`, r.stderr]);
    assert.equal(r.signal, null, `${what}: ${r.stderr}`);
    assert.equal(r.code, expect, `${what}: exit ${r.code}\n${r.stderr}`);
    return r;
}

function basic(mechanism) {
    return { provider: 'basic', user: USER, password_env: 'MC_HYG_PASSWORD', mechanism };
}

function smtpServer(name, peer, transport, auth, extra) {
    const s = {
        name, host: '127.0.0.1', port: peer.port, transport,
        sender: { address: 'app@example.test' }, auth,
        log_file: path.join(work, 'mail.log'),
    };
    if (transport === 'plain') s.allow_plaintext_auth = true;
    else s.ca_file = pki.ca;
    return Object.assign(s, extra || {});
}

function oauthAuth(extra) {
    return Object.assign({
        provider: 'manual', user: op.account, client_id: 'conf-post',
        client_secret_env: 'MC_HYG_SECRET', grant: 'client_credentials', scope: 'smtp',
        token_url: op.tokenUrl, ca_file: pki.ca, timeout_s: 10,
    }, extra || {});
}

/** Collect the tokens mailconn stored, with their SASL encodings. */
function collectTokens(port) {
    const dir = path.join(state, 'tokens');
    let names = [];
    try { names = fs.readdirSync(dir).filter((f) => f.endsWith('.json')); } catch (_) { /* none yet */ }
    for (const f of names) {
        const t = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
        for (const [k, v] of [['access token', t.access_token], ['refresh token', t.refresh_token]]) {
            if (!v) continue;
            secret(v, `${k} (${f})`);
            const user = t.identity && t.identity.user ? t.identity.user : op.account;
            secret(b64(`user=${user}\x01auth=Bearer ${v}\x01\x01`), `XOAUTH2 payload (${f})`);
            if (port)
                secret(b64(`n,a=${user},\x01host=127.0.0.1\x01port=${port}\x01auth=Bearer ${v}\x01\x01`),
                    `OAUTHBEARER payload (${f})`);
        }
    }
}

for (const v of ['-v', '-vv']) {
    test(`${v}: basic auth on every transport, PLAIN and LOGIN`, async (t) => {
        for (const [transport, tls] of [['plain', 'none'], ['tls', 'implicit'], ['starttls', 'starttls']]) {
            const peer = await lib.startPeer({ t, tls, cert: pki.server.cert, key: pki.server.key,
                users: { [USER]: PASSWORD }, allowInsecureAuth: tls === 'none' });
            for (const mech of ['PLAIN', 'LOGIN']) {
                const cfg = lib.writeConfig(work, { servers: [smtpServer('basic', peer, transport, basic(mech))] },
                    `basic-${transport}-${mech}.json`);
                const r = await cli(`${v} send ${transport} ${mech}`, cfg, [v, 'send', '--to', 'to@example.test',
                    '--subject', 'hygiene', '--body', 'body'], 0);
                assert.match(r.stderr, /AUTH|<redacted>/, 'the transcript ran');
            }
            const auths = lib.events(peer.out).filter((l) => / auth (PLAIN|LOGIN) /.test(l));
            assert.equal(auths.length, 2, lib.events(peer.out).join('\n'));
        }
    });

    test(`${v}: a -t batch, a wrong password, a dropped AUTH`, async (t) => {
        const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
            users: { [USER]: PASSWORD } });
        const cfg = lib.writeConfig(work, { servers: [smtpServer('batch', peer, 'tls', basic())] }, 'batch.json');
        const files = [1, 2, 3].map((i) => {
            const f = path.join(inputs, `m${i}.eml`);
            fs.writeFileSync(f, `To: r${i}@example.test\nSubject: batch ${i}\n\nbody ${i}\n`);
            return f;
        });
        const r = await cli(`${v} send -t`, cfg, [v, 'send', '-t', ...files], 0);
        assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('sent ')).length, 3);

        // the wrong password is a secret too
        const wrong = `Wrong-${PASSWORD}`;
        secret(wrong, 'wrong password');
        secret(b64(`\0${USER}\0${wrong}`), 'AUTH PLAIN payload (wrong password)');
        const bad = await lib.runCli(['--config', cfg, v, 'send', '--to', 'a@example.test', '--subject', 's',
            '--body', 'b'], { env: Object.assign({}, ENV, { MC_HYG_PASSWORD: wrong, MAILCONN_STATE_DIR: state }) });
        outputs.push([`${v} wrong password`, bad.stdout + bad.stderr]);
        assert.equal(bad.code, 77, bad.stderr);

        // a fault: the server drops the connection in answer to AUTH
        const fault = await lib.startScript('fault-peer.js', { t, script: {
            ehlo: ['250-fault', '250 AUTH PLAIN LOGIN'], replies: { AUTH: 'close' } } });
        const fcfg = lib.writeConfig(work, { servers: [smtpServer('fault', fault, 'plain', basic())] }, 'fault.json');
        await cli(`${v} fault`, fcfg, [v, 'send', '--to', 'a@example.test', '--subject', 's', '--body', 'b'], 75);
    });

    test(`${v}: OAuth sends (XOAUTH2, OAUTHBEARER), auth --refresh-token-file, servers, check --secrets`, async (t) => {
        const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
            enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
                '--introspect-client', `conf-basic:${CLIENT_SECRET}`] });
        const servers = [
            smtpServer('oauth-x', peer, 'tls', oauthAuth({ mechanism: 'XOAUTH2' })),
            smtpServer('oauth-b', peer, 'tls', oauthAuth({ mechanism: 'OAUTHBEARER' })),
            smtpServer('imported', peer, 'tls', oauthAuth({ grant: 'authorization_code',
                authorization_url: op.authorizationUrl })),
        ];
        servers[0].default = true;
        const cfg = lib.writeConfig(work, { servers }, 'oauth.json');
        for (const name of ['oauth-x', 'oauth-b']) {
            const r = await cli(`${v} oauth send ${name}`, cfg, [v, 'send', '--server', name, '--to',
                'to@example.test', '--subject', 'oauth', '--body', 'b'], 0);
            assert.match(r.stdout, /^sent /m);
        }
        const auths = lib.events(peer.out).filter((l) => / auth (XOAUTH2|OAUTHBEARER) /.test(l));
        assert.deepEqual(auths.map((l) => l.split(' ')[2]).sort(), ['OAUTHBEARER', 'XOAUTH2']);

        const rtf = path.join(inputs, 'rt.txt');
        fs.writeFileSync(rtf, `  ${BOGUS_REFRESH}\n`, { mode: 0o600 });
        await cli(`${v} auth --refresh-token-file`, cfg, [v, 'auth', '--server', 'imported',
            '--refresh-token-file', rtf], 77);
        await cli(`${v} servers`, cfg, [v, 'servers'], 0);
        await cli(`${v} check --secrets`, cfg, [v, 'check', '--secrets'], 0);
        collectTokens(peer.port);
    });
}

test('no secret in any output or in any file outside the token store', () => {
    collectTokens(null);
    const tokens = [...secrets.values()].filter((w) => /access token/.test(w));
    assert.ok(tokens.length >= 2, `the OAuth sends stored tokens: ${tokens.join(', ')}`);
    assert.ok(outputs.length >= 40, `${outputs.length} outputs`);
    const all = outputs.map(([, text]) => text).join('\n');
    assert.match(all, /<redacted>/, 'the transcripts ran and redacted');
    assert.match(all, /^C: AUTH (PLAIN|XOAUTH2|OAUTHBEARER) <redacted>/m, 'AUTH lines are shown redacted');

    // files mailconn wrote: everything under work/ but the token store and
    // the configs this test wrote
    const files = [];
    const walk = (d) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) {
                if (p !== path.join(state, 'tokens')) walk(p);
            } else if (!(d === work && e.name.endsWith('.json'))) {
                files.push(p);
            }
        }
    };
    walk(work);
    const log = path.join(work, 'mail.log');
    assert.ok(files.includes(log), `log_file written: ${files.join(', ')}`);
    assert.match(fs.readFileSync(log, 'utf8'), /outcome=sent/);

    for (const [value, what] of secrets) {
        for (const [where, text] of outputs)
            assert.ok(!text.includes(value), `${what} appears in ${where}`);
        for (const f of files)
            assert.ok(!fs.readFileSync(f, 'latin1').includes(value), `${what} appears in ${f}`);
    }
});
