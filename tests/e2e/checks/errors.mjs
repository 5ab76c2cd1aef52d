// Error contract through the SDK: validation, unknown model, every upstream failure class
// (status codes, refused, reset, each timeout) before and after a stream has started.
import assert from 'node:assert/strict';
import { expectedText, knobs } from '../lib/fakellm.mjs';
import { chatBody, streamChat } from '../lib/chat.mjs';
import { assertErrorShape, assertErrorResponse } from '../lib/expect.mjs';
import { errorOf } from '../lib/http.mjs';
import { closedPort } from '../lib/ports.mjs';
import { expectApiError } from '../lib/sdk.mjs';
import { now, pollUntil } from '../lib/util.mjs';
import { MODEL, messages } from './chat.mjs';

const create = (client, extra = {}, headers = {}) =>
    client.chat.completions.create({ model: MODEL, messages: messages(), ...extra }, { headers });

// Reads an SDK stream until it ends or throws. Returns {text, err, deltas, msAfterLastDelta}.
async function streamUntilError(stream) {
    let text = '';
    let deltas = 0;
    let err = null;
    let last = now();
    try {
        for await (const chunk of stream) {
            const piece = chunk.choices?.[0]?.delta?.content;
            if (piece) {
                text += piece;
                deltas++;
                last = now();
            }
        }
    } catch (e) {
        err = e;
    }
    return { text, err, deltas, msAfterLastDelta: now() - last };
}

function assertStreamError(sdk, r, { code, text, what }) {
    assert.ok(r.err, `${what}: the SDK stream ended without an error (text ${JSON.stringify(r.text)})`);
    assert.ok(r.err instanceof sdk.APIError, `${what}: expected an APIError from the stream, got ${r.err.name}: ${r.err.message}`);
    assert.equal(r.err.code, code, `${what}: error code of the stream's error event (${JSON.stringify(r.err.error)})`);
    assertErrorShape(r.err.error, { code, what });
    if (text !== undefined)
        assert.equal(r.text, text, `${what}: the upstream sent ${JSON.stringify(text)} before failing, the client got ${JSON.stringify(r.text)}: bytes received from the upstream were not relayed`);
}

// Polls fakellm until no generation is active any more (ibex let go of the upstream).
async function assertUpstreamReleased(fake, before, what, timeoutMs = 5000) {
    let s;
    const ok = await pollUntil(async () => {
        s = await fake.stats();
        return s.active === 0 && s.aborted > before.aborted;
    }, { timeoutMs });
    assert.ok(ok, `${what}: ibex did not abort the upstream transfer within ${timeoutMs} ms (fakellm stats before ${JSON.stringify(before)}, now ${JSON.stringify(s)})`);
}

