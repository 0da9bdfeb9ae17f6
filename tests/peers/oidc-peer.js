#!/usr/bin/env node
// oidc-peer.js: a real OAuth 2.0 authorization server for mailconn's tests:
// npm oidc-provider (a certified implementation) over HTTPS on loopback.
//
//   node oidc-peer.js --cert server.pem --key server.key [--port 0]
//                     [--host 127.0.0.1] [--access-ttl 3600]
//                     [--account user@example.org] [--device-interval 1]
//                     [--secret SECRET]
//
// Clients (client_secret is --secret, default "s3cret-for-tests"):
//   conf-post   confidential, client_secret_post
//   conf-basic  confidential, client_secret_basic
//   public      public (token_endpoint_auth_method none)
// Each may use authorization_code (PKCE required), refresh_token (rotated
// on every use), device code and (confidential ones) client_credentials.
// Redirect URIs: http://127.0.0.1/ and http://[::1]/ on any port (RFC 8252).
// Scopes: the providers' mail scopes plus "smtp"; access tokens are opaque,
// for the resource "urn:mailconn:smtp", and can be checked with introspection.
//
// The browser part is a custom interaction that approves at once as the
// configured account (login, then consent for what the client asked), unless
// POST /test/deny asked it to refuse the next one (access_denied).
//
// Test routes (plain JSON):
//   GET  /test/counts           {"token":{"refresh_token":N,...},"device":N,...}
//   POST /test/reset            zero the counters
//   POST /test/deny             the next interaction answers access_denied
//   POST /test/device?user_code=ABCD-EFGH[&deny=1]   approve (or deny) a device code
//   POST /test/revoke-grants    revoke every grant (all tokens die)
// Prints {"ready":true,"port":N,"pid":P} on stdout once listening.
'use strict';

const fs = require('node:fs');
const https = require('node:https');

function args(argv) {
    const o = {
        host: '127.0.0.1', port: 0, accessTtl: 3600, account: 'user@example.org',
        deviceInterval: 1, secret: 's3cret-for-tests', cert: null, key: null,
    };
    for (let i = 2; i < argv.length; i++) {
        const a = argv[i];
        const v = () => {
            if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
        case '--host': o.host = v(); break;
        case '--port': o.port = Number(v()); break;
        case '--cert': o.cert = v(); break;
        case '--key': o.key = v(); break;
        case '--access-ttl': o.accessTtl = Number(v()); break;
        case '--account': o.account = v(); break;
        case '--device-interval': o.deviceInterval = Number(v()); break;
        case '--secret': o.secret = v(); break;
        default: throw new Error(`unknown option ${a}`);
        }
    }
    if (!o.cert || !o.key) throw new Error('--cert and --key are required');
    return o;
}

const RESOURCE = 'urn:mailconn:smtp';
const MAIL_SCOPES = [
    'https://mail.google.com/',
    'https://outlook.office.com/SMTP.Send',
    'https://outlook.office365.com/.default',
    'smtp',
];

function json(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
}

