//! The user a command acts on: who may act on them. (What acting on them
//! may not take away from the tenant, its last active owner, is the
//! memberships aggregate's rule.)

use custodia_domain::identity::membership::Memberships;
use custodia_domain::rbac::{Denied, Permission};
use custodia_domain::TenantId;
use uuid::Uuid;

use super::credentials::user_status_in;
use super::{load, memberships_stream, Caller, CommandError, Ports};

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
) -> Result<(), CommandError> {
    caller.principal.authorize(tenant, permission, Some(user))?;
    user_status_in(ports, tenant, user).await?;
    let (memberships, _) = load::<Memberships>(&*ports.store, &memberships_stream(tenant)).await?;
    caller
        .principal
        .authorize_on(tenant, permission, user, &memberships.permissions_of(user))?;
    Ok(())
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
