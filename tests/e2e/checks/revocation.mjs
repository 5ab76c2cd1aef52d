// Revocation across instances (docs/identity.md, Revocation): two ibex processes share one store
// (a SQLite file, or the Postgres of IBEX_TEST_PG_URL); a key, an agent and a tenant revoked on A
// are refused by A at once and by B within 5 s: by polling (revocation_poll_interval 1s, no
// Redis), or through Redis pub/sub alone (poll interval 60s, so polling cannot be what is
// measured). Both caches are warm before each revocation, so B cannot learn it from a cache miss.
// The measured delays go into the check's notes.
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { assertErrorResponse } from '../lib/expect.mjs';
import { IbexAdmin, adminKeyOf, freshTenant, uniqueName } from '../lib/ibexadmin.mjs';
import { SkipError, now, pollUntil } from '../lib/util.mjs';

const PROPAGATION_MS = 5000;

function pgUrl() {
    const url = process.env.IBEX_TEST_PG_URL;
    if (!url) throw new SkipError('IBEX_TEST_PG_URL is not set (make e2e exports it; or: export IBEX_TEST_PG_URL=$(scripts/pg.sh start))');
    return url;
}

function redisUrl() {
    const url = process.env.IBEX_TEST_REDIS_URL;
    if (!url) throw new SkipError('IBEX_TEST_REDIS_URL is not set (make e2e exports it; or: export IBEX_TEST_REDIS_URL=$(scripts/redis.sh start))');
    return url;
}

function sqliteUrl(ctx, label) {
    const file = path.join(ctx.h.logDir, `revocation-${label}-${process.pid}.db`);
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
    return `sqlite://${file}`;
}

// Repeats req until it answers `status` (every 100 ms, at most PROPAGATION_MS); returns
// {ms, res} with the time since t0, or {ms: null, res} when it never did.
async function waitFor(req, status, t0) {
    let res;
    const ok = await pollUntil(async () => {
        res = await req();
        return res.status === status;
    }, { timeoutMs: PROPAGATION_MS, intervalMs: 100 });
    return { ms: ok ? now() - t0 : null, res };
}

async function twoInstances(ctx, { label, storeUrl, settings }) {
    const opts = (n) => ({ name: `${label}-${n}`, upstream: null, workers: 2, settings, env: { IBEX_STORE_URL: storeUrl } });
    // one after the other: the first applies the migrations
    const a = await ctx.ibex(opts('a'));
    const b = await ctx.ibex(opts('b'));
    return { a, b };
}

