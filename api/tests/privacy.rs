//! Erasure of a data subject, over HTTP and GraphQL, on both backends: what
//! is forgotten, what stays provable, and who may do it to whom.

use actix_web::http::StatusCode;
use actix_web::test;
use custodia::http::{app, AppState};
use custodia_application::verify_log;
use custodia_domain::TenantId;
use custodia_infrastructure::MasterKey;
use custodia_tests::identity::{operator, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;

backends!(
    erasure_forgets_the_subject_and_keeps_the_history,
    who_may_erase_whom,
    plaintext_fields_refuse_personal_data,
    erasing_a_tenant_stops_it_at_once_and_keeps_its_chain,
    retention_erases_deleted_users_once_their_period_is_over,
    the_consent_history_is_served_page_by_page_with_its_proof,
    a_subject_export_holds_everything_about_them_and_nothing_else,
    a_restored_key_is_destroyed_again_from_the_erasure_events,
    access_data_expires_day_by_day_and_the_rest_stays,
);

const PASSWORD: &str = "correct horse battery staple";

async fn state(db: &TestDatabase) -> AppState {
    AppState::connect(db.url(), MasterKey::generate(), "custodia", "custodia-api")
        .await
        .unwrap()
}

fn graphql(token: &str, query: &str, variables: Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/graphql")
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("user-agent", "MarkerAgent/7.7"))
        .set_json(json!({ "query": query, "variables": variables }))
}

fn login(tenant: TenantId, email: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/auth/login")
        .insert_header(("user-agent", "MarkerAgent/7.7"))
        .set_json(json!({ "tenant_id": tenant.to_string(), "email": email, "password": PASSWORD }))
}

/// A tenant whose owner, ada, has a password, and its projections running.
async fn owner_and_projections(
    db: &TestDatabase,
) -> (
    AppState,
    TenantId,
    uuid::Uuid,
    custodia::projections::Running,
) {
    let state = state(db).await;
    let (tenant, ada) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    (state, tenant, ada, running)
}

