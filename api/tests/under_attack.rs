//! The server as an attacker meets it, on both backends: access removed
//! takes effect at the next request and ends open subscriptions (4403),
//! costly documents are refused before they run, nothing tells an outsider
//! which accounts exist, every error is typed JSON, and production closes
//! metrics and introspection.

use actix_web::http::StatusCode;
use actix_web::test;
use custodia::http::{app, AppState, MetricsAccess};
use custodia_domain::TenantId;
use custodia_infrastructure::MasterKey;
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};
use served::{python, serve_on_a_port};
use uuid::Uuid;

mod served;

backends!(
    access_removal_reaches_the_edge,
    costly_documents_are_refused_before_they_run,
    finding_a_user_by_address_needs_read_personal,
    unknown_addresses_lock_like_accounts,
    every_error_is_typed_json,
    production_closes_metrics_and_introspection,
    subscriptions_end_when_access_ends,
    graphql_is_rate_limited_per_client,
    websocket_documents_meet_the_same_limits,
);

const OWNER: &str = "ada@example.org";
const PASSWORD: &str = "correct horse battery staple";

/// A server state with one tenant whose owner has [`PASSWORD`], and its
/// projections running (mutations answer with what they wrote).
async fn world(db: &TestDatabase) -> (AppState, TenantId, custodia::projections::Running) {
    let state = AppState::connect(db.url(), MasterKey::generate(), "custodia", "custodia-api")
        .await
        .unwrap();
    let (tenant, _) = tenant_with_owner(&state.ports, OWNER, Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    (state, tenant, running)
}

macro_rules! service {
    ($state:expr) => {
        test::init_service(app($state.clone())).await
    };
}

fn login(tenant: TenantId, email: &str, password: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/auth/login")
        .set_json(json!({ "tenant_id": tenant.to_string(), "email": email, "password": password }))
}

fn graphql(token: Option<&str>, query: &str, variables: Value) -> test::TestRequest {
    let request = test::TestRequest::post()
        .uri("/graphql")
        .set_json(json!({ "query": query, "variables": variables }));
    match token {
        Some(token) => request.insert_header(("authorization", format!("Bearer {token}"))),
        None => request,
    }
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Signs `email` in; returns the access and refresh tokens.
macro_rules! sign_in {
    ($service:expr, $tenant:expr, $email:expr) => {{
        let (status, body) = call!($service, login($tenant, $email, PASSWORD));
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }};
}

/// Registers `email` with [`PASSWORD`] and `role`; returns the user's id.
macro_rules! user_with_role {
    ($service:expr, $owner:expr, $email:expr, $role:expr) => {{
        let register = "mutation($e: String!, $p: String!) { registerUser(input: { email: $e, password: $p }) { user { id } } }";
        let (_, body) = call!($service, graphql(Some($owner), register, json!({ "e": $email, "p": PASSWORD })));
        let id = body["data"]["registerUser"]["user"]["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
        let grant = "mutation($u: ID!, $r: String!) { grantRole(userId: $u, role: $r) { consistencyToken } }";
        let (_, body) = call!($service, graphql(Some($owner), grant, json!({ "u": id, "r": $role })));
        assert!(body["errors"].is_null(), "{body}");
        id
    }};
}

async fn access_removal_reaches_the_edge(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let service = service!(state);
    let (owner, _) = sign_in!(&service, tenant, OWNER);
    let admin = user_with_role!(&service, &owner, "grace@example.org", "admin");
    let (token, refresh) = sign_in!(&service, tenant, "grace@example.org");
    // The admin cannot take the owner's account over.
    let me = "{ me { id } }";
    let (_, body) = call!(&service, graphql(Some(&owner), me, json!({})));
    let owner_id = body["data"]["me"]["id"].as_str().unwrap().to_owned();
    let set = "mutation($u: ID!) { setPassword(userId: $u, password: \"an attacker's choice\") { consistencyToken } }";
    let (_, body) = call!(
        &service,
        graphql(Some(&token), set, json!({ "u": owner_id }))
    );
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    // Rights are checked again before each mutation of a document: a
    // second admin suspends themself, and the document's next mutation
    // is refused.
    let other = user_with_role!(&service, &owner, "alan@example.org", "admin");
    let (other_token, _) = sign_in!(&service, tenant, "alan@example.org");
    let both = "mutation($u: ID!) { a: suspendUser(userId: $u) { user { status } } \
                b: registerUser(input: { email: \"late@example.org\" }) { user { id } } }";
    let (_, body) = call!(
        &service,
        graphql(Some(&other_token), both, json!({ "u": other }))
    );
    assert_eq!(codes(&body), ["UNAUTHENTICATED"], "{body}");
    assert!(body["data"]["b"].is_null(), "{body}");
    // Suspended: the very next request is refused, and so is the refresh.
    let suspend = "mutation($u: ID!) { suspendUser(userId: $u) { user { status } } }";
    let (_, body) = call!(
        &service,
        graphql(Some(&owner), suspend, json!({ "u": admin }))
    );
    assert_eq!(
        body["data"]["suspendUser"]["user"]["status"], "SUSPENDED",
        "{body}"
    );
    let (status, body) = call!(&service, graphql(Some(&token), me, json!({})));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let refreshed = test::TestRequest::post()
        .uri("/auth/refresh")
        .set_json(json!({ "tenant_id": tenant.to_string(), "refresh_token": refresh }));
    let (status, _) = call!(&service, refreshed);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn costly_documents_are_refused_before_they_run(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let service = service!(state);
    // Fragments spreading the previous one twice, 24 levels: 2^24 fields
    // in under 1.5 KB, anonymous.
    let mut nested = String::from("query { ...F24 }\nfragment F0 on Query { serverTime }\n");
    for level in 1..=24 {
        nested.push_str(&format!(
            "fragment F{level} on Query {{ ...F{p} ...F{p} }}\n",
            p = level - 1
        ));
    }
    assert!(nested.len() < 1_500);
    let (_, body) = call!(&service, graphql(None, &nested, json!({})));
    assert_eq!(codes(&body), ["VALIDATION"], "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("too many fields"));
    // Pages count by their size: 200 aliases of 100 users each.
    let (owner, _) = sign_in!(&service, tenant, OWNER);
    let aliases: String = (0..200)
        .map(|i| {
            format!("u{i}: users(first: 100) {{ edges {{ node {{ email displayName phone }} }} }} ")
        })
        .collect();
    let (_, body) = call!(
        &service,
        graphql(Some(&owner), &format!("{{ {aliases} }}"), json!({}))
    );
    assert_eq!(codes(&body), ["VALIDATION"], "{body}");
    assert!(body["data"].is_null());
    // 5,000 declared variables: one short error, not 5,000.
    let declared: Vec<String> = (0..5_000).map(|i| format!("$v{i}: Int")).collect();
    let many = format!("query Q({}) {{ serverTime }}", declared.join(", "));
    let (_, body) = call!(&service, graphql(None, &many, json!({})));
    assert_eq!(codes(&body), ["VALIDATION"], "{body}");
    // A consistency token beyond the log's head is refused, not waited
    // for; one at or below it is waited for only while the projections
    // are behind it (here never: the answer is not stale).
    for token in ["999999999999.999999999999", "999999999.0", "693.0"] {
        let request = test::TestRequest::post()
            .uri("/graphql")
            .set_json(json!({ "query": "{ serverTime }" }))
            .insert_header(("x-consistency-token", token))
            .to_request();
        let response = test::call_service(&service, request).await;
        let stale = response.headers().contains_key("x-consistency");
        let status = response.status();
        let body: Value = test::read_body_json(response).await;
        let refused = status == StatusCode::BAD_REQUEST
            && body["errors"][0]["extensions"]["code"] == "VALIDATION";
        assert!(
            refused || (status == StatusCode::OK && !stale),
            "{token}: {status} {body}"
        );
        if token.starts_with("999999999999") {
            assert!(refused, "far beyond the head: {body}");
        }
    }
}

async fn finding_a_user_by_address_needs_read_personal(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let service = service!(state);
    let (owner, _) = sign_in!(&service, tenant, OWNER);
    user_with_role!(&service, &owner, "mallory@example.org", "member");
    let (member, _) = sign_in!(&service, tenant, "mallory@example.org");
    let find = "query($e: String!) { users(email: $e) { edges { node { id } } } }";
    let (_, body) = call!(
        &service,
        graphql(Some(&member), find, json!({ "e": OWNER }))
    );
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    // Listing (no address) stays allowed with user.read.
    let (_, body) = call!(
        &service,
        graphql(
            Some(&member),
            "{ users { edges { node { id } } } }",
            json!({})
        )
    );
    assert!(body["errors"].is_null(), "{body}");
}

async fn unknown_addresses_lock_like_accounts(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let service = service!(state);
    // An invited user without a password yet counts as no account too.
    let (owner, _) = sign_in!(&service, tenant, OWNER);
    let invite = "mutation { registerUser(input: { email: \"invited@example.org\", invite: true }) { consistencyToken } }";
    let (_, body) = call!(&service, graphql(Some(&owner), invite, json!({})));
    assert!(body["errors"].is_null(), "{body}");
    let mut answers = Vec::new();
    for email in [OWNER, "nobody@example.org", "invited@example.org"] {
        let mut statuses = Vec::new();
        let mut last = Value::Null;
        for _ in 0..6 {
            let (status, body) = call!(&service, login(tenant, email, "wrong password"));
            statuses.push(status.as_u16());
            last = body;
        }
        answers.push((statuses, last));
    }
    assert_eq!(answers[0].0, [401, 401, 401, 401, 401, 429]);
    assert_eq!(
        answers[0], answers[1],
        "an account and no account answer alike"
    );
}

async fn every_error_is_typed_json(db: TestDatabase) {
    let (state, _, _running) = world(&db).await;
    let service = service!(state);
    let (status, body) = call!(&service, test::TestRequest::get().uri("/no/such/thing"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let huge = "x".repeat(custodia::graphql::MAX_GRAPHQL_BODY + 1);
    let request = test::TestRequest::post()
        .uri("/graphql")
        .insert_header(("content-type", "application/json"))
        .set_payload(format!("{{\"query\":\"{huge}\"}}"));
    let (status, body) = call!(&service, request);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION");
    let (status, body) = call!(&service, test::TestRequest::delete().uri("/auth/login"));
    assert!(status.is_client_error(), "{status}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

async fn production_closes_metrics_and_introspection(db: TestDatabase) {
    let (state, _, _running) = world(&db).await;
    let introspect = "{ __schema { queryType { name } } }";
    // Development: both open.
    let open = service!(state);
    let (status, _) = call!(&open, test::TestRequest::get().uri("/metrics"));
    assert_eq!(status, StatusCode::OK);
    let (_, body) = call!(&open, graphql(None, introspect, json!({})));
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    // Production's defaults: closed.
    let closed = AppState {
        metrics_access: MetricsAccess::Closed,
        schema: custodia::graphql::schema(false),
        ..state.clone()
    };
    let closed = service!(closed);
    let (status, body) = call!(&closed, test::TestRequest::get().uri("/metrics"));
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let (_, body) = call!(&closed, graphql(None, introspect, json!({})));
    assert!(body["data"]["__schema"].is_null(), "{body}");
    // With a metrics token: that bearer only.
    let secret = Uuid::new_v4().to_string();
    let token = AppState {
        metrics_access: MetricsAccess::Token(std::sync::Arc::new(secret.clone().into())),
        ..state
    };
    let token = service!(token);
    let (status, _) = call!(&token, test::TestRequest::get().uri("/metrics"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let with = test::TestRequest::get()
        .uri("/metrics")
        .insert_header(("authorization", format!("Bearer {secret}")));
    let (status, _) = call!(&token, with);
    assert_eq!(status, StatusCode::OK);
}

async fn subscriptions_end_when_access_ends(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let service = service!(state);
    let (owner, _) = sign_in!(&service, tenant, OWNER);
    let admin = user_with_role!(&service, &owner, "grace@example.org", "admin");
    let served = serve_on_a_port(&state).await;
    // Opens a subscription (graphql-transport-ws) with the admin's token,
    // then ends access (a logout; then, with a new session, a suspension
    // by the owner) and prints the close codes the server sent.
    let script = r#"
import asyncio, json, sys, requests, websockets
base, tenant, password, owner, admin = sys.argv[1:6]
def login():
    r = requests.post(base + "/auth/login", json={"tenant_id": tenant, "email": "grace@example.org", "password": password})
    return r.json()["access_token"]
async def close_code(token, action):
    async with websockets.connect(base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer " + token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "subscription { auditEvents { type } }"}}))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(action, token)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            frame = getattr(closed, "rcvd", None)
            return frame.code if frame is not None else closed.code
def logout(token):
    assert requests.post(base + "/auth/logout", headers={"Authorization": "Bearer " + token}).status_code == 204
def suspend(_):
    r = requests.post(base + "/graphql", headers={"Authorization": "Bearer " + owner},
                      json={"query": "mutation($u: ID!) { suspendUser(userId: $u) { user { status } } }", "variables": {"u": admin}})
    assert "errors" not in r.json(), r.text
async def main():
    print(json.dumps([await close_code(login(), logout), await close_code(login(), suspend)]))
asyncio.run(asyncio.wait_for(main(), 40))
"#;
    let base = format!("http://{}", served.address);
    let codes = python(
        script,
        [base, tenant.to_string(), PASSWORD.to_owned(), owner, admin],
    )
    .await;
    served.stop().await;
    assert_eq!(codes, json!([4403, 4403]), "logout, then suspension");
}

async fn graphql_is_rate_limited_per_client(db: TestDatabase) {
    let (state, _, _running) = world(&db).await;
    let limited = AppState {
        limits: std::sync::Arc::new(custodia::http::AuthLimits::with_graphql(60, 10, 3)),
        ..state
    };
    let service = service!(limited);
    let from = |ip: &str| {
        graphql(None, "{ serverTime }", json!({})).peer_addr(format!("{ip}:40000").parse().unwrap())
    };
    for _ in 0..3 {
        let (status, _) = call!(&service, from("127.0.0.2"));
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = call!(&service, from("127.0.0.2"));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    let (status, _) = call!(&service, from("127.0.0.3"));
    assert_eq!(status, StatusCode::OK, "another client is not limited");
}

async fn websocket_documents_meet_the_same_limits(db: TestDatabase) {
    let (state, tenant, _running) = world(&db).await;
    let served = serve_on_a_port(&state).await;
    // A nested-fragment document over the socket is refused as over HTTP;
    // pings are answered; 40 queries one after another are fine (an
    // operation the server completed no longer counts); then 33
    // subscriptions at once close the connection (4429).
    let script = r#"
import asyncio, json, sys, requests, websockets
base, tenant, password, owner = sys.argv[1:5]
token = requests.post(base + "/auth/login", json={"tenant_id": tenant, "email": owner, "password": password}).json()["access_token"]
nested = "query { ...F24 }\nfragment F0 on Query { serverTime }\n" + "".join(
    f"fragment F{i} on Query {{ ...F{i-1} ...F{i-1} }}\n" for i in range(1, 25))
async def main():
    async with websockets.connect(base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer " + token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "n", "type": "subscribe", "payload": {"query": nested}}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await asyncio.wait_for(await ws.ping(), 5)
        for i in range(40):
            await ws.send(json.dumps({"id": f"q{i}", "type": "subscribe", "payload": {"query": "{ serverTime }"}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "complete":
                pass
        for i in range(33):
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": "subscription { auditEvents { type } }"}}))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            frame = getattr(closed, "rcvd", None)
            code = frame.code if frame is not None else closed.code
        print(json.dumps({"answer": answer, "code": code}))
asyncio.run(main())
"#;
    let base = format!("http://{}", served.address);
    let seen = python(
        script,
        [
            base,
            tenant.to_string(),
            PASSWORD.to_owned(),
            OWNER.to_owned(),
        ],
    )
    .await;
    served.stop().await;
    assert!(
        seen["answer"].to_string().contains("too many fields"),
        "{seen}"
    );
    assert_eq!(seen["code"], 4429, "{seen}");
}
