//! The consent ledger and API keys through the handlers, on both backends.

use custodia_application::commands::api_keys::{
    authenticate_api_key, create_api_key, revoke_api_key,
};
use custodia_application::commands::consent::{consent_history, record_consent, ConsentInput};
use custodia_application::commands::sessions::SessionFailure;
use custodia_application::commands::tenants::{create_tenant, CreateTenant};
use custodia_application::commands::users::{NewUser, Profile};
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_domain::identity::consent::Channel;
use custodia_domain::identity::tenant::{ConsentPurpose, TenantSettings};
use custodia_domain::rbac::{BuiltInRole, Denied, Permission, PermissionSet, Principal};
use custodia_domain::{Actor, StreamCategory, StreamId, StreamVersion, TenantId, Timestamp};
use custodia_tests::identity::{operator, ports};
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    consent_is_recorded_per_purpose_and_version_with_full_history,
    api_keys_authenticate_services_within_their_grant,
);

async fn setup(db: &TestDatabase) -> (Ports, TenantId, Uuid) {
    let ports = ports(db).await;
    let (tenant, user) = (TenantId::generate(), Uuid::now_v7());
    let settings = TenantSettings {
        consent_purposes: vec![
            ConsentPurpose {
                id: "newsletter".into(),
                version: 2,
            },
            ConsentPurpose {
                id: "analytics".into(),
                version: 1,
            },
        ],
        ..TenantSettings::default()
    };
    let owner = NewUser {
        address_vouched: false,
        user,
        email: "ada@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    create_tenant(
        &ports,
        &operator(),
        CreateTenant {
            tenant,
            name: "Acme".into(),
            settings,
            owner,
        },
    )
    .await
    .unwrap();
    (ports, tenant, user)
}

fn input(purpose: &str, version: u32, channel: Channel) -> ConsentInput {
    ConsentInput {
        purpose: purpose.into(),
        policy_version: version,
        channel,
        evidence_sha256: Some([0xab; 32]),
    }
}

async fn consent_is_recorded_per_purpose_and_version_with_full_history(db: TestDatabase) {
    let (ports, tenant, user) = setup(&db).await;
    // Each command carries its own idempotency key.
    let me = || Caller {
        principal: Principal::Member {
            tenant,
            user,
            permissions: Default::default(),
        },
        actor: Actor::User(user),
        ..operator()
    };
    let t = |n: i64| Timestamp(1_767_225_600_000_000 + n);
    record_consent(
        &ports,
        &me(),
        tenant,
        user,
        input("newsletter", 2, Channel::Web),
        true,
        t(1),
    )
    .await
    .unwrap();
    // The same grant again records nothing.
    let again = record_consent(
        &ports,
        &me(),
        tenant,
        user,
        input("newsletter", 2, Channel::Web),
        true,
        t(2),
    )
    .await
    .unwrap();
    assert!(again.appended.is_none());
    record_consent(
        &ports,
        &me(),
        tenant,
        user,
        input("analytics", 1, Channel::MobileApp),
        true,
        t(3),
    )
    .await
    .unwrap();
    record_consent(
        &ports,
        &me(),
        tenant,
        user,
        input("newsletter", 2, Channel::Email),
        false,
        t(4),
    )
    .await
    .unwrap();

    for (bad, why) in [
        (input("unknown", 1, Channel::Web), "undeclared purpose"),
        (input("newsletter", 1, Channel::Web), "old policy version"),
    ] {
        let outcome = record_consent(&ports, &me(), tenant, user, bad, true, t(5)).await;
        assert!(
            matches!(outcome, Err(CommandError::Invalid(_))),
            "{why}: {outcome:?}"
        );
    }

    let history = consent_history(&ports, &me(), tenant, user).await.unwrap();
    let summary: Vec<(bool, &str, u32, Channel, i64)> = history
        .iter()
        .map(|r| {
            (
                r.granted,
                r.decision.purpose.as_str(),
                r.decision.policy_version,
                r.decision.channel,
                r.decision.at.0 - t(0).0,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, "newsletter", 2, Channel::Web, 1),
            (true, "analytics", 1, Channel::MobileApp, 3),
            (false, "newsletter", 2, Channel::Email, 4)
        ]
    );
    assert!(history
        .iter()
        .all(|r| r.decision.evidence_sha256 == Some([0xab; 32])));

    // Others need the permissions: an auditor reads, does not record.
    let auditor = Caller {
        principal: Principal::Member {
            tenant,
            user: Uuid::now_v7(),
            permissions: BuiltInRole::Auditor.permissions(),
        },
        ..operator()
    };
    assert_eq!(
        consent_history(&ports, &auditor, tenant, user)
            .await
            .unwrap()
            .len(),
        3
    );
    let outcome = record_consent(
        &ports,
        &auditor,
        tenant,
        user,
        input("analytics", 1, Channel::Web),
        false,
        t(6),
    )
    .await;
    assert!(matches!(
        outcome,
        Err(CommandError::Forbidden(Denied::Missing(
            Permission::ConsentRecord
        )))
    ));
}

