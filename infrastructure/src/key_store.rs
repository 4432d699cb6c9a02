//! The key store's tables (ADR 0011): tenant, subject, access-data and
//! signing keys, in a database of their own (by default on SQLite a second
//! file beside the log) or in the log's. The SQL is the same on both
//! backends. This module stores and moves wrapped keys; it never sees a key
//! in the clear (`vault.rs` wraps and unwraps them).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodia_application::StoreError;
use custodia_domain::{TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteSynchronous;
use uuid::Uuid;

use crate::migrations;
use crate::pools::{on_pool, Pools};

/// A key as stored.
#[derive(Debug)]
pub(crate) enum Slot {
    Missing,
    /// Wrapped, and by which master key (`None` for the tenant, subject and
    /// access keys wrapped under a tenant key, and for rows older than
    /// master-key ids).
    Wrapped {
        wrapped: Vec<u8>,
        master: Option<String>,
    },
    Erased,
}

/// (wrapped, erased at, master key id)
type SlotRow = (Option<Vec<u8>>, Option<i64>, Option<String>);

fn slot(row: Option<SlotRow>) -> Slot {
    match row {
        None => Slot::Missing,
        Some((Some(wrapped), None, master)) => Slot::Wrapped { wrapped, master },
        Some(_) => Slot::Erased,
    }
}

/// Every row of a key store, as `custodia keys backup` writes it and
/// `custodia keys restore` reads it. Wrapped keys only: without the master
/// key a backup opens nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRows {
    pub tenant_keys: Vec<TenantKeyRow>,
    pub subject_keys: Vec<SubjectKeyRow>,
    pub access_keys: Vec<AccessKeyRow>,
    pub signing_keys: Vec<SigningKeyRow>,
    #[serde(default)]
    pub checkpoint_keys: Vec<CheckpointKeyRow>,
}

