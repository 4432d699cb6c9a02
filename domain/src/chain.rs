//! The hash chain: the canonical encoding of an event, its SHA-256, and the
//! verifier that walks a chain and names the first broken link.
//!
//! The byte layout is specified in `docs/event-format.md`; the worked example
//! there is checked by `worked_example_matches_the_document` below.

use std::fmt;

use sha2::{Digest, Sha256};

use uuid::Uuid;

use crate::event::{Metadata, NewEvent, RecordedEvent, Timestamp};
use crate::ids::{ChainId, ChainIndex, EventId, Position, StreamCategory, StreamId, StreamVersion};

/// The tag that opens every canonical encoding. A new layout gets a new tag.
pub const FORMAT_TAG: &[u8] = b"custodia.event.v1";

/// A SHA-256 digest of an event's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventHash(pub [u8; 32]);

/// The `prev_hash` of the first event of every chain: 32 zero bytes.
pub const GENESIS_HASH: EventHash = EventHash([0; 32]);

impl EventHash {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The covered fields of one event, borrowed: exactly what its hash is
/// computed over (docs/event-format.md), in that order. Verification builds
/// these straight from stored rows without copying them.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub chain: Uuid,
    pub chain_index: u64,
    pub prev_hash: &'a [u8],
    pub event_id: Uuid,
    pub stream_category: &'a str,
    pub stream_id: Uuid,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at: i64,
    pub actor: &'a str,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub origin: &'a str,
    pub payload: &'a [u8],
}

impl EventFields<'_> {
    /// Feeds every field, in order, each as a 4-byte big-endian length
    /// followed by its bytes. The one definition of the layout.
    fn encode(&self, put: &mut impl FnMut(&[u8])) {
        let mut field = |bytes: &[u8]| {
            let len = u32::try_from(bytes.len()).expect("fields are bounded far below 4 GiB");
            put(&len.to_be_bytes());
            put(bytes);
        };
        field(FORMAT_TAG);
        field(self.chain.as_bytes());
        field(&self.chain_index.to_be_bytes());
        field(self.prev_hash);
        field(self.event_id.as_bytes());
        field(self.stream_category.as_bytes());
        field(self.stream_id.as_bytes());
        field(&self.stream_version.to_be_bytes());
        field(self.event_type.as_bytes());
        field(&self.schema_version.to_be_bytes());
        field(&self.recorded_at.to_be_bytes());
        field(self.actor.as_bytes());
        field(self.command_id.as_bytes());
        field(self.correlation_id.as_bytes());
        field(
            self.causation_id
                .as_ref()
                .map_or(&[][..], |id| id.as_bytes()),
        );
        field(self.origin.as_bytes());
        field(self.payload);
    }

    /// SHA-256 of the canonical bytes, computed without building them.
    pub fn hash(&self) -> EventHash {
        let mut hasher = Sha256::new();
        self.encode(&mut |bytes| hasher.update(bytes));
        EventHash(hasher.finalize().into())
    }
}

/// Calls `with` on the covered fields of a recorded event.
fn with_fields<T>(event: &RecordedEvent, with: impl FnOnce(&EventFields<'_>) -> T) -> T {
    let meta = &event.metadata;
    let actor = meta.actor.to_string();
    with(&EventFields {
        chain: event.chain.as_uuid(),
        chain_index: event.chain_index.0,
        prev_hash: &event.prev_hash.0,
        event_id: event.event_id.as_uuid(),
        stream_category: event.stream.category.as_str(),
        stream_id: event.stream.id,
        stream_version: event.stream_version.0,
        event_type: event.event_type.as_str(),
        schema_version: event.schema_version.get(),
        recorded_at: event.recorded_at.0,
        actor: &actor,
        command_id: meta.command_id.as_uuid(),
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        origin: meta.origin.as_str(),
        payload: event.payload.as_bytes(),
    })
}

/// The canonical bytes of an event: what its hash is computed over.
pub fn canonical_bytes(event: &RecordedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.payload.as_bytes().len());
    with_fields(event, |fields| {
        fields.encode(&mut |bytes| out.extend_from_slice(bytes))
    });
    out
}

/// SHA-256 of the canonical bytes of a recorded event.
pub fn compute_hash(event: &RecordedEvent) -> EventHash {
    with_fields(event, |fields| fields.hash())
}

