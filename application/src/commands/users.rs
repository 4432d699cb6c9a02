//! User commands. Personal fields are sealed under the user's own key,
//! bound to the event that carries them, before the aggregate sees them.

use std::collections::BTreeMap;

use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::email_claim::{EmailClaim, EmailClaimCommand, EmailClaimError};
use custodia_domain::identity::link_token::LinkPurpose;
use custodia_domain::identity::membership::{MembershipCommand, Memberships};
use custodia_domain::identity::session::RevocationReason;
use custodia_domain::identity::user::{SealedProfile, User, UserCommand, UserEvent};
use custodia_domain::personal::{BlindIndex, Email, FieldContext, SealedField};
use custodia_domain::rbac::Permission;
use custodia_domain::{ChainId, EventId, StreamId, TenantId, Timestamp};
use uuid::Uuid;

use super::authorized::{authorize, authorize_on_user};
use super::tenants::require_active_tenant;
use super::{execute, stream, Caller, CommandError, Outcome, Plan, Ports, PLAN_RETRIES};
use crate::personal_data::PersonalData;

/// A user to register or invite. The id is chosen by the caller (UUIDv7),
/// so a retried request names the same user. `Debug` shows only the id.
#[derive(Clone, Default)]
pub struct NewUser {
    pub user: Uuid,
    pub email: String,
    pub profile: Profile,
    pub invited: bool,
    /// A first password (needs `credential.manage` too), checked against
    /// the tenant's policy before anything is written.
    pub password: Option<String>,
    /// The address is known to be the user's (an identity provider or an
    /// operator vouches for it): verified at once, and no link is sent.
    /// Otherwise an invited user gets an invitation link and anyone else
    /// a verification link (ADR 0013).
    pub address_vouched: bool,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The personal fields of a profile, in plaintext, on their way in or out.
/// `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Profile(<redacted>)")
    }
}

pub(crate) fn user_stream(user: Uuid) -> StreamId {
    stream("user", user)
}

/// The blind index of an email address: the one definition of its purpose,
/// shared by registration, email changes and login.
pub async fn email_index(
    ports: &Ports,
    tenant: TenantId,
    email: &Email,
) -> Result<BlindIndex, CommandError> {
    Ok(ports
        .vault
        .blind_index(tenant, "email", email.as_str().as_bytes())
        .await?)
}

pub(crate) fn claim_stream(tenant: TenantId, index: &BlindIndex) -> StreamId {
    stream("email_claim", Uuid::new_v5(&tenant.as_uuid(), &index.0))
}

/// Seals one field of `user`'s event `event_id`.
async fn seal(
    vault: &dyn PersonalData,
    tenant: TenantId,
    user: Uuid,
    event_id: EventId,
    field: &str,
    value: &[u8],
) -> Result<SealedField, CommandError> {
    let stream = user_stream(user);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field,
    };
    Ok(vault.seal(user, &context, value).await?)
}

/// The attribute an identity provider's id for the user is kept under
/// (SCIM's `externalId`): sealed with the others, and blind-indexed.
pub const EXTERNAL_ID: &str = "externalId";

/// The blind index of an identity provider's id for a user (case-exact).
pub async fn external_id_index(
    vault: &dyn PersonalData,
    tenant: TenantId,
    external_id: &str,
) -> Result<BlindIndex, CommandError> {
    Ok(vault
        .blind_index(tenant, "external_id", external_id.as_bytes())
        .await?)
}

async fn seal_profile(
    vault: &dyn PersonalData,
    tenant: TenantId,
    user: Uuid,
    event_id: EventId,
    profile: &Profile,
) -> Result<SealedProfile, CommandError> {
    let mut sealed = SealedProfile::default();
    if let Some(external_id) = profile.attributes.get(EXTERNAL_ID) {
        sealed.external_id = Some(external_id_index(vault, tenant, external_id).await?);
    }
    if let Some(name) = &profile.display_name {
        sealed.display_name = Some(
            seal(
                vault,
                tenant,
                user,
                event_id,
                "display_name",
                name.as_bytes(),
            )
            .await?,
        );
    }
    if let Some(phone) = &profile.phone {
        sealed.phone = Some(seal(vault, tenant, user, event_id, "phone", phone.as_bytes()).await?);
    }
    if !profile.attributes.is_empty() {
        let json = serde_json::to_vec(&profile.attributes).expect("a string map serialises");
        sealed.attributes = Some(seal(vault, tenant, user, event_id, "attributes", &json).await?);
    }
    Ok(sealed)
}

