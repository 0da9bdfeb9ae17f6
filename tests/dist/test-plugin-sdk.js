// The plugin SDK from the installed files (issue 11, acceptance 3): `meson
// install --destdir` of this build, then examples/plugin/ copied out of the
// source tree and built as a third party builds it: meson with
// PKG_CONFIG_LIBDIR at the staged mailconn.pc and PKG_CONFIG_SYSROOT_DIR at
// the stage, so `pkg-config --cflags mailconn` is the staged include folder
// alone and `--variable=plugindir` the staged plugin folder, where `meson
// install` puts transport-example.so. The installed `mailconn` (its
// libmailconn through LD_LIBRARY_PATH; plugins through MAILCONN_PLUGIN_PATH
// = the staged plugin folder, since the folder compiled in is the one under
// the real prefix) lists the plugin, sends through transport "example" with
// "tls": true to smtp-server (certificate from a throwaway CA, verified by
// the host's TLS layer), reports the template's validation errors with
// JSON paths, and `check` and `send` agree on basic auth over "tls": false.
// Skipped (with the reason) without meson, ninja or a C compiler.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const lib = require('../peers/lib');

const BUILD = process.env.MAILCONN_BUILD_ROOT;
const SRC = process.env.MAILCONN_SOURCE_ROOT;
const PASSWORD = 'pw-Sdk-9031';
const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function which(p) {
    const r = spawnSync('sh', ['-c', `command -v ${p}`], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
}

function whyNot() {
    if (!BUILD || !SRC) return 'no build tree (run with meson test)';
    for (const p of ['meson', 'ninja', 'pkg-config', 'cc'])
        if (!which(p)) return `${p} is not in PATH`;
    return null;
}

const why = whyNot();
let root;       // the DESTDIR
let st;         // what was staged: {bin, libdir, plugindir, pcdir}
let pki;

function find(dir, pred) {
    const hits = [];
    const walk = (d) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (pred(p, e)) hits.push(p);
        }
    };
    walk(dir);
    return hits;
}

function sh(cmd, args, opts = {}) {
    const r = spawnSync(cmd, args, Object.assign({ encoding: 'utf8', timeout: 180000, maxBuffer: 16 << 20 }, opts));
    assert.equal(r.status, 0, `${cmd} ${args.join(' ')}:\n${r.stdout}${r.stderr}${r.error || ''}`);
    return r.stdout;
}

test.before(() => {
    if (why) return;
    root = lib.tmpdir();
    sh('meson', ['install', '-C', BUILD, '--destdir', root, '--no-rebuild']);
    const [pc] = find(root, (p) => path.basename(p) === 'mailconn.pc');
    const [bin] = find(root, (p) => /\/bin\/mailconn$/.test(p));
    const [so] = find(root, (p) => path.basename(p) === 'libmailconn.so');
    const [plain] = find(root, (p) => path.basename(p) === 'transport-plain.so');
    assert.ok(pc && bin && so && plain, 'mailconn.pc, bin/mailconn, libmailconn.so, transport-plain.so installed');
    st = { bin, libdir: path.dirname(so), plugindir: path.dirname(plain), pcdir: path.dirname(pc) };
    pki = lib.mkca(path.join(root, 'pki'));
});

test.after(() => lib.stopAll());

// the staged mailconn.pc alone (PKG_CONFIG_LIBDIR replaces the system's
// folders), its paths inside the stage
const pkgEnv = () => Object.assign({}, process.env, {
    PKG_CONFIG_LIBDIR: st.pcdir, PKG_CONFIG_PATH: '', PKG_CONFIG_SYSROOT_DIR: root,
});
// the installed program with the staged library and plugins only
const runEnv = () => ({ LD_LIBRARY_PATH: st.libdir, MAILCONN_PLUGIN_PATH: st.plugindir,
    MC_TEST_PASSWORD: PASSWORD });
const mailconn = (args) => lib.run(st.bin, args, { env: runEnv(), timeoutMs: 60000 });

