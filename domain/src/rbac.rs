//! Role-based access control: the fixed permission catalogue, the built-in
//! roles, custom roles, and the one function that decides whether an actor
//! may do something in a tenant.
//!
//! `docs/rbac.md` is generated from this module and checked by
//! `rbac_document_is_current`, so the two cannot drift.

use std::collections::BTreeSet;
use std::fmt;

use crate::ids::TenantId;
use crate::InvalidValue;

macro_rules! catalogue {
    ($($variant:ident = $name:literal, self_service: $own:literal, $doc:literal;)*) => {
        /// One thing an actor may be allowed to do in a tenant.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in catalogue order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The stable name: what custom roles, tokens and documents use.
            pub fn name(self) -> &'static str {
                match self { $(Permission::$variant => $name,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $doc,)* }
            }

            /// Whether a user may do this to their own account without
            /// holding the permission.
            pub fn is_self_service(self) -> bool {
                match self { $(Permission::$variant => $own,)* }
            }

            pub fn parse(name: &str) -> Result<Permission, InvalidValue> {
                match name {
                    $($name => Ok(Permission::$variant),)*
                    _ => Err(InvalidValue::new("permission", "must be a name from the permission catalogue")),
                }
            }
        }
    };
}

catalogue! {
    TenantRead = "tenant.read", self_service: false, "Read the tenant and its settings.";
    TenantUpdate = "tenant.update", self_service: false, "Change the tenant's settings (password policy, MFA, lifetimes, lockout, consent purposes, retention).";
    TenantSuspend = "tenant.suspend", self_service: false, "Suspend and reactivate the tenant.";
    MailTemplateUpdate = "mail_template.update", self_service: false, "Change the tenant's mail templates (every invitation, verification and reset link travels in them, so owners only by default).";
    UserRead = "user.read", self_service: true, "List users and read their status (not their personal data).";
    UserReadPersonal = "user.read_personal", self_service: true, "Read users' personal data (email, names, phone, attributes).";
    UserCreate = "user.create", self_service: false, "Register or invite users.";
    UserUpdate = "user.update", self_service: true, "Change a user's profile, email and attributes.";
    UserSuspend = "user.suspend", self_service: false, "Suspend and reactivate users.";
    UserDelete = "user.delete", self_service: false, "Soft-delete users.";
    UserUnlock = "user.unlock", self_service: false, "Unlock a user locked out by failed logins.";
    CredentialManage = "credential.manage", self_service: true, "Set passwords, import password hashes, reset TOTP and recovery codes.";
    RoleRead = "role.read", self_service: true, "Read roles and role assignments.";
    RoleGrant = "role.grant", self_service: false, "Grant and revoke roles (only roles whose permissions the granter holds).";
    RoleDefine = "role.define", self_service: false, "Define and change custom roles.";
    GroupManage = "group.manage", self_service: false, "Create, rename and delete groups and change their members (not the roles they grant).";
    SessionRead = "session.read", self_service: true, "List sessions.";
    SessionRevoke = "session.revoke", self_service: true, "Revoke sessions.";
    ConsentRead = "consent.read", self_service: true, "Read consent records and their history.";
    ConsentRecord = "consent.record", self_service: true, "Record consent grants and withdrawals.";
    SubjectExport = "subject.export", self_service: true, "Export everything held about a data subject (access, portability).";
    SubjectErase = "subject.erase", self_service: false, "Erase a data subject by destroying their key.";
    AuditRead = "audit.read", self_service: false, "Query the audit history.";
    AuditExport = "audit.export", self_service: false, "Export verifiable audit bundles.";
    ApiKeyManage = "api_key.manage", self_service: false, "Create and revoke API keys for service accounts.";
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The built-in roles every tenant has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuiltInRole {
    Owner,
    Admin,
    Member,
    Auditor,
    PrivacyOfficer,
}

impl BuiltInRole {
    pub const ALL: &'static [BuiltInRole] = &[
        BuiltInRole::Owner,
        BuiltInRole::Admin,
        BuiltInRole::Member,
        BuiltInRole::Auditor,
        BuiltInRole::PrivacyOfficer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltInRole::Owner => "owner",
            BuiltInRole::Admin => "admin",
            BuiltInRole::Member => "member",
            BuiltInRole::Auditor => "auditor",
            BuiltInRole::PrivacyOfficer => "privacy_officer",
        }
    }

    pub fn parse(name: &str) -> Option<BuiltInRole> {
        BuiltInRole::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// What the role allows. Owners hold everything. Admins run the tenant
    /// but do not suspend it, record consent for others, export or erase data
    /// subjects, or export audit bundles (those belong to owners, privacy
    /// officers and auditors). The others hold what their names say.
    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        let set: &[Permission] = match self {
            BuiltInRole::Owner => Permission::ALL,
            BuiltInRole::Admin => &[
                TenantRead,
                TenantUpdate,
                UserRead,
                UserReadPersonal,
                UserCreate,
                UserUpdate,
                UserSuspend,
                UserDelete,
                UserUnlock,
                CredentialManage,
                RoleRead,
                RoleGrant,
                RoleDefine,
                GroupManage,
                SessionRead,
                SessionRevoke,
                ConsentRead,
                AuditRead,
                ApiKeyManage,
            ],
            BuiltInRole::Member => &[TenantRead, UserRead, RoleRead],
            BuiltInRole::Auditor => &[
                TenantRead,
                UserRead,
                RoleRead,
                SessionRead,
                ConsentRead,
                AuditRead,
                AuditExport,
            ],
            BuiltInRole::PrivacyOfficer => &[
                TenantRead,
                UserRead,
                UserReadPersonal,
                RoleRead,
                ConsentRead,
                ConsentRecord,
                SubjectExport,
                SubjectErase,
                AuditRead,
            ],
        };
        PermissionSet::from(set)
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    pub fn contains(&self, permission: Permission) -> bool {
        self.0.contains(&permission)
    }

    pub fn is_subset(&self, other: &PermissionSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn extend(&mut self, other: &PermissionSet) {
        self.0.extend(other.0.iter().copied());
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        PermissionSet(iter.into_iter().collect())
    }
}

impl From<&[Permission]> for PermissionSet {
    fn from(permissions: &[Permission]) -> Self {
        Self(permissions.iter().copied().collect())
    }
}

/// Who is acting, as far as authorisation is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: every permission in every tenant, and the
    /// platform-level commands (creating tenants).
    PlatformOperator,
    /// A member of one tenant with the union of their roles' permissions.
    Member {
        tenant: TenantId,
        user: uuid::Uuid,
        permissions: PermissionSet,
    },
    /// A service account of one tenant (API key) with the permissions of
    /// its key.
    Service {
        tenant: TenantId,
        permissions: PermissionSet,
    },
}

