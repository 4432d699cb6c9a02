//! Erasure of a data subject by crypto-shredding (docs/privacy.md).
//!
//! The log is never edited: erasing a user appends a `SubjectErased` event
//! (no personal data: the ids of the keys destroyed and the request's
//! reference) together with the end of their sessions and of their access,
//! and then destroys their key. Everything sealed under that key, in every
//! event and every read model, becomes unreadable; the chain still
//! verifies, since it hashes ciphertext.
//!
//! The event comes first and is the source of truth: an erasure whose key
//! destruction failed is completed by its retry, and the keys an erasure
//! event names can always be destroyed again.

use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::membership::{MembershipCommand, Memberships};
use custodia_domain::identity::session::RevocationReason;
use custodia_domain::identity::tenant::Tenant;
use custodia_domain::identity::user::{
    subject_key_id, ErasureReference, User, UserCommand, UserEvent, UserStatus,
};
use custodia_domain::rbac::{Denied, Permission, Principal};
use custodia_domain::{Actor, EventId, RecordedEvent, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authorized::{authorize_on_user, require_tenant, self_service, Authorized};
use super::tenants::tenant_stream;
use super::users::user_stream;
use super::{load, memberships_stream, whole_stream, Caller, CommandError, Plan, Ports};

/// What an auditor keeps of an erasure: enough to find the erasure event
/// in the log and check it (`custodia verify --receipt FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// `subject` (a user) or `tenant`.
    pub erased: String,
    /// The request's reference, as given.
    pub reference: String,
    pub tenant: Uuid,
    /// The user erased (`None` for a tenant).
    pub subject: Option<Uuid>,
    pub keys_destroyed: Vec<String>,
    /// RFC 3339.
    pub erased_at: String,
    pub event: ReceiptEvent,
    /// An inclusion proof of the event under a signed checkpoint; `None`
    /// until the log has signed checkpoints.
    pub inclusion_proof: Option<serde_json::Value>,
}

/// The erasure event's coordinates in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    pub id: Uuid,
    pub event_type: String,
    /// `tenant:<id>` or `platform`.
    pub chain: String,
    pub chain_index: u64,
    pub position: u64,
    pub stream: String,
    pub stream_version: u64,
    /// Hex, as `custodia verify` recomputes it.
    pub hash: String,
}

impl ReceiptEvent {
    /// The coordinates of `event`, as a receipt names them.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            id: event.event_id.as_uuid(),
            event_type: event.event_type.as_str().to_owned(),
            chain: event.chain.to_string(),
            chain_index: event.chain_index.0,
            position: event.position.0,
            stream: event.stream.to_string(),
            stream_version: event.stream_version.0,
            hash: event.hash.to_hex(),
        }
    }
}

/// An erasure done (or found done before): its receipt, and where this
/// request appended it (`None` if the subject was erased already).
#[derive(Debug, Clone)]
pub struct Erasure {
    pub receipt: ErasureReceipt,
    pub appended: Option<crate::event_store::Appended>,
}

