//! The read-model documents, one type per model: the projections write
//! them and the GraphQL resolvers read them, so a field renamed on one side
//! fails to compile on the other instead of reading as null.
//!
//! Field names are the stored form (rows written by an older build parse as
//! long as these names and types stay; a change that breaks them needs a
//! rebuild of the projection, `custodia projections rebuild`).

use custodia_application::ModelRow;
use custodia_domain::identity::consent::Channel;
use custodia_domain::identity::session::RevocationReason;
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::personal::{AccessDay, SealedField};
use custodia_domain::RecordedEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A document that cannot be read as its model's type: a row written by
/// an incompatible build (rebuild the projection).
#[derive(Debug, thiserror::Error)]
#[error("a `{model}` read-model document is malformed: {source}")]
pub struct MalformedDocument {
    pub model: &'static str,
    pub source: serde_json::Error,
}

/// The typed document of `row`.
pub fn read<D: DeserializeOwned>(row: &ModelRow) -> Result<D, MalformedDocument> {
    D::deserialize(&row.doc).map_err(|source| MalformedDocument {
        model: row.model,
        source,
    })
}

/// `doc` in the form a row stores.
pub fn write<D: Serialize>(doc: &D) -> serde_json::Value {
    serde_json::to_value(doc).expect("documents serialize to JSON")
}

/// The status-like `kind` of a row: one word, filterable in queries.
macro_rules! row_kind {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The word stored in the row's `kind`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The status a row's `kind` names, if it names one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

row_kind!(
    /// A tenant's status.
    TenantStatus {
        Active = "active",
        Suspended = "suspended",
        /// Erased: its chain is closed, its key destroyed.
        Erased = "erased",
    }
);

row_kind!(
    /// A user's status.
    UserStatus {
        /// Registered by invitation, has not signed in yet.
        Invited = "invited",
        Active = "active",
        Suspended = "suspended",
        /// Soft-deleted: kept (sealed) until retention erases it.
        Deleted = "deleted",
        /// Erased: their key is destroyed, their fields blank.
        Erased = "erased",
    }
);

row_kind!(
    /// A session's status.
    SessionStatus {
        Active = "active",
        Revoked = "revoked",
    }
);

row_kind!(
    /// A user's current decision on one consent purpose.
    ConsentState {
        Granted = "granted",
        Withdrawn = "withdrawn",
    }
);

/// When a row last changed, and its stream's version then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    /// µs since the epoch.
    pub updated_at: i64,
    pub version: u64,
}

impl Stamp {
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            updated_at: event.recorded_at.0,
            version: event.stream_version.0,
        }
    }
}

/// A personal field as a document keeps it: sealed, with the id of the
/// event that sealed it (part of its associated data, needed to open it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sealed {
    pub sealed: SealedField,
    pub event_id: Uuid,
}

impl Sealed {
    pub fn from_event(field: &SealedField, event: &RecordedEvent) -> Self {
        Self {
            sealed: field.clone(),
            event_id: event.event_id.as_uuid(),
        }
    }
}

/// Model `tenant`, one row per tenant; `kind` is a [`TenantStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantDoc {
    pub name: String,
    pub settings: TenantSettings,
    /// µs since the epoch.
    pub created_at: i64,
    /// The last day whose access data has expired (`AccessDataExpired`):
    /// every day key up to it is destroyed, and destroyed again after a
    /// key-store restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_data_expired_through: Option<AccessDay>,
    /// Its slug for people (`acme`), also the row's `lookup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

// Model `user_external_id`: one row per user whose profile holds an
// `externalId` (`parent` the user, `lookup` the id's blind index, the
// document empty), so SCIM clients find users by it.

