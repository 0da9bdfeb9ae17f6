#!/usr/bin/env node
// smtp-peer.js: a real SMTP server (the npm package smtp-server) for the
// integration tests, configured by command-line flags. See README.md.
//
// It prints one JSON line {"ready":true,"port":N,"pid":P} on stdout once it
// listens, records every received message as OUT/<n>.eml + OUT/<n>.json and
// every event as a line of OUT/events.log, and stops on SIGTERM.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { SMTPServer } = require('smtp-server');

const usage = `usage: smtp-peer.js --out DIR [options]
  --port N                 0 = ephemeral (default 0)
  --host ADDR              127.0.0.1 (default) or ::1
  --tls none|implicit|starttls   (default none)
  --cert FILE --key FILE   the server certificate (implicit, starttls)
  --tls-max 1.2|1.3        highest TLS version offered
  --no-starttls            do not offer (nor accept) STARTTLS
  --users u:p[,u:p...]     accounts for AUTH PLAIN and LOGIN (else no AUTH)
  --tokens u:t[,u:t...]    accounts for AUTH XOAUTH2 (access tokens)
  --auth-optional          accept mail without AUTH even when AUTH is offered
  --allow-insecure-auth    allow AUTH without TLS
  --size N                 announce SIZE N and refuse larger messages
  --reject-rcpt A[,A...]   answer 550 5.1.1 to RCPT TO these addresses
  --hide-pipelining        do not announce PIPELINING
  --enhanced-status        announce ENHANCEDSTATUSCODES
  --banner TEXT            greeting text`;

