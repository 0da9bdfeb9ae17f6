// Proxies (issue 11, acceptance 1 and 2): mailconn send through real proxies
// from Debian's packages, started here on 127.0.0.1 and stopped by PID:
// microsocks (SOCKS5, also with -u/-P) and tinyproxy (HTTP CONNECT, its
// ConnectPort opened for this test's SMTP ports only), in front of npm
// smtp-server (tests/peers/smtp-peer.js) and oidc-provider
// (tests/peers/oidc-peer.js). Exit codes are compared, never passed through.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const lib = require('../peers/lib');

const PROXY_PASSWORD = 'proxy-Pw-5512';

function have(bin) {
    try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }); return true; } catch (_) { return false; }
}
if (!have('microsocks') || !have('tinyproxy')) {
    throw new Error('microsocks and tinyproxy are needed (scripts/deps.sh installs them)');
}

const procs = new Map();   // pid -> child
let pki, base;
test.before(() => {
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
});
test.after(async () => {
    await Promise.all([...procs.values()].map(stopProc));
    await lib.stopAll();
});

async function freePort() {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const port = s.address().port;
    await new Promise((r) => s.close(r));
    return port;
}

function canConnect(port, host = '127.0.0.1') {
    return new Promise((resolve) => {
        const c = net.connect({ host, port });
        const done = (ok) => { c.destroy(); resolve(ok); };
        c.once('connect', () => done(true));
        c.once('error', () => done(false));
        c.setTimeout(1000, () => done(false));
    });
}

function stopProc(child) {
    return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } resolve(); }, 5000);
        child.once('exit', () => { clearTimeout(timer); resolve(); });
        try { process.kill(child.pid, 'SIGTERM'); } catch (_) { clearTimeout(timer); resolve(); }
    });
}

/** Start a proxy program; its stdout and stderr go to log. Ready when its
 *  port accepts (bounded). */
async function startProc(bin, args, port, log, host = '127.0.0.1') {
    const fd = fs.openSync(log, 'a');
    const child = spawn(bin, args, { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    procs.set(child.pid, child);
    child.once('exit', () => procs.delete(child.pid));
    await lib.waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`${bin} exited: ${fs.readFileSync(log, 'utf8')}`);
        return canConnect(port, host);
    }, 10000, 50, `${bin} listening on ${port}`);
    return { child, port, log, stop: () => stopProc(child) };
}

async function socks5(t, auth) {
    const port = await freePort();
    const log = path.join(lib.tmpdir(t), 'microsocks.log');
    const args = ['-i', '127.0.0.1', '-p', String(port)];
    if (auth) args.push('-u', auth.user, '-P', auth.password);
    const p = await startProc('microsocks', args, port, log);
    t.after(p.stop);
    return p;
}

async function httpProxy(t, connectPorts, auth) {
    const port = await freePort();
    const dir = lib.tmpdir(t);
    const log = path.join(dir, 'tinyproxy.log');
    const conf = path.join(dir, 'tinyproxy.conf');
    fs.writeFileSync(conf, [
        `Port ${port}`, 'Listen 127.0.0.1', 'Timeout 30', 'MaxClients 20',
        `LogFile "${log}"`, 'LogLevel Connect', 'Allow 127.0.0.1',
        ...connectPorts.map((cp) => `ConnectPort ${cp}`),
        ...(auth ? [`BasicAuth ${auth.user} ${auth.password}`] : []), '',
    ].join('\n'));
    const p = await startProc('tinyproxy', ['-d', '-c', conf], port, path.join(dir, 'tinyproxy.out'));
    p.log = log;
    t.after(p.stop);
    return p;
}

const readLog = (p) => { try { return fs.readFileSync(p.log, 'utf8'); } catch (_) { return ''; } };

function server(peer, extra) {
    return Object.assign({
        name: 'local', host: '127.0.0.1', port: peer.port, transport: 'plain',
        sender: { address: 'app@example.test' },
    }, extra);
}

function cli(cfg, args, env = {}) {
    return lib.runCli(['--config', cfg].concat(args), { env, timeoutMs: 60000 });
}

const transports = [
    { transport: 'plain', tls: 'none' },
    { transport: 'tls', tls: 'implicit' },
    { transport: 'starttls', tls: 'starttls' },
];

