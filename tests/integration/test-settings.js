// examples/settings.c, the backend of a product's mail-server settings page
// (issue 10, acceptance 2), run against real peers: npm smtp-server
// (tests/peers/smtp-peer.js: a STARTTLS server with a password account, a
// plain relay, an implicit-TLS server that checks bearer tokens at the
// OAuth server) and npm oidc-provider (tests/peers/oidc-peer.js), with a
// throwaway CA (mkca.sh).
//
// The tenant's config lives in a "database" file this test owns; every
// request is a separate run of the example, which reads that text, hands it
// to the library as config_json and writes mc_context_config_json back
// after an edit. No config file is ever read: MAILCONN_CONFIG points at a
// decoy the output must never show. The OAuth flow crosses processes:
// `oauth-begin` in one, the browser (oauth-lib's playBrowser through
// oidc-provider's login and consent) lands on the example's own
// `callback-listen` in a second, `oauth-finish` redeems in a third.
//
// Every assertion checks what a peer received or recorded, or the exact
// error code, stage, SMTP code, diag or action the example printed.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const BIN = process.env.MAILCONN_SETTINGS;
const PASSWORD = 'pw-1 for the desk';
const runs = [];            // every run's output, for the secrets check at the end

let base, pki, op, db, state, otherState, decoy;
let legacyPeer, officePeer, gmailPeer;

// ------------------------------------------------------------ helpers

const show = (r) => `exit ${r.code}${r.signal ? ` (signal ${r.signal})` : ''}\n` +
    `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** The environment of every run: a decoy config file where the library
 *  would look for one, and a state folder other than --state. */
function env() {
    return {
        MAILCONN_CONFIG: decoy,
        XDG_CONFIG_HOME: path.join(base, 'xdg-config'),
        MAILCONN_STATE_DIR: otherState,
    };
}

/** One request to the settings backend (a separate process). */
async function settings(args, opts = {}) {
    const pre = opts.noDb ? [] : ['--db', db, '--state', state];
    const r = await lib.run(BIN, [...pre, ...args],
        { env: env(), input: opts.input, timeoutMs: opts.timeoutMs || 30000 });
    runs.push(`$ settings ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    assert.equal(r.timedOut, false, show(r));
    return r;
}

/** `put -` with the server's JSON on stdin (secrets stay out of argv). */
const put = (server) => settings(['put', '-'], { input: JSON.stringify(server) });

const dbText = () => fs.readFileSync(db, 'utf8');
const dbJson = () => JSON.parse(dbText());
const names = () => dbJson().servers.map((s) => s.name);
const byName = (name) => dbJson().servers.find((s) => s.name === name);

/** The peer's events without the session ids. */
const events = (peer) => lib.events(peer.out).map((l) => l.slice(l.indexOf(' ') + 1));

/** The events of one session. */
const sessionEvents = (peer, id) => lib.events(peer.out)
    .filter((l) => l.startsWith(`${id} `)).map((l) => l.slice(id.length + 1));

/** Sessions that connected while fn ran, each one's events once it closed. */
async function newSessions(peer, fn) {
    const before = lib.sessions(peer.out);
    const r = await fn();
    const ids = lib.sessions(peer.out).filter((id) => !before.includes(id));
    for (const id of ids) {
        await lib.waitFor(() => sessionEvents(peer, id).includes('close'), 5000, 25,
            `session ${id} closed`);
    }
    return { r, sessions: ids.map((id) => sessionEvents(peer, id)) };
}

/** The stage lines `settings test` printed, as [stage, text]. */
function stages(stdout) {
    return stdout.split('\n').map((l) => /^stage (\w+): (.*)$/.exec(l)).filter(Boolean)
        .map((m) => [m[1], m[2]]);
}

/** "  diag: PATH server=N key=K: MESSAGE" lines, as objects. */
function diags(stderr) {
    return stderr.split('\n').map((l) => /^ {2}diag: (\S+) server=(-?\d+) key=(\S*): (.+)$/.exec(l))
        .filter(Boolean).map((m) => ({ path: m[1], server: Number(m[2]), key: m[3], message: m[4] }));
}

