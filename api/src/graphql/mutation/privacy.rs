//! Privacy: erasure of a data subject.

use async_graphql::{Context, Json, Object, Result, SimpleObject, ID};
use custodia_application::commands::privacy::{erase_subject, ErasureReceipt as Receipt};

use crate::graphql::{data, fail};

use super::*;

#[derive(Default)]
pub struct PrivacyMutations;

/// The proof of an erasure an auditor keeps: the erasure event's place in
/// the log, checkable with `custodia verify --receipt FILE`.
#[derive(SimpleObject)]
pub struct ErasureReceipt {
    /// The request's reference, as given.
    pub reference: String,
    /// The user erased.
    pub subject: Option<ID>,
    /// The ids of the keys destroyed.
    pub keys_destroyed: Vec<String>,
    /// The erasure event's position in the log.
    pub position: u64,
    /// The erasure event's hash (hex).
    pub hash: String,
    /// The whole receipt as a JSON document, to keep.
    pub document: Json<Receipt>,
}

impl From<Receipt> for ErasureReceipt {
    fn from(receipt: Receipt) -> Self {
        Self {
            reference: receipt.reference.clone(),
            subject: receipt.subject.map(|s| ID(s.to_string())),
            keys_destroyed: receipt.keys_destroyed.clone(),
            position: receipt.event.position,
            hash: receipt.event.hash.clone(),
            document: Json(receipt),
        }
    }
}

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
    /// self-service erasure. Cannot be undone.
    async fn erase_subject(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user to erase.")] user_id: ID,
        #[graphql(
            desc = "The request's reference (a ticket or case number; 1 to 200 characters, no personal data)."
        )]
        reference: String,
    ) -> Result<ErasurePayload> {
        let (tenant, user, caller) = on_user(ctx, tenant_id, &user_id).await?;
        let erasure = erase_subject(&data(ctx).state.ports, &caller, tenant, user, &reference)
            .await
            .map_err(fail)?;
        Ok(ErasurePayload {
            consistency_token: settle(ctx, erasure.appended.map(|a| a.cursor)).await?,
            receipt: erasure.receipt.into(),
        })
    }
}