/// The end of a chain: where the next event goes and what it links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub next_index: ChainIndex,
    pub last_hash: EventHash,
}

impl ChainHead {
    /// The head of a chain with no events yet.
    pub const GENESIS: ChainHead = ChainHead {
        next_index: ChainIndex(0),
        last_hash: GENESIS_HASH,
    };

    /// The head after `event`, which is trusted to be this chain's last.
    pub fn after(event: &RecordedEvent) -> ChainHead {
        ChainHead {
            next_index: ChainIndex(event.chain_index.0 + 1),
            last_hash: event.hash,
        }
    }
}

/// Links a batch of new events onto a chain: assigns chain indexes, stream
/// versions, the recording time, and computes each hash over the previous.
///
/// The returned events carry `Position(0)` and transaction 0: those are
/// storage coordinates, not covered by the hash, and the store fills them in.
pub fn seal(
    chain: ChainId,
    head: ChainHead,
    stream: &StreamId,
    current_version: StreamVersion,
    events: &[NewEvent],
    metadata: &Metadata,
    recorded_at: Timestamp,
) -> Vec<RecordedEvent> {
    let mut head = head;
    let mut version = current_version;
    events
        .iter()
        .map(|new| {
            version = version.next();
            let mut event = RecordedEvent {
                position: Position(0),
                transaction: 0,
                event_id: new.event_id,
                chain,
                chain_index: head.next_index,
                stream: stream.clone(),
                stream_version: version,
                event_type: new.event_type.clone(),
                schema_version: new.schema_version,
                payload: new.payload.clone(),
                metadata: metadata.clone(),
                recorded_at,
                prev_hash: head.last_hash,
                hash: GENESIS_HASH,
            };
            event.hash = compute_hash(&event);
            head = ChainHead::after(&event);
            event
        })
        .collect()
}

/// What is wrong at a broken link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// The event's bytes no longer hash to its stored hash: a payload,
    /// metadata or other covered field was changed.
    AlteredContent,
    /// Chain indexes jump: this many events before this one are gone.
    MissingPredecessor { missing: u64 },
    /// The event's position is out of order with its neighbours in the
    /// chain: events were moved or swapped.
    Reordered,
    /// The event hashes correctly but does not link to the previous event's
    /// hash (or claims an index already taken): it was not appended through
    /// the chain.
    Forged,
    /// A stored value cannot be read as what the format says it is (a
    /// hash of the wrong length, a number out of range, an identifier
    /// that is no UUID): the row was written around the log.
    Unreadable { field: StoredField },
}

/// A stored column of an event, as a report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredField {
    Position,
    ChainId,
    ChainIndex,
    PreviousHash,
    EventId,
    StreamCategory,
    StreamId,
    StreamVersion,
    EventType,
    SchemaVersion,
    RecordedAt,
    Actor,
    CommandId,
    CorrelationId,
    CausationId,
    Origin,
    Payload,
    Hash,
}

impl fmt::Display for StoredField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredField::Position => "position",
            StoredField::ChainId => "chain id",
            StoredField::ChainIndex => "chain index",
            StoredField::PreviousHash => "previous hash",
            StoredField::EventId => "event id",
            StoredField::StreamCategory => "stream category",
            StoredField::StreamId => "stream id",
            StoredField::StreamVersion => "stream version",
            StoredField::EventType => "event type",
            StoredField::SchemaVersion => "schema version",
            StoredField::RecordedAt => "recorded-at time",
            StoredField::Actor => "actor",
            StoredField::CommandId => "command id",
            StoredField::CorrelationId => "correlation id",
            StoredField::CausationId => "causation id",
            StoredField::Origin => "origin",
            StoredField::Payload => "payload",
            StoredField::Hash => "hash",
        })
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::AlteredContent => f.write_str(
                "altered content: the stored hash does not match the event's canonical bytes",
            ),
            BreakKind::MissingPredecessor { missing } => write!(
                f,
                "missing predecessor: {missing} event(s) before this one are gone from the chain"
            ),
            BreakKind::Reordered => f.write_str(
                "reordered: its position is out of order with its neighbours in the chain",
            ),
            BreakKind::Forged => f.write_str(
                "forged: it hashes correctly but does not link to the previous event's hash",
            ),
            BreakKind::Unreadable { field } => {
                write!(
                    f,
                    "unreadable: its {field} is not a value the format allows"
                )
            }
        }
    }
}

