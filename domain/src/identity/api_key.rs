//! API keys for service accounts: created with a set of permissions (never
//! more than the creator holds), shown once, stored as a SHA-256 of their
//! 256-bit secret, revocable, with a coarse last-used time.

use serde::{Deserialize, Serialize};

use crate::aggregate::{
    read, snapshot_json, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm,
};
use crate::event::Timestamp;
use crate::rbac::{Permission, PermissionSet};
use crate::InvalidValue;

/// "Last used" is recorded at most this often (an event per request would
/// flood the log).
pub const LAST_USED_RESOLUTION_MICROS: i64 = 3_600_000_000;

/// A key's label: 1–100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > 100 || value.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "API key name",
                "must be 1-100 characters without control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key is for: the API (GraphQL and HTTP), or SCIM provisioning
/// only (ADR 0012). Each is refused where the other is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ApiKeyPurpose {
    #[default]
    General,
    Scim,
}

impl ApiKeyPurpose {
    /// The stored form (`None` for general keys, which older events are).
    fn stored(self) -> Option<String> {
        match self {
            ApiKeyPurpose::General => None,
            ApiKeyPurpose::Scim => Some("scim".to_owned()),
        }
    }

    fn from_stored(stored: Option<&str>) -> Option<Self> {
        match stored {
            None => Some(ApiKeyPurpose::General),
            Some("scim") => Some(ApiKeyPurpose::Scim),
            Some(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyCommand {
    Create {
        name: ApiKeyName,
        purpose: ApiKeyPurpose,
        permissions: PermissionSet,
        secret_sha256: [u8; 32],
        at: Timestamp,
    },
    Revoke {
        at: Timestamp,
    },
    RecordUse {
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyEvent {
    Created {
        name: ApiKeyName,
        purpose: ApiKeyPurpose,
        permissions: PermissionSet,
        secret_sha256: [u8; 32],
        at: Timestamp,
    },
    Revoked {
        at: Timestamp,
    },
    Used {
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key already exists")]
    AlreadyExists,
    #[error("no such API key")]
    NotFound,
    #[error("the API key is revoked")]
    Revoked,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ApiKey {
    #[default]
    Absent,
    Active {
        purpose: ApiKeyPurpose,
        permissions: PermissionSet,
        secret_sha256: [u8; 32],
        last_used: Option<Timestamp>,
    },
    Revoked,
}

/// The snapshot form, version 1 (a key in use records a use every so
/// often, so its stream grows with time).
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum ApiKeyV1 {
    Absent,
    Active {
        /// Absent in snapshots of general keys (and in older ones).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<String>,
        permissions: Vec<String>,
        secret_sha256: String,
        last_used: Option<i64>,
    },
    Revoked,
}

impl Snapshot for ApiKey {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        snapshot_json(&match self {
            ApiKey::Absent => ApiKeyV1::Absent,
            ApiKey::Active {
                purpose,
                permissions,
                secret_sha256,
                last_used,
            } => ApiKeyV1::Active {
                purpose: purpose.stored(),
                permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
                secret_sha256: hex::encode(secret_sha256),
                last_used: last_used.map(|at| at.0),
            },
            ApiKey::Revoked => ApiKeyV1::Revoked,
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        Some(match serde_json::from_slice(bytes).ok()? {
            ApiKeyV1::Absent => ApiKey::Absent,
            ApiKeyV1::Active {
                purpose,
                permissions,
                secret_sha256,
                last_used,
            } => ApiKey::Active {
                purpose: ApiKeyPurpose::from_stored(purpose.as_deref())?,
                permissions: permissions
                    .iter()
                    .map(|name| Permission::parse(name).ok())
                    .collect::<Option<_>>()?,
                secret_sha256: hex::decode(secret_sha256).ok()?.try_into().ok()?,
                last_used: last_used.map(Timestamp),
            },
            ApiKeyV1::Revoked => ApiKey::Revoked,
        })
    }
}

impl Aggregate for ApiKey {
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;

    fn decide(&self, command: &ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match (self, command) {
            (
                ApiKey::Absent,
                ApiKeyCommand::Create {
                    name,
                    purpose,
                    permissions,
                    secret_sha256,
                    at,
                },
            ) => Ok(vec![ApiKeyEvent::Created {
                name: name.clone(),
                purpose: *purpose,
                permissions: permissions.clone(),
                secret_sha256: *secret_sha256,
                at: *at,
            }]),
            (_, ApiKeyCommand::Create { .. }) => Err(ApiKeyError::AlreadyExists),
            (ApiKey::Absent, _) => Err(ApiKeyError::NotFound),
            (ApiKey::Revoked, ApiKeyCommand::Revoke { .. }) => Ok(vec![]),
            (ApiKey::Revoked, ApiKeyCommand::RecordUse { .. }) => Err(ApiKeyError::Revoked),
            (ApiKey::Active { .. }, ApiKeyCommand::Revoke { at }) => {
                Ok(vec![ApiKeyEvent::Revoked { at: *at }])
            }
            (ApiKey::Active { last_used, .. }, ApiKeyCommand::RecordUse { at }) => {
                let recent =
                    last_used.is_some_and(|last| at.0 - last.0 < LAST_USED_RESOLUTION_MICROS);
                Ok(if recent {
                    vec![]
                } else {
                    vec![ApiKeyEvent::Used { at: *at }]
                })
            }
        }
    }

    fn apply(self, event: &ApiKeyEvent) -> ApiKey {
        match (self, event) {
            (
                _,
                ApiKeyEvent::Created {
                    purpose,
                    permissions,
                    secret_sha256,
                    ..
                },
            ) => ApiKey::Active {
                purpose: *purpose,
                permissions: permissions.clone(),
                secret_sha256: *secret_sha256,
                last_used: None,
            },
            (ApiKey::Active { .. }, ApiKeyEvent::Revoked { .. }) => ApiKey::Revoked,
            (
                ApiKey::Active {
                    purpose,
                    permissions,
                    secret_sha256,
                    ..
                },
                ApiKeyEvent::Used { at },
            ) => ApiKey::Active {
                purpose,
                permissions,
                secret_sha256,
                last_used: Some(*at),
            },
            (state, _) => state,
        }
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Created {
        pub name: String,
        /// Absent for general keys (and in every event before purposes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub purpose: Option<String>,
        pub permissions: Vec<String>,
        pub secret_sha256: String,
        pub at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct At {
        pub at: i64,
    }
}

impl EventSchema for ApiKeyEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            ApiKeyEvent::Created {
                name,
                purpose,
                permissions,
                secret_sha256,
                at,
            } => stored(
                "ApiKeyCreated",
                1,
                &dto::Created {
                    name: name.as_str().to_owned(),
                    purpose: purpose.stored(),
                    permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
                    secret_sha256: hex::encode(secret_sha256),
                    at: at.0,
                },
            ),
            ApiKeyEvent::Revoked { at } => stored("ApiKeyRevoked", 1, &dto::At { at: at.0 }),
            ApiKeyEvent::Used { at } => stored("ApiKeyUsed", 1, &dto::At { at: at.0 }),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let name = form.event_type.as_str();
        let version = form.schema_version.get();
        let malformed = || SchemaError::Malformed {
            event_type: name.to_owned(),
            version,
        };
        match (name, version) {
            ("ApiKeyCreated", 1) => {
                let d: dto::Created = read(form)?;
                let permissions: Result<Vec<Permission>, _> =
                    d.permissions.iter().map(|p| Permission::parse(p)).collect();
                Ok(ApiKeyEvent::Created {
                    name: ApiKeyName::parse(&d.name).map_err(|_| malformed())?,
                    purpose: ApiKeyPurpose::from_stored(d.purpose.as_deref())
                        .ok_or_else(malformed)?,
                    permissions: PermissionSet::from(&permissions.map_err(|_| malformed())?[..]),
                    secret_sha256: hex::decode(d.secret_sha256)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(malformed)?,
                    at: Timestamp(d.at),
                })
            }
            ("ApiKeyRevoked", 1) => Ok(ApiKeyEvent::Revoked {
                at: Timestamp(read::<dto::At>(form)?.at),
            }),
            ("ApiKeyUsed", 1) => Ok(ApiKeyEvent::Used {
                at: Timestamp(read::<dto::At>(form)?.at),
            }),
            ("ApiKeyCreated" | "ApiKeyRevoked" | "ApiKeyUsed", version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: name.to_owned(),
                    version,
                })
            }
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn created() -> ApiKeyEvent {
        ApiKeyEvent::Created {
            name: ApiKeyName::parse("CI deploys").unwrap(),
            purpose: ApiKeyPurpose::General,
            permissions: PermissionSet::from(&[Permission::UserRead][..]),
            secret_sha256: [9; 32],
            at: Timestamp(0),
        }
    }

    #[test]
    fn a_purpose_is_stored_only_for_scim_tokens_and_older_keys_are_general() {
        let general = created().to_stored();
        assert!(!String::from_utf8_lossy(general.payload.as_bytes()).contains("purpose"));
        assert_eq!(ApiKeyEvent::from_stored(&general).unwrap(), created());
        let ApiKeyEvent::Created {
            name,
            permissions,
            secret_sha256,
            at,
            ..
        } = created()
        else {
            unreachable!()
        };
        let scim = ApiKeyEvent::Created {
            name,
            purpose: ApiKeyPurpose::Scim,
            permissions,
            secret_sha256,
            at,
        };
        let stored = scim.to_stored();
        assert!(String::from_utf8_lossy(stored.payload.as_bytes()).contains(r#""purpose":"scim""#));
        assert_eq!(ApiKeyEvent::from_stored(&stored).unwrap(), scim);
        let unknown = String::from_utf8_lossy(stored.payload.as_bytes()).replace("scim", "root");
        let unknown = StoredForm {
            payload: crate::event::Payload::json(unknown.into_bytes()).unwrap(),
            ..stored
        };
        assert!(ApiKeyEvent::from_stored(&unknown).is_err());
    }

    #[test]
    fn last_used_is_recorded_at_most_hourly() {
        given::<ApiKey>(&[created()])
            .when(&ApiKeyCommand::RecordUse { at: Timestamp(5) })
            .then(&[ApiKeyEvent::Used { at: Timestamp(5) }]);
        let used = [created(), ApiKeyEvent::Used { at: Timestamp(5) }];
        given::<ApiKey>(&used)
            .when(&ApiKeyCommand::RecordUse { at: Timestamp(6) })
            .then(&[]);
        let later = Timestamp(5 + LAST_USED_RESOLUTION_MICROS);
        given::<ApiKey>(&used)
            .when(&ApiKeyCommand::RecordUse { at: later })
            .then(&[ApiKeyEvent::Used { at: later }]);
    }

    #[test]
    fn revoked_keys_are_dead() {
        let revoked = [created(), ApiKeyEvent::Revoked { at: Timestamp(1) }];
        given::<ApiKey>(&revoked)
            .when(&ApiKeyCommand::RecordUse { at: Timestamp(2) })
            .then_error(ApiKeyError::Revoked);
        given::<ApiKey>(&revoked)
            .when(&ApiKeyCommand::Revoke { at: Timestamp(2) })
            .then(&[]);
        given::<ApiKey>(&[])
            .when(&ApiKeyCommand::Revoke { at: Timestamp(2) })
            .then_error(ApiKeyError::NotFound);
        assert!(ApiKeyName::parse("").is_err());
    }

    #[test]
    fn events_round_trip() {
        for event in [
            created(),
            ApiKeyEvent::Revoked { at: Timestamp(3) },
            ApiKeyEvent::Used { at: Timestamp(4) },
        ] {
            assert_eq!(ApiKeyEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}
