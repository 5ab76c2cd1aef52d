// Traces (docs/sessions.md): every chat completion that passed authentication leaves a trace
// whose id is in X-IBEX-Trace-ID, readable at GET /v1/traces/{id} within a few tens of ms
// (the checks allow 500 ms and note the delay they measured): request id, model, provider,
// stream, the client's status and error code, durations and the usage the client saw. A refused
// credential leaves none; another tenant's trace answers like an unknown id; traces:read only.
// The visible, errors and isolation scenarios are functions of a gateway (lib/stores.mjs): here
// on the shared ibex (SQLite), in state.* on Postgres, Postgres with Redis and SQLite with Redis.
import assert from 'node:assert/strict';
import { assertErrorResponse } from '../lib/expect.mjs';
import { streamChat } from '../lib/chat.mjs';
import { knobs } from '../lib/fakellm.mjs';
import { IbexAdmin, bearer, freshTenant, nowSec, randomApiKey, randomUuid, sameAnswerForm, uniqueName, wireText } from '../lib/ibexadmin.mjs';
import { gateway } from '../lib/stores.mjs';
import { now, sleep, truncate } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const VISIBLE_MS = 500; // the budget of these checks; the docs promise a few tens of ms
const POLL_MS = 20;
const LATE_MS = 3000; // how long past the budget to keep looking, to tell "late" from "never"

const chatBody = (text, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content: text }], ...extra });

// Polls GET /v1/traces/{id} every POLL_MS from `since` (now() when the response was complete)
// until it answers 200. Returns {trace, delayMs}; trace null when it never appeared. Any answer
// other than 200 or 404 fails at once.
export async function waitTrace(api, id, since = now()) {
    for (;;) {
        const res = await api.call('GET', `/v1/traces/${id}`);
        const delayMs = Math.round(now() - since);
        if (res.status === 200) return { trace: res.json(), delayMs };
        if (res.status !== 404) throw new Error(`GET /v1/traces/${id} while waiting for it: ${res.describe()}`);
        if (delayMs > VISIBLE_MS + LATE_MS) return { trace: null, delayMs };
        await sleep(POLL_MS);
    }
}

// waitTrace, asserting the trace appeared within VISIBLE_MS; returns the trace.
async function visibleTrace(api, id, since, what, delays) {
    const { trace, delayMs } = await waitTrace(api, id, since);
    assert.ok(trace, `${what}: trace ${id} not visible at GET /v1/traces/{id} ${delayMs} ms after the response ended`);
    delays.push(`${what}: ${delayMs} ms`);
    assert.ok(delayMs <= VISIBLE_MS, `${what}: trace visible only ${delayMs} ms after the response ended (budget ${VISIBLE_MS} ms)`);
    return trace;
}

const isNonNegInt = (v) => Number.isInteger(v) && v >= 0;

