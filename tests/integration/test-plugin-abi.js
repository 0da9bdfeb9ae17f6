// Plugin ABI 2.0 (issue 10): a plugin built for ABI 1.x is refused with
// one line "<file>: built for ABI 1.<m>, this is 2.1", by `mailconn
// plugins` (which still lists the good ones, exit 0) and by a send whose
// server needs it (exit 78, nothing of the plugin called). The 1.0 and 1.1
// plugins are test-loader's purpose-made ones (tests/unit/badplugins).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const BIN = process.env.MAILCONN_BIN;
const BAD = path.join(process.env.MAILCONN_BUILD_ROOT, 'tests', 'unit', 'badplugins');
const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function pluginDir(t) {
    const dir = lib.tmpdir(t);
    const plugins = path.join(dir, 'plugins');
    fs.mkdirSync(plugins, { mode: 0o755 });
    for (const f of ['auth-abi1.so', 'auth-abi1-1.so']) {
        fs.copyFileSync(path.join(BAD, f), path.join(plugins, f));
        fs.chmodSync(path.join(plugins, f), 0o644);
    }
    return { dir, plugins };
}

const env = (plugins) => ({ MAILCONN_PLUGIN_PATH: `${plugins}:${process.env.MAILCONN_PLUGIN_PATH}` });

test('mailconn plugins: each 1.x plugin refused with one line, the others listed, exit 0', async (t) => {
    const { plugins } = pluginDir(t);
    const r = await lib.run(BIN, ['plugins'], { env: env(plugins) });
    assert.equal(r.code, 0, show(r));
    const lines = r.stderr.trim().split('\n');
    assert.deepEqual(lines.sort(), [
        `mailconn: ${plugins}/auth-abi1-1.so: built for ABI 1.1, this is 2.1`,
        `mailconn: ${plugins}/auth-abi1.so: built for ABI 1.0, this is 2.1`,
    ], show(r));
    assert.match(r.stdout, /^auth +basic /m, show(r));
    assert.doesNotMatch(r.stdout, /abi1/, show(r));
});

test('send through a server whose provider is a 1.0 plugin: exit 78, the line on stderr', async (t) => {
    const { dir, plugins } = pluginDir(t);
    const peer = await lib.startPeer({ t });
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'old', host: '127.0.0.1', port: peer.port,
        transport: 'plain', allow_plaintext_auth: true, auth: { provider: 'abi1', user: 'u' },
        sender: { address: 'a@example.test' } }] });
    const r = await lib.run(BIN, ['--config', cfg, 'send', '--to', 'b@example.test', '--subject', 's',
        '--body', 'hi'], { env: env(plugins) });
    assert.equal(r.code, 78, show(r));
    const line = `${plugins}/auth-abi1.so: built for ABI 1.0, this is 2.1`;
    assert.ok(r.stderr.split('\n').includes(`mailconn: ${line}`), show(r));
    assert.match(r.stderr, new RegExp(`provider plugin "abi1" cannot be loaded: ${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), show(r));
    assert.equal(lib.sessions(peer.out).length, 0, 'nothing connected');
});

// ABI 2.1 (issue 11): a 2.5 plugin is refused with one line; `plugins`
// lists every kind (the new proxy and token-store ones too) and the
// built-in file store, columns aligned whatever the name lengths.
test('mailconn plugins: ABI 2.5 refused, every kind and the built-ins listed, columns aligned', async (t) => {
    const dir = lib.tmpdir(t);
    const plugins = path.join(dir, 'plugins');
    fs.mkdirSync(plugins, { mode: 0o755 });
    for (const f of ['auth-abiminor5.so', 'proxy-good.so', 'store-good.so', 'auth-initcount.so']) {
        fs.copyFileSync(path.join(BAD, f), path.join(plugins, f));
        fs.chmodSync(path.join(plugins, f), 0o644);
    }
    const r = await lib.run(BIN, ['plugins'], { env: env(plugins) });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(r.stderr.trim().split('\n'),
        [`mailconn: plugin ${plugins}/auth-abiminor5.so rejected: built for ABI 2.5, this is 2.1`], show(r));
    const lines = r.stdout.trim().split('\n');
    for (const re of [/^transport +plain /, /^auth +basic /, /^auth +initcount /, /^oauth-engine +oauth /,
        /^proxy +good /, /^token-store +good /, /^token-store +file +\(built in\)$/])
        assert.ok(lines.some((l) => re.test(l)), `${re}\n${show(r)}`);
    // the name column starts, and the version column starts, at one offset on every line
    const starts = (l) => { const m = /^(\S+ +)(\S+ +)/.exec(l); return [m[1].length, m[1].length + m[2].length]; };
    const first = starts(lines[0]);
    for (const l of lines) assert.deepEqual(starts(l), first, show(r));
    // kinds grouped in the documented order
    const order = ['transport', 'auth', 'oauth-engine', 'proxy', 'token-store', 'tls-engine'];
    const ranks = lines.map((l) => order.indexOf(l.split(' ')[0]));
    assert.deepEqual([...ranks].sort((a, b) => a - b), ranks, show(r));
});
