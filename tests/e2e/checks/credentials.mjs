// Provider credentials (docs/credentials.md): CRUD over HTTP with the secret never on the wire
// (only secret_last4), Idempotency-Key on create, audit events without secrets; the plaintext in
// none of the SQLite files nor in the log; isolation between two tenants and between two users of
// one tenant (the same answer as an unknown id); validation against fakellm (the decrypted secret
// is what the provider receives, per provider type) and against a closed port; key rotation with
// `ibex credentials rotate-key` while reads keep working (previous key, re-run, old key alone
// refused); CREDENTIALS_DISABLED without a master key and a refused world-readable key file.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { assertErrorResponse } from '../lib/expect.mjs';
import { IbexAdmin, assertNoSecret, auditUntil, freshTenant, nowSec, randomUuid, runCli, sameAnswerForm, uniqueName, wireText } from '../lib/ibexadmin.mjs';
import { closedPort } from '../lib/ports.mjs';
import { E2E_MASTER_KEY } from '../lib/proc.mjs';
import { truncate } from '../lib/util.mjs';

const dev = (ctx, target = ctx.target) => new IbexAdmin(target, ctx.apiKey);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CRED_KEYS = ['id', 'object', 'tenant_id', 'scope', 'subject', 'provider', 'name', 'secret_last4', 'is_default', 'state', 'created_at', 'updated_at', 'deleted_at'];
// A secret nobody else uses, with a marker to search for in files and logs.
const newSecret = (label) => `sk-e2e${label}-${crypto.randomBytes(12).toString('hex')}`;

function assertCredential(c, e = {}) {
    const what = e.what || 'credential';
    const show = truncate(JSON.stringify(c), 500);
    assert.ok(c && typeof c === 'object', `${what}: not an object (${show})`);
    assert.deepEqual(Object.keys(c).sort(), [...CRED_KEYS].sort(), `${what}: keys (${show})`);
    assert.match(c.id, UUID, `${what}: id (${show})`);
    assert.equal(c.object, 'credential', `${what}: object (${show})`);
    assert.ok(Number.isInteger(c.created_at) && Math.abs(c.created_at - nowSec()) < 120, `${what}: created_at (${show})`);
    for (const k of ['tenant_id', 'scope', 'subject', 'provider', 'name', 'state', 'is_default']) {
        if (e[k] !== undefined) assert.deepEqual(c[k], e[k], `${what}: ${k} (${show})`);
    }
    if (e.secret !== undefined) assert.equal(c.secret_last4, e.secret.slice(-4), `${what}: secret_last4 (${show})`);
    return c;
}

async function create(admin, body, what = `POST /v1/credentials ${body.provider} ${body.scope || 'user'}`) {
    const res = await admin.call('POST', '/v1/credentials', body);
    assert.equal(res.status, 201, `${what}: ${res.describe()}`);
    assertNoSecret(res, [body.secret], what);
    return assertCredential(res.json(), { what, provider: body.provider, name: body.name, secret: body.secret, scope: body.scope || 'user', state: 'active', is_default: false });
}

