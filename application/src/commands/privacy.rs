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
use custodia_domain::identity::tenant::TenantCommand;
use custodia_domain::identity::tenant_erasure::{
    tenant_key_id, TenantErasure, TenantErasureCommand,
};
use custodia_domain::identity::user::{
    subject_key_id, ErasureReference, User, UserCommand, UserStatus,
};
use custodia_domain::rbac::{Denied, Permission};
use custodia_domain::{Actor, EventId, RecordedEvent, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authorized::{
    as_platform_operator, authorize_on_user, is_themselves, on_platform_chain, require_tenant,
    self_service, Authorized,
};
use super::tenants::tenant_stream;
use super::users::user_stream;
use super::{execute, load, memberships_stream, stream, Caller, CommandError, Plan, Ports};

/// What an auditor keeps of an erasure: enough to find the erasure event
/// in the log and check it (`custodia verify --receipt FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct ReceiptEvent {
    pub id: Uuid,
    pub event_type: String,
    /// `tenant <id>` or `platform`, as `custodia verify` names chains.
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
/// outrank the user (owners, privacy officers). Users erase themselves with
/// [`erase_self`]. The tenant's last active owner cannot be erased (as
/// they cannot be suspended). Erasing an erased user answers the same
/// receipt again and writes nothing.
pub async fn erase_subject(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    reference: &str,
) -> Result<Erasure, CommandError> {
    erase(ports, caller, tenant, user, reference, false).await
}

/// A signed-in user (not an API key) erases themselves, where the tenant's
/// settings allow self-service erasure, proving their password first: an
/// access token alone (a stolen one, or a device left signed in) cannot
/// erase an account. A wrong password counts towards the lockout as a
/// failed login does.
pub async fn erase_self(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    password: &str,
    reference: &str,
    at: Timestamp,
) -> Result<Erasure, super::credentials::LoginError> {
    use super::credentials::{login, LoginError};
    if !is_themselves(caller, tenant, user) {
        return Err(CommandError::from(Denied::Missing(Permission::SubjectErase)).into());
    }
    require_tenant(caller, tenant)?;
    ErasureReference::parse(reference).map_err(CommandError::from)?;
    let email = super::users::personal_record(ports, tenant, user)
        .await?
        .email
        .ok_or(LoginError::InvalidCredentials)?;
    // Second factors are not asked for here: the caller is signed in.
    match login(ports, tenant, &email, password, None, at).await {
        Ok(_)
        | Err(LoginError::SecondFactorRequired | LoginError::SecondFactorEnrollmentRequired) => {}
        Err(other) => return Err(other),
    }
    Ok(erase(ports, caller, tenant, user, reference, true).await?)
}

async fn erase(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    reference: &str,
    password_proven: bool,
) -> Result<Erasure, CommandError> {
    require_tenant(caller, tenant)?;
    let authorized = authorize_erasure(ports, caller, tenant, user, password_proven).await?;
    let reference = ErasureReference::parse(reference)?;
    let keys = vec![subject_key_id(tenant.as_uuid(), user)];
    let mut erasure = None;
    for _ in 0..=super::PLAN_RETRIES {
        let (state, _) = load::<User>(&*ports.store, &user_stream(user)).await?;
        if state.status() == Some(UserStatus::Erased) {
            break;
        }
        let User::Present {
            email_index,
            pending_email,
            ..
        } = state
        else {
            return Err(CommandError::NotFound("user"));
        };
        // An erased tenant's chain is closed: nothing more is written to it
        // (its subjects' keys went with the tenant key).
        let (tenant_state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
        if tenant_state == Tenant::Closed {
            return Err(custodia_domain::identity::tenant::TenantError::Closed.into());
        }
        let at = Timestamp::now();
        // The erasure event causes the rest, and each names it.
        let erasure_event = EventId::generate();
        let mut plan = Plan::new(ports, &authorized);
        plan.caused_by(erasure_event);
        let reason = RevocationReason::SubjectErased;
        super::sessions::plan_end_sessions(&mut plan, user, None, reason, at).await?;
        // Their links go too: nothing can be done with them any more.
        let every = custodia_domain::identity::link_token::LinkPurpose::ALL;
        super::account::plan_revoke_links(&mut plan, user, &every).await?;
        plan.part::<Memberships>(
            "access",
            &memberships_stream(tenant),
            EventId::generate(),
            // Paused, and out of every group.
            |m| {
                let mut events = m.decide(&MembershipCommand::Pause { user })?;
                events.extend(m.leave_groups(user));
                Ok(events)
            },
        )
        .await?;
        // The address is free again: the person may come back as someone
        // new. So is an address a change of theirs was waiting on.
        super::users::plan_release(&mut plan, "address", tenant, user, &email_index).await?;
        if let Some(pending) = pending_email {
            let part = "pending-address";
            super::users::plan_release(&mut plan, part, tenant, user, &pending).await?;
        }
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
    // Nothing follows an erasure in the user's stream: the erasure event
    // is its last, found without reading the rest.
    let (state, version) = load::<User>(&*ports.store, &user_stream(user)).await?;
    if state.status() != Some(UserStatus::Erased) {
        // The plans kept conflicting.
        return Err(super::plan_gave_up());
    }
    // The event is in the log: now the key goes (again, harmlessly, for a
    // repeated request, which also completes an erasure whose destruction
    // failed).
    ports.vault.erase_subject(tenant, user).await?;
    let event = last_event(ports, &user_stream(user), version).await?;
    if erasure.is_some() {
        tracing::info!(
            tenant = %tenant,
            subject = %user,
            position = event.position.0,
            "data subject erased"
        );
    }
    Ok(Erasure {
        receipt: receipt(tenant, Some(user), &event)?,
        appended: erasure,
    })
}

/// Who may erase `user`: `subject.erase` on them, or the user themselves
/// where the tenant allows it and they proved their password.
async fn authorize_erasure<'a>(
    ports: &Ports,
    caller: &'a Caller,
    tenant: TenantId,
    user: Uuid,
    password_proven: bool,
) -> Result<Authorized<'a>, CommandError> {
    let themselves = is_themselves(caller, tenant, user);
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
        if !password_proven {
            return Err(Denied::CurrentPasswordRequired.into());
        }
        return self_service(ports, caller, tenant, Permission::SubjectErase, user).await;
    }
    authorize_on_user(ports, caller, tenant, Permission::SubjectErase, user).await
}

