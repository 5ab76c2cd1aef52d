// Idempotency keys (docs/sessions.md, "Idempotency keys"): the same key and request again
// replays the first 2xx answer byte for byte with `Idempotent-Replayed: true` and runs nothing
// again (fakellm's request log is the witness: one upstream call per marker); a different
// request is 422, a duplicate while the first runs is 409 with Retry-After, never a second run;
// a failed first attempt runs again; malformed keys are 400; keys belong to a tenant. The chat
// replay and mismatch assertions also run on a dedicated ibex with Postgres and one with Redis
// (where the entry must be the Redis key idempotency:<tenant>:<key>).
import assert from 'node:assert/strict';
import net from 'node:net';
import { assertErrorResponse } from '../lib/expect.mjs';
import { chatBody, streamChat } from '../lib/chat.mjs';
import { knobs } from '../lib/fakellm.mjs';
import { IbexAdmin, freshTenant, uniqueName } from '../lib/ibexadmin.mjs';
import { storeGateway, storeOf } from '../lib/stores.mjs';
import { SkipError, randomToken, truncate } from '../lib/util.mjs';

const dev = (ctx) => new IbexAdmin(ctx.target, ctx.apiKey);
const CHAT = '/v1/chat/completions';

const newKey = () => randomToken('idem');

// A non-streaming chat with an Idempotency-Key (null: none) carrying marker in its prompt.
function chat(api, marker, key, { extra = {}, headers = {} } = {}) {
    const h = { ...headers };
    if (key !== null) h['Idempotency-Key'] = key;
    return api.call('POST', CHAT, chatBody({ content: `idempotency ${marker}`, ...extra }), { headers: h });
}

// How many chat requests fakellm got that carry marker.
async function upstreamCalls(ctx, marker) {
    const log = (await ctx.fakellm.requests()).filter((r) => r.method === 'POST' && r.path === CHAT);
    return log.filter((r) => JSON.stringify(r.body ?? '').includes(marker)).length;
}

function assert200(res, what) {
    assert.equal(res.status, 200, `${what}: ${res.describe()}`);
    return res;
}

