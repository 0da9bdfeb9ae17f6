// Fault injection (issue 5): every fault the SMTP server or the token
// endpoint can throw at mailconn, injected by tests/peers/fault-peer.js and
// tests/peers/http-fault.js (fault injectors: real servers will not misbehave
// on request). Each case runs the CLI (`mailconn send`) and send-probe (the
// public API, printing the mc_err fields as JSON) against two fresh peers
// with the same script, and asserts:
//   - the stage, the reply code (when the server spoke), the error code, the
//     transient flag (probe);
//   - the CLI exit code from DESIGN.md's outcome table, and that no stdout
//     line begins with "sent";
//   - that neither process crashed (no signal) nor ran past its bound;
//   - that every connection the peer saw was closed ("<n> close").
// Cases run concurrently: most of their time is spent waiting (timeouts of
// 2 s, throttling pauses of 0.25 + 1 + 4 s).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

const PROBE = process.env.MAILCONN_SEND_PROBE;
const PASSWORD = 'fault-Pass-5521';
const CLIENT_SECRET = 'fault-client-Secret-8812';
const sanitized = (process.env.MAILCONN_SANITIZE || 'none') !== 'none';
const slow = sanitized ? 2 : 1;   // time bounds are doubled under sanitizers

let pki;
let base;
let bigBody;   // 12 MB: more than loopback buffers can hold, so a reset lands mid-DATA

before(() => {
    assert.ok(PROBE, 'MAILCONN_SEND_PROBE is set (run with meson test)');
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
    bigBody = path.join(base, 'big.txt');
    const line = Buffer.from('x'.repeat(76) + '\n');
    const fd = fs.openSync(bigBody, 'w');
    const chunk = Buffer.concat(Array(2048).fill(line));
    for (let n = 0; n < 12 * 1024 * 1024; n += chunk.length) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
});
after(() => lib.stopAll());

const AUTH_EHLO = ['250-fault-peer', '250-PIPELINING', '250-ENHANCEDSTATUSCODES', '250 AUTH PLAIN LOGIN'];
const basicAuth = { provider: 'basic', user: 'app', password_env: 'MC_FAULT_PASSWORD' };
const tlsArgs = () => ['--cert', pki.server.cert, '--key', pki.server.key];

function serverCfg(peer, extra) {
    return Object.assign({
        name: 'fault',
        host: peer.host,
        port: peer.port,
        transport: 'plain',
        timeout_s: 5,
        sender: { address: 'app@example.test' },
    }, extra || {});
}

async function startFault(t, c) {
    const args = typeof c.args === 'function' ? c.args() : (c.args || []);
    return lib.startScript('fault-peer.js', { t, script: c.script, args });
}

/** Every connection the peer saw is closed (bounded wait). */
async function allClosed(out) {
    return lib.waitFor(() => {
        const ev = lib.events(out);
        const opened = ev.filter((l) => / connect$/.test(l)).map((l) => l.split(' ')[0]);
        return opened.every((id) => ev.includes(`${id} close`));
    }, 5000, 25, 'every connection closed');
}

function runCli(cfg, args, env) {
    return lib.runCli(['--config', cfg, ...args], {
        env: Object.assign({ MC_FAULT_PASSWORD: PASSWORD, MC_FAULT_SECRET: CLIENT_SECRET }, env || {}),
        timeoutMs: 60000,
    });
}

async function runProbe(cfg, args, env) {
    const r = await lib.run(PROBE, [cfg, ...args], {
        env: Object.assign({ MC_FAULT_PASSWORD: PASSWORD, MC_FAULT_SECRET: CLIENT_SECRET }, env || {}),
        timeoutMs: 60000,
    });
    assert.equal(r.code, 0, `send-probe: ${r.stderr}`);
    return Object.assign(JSON.parse(r.stdout.trim().split('\n').pop()), { proc: r });
}

