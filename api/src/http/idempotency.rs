//! The `Idempotency-Key` request header (IETF httpapi draft) at the edge:
//! GraphQL mutations and the `/auth` endpoints that change state run once
//! per key. A retry with the same key and the same request gets the first
//! answer again, marked `Idempotent-Replayed: true`, and appends nothing;
//! the same key with another request is refused (422); a retry while the
//! first request still runs is told to wait (409). Keys are scoped per
//! endpoint, tenant and actor, and remembered for 24 hours
//! (`custodia_infrastructure::idempotency`).
//!
//! Underneath, a GraphQL mutation's command ids are derived from the key
//! ([`command_id`]), so even a retry that runs again (its first attempt
//! stopped before answering) finds its commands committed in the store.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use custodia_domain::{CommandId, Timestamp};
use custodia_infrastructure::idempotency::{Claim, StoredResponse};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::{ApiError, AppState};

pub const HEADER: &str = "idempotency-key";

/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// The key a request carries, if any: a structured-field string (`"…"`,
/// as the draft has it) or the same text bare; 1 to 255 visible ASCII
/// characters, and one header only.
pub fn key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "Idempotency-Key must be one quoted string of 1 to 255 visible ASCII characters",
        )
    };
    let mut values = request.headers().get_all(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let visible = key
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if key.is_empty() || key.len() > MAX_KEY_LEN || !visible {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

/// A digest of `parts`, each length-prefixed so that no two lists of parts
/// share one.
pub fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The `n`th command id of a request run under a key first seen at
/// `first_seen` in `scope`: the same on every retry of that request.
pub fn command_id(scope: &[u8; 32], first_seen: Timestamp, n: u32) -> CommandId {
    let bytes = digest(&[
        b"custodia.command-id.v1",
        scope,
        &first_seen.0.to_be_bytes(),
        &n.to_be_bytes(),
    ]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    CommandId::from_uuid(uuid::Builder::from_custom_bytes(id).into_uuid())
        .unwrap_or_else(|_| CommandId::from_uuid(Uuid::now_v7()).expect("v7 is never nil"))
}

/// The headers that belong to an answer and are replayed with it.
const KEPT_HEADERS: &[&str] = &["content-type", "set-cookie", "x-consistency-token"];

/// Codes of failures that a retry may well not meet again: an answer with
/// one is not kept (the retry runs).
const TRANSIENT: &[&str] = &["INTERNAL", "RATE_LIMITED", "CONCURRENCY"];

/// How an endpoint's keys behave.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a key is remembered (microseconds).
    pub lifetime: i64,
    /// Keep only successful answers (the `/auth` endpoints: a failed login
    /// is run again, and counted again, rather than remembered).
    pub successes_only: bool,
}

impl Policy {
    /// GraphQL mutations: a day, every answer but a transient failure.
    pub const MUTATIONS: Policy = Policy {
        lifetime: custodia_infrastructure::idempotency::KEY_LIFETIME_MICROS,
        successes_only: false,
    };
    /// `/auth`: answers hold credentials, so five minutes (long enough for
    /// a client's retries), successes only.
    pub const AUTH: Policy = Policy {
        lifetime: 5 * 60_000_000,
        successes_only: true,
    };
}

/// Runs `run` once for `key` in `scope` (a digest of the endpoint, tenant
/// and actor; the answer is kept as `tenant`'s, withdrawn when a subject of
/// that tenant is erased) and this request (`request`, a digest of all it says): see
/// the module's documentation. `run` gets the time the key was first seen.
/// A kept answer is replayed only if `replayable` still agrees (an answer
/// that holds credentials no longer current is not handed out again: the
/// request runs as if it had no key).
pub async fn once<F, Fut, R>(
    state: &AppState,
    policy: Policy,
    scope: &[u8; 32],
    tenant: Option<custodia_domain::TenantId>,
    request: &[u8; 32],
    replayable: R,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Timestamp) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
    R: AsyncFnOnce(&StoredResponse) -> bool,
{
    let claim = state
        .idempotency
        .claim(
            scope,
            tenant.map(|t| t.as_uuid()),
            request,
            Timestamp::now(),
            policy.lifetime,
        )
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let first_seen = match claim {
        Claim::Replay(stored) if replayable(&stored).await => return Ok(replay(stored)),
        Claim::Replay(_) => Timestamp::now(),
        Claim::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for another request",
            ))
        }
        Claim::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_IN_USE",
                "a request with this Idempotency-Key is still running; retry shortly",
            )
            .retry_after(1))
        }
        Claim::Run { first_seen } => first_seen,
    };
    let response = run(first_seen)
        .await
        .unwrap_or_else(|error| error.error_response());
    let status = response.status();
    let (head, body) = response.into_parts();
    let body = body
        .try_into_bytes()
        .map_err(|_| ApiError::internal(&"an answer that is not in memory"))?;
    let keep = if policy.successes_only {
        status.is_success()
    } else {
        !status.is_server_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && !has_transient_error(&body)
    };
    if keep {
        let stored = StoredResponse {
            status: status.as_u16(),
            headers: head
                .headers()
                .iter()
                .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            body: body.to_vec(),
        };
        state
            .idempotency
            .complete(scope, &stored)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    } else if let Err(error) = state.idempotency.release(scope).await {
        tracing::warn!(%error, "could not release an idempotency key");
    }
    Ok(head.set_body(body).map_into_boxed_body())
}

/// Does a JSON answer (REST `{"error": …}` or GraphQL `{"errors": […]}`)
/// report a transient failure?
fn has_transient_error(body: &[u8]) -> bool {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let rest = answer["error"]["code"].as_str().into_iter();
    let graphql = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["extensions"]["code"].as_str());
    rest.chain(graphql).any(|code| TRANSIENT.contains(&code))
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        response.append_header((name.as_str(), value.as_str()));
    }
    response.insert_header(("idempotent-replayed", "true"));
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response.body(stored.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_told_apart_from_answers() {
        assert!(has_transient_error(
            br#"{"error":{"code":"INTERNAL","message":"x"}}"#
        ));
        assert!(has_transient_error(
            br#"{"data":{"a":1,"b":null},"errors":[{"message":"x","extensions":{"code":"CONCURRENCY"}}]}"#
        ));
        assert!(!has_transient_error(
            br#"{"data":null,"errors":[{"message":"x","extensions":{"code":"FORBIDDEN"}}]}"#
        ));
        assert!(!has_transient_error(br#"{"data":{"a":1}}"#));
        assert!(!has_transient_error(b"not json"));
    }

    #[test]
    fn derived_command_ids_are_stable_per_key_use_and_position() {
        let scope = digest(&[b"scope"]);
        let at = Timestamp(5);
        assert_eq!(command_id(&scope, at, 0), command_id(&scope, at, 0));
        assert_ne!(command_id(&scope, at, 0), command_id(&scope, at, 1));
        assert_ne!(
            command_id(&scope, at, 0),
            command_id(&scope, Timestamp(6), 0)
        );
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}
