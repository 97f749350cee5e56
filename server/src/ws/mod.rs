//! The WebSocket endpoint at `/ws`: the upgrade and its limits. The session
//! itself (one reader, one writer per connection) is in [`session`].

pub mod session;

use crate::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_triggered() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let max = state.config.max_frame_bytes;
    let settings = session::Settings {
        heartbeat: state.config.heartbeat_interval,
    };
    let broker = state.broker.clone();
    let shutdown = state.shutdown.clone();
    // The session outlives the upgrade request: it gets its own span, with
    // the upgrade's request id so the two can be joined in the logs.
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let span = tracing::info_span!(parent: None, "ws", request_id = %request_id);
    ws.max_message_size(max)
        .max_frame_size(max)
        // Small initial buffers: an idle connection should cost kilobytes,
        // not the 128 KiB default; they grow while a burst needs it.
        .read_buffer_size(4 * 1024)
        // Frames are coalesced in this buffer and written once it fills or
        // the batch ends, so one socket write carries many events.
        .write_buffer_size(16 * 1024)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            shutdown
                .clone()
                .track(session::run(socket, broker, settings, shutdown).instrument(span))
        })
}
