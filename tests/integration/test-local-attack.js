// Local attackers on the file token store (issue 9 point 4; DESIGN.md "Token
// stores and fleets", `file`): a second user who can write root's state
// folder plants a token file, symlinks the token file to a file of its own or
// to a root file, or owns tokens/. The attacker's steps run as that user
// (setpriv --reuid/--regid to an unused uid, groups cleared) in a 0755
// scratch folder under /tmp; mailconn runs as root. Each case: exit 78, the
// path in the message, the attacker's file unchanged, the attacker's token
// never sent, and no token of root's readable by the attacker.
// Peers: tests/peers/smtp-peer.js (npm smtp-server, --tokens accepts exactly
// the planted token, so a send of it would succeed) and token-fault.js (a
// FAULT INJECTOR standing in for the token endpoint with fixed tokens).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const lib = require('../peers/lib');

const BIN = process.env.MAILCONN_BIN;
const USER = 'me@example.org';
const ROOT_TOKENS = ['root-access-Ab12', 'root-refresh-Cd34', 'root-imported-Ef56'];
const ATTACKER_TOKEN = 'attacker-token-Xk9z';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;
const skip = !isRoot ? 'needs root (the attacker is a second user)'
    : !hasSetpriv ? 'needs setpriv (util-linux)' : false;

let uid;            // the attacker: an unused uid
let scratch;        // 0755 folder under /tmp that both can reach
let pki, fault, peer, identity;

function unusedUid() {
    for (let u = 23456; u < 23556; u++) {
        if (spawnSync('getent', ['passwd', String(u)]).status !== 0 &&
            spawnSync('getent', ['group', String(u)]).status !== 0) return u;
    }
    throw new Error('no unused uid');
}

/** Run a shell command as the attacker; returns {code, stdout, stderr}. */
function asAttacker(cmd) {
    const r = spawnSync('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups',
        'sh', '-c', cmd], { cwd: scratch, encoding: 'utf8', timeout: 10000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mustAttacker(cmd) {
    const r = asAttacker(cmd);
    assert.equal(r.code, 0, `as uid ${uid}: ${cmd}\n${r.stderr}`);
    return r;
}

const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function mc(state, args) {
    return new Promise((resolve, reject) => {
        const env = Object.assign({}, process.env, { MAILCONN_STATE_DIR: state });
        const child = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { err += d; });
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code) => {
            clearTimeout(timer);
            for (const s of [...ROOT_TOKENS, ATTACKER_TOKEN]) {
                assert.ok(!(out + err).includes(s), 'no token in the output');
            }
            resolve({ code, stdout: out, stderr: err });
        });
    });
}

/** The files of the scratch folder the attacker can read: none holds a token of root's. */
function assertNothingReadable() {
    const r = asAttacker('find . -type f -readable -exec cat {} + 2>/dev/null; true');
    for (const s of ROOT_TOKENS) assert.ok(!r.stdout.includes(s), `the attacker can read ${s}`);
}

function tokenEvents() {
    let lines = [];
    try { lines = fs.readFileSync(path.join(fault.out, 'events.log'), 'utf8').split('\n'); } catch (_) { /* none */ }
    return lines.filter((l) => l.includes(' /token ')).length;
}

function config(name) {
    const dir = lib.tmpdir();
    const u = `https://127.0.0.1:${fault.port}`;
    return lib.writeConfig(dir, { servers: [{
        name, host: '127.0.0.1', port: peer.port, transport: 'tls', ca_file: pki.ca,
        sender: { address: USER },
        auth: { provider: 'manual', user: USER, client_id: 'app-id', client_auth: 'none', scope: 'smtp',
            authorization_url: `${u}/authorize`, token_url: `${u}/token`, ca_file: pki.ca, timeout_s: 10 },
    }] });
}

/** A state folder: root's, with the given mode (0777: the attacker can write it). */
function stateDir(name, mode) {
    const d = path.join(scratch, name);
    fs.mkdirSync(d);
    fs.chmodSync(d, mode);
    return d;
}

function rtFile() {
    const f = path.join(lib.tmpdir(), 'rt');
    fs.writeFileSync(f, 'root-imported-Ef56\n', { mode: 0o600 });
    return f;
}

function plantedToken() {
    return JSON.stringify({ identity, access_token: ATTACKER_TOKEN, expires_at: 4102444800,
        refresh_token: null, refresh_issued_at: 0, refresh_used_at: 0, scope: 'smtp' });
}

