// JWT authentication (auth_modes keys,jwt) against a test OIDC issuer on loopback
// (lib/issuer.mjs): RS256 and ES256 tokens accepted, every classic forgery refused with 401
// (alg none, HMAC keyed with the RSA public key, tampered payload, foreign key under a published
// kid, wrong issuer or audience, expired), an unknown kid after a key rotation accepted after
// exactly one JWKS refetch, and the token's scopes enforced like a key's.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { assertErrorResponse } from '../lib/expect.mjs';
import { TestIssuer, b64url, jws } from '../lib/issuer.mjs';
import { IbexAdmin, assertNoSecret, randomUuid } from '../lib/ibexadmin.mjs';
import { expectApiError } from '../lib/sdk.mjs';
import { now, pollUntil } from '../lib/util.mjs';

const AUDIENCE = 'ibex-e2e';
const chatOf = (text) => ({ model: 'mock', messages: [{ role: 'user', content: text }] });

// An issuer and a dedicated ibex trusting it; returns {issuer, ibex, tenantId, as(token)}.
async function jwtSetup(ctx, { name } = {}) {
    const issuer = await new TestIssuer({ audience: AUDIENCE }).start();
    ctx.defer(() => issuer.stop());
    const ibex = await ctx.ibex({
        name,
        upstream: null,
        workers: 2,
        settings: { auth_modes: 'keys,jwt', jwt_issuer: issuer.url, jwt_audience: AUDIENCE, jwt_jwks_url: issuer.jwksUrl },
    });
    const devAdmin = new IbexAdmin(ibex.target, ctx.apiKey);
    const tenantId = (await devAdmin.ownTenant()).id;
    return { issuer, ibex, tenantId, devAdmin, as: (token) => devAdmin.as(token) };
}

function assertTokenNotLogged(ibex, tokens) {
    const log = ibex.stderrText();
    for (const t of tokens) assert.ok(!log.includes(t.split('.')[2] || t), `a token (or its signature) appears in ibex's stderr (${ibex.stderrPath})`);
}

