//! Health, readiness, metrics and the published signing keys.

use super::{ApiError, AppState, MetricsAccess};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers and every projection is within its lag
/// bound (`CUSTODIA_MAX_PROJECTION_LAG_SECONDS`, default 30).
pub(super) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.projections.lag(&*state.ports.store).await {
        Ok(lags) => {
            let bound = state.max_projection_lag.as_secs_f64();
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
pub(super) async fn prometheus(
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
                .and_then(super::browser::bearer_token)
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

/// The checkpoint verifier keys (C2SP signed-note form), the signing one
/// first, one per line: what an auditor trusts `custodia verify
/// --against` with.
pub(super) async fn checkpoint_keys(state: web::Data<AppState>) -> HttpResponse {
    match state.keys.checkpoint_verifiers().await {
        Ok(keys) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .content_type("text/plain; charset=utf-8")
            .body(
                keys.iter()
                    .map(|key| format!("{key}\n"))
                    .collect::<String>(),
            ),
        Err(error) => {
            tracing::error!(%error, "the checkpoint keys cannot be read");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

pub(super) async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.signer.jwks())
}
