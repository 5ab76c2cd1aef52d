// The identity side of ibex for the checks (docs/identity.md): API key and scope constants, and a
// client of the administration API (tenants, agents, keys, audit) over raw sockets, so a check
// sees every byte of an answer (a secret must never be among them).
//
// IbexAdmin calls answer Response objects (lib/http.mjs); the *Ok helpers assert the documented
// success status and return the parsed body, naming the request in the failure message.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { request } from './http.mjs';
import { cleanEnv, ibexBin } from './proc.mjs';
import { truncate } from './util.mjs';

export const API_KEY_RE = /^ibex_sk_[A-Za-z0-9]{40}$/;
export const SCOPES = ['chat', 'sessions:read', 'sessions:write', 'traces:read', 'keys:admin', 'credentials:admin', 'admin', 'approvals:decide'];
export const AUDIT_ACTIONS = [
    'auth.failed',
    'access.denied',
    'tenant.created',
    'tenant.revoked',
    'agent.created',
    'agent.updated',
    'agent.revoked',
    'key.created',
    'key.revoked',
    'approval.approved',
    'approval.rejected',
    'credential.created',
    'credential.updated',
    'credential.deleted',
    'credential.defaulted',
    'credential.validated',
];
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

// A well-formed key nobody issued: ibex_sk_ + 40 base62 characters.
export function randomApiKey() {
    let s = '';
    while (s.length < 40) {
        for (const b of crypto.randomBytes(48)) if (b < 248 && s.length < 40) s += BASE62[b % 62]; // 248 = 4 * 62: no bias
    }
    return `ibex_sk_${s}`;
}

export const randomUuid = () => crypto.randomUUID();
export const bearer = (key) => ({ Authorization: `Bearer ${key}` });
export const sha256hex = (s) => crypto.createHash('sha256').update(s).digest('hex');
export const nowSec = () => Math.floor(Date.now() / 1000);

// A name no other run or check uses.
export const uniqueName = (label) => `e2e-${label}-${crypto.randomBytes(5).toString('hex')}`;

// Everything a response put on the wire (status line aside): header values and body.
export function wireText(res) {
    return `${Object.entries(res.headers)
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n')}\n\n${res.body.toString('latin1')}`;
}

// Asserts none of secrets (strings) occurs in res (headers or body).
export function assertNoSecret(res, secrets, what) {
    const text = wireText(res);
    for (const s of secrets) if (s) assert.ok(!text.includes(s), `${what}: the answer carries a secret (${s.slice(0, 12)}...): ${truncate(text, 400)}`);
}

export class IbexAdmin {
    // target: {host, port, prefix}; key: the bearer token sent (null: no Authorization header)
    constructor(target, key, { headers = {}, timeoutMs = 10000 } = {}) {
        this.target = target;
        this.key = key;
        this.headers = headers;
        this.timeoutMs = timeoutMs;
    }

    // The same gateway with another token (null: none).
    as(key, headers = this.headers) {
        return new IbexAdmin(this.target, key, { headers, timeoutMs: this.timeoutMs });
    }

    // One request. body: an object (sent as JSON), a string or a Buffer (sent as is), or undefined.
    call(method, path, body, { headers = {} } = {}) {
        const h = { ...this.headers, ...(this.key !== null ? bearer(this.key) : {}), ...headers };
        return request(this.target, { method, path, headers: h, body, timeoutMs: this.timeoutMs });
    }

    // Asserts the status and a JSON object body; returns the body.
    async ok(method, path, body, status = 200, opts = {}) {
        const res = await this.call(method, path, body, opts);
        assert.equal(res.status, status, `${method} ${path}: expected ${status}, got ${res.describe()}`);
        const j = res.json();
        assert.ok(j && typeof j === 'object' && !Array.isArray(j), `${method} ${path}: not a JSON object: ${res.describe()}`);
        return j;
    }

    // GET of a list route: asserts {"object":"list","data":[...]}; returns data.
    async list(path) {
        const j = await this.ok('GET', path);
        assert.equal(j.object, 'list', `GET ${path}: object (${truncate(JSON.stringify(j), 300)})`);
        assert.ok(Array.isArray(j.data), `GET ${path}: data is not an array (${truncate(JSON.stringify(j), 300)})`);
        return j.data;
    }

    createTenant(name, metadata) {
        return this.ok('POST', '/v1/tenants', metadata === undefined ? { name } : { name, metadata }, 201);
    }

    createAgent(body) {
        return this.ok('POST', '/v1/agents', body, 201);
    }

    createKey(body) {
        return this.ok('POST', '/v1/keys', body, 201);
    }

    revoke(kind, id) {
        return this.ok('POST', `/v1/${kind}/${id}/revoke`, undefined, 200);
    }

    audit(limit = 1000) {
        return this.list(`/v1/audit?limit=${limit}`);
    }

    // POST /v1/chat/completions with the built-in mock model (or body), X-IBEX-Agent-ID when agent.
    chat({ agent, body, headers = {} } = {}) {
        const h = { ...headers };
        if (agent !== undefined) h['X-IBEX-Agent-ID'] = agent;
        return this.call('POST', '/v1/chat/completions', body || { model: 'mock', messages: [{ role: 'user', content: 'hi' }] }, { headers: h });
    }

