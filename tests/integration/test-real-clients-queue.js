// The queue with real clients (issue 13, acceptance 1; DESIGN.md "System
// mail: sendmail and the queue"): the clients of test-real-clients.js
// (Debian's bsd-mailx, s-nail, mutt, git send-email, php-cli and cron, and
// the system's Python),
// with the same namespace setup (real-clients-lib.js), hand their mail to
// /usr/sbin/sendmail = mailconn with a queue configured while the server is
// down (a port with nothing listening): every client exits 0 and every
// sendmail call exits 0; `mailconn queue list` shows each message with its
// reason. Then the npm smtp-server (tests/peers/smtp-peer.js) comes up on
// that port, refusing one recipient for good (550 5.1.1): `queue run`
// delivers each message exactly once (counted in the peer's store, also
// after more flushes), the refused recipient's message still reaches its
// other recipient, and the envelope sender gets one failure notice. Then
// messages past max_age_s (recorded as submitted long ago by the hook
// below): one notice for bsd-mailx's, none for mutt's with -N never, and
// an empty queue.
//
// TEST HOOKS used (cli/queue-cmd.c): MAILCONN_TEST_QUEUE_NO_RUNNER=1 (no
// detached runner after a submit, so the test alone drives delivery) and
// MAILCONN_TEST_QUEUE_SUBMITTED=SECONDS (the submit time to record).
// Needs root, unshare(1), overlayfs and the Debian archive (or a filled
// cache); a client that cannot run here is skipped with the reason. Normal
// build only (meson registers it only without sanitizers).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const lib = require('../peers/lib');
const rcl = require('./real-clients-lib');

const BUILD = process.env.MAILCONN_BUILD_ROOT;
const h = rcl.harness(BUILD);
const USED = ['mailx', 'snail', 'mutt', 'git', 'php', 'cron'];   // and Python, from the machine

let dir, port, cfg, state, why = null, snapBefore;
const missing = {};
const sent = [];      // {client, rcpts}
const ID_RE = /^([0-9A-F]{21})\s/;

async function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const a = s.address().port;
            s.close(() => resolve(a));
        });
    });
}

function cli(args) {
    return lib.runCli(['--config', cfg, ...args], { env: { MAILCONN_STATE_DIR: state }, timeoutMs: 60000 });
}

test.before(async () => {
    if (process.getuid() !== 0) { why = 'needs root (unshare -m, mount)'; return; }
    if (!BUILD || !process.env.MAILCONN_BIN) { why = 'run it with meson test'; return; }
    dir = lib.tmpdir();
    const noNs = await h.probe(dir);
    if (noNs) { why = noNs; return; }
    snapBefore = rcl.snapshot();
    h.init(dir);
    for (const c of USED) {
        try { await h.prepare(c); } catch (e) { missing[c] = e.message; }
    }
    port = await freePort();   // nothing listens there until the second test
    state = path.join(dir, 'state');
    cfg = lib.writeConfig(dir, {
        servers: [{ name: 'local', host: '127.0.0.1', port, transport: 'plain',
            sender: { address: 'app@example.test', name: 'App' } }],
        queue: { retry_s: 1 },
        log_file: path.join(dir, 'mail.log'),
    });
    h.writeWrapper({ MAILCONN_CONFIG: cfg, MAILCONN_STATE_DIR: state, MAILCONN_TEST_QUEUE_NO_RUNNER: '1' });
});

test.after(() => lib.stopAll());

/** Run a client; assert it and its one sendmail call exit 0. */
async function submit(t, client, rcpts, run) {
    const seen = new Set(h.calls().map((c) => c.id));
    const r = await run();
    const fresh = () => h.calls().filter((c) => !seen.has(c.id));
    const detail = () => JSON.stringify({ client: { code: r.code, stderr: r.stderr }, calls: fresh() }, null, 1);
    assert.equal(r.code, 0, `${client} exit code: ${detail()}`);
    await lib.waitFor(() => fresh().some((c) => c.rc !== ''), 20000, 50, `a sendmail call: ${detail()}`);
    assert.equal(fresh().length, 1, detail());
    t.diagnostic(`argv: sendmail ${JSON.stringify(fresh()[0].argv)}`);
    assert.equal(fresh()[0].rc, '0', `sendmail (mailconn) exit code with the server down: ${detail()}`);
    sent.push({ client, rcpts });
}

