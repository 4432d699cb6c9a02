//! SCIM 2.0 (RFC 7643, RFC 7644) under `/scim/v2`, for identity providers
//! that provision a tenant's users (ADR 0012, docs/scim.md).
//!
//! Authentication is by SCIM token (a key made for SCIM only, refused
//! everywhere else; a general API key or an access token is refused here);
//! every refusal is a SCIM error body; the discovery endpoints
//! (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`) advertise only
//! what is supported, from the same tables the requests are read with.
//! `Users` is in [`users`], `Groups` in [`groups`]; [`filter`] and
//! [`patch`] serve both.

mod filter;
mod groups;
mod patch;
mod users;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use custodia_application::commands::api_keys::identify_scim_token;
use custodia_application::commands::{Caller, CommandError};
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::{Actor, CommandId, Origin, StreamVersion, TenantId, Timestamp};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::http::AppState;
use filter::{AttrPath, Filter, Schemas};
use patch::Form;

/// The media type of every SCIM body.
pub const CONTENT_TYPE: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A refusal as SCIM states it (RFC 7644 §3.12): the status (also in the
/// body, as a string), an optional `scimType`, and a detail that names no
/// personal data.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A refusal with a `scimType` (RFC 7644 Table 9).
    pub fn typed(status: StatusCode, scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            scim_type: Some(scim_type),
            ..Self::new(status, detail)
        }
    }

    /// A failure of the server's own: logged, answered without detail.
    pub fn internal(cause: &str) -> Self {
        tracing::error!(cause, "scim: request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<patch::PatchError> for ScimError {
    fn from(error: patch::PatchError) -> Self {
        Self::typed(StatusCode::BAD_REQUEST, error.scim_type, error.detail)
    }
}

/// A command's refusal as SCIM states it. Messages name no personal data
/// (the command errors never carry any).
pub fn command_error(error: CommandError) -> ScimError {
    use custodia_domain::identity::user::UserError;
    use CommandError as E;
    match error {
        E::Forbidden(denied) => ScimError::new(StatusCode::FORBIDDEN, denied.to_string()),
        E::Invalid(invalid) => {
            ScimError::typed(StatusCode::BAD_REQUEST, "invalidValue", invalid.to_string())
        }
        E::NotFound(_) | E::User(UserError::NotFound | UserError::Deleted | UserError::Erased) => {
            ScimError::new(StatusCode::NOT_FOUND, "no such user")
        }
        E::EmailTaken => ScimError::typed(
            StatusCode::CONFLICT,
            "uniqueness",
            "userName is already used in this tenant",
        ),
        E::StaleVersion { .. } => ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "the resource changed since that version (If-Match)",
        ),
        E::TenantSuspended => ScimError::new(StatusCode::FORBIDDEN, error.to_string()),
        E::Contended | E::Busy => ScimError {
            retry_after: Some(1),
            ..ScimError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        },
        E::LinkLimit => ScimError {
            retry_after: Some(600),
            ..ScimError::new(StatusCode::TOO_MANY_REQUESTS, error.to_string())
        },
        E::Conflict(_)
        | E::Tenant(_)
        | E::User(_)
        | E::Membership(_)
        | E::Credential(_)
        | E::Session(_)
        | E::ApiKey(_)
        | E::AccessData(_) => ScimError::new(StatusCode::CONFLICT, error.to_string()),
        E::Vault(_) | E::Schema(_) | E::Store(_) => ScimError::internal(&error.to_string()),
    }
}

/// The SCIM client behind a request: its token's tenant and principal.
pub struct Client {
    pub tenant: TenantId,
    key: Uuid,
    principal: Principal,
    correlation: Uuid,
    /// This service provider's address (`http://host/scim/v2`), for
    /// `meta.location`.
    pub base: String,
}

impl Client {
    /// A caller for one command of the request (each its own command id).
    pub fn caller(&self, origin: &str, expected: Option<StreamVersion>) -> Caller {
        let origin: String = origin.chars().take(128).collect();
        Caller {
            principal: self.principal.clone(),
            actor: Actor::Service(self.key),
            command_id: CommandId::generate(),
            correlation_id: self.correlation,
            origin: Origin::parse(origin)
                .unwrap_or_else(|_| Origin::parse("scim").expect("a valid origin")),
            expected_version: expected,
            session: None,
        }
    }

