//! GraphQL over HTTP: `GET` and `POST /graphql` as the GraphQL-over-HTTP
//! spec describes them, credentials, the consistency token, and GraphiQL.

use std::sync::{Arc, Mutex};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::parser::types::OperationType;
use custodia_application::commands::api_keys::identify_api_key;
use custodia_application::commands::sessions::{session_principal, verify_access_token};
use custodia_domain::{Actor, LogCursor, Timestamp};

use super::{Auth, CommandIds, RequestData};
use crate::http::{ApiError, AppState};

/// The largest GraphQL request body, in bytes.
pub const MAX_GRAPHQL_BODY: usize = 64 * 1024;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/graphql")
            .app_data(web::PayloadConfig::new(MAX_GRAPHQL_BODY))
            .route(web::post().to(post))
            .route(
                web::get()
                    .guard(actix_web::guard::Header("upgrade", "websocket"))
                    .to(super::subscription::websocket),
            )
            .route(web::get().to(get))
            .route(web::head().to(get)),
    );
}

/// Which media type the response uses, from `Accept` (spec §6.4.1): the
/// newer `application/graphql-response+json` when asked for, else JSON.
fn negotiate(request: &HttpRequest) -> Result<&'static str, ApiError> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(JSON);
    }
    let types: Vec<&str> = accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or("").trim())
        .collect();
    if types.contains(&GRAPHQL_RESPONSE) {
        Ok(GRAPHQL_RESPONSE)
    } else if types
        .iter()
        .any(|t| *t == JSON || *t == "application/*" || *t == "*/*")
    {
        Ok(JSON)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "VALIDATION",
            "accept application/graphql-response+json or application/json",
        ))
    }
}

/// The caller, from `Authorization: Bearer <access token | API key>`.
/// No header: anonymous (resolvers refuse what needs a caller). A header
/// that does not authenticate is refused outright.
async fn caller(state: &AppState, request: &HttpRequest) -> Result<Option<Auth>, ApiError> {
    match crate::http::browser::credentials(request)? {
        Some(value) => authenticate_token(state, &value).await.map(Some),
        None => Ok(None),
    }
}

/// The caller behind `Bearer <access token | API key>`.
pub(super) async fn authenticate_token(state: &AppState, value: &str) -> Result<Auth, ApiError> {
    let token = crate::http::browser::bearer_token(value)
        .ok_or_else(|| unauthenticated("use Authorization: Bearer <token>"))?;
    let now = Timestamp::now();
    if token.starts_with("cst_") {
        let (key, tenant, principal) = identify_api_key(&state.ports, token, now).await?;
        return Ok(Auth {
            principal,
            actor: Actor::Service(key),
            tenant,
            user: None,
            session: None,
            credentials: super::Credentials(value.to_owned()),
        });
    }
    // The signature and lifetime are checked on every request; the session
    // and the roles come from the cache while nothing was appended since.
    let (_, subject) = verify_access_token(&state.ports, token, now)?;
    let principal = match state.auth_cache.get(subject.session, subject.user) {
        Some(principal) => principal,
        None => {
            let loaded = state.auth_cache.generations();
            let principal = session_principal(&state.ports, &subject).await?;
            state
                .auth_cache
                .put(subject.session, subject.user, principal.clone(), loaded);
            principal
        }
    };
    Ok(Auth {
        principal,
        actor: Actor::User(subject.user),
        tenant: subject.tenant,
        user: Some(subject.user),
        session: Some(subject.session),
        credentials: super::Credentials(value.to_owned()),
    })
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
}

