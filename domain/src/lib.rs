//! Custodia's domain layer: the vocabulary of the event log and the rules that
//! make it trustworthy. Everything here is pure — no I/O, no async, no SQL.
//!
//! - [`ids`]: parsed identifiers (`TenantId`, `ChainId`, `StreamId`, `Position`, …).
//! - [`event`]: what an event is before and after it is recorded.
//! - [`chain`]: the canonical encoding, the hash chain and the chain verifier.

pub mod aggregate;
pub mod chain;
pub mod event;
pub mod identity;
pub mod ids;
pub mod merkle;
pub mod personal;
pub mod rbac;

pub use chain::{
    BreakKind, ChainBreak, ChainHead, ChainVerifier, EventFields, EventHash, EventLocation,
    VerifiedChain, GENESIS_HASH,
};
pub use event::{
    Actor, EventType, Metadata, NewEvent, Origin, Payload, RecordedEvent, SchemaVersion, Timestamp,
};
pub use ids::{
    ChainId, ChainIndex, CommandId, EventId, LogCursor, Position, StreamCategory, StreamId,
    StreamVersion, TenantId,
};

/// A value that failed to parse into a domain type. The message names the
/// field and the rule, never the offending value (it may be personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub rule: &'static str,
}

impl InvalidValue {
    pub(crate) const fn new(field: &'static str, rule: &'static str) -> Self {
        Self { field, rule }
    }
}
