// The stores a check runs scenarios on besides the shared ibex's SQLite file (issue 4: the agent
// state gate runs on SQLite and on Postgres, with and without Redis), in one place for every
// check that does: the server URLs from the environment (a SkipError naming the variable when it
// is unset: the only reason a store variant SKIPs), a fresh SQLite file, a dedicated ibex on a
// store, and the gateway object the scenario functions take.
//
// A scenario written as fn(ctx, gw) runs on the shared ibex with gateway(ctx) and on a dedicated
// one with await storeGateway(ctx, storeOf(ctx, 'postgres', 'group')).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { IbexAdmin } from './ibexadmin.mjs';
import { SkipError, pollUntil, truncate } from './util.mjs';

const PG_UNSET = 'IBEX_TEST_PG_URL is not set (make e2e exports it; or: export IBEX_TEST_PG_URL=$(scripts/pg.sh start))';
const REDIS_UNSET = 'IBEX_TEST_REDIS_URL is not set (make e2e exports it; or: export IBEX_TEST_REDIS_URL=$(scripts/redis.sh start))';
// How long a dedicated ibex with Redis may take to report its Redis connection in /status.
const REDIS_CONNECT_MS = 5000;

// The Postgres of IBEX_TEST_PG_URL; SkipError when unset.
export function pgUrl() {
    const url = process.env.IBEX_TEST_PG_URL;
    if (!url) throw new SkipError(PG_UNSET);
    return url;
}

// The Redis of IBEX_TEST_REDIS_URL; SkipError when unset.
export function redisUrl() {
    const url = process.env.IBEX_TEST_REDIS_URL;
    if (!url) throw new SkipError(REDIS_UNSET);
    return url;
}

// A new SQLite file <name>-<pid>.db in the log directory (left-overs of an earlier run removed),
// as a store URL.
export function sqliteUrl(ctx, name) {
    const file = path.join(ctx.h.logDir, `${name}-${process.pid}.db`);
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
    return `sqlite://${file}`;
}

// The store variants: the backend /status must name, and the store URL and settings of each.
// `file` names the SQLite file of a variant on SQLite.
const VARIANTS = {
    sqlite: { backend: 'sqlite', resolve: (ctx, file) => ({ storeUrl: sqliteUrl(ctx, file), settings: {} }) },
    postgres: { backend: 'postgres', resolve: () => ({ storeUrl: pgUrl(), settings: {} }) },
    'postgres-redis': { backend: 'postgres', resolve: () => ({ storeUrl: pgUrl(), settings: { redis_url: redisUrl() } }) },
    'sqlite-redis': {
        backend: 'sqlite',
        resolve: (ctx, file) => {
            const redis = redisUrl(); // before the file: an unset variable SKIPs with nothing created
            return { storeUrl: sqliteUrl(ctx, file), settings: { redis_url: redis } };
        },
    },
};
export const STORE_VARIANTS = Object.keys(VARIANTS);

// A store for the checks of group (a name for its processes and SQLite file):
// {label, name, backend, storeUrl, settings}; SkipError when the server of variant is not given.
export function storeOf(ctx, variant, group) {
    const v = VARIANTS[variant];
    if (!v) throw new Error(`unknown store variant ${JSON.stringify(variant)} (known: ${STORE_VARIANTS.join(', ')})`);
    const name = `${group}-${variant}`;
    return { label: variant, name, backend: v.backend, ...v.resolve(ctx, name) };
}

// A dedicated ibex (2 workers and the shared fakellm upstream unless opts say otherwise) on
// store; opts.settings add to the store's, the rest goes to ctx.ibex.
export function storeIbex(ctx, store, { name = store.name, settings = {}, workers = 2, ...opts } = {}) {
    return ctx.ibex({ name, workers, ...opts, settings: { ...store.settings, ...settings }, env: { IBEX_STORE_URL: store.storeUrl } });
}

// A gateway the scenarios run on: the shared ibex (proc null), or a dedicated one. label names it
// in messages; root is the dev admin key on it; note is ctx.note, naming a dedicated gateway.
export function gateway(ctx, proc = null, label = 'sqlite') {
    const target = proc ? proc.target : ctx.target;
    return {
        label,
        proc,
        target,
        baseUrl: proc ? proc.url : ctx.baseUrl,
        root: new IbexAdmin(target, ctx.apiKey),
        note: (msg) => ctx.note(proc ? `${label}: ${msg}` : msg),
    };
}

// Asserts that the ibex behind gw runs on the store it was given: GET /status names its backend
// and, with redis_url, a connected Redis (auth.revocation, within REDIS_CONNECT_MS), so a variant
// cannot pass on a store it was not given.
export async function assertOnStore(gw, store) {
    const what = `${gw.label}: GET /status`;
    let j;
    const connected = await pollUntil(
        async () => {
            const res = await gw.root.call('GET', '/status');
            assert.equal(res.status, 200, `${what}: ${res.describe()}`);
            j = res.json();
            return !store.settings.redis_url || j.auth?.revocation?.redis_connected === true;
        },
        { timeoutMs: REDIS_CONNECT_MS, intervalMs: 100 },
    );
    const show = truncate(JSON.stringify({ store: j.store, auth: j.auth }), 400);
    assert.equal(j.store?.backend, store.backend, `${what}: store.backend (${show})`);
    if (store.settings.redis_url) {
        assert.equal(j.auth?.revocation?.redis, true, `${what}: auth.revocation.redis with redis_url set (${show})`);
        assert.ok(connected, `${what}: Redis not connected ${REDIS_CONNECT_MS} ms after the start (${show})`);
    }
}

// A dedicated ibex on store (storeIbex's opts), checked to run on it; returns its gateway.
export async function storeGateway(ctx, store, opts = {}) {
    const proc = await storeIbex(ctx, store, opts);
    const gw = gateway(ctx, proc, store.label);
    await assertOnStore(gw, store);
    return gw;
}
