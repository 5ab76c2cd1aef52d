// Tasks and approvals (docs/tasks.md): a task's lifecycle (phases, the current phase, its
// checkpoint), routing to the least loaded live agent of a role, the state machine (refused
// changes 422 and harmless), validation; approvals holding a task (409 APPROVAL_PENDING while
// it waits), decided once by a credential with approvals:decide, audited without the reason's
// text; tenant isolation (another tenant's task or approval answers exactly like an id that does
// not exist, changes nothing, never shows in lists, and routing never picks its agents). Every
// check works in tenants of its own. The three scenarios are functions of a gateway
// (lib/stores.mjs): here on the shared ibex (SQLite), in state.* on Postgres, Postgres with Redis
// and SQLite with Redis.
import assert from 'node:assert/strict';
import { assertErrorResponse } from '../lib/expect.mjs';
import { auditUntil, freshTenant, nowSec, randomUuid, sameAnswerForm, uniqueName } from '../lib/ibexadmin.mjs';
import { gateway } from '../lib/stores.mjs';
import { sleep, truncate } from '../lib/util.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const TASK_KEYS = ['id', 'object', 'tenant_id', 'name', 'state', 'agent_role', 'agent_id', 'session_id', 'phases', 'phase', 'checkpoint', 'checkpoint_at', 'input', 'metadata', 'error', 'approval_id', 'created_at', 'updated_at'];
const APPROVAL_KEYS = ['id', 'object', 'tenant_id', 'state', 'action', 'task_id', 'session_id', 'detail', 'reason', 'requested_by', 'decided_by', 'created_at', 'decided_at', 'expires_at'];
// Pause between creations whose order a check asserts (lists are newest first).
const TICK_MS = 5;

function isRecentSec(v) {
    return Number.isInteger(v) && Math.abs(v - nowSec()) < 120;
}

