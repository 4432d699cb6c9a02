//! The object types: thin views over read-model rows. Personal fields are
//! opened on demand, only for callers holding `user.read_personal` (or the
//! user themself); an erased subject's fields read as null.

use async_graphql::{
    Context, Enum, InputValueError, InputValueResult, Json, Object, Result, Scalar, ScalarType,
    SimpleObject, Value as GqlValue, ID,
};
use custodia_application::ModelRow;
use custodia_domain::identity::consent::Channel;
use custodia_domain::identity::session::RevocationReason as DomainRevocationReason;
use custodia_domain::personal::FieldContext;
use custodia_domain::rbac::Permission;
use custodia_domain::{EventId, StreamCategory, StreamId, TenantId, Timestamp};
use custodia_projections::documents::{
    self, AuditDoc, ConsentDoc, MembershipDoc, Sealed, SessionDoc, TenantDoc, UserDoc,
};
use serde_json::Value;
use uuid::Uuid;

use super::{error, fail, RequestData};

/// An instant: an RFC 3339 string in UTC with microseconds
/// (`2026-11-29T23:03:13.123456Z`). Any RFC 3339 offset is accepted as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub Timestamp);

/// An instant: an RFC 3339 string in UTC with microseconds
/// (`2026-11-29T23:03:13.123456Z`). Any RFC 3339 offset is accepted as input.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        let GqlValue::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| DateTime(Timestamp(at.timestamp_micros())))
            .map_err(|_| InputValueError::custom("expected an RFC 3339 time"))
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(self.0.to_string())
    }
}

fn time(micros: i64) -> DateTime {
    DateTime(Timestamp(micros))
}

/// The row's document as its model's type, or an internal error (a row
/// written by an incompatible build; rebuilding the projection mends it).
fn document<D: serde::de::DeserializeOwned>(row: &ModelRow) -> Result<D> {
    documents::read(row).map_err(|e| {
        tracing::error!(error = %e, "read-model document unreadable");
        error("INTERNAL", "a read-model document is unreadable")
    })
}

/// The row's `kind` as one of a model's statuses.
fn kind<K>(row: &ModelRow, parse: fn(&str) -> Option<K>) -> Result<K> {
    row.kind
        .as_deref()
        .and_then(parse)
        .ok_or_else(|| error("INTERNAL", "a read-model row has no known status"))
}

fn tenant_of(row: &ModelRow) -> Result<TenantId> {
    row.tenant
        .and_then(|t| TenantId::from_uuid(t).ok())
        .ok_or_else(|| error("INTERNAL", "a read-model row has no tenant"))
}

/// Opens the sealed field `sealed` (named `field`) of a row of stream
/// `category`/`id`.
async fn open(
    ctx: &Context<'_>,
    tenant: TenantId,
    category: &str,
    id: Uuid,
    sealed: Option<&Sealed>,
    field: &str,
) -> Result<Option<String>> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let data = ctx.data_unchecked::<RequestData>();
    let event_id = EventId::from_uuid(sealed.event_id)
        .map_err(|_| error("INTERNAL", "a sealed field in a read model is unreadable"))?;
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
        .open(&context, &sealed.sealed)
        .await
        .map_err(|e| fail(custodia_application::commands::CommandError::from(e)))?;
    Ok(plain.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// A tenant's status.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "documents::TenantStatus")]
pub enum TenantStatus {
    /// Its users may sign in and act.
    Active,
    /// Every session and API key of the tenant is refused until a platform
    /// operator reactivates it.
    Suspended,
    /// Erased for good: its key is destroyed, nothing more happens in it.
    Erased,
}

/// A user's status.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "documents::UserStatus")]
pub enum UserStatus {
    /// Registered by invitation; has not signed in yet.
    Invited,
    /// May sign in.
    Active,
    /// May not sign in; sessions ended. Reactivation restores access.
    Suspended,
    /// Soft-deleted: kept sealed until retention erases the personal data.
    Deleted,
    /// Erased: every personal field is gone for good.
    Erased,
}

/// A session's status.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "documents::SessionStatus")]
pub enum SessionStatus {
    /// Not revoked (one past its refresh expiry is still listed as active).
    Active,
    /// Ended; see `revocationReason`.
    Revoked,
}

/// Why a session ended.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DomainRevocationReason")]
pub enum RevocationReason {
    /// The user signed out.
    Logout,
    /// An administrator revoked it, or the user signed out everywhere.
    Revoked,
    /// A refresh token already used was presented again (possible theft).
    RefreshReuse,
    /// The user was suspended or deleted.
    UserDisabled,
    /// The user's password was set or changed.
    PasswordChanged,
    /// The user held more sessions than allowed; the oldest ended.
    SessionLimit,
    /// The user was erased.
    SubjectErased,
    /// The user's password was reset through a reset link.
    PasswordReset,
}

/// A user's current decision on a consent purpose.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "documents::ConsentState")]
pub enum ConsentState {
    /// Consent given at `policyVersion`.
    Granted,
    /// Consent withdrawn.
    Withdrawn,
}

/// A tenant: an isolated organisation with its own users, roles and chain.
pub struct Tenant {
    row: ModelRow,
    doc: TenantDoc,
    status: TenantStatus,
}

impl Tenant {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        Ok(Self {
            doc: document(&row)?,
            status: kind(&row, documents::TenantStatus::parse)?.into(),
            row,
        })
    }
}

