//! Credentials: passwords, lockout, TOTP, recovery codes.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::credentials::{
    change_password, confirm_totp, disable_totp, enroll_totp, import_password_hash,
    issue_recovery_codes, set_password, unlock,
};
use custodia_domain::Timestamp;

use crate::graphql::{data, error, fail};

use super::*;

#[derive(Default)]
pub struct CredentialMutations;

#[Object]
impl CredentialMutations {
    /// Sets a user's password. Needs `credential.manage` (or being that user).
    async fn set_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "The new password (the tenant's policy applies).")] password: String,
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
        #[graphql(desc = "The current password.")] current: String,
        #[graphql(desc = "The new password (the tenant's policy applies).")] new: String,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "The hash, as the other system stored it.")] hash: String,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "A current code from the authenticator app (6 digits).")] code: String,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
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
}