fn check_profile(profile: &Profile) -> Result<(), CommandError> {
    use custodia_domain::InvalidValue;
    let text_ok =
        |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
    if !profile
        .display_name
        .as_deref()
        .is_none_or(|n| !n.trim().is_empty() && text_ok(n, 200))
    {
        return Err(InvalidValue {
            field: "display name",
            rule: "must be 1-200 characters without control characters",
        }
        .into());
    }
    if !profile.phone.as_deref().is_none_or(|p| {
        p.len() <= 32
            && p.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c))
            && p.chars().any(|c| c.is_ascii_digit())
    }) {
        return Err(InvalidValue {
            field: "phone",
            rule: "must be digits with optional + - ( ) . and spaces, at most 32",
        }
        .into());
    }
    if profile.attributes.len() > 64
        || profile
            .attributes
            .iter()
            .any(|(k, v)| k.is_empty() || !text_ok(k, 64) || !text_ok(v, 1024))
    {
        return Err(InvalidValue {
            field: "attributes",
            rule: "at most 64 keys of 1-64 characters, values up to 1024",
        }
        .into());
    }
    Ok(())
}

/// Claims an email address for `user` as a part of `plan`, or refuses it as taken.
async fn claim_email(
    plan: &mut Plan<'_>,
    tenant: TenantId,
    index: &BlindIndex,
    user: Uuid,
) -> Result<(), CommandError> {
    let command = EmailClaimCommand::Claim { user };
    plan.part::<EmailClaim>(
        "email",
        &claim_stream(tenant, index),
        EventId::generate(),
        |claim| {
            claim
                .decide(&command)
                .map_err(|EmailClaimError::Taken| CommandError::EmailTaken)
        },
    )
    .await
    .map(drop)
}

/// Seals `email` for `user`'s event `event_id`; returns it with its index.
pub(crate) async fn seal_email(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    email: &Email,
    event_id: EventId,
) -> Result<(SealedField, BlindIndex), CommandError> {
    let index = email_index(ports, tenant, email).await?;
    let sealed = seal(
        &*ports.vault,
        tenant,
        user,
        event_id,
        "email",
        email.as_str().as_bytes(),
    )
    .await?;
    Ok((sealed, index))
}

/// A registration checked and sealed, ready to be planned (as often as a
/// conflict asks): the address claim, the user, and a first password.
pub(crate) struct Registration {
    user: Uuid,
    index: BlindIndex,
    event_id: EventId,
    command: UserCommand,
    password: Option<super::credentials::NewPassword>,
    /// The invitation or verification link and its message, unless the
    /// address is vouched for.
    link: Option<super::account::PreparedLink>,
}

impl Registration {
    /// Checks everything (address, profile, password policy), then seals
    /// and hashes: nothing is written.
    pub(crate) async fn prepare(
        ports: &Ports,
        tenant: TenantId,
        new: NewUser,
        settings: &custodia_domain::identity::tenant::TenantSettings,
    ) -> Result<Registration, CommandError> {
        use custodia_domain::identity::link_token::LinkPurpose;
        let email = Email::parse(&new.email)?;
        check_profile(&new.profile)?;
        if let Some(password) = &new.password {
            custodia_domain::identity::credential::check_password_policy(
                password,
                settings.password_min_length,
            )?;
        }
        let link = match (new.address_vouched, new.invited) {
            (true, _) => None,
            (false, invited) => {
                let purpose = if invited {
                    LinkPurpose::Invitation
                } else {
                    LinkPurpose::Verification
                };
                let lifetime = settings.flows.lifetime_micros(purpose);
                let at = Timestamp::now();
                Some(
                    super::account::PreparedLink::mint(
                        ports, tenant, new.user, purpose, &email, lifetime, at,
                    )
                    .await?,
                )
            }
        };
        let user = new.user;
        let event_id = EventId::generate();
        let (sealed, index) = seal_email(ports, tenant, user, &email, event_id).await?;
        let command = UserCommand::Register {
            email: sealed,
            email_index: index,
            profile: seal_profile(&*ports.vault, tenant, user, event_id, &new.profile).await?,
            invited: new.invited,
            email_verified: new.address_vouched,
        };
        let password = match &new.password {
            Some(password) => {
                Some(super::credentials::NewPassword::hash(ports, tenant, user, password).await?)
            }
            None => None,
        };
        Ok(Registration {
            user,
            index,
            event_id,
            command,
            password,
            link,
        })
    }

