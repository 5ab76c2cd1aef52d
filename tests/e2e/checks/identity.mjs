// The administration API and CLI of docs/identity.md: the --dev bootstrap, tenants, agents and
// keys created, listed, changed and revoked (shapes, secrets shown once and never again,
// validation with field_errors), the same operations through `ibex tenants|agents|keys` on the
// store, and tenant isolation: with tenant A's admin key, B's objects answer exactly like ids
// that do not exist and no byte of B shows.
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { assertErrorResponse } from '../lib/expect.mjs';
import { errorOf } from '../lib/http.mjs';
import {
    API_KEY_G,
    API_KEY_RE,
    IbexAdmin,
    adminKeyOf,
    UUID_G,
    assertNoSecret,
    auditUntil,
    freshTenant,
    nowSec,
    randomUuid,
    runCli,
    sameAnswerForm,
    sha256hex,
    uniqueName,
    wireText,
} from '../lib/ibexadmin.mjs';
import { pollUntil, sleep, truncate } from '../lib/util.mjs';

const dev = (ctx, target = ctx.target) => new IbexAdmin(target, ctx.apiKey);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function assertRecentSec(v, what) {
    assert.ok(Number.isInteger(v), `${what}: ${JSON.stringify(v)} is not an integer (unix seconds)`);
    assert.ok(Math.abs(v - nowSec()) < 120, `${what}: ${v} is not now in unix seconds (now ${nowSec()})`);
}