/// Erases `user` of `tenant`: allowed to holders of `subject.erase` who
/// outrank the user (owners, privacy officers), and to users themselves
/// (signed in, not through an API key) when the tenant's settings allow
/// self-service erasure. The tenant's last active owner cannot be erased
/// (as they cannot be suspended). Erasing an erased user answers the same
/// receipt again and writes nothing.
pub async fn erase_subject(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    reference: &str,
) -> Result<Erasure, CommandError> {
    require_tenant(caller, tenant)?;
    let authorized = authorize_erasure(ports, caller, tenant, user).await?;
    let reference = ErasureReference::parse(reference)?;
    let keys = vec![subject_key_id(tenant.as_uuid(), user)];
    let mut erasure = None;
    for _ in 0..=super::PLAN_RETRIES {
        let (state, _) = load::<User>(&*ports.store, &user_stream(user)).await?;
        if state.status() == Some(UserStatus::Erased) {
            break;
        }
        let at = Timestamp::now();
        // The erasure event causes the rest, and each names it.
        let erasure_event = EventId::generate();
        let mut plan = Plan::new(ports, &authorized);
        plan.caused_by(erasure_event);
        let reason = RevocationReason::SubjectErased;
        super::sessions::plan_end_sessions(&mut plan, user, None, reason, at).await?;
        plan.part::<Memberships>(
            "access",
            &memberships_stream(tenant),
            EventId::generate(),
            |m| Ok(m.decide(&MembershipCommand::Pause { user })?),
        )
        .await?;
        let command = UserCommand::Erase {
            keys: keys.clone(),
            reference: reference.clone(),
        };
        plan.part::<User>("erasure", &user_stream(user), erasure_event, |state| {
            Ok(state.decide(&command)?)
        })
        .await?;
        if let Some(committed) = plan.commit().await? {
            erasure = committed.part("erasure");
            break;
        }
    }
    if erasure.is_none() {
        // Either erased before (by this request's earlier try or by
        // another), or the plans kept conflicting.
        let (state, _) = load::<User>(&*ports.store, &user_stream(user)).await?;
        if state.status() != Some(UserStatus::Erased) {
            return Err(super::plan_gave_up());
        }
    }
    // The event is in the log: now the key goes (again, harmlessly, for a
    // repeated request, which also completes an erasure whose destruction
    // failed).
    ports.vault.erase_subject(tenant, user).await?;
    let event = erasure_event_of(ports, user).await?;
    tracing::info!(
        tenant = %tenant,
        subject = %user,
        position = event.position.0,
        "data subject erased"
    );
    Ok(Erasure {
        receipt: receipt(tenant, Some(user), &event)?,
        appended: erasure,
    })
}

/// Who may erase `user`: `subject.erase` on them, or the user themselves
/// where the tenant allows it.
async fn authorize_erasure<'a>(
    ports: &Ports,
    caller: &'a Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Authorized<'a>, CommandError> {
    let themselves = matches!(
        caller.principal,
        Principal::Member { user: own, .. } if own == user
    ) && caller.actor == Actor::User(user);
    let permitted = caller
        .principal
        .authorize(tenant, Permission::SubjectErase, None)
        .is_ok();
    if themselves && !permitted {
        let (state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
        let allowed = state.settings().is_some_and(|s| s.self_service_erasure);
        if !allowed {
            return Err(Denied::Missing(Permission::SubjectErase).into());
        }
        return self_service(ports, caller, tenant, Permission::SubjectErase, user).await;
    }
    authorize_on_user(ports, caller, tenant, Permission::SubjectErase, user).await
}

/// The user's `SubjectErased` event.
async fn erasure_event_of(ports: &Ports, user: Uuid) -> Result<RecordedEvent, CommandError> {
    let events = whole_stream(&*ports.store, &user_stream(user)).await?;
    events
        .into_iter()
        .rev()
        .find(|e| e.event_type.as_str() == "SubjectErased")
        .ok_or(CommandError::NotFound("erasure event"))
}

fn receipt(
    tenant: TenantId,
    subject: Option<Uuid>,
    event: &RecordedEvent,
) -> Result<ErasureReceipt, CommandError> {
    let typed = <UserEvent as custodia_domain::aggregate::EventSchema>::from_stored(
        &custodia_domain::aggregate::StoredForm {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        },
    )?;
    let UserEvent::Erased { keys, reference } = typed else {
        return Err(CommandError::NotFound("erasure event"));
    };
    Ok(ErasureReceipt {
        erased: if subject.is_some() {
            "subject"
        } else {
            "tenant"
        }
        .to_owned(),
        reference: reference.as_str().to_owned(),
        tenant: tenant.as_uuid(),
        subject,
        keys_destroyed: keys,
        erased_at: event.recorded_at.to_string(),
        event: ReceiptEvent::of(event),
        inclusion_proof: None,
    })
}

/// The receipt of `user`'s erasure, if they were erased (for auditors and
/// for a client that lost the first answer). Needs `subject.erase` or
/// `audit.read`.
pub async fn erasure_receipt(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<ErasureReceipt, CommandError> {
    if caller
        .principal
        .authorize(tenant, Permission::AuditRead, None)
        .is_err()
    {
        caller
            .principal
            .authorize(tenant, Permission::SubjectErase, None)?;
    }
    let status = super::credentials::user_status_in(ports, tenant, user).await?;
    if status != UserStatus::Erased {
        return Err(CommandError::NotFound("erasure"));
    }
    receipt(tenant, Some(user), &erasure_event_of(ports, user).await?)
}