/// The first broken link of a chain, located exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub chain: ChainId,
    pub position: Position,
    pub chain_index: ChainIndex,
    pub stream: StreamId,
    pub stream_version: StreamVersion,
    pub event_id: EventId,
    pub kind: BreakKind,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: broken at position {} (chain index {}, stream {}, version {}, event {}): {}",
            self.chain,
            self.position,
            self.chain_index,
            self.stream,
            self.stream_version,
            self.event_id,
            self.kind
        )
    }
}

/// Where a stored event is: enough to name it in a [`ChainBreak`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLocation<'a> {
    pub position: Position,
    pub chain_index: u64,
    pub event_id: Uuid,
    pub stream_category: &'a str,
    pub stream_id: Uuid,
    pub stream_version: u64,
}

/// The previous event, held until the next one shows whether its position
/// is in order. Its category lives in a reused buffer (no allocation per event).
#[derive(Debug, Default)]
struct Pending {
    position: Position,
    chain_index: u64,
    event_id: Uuid,
    stream_category: String,
    stream_id: Uuid,
    stream_version: u64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    content_intact: bool,
}

/// Walks one chain in chain-index order and stops at the first broken link.
///
/// It looks one event ahead, so it must be told when the chain ends
/// ([`ChainVerifier::finish`]). Per event it checks, in this order: the chain
/// index follows on (else [`BreakKind::MissingPredecessor`]); the position
/// lies between its neighbours' (else [`BreakKind::Reordered`]); the hash
/// matches the bytes (else [`BreakKind::AlteredContent`]); the previous hash
/// is the previous event's hash (else [`BreakKind::Forged`]).
#[derive(Debug)]
pub struct ChainVerifier {
    chain: ChainId,
    head: ChainHead,
    last_position: Option<Position>,
    pending: Pending,
    has_pending: bool,
    verified: u64,
    /// The chain as a Merkle log (its leaves the event hashes).
    merkle: crate::merkle::Frontier,
    /// A tree size whose root to note on the way, and the root once seen.
    watch: Option<(u64, Option<crate::merkle::Hash>)>,
}

/// What a verifier says of an intact chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedChain {
    pub events: u64,
    pub head: ChainHead,
    /// The chain's Merkle root (docs/audit-format.md).
    pub root: crate::merkle::Hash,
    /// The root at the size [`ChainVerifier::watch_root_at`] named, if the
    /// walk passed it.
    pub watched: Option<crate::merkle::Hash>,
}

impl ChainVerifier {
    pub fn new(chain: ChainId) -> Self {
        Self {
            chain,
            head: ChainHead::GENESIS,
            last_position: None,
            pending: Pending::default(),
            has_pending: false,
            verified: 0,
            merkle: crate::merkle::Frontier::default(),
            watch: None,
        }
    }

    /// A verifier that goes on from the middle of a chain: `head` names
    /// the next chain index and the hash the next event must link to,
    /// `merkle` the tree of every event before it (its size must be that
    /// index). What an export of part of a chain is checked with.
    pub fn resume(chain: ChainId, head: ChainHead, merkle: crate::merkle::Frontier) -> Self {
        debug_assert_eq!(merkle.size(), head.next_index.0);
        Self {
            head,
            merkle,
            ..Self::new(chain)
        }
    }

    /// Notes the Merkle root when the walk reaches `size` events
    /// ([`VerifiedChain::watched`]).
    pub fn watch_root_at(&mut self, size: u64) {
        let seen = (self.merkle.size() == size).then(|| self.merkle.root());
        self.watch = Some((size, seen));
    }

    /// Feeds the chain's next recorded event (by chain index).
    pub fn push(&mut self, event: &RecordedEvent) -> Result<(), ChainBreak> {
        let location = EventLocation {
            position: event.position,
            chain_index: event.chain_index.0,
            event_id: event.event_id.as_uuid(),
            stream_category: event.stream.category.as_str(),
            stream_id: event.stream.id,
            stream_version: event.stream_version.0,
        };
        let chain_matches = event.chain == self.chain;
        with_fields(event, |fields| {
            self.push_fields(location, fields, &event.hash.0, chain_matches)
        })
    }

