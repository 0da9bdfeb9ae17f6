// The top-level log (issue 12, DESIGN.md "System mail: sendmail and the
// queue", Logging): a config's top-level "log_file" and "syslog" get one
// line per message outcome and per failure, those before a server is chosen
// included (64 bad command line or unknown --server, 65 bad message, 78
// config invalid or unsafe).
//
// syslog: mailconn runs in a private mount namespace (unshare -m, root only)
// whose /dev is a test-owned folder: the machine's null/zero/random/urandom
// bound into it and, as "log", a unix datagram socket a python3 listener
// binds. The listener prints every datagram as a JSON line; it is stopped by
// PID. After each run the test sends a marker datagram: the lines before it
// are that run's, counted exactly. Asserted: priority (facility mail = 2:
// <22> info, <19> err; local3 = 19: <158>, <155>), ident mailconn[PID],
// envelope, outcome, reply, no secret, one line per outcome (a refused
// message is not logged twice).
//
// log_file: created 0600; gets sent messages and the 64/65/78 failures,
// also from a config that does not load (an inline secret in a group-readable
// file, a bad port) as long as its top-level log keys are valid; a config
// others could write, or one that is not JSON, is not read at all: nothing
// logged.
//
// A Microsoft refresh token within 14 days of its 90-day limit (the rule of
// `mailconn servers`) gets a warning line there; a young one does not.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const lib = require('../peers/lib');

const PASSWORD = 'pw-Syslog-Secret-5521';
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

// The /dev/log listener: binds argv[1], prints {"ready":true,"pid":N}, then
// one JSON line {"d": text} per datagram.
const LISTENER = `
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
while True:
    d = s.recv(65536)
    print(json.dumps({"d": d.decode("utf-8", "backslashreplace")}), flush=True)
`;

