//! Queries: read models only, each authorized tenant first. A row of
//! another tenant is reported as absent, never as forbidden.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, OutputType, Result, ID};
use custodia_application::{ModelRow, RowQuery};
use custodia_domain::identity::membership::RoleRef;
use custodia_domain::rbac::{BuiltInRole, Permission};
use custodia_domain::Timestamp;
use custodia_projections::documents::{RoleDoc, SessionStatus};

use super::types::{
    AccessChange, AuditEvent, Consent, ConsentDecision, DateTime, ErasureReceipt, Group, Message,
    Role, RoleHolding, ScimToken, Session, SubjectAsOf, Tenant, User, UserStatus,
};
use super::{data, error, fail, optional_uuid, store_failure, uuid, MAX_PAGE};

pub struct Query;

/// What a page costs in the complexity limit: its selection once per row
/// it may return.
fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first.unwrap_or(20).clamp(1, MAX_PAGE as i32) as usize;
    rows.saturating_mul(child_complexity).saturating_add(1)
}

/// One page of rows as a Relay connection (forward: `first`, `after`).
async fn page<T: OutputType>(
    ctx: &Context<'_>,
    mut query: RowQuery,
    first: Option<i32>,
    after: Option<String>,
    view: fn(ModelRow) -> Result<T>,
) -> Result<Connection<String, T, EmptyFields, EmptyFields>> {
    let first = usize::try_from(first.unwrap_or(20))
        .map_err(|_| error("VALIDATION", "first must not be negative"))?;
    if first > MAX_PAGE {
        return Err(error(
            "VALIDATION",
            format!("first must be at most {MAX_PAGE}"),
        ));
    }
    query.after_seq = after
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .map_err(|_| error("VALIDATION", "after is not a cursor of this connection"))
        })
        .transpose()?;
    query.limit = first + 1;
    let mut rows = data(ctx)
        .state
        .models
        .list(&query)
        .await
        .map_err(store_failure)?;
    let has_next = rows.len() > first;
    rows.truncate(first);
    let mut connection = Connection::new(query.after_seq.is_some(), has_next);
    for row in rows {
        connection
            .edges
            .push(Edge::new(row.seq.to_string(), view(row)?));
    }
    Ok(connection)
}

