//! One tenant per slug across the platform (ADR 0013): each slug has a
//! claim stream on the platform chain, and each tenant a holder stream
//! there that names the slug it holds. A change claims the new slug,
//! records it in the holder and releases the one the holder named, in one
//! atomic append on the platform chain: two tenants never hold one slug,
//! and a tenant's own concurrent changes conflict on its holder instead of
//! releasing a slug the other one just recorded.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::identity::tenant::TenantSlug;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugClaimCommand {
    Claim { tenant: Uuid },
    Release { tenant: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugClaimEvent {
    Claimed { tenant: Uuid },
    Released { tenant: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugClaimError {
    #[error("the tenant slug is taken")]
    Taken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SlugClaim {
    #[default]
    Free,
    ClaimedBy(Uuid),
}

/// Not snapshotted: the stream stays short.
impl Snapshot for SlugClaim {}

impl Aggregate for SlugClaim {
    type Command = SlugClaimCommand;
    type Event = SlugClaimEvent;
    type Error = SlugClaimError;

    fn decide(&self, command: &SlugClaimCommand) -> Result<Vec<SlugClaimEvent>, SlugClaimError> {
        match (self, command) {
            (SlugClaim::Free, SlugClaimCommand::Claim { tenant }) => {
                Ok(vec![SlugClaimEvent::Claimed { tenant: *tenant }])
            }
            // A claim by its own holder is no conflict: a tenant whose
            // earlier attempt stopped between the claim and the record
            // goes on.
            (SlugClaim::ClaimedBy(holder), SlugClaimCommand::Claim { tenant })
                if holder == tenant =>
            {
                Ok(vec![])
            }
            (SlugClaim::ClaimedBy(_), SlugClaimCommand::Claim { .. }) => Err(SlugClaimError::Taken),
            (SlugClaim::ClaimedBy(holder), SlugClaimCommand::Release { tenant })
                if holder == tenant =>
            {
                Ok(vec![SlugClaimEvent::Released { tenant: *tenant }])
            }
            (_, SlugClaimCommand::Release { .. }) => Ok(vec![]),
        }
    }

    fn apply(self, event: &SlugClaimEvent) -> SlugClaim {
        match event {
            SlugClaimEvent::Claimed { tenant } => SlugClaim::ClaimedBy(*tenant),
            SlugClaimEvent::Released { .. } => SlugClaim::Free,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Dto {
    tenant: Uuid,
}

impl EventSchema for SlugClaimEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            SlugClaimEvent::Claimed { tenant } => {
                stored("TenantSlugClaimed", 1, &Dto { tenant: *tenant })
            }
            SlugClaimEvent::Released { tenant } => {
                stored("TenantSlugReleased", 1, &Dto { tenant: *tenant })
            }
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("TenantSlugClaimed", 1) => Ok(SlugClaimEvent::Claimed {
                tenant: read::<Dto>(form)?.tenant,
            }),
            ("TenantSlugReleased", 1) => Ok(SlugClaimEvent::Released {
                tenant: read::<Dto>(form)?.tenant,
            }),
            ("TenantSlugClaimed" | "TenantSlugReleased", version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: form.event_type.as_str().to_owned(),
                    version,
                })
            }
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

/// The slug a tenant holds, by its holder stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlugHolder(Option<TenantSlug>);

impl SlugHolder {
    pub fn slug(&self) -> Option<&TenantSlug> {
        self.0.as_ref()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugHolderCommand {
    Hold { slug: TenantSlug },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugHolderEvent {
    Held { slug: TenantSlug },
}

/// Not snapshotted: the stream stays short.
impl Snapshot for SlugHolder {}

impl Aggregate for SlugHolder {
    type Command = SlugHolderCommand;
    type Event = SlugHolderEvent;
    type Error = std::convert::Infallible;

    fn decide(&self, command: &SlugHolderCommand) -> Result<Vec<SlugHolderEvent>, Self::Error> {
        let SlugHolderCommand::Hold { slug } = command;
        if self.0.as_ref() == Some(slug) {
            return Ok(vec![]);
        }
        Ok(vec![SlugHolderEvent::Held { slug: slug.clone() }])
    }

    fn apply(self, event: &SlugHolderEvent) -> SlugHolder {
        let SlugHolderEvent::Held { slug } = event;
        SlugHolder(Some(slug.clone()))
    }
}

#[derive(Serialize, Deserialize)]
struct HeldDto {
    slug: String,
}

impl EventSchema for SlugHolderEvent {
    fn to_stored(&self) -> StoredForm {
        let SlugHolderEvent::Held { slug } = self;
        stored(
            "TenantSlugHeld",
            1,
            &HeldDto {
                slug: slug.as_str().to_owned(),
            },
        )
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("TenantSlugHeld", 1) => Ok(SlugHolderEvent::Held {
                slug: TenantSlug::from_log(read::<HeldDto>(form)?.slug),
            }),
            ("TenantSlugHeld", version) => Err(SchemaError::UnknownVersion {
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
    fn a_slug_has_one_tenant_at_a_time_and_its_holder_may_claim_again() {
        let (acme, globex) = (Uuid::now_v7(), Uuid::now_v7());
        let claimed = SlugClaimEvent::Claimed { tenant: acme };
        given::<SlugClaim>(&[])
            .when(&SlugClaimCommand::Claim { tenant: acme })
            .then(std::slice::from_ref(&claimed));
        given::<SlugClaim>(std::slice::from_ref(&claimed))
            .when(&SlugClaimCommand::Claim { tenant: acme })
            .then(&[]);
        given::<SlugClaim>(std::slice::from_ref(&claimed))
            .when(&SlugClaimCommand::Claim { tenant: globex })
            .then_error(SlugClaimError::Taken);
        given::<SlugClaim>(std::slice::from_ref(&claimed))
            .when(&SlugClaimCommand::Release { tenant: globex })
            .then(&[]);
        let released = [claimed, SlugClaimEvent::Released { tenant: acme }];
        given::<SlugClaim>(&released)
            .when(&SlugClaimCommand::Claim { tenant: globex })
            .then(&[SlugClaimEvent::Claimed { tenant: globex }]);
        for event in released {
            assert_eq!(SlugClaimEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }

    #[test]
    fn slugs_are_short_lowercase_words_never_ids_nor_personal_data() {
        for ok in ["acme", "acme-corp", "a1b", "x2-y3-z4", &"a".repeat(63)] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "ac--me",
            "ac_me",
            "acmé",
            "ac me",
            &"a".repeat(64),
            "0190f2a4-9a5e-7c3e-8b1d-2f4e6a8c0b1d",
            "0190f2a49a5e7c3e8b1d2f4e6a8c0b1d",
            "15551234567",
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_holder_names_one_slug_and_records_only_changes() {
        let acme = TenantSlug::parse("acme").unwrap();
        let held = SlugHolderEvent::Held { slug: acme.clone() };
        given::<SlugHolder>(&[])
            .when(&SlugHolderCommand::Hold { slug: acme.clone() })
            .then(std::slice::from_ref(&held));
        given::<SlugHolder>(std::slice::from_ref(&held))
            .when(&SlugHolderCommand::Hold { slug: acme.clone() })
            .then(&[]);
        assert_eq!(
            SlugHolder::fold(std::slice::from_ref(&held)).slug(),
            Some(&acme)
        );
        assert_eq!(SlugHolderEvent::from_stored(&held.to_stored()), Ok(held));
    }
}