/**
 * Run one case. c: {script, args, srv (extra server keys, or a function of
 * the peer), body ('big'), expect: {exit, stage, smtp, code, transient,
 * unknown}, maxMs, conns (connections the peer must have seen), check(events, r, p)}.
 */
async function runCase(t, c) {
    const [pc, pp] = await Promise.all([startFault(t, c), startFault(t, c)]);
    const dir = lib.tmpdir(t);
    const srvFor = (peer) => serverCfg(peer, typeof c.srv === 'function' ? c.srv(peer) : c.srv);
    const cfgC = lib.writeConfig(dir, { servers: [srvFor(pc)] }, 'cli.json');
    const cfgP = lib.writeConfig(dir, { servers: [srvFor(pp)] }, 'probe.json');
    const body = c.body === 'big' ? ['--body-file', bigBody] : ['--body', 'fault test body\n'];
    const t0 = Date.now();
    const [r, p] = await Promise.all([
        runCli(cfgC, ['send', '--to', 'to@example.test', '--subject', 'fault', ...body]).then((x) => {
            x.ms = Date.now() - t0;
            return x;
        }),
        runProbe(cfgP, c.body === 'big' ? ['--body-file', bigBody] : []).then((x) => {
            x.ms = Date.now() - t0;
            return x;
        }),
    ]);
    const e = c.expect;
    const bound = (c.maxMs || 4000) * slow;
    const ctx = `\nCLI stderr:\n${r.stderr}\nprobe: ${JSON.stringify(p)}`;

    // the CLI
    assert.equal(r.signal, null, `the CLI died of a signal${ctx}`);
    assert.equal(r.timedOut, false, `the CLI hung${ctx}`);
    assert.equal(r.code, e.exit, `CLI exit code${ctx}`);
    assert.ok(r.ms < bound, `the CLI took ${r.ms} ms (bound ${bound})${ctx}`);
    assert.doesNotMatch(r.stdout, /^sent/m, `reported as sent${ctx}`);
    if (e.exit !== 78)
        assert.match(r.stderr, new RegExp(`^mailconn: .*${e.stage}: ${e.unknown ? 'outcome unknown: ' : ''}` +
            `${e.smtp ? e.smtp + ' ' : ''}`, 'm'), `stage and reply on stderr${ctx}`);
    if (!e.unknown)
        assert.doesNotMatch(r.stderr, /outcome unknown/, ctx);
    assert.ok(!r.stderr.includes(PASSWORD) && !r.stderr.includes(CLIENT_SECRET), 'a secret in the output');

    // the library's error record
    assert.equal(p.proc.signal, null, `send-probe died of a signal${ctx}`);
    assert.ok(p.ms < bound, `send-probe took ${p.ms} ms (bound ${bound})${ctx}`);
    assert.notEqual(p.rc, 0, `the probe's send succeeded${ctx}`);
    assert.equal(p.stage, e.stage, `stage${ctx}`);
    assert.equal(p.smtp_code, e.smtp || 0, `reply code${ctx}`);
    assert.equal(p.transient, e.transient, `transient flag${ctx}`);
    assert.equal(p.exit, e.exit, `outcome's exit code${ctx}`);
    if (e.code) assert.equal(p.code, e.code, `error code${ctx}`);
    if (e.enhanced !== undefined) assert.equal(p.enhanced, e.enhanced, ctx);
    assert.equal(p.reply, '', `a final reply was recorded${ctx}`);

    // the connections
    for (const peer of [pc, pp]) {
        await allClosed(peer.out);
        const ev = lib.events(peer.out);
        if (c.conns !== undefined)
            assert.equal(lib.sessions(peer.out).length, c.conns, `connections:\n${ev.join('\n')}`);
        if (c.check) c.check(ev, peer);
    }
}

const noCmd = (...verbs) => (ev) => {
    for (const v of verbs)
        assert.ok(!ev.some((l) => l.endsWith(` cmd ${v}`)), `the client sent ${v}:\n${ev.join('\n')}`);
};
// messages whose final dot reached the server ("dot 0" is the empty data
// that ends a DATA the server accepted after refusing the transaction)
const dots = (n) => (ev) => assert.equal(ev.filter((l) => / dot [1-9]\d*$/.test(l)).length, n, ev.join('\n'));

