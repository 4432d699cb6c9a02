//! The consent ledger of one data subject: grants and withdrawals per
//! purpose and policy version, with the channel and evidence of each, so
//! that the controller can show consent was given (GDPR Art. 7(1)).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::event::Timestamp;

/// Where the consent was given or withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    MobileApp,
    Email,
    Phone,
    Paper,
    Api,
}

/// One decision in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentDecision {
    pub purpose: String,
    pub policy_version: u32,
    pub channel: Channel,
    /// SHA-256 of the text the subject was shown, if recorded.
    pub evidence_sha256: Option<[u8; 32]>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    Grant(ConsentDecision),
    Withdraw(ConsentDecision),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentEvent {
    Granted(ConsentDecision),
    Withdrawn(ConsentDecision),
}

/// The current consent per purpose: the policy version granted, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentLedger(pub BTreeMap<String, u32>);

impl ConsentLedger {
    pub fn granted(&self, purpose: &str) -> Option<u32> {
        self.0.get(purpose).copied()
    }
}

/// Not snapshotted: the stream stays short (ADR 0008).
impl Snapshot for ConsentLedger {}

impl Aggregate for ConsentLedger {
    type Command = ConsentCommand;
    type Event = ConsentEvent;
    type Error = std::convert::Infallible;

    /// Granting what is already granted at that version, or withdrawing
    /// what is not granted, records nothing.
    fn decide(&self, command: &ConsentCommand) -> Result<Vec<ConsentEvent>, Self::Error> {
        Ok(match command {
            ConsentCommand::Grant(d) if self.granted(&d.purpose) == Some(d.policy_version) => {
                vec![]
            }
            ConsentCommand::Grant(d) => vec![ConsentEvent::Granted(d.clone())],
            ConsentCommand::Withdraw(d) if self.granted(&d.purpose).is_none() => vec![],
            ConsentCommand::Withdraw(d) => vec![ConsentEvent::Withdrawn(d.clone())],
        })
    }

    fn apply(mut self, event: &ConsentEvent) -> ConsentLedger {
        match event {
            ConsentEvent::Granted(d) => {
                self.0.insert(d.purpose.clone(), d.policy_version);
            }
            ConsentEvent::Withdrawn(d) => {
                self.0.remove(&d.purpose);
            }
        }
        self
    }
}

#[derive(Serialize, Deserialize)]
struct Dto {
    purpose: String,
    policy_version: u32,
    channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidence_sha256: Option<String>,
    at: i64,
}

impl From<&ConsentDecision> for Dto {
    fn from(d: &ConsentDecision) -> Self {
        Dto {
            purpose: d.purpose.clone(),
            policy_version: d.policy_version,
            channel: d.channel,
            evidence_sha256: d.evidence_sha256.map(hex::encode),
            at: d.at.0,
        }
    }
}

impl EventSchema for ConsentEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            ConsentEvent::Granted(d) => stored("ConsentGranted", 1, &Dto::from(d)),
            ConsentEvent::Withdrawn(d) => stored("ConsentWithdrawn", 1, &Dto::from(d)),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let name = form.event_type.as_str();
        let version = form.schema_version.get();
        let decision = || -> Result<ConsentDecision, SchemaError> {
            let d: Dto = read(form)?;
            let evidence_sha256 = match d.evidence_sha256 {
                Some(text) => Some(
                    hex::decode(text)
                        .ok()
                        .and_then(|bytes| bytes.try_into().ok())
                        .ok_or(SchemaError::Malformed {
                            event_type: name.to_owned(),
                            version,
                        })?,
                ),
                None => None,
            };
            Ok(ConsentDecision {
                purpose: d.purpose,
                policy_version: d.policy_version,
                channel: d.channel,
                evidence_sha256,
                at: Timestamp(d.at),
            })
        };
        match (name, version) {
            ("ConsentGranted", 1) => Ok(ConsentEvent::Granted(decision()?)),
            ("ConsentWithdrawn", 1) => Ok(ConsentEvent::Withdrawn(decision()?)),
            ("ConsentGranted" | "ConsentWithdrawn", version) => Err(SchemaError::UnknownVersion {
                event_type: name.to_owned(),
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

    fn decision(purpose: &str, version: u32) -> ConsentDecision {
        ConsentDecision {
            purpose: purpose.into(),
            policy_version: version,
            channel: Channel::Web,
            evidence_sha256: Some([7; 32]),
            at: Timestamp(1),
        }
    }

    #[test]
    fn grant_and_withdraw_per_purpose_and_version() {
        let v1 = ConsentEvent::Granted(decision("newsletter", 1));
        given::<ConsentLedger>(&[])
            .when(&ConsentCommand::Grant(decision("newsletter", 1)))
            .then(std::slice::from_ref(&v1));
        given::<ConsentLedger>(std::slice::from_ref(&v1))
            .when(&ConsentCommand::Grant(decision("newsletter", 1)))
            .then(&[]);
        // A new policy version needs a new grant.
        given::<ConsentLedger>(std::slice::from_ref(&v1))
            .when(&ConsentCommand::Grant(decision("newsletter", 2)))
            .then(&[ConsentEvent::Granted(decision("newsletter", 2))]);
        given::<ConsentLedger>(std::slice::from_ref(&v1))
            .when(&ConsentCommand::Withdraw(decision("newsletter", 1)))
            .then(&[ConsentEvent::Withdrawn(decision("newsletter", 1))]);
        given::<ConsentLedger>(&[])
            .when(&ConsentCommand::Withdraw(decision("newsletter", 1)))
            .then(&[]);
        let ledger = ConsentLedger::fold(&[v1, ConsentEvent::Granted(decision("analytics", 3))]);
        assert_eq!(
            (
                ledger.granted("newsletter"),
                ledger.granted("analytics"),
                ledger.granted("x")
            ),
            (Some(1), Some(3), None)
        );
    }

    #[test]
    fn events_round_trip() {
        let without_evidence = ConsentDecision {
            evidence_sha256: None,
            channel: Channel::Paper,
            ..decision("analytics", 2)
        };
        for event in [
            ConsentEvent::Granted(decision("newsletter", 1)),
            ConsentEvent::Withdrawn(without_evidence),
        ] {
            assert_eq!(ConsentEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}