/** The action line, normalised ("check-credentials", "CHECK_CREDENTIALS"
 *  -> "checkcredentials"), or null. */
function action(stderr) {
    const m = /^ {2}action: (\S+)$/m.exec(stderr);
    return m ? m[1].toLowerCase().replace(/[^a-z]/g, '') : null;
}

/** "  code=ECONFIG stage=config smtp=535 ..." as {code, stage, smtp}. */
function errorFacts(stderr) {
    const m = /^ {2}code=(\w+) stage=(\w+)(?: smtp=(\d+))?/m.exec(stderr);
    return m ? { code: m[1], stage: m[2], smtp: m[3] ? Number(m[3]) : 0 } : null;
}

/** The status line for a server, as a map. */
function status(stdout) {
    const m = /^status (\S+): (.*)$/m.exec(stdout);
    assert.ok(m, `a status line in:\n${stdout}`);
    return Object.fromEntries(m[2].split(' ').map((kv) => kv.split('=')));
}

async function tokenCounts() {
    const c = await op.counts();
    return { code: c.token.authorization_code || 0, refresh: c.token.refresh_token || 0,
             revocation: c.revocation };
}

/**
 * `settings callback-listen 0 WAIT`: the example's own redirect target.
 * Resolves {url (the redirect_uri it listens on), done (its exit, bounded),
 * stop()}; stopped by PID at the end of the test whatever happens.
 */
async function callbackListener(t) {
    const child = spawn(BIN, ['callback-listen', '0', '30'], { env: Object.assign({}, process.env, env()),
        stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('close', (code, signal) => {
        runs.push(`$ settings callback-listen 0 30\n${stdout}${stderr}`);
        resolve({ code, signal, stdout, stderr });
    }));
    const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
            try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
        }
        await Promise.race([exited, lib.sleep(5000)]);
    };
    t.after(stop);
    const url = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`callback-listen: not listening within 10 s\n${stderr}`)),
            10000);
        child.stdout.on('data', (d) => {
            stdout += d;
            const m = /^listening (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(stdout);
            if (m) { clearTimeout(timer); resolve(m[1]); }
        });
        exited.then((r) => { clearTimeout(timer); reject(new Error(`callback-listen exited first:\n${show(r)}`)); });
    });
    const done = () => Promise.race([exited,
        lib.sleep(15000).then(() => { throw new Error('callback-listen did not exit within 15 s'); })]);
    return { url, done, stop };
}

// ------------------------------------------------------------ the tenant's servers

const legacy = () => ({
    name: 'legacy', host: '127.0.0.1', port: legacyPeer.port, transport: 'plain',
    sender: { address: 'legacy@example.org' }, timeout_s: 10, default: true,
});

const office = (o = {}) => ({
    name: o.name || 'office', host: '127.0.0.1', port: o.port || officePeer.port,
    transport: 'starttls', ca_file: pki.ca,
    sender: o.sender || { address: 'desk@example.org', name: 'Help Desk' },
    auth: { provider: 'basic', user: 'desk', password: o.password === undefined ? PASSWORD : o.password },
    timeout_s: 10,
});

/** Google-shaped: provider google, its endpoints pointed at oidc-provider. */
const gmail = (o = {}) => {
    const auth = {
        provider: 'google', user: op.account, client_id: 'public',
        // oidc-provider issues a refresh token for offline_access
        scope: 'https://mail.google.com/ offline_access',
        authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
        revocation_url: op.revocationUrl, ca_file: pki.ca, timeout_s: 10,
    };
    if (o.noClientId) delete auth.client_id;
    return {
        name: o.name || 'gmail', host: '127.0.0.1', port: gmailPeer.port, transport: 'tls',
        ca_file: pki.ca, sender: { address: op.account }, auth, timeout_s: 10,
    };
};

// ------------------------------------------------------------ set-up

