//! API keys for service accounts.

use async_graphql::{Context, Object, Result, ID};
use custodia_domain::Timestamp;

use crate::graphql::{data, fail, uuid};

use super::*;

#[derive(Default)]
pub struct ApiKeyMutations;

#[Object]
impl ApiKeyMutations {
    /// Creates an API key for a service account. Needs `api_key.manage`
    /// and every permission given to the key.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The key's name, for people (1 to 100 characters).")] name: String,
        #[graphql(desc = "What the key may do (`user.read`, …); each one the caller holds.")]
        permissions: Vec<String>,
    ) -> Result<CreatedApiKey> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let created = custodia_application::commands::api_keys::create_api_key(
            &data(ctx).state.ports,
            &caller,
            tenant,
            &name,
            self::permissions(&permissions)?,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        shown_once(ctx, &caller, created).await
    }

    /// Creates a SCIM token for the tenant's identity provider (Okta,
    /// Entra ID): a key accepted on `/scim/v2` only, and refused everywhere
    /// else, that may provision users and nothing more (ADR 0012). Shown
    /// once; revoked with `revokeApiKey`. Needs `api_key.manage` and the
    /// provisioning permissions.
    async fn create_scim_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The token's name, for people (1 to 100 characters).")] name: String,
    ) -> Result<CreatedApiKey> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let created = custodia_application::commands::api_keys::create_scim_token(
            &data(ctx).state.ports,
            &caller,
            tenant,
            &name,
            Timestamp::now(),
        )
        .await
        .map_err(fail)?;
        shown_once(ctx, &caller, created).await
    }

    /// Revokes an API key at once. Needs `api_key.manage`.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The key to revoke.")] key_id: ID,
    ) -> Result<Done> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let key = uuid(&key_id, "keyId")?;
        let caller = data(ctx).caller().await?;
        let outcome = custodia_application::commands::api_keys::revoke_api_key(
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

/// A new key or token as its maker sees it, once, after the read models
/// have it.
async fn shown_once(
    ctx: &Context<'_>,
    caller: &custodia_application::commands::Caller,
    created: custodia_application::commands::api_keys::CreatedApiKey,
) -> Result<CreatedApiKey> {
    let written = written_by(ctx, caller).await?;
    Ok(CreatedApiKey {
        key_id: ID(created.key_id.to_string()),
        key: created.key,
        consistency_token: settle(ctx, written).await?,
    })
}