/// A tenant: an isolated organisation with its own users, roles and chain.
#[Object]
impl Tenant {
    /// The tenant's id.
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    /// Its slug for people (`acme`), if it has one: login and the account
    /// flows take it as well as the id.
    async fn slug(&self) -> Option<&str> {
        self.doc.slug.as_deref()
    }
    /// Its display name (not personal data).
    async fn name(&self) -> &str {
        &self.doc.name
    }
    /// Whether its users may act.
    async fn status(&self) -> TenantStatus {
        self.status
    }
    /// Password policy, MFA, token lifetimes, lockout, consent purposes, retention.
    async fn settings(&self) -> TenantSettings {
        TenantSettings::from(&self.doc.settings)
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        time(self.doc.created_at)
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime {
        time(self.doc.stamp.updated_at)
    }
    /// The tenant stream's version (for optimistic concurrency).
    async fn version(&self) -> u64 {
        self.doc.stamp.version
    }
}

/// A user of a tenant. Personal fields are sealed and opened on demand.
pub struct User {
    row: ModelRow,
    doc: UserDoc,
    status: UserStatus,
}

impl User {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        Ok(Self {
            doc: document(&row)?,
            status: kind(&row, documents::UserStatus::parse)?.into(),
            row,
        })
    }

    fn uuid(&self) -> Uuid {
        Uuid::parse_str(&self.row.id).unwrap_or_default()
    }

    async fn personal(
        &self,
        ctx: &Context<'_>,
        sealed: Option<&Sealed>,
        field: &str,
    ) -> Result<Option<String>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.row)?;
        data.authorize(tenant, Permission::UserReadPersonal, Some(self.uuid()))?;
        open(ctx, tenant, "user", self.uuid(), sealed, field).await
    }
}

