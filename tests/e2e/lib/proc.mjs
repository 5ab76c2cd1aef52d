// Spawning and stopping the binaries under test (ibex, fakellm) on free loopback ports.
//
// Each process gets a sanitised environment (no inherited IBEX_* or OPENAI_*, so a developer's
// shell cannot change what a check tests), its stdout and stderr go to files in the log
// directory, and it is registered so that every exit path of the runner (normal end, failure,
// ctrl-C) kills it. A start is complete when GET /health answers 200.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.mjs';
import { request } from './http.mjs';
import { REPO_ROOT, sleep, now, TimeoutError } from './util.mjs';

const live = new Set();
let seq = 0;

export function binPath(envName, fallback) {
    const p = process.env[envName] || fallback;
    return path.resolve(REPO_ROOT, p);
}

export const ibexBin = () => binPath('IBEX_BIN', './ibex');
export const fakellmBin = () => binPath('FAKELLM_BIN', 'tools/fakellm/fakellm');

export function isExecutable(p) {
    try {
        fs.accessSync(p, fs.constants.X_OK);
        return fs.statSync(p).isFile();
    } catch {
        return false;
    }
}

// process.env without IBEX_*, OPENAI_*, ANTHROPIC_* and GEMINI_* (no key leaks in), plus extra.
export function cleanEnv(extra = {}) {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (k.startsWith('IBEX_') || k.startsWith('OPENAI_') || k.startsWith('ANTHROPIC_') || k.startsWith('GEMINI_')) continue;
        env[k] = v;
    }
    for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) env[k] = String(v);
    return env;
}

// {max_body_bytes: '64k'} -> ['--max-body-bytes', '64k']
export function settingsArgs(settings = {}) {
    const args = [];
    for (const [k, v] of Object.entries(settings)) {
        if (v === undefined || v === null) continue;
        args.push(`--${k.replace(/_/g, '-')}`, String(v));
    }
    return args;
}

const SANITIZER_RE = /^(==\d+==ERROR: (Address|Leak|Memory|Thread)Sanitizer|.*: runtime error: |SUMMARY: (Address|Undefined|Leak)Sanitizer)/m;

export class ServerProcess {
    // opts: name, bin, args(port) -> argv, env, logDir
    constructor({ name, bin, args, env, logDir }) {
        this.name = name;
        this.bin = bin;
        this.argsFor = args;
        this.env = env;
        this.logDir = logDir;
        this.host = '127.0.0.1';
        this.port = null;
        this.proc = null;
        this.exit = null; // {code, signal} once exited
        this.exited = null; // promise
        this.stderrPath = null;
        this.stdoutPath = null;
        this.argv = null;
    }

    get url() {
        return `http://${this.host}:${this.port}`;
    }

    get target() {
        return { host: this.host, port: this.port, prefix: '' };
    }

    get alive() {
        return this.proc !== null && this.exit === null;
    }

    // Starts the process and waits for GET /health = 200. A start that dies before that is
    // retried on a new port when it failed to bind (a lost free-port race).
    async start({ timeoutMs = 20000, attempts = 3 } = {}) {
        for (let attempt = 1; ; attempt++) {
            try {
                await this.startOnce(timeoutMs);
                return this;
            } catch (e) {
                const bindRace = this.exit !== null && /in use|EADDRINUSE|bind/i.test(this.stderrTail(20));
                if (!bindRace || attempt >= attempts) throw e;
            }
        }
    }

    async startOnce(timeoutMs) {
        this.port = await freePort(this.host);
        const n = ++seq;
        const base = path.join(this.logDir, `${String(n).padStart(2, '0')}-${this.name}`);
        this.stderrPath = `${base}.stderr.log`;
        this.stdoutPath = `${base}.stdout.log`;
        const errFd = fs.openSync(this.stderrPath, 'w');
        const outFd = fs.openSync(this.stdoutPath, 'w');
        this.argv = this.argsFor(this.port);
        this.exit = null;
        try {
            this.proc = spawn(this.bin, this.argv, { env: this.env, stdio: ['ignore', outFd, errFd] });
        } finally {
            fs.closeSync(errFd);
            fs.closeSync(outFd);
        }
        live.add(this);
        this.exited = new Promise((resolve) => {
            this.proc.once('error', (err) => {
                this.exit = { code: null, signal: null, error: err.message };
                live.delete(this);
                resolve(this.exit);
            });
            this.proc.once('exit', (code, signal) => {
                this.exit = { code, signal };
                live.delete(this);
                resolve(this.exit);
            });
        });
        await this.waitHealthy(timeoutMs);
    }

    async waitHealthy(timeoutMs) {
        const deadline = now() + timeoutMs;
        let lastErr = 'no answer';
        while (now() < deadline) {
            if (this.exit) {
                throw new Error(
                    `${this.name} exited before it was healthy (${describeExit(this.exit)}); ` +
                        `command: ${this.commandLine()}\n--- stderr tail ---\n${this.stderrTail(30)}`,
                );
            }
            try {
                const res = await request(this.target, { path: '/health', timeoutMs: 1000 });
                if (res.status === 200) return;
                lastErr = res.describe();
            } catch (e) {
                lastErr = e.code || e.message;
            }
            await sleep(50);
        }
        this.kill('SIGKILL');
        throw new TimeoutError(
            `${this.name} did not answer GET /health = 200 within ${timeoutMs} ms (last: ${lastErr}); ` +
                `command: ${this.commandLine()}\n--- stderr tail ---\n${this.stderrTail(30)}`,
        );
    }