impl KeyRows {
    pub fn len(&self) -> usize {
        self.tenant_keys.len()
            + self.subject_keys.len()
            + self.access_keys.len()
            + self.signing_keys.len()
            + self.checkpoint_keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns into tombstones (erased at `at`) the keys the three tests
    /// name: a subject key by (tenant, subject), every key of a tenant, an
    /// access key by (tenant, day). Returns how many rows changed. A
    /// restore applies it before it writes anything, so that a key the log
    /// says is destroyed is never readable, not even for a moment.
    pub fn tombstone(
        &mut self,
        subject: impl Fn(Uuid, Uuid) -> bool,
        tenant: impl Fn(Uuid) -> bool,
        access: impl Fn(Uuid, &str) -> bool,
        at: i64,
    ) -> usize {
        let mut changed = 0;
        let mut bury = |wrapped: &mut Option<Vec<u8>>, erased_at: &mut Option<i64>| {
            if wrapped.take().is_some() {
                *erased_at = Some(at);
                changed += 1;
            }
        };
        for row in &mut self.tenant_keys {
            if tenant(row.tenant_id) {
                bury(&mut row.wrapped, &mut row.erased_at);
                row.master_key_id = None;
            }
        }
        for row in &mut self.subject_keys {
            if tenant(row.tenant_id) || subject(row.tenant_id, row.subject_id) {
                bury(&mut row.wrapped, &mut row.erased_at);
            }
        }
        for row in &mut self.access_keys {
            if tenant(row.tenant_id) || access(row.tenant_id, &row.day) {
                bury(&mut row.wrapped, &mut row.erased_at);
            }
        }
        changed
    }

    /// How many keys of these rows `store` holds wrapped differently (made
    /// anew after the store was lost: the data sealed under these rows'
    /// keys does not open with them).
    pub fn differing(&self, store: &KeyRows) -> usize {
        use std::collections::HashMap;
        let tenants: HashMap<Uuid, &Option<Vec<u8>>> = store
            .tenant_keys
            .iter()
            .map(|row| (row.tenant_id, &row.wrapped))
            .collect();
        let subjects: HashMap<(Uuid, Uuid), &Option<Vec<u8>>> = store
            .subject_keys
            .iter()
            .map(|row| ((row.tenant_id, row.subject_id), &row.wrapped))
            .collect();
        let days: HashMap<(Uuid, &str), &Option<Vec<u8>>> = store
            .access_keys
            .iter()
            .map(|row| ((row.tenant_id, row.day.as_str()), &row.wrapped))
            .collect();
        let differs = |mine: &Option<Vec<u8>>, theirs: Option<&&Option<Vec<u8>>>| matches!((mine, theirs), (Some(mine), Some(Some(theirs))) if mine != theirs);
        self.tenant_keys
            .iter()
            .filter(|row| differs(&row.wrapped, tenants.get(&row.tenant_id)))
            .count()
            + self
                .subject_keys
                .iter()
                .filter(|row| differs(&row.wrapped, subjects.get(&(row.tenant_id, row.subject_id))))
                .count()
            + self
                .access_keys
                .iter()
                .filter(|row| differs(&row.wrapped, days.get(&(row.tenant_id, row.day.as_str()))))
                .count()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKeyRow {
    pub tenant_id: Uuid,
    #[serde(with = "optional_base64")]
    pub wrapped: Option<Vec<u8>>,
    pub created_at: i64,
    pub erased_at: Option<i64>,
    pub master_key_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectKeyRow {
    pub tenant_id: Uuid,
    pub subject_id: Uuid,
    #[serde(with = "optional_base64")]
    pub wrapped: Option<Vec<u8>>,
    pub created_at: i64,
    pub erased_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyRow {
    pub tenant_id: Uuid,
    pub day: String,
    #[serde(with = "optional_base64")]
    pub wrapped: Option<Vec<u8>>,
    pub created_at: i64,
    pub erased_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    #[serde(with = "optional_base64")]
    pub private_key: Option<Vec<u8>>,
    pub public_x: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub master_key_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointKeyRow {
    pub verifier: String,
    #[serde(with = "optional_base64")]
    pub sealed_seed: Option<Vec<u8>>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub master_key_id: Option<String>,
}

mod optional_base64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        bytes.as_ref().map(|b| B64.encode(b)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| B64.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Rows per statement when many are written at once.
const CHUNK: usize = 200;

/// Where wrapped keys live.
#[derive(Debug, Clone)]
pub(crate) struct KeyTables(Pools);

impl KeyTables {
    /// Opens the key store at `url` (a missing SQLite file is made) and
    /// brings its schema up to date.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let pools = Pools::connect(url, SqliteSynchronous::Full, 2, 4).await?;
        match &pools {
            Pools::Sqlite(pool) => migrations::migrate_sqlite(&migrations::KEYS, pool).await?,
            Pools::Postgres(pool) => migrations::migrate_postgres(&migrations::KEYS, pool).await?,
        };
        Ok(Self(pools))
    }

    /// The key tables the log's own migrations made, as earlier versions
    /// kept keys beside the events (read to move them out).
    pub(crate) async fn in_log_database(url: &str) -> Result<Self, StoreError> {
        Ok(Self(
            Pools::connect(url, SqliteSynchronous::Full, 1, 2).await?,
        ))
    }

    pub(crate) async fn tenant(&self, tenant: TenantId) -> Result<Slot, StoreError> {
        let sql = "SELECT wrapped, erased_at, master_key_id FROM tenant_keys WHERE tenant_id = $1";
        let row = on_pool!(&self.0, pool => sqlx::query_as(sql).bind(tenant.as_uuid()).fetch_optional(pool))?;
        Ok(slot(row))
    }

    pub(crate) async fn subject(
        &self,
        tenant: TenantId,
        subject: Uuid,
    ) -> Result<Slot, StoreError> {
        let sql = "SELECT wrapped, erased_at, CAST(NULL AS TEXT) FROM subject_keys \
                   WHERE tenant_id = $1 AND subject_id = $2";
        let row = on_pool!(&self.0, pool => sqlx::query_as(sql).bind(tenant.as_uuid()).bind(subject).fetch_optional(pool))?;
        Ok(slot(row))
    }

    pub(crate) async fn access(&self, tenant: TenantId, day: &str) -> Result<Slot, StoreError> {
        let sql = "SELECT wrapped, erased_at, CAST(NULL AS TEXT) FROM access_keys \
                   WHERE tenant_id = $1 AND day = $2";
        let row = on_pool!(&self.0, pool => sqlx::query_as(sql).bind(tenant.as_uuid()).bind(day).fetch_optional(pool))?;
        Ok(slot(row))
    }

    /// Stores a wrapped tenant key unless one (or a tombstone) exists.
    pub(crate) async fn insert_tenant(
        &self,
        tenant: TenantId,
        wrapped: &[u8],
        master: &str,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO tenant_keys (tenant_id, wrapped, created_at, master_key_id) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(wrapped).bind(now).bind(master).execute(pool))?;
        Ok(())
    }

    pub(crate) async fn insert_subject(
        &self,
        tenant: TenantId,
        subject: Uuid,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO subject_keys (tenant_id, subject_id, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (tenant_id, subject_id) DO NOTHING";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(subject).bind(wrapped).bind(now).execute(pool))?;
        Ok(())
    }

    /// Stores a day's wrapped access key, unless one exists or a day as
    /// late or later was already destroyed (retention only moves forward:
    /// a key made behind it would outlive its rule).
    pub(crate) async fn insert_access(
        &self,
        tenant: TenantId,
        day: &str,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO access_keys (tenant_id, day, wrapped, created_at) \
                   SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM access_keys \
                   WHERE tenant_id = $1 AND day >= $2 AND wrapped IS NULL) \
                   ON CONFLICT (tenant_id, day) DO NOTHING";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(day).bind(wrapped).bind(now).execute(pool))?;
        Ok(())
    }

    /// Replaces the tenant key, and every subject and access key of the
    /// tenant, with tombstones. Returns whether a key was destroyed.
    pub(crate) async fn erase_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        let had_key = match self.tenant(tenant).await? {
            Slot::Erased if !self.holds_keys_under(tenant).await? => return Ok(false),
            Slot::Wrapped { .. } => true,
            Slot::Erased | Slot::Missing => false,
        };
        let now = Timestamp::now().0;
        let tombstone = "INSERT INTO tenant_keys (tenant_id, wrapped, created_at, erased_at) VALUES ($1, NULL, $2, $2) \
                         ON CONFLICT (tenant_id) DO UPDATE SET wrapped = NULL, master_key_id = NULL, \
                         erased_at = coalesce(tenant_keys.erased_at, excluded.erased_at)";
        on_pool!(exec &self.0, pool => sqlx::query(tombstone).bind(tenant.as_uuid()).bind(now).execute(pool))?;
        for table in ["subject_keys", "access_keys"] {
            let sql = format!(
                "UPDATE {table} SET wrapped = NULL, erased_at = $2 \
                 WHERE tenant_id = $1 AND wrapped IS NOT NULL"
            );
            on_pool!(exec &self.0, pool => sqlx::query(&sql).bind(tenant.as_uuid()).bind(now).execute(pool))?;
        }
        Ok(had_key)
    }

    /// Whether any subject or access key of `tenant` is still wrapped (a
    /// restore may bring some back beside a tenant tombstone).
    async fn holds_keys_under(&self, tenant: TenantId) -> Result<bool, StoreError> {
        let sql = "SELECT (SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped IS NOT NULL) \
                        + (SELECT count(*) FROM access_keys WHERE tenant_id = $1 AND wrapped IS NOT NULL)";
        let count: i64 = on_pool!(&self.0, pool => sqlx::query_scalar(sql).bind(tenant.as_uuid()).fetch_one(pool))?;
        Ok(count > 0)
    }

    pub(crate) async fn erase_subject(
        &self,
        tenant: TenantId,
        subject: Uuid,
    ) -> Result<bool, StoreError> {
        let had_key = match self.subject(tenant, subject).await? {
            // A tombstone already: nothing to write (re-erasing every key
            // the log names at start-up reads, and writes only what a
            // restore brought back).
            Slot::Erased => return Ok(false),
            Slot::Wrapped { .. } => true,
            Slot::Missing => false,
        };
        let sql = "INSERT INTO subject_keys (tenant_id, subject_id, wrapped, created_at, erased_at) \
                   VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (tenant_id, subject_id) DO UPDATE \
                   SET wrapped = NULL, erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(subject).bind(now).execute(pool))?;
        Ok(had_key)
    }

    /// The days before `before` whose access keys are still readable.
    pub(crate) async fn live_access_days(
        &self,
        tenant: TenantId,
        before: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT day FROM access_keys WHERE tenant_id = $1 AND day < $2 \
                   AND wrapped IS NOT NULL ORDER BY day";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).bind(tenant.as_uuid()).bind(before).fetch_all(pool))
    }

    /// Destroys the access keys of every day up to `through`, and leaves a
    /// tombstone for `through` itself (so that no key is made for it or an
    /// earlier day later). Returns how many keys were destroyed: one
    /// statement, however many days the tenant has.
    pub(crate) async fn erase_access_days_through(
        &self,
        tenant: TenantId,
        through: &str,
    ) -> Result<u64, StoreError> {
        let now = Timestamp::now().0;
        let destroy = "UPDATE access_keys SET wrapped = NULL, erased_at = $3 \
                       WHERE tenant_id = $1 AND day <= $2 AND wrapped IS NOT NULL";
        let destroyed = on_pool!(exec &self.0, pool => sqlx::query(destroy).bind(tenant.as_uuid()).bind(through).bind(now).execute(pool))?;
        let fence = "INSERT INTO access_keys (tenant_id, day, wrapped, created_at, erased_at) \
                     VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (tenant_id, day) DO NOTHING";
        on_pool!(exec &self.0, pool => sqlx::query(fence).bind(tenant.as_uuid()).bind(through).bind(now).execute(pool))?;
        Ok(destroyed)
    }

    /// Moves the erasure counter (after a restore, which may only insert
    /// rows: every instance drops the keys it holds).
    pub(crate) async fn move_epoch(&self) -> Result<(), StoreError> {
        let sql = "UPDATE key_store_epoch SET epoch = epoch + 1 WHERE id = 1";
        on_pool!(exec &self.0, pool => sqlx::query(sql).execute(pool))?;
        Ok(())
    }

    /// The counter that moves whenever a key is destroyed, rewrapped or
    /// removed (migration 0003; the key cache reads it).
    pub(crate) async fn epoch(&self) -> Result<i64, StoreError> {
        let sql = "SELECT epoch FROM key_store_epoch WHERE id = 1";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_one(pool))
    }

    pub(crate) async fn holds_tenant_keys(&self) -> Result<bool, StoreError> {
        let sql = "SELECT count(*) FROM tenant_keys";
        let count: i64 = on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_one(pool))?;
        Ok(count > 0)
    }

    /// The id this store was given when it was made: two URLs name the
    /// same database exactly when they read the same id.
    pub(crate) async fn identity(&self) -> Result<Option<String>, StoreError> {
        if !self.has_table("key_store_identity").await? {
            return Ok(None);
        }
        let sql = "SELECT id FROM key_store_identity";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_optional(pool))
    }

    async fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        Ok(match &self.0 {
            Pools::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_one(pool)
                .await
                .map_err(crate::stored::store_error)?
                    > 0
            }
            Pools::Postgres(pool) => {
                sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
                    .bind(table)
                    .fetch_one(pool)
                    .await
                    .map_err(crate::stored::store_error)?
                    .is_some()
            }
        })
    }
}

