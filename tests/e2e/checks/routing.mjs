// Routing (docs/providers.md): a model alias with several deployments, retries that honour
// Retry-After, fallback to the next deployment while nothing was sent, no fallback once a stream
// has started, the circuit breaker taking a failing deployment out and trying it again after
// its cool-down, and the cost of a turn from the prices table. Every attempt must show in the
// trace (attempts) and in ibex_upstream_attempts_total. The dead deployment is a closed port.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { assertErrorResponse } from '../lib/expect.mjs';
import { streamChat } from '../lib/chat.mjs';
import { knobs } from '../lib/fakellm.mjs';
import { request } from '../lib/http.mjs';
import { IbexAdmin } from '../lib/ibexadmin.mjs';
import { closedPort } from '../lib/ports.mjs';
import { parseProm, sumSamples } from '../lib/prom.mjs';
import { now, truncate } from '../lib/util.mjs';
import { waitTrace } from './traces.mjs';

// A dedicated ibex whose YAML file has providers "live" (the shared fakellm), "dead" (a closed
// port) and the extra ones ({name, url}), the given models and prices, and the given settings.
async function routedIbex(ctx, name, { models, prices = [], settings = {}, providers = [] }) {
    const dead = await closedPort();
    const yaml = [
        'providers:',
        `  - {name: live, type: openai, base_url: "${ctx.fakellmUpstream}", api_key: e2e-provider-key}`,
        `  - {name: dead, type: openai, base_url: "http://127.0.0.1:${dead}/v1", api_key: e2e-provider-key}`,
        ...providers.map((p) => `  - {name: ${p.name}, type: openai, base_url: "${p.url}/v1", api_key: e2e-provider-key}`),
        'models:',
        ...models.map((m) => `  - {name: ${m.name}, deployments: [${m.deployments.map((d) => `{provider: ${d.provider}, model: ${d.model}, weight: ${d.weight ?? 1}${d.apiKey ? `, api_key: ${d.apiKey}` : ''}}`).join(', ')}]}`),
        ...(prices.length ? ['prices:', ...prices.map((p) => `  - {model: ${p.model}, input: ${p.input}, output: ${p.output}}`)] : []),
        '',
    ].join('\n');
    const file = path.join(ctx.h.logDir, `${name}.yaml`);
    fs.writeFileSync(file, yaml);
    const ibex = await ctx.ibex({
        name,
        upstream: null,
        settings: { config: file, upstream_retries: 0, breaker_failures: 0, upstream_retry_backoff: '10ms', upstream_connect_timeout: '1s', ...settings },
    });
    return { ibex, admin: new IbexAdmin(ibex.target, ctx.apiKey) };
}

const body = (model, text, extra = {}) => ({ model, messages: [{ role: 'user', content: text }], ...extra });

async function traceOf(admin, res, what) {
    const id = res.headers['x-ibex-trace-id'];
    assert.ok(id, `${what}: no X-IBEX-Trace-ID (${res.describe ? res.describe() : res.status})`);
    const { trace } = await waitTrace(admin, id, now());
    assert.ok(trace, `${what}: trace ${id} never became visible`);
    return trace;
}

const outcomes = (t) => (t.attempts || []).map((a) => `${a.provider}:${a.outcome}`).join(' ');

async function metrics(ibex) {
    const res = await request(ibex.target, { path: '/metrics', timeoutMs: 5000 });
    assert.equal(res.status, 200, `GET /metrics: ${res.describe()}`);
    return parseProm(res.body.toString('utf8'));
}

// Requests fakellm received for a model name (the model of the body ibex sent).
async function upstreamCount(ctx, model) {
    const log = await ctx.fakellm.requests();
    // fakellm logs a JSON body as the parsed object
    return log.filter((r) => r.method === 'POST' && r.body?.model === model).length;
}

