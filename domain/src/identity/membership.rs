//! Memberships of one tenant: who holds which role, and the tenant's custom
//! roles. One stream per tenant, so that "the last owner cannot be removed"
//! is decided against every owner at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::group::{Group, GroupExternalId, GroupName};
use crate::aggregate::{
    read, snapshot_json, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm,
};
use crate::ids::TenantId;
use crate::rbac::{BuiltInRole, Denied, Permission, PermissionSet, Principal};
use crate::InvalidValue;

/// A custom role's name: `[a-z][a-z0-9_]{0,63}`, never a built-in role's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let b = value.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 64
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
            && BuiltInRole::parse(value).is_none();
        if !ok {
            return Err(InvalidValue::new(
                "role name",
                "must be 1-64 of [a-z0-9_], start with a letter, and not name a built-in role",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role as assigned: built in, or one of the tenant's custom roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleRef {
    BuiltIn(BuiltInRole),
    Custom(RoleName),
}

impl RoleRef {
    /// `owner`, `admin`, … or `custom:<name>`: the stored form.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value.strip_prefix("custom:") {
            Some(name) => Ok(RoleRef::Custom(RoleName::parse(name)?)),
            None => BuiltInRole::parse(value)
                .map(RoleRef::BuiltIn)
                .ok_or(InvalidValue::new(
                    "role",
                    "must be a built-in role or custom:<name>",
                )),
        }
    }
}

