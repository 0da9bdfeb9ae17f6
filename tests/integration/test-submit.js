// The setgid submission helper mailconn-submit (issue 13, acceptance 3;
// DESIGN.md "System mail: sendmail and the queue"): a process of `nobody`
// queues mail through it while the system config and its secret are 0600
// root; root's `mailconn queue run` takes the drop folder's files into the
// queue and delivers them to the npm smtp-server (tests/peers/smtp-peer.js)
// with a Received: line naming the submitting user. The helper takes no
// path, config or environment from its caller; another user can neither
// read nor remove queued mail; the runner refuses drop files that lie about
// their owner or are links.
//
// Needs root, unshare(1), setpriv(1), groupadd(8) and overlayfs. The test
// runs itself again inside a private mount namespace (unshare --mount), in
// which:
//  - /etc is an overlay (upper layer in the test's folder): groupadd creates
//    the group mailconn-submit there, and /etc/mailconn/config.json (0600
//    root) is the system config, as installed;
//  - /var/spool is a tmpfs: the build's spooldir (the default
//    /var/spool/mailconn, built in, as installed) exists only there, set up
//    by the install script submit/install-helper.sh itself;
//  - the helper, copied to a 0755 scratch folder, chgrp mailconn-submit and
//    chmod 2755 by the install script, is bind-mounted over the build
//    tree's, so the build tree's `mailconn sendmail` (which runs the build's
//    helper, as it finds plugins) runs the setgid one.
// Nothing of it is visible outside: the outer process checks that the group
// and the spool folder do not exist on the machine afterwards.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');

const BUILD = process.env.MAILCONN_BUILD_ROOT;
const SPOOL = '/var/spool/mailconn';
const HELPER = path.join(BUILD || '/nonexistent', 'submit', 'mailconn-submit');
const INSTALL = path.join(process.env.MAILCONN_SOURCE_ROOT || '/nonexistent', 'submit',
    'install-helper.sh');

function which(p) {
    const r = spawnSync('sh', ['-c', `command -v ${p}`], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
}

function whyNot() {
    if (process.getuid() !== 0) return 'needs root (setpriv, groupadd, mounts)';
    for (const p of ['unshare', 'setpriv', 'groupadd', 'mount'])
        if (!which(p)) return `${p} is not installed`;
    if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('overlay'))
        return 'no overlayfs in this kernel';
    if (!BUILD || !fs.existsSync(HELPER)) return 'no build tree (run with meson test)';
    return null;
}

