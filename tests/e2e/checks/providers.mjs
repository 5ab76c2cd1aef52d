// Providers (docs/providers.md): ibex speaks OpenAI to the client and each provider's own format
// upstream, through fakellm playing that provider. Checked with the official openai SDK:
// non-streaming and streaming answers, tool calls, usage, what went upstream (path, auth
// header, translated body), and a request the provider cannot take (400, nothing sent).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { knobs, TOOL_ARGS } from '../lib/fakellm.mjs';
import { SkipError, truncate } from '../lib/util.mjs';

// A dedicated ibex with one provider of the given type at the shared fakellm, aliased as "up".
async function providerIbex(ctx, type, model) {
    const base = ctx.fakellmUpstream.replace(/\/v1$/, '');
    const yaml = [
        'providers:',
        `  - {name: up, type: ${type}, base_url: "${type === 'openai' ? ctx.fakellmUpstream : base}", api_key: e2e-${type}-key}`,
        'models:',
        `  - {name: up, provider: up, model: ${model}}`,
        '',
    ].join('\n');
    const file = path.join(ctx.h.logDir, `providers-${type}.yaml`);
    fs.writeFileSync(file, yaml);
    const ibex = await ctx.ibex({ name: `providers-${type}`, upstream: null, settings: { config: file } });
    return ctx.client({ baseUrl: ibex.url });
}

const tool = { type: 'function', function: { name: 'lookup', description: 'look it up', parameters: { type: 'object', properties: { i: { type: 'integer' } } } } };

async function lastUpstream(ctx, pathPart) {
    const log = (await ctx.fakellm.requests()).filter((r) => r.method === 'POST' && r.path.includes(pathPart));
    assert.ok(log.length > 0, `fakellm got no POST to ${pathPart}`);
    return log[log.length - 1];
}

function providerCheck({ type, model, pathPart, authHeader, sysField, translates = true }) {
    return {
        id: `providers.${type}`,
        title: `${type} through fakellm with the openai SDK: answer, stream, tool call, usage, the request upstream (path, key header, system message)${translates ? `, a field ${type} cannot take` : ''}`,
        needs: ['sdk', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const client = await providerIbex(ctx, type, model);
            const messages = [
                { role: 'system', content: 'Be brief.' },
                { role: 'user', content: 'Say hello.' },
            ];
            const r = await client.chat.completions.create({ model: 'up', messages, max_tokens: 50 });
            assert.equal(r.object, 'chat.completion', `answer object ${r.object}`);
            assert.match(r.choices[0].message.content, /^tok0 tok1 /, `answer text ${truncate(r.choices[0].message.content, 80)}`);
            assert.equal(r.choices[0].finish_reason, 'stop');
            assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens === 8, `usage ${JSON.stringify(r.usage)}`);
            const up = await lastUpstream(ctx, pathPart);
            assert.ok(up.path.includes(model) || up.body.model === model, `the upstream request does not name ${model}: ${up.path} ${truncate(JSON.stringify(up.body), 200)}`);
            const h = Object.fromEntries(Object.entries(up.headers).map(([k, v]) => [k.toLowerCase(), v]));
            assert.equal(h[authHeader], `e2e-${type}-key`, `upstream ${authHeader}: ${h[authHeader]}`);
            assert.ok(JSON.stringify(up.body[sysField]).includes('Be brief.'), `the system message is not in ${sysField}: ${truncate(JSON.stringify(up.body), 300)}`);

            const stream = await client.chat.completions.create({ model: 'up', messages, stream: true, stream_options: { include_usage: true } });
            let text = '';
            let finish = null;
            let usage = null;
            for await (const chunk of stream) {
                if (chunk.usage) usage = chunk.usage;
                for (const c of chunk.choices) {
                    text += c.delta?.content || '';
                    if (c.finish_reason) finish = c.finish_reason;
                }
            }
            assert.match(text, /^tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 $/, `streamed text ${truncate(text, 120)}`);
            assert.equal(finish, 'stop', 'stream finish_reason');
            assert.ok(usage && usage.completion_tokens === 8, `stream usage ${JSON.stringify(usage)}`);

            const t = await client.chat.completions.create({ model: 'up', messages, tools: [tool] }, { headers: knobs({ toolCall: 'lookup' }) });
            const call = t.choices[0].message.tool_calls?.[0];
            assert.ok(call, `no tool call: ${truncate(JSON.stringify(t.choices[0]), 300)}`);
            assert.equal(call.function.name, 'lookup');
            assert.deepEqual(JSON.parse(call.function.arguments), JSON.parse(TOOL_ARGS));
            assert.equal(t.choices[0].finish_reason, 'tool_calls');

            const ts = await client.chat.completions.create({ model: 'up', messages, tools: [tool], stream: true }, { headers: knobs({ toolCall: 'lookup' }) });
            let args = '';
            let name = null;
            for await (const chunk of ts)
                for (const c of chunk.choices)
                    for (const d of c.delta?.tool_calls || []) {
                        if (d.function?.name) name = d.function.name;
                        args += d.function?.arguments || '';
                    }
            assert.equal(name, 'lookup', 'streamed tool call name');
            assert.deepEqual(JSON.parse(args), JSON.parse(TOOL_ARGS), `streamed tool call arguments ${args}`);

            if (!translates) return; // the OpenAI format itself: every field goes through
            const before = (await ctx.fakellm.requests()).length;
            let err = null;
            try {
                await client.chat.completions.create({ model: 'up', messages, logit_bias: { 50256: -100 } });
            } catch (e) {
                err = e;
            }
            assert.ok(err && err.status === 400, `logit_bias to ${type}: expected 400, got ${err ? err.status : 'success'}`);
            assert.equal(err.error?.code ?? err.code, 'VALIDATION_ERROR', `logit_bias: code ${JSON.stringify(err.error)}`);
            assert.equal((await ctx.fakellm.requests()).length, before, 'a refused request reached the provider');
        },
    };
}

