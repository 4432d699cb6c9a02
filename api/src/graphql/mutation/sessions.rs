//! Sessions: sign-out, one or all.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::sessions::{revoke_all_sessions, revoke_session};
use custodia_domain::Timestamp;

use crate::graphql::types::Session;
use crate::graphql::{data, fail, uuid};

use super::*;

#[derive(Default)]
pub struct SessionMutations;

#[Object]
impl SessionMutations {
    /// Ends a session at once (its access tokens stop working everywhere).
    /// Needs `session.revoke` (or owning the session).
    async fn revoke_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The session to end.")] session_id: ID,
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
            session: row.map(Session::from_row).transpose()?,
            consistency_token,
        })
    }

    /// Ends every session of a user ("sign out everywhere").
    async fn revoke_all_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
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
}
