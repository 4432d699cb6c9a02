//! Mutations: one per command of the identity domain, through the same
//! handlers (and so the same authorization) as everything else. Each
//! returns the resulting state, read after the projections have applied the
//! mutation, and its consistency token.

use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject, ID};
use custodia_application::commands::consent::{record_consent, ConsentInput};
use custodia_application::commands::credentials::{
    change_password, confirm_totp, disable_totp, enroll_totp, import_password_hash,
    issue_recovery_codes, set_password, unlock,
};
use custodia_application::commands::sessions::{revoke_all_sessions, revoke_session};
use custodia_application::commands::tenants::{
    change_memberships, create_tenant, set_tenant_suspended, update_tenant_settings, CreateTenant,
};
use custodia_application::commands::users::{
    change_email, change_user_status, register_user, update_profile, NewUser, Profile, StatusChange,
};
use custodia_application::commands::{api_keys, Caller, Outcome};
use custodia_application::ModelRow;
use custodia_domain::identity::membership::{MembershipCommand, RoleName, RoleRef};
use custodia_domain::identity::tenant::{ConsentPurpose, SettingsChange, TenantSettings};
use custodia_domain::rbac::{Permission, PermissionSet};
use custodia_domain::{LogCursor, TenantId, Timestamp};
use uuid::Uuid;

use super::types::{ConsentChannel, Session, Tenant, User};
use super::{data, error, fail, store_failure, uuid};

pub struct Mutation;

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
        user: row.map(User),
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
        tenant: row.map(Tenant),
        consistency_token,
    })
}

