#!/usr/bin/env node
// token-fault.js: a FAULT INJECTOR, not an OAuth server. It answers OAuth
// token, device and revocation requests with canned bodies, to feed mailconn
// the provider errors that the real authorization server of the tests
// (oidc-peer.js, npm oidc-provider) cannot be made to produce: Microsoft's
// AADSTS errors (AADSTS7000012, AADSTS700082, AADSTS65001, AADSTS7000218,
// with their error_codes arrays), Google's invalid_scope to a device request
// for the Gmail scope, Google's invalid_grant for a refresh token that died
// days after it was issued. Every normal OAuth test uses oidc-peer.js.
//
// usage: token-fault.js --out DIR --script JSON [--port N] [--host ADDR]
//                       [--cert FILE --key FILE]   (HTTPS; plain HTTP without)
// The script maps a request path to a reply, or to a list of replies given
// in order (the last one repeats):
//   { "/token": [ {"status": 200, "body": {"access_token": "...", ...}},
//                 {"status": 400, "body": {"error": "invalid_grant", ...}} ],
//     "/devicecode": {"status": 400, "body": {"error": "invalid_scope"}} }
// A body that is an object is sent as JSON; a string is sent as it is.
// Unknown paths get 404 {"error":"invalid_request"}.
// A reply may carry "delayMs": N to answer only after N ms (a slow endpoint,
// for the deadlines of device polling).
// Prints {"ready":true,"port":N,"pid":P} on stdout; stops on SIGTERM.
// OUT/events.log gets one line per request: "<n> <METHOD> <path> <grant_type
// or -> <status>" (never a parameter value other than grant_type, so no
// secret reaches the log).
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const out = opt('--out');
if (!out) {
    process.stderr.write('usage: token-fault.js --out DIR --script JSON [--port N] [--host ADDR] ' +
                         '[--cert FILE --key FILE]\n');
    process.exit(2);
}
const script = JSON.parse(opt('--script', '{}'));
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');

const seq = {};
for (const [p, v] of Object.entries(script)) seq[p] = { list: [].concat(v), i: 0 };

function replyFor(p) {
    const s = seq[p];
    if (!s) return { status: 404, body: { error: 'invalid_request', error_description: `no route ${p}` } };
    const r = s.list[Math.min(s.i, s.list.length - 1)];
    s.i++;
    return r;
}

let n = 0;
function handle(req, res) {
    const id = ++n;
    const chunks = [];
    let size = 0;
    req.on('data', (d) => {
        size += d.length;
        if (size <= 65536) chunks.push(d);
    });
    req.on('end', () => {
        const u = new URL(req.url, 'http://x');
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        const r = replyFor(u.pathname);
        const body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body || {});
        log(`${id} ${req.method} ${u.pathname} ${form.get('grant_type') || '-'} ${r.status}`);
        const answer = () => {
            if (res.destroyed) return;
            res.writeHead(r.status, Object.assign({
                'Content-Type': 'application/json',
                'Content-Length': Buffer.byteLength(body),
                'Cache-Control': 'no-store',
            }, r.headers || {}));
            res.end(body);
        };
        if (r.delayMs) setTimeout(answer, r.delayMs).unref();
        else answer();
    });
}

const cert = opt('--cert');
const key = opt('--key');
const server = cert && key
    ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, handle)
    : http.createServer(handle);
server.on('error', (e) => {
    process.stderr.write(`token-fault: ${e.message}\n`);
    process.exit(1);
});
server.listen(Number(opt('--port', '0')), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(JSON.stringify({ ready: true, port: server.address().port, pid: process.pid }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
