//! Mutations: one per command of the identity domain, through the same
//! handlers (and so the same authorization) as everything else. Each
//! returns the resulting state, read after the projections have applied the
//! mutation, and its consistency token.
//!
//! One module per area; `Mutation` merges them into the one root type.

mod api_keys;
mod consent;
mod credentials;
mod privacy;
mod roles;
mod sessions;
mod tenants;
mod users;

use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Json, Result, SimpleObject, ID};
use custodia_application::commands::tenants::change_memberships;
use custodia_application::commands::users::{change_user_status, Profile, StatusChange};
use custodia_application::commands::{Caller, Outcome};
use custodia_application::ModelRow;
use custodia_domain::identity::membership::{MembershipCommand, RoleRef};
use custodia_domain::identity::tenant::{ConsentPurpose, SettingsChange};
use custodia_domain::rbac::{Permission, PermissionSet};
use custodia_domain::{LogCursor, TenantId};
use uuid::Uuid;

use super::types::{ConsentChannel, Session, Tenant, User};
use super::{data, error, fail, store_failure, uuid};

/// The root mutation type: every area's mutations.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    tenants::TenantMutations,
    users::UserMutations,
    credentials::CredentialMutations,
    roles::RoleMutations,
    sessions::SessionMutations,
    consent::ConsentMutations,
    api_keys::ApiKeyMutations,
    privacy::PrivacyMutations,
);

fn tenant(ctx: &Context<'_>, id: Option<&ID>) -> Result<TenantId> {
    data(ctx).tenant(id, "tenantId")
}

/// Records what a command wrote and waits (bounded) until the projections
/// have applied it, so the state returned includes it. Returns the token.
async fn settle(ctx: &Context<'_>, cursor: Option<LogCursor>) -> Result<String> {
    let data = data(ctx);
    let token = data.wrote(cursor);
    if let Some(cursor) = cursor {
        data.state
            .projections
            .wait_for(cursor)
            .await
            .map_err(store_failure)?;
    }
    Ok(token)
}

/// The cursor of the append a command id made, for handlers that answer
/// with something other than an [`Outcome`].
async fn written_by(ctx: &Context<'_>, caller: &Caller) -> Result<Option<LogCursor>> {
    let committed = data(ctx)
        .state
        .ports
        .store
        .committed_command(caller.command_id)
        .await
        .map_err(store_failure)?;
    Ok(committed.map(|c| c.appended.cursor))
}

/// The tenant (default: the caller's), the user and a caller for a
/// command on one user.
async fn on_user(
    ctx: &Context<'_>,
    tenant_id: Option<ID>,
    user_id: &ID,
) -> Result<(TenantId, Uuid, Caller)> {
    Ok((
        tenant(ctx, tenant_id.as_ref())?,
        uuid(user_id, "userId")?,
        data(ctx).caller().await?,
    ))
}

fn cursor(outcome: &Outcome) -> Option<LogCursor> {
    outcome.appended.map(|a| a.cursor)
}

/// Waits for the projections to apply what a command wrote (see
/// [`settle`]), then reads the row it changed. Returns the row and the token.
async fn settled_row(
    ctx: &Context<'_>,
    model: &'static str,
    id: Uuid,
    tenant: TenantId,
    cursor: Option<LogCursor>,
) -> Result<(Option<ModelRow>, String)> {
    let token = settle(ctx, cursor).await?;
    Ok((
        data(ctx).row_in(model, &id.to_string(), tenant).await?,
        token,
    ))
}

async fn user_payload(
    ctx: &Context<'_>,
    tenant: TenantId,
    user: Uuid,
    cursor: Option<LogCursor>,
) -> Result<UserPayload> {
    let (row, consistency_token) = settled_row(ctx, "user", user, tenant, cursor).await?;
    Ok(UserPayload {
        user: row.map(User::from_row).transpose()?,
        consistency_token,
    })
}

async fn tenant_payload(
    ctx: &Context<'_>,
    tenant: TenantId,
    cursor: Option<LogCursor>,
) -> Result<TenantPayload> {
    let (row, consistency_token) =
        settled_row(ctx, "tenant", tenant.as_uuid(), tenant, cursor).await?;
    Ok(TenantPayload {
        tenant: row.map(Tenant::from_row).transpose()?,
        consistency_token,
    })
}