    /// Adds the claim, the password and, last, the user (part `register`)
    /// to `plan`.
    pub(crate) async fn plan(
        &self,
        plan: &mut Plan<'_>,
        tenant: TenantId,
    ) -> Result<(), CommandError> {
        claim_email(plan, tenant, &self.index, self.user).await?;
        if let Some(password) = &self.password {
            password.plan(plan, self.user).await?;
        }
        if let Some(link) = &self.link {
            link.plan(plan).await?;
        }
        plan.part::<User>(
            "register",
            &user_stream(self.user),
            self.event_id,
            |state| Ok(state.decide(&self.command)?),
        )
        .await?;
        Ok(())
    }
}

/// Registers (or invites) a user. Needs `user.create`, and
/// `credential.manage` when a first password is given. Everything is
/// checked (the address, the profile, the password against the tenant's
/// policy) before anything is written.
pub async fn register_user(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    new: NewUser,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::UserCreate, None)?;
    if new.password.is_some() {
        caller
            .principal
            .authorize(tenant, Permission::CredentialManage, None)?;
    }
    let custodia_domain::identity::tenant::Tenant::Active { settings, .. } =
        require_active_tenant(ports, tenant).await?
    else {
        return Err(CommandError::TenantSuspended);
    };
    if let Some(outcome) = Plan::committed(ports, caller, "register").await? {
        return Ok(outcome);
    }
    // The claim, the user, the password and the link, together or not at all.
    let registration = Registration::prepare(ports, tenant, new, &settings).await?;
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        registration.plan(&mut plan, tenant).await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("register"));
        }
    }
    Err(super::plan_gave_up())
}

pub async fn update_profile(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    profile: Profile,
) -> Result<Outcome, CommandError> {
    check_profile(&profile)?;
    let authorized = authorize_on_user(ports, caller, tenant, Permission::UserUpdate, user).await?;
    require_active_tenant(ports, tenant).await?;
    let event_id = EventId::generate();
    let command = UserCommand::UpdateProfile {
        profile: seal_profile(&*ports.vault, tenant, user, event_id, &profile).await?,
    };
    execute::<User>(ports, &authorized, &user_stream(user), event_id, |state| {
        Ok(state.decide(&command)?)
    })
    .await
}

/// Changes a user's email. An active (or suspended) user's new address
/// is pending until they follow the link sent to it: the current address
/// stays their sign-in address, is told of the request, and is replaced
/// only by [`super::account::verify_email`]. An invited user's address
/// changes at once (the invitation goes to the new one). The new address
/// is claimed at the request, so nobody else takes it meanwhile; asking
/// for the current address again withdraws a pending change.
pub async fn change_email(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    email: &str,
) -> Result<Outcome, CommandError> {
    change_address(ports, caller, tenant, user, email, false).await
}

/// [`change_email`] for an address someone vouches for (an identity
/// provider over SCIM): changed and verified at once, no link sent.
pub async fn change_email_vouched(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    email: &str,
) -> Result<Outcome, CommandError> {
    change_address(ports, caller, tenant, user, email, true).await
}

