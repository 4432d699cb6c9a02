//! The HTTP edge, in process, on both backends: health, security headers,
//! the login / refresh / logout cycle, JWKS (checked with PyJWT), and typed
//! JSON errors for bad input, and retries under an `Idempotency-Key`.

use actix_web::http::StatusCode;
use actix_web::test;
use custodia::http::{app, AppState, MAX_BODY_BYTES};
use custodia_domain::TenantId;
use custodia_infrastructure::MasterKey;
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};
use uuid::Uuid;

backends!(
    health_and_security_headers,
    login_refresh_logout_cycle,
    bad_input_gets_typed_json_errors,
    auth_endpoints_are_rate_limited_per_ip_and_per_account,
    cors_allows_only_configured_origins,
    browser_sessions_use_httponly_cookies_and_csrf_double_submit,
    a_retried_mutation_with_an_idempotency_key_appends_once,
    retried_auth_requests_answer_as_the_first_did,
);

const EMAIL: &str = "ada@example.org";
const PASSWORD: &str = "correct horse battery staple";

/// A server state on the test database with one tenant whose owner has a password.
async fn world(db: &TestDatabase) -> (AppState, TenantId) {
    let state = AppState::connect(db.url(), MasterKey::generate(), "custodia", "custodia-api")
        .await
        .unwrap();
    let (tenant, _) = tenant_with_owner(&state.ports, EMAIL, Some(PASSWORD)).await;
    (state, tenant)
}

macro_rules! service {
    ($state:expr) => {
        test::init_service(app($state)).await
    };
}

async fn health_and_security_headers(db: TestDatabase) {
    let (state, _) = world(&db).await;
    let service = service!(state);
    for path in ["/health", "/health/live", "/health/ready"] {
        let response =
            test::call_service(&service, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            header("strict-transport-security"),
            "",
            "plain HTTP: no HSTS"
        );
        let csp = header("content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"),
            "{csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert!(header("permissions-policy").contains("camera=()"));
        assert_eq!(header("cache-control"), "no-store");
        assert!(Uuid::parse_str(&header("x-request-id")).is_ok());
    }
    // HSTS over HTTPS only (RFC 6797 §7.2), as a trusted proxy reports it.
    let hsts = |peer: &str, proto: &str| {
        test::TestRequest::get()
            .uri("/health")
            .peer_addr(peer.parse().unwrap())
            .insert_header(("x-forwarded-proto", proto))
            .to_request()
    };
    for (peer, proto, expected) in [
        ("127.0.0.1:50000", "https", true),
        ("127.0.0.1:50000", "http", false),
        ("203.0.113.7:50000", "https", false),
    ] {
        let response = test::call_service(&service, hsts(peer, proto)).await;
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            expected.then_some("max-age=31536000; includeSubDomains; preload"),
            "{peer} {proto}"
        );
    }
    // HEAD works where GET does.
    let response = test::call_service(
        &service,
        test::TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/health")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A caller's request id is echoed.
    let id = Uuid::now_v7().to_string();
    let request = test::TestRequest::get()
        .uri("/health")
        .insert_header(("x-request-id", id.as_str()))
        .to_request();
    let response = test::call_service(&service, request).await;
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap(),
        id
    );
}

