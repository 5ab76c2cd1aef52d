-- 0003_sessions_traces: sessions, and one trace per chat request that passed authentication
-- (issue 4). Traces are written through the store writer when the response is complete. Times
-- in microseconds; overhead is duration_us - upstream_us. NULL tokens: the provider did not
-- report usage.

CREATE TABLE traces (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    agent_id TEXT,
    session_id TEXT,
    model TEXT,
    provider TEXT,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    code TEXT,
    duration_us BIGINT NOT NULL,
    upstream_us BIGINT,
    ttft_us BIGINT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    total_tokens BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX traces_tenant ON traces (tenant_id, created_at);

-- A session groups the turns of one agent's task. state: pending, active, completed, failed,
-- cancelled (docs/sessions.md).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    agent_id TEXT,
    agent_role TEXT NOT NULL,
    state TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sessions_tenant ON sessions (tenant_id, created_at);
CREATE INDEX sessions_tenant_state ON sessions (tenant_id, state, created_at);
CREATE INDEX sessions_tenant_agent ON sessions (tenant_id, agent_id, created_at);
