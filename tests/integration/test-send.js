// mailconn send / test / sendmail against REAL peers on loopback: the npm
// smtp-server (tests/peers/smtp-peer.js) with a CA made by this test, and
// the fault injector (tests/peers/fault-peer.js) only where a real server
// cannot be made to misbehave (a drop after the final dot, injected bytes
// after the STARTTLS 220).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const PASSWORD = 'pw-Secret-7781';
const sanitized = (process.env.MAILCONN_SANITIZE || 'none') !== 'none';

let pki;
test.before(() => {
    pki = lib.mkca(lib.tmpdir());
});
test.after(() => lib.stopAll());

function server(peer, extra = {}) {
    return Object.assign({
        name: 'local',
        host: peer.host,
        port: peer.port,
        transport: 'plain',
        sender: { address: 'app@example.test', name: 'App' },
    }, extra);
}

function basicAuth(mechanism) {
    const a = { provider: 'basic', user: 'app', password_env: 'MC_TEST_PASSWORD' };
    if (mechanism) a.mechanism = mechanism;
    return a;
}

function config(dir, servers, extra = {}) {
    return lib.writeConfig(dir, Object.assign({ servers: [].concat(servers) }, extra));
}

function cli(cfg, args, opts = {}) {
    return lib.runCli(['--config', cfg].concat(args), Object.assign({
        env: Object.assign({ MC_TEST_PASSWORD: PASSWORD }, opts.env || {}),
    }, opts));
}

function noSecrets(r) {
    const all = r.stdout + r.stderr;
    assert.ok(!all.includes(PASSWORD), 'the password appears in the output');
    const plain = Buffer.from(`\0app\0${PASSWORD}`).toString('base64');
    assert.ok(!all.includes(plain), 'the AUTH PLAIN payload appears in the output');
}

// ------------------------------------------------------------ every transport x mechanism

const transports = [
    { transport: 'plain', tls: 'none' },
    { transport: 'tls', tls: 'implicit' },
    { transport: 'starttls', tls: 'starttls' },
];

for (const tr of transports) {
    for (const mech of ['PLAIN', 'LOGIN']) {
        test(`${tr.transport} + ${mech} delivers headers, body, html, attachment; Bcc absent`, async (t) => {
            const dir = lib.tmpdir(t);
            const peer = await lib.startPeer({
                t, tls: tr.tls, cert: pki.server.cert, key: pki.server.key,
                users: { app: PASSWORD }, allowInsecureAuth: tr.tls === 'none',
            });
            const extra = { transport: tr.transport, auth: basicAuth(mech) };
            if (tr.tls !== 'none') extra.ca_file = pki.ca;
            else extra.allow_plaintext_auth = true;
            const cfg = config(dir, server(peer, extra));
            const html = path.join(dir, 'body.html');
            fs.writeFileSync(html, '<p>Hello <b>world</b></p>\n');
            const att = path.join(dir, 'report.bin');
            const bytes = Buffer.alloc(70000);
            for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
            fs.writeFileSync(att, bytes);

            const r = await cli(cfg, ['-v', 'send', '--to', 'to@example.test', '--cc', 'cc@example.test',
                '--bcc', 'hidden@example.test', '--subject', 'Grüße from mailconn',
                '--body', 'plain body line\n', '--html-file', html, '--attach', att]);
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /^sent .*: 3 recipients: 250/m);
            noSecrets(r);

            const msgs = await lib.readMessages(peer.out);
            assert.equal(msgs.length, 1);
            const m = msgs[0];
            assert.equal(m.meta.user, 'app');
            assert.equal(m.meta.mailFrom, 'app@example.test');
            assert.deepEqual([...m.meta.rcptTo].sort(),
                ['cc@example.test', 'hidden@example.test', 'to@example.test']);
            assert.equal(m.subject, 'Grüße from mailconn');
            assert.deepEqual(m.to, ['to@example.test']);
            assert.deepEqual(m.cc, ['cc@example.test']);
            assert.equal(m.from[0].address, 'app@example.test');
            assert.equal(m.from[0].name, 'App');
            assert.ok(!m.headerLines.some((h) => h.key === 'bcc'), 'a Bcc header was sent');
            assert.ok(!m.raw.toString().includes('hidden@example.test'), 'the Bcc address is in the message');
            assert.ok(m.headers['message-id'] && m.headers.date, 'Message-ID and Date');
            assert.equal(m.text.trim(), 'plain body line');
            assert.match(m.html, /<b>world<\/b>/);
            assert.equal(m.attachments.length, 1);
            assert.equal(m.attachments[0].filename, 'report.bin');
            assert.equal(m.attachments[0].sha256, lib.sha256(bytes));
            const auth = lib.events(peer.out).filter((l) => / auth /.test(l));
            assert.equal(auth.length, 1);
            assert.match(auth[0], new RegExp(` auth ${mech} app`, 'i'));
            if (tr.tls !== 'none') assert.match(r.stderr, /TLS: TLSv1\.[23] .*certificate verified/);
        });
    }
}

