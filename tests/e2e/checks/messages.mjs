// Anthropic-compatible ingress (docs/providers.md, "Anthropic-compatible ingress: POST
// /v1/messages"): the official @anthropic-ai/sdk client pointed at ibex, served by every kind of
// provider: the mock model, an openai-type provider (the shared fakellm), and anthropic-type and
// gemini-type providers (fakellm speaks both). Answers and streams in Anthropic's shape (content
// blocks, stop reasons, usage), tool use round trips, the system prompt and the agent's directive
// as the upstream got them, errors in Anthropic's shape (401, 403, 400, 404, an upstream refusal,
// a stream that breaks after it started), x-api-key as well as Authorization: Bearer, and the
// trace, checkpoint, metrics and Idempotency-Key replay of a /v1/messages turn.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_CHUNKS, TOOL_ARGS, expectedText, knobs, promptTokens } from '../lib/fakellm.mjs';
import { IbexAdmin, freshTenant, uniqueName } from '../lib/ibexadmin.mjs';
import { SkipError, randomToken, sleep, truncate } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';

let anthropicSdk = null;

// The Anthropic SDK class, or a SKIP with the command that installs it.
async function sdk() {
    if (anthropicSdk) return anthropicSdk;
    try {
        const mod = await import('@anthropic-ai/sdk');
        anthropicSdk = mod.Anthropic || mod.default;
    } catch (e) {
        throw new SkipError(`@anthropic-ai/sdk not installed (${e.code || e.message}); run: npm ci --prefix tests/e2e`);
    }
    return anthropicSdk;
}

// An Anthropic client of the gateway at baseUrl (its root: the SDK adds /v1/messages). apiKey goes
// as Authorization: Bearer (the SDK's way since 1.x); xApiKey sends it as x-api-key instead.
async function client(ctx, { baseUrl = ctx.baseUrl, apiKey = ctx.apiKey, xApiKey = false, headers = {} } = {}) {
    const Anthropic = await sdk();
    return new Anthropic({
        baseURL: baseUrl,
        apiKey: xApiKey ? null : apiKey,
        authToken: null,
        maxRetries: 0,
        timeout: 20000,
        defaultHeaders: xApiKey ? { ...headers, 'X-Api-Key': apiKey } : headers,
    });
}

// Awaits fn(), which must throw the SDK's APIError with status and Anthropic's error shape of
// type (and ibex's code when given). Returns the error.
async function expectError(fn, { status, type, code, what }) {
    const Anthropic = await sdk();
    let err = null;
    let value;
    try {
        value = await fn();
    } catch (e) {
        err = e;
    }
    assert.ok(err, `${what}: expected ${status} ${type}, but it succeeded: ${truncate(JSON.stringify(value), 300)}`);
    assert.ok(err instanceof Anthropic.APIError, `${what}: expected an APIError, got ${err.name}: ${err.message}`);
    const body = err.error;
    const desc = `status=${err.status} body=${truncate(JSON.stringify(body), 400)}`;
    if (status !== undefined) assert.equal(err.status, status, `${what}: status (${desc})`);
    assert.equal(body?.type, 'error', `${what}: body.type (${desc})`);
    assert.equal(body?.error?.type, type, `${what}: error.type (${desc})`);
    assert.equal(typeof body?.error?.message, 'string', `${what}: error.message (${desc})`);
    if (code !== undefined) assert.equal(body?.error?.code, code, `${what}: error.code (${desc})`);
    return err;
}

const user = (text) => [{ role: 'user', content: text }];
const textOf = (m) => m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

// Asserts a Message's shape; e: {model, text (undefined: not compared), stop, input, output}.
function assertMessage(m, e, what) {
    const show = truncate(JSON.stringify(m), 500);
    assert.match(m.id ?? '', /^msg_/, `${what}: id (${show})`);
    assert.equal(m.type, 'message', `${what}: type (${show})`);
    assert.equal(m.role, 'assistant', `${what}: role (${show})`);
    if (e.model !== undefined) assert.equal(m.model, e.model, `${what}: model (${show})`);
    assert.ok(Array.isArray(m.content), `${what}: content (${show})`);
    if (e.text !== undefined) assert.equal(textOf(m), e.text, `${what}: text (${show})`);
    assert.equal(m.stop_reason, e.stop ?? 'end_turn', `${what}: stop_reason (${show})`);
    assert.equal(m.stop_sequence, null, `${what}: stop_sequence (${show})`);
    if (e.input !== undefined) assert.equal(m.usage?.input_tokens, e.input, `${what}: usage.input_tokens (${show})`);
    if (e.output !== undefined) assert.equal(m.usage?.output_tokens, e.output, `${what}: usage.output_tokens (${show})`);
}