/// Waits for the projections to reach the request's `X-Consistency-Token`.
/// Returns whether they did (no token: nothing to wait for).
async fn consistency(state: &AppState, request: &HttpRequest) -> Result<bool, ApiError> {
    // An empty token is what a mutation that wrote nothing answers: there
    // is nothing to wait for.
    let Some(token) = request
        .headers()
        .get("x-consistency-token")
        .filter(|t| !t.is_empty())
    else {
        return Ok(true);
    };
    let cursor: LogCursor = token
        .to_str()
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "X-Consistency-Token is not a token this server issued",
            )
        })?;
    let failure = |e| ApiError::from(custodia_application::commands::CommandError::from(e));
    // A token beyond the log's head names no write: refused at once rather
    // than waited for.
    if cursor > state.ports.store.head().await.map_err(failure)? {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "X-Consistency-Token names no write of this log",
        ));
    }
    state.projections.wait_for(cursor).await.map_err(failure)
}

/// Every refusal of `/graphql` is a GraphQL response (`{"errors": …}`),
/// with the status the refusal calls for.
fn graphql_shaped(answer: Result<HttpResponse, ApiError>) -> HttpResponse {
    answer.unwrap_or_else(|error| error.graphql_response())
}

async fn post(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    graphql_shaped(post_request(&state, &request, &body).await)
}

async fn get(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    graphql_shaped(get_request(&state, &request).await)
}

async fn post_request(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let media = negotiate(request)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(JSON) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "VALIDATION",
            "send the request as application/json",
        ));
    }
    let not_a_request = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "the body must be a GraphQL request: {\"query\": …, \"variables\": …}",
        )
    };
    // `query` is required (spec §5.1); a body without it is no request.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| not_a_request())?;
    if !value.get("query").is_some_and(serde_json::Value::is_string) {
        return Err(not_a_request());
    }
    let graphql: async_graphql::Request =
        serde_json::from_value(value).map_err(|_| not_a_request())?;
    execute(state, request, graphql, media).await
}

async fn get_request(state: &AppState, request: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && request.query_string().is_empty() && state.development {
        return Ok(graphiql());
    }
    let media = negotiate(request)?;
    let parameters =
        web::Query::<std::collections::HashMap<String, String>>::from_query(request.query_string());
    if !parameters.is_ok_and(|p| p.contains_key("query")) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "give the query as ?query=…&variables=…&operationName=… (or POST it as JSON)",
        ));
    }
    let graphql =
        async_graphql::http::parse_query_string(request.query_string()).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "give the query as ?query=…&variables=…&operationName=…",
            )
        })?;
    // GET never changes anything (spec §6.2.1).
    if is_mutation(&graphql) {
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .json(serde_json::json!({ "errors": [{
                "message": "mutations are sent with POST",
                "extensions": { "code": "VALIDATION" } }] })));
    }
    execute(state, request, graphql, media).await
}

async fn execute(
    state: &AppState,
    request: &HttpRequest,
    graphql: async_graphql::Request,
    media: &'static str,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_graphql(request)?;
    let auth = caller(state, request).await?;
    let reached = consistency(state, request).await?;
    let key = crate::http::idempotency::key(request)?;
    // A key matters to a signed-in caller's mutations; queries change nothing.
    let keyed = match (key, &auth) {
        (Some(key), Some(auth)) if is_mutation(&graphql) => {
            let scope = crate::http::idempotency::digest(&[
                b"/graphql",
                auth.tenant.as_uuid().as_bytes(),
                auth.actor.to_string().as_bytes(),
                key.as_bytes(),
            ]);
            let variables =
                serde_json::to_vec(&graphql.variables).map_err(|e| ApiError::internal(&e))?;
            let sent = crate::http::idempotency::digest(&[
                graphql.query.as_bytes(),
                graphql.operation_name.as_deref().unwrap_or("").as_bytes(),
                &variables,
            ]);
            Some((scope, auth.tenant, sent))
        }
        _ => None,
    };
    let run = |command_ids| async move {
        let written = Arc::new(Mutex::new(None));
        let data = RequestData {
            state: state.clone(),
            auth,
            written: written.clone(),
            command_ids,
        };
        let selected =
            super::root_fields::selected(&graphql.query, graphql.operation_name.as_deref());
        let mut graphql = graphql.data(data);
        if let Some(parsed) = super::parsed::parsed(&graphql.query) {
            graphql.set_parsed_query(parsed.document.clone());
        }
        let mut response = state.schema.execute(graphql).await;
        super::root_fields::keep_failed(&mut response.data, &response.errors, &selected);
        let written = *written.lock().expect("not poisoned");
        respond(state, response, media, written, reached)
    };
    let Some((scope, tenant, sent)) = keyed else {
        return run(CommandIds::default()).await;
    };
    use crate::http::idempotency::Policy;
    use custodia_infrastructure::idempotency::StoredResponse;
    crate::http::idempotency::once(
        state,
        Policy::MUTATIONS,
        &scope,
        Some(tenant),
        &sent,
        async |_: &StoredResponse| true,
        |first_seen| run(CommandIds::derived(scope, first_seen)),
    )
    .await
}

