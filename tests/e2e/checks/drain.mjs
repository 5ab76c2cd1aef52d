// Graceful shutdown: SIGTERM under load drains every accepted request, refuses new connections
// and commits the trace and the checkpoint of every answered turn before exit (a fresh ibex on
// the same store finds them), on a SQLite file and on the Postgres of IBEX_TEST_PG_URL; SIGTERM
// on the idle shared gateway (last check of the run) exits 0 with no sanitizer report.
import assert from 'node:assert/strict';
import { RawConn, request } from '../lib/http.mjs';
import { chatBody, startChat, readChatStream, streamProblems } from '../lib/chat.mjs';
import { expectedText, knobs } from '../lib/fakellm.mjs';
import { IbexAdmin } from '../lib/ibexadmin.mjs';
import { describeExit } from '../lib/proc.mjs';
import { assertOnStore, gateway, storeIbex, storeOf } from '../lib/stores.mjs';
import { now, sleep, withTimeout } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';

const STREAMS = 50;
const LOOPERS = 4;
// A non-streaming request started this long before SIGTERM was certainly accepted by ibex.
const ACCEPTED_MARGIN_MS = 200;
// A connection attempted this long after SIGTERM must be refused.
const REFUSE_AFTER_MS = 500;

function isRefused(e) {
    return e && e.code === 'ECONNREFUSED';
}

// The ids a turn's response carries: {traceId, sessionId} (null when absent).
const turnIds = (headers) => ({ traceId: headers['x-ibex-trace-id'] ?? null, sessionId: headers['x-ibex-session-id'] ?? null });

// On a fresh ibex over the store the drained one used: every answered turn has its trace and one
// checkpoint (status 200, the answer the client got), and a turn that was not answered whole has
// no checkpoint with status 200. answered: [{what, traceId, sessionId, text}]; unanswered: [{what,
// sessionId}]. Returns {traces, checkpoints, problems}: how many traces of answered turns and
// checkpoints with status 200 of all the turns were found, and what was wrong.
async function committedTurns(api, answered, unanswered) {
    const problems = [];
    let traces = 0;
    let checkpoints = 0;
    for (const t of unanswered) {
        const cp = await api.call('GET', `/v1/sessions/${t.sessionId}/checkpoints`);
        const ok = cp.status === 200 ? (cp.json().checkpoints || []).filter((c) => c.status === 200) : [];
        checkpoints += ok.length;
        if (ok.length) problems.push(`${t.what}, not answered whole: ${ok.length} checkpoint(s) with status 200`);
    }
    for (const t of answered) {
        if (!t.traceId || !t.sessionId) {
            problems.push(`${t.what}: answered without X-IBEX-Trace-ID ${t.traceId} / X-IBEX-Session-ID ${t.sessionId}`);
            continue;
        }
        const tr = await api.call('GET', `/v1/traces/${t.traceId}`);
        if (tr.status === 200 && tr.json().status === 200) traces++;
        else problems.push(`${t.what}: trace ${t.traceId} after the restart: ${tr.describe()}`);
        const cp = await api.call('GET', `/v1/sessions/${t.sessionId}/checkpoints`);
        const list = cp.status === 200 ? cp.json().checkpoints || [] : null;
        const mine = (list || []).filter((c) => c.trace_id === t.traceId && c.status === 200);
        if (mine.length === 1 && mine[0].response?.content === t.text) checkpoints++;
        else if (mine.length === 1) problems.push(`${t.what}: the checkpoint of trace ${t.traceId} keeps ${JSON.stringify(String(mine[0].response?.content).slice(0, 60))}, the client got ${JSON.stringify(t.text.slice(0, 60))}`);
        else problems.push(`${t.what}: session ${t.sessionId} after the restart: ${list ? `${mine.length} checkpoints with status 200 for trace ${t.traceId} in ${JSON.stringify(list.map((c) => [c.trace_id, c.status]))}` : cp.describe()}`);
    }
    return { traces, checkpoints, problems };
}