/// A user of a tenant. Personal fields are sealed and opened on demand.
#[Object]
impl User {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    /// The tenant the user belongs to.
    async fn tenant_id(&self) -> Result<ID> {
        Ok(ID(tenant_of(&self.row)?.to_string()))
    }
    /// Whether the user may sign in.
    async fn status(&self) -> UserStatus {
        self.status
    }
    /// Whether the user proved their current address (followed a link sent
    /// to it, or an identity provider vouched for it). A change of address
    /// makes it false again.
    async fn email_verified(&self) -> bool {
        self.doc.email_verified
    }
    /// Whether the user was erased: their personal fields are null for
    /// good (not an error).
    async fn erased(&self) -> bool {
        self.status == UserStatus::Erased
    }
    /// When the user was registered.
    async fn created_at(&self) -> DateTime {
        time(self.doc.created_at)
    }
    /// When the user last changed.
    async fn updated_at(&self) -> DateTime {
        time(self.doc.stamp.updated_at)
    }
    /// The user stream's version (for optimistic concurrency).
    async fn version(&self) -> u64 {
        self.doc.stamp.version
    }
    /// Personal: needs `user.read_personal` (or being this user).
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.personal(ctx, self.doc.email.as_ref(), "email").await
    }
    /// Personal: the address a requested change of address waits on, until
    /// the user follows the link sent to it (`email` stays the sign-in
    /// address until then); null when no change is pending.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn pending_email(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        match &self.doc.pending_email {
            Some(sealed) => self.personal(ctx, Some(sealed), "email").await,
            None => Ok(None),
        }
    }
    /// Personal.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn display_name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let sealed = self.doc.profile.display_name.as_ref();
        self.personal(ctx, sealed, "display_name").await
    }
    /// Personal.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.personal(ctx, self.doc.profile.phone.as_ref(), "phone")
            .await
    }
    /// Personal: the custom attributes, a JSON object of strings.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn attributes(&self, ctx: &Context<'_>) -> Result<Option<Json<Value>>> {
        let sealed = self.doc.profile.attributes.as_ref();
        let json = self.personal(ctx, sealed, "attributes").await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()).map(Json))
    }
    /// The roles the user holds in the tenant (needs `role.read`).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.row)?;
        data.authorize(tenant, Permission::RoleRead, Some(self.uuid()))?;
        let row = data
            .state
            .models
            .get("membership", &format!("{tenant}/{}", self.row.id))
            .await
            .map_err(super::store_failure)?;
        match row {
            Some(row) => Ok(document::<MembershipDoc>(&row)?.roles),
            None => Ok(Vec::new()),
        }
    }
}

/// A group of members, as an identity provider keeps it over SCIM; the
/// tenant's admins decide the roles it grants (ADR 0012).
#[derive(SimpleObject)]
pub struct Group {
    /// Its id (the SCIM id).
    pub id: ID,
    /// Its name, as the provider gives it.
    pub name: String,
    /// The provider's id for it.
    pub external_id: Option<String>,
    /// The ids of its members.
    pub member_ids: Vec<ID>,
    /// The roles it grants its members (`admin`, …, `custom:<name>`).
    pub roles: Vec<String>,
    /// How many changes it has had (its SCIM version).
    pub revision: u64,
}

impl Group {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        let doc: documents::GroupDoc = document(&row)?;
        Ok(Self {
            id: ID(row.id),
            name: doc.name,
            external_id: doc.external_id,
            member_ids: doc.members.iter().map(|m| ID(m.to_string())).collect(),
            roles: doc.roles,
            revision: doc.stamp.version,
        })
    }
}

/// A message Custodia sends a person (an invitation, a verification or
/// reset link, a notice) and where its delivery stands. Never its
/// recipient, link or text.
#[derive(SimpleObject)]
pub struct Message {
    /// The message's id (its `Message-ID` is `<id@custodia>`).
    pub id: ID,
    /// The user it is for.
    pub user_id: ID,
    /// `invitation`, `verification`, `password_reset` or `address_change_notice`.
    pub kind: String,
    /// `queued`, `retrying`, `sent` or `abandoned`.
    pub status: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When it was queued (with the change that caused it).
    pub queued_at: DateTime,
    /// When the next attempt is due, while it is not sent.
    pub next_attempt_at: Option<DateTime>,
    /// When the mail server accepted it.
    pub sent_at: Option<DateTime>,
    /// Why the last attempt failed (an SMTP reply code, `connection`, …).
    pub last_error: Option<String>,
}

/// A tenant's own mail template for a kind of message (ADR 0013).
#[derive(SimpleObject)]
#[graphql(name = "MailTemplate")]
pub struct MailTemplateView {
    /// `invitation`, `verification`, `password_reset` or `address_change_notice`.
    pub kind: String,
    /// Its language tag (lowercase); null for the tenant's default.
    pub locale: Option<String>,
    /// The subject template.
    pub subject: String,
    /// The plain-text part's template.
    pub text: String,
    /// The HTML part's template.
    pub html: String,
}

