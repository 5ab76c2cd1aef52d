// Chat completions over a raw connection, for checks that need what the SDK hides: the exact
// framing of a stream ([DONE], the chunked terminator), when each event arrived, pausing or
// dropping the connection mid-stream.
import { RawConn, buildRequest } from './http.mjs';
import { SSEParser, ChatAccumulator } from './sse.mjs';
import { now } from './util.mjs';

export function chatBody({ model = 'gpt-e2e', stream = false, content = 'Say hello.', ...rest } = {}) {
    return { model, messages: [{ role: 'user', content }], stream, ...rest };
}

// Sends POST /v1/chat/completions on a new connection and reads the response head.
// Returns {conn, head, sentAt}.
export async function startChat(target, { body, headers = {}, timeoutMs = 15000, connection } = {}) {
    const conn = await RawConn.connect({ host: target.host, port: target.port });
    const h = { ...headers };
    if (connection) h.Connection = connection;
    const sentAt = now();
    await conn.write(
        buildRequest({
            method: 'POST',
            path: `${target.prefix || ''}/v1/chat/completions`,
            headers: h,
            body,
            host: `${target.host}:${target.port}`,
        }),
    );
    const head = await conn.readHead({ timeoutMs });
    return { conn, head, sentAt };
}

// Reads an SSE chat stream to its end (or until onEvent returns false).
// Returns {acc, complete, stopped, partial, times: [ms per event since start]}.
export async function readChatStream(conn, head, { timeoutMs = 30000, onEvent, onData } = {}) {
    const parser = new SSEParser();
    const acc = new ChatAccumulator();
    const times = [];
    const t0 = now();
    let stop = false;
    const r = await conn.readBody(head, {
        timeoutMs,
        method: 'POST',
        onData: (buf) => {
            if (onData) onData(buf);
            for (const ev of parser.push(buf)) {
                times.push(now() - t0);
                acc.feed(ev);
                if (onEvent && onEvent(ev, acc) === false) {
                    stop = true;
                    return false;
                }
            }
            return !stop;
        },
    });
    return { acc, complete: r.complete, stopped: r.stopped, partial: parser.partial, times };
}

// A whole streaming request: start, check it is an event stream, read it.
export async function streamChat(target, { body, headers = {}, timeoutMs = 30000, onEvent } = {}) {
    const { conn, head } = await startChat(target, { body: { ...body, stream: true }, headers, timeoutMs });
    try {
        const ctype = head.headers['content-type'] || '';
        if (head.status !== 200 || !ctype.startsWith('text/event-stream')) {
            const { body: b } = await conn.readBody(head, { timeoutMs: 5000, method: 'POST' }).catch(() => ({ body: Buffer.alloc(0) }));
            throw new Error(`expected 200 text/event-stream, got HTTP ${head.status} content-type=${ctype} body=${b.toString('utf8').slice(0, 400)}`);
        }
        const r = await readChatStream(conn, head, { timeoutMs, onEvent });
        return { head, ...r };
    } finally {
        conn.destroy();
    }
}

// Checks the invariants of a stream that finished normally; returns a list of problems.
export function streamProblems(r, { expectText } = {}) {
    const p = [];
    if (!r.complete) p.push('the chunked body did not end with its terminating chunk');
    if (r.partial) p.push('the body ended in the middle of an SSE event');
    if (r.acc.error) p.push(`stream carried an error event: ${JSON.stringify(r.acc.error)}`);
    if (!r.acc.done) p.push('no data: [DONE] event');
    if (r.acc.eventsAfterDone) p.push(`${r.acc.eventsAfterDone} event(s) after [DONE]`);
    if (r.acc.finishReason !== 'stop') p.push(`finish_reason ${JSON.stringify(r.acc.finishReason)}, expected "stop"`);
    if (expectText !== undefined && r.acc.text !== expectText)
        p.push(`text ${JSON.stringify(r.acc.text.slice(0, 120))} (${r.acc.text.length} chars) != expected ${JSON.stringify(expectText.slice(0, 120))} (${expectText.length} chars)`);
    return p;
}
