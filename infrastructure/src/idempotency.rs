//! Client idempotency keys (the IETF httpapi `Idempotency-Key` header):
//! the first request with a key in a scope is run and its answer kept; a
//! retry with the same key and the same request gets that answer again and
//! runs nothing; the same key with another request is refused. Kept in the
//! database, so every instance answers alike, for [`KEY_LIFETIME_MICROS`].
//!
//! Answers can hold secrets (tokens, API keys) and personal data, so they
//! are kept sealed (AES-256-GCM under a key derived from the master key,
//! bound to their scope), and only for a day at most. The digest of a
//! request is kept only as an HMAC under another derived key: a request may
//! hold a password, and a bare digest would let whoever reads the table
//! test guesses at hash speed.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodia_application::StoreError;
use custodia_domain::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteSynchronous;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::pools::{on_pool, Pools};
use crate::vault::{open_bytes, seal_bytes, MasterKey, MasterKeys, NONCE_LEN};

/// How long a key is remembered at most: a retry later than this runs
/// again. (Each caller of [`IdempotencyKeys::claim`] names its own, up to this.)
pub const KEY_LIFETIME_MICROS: i64 = 24 * 3_600_000_000;

/// How long a first request may run before a retry may take its place
/// (the instance that ran it may have stopped without answering).
pub const IN_PROGRESS_MICROS: i64 = 60_000_000;

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Run it. `first_seen` names this use of the key (the same for a
    /// retry that takes over from a first request that never answered).
    Run { first_seen: Timestamp },
    /// Answered already: send this again.
    Replay(StoredResponse),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for another request.
    Mismatch,
}

/// What a retry gets once its answer was withdrawn
/// ([`IdempotencyKeys::withdraw_tenant`]): a GraphQL-shaped 409.
pub fn withdrawn() -> StoredResponse {
    let body = serde_json::json!({ "errors": [{
        "message": "this request was carried out; its answer was withdrawn when a data subject of the tenant was erased",
        "extensions": { "code": "ANSWER_WITHDRAWN" },
    }]});
    StoredResponse {
        status: 409,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: body.to_string().into_bytes(),
    }
}

/// An answer as it is replayed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers that are part of the answer (content type, cookies).
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_body")]
    pub body: Vec<u8>,
}

impl std::fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

mod base64_body {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// (answer key, request key), derived from one master key.
type DerivedKeys = (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

pub struct IdempotencyKeys {
    pools: Pools,
    /// (answer key, request key) per master key, the current one first:
    /// during a master-key rotation answers kept under the previous key
    /// still open.
    keys: Vec<DerivedKeys>,
    claims: AtomicU64,
}

impl std::fmt::Debug for IdempotencyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyKeys").finish_non_exhaustive()
    }
}

/// Expired rows are deleted once per this many claims.
const SWEEP_EVERY: u64 = 512;

impl IdempotencyKeys {
    pub async fn connect(url: &str, masters: &MasterKeys) -> Result<Self, StoreError> {
        let derived = |master: &MasterKey| {
            (
                master.derive(b"custodia.idempotency-responses.v1"),
                master.derive(b"custodia.idempotency-requests.v1"),
            )
        };
        Ok(Self {
            pools: Pools::connect(url, SqliteSynchronous::Full, 2, 4).await?,
            keys: std::iter::once(masters.current())
                .chain(masters.previous())
                .map(derived)
                .collect(),
            claims: AtomicU64::new(0),
        })
    }

