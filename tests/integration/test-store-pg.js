// store-postgresql.so (issue 14, DESIGN.md "Token stores and fleets"): a
// real PostgreSQL 15 (tests/integration/pg-lib.js: initdb + postgres as the
// `postgres` user in a temp folder, 127.0.0.1 at a free port, scram auth,
// the conninfo from a 0600 conninfo_file), real oidc-provider with refresh
// token rotation (tests/peers/oidc-peer.js), smtp-server checking every
// XOAUTH2 token by introspection. Each "node" is a mailconn process with a
// state folder of its own (no flock shared): only the database is.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');
const pglib = require('./pg-lib');

const BIN = process.env.MAILCONN_BIN;
const APP = process.env.MAILCONN_OAUTH_APP;
const secrets = new Set();
const transcript = [];
const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
const DB = 'mcdb';
const USER = 'mc';

let pg, pki, op, base, peer, state, keyFile, keyFile2, ciFile, dbPw, redirect;

const skip = !pglib.available() ? 'PostgreSQL 15 is not installed (scripts/deps.sh)' : false;

async function mc(args, opts = {}) {
    const r = await lib.runLines(args, Object.assign({}, opts, {
        env: Object.assign({ MAILCONN_STATE_DIR: opts.state || state }, opts.env || {}),
    }));
    transcript.push(`$ mailconn ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    return r;
}

function app(args, st) {
    return new Promise((resolve, reject) => {
        const e = Object.assign({}, process.env);
        delete e.MAILCONN_STATE_DIR;
        delete e.OAUTH_APP_STORE;
        const child = spawn(APP, [cfgFile(), st, ...args], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
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

function server(name) {
    return {
        name, host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: op.account },
        auth: {
            provider: 'google', user: op.account, client_id: 'public',
            scope: 'https://mail.google.com/ offline_access',
            authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
            revocation_url: op.revocationUrl, ca_file: pki.ca, timeout_s: 10,
        },
    };
}

function store(extra = {}) {
    return Object.assign({ type: 'postgresql', conninfo_file: ciFile, key_file: keyFile,
        lock_timeout_s: 20 }, extra);
}

function cfgFile(ts = store(), name = 'config.json') {
    const doc = { servers: [server('gmail'), server('gmail2')] };
    if (ts) doc.token_store = ts;
    return lib.writeConfig(base, doc, name);
}

function send(c, opts = {}, srv = 'gmail') {
    return mc(['--config', c, 'send', '--server', srv, '--to', 'rcpt@example.net',
        '--subject', 'via postgresql', '--body', 'hello'], opts);
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

const refreshes = async () => ((await op.counts()).token.refresh_token || 0);
const sql = (q) => pg.psql(q, { db: DB });

/** The record as the file store keeps it (plaintext), through `store copy`
 *  into a scratch state folder. */
async function plainRecord() {
    const scratch = path.join(base, `scratch-${crypto.randomBytes(4).toString('hex')}`);
    const r = await mc(['--config', cfgFile(), 'store', 'copy', '--from', 'postgresql', '--to', 'file'],
        { state: scratch });
    assert.equal(r.code, 0, show(r));
    const t = JSON.parse(fs.readFileSync(path.join(scratch, 'tokens', 'gmail.json'), 'utf8'));
    for (const s of [t.access_token, t.refresh_token]) if (s) secrets.add(s);
    return { t, scratch };
}

/** Store gmail's current record back with its access token expired. */
async function expireToken() {
    const { t, scratch } = await plainRecord();
    const now = Math.floor(Date.now() / 1000);
    t.expires_at = now - 60;
    t.access_issued_at = now - 3660;
    fs.writeFileSync(path.join(scratch, 'tokens', 'gmail.json'), JSON.stringify(t), { mode: 0o600 });
    const r = await mc(['--config', cfgFile(), 'store', 'copy', '--from', 'file', '--to', 'postgresql'],
        { state: scratch });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^copied gmail$/m);
    return t;
}

test.before(async () => {
    if (skip) return;
    assert.ok(BIN && APP, 'run with meson test');
    base = lib.tmpdir();
    state = path.join(base, 'state');
    pki = lib.mkca(path.join(base, 'pki'));
    pg = await pglib.startPostgres();
    secrets.add(pg.superPw);
    dbPw = crypto.randomBytes(12).toString('hex');
    secrets.add(dbPw);
    await pg.psql(`CREATE ROLE ${USER} LOGIN PASSWORD '${dbPw}'`);
    await pg.psql(`CREATE DATABASE ${DB} OWNER ${USER}`);
    ciFile = path.join(base, 'conninfo');
    fs.writeFileSync(ciFile, `${pg.conninfo(DB, USER, dbPw)}\n`, { mode: 0o600 });
    keyFile = path.join(base, 'key');
    const key = crypto.randomBytes(32).toString('base64');
    secrets.add(key);
    fs.writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    keyFile2 = path.join(base, 'key2');
    fs.writeFileSync(keyFile2, `${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    op = await startOidc({ pki, accessTtl: 3600 });
    secrets.add(op.secret);
    peer = await lib.startPeer({
        out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        enhanced: true, extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
            '--introspect-client', `conf-basic:${op.secret}`, '--oauth-style', 'gmail',
            '--token-user', op.account],
    });
    const net = require('node:net');
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    redirect = `http://127.0.0.1:${srv.address().port}/`;
    await new Promise((r) => srv.close(r));
});

