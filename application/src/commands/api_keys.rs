//! API keys for service accounts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use custodia_domain::identity::api_key::{ApiKey, ApiKeyCommand, ApiKeyName, ApiKeyPurpose};
use custodia_domain::identity::membership::Memberships;
use custodia_domain::identity::user::UserStatus;
use custodia_domain::rbac::{Denied, Permission, PermissionSet, Principal};
use custodia_domain::{Actor, ChainId, StreamId, StreamVersion, TenantId, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::authorized::{authorize, authorize_on_user, by_own_secret};
use super::sessions::SessionFailure;
use super::tenants::require_active_tenant;
use super::{decide_and_append, load, load_located, stream, Caller, CommandError, Outcome, Ports};

fn key_stream(key: Uuid) -> StreamId {
    stream("api_key", key)
}

/// A new key. The secret is shown here once and never again.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedApiKey {
    pub key_id: Uuid,
    /// `cst_<key id>_<secret>`
    pub key: String,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What a SCIM token may do: provision users, nothing more (ADR 0012).
pub const SCIM_PERMISSIONS: &[Permission] = &[
    // What every member holds: without it, a token could not act on the
    // tenant's ordinary members (nobody acts on a user holding more).
    Permission::TenantRead,
    Permission::UserRead,
    Permission::UserReadPersonal,
    Permission::UserCreate,
    Permission::UserUpdate,
    Permission::UserSuspend,
    Permission::UserDelete,
    Permission::CredentialManage,
    Permission::RoleRead,
    Permission::GroupManage,
];

/// Creates a key with `permissions`, all of which the caller must hold.
/// Needs `api_key.manage`.
pub async fn create_api_key(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    name: &str,
    permissions: PermissionSet,
    at: Timestamp,
) -> Result<CreatedApiKey, CommandError> {
    create(
        ports,
        caller,
        tenant,
        name,
        ApiKeyPurpose::General,
        permissions,
        at,
    )
    .await
}

/// Creates a SCIM token: a key accepted on `/scim/v2` only, with
/// [`SCIM_PERMISSIONS`] (all of which the caller must hold). Needs
/// `api_key.manage`.
pub async fn create_scim_token(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    name: &str,
    at: Timestamp,
) -> Result<CreatedApiKey, CommandError> {
    let permissions = PermissionSet::from(SCIM_PERMISSIONS);
    create(
        ports,
        caller,
        tenant,
        name,
        ApiKeyPurpose::Scim,
        permissions,
        at,
    )
    .await
}

async fn create(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    name: &str,
    purpose: ApiKeyPurpose,
    permissions: PermissionSet,
    at: Timestamp,
) -> Result<CreatedApiKey, CommandError> {
    let authorized = authorize(caller, tenant, Permission::ApiKeyManage, None)?;
    // Keys are minted by people: a key that minted keys would outlive
    // the person behind it.
    if matches!(caller.principal, Principal::Service { .. }) {
        return Err(Denied::Missing(Permission::ApiKeyManage).into());
    }
    if let Principal::Member {
        permissions: held, ..
    }
    | Principal::Service {
        permissions: held, ..
    } = &caller.principal
    {
        if let Some(missing) = permissions.iter().find(|p| !held.contains(*p)) {
            return Err(Denied::Missing(missing).into());
        }
    }
    let name = ApiKeyName::parse(name)?;
    // Plaintext kept in the log for good (docs/privacy.md).
    custodia_domain::personal::refuse_personal_data("API key name", name.as_str())?;
    require_active_tenant(ports, tenant).await?;
    super::refuse_repeat(ports, caller).await?;
    let key_id = Uuid::now_v7();
    let secret = ports.tokens.refresh_secret();
    let command = ApiKeyCommand::Create {
        name,
        purpose,
        permissions,
        secret_sha256: Sha256::digest(secret).into(),
        at,
    };
    decide_and_append::<ApiKey>(ports, &authorized, &key_stream(key_id), &command).await?;
    Ok(CreatedApiKey {
        key_id,
        key: format!("cst_{}_{}", key_id.simple(), B64URL.encode(secret)),
    })
}

pub async fn revoke_api_key(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    key_id: Uuid,
    at: Timestamp,
) -> Result<Outcome, CommandError> {
    let mut authorized = authorize(caller, tenant, Permission::ApiKeyManage, None)?;
    // Another tenant's key, or none, is not found here.
    let chain = Some(ChainId::Tenant(tenant));
    if let (ApiKey::Absent, _) =
        super::load_in::<ApiKey>(&*ports.store, &key_stream(key_id), chain).await?
    {
        return Err(CommandError::NotFound("API key"));
    }
    // Nobody revokes the key of someone who holds more than they do.
    if let Actor::User(creator) = creator_of(ports, key_id).await? {
        authorized =
            authorize_on_user(ports, caller, tenant, Permission::ApiKeyManage, creator).await?;
    }
    let command = ApiKeyCommand::Revoke { at };
    decide_and_append::<ApiKey>(ports, &authorized, &key_stream(key_id), &command).await
}

/// Authenticates a service by its API key (`cst_<key id>_<secret>`), in the
/// tenant the key belongs to. Returns the key's id, that tenant, and the
/// service's principal with the key's permissions. Records the use (at most
/// hourly). A SCIM token is refused here.
pub async fn identify_api_key(
    ports: &Ports,
    key: &str,
    at: Timestamp,
) -> Result<(Uuid, TenantId, Principal), SessionFailure> {
    identify(ports, key, ApiKeyPurpose::General, at).await
}

/// [`identify_api_key`] for SCIM: only a SCIM token is accepted.
pub async fn identify_scim_token(
    ports: &Ports,
    key: &str,
    at: Timestamp,
) -> Result<(Uuid, TenantId, Principal), SessionFailure> {
    identify(ports, key, ApiKeyPurpose::Scim, at).await
}

async fn identify(
    ports: &Ports,
    key: &str,
    purpose: ApiKeyPurpose,
    at: Timestamp,
) -> Result<(Uuid, TenantId, Principal), SessionFailure> {
    let (key_id, tenant, permissions) = check_key(ports, key, purpose).await?;
    let principal = record_use(ports, key_id, tenant, permissions, at).await;
    Ok((key_id, tenant, principal))
}

/// [`identify_api_key`] for a key that must belong to `tenant`.
pub async fn authenticate_api_key(
    ports: &Ports,
    tenant: TenantId,
    key: &str,
    at: Timestamp,
) -> Result<Principal, SessionFailure> {
    let (key_id, of, permissions) = check_key(ports, key, ApiKeyPurpose::General).await?;
    if of != tenant {
        return Err(SessionFailure::InvalidToken);
    }
    Ok(record_use(ports, key_id, tenant, permissions, at).await)
}

/// The key's id, tenant and permissions, if the key is live, for
/// `purpose`, and its secret right.
async fn check_key(
    ports: &Ports,
    key: &str,
    purpose: ApiKeyPurpose,
) -> Result<(Uuid, TenantId, PermissionSet), SessionFailure> {
    let rest = key
        .strip_prefix("cst_")
        .ok_or(SessionFailure::InvalidToken)?;
    let (id, secret) = rest.split_once('_').ok_or(SessionFailure::InvalidToken)?;
    let key_id = Uuid::parse_str(id).map_err(|_| SessionFailure::InvalidToken)?;
    let secret = B64URL
        .decode(secret)
        .map_err(|_| SessionFailure::InvalidToken)?;
    let (state, _, chain) = load_located::<ApiKey>(&*ports.store, &key_stream(key_id)).await?;
    let Some(ChainId::Tenant(tenant)) = chain else {
        return Err(SessionFailure::InvalidToken);
    };
    let ApiKey::Active {
        purpose: made_for,
        permissions,
        secret_sha256,
        ..
    } = state
    else {
        return Err(SessionFailure::Revoked);
    };
    // Comparing digests of a 256-bit secret: timing reveals nothing usable.
    // A key used where it was not made for is no key there.
    if <[u8; 32]>::from(Sha256::digest(&secret)) != secret_sha256 || made_for != purpose {
        return Err(SessionFailure::InvalidToken);
    }
    // A suspended or erased tenant's keys open nothing.
    match require_active_tenant(ports, tenant).await {
        Ok(_) => {}
        Err(
            CommandError::TenantSuspended
            | CommandError::NotFound(_)
            | CommandError::Tenant(custodia_domain::identity::tenant::TenantError::Closed),
        ) => return Err(SessionFailure::Revoked),
        Err(other) => return Err(other.into()),
    }
    let permissions = within_creator(ports, tenant, key_id, permissions).await?;
    Ok((key_id, tenant, permissions))
}

/// Who minted a key (the actor of its first event).
pub(crate) async fn creator_of(ports: &Ports, key_id: Uuid) -> Result<Actor, CommandError> {
    let first = ports
        .store
        .read_stream(&key_stream(key_id), StreamVersion::EMPTY, 1)
        .await?;
    Ok(first.first().map_or(Actor::System, |e| e.metadata.actor))
}

/// A key acts for the person who minted it: only while they may sign in,
/// and never with more than they hold now (suspending, deleting or
/// demoting them narrows or ends their keys at the next request). A key
/// the platform operator minted keeps what it was given.
async fn within_creator(
    ports: &Ports,
    tenant: TenantId,
    key_id: Uuid,
    permissions: PermissionSet,
) -> Result<PermissionSet, SessionFailure> {
    let Actor::User(creator) = creator_of(ports, key_id).await? else {
        return Ok(permissions);
    };
    match super::credentials::user_status_in(ports, tenant, creator).await {
        Ok(UserStatus::Active | UserStatus::Invited) => {}
        Ok(_) | Err(CommandError::NotFound(_)) => return Err(SessionFailure::Revoked),
        Err(other) => return Err(other.into()),
    }
    let (memberships, _) =
        load::<Memberships>(&*ports.store, &super::memberships_stream(tenant)).await?;
    let held = memberships.permissions_of(creator);
    let kept: Vec<Permission> = permissions.iter().filter(|p| held.contains(*p)).collect();
    Ok(PermissionSet::from(&kept[..]))
}

/// Records a key's use (best effort: a failure does not refuse the
/// request) and returns the service's principal.
async fn record_use(
    ports: &Ports,
    key_id: Uuid,
    tenant: TenantId,
    permissions: PermissionSet,
    at: Timestamp,
) -> Principal {
    let principal = Principal::Service {
        tenant,
        permissions,
    };
    let caller = Caller::internal(principal.clone(), Actor::Service(key_id), "api_key");
    let used = ApiKeyCommand::RecordUse { at };
    let authorized = by_own_secret(&caller, tenant);
    let _ = decide_and_append::<ApiKey>(ports, &authorized, &key_stream(key_id), &used).await;
    principal
}
