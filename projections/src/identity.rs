//! The read models of the identity domain.
//!
//! | projection    | model(s)                | one row per                 |
//! |---------------|-------------------------|-----------------------------|
//! | `tenants`     | `tenant`                | tenant                      |
//! | `users`       | `user`                  | user (personal fields sealed) |
//! | `memberships` | `membership`, `role`    | member of a tenant; custom role |
//! | `sessions`    | `session`               | session                     |
//! | `consents`    | `consent`               | user and purpose            |
//! | `api_keys`    | `api_key`               | API key or SCIM token (no secret) |
//! | `audit`       | `audit_event`           | event (no payload)          |
//!
//! Each model's document is a type in [`crate::documents`]; personal
//! fields stay sealed, with the id of the event that sealed them (needed,
//! with the field name, to open them).

use std::sync::Arc;

use async_trait::async_trait;
use custodia_application::{ModelRow, ReadModelTx};
use custodia_domain::aggregate::{EventSchema, SchemaError, StoredForm};
use custodia_domain::identity::access_data::AccessDataEvent;
use custodia_domain::identity::api_key::{ApiKeyEvent, ApiKeyPurpose};
use custodia_domain::identity::consent::ConsentEvent;
use custodia_domain::identity::membership::MembershipEvent;
use custodia_domain::identity::message::MessageEvent;
use custodia_domain::identity::session::SessionEvent;
use custodia_domain::identity::tenant::TenantEvent;
use custodia_domain::identity::user::UserEvent;
use custodia_domain::{Actor, ChainId, RecordedEvent};
use uuid::Uuid;

use crate::documents::{
    self, ApiKeyDoc, AuditDoc, ConsentDoc, ConsentState, GroupDoc, MembershipDoc, MessageDoc,
    ProfileDoc, RoleDoc, Sealed, SessionDoc, SessionStatus, Stamp, TenantDoc, TenantStatus,
    UserDoc, UserStatus,
};
use crate::{Projection, ProjectionError};

/// Every projection of the identity domain.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Tenants),
        Arc::new(Users),
        Arc::new(MembershipsView),
        Arc::new(Sessions),
        Arc::new(Consents),
        Arc::new(Audit),
        Arc::new(ApiKeys),
        Arc::new(Messages),
    ]
}

/// The typed event (after upcasting), if `event` is in stream category
/// `category`.
fn decode<E: EventSchema>(
    event: &RecordedEvent,
    category: &str,
) -> Result<Option<E>, ProjectionError> {
    if event.stream.category.as_str() != category {
        return Ok(None);
    }
    let unreadable = |source| ProjectionError::Unreadable {
        position: event.position.0,
        source,
    };
    match E::from_stored(&StoredForm {
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        payload: event.payload.clone(),
    }) {
        Ok(typed) => Ok(Some(typed)),
        // A type this projection does not handle (a newer version's, or
        // another tool's): skipped and counted, never a halt. A type it
        // handles in a version or shape it cannot read halts it.
        Err(SchemaError::UnknownType(_)) => {
            crate::count_skipped(event);
            Ok(None)
        }
        Err(other) => Err(unreadable(other)),
    }
}

fn tenant_of(event: &RecordedEvent) -> Option<Uuid> {
    match event.chain {
        ChainId::Tenant(tenant) => Some(tenant.as_uuid()),
        ChainId::Platform => None,
    }
}

fn seq(event: &RecordedEvent) -> i64 {
    i64::try_from(event.position.0).unwrap_or(i64::MAX)
}

/// A new row for `event`'s stream entity.
fn row(
    model: &'static str,
    id: String,
    event: &RecordedEvent,
    doc: &impl serde::Serialize,
) -> ModelRow {
    ModelRow {
        model,
        id,
        tenant: tenant_of(event),
        parent: None,
        kind: None,
        actor: None,
        lookup: None,
        at: event.recorded_at.0,
        seq: seq(event),
        doc: documents::write(doc),
    }
}

/// The order of a row that keeps its place in listings when it changes:
/// its existing `seq`, or the position of the event that creates it.
async fn first_seq(
    tx: &mut dyn ReadModelTx,
    model: &'static str,
    id: &str,
    event: &RecordedEvent,
) -> Result<i64, ProjectionError> {
    Ok(tx
        .get(model, id)
        .await?
        .map_or_else(|| seq(event), |old| old.seq))
}

