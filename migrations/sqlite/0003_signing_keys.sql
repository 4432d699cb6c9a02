-- Access-token signing keys, shared by every instance. The private key is
-- sealed (AES-256-GCM) under the master key; the public half is published
-- as JWKS. Retired keys stay published until their tokens have expired.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    algorithm    TEXT    NOT NULL,
    private_key  BLOB    NOT NULL,
    public_x     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER
) STRICT, WITHOUT ROWID;
