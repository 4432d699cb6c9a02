-- The tenant an idempotent answer belongs to (NULL: none named), so that
-- erasing a data subject can withdraw every kept answer of their tenant
-- (a kept GraphQL answer may hold the subject's personal data).
ALTER TABLE idempotency_keys ADD COLUMN tenant_id UUID;
CREATE INDEX idempotency_keys_tenant ON idempotency_keys (tenant_id)
    WHERE tenant_id IS NOT NULL AND response IS NOT NULL;
