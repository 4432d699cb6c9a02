//! The event store on PostgreSQL.
//!
//! Appends to one chain are serialised by a transaction-scoped advisory lock
//! taken before anything else, so a chain's events get increasing positions
//! and transaction ids in chain order. Appends to different chains run in
//! parallel. Followers read below the oldest running transaction id, so an
//! event that commits late can never sort before one already read
//! (docs/adr/0002-gap-safe-reads.md).
//!
//! Single appends are committed in groups: callers queue them on one of a
//! few lanes (by their chain's lock key, so one chain always meets the same
//! committer), and each lane's committer takes what has queued (up to
//! [`GROUP_MAX`]), tries every chain lock of the group, decides and writes
//! each append, and commits once. The round trips of BEGIN, the locks and
//! COMMIT, and the WAL flush, are shared by the group. An append a group
//! cannot decide (its expected version) fails alone; one whose chain
//! another transaction holds waits for it on its own; a database error in
//! a group makes each of its appends run again on its own.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use custodia_application::{
    check_atomic, AppendDecision, AppendError, AppendRequest, AppendSignal, Appended, ChainSummary,
    ChainVerdict, CommittedCommand, EventStore, StoreError, StoredSnapshot,
};
use custodia_domain::chain::StoredField as F;
use custodia_domain::{
    ChainBreak, ChainId, ChainIndex, ChainVerifier, CommandId, EventFields, EventLocation,
    LogCursor, Position, RecordedEvent, StreamId, StreamVersion, Timestamp,
};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::migrations;

mod group;
use crate::stored::{
    append_context, committed_row, decode_event, lookup_sql, snapshots, store_error, to_i64,
    COMMITTED_COMMAND, EVENT_COLUMNS,
};

/// The LISTEN/NOTIFY channel on which appends are announced.
const CHANNEL: &str = "custodia_events";

/// The shared append lookup (run after the chain lock).
static LOOKUP: LazyLock<String> = LazyLock::new(|| lookup_sql(""));

/// One statement for the whole batch and its idempotency record. Rows are
/// inserted in chain order, so identity positions increase along the chain.
const INSERT: &str = "
WITH inserted AS (
    INSERT INTO events (event_id, chain_id, chain_index, stream_category, stream_id,
        stream_version, event_type, schema_version, payload, actor, command_id, correlation_id,
        causation_id, origin, recorded_at, prev_hash, hash)
    SELECT e.event_id, $1, e.chain_index, $2, $3, e.stream_version, e.event_type,
           e.schema_version, e.payload, $4, $5, $6, $7, $8, $9, e.prev_hash, e.hash
    FROM UNNEST($10::uuid[], $11::bigint[], $12::bigint[], $13::text[], $14::int[],
                $15::bytea[], $16::bytea[], $17::bytea[])
         AS e(event_id, chain_index, stream_version, event_type, schema_version, payload,
              prev_hash, hash)
    ORDER BY e.chain_index
    RETURNING position, transaction_id
), recorded AS (
    INSERT INTO commands (command_id, chain_id, stream_category, stream_id, event_count,
        last_position, last_version, last_chain_index, transaction_id)
    SELECT $5, $1, $2, $3, count(*), max(position), $18, $19, max(transaction_id) FROM inserted
)
SELECT max(position), max(transaction_id) FROM inserted";

/// At most this many single appends share a transaction.
const GROUP_MAX: usize = 64;

/// An append of at least this many events commits on its own, in parallel
/// with the groups.
const SHARES_ITS_OWN: usize = 16;

/// How many groups are committed at once (one lane each): one waits for
/// its WAL flush while the other is decided and written.
const COMMITTERS: usize = 2;