/// Why an actor may not do what it asked. Carries no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("not a member of this tenant")]
    OtherTenant,
    #[error("missing permission {0}")]
    Missing(Permission),
    #[error("only the platform operator may do this")]
    PlatformOnly,
    /// The target user holds a permission the actor does not: nobody acts
    /// on someone more powerful than themselves.
    #[error("the target user holds {0}, which the caller does not")]
    Outranked(Permission),
    /// Replacing one's own password (changePassword) or erasing oneself
    /// needs the current password: a stolen access token alone must not
    /// take an account over, nor end it.
    #[error("this needs your current password")]
    CurrentPasswordRequired,
}

impl Principal {
    /// May this principal use `permission` in `tenant`, on `subject` (the
    /// user the command is about, if any)? Tenant isolation comes first:
    /// nobody but the platform operator acts outside their own tenant.
    pub fn authorize(
        &self,
        tenant: TenantId,
        permission: Permission,
        subject: Option<uuid::Uuid>,
    ) -> Result<(), Denied> {
        match self {
            Principal::PlatformOperator => Ok(()),
            Principal::Member {
                tenant: own,
                user,
                permissions,
            } => {
                if *own != tenant {
                    return Err(Denied::OtherTenant);
                }
                let own_account = subject == Some(*user);
                if permissions.contains(permission) || (own_account && permission.is_self_service())
                {
                    Ok(())
                } else {
                    Err(Denied::Missing(permission))
                }
            }
            Principal::Service {
                tenant: own,
                permissions,
            } => {
                if *own != tenant {
                    return Err(Denied::OtherTenant);
                }
                if permissions.contains(permission) {
                    Ok(())
                } else {
                    Err(Denied::Missing(permission))
                }
            }
        }
    }

