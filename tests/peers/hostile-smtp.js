#!/usr/bin/env node
// hostile-smtp.js: a FAULT INJECTOR, not an SMTP server. It speaks just
// enough SMTP to reach one point of the dialogue and then behaves as a
// hostile server would (issue 9, points 1 and 2), in ways no real server
// (smtp-server, postfix) does on request:
//   replies that arrive before the final dot (a 250 or a 421 in the same
//   write as the 354, then the connection closed without reading the body;
//   a 354 to a pipelined RCPT), replies after the final dot that are not one
//   complete, parsable reply (a NUL byte, mixed codes, 100 KB of short
//   lines, a drop, none at all), and replies without end (2 M EHLO lines,
//   a 2 M-line 334 challenge, an endless "220-" greeting), streamed with
//   back-pressure so the flood costs the client, not this process.
// tests/peers/fault-peer.js injects the simpler faults; every normal test
// uses the real smtp-server peer (smtp-peer.js).
//
// usage: hostile-smtp.js --out DIR --mode MODE [--port N] [--host ADDR]
//
// MODE (everything else answers as a well-behaved server with PIPELINING):
//   early-250      DATA -> "354" and "250 queued" in one write, then close
//   early-421      DATA -> "354" and "421 closing" in one write, then close
//   late-250       DATA -> "354"; "250 queued" as soon as the first bytes of
//                  the body arrive (long before its end), nothing after the dot
//   rcpt-354       RCPT -> "354", DATA -> "354"
//   dot-nul        final dot -> "250 2.0.0 qu<NUL>eued"
//   dot-mixed      final dot -> "250-2.0.0 queued" "550 5.0.0 or not"
//   dot-oversized  final dot -> 100 KB of "250-" lines of 20 bytes, then "250 ok"
//   dot-drop       final dot -> close
//   dot-hang       final dot -> no reply (the connection stays open)
//   ehlo-flood     EHLO -> 2 M lines "250-X-FLOOD", then "250 OK"
//   auth-flood     EHLO offers AUTH PLAIN; AUTH -> a 2 M-line 334 challenge,
//                  "*" -> "501 5.7.0 cancelled"
//   greeting-flood "220-" lines until the client goes away
//
// Prints {"ready":true,"port":N,"pid":P}; events go to OUT/events.log:
// "<conn> connect", "<conn> cmd <VERB>", "<conn> data <bytes>" (bytes
// received after a 354, once per chunk), "<conn> dot <bytes>",
// "<conn> flood <bytes>" (how much of a flood was written before the client
// went away), "<conn> close".
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
const mode = opt('--mode');
const MODES = ['early-250', 'early-421', 'late-250', 'rcpt-354', 'dot-nul', 'dot-mixed', 'dot-oversized',
    'dot-drop', 'dot-hang', 'ehlo-flood', 'auth-flood', 'greeting-flood'];