/// Reads the document of an existing row, changes it, stamps it with
/// `event` and writes it back (`None`: the row does not exist, which a
/// valid log never leads to: the event is ignored).
async fn update<D>(
    tx: &mut dyn ReadModelTx,
    model: &'static str,
    id: &str,
    event: &RecordedEvent,
    change: impl FnOnce(&mut ModelRow, &mut D),
) -> Result<(), ProjectionError>
where
    D: serde::Serialize + serde::de::DeserializeOwned + Stamped,
{
    let Some(mut row) = tx.get(model, id).await? else {
        return Ok(());
    };
    let mut doc: D = documents::read(&row)?;
    change(&mut row, &mut doc);
    *doc.stamp() = Stamp::of(event);
    row.doc = documents::write(&doc);
    tx.put(&row).await?;
    Ok(())
}

/// A document that records when its row last changed.
trait Stamped {
    fn stamp(&mut self) -> &mut Stamp;
}

macro_rules! stamped {
    ($($doc:ty),+) => {
        $(impl Stamped for $doc {
            fn stamp(&mut self) -> &mut Stamp {
                &mut self.stamp
            }
        })+
    };
}

stamped!(TenantDoc, UserDoc, SessionDoc, ApiKeyDoc);

pub struct Tenants;

#[async_trait]
impl Projection for Tenants {
    fn name(&self) -> &'static str {
        "tenants"
    }
    fn models(&self) -> &'static [&'static str] {
        &["tenant"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        if let Some(AccessDataEvent::Expired { days, .. }) =
            decode::<AccessDataEvent>(event, "access_data")?
        {
            // Not a change of the tenant itself: its stamp stays.
            let id = event.stream.id.to_string();
            let Some(mut row) = tx.get("tenant", &id).await? else {
                return Ok(());
            };
            let mut doc: TenantDoc = documents::read(&row)?;
            doc.access_data_expired_through =
                doc.access_data_expired_through.max(days.into_iter().max());
            row.doc = documents::write(&doc);
            tx.put(&row).await?;
            return Ok(());
        }
        let Some(typed) = decode::<TenantEvent>(event, "tenant")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        match typed {
            TenantEvent::Created { name, settings } => {
                let doc = TenantDoc {
                    name: name.as_str().to_owned(),
                    settings,
                    created_at: event.recorded_at.0,
                    access_data_expired_through: None,
                    slug: None,
                    stamp: Stamp::of(event),
                };
                let mut row = row("tenant", id, event, &doc);
                row.tenant = Some(event.stream.id);
                row.kind = Some(TenantStatus::Active.as_str().into());
                tx.put(&row).await?;
                Ok(())
            }
            other => {
                update(tx, "tenant", &id, event, |row, doc: &mut TenantDoc| {
                    let status = match other {
                        TenantEvent::SettingsChanged { settings } => {
                            doc.settings = settings;
                            return;
                        }
                        TenantEvent::SlugSet { slug } => {
                            doc.slug = Some(slug.as_str().to_owned());
                            row.lookup = doc.slug.clone();
                            return;
                        }
                        TenantEvent::Suspended => TenantStatus::Suspended,
                        TenantEvent::Reactivated => TenantStatus::Active,
                        TenantEvent::Closed => {
                            doc.slug = None;
                            row.lookup = None;
                            TenantStatus::Erased
                        }
                        TenantEvent::Created { .. } => unreachable!("handled above"),
                    };
                    row.kind = Some(status.as_str().into());
                })
                .await
            }
        }
    }
}

pub struct Users;

