// The durable queue (issue 13, DESIGN.md "System mail: sendmail and the
// queue") against the npm smtp-server (tests/peers/smtp-peer.js). A server
// that is down is a port with nothing listening (listened on, then closed).
// Each test has its own config, state folder and queue.
//
// TEST HOOKS of the CLI used here (cli/queue-cmd.c):
//   MAILCONN_TEST_QUEUE_SUBMITTED=SECONDS  the submit time to record (ages a
//                                          message for max_age_s, no waiting)
//   MAILCONN_TEST_QUEUE_NO_RUNNER=1        no detached runner after a submit,
//                                          so the test alone drives delivery
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const lib = require('../peers/lib');

test.after(() => lib.stopAll());

const ID_RE = /^[0-9A-F]{21}$/;

async function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

// A config (queue included) in a fresh folder; returns helpers bound to it.
function setup(t, port, queue = {}, extra = {}) {
    const dir = lib.tmpdir(t);
    const state = path.join(dir, 'state');
    const cfg = lib.writeConfig(dir, Object.assign({
        servers: [{ name: 'local', host: '127.0.0.1', port, transport: 'plain',
            sender: { address: 'app@example.test' } }],
        queue: Object.assign({ retry_s: 1 }, queue),
        log_file: path.join(dir, 'mail.log'),
    }, extra));
    const qdir = queue.dir || path.join(state, 'queue');
    const env = (more = {}) => Object.assign({ MAILCONN_STATE_DIR: state }, more);
    return {
        dir, state, cfg, qdir,
        log: () => { try { return fs.readFileSync(path.join(dir, 'mail.log'), 'utf8'); } catch (_) { return ''; } },
        sendmail: (args, input, more = {}) => lib.runCli(['--config', cfg, 'sendmail', ...args],
            { input, env: env(more), timeoutMs: 30000 }),
        cli: (args, more = {}) => lib.runCli(['--config', cfg, ...args], { env: env(more), timeoutMs: 60000 }),
        ids: () => { try { return fs.readdirSync(qdir).filter((f) => ID_RE.test(f)).sort(); } catch (_) { return []; } },
    };
}

const MSG = 'From: Me <me@example.test>\nSubject: queued\n\nline one\nline two\n';

test('server down: sendmail exits 0, `queue list` shows the message and the reason; ' +
     'back up: `queue run` delivers it exactly once', async (t) => {
    const port = await freePort();
    const q = setup(t, port);
    const r = await q.sendmail(['-f', 'me@example.test', 'a@example.test'], MSG);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(q.ids().length, 1);
    const id = q.ids()[0];
    // files and folder private
    assert.equal(fs.statSync(q.qdir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(q.qdir, id)).mode & 0o777, 0o600);
    // the detached runner tried at once: the reason is listed
    const list = await lib.waitFor(async () => {
        const l = await q.cli(['queue', 'list']);
        return /connection refused/.test(l.stdout) ? l : null;
    }, 10000, 50, 'the reason in queue list');
    assert.equal(list.code, 0);
    assert.match(list.stdout, new RegExp(`^${id}\\s+\\d+ .* me@example.test$`, 'm'));
    assert.match(list.stdout, /^\(connect: 127\.0\.0\.1:\d+: connection refused\)$/m);
    assert.match(list.stdout, /^\s+a@example.test$/m);
    assert.match(list.stdout, /-- \d+ Kbytes in 1 Request\./);
    const bp = await q.sendmail(['-bp'], '');
    assert.equal(bp.code, 0);
    assert.match(bp.stdout, new RegExp(id));
    assert.match(q.log(), new RegExp(`queue id=${id} event=queued uid=\\d+ user=\\S+ from=<me@example.test>`));
    assert.match(q.log(), new RegExp(`queue id=${id} event=deferred .*connection refused`));

    // the server comes back on that port: `queue run` delivers once due
    const peer = await lib.startPeer({ port, t });
    await lib.waitFor(async () => {
        const rr = await q.cli(['queue', 'run']);
        assert.equal(rr.code, 0, rr.stderr);
        return lib.messageCount(peer.out) > 0;
    }, 15000, 200, 'delivery by queue run');
    for (let i = 0; i < 3; i++)
        assert.equal((await q.cli(['queue', 'flush'])).code, 0);
    assert.equal(lib.messageCount(peer.out), 1, 'delivered exactly once');
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.meta.mailFrom, 'me@example.test');
    assert.deepEqual(m.meta.rcptTo, ['a@example.test']);
    assert.equal(m.subject, 'queued');
    assert.equal(m.text.trim(), 'line one\nline two');
    // the Received: line names the submitting user (RFC 5321 4.4 shape)
    const user = require('node:os').userInfo().username;
    assert.match(m.raw.toString(), new RegExp(`^Received: from ${user} by \\S+ \\(mailconn\\) id ${id};\\r\\n\\t\\w{3}, `, 'm'));
    assert.deepEqual(q.ids(), []);
    const empty = await q.cli(['queue', 'list']);
    assert.equal(empty.stdout, 'Mail queue is empty\n');
    assert.match(q.log(), new RegExp(`queue id=${id} event=sent`));
});

