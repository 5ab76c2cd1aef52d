// Authentication and authorisation (docs/identity.md): the 401s of a missing, unknown, expired
// or revoked credential, the scope table enforced route by route, key creation bounded by the
// creator's scopes, the X-IBEX-Agent-ID header cases and the agent directive as the upstream
// sees it. Every check that creates identities works in tenants of its own (children of the dev
// tenant), named uniquely.
import assert from 'node:assert/strict';
import path from 'node:path';
import { assertErrorResponse, assertErrorShape } from '../lib/expect.mjs';
import { expectApiError } from '../lib/sdk.mjs';
import { RawConn, buildRequest } from '../lib/http.mjs';
import { expectedText } from '../lib/fakellm.mjs';
import {
    IbexAdmin,
    SCOPES,
    SCOPED_ROUTES,
    assertNoSecret,
    auditUntil,
    freshTenant,
    nowSec,
    randomApiKey,
    randomUuid,
    sameAnswerForm,
    scopeAllows,
    sha256hex,
    uniqueName,
    wireText,
} from '../lib/ibexadmin.mjs';
import { randomToken, sleep, truncate } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';
import { parseProm, sumSamples } from '../lib/prom.mjs';

const dev = (ctx, target = ctx.target) => new IbexAdmin(target, ctx.apiKey);
const routePath = (p, id = randomUuid()) => p.replace('{id}', id);
const chatOf = (text) => ({ model: 'mock', messages: [{ role: 'user', content: text }] });

// The SDK error class for a status (AuthenticationError, PermissionDeniedError, ...).
function assertSdkClass(sdk, err, cls, what) {
    const C = sdk.OpenAI?.[cls];
    if (C) assert.ok(err instanceof C, `${what}: the SDK raised ${err.constructor.name}, expected ${cls}`);
}

// Audit events must have the documented shape; returns a list of problems.
function auditShapeProblems(events, tenantId) {
    const p = [];
    for (const e of events) {
        const show = truncate(JSON.stringify(e), 300);
        if (typeof e.id !== 'string') p.push(`audit event without a string id: ${show}`);
        if (e.object !== 'audit_event') p.push(`audit event object is ${JSON.stringify(e.object)}: ${show}`);
        if (e.tenant_id !== tenantId) p.push(`audit event of tenant ${e.tenant_id} in tenant ${tenantId}'s list: ${show}`);
        if (typeof e.action !== 'string') p.push(`audit event without an action: ${show}`);
        if (!Number.isInteger(e.created_at)) p.push(`audit event created_at is not unix seconds: ${show}`);
        for (const k of ['actor', 'target', 'request_id', 'detail']) if (!(k in e)) p.push(`audit event without ${k}: ${show}`);
    }
    return p;
}

