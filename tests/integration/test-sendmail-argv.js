// sendmail compatibility (issue 12, DESIGN.md "System mail: sendmail and
// the queue"): an argv table. Each row runs `mailconn sendmail ARGS` (or the
// binary under another name) with a given stdin against the npm smtp-server
// (tests/peers/smtp-peer.js) and asserts the exit code and, when a message
// is sent, what arrived: envelope (the peer's record), headers, body bytes;
// when none is, that the peer stored nothing. Then `send --from` with a
// name, and DSN on the wire against a peer that offers it (--dsn).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

let peer, dir, cfg;
test.before(async () => {
    dir = lib.tmpdir();
    peer = await lib.startPeer({});
    cfg = lib.writeConfig(dir, {
        servers: [{
            name: 'local', host: peer.host, port: peer.port, transport: 'plain',
            sender: { address: 'app@example.test', name: 'App' },
        }],
        aliases: { root: 'admin@example.test', ops: 'ops@example.test' },
    });
    for (const name of ['sendmail', 'mailq', 'newaliases']) {
        fs.mkdirSync(path.join(dir, name));
        fs.symlinkSync(process.env.MAILCONN_BIN, path.join(dir, name, name));
    }
});
test.after(() => lib.stopAll());

const MSG = 'Subject: table\n\nbody line\n';