function assertTenant(t, { name, metadata, parentId, what = 'tenant' }) {
    const show = truncate(JSON.stringify(t), 400);
    assert.match(t.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(t.object, 'tenant', `${what}: object (${show})`);
    if (name !== undefined) assert.equal(t.name, name, `${what}: name (${show})`);
    assert.ok(isObject(t.metadata), `${what}: metadata is not an object (${show})`);
    if (metadata !== undefined) assert.deepEqual(t.metadata, metadata, `${what}: metadata (${show})`);
    if (parentId !== undefined) assert.equal(t.parent_id, parentId, `${what}: parent_id (${show})`);
    assertRecentSec(t.created_at, `${what}: created_at`);
    assert.ok('revoked_at' in t, `${what}: no revoked_at (${show})`);
}

function assertAgent(a, { tenantId, name, directive, metadata, what = 'agent' }) {
    const show = truncate(JSON.stringify(a), 400);
    assert.match(a.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(a.object, 'agent', `${what}: object (${show})`);
    assert.equal(a.tenant_id, tenantId, `${what}: tenant_id (${show})`);
    if (name !== undefined) assert.equal(a.name, name, `${what}: name (${show})`);
    if (directive !== undefined) assert.equal(a.directive, directive, `${what}: directive (${show})`);
    if (metadata !== undefined) assert.deepEqual(a.metadata, metadata, `${what}: metadata (${show})`);
    assertRecentSec(a.created_at, `${what}: created_at`);
    // updated_at: null until the first change, then unix seconds
    assert.ok(a.updated_at === null || (Number.isInteger(a.updated_at) && a.updated_at >= a.created_at), `${what}: updated_at (${show})`);
    assert.ok('revoked_at' in a, `${what}: no revoked_at (${show})`);
}

function assertKey(k, { tenantId, name, scopes, agentIds, expiresAt, secret, what = 'key' }) {
    const show = truncate(JSON.stringify({ ...k, key: k.key ? '<secret>' : k.key }), 400);
    assert.match(k.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(k.object, 'api_key', `${what}: object (${show})`);
    assert.equal(k.tenant_id, tenantId, `${what}: tenant_id (${show})`);
    if (name !== undefined) assert.equal(k.name, name, `${what}: name (${show})`);
    if (scopes !== undefined) assert.deepEqual([...k.scopes].sort(), [...scopes].sort(), `${what}: scopes (${show})`);
    if (agentIds !== undefined) assert.deepEqual(k.agent_ids, agentIds, `${what}: agent_ids (${show})`);
    if (expiresAt !== undefined) assert.equal(k.expires_at, expiresAt, `${what}: expires_at (${show})`);
    assert.equal(typeof k.prefix, 'string', `${what}: prefix (${show})`);
    assert.ok(k.prefix.length >= 8 && k.prefix.length < 48, `${what}: prefix ${JSON.stringify(k.prefix)}`);
    assert.match(k.last4 ?? '', /^[A-Za-z0-9]{4}$/, `${what}: last4 (${show})`);
    assertRecentSec(k.created_at, `${what}: created_at`);
    assert.ok('revoked_at' in k, `${what}: no revoked_at (${show})`);
    assert.ok(!('sha256' in k) && !('hash' in k) && !('key_hash' in k), `${what}: carries a hash field (${show})`);
    if (secret !== undefined) {
        assert.ok(secret.startsWith(k.prefix), `${what}: the secret does not start with prefix ${JSON.stringify(k.prefix)}`);
        assert.equal(secret.slice(-4), k.last4, `${what}: last4 is not the secret's last 4 characters`);
    }
}

// Asserts a 400 VALIDATION_ERROR whose field_errors name field.
function assertFieldError(res, field, what) {
    const e = assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
    const fe = e.field_errors;
    assert.ok(Array.isArray(fe) && fe.length > 0, `${what}: field_errors missing or empty (${JSON.stringify(e)})`);
    for (const f of fe) assert.ok(typeof f.field === 'string' && typeof f.message === 'string', `${what}: field_errors entry ${JSON.stringify(f)}`);
    assert.ok(
        fe.some((f) => f.field === field || f.field.startsWith(`${field}[`) || f.field.startsWith(`${field}.`)),
        `${what}: no field_errors entry for "${field}" (${JSON.stringify(fe)})`,
    );
}

// ids of list entries, in list order
const ids = (list) => list.map((x) => x.id);

// Pause between creations whose order a check asserts: ibex orders lists by created_at
// (milliseconds), and two creations within one millisecond have no defined order.
const TICK_MS = 5;

// Asserts that items (created in this order) appear newest first in list.
function assertNewestFirst(list, created, what) {
    const order = ids(list).filter((id) => created.includes(id));
    assert.deepEqual(order, [...created].reverse(), `${what}: not newest first`);
}

export default [
    {
        id: 'identity.dev-bootstrap',
        title: '--dev: tenant "dev", the pinned admin key (prefix/last4 listed) and the pinned agent "dev-agent"',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const admin = dev(ctx);
            const own = await admin.ownTenant();
            assertTenant(own, { name: 'dev', what: 'the dev tenant' });
            const keys = await admin.list('/v1/keys');
            const mine = keys.filter((k) => k.last4 === ctx.apiKey.slice(-4) && ctx.apiKey.startsWith(k.prefix));
            assert.equal(mine.length, 1, `GET /v1/keys: no single entry with the dev key's prefix and last4 (${truncate(JSON.stringify(keys), 500)})`);
            assertKey(mine[0], { tenantId: own.id, secret: ctx.apiKey, what: 'the dev key' });
            assert.ok(mine[0].scopes.includes('admin'), `the dev key's scopes: ${JSON.stringify(mine[0].scopes)}`);
            const agent = await admin.ok('GET', `/v1/agents/${ctx.devAgentId}`);
            assertAgent(agent, { tenantId: own.id, name: 'dev-agent', what: 'the dev agent' });
            assert.equal(agent.id, ctx.devAgentId, 'the dev agent id is not IBEX_DEV_AGENT_ID');
            const chat = await admin.chat({ agent: ctx.devAgentId });
            assert.equal(chat.status, 200, `chat as the dev agent: ${chat.describe()}`);
        },
    },
    {
        id: 'identity.dev-restart',
        title: '--dev on a store that has the dev tenant already: same tenant, key and agent, nothing duplicated',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const store = `sqlite://${path.join(ctx.h.logDir, `identity-dev-restart-${process.pid}.db`)}`;
            const first = await ctx.ibex({ name: 'dev-restart-1', upstream: null, env: { IBEX_STORE_URL: store } });
            const t1 = await dev(ctx, first.target).ownTenant();
            const stop = await first.stop({ graceMs: 10000 });
            assert.equal(stop.code, 0, `first ibex: exit after SIGTERM ${JSON.stringify(stop)}`);
            const second = await ctx.ibex({ name: 'dev-restart-2', upstream: null, env: { IBEX_STORE_URL: store } });
            const admin = dev(ctx, second.target);
            const t2 = await admin.ownTenant();
            assert.equal(t2.id, t1.id, 'the dev tenant changed across a restart on the same store');
            const devTenants = (await admin.list('/v1/tenants')).filter((t) => t.name === 'dev');
            assert.equal(devTenants.length, 1, `dev tenants after a restart: ${devTenants.length}`);
            const agents = (await admin.list('/v1/agents')).filter((a) => a.name === 'dev-agent');
            assert.deepEqual(ids(agents), [ctx.devAgentId], 'dev agents after a restart');
            const keys = (await admin.list('/v1/keys')).filter((k) => k.last4 === ctx.apiKey.slice(-4) && ctx.apiKey.startsWith(k.prefix));
            assert.equal(keys.length, 1, `dev keys after a restart: ${keys.length}`);
        },
    },
    {
        id: 'identity.tenants',
        title: 'tenants: create (201, admin_key once), list (own + children), get, revoke (its keys -> 401 TOKEN_REVOKED), audited',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const A = await freshTenant(dev(ctx), 'tenants');
            const own = await A.admin.ownTenant();
            assert.equal(own.id, A.tenant.id, 'GET /v1/tenants with a new tenant\'s admin key: its own tenant');
            const name = uniqueName('child');
            const metadata = { team: 'e2e', n: 1, nested: { ok: true } };
            const res = await A.admin.call('POST', '/v1/tenants', { name, metadata });
            assert.equal(res.status, 201, `POST /v1/tenants: ${res.describe()}`);
            const child = res.json();
            assertTenant(child, { name, metadata, parentId: A.tenant.id, what: 'POST /v1/tenants' });
            assert.equal(child.revoked_at, null, 'a new tenant is not revoked');
            const childKey = adminKeyOf(child);
            await sleep(TICK_MS);
            const second = await A.admin.createTenant(uniqueName('child2'));
            const secondKey = adminKeyOf(second);

            const listRes = await A.admin.call('GET', '/v1/tenants');
            assertNoSecret(listRes, [childKey, secondKey, A.key], 'GET /v1/tenants');
            const list = await A.admin.list('/v1/tenants');
            assert.deepEqual(ids(list).sort(), [A.tenant.id, child.id, second.id].sort(), 'GET /v1/tenants: the caller and its two children');
            assertNewestFirst(list, [child.id, second.id], 'GET /v1/tenants');
            for (const t of list) assert.ok(!('admin_key' in t), `GET /v1/tenants shows admin_key of ${t.id}`);

            const got = await A.admin.ok('GET', `/v1/tenants/${child.id}`);
            const { admin_key: _, ...created } = child;
            assert.deepEqual(got, created, 'GET /v1/tenants/{id} differs from the creation answer (without admin_key)');
            await A.admin.ok('GET', `/v1/tenants/${A.tenant.id}`);
            assertErrorResponse(await A.admin.call('GET', `/v1/tenants/${randomUuid()}`), { status: 404, code: 'TENANT_NOT_FOUND', what: 'unknown tenant' });

            // the child's admin key works in its own tenant and makes keys there
            const childAdmin = A.admin.as(childKey);
            const ck = await childAdmin.createKey({ name: 'child-chat', scopes: ['chat'] });
            assert.equal((await childAdmin.chat()).status, 200, 'chat with the child admin key');
            assert.equal((await A.admin.as(ck.key).chat()).status, 200, "chat with the child's chat key");

            const revoked = await A.admin.revoke('tenants', child.id);
            assert.equal(revoked.id, child.id, 'revoke answer: id');
            assertRecentSec(revoked.revoked_at, 'revoke answer: revoked_at');
            for (const [what, key] of [
                ["the revoked tenant's admin key", childKey],
                ["a key of the revoked tenant", ck.key],
            ]) {
                const r = await A.admin.as(key).call('GET', '/v1/models');
                assertErrorResponse(r, { status: 401, code: 'TOKEN_REVOKED', what });
            }
            assert.equal((await A.admin.chat()).status, 200, 'the parent still works after revoking a child');
            const after = await A.admin.ok('GET', `/v1/tenants/${child.id}`);
            assert.equal(after.revoked_at, revoked.revoked_at, 'GET after revoke: revoked_at');

            const events = await auditUntil(A.admin, (ev) => ev.some((e) => e.action === 'tenant.revoked'));
            for (const action of ['tenant.created', 'tenant.revoked'])
                assert.ok(events.some((e) => e.action === action && JSON.stringify(e).includes(child.id)), `no ${action} audit event naming ${child.id} (${[...new Set(events.map((e) => e.action))]})`);
            const text = JSON.stringify(events);
            for (const s of [childKey, secondKey, ck.key]) {
                assert.ok(!text.includes(s), 'a secret in the audit trail');
                assert.ok(!text.includes(sha256hex(s)), 'the SHA-256 of a secret in the audit trail');
            }
        },
    },
    {
        id: 'identity.agents',
        title: 'agents: create (201), list newest first with ?limit, get, PATCH, revoke, audited',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { tenant, admin } = await freshTenant(dev(ctx), 'agents');
            const spec = { name: uniqueName('agent'), directive: 'Be brief. "quoted" \\ ünï\nline', metadata: { owner: 'e2e', tags: ['a', 'b'] } };
            const res = await admin.call('POST', '/v1/agents', spec);
            assert.equal(res.status, 201, `POST /v1/agents: ${res.describe()}`);
            const a1 = res.json();
            assertAgent(a1, { tenantId: tenant.id, ...spec, what: 'POST /v1/agents' });
            assert.equal(a1.revoked_at, null, 'a new agent is not revoked');
            await sleep(TICK_MS);
            const a2 = await admin.createAgent({ name: uniqueName('agent2') });
            assertAgent(a2, { tenantId: tenant.id, what: 'agent without directive and metadata' });
            await sleep(TICK_MS);
            const a3 = await admin.createAgent({ name: uniqueName('agent3'), directive: 'x' });

            const list = await admin.list('/v1/agents');
            assert.deepEqual(ids(list).sort(), [a1.id, a2.id, a3.id].sort(), 'GET /v1/agents: the three agents of the tenant');
            assertNewestFirst(list, [a1.id, a2.id, a3.id], 'GET /v1/agents');
            assert.deepEqual(ids(await admin.list('/v1/agents?limit=2')), [a3.id, a2.id], 'GET /v1/agents?limit=2');
            for (const bad of ['0', '1001', 'abc', '-1'])
                assertErrorResponse(await admin.call('GET', `/v1/agents?limit=${bad}`), { status: 400, code: 'VALIDATION_ERROR', what: `?limit=${bad}` });

            assert.deepEqual(await admin.ok('GET', `/v1/agents/${a1.id}`), a1, 'GET /v1/agents/{id} differs from the creation answer');

            const p1 = await admin.ok('PATCH', `/v1/agents/${a1.id}`, { directive: 'New directive.' });
            assertAgent(p1, { tenantId: tenant.id, name: spec.name, directive: 'New directive.', metadata: spec.metadata, what: 'PATCH directive' });
            assert.equal(p1.created_at, a1.created_at, 'PATCH changed created_at');
            assert.ok(p1.updated_at >= a1.updated_at, 'PATCH: updated_at went back');
            const newName = uniqueName('renamed');
            const p2 = await admin.ok('PATCH', `/v1/agents/${a1.id}`, { name: newName, metadata: { v: 2 } });
            assertAgent(p2, { tenantId: tenant.id, name: newName, directive: 'New directive.', metadata: { v: 2 }, what: 'PATCH name and metadata' });
            assert.deepEqual(await admin.ok('GET', `/v1/agents/${a1.id}`), p2, 'GET after PATCH');
            assertErrorResponse(await admin.call('PATCH', `/v1/agents/${randomUuid()}`, { name: 'x' }), { status: 404, code: 'AGENT_NOT_FOUND', what: 'PATCH of an unknown agent' });
            assertErrorResponse(await admin.call('GET', `/v1/agents/${randomUuid()}`), { status: 404, code: 'AGENT_NOT_FOUND', what: 'GET of an unknown agent' });

            const r = await admin.revoke('agents', a2.id);
            assert.equal(r.object, 'agent', 'revoke answer: object');
            assert.equal(r.id, a2.id, 'revoke answer: id');
            assertRecentSec(r.revoked_at, 'revoke answer: revoked_at');
            assertErrorResponse(await admin.call('POST', `/v1/agents/${randomUuid()}/revoke`), { status: 404, code: 'AGENT_NOT_FOUND', what: 'revoke of an unknown agent' });

            const events = await auditUntil(admin, (ev) => ev.some((e) => e.action === 'agent.revoked'));
            for (const [action, id] of [
                ['agent.created', a1.id],
                ['agent.updated', a1.id],
                ['agent.revoked', a2.id],
            ])
                assert.ok(events.some((e) => e.action === action && JSON.stringify(e).includes(id)), `no ${action} audit event naming ${id} (${[...new Set(events.map((e) => e.action))]})`);
            for (const e of events) assert.equal(e.object, 'audit_event', `audit event object: ${JSON.stringify(e)}`);
        },
    },
    {
        id: 'identity.keys',
        title: 'keys: create (201, secret once), list/get show prefix and last4 but never the secret or its hash, revoke, audited',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { tenant, admin, key: adminKey } = await freshTenant(dev(ctx), 'keys');
            const agent = await admin.createAgent({ name: uniqueName('for-key') });
            const expiresAt = nowSec() + 3600;
            const spec = { name: uniqueName('key'), scopes: ['chat', 'keys:admin'], agent_ids: [agent.id], expires_at: expiresAt };
            const res = await admin.call('POST', '/v1/keys', spec);
            assert.equal(res.status, 201, `POST /v1/keys: ${res.describe()}`);
            const k1 = res.json();
            assert.match(k1.key ?? '', API_KEY_RE, 'POST /v1/keys: key');
            assertKey(k1, { tenantId: tenant.id, name: spec.name, scopes: spec.scopes, agentIds: [agent.id], expiresAt, secret: k1.key, what: 'POST /v1/keys' });
            assert.equal(k1.revoked_at, null, 'a new key is not revoked');
            await sleep(TICK_MS);
            const k2 = await admin.createKey({ scopes: ['chat'] });
            assertKey(k2, { tenantId: tenant.id, scopes: ['chat'], agentIds: null, expiresAt: null, secret: k2.key, what: 'key without agent_ids or expires_at' });
            assert.notEqual(k1.key, k2.key, 'two keys with the same secret');
            assert.notEqual(k1.prefix, k2.prefix, 'two keys with the same prefix');

            const secrets = [k1.key, k2.key, adminKey];
            const hashes = secrets.map(sha256hex);
            for (const path of ['/v1/keys', `/v1/keys/${k1.id}`, `/v1/keys/${k2.id}`, '/v1/keys?limit=1']) {
                const r = await admin.call('GET', path);
                assert.equal(r.status, 200, `GET ${path}: ${r.describe()}`);
                assertNoSecret(r, [...secrets, ...hashes], `GET ${path}`);
                assert.ok(!/ibex_sk_[A-Za-z0-9]{40}/.test(r.text()), `GET ${path}: a whole key in the answer`);
            }
            const list = await admin.list('/v1/keys');
            assert.ok(ids(list).includes(k1.id) && ids(list).includes(k2.id), 'GET /v1/keys: the new keys');
            assertNewestFirst(list, [k1.id, k2.id], 'GET /v1/keys');
            for (const k of list) {
                assert.ok(!('key' in k), `GET /v1/keys shows a key field for ${k.id}`);
                assertKey(k, { tenantId: tenant.id, what: `GET /v1/keys entry ${k.id}` });
            }
            const { key: _, ...shown } = k1;
            assert.deepEqual(await admin.ok('GET', `/v1/keys/${k1.id}`), shown, 'GET /v1/keys/{id} differs from the creation answer without the secret');
            assertErrorResponse(await admin.call('GET', `/v1/keys/${randomUuid()}`), { status: 404, code: 'KEY_NOT_FOUND', what: 'unknown key' });

            const r = await admin.revoke('keys', k2.id);
            assert.equal(r.object, 'api_key', 'revoke answer: object');
            assert.ok(!('key' in r), 'the revoke answer shows the secret');
            assertRecentSec(r.revoked_at, 'revoke answer: revoked_at');
            assert.equal((await admin.ok('GET', `/v1/keys/${k2.id}`)).revoked_at, r.revoked_at, 'GET after revoke: revoked_at');
            assertErrorResponse(await admin.call('POST', `/v1/keys/${randomUuid()}/revoke`), { status: 404, code: 'KEY_NOT_FOUND', what: 'revoke of an unknown key' });
            // the allow-listed key works with its agent
            assert.equal((await admin.as(k1.key).chat({ agent: agent.id })).status, 200, 'chat with the allow-listed agent');

            const events = await auditUntil(admin, (ev) => ev.some((e) => e.action === 'key.revoked'));
            for (const [action, id] of [
                ['key.created', k1.id],
                ['key.created', k2.id],
                ['key.revoked', k2.id],
            ])
                assert.ok(events.some((e) => e.action === action && JSON.stringify(e).includes(id)), `no ${action} audit event naming ${id}`);
            const text = JSON.stringify(events);
            for (const s of [...secrets, ...hashes]) assert.ok(!text.includes(s), 'a secret or its hash in the audit trail');
        },
    },
    {
        id: 'identity.validation',
        title: 'admin API: missing or mistyped fields, unknown scopes, malformed ids -> 400 VALIDATION_ERROR with field_errors',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(dev(ctx), 'validation');
            const agent = await admin.createAgent({ name: uniqueName('valid') });
            const cases = [
                ['POST', '/v1/agents', {}, 'name', 'agent without name'],
                ['POST', '/v1/agents', { name: 5 }, 'name', 'agent name a number'],
                ['POST', '/v1/agents', { name: 'x', directive: 7 }, 'directive', 'agent directive a number'],
                ['POST', '/v1/agents', { name: 'x', metadata: 'str' }, 'metadata', 'agent metadata a string'],
                ['POST', '/v1/agents', { name: 'x', metadata: [1] }, 'metadata', 'agent metadata an array'],
                ['PATCH', `/v1/agents/${agent.id}`, { name: 5 }, 'name', 'PATCH name a number'],
                ['PATCH', `/v1/agents/${agent.id}`, { directive: ['x'] }, 'directive', 'PATCH directive an array'],
                ['POST', '/v1/keys', {}, 'scopes', 'key without scopes'],
                ['POST', '/v1/keys', { scopes: 'chat' }, 'scopes', 'scopes a string'],
                ['POST', '/v1/keys', { scopes: ['nope'] }, 'scopes', 'unknown scope'],
                ['POST', '/v1/keys', { scopes: [7] }, 'scopes', 'scope a number'],
                ['POST', '/v1/keys', { scopes: ['chat'], agent_ids: 'x' }, 'agent_ids', 'agent_ids a string'],
                ['POST', '/v1/keys', { scopes: ['chat'], agent_ids: ['not-a-uuid'] }, 'agent_ids', 'agent_ids with a malformed id'],
                ['POST', '/v1/keys', { scopes: ['chat'], expires_at: 'tomorrow' }, 'expires_at', 'expires_at a string'],
                ['POST', '/v1/keys', { scopes: ['chat'], name: 5 }, 'name', 'key name a number'],
                ['POST', '/v1/tenants', {}, 'name', 'tenant without name'],
                ['POST', '/v1/tenants', { name: 'x', metadata: 5 }, 'metadata', 'tenant metadata a number'],
            ];
            for (const [method, p, body, field, what] of cases) assertFieldError(await admin.call(method, p, body), field, `${what} (${method} ${p.replace(agent.id, '{id}')})`);

            for (const [method, p] of [
                ['GET', '/v1/agents/not-a-uuid'],
                ['PATCH', '/v1/agents/not-a-uuid'],
                ['POST', '/v1/agents/123/revoke'],
                ['GET', '/v1/keys/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'],
                ['POST', '/v1/keys/not-a-uuid/revoke'],
                ['GET', '/v1/tenants/not-a-uuid'],
                ['POST', '/v1/tenants/x/revoke'],
            ])
                assertErrorResponse(await admin.call(method, p, method === 'GET' ? undefined : { name: 'x' }), { status: 400, code: 'VALIDATION_ERROR', what: `malformed id: ${method} ${p}` });

            for (const p of ['/v1/agents', '/v1/keys', '/v1/tenants']) {
                const r = await admin.call('POST', p, '{"name": "x", ', { headers: { 'Content-Type': 'application/json' } });
                assertErrorResponse(r, { status: 400, code: 'INVALID_JSON', what: `POST ${p} with a truncated body` });
            }
            // nothing was created by the refused requests
            assert.deepEqual(ids(await admin.list('/v1/agents')), [agent.id], 'agents after refused creations');
            assert.equal((await admin.list('/v1/keys')).length, 1, 'keys after refused creations (only the admin key)');
        },
    },
    {
        id: 'identity.isolation',
        title: "cross-tenant: with A's admin key every route with B's ids answers exactly like an unknown id, no byte of B shows, lists are disjoint",
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        async run(ctx) {
            const root = dev(ctx);
            const devTenant = await root.ownTenant();
            const A = await freshTenant(root, 'iso-a');
            const B = await freshTenant(root, 'iso-b');
            const mk = async (T, tag) => {
                const agent = await T.admin.createAgent({ name: uniqueName(`${tag}-agent`), directive: `secret directive ${uniqueName(tag)}`, metadata: { owner: uniqueName(tag) } });
                const key = await T.admin.createKey({ name: uniqueName(`${tag}-key`), scopes: ['chat'] });
                const child = await T.admin.createTenant(uniqueName(`${tag}-child`));
                return { agent, key, child, childKey: adminKeyOf(child) };
            };
            const a = await mk(A, 'a');
            const b = await mk(B, 'b');
            const bBytes = [
                B.tenant.id,
                B.tenant.name,
                B.key,
                b.agent.id,
                b.agent.name,
                b.agent.directive,
                b.agent.metadata.owner,
                b.key.id,
                b.key.name,
                b.key.key,
                b.child.id,
                b.child.name,
                b.childKey,
            ];
            const aBytes = [A.tenant.id, A.tenant.name, a.agent.id, a.agent.name, a.key.id, a.key.name, a.child.id, a.child.name];

            // [what, method, path with {id}, the foreign id, body, expected status, code]
            const probes = [
                ['GET agent', 'GET', '/v1/agents/{id}', b.agent.id, undefined, 404, 'AGENT_NOT_FOUND'],
                ['PATCH agent', 'PATCH', '/v1/agents/{id}', b.agent.id, { name: 'hijacked', directive: 'hijacked' }, 404, 'AGENT_NOT_FOUND'],
                ['revoke agent', 'POST', '/v1/agents/{id}/revoke', b.agent.id, undefined, 404, 'AGENT_NOT_FOUND'],
                ['GET key', 'GET', '/v1/keys/{id}', b.key.id, undefined, 404, 'KEY_NOT_FOUND'],
                ['revoke key', 'POST', '/v1/keys/{id}/revoke', b.key.id, undefined, 404, 'KEY_NOT_FOUND'],
                ['GET sibling tenant', 'GET', '/v1/tenants/{id}', B.tenant.id, undefined, 404, 'TENANT_NOT_FOUND'],
                ['revoke sibling tenant', 'POST', '/v1/tenants/{id}/revoke', B.tenant.id, undefined, 404, 'TENANT_NOT_FOUND'],
                ["GET sibling's child", 'GET', '/v1/tenants/{id}', b.child.id, undefined, 404, 'TENANT_NOT_FOUND'],
                ["revoke sibling's child", 'POST', '/v1/tenants/{id}/revoke', b.child.id, undefined, 404, 'TENANT_NOT_FOUND'],
                ['GET parent tenant', 'GET', '/v1/tenants/{id}', devTenant.id, undefined, 404, 'TENANT_NOT_FOUND'],
                ['revoke parent tenant', 'POST', '/v1/tenants/{id}/revoke', devTenant.id, undefined, 404, 'TENANT_NOT_FOUND'],
            ];
            const problems = [];
            const check = (what, res, rnd, foreign, status, code) => {
                const text = wireText(res);
                for (const s of bBytes) if (text.includes(s)) problems.push(`${what}: the answer carries B's ${JSON.stringify(s.slice(0, 40))}: ${truncate(res.text(), 300)}`);
                const got = sameAnswerForm(res, foreign);
                const want = sameAnswerForm(rnd, null);
                if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${what}: answered ${got.status} ${got.body}, an unknown id ${want.status} ${want.body}`);
                if (status !== undefined && res.status !== status) problems.push(`${what}: HTTP ${res.status}, expected ${status}`);
                if (code !== undefined && res.status === status) {
                    try {
                        if (errorOf(res).code !== code) problems.push(`${what}: code ${errorOf(res).code}, expected ${code}`);
                    } catch (e) {
                        problems.push(`${what}: ${e.message}`);
                    }
                }
            };
            const pairs = []; // [what, unknown id, foreign id]: A's audit trail must not tell them apart
            for (const [what, method, p, foreign, body, status, code] of probes) {
                const id = randomUuid();
                pairs.push([what, id, foreign]);
                const rnd = await A.admin.call(method, p.replace('{id}', id), body);
                const res = await A.admin.call(method, p.replace('{id}', foreign), body);
                check(what, res, { ...rnd, text: () => rnd.text().split(id).join('<id>') }, foreign, status, code);
            }
            // chat naming B's agent, with A's admin key and with A's chat key
            for (const [what, T] of [
                ["chat as B's agent (A admin key)", A.admin],
                ["chat as B's agent (A chat key)", A.admin.as(a.key.key)],
            ]) {
                const id = randomUuid();
                pairs.push([what, id, b.agent.id]);
                const rnd = await T.chat({ agent: id });
                const res = await T.chat({ agent: b.agent.id });
                check(what, res, { ...rnd, text: () => rnd.text().split(id).join('<id>') }, b.agent.id, 404, 'AGENT_NOT_FOUND');
            }
            // a key allow-listing B's agent: refused like an unknown agent
            {
                const id = randomUuid();
                pairs.push(["POST /v1/keys with B's agent in agent_ids", id, b.agent.id]);
                const rnd = await A.admin.call('POST', '/v1/keys', { name: 'x', scopes: ['chat'], agent_ids: [id] });
                const res = await A.admin.call('POST', '/v1/keys', { name: 'x', scopes: ['chat'], agent_ids: [b.agent.id] });
                if (res.status < 400 || res.status >= 500) problems.push(`POST /v1/keys with agent_ids [B's agent]: ${res.describe()}`);
                check("POST /v1/keys with B's agent in agent_ids", res, { ...rnd, text: () => rnd.text().split(id).join('<id>') }, b.agent.id);
            }
            assert.deepEqual(problems, [], `${problems.length} cross-tenant problem(s):\n${problems.join('\n')}`);

            // B is untouched
            const bAgent = await B.admin.ok('GET', `/v1/agents/${b.agent.id}`);
            assert.deepEqual(bAgent, b.agent, "B's agent changed after A's PATCH/revoke attempts");
            assert.equal((await B.admin.ok('GET', `/v1/keys/${b.key.id}`)).revoked_at, null, "B's key was revoked by A");
            assert.equal((await B.admin.as(b.key.key).chat({ agent: b.agent.id })).status, 200, "B's key and agent after A's attempts");
            assert.equal((await B.admin.as(b.childKey).chat()).status, 200, "B's child tenant after A's attempts");
            assert.equal((await root.chat()).status, 200, 'the dev tenant after A tried to revoke it');

            // lists: neither side sees the other. A's audit trail may name the ids A itself sent,
            // but must record a foreign id exactly as it records an unknown one.
            const sentByA = new Set(pairs.map(([, , foreign]) => foreign));
            for (const [who, T, other] of [
                ['A', A.admin, bBytes],
                ['B', B.admin, aBytes],
            ]) {
                for (const p of ['/v1/agents', '/v1/keys', '/v1/tenants', '/v1/audit?limit=1000']) {
                    const res = await T.call('GET', p);
                    assert.equal(res.status, 200, `${who}: GET ${p}: ${res.describe()}`);
                    const text = wireText(res);
                    for (const s of other) {
                        if (who === 'A' && p.startsWith('/v1/audit') && sentByA.has(s)) continue;
                        assert.ok(!text.includes(s), `${who}: GET ${p} carries the other tenant's ${JSON.stringify(s.slice(0, 40))}`);
                    }
                }
            }
            const audit = await auditUntil(A.admin, () => false, 500);
            const recorded = (id) =>
                audit
                    .filter((e) => JSON.stringify(e).includes(id))
                    .map((e) => JSON.stringify({ action: e.action, target: e.target, detail: e.detail }).split(id).join('<id>'))
                    .sort();
            const auditProblems = [];
            // one foreign id serves several probes, each with its own unknown id
            for (const foreign of sentByA) {
                const mine = pairs.filter((x) => x[2] === foreign);
                const u = mine.flatMap(([, unknown]) => recorded(unknown)).sort();
                const f = recorded(foreign);
                if (JSON.stringify(u) !== JSON.stringify(f))
                    auditProblems.push(`${mine.map((x) => x[0]).join(', ')}: A's audit records B's id as ${f.join(' ') || 'nothing'}, unknown ids as ${u.join(' ') || 'nothing'}`);
            }
            assert.deepEqual(auditProblems, [], `A's audit trail tells B's ids apart from unknown ones:\n${auditProblems.join('\n')}`);
            // positive control: A reaches its own child
            assert.equal((await A.admin.ok('GET', `/v1/tenants/${a.child.id}`)).id, a.child.id, "A: GET of its own child");
            await A.admin.revoke('tenants', a.child.id);
            assertErrorResponse(await A.admin.as(a.childKey).call('GET', '/v1/models'), { status: 401, code: 'TOKEN_REVOKED', what: "A revoked its child: the child's key" });
        },
    },
    {
        id: 'identity.cli',
        title: 'ibex tenants|agents|keys create/list/revoke on the store of a running ibex: visible through its API',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            const file = path.join(ctx.h.logDir, `identity-cli-${process.pid}.db`);
            fs.rmSync(file, { force: true });
            const storeUrl = `sqlite://${file}`;
            const ibex = await ctx.ibex({ upstream: null, env: { IBEX_STORE_URL: storeUrl } });
            const cli = async (args, { ok = true } = {}) => {
                const r = await runCli(args, { storeUrl });
                const san = /(Sanitizer|runtime error: )/.exec(r.stderr);
                assert.ok(!san, `${r.cmd}: sanitizer report:\n${truncate(r.stderr, 2000)}`);
                if (ok) assert.equal(r.code, 0, `${r.cmd}: exit ${r.code} ${r.signal ?? ''}\nstdout: ${truncate(r.stdout, 600)}\nstderr: ${truncate(r.stderr, 600)}`);
                return r;
            };
            const uuids = (s) => [...new Set(s.match(UUID_G) || [])];
            const keysIn = (s) => s.match(API_KEY_G) || [];

            const tname = uniqueName('cli-tenant');
            const tc = await cli(['tenants', 'create', '--name', tname]);
            assert.equal(uuids(tc.stdout).length >= 1, true, `tenants create printed no id: ${tc.stdout}`);
            const tlist = await cli(['tenants', 'list']);
            const line = tlist.stdout.split('\n').find((l) => l.includes(tname));
            assert.ok(line, `tenants list does not show ${tname}: ${truncate(tlist.stdout, 600)}`);
            const tid = uuids(tc.stdout).find((u) => line.includes(u));
            assert.ok(tid, `the id printed by tenants create (${uuids(tc.stdout)}) is not on the tenants list line ${JSON.stringify(line)}`);

            const kc = await cli(['keys', 'create', '--tenant', tid, '--scopes', 'admin', '--name', 'cli-admin']);
            assert.equal(keysIn(kc.stdout).length, 1, `keys create printed ${keysIn(kc.stdout).length} keys: ${truncate(kc.stdout, 400)}`);
            const adminKey = keysIn(kc.stdout)[0];
            const admin = new IbexAdmin(ibex.target, adminKey);
            const own = await admin.ownTenant();
            assert.equal(own.id, tid, 'the CLI key: GET /v1/tenants');
            assert.equal(own.name, tname, 'the CLI tenant name through the API');

            const aname = uniqueName('cli-agent');
            const ac = await cli(['agents', 'create', '--tenant', tid, '--name', aname, '--directive', 'From the command line.']);
            const agents = await admin.list('/v1/agents');
            const agent = agents.find((x) => x.name === aname);
            assert.ok(agent, `the CLI agent is not in GET /v1/agents: ${truncate(JSON.stringify(agents), 500)}`);
            assert.equal(agent.directive, 'From the command line.', 'the CLI agent directive through the API');
            assert.ok(ac.stdout.includes(agent.id), `agents create did not print the agent id ${agent.id}: ${ac.stdout}`);
            const al = await cli(['agents', 'list', '--tenant', tid]);
            assert.ok(al.stdout.includes(agent.id) && al.stdout.includes(aname), `agents list: ${truncate(al.stdout, 500)}`);

            const kname = uniqueName('cli-chat');
            const kc2 = await cli(['keys', 'create', '--tenant', tid, '--scopes', 'chat,keys:admin', '--agents', agent.id, '--expires-in', '30d', '--name', kname]);
            const chatKey = keysIn(kc2.stdout)[0];
            assert.match(chatKey ?? '', API_KEY_RE, `keys create: ${kc2.stdout}`);
            const k = (await admin.list('/v1/keys')).find((x) => x.name === kname);
            assert.ok(k, `the CLI key ${kname} is not in GET /v1/keys`);
            assert.deepEqual([...k.scopes].sort(), ['chat', 'keys:admin'], 'CLI key scopes through the API');
            assert.deepEqual(k.agent_ids, [agent.id], 'CLI key agent_ids through the API');
            assert.ok(Math.abs(k.expires_at - (nowSec() + 30 * 86400)) < 300, `--expires-in 30d: expires_at ${k.expires_at}, now ${nowSec()}`);
            assert.equal((await admin.as(chatKey).chat({ agent: agent.id })).status, 200, 'chat with the CLI key as the CLI agent');
            const kl = await cli(['keys', 'list', '--tenant', tid]);
            assert.ok(kl.stdout.includes(k.id), `keys list does not show ${k.id}: ${truncate(kl.stdout, 500)}`);
            for (const s of [adminKey, chatKey]) {
                assert.ok(!kl.stdout.includes(s) && !kl.stderr.includes(s), 'keys list prints a secret');
                assert.ok(!kl.stdout.includes(sha256hex(s)), 'keys list prints the hash of a secret');
            }

            const bad = await cli(['keys', 'create', '--tenant', tid, '--scopes', 'nope'], { ok: false });
            assert.notEqual(bad.code, 0, `keys create --scopes nope succeeded: ${bad.stdout}`);
            assert.equal(keysIn(bad.stdout).length, 0, 'a refused keys create printed a key');
            const other = await cli(['agents', 'revoke', '--tenant', randomUuid(), agent.id], { ok: false });
            assert.notEqual(other.code, 0, 'agents revoke with the wrong --tenant succeeded');
            assert.equal((await admin.ok('GET', `/v1/agents/${agent.id}`)).revoked_at, null, 'agents revoke with the wrong --tenant revoked the agent');

            // revocations made on the store reach the running ibex within its poll interval (1 s default)
            await cli(['agents', 'revoke', '--tenant', tid, agent.id]);
            await cli(['keys', 'revoke', '--tenant', tid, k.id]);
            let last;
            const gone = await pollUntil(async () => {
                last = await admin.as(chatKey).chat({ agent: agent.id });
                return last.status === 401;
            }, { timeoutMs: 5000, intervalMs: 100 });
            assert.ok(gone, `a key revoked by the CLI still works 5 s later: ${last.describe()}`);
            assertErrorResponse(last, { status: 401, code: 'TOKEN_REVOKED', what: 'key revoked by the CLI' });
            const ag = await pollUntil(async () => (await admin.chat({ agent: agent.id })).status === 404, { timeoutMs: 5000, intervalMs: 100 });
            assert.ok(ag, 'an agent revoked by the CLI is still usable 5 s later');
            assert.ok(Number.isInteger((await admin.ok('GET', `/v1/agents/${agent.id}`)).revoked_at), 'agent revoked by the CLI: revoked_at through the API');

            await cli(['tenants', 'revoke', tid]);
            const tg = await pollUntil(async () => (last = await admin.call('GET', '/v1/models')).status === 401, { timeoutMs: 5000, intervalMs: 100 });
            assert.ok(tg, `the admin key of a tenant revoked by the CLI still works 5 s later: ${last.describe()}`);
            assertErrorResponse(last, { status: 401, code: 'TOKEN_REVOKED', what: 'key of a tenant revoked by the CLI' });
            assert.ok(!ctx.procs[0].stderrText().includes(adminKey), "the CLI key appears in ibex's stderr");
        },
    },
];
