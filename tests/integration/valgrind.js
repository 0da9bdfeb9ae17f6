// valgrind memcheck over representative CLI runs (issue 5): `check`,
// `plugins`, a send over every transport with basic auth, OAuth sends
// (XOAUTH2 and OAUTHBEARER, tokens from oidc-peer), a -t batch, and fault
// cases. Each run is
//   valgrind --error-exitcode=99 --leak-check=full
//            --errors-for-leak-kinds=definite --show-leak-kinds=definite
// and must end with the CLI's expected exit code (99 would be valgrind's),
// "ERROR SUMMARY: 0 errors" and nothing definitely lost.
// Registered as meson suite 'valgrind', only in builds without sanitizers.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const PASSWORD = 'vg-Pass-4410';
const SECRET = 'vg-client-Secret-1290';
let pki;
let op;
let dir;
let n = 0;

test.before(async () => {
    dir = lib.tmpdir();
    pki = lib.mkca(path.join(dir, 'pki'));
    op = await startOidc({ pki, secret: SECRET });
});
test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
});

async function memcheck(args, expect, opts = {}) {
    const log = path.join(dir, `vg-${++n}.log`);
    const r = await lib.run('valgrind', ['-q', '--error-exitcode=99', '--leak-check=full',
        '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite', '--num-callers=30',
        `--log-file=${log}`, process.env.MAILCONN_BIN, ...args], {
        env: Object.assign({ MC_VG_PASSWORD: PASSWORD, MC_VG_SECRET: SECRET,
            MAILCONN_STATE_DIR: path.join(dir, 'state') }, opts.env || {}),
        timeoutMs: 120000,
    });
    const text = fs.readFileSync(log, 'utf8');
    const ctx = `\n${args.join(' ')}\nstderr:\n${r.stderr}\nvalgrind:\n${text}`;
    assert.notEqual(r.code, 99, `valgrind found errors${ctx}`);
    assert.equal(r.signal, null, ctx);
    assert.equal(r.code, expect, `exit code${ctx}`);
    // -q prints only errors: an empty log is "0 errors, nothing definitely lost"
    assert.doesNotMatch(text, /definitely lost: [1-9]/, ctx);
    assert.doesNotMatch(text, /Invalid (read|write|free)|uninitialised|Mismatched free/, ctx);
    assert.equal(text.trim(), '', `valgrind reported something${ctx}`);
    return r;
}

function srv(name, peer, transport, extra) {
    const s = { name, host: '127.0.0.1', port: peer.port, transport, timeout_s: 10,
        sender: { address: 'app@example.test' } };
    if (transport !== 'plain') s.ca_file = pki.ca;
    return Object.assign(s, extra || {});
}
const basic = { provider: 'basic', user: 'app', password_env: 'MC_VG_PASSWORD' };
const SEND = ['send', '--to', 'to@example.test', '--subject', 'valgrind', '--body', 'body\n'];

test('check, check --secrets and plugins', async (t) => {
    const peer = await lib.startPeer({ t });
    const cfg = lib.writeConfig(dir, { servers: [
        srv('a', peer, 'plain', { default: true }),
        srv('b', peer, 'tls', { auth: basic }),
        srv('c', peer, 'starttls', { auth: { provider: 'manual', user: 'u@example.test', client_id: 'conf-post',
            client_secret_env: 'MC_VG_SECRET', grant: 'client_credentials', token_url: op.tokenUrl } }),
    ] }, 'check.json');
    await Promise.all([
        memcheck(['--config', cfg, 'check'], 0),
        memcheck(['--config', cfg, 'check', '--secrets'], 0),
        memcheck(['plugins'], 0),
    ]);
});