// expect: code; sent (false: nothing stored); from (envelope sender), rcpt
// (sorted envelope recipients), subject, text (mailparser's, trimmed),
// fromName, fromAddr (From: header), headers ({name: value} as mailparser
// has them), absent (strings not in the raw message), stdout, stderr (RegExp)
const rows = [
    // (a) body-only input
    { name: 'a first line that is not a header: all body (Postfix)', args: ['a@example.test'],
        input: 'hello\n', expect: { code: 0, rcpt: ['a@example.test'], text: 'hello',
            subject: undefined, fromAddr: 'app@example.test', fromName: 'App' } },
    { name: "'Warning: x' then a line that is no header: the body starts there",
        args: ['a@example.test'], input: 'Warning: x\nmore\n',
        expect: { code: 0, text: 'more', headers: { warning: 'x' } } },
    { name: 'a first line starting with white space: all body', args: ['a@example.test'],
        input: '  indented first line\nSubject: not a header here\n',
        expect: { code: 0, text: '  indented first line\nSubject: not a header here', subject: undefined } },
    { name: 'an mbox From_ line first is dropped', args: ['a@example.test'],
        input: 'From root@host Thu Dec  3 12:00:00 2026\nSubject: mbox\n\nbody\n',
        expect: { code: 0, subject: 'mbox', text: 'body', absent: ['From root@host'] } },
    { name: 'a header block with a bare CR is still refused', args: ['a@example.test'],
        input: 'Subject: a\rb\n\nbody\n', expect: { code: 65, sent: false } },
    // (b) recipients, senders, aliases
    { name: "cron's MAILTO list as one argument", args: ['a@example.test,b@example.test'],
        input: MSG, expect: { code: 0, rcpt: ['a@example.test', 'b@example.test'] } },
    { name: "'Name <a@x>' as an argument", args: ['Some Body <a@example.test>', 'c@example.test'],
        input: MSG, expect: { code: 0, rcpt: ['a@example.test', 'c@example.test'] } },
    { name: "-f '<>': the null sender", args: ['-f', '<>', 'a@example.test'], input: MSG,
        expect: { code: 0, from: '', fromAddr: 'app@example.test' } },
    { name: "-f '': the null sender", args: ['-f', '', 'a@example.test'], input: MSG,
        expect: { code: 0, from: '' } },
    { name: '-r A is -f A', args: ['-r', 'robot@example.test', 'a@example.test'], input: MSG,
        expect: { code: 0, from: 'robot@example.test' } },
    { name: "-f 'Name <a>' takes the address", args: ['-f', 'Robot <robot@example.test>', 'a@example.test'],
        input: MSG, expect: { code: 0, from: 'robot@example.test' } },
    { name: 'alias names match in any case (ROOT)', args: ['ROOT'], input: MSG,
        expect: { code: 0, rcpt: ['admin@example.test'] } },
    { name: 'an alias named in mixed case, with an address', args: ['Ops,a@example.test'], input: MSG,
        expect: { code: 0, rcpt: ['a@example.test', 'ops@example.test'] } },
    { name: 'recipients before options (GNU getopt order)', args: ['a@example.test', '-f', 'x@example.test'],
        input: MSG, expect: { code: 0, from: 'x@example.test', rcpt: ['a@example.test'] } },
    // (c) accepted-and-ignored option forms
    { name: 'accepted and ignored: -B7BIT -C FILE -G -h N -L TAG -m -n -O OPT -U -X FILE -em -Am',
        args: ['-B7BIT', '-C', '/nonexistent/sendmail.cf', '-G', '-h', '17', '-L', 'tag', '-m', '-n',
            '-O', 'DeliveryMode=b', '-U', '-X', '/nonexistent/log', '-em', '-Am', 'a@example.test'],
        input: MSG, expect: { code: 0, rcpt: ['a@example.test'], subject: 'table' } },
    { name: 'separate and attached values, -oem -odi -oi, -B 8BITMIME, -bm',
        args: ['-oem', '-odi', '-oi', '-B', '8BITMIME', '-bm', '-FCron Daemon', 'root'],
        input: 'Subject: dots\n\nbefore\n.\nafter\n',
        expect: { code: 0, rcpt: ['admin@example.test'], text: 'before\n.\nafter', fromName: 'Cron Daemon' } },
    { name: 'clustered flags -ti with -f attached', args: ['-ti', '-fsender@example.test'],
        input: 'To: t@example.test\nSubject: cluster\n\nbefore\n.\nafter\n',
        expect: { code: 0, from: 'sender@example.test', rcpt: ['t@example.test'], text: 'before\n.\nafter' } },
    { name: 'without -i a lone dot ends the input', args: ['a@example.test'],
        input: 'Subject: dot\n\nbefore\n.\nafter\n', expect: { code: 0, text: 'before' } },
    { name: "mutt's -N failure,delay -R hdrs -V id1 (this peer lacks DSN: dropped, the mail goes)",
        args: ['-oem', '-oi', '-N', 'failure,delay', '-R', 'hdrs', '-V', 'id1', '--', 'a@example.test'],
        input: MSG, expect: { code: 0, rcpt: ['a@example.test'] } },
    { name: '-N never', args: ['-Nnever', 'a@example.test'], input: MSG, expect: { code: 0 } },
    { name: '-N with an unknown item is a usage error', args: ['-N', 'sometimes', 'a@example.test'],
        input: MSG, expect: { code: 64, sent: false, stderr: /sometimes/ } },
    { name: '-R with an unknown value is a usage error', args: ['-R', 'body', 'a@example.test'],
        input: MSG, expect: { code: 64, sent: false } },
    { name: 'an unknown option is a usage error', args: ['-Z', 'a@example.test'], input: MSG,
        expect: { code: 64, sent: false, stderr: /unsupported option -Z/ } },
    { name: '-f without a value', args: ['a@example.test', '-f'], input: MSG,
        expect: { code: 64, sent: false, stderr: /-f needs a value/ } },
    { name: 'no recipient and no -t', args: ['-oi'], input: MSG, expect: { code: 64, sent: false } },
    // (c) modes
    { name: '-bi exits 0', args: ['-bi'], input: '', expect: { code: 0, sent: false, stdout: '' } },
    { name: '-I exits 0 (initialize aliases, as -bi)', args: ['-I'], input: '', expect: { code: 0, sent: false } },
    { name: '-bp: Mail queue is empty', args: ['-bp'], input: '',
        expect: { code: 0, sent: false, stdout: 'Mail queue is empty\n' } },
    { name: '-q: nothing queued, exit 0', args: ['-q'], input: '', expect: { code: 0, sent: false } },
    { name: '-q30m: nothing queued, exit 0', args: ['-q30m'], input: '', expect: { code: 0, sent: false } },
    ...['-bs', '-bd', '-bv'].map((m) => ({ name: `${m}: 64, not a daemon`, args: [m], input: 'HELO x\r\n',
        expect: { code: 64, sent: false, stderr: /mailconn is not a daemon/ } })),
    { name: '-bt: 64, not supported', args: ['-bt'], input: '', expect: { code: 64, sent: false } },
    // the binary under other names
    { name: 'run as mailq', bin: 'mailq', args: [], input: '',
        expect: { code: 0, sent: false, stdout: 'Mail queue is empty\n' } },
    { name: 'run as newaliases', bin: 'newaliases', args: [], input: '', expect: { code: 0, sent: false, stdout: '' } },
    { name: 'run as sendmail: body-only input to a list', bin: 'sendmail', args: ['-i', 'a@example.test,b@example.test'],
        input: 'just text\n', expect: { code: 0, rcpt: ['a@example.test', 'b@example.test'], text: 'just text' } },
    // (e) -t honours Resent-* (RFC 5322 3.6.6)
    { name: '-t with Resent-To/Cc/Bcc: those recipients, Resent-Bcc removed', args: ['-t', '-i'],
        input: 'To: old@example.test\nSubject: fwd\nResent-From: app@example.test\n' +
            'Resent-To: new@example.test\nResent-Cc: c@example.test\nResent-Bcc: hidden@example.test\n\nbody\n',
        expect: { code: 0, rcpt: ['c@example.test', 'hidden@example.test', 'new@example.test'],
            absent: ['hidden@example.test'] } },
    { name: '-t with Resent-To and a command-line recipient', args: ['-t', 'extra@example.test'],
        input: 'To: old@example.test\nResent-To: new@example.test\nSubject: fwd\n\nbody\n',
        expect: { code: 0, rcpt: ['extra@example.test', 'new@example.test'], absent: ['extra@example.test'] } },
    { name: '-t without Resent-*: To/Cc/Bcc as before', args: ['-t'],
        input: 'To: x@example.test\nCc: y@example.test\nBcc: z@example.test\nSubject: s\n\nbody\n.\n',
        expect: { code: 0, rcpt: ['x@example.test', 'y@example.test', 'z@example.test'] } },
];

