-- Client idempotency keys (the Idempotency-Key header): one row per scope
-- (a digest of the endpoint, tenant, actor and key), the digest of the
-- request first sent with it, and once it is answered the answer, sealed
-- under a key derived from the master key. Rows expire after 24 hours.
CREATE TABLE idempotency_keys (
    scope           BYTEA   PRIMARY KEY,
    request_sha256  BYTEA   NOT NULL,
    first_seen      BIGINT  NOT NULL,
    response        BYTEA
);
