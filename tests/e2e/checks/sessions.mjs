// Sessions (docs/sessions.md): create, read, change state and metadata, list with pagination and
// filters; the state machine (every change outside pending -> active -> completed | failed |
// cancelled and pending -> cancelled is 422 and changes nothing); validation; tenant isolation
// (another tenant's session answers exactly like an id that does not exist) and the
// sessions:read / sessions:write scopes. Every check works in tenants of its own. The
// transitions, validation, list and isolation scenarios are functions of a gateway
// (lib/stores.mjs): here on the shared ibex (SQLite), in state.* on Postgres, Postgres with Redis
// and SQLite with Redis.
import assert from 'node:assert/strict';
import { assertErrorResponse } from '../lib/expect.mjs';
import { freshTenant, nowSec, randomUuid, sameAnswerForm, uniqueName, wireText } from '../lib/ibexadmin.mjs';
import { gateway } from '../lib/stores.mjs';
import { sleep, truncate } from '../lib/util.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

export const STATES = ['pending', 'active', 'completed', 'failed', 'cancelled'];
// The documented changes of state; a PUT naming the current state is no change.
const ALLOWED = { pending: ['active', 'cancelled'], active: ['completed', 'failed', 'cancelled'], completed: [], failed: [], cancelled: [] };
// How to reach each state from pending.
const PATH_TO = { pending: [], active: ['active'], completed: ['active', 'completed'], failed: ['active', 'failed'], cancelled: ['cancelled'] };

// Pause between creations whose order a check asserts (lists are newest first; two creations
// within one millisecond have no defined order).
const TICK_MS = 5;
// updated_at is unix seconds: a change is visible in it only a second later.
const SECOND_MS = 1100;

function assertRecentSec(v, what) {
    assert.ok(Number.isInteger(v), `${what}: ${JSON.stringify(v)} is not an integer (unix seconds)`);
    assert.ok(Math.abs(v - nowSec()) < 120, `${what}: ${v} is not now in unix seconds (now ${nowSec()})`);
}

export function assertSession(s, { tenantId, agentId, agentRole, state, metadata, what = 'session' }) {
    const show = truncate(JSON.stringify(s), 500);
    assert.ok(isObject(s), `${what}: not an object (${show})`);
    assert.match(s.session_id ?? '', UUID, `${what}: session_id (${show})`);
    assert.equal(s.object, 'session', `${what}: object (${show})`);
    if (tenantId !== undefined) assert.equal(s.tenant_id, tenantId, `${what}: tenant_id (${show})`);
    assert.ok('agent_id' in s, `${what}: no agent_id (${show})`);
    if (agentId !== undefined) assert.equal(s.agent_id, agentId, `${what}: agent_id (${show})`);
    assert.equal(typeof s.agent_role, 'string', `${what}: agent_role (${show})`);
    if (agentRole !== undefined) assert.equal(s.agent_role, agentRole, `${what}: agent_role (${show})`);
    assert.ok(STATES.includes(s.state), `${what}: state ${JSON.stringify(s.state)} is not a documented state (${show})`);
    if (state !== undefined) assert.equal(s.state, state, `${what}: state (${show})`);
    assert.ok(isObject(s.metadata), `${what}: metadata is not an object (${show})`);
    if (metadata !== undefined) assert.deepEqual(s.metadata, metadata, `${what}: metadata (${show})`);
    assertRecentSec(s.created_at, `${what}: created_at`);
    assertRecentSec(s.updated_at, `${what}: updated_at`);
    assert.ok(s.updated_at >= s.created_at, `${what}: updated_at ${s.updated_at} before created_at ${s.created_at}`);
}

// Asserts a 400 VALIDATION_ERROR whose field_errors name field.
function assertFieldError(res, field, what) {
    const e = assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
    const fe = e.field_errors;
    assert.ok(Array.isArray(fe) && fe.length > 0, `${what}: field_errors missing or empty (${JSON.stringify(e)})`);
    for (const f of fe) assert.ok(typeof f.field === 'string' && typeof f.message === 'string', `${what}: field_errors entry ${JSON.stringify(f)}`);
    assert.ok(fe.some((f) => f.field === field || f.field.startsWith(`${field}.`) || f.field.startsWith(`${field}[`)), `${what}: no field_errors entry for "${field}" (${JSON.stringify(fe)})`);
    return e;
}

