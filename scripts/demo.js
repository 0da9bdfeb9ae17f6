#!/usr/bin/env node
// The demo behind scripts/demo.sh: real peers on loopback (the npm
// smtp-server and oidc-provider, with a CA made here), a config with one
// server per transport x mechanism and one per OAuth provider, tokens
// obtained by `mailconn auth` (the demo plays the person at the browser and
// at the device page), then one `mailconn send` per server and a report of
// what each server received. Touches only 127.0.0.1.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const top = path.resolve(__dirname, '..');
const lib = require(path.join(top, 'tests/peers/lib'));
const { startOidc } = require(path.join(top, 'tests/peers/oauth-lib'));

process.env.MAILCONN_BIN = process.env.MAILCONN_BIN || path.join(top, 'build/cli/mailconn');
process.env.MAILCONN_PLUGIN_PATH = ['plugins', 'providers', 'oauth']
    .map((d) => path.join(top, 'build', d)).join(':');
const PASSWORD = 'demo-password-' + process.pid;

const say = (s) => process.stdout.write(s + '\n');
const show = (title, r) => {
    say(`$ mailconn ${title}`);
    for (const l of (r.stderr + r.stdout).trim().split('\n')) if (l) say('  ' + l);
};

/** Run `mailconn auth ...`, answering its prompts through fn(line, child). */
function authInteractive(cfg, env, args, fn) {
    return new Promise((resolve) => {
        const child = spawn(process.env.MAILCONN_BIN, ['--config', cfg, 'auth', ...args],
            { env: Object.assign({}, process.env, env), stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '', err = '', pending = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => {
            err += d;
            pending += d;
            let nl;
            while ((nl = pending.indexOf('\n')) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                Promise.resolve(fn(line, child)).catch((e) => { err += `\n[demo: ${e.message}]`; });
            }
        });
        child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout: out, stderr: err }); });
    });
}

