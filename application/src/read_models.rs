//! The read-model port: the tables that projections fill and queries read.
//!
//! A read model is a set of rows of one `model` (`"user"`, `"session"`, …).
//! Every row has the same few indexed columns (tenant, parent, kind, actor,
//! lookup, time, order) and a JSON document, so one adapter serves every
//! projection and a rebuild is "delete the model's rows, replay the log".
//! Projections write through a [`ReadModelTx`] whose commit also moves their
//! checkpoint: read model and checkpoint change together or not at all.

use async_trait::async_trait;
use custodia_domain::LogCursor;
use uuid::Uuid;

use crate::event_store::StoreError;

/// One row of a read model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub model: &'static str,
    /// Unique within the model (a UUID, or a composite such as `user/purpose`).
    pub id: String,
    /// The tenant the row belongs to; `None` for platform rows.
    pub tenant: Option<Uuid>,
    /// The row it hangs off (a session's user, an audit event's stream).
    pub parent: Option<Uuid>,
    /// A short filterable value: a status, an event type.
    pub kind: Option<String>,
    pub actor: Option<Uuid>,
    /// An exact-match key, such as an email blind index (never plaintext).
    pub lookup: Option<String>,
    /// When the row's subject happened, in µs since the epoch.
    pub at: i64,
    /// The order of rows in listings (the log position that created the
    /// row): unique within a model, so it is also the pagination cursor.
    pub seq: i64,
    pub doc: serde_json::Value,
}

/// A filtered, ordered page of one model's rows (ascending `seq`).
#[derive(Debug, Clone, Default)]
pub struct RowQuery {
    pub model: &'static str,
    pub tenant: Option<Uuid>,
    pub parent: Option<Uuid>,
    pub kind: Option<String>,
    pub actor: Option<Uuid>,
    pub lookup: Option<String>,
    /// Inclusive lower and exclusive upper bound on `at`.
    pub at_from: Option<i64>,
    pub at_to: Option<i64>,
    /// Rows whose `kind` is none of these.
    pub exclude_kinds: Vec<&'static str>,
    /// Only rows after this `seq` (the page cursor).
    pub after_seq: Option<i64>,
    /// Rows to skip first (for clients that page by index, as SCIM does).
    pub offset: usize,
    pub limit: usize,
}

/// Why a projection's batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another process holds the projection now, or its checkpoint moved:
    /// nothing was written.
    #[error("the projection's lease was lost or its checkpoint moved")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A projection's checkpoint and lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub cursor: LogCursor,
    pub holder: Uuid,
    /// µs since the epoch.
    pub lease_until: i64,
}

/// Every row `query` selects, read page by page (`query.limit` rows a
/// page; 500 if it names none), in its order.
pub async fn list_all(
    models: &dyn ReadModels,
    mut query: RowQuery,
) -> Result<Vec<ModelRow>, StoreError> {
    if query.limit == 0 {
        query.limit = 500;
    }
    let mut rows = Vec::new();
    loop {
        let page = models.list(&query).await?;
        let full = page.len() == query.limit;
        query.after_seq = page.last().map(|row| row.seq);
        rows.extend(page);
        if !full {
            return Ok(rows);
        }
    }
}

/// The read-model tables.
#[async_trait]
pub trait ReadModels: Send + Sync {
    /// Starts a projection's write transaction.
    async fn begin(&self) -> Result<Box<dyn ReadModelTx>, StoreError>;

    /// Takes (or renews) the lease of projection `name` for `holder` until
    /// `until` (µs), if it is free, lapsed at `now`, or already `holder`'s.
    /// Returns the checkpoint when the lease is `holder`'s.
    async fn acquire(
        &self,
        name: &str,
        holder: Uuid,
        now: i64,
        until: i64,
    ) -> Result<Option<LogCursor>, StoreError>;

    /// Gives the lease up, so another process takes over at once.
    async fn release(&self, name: &str, holder: Uuid) -> Result<(), StoreError>;

    /// Every projection's checkpoint.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Deletes `models`' rows and resets `name`'s checkpoint to the start,
    /// in one transaction, if `holder` holds its lease.
    async fn reset(
        &self,
        name: &str,
        models: &[&'static str],
        holder: Uuid,
    ) -> Result<(), CommitError>;

    async fn get(&self, model: &'static str, id: &str) -> Result<Option<ModelRow>, StoreError>;

    async fn list(&self, query: &RowQuery) -> Result<Vec<ModelRow>, StoreError>;

    /// How many rows `query` selects, whatever its offset and limit.
    async fn count(&self, query: &RowQuery) -> Result<u64, StoreError>;

    /// Every row of `model`, in `(seq, id)` order: for comparing states.
    async fn dump(&self, model: &'static str) -> Result<Vec<ModelRow>, StoreError>;
}

/// A projection's open transaction.
#[async_trait]
pub trait ReadModelTx: Send {
    async fn get(&mut self, model: &'static str, id: &str) -> Result<Option<ModelRow>, StoreError>;
    async fn put(&mut self, row: &ModelRow) -> Result<(), StoreError>;
    async fn delete(&mut self, model: &'static str, id: &str) -> Result<(), StoreError>;
    /// A page of rows, as [`ReadModels::list`] reads them, inside the
    /// transaction.
    async fn list(&mut self, query: &RowQuery) -> Result<Vec<ModelRow>, StoreError>;
    /// Moves each projection's checkpoint and renews its lease until
    /// `lease_until`, then commits; refused (and rolled back, all of it)
    /// unless `holder` holds every lease and every checkpoint is still at
    /// its `from`.
    async fn commit(
        self: Box<Self>,
        moves: &[CheckpointMove<'_>],
        holder: Uuid,
        lease_until: i64,
    ) -> Result<(), CommitError>;
}

/// One projection's checkpoint, moved from `from` to `to` by a commit
/// (`from == to` only renews its lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMove<'a> {
    pub name: &'a str,
    pub from: LogCursor,
    pub to: LogCursor,
}