async function list(admin, query = '') {
    const what = `GET /v1/credentials${query ? `?${query}` : ''}`;
    const res = await admin.call('GET', `/v1/credentials${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    const j = res.json();
    assert.ok(j.object === 'list' && Array.isArray(j.credentials) && Number.isInteger(j.total), `${what}: not a credential list (${truncate(JSON.stringify(j), 400)})`);
    return j;
}

const ids = (l) => l.credentials.map((c) => c.id);

// Asserts a 400 VALIDATION_ERROR naming field.
function assertFieldError(res, field, what) {
    const e = assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
    assert.ok(Array.isArray(e.field_errors) && e.field_errors.some((f) => f.field === field), `${what}: no field_errors entry for ${field} (${JSON.stringify(e)})`);
    return e;
}

async function credentialsCrud(ctx) {
    const { tenant, admin } = await freshTenant(dev(ctx), 'cred-crud');
    const secrets = [];
    const s1 = newSecret('crud1');
    const s2 = newSecret('crud2');
    const s3 = newSecret('crud3');
    secrets.push(s1, s2, s3);

    // create: own and tenant-wide; the answer shows secret_last4 only
    const own = await create(admin, { provider: 'openai', name: 'my key', secret: s1 });
    assert.equal(own.tenant_id, tenant.id);
    assert.ok(typeof own.subject === 'string' && own.subject.length > 0, `own credential: subject ${own.subject}`);
    const wide = await create(admin, { provider: 'openai', name: 'team key', secret: s2, scope: 'tenant' });
    assert.equal(wide.subject, null, 'a tenant-wide credential has no subject');

    // get, list, filters
    const got = await admin.call('GET', `/v1/credentials/${own.id}`);
    assert.equal(got.status, 200, got.describe());
    assertNoSecret(got, secrets, 'GET /v1/credentials/{id}');
    assert.deepEqual(got.json(), own, 'GET differs from the creation answer');
    const all = await list(admin);
    assert.deepEqual(ids(all), [wide.id, own.id], `list, newest first: ${JSON.stringify(ids(all))}`);
    assert.equal((await list(admin, 'provider=anthropic')).total, 0, 'provider filter');
    assert.equal((await list(admin, 'page=2&page_size=1')).credentials[0].id, own.id, 'page 2');

    // update: name, secret (last4 follows), state; version-free answers, never the secret
    let res = await admin.call('PUT', `/v1/credentials/${own.id}`, { name: 'renamed', secret: s3 });
    assert.equal(res.status, 200, res.describe());
    assertNoSecret(res, secrets, 'PUT');
    assertCredential(res.json(), { what: 'PUT', name: 'renamed', secret: s3, state: 'active' });
    res = await admin.call('PUT', `/v1/credentials/${own.id}`, { state: 'inactive' });
    assert.equal(res.json().state, 'inactive', res.describe());
    assert.equal((await list(admin, 'state=inactive')).total, 1, 'state filter');

    // default: one per provider; only an active credential
    assertErrorResponse(await admin.call('POST', `/v1/credentials/${own.id}/default`), { status: 409, code: 'CREDENTIAL_NOT_ACTIVE', what: 'default an inactive credential' });
    res = await admin.call('POST', `/v1/credentials/${wide.id}/default`);
    assert.equal(res.status, 200, res.describe());
    assert.equal(res.json().is_default, true);
    const wide2 = await create(admin, { provider: 'openai', name: 'team key 2', secret: newSecret('crud4'), scope: 'tenant' });
    await admin.ok('POST', `/v1/credentials/${wide2.id}/default`);
    assert.equal((await admin.ok('GET', `/v1/credentials/${wide.id}`)).is_default, false, 'the previous default stays one');

    // delete: soft, listed only on request, no more changes
    res = await admin.call('DELETE', `/v1/credentials/${own.id}`);
    assert.equal(res.status, 200, res.describe());
    assertCredential(res.json(), { what: 'DELETE', state: 'deleted' });
    assert.ok(Number.isInteger(res.json().deleted_at), 'deleted_at');
    assert.deepEqual(ids(await list(admin)), [wide2.id, wide.id], 'deleted ones are not listed');
    assert.deepEqual(ids(await list(admin, 'state=deleted')), [own.id], 'state=deleted');
    assertErrorResponse(await admin.call('PUT', `/v1/credentials/${own.id}`, { state: 'active' }), { status: 409, code: 'CREDENTIAL_NOT_ACTIVE', what: 'revive a deleted credential' });
    assertErrorResponse(await admin.call('POST', `/v1/credentials/${own.id}/validate`), { status: 409, code: 'CREDENTIAL_NOT_ACTIVE', what: 'validate a deleted credential' });
    assert.equal((await admin.call('DELETE', `/v1/credentials/${own.id}`)).status, 200, 'DELETE again');

    // validation: field errors, unknown provider, mock, methods, ids; never the secret in errors
    const bad = [
        [{ name: 'n', secret: s1 }, 'provider'],
        [{ provider: 'openai', secret: s1 }, 'name'],
        [{ provider: 'openai', name: 'n' }, 'secret'],
        [{ provider: 'openai', name: 'n', secret: 'short' }, 'secret'],
        [{ provider: 'openai', name: 'n', secret: `${s1} with spaces` }, 'secret'],
        [{ provider: 'openai', name: 'n', secret: `${s1}\r\nX-Injected: 1` }, 'secret'],
        [{ provider: 'openai', name: 'n', secret: 'x'.repeat(4097) }, 'secret'],
        [{ provider: 'openai', name: 'n', secret: s1, scope: 'everyone' }, 'scope'],
    ];
    for (const [body, field] of bad) {
        const r = await admin.call('POST', '/v1/credentials', body);
        assertFieldError(r, field, `POST ${truncate(JSON.stringify(body), 80)}`);
        assertNoSecret(r, secrets, 'a refused POST');
    }
    assertErrorResponse(await admin.call('POST', '/v1/credentials', '{"provider":'), { status: 400, code: 'INVALID_JSON', what: 'malformed JSON' });
    const unknownProvider = assertErrorResponse(await admin.call('POST', '/v1/credentials', { provider: 'nope', name: 'n', secret: s1 }), { status: 422, code: 'PROVIDER_NOT_CONFIGURED', what: 'unknown provider' });
    assert.equal(unknownProvider.param, 'provider');
    assertErrorResponse(await admin.call('POST', '/v1/credentials', { provider: 'mock', name: 'n', secret: s1 }), { status: 422, code: 'PROVIDER_NOT_CONFIGURED', what: 'the mock provider' });
    assertErrorResponse(await admin.call('PUT', `/v1/credentials/${wide.id}`, {}), { status: 400, code: 'VALIDATION_ERROR', what: 'PUT without fields' });
    assertErrorResponse(await admin.call('PUT', `/v1/credentials/${wide.id}`, { state: 'deleted' }), { status: 400, code: 'VALIDATION_ERROR', what: 'PUT state deleted' });
    assertFieldError(await admin.call('GET', '/v1/credentials/not-a-uuid'), 'id', 'malformed id');
    assertErrorResponse(await admin.call('GET', `/v1/credentials/${randomUuid()}`), { status: 404, code: 'CREDENTIAL_NOT_FOUND', what: 'unknown id' });
    const m = await admin.call('PATCH', `/v1/credentials/${wide.id}`, { name: 'x' });
    assertErrorResponse(m, { status: 405, code: 'METHOD_NOT_ALLOWED', what: 'PATCH' });
    assert.equal(m.headers.allow, 'GET, PUT, DELETE', 'Allow');
    assertErrorResponse(await admin.call('GET', '/v1/credentials?state=gone'), { status: 400, code: 'VALIDATION_ERROR', what: 'bad state filter' });

    // Idempotency-Key: the first answer replayed, one credential made
    const key = uniqueName('idem');
    const body = { provider: 'openai', name: 'idem', secret: newSecret('idem') };
    secrets.push(body.secret);
    const first = await admin.call('POST', '/v1/credentials', body, { headers: { 'Idempotency-Key': key } });
    assert.equal(first.status, 201, first.describe());
    const again = await admin.call('POST', '/v1/credentials', body, { headers: { 'Idempotency-Key': key } });
    assert.equal(again.status, 201, again.describe());
    assert.equal(again.headers['idempotent-replayed'], 'true', 'replay header');
    assert.deepEqual(again.json(), first.json(), 'the replay answers the same credential');
    assertErrorResponse(await admin.call('POST', '/v1/credentials', { ...body, name: 'other' }, { headers: { 'Idempotency-Key': key } }), { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', what: 'same key, other body' });
    assert.equal((await list(admin, 'provider=openai&page_size=100')).credentials.filter((c) => c.name === 'idem').length, 1, 'one credential per key');

    // audit: every change, with the provider and never a secret
    const wanted = ['credential.created', 'credential.updated', 'credential.defaulted', 'credential.deleted'];
    const events = await auditUntil(admin, (ev) => wanted.every((a) => ev.some((e) => e.action === a)));
    for (const a of wanted) assert.ok(events.some((e) => e.action === a), `audit: no ${a} (${truncate(JSON.stringify(events.map((e) => e.action)), 300)})`);
    const created = events.find((e) => e.action === 'credential.created' && e.target === own.id);
    assert.equal(created.detail.provider, 'openai', `audit detail: ${JSON.stringify(created)}`);
    const text = JSON.stringify(events);
    for (const s of secrets) assert.ok(!text.includes(s), 'an audit event carries a secret');
}

// The plaintext is in none of the SQLite files and not in the log; the ciphertext is.
async function credentialsAtRest(ctx) {
    const file = path.join(ctx.h.logDir, `cred-at-rest-${process.pid}.db`);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
    const ibex = await ctx.ibex({ env: { IBEX_STORE_URL: `sqlite://${file}` } });
    const admin = dev(ctx, ibex.target);
    const secrets = [newSecret('rest1'), newSecret('rest2'), newSecret('rest3')];
    const own = await create(admin, { provider: 'openai', name: 'a', secret: secrets[0] });
    const wide = await create(admin, { provider: 'openai', name: 'b', secret: secrets[1], scope: 'tenant' });
    await admin.ok('PUT', `/v1/credentials/${own.id}`, { secret: secrets[2] });
    await admin.ok('POST', `/v1/credentials/${wide.id}/validate`);
    await admin.ok('DELETE', `/v1/credentials/${wide.id}`);
    // the idempotency table and the audit trail too
    await admin.call('POST', '/v1/credentials', { provider: 'openai', name: 'c', secret: secrets[0] }, { headers: { 'Idempotency-Key': uniqueName('rest') } });
    const scan = () => {
        const found = [];
        for (const f of [file, `${file}-wal`, `${file}-shm`, ibex.stderrPath, ibex.stdoutPath]) {
            if (!fs.existsSync(f)) continue;
            const bytes = fs.readFileSync(f);
            for (const s of secrets) {
                if (bytes.includes(Buffer.from(s))) found.push(`${path.basename(f)} holds ${s.slice(0, 12)}...`);
                // a distinctive middle part, in case something kept a piece of it
                if (bytes.includes(Buffer.from(s.slice(8, 28)))) found.push(`${path.basename(f)} holds a part of ${s.slice(0, 12)}...`);
            }
        }
        return found;
    };
    assert.deepEqual(scan(), [], 'plaintext found while running');
    const total = [file, `${file}-wal`].filter((f) => fs.existsSync(f)).reduce((n, f) => n + fs.statSync(f).size, 0);
    assert.ok(total > 0, 'the store files are empty');
    await ibex.stop({ graceMs: 10000 });
    assert.deepEqual(scan(), [], 'plaintext found after the stop (checkpointed store)');
}

// Two tenants, two users and an admin in one: each sees only what is theirs.
async function credentialsIsolation(ctx) {
    const A = await freshTenant(dev(ctx), 'cred-iso-a');
    const B = await freshTenant(dev(ctx), 'cred-iso-b');
    const userKey = async (label, scopes) => A.admin.as((await A.admin.createKey({ name: uniqueName(label), scopes })).key);
    const u1 = await userKey('u1', ['chat']);
    const u2 = await userKey('u2', ['chat']);
    const credAdmin = await userKey('ca', ['credentials:admin']);
    const reader = await userKey('reader', ['sessions:read']);
    const secrets = [newSecret('iso1'), newSecret('iso2'), newSecret('iso3'), newSecret('iso4')];
    const c1 = await create(u1, { provider: 'openai', name: 'u1 key', secret: secrets[0] });
    const c2 = await create(u2, { provider: 'openai', name: 'u2 key', secret: secrets[1] });
    const wide = await create(credAdmin, { provider: 'openai', name: 'A team', secret: secrets[2], scope: 'tenant' });
    const bWide = await create(B.admin, { provider: 'openai', name: 'B team', secret: secrets[3], scope: 'tenant' });
    assert.notEqual(c1.subject, c2.subject, 'two keys, two subjects');

    // a chat-only user may not make tenant-wide ones; a key with neither scope may do nothing
    assertErrorResponse(await u1.call('POST', '/v1/credentials', { provider: 'openai', name: 'x', secret: newSecret('x'), scope: 'tenant' }), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'scope tenant with chat only' });
    const refused = assertErrorResponse(await reader.call('GET', '/v1/credentials'), { status: 403, code: 'INSUFFICIENT_SCOPE', what: 'sessions:read only' });
    assert.match(refused.message, /chat.*credentials:admin/, refused.message);

    // who must not see what: every route answers as for an unknown id
    const hidden = [
        [u2, c1, "u2 on u1's"],
        [u1, wide, "a chat user on the tenant's"],
        [credAdmin, c1, "A's credentials admin on u1's own"],
        [A.admin, c2, "A's admin on u2's own"],
        [B.admin, c1, "B's admin on A's user's"],
        [B.admin, wide, "B's admin on A's tenant-wide"],
        [A.admin, bWide, "A's admin on B's"],
    ];
    for (const [who, cred, what] of hidden) {
        const unknown = randomUuid();
        const routes = [
            ['GET', '', undefined],
            ['PUT', '', { name: 'taken' }],
            ['DELETE', '', undefined],
            ['POST', '/default', undefined],
            ['POST', '/validate', undefined],
        ];
        for (const [method, suffix, body] of routes) {
            const got = await who.call(method, `/v1/credentials/${cred.id}${suffix}`, body);
            const want = await who.call(method, `/v1/credentials/${unknown}${suffix}`, body);
            assertErrorResponse(got, { status: 404, code: 'CREDENTIAL_NOT_FOUND', what: `${what}: ${method} ${suffix}` });
            assert.deepEqual(sameAnswerForm(got, cred.id), sameAnswerForm(want, unknown), `${what}: ${method} ${suffix} differs from an unknown id`);
            assertNoSecret(got, secrets, what);
        }
    }
    // nothing changed
    assert.deepEqual(await u1.ok('GET', `/v1/credentials/${c1.id}`), c1, "u1's credential changed");
    assert.deepEqual(await credAdmin.ok('GET', `/v1/credentials/${wide.id}`), wide, "A's tenant-wide credential changed");
    assert.deepEqual(await B.admin.ok('GET', `/v1/credentials/${bWide.id}`), bWide, "B's credential changed");
    // lists: each its own (and the admins the tenant-wide ones)
    assert.deepEqual(ids(await list(u1)), [c1.id], "u1's list");
    assert.deepEqual(ids(await list(u2)), [c2.id], "u2's list");
    assert.deepEqual(ids(await list(credAdmin)), [wide.id], "A's credentials admin's list");
    assert.deepEqual(ids(await list(B.admin)), [bWide.id], "B's list");
    // a user validates its own
    const v = await u1.ok('POST', `/v1/credentials/${c1.id}/validate`);
    assert.equal(v.valid, true, JSON.stringify(v));
}

