//! SCIM Groups against the whole server, both backends: groups of members
//! (ADR 0012) as Entra ID and Okta provision them, the access a group's
//! roles give (granted by the tenant's admins, never over SCIM), and the
//! refusals, each changing nothing.

use actix_web::http::{Method, StatusCode};
use actix_web::test::TestRequest;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

#[allow(dead_code)] // the socket helpers; this file uses `call!`
mod served;

#[macro_use]
#[allow(dead_code, unused_macros)] // shared by the SCIM test files
mod scim_client;

use scim_client::*;

backends!(
    entra_provisions_a_group_as_its_documentation_shows,
    okta_keeps_a_group_and_the_access_its_roles_give_follows_at_once,
    every_group_refusal_is_a_scim_error_and_changes_nothing,
    concurrent_changes_without_if_match_are_all_kept,
);

const ENTRA_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

/// The ids of a group's members, as answered.
fn members(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A request and the refusal it must get: method, path, body, status, scimType.
type Case = (
    Method,
    String,
    Option<Value>,
    StatusCode,
    Option<&'static str>,
);

fn patch(token: &str, id: &str, operations: Value) -> TestRequest {
    patch_at(token, &format!("/Groups/{id}"), operations)
}

async fn entra_provisions_a_group_as_its_documentation_shows(db: TestDatabase) {
    let Setup { state, token, .. } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let (u1, u2) = (
        provision!(&service, &token, "u1@example.org"),
        provision!(&service, &token, "u2@example.org"),
    );
    // Does the group exist? (Entra leaves the members out.)
    let lookup = query(
        "/Groups",
        r#"displayName eq "Group1DisplayName""#,
        "&excludedAttributes=members",
    );
    let (status, _, body) = send!(&service, get(&token, &lookup));
    assert_eq!(
        (status, body["totalResults"].clone()),
        (StatusCode::OK, json!(0))
    );
    // Created empty, with Microsoft's extra schema URI and an id of its
    // own choosing (the server's id is the one kept).
    let (status, headers, created) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Groups",
            Some(json!({
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "id": "c4b8f8b8-5b3a-4a09-b1a8-1b4cd1a4d2e0",
                "displayName": "Group1DisplayName",
                "members": [],
                "meta": { "resourceType": "Group" },
                "schemas": [GROUP, ENTRA_GROUP],
            }))
        )
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "c4b8f8b8-5b3a-4a09-b1a8-1b4cd1a4d2e0");
    assert_eq!(
        headers.get("location").unwrap().to_str().unwrap(),
        created["meta"]["location"]
    );
    assert_eq!(created["meta"]["version"], "W/\"1\"");
    assert_eq!(created["schemas"], json!([GROUP]));
    let (_, _, body) = send!(&service, get(&token, &lookup));
    assert_eq!(body["Resources"][0]["id"], id, "{body}");
    assert!(body["Resources"][0].get("members").is_none(), "{body}");
    let (_, _, body) = send!(
        &service,
        get(
            &token,
            &query(
                "/Groups",
                r#"externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159""#,
                ""
            )
        )
    );
    assert_eq!(body["totalResults"], 1, "{body}");

    // Members added with "$ref": null: 204.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "Add", "path": "members", "value": [
                { "$ref": null, "value": u1 }, { "$ref": null, "value": u2 }
            ] }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, group) = send!(&service, get(&token, &format!("/Groups/{id}")));
    let mut both = vec![u1.clone(), u2.clone()];
    both.sort();
    assert_eq!(members(&group), both);
    assert!(group["members"][0]["$ref"]
        .as_str()
        .unwrap()
        .contains("/scim/v2/Users/"));
    // Removed by a value array, and by a filtered path.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "Remove", "path": "members", "value": [{ "$ref": null, "value": u1 }] }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, group) = send!(&service, get(&token, &format!("/Groups/{id}")));
    assert_eq!(members(&group), vec![u2.clone()]);
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "Remove", "path": format!("members[value eq \"{u2}\"]") }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Renamed with a capitalised Replace.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName" }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, group) = send!(&service, get(&token, &format!("/Groups/{id}")));
    assert_eq!(
        group["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    assert_eq!(members(&group), Vec::<String>::new());
    assert_eq!(group["meta"]["version"], "W/\"5\"", "{group}");
    // Deleted: 204, then gone.
    let (status, _, _) = send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Groups/{id}"), None)
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send!(&service, get(&token, &format!("/Groups/{id}")));
    refused(status, &body, StatusCode::NOT_FOUND, None);
    running.stop().await;
}

async fn okta_keeps_a_group_and_the_access_its_roles_give_follows_at_once(db: TestDatabase) {
    let Setup {
        state,
        tenant,
        token,
        owner_token,
        ..
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let (u1, u2) = (
        provision!(&service, &token, "u1@example.org"),
        provision!(&service, &token, "u2@example.org"),
    );
    // Okta pushes a group with a member.
    let (status, _, created) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Groups",
            Some(json!({
                "schemas": [GROUP],
                "displayName": "Auditors",
                "members": [{ "value": u2, "display": "u2@example.org" }],
            }))
        )
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // The tenant's owner decides what the group grants (not SCIM).
    let body = graphql!(
        &service,
        &owner_token,
        format!(
            r#"mutation {{ grantRoleToGroup(groupId: "{id}", role: "auditor") {{ changed }} }}"#
        )
    );
    assert_eq!(body["data"]["grantRoleToGroup"]["changed"], true, "{body}");
    // Never a role that outlives membership (it could hand out access of
    // its own): owner and admin go to users, not to groups.
    for lasting in ["owner", "admin"] {
        let body = graphql!(
            &service,
            &owner_token,
            format!(
                r#"mutation {{ grantRoleToGroup(groupId: "{id}", role: "{lasting}") {{ changed }} }}"#
            )
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("outlives group membership")),
            "{body}"
        );
    }
    let body = graphql!(
        &service,
        &owner_token,
        "{ groups { edges { node { id name roles memberIds revision } } } }"
    );
    assert_eq!(
        body["data"]["groups"]["edges"][0]["node"]["roles"],
        json!(["auditor"]),
        "{body}"
    );
    // The SCIM token cannot: it opens nothing but /scim/v2.
    let (status, _, _) = send!(
        &service,
        TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {token}")))
            .set_json(json!({ "query": format!(r#"mutation {{ grantRoleToGroup(groupId: "{id}", role: "owner") {{ changed }} }}"#) }))
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let review = r#"{ accessReview { userId role groupId } }"#;
    let u1_token = sign_in(&state, tenant, "u1@example.org", PASSWORD).await;
    let body = graphql!(&service, &u1_token, review);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // Okta's membership change: remove by filter and add, in one PATCH.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([
                { "op": "remove", "path": format!("members[value eq \"{u2}\"]") },
                { "op": "add", "path": "members", "value": [{ "value": u1, "display": "u1@example.org" }] },
            ])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The same access token reads the access review now: u1 is an auditor
    // through the group, and the review says so.
    let body = graphql!(&service, &u1_token, review);
    let holdings = body["data"]["accessReview"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        holdings
            .iter()
            .any(|h| h["userId"] == u1 && h["role"] == "auditor" && h["groupId"] == id),
        "{body}"
    );
    assert!(!holdings.iter().any(|h| h["userId"] == u2), "{body}");
    let changes_query = r#"{ accessChanges(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { userId change role groupId } }"#;
    let body = graphql!(&service, &u1_token, changes_query);
    let seen = body["data"]["accessChanges"].to_string();
    for expected in [
        json!({ "userId": u2, "change": "GRANTED", "role": "auditor", "groupId": id }),
        json!({ "userId": u2, "change": "REVOKED", "role": "auditor", "groupId": id }),
        json!({ "userId": u1, "change": "GRANTED", "role": "auditor", "groupId": id }),
    ] {
        assert!(
            seen.contains(&expected.to_string()),
            "{expected} not in {seen}"
        );
    }

    // Renamed as Okta does: a path-less replace carrying the id.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "replace", "value": { "id": id, "displayName": "Auditors EU" } }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, body) = send!(
        &service,
        get(
            &token,
            &query(
                "/Groups",
                r#"displayName eq "auditors eu""#,
                "&startIndex=1&count=100"
            )
        )
    );
    assert_eq!(body["Resources"][0]["id"], id, "{body}");
    assert_eq!(members(&body["Resources"][0]), vec![u1.clone()]);

    // Out of the group: the access ends at once, on the same token.
    let (status, _, _) = send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "remove", "path": format!("members[value eq \"{u1}\"]") }])
        )
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = graphql!(&service, &u1_token, review);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // The token deprovisions an ordinary member (a role granted in
    // Custodia, holding nothing the token lacks).
    let body = graphql!(
        &service,
        &owner_token,
        format!(r#"mutation {{ grantRole(userId: "{u1}", role: "member") {{ changed }} }}"#)
    );
    assert_eq!(body["data"]["grantRole"]["changed"], true, "{body}");
    let (status, _, body) = send!(
        &service,
        patch_at(
            &token,
            &format!("/Users/{u1}"),
            json!([{ "op": "replace", "path": "active", "value": false }])
        )
    );
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    // A deleted user leaves every group.
    send!(
        &service,
        patch(
            &token,
            &id,
            json!([{ "op": "add", "path": "members", "value": [{ "value": u2 }] }])
        )
    );
    let (status, _, _) = send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Users/{u2}"), None)
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, group) = send!(&service, get(&token, &format!("/Groups/{id}")));
    assert_eq!(members(&group), Vec::<String>::new());
    running.stop().await;
}

