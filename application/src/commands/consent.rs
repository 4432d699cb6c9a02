//! The consent ledger: record grants and withdrawals, read the history.

use custodia_domain::aggregate::{Aggregate, EventSchema, StoredForm};
use custodia_domain::identity::consent::{
    Channel, ConsentCommand, ConsentDecision, ConsentEvent, ConsentLedger,
};
use custodia_domain::identity::tenant::Tenant;
use custodia_domain::rbac::Permission;
use custodia_domain::{
    ChainId, EventId, InvalidValue, StreamId, StreamVersion, TenantId, Timestamp,
};
use uuid::Uuid;

use super::authorized::authorize;
use super::tenants::require_active_tenant;
use super::{execute, stream, Caller, CommandError, Outcome, Ports};

fn consent_stream(user: Uuid) -> StreamId {
    stream("consent", user)
}

/// A consent decision as the caller states it.
#[derive(Debug, Clone)]
pub struct ConsentInput {
    pub purpose: String,
    /// For a grant, the purpose's current policy version (what was shown).
    pub policy_version: u32,
    pub channel: Channel,
    /// SHA-256 of the text shown to the subject.
    pub evidence_sha256: Option<[u8; 32]>,
}

/// Records a grant (`granted = true`) or a withdrawal for `user`. The
/// purpose must be one the tenant declares, and a grant must be for its
/// current policy version. Needs `consent.record` (or being that user).
pub async fn record_consent(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    input: ConsentInput,
    granted: bool,
    at: Timestamp,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::ConsentRecord, Some(user))?;
    let Tenant::Active { settings, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended);
    };
    super::credentials::require_user(ports, tenant, user).await?;
    let purpose = settings
        .consent_purposes
        .iter()
        .find(|p| p.id == input.purpose)
        .ok_or(InvalidValue {
            field: "consent purpose",
            rule: "must be one the tenant declares",
        })?;
    if granted && purpose.version != input.policy_version {
        return Err(InvalidValue {
            field: "policy version",
            rule: "must be the purpose's current version",
        }
        .into());
    }
    let decision = ConsentDecision {
        purpose: input.purpose,
        policy_version: if granted {
            input.policy_version
        } else {
            purpose.version
        },
        channel: input.channel,
        evidence_sha256: input.evidence_sha256,
        at,
    };
    let command = if granted {
        ConsentCommand::Grant(decision)
    } else {
        ConsentCommand::Withdraw(decision)
    };
    execute::<ConsentLedger>(
        ports,
        &authorized,
        &consent_stream(user),
        EventId::generate(),
        |l| Ok(l.decide(&command).unwrap_or_default()),
    )
    .await
}

/// One entry of a subject's consent history, with where the log holds it
/// (what a controller shows to demonstrate consent, GDPR Art. 7(1)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub granted: bool,
    pub decision: ConsentDecision,
    /// Who recorded it (the subject, or someone on their behalf).
    pub actor: custodia_domain::Actor,
    pub recorded_at: custodia_domain::Timestamp,
    pub event_id: custodia_domain::EventId,
    pub position: u64,
    /// The event's hash (hex), as `custodia verify` recomputes it.
    pub hash: String,
    /// Its place in the subject's consent stream (a page's cursor).
    pub version: StreamVersion,
}

/// The subject's whole consent history, oldest first. Needs `consent.read`
/// (or being that user).
pub async fn consent_history(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Vec<ConsentRecord>, CommandError> {
    let mut history = Vec::new();
    loop {
        let after = history
            .last()
            .map_or(StreamVersion::EMPTY, |r: &ConsentRecord| r.version);
        let page = consent_history_page(ports, caller, tenant, user, after, 1000).await?;
        if page.is_empty() {
            return Ok(history);
        }
        history.extend(page);
    }
}

/// Up to `limit` entries of the subject's consent history after `after`
/// (a version, [`StreamVersion::EMPTY`] for the first page), oldest first.
/// Needs `consent.read` (or being that user).
pub async fn consent_history_page(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    after: StreamVersion,
    limit: usize,
) -> Result<Vec<ConsentRecord>, CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::ConsentRead, Some(user))?;
    let events = ports
        .store
        .read_stream(&consent_stream(user), after, limit)
        .await?;
    if events
        .first()
        .is_some_and(|e| e.chain != ChainId::Tenant(tenant))
    {
        return Err(CommandError::NotFound("user"));
    }
    events
        .iter()
        .map(|recorded| {
            let form = StoredForm {
                event_type: recorded.event_type.clone(),
                schema_version: recorded.schema_version,
                payload: recorded.payload.clone(),
            };
            let (granted, decision) = match ConsentEvent::from_stored(&form)? {
                ConsentEvent::Granted(decision) => (true, decision),
                ConsentEvent::Withdrawn(decision) => (false, decision),
            };
            Ok(ConsentRecord {
                granted,
                decision,
                actor: recorded.metadata.actor,
                recorded_at: recorded.recorded_at,
                event_id: recorded.event_id,
                position: recorded.position.0,
                hash: recorded.hash.to_hex(),
                version: recorded.stream_version,
            })
        })
        .collect()
}