impl fmt::Display for RoleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRef::BuiltIn(role) => f.write_str(role.name()),
            RoleRef::Custom(name) => write!(f, "custom:{}", name.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipCommand {
    /// Defines a custom role, or redefines it with other permissions.
    DefineRole {
        name: RoleName,
        permissions: PermissionSet,
    },
    Grant {
        user: Uuid,
        role: RoleRef,
    },
    Revoke {
        user: Uuid,
        role: RoleRef,
    },
    /// Revokes every role the user holds in the tenant.
    RemoveMember {
        user: Uuid,
    },
    /// The member's access is paused (the user is suspended or deleted):
    /// their roles stay, but they no longer count as an owner who can act.
    Pause {
        user: Uuid,
    },
    /// The member's access is back (the user is reactivated).
    Resume {
        user: Uuid,
    },
    /// A group of members (ADR 0012), made with its first members.
    CreateGroup {
        group: Uuid,
        name: GroupName,
        external_id: Option<GroupExternalId>,
        members: BTreeSet<Uuid>,
    },
    /// Renames a group, changes its external id, adds and removes members,
    /// all at once; refused if the group is no longer at `revision`.
    ChangeGroup {
        group: Uuid,
        name: GroupName,
        external_id: Option<GroupExternalId>,
        add: BTreeSet<Uuid>,
        remove: BTreeSet<Uuid>,
        revision: Option<u64>,
    },
    DeleteGroup {
        group: Uuid,
        revision: Option<u64>,
    },
    /// What a group grants its members: the tenant's admins decide it.
    GrantRoleToGroup {
        group: Uuid,
        role: RoleRef,
    },
    RevokeRoleFromGroup {
        group: Uuid,
        role: RoleRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    RoleDefined {
        name: RoleName,
        permissions: PermissionSet,
    },
    RoleGranted {
        user: Uuid,
        role: RoleRef,
    },
    RoleRevoked {
        user: Uuid,
        role: RoleRef,
    },
    MemberPaused {
        user: Uuid,
    },
    MemberResumed {
        user: Uuid,
    },
    GroupCreated {
        group: Uuid,
        name: GroupName,
        external_id: Option<GroupExternalId>,
    },
    /// The group's name or external id changed.
    GroupRenamed {
        group: Uuid,
        name: GroupName,
        external_id: Option<GroupExternalId>,
    },
    GroupMembersAdded {
        group: Uuid,
        members: Vec<Uuid>,
    },
    GroupMembersRemoved {
        group: Uuid,
        members: Vec<Uuid>,
    },
    GroupDeleted {
        group: Uuid,
    },
    RoleGrantedToGroup {
        group: Uuid,
        role: RoleRef,
    },
    RoleRevokedFromGroup {
        group: Uuid,
        role: RoleRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("no such custom role")]
    UnknownRole,
    #[error("a custom role needs at least one permission")]
    EmptyRole,
    #[error("the last active owner of a tenant cannot be removed")]
    LastOwner,
    #[error("no such group")]
    UnknownGroup,
    #[error("a group with this id exists")]
    GroupExists,
    #[error("the group changed since revision {expected} (it is at {actual})")]
    StaleGroup { expected: u64, actual: u64 },
    /// What a group grants must end with membership: a role that can hand
    /// out lasting access (`role.grant`, `role.define`, `api_key.manage`,
    /// `group.manage`) would outlive it, so it is granted to users only.
    #[error("this role can hand out access that outlives group membership (role.grant, role.define, api_key.manage or group.manage): grant it to users, not to groups")]
    LastingRoleForGroup,
}

/// The permissions whose holders can hand out access of their own: never
/// granted through a group, whose members someone else keeps.
pub const LASTING: &[Permission] = &[
    Permission::RoleGrant,
    Permission::RoleDefine,
    Permission::ApiKeyManage,
    Permission::GroupManage,
];

/// The tenant's custom roles and role assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    custom_roles: BTreeMap<RoleName, PermissionSet>,
    assignments: BTreeMap<Uuid, BTreeSet<RoleRef>>,
    /// Members whose access is paused (suspended or deleted users).
    paused: BTreeSet<Uuid>,
    groups: BTreeMap<Uuid, Group>,
}

impl Memberships {
    pub fn role_permissions(&self, role: &RoleRef) -> Option<PermissionSet> {
        match role {
            RoleRef::BuiltIn(role) => Some(role.permissions()),
            RoleRef::Custom(name) => self.custom_roles.get(name).cloned(),
        }
    }

    /// Every user who holds a role of their own.
    pub fn members(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.assignments.keys().copied()
    }

    pub fn group(&self, group: Uuid) -> Option<&Group> {
        self.groups.get(&group)
    }

    pub fn groups(&self) -> impl Iterator<Item = (Uuid, &Group)> {
        self.groups.iter().map(|(id, group)| (*id, group))
    }

    /// Takes `user` out of every group they are in (they were deleted or
    /// erased): a group's members are users who can come back.
    pub fn leave_groups(&self, user: Uuid) -> Vec<MembershipEvent> {
        self.groups
            .iter()
            .filter(|(_, g)| g.members.contains(&user))
            .map(|(group, _)| MembershipEvent::GroupMembersRemoved {
                group: *group,
                members: vec![user],
            })
            .collect()
    }

    /// The roles a user holds through groups, each with its group.
    pub fn group_roles_of(&self, user: Uuid) -> impl Iterator<Item = (Uuid, &RoleRef)> {
        self.groups
            .iter()
            .filter(move |(_, g)| g.members.contains(&user))
            .flat_map(|(id, g)| g.roles.iter().map(move |role| (*id, role)))
    }

    /// Whether the user's access is paused (suspended, deleted or erased).
    pub fn is_paused(&self, user: Uuid) -> bool {
        self.paused.contains(&user)
    }

    pub fn roles_of(&self, user: Uuid) -> impl Iterator<Item = &RoleRef> {
        self.assignments.get(&user).into_iter().flatten()
    }

    /// The union of the permissions of the user's roles, their own and
    /// their groups'.
    pub fn permissions_of(&self, user: Uuid) -> PermissionSet {
        let mut all = PermissionSet::default();
        let through_groups = self.group_roles_of(user).map(|(_, role)| role);
        for role in self.roles_of(user).chain(through_groups) {
            if let Some(permissions) = self.role_permissions(role) {
                all.extend(&permissions);
            }
        }
        all
    }

    /// What `principal` must hold too to act on `user` (suspend, delete,
    /// update them): every permission of their roles, except those through
    /// groups when the principal keeps groups: it could take them out of
    /// the group first, so those are no barrier (and an identity provider
    /// can deprovision the people its groups made powerful).
    pub fn permissions_against(
        &self,
        principal: &Principal,
        tenant: TenantId,
        user: Uuid,
    ) -> PermissionSet {
        if principal
            .authorize(tenant, Permission::GroupManage, None)
            .is_err()
        {
            return self.permissions_of(user);
        }
        let mut own = PermissionSet::default();
        for role in self.roles_of(user) {
            if let Some(permissions) = self.role_permissions(role) {
                own.extend(&permissions);
            }
        }
        own
    }

    /// Everyone who holds `owner`, themselves or through a group.
    pub fn owners(&self) -> impl Iterator<Item = Uuid> + '_ {
        let owner = RoleRef::BuiltIn(BuiltInRole::Owner);
        let own = self
            .assignments
            .iter()
            .filter(move |(_, roles)| roles.contains(&owner))
            .map(|(user, _)| *user);
        let owner = RoleRef::BuiltIn(BuiltInRole::Owner);
        let through_groups = self
            .groups
            .values()
            .filter(move |g| g.roles.contains(&owner))
            .flat_map(|g| g.members.iter().copied());
        own.chain(through_groups)
    }

    /// RBAC for a membership command: `role.define` / `role.grant`, and
    /// nobody hands out (or defines) a permission they do not hold.
    pub fn authorize(
        &self,
        principal: &Principal,
        tenant: TenantId,
        command: &MembershipCommand,
    ) -> Result<(), Denied> {
        match command {
            MembershipCommand::DefineRole { name, permissions } => {
                principal.authorize(tenant, Permission::RoleDefine, None)?;
                principal.authorize_grant(tenant, permissions)?;
                // Redefining a role changes the rights of everyone holding
                // it: nobody does that to someone who holds more.
                let role = RoleRef::Custom(name.clone());
                self.assignments
                    .iter()
                    .filter(|(_, roles)| roles.contains(&role))
                    .try_for_each(|(holder, _)| {
                        principal.authorize_on(
                            tenant,
                            Permission::RoleDefine,
                            *holder,
                            &self.permissions_of(*holder),
                        )
                    })
            }
            MembershipCommand::Grant { user, role } => {
                let granted = self.role_permissions(role).unwrap_or_default();
                principal.authorize_grant(tenant, &granted)?;
                self.authorize_on_member(principal, tenant, *user)
            }
            MembershipCommand::Revoke { user, .. } | MembershipCommand::RemoveMember { user } => {
                principal.authorize(tenant, Permission::RoleGrant, None)?;
                self.authorize_on_member(principal, tenant, *user)
            }
            // Part of suspending, deleting or reactivating the user.
            MembershipCommand::Pause { user } | MembershipCommand::Resume { user } => {
                principal.authorize(tenant, Permission::UserSuspend, None)?;
                principal.authorize_on(
                    tenant,
                    Permission::UserSuspend,
                    *user,
                    &self.permissions_against(principal, tenant, *user),
                )
            }
            // The provider owns groups and their members; by granting a
            // role to a group, the tenant's admins let its members hold it.
            MembershipCommand::CreateGroup { .. }
            | MembershipCommand::ChangeGroup { .. }
            | MembershipCommand::DeleteGroup { .. } => {
                principal.authorize(tenant, Permission::GroupManage, None)
            }
            // What a group grants changes its members' rights: as for a
            // grant to each of them.
            MembershipCommand::GrantRoleToGroup { group, role } => {
                let granted = self.role_permissions(role).unwrap_or_default();
                principal.authorize_grant(tenant, &granted)?;
                self.authorize_on_group(principal, tenant, *group)
            }
            MembershipCommand::RevokeRoleFromGroup { group, .. } => {
                principal.authorize(tenant, Permission::RoleGrant, None)?;
                self.authorize_on_group(principal, tenant, *group)
            }
        }
    }

    /// Nobody changes what a group grants when a member holds more than they do.
    fn authorize_on_group(
        &self,
        principal: &Principal,
        tenant: TenantId,
        group: Uuid,
    ) -> Result<(), Denied> {
        let members = self.groups.get(&group).map(|g| &g.members);
        members
            .into_iter()
            .flatten()
            .try_for_each(|member| self.authorize_on_member(principal, tenant, *member))
    }

    /// The group at `revision` (if one is named), or why not.
    fn group_at(&self, group: Uuid, revision: Option<u64>) -> Result<&Group, MembershipError> {
        let found = self
            .groups
            .get(&group)
            .ok_or(MembershipError::UnknownGroup)?;
        match revision {
            Some(expected) if expected != found.revision => Err(MembershipError::StaleGroup {
                expected,
                actual: found.revision,
            }),
            _ => Ok(found),
        }
    }

    /// Nobody changes the roles of a user who holds more than they do.
    fn authorize_on_member(
        &self,
        principal: &Principal,
        tenant: TenantId,
        user: Uuid,
    ) -> Result<(), Denied> {
        principal.authorize_on(
            tenant,
            Permission::RoleGrant,
            user,
            &self.permissions_of(user),
        )
    }

    /// Owners who can act (their access is not paused).
    pub fn active_owners(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.owners().filter(|owner| !self.paused.contains(owner))
    }

    /// Would `events` leave the tenant without an owner who can act (when
    /// it has one now)?
    fn would_leave_no_active_owner(&self, events: &[MembershipEvent]) -> bool {
        let had = self.active_owners().next().is_some();
        let after = events.iter().fold(self.clone(), |state, e| state.apply(e));
        let has = after.active_owners().next().is_some();
        had && !has
    }
}

