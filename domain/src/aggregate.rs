//! Aggregates decide, then apply: `decide(&self, command)` returns the events
//! a command produces (or why it is refused) and `apply(self, event)` folds
//! one event into the state. Both are pure; handlers do the I/O around them.

use std::fmt::Debug;

use crate::event::{EventType, Payload, SchemaVersion};
use crate::ids::EventId;

pub trait Aggregate: Default + Sized {
    type Command;
    type Event;
    type Error;

    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    fn apply(self, event: &Self::Event) -> Self;

    /// [`Aggregate::apply`] for a stored event whose id is known. An
    /// aggregate that keeps sealed fields remembers which event sealed them
    /// (their associated data names it), so opening one needs no search.
    fn apply_recorded(self, event: &Self::Event, _event_id: EventId) -> Self {
        self.apply(event)
    }

    /// The state after `events`, from the beginning.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::apply)
    }
}

/// An aggregate's state at a stream version, stored so that a command
/// folds only the events after it (ADR 0008). Snapshots are derived data:
/// never part of a chain, rebuildable from the events at any time, and
/// holding personal data only as the events do (sealed). The form is
/// versioned apart from the Rust type: changing it means a new
/// [`Snapshot::SNAPSHOT_VERSION`], and [`Snapshot::from_snapshot`] upcasts
/// the versions it still reads (any other is ignored, and the stream is
/// folded from its first event, which writes a current snapshot).
pub trait Snapshot: Aggregate {
    /// The current version of the snapshot form; `None`: this aggregate is
    /// never snapshotted (its streams stay short by design).
    const SNAPSHOT_VERSION: Option<u32> = None;

    /// The state in the current snapshot form.
    fn to_snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The state from a snapshot of form `version`, or `None` if this form
    /// is not (or no longer) read.
    fn from_snapshot(_version: u32, _bytes: &[u8]) -> Option<Self> {
        None
    }
}

/// A snapshot DTO as JSON (plain data; always serialises).
pub(crate) fn snapshot_json<T: serde::Serialize>(dto: &T) -> Vec<u8> {
    serde_json::to_vec(dto).expect("snapshot DTOs serialise")
}

/// An event as stored: its stable name, schema version and JSON payload.
/// Renaming a Rust type never changes these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredForm {
    pub event_type: EventType,
    pub schema_version: SchemaVersion,
    pub payload: Payload,
}

/// Why a stored event could not be read back as a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("event type {event_type} has no schema version {version}")]
    UnknownVersion { event_type: String, version: u32 },
    #[error("event type {event_type} version {version} has a malformed payload")]
    Malformed { event_type: String, version: u32 },
}

/// Maps domain events to and from their stored form, upcasting old schema
/// versions on the way in.
pub trait EventSchema: Sized {
    fn to_stored(&self) -> StoredForm;
    fn from_stored(stored: &StoredForm) -> Result<Self, SchemaError>;
}

/// Serialises a stored payload DTO; DTOs are plain data and always serialise.
pub(crate) fn stored<T: serde::Serialize>(event_type: &str, version: u32, dto: &T) -> StoredForm {
    StoredForm {
        event_type: EventType::parse(event_type).expect("stored event type names are valid"),
        schema_version: SchemaVersion::new(version).expect("stored schema versions start at 1"),
        payload: Payload::json(serde_json::to_vec(dto).expect("DTOs serialise"))
            .expect("DTOs are JSON"),
    }
}

/// Reads a stored payload DTO.
pub(crate) fn read<T: serde::de::DeserializeOwned>(stored: &StoredForm) -> Result<T, SchemaError> {
    serde_json::from_slice(stored.payload.as_bytes()).map_err(|_| SchemaError::Malformed {
        event_type: stored.event_type.as_str().to_owned(),
        version: stored.schema_version.get(),
    })
}

/// Given/when/then for domain tests:
/// `given::<Tenant>(&[created]).when(&Suspend{..}).then(&[Suspended{..}])`.
pub fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
    Given(A::fold(events))
}

pub struct Given<A>(A);

impl<A: Aggregate> Given<A>
where
    A::Event: PartialEq + Debug,
    A::Error: PartialEq + Debug,
{
    pub fn when(self, command: &A::Command) -> Then<A> {
        Then(self.0.decide(command))
    }
}

pub struct Then<A: Aggregate>(Result<Vec<A::Event>, A::Error>);

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq + Debug,
    A::Error: PartialEq + Debug,
{
    #[track_caller]
    pub fn then(self, expected: &[A::Event]) {
        match self.0 {
            Ok(events) => assert_eq!(events, expected),
            Err(error) => panic!("expected events, got the error {error:?}"),
        }
    }

    #[track_caller]
    pub fn then_error(self, expected: A::Error) {
        match self.0 {
            Ok(events) => panic!("expected the error {expected:?}, got events {events:?}"),
            Err(error) => assert_eq!(error, expected),
        }
    }
}