/// An append waiting for its group.
struct Queued {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// One try at an append.
enum Attempt {
    Appended(Vec<Appended>),
    /// A concurrent append in another chain took a unique key first.
    Raced,
}

#[derive(Debug)]
pub struct PostgresEventStore {
    pool: PgPool,
    /// Single appends, for the committers.
    lanes: Vec<mpsc::Sender<Queued>>,
    committers: Vec<JoinHandle<()>>,
    /// Wakes this process's followers after its own appends and on NOTIFY.
    appended: watch::Sender<u64>,
    /// Asks the notifier task to NOTIFY other processes (coalesced).
    notify: watch::Sender<u64>,
    listener: JoinHandle<()>,
}

impl Drop for PostgresEventStore {
    fn drop(&mut self) {
        self.listener.abort();
        for committer in &self.committers {
            committer.abort();
        }
    }
}

impl PostgresEventStore {
    /// Connects with a pool of at most `max_connections` (plus one for
    /// LISTEN). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1) + 1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(store_error)?;
        let appended = watch::channel(0).0;
        let (notify, requests) = watch::channel(0);
        tokio::spawn(notify_other_processes(pool.clone(), requests));
        let listener = tokio::spawn(listen_for_appends(pool.clone(), appended.clone()));
        let mut lanes = Vec::with_capacity(COMMITTERS);
        let mut committers = Vec::with_capacity(COMMITTERS);
        for _ in 0..COMMITTERS {
            let (lane, queued) = mpsc::channel(4 * GROUP_MAX);
            lanes.push(lane);
            committers.push(tokio::spawn(commit_groups(
                pool.clone(),
                queued,
                appended.clone(),
                notify.clone(),
            )));
        }
        Ok(Self {
            pool,
            lanes,
            committers,
            appended,
            notify,
            listener,
        })
    }

    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        migrations::migrate_postgres(&migrations::LOG, &self.pool).await
    }

    pub async fn require_current_schema(&self) -> Result<(), StoreError> {
        migrations::require_current(
            migrations::postgres_status(&migrations::LOG, &self.pool).await?,
        )
    }

    /// [`append_all`] on this store's pool, waking followers.
    async fn append_now(&self, requests: &[AppendRequest]) -> Result<Vec<Appended>, AppendError> {
        let appended = append_all(&self.pool, requests).await?;
        self.appended.send_modify(|n| *n += 1);
        self.notify.send_modify(|n| *n += 1);
        Ok(appended)
    }

    /// A unique violation on these keys means a concurrent append in another
    /// chain won a race that this chain's lock cannot see: the same command
    /// id, or the same new stream. Looking again resolves it.
    fn is_cross_chain_race(error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(db)
            if matches!(db.constraint(), Some("commands_pkey" | "events_stream_version_key")))
    }
}

/// [`try_append`], looking again once after a cross-chain race.
async fn append_all(
    pool: &PgPool,
    requests: &[AppendRequest],
) -> Result<Vec<Appended>, AppendError> {
    match try_append(pool, requests).await? {
        Attempt::Appended(appended) => Ok(appended),
        // Lost a cross-chain race on a unique key: look again, once.
        Attempt::Raced => match try_append(pool, requests).await? {
            Attempt::Appended(appended) => Ok(appended),
            Attempt::Raced => Err(StoreError::database(
                "a concurrent append raced this one twice".to_owned(),
            )
            .into()),
        },
    }
}

/// Appends `requests` (one batch, or the batches of an atomic append) in
/// one transaction that holds their chain's lock: every one or none.
async fn try_append(pool: &PgPool, requests: &[AppendRequest]) -> Result<Attempt, AppendError> {
    let mut tx = pool
        .begin_with(begin_locking(requests))
        .await
        .map_err(store_error)?;
    let mut appended = Vec::with_capacity(requests.len());
    let mut wrote = false;
    for request in requests {
        match append_in(&mut tx, request).await? {
            Step::Replayed(one) => appended.push(one),
            Step::Wrote(one) => {
                wrote = true;
                appended.push(one);
            }
            Step::Refused(error) => return Err(error),
            Step::Raced => return Ok(Attempt::Raced),
        }
    }
    if wrote {
        tx.commit().await.map_err(store_error)?;
    }
    Ok(Attempt::Appended(appended))
}

/// BEGIN and the lock of every chain of `requests`, in key order (so that
/// two transactions never wait for each other), in one round trip. The
/// locks come before any write, so a transaction's id is assigned after it
/// holds them: transaction ids follow chain order.
fn begin_locking(requests: &[AppendRequest]) -> String {
    let mut sql = String::from("BEGIN;");
    for key in chain_lock_keys(requests) {
        sql.push_str(&format!(" SELECT pg_advisory_xact_lock({key});"));
    }
    sql
}

