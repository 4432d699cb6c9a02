//! SCIM 2.0 (RFC 7643, RFC 7644) under `/scim/v2`, for identity providers
//! that provision a tenant's users (ADR 0012, docs/scim.md).
//!
//! Built so far: authentication by SCIM token (a key made for SCIM only,
//! refused everywhere else; a general API key or an access token is
//! refused here), SCIM error bodies for every refusal, and the discovery
//! endpoints (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`), which
//! advertise only what is supported. `Users` and `Groups` are not built
//! yet and answer 501 with a SCIM error.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use custodia_application::commands::api_keys::identify_scim_token;
use custodia_domain::Timestamp;
use serde_json::{json, Value};

use crate::http::AppState;

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
            .route(
                "/ServiceProviderConfig",
                web::get().to(service_provider_config),
            )
            .route("/ResourceTypes", web::get().to(resource_types))
            .route("/ResourceTypes/{id}", web::get().to(resource_type))
            .route("/Schemas", web::get().to(schemas))
            .route("/Schemas/{id}", web::get().to(schema))
            .default_service(web::to(not_built)),
    );
}

/// The SCIM token's tenant (every endpoint needs one, discovery too: a
/// provider's test connection is authenticated).
async fn authenticate(
    state: &AppState,
    request: &HttpRequest,
) -> Result<custodia_domain::TenantId, ScimError> {
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
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(refused)?;
    match identify_scim_token(&state.ports, token.trim(), Timestamp::now()).await {
        Ok((_, tenant, _)) => Ok(tenant),
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
    HttpResponse::Ok()
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
        "patch": { "supported": false },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": false, "maxResults": 0 },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
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

fn multi_valued(name: &str, description: &str) -> Value {
    with(
        attribute(name, "complex", true, description),
        json!({ "subAttributes": [
            attribute("value", "string", false, "The value"),
            attribute("type", "string", false, "A label (work, home, …)"),
            attribute("primary", "boolean", false, "The primary value"),
        ] }),
    )
}

fn schema_of(id: &str) -> Option<Value> {
    let (name, description, attributes) = match id {
        USER_SCHEMA => (
            "User",
            "A member of the tenant",
            vec![
                with(
                    attribute("userName", "string", false, "The sign-in address"),
                    json!({ "required": true, "uniqueness": "server" }),
                ),
                with(
                    attribute("name", "complex", false, "The person's name"),
                    json!({ "subAttributes": [
                        attribute("formatted", "string", false, "The full name"),
                        attribute("givenName", "string", false, "The given name"),
                        attribute("familyName", "string", false, "The family name"),
                    ] }),
                ),
                attribute("displayName", "string", false, "The name shown"),
                multi_valued("emails", "Email addresses"),
                multi_valued("phoneNumbers", "Phone numbers"),
                attribute("active", "boolean", false, "False suspends the user"),
                with(
                    attribute("password", "string", false, "Set, never returned"),
                    json!({ "mutability": "writeOnly", "returned": "never" }),
                ),
                with(
                    attribute("groups", "complex", true, "The groups the user is in"),
                    json!({ "mutability": "readOnly" }),
                ),
            ],
        ),
        ENTERPRISE_SCHEMA => (
            "EnterpriseUser",
            "Enterprise attributes of a user",
            vec![
                attribute("employeeNumber", "string", false, "The employee number"),
                attribute("department", "string", false, "The department"),
                attribute("organization", "string", false, "The organization"),
            ],
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
                        attribute("value", "string", false, "A user's id"),
                        attribute("display", "string", false, "Their name"),
                        attribute("type", "string", false, "User"),
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
/// nothing of what exists), then 404, or 501 for the resources not built
/// yet.
async fn not_built(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    authenticate(&state, &request).await?;
    let path = request.path();
    let resource = ["/scim/v2/Users", "/scim/v2/Groups"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    Err(if resource {
        ScimError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Users and Groups are not supported yet",
        )
    } else {
        ScimError::new(StatusCode::NOT_FOUND, "no such endpoint")
    })
}