async fn change_address(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    email: &str,
    vouched: bool,
) -> Result<Outcome, CommandError> {
    let email = Email::parse(email)?;
    let authorized = authorize_on_user(ports, caller, tenant, Permission::UserUpdate, user).await?;
    // An address is how a password is reset: changing someone else's is
    // changing their credentials (a user may change their own).
    caller
        .principal
        .authorize(tenant, Permission::CredentialManage, Some(user))?;
    let custodia_domain::identity::tenant::Tenant::Active { settings, .. } =
        require_active_tenant(ports, tenant).await?
    else {
        return Err(CommandError::TenantSuspended);
    };
    if let Some(outcome) = Plan::committed(ports, caller, "change").await? {
        return Ok(outcome);
    }
    let status = super::credentials::user_status_in(ports, tenant, user).await?;
    let invited = status == custodia_domain::identity::user::UserStatus::Invited;
    // Only a sign-in address in use is kept until the new one is proved.
    let pending = !vouched && !invited;
    let purpose = if invited {
        LinkPurpose::Invitation
    } else {
        LinkPurpose::Verification
    };
    let at = Timestamp::now();
    let link = if vouched {
        None
    } else {
        let lifetime = settings.flows.lifetime_micros(purpose);
        let link =
            super::account::PreparedLink::mint(ports, tenant, user, purpose, &email, lifetime, at);
        let link = link.await?;
        // Refused now when no more links may go to the user this hour,
        // before the address is looked at: past the bound, a taken and a
        // free address answer alike. (Withdrawing a pending change, or
        // asking again for the same, sends nothing and is not refused.)
        let asked = email_index(ports, tenant, &email).await?;
        let (state, _) = super::load::<User>(&*ports.store, &user_stream(user)).await?;
        let sends_nothing = matches!(
            state,
            User::Present { email_index, pending_email, .. }
                if email_index == asked || pending_email == Some(asked)
        );
        if !sends_nothing {
            link.check_bound(ports).await?;
        }
        Some(link)
    };
    // The current address is told that a change was asked for (with no
    // word of the new one).
    let current = match pending {
        true => personal_record(ports, tenant, user).await?.email,
        false => None,
    };
    let notice = match current {
        Some(current) => {
            let current = Email::parse(&current)?;
            let kind = custodia_domain::identity::message::MessageKind::AddressChangeNotice;
            let notice = super::account::PreparedMessage::seal(
                ports, tenant, user, kind, &current, None, at,
            );
            Some(notice.await?)
        }
        _ => None,
    };
    let event_id = EventId::generate();
    let (sealed, index) = seal_email(ports, tenant, user, &email, event_id).await?;
    let command = if pending {
        UserCommand::RequestEmailChange {
            email: sealed,
            email_index: index,
        }
    } else {
        UserCommand::ChangeEmail {
            email: sealed,
            email_index: index,
        }
    };
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        claim_email(&mut plan, tenant, &index, user).await?;
        // The addresses the change replaces, read now (a concurrent change
        // since would conflict at the commit).
        let chain = Some(ChainId::Tenant(tenant));
        let (state, version) =
            super::load_in::<User>(&*ports.store, &user_stream(user), chain).await?;
        if let Some(expected) = caller.expected_version.filter(|e| *e != version) {
            return Err(CommandError::StaleVersion {
                expected,
                actual: version,
            });
        }
        let events = state.decide(&command)?;
        if let User::Present {
            email_index: current,
            pending_email,
            ..
        } = state
        {
            if let Some(replaced) = pending_email.filter(|p| *p != index) {
                plan_release(&mut plan, "release-pending", tenant, user, &replaced).await?;
            }
            if !pending && current != index {
                plan_release(&mut plan, "release", tenant, user, &current).await?;
            }
        }
        let (_, read) = plan
            .part::<User>("change", &user_stream(user), event_id, |state| {
                let mut events = state.decide(&command)?;
                if vouched && !events.is_empty() {
                    events.push(UserEvent::EmailVerified { email_index: index });
                }
                Ok(events)
            })
            .await?;
        if read != version {
            continue; // changed between the two reads: plan again
        }
        let asked = |e: &UserEvent| matches!(e, UserEvent::EmailChangeRequested { .. });
        let changed = |e: &UserEvent| matches!(e, UserEvent::EmailChanged { .. });
        let cancelled = |e: &UserEvent| matches!(e, UserEvent::EmailChangeCancelled { .. });
        if events.iter().any(changed) {
            // Every link the old address holds loses its purpose; issuing
            // the new one revokes the live one of its own purpose.
            let others: Vec<LinkPurpose> = LinkPurpose::ALL
                .into_iter()
                .filter(|p| link.is_none() || *p != purpose)
                .collect();
            super::account::plan_revoke_links(&mut plan, user, &others).await?;
        } else if events.iter().any(cancelled) {
            let pending_link = [LinkPurpose::Verification];
            super::account::plan_revoke_links(&mut plan, user, &pending_link).await?;
        }
        if events.iter().any(|e| changed(e) || asked(e)) {
            if let Some(link) = &link {
                link.plan(&mut plan).await?;
            }
        }
        if events.iter().any(asked) {
            if let Some(notice) = &notice {
                notice.plan(&mut plan).await?;
            }
        }
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("change"));
        }
    }
    Err(super::plan_gave_up())
}