#[async_trait]
impl Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }
    fn models(&self) -> &'static [&'static str] {
        &["user", "user_external_id"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some(typed) = decode::<UserEvent>(event, "user")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        // The external id's index follows the profile (and goes with an
        // erasure).
        let external = match &typed {
            UserEvent::Registered { profile, .. } | UserEvent::ProfileUpdated { profile } => {
                Some(profile.external_id)
            }
            UserEvent::Erased { .. } => Some(None),
            _ => None,
        };
        match external {
            Some(Some(index)) => {
                let mut row = row(
                    "user_external_id",
                    id.clone(),
                    event,
                    &serde_json::json!({}),
                );
                row.parent = Some(event.stream.id);
                row.lookup = Some(hex::encode(index.0));
                tx.put(&row).await?;
            }
            Some(None) => tx.delete("user_external_id", &id).await?,
            None => {}
        }
        let sealed = |field: &Option<_>| field.as_ref().map(|f| Sealed::from_event(f, event));
        let profile = |p: &custodia_domain::identity::user::SealedProfile| ProfileDoc {
            display_name: sealed(&p.display_name),
            phone: sealed(&p.phone),
            attributes: sealed(&p.attributes),
        };
        match typed {
            UserEvent::Registered {
                email,
                email_index,
                profile: registered,
                invited,
                email_verified,
            } => {
                let doc = UserDoc {
                    email: Some(Sealed::from_event(&email, event)),
                    email_verified,
                    pending_email: None,
                    profile: profile(&registered),
                    created_at: event.recorded_at.0,
                    stamp: Stamp::of(event),
                };
                let mut row = row("user", id, event, &doc);
                let status = if invited {
                    UserStatus::Invited
                } else {
                    UserStatus::Active
                };
                row.kind = Some(status.as_str().into());
                row.lookup = Some(hex::encode(email_index.0));
                tx.put(&row).await?;
                Ok(())
            }
            other => {
                update(tx, "user", &id, event, |row, doc: &mut UserDoc| {
                    let status = match other {
                        UserEvent::Activated | UserEvent::Reactivated => UserStatus::Active,
                        UserEvent::Suspended => UserStatus::Suspended,
                        UserEvent::Deleted => UserStatus::Deleted,
                        UserEvent::ProfileUpdated { profile: updated } => {
                            doc.profile = profile(&updated);
                            return;
                        }
                        UserEvent::EmailChanged { email, email_index } => {
                            doc.email = Some(Sealed::from_event(&email, event));
                            doc.email_verified = false;
                            doc.pending_email = None;
                            row.lookup = Some(hex::encode(email_index.0));
                            return;
                        }
                        UserEvent::EmailVerified { email_index } => {
                            // Only the address the user has now.
                            doc.email_verified |=
                                row.lookup.as_deref() == Some(&hex::encode(email_index.0));
                            return;
                        }
                        UserEvent::EmailChangeRequested { email, .. } => {
                            doc.pending_email = Some(Sealed::from_event(&email, event));
                            return;
                        }
                        UserEvent::EmailChangeCancelled { .. } => {
                            doc.pending_email = None;
                            return;
                        }
                        UserEvent::Erased { .. } => {
                            doc.email = None;
                            doc.pending_email = None;
                            doc.profile = ProfileDoc::default();
                            row.lookup = None;
                            UserStatus::Erased
                        }
                        UserEvent::Registered { .. } => unreachable!("handled above"),
                    };
                    row.kind = Some(status.as_str().into());
                })
                .await
            }
        }
    }
}

/// Role assignments per member, each tenant's custom roles, and its groups.
pub struct MembershipsView;

