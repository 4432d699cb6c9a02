//! The HTTP edge: the application (`app`), its routes and middleware, the
//! state every handler reaches, the one error mapping, rate limits, and the
//! authentication endpoints. GraphQL lives in `crate::graphql`.

mod account;
mod auth;
pub mod auth_cache;
pub mod browser;
mod config;
mod errors;
mod health;
pub mod idempotency;
mod limits;
pub mod metrics;
mod middleware;
mod state;

pub use account::ResetQueue;
pub use config::Config;
pub use errors::{typed_errors, ApiError};
pub use limits::{AuthLimits, GRAPHQL_PER_IP};
pub use middleware::security_headers;
pub use state::{AppState, MetricsAccess};

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use auth::{login, logout, refresh};
use health::{checkpoint_keys, health, jwks, prometheus, ready};
use middleware::{hsts, request_id};

/// The largest JSON body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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
        .route("/checkpoints/keys", web::get().to(checkpoint_keys))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route(
            "/auth/password-reset",
            web::post().to(account::password_reset),
        )
        .route(
            "/auth/password-reset/confirm",
            web::post().to(account::password_reset_confirm),
        )
        .route("/auth/invitation/accept", web::post().to(account::accept))
        .route("/auth/verify-email", web::post().to(account::verify))
        .route("/metrics", web::get().to(prometheus))
        .route("/metrics", web::head().to(prometheus))
        .configure(crate::graphql::configure)
        .configure(crate::scim::configure)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such endpoint",
            ))
        }));
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
            header::HeaderName::from_static(crate::http::browser::CSRF_HEADER),
            header::HeaderName::from_static(crate::http::idempotency::HEADER),
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