const NET = { code: 'ENET', transient: true, exit: 75 };
const PROTO = { code: 'EPROTO', transient: false, exit: 76 };
const UNKNOWN = { code: 'EUNKNOWN', transient: true, exit: 75, unknown: true };

// ---------------------------------------------------------------- connection drops

describe('SMTP: the connection is closed', { concurrency: 8 }, () => {
    it('before the greeting: 75, stage greeting', (t) => runCase(t, {
        script: { greeting: 'close' },
        expect: Object.assign({ stage: 'greeting' }, NET), conns: 1,
    }));
    it('during EHLO: 75, stage ehlo', (t) => runCase(t, {
        script: { ehlo: 'close' },
        expect: Object.assign({ stage: 'ehlo' }, NET), conns: 1, check: noCmd('MAIL'),
    }));
    it('in answer to AUTH: 75, stage auth, no MAIL', (t) => runCase(t, {
        script: { ehlo: AUTH_EHLO, replies: { AUTH: 'close' } },
        srv: { auth: basicAuth, allow_plaintext_auth: true },
        expect: Object.assign({ stage: 'auth' }, NET), conns: 1, check: noCmd('MAIL'),
    }));
    it('right after a successful AUTH: 75, stage mail, nothing stored', (t) => runCase(t, {
        script: { ehlo: AUTH_EHLO, replies: { AUTH: { raw: '235 2.7.0 ok\r\n', close: true } } },
        srv: { auth: basicAuth, allow_plaintext_auth: true },
        expect: Object.assign({ stage: 'mail' }, NET), conns: 1, check: dots(0),
    }));
    it('in the middle of DATA (reset after 64 KB of 12 MB): 75, stage data, not "unknown"', (t) => runCase(t, {
        script: { dataClose: 65536 },
        body: 'big',
        maxMs: 10000,
        expect: Object.assign({ stage: 'data' }, NET), conns: 1,
        check: (ev) => {
            assert.ok(ev.some((l) => / data-reset \d+$/.test(l)), ev.join('\n'));
            dots(0)(ev);
        },
    }));
    it('after the final dot, before the reply: 75, outcome unknown, not resent', (t) => runCase(t, {
        script: { replies: { DOT: 'close' } },
        expect: Object.assign({ stage: 'data' }, UNKNOWN), conns: 1, check: dots(1),
    }));
});

// ---------------------------------------------------------------- replies

const stageReplies = [
    // [verb in the script, stage reported]
    ['greeting', 'greeting'],
    ['EHLO', 'ehlo'],
    ['MAIL', 'mail'],
    ['RCPT', 'rcpt'],
    ['DATA', 'data'],
    ['DOT', 'data'],
];

function scriptWith(verb, reply) {
    if (verb === 'greeting') return { greeting: reply };
    if (verb === 'EHLO') return { ehlo: reply };
    return { replies: { [verb]: reply } };
}

