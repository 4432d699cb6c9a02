//! The writer of the SQLite store: one thread that owns the one writer
//! connection (rusqlite, statements prepared once) and commits the appends
//! waiting for it in groups. It runs every statement on its own thread,
//! where an async driver would hand each one to a worker thread and wait
//! for its answer: a group's time is its statements' work and one fsync.

use std::path::Path;
use std::sync::LazyLock;

use custodia_application::{
    AppendContext, AppendDecision, AppendError, AppendRequest, Appended, StoreError, StoredSnapshot,
};
use custodia_domain::{LogCursor, Position, RecordedEvent, StreamVersion, Timestamp};
use rusqlite::{named_params, Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Outcome, INSERT_CHUNK, LOOKUP, MAX_GROUP};
use crate::inline_reader::sqlite_error as db_error;
use crate::stored::{append_context, snapshots, to_i64};

/// Work for the writer thread.
pub(super) enum Job {
    /// An append (one batch, or the batches of an atomic append).
    Append {
        requests: Vec<AppendRequest>,
        reply: oneshot::Sender<Outcome>,
    },
    /// A snapshot to keep (`stored::snapshots::SAVE`): written here, so it
    /// never waits for the writer's lock on another connection.
    Snapshot {
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// The writer connection's durability settings, as it sees them.
    Settings {
        reply: oneshot::Sender<Result<Vec<(String, String)>, StoreError>>,
    },
}

/// Opens the writer connection on `path` (WAL, `synchronous=FULL`: an
/// acknowledged append survives power loss, ADR 0003).
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::unavailable(e.to_string()))?;
    crate::inline_reader::wait_briefly_when_busy(&conn).map_err(db_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_error)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The writer thread's loop: until the store (the last sender) is dropped.
pub(super) fn run(conn: Connection, mut queue: mpsc::Receiver<Job>, appended: watch::Sender<u64>) {
    let mut group: Vec<(Vec<AppendRequest>, oneshot::Sender<Outcome>)> =
        Vec::with_capacity(MAX_GROUP);
    let mut snapshots = Vec::new();
    while let Some(job) = queue.blocking_recv() {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Append { requests, reply } => group.push((requests, reply)),
                Job::Snapshot {
                    snapshot,
                    replacing,
                    reply,
                } => snapshots.push((snapshot, replacing, reply)),
                Job::Settings { reply } => {
                    let _ = reply.send(settings(&conn));
                }
            }
            if group.len() + snapshots.len() < MAX_GROUP {
                next = queue.try_recv().ok();
            }
        }
        if !snapshots.is_empty() {
            // Derived data, in a transaction of its own: a failure here
            // fails no append.
            let saved = save_snapshots(&conn, &snapshots);
            for (_, _, reply) in snapshots.drain(..) {
                let _ = reply.send(saved.clone());
            }
        }
        if group.is_empty() {
            continue;
        }
        let jobs: Vec<&[AppendRequest]> = group.iter().map(|(r, _)| &r[..]).collect();
        let outcomes = match commit_group(&conn, &jobs) {
            Ok(outcomes) => outcomes,
            Err(error) if jobs.len() == 1 => vec![Err(error)],
            Err(_) => jobs
                .iter()
                .map(|job| match commit_group(&conn, &[job]) {
                    Ok(mut single) => single.remove(0),
                    Err(error) => Err(error),
                })
                .collect(),
        };
        if outcomes.iter().any(Result::is_ok) {
            appended.send_modify(|n| *n += 1);
        }
        for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
            // The caller may have gone away; its append stands regardless.
            let _ = reply.send(outcome);
        }
    }
}

/// A snapshot job's contents.
type SnapshotJob = (
    StoredSnapshot,
    Option<StreamVersion>,
    oneshot::Sender<Result<(), StoreError>>,
);

