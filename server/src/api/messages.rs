//! A topic's messages: publish (`POST /api/topics/{name}/messages`) and
//! read the history back (`GET`, the same path).

use super::openapi::{
    BadRequest, Forbidden, PayloadTooLarge, TopicNotFound, Unauthorized, Unavailable,
};
use super::{history_range, json_body, ApiResult, TopicName};
use crate::auth::{Credential, Role};
use crate::broker::{Broker, BrokerError, HistoryRange, PublishedEvent, Receipt};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use protocol::{
    BatchResult, BatchResults, ErrorBody, HistoryPage, PublishMessage, Published, RestError,
};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Publish a message
///
/// The message gets the topic's next `seq` and goes to every subscriber
/// and into the history. Needs the `publish` role when authentication is
/// on.
#[utoipa::path(
    post,
    path = "/topics/{name}/messages",
    operation_id = "publish_message",
    tag = "messages",
    security(("bearer" = []), ("apiKey" = [])),
    params(("name" = protocol::schema::TopicName, Path, description = "The topic to publish to.")),
    request_body(content = PublishMessage, content_type = "application/json",
        description = "The message. The body is read as JSON whatever its Content-Type.",
        example = json!({"id": "order-1042", "payload": {"item": "book", "qty": 1}})),
    responses(
        (status = 201, description = "The message was published.", body = Published),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 503, response = Unavailable),
        (status = 413, response = PayloadTooLarge),
    ),
)]
pub(super) async fn publish(
    State(state): State<AppState>,
    credential: Credential,
    TopicName(name): TopicName,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    credential.may(Role::Publish, &name)?;
    let message: PublishMessage = json_body(body)?;
    let receipt = state.broker.publish(&name, message).await?;
    Ok((StatusCode::CREATED, Json(published(name, receipt))))
}

/// What a publish to `topic` answers, alone or as an item of a batch.
fn published(topic: String, receipt: Receipt) -> Published {
    Published {
        status: "published".into(),
        topic,
        id: receipt.id,
        seq: receipt.seq,
        duplicate: receipt.duplicate,
    }
}

/// Publish several messages
///
/// Each item is published in the order given, exactly as a single publish
/// of it would be (the same checks, limits and `duplicate` answer), and
/// answered in the same order: `{"status":"published",...}` or
/// `{"error":{"code","message"}}` for an item that failed; the others are
/// published all the same. An empty list, more than `max_batch` items
/// (default 1,000), or a body not of this shape (no `messages` list, an
/// item that is not an object) is 400 and publishes nothing. Needs the
/// `publish` role when authentication is on.
#[utoipa::path(
    post,
    path = "/publish",
    operation_id = "publish_batch",
    tag = "messages",
    security(("bearer" = []), ("apiKey" = [])),
    request_body(content = BatchBody, content_type = "application/json",
        description = "The messages, in order. The body is read as JSON whatever its Content-Type.",
        example = json!({"messages": [
            {"topic": "orders", "message": {"id": "order-1042", "payload": {"qty": 1}}},
            {"topic": "audit", "message": {"payload": "order-1042 placed"}}
        ]})),
    responses(
        (status = 200, description = "One result per item, in order.", body = BatchResults),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
    ),
)]
pub(super) async fn publish_batch(
    State(state): State<AppState>,
    credential: Credential,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<BatchResults>> {
    let items = batch_items(json_body(body)?, state.config.max_batch)?;
    // Every item is started before any acknowledgement is awaited: in
    // cluster mode NATS receives them in order and acknowledges them
    // together, instead of one round trip each.
    let mut started = Vec::with_capacity(items.len());
    for item in items {
        started.push(match item {
            // A token limited to some topics: the others are that item's 403.
            Ok((topic, message)) => match credential.may(Role::Publish, &topic) {
                Ok(()) => {
                    let publishing = state.broker.start_publish(&topic, message).await;
                    Ok((topic, publishing))
                }
                Err(refusal) => Err(BrokerError::new(refusal.code(), refusal.message())),
            },
            Err(e) => Err(e),
        });
    }
    let mut results = Vec::with_capacity(started.len());
    for item in started {
        let outcome = match item {
            Ok((topic, publishing)) => publishing.finish().await.map(|receipt| (topic, receipt)),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok((topic, receipt)) => BatchResult::Published(published(topic, receipt)),
            Err(e) => BatchResult::Failed(RestError {
                error: ErrorBody {
                    code: e.code,
                    message: e.message,
                },
            }),
        });
    }
    Ok(Json(BatchResults { results }))
}