/// Releases `user`'s claim on the address `index` names, as the part
/// `label` of `plan` (nothing when it is not theirs).
pub(crate) async fn plan_release(
    plan: &mut Plan<'_>,
    label: &str,
    tenant: TenantId,
    user: Uuid,
    index: &BlindIndex,
) -> Result<(), CommandError> {
    let release = EmailClaimCommand::Release { user };
    plan.part::<EmailClaim>(
        label,
        &claim_stream(tenant, index),
        EventId::generate(),
        |claim| Ok(claim.decide(&release).unwrap_or_default()),
    )
    .await
    .map(drop)
}

/// Checks, without writing anything, what one request (a SCIM PUT or
/// PATCH, which becomes several commands) is about to ask of `user`: the
/// profile, a new address (free, or already theirs) and a new password
/// (the tenant's policy). The commands check again; this lets an edge
/// refuse the whole request before its first command is written.
pub async fn check_changes(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    profile: &Profile,
    email: &str,
    password: Option<&str>,
) -> Result<(), CommandError> {
    check_profile(profile)?;
    let email = Email::parse(email)?;
    let index = email_index(ports, tenant, &email).await?;
    let (claim, _) =
        super::load::<EmailClaim>(&*ports.store, &claim_stream(tenant, &index)).await?;
    if matches!(claim, EmailClaim::ClaimedBy(owner) if owner != user) {
        return Err(CommandError::EmailTaken);
    }
    if let Some(password) = password {
        let custodia_domain::identity::tenant::Tenant::Active { settings, .. } =
            require_active_tenant(ports, tenant).await?
        else {
            return Err(CommandError::TenantSuspended);
        };
        custodia_domain::identity::credential::check_password_policy(
            password,
            settings.password_min_length,
        )?;
    }
    Ok(())
}

/// The status changes that need no personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Activate,
    Suspend,
    Reactivate,
    Delete,
}

