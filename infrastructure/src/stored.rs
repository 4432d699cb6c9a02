//! What both adapters share: the stored column list, decoding a row into a
//! [`RecordedEvent`], and mapping sqlx errors to the port's errors.

use custodia_application::{AppendContext, Appended, CommittedCommand, StoreError};
use custodia_domain::{
    Actor, ChainHead, ChainId, ChainIndex, CommandId, EventHash, EventId, EventType, LogCursor,
    Metadata, Origin, Payload, Position, RecordedEvent, SchemaVersion, StreamCategory, StreamId,
    StreamVersion, Timestamp,
};
use sqlx::Row;
use uuid::Uuid;

/// Every stored column of `events`, in the order [`decode_event`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "position, transaction_id, event_id, chain_id, \
    chain_index, stream_category, stream_id, stream_version, event_type, schema_version, \
    payload, actor, command_id, correlation_id, causation_id, origin, recorded_at, \
    prev_hash, hash";

/// The columns of a row, whichever driver read it: `None` for a value
/// that is missing or of another type.
pub(crate) trait Columns {
    fn int(&self, i: usize) -> Option<i64>;
    fn text(&self, i: usize) -> Option<String>;
    fn bytes(&self, i: usize) -> Option<Vec<u8>>;
    fn uuid(&self, i: usize) -> Option<Uuid>;
    /// `Some(None)`: NULL (so for every `optional_` reader).
    fn optional_uuid(&self, i: usize) -> Option<Option<Uuid>>;
    fn optional_int(&self, i: usize) -> Option<Option<i64>>;
    fn optional_text(&self, i: usize) -> Option<Option<String>>;
}

macro_rules! sqlx_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, i: usize) -> Option<i64> {
                // PostgreSQL's `integer` columns decode only as i32.
                self.try_get::<i64, _>(i)
                    .ok()
                    .or_else(|| self.try_get::<i32, _>(i).ok().map(i64::from))
            }
            fn text(&self, i: usize) -> Option<String> {
                self.try_get(i).ok()
            }
            fn bytes(&self, i: usize) -> Option<Vec<u8>> {
                self.try_get(i).ok()
            }
            fn uuid(&self, i: usize) -> Option<Uuid> {
                self.try_get(i).ok()
            }
            fn optional_uuid(&self, i: usize) -> Option<Option<Uuid>> {
                self.try_get(i).ok()
            }
            fn optional_int(&self, i: usize) -> Option<Option<i64>> {
                self.try_get::<Option<i64>, _>(i).ok().or_else(|| {
                    self.try_get::<Option<i32>, _>(i)
                        .ok()
                        .map(|v| v.map(i64::from))
                })
            }
            fn optional_text(&self, i: usize) -> Option<Option<String>> {
                self.try_get(i).ok()
            }
        }
    };
}
sqlx_columns!(sqlx::postgres::PgRow);
sqlx_columns!(sqlx::sqlite::SqliteRow);

/// SQLite keeps UUIDs as 16-byte blobs (as sqlx writes them).
impl Columns for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Option<i64> {
        self.get(i).ok()
    }
    fn text(&self, i: usize) -> Option<String> {
        self.get(i).ok()
    }
    fn bytes(&self, i: usize) -> Option<Vec<u8>> {
        self.get(i).ok()
    }
    fn uuid(&self, i: usize) -> Option<Uuid> {
        self.get::<_, Vec<u8>>(i)
            .ok()
            .and_then(|bytes| Uuid::from_slice(&bytes).ok())
    }
    fn optional_uuid(&self, i: usize) -> Option<Option<Uuid>> {
        match self.get::<_, Option<Vec<u8>>>(i).ok()? {
            None => Some(None),
            Some(bytes) => Uuid::from_slice(&bytes).ok().map(Some),
        }
    }
    fn optional_int(&self, i: usize) -> Option<Option<i64>> {
        self.get(i).ok()
    }
    fn optional_text(&self, i: usize) -> Option<Option<String>> {
        self.get(i).ok()
    }
}