    /// Feeds the chain's next event as stored: its location, its covered
    /// fields and its stored hash. `chain_matches` says whether its stored
    /// chain id is this chain's.
    pub fn push_fields(
        &mut self,
        location: EventLocation<'_>,
        fields: &EventFields<'_>,
        stored_hash: &[u8],
        chain_matches: bool,
    ) -> Result<(), ChainBreak> {
        if self.has_pending {
            self.check_pending(Some(location.position))?;
        }
        let pending = &mut self.pending;
        pending.position = location.position;
        pending.chain_index = location.chain_index;
        pending.event_id = location.event_id;
        pending.stream_category.clear();
        pending.stream_category.push_str(location.stream_category);
        pending.stream_id = location.stream_id;
        pending.stream_version = location.stream_version;
        let (prev, stored) = (
            <[u8; 32]>::try_from(fields.prev_hash),
            <[u8; 32]>::try_from(stored_hash),
        );
        pending.prev_hash = prev.unwrap_or([0xff; 32]);
        pending.hash = stored.unwrap_or([0xff; 32]);
        pending.content_intact =
            chain_matches && prev.is_ok() && stored.is_ok() && fields.hash().0 == pending.hash;
        self.has_pending = true;
        Ok(())
    }

    /// Checks the last event and returns the number of events verified,
    /// the chain's head and its Merkle root.
    pub fn finish(mut self) -> Result<VerifiedChain, ChainBreak> {
        if self.has_pending {
            self.check_pending(None)?;
        }
        Ok(VerifiedChain {
            events: self.verified,
            head: self.head,
            root: self.merkle.root(),
            watched: self.watch.and_then(|(_, root)| root),
        })
    }

    /// The break for a row at `position` whose `field` cannot be read (its
    /// chain index, if that much could be read): the event before it is
    /// checked first, so the first break is the one reported.
    pub fn unreadable(
        &mut self,
        position: Position,
        chain_index: Option<u64>,
        field: StoredField,
    ) -> ChainBreak {
        if self.has_pending {
            if let Err(earlier) = self.check_pending(Some(position)) {
                return earlier;
            }
        }
        ChainBreak {
            chain: self.chain,
            position,
            chain_index: ChainIndex(chain_index.unwrap_or(self.head.next_index.0)),
            stream: StreamId::new(
                StreamCategory::parse("invalid").expect("valid"),
                Uuid::max(),
            ),
            stream_version: StreamVersion(0),
            event_id: EventId::from_uuid(Uuid::max()).expect("not nil"),
            kind: BreakKind::Unreadable { field },
        }
    }