/// A stored signing key: (kid, sealed private key, public x, master key id).
pub(crate) type SigningRow = (String, Vec<u8>, String, Option<String>);

impl KeyTables {
    pub(crate) async fn signing_keys(
        &self,
        published_since: i64,
    ) -> Result<Vec<SigningRow>, StoreError> {
        let sql = "SELECT kid, private_key, public_x, master_key_id FROM signing_keys \
                   WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC";
        on_pool!(&self.0, pool => sqlx::query_as(sql).bind(published_since).fetch_all(pool))
    }

    pub(crate) async fn active_signing_keys(&self) -> Result<i64, StoreError> {
        let sql = "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_one(pool))
    }

    /// Adds a key; with `retire_others`, the others stop signing (they stay
    /// published for a while).
    pub(crate) async fn add_signing_key(
        &self,
        kid: &str,
        sealed: &[u8],
        public_x: &str,
        master: &str,
        retire_others: bool,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().0;
        if retire_others {
            let retire = "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL";
            on_pool!(exec &self.0, pool => sqlx::query(retire).bind(now).execute(pool))?;
        }
        let insert = "INSERT INTO signing_keys (kid, algorithm, private_key, public_x, created_at, master_key_id) \
                      VALUES ($1, 'EdDSA', $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING";
        on_pool!(exec &self.0, pool => sqlx::query(insert).bind(kid).bind(sealed).bind(public_x).bind(now).bind(master).execute(pool))?;
        Ok(())
    }
}