impl Memberships {
    /// `events`, unless they would leave the tenant without an active owner.
    fn keeping_an_active_owner(
        &self,
        events: Vec<MembershipEvent>,
    ) -> Result<Vec<MembershipEvent>, MembershipError> {
        if self.would_leave_no_active_owner(&events) {
            return Err(MembershipError::LastOwner);
        }
        Ok(events)
    }
}

impl Aggregate for Memberships {
    type Command = MembershipCommand;
    type Event = MembershipEvent;
    type Error = MembershipError;

    fn decide(&self, command: &MembershipCommand) -> Result<Vec<MembershipEvent>, MembershipError> {
        use MembershipEvent as E;
        match command {
            MembershipCommand::DefineRole { name, permissions } => {
                if permissions.is_empty() {
                    return Err(MembershipError::EmptyRole);
                }
                // A role a group holds stays one whose access ends with
                // membership.
                let role = RoleRef::Custom(name.clone());
                let held_by_a_group = self.groups.values().any(|g| g.roles.contains(&role));
                if held_by_a_group && LASTING.iter().any(|p| permissions.contains(*p)) {
                    return Err(MembershipError::LastingRoleForGroup);
                }
                if self.custom_roles.get(name) == Some(permissions) {
                    return Ok(vec![]);
                }
                Ok(vec![E::RoleDefined {
                    name: name.clone(),
                    permissions: permissions.clone(),
                }])
            }
            MembershipCommand::Grant { user, role } => {
                if self.role_permissions(role).is_none() {
                    return Err(MembershipError::UnknownRole);
                }
                if self.roles_of(*user).any(|held| held == role) {
                    return Ok(vec![]);
                }
                Ok(vec![E::RoleGranted {
                    user: *user,
                    role: role.clone(),
                }])
            }
            MembershipCommand::Revoke { user, role } => {
                if !self.roles_of(*user).any(|held| held == role) {
                    return Ok(vec![]);
                }
                self.keeping_an_active_owner(vec![E::RoleRevoked {
                    user: *user,
                    role: role.clone(),
                }])
            }
            // Every role of their own, and every group they are in.
            MembershipCommand::RemoveMember { user } => self.keeping_an_active_owner(
                self.roles_of(*user)
                    .map(|role| E::RoleRevoked {
                        user: *user,
                        role: role.clone(),
                    })
                    .chain(self.leave_groups(*user))
                    .collect(),
            ),
            MembershipCommand::Pause { user } if self.paused.contains(user) => Ok(vec![]),
            MembershipCommand::Pause { user } => {
                self.keeping_an_active_owner(vec![E::MemberPaused { user: *user }])
            }
            MembershipCommand::Resume { user } if self.paused.contains(user) => {
                Ok(vec![E::MemberResumed { user: *user }])
            }
            MembershipCommand::Resume { .. } => Ok(vec![]),
            MembershipCommand::CreateGroup {
                group,
                name,
                external_id,
                members,
            } => {
                if self.groups.contains_key(group) {
                    return Err(MembershipError::GroupExists);
                }
                let mut events = vec![E::GroupCreated {
                    group: *group,
                    name: name.clone(),
                    external_id: external_id.clone(),
                }];
                if !members.is_empty() {
                    events.push(E::GroupMembersAdded {
                        group: *group,
                        members: members.iter().copied().collect(),
                    });
                }
                Ok(events)
            }
            MembershipCommand::ChangeGroup {
                group,
                name,
                external_id,
                add,
                remove,
                revision,
            } => {
                let current = self.group_at(*group, *revision)?;
                let mut events = Vec::new();
                if current.name != *name || current.external_id != *external_id {
                    events.push(E::GroupRenamed {
                        group: *group,
                        name: name.clone(),
                        external_id: external_id.clone(),
                    });
                }
                let removed: Vec<Uuid> = remove
                    .iter()
                    .filter(|m| current.members.contains(m) && !add.contains(m))
                    .copied()
                    .collect();
                if !removed.is_empty() {
                    events.push(E::GroupMembersRemoved {
                        group: *group,
                        members: removed,
                    });
                }
                let added: Vec<Uuid> = add
                    .iter()
                    .filter(|m| !current.members.contains(m))
                    .copied()
                    .collect();
                if !added.is_empty() {
                    events.push(E::GroupMembersAdded {
                        group: *group,
                        members: added,
                    });
                }
                self.keeping_an_active_owner(events)
            }
            MembershipCommand::DeleteGroup { group, revision } => {
                self.group_at(*group, *revision)?;
                self.keeping_an_active_owner(vec![E::GroupDeleted { group: *group }])
            }
            MembershipCommand::GrantRoleToGroup { group, role } => {
                let current = self.group_at(*group, None)?;
                let Some(permissions) = self.role_permissions(role) else {
                    return Err(MembershipError::UnknownRole);
                };
                if LASTING.iter().any(|p| permissions.contains(*p)) {
                    return Err(MembershipError::LastingRoleForGroup);
                }
                if current.roles.contains(role) {
                    return Ok(vec![]);
                }
                Ok(vec![E::RoleGrantedToGroup {
                    group: *group,
                    role: role.clone(),
                }])
            }
            MembershipCommand::RevokeRoleFromGroup { group, role } => {
                if !self.group_at(*group, None)?.roles.contains(role) {
                    return Ok(vec![]);
                }
                self.keeping_an_active_owner(vec![E::RoleRevokedFromGroup {
                    group: *group,
                    role: role.clone(),
                }])
            }
        }
    }

