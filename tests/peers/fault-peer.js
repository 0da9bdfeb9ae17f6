#!/usr/bin/env node
// fault-peer.js: a FAULT INJECTOR, not an SMTP server. It speaks just
// enough SMTP to reach a chosen point and then misbehaves in ways real
// servers (smtp-server, postfix) will not on request: closing the
// connection at a chosen point (before the greeting, during EHLO, after
// AUTH, in the middle of DATA, after the final dot), replies that never
// come, garbage (non-digit codes, a 1 MB line, a reply without CRLF),
// mismatched multi-line codes, 421/451/452/554 at a chosen stage, bytes
// injected after the STARTTLS 220, a TLS handshake that fails, AUTH offered
// on a connection without TLS. Every normal test uses the real smtp-server
// peer (smtp-peer.js); this one exists only for faults.
//
// usage: fault-peer.js --out DIR [--script JSON] [--port N] [--host ADDR]
//                      [--tls none|implicit --cert FILE --key FILE] [--tls-max 1.2|1.3]
//
// The script (every key optional; defaults: a well-behaved server):
// {
//   "greeting": "220 fault ready" | ["220-a","220 b"] | "close" | "hang" | {...},
//   "ehlo":     ["250-fault", "250-PIPELINING", "250 SIZE 1000"],
//   "replies":  { "MAIL": "250 ok", "RCPT": "250 ok", "DATA": "354 go",
//                 "DOT": "250 queued", "RSET": "250 ok", "QUIT": "221 bye",
//                 "NOOP": "250 ok", "AUTH": "235 ok", "HELO": "250 hi",
//                 "STARTTLS": "454 no" },
//   "sequence": { "DOT": ["close", "250 queued"] },  // successive replies across
//                                                     // the whole run; the last repeats
//   "dataClose": N,        // reset the connection once N bytes of DATA arrived
//   "handshake": "tls" | "garbage" | "close" | "hang",
//                          // what happens where TLS starts (at connect with
//                          // --tls implicit, after a 220 to STARTTLS):
//                          // "tls" a real handshake (needs --cert/--key), the
//                          // others a handshake that fails. Default: "tls" with
//                          // --tls implicit, nothing after STARTTLS (the 220 is
//                          // sent and the connection then idles)
//   "conns": [ {...}, {...} ]  // per-connection overrides of the keys above,
//                          // merged over the script for connection 1, 2, ...;
//                          // the last one repeats
// }
// A reply is:
//   a string (CRLF added; "\n" inside splits lines), an array of lines,
//   "close" (end the connection without a reply), "hang" (never answer),
//   {"raw": "bytes as is", "pad": N, "end": "...", "close": true}: raw, then
//   N bytes "x", then end, written as is (no CRLF added); then the connection
//   is closed when "close" is true.
// A string or array reply whose code is 421 closes the connection after it is
// sent, as real servers do.
// Prints {"ready":true,"port":N,"pid":P}; events go to OUT/events.log as
// "<conn> connect", "<conn> secure", "<conn> cmd <VERB>", "<conn> dot <bytes>",
// "<conn> data-reset <bytes>", "<conn> close".
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const tls = require('node:tls');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const out = opt('--out');
const script = JSON.parse(opt('--script', '{}'));
const tlsMode = opt('--tls', 'none');
const certFile = opt('--cert');
const keyFile = opt('--key');
if (!out || (tlsMode !== 'none' && tlsMode !== 'implicit')) {
    process.stderr.write('usage: fault-peer.js --out DIR [--script JSON] [--port N] [--host ADDR] ' +
        '[--tls none|implicit --cert FILE --key FILE] [--tls-max 1.2|1.3]\n');
    process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');

let secureContext = null;
if (certFile && keyFile) {
    const o = { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
    const max = opt('--tls-max');
    if (max) o.maxVersion = `TLSv${max}`;
    secureContext = tls.createSecureContext(o);
}

const defaults = {
    greeting: '220 fault-peer ready',
    ehlo: ['250-fault-peer', '250-PIPELINING', '250-8BITMIME', '250 ENHANCEDSTATUSCODES'],
    replies: {
        HELO: '250 fault-peer', MAIL: '250 2.1.0 ok', RCPT: '250 2.1.5 ok', DATA: '354 go ahead',
        DOT: '250 2.0.0 queued', RSET: '250 2.0.0 ok', NOOP: '250 2.0.0 ok', QUIT: '221 2.0.0 bye',
        AUTH: '235 2.7.0 ok', STARTTLS: '454 4.7.0 TLS not available',
    },
};
const seq = {};
for (const [k, v] of Object.entries(script.sequence || {})) seq[k] = { list: v, i: 0 };

/** The script for connection id (1-based): script.conns[id-1] (the last
 *  repeats) merged over the script; "replies" merged key by key. */
function scriptFor(id) {
    const conns = script.conns || [];
    const o = conns.length ? conns[Math.min(id - 1, conns.length - 1)] : {};
    const s = Object.assign({}, script, o);
    s.replies = Object.assign({}, defaults.replies, script.replies || {}, o.replies || {});
    return s;
}

function replyFor(sc, verb) {
    const s = seq[verb];
    if (s) {
        const r = s.list[Math.min(s.i, s.list.length - 1)];
        s.i++;
        return r;
    }
    return sc.replies[verb] !== undefined ? sc.replies[verb] : '502 5.5.2 unknown command';
}

let nconn = 0;

function serve(sock, id, sc) {
    let buf = Buffer.alloc(0);
    let inData = false;
    let dataBytes = 0;
    let closed = false;
    let upgrading = false;
    let hung = false;   // a reply that never comes: every later command is ignored too
    sock.on('error', () => {});
    sock.on('close', () => {
        if (upgrading) return;   // the TLS socket on top reports the close
        closed = true;
        log(`${id} close`);
    });

    // returns false when the connection is finished
    const send = (r) => {
        if (closed) return false;
        if (r === 'close') { sock.destroy(); return false; }
        if (r === 'hang') { hung = true; return true; }
        if (r && typeof r === 'object' && !Array.isArray(r)) {
            const parts = [Buffer.from(r.raw || '', 'latin1')];
            if (r.pad) parts.push(Buffer.alloc(r.pad, 'x'));
            if (r.end) parts.push(Buffer.from(r.end, 'latin1'));
            sock.write(Buffer.concat(parts));
            if (r.close) { sock.end(); return false; }
            return true;
        }
        const lines = Array.isArray(r) ? r : String(r).split('\n');
        sock.write(lines.map((l) => l + '\r\n').join(''));
        if (/^421/.test(lines[lines.length - 1])) { sock.end(); return false; }
        return true;
    };

    // where TLS starts: a real handshake or a failing one
    const startTls = (mode, onSecure) => {
        if (mode === 'close') { sock.destroy(); return; }
        if (mode === 'hang') { sock.resume(); return; }   // read, to see the client's close
        if (mode === 'garbage') {
            // answer the ClientHello with plaintext, as a misconfigured port does
            sock.once('data', () => {
                if (!closed) sock.end('220 this is not TLS\r\n');
            });
            return;
        }
        upgrading = true;
        sock.removeAllListeners('data');
        const ts = new tls.TLSSocket(sock, { isServer: true, secureContext });
        ts.on('error', () => ts.destroy());
        ts.on('close', () => { closed = true; log(`${id} close`); });
        ts.on('secure', () => {
            log(`${id} secure`);
            onSecure(ts);
        });
    };

    const dialogue = (s) => {
        sock = s;
        if (!send(sc.greeting !== undefined ? sc.greeting : defaults.greeting)) return;
        sock.on('data', onData);
    };

    function onData(chunk) {
        if (hung) return;
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
            if (inData) {
                const end = buf.indexOf('\r\n.\r\n');
                if (sc.dataClose && dataBytes + (end < 0 ? buf.length : end) >= sc.dataClose) {
                    log(`${id} data-reset ${dataBytes + buf.length}`);
                    sock.resetAndDestroy();
                    return;
                }
                if (end < 0) {
                    // keep the tail that may hold a split terminator
                    dataBytes += Math.max(0, buf.length - 4);
                    buf = buf.subarray(Math.max(0, buf.length - 4));
                    return;
                }
                dataBytes += end;
                buf = buf.subarray(end + 5);
                inData = false;
                log(`${id} dot ${Math.max(0, dataBytes)}`);
                if (!send(replyFor(sc, 'DOT')) || hung) return;
                continue;
            }
            const nl = buf.indexOf('\r\n');
            if (nl < 0) return;
            const line = buf.subarray(0, nl).toString('latin1');
            buf = buf.subarray(nl + 2);
            const verb = line.split(/[ :]/)[0].toUpperCase();
            log(`${id} cmd ${verb}`);
            let r;
            if (verb === 'EHLO') r = sc.ehlo !== undefined ? sc.ehlo : defaults.ehlo;
            else r = replyFor(sc, verb);
            if (!send(r)) return;
            if (hung) return;
            if (verb === 'DATA' && String(r).startsWith('354')) {
                // the data starts at a line start: an empty message is ".\r\n"
                inData = true;
                dataBytes = -2;
                buf = Buffer.concat([Buffer.from('\r\n'), buf]);
            }
            if (verb === 'QUIT') { sock.end(); return; }
            if (verb === 'STARTTLS' && sc.handshake && String(r).startsWith('220')) {
                sock.removeListener('data', onData);
                buf = Buffer.alloc(0);
                startTls(sc.handshake, (ts) => {
                    // after the upgrade: EHLO again, on the TLS socket
                    closed = false;
                    sock = ts;
                    sock.on('data', onData);
                });
                return;
            }
        }
    }

    if (tlsMode === 'implicit') startTls(sc.handshake || 'tls', dialogue);
    else dialogue(sock);
}

const server = net.createServer((sock) => {
    const id = ++nconn;
    log(`${id} connect`);
    serve(sock, id, scriptFor(id));
});

server.listen(Number(opt('--port', '0')), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(JSON.stringify({ ready: true, port: server.address().port, pid: process.pid }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
