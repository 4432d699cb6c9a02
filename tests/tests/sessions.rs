//! Sessions through the handlers, on both backends: access tokens, refresh
//! rotation and reuse detection, logout and revocation taking effect at once.

use custodia_application::commands::sessions::{
    authenticate, refresh_session, revoke_all_sessions, revoke_session, start_session,
    SessionFailure,
};
use custodia_application::commands::tenants::update_tenant_settings;
use custodia_application::commands::Caller;
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::{Actor, StreamCategory, StreamId, StreamVersion, Timestamp};
use custodia_tests::identity::{operator, ports, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    a_session_carries_a_complete_short_lived_access_token,
    a_reused_refresh_token_revokes_the_whole_session,
    logout_and_sign_out_everywhere_take_effect_at_once,
    refresh_tokens_expire_and_stay_in_their_tenant,
    client_info_is_sealed_and_password_changes_need_the_current_one,
    a_user_holds_a_bounded_number_of_sessions_and_the_oldest_end_first,
    a_refresh_token_alone_names_its_tenant,
    snapshots_are_derived_data_that_never_change_a_decision,
    an_event_caused_by_another_names_it,
);

const EMAIL: &str = "ada@example.org";
const PASSWORD: &str = "correct horse battery staple";

/// A user acting on their own account (self-service permissions only).
fn user_itself(tenant: custodia_domain::TenantId, user: Uuid) -> Caller {
    Caller {
        principal: Principal::Member {
            tenant,
            user,
            permissions: Default::default(),
        },
        actor: Actor::User(user),
        ..operator()
    }
}

fn minutes(n: i64) -> i64 {
    n * 60_000_000
}

async fn a_session_carries_a_complete_short_lived_access_token(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, user) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let tokens = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let (principal, claims) = authenticate(&ports, &tokens.access_token, now)
        .await
        .unwrap();
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        ("custodia", "custodia-api")
    );
    assert_eq!(
        (claims.sub.clone(), claims.tid.clone(), claims.sid.clone()),
        (
            user.to_string(),
            tenant_id.to_string(),
            tokens.session.to_string()
        )
    );
    assert_eq!(claims.roles, vec!["owner".to_owned()]);
    assert_eq!(
        (claims.nbf, claims.exp - claims.iat),
        (claims.iat, 15 * 60),
        "15 minutes by default"
    );
    assert!(Uuid::parse_str(&claims.jti).is_ok());
    assert!(
        principal
            .authorize(tenant_id, Permission::TenantSuspend, None)
            .is_ok(),
        "the owner's permissions"
    );
    // Expired at exp.
    let at_exp = Timestamp(claims.exp * 1_000_000);
    assert!(matches!(
        authenticate(&ports, &tokens.access_token, at_exp).await,
        Err(SessionFailure::Expired)
    ));
    // Refresh tokens are long and opaque, never the session id alone.
    assert!(
        tokens.refresh_token.len() > 60
            && tokens
                .refresh_token
                .starts_with(&tokens.session.to_string())
    );

    // A tenant may shorten the access lifetime.
    let settings = TenantSettings {
        access_token_minutes: 5,
        ..TenantSettings::default()
    };
    update_tenant_settings(&ports, &operator(), tenant_id, settings)
        .await
        .unwrap();
    let short = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let (_, claims) = authenticate(&ports, &short.access_token, now)
        .await
        .unwrap();
    assert_eq!(claims.exp - claims.iat, 5 * 60);
}

async fn a_reused_refresh_token_revokes_the_whole_session(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let first = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let second = refresh_session(
        &ports,
        Some(tenant_id),
        &first.refresh_token,
        Timestamp(now.0 + minutes(1)),
    )
    .await
    .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");
    assert_eq!(second.session, first.session);
    let third = refresh_session(
        &ports,
        Some(tenant_id),
        &second.refresh_token,
        Timestamp(now.0 + minutes(2)),
    )
    .await
    .unwrap();
    assert!(
        authenticate(&ports, &third.access_token, Timestamp(now.0 + minutes(2)))
            .await
            .is_ok()
    );

    // The first token again (a stolen copy): the whole session goes.
    let reuse = refresh_session(
        &ports,
        Some(tenant_id),
        &first.refresh_token,
        Timestamp(now.0 + minutes(3)),
    )
    .await;
    assert!(
        matches!(reuse, Err(SessionFailure::RefreshTokenReused)),
        "{reuse:?}"
    );
    let current = refresh_session(
        &ports,
        Some(tenant_id),
        &third.refresh_token,
        Timestamp(now.0 + minutes(4)),
    )
    .await;
    assert!(
        matches!(current, Err(SessionFailure::Revoked)),
        "even the current token is dead: {current:?}"
    );
    assert!(matches!(
        authenticate(&ports, &third.access_token, Timestamp(now.0 + minutes(4))).await,
        Err(SessionFailure::Revoked)
    ));

    // Why, on the record.
    let stream = StreamId::new(StreamCategory::parse("session").unwrap(), first.session);
    let events = ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 100)
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type.as_str(), "SessionRevoked");
    let payload: serde_json::Value = serde_json::from_slice(last.payload.as_bytes()).unwrap();
    assert_eq!(payload["reason"], "refresh_reuse");
    // The refresh secret is never stored, only its SHA-256.
    let secret = first.refresh_token.split_once('.').unwrap().1;
    assert!(events
        .iter()
        .all(|e| !String::from_utf8_lossy(e.payload.as_bytes()).contains(secret)));
}

