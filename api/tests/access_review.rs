//! History as of any time: `custodia audit access-review` and
//! `access-changes` on a tenant where roles were granted and revoked
//! between known moments (both backends).

use std::process::Command;

use custodia_application::commands::tenants::change_memberships;
use custodia_application::commands::users::{register_user, NewUser, Profile};
use custodia_domain::identity::membership::{MembershipCommand, RoleRef};
use custodia_domain::rbac::BuiltInRole;
use custodia_domain::Timestamp;
use custodia_tests::identity::{operator, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;

const PASSWORD: &str = "correct horse battery staple";

backends!(
    roles_are_answered_as_of_any_moment_with_who_granted_them,
    a_user_is_answered_as_of_any_moment,
);

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn rfc3339(at: Timestamp) -> String {
    chrono::DateTime::from_timestamp_micros(at.0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The server's state on `db`, as the tests' server builds it.
async fn served_state(db: &TestDatabase) -> custodia::http::AppState {
    custodia::http::AppState::connect(
        db.url(),
        MASTER_KEY.parse().unwrap(),
        "custodia",
        "custodia-api",
    )
    .await
    .unwrap()
}

/// A moment strictly between the events before and after it.
async fn moment() -> Timestamp {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let at = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    at
}

async fn roles_are_answered_as_of_any_moment_with_who_granted_them(db: TestDatabase) {
    let state = served_state(&db).await;
    let ports = &state.ports;
    let (tenant, _) = tenant_with_owner(ports, "ada@example.org", Some(PASSWORD)).await;
    let grace = uuid::Uuid::now_v7();
    let new = NewUser {
        address_vouched: false,
        user: grace,
        email: "grace@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    register_user(ports, &operator(), tenant, new)
        .await
        .unwrap();
    // A command id of its own for each change (one id is one command).
    let callers = [operator(), operator(), operator()];
    let change = |n: usize, command| change_memberships(ports, &callers[n], tenant, command);
    let admin = RoleRef::BuiltIn(BuiltInRole::Admin);
    let auditor = RoleRef::BuiltIn(BuiltInRole::Auditor);
    let before = moment().await;
    change(
        0,
        MembershipCommand::Grant {
            user: grace,
            role: admin.clone(),
        },
    )
    .await
    .unwrap();
    let admin_only = moment().await;
    change(
        1,
        MembershipCommand::Grant {
            user: grace,
            role: auditor.clone(),
        },
    )
    .await
    .unwrap();
    let both = moment().await;
    change(
        2,
        MembershipCommand::Revoke {
            user: grace,
            role: admin,
        },
    )
    .await
    .unwrap();
    let after = moment().await;

    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("CUSTODIA_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let tenant = tenant.to_string();
    let roles_of_grace = |at: Timestamp| -> Vec<Value> {
        let review: Value = serde_json::from_str(&cli(&[
            "audit",
            "access-review",
            "--tenant",
            &tenant,
            "--at",
            &rfc3339(at),
        ]))
        .unwrap();
        review
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["user"] == grace.to_string())
            .cloned()
            .collect()
    };
    let names = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|row| row["role"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&roles_of_grace(before)), Vec::<String>::new());
    let held = roles_of_grace(admin_only);
    assert_eq!(names(&held), ["admin"]);
    assert_eq!(held[0]["granted_by"], "system", "{held:?}");
    assert!(held[0]["permissions"]
        .as_str()
        .unwrap()
        .contains("role.grant"));
    assert_eq!(names(&roles_of_grace(both)), ["admin", "auditor"]);
    let now = roles_of_grace(after);
    assert_eq!(names(&now), ["auditor"]);
    // Since when: the grant's own time, between the moments around it.
    let since = chrono::DateTime::parse_from_rfc3339(now[0]["since"].as_str().unwrap())
        .unwrap()
        .timestamp_micros();
    assert!(admin_only.0 < since && since < both.0, "{now:?}");
    // The owner is in the review too.
    let everyone = cli(&["audit", "access-review", "--tenant", &tenant, "--csv"]);
    let mut lines = everyone.lines();
    assert_eq!(
        lines.next(),
        Some("user,role,since,granted_by,grant_event,paused,permissions,through_group")
    );
    assert_eq!(lines.clone().count(), 2, "{everyone}");
    assert!(everyone.contains(",owner,"), "{everyone}");

    // The changes between two moments, as a quarterly review reads them.
    let changes = cli(&[
        "audit",
        "access-changes",
        "--tenant",
        &tenant,
        "--from",
        &rfc3339(admin_only),
        "--to",
        &rfc3339(after),
        "--csv",
    ]);
    let rows: Vec<&str> = changes.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{changes}");
    assert!(
        rows[0].contains(",granted,") && rows[0].contains(",auditor,"),
        "{changes}"
    );
    assert!(
        rows[1].contains(",revoked,") && rows[1].contains(",admin,"),
        "{changes}"
    );

    // The same over GraphQL, for those who hold audit.read.
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let tenant_id: custodia_domain::TenantId = tenant.parse().unwrap();
    let token = |email: &'static str| {
        let ports = state.ports.clone();
        async move {
            custodia_application::commands::sessions::start_session(
                &ports,
                tenant_id,
                email,
                PASSWORD,
                None,
                None,
                Timestamp::now(),
            )
            .await
            .unwrap()
            .access_token
        }
    };
    let ask = |token: String, query: &str, variables: Value| {
        actix_web::test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {token}")))
            .set_json(json!({ "query": query, "variables": variables }))
    };
    let owner = token("ada@example.org").await;
    let review =
        "query($at: DateTime) { accessReview(at: $at) { userId role grantedBy permissions } }";
    let (_, body) = call!(
        &service,
        ask(owner.clone(), review, json!({ "at": rfc3339(both) }))
    );
    let roles: Vec<&str> = body["data"]["accessReview"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .filter(|row| row["userId"] == grace.to_string())
        .map(|row| row["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "auditor"], "{body}");
    let changes = "query($from: DateTime!, $to: DateTime) { accessChanges(from: $from, to: $to) { change role userId } }";
    let (_, body) = call!(
        &service,
        ask(
            owner,
            changes,
            json!({ "from": rfc3339(admin_only), "to": rfc3339(after) })
        )
    );
    assert_eq!(
        body["data"]["accessChanges"],
        json!([
            { "change": "GRANTED", "role": "auditor", "userId": grace.to_string() },
            { "change": "REVOKED", "role": "admin", "userId": grace.to_string() },
        ]),
        "{body}"
    );
    // A member without audit.read is refused.
    let mel = NewUser {
        address_vouched: false,
        user: uuid::Uuid::now_v7(),
        email: "mel@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(ports, &operator(), tenant_id, mel)
        .await
        .unwrap();
    let member = token("mel@example.org").await;
    let (_, body) = call!(&service, ask(member.clone(), review, json!({})));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    // Nor may they fetch an event's proof (the log's shape is audit data).
    let proof = "{ eventProof(chainIndex: 0) }";
    let (_, body) = call!(&service, ask(member, proof, json!({})));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    // An owner of another tenant reads nothing of this one.
    let (other, _) = tenant_with_owner(ports, "olga@example.org", Some(PASSWORD)).await;
    let olga = custodia_application::commands::sessions::start_session(
        ports,
        other,
        "olga@example.org",
        PASSWORD,
        None,
        None,
        Timestamp::now(),
    )
    .await
    .unwrap()
    .access_token;
    let across = json!({ "t": tenant });
    for query in [
        "query($t: ID) { accessReview(tenantId: $t) { role } }",
        "query($t: ID) { eventProof(tenantId: $t, chainIndex: 0) }",
    ] {
        let (_, body) = call!(&service, ask(olga.clone(), query, across.clone()));
        // Nothing answered: no data, or the nullable field null.
        let answered = body["data"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, v)| !v.is_null());
        assert!(!answered, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body}"
        );
    }
}

/// A user renamed, a consent granted then withdrawn, the user suspended,
/// then erased: asked as of the moments in between, each answer is the
/// log's state then (CLI and GraphQL); personal data only for a reader
/// allowed to read it, and erased for everyone once the key is gone.
async fn a_user_is_answered_as_of_any_moment(db: TestDatabase) {
    use custodia_application::commands::consent::{record_consent, ConsentInput};
    use custodia_application::commands::users::{change_user_status, update_profile, StatusChange};
    use custodia_domain::identity::consent::Channel;
    use custodia_domain::identity::tenant::{ConsentPurpose, SettingsChange};
    let state = served_state(&db).await;
    let ports = &state.ports;
    let (tenant, _) = tenant_with_owner(ports, "ada@example.org", Some(PASSWORD)).await;
    let settings = SettingsChange {
        add_consent_purposes: vec![ConsentPurpose {
            id: "newsletter".into(),
            version: 1,
        }],
        ..SettingsChange::default()
    };
    custodia_application::commands::tenants::update_tenant_settings(
        ports,
        &operator(),
        tenant,
        settings,
    )
    .await
    .unwrap();
    let grace = uuid::Uuid::now_v7();
    let named = |name: &str| Profile {
        display_name: Some(name.into()),
        ..Profile::default()
    };
    let before = moment().await;
    let new = NewUser {
        address_vouched: false,
        user: grace,
        email: "grace@example.org".into(),
        profile: named("Grace H"),
        invited: false,
        password: None,
    };
    register_user(ports, &operator(), tenant, new)
        .await
        .unwrap();
    let registered = moment().await;
    update_profile(ports, &operator(), tenant, grace, named("Grace Hopper"))
        .await
        .unwrap();
    let consent = || ConsentInput {
        purpose: "newsletter".into(),
        policy_version: 1,
        channel: Channel::Web,
        evidence_sha256: None,
    };
    let input = consent();
    record_consent(
        ports,
        &operator(),
        tenant,
        grace,
        input,
        true,
        Timestamp::now(),
    )
    .await
    .unwrap();
    let renamed = moment().await;
    let input = consent();
    record_consent(
        ports,
        &operator(),
        tenant,
        grace,
        input,
        false,
        Timestamp::now(),
    )
    .await
    .unwrap();
    change_user_status(ports, &operator(), tenant, grace, StatusChange::Suspend)
        .await
        .unwrap();
    let suspended = moment().await;

    let cli = |at: Timestamp| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
            .args(["audit", "subject", "--tenant", &tenant.to_string()])
            .args(["--user", &grace.to_string(), "--at", &rfc3339(at)])
            .env("DATABASE_URL", db.url())
            .env("CUSTODIA_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let then = cli(before);
    assert_eq!(then["status"], Value::Null, "{then}");
    assert_eq!(then["last_event"], Value::Null, "{then}");
    let then = cli(registered);
    assert_eq!(then["status"], "active", "{then}");
    assert_eq!(then["display_name"], "Grace H", "{then}");
    assert_eq!(then["email"], "grace@example.org", "{then}");
    assert_eq!(then["consents"], json!([]), "{then}");
    let then = cli(renamed);
    assert_eq!(then["display_name"], "Grace Hopper", "{then}");
    assert_eq!(then["consents"][0]["purpose"], "newsletter", "{then}");
    assert_eq!(then["consents"][0]["granted"], true, "{then}");
    let then = cli(suspended);
    assert_eq!(then["status"], "suspended", "{then}");
    assert_eq!(then["consents"][0]["granted"], false, "{then}");
    assert_eq!(then["personal_data"], "shown", "{then}");

    // GraphQL: an owner reads the personal data then; an auditor (audit
    // and consent reads, no personal reads) gets it withheld.
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let auditor = uuid::Uuid::now_v7();
    let new = NewUser {
        address_vouched: false,
        user: auditor,
        email: "audrey@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(ports, &operator(), tenant, new)
        .await
        .unwrap();
    change_memberships(
        ports,
        &operator(),
        tenant,
        MembershipCommand::Grant {
            user: auditor,
            role: RoleRef::BuiltIn(BuiltInRole::Auditor),
        },
    )
    .await
    .unwrap();
    let token = |email: &'static str| {
        let ports = state.ports.clone();
        async move {
            custodia_application::commands::sessions::start_session(
                &ports,
                tenant,
                email,
                PASSWORD,
                None,
                None,
                Timestamp::now(),
            )
            .await
            .unwrap()
            .access_token
        }
    };
    let query = "query($u: ID!, $at: DateTime!) { subjectAsOf(userId: $u, at: $at) { status personalData email displayName consents { purpose state } lastEventId } }";
    let ask = |token: String, at: Timestamp| {
        actix_web::test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {token}")))
            .set_json(json!({ "query": query, "variables": { "u": grace.to_string(), "at": rfc3339(at) } }))
    };
    let owner = token("ada@example.org").await;
    let (_, body) = call!(&service, ask(owner.clone(), renamed));
    let then = &body["data"]["subjectAsOf"];
    assert_eq!(then["status"], "ACTIVE", "{body}");
    assert_eq!(then["personalData"], "SHOWN", "{body}");
    assert_eq!(then["displayName"], "Grace Hopper", "{body}");
    assert_eq!(
        then["consents"],
        json!([{ "purpose": "newsletter", "state": "GRANTED" }]),
        "{body}"
    );
    let audrey = token("audrey@example.org").await;
    let (_, body) = call!(&service, ask(audrey.clone(), renamed));
    let then = &body["data"]["subjectAsOf"];
    assert_eq!(then["personalData"], "WITHHELD", "{body}");
    assert_eq!(then["email"], Value::Null, "{body}");
    assert_eq!(then["displayName"], Value::Null, "{body}");
    assert_eq!(then["status"], "ACTIVE", "{body}");

    // Erased: the past still has its shape, its personal data is gone.
    custodia_application::commands::privacy::erase_subject(
        ports,
        &operator(),
        tenant,
        grace,
        "request 7",
    )
    .await
    .unwrap();
    let then = cli(renamed);
    assert_eq!(then["personal_data"], "erased", "{then}");
    assert_eq!(then["display_name"], Value::Null, "{then}");
    assert_eq!(then["email"], Value::Null, "{then}");
    assert_eq!(then["status"], "active", "{then}");
    // Erased is told to every reader, the auditor too.
    let (_, body) = call!(&service, ask(audrey, renamed));
    let then = &body["data"]["subjectAsOf"];
    assert_eq!(then["personalData"], "ERASED", "{body}");
    assert_eq!(then["displayName"], Value::Null, "{body}");
    let (_, body) = call!(&service, ask(owner, Timestamp::now()));
    let now = &body["data"]["subjectAsOf"];
    assert_eq!(now["status"], "ERASED", "{body}");
    assert_eq!(now["personalData"], "ERASED", "{body}");
    // A member without audit.read is refused.
    let (_, body) = call!(
        &service,
        ask(token_of_member(&state, tenant).await, renamed)
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
}

async fn token_of_member(
    state: &custodia::http::AppState,
    tenant: custodia_domain::TenantId,
) -> String {
    let new = NewUser {
        address_vouched: false,
        user: uuid::Uuid::now_v7(),
        email: "mel@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(&state.ports, &operator(), tenant, new)
        .await
        .unwrap();
    custodia_application::commands::sessions::start_session(
        &state.ports,
        tenant,
        "mel@example.org",
        PASSWORD,
        None,
        None,
        Timestamp::now(),
    )
    .await
    .unwrap()
    .access_token
}