test.before(async () => {
    assert.ok(BIN, 'MAILCONN_SETTINGS is set (run with meson test)');
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
    state = path.join(base, 'state');
    otherState = path.join(base, 'other-state');
    fs.mkdirSync(state, { mode: 0o700 });
    fs.mkdirSync(otherState, { mode: 0o700 });
    fs.mkdirSync(path.join(base, 'xdg-config'), { mode: 0o700 });
    decoy = lib.writeConfig(base, { servers: [{ name: 'decoy-from-a-file', host: '127.0.0.1', port: 9,
        transport: 'plain', sender: { address: 'decoy@example.org' } }] }, 'decoy.json');

    op = await startOidc({ pki, accessTtl: 3600 });
    legacyPeer = await lib.startPeer({});
    officePeer = await lib.startPeer({ tls: 'starttls', cert: pki.server.cert, key: pki.server.key,
        users: { desk: PASSWORD }, enhanced: true });
    gmailPeer = await lib.startPeer({ tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`, '--oauth-style', 'gmail',
            '--token-user', op.account, '--oauth-mechs', 'XOAUTH2'] });

    // the tenant's row: one server so far, the default
    db = lib.writeConfig(base, { servers: [legacy()] }, 'tenant-db.json');
});

test.after(async () => {
    for (const p of [gmailPeer, officePeer, legacyPeer]) if (p) await p.stop();
    if (op) await op.stop();
    await lib.stopAll();
});

// ------------------------------------------------------------ editing

test('two servers added with mc_context_put_server, the config only ever in memory', async () => {
    const a = await put(office());
    assert.equal(a.code, 0, show(a));
    assert.match(a.stdout, /^saved: 2 servers$/m);
    const b = await put(gmail());
    assert.equal(b.code, 0, show(b));
    assert.match(b.stdout, /^saved: 3 servers$/m);
    // the "database" holds what the library wrote back, secrets included
    assert.deepEqual(names(), ['legacy', 'office', 'gmail']);
    assert.equal(byName('office').auth.password, PASSWORD);
    assert.equal(byName('gmail').auth.client_id, 'public');

    // the config text is the database's, never the file the library would find
    const s = await settings(['show']);
    assert.equal(s.code, 0, show(s));
    assert.deepEqual(JSON.parse(s.stdout), dbJson());
    assert.doesNotMatch(s.stdout + s.stderr, /decoy/);

    // what the edit form is filled with: the password shown as null
    const g = await settings(['get', 'office']);
    assert.equal(g.code, 0, show(g));
    const form = JSON.parse(g.stdout);
    assert.equal(form.auth.password, null);
    assert.equal(form.auth.user, 'desk');
    assert.equal(form.port, officePeer.port);
    assert.ok(!g.stdout.includes(PASSWORD), 'no password in the form');

    // and the new server works: the peer saw the login and the message
    const { r, sessions } = await newSessions(officePeer, () =>
        settings(['send', 'office', 'rcpt@example.net', 'first from office', 'hello']));
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent: 250/m);
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0].some((e) => /^auth (PLAIN|LOGIN) desk$/.test(e)), sessions[0].join('\n'));
    assert.ok(!sessions[0].some((e) => e.startsWith('auth-fail')), sessions[0].join('\n'));
    const msgs = await lib.readMessages(officePeer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'first from office');
    assert.equal(msgs[0].meta.user, 'desk');
    assert.equal(msgs[0].meta.mailFrom, 'desk@example.org');
    assert.deepEqual(msgs[0].meta.rcptTo, ['rcpt@example.net']);
});

test('an edit without the password (null keeps it): the next send still authenticates', async () => {
    const e = await put(office({ password: null, sender: { address: 'support@example.org' } }));
    assert.equal(e.code, 0, show(e));
    assert.deepEqual(names(), ['legacy', 'office', 'gmail']);
    assert.equal(byName('office').sender.address, 'support@example.org');
    assert.equal(byName('office').auth.password, PASSWORD, 'the stored password kept');

    const { r, sessions } = await newSessions(officePeer, () =>
        settings(['send', 'office', 'rcpt@example.net', 'after the edit', 'hello again']));
    assert.equal(r.code, 0, show(r));
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0].some((x) => /^auth (PLAIN|LOGIN) desk$/.test(x)), sessions[0].join('\n'));
    assert.ok(!sessions[0].some((x) => x.startsWith('auth-fail')), sessions[0].join('\n'));
    const msgs = await lib.readMessages(officePeer.out);
    assert.equal(msgs.length, 2);
    assert.equal(msgs[1].subject, 'after the edit');
    assert.equal(msgs[1].meta.user, 'desk');
    assert.equal(msgs[1].meta.mailFrom, 'support@example.org');
});

test('the default moved, then one server removed', async () => {
    const d = await settings(['default', 'office']);
    assert.equal(d.code, 0, show(d));
    assert.equal(byName('office').default, true);
    assert.notEqual(byName('legacy').default, true);
    assert.equal(dbJson().servers.filter((s) => s.default === true).length, 1);

    // a send without a server name goes to the new default
    const before = lib.messageCount(officePeer.out);
    const s = await settings(['send', '-', 'rcpt@example.net', 'to the default', 'hi']);
    assert.equal(s.code, 0, show(s));
    assert.equal(lib.messageCount(officePeer.out), before + 1);
    assert.equal(lib.messageCount(legacyPeer.out), 0);
    const msgs = await lib.readMessages(officePeer.out);
    assert.equal(msgs[msgs.length - 1].subject, 'to the default');

    const r = await settings(['remove', 'legacy']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^removed: legacy$/m);
    assert.deepEqual(names(), ['office', 'gmail']);
    assert.equal(byName('office').default, true);

    const gone = await settings(['send', 'legacy', 'rcpt@example.net', 'nowhere', 'x']);
    assert.notEqual(gone.code, 0, show(gone));
    assert.equal(errorFacts(gone.stderr)?.code, 'ENOSERVER', show(gone));
    assert.equal(lib.messageCount(legacyPeer.out), 0);
    assert.deepEqual(lib.sessions(legacyPeer.out), [], 'nothing ever connected to the removed server');
});

test('a bad port and a missing client_id: diags with server index and key, nothing saved', async () => {
    const saved = dbText();

    const p = await put(office({ port: 70000, password: null }));
    assert.equal(p.code, 78, show(p));
    assert.equal(errorFacts(p.stderr)?.code, 'ECONFIG', show(p));
    const dp = diags(p.stderr);
    assert.equal(dp.length, 1, show(p));
    assert.deepEqual([dp[0].path, dp[0].server, dp[0].key], ['servers[0].port', 0, 'port']);
    assert.match(dp[0].message, /70000|65535/);
    assert.doesNotMatch(dp[0].message, /servers\[/, 'the message is without the path');
    assert.equal(action(p.stderr), 'fixconfig', show(p));
    assert.equal(dbText(), saved, 'a refused edit changes nothing');

    const c = await put(gmail({ name: 'gmail2', noClientId: true }));
    assert.equal(c.code, 78, show(c));
    const dc = diags(c.stderr);
    assert.equal(dc.length, 1, show(c));
    assert.deepEqual([dc[0].path, dc[0].server, dc[0].key],
        ['servers[2].auth.client_id', 2, 'auth.client_id']);
    assert.equal(action(c.stderr), 'fixconfig', show(c));
    assert.equal(dbText(), saved);

    // a whole config (an import) checked without a context. One import
    // each: a shape error (the port) may stop validation before the
    // providers' own rules (client_id) run, as `mailconn check` does.
    const imports = [
        [[office({ port: 70000 }), gmail()], ['servers[0].port', 0, 'port']],
        [[office(), gmail({ noClientId: true })], ['servers[1].auth.client_id', 1, 'auth.client_id']],
    ];
    for (const [servers, want] of imports) {
        const cand = lib.writeConfig(base, { servers }, 'import.json');
        const k = await settings(['check', cand], { noDb: true });
        assert.equal(k.code, 78, show(k));
        assert.deepEqual(diags(k.stderr).map((x) => [x.path, x.server, x.key]), [want], show(k));
        assert.equal(action(k.stderr), 'fixconfig', show(k));
    }

    const ok = await settings(['check', db], { noDb: true });
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /^valid$/m);
});

test('mc_server_test: every stage with the TLS facts, no message without a recipient', async () => {
    const before = lib.messageCount(officePeer.out);
    const { r, sessions } = await newSessions(officePeer, () => settings(['test', 'office']));
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^test passed: office$/m);
    const st = stages(r.stdout);
    const order = st.map(([s]) => s);
    for (const s of ['connect', 'greeting', 'ehlo', 'starttls', 'auth']) {
        assert.ok(order.includes(s), `stage ${s} reported:\n${r.stdout}`);
    }
    const at = (s) => order.indexOf(s);
    assert.ok(at('connect') < at('greeting') && at('greeting') < at('ehlo') &&
              at('ehlo') < at('starttls') && at('starttls') < at('auth'), r.stdout);
    assert.match(st[at('greeting')][1], /^220/);
    assert.ok(st.some(([s, l]) => s === 'auth' && /^235/.test(l)), r.stdout);
    // the TLS facts: version, cipher, verified against the test CA
    assert.ok(st.some(([s, l]) => (s === 'tls' || s === 'starttls') && /TLSv1\.[23]/.test(l) &&
                                  /verified/.test(l)), r.stdout);

    // the server saw a TLS session that logged in and sent nothing
    assert.equal(sessions.length, 1);
    const ev = sessions[0];
    assert.ok(ev.some((e) => e.startsWith('secure ')), ev.join('\n'));
    assert.ok(ev.some((e) => /^auth (PLAIN|LOGIN) desk$/.test(e)), ev.join('\n'));
    assert.ok(!ev.some((e) => /^(mail|rcpt|data) ?/.test(e)), ev.join('\n'));
    assert.equal(lib.messageCount(officePeer.out), before);

    // with a recipient: a short test message, received
    const w = await settings(['test', 'office', 'check@example.net']);
    assert.equal(w.code, 0, show(w));
    assert.equal(lib.messageCount(officePeer.out), before + 1);
    const msgs = await lib.readMessages(officePeer.out);
    assert.deepEqual(msgs[msgs.length - 1].meta.rcptTo, ['check@example.net']);
    assert.equal(msgs[msgs.length - 1].meta.user, 'desk');
});

test('mc_server_test: a refused password fails at auth with 535 and an action', async () => {
    const a = await put(office({ name: 'badpass', password: 'not the password' }));
    assert.equal(a.code, 0, show(a));
    const before = lib.messageCount(officePeer.out);
    const { r, sessions } = await newSessions(officePeer, () => settings(['test', 'badpass']));
    assert.equal(r.code, 77, show(r));
    const f = errorFacts(r.stderr);
    assert.deepEqual(f, { code: 'EAUTH', stage: 'auth', smtp: 535 }, show(r));
    assert.equal(action(r.stderr), 'checkcredentials', show(r));
    assert.doesNotMatch(r.stdout, /^test passed/m);
    // the stages before auth were reported as they happened
    const order = stages(r.stdout).map(([s]) => s);
    assert.ok(order.includes('starttls') && order.includes('ehlo'), r.stdout);
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0].some((e) => /^auth-fail (PLAIN|LOGIN) desk$/.test(e)), sessions[0].join('\n'));
    assert.equal(lib.messageCount(officePeer.out), before);
    assert.ok(!(r.stdout + r.stderr).includes('not the password'));

    const d = await settings(['remove', 'badpass']);
    assert.equal(d.code, 0, show(d));
    assert.deepEqual(names(), ['office', 'gmail']);
});

// ------------------------------------------------------------ "Connect account"

let callbackUrl;    // the redirect the listener received
let connected;      // status after the connect

test('a wrong state stores nothing', async () => {
    const b = await settings(['oauth-begin', 'gmail', 'http://127.0.0.1:9/']);
    assert.equal(b.code, 0, show(b));
    const url = b.stdout.trim();
    const p = await op.playBrowser(url, { load: false });
    const back = new URL(p.location);
    assert.ok(back.searchParams.get('code') && back.searchParams.get('state'), p.location);
    back.searchParams.set('state', `${back.searchParams.get('state')}x`);

    const c0 = await tokenCounts();
    const f = await settings(['oauth-finish', 'gmail', back.toString()]);
    assert.notEqual(f.code, 0, show(f));
    assert.equal(errorFacts(f.stderr)?.code, 'EOAUTH', show(f));
    assert.match(f.stderr, /state/i);
    const c1 = await tokenCounts();
    assert.equal(c1.code, c0.code, 'the code was never sent to the token endpoint');

    const s = await settings(['status', 'gmail']);
    assert.equal(s.code, 0, show(s));
    assert.equal(status(s.stdout).stored, 'no');
});

test('connect: begin, the browser at the example\'s own listener, finish in another process', async (t) => {
    const listener = await callbackListener(t);

    // process 1: the "Connect" button
    const b = await settings(['oauth-begin', 'gmail', listener.url]);
    assert.equal(b.code, 0, show(b));
    const url = new URL(b.stdout.trim());
    assert.equal(`${url.origin}${url.pathname}`, op.authorizationUrl);
    assert.equal(url.searchParams.get('client_id'), 'public');
    assert.equal(url.searchParams.get('redirect_uri'), listener.url);
    assert.equal(url.searchParams.get('response_type'), 'code');
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(url.searchParams.get('code_challenge'));
    assert.ok(url.searchParams.get('state'));
    assert.equal(fs.existsSync(path.join(otherState, 'pending')), false, 'the pending authorization is in --state');

    // the browser: login and consent at oidc-provider, then the redirect to
    // the listener (process 2), which answers it and prints what it got
    const c0 = await tokenCounts();
    const p = await op.playBrowser(url.toString());
    assert.equal(p.status, 200, p.body);
    const l = await listener.done();
    assert.equal(l.code, 0, show(l));
    const m = /^callback (\S+)$/m.exec(l.stdout);
    assert.ok(m, show(l));
    callbackUrl = m[1];
    assert.equal(callbackUrl, p.location);
    assert.equal(new URL(callbackUrl).searchParams.get('state'), url.searchParams.get('state'));

    // process 3: redeem
    const f = await settings(['oauth-finish', 'gmail', callbackUrl]);
    assert.equal(f.code, 0, show(f));
    assert.match(f.stdout, /^connected: gmail$/m);
    const c1 = await tokenCounts();
    assert.equal(c1.code, c0.code + 1, 'one code redeemed');

    const s = await settings(['status', 'gmail']);
    assert.equal(s.code, 0, show(s));
    connected = status(s.stdout);
    assert.equal(connected.stored, 'yes');
    assert.equal(connected.identity_mismatch, 'no');
    assert.ok(Number(connected.access_expires) > Date.now() / 1000, s.stdout);
    assert.equal(connected.store, 'ok');
    assert.ok(fs.existsSync(path.join(state, 'tokens', 'gmail.json')), 'tokens stored under --state');
    assert.equal(fs.existsSync(path.join(otherState, 'tokens')), false, 'nothing under $MAILCONN_STATE_DIR');
});

test('the same callback URL again (a reused state) stores nothing', async () => {
    assert.ok(callbackUrl, 'the connect test ran');
    const tokens = path.join(state, 'tokens', 'gmail.json');
    const bytes = fs.readFileSync(tokens);
    const c0 = await tokenCounts();
    const f = await settings(['oauth-finish', 'gmail', callbackUrl]);
    assert.notEqual(f.code, 0, show(f));
    assert.equal(errorFacts(f.stderr)?.code, 'EOAUTH', show(f));
    assert.match(f.stderr, /state/i);
    const c1 = await tokenCounts();
    assert.equal(c1.code, c0.code, 'the code was not redeemed again');
    assert.ok(fs.readFileSync(tokens).equals(bytes), 'the stored tokens unchanged');
    const s = await settings(['status', 'gmail']);
    assert.equal(s.code, 0, show(s));
    assert.deepEqual(status(s.stdout), connected);
});

test('a send with XOAUTH2, accepted by the peer as the authorized account', async () => {
    const { r, sessions } = await newSessions(gmailPeer, () =>
        settings(['send', 'gmail', 'rcpt@example.net', 'over oauth', 'hello from the settings page']));
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent: 250/m);
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0].includes(`auth XOAUTH2 ${op.account}`), sessions[0].join('\n'));
    assert.ok(!sessions[0].some((e) => e.startsWith('auth-fail')), sessions[0].join('\n'));
    const msgs = await lib.readMessages(gmailPeer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'over oauth');
    assert.equal(msgs[0].meta.user, op.account);
    assert.equal(msgs[0].meta.secure, true);
    assert.equal(msgs[0].text.trim(), 'hello from the settings page');
});

test('revoke: the provider revokes the grant, nothing is stored, the next send needs authorizing', async () => {
    const stored = JSON.parse(fs.readFileSync(path.join(state, 'tokens', 'gmail.json'), 'utf8'));
    assert.ok(stored.access_token && stored.refresh_token);
    assert.equal((await op.introspect(stored.access_token)).active, true);
    const c0 = await tokenCounts();

    const r = await settings(['revoke', 'gmail']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^revoked: gmail$/m);
    const c1 = await tokenCounts();
    assert.ok(c1.revocation > c0.revocation, 'the revocation endpoint was called');
    assert.equal((await op.introspect(stored.access_token)).active, false, 'the grant is gone');

    const s = await settings(['status', 'gmail']);
    assert.equal(s.code, 0, show(s));
    assert.equal(status(s.stdout).stored, 'no');

    const before = lib.messageCount(gmailPeer.out);
    const n = await settings(['send', 'gmail', 'rcpt@example.net', 'after revoke', 'x']);
    assert.equal(n.code, 77, show(n));
    assert.equal(action(n.stderr), 'authorize', show(n));
    assert.equal(lib.messageCount(gmailPeer.out), before);
    assert.ok(!events(gmailPeer).some((e) => e.startsWith('auth-fail')), 'no token was offered');

    // no run printed a token or a password (but `show`, which prints the
    // database's own text, inline password included)
    const all = runs.filter((r) => !r.startsWith('$ settings show\n')).join('\n');
    for (const [what, secret] of [['access token', stored.access_token],
        ['refresh token', stored.refresh_token], ['password', PASSWORD], ['client secret', op.secret]]) {
        assert.ok(!all.includes(secret), `the ${what} in the output`);
    }
});

test('the person refuses consent (error=access_denied): a clear error, nothing stored', async () => {
    const b = await settings(['oauth-begin', 'gmail', 'http://127.0.0.1:9/']);
    assert.equal(b.code, 0, show(b));
    await op.deny();
    const p = await op.playBrowser(b.stdout.trim(), { load: false });
    const back = new URL(p.location);
    assert.equal(back.searchParams.get('error'), 'access_denied', p.location);
    assert.equal(back.searchParams.get('code'), null);

    const c0 = await tokenCounts();
    const f = await settings(['oauth-finish', 'gmail', p.location]);
    assert.equal(f.code, 77, show(f));
    assert.equal(errorFacts(f.stderr)?.code, 'EAUTH', show(f));
    assert.equal(action(f.stderr), 'grantconsent', show(f));
    assert.equal((await tokenCounts()).code, c0.code);
    assert.equal(fs.existsSync(path.join(state, 'tokens', 'gmail.json')), false);
    const s = await settings(['status', 'gmail']);
    assert.equal(s.code, 0, show(s));
    assert.equal(status(s.stdout).stored, 'no');
});