/// Reads one `events` row selected with [`EVENT_COLUMNS`]. A value that no
/// longer parses is reported as corruption at that position; nothing panics.
pub(crate) fn decode_event(row: &impl Columns) -> Result<RecordedEvent, StoreError> {
    let position = row
        .int(0)
        .ok_or_else(|| StoreError::corrupt("unreadable event row: position".to_owned()))?;
    let bad = |field: &str| {
        StoreError::corrupt(format!(
            "event at position {position} has an unreadable {field}"
        ))
    };
    let get_u64 = |i: usize, field: &str| -> Result<u64, StoreError> {
        let value = row.int(i).ok_or_else(|| bad(field))?;
        u64::try_from(value).map_err(|_| bad(field))
    };
    let get_uuid = |i: usize, field: &str| row.uuid(i).ok_or_else(|| bad(field));
    let get_text = |i: usize, field: &str| row.text(i).ok_or_else(|| bad(field));
    let get_bytes = |i: usize, field: &str| row.bytes(i).ok_or_else(|| bad(field));
    let get_hash = |i: usize, field: &str| {
        EventHash::from_slice(&get_bytes(i, field)?).ok_or_else(|| bad(field))
    };

    Ok(RecordedEvent {
        position: Position(u64::try_from(position).map_err(|_| bad("position"))?),
        transaction: get_u64(1, "transaction id")?,
        event_id: EventId::from_uuid(get_uuid(2, "event id")?).map_err(|_| bad("event id"))?,
        chain: ChainId::from_uuid(get_uuid(3, "chain id")?),
        chain_index: ChainIndex(get_u64(4, "chain index")?),
        stream: StreamId::new(
            StreamCategory::parse(get_text(5, "stream category")?)
                .map_err(|_| bad("stream category"))?,
            get_uuid(6, "stream id")?,
        ),
        stream_version: StreamVersion(get_u64(7, "stream version")?),
        event_type: EventType::parse(get_text(8, "event type")?).map_err(|_| bad("event type"))?,
        schema_version: row
            .int(9)
            .and_then(|v| u32::try_from(v).ok())
            .and_then(|v| SchemaVersion::new(v).ok())
            .ok_or_else(|| bad("schema version"))?,
        payload: Payload::from_stored(get_bytes(10, "payload")?),
        metadata: Metadata {
            actor: get_text(11, "actor")?
                .parse::<Actor>()
                .map_err(|_| bad("actor"))?,
            command_id: CommandId::from_uuid(get_uuid(12, "command id")?)
                .map_err(|_| bad("command id"))?,
            correlation_id: get_uuid(13, "correlation id")?,
            causation_id: row.optional_uuid(14).ok_or_else(|| bad("causation id"))?,
            origin: Origin::parse(get_text(15, "origin")?).map_err(|_| bad("origin"))?,
        },
        recorded_at: Timestamp(row.int(16).ok_or_else(|| bad("recorded-at time"))?),
        prev_hash: get_hash(17, "previous hash")?,
        hash: get_hash(18, "hash")?,
    })
}

/// Maps a sqlx error to the port's error. Database messages name constraints
/// and objects, not values, so they are safe to pass on.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    let classified = match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: 11 = SQLITE_CORRUPT, 26 = SQLITE_NOTADB.
            if matches!(code.as_ref(), "11" | "26") {
                StoreError::corrupt(db.message().to_owned())
            } else if code.starts_with("08")
                || code.starts_with("28")
                || code == "3D000"
                || code == "14"
            {
                // Connection failures, bad credentials, unknown database;
                // SQLite 14 = SQLITE_CANTOPEN.
                StoreError::unavailable(db.message().to_owned())
            } else if code == "42P01" || db.message().contains("no such table") {
                StoreError::schema(
                    "the Custodia tables are missing; run `custodia migrate`".to_owned(),
                )
            } else {
                StoreError::database(db.message().to_owned())
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Configuration(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => StoreError::unavailable(error.to_string()),
        _ => StoreError::database(error.to_string()),
    };
    classified.caused_by(error)
}

