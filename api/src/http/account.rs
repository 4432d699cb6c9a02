//! The account flows' endpoints (ADR 0013), open to anyone who holds a
//! link (or asks for one):
//!
//! - `POST /auth/password-reset {tenant, email}`: always `202` with the
//!   same body, answered before anything is looked up: the work goes to a
//!   bounded queue, so neither the answer nor its timing says whether the
//!   address has an account;
//! - `POST /auth/password-reset/confirm {tenant, token, password}`;
//! - `POST /auth/invitation/accept {tenant, token, password}`;
//! - `POST /auth/verify-email {tenant, token}`.
//!
//! A refused link answers `400` with a typed code (`INVALID_TOKEN`,
//! `EXPIRED`, `USED`, `REVOKED`, `WRONG_TENANT`) and writes nothing.

use actix_web::{web, HttpRequest, HttpResponse};
use custodia_application::commands::account::{
    accept_invitation, confirm_password_reset, request_password_reset, verify_email,
};
use custodia_application::commands::Ports;
use custodia_domain::{TenantId, Timestamp};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::{ApiError, AppState};

/// Reset requests waiting to be worked on. A full queue drops the request
/// (and counts it): the answer is the same either way.
#[derive(Clone)]
pub struct ResetQueue {
    sender: mpsc::Sender<(TenantId, Zeroizing<String>)>,
}

/// How many reset requests may wait.
pub const RESET_QUEUE: usize = 1024;

impl ResetQueue {
    /// The queue, and its worker (one request at a time, in order).
    pub fn start(ports: Ports) -> ResetQueue {
        let (sender, mut receiver) = mpsc::channel::<(TenantId, Zeroizing<String>)>(RESET_QUEUE);
        tokio::spawn(async move {
            while let Some((tenant, email)) = receiver.recv().await {
                match request_password_reset(&ports, tenant, &email).await {
                    Ok(sent) => tracing::debug!(sent, "password reset request handled"),
                    Err(error) => tracing::warn!(%error, "a password reset request failed"),
                }
            }
        });
        ResetQueue { sender }
    }

    /// Queues the request; `false` if the queue is full.
    fn offer(&self, tenant: TenantId, email: Zeroizing<String>) -> bool {
        self.sender.try_send((tenant, email)).is_ok()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetRequest {
    /// The tenant's slug or id.
    tenant: String,
    email: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkWithPassword {
    tenant: String,
    token: Zeroizing<String>,
    password: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkOnly {
    tenant: String,
    token: Zeroizing<String>,
}

/// The tenant a request names by its slug or id (one no tenant holds reads
/// as a tenant that does not exist).
async fn tenant(state: &AppState, text: &str) -> Result<TenantId, ApiError> {
    super::auth::named_tenant(state, Some(text), None).await
}

/// The same answer for every accepted reset request.
fn accepted() -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({
        "status": "accepted",
        "message": "If the address belongs to an account that may sign in, a link to reset its password is on its way.",
    }))
}

pub(super) async fn password_reset(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = tenant(&state, &body.tenant).await?;
    let body = body.into_inner();
    // The address is counted by a digest, so no address is kept in memory.
    let normalised = Zeroizing::new(body.email.trim().to_lowercase());
    let key = Sha256::new()
        .chain_update(tenant.as_uuid().as_bytes())
        .chain_update(normalised.as_bytes())
        .finalize();
    state.limits.check_reset(&hex::encode(key))?;
    if !state.resets.offer(tenant, body.email) {
        state.metrics.reset_dropped();
        tracing::warn!("the password reset queue is full; a request was dropped");
    }
    Ok(accepted())
}

pub(super) async fn password_reset_confirm(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LinkWithPassword>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = tenant(&state, &body.tenant).await?;
    // Every session ends in the same append; cached sessions go with it
    // (any append invalidates the cache).
    let now = Timestamp::now();
    confirm_password_reset(&state.ports, tenant, &body.token, &body.password, now).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn accept(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LinkWithPassword>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = tenant(&state, &body.tenant).await?;
    let now = Timestamp::now();
    accept_invitation(&state.ports, tenant, &body.token, &body.password, now).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn verify(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LinkOnly>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(&request)?;
    let tenant = tenant(&state, &body.tenant).await?;
    verify_email(&state.ports, tenant, &body.token, Timestamp::now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
