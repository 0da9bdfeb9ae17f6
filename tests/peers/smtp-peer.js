#!/usr/bin/env node
// smtp-peer.js: a real SMTP server (the npm package smtp-server) for the
// integration tests, configured by command-line flags. See README.md.
//
// It prints one JSON line {"ready":true,"port":N,"pid":P} on stdout once it
// listens, records every received message as OUT/<n>.eml + OUT/<n>.json and
// every event as a line of OUT/events.log, and stops on SIGTERM.
//
// Bearer tokens (XOAUTH2, OAUTHBEARER): with --introspect the peer asks the
// OAuth server (tests/peers/oidc-peer.js, npm oidc-provider) whether each
// token is active (RFC 7662), so a test proves that the token mailconn
// obtained is one the authorization server issued and still honours; with
// --tokens it compares against a fixed list. smtp-server implements
// XOAUTH2 but not OAUTHBEARER: both token mechanisms are registered here in
// smtp-server's own SASL mechanism table (require('smtp-server/lib/sasl.js'),
// the object whose SASL_<NAME> members smtp-connection's handler_AUTH looks
// up, the way SASL_XOAUTH2 is wired there), so that AUTH OAUTHBEARER goes
// through the same command dispatch, _nextHandler continuation and onAuth
// hook as the built-in mechanisms, and so that the refusal can take the
// exact shape Gmail or Microsoft give it (--oauth-style).
//
// Reload tests (tests/integration/test-reload.js): --users-file FILE makes
// the accepted passwords changeable at run time (the file, "u:p[,u:p...]",
// is read again at every AUTH: replace it atomically to change a password),
// and --report-quit records every QUIT command as a "quit" event (smtp-
// server has no hook for it: its SMTPConnection.prototype.handler_QUIT is
// wrapped), so a test sees which connections the client closed politely.
'use strict';

const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const { SMTPServer } = require('smtp-server');
const SASL = require('smtp-server/lib/sasl.js');

