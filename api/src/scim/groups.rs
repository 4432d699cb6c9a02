//! SCIM Groups: a tenant's groups of members (ADR 0012) as RFC 7643
//! resources. Every change is one command on the tenant's memberships, so a
//! rename and its member changes commit together or not at all. A group's
//! name and external id are plaintext in the log, guarded against personal
//! data; what a group grants is set by the tenant's admins, never here.

use std::collections::BTreeSet;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use custodia_application::commands::tenants::change_memberships;
use custodia_application::commands::CommandError;
use custodia_application::RowQuery;
use custodia_domain::identity::group::{GroupExternalId, GroupName};
use custodia_domain::identity::membership::{MembershipCommand, MembershipError};
use custodia_domain::identity::user::UserError;
use custodia_domain::rbac::Permission;
use custodia_domain::TenantId;
use custodia_projections::documents::{self, GroupDoc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::filter::{self, Schemas};
use super::patch::{self, Form, Shape};
use super::{
    answer_with, authenticate, command_error, if_match, list_response, read_json, Client,
    ListParams, ScimError, GROUP_SCHEMA,
};
use crate::http::AppState;

/// A filter is evaluated on every group of the tenant: refused (`tooMany`)
/// above this many groups.
pub const SCAN_LIMIT: u64 = 1_000;
/// At most this many members in a group.
pub const MAX_MEMBERS: usize = 10_000;
/// A list page holds groups until their members add up to this many (at
/// least one group): a client pages on by `itemsPerPage`, as RFC 7644
/// lets a service provider answer fewer than asked.
pub const MEMBERS_PER_PAGE: usize = 20_000;

pub const SCHEMAS: Schemas<'static> = Schemas {
    core: GROUP_SCHEMA,
    extensions: &[],
};

pub struct GroupShape;

impl Shape for GroupShape {
    fn attribute(&self, schema: Option<&str>, name: &str) -> Option<(&'static str, Form)> {
        if schema.is_some_and(|s| !s.eq_ignore_ascii_case(GROUP_SCHEMA)) {
            return None;
        }
        [
            ("displayName", Form::Simple),
            ("externalId", Form::Simple),
            ("members", Form::MultiValued),
            ("id", Form::Simple),
            ("meta", Form::Complex),
            ("schemas", Form::MultiValued),
        ]
        .into_iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
    }

    fn extension(&self, _: &str) -> Option<&'static str> {
        None
    }

    fn schemas(&self) -> Schemas<'_> {
        SCHEMAS
    }
}

/// A group as a request states it.
struct Incoming {
    name: GroupName,
    external_id: Option<GroupExternalId>,
    members: BTreeSet<Uuid>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::typed(StatusCode::BAD_REQUEST, "invalidValue", detail)
}

/// Reads a Group resource (a POST or PUT body, or a patched resource).
fn incoming(body: &Value, id: Option<Uuid>) -> Result<Incoming, ScimError> {
    let syntax =
        |detail: String| ScimError::typed(StatusCode::BAD_REQUEST, "invalidSyntax", detail);
    let Value::Object(members) = body else {
        return Err(syntax("the body must be a JSON object".into()));
    };
    // Other schema URIs beside the core one (Entra adds its own) are let be.
    let schemas = filter::get(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(GROUP_SCHEMA))) {
        return Err(syntax(format!("schemas must hold {GROUP_SCHEMA}")));
    }
    let (mut name, mut external_id, mut list) = (None, None, BTreeSet::new());
    for (key, value) in members {
        let Some((known, _)) = GroupShape.attribute(None, key) else {
            let shown: String = key
                .chars()
                .filter(char::is_ascii_graphic)
                .take(80)
                .collect();
            return Err(syntax(format!("{shown} is not a known attribute")));
        };
        match (known, value) {
            ("schemas" | "meta", _) => {}
            ("id", value) => {
                let same = value.as_str().and_then(|v| Uuid::parse_str(v).ok());
                if id.is_some() && same != id {
                    return Err(ScimError::typed(
                        StatusCode::BAD_REQUEST,
                        "mutability",
                        "id cannot be changed",
                    ));
                }
            }
            ("displayName", Value::String(text)) => {
                name = Some(GroupName::parse(text).map_err(|e| invalid(e.to_string()))?)
            }
            ("externalId", Value::Null) => external_id = None,
            ("externalId", Value::String(text)) if text.is_empty() => external_id = None,
            ("externalId", Value::String(text)) => {
                external_id =
                    Some(GroupExternalId::parse(text).map_err(|e| invalid(e.to_string()))?)
            }
            ("members", Value::Null) => {}
            ("members", Value::Array(items)) => {
                if items.len() > MAX_MEMBERS {
                    return Err(invalid(format!(
                        "at most {MAX_MEMBERS} members in one request"
                    )));
                }
                for item in items {
                    let kind = filter::get(item, "type").and_then(Value::as_str);
                    if kind.is_some_and(|k| !k.eq_ignore_ascii_case("User")) {
                        return Err(invalid("members are users; groups do not nest"));
                    }
                    let member = filter::get(item, "value")
                        .and_then(Value::as_str)
                        .and_then(|v| Uuid::parse_str(v).ok())
                        .ok_or_else(|| invalid("each member's value must be a user's id"))?;
                    list.insert(member);
                }
            }
            (known, _) => return Err(invalid(format!("{known} has the wrong type"))),
        }
    }
    Ok(Incoming {
        name: name.ok_or_else(|| invalid("displayName is required"))?,
        external_id,
        members: list,
    })
}