// POST /v1/sessions, asserting 201; returns the session.
export async function createSession(admin, body = { agent_role: 'worker' }) {
    const res = await admin.call('POST', '/v1/sessions', body);
    assert.equal(res.status, 201, `POST /v1/sessions ${truncate(JSON.stringify(body), 200)}: ${res.describe()}`);
    return res.json();
}

export async function putSession(admin, id, body, what = `PUT /v1/sessions/{id} ${JSON.stringify(body)}`) {
    const res = await admin.call('PUT', `/v1/sessions/${id}`, body);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    return res.json();
}

// GET /v1/sessions?query, asserting the list shape; returns the body.
async function listSessions(admin, query = '', what = `GET /v1/sessions${query ? `?${query}` : ''}`) {
    const res = await admin.call('GET', `/v1/sessions${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    const j = res.json();
    const show = truncate(JSON.stringify(j), 500);
    assert.ok(isObject(j) && Array.isArray(j.sessions), `${what}: no sessions array (${show})`);
    for (const k of ['total', 'page', 'page_size']) assert.ok(Number.isInteger(j[k]), `${what}: ${k} is not an integer (${show})`);
    return j;
}

const sids = (list) => list.map((s) => s.session_id);

// Compares the answer to a foreign id with the answer to an unknown one; returns problems.
function differs(what, res, foreignId, rnd, rndId) {
    const got = sameAnswerForm(res, foreignId);
    const want = sameAnswerForm(rnd, rndId);
    return JSON.stringify(got) === JSON.stringify(want) ? [] : [`${what}: answered ${got.status} ${got.body}, an unknown id ${want.status} ${want.body}`];
}

// The lifecycle of two sessions in a tenant of their own (admin acts with its admin key):
// create (201, pending, metadata echoed), get, PUT active, PUT completed, list; updated_at moves.
// Shared by sessions.lifecycle and the store variants of checkpoints.*.
export async function sessionLifecycle(admin, tenant) {
    const agent = await admin.createAgent({ name: uniqueName('sess-agent') });
    const metadata = { ticket: 'E2E-1', n: 3, nested: { ok: true, list: [1, 'two', null] }, text: 'ünïcödé "quoted" \\ line\nbreak' };
    const spec = { agent_role: 'planner', agent_id: agent.id, metadata };
    const res = await admin.call('POST', '/v1/sessions', spec);
    assert.equal(res.status, 201, `POST /v1/sessions: ${res.describe()}`);
    assert.match(res.headers['content-type'] || '', /^application\/json/, 'POST /v1/sessions: content-type');
    const s0 = res.json();
    assertSession(s0, { tenantId: tenant.id, agentId: agent.id, agentRole: 'planner', state: 'pending', metadata, what: 'POST /v1/sessions' });

    const bare = await createSession(admin, { agent_role: 'reviewer' });
    assertSession(bare, { tenantId: tenant.id, agentId: null, agentRole: 'reviewer', state: 'pending', what: 'POST /v1/sessions without agent_id and metadata' });
    assert.deepEqual(bare.metadata, {}, 'a session created without metadata: metadata');
    assert.notEqual(bare.session_id, s0.session_id, 'two sessions with the same id');

    assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s0.session_id}`), s0, 'GET /v1/sessions/{id} differs from the creation answer');

    await sleep(SECOND_MS);
    const s1 = await putSession(admin, s0.session_id, { status: 'active' });
    assertSession(s1, { tenantId: tenant.id, agentId: agent.id, agentRole: 'planner', state: 'active', metadata, what: 'PUT status active' });
    assert.equal(s1.session_id, s0.session_id, 'PUT: session_id changed');
    assert.equal(s1.created_at, s0.created_at, 'PUT: created_at changed');
    assert.ok(s1.updated_at > s0.updated_at, `PUT active more than a second after creation: updated_at ${s1.updated_at} did not move from ${s0.updated_at}`);
    assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s0.session_id}`), s1, 'GET after PUT active');

    await sleep(SECOND_MS);
    const s2 = await putSession(admin, s0.session_id, { status: 'completed' });
    assertSession(s2, { tenantId: tenant.id, agentId: agent.id, agentRole: 'planner', state: 'completed', metadata, what: 'PUT status completed' });
    assert.equal(s2.created_at, s0.created_at, 'PUT completed: created_at changed');
    assert.ok(s2.updated_at > s1.updated_at, `PUT completed a second later: updated_at ${s2.updated_at} did not move from ${s1.updated_at}`);
    assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s0.session_id}`), s2, 'GET after PUT completed');

    const list = await listSessions(admin);
    assert.equal(list.total, 2, `GET /v1/sessions: total (${truncate(JSON.stringify(list), 400)})`);
    assert.equal(list.page, 1, 'GET /v1/sessions: default page');
    assert.equal(list.page_size, 20, 'GET /v1/sessions: default page_size');
    assert.deepEqual(sids(list.sessions), [bare.session_id, s0.session_id], 'GET /v1/sessions: the two sessions, newest first');
    assert.deepEqual(list.sessions[1], s2, 'GET /v1/sessions: the entry differs from GET /v1/sessions/{id}');

    assertErrorResponse(await admin.call('GET', `/v1/sessions/${randomUuid()}`), { status: 404, code: 'SESSION_NOT_FOUND', what: 'GET of an unknown session' });
    assertErrorResponse(await admin.call('PUT', `/v1/sessions/${randomUuid()}`, { status: 'active' }), { status: 404, code: 'SESSION_NOT_FOUND', what: 'PUT of an unknown session' });
}

