-- 0005_idempotency: Idempotency-Key entries when no Redis is configured (issue 4, item 5;
-- src/api/idempotency.h). One row per (tenant, key): a claim while the first request runs
-- (state 'running', expires_at = its lease), then its response (state 'done', expires_at = the
-- TTL). A row past expires_at is dead: the next claim replaces it and the sweep deletes it.
-- token names the claim's owner, so a request whose lease was taken over cannot complete or
-- release the newer claim. fingerprint is the hex SHA-256 of the request. No foreign key to
-- tenants: the rows are short-lived and must never make a request fail.

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    content_type TEXT,
    headers TEXT,
    body BYTEA,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