const snapshot = (p) => {
    const st = fs.lstatSync(p);
    return { ino: st.ino, uid: st.uid, size: st.size, mtimeMs: st.mtimeMs, body: fs.readFileSync(p, 'utf8') };
};

test.before(async () => {
    if (skip) return;
    assert.ok(BIN, 'MAILCONN_BIN is set (run with meson test)');
    uid = unusedUid();
    scratch = fs.mkdtempSync('/tmp/mailconn-attack-');
    fs.chmodSync(scratch, 0o755);
    // the attacker's own folder, for the files it owns
    fs.mkdirSync(path.join(scratch, 'attacker'), { mode: 0o755 });
    fs.chownSync(path.join(scratch, 'attacker'), uid, uid);
    pki = lib.mkca(path.join(lib.tmpdir(), 'pki'));
    fault = await lib.startScript('token-fault.js', { out: lib.tmpdir(), script: { '/token': {
        status: 200, body: { token_type: 'Bearer', access_token: 'root-access-Ab12',
            refresh_token: 'root-refresh-Cd34', expires_in: 3600 } } },
    args: ['--cert', pki.server.cert, '--key', pki.server.key] });
    // accepts exactly the attacker's token: a send of it would succeed
    peer = await lib.startPeer({ out: lib.tmpdir(), tls: 'implicit', cert: pki.server.cert,
        key: pki.server.key, tokens: `${USER}:${ATTACKER_TOKEN}`, enhanced: true });
    // the identity root's own token file has (what a planted file copies)
    const own = path.join(lib.tmpdir(), 'own-state');
    const r = await mc(own, ['--config', config('victim'), 'auth', '--server', 'victim',
        '--refresh-token-file', rtFile()]);
    assert.equal(r.code, 0, show(r));
    identity = JSON.parse(fs.readFileSync(path.join(own, 'tokens', 'victim.json'), 'utf8')).identity;
});

test.after(async () => {
    await lib.stopAll();
    if (scratch && !process.env.MAILCONN_KEEP_TMP) fs.rmSync(scratch, { recursive: true, force: true });
});

const send = (state, cfg) => mc(state, ['--config', cfg, 'send', '--server', 'victim', '--to',
    'rcpt@example.net', '--subject', 'local attack', '--body', 'hello']);
const importRt = (state, cfg) => mc(state, ['--config', cfg, 'auth', '--server', 'victim',
    '--refresh-token-file', rtFile()]);

function assertNotSent(r) {
    assert.doesNotMatch(r.stdout, /^sent /m);
    assert.equal(lib.messageCount(peer.out), 0, 'the SMTP server got no message');
    assert.ok(!lib.events(peer.out).some((e) => / auth /.test(` ${e} `) && !/auth-fail/.test(e)),
        'the planted token never authenticated');
}

test('A: a planted token file is refused with its path; the attacker\'s token is never sent', { skip }, async () => {
    const cfg = config('victim');
    // the state folder is writable by the attacker: refused at <state>
    const state = stateDir('A-state', 0o777);
    mustAttacker(`umask 077; mkdir ${state}/tokens && printf '%s' '${plantedToken()}' > ${state}/tokens/victim.json`);
    const r1 = await send(state, cfg);
    assert.equal(r1.code, 78, show(r1));
    assert.match(r1.stderr, /: oauth: token store refused: /);
    assert.ok(r1.stderr.includes(`${state} is writable by group or others (mode 0777)`), show(r1));
    assertNotSent(r1);

    // root closes <state> and takes tokens/ back, but the planted file stays the attacker's
    fs.chmodSync(state, 0o700);
    fs.chownSync(path.join(state, 'tokens'), 0, 0);
    const planted = path.join(state, 'tokens', 'victim.json');
    const before = snapshot(planted);
    assert.equal(before.uid, uid);
    const r2 = await send(state, cfg);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes(`${planted} is owned by uid ${uid}, not by this user (uid 0)`), show(r2));
    assertNotSent(r2);
    assert.deepEqual(snapshot(planted), before, 'the planted file is left as it is');
    assertNothingReadable();
});

