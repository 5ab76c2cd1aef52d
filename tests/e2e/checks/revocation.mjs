// Revocation across instances (docs/identity.md, Revocation): two ibex processes share one store
// (a SQLite file, or the Postgres of IBEX_TEST_PG_URL); a key, an agent and a tenant revoked on A
// are refused by A at once and by B within 5 s: by polling (revocation_poll_interval 1s, no
// Redis), or through Redis pub/sub alone (poll interval 60s, so polling cannot be what is
// measured). Both caches are warm before each revocation, so B cannot learn it from a cache miss.
// The measured delays go into the check's notes.
import assert from 'node:assert/strict';
import { assertErrorResponse } from '../lib/expect.mjs';
import { IbexAdmin, adminKeyOf, freshTenant, uniqueName } from '../lib/ibexadmin.mjs';
import { assertOnStore, gateway, storeIbex, storeOf } from '../lib/stores.mjs';
import { now, pollUntil } from '../lib/util.mjs';

const PROPAGATION_MS = 5000;

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

// Two ibex on store (storeOf), both checked to run on it, with the extra settings.
async function twoInstances(ctx, label, store, settings) {
    const start = async (n) => {
        const p = await storeIbex(ctx, store, { name: `${label}-${n}`, upstream: null, settings });
        await assertOnStore(gateway(ctx, p, `${label} ${n}`), store);
        return p;
    };
    // one after the other: the first applies the migrations
    const a = await start('a');
    const b = await start('b');
    return { a, b };
}

// label: the check's (poll-sqlite, ...); settings: the revocation settings on top of the store's.
async function revocationAcross(ctx, label, store, settings) {
    const { a, b } = await twoInstances(ctx, label, store, settings);
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
    const passwords = [store.storeUrl, store.settings.redis_url].filter(Boolean).map((u) => decodeURIComponent(new URL(u).password || '')).filter((p) => p.length >= 4);
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
            await revocationAcross(ctx, 'poll-sqlite', storeOf(ctx, 'sqlite', 'revocation-poll'), { revocation_poll_interval: '1s' });
        },
    },
    {
        id: 'revocation.poll-postgres',
        title: 'two ibex on one Postgres, revocation_poll_interval 1s: key/agent/tenant revoked on A -> A at once, B within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await revocationAcross(ctx, 'poll-postgres', storeOf(ctx, 'postgres', 'revocation-poll'), { revocation_poll_interval: '1s' });
        },
    },
    {
        id: 'revocation.pubsub-sqlite',
        title: 'two ibex on one SQLite file with Redis, poll interval 60s: B learns revocations through pub/sub within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await revocationAcross(ctx, 'pubsub-sqlite', storeOf(ctx, 'sqlite-redis', 'revocation-pubsub'), { revocation_poll_interval: '60s' });
        },
    },
    {
        id: 'revocation.pubsub-postgres',
        title: 'two ibex on one Postgres with Redis, poll interval 60s: B learns revocations through pub/sub within 5 s',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            await revocationAcross(ctx, 'pubsub-postgres', storeOf(ctx, 'postgres-redis', 'revocation-pubsub'), { revocation_poll_interval: '60s' });
        },
    },
];
