// Helpers for mailconn's integration tests (tests/integration/test-*.js):
// temporary folders, a throwaway CA, real SMTP peers, running the CLI, and
// parsing what the peers received. CommonJS: require('../peers/lib').
//
// Everything started or created here is stopped or removed when the process
// exits, even after a failure. Every wait is bounded.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn, execFileSync } = require('node:child_process');

const PEERS_DIR = __dirname;
const tmpdirs = new Set();
const peers = new Map();   // pid -> child

function keepTmp() {
    return !!process.env.MAILCONN_KEEP_TMP;
}

process.on('exit', () => {
    for (const child of peers.values()) {
        try { child.kill('SIGKILL'); } catch (_) { /* already gone */ }
    }
    if (keepTmp()) return;
    for (const d of tmpdirs) {
        try { fs.rmSync(d, { recursive: true, force: true }); } catch (_) { /* best effort */ }
    }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A fresh private folder, removed at exit (or at t's end when a node:test
 *  context is given). */
function tmpdir(t) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mailconn-it-'));
    fs.chmodSync(d, 0o700);
    tmpdirs.add(d);
    if (t && typeof t.after === 'function') {
        t.after(() => {
            if (keepTmp()) return;
            fs.rmSync(d, { recursive: true, force: true });
            tmpdirs.delete(d);
        });
    }
    return d;
}

/** Make the test PKI in dir (tests/peers/mkca.sh). Returns the paths. */
function mkca(dir) {
    execFileSync('sh', [path.join(PEERS_DIR, 'mkca.sh'), dir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
    const pair = (n) => ({ cert: path.join(dir, `${n}.pem`), key: path.join(dir, `${n}.key`) });
    return {
        dir,
        ca: path.join(dir, 'ca.pem'),
        otherCa: path.join(dir, 'other-ca.pem'),
        server: pair('server'),
        wronghost: pair('wronghost'),
        expired: pair('expired'),
        untrusted: pair('untrusted'),
    };
}

function pairsArg(v) {
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) return v.join(',');
    return Object.entries(v).map(([u, p]) => `${u}:${p}`).join(',');
}

function peerArgs(o) {
    const a = ['--out', o.out, '--port', String(o.port || 0), '--host', o.host || '127.0.0.1',
        '--tls', o.tls || 'none'];
    if (o.cert) a.push('--cert', o.cert);
    if (o.key) a.push('--key', o.key);
    if (o.tlsMax) a.push('--tls-max', String(o.tlsMax));
    if (o.starttls === false) a.push('--no-starttls');
    if (o.users) a.push('--users', pairsArg(o.users));
    if (o.tokens) a.push('--tokens', pairsArg(o.tokens));
    if (o.authOptional) a.push('--auth-optional');
    if (o.allowInsecureAuth) a.push('--allow-insecure-auth');
    if (o.size) a.push('--size', String(o.size));
    if (o.rejectRcpt) a.push('--reject-rcpt', [].concat(o.rejectRcpt).join(','));
    if (o.hidePipelining) a.push('--hide-pipelining');
    if (o.enhanced) a.push('--enhanced-status');
    if (o.banner) a.push('--banner', o.banner);
    return a.concat(o.extraArgs || []);
}

/* Spawn node SCRIPT (in tests/peers) with args; wait (bounded) for its
 * {"ready":true,"port":N,"pid":P} line. stderr goes to out/peer.stderr. */
async function spawnPeer(script, args, o) {
    const errFile = path.join(o.out, 'peer.stderr');
    const errFd = fs.openSync(errFile, 'a');
    const child = spawn(process.execPath, [path.join(PEERS_DIR, script), ...args], {
        stdio: ['ignore', 'pipe', errFd],
        cwd: PEERS_DIR,
    });
    fs.closeSync(errFd);
    peers.set(child.pid, child);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
        peers.delete(child.pid);
        resolve({ code, signal });
    }));
    const stderr = () => {
        try { return fs.readFileSync(errFile, 'utf8'); } catch (_) { return ''; }
    };

    const limit = o.readyTimeoutMs || 10000;
    let timer;
    const ready = await new Promise((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', (d) => {
            buf += d.toString();
            const nl = buf.indexOf('\n');
            if (nl < 0) return;
            try {
                const msg = JSON.parse(buf.slice(0, nl));
                if (msg.ready) resolve(msg);
                else reject(new Error(`${script}: unexpected first line ${buf.slice(0, nl)}`));
            } catch (e) {
                reject(new Error(`${script}: unreadable first line ${buf.slice(0, nl)}`));
            }
        });
        exited.then(({ code, signal }) => {
            let why = stderr().trim();
            if (/Cannot find module/.test(why)) why += '\n(run `npm ci` in tests/peers)';
            reject(new Error(`${script} exited (code ${code}, signal ${signal}) before it was ready:\n${why}`));
        });
        timer = setTimeout(() => reject(new Error(`${script} not ready within ${limit} ms:\n${stderr()}`)), limit);
    }).catch(async (e) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        await Promise.race([exited, sleep(2000)]);
        throw e;
    });
    clearTimeout(timer);
    child.stdout.destroy();
    child.unref();

    let stopped = null;
    const peer = {
        port: ready.port,
        pid: ready.pid,
        host: o.host || '127.0.0.1',
        out: o.out,
        ready,
        stderr,
        /** SIGTERM, wait for the exit (5 s), then SIGKILL. */
        stop() {
            if (stopped) return stopped;
            stopped = (async () => {
                if (!peers.has(child.pid)) return;
                try { process.kill(child.pid, 'SIGTERM'); } catch (_) { return; }
                const r = await Promise.race([exited, sleep(5000).then(() => null)]);
                if (r === null) {
                    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
                    await Promise.race([exited, sleep(2000)]);
                }
            })();
            return stopped;
        },
    };
    if (o.t && typeof o.t.after === 'function') o.t.after(() => peer.stop());
    return peer;
}