function runRow(row) {
    const env = { MAILCONN_CONFIG: cfg };
    if (row.bin) return lib.run(path.join(dir, row.bin, row.bin), row.args, { input: row.input, env });
    return lib.runCli(['--config', cfg, 'sendmail'].concat(row.args), { input: row.input, env });
}

async function checkRow(row) {
    const before = lib.messageCount(peer.out);
    const r = await runRow(row);
    const e = row.expect;
    const argv = JSON.stringify(row.args);
    assert.equal(r.code, e.code, `exit code for ${argv}: ${r.stderr}`);
    if (e.stdout !== undefined) assert.equal(r.stdout, e.stdout);
    if (e.stderr) assert.match(r.stderr, e.stderr);
    const sent = e.sent !== undefined ? e.sent : e.code === 0;
    if (!sent) {
        assert.equal(lib.messageCount(peer.out), before, `a message was stored for ${argv}`);
        return;
    }
    assert.equal(r.stdout, '', 'sendmail is silent on success');
    assert.equal(lib.messageCount(peer.out), before + 1, `one message for ${argv}`);
    const m = (await lib.readMessages(peer.out)).pop();
    assert.equal(m.meta.mailFrom, e.from !== undefined ? e.from : 'app@example.test', 'envelope sender');
    assert.deepEqual([...m.meta.rcptTo].sort(), e.rcpt || ['a@example.test'], 'envelope recipients');
    if ('subject' in e) assert.equal(m.subject, e.subject);
    if (e.text !== undefined) assert.equal(m.text.replace(/\r\n/g, '\n').replace(/\n$/, ''), e.text);
    if (e.fromAddr) assert.equal(m.from[0].address, e.fromAddr);
    if (e.fromName) assert.equal(m.from[0].name, e.fromName);
    for (const [k, v] of Object.entries(e.headers || {})) assert.equal(m.headers[k], v, `header ${k}`);
    const raw = m.raw.toString('latin1');
    for (const s of e.absent || []) assert.ok(!raw.includes(s), `"${s}" is in the message`);
    // the header block always ends in a blank line, and every line in CRLF
    assert.ok(raw.includes('\r\n\r\n'), 'no blank line after the header');
    assert.ok(!/[^\r]\n/.test(raw), 'a bare LF');
    assert.ok(m.headers['message-id'] && m.headers.date, 'Message-ID and Date');
}

for (const row of rows) test(`sendmail ${row.name}`, () => checkRow(row));