/// A group as stored now.
struct Stored {
    id: Uuid,
    doc: GroupDoc,
}

impl Stored {
    fn resource(&self, base: &str) -> Value {
        let mut resource = Map::new();
        resource.insert("schemas".into(), json!([GROUP_SCHEMA]));
        resource.insert("id".into(), json!(self.id.to_string()));
        if let Some(external) = &self.doc.external_id {
            resource.insert("externalId".into(), json!(external));
        }
        resource.insert("displayName".into(), json!(self.doc.name));
        let members: Vec<Value> = self
            .doc
            .members
            .iter()
            .map(|m| json!({ "value": m.to_string(), "$ref": format!("{base}/Users/{m}"), "type": "User" }))
            .collect();
        resource.insert("members".into(), Value::Array(members));
        let time = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        resource.insert(
            "meta".into(),
            json!({
                "resourceType": "Group",
                "created": time(self.doc.created_at),
                "lastModified": time(self.doc.stamp.updated_at),
                "location": format!("{base}/Groups/{}", self.id),
                "version": super::users::etag(self.doc.stamp.version),
            }),
        );
        Value::Object(resource)
    }
}

fn not_found() -> ScimError {
    ScimError::new(StatusCode::NOT_FOUND, "no such group")
}

fn group_id(path: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(path).map_err(|_| not_found())
}

async fn stored(state: &AppState, tenant: TenantId, id: Uuid) -> Result<Option<Stored>, ScimError> {
    let row = state
        .models
        .get("group", &id.to_string())
        .await
        .map_err(|e| command_error(e.into()))?;
    let Some(row) = row.filter(|r| r.tenant == Some(tenant.as_uuid())) else {
        return Ok(None);
    };
    let doc =
        documents::read(&row).map_err(|_| ScimError::internal("a group row is unreadable"))?;
    Ok(Some(Stored { id, doc }))
}

/// A command's refusal, as it concerns a group.
fn refused(error: CommandError) -> ScimError {
    use CommandError as E;
    match error {
        E::Membership(MembershipError::UnknownGroup) => not_found(),
        E::Membership(MembershipError::GroupExists) => ScimError::typed(
            StatusCode::CONFLICT,
            "uniqueness",
            "a group with this id exists",
        ),
        E::Membership(MembershipError::StaleGroup { .. }) => ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "the group changed since that version (If-Match)",
        ),
        E::NotFound(_) | E::User(UserError::NotFound | UserError::Deleted | UserError::Erased) => {
            invalid("a member is not a user of this tenant")
        }
        other => command_error(other),
    }
}