/// The event at `version` of `stream`, its last.
async fn last_event(
    ports: &Ports,
    stream: &custodia_domain::StreamId,
    version: custodia_domain::StreamVersion,
) -> Result<RecordedEvent, CommandError> {
    let before = custodia_domain::StreamVersion(version.0.saturating_sub(1));
    ports
        .store
        .read_stream(stream, before, 1)
        .await?
        .pop()
        .ok_or(CommandError::NotFound("erasure event"))
}

/// The receipt of an erasure event (`SubjectErased` or `TenantErased`:
/// both name the keys destroyed and the reference).
fn receipt(
    tenant: TenantId,
    subject: Option<Uuid>,
    event: &RecordedEvent,
) -> Result<ErasureReceipt, CommandError> {
    #[derive(Deserialize)]
    struct Named {
        keys: Vec<String>,
        reference: String,
    }
    let named: Named = serde_json::from_slice(event.payload.as_bytes())
        .map_err(|_| CommandError::NotFound("erasure event"))?;
    Ok(ErasureReceipt {
        erased: if subject.is_some() {
            "subject"
        } else {
            "tenant"
        }
        .to_owned(),
        reference: named.reference,
        tenant: tenant.as_uuid(),
        subject,
        keys_destroyed: named.keys,
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
    let (_, version) = load::<User>(&*ports.store, &user_stream(user)).await?;
    receipt(
        tenant,
        Some(user),
        &last_event(ports, &user_stream(user), version).await?,
    )
}

/// The platform stream that records `tenant`'s erasure.
fn tenant_erasure_stream(tenant: TenantId) -> custodia_domain::StreamId {
    stream("tenant_erasure", tenant.as_uuid())
}

/// Erases a whole tenant (platform operator only): its chain is closed
/// with `TenantClosed`, which stops every session, refresh token and API
/// key of the tenant at their next use; `TenantErased` goes into the
/// platform chain; then the tenant key is destroyed, and with it every
/// subject key of the tenant. The tenant's chain still verifies. Erasing
/// an erased tenant writes nothing and answers the same receipt.
pub async fn erase_tenant(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    reference: &str,
) -> Result<Erasure, CommandError> {
    // Two commands (one per chain), each its own step of the request.
    let (closing, recording) = (caller.step("close"), caller.step("record"));
    let in_tenant = as_platform_operator(&closing, tenant)?;
    let on_platform = on_platform_chain(&recording)?;
    let reference = ErasureReference::parse(reference)?;
    let (state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
    if state == Tenant::Absent {
        return Err(CommandError::NotFound("tenant"));
    }
    // First the tenant's access ends, then the record, then the key: a
    // failure part-way is completed by the same request again.
    execute::<Tenant>(
        ports,
        &in_tenant,
        &tenant_stream(tenant),
        EventId::generate(),
        |state| Ok(state.decide(&TenantCommand::Close)?),
    )
    .await?;
    let record = TenantErasureCommand::Record {
        keys: vec![tenant_key_id(tenant.as_uuid())],
        reference,
    };
    let recorded = execute::<TenantErasure>(
        ports,
        &on_platform,
        &tenant_erasure_stream(tenant),
        EventId::generate(),
        |state| Ok(state.decide(&record).unwrap_or_else(|never| match never {})),
    )
    .await?;
    ports.vault.erase_tenant(tenant).await?;
    let record_stream = tenant_erasure_stream(tenant);
    let (_, version) = load::<TenantErasure>(&*ports.store, &record_stream).await?;
    let event = &last_event(ports, &record_stream, version).await?;
    if recorded.appended.is_some() {
        tracing::info!(tenant = %tenant, position = event.position.0, "tenant erased");
    }
    Ok(Erasure {
        receipt: receipt(tenant, None, event)?,
        appended: recorded.appended,
    })
}

/// Exporting everything held about `user` (access and portability, GDPR
/// Art. 15 and 20): the user themselves, and holders of `subject.export`
/// (owners, privacy officers). Each part of the export is read through its
/// own handler, which checks its own permission too.
pub fn authorize_export(caller: &Caller, tenant: TenantId, user: Uuid) -> Result<(), CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::SubjectExport, Some(user))?;
    Ok(())
}

/// One change of a member's roles or access, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// `granted`, `revoked`, `paused` (suspended, deleted or erased) or
    /// `resumed`.
    pub change: &'static str,
    /// The role granted or revoked.
    pub role: Option<String>,
    pub at: Timestamp,
    pub actor: Actor,
    pub event_id: EventId,
}

