// Assertions on ibex's error contract, shared by the SDK and raw-socket checks.
import assert from 'node:assert/strict';
import { errorOf } from './http.mjs';

// Asserts the inner error object ({message, type, code, param, request_id}) has the contract's
// shape and code. what names the case in failure messages.
export function assertErrorShape(e, { code, what = 'error body' } = {}) {
    const show = JSON.stringify(e);
    assert.ok(e && typeof e === 'object', `${what}: no error object (${show})`);
    if (code !== undefined) assert.equal(e.code, code, `${what}: error.code (${show})`);
    assert.equal(typeof e.message, 'string', `${what}: error.message must be a string (${show})`);
    assert.ok(e.message.length > 0, `${what}: error.message is empty (${show})`);
    assert.equal(typeof e.type, 'string', `${what}: error.type must be a string (${show})`);
    assert.ok('param' in e, `${what}: error.param missing (${show})`);
    assert.ok(e.param === null || typeof e.param === 'string', `${what}: error.param must be null or a string (${show})`);
    assert.equal(typeof e.request_id, 'string', `${what}: error.request_id must be a string (${show})`);
    assert.ok(e.request_id.length > 0, `${what}: error.request_id is empty (${show})`);
}

// Asserts a raw response is an error with status and code, whose request_id matches the
// X-Request-ID response header. Returns the inner error object.
// requireHeader: false for answers to malformed HTTP, where no request was parsed.
export function assertErrorResponse(res, { status, code, what = 'response', requireHeader = true }) {
    assert.equal(res.status, status, `${what}: expected HTTP ${status} ${code}, got ${res.describe()}`);
    const e = errorOf(res);
    assertErrorShape(e, { code, what });
    const rid = res.headers['x-request-id'];
    if (requireHeader) assert.ok(rid, `${what}: no X-Request-ID response header`);
    if (rid !== undefined) assert.equal(e.request_id, rid, `${what}: error.request_id differs from the X-Request-ID header`);
    return e;
}
