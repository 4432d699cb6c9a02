//! Subscriptions over WebSocket (`graphql-transport-ws`, and the older
//! `graphql-ws` of subscriptions-transport-ws): a tenant's audit events,
//! live, as they are committed.
//!
//! Credentials come in the `connection_init` payload
//! (`{"authorization": "Bearer <token or API key>"}`), or from the browser
//! session cookie when the handshake's `Origin` is this host or an allowed
//! CORS origin (a cross-site page cannot ride on the cookie).

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::http::{WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Context, Data, Result, Subscription, ID};
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::ChainId;
use futures_util::{Stream, StreamExt};

use super::types::AuditEvent;
use super::RequestData;
use crate::http::auth_cache::FRESH_FOR;
use crate::http::AppState;

pub struct Subscription;

/// Live feeds over WebSocket (`graphql-transport-ws`).
#[Subscription]
impl Subscription {
    /// The tenant's audit events from now on, in log order. Needs `audit.read`.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
    ) -> Result<impl Stream<Item = AuditEvent>> {
        let data = ctx.data_unchecked::<RequestData>();
        let tenant = data.tenant(tenant_id.as_ref(), "tenantId")?;
        data.authorize(tenant, Permission::AuditRead, None)?;
        let feed = data
            .state
            .audit_feed
            .subscribe(data.state.ports.store.clone(), &*data.state.models)
            .await
            .map_err(super::store_failure)?;
        let chain = ChainId::Tenant(tenant);
        Ok(futures_util::stream::unfold(
            feed,
            move |mut feed| async move {
                loop {
                    match feed.recv().await {
                        Ok(item) if item.0 == chain => {
                            // Rows made by `audit_row` always read back.
                            let event = AuditEvent::from_row(item.1.clone()).ok()?;
                            return Some((event, feed));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(
                                missed,
                                "an audit subscription fell behind and was ended"
                            );
                            return None;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}

/// May the handshake's browser session cookie be used? Only for a page of
/// this host or of an allowed origin.
fn same_origin(cors_origins: &[String], request: &HttpRequest) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true; // not a browser
    };
    // The host the browser connected to: `Host` itself, since the
    // forwarded headers that actix's connection info also reads could be
    // sent by anyone (a trusted proxy passes `Host` on).
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
        || cors_origins.iter().any(|allowed| allowed == origin)
}

/// `GET /graphql` with `Upgrade: websocket`.
pub async fn websocket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    // A connection counts as a request against the client's rate.
    state.limits.check_graphql(&request)?;
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
    let cookie_token = crate::http::browser::access_token(&request)
        .filter(|(_, from_cookie)| *from_cookie && same_origin(&state.cors_origins, &request))
        .map(|(token, _)| token);
    let state = state.get_ref().clone();
    // A connection runs at most MAX_OPERATIONS operations at once; one more
    // ends it (closed with 4429).
    let operations = Arc::new(Mutex::new(Operations::default()));
    let counted = operations.clone();
    // Pings are answered; a Close (or a broken frame) ends the input, and
    // with it the connection, which is then closed in reply.
    let pongs = session.clone();
    let incoming = messages
        .take_while(|message| {
            std::future::ready(!matches!(message, Ok(actix_ws::Message::Close(_)) | Err(_)))
        })
        .filter_map(move |message| {
            let mut pongs = pongs.clone();
            async move {
                match message {
                    Ok(actix_ws::Message::Text(text)) => Some(text.into_bytes().to_vec()),
                    Ok(actix_ws::Message::Binary(bytes)) => Some(bytes.to_vec()),
                    Ok(actix_ws::Message::Ping(bytes)) => {
                        let _ = pongs.pong(&bytes).await;
                        None
                    }
                    _ => None,
                }
            }
        })
        .take_while(move |message| {
            let within = counted.lock().expect("not poisoned").count(message);
            std::future::ready(within)
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
                command_ids: Default::default(),
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
                Some(WsMessage::Text(text)) => {
                    // An operation the server ended no longer counts.
                    operations.lock().expect("not poisoned").ended(&text);
                    session.text(text).await
                }
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
        let reason =
            operations
                .lock()
                .expect("not poisoned")
                .exceeded
                .then(|| actix_ws::CloseReason {
                    code: actix_ws::CloseCode::Other(TOO_MANY),
                    description: Some("Too many operations".into()),
                });
        let _ = session.close(reason).await;
    });
    Ok(response)
}

/// The most operations one connection runs at once.
pub const MAX_OPERATIONS: usize = 32;

/// The close code for "too many" (as `graphql-transport-ws` uses 4429).
const TOO_MANY: u16 = 4429;

/// The operations a connection has started and not stopped.
#[derive(Default)]
struct Operations {
    running: std::collections::HashSet<String>,
    exceeded: bool,
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

impl Operations {
    /// Forgets an operation the server ended (its `complete` or `error`).
    fn ended(&mut self, sent: &str) {
        if !(sent.contains("\"complete\"") || sent.contains("\"error\"")) {
            return;
        }
        if let Ok(Envelope { kind, id: Some(id) }) = serde_json::from_str(sent) {
            if kind == "complete" || kind == "error" {
                self.running.remove(&id);
            }
        }
    }

    /// Counts a client message; false once the connection asks for more
    /// than [`MAX_OPERATIONS`] at once.
    fn count(&mut self, message: &[u8]) -> bool {
        let Ok(Envelope { kind, id: Some(id) }) = serde_json::from_slice(message) else {
            return true;
        };
        match kind.as_str() {
            "subscribe" | "start" => {
                self.running.insert(id);
                self.exceeded = self.running.len() > MAX_OPERATIONS;
                !self.exceeded
            }
            "complete" | "stop" => {
                self.running.remove(&id);
                true
            }
            _ => true,
        }
    }
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

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn same_origin_believes_the_host_header_only() {
        let request = |origin: &str, extra: Option<(&str, &str)>| {
            let mut request = TestRequest::get()
                .insert_header((header::HOST, "id.example"))
                .insert_header((header::ORIGIN, origin));
            if let Some(header) = extra {
                request = request.insert_header(header);
            }
            request.to_http_request()
        };
        assert!(same_origin(&[], &request("https://id.example", None)));
        assert!(!same_origin(&[], &request("https://evil.example", None)));
        // Forwarded headers do not make another origin the same.
        for forwarded in [
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "host=evil.example"),
        ] {
            assert!(!same_origin(
                &[],
                &request("https://evil.example", Some(forwarded))
            ));
        }
        let allowed = ["https://app.example".to_owned()];
        assert!(same_origin(&allowed, &request("https://app.example", None)));
        // No Origin: not a browser, so no ambient cookie to protect.
        assert!(same_origin(&[], &TestRequest::get().to_http_request()));
    }
}
