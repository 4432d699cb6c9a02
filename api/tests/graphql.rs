//! `/graphql` on both backends: read-your-writes through the consistency
//! token, tenant isolation probed on every query and mutation, typed error
//! codes, limits, GraphQL-over-HTTP (GET, POST, Accept), API keys, and a
//! GraphQL client library we did not write (Python `gql`) over real HTTP.

use actix_web::http::StatusCode;
use actix_web::test;
use custodia::http::{app, AppState};
use custodia_domain::TenantId;
use custodia_infrastructure::MasterKey;
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};
use served::{python, serve_on_a_port};

mod served;

backends!(
    read_your_writes_with_the_consistency_token,
    tenant_isolation_on_every_query_and_mutation,
    errors_limits_and_graphql_over_http,
    graphql_over_http_follows_the_specification,
    tenant_settings_change_in_part_and_read_back_in_one_convention,
    the_graphql_http_audit_finds_nothing,
    api_keys_authenticate_service_accounts,
    python_gql_client_over_real_http,
    audit_events_stream_over_websocket,
);

const PASSWORD: &str = "correct horse battery staple";

async fn state(db: &TestDatabase) -> AppState {
    AppState::connect(db.url(), MasterKey::generate(), "custodia", "custodia-api")
        .await
        .unwrap()
}

macro_rules! service {
    ($state:expr) => {
        test::init_service(app($state.clone())).await
    };
}