test('the template builds against the installed headers and installs into the plugindir', { skip: why || false }, () => {
    const cflags = sh('pkg-config', ['--cflags', 'mailconn'], { env: pkgEnv() }).trim();
    const [header] = find(root, (p) => p.endsWith('/mailconn/plugin.h'));
    assert.ok(header, 'plugin.h staged');
    assert.equal(cflags, `-I${path.dirname(path.dirname(header))}`, 'the staged include folder only');
    assert.equal(sh('pkg-config', ['--variable=plugindir', 'mailconn'], { env: pkgEnv() }).trim(), st.plugindir);

    // out of the source tree: nothing of it on the compiler's command line
    const src = path.join(root, 'template');
    fs.mkdirSync(src);
    for (const f of fs.readdirSync(path.join(SRC, 'examples', 'plugin')))
        fs.copyFileSync(path.join(SRC, 'examples', 'plugin', f), path.join(src, f));
    const build = path.join(root, 'template-build');
    sh('meson', ['setup', build, src], { env: pkgEnv() });
    sh('meson', ['compile', '-C', build], { env: pkgEnv() });
    const cmds = JSON.parse(fs.readFileSync(path.join(build, 'compile_commands.json'), 'utf8'));
    assert.ok(cmds.some((c) => /transport-example\.c/.test(c.file)), 'transport-example.c compiled');
    for (const c of cmds) {
        assert.ok(!c.command.includes(SRC), `the source tree on the command line: ${c.command}`);
        assert.ok(!c.command.includes(BUILD), `the build tree on the command line: ${c.command}`);
        assert.ok(c.command.includes(cflags), c.command);
    }
    assert.ok(cmds.some((c) => /provider-example\.c/.test(c.file)), 'provider-example.c compiled');
    sh('meson', ['install', '-C', build], { env: pkgEnv() });
    const so = path.join(st.plugindir, 'transport-example.so');
    assert.ok(fs.existsSync(so), 'transport-example.so in the staged plugindir');
    assert.equal(fs.statSync(so).mode & 0o777, 0o644);
    const auth = path.join(st.plugindir, 'auth-example.so');
    assert.ok(fs.existsSync(auth), 'auth-example.so in the staged plugindir');
    // one exported symbol each
    for (const m of [so, auth]) {
        const dyn = sh('nm', ['-D', '--defined-only', m]).trim().split('\n')
            .map((l) => l.split(' ').pop()).filter((n) => !/^_(init|fini|edata|end|_bss_start)$/.test(n) && n !== '__bss_start' && n !== '_edata' && n !== '_end');
        assert.deepEqual(dyn, ['mc_plugin_entry'], `${m} exports ${dyn.join(' ')}`);
    }
    // no OpenSSL in the template: TLS is the host's
    const nm = spawnSync('sh', ['-c', `ldd '${so}'`], { encoding: 'utf8' });
    assert.doesNotMatch(nm.stdout, /libssl|libcrypto/, nm.stdout);
});

test('installed mailconn plugins lists transport example', { skip: why || false }, async () => {
    const r = await mailconn(['plugins']);
    assert.equal(r.code, 0, show(r));
    const line = r.stdout.split('\n').find((l) => /^transport +example +/.test(l));
    assert.ok(line, show(r));
    assert.match(line, /^transport +example +1\.0 +(\S+)$/);
    assert.equal(/(\S+)$/.exec(line)[1], path.join(st.plugindir, 'transport-example.so'));
});

// The data-only provider: it lists only "region"; the engine owns the
// common OAuth keys, so client_id, scope, token_url... are accepted, and
// unknown keys and its own rule fail at their JSON paths.
test('installed provider example: common OAuth keys accepted, its errors at JSON paths', { skip: why || false }, async (t) => {
    const r = await mailconn(['plugins']);
    assert.match(r.stdout, /^auth +example +\S+ +\S+auth-example\.so$/m, show(r));
    const srv = (auth) => ({ name: 'fm', host: '127.0.0.1', port: 465, transport: 'tls',
        auth: Object.assign({ provider: 'example', user: 'u@example.test', client_id: 'cid' }, auth) });
    const good = lib.writeConfig(lib.tmpdir(t), { servers: [srv({ region: 'us', scope: 'mail offline',
        timeout_s: 20, client_secret_env: 'NOPE', params: { login_hint: 'u' } })] });
    const c = await mailconn(['--config', good, 'check']);
    assert.equal(c.code, 0, show(c));
    for (const [auth, re] of [[{ region: 'mars' }, /servers\[0\]\.auth\.region: must be "eu" or "us"/],
        [{ bogus: 1 }, /servers\[0\]\.auth: unknown key "bogus" for provider "example"/],
        [{ timeout_s: 'x' }, /servers\[0\]\.auth\.timeout_s: must be an integer/]]) {
        const bad = lib.writeConfig(lib.tmpdir(t), { servers: [srv(auth)] });
        const b = await mailconn(['--config', bad, 'check']);
        assert.equal(b.code, 78, show(b));
        assert.match(b.stderr, re, show(b));
    }
});

function server(peer, extra) {
    return Object.assign({ name: 'ex', host: '127.0.0.1', port: peer ? peer.port : 465,
        transport: 'example', sender: { address: 'app@example.test' } }, extra);
}

const basic = { provider: 'basic', user: 'app', password_env: 'MC_TEST_PASSWORD' };

function configFile(t, srv) {
    return lib.writeConfig(lib.tmpdir(t), { servers: [srv] });
}

const send = (cfg, subject) => mailconn(['--config', cfg, 'send', '--to', 'rcpt@example.test',
    '--subject', subject, '--body', `body of ${subject}\n`]);

