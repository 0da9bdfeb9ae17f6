#!/usr/bin/env node
// trickle-peer.js: a FAULT INJECTOR, not an SMTP server. A TCP relay in
// front of a real server (smtp-peer.js, plain or implicit TLS) that changes
// only the pace: what the server sends reaches the client one byte at a
// time, one byte every --down-interval-ms (greetings, replies and, in front
// of an implicit TLS server, the TLS handshake itself); what the client sends
// is read in steps with a pause after each (--up-pause-ms: a server that
// reads slowly but steadily). Real servers do not trickle on request; this
// exists to prove that timeout_s bounds each wait in total and that a body
// that keeps moving is not cut. --trickle-after TEXT trickles only what the
// server sends once the client has sent TEXT and then more (after
// "STARTTLS\r\n", its ClientHello: the handshake after STARTTLS is
// trickled, the dialogue before it is not). With --blackhole there is no relay: a
// listener whose accept queue is full, so a connect to it never completes.
//
// usage: trickle-peer.js --out DIR [--port N] [--host ADDR]
//                        --target HOST:PORT [--down-interval-ms N] [--up-pause-ms N]
//                        [--trickle-after TEXT]
//        trickle-peer.js --out DIR [--port N] [--host ADDR] --blackhole
//
// Prints {"ready":true,"port":N,"pid":P}; events go to OUT/events.log as
// "<conn> connect", "<conn> close up=<bytes> down=<bytes>" (bytes relayed
// client to server and server to client). Stops on SIGTERM.
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
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port', '0'));
const blackhole = args.includes('--blackhole');
const target = opt('--target');
const downMs = Number(opt('--down-interval-ms', '0'));
const upPauseMs = Number(opt('--up-pause-ms', '0'));
const trickleAfter = opt('--trickle-after');
if (!out || (!blackhole && !/^[^:]+:\d+$/.test(target || ''))) {
    process.stderr.write('usage: trickle-peer.js --out DIR [--port N] [--host ADDR] ' +
        '(--target HOST:PORT [--down-interval-ms N] [--up-pause-ms N] | --blackhole)\n');
    process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const log = (line) => fs.appendFileSync(path.join(out, 'events.log'), line + '\n');
const ready = (p) => process.stdout.write(JSON.stringify({ ready: true, port: p, pid: process.pid }) + '\n');

if (blackhole) {
    runBlackhole();
} else {
    runRelay();
}

function runRelay() {
    const [thost, tport] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    let conns = 0;
    const server = net.createServer((client) => {
        const id = ++conns;
        log(`${id} connect`);
        let up = 0;
        let down = 0;
        let done = false;
        const queue = [];        // server -> client, not yet sent
        let serverEnded = false;
        let timer = null;
        let seen = '';                         // what the client sent, until trickleAfter
        let armed = !trickleAfter;             // trickleAfter seen
        let trickling = !trickleAfter;         // ... and more after it
        const upstream = net.connect({ host: thost, port: tport });
        const finish = () => {
            if (done) return;
            done = true;
            if (timer) clearInterval(timer);
            client.destroy();
            upstream.destroy();
            log(`${id} close up=${up} down=${down}`);
        };
        client.on('error', finish);
        upstream.on('error', finish);
        client.on('close', finish);
        upstream.on('close', () => { serverEnded = true; if (!queue.length || !downMs) finish(); });

        // client -> server: forwarded as read, with a pause after each read
        client.on('data', (d) => {
            up += d.length;
            if (!trickling) {
                if (armed) {
                    trickling = true;
                } else {
                    seen += d.toString('latin1');
                    const i = seen.indexOf(trickleAfter);
                    if (i >= 0) {
                        armed = true;
                        trickling = i + trickleAfter.length < seen.length;
                    }
                    seen = seen.slice(-trickleAfter.length);
                }
            }
            upstream.write(d);
            if (upPauseMs > 0) {
                client.pause();
                setTimeout(() => { if (!done) client.resume(); }, upPauseMs);
            }
        });
        client.on('end', () => upstream.end());

        // server -> client: one byte per interval
        upstream.on('data', (d) => {
            if (!downMs || (!trickling && !queue.length)) {
                down += d.length;
                client.write(d);
                return;
            }
            for (const b of d) queue.push(b);
        });
        if (downMs) {
            timer = setInterval(() => {
                if (done) return;
                if (queue.length) {
                    client.write(Buffer.from([queue.shift()]));
                    down++;
                } else if (serverEnded) {
                    finish();
                }
            }, downMs);
        }
    });
    server.listen(port, host, () => ready(server.address().port));
    process.on('SIGTERM', () => process.exit(0));
}

// A listener that never accepts, its queue filled by our own connections:
// the kernel drops further SYNs, so a client's connect hangs (no RST, no
// non-loopback address needed). The listener lives in a worker whose event
// loop is blocked for good, so libuv never accepts anything.
function runBlackhole() {
    const { Worker } = require('node:worker_threads');
    const code = `
        const net = require('node:net');
        const { parentPort, workerData } = require('node:worker_threads');
        const srv = net.createServer(() => {});
        srv.listen({ port: workerData.port, host: workerData.host, backlog: 1 }, () => {
            parentPort.postMessage(srv.address().port);
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);   // never accept
        });`;
    const w = new Worker(code, { eval: true, workerData: { port, host } });
    w.unref();
    const fillers = [];
    w.once('message', async (p) => {
        // fill the accept queue: connect until one does not complete
        for (let i = 0; i < 16; i++) {
            const ok = await new Promise((resolve) => {
                const s = net.connect({ host, port: p });
                fillers.push(s);
                const t = setTimeout(() => resolve(false), 500);
                s.once('connect', () => { clearTimeout(t); resolve(true); });
                s.once('error', () => { clearTimeout(t); resolve(false); });
            });
            if (!ok) {
                log(`blackhole queue full after ${i} connections`);
                ready(p);
                return;
            }
        }
        process.stderr.write('trickle-peer: the accept queue never filled\n');
        process.exit(1);
    });
    process.on('SIGTERM', () => process.exit(0));
    // keep the process alive (the worker is unref'd)
    setInterval(() => {}, 1 << 30);
}