/**
 * Start tests/peers/smtp-peer.js. opts: port (0), host ('127.0.0.1' | '::1'),
 * tls ('none' | 'implicit' | 'starttls'), cert, key, tlsMax ('1.2'), starttls
 * (false: --no-starttls), users ({u: p} | 'u:p,..' | ['u:p']), tokens,
 * authOptional, allowInsecureAuth, size, rejectRcpt (address or list),
 * hidePipelining, enhanced, banner, extraArgs, out (default: a new tmpdir),
 * t (node:test context: stopped at its end), readyTimeoutMs (10000).
 * @returns {Promise<{port, pid, host, out, ready, stderr(), stop()}>}
 */
async function startPeer(opts = {}) {
    const o = Object.assign({}, opts);
    // removed at exit, after the peer is gone: a t.after() removal could run
    // before the peer's own stop() and race its last events.log line
    o.out = o.out || tmpdir();
    fs.mkdirSync(o.out, { recursive: true });
    return spawnPeer('smtp-peer.js', peerArgs(o), o);
}

/**
 * Start another peer script of tests/peers that follows the same protocol
 * (prints the ready line, stops on SIGTERM), e.g. fault-peer.js. It gets
 * --out OUT --port PORT --host HOST, then --script JSON when opts.script is
 * given, then opts.args. Other opts as startPeer (out, t, readyTimeoutMs).
 */
async function startScript(script, opts = {}) {
    const o = Object.assign({}, opts);
    o.out = o.out || tmpdir();   // removed at exit, as in startPeer
    fs.mkdirSync(o.out, { recursive: true });
    const args = ['--out', o.out, '--port', String(o.port || 0), '--host', o.host || '127.0.0.1'];
    if (o.script !== undefined) args.push('--script', JSON.stringify(o.script));
    return spawnPeer(script, args.concat(o.args || []), o);
}

/** Stop every peer still running. */
async function stopAll() {
    await Promise.all([...peers.keys()].map((pid) => new Promise((resolve) => {
        const child = peers.get(pid);
        if (!child) return resolve();
        const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } resolve(); }, 5000);
        child.once('exit', () => { clearTimeout(timer); resolve(); });
        try { child.kill('SIGTERM'); } catch (_) { clearTimeout(timer); resolve(); }
    })));
}

/** Write obj as JSON to dir/name (default config.json), mode 0600. */
function writeConfig(dir, obj, name = 'config.json') {
    const p = path.join(dir, name);
    const text = typeof obj === 'string' ? obj : JSON.stringify(obj, null, 2);
    fs.writeFileSync(p, text, { mode: 0o600 });
    fs.chmodSync(p, 0o600);
    return p;
}

/**
 * Run a program: {env (added to process.env), input (string/Buffer for
 * stdin), timeoutMs (60000), cwd}. Never rejects for a non-zero exit.
 * @returns {Promise<{code, signal, stdout, stderr, timedOut}>}
 */
function run(bin, args = [], opts = {}) {
    const timeoutMs = opts.timeoutMs || 60000;
    return new Promise((resolve, reject) => {
        let child;
        try {
            child = spawn(bin, args, {
                env: Object.assign({}, process.env, opts.env || {}),
                cwd: opts.cwd,
                stdio: ['pipe', 'pipe', 'pipe'],
            });
        } catch (e) {
            reject(e);
            return;
        }
        const out = [];
        const err = [];
        let timedOut = false;
        child.stdout.on('data', (d) => out.push(d));
        child.stderr.on('data', (d) => err.push(d));
        child.stdin.on('error', () => { /* the program may not read its input */ });
        const timer = setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
        }, timeoutMs);
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            let stderr = Buffer.concat(err).toString();
            if (timedOut) stderr += `\n[killed: ${path.basename(bin)} ran over ${timeoutMs} ms]\n`;
            resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr, timedOut });
        });
        if (opts.input !== undefined && opts.input !== null) child.stdin.end(opts.input);
        else child.stdin.end();
    });
}

/**
 * Run the CLI (MAILCONN_BIN) for a dialogue: opts.env is added to the
 * environment, where BROWSER, DISPLAY and WAYLAND_DISPLAY are removed unless
 * given (no browser is started); opts.input goes to stdin, which is then
 * closed; opts.onLine(line, child) gets each stderr line as it comes (stdin
 * stays open until it is closed there; a rejection kills the CLI);
 * opts.timeoutMs (60000) kills it. Never rejects for a non-zero exit.
 * @returns {Promise<{code, signal, stdout, stderr, ms}>}
 */