// On gw: every change of state outside the documented ones is 422 INVALID_STATE_TRANSITION naming
// the current state and changes nothing; unknown states 400; metadata-only PUTs keep the state.
export async function sessionsTransitions(ctx, gw = gateway(ctx)) {
    const { admin } = await freshTenant(gw.root, 'sess-trans');
    const problems = [];
    const matrix = [];
    // one session per state, reached by documented changes
    const at = {};
    for (const state of STATES) {
        const s = await createSession(admin, { agent_role: `in-${state}`, metadata: { state } });
        let cur = s;
        for (const next of PATH_TO[state]) cur = await putSession(admin, s.session_id, { status: next }, `${cur.state} -> ${next}`);
        assertSession(cur, { state, what: `session driven to ${state}` });
        at[state] = cur;
    }
    for (const from of STATES) {
        for (const to of STATES) {
            if (to === from || ALLOWED[from].includes(to)) continue;
            const s = at[from];
            for (const body of [{ status: to }, { status: to, metadata: { hijacked: true } }]) {
                const what = `${from} -> ${to}${body.metadata ? ' (with metadata)' : ''}`;
                const res = await admin.call('PUT', `/v1/sessions/${s.session_id}`, body);
                matrix.push(`${what}: ${res.status}`);
                try {
                    const e = assertErrorResponse(res, { status: 422, code: 'INVALID_STATE_TRANSITION', what });
                    assert.ok(e.message.includes(from), `${what}: the message does not name the current state "${from}": ${JSON.stringify(e.message)}`);
                } catch (err) {
                    problems.push(err.message.split('\n')[0]);
                }
                const after = await admin.ok('GET', `/v1/sessions/${s.session_id}`);
                if (JSON.stringify(after) !== JSON.stringify(s)) problems.push(`${what}: the session changed although the PUT was refused: ${truncate(JSON.stringify(after), 300)}`);
            }
        }
    }
    // unknown states: a bad body, not a transition
    for (const bad of ['bogus', 'ACTIVE', '', 'done']) {
        const s = at.pending;
        const what = `PUT status ${JSON.stringify(bad)}`;
        try {
            assertFieldError(await admin.call('PUT', `/v1/sessions/${s.session_id}`, { status: bad }), 'status', what);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
        const after = await admin.ok('GET', `/v1/sessions/${s.session_id}`);
        if (JSON.stringify(after) !== JSON.stringify(s)) problems.push(`${what}: the session changed: ${truncate(JSON.stringify(after), 300)}`);
    }
    gw.note(`refused transitions:\n${matrix.join('\n')}`);
    assert.deepEqual(problems, [], `${problems.length} state machine problem(s):\n${problems.join('\n')}`);

    // the allowed ones not taken on the way: pending -> cancelled and active -> cancelled
    for (const from of ['pending', 'active']) {
        const s = await createSession(admin, { agent_role: `cancel-from-${from}` });
        for (const next of PATH_TO[from]) await putSession(admin, s.session_id, { status: next });
        const c = await putSession(admin, s.session_id, { status: 'cancelled' }, `${from} -> cancelled`);
        assertSession(c, { state: 'cancelled', what: `${from} -> cancelled` });
    }

    // metadata only: the state stays
    for (const state of ['pending', 'active']) {
        const s = at[state];
        const md = { step: `meta-only-${state}`, n: 2 };
        const u = await putSession(admin, s.session_id, { metadata: md }, `PUT metadata only on a ${state} session`);
        assertSession(u, { state, metadata: md, agentRole: s.agent_role, what: `PUT metadata only on a ${state} session` });
        assert.equal(u.created_at, s.created_at, 'PUT metadata: created_at changed');
        assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s.session_id}`), u, 'GET after PUT metadata');
    }
    // the current state with new metadata: only the metadata changes
    for (const state of ['active', 'completed']) {
        const s = await admin.ok('GET', `/v1/sessions/${at[state].session_id}`);
        const md = { same_state: state };
        const u = await putSession(admin, s.session_id, { status: state, metadata: md }, `PUT status ${state} (current) with metadata`);
        assertSession(u, { state, metadata: md, what: `PUT status ${state} (current) with metadata` });
    }
}

// On gw: refused bodies, ids and pages (400, the same for a foreign agent as an unknown one)
// create and change nothing.
export async function sessionsValidation(ctx, gw = gateway(ctx)) {
    const root = gw.root;
    const { admin } = await freshTenant(root, 'sess-valid');
    const other = await freshTenant(root, 'sess-valid-other');
    const foreignAgent = await other.admin.createAgent({ name: uniqueName('foreign-agent') });
    const s = await createSession(admin, { agent_role: 'valid', metadata: { keep: 1 } });

    const cases = [
        ['POST', '/v1/sessions', {}, 'agent_role', 'no agent_role'],
        ['POST', '/v1/sessions', { metadata: { a: 1 } }, 'agent_role', 'metadata without agent_role'],
        ['POST', '/v1/sessions', { agent_role: 5 }, 'agent_role', 'agent_role a number'],
        ['POST', '/v1/sessions', { agent_role: null }, 'agent_role', 'agent_role null'],
        ['POST', '/v1/sessions', { agent_role: ['x'] }, 'agent_role', 'agent_role an array'],
        ['POST', '/v1/sessions', { agent_role: 'x', metadata: 'str' }, 'metadata', 'metadata a string'],
        ['POST', '/v1/sessions', { agent_role: 'x', metadata: [1] }, 'metadata', 'metadata an array'],
        ['POST', '/v1/sessions', { agent_role: 'x', agent_id: 5 }, 'agent_id', 'agent_id a number'],
        ['POST', '/v1/sessions', { agent_role: 'x', agent_id: 'not-a-uuid' }, 'agent_id', 'agent_id malformed'],
        ['PUT', `/v1/sessions/${s.session_id}`, { status: 5 }, 'status', 'PUT status a number'],
        ['PUT', `/v1/sessions/${s.session_id}`, { status: ['active'] }, 'status', 'PUT status an array'],
        ['PUT', `/v1/sessions/${s.session_id}`, { metadata: 'x' }, 'metadata', 'PUT metadata a string'],
        ['PUT', `/v1/sessions/${s.session_id}`, { metadata: [1] }, 'metadata', 'PUT metadata an array'],
    ];
    const problems = [];
    for (const [method, p, body, field, what] of cases) {
        try {
            assertFieldError(await admin.call(method, p, body), field, `${what} (${method} ${p.replace(s.session_id, '{id}')})`);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    for (const [method, p] of [
        ['POST', '/v1/sessions'],
        ['PUT', `/v1/sessions/${s.session_id}`],
    ]) {
        for (const text of ['{"agent_role": "x", ', 'not json', '[1,2']) {
            const what = `${method} ${p.replace(s.session_id, '{id}')} with body ${JSON.stringify(text)}`;
            try {
                assertErrorResponse(await admin.call(method, p, text, { headers: { 'Content-Type': 'application/json' } }), { status: 400, code: 'INVALID_JSON', what });
            } catch (err) {
                problems.push(err.message.split('\n')[0]);
            }
        }
    }
    for (const [method, p] of [
        ['GET', '/v1/sessions/not-a-uuid'],
        ['PUT', '/v1/sessions/not-a-uuid'],
        ['GET', '/v1/sessions/12345'],
        ['GET', `/v1/sessions/${s.session_id}x`],
        ['PUT', '/v1/sessions/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'],
    ]) {
        const what = `malformed id: ${method} ${p}`;
        try {
            assertErrorResponse(await admin.call(method, p, method === 'PUT' ? { status: 'active' } : undefined), { status: 400, code: 'VALIDATION_ERROR', what });
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    for (const q of ['page=0', 'page=-1', 'page=abc', 'page=1.5', 'page=', 'page_size=0', 'page_size=101', 'page_size=-5', 'page_size=abc', 'page_size=1000', 'page=1&page_size=0']) {
        const what = `GET /v1/sessions?${q}`;
        try {
            assertErrorResponse(await admin.call('GET', `/v1/sessions?${q}`), { status: 400, code: 'VALIDATION_ERROR', what });
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    for (const q of ['page=1&page_size=1', 'page_size=100', 'page=1000']) {
        const res = await admin.call('GET', `/v1/sessions?${q}`);
        if (res.status !== 200) problems.push(`GET /v1/sessions?${q} (in range): ${res.describe()}`);
    }
    // an agent of another tenant is refused exactly like one that does not exist
    const rnd = randomUuid();
    const unknown = await admin.call('POST', '/v1/sessions', { agent_role: 'x', agent_id: rnd });
    const foreign = await admin.call('POST', '/v1/sessions', { agent_role: 'x', agent_id: foreignAgent.id });
    for (const [what, res] of [
        ['agent_id unknown', unknown],
        ['agent_id of another tenant', foreign],
    ]) {
        try {
            assertFieldError(res, 'agent_id', what);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    problems.push(...differs('agent_id of another tenant', foreign, foreignAgent.id, unknown, rnd));
    if (wireText(foreign).includes(foreignAgent.name)) problems.push("the refusal names the other tenant's agent");
    assert.deepEqual(problems, [], `${problems.length} validation problem(s):\n${problems.join('\n')}`);

    // nothing was created or changed by the refused requests
    const list = await listSessions(admin);
    assert.deepEqual(sids(list.sessions), [s.session_id], 'sessions after refused creations');
    assert.equal(list.total, 1, 'total after refused creations');
    assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s.session_id}`), s, 'the session after refused PUTs');
}