// (d) send --from with a name, and a bare --from equal to sender.address
test("send --from 'Name <a>': the name in From:, the address in both", async () => {
    const before = lib.messageCount(peer.out);
    const r = await lib.runCli(['--config', cfg, 'send', '--from', '"Boss, The" <boss@example.test>',
        '--to', 'a@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lib.messageCount(peer.out), before + 1);
    const m = (await lib.readMessages(peer.out)).pop();
    assert.equal(m.meta.mailFrom, 'boss@example.test');
    assert.equal(m.from[0].address, 'boss@example.test');
    assert.equal(m.from[0].name, 'Boss, The');
});

test("send -t --from 'Name <a>': the address is the envelope sender, From: as written", async () => {
    const before = lib.messageCount(peer.out);
    const r = await lib.runCli(['--config', cfg, 'send', '-t', '--from', 'Robot <robot@example.test>'],
        { input: 'From: Writer <writer@example.test>\nTo: a@example.test\nSubject: t\n\nbody\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lib.messageCount(peer.out), before + 1);
    const m = (await lib.readMessages(peer.out)).pop();
    assert.equal(m.meta.mailFrom, 'robot@example.test');
    assert.equal(m.from[0].address, 'writer@example.test');
    assert.equal(m.from[0].name, 'Writer');
});

test('send --from sender.address (any case) keeps sender.name; another address has no name', async () => {
    for (const [from, name] of [['app@example.test', 'App'], ['APP@example.test', 'App'],
        ['other@example.test', '']]) {
        const before = lib.messageCount(peer.out);
        const r = await lib.runCli(['--config', cfg, 'send', '--from', from, '--to', 'a@example.test',
            '--subject', 's', '--body', 'b']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(lib.messageCount(peer.out), before + 1);
        const m = (await lib.readMessages(peer.out)).pop();
        assert.equal(m.from[0].name, name, `From: name for --from ${from}`);
        assert.equal(m.meta.mailFrom, from.toLowerCase());
    }
});

// DSN (RFC 3461) on the wire: against a peer that offers DSN the requests
// arrive as NOTIFY/ORCPT on RCPT and RET/ENVID on MAIL; without DSN they
// are dropped with a -v line and the mail still goes
test("sendmail -N failure,delay -R hdrs -V id1 (mutt) to a DSN peer: NOTIFY, RET, ENVID, ORCPT", async (t) => {
    const dsnPeer = await lib.startPeer({ t, extraArgs: ['--dsn'] });
    const d = lib.tmpdir(t);
    const c = lib.writeConfig(d, { servers: [{ name: 'dsn', host: dsnPeer.host, port: dsnPeer.port,
        transport: 'plain', sender: { address: 'app@example.test' } }] });
    const r = await lib.runCli(['--config', c, 'sendmail', '-oem', '-oi', '-N', 'failure,delay', '-R', 'hdrs',
        '-V', 'id1', '--', 'a@example.test', 'b@example.test'], { input: MSG });
    assert.equal(r.code, 0, r.stderr);
    const [m] = await lib.readMessages(dsnPeer.out);
    assert.deepEqual(m.meta.dsn, { ret: 'HDRS', envid: 'id1' });
    assert.deepEqual(m.meta.rcptDsn, [
        { notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;a@example.test' },
        { notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;b@example.test' },
    ]);
    assert.equal(m.text.trim(), 'body line');
});

test('send --dsn-notify never --dsn-ret full --envid with + and = (xtext) to a DSN peer', async (t) => {
    const dsnPeer = await lib.startPeer({ t, extraArgs: ['--dsn'] });
    const d = lib.tmpdir(t);
    const c = lib.writeConfig(d, { servers: [{ name: 'dsn', host: dsnPeer.host, port: dsnPeer.port,
        transport: 'plain', sender: { address: 'app@example.test' } }] });
    const r = await lib.runCli(['--config', c, '-v', 'send', '--to', 'a@example.test', '--subject', 's',
        '--body', 'b', '--dsn-notify', 'never', '--dsn-ret', 'full', '--envid', 'q+1=2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /MAIL FROM:<app@example\.test> RET=FULL ENVID=q\+2B1\+3D2/);
    const [m] = await lib.readMessages(dsnPeer.out);
    assert.deepEqual(m.meta.dsn, { ret: 'FULL', envid: 'q+1=2' });
    assert.deepEqual(m.meta.rcptDsn, [{ notify: ['NEVER'], orcpt: 'rfc822;a@example.test' }]);
    const bad = await lib.runCli(['--config', c, 'send', '--to', 'a@example.test', '--subject', 's',
        '--body', 'b', '--dsn-ret', 'some']);
    assert.equal(bad.code, 64, bad.stderr);
    assert.match(bad.stderr, /DSN ret "some"/);
});

test('DSN asked of a server without DSN: dropped with a -v line, the mail goes', async () => {
    const before = lib.messageCount(peer.out);
    const r = await lib.runCli(['--config', cfg, 'sendmail', '-v', '-N', 'success', '-R', 'full', '-V', 'x1',
        'a@example.test'], { input: MSG });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /does not offer DSN: NOTIFY, RET and ENVID dropped/);
    assert.doesNotMatch(r.stderr, /RET=|NOTIFY=|ENVID=/);
    assert.equal(lib.messageCount(peer.out), before + 1);
});

// /etc/aliases when the config has no "aliases" (cron mails root): only
// entries that are addresses. The test's own /etc/aliases is put in place
// inside a private mount namespace (an overlay on /etc; the machine's files
// are untouched), so it needs root and unshare(1).
test('/etc/aliases address entries, any case, when the config has no aliases', async (t) => {
    const probe = await lib.run('unshare', ['-m', 'true']).catch(() => ({ code: -1 }));
    if (process.getuid() !== 0 || probe.code !== 0) {
        t.skip('needs root and unshare -m');
        return;
    }
    const d = lib.tmpdir(t);
    const upper = path.join(d, 'upper');
    const work = path.join(d, 'work');
    fs.mkdirSync(upper);
    fs.mkdirSync(work);
    const aliases = path.join(d, 'aliases');
    fs.writeFileSync(aliases, '# aliases(5)\npostmaster: root\nroot: Admin@example.test,\n' +
        '  ops@example.test\npipe: "|/usr/bin/procmail"\nfile: /var/mail/x\ninc: :include:/etc/list\n' +
        'mixed: a@example.test, root\nbackup: backup@example.test\n');
    const server = { name: 'local', host: peer.host, port: peer.port, transport: 'plain',
        sender: { address: 'app@example.test' } };
    const bare = lib.writeConfig(d, { servers: [server] }, 'bare.json');
    const withAliases = lib.writeConfig(d, { servers: [server], aliases: { other: 'o@example.test' } },
        'aliases.json');
    const script = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && ' +
        'cp "$3" /etc/aliases && shift 3 && exec "$@"';
    const inNs = (c, rcpt) => lib.run('unshare', ['-m', 'sh', '-c', script, 'sh', upper, work, aliases,
        process.env.MAILCONN_BIN, '--config', c, 'sendmail', rcpt], { input: MSG });
    for (const [c, rcpt, code, want] of [
        [bare, 'ROOT', 0, ['admin@example.test', 'ops@example.test']],
        [bare, 'Backup', 0, ['backup@example.test']],
        [bare, 'postmaster', 65, null],   // a bare name: not read
        [bare, 'pipe', 65, null],
        [bare, 'file', 65, null],
        [bare, 'inc', 65, null],
        [bare, 'mixed', 65, null],        // one target is not an address
        [withAliases, 'root', 65, null],  // the config has aliases: /etc/aliases is not read
    ]) {
        const before = lib.messageCount(peer.out);
        const r = await inNs(c, rcpt);
        assert.equal(r.code, code, `${rcpt}: ${r.stderr}`);
        if (!want) {
            assert.match(r.stderr, /no domain and no alias/);
            assert.equal(lib.messageCount(peer.out), before);
            continue;
        }
        assert.equal(lib.messageCount(peer.out), before + 1);
        const m = (await lib.readMessages(peer.out)).pop();
        assert.deepEqual([...m.meta.rcptTo].sort(), want);
    }
    assert.ok(!fs.existsSync('/etc/aliases') || !fs.readFileSync('/etc/aliases', 'utf8').includes('Admin@example.test'),
        'the machine\'s /etc/aliases was changed');
});
