//! The event store on an embedded SQLite file (WAL, `synchronous=FULL`).
//!
//! SQLite allows one writer at a time, so one thread owns the writer
//! connection (`writer.rs`) and appends in **group commits**: the appends waiting for it (up to
//! [`MAX_GROUP`]) share one `BEGIN IMMEDIATE … COMMIT` and one fsync, each
//! still checked and sealed on its own. If a write fails inside a group, the
//! group is rolled back and replayed one append at a time, so one bad append
//! never fails the others. Positions are assigned in commit order.
//! Readers use a separate read-only pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use custodia_application::{
    check_atomic, AppendError, AppendRequest, AppendSignal, Appended, ChainSummary, ChainVerdict,
    CommittedCommand, EventStore, StoreError, StoredSnapshot,
};
use custodia_domain::chain::StoredField as F;
use custodia_domain::{
    ChainId, ChainIndex, ChainVerifier, CommandId, EventFields, EventLocation, LogCursor, Position,
    RecordedEvent, StreamId, StreamVersion,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::Sqlite;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::inline_reader::InlineReader;
use crate::migrations;

mod writer;
use crate::stored::{
    committed_row, decode_event, lookup_sql, snapshots, store_error, to_i64, COMMITTED_COMMAND,
    EVENT_COLUMNS,
};
use writer::Job;

/// The most appends one group commit carries.
pub const MAX_GROUP: usize = 64;

/// The shared lookup plus the next free position (column 11).
static LOOKUP: LazyLock<String> =
    LazyLock::new(|| lookup_sql(", (SELECT coalesce(max(position), 0) + 1 FROM events)"));

/// Rows per multi-row INSERT: 19 parameters each, under SQLite's 32766.
const INSERT_CHUNK: usize = 1000;

#[derive(Debug)]
pub struct SqliteEventStore {
    /// The database file, for the zero-copy verification scan.
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    writer: SqlitePool,
    reader: SqlitePool,
    /// Stream reads on the caller's own thread (`inline_reader.rs`).
    inline: InlineReader,
    appended: watch::Sender<u64>,
}

type Outcome = Result<Vec<Appended>, AppendError>;

impl SqliteEventStore {
    /// Opens (or, with `create`, creates) the database file named by `url`
    /// (`sqlite://path`). Does not migrate.
    pub async fn connect(url: &str, create: bool) -> Result<Self, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // The writer, its thread and the readers are separate
            // connections: each would see a database of its own.
            return Err(StoreError::unavailable(
                "the event log needs a SQLite file, not an in-memory database".to_owned(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged append survives power loss (ADR 0003).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = crate::pools::sqlite_pool(1)
            .connect_with(options.clone())
            .await
            .map_err(store_error)?;
        // Touch the file so that "not a database" surfaces here, not later.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&writer)
            .await
            .map_err(store_error)?;
        let reader = crate::pools::sqlite_pool(4)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(store_error)?;
        let appended = watch::channel(0).0;
        let (jobs, queue) = mpsc::channel(4 * MAX_GROUP);
        let connection = writer::open(options.get_filename())?;
        let signal = appended.clone();
        std::thread::Builder::new()
            .name("custodia-sqlite-writer".to_owned())
            .spawn(move || writer::run(connection, queue, signal))
            .map_err(|e| {
                StoreError::unavailable(format!("the SQLite writer did not start: {e}"))
            })?;
        Ok(Self {
            path: options.get_filename().to_path_buf(),
            inline: InlineReader::new(options.get_filename()),
            jobs,
            writer,
            reader,
            appended,
        })
    }

    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        migrations::migrate_sqlite(&migrations::LOG, &self.writer).await
    }

    pub async fn require_current_schema(&self) -> Result<(), StoreError> {
        migrations::require_current(
            migrations::sqlite_status(&migrations::LOG, &self.writer).await?,
        )
    }

    /// Hands a job to the writer task and waits for its outcome.
    async fn write(&self, requests: Vec<AppendRequest>) -> Outcome {
        let stopped = || StoreError::unavailable("the SQLite writer has stopped".to_owned());
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job::Append { requests, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// The events a select of [`EVENT_COLUMNS`] finds, read on the
    /// caller's thread.
    fn read_events(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inline
            .read(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(params)?;
                let mut events = Vec::new();
                while let Some(row) = rows.next()? {
                    events.push(decode_event(row));
                }
                Ok(events)
            })?
            .into_iter()
            .collect()
    }

    async fn fetch_events<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = query.fetch_all(&self.reader).await.map_err(store_error)?;
        rows.iter().map(decode_event).collect()
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let mut appended = self.write(vec![request]).await?;
        Ok(appended.remove(0))
    }

    async fn append_atomic(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, AppendError> {
        check_atomic(&requests)?;
        self.write(requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream_category = ? AND stream_id = ? \
                 AND stream_version > ? ORDER BY stream_version LIMIT ?"
            )
        });
        self.read_events(
            &SQL,
            rusqlite::params![
                stream.category.as_str(),
                &stream.id.as_bytes()[..],
                to_i64(after.0),
                limit as i64,
            ],
        )
    }

    async fn read_all(
        &self,
        after: LogCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // One writer at a time: position order is commit order, and each
        // append's transaction number is its first position.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
            )
        });
        self.read_events(
            &SQL,
            rusqlite::params![to_i64(after.position), limit as i64],
        )
    }

    async fn read_chain(
        &self,
        chain: ChainId,
        from: ChainIndex,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE chain_id = ? AND chain_index >= ? \
             ORDER BY chain_index LIMIT ?"
        );
        self.fetch_events(
            sqlx::query(&sql)
                .bind(chain.as_uuid())
                .bind(to_i64(from.0))
                .bind(limit as i64),
        )
        .await
    }

    async fn chains(&self) -> Result<Vec<ChainSummary>, StoreError> {
        // Read as bytes: a row whose chain id was made unreadable belongs to
        // no chain (its own chain then misses it, and verification says so
        // there) rather than failing the whole listing.
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT chain_id, count(*) FROM events GROUP BY chain_id ORDER BY chain_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(chain, events)| {
                let chain = Uuid::from_slice(&chain).ok()?;
                Some(ChainSummary {
                    chain: ChainId::from_uuid(chain),
                    events: events as u64,
                })
            })
            .collect())
    }

    async fn committed_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommittedCommand>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| COMMITTED_COMMAND.replace('$', "?"));
        self.inline
            .read(|conn| {
                let mut statement = conn.prepare_cached(&SQL)?;
                let mut rows = statement.query([&command_id.as_uuid().as_bytes()[..]])?;
                Ok(rows.next()?.map(committed_row))
            })?
            .transpose()
    }

    async fn head(&self) -> Result<LogCursor, StoreError> {
        let row: Option<(i64, i64)> = self.inline.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT transaction_id, position FROM events ORDER BY position DESC LIMIT 1",
            )?;
            let mut rows = statement.query([])?;
            rows.next()?
                .map(|row| Ok((row.get(0)?, row.get(1)?)))
                .transpose()
        })?;
        Ok(
            row.map_or(LogCursor::START, |(transaction, position)| LogCursor {
                transaction: transaction as u64,
                position: position as u64,
            }),
        )
    }

    fn append_signal(&self) -> AppendSignal {
        AppendSignal::new(self.appended.subscribe())
    }

    async fn durability(&self) -> Result<custodia_application::Durability, StoreError> {
        // Read on the writer's own connection: the one whose commits count.
        let stopped = || StoreError::unavailable("the SQLite writer has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Settings { reply })
            .await
            .map_err(|_| stopped())?;
        let settings = answer.await.map_err(|_| stopped())??;
        Ok(custodia_application::Durability {
            backend: "sqlite",
            settings,
        })
    }

    async fn snapshot(&self, stream: &StreamId) -> Result<Option<StoredSnapshot>, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| snapshots::LOAD.replace('$', "?"));
        self.inline
            .read(|conn| {
                let mut statement = conn.prepare_cached(&SQL)?;
                let mut rows = statement.query(rusqlite::params![
                    stream.category.as_str(),
                    &stream.id.as_bytes()[..],
                ])?;
                Ok(rows.next()?.map(|row| snapshots::decode(stream, row)))
            })?
            .transpose()
    }

    async fn save_snapshot(
        &self,
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
    ) -> Result<(), StoreError> {
        let stopped = || StoreError::unavailable("the SQLite writer has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Snapshot {
                snapshot,
                replacing,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn drop_snapshots(&self) -> Result<u64, StoreError> {
        snapshots::drop_all(&self.writer).await
    }

    /// Scans the chain on a blocking thread with borrowed rows (sqlx copies
    /// every value of every row, which caps it near 100k events/s).
    async fn verify_chain(
        &self,
        chain: ChainId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ChainVerdict, StoreError> {
        let path = self.path.clone();
        let scanned = Arc::new(AtomicU64::new(0));
        let counter = scanned.clone();
        let mut scan = tokio::task::spawn_blocking(move || scan_chain(&path, chain, &counter));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut reported = 0;
        let verdict = loop {
            tokio::select! {
                joined = &mut scan => {
                    break joined.map_err(|e| StoreError::database(format!("verification stopped: {e}")))??;
                }
                _ = tick.tick() => {
                    let now = scanned.load(Ordering::Relaxed);
                    progress(now - reported);
                    reported = now;
                }
            }
        };
        progress(verdict.events - reported);
        Ok(verdict)
    }
}

/// Columns of the verification scan, in the order [`scan_chain`] reads them.
const SCAN: &str = "SELECT position, chain_id, chain_index, prev_hash, event_id, stream_category, \
    stream_id, stream_version, event_type, schema_version, recorded_at, actor, command_id, \
    correlation_id, causation_id, origin, payload, hash \
    FROM events WHERE chain_id = ?1 ORDER BY chain_index, position";

/// One row of the verification scan, as the verifier takes it.
struct ScanRow<'r> {
    fields: EventFields<'r>,
    hash: &'r [u8],
    same_chain: bool,
}

/// Reads a row of [`SCAN`] without interpreting more than the hash needs.
/// A value that is not of its column's kind names the field (and the chain
/// index, if that much was read).
fn scan_row<'r>(row: &'r rusqlite::Row<'_>, chain: Uuid) -> Result<ScanRow<'r>, (F, Option<u64>)> {
    let mut chain_index = None;
    let blob = |i: usize, field: F| {
        row.get_ref(i)
            .ok()
            .and_then(|v| v.as_blob().ok())
            .ok_or(field)
    };
    let text = |i: usize, field: F| {
        row.get_ref(i)
            .ok()
            .and_then(|v| v.as_str().ok())
            .ok_or(field)
    };
    let int = |i: usize, field: F| {
        row.get_ref(i)
            .ok()
            .and_then(|v| v.as_i64().ok())
            .ok_or(field)
    };
    let uint = |i: usize, field: F| u64::try_from(int(i, field)?).map_err(|_| field);
    let uuid = |i: usize, field: F| Uuid::from_slice(blob(i, field)?).map_err(|_| field);
    let mut read = || -> Result<ScanRow<'r>, F> {
        chain_index = Some(uint(2, F::ChainIndex)?);
        let causation_id = match row.get_ref(14) {
            Ok(rusqlite::types::ValueRef::Null) => None,
            _ => Some(uuid(14, F::CausationId)?),
        };
        let fields = EventFields {
            chain,
            chain_index: uint(2, F::ChainIndex)?,
            prev_hash: blob(3, F::PreviousHash)?,
            event_id: uuid(4, F::EventId)?,
            stream_category: text(5, F::StreamCategory)?,
            stream_id: uuid(6, F::StreamId)?,
            stream_version: uint(7, F::StreamVersion)?,
            event_type: text(8, F::EventType)?,
            schema_version: u32::try_from(uint(9, F::SchemaVersion)?)
                .map_err(|_| F::SchemaVersion)?,
            recorded_at: int(10, F::RecordedAt)?,
            actor: text(11, F::Actor)?,
            command_id: uuid(12, F::CommandId)?,
            correlation_id: uuid(13, F::CorrelationId)?,
            causation_id,
            origin: text(15, F::Origin)?,
            payload: blob(16, F::Payload)?,
        };
        Ok(ScanRow {
            fields,
            hash: blob(17, F::Hash)?,
            same_chain: blob(1, F::ChainId)? == chain.as_bytes(),
        })
    };
    read().map_err(|field| (field, chain_index))
}

