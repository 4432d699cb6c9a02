//! What the SCIM test files share: a tenant with its owner and a SCIM
//! token, SCIM requests, and the checks on their answers.

use actix_web::http::{Method, StatusCode};
use actix_web::test::TestRequest;
use custodia_application::commands::sessions::start_session;
use custodia_domain::{ChainId, ChainIndex, TenantId, Timestamp};
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::TestDatabase;
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Sends a request; answers its status, headers and JSON body.
macro_rules! send {
    ($service:expr, $request:expr) => {{
        let response = actix_web::test::call_service($service, $request.to_request()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = actix_web::test::read_body(response).await;
        (
            status,
            headers,
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }};
}

/// A GraphQL request with a bearer token; answers the JSON body.
macro_rules! graphql {
    ($service:expr, $token:expr, $query:expr) => {{
        let request = actix_web::test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {}", $token)))
            .set_json(serde_json::json!({ "query": $query }));
        send!($service, request).2
    }};
}

/// Whether an access token still opens the API.
macro_rules! token_works {
    ($service:expr, $access_token:expr) => {{
        let body = graphql!($service, $access_token, "{ me { id } }");
        body["data"]["me"]["id"].is_string()
    }};
}

/// A user provisioned over SCIM (with a password); answers their id.
macro_rules! provision {
    ($service:expr, $token:expr, $email:expr) => {{
        let user = serde_json::json!({
            "schemas": [scim_client::USER],
            "userName": $email,
            "password": scim_client::PASSWORD,
        });
        let request = scim_client::scim($token, actix_web::http::Method::POST, "/Users", Some(user));
        let (status, _, body) = send!($service, request);
        assert_eq!(status, actix_web::http::StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }};
}

/// A SCIM request with the token (and a JSON body, if any).
pub fn scim(token: &str, method: Method, path: &str, body: Option<Value>) -> TestRequest {
    let request = TestRequest::default()
        .method(method)
        .uri(&format!("/scim/v2{path}"))
        .insert_header(("authorization", format!("Bearer {token}")));
    match body {
        Some(body) => request
            .insert_header(("content-type", "application/scim+json"))
            .set_payload(body.to_string()),
        None => request,
    }
}

pub fn get(token: &str, path: &str) -> TestRequest {
    scim(token, Method::GET, path, None)
}

/// A PatchOp request on the resource at `path`.
pub fn patch_at(token: &str, path: &str, operations: Value) -> TestRequest {
    scim(
        token,
        Method::PATCH,
        path,
        Some(json!({ "schemas": [PATCH], "Operations": operations })),
    )
}

/// `path` with a filter (and more of a query string, if any).
pub fn query(path: &str, filter: &str, rest: &str) -> String {
    let encoded: String = filter
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("{path}?filter={encoded}{rest}")
}

/// Asserts a SCIM error body with `status` (and `scim_type`, if named).
pub fn refused(status: StatusCode, body: &Value, expected: StatusCode, scim_type: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], expected.as_u16().to_string(), "{body}");
    if let Some(scim_type) = scim_type {
        assert_eq!(body["scimType"], scim_type, "{body}");
    }
}

/// The events of the tenant's chain, but for API key uses (a token's use
/// is recorded): what a refused request must not have added to.
pub async fn changes(state: &custodia::http::AppState, tenant: TenantId) -> usize {
    state
        .ports
        .store
        .read_chain(ChainId::Tenant(tenant), ChainIndex(0), 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.stream.category.as_str() != "api_key")
        .count()
}

/// Waits until the read models hold the whole log (a handler waits for its
/// own write only so long; a loaded machine can lag longer).
pub async fn caught_up(state: &custodia::http::AppState) {
    let head = state.ports.store.head().await.unwrap();
    while !state.projections.wait_for(head).await.unwrap() {}
}

/// The server's state, a tenant with its owner, and a SCIM token.
pub struct Setup {
    pub state: custodia::http::AppState,
    pub tenant: TenantId,
    pub owner: uuid::Uuid,
    pub token: String,
    pub owner_token: String,
}

pub async fn setup(db: &TestDatabase) -> Setup {
    let state = custodia::http::AppState::connect(
        db.url(),
        MASTER_KEY.parse().unwrap(),
        "custodia",
        "custodia-api",
    )
    .await
    .unwrap();
    let (tenant, owner) = tenant_with_owner(&state.ports, "ada@example.org", Some(PASSWORD)).await;
    let owner_token = sign_in(&state, tenant, "ada@example.org", PASSWORD).await;
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let body = graphql!(
        &service,
        &owner_token,
        r#"mutation { createScimToken(name: "idp") { key } }"#
    );
    let token = body["data"]["createScimToken"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    Setup {
        state,
        tenant,
        owner,
        token,
        owner_token,
    }
}

/// A session of the user with this address and password.
pub async fn sign_in(
    state: &custodia::http::AppState,
    tenant: TenantId,
    email: &str,
    password: &str,
) -> String {
    start_session(
        &state.ports,
        tenant,
        email,
        password,
        None,
        None,
        Timestamp::now(),
    )
    .await
    .unwrap_or_else(|e| panic!("sign-in refused: {e:?}"))
    .access_token
}
