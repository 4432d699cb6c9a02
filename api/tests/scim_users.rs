//! SCIM Users against the whole server, both backends: every endpoint and
//! operation, the refusals (each changes nothing), and the request
//! sequences Okta and Microsoft Entra ID send, as their documentation
//! shows them.

use actix_web::http::{Method, StatusCode};
use actix_web::test::TestRequest;
use custodia_domain::{ChainId, ChainIndex};
use custodia_tests::identity::tenant_with_owner;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;

#[macro_use]
#[allow(dead_code, unused_macros)] // shared by the SCIM test files
mod scim_client;

use scim_client::*;

backends!(
    a_user_is_provisioned_changed_suspended_and_deleted_through_the_commands,
    lists_filter_page_and_project,
    every_refusal_is_a_scim_error_and_changes_nothing,
    okta_provisions_updates_and_deactivates_as_its_documentation_shows,
    entra_provisions_updates_disables_and_deletes_as_its_documentation_shows,
    the_scim2_conformance_suite_finds_nothing_but_the_documented_refusals,
);

fn patch(token: &str, id: &str, operations: Value) -> TestRequest {
    patch_at(token, &format!("/Users/{id}"), operations)
}

/// A filter on the users, as a query string.
fn filtered(filter: &str) -> String {
    query("/Users", filter, "")
}

fn bob() -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "userName": "Bob.Smith@Example.org",
        "externalId": "00u1bob",
        "name": { "givenName": "Robert", "familyName": "Smith", "formatted": "Robert Smith" },
        "displayName": "Bob Smith",
        "title": "Engineer",
        "emails": [{ "value": "bob.smith@example.org", "type": "work", "primary": true }],
        "phoneNumbers": [{ "value": "tel:+1-201-555-0123", "type": "work" }],
        "active": true,
        "password": "tr0ub4dor & 3, long enough",
        "roles": [],
        ENTERPRISE: { "department": "Platform", "employeeNumber": "701" },
    })
}