/// A user after a command on them.
#[derive(SimpleObject)]
pub struct UserPayload {
    /// The user as the read model shows them once the command applied
    /// (null if it was not applied within the consistency wait).
    pub user: Option<User>,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// A tenant after a command on it.
#[derive(SimpleObject)]
pub struct TenantPayload {
    /// The tenant once the command applied (null if it was not applied
    /// within the consistency wait).
    pub tenant: Option<Tenant>,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// A session after a command on it.
#[derive(SimpleObject)]
pub struct SessionPayload {
    /// The session once the command applied (null if it was not applied
    /// within the consistency wait).
    pub session: Option<Session>,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// The outcome of a command that answers nothing else.
#[derive(SimpleObject)]
pub struct Done {
    /// Whether the command changed anything (false: it was already so).
    pub changed: bool,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// The outcome of ending several sessions.
#[derive(SimpleObject)]
pub struct RevokedSessions {
    /// How many sessions ended (0 or more).
    pub revoked: i32,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// A TOTP enrollment to confirm with a first code.
#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// `otpauth://` URI for an authenticator app; shown once.
    pub provisioning_uri: String,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// Fresh recovery codes.
#[derive(SimpleObject)]
pub struct RecoveryCodes {
    /// Shown once; each works once.
    pub codes: Vec<String>,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// A new API key.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key's id (to list and revoke it).
    pub key_id: ID,
    /// The key (`cst_…`): shown once, never stored in plaintext.
    pub key: String,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

/// A user's profile; every field is personal data, sealed. A field left
/// out is cleared.
#[derive(InputObject)]
pub struct ProfileInput {
    /// The name to show (at most 200 characters).
    pub display_name: Option<String>,
    /// A phone number (at most 32 characters).
    pub phone: Option<String>,
    /// A JSON object of string values.
    pub attributes: Option<Json<BTreeMap<String, String>>>,
}

impl From<ProfileInput> for Profile {
    fn from(input: ProfileInput) -> Self {
        Profile {
            display_name: input.display_name,
            phone: input.phone,
            attributes: input.attributes.map(|a| a.0).unwrap_or_default(),
        }
    }
}

/// A new user of a tenant.
#[derive(InputObject)]
pub struct RegisterUserInput {
    /// The address (unique in the tenant; personal data, sealed).
    pub email: String,
    /// The profile (default: empty).
    pub profile: Option<ProfileInput>,
    /// Invited users start as `invited` until activated.
    #[graphql(default)]
    pub invite: bool,
    /// An initial password (else set it later or let the user do so).
    pub password: Option<String>,
}

/// A purpose users may consent to.
#[derive(InputObject)]
pub struct ConsentPurposeInput {
    /// `[a-z0-9_]`, 1 to 64 characters.
    pub id: String,
    /// The current policy version (1 or more; never lowered).
    pub version: u32,
}

/// A change to some of a tenant's settings: a field left out keeps its
/// value. Bounds as in `TenantSettings`.
#[derive(InputObject, Default)]
pub struct TenantSettingsInput {
    /// The shortest password accepted (8 to 128).
    pub password_min_length: Option<u8>,
    /// Whether every user must sign in with a second factor.
    pub mfa_required: Option<bool>,
    /// Access token lifetime (1 to 15 minutes).
    pub access_token_minutes: Option<u16>,
    /// Refresh token lifetime (1 to 30 days).
    pub refresh_token_days: Option<u16>,
    /// Failed checks before an account locks (1 to 20).
    pub lockout_threshold: Option<u8>,
    /// How long a lock lasts (1 to 1440 minutes).
    pub lockout_minutes: Option<u16>,
    /// The whole list of consent purposes, replacing the current one.
    pub consent_purposes: Option<Vec<ConsentPurposeInput>>,
    /// Purposes to add, or to give a new policy version (by id).
    pub add_consent_purposes: Option<Vec<ConsentPurposeInput>>,
    /// Ids of purposes to remove.
    pub remove_consent_purposes: Option<Vec<String>>,
    /// Days before a deleted user's personal data is erased (1 to 3650).
    pub deleted_user_retention_days: Option<u16>,
    /// Days before IP addresses and user agents are erased (1 to 3650).
    pub access_data_retention_days: Option<u16>,
    /// Whether users may erase themselves.
    pub self_service_erasure: Option<bool>,
    /// Whether login refuses a user whose address is not verified.
    pub require_verified_email: Option<bool>,
    /// How long an invitation link lasts (1 to 30 days).
    pub invitation_days: Option<u16>,
    /// How long a verification link lasts (1 to 168 hours).
    pub verification_hours: Option<u16>,
    /// How long a password-reset link lasts (5 to 60 minutes).
    pub reset_minutes: Option<u16>,
}

fn purposes(inputs: Vec<ConsentPurposeInput>) -> Vec<ConsentPurpose> {
    inputs
        .into_iter()
        .map(|p| ConsentPurpose {
            id: p.id,
            version: p.version,
        })
        .collect()
}

impl From<TenantSettingsInput> for SettingsChange {
    fn from(s: TenantSettingsInput) -> Self {
        SettingsChange {
            password_min_length: s.password_min_length,
            mfa_required: s.mfa_required,
            access_token_minutes: s.access_token_minutes,
            refresh_token_days: s.refresh_token_days,
            lockout_threshold: s.lockout_threshold,
            lockout_minutes: s.lockout_minutes,
            consent_purposes: s.consent_purposes.map(purposes),
            add_consent_purposes: purposes(s.add_consent_purposes.unwrap_or_default()),
            remove_consent_purposes: s.remove_consent_purposes.unwrap_or_default(),
            deleted_user_retention_days: s.deleted_user_retention_days,
            access_data_retention_days: s.access_data_retention_days,
            self_service_erasure: s.self_service_erasure,
            require_verified_email: s.require_verified_email,
            invitation_days: s.invitation_days,
            verification_hours: s.verification_hours,
            reset_minutes: s.reset_minutes,
        }
    }
}

/// A consent decision of a data subject.
#[derive(InputObject)]
pub struct RecordConsentInput {
    /// One of the tenant's declared purposes.
    pub purpose: String,
    /// For a grant: the purpose's current policy version.
    pub policy_version: u32,
    /// Where the decision was made.
    pub channel: ConsentChannel,
    /// SHA-256 (hex) of the text shown to the subject.
    pub evidence_sha256: Option<String>,
    /// True to grant, false to withdraw.
    pub granted: bool,
}

fn permissions(names: &[String]) -> Result<PermissionSet> {
    let parsed = names
        .iter()
        .map(|name| Permission::parse(name).map_err(|e| error("VALIDATION", e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(PermissionSet::from(parsed.as_slice()))
}

fn role(name: &str) -> Result<RoleRef> {
    RoleRef::parse(name).map_err(|e| error("VALIDATION", e.to_string()))
}

async fn done(ctx: &Context<'_>, outcome: &Outcome) -> Result<Done> {
    Ok(Done {
        changed: outcome.appended.is_some(),
        consistency_token: settle(ctx, cursor(outcome)).await?,
    })
}

async fn status(
    ctx: &Context<'_>,
    tenant_id: Option<ID>,
    user_id: ID,
    change: StatusChange,
) -> Result<UserPayload> {
    let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
    let outcome = change_user_status(&data(ctx).state.ports, &caller, tenant, user, change)
        .await
        .map_err(fail)?;
    user_payload(ctx, tenant, user, cursor(&outcome)).await
}

async fn memberships(
    ctx: &Context<'_>,
    tenant_id: Option<ID>,
    command: MembershipCommand,
) -> Result<Done> {
    let tenant = tenant(ctx, tenant_id.as_ref())?;
    let caller = data(ctx).caller().await?;
    let outcome = change_memberships(&data(ctx).state.ports, &caller, tenant, command)
        .await
        .map_err(fail)?;
    done(ctx, &outcome).await
}