const usage = `usage: smtp-peer.js --out DIR [options]
  --port N                 0 = ephemeral (default 0)
  --host ADDR              127.0.0.1 (default) or ::1
  --tls none|implicit|starttls   (default none)
  --cert FILE --key FILE   the server certificate (implicit, starttls)
  --tls-max 1.2|1.3        highest TLS version offered
  --no-starttls            do not offer (nor accept) STARTTLS
  --users u:p[,u:p...]     accounts for AUTH PLAIN and LOGIN (else no AUTH)
  --users-file FILE        the same list read from FILE at every AUTH (a test
                           changes a password by replacing the file)
  --report-quit            record each QUIT command as a "quit" event
  --tokens u:t[,u:t...]    accounts for AUTH XOAUTH2 (access tokens)
  --introspect URL         accept XOAUTH2 / OAUTHBEARER tokens that this RFC 7662
                           introspection endpoint says are active
  --introspect-ca FILE     CA for the introspection endpoint (https)
  --introspect-client ID:SECRET   client authentication (HTTP Basic) there
  --token-user U           also require the SASL user (XOAUTH2 user=,
                           OAUTHBEARER a=) to be U
  --oauth-mechs LIST       token mechanisms offered (default XOAUTH2,OAUTHBEARER
                           with --introspect, XOAUTH2 with --tokens)
  --oauth-style gmail|microsoft   how a token is refused (default gmail):
                           gmail: 334 + base64 JSON {status,schemes,scope}, then
                             after the client's empty line 535 5.7.8;
                           microsoft: 535 5.7.3 at once, no 334.
                           OAUTHBEARER always: 334 + JSON, client answers AQ==, 535
  --auth-reply "CODE TEXT" refuse every token AUTH with this reply at once
                           (e.g. "535 5.7.139 Authentication unsuccessful, ...")
  --refuse-first-auth N    TEST HOOK: refuse the first N token AUTHs even when the
                           token is valid (see below)
  --auth-optional          accept mail without AUTH even when AUTH is offered
  --allow-insecure-auth    allow AUTH without TLS
  --size N                 announce SIZE N and refuse larger messages
  --reject-rcpt A[,A...]   answer 550 5.1.1 to RCPT TO these addresses
  --hide-pipelining        do not announce PIPELINING
  --enhanced-status        announce ENHANCEDSTATUSCODES
  --dsn                    announce DSN (RFC 3461) and record RET/ENVID and each
                           recipient's NOTIFY/ORCPT in OUT/<n>.json (dsn, rcptDsn)
  --banner TEXT            greeting text
  --throttle-sessions N[,N...]  answer MAIL with 432 4.3.2 on these connections (1 = the first)`;

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
        introspect: null, introspectCa: null, introspectClient: null, tokenUser: null,
        oauthMechs: null, oauthStyle: 'gmail', authReply: null, refuseFirstAuth: 0,
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
        case '--users-file': o.usersFile = val(); break;
        case '--report-quit': o.reportQuit = true; break;
        case '--tokens': o.tokens = pairs(val(), a); break;
        case '--auth-optional': o.authOptional = true; break;
        case '--allow-insecure-auth': o.allowInsecureAuth = true; break;
        case '--size': o.size = Number(val()); break;
        case '--reject-rcpt':
            for (const r of val().split(',')) o.rejectRcpt.add(r.toLowerCase());
            break;
        case '--hide-pipelining': o.hidePipelining = true; break;
        case '--enhanced-status': o.enhanced = true; break;
        case '--dsn': o.dsn = true; break;
        case '--banner': o.banner = val(); break;
        case '--introspect': o.introspect = val(); break;
        case '--introspect-ca': o.introspectCa = val(); break;
        case '--introspect-client': {
            const v = val();
            const i2 = v.indexOf(':');
            if (i2 <= 0) fail(`${a}: expected id:secret`);
            o.introspectClient = { id: v.slice(0, i2), secret: v.slice(i2 + 1) };
            break;
        }
        case '--token-user': o.tokenUser = val(); break;
        case '--oauth-mechs': o.oauthMechs = val().split(',').map((m) => m.trim().toUpperCase()); break;
        case '--oauth-style': o.oauthStyle = val(); break;
        case '--auth-reply': o.authReply = val(); break;
        case '--refuse-first-auth': o.refuseFirstAuth = Number(val()); break;
        case '--throttle-sessions': o.throttleSessions = new Set(val().split(',').map(Number)); break;
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
    if (!['gmail', 'microsoft'].includes(o.oauthStyle)) fail('--oauth-style: gmail or microsoft');
    if (!Number.isInteger(o.refuseFirstAuth) || o.refuseFirstAuth < 0) fail('--refuse-first-auth: N >= 0');
    if (o.authReply && !/^[45]\d\d /.test(o.authReply)) fail('--auth-reply: "CODE TEXT" with a 4xx/5xx code');
    if (o.introspect && !/^https:\/\//.test(o.introspect)) fail('--introspect: an https:// URL');
    if (!o.oauthMechs) {
        o.oauthMechs = o.introspect ? ['XOAUTH2', 'OAUTHBEARER'] : o.tokens.size ? ['XOAUTH2'] : [];
    }
    for (const m of o.oauthMechs) {
        if (!['XOAUTH2', 'OAUTHBEARER'].includes(m)) fail(`--oauth-mechs: XOAUTH2, OAUTHBEARER, got ${m}`);
    }
    if (o.oauthMechs.length && !o.introspect && !o.tokens.size) fail('--oauth-mechs needs --introspect or --tokens');
    return o;
}

const opt = parseArgs(process.argv.slice(2));
fs.mkdirSync(opt.out, { recursive: true });
const eventsFile = path.join(opt.out, 'events.log');
let counter = 0;
// --throttle-sessions: connection numbers in order of arrival, by session id
let connections = 0;
const connectionNumber = new Map();

function event(session, text) {
    fs.appendFileSync(eventsFile, `${session.id} ${text}\n`);
}

const authMethods = [];
if (opt.users.size || opt.usersFile) authMethods.push('PLAIN', 'LOGIN');

/** The accounts for a password AUTH: --users-file read now, else --users. */
function users() {
    if (!opt.usersFile) return opt.users;
    const m = new Map();
    let text = '';
    try { text = fs.readFileSync(opt.usersFile, 'utf8').trim(); } catch (_) { return m; }
    for (const item of text.split(',')) {
        const i = item.indexOf(':');
        if (i > 0) m.set(item.slice(0, i), item.slice(i + 1));
    }
    return m;
}