// Asserts the documented shape and the expected values (undefined: not checked).
function assertTrace(t, e) {
    const what = e.what || 'trace';
    const show = truncate(JSON.stringify(t), 600);
    assert.equal(t.id, e.id, `${what}: id is not the X-IBEX-Trace-ID header (${show})`);
    assert.equal(t.object, 'trace', `${what}: object (${show})`);
    assert.equal(t.tenant_id, e.tenantId, `${what}: tenant_id (${show})`);
    for (const k of ['request_id', 'agent_id', 'session_id', 'model', 'provider', 'stream', 'status', 'code', 'duration_ms', 'upstream_ms', 'overhead_ms', 'ttft_ms', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'created_at'])
        assert.ok(k in t, `${what}: no ${k} (${show})`);
    assert.equal(t.request_id, e.requestId, `${what}: request_id is not the X-Request-ID of the response (${show})`);
    if (e.agentId !== 'any') assert.equal(t.agent_id, e.agentId ?? null, `${what}: agent_id (${show})`);
    assert.equal(t.session_id, e.sessionId, `${what}: session_id is not the X-IBEX-Session-ID of the response (${show})`);
    if (e.model !== undefined) assert.equal(t.model, e.model, `${what}: model (${show})`);
    if (e.provider !== undefined) assert.equal(t.provider, e.provider, `${what}: provider (${show})`);
    else if (e.status === 200) assert.ok(typeof t.provider === 'string' && t.provider.length > 0, `${what}: provider (${show})`);
    assert.equal(t.stream, e.stream, `${what}: stream (${show})`);
    assert.equal(t.status, e.status, `${what}: status is not the client's (${show})`);
    assert.equal(t.code, e.code ?? null, `${what}: code (${show})`);
    for (const k of ['duration_ms', 'overhead_ms']) assert.ok(isNonNegInt(t[k]) || (typeof t[k] === 'number' && t[k] >= 0), `${what}: ${k} ${JSON.stringify(t[k])} is not a number >= 0 (${show})`);
    if (e.upstream !== false) {
        assert.ok(typeof t.upstream_ms === 'number' && t.upstream_ms >= 0, `${what}: upstream_ms ${JSON.stringify(t.upstream_ms)} is not a number >= 0 (${show})`);
        assert.ok(t.upstream_ms <= t.duration_ms + 1, `${what}: upstream_ms ${t.upstream_ms} > duration_ms ${t.duration_ms} (${show})`);
    }
    if (e.minUpstreamMs !== undefined) {
        assert.ok(t.upstream_ms >= e.minUpstreamMs, `${what}: upstream_ms ${t.upstream_ms} < the ${e.minUpstreamMs} ms the upstream took at least (${show})`);
        assert.ok(t.duration_ms >= e.minUpstreamMs, `${what}: duration_ms ${t.duration_ms} < the ${e.minUpstreamMs} ms the upstream took at least (${show})`);
    }
    if (e.stream && e.status === 200 && e.ttft !== false) {
        assert.ok(typeof t.ttft_ms === 'number' && t.ttft_ms >= 0, `${what}: ttft_ms of a stream ${JSON.stringify(t.ttft_ms)} (${show})`);
        assert.ok(t.ttft_ms <= t.duration_ms + 1, `${what}: ttft_ms ${t.ttft_ms} > duration_ms ${t.duration_ms} (${show})`);
        if (e.minTtftMs !== undefined) assert.ok(t.ttft_ms >= e.minTtftMs, `${what}: ttft_ms ${t.ttft_ms} < the ${e.minTtftMs} ms before the first token (${show})`);
    } else if (!e.stream) assert.equal(t.ttft_ms, null, `${what}: ttft_ms of a non-stream (${show})`);
    if (e.usage !== undefined) {
        const u = e.usage;
        const want = u ? [u.prompt_tokens, u.completion_tokens, u.total_tokens] : [null, null, null];
        assert.deepEqual([t.prompt_tokens, t.completion_tokens, t.total_tokens], want, `${what}: tokens are not the usage the client got (${show})`);
    }
    assert.ok(Number.isInteger(t.created_at) && Math.abs(t.created_at - nowSec()) < 120, `${what}: created_at ${t.created_at} is not now in unix seconds`);
}

// The trace id and request id a response carries (asserted present and well-formed).
function idsOf(head, what) {
    const id = head.headers['x-ibex-trace-id'];
    assert.match(id ?? '', UUID, `${what}: X-IBEX-Trace-ID ${JSON.stringify(id)} is not a UUID`);
    const rid = head.headers['x-request-id'];
    assert.ok(rid, `${what}: no X-Request-ID`);
    // the turn's session (a new one: no request here names one); none for a request refused
    // before it was routed
    const sid = head.headers['x-ibex-session-id'] ?? null;
    if (sid !== null) assert.match(sid, UUID, `${what}: X-IBEX-Session-ID ${JSON.stringify(sid)} is not a UUID`);
    return { id, rid, sid };
}

// A chat completion over a raw connection; returns {res, ids, end} (end: now() once read).
async function chat(api, body, headers = {}, what = 'chat') {
    const res = await api.call('POST', '/v1/chat/completions', body, { headers });
    const end = now();
    return { res, end, ...idsOf(res, `${what} (HTTP ${res.status})`) };
}

// A streamed completion on gw read to its end; returns {r, id, rid, end}.
async function streamed(gw, key, body, headers = {}, what = 'stream') {
    const r = await streamChat(gw.target, { body, headers: { ...bearer(key), ...headers } });
    const end = now();
    return { r, end, ...idsOf(r.head, what) };
}

