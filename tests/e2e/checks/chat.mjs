// Non-streaming chat completions through the official openai SDK: the answer relayed from
// fakellm, the built-in mock model, X-Request-ID, and what ibex sends upstream.
import assert from 'node:assert/strict';
import { expectedText, knobs } from '../lib/fakellm.mjs';
import { expectApiError } from '../lib/sdk.mjs';
import { UUID_V4, randomToken } from '../lib/util.mjs';

export const MODEL = 'gpt-e2e'; // any name: it goes to the default provider (fakellm) unchanged

const messages = (text = 'Say hello.') => [
    { role: 'system', content: 'You are a test.' },
    { role: 'user', content: text },
];

function assertCompletion(data, { model, content, what = 'completion' }) {
    assert.equal(data.object, 'chat.completion', `${what}: object`);
    assert.equal(typeof data.id, 'string', `${what}: id`);
    assert.equal(data.model, model, `${what}: model`);
    assert.ok(Array.isArray(data.choices) && data.choices.length === 1, `${what}: one choice expected, got ${JSON.stringify(data.choices)}`);
    const c = data.choices[0];
    assert.equal(c.message.role, 'assistant', `${what}: message.role`);
    if (content !== undefined) assert.equal(c.message.content, content, `${what}: message.content`);
    else assert.ok(typeof c.message.content === 'string' && c.message.content.length > 0, `${what}: empty content`);
    assert.equal(c.finish_reason, 'stop', `${what}: finish_reason`);
    const u = data.usage;
    assert.ok(u && Number.isInteger(u.prompt_tokens) && Number.isInteger(u.completion_tokens), `${what}: usage ${JSON.stringify(u)}`);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: usage.total_tokens`);
}

export default [
    {
        id: 'chat.basic',
        title: 'non-streaming completion via fakellm: deterministic content, usage, X-Request-ID',
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const { data, response } = await ctx.client().chat.completions.create({ model: MODEL, messages: messages() }).withResponse();
            assertCompletion(data, { model: MODEL, content: expectedText() });
            assert.equal(data.usage.completion_tokens, 8, 'usage.completion_tokens = fakellm chunks');
            assert.ok(response.headers.get('x-request-id'), 'x-request-id response header missing');
        },
    },
    {
        id: 'chat.curl-transport',
        title: 'with upstream_http_client=curl, completions and streams through libcurl match the native client',
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        async run(ctx) {
            const ibex = await ctx.ibex({ settings: { upstream_http_client: 'curl' } });
            const client = ctx.client({ baseUrl: ibex.url });
            const data = await client.chat.completions.create({ model: MODEL, messages: messages() });
            assertCompletion(data, { model: MODEL, content: expectedText(), what: 'curl transport' });
            const stream = await client.chat.completions.create({ model: MODEL, messages: messages(), stream: true });
            let text = '';
            for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
            assert.equal(text, expectedText(), 'curl transport: streamed text');
        },
    },
    {
        id: 'chat.mock',
        title: 'model "mock" is answered by the built-in provider, deterministically',
        needs: ['sdk'],
        async run(ctx) {
            const client = ctx.client();
            const a = await client.chat.completions.create({ model: 'mock', messages: messages('determinism?') });
            assertCompletion(a, { model: 'mock' });
            const b = await client.chat.completions.create({ model: 'mock', messages: messages('determinism?') });
            assert.equal(b.choices[0].message.content, a.choices[0].message.content, 'same request, different mock content');
        },
    },
    {
        id: 'chat.request-id-echo',
        title: 'a valid client X-Request-ID is echoed in the header and in error.request_id',
        needs: ['sdk'],
        async run(ctx) {
            const client = ctx.client();
            for (const id of [randomToken('e2e.echo:A_1-b'), 'x', 'a'.repeat(128)]) {
                const { response } = await client.chat.completions
                    .create({ model: 'mock', messages: messages() }, { headers: { 'X-Request-ID': id } })
                    .withResponse();
                assert.equal(response.headers.get('x-request-id'), id, `X-Request-ID ${JSON.stringify(id)} not echoed`);
            }
            const id = randomToken('e2e.echo-err');
            const err = await expectApiError(
                ctx.sdk,
                () => client.chat.completions.create({ model: 'mock', messages: [] }, { headers: { 'X-Request-ID': id } }),
                { status: 400, code: 'VALIDATION_ERROR', what: 'empty messages' },
            );
            assert.equal(err.headers.get('x-request-id'), id, 'error response: X-Request-ID not echoed');
            assert.equal(err.error.request_id, id, 'error.request_id is not the client X-Request-ID');
        },
    },
    {
        id: 'chat.request-id-generated',
        title: 'without a valid X-Request-ID ibex generates a UUIDv4 (header and error.request_id)',
        needs: ['sdk'],
        async run(ctx) {
            const client = ctx.client();
            const seen = new Set();
            const cases = [
                ['absent', undefined],
                ['with a space', 'bad id'],
                ['129 chars', 'a'.repeat(129)],
                ['slash', 'bad/id'],
                ['semicolon', 'bad;id'],
            ];
            for (const [what, sent] of cases) {
                const headers = sent === undefined ? {} : { 'X-Request-ID': sent };
                const { response } = await client.chat.completions.create({ model: 'mock', messages: messages() }, { headers }).withResponse();
                const got = response.headers.get('x-request-id');
                assert.match(got || '', UUID_V4, `X-Request-ID ${what}: response header ${JSON.stringify(got)} is not a UUIDv4`);
                assert.ok(!seen.has(got), `X-Request-ID ${what}: ${got} was generated twice`);
                seen.add(got);
            }
            const err = await expectApiError(
                ctx.sdk,
                () => client.chat.completions.create({ model: 'mock', messages: [] }, { headers: { 'X-Request-ID': 'bad id' } }),
                { status: 400, code: 'VALIDATION_ERROR', what: 'empty messages' },
            );
            const hdr = err.headers.get('x-request-id');
            assert.match(hdr || '', UUID_V4, `error response: X-Request-ID header ${JSON.stringify(hdr)} is not a UUIDv4`);
            assert.equal(err.error.request_id, hdr, 'error.request_id differs from the generated X-Request-ID header');
        },
    },
    {
        id: 'chat.upstream-request',
        title: "fakellm receives the same body, the provider's key (not the client's) and only allow-listed headers",
        needs: ['sdk', 'fakellm'],
        async run(ctx) {
            const fake = ctx.fakellm;
            await fake.clearRequests();
            const marker = randomToken('upstream-check');
            const sent = [
                { role: 'system', content: 'You are a test.' },
                { role: 'user', content: `marker ${marker} ünïcödé "quoted" \\ back\nslash` },
            ];
            const client = ctx.client({ headers: { 'x-e2e-private': 'must-not-be-forwarded' } });
            const data = await client.chat.completions.create(
                { model: MODEL, messages: sent, temperature: 0.25, max_tokens: 50, user: 'e2e-user' },
                { headers: knobs({ chunks: 3 }) },
            );
            assert.equal(data.choices[0].message.content, expectedText(3), 'x-fakellm-chunks: 3 did not reach fakellm (forward_headers x-fakellm-*)');

            const log = (await fake.requests()).filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions');
            assert.equal(log.length, 1, `fakellm got ${log.length} chat requests for one client request`);
            const up = log[0];
            const body = typeof up.body === 'string' ? JSON.parse(up.body) : up.body;
            assert.equal(body.model, MODEL, 'upstream body.model');
            assert.deepEqual(body.messages, sent, 'upstream body.messages differ from what the client sent');
            assert.equal(body.temperature, 0.25, 'upstream body.temperature');
            assert.equal(body.max_tokens, 50, 'upstream body.max_tokens');
            assert.equal(up.headers.authorization, `Bearer ${ctx.providerKey}`, 'upstream Authorization is not the configured provider key');
            for (const [k, v] of Object.entries(up.headers)) {
                assert.ok(!String(v).includes(ctx.apiKey), `the client's API key reached the upstream in header ${k}`);
            }
            assert.ok(!JSON.stringify(body).includes(ctx.apiKey), "the client's API key reached the upstream body");
            assert.equal(up.headers['x-fakellm-chunks'], '3', 'allow-listed header x-fakellm-chunks not forwarded');
            assert.equal(up.headers['x-e2e-private'], undefined, 'header x-e2e-private forwarded although not allow-listed');
            const stainless = Object.keys(up.headers).filter((k) => k.startsWith('x-stainless-'));
            assert.deepEqual(stainless, [], 'SDK headers forwarded although not allow-listed');
        },
    },
];

export { messages, assertCompletion };
