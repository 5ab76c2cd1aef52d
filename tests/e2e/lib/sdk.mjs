// The official openai SDK, loaded lazily so that a missing node_modules makes the SDK checks SKIP
// (with the command that fixes it) instead of crashing the runner; plus the assertion used by
// every error check.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { E2E_DIR, truncate } from './util.mjs';

let loaded = null;

// {OpenAI, APIError, version} or {error: reason}
export async function loadSdk() {
    if (loaded) return loaded;
    try {
        const mod = await import('openai');
        let version = null;
        try {
            version = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'node_modules/openai/package.json'), 'utf8')).version;
        } catch {
            /* version is metadata only */
        }
        loaded = { OpenAI: mod.OpenAI || mod.default, APIError: mod.APIError, version };
    } catch (e) {
        loaded = { error: `openai SDK not installed (${e.code || e.message}); run: npm ci --prefix tests/e2e` };
    }
    return loaded;
}

// A client of the gateway at baseUrl (its root; /v1 is appended). No retries: every check wants
// to see the first answer.
export function makeClient(sdk, { baseUrl, apiKey, headers = {}, timeoutMs = 30000 }) {
    return new sdk.OpenAI({
        baseURL: `${baseUrl}/v1`,
        apiKey,
        maxRetries: 0,
        timeout: timeoutMs,
        defaultHeaders: headers,
    });
}

// Awaits fn() and asserts it threw an SDK APIError with the given status and error code.
// Returns the error for further assertions.
export async function expectApiError(sdk, fn, { status, code, what = 'the request' }) {
    let err = null;
    let value;
    try {
        value = await fn();
    } catch (e) {
        err = e;
    }
    if (!err) assert.fail(`${what}: expected APIError ${status ?? ''} ${code}, but it succeeded: ${truncate(JSON.stringify(value), 300)}`);
    if (!(err instanceof sdk.APIError)) {
        assert.fail(`${what}: expected APIError ${status ?? ''} ${code}, got ${err.name}: ${err.message}`);
    }
    const desc = `status=${err.status} code=${err.code} message=${JSON.stringify(err.message)} body=${truncate(JSON.stringify(err.error), 400)}`;
    if (status !== undefined) assert.equal(err.status, status, `${what}: wrong HTTP status (${desc})`);
    if (code !== undefined) assert.equal(err.code, code, `${what}: wrong error code (${desc})`);
    return err;
}