    /// Refuses a request the token may not make.
    pub fn require(&self, permission: Permission) -> Result<(), ScimError> {
        self.principal
            .authorize(self.tenant, permission, None)
            .map_err(|denied| ScimError::new(StatusCode::FORBIDDEN, denied.to_string()))
    }
}

/// How often a request without `If-Match` is applied again after a
/// concurrent change before the client is asked to retry.
pub const RETRIES: u32 = 12;

/// What a client that sent no precondition hears when others kept changing
/// the same resource: retry shortly (not a 412: it asked for nothing).
pub fn too_busy() -> ScimError {
    ScimError {
        retry_after: Some(1),
        ..ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the resource is being changed by other requests; try again",
        )
    }
}

/// A short, growing, jittered pause between attempts, so that requests
/// racing for one resource do not race again in step.
pub async fn pause(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let ceiling = 2_000 * u64::from(attempt + 1);
    tokio::time::sleep(std::time::Duration::from_micros(u64::from(nanos) % ceiling)).await;
}

/// Waits until the read models hold everything in the log now: before a
/// request is applied again to what someone else just changed.
pub async fn catch_up(state: &AppState) -> Result<(), ScimError> {
    let head = state
        .ports
        .store
        .head()
        .await
        .map_err(|e| command_error(e.into()))?;
    state
        .projections
        .wait_for(head)
        .await
        .map_err(|e| command_error(e.into()))?;
    Ok(())
}

/// A request body as JSON, or `invalidSyntax`.
pub fn read_json(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|e| {
        ScimError::typed(
            StatusCode::BAD_REQUEST,
            "invalidSyntax",
            format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The version `If-Match` names (`W/"3"` or `"3"`); `None` for none or `*`.
pub fn if_match(request: &HttpRequest) -> Result<Option<StreamVersion>, ScimError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| Some(StreamVersion(v)))
        .ok_or_else(|| {
            ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                "If-Match names no version of this resource",
            )
        })
}

/// The most resources one list answers (a larger `count` is lowered to it).
pub const MAX_RESULTS: usize = 200;

/// A list request's parameters (query string or `.search` body).
#[derive(Clone)]
pub struct ListParams {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl ListParams {
    fn new(
        filter: Option<&str>,
        start_index: Option<i64>,
        count: Option<i64>,
        attributes: Vec<String>,
        excluded: Vec<String>,
    ) -> Result<Self, ScimError> {
        let filter = filter
            .map(|f| {
                filter::parse(f)
                    .map_err(|e| ScimError::typed(StatusCode::BAD_REQUEST, "invalidFilter", e.0))
            })
            .transpose()?;
        let list = |paths: &[String]| {
            paths
                .iter()
                .all(|p| p.len() <= 200 && (p.starts_with("urn:") || filter::attr_path(p).is_ok()))
        };
        if attributes.len() + excluded.len() > 100 || !list(&attributes) || !list(&excluded) {
            return Err(ScimError::typed(
                StatusCode::BAD_REQUEST,
                "invalidValue",
                "attributes and excludedAttributes must list attribute paths",
            ));
        }
        Ok(Self {
            filter,
            // RFC 7644 §3.4.2.4: below 1 means 1, a negative count 0.
            start_index: usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(usize::MAX / 2),
            count: usize::try_from(count.unwrap_or(100).clamp(0, MAX_RESULTS as i64)).unwrap_or(0),
            attributes,
            excluded,
        })
    }

    /// From a query string (parameter names are case-insensitive).
    pub fn from_query(query: &[(String, String)]) -> Result<Self, ScimError> {
        let get = |name: &str| {
            query
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let number = |name: &str| {
            get(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ScimError::typed(
                            StatusCode::BAD_REQUEST,
                            "invalidValue",
                            format!("{name} must be an integer"),
                        )
                    })
                })
                .transpose()
        };
        let paths = |name: &str| {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        Self::new(
            get("filter"),
            number("startIndex")?,
            number("count")?,
            paths("attributes"),
            paths("excludedAttributes"),
        )
    }