test('server down: every client exits 0, `queue list` shows each message with its reason', async (t) => {
    if (why) { t.skip(why); return; }
    const ns = (cmd, opts) => lib.run('unshare', h.nsArgs(cmd), Object.assign({ env: h.clientEnv() }, opts));
    const root = h.root;
    if (missing.mailx) t.diagnostic(`bsd-mailx cannot run here: ${missing.mailx}`);
    else {
        // one permanently refused recipient among good ones
        await submit(t, 'mailx', ['mailx@example.test', 'bad@example.test'], () => ns([
            path.join(root, 'usr/bin/bsd-mailx'), '-s', 'queued mailx', 'mailx@example.test', 'bad@example.test'],
        { input: 'mailx body\n' }));
    }
    if (missing.snail) t.diagnostic(`s-nail cannot run here: ${missing.snail}`);
    else {
        await submit(t, 'snail', ['snail@example.test'], () => ns([path.join(root, 'usr/bin/s-nail'), '-:/',
            '-Sttycharset=utf-8', '-s', 'queued snail', 'snail@example.test'], { input: 's-nail body\n' }));
    }
    if (missing.mutt) t.diagnostic(`mutt cannot run here: ${missing.mutt}`);
    else {
        const rc = path.join(dir, 'muttrc');
        fs.writeFileSync(rc, 'set from="Mutt User <mutt@example.test>"\nset use_from=yes\n' +
            `set record=""\nset copy=no\nset folder=${dir}/Mail\nset spoolfile=${dir}/Mail/inbox\n`);
        await submit(t, 'mutt', ['mutt-to@example.test'], () => ns([path.join(root, 'usr/bin/mutt'), '-n',
            '-F', rc, '-s', 'queued mutt', '--', 'mutt-to@example.test'], { input: 'mutt body\n' }));
    }
    if (missing.php) t.diagnostic(`php-cli cannot run here: ${missing.php}`);
    else {
        const php = fs.readdirSync(path.join(root, 'usr/bin')).find((f) => /^php\d/.test(f));
        await submit(t, 'php', ['php@example.test'], () => ns([path.join(root, 'usr/bin', php), '-n', '-r',
            'exit(mail("php@example.test", "queued php", "php body\\n") ? 0 : 1);']));
    }
    const gitv = await lib.run('git', ['--version']).catch(() => ({ code: -1 }));
    if (missing.git || gitv.code !== 0) t.diagnostic(`git send-email cannot run here: ${missing.git || 'no git'}`);
    else {
        const { repo, patch } = await rcl.gitPatch(dir, 'change f', 'queued');
        await submit(t, 'git', ['git@example.test'], () => ns(['perl',
            path.join(root, 'usr/lib/git-core/git-send-email'), '--confirm=never', '--suppress-cc=all',
            '--to', 'git@example.test', patch], { cwd: repo, env: h.clientEnv({ GIT_CONFIG_NOSYSTEM: '1' }) }));
    }
    if (missing.cron) t.diagnostic(`cron cannot run here: ${missing.cron}`);
    else {
        // as in test-real-clients.js: a private /etc (cron's PAM file), an
        // /etc/cron.d with only this job, an empty spool and /run (no
        // crond.reboot, so @reboot runs at start); cron is stopped by its PID
        const job = path.join(dir, 'cronjob');
        fs.writeFileSync(job, 'MAILTO=cron-a@example.test,cron-b@example.test\n' +
            '@reboot root echo "hi from cron"\n');
        const etcUpper = path.join(dir, 'etc-upper');
        const etcWork = path.join(dir, 'etc-work');
        fs.mkdirSync(etcUpper, { recursive: true });
        fs.mkdirSync(etcWork, { recursive: true });
        const extra = `mount -t overlay overlay -o lowerdir=/etc,upperdir=${etcUpper},workdir=${etcWork} /etc; ` +
            `cp ${path.join(root, 'etc/pam.d/cron')} /etc/pam.d/cron; mkdir -p /etc/cron.d; ` +
            `mount -t tmpfs -o mode=755 tmpfs /etc/cron.d; cp ${job} /etc/cron.d/mailconn-test; ` +
            'chmod 644 /etc/cron.d/mailconn-test; mount -t tmpfs -o mode=755 tmpfs /var/spool; ' +
            'mkdir -p /var/spool/cron/crontabs; chmod 1730 /var/spool/cron/crontabs; ' +
            'mount -t tmpfs -o mode=755 tmpfs /run;';
        const { spawn } = require('node:child_process');
        const cron = spawn('unshare', h.nsArgs([path.join(root, 'usr/sbin/cron'), '-f', '-L', '15'], extra),
            { env: h.clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        let cronErr = '';
        cron.stderr.on('data', (d) => { cronErr += d; });
        const exited = new Promise((resolve) => cron.once('exit', resolve));
        try {
            // cron has no exit of its own to wait for: its one sendmail call
            await submit(t, 'cron', ['cron-a@example.test', 'cron-b@example.test'],
                async () => ({ code: 0, stderr: cronErr }));
        } finally {
            cron.kill('SIGTERM');
            const timer = setTimeout(() => cron.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
        }
    }
    if (fs.existsSync('/usr/bin/python3')) {
        const py = 'import subprocess, sys\nfrom email.message import EmailMessage\n' +
            'm = EmailMessage()\nm["To"] = "python@example.test"\nm["Subject"] = "queued python"\n' +
            'm.set_content("python body\\n")\n' +
            'sys.exit(subprocess.run(["/usr/sbin/sendmail", "-t", "-i"], input=m.as_bytes()).returncode)\n';
        await submit(t, 'python', ['python@example.test'], () => lib.run('unshare',
            h.nsArgs(['/usr/bin/python3', '-c', py]), { env: { HOME: path.join(dir, 'home'), LC_ALL: 'C.UTF-8' } }));
    }
    assert.ok(sent.length >= 2, `too few clients could run: ${JSON.stringify(missing)}`);

    // a try with the server still down records the reason
    const run = await cli(['queue', 'run']);
    assert.equal(run.code, 0, run.stderr);
    const list = await cli(['queue', 'list']);
    assert.equal(list.code, 0, list.stderr);
    t.diagnostic(list.stdout);
    const ids = list.stdout.split('\n').map((l) => ID_RE.exec(l)).filter(Boolean);
    assert.equal(ids.length, sent.length, 'one queued message per client');
    const reasons = list.stdout.match(/^\(connect: 127\.0\.0\.1:\d+: connection refused\)$/mg) || [];
    assert.equal(reasons.length, sent.length, 'each with its reason');
    for (const s of sent) for (const r of s.rcpts)
        assert.match(list.stdout, new RegExp(`^\\s+${r.replace(/\./g, '\\.')}$`, 'm'), `${s.client}: ${r} listed`);
    assert.match(list.stdout, new RegExp(`-- \\d+ Kbytes in ${sent.length} Requests\\.`));
});

test('server up: `queue run` delivers each message exactly once; the refused recipient gets ' +
     'one failure notice to the envelope sender, the others their message', async (t) => {
    if (why) { t.skip(why); return; }
    assert.ok(sent.length >= 2, 'the first test queued the messages');
    const peer = await lib.startPeer({ port, t, rejectRcpt: 'bad@example.test' });
    const expected = sent.length + (sent.some((s) => s.client === 'mailx') ? 1 : 0);   // + the notice
    await lib.waitFor(async () => {
        const r = await cli(['queue', 'run']);
        assert.equal(r.code, 0, r.stderr);
        return lib.messageCount(peer.out) >= expected;
    }, 30000, 200, 'delivery by queue run');
    for (let i = 0; i < 3; i++)
        assert.equal((await cli(['queue', 'flush'])).code, 0);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, expected, 'each message once, and one notice');
    for (const s of sent) {
        const good = s.rcpts.filter((r) => r !== 'bad@example.test');
        const subject = { git: '[queued] change f', cron: /^Cron <root@[^>]+> echo "hi from cron"$/ }[s.client]
            || `queued ${s.client}`;
        const got = msgs.filter((m) => (subject instanceof RegExp ? subject.test(m.subject) : m.subject === subject));
        assert.equal(got.length, 1, `${s.client}: delivered exactly once`);
        assert.deepEqual([...got[0].meta.rcptTo].sort(), good.sort(), `${s.client}: envelope recipients`);
        assert.match(got[0].raw.toString(), /^Received: from root by \S+ \(mailconn\) id [0-9A-F]{21};/m);
    }
    const mailx = msgs.find((m) => m.subject === 'queued mailx');
    if (mailx) {
        const notices = msgs.filter((m) => /auto-replied/i.test(String(m.headers['auto-submitted'] || '')));
        assert.equal(notices.length, 1, 'one failure notice');
        assert.deepEqual(notices[0].meta.rcptTo, [mailx.meta.mailFrom], 'to the envelope sender');
        assert.match(notices[0].raw.toString(), /bad@example\.test/);
        assert.match(notices[0].raw.toString(), /550/);
    }
    const empty = await cli(['queue', 'list']);
    assert.equal(empty.stdout, 'Mail queue is empty\n');
});

test('max_age_s expiry: one notice and an empty queue; -N never (mutt dsn_notify=never): no notice',
    async (t) => {
        if (why) { t.skip(why); return; }
        if (missing.mailx || missing.mutt) { t.skip(`needs bsd-mailx and mutt: ${JSON.stringify(missing)}`); return; }
        await lib.stopAll();
        const peer = await lib.startPeer({ port, t });
        // the messages are recorded as submitted at 1000 (Unix time): past max_age_s
        h.writeWrapper({ MAILCONN_CONFIG: cfg, MAILCONN_STATE_DIR: state, MAILCONN_TEST_QUEUE_NO_RUNNER: '1',
            MAILCONN_TEST_QUEUE_SUBMITTED: '1000' });
        const ns = (cmd, opts) => lib.run('unshare', h.nsArgs(cmd), Object.assign({ env: h.clientEnv() }, opts));
        await submit(t, 'mailx-old', ['old@example.test'], () => ns([path.join(h.root, 'usr/bin/bsd-mailx'),
            '-s', 'expired mailx', 'old@example.test'], { input: 'old body\n' }));
        const rc = path.join(dir, 'muttrc-never');
        fs.writeFileSync(rc, 'set dsn_notify="never"\nset from="Mutt User <mutt@example.test>"\nset use_from=yes\n' +
            `set record=""\nset copy=no\nset folder=${dir}/Mail\nset spoolfile=${dir}/Mail/inbox\n`);
        const seen = new Set(h.calls().map((c) => c.id));
        await submit(t, 'mutt-never', ['never@example.test'], () => ns([path.join(h.root, 'usr/bin/mutt'), '-n',
            '-F', rc, '-s', 'expired mutt', '--', 'never@example.test'], { input: 'never body\n' }));
        const call = h.calls().find((c) => !seen.has(c.id));
        assert.ok(call.argv.join(' ').includes('-N never'), `mutt passed -N never: ${call.argv}`);
        await lib.waitFor(async () => {
            const r = await cli(['queue', 'run']);
            assert.equal(r.code, 0, r.stderr);
            return lib.messageCount(peer.out) >= 1;
        }, 30000, 200, 'the expiry notice');
        for (let i = 0; i < 3; i++)
            assert.equal((await cli(['queue', 'flush'])).code, 0);
        const msgs = await lib.readMessages(peer.out);
        assert.equal(msgs.length, 1, `only the one notice: ${msgs.map((m) => m.subject)}`);
        assert.match(String(msgs[0].headers['auto-submitted'] || ''), /auto-replied/i);
        assert.deepEqual(msgs[0].meta.rcptTo, ['app@example.test'], 'to mailx\'s envelope sender');
        assert.match(msgs[0].raw.toString(), /old@example\.test/);
        assert.doesNotMatch(msgs[0].raw.toString(), /never@example\.test/);
        const empty = await cli(['queue', 'list']);
        assert.equal(empty.stdout, 'Mail queue is empty\n');
    });

test("the machine's /usr/sbin, /etc, /etc/cron.d, /var/spool and /run are untouched", (t) => {
    if (why) { t.skip(why); return; }
    assert.equal(rcl.snapshot(), snapBefore);
});