impl MailTemplateView {
    pub fn all(templates: &custodia_domain::identity::mail_template::MailTemplates) -> Vec<Self> {
        templates
            .all()
            .map(|(kind, locale, t)| Self {
                kind: kind.name().to_owned(),
                locale: locale.map(|l| l.as_str().to_owned()),
                subject: t.subject.clone(),
                text: t.text.clone(),
                html: t.html.clone(),
            })
            .collect()
    }
}

impl Message {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        let doc: documents::MessageDoc = document(&row)?;
        Ok(Self {
            id: ID(row.id),
            user_id: ID(row.parent.unwrap_or_default().to_string()),
            kind: doc.kind,
            status: row.kind.unwrap_or_default(),
            attempts: doc.attempts,
            queued_at: time(doc.queued_at),
            next_attempt_at: doc.next_attempt_at.map(time),
            sent_at: doc.sent_at.map(time),
            last_error: doc.last_error,
        })
    }
}

/// A role: a named set of permissions.
#[derive(SimpleObject)]
pub struct Role {
    /// `owner`, `admin`, … or `custom:<name>`.
    pub name: String,
    /// Whether it is one of Custodia's roles (not editable).
    pub built_in: bool,
    /// The permissions it grants (`user.read`, …).
    pub permissions: Vec<String>,
}

/// A user's sign-in, kept alive by refresh tokens.
pub struct Session {
    row: ModelRow,
    doc: SessionDoc,
    status: SessionStatus,
}

impl Session {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        Ok(Self {
            doc: document(&row)?,
            status: kind(&row, documents::SessionStatus::parse)?.into(),
            row,
        })
    }
}

/// Where a session was started from (personal data).
#[derive(SimpleObject)]
pub struct ClientInfo {
    /// The IP address at sign-in.
    pub ip: Option<String>,
    /// The user agent at sign-in.
    pub user_agent: Option<String>,
}

/// A user's sign-in, kept alive by refresh tokens.
#[Object]
impl Session {
    /// The session's id.
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    /// The user signed in.
    async fn user_id(&self) -> ID {
        ID(self.doc.user.to_string())
    }
    /// Whether it is still in use.
    async fn status(&self) -> SessionStatus {
        self.status
    }
    /// When the user signed in.
    async fn started_at(&self) -> DateTime {
        time(self.doc.started_at)
    }
    /// When its refresh token was last used (null: never).
    async fn last_refreshed_at(&self) -> Option<DateTime> {
        self.doc.last_refreshed_at.map(time)
    }
    /// When its current refresh token expires.
    async fn refresh_expires_at(&self) -> DateTime {
        time(self.doc.refresh_expires_at)
    }
    /// When it ended (null: not revoked).
    async fn revoked_at(&self) -> Option<DateTime> {
        self.doc.revoked_at.map(time)
    }
    /// Why it ended (null: not revoked).
    async fn revocation_reason(&self) -> Option<RevocationReason> {
        self.doc.revocation_reason.map(Into::into)
    }
    /// Personal (IP address and user agent at sign-in); null once the
    /// subject is erased or access-data retention expired its day.
    #[graphql(complexity = "super::OPEN_FIELD_COST")]
    async fn client(&self, ctx: &Context<'_>) -> Result<Option<ClientInfo>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = tenant_of(&self.row)?;
        data.authorize(tenant, Permission::UserReadPersonal, Some(self.doc.user))?;
        let id = Uuid::parse_str(&self.row.id).unwrap_or_default();
        let sealed = self.doc.client.as_ref();
        let Some(json) = open(ctx, tenant, "session", id, sealed, "client").await? else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(&json).unwrap_or_default();
        let text = |field: &str| value[field].as_str().map(str::to_owned);
        Ok(Some(ClientInfo {
            ip: text("ip"),
            user_agent: text("user_agent"),
        }))
    }
}

/// Where consent was given, as recorded.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "Channel")]
pub enum ConsentChannel {
    /// A web page.
    Web,
    /// A mobile app.
    MobileApp,
    /// By email.
    Email,
    /// By phone.
    Phone,
    /// On paper.
    Paper,
    /// Through an API.
    Api,
}

