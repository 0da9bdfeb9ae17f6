// Hostile SMTP servers (issue 9, points 1 and 2), injected by
// tests/peers/hostile-smtp.js (a fault injector: real servers do not do
// this on request). Each case runs the CLI (`mailconn send`) and send-probe
// (the public API, printing the mc_err fields as JSON) against two fresh
// peers in the same mode, and asserts:
//   - the CLI's exit code, the stage on stderr, that no stdout line begins
//     with "sent", and for an unknown outcome that stderr says so;
//   - the probe's stage, error code, reply code, transient flag and exit;
//   - what the peer received: no message data at all when a reply came
//     before the data, exactly one final dot (never resent) after it;
//   - a bounded wall time, and for the floods a peak RSS of the CLI under
//     16 MB (VmHWM from /proc/<pid>/status, sampled while it runs): both
//     only in the normal build, since sanitizers distort time and memory.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const lib = require('../peers/lib');

const PROBE = process.env.MAILCONN_SEND_PROBE;
const BIN = process.env.MAILCONN_BIN;
const PASSWORD = 'hostile-Pass-7731';
const plainBuild = (process.env.MAILCONN_SANITIZE || 'none') === 'none';
const RSS_MAX_KB = 16 * 1024;
const RUN_LIMIT_MS = 30000;   // a run still going then is killed (and fails)

let bigBody;   // 4 MB: the body is still going out long after its first bytes arrived

before(() => {
    assert.ok(PROBE, 'MAILCONN_SEND_PROBE is set (run with meson test)');
    bigBody = path.join(lib.tmpdir(), 'big.txt');
    const chunk = Buffer.from(('y'.repeat(76) + '\n').repeat(2048));
    const fd = fs.openSync(bigBody, 'w');
    for (let n = 0; n < 4 * 1024 * 1024; n += chunk.length) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
});
after(() => lib.stopAll());

/** VmHWM (peak RSS) of pid in kB, or 0 when it is gone. */
function vmHwm(pid) {
    try {
        const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) : 0;
    } catch (_) {
        return 0;
    }
}

/**
 * Run bin with args, sampling its VmHWM every 5 ms; killed (by its pid)
 * after RUN_LIMIT_MS. Never rejects for a non-zero exit.
 * @returns {Promise<{code, signal, stdout, stderr, ms, hwmKb, samples, timedOut}>}
 */
function runMeasured(bin, args, env) {
    return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const child = spawn(bin, args, {
            env: Object.assign({}, process.env, env),
            stdio: ['ignore', 'pipe', 'pipe'],
        });
        const out = [];
        const err = [];
        let hwmKb = 0;
        let samples = 0;
        let timedOut = false;
        child.stdout.on('data', (d) => out.push(d));
        child.stderr.on('data', (d) => err.push(d));
        const sample = () => {
            const v = vmHwm(child.pid);
            if (v) samples++;
            hwmKb = Math.max(hwmKb, v);
        };
        const sampler = setInterval(sample, 5);
        sample();
        const timer = setTimeout(() => {
            timedOut = true;
            try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
        }, RUN_LIMIT_MS);
        child.on('error', (e) => {
            clearInterval(sampler);
            clearTimeout(timer);
            reject(e);
        });
        child.on('close', (code, signal) => {
            clearInterval(sampler);
            clearTimeout(timer);
            resolve({
                code, signal, timedOut, hwmKb, samples, ms: Date.now() - t0,
                stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(),
            });
        });
    });
}

function config(dir, peer, name, extra) {
    return lib.writeConfig(dir, {
        servers: [Object.assign({
            name: 'hostile',
            host: peer.host,
            port: peer.port,
            transport: 'plain',
            timeout_s: 5,
            sender: { address: 'app@example.test' },
        }, extra || {})],
    }, name);
}

/** Every connection the peer saw is closed (bounded wait). */
async function allClosed(out) {
    return lib.waitFor(() => {
        const ev = lib.events(out);
        const opened = ev.filter((l) => / connect$/.test(l)).map((l) => l.split(' ')[0]);
        return opened.every((id) => ev.includes(`${id} close`));
    }, 5000, 25, 'every connection closed');
}

const PROTO = { code: 'EPROTO', transient: false, exit: 76 };
const UNKNOWN = { code: 'EUNKNOWN', transient: true, exit: 75, unknown: true };

