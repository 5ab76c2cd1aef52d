-- 0002_identity_epoch: what revocation watches (issue 3), and tenants created by tenants.
--
-- identity_epoch has one row. Every change that must reach other instances' credential and agent
-- caches (a key revoked, an agent changed or revoked, a tenant revoked) adds one to it in the
-- same transaction; instances poll it, and Redis (when configured) broadcasts the new value.

CREATE TABLE identity_epoch (
    id INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO identity_epoch (id, epoch) VALUES (1, 0);

-- A tenant created through the API by another tenant's admin key is that tenant's child: the
-- parent may list and revoke it, and sees none of its agents, keys or data.
ALTER TABLE tenants ADD COLUMN parent_id TEXT;
CREATE INDEX tenants_parent ON tenants (parent_id, created_at);
ALTER TABLE agents ADD COLUMN updated_at BIGINT;