// On a dedicated ibex on store (storeOf): SIGTERM during 50 streams and a loop of requests; every
// accepted request completes, new connections are refused, exit 0; then a fresh ibex on the same
// store finds the trace and the checkpoint of every answered turn.
export async function sigtermUnderLoad(ctx, store) {
    const ibex = await storeIbex(ctx, store, { settings: { drain_timeout: '20s' } });
    const gw = gateway(ctx, ibex, store.label);
    await assertOnStore(gw, store);
    const target = ibex.target;
    let started = 0;
    let firstEvents = 0;
    const stream = async (chunks) => {
        const { conn, head } = await startChat(target, {
            body: chatBody({ model: MODEL, stream: true }),
            headers: { ...ctx.authHeaders, ...knobs({ chunks, intervalMs: 100 }) },
            timeoutMs: 20000,
        });
        started++;
        let counted = false;
        const r = await readChatStream(conn, head, {
            timeoutMs: 40000,
            onEvent: () => {
                if (!counted) {
                    counted = true;
                    firstEvents++;
                }
            },
        });
        conn.destroy();
        return { head, chunks, ...turnIds(head.headers), ...r };
    };
    // 50 streams of 1 s, and one of 3 s that keeps the drain going while refusal is probed
    const streams = [...Array.from({ length: STREAMS }, () => stream(10)), stream(30)];
    streams.forEach((p) => p.catch(() => {}));

    // non-streaming: fresh connection per request
    const nonStream = async (delayMs) => {
        const rec = { startedAt: now() };
        try {
            const res = await request(target, {
                method: 'POST',
                path: '/v1/chat/completions',
                body: chatBody({ model: MODEL }),
                headers: { ...ctx.authHeaders, ...knobs({ delayMs, chunks: 3 }) },
                timeoutMs: 30000,
            });
            rec.status = res.status;
            Object.assign(rec, turnIds(res.headers));
            rec.ok = res.status === 200 && res.json().choices?.[0]?.message?.content === expectedText(3);
            rec.detail = rec.ok ? '' : res.describe();
        } catch (e) {
            rec.error = e.code || e.message;
            rec.refused = isRefused(e);
        }
        rec.endedAt = now();
        return rec;
    };
    let sigtermAt = null;
    let looping = true;
    const loopResults = [];
    const looper = async () => {
        while (looping) {
            const rec = await nonStream(400);
            loopResults.push(rec);
            if (rec.refused) return;
        }
    };
    const loops = Array.from({ length: LOOPERS }, looper);

    // SIGTERM once every stream is flowing
    const flowing = await withTimeout(
        (async () => {
            while (firstEvents < streams.length) await sleep(20);
            return true;
        })(),
        20000,
        `all ${streams.length} streams to deliver a first chunk (${firstEvents} did, ${started} started)`,
    );
    assert.ok(flowing);
    // non-streaming requests certainly in flight at SIGTERM: answered 1.5 s after it
    const slow = Array.from({ length: 5 }, () => nonStream(1500));
    await sleep(400);
    sigtermAt = now();
    ibex.kill('SIGTERM');

    // new connections must be refused while the drain is still running
    await sleep(REFUSE_AFTER_MS);
    const probes = [];
    for (let i = 0; i < 5; i++) {
        const aliveBefore = ibex.alive;
        try {
            const c = await RawConn.connect({ host: target.host, port: target.port, timeoutMs: 2000 });
            c.destroy();
            probes.push({ refused: false, aliveBefore });
        } catch (e) {
            probes.push({ refused: isRefused(e), error: e.code || e.message, aliveBefore });
        }
    }
    const probedDuringDrain = probes.filter((p) => p.aliveBefore).length;

    const results = await Promise.allSettled(streams);
    const slowResults = await Promise.all(slow);
    looping = false;
    await Promise.all(loops);
    const exit = await ibex.waitExit(25000);
    const exitMs = exit ? now() - sigtermAt : null;

    // streams: every one was accepted before SIGTERM, so every one must be whole
    const problems = [];
    results.forEach((r, i) => {
        if (r.status === 'rejected') return problems.push(`stream #${i}: ${r.reason?.message || r.reason}`);
        const p = streamProblems(r.value, { expectText: expectedText(r.value.chunks) });
        if (p.length) problems.push(`stream #${i} (${r.value.chunks} chunks): ${p.join('; ')}`);
    });
    slowResults.forEach((rec, i) => {
        if (!rec.ok) problems.push(`non-streaming request #${i} in flight at SIGTERM (1.5 s upstream delay) failed: ${rec.error || rec.detail}`);
    });
    // loop: before the margin -> must succeed; well after SIGTERM -> must be refused
    let accepted = 0;
    let refused = 0;
    for (const rec of loopResults) {
        const rel = rec.startedAt - sigtermAt;
        if (rec.ok) accepted++;
        if (rec.refused) refused++;
        if (rel < -ACCEPTED_MARGIN_MS && !rec.ok)
            problems.push(`request started ${-rel | 0} ms before SIGTERM failed: ${rec.error || rec.detail}`);
        else if (rel > REFUSE_AFTER_MS && !rec.refused)
            problems.push(`request started ${rel | 0} ms after SIGTERM was not refused: ${rec.ok ? 'served' : rec.error || rec.detail}`);
        else if (!rec.ok && !rec.refused && rec.status !== undefined)
            problems.push(`request racing SIGTERM (${rel | 0} ms) got a broken answer: ${rec.detail}`);
    }
    gw.note(
        `${results.length} streams, ${slowResults.length} slow requests, ${loopResults.length} loop requests (${accepted} served, ${refused} refused); ` +
            `${probedDuringDrain} refusal probes ran during the drain; ibex: ${describeExit(exit)} ${exitMs === null ? '' : `${exitMs.toFixed(0)} ms after SIGTERM`}`,
    );
    for (const p of probes) if (!p.refused) problems.push(`a connection ${REFUSE_AFTER_MS}+ ms after SIGTERM was not refused (${p.error || 'connected'})`);
    if (probedDuringDrain === 0) problems.push('ibex exited before the refusal probes ran: drain was not observed (the 3 s stream should have kept it running)');
    if (!exit) problems.push('ibex still running 25 s after SIGTERM (drain_timeout 20s)');
    else if (exit.code !== 0) problems.push(`ibex exit after SIGTERM: ${describeExit(exit)}, expected exit code 0`);
    assert.deepEqual(problems, [], problems.join('\n'));

    // every turn that got a whole answer was committed before the exit: reopen the store
    const answered = [];
    results.forEach((r, i) => {
        if (r.status === 'fulfilled') answered.push({ what: `stream #${i}`, traceId: r.value.traceId, sessionId: r.value.sessionId, text: expectedText(r.value.chunks) });
    });
    slowResults.forEach((rec, i) => answered.push({ what: `slow request #${i}`, traceId: rec.traceId, sessionId: rec.sessionId, text: expectedText(3) }));
    const unanswered = [];
    loopResults.forEach((rec, i) => {
        const what = `loop request #${i}`;
        if (rec.ok) answered.push({ what, traceId: rec.traceId, sessionId: rec.sessionId, text: expectedText(3) });
        else if (rec.sessionId) unanswered.push({ what, sessionId: rec.sessionId });
    });
    const reopened = await storeIbex(ctx, store, { name: `${store.name}-reopened`, upstream: null, workers: 1 });
    const c = await committedTurns(new IbexAdmin(reopened.target, ctx.apiKey), answered, unanswered);
    gw.note(`after the restart on the same store: ${c.checkpoints} checkpoints with status 200 and ${c.traces} traces for ${answered.length} answered turns (${unanswered.length} turns with a session not answered whole)`);
    assert.ok(c.problems.length === 0, `${c.problems.length} answered turn(s) not committed before the exit (checkpoints ${c.checkpoints}, traces ${c.traces}, answered ${answered.length}):\n${c.problems.slice(0, 10).join('\n')}`);
    assert.equal(c.checkpoints, answered.length, 'checkpoints with status 200 != answered turns');
    assert.equal(c.traces, answered.length, 'traces != answered turns');
}

export default [
    {
        id: 'drain.sigterm-under-load',
        title: 'SIGTERM during 50 streams + a request loop: all accepted requests complete, new connections refused, exit 0; every answered turn has its trace and checkpoint in the store',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 90000,
        async run(ctx) {
            await sigtermUnderLoad(ctx, storeOf(ctx, 'sqlite', 'drain'));
        },
    },
    {
        id: 'drain.sigterm-postgres',
        title: 'on Postgres (IBEX_TEST_PG_URL): SIGTERM during 50 streams + a request loop: all accepted requests complete, new connections refused, exit 0; a fresh ibex on the same Postgres finds the trace and checkpoint of every answered turn',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 90000,
        async run(ctx) {
            await sigtermUnderLoad(ctx, storeOf(ctx, 'postgres', 'drain'));
        },
    },
    {
        id: 'drain.shared-exit',
        title: 'SIGTERM on the shared gateway after all checks: exit 0 promptly, no sanitizer report',
        needs: ['process'],
        timeoutMs: 30000,
        async run(ctx) {
            const problems = await ctx.h.stopShared();
            assert.deepEqual(problems, [], problems.join('\n'));
        },
    },
];
