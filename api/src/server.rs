//! `custodia serve`: the HTTP edge. Authentication endpoints, JWKS, health,
//! and the headers every response carries. Errors are mapped to HTTP in one
//! place ([`ApiError`]); internal causes are logged, never sent.

use std::sync::Arc;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use custodia_application::commands::credentials::LoginError;
use custodia_application::commands::sessions::{
    refresh_session, refresh_token_is_current, revoke_session, session_principal, start_session,
    verify_access_token, ClientInfo, SessionFailure, SessionTokens, TokenSubject,
};
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_application::{EventStore, ReadModels};
use custodia_domain::{Actor, CommandId, Origin, TenantId, Timestamp};
use custodia_infrastructure::{
    open_event_store, Argon2Passwords, Ed25519Signer, IdempotencyKeys, KeyVault, MasterKey,
    OpenMode, SqlReadModels, Totp,
};

use crate::auth_cache::AuthCache;
use crate::graphql::CustodiaSchema;
use crate::idempotency::{self, Policy};
use crate::metrics::{MeteredStore, Metrics};
use crate::projections::Projections;
use custodia_infrastructure::idempotency::StoredResponse;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

/// The largest JSON body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ports: Ports,
    pub signer: Arc<Ed25519Signer>,
    pub limits: Arc<AuthLimits>,
    /// Origins allowed to call the API from a browser (CORS); none by default.
    pub cors_origins: Arc<Vec<String>>,
    pub models: Arc<dyn ReadModels>,
    pub projections: Projections,
    pub schema: CustodiaSchema,
    pub metrics: Arc<Metrics>,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    pub auth_cache: Arc<AuthCache>,
    /// The one follower of the log behind every audit subscription.
    pub audit_feed: Arc<crate::audit_feed::AuditFeed>,
    /// Development conveniences (GraphiQL) are on unless `CUSTODIA_ENV=production`.
    pub development: bool,
    /// Answers kept for retried requests (`Idempotency-Key`).
    pub idempotency: Arc<IdempotencyKeys>,
    /// Proxies whose `X-Forwarded-Proto` is believed (for HSTS).
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

type KeyedLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Who may read `/metrics`: anyone (development, or
/// `CUSTODIA_METRICS_PUBLIC=true`), the holders of `CUSTODIA_METRICS_TOKEN`
/// (as a bearer token), or nobody (production's default).
#[derive(Clone)]
pub enum MetricsAccess {
    Open,
    Token(Arc<zeroize::Zeroizing<String>>),
    Closed,
}

/// Rate limits (`governor`, GCRA): on the authentication endpoints per
/// client IP, and per account (tenant and email) for logins; on `/graphql`
/// per client IP. In memory, per instance: behind a load balancer each
/// instance applies them on its own. The account lockout (ADR 0005) is what
/// holds across instances.
pub struct AuthLimits {
    per_ip: KeyedLimiter,
    per_account: KeyedLimiter,
    graphql_per_ip: KeyedLimiter,
}

/// `/graphql` requests a minute per client IP by default.
pub const GRAPHQL_PER_IP: u32 = 6_000;

impl AuthLimits {
    /// `per_ip` and `per_account` requests a minute, each with that burst;
    /// `/graphql` at [`GRAPHQL_PER_IP`].
    pub fn per_minute(per_ip: u32, per_account: u32) -> AuthLimits {
        AuthLimits::with_graphql(per_ip, per_account, GRAPHQL_PER_IP)
    }

    /// Every limit in requests a minute, each with that burst.
    pub fn with_graphql(per_ip: u32, per_account: u32, graphql_per_ip: u32) -> AuthLimits {
        let quota = |n: u32| {
            governor::Quota::per_minute(std::num::NonZeroU32::new(n.max(1)).expect("at least 1"))
        };
        AuthLimits {
            per_ip: KeyedLimiter::keyed(quota(per_ip)),
            per_account: KeyedLimiter::keyed(quota(per_account)),
            graphql_per_ip: KeyedLimiter::keyed(quota(graphql_per_ip)),
        }
    }

    /// Defaults: 60 auth requests a minute per IP, 10 logins a minute per account.
    pub fn standard() -> AuthLimits {
        AuthLimits::per_minute(60, 10)
    }

    /// The defaults, or `CUSTODIA_AUTH_LIMIT_PER_IP`,
    /// `CUSTODIA_AUTH_LIMIT_PER_ACCOUNT` and `CUSTODIA_GRAPHQL_LIMIT_PER_IP`
    /// (requests a minute).
    pub fn from_env() -> AuthLimits {
        let limit = |name: &str, default: u32| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        AuthLimits::with_graphql(
            limit("CUSTODIA_AUTH_LIMIT_PER_IP", 60),
            limit("CUSTODIA_AUTH_LIMIT_PER_ACCOUNT", 10),
            limit("CUSTODIA_GRAPHQL_LIMIT_PER_IP", GRAPHQL_PER_IP),
        )
    }

    /// Refuses a `/graphql` request over its client's rate.
    pub(crate) fn check_graphql(&self, request: &HttpRequest) -> Result<(), ApiError> {
        Self::check(&self.graphql_per_ip, client_ip(request))
    }

    fn check(limiter: &KeyedLimiter, key: String) -> Result<(), ApiError> {
        use governor::clock::{Clock, DefaultClock};
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError {
                retry_after: Some(wait.as_secs() + 1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "too many requests; try later",
                )
            }
        })
    }

    fn check_ip(&self, request: &HttpRequest) -> Result<(), ApiError> {
        Self::check(&self.per_ip, client_ip(request))
    }

    fn check_account(&self, tenant: TenantId, email: &str) -> Result<(), ApiError> {
        Self::check(
            &self.per_account,
            format!("{tenant}/{}", email.trim().to_lowercase()),
        )
    }
}