/// A committer: takes what has queued, commits it as one group, answers
/// each caller; until the store is dropped.
async fn commit_groups(
    pool: PgPool,
    mut queued: mpsc::Receiver<Queued>,
    appended: watch::Sender<u64>,
    notify: watch::Sender<u64>,
) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while queued.recv_many(&mut group, GROUP_MAX).await > 0 {
        let group = std::mem::take(&mut group);
        let (requests, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|q| (q.request, q.reply)).unzip();
        let answers = commit_group(&pool, &requests).await;
        if answers.iter().any(|a| matches!(a, Some(Ok(_)))) {
            appended.send_modify(|n| *n += 1);
            notify.send_modify(|n| *n += 1);
        }
        for ((request, reply), answer) in requests.into_iter().zip(replies).zip(answers) {
            match answer {
                // A caller that went away learns nothing; its append stands.
                Some(answer) => {
                    let _ = reply.send(answer);
                }
                None => {
                    let (pool, appended, notify) = (pool.clone(), appended.clone(), notify.clone());
                    tokio::spawn(async move {
                        let answer = append_all(&pool, std::slice::from_ref(&request))
                            .await
                            .map(|mut one| one.remove(0));
                        if answer.is_ok() {
                            appended.send_modify(|n| *n += 1);
                            notify.send_modify(|n| *n += 1);
                        }
                        let _ = reply.send(answer);
                    });
                }
            }
        }
    }
}

/// Appends each request of a group in one transaction when the database
/// lets it. One answer per request; `None` for one that must run on its
/// own (its chain is busy, or the group could not be written as one).
async fn commit_group(
    pool: &PgPool,
    requests: &[AppendRequest],
) -> Vec<Option<Result<Appended, AppendError>>> {
    match group::append_group(pool, requests).await {
        Ok(answers) => answers,
        Err(group::Abandoned::OneByOne) => requests.iter().map(|_| None).collect(),
        // The database cannot be used: each append would wait for it in
        // turn; all of them learn it now.
        Err(group::Abandoned::Failed(error)) => requests
            .iter()
            .map(|_| Some(Err(error.clone().into())))
            .collect(),
    }
}

impl PostgresEventStore {
    async fn fetch_events(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(store_error)?;
        rows.iter().map(decode_event).collect()
    }
}

/// What one batch did inside a transaction.
enum Step {
    Replayed(Appended),
    Wrote(Appended),
    /// Its decision refused it (an expected version, an id reused with
    /// other content); nothing was written and the transaction is sound.
    Refused(AppendError),
    /// The database refused it; the transaction is aborted.
    Raced,
}