// Issue 11: every plugin kind loaded, init/fini run, and unloaded (the
// test plugins proxy-good, store-good, auth-initcount beside the bundled
// proxies, TLS engine and file store); and a send through a real SOCKS5
// proxy (microsocks) into implicit TLS: nothing definitely lost after unload.
test('plugins of every kind unloaded, and a send through microsocks', async (t) => {
    const bad = path.join(process.env.MAILCONN_BUILD_ROOT, 'tests', 'unit', 'badplugins');
    const plugins = path.join(dir, 'vg-plugins');
    fs.mkdirSync(plugins, { recursive: true, mode: 0o755 });
    for (const f of ['proxy-good.so', 'store-good.so', 'auth-initcount.so']) {
        fs.copyFileSync(path.join(bad, f), path.join(plugins, f));
        fs.chmodSync(path.join(plugins, f), 0o644);
    }
    const r = await memcheck(['plugins'], 0,
        { env: { MAILCONN_PLUGIN_PATH: `${plugins}:${process.env.MAILCONN_PLUGIN_PATH}` } });
    for (const re of [/^proxy +good /m, /^token-store +good /m, /^auth +initcount /m, /^proxy +socks5 /m,
        /^tls-engine +tls /m])
        assert.match(r.stdout, re);

    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        users: { app: PASSWORD } });
    const net = require('node:net');
    const port = await new Promise((resolve) => {
        const l = net.createServer();
        l.listen(0, '127.0.0.1', () => { const p = l.address().port; l.close(() => resolve(p)); });
    });
    const { spawn } = require('node:child_process');
    const px = spawn('microsocks', ['-i', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    t.after(() => new Promise((resolve) => {
        if (px.exitCode !== null || px.signalCode !== null) return resolve();
        px.once('exit', resolve);
        process.kill(px.pid, 'SIGKILL');
    }));
    await lib.waitFor(() => new Promise((resolve) => {
        const c = net.connect({ host: '127.0.0.1', port });
        c.once('connect', () => { c.destroy(); resolve(true); });
        c.once('error', () => resolve(false));
    }), 10000, 50, 'microsocks listening');
    const cfg = lib.writeConfig(dir, { servers: [srv('s', peer, 'tls',
        { auth: basic, proxy: { type: 'socks5', host: '127.0.0.1', port } })] }, 'proxy.json');
    await memcheck(['--config', cfg, ...SEND], 0);
    assert.equal(lib.messageCount(peer.out), 1);
});

test('a basic-auth send over every transport, and a -t batch', async (t) => {
    const runs = [];
    for (const [transport, tls] of [['plain', 'none'], ['tls', 'implicit'], ['starttls', 'starttls']]) {
        const peer = await lib.startPeer({ t, tls, cert: pki.server.cert, key: pki.server.key,
            users: { app: PASSWORD }, allowInsecureAuth: tls === 'none' });
        const extra = { auth: basic };
        if (tls === 'none') extra.allow_plaintext_auth = true;
        const cfg = lib.writeConfig(dir, { servers: [srv('s', peer, transport, extra)] }, `send-${transport}.json`);
        runs.push(memcheck(['--config', cfg, '-v', ...SEND], 0).then(() => assert.equal(lib.messageCount(peer.out), 1)));
    }
    const peer = await lib.startPeer({ t });
    const cfg = lib.writeConfig(dir, { servers: [srv('s', peer, 'plain')] }, 'batch.json');
    const files = [1, 2, 3].map((i) => {
        const f = path.join(dir, `b${i}.eml`);
        fs.writeFileSync(f, `To: r${i}@example.test\nSubject: b${i}\n\nbody\n`);
        return f;
    });
    runs.push(memcheck(['--config', cfg, 'send', '-t', '--jobs', '2', ...files], 0)
        .then(() => assert.equal(lib.messageCount(peer.out), 3)));
    await Promise.all(runs);
});