    /// From a `POST …/.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> Result<Self, ScimError> {
        let search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
        let schemas = filter::get(body, "schemas").and_then(Value::as_array);
        let bad = |detail: &str| {
            ScimError::typed(StatusCode::BAD_REQUEST, "invalidSyntax", detail.to_owned())
        };
        if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(search))) {
            return Err(bad("schemas must hold the SearchRequest schema"));
        }
        let number = |name: &str| match filter::get(body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad("startIndex and count must be integers")),
        };
        let paths = |name: &str| -> Result<Vec<String>, ScimError> {
            match filter::get(body, name) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("attributes must be strings"))
                    })
                    .collect(),
                Some(_) => Err(bad("attributes must be an array of strings")),
            }
        };
        let filter = match filter::get(body, "filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => Some(f.as_str()),
            Some(_) => return Err(bad("filter must be a string")),
        };
        Self::new(
            filter,
            number("startIndex")?,
            number("count")?,
            paths("attributes")?,
            paths("excludedAttributes")?,
        )
    }

    /// Keeps what `attributes` asks for (and `id`, `schemas`), then drops
    /// what `excludedAttributes` names (never `id` or `schemas`).
    pub fn project(&self, resource: &mut Value, schemas: &Schemas) {
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for always in ["schemas", "id"] {
                if let Some(value) = resource.get(always) {
                    kept.insert(always.to_owned(), value.clone());
                }
            }
            for path in self.attributes.iter().filter_map(|p| json_path(p, schemas)) {
                keep(resource, &mut kept, &path);
            }
            *resource = Value::Object(kept);
        }
        for path in self.excluded.iter().filter_map(|p| json_path(p, schemas)) {
            if !matches!(path.as_slice(), [one] if one == "id" || one == "schemas") {
                remove(resource, &path);
            }
        }
    }
}

/// An attribute path as the keys it names in a resource's JSON.
fn json_path(text: &str, schemas: &Schemas) -> Option<Vec<String>> {
    if let Some(extension) = schemas
        .extensions
        .iter()
        .find(|e| e.eq_ignore_ascii_case(text))
    {
        return Some(vec![(*extension).to_owned()]);
    }
    let AttrPath { schema, name, sub } = filter::attr_path(text).ok()?;
    let mut keys = Vec::with_capacity(3);
    if let Some(schema) = schema.filter(|s| !s.eq_ignore_ascii_case(schemas.core)) {
        let extension = schemas
            .extensions
            .iter()
            .find(|e| e.eq_ignore_ascii_case(&schema))?;
        keys.push((*extension).to_owned());
    }
    keys.push(name);
    keys.extend(sub);
    Some(keys)
}

fn keep(source: &Value, target: &mut Map<String, Value>, path: &[String]) {
    let Some((key, value)) = source
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(&path[0])))
    else {
        return;
    };
    if path.len() == 1 {
        target.insert(key.clone(), value.clone());
        return;
    }
    match value {
        Value::Object(_) => {
            let entry = target.entry(key.clone()).or_insert_with(|| json!({}));
            if let Some(object) = entry.as_object_mut() {
                keep(value, object, &path[1..]);
            }
        }
        Value::Array(items) => {
            let entry = target
                .entry(key.clone())
                .or_insert_with(|| Value::Array(vec![json!({}); items.len()]));
            if let Some(kept) = entry.as_array_mut() {
                for (item, kept) in items.iter().zip(kept.iter_mut()) {
                    if let Some(object) = kept.as_object_mut() {
                        keep(item, object, &path[1..]);
                    }
                }
            }
        }
        _ => {}
    }
}

fn remove(value: &mut Value, path: &[String]) {
    match value {
        Value::Object(object) => {
            let Some(key) = object
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&path[0]))
                .cloned()
            else {
                return;
            };
            if path.len() == 1 {
                object.remove(&key);
            } else if let Some(inner) = object.get_mut(&key) {
                remove(inner, &path[1..]);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| remove(item, path)),
        _ => {}
    }
}

