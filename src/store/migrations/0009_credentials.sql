-- 0009_credentials: bring-your-own-model provider credentials, encrypted at rest (issue 5, item 4;
-- docs/credentials.md). Every index below serves a statement of src/api/credentials.c or
-- src/auth/credential.c; each tenant-scoped statement filters by tenant_id first.
--
-- subject: NULL for a tenant-wide credential, else the subject that owns it (a key id, a token
-- subject, a JWT sub). provider: the name of a configured provider. ciphertext: AES-256-GCM of
-- the secret with its tag appended, under the master key named by key_id, with nonce, and bound
-- (AAD) to (tenant_id, id); all three are NULL once the credential is deleted. last4: the last
-- four characters of the secret, what answers show. state: active, inactive, deleted. version:
-- +1 on every change of the row except a re-encryption under a new key (the plaintext does not
-- change then), so (id, version) names one plaintext for the decrypt cache.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject TEXT,
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    ciphertext BYTEA,
    nonce BYTEA,
    key_id TEXT,
    last4 TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
-- GET /v1/credentials: a subject's own, and the tenant-wide ones (subject IS NULL), newest first.
CREATE INDEX credentials_owner ON credentials (tenant_id, subject, created_at);
-- The same filtered by provider, and the resolution of a subject's own credential for a provider.
CREATE INDEX credentials_owner_provider ON credentials (tenant_id, subject, provider, created_at);
-- At most one default per provider among a tenant's live tenant-wide credentials, and one per
-- provider among each subject's own; the resolution of the tenant default reads the first.
CREATE UNIQUE INDEX credentials_tenant_default ON credentials (tenant_id, provider)
    WHERE is_default = 1 AND subject IS NULL AND state <> 'deleted';
CREATE UNIQUE INDEX credentials_subject_default ON credentials (tenant_id, subject, provider)
    WHERE is_default = 1 AND subject IS NOT NULL AND state <> 'deleted';
-- ibex credentials rotate-key: the rows under one master key, in id order, in batches.
CREATE INDEX credentials_key ON credentials (key_id, id);