fn save_snapshots(conn: &Connection, snapshots: &[SnapshotJob]) -> Result<(), StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| snapshots::SAVE.replace('$', "?"));
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(db_error)?;
    for (snapshot, replacing, _) in snapshots {
        tx.prepare_cached(&SQL)
            .and_then(|mut statement| {
                statement.execute(rusqlite::params![
                    snapshot.stream.category.as_str(),
                    &snapshot.stream.id.as_bytes()[..],
                    &snapshot.chain.as_uuid().as_bytes()[..],
                    to_i64(snapshot.stream_version.0),
                    i32::try_from(snapshot.form_version).unwrap_or(i32::MAX),
                    &snapshot.state,
                    replacing.map_or(-1, |version| to_i64(version.0)),
                ])
            })
            .map_err(db_error)?;
    }
    tx.commit().map_err(db_error)
}

fn settings(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .map_err(db_error)?;
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .map_err(db_error)?;
    // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    let synchronous = ["off", "normal", "full", "extra"]
        .get(usize::try_from(synchronous).unwrap_or(usize::MAX))
        .map_or_else(|| synchronous.to_string(), |s| (*s).to_owned());
    Ok(vec![
        ("synchronous".to_owned(), synchronous),
        ("journal_mode".to_owned(), journal.to_lowercase()),
    ])
}

/// One transaction for the whole group: the outcome of each job, or an
/// error if a write or the commit failed (then nothing was committed). A
/// job of several batches runs under a savepoint, so a refusal of any of
/// them undoes the ones before it and nothing else.
fn commit_group(conn: &Connection, jobs: &[&[AppendRequest]]) -> Result<Vec<Outcome>, AppendError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
    match write_group(conn, jobs) {
        Ok(outcomes) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(outcomes),
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(db_error(error).into())
            }
        },
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn write_group(conn: &Connection, jobs: &[&[AppendRequest]]) -> Result<Vec<Outcome>, AppendError> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for requests in jobs {
        let atomic = requests.len() > 1;
        if atomic {
            conn.execute_batch("SAVEPOINT atomic_append")
                .map_err(db_error)?;
        }
        let mut appended = Vec::with_capacity(requests.len());
        let mut refused = None;
        for request in requests.iter() {
            match append_one(conn, request)? {
                Ok(one) => appended.push(one),
                Err(refusal) => {
                    refused = Some(refusal);
                    break;
                }
            }
        }
        if atomic {
            let undo = if refused.is_some() {
                "ROLLBACK TO atomic_append; RELEASE atomic_append"
            } else {
                "RELEASE atomic_append"
            };
            conn.execute_batch(undo).map_err(db_error)?;
        }
        outcomes.push(match refused {
            Some(refusal) => Err(refusal),
            None => Ok(appended),
        });
    }
    Ok(outcomes)
}

/// Decides and writes one batch inside the group's transaction: its
/// outcome, or an error that fails the whole group.
fn append_one(
    conn: &Connection,
    request: &AppendRequest,
) -> Result<Result<Appended, AppendError>, AppendError> {
    let stream = request.stream();
    let (context, first_position) = conn
        .prepare_cached(&LOOKUP)
        .map_err(db_error)?
        .query_row(
            named_params! {
                "$1": stream.category.as_str(),
                "$2": &stream.id.as_bytes()[..],
                "$3": &request.chain().as_uuid().as_bytes()[..],
                "$4": &request.command_id().as_uuid().as_bytes()[..],
            },
            |row| Ok(lookup_row(row)),
        )
        .map_err(db_error)?;
    let context = context?;
    Ok(match request.decide(context, Timestamp::now()) {
        Err(refused) => Err(refused),
        Ok(AppendDecision::Replay(appended)) => Ok(appended),
        Ok(AppendDecision::Append(sealed)) => Ok(insert(conn, request, &sealed, first_position)?),
    })
}