// On gw: the list newest first, pages of 2 cover it once, filters state= and agent_id=.
export async function sessionsList(ctx, gw = gateway(ctx)) {
    const { admin } = await freshTenant(gw.root, 'sess-list');
    const a1 = await admin.createAgent({ name: uniqueName('list-a1') });
    const a2 = await admin.createAgent({ name: uniqueName('list-a2') });
    const agentOf = [a1.id, a2.id, null, a1.id, null];
    const created = [];
    for (let i = 0; i < 5; i++) {
        if (i) await sleep(TICK_MS);
        const body = { agent_role: `role-${i}`, metadata: { i } };
        if (agentOf[i]) body.agent_id = agentOf[i];
        created.push(await createSession(admin, body));
    }
    const id = created.map((s) => s.session_id);
    // states after all were created (the order must stay by creation): 0 pending, 1 active,
    // 2 pending, 3 completed, 4 cancelled
    await putSession(admin, id[1], { status: 'active' });
    await putSession(admin, id[3], { status: 'active' });
    await putSession(admin, id[3], { status: 'completed' });
    await putSession(admin, id[4], { status: 'cancelled' });
    const newestFirst = [...id].reverse();

    const all = await listSessions(admin);
    assert.deepEqual(sids(all.sessions), newestFirst, 'GET /v1/sessions: the five, newest first');
    assert.deepEqual([all.total, all.page, all.page_size], [5, 1, 20], 'GET /v1/sessions: total, page, page_size');

    const seen = [];
    for (const page of [1, 2, 3]) {
        const j = await listSessions(admin, `page=${page}&page_size=2`);
        assert.deepEqual([j.total, j.page, j.page_size], [5, page, 2], `page ${page} of 2: total, page, page_size`);
        assert.equal(j.sessions.length, page < 3 ? 2 : 1, `page ${page} of 2: ${j.sessions.length} sessions`);
        seen.push(...sids(j.sessions));
    }
    assert.deepEqual(seen, newestFirst, 'pages 1..3 of size 2 do not cover the five sessions exactly once, newest first');
    const past = await listSessions(admin, 'page=4&page_size=2');
    assert.deepEqual([past.sessions.length, past.total, past.page], [0, 5, 4], 'page 4 of 2: empty, total 5');
    assert.deepEqual(sids((await listSessions(admin, 'page_size=1')).sessions), [id[4]], 'page_size=1');

    const filters = [
        ['state=pending', [id[2], id[0]]],
        ['state=active', [id[1]]],
        ['state=completed', [id[3]]],
        ['state=cancelled', [id[4]]],
        ['state=failed', []],
        [`agent_id=${a1.id}`, [id[3], id[0]]],
        [`agent_id=${a2.id}`, [id[1]]],
        [`agent_id=${randomUuid()}`, []],
        [`state=pending&agent_id=${a1.id}`, [id[0]]],
        [`state=active&agent_id=${a1.id}`, []],
        [`state=pending&page=2&page_size=1`, [id[0]]],
    ];
    const problems = [];
    for (const [q, want] of filters) {
        const j = await listSessions(admin, q);
        if (JSON.stringify(sids(j.sessions)) !== JSON.stringify(want)) problems.push(`?${q}: got ${JSON.stringify(sids(j.sessions))}, expected ${JSON.stringify(want)}`);
        const total = q.includes('page=2') ? 2 : want.length;
        if (j.total !== total) problems.push(`?${q}: total ${j.total}, expected ${total}`);
        for (const s of j.sessions) {
            const st = /state=(\w+)/.exec(q);
            if (st && s.state !== st[1]) problems.push(`?${q}: an entry in state ${s.state}`);
        }
    }
    assert.deepEqual(problems, [], `${problems.length} filter problem(s):\n${problems.join('\n')}`);
    const bogus = await admin.call('GET', '/v1/sessions?state=bogus');
    gw.note(`GET /v1/sessions?state=bogus (undocumented): HTTP ${bogus.status}`);
    assert.ok(bogus.status === 200 || bogus.status === 400, `?state=bogus: ${bogus.describe()}`);
}

