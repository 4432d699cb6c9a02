//! `/graphql`: one endpoint for frontend apps (async-graphql).
//!
//! Queries read the read models (projections); mutations go through the
//! command handlers. Every resolver authorizes against the caller's
//! principal, tenant first. Read-your-writes: every mutation answers with a
//! consistency token (its log cursor, also in the `X-Consistency-Token`
//! response header); a later request carrying it in that header waits, at
//! most [`CONSISTENCY_WAIT`], until every projection has applied it.

mod http;
pub mod limits;
mod mutation;
pub mod parsed;
mod query;
mod root_fields;
mod subscription;
mod types;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Context, ErrorExtensions, Schema, ID};
use custodia_application::commands::Caller;
use custodia_application::ModelRow;
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::{Actor, CommandId, LogCursor, Origin, TenantId};
use uuid::Uuid;

pub use http::{configure, MAX_GRAPHQL_BODY};
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::http::{ApiError, AppState};

pub type CustodiaSchema = Schema<Query, Mutation, Subscription>;

/// The deepest query accepted (the standard introspection query needs 13).
pub const MAX_DEPTH: usize = 16;
/// The costliest query accepted; a connection field costs its page size
/// times its selection.
pub const MAX_COMPLEXITY: usize = 5_000;
/// What a personal field costs in the complexity limit: it is opened
/// (decrypted) per row, unlike the fields read as they are.
pub const OPEN_FIELD_COST: usize = 5;
/// The largest page a connection returns.
pub const MAX_PAGE: usize = 100;
/// The longest a request waits for the projections to reach its token.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(2);

/// The schema, with introspection on or off (off by default in production:
/// `CUSTODIA_GRAPHQL_INTROSPECTION`).
pub fn schema(introspection: bool) -> CustodiaSchema {
    let builder = Schema::build(Query, Mutation::default(), Subscription)
        .extension(limits::DocumentLimits)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The SDL of the schema (`custodia schema`).
pub fn sdl() -> String {
    schema(true).sdl()
}

/// Who is calling, as the request's credentials established.
#[derive(Debug, Clone)]
pub struct Auth {
    pub principal: Principal,
    pub actor: Actor,
    pub tenant: TenantId,
    /// The user behind a session (none for API keys).
    pub user: Option<Uuid>,
    /// The session of an access token (none for API keys).
    pub session: Option<Uuid>,
    /// What authenticated the request, to check again before each command.
    pub credentials: Credentials,
}

/// The `Authorization` value a request authenticated with. `Debug` hides it.
#[derive(Clone, Default)]
pub struct Credentials(pub(crate) String);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Per-request data every resolver reaches through the context.
pub struct RequestData {
    pub state: AppState,
    pub auth: Option<Auth>,
    /// The furthest log cursor this request's mutations reached.
    pub written: Arc<Mutex<Option<LogCursor>>>,
    /// Where the command ids of this request's mutations come from.
    pub command_ids: CommandIds,
}

/// The command ids of a request's mutations: fresh ones, or, under an
/// `Idempotency-Key`, derived from the key, the same on every retry (the
/// mutations of a document run one after the other, in order).
#[derive(Debug, Default)]
pub struct CommandIds(
    Option<(
        Box<[u8; 32]>,
        custodia_domain::Timestamp,
        std::sync::atomic::AtomicU32,
    )>,
);

impl CommandIds {
    pub fn derived(scope: [u8; 32], first_seen: custodia_domain::Timestamp) -> Self {
        Self(Some((Box::new(scope), first_seen, Default::default())))
    }

    fn next(&self) -> CommandId {
        match &self.0 {
            None => CommandId::generate(),
            Some((scope, first_seen, n)) => {
                let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::http::idempotency::command_id(scope, *first_seen, n)
            }
        }
    }
}

impl RequestData {
    fn auth(&self) -> Result<&Auth, async_graphql::Error> {
        self.auth.as_ref().ok_or_else(|| {
            error(
                "UNAUTHENTICATED",
                "sign in: send a bearer access token or an API key",
            )
        })
    }

    /// The tenant an argument (`what`) names, or the caller's own.
    fn tenant(&self, given: Option<&ID>, what: &str) -> Result<TenantId, async_graphql::Error> {
        let auth = self.auth()?;
        match optional_uuid(given, what)? {
            None => Ok(auth.tenant),
            Some(id) => TenantId::from_uuid(id).map_err(|e| error("VALIDATION", e.to_string())),
        }
    }

    /// The row `model`/`id` if it belongs to `tenant`: a row of another
    /// tenant is absent, never forbidden-but-existing.
    async fn row_in(
        &self,
        model: &'static str,
        id: &str,
        tenant: TenantId,
    ) -> Result<Option<ModelRow>, async_graphql::Error> {
        Ok(self
            .state
            .models
            .get(model, id)
            .await
            .map_err(store_failure)?
            .filter(|row| row.tenant == Some(tenant.as_uuid())))
    }

    /// Checks a permission; the caller is authenticated.
    fn authorize(
        &self,
        tenant: TenantId,
        permission: Permission,
        subject: Option<Uuid>,
    ) -> Result<&Auth, async_graphql::Error> {
        let auth = self.auth()?;
        auth.principal
            .authorize(tenant, permission, subject)
            .map_err(|denied| error("FORBIDDEN", denied.to_string()))?;
        Ok(auth)
    }

    /// A caller for one command of this request, with the rights its
    /// credentials give *now*: a document of many mutations does not keep
    /// rights removed while it runs (the check is the authentication
    /// cache's, so it costs a lookup while nothing changed).
    async fn caller(&self) -> Result<Caller, async_graphql::Error> {
        let auth = self.auth()?;
        let now = http::authenticate_token(&self.state, &auth.credentials.0)
            .await
            .map_err(fail)?;
        Ok(Caller {
            principal: now.principal,
            actor: auth.actor,
            command_id: self.command_ids.next(),
            correlation_id: Uuid::now_v7(),
            origin: Origin::parse("graphql").expect("a valid origin"),
            expected_version: None,
            session: auth.session,
        })
    }

    /// Records that a mutation wrote up to `cursor`; returns the token.
    fn wrote(&self, cursor: Option<LogCursor>) -> String {
        let mut written = self.written.lock().expect("not poisoned");
        if let Some(cursor) = cursor {
            *written = Some(written.map_or(cursor, |w| w.max(cursor)));
        }
        written.map(|c| c.to_string()).unwrap_or_default()
    }
}

/// A GraphQL error with `extensions.code`.
pub fn error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// Maps any error the handlers return through [`ApiError`] (one mapping
/// for HTTP and GraphQL; internal causes are logged there, never sent).
fn fail(cause: impl Into<ApiError>) -> async_graphql::Error {
    let api = cause.into();
    error(api.code(), api.message().to_owned())
}

/// A storage failure, as resolvers report it (`INTERNAL`; the cause is logged).
fn store_failure(error: custodia_application::StoreError) -> async_graphql::Error {
    fail(custodia_application::commands::CommandError::from(error))
}

fn data<'a>(ctx: &Context<'a>) -> &'a RequestData {
    ctx.data_unchecked::<RequestData>()
}

/// An id argument (`what`) that must be a UUID.
fn uuid(id: &ID, what: &str) -> Result<Uuid, async_graphql::Error> {
    Uuid::parse_str(id).map_err(|_| error("VALIDATION", format!("{what} must be a UUID")))
}

fn optional_uuid(id: Option<&ID>, what: &str) -> Result<Option<Uuid>, async_graphql::Error> {
    id.map(|id| uuid(id, what)).transpose()
}