// One real completion, plain and streamed, through a real provider; SKIP with the reason when its
// key is not in the environment. The key reaches ibex through an environment variable of its
// own (never a file in the report directory).
function realProviderCheck({ type, env, model }) {
    return {
        id: `providers.real-${type}`,
        title: `real ${type} (${model}) with the openai SDK when ${env} is set`,
        needs: ['sdk', 'process'],
        shared: false,
        timeoutMs: 90000,
        async run(ctx) {
            const key = process.env[env];
            if (!key) throw new SkipError(`${env} is not set: no real ${type} call from here`);
            const yaml = ['providers:', `  - {name: real, type: ${type}, api_key_env: IBEX_E2E_REAL_KEY${type === 'openai' ? ', base_url: "https://api.openai.com/v1"' : ''}}`, 'models:', `  - {name: real, provider: real, model: ${model}}`, ''].join('\n');
            const file = path.join(ctx.h.logDir, `providers-real-${type}.yaml`);
            fs.writeFileSync(file, yaml);
            const ibex = await ctx.ibex({ name: `providers-real-${type}`, upstream: null, settings: { config: file }, env: { IBEX_E2E_REAL_KEY: key } });
            const client = ctx.client({ baseUrl: ibex.url, timeoutMs: 60000 });
            const messages = [{ role: 'user', content: 'Reply with the single word: pong' }];
            const r = await client.chat.completions.create({ model: 'real', messages, max_tokens: 20 });
            assert.ok((r.choices[0].message.content || '').length > 0, `empty answer: ${truncate(JSON.stringify(r), 300)}`);
            assert.ok(r.usage.prompt_tokens > 0, `no usage: ${JSON.stringify(r.usage)}`);
            let text = '';
            for await (const chunk of await client.chat.completions.create({ model: 'real', messages, max_tokens: 20, stream: true }))
                for (const c of chunk.choices) text += c.delta?.content || '';
            assert.ok(text.length > 0, 'empty streamed answer');
            ctx.note(`${type}: "${truncate(r.choices[0].message.content, 40)}", ${r.usage.prompt_tokens}+${r.usage.completion_tokens} tokens`);
        },
    };
}

export default [
    providerCheck({ type: 'azure', model: 'azure-e2e', pathPart: '/openai/deployments/', authHeader: 'api-key', sysField: 'messages', translates: false }),
    providerCheck({ type: 'anthropic', model: 'claude-e2e', pathPart: '/v1/messages', authHeader: 'x-api-key', sysField: 'system' }),
    providerCheck({ type: 'gemini', model: 'gemini-e2e', pathPart: ':generateContent', authHeader: 'x-goog-api-key', sysField: 'systemInstruction' }),
    realProviderCheck({ type: 'openai', env: 'OPENAI_API_KEY', model: 'gpt-4o-mini' }),
    realProviderCheck({ type: 'anthropic', env: 'ANTHROPIC_API_KEY', model: 'claude-3-5-haiku-latest' }),
    realProviderCheck({ type: 'gemini', env: 'GEMINI_API_KEY', model: 'gemini-2.0-flash' }),
];
