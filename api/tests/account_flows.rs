//! The account flows over HTTP with real SMTP (ADR 0013), on both
//! backends: a real SMTP server (aiosmtpd) receives every message; the
//! tests read the message that arrived, follow its link, and finish the
//! flow over HTTP. Every refusal is typed and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use actix_web::test::TestRequest;
use custodia::http::AppState;
use custodia::mail::Pace;
use custodia_domain::TenantId;
use custodia_infrastructure::smtp::{SmtpMailer, SmtpSettings};
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[macro_use]
#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;
mod smtp;

use smtp::{free_port, start_sink, start_webhook_sink, token_in, Sink};

backends!(
    an_invitation_arrives_and_is_accepted_once,
    a_new_invitation_revokes_the_one_before,
    an_address_is_verified_through_the_link_and_a_tenant_may_require_it,
    a_reset_link_sets_a_new_password_and_ends_every_session,
    a_reset_request_answers_the_same_for_unknown_addresses,
    a_tenant_is_found_by_its_slug,
    a_tenants_own_template_speaks_the_recipients_language,
    a_tenants_own_mailer_takes_signed_messages_through_the_webhook,
);

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a new and different passphrase";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Flows {
    state: AppState,
    sink: Sink,
    tenant: TenantId,
    owner_token: String,
    _projections: custodia::projections::Running,
    _mail: tokio::task::JoinHandle<()>,
}

async fn setup(db: &TestDatabase) -> Flows {
    let sink = start_sink(free_port(), tempfile::tempdir().unwrap());
    let mailer = SmtpMailer::connect(
        &SmtpSettings {
            url: format!("smtp://127.0.0.1:{}", sink.port),
            from: "Acme <no-reply@acme.example>".to_owned(),
        },
        false,
    )
    .unwrap();
    setup_with(db, sink, Arc::new(mailer)).await
}

async fn setup_with(
    db: &TestDatabase,
    sink: Sink,
    mailer: Arc<dyn custodia_application::mail::Mailer>,
) -> Flows {
    let config = custodia::http::Config {
        app_url: "https://app.example".to_owned(),
        ..custodia::http::Config::from_env().unwrap()
    };
    let state = AppState::connect_with(
        db.url(),
        custodia_infrastructure::MasterKeys::new(MASTER_KEY.parse().unwrap()),
        config,
    )
    .await
    .unwrap();
    let pace = Pace {
        poll: Duration::from_millis(100),
        first_retry: Duration::from_secs(1),
    };
    let mail = custodia::mail::schedule(state.ports.clone(), state.models.clone(), mailer, pace);
    let projections = state.projections.start(state.ports.store.clone());
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let owner_token = sign_in(&state, tenant, "ada@example.org", PASSWORD).await;
    Flows {
        state,
        sink,
        tenant,
        owner_token,
        _projections: projections,
        _mail: mail,
    }
}