test('send --queue: queued (exit 0, "queued" line), then delivered by the runner', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port);
    const r = await q.cli(['send', '--queue', '--to', 'a@example.test', '--subject', 'sq', '--body', 'hi'],
        { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^queued \S+: [0-9A-F]{21}\n$/);
    assert.doesNotMatch(r.stdout, /sent/);
    assert.equal(lib.messageCount(peer.out), 0);
    assert.equal(q.ids().length, 1);
    assert.equal((await q.cli(['queue', 'run'])).code, 0);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'sq');
    assert.equal(msgs[0].meta.mailFrom, 'app@example.test');
    // without a queue configured --queue is a usage error
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'l', host: '127.0.0.1', port: peer.port, transport: 'plain' }] });
    const n = await lib.runCli(['--config', cfg, 'send', '--queue', '--to', 'a@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(n.code, 64);
    assert.match(n.stderr, /no queue configured/);
});

test('send -t --queue FILE...: each file queued (a "queued" line each), nothing sent until a run', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port);
    const dir = lib.tmpdir(t);
    const files = [1, 2].map((i) => {
        const f = path.join(dir, `m${i}.eml`);
        fs.writeFileSync(f, `To: t${i}@example.test\nBcc: hidden${i}@example.test\nSubject: tq${i}\n\nbody ${i}\n`);
        return f;
    });
    const r = await q.cli(['send', '-t', '--queue', ...files], { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').sort();
    assert.equal(lines.length, 2, r.stdout);
    files.forEach((f, i) => assert.match(lines[i], new RegExp(`^queued ${f.replace(/[.]/g, '\\.')}: [0-9A-F]{21}$`)));
    assert.doesNotMatch(r.stdout, /^sent/m);
    assert.equal(lib.messageCount(peer.out), 0);
    assert.equal(q.ids().length, 2);
    assert.equal((await q.cli(['queue', 'run'])).code, 0);
    const msgs = await lib.readMessages(peer.out);
    assert.deepEqual(msgs.map((m) => m.subject).sort(), ['tq1', 'tq2']);
    for (const m of msgs) {
        const i = m.subject.slice(2);
        assert.deepEqual([...m.meta.rcptTo].sort(), [`hidden${i}@example.test`, `t${i}@example.test`]);
        assert.doesNotMatch(m.raw.toString(), /^Bcc:/im);
    }
});