/// The keys that sign checkpoints.
impl KeyTables {
    /// The active checkpoint key: (verifier key, sealed seed, master key id).
    pub(crate) async fn checkpoint_key(
        &self,
    ) -> Result<Option<(String, Vec<u8>, Option<String>)>, StoreError> {
        let sql = "SELECT verifier, sealed_seed, master_key_id FROM checkpoint_keys \
                   WHERE retired_at IS NULL ORDER BY created_at DESC, verifier DESC LIMIT 1";
        on_pool!(&self.0, pool => sqlx::query_as(sql).fetch_optional(pool))
    }

    /// Every checkpoint verifier key, the active one first.
    pub(crate) async fn checkpoint_verifiers(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT verifier FROM checkpoint_keys \
                   ORDER BY retired_at IS NOT NULL, created_at DESC, verifier DESC";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_all(pool))
    }

    /// Adds a key unless one is active (two instances making the first key
    /// at once: one wins); with `retire_others`, it replaces the active one.
    pub(crate) async fn add_checkpoint_key(
        &self,
        verifier: &str,
        sealed: &[u8],
        master: &str,
        retire_others: bool,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().0;
        if retire_others {
            let retire = "UPDATE checkpoint_keys SET retired_at = $1 WHERE retired_at IS NULL";
            on_pool!(exec &self.0, pool => sqlx::query(retire).bind(now).execute(pool))?;
        }
        let insert =
            "INSERT INTO checkpoint_keys (verifier, sealed_seed, created_at, master_key_id) \
                      SELECT $1, $2, $3, $4 WHERE NOT EXISTS \
                      (SELECT 1 FROM checkpoint_keys WHERE retired_at IS NULL)";
        on_pool!(exec &self.0, pool => sqlx::query(insert).bind(verifier).bind(sealed).bind(now).bind(master).execute(pool))?;
        Ok(())
    }
}

