//! Connection pools for the tables kept beside the log (keys, read models):
//! one type for both backends, whose SQL is the same, and one macro that
//! runs a statement on whichever backend is configured.

use std::str::FromStr;
use std::time::Duration;

use custodia_application::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::database::Backend;
use crate::stored::store_error;

#[derive(Debug, Clone)]
pub(crate) enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pools {
    /// Connects to the (migrated) database at `url`: on SQLite in WAL mode
    /// with `synchronous` and a 10 s busy timeout, at most `sqlite_max`
    /// connections; on PostgreSQL at most `postgres_max`.
    pub(crate) async fn connect(
        url: &str,
        synchronous: SqliteSynchronous,
        sqlite_max: u32,
        postgres_max: u32,
    ) -> Result<Self, StoreError> {
        Ok(match Backend::of(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::unavailable(format!("bad SQLite URL: {e}")))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .busy_timeout(Duration::from_secs(10));
                Pools::Sqlite(
                    sqlite_pool(sqlite_max)
                        .connect_with(options)
                        .await
                        .map_err(store_error)?,
                )
            }
            Backend::Postgres => Pools::Postgres(
                PgPoolOptions::new()
                    .max_connections(postgres_max)
                    .connect(url)
                    .await
                    .map_err(store_error)?,
            ),
        })
    }
}

/// Runs one query on whichever backend `$pools` holds; `exec` answers with
/// the number of rows a statement affected.
macro_rules! on_pool {
    (exec $pools:expr, $pool:ident => $query:expr) => {
        match $pools {
            $crate::pools::Pools::Sqlite($pool) => $query
                .await
                .map(|done| done.rows_affected())
                .map_err($crate::stored::store_error),
            $crate::pools::Pools::Postgres($pool) => $query
                .await
                .map(|done| done.rows_affected())
                .map_err($crate::stored::store_error),
        }
    };
    ($pools:expr, $pool:ident => $query:expr) => {
        match $pools {
            $crate::pools::Pools::Sqlite($pool) => {
                $query.await.map_err($crate::stored::store_error)
            }
            $crate::pools::Pools::Postgres($pool) => {
                $query.await.map_err($crate::stored::store_error)
            }
        }
    };
}
pub(crate) use on_pool;

/// A pool of SQLite connections: no reaper task, since an embedded file
/// gains nothing from closing idle connections, and sqlx's reaper can spin
/// forever on a miscounted idle queue (sqlx#3645; seen once as a CLI
/// command stuck at 100% CPU).
pub(crate) fn sqlite_pool(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .idle_timeout(None)
        .max_lifetime(None)
}