    fn apply(mut self, event: &MembershipEvent) -> Memberships {
        match event {
            MembershipEvent::RoleDefined { name, permissions } => {
                self.custom_roles.insert(name.clone(), permissions.clone());
            }
            MembershipEvent::RoleGranted { user, role } => {
                self.assignments
                    .entry(*user)
                    .or_default()
                    .insert(role.clone());
            }
            MembershipEvent::RoleRevoked { user, role } => {
                if let Some(roles) = self.assignments.get_mut(user) {
                    roles.remove(role);
                    if roles.is_empty() {
                        self.assignments.remove(user);
                    }
                }
            }
            MembershipEvent::MemberPaused { user } => {
                self.paused.insert(*user);
            }
            MembershipEvent::MemberResumed { user } => {
                self.paused.remove(user);
            }
            MembershipEvent::GroupCreated {
                group,
                name,
                external_id,
            } => {
                self.groups.insert(
                    *group,
                    Group {
                        name: name.clone(),
                        external_id: external_id.clone(),
                        members: BTreeSet::new(),
                        roles: BTreeSet::new(),
                        revision: 1,
                    },
                );
            }
            MembershipEvent::GroupDeleted { group } => {
                self.groups.remove(group);
            }
            MembershipEvent::GroupRenamed {
                group,
                name,
                external_id,
            } => self.change_group(*group, |g| {
                g.name = name.clone();
                g.external_id = external_id.clone();
            }),
            MembershipEvent::GroupMembersAdded { group, members } => {
                self.change_group(*group, |g| g.members.extend(members))
            }
            MembershipEvent::GroupMembersRemoved { group, members } => {
                self.change_group(*group, |g| {
                    members.iter().for_each(|m| {
                        g.members.remove(m);
                    })
                })
            }
            MembershipEvent::RoleGrantedToGroup { group, role } => self.change_group(*group, |g| {
                g.roles.insert(role.clone());
            }),
            MembershipEvent::RoleRevokedFromGroup { group, role } => {
                self.change_group(*group, |g| {
                    g.roles.remove(role);
                })
            }
        }
        self
    }
}

impl Memberships {
    fn change_group(&mut self, group: Uuid, change: impl FnOnce(&mut Group)) {
        if let Some(found) = self.groups.get_mut(&group) {
            change(found);
            found.revision += 1;
        }
    }
}