async function revocationAcross(ctx, { label, storeUrl, settings }) {
    const { a, b } = await twoInstances(ctx, { label, storeUrl, settings });
    const T = await freshTenant(new IbexAdmin(a.target, ctx.apiKey), `revocation-${label}`);
    const onA = T.admin;
    const onB = new IbexAdmin(b.target, T.key);
    const key = await onA.createKey({ name: uniqueName('revoke-me'), scopes: ['chat'] });
    const agent = await onA.createAgent({ name: uniqueName('revoke-me') });
    const child = await onA.createTenant(uniqueName('revoke-me'));
    const kA = onA.as(key.key);
    const kB = onB.as(key.key);
    const childKey = adminKeyOf(child);
    const cA = onA.as(childKey);
    const cB = onB.as(childKey);

    // warm both instances (several requests: two workers each), and show that B knows what A created
    for (let i = 0; i < 4; i++) {
        for (const [what, res] of [
            ['key on A', await kA.chat()],
            ['key on B', await kB.chat()],
            ['agent on A', await onA.chat({ agent: agent.id })],
            ['agent on B', await onB.chat({ agent: agent.id })],
            ["child tenant's key on A", await cA.call('GET', '/v1/models')],
            ["child tenant's key on B", await cB.call('GET', '/v1/models')],
        ])
            assert.equal(res.status, 200, `before revocation, ${what}: ${res.describe()}`);
    }

    const delays = [];
    const cases = [
        ['key', () => onA.revoke('keys', key.id), () => kA.chat(), () => kB.chat(), 401, 'TOKEN_REVOKED'],
        ['agent', () => onA.revoke('agents', agent.id), () => onA.chat({ agent: agent.id }), () => onB.chat({ agent: agent.id }), 404, 'AGENT_NOT_FOUND'],
        ['tenant', () => onA.revoke('tenants', child.id), () => cA.call('GET', '/v1/models'), () => cB.call('GET', '/v1/models'), 401, 'TOKEN_REVOKED'],
    ];
    for (const [what, revoke, useA, useB, status, code] of cases) {
        // re-warm: an earlier case's revocation may have flushed B's cache
        for (let i = 0; i < 4; i++) {
            for (const [where, use] of [
                ['A', useA],
                ['B', useB],
            ]) {
                const res = await use();
                assert.equal(res.status, 200, `${what} on ${where} right before its revocation: ${res.describe()}`);
            }
        }
        await revoke();
        const t0 = now();
        // A: at once, on every worker
        for (let i = 0; i < 4; i++) assertErrorResponse(await useA(), { status, code, what: `${what} revoked on A, request ${i + 1} on A` });
        const r = await waitFor(useB, status, t0);
        assert.ok(r.ms !== null, `${what} revoked on A: B still accepts it ${PROPAGATION_MS} ms later (${r.res.describe()})`);
        assertErrorResponse(r.res, { status, code, what: `${what} revoked on A, on B` });
        delays.push(`${what} ${r.ms.toFixed(0)} ms`);
    }
    ctx.note(`${label}: B refused what A revoked after: ${delays.join(', ')}`);
    // what was not revoked still works on both
    assert.equal((await onB.chat()).status, 200, "B: the tenant's admin key after the revocations");
    assert.equal((await onA.chat()).status, 200, "A: the tenant's admin key after the revocations");
    // no secret of the run in either log: keys, and the passwords of the store and Redis URLs
    const passwords = [storeUrl, settings.redis_url].filter(Boolean).map((u) => decodeURIComponent(new URL(u).password || '')).filter((p) => p.length >= 4);
    for (const p of [a, b])
        for (const s of [key.key, childKey, T.key, ...passwords]) assert.ok(!p.stderrText().includes(s), `${p.name}: a secret (${s.slice(0, 6)}...) in stderr (${p.stderrPath})`);
}

export default [
    {
        id: 'revocation.poll-sqlite',
        title: 'two ibex on one SQLite file, revocation_poll_interval 1s: key/agent/tenant revoked on A -> A at once, B within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await revocationAcross(ctx, { label: 'poll-sqlite', storeUrl: sqliteUrl(ctx, 'poll'), settings: { revocation_poll_interval: '1s' } });
        },
    },
    {
        id: 'revocation.poll-postgres',
        title: 'two ibex on one Postgres, revocation_poll_interval 1s: key/agent/tenant revoked on A -> A at once, B within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await revocationAcross(ctx, { label: 'poll-postgres', storeUrl: pgUrl(), settings: { revocation_poll_interval: '1s' } });
        },
    },
    {
        id: 'revocation.pubsub-sqlite',
        title: 'two ibex on one SQLite file with Redis, poll interval 60s: B learns revocations through pub/sub within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            const settings = { redis_url: redisUrl(), revocation_poll_interval: '60s' };
            await revocationAcross(ctx, { label: 'pubsub-sqlite', storeUrl: sqliteUrl(ctx, 'pubsub'), settings });
        },
    },
    {
        id: 'revocation.pubsub-postgres',
        title: 'two ibex on one Postgres with Redis, poll interval 60s: B learns revocations through pub/sub within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            const settings = { redis_url: redisUrl(), revocation_poll_interval: '60s' };
            await revocationAcross(ctx, { label: 'pubsub-postgres', storeUrl: pgUrl(), settings });
        },
    },
];
