// `mailconn send --body-file` streams the text from its file
// (mc_message_set_text_file), as attachments are streamed: a 30 MB body
// arrives byte for byte at the npm smtp-server (tests/peers/smtp-peer.js)
// with the CLI's peak RSS far below the body's size, under the same
// transfer-encoding rules as an in-memory body (7bit for short ASCII lines,
// quoted-printable otherwise).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const sanitized = (process.env.MAILCONN_SANITIZE || 'none') !== 'none';
const MB = 1 << 20;

test.after(() => lib.stopAll());

function config(dir, peer) {
    return lib.writeConfig(dir, { servers: [{
        name: 'local', host: peer.host, port: peer.port, transport: 'plain',
        sender: { address: 'app@example.test', name: 'App' },
    }] });
}

// The CLI's peak RSS in KiB. GNU time (a small C program: what it adds
// before the exec is under 1 MB) reports the child's ru_maxrss; without it,
// VmHWM from /proc/<pid>/status polled every 10 ms until the exit (a lower
// bound by at most the last 10 ms). A Python or node wrapper would not do:
// ru_maxrss keeps the forked wrapper's own size from before the exec.
async function sendMeasured(cfg, args) {
    const argv = ['--config', cfg, 'send'].concat(args);
    const bin = process.env.MAILCONN_BIN;
    if (fs.existsSync('/usr/bin/time')) {
        const f = path.join(path.dirname(cfg), 'rss.txt');
        const r = await lib.run('/usr/bin/time', ['-f', '%M', '-o', f, bin].concat(argv),
            { timeoutMs: 170000 });
        return Object.assign(r, { kib: Number(fs.readFileSync(f, 'utf8').trim().split('\n').pop()) });
    }
    const { spawn } = require('node:child_process');
    const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let kib = 0;
    const poll = setInterval(() => {
        try {
            const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) kib = Math.max(kib, Number(m[1]));
        } catch (_) { /* exited */ }
    }, 10);
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 170000);
    const code = await new Promise((resolve) => child.on('close', (c) => resolve(c)));
    clearTimeout(timer);
    clearInterval(poll);
    return { code, kib, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

// Write about `size` bytes of lines from line(i) to file; returns the text.
function writeBody(file, size, line) {
    const parts = [];
    let n = 0;
    for (let i = 0; n < size; i++) {
        const l = line(i);
        parts.push(l);
        n += Buffer.byteLength(l);
    }
    const text = parts.join('');
    fs.writeFileSync(file, text);
    return text;
}

// The body of a stored message (bytes after the first blank line).
function rawBody(raw) {
    const i = raw.indexOf('\r\n\r\n');
    assert.ok(i > 0, 'no header/body separator');
    return raw.subarray(i + 4);
}

const cases = [
    {
        name: 'UTF-8 text, long lines, trailing blanks, dot lines: quoted-printable',
        cte: 'quoted-printable',
        line: (i) => (i % 997 === 0 ? '.\n'
            : i % 101 === 0 ? `${'x'.repeat(1200)} long line ${i}\n`
            : i % 13 === 0 ? `trailing blank ${i} \t \n`
            : `Grüße ${i}: ünïcödé — a line of the body = ${'abc '.repeat(i % 20)}\n`),
    },
    {
        name: 'ASCII text, LF and CRLF line ends, dot lines: 7bit',
        cte: '7bit',
        line: (i) => (i % 997 === 0 ? '.\n'
            : i % 2 ? `line ${i} of the plain ASCII body, with a boundary-like =_mc_ marker\r\n`
            : `.leading dot on line ${i}\n`),
    },
];

for (const c of cases) {
    test(`--body-file 30 MB, ${c.name}: delivered intact, peak RSS under 16 MB`, async (t) => {
        const dir = lib.tmpdir(t);
        const peer = await lib.startPeer({ t });
        const cfg = config(dir, peer);
        const file = path.join(dir, 'body.txt');
        const text = writeBody(file, 30 * MB, c.line);

        const r = await sendMeasured(cfg, ['--to', 'to@example.test', '--subject', 'big body',
            '--body-file', file]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^sent .*: 1 recipient: 250/m);
        const what = `peak RSS ${r.kib} KiB for a body of ${Buffer.byteLength(text) >> 20} MB`;
        t.diagnostic(what);
        if (!sanitized)
            assert.ok(r.kib > 0 && r.kib < 16 * 1024, what);

        const msgs = await lib.readMessages(peer.out);
        assert.equal(msgs.length, 1);
        const m = msgs[0];
        assert.equal(m.meta.mailFrom, 'app@example.test');
        assert.deepEqual(m.meta.rcptTo, ['to@example.test']);
        assert.equal(m.subject, 'big body');
        assert.match(String(m.headers['content-transfer-encoding']), new RegExp(`^${c.cte}$`, 'i'));
        assert.equal(m.headers['content-type'].value, 'text/plain');
        assert.equal(m.headers['content-type'].params.charset.toUpperCase(), 'UTF-8');
        // every line of the wire form ends in CRLF and stays within the limits
        const body = rawBody(m.raw);
        const wire = body.toString('latin1');
        assert.ok(!/[^\r]\n/.test(wire) && !/\r[^\n]/.test(wire), 'a bare LF or CR on the wire');
        const max = c.cte === '7bit' ? 998 : 76;
        assert.ok(wire.split('\r\n').every((l) => l.length <= max), `a line over ${max}`);
        // the decoded text is the file's, line ends read as LF
        const want = text.replace(/\r\n/g, '\n');
        const got = m.text.replace(/\r\n/g, '\n');
        assert.equal(got.length, want.length, 'decoded length');
        assert.equal(lib.sha256(got), lib.sha256(want), 'sha256 of the decoded text');
        if (c.cte === '7bit')   // and on the wire exactly the file with CRLF line ends
            assert.equal(lib.sha256(body), lib.sha256(want.replace(/\n/g, '\r\n')));
    });
}

test('--body-file with a missing file: 66 naming the file, nothing sent', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer);
    const missing = path.join(dir, 'no-such-body.txt');
    const r = await lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test', '--subject', 's',
        '--body-file', missing]);
    assert.equal(r.code, 66, r.stderr);
    assert.ok(r.stderr.includes(missing), r.stderr);
    assert.doesNotMatch(r.stdout, /sent/);
    assert.equal(lib.events(peer.out).filter((l) => / connect/.test(l)).length, 0, 'a connection was made');
});

test('--body-file with an attachment: multipart, text and attachment intact', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer);
    const file = path.join(dir, 'body.txt');
    fs.writeFileSync(file, 'first line\n.\nGrüße\n');
    const att = path.join(dir, 'data.bin');
    const bytes = Buffer.alloc(100000, 7);
    fs.writeFileSync(att, bytes);
    const r = await lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test', '--subject', 's',
        '--body-file', file, '--attach', att]);
    assert.equal(r.code, 0, r.stderr);
    const [m] = await lib.readMessages(peer.out);
    // the CRLF before the next delimiter belongs to it (RFC 2046 5.1.1)
    assert.equal(m.text.replace(/\r\n/g, '\n'), 'first line\n.\nGrüße');
    assert.equal(m.attachments.length, 1);
    assert.equal(m.attachments[0].sha256, lib.sha256(bytes));
});