if (!process.env.MAILCONN_SUBMIT_INNER) {
    // ---- outside: run the tests in a private mount namespace, then check
    // the machine was not touched
    const why = whyNot();
    test('mailconn-submit: any user queues through the setgid helper', { skip: why || false }, () => {
        const groupBefore = fs.readFileSync('/etc/group', 'utf8');
        assert.equal(/^mailconn-submit:/m.test(groupBefore), false,
            'the group mailconn-submit already exists on this machine');
        const r = spawnSync('unshare', ['--mount', '--propagation', 'private', process.execPath,
            __filename], {
            env: Object.assign({}, process.env, { MAILCONN_SUBMIT_INNER: '1' }),
            stdio: ['ignore', 'pipe', 'pipe'], timeout: 170000, encoding: 'utf8',
        });
        process.stderr.write(r.stdout + r.stderr);
        assert.equal(r.error, undefined, String(r.error));
        assert.equal(r.status, 0, 'the tests inside the namespace failed (output above)');
        assert.match(r.stdout, /^# pass [1-9]/m);
        assert.match(r.stdout, /^# fail 0$/m);
        // nothing leaked out of the namespace
        assert.equal(fs.readFileSync('/etc/group', 'utf8'), groupBefore);
        assert.equal(fs.existsSync(SPOOL), false, `${SPOOL} exists on the machine`);
        assert.equal(fs.existsSync('/etc/mailconn'), false, '/etc/mailconn exists on the machine');
        assert.equal(fs.statSync(HELPER).mode & 0o7000, 0, 'the build tree\'s helper became setgid');
    });
    return;
}

// ---- inside the private mount namespace ---------------------------------

const lib = require('../peers/lib');

const NOBODY = 65534;
const OTHER = 65533;      // another user: no account needed for setpriv
let dir, peer, gid, scratch;
const MSG = 'From: Nobody <nobody@example.test>\nSubject: from nobody\n\nsent by nobody\n';

function sh(cmd, args) {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// LeakSanitizer cannot run in a setgid process (not dumpable): a sanitized
// helper turns it off itself when setgid (__asan_default_options); its leaks
// are checked by the plain run of the last test.

/** Run bin as uid (gid the same; groups: none, or extra) with only the
 *  environment given (lib.run adds process.env: replaced here). */
function runAs(uid, bin, args, opts = {}) {
    const pre = ['--reuid=' + uid, '--regid=' + uid];
    pre.push(opts.groups ? '--groups=' + opts.groups.join(',') : '--clear-groups');
    const env = Object.assign({ PATH: '/usr/bin:/bin', HOME: '/nonexistent' }, opts.env || {});
    return lib.run('env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        'setpriv', ...pre, '--', bin, ...args], { input: opts.input, timeoutMs: 30000, cwd: '/' });
}

function dropFiles() {
    return fs.readdirSync(path.join(SPOOL, 'drop')).sort();
}

function queued() {
    try {
        return fs.readdirSync(path.join(SPOOL, 'queue')).filter((f) => /^[0-9A-F]{21}$/.test(f)).sort();
    } catch (_) { return []; }
}

function runner(args = ['queue', 'run']) {
    return lib.runCli(args, { env: { MAILCONN_STATE_DIR: path.join(dir, 'state') }, timeoutMs: 60000 });
}

function log() {
    try { return fs.readFileSync(path.join(dir, 'mail.log'), 'utf8'); } catch (_) { return ''; }
}

test.before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailconn-submit-'));
    fs.chmodSync(dir, 0o755);
    // /etc: an overlay, so groupadd and /etc/mailconn stay in here
    for (const d of ['etc-up', 'etc-work']) fs.mkdirSync(path.join(dir, d));
    sh('mount', ['-t', 'overlay', 'overlay', '-o',
        `lowerdir=/etc,upperdir=${dir}/etc-up,workdir=${dir}/etc-work`, '/etc']);
    sh('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', '/var/spool']);
    // the helper as installed: staged, then set up by the install script
    scratch = path.join(dir, 'bin');
    fs.mkdirSync(scratch, { mode: 0o755 });
    fs.chmodSync(scratch, 0o755);
    const staged = path.join(scratch, 'mailconn-submit');
    fs.copyFileSync(HELPER, staged);
    const inst = spawnSync('sh', [INSTALL, staged, SPOOL], { encoding: 'utf8', env: Object.assign({},
        process.env, { DESTDIR: '' }) });
    assert.equal(inst.status, 0, inst.stderr);
    gid = Number(sh('getent', ['group', 'mailconn-submit']).split(':')[2]);
    sh('mount', ['--bind', staged, HELPER]);

    peer = await lib.startPeer({ users: { relay: 'Secret-Pw-123' }, allowInsecureAuth: true });
    fs.mkdirSync('/etc/mailconn', { mode: 0o755 });
    fs.writeFileSync('/etc/mailconn/secret', 'Secret-Pw-123\n', { mode: 0o600 });
    lib.writeConfig('/etc/mailconn', {
        servers: [{ name: 'local', host: '127.0.0.1', port: peer.port, transport: 'plain',
            allow_plaintext_auth: true,
            auth: { provider: 'basic', user: 'relay', password_file: '/etc/mailconn/secret' },
            sender: { address: 'app@example.test' } }],
        queue: { retry_s: 1 },
        log_file: path.join(dir, 'mail.log'),
    });
});

test.after(async () => {
    await lib.stopAll();
    try { sh('umount', [HELPER]); } catch (_) { /* the namespace goes anyway */ }
    try { sh('umount', ['/var/spool']); } catch (_) { /* idem */ }
    try { sh('umount', ['/etc']); } catch (_) { /* idem */ }
    fs.rmSync(dir, { recursive: true, force: true });
});

test('the install script: group, setgid helper, drop 1730 root:mailconn-submit, queue 0700', () => {
    const st = fs.statSync(HELPER);
    assert.equal(st.mode & 0o7777, 0o2755);
    assert.equal(st.gid, gid);
    const drop = fs.statSync(path.join(SPOOL, 'drop'));
    assert.equal(drop.mode & 0o7777, 0o1730);
    assert.equal(drop.uid, 0);
    assert.equal(drop.gid, gid);
    const q = fs.statSync(path.join(SPOOL, 'queue'));
    assert.equal(q.mode & 0o7777, 0o700);
    assert.equal(q.uid, 0);
    assert.equal(fs.statSync('/etc/mailconn/config.json').mode & 0o777, 0o600);
    assert.equal(fs.statSync('/etc/mailconn/secret').mode & 0o777, 0o600);
});

test('nobody: `mailconn sendmail` queues through the helper (config and secret 0600 root); ' +
     'root\'s queue run delivers it, Received: names nobody', async () => {
    // nobody cannot read the config: the CLI alone would fail with 78
    const cat = await runAs(NOBODY, '/bin/cat', ['/etc/mailconn/config.json']);
    assert.notEqual(cat.code, 0);
    const r = await runAs(NOBODY, process.env.MAILCONN_BIN,
        ['sendmail', '-f', 'nobody@example.test', 'a@example.test'], { input: MSG });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    const files = dropFiles();
    assert.equal(files.length, 1);
    assert.match(files[0], /^d\.[0-9a-f]{16}$/);
    const st = fs.statSync(path.join(SPOOL, 'drop', files[0]));
    assert.equal(st.uid, NOBODY, 'the drop file is the submitter\'s');
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(lib.messageCount(peer.out), 0, 'nothing sent by the helper itself');

    const before = lib.messageCount(peer.out);
    const run = await runner();
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(dropFiles(), [], 'the runner took the drop file');
    assert.equal(lib.messageCount(peer.out), before + 1);
    const msgs = await lib.readMessages(peer.out);
    const m = msgs[msgs.length - 1];
    assert.equal(m.meta.user, 'relay');
    assert.equal(m.meta.mailFrom, 'nobody@example.test');
    assert.deepEqual(m.meta.rcptTo, ['a@example.test']);
    assert.equal(m.subject, 'from nobody');
    assert.match(m.raw.toString(), /^Received: from nobody by \S+ \(mailconn\) id [0-9A-F]{21};\r\n\t\w{3}, /m);
    assert.match(log(), /queue id=[0-9A-F]{21} event=queued uid=65534 user=nobody from=<nobody@example.test>/);
    assert.deepEqual(queued(), []);
});

test('the helper takes no path, config, queue folder or environment from its caller', async () => {
    const evil = path.join(dir, 'evil');
    fs.mkdirSync(evil, { mode: 0o777 });
    fs.chmodSync(evil, 0o777);
    fs.writeFileSync(path.join(evil, 'config.json'), '{"servers": [], "queue": {"dir": "' + evil + '/q"}}',
        { mode: 0o644 });
    // options that name a file, a queue or a mode: refused, 64, nothing dropped
    for (const args of [['-C', path.join(evil, 'config.json'), 'a@example.test'],
        ['-X', path.join(evil, 'log'), 'a@example.test'],
        ['-oQ' + evil, 'a@example.test'],
        ['--config=' + path.join(evil, 'config.json'), 'a@example.test'],
        ['-q'], ['-bp'], ['-d', evil, 'a@example.test']]) {
        const r = await runAs(NOBODY, HELPER, args, { input: MSG });
        assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
        assert.deepEqual(dropFiles(), [], args.join(' '));
    }
    // the environment is ignored: the message still goes to the built-in
    // spool, the test hooks do nothing (its submit time is now, not 1970)
    const env = {
        MAILCONN_CONFIG: path.join(evil, 'config.json'),
        MAILCONN_STATE_DIR: evil,
        MAILCONN_TEST_QUEUE_SUBMITTED: '1000',
        MAILCONN_TEST_QUEUE_NO_RUNNER: '1',
        TMPDIR: evil,
        XDG_CONFIG_HOME: evil,
        HOME: evil,
    };
    const r = await runAs(NOBODY, HELPER, ['-f', 'nobody@example.test', '--', 'b@example.test'],
        { input: MSG, env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(dropFiles().length, 1);
    assert.deepEqual(fs.readdirSync(evil).sort(), ['config.json'], 'nothing written where the caller said');
    const before = lib.messageCount(peer.out);
    assert.equal((await runner()).code, 0);
    assert.equal(lib.messageCount(peer.out), before + 1);
    const msgs = await lib.readMessages(peer.out);
    const m = msgs[msgs.length - 1];
    assert.deepEqual(m.meta.rcptTo, ['b@example.test']);
    const year = new Date().getUTCFullYear();
    assert.match(m.raw.toString(), new RegExp(`^Received: from nobody by .*;\\r\\n\\t\\w{3}, \\d\\d \\w{3} ${year} `, 'm'));
    // `mailconn sendmail` with MAILCONN_CONFIG set is the user's own config,
    // never the helper: here an unreadable one is a config error, not a queued message
    const own = await runAs(NOBODY, process.env.MAILCONN_BIN, ['sendmail', 'c@example.test'],
        { input: MSG, env: { MAILCONN_CONFIG: '/etc/mailconn/config.json' } });
    assert.equal(own.code, 78, own.stderr);
    assert.deepEqual(dropFiles(), []);
});

test('another user (even in group mailconn-submit) cannot read or remove queued mail', async () => {
    const r = await runAs(NOBODY, HELPER, ['-f', 'nobody@example.test', 'd@example.test'],
        { input: 'Subject: private\n\nsecret words\n' });
    assert.equal(r.code, 0, r.stderr);
    const [name] = dropFiles();
    const file = path.join(SPOOL, 'drop', name);
    for (const groups of [null, [gid]]) {
        const o = { groups };
        assert.notEqual((await runAs(OTHER, '/bin/cat', [file], o)).code, 0, 'read the drop file');
        assert.notEqual((await runAs(OTHER, '/bin/ls', [path.join(SPOOL, 'drop')], o)).code, 0,
            'listed the drop folder');
        assert.notEqual((await runAs(OTHER, '/bin/rm', ['-f', file], o)).code, 0, 'removed the drop file');
        assert.equal(fs.existsSync(file), true);
    }
    const peerCount = lib.messageCount(peer.out);
    const run = await runner();
    assert.equal(run.code, 0, run.stderr);
    assert.equal(lib.messageCount(peer.out), peerCount + 1);
    // queued (the server down, so it stays): the queue is root's, 0700
    const keep = await runAs(NOBODY, HELPER, ['e@example.test'], { input: 'Subject: kept\n\nx\n' });
    assert.equal(keep.code, 0, keep.stderr);
    await lib.stopAll();  // the server goes: the message stays queued
    peer = null;
    assert.equal((await runner()).code, 0);
    const ids = queued();
    assert.equal(ids.length, 1);
    const qfile = path.join(SPOOL, 'queue', ids[0]);
    assert.equal(fs.statSync(qfile).mode & 0o777, 0o600);
    for (const who of [NOBODY, OTHER]) {
        assert.notEqual((await runAs(who, '/bin/cat', [qfile], { groups: [gid] })).code, 0);
        assert.notEqual((await runAs(who, '/bin/ls', [path.join(SPOOL, 'queue')], { groups: [gid] })).code, 0);
        assert.notEqual((await runAs(who, '/bin/rm', ['-f', qfile], { groups: [gid] })).code, 0);
        assert.equal(fs.existsSync(qfile), true);
    }
    assert.equal((await runner(['queue', 'drop', ids[0]])).code, 0);
});

test('the runner trusts the file\'s owner only: a forged uid, a hard link, a symlink are refused', async () => {
    const drop = path.join(SPOOL, 'drop');
    const body = 'Subject: forged\n\nx\n';
    // a file of nobody's claiming to be root's
    const f1 = path.join(drop, 'd.00000000000000a1');
    fs.writeFileSync(f1, `mailconn-drop 1\nuid 0\nrcpt f@example.test\n\n${body}`, { mode: 0o600 });
    fs.chownSync(f1, NOBODY, gid);
    // a second name for another file (as a hard link would give)
    const src = path.join(SPOOL, 'linked');   // same file system as drop/
    fs.writeFileSync(src, `mailconn-drop 1\nuid 0\nrcpt g@example.test\n\n${body}`, { mode: 0o600 });
    fs.linkSync(src, path.join(drop, 'd.00000000000000a2'));
    fs.symlinkSync(src, path.join(drop, 'd.00000000000000a3'));
    // an incomplete temp file is never read
    fs.writeFileSync(path.join(drop, 't.00000000000000a4'), 'mailconn-drop 1\nuid 0\nrcpt h@exam');
    assert.equal((await runner()).code, 0);
    assert.deepEqual(queued(), [], 'nothing of it queued');
    assert.deepEqual(dropFiles(), ['t.00000000000000a4'], 'refused files removed, the temp file left');
    assert.match(log(), /event=drop-refused drop=d\.00000000000000a1 uid=65534 reason="the uid it names is not its owner's"/);
    assert.match(log(), /event=drop-refused drop=d\.00000000000000a2 .*reason="not a regular file with one link"/);
    assert.match(log(), /event=drop-refused drop=d\.00000000000000a3 .*reason="a symbolic link"/);
    fs.unlinkSync(path.join(drop, 't.00000000000000a4'));
    fs.unlinkSync(src);
});

test('the helper, not setgid, run by root: the same file (LeakSanitizer on in sanitized builds)', async () => {
    const plain = path.join(scratch, 'mailconn-submit-plain');
    fs.copyFileSync(HELPER, plain);
    fs.chmodSync(plain, 0o755);
    const r = await lib.run(plain, ['-i', '-N', 'never', '-f', 'Root <root@example.test>', '--',
        'x@example.test', 'Y <y@example.test>'], { input: 'Subject: plain\n\n.\nbody\n' });
    assert.equal(r.code, 0, r.stderr);
    const [name] = dropFiles();
    const text = fs.readFileSync(path.join(SPOOL, 'drop', name), 'utf8');
    assert.equal(text, 'mailconn-drop 1\nuid 0\nuser root\nfrom Root <root@example.test>\nnotify never\n' +
        'rcpt x@example.test\nrcpt Y <y@example.test>\n\nSubject: plain\n\n.\nbody\n');
    // without -i a line holding a single dot ends the message
    fs.unlinkSync(path.join(SPOOL, 'drop', name));
    const d = await lib.run(plain, ['z@example.test'], { input: 'Subject: dot\n\nkept\n.\nlost\n' });
    assert.equal(d.code, 0, d.stderr);
    const [n2] = dropFiles();
    assert.match(fs.readFileSync(path.join(SPOOL, 'drop', n2), 'utf8'), /\n\nSubject: dot\n\nkept\n$/);
    fs.unlinkSync(path.join(SPOOL, 'drop', n2));
});

test('root\'s first queue run creates a missing drop folder (1730 root:mailconn-submit)', async () => {
    fs.rmSync(path.join(SPOOL, 'drop'), { recursive: true });
    fs.chmodSync(SPOOL, 0o700);   // as the queue's own creation leaves a missing parent
    assert.equal((await runner()).code, 0);
    const st = fs.statSync(path.join(SPOOL, 'drop'));
    assert.equal(st.mode & 0o7777, 0o1730);
    assert.equal(st.uid, 0);
    assert.equal(st.gid, gid);
    assert.equal(fs.statSync(SPOOL).mode & 0o777, 0o755);
    const r = await runAs(NOBODY, HELPER, ['k@example.test'], { input: 'Subject: again\n\nx\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(dropFiles().length, 1);
});