// A streamed turn through the SDK's MessageStream: the raw events' types, the text seen as it
// arrived, the final message.
async function streamed(c, params, opts) {
    const s = c.messages.stream(params, opts);
    const types = [];
    let text = '';
    s.on('streamEvent', (ev) => types.push(ev.type));
    s.on('text', (d) => {
        text += d;
    });
    const final = await s.finalMessage();
    return { types, text, final };
}

// The event order of an answer: message_start, blocks, message_delta, message_stop.
function assertEventOrder(types, what) {
    assert.equal(types[0], 'message_start', `${what}: first event (${types.join(' ')})`);
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop'], `${what}: last events (${types.join(' ')})`);
    let open = false;
    for (const t of types.slice(1, -2)) {
        if (t === 'content_block_start') {
            assert.ok(!open, `${what}: a block started inside another (${types.join(' ')})`);
            open = true;
        } else if (t === 'content_block_stop') {
            assert.ok(open, `${what}: a block stopped that was not open (${types.join(' ')})`);
            open = false;
        } else {
            assert.equal(t, 'content_block_delta', `${what}: unexpected event ${t} (${types.join(' ')})`);
            assert.ok(open, `${what}: a delta outside a block (${types.join(' ')})`);
        }
    }
    assert.ok(!open, `${what}: a block left open (${types.join(' ')})`);
}

// The chat request fakellm got that carries marker (bodies in OpenAI's, Anthropic's or Gemini's
// format, on the given path part).
async function upstreamBody(ctx, marker, pathPart, what) {
    const log = (await ctx.fakellm.requests()).filter((r) => r.method === 'POST' && r.path.includes(pathPart));
    const bodies = log.map((r) => (typeof r.body === 'string' ? JSON.parse(r.body) : r.body)).filter((b) => JSON.stringify(b).includes(marker));
    assert.equal(bodies.length, 1, `${what}: fakellm got ${bodies.length} requests on ${pathPart} carrying ${marker}`);
    return bodies[0];
}

const lookup = { name: 'lookup', description: 'look it up', input_schema: { type: 'object', properties: { i: { type: 'integer' } } } };

// One provider kind end to end: a text answer, a stream, a tool call (streamed and not), usage.
async function providerTurns(ctx, c, { model, upstreamModel, pathPart, what }) {
    const system = 'Be brief.';
    const marker = randomToken('msg');
    const text = `Say hello ${marker}.`;
    const input = promptTokens(system, text);

    const m = await c.messages.create({ model, max_tokens: 50, system, messages: user(text) });
    assertMessage(m, { text: expectedText(), input, output: DEFAULT_CHUNKS }, `${what}: answer`);
    assert.equal(m.content.length, 1, `${what}: one text block expected (${truncate(JSON.stringify(m.content), 300)})`);
    const up = await upstreamBody(ctx, marker, pathPart, `${what}: answer`);
    const shown = JSON.stringify(up);
    assert.ok(shown.includes(system), `${what}: the system prompt did not reach the upstream: ${truncate(shown, 400)}`);
    if (upstreamModel) assert.ok(shown.includes(upstreamModel) || pathPart.includes(upstreamModel), `${what}: upstream model`);

    const marker2 = randomToken('msgs');
    const s = await streamed(c, { model, max_tokens: 50, system, messages: user(`Say hello ${marker2}.`) });
    assertEventOrder(s.types, `${what}: stream`);
    assert.equal(s.text, expectedText(), `${what}: streamed text`);
    assertMessage(s.final, { text: expectedText(), input: promptTokens(system, `Say hello ${marker2}.`), output: DEFAULT_CHUNKS }, `${what}: stream final message`);

    const tools = [lookup];
    const t = await c.messages.create({ model, max_tokens: 50, messages: user(`Look ${marker}.`), tools }, { headers: knobs({ toolCall: 'lookup' }) });
    assertMessage(t, { stop: 'tool_use' }, `${what}: tool call`);
    const call = t.content.find((b) => b.type === 'tool_use');
    assert.ok(call, `${what}: no tool_use block: ${truncate(JSON.stringify(t.content), 300)}`);
    assert.equal(call.name, 'lookup', `${what}: tool name`);
    assert.ok(typeof call.id === 'string' && call.id.length > 0, `${what}: tool_use id`);
    assert.deepEqual(call.input, JSON.parse(TOOL_ARGS), `${what}: tool input`);

    const ts = await streamed(c, { model, max_tokens: 50, messages: user(`Look again ${marker}.`), tools }, { headers: knobs({ toolCall: 'lookup' }) });
    assertEventOrder(ts.types, `${what}: tool stream`);
    assert.equal(ts.final.stop_reason, 'tool_use', `${what}: streamed stop_reason`);
    const scall = ts.final.content.find((b) => b.type === 'tool_use');
    assert.ok(scall && scall.name === 'lookup', `${what}: streamed tool_use: ${truncate(JSON.stringify(ts.final.content), 300)}`);
    assert.deepEqual(scall.input, JSON.parse(TOOL_ARGS), `${what}: streamed tool input`);
    return call;
}