// Same key and body twice: the first answer replayed byte for byte with its ids and
// Idempotent-Replayed: true, one upstream call; the same key with another body: 422 and no call.
export async function replayAndMismatch(ctx, api, label) {
    const L = (s) => `${label}: ${s}`;
    const marker = randomToken('replay');
    const key = newKey();
    const first = assert200(await chat(api, marker, key), L('first request with the key'));
    assert.equal(first.headers['idempotent-replayed'], undefined, L(`the first answer carries Idempotent-Replayed: ${first.headers['idempotent-replayed']}`));
    const second = assert200(await chat(api, marker, key), L('the same request and key again'));
    assert.equal(second.headers['idempotent-replayed'], 'true', L(`the replay: Idempotent-Replayed ${JSON.stringify(second.headers['idempotent-replayed'])}`));
    assert.ok(second.body.equals(first.body), L(`the replay's body differs from the first:\n first ${truncate(first.text(), 300)}\nsecond ${truncate(second.text(), 300)}`));
    for (const h of ['x-ibex-trace-id', 'x-ibex-session-id']) {
        assert.ok(first.headers[h], L(`the first answer has no ${h}`));
        assert.equal(second.headers[h], first.headers[h], L(`the replay's ${h}`));
    }
    const n = await upstreamCalls(ctx, marker);
    assert.equal(n, 1, L(`fakellm got ${n} calls for one request sent twice with the same key`));

    const other = await chat(api, marker, key, { extra: { temperature: 0.5 } });
    assertErrorResponse(other, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', what: L('the same key with another body') });
    const n2 = await upstreamCalls(ctx, marker);
    assert.equal(n2, 1, L(`fakellm got ${n2} calls after a refused key reuse (expected still 1)`));
    // the first answer is still what the key replays
    const third = assert200(await chat(api, marker, key), L('the first request a third time'));
    assert.ok(third.body.equals(first.body) && third.headers['idempotent-replayed'] === 'true', L(`after the refused reuse, the key no longer replays the first answer: ${third.describe()}`));
    return { key, first };
}

async function chatCases(ctx) {
    const { admin } = await freshTenant(dev(ctx), 'idem-chat');
    await replayAndMismatch(ctx, admin, 'shared ibex');

    // different keys, and no key: each request runs
    {
        const m = randomToken('two-keys');
        assert200(await chat(admin, m, newKey()), 'key 1');
        assert200(await chat(admin, m, newKey()), 'key 2');
        assert.equal(await upstreamCalls(ctx, m), 2, 'two different keys: upstream calls');
        const m2 = randomToken('no-key');
        const a = assert200(await chat(admin, m2, null), 'no key 1');
        const b = assert200(await chat(admin, m2, null), 'no key 2');
        assert.equal(b.headers['idempotent-replayed'], undefined, 'a request without a key is marked replayed');
        assert.notEqual(a.headers['x-ibex-trace-id'], b.headers['x-ibex-trace-id'], 'two requests without a key share a trace id');
        assert.equal(await upstreamCalls(ctx, m2), 2, 'no key: upstream calls');
    }

    // malformed keys: 400, no call; 255 characters is fine
    {
        const m = randomToken('malformed');
        for (const [k, what] of [['k'.repeat(256), '256 characters'], ['x'.repeat(300), '300 characters'], ['has space', 'a space inside'], ['tab\there', 'a tab inside']])
            assertErrorResponse(await chat(admin, m, k), { status: 400, code: 'VALIDATION_ERROR', what: `Idempotency-Key of ${what}` });
        assert.equal(await upstreamCalls(ctx, m), 0, 'malformed keys: the requests reached the upstream');
        assert200(await chat(admin, m, `${newKey()}-${'z'.repeat(200)}`.slice(0, 255)), 'a key of 255 characters');
    }

    // concurrent duplicates: one upstream call; the others replay or are told it is in progress
    {
        const m = randomToken('concurrent');
        const key = newKey();
        const all = await Promise.all(Array.from({ length: 5 }, () => chat(admin, m, key, { headers: knobs({ delayMs: 300 }) })));
        const ok = all.filter((r) => r.status === 200);
        const busy = all.filter((r) => r.status === 409);
        const summary = all.map((r) => `${r.status}${r.headers['idempotent-replayed'] ? ' replayed' : ''}${r.status >= 300 ? ` ${truncate(r.text(), 150)}` : ''}`).join('\n');
        assert.equal(ok.length + busy.length, 5, `5 concurrent duplicates: answers other than 200 / 409:\n${summary}`);
        assert.ok(ok.length >= 1, `5 concurrent duplicates: none answered 200:\n${summary}`);
        assert.equal(ok.filter((r) => r.headers['idempotent-replayed'] !== 'true').length, 1, `5 concurrent duplicates: exactly one must be the original run:\n${summary}`);
        const orig = ok.find((r) => r.headers['idempotent-replayed'] !== 'true');
        for (const r of ok) assert.ok(r.body.equals(orig.body), `a concurrent replay differs from the original answer: ${truncate(r.text(), 200)} vs ${truncate(orig.text(), 200)}`);
        for (const r of busy) {
            assertErrorResponse(r, { status: 409, code: 'IDEMPOTENCY_KEY_IN_PROGRESS', what: 'a duplicate while the first runs' });
            assert.equal(r.headers['retry-after'], '1', `409 IDEMPOTENCY_KEY_IN_PROGRESS: Retry-After ${JSON.stringify(r.headers['retry-after'])}`);
        }
        const n = await upstreamCalls(ctx, m);
        assert.equal(n, 1, `5 concurrent duplicates: fakellm got ${n} calls:\n${summary}`);
        ctx.note(`5 concurrent duplicates: ${ok.length} x 200, ${busy.length} x 409`);
        const after = assert200(await chat(admin, m, key, { headers: knobs({ delayMs: 300 }) }), 'the key once the first finished');
        assert.ok(after.headers['idempotent-replayed'] === 'true' && after.body.equals(orig.body), `after the concurrent run, the key does not replay: ${after.describe()}`);
        assert.equal(await upstreamCalls(ctx, m), 1, 'the replay after the concurrent run called the upstream');
    }

    // a first attempt that failed upstream is not kept: the retry runs again
    {
        const m = randomToken('failed-first');
        const key = newKey();
        const bad = await chat(admin, m, key, { headers: knobs({ status: 500 }) });
        assert.ok(bad.status >= 500, `a first attempt with fakellm answering 500: expected a 5xx, got ${bad.describe()}`);
        const n1 = await upstreamCalls(ctx, m);
        assert.ok(n1 >= 1, `the failed attempt did not reach fakellm (${n1} calls)`);
        const retry = assert200(await chat(admin, m, key), 'the retry of a failed attempt');
        assert.equal(retry.headers['idempotent-replayed'], undefined, `the retry of a failed attempt was replayed: ${retry.describe()}`);
        const n2 = await upstreamCalls(ctx, m);
        assert.equal(n2, n1 + 1, `the retry of a failed attempt: fakellm calls ${n1} -> ${n2}, expected one more`);
        const again = assert200(await chat(admin, m, key), 'the key once the retry succeeded');
        assert.ok(again.headers['idempotent-replayed'] === 'true' && again.body.equals(retry.body), `after a successful retry the key does not replay it: ${again.describe()}`);
        assert.equal(await upstreamCalls(ctx, m), n2, 'the replay of the successful retry called the upstream');
    }

    // streaming requests ignore the header
    {
        const m = randomToken('stream');
        const key = newKey();
        const body = chatBody({ content: `idempotency ${m}` });
        const tenantKey = admin.key;
        for (let i = 0; i < 2; i++) {
            const r = await streamChat(ctx.target, { body, headers: { Authorization: `Bearer ${tenantKey}`, 'Idempotency-Key': key } });
            assert.equal(r.head.headers['idempotent-replayed'], undefined, `stream ${i + 1} with a key was marked replayed`);
        }
        assert.equal(await upstreamCalls(ctx, m), 2, 'two streams with the same key: upstream calls');
    }
}

// POST path with body under key; asserts 201 and returns {res, obj}.
async function post(api, p, body, key, what) {
    const res = await api.call('POST', p, body, { headers: { 'Idempotency-Key': key } });
    assert.equal(res.status, 201, `${what}: ${res.describe()}`);
    return { res, obj: res.json() };
}

async function sessionsTasks(ctx) {
    const root = dev(ctx);
    const A = await freshTenant(root, 'idem-objs-a');
    const B = await freshTenant(root, 'idem-objs-b');
    const routes = [
        ['/v1/sessions', (tag) => ({ agent_role: `idem-${tag}` }), (o) => o.session_id, (j) => j.total],
        ['/v1/tasks', (tag) => ({ name: `idem ${tag}`, agent_role: 'idem' }), (o) => o.id, (j) => j.total],
    ];
    for (const [p, mk, idOf, totalOf] of routes) {
        const key = newKey();
        const total0 = totalOf(await A.admin.ok('GET', p));
        const one = await post(A.admin, p, mk('one'), key, `POST ${p} with a key`);
        const two = await post(A.admin, p, mk('one'), key, `POST ${p} with the same key and body`);
        assert.equal(two.res.headers['idempotent-replayed'], 'true', `POST ${p} again: Idempotent-Replayed ${JSON.stringify(two.res.headers['idempotent-replayed'])}`);
        assert.equal(idOf(two.obj), idOf(one.obj), `POST ${p} twice with one key created two objects`);
        assert.ok(two.res.body.equals(one.res.body), `POST ${p} replay differs: ${truncate(two.res.text(), 300)} vs ${truncate(one.res.text(), 300)}`);
        const total1 = totalOf(await A.admin.ok('GET', p));
        assert.equal(total1, total0 + 1, `POST ${p} twice with one key: list total ${total0} -> ${total1}`);
        assertErrorResponse(await A.admin.call('POST', p, mk('other'), { headers: { 'Idempotency-Key': key } }), { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', what: `POST ${p}: the same key with another body` });
        assert.equal(totalOf(await A.admin.ok('GET', p)), total1, `POST ${p}: a refused key reuse created an object`);
        // the same key in another tenant is its own
        const inB = await post(B.admin, p, mk('one'), key, `POST ${p} in tenant B with A's key`);
        assert.equal(inB.res.headers['idempotent-replayed'], undefined, `POST ${p} in tenant B with A's key was replayed: ${truncate(inB.res.text(), 300)}`);
        assert.notEqual(idOf(inB.obj), idOf(one.obj), `POST ${p} in tenant B with A's key answered A's object`);
        assert.equal(inB.obj.tenant_id, B.tenant.id, `POST ${p} in tenant B: tenant_id`);
        const inB2 = await post(B.admin, p, mk('one'), key, `POST ${p} in tenant B again`);
        assert.equal(idOf(inB2.obj), idOf(inB.obj), `POST ${p} in tenant B twice with one key created two objects`);
        assert.equal(totalOf(await A.admin.ok('GET', p)), total1, `POST ${p}: B's requests changed A's list`);
    }
}

// Runs commands ([[name, ...args], ...]) on the Redis of url over one raw RESP connection
// (AUTH and SELECT from the URL first); resolves the replies of commands (integers, strings,
// arrays, or Error for an error reply). redis-cli is not used: 7.0 mishandles redis://:pass@.
function redisCommands(url, commands) {
    const u = new URL(url);
    const pre = [];
    if (u.password) pre.push(u.username ? ['AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)] : ['AUTH', decodeURIComponent(u.password)]);
    const db = u.pathname.replace(/^\//, '');
    if (db) pre.push(['SELECT', db]);
    const all = [...pre, ...commands];
    const wire = all.map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`).join('');
    return new Promise((resolve, reject) => {
        const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
        let buf = Buffer.alloc(0);
        const timer = setTimeout(() => {
            sock.destroy();
            reject(new Error(`redis ${u.hostname}:${u.port}: no complete answer within 5 s`));
        }, 5000);
        const parse = (b, i) => {
            // returns [value, next index] or null when incomplete
            const eol = b.indexOf('\r\n', i);
            if (eol < 0) return null;
            const t = String.fromCharCode(b[i]);
            const line = b.toString('utf8', i + 1, eol);
            if (t === '+') return [line, eol + 2];
            if (t === '-') return [new Error(line), eol + 2];
            if (t === ':') return [Number(line), eol + 2];
            if (t === '$') {
                const n = Number(line);
                if (n < 0) return [null, eol + 2];
                if (b.length < eol + 2 + n + 2) return null;
                return [b.toString('utf8', eol + 2, eol + 2 + n), eol + 2 + n + 2];
            }
            if (t === '*') {
                const out = [];
                let j = eol + 2;
                for (let k = 0; k < Number(line); k++) {
                    const r = parse(b, j);
                    if (!r) return null;
                    out.push(r[0]);
                    j = r[1];
                }
                return [out, j];
            }
            throw new Error(`redis: unexpected reply type ${JSON.stringify(t)}`);
        };
        sock.on('error', (e) => {
            clearTimeout(timer);
            reject(new Error(`redis ${u.hostname}:${u.port}: ${e.code || e.message} (IBEX_TEST_REDIS_URL is set: a Redis that cannot be reached fails the check)`));
        });
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            const replies = [];
            let i = 0;
            while (replies.length < all.length) {
                const r = parse(buf, i);
                if (!r) return;
                replies.push(r[0]);
                i = r[1];
            }
            clearTimeout(timer);
            sock.destroy();
            const failed = replies.slice(0, pre.length).find((r) => r instanceof Error);
            if (failed) reject(new Error(`redis ${pre[replies.indexOf(failed)][0]}: ${failed.message}`));
            else resolve(replies.slice(pre.length));
        });
        sock.write(wire);
    });
}

// The replay and mismatch cases on a dedicated ibex on store; returns the key and the tenant.
async function onBackend(ctx, store) {
    const gw = await storeGateway(ctx, store);
    const T = await freshTenant(gw.root, `idem-${store.label}`);
    const { key } = await replayAndMismatch(ctx, T.admin, store.label);
    return { key, tenant: T.tenant };
}

export default [
    {
        id: 'idempotency.chat',
        title: 'chat Idempotency-Key: replay byte for byte with the same ids and one upstream call; reuse 422; other or no keys run; malformed 400; concurrent duplicates one call (409 + Retry-After); a failed first attempt runs again; streams ignore it',
        needs: ['raw', 'fakellm', 'admin'],
        timeoutMs: 40000,
        run: chatCases,
    },
    {
        id: 'idempotency.sessions-tasks',
        title: 'POST /v1/sessions and /v1/tasks with one key twice create one object; another body 422; the same key in two tenants is independent',
        needs: ['raw', 'admin'],
        timeoutMs: 30000,
        run: sessionsTasks,
    },
    {
        id: 'idempotency.backends',
        title: 'chat replay and key reuse on Postgres (IBEX_TEST_PG_URL) and with Redis (IBEX_TEST_REDIS_URL: the key idempotency:<tenant>:<key> exists)',
        needs: ['raw', 'fakellm', 'process'],
        shared: false,
        timeoutMs: 60000,
        async run(ctx) {
            // each variant whose server is given; SKIP (after running the others) when one is not
            const unset = [];
            const resolve = (variant) => {
                try {
                    return storeOf(ctx, variant, 'idempotency');
                } catch (e) {
                    if (!(e instanceof SkipError)) throw e;
                    unset.push(e.reason);
                    return null;
                }
            };
            const pg = resolve('postgres');
            const withRedis = resolve('sqlite-redis');
            if (pg) await onBackend(ctx, pg);
            if (!withRedis) throw new SkipError(`${unset.join('; ')}${pg ? ' (the Postgres variant passed)' : ''}`);
            const redis = withRedis.settings.redis_url;
            const { key, tenant } = await onBackend(ctx, withRedis);
            const name = `idempotency:${tenant.id}:${key}`;
            const [exists, ttl, found] = await redisCommands(redis, [['EXISTS', name], ['TTL', name], ['KEYS', `idempotency:*${key}*`]]);
            assert.equal(exists, 1, `redis: EXISTS ${name} answered ${exists}; keys holding the idempotency key: ${JSON.stringify(found)}`);
            assert.ok(ttl > 0, `redis: ${name} has TTL ${ttl}; entries must expire on Redis' clock`);
            assert.deepEqual(found, [name], `redis: keys holding the idempotency key ${key}`);
            ctx.note(`redis: ${name} TTL ${ttl} s`);
            if (unset.length) throw new SkipError(`${unset.join('; ')} (the Redis variant passed)`);
        },
    },
];
