//! One email address per user within a tenant. Each address (by its blind
//! index) has a claim stream; registering or changing to an address claims
//! it first, so two users can never hold the same one, even concurrently.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaimCommand {
    Claim { user: Uuid },
    Release { user: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaimEvent {
    Claimed { user: Uuid },
    Released { user: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailClaimError {
    #[error("the email address is already used in this tenant")]
    Taken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EmailClaim {
    #[default]
    Free,
    ClaimedBy(Uuid),
}

/// Not snapshotted: the stream stays short (ADR 0008).
impl Snapshot for EmailClaim {}

impl Aggregate for EmailClaim {
    type Command = EmailClaimCommand;
    type Event = EmailClaimEvent;
    type Error = EmailClaimError;

    fn decide(&self, command: &EmailClaimCommand) -> Result<Vec<EmailClaimEvent>, EmailClaimError> {
        match (self, command) {
            (EmailClaim::Free, EmailClaimCommand::Claim { user }) => {
                Ok(vec![EmailClaimEvent::Claimed { user: *user }])
            }
            (EmailClaim::ClaimedBy(owner), EmailClaimCommand::Claim { user }) if owner == user => {
                Ok(vec![])
            }
            (EmailClaim::ClaimedBy(_), EmailClaimCommand::Claim { .. }) => {
                Err(EmailClaimError::Taken)
            }
            (EmailClaim::ClaimedBy(owner), EmailClaimCommand::Release { user })
                if owner == user =>
            {
                Ok(vec![EmailClaimEvent::Released { user: *user }])
            }
            (_, EmailClaimCommand::Release { .. }) => Ok(vec![]),
        }
    }

    fn apply(self, event: &EmailClaimEvent) -> EmailClaim {
        match event {
            EmailClaimEvent::Claimed { user } => EmailClaim::ClaimedBy(*user),
            EmailClaimEvent::Released { .. } => EmailClaim::Free,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Dto {
    user: Uuid,
}

impl EventSchema for EmailClaimEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            EmailClaimEvent::Claimed { user } => stored("EmailClaimed", 1, &Dto { user: *user }),
            EmailClaimEvent::Released { user } => stored("EmailReleased", 1, &Dto { user: *user }),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("EmailClaimed", 1) => Ok(EmailClaimEvent::Claimed {
                user: read::<Dto>(form)?.user,
            }),
            ("EmailReleased", 1) => Ok(EmailClaimEvent::Released {
                user: read::<Dto>(form)?.user,
            }),
            ("EmailClaimed" | "EmailReleased", version) => Err(SchemaError::UnknownVersion {
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
    fn an_address_has_one_owner_at_a_time() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let claimed = EmailClaimEvent::Claimed { user: ada };
        given::<EmailClaim>(&[])
            .when(&EmailClaimCommand::Claim { user: ada })
            .then(std::slice::from_ref(&claimed));
        given::<EmailClaim>(std::slice::from_ref(&claimed))
            .when(&EmailClaimCommand::Claim { user: ada })
            .then(&[]);
        given::<EmailClaim>(std::slice::from_ref(&claimed))
            .when(&EmailClaimCommand::Claim { user: bob })
            .then_error(EmailClaimError::Taken);
        given::<EmailClaim>(std::slice::from_ref(&claimed))
            .when(&EmailClaimCommand::Release { user: bob })
            .then(&[]);
        let released = [claimed.clone(), EmailClaimEvent::Released { user: ada }];
        given::<EmailClaim>(&released)
            .when(&EmailClaimCommand::Claim { user: bob })
            .then(&[EmailClaimEvent::Claimed { user: bob }]);
        for event in released {
            assert_eq!(EmailClaimEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}
