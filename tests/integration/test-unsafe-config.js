// A config others can write runs nothing (issue 9, point 5; local-attack
// case E of the acceptance). A second local user (an unused uid, reached
// with setpriv --reuid/--regid from a 0755 scratch folder, since the test's
// own 0700 folders are not reachable) can write the config, or its folder,
// or owns it; that user puts a password_command in it that would create a
// marker file. mailconn (run as the test's user) refuses the config with its
// path and what is wrong, exit 78, before any command runs: the marker is
// never created. The same rule for a secret file and a ca_file the config
// names. A control case proves the rule is the mode: the same config, the
// user's own and 0600 in a folder only the user can write (under the sticky
// root-owned /tmp), runs the command.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const lib = require('../peers/lib');

const isRoot = process.geteuid && process.geteuid() === 0;
const haveSetpriv = spawnSync('setpriv', ['--version']).status === 0;
const skip = !isRoot ? 'needs root (a second user via setpriv)' : !haveSetpriv ? 'needs setpriv' : false;

/** A uid and gid nobody uses (not in the passwd or group database). */
function unusedId() {
    const used = new Set();
    for (const f of ['/etc/passwd', '/etc/group']) {
        let text = '';
        try { text = fs.readFileSync(f, 'utf8'); } catch (_) { /* none */ }
        for (const l of text.split('\n')) if (l) used.add(Number(l.split(':')[2]));
    }
    for (let id = 64123; id < 65000; id++) if (!used.has(id)) return id;
    throw new Error('no unused uid');
}
const EVIL = skip ? 0 : unusedId();

let scratch;   // 0755: the second user can reach what is staged here
test.before(() => {
    assert.ok(process.env.MAILCONN_BIN, 'MAILCONN_BIN is set (run with meson test)');
    scratch = lib.tmpdir();
    fs.chmodSync(scratch, 0o755);
});
test.after(() => lib.stopAll());

/** Run a shell command as the second user; it must succeed. */
function asEvil(cmd) {
    const r = spawnSync('setpriv', [`--reuid=${EVIL}`, `--regid=${EVIL}`, '--clear-groups', '--',
                                    '/bin/sh', '-c', cmd], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 0, `as uid ${EVIL}: ${cmd}: ${r.stderr}`);
}

/** A 0755 folder of the scratch area for one case. */
function caseDir(name, mode = 0o755) {
    const d = path.join(scratch, name);
    fs.mkdirSync(d);
    fs.chmodSync(d, mode);
    return d;
}

/** The attacker's config: a password_command that leaves a marker. */
function evilConfig(marker, auth = {}) {
    return JSON.stringify({ servers: [{
        name: 'evil', host: '127.0.0.1', port: 1, transport: 'tls',
        sender: { address: 'root@example.test' },
        auth: Object.assign({ provider: 'basic', user: 'root',
                              password_command: `touch ${marker}; echo pw-Evil-1234` }, auth),
    }] });
}

const mc = (cfg, ...args) => lib.runCli(['--config', cfg, ...args], { timeoutMs: 30000 });

/** Refused: exit 78, the path and what is wrong named, nothing run. */
function assertRefused(r, marker, pathRe, whatRe) {
    assert.equal(r.signal, null);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, pathRe);
    assert.match(r.stderr, whatRe);
    assert.equal(fs.existsSync(marker), false, 'the password_command ran');
}

const re = (s) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

test('E: an other-writable (0666) config the second user filled with a password_command is refused', { skip }, async () => {
    const d = caseDir('e-0666');
    const cfg = path.join(d, 'config.json');
    const marker = path.join(scratch, 'e-0666.marker');
    fs.writeFileSync(cfg, '{"servers":[]}');
    fs.chmodSync(cfg, 0o666);
    asEvil(`printf '%s' '${evilConfig(marker)}' > ${cfg}`);       // the attacker can write it
    for (const args of [['check', '--secrets'], ['send', '--to', 'a@example.test', '--subject', 's', '--body', 'b']]) {
        const r = await mc(cfg, ...args);
        assertRefused(r, marker, re(cfg), /writable by group or others \(mode 0666\)/);
        assert.doesNotMatch(r.stdout, /^sent/m);
    }
    assert.equal(fs.readFileSync(cfg, 'utf8'), evilConfig(marker), "the attacker's file is unchanged");
});

