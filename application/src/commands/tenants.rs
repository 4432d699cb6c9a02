//! Tenant and role commands.

use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::membership::{MembershipCommand, Memberships, RoleRef};
use custodia_domain::identity::tenant::{
    SettingsChange, Tenant, TenantCommand, TenantName, TenantSettings,
};
use custodia_domain::rbac::{BuiltInRole, Denied, Permission};
use custodia_domain::{CommandId, EventId, TenantId};
use uuid::Uuid;

use super::authorized::{as_platform_operator, authorize};
use super::users::{NewUser, Registration};
use super::{
    decide_and_append, execute, load, memberships_stream, stream, Caller, CommandError, Outcome,
    Plan, Ports, PLAN_RETRIES,
};

pub(crate) fn tenant_stream(tenant: TenantId) -> custodia_domain::StreamId {
    stream("tenant", tenant.as_uuid())
}

impl Caller {
    /// The same caller for one part of a command that writes several
    /// streams: the part's command id is derived from the caller's (and
    /// the part's label), so a retried request is recognised part by part.
    pub(crate) fn step(&self, label: &str) -> Caller {
        let derived = Uuid::new_v5(&self.command_id.as_uuid(), label.as_bytes());
        Caller {
            command_id: CommandId::from_uuid(derived).expect("a v5 UUID is never nil"),
            // The expected version names the command's target stream, not
            // the other streams its parts touch.
            expected_version: None,
            ..self.clone()
        }
    }
}

/// Refuses commands in a tenant that does not exist or is suspended.
pub(crate) async fn require_active_tenant(
    ports: &Ports,
    tenant: TenantId,
) -> Result<Tenant, CommandError> {
    let (state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
    match state {
        Tenant::Absent => Err(CommandError::NotFound("tenant")),
        Tenant::Suspended { .. } => Err(CommandError::TenantSuspended),
        Tenant::Closed => Err(custodia_domain::identity::tenant::TenantError::Closed.into()),
        active => Ok(active),
    }
}

/// A new tenant with its first owner. Platform operator only.
#[derive(Debug, Clone)]
pub struct CreateTenant {
    pub tenant: TenantId,
    pub name: String,
    pub settings: TenantSettings,
    pub owner: NewUser,
}

pub async fn create_tenant(
    ports: &Ports,
    caller: &Caller,
    command: CreateTenant,
) -> Result<Outcome, CommandError> {
    let tenant = command.tenant;
    let authorized = as_platform_operator(caller, tenant)?;
    let name = TenantName::parse(&command.name)?;
    // Plaintext kept in the log for good (docs/privacy.md).
    custodia_domain::personal::refuse_personal_data("tenant name", name.as_str())?;
    if let Some(outcome) = Plan::committed(ports, caller, "owner-role").await? {
        return Ok(outcome);
    }
    let create = TenantCommand::Create {
        name,
        settings: command.settings.clone(),
    };
    let owner = command.owner.user;
    let registration =
        Registration::prepare(ports, tenant, command.owner, &command.settings).await?;
    let grant = MembershipCommand::Grant {
        user: owner,
        role: RoleRef::BuiltIn(BuiltInRole::Owner),
    };
    // The tenant, its owner and, last, the owner's role, together.
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        plan.part::<Tenant>(
            "tenant",
            &tenant_stream(tenant),
            EventId::generate(),
            |state| Ok(state.decide(&create)?),
        )
        .await?;
        registration.plan(&mut plan, tenant).await?;
        plan.part::<Memberships>(
            "owner-role",
            &memberships_stream(tenant),
            EventId::generate(),
            |m| Ok(m.decide(&grant)?),
        )
        .await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("owner-role"));
        }
    }
    Err(super::plan_gave_up())
}

/// Changes some of the tenant's settings (a full `TenantSettings` changes
/// them all). The change is applied to the settings as they are when the
/// command is decided, so concurrent changes of different settings both
/// hold. Needs `tenant.update`.
pub async fn update_tenant_settings(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    change: impl Into<SettingsChange>,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::TenantUpdate, None)?;
    let change = change.into();
    // Purpose ids are plaintext kept in the log for good (docs/privacy.md).
    let new_purposes = change.consent_purposes.iter().flatten();
    for purpose in new_purposes.chain(&change.add_consent_purposes) {
        custodia_domain::personal::refuse_personal_data("consent purpose", &purpose.id)?;
    }
    execute::<Tenant>(
        ports,
        &authorized,
        &tenant_stream(tenant),
        EventId::generate(),
        |state| {
            let current = state.settings().ok_or(CommandError::NotFound("tenant"))?;
            let settings = change.applied_to(current)?;
            Ok(state.decide(&TenantCommand::UpdateSettings { settings })?)
        },
    )
    .await
}

