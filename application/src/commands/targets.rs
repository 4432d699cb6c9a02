//! The user a command acts on: who may act on them, and what acting on
//! them may not take away from the tenant (its last active owner).

use custodia_domain::identity::membership::{MembershipError, Memberships};
use custodia_domain::identity::user::UserStatus;
use custodia_domain::rbac::{Denied, Permission};
use custodia_domain::TenantId;
use uuid::Uuid;

use super::credentials::user_status_in;
use super::{load, memberships_stream, Caller, CommandError, Ports};

/// The target of a command, as the guard found it.
pub(crate) struct Target {
    pub status: UserStatus,
    pub memberships: Memberships,
}

/// Authorizes `permission` on `user` of `tenant`, in this order: tenant
/// and permission (nothing read yet), the user must exist in the tenant
/// ("not found" otherwise, as for another tenant's user), and anyone but
/// the user themselves must hold every permission the user holds.
pub(crate) async fn authorize_on_user(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    permission: Permission,
    user: Uuid,
) -> Result<Target, CommandError> {
    caller.principal.authorize(tenant, permission, Some(user))?;
    let status = user_status_in(ports, tenant, user).await?;
    let (memberships, _) = load::<Memberships>(&*ports.store, &memberships_stream(tenant)).await?;
    caller
        .principal
        .authorize_on(tenant, permission, user, &memberships.permissions_of(user))?;
    Ok(Target {
        status,
        memberships,
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

/// Refuses to let `user` stop being an active owner (losing the role,
/// suspended or deleted) when no other active owner would remain.
pub(crate) async fn keep_an_active_owner(
    ports: &Ports,
    tenant: TenantId,
    memberships: &Memberships,
    user: Uuid,
) -> Result<(), CommandError> {
    if !memberships.owners().any(|owner| owner == user) {
        return Ok(());
    }
    for other in memberships.owners().filter(|owner| *owner != user) {
        if user_status_in(ports, tenant, other).await? == UserStatus::Active {
            return Ok(());
        }
    }
    Err(MembershipError::LastOwner.into())
}