export default [
    {
        id: 'auth.open-routes',
        title: '/health, /ready, /status, /metrics answer without a credential',
        needs: ['raw'],
        async run(ctx) {
            for (const path of ['/health', '/ready', '/status', '/metrics']) {
                const res = await ctx.request(path, { auth: false });
                assert.ok(res.status === 200 || (path === '/ready' && ctx.remote && res.status === 503), `GET ${path} without a token: ${res.describe()}`);
            }
        },
    },
    {
        id: 'auth.missing-token',
        title: 'every identity-protected route without Authorization: Bearer -> 401 MISSING_TOKEN, OpenAI-shaped',
        needs: ['raw', 'sdk'],
        async run(ctx) {
            for (const [method, path, , bodyOf] of SCOPED_ROUTES) {
                const p = routePath(path);
                const what = `${method} ${path} without a token`;
                const res = await ctx.request(p, { method, auth: false, body: bodyOf ? bodyOf('chat') : undefined });
                const e = assertErrorResponse(res, { status: 401, code: 'MISSING_TOKEN', what });
                assert.equal(e.type, 'authentication_error', `${what}: error.type`);
            }
            for (const [what, value] of [
                ['Basic credentials', `Basic ${Buffer.from(`user:${ctx.apiKey}`).toString('base64')}`],
                ['a key without a scheme', ctx.apiKey],
            ]) {
                const res = await ctx.request('/v1/models', { headers: { Authorization: value } });
                assertErrorResponse(res, { status: 401, code: 'MISSING_TOKEN', what: `Authorization: ${what}` });
                assertNoSecret(res, [ctx.apiKey], `Authorization: ${what}`);
            }
            // the SDK's view of a 401: AuthenticationError with the code
            const client = ctx.client();
            const err = await expectApiError(ctx.sdk, () => client.models.list({ headers: { Authorization: null } }), {
                status: 401,
                code: 'MISSING_TOKEN',
                what: 'SDK without Authorization',
            });
            assertSdkClass(ctx.sdk, err, 'AuthenticationError', 'SDK without Authorization');
            assertErrorShape(err.error, { code: 'MISSING_TOKEN', what: 'SDK error body' });
        },
    },
    {
        id: 'auth.invalid-token',
        title: 'garbage, unknown well-formed ibex_sk_ keys, a one-character change -> 401 INVALID_TOKEN; the token is never echoed or logged',
        needs: ['raw', 'sdk'],
        async run(ctx) {
            const key = ctx.apiKey;
            const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
            const tokens = [
                ['garbage', randomToken('garbage-token-e2e')],
                ['ibex_sk_ too short', 'ibex_sk_abc123'],
                ['unknown well-formed key', randomApiKey()],
                ['a known key with its last character changed', flip(key, key.length - 1)],
                ['a known key with its 9th character changed (same length, other prefix)', flip(key, 8)],
                ['a known key plus one character', `${key}x`],
                ['a known key with a non-base62 byte', `${key.slice(0, -1)}!`],
                ['2000 bytes', `ibex_sk_${'a'.repeat(1992)}`],
                ['a JWT-looking string (auth_modes keys only)', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'],
            ];
            for (const [what, token] of tokens) {
                const res = await ctx.request('/v1/models', { apiKey: token });
                const e = assertErrorResponse(res, { status: 401, code: 'INVALID_TOKEN', what });
                assert.equal(e.type, 'authentication_error', `${what}: error.type`);
                assertNoSecret(res, [token], what);
                const chat = await ctx.request('/v1/chat/completions', { method: 'POST', apiKey: token, body: chatOf('x') });
                assertErrorResponse(chat, { status: 401, code: 'INVALID_TOKEN', what: `${what} (chat)` });
            }
            for (const [what, token] of tokens.slice(2, 4)) {
                const client = ctx.client({ apiKey: token });
                const err = await expectApiError(ctx.sdk, () => client.chat.completions.create(chatOf('hi')), { status: 401, code: 'INVALID_TOKEN', what: `SDK: ${what}` });
                assertSdkClass(ctx.sdk, err, 'AuthenticationError', `SDK: ${what}`);
                assert.ok(!JSON.stringify(err.error).includes(token), `SDK: ${what}: the error body carries the token`);
            }
            // RFC 7235 2.1: the scheme is case-insensitive
            const lower = await ctx.request('/v1/models', { headers: { Authorization: `bearer ${key}` } });
            assert.equal(lower.status, 200, `Authorization: bearer (lower case) with a valid key: ${lower.describe()}`);
            if (!ctx.remote) {
                const log = ctx.sharedIbexLog();
                for (const [what, token] of tokens) assert.ok(!log.includes(token), `${what}: the token appears in ibex's stderr (${ctx.sharedIbex.stderrPath})`);
                assert.ok(!ctx.sharedIbex.stderrText().includes(key), `the dev admin key appears in ibex's stderr (${ctx.sharedIbex.stderrPath})`);
            }
        },
    },
    {
        id: 'auth.expired-key',
        title: 'a key past its expires_at -> 401 TOKEN_EXPIRED (raw and SDK), although it worked and was cached before',
        needs: ['raw', 'sdk', 'admin'],
        timeoutMs: 30000,
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'expired');
            const expiresAt = nowSec() + 2;
            const k = await admin.createKey({ name: 'expiring', scopes: ['chat'], expires_at: expiresAt });
            assert.equal(k.expires_at, expiresAt, `POST /v1/keys: expires_at ${k.expires_at}, sent ${expiresAt}`);
            const before = await ctx.request('/v1/chat/completions', { method: 'POST', apiKey: k.key, body: chatOf('before expiry') });
            assert.equal(before.status, 200, `the key before its expiry: ${before.describe()}`);
            while (nowSec() <= expiresAt) await sleep(100);
            await sleep(200);
            const res = await ctx.request('/v1/chat/completions', { method: 'POST', apiKey: k.key, body: chatOf('after expiry') });
            const e = assertErrorResponse(res, { status: 401, code: 'TOKEN_EXPIRED', what: 'expired key' });
            assert.equal(e.type, 'authentication_error', 'expired key: error.type');
            assertNoSecret(res, [k.key], 'expired key');
            const err = await expectApiError(ctx.sdk, () => ctx.client({ apiKey: k.key }).models.list(), { status: 401, code: 'TOKEN_EXPIRED', what: 'SDK: expired key' });
            assertSdkClass(ctx.sdk, err, 'AuthenticationError', 'SDK: expired key');
        },
    },
    {
        id: 'auth.revoked-key',
        title: 'a revoked key -> 401 TOKEN_REVOKED at once on the same instance, also on a keep-alive connection that used it',
        needs: ['raw', 'sdk', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'revoked');
            const k = await admin.createKey({ name: 'to-revoke', scopes: ['chat'] });
            const conn = await RawConn.connect({ host: ctx.target.host, port: ctx.target.port });
            const send = async () => {
                await conn.write(buildRequest({ method: 'GET', path: `${ctx.target.prefix}/v1/models`, headers: { Authorization: `Bearer ${k.key}` } }));
                return conn.readResponse({ timeoutMs: 10000 });
            };
            const warm = await send();
            assert.equal(warm.status, 200, `the key before revocation (keep-alive connection): ${warm.describe()}`);
            for (let i = 0; i < 3; i++) {
                const r = await ctx.request('/v1/models', { apiKey: k.key });
                assert.equal(r.status, 200, `the key before revocation: ${r.describe()}`);
            }
            const revoked = await admin.revoke('keys', k.id);
            assert.ok(Number.isInteger(revoked.revoked_at), `POST /v1/keys/{id}/revoke: revoked_at ${JSON.stringify(revoked.revoked_at)}`);
            const again = await send();
            assertErrorResponse(again, { status: 401, code: 'TOKEN_REVOKED', what: 'revoked key on the keep-alive connection that used it' });
            conn.destroy();
            // fresh connections land on either worker: each must know at once
            for (let i = 0; i < 6; i++) {
                const res = await ctx.request('/v1/chat/completions', { method: 'POST', apiKey: k.key, body: chatOf('after revocation') });
                assertErrorResponse(res, { status: 401, code: 'TOKEN_REVOKED', what: `revoked key, request ${i + 1}` });
                assertNoSecret(res, [k.key], 'revoked key');
            }
            const err = await expectApiError(ctx.sdk, () => ctx.client({ apiKey: k.key }).chat.completions.create(chatOf('x')), {
                status: 401,
                code: 'TOKEN_REVOKED',
                what: 'SDK: revoked key',
            });
            assertSdkClass(ctx.sdk, err, 'AuthenticationError', 'SDK: revoked key');
        },
    },
    {
        id: 'auth.cache-hit-rate',
        title: 'sustained load with a small key set: the credential cache answers over 90% of lookups',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'cache');
            const keys = [];
            for (let i = 0; i < 4; i++) keys.push((await admin.createKey({ name: `load-${i}`, scopes: ['chat'] })).key);
            const counters = async () => {
                const r = await ctx.request('/metrics', { auth: false });
                assert.equal(r.status, 200, `GET /metrics: ${r.describe()}`);
                const m = parseProm(r.text());
                return { hits: sumSamples(m, 'ibex_auth_cache_hits_total'), misses: sumSamples(m, 'ibex_auth_cache_misses_total') };
            };
            const before = await counters();
            const N = 400;
            for (let round = 0; round < N / 20; round++) {
                const batch = [];
                for (let i = 0; i < 20; i++) batch.push(ctx.request('/v1/models', { apiKey: keys[(round * 20 + i) % keys.length] }));
                for (const r of await Promise.all(batch)) assert.equal(r.status, 200, `GET /v1/models under load: ${r.describe()}`);
            }
            const after = await counters();
            const hits = after.hits - before.hits;
            const misses = after.misses - before.misses;
            assert.ok(hits + misses >= N, `the cache saw ${hits + misses} lookups for ${N} requests`);
            const ratio = hits / (hits + misses);
            ctx.note(`${N} requests over ${keys.length} keys: ${hits} hits, ${misses} misses, hit ratio ${ratio.toFixed(3)}`);
            assert.ok(ratio > 0.9, `credential cache hit ratio ${ratio.toFixed(3)} <= 0.9 (${hits} hits, ${misses} misses)`);
        },
    },
    {
        id: 'auth.static-tokens',
        title: 'auth_modes keys,static: AUTH_TOKENS_JSON tokens carry their tenant and scopes; API keys still work; others are 401',
        needs: ['raw', 'sdk', 'process', 'admin'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            // the dev tenant of a dedicated instance is the static tokens' tenant
            const store = { IBEX_STORE_URL: `sqlite://${path.resolve(ctx.h.logDir, 'auth-static.db')}` };
            const probe = await ctx.ibex({ name: 'static-probe', upstream: null, env: store });
            const tenantId = (await new IbexAdmin(probe.target, ctx.apiKey).ownTenant()).id;
            await probe.stop();
            const chatToken = randomToken('static-chat');
            const adminToken = randomToken('static-admin');
            const tokens = {
                [chatToken]: { tenant_id: tenantId, scopes: ['chat'], subject: 'ci-bot' },
                [adminToken]: { tenant_id: tenantId, scopes: ['admin'], subject: 'ops' },
            };
            const ibex = await ctx.ibex({
                name: 'static',
                upstream: null,
                settings: { auth_modes: 'keys,static' },
                env: { ...store, AUTH_TOKENS_JSON: JSON.stringify(tokens) },
            });
            const as = (key) => new IbexAdmin(ibex.target, key);
            const chat = await as(chatToken).call('POST', '/v1/chat/completions', chatOf('static'));
            assert.equal(chat.status, 200, `static chat token on chat: ${chat.describe()}`);
            const sdkRes = await ctx.client({ baseUrl: ibex.url, apiKey: chatToken }).chat.completions.create(chatOf('sdk'));
            assert.equal(sdkRes.object, 'chat.completion', 'SDK with a static token');
            assertErrorResponse(await as(chatToken).call('GET', '/v1/keys'), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'static chat token on /v1/keys' });
            const keys = await as(adminToken).call('GET', '/v1/keys');
            assert.equal(keys.status, 200, `static admin token on /v1/keys: ${keys.describe()}`);
            assert.ok(JSON.parse(keys.text()).data.every((k) => k.tenant_id === tenantId), 'the static admin token sees its own tenant only');
            const dev = await as(ctx.apiKey).call('GET', '/v1/models');
            assert.equal(dev.status, 200, `the dev API key with auth_modes keys,static: ${dev.describe()}`);
            assertErrorResponse(await as(randomToken('static-unknown')).call('GET', '/v1/models'), { status: 401, code: 'INVALID_TOKEN', what: 'a token not in AUTH_TOKENS_JSON' });
            const log = ibex.stderrText();
            for (const t of [chatToken, adminToken]) assert.ok(!log.includes(t), `a static token appears in ibex's stderr (${ibex.stderrPath})`);
        },
    },
    {
        id: 'auth.none-mode',
        title: 'auth_modes none: no credential acts as the dev tenant with every scope, with a loud warning at start; a bad credential is still 401',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ name: 'none', upstream: null, dev: false, settings: { auth_modes: 'none' } });
            const warning = ibex.stderrText().split('\n').find((l) => l.includes('AUTH MODE none'));
            assert.ok(warning && JSON.parse(warning).level === 'warn', `no start-up warning naming auth mode none in ${ibex.stderrPath}`);
            const open = new IbexAdmin(ibex.target, null);
            const chat = await open.call('POST', '/v1/chat/completions', chatOf('no credential'));
            assert.equal(chat.status, 200, `chat without a credential in mode none: ${chat.describe()}`);
            const agents = await open.call('GET', '/v1/agents');
            assert.equal(agents.status, 200, `GET /v1/agents without a credential in mode none: ${agents.describe()}`);
            assert.ok(JSON.parse(agents.text()).data.some((a) => a.name === 'dev-agent'), 'mode none acts as the dev tenant (its dev-agent is listed)');
            assertErrorResponse(await new IbexAdmin(ibex.target, randomApiKey()).call('GET', '/v1/models'), { status: 401, code: 'INVALID_TOKEN', what: 'an unknown key in mode none' });
        },
    },
    {
        id: 'auth.audit-and-logs',
        title: 'auth.failed and access.denied are audited with the request id, and no secret reaches the audit trail or the log',
        needs: ['raw', 'admin', 'process'],
        timeoutMs: 30000,
        async run(ctx) {
            const { tenant, admin, key: adminKey } = await freshTenant(dev(ctx), 'audit');
            const revokedKey = await admin.createKey({ name: 'audit-revoked', scopes: ['chat'] });
            const expiresAt = nowSec() + 1;
            const expiredKey = await admin.createKey({ name: 'audit-expired', scopes: ['chat'], expires_at: expiresAt });
            const chatKey = await admin.createKey({ name: 'audit-chat-only', scopes: ['chat'] });
            await admin.revoke('keys', revokedKey.id);
            while (nowSec() <= expiresAt) await sleep(100);
            await sleep(200);

            const cases = [
                ['revoked key', revokedKey.key, '/v1/models', 401, 'TOKEN_REVOKED', 'auth.failed'],
                ['expired key', expiredKey.key, '/v1/models', 401, 'TOKEN_EXPIRED', 'auth.failed'],
                ['chat-only key on GET /v1/keys', chatKey.key, '/v1/keys', 403, 'INSUFFICIENT_SCOPE', 'access.denied'],
            ];
            const rids = [];
            for (const [what, token, path, status, code, action] of cases) {
                const rid = randomToken('e2e.audit');
                const res = await ctx.request(path, { apiKey: token, headers: { 'X-Request-ID': rid } });
                assertErrorResponse(res, { status, code, what });
                rids.push([what, rid, action]);
            }
            const unknown = randomApiKey();
            const ures = await ctx.request('/v1/models', { apiKey: unknown });
            assertErrorResponse(ures, { status: 401, code: 'INVALID_TOKEN', what: 'unknown key' });

            const found = (events, rid, action) => events.find((e) => e.request_id === rid && e.action === action);
            const events = await auditUntil(admin, (ev) => rids.every(([, rid, action]) => found(ev, rid, action)));
            for (const [what, rid, action] of rids)
                assert.ok(found(events, rid, action), `${what}: no ${action} audit event with request_id ${rid} in GET /v1/audit (actions seen: ${[...new Set(events.map((e) => e.action))].join(', ')})`);
            const problems = auditShapeProblems(events, tenant.id);
            assert.deepEqual(problems, [], problems.join('\n'));
            const unknownActions = events.map((e) => e.action).filter((a) => !/^(auth|access|tenant|agent|key)\.[a-z_]+$/.test(a));
            assert.deepEqual(unknownActions, [], 'audit actions outside the documented families');

            const secrets = [revokedKey.key, expiredKey.key, chatKey.key, adminKey, unknown, ctx.apiKey];
            const auditText = JSON.stringify(events);
            for (const s of secrets) {
                assert.ok(!auditText.includes(s), `a secret (${s.slice(0, 12)}...) is in the audit trail`);
                assert.ok(!auditText.includes(sha256hex(s)), `the SHA-256 of a secret (${s.slice(0, 12)}...) is in the audit trail`);
            }
            const log = ctx.sharedIbexLog();
            for (const s of secrets) assert.ok(!log.includes(s), `a secret (${s.slice(0, 12)}...) appears in ibex's stderr (${ctx.sharedIbex.stderrPath})`);
        },
    },
    {
        id: 'auth.scope-matrix',
        title: 'every route of the scope table x every scope (one key each): allowed -> not 401/403, denied -> 403 INSUFFICIENT_SCOPE',
        needs: ['raw', 'sdk', 'admin'],
        timeoutMs: 60000,
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'scopes');
            const keys = {};
            for (const s of SCOPES) keys[s] = (await admin.createKey({ name: `only-${s}`, scopes: [s] })).key;
            const problems = [];
            const table = [];
            for (const [method, path, needed, bodyOf] of SCOPED_ROUTES) {
                const row = [];
                for (const s of SCOPES) {
                    const res = await admin.as(keys[s]).call(method, routePath(path), bodyOf ? bodyOf(s) : undefined);
                    row.push(`${s}=${res.status}`);
                    const what = `${method} ${path} with a key of scope ${s}`;
                    if (scopeAllows([s], needed)) {
                        if (res.status === 401 || res.status === 403 || res.status >= 500) problems.push(`${what}: allowed (needs ${needed}), got ${res.describe()}`);
                    } else {
                        try {
                            const e = assertErrorResponse(res, { status: 403, code: 'INSUFFICIENT_SCOPE', what: `${what} (needs ${needed})` });
                            assert.equal(e.type, 'permission_error', `${what}: error.type`);
                        } catch (err) {
                            problems.push(err.message.split('\n')[0]);
                        }
                    }
                }
                table.push(`${method} ${path}: ${row.join(' ')}`);
            }
            ctx.note(`statuses:\n${table.join('\n')}`);
            assert.deepEqual(problems, [], `${problems.length} cell(s) of the scope matrix are wrong:\n${problems.join('\n')}`);

            // the SDK's view of a 403
            const client = ctx.client({ apiKey: keys['keys:admin'] });
            const err = await expectApiError(ctx.sdk, () => client.chat.completions.create(chatOf('x')), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'SDK: chat with a keys:admin key' });
            assertSdkClass(ctx.sdk, err, 'PermissionDeniedError', 'SDK: chat with a keys:admin key');
            await expectApiError(ctx.sdk, () => client.models.list(), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'SDK: models with a keys:admin key' });
            const ok = await ctx.client({ apiKey: keys.chat }).chat.completions.create(chatOf('x'));
            assert.equal(ok.object, 'chat.completion', 'SDK: chat with a chat key');
        },
    },
    {
        id: 'auth.key-scope-escalation',
        title: 'a key creates only keys within its own scopes (else 403 INSUFFICIENT_SCOPE); admin creates any',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'escalation');
            const ka = await admin.createKey({ name: 'keys-admin', scopes: ['keys:admin'] });
            const keysAdmin = admin.as(ka.key);
            for (const scopes of [['chat'], ['admin'], ['keys:admin', 'chat'], ['credentials:admin'], ['keys:admin', 'admin'], ['approvals:decide']]) {
                const res = await keysAdmin.call('POST', '/v1/keys', { name: uniqueName('escalate'), scopes });
                assertErrorResponse(res, { status: 403, code: 'INSUFFICIENT_SCOPE', what: `a keys:admin key creating a key with ${JSON.stringify(scopes)}` });
                assert.ok(!/ibex_sk_[A-Za-z0-9]{40}/.test(res.text()), `a refused creation carries a key: ${res.describe()}`);
            }
            const same = await keysAdmin.createKey({ name: uniqueName('same'), scopes: ['keys:admin'] });
            assert.deepEqual(same.scopes, ['keys:admin'], 'a keys:admin key creating a keys:admin key');
            const usable = await admin.as(same.key).call('GET', '/v1/keys');
            assert.equal(usable.status, 200, `the key it created: ${usable.describe()}`);
            // none of the refused keys exists
            const names = (await admin.list('/v1/keys')).map((k) => k.name);
            assert.ok(!names.some((n) => n.startsWith('e2e-escalate-')), `a refused key was stored anyway: ${names.join(', ')}`);
            const all = await admin.createKey({ name: uniqueName('all'), scopes: ['chat', 'keys:admin', 'traces:read'] });
            assert.deepEqual([...all.scopes].sort(), ['chat', 'keys:admin', 'traces:read'], 'an admin key creating a key with three scopes');
        },
    },
    {
        id: 'auth.agent-header',
        title: 'X-IBEX-Agent-ID: malformed 400, unknown / other tenant / revoked 404 with identical bodies, outside allow-list 403, missing with allow-list 400',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const root = dev(ctx);
            const A = await freshTenant(root, 'agents-a');
            const B = await freshTenant(root, 'agents-b');
            const a1 = await A.admin.createAgent({ name: uniqueName('a1') });
            const a2 = await A.admin.createAgent({ name: uniqueName('a2') });
            const b1 = await B.admin.createAgent({ name: uniqueName('b1') });
            const kAll = A.admin.as((await A.admin.createKey({ name: 'any-agent', scopes: ['chat'] })).key);
            const kList = A.admin.as((await A.admin.createKey({ name: 'a1-only', scopes: ['chat'], agent_ids: [a1.id] })).key);

            for (const bad of ['not-a-uuid', '12345', `${a1.id}x`, 'zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz']) {
                const res = await kAll.chat({ agent: bad });
                assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what: `X-IBEX-Agent-ID ${JSON.stringify(bad)}` });
            }
            const ok = await kAll.chat({ agent: a1.id });
            assert.equal(ok.status, 200, `own agent: ${ok.describe()}`);

            const rnd = randomUuid();
            const notFound = await kAll.chat({ agent: rnd });
            assertErrorResponse(notFound, { status: 404, code: 'AGENT_NOT_FOUND', what: 'unknown agent' });
            const other = await kAll.chat({ agent: b1.id });
            assertErrorResponse(other, { status: 404, code: 'AGENT_NOT_FOUND', what: "another tenant's agent" });
            assert.deepEqual(sameAnswerForm(other, b1.id), sameAnswerForm(notFound, rnd), "another tenant's agent is answered differently from an unknown one");
            assert.ok(!wireText(other).includes(b1.name), "the answer names the other tenant's agent");

            // allow-list
            const listed = await kList.chat({ agent: a1.id });
            assert.equal(listed.status, 200, `allow-listed agent: ${listed.describe()}`);
            assertErrorResponse(await kList.chat({ agent: a2.id }), { status: 403, code: 'AGENT_NOT_ALLOWED', what: 'agent outside the allow-list' });
            assertErrorResponse(await kList.chat(), { status: 400, code: 'AGENT_REQUIRED', what: 'allow-listed key without X-IBEX-Agent-ID' });
            const lr = randomUuid();
            assert.deepEqual(
                sameAnswerForm(await kList.chat({ agent: b1.id }), b1.id),
                sameAnswerForm(await kList.chat({ agent: lr }), lr),
                "allow-listed key: another tenant's agent is answered differently from an unknown one",
            );

            // revoked
            await A.admin.revoke('agents', a2.id);
            const rev = await kAll.chat({ agent: a2.id });
            assertErrorResponse(rev, { status: 404, code: 'AGENT_NOT_FOUND', what: 'revoked agent' });
            assert.deepEqual(sameAnswerForm(rev, a2.id), sameAnswerForm(notFound, rnd), 'a revoked agent is answered differently from an unknown one');
        },
    },
    {
        id: 'auth.directive',
        title: "the agent's directive reaches the upstream as messages[0] (system), caller's messages unchanged after it; stream and not; none without the header",
        needs: ['sdk', 'fakellm', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'directive');
            const marker = randomToken('directive');
            const directive = `You are agent ${marker}. Answer in "quotes", ünïcödé \\ and\nnew lines.`;
            const agent = await admin.createAgent({ name: uniqueName('directed'), directive });
            assert.equal(agent.directive, directive, 'POST /v1/agents: directive');
            const key = (await admin.createKey({ name: 'directive-chat', scopes: ['chat'] })).key;
            const fake = ctx.fakellm;
            await fake.clearRequests();

            const upstreamMessages = async (userText) => {
                const log = (await fake.requests()).filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions');
                const bodies = log.map((r) => (typeof r.body === 'string' ? JSON.parse(r.body) : r.body)).filter((b) => JSON.stringify(b.messages).includes(userText));
                assert.equal(bodies.length, 1, `fakellm got ${bodies.length} chat requests carrying ${userText}`);
                return bodies[0].messages;
            };
            const sent = (tag) => [
                { role: 'system', content: 'You are a test.' },
                { role: 'user', content: `first ${tag}` },
                { role: 'assistant', content: 'earlier answer' },
                { role: 'user', content: `second ${tag}` },
            ];
            const withAgent = ctx.client({ apiKey: key, headers: { 'X-IBEX-Agent-ID': agent.id } });

            const t1 = randomToken('nostream');
            const r1 = await withAgent.chat.completions.create({ model: MODEL, messages: sent(t1) });
            assert.equal(r1.choices[0].message.content, expectedText(), 'completion with an agent');
            assert.deepEqual(await upstreamMessages(t1), [{ role: 'system', content: directive }, ...sent(t1)], 'non-streaming: upstream messages');

            const t2 = randomToken('stream');
            let text = '';
            for await (const c of await withAgent.chat.completions.create({ model: MODEL, messages: sent(t2), stream: true })) text += c.choices[0]?.delta?.content ?? '';
            assert.equal(text, expectedText(), 'stream with an agent');
            assert.deepEqual(await upstreamMessages(t2), [{ role: 'system', content: directive }, ...sent(t2)], 'streaming: upstream messages');

            const t3 = randomToken('noagent');
            await ctx.client({ apiKey: key }).chat.completions.create({ model: MODEL, messages: sent(t3) });
            assert.deepEqual(await upstreamMessages(t3), sent(t3), 'without X-IBEX-Agent-ID the messages must reach the upstream unchanged');

            // a changed directive applies to the next request on the same instance
            const directive2 = `Changed directive ${randomToken('d2')}`;
            const patched = await admin.ok('PATCH', `/v1/agents/${agent.id}`, { directive: directive2 });
            assert.equal(patched.directive, directive2, 'PATCH /v1/agents/{id}: directive');
            const t4 = randomToken('patched');
            await withAgent.chat.completions.create({ model: MODEL, messages: sent(t4) });
            assert.deepEqual(await upstreamMessages(t4), [{ role: 'system', content: directive2 }, ...sent(t4)], 'after PATCH: upstream messages');

            const all = JSON.stringify(await fake.requests());
            assert.ok(!all.includes(key), "the client's key reached the upstream");
        },
    },
    {
        id: 'auth.directive-replace',
        title: "directive_mode replace: the directive first, the caller's own system messages dropped, the rest unchanged",
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { directive_mode: 'replace' } });
            const admin = new IbexAdmin(ibex.target, ctx.apiKey);
            const directive = `Replace-mode directive ${randomToken('dr')}`;
            const agent = await admin.createAgent({ name: uniqueName('replace'), directive });
            const fake = ctx.fakellm;
            await fake.clearRequests();
            const tag = randomToken('replace');
            const msgs = [
                { role: 'system', content: 'caller system 1' },
                { role: 'user', content: `question ${tag}` },
                { role: 'system', content: 'caller system 2' },
                { role: 'assistant', content: 'answer' },
                { role: 'user', content: 'follow-up' },
            ];
            await ctx.client({ baseUrl: ibex.url, headers: { 'X-IBEX-Agent-ID': agent.id } }).chat.completions.create({ model: MODEL, messages: msgs });
            const log = (await fake.requests()).filter((r) => r.method === 'POST' && JSON.stringify(r.body).includes(tag));
            assert.equal(log.length, 1, `fakellm got ${log.length} requests carrying the tag`);
            const body = typeof log[0].body === 'string' ? JSON.parse(log[0].body) : log[0].body;
            assert.deepEqual(body.messages, [{ role: 'system', content: directive }, ...msgs.filter((m) => m.role !== 'system')], 'upstream messages in replace mode');
        },
    },
];
