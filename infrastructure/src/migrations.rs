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
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS custodia_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum BLOB NOT NULL)";

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

pub async fn sqlite_status(pool: &SqlitePool) -> Result<SchemaStatus, StoreError> {
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'custodia_migrations'",
    )
    .fetch_optional(pool)
    .await
    .map_err(store_error)?;
    let recorded = match exists {
        Some(_) => {
            sqlx::query_as("SELECT version, checksum FROM custodia_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(store_error)?
        }
        None => Vec::new(),
    };
    compare(SQLITE, &recorded)
}

/// Applies pending SQLite migrations, each in its own write transaction.
pub async fn migrate_sqlite(pool: &SqlitePool) -> Result<Vec<i64>, StoreError> {
    sqlx::query(CREATE_LEDGER)
        .execute(pool)
        .await
        .map_err(store_error)?;
    let mut applied = Vec::new();
    for migration in SQLITE {
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let recorded: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM custodia_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?;
        if !compare(SQLITE, &recorded)?
            .pending
            .contains(&migration.version)
        {
            continue;
        }
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query("INSERT INTO custodia_migrations (version, name, checksum) VALUES (?, ?, ?)")
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

pub async fn postgres_status(pool: &PgPool) -> Result<SchemaStatus, StoreError> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('custodia_migrations')::text")
            .fetch_one(pool)
            .await
            .map_err(store_error)?;
    let recorded = match exists {
        Some(_) => {
            sqlx::query_as("SELECT version, checksum FROM custodia_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(store_error)?
        }
        None => Vec::new(),
    };
    compare(POSTGRES, &recorded)
}

/// Applies pending PostgreSQL migrations in one transaction, serialised
/// across processes by an advisory lock (several instances may start at once).
pub async fn migrate_postgres(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    const LOCK: i64 = 0x6375_7374_6f64_6961; // "custodia"
    let mut tx = pool.begin().await.map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::raw_sql(&CREATE_LEDGER.replace("BLOB", "BYTEA"))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    let recorded: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM custodia_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
    let status = compare(POSTGRES, &recorded)?;
    let mut applied = Vec::new();
    for migration in POSTGRES
        .iter()
        .filter(|m| status.pending.contains(&m.version))
    {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO custodia_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        )
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
        assert_eq!(fresh.pending, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(require_current(fresh).is_err());
        let behind = compare(SQLITE, &[(1, SQLITE[0].checksum())]).unwrap();
        assert_eq!(behind.pending, vec![2, 3, 4, 5, 6, 7, 8]);
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
            ],
        )
        .unwrap();
        assert!(require_current(current).is_ok());
    }
}
