//! Subscriptions over WebSocket (`graphql-transport-ws`, and the older
//! `graphql-ws` of subscriptions-transport-ws): a tenant's audit events,
//! live, as they are committed.
//!
//! Credentials come in the `connection_init` payload
//! (`{"authorization": "Bearer <token or API key>"}`), or from the browser
//! session cookie when the handshake's `Origin` is this host or an allowed
//! CORS origin (a cross-site page cannot ride on the cookie).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::http::{WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Context, Data, Result, Subscription, ID};
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::{ChainId, LogCursor};
use custodia_projections::Follower;
use futures_util::{Stream, StreamExt};

use super::types::AuditEvent;
use super::RequestData;
use crate::auth_cache::FRESH_FOR;
use crate::server::AppState;

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The tenant's audit events from now on, in log order. Needs `audit.read`.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
    ) -> Result<impl Stream<Item = AuditEvent>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::AuditRead, None)?;
        // From where the audit projection is: "now", give or take its lag.
        let start = data
            .state
            .models
            .checkpoints()
            .await
            .map_err(super::store_failure)?
            .into_iter()
            .find(|c| c.name == "audit")
            .map_or(LogCursor::START, |c| c.cursor);
        let follower = Follower::new(data.state.ports.store.clone(), start, 256);
        let chain = ChainId::Tenant(tenant);
        Ok(futures_util::stream::unfold(
            (follower, VecDeque::new()),
            move |(mut follower, mut pending)| async move {
                loop {
                    if let Some(event) = pending.pop_front() {
                        return Some((event, (follower, pending)));
                    }
                    match follower.next_batch().await {
                        Ok(events) => pending.extend(
                            events
                                .iter()
                                .filter(|e| e.chain == chain)
                                .map(|e| AuditEvent(custodia_projections::identity::audit_row(e))),
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "audit subscription ended");
                            return None;
                        }
                    }
                }
            },
        ))
    }
}

/// May the handshake's browser session cookie be used? Only for a page of
/// this host or of an allowed origin.
fn same_origin(state: &AppState, request: &HttpRequest) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true; // not a browser
    };
    let host = request.connection_info().host().to_owned();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
        || state.cors_origins.iter().any(|allowed| allowed == origin)
}

/// `GET /graphql` with `Upgrade: websocket`.
pub async fn websocket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let offered = request
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("graphql-transport-ws");
    let protocol = offered
        .split(',')
        .find_map(|p| Protocols::from_str(p.trim()).ok())
        .ok_or_else(|| actix_web::error::ErrorBadRequest("unsupported WebSocket subprotocol"))?;
    let (response, mut session, messages) =
        actix_ws::handle_with_protocols(&request, body, &[protocol.sec_websocket_protocol()])?;
    let cookie_token = crate::browser::access_token(&request)
        .filter(|(_, from_cookie)| *from_cookie && same_origin(&state, &request))
        .map(|(token, _)| token);
    let state = state.get_ref().clone();
    let incoming = messages.filter_map(|message| async move {
        match message {
            Ok(actix_ws::Message::Text(text)) => Some(text.into_bytes().to_vec()),
            Ok(actix_ws::Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        }
    });
    let schema = state.schema.clone();
    let init_state = state.clone();
    // The credentials the connection was opened with, and whom they named.
    let opened: Arc<Mutex<Option<(String, Principal)>>> = Arc::default();
    let remember = opened.clone();
    let socket = async_graphql::http::WebSocket::new(schema, incoming, protocol)
        .on_connection_init(move |payload| async move {
            let token = payload
                .get("authorization")
                .or_else(|| payload.get("Authorization"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or(cookie_token);
            let auth = match token {
                Some(token) => {
                    let auth = super::http::authenticate_token(&init_state, &token)
                        .await
                        .map_err(|e| async_graphql::Error::new(e.message().to_owned()))?;
                    *remember.lock().expect("not poisoned") = Some((token, auth.principal.clone()));
                    Some(auth)
                }
                None => None,
            };
            let mut data = Data::default();
            data.insert(RequestData {
                state: init_state,
                auth,
                written: Arc::new(Mutex::new(None)),
            });
            Ok(data)
        });
    actix_web::rt::spawn(async move {
        let mut socket = std::pin::pin!(socket);
        let mut signal = state.ports.store.append_signal();
        let mut next_check = tokio::time::Instant::now();
        loop {
            // After an append (or FRESH_FOR without one), and at most every
            // RECHECK_AT_MOST, so a busy log costs each connection at most
            // ten checks a second.
            let due = async {
                signal.wait(FRESH_FOR).await;
                tokio::time::sleep_until(next_check).await;
            };
            let message = tokio::select! {
                message = socket.next() => message,
                () = due => {
                    signal.mark_seen();
                    next_check = tokio::time::Instant::now() + RECHECK_AT_MOST;
                    if still_allowed(&state, &opened).await {
                        continue;
                    }
                    // Access was removed (logout, suspension, a role
                    // revoked, …): the connection ends as forbidden.
                    let _ = session
                        .close(Some(actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Other(FORBIDDEN),
                            description: Some("Forbidden".into()),
                        }))
                        .await;
                    return;
                }
            };
            let sent = match message {
                Some(WsMessage::Text(text)) => session.text(text).await,
                Some(WsMessage::Close(code, reason)) => {
                    let _ = session
                        .close(Some(actix_ws::CloseReason {
                            code: code.into(),
                            description: Some(reason),
                        }))
                        .await;
                    return;
                }
                None => break,
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}

/// The close code for "forbidden" in `graphql-transport-ws`.
const FORBIDDEN: u16 = 4403;

/// The shortest time between two checks of one connection's credentials.
const RECHECK_AT_MOST: std::time::Duration = std::time::Duration::from_millis(100);

/// Do the connection's credentials still authenticate, with the same
/// rights as when it was opened? Checked whenever the log may have changed
/// (and at least every [`FRESH_FOR`]), so a logout, a suspension or a role
/// revoked ends an open subscription as it ends the next request. A change
/// of rights either way closes it: the client reconnects with what it has
/// now. An anonymous connection has nothing to lose.
async fn still_allowed(state: &AppState, opened: &Mutex<Option<(String, Principal)>>) -> bool {
    let Some((token, principal)) = opened.lock().expect("not poisoned").clone() else {
        return true;
    };
    match super::http::authenticate_token(state, &token).await {
        Ok(auth) => auth.principal == principal,
        // A storage hiccup is not a reason to drop a client.
        Err(error) => error.code() == "INTERNAL",
    }
}
