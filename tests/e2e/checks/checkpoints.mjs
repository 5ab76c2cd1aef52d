// Chat turns and checkpoints (docs/sessions.md): every turn sent to a model belongs to a session
// named in X-IBEX-Session-ID (a new one without the header, the named one with it) and leaves a
// checkpoint readable at GET /v1/sessions/{id}/checkpoints, oldest first: the messages exactly as
// the upstream got them (fakellm's request log is the witness), the answer the client received
// (assembled from SSE for a stream), the facts of the turn's trace. Refusals: a malformed header
// 400, an unknown or foreign session 404 (answered alike, the other tenant untouched), a finished
// session 409; a request refused before routing has no session and no checkpoint.
//
// The assertions of the turns and of the header cases are functions of a gateway, run on the
// shared ibex (SQLite) and, in checkpoints.{postgres,postgres-redis,sqlite-redis}, on a dedicated
// ibex with that store. Every check works in tenants of its own.
import assert from 'node:assert/strict';
import { assertErrorResponse } from '../lib/expect.mjs';
import { streamChat } from '../lib/chat.mjs';
import { expectedText, knobs } from '../lib/fakellm.mjs';
import { IbexAdmin, bearer, freshTenant, nowSec, randomUuid, sameAnswerForm, uniqueName } from '../lib/ibexadmin.mjs';
import { gateway, storeGateway, storeOf } from '../lib/stores.mjs';
import { now, randomToken, sleep, truncate } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';
import { assertSession, createSession, putSession, sessionLifecycle } from './sessions.mjs';
import { waitTrace } from './traces.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const VISIBLE_MS = 500; // the budget of these checks for a write through the store writer
const POLL_MS = 20;
const LATE_MS = 3000; // how long past the budget to keep looking, to tell "late" from "never"
// A worker trusts a session it saw active for 2 s (docs/sessions.md); past this, it asks the store.
const SESSION_CACHE_PASSED_MS = 2200;
const ANSWER_MAX_BYTES = 1 << 20; // the answer text a checkpoint keeps (docs/sessions.md)
const MALFORMED_IDS = ['not-a-uuid', '12345', '', 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz', '0123456789abcdef0123456789abcdef'];
// The facts a checkpoint shares with its trace.
const TRACE_FACTS = ['agent_id', 'session_id', 'model', 'provider', 'stream', 'status', 'code', 'duration_ms', 'upstream_ms', 'overhead_ms', 'ttft_ms', 'prompt_tokens', 'completion_tokens', 'total_tokens'];
const CHECKPOINT_KEYS = ['id', 'object', 'session_id', 'trace_id', ...TRACE_FACTS, 'messages', 'response', 'truncated', 'created_at'];

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const body = (messages, extra = {}) => ({ model: MODEL, messages, ...extra });
const userTurn = (text) => [{ role: 'user', content: text }];
const traceIds = (list) => list.map((c) => c.trace_id);

// The X-IBEX-Trace-ID and X-IBEX-Session-ID of a response (headers: a plain object with lowercase
// names, or a fetch Headers); the trace id asserted a UUID, the session id a UUID when present.
function idsOf(headers, what) {
    const get = (n) => (typeof headers.get === 'function' ? headers.get(n) : headers[n]) ?? null;
    const traceId = get('x-ibex-trace-id');
    assert.match(traceId ?? '', UUID, `${what}: X-IBEX-Trace-ID ${JSON.stringify(traceId)} is not a lowercase UUID`);
    const sessionId = get('x-ibex-session-id');
    if (sessionId !== null) assert.match(sessionId, UUID, `${what}: X-IBEX-Session-ID ${JSON.stringify(sessionId)} is not a lowercase UUID`);
    return { traceId, sessionId };
}

// Polls GET path every POLL_MS from since until ready(res) (404 means "not yet"; any other
// answer but 200 fails at once). Returns {res, delayMs}; res null when it never was ready.
async function poll(api, p, since, ready) {
    for (;;) {
        const res = await api.call('GET', p);
        const delayMs = Math.round(now() - since);
        if (res.status !== 200 && res.status !== 404) throw new Error(`GET ${p} while waiting for it: ${res.describe()}`);
        if (res.status === 200 && ready(res)) return { res, delayMs };
        if (delayMs > VISIBLE_MS + LATE_MS) return { res: null, delayMs, last: res };
        await sleep(POLL_MS);
    }
}

// The session a turn created, once the store writer committed it (within VISIBLE_MS of since).
async function visibleSession(api, id, since, what) {
    const { res, delayMs, last } = await poll(api, `/v1/sessions/${id}`, since, () => true);
    assert.ok(res, `${what}: session ${id} not readable at GET /v1/sessions/{id} ${delayMs} ms after the turn (${last?.describe()})`);
    assert.ok(delayMs <= VISIBLE_MS, `${what}: session ${id} readable only ${delayMs} ms after the turn (budget ${VISIBLE_MS} ms)`);
    return res.json();
}

// GET /v1/sessions/{id}/checkpoints?query, asserting the list shape; returns the body.
async function listCheckpoints(api, id, query = '', what = `GET /v1/sessions/{id}/checkpoints${query ? `?${query}` : ''}`) {
    const res = await api.call('GET', `/v1/sessions/${id}/checkpoints${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    const j = res.json();
    const show = truncate(JSON.stringify(j), 500);
    assert.ok(isObject(j) && Array.isArray(j.checkpoints), `${what}: no checkpoints array (${show})`);
    for (const k of ['total', 'page', 'page_size']) assert.ok(Number.isInteger(j[k]), `${what}: ${k} is not an integer (${show})`);
    return j;
}

// The checkpoint list of a session once it holds n turns (within VISIBLE_MS of since); the
// list is read in one page of 100.
async function visibleCheckpoints(api, id, n, since, what) {
    const { res, delayMs, last } = await poll(api, `/v1/sessions/${id}/checkpoints?page_size=100`, since, (r) => r.json().total >= n);
    assert.ok(res, `${what}: ${n} checkpoint(s) of session ${id} not listed ${delayMs} ms after the last turn (last answer: ${last?.describe()})`);
    assert.ok(delayMs <= VISIBLE_MS, `${what}: checkpoints listed only ${delayMs} ms after the turn (budget ${VISIBLE_MS} ms)`);
    const j = await listCheckpoints(api, id, 'page_size=100', what);
    assert.equal(j.total, n, `${what}: total ${j.total}, expected the ${n} turn(s) made (${truncate(JSON.stringify(traceIds(j.checkpoints)), 400)})`);
    assert.equal(j.checkpoints.length, n, `${what}: ${j.checkpoints.length} checkpoints listed, total says ${j.total}`);
    return j.checkpoints;
}

// The messages of the one chat request fakellm got that carries marker.
async function upstreamMessages(ctx, marker, what) {
    const log = (await ctx.fakellm.requests()).filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions');
    const bodies = log.map((r) => (typeof r.body === 'string' ? JSON.parse(r.body) : r.body)).filter((b) => JSON.stringify(b?.messages ?? null).includes(marker));
    assert.equal(bodies.length, 1, `${what}: fakellm got ${bodies.length} chat requests carrying ${marker}`);
    return bodies[0].messages;
}

const isNonNegNumber = (v) => typeof v === 'number' && v >= 0;

// Asserts a checkpoint's shape and the expected values; e.content undefined: not compared.
// e: {what, sessionId, traceId, agentId, model, stream, status, code, usage (client's usage or
// null; undefined: not compared), messages, content, finishReason, truncated, ttft}
function assertCheckpoint(cp, e) {
    const what = e.what;
    const show = truncate(JSON.stringify(cp), 800);
    assert.ok(isObject(cp), `${what}: not an object (${show})`);
    for (const k of CHECKPOINT_KEYS) assert.ok(k in cp, `${what}: no ${k} (${show})`);
    assert.match(cp.id ?? '', UUID, `${what}: id (${show})`);
    assert.equal(cp.object, 'checkpoint', `${what}: object (${show})`);
    assert.equal(cp.session_id, e.sessionId, `${what}: session_id is not the X-IBEX-Session-ID of the turn (${show})`);
    assert.equal(cp.trace_id, e.traceId, `${what}: trace_id is not the X-IBEX-Trace-ID of the turn (${show})`);
    assert.equal(cp.agent_id, e.agentId ?? null, `${what}: agent_id (${show})`);
    assert.equal(cp.model, e.model ?? MODEL, `${what}: model (${show})`);
    assert.ok(typeof cp.provider === 'string' && cp.provider.length > 0, `${what}: provider (${show})`);
    assert.equal(cp.stream, e.stream, `${what}: stream (${show})`);
    assert.equal(cp.status, e.status ?? 200, `${what}: status is not the one the client got (${show})`);
    assert.equal(cp.code, e.code ?? null, `${what}: code (${show})`);
    for (const k of ['duration_ms', 'upstream_ms', 'overhead_ms']) assert.ok(isNonNegNumber(cp[k]), `${what}: ${k} ${JSON.stringify(cp[k])} is not a number >= 0 (${show})`);
    if (e.stream && (e.status ?? 200) === 200 && e.ttft !== false) assert.ok(isNonNegNumber(cp.ttft_ms), `${what}: ttft_ms of a stream ${JSON.stringify(cp.ttft_ms)} (${show})`);
    else if (!e.stream) assert.equal(cp.ttft_ms, null, `${what}: ttft_ms of a non-stream (${show})`);
    if (e.usage !== undefined) {
        const u = e.usage;
        const want = u ? [u.prompt_tokens, u.completion_tokens, u.total_tokens] : [null, null, null];
        assert.deepEqual([cp.prompt_tokens, cp.completion_tokens, cp.total_tokens], want, `${what}: tokens are not the usage the client got (${show})`);
    }
    assert.deepEqual(cp.messages, e.messages, `${what}: messages are not what the upstream got (${show})`);
    assert.ok(isObject(cp.response), `${what}: response is not an object (${show})`);
    assert.deepEqual(Object.keys(cp.response).sort(), ['content', 'finish_reason', 'role', 'tool_calls'], `${what}: response fields (${show})`);
    assert.equal(cp.response.role, 'assistant', `${what}: response.role (${show})`);
    if (e.content !== undefined) assert.equal(cp.response.content, e.content, `${what}: response.content is not the text the client received (${show})`);
    assert.equal(cp.response.tool_calls, null, `${what}: response.tool_calls of an answer without tool calls (${show})`);
    assert.equal(cp.response.finish_reason, e.finishReason, `${what}: response.finish_reason (${show})`);
    assert.equal(cp.truncated, e.truncated ?? false, `${what}: truncated (${show})`);
    assert.ok(Number.isInteger(cp.created_at) && Math.abs(cp.created_at - nowSec()) < 120, `${what}: created_at ${cp.created_at} is not now in unix seconds`);
}

// The trace of the checkpoint's turn carries the same facts.
async function assertSameFactsAsTrace(api, cp, what) {
    const { trace } = await waitTrace(api, cp.trace_id);
    assert.ok(trace, `${what}: the trace ${cp.trace_id} of the checkpoint is not readable`);
    const pick = (o) => Object.fromEntries(TRACE_FACTS.map((k) => [k, o[k]]));
    assert.deepEqual(pick(cp), pick(trace), `${what}: the checkpoint's facts differ from its trace's`);
}

// A streamed SDK turn read to its end: what the client saw.
async function sdkStream(client, req, opts) {
    const { data: stream, response } = await client.chat.completions.create({ ...req, stream: true }, opts).withResponse();
    let text = '';
    let finishReason = null;
    let usage = null;
    for await (const chunk of stream) {
        const c = chunk.choices?.[0];
        text += c?.delta?.content ?? '';
        if (c?.finish_reason) finishReason = c.finish_reason;
        if (chunk.usage) usage = chunk.usage;
    }
    return { text, finishReason, usage, headers: response.headers };
}

// Turns through the SDK on gw: a new session, a streamed turn joining it, a turn of an agent
// with a directive; the checkpoint list holds exactly those turns, oldest first, each with what
// the upstream got and the client received; pages of 1 and 2 cover them once.
export async function turnsScenario(ctx, gw) {
    const L = (s) => `${gw.label}: ${s}`;
    const { tenant, admin } = await freshTenant(gw.root, `cp-turns-${gw.label}`);
    const plain = await admin.createAgent({ name: uniqueName('cp-plain') });
    const directive = `You are checkpoint agent ${randomToken('dir')}: "quoted", ünïcödé \\ and\nnew lines.`;
    const directed = await admin.createAgent({ name: uniqueName('cp-directed'), directive });
    const key = (await admin.createKey({ name: uniqueName('cp-chat'), scopes: ['chat'] })).key;
    const client = ctx.client({ baseUrl: gw.baseUrl, apiKey: key });
    const turns = [];

    // 1: non-streaming, no session named: a new one
    {
        const what = L('turn 1 (non-streaming, no X-IBEX-Session-ID)');
        const marker = randomToken('cp1');
        const messages = [
            { role: 'system', content: 'You are a test.' },
            { role: 'user', content: `first ${marker} ünïcödé "quoted" \\ line\nbreak` },
            { role: 'assistant', content: 'an earlier answer' },
            { role: 'user', content: `second ${marker}` },
        ];
        const { data, response } = await client.chat.completions.create(body(messages), { headers: { 'X-IBEX-Agent-ID': plain.id } }).withResponse();
        const end = now();
        const { traceId, sessionId } = idsOf(response.headers, what);
        assert.ok(sessionId, `${what}: no X-IBEX-Session-ID in the response`);
        const s = await visibleSession(admin, sessionId, end, what);
        assertSession(s, { tenantId: tenant.id, agentId: plain.id, agentRole: 'chat', state: 'active', metadata: {}, what: `${what}: GET /v1/sessions/{id}` });
        assert.equal(s.session_id, sessionId, `${what}: GET /v1/sessions/{id}: session_id`);
        turns.push({ what, marker, traceId, sessionId, agentId: plain.id, stream: false, content: data.choices[0].message.content, finishReason: data.choices[0].finish_reason, usage: data.usage });
    }
    // (turn 2 is sent once GET saw the session, so it joins on any worker: a turn sent before the
    // writer committed it is checkpoints.join-at-once)
    const sid = turns[0].sessionId;
    // 2: streaming with usage, joining it
    {
        const what = L('turn 2 (stream, include_usage, joins)');
        const marker = randomToken('cp2');
        const r = await sdkStream(client, body(userTurn(`stream ${marker}`), { stream_options: { include_usage: true } }), { headers: { 'X-IBEX-Session-ID': sid, 'X-IBEX-Agent-ID': plain.id } });
        const { traceId, sessionId } = idsOf(r.headers, what);
        assert.equal(sessionId, sid, `${what}: X-IBEX-Session-ID`);
        assert.equal(r.text, expectedText(), `${what}: the streamed text`);
        assert.ok(r.usage, `${what}: no usage chunk`);
        turns.push({ what, marker, traceId, sessionId, agentId: plain.id, stream: true, content: r.text, finishReason: r.finishReason, usage: r.usage });
    }
    // 3: an agent with a directive, joining it
    {
        const what = L('turn 3 (agent with a directive, joins)');
        const marker = randomToken('cp3');
        const { data, response } = await client.chat.completions.create(body(userTurn(`directed ${marker}`)), { headers: { 'X-IBEX-Session-ID': sid, 'X-IBEX-Agent-ID': directed.id } }).withResponse();
        const { traceId, sessionId } = idsOf(response.headers, what);
        assert.equal(sessionId, sid, `${what}: X-IBEX-Session-ID`);
        turns.push({ what, marker, traceId, sessionId, agentId: directed.id, stream: false, content: data.choices[0].message.content, finishReason: data.choices[0].finish_reason, usage: data.usage });
    }
    const end = now();
    const ids = new Set(turns.map((t) => t.traceId));
    assert.equal(ids.size, 3, `${gw.label}: the three turns share trace ids: ${JSON.stringify(turns.map((t) => t.traceId))}`);

    const list = await visibleCheckpoints(admin, sid, 3, end, L('the checkpoints of the three turns'));
    assert.deepEqual(traceIds(list), turns.map((t) => t.traceId), L('checkpoints: not exactly the three turns, oldest first (trace ids)'));
    for (const [i, t] of turns.entries()) {
        const messages = await upstreamMessages(ctx, t.marker, t.what);
        assertCheckpoint(list[i], { ...t, messages, status: 200 });
        await assertSameFactsAsTrace(admin, list[i], t.what);
    }
    assert.deepEqual(list[2].messages[0], { role: 'system', content: directive }, L("turn 3: the agent's directive is not messages[0] of its checkpoint"));
    assert.equal(new Set(list.map((c) => c.id)).size, 3, L(`checkpoint ids repeat: ${JSON.stringify(list.map((c) => c.id))}`));
    assert.equal((await admin.ok('GET', `/v1/sessions/${sid}`)).state, 'active', L('the session after three turns'));

    // pages
    const d = await listCheckpoints(admin, sid);
    assert.deepEqual([d.total, d.page, d.page_size], [3, 1, 20], L('default page: total, page, page_size'));
    assert.deepEqual(d.checkpoints, list, L('the default page differs from page_size=100'));
    for (const size of [1, 2]) {
        const seen = [];
        const pages = Math.ceil(3 / size);
        for (let page = 1; page <= pages + 1; page++) {
            const j = await listCheckpoints(admin, sid, `page=${page}&page_size=${size}`);
            const want = Math.max(0, Math.min(size, 3 - (page - 1) * size));
            assert.deepEqual([j.total, j.page, j.page_size, j.checkpoints.length], [3, page, size, want], L(`page ${page} of ${size}: total, page, page_size, entries`));
            seen.push(...j.checkpoints);
        }
        assert.deepEqual(seen, list, L(`pages of ${size} do not cover the three checkpoints exactly once, oldest first`));
    }
    for (const q of ['page=0', 'page=-1', 'page=abc', 'page_size=0', 'page_size=101'])
        assertErrorResponse(await admin.call('GET', `/v1/sessions/${sid}/checkpoints?${q}`), { status: 400, code: 'VALIDATION_ERROR', what: L(`GET /v1/sessions/{id}/checkpoints?${q}`) });
    return { sid, turns: list.length };
}

// A raw turn with a chat key on gw: {res, traceId, sessionId}.
async function rawTurn(api, text, headers = {}, what = 'turn') {
    const res = await api.call('POST', '/v1/chat/completions', body(userTurn(text)), { headers });
    return { res, ...idsOf(res.headers, `${what} (HTTP ${res.status})`) };
}

// X-IBEX-Session-ID on gw: malformed 400, unknown 404, another tenant's 404 alike and that
// tenant unchanged, pending -> active by a turn, finished sessions 409 (also once the worker's
// cache of an active session has passed), the checkpoint list of unknown/foreign/malformed ids.
export async function sessionHeaderScenario(ctx, gw) {
    const L = (s) => `${gw.label}: ${s}`;
    const A = await freshTenant(gw.root, `cp-hdr-a-${gw.label}`);
    const B = await freshTenant(gw.root, `cp-hdr-b-${gw.label}`);
    const a = A.admin.as((await A.admin.createKey({ name: uniqueName('cp-hdr-chat'), scopes: ['chat'] })).key);
    const problems = [];
    const collect = async (fn) => {
        try {
            await fn();
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    };

    for (const bad of MALFORMED_IDS) {
        await collect(async () => {
            const what = L(`X-IBEX-Session-ID ${JSON.stringify(bad)}`);
            const { res, sessionId } = await rawTurn(a, 'malformed session', { 'X-IBEX-Session-ID': bad }, what);
            assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
            assert.equal(sessionId, null, `${what}: a refused turn names session ${sessionId}`);
        });
    }
    const rnd = randomUuid();
    const unknown = await rawTurn(a, 'unknown session', { 'X-IBEX-Session-ID': rnd }, L('unknown session'));
    await collect(() => assertErrorResponse(unknown.res, { status: 404, code: 'SESSION_NOT_FOUND', what: L('X-IBEX-Session-ID of an unknown session') }));

    // B's sessions: one pending, one active with a turn
    const bPending = await createSession(B.admin, { agent_role: 'b-pending', metadata: { b: 1 } });
    const bTurn = await rawTurn(B.admin, 'B turn', {}, L("B's turn"));
    assert.equal(bTurn.res.status, 200, L(`B's turn: ${bTurn.res.describe()}`));
    const bActive = await visibleSession(B.admin, bTurn.sessionId, now(), L("B's turn"));
    const bActiveCps = await visibleCheckpoints(B.admin, bActive.session_id, 1, now(), L("B's turn"));
    // B's active session sits in the session cache of the worker that ran B's turn (for 2 s):
    // named on several fresh connections, A's turns reach that worker too.
    for (const [which, s, tries] of [
        ['pending', bPending, 1],
        ['active', bActive, 8],
    ]) {
        for (let i = 0; i < tries; i++) {
            await collect(async () => {
                const what = L(`A's turn naming B's ${which} session (${i + 1} of ${tries})`);
                const { res } = await rawTurn(a, `foreign ${which}`, { 'X-IBEX-Session-ID': s.session_id }, what);
                assertErrorResponse(res, { status: 404, code: 'SESSION_NOT_FOUND', what });
                assert.deepEqual(sameAnswerForm(res, s.session_id), sameAnswerForm(unknown.res, rnd), `${what}: answered differently from an unknown session`);
            });
        }
    }
    // nothing of B changed
    await collect(async () => {
        assert.deepEqual(await B.admin.ok('GET', `/v1/sessions/${bPending.session_id}`), bPending, L("B's pending session after A named it"));
        const cps = await listCheckpoints(B.admin, bPending.session_id);
        assert.deepEqual([cps.total, cps.checkpoints.length], [0, 0], L(`B's pending session has checkpoints after A named it: ${truncate(JSON.stringify(cps), 300)}`));
        assert.deepEqual((await listCheckpoints(B.admin, bActive.session_id, 'page_size=100')).checkpoints, bActiveCps, L("B's active session: its checkpoints changed after A named it"));
    });

    // a pending session becomes active with its first turn
    const pending = await createSession(A.admin, { agent_role: 'cp-pending', metadata: { step: 1 } });
    assert.equal(pending.state, 'pending', L('POST /v1/sessions: state'));
    const sid = pending.session_id;
    const j1 = await rawTurn(a, 'join pending', { 'X-IBEX-Session-ID': sid }, L('turn naming a pending session'));
    assert.equal(j1.res.status, 200, L(`turn naming a pending session: ${j1.res.describe()}`));
    assert.equal(j1.sessionId, sid, L('turn naming a pending session: X-IBEX-Session-ID'));
    const joined = await A.admin.ok('GET', `/v1/sessions/${sid}`);
    assertSession(joined, { tenantId: A.tenant.id, agentId: null, agentRole: 'cp-pending', state: 'active', metadata: { step: 1 }, what: L('a pending session after a turn') });
    // the id in upper case names the same session
    const j2 = await rawTurn(a, 'join upper', { 'X-IBEX-Session-ID': sid.toUpperCase() }, L('turn naming the session in upper case'));
    await collect(async () => {
        assert.equal(j2.res.status, 200, L(`turn naming the session in upper case: ${j2.res.describe()}`));
        assert.equal(j2.sessionId, sid, L('turn naming the session in upper case: X-IBEX-Session-ID'));
    });
    const cps = await visibleCheckpoints(A.admin, sid, j2.res.status === 200 ? 2 : 1, now(), L('the joined session'));
    assert.deepEqual(traceIds(cps), [j1, j2].filter((t) => t.res.status === 200).map((t) => t.traceId), L('the joined session: checkpoints (trace ids)'));

    // finished sessions take no turns: never cached by a worker...
    for (const state of ['completed', 'failed', 'cancelled']) {
        await collect(async () => {
            const what = L(`turn naming a ${state} session`);
            const s = await createSession(A.admin, { agent_role: `cp-${state}` });
            if (state !== 'cancelled') await putSession(A.admin, s.session_id, { status: 'active' });
            const done = await putSession(A.admin, s.session_id, { status: state });
            const { res } = await rawTurn(a, `turn on ${state}`, { 'X-IBEX-Session-ID': s.session_id }, what);
            assertErrorResponse(res, { status: 409, code: 'SESSION_NOT_ACTIVE', what });
            assert.deepEqual(await A.admin.ok('GET', `/v1/sessions/${s.session_id}`), done, `${what}: the session changed`);
            assert.equal((await listCheckpoints(A.admin, s.session_id)).total, 0, `${what}: a checkpoint was written`);
        });
    }
    // ...and one that took turns, once the workers' 2 s trust in it has passed
    await putSession(A.admin, sid, { status: 'completed' });
    await sleep(SESSION_CACHE_PASSED_MS);
    for (let i = 0; i < 4; i++) {
        await collect(async () => {
            const what = L(`turn ${i + 1} naming a session completed ${SESSION_CACHE_PASSED_MS} ms ago`);
            const { res } = await rawTurn(a, 'after completion', { 'X-IBEX-Session-ID': sid }, what);
            assertErrorResponse(res, { status: 409, code: 'SESSION_NOT_ACTIVE', what });
        });
    }
    await collect(async () => assert.deepEqual((await listCheckpoints(A.admin, sid, 'page_size=100')).checkpoints, cps, L('the completed session: checkpoints changed by refused turns')));

    // the checkpoint list of unknown, foreign and malformed ids
    const rnd2 = randomUuid();
    const unknownList = await A.admin.call('GET', `/v1/sessions/${rnd2}/checkpoints`);
    await collect(() => assertErrorResponse(unknownList, { status: 404, code: 'SESSION_NOT_FOUND', what: L('checkpoints of an unknown session') }));
    for (const s of [bPending, bActive]) {
        await collect(async () => {
            const what = L(`checkpoints of B's ${s.state} session with A's key`);
            const res = await A.admin.call('GET', `/v1/sessions/${s.session_id}/checkpoints`);
            assertErrorResponse(res, { status: 404, code: 'SESSION_NOT_FOUND', what });
            assert.deepEqual(sameAnswerForm(res, s.session_id), sameAnswerForm(unknownList, rnd2), `${what}: answered differently from an unknown session`);
        });
    }
    for (const bad of ['not-a-uuid', '12345', `${sid}x`, 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz']) {
        await collect(async () => assertErrorResponse(await A.admin.call('GET', `/v1/sessions/${bad}/checkpoints`), { status: 400, code: 'VALIDATION_ERROR', what: L(`GET /v1/sessions/${bad}/checkpoints`) }));
    }
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);

    // the refused turns created no session: A has the joined one and the three finished ones
    const all = await A.admin.ok('GET', '/v1/sessions?page_size=100');
    assert.equal(all.total, 4, L(`A's sessions after the refused turns: ${truncate(JSON.stringify(all.sessions.map((s) => [s.agent_role, s.state])), 400)}`));
}

// On a dedicated ibex with the store of variant (lib/stores.mjs): the session lifecycle, the
// turns and the header cases.
async function onStore(ctx, variant) {
    const gw = await storeGateway(ctx, storeOf(ctx, variant, 'checkpoints'));
    const { tenant, admin } = await freshTenant(gw.root, `cp-life-${gw.label}`);
    await sessionLifecycle(admin, tenant);
    const t = await turnsScenario(ctx, gw);
    await sessionHeaderScenario(ctx, gw);
    ctx.note(`${gw.label}: lifecycle, ${t.turns} turns with their checkpoints, the X-IBEX-Session-ID cases`);
}

export default [
    {
        id: 'checkpoints.turns',
        title: 'turns (SDK): a new session in X-IBEX-Session-ID (active, role chat, the agent), a stream joining it, a directed agent; checkpoints oldest first with messages as upstream got them, the answer and usage the client saw, facts = trace; paging',
        needs: ['sdk', 'raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        async run(ctx) {
            await turnsScenario(ctx, gateway(ctx));
        },
    },
    {
        id: 'checkpoints.session-header',
        title: "X-IBEX-Session-ID: malformed 400, unknown 404, another tenant's 404 alike (that tenant unchanged), pending -> active, upper case, finished 409 (also after the 2 s cache); checkpoint list 404/400",
        needs: ['raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        async run(ctx) {
            await sessionHeaderScenario(ctx, gateway(ctx));
        },
    },
    {
        id: 'checkpoints.join-at-once',
        title: 'the next turn, sent as soon as the first answered, joins the session the first one started (2 workers, a fresh connection each)',
        needs: ['raw', 'admin'],
        timeoutMs: 40000,
        async run(ctx) {
            const { admin } = await freshTenant(new IbexAdmin(ctx.target, ctx.apiKey), 'cp-at-once');
            const pairs = 30;
            const failed = [];
            for (let i = 0; i < pairs; i++) {
                const first = await admin.call('POST', '/v1/chat/completions', { model: 'mock', messages: userTurn(`first ${i}`) });
                assert.equal(first.status, 200, `pair ${i}, first turn: ${first.describe()}`);
                const { sessionId } = idsOf(first.headers, `pair ${i}, first turn`);
                const next = await admin.call('POST', '/v1/chat/completions', { model: 'mock', messages: userTurn(`next ${i}`) }, { headers: { 'X-IBEX-Session-ID': sessionId } });
                if (next.status !== 200 || next.headers['x-ibex-session-id'] !== sessionId) failed.push(`pair ${i}: ${next.describe()}`);
            }
            ctx.note(`${pairs - failed.length} of ${pairs} next turns joined`);
            assert.ok(failed.length === 0, `${failed.length} of ${pairs} turns sent right after the one that started their session were refused, e.g.:\n${failed.slice(0, 3).join('\n')}`);
        },
    },
    {
        id: 'checkpoints.failures',
        title: 'upstream 500 / 503 stream: checkpoint 502 UPSTREAM_ERROR, content null; reset mid-stream: the part the client got; answer over 1 MiB: truncated prefix; refused before routing (empty messages): no session, no checkpoint',
        needs: ['raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        async run(ctx) {
            const { key, admin } = await freshTenant(new IbexAdmin(ctx.target, ctx.apiKey), 'cp-fail');
            const chatter = admin.as((await admin.createKey({ name: uniqueName('cp-fail-chat'), scopes: ['chat'] })).key);
            let sessions = 0;
            // answered with an error before any answer byte
            for (const [what, stream, k] of [
                ['upstream 500', false, knobs({ status: 500 })],
                ['upstream 503, stream', true, knobs({ status: 503 })],
            ]) {
                const text = `${what} ${randomToken('fail')}`;
                const res = await chatter.call('POST', '/v1/chat/completions', body(userTurn(text), { stream }), { headers: k });
                const end = now();
                const { traceId, sessionId } = idsOf(res.headers, what);
                assertErrorResponse(res, { status: 502, code: 'UPSTREAM_ERROR', what });
                assert.ok(sessionId, `${what}: a turn sent upstream has no X-IBEX-Session-ID`);
                sessions++;
                const [cp] = await visibleCheckpoints(admin, sessionId, 1, end, what);
                assertCheckpoint(cp, { what, sessionId, traceId, stream, status: 502, code: 'UPSTREAM_ERROR', usage: null, messages: userTurn(text), content: null, finishReason: null });
                await assertSameFactsAsTrace(admin, cp, what);
            }
            // the upstream resets the stream after 3 chunks: the client has those, then an error event
            {
                const what = 'stream reset after 3 chunks';
                const text = `reset ${randomToken('fail')}`;
                const r = await streamChat(ctx.target, { body: body(userTurn(text)), headers: { ...bearer(key), ...knobs({ resetAfter: 3 }) } });
                const end = now();
                const { traceId, sessionId } = idsOf(r.head.headers, what);
                assert.ok(r.acc.error, `${what}: no error event in the stream`);
                assert.equal(r.acc.text, expectedText(3), `${what}: the text before the reset`);
                sessions++;
                const [cp] = await visibleCheckpoints(admin, sessionId, 1, end, what);
                assertCheckpoint(cp, { what, sessionId, traceId, stream: true, status: 200, code: r.acc.error.code, messages: userTurn(text), content: r.acc.text, finishReason: null, ttft: false });
            }
            // an answer over 1 MiB: the checkpoint keeps its first 1 MiB
            {
                const what = 'a streamed answer of 1.25 MiB';
                const text = `big ${randomToken('fail')}`;
                const chunks = 40;
                const chunkBytes = 32 * 1024;
                const r = await streamChat(ctx.target, { body: body(userTurn(text)), headers: { ...bearer(key), ...knobs({ chunks, chunkBytes }) } });
                const end = now();
                const { traceId, sessionId } = idsOf(r.head.headers, what);
                assert.equal(r.acc.text.length, chunks * chunkBytes, `${what}: the client got ${r.acc.text.length} characters`);
                sessions++;
                const [cp] = await visibleCheckpoints(admin, sessionId, 1, end, what);
                assertCheckpoint(cp, { what, sessionId, traceId, stream: true, messages: userTurn(text), finishReason: 'stop', truncated: true });
                const got = cp.response.content ?? '';
                assert.ok(r.acc.text.startsWith(got), `${what}: the kept content (${got.length} chars) is not a prefix of the answer`);
                assert.equal(Buffer.byteLength(got), ANSWER_MAX_BYTES, `${what}: kept ${Buffer.byteLength(got)} bytes of the answer, expected its first ${ANSWER_MAX_BYTES}`);
                ctx.note(`${what}: checkpoint keeps ${got.length} of ${r.acc.text.length} characters, truncated ${cp.truncated}`);
            }
            // refused before routing: a trace, but no session and no checkpoint
            {
                const what = 'empty messages';
                const res = await chatter.call('POST', '/v1/chat/completions', body([]));
                const end = now();
                assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
                const { traceId, sessionId } = idsOf(res.headers, what);
                assert.equal(sessionId, null, `${what}: a request refused before routing names session ${sessionId}`);
                const { trace } = await waitTrace(admin, traceId, end);
                assert.ok(trace, `${what}: no trace`);
                assert.equal(trace.session_id, null, `${what}: the trace names session ${trace.session_id}`);
            }
            {
                const what = 'empty messages naming a pending session';
                const s = await createSession(admin, { agent_role: 'cp-refused' });
                sessions++;
                const res = await chatter.call('POST', '/v1/chat/completions', body([]), { headers: { 'X-IBEX-Session-ID': s.session_id } });
                assertErrorResponse(res, { status: 400, code: 'VALIDATION_ERROR', what });
                await sleep(100); // a checkpoint would have been written by now (the writer batches 10 ms)
                assert.deepEqual(await admin.ok('GET', `/v1/sessions/${s.session_id}`), s, `${what}: the session changed`);
                const cps = await listCheckpoints(admin, s.session_id);
                assert.equal(cps.total, 0, `${what}: checkpoints ${truncate(JSON.stringify(cps), 300)}`);
            }
            const all = await admin.ok('GET', '/v1/sessions?page_size=100');
            assert.equal(all.total, sessions, `sessions of the tenant: ${all.total}, expected one per turn sent plus the pending one (${sessions}): ${truncate(JSON.stringify(all.sessions.map((s) => [s.agent_role, s.state])), 400)}`);
        },
    },
    {
        id: 'checkpoints.scopes',
        title: 'GET /v1/sessions/{id}/checkpoints needs sessions:read; chat, sessions:write, traces:read, keys:admin keys -> 403 INSUFFICIENT_SCOPE',
        needs: ['raw', 'fakellm', 'admin'],
        async run(ctx) {
            const { admin } = await freshTenant(new IbexAdmin(ctx.target, ctx.apiKey), 'cp-scopes');
            const keyOf = async (scopes) => admin.as((await admin.createKey({ name: uniqueName(scopes.join('+')), scopes })).key);
            const chatter = await keyOf(['chat']);
            const { res, sessionId } = await rawTurn(chatter, 'scoped turn', {}, 'chat key turn');
            assert.equal(res.status, 200, `chat key turn: ${res.describe()}`);
            const cps = await visibleCheckpoints(admin, sessionId, 1, now(), 'chat key turn');
            const reader = await keyOf(['sessions:read']);
            assert.deepEqual((await listCheckpoints(reader, sessionId, 'page_size=100', 'a sessions:read key')).checkpoints, cps, 'a sessions:read key sees other checkpoints than the admin key');
            assertErrorResponse(await reader.call('GET', `/v1/sessions/${randomUuid()}/checkpoints`), { status: 404, code: 'SESSION_NOT_FOUND', what: 'sessions:read, unknown session' });
            const problems = [];
            for (const [name, k] of [
                ['chat', chatter],
                ['sessions:write', await keyOf(['sessions:write'])],
                ['traces:read', await keyOf(['traces:read'])],
                ['keys:admin', await keyOf(['keys:admin'])],
            ]) {
                for (const [which, id] of [
                    ['its session', sessionId],
                    ['an unknown id', randomUuid()],
                ]) {
                    const what = `a ${name} key, GET /v1/sessions/{${which}}/checkpoints`;
                    try {
                        const e = assertErrorResponse(await k.call('GET', `/v1/sessions/${id}/checkpoints`), { status: 403, code: 'INSUFFICIENT_SCOPE', what });
                        assert.equal(e.type, 'permission_error', `${what}: error.type`);
                    } catch (err) {
                        problems.push(err.message.split('\n')[0]);
                    }
                }
            }
            assert.deepEqual(problems, [], `${problems.length} scope problem(s):\n${problems.join('\n')}`);
        },
    },
    {
        id: 'checkpoints.postgres',
        title: 'on Postgres (IBEX_TEST_PG_URL): session lifecycle, turns (stream and not) with their checkpoints, the X-IBEX-Session-ID cases',
        needs: ['sdk', 'raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await onStore(ctx, 'postgres');
        },
    },
    {
        id: 'checkpoints.postgres-redis',
        title: 'on Postgres with Redis (IBEX_TEST_PG_URL, IBEX_TEST_REDIS_URL): the same',
        needs: ['sdk', 'raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await onStore(ctx, 'postgres-redis');
        },
    },
    {
        id: 'checkpoints.sqlite-redis',
        title: 'on SQLite with Redis (IBEX_TEST_REDIS_URL): the same',
        needs: ['sdk', 'raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await onStore(ctx, 'sqlite-redis');
        },
    },
];