async fn a_user_is_provisioned_changed_suspended_and_deleted_through_the_commands(
    db: TestDatabase,
) {
    let Setup {
        state,
        tenant,
        token,
        ..
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;

    // Created: 201, Location and ETag, the resource as sent (no password).
    let (status, headers, created) =
        send!(&service, scim(&token, Method::POST, "/Users", Some(bob())));
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/scim+json"
    );
    assert_eq!(
        headers.get("location").unwrap().to_str().unwrap(),
        created["meta"]["location"]
    );
    assert!(created["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{id}")));
    assert_eq!(
        headers.get("etag").unwrap().to_str().unwrap(),
        created["meta"]["version"]
    );
    assert_eq!(
        created["userName"], "Bob.Smith@Example.org",
        "the case given is kept"
    );
    assert_eq!(created["externalId"], "00u1bob");
    assert_eq!(created["name"]["givenName"], "Robert");
    assert_eq!(created["title"], "Engineer");
    assert_eq!(created["emails"][0]["primary"], true);
    assert_eq!(created["phoneNumbers"][0]["value"], "tel:+1-201-555-0123");
    assert_eq!(created[ENTERPRISE]["department"], "Platform");
    assert_eq!(created["active"], true);
    assert_eq!(created["schemas"], json!([USER, ENTERPRISE]));
    assert!(created.get("password").is_none(), "{created}");

    // The password was imported like any password: Bob signs in with it.
    let bob_session = sign_in(
        &state,
        tenant,
        "bob.smith@example.org",
        "tr0ub4dor & 3, long enough",
    )
    .await;
    assert!(token_works!(&service, &bob_session));

    // Evented like any change: the SCIM request is the origin, the token
    // the actor, and the personal data sealed.
    let user = uuid::Uuid::parse_str(&id).unwrap();
    let events = state
        .ports
        .store
        .read_chain(ChainId::Tenant(tenant), ChainIndex(0), 10_000)
        .await
        .unwrap();
    let registered = events
        .iter()
        .find(|e| e.stream.id == user && e.event_type.as_str() == "UserRegistered")
        .expect("registered");
    assert_eq!(
        registered.metadata.origin.as_str(),
        format!("scim POST /Users/{id}")
    );
    assert!(matches!(
        registered.metadata.actor,
        custodia_domain::Actor::Service(_)
    ));
    for event in &events {
        let payload = String::from_utf8_lossy(event.payload.as_bytes()).to_lowercase();
        for plain in ["robert", "bob.smith", "platform", "00u1bob", "555-0123"] {
            assert!(
                !payload.contains(plain),
                "{plain} in {}",
                event.event_type.as_str()
            );
        }
    }

    // Read back, by id and conditionally.
    let (status, headers, read) = send!(&service, get(&token, &format!("/Users/{id}")));
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, created);
    let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
    let (status, _, _) = send!(
        &service,
        get(&token, &format!("/Users/{id}")).insert_header(("if-none-match", etag.clone()))
    );
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Replaced (PUT, with the ETag): what is left out is removed.
    let mut replacement = bob();
    replacement["title"] = json!("Staff Engineer");
    replacement["name"] = json!({ "givenName": "Rob", "familyName": "Smith" });
    replacement.as_object_mut().unwrap().remove("phoneNumbers");
    replacement.as_object_mut().unwrap().remove("password");
    let (status, headers, replaced) = send!(
        &service,
        scim(
            &token,
            Method::PUT,
            &format!("/Users/{id}"),
            Some(replacement)
        )
        .insert_header(("if-match", etag.clone()))
    );
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["title"], "Staff Engineer");
    assert_eq!(
        replaced["name"],
        json!({ "givenName": "Rob", "familyName": "Smith" })
    );
    assert!(replaced.get("phoneNumbers").is_none(), "{replaced}");
    assert_ne!(headers.get("etag").unwrap().to_str().unwrap(), etag);
    // Not the password: Bob is still signed in.
    assert!(token_works!(&service, &bob_session));

    // The old ETag is stale now: refused, nothing written.
    let before = changes(&state, tenant).await;
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "path": "title", "value": "CTO" }])
        )
        .insert_header(("if-match", etag.clone()))
    );
    refused(status, &body, StatusCode::PRECONDITION_FAILED, None);
    assert_eq!(changes(&state, tenant).await, before);

    // PATCH: an address changed, a value added, a sub-attribute removed.
    let (status, _, patched) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([
                { "op": "replace", "path": "userName", "value": "rob@example.org" },
                { "op": "add", "path": "emails", "value": [{ "value": "rob@home.example", "type": "home" }] },
                { "op": "remove", "path": "name.givenName" },
            ])
        )
    );
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["userName"], "rob@example.org");
    assert_eq!(patched["emails"].as_array().unwrap().len(), 2, "{patched}");
    assert_eq!(patched["name"], json!({ "familyName": "Smith" }));
    // The new address signs in; the old one is released.
    sign_in(
        &state,
        tenant,
        "rob@example.org",
        "tr0ub4dor & 3, long enough",
    )
    .await;

    // Deactivated: suspended, every session ended at once.
    let (status, _, patched) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "path": "active", "value": false }])
        )
    );
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["active"], false);
    assert!(!token_works!(&service, &bob_session));
    // Reactivated.
    let (status, _, patched) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "value": { "active": true } }])
        )
    );
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["active"], true);

    // A password set over SCIM replaces the old one and ends the sessions.
    let session = sign_in(
        &state,
        tenant,
        "rob@example.org",
        "tr0ub4dor & 3, long enough",
    )
    .await;
    let (status, _, patched) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "path": "password", "value": "a new passphrase, long" }])
        )
    );
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched.get("password").is_none());
    assert!(!token_works!(&service, &session));
    sign_in(&state, tenant, "rob@example.org", "a new passphrase, long").await;

    // Deleted: soft-deleted (retention and erasure follow), gone to SCIM.
    let (status, _, _) = send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Users/{id}"), None)
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send!(&service, get(&token, &format!("/Users/{id}")));
    refused(status, &body, StatusCode::NOT_FOUND, None);
    let (status, _, body) = send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Users/{id}"), None)
    );
    refused(status, &body, StatusCode::NOT_FOUND, None);
    let (_, _, list) = send!(
        &service,
        get(&token, &filtered(r#"userName eq "rob@example.org""#))
    );
    assert_eq!(list["totalResults"], 0, "{list}");
    let row = state.models.get("user", &id).await.unwrap().unwrap();
    assert_eq!(row.kind.as_deref(), Some("deleted"));
    // A deleted user's address is no conflict (RFC 7644 §3.6): the same
    // person can be provisioned again, as someone new.
    let again = json!({ "schemas": [USER], "userName": "rob@example.org" });
    let (status, _, body) = send!(&service, scim(&token, Method::POST, "/Users", Some(again)));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["id"], id.as_str());
    // The scheme's name is case-insensitive (RFC 7235).
    let (status, _, _) = send!(
        &service,
        TestRequest::get()
            .uri("/scim/v2/ServiceProviderConfig")
            .insert_header(("authorization", format!("bearer {token}")))
    );
    assert_eq!(status, StatusCode::OK);
    running.stop().await;
}

