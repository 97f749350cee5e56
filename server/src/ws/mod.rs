//! The WebSocket endpoint at `/ws`: the upgrade with its checks (origin,
//! key, connection limit), done here by hand so the session gets the raw
//! TCP stream back. The framing is in [`codec`]; the session itself (one
//! reader, one writer per connection) in [`session`].

pub mod codec;
pub mod flusher;
pub mod session;
mod socket;

use crate::api::ApiError;
use crate::auth::{self, Credential, Need, Refusal, Role};
use crate::broker::Permits;
use crate::http_server::HttpStream;
use crate::AppState;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use protocol::ErrorCode;
use tracing::Instrument;

/// `SO_SNDBUF` of a WebSocket, as given to the kernel.
const SEND_BUFFER: usize = 64 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if state.shutdown.is_triggered() {
        return ApiError::new(ErrorCode::Unavailable, "the server is shutting down")
            .into_response();
    }
    // Cross-site WebSocket hijacking: a page of another origin must not
    // open a socket in its visitor's name.
    if !state.origins().permits(headers) {
        state
            .broker
            .totals()
            .refuse(crate::broker::Limit::OriginNotAllowed);
        return Refusal::Origin.into_response();
    }
    let key = auth::presented(headers, query.as_deref());
    let credential = match state.keys.authorize(key.as_ref(), Need::AnyKey) {
        Ok(credential) => credential,
        Err(refusal) => return refusal.into_response(),
    };
    // A key's roles are also the broker's check; a token's are checked by
    // the session, per request and topic, since a refresh changes them.
    let permits = match &credential {
        Credential::Token(_) => Permits::ALL,
        other => Permits {
            publish: other.allows(Role::Publish),
            subscribe: other.allows(Role::Subscribe),
        },
    };
    let standing = session::Standing::new(credential, state.keys.clone());
    let accept = match handshake(request.method(), headers) {
        Ok(accept) => accept,
        Err(refusal) => return refusal,
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Held by the session until it ends (or dropped if the upgrade fails).
    let Ok(slot) = state.connection_slots.clone().try_acquire_owned() else {
        state
            .broker
            .totals()
            .refuse(crate::broker::Limit::MaxConnections);
        return ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "this server holds its limit of {} connections (max_connections)",
                state.config.max_connections
            ),
        )
        .into_response();
    };
    let settings = session::Settings {
        heartbeat: state.config.heartbeat_interval,
        permits,
        max_message: state.config.max_frame_bytes,
        remote: None,
    };
    let broker = state.broker.clone();
    let shutdown = state.shutdown.clone();
    // The session outlives the upgrade request: it gets its own span, with
    // the upgrade's request id so the two can be joined in the logs.
    let span = tracing::info_span!(parent: None, "ws", request_id = %request_id);
    let session = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        // axum serves TCP streams: take ours back for lock-free halves.
        match upgraded.downcast::<TokioIo<HttpStream>>() {
            Ok(parts) => {
                let tcp = parts.io.into_inner().into_inner();
                // A small kernel send buffer: a slow reader's backlog then
                // waits in its bounded outbox, where drop_oldest signals
                // it, instead of megabytes of socket buffer (the kernel
                // doubles the value: 128 KiB).
                let socket = socket2::SockRef::from(&tcp);
                let _ = socket.set_send_buffer_size(SEND_BUFFER);
                // Half-open sockets: data (events, pings) the peer's kernel
                // has not acknowledged for two heartbeats fails the socket.
                let _ = socket.set_tcp_user_timeout(Some(2 * settings.heartbeat));
                let settings = session::Settings {
                    remote: tcp.peer_addr().ok(),
                    ..settings
                };
                // Shared, not split: the flusher writes to it too.
                let tcp = std::sync::Arc::new(tcp);
                session::run(
                    socket::Reading(std::sync::Arc::clone(&tcp)),
                    socket::Writing(std::sync::Arc::clone(&tcp)),
                    parts.read_buf,
                    broker,
                    settings,
                    standing,
                    shutdown,
                    Some(tcp),
                )
                .await;
            }
            Err(upgraded) => {
                let (input, output) = tokio::io::split(TokioIo::new(upgraded));
                session::run(
                    input,
                    output,
                    Default::default(),
                    broker,
                    settings,
                    standing,
                    shutdown,
                    None,
                )
                .await;
            }
        }
        drop(slot);
    };
    tokio::spawn(state.shutdown.track(session.instrument(span)));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and computes its
/// `Sec-WebSocket-Accept`; anything else gets a contract error.
#[allow(clippy::result_large_err)]
fn handshake(method: &Method, headers: &HeaderMap) -> Result<String, Response> {
    let bad = |message: &str| ApiError::bad_request(message).into_response();
    if method != Method::GET {
        let mut refusal = ApiError::bad_request("the WebSocket upgrade is a GET").into_response();
        *refusal.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        refusal
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Err(refusal);
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(bad(
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut refusal = bad("only WebSocket version 13 is supported");
        refusal.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(refusal);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => {
            Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        _ => Err(bad("Sec-WebSocket-Key is missing")),
    }
}