/// Runs one memberships command for the request, then waits until the
/// read models hold it.
async fn run(
    state: &AppState,
    client: &Client,
    origin: &str,
    command: MembershipCommand,
) -> Result<(), ScimError> {
    let caller = client.caller(origin, None);
    let outcome = change_memberships(&state.ports, &caller, client.tenant, command)
        .await
        .map_err(refused)?;
    if let Some(appended) = outcome.appended {
        state
            .projections
            .wait_for(appended.cursor)
            .await
            .map_err(|e| command_error(e.into()))?;
    }
    Ok(())
}

fn respond(
    status: StatusCode,
    group: &Stored,
    base: &str,
    params: Option<&ListParams>,
) -> HttpResponse {
    let mut resource = group.resource(base);
    if let Some(params) = params {
        params.project(&mut resource, &SCHEMAS);
    }
    let mut response = answer_with(status, &resource);
    let etag = super::users::etag(group.doc.stamp.version);
    if let Ok(value) = header::HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if status == StatusCode::CREATED {
        if let Ok(value) = header::HeaderValue::from_str(&format!("{base}/Groups/{}", group.id)) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    response
}

pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let wanted = incoming(&read_json(&body)?, None)?;
    let id = Uuid::now_v7();
    let command = MembershipCommand::CreateGroup {
        group: id,
        name: wanted.name,
        external_id: wanted.external_id,
        members: wanted.members,
    };
    run(&state, &client, &format!("scim POST /Groups/{id}"), command).await?;
    let group = stored(&state, client.tenant, id)
        .await?
        .ok_or_else(|| ScimError::internal("a created group could not be read back"))?;
    Ok(respond(StatusCode::CREATED, &group, &client.base, None))
}

pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    client.require(Permission::RoleRead)?;
    let params = ListParams::from_query(&query)?;
    let group = stored(&state, client.tenant, group_id(&path)?)
        .await?
        .ok_or_else(not_found)?;
    Ok(respond(StatusCode::OK, &group, &client.base, Some(&params)))
}

/// The group and the revision `If-Match` names, checked against it.
async fn current(
    state: &AppState,
    client: &Client,
    request: &HttpRequest,
    id: Uuid,
) -> Result<(Stored, Option<u64>), ScimError> {
    let group = stored(state, client.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let expected = if_match(request)?.map(|v| v.0);
    if expected.is_some_and(|e| e != group.doc.stamp.version) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "the group changed since that version (If-Match)",
        ));
    }
    Ok((group, expected))
}

/// Makes the group what `wanted` says, in one command.
async fn change(
    state: &AppState,
    client: &Client,
    origin: &str,
    group: &Stored,
    revision: Option<u64>,
    wanted: Incoming,
) -> Result<(), ScimError> {
    if wanted.members.len() > MAX_MEMBERS {
        return Err(invalid(format!(
            "a group has at most {MAX_MEMBERS} members"
        )));
    }
    let now: BTreeSet<Uuid> = group.doc.members.iter().copied().collect();
    let command = MembershipCommand::ChangeGroup {
        group: group.id,
        name: wanted.name,
        external_id: wanted.external_id,
        add: wanted.members.difference(&now).copied().collect(),
        remove: now.difference(&wanted.members).copied().collect(),
        // The revision read: a change in between is refused, not lost.
        revision,
    };
    run(state, client, origin, command).await
}

