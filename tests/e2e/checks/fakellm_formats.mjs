// fakellm on its own (no ibex in the path): the three wire formats it speaks to ibex's provider
// adapters. For OpenAI, Anthropic and Gemini: the non-streaming answer, the stream's event
// sequence, tool calls (x-fakellm-tool-call), usage numbers, credential errors, injected statuses
// with Retry-After, and resets. Anthropic is spoken to through the official @anthropic-ai/sdk,
// Gemini and the wire details through raw HTTP. Each check starts a fakellm of its own, so its
// stats and request log hold only what the check sent.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { RawConn, buildRequest, request } from '../lib/http.mjs';
import { SSEParser } from '../lib/sse.mjs';
import { FakellmClient, TOOL_ARGS, TOOL_PIECES, chunkText, expectedText, geminiPath, knobs, promptTokens } from '../lib/fakellm.mjs';
import { fakellmBin } from '../lib/proc.mjs';
import { makeClient } from '../lib/sdk.mjs';
import { SkipError, truncate } from '../lib/util.mjs';

const SYSTEM = 'You are terse.';
const USER = 'Say hello to the fake upstream.';
const PROMPT_TOKENS = promptTokens(SYSTEM, USER);
const TOOL = 'get_weather';
const GEMINI_MODEL = 'gemini-e2e';

// One conversation (a system prompt and a user turn), as each format writes it.
const openaiBody = (extra = {}) => ({
    model: 'gpt-e2e',
    messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: USER },
    ],
    ...extra,
});
const anthropicBody = (extra = {}) => ({
    model: 'claude-e2e',
    max_tokens: 256,
    system: SYSTEM,
    messages: [{ role: 'user', content: [{ type: 'text', text: USER }] }],
    ...extra,
});
const geminiBody = (extra = {}) => ({
    systemInstruction: { parts: [{ text: SYSTEM }] },
    contents: [{ role: 'user', parts: [{ text: USER }] }],
    generationConfig: { maxOutputTokens: 256, temperature: 0.5 },
    ...extra,
});
const openaiTools = [{ type: 'function', function: { name: TOOL, parameters: { type: 'object', properties: {} } } }];
const anthropicTools = [{ name: TOOL, description: 'weather', input_schema: { type: 'object', properties: {} } }];
const geminiTools = [{ functionDeclarations: [{ name: TOOL, parameters: { type: 'object', properties: {} } }] }];

let anthropicModule = null;
async function anthropicSdk() {
    if (!anthropicModule) {
        try {
            anthropicModule = await import('@anthropic-ai/sdk');
        } catch (e) {
            throw new SkipError(`@anthropic-ai/sdk not installed (${e.code || e.message}); run: npm ci --prefix tests/e2e`);
        }
    }
    return anthropicModule;
}

// A fakellm of the check's own: {target, url, client}; its request log starts empty (the start-up
// health probes are forgotten).
async function startFake(ctx) {
    const p = await ctx.fakellmServer();
    const client = new FakellmClient(p.target);
    await client.clearRequests();
    return { target: p.target, url: p.url, client };
}

async function anthropicClient(fk) {
    const mod = await anthropicSdk();
    const Anthropic = mod.Anthropic || mod.default;
    return { mod, client: new Anthropic({ apiKey: 'sk-ant-e2e', baseURL: fk.url, maxRetries: 0, timeout: 10000 }) };
}

// POST on a fresh connection, reading the body as SSE. Returns {head, events, complete, partial,
// raw}; events are {event, data, json}. complete is false when the connection was cut (reset).
async function postSse(target, path, { headers = {}, body, timeoutMs = 10000 } = {}) {
    const conn = await RawConn.connect(target);
    try {
        await conn.write(buildRequest({ method: 'POST', path, headers: { ...headers, Connection: 'close' }, body, host: `${target.host}:${target.port}` }));
        const head = await conn.readHead({ timeoutMs });
        const parser = new SSEParser();
        const events = [];
        const parts = [];
        const r = await conn.readBody(head, {
            timeoutMs,
            method: 'POST',
            onData: (b) => {
                parts.push(b);
                for (const ev of parser.push(b)) {
                    let json = null;
                    try {
                        json = JSON.parse(ev.data);
                    } catch {
                        /* [DONE] and the like */
                    }
                    events.push({ ...ev, json });
                }
            },
        });
        return { head, events, complete: r.complete, partial: parser.partial, raw: Buffer.concat(parts).toString('utf8') };
    } finally {
        conn.destroy();
    }
}

