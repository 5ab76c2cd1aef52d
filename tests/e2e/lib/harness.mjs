// The gate runner's engine: starts the shared stack (fakellm + ibex) or probes a remote target,
// turns every selected check into a node:test test, gives each check a context (clients,
// dedicated processes, cleanup), decides SKIP only for absent dependencies, and writes the
// report.
//
// A check is {id, title, needs: [...], shared: bool, timeoutMs, run(ctx)}. needs:
//   'fakellm'  the shared fakellm upstream and its control routes (local mode only)
//   'process'  spawning dedicated ibex instances, reading the gateway's stderr (local mode only)
//   'sdk'      the openai npm package
//   'raw'      raw sockets to the target (plain http:// only)
//   'admin'    the dev admin key and dev agent of an ibex the runner started (local mode only):
//              checks that create tenants, agents and keys of their own
// shared: false when the check uses only dedicated instances (default true).
//
// Authentication: every ibex the runner starts runs with --dev and a pinned dev admin key
// (IBEX_DEV_TOKEN = apiKey, scope admin) and dev agent (IBEX_DEV_AGENT_ID = devAgentId); the SDK
// clients and ctx.request send that key unless told otherwise. With --base-url the key is
// --api-key (or $IBEX_API_KEY) and no dev agent is known.
//
// Invariants: checks run one at a time, in registration order. Whatever a check starts (sockets,
// processes, deferred cleanups) is released before the next one begins, also when it fails or
// times out. A sanitizer report or a dead shared process found after a check fails that check.
import { test } from 'node:test';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ibexProcess, fakellmProcess, ibexBin, fakellmBin, isExecutable, describeExit, installExitHooks } from './proc.mjs';
import { request, parseTarget, setConnTracker } from './http.mjs';
import { FakellmClient } from './fakellm.mjs';
import { loadSdk, makeClient } from './sdk.mjs';
import { Report } from './report.mjs';
import { SkipError, TimeoutError, firstLine, matchesAny, randomToken, withTimeout, now } from './util.mjs';
import { API_KEY_RE, randomApiKey, bearer } from './ibexadmin.mjs';
import { randomUUID } from 'node:crypto';

const TAIL_LINES = 40;

export class Harness {
    // opts: {baseUrl, apiKey, reportDir, only: [patterns], skip: [patterns]}
    constructor(opts) {
        this.opts = opts;
        this.remote = Boolean(opts.baseUrl);
        this.logDir = path.join(opts.reportDir, 'logs');
        if (this.remote) {
            this.apiKey = opts.apiKey || process.env.IBEX_API_KEY || randomToken('e2e-client-key');
            this.devAgentId = null;
        } else {
            // the dev admin key of every ibex the runner starts: an --api-key of the right form, else a fresh one
            this.apiKey = opts.apiKey && API_KEY_RE.test(opts.apiKey) ? opts.apiKey : randomApiKey();
            this.devAgentId = randomUUID();
        }
        this.providerKey = randomToken('e2e-provider-key');
        this.sdk = null;
        this.fakellmProc = null;
        this.ibexProc = null;
        this.sharedError = null; // why the shared ibex is unusable (a failure, not a skip)
        this.fakellmError = null;
        this.sharedRestarts = 0;
        this.target = null; // {host, port, prefix} for raw sockets, or null (https)
        this.baseUrl = null;
        this.registered = 0;
        this.finished = 0;
        this.tornDown = false;
        this.sharedStopped = false;
        this.current = null; // id of the running check
    }