    // The caller's own tenant: the entry of GET /v1/tenants whose parent is not in the list
    // (the list is the caller's tenant and the tenants it created).
    async ownTenant() {
        const data = await this.list('/v1/tenants');
        const ids = new Set(data.map((t) => t.id));
        const own = data.filter((t) => !ids.has(t.parent_id));
        assert.equal(own.length, 1, `GET /v1/tenants: expected the caller's tenant plus its children, got ${truncate(JSON.stringify(data), 600)}`);
        return own[0];
    }
}

// A tenant of its own for one check, created by the admin key of admin (a child of admin's
// tenant), named uniquely. Returns {tenant, key, admin} where admin acts with the new tenant's
// admin key.
export async function freshTenant(admin, label) {
    const tenant = await admin.createTenant(uniqueName(label));
    const key = adminKeyOf(tenant);
    return { tenant, key, admin: admin.as(key) };
}

// The secret of the admin_key in a POST /v1/tenants answer: the docs call it "the new tenant's
// first key", so it may be the secret itself or a key object carrying it in `key`.
export function adminKeyOf(tenant) {
    const k = tenant.admin_key;
    const secret = typeof k === 'string' ? k : k?.key;
    assert.ok(typeof secret === 'string' && API_KEY_RE.test(secret), `POST /v1/tenants: admin_key ${JSON.stringify(k)} is neither an ibex_sk_ key nor a key object carrying one`);
    if (typeof k === 'object') {
        assert.equal(k.object, 'api_key', `POST /v1/tenants: admin_key object (${JSON.stringify({ ...k, key: '<secret>' })})`);
        assert.equal(k.tenant_id, tenant.id, 'POST /v1/tenants: admin_key.tenant_id is not the new tenant');
        assert.deepEqual(k.scopes, ['admin'], 'POST /v1/tenants: admin_key.scopes');
    }
    return secret;
}

// Polls GET /v1/audit until pred(events) holds (audit records go through the store writer, which
// batches); returns the last list.
export async function auditUntil(admin, pred, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const events = await admin.audit();
        if (pred(events) || Date.now() >= deadline) return events;
        await new Promise((r) => setTimeout(r, 100));
    }
}

// The routes of docs/identity.md's scope table: [method, path, scope needed, body(callerScope)].
// {id} stands for an id that does not exist (a random UUID), so an allowed call answers 404 and
// changes nothing; the collection POSTs carry valid bodies (an allowed call creates something
// harmless in the caller's own tenant).
export const SCOPED_ROUTES = [
    ['POST', '/v1/chat/completions', 'chat', () => ({ model: 'mock', messages: [{ role: 'user', content: 'scope check' }] })],
    ['GET', '/v1/models', 'chat'],
    ['GET', '/v1/agents', 'keys:admin'],
    ['POST', '/v1/agents', 'keys:admin', () => ({ name: uniqueName('scope-agent') })],
    ['GET', '/v1/agents/{id}', 'keys:admin'],
    ['PATCH', '/v1/agents/{id}', 'keys:admin', () => ({ name: 'renamed' })],
    ['POST', '/v1/agents/{id}/revoke', 'keys:admin'],
    ['GET', '/v1/keys', 'keys:admin'],
    ['POST', '/v1/keys', 'keys:admin', (scope) => ({ name: uniqueName('scope-key'), scopes: [scope] })],
    ['GET', '/v1/keys/{id}', 'keys:admin'],
    ['POST', '/v1/keys/{id}/revoke', 'keys:admin'],
    ['GET', '/v1/tenants', 'admin'],
    ['POST', '/v1/tenants', 'admin', () => ({ name: uniqueName('scope-tenant') })],
    ['GET', '/v1/tenants/{id}', 'admin'],
    ['POST', '/v1/tenants/{id}/revoke', 'admin'],
    ['GET', '/v1/audit', 'admin'],
];

// True when a credential holding scopes may use something that needs `needed`.
export const scopeAllows = (scopes, needed) => scopes.includes('admin') || scopes.includes(needed);

// An error answer reduced to what must not differ between "does not exist" and "exists in
// another tenant": status and body, without request_id and with the asked-for id masked.
export function sameAnswerForm(res, id) {
    let body;
    try {
        body = JSON.parse(res.text());
        if (body?.error && typeof body.error === 'object') delete body.error.request_id;
        body = JSON.stringify(body);
    } catch {
        body = res.text();
    }
    return { status: res.status, body: id ? body.split(id).join('<id>') : body };
}

// Runs `ibex <args...> --store-url <storeUrl>` (the CLI works straight on the store) with a clean
// environment plus env. Resolves {code, stdout, stderr, cmd}; never rejects for a non-zero exit.
export function runCli(args, { storeUrl, env = {}, timeoutMs = 20000, bin = ibexBin() } = {}) {
    const argv = storeUrl ? [...args, '--store-url', storeUrl] : args;
    const cmd = [bin, ...argv].map((a) => (/[\s,*']/.test(a) ? `'${a}'` : a)).join(' ');
    return new Promise((resolve) => {
        execFile(bin, argv, { env: cleanEnv(env), timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
            const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
            resolve({ code, signal: err?.signal ?? null, stdout: String(stdout), stderr: String(stderr), cmd });
        });
    });
}

export const UUID_G = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
export const API_KEY_G = /ibex_sk_[A-Za-z0-9]{40}/g;
