// Streaming chat completions: the SDK's view (deltas, usage, timing of arrival) and the wire
// format (event-stream headers, [DONE], the chunked terminator).
import assert from 'node:assert/strict';
import { expectedText, knobs } from '../lib/fakellm.mjs';
import { chatBody, streamChat, streamProblems } from '../lib/chat.mjs';
import { now } from '../lib/util.mjs';
import { MODEL, messages } from './chat.mjs';

// Consumes an SDK stream; returns {text, finishReason, usage, chunks, times}.
export async function collectSdkStream(stream) {
    const out = { text: '', finishReason: null, usage: null, chunks: 0, times: [], usageChunks: 0 };
    const t0 = now();
    for await (const chunk of stream) {
        out.chunks++;
        if (chunk.usage) {
            out.usage = chunk.usage;
            out.usageChunks++;
        }
        for (const c of chunk.choices || []) {
            if (c.delta?.content) {
                out.text += c.delta.content;
                out.times.push(now() - t0);
            }
            if (c.finish_reason) out.finishReason = c.finish_reason;
        }
    }
    return out;
}

export default [
    {
        id: 'stream.basic',
        title: 'SDK stream via fakellm: concatenated deltas = expected text, finish_reason stop',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const stream = await ctx.client().chat.completions.create({ model: MODEL, messages: messages(), stream: true });
            const r = await collectSdkStream(stream);
            assert.equal(r.text, expectedText(), 'streamed text');
            assert.equal(r.finishReason, 'stop', 'finish_reason');
            assert.equal(r.usage, null, 'usage chunk sent although stream_options.include_usage was not set');
        },
    },
    {
        id: 'stream.usage',
        title: 'stream_options.include_usage yields one final usage chunk',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const stream = await ctx.client().chat.completions.create({
                model: MODEL,
                messages: messages(),
                stream: true,
                stream_options: { include_usage: true },
            });
            const r = await collectSdkStream(stream);
            assert.equal(r.text, expectedText(), 'streamed text');
            assert.equal(r.usageChunks, 1, 'number of chunks carrying usage');
            assert.equal(r.usage.completion_tokens, 8, `usage.completion_tokens (${JSON.stringify(r.usage)})`);
            assert.ok(r.usage.prompt_tokens >= 1, `usage.prompt_tokens (${JSON.stringify(r.usage)})`);
            assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens, 'usage.total_tokens');
        },
    },
    {
        id: 'stream.relay-immediate',
        title: 'chunks are relayed as they arrive (4 chunks 300 ms apart: first delta >= 600 ms before the last)',
        needs: ['sdk', 'fakellm'],
        timeoutMs: 30000,
        async run(ctx) {
            const stream = await ctx.client().chat.completions.create(
                { model: MODEL, messages: messages(), stream: true },
                { headers: knobs({ chunks: 4, intervalMs: 300 }) },
            );
            const r = await collectSdkStream(stream);
            assert.equal(r.text, expectedText(4), 'streamed text');
            assert.equal(r.times.length >= 2, true, `expected several deltas, got ${r.times.length}`);
            const spread = r.times[r.times.length - 1] - r.times[0];
            ctx.note(`delta arrival times (ms since the stream began): ${r.times.map((x) => x.toFixed(0)).join(', ')}`);
            assert.ok(spread >= 600, `first and last delta arrived only ${spread.toFixed(0)} ms apart (upstream spaced them over 900 ms): ibex buffers instead of relaying`);
        },
    },
    {
        id: 'stream.raw-framing',
        title: 'wire format of a stream: 200 text/event-stream, X-Request-ID, data: [DONE], clean chunked end',
        needs: ['raw', 'fakellm'],
        async run(ctx) {
            const r = await streamChat(ctx.target, { body: chatBody({ model: MODEL }), headers: ctx.authHeaders });
            assert.ok(r.head.headers['x-request-id'], 'no X-Request-ID header on a stream');
            const p = streamProblems(r, { expectText: expectedText() });
            assert.deepEqual(p, [], `stream problems: ${p.join('; ')}`);
        },
    },
    {
        id: 'stream.mock',
        title: 'model "mock" streams too: text, finish_reason stop, [DONE]',
        needs: ['raw'],
        async run(ctx) {
            const r = await streamChat(ctx.target, { body: chatBody({ model: 'mock' }), headers: ctx.authHeaders });
            const p = streamProblems(r);
            if (r.acc.text.length === 0) p.push('mock stream carried no text');
            assert.deepEqual(p, [], `stream problems: ${p.join('; ')}`);
        },
    },
];