// A streaming request of each format, with credentials, read as SSE (see postSse).
const anthropicSse = (fk, headers, body) =>
    postSse(fk.target, '/v1/messages', { headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01', ...headers }, body });
const geminiSse = (fk, headers, body) =>
    postSse(fk.target, `${geminiPath(GEMINI_MODEL, true)}?alt=sse`, { headers: { 'x-goog-api-key': 'k', ...headers }, body });
const openaiSse = (fk, headers, body) => postSse(fk.target, '/v1/chat/completions', { headers: { authorization: 'Bearer k', ...headers }, body });

// A request that the server answers by resetting the connection: resolves with the error.
async function expectReset(promise, what) {
    let res;
    try {
        res = await promise;
    } catch (e) {
        return e;
    }
    assert.fail(`${what}: expected the connection to be reset, got ${res.describe ? res.describe() : JSON.stringify(res)}`);
}

// Awaits fn() and asserts it threw an Anthropic APIError of status/type; returns the error.
async function expectAnthropicError(mod, fn, { status, type, what }) {
    let err = null;
    try {
        await fn();
    } catch (e) {
        err = e;
    }
    assert.ok(err, `${what}: expected an Anthropic APIError ${status} ${type}, the call succeeded`);
    assert.ok(err instanceof mod.APIError, `${what}: expected an Anthropic APIError, got ${err.name}: ${err.message}`);
    assert.equal(err.status, status, `${what}: status (${err.message})`);
    assert.equal(err.type, type, `${what}: error.type (${err.message})`);
    assert.equal(err.error?.type, 'error', `${what}: the body's top-level type (${JSON.stringify(err.error)})`);
    assert.equal(typeof err.error?.error?.message, 'string', `${what}: error.message (${JSON.stringify(err.error)})`);
    return err;
}

function assertAnthropicErrorBody(res, { status, type, what }) {
    assert.equal(res.status, status, `${what}: ${res.describe()}`);
    const j = res.json();
    assert.equal(j.type, 'error', `${what}: top-level type (${res.describe()})`);
    assert.equal(j.error?.type, type, `${what}: error.type (${res.describe()})`);
    assert.equal(typeof j.error?.message, 'string', `${what}: error.message (${res.describe()})`);
}

function assertGeminiError(res, { status, grpc, what }) {
    assert.equal(res.status, status, `${what}: ${res.describe()}`);
    const e = res.json().error;
    assert.ok(e, `${what}: no error object (${res.describe()})`);
    assert.equal(e.code, status, `${what}: error.code (${res.describe()})`);
    assert.equal(e.status, grpc, `${what}: error.status (${res.describe()})`);
    assert.equal(typeof e.message, 'string', `${what}: error.message (${res.describe()})`);
    return e;
}

const eventNames = (events) => events.map((e) => e.event);

export default [
    {
        id: 'fakellm.anthropic-message',
        title: 'Anthropic SDK, non-streaming: Message shape, text, end_turn, usage; the request log has what was sent',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const { client } = await anthropicClient(fk);
            const m = await client.messages.create(anthropicBody({ temperature: 0.2, stop_sequences: ['END'] }));
            assert.match(m.id, /^msg_/, 'id');
            assert.equal(m.type, 'message', 'type');
            assert.equal(m.role, 'assistant', 'role');
            assert.equal(m.model, 'claude-e2e', 'model echoes the request');
            assert.deepEqual(m.content, [{ type: 'text', text: expectedText() }], 'content');
            assert.equal(m.stop_reason, 'end_turn', 'stop_reason');
            assert.equal(m.stop_sequence, null, 'stop_sequence');
            assert.deepEqual(m.usage, { input_tokens: PROMPT_TOKENS, output_tokens: 8 }, 'usage');

            const log = await fk.client.requests();
            assert.equal(log.length, 1, `request log: ${truncate(JSON.stringify(log), 400)}`);
            const r = log[0];
            assert.equal(r.method, 'POST');
            assert.equal(r.path, '/v1/messages');
            assert.ok(r.headers['anthropic-version'], `anthropic-version header logged: ${JSON.stringify(r.headers)}`);
            assert.ok(r.headers['x-api-key'] === 'sk-ant-e2e' || r.headers.authorization === 'Bearer sk-ant-e2e', `the key is logged as the SDK sent it: ${JSON.stringify(r.headers)}`);
            assert.deepEqual(r.body, anthropicBody({ temperature: 0.2, stop_sequences: ['END'] }), 'body logged as sent');
        },
    },
    {
        id: 'fakellm.anthropic-stream',
        title: 'Anthropic stream: event sequence with ping, text_delta per chunk, usage in message_start/message_delta; the SDK assembles it',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const r = await anthropicSse(fk, knobs({ chunks: 3, chunkBytes: 9 }), anthropicBody({ stream: true }));
            assert.equal(r.head.status, 200, `status: ${r.raw.slice(0, 300)}`);
            assert.match(r.head.headers['content-type'] || '', /^text\/event-stream/, 'content-type');
            assert.ok(r.complete && !r.partial, 'the stream ended cleanly');
            assert.deepEqual(eventNames(r.events), [
                'message_start', 'content_block_start', 'ping',
                'content_block_delta', 'content_block_delta', 'content_block_delta',
                'content_block_stop', 'message_delta', 'message_stop',
            ], 'event sequence');
            for (const ev of r.events) assert.equal(ev.json?.type, ev.event, `data.type of ${ev.event}: ${ev.data}`);
            const start = r.events[0].json.message;
            assert.equal(start.model, 'claude-e2e', 'message_start model');
            assert.deepEqual(start.content, [], 'message_start content');
            assert.equal(start.stop_reason, null, 'message_start stop_reason');
            assert.equal(start.usage.input_tokens, PROMPT_TOKENS, 'message_start usage.input_tokens');
            assert.deepEqual(r.events[1].json, { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
            const deltas = r.events.filter((e) => e.event === 'content_block_delta').map((e) => e.json);
            deltas.forEach((d, i) => assert.deepEqual(d, { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: chunkText(i, 9) } }, `delta ${i}`));
            const md = r.events[7].json;
            assert.equal(md.delta.stop_reason, 'end_turn', 'message_delta stop_reason');
            assert.equal(md.usage.output_tokens, 3, 'message_delta usage.output_tokens');

            const { client } = await anthropicClient(fk);
            const types = [];
            const stream = await client.messages.create(anthropicBody({ stream: true }), { headers: knobs({ chunks: 2 }) });
            for await (const ev of stream) types.push(ev.type);
            assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'], 'SDK events (ping is swallowed by the SDK)');
            const final = await client.messages.stream(anthropicBody()).finalMessage();
            assert.equal(final.content[0].text, expectedText(), 'SDK finalMessage text');
            assert.equal(final.usage.output_tokens, 8, 'SDK finalMessage usage.output_tokens');
            assert.equal(final.usage.input_tokens, PROMPT_TOKENS, 'SDK finalMessage usage.input_tokens');
        },
    },
    {
        id: 'fakellm.anthropic-tool-call',
        title: 'Anthropic x-fakellm-tool-call: tool_use block, input_json_delta pieces, stop_reason tool_use; 400 when the tool is not declared',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const { mod, client } = await anthropicClient(fk);
            const tool = { headers: knobs({ toolCall: TOOL }) };
            const m = await client.messages.create(anthropicBody({ tools: anthropicTools, tool_choice: { type: 'auto' } }), tool);
            assert.equal(m.content.length, 1, `content: ${JSON.stringify(m.content)}`);
            assert.equal(m.content[0].type, 'tool_use');
            assert.equal(m.content[0].name, TOOL);
            assert.match(m.content[0].id, /^toolu_/);
            assert.deepEqual(m.content[0].input, JSON.parse(TOOL_ARGS));
            assert.equal(m.stop_reason, 'tool_use');
            assert.equal(m.usage.output_tokens, TOOL_PIECES.anthropic);

            const final = await client.messages.stream(anthropicBody({ tools: anthropicTools }), tool).finalMessage();
            assert.equal(final.content[0].type, 'tool_use', 'streamed block type');
            assert.deepEqual(final.content[0].input, JSON.parse(TOOL_ARGS), 'input assembled by the SDK from input_json_delta');
            assert.equal(final.stop_reason, 'tool_use');

            const r = await anthropicSse(fk, tool.headers, anthropicBody({ stream: true, tools: anthropicTools }));
            const cb = r.events.find((e) => e.event === 'content_block_start').json.content_block;
            assert.equal(cb.type, 'tool_use');
            assert.equal(cb.name, TOOL);
            assert.deepEqual(cb.input, {});
            const pieces = r.events.filter((e) => e.event === 'content_block_delta').map((e) => e.json.delta);
            assert.ok(pieces.length >= 2, `arguments in ${pieces.length} pieces`);
            for (const p of pieces) assert.equal(p.type, 'input_json_delta');
            assert.equal(pieces.map((p) => p.partial_json).join(''), TOOL_ARGS, 'partial_json pieces');
            assert.equal(r.events.find((e) => e.event === 'message_delta').json.delta.stop_reason, 'tool_use');

            await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), tool), { status: 400, type: 'invalid_request_error', what: 'tool not declared' });
            await expectAnthropicError(mod, () => client.messages.create(anthropicBody({ tools: anthropicTools }), { headers: knobs({ toolCall: '9lives' }) }), { status: 400, type: 'invalid_request_error', what: 'tool name not an identifier' });
            await expectAnthropicError(mod, () => client.messages.create(anthropicBody({ tools: anthropicTools }), { headers: knobs({ toolCall: 'a'.repeat(65) }) }), { status: 400, type: 'invalid_request_error', what: 'tool name over 64 characters' });
        },
    },
    {
        id: 'fakellm.anthropic-errors',
        title: 'Anthropic errors: 401 without key, 400 without anthropic-version or max_tokens, injected 429/529/503 with retry-after, 500 api_error',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const c = fk.client;
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody(), { 'x-api-key': null }), { status: 401, type: 'authentication_error', what: 'no key' });
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody(), { 'x-api-key': ' ' }), { status: 401, type: 'authentication_error', what: 'empty x-api-key' });
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody(), { 'anthropic-version': null }), { status: 400, type: 'invalid_request_error', what: 'no anthropic-version' });
            const noMax = anthropicBody();
            delete noMax.max_tokens;
            assertAnthropicErrorBody(await c.messagesDirect(noMax), { status: 400, type: 'invalid_request_error', what: 'no max_tokens' });
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody({ messages: [{ role: 'tool', content: 'x' }] })), { status: 400, type: 'invalid_request_error', what: 'role tool' });
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody({ temperature: 1.5 })), { status: 400, type: 'invalid_request_error', what: 'temperature above 1' });
            assertAnthropicErrorBody(await c.messagesDirect(anthropicBody(), knobs({ chunks: 'many' })), { status: 400, type: 'invalid_request_error', what: 'malformed knob' });

            const { mod, client } = await anthropicClient(fk);
            const inject = (status, retryAfter) => ({ headers: knobs(retryAfter ? { status, retryAfter } : { status }) });
            let e = await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), inject(429, 7)), { status: 429, type: 'rate_limit_error', what: 'injected 429' });
            assert.equal(e.headers.get('retry-after'), '7', 'retry-after of the 429');
            e = await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), inject(529, 3)), { status: 529, type: 'overloaded_error', what: 'injected 529' });
            assert.equal(e.headers.get('retry-after'), '3', 'retry-after of the 529');
            e = await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), inject(503)), { status: 503, type: 'api_error', what: 'injected 503' });
            assert.equal(e.headers.get('retry-after'), '1', 'retry-after of the 503 (default 1)');
            e = await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), inject(500)), { status: 500, type: 'api_error', what: 'injected 500' });
            assert.equal(e.headers.get('retry-after'), null, 'no retry-after on a 500');
            await expectAnthropicError(mod, () => client.messages.create(anthropicBody(), inject(404)), { status: 404, type: 'not_found_error', what: 'injected 404' });
        },
    },
    {
        id: 'fakellm.anthropic-reset',
        title: 'Anthropic reset-after: the stream is cut after N deltas without message_stop; non-streaming reset-after 0 resets',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const r = await anthropicSse(fk, knobs({ resetAfter: 2 }), anthropicBody({ stream: true }));
            assert.equal(r.complete, false, 'the chunked body must not end cleanly');
            assert.deepEqual(eventNames(r.events), ['message_start', 'content_block_start', 'ping', 'content_block_delta', 'content_block_delta'], 'events before the reset');

            const { client } = await anthropicClient(fk);
            let texts = '';
            let err = null;
            try {
                const stream = await client.messages.create(anthropicBody({ stream: true }), { headers: knobs({ resetAfter: 3 }) });
                for await (const ev of stream) if (ev.type === 'content_block_delta') texts += ev.delta.text;
            } catch (e) {
                err = e;
            }
            assert.ok(err, 'the SDK stream must fail on the reset');
            assert.equal(texts, expectedText(3), 'text received before the reset');
            await expectReset(fk.client.messagesDirect(anthropicBody(), knobs({ resetAfter: 0 })), 'non-streaming reset-after 0');
            const s = await fk.client.quiesce();
            assert.equal(s.chat, 3, `stats.chat: ${JSON.stringify(s)}`);
            assert.equal(s.completed, 0, `resets are not completed: ${JSON.stringify(s)}`);
        },
    },
    {
        id: 'fakellm.gemini-generate',
        title: 'Gemini generateContent: candidates/content/parts, finishReason STOP, usageMetadata, modelVersion; key by header or ?key=',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const res = await fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ chunks: 4 }) });
            assert.equal(res.status, 200, res.describe());
            assert.match(res.headers['content-type'] || '', /^application\/json/);
            const j = res.json();
            assert.equal(j.candidates.length, 1, res.describe());
            const cand = j.candidates[0];
            assert.deepEqual(cand.content, { parts: [{ text: expectedText(4) }], role: 'model' }, 'content');
            assert.equal(cand.finishReason, 'STOP', 'finishReason');
            assert.equal(cand.index, 0, 'index');
            assert.deepEqual(j.usageMetadata, { promptTokenCount: PROMPT_TOKENS, candidatesTokenCount: 4, totalTokenCount: PROMPT_TOKENS + 4 }, 'usageMetadata');
            assert.equal(j.modelVersion, GEMINI_MODEL, 'modelVersion is the model of the path');

            const byQuery = await fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: { 'x-goog-api-key': null }, query: 'key=k' });
            assert.equal(byQuery.status, 200, `key in the query: ${byQuery.describe()}`);
            // proto JSON accepts snake_case field names too
            const snake = await fk.client.geminiDirect(GEMINI_MODEL, {
                system_instruction: { parts: [{ text: SYSTEM }] },
                contents: [{ role: 'user', parts: [{ text: USER }] }],
                generation_config: { max_output_tokens: 5 },
            });
            assert.equal(snake.status, 200, `snake_case fields: ${snake.describe()}`);
            assert.equal(snake.json().usageMetadata.promptTokenCount, PROMPT_TOKENS, 'snake_case systemInstruction counts');
        },
    },
    {
        id: 'fakellm.gemini-stream',
        title: 'Gemini streamGenerateContent?alt=sse: one data event per chunk (CRLF framing), then finishReason STOP with usageMetadata; without alt=sse, one JSON array of the same responses',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const r = await geminiSse(fk, knobs({ chunks: 3 }), geminiBody());
            assert.equal(r.head.status, 200, r.raw.slice(0, 300));
            assert.match(r.head.headers['content-type'] || '', /^text\/event-stream/);
            assert.ok(r.complete && !r.partial, 'the stream ended cleanly');
            assert.equal(r.events.length, 4, `events: ${truncate(r.raw, 600)}`);
            assert.ok(r.raw.endsWith('\r\n\r\n') && r.raw.split('\r\n\r\n').length === 5, `events are separated by CRLF CRLF: ${JSON.stringify(r.raw.slice(0, 200))}`);
            for (const ev of r.events) assert.equal(ev.event, null, 'Gemini events have no event: line');
            for (let i = 0; i < 3; i++) {
                const j = r.events[i].json;
                assert.deepEqual(j.candidates[0].content, { parts: [{ text: chunkText(i) }], role: 'model' }, `chunk ${i}`);
                assert.equal(j.candidates[0].finishReason, undefined, `chunk ${i} has no finishReason`);
                assert.equal(j.usageMetadata, undefined, `chunk ${i} has no usageMetadata`);
                assert.equal(j.modelVersion, GEMINI_MODEL);
            }
            const last = r.events[3].json;
            assert.equal(last.candidates[0].finishReason, 'STOP', 'last event finishReason');
            assert.deepEqual(last.usageMetadata, { promptTokenCount: PROMPT_TOKENS, candidatesTokenCount: 3, totalTokenCount: PROMPT_TOKENS + 3 });
            const text = r.events.map((e) => e.json.candidates[0].content.parts.map((p) => p.text ?? '').join('')).join('');
            assert.equal(text, expectedText(3), 'the text of all events');

            const arr = await request(fk.target, { method: 'POST', path: geminiPath(GEMINI_MODEL, true), headers: { 'x-goog-api-key': 'k', ...knobs({ chunks: 3 }) }, body: geminiBody() });
            assert.equal(arr.status, 200, arr.describe());
            assert.match(arr.headers['content-type'] || '', /^application\/json/);
            const items = arr.json();
            assert.ok(Array.isArray(items) && items.length === 4, `one array of four responses: ${arr.describe()}`);
            assert.equal(new Set(items.map((j) => j.responseId)).size, 1, 'one responseId for the whole stream');
            const withoutId = ({ responseId, ...rest }) => rest;
            assert.deepEqual(items.map(withoutId), r.events.map((e) => withoutId(e.json)), 'the same responses as the SSE stream');
        },
    },
    {
        id: 'fakellm.gemini-tool-call',
        title: 'Gemini x-fakellm-tool-call: a functionCall part {name, args}, finishReason STOP, streamed whole; 400 when not declared',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const tool = knobs({ toolCall: TOOL });
            const body = geminiBody({ tools: geminiTools, toolConfig: { functionCallingConfig: { mode: 'AUTO' } } });
            const res = await fk.client.geminiDirect(GEMINI_MODEL, body, { headers: tool });
            assert.equal(res.status, 200, res.describe());
            const j = res.json();
            assert.deepEqual(j.candidates[0].content, { parts: [{ functionCall: { name: TOOL, args: JSON.parse(TOOL_ARGS) } }], role: 'model' }, 'content');
            assert.equal(j.candidates[0].finishReason, 'STOP');
            assert.equal(j.usageMetadata.candidatesTokenCount, TOOL_PIECES.gemini, 'candidatesTokenCount of a call');

            const r = await geminiSse(fk, tool, body);
            assert.ok(r.complete, 'the stream ended cleanly');
            assert.equal(r.events.length, TOOL_PIECES.gemini + 1, `events: ${truncate(r.raw, 600)}`);
            assert.deepEqual(r.events[0].json.candidates[0].content.parts, [{ functionCall: { name: TOOL, args: JSON.parse(TOOL_ARGS) } }], 'the call in one event');
            assert.equal(r.events.at(-1).json.candidates[0].finishReason, 'STOP');

            const snake = await fk.client.geminiDirect(GEMINI_MODEL, geminiBody({ tools: [{ function_declarations: [{ name: TOOL }] }] }), { headers: tool });
            assert.equal(snake.status, 200, `function_declarations (snake_case): ${snake.describe()}`);
            assertGeminiError(await fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: tool }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'tool not declared' });
            assertGeminiError(await fk.client.geminiDirect(GEMINI_MODEL, body, { headers: knobs({ toolCall: 'bad name' }) }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'tool name with a space' });
        },
    },
    {
        id: 'fakellm.gemini-errors',
        title: 'Gemini errors: 403 without key, 400 empty key, bad contents 400, injected 429 (Retry-After + RetryInfo), 503 UNAVAILABLE, 500 INTERNAL',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const c = fk.client;
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: { 'x-goog-api-key': null } }), { status: 403, grpc: 'PERMISSION_DENIED', what: 'no key' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: { 'x-goog-api-key': null }, query: 'key=' }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'empty key' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, { contents: [] }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'empty contents' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, { messages: [{ role: 'user', content: 'hi' }] }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'an OpenAI body' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody({ contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] })), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'role assistant' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody({ generationConfig: { maxOutputTokens: 'ten' } })), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'maxOutputTokens not an integer' });
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ delayMs: -1 }) }), { status: 400, grpc: 'INVALID_ARGUMENT', what: 'malformed knob' });

            let res = await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ status: 429, retryAfter: 7 }) });
            const e = assertGeminiError(res, { status: 429, grpc: 'RESOURCE_EXHAUSTED', what: 'injected 429' });
            assert.equal(res.headers['retry-after'], '7', 'Retry-After of the 429');
            assert.deepEqual(e.details, [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '7s' }], 'RetryInfo');
            res = await c.geminiDirect(GEMINI_MODEL, geminiBody(), { stream: true, headers: knobs({ status: 503 }) });
            assertGeminiError(res, { status: 503, grpc: 'UNAVAILABLE', what: 'injected 503 on a stream request' });
            assert.equal(res.headers['retry-after'], '1', 'Retry-After of the 503');
            res = await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ status: 500 }) });
            assertGeminiError(res, { status: 500, grpc: 'INTERNAL', what: 'injected 500' });
            assert.equal(res.headers['retry-after'], undefined, 'no Retry-After on a 500');
            assertGeminiError(await c.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ status: 401 }) }), { status: 401, grpc: 'UNAUTHENTICATED', what: 'injected 401' });
        },
    },
    {
        id: 'fakellm.gemini-reset',
        title: 'Gemini reset-after: the SSE stream is cut after N events without the STOP event; non-streaming reset-after 0 resets',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const r = await geminiSse(fk, knobs({ resetAfter: 2 }), geminiBody());
            assert.equal(r.complete, false, 'the chunked body must not end cleanly');
            assert.equal(r.events.length, 2, `events before the reset: ${truncate(r.raw, 400)}`);
            assert.ok(r.events.every((ev) => ev.json.candidates[0].finishReason === undefined), 'no finishReason before the reset');
            await expectReset(fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: knobs({ resetAfter: 0 }) }), 'non-streaming reset-after 0');
        },
    },
    {
        id: 'fakellm.openai-tool-call',
        title: 'OpenAI x-fakellm-tool-call: message.tool_calls (SDK), stream deltas id+name then >= 2 argument pieces, finish_reason tool_calls',
        needs: ['sdk', 'raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const client = makeClient(ctx.sdk, { baseUrl: fk.url, apiKey: 'sk-e2e', headers: knobs({ toolCall: TOOL }) });
            const c = await client.chat.completions.create(openaiBody({ tools: openaiTools }));
            const msg = c.choices[0].message;
            assert.equal(msg.content, null, 'content of a tool call');
            assert.equal(msg.tool_calls.length, 1);
            assert.equal(msg.tool_calls[0].type, 'function');
            assert.match(msg.tool_calls[0].id, /^call_/);
            assert.deepEqual(msg.tool_calls[0].function, { name: TOOL, arguments: TOOL_ARGS });
            assert.equal(c.choices[0].finish_reason, 'tool_calls');
            assert.deepEqual(c.usage, { prompt_tokens: PROMPT_TOKENS, completion_tokens: TOOL_PIECES.openai, total_tokens: PROMPT_TOKENS + TOOL_PIECES.openai });

            const r = await openaiSse(fk, knobs({ toolCall: TOOL }), openaiBody({ tools: openaiTools, stream: true, stream_options: { include_usage: true } }));
            assert.ok(r.complete, 'the stream ended cleanly');
            assert.equal(r.events.at(-1).data, '[DONE]');
            const deltas = r.events.filter((e) => e.json?.choices?.length).map((e) => e.json.choices[0]);
            const first = deltas[0].delta.tool_calls[0];
            assert.equal(first.index, 0);
            assert.match(first.id, /^call_/);
            assert.equal(first.type, 'function');
            assert.equal(first.function.name, TOOL);
            assert.equal(first.function.arguments, '');
            const args = deltas.slice(1).filter((d) => d.delta.tool_calls).map((d) => d.delta.tool_calls[0]);
            assert.ok(args.length >= 2, `arguments over ${args.length} deltas`);
            for (const a of args) {
                assert.equal(a.index, 0, 'index of an argument delta');
                assert.equal(a.id, undefined, 'only the first delta carries the id');
            }
            assert.equal(args.map((a) => a.function.arguments).join(''), TOOL_ARGS, 'arguments');
            assert.equal(deltas.at(-1).finish_reason, 'tool_calls');
            assert.equal(r.events.find((e) => e.json?.usage)?.json.usage.completion_tokens, TOOL_PIECES.openai, 'usage chunk');

            let err = null;
            try {
                await makeClient(ctx.sdk, { baseUrl: fk.url, apiKey: 'sk-e2e', headers: knobs({ toolCall: 'other' }) }).chat.completions.create(openaiBody({ tools: openaiTools }));
            } catch (e) {
                err = e;
            }
            assert.equal(err?.status, 400, `tool not declared: ${err?.message}`);
            assert.equal(err?.param, 'x-fakellm-tool-call', 'param of the 400');
        },
    },
    {
        id: 'fakellm.openai-faults',
        title: 'OpenAI through the same engine: injected 429 with Retry-After, reset-after cuts the stream',
        needs: ['raw', 'process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const res = await fk.client.chatDirect(openaiBody(), knobs({ status: 429, retryAfter: 5 }));
            assert.equal(res.status, 429, res.describe());
            assert.equal(res.headers['retry-after'], '5');
            assert.equal(res.json().error.code, 'fakellm_injected');
            const r = await openaiSse(fk, knobs({ resetAfter: 2 }), openaiBody({ stream: true }));
            assert.equal(r.complete, false, 'the chunked body must not end cleanly');
            assert.equal(r.events.length, 2, `events before the reset: ${truncate(r.raw, 400)}`);
        },
    },
    {
        id: 'fakellm.usage-same',
        title: 'one conversation in the three formats: the same prompt tokens (system included) and completion tokens = chunks',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            const k = knobs({ chunks: 5, chunkBytes: 12 });
            const o = (await fk.client.chatDirect(openaiBody(), k)).json();
            const a = (await fk.client.messagesDirect(anthropicBody(), k)).json();
            const g = (await fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { headers: k })).json();
            const got = {
                openai: [o.usage?.prompt_tokens, o.usage?.completion_tokens, o.choices?.[0]?.message?.content],
                anthropic: [a.usage?.input_tokens, a.usage?.output_tokens, a.content?.[0]?.text],
                gemini: [g.usageMetadata?.promptTokenCount, g.usageMetadata?.candidatesTokenCount, g.candidates?.[0]?.content?.parts?.[0]?.text],
            };
            const want = [PROMPT_TOKENS, 5, expectedText(5, 12)];
            for (const [fmt, v] of Object.entries(got)) assert.deepEqual(v, want, `${fmt}: [prompt, completion, text]`);
            // content as blocks/parts and a multi-byte character count by code point everywhere
            const uni = 'héllo wörld ünïcode';
            const o2 = (await fk.client.chatDirect({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: uni }] }] })).json();
            const a2 = (await fk.client.messagesDirect({ model: 'm', max_tokens: 9, messages: [{ role: 'user', content: uni }] })).json();
            const g2 = (await fk.client.geminiDirect(GEMINI_MODEL, { contents: [{ parts: [{ text: uni }] }] })).json();
            assert.deepEqual([o2.usage.prompt_tokens, a2.usage.input_tokens, g2.usageMetadata.promptTokenCount], Array(3).fill(promptTokens(uni)), 'code-point counting');
        },
    },
    {
        id: 'fakellm.requests-and-stats',
        title: 'every format is in the request log (path, query, headers, body) and in the stats; --help names the new routes and knob',
        needs: ['process'],
        shared: false,
        async run(ctx) {
            const fk = await startFake(ctx);
            await fk.client.chatDirect(openaiBody());
            await fk.client.messagesDirect(anthropicBody());
            await fk.client.geminiDirect(GEMINI_MODEL, geminiBody(), { stream: true, headers: { 'x-goog-api-key': null }, query: 'key=qk' });
            await fk.client.messagesDirect(anthropicBody(), { 'x-api-key': null }); // 401
            const log = await fk.client.requests();
            assert.deepEqual(log.map((r) => r.path), ['/v1/chat/completions', '/v1/messages', geminiPath(GEMINI_MODEL, true), '/v1/messages']);
            assert.equal(log[2].query, 'alt=sse&key=qk', 'the query string of the Gemini request');
            assert.equal(log[0].query, '', 'empty query');
            assert.equal(log[1].headers['anthropic-version'], '2023-06-01');
            assert.equal(log[1].headers['x-api-key'], 'direct');
            assert.deepEqual(log[1].body, anthropicBody());
            assert.deepEqual(log[2].body, geminiBody());
            const s = await fk.client.quiesce();
            assert.equal(s.chat, 4, `stats.chat counts every format: ${JSON.stringify(s)}`);
            assert.equal(s.completed, 4, `stats.completed: ${JSON.stringify(s)}`);

            const help = execFileSync(fakellmBin(), ['--help'], { encoding: 'utf8' });
            for (const needle of ['/v1/messages', ':generateContent', ':streamGenerateContent?alt=sse', 'x-fakellm-tool-call', 'anthropic-version', 'x-goog-api-key'])
                assert.ok(help.includes(needle), `fakellm --help does not mention ${needle}`);
        },
    },
];