test('B: tokens/x.json a symlink to the attacker\'s file: saving refuses, that file unchanged', { skip }, async () => {
    const cfg = config('victim');
    const loot = path.join(scratch, 'attacker', 'B-loot.json');
    mustAttacker(`printf 'attacker data\\n' > ${loot} && chmod 666 ${loot}`);
    const state = stateDir('B-state', 0o777);
    fs.mkdirSync(path.join(state, 'tokens'), { mode: 0o777 });
    fs.chmodSync(path.join(state, 'tokens'), 0o777);
    const link = path.join(state, 'tokens', 'victim.json');
    mustAttacker(`ln -s ${loot} ${link}`);
    const before = snapshot(loot);
    const calls = tokenEvents();
    const r1 = await importRt(state, cfg);
    assert.equal(r1.code, 78, show(r1));
    assert.ok(r1.stderr.includes(`${state} is writable by group or others`), show(r1));
    assert.deepEqual(snapshot(loot), before, 'the attacker\'s file is unchanged');
    assert.equal(tokenEvents(), calls, 'refused before the token endpoint was asked');

    // with <state> and tokens/ closed again, the symlink itself is refused
    fs.chmodSync(state, 0o700);
    fs.chmodSync(path.join(state, 'tokens'), 0o700);
    const r2 = await importRt(state, cfg);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes(`${link} is a symbolic link`), show(r2));
    assert.deepEqual(snapshot(loot), before, 'the attacker\'s file is unchanged');
    assert.ok(fs.lstatSync(link).isSymbolicLink(), 'the link is left for root to inspect');
    assertNothingReadable();
});

test('C: tokens/x.json a symlink to a root file: that file is not replaced', { skip }, async () => {
    const cfg = config('victim');
    const rootFile = path.join(scratch, 'C-root-file');
    fs.writeFileSync(rootFile, 'root data, not a token file\n', { mode: 0o644 });
    const state = stateDir('C-state', 0o777);
    fs.mkdirSync(path.join(state, 'tokens'));
    fs.chmodSync(path.join(state, 'tokens'), 0o777);
    const link = path.join(state, 'tokens', 'victim.json');
    mustAttacker(`ln -s ${rootFile} ${link}`);
    const before = snapshot(rootFile);
    const r1 = await importRt(state, cfg);
    assert.equal(r1.code, 78, show(r1));
    assert.ok(r1.stderr.includes(`${state} is writable by group or others`), show(r1));
    assert.deepEqual(snapshot(rootFile), before, 'the root file is unchanged');

    fs.chmodSync(state, 0o700);
    fs.chmodSync(path.join(state, 'tokens'), 0o700);
    const r2 = await importRt(state, cfg);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes(`${link} is a symbolic link`), show(r2));
    assert.deepEqual(snapshot(rootFile), before, 'the root file is unchanged');
    // and a send does not read through it either
    const r3 = await send(state, cfg);
    assert.equal(r3.code, 78, show(r3));
    assert.ok(r3.stderr.includes(`${link} is a symbolic link`), show(r3));
    assertNotSent(r3);
    assertNothingReadable();
});

test('D: a tokens/ folder owned by the attacker is refused; nothing of root\'s goes into it', { skip }, async () => {
    const cfg = config('victim');
    // the attacker made tokens/ while <state> was open; root closed <state> since
    const state = stateDir('D-state', 0o777);
    mustAttacker(`mkdir -m 700 ${state}/tokens`);
    fs.chmodSync(state, 0o755);
    const tokens = path.join(state, 'tokens');
    const r1 = await importRt(state, cfg);
    assert.equal(r1.code, 78, show(r1));
    assert.ok(r1.stderr.includes(`${tokens} is owned by uid ${uid}, not by this user (uid 0)`), show(r1));
    assert.deepEqual(fs.readdirSync(tokens), [], 'no file of root\'s in the attacker\'s folder');
    // the attacker plants a token there: not used either
    mustAttacker(`printf '%s' '${plantedToken()}' > ${tokens}/victim.json`);
    const r2 = await send(state, cfg);
    assert.equal(r2.code, 78, show(r2));
    assert.ok(r2.stderr.includes(`${tokens} is owned by uid ${uid}`), show(r2));
    assertNotSent(r2);
    // and `mailconn servers` says so
    const r3 = await mc(state, ['--config', cfg, 'servers']);
    assert.equal(r3.code, 78, show(r3));
    assert.match(r3.stdout, /victim .* token=refused/);
    assert.ok(r3.stderr.includes(`${tokens} is owned by uid ${uid}`), show(r3));
    assertNothingReadable();
});