/// The tables of secrets sealed directly under the master key with a text
/// key (besides tenant keys): JWT signing keys and checkpoint keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealedTable {
    Signing,
    Checkpoint,
}

impl SealedTable {
    /// (table, key column, sealed column)
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SealedTable::Signing => ("signing_keys", "kid", "private_key"),
            SealedTable::Checkpoint => ("checkpoint_keys", "verifier", "sealed_seed"),
        }
    }
}

/// What master-key rotation reads and writes: the rows sealed directly
/// under a master key.
impl KeyTables {
    /// Up to `limit` tenant keys after `after` (in id order) not (known to
    /// be) wrapped under `current`.
    pub(crate) async fn tenant_keys_not_under(
        &self,
        current: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<(Uuid, Vec<u8>, Option<String>)>, StoreError> {
        let sql = "SELECT tenant_id, wrapped, master_key_id FROM tenant_keys \
                   WHERE wrapped IS NOT NULL AND (master_key_id IS NULL OR master_key_id <> $1) \
                   AND tenant_id > $2 ORDER BY tenant_id LIMIT $3";
        let after = after.unwrap_or(Uuid::nil());
        on_pool!(&self.0, pool => sqlx::query_as(sql).bind(current).bind(after).bind(limit).fetch_all(pool))
    }

    /// Replaces a tenant key's wrapping if it is still `old` (a concurrent
    /// erasure or rotation wins). Returns whether it was replaced.
    pub(crate) async fn rewrap_tenant(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
        master: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE tenant_keys SET wrapped = $3, master_key_id = $4 \
                   WHERE tenant_id = $1 AND wrapped = $2";
        let changed = on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant).bind(old).bind(new).bind(master).execute(pool))?;
        Ok(changed == 1)
    }

    /// Up to `limit` rows of `table` after `after` (in key order) not
    /// (known to be) sealed under `current`: (key, sealed, master key id).
    pub(crate) async fn sealed_not_under(
        &self,
        table: SealedTable,
        current: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>, Option<String>)>, StoreError> {
        let (name, key, sealed) = table.columns();
        let sql = format!(
            "SELECT {key}, {sealed}, master_key_id FROM {name} \
             WHERE (master_key_id IS NULL OR master_key_id <> $1) AND {key} > $2 \
             ORDER BY {key} LIMIT $3"
        );
        on_pool!(&self.0, pool => sqlx::query_as(&sql).bind(current).bind(after).bind(limit).fetch_all(pool))
    }

    /// Replaces a row's sealed secret if it is still `old`. Returns whether
    /// it was replaced.
    pub(crate) async fn reseal(
        &self,
        table: SealedTable,
        key: &str,
        old: &[u8],
        new: &[u8],
        master: &str,
    ) -> Result<bool, StoreError> {
        let (name, key_column, sealed) = table.columns();
        let sql = format!(
            "UPDATE {name} SET {sealed} = $3, master_key_id = $4 \
             WHERE {key_column} = $1 AND {sealed} = $2"
        );
        let changed = on_pool!(exec &self.0, pool => sqlx::query(&sql).bind(key).bind(old).bind(new).bind(master).execute(pool))?;
        Ok(changed == 1)
    }

    /// How many rows are left to rotate away from any key but `current`.
    pub(crate) async fn not_under(&self, current: &str) -> Result<i64, StoreError> {
        let sql = "SELECT (SELECT count(*) FROM tenant_keys WHERE wrapped IS NOT NULL \
                          AND (master_key_id IS NULL OR master_key_id <> $1)) \
                        + (SELECT count(*) FROM signing_keys \
                          WHERE master_key_id IS NULL OR master_key_id <> $1) \
                        + (SELECT count(*) FROM checkpoint_keys \
                          WHERE master_key_id IS NULL OR master_key_id <> $1)";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).bind(current).fetch_one(pool))
    }
}