/// Reads a row of the lookup: `stored::lookup_sql` plus the next free
/// position in column 11.
fn lookup_row(row: &rusqlite::Row<'_>) -> (Result<AppendContext, StoreError>, i64) {
    match row.get::<_, i64>(11) {
        Ok(first_position) => (append_context(row), first_position),
        Err(_) => (
            Err(StoreError::corrupt(
                "unreadable position while appending".to_owned(),
            )),
            0,
        ),
    }
}

/// Writes sealed events at positions from `first_position`, and the
/// idempotency record.
fn insert(
    conn: &Connection,
    request: &AppendRequest,
    sealed: &[RecordedEvent],
    first_position: i64,
) -> Result<Appended, AppendError> {
    let meta = request.metadata();
    let stream = request.stream();
    let chain = request.chain().as_uuid();
    let actor = meta.actor.to_string();
    let causation = meta.causation_id.map(|id| id.as_bytes().to_vec());
    for (chunk_index, chunk) in sealed.chunks(INSERT_CHUNK).enumerate() {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()];
        let sql = format!(
            "INSERT INTO events (position, transaction_id, event_id, chain_id, chain_index, \
             stream_category, stream_id, stream_version, event_type, schema_version, payload, \
             actor, command_id, correlation_id, causation_id, origin, recorded_at, prev_hash, \
             hash) VALUES {}",
            rows.join(", ")
        );
        let mut statement = conn.prepare_cached(&sql).map_err(db_error)?;
        let mut at = 1;
        let mut bind = |value: &dyn rusqlite::ToSql| {
            let bound = statement.raw_bind_parameter(at, value);
            at += 1;
            bound
        };
        for (offset, event) in chunk.iter().enumerate() {
            let position = first_position + (chunk_index * INSERT_CHUNK + offset) as i64;
            for value in [
                &position as &dyn rusqlite::ToSql,
                &first_position,
                &&event.event_id.as_uuid().as_bytes()[..],
                &&chain.as_bytes()[..],
                &to_i64(event.chain_index.0),
                &stream.category.as_str(),
                &&stream.id.as_bytes()[..],
                &to_i64(event.stream_version.0),
                &event.event_type.as_str(),
                &i64::from(event.schema_version.get()),
                &event.payload.as_bytes(),
                &actor.as_str(),
                &&meta.command_id.as_uuid().as_bytes()[..],
                &&meta.correlation_id.as_bytes()[..],
                &causation,
                &meta.origin.as_str(),
                &event.recorded_at.0,
                &&event.prev_hash.0[..],
                &&event.hash.0[..],
            ] {
                bind(value).map_err(db_error)?;
            }
        }
        statement.raw_execute().map_err(insert_error)?;
    }
    let last = sealed.last().expect("an append carries at least one event");
    let last_position = first_position as u64 + sealed.len() as u64 - 1;
    let appended = Appended {
        stream_version: last.stream_version,
        chain_index: last.chain_index,
        position: Position(last_position),
        cursor: LogCursor {
            transaction: first_position as u64,
            position: last_position,
        },
    };
    conn.prepare_cached(
        "INSERT INTO commands (command_id, chain_id, stream_category, stream_id, event_count, \
         last_position, last_version, last_chain_index, transaction_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .map_err(db_error)?
    .execute(rusqlite::params![
        &meta.command_id.as_uuid().as_bytes()[..],
        &chain.as_bytes()[..],
        stream.category.as_str(),
        &stream.id.as_bytes()[..],
        sealed.len() as i64,
        to_i64(last_position),
        to_i64(appended.stream_version.0),
        to_i64(appended.chain_index.0),
        first_position,
    ])
    .map_err(db_error)?;
    Ok(appended)
}

fn insert_error(error: rusqlite::Error) -> AppendError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &error {
        if failure.code == rusqlite::ErrorCode::ConstraintViolation
            && message.contains("events.event_id")
        {
            return AppendError::DuplicateEventId;
        }
    }
    AppendError::Store(db_error(error))
}
