//! Schema migrations, embedded in the binary. Append-only: a migration that
//! has been applied is never edited (its checksum is checked at every run).

use custodia_application::StoreError;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};

use crate::stored::store_error;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).to_vec()
    }
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../../migrations/sqlite/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "keys",
        sql: include_str!("../../migrations/sqlite/0002_keys.sql"),
    },
    Migration {
        version: 3,
        name: "signing_keys",
        sql: include_str!("../../migrations/sqlite/0003_signing_keys.sql"),
    },
    Migration {
        version: 4,
        name: "read_models",
        sql: include_str!("../../migrations/sqlite/0004_read_models.sql"),
    },
    Migration {
        version: 5,
        name: "snapshots",
        sql: include_str!("../../migrations/sqlite/0005_snapshots.sql"),
    },
    Migration {
        version: 6,
        name: "idempotency_keys",
        sql: include_str!("../../migrations/sqlite/0006_idempotency_keys.sql"),
    },
    Migration {
        version: 7,
        name: "idempotency_tenants",
        sql: include_str!("../../migrations/sqlite/0007_idempotency_tenants.sql"),
    },
    Migration {
        version: 8,
        name: "read_models_by_kind",
        sql: include_str!("../../migrations/sqlite/0008_read_models_by_kind.sql"),
    },
    Migration {
        version: 9,
        name: "checkpoints",
        sql: include_str!("../../migrations/sqlite/0009_checkpoints.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../../migrations/postgres/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "keys",
        sql: include_str!("../../migrations/postgres/0002_keys.sql"),
    },
    Migration {
        version: 3,
        name: "signing_keys",
        sql: include_str!("../../migrations/postgres/0003_signing_keys.sql"),
    },
    Migration {
        version: 4,
        name: "read_models",
        sql: include_str!("../../migrations/postgres/0004_read_models.sql"),
    },
    Migration {
        version: 5,
        name: "snapshots",
        sql: include_str!("../../migrations/postgres/0005_snapshots.sql"),
    },
    Migration {
        version: 6,
        name: "idempotency_keys",
        sql: include_str!("../../migrations/postgres/0006_idempotency_keys.sql"),
    },
    Migration {
        version: 7,
        name: "idempotency_tenants",
        sql: include_str!("../../migrations/postgres/0007_idempotency_tenants.sql"),
    },
    Migration {
        version: 8,
        name: "read_models_by_kind",
        sql: include_str!("../../migrations/postgres/0008_read_models_by_kind.sql"),
    },
    Migration {
        version: 9,
        name: "checkpoints",
        sql: include_str!("../../migrations/postgres/0009_checkpoints.sql"),
    },
];

/// The key store's schema (its own ledger, so that it can live in the
/// log's database or in one of its own; ADR 0011).
pub const KEYS_SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "key_store",
        sql: include_str!("../../migrations/keys/sqlite/0001_key_store.sql"),
    },
    Migration {
        version: 2,
        name: "checkpoint_keys",
        sql: include_str!("../../migrations/keys/sqlite/0002_checkpoint_keys.sql"),
    },
    Migration {
        version: 3,
        name: "key_store_epoch",
        sql: include_str!("../../migrations/keys/sqlite/0003_key_store_epoch.sql"),
    },
];

pub const KEYS_POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "key_store",
        sql: include_str!("../../migrations/keys/postgres/0001_key_store.sql"),
    },
    Migration {
        version: 2,
        name: "checkpoint_keys",
        sql: include_str!("../../migrations/keys/postgres/0002_checkpoint_keys.sql"),
    },
    Migration {
        version: 3,
        name: "key_store_epoch",
        sql: include_str!("../../migrations/keys/postgres/0003_key_store_epoch.sql"),
    },
];

/// One schema with its ledger table: the log's, or the key store's.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    ledger: &'static str,
    sqlite: &'static [Migration],
    postgres: &'static [Migration],
    /// The PostgreSQL advisory lock that serialises concurrent migrators.
    lock: i64,
}

/// The event log, read models and everything else beside the keys.
pub const LOG: MigrationSet = MigrationSet {
    ledger: "custodia_migrations",
    sqlite: SQLITE,
    postgres: POSTGRES,
    lock: 0x6375_7374_6f64_6961, // "custodia"
};

/// The key store.
pub const KEYS: MigrationSet = MigrationSet {
    ledger: "custodia_key_migrations",
    sqlite: KEYS_SQLITE,
    postgres: KEYS_POSTGRES,
    lock: 0x6375_7374_6b65_7973, // "custkeys"
};

impl MigrationSet {
    fn create_ledger(&self, binary: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum {binary} NOT NULL)",
            self.ledger
        )
    }

    fn select_recorded(&self) -> String {
        format!(
            "SELECT version, checksum FROM {} ORDER BY version",
            self.ledger
        )
    }

    fn insert(&self, placeholders: &str) -> String {
        format!(
            "INSERT INTO {} (version, name, checksum) VALUES ({placeholders})",
            self.ledger
        )
    }
}

/// The state of a database's schema relative to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
}