test('two concurrent `queue flush` runs deliver each message once', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port);
    const N = 8;
    for (let i = 0; i < N; i++) {
        const r = await q.sendmail(['-f', 'me@example.test', `r${i}@example.test`],
            `Subject: c${i}\n\nbody ${i}\n`, { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
        assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(q.ids().length, N);
    assert.equal(lib.messageCount(peer.out), 0, 'nothing sent before the runs');
    const [a, b] = await Promise.all([q.cli(['queue', 'flush']), q.cli(['queue', 'flush'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, N, 'every message exactly once');
    assert.deepEqual(msgs.map((m) => m.subject).sort(), [...Array(N).keys()].map((i) => `c${i}`).sort());
    assert.deepEqual(q.ids(), []);
});

async function refusedCase(t, extraArgs) {
    const peer = await lib.startPeer({ t, rejectRcpt: 'bad@example.test', enhanced: true });
    const q = setup(t, peer.port);
    const r = await q.sendmail([...extraArgs, '-f', 'me@example.test', 'good1@example.test',
        'bad@example.test', 'good2@example.test'], MSG, { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const f = await q.cli(['queue', 'flush']);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(q.ids(), [], 'nothing left queued');
    return { peer, q, msgs: await lib.readMessages(peer.out) };
}

test('a permanently refused recipient: the others get it, the sender one RFC 3464 notice', async (t) => {
    const { q, msgs } = await refusedCase(t, []);
    const orig = msgs.filter((m) => m.subject === 'queued');
    assert.equal(orig.length, 1);
    assert.deepEqual(orig[0].meta.rcptTo.sort(), ['good1@example.test', 'good2@example.test']);
    const notices = msgs.filter((m) => m.subject !== 'queued');
    assert.equal(notices.length, 1, 'one notice');
    const n = notices[0];
    assert.deepEqual(n.meta.rcptTo, ['me@example.test'], 'to the envelope sender');
    assert.equal(n.meta.mailFrom, 'app@example.test', 'from sender.address');
    const raw = n.raw.toString();
    assert.match(raw, /^Auto-Submitted: auto-replied\r$/m);
    assert.match(raw, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(raw, /^Content-Type: message\/delivery-status\r$/m);
    assert.match(raw, /^Reporting-MTA: dns; \S+\r$/m);
    assert.match(raw, /^Final-Recipient: rfc822; bad@example.test\r$/m);
    assert.match(raw, /^Action: failed\r$/m);
    assert.match(raw, /^Status: 5\.\d+\.\d+\r$/m);
    assert.match(raw, /^Diagnostic-Code: smtp; 550 /m);
    assert.doesNotMatch(raw, /Final-Recipient: rfc822; good/);
    assert.match(raw, /^Content-Type: text\/rfc822-headers\r$/m);
    assert.match(raw, /^Subject: queued\r$/m, 'the original headers');
    assert.match(q.log(), /event=failed .*to=<bad@example.test>/);
});

test('-N never: the refused recipient gets no notice sent', async (t) => {
    const { q, msgs } = await refusedCase(t, ['-N', 'never']);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'queued');
    assert.match(q.log(), /event=no-notice reason="NOTIFY excludes FAILURE"/);
});

test('a null sender gets no notice, and a notice is never about a notice', async (t) => {
    const peer = await lib.startPeer({ t, rejectRcpt: 'bad@example.test' });
    const q = setup(t, peer.port);
    const env = { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' };
    assert.equal((await q.sendmail(['-f', '<>', 'bad@example.test'], MSG, env)).code, 0);
    const notice = 'From: x@example.test\nSubject: bounce\nAuto-Submitted: auto-replied\n\nx\n';
    assert.equal((await q.sendmail(['-f', 'me@example.test', 'bad@example.test'], notice, env)).code, 0);
    assert.equal((await q.cli(['queue', 'flush'])).code, 0);
    assert.equal(lib.messageCount(peer.out), 0);
    assert.deepEqual(q.ids(), []);
    assert.match(q.log(), /event=no-notice reason="null sender"/);
    assert.match(q.log(), /event=no-notice reason="the message is a notice"/);
});

test('max_age_s: an expired message gets a notice and leaves an empty queue', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port, { max_age_s: 60 });
    const old = Math.floor(Date.now() / 1000) - 3600;
    const r = await q.sendmail(['-f', 'me@example.test', 'a@example.test'], MSG,
        { MAILCONN_TEST_QUEUE_SUBMITTED: String(old), MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const f = await q.cli(['queue', 'run']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /1 delivered, 0 deferred, 1 failed, 1 notices/);   // the notice is the one delivered
    assert.deepEqual(q.ids(), []);
    assert.equal((await q.cli(['queue', 'list'])).stdout, 'Mail queue is empty\n');
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1, 'only the notice: the expired message was not tried');
    assert.deepEqual(msgs[0].meta.rcptTo, ['me@example.test']);
    const raw = msgs[0].raw.toString();
    assert.match(raw, /^Final-Recipient: rfc822; a@example.test\r$/m);
    assert.match(raw, /^Status: 4\.4\.7\r$/m);
    assert.match(raw, /expired after \d+ s in the queue/);
    assert.match(q.log(), /event=expired/);
});

test('outcome unknown (the connection closed after the final dot): kept, retried, logged "may duplicate"', async (t) => {
    // FAULT INJECTOR (tests/peers/fault-peer.js): no real server drops the
    // connection after the dot on request; the second try gets 250
    const peer = await lib.startScript('fault-peer.js', { t, script: { sequence: { DOT: ['close', '250 queued'] } } });
    const q = setup(t, peer.port);
    const r = await q.sendmail(['-f', 'me@example.test', 'a@example.test'], MSG, { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const [id] = q.ids();
    const first = await q.cli(['queue', 'flush']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /0 delivered, 1 deferred/);
    assert.deepEqual(q.ids(), [id], 'kept after an unknown outcome');
    assert.match(q.log(), new RegExp(`queue id=${id} event=deferred .*outcome unknown.*may duplicate`));
    assert.match((await q.cli(['queue', 'list'])).stdout, /\(data: outcome unknown: /);
    const second = await q.cli(['queue', 'flush']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /1 delivered, 0 deferred/);
    assert.deepEqual(q.ids(), []);
    assert.match(q.log(), new RegExp(`queue id=${id} event=retry-unknown.*may duplicate`));
    const dots = lib.events(peer.out).filter((l) => / dot /.test(l)).length;
    assert.equal(dots, 2, 'sent once more, and only once');
});

test('a runner killed mid-delivery: the message stays queued, is sent again, logged "may duplicate"', async (t) => {
    // FAULT INJECTOR: the first connection never answers the final dot
    const peer = await lib.startScript('fault-peer.js', { t, script: { conns: [{ replies: { DOT: 'hang' } }, {}] } });
    const q = setup(t, peer.port);
    const r = await q.sendmail(['a@example.test'], MSG, { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const [id] = q.ids();
    const runner = spawn(process.env.MAILCONN_BIN, ['--config', q.cfg, 'queue', 'flush'], {
        env: Object.assign({}, process.env, { MAILCONN_STATE_DIR: q.state }), stdio: 'ignore' });
    const exited = new Promise((resolve) => runner.once('exit', resolve));
    await lib.waitFor(() => lib.events(peer.out).some((l) => / dot /.test(l)), 10000, 25, 'the final dot');
    runner.kill('SIGKILL');
    await Promise.race([exited, lib.sleep(5000)]);
    assert.deepEqual(q.ids(), [id], 'still queued');
    const f = await q.cli(['queue', 'flush']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /1 delivered/);
    assert.deepEqual(q.ids(), []);
    assert.match(q.log(), new RegExp(`queue id=${id} event=retry-unknown.*may duplicate`));
    assert.equal(lib.events(peer.out).filter((l) => / dot /.test(l)).length, 2);
});

test('a recipient deferred with 4xx: the others delivered now, only it is tried again', async (t) => {
    // FAULT INJECTOR: successive RCPT replies 250, 451, then 250 from then on
    const peer = await lib.startScript('fault-peer.js', { t, script: { sequence: { RCPT: ['250 ok', '451 4.2.1 later', '250 ok'] } } });
    const q = setup(t, peer.port);
    const r = await q.sendmail(['-f', 'me@example.test', 'a@example.test', 'b@example.test'], MSG,
        { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
    assert.equal(r.code, 0, r.stderr);
    const first = await q.cli(['queue', 'flush']);
    assert.match(first.stdout, /0 delivered, 1 deferred/);
    const l = await q.cli(['queue', 'list']);
    assert.match(l.stdout, /^\s+b@example.test$/m);
    assert.doesNotMatch(l.stdout, /^\s+a@example.test$/m, 'a has it: no longer pending');
    assert.match(q.log(), /event=partial .*delivered=1/);
    const second = await q.cli(['queue', 'flush']);
    assert.match(second.stdout, /1 delivered, 0 deferred/);
    assert.deepEqual(q.ids(), []);
    const ev = lib.events(peer.out);
    assert.equal(ev.filter((x) => / dot /.test(x)).length, 2);
    assert.equal(ev.filter((x) => / cmd RCPT/.test(x)).length, 3, 'the second try names only b');
});

test('hold, release and drop', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port);
    const env = { MAILCONN_TEST_QUEUE_NO_RUNNER: '1' };
    assert.equal((await q.sendmail(['a@example.test'], MSG, env)).code, 0);
    const [id] = q.ids();
    const h = await q.cli(['queue', 'hold', id]);
    assert.equal(h.code, 0, h.stderr);
    assert.equal(h.stdout, `${id}: held\n`);
    assert.equal((await q.cli(['queue', 'flush'])).code, 0);
    assert.equal(lib.messageCount(peer.out), 0, 'a held message is not delivered by flush');
    assert.match((await q.cli(['queue', 'list'])).stdout, new RegExp(`^${id}!`, 'm'));
    assert.equal((await q.cli(['queue', 'release', id])).code, 0);
    assert.equal((await q.cli(['queue', 'run'])).code, 0);
    assert.equal(lib.messageCount(peer.out), 1, 'released: due at once');

    assert.equal((await q.sendmail(['b@example.test'], MSG, env)).code, 0);
    const [id2] = q.ids();
    const d = await q.cli(['queue', 'drop', id2]);
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(q.ids(), []);
    assert.deepEqual(fs.readdirSync(q.qdir).filter((f) => f !== 'tmp'), [], 'no state left');
    assert.equal((await q.cli(['queue', 'flush'])).code, 0);
    assert.equal(lib.messageCount(peer.out), 1, 'a dropped message is not delivered');
    const again = await q.cli(['queue', 'drop', id2]);
    assert.equal(again.code, 64);
    assert.match(again.stderr, /no queued message/);
    const bad = await q.cli(['queue', 'hold', '../config.json']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /is not a queue ID/);
    assert.match(q.log(), new RegExp(`queue id=${id2} event=dropped`));
});

test('no queue configured: queue list, -bp and mailq say the queue is empty', async (t) => {
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'l', host: '127.0.0.1', port: 25, transport: 'plain' }] });
    const l = await lib.runCli(['--config', cfg, 'queue', 'list']);
    assert.equal(l.code, 0);
    assert.equal(l.stdout, 'Mail queue is empty\n');
    const bp = await lib.runCli(['--config', cfg, 'sendmail', '-bp']);
    assert.equal(bp.stdout, 'Mail queue is empty\n');
});

test('queue config: wrong keys and values are errors with their JSON path', async (t) => {
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'l', host: 'h', transport: 'plain' }],
        queue: { retry_s: 0, max_age_s: 'x', dir: 'rel', bogus: 1 } });
    const r = await lib.runCli(['--config', cfg, 'check']);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /queue\.retry_s: must be an integer 1\.\.3600, got 0/);
    assert.match(r.stderr, /queue\.max_age_s: must be an integer/);
    assert.match(r.stderr, /queue\.dir: must be an absolute path/);
    assert.match(r.stderr, /queue: unknown key "bogus"/);
});

function canUnshare() {
    if (process.getuid() !== 0) return false;
    try {
        execFileSync('unshare', ['-m', 'true'], { stdio: 'ignore', timeout: 10000 });
        return true;
    } catch (_) { return false; }
}

test('disk full (a tiny tmpfs as the queue): 75, nothing left in the queue', { skip: !canUnshare() && 'needs root and unshare -m' }, async (t) => {
    const port = await freePort();
    const dir = lib.tmpdir(t);
    const qdir = path.join(dir, 'spool');
    fs.mkdirSync(qdir, { mode: 0o700 });
    const q = setup(t, port, { dir: qdir });
    const big = 'Subject: big\n\n' + ('x'.repeat(75) + '\n').repeat(4000);   // ~300 KB
    // in a private mount namespace: mount, submit, then show what is left
    const script = 'mount -t tmpfs -o size=64k,mode=0700 tmpfs "$1" || exit 99; ' +
        '"$2" --config "$3" sendmail a@example.test; echo "rc=$?"; ls -A "$1" "$1/tmp"';
    const r = await lib.run('unshare', ['-m', 'sh', '-c', script, 'sh', qdir, process.env.MAILCONN_BIN, q.cfg],
        { input: big, env: { MAILCONN_STATE_DIR: q.state } });
    assert.notEqual(r.stdout.match(/rc=(\d+)/), null, r.stdout + r.stderr);
    assert.equal(r.stdout.match(/rc=(\d+)/)[1], '75', r.stderr);
    assert.match(r.stderr, /queue: cannot write .*No space left on device/);
    const listing = r.stdout.split('\n').filter((l) => l && !/^rc=/.test(l) && !/:$/.test(l));
    assert.deepEqual(listing, ['tmp'], 'only the empty tmp/ folder: no partial file');
});

test('kill -9 of the submitter at random points: no message, or a complete one', async (t) => {
    const peer = await lib.startPeer({ t });
    const q = setup(t, peer.port);
    const body = [...Array(20000).keys()].map((i) => `line ${String(i).padStart(6, '0')} ` + 'y'.repeat(60)).join('\n') + '\n';
    const RUNS = 50;
    let killed = 0;
    for (let i = 0; i < RUNS; i++) {
        const input = `Subject: k${i}\n\n${body}`;
        const child = spawn(process.env.MAILCONN_BIN, ['--config', q.cfg, 'sendmail', 'a@example.test'], {
            env: Object.assign({}, process.env, { MAILCONN_STATE_DIR: q.state, MAILCONN_TEST_QUEUE_NO_RUNNER: '1' }),
            stdio: ['pipe', 'ignore', 'ignore'],
        });
        child.stdin.on('error', () => {});
        child.stdin.end(input);
        const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
        const delay = Math.floor(Math.random() * 51);
        const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } }, delay);
        const r = await Promise.race([exited, lib.sleep(20000).then(() => null)]);
        clearTimeout(timer);
        assert.notEqual(r, null, 'the submitter ended (bounded)');
        if (r.sig === 'SIGKILL') killed++;
        else assert.equal(r.code, 0);
    }
    const ids = q.ids();
    const l = await q.cli(['queue', 'list']);
    assert.equal(l.code, 0, l.stderr);
    assert.equal((l.stdout.match(/^[0-9A-F]{21} /gm) || []).length, ids.length, 'every file listed: each complete');
    const f = await q.cli(['queue', 'flush']);
    assert.equal(f.code, 0, f.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, ids.length, 'every queued message delivered');
    const want = body.replace(/\n/g, '\r\n');
    for (const m of msgs) {
        const raw = m.raw.toString();
        const at = raw.indexOf('\r\n\r\n');
        assert.equal(raw.slice(at + 4), want, `${m.subject}: complete, byte for byte`);
    }
    assert.deepEqual(q.ids(), []);
    t.diagnostic(`${RUNS} runs, ${killed} killed, ${ids.length} queued and delivered`);
});
