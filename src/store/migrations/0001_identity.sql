-- 0001_identity: tenants, agents, API keys and the audit trail (issue 3).
-- Portable SQL for SQLite and Postgres: TEXT ids, BIGINT unix-millisecond timestamps, JSON as
-- TEXT. NULL *_at means "not yet" (not disabled, never expires, not revoked).

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    directive TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at);

-- A key is shown once; only its SHA-256 (hex) is kept. prefix is the lookup handle taken from
-- the key itself, last4 what listings show.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL DEFAULT '[]',
    agent_ids TEXT,
    last4 TEXT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
-- The revocation poll asks "revoked since T?".
CREATE INDEX api_keys_revoked ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;

-- Written through the store writer. tenant_id has no foreign key: a failed authentication may
-- name no tenant, and an audit record must never be refused for it.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    request_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, created_at);
CREATE INDEX audit_events_created ON audit_events (created_at);
