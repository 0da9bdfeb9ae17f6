// Nothing a server says reaches the terminal raw (issue 9, point 8): SMTP
// reply text, OAuth error/error_description and the device-flow message,
// user_code and verification_uri come out escaped ("\x1b") on stderr, in
// the -v transcript, on stdout ("sent ...: reply", `mailconn test`) and in
// log_file, through the one escaping function (core/log.c mc__escape_put).
// The hostile words come from the fault injectors tests/peers/fault-peer.js
// (SMTP) and tests/peers/token-fault.js (token and device endpoints): real
// servers (smtp-server, oidc-provider) do not put terminal escapes in their
// replies on request.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

let pki, base;

test.before(() => {
    assert.ok(process.env.MAILCONN_BIN, 'MAILCONN_BIN is set (run with meson test)');
    base = lib.tmpdir();
    pki = lib.mkca(path.join(base, 'pki'));
});
test.after(() => lib.stopAll());

// what a terminal would act on: C0 but TAB (ESC, BEL, CR...; LF only
// between lines), DEL, C1 as UTF-8 (C2 80..C2 9F), and the invalid byte FF
const rawBytes = (buf) => {
    const bad = [];
    for (let i = 0; i < buf.length; i++) {
        const b = buf[i];
        if ((b < 0x20 && b !== 0x09 && b !== 0x0a) || b === 0x7f) bad.push(i);
        if (b === 0xc2 && buf[i + 1] >= 0x80 && buf[i + 1] <= 0x9f) bad.push(i);
        if (b === 0xff) bad.push(i);
    }
    return bad;
};
/** No raw control byte in any output line (newlines only between lines). */
function assertClean(what, buf) {
    const bad = rawBytes(Buffer.isBuffer(buf) ? buf : Buffer.from(buf, 'latin1'));
    assert.deepEqual(bad, [], `${what}: raw control bytes at ${bad.slice(0, 5)}:\n${JSON.stringify(buf.toString('latin1'))}`);
}

// lib.runCli() decodes as UTF-8, which would hide invalid bytes: read raw bytes too
const { spawn } = require('node:child_process');
function runRaw(args, env = {}) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.env.MAILCONN_BIN, args, {
            env: Object.assign({}, process.env, env), stdio: ['ignore', 'pipe', 'pipe'],
        });
        const out = [], err = [];
        const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
        child.stdout.on('data', (d) => out.push(d));
        child.stderr.on('data', (d) => err.push(d));
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
        });
    });
}

// ESC ] 0 ; pwn BEL (sets the window title), ESC [ 2 J (clears the screen),
// C1 CSI as UTF-8 (C2 9B), an invalid byte (FF), a DEL, a CR
const HOSTILE = '\u001b]0;pwn\u0007 \u001b[2J \u00c2\u009b1m \u00ff\u007f\r';
const SHOWN = '\\x1b]0;pwn\\x07 \\x1b[2J \\xc2\\x9b1m \\xff\\x7f\\x0d';

function smtpConfig(dir, peer, logFile) {
    return lib.writeConfig(dir, { servers: [{
        name: 'hostile', host: '127.0.0.1', port: peer.port, transport: 'plain', timeout_s: 5,
        sender: { address: 'app@example.test' }, log_file: logFile,
    }] });
}

test('an SMTP refusal with terminal escapes: stderr, -v transcript and log_file show them escaped', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        replies: { MAIL: { raw: `554 5.7.1 ${HOSTILE} go away\r\n` } },
    } });
    const dir = lib.tmpdir(t);
    const logFile = path.join(dir, 'mail.log');
    const cfg = smtpConfig(dir, peer, logFile);
    const r = await runRaw(['--config', cfg, '-v', 'send', '--to', 'to@example.test',
                            '--subject', 'x', '--body', 'x\n']);
    const err = r.stderr.toString('latin1');
    assert.equal(r.signal, null);
    assert.equal(r.code, 69, err);                        // 554 at MAIL: permanent
    assert.doesNotMatch(r.stdout.toString(), /^sent/m);
    assertClean('stderr', r.stderr);
    assertClean('stdout', r.stdout);
    // the report line and the transcript line both carry the escaped text
    const report = err.split('\n').filter((l) => /^mailconn: [^ ]+: mail: 554 /.test(l));
    assert.equal(report.length, 1, err);
    assert.ok(report[0].includes(`5.7.1 ${SHOWN} go away`), report[0]);
    const transcript = err.split('\n').filter((l) => /^S: 554 5\.7\.1 /.test(l));
    assert.ok(transcript.length >= 1 && transcript.every((l) => l.includes(SHOWN)), err);
    const log = fs.readFileSync(logFile);
    assertClean('log_file', log);
    assert.match(log.toString('latin1'), /outcome=failed reply="5\.7\.1 .* go away"/);
    assert.ok(log.toString('latin1').includes(SHOWN), log.toString('latin1'));
});

test('an accepted message whose reply has terminal escapes: "sent" on stdout and log_file escaped', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        replies: { DOT: { raw: `250 2.0.0 queued ${HOSTILE} as 42\r\n` } },
    } });
    const dir = lib.tmpdir(t);
    const logFile = path.join(dir, 'mail.log');
    const cfg = smtpConfig(dir, peer, logFile);
    const r = await runRaw(['--config', cfg, 'send', '--to', 'to@example.test',
                            '--subject', 'x', '--body', 'x\n']);
    const out = r.stdout.toString('latin1');
    assert.equal(r.code, 0, r.stderr.toString());
    assertClean('stdout', r.stdout);
    assertClean('stderr', r.stderr);
    assert.match(out, /^sent /m);
    assert.ok(out.includes(`queued ${SHOWN} as 42`), out);
    const log = fs.readFileSync(logFile);
    assertClean('log_file', log);
    assert.ok(log.toString('latin1').includes(`outcome=sent reply="250 2.0.0 queued ${SHOWN} as 42"`),
              log.toString('latin1'));
});