// On gw: another tenant's session answers like an unknown id (GET, PUT), stays unchanged, and the
// lists are disjoint.
export async function sessionsIsolation(ctx, gw = gateway(ctx)) {
    const root = gw.root;
    const A = await freshTenant(root, 'sess-iso-a');
    const B = await freshTenant(root, 'sess-iso-b');
    const bAgent = await B.admin.createAgent({ name: uniqueName('iso-b-agent') });
    const bMarker = uniqueName('b-secret');
    const sb = await createSession(B.admin, { agent_role: `role-${bMarker}`, agent_id: bAgent.id, metadata: { marker: bMarker } });
    const sbActive = await putSession(B.admin, sb.session_id, { status: 'active' });
    const sa = await createSession(A.admin, { agent_role: 'a-role' });
    const bBytes = [sb.session_id, B.tenant.id, bAgent.id, bMarker];

    const problems = [];
    for (const [method, body] of [
        ['GET', undefined],
        ['PUT', { status: 'completed' }],
        ['PUT', { status: 'cancelled', metadata: { hijacked: true } }],
        ['PUT', { metadata: { hijacked: true } }],
        ['PUT', { status: 'pending' }],
    ]) {
        const what = `${method} B's session ${body ? JSON.stringify(body) : ''}`;
        const rid = randomUuid();
        const rnd = await A.admin.call(method, `/v1/sessions/${rid}`, body);
        const res = await A.admin.call(method, `/v1/sessions/${sb.session_id}`, body);
        try {
            assertErrorResponse(res, { status: 404, code: 'SESSION_NOT_FOUND', what });
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
        problems.push(...differs(what, res, sb.session_id, rnd, rid));
        const text = wireText(res).split(sb.session_id).join('<id>');
        for (const s of bBytes.slice(1)) if (text.includes(s)) problems.push(`${what}: the answer carries B's ${s}`);
    }
    // A filtering by B's agent sees nothing of B
    const byAgent = await A.admin.call('GET', `/v1/sessions?agent_id=${bAgent.id}`);
    if (byAgent.status >= 500 || byAgent.status < 200) problems.push(`A: GET /v1/sessions?agent_id=<B's agent>: ${byAgent.describe()}`);
    for (const s of [sb.session_id, bMarker]) if (byAgent.text().includes(s)) problems.push(`A: GET /v1/sessions?agent_id=<B's agent> shows B's ${s}`);
    assert.deepEqual(problems, [], `${problems.length} cross-tenant problem(s):\n${problems.join('\n')}`);

    assert.deepEqual(await B.admin.ok('GET', `/v1/sessions/${sb.session_id}`), sbActive, "B's session changed after A's attempts");
    for (const [who, T, mine, theirs] of [
        ['A', A.admin, sa, [sb.session_id, bMarker, B.tenant.id]],
        ['B', B.admin, sbActive, [sa.session_id, A.tenant.id]],
    ]) {
        const res = await T.call('GET', '/v1/sessions?page_size=100');
        assert.equal(res.status, 200, `${who}: GET /v1/sessions: ${res.describe()}`);
        const j = res.json();
        assert.deepEqual(sids(j.sessions), [mine.session_id], `${who}: GET /v1/sessions lists exactly its own session`);
        assert.equal(j.total, 1, `${who}: total`);
        for (const s of theirs) assert.ok(!res.text().includes(s), `${who}: GET /v1/sessions carries the other tenant's ${s}`);
    }
}

export default [
    {
        id: 'sessions.lifecycle',
        title: 'sessions: create (201, pending, metadata echoed), get, PUT active, PUT completed, listed with total/page/page_size; updated_at moves',
        needs: ['raw', 'admin'],
        timeoutMs: 30000,
        async run(ctx) {
            const { tenant, admin } = await freshTenant(gateway(ctx).root, 'sess-life');
            await sessionLifecycle(admin, tenant);
        },
    },
    {
        id: 'sessions.transitions',
        title: 'every change of state outside the documented ones -> 422 INVALID_STATE_TRANSITION naming the current state, session unchanged; unknown state 400; metadata-only PUT keeps the state',
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        run: sessionsTransitions,
    },
    {
        id: 'sessions.validation',
        title: 'sessions: missing/mistyped fields 400 VALIDATION_ERROR (field_errors), bad JSON 400 INVALID_JSON, malformed id 400, foreign or unknown agent_id the same 400, page/page_size out of range 400',
        needs: ['raw', 'admin'],
        run: sessionsValidation,
    },
    {
        id: 'sessions.list',
        title: 'sessions list: newest first, pages of 2 cover 5 sessions exactly once, total; filters state= and agent_id=',
        needs: ['raw', 'admin'],
        run: sessionsList,
    },
    {
        id: 'sessions.isolation',
        title: "sessions cross-tenant: B's session with A's key -> 404 SESSION_NOT_FOUND exactly like an unknown id (GET, PUT), B's untouched, lists disjoint",
        needs: ['raw', 'admin'],
        run: sessionsIsolation,
    },
    {
        id: 'sessions.scopes',
        title: 'sessions:read may GET and list but not POST/PUT (403 INSUFFICIENT_SCOPE); sessions:write may POST/PUT; chat, traces:read, keys:admin keys get 403 everywhere',
        needs: ['raw', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(gateway(ctx).root, 'sess-scopes');
            const keyOf = async (scopes) => admin.as((await admin.createKey({ name: uniqueName(scopes.join('+')), scopes })).key);
            const read = await keyOf(['sessions:read']);
            const write = await keyOf(['sessions:write']);
            const s = await createSession(admin, { agent_role: 'scoped', metadata: { v: 1 } });

            const problems = [];
            const denied = (res, what) => {
                try {
                    const e = assertErrorResponse(res, { status: 403, code: 'INSUFFICIENT_SCOPE', what });
                    assert.equal(e.type, 'permission_error', `${what}: error.type`);
                } catch (err) {
                    problems.push(err.message.split('\n')[0]);
                }
            };
            const got = await read.call('GET', `/v1/sessions/${s.session_id}`);
            if (got.status !== 200) problems.push(`sessions:read GET: ${got.describe()}`);
            else if (JSON.stringify(got.json()) !== JSON.stringify(s)) problems.push('sessions:read GET: differs from the creation answer');
            const listed = await read.call('GET', '/v1/sessions');
            if (listed.status !== 200) problems.push(`sessions:read list: ${listed.describe()}`);
            else if (!sids(listed.json().sessions || []).includes(s.session_id)) problems.push('sessions:read list: the session is missing');
            const unknown = await read.call('GET', `/v1/sessions/${randomUuid()}`);
            if (unknown.status !== 404) problems.push(`sessions:read GET of an unknown id: ${unknown.describe()}`);
            denied(await read.call('POST', '/v1/sessions', { agent_role: 'by-reader' }), 'sessions:read POST');
            denied(await read.call('PUT', `/v1/sessions/${s.session_id}`, { status: 'active' }), 'sessions:read PUT status');
            denied(await read.call('PUT', `/v1/sessions/${s.session_id}`, { metadata: { v: 2 } }), 'sessions:read PUT metadata');

            const wc = await write.call('POST', '/v1/sessions', { agent_role: 'by-writer' });
            if (wc.status !== 201) problems.push(`sessions:write POST: ${wc.describe()}`);
            const wp = await write.call('PUT', `/v1/sessions/${s.session_id}`, { status: 'active' });
            if (wp.status !== 200) problems.push(`sessions:write PUT: ${wp.describe()}`);
            else if (wp.json().state !== 'active') problems.push(`sessions:write PUT: state ${wp.json().state}`);

            for (const scopes of [['chat'], ['traces:read'], ['keys:admin']]) {
                const k = await keyOf(scopes);
                const name = scopes.join('+');
                denied(await k.call('GET', `/v1/sessions/${s.session_id}`), `${name} GET`);
                denied(await k.call('GET', '/v1/sessions'), `${name} list`);
                denied(await k.call('POST', '/v1/sessions', { agent_role: `by-${name}` }), `${name} POST`);
                denied(await k.call('PUT', `/v1/sessions/${s.session_id}`, { status: 'cancelled' }), `${name} PUT`);
            }
            assert.deepEqual(problems, [], `${problems.length} scope problem(s):\n${problems.join('\n')}`);

            // the refused requests changed nothing: the session is active (the writer's PUT), and
            // only the writer's session was added
            const list = (await admin.ok('GET', '/v1/sessions')).sessions;
            assert.deepEqual(list.map((x) => x.agent_role).sort(), ['by-writer', 'scoped'], 'sessions after refused creations');
            const after = await admin.ok('GET', `/v1/sessions/${s.session_id}`);
            assert.equal(after.state, 'active', 'state after refused PUTs');
            assert.deepEqual(after.metadata, { v: 1 }, 'metadata after refused PUTs');
        },
    },
];