/// A user's current decision on one purpose (the full history stays in
/// the log).
pub struct Consent {
    row: ModelRow,
    doc: ConsentDoc,
    state: ConsentState,
}

impl Consent {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        Ok(Self {
            doc: document(&row)?,
            state: kind(&row, documents::ConsentState::parse)?.into(),
            row,
        })
    }
}

/// A user's current decision on one purpose (the full history stays in
/// the log).
#[Object]
impl Consent {
    /// The data subject.
    async fn user_id(&self) -> Option<ID> {
        self.row.parent.map(|u| ID(u.to_string()))
    }
    /// The purpose, as the tenant's settings declare it.
    async fn purpose(&self) -> &str {
        &self.doc.purpose
    }
    /// Given or withdrawn.
    async fn state(&self) -> ConsentState {
        self.state
    }
    /// The policy version the decision was made on.
    async fn policy_version(&self) -> u32 {
        self.doc.policy_version
    }
    /// Where the decision was made.
    async fn channel(&self) -> ConsentChannel {
        self.doc.channel.into()
    }
    /// SHA-256 (hex) of the text the subject was shown, if recorded.
    async fn evidence_sha256(&self) -> Option<&str> {
        self.doc.evidence_sha256.as_deref()
    }
    /// When the decision was made.
    async fn at(&self) -> DateTime {
        time(self.row.at)
    }
}

/// One event of the log, as the audit timeline keeps it: coordinates and
/// metadata, never the payload.
pub struct AuditEvent {
    row: ModelRow,
    doc: AuditDoc,
}

impl AuditEvent {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        Ok(Self {
            doc: document(&row)?,
            row,
        })
    }
}

/// One event of the log, as the audit timeline keeps it: coordinates and
/// metadata, never the payload.
#[Object]
impl AuditEvent {
    /// The event's id.
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    /// The tenant whose chain holds the event.
    async fn tenant_id(&self) -> Option<ID> {
        self.row.tenant.map(|t| ID(t.to_string()))
    }
    /// The event type (`UserSuspended`, …).
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.doc.event_type
    }
    /// The version of its payload's schema.
    async fn schema_version(&self) -> u32 {
        self.doc.schema_version
    }
    /// The kind of stream (`user`, `session`, `tenant`, …).
    async fn stream_category(&self) -> &str {
        &self.doc.stream_category
    }
    /// The subject: the id of the stream the event belongs to.
    async fn stream_id(&self) -> ID {
        ID(self.doc.stream_id.to_string())
    }
    /// The stream's version after this event (1 for the first).
    async fn stream_version(&self) -> u64 {
        self.doc.stream_version
    }
    /// The event's index in its tenant's hash chain (0 for the first).
    async fn chain_index(&self) -> u64 {
        self.doc.chain_index
    }
    /// The event's position in the whole log.
    async fn position(&self) -> u64 {
        self.doc.position
    }
    /// The event's hash (hex), as `custodia verify` recomputes it.
    async fn hash(&self) -> &str {
        &self.doc.hash
    }
    /// `system`, `user:<id>` or `service:<id>`.
    async fn actor(&self) -> &str {
        &self.doc.actor
    }
    /// The command that wrote it (one command may write several events).
    async fn command_id(&self) -> ID {
        ID(self.doc.command_id.to_string())
    }
    /// Shared by every event of one request or flow.
    async fn correlation_id(&self) -> ID {
        ID(self.doc.correlation_id.to_string())
    }
    /// The event that caused this one, if any (a session revoked because
    /// its user was suspended names the suspension).
    async fn causation_id(&self) -> Option<ID> {
        self.doc.causation_id.map(|id| ID(id.to_string()))
    }
    /// Where the command came from (`graphql`, `http`, `cli`, …).
    async fn origin(&self) -> &str {
        &self.doc.origin
    }
    /// When it was recorded.
    async fn recorded_at(&self) -> DateTime {
        time(self.row.at)
    }
    /// Its inclusion proof under the latest signed checkpoint of its
    /// tenant's chain, as `eventProof` answers it (docs/audit-format.md);
    /// null until a checkpoint covers it, and for platform events. A few
    /// reads each: ask for it on the events you need.
    #[graphql(complexity = 10)]
    async fn proof(&self, ctx: &Context<'_>) -> Result<Option<async_graphql::Json<Value>>> {
        let Some(tenant) = self.row.tenant.and_then(|t| TenantId::from_uuid(t).ok()) else {
            return Ok(None);
        };
        let data = ctx.data_unchecked::<RequestData>();
        crate::checkpoints::proof_under_checkpoint(
            &*data.state.models,
            &data.state.checkpoints,
            custodia_domain::ChainId::Tenant(tenant),
            self.doc.chain_index,
        )
        .await
        .map(|proof| proof.map(async_graphql::Json))
        .map_err(|e| fail(custodia_application::commands::CommandError::Store(e)))
    }
}

