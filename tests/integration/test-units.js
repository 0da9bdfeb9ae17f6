// The systemd units of the system queue (issue 13; DESIGN.md "System
// mail"): `meson install --destdir` into a temporary folder, then
// `systemd-analyze verify --root=` on the installed mailconn-queue.service,
// .timer and .path. The temporary root holds what meson installed plus the
// machine's standard .target units (what the units' default dependencies
// name: sysinit.target, timers.target, paths.target...), so verify also
// checks that ExecStart's binary exists in the installed tree. MANPATH points
// into it for the Documentation= man page. Skipped (with the reason) when
// systemd-analyze or meson is missing.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const BUILD = process.env.MAILCONN_BUILD_ROOT;

function which(p) {
    const r = spawnSync('sh', ['-c', `command -v ${p}`], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
}

function whyNot() {
    if (!BUILD) return 'no build tree (run with meson test)';
    if (!which('systemd-analyze')) return 'systemd-analyze is not installed';
    if (!which('meson')) return 'meson is not in PATH';
    return null;
}

const why = whyNot();
let root;

test.before(() => {
    if (why) return;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'mailconn-units-'));
    const r = spawnSync('meson', ['install', '-C', BUILD, '--destdir', root, '--no-rebuild'],
        { encoding: 'utf8', timeout: 120000, maxBuffer: 16 << 20 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /Running custom install script .*install-helper\.sh/);
});

test.after(() => { if (root) fs.rmSync(root, { recursive: true, force: true }); });

function find(name) {
    const hits = [];
    const walk = (d) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (e.name === name) hits.push(p);
        }
    };
    walk(root);
    return hits;
}

test('installed: the units, the helper under libexec/mailconn', { skip: why || false }, () => {
    const [svc] = find('mailconn-queue.service');
    assert.ok(svc, 'mailconn-queue.service installed');
    assert.match(svc, /\/lib\/systemd\/system\/mailconn-queue\.service$/);
    for (const u of ['mailconn-queue.timer', 'mailconn-queue.path'])
        assert.equal(find(u)[0], path.join(path.dirname(svc), u));
    const text = fs.readFileSync(svc, 'utf8');
    assert.match(text, /^StateDirectoryMode=0700$/m);
    const exec = /^ExecStart=(\S+) queue run$/m.exec(text);
    assert.ok(exec, 'ExecStart runs `mailconn queue run`');
    assert.equal(fs.statSync(path.join(root, exec[1])).mode & 0o111, 0o111, `${exec[1]} installed`);
    assert.doesNotMatch(text, /^User=/m, 'runs as root');
    const p = fs.readFileSync(find('mailconn-queue.path')[0], 'utf8');
    assert.match(p, /^PathChanged=\/\S+\/drop$/m);
    assert.match(p, /^Unit=mailconn-queue\.service$/m);
    const helper = find('mailconn-submit');
    assert.equal(helper.length, 1);
    assert.match(helper[0], /\/libexec\/mailconn\/mailconn-submit$/);
    // under DESTDIR the install script leaves the group and the mode to the package
    assert.equal(fs.statSync(helper[0]).mode & 0o7777, 0o755);
    assert.equal(fs.existsSync(path.join(root, 'var')), false, 'no spool folder staged');
});

test('systemd-analyze verify --root= accepts the installed units', { skip: why || false }, () => {
    const sys = path.join(root, 'usr', 'lib', 'systemd', 'system');
    fs.mkdirSync(sys, { recursive: true });
    for (const f of fs.readdirSync('/usr/lib/systemd/system'))
        if (f.endsWith('.target')) fs.copyFileSync(path.join('/usr/lib/systemd/system', f), path.join(sys, f));
    const units = ['service', 'timer', 'path'].map((k) => find(`mailconn-queue.${k}`)[0]);
    const man = path.join(root, find('mailconn.1')[0].slice(root.length).replace(/\/man1\/mailconn\.1$/, ''));
    const verify = () => spawnSync('systemd-analyze', ['verify', `--root=${root}`, ...units],
        { encoding: 'utf8', timeout: 60000, env: Object.assign({}, process.env, { MANPATH: man }) });
    const r = verify();
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal((r.stdout + r.stderr).trim(), '');
    // it does check the tree: without the binary, ExecStart is refused
    const exec = /^ExecStart=(\S+)/m.exec(fs.readFileSync(units[0], 'utf8'))[1];
    fs.renameSync(path.join(root, exec), path.join(root, exec + '.away'));
    const r2 = verify();
    fs.renameSync(path.join(root, exec + '.away'), path.join(root, exec));
    assert.notEqual(r2.status, 0);
    assert.match(r2.stdout + r2.stderr, /is not executable: No such file or directory/);
});