if (opt.reportQuit) {
    const { SMTPConnection } = require('smtp-server/lib/smtp-connection.js');
    const quit = SMTPConnection.prototype.handler_QUIT;
    SMTPConnection.prototype.handler_QUIT = function (command, callback) {
        event(this.session, 'quit');
        return quit.call(this, command, callback);
    };
}
authMethods.push(...opt.oauthMechs);

// ------------------------------------------------------------ bearer tokens

const introspectCa = opt.introspectCa ? fs.readFileSync(opt.introspectCa) : undefined;

/** RFC 7662: is this token active at the OAuth server? Bounded (5 s). */
function introspect(token) {
    return new Promise((resolve) => {
        const body = `token=${encodeURIComponent(token)}&token_type_hint=access_token`;
        const headers = {
            'Content-Type': 'application/x-www-form-urlencoded',
            'Content-Length': Buffer.byteLength(body),
        };
        if (opt.introspectClient) {
            const { id, secret } = opt.introspectClient;
            headers.Authorization = 'Basic ' + Buffer.from(
                `${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
        }
        const req = https.request(opt.introspect, { method: 'POST', headers, ca: introspectCa, timeout: 5000 },
            (res) => {
                const chunks = [];
                res.on('data', (d) => chunks.push(d));
                res.on('end', () => {
                    try {
                        const j = JSON.parse(Buffer.concat(chunks).toString());
                        resolve(res.statusCode === 200 && j.active === true);
                    } catch (_) {
                        resolve(false);
                    }
                });
                res.on('error', () => resolve(false));
            });
        req.on('timeout', () => req.destroy(new Error('introspection timed out')));
        req.on('error', (e) => {
            process.stderr.write(`smtp-peer: introspection: ${e.message}\n`);
            resolve(false);
        });
        req.end(body);
    });
}

// TEST HOOK --refuse-first-auth N: the first N token AUTHs are refused even
// when the token is valid. A test needs a token that the SMTP server
// refuses once while the OAuth server still honours its grant, to prove
// that mailconn refreshes once and retries once; revoking the access token
// at oidc-provider is no way to get there, since revoking a token revokes
// its whole grant (the refresh token dies with it).
let tokenAuths = 0;

async function tokenValid(username, token) {
    tokenAuths++;
    if (opt.authReply) return false;
    if (tokenAuths <= opt.refuseFirstAuth) return false;
    if (opt.tokenUser !== null && username !== opt.tokenUser) return false;
    if (opt.tokens.size && opt.tokens.get(username) === token) return true;
    if (opt.introspect) return introspect(token);
    return false;
}

function b64json(o) {
    return Buffer.from(JSON.stringify(o)).toString('base64');
}

/* Both token mechanisms: decode the initial response (or the line after an
 * empty 334), check the token, answer 235 or refuse in the chosen shape.
 * `this` is the smtp-server connection, as for every SASL_ member. */
function tokenMechanism(method, parse) {
    const step = function (rawLine, callback) {
        const line = (rawLine || '').toString().trim();
        if (line === '*') {
            this.send(501, '5.7.0 Authentication aborted', false);
            return callback();
        }
        const got = parse(Buffer.from(line, 'base64').toString());
        if (!got || !got.user || !got.token || SASL.CONTROL_CHARS.test(got.user)) {
            this.send(501, '5.5.2 Error: invalid userdata', false);
            return callback();
        }
        this._server.onAuth({ method, username: got.user, accessToken: got.token }, this.session,
            (err, response) => {
                if (!err && response && response.user) {
                    this.session.user = response.user;
                    this.session.transmissionType = this._transmissionType();
                    this.send(235, '2.7.0 Accepted', false);
                    return callback();
                }
                if (opt.authReply) {
                    const m = /^(\d\d\d) (.*)$/.exec(opt.authReply);
                    this.send(Number(m[1]), m[2], false);
                    return callback();
                }
                if (method === 'XOAUTH2' && opt.oauthStyle === 'microsoft') {
                    this.send(535, '5.7.3 Authentication unsuccessful [MC0TEST.example.test]', false);
                    return callback();
                }
                const scope = opt.oauthStyle === 'microsoft' ? 'https://outlook.office.com/SMTP.Send'
                    : 'https://mail.google.com/';
                const challenge = method === 'XOAUTH2'
                    ? { status: '401', schemes: 'Bearer', scope }
                    : { status: 'invalid_token', scope, 'openid-configuration':
                        opt.introspect ? new URL('/.well-known/openid-configuration', opt.introspect).toString()
                            : 'https://example.test/.well-known/openid-configuration' };
                // the client must answer an empty line (XOAUTH2) or 0x01 (OAUTHBEARER)
                this._nextHandler = (answer, cb2) => {
                    const a = (answer || '').toString().trim();
                    const want = method === 'XOAUTH2' ? '' : 'AQ==';
                    event(this.session, `auth-answer ${method} ${a === want ? 'ok' : 'unexpected'}`);
                    this.send(535, '5.7.8 Username and Password not accepted', false);
                    cb2();
                };
                this.send(334, b64json(challenge), false);
                return callback();
            });
    };
    return function (args, callback) {
        if (args.length > 1) {
            this.send(501, `5.5.4 Error: syntax: AUTH ${method} token`, false);
            return callback();
        }
        if (!args.length) {
            this._nextHandler = step.bind(this);
            this.send(334);
            return callback();
        }
        return step.call(this, args[0], callback);
    };
}

SASL.SASL_XOAUTH2 = tokenMechanism('XOAUTH2', (text) => {
    let user = null;
    let token = null;
    for (const field of text.split('\x01')) {
        const eq = field.indexOf('=');
        if (eq < 0) continue;
        const k = field.slice(0, eq).toLowerCase();
        const v = field.slice(eq + 1);
        if (k === 'user') user = v;
        else if (k === 'auth' && /^bearer /i.test(v)) token = v.slice(7).trim();
    }
    return { user, token };
});

// RFC 7628: gs2-header "n,a=USER," then \x01-separated key=value pairs
SASL.SASL_OAUTHBEARER = tokenMechanism('OAUTHBEARER', (text) => {
    const parts = text.split('\x01');
    const gs2 = /^[ny],(?:a=([^,]*))?,$/.exec(parts[0]);
    if (!gs2) return null;
    const user = gs2[1] === undefined ? null : gs2[1].replace(/=2C/g, ',').replace(/=3D/g, '=');
    let token = null;
    for (const field of parts.slice(1)) {
        const eq = field.indexOf('=');
        if (eq < 0) continue;
        if (field.slice(0, eq) === 'auth' && /^bearer /i.test(field.slice(eq + 1))) {
            token = field.slice(eq + 1).slice(7).trim();
        }
    }
    return { user, token };
});

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
    hideDSN: !opt.dsn,
    authMethods: authMethods.length ? authMethods : ['PLAIN'],
    authOptional: opt.authOptional || !authMethods.length,
    allowInsecureAuth: opt.allowInsecureAuth,
    size: opt.size || undefined,
    banner: opt.banner || undefined,
    closeTimeout: 1000,
    // no DNS: a test machine may have no resolver, and a PTR query could stall
    disableReverseLookup: true,

    onConnect(session, cb) {
        connectionNumber.set(session.id, ++connections);
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
        if (auth.method === 'XOAUTH2' || auth.method === 'OAUTHBEARER') {
            tokenValid(auth.username, auth.accessToken).then((valid) => {
                if (!valid) {
                    event(session, `auth-fail ${auth.method} ${auth.username}`);
                    return cb(null, {});
                }
                cb(null, { user: auth.username });
            });
            return;
        } else {
            const accounts = users();
            ok = accounts.has(auth.username) && accounts.get(auth.username) === auth.password;
            if (!ok) {
                event(session, `auth-fail ${auth.method} ${auth.username}`);
                const e = new Error('Authentication credentials invalid');
                e.responseCode = 535;
                return cb(e);
            }
            // with --users-file, the password that was accepted (test passwords):
            // a reload test tells which config a connection logged in with
            if (opt.usersFile) event(session, `auth-ok ${auth.method} ${auth.username} ${auth.password}`);
        }
        cb(null, { user: auth.username });
    },
    onMailFrom(address, session, cb) {
        event(session, `mail ${address.address}`);
        if (opt.throttleSessions && opt.throttleSessions.has(connectionNumber.get(session.id))) {
            event(session, 'throttled');
            const e = new Error('4.3.2 Too many concurrent connections from this client, try again later');
            e.responseCode = 432;
            return cb(e);
        }
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
            if (opt.dsn) {
                meta.dsn = session.envelope.dsn || null;
                meta.rcptDsn = session.envelope.rcptTo.map((r) => r.dsn || null);
            }
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