/// Decides and writes one batch in a transaction that holds its chain's lock.
async fn append_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    request: &AppendRequest,
) -> Result<Step, AppendError> {
    let chain = request.chain();
    let stream = request.stream();
    let meta = request.metadata();
    let row = sqlx::query(&LOOKUP)
        .bind(stream.category.as_str())
        .bind(stream.id)
        .bind(chain.as_uuid())
        .bind(meta.command_id.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(store_error)?;
    let sealed = match request.decide(append_context(&row)?, Timestamp::now()) {
        Ok(AppendDecision::Replay(appended)) => return Ok(Step::Replayed(appended)),
        Ok(AppendDecision::Append(sealed)) => sealed,
        Err(refused) => return Ok(Step::Refused(refused)),
    };
    let last = sealed.last().expect("an append carries at least one event");
    let column = |f: fn(&RecordedEvent) -> Vec<u8>| sealed.iter().map(f).collect::<Vec<_>>();
    let inserted: Result<(i64, i64), _> = sqlx::query_as(INSERT)
        .bind(chain.as_uuid())
        .bind(stream.category.as_str())
        .bind(stream.id)
        .bind(meta.actor.to_string())
        .bind(meta.command_id.as_uuid())
        .bind(meta.correlation_id)
        .bind(meta.causation_id)
        .bind(meta.origin.as_str())
        .bind(last.recorded_at.0)
        .bind(
            sealed
                .iter()
                .map(|e| e.event_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            sealed
                .iter()
                .map(|e| to_i64(e.chain_index.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            sealed
                .iter()
                .map(|e| to_i64(e.stream_version.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            sealed
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            sealed
                .iter()
                .map(|e| e.schema_version.get() as i32)
                .collect::<Vec<_>>(),
        )
        .bind(column(|e| e.payload.as_bytes().to_vec()))
        .bind(column(|e| e.prev_hash.0.to_vec()))
        .bind(column(|e| e.hash.0.to_vec()))
        .bind(to_i64(last.stream_version.0))
        .bind(to_i64(last.chain_index.0))
        .fetch_one(&mut **tx)
        .await;
    let (position, transaction) = match inserted {
        Ok(row) => row,
        Err(e) if PostgresEventStore::is_cross_chain_race(&e) => return Ok(Step::Raced),
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("events_event_id_key") => {
            return Err(AppendError::DuplicateEventId)
        }
        Err(e) => return Err(store_error(e).into()),
    };
    Ok(Step::Wrote(Appended {
        stream_version: last.stream_version,
        chain_index: last.chain_index,
        position: Position(position as u64),
        cursor: LogCursor {
            transaction: transaction as u64,
            position: position as u64,
        },
    }))
}

/// The advisory-lock key of a chain: the chain id's two halves folded. Two
/// chains that share a key only serialise each other; nothing else is shared.
fn lock_key(chain: ChainId) -> i64 {
    let (high, low) = chain.as_uuid().as_u64_pair();
    (high ^ low) as i64
}

/// The lock keys of the requests' chains, each once, in key order (the
/// order every transaction takes them in).
fn chain_lock_keys(requests: &[AppendRequest]) -> Vec<i64> {
    let mut keys: Vec<i64> = requests.iter().map(|r| lock_key(r.chain())).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

async fn notify_other_processes(pool: PgPool, mut requests: watch::Receiver<u64>) {
    while requests.changed().await.is_ok() {
        // Best effort: a missed NOTIFY costs a follower at most its idle wait.
        let _ = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await;
    }
}

async fn listen_for_appends(pool: PgPool, appended: watch::Sender<u64>) {
    loop {
        if let Ok(mut listener) = PgListener::connect_with(&pool).await {
            if listener.listen(CHANNEL).await.is_ok() {
                // Anything may have been appended while we were not listening.
                appended.send_modify(|n| *n += 1);
                while listener.recv().await.is_ok() {
                    appended.send_modify(|n| *n += 1);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The columns [`verify_row`] reads, in its order.
const VERIFY_SCAN: &str = "SELECT position, chain_id, chain_index, prev_hash, event_id, \
    stream_category, stream_id, stream_version, event_type, schema_version, recorded_at, actor, \
    command_id, correlation_id, causation_id, origin, payload, hash \
    FROM events WHERE chain_id = $1 ORDER BY chain_index, position";

/// Feeds one row of [`VERIFY_SCAN`] to the verifier; a value out of its
/// column's range is a break at the row.
fn verify_row(
    verifier: &mut ChainVerifier,
    chain: ChainId,
    row: &sqlx::postgres::PgRow,
) -> Result<(), ChainBreak> {
    use sqlx::Row;
    let position: i64 = row.try_get(0).unwrap_or(-1);
    let Ok(position) = u64::try_from(position).map(Position) else {
        return Err(verifier.unreadable(Position(0), None, F::Position));
    };
    let uint = |i: usize, field: F| -> Result<u64, F> {
        let value: i64 = row.try_get(i).map_err(|_| field)?;
        u64::try_from(value).map_err(|_| field)
    };
    let chain_index = uint(2, F::ChainIndex).ok();
    let read = || -> Result<(EventFields<'_>, &[u8], bool), F> {
        let fields = EventFields {
            chain: chain.as_uuid(),
            chain_index: uint(2, F::ChainIndex)?,
            prev_hash: row.try_get(3).map_err(|_| F::PreviousHash)?,
            event_id: row.try_get(4).map_err(|_| F::EventId)?,
            stream_category: row.try_get(5).map_err(|_| F::StreamCategory)?,
            stream_id: row.try_get(6).map_err(|_| F::StreamId)?,
            stream_version: uint(7, F::StreamVersion)?,
            event_type: row.try_get(8).map_err(|_| F::EventType)?,
            schema_version: row
                .try_get::<i32, _>(9)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(F::SchemaVersion)?,
            recorded_at: row.try_get(10).map_err(|_| F::RecordedAt)?,
            actor: row.try_get(11).map_err(|_| F::Actor)?,
            command_id: row.try_get(12).map_err(|_| F::CommandId)?,
            correlation_id: row.try_get(13).map_err(|_| F::CorrelationId)?,
            causation_id: row.try_get(14).map_err(|_| F::CausationId)?,
            origin: row.try_get(15).map_err(|_| F::Origin)?,
            payload: row.try_get(16).map_err(|_| F::Payload)?,
        };
        let stored_chain: Uuid = row.try_get(1).map_err(|_| F::ChainId)?;
        let hash: &[u8] = row.try_get(17).map_err(|_| F::Hash)?;
        Ok((fields, hash, stored_chain == chain.as_uuid()))
    };
    let (fields, hash, same_chain) = match read() {
        Ok(read) => read,
        Err(field) => return Err(verifier.unreadable(position, chain_index, field)),
    };
    let location = EventLocation {
        position,
        chain_index: fields.chain_index,
        event_id: fields.event_id,
        stream_category: fields.stream_category,
        stream_id: fields.stream_id,
        stream_version: fields.stream_version,
    };
    verifier.push_fields(location, &fields, hash, same_chain)
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        if request.events().len() >= SHARES_ITS_OWN {
            // Its round trips are already shared by its events.
            let mut appended = self.append_now(&[request]).await?;
            return Ok(appended.remove(0));
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::unavailable("the append committers stopped".to_owned());
        let lane = lock_key(request.chain()).unsigned_abs() as usize % self.lanes.len();
        self.lanes[lane]
            .send(Queued { request, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn append_atomic(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, AppendError> {
        check_atomic(&requests)?;
        self.append_now(&requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_category = $1 AND stream_id = $2 \
             AND stream_version > $3 ORDER BY stream_version LIMIT $4"
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
        // Only transactions below the snapshot's xmin are finished; nothing
        // can commit later with a smaller transaction id.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY transaction_id, position LIMIT $3"
        );
        self.fetch_events(
            sqlx::query(&sql)
                .bind(to_i64(after.transaction))
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
            "SELECT {EVENT_COLUMNS} FROM events WHERE chain_id = $1 AND chain_index >= $2 \
             ORDER BY chain_index LIMIT $3"
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
        .fetch_all(&self.pool)
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

    async fn committed_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommittedCommand>, StoreError> {
        let row = sqlx::query(COMMITTED_COMMAND)
            .bind(command_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(committed_row).transpose()
    }

    async fn durability(&self) -> Result<custodia_application::Durability, StoreError> {
        let mut settings = Vec::new();
        for name in ["synchronous_commit", "fsync"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
            settings.push((name.to_owned(), value.to_lowercase()));
        }
        Ok(custodia_application::Durability {
            backend: "postgres",
            settings,
        })
    }

    async fn head(&self) -> Result<LogCursor, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
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

    /// Streams the chain's rows and feeds the verifier their raw columns
    /// (nothing is parsed that the hash does not need), so that a value
    /// written around the log is reported where it is, as a broken link.
    async fn verify_chain(
        &self,
        chain: ChainId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ChainVerdict, StoreError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(VERIFY_SCAN)
            .bind(chain.as_uuid())
            .fetch(&self.pool);
        let mut verifier = ChainVerifier::new(chain);
        let mut events = 0u64;
        while let Some(row) = rows.try_next().await.map_err(store_error)? {
            events += 1;
            if events % 4096 == 0 {
                progress(4096);
            }
            if let Err(broken) = verify_row(&mut verifier, chain, &row) {
                progress(events % 4096);
                return Ok(ChainVerdict::broken(events, broken));
            }
        }
        progress(events % 4096);
        Ok(ChainVerdict::finished(events, verifier))
    }

    async fn snapshot(&self, stream: &StreamId) -> Result<Option<StoredSnapshot>, StoreError> {
        snapshots::load(&self.pool, stream).await
    }

    async fn save_snapshot(
        &self,
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
    ) -> Result<(), StoreError> {
        snapshots::save(&self.pool, snapshot, replacing).await
    }

    async fn drop_snapshots(&self) -> Result<u64, StoreError> {
        snapshots::drop_all(&self.pool).await
    }
}
