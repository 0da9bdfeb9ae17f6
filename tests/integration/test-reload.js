// Reload, disconnect and idle close (issue 10, acceptance 4), through the
// public API: tests/integration/reload.c (linked to libmailconn.so) against
// the real npm smtp-server (tests/peers/smtp-peer.js) started with
// --users-file, so the password it accepts changes at run time, and
// --report-quit, so its events.log shows every QUIT the client sent
// ("<session> quit") and which password each login used
// ("<session> auth-ok PLAIN <user> <password>").
//
// reload.c stops at checkpoints and waits for one line on stdin while this
// driver reads the peer's events; every wait is bounded, the peer is
// stopped by PID (lib.stopAll).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');

const PROBE = process.env.MAILCONN_RELOAD;

test.after(() => lib.stopAll());

/** Per session of the peer: {user, password, quit} (logins only). */
function logins(peer) {
    const s = new Map();
    for (const l of lib.events(peer.out)) {
        const [id, ev, ...rest] = l.split(' ');
        if (!s.has(id)) s.set(id, { id, user: null, password: null, quit: false });
        const e = s.get(id);
        if (ev === 'auth-ok') {
            e.user = rest[1];
            e.password = rest[2];
        } else if (ev === 'quit') {
            e.quit = true;
        }
    }
    return [...s.values()].filter((e) => e.user);
}

/**
 * Run reload.c with args; onLine(line) may return a promise, and for a
 * line it returns true for, "go" is written to the program's stdin after
 * it settles. Killed after timeoutMs. Resolves {code, stdout, stderr}.
 */
function runProbe(args, onLine, timeoutMs = 120000) {
    return new Promise((resolve, reject) => {
        const child = spawn(PROBE, args, { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        let pending = '';
        let chain = Promise.resolve();
        const timer = setTimeout(() => {
            err += '\n[test: killed after the time limit]';
            child.kill('SIGKILL');
        }, timeoutMs);
        child.stdin.on('error', () => { /* it may have exited */ });
        child.stderr.on('data', (d) => { err += d; });
        child.stdout.on('data', (d) => {
            out += d;
            pending += d;
            let nl;
            while ((nl = pending.indexOf('\n')) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                chain = chain.then(async () => {
                    if (await onLine(line)) child.stdin.write('go\n');
                }).catch((e) => {
                    err += `\n[test: ${e.message}]`;
                    child.kill('SIGKILL');
                    reject(e);
                });
            }
        });
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            chain.then(() => resolve({ code, signal, stdout: out, stderr: err }));
        });
    });
}

const show = (r) => `exit ${r.code} ${r.signal || ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

test('4 threads sending through 5 reloads: only old-password failures, changed pools QUIT, disconnect on demand',
    async (t) => {
        const dir = lib.tmpdir(t);
        const users = path.join(dir, 'users');
        require('node:fs').writeFileSync(users, 'app:p0,keep:kp\n', { mode: 0o600 });
        const peer = await lib.startPeer({ t, allowInsecureAuth: true,
            extraArgs: ['--users-file', users, '--report-quit'] });
        const cfg = path.join(dir, 'config.json');
        const seen = {};
        const r = await runProbe(['stress', cfg, users, String(peer.port)], async (line) => {
            const m = /^checkpoint (\w+)$/.exec(line);
            if (!m) return false;
            // the peer logs a QUIT before answering 221, and mailconn waits
            // for the 221: what was QUIT before the checkpoint is in the log
            const all = logins(peer);
            const app = all.filter((e) => e.user === 'app');
            const keep = all.filter((e) => e.user === 'keep');
            seen[m[1]] = all;
            if (m[1] === 'window') {
                // mc_context_disconnect("relay") ran while 4 sends were in flight:
                // idle connections QUIT at once, those in use when their send ended
                const p3 = () => logins(peer).filter((e) => e.user === 'app' && e.password === 'p3');
                assert.ok(p3().length >= 1, 'connections logged in with p3');
                await lib.waitFor(() => p3().every((e) => e.quit), 5000, 20,
                    'every connection of p3 (idle or in use at the disconnect) closed with QUIT');
            } else if (m[1] === 'reloaded') {
                const old = app.filter((e) => e.password !== 'p5');
                const cur = app.filter((e) => e.password === 'p5');
                assert.ok(old.length >= 5, `logins with an old password: ${old.length}`);
                for (const e of old) {
                    assert.ok(e.quit, `session ${e.id} (logged in with ${e.password}) was not closed with QUIT after the reload`);
                }
                assert.ok(cur.length >= 1, 'a connection with the current password');
                assert.ok(cur.some((e) => !e.quit), 'a current connection stays pooled');
                assert.equal(keep.length, 1, 'the unchanged server logged in once');
                assert.ok(!keep[0].quit, 'the unchanged server kept its idle connection through 5 reloads');
            } else if (m[1] === 'relay') {
                for (const e of app) assert.ok(e.quit, `relay session ${e.id} not closed by mc_context_disconnect`);
                assert.ok(!keep[0].quit, 'disconnect of relay closed keep');
            } else if (m[1] === 'all') {
                assert.ok(keep[0].quit, 'mc_context_disconnect(NULL) did not close keep');
            }
            return true;
        });
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, /^ok sends=\d+ failed-old-password=[1-9]\d* session-across-reload=1 /m, show(r));
        assert.deepEqual(Object.keys(seen), ['window', 'reloaded', 'relay', 'all'], show(r));
        t.diagnostic(r.stdout.trim().split('\n').pop());
        const sends = Number(/sends=(\d+)/.exec(r.stdout)[1]);
        assert.ok(sends >= 150, `only ${sends} sends`);
    });

test('idle_timeout_s 1: the idle connection is closed with QUIT within 2 s, with no further call', async (t) => {
    const dir = lib.tmpdir(t);
    const users = path.join(dir, 'users');
    require('node:fs').writeFileSync(users, 'app:idle,keep:kp\n', { mode: 0o600 });
    const peer = await lib.startPeer({ t, allowInsecureAuth: true,
        extraArgs: ['--users-file', users, '--report-quit'] });
    const cfg = path.join(dir, 'config.json');
    let waited = null;
    const r = await runProbe(['idle', cfg, String(peer.port)], async (line) => {
        if (line !== 'sent') return false;
        const t0 = Date.now();
        const app = () => logins(peer).filter((e) => e.user === 'app');
        assert.equal(app().length, 1, 'one login');
        await lib.waitFor(() => app()[0].quit, 2000, 20, 'QUIT from the idle reaper');
        waited = Date.now() - t0;
        return true;
    });
    assert.equal(r.code, 0, show(r));
    assert.ok(waited !== null, show(r));
    // not before idle_timeout_s either (the send ended before "sent" was read)
    assert.ok(waited >= 500, `closed after ${waited} ms, before idle_timeout_s`);
    t.diagnostic(`QUIT ${waited} ms after the send returned`);
});