fn client_ip(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}

impl AppState {
    /// Opens (and migrates) the database, the key vault and the signing keys,
    /// and wires the adapters.
    pub async fn connect(
        database_url: &str,
        master: MasterKey,
        issuer: &str,
        audience: &str,
    ) -> Result<AppState, String> {
        let metrics = Arc::new(Metrics::default());
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let store: Arc<dyn EventStore> = Arc::new(MeteredStore {
            inner: open_event_store(database_url, OpenMode::Migrate, 16)
                .await
                .map_err(|e| e.to_string())?,
            metrics: metrics.clone(),
            appended: appended.clone(),
        });
        let auth_cache = Arc::new(AuthCache::new(appended, store.append_signal()));
        let models: Arc<dyn ReadModels> = Arc::new(
            SqlReadModels::connect(database_url)
                .await
                .map_err(|e| e.to_string())?,
        );
        let idempotency = Arc::new(
            IdempotencyKeys::connect(database_url, &master)
                .await
                .map_err(|e| e.to_string())?,
        );
        let vault = KeyVault::connect(database_url, master)
            .await
            .map_err(|e| e.to_string())?;
        let keys = vault.signing_keys().await.map_err(|e| match e {
            custodia_application::VaultError::Tampered => {
                "the master key does not open this database's keys: is it the key this database was created with?".to_owned()
            }
            other => format!("signing keys: {other}"),
        })?;
        let signer =
            Arc::new(Ed25519Signer::from_keys(&keys, issuer, audience).map_err(|e| e.to_string())?);
        let ports = Ports {
            store,
            vault: Arc::new(vault),
            passwords: Arc::new(Argon2Passwords::new()),
            codes: Arc::new(Totp),
            tokens: signer.clone(),
            unknown_logins: Arc::default(),
        };
        let cors_origins = std::env::var("CUSTODIA_CORS_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect();
        let development = std::env::var("CUSTODIA_ENV").map_or(true, |v| v != "production");
        let flag = |name: &str| match std::env::var(name).as_deref() {
            Ok("true" | "1") => Ok(Some(true)),
            Ok("false" | "0") => Ok(Some(false)),
            Ok(_) => Err(format!("{name} must be true or false")),
            Err(_) => Ok(None),
        };
        let introspection = flag("CUSTODIA_GRAPHQL_INTROSPECTION")?.unwrap_or(development);
        let metrics_token = custodia_infrastructure::config::secret("CUSTODIA_METRICS_TOKEN")
            .map_err(|e| e.to_string())?;
        let metrics_access = match metrics_token {
            Some(token) => MetricsAccess::Token(Arc::new(token)),
            None if flag("CUSTODIA_METRICS_PUBLIC")?.unwrap_or(development) => MetricsAccess::Open,
            None => MetricsAccess::Closed,
        };
        Ok(AppState {
            ports,
            signer,
            limits: Arc::new(AuthLimits::from_env()),
            cors_origins: Arc::new(cors_origins),
            projections: Projections::new(models.clone()),
            models,
            schema: crate::graphql::schema(introspection),
            metrics,
            metrics_access,
            auth_cache,
            audit_feed: Arc::default(),
            development,
            idempotency,
            trusted_proxies: Arc::new(trusted_proxies()?),
        })
    }
}

/// An error as the client sees it: an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The stable code (`UNAUTHENTICATED`, `FORBIDDEN`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as a GraphQL response (`{"errors": [...]}`, the code in
    /// `extensions`), with the same status: what `/graphql` answers.
    pub(crate) fn graphql_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(serde_json::json!({ "errors": [{
            "message": self.message,
            "extensions": { "code": self.code },
        }] }))
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }
}

