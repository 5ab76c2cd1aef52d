// A raw HTTP/1.1 client over node:net, for checks that must control the bytes on the wire
// (hostile input, pipelining, half-sent requests, disconnects, paused reads) and for plain
// requests to ops routes and fakellm's control routes.
//
// RawConn keeps everything the socket delivered in one buffer; readers consume from its front, so
// pipelined responses are read one after another off the same connection. Every read has a
// deadline and fails with TimeoutError instead of hanging.
import net from 'node:net';
import { TimeoutError, now, truncate } from './util.mjs';

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 256 * 1024;

// Sockets opened by RawConn.connect() while a tracker is installed are destroyed by it; the
// harness installs one per check so a failed or timed-out check leaves no socket behind.
let tracker = null;
export function setConnTracker(fn) {
    tracker = fn;
}

export class RawConn {
    constructor(socket) {
        this.socket = socket;
        this.buf = Buffer.alloc(0);
        this.ended = false; // peer sent FIN or the socket closed
        this.error = null;
        this.bytesIn = 0;
        this.waiters = new Set();
        socket.on('data', (d) => {
            this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
            this.bytesIn += d.length;
            this.wake();
        });
        socket.on('end', () => {
            this.ended = true;
            this.wake();
        });
        socket.on('close', () => {
            this.ended = true;
            this.wake();
        });
        socket.on('error', (e) => {
            this.error = e;
            this.ended = true;
            this.wake();
        });
    }

    static connect({ host = '127.0.0.1', port, timeoutMs = 5000 }) {
        return new Promise((resolve, reject) => {
            const socket = net.connect({ host, port, noDelay: true });
            const timer = setTimeout(() => {
                socket.destroy();
                reject(new TimeoutError(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
            }, timeoutMs);
            const onError = (e) => {
                clearTimeout(timer);
                reject(e);
            };
            socket.once('error', onError);
            socket.once('connect', () => {
                clearTimeout(timer);
                const conn = new RawConn(socket);
                socket.removeListener('error', onError);
                if (tracker) tracker(conn);
                resolve(conn);
            });
        });
    }

    wake() {
        for (const w of this.waiters) w();
        this.waiters.clear();
    }

    // Waits for more bytes, EOF or an error, at most until deadline (absolute, ms).
    async more(deadline, what) {
        if (this.ended) return;
        const left = deadline - now();
        if (left <= 0) throw new TimeoutError(`timed out waiting for ${what}`);
        await new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.waiters.delete(done);
                reject(new TimeoutError(`timed out waiting for ${what}`));
            }, left);
            const done = () => {
                clearTimeout(timer);
                resolve();
            };
            this.waiters.add(done);
        });
    }

    take(n) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
    }

    write(data) {
        return new Promise((resolve, reject) => {
            if (this.socket.destroyed) return reject(new Error('write on a closed connection'));
            this.socket.write(data, (err) => (err ? reject(err) : resolve()));
        });
    }

    pause() {
        this.socket.pause();
    }

    resume() {
        this.socket.resume();
    }

    destroy() {
        this.socket.destroy();
    }

    // Reads one response head. Returns {status, reason, version, headers, rawHeaders}; header
    // names are lowercased and repeated headers joined with ', '.
    async readHead({ timeoutMs = 10000 } = {}) {
        const deadline = now() + timeoutMs;
        for (;;) {
            const i = this.buf.indexOf(HEAD_END);
            if (i >= 0) return parseHead(this.take(i + 4).toString('latin1'));
            if (this.buf.length > MAX_HEAD) throw new Error(`response head over ${MAX_HEAD} bytes`);
            if (this.ended) {
                const got = this.buf.length
                    ? ` after ${this.buf.length} bytes: ${JSON.stringify(truncate(this.buf.toString('latin1'), 200))}`
                    : ' (no bytes received)';
                const why = this.error ? `${this.error.code || this.error.message}` : 'closed';
                throw new ConnectionClosedError(`connection ${why} before a complete response head${got}`);
            }
            await this.more(deadline, 'the response head');
        }
    }

    // Reads the body that follows head. onData(buf) receives each piece as it arrives; when it
    // returns false reading stops early (stopped: true). Without onData the body is collected.
    // complete: the body ended as framed (chunked terminator / Content-Length reached / EOF for
    // close-delimited bodies).
    async readBody(head, { timeoutMs = 30000, method = 'GET', onData } = {}) {
        const deadline = now() + timeoutMs;
        const parts = [];
        let stopped = false;
        const deliver = (b) => {
            if (onData) {
                if (onData(b) === false) stopped = true;
            } else parts.push(b);
        };
        const result = (complete) => ({ body: Buffer.concat(parts), complete, stopped });
        const noBody =
            method === 'HEAD' || (head.status >= 100 && head.status < 200) || head.status === 204 || head.status === 304;
        if (noBody) return result(true);

        const te = (head.headers['transfer-encoding'] || '').toLowerCase();
        if (te.includes('chunked')) {
            for (;;) {
                // chunk-size line
                let eol;
                while ((eol = this.buf.indexOf(CRLF)) < 0) {
                    if (this.ended) return result(false);
                    if (this.buf.length > 1024) throw new Error('chunk size line too long');
                    await this.more(deadline, 'a chunk size line');
                }
                const line = this.take(eol + 2).toString('latin1').slice(0, -2);
                const size = parseInt(line.split(';')[0].trim(), 16);
                if (!Number.isFinite(size) || !/^[0-9a-fA-F]+$/.test(line.split(';')[0].trim()))
                    throw new Error(`bad chunk size line ${JSON.stringify(line)}`);
                if (size === 0) {
                    // trailers, ending with an empty line
                    for (;;) {
                        while ((eol = this.buf.indexOf(CRLF)) < 0) {
                            if (this.ended) return result(false);
                            await this.more(deadline, 'the chunked trailer');
                        }
                        const tl = this.take(eol + 2);
                        if (tl.length === 2) return result(true);
                    }
                }
                let left = size;
                while (left > 0) {
                    if (this.buf.length === 0) {
                        if (this.ended) return result(false);
                        await this.more(deadline, 'chunk data');
                        continue;
                    }
                    const piece = this.take(Math.min(left, this.buf.length));
                    left -= piece.length;
                    deliver(piece);
                    if (stopped) return result(false);
                }
                while (this.buf.length < 2) {
                    if (this.ended) return result(false);
                    await this.more(deadline, 'the CRLF after chunk data');
                }
                if (!this.take(2).equals(CRLF)) throw new Error('chunk data not followed by CRLF');
            }
        }
        if (head.headers['content-length'] !== undefined) {
            const cl = head.headers['content-length'];
            if (!/^\d+$/.test(cl)) throw new Error(`bad Content-Length ${JSON.stringify(cl)}`);
            let left = Number(cl);
            while (left > 0) {
                if (this.buf.length === 0) {
                    if (this.ended) return result(false);
                    await this.more(deadline, 'the response body');
                    continue;
                }
                const piece = this.take(Math.min(left, this.buf.length));
                left -= piece.length;
                deliver(piece);
                if (stopped) return result(false);
            }
            return result(true);
        }
        // close-delimited
        for (;;) {
            if (this.buf.length) {
                deliver(this.take(this.buf.length));
                if (stopped) return result(false);
            }
            if (this.ended) return result(true);
            await this.more(deadline, 'the end of a close-delimited body');
        }
    }

    async readResponse({ timeoutMs = 30000, method = 'GET' } = {}) {
        const head = await this.readHead({ timeoutMs });
        const { body, complete } = await this.readBody(head, { timeoutMs, method });
        return new Response(head, body, complete);
    }

    // True when the peer closes the connection within timeoutMs (bytes that arrive meanwhile are
    // kept in the buffer).
    async waitClosed(timeoutMs) {
        const deadline = now() + timeoutMs;
        while (!this.ended) {
            try {
                await this.more(deadline, 'the connection to close');
            } catch (e) {
                if (e instanceof TimeoutError) return false;
                throw e;
            }
        }
        return true;
    }
}