/// POSTs JSON and returns the status and the JSON answer.
macro_rules! post {
    ($service:expr, $uri:expr, $body:expr) => {{
        let response = test::call_service(
            $service,
            test::TestRequest::post()
                .uri($uri)
                .set_json($body)
                .to_request(),
        )
        .await;
        let status = response.status();
        let bytes = test::read_body(response).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

/// PyJWT (an independent implementation) verifies `token` with the JWKS.
fn pyjwt_verifies(jwks: &Value, token: &str) -> Value {
    let script = r#"
import json, sys, jwt
jwks, token = json.loads(sys.argv[1]), sys.argv[2]
kid = jwt.get_unverified_header(token)["kid"]
jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
key = jwt.PyJWK(jwk)
print(json.dumps(jwt.decode(token, key.key, algorithms=["EdDSA"], audience="custodia-api", issuer="custodia")))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &jwks.to_string(), token])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn login_refresh_logout_cycle(db: TestDatabase) {
    let (state, tenant) = world(&db).await;
    let service = service!(state);
    let (status, tokens) = post!(
        &service,
        "/auth/login",
        json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD })
    );
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);

    let jwks_response = test::call_service(
        &service,
        test::TestRequest::get()
            .uri("/.well-known/jwks.json")
            .to_request(),
    )
    .await;
    let jwks: Value = test::read_body_json(jwks_response).await;
    let claims = pyjwt_verifies(&jwks, tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["tid"], tenant.to_string());
    assert_eq!(claims["roles"], json!(["owner"]));

    let (status, renewed) = post!(
        &service,
        "/auth/refresh",
        json!({ "tenant_id": tenant.to_string(), "refresh_token": tokens["refresh_token"] })
    );
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    // The first refresh token again: reuse, the session is revoked.
    let (status, error) = post!(
        &service,
        "/auth/refresh",
        json!({ "tenant_id": tenant.to_string(), "refresh_token": tokens["refresh_token"] })
    );
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );

    // A new session, then logout: its access token stops working at once.
    let (_, fresh) = post!(
        &service,
        "/auth/login",
        json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD })
    );
    let bearer = format!("Bearer {}", fresh["access_token"].as_str().unwrap());
    let logout = || {
        test::TestRequest::post()
            .uri("/auth/logout")
            .insert_header(("authorization", bearer.as_str()))
            .to_request()
    };
    assert_eq!(
        test::call_service(&service, logout()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        test::call_service(&service, logout()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn bad_input_gets_typed_json_errors(db: TestDatabase) {
    let (state, tenant) = world(&db).await;
    let service = service!(state);
    let tenant_id = tenant.to_string();
    let cases = [
        (
            json!({ "tenant_id": tenant_id, "email": EMAIL, "password": "wrong" }),
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        ),
        (
            json!({ "tenant_id": tenant_id, "email": "nobody@example.org", "password": "wrong" }),
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        ),
        (
            json!({ "tenant_id": "not-a-uuid", "email": EMAIL, "password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "VALIDATION",
        ),
        (
            json!({ "tenant_id": tenant_id, "email": EMAIL }),
            StatusCode::BAD_REQUEST,
            "VALIDATION",
        ),
        (
            json!({ "tenant_id": tenant_id, "email": EMAIL, "password": PASSWORD, "admin": true }),
            StatusCode::BAD_REQUEST,
            "VALIDATION",
        ),
        (
            json!({ "tenant_id": tenant_id, "email": EMAIL, "password": "x".repeat(MAX_BODY_BYTES) }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "VALIDATION",
        ),
    ];
    for (body, status, code) in cases {
        let (got, error) = post!(&service, "/auth/login", body.clone());
        assert_eq!(
            (got, error["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let garbage = test::TestRequest::post()
        .uri("/auth/login")
        .insert_header(("content-type", "application/json"))
        .set_payload("{not json")
        .to_request();
    assert_eq!(
        test::call_service(&service, garbage).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Lockout after the tenant's 5 failures on this account (1 above; the
    // unknown address does not count against it): 429 with Retry-After.
    for _ in 0..4 {
        post!(
            &service,
            "/auth/login",
            json!({ "tenant_id": tenant_id, "email": EMAIL, "password": "wrong" })
        );
    }
    let request = test::TestRequest::post()
        .uri("/auth/login")
        .set_json(json!({ "tenant_id": tenant_id, "email": EMAIL, "password": PASSWORD }))
        .to_request();
    let response = test::call_service(&service, request).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let no_bearer = test::TestRequest::post().uri("/auth/logout").to_request();
    assert_eq!(
        test::call_service(&service, no_bearer).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn auth_endpoints_are_rate_limited_per_ip_and_per_account(db: TestDatabase) {
    use custodia::http::AuthLimits;
    let (state, tenant) = world(&db).await;
    let state = AppState {
        limits: std::sync::Arc::new(AuthLimits::per_minute(5, 2)),
        ..state
    };
    let service = service!(state);
    let login = |ip: &str, email: &str| {
        test::TestRequest::post()
            .uri("/auth/login")
            .peer_addr(format!("{ip}:40000").parse().unwrap())
            .set_json(json!({ "tenant_id": tenant.to_string(), "email": email, "password": "wrong password" }))
            .to_request()
    };
    // Per account: the third login for ada within the minute is refused.
    assert_eq!(
        test::call_service(&service, login("203.0.113.9", EMAIL))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        test::call_service(&service, login("203.0.113.9", EMAIL))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let limited = test::call_service(&service, login("203.0.113.9", EMAIL)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    // Other accounts from the same address go on until the address's quota (5) is spent.
    assert_eq!(
        test::call_service(&service, login("203.0.113.9", "bob@example.org"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        test::call_service(&service, login("203.0.113.9", "eve@example.org"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        test::call_service(&service, login("203.0.113.9", "mallory@example.org"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another address is not affected.
    assert_eq!(
        test::call_service(&service, login("198.51.100.4", "bob@example.org"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn cors_allows_only_configured_origins(db: TestDatabase) {
    let (state, _) = world(&db).await;
    let state = AppState {
        cors_origins: std::sync::Arc::new(vec!["https://admin.example.org".to_owned()]),
        ..state
    };
    let service = service!(state);
    let preflight = |origin: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/auth/login")
            .insert_header(("origin", origin))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header(("access-control-request-headers", "content-type"))
            .to_request()
    };
    let allowed = test::call_service(&service, preflight("https://admin.example.org")).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://admin.example.org"
    );
    let refused = test::call_service(&service, preflight("https://evil.example.net")).await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "no CORS grant for other origins"
    );
    assert_ne!(refused.status(), StatusCode::OK);
}

async fn browser_sessions_use_httponly_cookies_and_csrf_double_submit(db: TestDatabase) {
    use actix_web::cookie::{Cookie, SameSite};
    let (state, tenant) = world(&db).await;
    let service = service!(state);
    let login = test::TestRequest::post()
        .uri("/auth/login")
        .set_json(json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD, "cookies": true }))
        .to_request();
    let response = test::call_service(&service, login).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<Cookie<'static>> = response
        .headers()
        .get_all("set-cookie")
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect();
    let body: Value = test::read_body_json(response).await;
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    let cookie = |name: &str| cookies.iter().find(|c| c.name() == name).cloned().unwrap();
    let (access, refresh, csrf) = (
        cookie("__Host-custodia-access"),
        cookie("__Secure-custodia-refresh"),
        cookie("__Host-custodia-csrf"),
    );
    for c in [&access, &refresh, &csrf] {
        assert_eq!(c.secure(), Some(true), "{c}");
        assert_eq!(c.same_site(), Some(SameSite::Strict), "{c}");
    }
    assert_eq!(access.http_only(), Some(true));
    assert_eq!(refresh.http_only(), Some(true));
    assert_eq!(refresh.path(), Some("/auth"));
    assert_ne!(
        csrf.http_only(),
        Some(true),
        "the page's script reads the CSRF token"
    );
    assert_eq!(body["csrf_token"], csrf.value());

    let graphql = |with_csrf: bool, access: &Cookie<'static>| {
        let mut request = test::TestRequest::post()
            .uri("/graphql")
            .cookie(access.clone())
            .cookie(csrf.clone())
            .set_json(json!({ "query": "{ serverTime }" }));
        if with_csrf {
            request = request.insert_header(("x-csrf-token", csrf.value().to_owned()));
        }
        request.to_request()
    };
    // A state-changing request on the cookie alone (what a forged cross-site
    // request looks like) is refused; with the double-submitted token it passes.
    let response = test::call_service(&service, graphql(false, &access)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = test::call_service(&service, graphql(true, &access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let wrong = test::TestRequest::post()
        .uri("/graphql")
        .cookie(access.clone())
        .cookie(csrf.clone())
        .insert_header(("x-csrf-token", "0".repeat(64)))
        .set_json(json!({ "query": "{ serverTime }" }))
        .to_request();
    assert_eq!(
        test::call_service(&service, wrong).await.status(),
        StatusCode::FORBIDDEN
    );

    // Refresh from the cookie, with the CSRF token; new cookies come back.
    let refresh_request = |with_csrf: bool| {
        let mut request = test::TestRequest::post()
            .uri("/auth/refresh")
            .cookie(refresh.clone())
            .cookie(csrf.clone())
            .set_json(json!({ "tenant_id": tenant.to_string() }));
        if with_csrf {
            request = request.insert_header(("x-csrf-token", csrf.value().to_owned()));
        }
        request.to_request()
    };
    assert_eq!(
        test::call_service(&service, refresh_request(false))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let response = test::call_service(&service, refresh_request(true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let fresh_access = response
        .headers()
        .get_all("set-cookie")
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .find(|c| c.name() == "__Host-custodia-access")
        .unwrap();

    // Logout from the cookie clears the cookies and ends the session.
    let logout = test::TestRequest::post()
        .uri("/auth/logout")
        .cookie(fresh_access.clone())
        .cookie(csrf.clone())
        .insert_header(("x-csrf-token", csrf.value().to_owned()))
        .to_request();
    let response = test::call_service(&service, logout).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cleared.len(), 3, "{cleared:?}");
    let response = test::call_service(&service, graphql(true, &fresh_access)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Sends `request` with `Idempotency-Key: key` (if any); returns the
/// status, whether the answer was replayed, and the JSON answer.
macro_rules! keyed {
    ($service:expr, $request:expr, $key:expr) => {{
        let mut request = $request;
        if let Some(key) = $key {
            request = request.insert_header(("idempotency-key", key));
        }
        let response = test::call_service($service, request.to_request()).await;
        let status = response.status();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let bytes = test::read_body(response).await;
        (
            status,
            replayed,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

async fn a_retried_mutation_with_an_idempotency_key_appends_once(db: TestDatabase) {
    let (state, tenant) = world(&db).await;
    let store = state.ports.store.clone();
    let service = service!(state);
    let (_, tokens) = post!(
        &service,
        "/auth/login",
        json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD })
    );
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let register = |email: &str| {
        test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", bearer.clone()))
            .set_json(json!({
                "query": "mutation($input: RegisterUserInput!) { registerUser(input: $input) { consistencyToken } }",
                "variables": { "input": { "email": email } }
            }))
    };
    let first = keyed!(&service, register("grace@example.org"), Some("\"retry-1\""));
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert!(!first.1, "a first answer is not a replay");
    // (No projection runs here: the token tells one write from another.)
    let written = first.2["data"]["registerUser"]["consistencyToken"].clone();
    assert!(
        written.as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        first.2
    );
    let head = store.head().await.unwrap();

    // The client timed out and sends it again: the same answer, nothing appended.
    let again = keyed!(&service, register("grace@example.org"), Some("\"retry-1\""));
    assert_eq!(again.0, StatusCode::OK);
    assert!(again.1, "marked as replayed");
    assert_eq!(again.2, first.2);
    assert_eq!(store.head().await.unwrap(), head, "nothing appended");

    // The same key for another request is a client bug.
    let other = keyed!(&service, register("alan@example.org"), Some("\"retry-1\""));
    assert_eq!(other.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", other.2);
    assert_eq!(
        other.2["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(store.head().await.unwrap(), head);

    // Without a key, or with another, a request runs as itself.
    let fresh = keyed!(&service, register("alan@example.org"), Some("retry-2"));
    assert_eq!(fresh.0, StatusCode::OK);
    assert!(!fresh.1);
    assert_ne!(fresh.2["data"]["registerUser"]["consistencyToken"], written);

    // A key that is not a short visible string is refused before anything runs.
    for bad in ["", "\"\"", &"k".repeat(256)] {
        let (status, _, body) = keyed!(&service, register("eve@example.org"), Some(bad));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
}

async fn retried_auth_requests_answer_as_the_first_did(db: TestDatabase) {
    let (state, tenant) = world(&db).await;
    let store = state.ports.store.clone();
    let service = service!(state);
    let login = || {
        test::TestRequest::post().uri("/auth/login").set_json(
            json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD }),
        )
    };
    // A failed login is not remembered: the key stays free for the retry
    // that gets the password right (and it is counted like any failure).
    let typo = keyed!(
        &service,
        test::TestRequest::post().uri("/auth/login").set_json(
            json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": "a typo" }),
        ),
        Some("login-1")
    );
    assert_eq!(typo.0, StatusCode::UNAUTHORIZED);
    let first = keyed!(&service, login(), Some("login-1"));
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert!(!first.1);
    let head = store.head().await.unwrap();
    let again = keyed!(&service, login(), Some("login-1"));
    assert!(again.1);
    assert_eq!(again.2, first.2, "the same session and tokens");
    assert_eq!(store.head().await.unwrap(), head, "no second session");
    // Another password with the key is another request.
    let wrong = keyed!(
        &service,
        test::TestRequest::post().uri("/auth/login").set_json(
            json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": "not the password" }),
        ),
        Some("login-1")
    );
    assert_eq!(wrong.0, StatusCode::UNPROCESSABLE_ENTITY);

    // A refresh retried after a lost answer is not a reused token: the
    // retry gets the same new tokens, and the session lives on.
    let refresh = |token: &Value| {
        test::TestRequest::post()
            .uri("/auth/refresh")
            .set_json(json!({ "refresh_token": token }))
    };
    let rotated = keyed!(
        &service,
        refresh(&first.2["refresh_token"]),
        Some("refresh-1")
    );
    assert_eq!(rotated.0, StatusCode::OK, "{}", rotated.2);
    let retried = keyed!(
        &service,
        refresh(&first.2["refresh_token"]),
        Some("refresh-1")
    );
    assert!(retried.1);
    assert_eq!(retried.2, rotated.2);
    let next = keyed!(&service, refresh(&rotated.2["refresh_token"]), None::<&str>);
    assert_eq!(
        next.0,
        StatusCode::OK,
        "the session was not revoked: {}",
        next.2
    );

    // The login's answer holds a refresh token rotated since: it is not
    // handed out again; the retry runs as a new login.
    let late = keyed!(&service, login(), Some("login-1"));
    assert_eq!(late.0, StatusCode::OK);
    assert!(!late.1, "tokens no longer current are not replayed");
    assert_ne!(late.2["session_id"], first.2["session_id"]);
    // Another account may use the same key: keys are each account's.
    let other = keyed!(
        &service,
        test::TestRequest::post().uri("/auth/login").set_json(
            json!({ "tenant_id": tenant.to_string(), "email": "nobody@example.org", "password": PASSWORD }),
        ),
        Some("login-1")
    );
    assert_eq!(other.0, StatusCode::UNAUTHORIZED, "{}", other.2);
    // One key header only.
    let twice = test::TestRequest::post()
        .uri("/auth/login")
        .insert_header(("idempotency-key", "a"))
        .append_header(("idempotency-key", "b"))
        .set_json(json!({ "tenant_id": tenant.to_string(), "email": EMAIL, "password": PASSWORD }));
    let twice = keyed!(&service, twice, None::<&str>);
    assert_eq!(twice.0, StatusCode::BAD_REQUEST, "{}", twice.2);

    // Logout, twice under one key: one revocation, the same answer.
    let bearer = format!("Bearer {}", next.2["access_token"].as_str().unwrap());
    let logout = || {
        test::TestRequest::post()
            .uri("/auth/logout")
            .insert_header(("authorization", bearer.clone()))
    };
    let out = keyed!(&service, logout(), Some("logout-1"));
    assert_eq!(out.0, StatusCode::NO_CONTENT);
    let head = store.head().await.unwrap();
    let out_again = keyed!(&service, logout(), Some("logout-1"));
    assert_eq!(out_again.0, StatusCode::NO_CONTENT);
    assert!(out_again.1);
    assert_eq!(store.head().await.unwrap(), head);

    // A captured keyed refresh, replayed after the token moved on, hands
    // out nothing: it is the old token presented again (reuse detection).
    let replayed = keyed!(
        &service,
        refresh(&first.2["refresh_token"]),
        Some("refresh-1")
    );
    assert_eq!(replayed.0, StatusCode::UNAUTHORIZED, "{}", replayed.2);
    assert!(!replayed.1);
}