pub async fn change_user_status(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    change: StatusChange,
) -> Result<Outcome, CommandError> {
    let (permission, command) = match change {
        StatusChange::Activate => (Permission::UserUpdate, UserCommand::Activate),
        StatusChange::Suspend => (Permission::UserSuspend, UserCommand::Suspend),
        StatusChange::Reactivate => (Permission::UserSuspend, UserCommand::Reactivate),
        StatusChange::Delete => (Permission::UserDelete, UserCommand::Delete),
    };
    // Only activation is self-service (the permission's own rule); every
    // other change of status needs the permission even on oneself.
    if change != StatusChange::Activate {
        caller.principal.authorize(tenant, permission, None)?;
    }
    let authorized = authorize_on_user(ports, caller, tenant, permission, user).await?;
    require_active_tenant(ports, tenant).await?;
    let disables = matches!(change, StatusChange::Suspend | StatusChange::Delete);
    // The user's access is paused or resumed in the memberships in the same
    // append: the aggregate refuses to pause the last active owner, and two
    // owners suspending each other conflict there.
    let access = if disables {
        MembershipCommand::Pause { user }
    } else {
        MembershipCommand::Resume { user }
    };
    if let Some(outcome) = Plan::committed(ports, caller, "status").await? {
        return Ok(outcome);
    }
    // The new status and the end of the user's sessions, together.
    let at = Timestamp::now();
    for _ in 0..=PLAN_RETRIES {
        // The status event causes the rest (the sessions ended, the
        // access paused), and each of them names it.
        let status_event = EventId::generate();
        let mut plan = Plan::new(ports, &authorized);
        plan.caused_by(status_event);
        if disables {
            let reason = RevocationReason::UserDisabled;
            super::sessions::plan_end_sessions(&mut plan, user, None, reason, at).await?;
        }
        // Links lose their purpose: every one when the user may no longer
        // sign in, the invitation when someone activates them.
        let obsolete: &[LinkPurpose] = match change {
            StatusChange::Suspend | StatusChange::Delete => &LinkPurpose::ALL,
            StatusChange::Activate => &[LinkPurpose::Invitation],
            StatusChange::Reactivate => &[],
        };
        super::account::plan_revoke_links(&mut plan, user, obsolete).await?;
        // A deleted user also leaves every group (a suspended one stays).
        let leaves = change == StatusChange::Delete;
        plan.part::<Memberships>(
            "access",
            &super::memberships_stream(tenant),
            EventId::generate(),
            |m| {
                let mut events = m.decide(&access)?;
                if leaves {
                    events.extend(m.leave_groups(user));
                }
                Ok(events)
            },
        )
        .await?;
        let (state, version) = plan
            .part::<User>("status", &user_stream(user), status_event, |state| {
                Ok(state.decide(&command)?)
            })
            .await?;
        if let Some(expected) = caller.expected_version.filter(|e| *e != version) {
            return Err(CommandError::StaleVersion {
                expected,
                actual: version,
            });
        }
        // A deleted user's address is free at once (RFC 7644 §3.6: a
        // deleted resource is no conflict), in the same append: the user
        // read above is the one whose address is released.
        // So is an address a change of theirs was waiting on.
        if let (StatusChange::Delete, User::Present { email_index, .. }) = (change, &state) {
            plan_release(&mut plan, "address", tenant, user, email_index).await?;
            if let Some(pending) = state.pending_email() {
                plan_release(&mut plan, "pending-address", tenant, user, &pending).await?;
            }
        }
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("status"));
        }
    }
    Err(super::plan_gave_up())
}

/// A user's personal data as the log holds it now. A field whose key was
/// erased reads as `None`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PersonalRecord {
    pub email: Option<String>,
    /// The address a requested change waits on, until it is verified.
    pub pending_email: Option<String>,
    pub profile: Profile,
}

impl std::fmt::Debug for PersonalRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalRecord(<redacted>)")
    }
}

/// Reads and opens a user's current personal data. Needs
/// `user.read_personal` (or being that user).
pub async fn read_personal_data(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<PersonalRecord, CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::UserReadPersonal, Some(user))?;
    personal_record(ports, tenant, user).await
}

/// The user's personal data, opened, for handlers that already authorised.
pub(crate) async fn personal_record(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
) -> Result<PersonalRecord, CommandError> {
    Ok(user_at(ports, tenant, user, None, true).await?.personal)
}

/// A user as the log held them at a moment: a fold of their stream.
#[derive(Debug, Clone, Default)]
pub struct UserAt {
    /// `User::Absent` before they were registered.
    pub state: User,
    /// Their personal data, opened (empty unless asked to open it).
    pub personal: PersonalRecord,
    /// A sealed field could not be opened: its key is destroyed.
    pub erased: bool,
    /// The user is erased today (whatever the moment asked about).
    pub erased_since: Option<Timestamp>,
    /// The last event folded, and when it was recorded.
    pub last_event: Option<(EventId, Timestamp)>,
}

