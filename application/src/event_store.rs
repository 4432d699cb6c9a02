//! The event store port. Adapters (SQLite, PostgreSQL; later KurrentDB)
//! implement [`EventStore`] with identical behaviour, which the conformance
//! suite in `tests/` checks against every one of them.

use std::time::Duration;

use async_trait::async_trait;
use custodia_domain::chain::seal;
use custodia_domain::{
    ChainHead, ChainId, ChainIndex, CommandId, LogCursor, Metadata, NewEvent, Position,
    RecordedEvent, StreamId, StreamVersion, Timestamp,
};
use tokio::sync::watch;

use crate::verify::{verify_chain_in_batches, ChainVerdict};

/// The largest number of events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version (no concurrency check).
    Any,
    /// Append only if the stream is exactly at this version
    /// ([`StreamVersion::EMPTY`] for "the stream does not exist yet").
    Exactly(StreamVersion),
}

/// A batch of events for one stream in one chain, all-or-nothing.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    chain: ChainId,
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: Metadata,
}

impl AppendRequest {
    pub fn new(
        chain: ChainId,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: Metadata,
    ) -> Result<Self, AppendError> {
        if events.is_empty() {
            return Err(AppendError::Invalid("an append carries at least one event"));
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(AppendError::Invalid(
                "an append carries at most 10000 events",
            ));
        }
        let mut ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(AppendError::Invalid(
                "event ids in one append must be distinct",
            ));
        }
        Ok(Self {
            chain,
            stream,
            expected,
            events,
            metadata,
        })
    }

    pub fn chain(&self) -> ChainId {
        self.chain
    }
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }
    pub fn events(&self) -> &[NewEvent] {
        &self.events
    }
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    pub fn command_id(&self) -> CommandId {
        self.metadata.command_id
    }

    /// Checks the expected version against the stream's current one.
    fn check_version(&self, current: StreamVersion) -> Result<(), AppendError> {
        match self.expected {
            ExpectedVersion::Exactly(expected) if expected != current => {
                Err(AppendError::Conflict {
                    stream: self.stream.clone(),
                    expected,
                    actual: current,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Where an append landed: the coordinates of its last event. A retried
/// append (same command id) returns the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub stream_version: StreamVersion,
    pub chain_index: ChainIndex,
    pub position: Position,
    /// Compare with a follower's cursor to know whether it has seen this append.
    pub cursor: LogCursor,
}

/// An earlier append recorded under a command id, for idempotent retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedCommand {
    pub stream: StreamId,
    pub event_count: usize,
    pub appended: Appended,
}

impl CommittedCommand {
    /// The answer to a retry of `request`, whose command id this is.
    pub fn replay(&self, request: &AppendRequest) -> Result<Appended, AppendError> {
        if self.stream != *request.stream() || self.event_count != request.events().len() {
            return Err(AppendError::CommandIdReused {
                command_id: request.command_id(),
            });
        }
        Ok(self.appended)
    }
}

/// What an adapter knows, under its chain lock, before it appends.
#[derive(Debug, Clone)]
pub struct AppendContext {
    /// The earlier append under the request's command id, if any.
    pub committed: Option<CommittedCommand>,
    /// The chain the stream already lives in, if it has events.
    pub stream_chain: Option<ChainId>,
    pub stream_version: StreamVersion,
    pub chain_head: ChainHead,
}

/// What to do with an append, decided the same way by every adapter.
#[derive(Debug)]
pub enum AppendDecision {
    /// A retry of a committed command: answer as the first time, write nothing.
    Replay(Appended),
    /// Store these events (sealed onto the chain; positions still unassigned).
    Append(Vec<RecordedEvent>),
}

impl AppendRequest {
    /// Replays a committed command, refuses a stream of another chain or a
    /// stale expected version, or seals the events onto the chain head.
    pub fn decide(
        &self,
        context: AppendContext,
        now: Timestamp,
    ) -> Result<AppendDecision, AppendError> {
        if let Some(committed) = context.committed {
            return committed.replay(self).map(AppendDecision::Replay);
        }
        if context
            .stream_chain
            .is_some_and(|chain| chain != self.chain)
        {
            return Err(AppendError::WrongChain {
                stream: self.stream.clone(),
            });
        }
        self.check_version(context.stream_version)?;
        Ok(AppendDecision::Append(seal(
            self.chain,
            context.chain_head,
            &self.stream,
            context.stream_version,
            &self.events,
            &self.metadata,
            now,
        )))
    }
}

/// The rules for an atomic append, checked by every adapter before it
/// writes: at least one request, all in one chain, each to its own stream
/// under its own command id.
pub fn check_atomic(requests: &[AppendRequest]) -> Result<(), AppendError> {
    let Some(first) = requests.first() else {
        return Err(AppendError::Invalid(
            "an atomic append carries at least one batch",
        ));
    };
    if requests.iter().any(|r| r.chain() != first.chain()) {
        return Err(AppendError::Invalid("an atomic append stays in one chain"));
    }
    let distinct = |key: &dyn Fn(&AppendRequest) -> String| {
        let mut keys: Vec<String> = requests.iter().map(key).collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    };
    if !distinct(&|r| r.stream().to_string()) {
        return Err(AppendError::Invalid(
            "an atomic append touches each stream once",
        ));
    }
    if !distinct(&|r| r.command_id().to_string()) {
        return Err(AppendError::Invalid(
            "each batch of an atomic append has its own command id",
        ));
    }
    let events: usize = requests.iter().map(|r| r.events().len()).sum();
    if events > MAX_EVENTS_PER_APPEND {
        return Err(AppendError::Invalid(
            "an append carries at most 10000 events",
        ));
    }
    Ok(())
}

/// Why an append appended nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("version conflict on stream {stream}: expected version {expected}, found {actual}")]
    Conflict {
        stream: StreamId,
        expected: StreamVersion,
        actual: StreamVersion,
    },
    #[error("stream {stream} belongs to another chain")]
    WrongChain { stream: StreamId },
    #[error("command id {command_id} was already used for a different append")]
    CommandIdReused { command_id: CommandId },
    #[error("an event id in this append is already recorded")]
    DuplicateEventId,
    #[error("invalid append: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A storage failure. Messages name what failed, never personal data; the
/// driver's error, when there is one, is kept as the source, so a logged
/// cause keeps its chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("the database is not usable: {message}")]
    Corrupt {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("database schema: {message}")]
    Schema {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("database error: {message}")]
    Database {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            message: message.into(),
            cause: None,
        }
    }

    pub fn schema(message: impl Into<String>) -> Self {
        StoreError::Schema {
            message: message.into(),
            cause: None,
        }
    }

    pub fn database(message: impl Into<String>) -> Self {
        StoreError::Database {
            message: message.into(),
            cause: None,
        }
    }

    /// The same failure, with the error that caused it as its source.
    pub fn caused_by(mut self, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let (StoreError::Unavailable { cause, .. }
        | StoreError::Corrupt { cause, .. }
        | StoreError::Schema { cause, .. }
        | StoreError::Database { cause, .. }) = &mut self;
        *cause = Some(Cause(std::sync::Arc::new(error)));
        self
    }
}

/// The error a storage failure came from (a driver's), shareable.
#[derive(Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// How many events a chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSummary {
    pub chain: ChainId,
    pub events: u64,
}