export default [
    {
        id: 'routing.fallback',
        title: 'a deployment that cannot be reached is retried, then the next deployment answers; streaming too; every attempt in the trace and the metrics',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { ibex, admin } = await routedIbex(ctx, 'routing-fallback', {
                models: [{ name: 'fb', deployments: [{ provider: 'dead', model: 'm-dead' }, { provider: 'live', model: 'm-live-fb', weight: 0 }] }],
                settings: { upstream_retries: 1 },
            });
            const res = await admin.call('POST', '/v1/chat/completions', body('fb', 'fall back please'));
            assert.equal(res.status, 200, `fallback: ${res.describe()}`);
            assert.equal(res.json().choices[0].message.content.length > 0, true, `fallback: empty answer ${truncate(res.text(), 200)}`);
            const t = await traceOf(admin, res, 'fallback');
            assert.equal(outcomes(t), 'dead:connect_error dead:connect_error live:ok', `fallback: attempts ${JSON.stringify(t.attempts)}`);
            assert.equal(t.attempts[2].model, 'm-live-fb', `fallback: the live attempt's model ${JSON.stringify(t.attempts[2])}`);
            assert.equal(t.provider, 'live', `fallback: the trace's provider ${t.provider}`);
            assert.equal(t.model, 'fb', `fallback: the trace keeps the client's model name, got ${t.model}`);
            assert.equal(await upstreamCount(ctx, 'm-live-fb'), 1, 'fallback: fakellm calls for the live deployment');

            const s = await streamChat(ibex.target, { body: body('fb', 'fall back streaming'), headers: { Authorization: `Bearer ${ctx.apiKey}` } });
            assert.ok(s.acc.done, `streaming fallback: the stream did not end with [DONE]`);
            assert.ok(s.acc.text.length > 0, 'streaming fallback: no text');
            const m = await metrics(ibex);
            const dead = sumSamples(m, 'ibex_upstream_attempts_total', { provider: 'dead', model: 'm-dead', outcome: 'connect_error' });
            const live = sumSamples(m, 'ibex_upstream_attempts_total', { provider: 'live', model: 'm-live-fb', outcome: 'ok' });
            assert.equal(dead, 4, `ibex_upstream_attempts_total dead connect_error: ${dead}`);
            assert.equal(live, 2, `ibex_upstream_attempts_total live ok: ${live}`);
            ctx.note(`attempts of one request: ${outcomes(t)}`);
        },
    },
    {
        id: 'routing.fallback-faults',
        title: 'each fault kind of a deployment (500, 429 asking too long a wait, a header timeout, a reset) falls back to the next deployment, which answers',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            const faults = [
                ['f500', ['--status', '500'], 'server_error'],
                ['f429', ['--status', '429', '--retry-after', '30'], 'rate_limited'],
                ['fslow', ['--delay-ms', '3000'], 'timeout'],
                ['freset', ['--reset-after', '0'], 'reset'],
            ];
            const providers = [];
            for (const [name, args] of faults) providers.push({ name, url: (await ctx.fakellmServer({ name: `routing-${name}`, args })).url });
            const { admin } = await routedIbex(ctx, 'routing-faults', {
                providers,
                models: faults.map(([name]) => ({ name: `m-${name}`, deployments: [{ provider: name, model: `up-${name}` }, { provider: 'live', model: `live-${name}`, weight: 0 }] })),
                settings: { upstream_retries: 1, upstream_header_timeout: '500ms', upstream_retry_after_max: '2s' },
            });
            const seen = [];
            for (const [name, , outcome] of faults) {
                const res = await admin.call('POST', '/v1/chat/completions', body(`m-${name}`, `fault ${name}`));
                assert.equal(res.status, 200, `${name}: ${res.describe()}`);
                const t = await traceOf(admin, res, name);
                // a 429 asking for 30 s (over upstream_retry_after_max) is not retried in place
                const want = outcome === 'rate_limited' ? `${name}:${outcome} live:ok` : `${name}:${outcome} ${name}:${outcome} live:ok`;
                assert.equal(outcomes(t), want, `${name}: attempts ${JSON.stringify(t.attempts)}`);
                seen.push(`${name}: ${outcomes(t)}`);
            }
            ctx.note(seen.join('; '));
        },
    },
    {
        id: 'routing.retry-after',
        title: 'a 429 with Retry-After is retried on the same deployment after the wait; a Retry-After above upstream_retry_after_max is not waited for',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { admin } = await routedIbex(ctx, 'routing-retry-after', {
                models: [{ name: 'ra', deployments: [{ provider: 'live', model: 'm-ra' }] }],
                settings: { upstream_retries: 1, upstream_retry_after_max: '1s' },
            });
            let start = now();
            const res = await admin.call('POST', '/v1/chat/completions', body('ra', 'rate limited'), { headers: knobs({ status: 429, retryAfter: 1 }) });
            const took = now() - start;
            assertErrorResponse(res, { status: 429, code: 'UPSTREAM_RATE_LIMITED', what: 'two 429 answers' });
            assert.ok(took >= 950, `the retry did not wait for Retry-After: 1 (${Math.round(took)} ms)`);
            const t = await traceOf(admin, res, '429 twice');
            assert.equal(outcomes(t), 'live:rate_limited live:rate_limited', `429 twice: attempts ${JSON.stringify(t.attempts)}`);
            assert.equal(await upstreamCount(ctx, 'm-ra'), 2, '429 twice: fakellm calls');

            start = now();
            const long = await admin.call('POST', '/v1/chat/completions', body('ra', 'rate limited long'), { headers: knobs({ status: 429, retryAfter: 30 }) });
            assertErrorResponse(long, { status: 429, code: 'UPSTREAM_RATE_LIMITED', what: 'a 429 asking for 30 s' });
            assert.ok(now() - start < 900, `a Retry-After of 30 s over upstream_retry_after_max was waited for (${Math.round(now() - start)} ms)`);
            const t2 = await traceOf(admin, long, '429 long');
            assert.equal(outcomes(t2), 'live:rate_limited', `a 429 asking for 30 s: attempts ${JSON.stringify(t2.attempts)}`);
            ctx.note(`429 + Retry-After: 1 retried after ${Math.round(took)} ms`);
        },
    },
    {
        id: 'routing.no-fallback-after-first-byte',
        title: 'a stream that breaks after its first bytes ends with an error event: no retry, no fallback, one upstream call',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { ibex, admin } = await routedIbex(ctx, 'routing-first-byte', {
                models: [{ name: 'fb1', deployments: [{ provider: 'live', model: 'm-first-byte' }, { provider: 'live', model: 'm-first-byte-2', weight: 0 }] }],
                settings: { upstream_retries: 2 },
            });
            const s = await streamChat(ibex.target, {
                body: body('fb1', 'break mid-stream'),
                headers: { Authorization: `Bearer ${ctx.apiKey}`, ...knobs({ resetAfter: 2 }) },
            });
            assert.ok(!s.acc.done, 'a reset stream ended with [DONE]');
            assert.ok(s.acc.text.length > 0, 'the stream broke before its first bytes: nothing to check');
            assert.ok(s.acc.error, `no error event at the end of the broken stream (${s.acc.events} events)`);
            assert.equal(s.acc.error.code, 'UPSTREAM_RESET', `error event ${JSON.stringify(s.acc.error)}`);
            assert.equal(await upstreamCount(ctx, 'm-first-byte'), 1, 'the broken stream was retried');
            assert.equal(await upstreamCount(ctx, 'm-first-byte-2'), 0, 'the broken stream fell back');
            const t = await traceOf(admin, s.head, 'broken stream');
            assert.equal(outcomes(t), 'live:reset', `broken stream: attempts ${JSON.stringify(t.attempts)}`);
        },
    },
    {
        id: 'routing.circuit-breaker',
        title: 'breaker_failures failures take a deployment out (the fallback answers at once), one attempt tries it after the cool-down; every deployment out: 503 UPSTREAM_UNAVAILABLE with Retry-After',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const { admin } = await routedIbex(ctx, 'routing-breaker', {
                models: [
                    { name: 'cb', deployments: [{ provider: 'dead', model: 'm-cb-dead' }, { provider: 'live', model: 'm-cb-live', weight: 0 }] },
                    { name: 'cb-only', deployments: [{ provider: 'dead', model: 'm-only-dead' }] },
                    { name: 'cb-live', deployments: [{ provider: 'live', model: 'm-cb-live-only' }] },
                ],
                settings: { breaker_failures: 2, breaker_cooldown: '1500ms' },
            });
            const seen = [];
            const turn = async (what) => {
                const res = await admin.call('POST', '/v1/chat/completions', body('cb', what));
                assert.equal(res.status, 200, `${what}: ${res.describe()}`);
                const t = await traceOf(admin, res, what);
                seen.push(`${what}: ${outcomes(t)}`);
                return outcomes(t);
            };
            assert.equal(await turn('first'), 'dead:connect_error live:ok');
            assert.equal(await turn('second'), 'dead:connect_error live:ok');
            assert.equal(await turn('open'), 'live:ok', `the breaker did not open: ${seen.join('; ')}`);
            await new Promise((r) => setTimeout(r, 1700));
            assert.equal(await turn('half-open'), 'dead:connect_error live:ok', `after the cool-down the dead deployment was not tried once: ${seen.join('; ')}`);
            assert.equal(await turn('open again'), 'live:ok', `a failed try after the cool-down did not take it out again: ${seen.join('; ')}`);

            for (const what of ['only 1', 'only 2']) {
                const r = await admin.call('POST', '/v1/chat/completions', body('cb-only', what));
                assertErrorResponse(r, { status: 502, code: 'UPSTREAM_CONNECT_FAILED', what });
            }
            const out = await admin.call('POST', '/v1/chat/completions', body('cb-only', 'all out'));
            assertErrorResponse(out, { status: 503, code: 'UPSTREAM_UNAVAILABLE', what: 'every deployment out' });
            const ra = Number(out.headers['retry-after']);
            assert.ok(ra >= 1 && ra <= 2, `every deployment out: Retry-After ${out.headers['retry-after']}`);
            // closing: a deployment that answers after its cool-down is back for good
            const knobbed = (what, status) => admin.call('POST', '/v1/chat/completions', body('cb-live', what), { headers: status ? knobs({ status }) : {} });
            for (const what of ['live fails 1', 'live fails 2'])
                assertErrorResponse(await knobbed(what, 500), { status: 502, code: 'UPSTREAM_ERROR', what });
            assertErrorResponse(await knobbed('live out', 500), { status: 503, code: 'UPSTREAM_UNAVAILABLE', what: 'the live deployment out' });
            await new Promise((r) => setTimeout(r, 1700));
            assert.equal((await knobbed('live back', 0)).status, 200, 'after the cool-down a good answer did not get through');
            assertErrorResponse(await knobbed('closed again', 500), { status: 502, code: 'UPSTREAM_ERROR', what: 'one failure after the breaker closed' });
            assert.equal((await knobbed('still in', 0)).status, 200, 'one failure after closing took the deployment out');
            ctx.note(seen.join('; '));
        },
    },
    {
        id: 'routing.cost',
        title: 'the prices table turns usage into cost_usd on the trace and into ibex_cost_usd_total / ibex_tokens_total; a model without a price has cost_usd null; a deployment with its own api_key sends it',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const { ibex, admin } = await routedIbex(ctx, 'routing-cost', {
                models: [
                    { name: 'priced', deployments: [{ provider: 'live', model: 'm-priced' }] },
                    { name: 'free', deployments: [{ provider: 'live', model: 'm-unpriced' }] },
                    { name: 'keyed', deployments: [{ provider: 'live', model: 'm-keyed', apiKey: 'e2e-deployment-key' }] },
                ],
                prices: [{ model: 'm-priced', input: 2.5, output: 10 }],
            });
            // a deployment with a key of its own sends that key, not the provider's
            const keyed = await admin.call('POST', '/v1/chat/completions', body('keyed', 'which key'));
            assert.equal(keyed.status, 200, `keyed: ${keyed.describe()}`);
            const up = (await ctx.fakellm.requests()).filter((r) => r.body?.model === 'm-keyed');
            assert.equal(up.length, 1, `keyed: fakellm calls ${up.length}`);
            const auth = Object.entries(up[0].headers).find(([k]) => k.toLowerCase() === 'authorization')?.[1];
            assert.equal(auth, 'Bearer e2e-deployment-key', `keyed: the upstream Authorization ${auth}`);

            const res = await admin.call('POST', '/v1/chat/completions', body('priced', 'what does this cost'));
            assert.equal(res.status, 200, `priced: ${res.describe()}`);
            const usage = res.json().usage;
            const t = await traceOf(admin, res, 'priced');
            const want = (usage.prompt_tokens * 2.5 + usage.completion_tokens * 10) / 1e6;
            assert.ok(Math.abs(t.cost_usd - want) < 1e-9, `cost_usd ${t.cost_usd}, expected ${want} from usage ${JSON.stringify(usage)}`);
            const free = await admin.call('POST', '/v1/chat/completions', body('free', 'no price'));
            assert.equal((await traceOf(admin, free, 'unpriced')).cost_usd, null, 'a model without a price has a cost');
            const m = await metrics(ibex);
            const cost = sumSamples(m, 'ibex_cost_usd_total', { provider: 'live' });
            assert.ok(Math.abs(cost - want) < 1e-9, `ibex_cost_usd_total ${cost}, expected ${want}`);
            const prompt = sumSamples(m, 'ibex_tokens_total', { provider: 'live', kind: 'prompt' });
            const sent = usage.prompt_tokens + free.json().usage.prompt_tokens + keyed.json().usage.prompt_tokens;
            assert.equal(prompt, sent, `ibex_tokens_total prompt ${prompt}, the three answers said ${sent}`);
            ctx.note(`cost of ${usage.prompt_tokens}+${usage.completion_tokens} tokens: $${t.cost_usd}`);
        },
    },
];