/// What a caller may read: every field authorizes against the caller's
/// rights in the tenant it reads.
#[Object]
impl Query {
    /// The signed-in user (null for API keys).
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let auth = data(ctx).auth()?;
        let Some(user) = auth.user else {
            return Ok(None);
        };
        data(ctx)
            .row_in("user", &user.to_string(), auth.tenant)
            .await?
            .map(User::from_row)
            .transpose()
    }

    /// A tenant (default: the caller's). Needs `tenant.read`.
    async fn tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] id: Option<ID>,
    ) -> Result<Option<Tenant>> {
        let tenant = data(ctx).tenant(id.as_ref(), "id")?;
        data(ctx).authorize(tenant, Permission::TenantRead, None)?;
        data(ctx)
            .row_in("tenant", &tenant.to_string(), tenant)
            .await?
            .map(Tenant::from_row)
            .transpose()
    }

    /// The users of a tenant, oldest first. Needs `user.read`. `email`
    /// matches exactly (through the blind index, never plaintext).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "Only users in this status.")] status: Option<UserStatus>,
        #[graphql(desc = "Only the user with exactly this address (matched by blind index).")]
        email: Option<String>,
        #[graphql(
            validator(maximum = 100),
            desc = "How many users, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last user of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, User, EmptyFields, EmptyFields>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::UserRead, None)?;
        let lookup = match email {
            None => None,
            Some(email) => {
                // Finding a user by address reveals personal data.
                data.authorize(tenant, Permission::UserReadPersonal, None)?;
                let email = custodia_domain::personal::Email::parse(&email)
                    .map_err(|e| error("VALIDATION", e.to_string()))?;
                let index = custodia_application::commands::users::email_index(
                    &data.state.ports,
                    tenant,
                    &email,
                )
                .await
                .map_err(fail)?;
                Some(hex::encode(index.0))
            }
        };
        let query = RowQuery {
            model: "user",
            tenant: Some(tenant.as_uuid()),
            kind: status.map(|s| {
                custodia_projections::documents::UserStatus::from(s)
                    .as_str()
                    .to_owned()
            }),
            lookup,
            ..RowQuery::default()
        };
        page(ctx, query, first, after, User::from_row).await
    }

    /// One user of a tenant. Needs `user.read` (or being that user).
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user.")] id: ID,
    ) -> Result<Option<User>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&id, "id")?;
        data.authorize(tenant, Permission::UserRead, Some(user))?;
        data.row_in("user", &user.to_string(), tenant)
            .await?
            .map(User::from_row)
            .transpose()
    }

    /// The tenant's groups of members (provisioned over SCIM), with the
    /// roles each grants. Needs `role.read`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn groups(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(
            validator(maximum = 100),
            desc = "How many groups, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last group of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, Group, EmptyFields, EmptyFields>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::RoleRead, None)?;
        let query = RowQuery {
            model: "group",
            tenant: Some(tenant.as_uuid()),
            ..RowQuery::default()
        };
        page(ctx, query, first, after, Group::from_row).await
    }

    /// The messages sent to the tenant's users and where their delivery
    /// stands (oldest first). Needs `user.read`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "Only the messages to this user.")] user_id: Option<ID>,
        #[graphql(
            desc = "Only messages in this state (`queued`, `retrying`, `sent`, `abandoned`)."
        )]
        status: Option<String>,
        #[graphql(
            validator(maximum = 100),
            desc = "How many messages, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last message of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, Message, EmptyFields, EmptyFields>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::UserRead, None)?;
        let query = RowQuery {
            model: "message",
            tenant: Some(tenant.as_uuid()),
            parent: optional_uuid(user_id.as_ref(), "userId")?,
            kind: status,
            ..RowQuery::default()
        };
        page(ctx, query, first, after, Message::from_row).await
    }

    /// The tenant's own mail templates (the kinds and languages without
    /// one use the built-in English text). Needs `tenant.read`.
    async fn mail_templates(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
    ) -> Result<Vec<super::types::MailTemplateView>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::TenantRead, None)?;
        let templates = custodia_application::commands::mail_templates::tenant_templates(
            &data.state.ports,
            tenant,
        )
        .await
        .map_err(super::fail)?;
        Ok(super::types::MailTemplateView::all(&templates))
    }

    /// The built-in roles and the tenant's custom roles. Needs `role.read`.
    async fn roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
    ) -> Result<Vec<Role>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::RoleRead, None)?;
        let mut roles: Vec<Role> = BuiltInRole::ALL
            .iter()
            .map(|role| Role {
                name: RoleRef::BuiltIn(*role).to_string(),
                built_in: true,
                permissions: role
                    .permissions()
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect(),
            })
            .collect();
        let custom = data
            .state
            .models
            .list(&RowQuery {
                model: "role",
                tenant: Some(tenant.as_uuid()),
                limit: 1_000,
                ..RowQuery::default()
            })
            .await
            .map_err(store_failure)?;
        for row in custom {
            let role: RoleDoc = custodia_projections::documents::read(&row).map_err(|e| {
                tracing::error!(error = %e, "read-model document unreadable");
                error("INTERNAL", "a read-model document is unreadable")
            })?;
            roles.push(Role {
                name: format!("custom:{}", role.name),
                built_in: false,
                permissions: role.permissions,
            });
        }
        Ok(roles)
    }

    /// Sessions of a tenant, or of one user. Needs `session.read` (a user
    /// may list their own).
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "Only this user's sessions.")] user_id: Option<ID>,
        #[graphql(desc = "Only sessions not revoked (one past its refresh expiry still counts).")]
        active_only: Option<bool>,
        #[graphql(
            validator(maximum = 100),
            desc = "How many sessions, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last session of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, Session, EmptyFields, EmptyFields>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = optional_uuid(user_id.as_ref(), "userId")?;
        data.authorize(tenant, Permission::SessionRead, user)?;
        let query = RowQuery {
            model: "session",
            tenant: Some(tenant.as_uuid()),
            parent: user,
            kind: active_only
                .unwrap_or(false)
                .then(|| SessionStatus::Active.as_str().to_owned()),
            ..RowQuery::default()
        };
        page(ctx, query, first, after, Session::from_row).await
    }

    /// The tenant's SCIM tokens, oldest first, revoked ones too (never a
    /// secret). Needs `api_key.manage`.
    async fn scim_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
    ) -> Result<Vec<ScimToken>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::ApiKeyManage, None)?;
        let rows = data
            .state
            .models
            .list(&RowQuery {
                model: "api_key",
                tenant: Some(tenant.as_uuid()),
                kind: Some("scim".into()),
                limit: 1_000,
                ..RowQuery::default()
            })
            .await
            .map_err(store_failure)?;
        rows.into_iter().map(ScimToken::from_row).collect()
    }

    /// A user's current consent per purpose. Needs `consent.read` (a user
    /// may read their own).
    async fn consents(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The data subject.")] user_id: ID,
    ) -> Result<Vec<Consent>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&user_id, "userId")?;
        data.authorize(tenant, Permission::ConsentRead, Some(user))?;
        let rows = data
            .state
            .models
            .list(&RowQuery {
                model: "consent",
                tenant: Some(tenant.as_uuid()),
                parent: Some(user),
                limit: 1_000,
                ..RowQuery::default()
            })
            .await
            .map_err(store_failure)?;
        rows.into_iter().map(Consent::from_row).collect()
    }

    /// A subject's whole consent history, oldest first: every grant and
    /// withdrawal with where the log holds it (what GDPR Art. 7(1) asks a
    /// controller to demonstrate). Needs `consent.read` (a user may read
    /// their own).
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn consent_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The data subject.")] user_id: ID,
        #[graphql(
            validator(maximum = 100),
            desc = "How many decisions, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last decision of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, ConsentDecision, EmptyFields, EmptyFields>> {
        use custodia_application::commands::consent::consent_history_page;
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&user_id, "userId")?;
        let first = usize::try_from(first.unwrap_or(20))
            .map_err(|_| error("VALIDATION", "first must not be negative"))?;
        let after = after
            .map(|cursor| {
                cursor
                    .parse::<u64>()
                    .map_err(|_| error("VALIDATION", "after is not a cursor of this connection"))
            })
            .transpose()?;
        let caller = data.caller().await?;
        let from = custodia_domain::StreamVersion(after.unwrap_or(0));
        let mut page =
            consent_history_page(&data.state.ports, &caller, tenant, user, from, first + 1)
                .await
                .map_err(fail)?;
        let has_next = page.len() > first;
        page.truncate(first);
        let mut connection = Connection::new(after.is_some(), has_next);
        for record in page {
            let cursor = record.version.0.to_string();
            connection.edges.push(Edge::new(cursor, record.into()));
        }
        Ok(connection)
    }

    /// The tenant's audit history, in log order. Needs `audit.read`.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "Only events of this stream (a user, a session, the tenant).")]
        subject: Option<ID>,
        #[graphql(desc = "Only events by this user or API key.")] actor: Option<ID>,
        #[graphql(name = "type", desc = "Only events of this type (`UserSuspended`, …).")]
        event_type: Option<String>,
        #[graphql(desc = "Only events recorded at or after this time.")] from: Option<DateTime>,
        #[graphql(desc = "Only events recorded before this time.")] to: Option<DateTime>,
        #[graphql(
            validator(maximum = 100),
            desc = "How many events, at most 100 (default 20)."
        )]
        first: Option<i32>,
        #[graphql(desc = "The cursor of the last event of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<String, AuditEvent, EmptyFields, EmptyFields>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::AuditRead, None)?;
        let query = RowQuery {
            model: "audit_event",
            tenant: Some(tenant.as_uuid()),
            parent: optional_uuid(subject.as_ref(), "subject")?,
            actor: optional_uuid(actor.as_ref(), "actor")?,
            kind: event_type,
            at_from: from.map(|at| at.0 .0),
            at_to: to.map(|at| at.0 .0),
            ..RowQuery::default()
        };
        page(ctx, query, first, after, AuditEvent::from_row).await
    }

    /// Everything held about a user, as one JSON document (access and
    /// portability, GDPR Art. 15 and 20; its shape:
    /// `docs/subject-export.schema.json`). The user themselves, or holders
    /// of `subject.export` (owners, privacy officers).
    #[graphql(complexity = 100)]
    async fn export_subject(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The data subject.")] user_id: ID,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&user_id, "userId")?;
        let caller = data.caller().await?;
        let state = &data.state;
        crate::export::export_subject(&state.ports, &*state.models, &caller, tenant, user)
            .await
            .map(async_graphql::Json)
            .map_err(fail)
    }

    /// The receipt of a user's erasure (`null` unless they were erased).
    /// Needs `audit.read` or `subject.erase`.
    async fn erasure_receipt(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user erased.")] user_id: ID,
    ) -> Result<Option<ErasureReceipt>> {
        use custodia_application::commands::{privacy, CommandError};
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&user_id, "userId")?;
        let caller = data.caller().await?;
        match privacy::erasure_receipt(&data.state.ports, &caller, tenant, user).await {
            Ok(mut receipt) => {
                // Under the latest signed checkpoint, once one covers it.
                let chain = if receipt.event.chain == "platform" {
                    custodia_domain::ChainId::Platform
                } else {
                    custodia_domain::ChainId::Tenant(tenant)
                };
                receipt.inclusion_proof = crate::checkpoints::proof_under_checkpoint(
                    &*data.state.models,
                    &data.state.checkpoints,
                    chain,
                    receipt.event.chain_index,
                )
                .await
                .map_err(|e| fail(custodia_application::commands::CommandError::Store(e)))?;
                Ok(Some(receipt.into()))
            }
            Err(CommandError::NotFound(_)) => Ok(None),
            Err(other) => Err(fail(other)),
        }
    }

    /// An access review: every role held in the tenant at a moment, since
    /// when and granted by whom, from the log. Needs `audit.read`
    /// (auditors, owners, admins).
    async fn access_review(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The moment (default: now).")] at: Option<DateTime>,
    ) -> Result<Vec<RoleHolding>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let caller = data.caller().await?;
        let at = at.map_or_else(Timestamp::now, |at| at.0);
        custodia_application::commands::audit::access_review(&data.state.ports, &caller, tenant, at)
            .await
            .map(|holdings| holdings.into_iter().map(Into::into).collect())
            .map_err(fail)
    }

    /// A user as the log held them at a moment: status, personal data (only
    /// for a reader with `user.read_personal`; erased where the key is
    /// gone), roles and consents in force. A fold of the log up to the
    /// moment, inclusive. Needs `audit.read`.
    async fn subject_as_of(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user.")] user_id: ID,
        #[graphql(desc = "The moment.")] at: DateTime,
    ) -> Result<SubjectAsOf> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let user = uuid(&user_id, "userId")?;
        let caller = data.caller().await?;
        custodia_application::commands::audit::subject_as_of(
            &data.state.ports,
            &caller,
            tenant,
            user,
            at.0,
        )
        .await
        .map(|subject| SubjectAsOf::new(user, at.0, subject))
        .map_err(fail)
    }

    /// The grants and revocations in the tenant between two moments, in
    /// log order: what a periodic access review reads. Needs `audit.read`.
    async fn access_changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "From this moment, inclusive.")] from: DateTime,
        #[graphql(desc = "To this moment, exclusive (default: now).")] to: Option<DateTime>,
    ) -> Result<Vec<AccessChange>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let caller = data.caller().await?;
        let to = to.map_or_else(Timestamp::now, |to| to.0);
        custodia_application::commands::audit::access_changes(
            &data.state.ports,
            &caller,
            tenant,
            from.0,
            to,
        )
        .await
        .map(|changes| changes.into_iter().map(Into::into).collect())
        .map_err(fail)
    }

    /// The inclusion proof of the tenant's event at `chainIndex` (an audit
    /// event's `chainIndex`) under the latest signed checkpoint of the
    /// tenant's chain, as JSON (`checkpoint`, `index`, `tree_size`,
    /// `leaf_hash`, `proof`; docs/audit-format.md); `null` until a
    /// checkpoint covers the event. Needs `audit.read`.
    async fn event_proof(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The event's place in the tenant's chain (0 is the first).")]
        chain_index: u64,
    ) -> Result<Option<async_graphql::Json<serde_json::Value>>> {
        let data = data(ctx);
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        let caller = data.caller().await?;
        caller
            .principal
            .authorize(tenant, custodia_domain::rbac::Permission::AuditRead, None)
            .map_err(|denied| fail(custodia_application::commands::CommandError::from(denied)))?;
        crate::checkpoints::proof_under_checkpoint(
            &*data.state.models,
            &data.state.checkpoints,
            custodia_domain::ChainId::Tenant(tenant),
            chain_index,
        )
        .await
        .map(|proof| proof.map(async_graphql::Json))
        .map_err(|e| fail(custodia_application::commands::CommandError::Store(e)))
    }

    /// The server's clock, for clients that sign requests or show times.
    async fn server_time(&self) -> DateTime {
        DateTime(Timestamp::now())
    }
}
