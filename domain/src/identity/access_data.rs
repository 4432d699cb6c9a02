//! The record of access data destroyed by retention, in the tenant's chain:
//! one stream per tenant, one `AccessDataExpired` event per run that
//! destroyed something, naming the days and their keys. No personal data.

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::personal::AccessDay;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDataCommand {
    /// Records that the keys of `days` are destroyed under a retention of
    /// `retention_days`.
    Expire {
        days: Vec<AccessDay>,
        keys: Vec<String>,
        retention_days: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDataEvent {
    /// `AccessDataExpired`.
    Expired {
        days: Vec<AccessDay>,
        keys: Vec<String>,
        retention_days: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDataError {
    #[error("no access-data day to expire")]
    NothingToExpire,
}

/// Nothing the decision depends on: the key store knows which days are
/// still readable, and the event records what was destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessData;

/// Not snapshotted: nothing to fold.
impl Snapshot for AccessData {}

impl Aggregate for AccessData {
    type Command = AccessDataCommand;
    type Event = AccessDataEvent;
    type Error = AccessDataError;

    fn decide(&self, command: &AccessDataCommand) -> Result<Vec<AccessDataEvent>, AccessDataError> {
        let AccessDataCommand::Expire {
            days,
            keys,
            retention_days,
        } = command;
        if days.is_empty() {
            return Err(AccessDataError::NothingToExpire);
        }
        Ok(vec![AccessDataEvent::Expired {
            days: days.clone(),
            keys: keys.clone(),
            retention_days: *retention_days,
        }])
    }

    fn apply(self, _event: &AccessDataEvent) -> AccessData {
        AccessData
    }
}

#[derive(Serialize, Deserialize)]
struct Dto {
    days: Vec<AccessDay>,
    keys: Vec<String>,
    retention_days: u16,
}

impl EventSchema for AccessDataEvent {
    fn to_stored(&self) -> StoredForm {
        let AccessDataEvent::Expired {
            days,
            keys,
            retention_days,
        } = self;
        stored(
            "AccessDataExpired",
            1,
            &Dto {
                days: days.clone(),
                keys: keys.clone(),
                retention_days: *retention_days,
            },
        )
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("AccessDataExpired", 1) => {
                let dto: Dto = read(form)?;
                Ok(AccessDataEvent::Expired {
                    days: dto.days,
                    keys: dto.keys,
                    retention_days: dto.retention_days,
                })
            }
            ("AccessDataExpired", version) => Err(SchemaError::UnknownVersion {
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
    fn expiry_is_recorded_with_its_days_and_keys() {
        let day = AccessDay::parse("2026-10-01").unwrap();
        let keys = vec![crate::personal::access_key_id(uuid::Uuid::nil(), day)];
        let expire = AccessDataCommand::Expire {
            days: vec![day],
            keys: keys.clone(),
            retention_days: 30,
        };
        let expired = AccessDataEvent::Expired {
            days: vec![day],
            keys,
            retention_days: 30,
        };
        given::<AccessData>(&[])
            .when(&expire)
            .then(std::slice::from_ref(&expired));
        let nothing = AccessDataCommand::Expire {
            days: vec![],
            keys: vec![],
            retention_days: 30,
        };
        given::<AccessData>(&[])
            .when(&nothing)
            .then_error(AccessDataError::NothingToExpire);
        let stored = expired.to_stored();
        assert_eq!(stored.event_type.as_str(), "AccessDataExpired");
        assert_eq!(
            stored.payload.as_bytes(),
            &br#"{"days":["2026-10-01"],"keys":["access:00000000-0000-0000-0000-000000000000/2026-10-01:v1"],"retention_days":30}"#[..]
        );
        assert_eq!(AccessDataEvent::from_stored(&stored).unwrap(), expired);
    }
}
