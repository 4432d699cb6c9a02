//! `/auth/login`, `/auth/refresh`, `/auth/logout`: tokens as in RFC 6749
//! §5.1, or HttpOnly cookies for browsers.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use custodia_application::commands::sessions::{
    refresh_session, refresh_token_is_current, revoke_session, session_principal, start_session,
    verify_access_token, ClientInfo, SessionTokens, TokenSubject,
};
use custodia_application::commands::Caller;
use custodia_domain::{Actor, CommandId, Origin, TenantId, Timestamp};

use super::{browser, ApiError, AppState};
use crate::http::idempotency::{self, Policy};
use custodia_infrastructure::idempotency::StoredResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    /// The tenant's id (or give `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    /// The tenant's slug or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    email: String,
    password: String,
    one_time_code: Option<String>,
    /// A browser session: the tokens go into HttpOnly cookies (see `browser`).
    #[serde(default)]
    cookies: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefreshRequest {
    /// Optional: the refresh token names its session and so its tenant.
    #[serde(default)]
    tenant_id: Option<String>,
    /// Absent in a browser session: the refresh cookie is used.
    refresh_token: Option<String>,
}

/// The token response (RFC 6749 §5.1 field names, plus the session).
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    refresh_expires_at: String,
    session_id: Uuid,
}

impl TokenResponse {
    fn from(tokens: SessionTokens, now: Timestamp) -> Self {
        TokenResponse {
            // Whole seconds, on the same clock as the token's `exp`.
            expires_in: tokens.access_expires_at.0.div_euclid(1_000_000)
                - now.0.div_euclid(1_000_000),
            access_token: tokens.access_token,
            token_type: "Bearer",
            refresh_token: tokens.refresh_token,
            refresh_expires_at: tokens.refresh_expires_at.to_string(),
            session_id: tokens.session,
        }
    }
}

fn tenant(text: &str) -> Result<TenantId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "tenant_id must be a tenant's UUID",
        )
    })
}

/// The tenant a request names: `tenant` (its slug or id) or `tenant_id`
/// (its id), exactly one. A slug no tenant holds reads as a tenant that
/// does not exist, always the same one for the same text (so the rate
/// limits count it as they count an unknown id): the request goes on and
/// fails as it would there (a login costs the same password check), so
/// slugs are not enumerable by their answers.
pub(super) async fn named_tenant(
    state: &AppState,
    tenant: Option<&str>,
    tenant_id: Option<&str>,
) -> Result<TenantId, ApiError> {
    match (tenant, tenant_id) {
        (None, Some(id)) => self::tenant(id),
        (Some(text), None) => Ok(custodia_application::commands::tenants::resolve_tenant(
            &state.ports,
            text,
        )
        .await?
        .unwrap_or_else(|| nobody(text))),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "give tenant (its slug or id) or tenant_id",
        )),
    }
}

/// The id of no tenant, stable for `text` (a name-based UUID, which no
/// tenant's time-ordered id can be).
fn nobody(text: &str) -> TenantId {
    const UNKNOWN: Uuid = Uuid::from_u128(0x0e1f_2a3b_4c5d_4e6f_8a9b_0c1d_2e3f_4a5b);
    let id = Uuid::new_v5(&UNKNOWN, text.trim().to_ascii_lowercase().as_bytes());
    TenantId::from_uuid(id).expect("a name-based UUID is never nil")
}

fn client_info(request: &HttpRequest) -> ClientInfo {
    ClientInfo {
        ip: request.peer_addr().map(|addr| addr.ip().to_string()),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().filter(|c| !c.is_control()).take(512).collect()),
    }
}

pub(super) async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = named_tenant(&state, body.tenant.as_deref(), body.tenant_id.as_deref()).await?;
    state.limits.check_account(tenant, &body.email)?;
    let Some(key) = idempotency::key(&request)? else {
        return login_once(&state, &request, tenant, &body).await;
    };
    // Keys are the account's: only a client that sends the same
    // credentials gets the answer again, and only while the session it
    // started is untouched.
    let account = body.email.trim().to_lowercase();
    let scope = idempotency::digest(&[
        b"/auth/login",
        tenant.as_uuid().as_bytes(),
        account.as_bytes(),
        key.as_bytes(),
    ]);
    let sent = serde_json::to_vec(&*body).map_err(|e| ApiError::internal(&e))?;
    let sent = idempotency::digest(&[&sent]);
    let current = async |stored: &StoredResponse| still_current(&state, stored).await;
    // `/auth` answers hold tokens, no personal data: they are not withdrawn
    // with a subject's erasure (they last 5 minutes), so no tenant is named.
    idempotency::once(&state, Policy::AUTH, &scope, None, &sent, current, |_| {
        login_once(&state, &request, tenant, &body)
    })
    .await
}