/// An aggregate's state at a stream version, in the aggregate's snapshot
/// form (`custodia_domain::aggregate::Snapshot`): derived data kept beside
/// the log, never part of a chain, and safe to delete at any time.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub stream: StreamId,
    /// The chain of the stream's events.
    pub chain: ChainId,
    /// The last event folded into `state`.
    pub stream_version: StreamVersion,
    /// The version of the snapshot form.
    pub form_version: u32,
    pub state: Vec<u8>,
}

impl std::fmt::Debug for StoredSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSnapshot")
            .field("stream", &self.stream)
            .field("stream_version", &self.stream_version)
            .field("form_version", &self.form_version)
            .field("bytes", &self.state.len())
            .finish()
    }
}

/// The event log: append with optimistic concurrency and idempotency, read
/// by stream, by chain, or the whole log in commit-safe order.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends the batch at the end of its stream and its chain, or nothing.
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError>;

    /// Appends several batches of one chain, to distinct streams, in one
    /// transaction: every one of them or none (the first refusal is the
    /// answer). Each keeps its own expected version and command id, so a
    /// retry of the whole replays every one. See [`check_atomic`].
    async fn append_atomic(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, AppendError>;

    /// Up to `limit` events of one stream with versions above `after`.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events after `after`, in commit-safe order: an event that
    /// commits later never sorts before one already returned.
    async fn read_all(
        &self,
        after: LogCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events of one chain from chain index `from`, in chain order.
    async fn read_chain(
        &self,
        chain: ChainId,
        from: ChainIndex,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every chain in the log with its number of events.
    async fn chains(&self) -> Result<Vec<ChainSummary>, StoreError>;

    /// The append committed under `command_id`, if any: what a retried
    /// command answers without deciding again.
    async fn committed_command(
        &self,
        command_id: CommandId,
    ) -> Result<Option<CommittedCommand>, StoreError>;

    /// Verifies one chain from its first event with the domain's
    /// `ChainVerifier`. The default reads batches through `read_chain`; an
    /// adapter may feed the verifier faster, straight from its storage.
    async fn verify_chain(
        &self,
        chain: ChainId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ChainVerdict, StoreError> {
        verify_chain_in_batches(self, chain, progress).await
    }

    /// The cursor of the last committed event (`LogCursor::START` for an
    /// empty log): no cursor a client was given lies beyond it.
    async fn head(&self) -> Result<LogCursor, StoreError>;

    /// A signal that fires when events may have been appended.
    fn append_signal(&self) -> AppendSignal;

    /// The latest snapshot of `stream`, if one was saved.
    async fn snapshot(&self, stream: &StreamId) -> Result<Option<StoredSnapshot>, StoreError>;

    /// Keeps `snapshot` unless one at a later stream version is kept
    /// already (two loads racing both save; the later state wins), or
    /// unless `replacing` names the version of a kept one that could not
    /// be read (an unknown form): that one is replaced whatever its version.
    async fn save_snapshot(
        &self,
        snapshot: StoredSnapshot,
        replacing: Option<StreamVersion>,
    ) -> Result<(), StoreError>;

    /// Deletes every snapshot (they are rebuilt as commands load streams).
    /// Returns how many there were.
    async fn drop_snapshots(&self) -> Result<u64, StoreError>;

    /// How commits are made durable, as the store's own connections report
    /// it (a faster figure bought with lost commits does not count).
    async fn durability(&self) -> Result<Durability, StoreError>;
}

/// The settings that decide whether a commit survives a crash, as the
/// store's connections report them (`synchronous`, `journal_mode` on
/// SQLite; `synchronous_commit`, `fsync` on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Each setting's name and value, lowercase.
    pub settings: Vec<(String, String)>,
}

impl Durability {
    /// The value of the setting `name`, if it was reported.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Wakes a follower when events may have been appended, so that it need not
/// poll in a busy loop. Spurious wake-ups are allowed; missed ones are not,
/// provided the follower calls [`AppendSignal::mark_seen`] before it reads.
#[derive(Debug, Clone)]
pub struct AppendSignal(watch::Receiver<u64>);

impl AppendSignal {
    pub fn new(receiver: watch::Receiver<u64>) -> Self {
        Self(receiver)
    }

    /// How many appends have been signalled so far (a generation number:
    /// it changes whenever the log may have changed).
    pub fn generation(&self) -> u64 {
        *self.0.borrow()
    }

    /// Forgets earlier signals: call it before reading the log.
    pub fn mark_seen(&mut self) {
        self.0.borrow_and_update();
    }

    /// Returns when an append was signalled since [`AppendSignal::mark_seen`],
    /// or after `timeout` (a safety net for appends made by other processes
    /// that could not signal).
    pub async fn wait(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.changed()).await;
    }
}
