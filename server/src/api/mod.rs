//! The REST API under `/api`: a thin adapter from HTTP to the broker.
//!
//! - [`topics`]: create, list, read and delete topics.
//! - [`messages`]: publish, and read a topic's history.
//! - [`server`]: health, stats and the stats history.
//! - [`events`]: Server-Sent Events, per topic and for several topics.
//! - [`openapi`]: the OpenAPI document of all of the above, served at
//!   `GET /api/openapi.json`.
//! - [`error`]: [`ApiError`], the one place errors become responses.
//!
//! Each handler carries its `#[utoipa::path]` description, and the router
//! and the document are built from the same list ([`routes`]), so a route
//! cannot be served without being documented, nor documented without
//! being served.
//!
//! Bodies are read as bytes and parsed here, so that every malformed body,
//! whatever its content type, is a contract `BAD_REQUEST` with a message
//! saying what is wrong, and an oversized one is `PAYLOAD_TOO_LARGE`.

mod connections;
mod error;
mod events;
mod messages;
pub mod openapi;
mod server;
mod topics;

pub use error::ApiError;
/// The REST reads as values, for the UI's server-side rendering: it shows
/// what REST would answer, built by the same code.
pub(crate) use messages::history_page;
pub(crate) use server::{stats_history_of, stats_of};
pub(crate) use topics::{presence_of, topic_detail, topic_list};

/// The `{name}` of a topic route. Unlike axum's `Path`, whose rejection is
/// plain text, a name that does not decode (`%FF`) is a contract
/// `BAD_REQUEST` with the JSON error body (found by the `rest_bodies` fuzzer).
pub(super) struct TopicName(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TopicName {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(name)| TopicName(name))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

use crate::auth::{Access, Need};
use crate::broker::HistoryRange;
use crate::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::OriginalUri;
use axum::http::{Method, StatusCode};
use axum::Router;
use bytes::Bytes;
use protocol::ErrorCode;
use serde::de::DeserializeOwned;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

/// The routes under `/api`, each declared once: its handlers (which carry
/// their OpenAPI operation) and what a caller needs to reach it. The
/// router, the document and the guard's [`Access`] all come from here, so
/// a route cannot be served without a role or a description.
fn routes() -> Declared {
    use crate::auth::Role::{Admin, Publish, Subscribe};
    use Need::{AnyKey, Open, Role};
    Declared::default()
        .route(Open, routes!(server::health))
        .route(AnyKey, routes!(server::stats))
        .route(AnyKey, routes!(server::stats_history))
        .route(AnyKey, routes!(topics::list_topics))
        .route(Role(Admin), routes!(topics::create_topic))
        .route(AnyKey, routes!(topics::get_topic))
        .route(Role(Admin), routes!(topics::delete_topic))
        .route(Role(Subscribe), routes!(messages::history))
        .route(Role(Subscribe), routes!(topics::presence))
        .route_with_query_token(Role(Subscribe), routes!(events::topic_events))
        .route_with_query_token(Role(Subscribe), routes!(events::events))
        .route(Role(Admin), routes!(connections::list))
        .route(Role(Admin), routes!(connections::get, connections::close))
        .route(Role(Publish), routes!(messages::publish))
        .route(Role(Publish), routes!(messages::publish_batch))
        .route(Open, routes!(openapi::document))
}

/// Routes with their needs, as [`routes`] declares them.
#[derive(Default)]
struct Declared {
    router: OpenApiRouter<AppState>,
    access: Access,
}

impl Declared {
    /// Adds the handlers of one `routes!` (one path) and what each of their
    /// methods needs. `HEAD` is answered by a `GET` handler and needs what it
    /// needs ([`Access::need`]).
    fn route(mut self, need: Need, handlers: UtoipaMethodRouter<AppState>) -> Self {
        for (path, item) in &handlers.1.paths {
            let operations = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::PATCH, item.patch.is_some()),
            ];
            for (method, present) in operations {
                if present {
                    self.access.declare(method, &format!("/api{path}"), need);
                }
            }
        }
        self.router = self.router.routes(handlers);
        self
    }

    /// [`Declared::route`] for a route that also takes the key as
    /// `?token=` (`EventSource` cannot set headers). Only the SSE routes
    /// do: a key in a URL ends up in logs and browser history, so no other
    /// REST route accepts one.
    fn route_with_query_token(
        mut self,
        need: Need,
        handlers: UtoipaMethodRouter<AppState>,
    ) -> Self {
        for path in handlers.1.paths.keys() {
            self.access.accept_query_token(&format!("/api{path}"));
        }
        self.route(need, handlers)
    }
}

/// The router nested at `/api`, and what each of its routes needs (with
/// `/api` in front, as the guard sees them).
pub fn router() -> (Router<AppState>, Access) {
    let Declared { router, access } = routes();
    let (router, _) = router.split_for_parts();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    (router, access)
}

/// The OpenAPI operations of every route.
fn operations() -> utoipa::openapi::OpenApi {
    routes().router.split_for_parts().1
}

type ApiResult<T> = Result<T, ApiError>;

/// `?last_n=N` or `?since_seq=S` (not both); neither means the whole history.
fn history_range(query: &str) -> ApiResult<HistoryRange> {
    let mut last_n = None;
    let mut since_seq = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "last_n" => &mut last_n,
            "since_seq" => &mut since_seq,
            _ => continue,
        };
        let n: u64 = value.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "{key} must be a non-negative integer, got {value:?}"
            ))
        })?;
        *slot = Some(n);
    }
    match (last_n, since_seq) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give last_n or since_seq, not both")),
        (Some(n), None) => Ok(HistoryRange::LastN(n)),
        (None, Some(s)) => Ok(HistoryRange::SinceSeq(s)),
        (None, None) => Ok(HistoryRange::All),
    }
}

fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is over the size limit",
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    // serde reads a struct from an array too (`[null, 1]` as `{id, payload}`):
    // the contract's bodies are objects, so anything else is refused here.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some() && first != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// 405 for a known route with the wrong method. The contract has no code of
/// its own for it; `BAD_REQUEST` is the closest, with the status saying 405.
async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: ErrorCode::BadRequest,
        message: format!("method {method} is not allowed: {method} {}", uri.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_parsing() {
        assert_eq!(history_range("").unwrap(), HistoryRange::All);
        assert_eq!(history_range("last_n=3").unwrap(), HistoryRange::LastN(3));
        assert_eq!(
            history_range("since_seq=7&x=1").unwrap(),
            HistoryRange::SinceSeq(7)
        );
        assert!(history_range("last_n=1&since_seq=2").is_err());
        assert!(history_range("last_n=-1").is_err());
        assert!(history_range("last_n=").is_err());
    }

    #[test]
    fn bodies_are_json_objects() {
        use protocol::{CreateTopic, PublishMessage};
        let body = |text: &'static str| Ok(Bytes::from_static(text.as_bytes()));
        let created: CreateTopic = json_body(body(" {\"name\": \"a\"}")).unwrap();
        assert_eq!(created.name, "a");
        // serde alone would read these arrays as the structs' fields.
        let refused = json_body::<CreateTopic>(body("[\"a\"]")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        assert!(json_body::<PublishMessage>(body("\n[null, 1]")).is_err());
        assert!(json_body::<PublishMessage>(body("")).is_err());
    }
}
