// The token-store plugin kind (issue 11, DESIGN.md "Token stores and
// fleets"): "token_store": {"type": "testdir", "dir": D} loads
// store-testdir.so (tests/integration/store-dir), a directory store. The
// tokens `mailconn auth` gets from a real authorization server
// (tests/peers/oidc-peer.js: npm oidc-provider) land in D, not in
// <state>/tokens; a send (XOAUTH2 to smtp-server, which introspects the
// token) and a refresh go through it; `mailconn servers` shows the store
// and its health; `check` validates without opening it; bad keys and a
// missing plugin are config errors (78) with the JSON path and the file
// searched; an application's own store (mc_context_options.token_store,
// tests/integration/oauth-app) comes before the config's.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const BIN = process.env.MAILCONN_BIN;
const APP = process.env.MAILCONN_OAUTH_APP;
const PLUGIN = process.env.MAILCONN_STORE_TESTDIR;
const secrets = new Set();
const transcript = [];

let pki, op, base, state, peer, store, cfg;

const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function pluginPath() {
    return [path.dirname(PLUGIN), process.env.MAILCONN_PLUGIN_PATH || ''].filter(Boolean).join(':');
}

async function mc(args, opts = {}) {
    const r = await lib.runLines(args, Object.assign({}, opts, {
        env: Object.assign({ MAILCONN_STATE_DIR: state, MAILCONN_PLUGIN_PATH: pluginPath() },
            opts.env || {}),
    }));
    transcript.push(`$ mailconn ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    return r;
}

/** oauth-app (public API, libmailconn.so), one process per call. */
function app(args, env = {}) {
    return new Promise((resolve, reject) => {
        const e = Object.assign({}, process.env, { MAILCONN_PLUGIN_PATH: pluginPath() }, env);
        delete e.MAILCONN_STATE_DIR;
        if (!env.OAUTH_APP_STORE) delete e.OAUTH_APP_STORE;
        const child = spawn(APP, [cfg, state, ...args], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { err += d; });
        child.on('error', reject);
        child.on('close', (code) => {
            clearTimeout(timer);
            transcript.push(`$ oauth-app ${args.join(' ')}\n${out}${err}`);
            resolve({ code, stdout: out, stderr: err, last: out.trim().split('\n').pop() || '' });
        });
    });
}

function rec(name) {
    const t = JSON.parse(fs.readFileSync(path.join(store, `${name}.rec`), 'utf8'));
    for (const s of [t.access_token, t.refresh_token]) if (s) secrets.add(s);
    return t;
}

function opens() {
    try {
        return fs.readFileSync(path.join(store, 'opens'), 'utf8').split('\n').filter(Boolean).length;
    } catch (_) {
        return 0;
    }
}

function gmail(extra = {}) {
    return Object.assign({
        name: 'gmail', host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account },
        auth: {
            provider: 'google', user: op.account, client_id: 'public',
            scope: 'https://mail.google.com/ offline_access',
            authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
            device_authorization_url: op.deviceUrl, revocation_url: op.revocationUrl,
            ca_file: pki.ca, timeout_s: 10,
        },
    }, extra);
}

function writeCfg(tokenStore, name, extra) {
    const doc = { servers: [gmail(extra)] };
    if (tokenStore !== undefined) doc.token_store = tokenStore;
    return lib.writeConfig(base, doc, name);
}

function send(c) {
    return mc(['--config', c, 'send', '--server', 'gmail', '--to', 'rcpt@example.net',
        '--subject', 'via the store', '--body', 'hello']);
}

function pasteAuth(c) {
    let played = false;
    return mc(['--config', c, 'auth', '--server', 'gmail', '--paste'], {
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

test.before(async () => {
    assert.ok(BIN && APP && PLUGIN, 'run with meson test');
    base = lib.tmpdir();
    state = path.join(base, 'state');
    store = path.join(base, 'store');
    pki = lib.mkca(path.join(base, 'pki'));
    op = await startOidc({ pki, accessTtl: 3600 });
    secrets.add(op.secret);
    peer = await lib.startPeer({
        out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`, '--oauth-style', 'gmail',
            '--token-user', op.account],
    });
    cfg = writeCfg({ type: 'testdir', dir: store });
});

test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
    const all = transcript.join('\n');
    for (const s of secrets) assert.equal(all.includes(s), false, 'a token in the output');
});

test('`check` validates the store without opening it', async () => {
    const r = await mc(['--config', cfg, 'check']);
    assert.equal(r.code, 0, show(r));
    assert.equal(fs.existsSync(store), false, 'check opened the store');
});

test('`auth` stores the tokens in the plugin store, not in <state>/tokens; send uses them', async () => {
    const a = await pasteAuth(cfg);
    assert.equal(a.code, 0, show(a));
    assert.match(a.stdout, /^authorized: tokens stored for server gmail$/m);
    const t = rec('gmail');
    assert.ok(t.access_token && t.refresh_token);
    assert.equal(fs.existsSync(path.join(state, 'tokens', 'gmail.json')), false, 'a token file');
    assert.ok(opens() >= 1);
    const r = await send(cfg);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent .*250/m);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.meta.user, op.account);
    assert.ok(!fs.readdirSync(store).some((f) => f.startsWith('.tmp-')), 'a temp file left');
});