function writeConfig(ctx, name, text) {
    const file = path.join(ctx.h.logDir, `${name}-${process.pid}.yaml`);
    fs.writeFileSync(file, text);
    return file;
}

// A cheap authenticated request per provider type, with the decrypted secret, against fakellm;
// a closed port; the provider's body is never returned.
async function credentialsValidate(ctx) {
    const fake = ctx.fakellm;
    const base = fake.url;
    const closed = await closedPort();
    const config = writeConfig(
        ctx,
        'cred-validate',
        [
            'providers:',
            '  - name: claude',
            '    type: anthropic',
            `    base_url: ${base}`,
            '  - name: gem',
            '    type: gemini',
            `    base_url: ${base}`,
            '  - name: closed',
            '    type: openai',
            `    base_url: http://127.0.0.1:${closed}/v1`,
            '',
        ].join('\n'),
    );
    const ibex = await ctx.ibex({ settings: { config } });
    const admin = dev(ctx, ibex.target);
    const cases = [
        { provider: 'openai', path: '/v1/models', header: 'authorization', value: (s) => `Bearer ${s}`, valid: true, status: 200 },
        { provider: 'claude', path: '/v1/models', header: 'x-api-key', value: (s) => s, valid: true, status: 200, version: '2023-06-01' },
        // fakellm serves no Gemini model list: its 404 is reported, not its body
        { provider: 'gem', path: '/v1beta/models', header: 'x-goog-api-key', value: (s) => s, valid: false, status: 404 },
        { provider: 'closed', valid: false, status: null, error: 'connect_failed' },
    ];
    for (const c of cases) {
        const secret = newSecret(`val-${c.provider}`);
        const cred = await create(admin, { provider: c.provider, name: c.provider, secret });
        await fake.clearRequests();
        const res = await admin.call('POST', `/v1/credentials/${cred.id}/validate`);
        assert.equal(res.status, 200, `validate ${c.provider}: ${res.describe()}`);
        assertNoSecret(res, [secret], `validate ${c.provider}`);
        const j = res.json();
        assert.deepEqual(Object.keys(j).sort(), ['checked_at', 'error', 'id', 'object', 'provider', 'status', 'valid'], JSON.stringify(j));
        assert.equal(j.object, 'credential.validation');
        assert.equal(j.id, cred.id);
        assert.equal(j.valid, c.valid, `validate ${c.provider}: ${JSON.stringify(j)}`);
        assert.equal(j.status, c.status, `validate ${c.provider}: ${JSON.stringify(j)}`);
        if (c.error) assert.equal(j.error, c.error, JSON.stringify(j));
        assert.ok(Math.abs(j.checked_at - nowSec()) < 60, 'checked_at');
        assert.ok(!wireText(res).includes('fake-model') && !wireText(res).includes('Unknown route'), `the provider's body came back: ${res.describe()}`);
        const seen = await fake.requests();
        if (c.path) {
            assert.equal(seen.length, 1, `fakellm saw ${seen.length} requests for ${c.provider}`);
            assert.equal(seen[0].method, 'GET');
            assert.equal(seen[0].path, c.path, `${c.provider}: path`);
            assert.equal(seen[0].headers[c.header], c.value(secret), `${c.provider}: the provider got another key in ${c.header}`);
            if (c.version) assert.equal(seen[0].headers['anthropic-version'], c.version);
        } else {
            assert.equal(seen.length, 0, 'a closed port took a request');
        }
    }
    // an inactive credential is not validated
    const cred = await create(admin, { provider: 'openai', name: 'off', secret: newSecret('off') });
    await admin.ok('PUT', `/v1/credentials/${cred.id}`, { state: 'inactive' });
    await fake.clearRequests();
    const e = assertErrorResponse(await admin.call('POST', `/v1/credentials/${cred.id}/validate`), { status: 409, code: 'CREDENTIAL_NOT_ACTIVE', what: 'validate inactive' });
    assert.match(e.message, /inactive/);
    assert.equal((await fake.requests()).length, 0, 'an inactive credential reached the provider');
    const events = await auditUntil(admin, (ev) => ev.filter((x) => x.action === 'credential.validated').length >= cases.length);
    const validated = events.filter((x) => x.action === 'credential.validated');
    assert.equal(validated.length, cases.length, `credential.validated events: ${validated.length}`);
    assert.ok(validated.every((x) => typeof x.detail.provider === 'string' && typeof x.detail.valid === 'boolean'), JSON.stringify(validated));
}