#[derive(SimpleObject)]
pub struct UserPayload {
    pub user: Option<User>,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct TenantPayload {
    pub tenant: Option<Tenant>,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct SessionPayload {
    pub session: Option<Session>,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct Done {
    /// Whether the command changed anything (false: it was already so).
    pub changed: bool,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct RevokedSessions {
    pub revoked: i32,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// `otpauth://` URI for an authenticator app; shown once.
    pub provisioning_uri: String,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct RecoveryCodes {
    /// Shown once; each works once.
    pub codes: Vec<String>,
    pub consistency_token: String,
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub key_id: ID,
    /// The key (`cst_…`): shown once, never stored in plaintext.
    pub key: String,
    pub consistency_token: String,
}

#[derive(InputObject)]
pub struct ProfileInput {
    pub display_name: Option<String>,
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

#[derive(InputObject)]
pub struct RegisterUserInput {
    pub email: String,
    pub profile: Option<ProfileInput>,
    /// Invited users start as `invited` until activated.
    #[graphql(default)]
    pub invite: bool,
    /// An initial password (else set it later or let the user do so).
    pub password: Option<String>,
}

#[derive(InputObject)]
pub struct ConsentPurposeInput {
    pub id: String,
    pub version: u32,
}

/// A change to some of a tenant's settings: a field left out keeps its
/// value. Bounds as in `TenantSettings`.
#[derive(InputObject, Default)]
pub struct TenantSettingsInput {
    pub password_min_length: Option<u8>,
    pub mfa_required: Option<bool>,
    pub access_token_minutes: Option<u16>,
    pub refresh_token_days: Option<u16>,
    pub lockout_threshold: Option<u8>,
    pub lockout_minutes: Option<u16>,
    /// The whole list of consent purposes, replacing the current one.
    pub consent_purposes: Option<Vec<ConsentPurposeInput>>,
    /// Purposes to add, or to give a new policy version (by id).
    pub add_consent_purposes: Option<Vec<ConsentPurposeInput>>,
    /// Ids of purposes to remove.
    pub remove_consent_purposes: Option<Vec<String>>,
    pub deleted_user_retention_days: Option<u16>,
    pub access_data_retention_days: Option<u16>,
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
        }
    }
}

#[derive(InputObject)]
pub struct ConsentInputGql {
    pub purpose: String,
    /// For a grant: the purpose's current policy version.
    pub policy_version: u32,
    pub channel: ConsentChannel,
    /// SHA-256 (hex) of the text shown to the subject.
    pub evidence_sha256: Option<String>,
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

#[Object]
impl Mutation {
    /// Creates a tenant and its first owner. Platform operator only.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        name: String,
        owner_email: String,
    ) -> Result<TenantPayload> {
        let caller = data(ctx).caller().await?;
        let tenant = TenantId::generate();
        let outcome = create_tenant(
            &data(ctx).state.ports,
            &caller,
            CreateTenant {
                tenant,
                name,
                settings: TenantSettings::default(),
                owner: NewUser {
                    user: Uuid::now_v7(),
                    email: owner_email,
                    profile: Profile::default(),
                    invited: false,
                    password: None,
                },
            },
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Changes the tenant's settings: those given, the others stay. Needs
    /// `tenant.update`.
    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        settings: TenantSettingsInput,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = update_tenant_settings(
            &data(ctx).state.ports,
            &caller,
            tenant,
            SettingsChange::from(settings),
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Suspends (`suspended: true`) or reactivates the tenant. Needs `tenant.suspend`.
    async fn set_tenant_suspended(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        suspended: bool,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = set_tenant_suspended(&data(ctx).state.ports, &caller, tenant, suspended)
            .await
            .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Registers (or invites) a user, with an optional first password.
    /// Needs `user.create` (and `credential.manage` for the password).
    async fn register_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        input: RegisterUserInput,
    ) -> Result<UserPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let ports = &data(ctx).state.ports;
        let user = Uuid::now_v7();
        let new = NewUser {
            user,
            email: input.email,
            profile: input.profile.map(Profile::from).unwrap_or_default(),
            invited: input.invite,
            password: input.password,
        };
        let outcome = register_user(ports, &data(ctx).caller().await?, tenant, new)
            .await
            .map_err(fail)?;
        user_payload(ctx, tenant, user, cursor(&outcome)).await
    }

    /// Replaces a user's profile. Needs `user.update` (or being that user).
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        profile: ProfileInput,
    ) -> Result<UserPayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = update_profile(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
            profile.into(),
        )
        .await
        .map_err(fail)?;
        user_payload(ctx, tenant, user, cursor(&outcome)).await
    }

    /// Changes a user's email address. Needs `user.update` (or being that user).
    async fn change_email(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        email: String,
    ) -> Result<UserPayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = change_email(&data(ctx).state.ports, &caller, tenant, user, &email)
            .await
            .map_err(fail)?;
        user_payload(ctx, tenant, user, cursor(&outcome)).await
    }

    /// Activates an invited user. Needs `user.update`.
    async fn activate_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<UserPayload> {
        self.status(ctx, tenant_id, user_id, StatusChange::Activate)
            .await
    }

    /// Suspends a user. Needs `user.suspend`.
    async fn suspend_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<UserPayload> {
        self.status(ctx, tenant_id, user_id, StatusChange::Suspend)
            .await
    }

    /// Reactivates a suspended user. Needs `user.suspend`.
    async fn reactivate_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<UserPayload> {
        self.status(ctx, tenant_id, user_id, StatusChange::Reactivate)
            .await
    }

    /// Soft-deletes a user. Needs `user.delete`.
    async fn delete_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<UserPayload> {
        self.status(ctx, tenant_id, user_id, StatusChange::Delete)
            .await
    }

    /// Sets a user's password. Needs `credential.manage` (or being that user).
    async fn set_password(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        password: String,
    ) -> Result<Done> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = set_password(&data(ctx).state.ports, &caller, tenant, user, &password)
            .await
            .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Changes the signed-in user's own password, proving the current one.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current: String,
        new: String,
    ) -> Result<Done> {
        let auth = data(ctx).auth()?;
        let user = auth
            .user
            .ok_or_else(|| error("FORBIDDEN", "only a signed-in user changes their password"))?;
        let caller = data(ctx).caller().await?;
        let outcome = change_password(
            &data(ctx).state.ports,
            &caller,
            auth.tenant,
            user,
            &current,
            &new,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Imports a password hash from another system (Argon2id or bcrypt, PHC
    /// or modular crypt format). Needs `credential.manage`.
    async fn import_password_hash(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        hash: String,
    ) -> Result<Done> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = import_password_hash(&data(ctx).state.ports, &caller, tenant, user, &hash)
            .await
            .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Lifts a lockout after failed logins. Needs `user.unlock`.
    async fn unlock_user(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<Done> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = unlock(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Starts TOTP enrollment; confirm it with a first code.
    async fn enroll_totp(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<TotpEnrollment> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let provisioning_uri = enroll_totp(&data(ctx).state.ports, &caller, tenant, user)
            .await
            .map_err(fail)?;
        let written = written_by(ctx, &caller).await?;
        Ok(TotpEnrollment {
            provisioning_uri,
            consistency_token: settle(ctx, written).await?,
        })
    }

    /// Confirms TOTP enrollment with a current code.
    async fn confirm_totp(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        code: String,
    ) -> Result<Done> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = confirm_totp(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
            &code,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Removes TOTP. Needs `credential.manage` (or being that user).
    async fn disable_totp(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<Done> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = disable_totp(&data(ctx).state.ports, &caller, tenant, user)
            .await
            .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Issues a fresh set of recovery codes (the old ones stop working).
    async fn issue_recovery_codes(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<RecoveryCodes> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let codes = issue_recovery_codes(&data(ctx).state.ports, &caller, tenant, user)
            .await
            .map_err(fail)?;
        let written = written_by(ctx, &caller).await?;
        Ok(RecoveryCodes {
            codes,
            consistency_token: settle(ctx, written).await?,
        })
    }

    /// Defines (or redefines) a custom role. Needs `role.define`.
    async fn define_role(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        name: String,
        permissions: Vec<String>,
    ) -> Result<Done> {
        let name = RoleName::parse(&name).map_err(|e| error("VALIDATION", e.to_string()))?;
        let command = MembershipCommand::DefineRole {
            name,
            permissions: self::permissions(&permissions)?,
        };
        self.memberships(ctx, tenant_id, command).await
    }

    /// Grants a role (`owner`, …, `custom:<name>`). Needs `role.grant` and
    /// every permission of the role.
    async fn grant_role(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::Grant {
            user: uuid(&user_id, "userId")?,
            role: self::role(&role)?,
        };
        self.memberships(ctx, tenant_id, command).await
    }

    /// Revokes a role. Needs `role.grant`; the last owner stays.
    async fn revoke_role(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::Revoke {
            user: uuid(&user_id, "userId")?,
            role: self::role(&role)?,
        };
        self.memberships(ctx, tenant_id, command).await
    }

    /// Revokes every role of a user. Needs `role.grant`.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<Done> {
        let command = MembershipCommand::RemoveMember {
            user: uuid(&user_id, "userId")?,
        };
        self.memberships(ctx, tenant_id, command).await
    }

    /// Ends a session at once (its access tokens stop working everywhere).
    /// Needs `session.revoke` (or owning the session).
    async fn revoke_session(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        session_id: ID,
    ) -> Result<SessionPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let session = uuid(&session_id, "sessionId")?;
        let caller = data(ctx).caller().await?;
        let outcome = revoke_session(
            &data(ctx).state.ports,
            &caller,
            tenant,
            session,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        let (row, consistency_token) =
            settled_row(ctx, "session", session, tenant, cursor(&outcome)).await?;
        Ok(SessionPayload {
            session: row.map(Session),
            consistency_token,
        })
    }

    /// Ends every session of a user ("sign out everywhere").
    async fn revoke_all_sessions(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
    ) -> Result<RevokedSessions> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let (revoked, written) = revoke_all_sessions(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        Ok(RevokedSessions {
            revoked: i32::try_from(revoked).unwrap_or(i32::MAX),
            consistency_token: settle(ctx, written).await?,
        })
    }

    /// Records a consent grant or withdrawal. Needs `consent.record` (or
    /// being that user).
    async fn record_consent(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: ID,
        input: ConsentInputGql,
    ) -> Result<Done> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let user = uuid(&user_id, "userId")?;
        let evidence_sha256 = input
            .evidence_sha256
            .map(|hex_text| {
                let bytes = hex::decode(&hex_text)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                bytes.ok_or_else(|| error("VALIDATION", "evidenceSha256 must be 64 hex digits"))
            })
            .transpose()?;
        let consent = ConsentInput {
            purpose: input.purpose,
            policy_version: input.policy_version,
            channel: input.channel.into(),
            evidence_sha256,
        };
        let caller = data(ctx).caller().await?;
        let outcome = record_consent(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
            consent,
            input.granted,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        done(ctx, &outcome).await
    }

    /// Creates an API key for a service account. Needs `api_key.manage`
    /// and every permission given to the key.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        name: String,
        permissions: Vec<String>,
    ) -> Result<CreatedApiKey> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let created = api_keys::create_api_key(
            &data(ctx).state.ports,
            &caller,
            tenant,
            &name,
            self::permissions(&permissions)?,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        let written = written_by(ctx, &caller).await?;
        Ok(CreatedApiKey {
            key_id: ID(created.key_id.to_string()),
            key: created.key,
            consistency_token: settle(ctx, written).await?,
        })
    }

    /// Revokes an API key at once. Needs `api_key.manage`.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        key_id: ID,
    ) -> Result<Done> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let key = uuid(&key_id, "keyId")?;
        let caller = data(ctx).caller().await?;
        let outcome = api_keys::revoke_api_key(
            &data(ctx).state.ports,
            &caller,
            tenant,
            key,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        done(ctx, &outcome).await
    }
}

async fn done(ctx: &Context<'_>, outcome: &Outcome) -> Result<Done> {
    Ok(Done {
        changed: outcome.appended.is_some(),
        consistency_token: settle(ctx, cursor(outcome)).await?,
    })
}

impl Mutation {
    async fn status(
        &self,
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
        &self,
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
}
