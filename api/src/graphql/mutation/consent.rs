//! The consent ledger.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::consent::{record_consent, ConsentInput};
use custodia_domain::Timestamp;

use crate::graphql::{data, error, fail, uuid};

use super::*;

#[derive(Default)]
pub struct ConsentMutations;

#[Object]
impl ConsentMutations {
    /// Records a consent grant or withdrawal. Needs `consent.record` (or
    /// being that user).
    async fn record_consent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "The decision.")] input: RecordConsentInput,
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
}
