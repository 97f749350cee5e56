//! The OpenAPI 3.1 document of the REST API, served at
//! `GET /api/openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` attributes via
//! [`super::routes`], the schemas from the wire types of the `protocol` crate (which
//! derive `ToSchema` on the server only). This module adds what belongs to
//! the API as a whole: the description (`openapi.md`), the security
//! schemes and the error responses, one per contract code, each narrowing
//! `code` to what that status can carry so a fuzzer can hold the server to it.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use protocol::{ErrorCode, RestError};
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, ToResponse};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "pubsub", description = include_str!("openapi.md")),
    modifiers(&SecuritySchemes),
    components(
        schemas(RestError),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            TopicNotFound,
            ConnectionNotFound,
            TopicExists,
            PayloadTooLarge,
            RateLimited,
            StreamLimited,
            Unavailable
        ),
    ),
    tags(
        (name = "topics", description = "Create, list, read and delete topics."),
        (name = "messages", description = "Publish to a topic and read its history."),
        (name = "server", description = "Health, counters and this document."),
        (name = "events", description = "Server-Sent Events: a topic's events (resumable with Last-Event-ID), or several topics and patterns on one stream."),
        (name = "connections", description = "The connections board: each open connection with its subscriptions, lag and queue; close one."),
    ),
)]
struct ApiDoc;

/// The whole document: the routes of [`super::routes`] under `/api`.
pub fn openapi() -> OpenApi {
    let operations = super::operations();
    ApiDoc::openapi().nest("/api", operations)
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document
///
/// The OpenAPI 3.1 description of the REST API, generated from the
/// server's code. Always open, even when authentication is on. The web UI
/// renders it at `/api-docs`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "server",
    responses((status = 200, description = "The OpenAPI document.",
               content_type = "application/json", body = Object)),
)]
pub(super) async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json())
}

/// `bearer` (`Authorization: Bearer KEY_OR_TOKEN`) and `apiKey`
/// (`X-API-Key: KEY`, keys only).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or JWT")
                    .description(Some(
                        "An API key, or a signed token (JWT: HS256, RS256 or ES256, as \
                         the server is configured), in `Authorization: Bearer ...` \
                         (needed only when the server is started with keys or a token \
                         secret or public key). A token's `topics` claim limits \
                         publishing, history and presence to its patterns.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same API key in `X-API-Key: KEY` (keys only: never a token).",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same API key as `?token=KEY`, on the event streams only \
                 (`EventSource` cannot set headers).",
            ))),
        );
    }
}

/// An error response whose body is a [`RestError`] with one of `codes`.
fn error_response(description: &str, codes: &[ErrorCode], message: &str) -> ResponseBuilder {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().map(|c| c.as_str())));
    let narrowed =
        ObjectBuilder::new().property("error", ObjectBuilder::new().property("code", code));
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("RestError"))
        .item(narrowed);
    let example = serde_json::json!({"error": {"code": codes[0], "message": message}});
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(schema))
            .example(Some(example))
            .build(),
    )
}

/// Declares an error response of the document: a name for
/// `#/components/responses/NAME`, what it means, its codes, an example
/// message and, optionally, a function adding what else it carries.
macro_rules! error_response {
    ($name:ident, $description:literal, [$($code:ident),+], $example:literal $(, with = $with:path)?) => {
        #[doc = $description]
        pub(super) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let response =
                    error_response($description, &[$(ErrorCode::$code),+], $example);
                $(let response = $with(response);)?
                (stringify!($name), response.build().into())
            }
        }
    };
}

error_response!(
    BadRequest,
    "BAD_REQUEST: malformed JSON, a missing or mistyped field, an invalid topic name or message id, or a bad query parameter.",
    [BadRequest],
    "topic name contains ' '; only A-Z a-z 0-9 . _ - are allowed"
);
error_response!(
    Unauthorized,
    "UNAUTHORIZED: authentication is on and no valid API key or token was given (a token that is expired, not yet valid, signed with another key or algorithm, or malformed).",
    [Unauthorized],
    "the token has expired",
    with = www_authenticate
);
error_response!(
    Forbidden,
    "FORBIDDEN: the API key or token lacks the role this operation needs, the token's topics claim does not allow this topic, or a browser page from an origin that is not allowed tried to change state.",
    [Forbidden],
    "the token does not allow publish on \"users.x\": its \"topics.publish\" claim lists [\"orders.*\"]"
);
error_response!(
    TopicNotFound,
    "TOPIC_NOT_FOUND: the topic does not exist.",
    [TopicNotFound],
    "topic \"orders\" does not exist"
);
error_response!(
    ConnectionNotFound,
    "NOT_FOUND: no open connection of this instance has that id (it may have just closed).",
    [NotFound],
    "no open connection 42 on this instance"
);
error_response!(
    TopicExists,
    "TOPIC_EXISTS: a topic of that name exists already.",
    [TopicExists],
    "topic \"orders\" already exists"
);
error_response!(
    PayloadTooLarge,
    "PAYLOAD_TOO_LARGE: the request body is over max_body_bytes (default 1,048,576), or the message's payload, serialized, over max_message_bytes (default 65,536). Nothing was published.",
    [PayloadTooLarge],
    "payload is 70000 bytes serialized; at most 65536 are allowed"
);
error_response!(
    RateLimited,
    "RATE_LIMITED: the server holds max_topics topics already (default 10,000).",
    [RateLimited],
    "this server holds its limit of 10000 topics (max_topics); delete one first"
);
error_response!(
    StreamLimited,
    "RATE_LIMITED: the server holds max_connections connections (WebSockets and event streams), or the stream asks for more than max_subscriptions topics and patterns.",
    [RateLimited],
    "this server holds its limit of 65536 connections (max_connections)"
);

error_response!(
    Unavailable,
    "UNAVAILABLE: cluster mode only: NATS, which holds the topics, cannot be reached (or this instance has not caught up with it yet). Nothing was created, deleted or published; try again.",
    [Unavailable],
    "cluster backplane: NATS at nats://127.0.0.1:4222 is unreachable"
);

/// A 401 names the scheme to use, as HTTP wants.
fn www_authenticate(response: ResponseBuilder) -> ResponseBuilder {
    let bearer = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["Bearer"]));
    response.header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(bearer)
            .description(Some("Always `Bearer`."))
            .build(),
    )
}
