-- Rows by kind across tenants: the erasure events the server re-applies at
-- start-up (audit rows of type SubjectErased / TenantErased) and the
-- deleted users retention looks for, without reading every row.
CREATE INDEX read_models_by_kind ON read_models (model, kind, seq);
