-- 0010_drop_traces_tenant: drops the traces index no query reads. GET /v1/traces/{id} finds a
-- trace by its primary key (and checks its tenant); nothing lists a tenant's traces by time yet.
-- Every recorded turn paid for the entry on the store writer: about 4.8k instructions of the
-- three INSERTs' 56k on SQLite (bench/RESULTS.md, issue 4). A trace listing brings back the
-- index its query needs.
DROP INDEX traces_tenant;