test.after(async () => {
    if (op) await op.stop();
    await lib.stopAll();
    if (pg) await pg.stop();
    const all = transcript.join('\n');
    for (const s of secrets) assert.equal(all.includes(s), false, 'a secret in the output');
});

test('(g) bad token_store keys: check exits 78 naming each JSON path', { skip }, async () => {
    const c = cfgFile({ type: 'postgresql', conninfo: 'host=x', conninfo_file: ciFile,
        table: 'bad-name', lock_timeout_s: 0, namespace: '' }, 'bad.json');
    const r = await mc(['--config', c, 'check']);
    assert.equal(r.code, 78, show(r));
    for (const p of ['token_store.conninfo_file', 'token_store.table', 'token_store.lock_timeout_s',
        'token_store.namespace', 'token_store: the encryption key is required'])
        assert.ok(r.stderr.includes(p), `${p}\n${show(r)}`);
    const k = cfgFile(store({ key: 'inline', key_file: undefined }), 'inline-key.json');
    const r2 = await mc(['--config', k, 'check']);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes('token_store.key'), show(r2));
    const bad = cfgFile({ type: 'postgresql', conninfo: 'hots=127.0.0.1', key_file: keyFile },
        'bad-conninfo.json');
    const r3 = await mc(['--config', bad, 'check']);
    assert.equal(r3.code, 78, show(r3));
    assert.ok(r3.stderr.includes('token_store.conninfo: not a valid libpq conninfo'), show(r3));
    // check never opens the store: no table yet
    assert.equal((await sql("SELECT to_regclass('mailconn_tokens') IS NULL")).trim(), 't');
    const good = await mc(['--config', cfgFile(), 'check']);
    assert.equal(good.code, 0, show(good));
});

test('(a) auth stores in postgresql; send with XOAUTH2; the row holds no token in clear', { skip }, async () => {
    const a = await pasteAuth(cfgFile());
    assert.equal(a.code, 0, show(a));
    assert.equal(fs.existsSync(path.join(state, 'tokens', 'gmail.json')), false, 'a token file');
    const r = await send(cfgFile());
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sent .*250/m);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.meta.user, op.account);
    const { t } = await plainRecord();
    assert.ok(t.access_token && t.refresh_token);
    const dump = await sql("SELECT namespace, server, key_id, encode(record, 'hex'), "
        + "encode(record, 'escape') FROM mailconn_tokens");
    assert.match(dump, /^default\|gmail\|k[0-9a-f]{12}\|01/m, dump);
    for (const s of [t.access_token, t.refresh_token, op.account]) {
        assert.equal(dump.includes(s), false, 'a token or identity in clear in the table');
        assert.equal(dump.includes(Buffer.from(s).toString('hex')), false, 'a token in hex');
    }
    assert.equal((await sql("SELECT obj_description('mailconn_tokens'::regclass, 'pg_class')")).trim(),
        'mailconn token store schema 1');
});

