// Agent state on every store (issue 4: the gate runs on SQLite and on Postgres, with and without
// Redis). The sessions, traces and tasks scenarios that sessions.*, traces.* and tasks.* run on
// the shared ibex (SQLite, no Redis) run again here, each check on a dedicated ibex of its own
// (2 workers, lib/stores.mjs) checked to run on its store: Postgres, Postgres with Redis, SQLite
// with Redis. Every scenario runs even when an earlier one failed; the check fails naming each
// one that did. A check SKIPs only when the variable naming its server is unset. (The turns and
// their checkpoints: checkpoints.{postgres,postgres-redis,sqlite-redis}; idempotency keys:
// idempotency.backends; the drain: drain.sigterm-postgres.)
import { storeGateway, storeOf } from '../lib/stores.mjs';
import { now } from '../lib/util.mjs';
import { sessionsIsolation, sessionsList, sessionsTransitions, sessionsValidation } from './sessions.mjs';
import { tracesErrors, tracesIsolation, tracesVisible } from './traces.mjs';
import { tasksApprovals, tasksIsolation, tasksLifecycle } from './tasks.mjs';

// [the id of the check that runs the scenario on the shared ibex, fn(ctx, gw)]
const SCENARIOS = [
    ['sessions.transitions', sessionsTransitions],
    ['sessions.validation', sessionsValidation],
    ['sessions.list', sessionsList],
    ['sessions.isolation', sessionsIsolation],
    ['traces.visible', tracesVisible],
    ['traces.errors', tracesErrors],
    ['traces.isolation', tracesIsolation],
    ['tasks.lifecycle', tasksLifecycle],
    ['tasks.approvals', tasksApprovals],
    ['tasks.isolation', tasksIsolation],
];

async function onStore(ctx, variant) {
    const gw = await storeGateway(ctx, storeOf(ctx, variant, 'state'));
    const failed = [];
    for (const [id, scenario] of SCENARIOS) {
        const t0 = now();
        try {
            await scenario(ctx, gw);
            gw.note(`${id} scenario passed (${Math.round(now() - t0)} ms)`);
        } catch (e) {
            gw.note(`${id} scenario FAILED (${Math.round(now() - t0)} ms)`);
            failed.push(`${id} on ${variant}: ${e.message}`);
        }
    }
    if (failed.length) throw new Error(`${failed.length} of ${SCENARIOS.length} scenarios failed on ${variant}:\n${failed.join('\n\n')}`);
}

const TITLE = 'sessions (refused state changes 422 INVALID_STATE_TRANSITION, validation, list filters and pages, isolation), traces (visible within 500 ms with the facts of the turn, errors, isolation), tasks (lifecycle, approvals, isolation)';

// [variant, the servers it needs]
const VARIANTS = [
    ['postgres', 'on Postgres (IBEX_TEST_PG_URL)'],
    ['postgres-redis', 'on Postgres with Redis (IBEX_TEST_PG_URL, IBEX_TEST_REDIS_URL)'],
    ['sqlite-redis', 'on SQLite with Redis (IBEX_TEST_REDIS_URL)'],
];

export default VARIANTS.map(([variant, where]) => ({
    id: `state.${variant}`,
    title: `${where}, a dedicated ibex: ${TITLE}`,
    needs: ['raw', 'fakellm', 'process'],
    shared: false,
    timeoutMs: 120000,
    async run(ctx) {
        await onStore(ctx, variant);
    },
}));