/// A tenant with an owner who has a password; returns the tenant, the
/// owner's id and an access token.
macro_rules! signed_in {
    ($service:expr, $state:expr, $email:expr) => {{
        let (tenant, owner) = tenant_with_owner(&$state.ports, $email, Some(PASSWORD)).await;
        let response = test::call_service(
            $service,
            test::TestRequest::post()
                .uri("/auth/login")
                .set_json(json!({ "tenant_id": tenant.to_string(), "email": $email, "password": PASSWORD }))
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = test::read_body_json(response).await;
        (tenant, owner, body["access_token"].as_str().unwrap().to_owned())
    }};
}

/// POSTs a GraphQL request; returns status, the consistency headers and the body.
macro_rules! gql {
    ($service:expr, $token:expr, $query:expr) => {
        gql!($service, $token, $query, json!({}), None::<String>)
    };
    ($service:expr, $token:expr, $query:expr, $variables:expr) => {
        gql!($service, $token, $query, $variables, None::<String>)
    };
    ($service:expr, $token:expr, $query:expr, $variables:expr, $consistency:expr) => {{
        let mut request = test::TestRequest::post()
            .uri("/graphql")
            .set_json(json!({ "query": $query, "variables": $variables }));
        let token: Option<&str> = $token;
        if let Some(token) = token {
            request = request.insert_header(("authorization", format!("Bearer {token}")));
        }
        let consistency: Option<String> = $consistency;
        if let Some(consistency) = consistency {
            request = request.insert_header(("x-consistency-token", consistency));
        }
        let response = test::call_service($service, request.to_request()).await;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let headers = (header("x-consistency-token"), header("x-consistency"));
        let bytes = test::read_body(response).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }};
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

const REGISTER: &str = "mutation($email: String!) { registerUser(input: { email: $email, profile: { displayName: \"Grace\" } }) { user { id email displayName status } consistencyToken } }";
const FIND: &str =
    "query($email: String!) { users(email: $email) { edges { node { id email displayName } } } }";

async fn read_your_writes_with_the_consistency_token(db: TestDatabase) {
    let state = state(&db).await;
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@example.org");

    // Projections not running: the mutation is recorded, its token issued,
    // but a read with the token reports that the read models are behind.
    let (status, (header, _), body) = gql!(
        &service,
        Some(&token),
        REGISTER,
        json!({ "email": "grace@example.org" })
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let written = body["data"]["registerUser"]["consistencyToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(header.as_deref(), Some(written.as_str()));
    assert_eq!(body["data"]["registerUser"]["user"], Value::Null);
    let (_, (_, stale), body) = gql!(
        &service,
        Some(&token),
        FIND,
        json!({ "email": "grace@example.org" }),
        Some(written.clone())
    );
    assert_eq!(stale.as_deref(), Some("stale"));
    assert_eq!(body["data"]["users"]["edges"], json!([]));

    // With the projections running, the same token is honoured.
    let running = state.projections.start(state.ports.store.clone());
    let (_, (_, stale), body) = gql!(
        &service,
        Some(&token),
        FIND,
        json!({ "email": "grace@example.org" }),
        Some(written)
    );
    assert_eq!(stale, None);
    assert_eq!(
        body["data"]["users"]["edges"][0]["node"]["displayName"],
        "Grace"
    );

    // The usual flow: a mutation, then a read carrying its token, at once.
    for i in 0..5 {
        let email = format!("user{i}@example.org");
        let (_, (written, _), body) =
            gql!(&service, Some(&token), REGISTER, json!({ "email": email }));
        assert_eq!(
            body["data"]["registerUser"]["user"]["email"],
            email.as_str(),
            "{body}"
        );
        let (_, (_, stale), body) = gql!(
            &service,
            Some(&token),
            FIND,
            json!({ "email": email }),
            written
        );
        assert_eq!(stale, None);
        assert_eq!(
            body["data"]["users"]["edges"][0]["node"]["email"],
            email.as_str()
        );
    }
    // A token this server never issued is a validation error.
    let (status, _, body) = gql!(
        &service,
        Some(&token),
        FIND,
        json!({ "email": "x@example.org" }),
        Some("yesterday".to_owned())
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION");
    running.stop().await;
}

/// Every mutation of the schema, with another tenant's ids.
fn mutation_probes(other_tenant: &str, other_user: &str) -> Vec<(&'static str, String)> {
    let t = other_tenant;
    let u = other_user;
    let settings = "{ passwordMinLength: 12, mfaRequired: false, accessTokenMinutes: 15, refreshTokenDays: 7, lockoutThreshold: 5, lockoutMinutes: 15, consentPurposes: [], deletedUserRetentionDays: 30, accessDataRetentionDays: 90 }";
    vec![
        ("createTenant", "createTenant(name: \"Evil\", ownerEmail: \"e@example.org\") { consistencyToken }".to_owned()),
        ("updateTenantSettings", format!("updateTenantSettings(tenantId: \"{t}\", settings: {settings}) {{ consistencyToken }}")),
        ("setTenantSlug", format!("setTenantSlug(tenantId: \"{t}\", slug: \"evil-corp\") {{ consistencyToken }}")),
        ("setMailTemplate", format!("setMailTemplate(tenantId: \"{t}\", kind: \"invitation\", template: {{ subject: \"Hi\", text: \"{{{{ link }}}}\", html: \"{{{{ link }}}}\" }}) {{ templates {{ kind }} }}")),
        ("removeMailTemplate", format!("removeMailTemplate(tenantId: \"{t}\", kind: \"invitation\") {{ templates {{ kind }} }}")),
        ("setTenantSuspended", format!("setTenantSuspended(tenantId: \"{t}\", suspended: true) {{ consistencyToken }}")),
        ("registerUser", format!("registerUser(tenantId: \"{t}\", input: {{ email: \"x@example.org\" }}) {{ consistencyToken }}")),
        ("updateProfile", format!("updateProfile(userId: \"{u}\", profile: {{ displayName: \"x\" }}) {{ consistencyToken }}")),
        ("resendInvitation", format!("resendInvitation(userId: \"{u}\") {{ consistencyToken }}")),
        ("resendVerification", format!("resendVerification(tenantId: \"{t}\", userId: \"{u}\") {{ consistencyToken }}")),
        ("changeEmail", format!("changeEmail(userId: \"{u}\", email: \"y@example.org\") {{ consistencyToken }}")),
        ("activateUser", format!("activateUser(userId: \"{u}\") {{ consistencyToken }}")),
        ("suspendUser", format!("suspendUser(userId: \"{u}\") {{ consistencyToken }}")),
        ("reactivateUser", format!("reactivateUser(tenantId: \"{t}\", userId: \"{u}\") {{ consistencyToken }}")),
        ("deleteUser", format!("deleteUser(userId: \"{u}\") {{ consistencyToken }}")),
        ("setPassword", format!("setPassword(userId: \"{u}\", password: \"a brand new long passphrase\") {{ changed }}")),
        ("changePassword", "changePassword(current: \"wrong password here\", new: \"another new passphrase\") { changed }".to_owned()),
        ("importPasswordHash", format!("importPasswordHash(tenantId: \"{t}\", userId: \"{u}\", hash: \"$2b$12$abcdefghijklmnopqrstuuM0XgT9m3bIcmHWS2q6.l1GW5ZbZAMxi\") {{ changed }}")),
        ("unlockUser", format!("unlockUser(userId: \"{u}\") {{ changed }}")),
        ("enrollTotp", format!("enrollTotp(userId: \"{u}\") {{ provisioningUri }}")),
        ("confirmTotp", format!("confirmTotp(userId: \"{u}\", code: \"123456\") {{ changed }}")),
        ("disableTotp", format!("disableTotp(userId: \"{u}\") {{ changed }}")),
        ("issueRecoveryCodes", format!("issueRecoveryCodes(userId: \"{u}\") {{ codes }}")),
        ("defineRole", format!("defineRole(tenantId: \"{t}\", name: \"spy\", permissions: [\"user.read\"]) {{ changed }}")),
        ("grantRole", format!("grantRole(userId: \"{u}\", role: \"admin\") {{ changed }}")),
        ("grantRoleToGroup", format!("grantRoleToGroup(tenantId: \"{t}\", groupId: \"{u}\", role: \"admin\") {{ changed }}")),
        ("revokeRoleFromGroup", format!("revokeRoleFromGroup(tenantId: \"{t}\", groupId: \"{u}\", role: \"admin\") {{ changed }}")),
        ("revokeRole", format!("revokeRole(tenantId: \"{t}\", userId: \"{u}\", role: \"owner\") {{ changed }}")),
        ("removeMember", format!("removeMember(tenantId: \"{t}\", userId: \"{u}\") {{ changed }}")),
        ("revokeSession", format!("revokeSession(sessionId: \"{u}\") {{ consistencyToken }}")),
        ("revokeAllSessions", format!("revokeAllSessions(userId: \"{u}\") {{ revoked }}")),
        ("recordConsent", format!("recordConsent(userId: \"{u}\", input: {{ purpose: \"marketing\", policyVersion: 1, channel: WEB, granted: true }}) {{ changed }}")),
        ("createApiKey", format!("createApiKey(tenantId: \"{t}\", name: \"spy\", permissions: [\"user.read\"]) {{ key }}")),
        ("revokeApiKey", format!("revokeApiKey(tenantId: \"{t}\", keyId: \"{u}\") {{ changed }}")),
        ("createScimToken", format!("createScimToken(tenantId: \"{t}\", name: \"spy\") {{ key }}")),
        ("eraseTenant", format!("eraseTenant(tenantId: \"{t}\", reference: \"DSR-1\") {{ receipt {{ hash }} }}")),
        ("eraseSubject", format!("eraseSubject(tenantId: \"{t}\", userId: \"{u}\", reference: \"DSR-1\") {{ receipt {{ hash }} }}")),
    ]
}

async fn tenant_isolation_on_every_query_and_mutation(db: TestDatabase) {
    let state = state(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@acme.example");
    let (other, other_owner, other_token) = signed_in!(&service, state, "eve@globex.example");
    let (t, u) = (other.to_string(), other_owner.to_string());
    let history = |tenant: TenantId| {
        let store = state.ports.store.clone();
        async move {
            let chains = store.chains().await.unwrap();
            chains
                .iter()
                .find(|c| c.chain == custodia_domain::ChainId::Tenant(tenant))
                .map(|c| c.events)
                .unwrap()
        }
    };
    // The other tenant's owner sees their own data (the probes below are not
    // empty because the data is missing).
    let (_, (written, _), body) = gql!(&service, Some(&other_token), "{ me { id email } }");
    assert_eq!(body["data"]["me"]["id"], u.as_str(), "{body}");
    let _ = written;
    let before = history(other).await;

    let queries = [
        format!("{{ tenant(id: \"{t}\") {{ name }} }}"),
        format!("{{ users(tenantId: \"{t}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ user(tenantId: \"{t}\", id: \"{u}\") {{ id }} }}"),
        format!("{{ roles(tenantId: \"{t}\") {{ name }} }}"),
        format!("{{ sessions(tenantId: \"{t}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ consents(tenantId: \"{t}\", userId: \"{u}\") {{ purpose }} }}"),
        format!("{{ auditEvents(tenantId: \"{t}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ messages(tenantId: \"{t}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ messages(userId: \"{u}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ mailTemplates(tenantId: \"{t}\") {{ kind subject }} }}"),
        // Another tenant's ids inside one's own tenant find nothing.
        format!("{{ user(id: \"{u}\") {{ id }} }}"),
        format!("{{ sessions(userId: \"{u}\") {{ edges {{ node {{ id }} }} }} }}"),
        format!("{{ consents(userId: \"{u}\") {{ purpose }} }}"),
        format!("{{ auditEvents(subject: \"{u}\") {{ edges {{ node {{ id }} }} }} }}"),
    ];
    for query in &queries {
        let (status, _, body) = gql!(&service, Some(&token), query.as_str());
        assert_eq!(status, StatusCode::OK);
        let data = body["data"].to_string();
        assert!(
            !data.contains(&u) && !data.contains(&t) && !data.contains("Acme\",\"status"),
            "{query} leaked: {body}"
        );
        let codes = codes(&body);
        let empty = data == "null"
            || body["data"].as_object().is_some_and(|o| {
                o.values()
                    .all(|v| v.is_null() || v == &json!([]) || v["edges"] == json!([]))
            });
        assert!(empty, "{query} returned data: {body}");
        assert!(
            codes.is_empty() || codes.iter().all(|c| c == "FORBIDDEN"),
            "{query}: {codes:?}"
        );
    }

    // Every mutation in the schema is probed.
    let (_, _, schema) = gql!(
        &service,
        None,
        "{ __schema { mutationType { fields { name } } } }"
    );
    let mut in_schema: Vec<String> = schema["data"]["__schema"]["mutationType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    let probes = mutation_probes(&t, &u);
    let mut probed: Vec<String> = probes.iter().map(|(name, _)| (*name).to_owned()).collect();
    in_schema.sort();
    probed.sort();
    assert_eq!(in_schema, probed, "a mutation without an isolation probe");
    for (name, field) in probes {
        let (status, _, body) = gql!(&service, Some(&token), format!("mutation {{ {field} }}"));
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(body["data"], Value::Null, "{name} answered: {body}");
        let codes = codes(&body);
        assert!(
            !codes.is_empty()
                && codes
                    .iter()
                    .all(|c| ["FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED"].contains(&c.as_str())),
            "{name}: {body}"
        );
    }
    assert_eq!(
        history(other).await,
        before,
        "nothing was written to the other tenant"
    );
    running.stop().await;
}

async fn errors_limits_and_graphql_over_http(db: TestDatabase) {
    let state = state(&db).await;
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@example.org");

    let (status, _, body) = gql!(&service, None, "{ me { id } }");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), ["UNAUTHENTICATED"]);
    let (status, _, body) = gql!(&service, Some("not-a-token"), "{ me { id } }");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (_, _, body) = gql!(&service, Some(&token), "{ user(id: \"nope\") { id } }");
    assert_eq!(codes(&body), ["VALIDATION"]);
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        "{ users(first: 1000) { edges { cursor } } }"
    );
    assert_eq!(codes(&body), ["VALIDATION"], "list sizes are capped");
    let (_, _, body) = gql!(&service, Some(&token), "mutation { createTenant(name: \"X\", ownerEmail: \"x@example.org\") { consistencyToken } }");
    assert_eq!(codes(&body), ["FORBIDDEN"]);
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        "mutation { registerUser(input: { email: \"not an email\" }) { consistencyToken } }"
    );
    assert_eq!(codes(&body), ["VALIDATION"]);
    let (_, _, body) = gql!(&service, Some(&token), "{ me { id ");
    assert_eq!(codes(&body), ["VALIDATION"]);

    // The standard introspection query passes the limits; a deep one does not.
    let (_, _, body) = gql!(&service, None, INTROSPECTION);
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 20);
    let deep = format!("{{ __schema {{ types {{ {} name {} }} }} }}", "fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType {", "} } } } } } } } } } } } }");
    let (_, _, body) = gql!(&service, None, deep);
    assert_eq!(codes(&body), ["VALIDATION"], "{body}");

    // GET for queries, never for mutations; Accept picks the media type.
    let get = |uri: String, accept: &'static str| {
        test::TestRequest::get()
            .uri(&uri)
            .insert_header(("accept", accept))
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request()
    };
    let response = test::call_service(
        &service,
        get(
            "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D".into(),
            "application/graphql-response+json",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/graphql-response+json"
    );
    let response = test::call_service(
        &service,
        get(
            "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D".into(),
            "application/json",
        ),
    )
    .await;
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let response = test::call_service(&service, get("/graphql?query=mutation%20%7B%20unlockUser(userId%3A%20%22x%22)%20%7B%20changed%20%7D%20%7D".into(), "application/json")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = test::call_service(
        &service,
        get(
            "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D".into(),
            "text/csv",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    // A request error is a 400 under application/graphql-response+json.
    let response = test::call_service(
        &service,
        get(
            "/graphql?query=%7B%20me%20%7B".into(),
            "application/graphql-response+json",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Not JSON at all.
    let response = test::call_service(
        &service,
        test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("content-type", "application/json"))
            .set_payload("{not json")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A role granted, and a logout, count at the very next request although
    // the caller's session is cached between requests.
    let running = state.projections.start(state.ports.store.clone());
    let (_, _, body) = gql!(&service, Some(&token), "mutation { registerUser(input: { email: \"bob@example.org\", password: \"bob's long passphrase\" }) { user { id } } }");
    let bob = body["data"]["registerUser"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        format!("mutation {{ grantRole(userId: \"{bob}\", role: \"member\") {{ changed }} }}")
    );
    assert_eq!(body["data"]["grantRole"]["changed"], true, "{body}");
    let login = test::TestRequest::post()
        .uri("/auth/login")
        .set_json(json!({ "tenant_id": state_tenant(&state, &token).await, "email": "bob@example.org", "password": "bob's long passphrase" }))
        .to_request();
    let tokens: Value = test::read_body_json(test::call_service(&service, login).await).await;
    let bobs = tokens["access_token"].as_str().unwrap().to_owned();
    let sessions = "{ sessions { edges { node { id } } } }";
    let (_, _, body) = gql!(&service, Some(&bobs), sessions);
    assert_eq!(
        codes(&body),
        ["FORBIDDEN"],
        "a member does not list sessions"
    );
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        format!("mutation {{ grantRole(userId: \"{bob}\", role: \"admin\") {{ changed }} }}")
    );
    assert_eq!(body["data"]["grantRole"]["changed"], true);
    let (_, _, body) = gql!(&service, Some(&bobs), sessions);
    assert!(
        body["errors"].is_null(),
        "the new role counts at once: {body}"
    );
    let logout = test::TestRequest::post()
        .uri("/auth/logout")
        .insert_header(("authorization", format!("Bearer {bobs}")))
        .to_request();
    assert_eq!(
        test::call_service(&service, logout).await.status(),
        StatusCode::NO_CONTENT
    );
    let (status, _, _) = gql!(&service, Some(&bobs), sessions);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a logout counts at once");
    running.stop().await;
}

/// The tenant of the caller behind `token`, from the API itself.
async fn state_tenant(state: &AppState, token: &str) -> String {
    let claims = state
        .ports
        .tokens
        .verify(token, custodia_domain::Timestamp::now())
        .unwrap();
    claims.tid
}

async fn api_keys_authenticate_service_accounts(db: TestDatabase) {
    let state = state(&db).await;
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@example.org");
    let (_, _, body) = gql!(&service, Some(&token), "mutation { createApiKey(name: \"reporting\", permissions: [\"user.read\"]) { keyId key } }");
    let key = body["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_id = body["data"]["createApiKey"]["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = gql!(
        &service,
        Some(&key),
        "{ users { edges { node { id } } } me { id } }"
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["me"],
        Value::Null,
        "a service account is no user"
    );
    let (_, _, body) = gql!(&service, Some(&key), "{ tenant { name } }");
    assert_eq!(codes(&body), ["FORBIDDEN"], "the key holds only user.read");
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        format!("mutation {{ revokeApiKey(keyId: \"{key_id}\") {{ changed }} }}")
    );
    assert_eq!(body["data"]["revokeApiKey"]["changed"], true);
    let (status, _, _) = gql!(&service, Some(&key), "{ users { edges { node { id } } } }");
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stops at once"
    );
}

async fn python_gql_client_over_real_http(db: TestDatabase) {
    let state = state(&db).await;
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let served = serve_on_a_port(&state).await;
    let script = r#"
import json, sys, requests
from gql import Client, gql
from gql.transport.requests import RequestsHTTPTransport
base, tenant, password = sys.argv[1], sys.argv[2], sys.argv[3]
tokens = requests.post(base + "/auth/login", json={"tenant_id": tenant, "email": "ada@example.org", "password": password}).json()
transport = RequestsHTTPTransport(url=base + "/graphql", headers={"Authorization": "Bearer " + tokens["access_token"]})
client = Client(transport=transport, fetch_schema_from_transport=True)
created = client.execute(gql('mutation($e: String!) { registerUser(input: {email: $e}) { user { email status } consistencyToken } }'), variable_values={"e": "grace@example.org"})
me = client.execute(gql("{ me { email roles } }"))
print(json.dumps({"created": created, "me": me}))
"#;
    let base = format!("http://{}", served.address);
    let tenant = tenant.to_string();
    let answer = python(script, [base, tenant, PASSWORD.to_owned()]).await;
    served.stop().await;
    running.stop().await;
    assert_eq!(
        answer["created"]["registerUser"]["user"]["email"],
        "grace@example.org"
    );
    assert_eq!(answer["me"]["me"]["email"], "ada@example.org");
    assert_eq!(answer["me"]["me"]["roles"], json!(["owner"]));
}

/// The introspection query GraphQL clients send (graphql-js `getIntrospectionQuery`).
const INTROSPECTION: &str = include_str!("introspection.graphql");

async fn audit_events_stream_over_websocket(db: TestDatabase) {
    let state = state(&db).await;
    let (tenant, _) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let (other, _) = tenant_with_owner(&state.ports, "eve@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let served = serve_on_a_port(&state).await;
    // Subscribes (graphql-transport-ws), then registers two users in its
    // tenant and one in another, and prints the first three events it gets.
    let script = r#"
import asyncio, json, sys, requests
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from gql.transport.requests import RequestsHTTPTransport
base, tenant, other, password = sys.argv[1:5]
def token(t, email):
    return requests.post(base + "/auth/login", json={"tenant_id": t, "email": email, "password": password}).json()["access_token"]
mine, theirs = token(tenant, "ada@example.org"), token(other, "eve@example.org")
def register(tok, email):
    http = Client(transport=RequestsHTTPTransport(url=base + "/graphql", headers={"Authorization": "Bearer " + tok}))
    http.execute(gql('mutation($e: String!) { registerUser(input: {email: $e}) { consistencyToken } }'), variable_values={"e": email})
async def main():
    ws = WebsocketsTransport(url=base.replace("http", "ws") + "/graphql", init_payload={"authorization": "Bearer " + mine},
                             subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=ws) as session:
        seen = []
        subscription = session.subscribe(gql("subscription { auditEvents { tenantId type streamCategory chainIndex } }"))
        async def writes():
            await asyncio.sleep(0.5)
            await asyncio.to_thread(register, theirs, "mallory@example.org")
            await asyncio.to_thread(register, mine, "grace@example.org")
            await asyncio.to_thread(register, mine, "alan@example.org")
        task = asyncio.create_task(writes())
        async for event in subscription:
            seen.append(event["auditEvents"])
            if sum(e["type"] == "UserRegistered" for e in seen) == 2:
                break
        await task
        print(json.dumps(seen))
asyncio.run(asyncio.wait_for(main(), 30))
"#;
    let base = format!("http://{}", served.address);
    let (tenant, other) = (tenant.to_string(), other.to_string());
    let mine = tenant.clone();
    let seen = python(script, [base, tenant, other, PASSWORD.to_owned()]).await;
    served.stop().await;
    running.stop().await;
    let types: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // Each registration is an email claim and a user; the session starts
    // of the logins came before the subscription and are not replayed
    // (except as their projection lagged); the other tenant's are absent.
    assert_eq!(
        types.iter().filter(|t| **t == "UserRegistered").count(),
        2,
        "{seen}"
    );
    assert!(
        seen.as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenantId"] == mine.as_str()),
        "only the subscriber's tenant: {seen}"
    );
    let indexes: Vec<u64> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["chainIndex"].as_u64().unwrap())
        .collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "in chain order: {indexes:?}"
    );
}

async fn graphql_over_http_follows_the_specification(db: TestDatabase) {
    let state = state(&db).await;
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@example.org");

    // A failing nullable root field is null, its key kept (§6.4.4), beside
    // the fields that did not fail, and alone.
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        "{ serverTime someone: user(id: \"not-a-uuid\") { id } }"
    );
    assert!(body["data"]["serverTime"].is_string(), "{body}");
    assert!(
        body["data"].as_object().unwrap().contains_key("someone")
            && body["data"]["someone"].is_null(),
        "{body}"
    );
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        "{ user(id: \"not-a-uuid\") { id } }"
    );
    assert_eq!(body["data"], json!({ "user": null }), "{body}");
    assert_eq!(codes(&body), ["VALIDATION"]);
    // Also when the field is selected through fragments.
    for query in [
        "{ ... on Query { t: tenant(id: \"nope\") { id } } }",
        "{ ...F } fragment F on Query { t: tenant(id: \"nope\") { id } serverTime }",
    ] {
        let (_, _, body) = gql!(&service, Some(&token), query);
        assert!(
            body["data"]
                .as_object()
                .is_some_and(|d| d.contains_key("t") && d["t"].is_null()),
            "{query}: {body}"
        );
    }
    // A failing non-null root field makes `data` null, whatever else passed.
    let (_, _, body) = gql!(&service, None, "{ serverTime users { edges { cursor } } }");
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(codes(&body), ["UNAUTHENTICATED"]);

    // A request error has no `data` entry at all (§7.1.1), in either media type.
    for accept in ["application/json", "application/graphql-response+json"] {
        let response = test::call_service(
            &service,
            test::TestRequest::post()
                .uri("/graphql")
                .insert_header(("accept", accept))
                .set_json(json!({ "query": "{ me { nope } }" }))
                .to_request(),
        )
        .await;
        let body: Value = test::read_body_json(response).await;
        assert!(body.get("data").is_none(), "{accept}: {body}");
        assert_eq!(codes(&body), ["VALIDATION"]);
    }

    // Refusals before execution are GraphQL-shaped too.
    let (status, _, body) = gql!(&service, Some("not a token"), "{ me { id } }");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(codes(&body), ["UNAUTHENTICATED"], "{body}");
    let response = test::call_service(
        &service,
        test::TestRequest::post()
            .uri("/graphql")
            .set_json(json!({ "qeury": "{ me { id } }" }))
            .to_request(),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "a body without `query`"
    );
    let body: Value = test::read_body_json(response).await;
    assert_eq!(codes(&body), ["VALIDATION"]);
    let response = test::call_service(
        &service,
        test::TestRequest::get().uri("/graphql").to_request(),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "GET without a query"
    );
    let body: Value = test::read_body_json(response).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("?query="),
        "{body}"
    );

    // HEAD works where GET does.
    let response = test::call_service(
        &service,
        test::TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/graphql?query=%7B__typename%7D")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// graphql-http's own audit of the GraphQL-over-HTTP specification, run
/// with Node against a live server: no error and no warning. It needs
/// `npm ci --prefix api/tests/graphql-http` (`.ci/run` does it).
async fn the_graphql_http_audit_finds_nothing(db: TestDatabase) {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphql-http");
    if !std::path::Path::new(folder)
        .join("node_modules/graphql-http")
        .exists()
    {
        let message = format!("the graphql-http audit needs `npm ci --prefix {folder}`");
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true: {message}"
        );
        eprintln!("*** SKIPPED: {message} ***");
        return;
    }
    let state = state(&db).await;
    let served = serve_on_a_port(&state).await;
    let url = format!("http://{}/graphql", served.address);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(format!("{folder}/audit.mjs"))
            .arg(url)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    served.stop().await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(verdict["ok"].as_u64().unwrap() >= 50, "{verdict}");
    assert_eq!(
        (verdict["warn"].as_u64(), verdict["error"].as_u64()),
        (Some(0), Some(0)),
        "{verdict}"
    );
}

/// graphql-schema-linter over the schema (rules and the few exceptions in
/// `api/tests/graphql-http/package.json`): every type, field, argument and
/// enum value described, names in the GraphQL conventions, Relay
/// connections as the Relay specification has them.
#[test]
async fn the_schema_linter_finds_nothing() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphql-http");
    let linter = format!("{folder}/node_modules/.bin/graphql-schema-linter");
    if !std::path::Path::new(&linter).exists() {
        let message = format!("the schema linter needs `npm ci --prefix {folder}`");
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true: {message}"
        );
        eprintln!("*** SKIPPED: {message} ***");
        return;
    }
    let file = std::env::temp_dir().join(format!("custodia-schema-{}.graphql", std::process::id()));
    std::fs::write(&file, custodia::graphql::sdl()).unwrap();
    // The linter reads its configuration from the package.json of its
    // working directory.
    let output = std::process::Command::new(&linter)
        .args(["--format", "json"])
        .arg(&file)
        .current_dir(folder)
        .output()
        .expect("the linter runs");
    std::fs::remove_file(&file).ok();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "the linter answered no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["errors"], json!([]), "{report:#}");
    assert!(output.status.success());
}

async fn tenant_settings_change_in_part_and_read_back_in_one_convention(db: TestDatabase) {
    let state = state(&db).await;
    let service = service!(state);
    let (_, _, token) = signed_in!(&service, state, "ada@example.org");
    let running = state.projections.start(state.ports.store.clone());
    let change = |settings: &str| {
        format!(
            "mutation {{ updateTenantSettings(settings: {settings}) {{ tenant {{ settings {{ \
             passwordMinLength mfaRequired consentPurposes {{ id version }} }} }} }} }}"
        )
    };
    // One setting, and one purpose added: the rest stays as it was.
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        &change("{ mfaRequired: true, addConsentPurposes: [{ id: \"newsletter\", version: 1 }] }")
    );
    let settings = &body["data"]["updateTenantSettings"]["tenant"]["settings"];
    assert_eq!(
        settings,
        &json!({ "passwordMinLength": 12, "mfaRequired": true,
                 "consentPurposes": [{ "id": "newsletter", "version": 1 }] }),
        "{body}"
    );
    // Another purpose, and a new version of the first, without resending.
    let (_, _, body) = gql!(
        &service,
        Some(&token),
        &change("{ addConsentPurposes: [{ id: \"research\", version: 1 }, { id: \"newsletter\", version: 2 }] }")
    );
    let settings = &body["data"]["updateTenantSettings"]["tenant"]["settings"];
    assert_eq!(settings["mfaRequired"], true, "kept: {body}");
    assert_eq!(
        settings["consentPurposes"],
        json!([{ "id": "newsletter", "version": 2 }, { "id": "research", "version": 1 }])
    );
    // Bounds hold for a part as for the whole.
    let (_, _, body) = gql!(&service, Some(&token), &change("{ passwordMinLength: 4 }"));
    assert_eq!(codes(&body), ["VALIDATION"], "{body}");
    running.stop().await;
}
