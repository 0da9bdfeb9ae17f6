// Helpers for the OAuth integration tests, in lib.js style (CommonJS):
// start tests/peers/oidc-peer.js (npm oidc-provider over HTTPS with the
// test CA), play the browser through an authorization URL, approve a device
// code, introspect a token, read the peer's token-request counters.
//
//   const { startOidc } = require('../peers/oauth-lib');
//   const op = await startOidc({ pki, t, accessTtl: 3600 });
//   op.issuer, op.port, op.tokenUrl, op.authorizationUrl, op.deviceUrl,
//   op.revocationUrl, op.introspectionUrl, op.secret, op.account
//   await op.playBrowser(url)        -> { status, location, body }
//   await op.approveDevice(userCode, { deny })
//   await op.introspect(token)       -> the introspection JSON ({active, ...})
//   await op.counts()                -> { token: { refresh_token: N, ... }, device, ... }
//   await op.reset(); await op.deny(); await op.stop()
//
// Every wait is bounded; the peer is stopped at the test's end (t) and at exit.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const https = require('node:https');
const lib = require('./lib');

const PEERS_DIR = __dirname;

/** One HTTP(S) request, never following redirects. opts: method, headers,
 *  body (string), ca (PEM), timeoutMs (10000), cookies (a Map jar). */
function request(url, opts = {}) {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const headers = Object.assign({}, opts.headers || {});
    if (opts.cookies && opts.cookies.size) {
        headers.Cookie = [...opts.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    if (opts.body !== undefined) headers['Content-Length'] = Buffer.byteLength(opts.body);
    return new Promise((resolve, reject) => {
        const req = mod.request(u, {
            method: opts.method || 'GET',
            headers,
            ca: opts.ca,
            timeout: opts.timeoutMs || 10000,
        }, (res) => {
            const chunks = [];
            res.on('data', (d) => chunks.push(d));
            res.on('end', () => {
                if (opts.cookies) {
                    for (const c of [].concat(res.headers['set-cookie'] || [])) {
                        const [pair, ...attrs] = c.split(';');
                        const eq = pair.indexOf('=');
                        const name = pair.slice(0, eq).trim();
                        const value = pair.slice(eq + 1).trim();
                        const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) ||
                            (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now()));
                        if (gone || value === '') opts.cookies.delete(name);
                        else opts.cookies.set(name, value);
                    }
                }
                resolve({ status: res.statusCode, headers: res.headers,
                          body: Buffer.concat(chunks).toString() });
            });
            res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
        req.on('error', reject);
        if (opts.body !== undefined) req.end(opts.body);
        else req.end();
    });
}

/**
 * Start oidc-peer.js. opts: pki (lib.mkca result; made in a new tmpdir when
 * absent), t (node:test context), accessTtl (3600), account, secret,
 * deviceInterval (1), host ('127.0.0.1'), readyTimeoutMs (15000).
 */
async function startOidc(opts = {}) {
    const pki = opts.pki || lib.mkca(lib.tmpdir(opts.t));
    const out = lib.tmpdir();   // removed at exit, after the peer is gone
    const secret = opts.secret || 's3cret-for-tests';
    const account = opts.account || 'user@example.org';
    const a = ['--cert', pki.server.cert, '--key', pki.server.key,
        '--host', opts.host || '127.0.0.1', '--port', String(opts.port || 0),
        '--access-ttl', String(opts.accessTtl || 3600), '--account', account,
        '--secret', secret, '--device-interval', String(opts.deviceInterval || 1)];
    const peer = await lib.spawnPeer('oidc-peer.js', a,
        { out, t: opts.t, readyTimeoutMs: opts.readyTimeoutMs || 15000 });
    const ready = peer.ready;
    const stderr = peer.stderr;

    const ca = fs.readFileSync(pki.ca);
    const issuer = ready.issuer;
    const basic = 'Basic ' + Buffer.from(`conf-basic:${encodeURIComponent(secret)}`).toString('base64');
    const api = async (method, p) => {
        const r = await request(issuer + p, { method, ca });
        if (r.status !== 200) throw new Error(`oidc-peer ${method} ${p}: HTTP ${r.status} ${r.body}`);
        return JSON.parse(r.body);
    };
    const op = {
        pki, issuer, port: ready.port, pid: ready.pid, secret, account, stderr,
        authorizationUrl: `${issuer}/auth`,
        tokenUrl: `${issuer}/token`,
        deviceUrl: `${issuer}/device/auth`,
        revocationUrl: `${issuer}/token/revocation`,
        introspectionUrl: `${issuer}/token/introspection`,
        counts: () => api('GET', '/test/counts'),
        reset: () => api('POST', '/test/reset'),
        deny: () => api('POST', '/test/deny'),
        /** Approve (or with {deny: true} refuse) a device user code. */
        approveDevice: (userCode, o = {}) => api('POST',
            `/test/device?user_code=${encodeURIComponent(userCode)}${o.deny ? '&deny=1' : ''}`),
        /** RFC 7662 introspection as the conf-basic client. */
        async introspect(token) {
            const r = await request(op.introspectionUrl, {
                method: 'POST', ca,
                headers: { Authorization: basic, 'Content-Type': 'application/x-www-form-urlencoded' },
                body: `token=${encodeURIComponent(token)}`,
            });
            if (r.status !== 200) throw new Error(`introspection: HTTP ${r.status} ${r.body}`);
            return JSON.parse(r.body);
        },
        /**
         * Follow an authorization URL as a browser would (cookies kept)
         * through login and consent until the redirect leaves the issuer,
         * then load that loopback redirect (unless {load: false}).
         * @returns {Promise<{status, location, body}>} the last response;
         *  location is the redirect URL with code and state.
         */
        async playBrowser(url, o = {}) {
            const jar = new Map();
            let next = url;
            for (let hop = 0; hop < 20; hop++) {
                if (!next.startsWith(issuer)) {
                    if (o.load === false) return { status: 0, location: next, body: '' };
                    const r = await request(next, { timeoutMs: o.timeoutMs || 10000 });
                    return { status: r.status, location: next, body: r.body };
                }
                const r = await request(next, { ca, cookies: jar });
                if (r.status < 300 || r.status > 399 || !r.headers.location) {
                    throw new Error(`playBrowser: ${next} answered HTTP ${r.status}: ${r.body.slice(0, 500)}`);
                }
                next = new URL(r.headers.location, next).toString();
            }
            throw new Error('playBrowser: more than 20 redirects');
        },
        stop: () => peer.stop(),
    };
    return op;
}

module.exports = { startOidc, request };

// `node oauth-lib.js play URL CA`: a stand-in browser command for
// `mailconn auth --browser` (BROWSER=...), following URL with the test CA.
if (require.main === module && process.argv[2] === 'play') {
    (async () => {
        const url = process.argv[3];
        const ca = fs.readFileSync(process.env.MAILCONN_TEST_CA || process.argv[4]);
        const jar = new Map();
        let next = url;
        const issuer = new URL(url).origin;
        for (let hop = 0; hop < 20; hop++) {
            const r = await request(next, next.startsWith(issuer) ? { ca, cookies: jar } : {});
            if (!next.startsWith(issuer)) return;
            if (!r.headers.location) throw new Error(`HTTP ${r.status} at ${next}`);
            next = new URL(r.headers.location, next).toString();
        }
    })().catch((e) => { process.stderr.write(`play: ${e.message}\n`); process.exit(1); });
}