test('a refresh goes through the plugin store', async () => {
    const t = rec('gmail');
    const now = Math.floor(Date.now() / 1000);
    t.expires_at = now + 1000;
    t.access_issued_at = now + 1000 - 3600;
    fs.writeFileSync(path.join(store, 'gmail.rec'), JSON.stringify(t), { mode: 0o600 });
    const c = writeCfg({ type: 'testdir', dir: store }, 'margin.json', { refresh_margin_s: 7200 });
    const c0 = await op.counts();
    const r = await send(c);
    assert.equal(r.code, 0, show(r));
    const c1 = await op.counts();
    assert.equal((c1.token.refresh_token || 0) - (c0.token.refresh_token || 0), 1, 'one refresh');
    const after = rec('gmail');
    assert.notEqual(after.access_token, t.access_token);
    assert.equal((await op.introspect(after.access_token)).active, true);
    assert.equal(fs.existsSync(path.join(state, 'tokens', 'gmail.json')), false);
});

test('`mailconn servers` shows the store and its health', async () => {
    const r = await mc(['--config', cfg, 'servers']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /gmail .* token=stored access-expires-in=\d+m/);
    assert.match(r.stdout, /^token store: testdir$/m);
    // the built-in store, named with its folder
    const f = writeCfg(undefined, 'file.json');
    const r2 = await mc(['--config', f, 'servers']);
    assert.equal(r2.code, 0, show(r2));
    assert.match(r2.stdout, /gmail .* token=none\(run mailconn auth\)/);
    assert.ok(r2.stdout.includes(`token store: file ${path.join(state, 'tokens')}\n`), show(r2));
    const f2 = writeCfg({ type: 'file' }, 'file2.json');
    const r3 = await mc(['--config', f2, 'servers']);
    assert.equal(r3.code, 0, show(r3));
    assert.match(r3.stdout, /^token store: file /m);
    // a store that cannot open: 78, and why
    const notDir = path.join(base, 'a-file');
    fs.writeFileSync(notDir, 'x');
    const bad = writeCfg({ type: 'testdir', dir: notDir }, 'broken.json');
    const r4 = await mc(['--config', bad, 'servers']);
    assert.equal(r4.code, 78, show(r4));
    assert.match(r4.stdout, /^token store: testdir \(unavailable: see the error above\)$/m);
    assert.ok(r4.stderr.includes(`testdir: cannot use ${notDir}`), show(r4));
    const s = await send(bad);
    assert.equal(s.code, 78, show(s));
    assert.ok(s.stderr.includes(`testdir: cannot use ${notDir}`), show(s));
});

test('a key the plugin does not take is 78 with its JSON path; validate reports too', async () => {
    const c = writeCfg({ type: 'testdir', dir: store, bogus: 1 }, 'bogus.json');
    for (const cmd of [['check'], ['servers']]) {
        const r = await mc(['--config', c, ...cmd]);
        assert.equal(r.code, 78, show(r));
        assert.ok(r.stderr.includes('token_store.bogus'), show(r));
    }
    const v = writeCfg({ type: 'testdir', dir: 'relative' }, 'relative.json');
    const r = await mc(['--config', v, 'check']);
    assert.equal(r.code, 78, show(r));
    assert.ok(r.stderr.includes('token_store.dir: must be an absolute path'), show(r));
    const fk = writeCfg({ type: 'file', dir: store }, 'filekey.json');
    const r2 = await mc(['--config', fk, 'check']);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes('token_store.dir'), show(r2));
});

test('a missing store plugin is 78 naming the file searched', async () => {
    const c = writeCfg({ type: 'nosuch', dir: store }, 'nosuch.json');
    for (const cmd of [['check'], ['servers']]) {
        const r = await mc(['--config', c, ...cmd]);
        assert.equal(r.code, 78, show(r));
        assert.ok(r.stderr.includes('token_store.type'), show(r));
        assert.ok(r.stderr.includes('store-nosuch.so'), show(r));
    }
});

test("an application's store (mc_context_options.token_store) comes before the config's", async () => {
    const own = lib.tmpdir();
    const viaPlugin = await app(['status', 'gmail']);
    assert.equal(viaPlugin.code, 0, `${viaPlugin.stdout}${viaPlugin.stderr}`);
    assert.match(viaPlugin.last, /^status stored=1 /);
    const n = opens();
    const viaApp = await app(['status', 'gmail'], { OAUTH_APP_STORE: own });
    assert.equal(viaApp.code, 0, `${viaApp.stdout}${viaApp.stderr}`);
    assert.match(viaApp.last, /^status stored=0 /, 'the config store was used');
    assert.equal(opens(), n, 'the config store was opened');
});

test('a reload that changes token_store is refused; one that keeps it is taken', async () => {
    const same = writeCfg({ type: 'testdir', dir: store }, 'same.json', { timeout_s: 30 });
    const ok = await app(['reload', 'gmail', same]);
    assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}`);
    assert.match(ok.stdout, /^status stored=1 /m);
    assert.equal(ok.last, 'ok reload');
    for (const [name, ts] of [['other-dir.json', { type: 'testdir', dir: path.join(base, 'other') }],
                              ['to-file.json', { type: 'file' }], ['none.json', undefined]]) {
        const c = writeCfg(ts, name);
        const r = await app(['reload', 'gmail', c]);
        assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.last, /^error ECONFIG .*token_store: a reload cannot change the token store/, name);
    }
});
