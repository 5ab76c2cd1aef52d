// Hostile and unusual clients over raw sockets: malformed HTTP, limits, slow and half-sent
// requests, pipelining, a client that vanishes mid-stream and one that stops reading.
import assert from 'node:assert/strict';
import { RawConn, ConnectionClosedError, buildRequest } from '../lib/http.mjs';
import { chatBody, startChat, readChatStream } from '../lib/chat.mjs';
import { assertErrorResponse } from '../lib/expect.mjs';
import { ExpectedStream, knobs } from '../lib/fakellm.mjs';
import { parseProm, sumSamples } from '../lib/prom.mjs';
import { TimeoutError, now, pollUntil, sleep } from '../lib/util.mjs';
import { MODEL } from './chat.mjs';

const connect = (target) => RawConn.connect({ host: target.host, port: target.port });

// Sends raw bytes on a new connection and reads one response.
async function exchange(target, bytes, { timeoutMs = 10000 } = {}) {
    const conn = await connect(target);
    await conn.write(bytes).catch(() => {}); // the server may answer and close before reading all
    const res = await conn.readResponse({ timeoutMs });
    return { conn, res };
}

const get = (path, headers = {}) => buildRequest({ method: 'GET', path, headers });

async function streamsOpen(ctx) {
    const res = await ctx.request('/metrics');
    return sumSamples(parseProm(res.text()), 'ibex_streams_open');
}