test('mailconn test: each stage line shows the reply escaped', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        greeting: { raw: `220 fault ${HOSTILE} ready\r\n` },
    } });
    const dir = lib.tmpdir(t);
    const cfg = smtpConfig(dir, peer, path.join(dir, 'mail.log'));
    const r = await runRaw(['--config', cfg, 'test', '--to', 'to@example.test']);
    assertClean('stdout', r.stdout);
    assertClean('stderr', r.stderr);
    assert.ok(r.stdout.toString('latin1').includes(`fault ${SHOWN} ready`), r.stdout.toString('latin1'));
});

test('a hostile device-flow and token endpoint: message, user_code, verification_uri and error_description escaped', async (t) => {
    const fault = await lib.startScript('token-fault.js', { t, script: {
        '/devicecode': { status: 200, body: {
            device_code: 'dev-code-Esc9', user_code: 'AB\u001b[2JCD', interval: 1, expires_in: 60,
            verification_uri: 'https://microsoft.com/devicelogin\u001b]0;pwn\u0007',
            message: 'To sign in \u001b]0;pwn\u0007\u001b[2J enter \u009b31m the code',
        } },
        '/token': { status: 400, body: {
            error: 'invalid_grant',
            error_description: 'AADSTS50173: \u001b]0;pwn\u0007\u001b[2J The grant was revoked.',
            error_codes: [50173],
        } },
    }, args: ['--cert', pki.server.cert, '--key', pki.server.key] });
    const dir = lib.tmpdir(t);
    const u = `https://127.0.0.1:${fault.port}`;
    const cfg = lib.writeConfig(dir, { servers: [{
        name: 'aad', host: '127.0.0.1', port: 1, transport: 'tls',
        sender: { address: 'me@contoso.example' },
        auth: {
            provider: 'microsoft', user: 'me@contoso.example', client_id: 'app-id', tenant: 'contoso.example',
            authorization_url: `${u}/authorize`, token_url: `${u}/token`,
            device_authorization_url: `${u}/devicecode`, ca_file: pki.ca, timeout_s: 10,
        },
    }] });
    const env = { MAILCONN_STATE_DIR: path.join(dir, 'state'), BROWSER: '', DISPLAY: '', WAYLAND_DISPLAY: '' };
    const r = await runRaw(['--config', cfg, '-v', 'auth', '--server', 'aad', '--device'], env);
    const err = r.stderr.toString('latin1');
    assert.equal(r.signal, null);
    assert.equal(r.code, 77, err);                         // invalid_grant: authentication refused
    assertClean('stderr', r.stderr);
    assertClean('stdout', r.stdout);
    assert.ok(err.includes('To sign in \\x1b]0;pwn\\x07\\x1b[2J enter \\xc2\\x9b31m the code'), err);
    assert.ok(err.includes('AB\\x1b[2JCD'), err);
    assert.ok(err.includes('devicelogin\\x1b]0;pwn\\x07'), err);
    assert.ok(err.includes('AADSTS50173: \\x1b]0;pwn\\x07\\x1b[2J The grant was revoked.'), err);
    // the provider's hint for AADSTS50173 (issue 9 point 11)
    const hint = (err.match(/^mailconn: hint: .*$/m) || [''])[0];
    assert.match(hint, /grant was revoked \(the password was changed or reset\): authorize this server again/);
});

test('Microsoft 554 5.2.0 SendAsDenied after the dot: the provider hint, and the reply escaped', async (t) => {
    const peer = await lib.startScript('fault-peer.js', { t, script: {
        ehlo: ['250-fault-peer', '250-PIPELINING', '250-ENHANCEDSTATUSCODES', '250 AUTH LOGIN XOAUTH2'],
        replies: { DOT: { raw: '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied;' +
                               ' \u001b[2J Failed to process message due to a permanent exception\r\n' } },
    } });
    const dir = lib.tmpdir(t);
    const cfg = lib.writeConfig(dir, { servers: [{
        name: 'm365', host: '127.0.0.1', port: peer.port, transport: 'plain', allow_plaintext_auth: true,
        timeout_s: 5, sender: { address: 'shared@contoso.example' },
        auth: { provider: 'microsoft', user: 'me@contoso.example', client_id: 'app-id',
                access_token_command: 'echo fault-access-Tok3n' },
    }] });
    const r = await runRaw(['--config', cfg, 'send', '--to', 'to@example.test', '--subject', 's', '--body', 'b\n']);
    const err = r.stderr.toString('latin1');
    assert.equal(r.code, 69, err);
    assert.doesNotMatch(r.stdout.toString(), /^sent/m);
    assertClean('stderr', r.stderr);
    assert.match(err, /: data: 554 5\.2\.0 STOREDRV.*SendAsDenied; \\x1b\[2J Failed/);
    const hint = (err.match(/^mailconn: hint: .*$/m) || [''])[0];
    assert.match(hint, /no Send As right for the From address/);
    assert.doesNotMatch(hint.replace(/^mailconn: hint: /, ''), /mailconn/, 'UI-neutral: no command');
    assert.ok(lib.events(peer.out).some((l) => / cmd AUTH$/.test(l)), 'AUTH ran');
});
