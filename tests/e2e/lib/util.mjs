// Small helpers shared by the runner, the checks and the smoke test: timing, glob matching,
// polling, and the error type a check throws when a dependency is absent.
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const E2E_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');

export const sleep = (ms, signal) => sleepTimer(ms, undefined, signal ? { signal } : undefined);

export const now = () => performance.now();

// Thrown by a check (or the harness) when something the check needs is not there. It is the only
// way to SKIP a check; failures are plain errors.
export class SkipError extends Error {
    constructor(reason) {
        super(reason);
        this.name = 'SkipError';
        this.reason = reason;
    }
}

export class TimeoutError extends Error {
    constructor(message) {
        super(message);
        this.name = 'TimeoutError';
    }
}

// 'hostile.*' -> /^hostile\..*$/ ; a pattern without wildcards matches exactly.
export function globToRegExp(glob) {
    const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp(`^${re}$`);
}

export function splitPatterns(value) {
    if (!value) return [];
    return value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

export function matchesAny(id, patterns) {
    return patterns.some((p) => globToRegExp(p).test(id));
}

// Calls fn until it returns a truthy value or the deadline passes; returns the last value.
export async function pollUntil(fn, { timeoutMs = 3000, intervalMs = 50, signal } = {}) {
    const deadline = now() + timeoutMs;
    let last;
    for (;;) {
        last = await fn();
        if (last) return last;
        if (now() >= deadline) return last;
        await sleep(intervalMs, signal);
    }
}

// Resolves with p's value, or rejects with TimeoutError(what) after ms.
export function withTimeout(p, ms, what) {
    let timer;
    const t = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export function firstLine(s) {
    const str = String(s ?? '');
    const i = str.indexOf('\n');
    return i < 0 ? str : str.slice(0, i);
}

export function truncate(s, n = 300) {
    const str = String(s);
    return str.length <= n ? str : `${str.slice(0, n)}... (${str.length} chars)`;
}

export function randomToken(prefix) {
    return `${prefix}-${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}`;
}

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