for (const tr of transports) {
    for (const type of ['socks5', 'http']) {
        test(`${tr.transport} through ${type}: delivered, the proxy saw it, TLS verified end to end`, async (t) => {
            const dir = lib.tmpdir(t);
            const peer = await lib.startPeer({ t, tls: tr.tls, cert: pki.server.cert, key: pki.server.key });
            const proxy = type === 'socks5' ? await socks5(t) : await httpProxy(t, [peer.port]);
            const extra = { transport: tr.transport, proxy: { type, host: '127.0.0.1', port: proxy.port } };
            if (tr.tls !== 'none') extra.ca_file = pki.ca;
            const cfg = lib.writeConfig(dir, { servers: [server(peer, extra)] });
            const r = await cli(cfg, ['-v', 'send', '--to', 'to@example.test', '--subject', `via ${type}`, '--body', 'hi\n']);
            assert.equal(r.code, 0, r.stderr);
            const msgs = await lib.readMessages(peer.out);
            assert.equal(msgs.length, 1);
            assert.equal(msgs[0].subject, `via ${type}`);
            await lib.waitFor(() => readLog(proxy).includes(String(peer.port)), 5000, 25, 'the proxy log line');
            if (tr.tls !== 'none') assert.match(r.stderr, /certificate verified/);

            if (tr.tls !== 'none') {
                // a wrong-host certificate behind the proxy still fails at stage tls
                const bad = await lib.startPeer({ t, tls: tr.tls, cert: pki.wronghost.cert, key: pki.wronghost.key });
                let px = proxy;
                if (type === 'http') px = await httpProxy(t, [bad.port]);
                const cfg2 = lib.writeConfig(dir, { servers: [server(bad, Object.assign({}, extra,
                    { proxy: { type, host: '127.0.0.1', port: px.port } }))] }, 'bad.json');
                const r2 = await cli(cfg2, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n']);
                assert.equal(r2.code, 69, r2.stderr);
                assert.match(r2.stderr, /tls/i);
                assert.equal((await lib.readMessages(bad.out)).length, 0);
            }
        });
    }
}

test('IPv6: a socks5 proxy at ::1 reaches a server named by an IPv6 literal', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, host: '::1' });
    const port = await freePort();
    const log = path.join(lib.tmpdir(t), 'microsocks6.log');
    const p = await startProc('microsocks', ['-i', '::1', '-p', String(port)], port, log, '::1');
    t.after(p.stop);
    const cfg = lib.writeConfig(dir, { servers: [server(peer, { host: '::1',
        proxy: { type: 'socks5', host: '::1', port } })] });
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'v6', '--body', 'x\n']);
    assert.equal(r.code, 0, r.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'v6');
});

test('proxy down: 75 naming the proxy', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const dead = await freePort();
    const cfg = lib.writeConfig(dir, { servers: [server(peer, { proxy: { type: 'socks5', host: '127.0.0.1', port: dead } })] });
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n']);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, new RegExp(`proxy socks5 127\\.0\\.0\\.1:${dead}`));
    assert.equal((await lib.readMessages(peer.out)).length, 0);
});

test('proxy authentication refused (microsocks, wrong password): 77 naming the proxy', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const proxy = await socks5(t, { user: 'pxuser', password: PROXY_PASSWORD });
    const mk = (pw) => lib.writeConfig(dir, { servers: [server(peer, { proxy: {
        type: 'socks5', host: '127.0.0.1', port: proxy.port, user: 'pxuser', password_env: 'MC_PROXY_PW' } })] });
    const cfg = mk();
    const bad = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n'], { MC_PROXY_PW: 'wrong' });
    assert.equal(bad.code, 77, bad.stderr);
    assert.match(bad.stderr, new RegExp(`proxy socks5 127\\.0\\.0\\.1:${proxy.port}`));
    assert.ok(!bad.stderr.includes('wrong'), 'the password is not shown');
    const ok = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'authed', '--body', 'x\n'], { MC_PROXY_PW: PROXY_PASSWORD });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await lib.readMessages(peer.out)).length, 1);
});