// On gw: completions (non-stream, stream, with an agent and usage, the mock model) carry
// X-IBEX-Trace-ID; each trace is readable within VISIBLE_MS with the facts of the turn.
export async function tracesVisible(ctx, gw = gateway(ctx)) {
    const { tenant, key, admin } = await freshTenant(gw.root, 'traces');
    const agent = await admin.createAgent({ name: uniqueName('traced') });
    const delays = [];
    const seen = new Set();
    const fresh = (id, what) => {
        assert.ok(!seen.has(id), `${what}: trace id ${id} was given before`);
        seen.add(id);
    };

    // non-stream, no agent, the upstream 60 ms slow
    {
        const what = 'non-stream';
        const { res, end, id, rid, sid } = await chat(admin, chatBody('trace me'), knobs({ delayMs: 60 }), what);
        assert.equal(res.status, 200, `${what}: ${res.describe()}`);
        fresh(id, what);
        const body = res.json();
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, model: MODEL, stream: false, status: 200, usage: body.usage, minUpstreamMs: 50 });
        gw.note(`${what}: provider ${JSON.stringify(t.provider)}, duration ${t.duration_ms} ms, upstream ${t.upstream_ms} ms, overhead ${t.overhead_ms} ms`);
    }
    // non-stream, with agent and the client's X-Request-ID
    {
        const what = 'non-stream with agent';
        const sent = uniqueName('rid');
        const { res, end, id, rid, sid } = await chat(admin, chatBody('trace my agent'), { 'X-IBEX-Agent-ID': agent.id, 'X-Request-ID': sent }, what);
        assert.equal(res.status, 200, `${what}: ${res.describe()}`);
        assert.equal(rid, sent, `${what}: X-Request-ID not echoed`);
        fresh(id, what);
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: sent, agentId: agent.id, model: MODEL, stream: false, status: 200, usage: res.json().usage });
    }
    // stream with usage, agent, 80 ms to the first token
    {
        const what = 'stream with include_usage';
        const { r, end, id, rid, sid } = await streamed(gw, key, chatBody('trace my stream', { stream_options: { include_usage: true } }), { 'X-IBEX-Agent-ID': agent.id, ...knobs({ firstTokenMs: 80 }) }, what);
        assert.ok(r.complete && r.acc.done && !r.acc.error, `${what}: the stream did not end normally`);
        assert.ok(r.acc.usage, `${what}: no usage chunk`);
        fresh(id, what);
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, agentId: agent.id, model: MODEL, stream: true, status: 200, usage: r.acc.usage, minTtftMs: 70 });
        gw.note(`${what}: ttft ${t.ttft_ms} ms, duration ${t.duration_ms} ms, upstream ${t.upstream_ms} ms`);
    }
    // stream without include_usage: tokens as the provider reported them (null when not)
    {
        const what = 'stream without include_usage';
        const { r, end, id, rid, sid } = await streamed(gw, key, chatBody('trace my plain stream'), {}, what);
        assert.ok(r.complete && r.acc.done && !r.acc.error, `${what}: the stream did not end normally`);
        fresh(id, what);
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, model: MODEL, stream: true, status: 200 });
        const tok = [t.prompt_tokens, t.completion_tokens, t.total_tokens];
        const allNull = tok.every((v) => v === null);
        const allInt = tok.every((v) => Number.isInteger(v)) && t.total_tokens === t.prompt_tokens + t.completion_tokens;
        assert.ok(allNull || allInt, `${what}: tokens ${JSON.stringify(tok)} are neither all null nor a consistent usage`);
        gw.note(`${what}: tokens ${JSON.stringify(tok)}`);
    }
    // the built-in mock provider
    {
        const what = 'model mock';
        const { res, end, id, rid, sid } = await chat(admin, { model: 'mock', messages: [{ role: 'user', content: 'trace the mock' }] }, {}, what);
        assert.equal(res.status, 200, `${what}: ${res.describe()}`);
        fresh(id, what);
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, model: 'mock', provider: 'mock', stream: false, status: 200, usage: res.json().usage ?? null, upstream: false });
    }
    gw.note(`visible after: ${delays.join(', ')}`);
}