async fn lists_filter_page_and_project(db: TestDatabase) {
    let Setup { state, token, .. } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let user = json!({
            "schemas": [USER, ENTERPRISE],
            "userName": format!("a{n}@example.org"),
            "externalId": format!("ext-{n}"),
            "name": { "familyName": format!("Family{n}") },
            "emails": [{ "value": format!("a{n}@example.org"), "type": "work" }],
            "active": n != 4,
            ENTERPRISE: { "department": if n % 2 == 0 { "even" } else { "odd" } },
        });
        let (status, _, created) =
            send!(&service, scim(&token, Method::POST, "/Users", Some(user)));
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let total = |body: &Value| body["totalResults"].as_u64().unwrap();
    let listed = |body: &Value| -> Vec<String> {
        body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Entra's test connection: a filter on a random value answers 200, empty.
    let random = uuid::Uuid::new_v4();
    let (status, _, body) = send!(
        &service,
        get(&token, &filtered(&format!(r#"userName eq "{random}""#)))
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (total(&body), body["Resources"].clone()),
        (0, json!([])),
        "{body}"
    );
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );

    for (filter, expected) in [
        // Indexed: userName (case-insensitive), externalId (case-exact), id.
        (r#"userName eq "A2@EXAMPLE.ORG""#.to_owned(), vec![2]),
        (r#"externalId eq "ext-3""#.to_owned(), vec![3]),
        (r#"externalId eq "EXT-3""#.to_owned(), vec![]),
        (format!(r#"id eq "{}""#, ids[1]), vec![1]),
        (format!(r#"id eq "{}" and active eq false"#, ids[1]), vec![]),
        // Evaluated on the opened users.
        (r#"name.familyName sw "family""#.to_owned(), vec![0, 1, 2, 3, 4]),
        (r#"active eq false"#.to_owned(), vec![4]),
        (
            format!(r#"{ENTERPRISE}:department eq "even" and not (externalId eq "ext-2")"#),
            vec![0, 4],
        ),
        (
            r#"emails[type eq "work" and value ew "a3@example.org"] or userName eq "a1@example.org""#
                .to_owned(),
            vec![1, 3],
        ),
        (r#"title pr"#.to_owned(), vec![]),
        (r#"meta.created gt "2000-01-01T00:00:00Z""#.to_owned(), vec![0, 1, 2, 3, 4]),
    ] {
        let filter = format!("{filter} and userName ne \"ada@example.org\"");
        let (status, _, body) = send!(&service, get(&token, &filtered(&filter)));
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        let expected: Vec<String> = expected.iter().map(|n| ids[*n].clone()).collect();
        assert_eq!(listed(&body), expected, "{filter}");
        assert_eq!(total(&body), expected.len() as u64, "{filter}");
    }

    // Pages: stable order (creation), every user once, the owner included.
    let mut seen = Vec::new();
    for start in [1, 3, 5, 7] {
        let (status, _, body) = send!(
            &service,
            get(&token, &format!("/Users?startIndex={start}&count=2"))
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(total(&body), 6, "{body}");
        assert_eq!(body["startIndex"], start);
        assert_eq!(body["itemsPerPage"], listed(&body).len());
        seen.extend(listed(&body));
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[1..], ids[..]);
    // The same pages through a filter that is evaluated, not indexed.
    let (_, _, body) = send!(
        &service,
        get(
            &token,
            &format!("{}&startIndex=2&count=2", filtered(r#"name.familyName pr"#))
        )
    );
    assert_eq!((total(&body), listed(&body)), (5, ids[1..3].to_vec()));
    // count=0: the total only; a count above the maximum is lowered to it;
    // startIndex below 1 means 1 (RFC 7644 §3.4.2.4).
    let (_, _, body) = send!(&service, get(&token, "/Users?count=0"));
    assert_eq!((total(&body), listed(&body).len()), (6, 0), "{body}");
    let (_, _, body) = send!(&service, get(&token, "/Users?count=100000&startIndex=-4"));
    assert_eq!(
        (body["startIndex"].clone(), listed(&body).len()),
        (json!(1), 6),
        "{body}"
    );
    for bad in ["/Users?count=many", "/Users?startIndex=1.5"] {
        let (status, _, body) = send!(&service, get(&token, bad));
        refused(status, &body, StatusCode::BAD_REQUEST, Some("invalidValue"));
    }

    // attributes and excludedAttributes, on lists and on one user.
    let (_, _, body) = send!(
        &service,
        get(
            &token,
            "/Users?attributes=userName,name.familyName&count=1&startIndex=2"
        )
    );
    let only = &body["Resources"][0];
    let mut keys: Vec<&str> = only
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "name", "schemas", "userName"], "{only}");
    let (_, _, one) = send!(
        &service,
        get(
            &token,
            &format!(
                "/Users/{}?excludedAttributes=emails,{ENTERPRISE},id",
                ids[0]
            )
        )
    );
    assert!(
        one.get("emails").is_none() && one.get(ENTERPRISE).is_none(),
        "{one}"
    );
    assert_eq!(one["id"], ids[0], "id is always returned");
    assert_eq!(one["userName"], "a0@example.org");

    // POST .search, on Users and at the root.
    for path in ["/Users/.search", "/.search"] {
        let search = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "externalId eq \"ext-4\"",
            "attributes": ["active"],
            "startIndex": 1,
            "count": 10,
        });
        let (status, _, body) = send!(&service, scim(&token, Method::POST, path, Some(search)));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(listed(&body), [ids[4].clone()]);
        assert_eq!(body["Resources"][0]["active"], false);
        assert!(body["Resources"][0].get("userName").is_none());
    }

    // Bad filters: 400 invalidFilter.
    for bad in [
        "userName eq",
        "userName zz \"a\"",
        "(userName eq \"a\"",
        "active gt true",
        &format!("{}active eq true{}", "(".repeat(40), ")".repeat(40)),
    ] {
        let (status, _, body) = send!(&service, get(&token, &filtered(bad)));
        refused(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        );
    }
    running.stop().await;
}

async fn every_refusal_is_a_scim_error_and_changes_nothing(db: TestDatabase) {
    let Setup {
        state,
        tenant,
        owner,
        token,
        owner_token,
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let (_, _, carol) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Users",
            Some(
                json!({ "schemas": [USER], "userName": "carol@example.org", "displayName": "Carol" })
            )
        )
    );
    let carol_id = carol["id"].as_str().unwrap().to_owned();
    send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Users",
            Some(json!({ "schemas": [USER], "userName": "dave@example.org" }))
        )
    );
    // Another tenant, with a user of its own.
    let (_, stranger) = tenant_with_owner(&state.ports, "eve@example.org", Some(PASSWORD)).await;
    let stranger = stranger.to_string();
    let owner = owner.to_string();
    let carol_path = format!("/Users/{carol_id}");

    let raw = |method: Method, path: &str, body: &str| {
        TestRequest::default()
            .method(method)
            .uri(&format!("/scim/v2{path}"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .insert_header(("content-type", "application/scim+json"))
            .set_payload(body.to_owned())
    };
    let ops =
        |operations: Value| json!({ "schemas": [PATCH], "Operations": operations }).to_string();
    let user = |extra: Value| {
        let mut user = json!({ "schemas": [USER], "userName": "new@example.org" });
        for (k, v) in extra.as_object().unwrap() {
            user[k] = v.clone();
        }
        user.to_string()
    };
    let huge = format!(
        r#"{{"schemas":["{USER}"],"userName":"big@example.org","title":"{}"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    let before = changes(&state, tenant).await;
    let cases: Vec<(TestRequest, StatusCode, Option<&str>)> = vec![
        // Malformed or unknown input.
        (raw(Method::POST, "/Users", "{\"schemas\": ["), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", "[]"), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", r#"{"userName":"new@example.org"}"#), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", &user(json!({ "shoeSize": "44" }))), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", &user(json!({ "name": { "nick": "x" } }))), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", &user(json!({ ENTERPRISE: { "badge": "1" } }))), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::POST, "/Users", &user(json!({ "userName": "not an address" }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "userName": null }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "active": "maybe" }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "title": 7 }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "roles": [{ "value": "owner" }] }))), StatusCode::BAD_REQUEST, Some("mutability")),
        (raw(Method::POST, "/Users", &user(json!({ "emails": [{ "value": "a@b.c", "primary": true }, { "value": "d@e.f", "primary": "True" }] }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "password": "short" }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &user(json!({ "title": "t".repeat(2000) }))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::POST, "/Users", &huge), StatusCode::PAYLOAD_TOO_LARGE, None),
        // Taken: another user's address, in any case.
        (raw(Method::POST, "/Users", &user(json!({ "userName": "Carol@Example.org" }))), StatusCode::CONFLICT, Some("uniqueness")),
        // Another tenant's user, an id that is no UUID, a user that never was.
        (raw(Method::GET, &format!("/Users/{stranger}"), ""), StatusCode::NOT_FOUND, None),
        (raw(Method::PUT, &format!("/Users/{stranger}"), &user(json!({}))), StatusCode::NOT_FOUND, None),
        (raw(Method::PATCH, &format!("/Users/{stranger}"), &ops(json!([{ "op": "replace", "path": "active", "value": false }]))), StatusCode::NOT_FOUND, None),
        (raw(Method::DELETE, &format!("/Users/{stranger}"), ""), StatusCode::NOT_FOUND, None),
        (raw(Method::GET, "/Users/not-a-uuid", ""), StatusCode::NOT_FOUND, None),
        (raw(Method::DELETE, &format!("/Users/{}", uuid::Uuid::now_v7()), ""), StatusCode::NOT_FOUND, None),
        // Bad PATCH requests.
        (raw(Method::PATCH, &carol_path, &json!({ "Operations": [] }).to_string()), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::PATCH, &carol_path, &ops(json!([]))), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "move", "path": "title", "value": "x" }]))), StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "replace", "path": "emails[type eq", "value": "x" }]))), StatusCode::BAD_REQUEST, Some("invalidPath")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "replace", "path": "shoeSize", "value": "x" }]))), StatusCode::BAD_REQUEST, Some("invalidPath")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "remove" }]))), StatusCode::BAD_REQUEST, Some("noTarget")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "replace", "path": "emails[value co \"x\"].type", "value": "home" }]))), StatusCode::BAD_REQUEST, Some("noTarget")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "add", "path": "title" }]))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "remove", "path": "active" }]))), StatusCode::BAD_REQUEST, Some("mutability")),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "replace", "value": { "id": stranger } }]))), StatusCode::BAD_REQUEST, Some("mutability")),
        // All or nothing: a valid change beside a taken address writes neither.
        (raw(Method::PATCH, &carol_path, &ops(json!([
            { "op": "replace", "path": "displayName", "value": "Caroline" },
            { "op": "replace", "path": "userName", "value": "dave@example.org" },
        ]))), StatusCode::CONFLICT, Some("uniqueness")),
        (raw(Method::PATCH, &carol_path, &ops(json!([
            { "op": "replace", "path": "displayName", "value": "Caroline" },
            { "op": "replace", "path": "password", "value": "short" },
        ]))), StatusCode::BAD_REQUEST, Some("invalidValue")),
        // Wrong ETags.
        (raw(Method::PUT, &carol_path, &user(json!({}))).insert_header(("if-match", "W/\"9\"")), StatusCode::PRECONDITION_FAILED, None),
        (raw(Method::PATCH, &carol_path, &ops(json!([{ "op": "replace", "path": "title", "value": "x" }]))).insert_header(("if-match", "nonsense")), StatusCode::PRECONDITION_FAILED, None),
        (raw(Method::DELETE, &carol_path, "").insert_header(("if-match", "W/\"7\"")), StatusCode::PRECONDITION_FAILED, None),
        // A SCIM token holds less than the owner: it changes nothing of theirs.
        (raw(Method::PATCH, &format!("/Users/{owner}"), &ops(json!([{ "op": "replace", "path": "active", "value": false }]))), StatusCode::FORBIDDEN, None),
        (raw(Method::PUT, &format!("/Users/{owner}"), &json!({ "schemas": [USER], "userName": "ada@example.org", "password": "taken over, long enough" }).to_string()), StatusCode::FORBIDDEN, None),
        (raw(Method::DELETE, &format!("/Users/{owner}"), ""), StatusCode::FORBIDDEN, None),
        // Another method: 405.
        (raw(Method::PATCH, "/Users", "{}"), StatusCode::METHOD_NOT_ALLOWED, None),
    ];
    for (n, (request, status_expected, scim_type)) in cases.into_iter().enumerate() {
        let (status, headers, body) = send!(&service, request);
        assert_eq!(status, status_expected, "case {n}: {body}");
        assert_eq!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/scim+json"),
            "case {n}"
        );
        refused(status, &body, status_expected, scim_type);
        assert_eq!(changes(&state, tenant).await, before, "case {n} wrote");
    }
    // Carol is as she was; the owner can still sign in.
    let (_, _, now) = send!(&service, get(&token, &carol_path));
    assert_eq!(now["displayName"], "Carol");
    assert_eq!(now["meta"]["version"], carol["meta"]["version"]);
    assert!(token_works!(&service, &owner_token));
    sign_in(&state, tenant, "ada@example.org", PASSWORD).await;
    running.stop().await;
}

