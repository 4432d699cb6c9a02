//! The record of a tenant's erasure, in the platform chain (the tenant's
//! own chain ends with `TenantClosed`): one stream per erased tenant, one
//! `TenantErased` event naming the keys destroyed and the request's
//! reference. No personal data.

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::identity::user::ErasureReference;

/// The id of a destroyed tenant key, as an erasure event names it.
pub fn tenant_key_id(tenant: uuid::Uuid) -> String {
    format!("tenant:{tenant}:v1")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantErasureCommand {
    /// Records the erasure; recording it again changes nothing.
    Record {
        keys: Vec<String>,
        reference: ErasureReference,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantErasureEvent {
    /// `TenantErased`.
    Erased {
        keys: Vec<String>,
        reference: ErasureReference,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TenantErasureError {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TenantErasure {
    #[default]
    NotRecorded,
    Recorded,
}

/// Not snapshotted: one event per stream.
impl Snapshot for TenantErasure {}

impl Aggregate for TenantErasure {
    type Command = TenantErasureCommand;
    type Event = TenantErasureEvent;
    type Error = TenantErasureError;

    fn decide(
        &self,
        command: &TenantErasureCommand,
    ) -> Result<Vec<TenantErasureEvent>, TenantErasureError> {
        let TenantErasureCommand::Record { keys, reference } = command;
        Ok(match self {
            TenantErasure::NotRecorded => vec![TenantErasureEvent::Erased {
                keys: keys.clone(),
                reference: reference.clone(),
            }],
            TenantErasure::Recorded => vec![],
        })
    }

    fn apply(self, _event: &TenantErasureEvent) -> TenantErasure {
        TenantErasure::Recorded
    }
}

#[derive(Serialize, Deserialize)]
struct Dto {
    keys: Vec<String>,
    reference: String,
}

impl EventSchema for TenantErasureEvent {
    fn to_stored(&self) -> StoredForm {
        let TenantErasureEvent::Erased { keys, reference } = self;
        stored(
            "TenantErased",
            1,
            &Dto {
                keys: keys.clone(),
                reference: reference.as_str().to_owned(),
            },
        )
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("TenantErased", 1) => {
                let dto: Dto = read(form)?;
                Ok(TenantErasureEvent::Erased {
                    keys: dto.keys,
                    reference: ErasureReference::from_log(dto.reference),
                })
            }
            ("TenantErased", version) => Err(SchemaError::UnknownVersion {
                event_type: form.event_type.as_str().to_owned(),
                version,
            }),
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    #[test]
    fn an_erasure_is_recorded_once() {
        let reference = ErasureReference::parse("offboarding 2026-11").unwrap();
        let record = TenantErasureCommand::Record {
            keys: vec![tenant_key_id(uuid::Uuid::nil())],
            reference: reference.clone(),
        };
        let erased = TenantErasureEvent::Erased {
            keys: vec![tenant_key_id(uuid::Uuid::nil())],
            reference,
        };
        given::<TenantErasure>(&[])
            .when(&record)
            .then(std::slice::from_ref(&erased));
        given::<TenantErasure>(std::slice::from_ref(&erased))
            .when(&record)
            .then(&[]);
        let stored = erased.to_stored();
        assert_eq!(stored.event_type.as_str(), "TenantErased");
        assert_eq!(TenantErasureEvent::from_stored(&stored).unwrap(), erased);
    }
}