/// Do the tokens in a kept `/auth` answer still stand: the refresh token it
/// holds (in the body, or in the browser's cookie) is its session's current
/// one? Once rotated or revoked, the answer is not handed out again.
async fn still_current(state: &AppState, stored: &StoredResponse) -> bool {
    let from_body = serde_json::from_slice::<serde_json::Value>(&stored.body)
        .ok()
        .and_then(|body| body["refresh_token"].as_str().map(str::to_owned));
    let from_cookie = || {
        stored
            .headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .filter_map(|(_, value)| actix_web::cookie::Cookie::parse(value.as_str()).ok())
            .find(|cookie| cookie.name() == crate::http::browser::REFRESH)
            .map(|cookie| cookie.value().to_owned())
    };
    match from_body.or_else(from_cookie) {
        Some(token) => refresh_token_is_current(&state.ports, &token, Timestamp::now())
            .await
            .unwrap_or(false),
        None => false,
    }
}

async fn login_once(
    state: &AppState,
    request: &HttpRequest,
    tenant: TenantId,
    body: &LoginRequest,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::now();
    let client = client_info(request);
    let tokens = start_session(
        &state.ports,
        tenant,
        &body.email,
        &body.password,
        body.one_time_code.as_deref(),
        Some(&client),
        now,
    )
    .await?;
    Ok(token_response(state, tokens, now, body.cookies))
}

/// The tokens as JSON, or, for a browser session, as cookies with only the
/// session's facts and the CSRF token in the body.
fn token_response(
    state: &AppState,
    tokens: SessionTokens,
    now: Timestamp,
    cookies: bool,
) -> HttpResponse {
    let refresh_seconds = (tokens.refresh_expires_at.0 - now.0) / 1_000_000;
    let body = TokenResponse::from(tokens, now);
    if !cookies {
        return HttpResponse::Ok().json(body);
    }
    let csrf = hex::encode(state.ports.tokens.refresh_secret());
    let mut response = HttpResponse::Ok();
    crate::http::browser::set(
        &mut response,
        &body.access_token,
        body.expires_in,
        &body.refresh_token,
        refresh_seconds,
        &csrf,
    );
    response.json(serde_json::json!({
        "token_type": "cookie",
        "expires_in": body.expires_in,
        "refresh_expires_at": body.refresh_expires_at,
        "session_id": body.session_id,
        "csrf_token": csrf,
    }))
}

pub(super) async fn refresh(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let now = Timestamp::now();
    let (presented, cookies) = match &body.refresh_token {
        Some(token) => (token.clone(), false),
        None => {
            let cookie = request
                .cookie(crate::http::browser::REFRESH)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "VALIDATION",
                        "give refresh_token (or send the refresh cookie)",
                    )
                })?;
            crate::http::browser::check_csrf(&request)?;
            (cookie.value().to_owned(), true)
        }
    };
    let named = body.tenant_id.as_deref().map(tenant).transpose()?;
    let run = || async {
        let tokens = refresh_session(&state.ports, named, &presented, now).await?;
        Ok(token_response(&state, tokens, now, cookies))
    };
    let Some(key) = idempotency::key(&request)? else {
        return run().await;
    };
    // The scope is the presented token's: nobody without it shares it.
    let scope = idempotency::digest(&[b"/auth/refresh", presented.as_bytes(), key.as_bytes()]);
    let named_tenant = named.map(|t| t.to_string()).unwrap_or_default();
    let sent = idempotency::digest(&[named_tenant.as_bytes()]);
    let current = async |stored: &StoredResponse| still_current(&state, stored).await;
    idempotency::once(&state, Policy::AUTH, &scope, None, &sent, current, |_| {
        run()
    })
    .await
}

/// The access token a request presents (bearer header, or browser cookie
/// with the CSRF check).
fn access_token(request: &HttpRequest) -> Result<String, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "a bearer token is required",
        )
    };
    let value = browser::credentials(request)?.ok_or_else(unauthenticated)?;
    browser::bearer_token(&value)
        .map(str::to_owned)
        .ok_or_else(unauthenticated)
}

/// Ends the session of the presented access token, at once.
pub(super) async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::now();
    // The token's signature names the session; whether it is still live is
    // the command's business (a retried logout finds it ended, and is
    // answered as the first was).
    let (_, subject) = verify_access_token(&state.ports, &access_token(&request)?, now)?;
    let TokenSubject {
        tenant,
        user,
        session,
    } = subject;
    let ports = &state.ports;
    let run = |command_id| async move {
        let principal = session_principal(ports, &subject).await?;
        let caller = Caller {
            principal,
            actor: Actor::User(user),
            command_id,
            correlation_id: Uuid::now_v7(),
            origin: Origin::parse("http").expect("a valid origin"),
            expected_version: None,
            session: Some(session),
        };
        revoke_session(ports, &caller, tenant, session, now).await?;
        let mut response = HttpResponse::NoContent();
        crate::http::browser::clear(&mut response);
        Ok(response.finish())
    };
    let Some(key) = idempotency::key(&request)? else {
        return run(CommandId::generate()).await;
    };
    let scope = idempotency::digest(&[
        b"/auth/logout",
        tenant.as_uuid().as_bytes(),
        user.as_bytes(),
        key.as_bytes(),
    ]);
    let sent = idempotency::digest(&[session.as_bytes()]);
    idempotency::once(
        &state,
        Policy::AUTH,
        &scope,
        None,
        &sent,
        async |_: &StoredResponse| true,
        |first_seen| run(idempotency::command_id(&scope, first_seen, 0)),
    )
    .await
}