/// Suspends (`suspend = true`) or reactivates the tenant.
pub async fn set_tenant_suspended(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    suspend: bool,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::TenantSuspend, None)?;
    let command = if suspend {
        TenantCommand::Suspend
    } else {
        TenantCommand::Reactivate
    };
    decide_and_append::<Tenant>(ports, &authorized, &tenant_stream(tenant), &command).await
}

/// Grants, revokes, removes members, defines custom roles, and keeps
/// groups (ADR 0012). Nobody hands out a permission they do not hold; the
/// last owner stays.
pub async fn change_memberships(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    command: MembershipCommand,
) -> Result<Outcome, CommandError> {
    // Tenant isolation, then the permission, before anything is read.
    let needed = match &command {
        MembershipCommand::DefineRole { .. } => Permission::RoleDefine,
        MembershipCommand::CreateGroup { .. }
        | MembershipCommand::ChangeGroup { .. }
        | MembershipCommand::DeleteGroup { .. } => Permission::GroupManage,
        _ => Permission::RoleGrant,
    };
    let authorized = authorize(caller, tenant, needed, None)?;
    require_active_tenant(ports, tenant).await?;
    match &command {
        // Roles go to users of this tenant only.
        MembershipCommand::Grant { user, .. } => {
            super::credentials::require_user(ports, tenant, *user).await?
        }
        // Roles of a deleted user may still be taken away.
        MembershipCommand::Revoke { user, .. } | MembershipCommand::RemoveMember { user } => {
            super::credentials::user_status_in(ports, tenant, *user).await?;
        }
        // Role names are plaintext kept in the log for good.
        MembershipCommand::DefineRole { name, .. } => {
            custodia_domain::personal::refuse_personal_data("role name", name.as_str())?
        }
        // Pausing and resuming belong to a user's suspension and reactivation.
        MembershipCommand::Pause { .. } | MembershipCommand::Resume { .. } => {
            return Err(Denied::Missing(Permission::UserSuspend).into())
        }
        // Members join a group if they are users of this tenant, not deleted.
        MembershipCommand::CreateGroup { members: add, .. }
        | MembershipCommand::ChangeGroup { add, .. } => {
            for member in add {
                super::credentials::require_user(ports, tenant, *member).await?;
            }
        }
        MembershipCommand::DeleteGroup { .. }
        | MembershipCommand::GrantRoleToGroup { .. }
        | MembershipCommand::RevokeRoleFromGroup { .. } => {}
    }
    // The aggregate keeps an active owner (a paused one cannot act), in
    // the same decision as the change, so concurrent changes cannot both
    // pass it.
    let principal = caller.principal.clone();
    execute::<Memberships>(
        ports,
        &authorized,
        &memberships_stream(tenant),
        EventId::generate(),
        |state| {
            state.authorize(&principal, tenant, &command)?;
            Ok(state.decide(&command)?)
        },
    )
    .await
}