// Asserts a task's shape and the expected values (undefined: not compared).
export function assertTask(t, e = {}) {
    const what = e.what || 'task';
    const show = truncate(JSON.stringify(t), 700);
    assert.ok(isObject(t), `${what}: not an object (${show})`);
    for (const k of TASK_KEYS) assert.ok(k in t, `${what}: no ${k} (${show})`);
    assert.match(t.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(t.object, 'task', `${what}: object (${show})`);
    assert.ok(Array.isArray(t.phases), `${what}: phases is not an array (${show})`);
    assert.ok(isRecentSec(t.created_at) && isRecentSec(t.updated_at), `${what}: created_at/updated_at are not now in unix seconds (${show})`);
    for (const k of ['tenantId:tenant_id', 'state', 'agentId:agent_id', 'agentRole:agent_role', 'phase', 'checkpoint', 'metadata', 'input', 'error', 'approvalId:approval_id', 'name']) {
        const [ek, tk] = k.includes(':') ? k.split(':') : [k, k];
        if (e[ek] !== undefined) assert.deepEqual(t[tk], e[ek], `${what}: ${tk} (${show})`);
    }
    if (e.phases !== undefined) {
        // e.phases: [[name, state], ...]
        assert.deepEqual(t.phases.map((p) => [p.name, p.state]), e.phases, `${what}: phases (names, states) (${show})`);
        for (const p of t.phases) {
            if (p.state === 'pending') assert.ok(p.started_at === null && p.ended_at === null, `${what}: pending phase ${p.name} has times (${show})`);
            if (p.state === 'running') assert.ok(isRecentSec(p.started_at) && p.ended_at === null, `${what}: running phase ${p.name}: started_at/ended_at (${show})`);
            if (p.state === 'done') assert.ok(isRecentSec(p.started_at) && isRecentSec(p.ended_at) && p.ended_at >= p.started_at, `${what}: done phase ${p.name}: times (${show})`);
        }
    }
    return t;
}

function assertApproval(a, e = {}) {
    const what = e.what || 'approval';
    const show = truncate(JSON.stringify(a), 700);
    assert.ok(isObject(a), `${what}: not an object (${show})`);
    for (const k of APPROVAL_KEYS) assert.ok(k in a, `${what}: no ${k} (${show})`);
    assert.match(a.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(a.object, 'approval', `${what}: object (${show})`);
    for (const k of ['state', 'action', 'task_id', 'reason', 'tenant_id']) if (e[k] !== undefined) assert.deepEqual(a[k], e[k], `${what}: ${k} (${show})`);
    return a;
}

// Asserts a 400 VALIDATION_ERROR whose field_errors name field.
function assertFieldError(res, field, what) {
    const e = assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
    const fe = e.field_errors;
    assert.ok(Array.isArray(fe) && fe.length > 0, `${what}: field_errors missing or empty (${JSON.stringify(e)})`);
    assert.ok(fe.some((f) => f.field === field || f.field.startsWith(`${field}.`) || f.field.startsWith(`${field}[`)), `${what}: no field_errors entry for "${field}" (${JSON.stringify(fe)})`);
    return e;
}

export async function createTask(admin, body, what = `POST /v1/tasks ${truncate(JSON.stringify(body), 200)}`) {
    const res = await admin.call('POST', '/v1/tasks', body);
    assert.equal(res.status, 201, `${what}: ${res.describe()}`);
    return res.json();
}

export async function putTask(admin, id, body, what = `PUT /v1/tasks/{id} ${truncate(JSON.stringify(body), 200)}`) {
    const res = await admin.call('PUT', `/v1/tasks/${id}`, body);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    return res.json();
}

const getTask = (admin, id) => admin.ok('GET', `/v1/tasks/${id}`);

async function route(admin, body, what = `POST /v1/tasks/route ${JSON.stringify(body)}`) {
    const res = await admin.call('POST', '/v1/tasks/route', body);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    return res.json();
}

async function listTasks(admin, query = '') {
    const what = `GET /v1/tasks${query ? `?${query}` : ''}`;
    const res = await admin.call('GET', `/v1/tasks${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    const j = res.json();
    const show = truncate(JSON.stringify(j), 500);
    assert.equal(j.object, 'list', `${what}: object (${show})`);
    assert.ok(Array.isArray(j.tasks), `${what}: no tasks array (${show})`);
    for (const k of ['total', 'page', 'page_size']) assert.ok(Number.isInteger(j[k]), `${what}: ${k} is not an integer (${show})`);
    return j;
}

async function listApprovals(admin, query = '') {
    const what = `GET /v1/approvals${query ? `?${query}` : ''}`;
    const res = await admin.call('GET', `/v1/approvals${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    const j = res.json();
    assert.ok(j.object === 'list' && Array.isArray(j.approvals) && Number.isInteger(j.total), `${what}: not an approval list (${truncate(JSON.stringify(j), 500)})`);
    return j;
}

const ids = (list) => list.map((x) => x.id);

// A PUT that must be refused with status/code and change nothing.
async function refusedPut(admin, id, body, status, code, what) {
    const before = await getTask(admin, id);
    const e = assertErrorResponse(await admin.call('PUT', `/v1/tasks/${id}`, body), { status, code, what });
    assert.deepEqual(await getTask(admin, id), before, `${what}: the refused PUT changed the task`);
    return e;
}

// On gw: create, route, phases, checkpoint, completion; refused changes harmless; validation;
// list pages and filters.
export async function tasksLifecycle(ctx, gw = gateway(ctx)) {
    const { tenant, admin } = await freshTenant(gw.root, 'task-life');
    const role = `builder ${uniqueName('r')}`; // a space: agent_role filters are percent-decoded
    const agents = [];
    for (let i = 0; i < 3; i++) agents.push(await admin.createAgent({ name: uniqueName(`task-agent${i}`), role }));
    const other = await admin.createAgent({ name: uniqueName('task-other'), role: 'reviewer' });

    // create, get
    const input = { repo: 'ibex', n: 3, nested: { list: [1, 'two', null] }, text: 'ünïcödé "q" \\ \n' };
    const metadata = { ticket: 'E2E-7' };
    const spec = { name: 'build the thing', agent_role: role, phases: ['plan', 'build', 'test'], input, metadata };
    const t0 = await createTask(admin, spec);
    assertTask(t0, { what: 'POST /v1/tasks', tenantId: tenant.id, state: 'pending', agentId: null, agentRole: role, phase: null, checkpoint: null, metadata, input, error: null, approvalId: null, name: spec.name, phases: [['plan', 'pending'], ['build', 'pending'], ['test', 'pending']] });
    assert.equal(t0.checkpoint_at, null, 'a new task: checkpoint_at');
    assert.deepEqual(await getTask(admin, t0.id), t0, 'GET /v1/tasks/{id} differs from the creation answer');

    // routing: agents[0] carries one unfinished task; of the two idle ones the lower id would win
    // a tie, so it is revoked: the other must be chosen
    await createTask(admin, { name: 'load', agent_role: role, agent_id: agents[0].id });
    const idle = [agents[1], agents[2]].sort((x, y) => (x.id < y.id ? -1 : 1));
    await admin.revoke('agents', idle[0].id);
    const r1 = await route(admin, { task_id: t0.id });
    const names = Object.fromEntries([...agents, other].map((a, i) => [a.id, i < 3 ? `agent${i}${a.id === idle[0].id ? ' (revoked)' : ''}` : 'reviewer']));
    assert.equal(r1.agent_id, idle[1].id, `route: picked ${names[r1.agent_id] ?? r1.agent_id}, expected the idle live agent (agent0 has 1 task, ${names[idle[0].id]})`);
    assertTask(r1, { what: 'route answer', state: 'pending', agentRole: role });
    // routed again: its own assignment does not count against the agent
    const r2 = await route(admin, { task_id: t0.id });
    assert.equal(r2.agent_id, idle[1].id, `route a second time: picked ${names[r2.agent_id] ?? r2.agent_id}; the task itself must be left out of the load`);
    // no agent for the role: 422, the task unchanged
    const before = await getTask(admin, t0.id);
    assertErrorResponse(await admin.call('POST', '/v1/tasks/route', { task_id: t0.id, agent_role: 'nobody-has-this' }), { status: 422, code: 'NO_AGENT_FOR_ROLE', what: 'route to a role no agent has' });
    assert.deepEqual(await getTask(admin, t0.id), before, 'a refused route changed the task');
    assertErrorResponse(await admin.call('POST', '/v1/tasks/route', { task_id: randomUuid() }), { status: 404, code: 'TASK_NOT_FOUND', what: 'route an unknown task' });
    // a role in the body becomes the task's
    const r3 = await route(admin, { task_id: t0.id, agent_role: 'reviewer' });
    assert.equal(r3.agent_id, other.id, `route to role reviewer: picked ${names[r3.agent_id] ?? r3.agent_id}`);
    assert.equal(r3.agent_role, 'reviewer', 'route with agent_role: the task did not take the role');

    // phases and checkpoint
    await refusedPut(admin, t0.id, { phase: 'plan' }, 409, 'TASK_NOT_RUNNING', 'PUT phase on a pending task');
    await refusedPut(admin, t0.id, { state: 'completed' }, 422, 'INVALID_STATE_TRANSITION', 'PUT pending -> completed');
    let t = await putTask(admin, t0.id, { state: 'running', phase: 'plan' });
    assertTask(t, { what: 'PUT running + phase plan', state: 'running', phase: 'plan', phases: [['plan', 'running'], ['build', 'pending'], ['test', 'pending']] });
    t = await putTask(admin, t0.id, { phase: 'build' });
    assertTask(t, { what: 'PUT phase build', state: 'running', phase: 'build', phases: [['plan', 'done'], ['build', 'running'], ['test', 'pending']] });
    await refusedPut(admin, t0.id, { phase: 'deploy' }, 400, 'VALIDATION_ERROR', 'PUT an undeclared phase');
    const checkpoint = { step: 2, files: ['a.c', 'b.c'], note: 'ünïcödé' };
    t = await putTask(admin, t0.id, { checkpoint });
    assertTask(t, { what: 'PUT checkpoint', state: 'running', phase: 'build', checkpoint });
    assert.ok(isRecentSec(t.checkpoint_at), `PUT checkpoint: checkpoint_at ${t.checkpoint_at}`);
    // (with a phase: a PUT of nothing but nulls is refused as "nothing to update")
    t = await putTask(admin, t0.id, { phase: 'build', checkpoint: null, metadata: null });
    assert.deepEqual([t.checkpoint, t.metadata], [checkpoint, metadata], 'PUT checkpoint: null, metadata: null must leave them as they are');
    const got = await getTask(admin, t0.id);
    assertTask(got, { what: 'GET after phases and checkpoint', state: 'running', phase: 'build', checkpoint, input, phases: [['plan', 'done'], ['build', 'running'], ['test', 'pending']] });
    await refusedPut(admin, t0.id, { state: 'pending' }, 422, 'INVALID_STATE_TRANSITION', 'PUT running -> pending');
    await refusedPut(admin, t0.id, { state: 'waiting_approval' }, 422, 'INVALID_STATE_TRANSITION', 'PUT running -> waiting_approval');
    // all or nothing: a valid state with an undeclared phase changes nothing
    await refusedPut(admin, t0.id, { state: 'completed', phase: 'nope' }, 400, 'VALIDATION_ERROR', 'PUT completed with an undeclared phase');
    // asking for the current state is not a change
    t = await putTask(admin, t0.id, { state: 'running' });
    assert.equal(t.state, 'running', 'PUT running on a running task');
    const done = { result: 'ok' };
    t = await putTask(admin, t0.id, { state: 'completed', checkpoint: done });
    assertTask(t, { what: 'PUT completed + checkpoint', state: 'completed', phase: 'build', checkpoint: done, phases: [['plan', 'done'], ['build', 'done'], ['test', 'pending']] });
    for (const s of ['running', 'pending', 'failed', 'cancelled']) {
        const e = await refusedPut(admin, t0.id, { state: s }, 422, 'INVALID_STATE_TRANSITION', `PUT completed -> ${s}`);
        assert.match(e.message, /completed/, `PUT completed -> ${s}: the message does not name the current state (${e.message})`);
    }
    await refusedPut(admin, t0.id, { phase: 'test' }, 409, 'TASK_NOT_RUNNING', 'PUT phase on a completed task');
    assertErrorResponse(await admin.call('POST', '/v1/tasks/route', { task_id: t0.id }), { status: 409, code: 'TASK_FINISHED', what: 'route a completed task' });
    // pending -> cancelled; cancelled is final
    const c = await createTask(admin, { name: 'to cancel', agent_role: 'reviewer' });
    assert.equal((await putTask(admin, c.id, { state: 'cancelled' })).state, 'cancelled', 'PUT pending -> cancelled');
    await refusedPut(admin, c.id, { state: 'running' }, 422, 'INVALID_STATE_TRANSITION', 'PUT cancelled -> running');

    // validation
    const big = 'x'.repeat(201);
    const bad = [
        ['POST', '/v1/tasks', { agent_role: role }, 'name', 'no name'],
        ['POST', '/v1/tasks', { name: big, agent_role: role }, 'name', 'name of 201 bytes'],
        ['POST', '/v1/tasks', { name: 'x' }, 'agent_role', 'no agent_role'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: '' }, 'agent_role', 'empty agent_role'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, phases: ['a', 'a'] }, 'phases', 'duplicate phases'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, phases: Array.from({ length: 33 }, (_, i) => `p${i}`) }, 'phases', '33 phases'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, phases: ['y'.repeat(65)] }, 'phases', 'a phase name of 65 bytes'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, input: [1] }, 'input', 'input an array'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, input: { blob: 'z'.repeat(65 * 1024) } }, 'input', 'input over 64 KiB'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, agent_id: 'not-a-uuid' }, 'agent_id', 'agent_id malformed'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, agent_id: randomUuid() }, 'agent_id', 'agent_id unknown'],
        ['POST', '/v1/tasks', { name: 'x', agent_role: role, agent_id: idle[0].id }, 'agent_id', 'agent_id revoked'],
        ['PUT', `/v1/tasks/${c.id}`, { state: 'bogus' }, 'state', 'state not a state'],
        ['POST', '/v1/tasks/route', {}, 'task_id', 'route without task_id'],
    ];
    const totalBefore = (await listTasks(admin)).total;
    for (const [m, p, b, field, what] of bad) assertFieldError(await admin.call(m, p, b), field, `${m} ${p.replace(/[0-9a-f-]{36}/, '{id}')} ${what}`);
    assertErrorResponse(await admin.call('GET', '/v1/tasks/not-a-uuid'), { status: 400, code: 'VALIDATION_ERROR', what: 'GET /v1/tasks/not-a-uuid' });
    assertErrorResponse(await admin.call('GET', `/v1/tasks/${randomUuid()}`), { status: 404, code: 'TASK_NOT_FOUND', what: 'GET an unknown task' });
    assert.equal((await listTasks(admin)).total, totalBefore, 'refused creations added tasks');

    // list: newest first, pages, filters
    const made = [];
    for (let i = 0; i < 3; i++) {
        await sleep(TICK_MS);
        made.push(await createTask(admin, { name: `list ${i}`, agent_role: 'lister', agent_id: i === 1 ? other.id : undefined, input: { i } }));
    }
    const all = await listTasks(admin, 'page_size=100');
    assert.equal(all.total, all.tasks.length, `list total ${all.total} vs ${all.tasks.length} listed`);
    assert.deepEqual(ids(all.tasks).slice(0, 3), ids(made).reverse(), 'list is not newest first');
    for (const x of all.tasks) {
        assert.ok(!('checkpoint' in x) && !('input' in x), `a list item carries checkpoint or input: ${truncate(JSON.stringify(x), 300)}`);
        assert.ok('checkpoint_at' in x, `a list item has no checkpoint_at: ${truncate(JSON.stringify(x), 300)}`);
    }
    const pages = [];
    for (let p = 1; ; p++) {
        const j = await listTasks(admin, `page=${p}&page_size=2`);
        assert.equal(j.page, p, `page ${p}: page`);
        assert.equal(j.page_size, 2, `page ${p}: page_size`);
        assert.ok(j.tasks.length <= 2, `page ${p}: ${j.tasks.length} items`);
        if (j.tasks.length === 0) break;
        pages.push(...ids(j.tasks));
    }
    assert.deepEqual(pages, ids(all.tasks), 'pages of 2 do not cover the list once, in order');
    const f = async (q, want, what) => assert.deepEqual(ids((await listTasks(admin, `${q}&page_size=100`)).tasks).sort(), want.sort(), `GET /v1/tasks?${q} (${what})`);
    await f('state=completed', [t0.id], 'the completed one');
    await f('state=cancelled', [c.id], 'the cancelled one');
    await f(`agent_id=${other.id}`, [t0.id, made[1].id], 'the reviewer agent');
    await f(`agent_role=${encodeURIComponent(role).replace(/%20/g, '+')}`, ids(all.tasks.filter((x) => x.agent_role === role)), 'agent_role with + for a space');
    await f('agent_role=lister&state=pending', ids(made), 'two filters');
    for (const q of ['page=0', 'page_size=0', 'page_size=101', 'state=bogus', 'agent_id=nope'])
        assertErrorResponse(await admin.call('GET', `/v1/tasks?${q}`), { status: 400, code: 'VALIDATION_ERROR', what: `GET /v1/tasks?${q}` });
}