#[async_trait]
impl Projection for MembershipsView {
    fn name(&self) -> &'static str {
        "memberships"
    }
    fn models(&self) -> &'static [&'static str] {
        &["membership", "role", "group"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some(typed) = decode::<MembershipEvent>(event, "memberships")? else {
            return Ok(());
        };
        let tenant = event.stream.id;
        match typed {
            MembershipEvent::RoleDefined { name, permissions } => {
                let id = format!("{tenant}/{}", name.as_str());
                let seq = first_seq(tx, "role", &id, event).await?;
                let doc = RoleDoc {
                    name: name.as_str().to_owned(),
                    permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
                };
                let mut row = row("role", id, event, &doc);
                row.seq = seq;
                tx.put(&row).await?;
            }
            MembershipEvent::RoleGranted { user, role } => {
                assign(tx, event, user, &role.to_string(), true).await?
            }
            MembershipEvent::RoleRevoked { user, role } => {
                assign(tx, event, user, &role.to_string(), false).await?
            }
            // The user's status (in the users model) already says so.
            MembershipEvent::MemberPaused { .. } | MembershipEvent::MemberResumed { .. } => {}
            MembershipEvent::GroupCreated {
                group,
                name,
                external_id,
            } => {
                let doc = GroupDoc {
                    name: name.as_str().to_owned(),
                    external_id: external_id.as_ref().map(|e| e.as_str().to_owned()),
                    members: vec![],
                    roles: vec![],
                    created_at: event.recorded_at.0,
                    stamp: Stamp {
                        updated_at: event.recorded_at.0,
                        version: 1,
                    },
                };
                let mut row = row("group", group.to_string(), event, &doc);
                row.lookup = doc.external_id.clone();
                tx.put(&row).await?;
            }
            MembershipEvent::GroupDeleted { group } => {
                tx.delete("group", &group.to_string()).await?
            }
            MembershipEvent::GroupRenamed {
                group,
                name,
                external_id,
            } => {
                change_group(tx, event, group, |row, doc| {
                    doc.name = name.as_str().to_owned();
                    doc.external_id = external_id.as_ref().map(|e| e.as_str().to_owned());
                    row.lookup = doc.external_id.clone();
                })
                .await?
            }
            MembershipEvent::GroupMembersAdded { group, members } => {
                change_group(tx, event, group, |_, doc| {
                    doc.members.extend(members);
                    doc.members.sort_unstable();
                    doc.members.dedup();
                })
                .await?
            }
            MembershipEvent::GroupMembersRemoved { group, members } => {
                change_group(tx, event, group, |_, doc| {
                    doc.members.retain(|m| !members.contains(m))
                })
                .await?
            }
            MembershipEvent::RoleGrantedToGroup { group, role } => {
                change_group(tx, event, group, |_, doc| {
                    doc.roles.push(role.to_string());
                    doc.roles.sort();
                    doc.roles.dedup();
                })
                .await?
            }
            MembershipEvent::RoleRevokedFromGroup { group, role } => {
                let role = role.to_string();
                change_group(tx, event, group, |_, doc| doc.roles.retain(|r| *r != role)).await?
            }
        }
        Ok(())
    }
}

/// Changes a group's row and counts the change in its revision.
async fn change_group(
    tx: &mut dyn ReadModelTx,
    event: &RecordedEvent,
    group: Uuid,
    change: impl FnOnce(&mut ModelRow, &mut GroupDoc),
) -> Result<(), ProjectionError> {
    let Some(mut row) = tx.get("group", &group.to_string()).await? else {
        return Ok(());
    };
    let mut doc: GroupDoc = documents::read(&row)?;
    change(&mut row, &mut doc);
    doc.stamp = Stamp {
        updated_at: event.recorded_at.0,
        version: doc.stamp.version + 1,
    };
    row.doc = documents::write(&doc);
    tx.put(&row).await?;
    Ok(())
}

/// Adds or removes one role of a member; a member without roles has no row.
async fn assign(
    tx: &mut dyn ReadModelTx,
    event: &RecordedEvent,
    user: Uuid,
    role: &str,
    granted: bool,
) -> Result<(), ProjectionError> {
    let id = format!("{}/{user}", event.stream.id);
    let mut row = match tx.get("membership", &id).await? {
        Some(row) => row,
        None => {
            let mut row = row("membership", id.clone(), event, &MembershipDoc::default());
            row.parent = Some(user);
            row
        }
    };
    let mut doc: MembershipDoc = documents::read(&row)?;
    doc.roles.retain(|r| r != role);
    if granted {
        doc.roles.push(role.to_owned());
        doc.roles.sort();
    }
    if doc.roles.is_empty() {
        tx.delete("membership", &id).await?;
    } else {
        row.doc = documents::write(&doc);
        row.at = event.recorded_at.0;
        tx.put(&row).await?;
    }
    Ok(())
}

pub struct Sessions;

