// sendmail compatibility with real clients (issue 12, acceptance 2; DESIGN.md
// "System mail: sendmail and the queue"). Debian's own packages of
// bsd-mailx, s-nail, mutt, git send-email (git-email) and php-cli, the
// system's Python and Debian's cron daemon each hand a message to
// /usr/sbin/sendmail, which is mailconn; the npm smtp-server
// (tests/peers/smtp-peer.js, with DSN on) must receive it intact: envelope,
// headers, From rewriting, non-ASCII subject, attachment sha256, no Bcc.
//
// No MTA is installed: the packages (and those of their Depends that this
// machine lacks, never default-mta or mail-transport-agent) are fetched with
// `apt-get download` into the build tree's real-clients-cache (kept between
// runs) and unpacked with `dpkg -x` into a private folder; the clients run
// from there with LD_LIBRARY_PATH/PERL5LIB. Each runs inside a private mount
// namespace (unshare) with an overlay on /usr/sbin whose upper layer holds
// /usr/sbin/sendmail: a wrapper that records its argv, stdin and stderr and
// then runs mailconn as `sendmail`. cron also gets overlays/tmpfs on /etc,
// /etc/cron.d, /var/spool and /run there. The machine's /usr/sbin, /etc,
// /var/spool and /run are compared before and after.
//
// Needs root, unshare(1) and overlayfs, and the Debian archive (or a filled
// cache); a client that cannot run here is skipped with the reason, never
// passed. Normal build only (meson registers it only without sanitizers).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const BUILD = process.env.MAILCONN_BUILD_ROOT;
const rcl = require('./real-clients-lib');   // the shared harness (also test-real-clients-queue.js)

const { CLIENTS, snapshot } = rcl;
const h = rcl.harness(BUILD);
const nsArgs = h.nsArgs;
const clientEnv = h.clientEnv;
const calls = h.calls;

let peer, dir, root, wrapperLog, att, attSha, why = null;
const missing = {};   // client -> why it cannot run
const prepared = {};  // client -> the packages unpacked for it
let snapBefore;

/** Run the client, wait (bounded) for its one sendmail call and message,
 *  print the argv, and return {call, m}. */
async function deliver(t, run, timeoutMs = 20000) {
    const seen = new Set(calls().map((c) => c.id));
    const before = lib.messageCount(peer.out);
    const r = await run();
    const fresh = () => calls().filter((c) => !seen.has(c.id));
    const detail = () => JSON.stringify({ client: r && { code: r.code, stderr: r.stderr },
        calls: fresh().map((c) => Object.assign({}, c, { stdin: c.stdin.slice(0, 1200) })) }, null, 1);
    if (r && r.code !== 0) {
        for (const c of fresh()) t.diagnostic(`argv: sendmail ${JSON.stringify(c.argv)}`);
        assert.fail(`the client failed (exit ${r.code}): ${detail()}`);
    }
    await lib.waitFor(() => fresh().some((c) => c.rc !== ''), timeoutMs, 50, `a sendmail call: ${detail()}`);
    const [call] = fresh();
    t.diagnostic(`argv: sendmail ${JSON.stringify(call.argv)}`);
    assert.equal(fresh().length, 1, `one sendmail call: ${detail()}`);
    assert.equal(call.rc, '0', `sendmail (mailconn) exit code: ${detail()}`);
    await lib.waitFor(() => lib.messageCount(peer.out) === before + 1, 10000, 50, 'the message at the peer');
    const m = (await lib.readMessages(peer.out)).pop();
    return { call, m };
}