export default [
    {
        id: 'hostile.bad-request-line',
        title: 'malformed request line or header -> 400 BAD_REQUEST, then the connection closes',
        needs: ['raw'],
        async run(ctx) {
            const cases = [
                ['garbage line', 'GARBAGE\r\n\r\n'],
                ['junk after the version', 'GET /health HTTP/1.1 trailing\r\nHost: x\r\n\r\n'],
                ['header line without a colon', 'GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n'],
                ['binary bytes', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a])],
            ];
            for (const [what, bytes] of cases) {
                const { conn, res } = await exchange(ctx.target, bytes);
                assertErrorResponse(res, { status: 400, code: 'BAD_REQUEST', what, requireHeader: false });
                assert.ok(await conn.waitClosed(3000), `${what}: connection still open 3 s after the 400`);
            }
        },
    },
    {
        id: 'hostile.oversized-headers',
        title: 'request head over max_header_bytes (16k) -> 431 HEADERS_TOO_LARGE; 12k is served',
        needs: ['raw'],
        async run(ctx) {
            const under = await exchange(ctx.target, get('/health', { 'X-Pad': 'a'.repeat(12 * 1024), Connection: 'close' }));
            assert.equal(under.res.status, 200, `12 KiB header: ${under.res.describe()}`);
            const big = await exchange(ctx.target, get('/health', { 'X-Big': 'a'.repeat(20000) }));
            assertErrorResponse(big.res, { status: 431, code: 'HEADERS_TOO_LARGE', what: 'one 20000-byte header', requireHeader: false });
            const many = {};
            for (let i = 0; i < 40; i++) many[`X-Fill-${i}`] = 'b'.repeat(500);
            const sum = await exchange(ctx.target, get('/health', many));
            assertErrorResponse(sum.res, { status: 431, code: 'HEADERS_TOO_LARGE', what: '40 headers of 500 bytes', requireHeader: false });
            const line = await exchange(ctx.target, get(`/health?${'q'.repeat(20000)}`));
            assertErrorResponse(line.res, { status: 431, code: 'HEADERS_TOO_LARGE', what: '20000-byte request target', requireHeader: false });
        },
    },
    {
        id: 'hostile.too-many-headers',
        title: 'more than max_headers (100) header lines -> 400 TOO_MANY_HEADERS; 90 are served',
        needs: ['raw'],
        async run(ctx) {
            const headers = (n) => Array.from({ length: n }, (_, i) => [`X-H-${i}`, 'v']);
            const ok = await exchange(ctx.target, get('/health', [...headers(90), ['Connection', 'close']]));
            assert.equal(ok.res.status, 200, `90 headers: ${ok.res.describe()}`);
            const bad = await exchange(ctx.target, get('/health', headers(150)));
            assertErrorResponse(bad.res, { status: 400, code: 'TOO_MANY_HEADERS', what: '150 headers', requireHeader: false });
        },
    },
    {
        id: 'hostile.body-too-large',
        title: 'body over max_body_bytes (64k) -> 413 BODY_TOO_LARGE, by Content-Length and chunked; 60k is served',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null, settings: { max_body_bytes: '64k' } });
            const target = ibex.target;

            const small = JSON.stringify(chatBody({ model: 'mock', content: 'a'.repeat(60000) }));
            const okRes = await ctx.request('/v1/chat/completions', { target, method: 'POST', body: small, headers: { 'Content-Type': 'application/json' } });
            assert.equal(okRes.status, 200, `60 KB body: ${okRes.describe()}`);

            // Content-Length: the head alone may be answered; send the body only if it is not.
            const big = Buffer.from(JSON.stringify(chatBody({ model: 'mock', content: 'a'.repeat(100000) })));
            let conn = await connect(target);
            await conn.write(buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: { ...ctx.authHeaders, 'Content-Type': 'application/json', 'Content-Length': String(big.length) } }));
            let res;
            try {
                res = await conn.readResponse({ timeoutMs: 1500 });
            } catch (e) {
                if (!(e instanceof TimeoutError)) throw e;
                await conn.write(big).catch(() => {});
                res = await conn.readResponse({ timeoutMs: 10000 });
            }
            assertErrorResponse(res, { status: 413, code: 'BODY_TOO_LARGE', what: `Content-Length ${big.length}` });
            conn.destroy();

            // chunked: the size is only known while reading
            conn = await connect(target);
            await conn.write(buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: { ...ctx.authHeaders, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }));
            for (let off = 0; off < big.length && !conn.ended; off += 8192) {
                const part = big.subarray(off, off + 8192);
                await conn.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')])).catch(() => {});
            }
            await conn.write('0\r\n\r\n').catch(() => {});
            res = await conn.readResponse({ timeoutMs: 10000 });
            assertErrorResponse(res, { status: 413, code: 'BODY_TOO_LARGE', what: `chunked body of ${big.length} bytes` });
        },
    },
    {
        id: 'hostile.invalid-json',
        title: 'a body that is not JSON -> 400 INVALID_JSON in the OpenAI error shape',
        needs: ['raw'],
        async run(ctx) {
            const cases = [
                ['truncated', '{"model": "mock", "messages": ['],
                ['not JSON', 'hello, world'],
                ['trailing garbage', '{"model":"mock","messages":[{"role":"user","content":"hi"}]} trailing'],
            ];
            for (const [what, body] of cases) {
                const res = await ctx.request('/v1/chat/completions', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
                const e = assertErrorResponse(res, { status: 400, code: 'INVALID_JSON', what });
                assert.equal(e.type, 'invalid_request_error', `${what}: error.type`);
                assert.equal(e.param, null, `${what}: error.param`);
            }
        },
    },
    {
        id: 'hostile.invalid-utf8',
        title: 'a JSON body with bytes that are not UTF-8 (RFC 8259 8.1) -> 400 INVALID_JSON',
        needs: ['raw'],
        async run(ctx) {
            const cases = [
                ['0xFF 0xFE in a string', [0xff, 0xfe]],
                ['overlong encoding of "/"', [0xc0, 0xaf]],
                ['UTF-16 surrogate encoded in UTF-8', [0xed, 0xa0, 0x80]],
                ['truncated 3-byte sequence', [0xe2, 0x82]],
            ];
            for (const [what, bytes] of cases) {
                const body = Buffer.concat([
                    Buffer.from('{"model":"mock","messages":[{"role":"user","content":"a'),
                    Buffer.from(bytes),
                    Buffer.from('b"}]}'),
                ]);
                const res = await ctx.request('/v1/chat/completions', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
                assertErrorResponse(res, { status: 400, code: 'INVALID_JSON', what });
            }
        },
    },
    {
        id: 'hostile.cl-and-chunked',
        title: 'Content-Length together with Transfer-Encoding: chunked -> 400, nothing smuggled, connection closed',
        needs: ['raw'],
        async run(ctx) {
            const smuggled = 'GET /v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
            const req =
                `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ctx.apiKey}\r\nContent-Type: application/json\r\n` +
                `Content-Length: ${5 + smuggled.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`;
            const { conn, res } = await exchange(ctx.target, req);
            assertErrorResponse(res, { status: 400, code: 'BAD_REQUEST', what: 'CL + TE', requireHeader: false });
            assert.ok(await conn.waitClosed(3000), 'connection still open 3 s after the 400');
            assert.equal(conn.buf.length, 0, `bytes after the 400 (a second, smuggled response?): ${conn.buf.toString('latin1').slice(0, 200)}`);
        },
    },
    {
        id: 'hostile.slow-headers',
        title: 'header_timeout 1s: half-sent and trickled heads get 408 or a close; other clients are served meanwhile',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 40000,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null, workers: 1, settings: { header_timeout: '1s' } });
            const target = ibex.target;
            const slow = [];
            for (let i = 0; i < 5; i++) {
                const conn = await connect(target);
                await conn.write('POST /v1/chat/compl');
                slow.push({ conn, t0: now(), what: `half request line ${i}` });
            }
            // one that keeps sending a byte of a header value every 200 ms
            const trickle = await connect(target);
            await trickle.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ');
            const trickleEntry = { conn: trickle, t0: now(), what: 'trickled header' };
            slow.push(trickleEntry);
            let trickling = true;
            const tricklePump = (async () => {
                while (trickling && !trickle.ended) {
                    await sleep(200);
                    await trickle.write('a').catch(() => {});
                }
            })();

            await sleep(300);
            const t = now();
            const health = await ctx.request('/health', { target, timeoutMs: 3000 });
            assert.equal(health.status, 200, `GET /health while slow clients hold connections: ${health.describe()}`);
            const chat = await ctx.request('/v1/chat/completions', { target, method: 'POST', body: chatBody({ model: 'mock' }), timeoutMs: 3000 });
            assert.equal(chat.status, 200, `a chat request while slow clients hold connections: ${chat.describe()}`);
            ctx.note(`other clients served in ${(now() - t).toFixed(0)} ms while 6 slow heads were pending`);

            const outcomes = [];
            try {
                for (const s of slow) {
                    let outcome;
                    try {
                        const res = await s.conn.readResponse({ timeoutMs: Math.max(100, 6000 - (now() - s.t0)) });
                        assertErrorResponse(res, { status: 408, code: 'REQUEST_TIMEOUT', what: s.what, requireHeader: false });
                        outcome = '408';
                    } catch (e) {
                        if (e instanceof TimeoutError) assert.fail(`${s.what}: neither a 408 nor a close ${(now() - s.t0).toFixed(0)} ms after the first byte (header_timeout is 1 s)`);
                        if (!(e instanceof ConnectionClosedError)) throw e;
                        outcome = 'closed';
                    }
                    const ms = now() - s.t0;
                    outcomes.push(`${s.what}: ${outcome} at ${ms.toFixed(0)} ms`);
                    assert.ok(ms >= 700, `${s.what}: ${outcome} after only ${ms.toFixed(0)} ms, before the 1 s header timeout`);
                    if (outcome === '408') assert.ok(await s.conn.waitClosed(3000), `${s.what}: connection open after the 408`);
                }
            } finally {
                trickling = false;
                await tricklePump;
                ctx.note(outcomes.join('; '));
            }
            const after = await ctx.request('/health', { target, timeoutMs: 3000 });
            assert.equal(after.status, 200, `GET /health after the timeouts: ${after.describe()}`);
        },
    },
    {
        id: 'hostile.slow-body',
        title: 'body_timeout 1s: a body that stops arriving gets 408 REQUEST_TIMEOUT or a close',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null, settings: { body_timeout: '1s' } });
            const conn = await connect(ibex.target);
            const body = JSON.stringify(chatBody({ model: 'mock' }));
            await conn.write(buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: { ...ctx.authHeaders, 'Content-Type': 'application/json', 'Content-Length': String(body.length) } }));
            await conn.write(body.slice(0, 10));
            const t0 = now();
            try {
                const res = await conn.readResponse({ timeoutMs: 6000 });
                assertErrorResponse(res, { status: 408, code: 'REQUEST_TIMEOUT', what: 'stalled body' });
                assert.ok(await conn.waitClosed(3000), 'connection open after the 408');
                ctx.note(`408 after ${(now() - t0).toFixed(0)} ms`);
            } catch (e) {
                if (e instanceof TimeoutError) assert.fail(`neither a 408 nor a close ${(now() - t0).toFixed(0)} ms into a stalled body (body_timeout is 1 s)`);
                if (!(e instanceof ConnectionClosedError)) throw e;
                ctx.note(`closed without a response after ${(now() - t0).toFixed(0)} ms`);
            }
            assert.ok(now() - t0 >= 700, `gave up on the body after ${(now() - t0).toFixed(0)} ms, before the 1 s body timeout`);
        },
    },
    {
        id: 'hostile.idle-keepalive',
        title: 'idle_timeout 1s: an idle keep-alive connection is closed; a busy one is not',
        needs: ['raw', 'process'],
        shared: false,
        timeoutMs: 30000,
        async run(ctx) {
            const ibex = await ctx.ibex({ upstream: null, settings: { idle_timeout: '1s' } });
            const conn = await connect(ibex.target);
            // requests 400 ms apart keep it open past the 1 s idle timeout
            for (let i = 0; i < 4; i++) {
                await conn.write(get('/health'));
                const res = await conn.readResponse({ timeoutMs: 5000 });
                assert.equal(res.status, 200, `request ${i} on the keep-alive connection: ${res.describe()}`);
                if (i < 3) await sleep(400);
            }
            const t0 = now();
            assert.ok(await conn.waitClosed(5000), 'idle keep-alive connection still open 5 s later (idle_timeout is 1 s)');
            const ms = now() - t0;
            ctx.note(`idle connection closed after ${ms.toFixed(0)} ms`);
            assert.ok(ms >= 700, `idle connection closed after only ${ms.toFixed(0)} ms`);
            assert.equal(conn.buf.length, 0, `bytes sent on the idle connection before closing: ${conn.buf.toString('latin1').slice(0, 200)}`);
        },
    },
    {
        id: 'hostile.keepalive-pipelining',
        title: 'two pipelined requests in one write -> two responses in order on an open connection; Connection: close ends it',
        needs: ['raw'],
        async run(ctx) {
            const conn = await connect(ctx.target);
            await conn.write(
                Buffer.concat([
                    buildRequest({ method: 'GET', path: '/health', headers: { 'X-Request-ID': 'pipe-1' } }),
                    buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: { ...ctx.authHeaders, 'X-Request-ID': 'pipe-2' }, body: chatBody({ model: 'mock' }) }),
                ]),
            );
            const r1 = await conn.readResponse({ timeoutMs: 10000 });
            assert.equal(r1.status, 200, `first response: ${r1.describe()}`);
            assert.equal(r1.json().status, 'ok', `first response is not /health's: ${r1.describe()}`);
            const r2 = await conn.readResponse({ timeoutMs: 10000 });
            assert.equal(r2.status, 200, `second response: ${r2.describe()}`);
            assert.equal(r2.json().object, 'chat.completion', `second response is not the completion: ${r2.describe()}`);
            assert.equal(r2.headers['x-request-id'], 'pipe-2', 'second response carries the wrong X-Request-ID');
            for (const r of [r1, r2]) assert.notEqual((r.headers.connection || '').toLowerCase(), 'close', 'keep-alive response says Connection: close');
            assert.ok(!(await conn.waitClosed(300)), 'connection closed after two keep-alive responses');

            await conn.write(buildRequest({ method: 'GET', path: '/v1/models', headers: { ...ctx.authHeaders, Connection: 'close' } }));
            const r3 = await conn.readResponse({ timeoutMs: 10000 });
            assert.equal(r3.status, 200, `third request on the same connection: ${r3.describe()}`);
            assert.equal(r3.json().object, 'list', `third response: ${r3.describe()}`);
            assert.ok(await conn.waitClosed(3000), 'connection still open 3 s after a Connection: close response');
        },
    },
    {
        id: 'hostile.disconnect-mid-stream',
        title: 'client drops a stream after the first chunk -> ibex aborts the upstream, no stream left open',
        needs: ['raw', 'fakellm'],
        timeoutMs: 30000,
        async run(ctx) {
            const fake = ctx.fakellm;
            const before = await fake.quiesce();
            const { conn, head } = await startChat(ctx.target, {
                body: chatBody({ model: MODEL, stream: true }),
                headers: { ...ctx.authHeaders, ...knobs({ chunks: 50, intervalMs: 100 }) },
            });
            assert.equal(head.status, 200, `stream did not start: HTTP ${head.status}`);
            const r = await readChatStream(conn, head, { timeoutMs: 5000, onEvent: () => false });
            assert.ok(r.stopped && r.acc.pieces >= 1, 'no first chunk');
            const t0 = now();
            conn.destroy();

            let s;
            const ok = await pollUntil(async () => {
                s = await fake.stats();
                return s.aborted >= before.aborted + 1 && s.active === 0;
            }, { timeoutMs: 2500 });
            assert.ok(ok, `upstream not aborted 2.5 s after the client left (fakellm stats before ${JSON.stringify(before)}, now ${JSON.stringify(s)})`);
            ctx.note(`upstream aborted ${(now() - t0).toFixed(0)} ms after the client disconnected`);
            assert.equal(s.completed, before.completed, 'the upstream stream ran to completion although the client was gone');

            let open;
            const closed = await pollUntil(async () => {
                open = await streamsOpen(ctx);
                return open === 0;
            }, { timeoutMs: 2000 });
            assert.ok(closed, `ibex_streams_open is ${open} after the only stream's client left`);
        },
    },
    {
        id: 'hostile.slow-reader',
        title: 'client pauses reading a 32 MB stream for 3 s -> ibex pauses the upstream; then all bytes arrive intact',
        needs: ['raw', 'fakellm'],
        timeoutMs: 120000,
        async run(ctx) {
            const CHUNKS = 4096;
            const BYTES = 8192;
            const fake = ctx.fakellm;
            const before = await fake.quiesce();
            const { conn, head } = await startChat(ctx.target, {
                body: chatBody({ model: MODEL, stream: true }),
                headers: { ...ctx.authHeaders, ...knobs({ chunks: CHUNKS, chunkBytes: BYTES }) },
            });
            assert.equal(head.status, 200, `stream did not start: HTTP ${head.status}`);

            const expect = new ExpectedStream(CHUNKS, BYTES);
            let pausedAt = null;
            let onPause;
            const pausedP = new Promise((resolve) => {
                onPause = resolve;
            });
            const reading = readChatStream(conn, head, {
                timeoutMs: 100000,
                onEvent: (ev, acc) => {
                    if (acc.pieces > 0 && pausedAt === null) {
                        pausedAt = now();
                        conn.pause();
                        onPause();
                    }
                },
            });
            await Promise.race([pausedP, reading]);
            assert.ok(pausedAt !== null, 'the stream ended before its first chunk');
            await sleep(3000);
            const during = await fake.stats();
            ctx.note(`after 3 s paused: client holds ${(conn.bytesIn / 1048576).toFixed(1)} MiB of ~${((CHUNKS * (BYTES + 150)) / 1048576).toFixed(0)} MiB; fakellm ${JSON.stringify(during)}`);
            assert.equal(during.completed, before.completed, `fakellm finished the 32 MB answer while the client was paused: ibex buffered it instead of pausing the upstream (stats ${JSON.stringify(during)})`);
            assert.equal(during.active, before.active + 1, `fakellm should still be generating (stats ${JSON.stringify(during)})`);
            conn.resume();
            const r = await reading;
            expect.consume(r.acc.text);
            assert.equal(expect.mismatch, null, expect.mismatch);
            assert.ok(expect.complete, `incomplete text: ${r.acc.text.length} of ${CHUNKS * BYTES} characters`);
            assert.ok(r.acc.done, 'no [DONE] at the end');
            assert.ok(r.complete, 'the chunked body did not end cleanly');
            assert.equal(r.acc.error, null, `error event: ${JSON.stringify(r.acc.error)}`);
            assert.equal(r.acc.finishReason, 'stop', 'finish_reason');
        },
    },
];