test('E: a group-writable config (the group is the second user\'s) is refused', { skip }, async () => {
    const d = caseDir('e-group');
    const cfg = path.join(d, 'config.json');
    const marker = path.join(scratch, 'e-group.marker');
    fs.writeFileSync(cfg, '{}');
    fs.chownSync(cfg, 0, EVIL);
    fs.chmodSync(cfg, 0o620);
    asEvil(`printf '%s' '${evilConfig(marker)}' > ${cfg}`);
    const r = await mc(cfg, 'check', '--secrets');
    assertRefused(r, marker, re(cfg), /writable by group or others \(mode 0620\)/);
});

test('E: a config owned by the second user (planted in a sticky folder) is refused', { skip }, async () => {
    const d = caseDir('e-owned', 0o1777);           // like /tmp: anyone may create a file
    const cfg = path.join(d, 'config.json');
    const marker = path.join(scratch, 'e-owned.marker');
    asEvil(`umask 022; printf '%s' '${evilConfig(marker)}' > ${cfg}`);
    assert.equal(fs.statSync(cfg).uid, EVIL);
    const r = await mc(cfg, 'check', '--secrets');
    assertRefused(r, marker, re(cfg), new RegExp(`owned by uid ${EVIL}, not by you \\(uid 0\\) or root`));
});

test('E: the user\'s own 0600 config in a folder the second user can write is refused', { skip }, async () => {
    for (const [name, setup, what] of [
        ['e-dir-0777', (d) => fs.chmodSync(d, 0o777), /the folder of .* is writable by group or others \(mode 0777\)/],
        ['e-dir-owned', (d) => fs.chownSync(d, EVIL, EVIL), new RegExp(`the folder of .* is owned by uid ${EVIL}`)],
    ]) {
        const d = caseDir(name);
        const marker = path.join(scratch, `${name}.marker`);
        const cfg = lib.writeConfig(d, evilConfig(marker));   // 0600, the user's own
        setup(d);
        const r = await mc(cfg, 'check', '--secrets');
        assertRefused(r, marker, re(d), what);
    }
});

test('E: a group-writable secret file and an other-writable ca_file named by a safe config are refused', { skip }, async () => {
    const d = caseDir('e-files');
    const pw = path.join(d, 'password');
    fs.writeFileSync(pw, 'pw-Secret-5678\n');
    fs.chownSync(pw, 0, EVIL);
    fs.chmodSync(pw, 0o620);                           // not readable by the group, but writable
    asEvil(`printf 'pw-Evil-5678\\n' > ${pw}`);
    const ca = path.join(d, 'ca.pem');
    fs.copyFileSync(path.join(lib.PEERS_DIR, 'package.json'), ca);   // content does not matter
    fs.chmodSync(ca, 0o646);
    const marker = path.join(scratch, 'e-files.marker');
    const cfg = lib.writeConfig(caseDir('e-files-cfg'), JSON.stringify({ servers: [{
        name: 'files', host: '127.0.0.1', port: 1, transport: 'tls', ca_file: ca,
        sender: { address: 'root@example.test' },
        auth: { provider: 'basic', user: 'root', password_file: pw },
    }, {
        name: 'cmd', host: '127.0.0.1', port: 1, transport: 'tls',
        sender: { address: 'root@example.test' },
        auth: { provider: 'basic', user: 'root', password_command: `touch ${marker}; echo x-Pw-9999` },
    }] }));
    const r = await mc(cfg, 'check', '--secrets');
    assertRefused(r, marker, re(`servers[0].auth.password_file: ${pw}: writable by group or others (mode 0620)`),
                  re(`servers[0].ca_file: ${ca}: writable by group or others (mode 0646)`));
    assert.doesNotMatch(r.stderr, /pw-Evil-5678|pw-Secret-5678/, 'no secret in the output');
    const s = await mc(cfg, 'send', '--server', 'files', '--to', 'a@example.test', '--subject', 's', '--body', 'b');
    assert.equal(s.code, 78, s.stderr);
    assert.match(s.stderr, re(pw));
});

test('control: the same config, 0600 and the user\'s own, in the temp folder (sticky /tmp), runs its command', { skip }, async () => {
    const d = caseDir('control');
    const marker = path.join(scratch, 'control.marker');
    const cfg = lib.writeConfig(d, evilConfig(marker));
    const r = await mc(cfg, 'check', '--secrets');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.existsSync(marker), true, 'the password_command ran');
});
