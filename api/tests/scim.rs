//! SCIM 2.0 under `/scim/v2` (ADR 0012), both backends: SCIM tokens
//! authenticate there and nowhere else, every refusal is a SCIM error
//! body, and discovery advertises only what is supported.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use custodia_application::commands::sessions::start_session;
use custodia_application::commands::users::{register_user, NewUser, Profile};
use custodia_domain::Timestamp;
use custodia_tests::identity::{operator, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;

const PASSWORD: &str = "correct horse battery staple";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

backends!(
    scim_tokens_open_scim_only_and_discovery_tells_what_is_supported,
    scim_is_rate_limited_per_client_before_any_lookup,
);

fn graphql(token: &str, query: &str) -> TestRequest {
    TestRequest::post()
        .uri("/graphql")
        .insert_header(("authorization", format!("Bearer {token}")))
        .set_json(json!({ "query": query }))
}

fn scim(token: Option<&str>, method: &str, path: &str) -> TestRequest {
    let request = match method {
        "POST" => TestRequest::post().set_json(json!({ "userName": "someone" })),
        _ => TestRequest::get(),
    }
    .uri(&format!("/scim/v2{path}"));
    match token {
        Some(token) => request.insert_header(("authorization", format!("Bearer {token}"))),
        None => request,
    }
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

/// Asserts a SCIM error body with `status`; returns its detail.
fn scim_error(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], expected.as_u16().to_string(), "{body}");
    body["detail"].as_str().unwrap_or_default().to_owned()
}

