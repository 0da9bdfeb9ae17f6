// Two tenants in one process (issue 10, acceptance 3): tenants.c runs two
// contexts, each with a server named "main" on its own peer (npm
// smtp-server through tests/peers/smtp-peer.js, a password of its own),
// its own state_dir and log sink; four threads send; A's context is freed
// while B keeps sending. tenants.c checks every sink line (its thread's
// tenant, no other tenant's port, sender or password; the sink calls back
// into the library without deadlocking, under a watchdog); here each peer
// must hold exactly its own tenant's messages, sent as its own user.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../peers/lib');
const { startOidc } = require('../peers/oauth-lib');

const TENANTS = process.env.MAILCONN_TENANTS;
const N = 25;

test.after(() => lib.stopAll());

/** Run tenants.c with configs cfg.a, cfg.b; check its report and each peer. */
async function runTenants(peer, cfg, state, secret, user) {
    const r = await lib.run(TENANTS, [String(N),
        JSON.stringify(cfg.a), state.a, String(peer.a.port), secret.a,
        JSON.stringify(cfg.b), state.b, String(peer.b.port), secret.b], { timeoutMs: 170000 });
    const show = `exit ${r.code} ${r.signal || ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.equal(r.code, 0, show);
    const res = {};
    for (const line of r.stdout.trim().split('\n')) {
        const o = JSON.parse(line);
        res[o.tenant] = o;
    }
    assert.equal(res.a.sent, 2 * N, show);
    assert.ok(res.b.sent >= 4 * N, show);          // N each, then N each after A was freed
    for (const n of ['a', 'b']) {
        assert.equal(res[n].failed, 0, show);
        assert.equal(res[n].bad, 0, show);
        assert.equal(res[n].mail_from, res[n].sent, show);
        assert.ok(res[n].lines > res[n].sent * 5, show);   // a transcript for every message
    }
    assert.ok(res.b.after_free > 0, show);

    for (const n of ['a', 'b']) {
        const msgs = await lib.readMessages(peer[n].out);
        assert.equal(msgs.length, res[n].sent, `peer ${n}: ${msgs.length} messages for ${res[n].sent} sent`);
        for (const m of msgs) {
            if (user) assert.equal(m.meta.user, user[n], `peer ${n}: ${m.subject} came as ${m.meta.user}`);
            assert.equal(m.meta.mailFrom, `sender@tenant-${n}.test`);
            assert.deepEqual(m.meta.rcptTo, [`rcpt@tenant-${n}.test`]);
            assert.match(m.subject, new RegExp(`^tenant-${n} thread \\d+ message \\d+$`));
        }
        const subjects = new Set(msgs.map((m) => m.subject));
        assert.equal(subjects.size, msgs.length, `peer ${n}: a message delivered twice`);
    }
    return res;
}

function states(dir) {
    const state = {};
    for (const n of ['a', 'b']) {
        state[n] = path.join(dir, `state-${n}`);
        fs.mkdirSync(state[n], { mode: 0o700 });
    }
    return state;
}

test('two contexts, four threads: each sink and each peer sees only its own tenant', async (t) => {
    const dir = lib.tmpdir(t);
    const pass = { a: 'pass-of-tenant-a-7Qx', b: 'pass-of-tenant-b-9Kz' };
    const peer = {};
    const cfg = {};
    for (const n of ['a', 'b']) {
        peer[n] = await lib.startPeer({ t, users: { [`user-${n}`]: pass[n] }, allowInsecureAuth: true });
        cfg[n] = { servers: [{ name: 'main', host: '127.0.0.1', port: peer[n].port, transport: 'plain',
            allow_plaintext_auth: true, auth: { provider: 'basic', user: `user-${n}`, password: pass[n] },
            sender: { address: `sender@tenant-${n}.test` } }] };
    }
    const state = states(dir);
    await runTenants(peer, cfg, state, pass, { a: 'user-a', b: 'user-b' });
    // no OAuth here: neither state folder got tokens
    for (const n of ['a', 'b']) assert.ok(!fs.existsSync(path.join(state[n], 'tokens')));
});

test('OAuth (client credentials): each tenant\'s token in its own state_dir, used on its own peer', async (t) => {
    const dir = lib.tmpdir(t);
    const pki = lib.mkca(path.join(dir, 'pki'));
    const op = await startOidc({ pki, t, accessTtl: 3600 });
    const peer = {};
    const cfg = {};
    for (const n of ['a', 'b']) {
        peer[n] = await lib.startPeer({ t, tls: 'implicit', cert: pki.server.cert, key: pki.server.key,
            extraArgs: ['--introspect', op.introspectionUrl, '--introspect-ca', pki.ca,
                '--introspect-client', `conf-basic:${op.secret}`] });
        cfg[n] = { servers: [{ name: 'main', host: '127.0.0.1', port: peer[n].port, transport: 'tls',
            ca_file: pki.ca, sender: { address: `sender@tenant-${n}.test` },
            auth: { provider: 'manual', user: op.account, client_id: 'conf-post', client_secret: op.secret,
                token_url: op.tokenUrl, grant: 'client_credentials', scope: 'smtp', ca_file: pki.ca,
                timeout_s: 10 } }] };
    }
    const state = states(dir);
    await op.reset();
    // the client secret is both tenants': not a tenant's own marker ("-")
    await runTenants(peer, cfg, state, { a: '-', b: '-' }, null);
    const tok = {};
    for (const n of ['a', 'b']) {
        const f = path.join(state[n], 'tokens', 'main.json');
        assert.ok(fs.existsSync(f), `tenant ${n}: its token file in its own state_dir`);
        tok[n] = JSON.parse(fs.readFileSync(f, 'utf8')).access_token;
        assert.ok(tok[n], `tenant ${n}: an access token stored`);
        // no other file of tokens beside it
        assert.deepEqual(fs.readdirSync(path.join(state[n], 'tokens')).filter((e) => e.endsWith('.json')),
            ['main.json']);
    }
    assert.notEqual(tok.a, tok.b, 'each context fetched its own token: none crossed');
    // one token request per tenant (single flight within each context, none shared)
    const counts = await op.counts();
    assert.deepEqual(counts.token, { client_credentials: 2 }, JSON.stringify(counts.token));
    for (const n of ['a', 'b']) {
        assert.equal(lib.events(peer[n].out).filter((l) => / auth-fail /.test(l)).length, 0);
    }
});