/// The tenant's name (`None` for a tenant that does not exist or was
/// erased), for what Custodia writes to its users.
pub async fn tenant_name(ports: &Ports, tenant: TenantId) -> Result<Option<String>, CommandError> {
    let (state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
    Ok(match state {
        Tenant::Active { name, .. } | Tenant::Suspended { name, .. } => {
            Some(name.as_str().to_owned())
        }
        Tenant::Absent | Tenant::Closed => None,
    })
}

pub(crate) fn slug_stream(
    slug: &custodia_domain::identity::tenant::TenantSlug,
) -> custodia_domain::StreamId {
    /// The namespace of slug claims' stream ids.
    const SLUGS: Uuid = Uuid::from_u128(0x5c1a_6e00_7e4a_4a5e_9c0d_1d5e_7a6b_0013);
    stream(
        "tenant_slug",
        Uuid::new_v5(&SLUGS, slug.as_str().as_bytes()),
    )
}

/// Gives the tenant a slug for people, unique across the platform
/// (ADR 0013). Needs `tenant.update`. The claim of the new slug, the
/// tenant's holder stream naming it and the release of the slug the holder
/// named before go in one append on the platform chain (a tenant's own
/// concurrent changes conflict on its holder and plan again); then the
/// tenant's chain records it. A stop between the two leaves the tenant's
/// record behind the holder: sign-ins follow the holder, and the next
/// change records it.
pub async fn set_tenant_slug(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    slug: &str,
) -> Result<Outcome, CommandError> {
    use custodia_domain::identity::slug_claim::{
        SlugClaim, SlugClaimCommand, SlugClaimError, SlugHolder, SlugHolderCommand,
    };
    use custodia_domain::identity::tenant::TenantSlug;
    let slug = TenantSlug::parse(slug)?;
    let authorized = authorize(caller, tenant, Permission::TenantUpdate, None)?;
    let Tenant::Active { slug: recorded, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended);
    };
    let holder = tenant.as_uuid();
    let taken =
        |SlugClaimError::Taken| CommandError::Conflict("the tenant slug is taken".to_owned());
    let claimer = caller.step("slug");
    let platform =
        super::authorized::claim_on_platform(&claimer, tenant, Permission::TenantUpdate)?;
    let mut claimed = false;
    for _ in 0..=super::PLAN_RETRIES {
        let mut plan = Plan::new(ports, &platform);
        let hold = SlugHolderCommand::Hold { slug: slug.clone() };
        let (held, _) = plan
            .part::<SlugHolder>(
                "slug-holder",
                &slug_holder_stream(tenant),
                EventId::generate(),
                |h| Ok(h.decide(&hold).unwrap_or_default()),
            )
            .await?;
        let claim = SlugClaimCommand::Claim { tenant: holder };
        plan.part::<SlugClaim>(
            "slug-claim",
            &slug_stream(&slug),
            EventId::generate(),
            |c| c.decide(&claim).map_err(taken),
        )
        .await?;
        // The slug it replaces: the holder's (or, for a tenant that set
        // one before holders existed, the tenant's record).
        let previous = held.slug().cloned().or_else(|| recorded.clone());
        if let Some(previous) = previous.filter(|p| *p != slug) {
            let release = SlugClaimCommand::Release { tenant: holder };
            plan.part::<SlugClaim>(
                "slug-release",
                &slug_stream(&previous),
                EventId::generate(),
                |c| c.decide(&release).map_err(taken),
            )
            .await?;
        }
        if plan.commit().await?.is_some() {
            claimed = true;
            break;
        }
    }
    if !claimed {
        return Err(super::plan_gave_up());
    }
    // What the holder names now (a concurrent change may have followed
    // this one): the record follows it.
    let (held, _) = load::<SlugHolder>(&*ports.store, &slug_holder_stream(tenant)).await?;
    let slug = held.slug().cloned().unwrap_or(slug);
    let set = TenantCommand::SetSlug { slug };
    super::execute::<Tenant>(
        ports,
        &authorized,
        &tenant_stream(tenant),
        EventId::generate(),
        |state| Ok(state.decide(&set)?),
    )
    .await
}

/// The stream on the platform chain naming the slug `tenant` holds.
pub(crate) fn slug_holder_stream(tenant: TenantId) -> custodia_domain::StreamId {
    stream("tenant_slug_holder", tenant.as_uuid())
}

/// The tenant `text` names: its id, or its slug (only a slug the tenant
/// recorded, not one merely claimed). `None` for neither.
pub async fn resolve_tenant(ports: &Ports, text: &str) -> Result<Option<TenantId>, CommandError> {
    use custodia_domain::identity::slug_claim::SlugClaim;
    use custodia_domain::identity::tenant::TenantSlug;
    let text = text.trim();
    if let Ok(id) = text.parse::<TenantId>() {
        return Ok(Some(id));
    }
    let Ok(slug) = TenantSlug::parse(&text.to_ascii_lowercase()) else {
        return Ok(None);
    };
    let (claim, _) = load::<SlugClaim>(&*ports.store, &slug_stream(&slug)).await?;
    let SlugClaim::ClaimedBy(holder) = claim else {
        return Ok(None);
    };
    let Ok(tenant) = TenantId::from_uuid(holder) else {
        return Ok(None);
    };
    // The slug the tenant holds now (a claim alone, left by a stop, names
    // nobody); a tenant that set its slug before holders existed has only
    // its record.
    let (held, _) = load::<custodia_domain::identity::slug_claim::SlugHolder>(
        &*ports.store,
        &slug_holder_stream(tenant),
    )
    .await?;
    let (state, _) = load::<Tenant>(&*ports.store, &tenant_stream(tenant)).await?;
    let current = match (held.slug(), state) {
        (_, Tenant::Absent | Tenant::Closed) => None,
        (Some(held), _) => Some(held.clone()),
        (None, Tenant::Active { slug, .. } | Tenant::Suspended { slug, .. }) => slug,
    };
    Ok(match current {
        Some(s) if s == slug => Some(tenant),
        _ => None,
    })
}
