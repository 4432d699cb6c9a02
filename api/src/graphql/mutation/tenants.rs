//! The tenant: its creation (platform operator), settings and suspension.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::tenants::{
    create_tenant, set_tenant_suspended, update_tenant_settings, CreateTenant,
};
use custodia_application::commands::users::{NewUser, Profile};
use custodia_domain::identity::tenant::{SettingsChange, TenantSettings};
use custodia_domain::TenantId;
use uuid::Uuid;

use crate::graphql::{data, fail};

use super::*;

#[derive(Default)]
pub struct TenantMutations;

#[Object]
impl TenantMutations {
    /// Creates a tenant and its first owner. Platform operator only.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant's display name (1 to 200 characters).")] name: String,
        #[graphql(
            desc = "The first owner's address (active, without a password until one is set)."
        )]
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
                    address_vouched: false,
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
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The settings to change; the rest keep their values.")]
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

    /// Gives the tenant a slug for people (`acme`): login and the account
    /// flows take it as well as the id. Unique across the platform; the
    /// slug it replaces is free again. Needs `tenant.update`.
    async fn set_tenant_slug(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(
            desc = "3 to 63 of a-z, 0-9 and single hyphens, starting and ending with a letter or digit (plaintext in the log for good)."
        )]
        slug: String,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = custodia_application::commands::tenants::set_tenant_slug(
            &data(ctx).state.ports,
            &caller,
            tenant,
            &slug,
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Suspends (`suspended: true`) or reactivates the tenant. Needs `tenant.suspend`.
    async fn set_tenant_suspended(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "True to suspend, false to reactivate.")] suspended: bool,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = set_tenant_suspended(&data(ctx).state.ports, &caller, tenant, suspended)
            .await
            .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }
}