// ------------------------------------------------------------ refusals

test('wrong password: exit 77, stage auth, reply 535', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        users: { app: 'another-password' } });
    const cfg = config(dir, server(peer, { transport: 'tls', ca_file: pki.ca, auth: basicAuth() }));
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 77, r.stderr);
    assert.match(r.stderr, /^mailconn: .*auth: 535 /m);
    assert.doesNotMatch(r.stdout, /sent/);
    assert.equal(lib.messageCount(peer.out), 0);
    noSecrets(r);
});

for (const [what, pair, re] of [
    ['an unknown CA', 'untrusted', /certificate verify failed|unable to get local issuer/],
    ['a wrong host name', 'wronghost', /certificate verify failed|hostname mismatch/i],
    ['an expired certificate', 'expired', /expired/],
]) {
    test(`${what}: exit 69 at stage tls, nothing sent`, async (t) => {
        const dir = lib.tmpdir(t);
        const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki[pair].cert, key: pki[pair].key,
            users: { app: PASSWORD } });
        const cfg = config(dir, server(peer, { transport: 'tls', ca_file: pki.ca, auth: basicAuth() }));
        const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
        assert.equal(r.code, 69, r.stderr);
        assert.match(r.stderr, /^mailconn: .*tls: /m);
        assert.match(r.stderr, re);
        assert.ok(!lib.events(peer.out).some((l) => / (auth|mail) /.test(l)));
    });
}

test('an unreadable ca_file: exit 78', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key });
    const cfg = config(dir, server(peer, { transport: 'tls', ca_file: path.join(dir, 'missing.pem') }));
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /missing\.pem/);
});

test('connection dropped after the final dot: 75, outcome unknown, never "sent"', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startScript('fault-peer.js', { t, script: { replies: { DOT: 'close' } } });
    const cfg = config(dir, server(peer));
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /outcome unknown/);
    assert.doesNotMatch(r.stdout, /sent/);
    // and it was not resent: one DATA, one final dot
    assert.equal(lib.events(peer.out).filter((l) => / dot /.test(l)).length, 1);
});

test('no STARTTLS on a starttls server: 69, the server sees no AUTH and no MAIL', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, tls: 'starttls', starttls: false, cert: pki.server.cert,
        key: pki.server.key, users: { app: PASSWORD }, allowInsecureAuth: true });
    const cfg = config(dir, server(peer, { transport: 'starttls', ca_file: pki.ca, auth: basicAuth() }));
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /starttls: .*STARTTLS/);
    const ev = lib.events(peer.out);
    assert.ok(ev.some((l) => / connect/.test(l)), 'the client did connect');
    assert.ok(!ev.some((l) => / (auth|mail) /.test(l)), ev.join('\n'));
});

