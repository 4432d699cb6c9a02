//! History as of any time, for access reviews: who held which role (and
//! so which permissions) in a tenant at a moment, since when and granted
//! by whom, and the grants and revocations between two moments. A fold of
//! the tenant's memberships stream up to the moment; needs `audit.read`
//! (auditors, owners, admins).

use custodia_domain::aggregate::{Aggregate, EventSchema, StoredForm};
use custodia_domain::identity::membership::{MembershipEvent, Memberships, RoleRef};
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
    /// The group the role comes through (`None`: granted to the user).
    /// Its `since` and `granted_by` are the later of the role's grant to
    /// the group and the user's joining it.
    pub group: Option<Uuid>,
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
    /// The group it came through: a member joined or left it, or the role
    /// was granted to or revoked from it, or it was deleted.
    pub group: Option<Uuid>,
}

/// When, by whom and in which event something in force began.
type Since = (Timestamp, Actor, EventId);

/// The later of two beginnings: what a role through a group dates from.
fn later(a: Since, b: Since) -> Since {
    if b.0 > a.0 {
        b
    } else {
        a
    }
}

/// The roles a group event gives (`true`) or takes (`false`), per member,
/// read against the memberships just before it.
fn group_changes(state: &Memberships, event: &MembershipEvent) -> Vec<(Uuid, bool, RoleRef, Uuid)> {
    let roles_of = |group: &Uuid| -> Vec<RoleRef> {
        state
            .group(*group)
            .map(|g| g.roles.iter().cloned().collect())
            .unwrap_or_default()
    };
    let members_of = |group: &Uuid| -> Vec<Uuid> {
        state
            .group(*group)
            .map(|g| g.members.iter().copied().collect())
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    match event {
        MembershipEvent::GroupMembersAdded { group, members }
        | MembershipEvent::GroupMembersRemoved { group, members } => {
            let added = matches!(event, MembershipEvent::GroupMembersAdded { .. });
            let before = members_of(group);
            for member in members {
                if before.contains(member) == added {
                    continue; // no change for this member
                }
                for role in roles_of(group) {
                    changes.push((*member, added, role, *group));
                }
            }
        }
        MembershipEvent::RoleGrantedToGroup { group, role }
        | MembershipEvent::RoleRevokedFromGroup { group, role } => {
            let granted = matches!(event, MembershipEvent::RoleGrantedToGroup { .. });
            if roles_of(group).contains(role) != granted {
                for member in members_of(group) {
                    changes.push((member, granted, role.clone(), *group));
                }
            }
        }
        MembershipEvent::GroupDeleted { group } => {
            for member in members_of(group) {
                for role in roles_of(group) {
                    changes.push((member, false, role, *group));
                }
            }
        }
        _ => {}
    }
    changes
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
    let mut granted: BTreeMap<(Uuid, String), Since> = BTreeMap::new();
    // Roles granted to groups, and members' joining, still in force.
    let mut to_groups: BTreeMap<(Uuid, String), Since> = BTreeMap::new();
    let mut joined: BTreeMap<(Uuid, Uuid), Since> = BTreeMap::new();
    for (event, recorded_at, actor, event_id) in history(ports, caller, tenant).await? {
        if recorded_at > at {
            break;
        }
        let now = (recorded_at, actor, event_id);
        match &event {
            MembershipEvent::RoleGranted { user, role } => {
                granted.entry((*user, role.to_string())).or_insert(now);
            }
            MembershipEvent::RoleRevoked { user, role } => {
                granted.remove(&(*user, role.to_string()));
            }
            MembershipEvent::RoleGrantedToGroup { group, role } => {
                to_groups.entry((*group, role.to_string())).or_insert(now);
            }
            MembershipEvent::RoleRevokedFromGroup { group, role } => {
                to_groups.remove(&(*group, role.to_string()));
            }
            MembershipEvent::GroupMembersAdded { group, members } => {
                for member in members {
                    joined.entry((*group, *member)).or_insert(now);
                }
            }
            MembershipEvent::GroupMembersRemoved { group, members } => {
                for member in members {
                    joined.remove(&(*group, *member));
                }
            }
            MembershipEvent::GroupDeleted { group } => {
                to_groups.retain(|(g, _), _| g != group);
                joined.retain(|(g, _), _| g != group);
            }
            _ => {}
        }
        state = state.apply(&event);
    }
    let permissions_of = |role: &RoleRef| -> Vec<String> {
        state
            .role_permissions(role)
            .map(|set| set.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default()
    };
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
                permissions: permissions_of(role),
                group: None,
            });
        }
    }
    for (group, held) in state.groups() {
        for role in &held.roles {
            let Some(grant) = to_groups.get(&(group, role.to_string())) else {
                continue;
            };
            for member in &held.members {
                let Some(join) = joined.get(&(group, *member)) else {
                    continue;
                };
                let (since, granted_by, grant_event) = later(*grant, *join);
                holdings.push(Holding {
                    user: *member,
                    role: role.to_string(),
                    since,
                    granted_by,
                    grant_event,
                    paused: state.is_paused(*member),
                    permissions: permissions_of(role),
                    group: Some(group),
                });
            }
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
    let mut state = Memberships::default();
    for (event, at, actor, event_id) in history(ports, caller, tenant).await? {
        if at >= to {
            break;
        }
        if at >= from {
            let mut found = match &event {
                MembershipEvent::RoleGranted { user, role } => {
                    vec![(*user, true, role.clone(), None)]
                }
                MembershipEvent::RoleRevoked { user, role } => {
                    vec![(*user, false, role.clone(), None)]
                }
                _ => vec![],
            };
            found.extend(
                group_changes(&state, &event)
                    .into_iter()
                    .map(|(user, granted, role, group)| (user, granted, role, Some(group))),
            );
            for (user, granted, role, group) in found {
                changes.push(AccessChange {
                    user,
                    change: if granted { "granted" } else { "revoked" },
                    role: role.to_string(),
                    at,
                    actor,
                    event_id,
                    group,
                });
            }
        }
        state = state.apply(&event);
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