/// The snapshot form, version 1: roles and permissions by their stored
/// names, as the events carry them. (`groups` came later: absent in older
/// snapshots, which were taken before any group existed.)
mod snapshot {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct MembershipsV1 {
        pub custom_roles: BTreeMap<String, Vec<String>>,
        pub assignments: BTreeMap<Uuid, Vec<String>>,
        pub paused: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub groups: BTreeMap<Uuid, GroupV1>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct GroupV1 {
        pub name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub external_id: Option<String>,
        pub members: Vec<Uuid>,
        pub roles: Vec<String>,
        pub revision: u64,
    }
}

fn permission_names(set: &PermissionSet) -> Vec<String> {
    set.iter().map(|p| p.name().to_owned()).collect()
}

fn permission_set(names: &[String]) -> Option<PermissionSet> {
    names
        .iter()
        .map(|name| Permission::parse(name).ok())
        .collect()
}

impl Snapshot for Memberships {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        snapshot_json(&snapshot::MembershipsV1 {
            custom_roles: self
                .custom_roles
                .iter()
                .map(|(name, set)| (name.as_str().to_owned(), permission_names(set)))
                .collect(),
            assignments: self
                .assignments
                .iter()
                .map(|(user, roles)| (*user, roles.iter().map(RoleRef::to_string).collect()))
                .collect(),
            paused: self.paused.iter().copied().collect(),
            groups: self
                .groups
                .iter()
                .map(|(id, g)| {
                    let form = snapshot::GroupV1 {
                        name: g.name.as_str().to_owned(),
                        external_id: g.external_id.as_ref().map(|e| e.as_str().to_owned()),
                        members: g.members.iter().copied().collect(),
                        roles: g.roles.iter().map(RoleRef::to_string).collect(),
                        revision: g.revision,
                    };
                    (*id, form)
                })
                .collect(),
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        let form: snapshot::MembershipsV1 = serde_json::from_slice(bytes).ok()?;
        Some(Memberships {
            custom_roles: form
                .custom_roles
                .iter()
                .map(|(name, set)| Some((RoleName::parse(name).ok()?, permission_set(set)?)))
                .collect::<Option<_>>()?,
            assignments: form
                .assignments
                .iter()
                .map(|(user, roles)| {
                    let roles = roles
                        .iter()
                        .map(|role| RoleRef::parse(role).ok())
                        .collect::<Option<_>>()?;
                    Some((*user, roles))
                })
                .collect::<Option<_>>()?,
            paused: form.paused.into_iter().collect(),
            groups: form
                .groups
                .into_iter()
                .map(|(id, g)| {
                    let roles = g
                        .roles
                        .iter()
                        .map(|role| RoleRef::parse(role).ok())
                        .collect::<Option<_>>()?;
                    let group = Group {
                        name: GroupName::from_log(g.name),
                        external_id: g.external_id.map(GroupExternalId::from_log),
                        members: g.members.into_iter().collect(),
                        roles,
                        revision: g.revision,
                    };
                    Some((id, group))
                })
                .collect::<Option<_>>()?,
        })
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct RoleDefined {
        pub name: String,
        pub permissions: Vec<String>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Member {
        pub user: Uuid,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Assignment {
        pub user: Uuid,
        pub role: String,
    }

    #[derive(Serialize, Deserialize)]
    pub struct GroupNamed {
        pub group: Uuid,
        pub name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub external_id: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct GroupMembers {
        pub group: Uuid,
        pub members: Vec<Uuid>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct GroupOnly {
        pub group: Uuid,
    }

    #[derive(Serialize, Deserialize)]
    pub struct GroupRole {
        pub group: Uuid,
        pub role: String,
    }
}

impl EventSchema for MembershipEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            MembershipEvent::RoleDefined { name, permissions } => stored(
                "RoleDefined",
                1,
                &dto::RoleDefined {
                    name: name.as_str().to_owned(),
                    permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
                },
            ),
            MembershipEvent::RoleGranted { user, role } => stored(
                "RoleGranted",
                1,
                &dto::Assignment {
                    user: *user,
                    role: role.to_string(),
                },
            ),
            MembershipEvent::RoleRevoked { user, role } => stored(
                "RoleRevoked",
                1,
                &dto::Assignment {
                    user: *user,
                    role: role.to_string(),
                },
            ),
            MembershipEvent::MemberPaused { user } => {
                stored("MemberPaused", 1, &dto::Member { user: *user })
            }
            MembershipEvent::MemberResumed { user } => {
                stored("MemberResumed", 1, &dto::Member { user: *user })
            }
            MembershipEvent::GroupCreated {
                group,
                name,
                external_id,
            }
            | MembershipEvent::GroupRenamed {
                group,
                name,
                external_id,
            } => stored(
                if matches!(self, MembershipEvent::GroupCreated { .. }) {
                    "GroupCreated"
                } else {
                    "GroupRenamed"
                },
                1,
                &dto::GroupNamed {
                    group: *group,
                    name: name.as_str().to_owned(),
                    external_id: external_id.as_ref().map(|e| e.as_str().to_owned()),
                },
            ),
            MembershipEvent::GroupMembersAdded { group, members } => stored(
                "GroupMembersAdded",
                1,
                &dto::GroupMembers {
                    group: *group,
                    members: members.clone(),
                },
            ),
            MembershipEvent::GroupMembersRemoved { group, members } => stored(
                "GroupMembersRemoved",
                1,
                &dto::GroupMembers {
                    group: *group,
                    members: members.clone(),
                },
            ),
            MembershipEvent::GroupDeleted { group } => {
                stored("GroupDeleted", 1, &dto::GroupOnly { group: *group })
            }
            MembershipEvent::RoleGrantedToGroup { group, role } => stored(
                "RoleGrantedToGroup",
                1,
                &dto::GroupRole {
                    group: *group,
                    role: role.to_string(),
                },
            ),
            MembershipEvent::RoleRevokedFromGroup { group, role } => stored(
                "RoleRevokedFromGroup",
                1,
                &dto::GroupRole {
                    group: *group,
                    role: role.to_string(),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let malformed = || SchemaError::Malformed {
            event_type: form.event_type.as_str().to_owned(),
            version: form.schema_version.get(),
        };
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("RoleDefined", 1) => {
                let dto: dto::RoleDefined = read(form)?;
                let permissions: Result<Vec<Permission>, _> = dto
                    .permissions
                    .iter()
                    .map(|p| Permission::parse(p))
                    .collect();
                Ok(MembershipEvent::RoleDefined {
                    name: RoleName::parse(&dto.name).map_err(|_| malformed())?,
                    permissions: PermissionSet::from(&permissions.map_err(|_| malformed())?[..]),
                })
            }
            ("MemberPaused", 1) => Ok(MembershipEvent::MemberPaused {
                user: read::<dto::Member>(form)?.user,
            }),
            ("MemberResumed", 1) => Ok(MembershipEvent::MemberResumed {
                user: read::<dto::Member>(form)?.user,
            }),
            ("RoleGranted", 1) | ("RoleRevoked", 1) => {
                let dto: dto::Assignment = read(form)?;
                let role = RoleRef::parse(&dto.role).map_err(|_| malformed())?;
                Ok(if form.event_type.as_str() == "RoleGranted" {
                    MembershipEvent::RoleGranted {
                        user: dto.user,
                        role,
                    }
                } else {
                    MembershipEvent::RoleRevoked {
                        user: dto.user,
                        role,
                    }
                })
            }
            ("GroupCreated", 1) | ("GroupRenamed", 1) => {
                let dto: dto::GroupNamed = read(form)?;
                let (group, name) = (dto.group, GroupName::from_log(dto.name));
                let external_id = dto.external_id.map(GroupExternalId::from_log);
                Ok(if form.event_type.as_str() == "GroupCreated" {
                    MembershipEvent::GroupCreated {
                        group,
                        name,
                        external_id,
                    }
                } else {
                    MembershipEvent::GroupRenamed {
                        group,
                        name,
                        external_id,
                    }
                })
            }
            ("GroupMembersAdded", 1) => {
                let dto: dto::GroupMembers = read(form)?;
                Ok(MembershipEvent::GroupMembersAdded {
                    group: dto.group,
                    members: dto.members,
                })
            }
            ("GroupMembersRemoved", 1) => {
                let dto: dto::GroupMembers = read(form)?;
                Ok(MembershipEvent::GroupMembersRemoved {
                    group: dto.group,
                    members: dto.members,
                })
            }
            ("GroupDeleted", 1) => Ok(MembershipEvent::GroupDeleted {
                group: read::<dto::GroupOnly>(form)?.group,
            }),
            ("RoleGrantedToGroup", 1) | ("RoleRevokedFromGroup", 1) => {
                let dto: dto::GroupRole = read(form)?;
                let role = RoleRef::parse(&dto.role).map_err(|_| malformed())?;
                Ok(if form.event_type.as_str() == "RoleGrantedToGroup" {
                    MembershipEvent::RoleGrantedToGroup {
                        group: dto.group,
                        role,
                    }
                } else {
                    MembershipEvent::RoleRevokedFromGroup {
                        group: dto.group,
                        role,
                    }
                })
            }
            (
                "RoleDefined"
                | "RoleGranted"
                | "RoleRevoked"
                | "GroupCreated"
                | "GroupRenamed"
                | "GroupMembersAdded"
                | "GroupMembersRemoved"
                | "GroupDeleted"
                | "RoleGrantedToGroup"
                | "RoleRevokedFromGroup",
                version,
            ) => Err(SchemaError::UnknownVersion {
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

    const OWNER: RoleRef = RoleRef::BuiltIn(BuiltInRole::Owner);
    const ADMIN: RoleRef = RoleRef::BuiltIn(BuiltInRole::Admin);

    fn granted(user: Uuid, role: RoleRef) -> MembershipEvent {
        MembershipEvent::RoleGranted { user, role }
    }

    fn support_role() -> (RoleName, PermissionSet) {
        (
            RoleName::parse("support").unwrap(),
            PermissionSet::from(&[Permission::UserRead, Permission::UserUnlock][..]),
        )
    }

    #[test]
    fn grant_is_idempotent_and_revoke_of_unheld_is_a_no_op() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        given::<Memberships>(&[])
            .when(&MembershipCommand::Grant {
                user: ada,
                role: OWNER,
            })
            .then(&[granted(ada, OWNER)]);
        given::<Memberships>(&[granted(ada, OWNER)])
            .when(&MembershipCommand::Grant {
                user: ada,
                role: OWNER,
            })
            .then(&[]);
        given::<Memberships>(&[granted(ada, OWNER)])
            .when(&MembershipCommand::Revoke {
                user: bob,
                role: ADMIN,
            })
            .then(&[]);
    }

    #[test]
    fn the_last_owner_cannot_be_removed() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        given::<Memberships>(&[granted(ada, OWNER)])
            .when(&MembershipCommand::Revoke {
                user: ada,
                role: OWNER,
            })
            .then_error(MembershipError::LastOwner);
        given::<Memberships>(&[granted(ada, OWNER), granted(ada, ADMIN)])
            .when(&MembershipCommand::RemoveMember { user: ada })
            .then_error(MembershipError::LastOwner);
        // With a second owner, either may go.
        given::<Memberships>(&[granted(ada, OWNER), granted(bob, OWNER)])
            .when(&MembershipCommand::Revoke {
                user: ada,
                role: OWNER,
            })
            .then(&[MembershipEvent::RoleRevoked {
                user: ada,
                role: OWNER,
            }]);
        // A non-owner's removal revokes all their roles.
        given::<Memberships>(&[granted(ada, OWNER), granted(bob, ADMIN)])
            .when(&MembershipCommand::RemoveMember { user: bob })
            .then(&[MembershipEvent::RoleRevoked {
                user: bob,
                role: ADMIN,
            }]);
    }

    #[test]
    fn custom_roles_must_exist_and_hold_permissions() {
        let (name, permissions) = support_role();
        let custom = RoleRef::Custom(name.clone());
        let user = Uuid::now_v7();
        given::<Memberships>(&[])
            .when(&MembershipCommand::Grant {
                user,
                role: custom.clone(),
            })
            .then_error(MembershipError::UnknownRole);
        given::<Memberships>(&[])
            .when(&MembershipCommand::DefineRole {
                name: name.clone(),
                permissions: PermissionSet::default(),
            })
            .then_error(MembershipError::EmptyRole);
        let defined = MembershipEvent::RoleDefined {
            name,
            permissions: permissions.clone(),
        };
        given::<Memberships>(std::slice::from_ref(&defined))
            .when(&MembershipCommand::Grant {
                user,
                role: custom.clone(),
            })
            .then(&[granted(user, custom.clone())]);
        let state = Memberships::fold(&[
            defined,
            granted(user, custom),
            granted(user, RoleRef::BuiltIn(BuiltInRole::Member)),
        ]);
        let held = state.permissions_of(user);
        assert!(held.contains(Permission::UserUnlock) && held.contains(Permission::TenantRead));
        assert!(!held.contains(Permission::UserDelete));
    }

    #[test]
    fn nobody_grants_or_defines_beyond_their_own_permissions() {
        let tenant = TenantId::generate();
        let (name, permissions) = support_role();
        let state = Memberships::fold(&[MembershipEvent::RoleDefined {
            name: name.clone(),
            permissions,
        }]);
        let admin = Principal::Member {
            tenant,
            user: Uuid::now_v7(),
            permissions: BuiltInRole::Admin.permissions(),
        };
        let grant = |role| MembershipCommand::Grant {
            user: Uuid::now_v7(),
            role,
        };
        assert!(state
            .authorize(&admin, tenant, &grant(RoleRef::Custom(name)))
            .is_ok());
        assert_eq!(
            state.authorize(&admin, tenant, &grant(OWNER)),
            Err(Denied::Missing(Permission::TenantSuspend))
        );
        let escalate = MembershipCommand::DefineRole {
            name: RoleName::parse("eraser").unwrap(),
            permissions: PermissionSet::from(&[Permission::SubjectErase][..]),
        };
        assert_eq!(
            state.authorize(&admin, tenant, &escalate),
            Err(Denied::Missing(Permission::SubjectErase))
        );
        assert_eq!(
            state.authorize(&admin, TenantId::generate(), &grant(ADMIN)),
            Err(Denied::OtherTenant)
        );
    }

    #[test]
    fn nobody_redefines_a_role_held_by_someone_who_holds_more() {
        let tenant = TenantId::generate();
        let (name, permissions) = support_role();
        let owner = Uuid::now_v7();
        let state = Memberships::default()
            .apply(&MembershipEvent::RoleDefined {
                name: name.clone(),
                permissions: permissions.clone(),
            })
            .apply(&granted(owner, RoleRef::BuiltIn(BuiltInRole::Owner)))
            .apply(&granted(owner, RoleRef::Custom(name.clone())));
        let admin = Principal::Member {
            tenant,
            user: Uuid::now_v7(),
            permissions: BuiltInRole::Admin.permissions(),
        };
        let redefine = MembershipCommand::DefineRole {
            name,
            permissions: PermissionSet::from(&[Permission::TenantRead][..]),
        };
        assert!(matches!(
            state.authorize(&admin, tenant, &redefine),
            Err(Denied::Outranked(_))
        ));
        assert_eq!(
            state.authorize(&Principal::PlatformOperator, tenant, &redefine),
            Ok(())
        );
    }

    #[test]
    fn a_paused_owner_does_not_count_and_the_last_active_one_stays() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let owner = RoleRef::BuiltIn(BuiltInRole::Owner);
        let two = [
            granted(first, owner.clone()),
            granted(second, owner.clone()),
        ];
        given::<Memberships>(&two)
            .when(&MembershipCommand::Pause { user: first })
            .then(&[MembershipEvent::MemberPaused { user: first }]);
        let one_paused = [
            two[0].clone(),
            two[1].clone(),
            MembershipEvent::MemberPaused { user: first },
        ];
        for last in [
            MembershipCommand::Pause { user: second },
            MembershipCommand::RemoveMember { user: second },
            MembershipCommand::Revoke {
                user: second,
                role: owner.clone(),
            },
        ] {
            given::<Memberships>(&one_paused)
                .when(&last)
                .then_error(MembershipError::LastOwner);
        }
        // The paused one may go; back, it counts again.
        given::<Memberships>(&one_paused)
            .when(&MembershipCommand::RemoveMember { user: first })
            .then(&[MembershipEvent::RoleRevoked {
                user: first,
                role: owner.clone(),
            }]);
        given::<Memberships>(&one_paused)
            .when(&MembershipCommand::Resume { user: first })
            .then(&[MembershipEvent::MemberResumed { user: first }]);
    }

    #[test]
    fn role_names_and_refs_parse() {
        assert!(
            RoleName::parse("owner").is_err(),
            "built-in names are reserved"
        );
        assert!(RoleName::parse("Support").is_err());
        assert_eq!(
            RoleRef::parse("custom:support").unwrap().to_string(),
            "custom:support"
        );
        assert_eq!(
            RoleRef::parse("privacy_officer").unwrap(),
            RoleRef::BuiltIn(BuiltInRole::PrivacyOfficer)
        );
        assert!(RoleRef::parse("root").is_err());
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let (name, permissions) = support_role();
        let user = Uuid::now_v7();
        for event in [
            MembershipEvent::RoleDefined {
                name: name.clone(),
                permissions,
            },
            granted(user, RoleRef::Custom(name)),
            MembershipEvent::RoleRevoked { user, role: OWNER },
        ] {
            assert_eq!(MembershipEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }

    fn group_created(group: Uuid) -> MembershipEvent {
        MembershipEvent::GroupCreated {
            group,
            name: GroupName::parse("Engineering").unwrap(),
            external_id: Some(GroupExternalId::parse("00g1").unwrap()),
        }
    }

    fn joined(group: Uuid, members: &[Uuid]) -> MembershipEvent {
        MembershipEvent::GroupMembersAdded {
            group,
            members: members.to_vec(),
        }
    }

    #[test]
    fn a_role_granted_to_a_group_counts_for_its_members_only_while_they_are_in_it() {
        let (ada, bob, engineering) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let events = [
            granted(ada, OWNER),
            group_created(engineering),
            joined(engineering, &[bob]),
            MembershipEvent::RoleGrantedToGroup {
                group: engineering,
                role: ADMIN,
            },
        ];
        let state = events
            .iter()
            .fold(Memberships::default(), |s, e| s.apply(e));
        assert!(state.permissions_of(bob).contains(Permission::UserSuspend));
        assert_eq!(
            state.group_roles_of(bob).collect::<Vec<_>>(),
            [(engineering, &ADMIN)]
        );
        assert_eq!(state.group(engineering).unwrap().revision, 3);
        // Leaving the group takes the role with it.
        let left = state.clone().apply(&MembershipEvent::GroupMembersRemoved {
            group: engineering,
            members: vec![bob],
        });
        assert!(left.permissions_of(bob).is_empty());
        // So does the group's deletion.
        let deleted = state.apply(&MembershipEvent::GroupDeleted { group: engineering });
        assert!(deleted.permissions_of(bob).is_empty());
    }

    #[test]
    fn group_changes_are_minimal_checked_against_their_revision_and_keep_an_owner() {
        let (ada, bob, owners) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let history = [
            group_created(owners),
            joined(owners, &[ada]),
            MembershipEvent::RoleGrantedToGroup {
                group: owners,
                role: OWNER,
            },
        ];
        let change = |add: &[Uuid], remove: &[Uuid], revision| MembershipCommand::ChangeGroup {
            group: owners,
            name: GroupName::parse("Engineering").unwrap(),
            external_id: Some(GroupExternalId::parse("00g1").unwrap()),
            add: add.iter().copied().collect(),
            remove: remove.iter().copied().collect(),
            revision,
        };
        // Nothing asked that is not so already: nothing happens.
        given::<Memberships>(&history)
            .when(&change(&[ada], &[bob], Some(3)))
            .then(&[]);
        given::<Memberships>(&history)
            .when(&change(&[bob], &[], Some(2)))
            .then_error(MembershipError::StaleGroup {
                expected: 2,
                actual: 3,
            });
        // The only owner holds it through the group: they stay in it.
        given::<Memberships>(&history)
            .when(&change(&[], &[ada], None))
            .then_error(MembershipError::LastOwner);
        given::<Memberships>(&history)
            .when(&MembershipCommand::DeleteGroup {
                group: owners,
                revision: None,
            })
            .then_error(MembershipError::LastOwner);
        given::<Memberships>(&history)
            .when(&MembershipCommand::CreateGroup {
                group: owners,
                name: GroupName::parse("Again").unwrap(),
                external_id: None,
                members: BTreeSet::new(),
            })
            .then_error(MembershipError::GroupExists);
        given::<Memberships>(&history)
            .when(&MembershipCommand::GrantRoleToGroup {
                group: Uuid::now_v7(),
                role: ADMIN,
            })
            .then_error(MembershipError::UnknownGroup);
        // Removing a member takes them out of every group too.
        let mut with_bob = history.to_vec();
        with_bob.push(joined(owners, &[bob]));
        given::<Memberships>(&with_bob)
            .when(&MembershipCommand::RemoveMember { user: bob })
            .then(&[MembershipEvent::GroupMembersRemoved {
                group: owners,
                members: vec![bob],
            }]);
    }

    #[test]
    fn granting_to_a_group_is_checked_against_each_member() {
        let tenant = TenantId::generate();
        let (ada, group) = (Uuid::now_v7(), Uuid::now_v7());
        let state = [
            granted(ada, OWNER),
            group_created(group),
            joined(group, &[ada]),
        ]
        .iter()
        .fold(Memberships::default(), |s, e| s.apply(e));
        let admin = Principal::Service {
            tenant,
            permissions: BuiltInRole::Admin.permissions(),
        };
        // An admin may not change what a group holding an owner grants.
        let grant = MembershipCommand::GrantRoleToGroup {
            group,
            role: RoleRef::BuiltIn(BuiltInRole::Member),
        };
        assert!(state.authorize(&admin, tenant, &grant).is_err());
        // A SCIM-like token keeps groups but grants nothing.
        let scim = Principal::Service {
            tenant,
            permissions: PermissionSet::from(&[Permission::GroupManage][..]),
        };
        let create = MembershipCommand::CreateGroup {
            group: Uuid::now_v7(),
            name: GroupName::parse("Sales").unwrap(),
            external_id: None,
            members: BTreeSet::new(),
        };
        assert!(state.authorize(&scim, tenant, &create).is_ok());
        assert!(state.authorize(&scim, tenant, &grant).is_err());
        // What a member holds through a group is no barrier to whoever
        // keeps groups (they could take the member out first); what they
        // hold themselves is.
        let through_group = state
            .clone()
            .apply(&MembershipEvent::RoleGrantedToGroup { group, role: ADMIN });
        let bob = Uuid::now_v7();
        let through_group = through_group.apply(&joined(group, &[bob]));
        let suspender = Principal::Service {
            tenant,
            permissions: PermissionSet::from(&[Permission::UserSuspend][..]),
        };
        assert!(through_group
            .permissions_against(&scim, tenant, bob)
            .is_empty());
        assert_eq!(
            through_group.permissions_against(&suspender, tenant, bob),
            BuiltInRole::Admin.permissions()
        );
        assert_eq!(
            through_group.permissions_against(&scim, tenant, ada),
            BuiltInRole::Owner.permissions()
        );
    }

    #[test]
    fn group_events_and_snapshots_round_trip() {
        let (user, group) = (Uuid::now_v7(), Uuid::now_v7());
        let events = [
            group_created(group),
            MembershipEvent::GroupRenamed {
                group,
                name: GroupName::parse("Eng").unwrap(),
                external_id: None,
            },
            joined(group, &[user]),
            MembershipEvent::GroupMembersRemoved {
                group,
                members: vec![user],
            },
            MembershipEvent::RoleGrantedToGroup { group, role: ADMIN },
            MembershipEvent::RoleRevokedFromGroup { group, role: ADMIN },
            MembershipEvent::GroupDeleted { group },
        ];
        for event in &events {
            assert_eq!(
                MembershipEvent::from_stored(&event.to_stored()).as_ref(),
                Ok(event)
            );
        }
        let state = events[..5]
            .iter()
            .fold(Memberships::default(), |s, e| s.apply(e));
        let version = Memberships::SNAPSHOT_VERSION.unwrap();
        assert_eq!(
            Memberships::from_snapshot(version, &state.to_snapshot()),
            Some(state)
        );
    }

    #[test]
    fn no_group_grants_a_role_that_outlives_membership() {
        let group = Uuid::now_v7();
        let (name, permissions) = support_role();
        let history = [
            group_created(group),
            MembershipEvent::RoleDefined {
                name: name.clone(),
                permissions,
            },
        ];
        for role in [OWNER, ADMIN] {
            given::<Memberships>(&history)
                .when(&MembershipCommand::GrantRoleToGroup { group, role })
                .then_error(MembershipError::LastingRoleForGroup);
        }
        let support = RoleRef::Custom(name.clone());
        given::<Memberships>(&history)
            .when(&MembershipCommand::GrantRoleToGroup {
                group,
                role: support.clone(),
            })
            .then(&[MembershipEvent::RoleGrantedToGroup {
                group,
                role: support.clone(),
            }]);
        // Nor does a role it holds become one later.
        let mut granted = history.to_vec();
        granted.push(MembershipEvent::RoleGrantedToGroup {
            group,
            role: support,
        });
        given::<Memberships>(&granted)
            .when(&MembershipCommand::DefineRole {
                name,
                permissions: PermissionSet::from(
                    &[Permission::UserRead, Permission::RoleGrant][..],
                ),
            })
            .then_error(MembershipError::LastingRoleForGroup);
    }
}