/// An error and every error it came from, `: `-separated, for the log.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response
            .json(serde_json::json!({ "error": { "code": self.code, "message": self.message } }))
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        use CommandError as E;
        match error {
            E::Forbidden(denied) => {
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", denied.to_string())
            }
            E::Invalid(invalid) => {
                ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION", invalid.to_string())
            }
            E::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{what} not found"),
            ),
            E::ApiKey(custodia_domain::identity::api_key::ApiKeyError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "API key not found")
            }
            E::User(custodia_domain::identity::user::UserError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "user not found")
            }
            E::StaleVersion { .. } | E::Conflict(_) | E::EmailTaken => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string())
            }
            E::TenantSuspended => {
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", error.to_string())
            }
            E::Tenant(_)
            | E::User(_)
            | E::Membership(_)
            | E::Credential(_)
            | E::Session(_)
            | E::ApiKey(_) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string()),
            E::Contended => {
                ApiError::new(StatusCode::CONFLICT, "CONCURRENCY", error.to_string()).retry_after(1)
            }
            E::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    error.to_string(),
                )
            },
            E::Vault(_) | E::Schema(_) | E::Store(_) => ApiError::internal(&Chain(&error)),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        let unauthenticated =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
        match error {
            LoginError::InvalidCredentials => unauthenticated("invalid credentials"),
            LoginError::SecondFactorRequired => unauthenticated("a one-time code is required"),
            LoginError::SecondFactorEnrollmentRequired => {
                unauthenticated("the tenant requires a second factor; enroll one first")
            }
            LoginError::TenantSuspended => ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "the tenant is suspended",
            ),
            LoginError::Locked { until } => {
                let seconds = (until.0 - Timestamp::now().0).max(0) / 1_000_000 + 1;
                ApiError {
                    retry_after: Some(seconds as u64),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "RATE_LIMITED",
                        "too many failed attempts; try later",
                    )
                }
            }
            LoginError::Internal(inner) => inner.into(),
        }
    }
}

impl From<SessionFailure> for ApiError {
    fn from(error: SessionFailure) -> Self {
        match error {
            SessionFailure::Internal(inner) => inner.into(),
            other => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                other.to_string(),
            ),
        }
    }
}

/// Security headers on every response (API responses are never cached).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// HSTS, on answers that went over HTTPS only (RFC 6797 §7.2: a host
/// sends it in secure transport only). The server itself speaks plain HTTP
/// behind a TLS-terminating proxy, so HTTPS is what the proxy says in
/// `X-Forwarded-Proto`, believed only from a trusted proxy
/// (`CUSTODIA_TRUSTED_PROXIES`, loopback by default).
async fn hsts(
    request: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let trusted = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| {
            request
                .peer_addr()
                .is_some_and(|peer| state.trusted_proxies.contains(&peer.ip()))
        });
    let https = trusted
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let mut response = next.call(request).await?;
    if https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains; preload"),
        );
    }
    Ok(response)
}