const hexKey = () => crypto.randomBytes(32).toString('hex');
// The key id of docs/credentials.md: SHA-256 of a label, a NUL and the key, first 16 hex digits.
const keyId = (bytes) => crypto.createHash('sha256').update(Buffer.concat([Buffer.from('ibex master key id v1\0'), bytes])).digest('hex').slice(0, 16);

async function statusCredentials(target) {
    const s = await new IbexAdmin(target, null).ok('GET', '/status');
    assert.ok(s.credentials && typeof s.credentials === 'object', `GET /status: no credentials (${truncate(JSON.stringify(s), 400)})`);
    return s.credentials;
}

// Rolling rotation: previous key readable, rotate-key (twice), then the new key alone.
async function credentialsRotate(ctx) {
    const file = path.join(ctx.h.logDir, `cred-rotate-${process.pid}.db`);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
    const storeUrl = `sqlite://${file}`;
    const k1 = hexKey();
    const k2 = crypto.randomBytes(32).toString('base64');
    const fake = ctx.fakellm;
    const start = async (name, env) => {
        const p = await ctx.ibex({ name, env: { IBEX_STORE_URL: storeUrl, ...env } });
        return { p, admin: dev(ctx, p.target) };
    };
    // the provider receives exactly this secret when validating cred
    const validates = async (admin, cred, secret, what) => {
        await fake.clearRequests();
        const v = await admin.ok('POST', `/v1/credentials/${cred.id}/validate`);
        assert.equal(v.valid, true, `${what}: ${JSON.stringify(v)}`);
        const seen = await fake.requests();
        assert.equal(seen.at(-1)?.headers.authorization, `Bearer ${secret}`, `${what}: the provider got another key`);
    };
    const secrets = [newSecret('rot1'), newSecret('rot2'), newSecret('rot3')];

    // 1. everything under k1
    let { p, admin } = await start('cred-rot-k1', { IBEX_MASTER_KEY: k1 });
    const c1 = await create(admin, { provider: 'openai', name: 'one', secret: secrets[0] });
    const c2 = await create(admin, { provider: 'openai', name: 'two', secret: secrets[1], scope: 'tenant' });
    await validates(admin, c1, secrets[0], 'k1: c1');
    await p.stop({ graceMs: 10000 });

    // 2. k2 current, k1 previous: old rows read, new ones are written under k2
    ({ p, admin } = await start('cred-rot-k2k1', { IBEX_MASTER_KEY: k2, IBEX_MASTER_KEY_PREVIOUS: k1 }));
    assert.deepEqual(await statusCredentials(p.target), { enabled: true, key_id: keyId(Buffer.from(k2, 'base64')), previous_key_ids: [keyId(Buffer.from(k1, 'hex'))] }, 'GET /status: the key ids');
    assert.ok(!p.stderrText().includes(k1) && !p.stderrText().includes(k2), 'a master key is in the log');
    await validates(admin, c1, secrets[0], 'k2+k1: c1 under k1');
    const c3 = await create(admin, { provider: 'openai', name: 'three', secret: secrets[2] });
    await validates(admin, c3, secrets[2], 'k2+k1: c3 under k2');

    // 3. rotate-key, with the running instance's keys; again: nothing left to do
    const cli = (env) => runCli(['credentials', 'rotate-key'], { storeUrl, env });
    const cliEnv = { IBEX_MASTER_KEY: k2, IBEX_MASTER_KEY_PREVIOUS: k1, IBEX_NEW_MASTER_KEY: k2 };
    let r = await cli(cliEnv);
    const out = () => `${r.cmd}: exit ${r.code}\nstdout: ${truncate(r.stdout, 600)}\nstderr: ${truncate(r.stderr, 600)}`;
    assert.equal(r.code, 0, out());
    assert.match(r.stdout, /rotated 2; under the new key now 3; changed meanwhile 0; not decrypted 0; under keys not given 0/, out());
    for (const s of [...secrets, k1, k2]) assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), `rotate-key printed a secret or a key: ${out()}`);
    r = await cli(cliEnv);
    assert.equal(r.code, 0, out());
    assert.match(r.stdout, /rotated 0; under the new key now 3/, out());
    // reads keep working on the running instance meanwhile
    await validates(admin, c2, secrets[1], 'after rotation, same instance: c2');
    await p.stop({ graceMs: 10000 });

    // 4. the previous key dropped: every credential still opens
    ({ p, admin } = await start('cred-rot-k2', { IBEX_MASTER_KEY: k2 }));
    await validates(admin, c1, secrets[0], 'k2 only: c1');
    await validates(admin, c2, secrets[1], 'k2 only: c2');
    await validates(admin, c3, secrets[2], 'k2 only: c3');
    assert.equal((await admin.ok('GET', `/v1/credentials/${c1.id}`)).secret_last4, secrets[0].slice(-4));
    await p.stop({ graceMs: 10000 });

    // 5. an instance still on k1 alone reads metadata but cannot decrypt: it says which key
    ({ p, admin } = await start('cred-rot-old', { IBEX_MASTER_KEY: k1 }));
    assert.equal((await admin.ok('GET', `/v1/credentials/${c1.id}`)).id, c1.id);
    const e = assertErrorResponse(await admin.call('POST', `/v1/credentials/${c1.id}/validate`), { status: 500, code: 'CREDENTIAL_UNREADABLE', what: 'validate under a key this instance lacks' });
    assert.match(e.message, /master_key_previous_file/, e.message);
    await p.stop({ graceMs: 10000 });

    // the new key from a file: refused while others may read it, then used
    const keyFile = path.join(ctx.h.logDir, `cred-rotate-key-${process.pid}`);
    fs.writeFileSync(keyFile, `${hexKey()}\n`, { mode: 0o644 });
    fs.chmodSync(keyFile, 0o644);
    r = await runCli(['credentials', 'rotate-key', '--new-key-file', keyFile], { storeUrl, env: { IBEX_MASTER_KEY: k2 } });
    assert.equal(r.code, 1, out());
    assert.match(r.stderr, /chmod 600/, out());
    fs.chmodSync(keyFile, 0o600);
    r = await runCli(['credentials', 'rotate-key', '--new-key-file', keyFile], { storeUrl, env: { IBEX_MASTER_KEY: k2 } });
    assert.equal(r.code, 0, out());
    assert.match(r.stdout, /rotated 3; under the new key now 3/, out());
    fs.rmSync(keyFile, { force: true });
    // without the current key the rows cannot be read: refused, nothing changed
    r = await cli({ IBEX_MASTER_KEY: k1, IBEX_NEW_MASTER_KEY: k2 });
    assert.equal(r.code, 1, out());
    assert.match(r.stderr, /under keys .* which were not given/, out());
}