async fn logout_and_sign_out_everywhere_take_effect_at_once(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, user) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let me = user_itself(tenant_id, user);
    let laptop = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let phone = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    revoke_session(&ports, &me, tenant_id, laptop.session, now)
        .await
        .unwrap();
    assert!(matches!(
        authenticate(&ports, &laptop.access_token, now).await,
        Err(SessionFailure::Revoked)
    ));
    assert!(
        authenticate(&ports, &phone.access_token, now).await.is_ok(),
        "only the one session"
    );

    let tablet = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let (revoked, written) = revoke_all_sessions(&ports, &me, tenant_id, user, now)
        .await
        .unwrap();
    assert!(
        written.is_some(),
        "the last revocation's cursor is returned"
    );
    assert_eq!(
        revoked, 2,
        "phone and tablet (the laptop was already revoked)"
    );
    for tokens in [&phone, &tablet] {
        assert!(matches!(
            authenticate(&ports, &tokens.access_token, now).await,
            Err(SessionFailure::Revoked)
        ));
        assert!(matches!(
            refresh_session(&ports, Some(tenant_id), &tokens.refresh_token, now).await,
            Err(SessionFailure::Revoked)
        ));
    }
    // Someone else's session needs session.revoke.
    let other = Caller {
        principal: Principal::Member {
            tenant: tenant_id,
            user: Uuid::now_v7(),
            permissions: Default::default(),
        },
        ..operator()
    };
    let fresh = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    assert!(
        revoke_session(&ports, &other, tenant_id, fresh.session, now)
            .await
            .is_err()
    );
}

async fn refresh_tokens_expire_and_stay_in_their_tenant(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let (other_tenant, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let tokens = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let elsewhere = refresh_session(&ports, Some(other_tenant), &tokens.refresh_token, now).await;
    assert!(
        matches!(elsewhere, Err(SessionFailure::InvalidToken)),
        "{elsewhere:?}"
    );
    let eight_days = Timestamp(now.0 + 8 * 86_400_000_000);
    assert!(matches!(
        refresh_session(&ports, Some(tenant_id), &tokens.refresh_token, eight_days).await,
        Err(SessionFailure::Expired)
    ));
    for garbage in [
        "",
        "no-dot",
        "not-a-uuid.AAAA",
        &format!("{}.%%%", tokens.session),
        &format!("{}.AAAA", Uuid::now_v7()),
    ] {
        assert!(
            matches!(
                refresh_session(&ports, Some(tenant_id), garbage, now).await,
                Err(SessionFailure::InvalidToken)
            ),
            "{garbage}"
        );
    }
    assert!(matches!(
        authenticate(&ports, "not.a.jwt", now).await,
        Err(SessionFailure::InvalidToken)
    ));
}

async fn client_info_is_sealed_and_password_changes_need_the_current_one(db: TestDatabase) {
    use custodia_application::commands::credentials::{change_password, LoginError};
    use custodia_application::commands::sessions::ClientInfo;
    let ports = ports(&db).await;
    let (tenant_id, user) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let client = ClientInfo {
        ip: Some("203.0.113.77".into()),
        user_agent: Some("MarkerAgent/9.9 zq4x".into()),
    };
    let tokens = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, Some(&client), now)
        .await
        .unwrap();
    let stream = StreamId::new(StreamCategory::parse("session").unwrap(), tokens.session);
    let events = ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 10)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["SessionStarted", "SessionClientRecorded"]
    );
    let everything: String = events
        .iter()
        .map(|e| String::from_utf8_lossy(e.payload.as_bytes()).into_owned())
        .collect();
    assert!(
        !everything.contains("203.0.113.77") && !everything.contains("zq4x"),
        "IP and user agent are sealed"
    );
    let bad = ClientInfo {
        ip: Some("not an ip".into()),
        user_agent: None,
    };
    assert!(
        start_session(&ports, tenant_id, EMAIL, PASSWORD, None, Some(&bad), now)
            .await
            .is_err()
    );

    let me = user_itself(tenant_id, user);
    let wrong = change_password(
        &ports,
        &me,
        tenant_id,
        user,
        "not my password",
        "a brand new passphrase",
        now,
    )
    .await;
    assert!(
        matches!(wrong, Err(LoginError::InvalidCredentials)),
        "{wrong:?}"
    );
    let weak = change_password(&ports, &me, tenant_id, user, PASSWORD, "password1234", now).await;
    assert!(
        matches!(weak, Err(LoginError::Internal(_))),
        "the policy applies: {weak:?}"
    );
    change_password(
        &ports,
        &me,
        tenant_id,
        user,
        PASSWORD,
        "a brand new passphrase",
        now,
    )
    .await
    .unwrap();
    assert!(
        start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
            .await
            .is_err(),
        "the old one is gone"
    );
    start_session(
        &ports,
        tenant_id,
        EMAIL,
        "a brand new passphrase",
        None,
        None,
        now,
    )
    .await
    .unwrap();
    // Someone else cannot change it, whatever their permissions.
    let admin = Caller {
        principal: Principal::PlatformOperator,
        ..operator()
    };
    assert!(change_password(
        &ports,
        &admin,
        tenant_id,
        user,
        "a brand new passphrase",
        "another passphrase here",
        now
    )
    .await
    .is_err());
}