/// The proxies whose `X-Forwarded-Proto` is believed: the addresses in
/// `CUSTODIA_TRUSTED_PROXIES` (comma-separated), loopback by default.
fn trusted_proxies() -> Result<Vec<std::net::IpAddr>, String> {
    let Ok(list) = std::env::var("CUSTODIA_TRUSTED_PROXIES") else {
        return Ok(vec![
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ]);
    };
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse()
                .map_err(|_| format!("CUSTODIA_TRUSTED_PROXIES: {item} is not an IP address"))
        })
        .collect()
}

/// Gives every request an id (the caller's `X-Request-Id` if it is a UUID,
/// else a new one), echoed on the response and attached to log lines.
async fn request_id(
    request: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::now_v7);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.path());
    let started = std::time::Instant::now();
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut response = next.call(request).instrument(span.clone()).await?;
    if let Some(metrics) = metrics {
        metrics.request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "handled"
        );
    });
    response.headers_mut().insert(
        header::HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&id.to_string()).expect("a UUID is a header value"),
    );
    Ok(response)
}

/// The routes and middleware of the server, for `serve` and for tests.
pub fn configure(config: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|error, _| {
            let status = match &error {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the request body is too large"
            } else {
                "the request body is not the expected JSON"
            };
            ApiError::new(status, "VALIDATION", message).into()
        });
    config
        .app_data(json)
        .route("/health", web::get().to(health))
        .route("/health", web::head().to(health))
        .route("/health/live", web::get().to(health))
        .route("/health/live", web::head().to(health))
        .route("/health/ready", web::get().to(ready))
        .route("/health/ready", web::head().to(ready))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/.well-known/jwks.json", web::head().to(jwks))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/metrics", web::get().to(metrics))
        .route("/metrics", web::head().to(metrics))
        .configure(crate::graphql::configure)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such endpoint",
            ))
        }));
}

/// Every error answer is typed JSON: those that actix-web makes itself (a
/// body too large, a method not allowed, an extractor's refusal) are given
/// the same `{"error": {"code", "message"}}` body as the handlers' own
/// (on `/graphql`, the GraphQL `{"errors": [...]}` form).
pub fn typed_errors<B: 'static>() -> actix_web::middleware::ErrorHandlers<B> {
    use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
    let handler = |response: ServiceResponse<B>| {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if is_json || response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(ErrorHandlerResponse::Response(
                response.map_into_left_body(),
            ));
        }
        let status = response.status();
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("NOT_FOUND", "no such endpoint"),
            StatusCode::PAYLOAD_TOO_LARGE => ("VALIDATION", "the request body is too large"),
            StatusCode::METHOD_NOT_ALLOWED => ("VALIDATION", "the method is not allowed here"),
            StatusCode::UNAUTHORIZED => ("UNAUTHENTICATED", "sign in"),
            StatusCode::FORBIDDEN => ("FORBIDDEN", "forbidden"),
            StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "too many requests; try later"),
            s if s.is_server_error() => ("INTERNAL", "internal error"),
            _ => ("VALIDATION", "the request is not valid"),
        };
        let (request, old) = response.into_parts();
        let error = ApiError::new(status, code, message);
        // `/graphql` answers every refusal as a GraphQL response.
        let mut typed = if request.path() == "/graphql" {
            error.graphql_response()
        } else {
            error.error_response()
        };
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                typed.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, typed).map_into_right_body(),
        ))
    };
    ErrorHandlers::new()
        .default_handler_client(handler)
        .default_handler_server(handler)
}