test('bytes injected after the STARTTLS 220: 69 at stage starttls, no AUTH', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        ehlo: ['250-fault', '250-STARTTLS', '250 AUTH PLAIN'],
        replies: { STARTTLS: { raw: '220 2.0.0 go ahead\r\n250 injected\r\n' } },
    } });
    const cfg = config(dir, server(peer, { transport: 'starttls', ca_file: pki.ca, auth: basicAuth() }));
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /starttls: /);
    assert.ok(!lib.events(peer.out).some((l) => / cmd (AUTH|MAIL)/.test(l)));
});

test('auth over plain without allow_plaintext_auth: 78 from check and send, no AUTH', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
    const cfg = config(dir, server(peer, { auth: basicAuth() }));
    const c = await cli(cfg, ['check']);
    assert.equal(c.code, 78, c.stderr);
    assert.match(c.stderr, /servers\[0\]\.auth: .*allow_plaintext_auth/);
    const r = await cli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 78, r.stderr);
    assert.ok(!lib.events(peer.out).some((l) => / (auth|mail) /.test(l)));
});

test('a refused recipient: per-recipient result, the others still get it, exit 69', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, rejectRcpt: 'nobody@example.test' });
    const cfg = config(dir, server(peer));
    const r = await cli(cfg, ['send', '--to', 'a@example.test', '--to', 'nobody@example.test',
        '--to', 'b@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /recipient nobody@example\.test refused: 550 5\.1\.1/);
    assert.match(r.stdout, /^sent .*: 2 of 3 recipients: 250/m);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.deepEqual([...msgs[0].meta.rcptTo].sort(), ['a@example.test', 'b@example.test']);
});

test('more recipients than max_recipients: several transactions, all delivered', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer, { max_recipients: 2 }));
    const to = ['r1', 'r2', 'r3', 'r4', 'r5'].map((n) => `${n}@example.test`);
    const r = await cli(cfg, ['send', ...to.flatMap((a) => ['--to', a]), '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 0, r.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 3);
    assert.deepEqual(msgs.flatMap((m) => m.meta.rcptTo).sort(), to);
    assert.equal(lib.sessions(peer.out).length, 1);
});

test('a message over the server SIZE is refused before DATA: exit 65', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, size: 2000 });
    const cfg = config(dir, server(peer));
    const r = await cli(cfg, ['send', '--to', 'a@example.test', '--subject', 's', '--body', 'x'.repeat(5000)]);
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /2000/);
    assert.ok(!lib.events(peer.out).some((l) => / (mail|data)/.test(l)));
});

// ------------------------------------------------------------ batches and volume

test('100 messages with one send -t go over one connection', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const files = [];
    for (let i = 0; i < 100; i++) {
        const f = path.join(dir, `m${i}.eml`);
        fs.writeFileSync(f, `From: App <app@example.test>\nTo: r${i}@example.test\nSubject: batch ${i}\n\nbody ${i}\n`);
        files.push(f);
    }
    const r = await cli(cfg, ['send', '-t', ...files], { timeoutMs: 120000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('sent ')).length, 100);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 100);
    assert.equal(lib.sessions(peer.out).length, 1);
    const subjects = new Set(msgs.map((m) => m.subject));
    assert.equal(subjects.size, 100);
});

test('send -t: a missing file is 66, the other files still go', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const f = path.join(dir, 'ok.eml');
    fs.writeFileSync(f, 'To: a@example.test\nSubject: ok\n\nbody\n');
    const r = await cli(cfg, ['send', '-t', path.join(dir, 'missing.eml'), f]);
    assert.equal(r.code, 66, r.stderr);
    assert.match(r.stderr, /missing\.eml/);
    assert.match(r.stdout, /^sent .*ok\.eml/m);
    assert.equal(lib.messageCount(peer.out), 1);
});