/**
 * One case. c: {mode, srv (extra server keys), expect: {exit, stage, code,
 * smtp, transient, unknown, message (RegExp on the CLI's stderr)}, maxMs,
 * rss (assert the CLI's peak RSS), body: 'big', peer: 'no-data' | 'no-dot' |
 * 'one-dot', check(events)}.
 */
async function runCase(t, c) {
    const [pc, pp] = await Promise.all([0, 1].map(() =>
        lib.startScript('hostile-smtp.js', { t, args: ['--mode', c.mode] })));
    const dir = lib.tmpdir(t);
    const env = { MC_HOSTILE_PASSWORD: PASSWORD };
    const cfgC = config(dir, pc, 'cli.json', c.srv);
    const cfgP = config(dir, pp, 'probe.json', c.srv);
    const big = c.body === 'big';
    const [r, pr] = await Promise.all([
        runMeasured(BIN, ['--config', cfgC, 'send', '--to', 'to@example.test', '--subject',
            'hostile', ...(big ? ['--body-file', bigBody] : ['--body', 'hostile test body\n'])], env),
        runMeasured(PROBE, [cfgP, ...(big ? ['--body-file', bigBody] : [])], env),
    ]);
    const e = c.expect;
    const ctx = `\nCLI (${r.ms} ms, peak ${r.hwmKb} kB in ${r.samples} samples) stderr:\n` +
        `${r.stderr}\nprobe: ${pr.stdout}${pr.stderr}`;

    // the CLI
    assert.equal(r.timedOut, false, `the CLI was still running after ${RUN_LIMIT_MS} ms${ctx}`);
    assert.equal(r.signal, null, `the CLI died of a signal${ctx}`);
    assert.equal(r.code, e.exit, `CLI exit code${ctx}`);
    assert.doesNotMatch(r.stdout, /^sent/m, `reported as sent${ctx}`);
    assert.match(r.stderr, new RegExp(`^mailconn: (.*: )?${e.stage}: ${e.unknown ? 'outcome unknown: ' : ''}`,
        'm'), `stage on stderr${ctx}`);
    if (!e.unknown) assert.doesNotMatch(r.stderr, /outcome unknown/, ctx);
    if (e.message) assert.match(r.stderr, e.message, ctx);
    assert.ok(!r.stderr.includes(PASSWORD), 'the password in the output');

    // the library's error record
    assert.equal(pr.timedOut, false, `send-probe hung${ctx}`);
    assert.equal(pr.signal, null, `send-probe died of a signal${ctx}`);
    assert.equal(pr.code, 0, `send-probe failed${ctx}`);
    const p = JSON.parse(pr.stdout.trim().split('\n').pop());
    assert.notEqual(p.rc, 0, `the probe's send succeeded${ctx}`);
    assert.equal(p.stage, e.stage, `stage${ctx}`);
    assert.equal(p.code, e.code, `error code${ctx}`);
    assert.equal(p.smtp_code, e.smtp || 0, `reply code${ctx}`);
    assert.equal(p.transient, e.transient, `transient flag${ctx}`);
    assert.equal(p.exit, e.exit, `outcome's exit code${ctx}`);

    // bounds, in the normal build only
    if (plainBuild) {
        const bound = c.maxMs || 5000;
        assert.ok(r.ms < bound, `the CLI took ${r.ms} ms (bound ${bound})${ctx}`);
        assert.ok(pr.ms < bound, `send-probe took ${pr.ms} ms (bound ${bound})${ctx}`);
        if (c.rss) {
            assert.ok(r.samples > 0, `no VmHWM sample of the CLI${ctx}`);
            assert.ok(r.hwmKb < RSS_MAX_KB, `the CLI's peak RSS was ${r.hwmKb} kB (bound ${RSS_MAX_KB})${ctx}`);
        }
    }

    // what the peers received
    for (const peer of [pc, pp]) {
        await allClosed(peer.out);
        const ev = lib.events(peer.out);
        const dots = ev.filter((l) => / dot \d+$/.test(l)).length;
        if (c.peer === 'no-data') {
            assert.ok(!ev.some((l) => / (data|dot) \d+$/.test(l)),
                `message data reached the server after an early reply:\n${ev.join('\n')}`);
        } else if (c.peer === 'no-dot') {
            assert.equal(dots, 0, `the final dot went out after an early reply:\n${ev.join('\n')}`);
        } else if (c.peer === 'one-dot') {
            assert.equal(dots, 1, `the message's final dot, once (not resent):\n${ev.join('\n')}`);
        }
        if (c.check) c.check(ev);
    }
}

