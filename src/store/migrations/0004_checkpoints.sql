-- 0004_checkpoints: one checkpoint per chat turn of a session (issue 4, docs/sessions.md),
-- written through the store writer when the response is complete. request is the JSON body
-- sent upstream (the agent's directive injected); content, tool_calls (a JSON array) and
-- finish_reason are what the model answered, assembled from the stream when streaming. Times in
-- microseconds; NULL tokens: the provider did not report usage.

CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    agent_id TEXT,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    code TEXT,
    request TEXT NOT NULL,
    content TEXT,
    tool_calls TEXT,
    finish_reason TEXT,
    truncated INTEGER NOT NULL,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    total_tokens BIGINT,
    duration_us BIGINT NOT NULL,
    upstream_us BIGINT,
    ttft_us BIGINT,
    created_at BIGINT NOT NULL
);
-- GET /v1/sessions/{id}/checkpoints: a session's turns in order
CREATE INDEX checkpoints_session ON checkpoints (tenant_id, session_id, created_at);