/// `user`'s roles now and every change of them, oldest first. Needs
/// `role.read` (or being that user). Reads the tenant's memberships stream
/// whole: its length is the tenant's number of role changes.
pub async fn role_history(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<(Vec<String>, Vec<RoleChange>), CommandError> {
    use custodia_domain::aggregate::{EventSchema, StoredForm};
    use custodia_domain::identity::membership::MembershipEvent;
    caller
        .principal
        .authorize(tenant, Permission::RoleRead, Some(user))?;
    let (memberships, _) = load::<Memberships>(&*ports.store, &memberships_stream(tenant)).await?;
    let current = memberships
        .roles_of(user)
        .map(ToString::to_string)
        .collect();
    let mut changes = Vec::new();
    for recorded in super::whole_stream(&*ports.store, &memberships_stream(tenant)).await? {
        let event = MembershipEvent::from_stored(&StoredForm {
            event_type: recorded.event_type.clone(),
            schema_version: recorded.schema_version,
            payload: recorded.payload.clone(),
        })?;
        let (change, role) = match event {
            MembershipEvent::RoleGranted { user: u, role } if u == user => {
                ("granted", Some(role.to_string()))
            }
            MembershipEvent::RoleRevoked { user: u, role } if u == user => {
                ("revoked", Some(role.to_string()))
            }
            MembershipEvent::MemberPaused { user: u } if u == user => ("paused", None),
            MembershipEvent::MemberResumed { user: u } if u == user => ("resumed", None),
            _ => continue,
        };
        changes.push(RoleChange {
            change,
            role,
            at: recorded.recorded_at,
            actor: recorded.metadata.actor,
            event_id: recorded.event_id,
        });
    }
    Ok((current, changes))
}

/// `user`'s status as a word (`invited`, `active`, `suspended`, `deleted`,
/// `erased`); a user of another tenant is "not found".
pub async fn subject_status(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
) -> Result<&'static str, CommandError> {
    Ok(
        match super::credentials::user_status_in(ports, tenant, user).await? {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
            UserStatus::Erased => "erased",
        },
    )
}
