//! The event store on an embedded SQLite file (WAL mode). One writer
//! connection serialises appends — SQLite allows one writer at a time anyway —
//! so positions are assigned in commit order; readers use a separate pool.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use custodia_application::event_store::CommittedCommand;
use custodia_application::{
    AppendError, AppendRequest, AppendSignal, Appended, ChainSummary, EventStore, StoreError,
};
use custodia_domain::chain::seal;
use custodia_domain::{
    ChainId, ChainIndex, CommandId, LogCursor, Position, RecordedEvent, StreamId, StreamVersion,
    Timestamp,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::watch;
use uuid::Uuid;

use crate::migrations;
use crate::stored::{
    chain_head, committed_command, decode_event, store_error, to_i64, EVENT_COLUMNS,
};

#[derive(Debug)]
pub struct SqliteEventStore {
    writer: SqlitePool,
    reader: SqlitePool,
    appended: watch::Sender<u64>,
}

impl SqliteEventStore {
    /// Opens (or, with `create`, creates) the database file named by `url`
    /// (`sqlite://path`). Does not migrate.
    pub async fn connect(url: &str, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed append survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(store_error)?;
        // Touch the file so that "not a database" surfaces here, not later.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&writer)
            .await
            .map_err(store_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(store_error)?;
        Ok(Self {
            writer,
            reader,
            appended: watch::channel(0).0,
        })
    }

    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        migrations::migrate_sqlite(&self.writer).await
    }

    pub async fn require_current_schema(&self) -> Result<(), StoreError> {
        migrations::require_current(migrations::sqlite_status(&self.writer).await?)
    }

    async fn committed_command(
        tx: &mut Transaction<'_, Sqlite>,
        command_id: CommandId,
    ) -> Result<Option<CommittedCommand>, StoreError> {
        let row = sqlx::query(
            "SELECT stream_category, stream_id, event_count, last_version, last_chain_index, \
             last_position, transaction_id FROM commands WHERE command_id = ?",
        )
        .bind(command_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(store_error)?;
        row.map(|row| committed_command(&row)).transpose()
    }

    async fn try_append(&self, request: &AppendRequest) -> Result<Appended, AppendError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        if let Some(command) = Self::committed_command(&mut tx, request.command_id()).await? {
            return command.replay(request);
        }
        let stream = request.stream();
        let chain = request.chain();
        let current: Option<(Uuid, i64)> = sqlx::query_as(
            "SELECT chain_id, stream_version FROM events WHERE stream_category = ? \
             AND stream_id = ? ORDER BY stream_version DESC LIMIT 1",
        )
        .bind(stream.category.as_str())
        .bind(stream.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let version = match current {
            Some((owner, _)) if owner != chain.as_uuid() => {
                return Err(AppendError::WrongChain {
                    stream: stream.clone(),
                })
            }
            Some((_, version)) => StreamVersion(version as u64),
            None => StreamVersion::EMPTY,
        };
        request.check_version(version)?;

        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT chain_index, hash FROM events WHERE chain_id = ? \
             ORDER BY chain_index DESC LIMIT 1",
        )
        .bind(chain.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let head = chain_head(head)?;
        let first_position: i64 =
            sqlx::query_scalar("SELECT coalesce(max(position), 0) + 1 FROM events")
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;

        let meta = request.metadata();
        let sealed = seal(
            chain,
            head,
            stream,
            version,
            request.events(),
            meta,
            Timestamp::now(),
        );
        for (offset, event) in sealed.iter().enumerate() {
            sqlx::query(
                "INSERT INTO events (position, transaction_id, event_id, chain_id, chain_index, \
                 stream_category, stream_id, stream_version, event_type, schema_version, payload, \
                 actor, command_id, correlation_id, causation_id, origin, recorded_at, prev_hash, \
                 hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(first_position + offset as i64)
            .bind(first_position)
            .bind(event.event_id.as_uuid())
            .bind(chain.as_uuid())
            .bind(to_i64(event.chain_index.0))
            .bind(stream.category.as_str())
            .bind(stream.id)
            .bind(to_i64(event.stream_version.0))
            .bind(event.event_type.as_str())
            .bind(event.schema_version.get() as i32)
            .bind(event.payload.as_bytes())
            .bind(meta.actor.to_string())
            .bind(meta.command_id.as_uuid())
            .bind(meta.correlation_id)
            .bind(meta.causation_id)
            .bind(meta.origin.as_str())
            .bind(event.recorded_at.0)
            .bind(&event.prev_hash.0[..])
            .bind(&event.hash.0[..])
            .execute(&mut *tx)
            .await
            .map_err(insert_error)?;
        }
        let last = sealed.last().expect("an append carries at least one event");
        let appended = Appended {
            stream_version: last.stream_version,
            chain_index: last.chain_index,
            position: Position((first_position as u64) + sealed.len() as u64 - 1),
            cursor: LogCursor {
                transaction: first_position as u64,
                position: (first_position as u64) + sealed.len() as u64 - 1,
            },
        };
        sqlx::query(
            "INSERT INTO commands (command_id, chain_id, stream_category, stream_id, event_count, \
             last_position, last_version, last_chain_index, transaction_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(meta.command_id.as_uuid())
        .bind(chain.as_uuid())
        .bind(stream.category.as_str())
        .bind(stream.id)
        .bind(sealed.len() as i64)
        .bind(to_i64(appended.position.0))
        .bind(to_i64(appended.stream_version.0))
        .bind(to_i64(appended.chain_index.0))
        .bind(to_i64(appended.cursor.transaction))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(appended)
    }

    async fn fetch_events<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = query.fetch_all(&self.reader).await.map_err(store_error)?;
        rows.iter().map(decode_event).collect()
    }
}

fn insert_error(error: sqlx::Error) -> AppendError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() && db.message().contains("events.event_id") {
            return AppendError::DuplicateEventId;
        }
    }
    AppendError::Store(store_error(error))
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let appended = self.try_append(&request).await?;
        self.appended.send_modify(|n| *n += 1);
        Ok(appended)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_category = ? AND stream_id = ? \
             AND stream_version > ? ORDER BY stream_version LIMIT ?"
        );
        self.fetch_events(
            sqlx::query(&sql)
                .bind(stream.category.as_str())
                .bind(stream.id)
                .bind(to_i64(after.0))
                .bind(limit as i64),
        )
        .await
    }

    async fn read_all(
        &self,
        after: LogCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // One writer at a time: position order is commit order, and each
        // append's transaction number is its first position.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        );
        self.fetch_events(
            sqlx::query(&sql)
                .bind(to_i64(after.position))
                .bind(limit as i64),
        )
        .await
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
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT chain_id, count(*) FROM events GROUP BY chain_id ORDER BY chain_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(chain, events)| ChainSummary {
                chain: ChainId::from_uuid(chain),
                events: events as u64,
            })
            .collect())
    }

    fn append_signal(&self) -> AppendSignal {
        AppendSignal::new(self.appended.subscribe())
    }
}