    fn check_pending(&mut self, next_position: Option<Position>) -> Result<(), ChainBreak> {
        let event = &self.pending;
        let expected = self.head.next_index.0;
        let kind = if event.chain_index < expected {
            Some(BreakKind::Forged)
        } else if event.chain_index > expected {
            Some(BreakKind::MissingPredecessor {
                missing: event.chain_index - expected,
            })
        } else if !(self.last_position.is_none_or(|p| p < event.position)
            && next_position.is_none_or(|n| event.position < n))
        {
            Some(BreakKind::Reordered)
        } else if !event.content_intact {
            Some(BreakKind::AlteredContent)
        } else if event.prev_hash != self.head.last_hash.0 {
            Some(BreakKind::Forged)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(ChainBreak {
                chain: self.chain,
                position: event.position,
                chain_index: ChainIndex(event.chain_index),
                // A tampered row may hold values no longer valid; name them
                // as well as they can be named rather than fail the report.
                stream: StreamId::new(
                    StreamCategory::parse(event.stream_category.as_str())
                        .unwrap_or_else(|_| StreamCategory::parse("invalid").expect("valid")),
                    event.stream_id,
                ),
                stream_version: StreamVersion(event.stream_version),
                event_id: EventId::from_uuid(event.event_id)
                    .unwrap_or_else(|_| EventId::from_uuid(Uuid::max()).expect("not nil")),
                kind,
            });
        }
        self.head = ChainHead {
            next_index: ChainIndex(event.chain_index + 1),
            last_hash: EventHash(event.hash),
        };
        self.last_position = Some(event.position);
        self.verified += 1;
        self.merkle.push(crate::merkle::leaf_hash(&event.hash));
        if let Some((size, seen)) = &mut self.watch {
            if *size == self.merkle.size() {
                *seen = Some(self.merkle.root());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, EventType, Origin, Payload, SchemaVersion};
    use crate::ids::{CommandId, StreamCategory, TenantId};

    /// The event of the worked example in docs/event-format.md.
    fn worked_example() -> RecordedEvent {
        let uuid = |s: &str| Uuid::parse_str(s).unwrap();
        let metadata = Metadata {
            actor: Actor::User(uuid("0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b")),
            command_id: CommandId::from_uuid(uuid("0192a3b4-c5d6-7e8f-9a0b-000000000003")).unwrap(),
            correlation_id: uuid("0192a3b4-c5d6-7e8f-9a0b-000000000004"),
            causation_id: None,
            origin: Origin::parse("cli").unwrap(),
        };
        let new = NewEvent {
            event_id: EventId::from_uuid(uuid("0192a3b4-c5d6-7e8f-9a0b-000000000002")).unwrap(),
            event_type: EventType::parse("TenantCreated").unwrap(),
            schema_version: SchemaVersion::new(1).unwrap(),
            payload: Payload::json(br#"{"name":"Acme"}"#.to_vec()).unwrap(),
        };
        let tenant = TenantId::from_uuid(uuid("0192a3b4-c5d6-7e8f-9a0b-000000000001")).unwrap();
        let stream = StreamId::new(StreamCategory::parse("tenant").unwrap(), tenant.as_uuid());
        seal(
            ChainId::Tenant(tenant),
            ChainHead::GENESIS,
            &stream,
            StreamVersion::EMPTY,
            &[new],
            &metadata,
            Timestamp(1_767_225_600_000_000), // 2026-01-01T00:00:00Z
        )
        .remove(0)
    }

    /// The text between `<!-- name -->` and `<!-- /name -->` in the document,
    /// with whitespace removed.
    fn doc_block(doc: &str, name: &str) -> String {
        let open = format!("<!-- {name} -->");
        let close = format!("<!-- /{name} -->");
        let start = doc.find(&open).expect("block opens") + open.len();
        let end = doc[start..].find(&close).expect("block closes") + start;
        doc[start..end]
            .lines()
            .filter(|l| !l.trim_start().starts_with("```"))
            .flat_map(|l| l.split_whitespace())
            .collect()
    }

    #[test]
    fn worked_example_matches_the_document() {
        let doc = include_str!("../../docs/event-format.md");
        let event = worked_example();
        assert_eq!(
            hex::encode(canonical_bytes(&event)),
            doc_block(doc, "example-bytes")
        );
        assert_eq!(event.hash.to_hex(), doc_block(doc, "example-hash"));
        // And the hash is the SHA-256 of those bytes, independently.
        let direct: [u8; 32] = Sha256::digest(canonical_bytes(&event)).into();
        assert_eq!(EventHash(direct), event.hash);
    }

    fn sample_chain(len: usize) -> Vec<RecordedEvent> {
        let tenant = TenantId::generate();
        let stream = StreamId::new(StreamCategory::parse("user").unwrap(), Uuid::now_v7());
        let metadata = Metadata {
            actor: Actor::System,
            command_id: CommandId::generate(),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            origin: Origin::parse("test").unwrap(),
        };
        let events: Vec<NewEvent> = (0..len)
            .map(|i| NewEvent {
                event_id: EventId::generate(),
                event_type: EventType::parse("Touched").unwrap(),
                schema_version: SchemaVersion::new(1).unwrap(),
                payload: Payload::json(format!("{{\"i\":{i}}}").into_bytes()).unwrap(),
            })
            .collect();
        let mut sealed = seal(
            ChainId::Tenant(tenant),
            ChainHead::GENESIS,
            &stream,
            StreamVersion::EMPTY,
            &events,
            &metadata,
            Timestamp::now(),
        );
        for (i, event) in sealed.iter_mut().enumerate() {
            event.position = Position(10 * (i as u64 + 1));
        }
        sealed
    }

    fn verify(events: Vec<RecordedEvent>) -> Result<(u64, ChainHead), ChainBreak> {
        let mut verifier = ChainVerifier::new(events[0].chain);
        for event in &events {
            verifier.push(event)?;
        }
        verifier.finish().map(|chain| (chain.events, chain.head))
    }

    #[test]
    fn a_verified_chain_reports_its_merkle_root() {
        let chain = sample_chain(5);
        let mut tree = crate::merkle::MemoryTree::default();
        for event in &chain {
            tree.push(crate::merkle::leaf_hash(&event.hash.0));
        }
        let mut verifier = ChainVerifier::new(chain[0].chain);
        for event in &chain {
            verifier.push(event).unwrap();
        }
        let verified = verifier.finish().unwrap();
        assert_eq!(verified.root, crate::merkle::root(&tree, 5));
        assert_ne!(verified.root, crate::merkle::root(&tree, 4));
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let chain = sample_chain(5);
        let last_hash = chain[4].hash;
        let (count, head) = verify(chain).unwrap();
        assert_eq!(count, 5);
        assert_eq!(
            head,
            ChainHead {
                next_index: ChainIndex(5),
                last_hash
            }
        );
    }

    #[test]
    fn first_event_links_to_genesis() {
        let chain = sample_chain(2);
        assert_eq!(chain[0].prev_hash, GENESIS_HASH);
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[1].stream_version, StreamVersion(2));
    }

    #[test]
    fn changed_payload_byte_is_altered_content() {
        let mut chain = sample_chain(5);
        let mut bytes = chain[2].payload.as_bytes().to_vec();
        bytes[1] ^= 1;
        chain[2].payload = Payload::from_stored(bytes);
        let broken = verify(chain).unwrap_err();
        assert_eq!(
            (broken.kind, broken.position),
            (BreakKind::AlteredContent, Position(30))
        );
    }

    #[test]
    fn changed_metadata_is_altered_content() {
        let mut chain = sample_chain(5);
        chain[3].metadata.origin = Origin::parse("tesT").unwrap();
        let broken = verify(chain).unwrap_err();
        assert_eq!(
            (broken.kind, broken.position),
            (BreakKind::AlteredContent, Position(40))
        );
    }

    #[test]
    fn deleted_event_is_a_missing_predecessor() {
        let mut chain = sample_chain(5);
        chain.remove(2);
        let broken = verify(chain).unwrap_err();
        assert_eq!(broken.kind, BreakKind::MissingPredecessor { missing: 1 });
        assert_eq!(broken.position, Position(40));
    }

    #[test]
    fn swapped_positions_are_reordered_at_the_first_of_the_two() {
        let mut chain = sample_chain(5);
        let (a, b) = (chain[1].position, chain[2].position);
        chain[1].position = b;
        chain[2].position = a;
        let broken = verify(chain).unwrap_err();
        assert_eq!(
            (broken.kind, broken.position),
            (BreakKind::Reordered, Position(30))
        );
        assert_eq!(broken.chain_index, ChainIndex(1));
    }

    #[test]
    fn recomputed_hash_without_valid_predecessor_is_forged() {
        let mut chain = sample_chain(5);
        let mut forged = chain[4].clone();
        forged.chain_index = ChainIndex(5);
        forged.position = Position(60);
        forged.event_id = EventId::generate();
        forged.prev_hash = EventHash([7; 32]);
        forged.hash = compute_hash(&forged);
        chain.push(forged);
        let broken = verify(chain).unwrap_err();
        assert_eq!(
            (broken.kind, broken.position),
            (BreakKind::Forged, Position(60))
        );
    }

    #[test]
    fn duplicate_chain_index_is_forged() {
        let mut chain = sample_chain(3);
        let mut twin = chain[1].clone();
        twin.position = Position(25);
        chain.insert(2, twin);
        let broken = verify(chain).unwrap_err();
        assert_eq!(
            (broken.kind, broken.position),
            (BreakKind::Forged, Position(25))
        );
    }

    #[test]
    fn storage_coordinates_are_not_covered_by_the_hash() {
        let mut event = sample_chain(1).remove(0);
        let hash = compute_hash(&event);
        event.position = Position(999);
        event.transaction = 12345;
        assert_eq!(compute_hash(&event), hash);
    }
}