async function credentialsDisabled(ctx) {
    const ibex = await ctx.ibex({ upstream: null, env: { IBEX_MASTER_KEY: null } });
    const admin = dev(ctx, ibex.target);
    const id = randomUuid();
    const routes = [
        ['POST', '/v1/credentials', { provider: 'openai', name: 'n', secret: newSecret('dis') }],
        ['GET', '/v1/credentials'],
        ['GET', `/v1/credentials/${id}`],
        ['PUT', `/v1/credentials/${id}`, { name: 'x' }],
        ['DELETE', `/v1/credentials/${id}`],
        ['POST', `/v1/credentials/${id}/default`],
        ['POST', `/v1/credentials/${id}/validate`],
    ];
    for (const [method, p, body] of routes) {
        const e = assertErrorResponse(await admin.call(method, p, body), { status: 503, code: 'CREDENTIALS_DISABLED', what: `${method} ${p}` });
        assert.match(e.message, /IBEX_MASTER_KEY/, e.message);
    }
    assert.deepEqual(await statusCredentials(ibex.target), { enabled: false, key_id: null, previous_key_ids: [] }, 'GET /status');
    // the rest works
    assert.equal((await admin.chat()).status, 200, 'chat without a master key');
    assert.equal((await admin.call('GET', '/v1/tasks')).status, 200, 'tasks without a master key');
    assert.match(ibex.stderrText(), /provider credentials disabled/, 'no start-up line about it');

    // a key file others may read stops the start, with the fix in the message
    const keyFile = path.join(ctx.h.logDir, `cred-open-key-${process.pid}`);
    fs.writeFileSync(keyFile, `${E2E_MASTER_KEY}\n`);
    fs.chmodSync(keyFile, 0o644);
    const storeUrl = `sqlite://${path.join(ctx.h.logDir, `cred-open-key-${process.pid}.db`)}`;
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--master-key-file', keyFile], { storeUrl, timeoutMs: 15000 });
    fs.rmSync(keyFile, { force: true });
    assert.equal(r.code, 2, `${r.cmd}: exit ${r.code} ${r.signal ?? ''}\n${truncate(r.stderr, 600)}`);
    assert.match(r.stderr, /master_key_file.*chmod 600/, r.stderr);
    assert.ok(!r.stderr.includes(E2E_MASTER_KEY), 'the key was printed');
}

