// One plaintext-auth rule for `check` and `send` (issue 11): both follow
// the transport's declared security (mc_transport_ops.security), so a
// custom transport that declares PLAINTEXT ("clear", a test plugin) is
// held to allow_plaintext_auth by both, with the same exit code and the
// same message; a transport that declares TLS but hands over a stream in
// the clear ("liar") is caught by send before AUTH, allow_plaintext_auth or
// not. And a server's "transport_options": checked against the transport's
// keys (JSON paths) and its validate, handed to connect as
// mc_connect_opts.options.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const lib = require('../peers/lib');

const PASSWORD = 'pw-Clear-4417';
const DIR = process.env.MAILCONN_TRANSPORT_SEC_DIR;
if (!DIR) throw new Error('MAILCONN_TRANSPORT_SEC_DIR is not set (run with meson test)');
const env = { MC_TEST_PASSWORD: PASSWORD,
    MAILCONN_PLUGIN_PATH: [DIR, process.env.MAILCONN_PLUGIN_PATH].filter(Boolean).join(':') };
const show = (r) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

test.after(() => lib.stopAll());

function config(dir, peer, extra) {
    return lib.writeConfig(dir, { servers: [Object.assign({
        name: 'custom', host: '127.0.0.1', port: peer ? peer.port : 25,
        sender: { address: 'app@example.test' },
    }, extra)] });
}

const basic = { provider: 'basic', user: 'app', password_env: 'MC_TEST_PASSWORD' };
const check = (cfg) => lib.runCli(['--config', cfg, 'check'], { env });
const send = (cfg) => lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test',
    '--subject', 'custom transport', '--body', 'hello\n'], { env });
// the message of the one error line, without the program's and the file's prefix
const why = (r) => {
    const m = /(servers\[0\][^\n]*)/.exec(r.stderr);
    return m ? m[1] : null;
};

test('plaintext custom transport + basic auth: check and send refuse alike (78, same message)', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
    const cfg = config(dir, peer, { transport: 'clear', auth: basic });
    const c = await check(cfg);
    const s = await send(cfg);
    assert.equal(c.code, 78, show(c));
    assert.equal(s.code, 78, show(s));
    const msg = 'servers[0].auth: sending credentials over the clear transport needs '
        + '"allow_plaintext_auth": true';
    assert.equal(why(c), msg, show(c));
    assert.equal(why(s), msg, show(s));
    assert.equal(lib.sessions(peer.out).length, 0, 'send connected');
});

test('plaintext custom transport + basic auth + allow_plaintext_auth: check and send accept', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
    const cfg = config(dir, peer, { transport: 'clear', auth: basic, allow_plaintext_auth: true });
    const c = await check(cfg);
    assert.equal(c.code, 0, show(c));
    const s = await send(cfg);
    assert.equal(s.code, 0, show(s));
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].meta.user, 'app');
    assert.equal(msgs[0].subject, 'custom transport');
});

test('a transport declaring TLS whose stream is not encrypted: send refuses at AUTH', async (t) => {
    for (const allow of [false, true]) {
        const dir = lib.tmpdir(t);
        const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
        const extra = { transport: 'liar', auth: basic };
        if (allow) extra.allow_plaintext_auth = true;
        const cfg = config(dir, peer, extra);
        const c = await check(cfg);
        assert.equal(c.code, 0, `declared TLS: check trusts the declaration\n${show(c)}`);
        const s = await lib.runCli(['--config', cfg, '-v', 'send', '--to', 'to@example.test',
            '--subject', 's', '--body', 'b\n'], { env });
        assert.equal(s.code, 69, show(s));
        assert.match(s.stderr, /refusing to send credentials: the transport declares TLS but the connection is not encrypted/, show(s));
        assert.match(s.stderr, /\bauth\b/, show(s));
        await lib.waitFor(() => lib.events(peer.out).some((l) => l.endsWith(' close')), 5000, 25, 'close');
        const ev = lib.events(peer.out);
        assert.equal(lib.sessions(peer.out).length, 1, ev.join('\n'));
        assert.ok(!ev.some((l) => / auth /.test(l)), `no AUTH reached the server\n${ev.join('\n')}`);
        assert.ok(!s.stderr.includes(PASSWORD), 'the password in the output');
        assert.equal(lib.messageCount(peer.out), 0);
    }
});

test('transport_options: unknown key and validate errors with JSON paths (78)', async (t) => {
    const dir = lib.tmpdir(t);
    const cases = [
        [{ transport: 'clear', transport_options: { fial: 'x' } },
            'servers[0].transport_options.fial: unknown key "fial" for transport "clear" (did you mean "fail"?)'],
        [{ transport: 'clear', transport_options: { fail: '' } },
            'servers[0].transport_options.fail: must be a non-empty string'],
        [{ transport: 'plain', transport_options: {} },
            'servers[0].transport_options: transport "plain" takes no options'],
        [{ transport: 'clear', transport_options: 'tls' },
            'servers[0].transport_options: must be an object, got "tls"'],
    ];
    for (const [extra, line] of cases) {
        const cfg = config(dir, null, extra);
        const c = await check(cfg);
        assert.equal(c.code, 78, show(c));
        assert.ok(c.stderr.includes(line), `${line}\n${show(c)}`);
    }
});

test('transport_options reach connect (mc_connect_opts.options)', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const ok = config(dir, peer, { transport: 'clear', transport_options: {} });
    const s0 = await send(ok);
    assert.equal(s0.code, 0, show(s0));
    assert.equal(lib.messageCount(peer.out), 1);
    const bad = config(dir, peer, { transport: 'clear', transport_options: { fail: 'options seen' } });
    const c = await check(bad);
    assert.equal(c.code, 0, show(c));
    const s = await send(bad);
    assert.equal(s.code, 75, show(s));
    assert.match(s.stderr, /transport clear: options seen/, show(s));
    assert.equal(lib.messageCount(peer.out), 1);
});

// The stage filling rule (docs/plugins.md): a plugin error without a stage
// gets the stage of the op that failed, here connect.
test('a transport error without a stage is reported at stage connect', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer, { transport: 'clear', transport_options: { fail: 'nostage: refused' } });
    const s = await lib.runCli(['--config', cfg, 'test', '--to', 'to@example.test'], { env });
    assert.equal(s.code, 75, show(s));
    assert.match(s.stdout + s.stderr, /connect/, show(s));
    const j = await lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test', '--subject', 's',
        '--body', 'b\n'], { env });
    assert.equal(j.code, 75, show(j));
    assert.match(j.stderr, /: connect: transport clear: nostage: refused/, show(j));
});