/// Model `user`, one row per user; `kind` is a [`UserStatus`], `lookup`
/// the email's blind index. An erased user's personal fields are blank
/// (and their `lookup` gone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDoc {
    pub email: Option<Sealed>,
    /// Whether the current address is verified (absent in rows written
    /// before verification existed: not verified).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_verified: bool,
    /// The address a requested change waits on (sealed), until it is
    /// verified: not the sign-in address yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_email: Option<Sealed>,
    pub profile: ProfileDoc,
    /// µs since the epoch.
    pub created_at: i64,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// A user's profile, each field sealed on its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileDoc {
    pub display_name: Option<Sealed>,
    pub phone: Option<Sealed>,
    /// A JSON object of strings, sealed as one field.
    pub attributes: Option<Sealed>,
}

/// Model `membership`, one row per member holding at least one role
/// (`tenant/user`; `parent` is the user).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MembershipDoc {
    /// Sorted: `owner`, `admin`, … or `custom:<name>`.
    pub roles: Vec<String>,
}

/// Model `group`, one row per group of members (ADR 0012), by its id;
/// `lookup` its external id (plaintext, guarded like the name). `stamp.version`
/// is the group's own revision (its ETag), not the memberships stream's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Sorted.
    pub members: Vec<Uuid>,
    /// Sorted: the roles the group grants its members.
    pub roles: Vec<String>,
    /// µs since the epoch.
    pub created_at: i64,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// Model `role`, one row per custom role (`tenant/name`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleDoc {
    pub name: String,
    pub permissions: Vec<String>,
}

/// Model `session`, one row per session; `kind` is a [`SessionStatus`],
/// `parent` the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDoc {
    pub user: Uuid,
    /// µs since the epoch, as every time below.
    pub started_at: i64,
    pub last_refreshed_at: Option<i64>,
    pub refresh_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<RevocationReason>,
    /// IP address and user agent at sign-in, sealed as one field.
    pub client: Option<Sealed>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// Model `consent`, one row per user and purpose (`user/purpose`); `kind`
/// is a [`ConsentState`], `parent` the user, `at` the decision's time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentDoc {
    pub purpose: String,
    pub policy_version: u32,
    pub channel: Channel,
    /// SHA-256 (hex) of the text the subject was shown, if recorded.
    #[serde(default)]
    pub evidence_sha256: Option<String>,
}

/// Model `api_key`, one row per API key or SCIM token (`kind` its
/// purpose); never its secret. `at` is when it was created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyDoc {
    pub name: String,
    pub permissions: Vec<String>,
    /// Who made it: `user:<id>`, or `system` (the platform operator).
    pub created_by: String,
    /// µs since the epoch.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// µs since the epoch, to the hour (uses are recorded hourly).
    #[serde(default)]
    pub last_used_at: Option<i64>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// Model `message`, one row per message (ADR 0013): its state, never its
/// recipient, link or text. `kind` is the status (`queued`, `retrying`,
/// `sent`, `abandoned`), `parent` the user it is for, `at` when the next
/// attempt is due while it is pending (else when it settled).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDoc {
    /// `invitation`, `verification`, `password_reset`, `address_change_notice`.
    pub kind: String,
    pub attempts: u32,
    /// µs since the epoch.
    pub queued_at: i64,
    /// When the next attempt is due (µs), while pending.
    #[serde(default)]
    pub next_attempt_at: Option<i64>,
    /// When it was sent (µs).
    #[serde(default)]
    pub sent_at: Option<i64>,
    /// The last failure's data-free reason (cleared once sent).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// Model `audit_event`, one row per event: its coordinates and metadata,
/// never its payload. `kind` is the event type, `parent` the stream's id,
/// `actor` the acting user or service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditDoc {
    pub event_type: String,
    pub schema_version: u32,
    pub stream_category: String,
    pub stream_id: Uuid,
    pub stream_version: u64,
    pub chain: String,
    pub chain_index: u64,
    pub position: u64,
    /// Hex.
    pub hash: String,
    /// `system`, `user:<id>` or `service:<id>`.
    pub actor: String,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    /// The event that caused this one (a session revoked because its user
    /// was suspended names the suspension).
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    pub origin: String,
}