/// Ports whose password hashing is cheap (real Argon2id, tiny cost), for
/// tests that log in a hundred times. The first login rehashes to it.
async fn cheap_ports(db: &TestDatabase) -> custodia_application::commands::Ports {
    use custodia_infrastructure::passwords::Argon2Cost;
    use custodia_infrastructure::Argon2Passwords;
    custodia_application::commands::Ports {
        passwords: std::sync::Arc::new(
            Argon2Passwords::new().with_cost(Argon2Cost { m_kib: 64, t: 1 }),
        ),
        ..ports(db).await
    }
}

async fn a_user_holds_a_bounded_number_of_sessions_and_the_oldest_end_first(db: TestDatabase) {
    use custodia_domain::identity::session::{LISTED_AFTER_PRUNING, MAX_LISTED_SESSIONS};
    let ports = cheap_ports(&db).await;
    let (tenant_id, user) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let me = user_itself(tenant_id, user);
    let mut sessions = Vec::new();
    for _ in 0..MAX_LISTED_SESSIONS {
        sessions.push(
            start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
                .await
                .unwrap(),
        );
    }
    // One of them is over already (logged out).
    revoke_session(&ports, &me, tenant_id, sessions[5].session, now)
        .await
        .unwrap();
    let newest = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    // The ended one is unlisted; the oldest live ones end until 75 remain.
    let evicted = MAX_LISTED_SESSIONS - LISTED_AFTER_PRUNING;
    for (i, session) in sessions.iter().enumerate() {
        let answer = authenticate(&ports, &session.access_token, now).await;
        if i <= evicted {
            assert!(
                matches!(answer, Err(SessionFailure::Revoked)),
                "session {i}: {answer:?}"
            );
        } else {
            assert!(answer.is_ok(), "session {i} stays: {answer:?}");
        }
    }
    assert!(authenticate(&ports, &newest.access_token, now)
        .await
        .is_ok());
    let oldest = StreamId::new(
        StreamCategory::parse("session").unwrap(),
        sessions[0].session,
    );
    let events = ports
        .store
        .read_stream(&oldest, StreamVersion::EMPTY, 10)
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type.as_str(), "SessionRevoked");
    assert!(
        String::from_utf8_lossy(last.payload.as_bytes()).contains("session_limit"),
        "the reason is recorded"
    );
    // Sign-out-everywhere still reaches every live session.
    let (revoked, _) = revoke_all_sessions(&ports, &me, tenant_id, user, now)
        .await
        .unwrap();
    assert_eq!(revoked, LISTED_AFTER_PRUNING);
    for session in sessions.iter().skip(evicted + 1).chain([&newest]) {
        assert!(matches!(
            authenticate(&ports, &session.access_token, now).await,
            Err(SessionFailure::Revoked)
        ));
    }
}