export default [
    {
        id: 'jwt.valid',
        title: 'RS256 and ES256 tokens of the configured issuer -> chat 200 (SDK and raw); aud as an array; keys still work',
        needs: ['raw', 'sdk', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { issuer, ibex, tenantId, as } = await jwtSetup(ctx);
            const rsa = issuer.addKey('RS256');
            const ec = issuer.addKey('ES256');
            const tokens = [];
            for (const [what, kid, claims] of [
                ['RS256', rsa, {}],
                ['ES256', ec, {}],
                ['aud as an array', rsa, { aud: ['someone-else', AUDIENCE] }],
            ]) {
                const token = issuer.sign(issuer.claims({ tenantId, ...claims }), { kid });
                tokens.push(token);
                const res = await as(token).call('POST', '/v1/chat/completions', chatOf(what));
                assert.equal(res.status, 200, `${what}: ${res.describe()}`);
                const sdkRes = await ctx.client({ baseUrl: ibex.url, apiKey: token }).chat.completions.create(chatOf(what));
                assert.equal(sdkRes.object, 'chat.completion', `${what}: SDK`);
            }
            assert.ok(issuer.jwksFetches >= 1, 'ibex accepted tokens without fetching the JWKS');
            const keyRes = await as(ctx.apiKey).call('GET', '/v1/models');
            assert.equal(keyRes.status, 200, `the dev key with auth_modes keys,jwt: ${keyRes.describe()}`);
            assertTokenNotLogged(ibex, tokens);
        },
    },
    {
        id: 'jwt.rejected',
        title: 'expired -> TOKEN_EXPIRED; wrong iss/aud, alg none, HS256 keyed with the RSA public key, tampered, foreign key, malformed -> 401 INVALID_TOKEN',
        needs: ['raw', 'sdk', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { issuer, ibex, tenantId, devAdmin, as } = await jwtSetup(ctx);
            const rsa = issuer.addKey('RS256');
            const ec = issuer.addKey('ES256');
            const good = issuer.claims({ tenantId });
            const control = issuer.sign(good, { kid: rsa });
            const ok = await as(control).call('GET', '/v1/models');
            assert.equal(ok.status, 200, `control: a valid token: ${ok.describe()}`);

            const [h, p] = control.split('.');
            const pem = issuer.publicPem(rsa);
            const foreign = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
            const t = Math.floor(Date.now() / 1000);
            const cases = [
                ['expired', issuer.sign(issuer.claims({ tenantId, iat: t - 1200, nbf: t - 1200, exp: t - 600 }), { kid: rsa }), 'TOKEN_EXPIRED'],
                ['wrong issuer', issuer.sign(issuer.claims({ tenantId, iss: 'http://127.0.0.1:1/not-the-issuer' }), { kid: rsa }), 'INVALID_TOKEN'],
                ['issuer with a trailing slash', issuer.sign(issuer.claims({ tenantId, iss: `${issuer.url}/` }), { kid: rsa }), 'INVALID_TOKEN'],
                ['wrong audience', issuer.sign(issuer.claims({ tenantId, aud: 'another-service' }), { kid: rsa }), 'INVALID_TOKEN'],
                ['no audience', issuer.sign(issuer.claims({ tenantId, aud: undefined }), { kid: rsa }), 'INVALID_TOKEN'],
                ['alg none', jws({ alg: 'none', typ: 'JWT', kid: rsa }, good, 'none'), 'INVALID_TOKEN'],
                ['alg none, signature kept', `${b64url({ alg: 'none', typ: 'JWT', kid: rsa })}.${p}.${control.split('.')[2]}`, 'INVALID_TOKEN'],
                ['HS256 keyed with the RSA public key PEM', jws({ alg: 'HS256', typ: 'JWT', kid: rsa }, good, 'HS256', pem), 'INVALID_TOKEN'],
                ['HS256 keyed with the RSA public key PEM, no kid', jws({ alg: 'HS256', typ: 'JWT' }, good, 'HS256', pem), 'INVALID_TOKEN'],
                ['tampered payload (scope admin)', `${h}.${b64url({ ...good, scope: 'admin' })}.${control.split('.')[2]}`, 'INVALID_TOKEN'],
                ['tampered payload (other tenant)', `${h}.${b64url({ ...good, tenant_id: randomUuid() })}.${control.split('.')[2]}`, 'INVALID_TOKEN'],
                ['foreign RSA key under the published kid', issuer.sign(good, { kid: rsa, alg: 'RS256', key: foreign }), 'INVALID_TOKEN'],
                ['RS256 header on the EC key\'s kid', issuer.sign(good, { kid: ec, alg: 'RS256', key: issuer.keys.get(rsa).privateKey }), 'INVALID_TOKEN'],
                ['ES256 header on the RSA key\'s kid', issuer.sign(good, { kid: rsa, alg: 'ES256', key: issuer.keys.get(ec).privateKey }), 'INVALID_TOKEN'],
                ['signature cut short', control.slice(0, -10), 'INVALID_TOKEN'],
                ['no signature', `${h}.${p}.`, 'INVALID_TOKEN'],
                ['two segments', `${h}.${p}`, 'INVALID_TOKEN'],
                ['payload not base64url JSON', `${h}.!!notjson!!.${control.split('.')[2]}`, 'INVALID_TOKEN'],
                ['no tenant claim', issuer.sign(issuer.claims({ tenantId, tenant_id: undefined }), { kid: rsa }), 'INVALID_TOKEN'],
            ];
            const problems = [];
            for (const [what, token, code] of cases) {
                const res = await as(token).call('GET', '/v1/models');
                try {
                    assertErrorResponse(res, { status: 401, code, what });
                    assertNoSecret(res, [token], what);
                } catch (e) {
                    problems.push(e.message.split('\n')[0]);
                }
            }
            // a revoked tenant's credentials stop working (errors table: TOKEN_REVOKED, "the key or its tenant")
            const gone = (await devAdmin.createTenant(`e2e-jwt-revoked-${randomUuid().slice(0, 8)}`)).id;
            await devAdmin.revoke('tenants', gone);
            {
                const what = 'tenant revoked';
                const res = await as(issuer.sign(issuer.claims({ tenantId: gone }), { kid: rsa })).call('GET', '/v1/models');
                try {
                    assertErrorResponse(res, { status: 401, code: 'TOKEN_REVOKED', what });
                } catch (e) {
                    problems.push(e.message.split('\n')[0]);
                }
            }
            // not yet valid, and a tenant that does not exist: refused (the code is not specified)
            for (const [what, token] of [
                ['nbf 10 minutes ahead', issuer.sign(issuer.claims({ tenantId, nbf: t + 600 }), { kid: rsa })],
                ['tenant that does not exist', issuer.sign(issuer.claims({ tenantId: randomUuid() }), { kid: rsa })],
            ]) {
                const res = await as(token).call('POST', '/v1/chat/completions', chatOf(what));
                if (res.status !== 401 && res.status !== 403) problems.push(`${what}: expected 401, got ${res.describe()}`);
            }
            assert.deepEqual(problems, [], `${problems.length} forged or invalid token(s) not refused as expected:\n${problems.join('\n')}`);

            const err = await expectApiError(ctx.sdk, () => ctx.client({ baseUrl: ibex.url, apiKey: cases[0][1] }).chat.completions.create(chatOf('x')), {
                status: 401,
                code: 'TOKEN_EXPIRED',
                what: 'SDK: expired JWT',
            });
            assert.ok(err instanceof ctx.sdk.OpenAI.AuthenticationError, `SDK: expired JWT raised ${err.constructor.name}`);
            assertTokenNotLogged(ibex, cases.map((c) => c[1]).filter((x) => x.split('.')[2]));
        },
    },
    {
        id: 'jwt.rotation',
        title: 'after a key rotation a token with the new kid is accepted after exactly one JWKS refetch; a known kid costs no fetch',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            const { issuer, tenantId, as } = await jwtSetup(ctx);
            const k1 = issuer.addKey('RS256');
            const use = (kid, what) => as(issuer.sign(issuer.claims({ tenantId, sub: what }), { kid })).call('GET', '/v1/models');
            let res = await use(k1, 'first');
            assert.equal(res.status, 200, `token of the first key: ${res.describe()}`);
            const f1 = issuer.jwksFetches;
            assert.ok(f1 >= 1, 'no JWKS fetch before accepting the first token');
            for (let i = 0; i < 4; i++) assert.equal((await use(k1, `again-${i}`)).status, 200, 'the first key again');
            assert.equal(issuer.jwksFetches, f1, `tokens with a known kid made ibex fetch the JWKS again (${f1} -> ${issuer.jwksFetches})`);

            // A rotation: a token of the new key is accepted once ibex refetched the JWKS. ibex may
            // rate-limit refetches (a stream of unknown kids must not become a stream of fetches),
            // so the token is retried every 250 ms for 20 s; it must take exactly one refetch.
            const k2 = issuer.rotate('ES256');
            const t0 = now();
            let tries = 0;
            await pollUntil(async () => {
                tries++;
                res = await use(k2, `rotated-try-${tries}`);
                return res.status === 200;
            }, { timeoutMs: 20000, intervalMs: 250 });
            const waited = now() - t0;
            assert.equal(res.status, 200, `token of the rotated-in key, still refused after ${waited.toFixed(0)} ms (${tries} tries, ${issuer.jwksFetches - f1} refetches): ${res.describe()}`);
            ctx.note(`the rotated-in key was accepted after ${waited.toFixed(0)} ms (${tries} tries)`);
            assert.equal(issuer.jwksFetches, f1 + 1, `an unknown kid should cost exactly one JWKS refetch (${f1} -> ${issuer.jwksFetches})`);
            for (let i = 0; i < 4; i++) assert.equal((await use(k2, `rotated-${i}`)).status, 200, 'the rotated-in key again');
            assert.equal(issuer.jwksFetches, f1 + 1, `the new key was not kept after the refetch (${issuer.jwksFetches} fetches)`);

            // kids nobody published: refused; how many refetches they cause is reported
            const before = issuer.jwksFetches;
            for (let i = 0; i < 10; i++) {
                const stray = issuer.addKey('RS256', { publish: false });
                const r = await use(stray, `stray-${i}`);
                assertErrorResponse(r, { status: 401, code: 'INVALID_TOKEN', what: `unpublished kid ${i + 1}` });
            }
            ctx.note(`10 tokens with unknown kids caused ${issuer.jwksFetches - before} JWKS fetch(es)`);
        },
    },
    {
        id: 'jwt.scopes',
        title: "the token's scope claim is enforced like a key's scopes; its tenant_id claim picks the tenant",
        needs: ['raw', 'sdk', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { issuer, ibex, tenantId, as } = await jwtSetup(ctx);
            const kid = issuer.addKey('RS256');
            const tok = (scope) => issuer.sign(issuer.claims({ tenantId, scope }), { kid });
            const chatOnly = as(tok('chat'));
            assert.equal((await chatOnly.call('POST', '/v1/chat/completions', chatOf('x'))).status, 200, 'scope chat: chat');
            for (const p of ['/v1/keys', '/v1/agents', '/v1/tenants', '/v1/audit'])
                assertErrorResponse(await chatOnly.call('GET', p), { status: 403, code: 'INSUFFICIENT_SCOPE', what: `scope chat: GET ${p}` });
            const err = await expectApiError(ctx.sdk, () => ctx.client({ baseUrl: ibex.url, apiKey: tok('keys:admin') }).chat.completions.create(chatOf('x')), {
                status: 403,
                code: 'INSUFFICIENT_SCOPE',
                what: 'SDK: scope keys:admin, chat',
            });
            assert.ok(err instanceof ctx.sdk.OpenAI.PermissionDeniedError, `SDK: 403 raised ${err.constructor.name}`);

            const both = as(tok('chat keys:admin'));
            assert.equal((await both.call('POST', '/v1/chat/completions', chatOf('x'))).status, 200, 'scope "chat keys:admin": chat');
            const keys = await both.list('/v1/keys');
            assert.ok(
                keys.some((k) => k.tenant_id === tenantId && k.last4 === ctx.apiKey.slice(-4)),
                "scope keys:admin: GET /v1/keys does not show the dev tenant's keys (tenant_id claim not applied?)",
            );
            assertErrorResponse(await both.call('GET', '/v1/tenants'), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'scope "chat keys:admin": GET /v1/tenants' });
            // a key made by a JWT principal is bounded by the token's scopes
            assertErrorResponse(await both.call('POST', '/v1/keys', { name: 'from-jwt', scopes: ['admin'] }), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'JWT with chat keys:admin creating an admin key' });
            assertErrorResponse(await as(tok('')).call('POST', '/v1/chat/completions', chatOf('x')), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'empty scope claim: chat' });
            const adminTok = as(tok('admin'));
            assert.equal((await adminTok.call('GET', '/v1/audit')).status, 200, 'scope admin: GET /v1/audit');
        },
    },
    {
        id: 'jwt.not-enabled',
        title: 'with auth_modes keys (the default) a well-signed JWT is not a credential: 401 INVALID_TOKEN',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const issuer = await new TestIssuer({ audience: AUDIENCE }).start();
            ctx.defer(() => issuer.stop());
            const kid = issuer.addKey('RS256');
            const tenantId = (await new IbexAdmin(ctx.target, ctx.apiKey).ownTenant()).id;
            const token = issuer.sign(issuer.claims({ tenantId, scope: 'admin' }), { kid });
            const res = await ctx.request('/v1/models', { apiKey: token });
            assertErrorResponse(res, { status: 401, code: 'INVALID_TOKEN', what: 'a JWT on an ibex without jwt in auth_modes' });
            assert.equal(issuer.jwksFetches, 0, 'ibex fetched a JWKS although jwt is not enabled');
        },
    },
];