/** What every delivered message must show. */
function common(m, e) {
    assert.equal(m.meta.mailFrom, e.mailFrom || 'app@example.test', 'envelope sender');
    assert.deepEqual([...m.meta.rcptTo].sort(), e.rcpt, 'envelope recipients');
    if (e.subject instanceof RegExp) assert.match(m.subject, e.subject);
    else assert.equal(m.subject, e.subject, 'Subject');
    assert.equal(m.from.length, 1, 'one From: address');
    assert.equal(m.from[0].address, e.fromAddr || 'app@example.test', 'From: address');
    if (e.fromName !== undefined) assert.equal(m.from[0].name, e.fromName, 'From: name');
    assert.ok(m.text.includes(e.text), `body text: ${JSON.stringify(m.text)}`);
    const raw = m.raw.toString('latin1');
    assert.ok(!/^bcc:/im.test(raw.split('\r\n\r\n')[0]), 'a Bcc: header arrived');
    if (e.hidden) assert.ok(!raw.includes(e.hidden), `the Bcc recipient ${e.hidden} is in the message`);
    if (e.attachment) {
        assert.equal(m.attachments.length, 1, 'one attachment');
        assert.equal(m.attachments[0].filename, 'att.bin');
        assert.equal(m.attachments[0].sha256, attSha, 'attachment sha256');
    }
    assert.ok(m.headers['message-id'] && m.headers.date, 'Message-ID and Date');
    assert.ok(!/[^\r]\n/.test(raw), 'a bare LF');
    if (!e.dsn) {
        assert.ok(!m.meta.dsn || (!m.meta.dsn.ret && !m.meta.dsn.envid), 'RET/ENVID not asked');
        for (const d of m.meta.rcptDsn || []) assert.ok(!d || !d.notify, 'NOTIFY not asked');
    }
}

test.before(async () => {
    if (process.getuid() !== 0) { why = 'needs root (unshare -m, mount)'; return; }
    if (!BUILD || !process.env.MAILCONN_BIN) { why = 'run it with meson test'; return; }
    dir = lib.tmpdir();
    const noNs = await h.probe(dir);
    if (noNs) { why = noNs; return; }
    snapBefore = snapshot();

    h.init(dir);
    root = h.root;
    wrapperLog = h.wrapperLog;
    for (const c of Object.keys(CLIENTS)) {
        try { prepared[c] = await h.prepare(c); } catch (e) { missing[c] = e.message; }
    }

    peer = await lib.startPeer({ extraArgs: ['--dsn'] });
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'local', host: peer.host, port: peer.port,
        transport: 'plain', sender: { address: 'app@example.test', name: 'App' } }] });
    att = path.join(dir, 'att.bin');
    const bytes = Buffer.alloc(5000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 8)) & 0xff;   // binary, fixed
    fs.writeFileSync(att, bytes);
    attSha = lib.sha256(bytes);
    h.writeWrapper({ MAILCONN_CONFIG: cfg });
});

test.after(() => lib.stopAll());

function skipIf(t, client) {
    if (why) { t.skip(why); return true; }
    if (client && missing[client]) { t.skip(`${client} cannot run here: ${missing[client]}`); return true; }
    if (client) t.diagnostic(`unpacked with dpkg -x: ${prepared[client].join(' ') || '(all installed)'}`);
    return false;
}

test('bsd-mailx: mail -s SUBJECT -b BCC addr', async (t) => {
    if (skipIf(t, 'mailx')) return;
    const { m } = await deliver(t, () => lib.run('unshare', nsArgs([path.join(root, 'usr/bin/bsd-mailx'),
        '-s', 'Grüße mailx', '-b', 'hidden@example.test', 'a@example.test']),
    { env: clientEnv(), input: 'mailx body\n' }));
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: 'Grüße mailx', fromName: 'App',
        text: 'mailx body', hidden: 'hidden@example.test' });
});

test('s-nail: -s SUBJECT -a FILE -b BCC addr', async (t) => {
    if (skipIf(t, 'snail')) return;
    const { m } = await deliver(t, () => lib.run('unshare', nsArgs([path.join(root, 'usr/bin/s-nail'), '-:/',
        '-Sttycharset=utf-8', '-s', 'Grüße s-nail', '-a', att, '-b', 'hidden@example.test', 'a@example.test']),
    { env: clientEnv(), input: 's-nail body\n' }));
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: 'Grüße s-nail', fromName: 'App',
        text: 's-nail body', hidden: 'hidden@example.test', attachment: true });
});