// On gw: an approval holds its task until decided once (approvals:decide); audited without text.
export async function tasksApprovals(ctx, gw = gateway(ctx)) {
    const { tenant, admin } = await freshTenant(gw.root, 'task-appr');
    const writer = admin.as((await admin.createKey({ name: uniqueName('writer'), scopes: ['sessions:write', 'sessions:read'] })).key);
    const deciderKey = await admin.createKey({ name: uniqueName('decider'), scopes: ['approvals:decide'] });
    const decider = admin.as(deciderKey.key);
    const task = await createTask(writer, { name: 'deploy', agent_role: 'ops', phases: ['prepare', 'deploy'] });
    assertErrorResponse(await writer.call('POST', '/v1/approvals', { action: 'too early', task_id: task.id }), { status: 409, code: 'TASK_NOT_RUNNING', what: 'approval for a pending task' });
    await putTask(writer, task.id, { state: 'running', phase: 'prepare' });

    const action = `deploy to production ${uniqueName('act')}`;
    const res = await writer.call('POST', '/v1/approvals', { action, task_id: task.id, detail: { env: 'prod' } });
    assert.equal(res.status, 201, `POST /v1/approvals: ${res.describe()}`);
    const ap = assertApproval(res.json(), { what: 'POST /v1/approvals', state: 'pending', action, task_id: task.id, tenant_id: tenant.id });
    assert.deepEqual(ap.detail, { env: 'prod' }, 'approval detail');
    let t = await getTask(writer, task.id);
    assertTask(t, { what: 'task after the approval request', state: 'waiting_approval', approvalId: ap.id });

    // nothing lets it proceed while it waits; metadata may change
    for (const b of [{ phase: 'deploy' }, { checkpoint: { x: 1 } }, { state: 'completed' }, { state: 'running' }, { state: 'failed' }])
        await refusedPut(writer, task.id, b, 409, 'APPROVAL_PENDING', `PUT ${JSON.stringify(b)} on a waiting task`);
    t = await putTask(writer, task.id, { metadata: { waiting: true } });
    assert.equal(t.state, 'waiting_approval', 'metadata PUT on a waiting task: state');
    assertErrorResponse(await writer.call('POST', '/v1/approvals', { action: 'second', task_id: task.id }), { status: 409, code: 'APPROVAL_PENDING', what: 'a second approval for a waiting task' });

    const pending = await listApprovals(writer, 'state=pending');
    assert.deepEqual(ids(pending.approvals), [ap.id], `GET /v1/approvals?state=pending: ${JSON.stringify(ids(pending.approvals))}`);
    assert.deepEqual(await writer.ok('GET', `/v1/approvals/${ap.id}`), ap, 'GET /v1/approvals/{id} differs from the creation answer');

    // approvals:decide needed
    for (const [who, k] of [['sessions:write', writer]]) {
        assertErrorResponse(await k.call('POST', `/v1/approvals/${ap.id}/approve`, {}), { status: 403, code: 'INSUFFICIENT_SCOPE', what: `approve with ${who}` });
        assertErrorResponse(await k.call('POST', `/v1/approvals/${ap.id}/reject`, { reason: 'no' }), { status: 403, code: 'INSUFFICIENT_SCOPE', what: `reject with ${who}` });
    }
    assert.equal((await writer.ok('GET', `/v1/approvals/${ap.id}`)).state, 'pending', 'refused decisions changed the approval');

    const okReason = `looks fine ${uniqueName('why')}`;
    const approved = await decider.ok('POST', `/v1/approvals/${ap.id}/approve`, { reason: okReason });
    assertApproval(approved, { what: 'approve', state: 'approved', reason: okReason });
    assert.ok(isRecentSec(approved.decided_at), `approve: decided_at ${approved.decided_at}`);
    assert.ok(typeof approved.decided_by === 'string' && approved.decided_by.length > 0, `approve: decided_by ${JSON.stringify(approved.decided_by)}`);
    t = await getTask(writer, task.id);
    assertTask(t, { what: 'task after approve', state: 'running', approvalId: null, phase: 'prepare' });
    for (const act of ['approve', 'reject']) {
        const e = assertErrorResponse(await decider.call('POST', `/v1/approvals/${ap.id}/${act}`, { reason: 'again' }), { status: 409, code: 'APPROVAL_ALREADY_DECIDED', what: `${act} an approved approval` });
        assert.match(e.message, /approved/, `${act} again: the message does not name the state (${e.message})`);
    }
    assert.equal((await writer.ok('GET', `/v1/approvals/${ap.id}`)).reason, okReason, 'a refused second decision changed the reason');

    // reject: reason required; the task fails with it
    const ap2 = (await writer.ok('POST', '/v1/approvals', { action: `second ${action}`, task_id: task.id }, 201));
    assertFieldError(await decider.call('POST', `/v1/approvals/${ap2.id}/reject`, {}), 'reason', 'reject without a reason');
    assertFieldError(await decider.call('POST', `/v1/approvals/${ap2.id}/reject`, { reason: '' }), 'reason', 'reject with an empty reason');
    assert.equal((await getTask(writer, task.id)).state, 'waiting_approval', 'a refused reject changed the task');
    const noReason = `too risky ${uniqueName('why')}`;
    const rejected = await decider.ok('POST', `/v1/approvals/${ap2.id}/reject`, { reason: noReason });
    assertApproval(rejected, { what: 'reject', state: 'rejected', reason: noReason });
    t = await getTask(writer, task.id);
    assertTask(t, { what: 'task after reject', state: 'failed', error: `approval rejected: ${noReason}`, approvalId: null });
    assert.deepEqual(ids((await listApprovals(writer, 'state=pending')).approvals), [], 'pending approvals after both decisions');
    assertErrorResponse(await decider.call('POST', `/v1/approvals/${randomUuid()}/approve`, {}), { status: 404, code: 'APPROVAL_NOT_FOUND', what: 'approve an unknown approval' });

    // audit: one event per decision, without the text of the reason or the action
    const events = await auditUntil(admin, (ev) => ev.some((e) => e.action === 'approval.rejected'));
    const mine = events.filter((e) => e.action === 'approval.approved' || e.action === 'approval.rejected');
    const show = truncate(JSON.stringify(mine), 1000);
    const one = (action, id) => {
        const found = mine.filter((e) => e.action === action && e.target === id);
        assert.equal(found.length, 1, `audit: ${found.length} ${action} event(s) with target ${id} (${show})`);
        assert.equal(found[0].tenant_id, tenant.id, `audit: ${action} tenant_id (${show})`);
        assert.equal(found[0].detail?.task_id, task.id, `audit: ${action} detail.task_id (${show})`);
        return found[0];
    };
    assert.equal(one('approval.approved', ap.id).detail.reason_length, Buffer.byteLength(okReason), `audit: approval.approved detail.reason_length (${show})`);
    assert.equal(one('approval.rejected', ap2.id).detail.reason_length, Buffer.byteLength(noReason), `audit: approval.rejected detail.reason_length (${show})`);
    const text = JSON.stringify(events);
    for (const s of [okReason, noReason, action]) assert.ok(!text.includes(s), `audit: the trail carries the text ${JSON.stringify(s)} (${show})`);
}

