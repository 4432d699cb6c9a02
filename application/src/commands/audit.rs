//! History as of any time, for access reviews: who held which role (and
//! so which permissions) in a tenant at a moment, since when and granted
//! by whom, and the grants and revocations between two moments. A fold of
//! the tenant's memberships stream up to the moment; needs `audit.read`
//! (auditors, owners, admins).

use custodia_domain::aggregate::{Aggregate, EventSchema, StoredForm};
use custodia_domain::identity::membership::{MembershipEvent, Memberships};
use custodia_domain::rbac::Permission;
use custodia_domain::{Actor, EventId, TenantId, Timestamp};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{memberships_stream, whole_stream, Caller, CommandError, Ports};

/// A role a user held at the moment asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub user: Uuid,
    pub role: String,
    /// When it was granted (the grant still in force at the moment).
    pub since: Timestamp,
    /// Who granted it.
    pub granted_by: Actor,
    pub grant_event: EventId,
    /// The member's access was paused (suspended, deleted or erased): the
    /// role is held but grants nothing.
    pub paused: bool,
    /// The permissions the role gives (as it was defined at the moment).
    pub permissions: Vec<String>,
}

/// A grant or revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChange {
    pub user: Uuid,
    /// `granted` or `revoked`.
    pub change: &'static str,
    pub role: String,
    pub at: Timestamp,
    pub actor: Actor,
    pub event_id: EventId,
}

/// The memberships events of `tenant`, decoded, with when and by whom.
async fn history(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
) -> Result<Vec<(MembershipEvent, Timestamp, Actor, EventId)>, CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::AuditRead, None)?;
    whole_stream(&*ports.store, &memberships_stream(tenant))
        .await?
        .into_iter()
        .map(|recorded| {
            let event = MembershipEvent::from_stored(&StoredForm {
                event_type: recorded.event_type,
                schema_version: recorded.schema_version,
                payload: recorded.payload,
            })?;
            Ok((
                event,
                recorded.recorded_at,
                recorded.metadata.actor,
                recorded.event_id,
            ))
        })
        .collect()
}

/// Every role held in `tenant` at `at`, by user then role.
pub async fn access_review(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    at: Timestamp,
) -> Result<Vec<Holding>, CommandError> {
    let mut state = Memberships::default();
    let mut granted: BTreeMap<(Uuid, String), (Timestamp, Actor, EventId)> = BTreeMap::new();
    for (event, recorded_at, actor, event_id) in history(ports, caller, tenant).await? {
        if recorded_at > at {
            break;
        }
        match &event {
            MembershipEvent::RoleGranted { user, role } => {
                granted
                    .entry((*user, role.to_string()))
                    .or_insert((recorded_at, actor, event_id));
            }
            MembershipEvent::RoleRevoked { user, role } => {
                granted.remove(&(*user, role.to_string()));
            }
            _ => {}
        }
        state = state.apply(&event);
    }
    let mut holdings = Vec::new();
    for user in state.members() {
        for role in state.roles_of(user) {
            let Some((since, granted_by, grant_event)) = granted.get(&(user, role.to_string()))
            else {
                continue;
            };
            holdings.push(Holding {
                user,
                role: role.to_string(),
                since: *since,
                granted_by: *granted_by,
                grant_event: *grant_event,
                paused: state.is_paused(user),
                permissions: state
                    .role_permissions(role)
                    .map(|set| set.iter().map(|p| p.to_string()).collect())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(holdings)
}

/// The grants and revocations in `tenant` from `from` (inclusive) to `to`
/// (exclusive), in log order.
pub async fn access_changes(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<AccessChange>, CommandError> {
    let mut changes = Vec::new();
    for (event, at, actor, event_id) in history(ports, caller, tenant).await? {
        if at < from || at >= to {
            continue;
        }
        let (user, change, role) = match event {
            MembershipEvent::RoleGranted { user, role } => (user, "granted", role),
            MembershipEvent::RoleRevoked { user, role } => (user, "revoked", role),
            _ => continue,
        };
        changes.push(AccessChange {
            user,
            change,
            role: role.to_string(),
            at,
            actor,
            event_id,
        });
    }
    Ok(changes)
}

/// Whether a subject's personal data is in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalData {
    /// Opened: the reader may read it and its key exists.
    Shown,
    /// Left out: the reader lacks `user.read_personal`.
    Withheld,
    /// Its key is destroyed (the subject or tenant was erased): unreadable
    /// for everyone.
    Erased,
}

/// A consent purpose's state at a moment: the decision in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentAt {
    pub purpose: String,
    pub granted: bool,
    pub policy_version: u32,
    /// When the decision in force was recorded, by whom, in which event.
    pub since: Timestamp,
    pub actor: Actor,
    pub event_id: EventId,
}

/// A user as the log held them at a moment.
#[derive(Debug, Clone)]
pub struct SubjectAt {
    /// `None` before they were registered.
    pub status: Option<custodia_domain::identity::user::UserStatus>,
    pub personal_data: PersonalData,
    /// Opened only when `personal_data` is `Shown`.
    pub personal: super::users::PersonalRecord,
    /// The roles they held then (see [`access_review`]).
    pub roles: Vec<Holding>,
    /// Each consent purpose's decision in force; `None` when the reader
    /// lacks `consent.read`.
    pub consents: Option<Vec<ConsentAt>>,
    /// The last event of their stream at the moment.
    pub last_event: Option<(EventId, Timestamp)>,
}

/// A user's state, roles and consents as of `at`: a fold of the log up to
/// that moment (inclusive). Needs `audit.read`; personal data only for a
/// reader with `user.read_personal` (else withheld), consents only for one
/// with `consent.read`.
pub async fn subject_as_of(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    at: Timestamp,
) -> Result<SubjectAt, CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::AuditRead, None)?;
    let may_read_personal = caller
        .principal
        .authorize(tenant, Permission::UserReadPersonal, Some(user))
        .is_ok();
    let folded = super::users::user_at(ports, tenant, user, Some(at), may_read_personal).await?;
    // Erased is told to every reader (it is not personal data); the rest
    // only to those who may read it.
    let personal_data = match (
        folded.erased_since.is_some(),
        may_read_personal,
        folded.erased,
    ) {
        (true, _, _) | (false, true, true) => PersonalData::Erased,
        (false, false, _) => PersonalData::Withheld,
        (false, true, false) => PersonalData::Shown,
    };
    let roles = access_review(ports, caller, tenant, at)
        .await?
        .into_iter()
        .filter(|h| h.user == user)
        .collect();
    let consents = match super::consent::consent_history(ports, caller, tenant, user).await {
        Ok(history) => {
            let mut in_force: BTreeMap<String, ConsentAt> = BTreeMap::new();
            for record in history.into_iter().filter(|r| r.recorded_at <= at) {
                in_force.insert(
                    record.decision.purpose.clone(),
                    ConsentAt {
                        purpose: record.decision.purpose,
                        granted: record.granted,
                        policy_version: record.decision.policy_version,
                        since: record.recorded_at,
                        actor: record.actor,
                        event_id: record.event_id,
                    },
                );
            }
            Some(in_force.into_values().collect())
        }
        Err(CommandError::Forbidden(_)) => None,
        Err(other) => return Err(other),
    };
    Ok(SubjectAt {
        status: folded.state.status(),
        personal_data,
        personal: folded.personal,
        roles,
        consents,
        last_event: folded.last_event,
    })
}