async fn a_refresh_token_alone_names_its_tenant(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let (other, _) = tenant_with_owner(&ports, "grace@example.org", Some(PASSWORD)).await;
    let now = Timestamp::now();
    let first = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let second = refresh_session(&ports, None, &first.refresh_token, now)
        .await
        .unwrap();
    assert_eq!(second.session, first.session);
    let (_, claims) = authenticate(&ports, &second.access_token, now)
        .await
        .unwrap();
    assert_eq!(claims.tid, tenant_id.to_string());
    // Naming another tenant is refused like a wrong token.
    assert!(matches!(
        refresh_session(&ports, Some(other), &second.refresh_token, now).await,
        Err(SessionFailure::InvalidToken)
    ));
}

async fn snapshots_are_derived_data_that_never_change_a_decision(db: TestDatabase) {
    use custodia_application::StoredSnapshot;
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let now = Timestamp::now();
    let first = start_session(&ports, tenant_id, EMAIL, PASSWORD, None, None, now)
        .await
        .unwrap();
    let stream = StreamId::new(StreamCategory::parse("session").unwrap(), first.session);
    let mut tokens = first.clone();
    for _ in 0..100 {
        tokens = refresh_session(&ports, None, &tokens.refresh_token, now)
            .await
            .unwrap();
    }
    let kept = ports
        .store
        .snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot");
    assert!(kept.stream_version.0 >= 64, "{kept:?}");

    // Dropped: the next command folds from the start, and saves one again.
    assert!(ports.store.drop_snapshots().await.unwrap() >= 1);
    tokens = refresh_session(&ports, None, &tokens.refresh_token, now)
        .await
        .unwrap();
    assert!(ports.store.snapshot(&stream).await.unwrap().is_some());

    // One that cannot be read (a newer binary's, or damaged) is ignored and
    // replaced, however far ahead it claims to be.
    let unreadable = StoredSnapshot {
        state: b"not a session".to_vec(),
        stream_version: StreamVersion(1_000_000),
        ..kept
    };
    ports.store.save_snapshot(unreadable, None).await.unwrap();
    tokens = refresh_session(&ports, None, &tokens.refresh_token, now)
        .await
        .unwrap();
    let replaced = ports.store.snapshot(&stream).await.unwrap().unwrap();
    // Saved by the load before the append: the start and 101 refreshes.
    assert_eq!(replaced.stream_version, StreamVersion(102), "{replaced:?}");

    // The state behind a snapshot is the whole state: the first token,
    // rotated away 102 refreshes ago, is still known as reused.
    assert!(matches!(
        refresh_session(&ports, None, &first.refresh_token, now).await,
        Err(SessionFailure::RefreshTokenReused)
    ));
    assert!(matches!(
        authenticate(&ports, &tokens.access_token, now).await,
        Err(SessionFailure::Revoked)
    ));
}

async fn an_event_caused_by_another_names_it(db: TestDatabase) {
    use custodia_application::commands::users::{change_user_status, StatusChange};
    use custodia_application::commands::users::{register_user, NewUser, Profile};
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant_with_owner(&ports, EMAIL, Some(PASSWORD)).await;
    let user = Uuid::now_v7();
    let grace = NewUser {
        address_vouched: false,
        user,
        email: "grace@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(&ports, &operator(), tenant_id, grace)
        .await
        .unwrap();
    let now = Timestamp::now();
    let tokens = start_session(
        &ports,
        tenant_id,
        "grace@example.org",
        PASSWORD,
        None,
        None,
        now,
    )
    .await
    .unwrap();
    change_user_status(&ports, &operator(), tenant_id, user, StatusChange::Suspend)
        .await
        .unwrap();
    let read = |category: &str, id: Uuid| {
        let store = ports.store.clone();
        let stream = StreamId::new(StreamCategory::parse(category).unwrap(), id);
        async move {
            store
                .read_stream(&stream, StreamVersion::EMPTY, 100)
                .await
                .unwrap()
        }
    };
    let suspended = read("user", user).await.pop().unwrap();
    assert_eq!(suspended.event_type.as_str(), "UserSuspended");
    assert_eq!(suspended.metadata.causation_id, None, "the cause itself");
    let revoked = read("session", tokens.session).await.pop().unwrap();
    assert_eq!(revoked.event_type.as_str(), "SessionRevoked");
    assert_eq!(
        revoked.metadata.causation_id,
        Some(suspended.event_id.as_uuid()),
        "the revocation names the suspension"
    );
    assert_eq!(
        revoked.metadata.correlation_id,
        suspended.metadata.correlation_id
    );
}