test('a 50 MB attachment is streamed: peak RSS under 32 MB', { skip: sanitized && 'RSS is meaningless under sanitizers' }, async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const att = path.join(dir, 'big.bin');
    const fd = fs.openSync(att, 'w');
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < 50; i++) {
        chunk.fill(i);
        fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
    // getrusage of the child: ru_maxrss in KiB
    const py = 'import resource,subprocess,sys\n' +
        'r=subprocess.run(sys.argv[1:])\n' +
        'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n' +
        'sys.exit(r.returncode)';
    const r = await lib.run('python3', ['-c', py, process.env.MAILCONN_BIN, '--config', cfg, 'send',
        '--to', 'a@example.test', '--subject', 'big', '--body', 'see attachment', '--attach', att],
    { timeoutMs: 120000 });
    assert.equal(r.code, 0, r.stderr);
    const kib = Number(r.stdout.trim().split('\n').pop());
    assert.ok(kib > 0 && kib < 32 * 1024, `peak RSS ${kib} KiB`);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].attachments[0].size, 50 << 20);
});

test('8 threads x 50 messages through one context all arrive', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const r = await lib.run(process.env.MAILCONN_THREADS, [cfg, '8', '50', 'to@example.test'],
        { timeoutMs: 180000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /sent 400, failed 0/);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 400);
    const subjects = new Set(msgs.map((m) => m.subject));
    assert.equal(subjects.size, 400);
    assert.ok(lib.sessions(peer.out).length <= 10, 'at most max_connections connections');
});

// ------------------------------------------------------------ sendmail

test('sendmail -f A B with a message on stdin delivers, silently', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const r = await cli(cfg, ['sendmail', '-f', 'a@example.test', 'b@example.test'],
        { input: 'Subject: x\n\nbody\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].meta.mailFrom, 'a@example.test');
    assert.deepEqual(msgs[0].meta.rcptTo, ['b@example.test']);
    assert.equal(msgs[0].subject, 'x');
    assert.equal(msgs[0].text.trim(), 'body');
});

test("cron's invocation: root goes through the alias, the sender is replaced", async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer), { aliases: { root: 'admin@example.test' } });
    const input = 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts\n' +
        'Content-Type: text/plain; charset=UTF-8\n\noutput of the job\n.\nafter a dot line\n';
    const r = await cli(cfg, ['sendmail', '-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'root'], { input });
    assert.equal(r.code, 0, r.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.deepEqual(msgs[0].meta.rcptTo, ['admin@example.test']);
    assert.equal(msgs[0].meta.mailFrom, 'app@example.test');
    assert.match(msgs[0].text, /after a dot line/, '-i: a lone dot does not end the input');
});

test('mailx invocation (-oi -f root@host -t) and the binary run as sendmail', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const link = path.join(dir, 'sendmail');
    fs.symlinkSync(process.env.MAILCONN_BIN, link);
    const input = 'From: root@host.example.test\nTo: x@example.test\nCc: y@example.test\n' +
        'Bcc: z@example.test\nSubject: mailx\n\nhello\n';
    const r = await lib.run(link, ['-oi', '-f', 'root@host.example.test', '-t', 'extra@example.test'],
        { input, env: { MAILCONN_CONFIG: cfg } });
    assert.equal(r.code, 0, r.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    // -t: the headers' recipients plus those on the command line (not written)
    assert.deepEqual([...msgs[0].meta.rcptTo].sort(),
        ['extra@example.test', 'x@example.test', 'y@example.test', 'z@example.test']);
    assert.ok(!msgs[0].raw.toString().includes('extra@example.test'));
    assert.ok(!msgs[0].headerLines.some((h) => h.key === 'bcc'));
    assert.equal(msgs[0].meta.mailFrom, 'root@host.example.test');
});

test('sendmail: a bare name without an alias is 65 with a hint', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const r = await cli(cfg, ['sendmail', 'root'], { input: 'Subject: x\n\nbody\n' });
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /aliases/);
    assert.equal(lib.messageCount(peer.out), 0);
});

// ------------------------------------------------------------ test command