export default [
    {
        id: 'messages.mock',
        title: 'the built-in mock model through @anthropic-ai/sdk: a Message, a stream (MessageStream), x-api-key and Bearer, usage',
        needs: ['raw'],
        async run(ctx) {
            const c = await client(ctx);
            const { data: m, response } = await c.messages.create({ model: 'mock', max_tokens: 64, messages: user('Hello there') }).withResponse();
            assertMessage(m, { model: 'mock', output: 12 }, 'mock answer');
            assert.ok(textOf(m).includes('ibex mock model'), `mock text ${textOf(m)}`);
            assert.ok(m.usage.input_tokens > 0, `mock input_tokens ${m.usage.input_tokens}`);
            assert.ok(response.headers.get('x-request-id'), 'x-request-id');
            assert.match(response.headers.get('content-type') ?? '', /application\/json/, 'content-type');

            const x = await client(ctx, { xApiKey: true });
            const m2 = await x.messages.create({ model: 'mock', max_tokens: 64, messages: user('Hello there') });
            assert.equal(textOf(m2), textOf(m), 'the same answer with the key in x-api-key');

            const s = await streamed(c, { model: 'mock', max_tokens: 64, messages: user('Hello there') });
            assertEventOrder(s.types, 'mock stream');
            assert.equal(s.text, textOf(m), 'streamed mock text');
            assertMessage(s.final, { model: 'mock', text: textOf(m), output: 12 }, 'mock stream final');

            // the raw event stream: every event named, its data of that type
            const res = await ctx.request('/v1/messages', {
                method: 'POST',
                auth: false,
                headers: { 'x-api-key': ctx.apiKey, 'anthropic-version': '2023-06-01' },
                body: { model: 'mock', max_tokens: 64, stream: true, messages: user('raw') },
            });
            assert.equal(res.status, 200, `raw stream: ${res.describe()}`);
            assert.match(res.headers['content-type'] ?? '', /text\/event-stream/, 'raw stream content-type');
            const events = res.text().split('\n\n').filter((e) => e.length);
            for (const e of events) {
                const [ev, data] = e.split('\n');
                assert.match(ev, /^event: [a-z_]+$/, `raw stream: event line ${JSON.stringify(ev)}`);
                assert.ok(data.startsWith('data: '), `raw stream: data line ${JSON.stringify(data)}`);
                assert.equal(JSON.parse(data.slice(6)).type, ev.slice(7), `raw stream: data type of ${ev}`);
            }
            assert.ok(!res.text().includes('[DONE]'), 'raw stream: no OpenAI [DONE] line');
        },
    },
    {
        id: 'messages.openai',
        title: 'an openai-type provider (fakellm): answer, stream, tool call and usage in Anthropic shape; the upstream got an OpenAI request asking for the stream usage',
        needs: ['fakellm'],
        timeoutMs: 30000,
        async run(ctx) {
            const c = await client(ctx);
            await providerTurns(ctx, c, { model: MODEL, pathPart: '/v1/chat/completions', what: 'openai' });
            const marker = randomToken('oai');
            await streamed(c, { model: MODEL, max_tokens: 33, temperature: 0.5, stop_sequences: ['END'], metadata: { user_id: 'u-1' }, messages: user(`x ${marker}`) });
            const up = await upstreamBody(ctx, marker, '/v1/chat/completions', 'openai stream request');
            assert.equal(up.stream, true, 'upstream stream');
            assert.deepEqual(up.stream_options, { include_usage: true }, 'upstream stream_options: ibex asks for the usage chunk');
            assert.equal(up.max_completion_tokens, 33, 'upstream max_completion_tokens');
            assert.equal(up.temperature, 0.5, 'upstream temperature');
            assert.deepEqual(up.stop, ['END'], 'upstream stop');
            assert.equal(up.user, 'u-1', 'upstream user');
            assert.deepEqual(up.messages, user(`x ${marker}`), 'upstream messages');
        },
    },
    {
        id: 'messages.providers',
        title: 'anthropic-type and gemini-type providers (fakellm) behind /v1/messages: answer, stream, tool call, usage',
        needs: ['fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            await sdk();
            const base = ctx.fakellmUpstream.replace(/\/v1$/, '');
            const yaml = [
                'providers:',
                `  - {name: up-a, type: anthropic, base_url: "${base}", api_key: e2e-anthropic-key}`,
                `  - {name: up-g, type: gemini, base_url: "${base}", api_key: e2e-gemini-key}`,
                'models:',
                '  - {name: claude-up, provider: up-a, model: claude-e2e}',
                '  - {name: gemini-up, provider: up-g, model: gemini-e2e}',
                '',
            ].join('\n');
            const file = path.join(ctx.h.logDir, 'messages-providers.yaml');
            fs.writeFileSync(file, yaml);
            const ibex = await ctx.ibex({ name: 'messages-providers', upstream: null, settings: { config: file } });
            const c = await client(ctx, { baseUrl: ibex.url });
            await providerTurns(ctx, c, { model: 'claude-up', upstreamModel: 'claude-e2e', pathPart: '/v1/messages', what: 'anthropic' });
            await providerTurns(ctx, c, { model: 'gemini-up', upstreamModel: 'gemini-e2e', pathPart: 'gemini-e2e:', what: 'gemini' });
            // top_k: Anthropic and Gemini honour it
            const marker = randomToken('topk');
            await c.messages.create({ model: 'claude-up', max_tokens: 20, top_k: 5, messages: user(`k ${marker}`) });
            const up = await upstreamBody(ctx, marker, '/v1/messages', 'anthropic top_k');
            assert.equal(up.top_k, 5, `anthropic upstream top_k: ${truncate(JSON.stringify(up), 300)}`);
        },
    },
    {
        id: 'messages.tool-round-trip',
        title: 'a tool_use answer, then the tool_result turn: the upstream gets the assistant tool_calls and the tool message, in order',
        needs: ['fakellm'],
        async run(ctx) {
            const c = await client(ctx);
            const marker = randomToken('tool');
            const first = user(`What is it? ${marker}`);
            const t = await c.messages.create({ model: MODEL, max_tokens: 50, tools: [lookup], messages: first }, { headers: knobs({ toolCall: 'lookup' }) });
            const call = t.content.find((b) => b.type === 'tool_use');
            assert.ok(call && t.stop_reason === 'tool_use', `tool call: ${truncate(JSON.stringify(t), 300)}`);
            const second = [
                ...first,
                { role: 'assistant', content: t.content },
                { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'forty-two' }, { type: 'text', text: 'Thanks.' }] },
            ];
            const r = await c.messages.create({ model: MODEL, max_tokens: 50, tools: [lookup], tool_choice: { type: 'auto' }, messages: second });
            assertMessage(r, { text: expectedText() }, 'after the tool result');
            const log = (await ctx.fakellm.requests()).filter((x) => x.method === 'POST' && x.path === '/v1/chat/completions');
            const bodies = log.map((x) => (typeof x.body === 'string' ? JSON.parse(x.body) : x.body)).filter((b) => JSON.stringify(b).includes('forty-two'));
            assert.equal(bodies.length, 1, 'fakellm got the tool result turn once');
            const msgs = bodies[0].messages;
            assert.deepEqual(msgs[0], { role: 'user', content: `What is it? ${marker}` }, 'upstream messages[0]');
            assert.equal(msgs[1].role, 'assistant', 'upstream messages[1].role');
            assert.deepEqual(msgs[1].tool_calls, [{ id: call.id, type: 'function', function: { name: 'lookup', arguments: JSON.stringify(call.input) } }], 'upstream assistant tool_calls');
            assert.deepEqual(msgs[2], { role: 'tool', content: 'forty-two', tool_call_id: call.id }, 'upstream tool message');
            assert.deepEqual(msgs[3], { role: 'user', content: 'Thanks.' }, 'upstream user message after the tool result');
            assert.equal(bodies[0].tool_choice, 'auto', 'upstream tool_choice');
            assert.deepEqual(bodies[0].tools, [{ type: 'function', function: { name: 'lookup', description: 'look it up', parameters: lookup.input_schema } }], 'upstream tools');
        },
    },
    {
        id: 'messages.directive',
        title: "the system prompt and the agent's directive reach the upstream (directive first), streaming and not",
        needs: ['fakellm', 'admin'],
        async run(ctx) {
            const root = new IbexAdmin(ctx.target, ctx.apiKey);
            const { admin } = await freshTenant(root, 'msg-directive');
            const directive = `You are messages agent ${randomToken('dir')}.`;
            const agent = await admin.createAgent({ name: uniqueName('msg-directed'), directive });
            const key = (await admin.createKey({ name: uniqueName('msg-chat'), scopes: ['chat'] })).key;
            const c = await client(ctx, { apiKey: key, xApiKey: true, headers: { 'X-IBEX-Agent-ID': agent.id } });
            for (const stream of [false, true]) {
                const marker = randomToken(stream ? 'dirs' : 'dir');
                const params = { model: MODEL, max_tokens: 20, system: [{ type: 'text', text: 'Answer briefly.' }], messages: user(`hi ${marker}`) };
                if (stream) await streamed(c, params);
                else await c.messages.create(params);
                const up = await upstreamBody(ctx, marker, '/v1/chat/completions', `directive (stream ${stream})`);
                assert.deepEqual(
                    up.messages,
                    [{ role: 'system', content: directive }, { role: 'system', content: 'Answer briefly.' }, { role: 'user', content: `hi ${marker}` }],
                    `upstream messages (stream ${stream})`,
                );
            }
            const all = JSON.stringify(await ctx.fakellm.requests());
            assert.ok(!all.includes(key), "the client's key (sent in x-api-key) reached the upstream");
        },
    },
    {
        id: 'messages.errors',
        title: "errors in Anthropic's shape: 401 (no key, a bad key in x-api-key or Bearer), 403 scope, 400 validation and invalid JSON, 404 model, 405, an upstream refusal, nothing sent upstream for a refused request",
        needs: ['fakellm', 'admin', 'raw'],
        async run(ctx) {
            const Anthropic = await sdk();
            const bad = 'ibex_sk_' + 'x'.repeat(40);
            const params = { model: MODEL, max_tokens: 10, messages: user('hi') };
            const none = new Anthropic({ baseURL: ctx.baseUrl, apiKey: null, authToken: null, maxRetries: 0, defaultHeaders: { 'X-Api-Key': null, Authorization: null } });
            await expectError(() => none.messages.create(params), { status: 401, type: 'authentication_error', code: 'MISSING_TOKEN', what: 'no credential' });
            await expectError(async () => (await client(ctx, { apiKey: bad, xApiKey: true })).messages.create(params), { status: 401, type: 'authentication_error', code: 'INVALID_TOKEN', what: 'bad x-api-key' });
            await expectError(async () => (await client(ctx, { apiKey: bad })).messages.create(params), { status: 401, type: 'authentication_error', code: 'INVALID_TOKEN', what: 'bad bearer' });

            const root = new IbexAdmin(ctx.target, ctx.apiKey);
            const { admin } = await freshTenant(root, 'msg-errors');
            const readOnly = (await admin.createKey({ name: uniqueName('msg-ro'), scopes: ['sessions:read'] })).key;
            await expectError(async () => (await client(ctx, { apiKey: readOnly, xApiKey: true })).messages.create(params), { status: 403, type: 'permission_error', code: 'INSUFFICIENT_SCOPE', what: 'no chat scope' });

            const c = await client(ctx);
            const before = (await ctx.fakellm.requests()).length;
            await expectError(() => c.messages.create({ model: MODEL, messages: user('hi') }), { status: 400, type: 'invalid_request_error', code: 'VALIDATION_ERROR', what: 'no max_tokens' });
            const e = await expectError(() => c.messages.create({ ...params, thinking: { type: 'enabled', budget_tokens: 1024 } }), { status: 400, type: 'invalid_request_error', code: 'VALIDATION_ERROR', what: 'thinking' });
            assert.match(e.error.error.message, /^thinking: /, 'the message names the field');
            await expectError(() => c.messages.create({ ...params, messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }] }), { status: 400, type: 'invalid_request_error', code: 'VALIDATION_ERROR', what: 'unknown block type' });
            await expectError(() => c.messages.create({ ...params, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), { status: 400, type: 'invalid_request_error', code: 'VALIDATION_ERROR', what: 'server tool' });
            await expectError(() => c.messages.create({ ...params, model: 'mock', messages: [{ role: 'user', content: 'x' }], container: 'c' }), { status: 400, type: 'invalid_request_error', code: 'VALIDATION_ERROR', what: 'unknown field' });
            const raw = await ctx.request('/v1/messages', { method: 'POST', body: '{"model":"x",' });
            assert.equal(raw.status, 400, `invalid JSON: ${raw.describe()}`);
            assert.deepEqual([raw.json().type, raw.json().error.type, raw.json().error.code], ['error', 'invalid_request_error', 'INVALID_JSON'], `invalid JSON body: ${raw.describe()}`);
            assert.equal(raw.json().request_id, raw.headers['x-request-id'], 'request_id in the body is X-Request-ID');
            const badAgent = await ctx.request('/v1/messages', { method: 'POST', headers: { 'X-IBEX-Agent-ID': 'not-a-uuid' }, body: params });
            assert.deepEqual([badAgent.status, badAgent.json().error?.type], [400, 'invalid_request_error'], `bad X-IBEX-Agent-ID: ${badAgent.describe()}`);
            assert.equal((await ctx.fakellm.requests()).length, before, 'a refused request reached the provider');

            await expectError(() => c.messages.create({ ...params, model: '' }), { status: 400, type: 'invalid_request_error', what: 'empty model' });
            const get = await ctx.request('/v1/messages', { method: 'GET' });
            assert.deepEqual([get.status, get.json().type, get.json().error?.type, get.headers.allow], [405, 'error', 'invalid_request_error', 'POST'], `GET /v1/messages: ${get.describe()}`);
            // the provider refuses: its 4xx, in Anthropic's shape
            await expectError(() => c.messages.create(params, { headers: knobs({ status: 400 }) }), { status: 400, type: 'invalid_request_error', code: 'UPSTREAM_REJECTED', what: 'upstream 400' });
        },
    },
    {
        id: 'messages.unknown-model',
        title: 'a model nothing serves: 404 not_found_error',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null });
            const c = await client(ctx, { baseUrl: ibex.url });
            await expectError(() => c.messages.create({ model: 'nothing-serves-this', max_tokens: 5, messages: user('x') }), { status: 404, type: 'not_found_error', code: 'MODEL_NOT_FOUND', what: 'unknown model' });
        },
    },
    {
        id: 'messages.stream-error',
        title: 'a provider that breaks the stream after it started: an Anthropic error event, which the SDK raises',
        needs: ['fakellm', 'raw'],
        async run(ctx) {
            const c = await client(ctx);
            const res = await ctx.request('/v1/messages', {
                method: 'POST',
                headers: knobs({ resetAfter: 3 }),
                body: { model: MODEL, max_tokens: 20, stream: true, messages: user('break') },
                timeoutMs: 15000,
            });
            assert.equal(res.status, 200, `stream: ${res.describe()}`);
            const events = res.text().split('\n\n').filter((e) => e.length);
            const last = events[events.length - 1];
            assert.ok(last.startsWith('event: error\ndata: '), `the stream does not end with an error event: ${truncate(res.text(), 600)}`);
            const err = JSON.parse(last.split('\n')[1].slice(6));
            assert.deepEqual([err.type, err.error.type, err.error.code], ['error', 'api_error', 'UPSTREAM_RESET'], `error event ${JSON.stringify(err)}`);
            assert.ok(events.some((e) => e.startsWith('event: content_block_delta')), 'no text before the break');
            assert.ok(!res.text().includes('message_stop'), 'a broken stream must not claim message_stop');

            const s = c.messages.stream({ model: MODEL, max_tokens: 20, messages: user('break') }, { headers: knobs({ resetAfter: 3 }) });
            s.on('error', () => {}); // finalMessage rejects with it
            let thrown = null;
            try {
                await s.finalMessage();
            } catch (e) {
                thrown = e;
            }
            assert.ok(thrown, 'the SDK did not raise the error event');
            assert.equal(thrown.error?.error?.type ?? thrown.type, 'api_error', `SDK error: ${thrown.message}`);
        },
    },
    {
        id: 'messages.recorded',
        title: 'a /v1/messages turn leaves a trace, a checkpoint (OpenAI format, as the upstream got it), a metrics series; Idempotency-Key replays the Anthropic answer',
        needs: ['fakellm', 'raw'],
        async run(ctx) {
            const c = await client(ctx);
            const marker = randomToken('rec');
            const { data: m, response } = await c.messages.create({ model: MODEL, max_tokens: 40, system: 'Record me.', messages: user(`turn ${marker}`) }).withResponse();
            const traceId = response.headers.get('x-ibex-trace-id');
            const sessionId = response.headers.get('x-ibex-session-id');
            assert.ok(traceId && sessionId, `trace and session headers: ${traceId} ${sessionId}`);
            const api = new IbexAdmin(ctx.target, ctx.apiKey);
            let trace = null;
            for (let i = 0; i < 100 && !trace; i++) {
                const r = await api.call('GET', `/v1/traces/${traceId}`);
                if (r.status === 200) trace = r.json();
                else await sleep(30);
            }
            assert.ok(trace, `trace ${traceId} never readable`);
            assert.deepEqual(
                [trace.model, trace.stream, trace.status, trace.prompt_tokens, trace.completion_tokens],
                [MODEL, false, 200, m.usage.input_tokens, m.usage.output_tokens],
                `trace facts: ${truncate(JSON.stringify(trace), 500)}`,
            );
            let cps = null;
            for (let i = 0; i < 100 && !cps?.length; i++) {
                const r = await api.call('GET', `/v1/sessions/${sessionId}/checkpoints`);
                if (r.status === 200) cps = r.json().checkpoints;
                if (!cps?.length) await sleep(30);
            }
            assert.equal(cps?.length, 1, `checkpoints of the session: ${truncate(JSON.stringify(cps), 400)}`);
            const cp = cps[0];
            assert.equal(cp.trace_id, traceId, 'checkpoint trace_id');
            assert.deepEqual(cp.messages, [{ role: 'system', content: 'Record me.' }, { role: 'user', content: `turn ${marker}` }], 'checkpoint messages (OpenAI format, as sent upstream)');
            assert.equal(cp.response.content, textOf(m), 'checkpoint response.content is the text the client got');
            assert.equal(cp.response.finish_reason, 'stop', 'checkpoint finish_reason (OpenAI format)');

            const metrics = await ctx.request('/metrics', { auth: false });
            assert.ok(/route="\/v1\/messages",status="200"/.test(metrics.text()) || /status="200",route="\/v1\/messages"/.test(metrics.text()) || metrics.text().includes('route="/v1/messages"'), 'no /v1/messages series in /metrics');

            const key = randomToken('idem');
            const body = { model: MODEL, max_tokens: 40, messages: user(`idem ${marker}`) };
            const a = await ctx.request('/v1/messages', { method: 'POST', headers: { 'Idempotency-Key': key }, body });
            let b = null;
            for (let i = 0; i < 50 && (b === null || b.status === 409); i++) {
                if (b) await sleep(50); // the first one's answer is stored off the loop
                b = await ctx.request('/v1/messages', { method: 'POST', headers: { 'Idempotency-Key': key }, body });
            }
            assert.equal(a.status, 200, `first: ${a.describe()}`);
            assert.equal(b.status, 200, `replay: ${b.describe()}`);
            assert.equal(b.headers['idempotent-replayed'], 'true', 'replay header');
            assert.equal(a.json().type, 'message', `first answer in Anthropic's shape: ${a.describe()}`);
            assert.deepEqual(b.json(), a.json(), 'the replay is the Anthropic answer the first request got');
        },
    },
];