pub async fn replace(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let id = group_id(&path)?;
    let body = read_json(&body)?;
    retried(&state, &client, &request, id, "PUT", |_| {
        incoming(&body, Some(id))
    })
    .await?;
    let group = stored(&state, client.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(respond(StatusCode::OK, &group, &client.base, None))
}

/// Reads the group, makes what `wanted` asks of it, and writes it at the
/// revision read. Without `If-Match`, a change by someone else in between
/// is not a refusal: the request is applied again to the group as it is
/// now (a few times), so concurrent member changes are all kept.
async fn retried(
    state: &AppState,
    client: &Client,
    request: &HttpRequest,
    id: Uuid,
    method: &str,
    wanted: impl Fn(&Stored) -> Result<Incoming, ScimError>,
) -> Result<(), ScimError> {
    let origin = format!("scim {method} /Groups/{id}");
    for attempt in 0.. {
        let (group, asked) = current(state, client, request, id).await?;
        let wanted = wanted(&group)?;
        match change(state, client, &origin, &group, asked, wanted).await {
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED && asked.is_none() => {
                if attempt == super::RETRIES {
                    return Err(super::too_busy());
                }
                super::catch_up(state).await?;
                super::pause(attempt).await;
            }
            answer => return answer,
        }
    }
    unreachable!("the loop returns")
}

/// PATCH: applied to the group's resource, checked as a whole, written as
/// one command; answered 204 (as Entra ID and Okta expect).
pub async fn modify(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let id = group_id(&path)?;
    let operations = patch::operations(&read_json(&body)?).map_err(ScimError::from)?;
    retried(&state, &client, &request, id, "PATCH", |group| {
        let mut resource = group.resource(&client.base);
        patch::apply(&mut resource, &operations, &GroupShape).map_err(ScimError::from)?;
        incoming(&resource, Some(id))
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let id = group_id(&path)?;
    let (group, revision) = current(&state, &client, &request, id).await?;
    let command = MembershipCommand::DeleteGroup {
        group: group.id,
        revision,
    };
    run(
        &state,
        &client,
        &format!("scim DELETE /Groups/{id}"),
        command,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let params = ListParams::from_query(&query)?;
    let (total, resources) = search(&state, &client, &params).await?;
    Ok(list_response(total, params.start_index, resources))
}

pub async fn search_post(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let params = ListParams::from_search(&read_json(&body)?)?;
    let (total, resources) = search(&state, &client, &params).await?;
    Ok(list_response(total, params.start_index, resources))
}

/// One page of the resources `params` selects, and how many it selects.
pub async fn search(
    state: &AppState,
    client: &Client,
    params: &ListParams,
) -> Result<(u64, Vec<Value>), ScimError> {
    client.require(Permission::RoleRead)?;
    let store = |e: custodia_application::event_store::StoreError| command_error(e.into());
    let query = RowQuery {
        model: "group",
        tenant: Some(client.tenant.as_uuid()),
        ..RowQuery::default()
    };
    let (total, page) = match &params.filter {
        None => {
            let total = state.models.count(&query).await.map_err(store)?;
            let rows = state
                .models
                .list(&RowQuery {
                    offset: params.start_index - 1,
                    limit: params.count,
                    ..query
                })
                .await
                .map_err(store)?;
            (total, rows)
        }
        Some(filter) => {
            // An exact externalId is an index look-up; the rest is read whole.
            let query = match filter.required_equal("externalId") {
                Some(external) => RowQuery {
                    lookup: Some(external.to_owned()),
                    ..query
                },
                None => query,
            };
            if state.models.count(&query).await.map_err(store)? > SCAN_LIMIT {
                return Err(ScimError::typed(
                    StatusCode::BAD_REQUEST,
                    "tooMany",
                    format!("the tenant has more than {SCAN_LIMIT} groups: filter on externalId with eq"),
                ));
            }
            let rows = custodia_application::read_models::list_all(&*state.models, query)
                .await
                .map_err(store)?;
            let mut matched = Vec::new();
            for row in rows {
                let Ok(id) = Uuid::parse_str(&row.id) else {
                    continue;
                };
                let doc = documents::read(&row)
                    .map_err(|_| ScimError::internal("a group row is unreadable"))?;
                if filter.matches(&Stored { id, doc }.resource(&client.base), &SCHEMAS) {
                    matched.push(row);
                }
            }
            let total = matched.len() as u64;
            let page = matched
                .into_iter()
                .skip(params.start_index - 1)
                .take(params.count)
                .collect();
            (total, page)
        }
    };
    let mut resources = Vec::with_capacity(page.len());
    let mut members = 0;
    for row in page {
        let Ok(id) = Uuid::parse_str(&row.id) else {
            continue;
        };
        let doc =
            documents::read(&row).map_err(|_| ScimError::internal("a group row is unreadable"))?;
        let mut resource = Stored { id, doc }.resource(&client.base);
        params.project(&mut resource, &SCHEMAS);
        members += resource["members"].as_array().map_or(0, Vec::len);
        if members > MEMBERS_PER_PAGE && !resources.is_empty() {
            break;
        }
        resources.push(resource);
    }
    Ok((total, resources))
}