describe('SMTP: 421 at every stage is retried 3 times, then transient', { concurrency: 6 }, () => {
    for (const [verb, stage] of stageReplies) {
        it(`421 to ${verb}: 4 connections, 75, stage ${stage}`, (t) => runCase(t, {
            script: scriptWith(verb, '421 4.7.0 try again later, closing connection'),
            maxMs: 12000,
            expect: { stage, smtp: 421, code: 'ETEMP', transient: true, exit: 75, enhanced: '4.7.0' },
            conns: 4,
            check: verb === 'DOT' ? dots(4) : dots(0),
        }));
    }
    it('432 4.3.2 at the end of data is throttling too: 4 tries, 75', (t) => runCase(t, {
        script: { replies: { DOT: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded' } },
        maxMs: 12000,
        expect: { stage: 'data', smtp: 432, code: 'ETEMP', transient: true, exit: 75 },
        check: dots(4),
    }));
});

describe('SMTP: 451, 452 and 554 at MAIL, RCPT and end of data', { concurrency: 9 }, () => {
    for (const [verb, stage] of [['MAIL', 'mail'], ['RCPT', 'rcpt'], ['DOT', 'data']]) {
        for (const [code, enh] of [[451, '4.3.0'], [452, '4.5.3'], [554, '5.7.1']]) {
            const permanent = code >= 500;
            it(`${code} to ${verb}: ${permanent ? 69 : 75}, stage ${stage}`, (t) => runCase(t, {
                script: scriptWith(verb, `${code} ${enh} injected ${code}`),
                expect: {
                    stage, smtp: code, enhanced: enh, transient: !permanent, exit: permanent ? 69 : 75,
                    code: permanent ? 'EREFUSED' : 'ETEMP',
                },
                conns: 1,
                check: dots(verb === 'DOT' ? 1 : 0),
            }));
        }
    }
});

describe('SMTP: replies that never come (timeout_s 2)', { concurrency: 4 }, () => {
    const T = { timeout_s: 2 };
    it('no greeting: 75, stage greeting, within the timeout', (t) => runCase(t, {
        script: { greeting: 'hang' }, srv: T, maxMs: 5000,
        expect: { stage: 'greeting', code: 'ETIMEOUT', transient: true, exit: 75 }, conns: 1,
    }));
    it('no reply to EHLO: 75, stage ehlo', (t) => runCase(t, {
        script: { ehlo: 'hang' }, srv: T, maxMs: 5000,
        expect: { stage: 'ehlo', code: 'ETIMEOUT', transient: true, exit: 75 }, conns: 1,
    }));
    it('no reply to MAIL: 75, stage mail', (t) => runCase(t, {
        script: { replies: { MAIL: 'hang' } }, srv: T, maxMs: 5000,
        expect: { stage: 'mail', code: 'ETIMEOUT', transient: true, exit: 75 }, conns: 1, check: dots(0),
    }));
    it('no reply after the final dot: 75, outcome unknown, not resent', (t) => runCase(t, {
        script: { replies: { DOT: 'hang' } }, srv: T, maxMs: 5000,
        expect: Object.assign({ stage: 'data' }, UNKNOWN), conns: 1, check: dots(1),
    }));
});

describe('SMTP: garbage', { concurrency: 8 }, () => {
    it('a non-digit reply code in the greeting: 76', (t) => runCase(t, {
        script: { greeting: 'ab0 hello' },
        expect: Object.assign({ stage: 'greeting' }, PROTO), conns: 1,
    }));
    it('a non-digit reply code to MAIL: 76, nothing sent', (t) => runCase(t, {
        script: { replies: { MAIL: '2x0 ok' } },
        expect: Object.assign({ stage: 'mail' }, PROTO), conns: 1, check: dots(0),
    }));
    it('a 1 MB reply line: 76, stage greeting', (t) => runCase(t, {
        script: { greeting: { raw: '220 ', pad: 1 << 20, end: '\r\n' } },
        expect: Object.assign({ stage: 'greeting' }, PROTO), conns: 1,
    }));
    it('a 1 MB multi-line EHLO reply with short lines is fine, then a line over 4 KB: 76', (t) => runCase(t, {
        script: { ehlo: ['250-fault', ...Array(200).fill('250-X-PAD ' + 'p'.repeat(100)), '250 ' + 'q'.repeat(5000)] },
        expect: Object.assign({ stage: 'ehlo' }, PROTO), conns: 1,
    }));
    it('a greeting without CRLF, then close: 75 (dropped), not accepted as a reply', (t) => runCase(t, {
        script: { greeting: { raw: '220 no line end', close: true } },
        expect: Object.assign({ stage: 'greeting' }, NET), conns: 1,
    }));
    it('"250 ok" without CRLF after the final dot, then close: outcome unknown, never sent', (t) => runCase(t, {
        script: { replies: { DOT: { raw: '250 2.0.0 queued', close: true } } },
        expect: Object.assign({ stage: 'data' }, UNKNOWN), conns: 1, check: dots(1),
    }));
    it('mismatched multi-line codes in EHLO: 76', (t) => runCase(t, {
        script: { ehlo: ['250-fault', '251-PIPELINING', '250 8BITMIME'] },
        expect: Object.assign({ stage: 'ehlo' }, PROTO), conns: 1, check: noCmd('MAIL'),
    }));
    it('mismatched multi-line codes after the final dot: 75, outcome unknown, never sent', (t) => runCase(t, {
        script: { replies: { DOT: ['250-2.0.0 queued', '550 5.0.0 or not'] } },
        expect: Object.assign({ stage: 'data' }, UNKNOWN), conns: 1, check: dots(1),
    }));
});

// ---------------------------------------------------------------- TLS

describe('SMTP: STARTTLS and TLS faults', { concurrency: 8 }, () => {
    const STARTTLS_EHLO = ['250-fault-peer', '250-STARTTLS', '250 AUTH PLAIN LOGIN'];
    const starttls = () => ({ transport: 'starttls', ca_file: pki.ca, auth: basicAuth });
    it('bytes after the STARTTLS 220 (response injection): 69, stage starttls, no AUTH', (t) => runCase(t, {
        script: { ehlo: STARTTLS_EHLO, replies: { STARTTLS: { raw: '220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n' } } },
        args: tlsArgs, srv: starttls,
        expect: { stage: 'starttls', code: 'EREFUSED', transient: false, exit: 69 }, conns: 1,
        check: noCmd('AUTH', 'MAIL'),
    }));
    it('plaintext where the STARTTLS handshake should be: 69, stage tls, no AUTH', (t) => runCase(t, {
        script: { ehlo: STARTTLS_EHLO, replies: { STARTTLS: '220 2.0.0 go ahead' }, handshake: 'garbage' },
        args: tlsArgs, srv: starttls,
        expect: { stage: 'tls', code: 'ETLS', transient: false, exit: 69 }, conns: 1,
        check: noCmd('AUTH', 'MAIL'),
    }));
    it('implicit TLS: a server answering the ClientHello in plaintext: 69, stage tls', (t) => runCase(t, {
        script: { handshake: 'garbage' },
        args: () => ['--tls', 'implicit', ...tlsArgs()],
        srv: () => ({ transport: 'tls', ca_file: pki.ca, auth: basicAuth }),
        expect: { stage: 'tls', code: 'ETLS', transient: false, exit: 69 }, conns: 1,
    }));
    it('implicit TLS: the connection closed during the handshake: 75 (dropped), stage tls', (t) => runCase(t, {
        script: { handshake: 'close' },
        args: () => ['--tls', 'implicit', ...tlsArgs()],
        srv: () => ({ transport: 'tls', ca_file: pki.ca }),
        expect: { stage: 'tls', code: 'ENET', transient: true, exit: 75 }, conns: 1,
    }));
    it('implicit TLS: no handshake answer within timeout_s: 75, stage tls', (t) => runCase(t, {
        script: { handshake: 'hang' },
        args: () => ['--tls', 'implicit', ...tlsArgs()],
        srv: () => ({ transport: 'tls', ca_file: pki.ca, timeout_s: 2 }),
        maxMs: 5000,
        expect: { stage: 'tls', code: 'ETIMEOUT', transient: true, exit: 75 }, conns: 1,
    }));
    it('implicit TLS: the handshake refused (server TLS 1.2 only, client 1.3 minimum): 69', (t) => runCase(t, {
        script: {},
        args: () => ['--tls', 'implicit', '--tls-max', '1.2', ...tlsArgs()],
        srv: () => ({ transport: 'tls', ca_file: pki.ca, tls_min_version: '1.3', auth: basicAuth }),
        expect: { stage: 'tls', code: 'ETLS', transient: false, exit: 69 }, conns: 1,
        check: noCmd('EHLO'),
    }));
    it('AUTH offered, STARTTLS not, on a starttls server: 69, nothing sent', (t) => runCase(t, {
        script: { ehlo: AUTH_EHLO },
        srv: { transport: 'starttls', auth: basicAuth },
        expect: { stage: 'starttls', code: 'EREFUSED', transient: false, exit: 69 }, conns: 1,
        check: noCmd('STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA'),
    }));
    it('AUTH offered over plain without allow_plaintext_auth: 78, no connection at all', (t) => runCase(t, {
        script: { ehlo: AUTH_EHLO },
        srv: { auth: basicAuth },
        expect: { stage: 'config', code: 'ECONFIG', transient: false, exit: 78 }, conns: 0,
    }));
});

// ---------------------------------------------------------------- throttling recovers

it('one 421 at the greeting, then a normal server: sent on the second connection', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t,
        script: { conns: [{ greeting: '421 4.7.0 busy' }, {}] } });
    const cfg = lib.writeConfig(lib.tmpdir(t), { servers: [serverCfg(peer)] });
    const r = await runCli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sent .*: 1 recipient: 250 /m);
    await allClosed(peer.out);
    assert.equal(lib.sessions(peer.out).length, 2);
    dots(1)(lib.events(peer.out));
});