/// The whole application with its middleware.
pub fn app(
    state: AppState,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors = state
        .cors_origins
        .iter()
        .fold(actix_cors::Cors::default(), |cors, origin| {
            cors.allowed_origin(origin)
        })
        .allowed_methods(["GET", "POST"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-consistency-token"),
            header::HeaderName::from_static(crate::browser::CSRF_HEADER),
            header::HeaderName::from_static(crate::idempotency::HEADER),
        ])
        // Browser sessions from an allowed origin send their cookies.
        .supports_credentials()
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-consistency-token"),
            header::HeaderName::from_static("x-consistency"),
            header::HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(600);
    actix_web::App::new()
        .app_data(web::Data::new(state))
        .wrap(typed_errors())
        .wrap(cors)
        .wrap(security_headers())
        .wrap(from_fn(hsts))
        .wrap(from_fn(request_id))
        .configure(configure)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers and every projection is within its lag
/// bound (`CUSTODIA_MAX_PROJECTION_LAG_SECONDS`, default 30).
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.projections.lag(&*state.ports.store).await {
        Ok(lags) => {
            let bound = crate::projections::max_lag().as_secs_f64();
            let behind: Vec<_> = lags
                .iter()
                .filter(|lag| lag.seconds > bound)
                .map(
                    |lag| serde_json::json!({ "projection": lag.name, "lag_seconds": lag.seconds }),
                )
                .collect();
            if behind.is_empty() {
                HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
            } else {
                HttpResponse::ServiceUnavailable().json(serde_json::json!({
                    "status": "unavailable", "checks": { "projections": behind }
                }))
            }
        }
        Err(error) => {
            tracing::warn!(%error, "not ready");
            HttpResponse::ServiceUnavailable().json(
                serde_json::json!({ "status": "unavailable", "checks": { "database": "down" } }),
            )
        }
    }
}

/// Prometheus metrics; projection lag is measured now.
async fn metrics(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    match &state.metrics_access {
        MetricsAccess::Open => {}
        MetricsAccess::Token(token) => {
            use subtle::ConstantTimeEq;
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "send the metrics token as a bearer token",
                ));
            }
        }
        MetricsAccess::Closed => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "metrics are closed: set CUSTODIA_METRICS_TOKEN (or CUSTODIA_METRICS_PUBLIC=true)",
            ))
        }
    }
    match state.projections.lag(&*state.ports.store).await {
        Ok(lags) => {
            for lag in lags {
                state.metrics.projection_lag(lag.name, lag.seconds);
            }
        }
        Err(error) => tracing::warn!(%error, "projection lag unavailable"),
    }
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(state.metrics.encode()))
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.signer.jwks())
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    tenant_id: String,
    email: String,
    password: String,
    one_time_code: Option<String>,
    /// A browser session: the tokens go into HttpOnly cookies (see `browser`).
    #[serde(default)]
    cookies: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
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

async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = tenant(&body.tenant_id)?;
    state.limits.check_account(tenant, &body.email)?;
    let Some(key) = idempotency::key(&request)? else {
        return login_once(&state, &request, &body).await;
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
    idempotency::once(&state, Policy::AUTH, &scope, &sent, current, |_| {
        login_once(&state, &request, &body)
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
            .find(|cookie| cookie.name() == crate::browser::REFRESH)
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
    body: &LoginRequest,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::now();
    let tenant = tenant(&body.tenant_id)?;
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
    crate::browser::set(
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

async fn refresh(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let now = Timestamp::now();
    let (presented, cookies) = match &body.refresh_token {
        Some(token) => (token.clone(), false),
        None => {
            let cookie = request.cookie(crate::browser::REFRESH).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION",
                    "give refresh_token (or send the refresh cookie)",
                )
            })?;
            crate::browser::check_csrf(&request)?;
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
    idempotency::once(&state, Policy::AUTH, &scope, &sent, current, |_| run()).await
}

/// The access token of a request (bearer header or browser cookie); a
/// cookie-authenticated request must also pass the CSRF check.
fn access_token(request: &HttpRequest) -> Result<String, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "a bearer token is required",
        )
    };
    let (value, from_cookie) = crate::browser::access_token(request).ok_or_else(unauthenticated)?;
    if from_cookie {
        crate::browser::check_csrf(request)?;
    }
    value
        .strip_prefix("Bearer ")
        .map(str::to_owned)
        .ok_or_else(unauthenticated)
}

/// Ends the session of the presented access token, at once.
async fn logout(
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
        crate::browser::clear(&mut response);
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
        &sent,
        async |_: &StoredResponse| true,
        |first_seen| run(idempotency::command_id(&scope, first_seen, 0)),
    )
    .await
}