test('mutt in batch mode with dsn_notify/dsn_return and an attachment', async (t) => {
    if (skipIf(t, 'mutt')) return;
    const rc = path.join(dir, 'muttrc');
    fs.writeFileSync(rc, 'set dsn_notify="failure,delay"\nset dsn_return=hdrs\nset charset=utf-8\n' +
        'set send_charset=utf-8\nset from="Mutt User <mutt@example.test>"\nset use_from=yes\n' +
        `set record=""\nset copy=no\nset folder=${dir}/Mail\nset spoolfile=${dir}/Mail/inbox\n`);
    const { call, m } = await deliver(t, () => lib.run('unshare', nsArgs([path.join(root, 'usr/bin/mutt'), '-n',
        '-F', rc, '-s', 'Grüße mutt', '-a', att, '-b', 'hidden@example.test', '--', 'a@example.test']),
    { env: clientEnv(), input: 'mutt body ü\n' }));
    assert.ok(call.argv.includes('-N') && call.argv.includes('-R'), 'mutt passed -N and -R');
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: 'Grüße mutt', fromAddr: 'mutt@example.test',
        fromName: 'Mutt User', text: 'mutt body ü', hidden: 'hidden@example.test', attachment: true, dsn: true });
    // the DSN request reached the wire (RFC 3461): RET on MAIL, NOTIFY on RCPT
    assert.equal(m.meta.dsn && m.meta.dsn.ret, 'HDRS');
    for (const d of m.meta.rcptDsn) assert.deepEqual(d.notify, ['FAILURE', 'DELAY']);
});

test('git send-email with sendemail.smtpserver=/usr/sbin/sendmail', async (t) => {
    if (skipIf(t, 'git')) return;
    const gitv = await lib.run('git', ['--version']).catch(() => ({ code: -1 }));
    if (gitv.code !== 0) { t.skip('git send-email cannot run here: no git on this machine'); return; }
    const { repo, patch } = await rcl.gitPatch(dir, 'Grüße: change f');
    const { m } = await deliver(t, () => lib.run('unshare', nsArgs(['perl',
        path.join(root, 'usr/lib/git-core/git-send-email'), '--confirm=never', '--suppress-cc=all',
        '--to', 'a@example.test', '--bcc', 'hidden@example.test', patch]),
    { cwd: repo, env: clientEnv({ GIT_CONFIG_NOSYSTEM: '1' }) }));
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: '[PATCH] Grüße: change f',
        fromAddr: 'dev@example.test', fromName: 'Dev Eloper', text: '+b', hidden: 'hidden@example.test' });
});

test('php-cli mail() with the default sendmail_path (sendmail -t -i) and a Bcc header', async (t) => {
    if (skipIf(t, 'php')) return;
    const php = fs.readdirSync(path.join(root, 'usr/bin')).find((f) => /^php\d/.test(f));
    const { m } = await deliver(t, () => lib.run('unshare', nsArgs([path.join(root, 'usr/bin', php), '-n', '-r',
        'exit(mail("a@example.test", "Grüße php", "php body\\n", "Bcc: hidden@example.test") ? 0 : 1);']),
    { env: clientEnv() }));
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: 'Grüße php', fromName: 'App',
        text: 'php body', hidden: 'hidden@example.test' });
});

