#!/usr/bin/env node
// `make e2e-smoke`: ONE real completion through the whole stack with the official openai SDK.
// With OPENAI_API_KEY set, ibex is started with it and talks to real OpenAI (OPENAI_BASE_URL
// passed on when set; model SMOKE_MODEL, default gpt-4o-mini); otherwise fakellm is the upstream.
// Prints one summary line on stdout; exit status 0 when the answer is valid, else 1.
import path from 'node:path';
import fs from 'node:fs';
import { ibexProcess, fakellmProcess, ibexBin, fakellmBin, isExecutable, installExitHooks } from './lib/proc.mjs';
import { loadSdk, makeClient } from './lib/sdk.mjs';
import { E2E_DIR, now, truncate } from './lib/util.mjs';
import { randomApiKey } from './lib/ibexadmin.mjs';

const model = process.env.SMOKE_MODEL || 'gpt-4o-mini';
const realKey = process.env.OPENAI_API_KEY || '';
const upstreamName = realKey ? 'openai' : 'fakellm';
const logDir = path.join(process.env.SMOKE_REPORT_DIR || path.join(E2E_DIR, 'reports'), 'smoke');
const procs = [];

function line(status, detail) {
    process.stdout.write(`e2e-smoke: ${status} upstream=${upstreamName} model=${model} ${detail}\n`);
}

async function main() {
    fs.mkdirSync(logDir, { recursive: true });
    for (const f of fs.readdirSync(logDir)) if (/^\d+-smoke-.*\.log$/.test(f)) fs.rmSync(path.join(logDir, f), { force: true });
    installExitHooks();
    const sdk = await loadSdk();
    if (sdk.error) throw new Error(sdk.error);
    if (!isExecutable(ibexBin())) throw new Error(`ibex binary not found at ${ibexBin()} (run make, or set IBEX_BIN)`);

    let upstream;
    let providerKey;
    if (realKey) {
        upstream = (process.env.OPENAI_BASE_URL || 'https://api.openai.com/v1').replace(/\/+$/, '');
        providerKey = realKey;
    } else {
        if (!isExecutable(fakellmBin())) throw new Error(`fakellm binary not found at ${fakellmBin()} (run make, or set FAKELLM_BIN)`);
        const fake = fakellmProcess({ name: 'smoke-fakellm', logDir });
        procs.push(fake);
        await fake.start();
        upstream = `${fake.url}/v1`;
        providerKey = 'smoke-provider-key';
    }
    // --dev with a pinned admin key: the client's credential (auth is on by default)
    const clientKey = randomApiKey();
    const ibex = ibexProcess({ name: 'smoke-ibex', logDir, upstream, providerKey, dev: { token: clientKey } });
    procs.push(ibex);
    await ibex.start();

    const client = makeClient(sdk, { baseUrl: ibex.url, apiKey: clientKey, timeoutMs: 60000 });
    const t0 = now();
    const { data, response } = await client.chat.completions
        .create({ model, messages: [{ role: 'user', content: 'Reply with the single word: pong' }] })
        .withResponse();
    const ms = now() - t0;

    const problems = [];
    if (data?.object !== 'chat.completion') problems.push(`object is ${JSON.stringify(data?.object)}`);
    const content = data?.choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content.length === 0) problems.push('choices[0].message.content is empty');
    const u = data?.usage;
    if (!u || !Number.isInteger(u.prompt_tokens) || !Number.isInteger(u.completion_tokens) || !Number.isInteger(u.total_tokens))
        problems.push(`usage is ${JSON.stringify(u)}`);
    if (problems.length) throw new Error(`invalid answer: ${problems.join('; ')}: ${truncate(JSON.stringify(data), 300)}`);
    line(
        'PASS',
        `latency_ms=${ms.toFixed(0)} request_id=${response.headers.get('x-request-id')} tokens=${u.prompt_tokens}+${u.completion_tokens} content=${JSON.stringify(truncate(content, 60))}`,
    );
}

let code = 0;
try {
    await main();
} catch (e) {
    code = 1;
    const status = e.status ? ` status=${e.status} code=${e.code}` : '';
    line('FAIL', `${e.message.split('\n')[0]}${status}`);
    for (const p of procs) if (p.stderrPath) process.stderr.write(`--- ${p.name} stderr (${p.stderrPath}) ---\n${p.stderrTail(20)}\n`);
} finally {
    for (const p of procs.reverse()) await p.stop({ graceMs: 5000 });
}
process.exit(code);
