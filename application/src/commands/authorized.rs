//! Authorization as a value. The pipeline's writers ([`super::execute`],
//! [`super::decide_and_append`], [`super::Plan::new`]) take an
//! [`Authorized`], and only this module makes one, each way recording what
//! was checked: a handler that skips authorization does not compile.
//!
//! Which user a command acts on matters too: nobody acts on someone who
//! holds more than they do ([`authorize_on_user`]). (What acting on them
//! may not take away from the tenant, its last active owner, is the
//! memberships aggregate's rule.)

use custodia_domain::identity::membership::Memberships;
use custodia_domain::rbac::{Denied, Permission, Principal};
use custodia_domain::{ChainId, TenantId};
use uuid::Uuid;

use super::credentials::user_status_in;
use super::{load, memberships_stream, Caller, CommandError, Ports};

/// Proof that `caller` may write to the streams of one chain (a tenant's,
/// or the platform's) in this command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authorized<'a> {
    caller: &'a Caller,
    chain: ChainId,
    /// What was checked, for the trace.
    basis: Basis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Basis {
    /// The principal holds the permission in the tenant.
    Permission(Permission),
    /// ... and holds at least what the user it acts on holds.
    OnUser(Permission),
    /// The platform operator, above tenants.
    Platform,
    /// The actor proved who it is with a secret only it holds (a password
    /// being checked, a refresh token, an API key) and acts on its own
    /// account's streams.
    OwnSecret,
    /// A signed-in user acts on themselves with a permission the tenant's
    /// settings open to self-service.
    SelfService(Permission),
    /// An anonymous request that only sends the account's owner a link.
    ToAccountOwner,
    /// Custodia's own background work (delivering messages).
    System,
}

impl<'a> Authorized<'a> {
    pub(crate) fn caller(&self) -> &'a Caller {
        self.caller
    }

    pub(crate) fn chain(&self) -> ChainId {
        self.chain
    }

    pub(crate) fn basis(&self) -> Basis {
        self.basis
    }
}

/// `permission` in `tenant`, about `target` if the command concerns one
/// user (users may do self-service things to themselves).
pub(crate) fn authorize(
    caller: &Caller,
    tenant: TenantId,
    permission: Permission,
    target: Option<Uuid>,
) -> Result<Authorized<'_>, CommandError> {
    caller.principal.authorize(tenant, permission, target)?;
    Ok(Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::Permission(permission),
    })
}

/// Authorizes `permission` on `user` of `tenant`, in this order: tenant
/// and permission (nothing read yet), the user must exist in the tenant
/// ("not found" otherwise, as for another tenant's user), and anyone but
/// the user themselves must hold every permission the user holds.
pub(crate) async fn authorize_on_user<'a>(
    ports: &Ports,
    caller: &'a Caller,
    tenant: TenantId,
    permission: Permission,
    user: Uuid,
) -> Result<Authorized<'a>, CommandError> {
    caller.principal.authorize(tenant, permission, Some(user))?;
    user_status_in(ports, tenant, user).await?;
    let (memberships, _) = load::<Memberships>(&*ports.store, &memberships_stream(tenant)).await?;
    let held = memberships.permissions_against(&caller.principal, tenant, user);
    caller
        .principal
        .authorize_on(tenant, permission, user, &held)?;
    Ok(Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::OnUser(permission),
    })
}

/// Is the caller `user` of `tenant` themselves, signed in (not an API key
/// acting for them)?
pub(crate) fn is_themselves(caller: &Caller, tenant: TenantId, user: Uuid) -> bool {
    matches!(
        caller.principal,
        Principal::Member { tenant: own, user: me, .. } if own == tenant && me == user
    ) && caller.actor == custodia_domain::Actor::User(user)
}

/// A signed-in user (not an API key) acting on themselves with
/// `permission`, which the caller's handler found the tenant's settings
/// open to self-service (self-service erasure, for one).
pub(crate) async fn self_service<'a>(
    ports: &Ports,
    caller: &'a Caller,
    tenant: TenantId,
    permission: Permission,
    user: Uuid,
) -> Result<Authorized<'a>, CommandError> {
    if !is_themselves(caller, tenant, user) {
        return Err(Denied::Missing(permission).into());
    }
    user_status_in(ports, tenant, user).await?;
    Ok(Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::SelfService(permission),
    })
}

/// Only the platform operator (creating a tenant, for one).
pub(crate) fn as_platform_operator(
    caller: &Caller,
    tenant: TenantId,
) -> Result<Authorized<'_>, CommandError> {
    if caller.principal != Principal::PlatformOperator {
        return Err(Denied::PlatformOnly.into());
    }
    Ok(Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::Platform,
    })
}

/// Only the platform operator, writing the platform's own chain (the
/// record of a tenant's erasure, for one).
pub(crate) fn on_platform_chain(caller: &Caller) -> Result<Authorized<'_>, CommandError> {
    if caller.principal != Principal::PlatformOperator {
        return Err(Denied::PlatformOnly.into());
    }
    Ok(Authorized {
        caller,
        chain: ChainId::Platform,
        basis: Basis::Platform,
    })
}

/// The caller proved who it is with a secret only it holds, and the
/// command writes its own account's streams: a login attempt (counted
/// before the password is checked, so that lockout holds), a refresh, an
/// API key's use. The caller is the actor's own (`Caller::internal`).
pub(crate) fn by_own_secret(caller: &Caller, tenant: TenantId) -> Authorized<'_> {
    Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::OwnSecret,
    }
}

/// An anonymous request whose only effect is to send an account's owner a
/// link at the address the account holds (a password reset): nothing of
/// the account changes until the link is followed.
pub(crate) fn for_account_owner(caller: &Caller, tenant: TenantId) -> Authorized<'_> {
    Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::ToAccountOwner,
    }
}

/// Custodia's own background work on a tenant's streams that no person
/// asked for at that moment (recording a message's delivery).
pub(crate) fn by_system(caller: &Caller, tenant: TenantId) -> Authorized<'_> {
    Authorized {
        caller,
        chain: ChainId::Tenant(tenant),
        basis: Basis::System,
    }
}

/// `permission` in `tenant`, for the part of a tenant's command that writes
/// the platform chain: a claim only the platform can keep unique across
/// tenants (a tenant's slug), naming the tenant as its holder.
pub(crate) fn claim_on_platform(
    caller: &Caller,
    tenant: TenantId,
    permission: Permission,
) -> Result<Authorized<'_>, CommandError> {
    caller.principal.authorize(tenant, permission, None)?;
    Ok(Authorized {
        caller,
        chain: ChainId::Platform,
        basis: Basis::Permission(permission),
    })
}

/// Refuses a caller of another tenant before anything of this one is read.
pub(crate) fn require_tenant(caller: &Caller, tenant: TenantId) -> Result<(), CommandError> {
    match caller
        .principal
        .authorize(tenant, Permission::TenantRead, None)
    {
        Err(denied @ Denied::OtherTenant) => Err(denied.into()),
        _ => Ok(()),
    }
}
