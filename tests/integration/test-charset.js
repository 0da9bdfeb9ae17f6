// A server's "charset" (issue 10, acceptance 5): text that mailconn
// composes (UTF-8) is converted with iconv to that charset before MAIL and
// labelled so; text the charset cannot represent is a 65 error naming it,
// before anything is sent; input that is already a message (send -t,
// sendmail) goes as it is. Against the npm smtp-server
// (tests/peers/smtp-peer.js), what arrived parsed by mailparser.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');

test.after(() => lib.stopAll());

function config(dir, peer, charset) {
    const s = {
        name: 'local', host: peer.host, port: peer.port, transport: 'plain',
        sender: { address: 'app@example.test', name: 'App' },
    };
    if (charset !== undefined) s.charset = charset;
    return lib.writeConfig(dir, { servers: [s] });
}

function send(cfg, args, opts) {
    return lib.runCli(['--config', cfg, 'send', '--to', 'to@example.test', '--subject', 'charset']
        .concat(args), opts);
}

// The body of a stored message: the bytes after the first blank line.
function rawBody(raw) {
    const i = raw.indexOf('\r\n\r\n');
    assert.ok(i > 0, 'no header/body separator');
    return raw.subarray(i + 4);
}

// The raw header value of `name` (unfolded), as it arrived.
function rawHeader(raw, name) {
    const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1').replace(/\r\n[ \t]/g, ' ');
    const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi').exec(head);
    return m ? m[1] : null;
}

// Quoted-printable (RFC 2045 6.7) to bytes.
function qpDecode(buf) {
    const s = buf.toString('latin1').replace(/=\r\n/g, '');
    const out = [];
    for (let i = 0; i < s.length; i++) {
        if (s[i] === '=' && /^[0-9A-F]{2}$/.test(s.substr(i + 1, 2))) {
            out.push(parseInt(s.substr(i + 1, 2), 16));
            i += 2;
        } else {
            out.push(s.charCodeAt(i));
        }
    }
    return Buffer.from(out);
}

// After the CLI exited: every session the peer saw has closed (bounded),
// so its events.log is complete.
async function settled(peer) {
    await lib.waitFor(() => {
        const ev = lib.events(peer.out);
        const opened = ev.filter((l) => / connect/.test(l)).length;
        return ev.filter((l) => / close$/.test(l)).length >= opened;
    }, 10000, 25, 'the peer\'s sessions closed');
    return lib.events(peer.out);
}

const LATIN = Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65]);   // "Grüße" in ISO-8859-1

test('charset ISO-8859-1: "Grüße" arrives as charset=ISO-8859-1, bytes 47 72 FC DF 65', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer, 'ISO-8859-1');
    const r = await send(cfg, ['--body', 'Grüße']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sent .*: 1 recipient: 250/m);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 1);
    const m = msgs[0];
    assert.equal(rawHeader(m.raw, 'Content-Type'), 'text/plain; charset=ISO-8859-1');
    assert.equal(m.headers['content-type'].params.charset, 'ISO-8859-1');
    assert.match(String(m.headers['content-transfer-encoding']), /^quoted-printable$/i);
    const body = rawBody(m.raw);
    assert.ok(!body.some((b) => b > 0x7e), 'an 8-bit byte on the wire');
    const bytes = qpDecode(body);
    assert.deepEqual([...bytes], [...LATIN, 0x0d, 0x0a], `decoded body ${bytes.toString('hex')}`);
    assert.equal(m.text.replace(/\r?\n$/, ''), 'Grüße');
    assert.equal(m.subject, 'charset');
});

test('charset ISO-8859-1: "€" is exit 65 naming the charset, and no DATA reaches the peer', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer, 'ISO-8859-1');
    const r = await send(cfg, ['--body', 'Preis: 5 €']);
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /^mailconn: .*ISO-8859-1/m);
    assert.ok(r.stderr.includes('U+20AC'), r.stderr);
    assert.doesNotMatch(r.stdout, /sent/);
    const ev = await settled(peer);
    assert.equal(ev.filter((l) => / (mail|data)\b/.test(l)).length, 0, `the peer saw: ${ev.join('; ')}`);
    assert.equal(lib.messageCount(peer.out), 0);
});