// Which key reached the provider for each chat: the caller's own credential, else the tenant's
// default, else the provider's configured key; a change is seen within the worker's 2 s cache.
async function credentialsUse(ctx) {
    const ibex = await ctx.ibex({ name: 'cred-use' });
    const admin = dev(ctx, ibex.target);
    const A = await freshTenant(admin, 'cred-use-a');
    const B = await freshTenant(admin, 'cred-use-b');
    const userKey = async (label, scopes) => A.admin.as((await A.admin.createKey({ name: uniqueName(label), scopes })).key);
    const u1 = await userKey('u1', ['chat']);
    const u2 = await userKey('u2', ['chat']);
    const credAdmin = await userKey('ca', ['credentials:admin']);
    const CACHE_MS = 2100; // the worker keeps a choice 2 s (docs/credentials.md)
    // The Authorization fakellm received for a chat carrying marker, and the trace's attempt.
    const keyUsed = async (who, what) => {
        const marker = `cred-use-${crypto.randomBytes(6).toString('hex')}`;
        const res = await who.call('POST', '/v1/chat/completions', { model: 'gpt-e2e', messages: [{ role: 'user', content: marker }] });
        assert.equal(res.status, 200, `${what}: ${res.describe()}`);
        assertNoSecret(res, secrets, what);
        const log = (await ctx.fakellm.requests()).filter((r) => JSON.stringify(r.body ?? '').includes(marker));
        assert.equal(log.length, 1, `${what}: fakellm got ${log.length} requests`);
        const h = Object.fromEntries(Object.entries(log[0].headers).map(([k, v]) => [k.toLowerCase(), v]));
        return h.authorization;
    };
    const secrets = [newSecret('use-own'), newSecret('use-team'), newSecret('use-b')];
    const system = `Bearer ${ctx.providerKey || 'e2e-provider-key'}`;

    assert.equal(await keyUsed(u1, 'no credential'), system, 'without credentials the provider key is used');
    const own = await create(u1, { provider: 'openai', name: 'mine', secret: secrets[0] });
    await new Promise((r) => setTimeout(r, CACHE_MS));
    assert.equal(await keyUsed(u1, 'own credential'), `Bearer ${secrets[0]}`, "u1's own credential is not used");
    assert.equal(await keyUsed(u2, "u2 without one"), system, "u2 got someone else's credential");
    const team = await create(credAdmin, { provider: 'openai', name: 'team', secret: secrets[1], scope: 'tenant' });
    await credAdmin.ok('POST', `/v1/credentials/${team.id}/default`);
    await create(B.admin, { provider: 'openai', name: 'b team', secret: secrets[2], scope: 'tenant' });
    await new Promise((r) => setTimeout(r, CACHE_MS));
    assert.equal(await keyUsed(u2, 'tenant default'), `Bearer ${secrets[1]}`, "the tenant default is not used for u2");
    assert.equal(await keyUsed(u1, 'own over default'), `Bearer ${secrets[0]}`, "u1's own credential lost to the tenant default");
    assert.equal(await keyUsed(B.admin, 'other tenant'), system, "tenant B used a credential that is not its default");
    await u1.ok('PUT', `/v1/credentials/${own.id}`, { state: 'inactive' });
    await new Promise((r) => setTimeout(r, CACHE_MS));
    assert.equal(await keyUsed(u1, 'own inactive'), `Bearer ${secrets[1]}`, "u1's inactive credential is still used");
    await credAdmin.ok('DELETE', `/v1/credentials/${team.id}`);
    await new Promise((r) => setTimeout(r, CACHE_MS));
    assert.equal(await keyUsed(u1, 'all gone'), system, 'a deleted default is still used');
    const lines = fs.readFileSync(ibex.stderrPath, 'utf8');
    for (const sec of secrets) assert.ok(!lines.includes(sec), 'a secret reached the log');
}