/// The user's stream folded up to `until` (inclusive; the whole stream
/// when `None`), with their personal data opened when `open`. For handlers
/// that already authorised.
pub(crate) async fn user_at(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    until: Option<Timestamp>,
    open: bool,
) -> Result<UserAt, CommandError> {
    let stream = user_stream(user);
    let events = super::whole_stream(&*ports.store, &stream).await?;
    if events.is_empty() || events[0].chain != ChainId::Tenant(tenant) {
        return Err(CommandError::NotFound("user"));
    }
    // The latest sealed email and profile, and the events that sealed them
    // (their associated data names them); only those are opened.
    let mut email = None;
    let mut pending_email = None;
    let mut profile = None;
    let mut at = UserAt::default();
    for recorded in &events {
        if recorded.event_type.as_str() == "SubjectErased" {
            at.erased_since = Some(recorded.recorded_at);
        }
    }
    for recorded in events
        .iter()
        .take_while(|e| until.is_none_or(|until| e.recorded_at <= until))
    {
        let event = <UserEvent as custodia_domain::aggregate::EventSchema>::from_stored(
            &custodia_domain::aggregate::StoredForm {
                event_type: recorded.event_type.clone(),
                schema_version: recorded.schema_version,
                payload: recorded.payload.clone(),
            },
        )?;
        at.state = std::mem::take(&mut at.state).apply(&event);
        at.last_event = Some((recorded.event_id, recorded.recorded_at));
        match event {
            UserEvent::Registered {
                email: sealed,
                profile: sealed_profile,
                ..
            } => {
                email = Some((recorded.event_id, sealed));
                profile = Some((recorded.event_id, sealed_profile));
            }
            UserEvent::EmailChanged { email: sealed, .. } => {
                email = Some((recorded.event_id, sealed));
                pending_email = None;
            }
            UserEvent::EmailChangeRequested { email: sealed, .. } => {
                pending_email = Some((recorded.event_id, sealed))
            }
            UserEvent::EmailChangeCancelled { .. } => pending_email = None,
            UserEvent::ProfileUpdated {
                profile: sealed_profile,
            } => profile = Some((recorded.event_id, sealed_profile)),
            _ => {}
        }
    }
    if !open {
        return Ok(at);
    }
    if let Some((event_id, sealed)) = email {
        let sealed_at = Sealed {
            ports,
            tenant,
            stream: &stream,
            event_id,
        };
        at.personal.email = sealed_at.open("email", sealed).await?;
        at.erased |= at.personal.email.is_none();
    }
    if let Some((event_id, sealed)) = pending_email {
        let sealed_at = Sealed {
            ports,
            tenant,
            stream: &stream,
            event_id,
        };
        at.personal.pending_email = sealed_at.open("email", sealed).await?;
    }
    if let Some((event_id, sealed)) = profile {
        let sealed_at = Sealed {
            ports,
            tenant,
            stream: &stream,
            event_id,
        };
        let sealed_fields = [sealed.display_name.is_some(), sealed.phone.is_some()];
        at.personal.profile = sealed_at.open_profile(sealed).await?;
        let opened = [
            at.personal.profile.display_name.is_some(),
            at.personal.profile.phone.is_some(),
        ];
        at.erased |= sealed_fields.iter().zip(opened).any(|(s, o)| *s && !o);
    }
    Ok(at)
}

/// Where sealed fields of one event are opened.
struct Sealed<'a> {
    ports: &'a Ports,
    tenant: TenantId,
    stream: &'a StreamId,
    event_id: EventId,
}

impl Sealed<'_> {
    /// The field, opened (`None` once its key is erased).
    async fn open(&self, field: &str, sealed: SealedField) -> Result<Option<String>, CommandError> {
        let context = FieldContext {
            tenant: self.tenant,
            stream: self.stream,
            event_id: self.event_id,
            field,
        };
        let plain = self.ports.vault.open(&context, &sealed).await?;
        Ok(plain.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn open_profile(&self, sealed: SealedProfile) -> Result<Profile, CommandError> {
        let mut profile = Profile::default();
        if let Some(name) = sealed.display_name {
            profile.display_name = self.open("display_name", name).await?;
        }
        if let Some(phone) = sealed.phone {
            profile.phone = self.open("phone", phone).await?;
        }
        if let Some(attributes) = sealed.attributes {
            if let Some(json) = self.open("attributes", attributes).await? {
                profile.attributes = serde_json::from_str(&json).unwrap_or_default();
            }
        }
        Ok(profile)
    }
}