/// The rows of each table as they are read.
type TenantTuple = (Uuid, Option<Vec<u8>>, i64, Option<i64>, Option<String>);
type SubjectTuple = (Uuid, Uuid, Option<Vec<u8>>, i64, Option<i64>);
type AccessTuple = (Uuid, String, Option<Vec<u8>>, i64, Option<i64>);
type SigningTuple = (
    String,
    String,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

type CheckpointTuple = (String, Vec<u8>, i64, Option<i64>, Option<String>);

/// Backups, restores, and the move out of the log's database.
impl KeyTables {
    /// Every row. Tables as the log's own migrations made them (before the
    /// key store had a schema of its own: no master-key ids, no access
    /// keys) are read as they are. Subject and access keys are read before
    /// tenant keys: a key is made after its tenant's, so a backup taken
    /// while serving never holds a key without the key that wraps it.
    pub(crate) async fn dump(&self) -> Result<KeyRows, StoreError> {
        let current = self.has_table("access_keys").await?;
        let master = if current {
            "master_key_id"
        } else {
            "CAST(NULL AS TEXT)"
        };
        let subjects =
            "SELECT tenant_id, subject_id, wrapped, created_at, erased_at FROM subject_keys \
                        ORDER BY tenant_id, subject_id";
        let subject_rows: Vec<SubjectTuple> =
            on_pool!(&self.0, pool => sqlx::query_as(subjects).fetch_all(pool))?;
        let access_rows: Vec<AccessTuple> = if current {
            let access = "SELECT tenant_id, day, wrapped, created_at, erased_at FROM access_keys \
                          ORDER BY tenant_id, day";
            on_pool!(&self.0, pool => sqlx::query_as(access).fetch_all(pool))?
        } else {
            Vec::new()
        };
        let tenants = format!(
            "SELECT tenant_id, wrapped, created_at, erased_at, {master} FROM tenant_keys ORDER BY tenant_id"
        );
        let tenant_rows: Vec<TenantTuple> =
            on_pool!(&self.0, pool => sqlx::query_as(&tenants).fetch_all(pool))?;
        let signing = format!(
            "SELECT kid, algorithm, private_key, public_x, created_at, retired_at, {master} \
             FROM signing_keys ORDER BY kid"
        );
        let signing_rows: Vec<SigningTuple> =
            on_pool!(&self.0, pool => sqlx::query_as(&signing).fetch_all(pool))?;
        let checkpoint_rows: Vec<CheckpointTuple> = if self.has_table("checkpoint_keys").await? {
            let sql = "SELECT verifier, sealed_seed, created_at, retired_at, master_key_id \
                       FROM checkpoint_keys ORDER BY verifier";
            on_pool!(&self.0, pool => sqlx::query_as(sql).fetch_all(pool))?
        } else {
            Vec::new()
        };
        Ok(KeyRows {
            checkpoint_keys: checkpoint_rows
                .into_iter()
                .map(
                    |(verifier, sealed_seed, created_at, retired_at, master_key_id)| {
                        CheckpointKeyRow {
                            verifier,
                            sealed_seed: Some(sealed_seed),
                            created_at,
                            retired_at,
                            master_key_id,
                        }
                    },
                )
                .collect(),
            tenant_keys: tenant_rows
                .into_iter()
                .map(
                    |(tenant_id, wrapped, created_at, erased_at, master_key_id)| TenantKeyRow {
                        tenant_id,
                        wrapped,
                        created_at,
                        erased_at,
                        master_key_id,
                    },
                )
                .collect(),
            subject_keys: subject_rows
                .into_iter()
                .map(
                    |(tenant_id, subject_id, wrapped, created_at, erased_at)| SubjectKeyRow {
                        tenant_id,
                        subject_id,
                        wrapped,
                        created_at,
                        erased_at,
                    },
                )
                .collect(),
            access_keys: access_rows
                .into_iter()
                .map(
                    |(tenant_id, day, wrapped, created_at, erased_at)| AccessKeyRow {
                        tenant_id,
                        day,
                        wrapped,
                        created_at,
                        erased_at,
                    },
                )
                .collect(),
            signing_keys: signing_rows
                .into_iter()
                .map(
                    |(
                        kid,
                        algorithm,
                        private_key,
                        public_x,
                        created_at,
                        retired_at,
                        master_key_id,
                    )| {
                        SigningKeyRow {
                            kid,
                            algorithm,
                            private_key: Some(private_key),
                            public_x,
                            created_at,
                            retired_at,
                            master_key_id,
                        }
                    },
                )
                .collect(),
        })
    }

    /// Writes `rows` into this store. A key already here stays as it is,
    /// except that a tombstone always wins: a row erased on either side is
    /// erased after (a restore never brings a key back that was destroyed
    /// here, and never keeps one the backup knew destroyed).
    pub(crate) async fn load(&self, rows: &KeyRows) -> Result<(), StoreError> {
        for chunk in rows.tenant_keys.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO tenant_keys (tenant_id, wrapped, created_at, erased_at, master_key_id) VALUES {} \
                 ON CONFLICT (tenant_id) DO UPDATE SET wrapped = NULL, master_key_id = NULL, \
                 erased_at = excluded.erased_at \
                 WHERE excluded.wrapped IS NULL AND tenant_keys.wrapped IS NOT NULL",
                placeholders(chunk.len(), 5)
            );
            on_pool!(exec &self.0, pool => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query.bind(row.tenant_id).bind(row.wrapped.as_deref())
                        .bind(row.created_at).bind(row.erased_at).bind(row.master_key_id.as_deref());
                }
                query.execute(pool)
            })?;
        }
        for chunk in rows.subject_keys.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO subject_keys (tenant_id, subject_id, wrapped, created_at, erased_at) VALUES {} \
                 ON CONFLICT (tenant_id, subject_id) DO UPDATE SET wrapped = NULL, \
                 erased_at = excluded.erased_at \
                 WHERE excluded.wrapped IS NULL AND subject_keys.wrapped IS NOT NULL",
                placeholders(chunk.len(), 5)
            );
            on_pool!(exec &self.0, pool => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query.bind(row.tenant_id).bind(row.subject_id).bind(row.wrapped.as_deref())
                        .bind(row.created_at).bind(row.erased_at);
                }
                query.execute(pool)
            })?;
        }
        for chunk in rows.access_keys.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO access_keys (tenant_id, day, wrapped, created_at, erased_at) VALUES {} \
                 ON CONFLICT (tenant_id, day) DO UPDATE SET wrapped = NULL, \
                 erased_at = excluded.erased_at \
                 WHERE excluded.wrapped IS NULL AND access_keys.wrapped IS NOT NULL",
                placeholders(chunk.len(), 5)
            );
            on_pool!(exec &self.0, pool => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query.bind(row.tenant_id).bind(&row.day).bind(row.wrapped.as_deref())
                        .bind(row.created_at).bind(row.erased_at);
                }
                query.execute(pool)
            })?;
        }
        for chunk in rows.signing_keys.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO signing_keys (kid, algorithm, private_key, public_x, created_at, retired_at, master_key_id) \
                 VALUES {} ON CONFLICT (kid) DO NOTHING",
                placeholders(chunk.len(), 7)
            );
            on_pool!(exec &self.0, pool => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query.bind(&row.kid).bind(&row.algorithm)
                        .bind(row.private_key.as_deref().unwrap_or_default())
                        .bind(&row.public_x).bind(row.created_at).bind(row.retired_at)
                        .bind(row.master_key_id.as_deref());
                }
                query.execute(pool)
            })?;
        }
        for chunk in rows.checkpoint_keys.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO checkpoint_keys (verifier, sealed_seed, created_at, retired_at, master_key_id) \
                 VALUES {} ON CONFLICT (verifier) DO NOTHING",
                placeholders(chunk.len(), 5)
            );
            on_pool!(exec &self.0, pool => {
                let mut query = sqlx::query(&sql);
                for row in chunk {
                    query = query.bind(&row.verifier)
                        .bind(row.sealed_seed.as_deref().unwrap_or_default())
                        .bind(row.created_at).bind(row.retired_at)
                        .bind(row.master_key_id.as_deref());
                }
                query.execute(pool)
            })?;
        }
        Ok(())
    }

    /// Deletes every key row, overwriting what SQLite frees (its WAL is
    /// checkpointed and truncated), so that no copy of the log's database
    /// holds a key any more.
    pub(crate) async fn delete_all(&self) -> Result<(), StoreError> {
        let mut tables =
            "DELETE FROM subject_keys; DELETE FROM tenant_keys; DELETE FROM signing_keys;"
                .to_owned();
        if self.has_table("access_keys").await? {
            tables.push_str(" DELETE FROM access_keys;");
        }
        if self.has_table("checkpoint_keys").await? {
            tables.push_str(" DELETE FROM checkpoint_keys;");
        }
        match &self.0 {
            Pools::Sqlite(pool) => {
                let sql =
                    format!("PRAGMA secure_delete = ON; {tables} PRAGMA secure_delete = OFF;");
                sqlx::raw_sql(&sql)
                    .execute(pool)
                    .await
                    .map_err(crate::stored::store_error)?;
                // Until the WAL is checkpointed and truncated, it still holds
                // the pages as they were; a reader in the way makes it busy.
                for _ in 0..50 {
                    let (busy, _, _): (i64, i64, i64) =
                        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                            .fetch_one(pool)
                            .await
                            .map_err(crate::stored::store_error)?;
                    if busy == 0 {
                        return Ok(());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                tracing::warn!(
                    "the log's WAL could not be truncated after moving the keys out; \
                     it is at the next checkpoint"
                );
            }
            Pools::Postgres(pool) => {
                sqlx::raw_sql(&tables)
                    .execute(pool)
                    .await
                    .map_err(crate::stored::store_error)?;
            }
        }
        Ok(())
    }
}

/// `($1, …, $width), ($width+1, …)`: `rows` groups of `width` numbered
/// parameters (both backends read `$n`).
fn placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|column| format!("${}", row * width + column))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(key: u8) -> KeyRows {
        let (tenant, subject) = (Uuid::from_u128(1), Uuid::from_u128(2));
        KeyRows {
            tenant_keys: vec![TenantKeyRow {
                tenant_id: tenant,
                wrapped: Some(vec![key; 4]),
                created_at: 1,
                erased_at: None,
                master_key_id: Some("m".into()),
            }],
            subject_keys: vec![SubjectKeyRow {
                tenant_id: tenant,
                subject_id: subject,
                wrapped: Some(vec![key; 4]),
                created_at: 1,
                erased_at: None,
            }],
            access_keys: ["2026-10-01", "2026-10-02"]
                .map(|day| AccessKeyRow {
                    tenant_id: tenant,
                    day: day.into(),
                    wrapped: Some(vec![key; 4]),
                    created_at: 1,
                    erased_at: None,
                })
                .into(),
            signing_keys: vec![],
            checkpoint_keys: vec![],
        }
    }

    #[test]
    fn a_restore_holds_back_what_the_log_destroyed() {
        let mut backup = rows(1);
        let held_back = backup.tombstone(
            |_, subject| subject == Uuid::from_u128(2),
            |_| false,
            |_, day| day <= "2026-10-01",
            7,
        );
        assert_eq!(held_back, 2);
        assert_eq!(backup.subject_keys[0].wrapped, None);
        assert_eq!(backup.subject_keys[0].erased_at, Some(7));
        assert_eq!(backup.access_keys[0].wrapped, None);
        assert!(backup.access_keys[1].wrapped.is_some());
        assert!(backup.tenant_keys[0].wrapped.is_some());
        // A destroyed tenant takes everything under it.
        let mut backup = rows(1);
        assert_eq!(backup.tombstone(|_, _| false, |_| true, |_, _| false, 7), 4);
        assert!(backup.tenant_keys[0].master_key_id.is_none());
    }

    #[test]
    fn keys_made_anew_in_the_store_are_told_apart() {
        let backup = rows(1);
        assert_eq!(backup.differing(&rows(1)), 0);
        assert_eq!(backup.differing(&rows(2)), 4);
        assert_eq!(backup.differing(&KeyRows::default()), 0);
        // A tombstone in the store is not a different key.
        let mut erased = rows(2);
        erased.tombstone(|_, _| false, |_| true, |_, _| false, 7);
        assert_eq!(backup.differing(&erased), 0);
    }

    #[test]
    fn placeholders_number_every_parameter_once() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
