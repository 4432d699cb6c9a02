//! Synthetic events for the demo and the benchmark. Payloads stand in for
//! real ones: personal fields are opaque base64 blobs, as ciphertext will be.

use custodia_application::{AppendRequest, ExpectedVersion};
use custodia_domain::{
    Actor, ChainId, CommandId, EventId, EventType, Metadata, NewEvent, Origin, Payload,
    SchemaVersion, StreamId,
};
use uuid::Uuid;

pub fn events(event_type: &str, count: usize) -> Vec<NewEvent> {
    let event_type = EventType::parse(event_type).expect("sample event types are valid");
    (0..count)
        .map(|i| NewEvent {
            event_id: EventId::generate(),
            event_type: event_type.clone(),
            schema_version: SchemaVersion::new(1).expect("1 is a valid schema version"),
            payload: Payload::json(
                format!(
                    r#"{{"seq":{i},"email":{{"kid":"k1","ct":"q83vEjRWeJAfX2W1bT0xYz3k"}},"locale":"en"}}"#
                )
                .into_bytes(),
            )
            .expect("sample payloads are JSON"),
        })
        .collect()
}

pub fn request(
    chain: ChainId,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    origin: &str,
) -> AppendRequest {
    let metadata = Metadata {
        actor: Actor::System,
        command_id: CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        origin: Origin::parse(origin).expect("sample origins are valid"),
    };
    AppendRequest::new(chain, stream.clone(), expected, events, metadata)
        .expect("sample appends are well formed")
}