async fn scim_tokens_open_scim_only_and_discovery_tells_what_is_supported(db: TestDatabase) {
    let state = served_state(&db).await;
    let ports = &state.ports;
    let (tenant, _) = tenant_with_owner(ports, "ada@example.org", Some(PASSWORD)).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let sign_in = |email: &'static str| {
        let ports = state.ports.clone();
        async move {
            start_session(
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
    let owner = sign_in("ada@example.org").await;

    // An admin makes a SCIM token; it is shown once.
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            r#"mutation { createScimToken(name: "Okta") { keyId key } }"#
        )
    );
    let token = body["data"]["createScimToken"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let token_id = body["data"]["createScimToken"]["keyId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Listed for those who manage keys (never a secret), not for others.
    let listed = r#"{ scimTokens { keyId name active createdBy revokedAt } }"#;
    let (_, body) = call!(&service, graphql(&owner, listed));
    assert_eq!(body["data"]["scimTokens"][0]["keyId"], token_id, "{body}");
    assert_eq!(body["data"]["scimTokens"][0]["name"], "Okta", "{body}");
    assert_eq!(body["data"]["scimTokens"][0]["active"], true, "{body}");
    assert!(!body.to_string().contains(&token), "{body}");

    // Discovery, with the token: SCIM bodies that advertise nothing that
    // is not built.
    let response = actix_web::test::call_service(
        &service,
        scim(Some(&token), "GET", "/ServiceProviderConfig").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/scim+json"
    );
    let config: Value =
        serde_json::from_slice(&actix_web::test::read_body(response).await).unwrap();
    assert_eq!(
        config["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    for (feature, supported) in [
        ("patch", true),
        ("bulk", false),
        ("filter", true),
        ("changePassword", true),
        ("sort", false),
        ("etag", true),
    ] {
        assert_eq!(
            config[feature]["supported"], supported,
            "{feature}: {config}"
        );
    }
    assert_eq!(config["filter"]["maxResults"], 200, "{config}");
    assert_eq!(
        config["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let (status, types) = call!(&service, scim(Some(&token), "GET", "/ResourceTypes"));
    assert_eq!(status, StatusCode::OK, "{types}");
    assert_eq!(types["totalResults"], 2, "{types}");
    assert_eq!(types["Resources"][0]["endpoint"], "/Users", "{types}");
    let (status, schemas) = call!(&service, scim(Some(&token), "GET", "/Schemas"));
    assert_eq!(status, StatusCode::OK, "{schemas}");
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:Group",
        ]
    );
    let (status, user) = call!(
        &service,
        scim(
            Some(&token),
            "GET",
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"
        )
    );
    assert_eq!(status, StatusCode::OK, "{user}");
    let password = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "password")
        .unwrap();
    assert_eq!(password["returned"], "never", "{user}");
    let (status, body) = call!(&service, scim(Some(&token), "GET", "/Schemas/urn:nope"));
    scim_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = call!(&service, scim(Some(&token), "GET", "/ResourceTypes/Nope"));
    scim_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = call!(&service, scim(Some(&token), "GET", "/Elsewhere"));
    scim_error(status, &body, StatusCode::NOT_FOUND);
    // Another method on a discovery endpoint: 405.
    let (status, body) = call!(&service, scim(Some(&token), "POST", "/Schemas"));
    scim_error(status, &body, StatusCode::METHOD_NOT_ALLOWED);
    // A group that is not there: a SCIM 404.
    let (status, body) = call!(&service, scim(Some(&token), "GET", "/Groups/1"));
    scim_error(status, &body, StatusCode::NOT_FOUND);

    // No token, a malformed one, a general API key, an access token: 401
    // as SCIM says it, and an outsider learns nothing of what exists.
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            r#"mutation { createApiKey(name: "reports", permissions: ["user.read"]) { key } }"#
        )
    );
    let api_key = body["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (credential, path) in [
        (None, "/ServiceProviderConfig"),
        (None, "/Users"),
        (Some("cst_nonsense"), "/Schemas"),
        (Some(api_key.as_str()), "/ServiceProviderConfig"),
        (Some(owner.as_str()), "/ResourceTypes"),
    ] {
        let response =
            actix_web::test::call_service(&service, scim(credential, "GET", path).to_request())
                .await;
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer realm=\"scim\""
        );
        let status = response.status();
        let body: Value =
            serde_json::from_slice(&actix_web::test::read_body(response).await).unwrap();
        scim_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    // The SCIM token opens nothing else; the general key still works.
    let (status, _) = call!(
        &service,
        graphql(&token, "{ users { edges { node { id } } } }")
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call!(
        &service,
        graphql(&api_key, "{ users { edges { node { id } } } }")
    );
    assert_eq!(status, StatusCode::OK, "{body}");

    // A member without api_key.manage makes no SCIM token.
    let mel = NewUser {
        address_vouched: false,
        user: uuid::Uuid::now_v7(),
        email: "mel@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(ports, &operator(), tenant, mel)
        .await
        .unwrap();
    let member = sign_in("mel@example.org").await;
    let (_, body) = call!(
        &service,
        graphql(
            &member,
            r#"mutation { createScimToken(name: "mine") { key } }"#
        )
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    let (_, body) = call!(&service, graphql(&member, listed));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // Revoked: refused at once.
    let (_, body) = call!(
        &service,
        graphql(
            &owner,
            &format!(r#"mutation {{ revokeApiKey(keyId: "{token_id}") {{ changed }} }}"#)
        )
    );
    assert_eq!(body["data"]["revokeApiKey"]["changed"], true, "{body}");
    let (_, body) = call!(&service, graphql(&owner, listed));
    assert_eq!(body["data"]["scimTokens"][0]["active"], false, "{body}");
    // General API keys are not SCIM tokens.
    assert_eq!(
        body["data"]["scimTokens"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert!(
        body["data"]["scimTokens"][0]["revokedAt"].is_string(),
        "{body}"
    );
    let (status, body) = call!(
        &service,
        scim(Some(&token), "GET", "/ServiceProviderConfig")
    );
    scim_error(status, &body, StatusCode::UNAUTHORIZED);

    // The platform operator makes and revokes one from the command line.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_custodia"))
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("CUSTODIA_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let tenant_text = tenant.to_string();
    let made = cli(&[
        "scim",
        "token",
        "create",
        "--tenant",
        &tenant_text,
        "--name",
        "Entra ID",
    ]);
    let (status, body) = call!(&service, scim(Some(&made), "GET", "/ResourceTypes"));
    assert_eq!(status, StatusCode::OK, "{body}");
    let key_id = made
        .strip_prefix("cst_")
        .and_then(|rest| rest.split('_').next())
        .map(|id| uuid::Uuid::parse_str(id).unwrap().to_string())
        .unwrap();
    // Listed from the command line too, without a secret.
    let listed = cli(&["scim", "token", "list", "--tenant", &tenant_text]);
    let line = listed
        .lines()
        .find(|line| line.contains(&key_id))
        .unwrap_or_else(|| panic!("{listed}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["name"], "Entra ID", "{line}");
    assert!(line["revoked_at"].is_null(), "{line}");
    assert!(!listed.contains(&made), "{listed}");
    assert_eq!(
        cli(&[
            "scim",
            "token",
            "revoke",
            "--tenant",
            &tenant_text,
            "--key-id",
            &key_id
        ]),
        "revoked"
    );
    let (status, body) = call!(&service, scim(Some(&made), "GET", "/ResourceTypes"));
    scim_error(status, &body, StatusCode::UNAUTHORIZED);
    running.stop().await;
}

/// Anonymous or not, a client over its rate gets a SCIM 429 with
/// Retry-After before any token is looked up; another client does not.
async fn scim_is_rate_limited_per_client_before_any_lookup(db: TestDatabase) {
    let state = served_state(&db).await;
    let limited = custodia::http::AppState {
        limits: std::sync::Arc::new(custodia::http::AuthLimits::with_graphql(60, 10, 3)),
        ..state
    };
    let service = actix_web::test::init_service(custodia::http::app(limited)).await;
    let from = |ip: &str| {
        scim(Some("cst_nonsense"), "GET", "/ServiceProviderConfig")
            .peer_addr(format!("{ip}:40000").parse().unwrap())
    };
    for _ in 0..3 {
        let (status, body) = call!(&service, from("127.0.0.2"));
        scim_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    let response = actix_web::test::call_service(&service, from("127.0.0.2").to_request()).await;
    assert!(response.headers().get("retry-after").is_some());
    let status = response.status();
    let body: Value = serde_json::from_slice(&actix_web::test::read_body(response).await).unwrap();
    scim_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = call!(&service, from("127.0.0.3"));
    scim_error(status, &body, StatusCode::UNAUTHORIZED);
}