it('send -t: a drop after the final dot of one file is not resent; the next file still goes', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t,
        script: { sequence: { DOT: ['close', '250 2.0.0 queued'] } } });
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [serverCfg(peer)] });
    const a = path.join(dir, 'a.eml');
    const b = path.join(dir, 'b.eml');
    fs.writeFileSync(a, 'To: x@example.test\nSubject: a\n\nfirst\n');
    fs.writeFileSync(b, 'To: y@example.test\nSubject: b\n\nsecond\n');
    const r = await runCli(cfg, ['send', '-t', a, b]);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /a\.eml: data: outcome unknown/);
    assert.doesNotMatch(r.stdout, /^sent .*a\.eml/m);
    assert.match(r.stdout, /^sent .*b\.eml: 1 recipient: 250 /m);
    await allClosed(peer.out);
    dots(2)(lib.events(peer.out));   // a once (not resent), b once
});

// ---------------------------------------------------------------- token endpoint

async function startHttpFault(t, script) {
    const args = ['--cert', pki.server.cert, '--key', pki.server.key];
    if (script) args.push('--script', JSON.stringify(script));
    return lib.startScript('http-fault.js', { t, args });
}

function oauthServer(smtp, http, mode, extra) {
    return serverCfg(smtp, {
        allow_plaintext_auth: true,
        auth: Object.assign({
            provider: 'manual', user: 'app@example.test', client_id: 'fault-client',
            client_secret_env: 'MC_FAULT_SECRET', grant: 'client_credentials', scope: 'smtp',
            token_url: `https://127.0.0.1:${http.port}/${mode}`, ca_file: pki.ca, timeout_s: 2,
        }, extra || {}),
    });
}

