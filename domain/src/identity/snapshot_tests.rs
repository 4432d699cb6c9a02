//! Every snapshotted aggregate: a snapshot restores exactly the state it
//! was taken of, and its form is pinned, so that changing the form without
//! a new snapshot version fails here (old snapshots would be misread).

use uuid::Uuid;

use super::api_key::{ApiKey, ApiKeyEvent, ApiKeyName, ApiKeyPurpose};
use super::credential::{Credential, CredentialEvent, PasswordAlgorithm};
use super::membership::{MembershipEvent, Memberships, RoleName, RoleRef};
use super::session::{RevocationReason, Session, SessionEvent, SessionIndex, SessionIndexEvent};
use crate::aggregate::{Aggregate, Snapshot};
use crate::event::Timestamp;
use crate::ids::EventId;
use crate::personal::SealedField;
use crate::rbac::{BuiltInRole, Permission, PermissionSet};

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn sealed(n: u8) -> SealedField {
    SealedField {
        subject: uuid(n),
        nonce: vec![n; 12],
        ciphertext: vec![n; 20],
        access_day: None,
    }
}

/// Folds `events` as a load does (each with its id), snapshots the state,
/// restores it, and compares; returns the snapshot's text.
fn round_trip<A>(events: &[A::Event]) -> String
where
    A: Snapshot + PartialEq + std::fmt::Debug,
{
    let state = events
        .iter()
        .enumerate()
        .fold(A::default(), |state, (i, event)| {
            let id = EventId::from_uuid(uuid(100 + i as u8)).unwrap();
            state.apply_recorded(event, id)
        });
    let version = A::SNAPSHOT_VERSION.expect("snapshotted");
    let bytes = state.to_snapshot();
    assert_eq!(A::from_snapshot(version, &bytes), Some(state));
    assert_eq!(
        A::from_snapshot(version + 1, &bytes),
        None,
        "unknown forms are ignored"
    );
    assert_eq!(A::from_snapshot(version, b"{\"not\":\"it\"}"), None);
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_session_snapshot_restores_the_session() {
    let at = Timestamp(1_700_000_000_000_000);
    let started = SessionEvent::Started {
        user: uuid(1),
        at,
        refresh: [1; 32],
        refresh_expires_at: at,
    };
    let refreshed = SessionEvent::Refreshed {
        at,
        refresh: [2; 32],
        refresh_expires_at: Timestamp(at.0 + 1),
    };
    let live = round_trip::<Session>(&[started.clone(), refreshed.clone()]);
    assert_eq!(
        live,
        format!(
            r#"{{"state":"live","user":"{}","current_sha256":"{}","spent_sha256":"{}","refresh_expires_at":1700000000000001}}"#,
            uuid(1),
            "02".repeat(32),
            "01".repeat(32)
        )
    );
    let revoked = SessionEvent::Revoked {
        at,
        reason: RevocationReason::Logout,
    };
    assert_eq!(
        round_trip::<Session>(&[started, refreshed, revoked]),
        format!(
            r#"{{"state":"revoked","user":"{}","reason":"logout"}}"#,
            uuid(1)
        )
    );
    round_trip::<Session>(&[]);
}

#[test]
fn a_session_remembers_a_bounded_number_of_spent_tokens() {
    use super::session::REMEMBERED_SPENT_TOKENS;
    let at = Timestamp(0);
    let mut session = Session::default().apply(&SessionEvent::Started {
        user: uuid(1),
        at,
        refresh: [0; 32],
        refresh_expires_at: at,
    });
    for i in 1..=REMEMBERED_SPENT_TOKENS + 10 {
        let mut refresh = [0; 32];
        refresh[..8].copy_from_slice(&(i as u64).to_be_bytes());
        session = session.apply(&SessionEvent::Refreshed {
            at,
            refresh,
            refresh_expires_at: at,
        });
    }
    let Session::Live { spent, .. } = &session else {
        panic!("live")
    };
    assert_eq!(spent.len(), REMEMBERED_SPENT_TOKENS);
    assert!(!spent.contains(&[0; 32]), "the oldest is forgotten first");
}

#[test]
fn a_session_index_snapshot_restores_the_index() {
    let text = round_trip::<SessionIndex>(&[
        SessionIndexEvent::Listed(uuid(1)),
        SessionIndexEvent::Listed(uuid(2)),
        SessionIndexEvent::Ended {
            kept: Some(uuid(2)),
        },
    ]);
    assert_eq!(text, format!(r#"{{"sessions":["{}"]}}"#, uuid(2)));
}

#[test]
fn a_credential_snapshot_keeps_where_each_secret_was_sealed() {
    let at = Timestamp(5);
    let events = [
        CredentialEvent::PasswordSet {
            hash: sealed(1),
            algorithm: PasswordAlgorithm::Argon2id,
        },
        CredentialEvent::PasswordCheckStarted { at },
        CredentialEvent::TotpEnrolled { secret: sealed(2) },
        CredentialEvent::TotpConfirmed,
        CredentialEvent::TotpCodeAccepted { step: 9 },
        CredentialEvent::RecoveryCodesIssued {
            hashes: vec![[3; 32], [4; 32]],
        },
        CredentialEvent::RecoveryCodeUsed { index: 0 },
        CredentialEvent::PasswordCheckStarted { at },
    ];
    let text = round_trip::<Credential>(&events);
    let state = Credential::from_snapshot(1, text.as_bytes()).unwrap();
    assert_eq!(
        state.password_event,
        Some(EventId::from_uuid(uuid(100)).unwrap())
    );
    assert_eq!(
        state.totp_event,
        Some(EventId::from_uuid(uuid(102)).unwrap())
    );
    let field = |n: u8, event: u8| {
        format!(
            r#"{{"field":{{"subject":"{}","nonce":"{}","ciphertext":"{}"}},"event":"{}"}}"#,
            uuid(n),
            base64_of(&[n; 12]),
            base64_of(&[n; 20]),
            uuid(100 + event)
        )
    };
    assert_eq!(
        text,
        format!(
            r#"{{"password":{},"algorithm":"argon2id","outstanding_checks":2,"last_check_at":5,"totp":"active","totp_secret":{},"last_totp_step":9,"recovery_codes_sha256":[null,"{}"]}}"#,
            field(1, 0),
            field(2, 2),
            "04".repeat(32)
        )
    );
    round_trip::<Credential>(&[]);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[test]
fn a_memberships_snapshot_restores_roles_members_and_pauses() {
    let support = RoleName::parse("support").unwrap();
    let text = round_trip::<Memberships>(&[
        MembershipEvent::RoleDefined {
            name: support.clone(),
            permissions: PermissionSet::from(&[Permission::UserRead, Permission::SessionRead][..]),
        },
        MembershipEvent::RoleGranted {
            user: uuid(1),
            role: RoleRef::BuiltIn(BuiltInRole::Owner),
        },
        MembershipEvent::RoleGranted {
            user: uuid(2),
            role: RoleRef::Custom(support),
        },
        MembershipEvent::MemberPaused { user: uuid(2) },
    ]);
    assert_eq!(
        text,
        format!(
            r#"{{"custom_roles":{{"support":["user.read","session.read"]}},"assignments":{{"{}":["owner"],"{}":["custom:support"]}},"paused":["{}"]}}"#,
            uuid(1),
            uuid(2),
            uuid(2)
        )
    );
}

#[test]
fn an_api_key_snapshot_restores_the_key() {
    let at = Timestamp(7);
    let text = round_trip::<ApiKey>(&[
        ApiKeyEvent::Created {
            name: ApiKeyName::parse("ci").unwrap(),
            purpose: ApiKeyPurpose::General,
            permissions: PermissionSet::from(&[Permission::UserRead][..]),
            secret_sha256: [5; 32],
            at,
        },
        ApiKeyEvent::Used { at },
    ]);
    assert_eq!(
        text,
        format!(
            r#"{{"state":"active","permissions":["user.read"],"secret_sha256":"{}","last_used":7}}"#,
            "05".repeat(32)
        )
    );
    round_trip::<ApiKey>(&[ApiKeyEvent::Revoked { at }]);
    // A SCIM token keeps its purpose across a snapshot.
    let text = round_trip::<ApiKey>(&[ApiKeyEvent::Created {
        name: ApiKeyName::parse("okta").unwrap(),
        purpose: ApiKeyPurpose::Scim,
        permissions: PermissionSet::from(&[Permission::UserRead][..]),
        secret_sha256: [5; 32],
        at,
    }]);
    assert!(text.contains(r#""purpose":"scim""#), "{text}");
}