#[async_trait]
impl Projection for Sessions {
    fn name(&self) -> &'static str {
        "sessions"
    }
    fn models(&self) -> &'static [&'static str] {
        &["session"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        if let Some(UserEvent::Erased { .. }) = decode::<UserEvent>(event, "user")? {
            return blank_clients(tx, event).await;
        }
        let Some(typed) = decode::<SessionEvent>(event, "session")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        match typed {
            SessionEvent::Started {
                user,
                at,
                refresh_expires_at,
                ..
            } => {
                let doc = SessionDoc {
                    user,
                    started_at: at.0,
                    last_refreshed_at: None,
                    refresh_expires_at: refresh_expires_at.0,
                    revoked_at: None,
                    revocation_reason: None,
                    client: None,
                    stamp: Stamp::of(event),
                };
                let mut row = row("session", id, event, &doc);
                row.parent = Some(user);
                row.kind = Some(SessionStatus::Active.as_str().into());
                row.at = at.0;
                tx.put(&row).await?;
                Ok(())
            }
            other => {
                update(
                    tx,
                    "session",
                    &id,
                    event,
                    |row, doc: &mut SessionDoc| match other {
                        SessionEvent::Refreshed {
                            at,
                            refresh_expires_at,
                            ..
                        } => {
                            doc.last_refreshed_at = Some(at.0);
                            doc.refresh_expires_at = refresh_expires_at.0;
                        }
                        SessionEvent::Revoked { at, reason } => {
                            row.kind = Some(SessionStatus::Revoked.as_str().into());
                            doc.revoked_at = Some(at.0);
                            doc.revocation_reason = Some(reason);
                        }
                        SessionEvent::ClientRecorded { client } => {
                            doc.client = Some(Sealed::from_event(&client, event))
                        }
                        SessionEvent::Started { .. } => unreachable!("handled above"),
                    },
                )
                .await
            }
        }
    }
}

/// Blanks where an erased user's sessions were started from, in every
/// session of theirs the model holds.
async fn blank_clients(
    tx: &mut dyn ReadModelTx,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let mut query = custodia_application::RowQuery {
        model: "session",
        tenant: tenant_of(event),
        parent: Some(event.stream.id),
        limit: 500,
        ..Default::default()
    };
    loop {
        let page = tx.list(&query).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        query.after_seq = Some(last.seq);
        for mut row in page {
            let mut doc: SessionDoc = documents::read(&row)?;
            if doc.client.take().is_some() {
                row.doc = documents::write(&doc);
                tx.put(&row).await?;
            }
        }
    }
}

/// Each user's current decision per purpose (the full history stays in
/// the log and is served from there).
pub struct Consents;

#[async_trait]
impl Projection for Consents {
    fn name(&self) -> &'static str {
        "consents"
    }
    fn models(&self) -> &'static [&'static str] {
        &["consent"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some(typed) = decode::<ConsentEvent>(event, "consent")? else {
            return Ok(());
        };
        let (decision, state) = match &typed {
            ConsentEvent::Granted(decision) => (decision, ConsentState::Granted),
            ConsentEvent::Withdrawn(decision) => (decision, ConsentState::Withdrawn),
        };
        let user = event.stream.id;
        let id = format!("{user}/{}", decision.purpose);
        let seq = first_seq(tx, "consent", &id, event).await?;
        let doc = ConsentDoc {
            purpose: decision.purpose.clone(),
            policy_version: decision.policy_version,
            channel: decision.channel,
            evidence_sha256: decision.evidence_sha256.map(hex::encode),
        };
        let mut row = row("consent", id, event, &doc);
        row.parent = Some(user);
        row.kind = Some(state.as_str().into());
        row.at = decision.at.0;
        row.seq = seq;
        tx.put(&row).await?;
        Ok(())
    }
}

/// API keys and SCIM tokens, for listing: never their secret (not even its
/// hash). `kind` is the purpose (`general`, `scim`).
pub struct ApiKeys;

#[async_trait]
impl Projection for ApiKeys {
    fn name(&self) -> &'static str {
        "api_keys"
    }
    fn models(&self) -> &'static [&'static str] {
        &["api_key"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some(typed) = decode::<ApiKeyEvent>(event, "api_key")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        match typed {
            ApiKeyEvent::Created {
                name,
                purpose,
                permissions,
                ..
            } => {
                let doc = ApiKeyDoc {
                    name: name.as_str().to_owned(),
                    permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
                    created_by: event.metadata.actor.to_string(),
                    revoked_at: None,
                    last_used_at: None,
                    stamp: Stamp::of(event),
                };
                let mut row = row("api_key", id, event, &doc);
                row.kind = Some(
                    match purpose {
                        ApiKeyPurpose::General => "general",
                        ApiKeyPurpose::Scim => "scim",
                    }
                    .into(),
                );
                tx.put(&row).await?;
            }
            ApiKeyEvent::Revoked { at } => {
                update(tx, "api_key", &id, event, |_, doc: &mut ApiKeyDoc| {
                    doc.revoked_at = Some(at.0)
                })
                .await?
            }
            ApiKeyEvent::Used { at } => {
                update(tx, "api_key", &id, event, |_, doc: &mut ApiKeyDoc| {
                    doc.last_used_at = Some(at.0)
                })
                .await?
            }
        }
        Ok(())
    }
}