async fn okta_provisions_updates_and_deactivates_as_its_documentation_shows(db: TestDatabase) {
    let Setup {
        state,
        tenant,
        token,
        ..
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let lookup = format!(
        "{}&startIndex=1&count=100",
        filtered(r#"userName eq "isv.user@example.com""#)
    );
    // Does the user exist? No.
    let (status, _, body) = send!(&service, get(&token, &lookup));
    assert_eq!(
        (status, body["totalResults"].clone()),
        (StatusCode::OK, json!(0)),
        "{body}"
    );
    // Create, with a password.
    let okta_user = json!({
        "schemas": [USER],
        "userName": "isv.user@example.com",
        "name": { "givenName": "Isv", "familyName": "User" },
        "emails": [{ "primary": true, "value": "isv.user@example.com", "type": "work" }],
        "displayName": "Isv User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq, long enough",
        "active": true,
    });
    let (status, _, created) = send!(
        &service,
        scim(&token, Method::POST, "/Users", Some(okta_user.clone()))
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Created twice: 409 uniqueness.
    let (status, _, body) = send!(
        &service,
        scim(&token, Method::POST, "/Users", Some(okta_user))
    );
    refused(status, &body, StatusCode::CONFLICT, Some("uniqueness"));
    // Found by the same query now.
    let (_, _, body) = send!(&service, get(&token, &lookup));
    assert_eq!(body["Resources"][0]["id"], id, "{body}");
    // Profile update: GET, then the whole user back with a change.
    let (_, _, mut user) = send!(&service, get(&token, &format!("/Users/{id}")));
    user["name"]["givenName"] = json!("Another");
    let (status, _, updated) = send!(
        &service,
        scim(&token, Method::PUT, &format!("/Users/{id}"), Some(user))
    );
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"]["givenName"], "Another");
    assert_eq!(updated["externalId"], "00ujl29u0le5T6Aj10h7");
    // Password sync sends the same password with a profile update: the
    // password, and so the user's sessions, are left alone.
    let session = sign_in(
        &state,
        tenant,
        "isv.user@example.com",
        "1mz050nq, long enough",
    )
    .await;
    let mut with_password = updated.clone();
    with_password["password"] = json!("1mz050nq, long enough");
    with_password["title"] = json!("Manager");
    let (status, _, body) = send!(
        &service,
        scim(
            &token,
            Method::PUT,
            &format!("/Users/{id}"),
            Some(with_password)
        )
    );
    assert_eq!(
        (status, body["title"].clone()),
        (StatusCode::OK, json!("Manager")),
        "{body}"
    );
    assert!(token_works!(&service, &session));
    // Deactivate (Okta never deletes): a path-less replace.
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "value": { "active": false } }])
        )
    );
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    assert!(!token_works!(&service, &session));
    let (_, _, body) = send!(&service, get(&token, &lookup));
    assert_eq!(body["Resources"][0]["active"], false, "{body}");
    // Reactivate.
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "value": { "active": true } }])
        )
    );
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    // A bad token: 401 with a SCIM error body.
    let (status, _, body) = send!(&service, get("cst_wrong", &lookup));
    refused(status, &body, StatusCode::UNAUTHORIZED, None);
    running.stop().await;
}