// On gw: refused requests leave a trace with the client's status and code; refused credentials and
// identity refusals leave none.
export async function tracesErrors(ctx, gw = gateway(ctx)) {
    const { tenant, key, admin } = await freshTenant(gw.root, 'traces-err');
    const delays = [];
    const cases = [
        ['upstream 500', chatBody('fail 500'), knobs({ status: 500 }), 502, 'UPSTREAM_ERROR'],
        ['upstream 429', chatBody('fail 429'), knobs({ status: 429, retryAfter: 3 }), 429, 'UPSTREAM_RATE_LIMITED'],
        ['upstream 503, stream', chatBody('fail stream', { stream: true }), knobs({ status: 503 }), 502, 'UPSTREAM_ERROR'],
        ['empty messages', { model: MODEL, messages: [] }, {}, 400, 'VALIDATION_ERROR'],
    ];
    const problems = [];
    for (const [what, body, headers, status, code] of cases) {
        try {
            const { res, end, id, rid, sid } = await chat(admin, body, headers, what);
            const e = assertErrorResponse(res, { status, code, what });
            const t = await visibleTrace(admin, id, end, what, delays);
            assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, stream: Boolean(body.stream), status: res.status, code: e.code, usage: null, upstream: false });
            if (code.startsWith('UPSTREAM')) assert.equal(t.model, MODEL, `${what}: model`);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    // a stream cut by the upstream after 3 chunks: 200 to the client, then an error event
    try {
        const what = 'stream reset mid-way';
        const { r, end, id, rid, sid } = await streamed(gw, key, chatBody('cut me'), knobs({ resetAfter: 3 }), what);
        assert.ok(r.acc.error, `${what}: no error event in the stream`);
        const t = await visibleTrace(admin, id, end, what, delays);
        assertTrace(t, { what, id, sessionId: sid, tenantId: tenant.id, requestId: rid, model: MODEL, stream: true, status: 200, code: r.acc.error.code, ttft: false });
    } catch (err) {
        problems.push(err.message.split('\n')[0]);
    }
    // refused credentials: nothing to attribute, no trace id handed out
    const revoked = await admin.createKey({ name: uniqueName('revoked'), scopes: ['chat'] });
    await admin.revoke('keys', revoked.id);
    for (const [what, headers, code] of [
        ['unknown key', bearer(randomApiKey()), 'INVALID_TOKEN'],
        ['malformed token', { Authorization: 'Bearer nope' }, 'INVALID_TOKEN'],
        ['revoked key', bearer(revoked.key), 'TOKEN_REVOKED'],
        ['no token', {}, 'MISSING_TOKEN'],
    ]) {
        const res = await admin.as(null).call('POST', '/v1/chat/completions', chatBody('no trace'), { headers });
        try {
            assertErrorResponse(res, { status: 401, code, what });
            assert.equal(res.headers['x-ibex-trace-id'], undefined, `${what}: a 401 carries X-IBEX-Trace-ID ${res.headers['x-ibex-trace-id']}`);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    // Refusals by the identity layer after the credential was recognised (scope, agent
    // header) happen before the chat pipeline: docs/sessions.md says they leave no trace
    // (the audit trail has them).
    const chatless = await admin.createKey({ name: uniqueName('no-chat'), scopes: ['traces:read'] });
    for (const [what, api, headers, status, code] of [
        ['a key without chat (403)', admin.as(chatless.key), {}, 403, 'INSUFFICIENT_SCOPE'],
        ['an unknown agent (404)', admin, { 'X-IBEX-Agent-ID': randomUuid() }, 404, 'AGENT_NOT_FOUND'],
        ['a malformed agent id (400)', admin, { 'X-IBEX-Agent-ID': 'not-a-uuid' }, 400, 'VALIDATION_ERROR'],
    ]) {
        try {
            const res = await api.call('POST', '/v1/chat/completions', chatBody('identity refusal'), { headers });
            assertErrorResponse(res, { status, code, what });
            assert.equal(res.headers['x-ibex-trace-id'], undefined, `${what}: carries X-IBEX-Trace-ID ${res.headers['x-ibex-trace-id']}`);
        } catch (err) {
            problems.push(err.message.split('\n')[0]);
        }
    }
    gw.note(`visible after: ${delays.join(', ')}`);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
}

// On gw: another tenant's trace answers like an unknown id; malformed ids 400.
export async function tracesIsolation(ctx, gw = gateway(ctx)) {
    const root = gw.root;
    const A = await freshTenant(root, 'traces-iso-a');
    const B = await freshTenant(root, 'traces-iso-b');
    const bAgent = await B.admin.createAgent({ name: uniqueName('traces-b') });
    const sentRid = uniqueName('b-rid');
    const b = await chat(B.admin, chatBody('B private'), { 'X-IBEX-Agent-ID': bAgent.id, 'X-Request-ID': sentRid }, "B's chat");
    assert.equal(b.res.status, 200, `B's chat: ${b.res.describe()}`);
    const { trace: bt } = await waitTrace(B.admin, b.id, b.end);
    assert.ok(bt, "B's trace never became visible to B");
    const a = await chat(A.admin, chatBody('A own'), {}, "A's chat");
    assert.equal(a.res.status, 200, `A's chat: ${a.res.describe()}`);
    assert.ok((await waitTrace(A.admin, a.id, a.end)).trace, "A's trace never became visible to A");

    const rid = randomUuid();
    const rnd = await A.admin.call('GET', `/v1/traces/${rid}`);
    assertErrorResponse(rnd, { status: 404, code: 'TRACE_NOT_FOUND', what: 'unknown trace' });
    const res = await A.admin.call('GET', `/v1/traces/${b.id}`);
    assertErrorResponse(res, { status: 404, code: 'TRACE_NOT_FOUND', what: "B's trace with A's key" });
    assert.deepEqual(sameAnswerForm(res, b.id), sameAnswerForm(rnd, rid), "B's trace is answered differently from an unknown one");
    const text = wireText(res);
    for (const s of [B.tenant.id, bAgent.id, sentRid]) assert.ok(!text.includes(s), `the answer carries B's ${s}`);
    // B's view is intact; A's trace is not B's
    assert.equal(bt.agent_id, bAgent.id, "B's trace: agent_id");
    assertErrorResponse(await B.admin.call('GET', `/v1/traces/${a.id}`), { status: 404, code: 'TRACE_NOT_FOUND', what: "A's trace with B's key" });

    for (const bad of ['not-a-uuid', '12345', `${b.id}x`, 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'])
        assertErrorResponse(await A.admin.call('GET', `/v1/traces/${bad}`), { status: 400, code: 'VALIDATION_ERROR', what: `GET /v1/traces/${bad}` });
}

export default [
    {
        id: 'traces.visible',
        title: 'a completion (non-stream, stream, with agent and usage) carries X-IBEX-Trace-ID; GET /v1/traces/{id} shows it within 500 ms with request id, model, provider, stream, status, durations, tokens, agent',
        needs: ['raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        run: tracesVisible,
    },
    {
        id: 'traces.errors',
        title: "refused requests leave a trace with the client's status and code (upstream 500/429, stream refused, mid-stream reset, bad body); a refused credential (401) leaves none",
        needs: ['raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        run: tracesErrors,
    },
    {
        id: 'traces.isolation',
        title: "another tenant's trace id -> 404 TRACE_NOT_FOUND exactly like an unknown id; malformed id 400",
        needs: ['raw', 'fakellm', 'admin'],
        run: tracesIsolation,
    },
    {
        id: 'traces.scopes',
        title: 'GET /v1/traces/{id} needs traces:read (any key of the tenant sees its traces); chat, sessions:*, keys:admin keys -> 403 INSUFFICIENT_SCOPE',
        needs: ['raw', 'fakellm', 'admin'],
        async run(ctx) {
            const { tenant, admin } = await freshTenant(gateway(ctx).root, 'traces-scopes');
            const keyOf = async (scopes) => admin.as((await admin.createKey({ name: uniqueName(scopes.join('+')), scopes })).key);
            const chatter = await keyOf(['chat']);
            const reader = await keyOf(['traces:read']);
            const c = await chat(chatter, chatBody('scoped trace'), {}, 'chat key');
            assert.equal(c.res.status, 200, `chat key: ${c.res.describe()}`);
            const { trace } = await waitTrace(reader, c.id, c.end);
            assert.ok(trace, 'a traces:read key never saw the trace of a chat key of its tenant');
            assertTrace(trace, { what: 'read with a traces:read key', id: c.id, sessionId: c.sid, tenantId: tenant.id, requestId: c.rid, model: MODEL, stream: false, status: 200, usage: c.res.json().usage });
            assertErrorResponse(await reader.call('GET', `/v1/traces/${randomUuid()}`), { status: 404, code: 'TRACE_NOT_FOUND', what: 'traces:read, unknown id' });

            const problems = [];
            for (const [name, k] of [
                ['chat', chatter],
                ['sessions:read', await keyOf(['sessions:read'])],
                ['sessions:write', await keyOf(['sessions:write'])],
                ['keys:admin', await keyOf(['keys:admin'])],
            ]) {
                for (const [which, id] of [
                    ['its trace', c.id],
                    ['an unknown id', randomUuid()],
                ]) {
                    const what = `a ${name} key, GET /v1/traces/{${which}}`;
                    try {
                        const e = assertErrorResponse(await k.call('GET', `/v1/traces/${id}`), { status: 403, code: 'INSUFFICIENT_SCOPE', what });
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
        id: 'traces.recording-modes',
        title: 'recording traces: a trace but no session, no checkpoint, X-IBEX-Session-ID ignored; recording off: no trace id at all; the store holds nothing of those requests',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            for (const mode of ['traces', 'off']) {
                const ibex = await ctx.ibex({ name: `recording-${mode}`, settings: { recording: mode } });
                const admin = new IbexAdmin(ibex.target, ctx.apiKey);
                const named = (await admin.call('POST', '/v1/sessions', { agent_role: 'recorded' })).json();
                assert.match(named.session_id ?? '', UUID, `${mode}: POST /v1/sessions still works: ${JSON.stringify(named)}`);
                for (const [what, headers] of [
                    ['no session header', {}],
                    ['naming a session', { 'X-IBEX-Session-ID': named.session_id }],
                    ['naming an unknown session', { 'X-IBEX-Session-ID': randomUuid() }],
                ]) {
                    const w = `recording ${mode}, ${what}`;
                    const res = await admin.call('POST', '/v1/chat/completions', chatBody(`recorded ${mode}`), { headers });
                    const end = now();
                    assert.equal(res.status, 200, `${w}: ${res.describe()}`);
                    assert.equal(res.headers['x-ibex-session-id'], undefined, `${w}: X-IBEX-Session-ID ${res.headers['x-ibex-session-id']}`);
                    const id = res.headers['x-ibex-trace-id'];
                    if (mode === 'off') {
                        assert.equal(id, undefined, `${w}: X-IBEX-Trace-ID ${id} although nothing is recorded`);
                        continue;
                    }
                    assert.match(id ?? '', UUID, `${w}: X-IBEX-Trace-ID ${JSON.stringify(id)}`);
                    const { trace } = await waitTrace(admin, id, end);
                    assert.ok(trace, `${w}: the trace never became visible`);
                    assert.equal(trace.session_id, null, `${w}: the trace names session ${trace.session_id}`);
                }
                const cps = (await admin.call('GET', `/v1/sessions/${named.session_id}/checkpoints`)).json();
                assert.equal(cps.total, 0, `${mode}: the named session has checkpoints: ${truncate(JSON.stringify(cps), 300)}`);
                const sessions = (await admin.call('GET', '/v1/sessions?page_size=100')).json();
                assert.deepEqual(sessions.sessions.map((x) => x.session_id), [named.session_id], `${mode}: chat turns created sessions`);
                const state = (await admin.call('GET', `/v1/sessions/${named.session_id}`)).json().state;
                assert.equal(state, 'pending', `${mode}: a turn naming the session moved it to ${state}`);
                await ibex.stop();
            }
        },
    },
];