export default [
    {
        id: 'errors.validation',
        title: '400 VALIDATION_ERROR with field_errors naming the bad field',
        needs: ['sdk'],
        async run(ctx) {
            const client = ctx.client();
            const cases = [
                ['messages empty', { model: 'mock', messages: [] }, 'messages'],
                ['messages missing', { model: 'mock' }, 'messages'],
                ['messages not an array', { model: 'mock', messages: 'hi' }, 'messages'],
                ['message not an object', { model: 'mock', messages: ['hi'] }, 'messages'],
                ['role missing', { model: 'mock', messages: [{ content: 'hi' }] }, 'messages'],
                ['role not a string', { model: 'mock', messages: [{ role: 7, content: 'hi' }] }, 'messages'],
                ['model missing', { messages: messages() }, 'model'],
                ['model not a string', { model: 42, messages: messages() }, 'model'],
                ['stream not boolean', { model: 'mock', messages: messages(), stream: 'yes' }, 'stream'],
            ];
            for (const [what, body, field] of cases) {
                const err = await expectApiError(ctx.sdk, () => client.chat.completions.create(body), { status: 400, code: 'VALIDATION_ERROR', what });
                assertErrorShape(err.error, { code: 'VALIDATION_ERROR', what });
                const fe = err.error.field_errors;
                assert.ok(Array.isArray(fe) && fe.length > 0, `${what}: field_errors missing or empty (${JSON.stringify(err.error)})`);
                for (const f of fe) {
                    assert.equal(typeof f.field, 'string', `${what}: field_errors[].field (${JSON.stringify(fe)})`);
                    assert.equal(typeof f.message, 'string', `${what}: field_errors[].message (${JSON.stringify(fe)})`);
                }
                assert.ok(
                    fe.some((f) => f.field === field || f.field.startsWith(`${field}[`) || f.field.startsWith(`${field}.`)),
                    `${what}: no field_errors entry for "${field}" (${JSON.stringify(fe)})`,
                );
            }
        },
    },
    {
        id: 'errors.model-not-found',
        title: 'no provider configured: unknown model -> 404 MODEL_NOT_FOUND, mock still served',
        needs: ['sdk', 'process'],
        shared: false,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null });
            const client = ctx.client({ baseUrl: ibex.url });
            const err = await expectApiError(ctx.sdk, () => create(client, { model: 'no-such-model-e2e' }), {
                status: 404,
                code: 'MODEL_NOT_FOUND',
                what: 'unknown model',
            });
            assertErrorShape(err.error, { code: 'MODEL_NOT_FOUND' });
            const ok = await create(client, { model: 'mock' });
            assert.ok(ok.choices[0].message.content, 'mock model on an ibex without providers');
        },
    },
    {
        id: 'errors.upstream-5xx',
        title: 'upstream 500/503 -> 502 UPSTREAM_ERROR with the upstream status in the message',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            for (const status of [500, 503]) {
                const err = await expectApiError(ctx.sdk, () => create(ctx.client(), {}, knobs({ status })), {
                    status: 502,
                    code: 'UPSTREAM_ERROR',
                    what: `upstream ${status}`,
                });
                assertErrorShape(err.error, { code: 'UPSTREAM_ERROR' });
                assert.match(err.error.message, new RegExp(String(status)), `upstream ${status}: status not in the message`);
            }
        },
    },
    {
        id: 'errors.upstream-429',
        title: 'upstream 429 -> 429 UPSTREAM_RATE_LIMITED with the upstream Retry-After',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const k = knobs({ status: 429, retryAfter: 7 });
            const direct = await ctx.fakellm.chatDirect(chatBody(), k);
            assert.equal(direct.status, 429, `fakellm itself: ${direct.describe()}`);
            const upstreamRetry = direct.headers['retry-after'];
            const err = await expectApiError(ctx.sdk, () => create(ctx.client(), {}, k), {
                status: 429,
                code: 'UPSTREAM_RATE_LIMITED',
                what: 'upstream 429',
            });
            assertErrorShape(err.error, { code: 'UPSTREAM_RATE_LIMITED' });
            assert.equal(err.headers.get('retry-after'), upstreamRetry, 'Retry-After not passed through');
        },
    },
    {
        id: 'errors.upstream-4xx',
        title: "upstream 400/404 -> same status, UPSTREAM_REJECTED, upstream's message",
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            for (const status of [400, 404]) {
                const direct = await ctx.fakellm.chatDirect(chatBody(), knobs({ status }));
                const upstreamMsg = errorOf(direct).message;
                const err = await expectApiError(ctx.sdk, () => create(ctx.client(), {}, knobs({ status })), {
                    status,
                    code: 'UPSTREAM_REJECTED',
                    what: `upstream ${status}`,
                });
                assertErrorShape(err.error, { code: 'UPSTREAM_REJECTED' });
                assert.ok(err.error.message.includes(upstreamMsg), `upstream ${status}: message ${JSON.stringify(err.error.message)} does not carry the upstream's ${JSON.stringify(upstreamMsg)}`);
            }
        },
    },
    {
        id: 'errors.upstream-refused',
        title: 'upstream port closed -> 502 UPSTREAM_CONNECT_FAILED (stream and not)',
        needs: ['sdk', 'process'],
        shared: false,
        async run(ctx) {
            const port = await closedPort();
            const ibex = await ctx.ibex({ upstream: `http://127.0.0.1:${port}/v1` });
            const client = ctx.client({ baseUrl: ibex.url });
            for (const stream of [false, true]) {
                const err = await expectApiError(ctx.sdk, () => create(client, { stream }), {
                    status: 502,
                    code: 'UPSTREAM_CONNECT_FAILED',
                    what: `connection refused (stream: ${stream})`,
                });
                assertErrorShape(err.error, { code: 'UPSTREAM_CONNECT_FAILED' });
            }
        },
    },
    {
        id: 'errors.upstream-reset',
        title: 'upstream resets instead of answering -> 502 UPSTREAM_RESET',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const err = await expectApiError(ctx.sdk, () => create(ctx.client(), {}, knobs({ resetAfter: 0 })), {
                status: 502,
                code: 'UPSTREAM_RESET',
                what: 'non-streaming reset',
            });
            assertErrorShape(err.error, { code: 'UPSTREAM_RESET' });
        },
    },
    {
        id: 'errors.upstream-headers-timeout',
        title: 'no upstream headers within upstream_header_timeout (1s) -> 504 UPSTREAM_HEADERS_TIMEOUT',
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { upstream_header_timeout: '1s' } });
            const client = ctx.client({ baseUrl: ibex.url });
            for (const stream of [false, true]) {
                const t0 = now();
                const err = await expectApiError(ctx.sdk, () => create(client, { stream }, knobs({ delayMs: 8000 })), {
                    status: 504,
                    code: 'UPSTREAM_HEADERS_TIMEOUT',
                    what: `headers delayed 8 s (stream: ${stream})`,
                });
                assertErrorShape(err.error, { code: 'UPSTREAM_HEADERS_TIMEOUT' });
                const ms = now() - t0;
                assert.ok(ms < 6000, `stream: ${stream}: the 1 s header timeout answered only after ${ms.toFixed(0)} ms`);
            }
        },
    },
    {
        id: 'errors.first-token-timeout',
        title: 'stream without a first body byte within upstream_first_token_timeout (1s) -> plain 504 UPSTREAM_FIRST_TOKEN_TIMEOUT',
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { upstream_first_token_timeout: '1s' } });
            const client = ctx.client({ baseUrl: ibex.url });
            const t0 = now();
            const err = await expectApiError(ctx.sdk, () => create(client, { stream: true }, knobs({ firstTokenMs: 8000 })), {
                status: 504,
                code: 'UPSTREAM_FIRST_TOKEN_TIMEOUT',
                what: 'first token delayed 8 s',
            });
            assertErrorShape(err.error, { code: 'UPSTREAM_FIRST_TOKEN_TIMEOUT' });
            const ms = now() - t0;
            assert.ok(ms < 6000, `the 1 s first-token timeout answered only after ${ms.toFixed(0)} ms`);
        },
    },
    {
        id: 'errors.idle-timeout',
        title: 'upstream stalls mid-stream beyond upstream_idle_timeout (1s) -> SDK stream throws UPSTREAM_IDLE_TIMEOUT',
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { upstream_idle_timeout: '1s' } });
            const before = await ctx.fakellm.quiesce();
            const stream = await create(ctx.client({ baseUrl: ibex.url }), { stream: true }, knobs({ stallAfter: 2 }));
            const r = await streamUntilError(stream);
            assertStreamError(ctx.sdk, r, { code: 'UPSTREAM_IDLE_TIMEOUT', text: expectedText(2), what: 'stall after 2 chunks' });
            assert.ok(r.msAfterLastDelta < 6000, `the 1 s idle timeout fired only ${r.msAfterLastDelta.toFixed(0)} ms after the last chunk`);
            await assertUpstreamReleased(ctx.fakellm, before, 'after the idle timeout');
        },
    },
    {
        id: 'errors.reset-mid-stream',
        title: 'upstream resets after 3 chunks -> one SSE error event UPSTREAM_RESET, no [DONE], clean chunked end',
        needs: ['sdk', 'raw', 'fakellm'],
        async run(ctx) {
            // 100 ms between chunks: the reset comes 100 ms after the third chunk, so all three
            // reached ibex before it (without a pause the RST can overtake them).
            const k = knobs({ resetAfter: 3, intervalMs: 100 });
            const stream = await create(ctx.client(), { stream: true }, k);
            const r = await streamUntilError(stream);
            assertStreamError(ctx.sdk, r, { code: 'UPSTREAM_RESET', text: expectedText(3), what: 'SDK' });

            const raw = await streamChat(ctx.target, { body: chatBody({ model: MODEL }), headers: { ...ctx.authHeaders, ...k } });
            assert.equal(raw.acc.text, expectedText(3), `raw: the upstream sent ${JSON.stringify(expectedText(3))} before the reset, the client got ${JSON.stringify(raw.acc.text)}`);
            assert.ok(raw.acc.error, 'raw: no error event');
            assertErrorShape(raw.acc.error, { code: 'UPSTREAM_RESET', what: 'raw error event' });
            assert.equal(raw.acc.error.request_id, raw.head.headers['x-request-id'], 'raw: error.request_id differs from X-Request-ID');
            assert.equal(raw.acc.eventsAfterError, 0, 'raw: events after the error event');
            assert.equal(raw.acc.done, false, 'raw: [DONE] sent after an upstream failure');
            assert.ok(raw.complete, 'raw: the chunked body was not ended cleanly (no terminating chunk)');
        },
    },
    {
        id: 'errors.upstream-total-timeout',
        title: 'upstream_total_timeout (2s): 504 UPSTREAM_TIMEOUT before a stream, error event after it started',
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { upstream_total_timeout: '2s' } });
            const client = ctx.client({ baseUrl: ibex.url });
            const t0 = now();
            const err = await expectApiError(ctx.sdk, () => create(client, {}, knobs({ delayMs: 10000 })), {
                status: 504,
                code: 'UPSTREAM_TIMEOUT',
                what: 'answer delayed 10 s',
            });
            assertErrorShape(err.error, { code: 'UPSTREAM_TIMEOUT' });
            assert.ok(now() - t0 < 8000, `the 2 s total timeout answered only after ${(now() - t0).toFixed(0)} ms`);

            const stream = await create(client, { stream: true }, knobs({ chunks: 40, intervalMs: 250 }));
            const r = await streamUntilError(stream);
            assertStreamError(ctx.sdk, r, { code: 'UPSTREAM_TIMEOUT', what: 'stream of 10 s' });
            assert.ok(r.deltas > 0 && r.deltas < 40, `stream: ${r.deltas} deltas before the error`);
            assert.equal(r.text, expectedText(r.deltas), 'stream: text before the error');
        },
    },
    {
        id: 'errors.unknown-route',
        title: 'unknown routes -> 404 NOT_FOUND in the error shape',
        needs: ['raw'],
        async run(ctx) {
            for (const [method, path] of [
                ['GET', '/v1/nope'],
                ['POST', '/v2/chat/completions'],
                ['GET', '/'],
            ]) {
                const res = await ctx.request(path, { method, body: method === 'POST' ? chatBody({ model: 'mock' }) : undefined });
                assertErrorResponse(res, { status: 404, code: 'NOT_FOUND', what: `${method} ${path}` });
            }
        },
    },
    {
        id: 'errors.method-not-allowed',
        title: 'known route, wrong method -> 405 METHOD_NOT_ALLOWED',
        needs: ['raw'],
        async run(ctx) {
            for (const [method, path] of [
                ['GET', '/v1/chat/completions'],
                ['DELETE', '/v1/chat/completions'],
                ['POST', '/v1/models'],
            ]) {
                const res = await ctx.request(path, { method, body: method === 'POST' ? {} : undefined });
                assertErrorResponse(res, { status: 405, code: 'METHOD_NOT_ALLOWED', what: `${method} ${path}` });
            }
        },
    },
];