export class ConnectionClosedError extends Error {
    constructor(message) {
        super(message);
        this.name = 'ConnectionClosedError';
    }
}

function parseHead(text) {
    const lines = text.slice(0, -4).split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const headers = {};
    const rawHeaders = [];
    for (const line of lines.slice(1)) {
        const c = line.indexOf(':');
        if (c <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`);
        const name = line.slice(0, c).trim().toLowerCase();
        const value = line.slice(c + 1).trim();
        rawHeaders.push([name, value]);
        headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    return { version: m[1], status: Number(m[2]), reason: m[3] || '', headers, rawHeaders };
}

export class Response {
    constructor(head, body, complete) {
        Object.assign(this, head);
        this.body = body;
        this.complete = complete;
    }

    text() {
        return this.body.toString('utf8');
    }

    // Parses the body as JSON; the error names the status and shows the start of the body.
    json() {
        try {
            return JSON.parse(this.text());
        } catch {
            throw new Error(
                `HTTP ${this.status}: body is not JSON: ${JSON.stringify(truncate(this.text(), 300))}`,
            );
        }
    }

    describe() {
        return `HTTP ${this.status} ${truncate(this.text(), 400)}`;
    }
}

// Serialises one request. headers is an object or an array of [name, value]; Host and (when a
// body is given and no framing header is) Content-Length are added.
export function buildRequest({ method = 'GET', path = '/', headers = {}, body, host = 'localhost' }) {
    const list = Array.isArray(headers) ? [...headers] : Object.entries(headers);
    const has = (n) => list.some(([k]) => k.toLowerCase() === n);
    if (!has('host')) list.unshift(['Host', host]);
    let payload = null;
    if (body !== undefined && body !== null) {
        payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        if (typeof body === 'object' && !Buffer.isBuffer(body) && !has('content-type'))
            list.push(['Content-Type', 'application/json']);
        if (!has('content-length') && !has('transfer-encoding')) list.push(['Content-Length', String(payload.length)]);
    }
    const head = `${method} ${path} HTTP/1.1\r\n${list.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
    return payload ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : Buffer.from(head, 'latin1');
}

// Parses 'http://host:port/prefix' into {host, port, prefix}; raw sockets speak plain HTTP only.
export function parseTarget(url) {
    const u = new URL(url);
    if (u.protocol !== 'http:') return null;
    return {
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: Number(u.port || 80),
        prefix: u.pathname.replace(/\/+$/, ''),
    };
}

// One request on a fresh connection with Connection: close. target: {host, port}.
export async function request(target, { method = 'GET', path = '/', headers = {}, body, timeoutMs = 10000 } = {}) {
    const conn = await RawConn.connect({ host: target.host, port: target.port, timeoutMs });
    try {
        const h = Array.isArray(headers) ? [...headers] : Object.entries(headers);
        if (!h.some(([k]) => k.toLowerCase() === 'connection')) h.push(['Connection', 'close']);
        await conn.write(buildRequest({ method, path: (target.prefix || '') + path, headers: h, body, host: `${target.host}:${target.port}` }));
        return await conn.readResponse({ timeoutMs, method });
    } finally {
        conn.destroy();
    }
}

// Error body assertions live here because every route shares the shape.
export function errorOf(res) {
    const j = res.json();
    if (!j || typeof j.error !== 'object' || j.error === null)
        throw new Error(`expected an OpenAI-shaped error body, got ${res.describe()}`);
    return j.error;
}