// One datagram (argv[2]) to the socket argv[1]: the end-of-run marker.
const SEND_MARK = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[2].encode(), sys.argv[1])
`;

// Inside the namespace: the devices mailconn may open, then the folder over
// /dev (rbind: with the devices bound into it), then mailconn.
const NS_SCRIPT = 'for f in null zero random urandom; do : > "$D/$f" && mount --bind "/dev/$f" "$D/$f" || exit 90; done; '
    + 'mount --rbind "$D" /dev || exit 90; exec "$@"';

function canUnshare() {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { timeout: 10000 });
    return r.status === 0;
}

async function startListener(sock) {
    const child = spawn(PYTHON, ['-u', '-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = [];
    let buf = '';
    let err = '';
    let readyResolve;
    const ready = new Promise((r) => { readyResolve = r; });
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
        buf += d.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
            const m = JSON.parse(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
            if (m.ready) readyResolve(m);
            else lines.push(m.d);
        }
    });
    const exited = new Promise((r) => child.once('exit', r));
    const r = await Promise.race([ready, exited.then(() => null), lib.sleep(10000).then(() => null)]);
    if (!r) {
        try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
        throw new Error(`syslog listener not ready: ${err}`);
    }
    return {
        lines,
        pid: child.pid,
        async stop() {
            try { process.kill(child.pid, 'SIGTERM'); } catch (_) { return; }
            const gone = await Promise.race([exited.then(() => true), lib.sleep(5000).then(() => false)]);
            if (!gone) {
                try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
                await Promise.race([exited, lib.sleep(2000)]);
            }
        },
    };
}

function server(peer, extra = {}) {
    return Object.assign({
        name: 'local', host: peer.host, port: peer.port, transport: 'plain',
        allow_plaintext_auth: true,
        auth: { provider: 'basic', user: 'app', password: PASSWORD },
        sender: { address: 'app@example.test' },
    }, extra);
}

function logLines(file) {
    try {
        return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length);
    } catch (_) {
        return [];
    }
}

const SEND = ['send', '--to', 'to@example.test', '--subject', 'log test', '--body', 'body\n'];

test('syslog: a sent message, a refused one, a 65, a 64 and a 78 reach /dev/log', async (t) => {
    if (!canUnshare()) {
        t.skip('needs root and unshare --mount (a private mount namespace)');
        return;
    }
    const dir = lib.tmpdir(t);
    const dev = path.join(dir, 'dev');
    fs.mkdirSync(dev, { mode: 0o755 });
    const listener = await startListener(path.join(dev, 'log'));
    t.after(() => listener.stop());
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true,
        rejectRcpt: 'nobody@example.test' });
    const inNs = (cfg, args, opts = {}) => lib.run('unshare',
        ['--mount', '--propagation', 'private', 'sh', '-c', NS_SCRIPT, 'sh', process.env.MAILCONN_BIN,
            '--config', cfg, ...args], Object.assign({ env: { D: dev } }, opts));
    // every datagram of a run is queued before mailconn exits; a marker the
    // test sends after it then closes the run's lines (one socket, in order),
    // so each run's count is exact
    let marks = 0;
    const runLogged = async (cfg, args, n, opts) => {
        const before = listener.lines.length;
        const r = await inNs(cfg, args, opts);
        assert.notEqual(r.code, 90, `namespace setup failed: ${r.stderr}`);
        const mark = `test-mark-${++marks}`;
        const m = spawnSync(PYTHON, ['-c', SEND_MARK, path.join(dev, 'log'), mark], { timeout: 10000 });
        assert.equal(m.status, 0, String(m.stderr));
        const at = await lib.waitFor(() => {
            const i = listener.lines.indexOf(mark, before);
            return i >= 0 ? i + 1 : 0;
        }, 5000, 25, `marker ${mark}`);
        const lines = listener.lines.slice(before, at - 1);
        assert.equal(lines.length, n, `${args.join(' ')}: ${lines.join('\n')}`);
        return { r, lines };
    };

    const cfg = lib.writeConfig(dir, { syslog: true, servers: [server(peer)] });

    // sent: <22> = mail.info
    let { r, lines } = await runLogged(cfg, SEND, 1);
    assert.equal(r.code, 0, r.stderr);
    assert.match(lines[0], /^<22>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d mailconn\[\d+\]: /);
    assert.match(lines[0], /server=local from=<app@example\.test> to=<to@example\.test> outcome=sent reply="250[ -]/);
    assert.match(lines[0], /message-id=<[^>]+>/);

    // a refused recipient (the only one): the send path logs it with the
    // server's reply; the CLI's report of the same error adds no second line
    ({ r, lines } = await runLogged(cfg, ['send', '--to', 'nobody@example.test', '--subject', 's',
        '--body', 'b'], 1));
    assert.equal(r.code, 69, r.stderr);
    assert.match(lines[0], /^<19>.* mailconn\[\d+\]: server=local from=<app@example\.test> to=<nobody@example\.test> outcome=failed reply="5\.1\.1 Recipient address rejected/);

    // 65: a bad address on the command line, before a server is chosen
    ({ r, lines } = await runLogged(cfg, ['send', '--to', 'not an address', '--subject', 's',
        '--body', 'b'], 1));
    assert.equal(r.code, 65, r.stderr);
    assert.match(lines[0], /^<19>.* mailconn\[\d+\]: command=send outcome=failed exit=65 stage=\S+ error=".*not an address/);

    // 65 from sendmail: a header line with a bare CR
    ({ r, lines } = await runLogged(cfg, ['sendmail', 'to@example.test'], 1,
        { input: 'Subject: a\rb\n\nbody\n' }));
    assert.equal(r.code, 65, r.stderr);
    assert.match(lines[0], /^<19>.* mailconn\[\d+\]: command=sendmail outcome=failed exit=65 /);

    // 78: the config is invalid in one server, its top-level syslog valid
    const bad = lib.writeConfig(dir, { syslog: true, servers: [server(peer, { port: '587a' })] },
        'bad.json');
    ({ r, lines } = await runLogged(bad, SEND, 1));
    assert.equal(r.code, 78, r.stderr);
    assert.match(lines[0], /^<19>.* mailconn\[\d+\]: command=send outcome=failed exit=78 stage=config error=".*servers\[0\]\.port/);

    // a facility by name: local3 (19) -> <158> info, <155> err; 64: unknown --server
    const l3 = lib.writeConfig(dir, { syslog: 'local3', servers: [server(peer)] }, 'local3.json');
    ({ r, lines } = await runLogged(l3, SEND, 1));
    assert.equal(r.code, 0, r.stderr);
    assert.match(lines[0], /^<158>.* mailconn\[\d+\]: server=local .*outcome=sent/);
    ({ r, lines } = await runLogged(l3, ['send', '--server', 'nosuch', ...SEND.slice(1)], 1));
    assert.equal(r.code, 64, r.stderr);
    assert.match(lines[0], /^<155>.* mailconn\[\d+\]: command=send outcome=failed exit=64 .*nosuch/);

    // no secret anywhere
    assert.equal(listener.lines.length, 7 + marks, listener.lines.join('\n'));
    for (const l of listener.lines) assert.ok(!l.includes(PASSWORD), l);
    assert.equal(lib.messageCount(peer.out), 2);
});

test('log_file: sent messages and 64/65/78 failures, created 0600; unreadable configs log nothing', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t, users: { app: PASSWORD }, allowInsecureAuth: true });
    const log = path.join(dir, 'mailconn.log');
    const doc = (extra = {}) => ({ log_file: log, servers: [server(peer, extra)] });
    const cfg = lib.writeConfig(dir, doc());
    const cli = async (c, args, opts) => {
        const before = logLines(log).length;
        const r = await lib.runCli(['--config', c, ...args], opts);
        return { r, lines: logLines(log).slice(before) };
    };

    let { r, lines } = await cli(cfg, SEND);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.statSync(log).mode & 0o777, 0o600);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ server=local from=<app@example\.test> to=<to@example\.test> outcome=sent reply="250/);

    // sendmail, sent
    ({ r, lines } = await cli(cfg, ['sendmail', '-f', 'app@example.test', 'a@example.test,b@example.test'],
        { input: 'Subject: x\n\nbody\n' }));
    assert.equal(r.code, 0, r.stderr);
    assert.match(lines[0], /from=<app@example\.test> to=<a@example\.test>,<b@example\.test> outcome=sent/);

    // 65: a bad address
    ({ r, lines } = await cli(cfg, ['send', '--to', 'bad@@example.test', '--subject', 's', '--body', 'b']));
    assert.equal(r.code, 65, r.stderr);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /Z command=send outcome=failed exit=65 stage=\S+ error=".*bad@@example\.test/);

    // 64: an unknown --server; and a bad option
    ({ r, lines } = await cli(cfg, ['send', '--server', 'nosuch', ...SEND.slice(1)]));
    assert.equal(r.code, 64, r.stderr);
    assert.match(lines[0], /Z command=send outcome=failed exit=64 .*nosuch/);
    ({ r, lines } = await cli(cfg, ['send', '--no-such-option']));
    assert.equal(r.code, 64, r.stderr);
    assert.match(lines[0], /Z command=send outcome=failed exit=64 error="send: bad option"/);

    // 78, unsafe: an inline secret in a group-readable file; the top-level
    // log_file is still read
    const unsafe = lib.writeConfig(dir, doc(), 'unsafe.json');
    fs.chmodSync(unsafe, 0o640);
    ({ r, lines } = await cli(unsafe, SEND));
    assert.equal(r.code, 78, r.stderr);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /Z command=send outcome=failed exit=78 stage=config error=".*inline secret/);

    // 78, invalid in one server
    const invalid = lib.writeConfig(dir, doc({ port: 70000 }), 'invalid.json');
    ({ r, lines } = await cli(invalid, ['sendmail', 'a@example.test'], { input: 'Subject: x\n\nb\n' }));
    assert.equal(r.code, 78, r.stderr);
    assert.match(lines[0], /Z command=sendmail outcome=failed exit=78 stage=config error=".*servers\[0\]\.port/);

    // not read at all: a config others could change (it would choose where
    // mailconn writes), one that is not JSON, one whose log_file is invalid
    const open = lib.writeConfig(dir, doc(), 'open.json');
    fs.chmodSync(open, 0o666);
    ({ r, lines } = await cli(open, SEND));
    assert.equal(r.code, 78, r.stderr);
    assert.deepEqual(lines, []);
    const broken = lib.writeConfig(dir, `{"log_file": ${JSON.stringify(log)}, "servers": [`, 'broken.json');
    ({ r, lines } = await cli(broken, SEND));
    assert.equal(r.code, 78, r.stderr);
    assert.deepEqual(lines, []);

    for (const l of logLines(log)) assert.ok(!l.includes(PASSWORD), l);
    assert.equal(lib.messageCount(peer.out), 2);
});

test('config: log_file and syslog are checked with their JSON paths', async (t) => {
    const dir = lib.tmpdir(t);
    const base = { servers: [{ name: 'x', host: '127.0.0.1', port: 2525, transport: 'plain' }] };
    for (const [extra, re] of [
        [{ syslog: 'kern' }, /syslog: must be true, false or a facility name/],
        [{ syslog: 1 }, /syslog: must be true, false or a facility name .*got 1/],
        [{ log_file: '' }, /log_file: must not be empty/],
        [{ log_file: 7 }, /log_file: must be a string/],
        [{ syslogg: true }, /unknown key "syslogg" .*did you mean "syslog"/],
    ]) {
        const cfg = lib.writeConfig(dir, Object.assign({}, base, extra));
        const r = await lib.runCli(['--config', cfg, 'check']);
        assert.equal(r.code, 78, `${JSON.stringify(extra)}: ${r.stderr}`);
        assert.match(r.stderr, re);
    }
    for (const extra of [{ syslog: true }, { syslog: false }, { syslog: 'local7' },
        { syslog: 'daemon', log_file: path.join(dir, 'x.log') }]) {
        const cfg = lib.writeConfig(dir, Object.assign({}, base, extra));
        const r = await lib.runCli(['--config', cfg, 'check']);
        assert.equal(r.code, 0, `${JSON.stringify(extra)}: ${r.stderr}`);
    }
});

test('a Microsoft refresh token near its 90-day limit is warned about in the top-level log', async (t) => {
    const dir = lib.tmpdir(t);
    const ACCESS = 'at-Syslog-Access-90210';
    const REFRESH = 'rt-Syslog-Refresh-31337';
    const peer = await lib.startPeer({ t, tokens: { 'me@example.test': ACCESS }, allowInsecureAuth: true });
    const log = path.join(dir, 'mailconn.log');
    const tokenUrl = 'https://127.0.0.1:9/never-asked/token';   // the access token is still valid
    const cfg = lib.writeConfig(dir, { log_file: log, servers: [{
        name: 'outlook', host: peer.host, port: peer.port, transport: 'plain', allow_plaintext_auth: true,
        sender: { address: 'me@example.test' },
        auth: { provider: 'microsoft', tenant: 'organizations', user: 'me@example.test',
            client_id: 'cid-syslog', token_url: tokenUrl },
    }] });
    const state = path.join(dir, 'state');
    fs.mkdirSync(path.join(state, 'tokens'), { recursive: true, mode: 0o700 });
    const now = Math.floor(Date.now() / 1000);
    const seed = (ageDays) => fs.writeFileSync(path.join(state, 'tokens', 'outlook.json'), JSON.stringify({
        identity: { provider: 'microsoft', client_id: 'cid-syslog', user: 'me@example.test', token_url: tokenUrl },
        access_token: ACCESS, expires_at: now + 3600, access_issued_at: now,
        refresh_token: REFRESH, refresh_issued_at: now - ageDays * 86400 - 60, refresh_used_at: now,
        scope: null,
    }), { mode: 0o600 });
    const send = async () => {
        const before = logLines(log).length;
        const r = await lib.runCli(['--config', cfg, ...SEND], { env: { MAILCONN_STATE_DIR: state } });
        return { r, lines: logLines(log).slice(before) };
    };

    seed(10);
    let { r, lines } = await send();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0], /server=outlook from=<me@example\.test> .*outcome=sent/);

    seed(80);
    ({ r, lines } = await send());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0], /Z server=outlook warning=refresh-token-near-90-day-limit refresh-age=80d hint="authorize server outlook again before it expires" action=reauthorize/);
    assert.match(lines[1], /outcome=sent/);
    for (const l of logLines(log)) {
        assert.ok(!l.includes(ACCESS) && !l.includes(REFRESH), l);
    }
});

test('a Google refresh token in the last day before the 7-day Testing limit is warned about; past it, not', async (t) => {
    const dir = lib.tmpdir(t);
    const ACCESS = 'at-Syslog-Google-4711';
    const REFRESH = 'rt-Syslog-Google-0815';
    const peer = await lib.startPeer({ t, tokens: { 'me@example.test': ACCESS }, allowInsecureAuth: true });
    const log = path.join(dir, 'mailconn.log');
    const tokenUrl = 'https://127.0.0.1:9/never-asked/token';   // the access token is still valid
    const cfg = lib.writeConfig(dir, { log_file: log, servers: [{
        name: 'gmail', host: peer.host, port: peer.port, transport: 'plain', allow_plaintext_auth: true,
        sender: { address: 'me@example.test' },
        auth: { provider: 'google', user: 'me@example.test', client_id: 'cid-google', token_url: tokenUrl },
    }] });
    const state = path.join(dir, 'state');
    fs.mkdirSync(path.join(state, 'tokens'), { recursive: true, mode: 0o700 });
    const now = Math.floor(Date.now() / 1000);
    const seed = (ageDays) => fs.writeFileSync(path.join(state, 'tokens', 'gmail.json'), JSON.stringify({
        identity: { provider: 'google', client_id: 'cid-google', user: 'me@example.test', token_url: tokenUrl },
        access_token: ACCESS, expires_at: now + 3600, access_issued_at: now,
        refresh_token: REFRESH, refresh_issued_at: now - ageDays * 86400 - 60, refresh_used_at: now,
        scope: null,
    }), { mode: 0o600 });
    const env = { MAILCONN_STATE_DIR: state };
    const send = async () => {
        const before = logLines(log).length;
        const r = await lib.runCli(['--config', cfg, ...SEND], { env });
        return { r, lines: logLines(log).slice(before) };
    };
    for (const [age, warned] of [[5, false], [6, true], [8, false]]) {
        seed(age);
        const { r, lines } = await send();
        assert.equal(r.code, 0, r.stderr);
        assert.equal(lines.length, warned ? 2 : 1, `age ${age}:\n${lines.join('\n')}`);
        if (warned) {
            assert.match(lines[0], new RegExp(`server=gmail warning=refresh-token-near-7-day-testing-limit refresh-age=${age}d`));
        }
        assert.match(lines[lines.length - 1], /outcome=sent/);
        const s = await lib.runCli(['--config', cfg, 'servers'], { env });
        assert.equal(s.code, 0, s.stderr);
        assert.equal(/WARNING:refresh-token-near-7-day-testing-limit/.test(s.stdout), warned, `servers, age ${age}: ${s.stdout}`);
    }
    for (const l of logLines(log)) {
        assert.ok(!l.includes(ACCESS) && !l.includes(REFRESH), l);
    }
});

test.after(() => lib.stopAll());