/// A tenant's settings.
#[derive(SimpleObject)]
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
    /// Whether users may erase themselves (`eraseSubject` on their own id).
    pub self_service_erasure: bool,
    /// Whether login refuses a user whose address is not verified.
    pub require_verified_email: bool,
    /// How long an invitation link lasts (1 to 30 days).
    pub invitation_days: u16,
    /// How long a verification link lasts (1 to 168 hours).
    pub verification_hours: u16,
    /// How long a password-reset link lasts (5 to 60 minutes).
    pub reset_minutes: u16,
}

impl From<&custodia_domain::identity::tenant::TenantSettings> for TenantSettings {
    fn from(s: &custodia_domain::identity::tenant::TenantSettings) -> Self {
        Self {
            password_min_length: s.password_min_length,
            mfa_required: s.mfa_required,
            access_token_minutes: s.access_token_minutes,
            refresh_token_days: s.refresh_token_days,
            lockout_threshold: s.lockout_threshold,
            lockout_minutes: s.lockout_minutes,
            consent_purposes: s
                .consent_purposes
                .iter()
                .map(|p| ConsentPurpose {
                    id: p.id.clone(),
                    version: p.version,
                })
                .collect(),
            deleted_user_retention_days: s.deleted_user_retention_days,
            access_data_retention_days: s.access_data_retention_days,
            self_service_erasure: s.self_service_erasure,
            require_verified_email: s.flows.require_verified_email,
            invitation_days: s.flows.invitation_days,
            verification_hours: s.flows.verification_hours,
            reset_minutes: s.flows.reset_minutes,
        }
    }
}

/// A purpose users may consent to.
#[derive(SimpleObject)]
pub struct ConsentPurpose {
    /// `[a-z0-9_]`, 1 to 64.
    pub id: String,
    /// The current policy version (a grant must name it).
    pub version: u32,
}

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
    pub document: Json<custodia_application::commands::privacy::ErasureReceipt>,
}

