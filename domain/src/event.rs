//! Events before they are recorded ([`NewEvent`]) and after ([`RecordedEvent`]).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::chain::EventHash;
use crate::ids::{
    ChainId, ChainIndex, CommandId, EventId, LogCursor, Position, StreamId, StreamVersion,
};
use crate::InvalidValue;

/// The stored name of an event: `UserRegistered`, `tenant.SettingsChanged`.
/// ASCII letters, digits, `_` and `.`, starting with a letter, at most 128 bytes.
/// This is the name on disk, independent of any Rust type name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let bytes = value.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 128
            && bytes[0].is_ascii_alphabetic()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.');
        if !well_formed {
            return Err(InvalidValue::new(
                "event type",
                "must be 1-128 of [A-Za-z0-9_.], starting with a letter",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The version of an event type's stored schema, from 1. Old versions are
/// upcast when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaVersion(u32);

impl SchemaVersion {
    pub fn new(version: u32) -> Result<Self, InvalidValue> {
        if version == 0 {
            return Err(InvalidValue::new("schema version", "must be at least 1"));
        }
        Ok(Self(version))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// An event's payload: the exact bytes of a JSON document (personal data in it
/// is already ciphertext). Stored and hashed byte for byte, never re-serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(Vec<u8>);

impl Payload {
    /// The largest payload accepted, in bytes.
    pub const MAX_LEN: usize = 1 << 20;

    pub fn json(bytes: Vec<u8>) -> Result<Self, InvalidValue> {
        if bytes.len() > Self::MAX_LEN {
            return Err(InvalidValue::new("payload", "must be at most 1 MiB"));
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|_| InvalidValue::new("payload", "must be a JSON document"))?;
        Ok(Self(bytes))
    }

    /// Bytes read back from storage, which were valid when appended. Not
    /// re-checked: verification must see exactly what is stored.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Microseconds since the Unix epoch, UTC: the precision both backends keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_micros(self.0) {
            Some(at) => at.format("%Y-%m-%dT%H:%M:%S%.6fZ").fmt(f),
            None => write!(f, "{}µs", self.0),
        }
    }
}

/// Who caused an event. Stored as text: `system`, `user:<uuid>`, `service:<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// Custodia itself (migrations, retention jobs, the CLI).
    System,
    /// A person, by user id.
    User(Uuid),
    /// A service account, by its id.
    Service(Uuid),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::Service(id) => write!(f, "service:{id}"),
        }
    }
}

impl FromStr for Actor {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const RULE: &str = "must be system, user:<uuid> or service:<uuid>";
        let uuid = |id: &str| Uuid::parse_str(id).map_err(|_| InvalidValue::new("actor", RULE));
        match s.split_once(':') {
            None if s == "system" => Ok(Actor::System),
            Some(("user", id)) => Ok(Actor::User(uuid(id)?)),
            Some(("service", id)) => Ok(Actor::Service(uuid(id)?)),
            _ => Err(InvalidValue::new("actor", RULE)),
        }
    }
}

/// Where a command came from, without personal data: `cli`, `graphql`,
/// `scim`, an instance name. Printable ASCII, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(InvalidValue::new(
                "origin",
                "must be at most 128 printable ASCII characters",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What every event records about the command that produced it. The command
/// id is also the append's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub actor: Actor,
    pub command_id: CommandId,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub origin: Origin,
}

/// An event as a command handler decides it, before the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: EventType,
    pub schema_version: SchemaVersion,
    pub payload: Payload,
}

/// An event as the log holds it: every stored field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    /// The number of the transaction that committed it (see [`LogCursor`]).
    pub transaction: u64,
    pub event_id: EventId,
    pub chain: ChainId,
    pub chain_index: ChainIndex,
    pub stream: StreamId,
    pub stream_version: StreamVersion,
    pub event_type: EventType,
    pub schema_version: SchemaVersion,
    pub payload: Payload,
    pub metadata: Metadata,
    pub recorded_at: Timestamp,
    pub prev_hash: EventHash,
    pub hash: EventHash,
}

impl RecordedEvent {
    pub fn cursor(&self) -> LogCursor {
        LogCursor {
            transaction: self.transaction,
            position: self.position.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_must_be_json() {
        assert!(Payload::json(br#"{"a":1}"#.to_vec()).is_ok());
        assert!(Payload::json(b"{".to_vec()).is_err());
        assert!(Payload::json(vec![b' '; Payload::MAX_LEN + 1]).is_err());
    }

    #[test]
    fn payload_bytes_are_kept_exactly() {
        let bytes = br#"{ "b":2,  "a":1 }"#.to_vec();
        assert_eq!(
            Payload::json(bytes.clone()).unwrap().as_bytes(),
            bytes.as_slice()
        );
    }

    #[test]
    fn actor_round_trips_through_text() {
        let id = Uuid::now_v7();
        for actor in [Actor::System, Actor::User(id), Actor::Service(id)] {
            assert_eq!(actor.to_string().parse::<Actor>().unwrap(), actor);
        }
        for bad in [
            "",
            "root",
            "user:",
            "user:xyz",
            "group:00000000-0000-0000-0000-000000000000",
        ] {
            assert!(bad.parse::<Actor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn event_type_and_schema_version_rules() {
        assert!(EventType::parse("user.Registered_v2").is_ok());
        assert!(EventType::parse("").is_err());
        assert!(EventType::parse("1x").is_err());
        assert!(EventType::parse("a b").is_err());
        assert!(SchemaVersion::new(0).is_err());
        assert_eq!(SchemaVersion::new(3).unwrap().get(), 3);
    }

    #[test]
    fn origin_rejects_control_characters() {
        assert!(Origin::parse("cli").is_ok());
        assert!(Origin::parse("a\nb").is_err());
        assert!(Origin::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn timestamp_displays_as_rfc3339_utc() {
        assert_eq!(
            Timestamp(1_700_000_000_123_456).to_string(),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
