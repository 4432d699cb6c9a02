//! What every response carries: security headers, HSTS over HTTPS,
//! request ids (and the request's log span and metrics).

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;

use super::AppState;
use tracing::Instrument;
use uuid::Uuid;

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
pub(super) async fn hsts(
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

/// Gives every request an id (the caller's `X-Request-Id` if it is a UUID,
/// else a new one), echoed on the response and attached to log lines.
pub(super) async fn request_id(
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
