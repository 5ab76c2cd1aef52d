-- 0006_tasks_approvals: agent tasks (phases, latest checkpoint, routing by role), human approvals
-- that gate them, and the views active_sessions and pending_approvals (issue 4; docs/tasks.md).
-- Every index below serves a statement of src/api/tasks.c or src/api/approvals.c; each
-- statement filters by tenant_id first.

-- An agent may have a role; POST /v1/tasks/route picks among the tenant's live agents of a role.
ALTER TABLE agents ADD COLUMN role TEXT;
CREATE INDEX agents_tenant_role ON agents (tenant_id, role);

-- state: pending, running, waiting_approval, completed, failed, cancelled. phases: the phases
-- declared at creation, in order, each {"name", "started_at", "ended_at"} (unix ms or null).
-- phase: the current (or last) phase. checkpoint: the JSON object the agent saved last.
-- approval_id: the pending approval the task waits on (state waiting_approval), else NULL.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    session_id TEXT,
    agent_id TEXT,
    agent_role TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    phases TEXT NOT NULL DEFAULT '[]',
    phase TEXT,
    checkpoint TEXT,
    checkpoint_at BIGINT,
    input TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    approval_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- GET /v1/tasks, unfiltered and by each filter, newest first.
CREATE INDEX tasks_tenant ON tasks (tenant_id, created_at);
CREATE INDEX tasks_tenant_state ON tasks (tenant_id, state, created_at);
CREATE INDEX tasks_tenant_agent ON tasks (tenant_id, agent_id, created_at);
CREATE INDEX tasks_tenant_role ON tasks (tenant_id, agent_role, created_at);
-- Routing counts each candidate agent's unfinished tasks; finished ones are left out of the index.
CREATE INDEX tasks_agent_load ON tasks (tenant_id, agent_id)
    WHERE state IN ('pending', 'running', 'waiting_approval');

-- state: pending, approved, rejected, expired (expires_at passed before a decision), cancelled
-- (its task was cancelled while waiting). requested_by / decided_by: the actors' subjects.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    task_id TEXT,
    session_id TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    reason TEXT,
    requested_by TEXT NOT NULL,
    decided_by TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    expires_at BIGINT
);
-- GET /v1/approvals, unfiltered and by state (state=pending goes through pending_approvals).
CREATE INDEX approvals_tenant ON approvals (tenant_id, created_at);
CREATE INDEX approvals_tenant_state ON approvals (tenant_id, state, created_at);
-- The expiry sweep that runs before each task and approval operation: pending ones past due.
CREATE INDEX approvals_expiry ON approvals (tenant_id, expires_at) WHERE state = 'pending';

CREATE VIEW active_sessions AS
    SELECT id, tenant_id, agent_id, agent_role, state, metadata, created_at, updated_at
    FROM sessions WHERE state IN ('pending', 'active');

CREATE VIEW pending_approvals AS
    SELECT id, tenant_id, task_id, session_id, action, detail, state, reason, requested_by,
           decided_by, created_at, decided_at, expires_at
    FROM approvals WHERE state = 'pending';