function runLines(args, opts = {}) {
    const env = Object.assign({}, process.env);
    delete env.BROWSER;
    delete env.DISPLAY;
    delete env.WAYLAND_DISPLAY;
    Object.assign(env, opts.env || {});
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const child = spawn(process.env.MAILCONN_BIN, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        let pending = '';
        const timer = setTimeout(() => {
            err += '\n[test: killed after the time limit]';
            child.kill('SIGKILL');
        }, opts.timeoutMs || 60000);
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => {
            err += d;
            pending += d;
            let nl;
            while ((nl = pending.indexOf('\n')) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                if (opts.onLine) {
                    Promise.resolve(opts.onLine(line, child)).catch((e) => {
                        err += `\n[test: ${e.message}]`;
                        child.kill('SIGKILL');
                    });
                }
            }
        });
        child.stdin.on('error', () => { /* the CLI may not read stdin */ });
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout: out, stderr: err, ms: Date.now() - started });
        });
        if (opts.input !== undefined) child.stdin.end(opts.input);
        else if (!opts.onLine) child.stdin.end();
    });
}

/** Run the mailconn CLI ($MAILCONN_BIN) with run()'s options. */
function runCli(args, opts = {}) {
    const bin = opts.bin || process.env.MAILCONN_BIN;
    if (!bin) throw new Error('MAILCONN_BIN is not set (run the tests with meson test)');
    return run(bin, args, opts);
}

/** Poll fn (sync or async) every intervalMs until it returns a truthy value,
 *  which is returned; throws after timeoutMs (10000). */
async function waitFor(fn, timeoutMs = 10000, intervalMs = 25, what = 'condition') {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() >= end) throw new Error(`waitFor: ${what} not met within ${timeoutMs} ms`);
        await sleep(intervalMs);
    }
}

/** The lines of out/events.log ("<sessionId> <event> ..."), [] when none. */
function events(out) {
    let text;
    try { text = fs.readFileSync(path.join(out, 'events.log'), 'utf8'); } catch (_) { return []; }
    return text.split('\n').filter((l) => l.length);
}

/** The distinct session ids that connected, in order. */
function sessions(out) {
    const ids = [];
    for (const l of events(out)) {
        const [id, ev] = l.split(' ');
        if (ev === 'connect' && !ids.includes(id)) ids.push(id);
    }
    return ids;
}

/** Parse one message (Buffer or string) with mailparser's simpleParser. */
async function parseMessage(raw) {
    const { simpleParser } = require('mailparser');
    const m = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true });
    const headers = {};
    for (const [k, v] of m.headers) headers[k] = v;
    const addrs = (a) => (a ? [].concat(a).flatMap((x) => x.value.map((y) => y.address)) : []);
    return {
        headers,                        // lower-case name -> mailparser's value
        headerLines: m.headerLines,     // [{key, line}] as received
        subject: m.subject,
        messageId: m.messageId,
        date: m.date,
        from: m.from ? m.from.value : [],
        fromText: m.from ? m.from.text : '',
        to: addrs(m.to),
        cc: addrs(m.cc),
        bcc: addrs(m.bcc),
        text: m.text,
        html: m.html || null,
        attachments: (m.attachments || []).map((a) => ({
            filename: a.filename,
            contentType: a.contentType,
            size: a.content.length,
            sha256: crypto.createHash('sha256').update(a.content).digest('hex'),
        })),
    };
}

/** Every message the peer stored in out, in arrival order:
 *  [{n, meta: {mailFrom, rcptTo, user, secure, sessionId, transmissionType},
 *    raw (Buffer), ...parseMessage()}]. */
async function readMessages(out) {
    let names;
    try { names = fs.readdirSync(out); } catch (_) { return []; }
    const ns = names.map((f) => /^(\d+)\.json$/.exec(f)).filter(Boolean)
        .map((m) => Number(m[1])).sort((a, b) => a - b);
    const res = [];
    for (const n of ns) {
        const meta = JSON.parse(fs.readFileSync(path.join(out, `${n}.json`), 'utf8'));
        const raw = fs.readFileSync(path.join(out, `${n}.eml`));
        res.push(Object.assign({ n, meta, raw }, await parseMessage(raw)));
    }
    return res;
}

/** How many messages the peer has stored so far. */
function messageCount(out) {
    try { return fs.readdirSync(out).filter((f) => /^\d+\.json$/.test(f)).length; } catch (_) { return 0; }
}

/** sha256 hex of a Buffer or string. */
function sha256(data) {
    return crypto.createHash('sha256').update(data).digest('hex');
}

module.exports = {
    PEERS_DIR,
    spawnPeer,
    tmpdir,
    mkca,
    startPeer,
    startScript,
    stopAll,
    writeConfig,
    run,
    runCli,
    runLines,
    waitFor,
    events,
    sessions,
    parseMessage,
    readMessages,
    messageCount,
    sha256,
    sleep,
};
