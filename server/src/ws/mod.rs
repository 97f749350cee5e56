//! The WebSocket endpoint at `/ws`: the upgrade and its limits. The session
//! itself (one reader, one writer per connection) is in [`session`].

pub mod session;

use crate::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if state.shutdown.is_triggered() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let max = state.config.max_frame_bytes;
    let settings = session::Settings {
        heartbeat: state.config.heartbeat_interval,
    };
    let broker = state.broker.clone();
    let shutdown = state.shutdown.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        // Frames are coalesced in this buffer and written once it fills or
        // the batch ends, so one socket write carries many events.
        .write_buffer_size(64 * 1024)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            shutdown
                .clone()
                .track(session::run(socket, broker, settings, shutdown))
        })
}