async fn api_keys_authenticate_services_within_their_grant(db: TestDatabase) {
    let (ports, tenant, _) = setup(&db).await;
    let now = Timestamp::now();
    let admin_id = Uuid::now_v7();
    let admin = || Caller {
        principal: Principal::Member {
            tenant,
            user: admin_id,
            permissions: BuiltInRole::Admin.permissions(),
        },
        ..operator()
    };
    let read_only = PermissionSet::from(&[Permission::TenantRead, Permission::UserRead][..]);
    let created = create_api_key(
        &ports,
        &admin(),
        tenant,
        "reporting",
        read_only.clone(),
        now,
    )
    .await
    .unwrap();
    // No escalation: an admin cannot mint a key that erases subjects.
    let too_much = PermissionSet::from(&[Permission::SubjectErase][..]);
    let escalation = create_api_key(&ports, &admin(), tenant, "eraser", too_much, now).await;
    assert!(
        matches!(
            escalation,
            Err(CommandError::Forbidden(Denied::Missing(
                Permission::SubjectErase
            )))
        ),
        "{escalation:?}"
    );

    let principal = authenticate_api_key(&ports, tenant, &created.key, now)
        .await
        .unwrap();
    assert_eq!(
        principal,
        Principal::Service {
            tenant,
            permissions: read_only
        }
    );
    assert!(principal
        .authorize(tenant, Permission::UserRead, None)
        .is_ok());
    assert!(principal
        .authorize(tenant, Permission::UserCreate, None)
        .is_err());

    // The secret is shown once and never stored.
    let stream = StreamId::new(StreamCategory::parse("api_key").unwrap(), created.key_id);
    let events = ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 100)
        .await
        .unwrap();
    let secret = created.key.rsplit_once('_').unwrap().1;
    assert!(events
        .iter()
        .all(|e| !String::from_utf8_lossy(e.payload.as_bytes()).contains(secret)));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type.as_str() == "ApiKeyUsed")
            .count(),
        1,
        "last use recorded"
    );
    authenticate_api_key(&ports, tenant, &created.key, now)
        .await
        .unwrap();
    let events = ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 100)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type.as_str() == "ApiKeyUsed")
            .count(),
        1,
        "at most hourly"
    );

    let mut wrong = created.key.clone();
    wrong.pop();
    wrong.push(if created.key.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(
        authenticate_api_key(&ports, tenant, &wrong, now).await,
        Err(SessionFailure::InvalidToken)
    ));
    assert!(matches!(
        authenticate_api_key(&ports, TenantId::generate(), &created.key, now).await,
        Err(SessionFailure::InvalidToken)
    ));
    assert!(matches!(
        authenticate_api_key(&ports, tenant, "cst_garbage", now).await,
        Err(SessionFailure::InvalidToken)
    ));

    // A retried request (same command id) is answered as the first time; the
    // same id for another target is refused.
    let revoke = admin();
    revoke_api_key(&ports, &revoke, tenant, created.key_id, now)
        .await
        .unwrap();
    revoke_api_key(&ports, &revoke, tenant, created.key_id, now)
        .await
        .unwrap();
    let other_key = create_api_key(
        &ports,
        &admin(),
        tenant,
        "other",
        PermissionSet::default(),
        now,
    )
    .await
    .unwrap();
    assert!(matches!(
        revoke_api_key(&ports, &revoke, tenant, other_key.key_id, now).await,
        Err(CommandError::Conflict(_))
    ));
    assert!(matches!(
        authenticate_api_key(&ports, tenant, &created.key, now).await,
        Err(SessionFailure::Revoked)
    ));
}
