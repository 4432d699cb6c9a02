//! Custodia's projections: folds of the event log into read models.
//!
//! - [`Follower`] reads the log in commit-safe order and waits when caught up.
//! - [`Projection`] turns one event into read-model changes.
//! - [`Runner`] keeps one projection current: it holds the projection's lease
//!   (one process at a time), applies batches, and commits each batch with
//!   the checkpoint in one transaction, so nothing is skipped or applied twice.
//! - [`identity`] holds the read models of the identity domain, and
//!   [`documents`] their typed documents (shared with the resolvers).

pub mod documents;
mod follower;
pub mod identity;
pub mod merkle;
mod runner;

pub use follower::Follower;
pub use runner::{rebuild, wait_for, Runner, RunnerConfig};

use std::sync::Arc;

use async_trait::async_trait;
use custodia_application::{CommitError, ReadModelTx, StoreError};
use custodia_domain::aggregate::SchemaError;
use custodia_domain::RecordedEvent;

/// Every projection: the identity domain's read models and each chain's
/// Merkle log.
pub fn all() -> Vec<Arc<dyn Projection>> {
    let mut all = identity::all();
    all.push(Arc::new(merkle::MerkleLog));
    all
}

/// A fold of the log into read-model rows.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the key of its checkpoint and lease.
    fn name(&self) -> &'static str;

    /// The models whose rows it owns (deleted on rebuild).
    fn models(&self) -> &'static [&'static str];

    /// Applies one event (most projections ignore most events).
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError>;
}

/// Events skipped by a projection because their type is none it handles
/// (each projection that skipped one counts it).
static SKIPPED_EVENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_skipped(event: &RecordedEvent) {
    SKIPPED_EVENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(
        position = event.position.0,
        event_type = event.event_type.as_str(),
        "event of an unknown type skipped"
    );
}

/// How many events projections skipped for an unknown type, in this process.
pub fn skipped_events() -> u64 {
    SKIPPED_EVENTS.load(std::sync::atomic::Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("event at position {position} cannot be read: {source}")]
    Unreadable { position: u64, source: SchemaError },
    #[error(transparent)]
    Document(#[from] documents::MalformedDocument),
}
