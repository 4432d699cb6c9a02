//! Reads of a SQLite file on the caller's own thread: a few read-only
//! rusqlite connections, each taken for one statement. A point read in WAL
//! mode takes microseconds and never waits for the writer, so running it
//! where the request runs costs less than handing it to a driver's worker
//! thread and waking twice for the answer (issue 14: most of a `me`
//! request's time went to those thread switches).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use custodia_application::StoreError;
use rusqlite::{Connection, OpenFlags};

/// Connections kept between reads (more are opened under load and closed
/// when the reads are done).
const KEPT: usize = 8;

pub(crate) struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for InlineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReader")
            .field("path", &self.path)
            .finish()
    }
}

impl InlineReader {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::unavailable(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| StoreError::unavailable(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one).
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let answer = read(&conn).map_err(sqlite_error);
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < KEPT {
            idle.push(conn);
        }
        answer
    }
}

/// How long a writer's statement waits for another writer's lock.
const BUSY_FOR: Duration = Duration::from_secs(10);

/// Makes a writer connection wait for the write lock in steps of 100 µs,
/// giving up after [`BUSY_FOR`] of such steps (longer on the clock: each
/// sleep overshoots). SQLite's own busy timeout sleeps 1, 2, 5, … up to
/// 100 ms between tries: a lock held for a millisecond by the other writer
/// on the file cost a waiting commit tens of milliseconds (refresh p99 was
/// about 300 ms). Connections of the sqlx pools keep SQLite's timeout;
/// they write rarely (leases, idempotency records), and a lock is free
/// between the writers' groups.
pub(crate) fn wait_briefly_when_busy(conn: &Connection) -> rusqlite::Result<()> {
    const STEP: Duration = Duration::from_micros(100);
    fn retry(tries: i32) -> bool {
        let waited = STEP * u32::try_from(tries).unwrap_or(u32::MAX);
        if waited >= BUSY_FOR {
            return false;
        }
        std::thread::sleep(STEP);
        true
    }
    conn.busy_handler(Some(retry))
}

/// A failure of SQLite (through rusqlite) as a store error: busy or
/// unopenable is "unavailable", a damaged file "corrupt", missing tables
/// name the migration. SQLite's messages name tables and constraints,
/// never values.
pub(crate) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => {
                StoreError::corrupt(error.to_string())
            }
            rusqlite::ErrorCode::DatabaseBusy
            | rusqlite::ErrorCode::DatabaseLocked
            | rusqlite::ErrorCode::CannotOpen => StoreError::unavailable(error.to_string()),
            _ if error.to_string().contains("no such table") => StoreError::schema(
                "the Custodia tables are missing; run `custodia migrate`".to_owned(),
            ),
            _ => StoreError::database(error.to_string()),
        },
        _ => StoreError::database(error.to_string()),
    }
}
