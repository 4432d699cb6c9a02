//! Identifiers and coordinates of the event log. Each type parses rather than
//! validates: once you hold one, it is valid.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::InvalidValue;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) identifier.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Rejects the nil UUID, which never names anything in Custodia.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, InvalidValue> {
                if uuid.is_nil() {
                    return Err(InvalidValue::new($field, "must not be the nil UUID"));
                }
                Ok(Self(uuid))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let uuid = Uuid::parse_str(s).map_err(|_| InvalidValue::new($field, "must be a UUID"))?;
                Self::from_uuid(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A tenant: one customer organisation, and one hash chain.
    TenantId,
    "tenant id"
);
uuid_id!(
    /// The identity of one recorded event, unique across the whole log.
    EventId,
    "event id"
);
uuid_id!(
    /// The idempotency key of a command: an append carrying a command id that
    /// was already committed returns the original result and appends nothing.
    CommandId,
    "command id"
);

/// The hash chain an event belongs to: its tenant's, or the platform chain for
/// platform-level events (those that belong to no tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainId {
    Platform,
    Tenant(TenantId),
}

impl ChainId {
    /// The 16 bytes that stand for the chain in storage and in the canonical
    /// encoding: the tenant id, or the nil UUID for the platform chain.
    pub fn as_uuid(&self) -> Uuid {
        match self {
            ChainId::Platform => Uuid::nil(),
            ChainId::Tenant(tenant) => tenant.as_uuid(),
        }
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        match TenantId::from_uuid(uuid) {
            Ok(tenant) => ChainId::Tenant(tenant),
            Err(_) => ChainId::Platform,
        }
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainId::Platform => f.write_str("platform"),
            ChainId::Tenant(tenant) => write!(f, "tenant {tenant}"),
        }
    }
}

/// The kind of aggregate a stream holds: lower-case ASCII letters, digits and
/// `_`, starting with a letter, at most 64 bytes (`user`, `tenant`, `session`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamCategory(String);

impl StreamCategory {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let bytes = value.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !well_formed {
            return Err(InvalidValue::new(
                "stream category",
                "must be 1-64 of [a-z0-9_], starting with a letter",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One aggregate's stream of events: its category and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub category: StreamCategory,
    pub id: Uuid,
}

impl StreamId {
    pub fn new(category: StreamCategory, id: Uuid) -> Self {
        Self { category, id }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.category.as_str(), self.id)
    }
}

impl FromStr for StreamId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (category, id) = s
            .split_once(':')
            .ok_or(InvalidValue::new("stream id", "must be category:uuid"))?;
        let id = Uuid::parse_str(id)
            .map_err(|_| InvalidValue::new("stream id", "must be category:uuid"))?;
        Ok(Self::new(StreamCategory::parse(category)?, id))
    }
}

/// The version of a stream: the number of events in it. The first event of a
/// stream has version 1; an empty (not yet existing) stream is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamVersion(pub u64);

impl StreamVersion {
    pub const EMPTY: StreamVersion = StreamVersion(0);

    pub fn next(self) -> StreamVersion {
        StreamVersion(self.0 + 1)
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The place of an event in its chain: 0 for the first event of a chain,
/// then 1, 2, … with no gaps. Covered by the event hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainIndex(pub u64);

impl fmt::Display for ChainIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The global position of an event in one database: unique, starting at 1,
/// increasing along every chain. A storage coordinate, like a row id: it is
/// not covered by the hash (see docs/event-format.md for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a follower stands in the log's read order.
///
/// The whole log is read in *commit-safe order*: by the number of the
/// transaction that committed the event, then by position. A follower that
/// has read up to a cursor never later finds an event below it (see
/// docs/adr/0002-gap-safe-reads.md). Cursors compare in that order, so a
/// consistency token ("has the projection reached my write?") is a cursor
/// comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LogCursor {
    pub transaction: u64,
    pub position: u64,
}

impl LogCursor {
    /// Before the first event.
    pub const START: LogCursor = LogCursor {
        transaction: 0,
        position: 0,
    };
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction, self.position)
    }
}

impl FromStr for LogCursor {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const RULE: &str = "must be <transaction>.<position>";
        let (transaction, position) = s
            .split_once('.')
            .ok_or(InvalidValue::new("log cursor", RULE))?;
        Ok(Self {
            transaction: transaction
                .parse()
                .map_err(|_| InvalidValue::new("log cursor", RULE))?,
            position: position
                .parse()
                .map_err(|_| InvalidValue::new("log cursor", RULE))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_rejects_nil_and_garbage() {
        assert!(TenantId::from_uuid(Uuid::nil()).is_err());
        assert!("not-a-uuid".parse::<TenantId>().is_err());
        let id = TenantId::generate();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
    }

    #[test]
    fn platform_chain_is_the_nil_uuid() {
        assert_eq!(ChainId::Platform.as_uuid(), Uuid::nil());
        assert_eq!(ChainId::from_uuid(Uuid::nil()), ChainId::Platform);
        let tenant = TenantId::generate();
        assert_eq!(
            ChainId::from_uuid(tenant.as_uuid()),
            ChainId::Tenant(tenant)
        );
    }

    #[test]
    fn stream_category_rules() {
        for good in ["user", "tenant_settings", "a1"] {
            assert!(StreamCategory::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "User", "1user", "user-x", "usér", &"a".repeat(65)] {
            assert!(StreamCategory::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_id_round_trips_through_text() {
        let stream = StreamId::new(StreamCategory::parse("user").unwrap(), Uuid::now_v7());
        assert_eq!(stream.to_string().parse::<StreamId>().unwrap(), stream);
        assert!("user".parse::<StreamId>().is_err());
    }

    #[test]
    fn cursors_order_by_transaction_then_position() {
        let a = LogCursor {
            transaction: 5,
            position: 9,
        };
        let b = LogCursor {
            transaction: 6,
            position: 2,
        };
        assert!(a < b);
        assert_eq!("6.2".parse::<LogCursor>().unwrap(), b);
        assert!("6".parse::<LogCursor>().is_err());
    }
}