describe('SMTP: a reply before the final dot is not the final reply', { concurrency: 3 }, () => {
    it('354 and 250 in one write, then close: 76, stage data, never sent, no data sent', (t) => runCase(t, {
        mode: 'early-250',
        expect: Object.assign({ stage: 'data', message: /not sent/ }, PROTO),
        peer: 'no-data',
    }));
    it('354 and 421 in one write: 75 (the server is closing), stage data, no data sent', (t) => runCase(t, {
        mode: 'early-421',
        maxMs: 12000,   // a 421 is throttling: the CLI tries 4 connections, with pauses
        expect: { stage: 'data', code: 'ETEMP', smtp: 421, transient: true, exit: 75 },
        peer: 'no-data',
    }));
    it('a 250 while the body is still going out: 76, stage data, never sent, no final dot', (t) => runCase(t, {
        mode: 'late-250',
        body: 'big',
        maxMs: 10000,
        expect: Object.assign({ stage: 'data', message: /250 reply before the final dot/ }, PROTO),
        peer: 'no-dot',
    }));
    it('354 in answer to a pipelined RCPT: 76, stage rcpt, not "no recipient accepted"', (t) => runCase(t, {
        mode: 'rcpt-354',
        expect: Object.assign({ stage: 'rcpt', smtp: 354 }, PROTO),
        peer: 'no-data',
        check: (ev) => assert.ok(!ev.some((l) => / cmd RSET$/.test(l)), ev.join('\n')),
    }));
});

describe('SMTP: after the final dot, anything but one complete reply is outcome unknown', { concurrency: 5 }, () => {
    for (const [mode, what] of [
        ['dot-nul', 'a NUL byte in the reply'],
        ['dot-mixed', 'mixed reply codes'],
        ['dot-oversized', '100 KB of short reply lines'],
        ['dot-drop', 'the connection dropped'],
    ]) {
        it(`${what}: 75, outcome unknown, never sent, not resent`, (t) => runCase(t, {
            mode,
            expect: Object.assign({ stage: 'data', message: /may have been accepted/ }, UNKNOWN),
            peer: 'one-dot',
        }));
    }
    it('no reply within timeout_s: 75, outcome unknown, never sent, not resent', (t) => runCase(t, {
        mode: 'dot-hang',
        srv: { timeout_s: 2 },
        maxMs: 6000,
        expect: Object.assign({ stage: 'data', message: /may have been accepted/ }, UNKNOWN),
        peer: 'one-dot',
    }));
});

describe('SMTP: replies are bounded (1000 lines, 64 KiB), peak RSS under 16 MB', { concurrency: 3 }, () => {
    it('a 2 M-line EHLO reply: 76, stage ehlo, nothing sent', (t) => runCase(t, {
        mode: 'ehlo-flood',
        rss: true,
        expect: Object.assign({ stage: 'ehlo', message: /1000 lines/ }, PROTO),
        check: (ev) => assert.ok(!ev.some((l) => / cmd MAIL$/.test(l)), ev.join('\n')),
    }));
    it('a 2 M-line 334 challenge to AUTH: 76, stage auth, nothing sent', (t) => runCase(t, {
        mode: 'auth-flood',
        srv: {
            auth: { provider: 'basic', user: 'app', password_env: 'MC_HOSTILE_PASSWORD' },
            allow_plaintext_auth: true,
        },
        rss: true,
        expect: Object.assign({ stage: 'auth', message: /1000 lines/ }, PROTO),
        check: (ev) => assert.ok(!ev.some((l) => / cmd MAIL$/.test(l)), ev.join('\n')),
    }));
    it('an endless "220-" greeting: 76, stage greeting, within bounds', (t) => runCase(t, {
        mode: 'greeting-flood',
        rss: true,
        expect: Object.assign({ stage: 'greeting', message: /1000 lines/ }, PROTO),
        check: (ev) => {
            assert.ok(!ev.some((l) => / cmd /.test(l)), ev.join('\n'));
            // the client went away early: the flood stopped far short of 2 M lines
            const f = ev.find((l) => / flood \d+$/.test(l));
            assert.ok(f, ev.join('\n'));
        },
    }));
});