async function main() {
    const dir = lib.tmpdir();
    const state = path.join(dir, 'state');
    const pki = lib.mkca(path.join(dir, 'pki'));
    const env = { DEMO_PASSWORD: PASSWORD, MAILCONN_STATE_DIR: state };
    const cert = { cert: pki.server.cert, key: pki.server.key };
    const op = await startOidc({ pki });
    const introspect = ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
        '--introspect-client', `conf-basic:${op.secret}`];

    const peers = {
        plain: await lib.startPeer({ users: { demo: PASSWORD }, allowInsecureAuth: true }),
        tls: await lib.startPeer({ tls: 'implicit', ...cert, users: { demo: PASSWORD } }),
        starttls: await lib.startPeer({ tls: 'starttls', ...cert, users: { demo: PASSWORD } }),
        gmail: await lib.startPeer({ tls: 'implicit', ...cert, extraArgs: [...introspect, '--oauth-style', 'gmail'] }),
        outlook: await lib.startPeer({ tls: 'starttls', ...cert, extraArgs: [...introspect, '--oauth-style', 'microsoft'] }),
        manual: await lib.startPeer({ tls: 'implicit', ...cert, extraArgs: introspect }),
    };
    const at = (p) => ({ host: '127.0.0.1', port: p.port, ca_file: pki.ca });
    const basic = (mech) => ({ provider: 'basic', user: 'demo', password_env: 'DEMO_PASSWORD', mechanism: mech });
    const endpoints = { authorization_url: op.authorizationUrl, token_url: op.tokenUrl,
        device_authorization_url: op.deviceUrl, revocation_url: op.revocationUrl, ca_file: pki.ca };
    const servers = [];
    for (const [tr, peer] of [['plain', peers.plain], ['tls', peers.tls], ['starttls', peers.starttls]]) {
        for (const mech of ['PLAIN', 'LOGIN']) {
            const s = { name: `${tr}-${mech.toLowerCase()}`, transport: tr, ...at(peer),
                sender: { address: 'demo@example.test', name: 'mailconn demo' }, auth: basic(mech) };
            if (tr === 'plain') { delete s.ca_file; s.allow_plaintext_auth = true; }
            servers.push(s);
        }
    }
    servers[0].default = true;
    servers.push({ name: 'gmail', transport: 'tls', ...at(peers.gmail),
        sender: { address: 'me@gmail.example.test', name: 'Gmail-shaped' },
        auth: { provider: 'google', user: op.account, client_id: 'conf-post', client_secret_env: 'DEMO_SECRET', ...endpoints } });
    servers.push({ name: 'outlook', transport: 'starttls', ...at(peers.outlook),
        sender: { address: 'shared@contoso.example.test', name: 'Shared mailbox (send-as)' },
        auth: { provider: 'microsoft', user: op.account, client_id: 'public', grant: 'device_code', ...endpoints } });
    servers.push({ name: 'manual', transport: 'tls', ...at(peers.manual),
        sender: { address: 'robot@example.test', name: 'App-only' },
        auth: { provider: 'manual', user: op.account, client_id: 'conf-basic', client_secret_env: 'DEMO_SECRET',
            client_auth: 'basic', grant: 'client_credentials', token_url: op.tokenUrl, ca_file: pki.ca,
            scope: 'https://mail.google.com/', mechanism: 'OAUTHBEARER' } });
    const cfg = lib.writeConfig(dir, { servers });
    env.DEMO_SECRET = op.secret;
    const cli = (args, o = {}) => lib.runCli(['--config', cfg, ...args], { env, ...o });

    say('mailconn demo: real SMTP servers (npm smtp-server) and an OAuth server (npm oidc-provider)');
    say(`on 127.0.0.1 with a throwaway CA in ${pki.dir}\n`);
    show('plugins', await cli(['plugins']));
    show('check', await cli(['check']));

    say('\n# OAuth: tokens obtained by mailconn itself');
    const paste = await authInteractive(cfg, env, ['--server', 'gmail', '--paste'], async (line, child) => {
        if (/^https:\/\/127\.0\.0\.1:\d+\/.*response_type=code/.test(line)) {
            say('  (the demo plays the person: opens the URL, consents, pastes the redirect URL back)');
            const r = await op.playBrowser(line.trim(), { load: false });
            child.stdin.write(r.location + '\n');
        }
    });
    show('auth --server gmail --paste', paste);
    const device = await authInteractive(cfg, env, ['--server', 'outlook', '--device'], async (line) => {
        const m = /enter the code ([A-Z0-9-]+)/.exec(line);
        if (m) {
            say(`  (the demo plays the person: enters ${m[1]} at the device page and approves)`);
            await op.approveDevice(m[1]);
        }
    });
    show('auth --server outlook --device', device);
    show('servers', await cli(['servers']));

    say('\n# Sending: one message through every server');
    const att = path.join(dir, 'report.csv');
    fs.writeFileSync(att, 'day,messages\nmonday,42\n');
    for (const s of servers) {
        const r = await cli(['send', '--server', s.name, '--to', 'alice@example.test', '--bcc', 'audit@example.test',
            '--subject', `Hello through ${s.name}`, '--body', `Sent by mailconn through ${s.name}.\n`,
            '--attach', att]);
        show(`send --server ${s.name} ...`, r);
    }
    const t = await cli(['test', '--server', 'starttls-plain', '--to', 'alice@example.test']);
    show('test --server starttls-plain --to alice@example.test', t);

    say('\n# What arrived');
    for (const [name, peer] of Object.entries(peers)) {
        for (const m of await lib.readMessages(peer.out)) {
            const auth = lib.events(peer.out).find((l) => l.startsWith(m.meta.sessionId + ' auth '));
            say(`${name.padEnd(8)} ${m.meta.secure ? 'TLS  ' : 'clear'} ${(auth || '').split(' ').slice(1).join(' ').padEnd(24)}` +
                ` from=${m.meta.mailFrom} to=${m.meta.rcptTo.join(',')} subject="${m.subject}"` +
                ` attachments=${m.attachments.map((a) => a.filename).join(',') || '-'}`);
        }
    }
    await lib.stopAll();
    await op.stop();
}

main().then(() => process.exit(0), (e) => {
    process.stderr.write(`demo failed: ${e.stack || e}\n`);
    process.exit(1);
});