#[cfg(test)]
mod tests {
    //! The stored forms, pinned: rows written by earlier builds (which
    //! wrote these documents as untyped JSON) read back as their types.
    use super::*;
    use serde_json::json;

    fn row(model: &'static str, doc: serde_json::Value) -> ModelRow {
        ModelRow {
            model,
            id: "id".into(),
            tenant: None,
            parent: None,
            kind: None,
            actor: None,
            lookup: None,
            at: 0,
            seq: 0,
            doc,
        }
    }

    fn sealed() -> serde_json::Value {
        json!({ "subject": "0192f4c4-0000-7000-8000-0000000000aa",
                "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAA" })
    }

    #[test]
    fn stored_documents_read_as_their_types() {
        let event = "0192f4c4-0000-7000-8000-000000000001";
        let user: UserDoc = read(&row(
            "user",
            json!({
                "email": { "sealed": sealed(), "event_id": event },
                "profile": { "display_name": null, "phone": { "sealed": sealed(), "event_id": event }, "attributes": null },
                "created_at": 1, "updated_at": 2, "version": 3,
            }),
        ))
        .unwrap();
        assert_eq!(user.email.unwrap().event_id.to_string(), event);
        assert!(user.profile.display_name.is_none() && user.profile.phone.is_some());
        assert_eq!((user.stamp.updated_at, user.stamp.version), (2, 3));

        let session: SessionDoc = read(&row(
            "session",
            json!({
                "user": event, "started_at": 1, "last_refreshed_at": null,
                "refresh_expires_at": 9, "revoked_at": 5, "revocation_reason": "user_disabled",
                "client": null, "updated_at": 5, "version": 2,
            }),
        ))
        .unwrap();
        assert_eq!(
            session.revocation_reason,
            Some(RevocationReason::UserDisabled)
        );

        // Consent rows also kept the payload's `at` and the state and user,
        // which now live in the row's columns: extra keys are ignored.
        let consent: ConsentDoc = read(&row(
            "consent",
            json!({ "purpose": "newsletter", "policy_version": 2, "channel": "mobile_app",
                    "at": 7, "state": "granted", "user": event }),
        ))
        .unwrap();
        assert_eq!(consent.channel, Channel::MobileApp);

        let tenant: TenantDoc = read(&row(
            "tenant",
            json!({ "name": "Acme", "created_at": 1, "updated_at": 1, "version": 1,
                    "settings": { "password_min_length": 12, "mfa_required": false,
                      "access_token_minutes": 15, "refresh_token_days": 7, "lockout_threshold": 5,
                      "lockout_minutes": 15, "consent_purposes": [{ "id": "newsletter", "version": 1 }],
                      "deleted_user_retention_days": 30, "access_data_retention_days": 90 } }),
        ))
        .unwrap();
        assert_eq!(tenant.settings.consent_purposes.len(), 1);
    }

    #[test]
    fn a_document_out_of_bounds_is_refused_not_read() {
        // Settings read back go through the same checks as new settings.
        let error = read::<TenantDoc>(&row(
            "tenant",
            json!({ "name": "Acme", "created_at": 1, "updated_at": 1, "version": 1,
                    "settings": { "password_min_length": 3, "mfa_required": false,
                      "access_token_minutes": 15, "refresh_token_days": 7, "lockout_threshold": 5,
                      "lockout_minutes": 15, "consent_purposes": [],
                      "deleted_user_retention_days": 30, "access_data_retention_days": 90 } }),
        ))
        .unwrap_err();
        assert_eq!(error.model, "tenant");
        assert!(read::<MembershipDoc>(&row("membership", json!({ "roles": "owner" }))).is_err());
    }

    #[test]
    fn statuses_round_trip_through_their_words() {
        for status in [
            UserStatus::Invited,
            UserStatus::Active,
            UserStatus::Suspended,
            UserStatus::Deleted,
        ] {
            assert_eq!(UserStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(SessionStatus::parse("expired"), None);
    }
}