test('charset ISO-8859-15: a streamed --body-file and an --html-file are converted too', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer, 'ISO-8859-15');
    // about 200 KB: characters split by every chunk size of the stream
    const line = 'Grüße — 5 € für café, line NN\n';
    const text = Array.from({ length: 6000 }, (_, i) => line.replace('NN', String(i))).join('')
        .replace(/—/g, '-');
    const file = path.join(dir, 'body.txt');
    fs.writeFileSync(file, text);
    const html = path.join(dir, 'body.html');
    fs.writeFileSync(html, '<p>Grüße, 5 €</p>\n');
    const r = await send(cfg, ['--body-file', file, '--html-file', html]);
    assert.equal(r.code, 0, r.stderr);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(m.text.replace(/\r\n/g, '\n').replace(/\n$/, ''), text.replace(/\n$/, ''));
    assert.equal(m.html.trim(), '<p>Grüße, 5 €</p>');
    const raw = m.raw.toString('latin1');
    assert.match(raw, /Content-Type: text\/plain; charset=ISO-8859-15\r\n/);
    assert.match(raw, /Content-Type: text\/html; charset=ISO-8859-15\r\n/);
    assert.ok(raw.includes('Gr=FC=DFe - 5 =A4 f=FCr caf=E9'), 'ISO-8859-15 bytes on the wire');

    // a body file with a character the charset lacks: 65, its path and line named
    fs.writeFileSync(file, 'one\ntwo\nthree ✓\n');
    const bad = await send(cfg, ['--body-file', file]);
    assert.equal(bad.code, 65, bad.stderr);
    assert.ok(bad.stderr.includes(file) && bad.stderr.includes('line 3'), bad.stderr);
    assert.ok(bad.stderr.includes('ISO-8859-15'), bad.stderr);
    await settled(peer);
    assert.equal(lib.messageCount(peer.out), 1);
});

test('charset ISO-8859-1: send -t and sendmail input go as they are (UTF-8 bytes kept)', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer, 'ISO-8859-1');
    const input = 'To: to@example.test\nSubject: as is\nMIME-Version: 1.0\n' +
        'Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nGrüße €\n';
    const a = await lib.runCli(['--config', cfg, 'send', '-t'], { input });
    assert.equal(a.code, 0, a.stderr);
    const b = await lib.runCli(['--config', cfg, 'sendmail', '-t'], { input });
    assert.equal(b.code, 0, b.stderr);
    const msgs = await lib.readMessages(peer.out);
    assert.equal(msgs.length, 2);
    for (const m of msgs) {
        assert.equal(m.headers['content-type'].params.charset.toUpperCase(), 'UTF-8');
        assert.ok(rawBody(m.raw).equals(Buffer.from('Grüße €\r\n')), rawBody(m.raw).toString('hex'));
        assert.equal(m.text.trim(), 'Grüße €');
    }
});

test('charset UTF-8 (the default) keeps today\'s UTF-8 label and bytes', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    const cfg = config(dir, peer);
    const r = await send(cfg, ['--body', 'Grüße €']);
    assert.equal(r.code, 0, r.stderr);
    const [m] = await lib.readMessages(peer.out);
    assert.equal(rawHeader(m.raw, 'Content-Type'), 'text/plain; charset=UTF-8');
    assert.ok(rawBody(m.raw).toString('latin1').startsWith('Gr=C3=BC=C3=9Fe =E2=82=AC'));
    assert.equal(m.text.trim(), 'Grüße €');
});

test('an unknown or unusable charset is a config error (78) naming the key', async (t) => {
    const dir = lib.tmpdir(t);
    const peer = await lib.startPeer({ t });
    for (const [cs, why] of [['NO-SUCH-CHARSET', /unknown charset "NO-SUCH-CHARSET"/],
        ['UTF-16', /"UTF-16" cannot carry mail text/]]) {
        const cfg = config(dir, peer, cs);
        const r = await send(cfg, ['--body', 'x']);
        assert.equal(r.code, 78, r.stderr);
        assert.match(r.stderr, /servers\[0\]\.charset: /);
        assert.match(r.stderr, why);
        const c = await lib.runCli(['--config', cfg, 'check']);
        assert.equal(c.code, 78, c.stderr);
    }
    await settled(peer);
    assert.equal(lib.events(peer.out).filter((l) => / connect/.test(l)).length, 0, 'a connection was made');
});
