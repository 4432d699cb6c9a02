//! Users: registration, profile, email, status.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::users::{
    change_email, register_user, update_profile, NewUser, Profile, StatusChange,
};
use uuid::Uuid;

use crate::graphql::{data, fail};

use super::*;

#[derive(Default)]
pub struct UserMutations;

#[Object]
impl UserMutations {
    /// Registers (or invites) a user, with an optional first password.
    /// Needs `user.create` (and `credential.manage` for the password).
    async fn register_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The new user.")] input: RegisterUserInput,
    ) -> Result<UserPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let ports = &data(ctx).state.ports;
        let user = Uuid::now_v7();
        let new = NewUser {
            address_vouched: false,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "The whole new profile (a field left out is cleared).")]
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

    /// Sends an invited user a new invitation link, revoking the one sent
    /// before. Needs `user.create`.
    async fn resend_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The invited user.")] user_id: ID,
    ) -> Result<UserPayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = custodia_application::commands::account::reinvite(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
        )
        .await
        .map_err(fail)?;
        user_payload(ctx, tenant, user, cursor(&outcome)).await
    }

    /// Sends a new verification link to the user's current address,
    /// revoking the one sent before. Needs `user.update` (or being that
    /// user); refused once the address is verified.
    async fn resend_verification(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user whose address to verify.")] user_id: ID,
    ) -> Result<UserPayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let outcome = custodia_application::commands::account::resend_verification(
            &data(ctx).state.ports,
            &caller,
            tenant,
            user,
        )
        .await
        .map_err(fail)?;
        user_payload(ctx, tenant, user, cursor(&outcome)).await
    }

    /// Changes a user's email address. Needs `user.update` (or being that user).
    async fn change_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "The new address (unique in the tenant).")] email: String,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
    ) -> Result<UserPayload> {
        status(ctx, tenant_id, user_id, StatusChange::Activate).await
    }

    /// Suspends a user. Needs `user.suspend`.
    async fn suspend_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
    ) -> Result<UserPayload> {
        status(ctx, tenant_id, user_id, StatusChange::Suspend).await
    }

    /// Reactivates a suspended user. Needs `user.suspend`.
    async fn reactivate_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
    ) -> Result<UserPayload> {
        status(ctx, tenant_id, user_id, StatusChange::Reactivate).await
    }

    /// Soft-deletes a user. Needs `user.delete`.
    async fn delete_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
    ) -> Result<UserPayload> {
        status(ctx, tenant_id, user_id, StatusChange::Delete).await
    }
}
