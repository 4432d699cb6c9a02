//! Subject access and portability (GDPR Art. 15 and 20): one JSON document
//! with everything Custodia holds about a user, in the shape
//! `docs/subject-export.schema.json` describes (`exportSubject`,
//! `custodia privacy export`).
//!
//! Personal fields are opened for the export and appear nowhere else: a
//! field whose key was destroyed (erasure, retention) is `null`. Events
//! are listed by their coordinates and metadata, never their payloads.

use std::collections::BTreeMap;

use custodia_application::commands::consent::consent_history;
use custodia_application::commands::privacy::{authorize_export, role_history};
use custodia_application::commands::users::read_personal_data;
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_application::{list_all, ModelRow, ReadModels, RowQuery};
use custodia_domain::personal::FieldContext;
use custodia_domain::{EventId, StreamCategory, StreamId, TenantId, Timestamp};
use custodia_projections::documents::{self, AuditDoc, SessionDoc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// The export's format name; a new shape gets a new name.
pub const FORMAT: &str = "custodia.subject-export.v1";

/// Everything held about `user` of `tenant`. The user themselves, or a
/// holder of `subject.export` who may also read personal data.
pub async fn export_subject(
    ports: &Ports,
    models: &dyn ReadModels,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Value, CommandError> {
    authorize_export(caller, tenant, user)?;
    let status =
        custodia_application::commands::privacy::subject_status(ports, tenant, user).await?;
    let personal = read_personal_data(ports, caller, tenant, user).await?;
    let (roles, changes) = role_history(ports, caller, tenant, user).await?;
    let consents = consent_history(ports, caller, tenant, user).await?;
    let sessions = sessions(ports, models, tenant, user).await?;
    let session_ids: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();
    let events = events(models, tenant, user, &session_ids).await?;
    let time = |t: Timestamp| t.to_string();
    let mut profile = json!({
        "email": personal.email,
        "display_name": personal.profile.display_name,
        "phone": personal.profile.phone,
        "attributes": personal.profile.attributes,
    });
    if let Some(pending) = &personal.pending_email {
        profile["pending_email"] = json!(pending);
    }
    Ok(json!({
        "format": FORMAT,
        "exported_at": time(Timestamp::now()),
        "tenant": tenant.to_string(),
        "subject": user.to_string(),
        "status": status,
        "profile": profile,
        "roles": roles,
        "role_history": changes.iter().map(|c| json!({
            "change": c.change,
            "role": c.role,
            "at": time(c.at),
            "actor": c.actor.to_string(),
            "event_id": c.event_id.to_string(),
        })).collect::<Vec<_>>(),
        "sessions": sessions,
        "consents": consents.iter().map(|r| json!({
            "purpose": r.decision.purpose,
            "state": if r.granted { "granted" } else { "withdrawn" },
            "policy_version": r.decision.policy_version,
            "channel": r.decision.channel,
            "evidence_sha256": r.decision.evidence_sha256.map(hex::encode),
            "at": time(r.decision.at),
            "recorded_at": time(r.recorded_at),
            "actor": r.actor.to_string(),
            "event_id": r.event_id.to_string(),
            "position": r.position,
            "hash": r.hash,
        })).collect::<Vec<_>>(),
        "events": events,
    }))
}

/// One session, with where it was started from while that is readable.
#[derive(Serialize)]
struct Session {
    id: Uuid,
    status: String,
    started_at: String,
    last_refreshed_at: Option<String>,
    refresh_expires_at: String,
    revoked_at: Option<String>,
    revocation_reason: Option<custodia_domain::identity::session::RevocationReason>,
    ip: Option<String>,
    user_agent: Option<String>,
}

async fn sessions(
    ports: &Ports,
    models: &dyn ReadModels,
    tenant: TenantId,
    user: Uuid,
) -> Result<Vec<Session>, CommandError> {
    let query = RowQuery {
        model: "session",
        tenant: Some(tenant.as_uuid()),
        parent: Some(user),
        ..RowQuery::default()
    };
    let mut sessions = Vec::new();
    for row in list_all(models, query).await? {
        let doc: SessionDoc = documents::read(&row).map_err(unreadable)?;
        let id = Uuid::parse_str(&row.id).map_err(|_| unreadable(&row.id))?;
        let client = match &doc.client {
            None => Value::Null,
            Some(sealed) => {
                let stream = StreamId::new(
                    StreamCategory::parse("session").expect("a valid category"),
                    id,
                );
                let context = FieldContext {
                    tenant,
                    stream: &stream,
                    event_id: EventId::from_uuid(sealed.event_id).map_err(unreadable)?,
                    field: "client",
                };
                ports
                    .vault
                    .open(&context, &sealed.sealed)
                    .await?
                    .and_then(|plain| serde_json::from_slice(&plain).ok())
                    .unwrap_or(Value::Null)
            }
        };
        let text = |field: &str| client[field].as_str().map(str::to_owned);
        let time = |t: i64| Timestamp(t).to_string();
        sessions.push(Session {
            id,
            status: row.kind.clone().unwrap_or_default(),
            started_at: time(doc.started_at),
            last_refreshed_at: doc.last_refreshed_at.map(time),
            refresh_expires_at: time(doc.refresh_expires_at),
            revoked_at: doc.revoked_at.map(time),
            revocation_reason: doc.revocation_reason,
            ip: text("ip"),
            user_agent: text("user_agent"),
        });
    }
    Ok(sessions)
}

/// The events about the subject (their streams and their sessions') and
/// by them (as the actor), each once, in log order.
async fn events(
    models: &dyn ReadModels,
    tenant: TenantId,
    user: Uuid,
    sessions: &[Uuid],
) -> Result<Vec<Value>, CommandError> {
    let audit = |parent: Option<Uuid>, actor: Option<Uuid>| RowQuery {
        model: "audit_event",
        tenant: Some(tenant.as_uuid()),
        parent,
        actor,
        ..RowQuery::default()
    };
    // By position: the document, about the subject, by the subject, id, time.
    let mut found: BTreeMap<u64, (AuditDoc, bool, bool, String, i64)> = BTreeMap::new();
    let mut add = |rows: Vec<ModelRow>, about: bool| -> Result<(), CommandError> {
        for row in rows {
            let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
            let entry = found
                .entry(doc.position)
                .or_insert_with(|| (doc, false, false, row.id.clone(), row.at));
            if about {
                entry.1 = true;
            } else {
                entry.2 = true;
            }
        }
        Ok(())
    };
    add(list_all(models, audit(Some(user), None)).await?, true)?;
    for session in sessions {
        add(list_all(models, audit(Some(*session), None)).await?, true)?;
    }
    add(list_all(models, audit(None, Some(user))).await?, false)?;
    Ok(found
        .into_values()
        .map(|(doc, about, by, id, at)| {
            json!({
                "id": id,
                "type": doc.event_type,
                "recorded_at": Timestamp(at).to_string(),
                "stream": format!("{}:{}", doc.stream_category, doc.stream_id),
                "stream_version": doc.stream_version,
                "chain_index": doc.chain_index,
                "position": doc.position,
                "hash": doc.hash,
                "actor": doc.actor,
                "origin": doc.origin,
                "about_subject": about,
                "by_subject": by,
            })
        })
        .collect())
}

fn unreadable(_: impl std::fmt::Debug) -> CommandError {
    CommandError::Store(custodia_application::StoreError::corrupt(
        "a read-model row of the export is unreadable",
    ))
}