async function main() {
    const o = args(process.argv);
    const { default: Provider, errors } = await import('oidc-provider');
    const state = {
        counts: { token: {}, device: 0, revocation: 0, introspection: 0, authorization: 0 },
        denyNext: false,
    };

    let handler = (req, res) => { res.writeHead(503); res.end(); };
    const server = https.createServer({
        cert: fs.readFileSync(o.cert),
        key: fs.readFileSync(o.key),
    }, (req, res) => handler(req, res));
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(o.port, o.host, resolve);
    });
    const port = server.address().port;
    const hostPart = o.host.includes(':') ? `[${o.host}]` : o.host;
    const issuer = `https://${hostPart}:${port}`;

    const grantTypes = ['authorization_code', 'refresh_token',
        'urn:ietf:params:oauth:grant-type:device_code'];
    const common = {
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/', 'http://[::1]/'],
        response_types: ['code'],
        scope: ['openid', 'offline_access', ...MAIL_SCOPES].join(' '),
    };
    const provider = new Provider(issuer, {
        clients: [
            { ...common, client_id: 'conf-post', client_secret: o.secret,
              token_endpoint_auth_method: 'client_secret_post',
              grant_types: [...grantTypes, 'client_credentials'] },
            { ...common, client_id: 'conf-basic', client_secret: o.secret,
              token_endpoint_auth_method: 'client_secret_basic',
              grant_types: [...grantTypes, 'client_credentials'] },
            { ...common, client_id: 'public', token_endpoint_auth_method: 'none',
              grant_types: grantTypes },
        ],
        scopes: ['openid', 'offline_access', ...MAIL_SCOPES],
        pkce: { required: () => true },
        features: {
            devInteractions: { enabled: false },
            deviceFlow: { enabled: true },
            clientCredentials: { enabled: true },
            introspection: { enabled: true, allowedPolicy: async () => true },
            revocation: { enabled: true },
            resourceIndicators: {
                enabled: true,
                defaultResource: async () => RESOURCE,
                useGrantedResource: async () => true,
                getResourceServerInfo: async (_ctx, indicator) => {
                    if (indicator !== RESOURCE) throw new errors.InvalidTarget();
                    return { scope: MAIL_SCOPES.join(' '), accessTokenFormat: 'opaque',
                             accessTokenTTL: o.accessTtl, audience: RESOURCE };
                },
            },
        },
        ttl: {
            AccessToken: o.accessTtl,
            ClientCredentials: o.accessTtl,
            AuthorizationCode: 120,
            DeviceCode: 600,
            Grant: 14 * 24 * 3600,
            Interaction: 600,
            RefreshToken: 14 * 24 * 3600,
            Session: 14 * 24 * 3600,
        },
        rotateRefreshToken: true,
        issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
        expiresWithSession: async () => false,
        interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
        findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
        cookies: { keys: ['mailconn-test-cookie-key'] },
    });
    provider.proxy = false;

    // counters (and the device interval, which oidc-provider leaves out)
    provider.use(async (ctx, next) => {
        await next();
        const route = ctx.oidc && ctx.oidc.route;
        if (route === 'token') {
            const gt = (ctx.oidc.params && ctx.oidc.params.grant_type) || 'unknown';
            state.counts.token[gt] = (state.counts.token[gt] || 0) + 1;
        } else if (route === 'device_authorization') {
            state.counts.device++;
            if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && o.deviceInterval > 0) {
                ctx.body.interval = o.deviceInterval;
            }
        } else if (route === 'revocation') {
            state.counts.revocation++;
        } else if (route === 'introspection') {
            state.counts.introspection++;
        } else if (route === 'authorization') {
            state.counts.authorization++;
        }
    });
    const app = provider.callback();

    async function approveGrant(accountId, clientId, details, grantId) {
        const grant = grantId ? await provider.Grant.find(grantId)
            : new provider.Grant({ accountId, clientId });
        if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
        if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
        if (details.missingResourceScopes) {
            for (const [indicator, scopes] of Object.entries(details.missingResourceScopes)) {
                grant.addResourceScope(indicator, scopes.join(' '));
            }
        }
        return grant.save();
    }

    async function interaction(req, res) {
        const details = await provider.interactionDetails(req, res);
        let result;
        if (state.denyNext) {
            state.denyNext = false;
            result = { error: 'access_denied', error_description: 'the test refused consent' };
        } else if (details.prompt.name === 'login') {
            result = { login: { accountId: o.account } };
        } else {
            const grantId = await approveGrant(details.session.accountId, details.params.client_id,
                details.prompt.details, details.grantId);
            result = { consent: { grantId } };
        }
        const url = await provider.interactionResult(req, res, result, { mergeWithLastSubmission: false });
        res.writeHead(303, { Location: url, 'Content-Length': 0 });
        res.end();
    }

    async function device(req, res, q) {
        // stored normalised, as the /device form does: upper case, no dash
        const userCode = (q.get('user_code') || '').toUpperCase().replace(/\W/g, '');
        const code = await provider.DeviceCode.findByUserCode(userCode);
        if (!code) return json(res, 404, { error: 'unknown user code' });
        if (q.get('deny')) {
            code.error = 'access_denied';
            code.errorDescription = 'the test refused the device';
        } else {
            const scopes = (code.scope || '').split(' ').filter(Boolean);
            const grant = new provider.Grant({ accountId: o.account, clientId: code.clientId });
            const oidc = scopes.filter((s) => s === 'openid' || s === 'offline_access');
            const res_ = scopes.filter((s) => MAIL_SCOPES.includes(s));
            if (oidc.length) grant.addOIDCScope(oidc.join(' '));
            if (res_.length) grant.addResourceScope(RESOURCE, res_.join(' '));
            code.grantId = await grant.save();
            code.accountId = o.account;
            code.authTime = Math.floor(Date.now() / 1000);
            if (!code.resource) code.resource = RESOURCE;
        }
        await code.save();
        return json(res, 200, { ok: true });
    }

    handler = async (req, res) => {
        try {
            const u = new URL(req.url, issuer);
            if (u.pathname.startsWith('/interaction/') && req.method === 'GET') {
                return await interaction(req, res);
            }
            if (u.pathname === '/test/counts' && req.method === 'GET') {
                return json(res, 200, state.counts);
            }
            if (u.pathname === '/test/reset' && req.method === 'POST') {
                state.counts = { token: {}, device: 0, revocation: 0, introspection: 0, authorization: 0 };
                return json(res, 200, { ok: true });
            }
            if (u.pathname === '/test/deny' && req.method === 'POST') {
                state.denyNext = true;
                return json(res, 200, { ok: true });
            }
            if (u.pathname === '/test/device' && req.method === 'POST') {
                return await device(req, res, u.searchParams);
            }
            return app(req, res);
        } catch (e) {
            process.stderr.write(`oidc-peer: ${e && e.stack || e}\n`);
            if (!res.headersSent) json(res, 500, { error: 'server_error' });
            else res.end();
        }
    };

    process.on('SIGTERM', () => process.exit(0));
    process.stdout.write(`${JSON.stringify({ ready: true, port, pid: process.pid, issuer })}\n`);
}

main().catch((e) => {
    process.stderr.write(`oidc-peer: ${e && e.stack || e}\n`);
    process.exit(2);
});
