#!/usr/bin/env node
// fault-peer.js: a FAULT INJECTOR, not an SMTP server. It speaks just
// enough SMTP to reach a chosen point and then misbehaves in ways real
// servers (smtp-server, postfix) will not on request: closing the
// connection after the final dot, replies that never come, garbage,
// mismatched multi-line codes, 421/451/452/554 at a chosen stage, bytes
// injected after the STARTTLS 220. Every normal test uses the real
// smtp-server peer (smtp-peer.js); this one exists only for faults.
//
// usage: fault-peer.js --out DIR --script JSON [--port N] [--host ADDR]
// The script: {
//   "greeting": "220 fault ready" | ["220-a","220 b"] | "close" | "hang",
//   "ehlo":     ["250-fault", "250-PIPELINING", "250 SIZE 1000"],
//   "replies":  { "MAIL": "250 ok", "RCPT": "250 ok", "DATA": "354 go",
//                 "DOT": "250 queued", "RSET": "250 ok", "QUIT": "221 bye",
//                 "NOOP": "250 ok", "AUTH": "235 ok", "HELO": "250 hi",
//                 "STARTTLS": "454 no" },
//   "sequence": { "DOT": ["close", "250 queued"] }   // per-connection? no: global, in order
// }
// A reply is a string (CRLF added; "\n" inside splits lines), an array of
// lines, "close" (end the connection), "hang" (never answer), or
// {"raw": "bytes as is"}. "sequence" gives successive replies for a
// command across the whole run (the last one repeats).
// Prints {"ready":true,"port":N,"pid":P}; events go to OUT/events.log as
// "<conn> connect", "<conn> cmd <VERB>", "<conn> dot <bytes>", "<conn> close".
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const out = opt('--out');
const script = JSON.parse(opt('--script', '{}'));
if (!out) {
    process.stderr.write('usage: fault-peer.js --out DIR --script JSON [--port N] [--host ADDR]\n');
    process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');

const defaults = {
    greeting: '220 fault-peer ready',
    ehlo: ['250-fault-peer', '250-PIPELINING', '250-8BITMIME', '250 ENHANCEDSTATUSCODES'],
    replies: {
        HELO: '250 fault-peer', MAIL: '250 2.1.0 ok', RCPT: '250 2.1.5 ok', DATA: '354 go ahead',
        DOT: '250 2.0.0 queued', RSET: '250 2.0.0 ok', NOOP: '250 2.0.0 ok', QUIT: '221 2.0.0 bye',
        AUTH: '235 2.7.0 ok', STARTTLS: '454 4.7.0 TLS not available',
    },
};
const replies = Object.assign({}, defaults.replies, script.replies || {});
const seq = {};
for (const [k, v] of Object.entries(script.sequence || {})) seq[k] = { list: v, i: 0 };

function replyFor(verb) {
    const s = seq[verb];
    if (s) {
        const r = s.list[Math.min(s.i, s.list.length - 1)];
        s.i++;
        return r;
    }
    return replies[verb] !== undefined ? replies[verb] : '502 5.5.2 unknown command';
}

let nconn = 0;
const server = net.createServer((sock) => {
    const id = ++nconn;
    log(`${id} connect`);
    let buf = Buffer.alloc(0);
    let inData = false;
    let dataBytes = 0;
    let closed = false;
    sock.on('error', () => {});
    sock.on('close', () => { closed = true; log(`${id} close`); });

    // returns false when the connection is finished
    const send = (r) => {
        if (closed) return false;
        if (r === 'close') { sock.destroy(); return false; }
        if (r === 'hang') return true;
        if (r && typeof r === 'object' && !Array.isArray(r)) { sock.write(Buffer.from(r.raw, 'binary')); return true; }
        const lines = Array.isArray(r) ? r : String(r).split('\n');
        sock.write(lines.map((l) => l + '\r\n').join(''));
        return true;
    };

    if (!send(script.greeting !== undefined ? script.greeting : defaults.greeting)) return;

    sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
            if (inData) {
                const end = buf.indexOf('\r\n.\r\n');
                if (end < 0) {
                    // keep the tail that may hold a split terminator
                    dataBytes += Math.max(0, buf.length - 4);
                    buf = buf.subarray(Math.max(0, buf.length - 4));
                    return;
                }
                dataBytes += end;
                buf = buf.subarray(end + 5);
                inData = false;
                log(`${id} dot ${dataBytes}`);
                if (!send(replyFor('DOT'))) return;
                continue;
            }
            const nl = buf.indexOf('\r\n');
            if (nl < 0) return;
            const line = buf.subarray(0, nl).toString('latin1');
            buf = buf.subarray(nl + 2);
            const verb = line.split(/[ :]/)[0].toUpperCase();
            log(`${id} cmd ${verb}`);
            let r;
            if (verb === 'EHLO') r = script.ehlo !== undefined ? script.ehlo : defaults.ehlo;
            else r = replyFor(verb);
            if (!send(r)) return;
            if (verb === 'DATA' && String(r).startsWith('354')) { inData = true; dataBytes = 0; }
            if (verb === 'QUIT') { sock.end(); return; }
        }
    });
});

server.listen(Number(opt('--port', '0')), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(JSON.stringify({ ready: true, port: server.address().port, pid: process.pid }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