/// Converts a count or coordinate for binding; every one fits in i64.
/// The snapshots table, the same on both backends: one generic reader and
/// writer, given each backend's pool.
pub(crate) mod snapshots {
    use custodia_application::{StoreError, StoredSnapshot};
    use custodia_domain::{ChainId, StreamId, StreamVersion};
    use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
    use uuid::Uuid;

    use super::{store_error, to_i64, Columns};

    /// The latest snapshot of a stream (category, id).
    pub(crate) const LOAD: &str = "SELECT chain_id, stream_version, \
        CAST(form_version AS BIGINT), state \
        FROM snapshots WHERE stream_category = $1 AND stream_id = $2";

    /// The latest snapshot of `stream`. A row that does not decode is
    /// reported, never guessed at.
    pub(crate) async fn load<'c, DB, E>(
        executor: E,
        stream: &StreamId,
    ) -> Result<Option<StoredSnapshot>, StoreError>
    where
        DB: Database,
        DB::Row: Columns,
        E: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    {
        let row = sqlx::query(LOAD)
            .bind(stream.category.as_str())
            .bind(stream.id)
            .fetch_optional(executor)
            .await
            .map_err(store_error)?;
        row.map(|row| decode(stream, &row)).transpose()
    }

    /// A row of [`LOAD`].
    pub(crate) fn decode(
        stream: &StreamId,
        row: &impl Columns,
    ) -> Result<StoredSnapshot, StoreError> {
        let corrupt = || StoreError::corrupt(format!("the snapshot of {stream} is malformed"));
        let int = |i: usize| row.int(i).ok_or_else(corrupt);
        Ok(StoredSnapshot {
            stream: stream.clone(),
            chain: ChainId::from_uuid(row.uuid(0).ok_or_else(corrupt)?),
            stream_version: StreamVersion(u64::try_from(int(1)?).map_err(|_| corrupt())?),
            form_version: u32::try_from(int(2)?).map_err(|_| corrupt())?,
            state: row.bytes(3).ok_or_else(corrupt)?,
        })
    }

    /// Keeps a snapshot (category, stream, chain, version, form, state)
    /// unless a later one is kept, or in place of the unreadable one at
    /// version `$7` (-1: none).
    pub(crate) const SAVE: &str = "INSERT INTO snapshots (stream_category, stream_id, \
        chain_id, stream_version, form_version, state) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (stream_category, stream_id) DO UPDATE SET chain_id = excluded.chain_id, \
        stream_version = excluded.stream_version, form_version = excluded.form_version, \
        state = excluded.state \
        WHERE excluded.stream_version > snapshots.stream_version \
        OR snapshots.stream_version = $7";

    /// Keeps `snapshot` unless a later one is kept, or in place of the
    /// unreadable one at `replacing`.
    pub(crate) async fn save<'c, DB, E>(
        executor: E,
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
    ) -> Result<(), StoreError>
    where
        DB: Database,
        E: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> Uuid: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> i32: Encode<'q, DB> + Type<DB>,
        for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    {
        sqlx::query(SAVE)
            .bind(snapshot.stream.category.as_str())
            .bind(snapshot.stream.id)
            .bind(snapshot.chain.as_uuid())
            .bind(to_i64(snapshot.stream_version.0))
            .bind(i32::try_from(snapshot.form_version).unwrap_or(i32::MAX))
            .bind(snapshot.state)
            .bind(replacing.map_or(-1, |version| to_i64(version.0)))
            .execute(executor)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Deletes every snapshot; returns how many there were.
    pub(crate) async fn drop_all<'c, DB, E>(executor: E) -> Result<u64, StoreError>
    where
        DB: Database,
        E: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'r> (i64,): FromRow<'r, DB::Row>,
    {
        let deleted: Vec<(i64,)> = sqlx::query_as("DELETE FROM snapshots RETURNING stream_version")
            .fetch_all(executor)
            .await
            .map_err(store_error)?;
        Ok(deleted.len() as u64)
    }
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The append lookup, the same on both backends. Parameters: $1 stream
/// category, $2 stream id, $3 chain id, $4 command id. Columns: 0-6 the
/// idempotency record (all NULL if none), 7-8 the stream's chain and version,
/// 9-10 the chain head, then `extra_columns`.
pub(crate) fn lookup_sql(extra_columns: &str) -> String {
    format!(
        "SELECT c.stream_category, c.stream_id, c.event_count, c.last_version,
                c.last_chain_index, c.last_position, c.transaction_id,
                s.chain_id, s.stream_version, h.chain_index, h.hash {extra_columns}
         FROM (SELECT 1) AS one
         LEFT JOIN commands c ON c.command_id = $4
         LEFT JOIN (SELECT chain_id, stream_version FROM events
                    WHERE stream_category = $1 AND stream_id = $2
                    ORDER BY stream_version DESC LIMIT 1) s ON true
         LEFT JOIN (SELECT chain_index, hash FROM events
                    WHERE chain_id = $3 ORDER BY chain_index DESC LIMIT 1) h ON true"
    )
}

/// Reads a row of [`lookup_sql`], whichever driver read it.
pub(crate) fn append_context(row: &impl Columns) -> Result<AppendContext, StoreError> {
    let bad = |what: &str| StoreError::corrupt(format!("unreadable {what} while appending"));
    let committed = match row
        .optional_text(0)
        .ok_or_else(|| bad("idempotency record"))?
    {
        Some(category) => {
            Some(committed_command(row, category).ok_or_else(|| bad("idempotency record"))?)
        }
        None => None,
    };
    let stream_chain = row.optional_uuid(7).ok_or_else(|| bad("stream"))?;
    let stream_version = row.optional_int(8).ok_or_else(|| bad("stream"))?;
    let head_index = row.optional_int(9).ok_or_else(|| bad("chain head"))?;
    let chain_head = match head_index {
        None => ChainHead::GENESIS,
        Some(index) => ChainHead {
            next_index: ChainIndex(u64::try_from(index).map_err(|_| bad("chain head"))? + 1),
            last_hash: row
                .bytes(10)
                .and_then(|hash| EventHash::from_slice(&hash))
                .ok_or_else(|| bad("chain head"))?,
        },
    };
    Ok(AppendContext {
        committed,
        stream_chain: stream_chain.map(ChainId::from_uuid),
        stream_version: StreamVersion(
            stream_version
                .map_or(Ok(0), u64::try_from)
                .map_err(|_| bad("stream"))?,
        ),
        chain_head,
    })
}

/// Reads the idempotency record of `command_id`, the same on both backends.
pub(crate) const COMMITTED_COMMAND: &str = "SELECT stream_category, stream_id, event_count, \
    last_version, last_chain_index, last_position, transaction_id FROM commands WHERE command_id = $1";

/// A row of [`COMMITTED_COMMAND`].
pub(crate) fn committed_row(row: &impl Columns) -> Result<CommittedCommand, StoreError> {
    let bad = || StoreError::corrupt("unreadable idempotency record".to_owned());
    let category = row.text(0).ok_or_else(bad)?;
    committed_command(row, category).ok_or_else(bad)
}

/// The idempotency record in columns 0-6 of a [`lookup_sql`] row.
fn committed_command(row: &impl Columns, category: String) -> Option<CommittedCommand> {
    let int = |i: usize| row.int(i).and_then(|v| u64::try_from(v).ok());
    Some(CommittedCommand {
        stream: StreamId::new(StreamCategory::parse(category).ok()?, row.uuid(1)?),
        event_count: int(2)? as usize,
        appended: Appended {
            stream_version: StreamVersion(int(3)?),
            chain_index: ChainIndex(int(4)?),
            position: Position(int(5)?),
            cursor: LogCursor {
                transaction: int(6)?,
                position: int(5)?,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_error_stays_the_source_of_the_store_error() {
        let error = store_error(sqlx::Error::PoolTimedOut);
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
        let source = std::error::Error::source(&error).expect("the driver's error is kept");
        assert_eq!(source.to_string(), sqlx::Error::PoolTimedOut.to_string());
    }
}