test('Python email + /usr/sbin/sendmail -t -i: From: root is rewritten, attachment, Bcc', async (t) => {
    if (skipIf(t)) return;
    if (!fs.existsSync('/usr/bin/python3')) { t.skip('Python cannot run here: no /usr/bin/python3'); return; }
    const py = 'import subprocess, sys\nfrom email.message import EmailMessage\n' +
        'm = EmailMessage()\nm["From"] = "root"\nm["To"] = "a@example.test"\nm["Bcc"] = "hidden@example.test"\n' +
        'm["Subject"] = "Grüße python"\nm.set_content("python body\\n")\n' +
        'm.add_attachment(open(sys.argv[1], "rb").read(), maintype="application", subtype="octet-stream",' +
        ' filename="att.bin")\n' +
        'sys.exit(subprocess.run(["/usr/sbin/sendmail", "-t", "-i"], input=m.as_bytes()).returncode)\n';
    const { m } = await deliver(t, () => lib.run('unshare', nsArgs(['/usr/bin/python3', '-c', py, att]),
        { env: { HOME: path.join(dir, 'home'), LC_ALL: 'C.UTF-8' } }));
    common(m, { rcpt: ['a@example.test', 'hidden@example.test'], subject: 'Grüße python',
        text: 'python body', hidden: 'hidden@example.test', attachment: true });
    assert.ok(!/^From: root\r?$/im.test(m.raw.toString('latin1')), 'From: root arrived');
    t.diagnostic(`From: ${m.fromText}`);
});

test("Debian's cron daemon: an @reboot job as root with MAILTO=a@x,b@y", async (t) => {
    if (skipIf(t, 'cron')) return;
    const job = path.join(dir, 'cronjob');
    fs.writeFileSync(job, 'MAILTO=a@example.test,b@example.test\n@reboot root echo "hi from cron"\n');
    const etcUpper = path.join(dir, 'etc-upper');
    const etcWork = path.join(dir, 'etc-work');
    fs.mkdirSync(etcUpper);
    fs.mkdirSync(etcWork);
    // private /etc (overlay: cron's PAM file), /etc/cron.d with only our job,
    // an empty spool and /run (cron.pid; no crond.reboot, so @reboot runs)
    const extra = `mount -t overlay overlay -o lowerdir=/etc,upperdir=${etcUpper},workdir=${etcWork} /etc; ` +
        `cp ${path.join(root, 'etc/pam.d/cron')} /etc/pam.d/cron; mkdir -p /etc/cron.d; ` +
        `mount -t tmpfs -o mode=755 tmpfs /etc/cron.d; cp ${job} /etc/cron.d/mailconn-test; ` +
        'chmod 644 /etc/cron.d/mailconn-test; mount -t tmpfs -o mode=755 tmpfs /var/spool; ' +
        'mkdir -p /var/spool/cron/crontabs; chmod 1730 /var/spool/cron/crontabs; ' +
        'mount -t tmpfs -o mode=755 tmpfs /run;';
    const { spawn } = require('node:child_process');
    // unshare and sh exec: the PID is cron's, stopped by it below
    const cron = spawn('unshare', nsArgs([path.join(root, 'usr/sbin/cron'), '-f', '-L', '15'], extra),
        { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let cronErr = '';
    cron.stderr.on('data', (d) => { cronErr += d; });
    const exited = new Promise((resolve) => cron.once('exit', resolve));
    try {
        const { m } = await deliver(t, async () => null, 30000).catch((e) => {
            throw new Error(`${e.message}\ncron: ${cronErr}`);
        });
        common(m, { rcpt: ['a@example.test', 'b@example.test'], subject: /^Cron <root@[^>]+> echo "hi from cron"$/,
            fromName: 'Cron Daemon', text: 'hi from cron' });
        assert.equal(m.headers.to.text, 'a@example.test, b@example.test');
    } finally {
        cron.kill('SIGTERM');
        const timer = setTimeout(() => cron.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
    }
});

// last: nothing of this run is left on the machine (run after every client)
test("the machine's /usr/sbin, /etc, /etc/cron.d, /var/spool and /run are untouched", (t) => {
    if (skipIf(t)) return;
    assert.equal(snapshot(), snapBefore);
    assert.ok(!fs.existsSync('/usr/sbin/sendmail') || !fs.readFileSync('/usr/sbin/sendmail').includes(wrapperLog),
        'the wrapper is in /usr/sbin');
});
