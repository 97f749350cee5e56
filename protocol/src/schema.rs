//! The JSON Schema of what the wire types' Rust types cannot say (feature
//! `schema`, which the server turns on): which strings are topic names, message ids or
//! timestamps, and which are constants.
//!
//! The wire types derive `utoipa::ToSchema` under `schema` and points its
//! constrained fields here, so the server's OpenAPI document
//! (`GET /api/openapi.json`) states the contract's rules where a client
//! generator or a fuzzer (schemathesis) can check them. The browser build
//! carries none of this.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// The contract's topic names as a regular expression (see
/// [`crate::topic_name_problem`], which says the same in words).
pub const TOPIC_NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,255}$";

/// A topic name: 1 to 255 characters from `A-Z a-z 0-9 . _ -`.
pub struct TopicName;

impl PartialSchema for TopicName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::MAX_TOPIC_NAME_LEN))
            .pattern(Some(TOPIC_NAME_PATTERN))
            .description(Some(
                "A topic name: 1 to 255 characters from A-Z a-z 0-9 . _ - \
                 (anything else is BAD_REQUEST).",
            ))
            .examples(["orders.eu-west_1"])
            .into()
    }
}

impl ToSchema for TopicName {}

/// A message id: 1 to 128 characters, any.
pub struct MessageId;

impl PartialSchema for MessageId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::MAX_MESSAGE_ID_LEN))
            .description(Some(
                "A message id: 1 to 128 characters. When a publisher gives none, \
                 the server assigns a UUID v4.",
            ))
            .examples(["order-1042"])
            .into()
    }
}

impl ToSchema for MessageId {}

/// A timestamp: RFC 3339, UTC, with milliseconds.
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
            ))
            .description(Some("RFC 3339, UTC, with milliseconds."))
            .examples(["2026-11-26T21:00:00.123Z"])
            .into()
    }
}

impl ToSchema for Timestamp {}

/// A string that is always `value`.
fn constant(value: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
}

/// `status` of `GET /api/health`.
pub fn status_ok() -> ObjectBuilder {
    constant("ok")
}

/// `status` of a topic created or deleted.
pub fn status_created_or_deleted() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["created", "deleted"]))
}

/// `status` of a published message.
pub fn status_published() -> ObjectBuilder {
    constant("published")
}
