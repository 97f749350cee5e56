//! The connections board: `GET /api/connections`, `GET` and `DELETE
//! /api/connections/{id}` (role `admin`). Each instance lists and closes
//! its own connections.

use super::openapi::{BadRequest, ConnectionNotFound, Forbidden, Unauthorized};
use super::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use protocol::{ConnectionClosed, ConnectionInfo, ConnectionList, ErrorCode};

/// The `{id}` of a connection route: a decimal id.
pub(super) struct ConnectionId(u64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectionId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        id.parse().map(ConnectionId).map_err(|_| {
            ApiError::bad_request(format!("a connection id is a decimal number, got {id:?}"))
        })
    }
}

fn unknown(id: u64) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no open connection {id} on this instance"),
    )
}

/// Every open connection of this instance
///
/// One row per WebSocket connection, by id: its subscriptions (exact names
/// and patterns) with their `lag` (the topic's `seq` minus the last `seq`
/// written to the connection; for a pattern the sum over the topics it
/// follows), its queue in frames and bytes, and what it was sent.
#[utoipa::path(
    get,
    path = "/connections",
    tag = "connections",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The connections, by id.", body = ConnectionList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
pub(super) async fn list(State(state): State<AppState>) -> Json<ConnectionList> {
    Json(ConnectionList {
        connections: state.broker.connections(),
    })
}

/// One open connection
#[utoipa::path(
    get,
    path = "/connections/{id}",
    tag = "connections",
    security(("bearer" = []), ("apiKey" = [])),
    params(("id" = u64, Path, description = "The connection's id.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionInfo),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = ConnectionNotFound),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    ConnectionId(id): ConnectionId,
) -> ApiResult<Json<ConnectionInfo>> {
    state
        .broker
        .connection(id)
        .map(Json)
        .ok_or_else(|| unknown(id))
}

/// Close a connection
///
/// A WebSocket gets `{"type":"info","msg":"closed_by_admin"}` and close
/// code 4010; its subscriptions end as on any close.
#[utoipa::path(
    delete,
    path = "/connections/{id}",
    tag = "connections",
    security(("bearer" = []), ("apiKey" = [])),
    params(("id" = u64, Path, description = "The connection's id.")),
    responses(
        (status = 200, description = "It is being closed.", body = ConnectionClosed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = ConnectionNotFound),
    ),
)]
pub(super) async fn close(
    State(state): State<AppState>,
    ConnectionId(id): ConnectionId,
) -> ApiResult<Json<ConnectionClosed>> {
    if !state.broker.close_connection(id) {
        return Err(unknown(id));
    }
    Ok(Json(ConnectionClosed {
        status: "closed".into(),
        connection: id,
    }))
}