test('(h) servers shows the store and its health, never the password (-vv too)', { skip }, async () => {
    const r = await mc(['--config', cfgFile(), '-vv', 'servers']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^token store: postgresql host=127\\.0\\.0\\.1 port=${pg.port} `
        + `dbname=${DB} user=${USER} table=mailconn_tokens namespace=default key=k[0-9a-f]{12} `
        + '\\(schema 1, reachable\\)$', 'm'));
    assert.match(r.stdout, /gmail .* token=stored/);
    assert.equal(`${r.stdout}${r.stderr}`.includes(dbPw), false, 'the password shown');
    assert.equal(/password=/.test(`${r.stdout}${r.stderr}`), false, show(r));
});

test('(f) store copy --from file --to postgresql migrates; a send uses the copied token', { skip }, async () => {
    const before = await refreshes();
    const t = await expireToken();            // file -> postgresql with an expired access token
    const r = await send(cfgFile());
    assert.equal(r.code, 0, show(r));
    assert.equal(await refreshes() - before, 1, 'the copied refresh token was used once');
    const after = (await plainRecord()).t;
    assert.notEqual(after.refresh_token, t.refresh_token, 'rotated, stored in postgresql');
    // bad usage: 64
    const u = await mc(['--config', cfgFile(), 'store', 'copy', '--from', 'file', '--to', 'redis']);
    assert.equal(u.code, 64, show(u));
    const none = await mc(['--config', cfgFile(null, 'nostore.json'), 'store', 'copy',
        '--from', 'file', '--to', 'postgresql']);
    assert.equal(none.code, 64, show(none));
});

test('(b) two nodes refresh at once: one refresh_token grant, both send, the second adopts', { skip }, async () => {
    await expireToken();
    const before = await refreshes();
    const msgs = (await lib.readMessages(peer.out)).length;
    // hold the row so both nodes are waiting on the lock before either can refresh
    const holder = pg.session(DB);
    holder.send("BEGIN; SELECT 'held' FROM mailconn_tokens WHERE namespace = 'default' "
        + "AND server = 'gmail' FOR UPDATE;");
    await holder.waitOut(/held/);
    const c = cfgFile();
    const nodes = ['node-a', 'node-b'].map((n) => send(c, { state: path.join(base, n) }));
    await lib.waitFor(async () => Number((await sql(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        + `AND datname = '${DB}' AND usename = '${USER}'`)).trim()) === 2, 20000, 25,
    'both nodes waiting on the row lock');
    holder.send('COMMIT;');
    await holder.end();
    const [a, b] = await Promise.all(nodes);
    assert.equal(a.code, 0, show(a));
    assert.equal(b.code, 0, show(b));
    assert.equal(await refreshes() - before, 1, 'exactly one refresh_token grant');
    assert.equal((await lib.readMessages(peer.out)).length, msgs + 2);
    const { t } = await plainRecord();
    assert.equal((await op.introspect(t.access_token)).active, true, 'the grant is alive');
    for (const n of ['node-a', 'node-b'])
        assert.equal(fs.existsSync(path.join(base, n, 'tokens', 'gmail.json')), false);
});

test('(c) a lock held elsewhere: bounded wait, 75 naming the lock; the holder dies, the next send proceeds', { skip }, async () => {
    await expireToken();
    const holder = pg.session(DB);
    holder.send("BEGIN; SELECT 'held' FROM mailconn_tokens WHERE namespace = 'default' "
        + "AND server = 'gmail' FOR UPDATE;");
    await holder.waitOut(/held/);
    const c = cfgFile(store({ lock_timeout_s: 2 }), 'short.json');
    const t0 = Date.now();
    const r = await send(c);
    const ms = Date.now() - t0;
    assert.equal(r.code, 75, show(r));
    assert.match(r.stderr, /oauth: .*token store postgresql .*the refresh lock of server gmail .*held by another session/, show(r));
    assert.ok(ms >= 1900 && ms < 15000, `waited ${ms} ms`);
    await holder.kill();                       // its connection dies: PostgreSQL frees the row
    const before = await refreshes();
    const ok = await send(c);
    assert.equal(ok.code, 0, show(ok));
    assert.equal(await refreshes() - before, 1);
});

test('(d) a record copied to another identity fails to decrypt, clearly; a wrong key too', { skip }, async () => {
    await sql("INSERT INTO mailconn_tokens (namespace, server, key_id, record) SELECT namespace, "
        + "'gmail2', key_id, record FROM mailconn_tokens WHERE server = 'gmail' ON CONFLICT "
        + '(namespace, server) DO UPDATE SET key_id = EXCLUDED.key_id, record = EXCLUDED.record');
    const r = await send(cfgFile(), {}, 'gmail2');
    assert.equal(r.code, 78, show(r));
    assert.match(r.stderr, /the record of server gmail2 does not decrypt for this identity/, show(r));
    // store copy reports it too, and copies the rest
    const cp = await mc(['--config', cfgFile(), 'store', 'copy', '--from', 'postgresql', '--to', 'file'],
        { state: path.join(base, 'scratch-moved') });
    assert.equal(cp.code, 78, show(cp));
    assert.match(cp.stdout, /^copied gmail\nfailed gmail2\n1 copied, 0 with nothing stored, 1 failed/m, show(cp));
    await sql("DELETE FROM mailconn_tokens WHERE server = 'gmail2'");
    const w = await send(cfgFile(store({ key_file: keyFile2 }), 'wrongkey.json'));
    assert.equal(w.code, 78, show(w));
    assert.match(w.stderr, /encrypted with key k[0-9a-f]{12}, but the configured key is k[0-9a-f]{12}/, show(w));
    // another namespace keeps its own records
    const ns = await send(cfgFile(store({ namespace: 'tenant-b' }), 'ns.json'));
    assert.equal(ns.code, 77, show(ns));
    assert.match(ns.stderr, /no token stored for server gmail/, show(ns));
    const ok = await send(cfgFile());
    assert.equal(ok.code, 0, show(ok));
});

test('(e) mc_oauth_begin on one node, mc_oauth_finish on another, through the store', { skip }, async () => {
    const sa = path.join(base, 'web-a');
    const sb = path.join(base, 'web-b');
    const b = await app(['begin', 'gmail', redirect], sa);
    assert.equal(b.code, 0, `${b.stdout}${b.stderr}`);
    const m = /^url (https:\/\/\S+)$/.exec(b.last);
    assert.ok(m, b.stdout);
    assert.equal((await sql('SELECT count(*) FROM mailconn_tokens_pending')).trim(), '1');
    assert.equal(fs.existsSync(path.join(sa, 'pending')), false, 'a pending file');
    const p = await op.playBrowser(m[1], { load: false });
    const f = await app(['finish', 'gmail', p.location], sb);
    assert.equal(f.code, 0, `${f.stdout}${f.stderr}`);
    assert.equal(f.last, 'ok finish');
    assert.equal((await sql('SELECT count(*) FROM mailconn_tokens_pending')).trim(), '0');
    const again = await app(['finish', 'gmail', p.location], sa);
    assert.equal(again.code, 1, 'the state was taken once');
    assert.match(again.last, /^error EOAUTH/);
    const s = await send(cfgFile(), { state: path.join(base, 'web-c') });
    assert.equal(s.code, 0, show(s));
});

test('fleet: 3 nodes x 4 concurrent sends on an expired token: one refresh, all delivered', { skip }, async () => {
    await expireToken();
    const before = await refreshes();
    const msgs = (await lib.readMessages(peer.out)).length;
    const holder = pg.session(DB);
    holder.send("BEGIN; SELECT 'held' FROM mailconn_tokens WHERE namespace = 'default' "
        + "AND server = 'gmail' FOR UPDATE;");
    await holder.waitOut(/held/);
    const c = cfgFile();                  // written once: the nodes read it at once
    const sends = [];
    const done = [];
    for (const n of ['fleet-1', 'fleet-2', 'fleet-3'])
        for (let i = 0; i < 4; i++) sends.push(send(c, { state: path.join(base, n) }).then((r) => { done.push(r); return r; }));
    let seen = '';
    await lib.waitFor(async () => {
        seen = await sql("SELECT state, wait_event_type, wait_event, left(query, 60) FROM "
            + `pg_stat_activity WHERE datname = '${DB}' AND usename = '${USER}'`);
        return seen.split('\n').filter((l) => l.includes('|Lock|')).length === sends.length;
    }, 15000, 25, 'every send waiting on the row lock').catch((e) => {
        const ps = require('node:child_process').execFileSync('ps', ['-o', 'pid,stat,wchan:24,args', '-C', 'mailconn']).toString();
        throw new Error(`${e.message}:\n${seen}\n${ps}\n${done.map(show).join('\n')}`);
    });
    holder.send('COMMIT;');
    await holder.end();
    const rs = await Promise.all(sends);
    for (const r of rs) assert.equal(r.code, 0, show(r));
    assert.equal(await refreshes() - before, 1, 'exactly one refresh_token grant for the fleet');
    assert.equal((await lib.readMessages(peer.out)).length, msgs + sends.length);
    const { t } = await plainRecord();
    assert.equal((await op.introspect(t.access_token)).active, true, 'the grant is alive');
});

test('the same fleet on file stores (the failure this prevents): several refreshes, grant revoked', { skip }, async () => {
    const { t } = await plainRecord();
    const now = Math.floor(Date.now() / 1000);
    t.expires_at = now - 60;
    t.access_issued_at = now - 3660;
    const before = await refreshes();
    const nodes = ['file-1', 'file-2', 'file-3'].map((n) => {
        const st = path.join(base, n);
        fs.mkdirSync(path.join(st, 'tokens'), { recursive: true, mode: 0o700 });
        fs.chmodSync(st, 0o700);
        fs.writeFileSync(path.join(st, 'tokens', 'gmail.json'), JSON.stringify(t), { mode: 0o600 });
        return st;
    });
    const fileCfg = cfgFile(null, 'file-store.json');
    const rs = await Promise.all(nodes.map((st) => send(fileCfg, { state: st })));
    assert.ok(await refreshes() - before > 1, 'each node refreshed on its own');
    assert.ok(rs.some((r) => r.code === 77), `a node lost the grant:\n${rs.map(show).join('\n')}`);
    const fresh = nodes.map((st) => JSON.parse(fs.readFileSync(path.join(st, 'tokens', 'gmail.json'), 'utf8')))
        .filter((x) => x.access_token && x.access_token !== t.access_token);
    for (const x of fresh) secrets.add(x.access_token), secrets.add(x.refresh_token);
    for (const x of fresh)
        assert.equal((await op.introspect(x.access_token)).active, false, 'the grant was revoked');
});

test('PostgreSQL down: 75 naming the store', { skip }, async () => {
    await pg.stop();
    const r = await send(cfgFile(), { state: path.join(base, 'node-down') });
    assert.equal(r.code, 75, show(r));
    assert.match(r.stderr, /token store postgresql .*host=127\.0\.0\.1 port=\d+ .*cannot connect/, show(r));
    const s = await mc(['--config', cfgFile(), 'servers'], { state: path.join(base, 'node-down') });
    assert.equal(s.code, 75, show(s));
    assert.match(s.stdout, /^token store: postgresql .*unavailable/m, show(s));
});