/// The audit timeline: every event's coordinates and metadata, never its
/// payload (which may hold sealed personal data).
pub struct Audit;

#[async_trait]
impl Projection for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }
    fn models(&self) -> &'static [&'static str] {
        &["audit_event"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        tx.put(&audit_row(event)).await?;
        Ok(())
    }
}

/// The audit timeline's row of one event (also what live subscriptions send).
pub fn audit_row(event: &RecordedEvent) -> ModelRow {
    {
        let metadata = &event.metadata;
        let doc = AuditDoc {
            event_type: event.event_type.as_str().to_owned(),
            schema_version: event.schema_version.get(),
            stream_category: event.stream.category.as_str().to_owned(),
            stream_id: event.stream.id,
            stream_version: event.stream_version.0,
            chain: event.chain.to_string(),
            chain_index: event.chain_index.0,
            position: event.position.0,
            hash: hex::encode(event.hash.0),
            actor: metadata.actor.to_string(),
            command_id: metadata.command_id.as_uuid(),
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            origin: metadata.origin.as_str().to_owned(),
        };
        let mut row = row("audit_event", event.event_id.to_string(), event, &doc);
        row.parent = Some(event.stream.id);
        row.kind = Some(event.event_type.as_str().to_owned());
        row.actor = match metadata.actor {
            Actor::User(id) | Actor::Service(id) => Some(id),
            Actor::System => None,
        };
        row
    }
}

/// Every message's delivery state (ADR 0013), for the delivery worker
/// (which messages are due) and for operators.
pub struct Messages;

impl Stamped for MessageDoc {
    fn stamp(&mut self) -> &mut Stamp {
        &mut self.stamp
    }
}

#[async_trait]
impl Projection for Messages {
    fn name(&self) -> &'static str {
        "messages"
    }
    fn models(&self) -> &'static [&'static str] {
        &["message"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some(typed) = decode::<MessageEvent>(event, "message")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        match typed {
            MessageEvent::Queued { kind, user, at, .. } => {
                let doc = MessageDoc {
                    kind: kind.name().to_owned(),
                    attempts: 0,
                    queued_at: at.0,
                    next_attempt_at: Some(at.0),
                    sent_at: None,
                    last_error: None,
                    stamp: Stamp::of(event),
                };
                let mut row = row("message", id, event, &doc);
                row.kind = Some("queued".into());
                row.parent = Some(user);
                row.at = at.0;
                tx.put(&row).await?;
            }
            MessageEvent::Sent { attempt, at } => {
                update(tx, "message", &id, event, |row, doc: &mut MessageDoc| {
                    doc.attempts = attempt;
                    doc.sent_at = Some(at.0);
                    doc.next_attempt_at = None;
                    doc.last_error = None;
                    row.kind = Some("sent".into());
                    row.at = at.0;
                })
                .await?
            }
            MessageEvent::Failed {
                attempt,
                retry_at,
                reason,
                ..
            } => {
                update(tx, "message", &id, event, |row, doc: &mut MessageDoc| {
                    doc.attempts = attempt;
                    doc.next_attempt_at = Some(retry_at.0);
                    doc.last_error = Some(reason);
                    row.kind = Some("retrying".into());
                    row.at = retry_at.0;
                })
                .await?
            }
            MessageEvent::Abandoned {
                attempt,
                at,
                reason,
            } => {
                update(tx, "message", &id, event, |row, doc: &mut MessageDoc| {
                    doc.attempts = attempt;
                    doc.next_attempt_at = None;
                    doc.last_error = Some(reason);
                    row.kind = Some("abandoned".into());
                    row.at = at.0;
                })
                .await?
            }
        }
        Ok(())
    }
}
