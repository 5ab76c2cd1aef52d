-- 0007_session_list_indexes: drops the two session indexes no query uses. The session list
-- filters state and agent with catch-all predicates ($2 = '' OR state = $2), which both stores
-- answer from sessions_tenant (tenant_id, created_at); every chat turn that starts a session
-- paid for two more index entries on the store writer (bench/RESULTS.md, issue 4).
DROP INDEX sessions_tenant_state;
DROP INDEX sessions_tenant_agent;