/// The body of a batch publish, `{"messages": [ITEM, ...]}`, checked as a
/// whole (its shape and length: a 400 for all of it), and each item's
/// `topic` and `message` read (an error of that item only).
///
/// Documented as it is read: the items are any objects, since what is
/// wrong inside one is that item's error in a 200, not a 400 (programs
/// build the body with `protocol::PublishBatch`).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = PublishBatchBody)]
struct BatchBody {
    /// 1 to `max_batch` (default 1,000) objects, each
    /// `{"topic", "message": {"id"?, "payload"}}`; an item with anything
    /// else wrong is answered with its error, the others are published.
    #[schema(value_type = Vec<Object>, min_items = 1)]
    messages: Vec<Map<String, Value>>,
}

type BatchItem = Result<(String, PublishMessage), BrokerError>;

fn batch_items(body: BatchBody, max_batch: usize) -> ApiResult<Vec<BatchItem>> {
    let n = body.messages.len();
    if n == 0 {
        return Err(super::ApiError::bad_request(
            "`messages` is empty: give 1 to max_batch messages",
        ));
    }
    if n > max_batch {
        return Err(super::ApiError::bad_request(format!(
            "{n} messages in one batch; at most {max_batch} (max_batch) are allowed"
        )));
    }
    Ok(body.messages.into_iter().map(batch_item).collect())
}

fn batch_item(mut item: Map<String, Value>) -> BatchItem {
    let topic = match item.remove("topic") {
        Some(Value::String(topic)) => topic,
        Some(_) => return Err(BrokerError::bad_request("`topic` must be a string")),
        None => return Err(BrokerError::bad_request("`topic` is missing")),
    };
    let message = match item.remove("message") {
        Some(message @ Value::Object(_)) => serde_json::from_value(message)
            .map_err(|e| BrokerError::bad_request(format!("invalid `message`: {e}")))?,
        Some(_) => return Err(BrokerError::bad_request("`message` must be an object")),
        None => return Err(BrokerError::bad_request("`message` is missing")),
    };
    Ok((topic, message))
}

/// A topic's recent messages, oldest first
///
/// From the history the topic keeps (the last `history_size` messages,
/// default 100). With neither parameter: the whole history; with both:
/// 400. After `since_seq` it returns what history still holds, so the
/// first `seq` returned shows whether anything was lost. Needs the
/// `subscribe` role when authentication is on.
#[utoipa::path(
    get,
    path = "/topics/{name}/messages",
    operation_id = "read_history",
    tag = "messages",
    security(("bearer" = []), ("apiKey" = [])),
    params(
        ("name" = protocol::schema::TopicName, Path, description = "The topic to read."),
        ("last_n" = Option<u64>, Query, format = "uint64", minimum = 0, maximum = 18446744073709551615_u64,
         description = "Only the newest N messages (not with since_seq)."),
        ("since_seq" = Option<u64>, Query, format = "uint64", minimum = 0, maximum = 18446744073709551615_u64,
         description = "Only the messages after this seq (not with last_n)."),
    ),
    responses(
        (status = 200, description = "The messages, oldest first.", body = HistoryPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn history(
    State(state): State<AppState>,
    credential: Credential,
    TopicName(name): TopicName,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    credential.may(Role::Subscribe, &name)?;
    let range = history_range(query.as_deref().unwrap_or(""))?;
    let (epoch, events) = state.broker.history(&name, range).await?;
    Ok(stream_page(&name, &epoch, events))
}

/// A [`HistoryPage`] as a body written one message at a time, as the client
/// takes it: a full history (100 x 64 KB) is never one 6.5 MB buffer held
/// for a reader that does not read. The events are the history's own,
/// shared; a reader that takes nothing for `header_read_timeout` is cut
/// (see [`crate::http_server`]).
fn stream_page(topic: &str, epoch: &str, events: Vec<Arc<PublishedEvent>>) -> Response {
    let head = format!(
        "{{\"topic\":{},\"epoch\":{},\"messages\":[",
        json_string(topic),
        json_string(epoch)
    );
    let messages = events
        .into_iter()
        .filter_map(|e| e.history_message())
        .enumerate()
        .map(|(i, m)| {
            let mut chunk = if i == 0 { Vec::new() } else { vec![b','] };
            // A HistoryMessage always serializes (string keys, JSON values).
            let _ = serde_json::to_writer(&mut chunk, &m);
            Bytes::from(chunk)
        });
    let chunks = std::iter::once(Bytes::from(head))
        .chain(messages)
        .chain(std::iter::once(Bytes::from_static(b"]}")))
        .map(Ok::<_, std::convert::Infallible>);
    (
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

/// What `GET /api/topics/{name}/messages` answers, as one value (the UI
/// renders it; REST writes the same page message by message, above).
pub(crate) async fn history_page(
    broker: &Broker,
    name: &str,
    range: HistoryRange,
) -> Result<HistoryPage, BrokerError> {
    let (epoch, events) = broker.history(name, range).await?;
    Ok(HistoryPage {
        topic: name.to_owned(),
        epoch,
        messages: events.iter().filter_map(|e| e.history_message()).collect(),
    })
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