if (!out || !MODES.includes(mode)) {
    process.stderr.write(`usage: hostile-smtp.js --out DIR --mode ${MODES.join('|')} ` +
        '[--port N] [--host ADDR]\n');
    process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');

const FLOOD_LINES = 2 * 1000 * 1000;

/* Write `lines` copies of `line` (then `last`, when given) with
 * back-pressure; endless when lines is Infinity. Stops when the socket
 * closes; logs how many bytes went out. */
function flood(sock, id, line, lines, last) {
    const per = 4096;                       // lines per write
    const chunk = Buffer.from(line.repeat(per));
    let sent = 0;
    let bytes = 0;
    let done = false;
    const finish = () => {
        if (done) return;
        done = true;
        log(`${id} flood ${bytes}`);
    };
    sock.once('close', finish);
    const pump = () => {
        while (!sock.destroyed && sent < lines) {
            const n = Math.min(per, lines - sent);
            const b = n === per ? chunk : Buffer.from(line.repeat(n));
            sent += n;
            bytes += b.length;
            if (!sock.write(b)) {
                sock.once('drain', pump);
                return;
            }
        }
        if (!sock.destroyed && last !== undefined) {
            sock.write(last);
            bytes += last.length;
        }
        finish();
    };
    pump();
}

let nconn = 0;

function serve(sock, id) {
    let buf = Buffer.alloc(0);
    let inData = false;
    let dataBytes = 0;
    sock.on('error', () => {});
    sock.on('close', () => log(`${id} close`));
    const reply = (text) => { if (!sock.destroyed) sock.write(text); };

    if (mode === 'greeting-flood') {
        flood(sock, id, '220-hostile greeting, more to come\r\n', Infinity);
        sock.resume();
        return;
    }
    reply('220 hostile-smtp ready\r\n');

    let early = false;   // late-250: the early reply went out
    sock.on('data', (chunk) => {
        if (inData) log(`${id} data ${chunk.length}`);
        if (inData && mode === 'late-250' && !early) {
            early = true;
            reply('250 2.0.0 queued\r\n');
        }
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
            if (inData) {
                const end = buf.indexOf('\r\n.\r\n');
                if (end < 0) {
                    const keep = Math.min(buf.length, 4);   // a terminator split across chunks
                    dataBytes += buf.length - keep;
                    buf = buf.subarray(buf.length - keep);
                    return;
                }
                dataBytes += end;
                buf = buf.subarray(end + 5);
                inData = false;
                log(`${id} dot ${dataBytes}`);
                afterDot();
                continue;
            }
            const nl = buf.indexOf('\r\n');
            if (nl < 0) return;
            const line = buf.subarray(0, nl).toString('latin1');
            buf = buf.subarray(nl + 2);
            const verb = line.split(/[ :]/)[0].toUpperCase();
            log(`${id} cmd ${verb}`);
            if (!command(verb)) return;
        }
    });

    function afterDot() {
        switch (mode) {
        case 'dot-nul': reply('250 2.0.0 qu\0eued\r\n'); break;
        case 'dot-mixed': reply('250-2.0.0 queued\r\n550 5.0.0 or not\r\n'); break;
        case 'dot-oversized': reply('250-2.0.0 queued....\r\n'.repeat(5000) + '250 2.0.0 ok\r\n'); break;
        case 'dot-drop': sock.destroy(); break;
        case 'dot-hang': break;
        case 'late-250': break;   // its 250 went out before the dot
        default: reply('250 2.0.0 queued\r\n');
        }
    }

    // false: the connection is finished
    function command(verb) {
        switch (verb) {
        case 'EHLO':
            if (mode === 'ehlo-flood') {
                reply('250-hostile-smtp\r\n');
                flood(sock, id, '250-X-FLOOD\r\n', FLOOD_LINES, '250 OK\r\n');
                return true;
            }
            reply('250-hostile-smtp\r\n250-PIPELINING\r\n' +
                (mode === 'auth-flood' ? '250-AUTH PLAIN LOGIN\r\n' : '') + '250 8BITMIME\r\n');
            return true;
        case 'HELO': reply('250 hostile-smtp\r\n'); return true;
        case 'AUTH':
            if (mode === 'auth-flood') {
                flood(sock, id, '334-Zmxvb2QgY2hhbGxlbmdlIGxpbmU=\r\n', FLOOD_LINES, '334 \r\n');
                return true;
            }
            reply('235 2.7.0 ok\r\n');
            return true;
        case '*': reply('501 5.7.0 cancelled\r\n'); return true;
        case 'MAIL': reply('250 2.1.0 ok\r\n'); return true;
        case 'RCPT': reply(mode === 'rcpt-354' ? '354 go ahead\r\n' : '250 2.1.5 ok\r\n'); return true;
        case 'DATA':
            if (mode === 'early-250' || mode === 'early-421') {
                // both in one write, then close without reading the body
                sock.end(mode === 'early-250' ? '354 go ahead\r\n250 2.0.0 queued\r\n'
                    : '354 go ahead\r\n421 4.3.2 closing\r\n');
                // what still arrives (the body, had the client sent it) is
                // counted, never answered
                sock.removeAllListeners('data');
                sock.on('data', (d) => log(`${id} data ${d.length}`));
                return false;
            }
            reply('354 go ahead\r\n');
            // the data starts at a line start: an empty message is ".\r\n"
            inData = true;
            dataBytes = -2;
            buf = Buffer.concat([Buffer.from('\r\n'), buf]);
            return true;
        case 'RSET': reply('250 2.0.0 ok\r\n'); return true;
        case 'NOOP': reply('250 2.0.0 ok\r\n'); return true;
        case 'QUIT': sock.end('221 2.0.0 bye\r\n'); return false;
        default: reply('502 5.5.2 unknown command\r\n'); return true;
        }
    }
}

const server = net.createServer((sock) => {
    const id = ++nconn;
    log(`${id} connect`);
    serve(sock, id);
});

server.listen(Number(opt('--port', '0')), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(JSON.stringify({ ready: true, port: server.address().port, pid: process.pid }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