fn scan_chain(
    path: &Path,
    chain: ChainId,
    scanned: &AtomicU64,
) -> Result<ChainVerdict, StoreError> {
    use rusqlite::OpenFlags;
    let db_error = |e: rusqlite::Error| StoreError::database(e.to_string());
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::unavailable(e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(db_error)?;
    let mut statement = conn.prepare(SCAN).map_err(db_error)?;
    let chain_bytes = chain.as_uuid();
    let mut rows = statement
        .query([chain_bytes.as_bytes()])
        .map_err(db_error)?;
    let mut verifier = ChainVerifier::new(chain);
    let mut events = 0u64;
    while let Some(row) = rows.next().map_err(db_error)? {
        events += 1;
        if events % 4096 == 0 {
            scanned.store(events, Ordering::Relaxed);
        }
        let position = row
            .get_ref(0)
            .ok()
            .and_then(|v| v.as_i64().ok())
            .and_then(|v| u64::try_from(v).ok())
            .map(Position);
        let broken = match (position, scan_row(row, chain_bytes)) {
            (Some(position), Ok(scanned_row)) => {
                let location = EventLocation {
                    position,
                    chain_index: scanned_row.fields.chain_index,
                    event_id: scanned_row.fields.event_id,
                    stream_category: scanned_row.fields.stream_category,
                    stream_id: scanned_row.fields.stream_id,
                    stream_version: scanned_row.fields.stream_version,
                };
                verifier
                    .push_fields(
                        location,
                        &scanned_row.fields,
                        scanned_row.hash,
                        scanned_row.same_chain,
                    )
                    .err()
            }
            (None, _) => Some(verifier.unreadable(Position(0), None, F::Position)),
            (Some(position), Err((field, chain_index))) => {
                Some(verifier.unreadable(position, chain_index, field))
            }
        };
        if let Some(broken) = broken {
            return Ok(ChainVerdict::broken(events, broken));
        }
    }
    scanned.store(events, Ordering::Relaxed);
    Ok(ChainVerdict::finished(events, verifier))
}