async fn entra_provisions_updates_disables_and_deletes_as_its_documentation_shows(
    db: TestDatabase,
) {
    let Setup {
        state,
        tenant,
        token,
        ..
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    // The test connection: a filter on a random GUID, 200 and empty.
    let probe = filtered(&format!(r#"userName eq "{}""#, uuid::Uuid::new_v4()));
    let (status, _, body) = send!(&service, get(&token, &probe));
    assert_eq!(
        (status, body["totalResults"].clone()),
        (StatusCode::OK, json!(0)),
        "{body}"
    );
    let user_name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com";
    let external = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef";
    let (status, _, body) = send!(
        &service,
        get(&token, &filtered(&format!(r#"userName eq "{user_name}""#)))
    );
    assert_eq!(
        (status, body["totalResults"].clone()),
        (StatusCode::OK, json!(0))
    );
    // Create, with the enterprise extension and `roles: []`.
    let (status, _, created) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": external,
                "userName": user_name,
                "active": true,
                "emails": [{ "primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com" }],
                "meta": { "resourceType": "User" },
                "name": { "formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName" },
                "roles": [],
                ENTERPRISE: { "employeeNumber": "1234", "department": "Sales" },
            }))
        )
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Found by externalId and by userName.
    for filter in [
        format!(r#"externalId eq "{external}""#),
        format!(r#"userName eq "{user_name}""#),
    ] {
        let (_, _, body) = send!(&service, get(&token, &filtered(&filter)));
        assert_eq!(body["Resources"][0]["id"], id, "{filter}: {body}");
    }
    // Capitalised operations, a value-filter path, a dotted path.
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([
                { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com" },
                { "op": "Replace", "path": "name.familyName", "value": "updatedFamilyName" },
                { "op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100" },
            ])
        )
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(body["emails"][0]["primary"], true);
    assert_eq!(body["name"]["familyName"], "updatedFamilyName");
    assert_eq!(
        body["phoneNumbers"],
        json!([{ "type": "mobile", "value": "+1 555 0100" }])
    );
    // Path-less replace whose keys are dotted and URN-qualified paths, and
    // a manager given as a bare id.
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([
                { "op": "Replace", "value": {
                    "name.givenName": "Ann",
                    "displayName": "Ann Updated",
                    format!("{ENTERPRISE}:department"): "Marketing",
                    format!("{USER}:title"): "Lead",
                } },
                { "op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "2819c223-7f76-453a-919d-413861904646" },
            ])
        )
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"]["givenName"], "Ann");
    assert_eq!(body["displayName"], "Ann Updated");
    assert_eq!(body["title"], "Lead");
    assert_eq!(body[ENTERPRISE]["department"], "Marketing");
    assert_eq!(body[ENTERPRISE]["employeeNumber"], "1234");
    assert_eq!(
        body[ENTERPRISE]["manager"]["value"],
        "2819c223-7f76-453a-919d-413861904646"
    );
    // Disable: `active` as the string "False".
    let (status, _, body) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "Replace", "path": "active", "value": "False" }])
        )
    );
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    let row = state.models.get("user", &id).await.unwrap().unwrap();
    assert_eq!(row.kind.as_deref(), Some("suspended"));
    // Delete: 204, then gone.
    let (status, _, _) = send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Users/{id}"), None)
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send!(&service, get(&token, &format!("/Users/{id}")));
    refused(status, &body, StatusCode::NOT_FOUND, None);
    let _ = tenant;
    running.stop().await;
}

