//! Memberships of one tenant: who holds which role, and the tenant's custom
//! roles. One stream per tenant, so that "the last owner cannot be removed"
//! is decided against every owner at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("no such custom role")]
    UnknownRole,
    #[error("a custom role needs at least one permission")]
    EmptyRole,
    #[error("the last active owner of a tenant cannot be removed")]
    LastOwner,
}

/// The tenant's custom roles and role assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    custom_roles: BTreeMap<RoleName, PermissionSet>,
    assignments: BTreeMap<Uuid, BTreeSet<RoleRef>>,
    /// Members whose access is paused (suspended or deleted users).
    paused: BTreeSet<Uuid>,
}

impl Memberships {
    pub fn role_permissions(&self, role: &RoleRef) -> Option<PermissionSet> {
        match role {
            RoleRef::BuiltIn(role) => Some(role.permissions()),
            RoleRef::Custom(name) => self.custom_roles.get(name).cloned(),
        }
    }

    /// Every user who holds a role.
    pub fn members(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.assignments.keys().copied()
    }

    /// Whether the user's access is paused (suspended, deleted or erased).
    pub fn is_paused(&self, user: Uuid) -> bool {
        self.paused.contains(&user)
    }

    pub fn roles_of(&self, user: Uuid) -> impl Iterator<Item = &RoleRef> {
        self.assignments.get(&user).into_iter().flatten()
    }

    /// The union of the user's roles' permissions.
    pub fn permissions_of(&self, user: Uuid) -> PermissionSet {
        let mut all = PermissionSet::default();
        for role in self.roles_of(user) {
            if let Some(permissions) = self.role_permissions(role) {
                all.extend(&permissions);
            }
        }
        all
    }

    pub fn owners(&self) -> impl Iterator<Item = Uuid> + '_ {
        let owner = RoleRef::BuiltIn(BuiltInRole::Owner);
        self.assignments
            .iter()
            .filter(move |(_, roles)| roles.contains(&owner))
            .map(|(user, _)| *user)
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
                    &self.permissions_of(*user),
                )
            }
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
            MembershipCommand::RemoveMember { user } => self.keeping_an_active_owner(
                self.roles_of(*user)
                    .map(|role| E::RoleRevoked {
                        user: *user,
                        role: role.clone(),
                    })
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
        }
        self
    }
}

/// The snapshot form, version 1: roles and permissions by their stored
/// names, as the events carry them.
mod snapshot {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct MembershipsV1 {
        pub custom_roles: BTreeMap<String, Vec<String>>,
        pub assignments: BTreeMap<Uuid, Vec<String>>,
        pub paused: Vec<Uuid>,
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
            ("RoleDefined" | "RoleGranted" | "RoleRevoked", version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: form.event_type.as_str().to_owned(),
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
}