async fn sign_in(state: &AppState, tenant: TenantId, email: &str, password: &str) -> String {
    let (status, body) = post(
        state,
        "/auth/login",
        json!({ "tenant_id": tenant.to_string(), "email": email, "password": password }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn post(state: &AppState, path: &str, body: Value) -> (u16, Value) {
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let (status, body) = call!(&service, TestRequest::post().uri(path).set_json(body));
    (status.as_u16(), body)
}

async fn graphql(state: &AppState, token: &str, query: &str) -> Value {
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let request = TestRequest::post()
        .uri("/graphql")
        .insert_header(("authorization", format!("Bearer {token}")))
        .set_json(json!({ "query": query }));
    call!(&service, request).1
}

/// Invites `email`; answers the new user's id.
async fn invite(flows: &Flows, email: &str) -> String {
    let body = graphql(
        &flows.state,
        &flows.owner_token,
        &format!(r#"mutation {{ registerUser(input: {{ email: "{email}", invite: true }}) {{ user {{ id status emailVerified }} }} }}"#),
    )
    .await;
    let user = &body["data"]["registerUser"]["user"];
    assert_eq!(user["status"], "INVITED", "{body}");
    assert_eq!(user["emailVerified"], false, "{body}");
    user["id"].as_str().unwrap().to_owned()
}

/// The log's head: a refusal must leave it where it was.
async fn head(state: &AppState) -> custodia_domain::LogCursor {
    state.ports.store.head().await.unwrap()
}

/// Nothing was written since `before`, but the delivery worker's records
/// (it sends what earlier steps queued, meanwhile).
async fn unchanged_since(state: &AppState, before: custodia_domain::LogCursor) {
    let written = state.ports.store.read_all(before, 1000).await.unwrap();
    let other: Vec<&str> = written
        .iter()
        .filter(|e| e.stream.category.as_str() != "message")
        .map(|e| e.event_type.as_str())
        .collect();
    assert!(other.is_empty(), "a refusal wrote {other:?}");
}

/// Posts a link the server must refuse with `code`, and checks nothing
/// was written.
async fn refused(state: &AppState, path: &str, body: Value, code: &str) {
    let before = head(state).await;
    let (status, answer) = post(state, path, body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    unchanged_since(state, before).await;
}

async fn user(state: &AppState, token: &str, id: &str) -> Value {
    let body = graphql(
        state,
        token,
        &format!(r#"{{ user(id: "{id}") {{ status emailVerified }} }}"#),
    )
    .await;
    body["data"]["user"].clone()
}

async fn an_invitation_arrives_and_is_accepted_once(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let id = invite(&flows, "bob@example.org").await;
    let message = flows
        .sink
        .nth("bob@example.org", "You are invited", 1)
        .await;
    assert_eq!(message["subject"], "You are invited to Acme");
    assert_eq!(message["from"], "Acme <no-reply@acme.example>");
    assert!(message["message_id"]
        .as_str()
        .unwrap()
        .ends_with("@custodia>"));
    let token = token_in(&message, "accept-invitation");
    assert!(token.starts_with("inv_"), "{token}");
    let accept = |tenant: &str, token: &str, password: &str| json!({ "tenant": tenant, "token": token, "password": password });
    let path = "/auth/invitation/accept";
    // Wrong token, wrong purpose, wrong tenant, a weak password: refused,
    // and nothing written.
    let forged = format!("{}A", &token[..token.len() - 1]);
    let forged = if forged == token {
        format!("{}B", &token[..token.len() - 1])
    } else {
        forged
    };
    refused(
        state,
        path,
        accept(&tenant, &forged, PASSWORD),
        "INVALID_TOKEN",
    )
    .await;
    refused(
        state,
        path,
        accept(&tenant, "inv_x_y", PASSWORD),
        "INVALID_TOKEN",
    )
    .await;
    let as_reset = token.replacen("inv_", "rst_", 1);
    refused(
        state,
        path,
        accept(&tenant, &as_reset, PASSWORD),
        "INVALID_TOKEN",
    )
    .await;
    let (other, _) = tenant_with_owner(&state.ports, "eve@example.org", None).await;
    refused(
        state,
        path,
        accept(&other.to_string(), &token, PASSWORD),
        "WRONG_TENANT",
    )
    .await;
    let before = head(state).await;
    let (status, body) = post(state, path, accept(&tenant, &token, "short")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("VALIDATION")),
        "{body}"
    );
    unchanged_since(state, before).await;
    // Accepted: active, verified, and signs in with the password chosen.
    let (status, body) = post(state, path, accept(&tenant, &token, PASSWORD)).await;
    assert_eq!(status, 204, "{body}");
    sign_in(state, flows.tenant, "bob@example.org", PASSWORD).await;
    custodia_tests_caught_up(state).await;
    let bob = user(state, &flows.owner_token, &id).await;
    assert_eq!(bob, json!({ "status": "ACTIVE", "emailVerified": true }));
    // Used once only.
    refused(state, path, accept(&tenant, &token, NEW_PASSWORD), "USED").await;
    // Every step is in the tenant's audit timeline, the token only as a hash.
    let events = audit_types(state, &flows.owner_token).await;
    for kind in [
        "LinkTokenIssued",
        "MessageQueued",
        "MessageSent",
        "LinkTokenUsed",
        "UserEmailVerified",
    ] {
        assert!(
            events.iter().any(|e| e == kind),
            "{kind} missing from {events:?}"
        );
    }
    // `<prefix>_<stream>_<secret>`: the secret is base64url, so it may
    // hold `_` itself.
    let secret = token.splitn(3, '_').nth(2).unwrap().to_owned();
    assert!(secret.len() >= 43, "{token}");
    assert_no_plaintext(state, &[&secret, "bob@example.org"]).await;
}

async fn custodia_tests_caught_up(state: &AppState) {
    let head = state.ports.store.head().await.unwrap();
    while !state.projections.wait_for(head).await.unwrap() {}
}

async fn audit_types(state: &AppState, token: &str) -> Vec<String> {
    custodia_tests_caught_up(state).await;
    let body = graphql(
        state,
        token,
        "{ auditEvents(first: 100) { edges { node { type } } } }",
    )
    .await;
    body["data"]["auditEvents"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["node"]["type"].as_str().unwrap().to_owned())
        .collect()
}

/// No event payload holds any of `secrets` in plaintext.
async fn assert_no_plaintext(state: &AppState, secrets: &[&str]) {
    let mut after = custodia_domain::LogCursor::default();
    loop {
        let page = state.ports.store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.cursor();
        for event in &page {
            let payload = String::from_utf8_lossy(event.payload.as_bytes());
            for secret in secrets {
                assert!(
                    !payload.contains(secret),
                    "{} holds a secret",
                    event.event_type.as_str()
                );
            }
        }
    }
}

async fn a_new_invitation_revokes_the_one_before(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let id = invite(&flows, "carol@example.org").await;
    let first = token_in(
        &flows
            .sink
            .nth("carol@example.org", "You are invited", 1)
            .await,
        "accept-invitation",
    );
    let body = graphql(
        state,
        &flows.owner_token,
        &format!(r#"mutation {{ resendInvitation(userId: "{id}") {{ user {{ status }} }} }}"#),
    )
    .await;
    assert_eq!(
        body["data"]["resendInvitation"]["user"]["status"], "INVITED",
        "{body}"
    );
    let second = token_in(
        &flows
            .sink
            .nth("carol@example.org", "You are invited", 2)
            .await,
        "accept-invitation",
    );
    assert_ne!(first, second);
    let path = "/auth/invitation/accept";
    let accept = |token: &str| json!({ "tenant": tenant, "token": token, "password": PASSWORD });
    refused(state, path, accept(&first), "REVOKED").await;
    let (status, body) = post(state, path, accept(&second)).await;
    assert_eq!(status, 204, "{body}");
    // An active user is not invited again.
    let body = graphql(
        state,
        &flows.owner_token,
        &format!(r#"mutation {{ resendInvitation(userId: "{id}") {{ user {{ status }} }} }}"#),
    )
    .await;
    assert!(body["errors"].is_array(), "{body}");
}

async fn an_address_is_verified_through_the_link_and_a_tenant_may_require_it(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let body = graphql(
        state,
        &flows.owner_token,
        &format!(r#"mutation {{ registerUser(input: {{ email: "dave@example.org", password: "{PASSWORD}" }}) {{ user {{ id emailVerified }} }} }}"#),
    )
    .await;
    let id = body["data"]["registerUser"]["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let message = flows.sink.nth("dave@example.org", "Confirm", 1).await;
    assert_eq!(message["subject"], "Confirm your address for Acme");
    let token = token_in(&message, "verify-email");
    // The tenant requires verified addresses: the right password is told
    // so (a wrong one is not).
    let body = graphql(
        state,
        &flows.owner_token,
        "mutation { updateTenantSettings(settings: { requireVerifiedEmail: true }) { tenant { settings { requireVerifiedEmail verificationHours } } } }",
    )
    .await;
    let settings = &body["data"]["updateTenantSettings"]["tenant"]["settings"];
    assert_eq!(
        *settings,
        json!({ "requireVerifiedEmail": true, "verificationHours": 48 }),
        "{body}"
    );
    let login = |password: &str| json!({ "tenant_id": tenant, "email": "dave@example.org", "password": password });
    let (status, body) = post(state, "/auth/login", login(PASSWORD)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("EMAIL_NOT_VERIFIED")),
        "{body}"
    );
    let (status, body) = post(state, "/auth/login", login(NEW_PASSWORD)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("UNAUTHENTICATED")),
        "{body}"
    );
    // The link verifies the address, once.
    let path = "/auth/verify-email";
    let verify = |token: &str| json!({ "tenant": tenant, "token": token });
    refused(state, path, verify("vfy_0_0"), "INVALID_TOKEN").await;
    let (status, body) = post(state, path, verify(&token)).await;
    assert_eq!(status, 204, "{body}");
    refused(state, path, verify(&token), "USED").await;
    sign_in(state, flows.tenant, "dave@example.org", PASSWORD).await;
    custodia_tests_caught_up(state).await;
    assert_eq!(
        user(state, &flows.owner_token, &id).await["emailVerified"],
        true
    );
    // A new address waits for its own link: the verified old one stays
    // the sign-in address meanwhile, and is told (with no link).
    let body = graphql(
        state,
        &flows.owner_token,
        &format!(r#"mutation {{ changeEmail(userId: "{id}", email: "dave@example.net") {{ user {{ email pendingEmail emailVerified }} }} }}"#),
    )
    .await;
    assert_eq!(
        body["data"]["changeEmail"]["user"],
        json!({ "email": "dave@example.org", "pendingEmail": "dave@example.net", "emailVerified": true }),
        "{body}"
    );
    let notice = flows
        .sink
        .nth("dave@example.org", "Your sign-in address", 1)
        .await;
    assert_eq!(
        notice["subject"],
        "Your sign-in address at Acme is being changed"
    );
    let text = notice.to_string();
    assert!(
        !text.contains("dave@example.net") && !text.contains("token="),
        "{text}"
    );
    sign_in(state, flows.tenant, "dave@example.org", PASSWORD).await;
    let (status, body) = post(
        state,
        "/auth/login",
        json!({ "tenant_id": tenant, "email": "dave@example.net", "password": PASSWORD }),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("UNAUTHENTICATED")),
        "{body}"
    );
    let again = token_in(
        &flows.sink.nth("dave@example.net", "Confirm", 1).await,
        "verify-email",
    );
    let (status, body) = post(state, path, verify(&again)).await;
    assert_eq!(status, 204, "{body}");
    sign_in(state, flows.tenant, "dave@example.net", PASSWORD).await;
    custodia_tests_caught_up(state).await;
    let body = graphql(
        state,
        &flows.owner_token,
        &format!(r#"{{ user(id: "{id}") {{ email pendingEmail emailVerified }} }}"#),
    )
    .await;
    assert_eq!(
        body["data"]["user"],
        json!({ "email": "dave@example.net", "pendingEmail": null, "emailVerified": true }),
        "{body}"
    );
}

async fn a_reset_link_sets_a_new_password_and_ends_every_session(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let sessions = [
        sign_in(state, flows.tenant, "ada@example.org", PASSWORD).await,
        flows.owner_token.clone(),
    ];
    let (status, body) = post(
        state,
        "/auth/password-reset",
        json!({ "tenant": tenant, "email": "ADA@example.org" }),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let message = flows.sink.nth("ada@example.org", "Reset", 1).await;
    assert_eq!(message["subject"], "Reset your password for Acme");
    let token = token_in(&message, "reset-password");
    let path = "/auth/password-reset/confirm";
    let confirm = |token: &str, password: &str| json!({ "tenant": tenant, "token": token, "password": password });
    let before = head(state).await;
    let (status, body) = post(state, path, confirm(&token, "short")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("VALIDATION")),
        "{body}"
    );
    unchanged_since(state, before).await;
    for session in &sessions {
        assert!(graphql(state, session, "{ me { id } }").await["data"]["me"]["id"].is_string());
    }
    let (status, body) = post(state, path, confirm(&token, NEW_PASSWORD)).await;
    assert_eq!(status, 204, "{body}");
    // Every session died with the old password.
    for session in &sessions {
        let body = graphql(state, session, "{ me { id } }").await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{body}"
        );
    }
    let (status, _) = post(
        state,
        "/auth/login",
        json!({ "tenant_id": tenant, "email": "ada@example.org", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, 401);
    sign_in(state, flows.tenant, "ada@example.org", NEW_PASSWORD).await;
    refused(state, path, confirm(&token, PASSWORD), "USED").await;
    // A second request revokes the link of the first.
    for _ in 0..2 {
        let (status, _) = post(
            state,
            "/auth/password-reset",
            json!({ "tenant": tenant, "email": "ada@example.org" }),
        )
        .await;
        assert_eq!(status, 202);
    }
    let first = token_in(
        &flows.sink.nth("ada@example.org", "Reset", 2).await,
        "reset-password",
    );
    let second = token_in(
        &flows.sink.nth("ada@example.org", "Reset", 3).await,
        "reset-password",
    );
    refused(state, path, confirm(&first, PASSWORD), "REVOKED").await;
    let (status, _) = post(state, path, confirm(&second, PASSWORD)).await;
    assert_eq!(status, 204);
    // A link sent to an address is withdrawn when the address changes:
    // whoever still reads the old mailbox cannot take the account.
    let (status, _) = post(
        state,
        "/auth/password-reset",
        json!({ "tenant": tenant, "email": "ada@example.org" }),
    )
    .await;
    assert_eq!(status, 202);
    let stale = token_in(
        &flows.sink.nth("ada@example.org", "Reset", 4).await,
        "reset-password",
    );
    let owner = sign_in(state, flows.tenant, "ada@example.org", PASSWORD).await;
    let me = graphql(state, &owner, "{ me { id } }").await;
    let id = me["data"]["me"]["id"].as_str().unwrap().to_owned();
    let body = graphql(
        state,
        &owner,
        &format!(r#"mutation {{ changeEmail(userId: "{id}", email: "ada@example.net") {{ user {{ pendingEmail }} }} }}"#),
    )
    .await;
    assert_eq!(
        body["data"]["changeEmail"]["user"]["pendingEmail"], "ada@example.net",
        "{body}"
    );
    // The old address is the sign-in address until the new one is
    // verified; then its link goes.
    let confirmed = token_in(
        &flows.sink.nth("ada@example.net", "Confirm", 1).await,
        "verify-email",
    );
    let verify = json!({ "tenant": tenant, "token": confirmed });
    let (status, body) = post(state, "/auth/verify-email", verify).await;
    assert_eq!(status, 204, "{body}");
    refused(state, path, confirm(&stale, NEW_PASSWORD), "REVOKED").await;
}

async fn a_reset_request_answers_the_same_for_unknown_addresses(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let ask = |email: &str| json!({ "tenant": tenant, "email": email });
    let known = post(state, "/auth/password-reset", ask("ada@example.org")).await;
    let unknown = post(state, "/auth/password-reset", ask("nobody@example.org")).await;
    let malformed = post(state, "/auth/password-reset", ask("not an address")).await;
    assert_eq!(known, unknown);
    assert_eq!(known, malformed);
    assert_eq!(known.0, 202);
    flows.sink.nth("ada@example.org", "Reset", 1).await;
    // The address's own limit (5 an hour) holds whether it exists or not.
    for email in ["ada@example.org", "nobody@example.org"] {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(post(state, "/auth/password-reset", ask(email)).await.0);
        }
        assert_eq!(statuses, [202, 202, 202, 202, 429], "{email}");
    }
    // Nothing went to the unknown address, and nothing was written for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(flows.sink.to("nobody@example.org").is_empty());
}

async fn set_slug(state: &AppState, token: &str, slug: &str) -> Value {
    graphql(
        state,
        token,
        &format!(r#"mutation {{ setTenantSlug(slug: "{slug}") {{ tenant {{ slug }} }} }}"#),
    )
    .await
}

async fn a_tenant_is_found_by_its_slug(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let body = set_slug(state, &flows.owner_token, "acme").await;
    assert_eq!(
        body["data"]["setTenantSlug"]["tenant"]["slug"], "acme",
        "{body}"
    );
    let login = |tenant: &str, password: &str| json!({ "tenant": tenant, "email": "ada@example.org", "password": password });
    for slug in ["acme", "ACME", " acme "] {
        let (status, body) = post(state, "/auth/login", login(slug, PASSWORD)).await;
        assert_eq!(status, 200, "{slug}: {body}");
    }
    // An unknown slug answers as an unknown tenant does; both ways of
    // naming a tenant at once are refused.
    let (status, body) = post(state, "/auth/login", login("nope", PASSWORD)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("UNAUTHENTICATED")),
        "{body}"
    );
    // ... and is limited as an unknown tenant is (per account, 10 a minute).
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(post(state, "/auth/login", login("nope", PASSWORD)).await.0);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let both = json!({ "tenant": "acme", "tenant_id": flows.tenant.to_string(), "email": "ada@example.org", "password": PASSWORD });
    let (status, _) = post(state, "/auth/login", both).await;
    assert_eq!(status, 400);
    // Another tenant cannot take it; a malformed or id-shaped slug is refused.
    let (globex, _) = tenant_with_owner(&state.ports, "eve@example.org", Some(PASSWORD)).await;
    let eve = sign_in(state, globex, "eve@example.org", PASSWORD).await;
    let body = set_slug(state, &eve, "acme").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "CONFLICT",
        "{body}"
    );
    for bad in ["Ac", "acme--corp", &flows.tenant.to_string()] {
        let body = set_slug(state, &eve, bad).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "VALIDATION",
            "{bad}: {body}"
        );
    }
    let body = set_slug(state, &eve, "globex").await;
    assert_eq!(
        body["data"]["setTenantSlug"]["tenant"]["slug"], "globex",
        "{body}"
    );
    // The account flows take the slug too; a link is its own tenant's.
    let (status, _) = post(
        state,
        "/auth/password-reset",
        json!({ "tenant": "acme", "email": "ada@example.org" }),
    )
    .await;
    assert_eq!(status, 202);
    let token = token_in(
        &flows.sink.nth("ada@example.org", "Reset", 1).await,
        "reset-password",
    );
    let confirm =
        |tenant: &str| json!({ "tenant": tenant, "token": token, "password": NEW_PASSWORD });
    let path = "/auth/password-reset/confirm";
    refused(state, path, confirm("globex"), "WRONG_TENANT").await;
    let (status, body) = post(state, path, confirm("acme")).await;
    assert_eq!(status, 204, "{body}");
    // A new slug frees the old one: it signs nobody in, and another
    // tenant may take it.
    let owner = sign_in(state, flows.tenant, "ada@example.org", NEW_PASSWORD).await;
    let body = set_slug(state, &owner, "acme-corp").await;
    assert_eq!(
        body["data"]["setTenantSlug"]["tenant"]["slug"], "acme-corp",
        "{body}"
    );
    let (status, _) = post(state, "/auth/login", login("acme", NEW_PASSWORD)).await;
    assert_eq!(status, 401);
    let (status, _) = post(state, "/auth/login", login("acme-corp", NEW_PASSWORD)).await;
    assert_eq!(status, 200);
    let body = set_slug(state, &eve, "acme").await;
    assert_eq!(
        body["data"]["setTenantSlug"]["tenant"]["slug"], "acme",
        "{body}"
    );
}

async fn a_tenants_own_template_speaks_the_recipients_language(db: TestDatabase) {
    let flows = setup(&db).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let token = &flows.owner_token;
    let set = |locale: &str, text: &str| {
        format!(
            r#"mutation {{ setMailTemplate(kind: "password_reset", locale: {}, template: {{ subject: {}, text: {}, html: {} }}) {{ templates {{ kind locale subject }} }} }}"#,
            json!(locale),
            json!("Passwort für {{ tenant_name }} zurücksetzen"),
            json!(text),
            json!("<p>Hallo {{ name }}</p><a href=\"{{ link }}\">Neues Passwort</a>"),
        )
    };
    let body = graphql(state, token, &set("de", "Hallo,\n\n{{ link }}\n")).await;
    assert_eq!(
        body["data"]["setMailTemplate"]["templates"],
        json!([{ "kind": "password_reset", "locale": "de", "subject": "Passwort für {{ tenant_name }} zurücksetzen" }]),
        "{body}"
    );
    // A template without the link, with a name outside the context, or
    // holding an address is refused, and nothing changes.
    let before = head(state).await;
    for bad in [
        "Hallo, kein Link",
        "{{ link }} {{ password }}",
        "{{ link }} Fragen an support@acme.example",
    ] {
        let body = graphql(state, token, &set("de", bad)).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "VALIDATION",
            "{bad}: {body}"
        );
    }
    unchanged_since(state, before).await;
    // A recipient whose locale is Austrian German gets the German text.
    let me = graphql(state, token, "{ me { id } }").await;
    let id = me["data"]["me"]["id"].as_str().unwrap().to_owned();
    let body = graphql(
        state,
        token,
        &format!(r#"mutation {{ updateProfile(userId: "{id}", profile: {{ displayName: "Ada", attributes: {{ locale: "de-AT" }} }}) {{ user {{ id }} }} }}"#),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let ask = json!({ "tenant": tenant, "email": "ada@example.org" });
    assert_eq!(
        post(state, "/auth/password-reset", ask.clone()).await.0,
        202
    );
    let german = flows.sink.nth("ada@example.org", "Passwort", 1).await;
    assert_eq!(german["subject"], "Passwort für Acme zurücksetzen");
    assert!(german["html"].as_str().unwrap().contains("Hallo Ada"));
    let link = token_in(&german, "reset-password");
    // Removed, the built-in English text is back.
    let body = graphql(
        state,
        token,
        r#"mutation { removeMailTemplate(kind: "password_reset", locale: "de") { templates { kind } } }"#,
    )
    .await;
    assert_eq!(
        body["data"]["removeMailTemplate"]["templates"],
        json!([]),
        "{body}"
    );
    assert_eq!(post(state, "/auth/password-reset", ask).await.0, 202);
    let english = flows.sink.nth("ada@example.org", "Reset", 1).await;
    assert_ne!(token_in(&english, "reset-password"), link);
}

async fn a_tenants_own_mailer_takes_signed_messages_through_the_webhook(db: TestDatabase) {
    let secret = "a shared secret of thirty-two bytes or more";
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), secret).unwrap();
    // The mailer refuses the first delivery (503: the owner's verification
    // link, queued first): it is tried again.
    let port = free_port();
    let sink = start_webhook_sink(port, tempfile::tempdir().unwrap(), secret_file.path(), 1);
    let url = format!("http://127.0.0.1:{port}/mail");
    let mailer = custodia_infrastructure::webhook::WebhookMailer::with_secret(
        &url,
        zeroize::Zeroizing::new(secret.to_owned()),
        false,
    )
    .unwrap();
    let flows = setup_with(&db, sink, Arc::new(mailer)).await;
    let state = &flows.state;
    let tenant = flows.tenant.to_string();
    let body = graphql(
        state,
        &flows.owner_token,
        r#"mutation { registerUser(input: { email: "bob@example.org", invite: true }) { user { id } } }"#,
    )
    .await;
    let id = body["data"]["registerUser"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = flows
        .sink
        .nth("bob@example.org", "You are invited", 1)
        .await;
    // The receiver checked the signature (with Python's HMAC); the header
    // names the message, as the body does.
    assert_eq!(message["message_id"], message["id"]);
    assert_eq!(message["kind"], "invitation");
    assert_eq!(message["tenant"], json!(tenant));
    let token = token_in(&message, "accept-invitation");
    let accept = json!({ "tenant": tenant, "token": token, "password": PASSWORD });
    let (status, body) = post(state, "/auth/invitation/accept", accept).await;
    assert_eq!(status, 204, "{body}");
    sign_in(state, flows.tenant, "bob@example.org", PASSWORD).await;
    // The refused one went out on its second attempt, and shows so.
    flows.sink.nth("ada@example.org", "Confirm", 1).await;
    let query = "{ messages { edges { node { userId kind status attempts lastError } } } }";
    let mut body = Value::Null;
    for _ in 0..100 {
        // (the worker records the send a moment after the mailer has it)
        custodia_tests_caught_up(state).await;
        body = graphql(state, &flows.owner_token, query).await;
        let edges = body["data"]["messages"]["edges"].as_array().unwrap();
        if edges.iter().all(|e| e["node"]["status"] == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = |kind: &str, attempts: u32| json!({ "kind": kind, "status": "sent", "attempts": attempts, "lastError": null });
    let nodes: Vec<Value> = body["data"]["messages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut node = e["node"].clone();
            node.as_object_mut().unwrap().remove("userId");
            node
        })
        .collect();
    assert_eq!(
        nodes,
        [sent("verification", 2), sent("invitation", 1)],
        "{body}"
    );
    assert_eq!(
        body["data"]["messages"]["edges"][1]["node"]["userId"],
        json!(id)
    );
    assert_eq!(flows.sink.to("bob@example.org").len(), 1);
    // A request the mailer cannot verify is refused by it.
    let forged = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Custodia-Signature: t=1,v1=00", "-d", "{}", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forged.stdout), "401");
}
