//! Choosing and opening the event store from a database URL.

use std::sync::Arc;

use custodia_application::{EventStore, StoreError};

use crate::{PostgresEventStore, SqliteEventStore};

/// The embedded default: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://custodia.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::unavailable(
                "the database URL must start with sqlite:, postgres:// or postgresql://".to_owned(),
            ))
        }
    }
}

/// Where the key store lives unless `CUSTODIA_KEYS_DATABASE_URL` says:
/// for a SQLite log `X.db` a second file `X.keys.db` beside it (so that a
/// copy of the log never holds a key); for PostgreSQL the log's database
/// (production names a database of its own, docs/privacy.md).
pub fn default_keys_url(log_url: &str) -> String {
    if !matches!(Backend::of(log_url), Ok(Backend::Sqlite)) || log_url.contains(":memory:") {
        return log_url.to_owned();
    }
    let (path, query) = match log_url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (log_url, None),
    };
    let keys = match path.strip_suffix(".db") {
        Some(stem) => format!("{stem}.keys.db"),
        None => format!("{path}.keys"),
    };
    match query {
        Some(query) => format!("{keys}?{query}"),
        None => keys,
    }
}

/// What opening does to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the database if it is a missing SQLite file, apply pending migrations.
    Migrate,
    /// Open an existing database whose schema is current; change nothing.
    Existing,
}

/// Opens the event store named by `url`. `connections` bounds the pool on
/// PostgreSQL (SQLite always has one writer).
pub async fn open_event_store(
    url: &str,
    mode: OpenMode,
    connections: u32,
) -> Result<Arc<dyn EventStore>, StoreError> {
    let migrate = mode == OpenMode::Migrate;
    match Backend::of(url)? {
        Backend::Sqlite => {
            let store = SqliteEventStore::connect(url, migrate).await?;
            if migrate {
                store.migrate().await?;
            }
            store.require_current_schema().await?;
            Ok(Arc::new(store))
        }
        Backend::Postgres => {
            let store = PostgresEventStore::connect(url, connections).await?;
            if migrate {
                store.migrate().await?;
            }
            store.require_current_schema().await?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_keys_url;

    #[test]
    fn the_key_store_is_a_second_file_beside_a_sqlite_log() {
        assert_eq!(
            default_keys_url("sqlite://custodia.db"),
            "sqlite://custodia.keys.db"
        );
        assert_eq!(
            default_keys_url("sqlite:///var/lib/c/log.db?mode=rwc"),
            "sqlite:///var/lib/c/log.keys.db?mode=rwc"
        );
        assert_eq!(
            default_keys_url("sqlite://data/log"),
            "sqlite://data/log.keys"
        );
        assert_eq!(default_keys_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            default_keys_url("postgres://c@db/custodia"),
            "postgres://c@db/custodia"
        );
    }
}