    /// May this principal use `permission` on `target`, a user of `tenant`
    /// who holds `target_holds`? Besides [`Principal::authorize`], anyone
    /// but the user themselves must hold every permission the target holds
    /// (the rule that guards grants), so an admin cannot take over an owner.
    pub fn authorize_on(
        &self,
        tenant: TenantId,
        permission: Permission,
        target: uuid::Uuid,
        target_holds: &PermissionSet,
    ) -> Result<(), Denied> {
        self.authorize(tenant, permission, Some(target))?;
        match self {
            Principal::PlatformOperator => Ok(()),
            Principal::Member { user, .. } if *user == target => Ok(()),
            Principal::Member { permissions, .. } | Principal::Service { permissions, .. } => {
                match target_holds.iter().find(|p| !permissions.contains(*p)) {
                    Some(missing) => Err(Denied::Outranked(missing)),
                    None => Ok(()),
                }
            }
        }
    }

    /// May this principal grant a role with `granted` permissions in
    /// `tenant`? It needs `role.grant` and every permission it hands out.
    pub fn authorize_grant(&self, tenant: TenantId, granted: &PermissionSet) -> Result<(), Denied> {
        self.authorize(tenant, Permission::RoleGrant, None)?;
        match self {
            Principal::PlatformOperator => Ok(()),
            Principal::Member { permissions, .. } | Principal::Service { permissions, .. } => {
                match granted.iter().find(|p| !permissions.contains(*p)) {
                    Some(missing) => Err(Denied::Missing(missing)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The permission catalogue and role matrix as Markdown: `docs/rbac.md`.
pub fn rbac_document() -> String {
    let mut doc = String::from(
        "# Permissions and roles\n\n\
         Generated from `domain/src/rbac.rs` (test `rbac_document_is_current`); do not edit by hand.\n\
         Regenerate with `CUSTODIA_BLESS=1 cargo test -p custodia-domain rbac_document_is_current`.\n\n\
         Rules:\n\n\
         - Tenant isolation comes first: a member or service account acts only in its own tenant.\n\
         - The **platform operator** holds every permission in every tenant and alone may create tenants.\n\
         - A user may use a *self-service* permission on their own account without holding it.\n\
         - Granting a role requires `role.grant` and every permission of the granted role.\n\
         - Changing another user's credentials, email, profile, status, roles or membership (or redefining a custom role they hold) requires every permission that user holds.\n\
         - A tenant always keeps at least one active owner (revoking, removing, suspending or deleting the last one is refused).\n\n",
    );
    doc.push_str("| permission | self-service |");
    for role in BuiltInRole::ALL {
        doc.push_str(&format!(" {} |", role.name()));
    }
    doc.push_str(" description |\n|---|---|");
    for _ in BuiltInRole::ALL {
        doc.push_str("---|");
    }
    doc.push_str("---|\n");
    for permission in Permission::ALL {
        doc.push_str(&format!(
            "| `{}` | {} |",
            permission.name(),
            if permission.is_self_service() {
                "yes"
            } else {
                ""
            }
        ));
        for role in BuiltInRole::ALL {
            let mark = if role.permissions().contains(*permission) {
                "✓"
            } else {
                ""
            };
            doc.push_str(&format!(" {mark} |"));
        }
        doc.push_str(&format!(" {} |\n", permission.description()));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(tenant: TenantId, role: BuiltInRole) -> (Principal, uuid::Uuid) {
        let user = uuid::Uuid::now_v7();
        (
            Principal::Member {
                tenant,
                user,
                permissions: role.permissions(),
            },
            user,
        )
    }

    #[test]
    fn nobody_acts_on_someone_who_holds_more() {
        let tenant = TenantId::generate();
        let (admin, admin_id) = member(tenant, BuiltInRole::Admin);
        let owner = BuiltInRole::Owner.permissions();
        let target = uuid::Uuid::now_v7();
        let on = |p: &Principal, who, holds: &PermissionSet| {
            p.authorize_on(tenant, Permission::CredentialManage, who, holds)
        };
        assert!(matches!(
            on(&admin, target, &owner),
            Err(Denied::Outranked(_))
        ));
        assert_eq!(
            on(&admin, target, &BuiltInRole::Admin.permissions()),
            Ok(())
        );
        assert_eq!(
            on(&admin, target, &BuiltInRole::Member.permissions()),
            Ok(())
        );
        // Oneself, whatever one holds; the operator, on anyone.
        assert_eq!(on(&admin, admin_id, &owner), Ok(()));
        assert_eq!(on(&Principal::PlatformOperator, target, &owner), Ok(()));
        // Tenant isolation and the permission itself still come first.
        let (member, _) = member(tenant, BuiltInRole::Member);
        assert_eq!(
            on(&member, target, &PermissionSet::default()),
            Err(Denied::Missing(Permission::CredentialManage))
        );
        let (stranger, _) = super::tests::member(TenantId::generate(), BuiltInRole::Owner);
        assert_eq!(
            on(&stranger, target, &PermissionSet::default()),
            Err(Denied::OtherTenant)
        );
    }

    #[test]
    fn rbac_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rbac.md");
        let generated = rbac_document();
        if std::env::var("CUSTODIA_BLESS").is_ok() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/rbac.md is out of date; regenerate it with \
             CUSTODIA_BLESS=1 cargo test -p custodia-domain rbac_document_is_current"
        );
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: BTreeSet<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Permission::ALL.len());
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.name()), Ok(*permission));
        }
        assert!(Permission::parse("tenant.everything").is_err());
    }

    #[test]
    fn the_matrix_for_every_role_in_own_and_other_tenant() {
        let (own, other) = (TenantId::generate(), TenantId::generate());
        for role in BuiltInRole::ALL {
            let (principal, _) = member(own, *role);
            for permission in Permission::ALL {
                let expected = role.permissions().contains(*permission);
                assert_eq!(
                    principal.authorize(own, *permission, None).is_ok(),
                    expected,
                    "{} / {permission} in own tenant",
                    role.name()
                );
                assert_eq!(
                    principal.authorize(other, *permission, None),
                    Err(Denied::OtherTenant),
                    "{} / {permission} in another tenant",
                    role.name()
                );
            }
        }
    }

    #[test]
    fn owners_hold_everything_and_members_little() {
        assert_eq!(
            BuiltInRole::Owner.permissions().iter().count(),
            Permission::ALL.len()
        );
        assert!(!BuiltInRole::Admin
            .permissions()
            .contains(Permission::SubjectErase));
        assert!(!BuiltInRole::Member
            .permissions()
            .contains(Permission::UserReadPersonal));
    }

    #[test]
    fn self_service_applies_to_ones_own_account_only() {
        let tenant = TenantId::generate();
        let (principal, me) = member(tenant, BuiltInRole::Member);
        assert!(principal
            .authorize(tenant, Permission::UserUpdate, Some(me))
            .is_ok());
        assert!(principal
            .authorize(tenant, Permission::CredentialManage, Some(me))
            .is_ok());
        let someone_else = Some(uuid::Uuid::now_v7());
        assert_eq!(
            principal.authorize(tenant, Permission::UserUpdate, someone_else),
            Err(Denied::Missing(Permission::UserUpdate))
        );
        // Not everything is self-service: nobody erases themselves by RBAC.
        assert!(principal
            .authorize(tenant, Permission::SubjectErase, Some(me))
            .is_err());
    }

    #[test]
    fn nobody_grants_a_permission_they_do_not_hold() {
        let tenant = TenantId::generate();
        let (admin, _) = member(tenant, BuiltInRole::Admin);
        assert!(admin
            .authorize_grant(tenant, &BuiltInRole::Member.permissions())
            .is_ok());
        assert_eq!(
            admin.authorize_grant(tenant, &BuiltInRole::Owner.permissions()),
            Err(Denied::Missing(Permission::TenantSuspend))
        );
        let (auditor, _) = member(tenant, BuiltInRole::Auditor);
        assert_eq!(
            auditor.authorize_grant(tenant, &BuiltInRole::Member.permissions()),
            Err(Denied::Missing(Permission::RoleGrant))
        );
        assert!(Principal::PlatformOperator
            .authorize_grant(tenant, &BuiltInRole::Owner.permissions())
            .is_ok());
    }

    #[test]
    fn service_accounts_never_use_self_service() {
        let tenant = TenantId::generate();
        let service = Principal::Service {
            tenant,
            permissions: PermissionSet::from(&[Permission::UserRead][..]),
        };
        assert!(service
            .authorize(tenant, Permission::UserRead, None)
            .is_ok());
        assert!(service
            .authorize(tenant, Permission::UserUpdate, Some(uuid::Uuid::now_v7()))
            .is_err());
        assert_eq!(
            service.authorize(TenantId::generate(), Permission::UserRead, None),
            Err(Denied::OtherTenant)
        );
    }
}