test('OAuth sends: XOAUTH2 and OAUTHBEARER with client credentials from oidc-peer', async (t) => {
    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${SECRET}`] });
    const auth = (mechanism) => ({ provider: 'manual', user: op.account, client_id: 'conf-post',
        client_secret_env: 'MC_VG_SECRET', grant: 'client_credentials', scope: 'smtp',
        token_url: op.tokenUrl, ca_file: pki.ca, mechanism });
    const cfg = lib.writeConfig(dir, { servers: [
        srv('x', peer, 'tls', { auth: auth('XOAUTH2'), default: true }),
        srv('b', peer, 'tls', { auth: auth('OAUTHBEARER') }),
    ] }, 'oauth.json');
    await memcheck(['--config', cfg, ...SEND], 0);
    await memcheck(['--config', cfg, 'send', '--server', 'b', ...SEND.slice(1)], 0);
    assert.equal(lib.messageCount(peer.out), 2);
});

test('fault cases: drop after the dot, 554 to RCPT, mismatched codes, drop before the greeting', async (t) => {
    const cases = [
        [{ replies: { DOT: 'close' } }, 75],
        [{ replies: { RCPT: '554 5.7.1 no' } }, 69],
        [{ ehlo: ['250-fault', '251 x'] }, 76],
        [{ greeting: 'close' }, 75],
    ];
    await Promise.all(cases.map(async ([script, code], i) => {
        const peer = await lib.startScript('fault-peer.js', { t, script });
        const cfg = lib.writeConfig(dir, { servers: [srv('f', peer, 'plain')] }, `fault-${i}.json`);
        const r = await memcheck(['--config', cfg, ...SEND], code);
        assert.doesNotMatch(r.stdout, /^sent/m);
    }));
});

// Issue 9's hostile cases under memcheck: every refusal path frees what it
// took (replies before the dot, floods, trickled replies and handshakes,
// an unsafe token store, an unsafe config) and a streamed --body-file.
test('hostile servers, deadlines, unsafe store and config, --body-file', async (t) => {
    const runs = [];
    for (const [mode, code] of [['early-250', 76], ['rcpt-354', 76], ['dot-mixed', 75],
        ['ehlo-flood', 76], ['auth-flood', 76]]) {
        runs.push((async () => {
            const peer = await lib.startScript('hostile-smtp.js', { t, args: ['--mode', mode] });
            const extra = mode === 'auth-flood'
                ? { auth: basic, allow_plaintext_auth: true } : {};
            const cfg = lib.writeConfig(dir, { servers: [srv('h', peer, 'plain', extra)] }, `hostile-${mode}.json`);
            const r = await memcheck(['--config', cfg, ...SEND], code);
            assert.doesNotMatch(r.stdout, /^sent/m, mode);
        })());
    }
    // a greeting and an implicit-TLS handshake trickled past timeout_s
    const real = await lib.startPeer({ t });
    const tlsReal = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key });
    for (const [name, target, transport] of [['greet', real, 'plain'], ['hs', tlsReal, 'tls']]) {
        runs.push((async () => {
            const relay = await lib.startScript('trickle-peer.js', { t,
                args: ['--target', `127.0.0.1:${target.port}`, '--down-interval-ms', '1000'] });
            const cfg = lib.writeConfig(dir, { servers: [srv('slow', relay, transport, { timeout_s: 2 })] },
                `trickle-${name}.json`);
            const r = await memcheck(['--config', cfg, ...SEND], 75);
            assert.match(r.stderr, /timed out/);
        })());
    }
    await Promise.all(runs);

    // a token store others can write, and a config others can write
    const state = path.join(dir, 'open-state');
    fs.mkdirSync(path.join(state, 'tokens'), { recursive: true, mode: 0o700 });
    fs.chmodSync(state, 0o777);
    const ocfg = lib.writeConfig(dir, { servers: [srv('o', real, 'plain', { auth: { provider: 'manual',
        user: 'u@example.test', client_id: 'c', token_url: op.tokenUrl,
        authorization_url: op.tokenUrl }, allow_plaintext_auth: true })] }, 'open-store.json');
    const rs = await memcheck(['--config', ocfg, 'servers'], 78, { env: { MAILCONN_STATE_DIR: state } });
    assert.match(rs.stderr, /open-state/);
    const wcfg = lib.writeConfig(dir, { servers: [srv('w', real, 'plain', { auth: { provider: 'basic',
        user: 'u', password_command: 'echo never' }, allow_plaintext_auth: true })] }, 'open-config.json');
    fs.chmodSync(wcfg, 0o666);
    const rw = await memcheck(['--config', wcfg, ...SEND], 78);
    assert.match(rw.stderr, /open-config\.json/);

    // a 3 MB body streamed from a file
    const body = path.join(dir, 'body.txt');
    fs.writeFileSync(body, 'a line of the streamed body\n'.repeat(110000));
    const bcfg = lib.writeConfig(dir, { servers: [srv('b', real, 'plain')] }, 'body-file.json');
    const before = lib.messageCount(real.out);
    await memcheck(['--config', bcfg, 'send', '--to', 'to@example.test', '--subject', 'vg',
        '--body-file', body], 0);
    assert.equal(lib.messageCount(real.out), before + 1);
});