    /// Claims `scope` (in `tenant`, if the request names one) for a request
    /// whose digest is `request`; a claim older than `lifetime`
    /// (microseconds, at most [`KEY_LIFETIME_MICROS`]) is forgotten.
    pub async fn claim(
        &self,
        scope: &[u8; 32],
        tenant: Option<Uuid>,
        request: &[u8; 32],
        now: Timestamp,
        lifetime: i64,
    ) -> Result<Claim, StoreError> {
        let lifetime = lifetime.min(KEY_LIFETIME_MICROS);
        let digests: Vec<[u8; 32]> = self
            .keys
            .iter()
            .map(|(_, request_key)| keyed(request_key, request))
            .collect();
        let request = &digests[0];
        if self.claims.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now).await?;
        }
        let insert = "INSERT INTO idempotency_keys (scope, request_sha256, first_seen, tenant_id) \
                      VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO NOTHING";
        let inserted = on_pool!(exec &self.pools, pool => sqlx::query(insert)
            .bind(&scope[..]).bind(&request[..]).bind(now.0).bind(tenant).execute(pool))?;
        if inserted == 1 {
            return Ok(Claim::Run { first_seen: now });
        }
        let select =
            "SELECT request_sha256, first_seen, response FROM idempotency_keys WHERE scope = $1";
        let row: Option<(Vec<u8>, i64, Option<Vec<u8>>)> = on_pool!(&self.pools, pool =>
            sqlx::query_as(select).bind(&scope[..]).fetch_optional(pool))?;
        let Some((seen_request, first_seen, response)) = row else {
            // Swept between the two statements: as good as in progress.
            return Ok(Claim::InProgress);
        };
        if first_seen < now.0 - lifetime {
            // Expired: this is a first use again (if no other retry won).
            let renew = "UPDATE idempotency_keys SET request_sha256 = $2, first_seen = $3, \
                         response = NULL WHERE scope = $1 AND first_seen = $4";
            let renewed = on_pool!(exec &self.pools, pool => sqlx::query(renew)
                .bind(&scope[..]).bind(&request[..]).bind(now.0).bind(first_seen).execute(pool))?;
            return Ok(if renewed == 1 {
                Claim::Run { first_seen: now }
            } else {
                Claim::InProgress
            });
        }
        if !digests
            .iter()
            .any(|d| seen_request.as_slice() == d.as_slice())
        {
            return Ok(Claim::Mismatch);
        }
        match response {
            // An answer no configured master key opens (kept under a
            // master key retired since): the request was carried out, its
            // answer is gone, as after an erasure.
            Some(sealed) => Ok(Claim::Replay(
                self.open(scope, &sealed).unwrap_or_else(|_| withdrawn()),
            )),
            None if first_seen < now.0 - IN_PROGRESS_MICROS => Ok(Claim::Run {
                first_seen: Timestamp(first_seen),
            }),
            None => Ok(Claim::InProgress),
        }
    }

    /// Keeps the answer to the request that claimed `scope`.
    pub async fn complete(
        &self,
        scope: &[u8; 32],
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let plain = Zeroizing::new(serde_json::to_vec(response).expect("responses serialise"));
        let (mut sealed, ciphertext) = seal_bytes(&self.keys[0].0, &plain, scope);
        sealed.extend_from_slice(&ciphertext);
        let sql = "UPDATE idempotency_keys SET response = $2 WHERE scope = $1";
        on_pool!(exec &self.pools, pool => sqlx::query(sql).bind(&scope[..]).bind(sealed).execute(pool))?;
        Ok(())
    }

    /// Replaces every kept answer of `tenant` with [`withdrawn`]: erasing a
    /// data subject calls it, since a kept answer may hold their personal
    /// data. A retry then learns that its request was carried out, not
    /// what it answered; it does not run again. Returns how many answers
    /// were withdrawn.
    pub async fn withdraw_tenant(&self, tenant: Uuid) -> Result<u64, StoreError> {
        let sql =
            "SELECT scope FROM idempotency_keys WHERE tenant_id = $1 AND response IS NOT NULL";
        let scopes: Vec<Vec<u8>> =
            on_pool!(&self.pools, pool => sqlx::query_scalar(sql).bind(tenant).fetch_all(pool))?;
        let answer = withdrawn();
        for scope in &scopes {
            let scope: [u8; 32] = scope
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::corrupt("an idempotency scope is not 32 bytes"))?;
            self.complete(&scope, &answer).await?;
        }
        Ok(scopes.len() as u64)
    }

    /// Forgets a claim whose request failed in a way a retry may not (a
    /// server error): the retry runs again.
    pub async fn release(&self, scope: &[u8; 32]) -> Result<(), StoreError> {
        let sql = "DELETE FROM idempotency_keys WHERE scope = $1 AND response IS NULL";
        on_pool!(exec &self.pools, pool => sqlx::query(sql).bind(&scope[..]).execute(pool))?;
        Ok(())
    }

    async fn sweep(&self, now: Timestamp) -> Result<(), StoreError> {
        let sql = "DELETE FROM idempotency_keys WHERE first_seen < $1";
        on_pool!(exec &self.pools, pool => sqlx::query(sql).bind(now.0 - KEY_LIFETIME_MICROS).execute(pool))?;
        Ok(())
    }

    fn open(&self, scope: &[u8; 32], sealed: &[u8]) -> Result<StoredResponse, StoreError> {
        let corrupt = || StoreError::corrupt("a kept idempotent answer does not open");
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let plain = self
            .keys
            .iter()
            .find_map(|(key, _)| {
                open_bytes(key, &sealed[..NONCE_LEN], &sealed[NONCE_LEN..], scope).ok()
            })
            .ok_or_else(corrupt)?;
        serde_json::from_slice(&plain).map_err(|_| corrupt())
    }
}

/// The request digest as it is kept: an HMAC under a derived key.
fn keyed(request_key: &[u8; 32], request: &[u8; 32]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(request_key.as_slice())
        .expect("HMAC takes any key length");
    mac.update(request);
    mac.finalize().into_bytes().into()
}