// tinyproxy answers a refused BasicAuth with 401, not RFC 9110's 407: both
// are "authentication refused" (DESIGN.md).
test('HTTP proxy authentication (tinyproxy BasicAuth): a wrong password is refused, 77 naming the proxy and its status', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const proxy = await httpProxy(t, [peer.port], { user: 'pxuser', password: PROXY_PASSWORD });
    const cfg = lib.writeConfig(dir, { servers: [server(peer, { proxy: {
        type: 'http', host: '127.0.0.1', port: proxy.port, user: 'pxuser', password_env: 'MC_PROXY_PW' } })] });
    const bad = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n'], { MC_PROXY_PW: 'wrong-Pw' });
    assert.equal(bad.code, 77, bad.stderr);
    assert.match(bad.stderr, new RegExp(`proxy http 127\\.0\\.0\\.1:${proxy.port}`));
    assert.match(bad.stderr, /authentication refused: HTTP 40[17] /);
    assert.ok(!bad.stderr.includes('wrong-Pw'), 'the password is not shown');
    assert.equal((await lib.readMessages(peer.out)).length, 0);
    const ok = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'basic', '--body', 'x\n'], { MC_PROXY_PW: PROXY_PASSWORD });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await lib.readMessages(peer.out)).length, 1);
});

test('check --secrets resolves the proxy passwords (the server\'s and auth.proxy)', async (t) => {
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'a', host: '127.0.0.1', port: 2525, transport: 'starttls',
        proxy: { type: 'socks5', host: '127.0.0.1', port: 1080, user: 'u', password_file: path.join(dir, 'missing') },
        auth: { provider: 'manual', user: 'u@example.test', client_id: 'c', authorization_url: 'https://127.0.0.1/a',
            token_url: 'https://127.0.0.1/t',
            proxy: { type: 'http', host: '127.0.0.1', port: 3128, user: 'u', password_env: 'MC_PROXY_PW_UNSET' } } }] });
    const plain = await cli(cfg, ['check']);
    assert.equal(plain.code, 0, plain.stdout + plain.stderr);
    const r = await cli(cfg, ['check', '--secrets']);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stderr, /servers\[0\]\.proxy\.password_file: cannot read/);
    assert.match(r.stderr, /servers\[0\]\.auth\.proxy\.password_env: environment variable MC_PROXY_PW_UNSET is not set/);
    fs.writeFileSync(path.join(dir, 'missing'), 'pw\n', { mode: 0o600 });
    const ok = await cli(cfg, ['check', '--secrets'], { MC_PROXY_PW_UNSET: 'x' });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
});

test('CONNECT refused (tinyproxy, a port not in ConnectPort): 69 naming the proxy and its 403', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const proxy = await httpProxy(t, [peer.port + 1 === 65536 ? 1 : peer.port + 1]);
    const cfg = lib.writeConfig(dir, { servers: [server(peer, { proxy: { type: 'http', host: '127.0.0.1', port: proxy.port } })] });
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n']);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, new RegExp(`proxy http 127\\.0\\.0\\.1:${proxy.port}`));
    assert.match(r.stderr, /403/);
    assert.equal((await lib.readMessages(peer.out)).length, 0);
});

test('credentials to a non-loopback proxy without allow_plaintext_auth: 78 from check and send', async (t) => {
    const dir = lib.tmpdir(t);
    const srv = { name: 'far', host: '127.0.0.1', port: 2525, transport: 'plain',
        proxy: { type: 'http', host: 'proxy.example.test', port: 3128, user: 'u', password_env: 'MC_PROXY_PW' } };
    const cfg = lib.writeConfig(dir, { servers: [srv] });
    const r = await cli(cfg, ['check']);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /servers\[0\]\.proxy/);
    assert.match(r.stdout + r.stderr, /allow_plaintext_auth/);
    const s = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 'x', '--body', 'x\n'], { MC_PROXY_PW: 'x' });
    assert.equal(s.code, 78, s.stderr);
    srv.proxy.allow_plaintext_auth = true;
    const cfg2 = lib.writeConfig(dir, { servers: [srv] }, 'ok.json');
    const r2 = await cli(cfg2, ['check']);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
});

test('proxy objects are validated with JSON paths', async (t) => {
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'a', host: '127.0.0.1', transport: 'plain',
        proxy: { type: 'socks5', host: '127.0.0.1', bogus: 1 } },
    { name: 'b', host: '127.0.0.1', transport: 'plain', proxy: { type: 'nosuch', host: '127.0.0.1' } }] });
    const r = await cli(cfg, ['check']);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /servers\[0\]\.proxy.*unknown key "bogus"/);
    assert.match(out, /servers\[1\]\.proxy\.type.*unknown proxy type "nosuch"/);
});

// ------------------------------------------------------------ acceptance 2: OAuth through socks5