/// Does the document hold a mutation (the one `operationName` picks, if it
/// names one)? A document that does not parse holds none.
fn is_mutation(graphql: &async_graphql::Request) -> bool {
    let Some(parsed) = super::parsed::parsed(&graphql.query) else {
        return false;
    };
    parsed.document.operations.iter().any(|(name, op)| {
        op.node.ty == OperationType::Mutation
            && match (&graphql.operation_name, name) {
                (Some(wanted), Some(name)) => wanted == name.as_str(),
                _ => true,
            }
    })
}

/// The HTTP answer for a GraphQL response: codes on every error, at most
/// [`MAX_ERRORS`](super::limits::MAX_ERRORS) errors listed, the status the
/// media type calls for, and the consistency headers.
fn respond(
    state: &AppState,
    mut response: async_graphql::Response,
    media: &'static str,
    written: Option<LogCursor>,
    reached: bool,
) -> Result<HttpResponse, ApiError> {
    use super::limits::MAX_ERRORS;
    if response.errors.len() > MAX_ERRORS {
        let more = response.errors.len() - MAX_ERRORS;
        response.errors.truncate(MAX_ERRORS);
        response.errors.push(async_graphql::ServerError::new(
            format!("{more} more errors not listed"),
            None,
        ));
    }
    // A request error (syntax, validation, limits) stops execution before
    // any field runs: no data, and no error has a path.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            // The executor's own errors are the request's fault: syntax,
            // validation, variables, limits.
            extensions.set("code", "VALIDATION");
        }
    }
    state.metrics.graphql(if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    });
    let status = if request_error && media == GRAPHQL_RESPONSE {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut http = HttpResponse::build(status);
    http.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(if media == JSON {
            "application/json"
        } else {
            GRAPHQL_RESPONSE
        }),
    ));
    if let Some(cursor) = written {
        http.insert_header(("x-consistency-token", cursor.to_string()));
    }
    if !reached {
        http.insert_header(("x-consistency", "stale"));
    }
    let mut body = serde_json::to_value(&response).map_err(|e| ApiError::internal(&e))?;
    if request_error {
        // Nothing ran: the result has no `data` entry at all (spec §7.1.1).
        if let Some(object) = body.as_object_mut() {
            object.remove("data");
        }
    }
    Ok(http.body(serde_json::to_vec(&body).map_err(|e| ApiError::internal(&e))?))
}

/// The GraphiQL IDE (development only), from its CDN; its own CSP allows that.
pub fn graphiql() -> HttpResponse {
    const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Custodia GraphiQL</title>
<link rel="stylesheet" href="https://unpkg.com/graphiql@3.8.3/graphiql.min.css">
</head><body style="margin:0"><div id="graphiql" style="height:100vh"></div>
<script crossorigin src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3.8.3/graphiql.min.js"></script>
<script>
const fetcher = GraphiQL.createFetcher({ url: '/graphql' });
ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, { fetcher }));
</script></body></html>"#;
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src https://unpkg.com 'unsafe-inline'; \
             style-src https://unpkg.com 'unsafe-inline'; img-src data: https:; font-src data: https://unpkg.com; \
             connect-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
        ))
        .body(PAGE)
}
