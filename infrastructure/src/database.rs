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