/// A `ListResponse`.
pub fn list_response(total: u64, start_index: usize, resources: Vec<Value>) -> HttpResponse {
    answer(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    }))
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_response(self.status, self.scim_type, &self.detail);
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// A SCIM error body with `status`.
pub fn error_response(status: StatusCode, scim_type: Option<&str>, detail: &str) -> HttpResponse {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim\""));
    }
    response.content_type(CONTENT_TYPE).body(body.to_string())
}

/// The routes under `/scim/v2`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/scim/v2")
            .service(
                endpoint("/ServiceProviderConfig").route(web::get().to(service_provider_config)),
            )
            .service(endpoint("/ResourceTypes").route(web::get().to(resource_types)))
            .service(endpoint("/ResourceTypes/{id}").route(web::get().to(resource_type)))
            .service(endpoint("/Schemas").route(web::get().to(schemas)))
            .service(endpoint("/Schemas/{id}").route(web::get().to(schema)))
            .service(
                endpoint("/Users")
                    .route(web::get().to(users::list))
                    .route(web::post().to(users::create)),
            )
            .service(endpoint("/Users/.search").route(web::post().to(users::search_post)))
            .service(endpoint("/.search").route(web::post().to(search_everything)))
            .service(
                endpoint("/Groups")
                    .route(web::get().to(groups::list))
                    .route(web::post().to(groups::create)),
            )
            .service(endpoint("/Groups/.search").route(web::post().to(groups::search_post)))
            .service(
                endpoint("/Groups/{id}")
                    .route(web::get().to(groups::get))
                    .route(web::put().to(groups::replace))
                    .route(web::patch().to(groups::modify))
                    .route(web::delete().to(groups::delete)),
            )
            .service(
                endpoint("/Users/{id}")
                    .route(web::get().to(users::get))
                    .route(web::put().to(users::replace))
                    .route(web::patch().to(users::modify))
                    .route(web::delete().to(users::delete)),
            )
            .default_service(web::to(unknown_endpoint)),
    );
}

/// `POST /.search` (RFC 7644 §3.4.3): Users, then Groups, paged as one list.
async fn search_everything(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let params = ListParams::from_search(&read_json(&body)?)?;
    let (users, mut resources) = users::search(&state, &client, &params).await?;
    let skipped = usize::try_from(users).unwrap_or(usize::MAX);
    let rest = ListParams {
        start_index: params.start_index.saturating_sub(skipped).max(1),
        count: params.count - resources.len(),
        ..params.clone()
    };
    let (groups, more) = groups::search(&state, &client, &rest).await?;
    resources.extend(more);
    Ok(list_response(users + groups, params.start_index, resources))
}

/// A path whose other methods are answered 405 (after authentication).
fn endpoint(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    Err(ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not answer that method",
    ))
}

/// The SCIM token's tenant (every endpoint needs one, discovery too: a
/// provider's test connection is authenticated).
async fn authenticate(state: &AppState, request: &HttpRequest) -> Result<Client, ScimError> {
    // Rated per client before anything is looked up.
    if let Some(seconds) = state.limits.scim_wait(request) {
        return Err(ScimError {
            retry_after: Some(seconds),
            ..ScimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests; try later",
            )
        });
    }
    let refused = || ScimError::new(StatusCode::UNAUTHORIZED, "a valid SCIM token is required");
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme's name is case-insensitive (RFC 7235).
        .and_then(|v| {
            v.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
        .ok_or_else(refused)?;
    match identify_scim_token(&state.ports, token.trim(), Timestamp::now()).await {
        Ok((key, tenant, principal)) => {
            let info = request.connection_info();
            Ok(Client {
                tenant,
                key,
                principal,
                correlation: Uuid::now_v7(),
                base: format!("{}://{}/scim/v2", info.scheme(), info.host()),
            })
        }
        Err(custodia_application::commands::sessions::SessionFailure::Internal(error)) => {
            tracing::error!(%error, "scim: a token could not be checked");
            Err(ScimError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
        Err(_) => Err(refused()),
    }
}

fn answer(body: Value) -> HttpResponse {
    answer_with(StatusCode::OK, &body)
}

fn answer_with(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .body(body.to_string())
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    })
}

async fn service_provider_config(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    Ok(answer(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": true },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "SCIM token",
            "description": "A bearer token a tenant admin creates with createScimToken; it acts in that tenant only.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": "/scim/v2/ServiceProviderConfig",
        },
    })))
}