// On gw: another tenant's tasks, approvals, agents and sessions answer like unknown ids.
export async function tasksIsolation(ctx, gw = gateway(ctx)) {
    const root = gw.root;
    const A = await freshTenant(root, 'task-iso-a');
    const B = await freshTenant(root, 'task-iso-b');
    const role = 'iso-role';
    const bAgent = await B.admin.createAgent({ name: uniqueName('iso-b'), role });
    const bSession = await B.admin.ok('POST', '/v1/sessions', { agent_role: role }, 201);
    const bTask = await createTask(B.admin, { name: 'b task', agent_role: role, phases: ['one'] });
    await putTask(B.admin, bTask.id, { state: 'running', phase: 'one' });
    const bAp = await B.admin.ok('POST', '/v1/approvals', { action: 'b action', task_id: bTask.id }, 201);
    const bTask2 = await createTask(B.admin, { name: 'b pending', agent_role: role });
    const aTask = await createTask(A.admin, { name: 'a task', agent_role: role });
    await putTask(A.admin, aTask.id, { state: 'running' });
    const snapshot = async () => ({
        tasks: [await getTask(B.admin, bTask.id), await getTask(B.admin, bTask2.id)],
        approval: await B.admin.ok('GET', `/v1/approvals/${bAp.id}`),
        agent: await B.admin.ok('GET', `/v1/agents/${bAgent.id}`),
    });
    const before = await snapshot();

    // [what, (id) => [method, path, body]] with the foreign id and a random one in the same place
    const cases = [
        ['GET task', (id) => ['GET', `/v1/tasks/${id}`]],
        ['PUT task state', (id) => ['PUT', `/v1/tasks/${id}`, { state: 'cancelled' }]],
        ['PUT task metadata', (id) => ['PUT', `/v1/tasks/${id}`, { metadata: { owned: true } }]],
        ['PUT task phase', (id) => ['PUT', `/v1/tasks/${id}`, { phase: 'one' }]],
        ['route task', (id) => ['POST', '/v1/tasks/route', { task_id: id }]],
        ['POST approval for the task', (id) => ['POST', '/v1/approvals', { action: 'steal', task_id: id }]],
        ['POST task with the agent', (id) => ['POST', '/v1/tasks', { name: 'x', agent_role: role, agent_id: id }], 'agent'],
        ['POST task with the session', (id) => ['POST', '/v1/tasks', { name: 'x', agent_role: role, session_id: id }], 'session'],
        ['GET approval', (id) => ['GET', `/v1/approvals/${id}`], 'approval'],
        ['approve', (id) => ['POST', `/v1/approvals/${id}/approve`, {}], 'approval'],
        ['reject', (id) => ['POST', `/v1/approvals/${id}/reject`, { reason: 'no' }], 'approval'],
    ];
    const foreign = { task: [bTask.id, bTask2.id], agent: [bAgent.id], session: [bSession.session_id], approval: [bAp.id] };
    const problems = [];
    const countA = (await listTasks(A.admin)).total;
    for (const [what, mk, kind = 'task'] of cases) {
        for (const fid of foreign[kind]) {
            const rid = randomUuid();
            const [m, p, b] = mk(fid);
            const got = sameAnswerForm(await A.admin.call(m, p, b), fid);
            const [m2, p2, b2] = mk(rid);
            const want = sameAnswerForm(await A.admin.call(m2, p2, b2), rid);
            if (got.status < 400) problems.push(`${what} with B's ${kind} id: answered ${got.status} ${got.body}`);
            else if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${what}: B's ${kind} id answered ${got.status} ${got.body}, an unknown id ${want.status} ${want.body}`);
        }
    }
    assert.deepEqual(problems, [], `${problems.length} isolation problem(s):\n${problems.join('\n')}`);
    assert.deepEqual(await snapshot(), before, "A's attempts changed B's objects");
    assert.equal((await listTasks(A.admin)).total, countA, "A's refused creations added tasks");

    // routing never picks B's agent: A has no agent of the role
    assertErrorResponse(await A.admin.call('POST', '/v1/tasks/route', { task_id: aTask.id }), { status: 422, code: 'NO_AGENT_FOR_ROLE', what: "route A's task to a role only B's agent has" });
    const aAgent = await A.admin.createAgent({ name: uniqueName('iso-a'), role });
    const routed = await route(A.admin, { task_id: aTask.id });
    assert.equal(routed.agent_id, aAgent.id, `route A's task: agent ${routed.agent_id}, expected A's own ${aAgent.id} (B's is ${bAgent.id})`);
    const aAp = await A.admin.ok('POST', '/v1/approvals', { action: 'a action', task_id: aTask.id }, 201);

    // lists are disjoint
    const tA = ids((await listTasks(A.admin, 'page_size=100')).tasks);
    const tB = ids((await listTasks(B.admin, 'page_size=100')).tasks);
    assert.deepEqual(tA.sort(), [aTask.id], `A's task list: ${JSON.stringify(tA)}`);
    assert.deepEqual(tB.sort(), [bTask.id, bTask2.id].sort(), `B's task list: ${JSON.stringify(tB)}`);
    for (const q of ['', 'state=pending']) {
        const lA = ids((await listApprovals(A.admin, q)).approvals);
        const lB = ids((await listApprovals(B.admin, q)).approvals);
        assert.deepEqual(lA, [aAp.id], `A's approvals ?${q}: ${JSON.stringify(lA)}`);
        assert.deepEqual(lB, [bAp.id], `B's approvals ?${q}: ${JSON.stringify(lB)}`);
    }
    assert.deepEqual(ids((await listTasks(A.admin, `agent_id=${bAgent.id}`)).tasks), [], "A's list filtered by B's agent");
}

export default [
    {
        id: 'tasks.lifecycle',
        title: 'tasks: create (201) with phases, get, route (least loaded live agent of the role; none -> 422), running, phases, checkpoint, completed; refused changes 422/409 and harmless; validation; list pages and filters',
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        run: tasksLifecycle,
    },
    {
        id: 'tasks.approvals',
        title: 'approvals: a request holds the task (409 APPROVAL_PENDING), listed pending, approvals:decide needed, approve -> running, decided once, reject (reason required) -> failed, audited without the reason',
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        run: tasksApprovals,
    },
    {
        id: 'tasks.isolation',
        title: "tasks and approvals: another tenant's ids answer like unknown ones on every route, its objects unchanged, lists disjoint, routing never picks its agents",
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        run: tasksIsolation,
    },
];