export default [
    {
        id: 'credentials.crud',
        title: 'credentials: create (own, tenant-wide), get, list (filters, pages), update, default (one per provider), delete (soft); validation 400/422/405; Idempotency-Key; audit; never the secret, only secret_last4',
        needs: ['raw', 'admin', 'fakellm'],
        timeoutMs: 40000,
        run: credentialsCrud,
    },
    {
        id: 'credentials.at-rest',
        title: 'credentials: no plaintext secret in the SQLite files (db, wal) nor in the log, while running and after the stop',
        needs: ['raw', 'process', 'fakellm'],
        shared: false,
        timeoutMs: 40000,
        run: credentialsAtRest,
    },
    {
        id: 'credentials.isolation',
        title: "credentials: two tenants and two users of one: another's credential answers like an unknown id on every route, lists disjoint, scopes chat / credentials:admin",
        needs: ['raw', 'admin', 'fakellm'],
        timeoutMs: 60000,
        run: credentialsIsolation,
    },
    {
        id: 'credentials.validate',
        title: 'credentials: validate sends the decrypted secret to the provider (openai, anthropic, gemini shapes; fakellm sees it), a closed port -> valid false, inactive 409, audited',
        needs: ['raw', 'process', 'fakellm'],
        shared: false,
        timeoutMs: 60000,
        run: credentialsValidate,
    },
    {
        id: 'credentials.use',
        title: "credentials: a chat uses the caller's own credential, else the tenant default, else the provider key; another tenant's never; inactive or deleted ones stop within the 2 s cache",
        needs: ['raw', 'process', 'fakellm'],
        shared: false,
        timeoutMs: 60000,
        run: credentialsUse,
    },
    {
        id: 'credentials.rotate',
        title: 'credentials: rolling key rotation (previous key readable, rotate-key twice, new key alone; old key alone: CREDENTIAL_UNREADABLE); --new-key-file permissions',
        needs: ['raw', 'process', 'fakellm'],
        shared: false,
        timeoutMs: 90000,
        run: credentialsRotate,
    },
    {
        id: 'credentials.disabled',
        title: 'credentials: without a master key every route is 503 CREDENTIALS_DISABLED and the rest works; a world-readable key file stops the start',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 40000,
        run: credentialsDisabled,
    },
];
