-- Client idempotency keys (the Idempotency-Key header): one row per scope
-- (a digest of the endpoint, tenant, actor and key), the digest of the
-- request first sent with it, and once it is answered the answer, sealed
-- under a key derived from the master key. Rows expire after 24 hours.
CREATE TABLE idempotency_keys (
    scope           BLOB    PRIMARY KEY,
    request_sha256  BLOB    NOT NULL,
    first_seen      INTEGER NOT NULL,
    response        BLOB
) STRICT, WITHOUT ROWID;
