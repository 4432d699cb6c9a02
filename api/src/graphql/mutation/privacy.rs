//! Privacy: erasure of a data subject.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use custodia_application::commands::privacy::{erase_self, erase_subject, erase_tenant};

use crate::graphql::types::ErasureReceipt;

use crate::graphql::{data, fail};

use super::*;

#[derive(Default)]
pub struct PrivacyMutations;

/// An erasure, and its consistency token.
#[derive(SimpleObject)]
pub struct ErasurePayload {
    /// The receipt (the same again for a subject erased before).
    pub receipt: ErasureReceipt,
    /// Send as `X-Consistency-Token` to read this write's effects.
    pub consistency_token: String,
}

#[Object]
impl PrivacyMutations {
    /// Erases a data subject for good: their key is destroyed (every
    /// personal field of theirs, in every event and read model, becomes
    /// unreadable), their sessions end, their API keys stop, and a
    /// `SubjectErased` event records it. Needs `subject.erase` (owners and
    /// privacy officers), or being that user where the tenant allows
    /// self-service erasure, with their password. Cannot be undone.
    async fn erase_subject(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user to erase.")] user_id: ID,
        #[graphql(
            desc = "The request's reference (a ticket or case number; 1 to 200 characters, no personal data)."
        )]
        reference: String,
        #[graphql(
            desc = "Your own password, when you erase yourself (self-service erasure needs it)."
        )]
        password: Option<String>,
    ) -> Result<ErasurePayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let ports = &data(ctx).state.ports;
        let erasure = match password {
            Some(password) => {
                let now = custodia_domain::Timestamp::now();
                erase_self(ports, &caller, tenant, user, &password, &reference, now)
                    .await
                    .map_err(fail)?
            }
            None => erase_subject(ports, &caller, tenant, user, &reference)
                .await
                .map_err(fail)?,
        };
        answer(ctx, tenant, erasure).await
    }

    /// Erases a whole tenant: its chain is closed (every session, refresh
    /// token and API key of it stops at once), `TenantErased` is recorded
    /// in the platform chain, and the tenant key is destroyed, and with it
    /// every personal field of the tenant. Platform operator only. Cannot
    /// be undone.
    async fn erase_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant to erase.")] tenant_id: ID,
        #[graphql(
            desc = "The request's reference (a ticket or case number; 1 to 200 characters, no personal data)."
        )]
        reference: String,
    ) -> Result<ErasurePayload> {
        let tenant = tenant(ctx, Some(&tenant_id))?;
        let caller = data(ctx).caller().await?;
        let erasure = erase_tenant(&data(ctx).state.ports, &caller, tenant, &reference)
            .await
            .map_err(fail)?;
        answer(ctx, tenant, erasure).await
    }
}

/// After an erasure in `tenant`: its kept answers are withdrawn (one may
/// hold the erased data; a retry learns its request was done), then the
/// receipt and the token.
async fn answer(
    ctx: &Context<'_>,
    tenant: custodia_domain::TenantId,
    erasure: custodia_application::commands::privacy::Erasure,
) -> Result<ErasurePayload> {
    data(ctx)
        .state
        .idempotency
        .withdraw_tenant(tenant.as_uuid())
        .await
        .map_err(store_failure)?;
    Ok(ErasurePayload {
        consistency_token: settle(ctx, erasure.appended.map(|a| a.cursor)).await?,
        receipt: erasure.receipt.into(),
    })
}
