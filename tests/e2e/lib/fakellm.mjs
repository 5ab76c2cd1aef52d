// What fakellm answers and how to steer it: the deterministic text of an answer, the
// x-fakellm-* knob headers, and a client for its control routes (/_fakellm/*) and its three wire
// formats (OpenAI, Anthropic, Gemini).
import { request } from './http.mjs';
import { pollUntil } from './util.mjs';

export const DEFAULT_CHUNKS = 8;

// x-fakellm-tool-call: the arguments of every call (as JSON text), and how many content events
// (= completion tokens) a call takes in each wire format.
export const TOOL_ARGS = '{"i":0}';
export const TOOL_PIECES = { openai: 2, anthropic: 2, gemini: 1 };

// The prompt token count fakellm reports for these texts (every text content of the request,
// system included): their characters (code points) / 4, rounded down, at least 1.
export function promptTokens(...texts) {
    let n = 0;
    for (const t of texts) n += [...t].length;
    return Math.max(1, Math.floor(n / 4));
}

// Chunk i is "tok<i> " padded with 'x' up to chunkBytes characters (i counts from 0).
export function chunkText(i, chunkBytes = 0) {
    const s = `tok${i} `;
    return chunkBytes > s.length ? s + 'x'.repeat(chunkBytes - s.length) : s;
}

export function expectedText(chunks = DEFAULT_CHUNKS, chunkBytes = 0) {
    let s = '';
    for (let i = 0; i < chunks; i++) s += chunkText(i, chunkBytes);
    return s;
}

// Verifies a long answer piece by piece without building it: consume(piece) compares piece with
// the next expected characters; mismatch holds the first difference.
export class ExpectedStream {
    constructor(chunks, chunkBytes = 0) {
        this.chunks = chunks;
        this.chunkBytes = chunkBytes;
        this.i = 0; // next chunk index
        this.cur = ''; // rest of the current chunk
        this.consumed = 0;
        this.mismatch = null;
    }

    consume(piece) {
        let off = 0;
        while (off < piece.length && !this.mismatch) {
            if (this.cur === '') {
                if (this.i >= this.chunks) {
                    this.mismatch = `extra text after the last chunk at char ${this.consumed}: ${JSON.stringify(piece.slice(off, off + 40))}`;
                    break;
                }
                this.cur = chunkText(this.i++, this.chunkBytes);
            }
            const n = Math.min(this.cur.length, piece.length - off);
            if (piece.slice(off, off + n) !== this.cur.slice(0, n)) {
                this.mismatch = `text differs at char ${this.consumed} (chunk ${this.i - 1}): got ${JSON.stringify(piece.slice(off, off + Math.min(n, 40)))}, expected ${JSON.stringify(this.cur.slice(0, Math.min(n, 40)))}`;
                break;
            }
            this.cur = this.cur.slice(n);
            off += n;
            this.consumed += n;
        }
        return !this.mismatch;
    }

    get complete() {
        return !this.mismatch && this.cur === '' && this.i === this.chunks;
    }
}

// Request headers for the knobs: knobs({chunks: 4, intervalMs: 300}) ->
// {'x-fakellm-chunks': '4', 'x-fakellm-interval-ms': '300'}.
export function knobs(k) {
    const names = {
        status: 'status',
        retryAfter: 'retry-after',
        delayMs: 'delay-ms',
        chunks: 'chunks',
        chunkBytes: 'chunk-bytes',
        intervalMs: 'interval-ms',
        firstTokenMs: 'first-token-ms',
        stallAfter: 'stall-after',
        resetAfter: 'reset-after',
        toolCall: 'tool-call',
    };
    const h = {};
    for (const [key, v] of Object.entries(k)) {
        if (!(key in names)) throw new Error(`unknown fakellm knob ${key}`);
        h[`x-fakellm-${names[key]}`] = String(v);
    }
    return h;
}

export class FakellmClient {
    // target: {host, port}
    constructor(target) {
        this.target = target;
        this.url = `http://${target.host}:${target.port}`;
    }

    async getJSON(path, method = 'GET') {
        const res = await request(this.target, { method, path, timeoutMs: 5000 });
        if (res.status !== 200) throw new Error(`fakellm ${method} ${path}: ${res.describe()}`);
        return res.json();
    }

    stats() {
        return this.getJSON('/_fakellm/stats');
    }

    async requests() {
        return (await this.getJSON('/_fakellm/requests')).requests;
    }

    async clearRequests() {
        const res = await request(this.target, { method: 'DELETE', path: '/_fakellm/requests', timeoutMs: 5000 });
        if (res.status >= 300) throw new Error(`fakellm DELETE /_fakellm/requests: ${res.describe()}`);
    }

    // Waits until no generation is in progress (leftovers of an earlier check), then returns the
    // stats; throws when streams stay active.
    async quiesce(timeoutMs = 5000) {
        let last;
        const ok = await pollUntil(
            async () => {
                last = await this.stats();
                return last.active === 0;
            },
            { timeoutMs },
        );
        if (!ok) throw new Error(`fakellm still has ${last.active} active generation(s) after ${timeoutMs} ms`);
        return last;
    }

    // A chat request straight to fakellm (not through ibex): used to learn what the upstream
    // itself answers to a knob, so the check compares ibex with it rather than with a guess.
    chatDirect(body, headers = {}) {
        return request(this.target, {
            method: 'POST',
            path: '/v1/chat/completions',
            headers: { authorization: 'Bearer direct', ...headers },
            body,
            timeoutMs: 10000,
        });
    }

    // POST /v1/messages (Anthropic) straight to fakellm, with a key and anthropic-version unless
    // headers replace them (a null value drops a header).
    messagesDirect(body, headers = {}) {
        return request(this.target, {
            method: 'POST',
            path: '/v1/messages',
            headers: dropNulls({ 'x-api-key': 'direct', 'anthropic-version': '2023-06-01', ...headers }),
            body,
            timeoutMs: 10000,
        });
    }

    // POST /v1beta/models/{model}:generateContent (or :streamGenerateContent?alt=sse with
    // stream: true) straight to fakellm, with x-goog-api-key unless headers replace it (null
    // drops it); query: extra query string ('key=k').
    geminiDirect(model, body, { stream = false, headers = {}, query = '' } = {}) {
        const q = [stream ? 'alt=sse' : '', query].filter(Boolean).join('&');
        return request(this.target, {
            method: 'POST',
            path: `${geminiPath(model, stream)}${q ? `?${q}` : ''}`,
            headers: dropNulls({ 'x-goog-api-key': 'direct', ...headers }),
            body,
            timeoutMs: 10000,
        });
    }
}

// The path of a Gemini generation request.
export function geminiPath(model, stream = false) {
    return `/v1beta/models/${model}:${stream ? 'streamGenerateContent' : 'generateContent'}`;
}

function dropNulls(h) {
    return Object.fromEntries(Object.entries(h).filter(([, v]) => v !== null && v !== undefined));
}