const XOAUTH_EHLO = ['250-fault-peer', '250-PIPELINING', '250 AUTH XOAUTH2 OAUTHBEARER'];

describe('token endpoint faults (client credentials, fetched by send)', { concurrency: 6 }, () => {
    for (const [mode, what, match] of [
        ['500', 'HTTP 500', /500/],
        ['bad-json', 'a body that is not JSON', /JSON|json/],
        ['huge', 'a 10 MB body (refused, capped)', /over \d+ bytes|too large|exceed/],
        ['slow', 'no answer within auth.timeout_s', /time|Timeout/],
        ['slow-body', 'half an answer, then nothing', /time|Timeout/],
        ['no-token', 'an answer without access_token', /access_token/],
    ]) {
        it(`${what}: 75, stage oauth, no AUTH sent`, async (t) => {
            const http = await startHttpFault(t);
            const smtp = await lib.startScript('fault-peer.js', { t, script: { ehlo: XOAUTH_EHLO } });
            const dir = lib.tmpdir(t);
            const env = { MAILCONN_STATE_DIR: path.join(dir, 'state') };
            const cfg = lib.writeConfig(dir, { servers: [oauthServer(smtp, http, mode)] });
            const t0 = Date.now();
            const r = await runCli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b'], env);
            const ms = Date.now() - t0;
            const p = await runProbe(cfg, [], env);
            const ctx = `\n${r.stderr}\nprobe: ${JSON.stringify(p)}`;
            assert.equal(r.signal, null, ctx);
            assert.equal(r.code, 75, ctx);
            assert.ok(ms < 6000 * slow, `took ${ms} ms${ctx}`);
            assert.doesNotMatch(r.stdout, /^sent/m);
            assert.match(r.stderr, /^mailconn: .*oauth: /m, ctx);
            assert.match(r.stderr, match, ctx);
            assert.equal(p.stage, 'oauth', ctx);
            assert.equal(p.transient, true, ctx);
            assert.equal(p.exit, 75, ctx);
            assert.equal(p.smtp_code, 0, ctx);
            assert.ok(!r.stderr.includes(CLIENT_SECRET));
            await allClosed(smtp.out);
            noCmd('AUTH', 'MAIL')(lib.events(smtp.out));
            const hev = lib.events(http.out);
            assert.ok(hev.some((l) => l.endsWith(` request ${mode}`)), hev.join('\n'));
            // the client hung up on the slow answers: the server saw the close
            await lib.waitFor(() => {
                const ev = lib.events(http.out);
                return ev.filter((l) => / request /.test(l)).every((l) => ev.includes(`${l.split(' ')[0]} close`));
            }, 5000, 25, 'the token requests closed');
        });
    }

    it('400 invalid_grant on refresh: 77 with a hint to run `mailconn auth`', async (t) => {
        // the import gets a token that is already due (expires_in 1); the
        // refresh at send time gets invalid_grant
        const http = await startHttpFault(t, ['ok', 'invalid_grant']);
        const smtp = await lib.startScript('fault-peer.js', { t, script: { ehlo: XOAUTH_EHLO } });
        const dir = lib.tmpdir(t);
        const env = { MAILCONN_STATE_DIR: path.join(dir, 'state') };
        const cfg = lib.writeConfig(dir, { servers: [oauthServer(smtp, http, 'token',
            { grant: 'authorization_code', authorization_url: `https://127.0.0.1:${http.port}/authorize` })] });
        const rtf = path.join(dir, 'rt.txt');
        fs.writeFileSync(rtf, 'an-old-refresh-token\n', { mode: 0o600 });
        const imp = await runCli(cfg, ['auth', '--refresh-token-file', rtf], env);
        assert.equal(imp.code, 0, imp.stderr);
        const r = await runCli(cfg, ['send', '--to', 'to@example.test', '--subject', 's', '--body', 'b'], env);
        assert.equal(r.signal, null);
        assert.equal(r.code, 77, r.stderr);
        assert.doesNotMatch(r.stdout, /^sent/m);
        assert.match(r.stderr, /^mailconn: .*oauth: .*invalid_grant/m);
        assert.match(r.stderr, /hint: .*mailconn auth/);
        const p = await runProbe(cfg, [], env);
        assert.equal(p.exit, 77, JSON.stringify(p));
        assert.equal(p.stage, 'oauth', JSON.stringify(p));
        assert.equal(p.transient, false, JSON.stringify(p));
        await allClosed(smtp.out);
        noCmd('AUTH', 'MAIL')(lib.events(smtp.out));
        assert.deepEqual(lib.events(http.out).filter((l) => / request /.test(l)).map((l) => l.split(' ')[2]),
            ['ok', 'invalid_grant', 'invalid_grant'].slice(0, lib.events(http.out).filter((l) => / request /.test(l)).length));
        assert.equal(lib.events(http.out).filter((l) => / request /.test(l)).slice(0, 2).map((l) => l.split(' ')[2]).join(), 'ok,invalid_grant');
    });
});