test('mailconn test reports each stage and succeeds', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, tls: 'starttls', cert: pki.server.cert, key: pki.server.key,
        users: { app: PASSWORD } });
    const cfg = config(dir, server(peer, { transport: 'starttls', ca_file: pki.ca, auth: basicAuth() }));
    const r = await cli(cfg, ['test', '--to', 'to@example.test']);
    assert.equal(r.code, 0, r.stderr);
    for (const st of ['connect', 'greeting', 'ehlo', 'starttls', 'tls', 'auth', 'mail', 'rcpt', 'data'])
        assert.match(r.stdout, new RegExp(`^${st} `, 'm'), `stage ${st} missing:\n${r.stdout}`);
    assert.match(r.stdout, /^succeeded$/m);
    assert.equal(lib.messageCount(peer.out), 1);
});

// ------------------------------------------------------------ batches: precedence, reconnects, log_file

test('exit code precedence in a batch: 66 (unreadable file) wins over 65 (bad address)', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, server(peer));
    const bad = path.join(dir, 'bad.eml');
    fs.writeFileSync(bad, 'To: not an address\nSubject: bad\n\nbody\n');
    const good = path.join(dir, 'good.eml');
    fs.writeFileSync(good, 'To: a@example.test\nSubject: good\n\nbody\n');
    const r = await cli(cfg, ['send', '-t', bad, path.join(dir, 'missing.eml'), good]);
    assert.equal(r.code, 66, r.stderr);
    assert.match(r.stderr, /bad\.eml/);
    assert.match(r.stdout, /^sent .*good\.eml/m);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('sent')).length, 1);
});

test('-t batch: a drop before the final dot is resent once; a drop after it is not', async (t) => {
    const dir = lib.tmpdir(t);
    // message 1: delivered; message 2: the connection drops at MAIL (nothing
    // of it was taken: resent on a new connection); message 3: the
    // connection drops after its final dot (outcome unknown: never resent)
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        sequence: { MAIL: ['250 2.1.0 ok', 'close', '250 2.1.0 ok', '250 2.1.0 ok', '250 2.1.0 ok'],
            DOT: ['250 2.0.0 queued one', '250 2.0.0 queued two', 'close', '250 2.0.0 queued four'] },
    } });
    const cfg = config(dir, server(peer));
    const files = [1, 2, 3].map((i) => {
        const f = path.join(dir, `m${i}.eml`);
        fs.writeFileSync(f, `To: r${i}@example.test\nSubject: m${i}\n\nbody ${i}\n`);
        return f;
    });
    const r = await cli(cfg, ['send', '-t', ...files]);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stdout, /^sent .*m1\.eml: 1 recipient: 250 2\.0\.0 queued one$/m);
    assert.match(r.stdout, /^sent .*m2\.eml: 1 recipient: 250 2\.0\.0 queued two$/m);
    assert.doesNotMatch(r.stdout, /m3\.eml/);
    assert.match(r.stderr, /m3\.eml: data: outcome unknown/);
    assert.equal(lib.events(peer.out).filter((l) => / dot /.test(l)).length, 3, 'm3 was not resent');
});

test('log_file gets one line per message, no secret, mode 0600', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
        users: { app: PASSWORD } });
    const logf = path.join(dir, 'mail.log');
    const cfg = config(dir, server(peer, { transport: 'tls', ca_file: pki.ca, auth: basicAuth(), log_file: logf }));
    const r = await cli(cfg, ['send', '--to', 'a@example.test', '--to', 'b@example.test', '--subject', 's',
        '--body', 'b']);
    assert.equal(r.code, 0, r.stderr);
    const lines = fs.readFileSync(logf, 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /server=local from=<app@example\.test> to=<a@example\.test>,<b@example\.test> outcome=sent reply="250[^"]*" message-id=<[^>]+@[^>]+>/);
    assert.ok(!lines[0].includes(PASSWORD));
    assert.equal(fs.statSync(logf).mode & 0o777, 0o600);
});