test('an OAuth token refresh goes through the socks5 proxy to oidc-provider', async (t) => {
    const { startOidc } = require('../peers/oauth-lib');
    const op = await startOidc({ pki, accessTtl: 3600 });
    t.after(() => op.stop());
    const dir = lib.tmpdir(t);
    const state = path.join(dir, 'state');
    const env = { MAILCONN_STATE_DIR: state };
    const proxy = await socks5(t);
    const peer = await lib.startPeer({
        t, out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert, key: pki.server.key, enhanced: true,
        extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`, '--oauth-style', 'gmail', '--token-user', op.account],
    });
    const auth = {
        provider: 'google', user: op.account, client_id: 'public',
        scope: 'https://mail.google.com/ offline_access',
        authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
        device_authorization_url: op.deviceUrl, revocation_url: op.revocationUrl,
        ca_file: pki.ca, timeout_s: 10,
    };
    const srv = (extra) => Object.assign({
        name: 'gmail', host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account }, auth,
        proxy: { type: 'socks5', host: '127.0.0.1', port: proxy.port },
    }, extra);
    const cfg = lib.writeConfig(dir, { servers: [srv()] });

    let played = false;
    const a = await lib.runLines(['--config', cfg, 'auth', '--server', 'gmail', '--paste'], {
        env,
        onLine: async (line, child) => {
            const m = /^(https:\/\/\S+)$/.exec(line.trim());
            if (m && !played) {
                played = true;
                const p = await op.playBrowser(m[1], { load: false });
                child.stdin.end(`${p.location}\n`);
            }
        },
    });
    assert.equal(a.code, 0, a.stdout + a.stderr);

    // age the access token, then send: one refresh, through the proxy
    const tf = path.join(state, 'tokens', 'gmail.json');
    const tok = JSON.parse(fs.readFileSync(tf, 'utf8'));
    const now = Math.floor(Date.now() / 1000);
    tok.expires_at = now + 1000;
    tok.access_issued_at = now + 1000 - 3600;
    fs.writeFileSync(tf, JSON.stringify(tok));
    const tokenPort = new URL(op.tokenUrl).port;
    fs.writeFileSync(proxy.log, '');   // only what the send does from here
    const c0 = await op.counts();
    const r = await lib.runLines(['--config', lib.writeConfig(dir, { servers: [srv({ refresh_margin_s: 7200 })] }, 'm.json'),
        'send', '--server', 'gmail', '--to', 'rcpt@example.net', '--subject', 'refreshed via socks5', '--body', 'x'], { env });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const c1 = await op.counts();
    assert.equal((c1.token.refresh_token || 0) - (c0.token.refresh_token || 0), 1, 'one refresh');
    await lib.waitFor(() => readLog(proxy).includes(`:${tokenPort}`), 5000, 25, 'the token endpoint in the proxy log');
    assert.equal((await lib.readMessages(peer.out)).length, 1);

    // auth.proxy "none": the engine goes direct, the proxy sees no token request
    fs.writeFileSync(tf, JSON.stringify(Object.assign(JSON.parse(fs.readFileSync(tf, 'utf8')),
        { expires_at: now + 1000, access_issued_at: now + 1000 - 3600 })));
    fs.writeFileSync(proxy.log, '');
    const direct = lib.writeConfig(dir, { servers: [srv({ refresh_margin_s: 7200, auth: Object.assign({}, auth, { proxy: 'none' }) })] }, 'n.json');
    const r2 = await lib.runLines(['--config', direct, 'send', '--server', 'gmail', '--to', 'rcpt@example.net',
        '--subject', 'direct token', '--body', 'x'], { env });
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.ok(!readLog(proxy).includes(`:${tokenPort}`), 'the token request went through the proxy');
    assert.ok(readLog(proxy).includes(`:${peer.port}`), 'the SMTP connection went through the proxy');
});

test('an inline proxy password in a config others can read is refused (78)', async (t) => {
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'a', host: '127.0.0.1', transport: 'plain',
        proxy: { type: 'socks5', host: '127.0.0.1', user: 'u', password: 'inline-Proxy-Pw' } }] });
    const ok = await cli(cfg, ['check']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    fs.chmodSync(cfg, 0o644);
    const r = await cli(cfg, ['check']);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /servers\[0\]\.proxy\.password/);
    assert.ok(!(r.stdout + r.stderr).includes('inline-Proxy-Pw'));
});