async fn every_group_refusal_is_a_scim_error_and_changes_nothing(db: TestDatabase) {
    let Setup {
        state,
        tenant,
        token,
        ..
    } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let u1 = provision!(&service, &token, "u1@example.org");
    let gone = provision!(&service, &token, "gone@example.org");
    send!(
        &service,
        scim(&token, Method::DELETE, &format!("/Users/{gone}"), None)
    );
    let (_, _, group) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Groups",
            Some(
                json!({ "schemas": [GROUP], "displayName": "Sales", "members": [{ "value": u1 }] })
            )
        )
    );
    let id = group["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{id}");
    // Another tenant, with a group and a user of its own.
    let other = setup(&db).await;
    let other_service =
        actix_web::test::init_service(custodia::http::app(other.state.clone())).await;
    let stranger = provision!(&other_service, &other.token, "eve@example.org");
    let (_, _, theirs) = send!(
        &other_service,
        scim(
            &other.token,
            Method::POST,
            "/Groups",
            Some(json!({ "schemas": [GROUP], "displayName": "Theirs" }))
        )
    );
    let theirs = format!("/Groups/{}", theirs["id"].as_str().unwrap());

    let group_with = |extra: Value| {
        let mut group = json!({ "schemas": [GROUP], "displayName": "New" });
        for (k, v) in extra.as_object().unwrap() {
            group[k] = v.clone();
        }
        Some(group)
    };
    let ops = |operations: Value| Some(json!({ "schemas": [PATCH], "Operations": operations }));
    let before = changes(&state, tenant).await;
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/Groups".into(),
            Some(json!({ "displayName": "x" })),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            Some(json!({ "schemas": [GROUP] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "displayName": "ann@example.org" })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "owner": "x" })),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "members": [{ "value": "not-an-id" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "members": [{ "value": uuid::Uuid::now_v7() }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "members": [{ "value": stranger }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "members": [{ "value": gone }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups".into(),
            group_with(json!({ "members": [{ "value": id, "type": "Group" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::GET,
            theirs.clone(),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::PUT,
            theirs.clone(),
            group_with(json!({})),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::PATCH,
            theirs.clone(),
            ops(json!([{ "op": "replace", "path": "displayName", "value": "Mine" }])),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::DELETE,
            theirs.clone(),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::PATCH,
            path.clone(),
            ops(json!([{ "op": "add", "path": "members", "value": [{ "value": stranger }] }])),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::PATCH,
            path.clone(),
            ops(json!([{ "op": "replace", "path": "members[value", "value": [] }])),
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
        ),
        (
            Method::PATCH,
            path.clone(),
            ops(json!([{ "op": "replace", "path": "owner", "value": "x" }])),
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
        ),
        (
            Method::PATCH,
            path.clone(),
            ops(json!([{ "op": "replace", "value": { "id": uuid::Uuid::now_v7() } }])),
            StatusCode::BAD_REQUEST,
            Some("mutability"),
        ),
        (
            Method::PATCH,
            path.clone(),
            ops(json!([{ "op": "remove", "path": "displayName" }])),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        // A valid rename beside a member who is not one: neither is written.
        (
            Method::PATCH,
            path.clone(),
            ops(json!([
                { "op": "replace", "path": "displayName", "value": "Renamed" },
                { "op": "add", "path": "members", "value": [{ "value": gone }] },
            ])),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
    ];
    for (n, (method, path, body, expected, scim_type)) in cases.into_iter().enumerate() {
        let (status, _, answer) = send!(&service, scim(&token, method, &path, body));
        refused(status, &answer, expected, scim_type);
        assert_eq!(changes(&state, tenant).await, before, "case {n} wrote");
    }
    for (method, body) in [
        (Method::PUT, group_with(json!({}))),
        (
            Method::PATCH,
            ops(json!([{ "op": "replace", "path": "displayName", "value": "x" }])),
        ),
        (Method::DELETE, None),
    ] {
        let (status, _, answer) = send!(
            &service,
            scim(&token, method, &path, body).insert_header(("if-match", "W/\"7\""))
        );
        refused(status, &answer, StatusCode::PRECONDITION_FAILED, None);
    }
    assert_eq!(changes(&state, tenant).await, before);
    let (_, _, now) = send!(&service, get(&token, &path));
    assert_eq!(now["displayName"], "Sales");
    assert_eq!(members(&now), [u1]);
    running.stop().await;
}

/// Twelve attributes of one user, each changed by its own request.
const ATTRIBUTES: [(&str, &str); 12] = [
    ("title", "Lead"),
    ("nickName", "Em"),
    ("locale", "fr-FR"),
    ("userType", "Employee"),
    ("preferredLanguage", "fr"),
    ("timezone", "Europe/Paris"),
    ("profileUrl", "https://example.org/em"),
    ("displayName", "Em M"),
    ("name.givenName", "Emma"),
    ("name.familyName", "Martin"),
    ("name.middleName", "Jo"),
    ("name.honorificPrefix", "Dr"),
];

/// Providers send member changes to one group in parallel, and never an
/// `If-Match`: each is applied to the group as it is when it commits, so
/// none is lost and none is refused. The same holds for a user's attributes.
async fn concurrent_changes_without_if_match_are_all_kept(db: TestDatabase) {
    let Setup { state, token, .. } = setup(&db).await;
    let running = state.projections.start(state.ports.store.clone());
    let service = actix_web::test::init_service(custodia::http::app(state.clone())).await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(provision!(&service, &token, format!("m{n}@example.org")));
    }
    let (_, _, group) = send!(
        &service,
        scim(
            &token,
            Method::POST,
            "/Groups",
            Some(json!({ "schemas": [GROUP], "displayName": "Everyone" }))
        )
    );
    let id = group["id"].as_str().unwrap().to_owned();
    // Real parallel requests, over sockets, from threads.
    let served = served::serve_on_a_port(&state).await;
    let user = users[0].clone();
    let statuses = served::python(
        r#"
import http.client, json, sys, threading
address, token, group, user = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
members = sys.argv[5].split(",")
host, port = address.rsplit(":", 1)
statuses, lock = [], threading.Lock()
def send(path, operations):
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
    connection.request("PATCH", "/scim/v2" + path, body, {"authorization": "Bearer " + token, "content-type": "application/scim+json"})
    status = connection.getresponse().status
    with lock:
        statuses.append(status)
jobs = [("/Groups/" + group, [{"op": "Add", "path": "members", "value": [{"value": m}]}]) for m in members]
jobs += [("/Users/" + user, [{"op": "replace", "path": p, "value": v}]) for p, v in json.loads(sys.argv[6])]
barrier = threading.Barrier(len(jobs))
def run(job):
    barrier.wait()
    send(*job)
threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(sorted(statuses)))
"#,
        [
            served.address.to_string(),
            token.clone(),
            id.clone(),
            user.clone(),
            users.join(","),
            json!(ATTRIBUTES).to_string(),
        ],
    )
    .await;
    let mut expected_statuses = vec![json!(204); 8];
    expected_statuses.extend(vec![json!(200); ATTRIBUTES.len()]);
    expected_statuses.sort_by_key(|s| s.as_u64());
    assert_eq!(statuses, json!(expected_statuses));
    served.stop().await;
    caught_up(&state).await;
    let (_, _, group) = send!(&service, get(&token, &format!("/Groups/{id}")));
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(members(&group), expected);
    let (_, _, now) = send!(&service, get(&token, &format!("/Users/{user}")));
    for (attribute, value) in ATTRIBUTES {
        let found = match attribute.split_once('.') {
            Some((top, sub)) => &now[top][sub],
            None => &now[attribute],
        };
        assert_eq!(found, value, "{now}");
    }
    running.stop().await;
}
