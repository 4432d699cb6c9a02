//! The read models of the identity domain.
//!
//! | projection    | model(s)                | one row per                 |
//! |---------------|-------------------------|-----------------------------|
//! | `tenants`     | `tenant`                | tenant                      |
//! | `users`       | `user`                  | user (personal fields sealed) |
//! | `memberships` | `membership`, `role`    | member of a tenant; custom role |
//! | `sessions`    | `session`               | session                     |
//! | `consents`    | `consent`               | user and purpose            |
//! | `audit`       | `audit_event`           | event (no payload)          |
//!
//! Documents hold what the events hold, in the events' canonical JSON;
//! personal fields stay sealed, with the id of the event that sealed them
//! (needed, with the field name, to open them).

use std::sync::Arc;

use async_trait::async_trait;
use custodia_application::{ModelRow, ReadModelTx};
use custodia_domain::aggregate::{EventSchema, SchemaError, StoredForm};
use custodia_domain::identity::consent::ConsentEvent;
use custodia_domain::identity::membership::MembershipEvent;
use custodia_domain::identity::session::SessionEvent;
use custodia_domain::identity::tenant::TenantEvent;
use custodia_domain::identity::user::UserEvent;
use custodia_domain::{Actor, ChainId, RecordedEvent};
use serde_json::{json, Value};
use uuid::Uuid;

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
    ]
}

/// The typed event and its canonical JSON payload (after upcasting), if
/// `event` is in stream category `category`.
fn decode<E: EventSchema>(
    event: &RecordedEvent,
    category: &str,
) -> Result<Option<(E, Value)>, ProjectionError> {
    if event.stream.category.as_str() != category {
        return Ok(None);
    }
    let unreadable = |source| ProjectionError::Unreadable {
        position: event.position.0,
        source,
    };
    let typed = match E::from_stored(&StoredForm {
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        payload: event.payload.clone(),
    }) {
        Ok(typed) => typed,
        // A type this projection does not handle (a newer version's, or
        // another tool's): skipped and counted, never a halt. A type it
        // handles in a version or shape it cannot read halts it.
        Err(SchemaError::UnknownType(_)) => {
            crate::count_skipped(event);
            return Ok(None);
        }
        Err(other) => return Err(unreadable(other)),
    };
    let payload = serde_json::from_slice(typed.to_stored().payload.as_bytes()).unwrap_or_default();
    Ok(Some((typed, payload)))
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
fn row(model: &'static str, id: String, event: &RecordedEvent, doc: Value) -> ModelRow {
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
        doc,
    }
}

/// A sealed field as a document keeps it: the sealed value and the event
/// whose id is part of its associated data.
fn sealed(value: &Value, event: &RecordedEvent) -> Value {
    if value.is_null() {
        Value::Null
    } else {
        json!({ "sealed": value, "event_id": event.event_id.to_string() })
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

fn touch(row: &mut ModelRow, event: &RecordedEvent) {
    row.doc["updated_at"] = json!(event.recorded_at.0);
    row.doc["version"] = json!(event.stream_version.0);
}

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
        let Some((typed, payload)) = decode::<TenantEvent>(event, "tenant")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        let mut row = match typed {
            TenantEvent::Created { .. } => {
                let mut row = row(
                    "tenant",
                    id,
                    event,
                    json!({
                        "name": payload["name"],
                        "settings": payload["settings"],
                        "created_at": event.recorded_at.0,
                    }),
                );
                row.tenant = Some(event.stream.id);
                row.kind = Some("active".into());
                row
            }
            other => {
                // An event for an entity never created cannot occur in a
                // valid log; it is ignored.
                let Some(mut row) = tx.get("tenant", &id).await? else {
                    return Ok(());
                };
                match other {
                    TenantEvent::SettingsChanged { .. } => {
                        row.doc["settings"] = payload["settings"].clone()
                    }
                    TenantEvent::Suspended => row.kind = Some("suspended".into()),
                    TenantEvent::Reactivated => row.kind = Some("active".into()),
                    TenantEvent::Created { .. } => unreachable!("handled above"),
                }
                row
            }
        };
        touch(&mut row, event);
        tx.put(&row).await?;
        Ok(())
    }
}

pub struct Users;

#[async_trait]
impl Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }
    fn models(&self) -> &'static [&'static str] {
        &["user"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some((typed, payload)) = decode::<UserEvent>(event, "user")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        let profile = |payload: &Value| {
            let p = &payload["profile"];
            json!({
                "display_name": sealed(&p["display_name"], event),
                "phone": sealed(&p["phone"], event),
                "attributes": sealed(&p["attributes"], event),
            })
        };
        let mut row = match typed {
            UserEvent::Registered {
                email_index,
                invited,
                ..
            } => {
                let mut row = row(
                    "user",
                    id,
                    event,
                    json!({
                        "email": sealed(&payload["email"], event),
                        "profile": profile(&payload),
                        "created_at": event.recorded_at.0,
                    }),
                );
                row.kind = Some(if invited { "invited" } else { "active" }.into());
                row.lookup = Some(hex::encode(email_index.0));
                row
            }
            other => {
                // An event for an entity never created cannot occur in a
                // valid log; it is ignored.
                let Some(mut row) = tx.get("user", &id).await? else {
                    return Ok(());
                };
                match other {
                    UserEvent::Activated | UserEvent::Reactivated => {
                        row.kind = Some("active".into())
                    }
                    UserEvent::Suspended => row.kind = Some("suspended".into()),
                    UserEvent::Deleted => row.kind = Some("deleted".into()),
                    UserEvent::ProfileUpdated { .. } => row.doc["profile"] = profile(&payload),
                    UserEvent::EmailChanged { email_index, .. } => {
                        row.doc["email"] = sealed(&payload["email"], event);
                        row.lookup = Some(hex::encode(email_index.0));
                    }
                    UserEvent::Registered { .. } => unreachable!("handled above"),
                }
                row
            }
        };
        touch(&mut row, event);
        tx.put(&row).await?;
        Ok(())
    }
}

