//! The object types: thin views over read-model rows. Personal fields are
//! opened on demand, only for callers holding `user.read_personal` (or the
//! user themself); an erased subject's fields read as null.

use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject, ID};
use custodia_application::ModelRow;
use custodia_domain::identity::consent::Channel;
use custodia_domain::personal::{FieldContext, SealedField};
use custodia_domain::rbac::Permission;
use custodia_domain::{EventId, StreamCategory, StreamId, TenantId, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use super::{error, fail, RequestData};

fn time(micros: i64) -> String {
    Timestamp(micros).to_string()
}

fn doc_time(doc: &Value, field: &str) -> Option<String> {
    doc[field].as_i64().map(time)
}

fn doc_str(doc: &Value, field: &str) -> Option<String> {
    doc[field].as_str().map(str::to_owned)
}

fn tenant_of(row: &ModelRow) -> Result<TenantId> {
    row.tenant
        .and_then(|t| TenantId::from_uuid(t).ok())
        .ok_or_else(|| error("INTERNAL", "a read-model row has no tenant"))
}

/// Opens the sealed field `doc[field]` of a row of stream `category`/`id`.
async fn open(
    ctx: &Context<'_>,
    tenant: TenantId,
    category: &str,
    id: Uuid,
    sealed: &Value,
    field: &str,
) -> Result<Option<String>> {
    if sealed.is_null() {
        return Ok(None);
    }
    let data = ctx.data_unchecked::<RequestData>();
    let unreadable = || error("INTERNAL", "a sealed field in a read model is unreadable");
    let value: SealedField =
        serde_json::from_value(sealed["sealed"].clone()).map_err(|_| unreadable())?;
    let event_id = sealed["event_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .and_then(|u| EventId::from_uuid(u).ok())
        .ok_or_else(unreadable)?;
    let stream = StreamId::new(
        StreamCategory::parse(category).expect("resolver categories are valid"),
        id,
    );
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field,
    };
    let plain = data
        .state
        .ports
        .vault
        .open(&context, &value)
        .await
        .map_err(|e| fail(custodia_application::commands::CommandError::from(e)))?;
    Ok(plain.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

pub struct Tenant(pub ModelRow);

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> Option<String> {
        doc_str(&self.0.doc, "name")
    }
    /// `active` or `suspended`.
    async fn status(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    /// Password policy, MFA, token lifetimes, lockout, consent purposes, retention.
    async fn settings(&self) -> Option<TenantSettings> {
        serde_json::from_value(self.0.doc["settings"].clone()).ok()
    }
    async fn created_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "created_at")
    }
    async fn updated_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "updated_at")
    }
    /// The tenant stream's version (for optimistic concurrency).
    async fn version(&self) -> Option<u64> {
        self.0.doc["version"].as_u64()
    }
}

pub struct User(pub ModelRow);

impl User {
    fn uuid(&self) -> Uuid {
        Uuid::parse_str(&self.0.id).unwrap_or_default()
    }

    async fn personal(
        &self,
        ctx: &Context<'_>,
        path: &[&str],
        field: &str,
    ) -> Result<Option<String>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.0)?;
        data.authorize(tenant, Permission::UserReadPersonal, Some(self.uuid()))?;
        let sealed = path.iter().fold(&self.0.doc, |doc, key| &doc[*key]);
        open(ctx, tenant, "user", self.uuid(), sealed, field).await
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant.map(|t| ID(t.to_string()))
    }
    /// `invited`, `active`, `suspended` or `deleted`.
    async fn status(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    async fn created_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "created_at")
    }
    async fn updated_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "updated_at")
    }
    async fn version(&self) -> Option<u64> {
        self.0.doc["version"].as_u64()
    }
    /// Personal: needs `user.read_personal` (or being this user).
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.personal(ctx, &["email"], "email").await
    }
    /// Personal.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn display_name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.personal(ctx, &["profile", "display_name"], "display_name")
            .await
    }
    /// Personal.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.personal(ctx, &["profile", "phone"], "phone").await
    }
    /// Personal: the custom attributes, a JSON object of strings.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn attributes(&self, ctx: &Context<'_>) -> Result<Option<Json<Value>>> {
        let json = self
            .personal(ctx, &["profile", "attributes"], "attributes")
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()).map(Json))
    }
    /// The roles the user holds in the tenant (needs `role.read`).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.0)?;
        data.authorize(tenant, Permission::RoleRead, Some(self.uuid()))?;
        let row = data
            .state
            .models
            .get("membership", &format!("{tenant}/{}", self.0.id))
            .await
            .map_err(super::store_failure)?;
        Ok(row
            .and_then(|r| r.doc["roles"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct Role {
    /// `owner`, `admin`, … or `custom:<name>`.
    pub name: String,
    pub built_in: bool,
    pub permissions: Vec<String>,
}

pub struct Session(pub ModelRow);

#[derive(SimpleObject)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[Object]
impl Session {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn user_id(&self) -> Option<ID> {
        self.0.parent.map(|u| ID(u.to_string()))
    }
    /// `active` or `revoked`.
    async fn status(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    async fn started_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "started_at")
    }
    async fn last_refreshed_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "last_refreshed_at")
    }
    async fn refresh_expires_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "refresh_expires_at")
    }
    async fn revoked_at(&self) -> Option<String> {
        doc_time(&self.0.doc, "revoked_at")
    }
    /// `logout`, `revoked`, `refresh_reuse`, `user_disabled`, `password_changed` or `session_limit`.
    async fn revocation_reason(&self) -> Option<String> {
        doc_str(&self.0.doc, "revocation_reason")
    }
    /// Personal (IP address and user agent at sign-in).
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn client(&self, ctx: &Context<'_>) -> Result<Option<ClientInfo>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.0)?;
        data.authorize(tenant, Permission::UserReadPersonal, self.0.parent)?;
        let id = Uuid::parse_str(&self.0.id).unwrap_or_default();
        let Some(json) = open(ctx, tenant, "session", id, &self.0.doc["client"], "client").await?
        else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(&json).unwrap_or_default();
        Ok(Some(ClientInfo {
            ip: doc_str(&value, "ip"),
            user_agent: doc_str(&value, "user_agent"),
        }))
    }
}