    async setup() {
        fs.mkdirSync(this.logDir, { recursive: true });
        // logs of an earlier run (only the files this runner names: NN-name.std{out,err}.log)
        for (const f of fs.readdirSync(this.logDir))
            if (/^\d+-.*\.std(out|err)\.log$/.test(f)) fs.rmSync(path.join(this.logDir, f), { force: true });
        // and their stores: every run starts from empty ones (--dev bootstraps a fresh dev tenant)
        for (const f of fs.readdirSync(this.logDir))
            if (/\.db(-wal|-shm|-journal)?$/.test(f)) fs.rmSync(path.join(this.logDir, f), { force: true });
        this.sdk = await loadSdk();
        this.report = new Report(this.opts.reportDir, this.metadata());
        installExitHooks(() => {
            // ctrl-C: keep what ran so far
            try {
                this.report.meta.interrupted_during = this.current;
                this.report.write({ interrupted: true });
            } catch {
                /* nothing left to do on the way out */
            }
        });

        if (this.remote) {
            this.baseUrl = this.opts.baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
            this.target = parseTarget(this.baseUrl);
            try {
                const res = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(5000) });
                if (res.status !== 200) this.sharedError = `GET ${this.baseUrl}/health answered ${res.status}`;
            } catch (e) {
                this.sharedError = `GET ${this.baseUrl}/health failed: ${e.cause?.code || e.message}`;
            }
        } else {
            this.ibexPath = ibexBin();
            this.fakellmPath = fakellmBin();
            this.ibexPresent = isExecutable(this.ibexPath);
            this.fakellmPresent = isExecutable(this.fakellmPath);
            if (this.fakellmPresent) {
                try {
                    this.fakellmProc = await fakellmProcess({ name: 'fakellm-shared', logDir: this.logDir }).start();
                } catch (e) {
                    this.fakellmError = `shared fakellm failed to start: ${e.message}`;
                }
            }
            if (this.ibexPresent) await this.startSharedIbex();
        }
        await this.readVersion();
    }

    sharedIbexSettings() {
        return { workers: 2, forward_headers: 'x-fakellm-*' };
    }

    async startSharedIbex() {
        const upstream = this.fakellmProc?.alive ? `${this.fakellmProc.url}/v1` : null;
        this.ibexProc = ibexProcess({
            name: this.sharedRestarts ? `ibex-shared-restart${this.sharedRestarts}` : 'ibex-shared',
            logDir: this.logDir,
            settings: this.sharedIbexSettings(),
            upstream,
            providerKey: this.providerKey,
            dev: this.dev,
        });
        try {
            await this.ibexProc.start();
            this.sharedError = null;
            this.baseUrl = this.ibexProc.url;
            this.target = this.ibexProc.target;
        } catch (e) {
            this.sharedError = `shared ibex failed to start: ${e.message}`;
        }
    }

    // What ibexProcess needs for --dev: the pinned dev admin key and dev agent.
    get dev() {
        return { token: this.apiKey, agentId: this.devAgentId };
    }

    async readVersion() {
        if (!this.baseUrl || this.sharedError) return;
        try {
            const res = await fetch(`${this.baseUrl}/status`, { signal: AbortSignal.timeout(3000) });
            const j = await res.json();
            this.report.meta.ibex_version = j.version ?? null;
        } catch {
            /* metadata only; ops.status checks the route */
        }
    }

    metadata() {
        let commit = null;
        try {
            commit = execFileSync('git', ['rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
        } catch {
            /* not a git checkout, or no commit yet */
        }
        return {
            mode: this.remote ? 'remote' : 'local',
            target: this.opts.baseUrl || null,
            ibex_bin: this.remote ? null : ibexBin(),
            fakellm_bin: this.remote ? null : fakellmBin(),
            ibex_version: null,
            git_commit: commit,
            node_version: process.version,
            openai_sdk_version: this.sdk?.version ?? null,
            host: { platform: `${os.platform()} ${os.release()}`, cpus: os.cpus().length },
            argv: process.argv.slice(2),
            filters: { only: this.opts.only, skip: this.opts.skip },
            log_dir: this.logDir,
        };
    }

    select(checks) {
        return checks.filter(
            (c) => (this.opts.only.length === 0 || matchesAny(c.id, this.opts.only)) && !matchesAny(c.id, this.opts.skip),
        );
    }

    register(checks) {
        this.registered = checks.length;
        for (const check of checks) test(check.id, (t) => this.runOne(t, check));
    }

    // Why check cannot run here, or null.
    unmet(check) {
        const needs = check.needs || [];
        if (!this.remote && !this.ibexPresent)
            return `ibex binary not found at ${this.ibexPath} (run make, or set IBEX_BIN)`;
        if (needs.includes('sdk') && this.sdk.error) return this.sdk.error;
        if (needs.includes('fakellm')) {
            if (this.remote) return 'needs fakellm as the upstream (not available with --base-url)';
            if (!this.fakellmPresent) return `fakellm binary not found at ${this.fakellmPath} (run make, or set FAKELLM_BIN)`;
        }
        if (needs.includes('process') && this.remote) return 'needs process control of ibex (not available with --base-url)';
        if (needs.includes('admin') && this.remote)
            return 'needs the dev admin key and dev agent of an ibex the runner started (not available with --base-url)';
        if (needs.includes('raw') && !this.target) return `raw socket checks need a plain http:// target, got ${this.opts.baseUrl}`;
        return null;
    }

    async runOne(t, check) {
        const t0 = now();
        const entry = { id: check.id, title: check.title || '', status: 'PASS', reason: '', duration_ms: 0 };
        const ctx = new CheckContext(this, check, t);
        this.current = check.id;
        try {
            const why = this.unmet(check);
            if (why) throw new SkipError(why);
            if (check.needs?.includes('fakellm')) {
                if (this.fakellmError) throw new Error(this.fakellmError);
                if (!this.fakellmProc.alive) throw new Error(`the shared fakellm is not running (${describeExit(this.fakellmProc.exit)})`);
            }
            if (check.shared !== false) await this.ensureShared();
            ctx.markLogs();
            setConnTracker((c) => ctx.conns.add(c));
            const running = check.run(ctx);
            running.catch(() => {}); // a timed-out check keeps running until its sockets are destroyed
            await withTimeout(running, check.timeoutMs || 20000, `check ${check.id}`).catch((e) => {
                if (e instanceof TimeoutError) ctx.abort.abort(e);
                throw e;
            });
            const problems = await ctx.close({ failed: false });
            if (problems.length) throw new Error(problems.join('\n'));
        } catch (e) {
            // what the processes tell about the failure: a crash or a sanitizer report
            const extra = ctx.closed ? [] : await ctx.close({ failed: true }).catch((err) => [`cleanup: ${err.message}`]);
            if (e instanceof SkipError) {
                entry.status = 'SKIP';
                entry.reason = e.reason;
                t.skip(e.reason);
                return;
            }
            entry.status = 'FAIL';
            entry.reason = firstLine(e.message);
            entry.error = e.stack && !String(e.stack).startsWith('AssertionError') ? `${e.message}\n${stackTail(e)}` : e.message;
            if (extra.length) {
                entry.error += `\n\nalso found after the failure:\n${extra.join('\n')}`;
                for (const x of extra) for (const ln of x.split('\n').slice(0, 20)) t.diagnostic(ln);
            }
            entry.logs = ctx.tails();
            for (const l of entry.logs) {
                t.diagnostic(`stderr of ${l.name} (${l.path}), last lines:`);
                for (const ln of l.tail.split('\n').slice(-15)) t.diagnostic(`  ${ln}`);
            }
            throw e;
        } finally {
            setConnTracker(null);
            this.current = null;
            entry.duration_ms = Math.round(now() - t0);
            if (ctx.notes.length) entry.notes = ctx.notes;
            this.report.add(entry);
            if (++this.finished === this.registered) await this.teardown();
        }
    }

    // Restarts the shared ibex when an earlier check left it dead (that check already failed for
    // it), so one crash does not fail every later check.
    async ensureShared() {
        if (this.sharedError) throw new Error(this.sharedError);
        if (this.remote) return;
        if (this.sharedStopped) throw new Error('the shared ibex was already stopped by drain.shared-exit');
        if (!this.ibexProc.alive) {
            this.sharedRestarts++;
            await this.startSharedIbex();
            if (this.sharedError) throw new Error(this.sharedError);
        }
    }

    // Stops the shared processes (SIGTERM, then SIGKILL), reports what they left in stderr and
    // writes the report. Returns a list of problems.
    async stopShared() {
        const problems = [];
        this.sharedStopped = true;
        for (const p of [this.ibexProc, this.fakellmProc]) {
            if (!p || !p.proc) continue;
            const wasAlive = p.alive;
            const r = await p.stop({ graceMs: 10000 });
            if (wasAlive && p === this.ibexProc && (r.killed || r.code !== 0))
                problems.push(`${p.name}: SIGTERM did not end it cleanly (${r.killed ? 'needed SIGKILL' : describeExit(r)})`);
            const san = p.sanitizerReport(p.reportedUpTo || 0);
            if (san) problems.push(`${p.name}: sanitizer report in stderr (${p.stderrPath}):\n${san}`);
        }
        return problems;
    }

    async teardown() {
        if (this.tornDown) return;
        this.tornDown = true;
        if (!this.remote && !this.sharedStopped) {
            const problems = await this.stopShared();
            for (const p of problems) {
                this.report.problems.push(p);
                process.stderr.write(`e2e: problem found at teardown: ${p}\n`);
                process.exitCode = 1;
            }
        }
        const file = this.report.write();
        const s = this.report.summary();
        process.stderr.write(`e2e: ${s.pass} pass, ${s.fail} fail, ${s.skip} skip; report: ${file}\n`);
    }
}

function stackTail(e) {
    return String(e.stack || '')
        .split('\n')
        .filter((l) => /^\s+at /.test(l))
        .slice(0, 6)
        .join('\n');
}

export class CheckContext {
    constructor(harness, check, t) {
        this.h = harness;
        this.check = check;
        this.t = t;
        this.id = check.id;
        this.abort = new AbortController();
        this.signal = this.abort.signal;
        this.conns = new Set();
        this.procs = []; // dedicated processes
        this.deferred = [];
        this.notes = [];
        this.closed = false;
        this.marks = new Map(); // shared process -> stderr offset at check start
    }

    get remote() {
        return this.h.remote;
    }

    // The key the clients send: the dev admin key (scope admin) in local mode.
    get apiKey() {
        return this.h.apiKey;
    }

    // The dev agent's id (IBEX_DEV_AGENT_ID) in local mode, else null.
    get devAgentId() {
        return this.h.devAgentId;
    }

    // {Authorization: 'Bearer <apiKey>'} for raw requests.
    get authHeaders() {
        return bearer(this.apiKey);
    }

    get providerKey() {
        return this.h.providerKey;
    }

    get sdk() {
        return this.h.sdk;
    }

    // The gateway under test: the shared ibex, or the --base-url deployment.
    get baseUrl() {
        return this.h.baseUrl;
    }

    get target() {
        return this.h.target;
    }

    get sharedIbex() {
        return this.h.ibexProc;
    }

    get fakellm() {
        return this.h.fakellmProc?.alive ? new FakellmClient(this.h.fakellmProc.target) : null;
    }

    // The upstream URL a dedicated ibex uses to reach the shared fakellm.
    get fakellmUpstream() {
        return `${this.h.fakellmProc.url}/v1`;
    }

    // Stderr written by the shared ibex since this check began.
    sharedIbexLog() {
        return this.sharedIbex ? this.sharedIbex.stderrText(this.marks.get(this.sharedIbex) || 0) : '';
    }

    note(msg) {
        this.notes.push(msg);
        this.t.diagnostic(`${this.id}: ${msg}`);
    }

    defer(fn) {
        this.deferred.push(fn);
    }

    // An SDK client of the shared gateway (or of baseUrl when given).
    client({ baseUrl = this.baseUrl, apiKey = this.apiKey, headers = {}, timeoutMs } = {}) {
        return makeClient(this.sdk, { baseUrl, apiKey, headers, timeoutMs: timeoutMs || this.check.timeoutMs || 20000 });
    }

    // GET/POST on the gateway over a fresh raw connection. Sends Authorization: Bearer <apiKey>
    // unless the headers carry an Authorization already or opts.auth is false; opts.apiKey sends
    // another key.
    request(path, opts = {}) {
        const { auth = true, apiKey = this.apiKey, ...rest } = opts;
        let headers = rest.headers || {};
        const list = Array.isArray(headers) ? headers : Object.entries(headers);
        if (auth && !list.some(([k]) => k.toLowerCase() === 'authorization'))
            headers = Array.isArray(headers) ? [...headers, ['Authorization', `Bearer ${apiKey}`]] : { ...headers, ...bearer(apiKey) };
        return request(rest.target || this.target, { path, ...rest, headers });
    }

    // A dedicated ibex for this check, stopped (SIGTERM; must exit 0) when the check ends.
    // upstream: 'fakellm' (the shared one), null (no provider: only the mock model), or a URL.
    // It runs with --dev and the harness's dev key and agent unless dev is false.
    async ibex({ name, settings = {}, upstream = 'fakellm', env = {}, workers = 1, dev = true } = {}) {
        if (upstream === 'fakellm') {
            if (!this.h.fakellmProc?.alive) throw new Error(this.h.fakellmError || 'shared fakellm is not running');
            upstream = this.fakellmUpstream;
        }
        const p = ibexProcess({
            name: `ibex-${name || this.id}`,
            logDir: this.h.logDir,
            settings: { workers, forward_headers: 'x-fakellm-*', ...settings },
            upstream,
            providerKey: this.providerKey,
            env,
            dev: dev ? this.h.dev : null,
        });
        p.dedicated = true;
        this.procs.push(p);
        await p.start();
        return p;
    }

    // A dedicated fakellm for this check.
    async fakellmServer({ name, args = [] } = {}) {
        const p = fakellmProcess({ name: `fakellm-${name || this.id}`, logDir: this.h.logDir, args });
        this.procs.push(p);
        await p.start();
        return p;
    }

    markLogs() {
        for (const p of [this.h.ibexProc, this.h.fakellmProc]) if (p) this.marks.set(p, p.stderrSize());
    }

    tails() {
        const out = [];
        for (const [p, from] of this.marks) out.push({ name: p.name, path: p.stderrPath, tail: p.stderrTail(TAIL_LINES, from) });
        for (const p of this.procs) if (p.stderrPath) out.push({ name: p.name, path: p.stderrPath, tail: p.stderrTail(TAIL_LINES) });
        return out;
    }

    // Releases everything; returns problems that fail an otherwise passing check.
    async close({ failed }) {
        this.closed = true;
        const problems = [];
        for (const c of this.conns) c.destroy();
        for (const fn of this.deferred.reverse()) {
            try {
                await fn();
            } catch (e) {
                if (!failed) problems.push(`cleanup: ${e.message}`);
            }
        }
        for (const p of this.procs) {
            if (!p.proc) continue;
            const wasAlive = p.alive;
            if (failed && !wasAlive && p.exit && (p.exit.code !== 0 || p.exit.signal))
                problems.push(`${p.name} exited during the check (${describeExit(p.exit)})`);
            const r = await p.stop({ graceMs: failed ? 2000 : 10000 });
            if (!failed && p.dedicated && wasAlive && (r.killed || r.code !== 0))
                problems.push(`${p.name}: SIGTERM did not end it cleanly after the check (${r.killed ? 'still running after 10 s, needed SIGKILL' : describeExit(r)})`);
            const san = p.sanitizerReport();
            if (san) problems.push(`${p.name}: sanitizer report in stderr (${p.stderrPath}):\n${san}`);
        }
        for (const p of this.marks.keys()) {
            const san = p.sanitizerReport(p.reportedUpTo || 0);
            if (san) problems.push(`${p.name}: sanitizer report in stderr, new since the previous check (${p.stderrPath}):\n${san}`);
            p.reportedUpTo = p.stderrSize();
            if (!p.alive && !this.h.sharedStopped)
                problems.push(`${p.name} died during this check (${describeExit(p.exit)})`);
        }
        return problems;
    }
}