function fail(msg) {
    process.stderr.write(`smtp-peer: ${msg}\n${usage}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const o = {
        port: 0, host: '127.0.0.1', tls: 'none', cert: null, key: null, tlsMax: null,
        starttls: true, users: new Map(), tokens: new Map(), authOptional: false,
        allowInsecureAuth: false, size: 0, rejectRcpt: new Set(), hidePipelining: false,
        enhanced: false, banner: null, out: null,
    };
    const pairs = (s, flag) => {
        const m = new Map();
        for (const item of s.split(',')) {
            const i = item.indexOf(':');
            if (i <= 0) fail(`${flag}: expected name:secret, got "${item}"`);
            m.set(item.slice(0, i), item.slice(i + 1));
        }
        return m;
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) fail(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
        case '--port': o.port = Number(val()); break;
        case '--host': o.host = val(); break;
        case '--tls': o.tls = val(); break;
        case '--cert': o.cert = val(); break;
        case '--key': o.key = val(); break;
        case '--tls-max': o.tlsMax = val(); break;
        case '--no-starttls': o.starttls = false; break;
        case '--users': o.users = pairs(val(), a); break;
        case '--tokens': o.tokens = pairs(val(), a); break;
        case '--auth-optional': o.authOptional = true; break;
        case '--allow-insecure-auth': o.allowInsecureAuth = true; break;
        case '--size': o.size = Number(val()); break;
        case '--reject-rcpt':
            for (const r of val().split(',')) o.rejectRcpt.add(r.toLowerCase());
            break;
        case '--hide-pipelining': o.hidePipelining = true; break;
        case '--enhanced-status': o.enhanced = true; break;
        case '--banner': o.banner = val(); break;
        case '--out': o.out = val(); break;
        case '-h': case '--help':
            process.stdout.write(usage + '\n');
            process.exit(0);
            break;
        default: fail(`unknown argument ${a}`);
        }
    }
    if (!o.out) fail('--out DIR is required');
    if (!['none', 'implicit', 'starttls'].includes(o.tls)) fail(`--tls ${o.tls}: none, implicit or starttls`);
    if (o.tls !== 'none' && (!o.cert || !o.key)) fail(`--tls ${o.tls} needs --cert and --key`);
    if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) fail('--port: 0..65535');
    if (o.tlsMax && !['1.2', '1.3'].includes(o.tlsMax)) fail('--tls-max: 1.2 or 1.3');
    return o;
}

const opt = parseArgs(process.argv.slice(2));
fs.mkdirSync(opt.out, { recursive: true });
const eventsFile = path.join(opt.out, 'events.log');
let counter = 0;

function event(session, text) {
    fs.appendFileSync(eventsFile, `${session.id} ${text}\n`);
}

const authMethods = [];
if (opt.users.size) authMethods.push('PLAIN', 'LOGIN');
if (opt.tokens.size) authMethods.push('XOAUTH2');

const disabled = [];
if (!authMethods.length) disabled.push('AUTH');
if (opt.tls !== 'starttls' || !opt.starttls) disabled.push('STARTTLS');

const serverOptions = {
    secure: opt.tls === 'implicit',
    logger: false,
    disabledCommands: disabled,
    hideSTARTTLS: opt.tls !== 'starttls' || !opt.starttls,
    hidePIPELINING: opt.hidePipelining,
    hideENHANCEDSTATUSCODES: !opt.enhanced,
    authMethods: authMethods.length ? authMethods : ['PLAIN'],
    authOptional: opt.authOptional || !authMethods.length,
    allowInsecureAuth: opt.allowInsecureAuth,
    size: opt.size || undefined,
    banner: opt.banner || undefined,
    closeTimeout: 1000,
    // no DNS: a test machine may have no resolver, and a PTR query could stall
    disableReverseLookup: true,

    onConnect(session, cb) {
        event(session, 'connect');
        cb();
    },
    onSecure(socket, session, cb) {
        // the SNI name the client sent, "-" when none (never for IP literals)
        event(session, `secure ${socket.servername || session.servername || '-'}`);
        cb();
    },
    onAuth(auth, session, cb) {
        event(session, `auth ${auth.method} ${auth.username}`);
        let ok;
        if (auth.method === 'XOAUTH2') {
            ok = opt.tokens.has(auth.username) && opt.tokens.get(auth.username) === auth.accessToken;
            if (!ok) {
                event(session, `auth-fail ${auth.method} ${auth.username}`);
                return cb(null, {
                    data: { status: '401', schemes: 'bearer', scope: 'https://mail.example.test/' },
                });
            }
        } else {
            ok = opt.users.has(auth.username) && opt.users.get(auth.username) === auth.password;
            if (!ok) {
                event(session, `auth-fail ${auth.method} ${auth.username}`);
                const e = new Error('Authentication credentials invalid');
                e.responseCode = 535;
                return cb(e);
            }
        }
        cb(null, { user: auth.username });
    },
    onMailFrom(address, session, cb) {
        event(session, `mail ${address.address}`);
        cb();
    },
    onRcptTo(address, session, cb) {
        event(session, `rcpt ${address.address}`);
        if (opt.rejectRcpt.has(address.address.toLowerCase())) {
            const e = new Error('5.1.1 Recipient address rejected: no such user');
            e.responseCode = 550;
            return cb(e);
        }
        cb();
    },
    onData(stream, session, cb) {
        event(session, 'data');
        const chunks = [];
        stream.on('data', (c) => chunks.push(c));
        stream.on('error', (e) => cb(e));
        stream.on('end', () => {
            if (stream.sizeExceeded) {
                event(session, 'data-too-big');
                const e = new Error('5.3.4 Message exceeds the size limit');
                e.responseCode = 552;
                return cb(e);
            }
            const n = ++counter;
            const base = path.join(opt.out, String(n));
            fs.writeFileSync(base + '.eml', Buffer.concat(chunks));
            const meta = {
                mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
                rcptTo: session.envelope.rcptTo.map((r) => r.address),
                user: session.user || null,
                secure: !!session.secure,
                sessionId: session.id,
                transmissionType: session.transmissionType,
            };
            // the .json appears last and whole: tests wait for it
            fs.writeFileSync(base + '.json.tmp', JSON.stringify(meta));
            fs.renameSync(base + '.json.tmp', base + '.json');
            event(session, `stored ${n}`);
            cb(null, `2.0.0 Ok: queued as ${n}`);
        });
    },
    onClose(session) {
        event(session, 'close');
    },
};

if (opt.tls !== 'none') {
    serverOptions.key = fs.readFileSync(opt.key);
    serverOptions.cert = fs.readFileSync(opt.cert);
    serverOptions.minVersion = 'TLSv1.2';
    if (opt.tlsMax) serverOptions.maxVersion = `TLSv${opt.tlsMax}`;
}

const server = new SMTPServer(serverOptions);
server.on('error', (e) => {
    // a client dropping the connection is part of the tests, not a crash
    process.stderr.write(`smtp-peer: ${e.code || ''} ${e.message}\n`);
});

server.listen(opt.port, opt.host, () => {
    const addr = server.server.address();
    process.stdout.write(JSON.stringify({ ready: true, port: addr.port, pid: process.pid }) + '\n');
});
server.server.on('error', (e) => {
    process.stderr.write(`smtp-peer: cannot listen on ${opt.host}:${opt.port}: ${e.message}\n`);
    process.exit(1);
});

function stop() {
    // bounded: connections still open are dropped after closeTimeout
    setTimeout(() => process.exit(0), 3000).unref();
    server.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