    commandLine() {
        return [this.bin, ...(this.argv || [])].map((a) => (/[\s*']/.test(a) ? `'${a}'` : a)).join(' ');
    }

    kill(signal = 'SIGTERM') {
        if (this.alive) this.proc.kill(signal);
    }

    // Resolves with {code, signal} or null when the process is still running after timeoutMs.
    async waitExit(timeoutMs) {
        if (this.exit) return this.exit;
        if (!this.exited) return null;
        let timer;
        const r = await Promise.race([
            this.exited,
            new Promise((resolve) => {
                timer = setTimeout(() => resolve(null), timeoutMs);
            }),
        ]);
        clearTimeout(timer);
        return r;
    }

    // SIGTERM, then SIGKILL after graceMs. Returns {code, signal, killed}.
    async stop({ graceMs = 5000 } = {}) {
        if (!this.proc) return null;
        if (this.exit) return { ...this.exit, killed: false };
        this.kill('SIGTERM');
        const r = await this.waitExit(graceMs);
        if (r) return { ...r, killed: false };
        this.kill('SIGKILL');
        const r2 = await this.waitExit(5000);
        return { ...(r2 || { code: null, signal: 'SIGKILL' }), killed: true };
    }

    stderrSize() {
        try {
            return fs.statSync(this.stderrPath).size;
        } catch {
            return 0;
        }
    }

    stderrText(from = 0) {
        if (!this.stderrPath) return '';
        try {
            const buf = fs.readFileSync(this.stderrPath);
            return buf.subarray(Math.min(from, buf.length)).toString('utf8');
        } catch {
            return '';
        }
    }

    // Last n lines of stderr written at or after byte offset from.
    stderrTail(n = 40, from = 0) {
        const lines = this.stderrText(from).split('\n');
        if (lines.length && lines[lines.length - 1] === '') lines.pop();
        return lines.slice(-n).join('\n');
    }

    // The first sanitizer report (ASan, LSan, UBSan) in stderr at or after from, or null.
    sanitizerReport(from = 0) {
        const text = this.stderrText(from);
        const m = SANITIZER_RE.exec(text);
        if (!m) return null;
        return text.slice(m.index, m.index + 3000);
    }
}

export function describeExit(e) {
    if (!e) return 'still running';
    if (e.error) return `spawn failed: ${e.error}`;
    return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

// The master key of provider credentials (docs/credentials.md) every ibex the runner starts gets
// in IBEX_MASTER_KEY, fresh per run; env: {IBEX_MASTER_KEY: null} starts one without any
// (credentials disabled), env: {IBEX_MASTER_KEY: other} with another.
export const E2E_MASTER_KEY = crypto.randomBytes(32).toString('hex');

// ibex serve on a free port. settings: {name: value} passed as --flags; upstream: URL of an
// OpenAI-compatible upstream ('.../v1'), or null for none (then only the mock model exists).
// dev: {token, agentId} starts it with --dev and pins the dev admin key (IBEX_DEV_TOKEN) and the
// dev agent (IBEX_DEV_AGENT_ID), so the caller knows the credentials in advance.
export function ibexProcess({ name, logDir, settings = {}, upstream = null, providerKey = null, env = {}, dev = null, bin = ibexBin() }) {
    const extra = { ...env };
    if (dev) {
        extra.IBEX_DEV_TOKEN = dev.token;
        if (dev.agentId) extra.IBEX_DEV_AGENT_ID = dev.agentId;
    }
    if (!('IBEX_MASTER_KEY' in extra)) extra.IBEX_MASTER_KEY = E2E_MASTER_KEY;
    // Each ibex gets a store of its own next to its log, so instances never share a database
    // and nothing is written into the working directory.
    // The checks written before retries and the circuit breaker expect one attempt per request
    // and a provider that never goes out of rotation; routing.* turns both on in its settings.
    if (!('IBEX_UPSTREAM_RETRIES' in extra)) extra.IBEX_UPSTREAM_RETRIES = '0';
    if (!('IBEX_BREAKER_FAILURES' in extra)) extra.IBEX_BREAKER_FAILURES = '0';
    if (!('IBEX_STORE_URL' in extra) && logDir) extra.IBEX_STORE_URL = `sqlite://${path.resolve(logDir, `${name}.db`)}`;
    if (upstream) {
        extra.OPENAI_API_KEY = providerKey || 'e2e-provider-key';
        extra.OPENAI_BASE_URL = upstream;
    }
    return new ServerProcess({
        name,
        bin,
        logDir,
        env: cleanEnv(extra),
        args: (port) => ['serve', '--listen', `127.0.0.1:${port}`, ...(dev ? ['--dev'] : []), ...settingsArgs(settings)],
    });
}

export function fakellmProcess({ name, logDir, args = [], bin = fakellmBin() }) {
    return new ServerProcess({
        name,
        bin,
        logDir,
        env: cleanEnv(),
        args: (port) => ['--listen', `127.0.0.1:${port}`, ...args],
    });
}

// Every exit path kills what is still running: 'exit' handlers may only do synchronous work,
// which kill() is.
export function killAll(signal = 'SIGKILL') {
    for (const p of live) p.kill(signal);
}

let hooked = false;
export function installExitHooks(onSignal) {
    if (hooked) return;
    hooked = true;
    process.on('exit', () => killAll('SIGKILL'));
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
        process.on(sig, () => {
            killAll('SIGKILL');
            try {
                if (onSignal) onSignal(sig);
            } finally {
                process.exit(sig === 'SIGINT' ? 130 : 143);
            }
        });
    }
}