fn user_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A member of the tenant",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{ "schema": ENTERPRISE_SCHEMA, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User" },
    })
}

fn group_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group of members that the tenant's admins grant roles to",
        "schema": GROUP_SCHEMA,
        "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/Group" },
    })
}

async fn resource_types(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    Ok(answer(list(vec![
        user_resource_type(),
        group_resource_type(),
    ])))
}

async fn resource_type(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    match id.as_str() {
        "User" => Ok(answer(user_resource_type())),
        "Group" => Ok(answer(group_resource_type())),
        _ => Err(ScimError::new(
            StatusCode::NOT_FOUND,
            "no such resource type",
        )),
    }
}

/// One attribute's definition (RFC 7643 §7).
fn attribute(name: &str, kind: &str, multi: bool, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

fn with(mut attribute: Value, changes: Value) -> Value {
    if let (Some(target), Some(changes)) = (attribute.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            target.insert(key.clone(), value.clone());
        }
    }
    attribute
}

/// An attribute of `table` as the `Schemas` endpoint defines it.
fn defined(known: &users::Attribute) -> Value {
    let kind = if known.name == "active" {
        "boolean"
    } else if known.form == Form::Simple {
        "string"
    } else {
        "complex"
    };
    let mut defined = attribute(
        known.name,
        kind,
        known.form == Form::MultiValued,
        known.description,
    );
    if known.form != Form::Simple {
        defined["subAttributes"] = known
            .subs
            .iter()
            .map(|sub| {
                let kind = if *sub == "primary" {
                    "boolean"
                } else {
                    "string"
                };
                attribute(sub, kind, false, sub)
            })
            .collect();
    }
    match known.name {
        "userName" => with(defined, json!({ "required": true, "uniqueness": "server" })),
        "password" => with(
            defined,
            json!({ "mutability": "writeOnly", "returned": "never" }),
        ),
        "groups" | "roles" => with(defined, json!({ "mutability": "readOnly" })),
        _ => defined,
    }
}

fn schema_of(id: &str) -> Option<Value> {
    let (name, description, attributes) = match id {
        USER_SCHEMA => (
            "User",
            "A member of the tenant",
            users::CORE.iter().map(defined).collect(),
        ),
        ENTERPRISE_SCHEMA => (
            "EnterpriseUser",
            "Enterprise attributes of a user",
            users::ENTERPRISE.iter().map(defined).collect(),
        ),
        GROUP_SCHEMA => (
            "Group",
            "A group of members that the tenant's admins grant roles to",
            vec![
                with(
                    attribute("displayName", "string", false, "The group's name"),
                    json!({ "required": true }),
                ),
                with(
                    attribute("members", "complex", true, "The members"),
                    json!({ "subAttributes": [
                        with(
                            attribute("value", "string", false, "A user's id"),
                            json!({ "mutability": "immutable", "caseExact": true }),
                        ),
                        with(
                            attribute("$ref", "reference", false, "The user's URI"),
                            json!({ "referenceTypes": ["User"], "mutability": "immutable" }),
                        ),
                        with(
                            attribute("type", "string", false, "Always User: groups do not nest"),
                            json!({ "canonicalValues": ["User"], "mutability": "immutable" }),
                        ),
                    ] }),
                ),
            ],
        ),
        _ => return None,
    };
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{id}") },
    }))
}

async fn schemas(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    Ok(answer(list(
        [USER_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA]
            .iter()
            .filter_map(|id| schema_of(id))
            .collect(),
    )))
}

async fn schema(
    state: web::Data<AppState>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    schema_of(&id)
        .map(answer)
        .ok_or_else(|| ScimError::new(StatusCode::NOT_FOUND, "no such schema"))
}

/// Anything else under `/scim/v2`: authenticated first (an outsider learns
/// nothing of what exists), then 404.
async fn unknown_endpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    Err(ScimError::new(StatusCode::NOT_FOUND, "no such endpoint"))
}