/// Compares what the database recorded with what this binary knows. A
/// version the binary does not know, or an edited migration, is an error.
fn compare(known: &[Migration], recorded: &[(i64, Vec<u8>)]) -> Result<SchemaStatus, StoreError> {
    let newest_known = known.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, checksum) in recorded {
        match known.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::schema(format!(
                    "the database has migration {version}, newer than this binary knows \
                     (up to {newest_known}); upgrade custodia"
                )))
            }
            Some(m) if m.checksum() != *checksum => {
                return Err(StoreError::schema(format!(
                    "migration {version} ({}) differs from the one applied to this database",
                    m.name
                )))
            }
            Some(_) => {}
        }
    }
    let applied: Vec<i64> = recorded.iter().map(|(v, _)| *v).collect();
    let pending = known
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(SchemaStatus { applied, pending })
}

/// Requires an up-to-date schema without changing anything.
pub fn require_current(status: SchemaStatus) -> Result<(), StoreError> {
    if status.applied.is_empty() {
        return Err(StoreError::schema(
            "this database has no Custodia schema; run `custodia migrate`".to_owned(),
        ));
    }
    if !status.pending.is_empty() {
        return Err(StoreError::schema(format!(
            "migrations {:?} are not applied; run `custodia migrate`",
            status.pending
        )));
    }
    Ok(())
}

pub async fn sqlite_status(
    set: &MigrationSet,
    pool: &SqlitePool,
) -> Result<SchemaStatus, StoreError> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(set.ledger)
            .fetch_optional(pool)
            .await
            .map_err(store_error)?;
    let recorded = match exists {
        Some(_) => sqlx::query_as(&set.select_recorded())
            .fetch_all(pool)
            .await
            .map_err(store_error)?,
        None => Vec::new(),
    };
    compare(set.sqlite, &recorded)
}

/// Applies pending SQLite migrations, each in its own write transaction.
pub async fn migrate_sqlite(set: &MigrationSet, pool: &SqlitePool) -> Result<Vec<i64>, StoreError> {
    sqlx::query(&set.create_ledger("BLOB"))
        .execute(pool)
        .await
        .map_err(store_error)?;
    let mut applied = Vec::new();
    for migration in set.sqlite {
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let recorded: Vec<(i64, Vec<u8>)> = sqlx::query_as(&set.select_recorded())
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
        if !compare(set.sqlite, &recorded)?
            .pending
            .contains(&migration.version)
        {
            continue;
        }
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(&set.insert("?, ?, ?"))
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        applied.push(migration.version);
    }
    Ok(applied)
}

pub async fn postgres_status(
    set: &MigrationSet,
    pool: &PgPool,
) -> Result<SchemaStatus, StoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(set.ledger)
        .fetch_one(pool)
        .await
        .map_err(store_error)?;
    let recorded = match exists {
        Some(_) => sqlx::query_as(&set.select_recorded())
            .fetch_all(pool)
            .await
            .map_err(store_error)?,
        None => Vec::new(),
    };
    compare(set.postgres, &recorded)
}

/// Applies pending PostgreSQL migrations in one transaction, serialised
/// across processes by an advisory lock (several instances may start at once).
pub async fn migrate_postgres(set: &MigrationSet, pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin().await.map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(set.lock)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::raw_sql(&set.create_ledger("BYTEA"))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    let recorded: Vec<(i64, Vec<u8>)> = sqlx::query_as(&set.select_recorded())
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
    let status = compare(set.postgres, &recorded)?;
    let mut applied = Vec::new();
    for migration in set
        .postgres
        .iter()
        .filter(|m| status.pending.contains(&m.version))
    {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(&set.insert("$1, $2, $3"))
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        applied.push(migration.version);
    }
    tx.commit().await.map_err(store_error)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_recorded_version_is_a_newer_schema() {
        let error = compare(SQLITE, &[(1, SQLITE[0].checksum()), (99, vec![])]).unwrap_err();
        assert!(
            error.to_string().contains("newer than this binary"),
            "{error}"
        );
    }

    #[test]
    fn edited_migration_is_refused() {
        let error = compare(SQLITE, &[(1, vec![0; 32])]).unwrap_err();
        assert!(error.to_string().contains("differs"), "{error}");
    }

    #[test]
    fn pending_and_applied_are_reported() {
        let fresh = compare(SQLITE, &[]).unwrap();
        assert_eq!(fresh.pending, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(require_current(fresh).is_err());
        let behind = compare(SQLITE, &[(1, SQLITE[0].checksum())]).unwrap();
        assert_eq!(behind.pending, vec![2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(require_current(behind).is_err());
        let current = compare(
            SQLITE,
            &[
                (1, SQLITE[0].checksum()),
                (2, SQLITE[1].checksum()),
                (3, SQLITE[2].checksum()),
                (4, SQLITE[3].checksum()),
                (5, SQLITE[4].checksum()),
                (6, SQLITE[5].checksum()),
                (7, SQLITE[6].checksum()),
                (8, SQLITE[7].checksum()),
                (9, SQLITE[8].checksum()),
            ],
        )
        .unwrap();
        assert!(require_current(current).is_ok());
    }
}