impl From<custodia_application::commands::privacy::ErasureReceipt> for ErasureReceipt {
    fn from(receipt: custodia_application::commands::privacy::ErasureReceipt) -> Self {
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

/// One decision in a subject's consent history, as the log holds it.
#[derive(SimpleObject)]
pub struct ConsentDecision {
    /// The purpose decided on.
    pub purpose: String,
    /// Given or withdrawn.
    pub state: ConsentState,
    /// The policy version it was made on.
    pub policy_version: u32,
    /// Where it was made.
    pub channel: ConsentChannel,
    /// SHA-256 (hex) of the text the subject was shown, if recorded.
    pub evidence_sha256: Option<String>,
    /// When it was made.
    pub at: DateTime,
    /// When it was recorded.
    pub recorded_at: DateTime,
    /// Who recorded it: `user:<id>` (the subject or someone on their
    /// behalf) or `service:<id>`.
    pub actor: String,
    /// The event that records it.
    pub event_id: ID,
    /// The event's position in the log.
    pub position: u64,
    /// The event's hash (hex), as `custodia verify` recomputes it.
    pub hash: String,
}

impl From<custodia_application::commands::consent::ConsentRecord> for ConsentDecision {
    fn from(record: custodia_application::commands::consent::ConsentRecord) -> Self {
        let decision = record.decision;
        Self {
            purpose: decision.purpose,
            state: if record.granted {
                ConsentState::Granted
            } else {
                ConsentState::Withdrawn
            },
            policy_version: decision.policy_version,
            channel: decision.channel.into(),
            evidence_sha256: decision.evidence_sha256.map(hex::encode),
            at: DateTime(decision.at),
            recorded_at: DateTime(record.recorded_at),
            actor: record.actor.to_string(),
            event_id: ID(record.event_id.to_string()),
            position: record.position,
            hash: record.hash,
        }
    }
}

/// A role a user held at the moment an access review asks about.
#[derive(SimpleObject)]
pub struct RoleHolding {
    /// The member.
    pub user_id: ID,
    /// The role (`owner`, `admin`, …, or `custom:<name>`).
    pub role: String,
    /// When the grant in force at that moment was made.
    pub since: DateTime,
    /// Who made it: `system`, `user:<id>` or `service:<id>`.
    pub granted_by: String,
    /// The grant's event.
    pub grant_event_id: ID,
    /// The member's access was paused (suspended, deleted or erased): the
    /// role is held but grants nothing.
    pub paused: bool,
    /// The permissions the role gave, as it was defined then.
    pub permissions: Vec<String>,
    /// The group the role came through (null: granted to the member); then
    /// `since` and `grantedBy` are the later of the role's grant to the
    /// group and the member's joining it.
    pub group_id: Option<ID>,
}

impl From<custodia_application::commands::audit::Holding> for RoleHolding {
    fn from(holding: custodia_application::commands::audit::Holding) -> Self {
        Self {
            user_id: ID(holding.user.to_string()),
            role: holding.role,
            since: DateTime(holding.since),
            granted_by: holding.granted_by.to_string(),
            grant_event_id: ID(holding.grant_event.to_string()),
            paused: holding.paused,
            permissions: holding.permissions,
            group_id: holding.group.map(|g| ID(g.to_string())),
        }
    }
}

/// What happened to a role assignment.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AccessChangeKind {
    /// The role was granted.
    Granted,
    /// The role was revoked.
    Revoked,
}

/// A grant or revocation, as the log holds it.
#[derive(SimpleObject)]
pub struct AccessChange {
    /// When it was recorded.
    pub at: DateTime,
    /// Granted or revoked.
    pub change: AccessChangeKind,
    /// The member.
    pub user_id: ID,
    /// The role.
    pub role: String,
    /// Who did it: `system`, `user:<id>` or `service:<id>`.
    pub actor: String,
    /// The event that records it.
    pub event_id: ID,
    /// The group it came through (null: a grant to the member): the member
    /// joined or left it, or the role was granted to or revoked from it.
    pub group_id: Option<ID>,
}

impl From<custodia_application::commands::audit::AccessChange> for AccessChange {
    fn from(change: custodia_application::commands::audit::AccessChange) -> Self {
        Self {
            at: DateTime(change.at),
            change: if change.change == "granted" {
                AccessChangeKind::Granted
            } else {
                AccessChangeKind::Revoked
            },
            user_id: ID(change.user.to_string()),
            role: change.role,
            actor: change.actor.to_string(),
            event_id: ID(change.event_id.to_string()),
            group_id: change.group.map(|g| ID(g.to_string())),
        }
    }
}

/// Whether a subject's personal data is in an answer.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "custodia_application::commands::audit::PersonalData")]
pub enum PersonalDataState {
    /// Opened: the reader may read it and its key exists.
    Shown,
    /// Left out: the reader lacks `user.read_personal`.
    Withheld,
    /// Its key is destroyed (the subject or the tenant was erased).
    Erased,
}

/// A consent purpose's decision in force at a moment.
#[derive(SimpleObject)]
pub struct ConsentInForce {
    /// The purpose (as the tenant declares it).
    pub purpose: String,
    /// Granted or withdrawn.
    pub state: ConsentState,
    /// The policy version the decision was made under.
    pub policy_version: u32,
    /// When the decision in force was recorded.
    pub since: DateTime,
    /// Who recorded it: `system`, `user:<id>` or `service:<id>`.
    pub actor: String,
    /// The event that records it.
    pub event_id: ID,
}

/// A user as the log held them at a moment (a fold of the log up to it).
#[derive(SimpleObject)]
pub struct SubjectAsOf {
    /// The user.
    pub user_id: ID,
    /// The moment asked about.
    pub at: DateTime,
    /// Null before the user was registered.
    pub status: Option<UserStatus>,
    /// Whether the fields below were opened, withheld or are erased.
    pub personal_data: PersonalDataState,
    /// Their email address then (when shown).
    pub email: Option<String>,
    /// Their display name then (when shown).
    pub display_name: Option<String>,
    /// Their phone number then (when shown).
    pub phone: Option<String>,
    /// The roles held then, since when and granted by whom.
    pub roles: Vec<RoleHolding>,
    /// Each consent purpose's decision in force; null without
    /// `consent.read`.
    pub consents: Option<Vec<ConsentInForce>>,
    /// The last event of the user's stream at that moment.
    pub last_event_id: Option<ID>,
    /// When that event was recorded.
    pub last_event_at: Option<DateTime>,
}

impl SubjectAsOf {
    pub fn new(
        user: uuid::Uuid,
        at: custodia_domain::Timestamp,
        subject: custodia_application::commands::audit::SubjectAt,
    ) -> Self {
        use custodia_domain::identity::user::UserStatus as S;
        let status = subject.status.map(|status| match status {
            S::Invited => UserStatus::Invited,
            S::Active => UserStatus::Active,
            S::Suspended => UserStatus::Suspended,
            S::Deleted => UserStatus::Deleted,
            S::Erased => UserStatus::Erased,
        });
        let personal = subject.personal;
        Self {
            user_id: ID(user.to_string()),
            at: DateTime(at),
            status,
            personal_data: subject.personal_data.into(),
            email: personal.email,
            display_name: personal.profile.display_name,
            phone: personal.profile.phone,
            roles: subject.roles.into_iter().map(Into::into).collect(),
            consents: subject.consents.map(|consents| {
                consents
                    .into_iter()
                    .map(|c| ConsentInForce {
                        purpose: c.purpose,
                        state: if c.granted {
                            ConsentState::Granted
                        } else {
                            ConsentState::Withdrawn
                        },
                        policy_version: c.policy_version,
                        since: DateTime(c.since),
                        actor: c.actor.to_string(),
                        event_id: ID(c.event_id.to_string()),
                    })
                    .collect()
            }),
            last_event_id: subject.last_event.map(|(id, _)| ID(id.to_string())),
            last_event_at: subject.last_event.map(|(_, at)| DateTime(at)),
        }
    }
}

/// A SCIM token (never its secret): what an identity provider provisions
/// the tenant with (docs/scim.md).
#[derive(SimpleObject)]
pub struct ScimToken {
    /// Its id (what `revokeApiKey` takes).
    pub key_id: ID,
    /// Its name, for people.
    pub name: String,
    /// When it was made.
    pub created_at: DateTime,
    /// Who made it: `user:<id>`, or `system` (the platform operator).
    pub created_by: String,
    /// Whether it still opens `/scim/v2`.
    pub active: bool,
    /// When it was revoked.
    pub revoked_at: Option<DateTime>,
    /// When it was last used (to the hour).
    pub last_used_at: Option<DateTime>,
}

impl ScimToken {
    pub fn from_row(row: ModelRow) -> Result<Self> {
        let doc: documents::ApiKeyDoc = document(&row)?;
        Ok(Self {
            key_id: ID(row.id.clone()),
            name: doc.name,
            created_at: time(row.at),
            created_by: doc.created_by,
            active: doc.revoked_at.is_none(),
            revoked_at: doc.revoked_at.map(time),
            last_used_at: doc.last_used_at.map(time),
        })
    }
}