/// Where consent was given, as recorded.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "Channel")]
pub enum ConsentChannel {
    Web,
    MobileApp,
    Email,
    Phone,
    Paper,
    Api,
}

pub struct Consent(pub ModelRow);

#[Object]
impl Consent {
    async fn user_id(&self) -> Option<ID> {
        self.0.parent.map(|u| ID(u.to_string()))
    }
    async fn purpose(&self) -> Option<String> {
        doc_str(&self.0.doc, "purpose")
    }
    /// `granted` or `withdrawn`.
    async fn state(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    async fn policy_version(&self) -> Option<u64> {
        self.0.doc["policy_version"].as_u64()
    }
    /// `web`, `mobile_app`, `email`, `phone`, `paper` or `api`.
    async fn channel(&self) -> Option<String> {
        doc_str(&self.0.doc, "channel")
    }
    async fn at(&self) -> String {
        time(self.0.at)
    }
}

pub struct AuditEvent(pub ModelRow);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The tenant whose chain holds the event.
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant.map(|t| ID(t.to_string()))
    }
    #[graphql(name = "type")]
    async fn event_type(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    async fn schema_version(&self) -> Option<u64> {
        self.0.doc["schema_version"].as_u64()
    }
    async fn stream_category(&self) -> Option<String> {
        doc_str(&self.0.doc, "stream_category")
    }
    /// The subject: the id of the stream the event belongs to.
    async fn stream_id(&self) -> Option<String> {
        doc_str(&self.0.doc, "stream_id")
    }
    async fn stream_version(&self) -> Option<u64> {
        self.0.doc["stream_version"].as_u64()
    }
    async fn chain_index(&self) -> Option<u64> {
        self.0.doc["chain_index"].as_u64()
    }
    async fn position(&self) -> Option<u64> {
        self.0.doc["position"].as_u64()
    }
    /// The event's hash (hex), as `custodia verify` recomputes it.
    async fn hash(&self) -> Option<String> {
        doc_str(&self.0.doc, "hash")
    }
    /// `system`, `user:<id>` or `service:<id>`.
    async fn actor(&self) -> Option<String> {
        doc_str(&self.0.doc, "actor")
    }
    async fn command_id(&self) -> Option<String> {
        doc_str(&self.0.doc, "command_id")
    }
    async fn correlation_id(&self) -> Option<String> {
        doc_str(&self.0.doc, "correlation_id")
    }
    async fn origin(&self) -> Option<String> {
        doc_str(&self.0.doc, "origin")
    }
    async fn recorded_at(&self) -> String {
        time(self.0.at)
    }
}

/// A tenant's settings, as its read model keeps them.
#[derive(SimpleObject, serde::Deserialize)]
pub struct TenantSettings {
    /// The shortest password accepted (8 to 128).
    pub password_min_length: u8,
    /// Whether every user must sign in with a second factor.
    pub mfa_required: bool,
    /// Access token lifetime (1 to 15 minutes).
    pub access_token_minutes: u16,
    /// Refresh token lifetime (1 to 30 days), renewed at each refresh.
    pub refresh_token_days: u16,
    /// Failed checks before an account locks (1 to 20).
    pub lockout_threshold: u8,
    /// How long a lock lasts (1 to 1440 minutes).
    pub lockout_minutes: u16,
    /// The purposes users may consent to, each at its policy version.
    pub consent_purposes: Vec<ConsentPurpose>,
    /// Days before a deleted user's personal data is erased (1 to 3650).
    pub deleted_user_retention_days: u16,
    /// Days before IP addresses and user agents are erased (1 to 3650).
    pub access_data_retention_days: u16,
}

/// A purpose users may consent to.
#[derive(SimpleObject, serde::Deserialize)]
pub struct ConsentPurpose {
    /// `[a-z0-9_]`, 1 to 64.
    pub id: String,
    /// The current policy version (a grant must name it).
    pub version: u32,
}