/// An access token of `email` (signed in through the handler: the HTTP
/// edge's per-client limits are not what these tests are about).
async fn access(state: &AppState, tenant: TenantId, email: &str) -> String {
    let now = custodia_domain::Timestamp::now();
    custodia_application::commands::sessions::start_session(
        &state.ports,
        tenant,
        email,
        PASSWORD,
        None,
        None,
        now,
    )
    .await
    .unwrap()
    .access_token
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

const REGISTER: &str = "mutation($email: String!) { registerUser(input: { email: $email, password: \"correct horse battery staple\", profile: { displayName: \"Grace Marker\", phone: \"+44 20 7946 0958\", attributes: { note: \"marker-attribute\" } } }) { user { id } } }";
const GRANT: &str =
    "mutation($u: ID!, $role: String!) { grantRole(userId: $u, role: $role) { changed } }";
const ERASE: &str = "mutation($u: ID!, $ref: String!) { eraseSubject(userId: $u, reference: $ref) { receipt { reference subject keysDestroyed position hash document } consistencyToken } }";

/// Registers a user with a password and the given role (if any); returns
/// their id and an access token.
macro_rules! member {
    ($service:expr, $owner:expr, $tenant:expr, $email:expr, $role:expr) => {{
        let (_, body) = call!(
            $service,
            graphql($owner, REGISTER, json!({ "email": $email }))
        );
        let id = body["data"]["registerUser"]["user"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned();
        let role: Option<&str> = $role;
        if let Some(role) = role {
            let (_, body) = call!(
                $service,
                graphql($owner, GRANT, json!({ "u": id, "role": role }))
            );
            assert_eq!(body["data"]["grantRole"]["changed"], true, "{body}");
        }
        let (status, tokens) = call!($service, login($tenant, $email));
        assert_eq!(status, StatusCode::OK, "{tokens}");
        (id, tokens)
    }};
}

async fn erasure_forgets_the_subject_and_keeps_the_history(db: TestDatabase) {
    let (state, tenant, _, running) = owner_and_projections(&db).await;
    let service = test::init_service(app(state.clone())).await;
    let owner = access(&state, tenant, "ada@example.org").await;
    let (grace, tokens) = member!(&service, &owner, tenant, "grace@example.org", None);
    let grace_token = tokens["access_token"].as_str().unwrap();

    // An answer kept for a client's retries holds the subject's data.
    let keyed = || {
        graphql(
            &owner,
            "mutation($u: ID!) { updateProfile(userId: $u, profile: { displayName: \"Grace Keyed\" }) { user { displayName } } }",
            json!({ "u": grace }),
        )
        .insert_header(("idempotency-key", "\"retry-me\""))
    };
    let (_, first) = call!(&service, keyed());
    let (_, replayed) = call!(&service, keyed());
    assert_eq!(first, replayed);
    assert!(first.to_string().contains("Grace Keyed"), "{first}");

    let (status, body) = call!(
        &service,
        graphql(&owner, ERASE, json!({ "u": grace, "ref": "DSR-2026-0017" }))
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let receipt = &body["data"]["eraseSubject"]["receipt"];
    assert_eq!(receipt["subject"], grace.as_str(), "{body}");
    assert_eq!(receipt["reference"], "DSR-2026-0017");
    assert_eq!(
        receipt["keysDestroyed"],
        json!([format!("subject:{tenant}/{grace}:v1")])
    );
    let document = receipt["document"].clone();
    assert_eq!(document["event"]["event_type"], "SubjectErased");
    assert_eq!(document["event"]["stream"], format!("user:{grace}"));
    assert_eq!(document["inclusion_proof"], Value::Null);
    let token = body["data"]["eraseSubject"]["consistencyToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // The kept answer is withdrawn: the retry learns its request was
    // carried out, not what it said, and nothing runs again.
    let head = state.ports.store.head().await.unwrap();
    let (status, withdrawn) = call!(&service, keyed());
    assert_eq!(status, StatusCode::CONFLICT, "{withdrawn}");
    assert_eq!(code(&withdrawn), "ANSWER_WITHDRAWN");
    assert!(!withdrawn.to_string().contains("Grace"), "{withdrawn}");
    assert_eq!(state.ports.store.head().await.unwrap(), head);

    // The subject's access ends at once: the access token and the refresh
    // token are refused.
    let (status, _) = call!(&service, graphql(grace_token, "{ me { id } }", json!({})));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call!(
        &service,
        test::TestRequest::post()
            .uri("/auth/refresh")
            .set_json(json!({ "refresh_token": tokens["refresh_token"] }))
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every personal field reads as null, not as an error; the user stays,
    // marked erased; their sessions show why they ended.
    let read = "query($u: ID!) { user(id: $u) { status erased email displayName phone attributes } \
                sessions(userId: $u) { edges { node { status revocationReason client { ip userAgent } } } } }";
    let read_user = || {
        graphql(&owner, read, json!({ "u": grace }))
            .insert_header(("x-consistency-token", token.clone()))
    };
    let (_, body) = call!(&service, read_user());
    assert_eq!(body["errors"], Value::Null, "{body}");
    assert_eq!(
        body["data"]["user"],
        json!({ "status": "ERASED", "erased": true, "email": null, "displayName": null,
                "phone": null, "attributes": null }),
        "{body}"
    );
    let sessions = body["data"]["sessions"]["edges"].as_array().unwrap();
    assert!(!sessions.is_empty());
    for session in sessions {
        assert_eq!(
            session["node"],
            json!({ "status": "REVOKED", "revocationReason": "SUBJECT_ERASED", "client": null })
        );
    }

    // Erasing again writes nothing and answers the same receipt; nothing
    // else can happen to the subject.
    let (_, again) = call!(
        &service,
        graphql(&owner, ERASE, json!({ "u": grace, "ref": "DSR-2026-0017" }))
    );
    assert_eq!(
        again["data"]["eraseSubject"]["receipt"]["document"], document,
        "{again}"
    );
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation($u: ID!) { updateProfile(userId: $u, profile: { displayName: \"Back\" }) { user { id } } }",
            json!({ "u": grace })
        )
    );
    assert_eq!(code(&body), "CONFLICT", "{body}");

    // The address is free again: the person may come back as someone new.
    let (_, body) = call!(
        &service,
        graphql(&owner, REGISTER, json!({ "email": "grace@example.org" }))
    );
    let again_id = body["data"]["registerUser"]["user"]["id"].as_str();
    assert!(again_id.is_some_and(|id| id != grace), "{body}");

    // The history stays: the chain verifies, the audit timeline keeps the
    // subject's events, and the erasure is in it.
    let report = verify_log(&*state.ports.store, None, &|_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "query($u: ID!) { auditEvents(subject: $u) { edges { node { type causationId } } } }",
            json!({ "u": grace })
        )
    );
    let types: Vec<&str> = body["data"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"UserRegistered"), "{body}");
    assert_eq!(types.last(), Some(&"SubjectErased"), "{body}");

    // A rebuild from zero never fails on the destroyed key, and ends with
    // the subject erased.
    running.stop().await;
    custodia_projections::rebuild(
        &custodia_projections::identity::all(),
        &state.ports.store,
        &*state.models,
        Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let (_, body) = call!(&service, read_user());
    assert_eq!(body["data"]["user"]["erased"], true, "{body}");
    assert_eq!(body["data"]["user"]["displayName"], Value::Null);
    assert_eq!(
        body["data"]["sessions"]["edges"][0]["node"]["client"],
        Value::Null
    );
}

async fn who_may_erase_whom(db: TestDatabase) {
    let state = state(&db).await;
    let (tenant, ada) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let (other, _) = tenant_with_owner(&state.ports, "eve@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = test::init_service(app(state.clone())).await;
    let access = |tokens: &Value| tokens["access_token"].as_str().unwrap().to_owned();
    let (_, owner) = call!(&service, login(tenant, "ada@example.org"));
    let owner = access(&owner);
    let (_, eve) = call!(&service, login(other, "eve@example.org"));
    let eve = access(&eve);
    let (_, admin) = member!(&service, &owner, tenant, "bob@example.org", Some("admin"));
    let (_, officer) = member!(
        &service,
        &owner,
        tenant,
        "pat@example.org",
        Some("privacy_officer")
    );
    let (mel, member) = member!(&service, &owner, tenant, "mel@example.org", None);
    let (admin, officer, member) = (access(&admin), access(&officer), access(&member));
    let erase = |token: &str, user: &str, reference: &str| {
        graphql(token, ERASE, json!({ "u": user, "ref": reference }))
    };

    // Admins do not erase; a privacy officer does not erase an owner (who
    // holds more); another tenant's owner finds nobody.
    let (_, body) = call!(&service, erase(&admin, &mel, "DSR-1"));
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let (_, body) = call!(&service, erase(&officer, &ada.to_string(), "DSR-1"));
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let (_, body) = call!(&service, erase(&eve, &mel, "DSR-1"));
    assert!(["NOT_FOUND", "FORBIDDEN"].contains(&code(&body)), "{body}");

    // Users erase themselves only where the tenant allows it.
    let (_, body) = call!(&service, erase(&member, &mel, "self"));
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation { updateTenantSettings(settings: { selfServiceErasure: true }) { tenant { settings { selfServiceErasure } } } }",
            json!({})
        )
    );
    assert_eq!(
        body["data"]["updateTenantSettings"]["tenant"]["settings"]["selfServiceErasure"], true,
        "{body}"
    );
    // ... and with their password: a token alone does not erase an account.
    let (_, body) = call!(&service, erase(&member, &mel, "self"));
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let with_password = |password: &str| {
        graphql(
            &member,
            "mutation($u: ID!, $p: String!) { eraseSubject(userId: $u, reference: \"self\", password: $p) { receipt { hash } } }",
            json!({ "u": mel, "p": password }),
        )
    };
    let (_, body) = call!(&service, with_password("not my password at all"));
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    let (_, body) = call!(&service, with_password(PASSWORD));
    assert_eq!(body["errors"], Value::Null, "{body}");

    // A reference is kept in the log for good: one that holds personal
    // data is refused, naming the field and not the value.
    let (_, body) = call!(
        &service,
        erase(&owner, &mel, "request from mel@example.org")
    );
    assert_eq!(code(&body), "VALIDATION", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("erasure reference") && !message.contains("mel@"),
        "{message}"
    );

    // The last active owner cannot be erased (by themselves or anyone),
    // and their data stays.
    let (_, body) = call!(&service, erase(&owner, &ada.to_string(), "DSR-2"));
    assert_eq!(code(&body), "CONFLICT", "{body}");
    let (_, body) = call!(
        &service,
        graphql(&owner, "{ me { email erased } }", json!({}))
    );
    assert_eq!(
        body["data"]["me"],
        json!({ "email": "ada@example.org", "erased": false }),
        "{body}"
    );
    running.stop().await;
}

/// Plaintext fields are kept in the log for good: a value holding an email
/// address, a phone number or a card number is refused, naming the field
/// and not the value, and nothing is written.
async fn plaintext_fields_refuse_personal_data(db: TestDatabase) {
    let state = state(&db).await;
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let service = test::init_service(app(state.clone())).await;
    let (_, owner) = call!(&service, login(tenant, "ada@example.org"));
    let owner = owner["access_token"].as_str().unwrap().to_owned();
    let head = state.ports.store.head().await.unwrap();
    for (field, mutation) in [
        ("API key name", "mutation { createApiKey(name: \"for ada@example.org\", permissions: [\"user.read\"]) { key } }"),
        ("API key name", "mutation { createApiKey(name: \"card 4111 1111 1111 1111\", permissions: [\"user.read\"]) { key } }"),
        ("role name", "mutation { defineRole(name: \"r4111111111111111\", permissions: [\"user.read\"]) { changed } }"),
        ("consent purpose", "mutation { updateTenantSettings(settings: { addConsentPurposes: [{ id: \"p5500005555555559\", version: 1 }] }) { consistencyToken } }"),
    ] {
        let (_, body) = call!(&service, graphql(&owner, mutation, json!({})));
        assert_eq!(code(&body), "VALIDATION", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        assert!(
            !message.contains("ada@") && !message.contains("4111") && !message.contains("5500"),
            "{message}"
        );
    }
    assert_eq!(
        state.ports.store.head().await.unwrap(),
        head,
        "nothing written"
    );
    // The same kinds of field without personal data pass.
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation { defineRole(name: \"support_2026\", permissions: [\"user.read\"]) { changed } }",
            json!({})
        )
    );
    assert_eq!(body["data"]["defineRole"]["changed"], true, "{body}");
}

async fn erasing_a_tenant_stops_it_at_once_and_keeps_its_chain(db: TestDatabase) {
    use custodia_application::commands::privacy::erase_tenant;
    let (state, tenant, ada, running) = owner_and_projections(&db).await;
    let (other, _) = tenant_with_owner(&state.ports, "eve@example.org", Some(PASSWORD)).await;
    let service = test::init_service(app(state.clone())).await;
    let (_, tokens) = call!(&service, login(tenant, "ada@example.org"));
    let owner = tokens["access_token"].as_str().unwrap().to_owned();
    let (_, key) = call!(
        &service,
        graphql(
            &owner,
            "mutation { createApiKey(name: \"sync\", permissions: [\"user.read\"]) { key } }",
            json!({})
        )
    );
    let key = key["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, eve) = call!(&service, login(other, "eve@example.org"));
    let eve = eve["access_token"].as_str().unwrap().to_owned();

    // Nobody inside a tenant erases it, not even its owner.
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation($t: ID!) { eraseTenant(tenantId: $t, reference: \"offboarding\") { receipt { hash } } }",
            json!({ "t": tenant.to_string() })
        )
    );
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    let erasure = erase_tenant(&state.ports, &operator(), tenant, "offboarding 2026-11")
        .await
        .unwrap();
    let receipt = &erasure.receipt;
    assert_eq!(receipt.erased, "tenant");
    assert_eq!(receipt.event.event_type, "TenantErased");
    assert_eq!(receipt.event.chain, "platform");
    assert_eq!(receipt.keys_destroyed, [format!("tenant:{tenant}:v1")]);

    // Every credential of the tenant stops at once; logins are refused.
    let me = "{ me { id } }";
    let (status, _) = call!(&service, graphql(&owner, me, json!({})));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call!(
        &service,
        graphql(&key, "{ users { edges { cursor } } }", json!({}))
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call!(
        &service,
        test::TestRequest::post()
            .uri("/auth/refresh")
            .set_json(json!({ "refresh_token": tokens["refresh_token"] }))
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call!(&service, login(tenant, "ada@example.org"));
    assert!(status.is_client_error(), "{status}");

    // Every personal field of the tenant is unreadable; another tenant
    // works as before.
    let record = custodia_application::commands::users::read_personal_data(
        &state.ports,
        &operator(),
        tenant,
        ada,
    )
    .await
    .unwrap();
    assert_eq!(record.email, None);
    let (_, body) = call!(&service, graphql(&eve, "{ me { email } }", json!({})));
    assert_eq!(body["data"]["me"]["email"], "eve@example.org", "{body}");

    // Nothing more is written to the closed chain, an erasure included.
    let head = state.ports.store.head().await.unwrap();
    let refused = custodia_application::commands::privacy::erase_subject(
        &state.ports,
        &operator(),
        tenant,
        ada,
        "DSR-after",
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(state.ports.store.head().await.unwrap(), head);

    // Both chains verify; erasing again writes nothing, answers the same.
    let report = verify_log(&*state.ports.store, None, &|_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    let head = state.ports.store.head().await.unwrap();
    let again = erase_tenant(&state.ports, &operator(), tenant, "offboarding 2026-11")
        .await
        .unwrap();
    assert_eq!(&again.receipt, receipt);
    assert_eq!(state.ports.store.head().await.unwrap(), head);
    running.stop().await;
}

/// The retention job, with the clock moved: a user deleted 30 days ago (the
/// default period) is not due, one past it is erased, once, with the system
/// as its actor; a dry run writes nothing; two instances running the job at
/// once erase each user once.
async fn retention_erases_deleted_users_once_their_period_is_over(db: TestDatabase) {
    use custodia::retention;
    use custodia_domain::Timestamp;
    let key = MasterKey::generate().to_base64();
    let connect = || async {
        AppState::connect(db.url(), key.parse().unwrap(), "custodia", "custodia-api")
            .await
            .unwrap()
    };
    let (state, other_instance) = (connect().await, connect().await);
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = test::init_service(app(state.clone())).await;
    let (_, owner) = call!(&service, login(tenant, "ada@example.org"));
    let owner = owner["access_token"].as_str().unwrap().to_owned();
    let (grace, _) = member!(&service, &owner, tenant, "grace@example.org", None);
    let (henry, _) = member!(&service, &owner, tenant, "henry@example.org", None);
    let delete =
        "mutation($u: ID!) { deleteUser(userId: $u) { user { status } consistencyToken } }";
    let (_, body) = call!(&service, graphql(&owner, delete, json!({ "u": grace })));
    assert_eq!(
        body["data"]["deleteUser"]["user"]["status"], "DELETED",
        "{body}"
    );
    let day = 86_400_000_000;
    let now = Timestamp::now().0;

    // Within the period: nobody is due.
    let report = retention::run(
        &state.ports,
        &*state.models,
        Timestamp(now + 29 * day),
        false,
    )
    .await
    .unwrap();
    assert!(report.due.is_empty(), "{report:?}");
    // Past it, a dry run finds grace (not henry, who is not deleted) and
    // writes nothing.
    let head = state.ports.store.head().await.unwrap();
    let later = Timestamp(now + 31 * day);
    let report = retention::run(&state.ports, &*state.models, later, true)
        .await
        .unwrap();
    let due: Vec<String> = report.due.iter().map(|d| d.user.to_string()).collect();
    assert_eq!(due, std::slice::from_ref(&grace));
    assert_eq!(report.erased, 0);
    assert_eq!(state.ports.store.head().await.unwrap(), head);

    // Two instances run the job at once: grace is erased once.
    let (a, b) = tokio::join!(
        retention::run_alone(&state.ports, &*state.models, later),
        retention::run_alone(&other_instance.ports, &*other_instance.models, later),
    );
    assert!(a.is_ok() && b.is_ok());
    let events = state
        .ports
        .store
        .read_chain(
            custodia_domain::ChainId::Tenant(tenant),
            custodia_domain::ChainIndex(0),
            10_000,
        )
        .await
        .unwrap();
    let erasures: Vec<_> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "SubjectErased")
        .collect();
    assert_eq!(erasures.len(), 1);
    assert_eq!(erasures[0].stream.id.to_string(), grace);
    assert_eq!(erasures[0].metadata.actor, custodia_domain::Actor::System);
    assert_eq!(erasures[0].metadata.origin.as_str(), "retention");

    // Once the read models have it, nobody is due any more; henry is
    // untouched.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = retention::run(&state.ports, &*state.models, later, true)
            .await
            .unwrap();
        if report.due.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "query($g: ID!, $h: ID!) { g: user(id: $g) { erased } h: user(id: $h) { erased email } }",
            json!({ "g": grace, "h": henry })
        )
    );
    assert_eq!(
        body["data"],
        json!({ "g": { "erased": true }, "h": { "erased": false, "email": "henry@example.org" } }),
        "{body}"
    );
    running.stop().await;
}

/// GDPR Art. 7(1): the controller shows every grant and withdrawal, when,
/// on which policy version, where, by whom, and where the log proves it.
async fn the_consent_history_is_served_page_by_page_with_its_proof(db: TestDatabase) {
    let (state, tenant, _, running) = owner_and_projections(&db).await;
    let service = test::init_service(app(state.clone())).await;
    let owner = access(&state, tenant, "ada@example.org").await;
    let (grace, tokens) = member!(&service, &owner, tenant, "grace@example.org", None);
    let grace_token = tokens["access_token"].as_str().unwrap().to_owned();
    let (_, mel) = member!(&service, &owner, tenant, "mel@example.org", None);
    let mel = mel["access_token"].as_str().unwrap().to_owned();
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation { updateTenantSettings(settings: { addConsentPurposes: [{ id: \"newsletter\", version: 2 }] }) { consistencyToken } }",
            json!({})
        )
    );
    assert_eq!(body["errors"], Value::Null, "{body}");
    let record = "mutation($granted: Boolean!) { recordConsent(userId: \"me\", input: { purpose: \"newsletter\", policyVersion: 2, channel: WEB, granted: $granted }) { changed } }"
        .replace("\"me\"", &format!("\"{grace}\""));
    for granted in [true, false] {
        let (_, body) = call!(
            &service,
            graphql(&grace_token, &record, json!({ "granted": granted }))
        );
        assert_eq!(body["data"]["recordConsent"]["changed"], true, "{body}");
    }
    let page = |after: Option<String>| {
        graphql(
            &grace_token,
            "query($u: ID!, $after: String) { consentHistory(userId: $u, first: 1, after: $after) { \
             pageInfo { hasNextPage } edges { cursor node { purpose state policyVersion channel actor eventId hash position } } } }",
            json!({ "u": grace, "after": after }),
        )
    };
    let (_, first) = call!(&service, page(None));
    let first = &first["data"]["consentHistory"];
    assert_eq!(first["pageInfo"]["hasNextPage"], true, "{first}");
    let granted = &first["edges"][0]["node"];
    assert_eq!(
        (
            &granted["state"],
            &granted["policyVersion"],
            &granted["channel"]
        ),
        (&json!("GRANTED"), &json!(2), &json!("WEB"))
    );
    assert_eq!(granted["actor"], format!("user:{grace}"));
    let cursor = first["edges"][0]["cursor"].as_str().unwrap().to_owned();
    let (_, second) = call!(&service, page(Some(cursor)));
    let second = &second["data"]["consentHistory"];
    assert_eq!(second["pageInfo"]["hasNextPage"], false, "{second}");
    assert_eq!(second["edges"][0]["node"]["state"], "WITHDRAWN");

    // The hash is the log's: the audit timeline has the same event.
    let (_, audit) = call!(
        &service,
        graphql(
            &owner,
            "query($u: ID!) { auditEvents(subject: $u, type: \"ConsentGranted\") { edges { node { id hash } } } }",
            json!({ "u": grace })
        )
    );
    let logged = &audit["data"]["auditEvents"]["edges"][0]["node"];
    assert_eq!(logged["id"], granted["eventId"], "{audit}");
    assert_eq!(logged["hash"], granted["hash"]);

    // Another member does not read it.
    let (_, body) = call!(
        &service,
        graphql(
            &mel,
            "query($u: ID!) { consentHistory(userId: $u) { edges { cursor } } }",
            json!({ "u": grace })
        )
    );
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    running.stop().await;
}

/// `exportSubject`: the subject's profile and attributes, roles and their
/// history, sessions with where they were started from, consents with
/// their history, and every event about or by them (over 500, more than a
/// page of the read models), valid against the published JSON Schema, and
/// nothing about anyone else.
async fn a_subject_export_holds_everything_about_them_and_nothing_else(db: TestDatabase) {
    let (state, tenant, _, running) = owner_and_projections(&db).await;
    let service = test::init_service(app(state.clone())).await;
    let owner = access(&state, tenant, "ada@example.org").await;
    let (grace, tokens) = member!(
        &service,
        &owner,
        tenant,
        "grace@example.org",
        Some("auditor")
    );
    let (henry, henry_tokens) = member!(&service, &owner, tenant, "henry@example.org", None);
    let henry_token = henry_tokens["access_token"].as_str().unwrap().to_owned();
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation { updateTenantSettings(settings: { addConsentPurposes: [{ id: \"newsletter\", version: 1 }] }) { consistencyToken } }",
            json!({})
        )
    );
    assert_eq!(body["errors"], Value::Null, "{body}");
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let record = format!(
        "mutation {{ recordConsent(userId: \"{grace}\", input: {{ purpose: \"newsletter\", policyVersion: 1, channel: EMAIL, granted: true }}) {{ changed }} }}"
    );
    let (_, body) = call!(&service, graphql(&token, &record, json!({})));
    assert_eq!(body["data"]["recordConsent"]["changed"], true, "{body}");
    // A long history: more events about her than a page holds.
    // (Through the handler: the HTTP edge limits refreshes per client.)
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..510 {
        let next = custodia_application::commands::sessions::refresh_session(
            &state.ports,
            Some(tenant),
            &refresh,
            custodia_domain::Timestamp::now(),
        )
        .await
        .unwrap();
        refresh = next.refresh_token;
    }
    let (_, latest) = call!(&service, login(tenant, "grace@example.org"));
    let grace_token = latest["access_token"].as_str().unwrap().to_owned();
    // Wait until the read models hold the whole history.
    let head = state.ports.store.head().await.unwrap();
    state.projections.wait_for(head).await.unwrap();

    let export = "query($u: ID!) { exportSubject(userId: $u) }";
    let (_, body) = call!(
        &service,
        graphql(&grace_token, export, json!({ "u": grace }))
    );
    let document = body["data"]["exportSubject"].clone();
    assert_eq!(document["format"], "custodia.subject-export.v1", "{body}");
    assert_eq!(document["status"], "active");
    assert_eq!(
        document["profile"],
        json!({ "email": "grace@example.org", "display_name": "Grace Marker",
                "phone": "+44 20 7946 0958", "attributes": { "note": "marker-attribute" } })
    );
    assert_eq!(document["roles"], json!(["auditor"]));
    assert_eq!(document["role_history"][0]["change"], "granted");
    assert_eq!(document["role_history"][0]["role"], "auditor");
    let sessions = document["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions
            .iter()
            .all(|s| s["user_agent"] == "MarkerAgent/7.7"),
        "{sessions:?}"
    );
    assert_eq!(document["consents"][0]["state"], "granted");
    assert_eq!(document["consents"][0]["channel"], "email");
    let events = document["events"].as_array().unwrap();
    assert!(events.len() > 510, "{}", events.len());
    assert!(events
        .iter()
        .any(|e| e["type"] == "ConsentGranted" && e["by_subject"] == true));
    assert!(events
        .iter()
        .any(|e| e["type"] == "UserRegistered" && e["about_subject"] == true));
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in log order, each once"
    );
    // Nothing about anyone else.
    let text = document.to_string();
    assert!(
        !text.contains("henry") && !text.contains(&henry),
        "someone else is in it"
    );

    // Valid against the published schema.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), document.to_string()).unwrap();
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/subject-export.schema.json"
    );
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        ])
        .arg(file.path())
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Another member does not export her; the owner (who holds
    // `subject.export`) does.
    let (_, body) = call!(
        &service,
        graphql(&henry_token, export, json!({ "u": grace }))
    );
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let (_, body) = call!(&service, graphql(&owner, export, json!({ "u": grace })));
    assert_eq!(
        body["data"]["exportSubject"]["subject"],
        grace.as_str(),
        "{body}"
    );
    running.stop().await;
}

/// Restoring the key store from a backup taken before an erasure brings
/// the key back (the danger is real); the erasure events name it, and
/// re-applying them (at start-up, or `custodia privacy reapply-erasures`)
/// destroys it again.
async fn a_restored_key_is_destroyed_again_from_the_erasure_events(db: TestDatabase) {
    use custodia_application::commands::users::read_personal_data;
    let (state, tenant, _, running) = owner_and_projections(&db).await;
    let service = test::init_service(app(state.clone())).await;
    let owner = access(&state, tenant, "ada@example.org").await;
    let (grace, _) = member!(&service, &owner, tenant, "grace@example.org", None);
    let user = grace.parse::<uuid::Uuid>().unwrap();
    // The backup: grace's wrapped key as the key store holds it now.
    let select = "SELECT wrapped FROM subject_keys WHERE subject_id = $1";
    let restore = "UPDATE subject_keys SET wrapped = $1, erased_at = NULL WHERE subject_id = $2";
    // On SQLite the key store is a file of its own beside the log.
    let keys_url = custodia_infrastructure::default_keys_url(db.url());
    let backup: Vec<u8> = if db.url().starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&keys_url).await.unwrap();
        sqlx::query_scalar(select)
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        sqlx::query_scalar(select)
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let (_, body) = call!(
        &service,
        graphql(&owner, ERASE, json!({ "u": grace, "ref": "DSR-5" }))
    );
    let token = body["data"]["eraseSubject"]["consistencyToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .parse()
        .unwrap();
    state.projections.wait_for(token).await.unwrap();
    let email = || async {
        read_personal_data(&state.ports, &operator(), tenant, user)
            .await
            .unwrap()
            .email
    };
    assert_eq!(email().await, None);

    // The key store is restored from the backup: grace is readable again.
    if db.url().starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&keys_url).await.unwrap();
        sqlx::query(restore)
            .bind(&backup)
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        sqlx::query(restore)
            .bind(&backup)
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(email().await.as_deref(), Some("grace@example.org"));

    // The erasure events are re-applied: the key is gone again, once.
    let reapplied = custodia::erasures::destroy_again(&state.ports, &*state.models)
        .await
        .unwrap();
    assert_eq!((reapplied.erasures, reapplied.destroyed), (1, 1));
    assert_eq!(email().await, None);
    let again = custodia::erasures::destroy_again(&state.ports, &*state.models)
        .await
        .unwrap();
    assert_eq!(again.destroyed, 0);
    running.stop().await;
}

/// Access-data retention: the IP address and user agent of every session
/// started on a day that ended `accessDataRetentionDays` ago become
/// unreadable (the day's key destroyed, `AccessDataExpired` recorded once
/// even with two instances running the job); the rest of those sessions,
/// and the access data of later days, stay; the chain still verifies.
async fn access_data_expires_day_by_day_and_the_rest_stays(db: TestDatabase) {
    use custodia::retention;
    use custodia_application::commands::sessions::{start_session, ClientInfo};
    use custodia_domain::Timestamp;
    let key = MasterKey::generate().to_base64();
    let connect = || async {
        AppState::connect(db.url(), key.parse().unwrap(), "custodia", "custodia-api")
            .await
            .unwrap()
    };
    let (state, other_instance) = (connect().await, connect().await);
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = test::init_service(app(state.clone())).await;
    let owner = access(&state, tenant, "ada@example.org").await;
    let (grace, _) = member!(&service, &owner, tenant, "grace@example.org", None);
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            "mutation { updateTenantSettings(settings: { accessDataRetentionDays: 30 }) { consistencyToken } }",
            json!({})
        )
    );
    assert_eq!(body["errors"], Value::Null, "{body}");
    let day = 86_400_000_000;
    let now = Timestamp::now().0;
    let from = |agent: &str| ClientInfo {
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some(agent.to_owned()),
    };
    let sign_in = |agent: &'static str, at: i64| {
        let ports = state.ports.clone();
        async move {
            start_session(
                &ports,
                tenant,
                "grace@example.org",
                PASSWORD,
                None,
                Some(&from(agent)),
                Timestamp(at),
            )
            .await
            .unwrap()
            .session
            .to_string()
        }
    };
    let old = sign_in("OldAgent/1.0", now - 40 * day).await;
    let recent = sign_in("RecentAgent/1.0", now - 2 * day).await;
    let sessions = |token: String| {
        graphql(
            &owner,
            "query($u: ID!) { sessions(userId: $u) { edges { node { id status client { ip userAgent } } } } }",
            json!({ "u": grace }),
        )
        .insert_header(("x-consistency-token", token))
    };
    let head = state.ports.store.head().await.unwrap();
    state.projections.wait_for(head).await.unwrap();
    let clients = |body: &Value| -> std::collections::BTreeMap<String, Value> {
        body["data"]["sessions"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|edge| {
                let node = &edge["node"];
                (
                    node["id"].as_str().unwrap().to_owned(),
                    node["client"].clone(),
                )
            })
            .collect()
    };
    let (_, body) = call!(&service, sessions(head.to_string()));
    let before = clients(&body);
    assert_eq!(before[&old]["userAgent"], "OldAgent/1.0", "{body}");
    assert_eq!(before[&recent]["userAgent"], "RecentAgent/1.0");

    // A dry run names the old day only, and changes nothing.
    let report = retention::run(&state.ports, &*state.models, Timestamp(now), true)
        .await
        .unwrap();
    let old_day = custodia_domain::personal::AccessDay::of(Timestamp(now - 40 * day));
    assert_eq!(report.access_due.len(), 1, "{report:?}");
    assert_eq!(report.access_due[0].days, vec![old_day]);
    assert_eq!(report.access_keys_destroyed, 0);
    assert_eq!(state.ports.store.head().await.unwrap(), head);

    // Two instances run the job at once: the day expires once.
    let (a, b) = tokio::join!(
        retention::run_alone(&state.ports, &*state.models, Timestamp(now)),
        retention::run_alone(
            &other_instance.ports,
            &*other_instance.models,
            Timestamp(now)
        ),
    );
    let destroyed: u64 = [a.unwrap(), b.unwrap()]
        .iter()
        .flatten()
        .map(|report| report.access_keys_destroyed)
        .sum();
    assert_eq!(destroyed, 1);
    let events = state
        .ports
        .store
        .read_chain(
            custodia_domain::ChainId::Tenant(tenant),
            custodia_domain::ChainIndex(0),
            10_000,
        )
        .await
        .unwrap();
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "AccessDataExpired")
        .collect();
    assert_eq!(expired.len(), 1);
    let payload: Value = serde_json::from_slice(expired[0].payload.as_bytes()).unwrap();
    assert_eq!(payload["days"], json!([old_day.to_string()]));
    assert_eq!(payload["retention_days"], 30);
    assert_eq!(expired[0].metadata.actor, custodia_domain::Actor::System);

    // The old session keeps everything but where it came from.
    let head = state.ports.store.head().await.unwrap();
    let (_, body) = call!(&service, sessions(head.to_string()));
    let after = clients(&body);
    assert_eq!(after[&old], Value::Null, "{body}");
    assert_eq!(after[&recent]["userAgent"], "RecentAgent/1.0", "{body}");
    assert_eq!(after.len(), before.len());
    // Nothing is due any more; a session dated on the expired day keeps
    // no access data (none is sealed behind the job).
    let report = retention::run(&state.ports, &*state.models, Timestamp(now), false)
        .await
        .unwrap();
    assert!(report.access_due.is_empty(), "{report:?}");
    let late = sign_in("LateAgent/1.0", now - 40 * day).await;
    let earlier = sign_in("EarlierAgent/1.0", now - 41 * day).await;
    let head = state.ports.store.head().await.unwrap();
    state.projections.wait_for(head).await.unwrap();
    let (_, body) = call!(&service, sessions(head.to_string()));
    assert_eq!(clients(&body)[&late], Value::Null, "{body}");
    assert_eq!(clients(&body)[&earlier], Value::Null, "{body}");
    let report = verify_log(&*state.ports.store, None, &|_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");

    // Erasing the subject makes the recent access data unreadable too.
    let (_, body) = call!(
        &service,
        graphql(&owner, ERASE, json!({ "u": grace, "ref": "DSR-9" }))
    );
    let token = body["data"]["eraseSubject"]["consistencyToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let (_, body) = call!(&service, sessions(token));
    assert!(clients(&body).values().all(Value::is_null), "{body}");
    running.stop().await;
}