/// Role assignments per member, and each tenant's custom roles.
pub struct MembershipsView;

#[async_trait]
impl Projection for MembershipsView {
    fn name(&self) -> &'static str {
        "memberships"
    }
    fn models(&self) -> &'static [&'static str] {
        &["membership", "role"]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let Some((typed, payload)) = decode::<MembershipEvent>(event, "memberships")? else {
            return Ok(());
        };
        let tenant = event.stream.id;
        match typed {
            MembershipEvent::RoleDefined { name, .. } => {
                let id = format!("{tenant}/{}", name.as_str());
                let seq = first_seq(tx, "role", &id, event).await?;
                let mut row = row(
                    "role",
                    id,
                    event,
                    json!({
                        "name": name.as_str(),
                        "permissions": payload["permissions"],
                    }),
                );
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
        }
        Ok(())
    }
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
            let mut row = row("membership", id.clone(), event, json!({ "roles": [] }));
            row.parent = Some(user);
            row
        }
    };
    let mut roles: Vec<String> = row.doc["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    roles.retain(|r| r != role);
    if granted {
        roles.push(role.to_owned());
        roles.sort();
    }
    if roles.is_empty() {
        tx.delete("membership", &id).await?;
    } else {
        row.doc["roles"] = json!(roles);
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
        let Some((typed, payload)) = decode::<SessionEvent>(event, "session")? else {
            return Ok(());
        };
        let id = event.stream.id.to_string();
        let mut row = match typed {
            SessionEvent::Started {
                user,
                at,
                refresh_expires_at,
                ..
            } => {
                let mut row = row(
                    "session",
                    id,
                    event,
                    json!({
                        "user": user.to_string(),
                        "started_at": at.0,
                        "last_refreshed_at": null,
                        "refresh_expires_at": refresh_expires_at.0,
                        "revoked_at": null,
                        "revocation_reason": null,
                        "client": null,
                    }),
                );
                row.parent = Some(user);
                row.kind = Some("active".into());
                row.at = at.0;
                row
            }
            other => {
                // An event for an entity never created cannot occur in a
                // valid log; it is ignored.
                let Some(mut row) = tx.get("session", &id).await? else {
                    return Ok(());
                };
                match other {
                    SessionEvent::Refreshed {
                        at,
                        refresh_expires_at,
                        ..
                    } => {
                        row.doc["last_refreshed_at"] = json!(at.0);
                        row.doc["refresh_expires_at"] = json!(refresh_expires_at.0);
                    }
                    SessionEvent::Revoked { at, .. } => {
                        row.kind = Some("revoked".into());
                        row.doc["revoked_at"] = json!(at.0);
                        row.doc["revocation_reason"] = payload["reason"].clone();
                    }
                    SessionEvent::ClientRecorded { .. } => {
                        row.doc["client"] = sealed(&payload["client"], event)
                    }
                    SessionEvent::Started { .. } => unreachable!("handled above"),
                }
                row
            }
        };
        touch(&mut row, event);
        tx.put(&row).await?;
        Ok(())
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
        let Some((typed, payload)) = decode::<ConsentEvent>(event, "consent")? else {
            return Ok(());
        };
        let (decision, state) = match &typed {
            ConsentEvent::Granted(decision) => (decision, "granted"),
            ConsentEvent::Withdrawn(decision) => (decision, "withdrawn"),
        };
        let user = event.stream.id;
        let id = format!("{user}/{}", decision.purpose);
        let seq = first_seq(tx, "consent", &id, event).await?;
        let mut doc = payload;
        doc["state"] = json!(state);
        doc["user"] = json!(user.to_string());
        let mut row = row("consent", id, event, doc);
        row.parent = Some(user);
        row.kind = Some(state.into());
        row.at = decision.at.0;
        row.seq = seq;
        tx.put(&row).await?;
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
        let mut row = row(
            "audit_event",
            event.event_id.to_string(),
            event,
            json!({
                "event_type": event.event_type.as_str(),
                "schema_version": event.schema_version.get(),
                "stream_category": event.stream.category.as_str(),
                "stream_id": event.stream.id.to_string(),
                "stream_version": event.stream_version.0,
                "chain": event.chain.to_string(),
                "chain_index": event.chain_index.0,
                "position": event.position.0,
                "hash": hex::encode(event.hash.0),
                "actor": metadata.actor.to_string(),
                "command_id": metadata.command_id.to_string(),
                "correlation_id": metadata.correlation_id.to_string(),
                "origin": metadata.origin.as_str(),
            }),
        );
        row.parent = Some(event.stream.id);
        row.kind = Some(event.event_type.as_str().to_owned());
        row.actor = match metadata.actor {
            Actor::User(id) | Actor::Service(id) => Some(id),
            Actor::System => None,
        };
        row
    }
}
