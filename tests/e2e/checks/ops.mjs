// Operational routes (/health, /ready, /status, /metrics) and the request log on stderr.
import assert from 'node:assert/strict';
import { chatBody } from '../lib/chat.mjs';
import { parseProm, sumSamples, hasFamily } from '../lib/prom.mjs';
import { pollUntil, randomToken } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';

function assertJson(res, what) {
    assert.match(res.headers['content-type'] || '', /^application\/json/, `${what}: content-type`);
    const j = res.json();
    assert.ok(j && typeof j === 'object' && !Array.isArray(j), `${what}: not a JSON object: ${res.describe()}`);
    return j;
}

async function scrape(ctx) {
    const res = await ctx.request('/metrics');
    assert.equal(res.status, 200, `GET /metrics: ${res.describe()}`);
    assert.match(res.headers['content-type'] || '', /^text\/plain/, 'GET /metrics content-type');
    return parseProm(res.text());
}

const chatRoute = (r) => typeof r === 'string' && r.includes('chat');

export default [
    {
        id: 'ops.health',
        title: 'GET /health -> 200 {"status":"ok"}, X-Request-ID echoed',
        needs: ['raw'],
        async run(ctx) {
            const id = randomToken('e2e.health');
            const res = await ctx.request('/health', { headers: { 'X-Request-ID': id } });
            assert.equal(res.status, 200, `GET /health: ${res.describe()}`);
            assert.equal(assertJson(res, 'GET /health').status, 'ok', `GET /health body: ${res.describe()}`);
            assert.equal(res.headers['x-request-id'], id, 'GET /health: X-Request-ID not echoed');
        },
    },
    {
        id: 'ops.ready',
        title: 'GET /ready -> 200 (503 allowed only against a remote target) with a JSON body of dependency checks',
        needs: ['raw'],
        async run(ctx) {
            const res = await ctx.request('/ready');
            assert.ok([200, 503].includes(res.status), `GET /ready: ${res.describe()}`);
            const j = assertJson(res, 'GET /ready');
            ctx.note(`GET /ready -> ${res.status} ${JSON.stringify(j).slice(0, 300)}`);
            if (!ctx.remote) assert.equal(res.status, 200, `GET /ready with every dependency up: ${res.describe()}`);
            assert.ok(
                Object.values(j).some((v) => v && typeof v === 'object'),
                `GET /ready: no per-dependency checks in ${JSON.stringify(j)}`,
            );
        },
    },
    {
        id: 'ops.status',
        title: 'GET /status -> version, uptime_s, workers',
        needs: ['raw'],
        async run(ctx) {
            const res = await ctx.request('/status');
            assert.equal(res.status, 200, `GET /status: ${res.describe()}`);
            const j = assertJson(res, 'GET /status');
            assert.equal(typeof j.version, 'string', `version in ${JSON.stringify(j)}`);
            assert.ok(j.version.length > 0, 'empty version');
            assert.equal(typeof j.uptime_s, 'number', `uptime_s in ${JSON.stringify(j)}`);
            assert.ok(j.uptime_s >= 0, `uptime_s ${j.uptime_s}`);
            assert.ok(Number.isInteger(j.workers) && j.workers >= 1, `workers in ${JSON.stringify(j)}`);
            if (!ctx.remote) assert.equal(j.workers, ctx.h.sharedIbexSettings().workers, 'workers differs from --workers');
            // the store was migrated at start; its URL is shown without a password
            assert.ok(j.store && typeof j.store.backend === 'string', `store in ${JSON.stringify(j)}`);
            assert.ok(Number.isInteger(j.store.schema_version) && j.store.schema_version >= 1, `store.schema_version in ${JSON.stringify(j.store)}`);
            if (!ctx.remote) assert.equal(j.store.backend, 'sqlite', 'the harness gives each ibex a SQLite store');
            assert.ok(!/:[^:@/]+@/.test(j.store.url) || j.store.url.includes(':***@'), `store.url shows a password: ${j.store.url}`);
        },
    },
    {
        id: 'ops.metrics',
        title: 'GET /metrics: Prometheus text; chat counter increments; gauges, histograms and byte counters present',
        needs: ['raw'],
        async run(ctx) {
            const m1 = await scrape(ctx);
            const c1 = sumSamples(m1, 'ibex_requests_total', { route: chatRoute, status: '200' }) ?? 0;
            const rx1 = sumSamples(m1, 'ibex_http_bytes_received_total');
            const up1 = sumSamples(m1, 'ibex_upstream_duration_seconds_count') ?? 0;

            const body = chatBody({ model: 'mock' });
            for (let i = 0; i < 2; i++) {
                const res = await ctx.request('/v1/chat/completions', { method: 'POST', body });
                assert.equal(res.status, 200, `mock chat: ${res.describe()}`);
            }
            if (ctx.fakellm) {
                const res = await ctx.request('/v1/chat/completions', { method: 'POST', body: chatBody({ model: MODEL }) });
                assert.equal(res.status, 200, `chat via fakellm: ${res.describe()}`);
            }
            const m2 = await scrape(ctx);
            const c2 = sumSamples(m2, 'ibex_requests_total', { route: chatRoute, status: '200' });
            const routes = [...new Set(m2.samples.filter((s) => s.name === 'ibex_requests_total').map((s) => JSON.stringify(s.labels)))];
            assert.ok(c2 !== null, `no ibex_requests_total{route=~"chat",status="200"} series; series: ${routes.join(' ')}`);
            const want = ctx.fakellm ? 3 : 2;
            assert.ok(c2 - c1 >= want, `ibex_requests_total for chat 200 went ${c1} -> ${c2} after ${want} requests`);

            for (const name of ['ibex_requests_in_flight', 'ibex_streams_open']) {
                const v = sumSamples(m2, name);
                assert.ok(v !== null, `gauge ${name} missing`);
                assert.ok(v >= 0, `gauge ${name} = ${v}`);
            }
            for (const name of ['ibex_upstream_duration_seconds', 'ibex_gateway_overhead_seconds']) {
                assert.ok(sumSamples(m2, `${name}_bucket`, { le: '+Inf' }) !== null, `histogram ${name}: no le="+Inf" bucket`);
                assert.ok(sumSamples(m2, `${name}_count`) !== null, `histogram ${name}: no _count`);
                assert.ok(sumSamples(m2, `${name}_sum`) !== null, `histogram ${name}: no _sum`);
                if (m2.types[name]) assert.equal(m2.types[name], 'histogram', `# TYPE of ${name}`);
            }
            if (ctx.fakellm) {
                const up2 = sumSamples(m2, 'ibex_upstream_duration_seconds_count');
                assert.ok(up2 > up1, `ibex_upstream_duration_seconds_count did not grow after an upstream request (${up1} -> ${up2})`);
            }
            const rx2 = sumSamples(m2, 'ibex_http_bytes_received_total');
            assert.ok(rx2 !== null && hasFamily(m2, 'ibex_http_bytes_sent_total'), 'byte counters missing');
            assert.ok(rx2 - (rx1 ?? 0) >= 2 * JSON.stringify(body).length, `ibex_http_bytes_received_total grew by ${rx2 - rx1} only`);
        },
    },
    {
        id: 'ops.logs',
        title: 'stderr is JSON lines: start-up lines, then "listening", one "request" line per request, no keys or prompt text',
        needs: ['raw', 'process'],
        async run(ctx) {
            const ibex = ctx.sharedIbex;
            const id = randomToken('e2e.log');
            const secretPrompt = randomToken('prompt-text-must-not-be-logged');
            const res = await ctx.request('/v1/chat/completions', {
                method: 'POST',
                body: chatBody({ model: 'mock', content: secretPrompt }),
                headers: { 'X-Request-ID': id, Authorization: `Bearer ${ctx.apiKey}` },
            });
            assert.equal(res.status, 200, `mock chat: ${res.describe()}`);

            let line = null;
            await pollUntil(() => {
                line = ibex
                    .stderrText()
                    .split('\n')
                    .filter((l) => l.includes(id))
                    .map((l) => {
                        try {
                            return JSON.parse(l);
                        } catch {
                            return {};
                        }
                    })
                    .find((j) => j.msg === 'request');
                return line;
            }, { timeoutMs: 3000 });
            assert.ok(line, `no {"msg":"request","request_id":"${id}"} line on stderr within 3 s`);
            assert.equal(line.method, 'POST', `request log method: ${JSON.stringify(line)}`);
            assert.equal(line.path, '/v1/chat/completions', `request log path: ${JSON.stringify(line)}`);
            assert.equal(Number(line.status), 200, `request log status: ${JSON.stringify(line)}`);
            assert.equal(typeof line.duration_ms, 'number', `request log duration_ms: ${JSON.stringify(line)}`);
            assert.ok(line.duration_ms >= 0, `request log duration_ms: ${JSON.stringify(line)}`);

            const text = ibex.stderrText();
            const lines = text.split('\n').filter((l) => l.trim() !== '');
            assert.ok(lines.length > 0, 'stderr is empty');
            lines.forEach((l, i) => {
                try {
                    JSON.parse(l);
                } catch {
                    assert.fail(`stderr line ${i + 1} is not JSON: ${l.slice(0, 300)}`);
                }
            });
            // start-up lines (migrations, provider notes) may come first; no request before "listening"
            const msgs = lines.map((l) => JSON.parse(l).msg);
            const listening = msgs.indexOf('listening');
            assert.ok(listening >= 0, 'no "listening" line on stderr');
            assert.ok(!msgs.slice(0, listening).includes('request'), `a request was logged before "listening": ${lines.slice(0, listening + 1).join('\n')}`);
            for (const [what, secret] of [
                ['the provider API key', ctx.providerKey],
                ["a client's API key", ctx.apiKey],
                ['prompt text', secretPrompt],
            ])
                assert.ok(!text.includes(secret), `${what} appears in ibex's log (${ibex.stderrPath})`);
        },
    },
];