test('send through transport example with "tls": true: delivered over verified TLS', { skip: why || false }, async (t) => {
    for (const [opts, sni] of [[{ tls: true }, '-'], [{ tls: true, sni: 'localhost' }, 'localhost']]) {
        const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key });
        const cfg = configFile(t, server(peer, { ca_file: pki.ca, transport_options: opts }));
        const subject = `sdk ${JSON.stringify(opts)}`;
        const r = await send(cfg, subject);
        assert.equal(r.code, 0, show(r));
        const msgs = await lib.readMessages(peer.out);
        assert.equal(msgs.length, 1);
        assert.equal(msgs[0].meta.secure, true, 'received over TLS');
        assert.equal(msgs[0].meta.mailFrom, 'app@example.test');
        assert.deepEqual(msgs[0].meta.rcptTo, ['rcpt@example.test']);
        assert.equal(msgs[0].subject, subject);
        assert.equal(msgs[0].text.trim(), `body of ${subject}`);
        // SNI: none for an IP literal, the option's name when given
        assert.ok(lib.events(peer.out).some((l) => l.endsWith(` secure ${sni}`)), lib.events(peer.out).join('\n'));
    }
    // the host's layer verifies: a certificate for another name fails at tls
    const wrong = await lib.startPeer({ t, tls: 'implicit', cert: pki.wronghost.cert, key: pki.wronghost.key });
    const r = await send(configFile(t, server(wrong, { ca_file: pki.ca, transport_options: { tls: true } })), 'wrong');
    assert.equal(r.code, 69, show(r));
    assert.equal(lib.messageCount(wrong.out), 0);
});

test('template validation errors: check exit 78 with the JSON paths', { skip: why || false }, async (t) => {
    const cases = [
        [{ tlss: true }, 'servers[0].transport_options.tlss: unknown key "tlss" for transport "example" (did you mean "tls"?)'],
        [{ tls: 'yes' }, 'servers[0].transport_options.tls: must be true or false'],
        [{ tls: false, sni: 'localhost' }, 'servers[0].transport_options.sni: needs "tls": true'],
        [{ sni: 'bad name/' }, 'servers[0].transport_options.sni: must be a host name'],
    ];
    for (const [opts, line] of cases) {
        const r = await mailconn(['--config', configFile(t, server(null, { transport_options: opts })), 'check']);
        assert.equal(r.code, 78, show(r));
        assert.ok(r.stderr.includes(line), `${line}\n${show(r)}`);
    }
});

// security_of: the transport declares TLS, and plaintext only for "tls": false,
// so basic auth over its TLS needs no allow_plaintext_auth (check and send).
test('"tls": true (and no options) + basic auth: check and send pass without allow_plaintext_auth', { skip: why || false }, async (t) => {
    for (const extra of [{ transport_options: { tls: true } }, {}]) {
        const peer = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
            users: { app: PASSWORD } });
        const cfg = configFile(t, server(peer, Object.assign({ ca_file: pki.ca, auth: basic }, extra)));
        const c = await mailconn(['--config', cfg, 'check']);
        assert.equal(c.code, 0, show(c));
        const s = await send(cfg, 'authed over tls');
        assert.equal(s.code, 0, show(s));
        const msgs = await lib.readMessages(peer.out);
        assert.equal(msgs.length, 1);
        assert.equal(msgs[0].meta.user, 'app');
        assert.equal(msgs[0].meta.secure, true);
    }
});

test('"tls": false + basic auth: check and send agree (78 alike; both pass with allow_plaintext_auth)', { skip: why || false }, async (t) => {
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
    const refused = configFile(t, server(peer, { transport_options: { tls: false }, auth: basic }));
    const c = await mailconn(['--config', refused, 'check']);
    const s = await send(refused, 'refused');
    assert.equal(c.code, 78, show(c));
    assert.equal(s.code, 78, show(s));
    const msg = 'servers[0].auth: sending credentials over the example transport needs "allow_plaintext_auth": true';
    assert.ok(c.stderr.includes(msg), show(c));
    assert.ok(s.stderr.includes(msg), show(s));
    assert.equal(lib.sessions(peer.out).length, 0, 'send connected');

    const allowed = configFile(t, server(peer, { transport_options: { tls: false }, auth: basic,
        allow_plaintext_auth: true }));
    const c2 = await mailconn(['--config', allowed, 'check']);
    assert.equal(c2.code, 0, show(c2));
    const s2 = await send(allowed, 'in clear');
    assert.equal(s2.code, 0, show(s2));
    assert.ok(!(s2.stdout + s2.stderr).includes(PASSWORD));
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].meta.user, 'app');
    assert.equal(msgs[0].meta.secure, false);
    assert.equal(msgs[0].subject, 'in clear');
});
