#!/usr/bin/env node
// http-fault.js: a FAULT INJECTOR for OAuth token endpoints, not an
// authorization server. Real token endpoints (oidc-peer.js, npm
// oidc-provider) are the peers for everything that works; this one answers
// token requests the way a broken or hostile endpoint would, over HTTPS with
// the test CA (tests/peers/mkca.sh).
//
// usage: http-fault.js --out DIR --cert FILE --key FILE [--port N] [--host ADDR]
//                      [--script JSON]
//
// Every POST is answered by the mode named in its path, https://HOST:PORT/<mode>;
// POST /token takes its modes from --script ["ok", "invalid_grant", ...] in
// order (the last repeats; default ["ok"]). Modes:
//   ok             200, a valid token response: access_token, refresh_token,
//                  token_type Bearer, expires_in (1: already due for refresh)
//   500            HTTP 500 with an HTML body
//   invalid_grant  400 {"error":"invalid_grant"} (refresh token revoked or expired)
//   bad-json       200 with a body that is not JSON
//   huge           200 with a 10 MB body (a JSON string that never ends in time)
//   slow           never answers (the client's timeout must end the request)
//   slow-body      200 and the headers, half a body, then nothing more
//   no-token       200 {"token_type":"Bearer","expires_in":3600}: no access_token
// Prints {"ready":true,"port":N,"pid":P}; stops on SIGTERM. OUT/events.log gets
// "<n> request <mode>", "<n> body <bytes>" (the request body's length, never
// its content) and "<n> close" when the client's connection ends.
'use strict';

const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const out = opt('--out');
if (!out || !opt('--cert') || !opt('--key')) {
    process.stderr.write('usage: http-fault.js --out DIR --cert FILE --key FILE [--port N] ' +
        '[--host ADDR] [--script JSON]\n');
    process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');
const sequence = JSON.parse(opt('--script', '["ok"]'));
let seqIndex = 0;
let nreq = 0;
let ntoken = 0;
const held = new Set();

function answer(res, mode, id) {
    const json = (status, obj) => {
        const body = JSON.stringify(obj);
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
            'Cache-Control': 'no-store' });
        res.end(body);
    };
    switch (mode) {
    case 'ok':
        ntoken++;
        return json(200, { access_token: `fault-access-${process.pid}-${ntoken}`,
            refresh_token: `fault-refresh-${process.pid}-${ntoken}`, token_type: 'Bearer', expires_in: 1 });
    case '500':
        res.writeHead(500, { 'Content-Type': 'text/html' });
        return res.end('<html><body>Internal Server Error</body></html>');
    case 'invalid_grant':
        return json(400, { error: 'invalid_grant', error_description: 'refresh token revoked' });
    case 'bad-json':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end('{"access_token": "half-a-token", "expires_in": 36');
    case 'huge': {
        const size = 10 * 1024 * 1024;
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': size });
        const chunk = Buffer.alloc(64 * 1024, 'a');
        let sent = 0;
        res.write('{"access_token":"');
        sent += 17;
        const pump = () => {
            while (sent < size - 2) {
                const n = Math.min(chunk.length, size - 2 - sent);
                sent += n;
                if (!res.write(chunk.subarray(0, n))) { res.once('drain', pump); return; }
            }
            res.end('"}');
        };
        res.on('error', () => {});
        return pump();
    }
    case 'slow':
        held.add(res);
        return undefined;
    case 'slow-body':
        held.add(res);
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 200 });
        return res.write('{"access_token":"');
    case 'no-token':
        return json(200, { token_type: 'Bearer', expires_in: 3600 });
    default:
        return json(404, { error: 'not_found', mode });
    }
}

const server = https.createServer({
    cert: fs.readFileSync(opt('--cert')),
    key: fs.readFileSync(opt('--key')),
}, (req, res) => {
    const id = ++nreq;
    let mode = req.url.replace(/^\//, '').replace(/\?.*$/, '');
    if (mode === 'token') {
        mode = sequence[Math.min(seqIndex, sequence.length - 1)];
        seqIndex++;
    }
    log(`${id} request ${mode}`);
    let len = 0;
    req.on('data', (d) => { len += d.length; });
    req.on('end', () => {
        log(`${id} body ${len}`);
        answer(res, mode, id);
    });
    res.on('close', () => {
        held.delete(res);
        log(`${id} close`);
    });
});
server.on('tlsClientError', () => {});

server.listen(Number(opt('--port', '0')), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(JSON.stringify({ ready: true, port: server.address().port, pid: process.pid }) + '\n');
});
process.on('SIGTERM', () => {
    for (const r of held) r.destroy();
    process.exit(0);
});