/// The refusals `scim2 test` meets by design (docs/scim.md, "Conformance"):
/// each of its failures must carry one of these details.
const DOCUMENTED_REFUSALS: &[&str] = &[
    // Its users get random strings as userName; Custodia signs users in
    // by address.
    "userName must be an email address",
    // It removes `active`; a Custodia user always has a status.
    "active cannot be removed",
];

/// The independent suite (`scim2-cli`, PyPI) against a live server on a
/// port: every check it fails must fail for a documented reason, and the
/// ones it passes must be the bulk of it.
async fn the_scim2_conformance_suite_finds_nothing_but_the_documented_refusals(db: TestDatabase) {
    let Setup { state, token, .. } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let served = served::serve_on_a_port(&state).await;
    let url = format!("http://{}/scim/v2", served.address);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("scim2")
            .args(["--url", &url, "test"])
            .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
            .output()
            .expect("scim2 (pip install scim2-cli) runs")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = report.lines().collect();
    let mut passed = 0;
    let mut failed = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.starts_with("SUCCESS ") {
            passed += 1;
        } else if let Some(check) = line.strip_prefix("ERROR ") {
            let detail = lines.get(n + 1).copied().unwrap_or_default();
            if !DOCUMENTED_REFUSALS
                .iter()
                .any(|known| detail.contains(known))
            {
                failed.push(format!("{check}: {detail}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "scim2 test failed checks for no documented reason:\n{}\n\n{report}{}",
        failed.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(passed >= 25, "only {passed} checks passed:\n{report}");
    served.stop().await;
    running.stop().await;
}
