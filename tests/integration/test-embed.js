// Embedding: `meson install --destdir`, build examples/send.c against the
// installed mailconn.pc with the system compiler, and send one message
// through a real SMTP peer with the installed plugins.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const build = process.env.MAILCONN_BUILD_ROOT;
const source = process.env.MAILCONN_SOURCE_ROOT;
const sanitize = process.env.MAILCONN_SANITIZE || 'none';

function find(dir, name) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
            const r = find(p, name);
            if (r) return r;
        } else if (e.name === name) {
            return p;
        }
    }
    return null;
}

test('examples/send.c builds against the installed mailconn.pc and sends', async (t) => {
    const dir = lib.tmpdir(t);
    const dest = path.join(dir, 'root');
    const inst = await lib.run('meson', ['install', '-C', build, '--destdir', dest, '--no-rebuild', '--quiet'],
        { timeoutMs: 120000 });
    assert.equal(inst.code, 0, inst.stdout + inst.stderr);

    const pc = find(dest, 'mailconn.pc');
    assert.ok(pc, 'mailconn.pc installed');
    const plugin = find(dest, 'transport-plain.so');
    assert.ok(plugin, 'plugins installed');
    const env = { PKG_CONFIG_PATH: path.dirname(pc), PKG_CONFIG_SYSROOT_DIR: dest };
    const flags = await lib.run('pkg-config', ['--cflags', '--libs', 'mailconn'], { env });
    assert.equal(flags.code, 0, flags.stderr);
    const plugindir = await lib.run('pkg-config', ['--variable=plugindir', 'mailconn'], { env });
    assert.equal(plugindir.stdout.trim(), path.dirname(plugin));  // sysroot-prefixed

    const exe = path.join(dir, 'send');
    const cflags = flags.stdout.trim().split(/\s+/);
    if (sanitize !== 'none') cflags.push(`-fsanitize=${sanitize}`);
    const cc = await lib.run('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-pedantic',
        path.join(source, 'examples', 'send.c'), '-o', exe, ...cflags]);
    assert.equal(cc.code, 0, cc.stderr);

    const peer = await lib.startPeer({ t });
    const cfg = lib.writeConfig(dir, { servers: [{ name: 'local', host: '127.0.0.1', port: peer.port,
        transport: 'plain', sender: { address: 'embed@example.test' } }] });
    const libdir = path.dirname(find(dest, 'libmailconn.so.0'));
    const r = await lib.run(exe, ['--config', cfg, 'to@example.test', 'embedded', 'hello from send.c'], {
        env: { LD_LIBRARY_PATH: libdir, MAILCONN_PLUGIN_PATH: path.dirname(plugin) },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sent: 250/m);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].subject, 'embedded');
    assert.equal(msgs[0].meta.mailFrom, 'embed@example.test');
    assert.equal(msgs[0].text.trim(), 'hello from send.c');
});

test('the public headers compile as C11 -pedantic and as C++', async (t) => {
    const dir = lib.tmpdir(t);
    const src = path.join(dir, 'h.c');
    fs.writeFileSync(src, '#include "mailconn/mailconn.h"\n#include "mailconn/plugin.h"\nint main(void) { return 0; }\n');
    const inc = path.join(source, 'include');
    const c = await lib.run('cc', ['-std=c11', '-pedantic', '-Wall', '-Wextra', '-Werror', '-I', inc,
        '-fsyntax-only', src]);
    assert.equal(c.code, 0, c.stderr);
    const cpp = await lib.run('c++', ['-x', 'c++', '-std=c++11', '-Wall', '-Wextra', '-Werror', '-I', inc,
        '-fsyntax-only', src]);
    assert.equal(cpp.code, 0, cpp.stderr);
});
