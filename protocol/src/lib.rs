//! The wire contract (`shared/spec/PROTOCOL.md`) as Rust types, with no
//! Leptos and no server in it.
//!
//! Defined once here and used by the server, the browser (through `app`,
//! which re-exports this crate as `app::wire`), the CLI, the load generator
//! and the tests, so that none of them can disagree about a field name. The
//! server builds `event` frames by hand once per publish (see the server's
//! `broker::event`), but they deserialize into [`ServerFrame::Event`] like
//! any other frame.
//!
//! Features, each off by default so the browser carries none of them:
//!
//! - `schema`: `utoipa::ToSchema` on every type, and [`schema`] for what the
//!   Rust types cannot say (name patterns, formats, constants); the server's
//!   OpenAPI document is built from it.
//! - `client`: [`client::Client`], the contract's REST calls and the
//!   WebSocket upgrade (reqwest, tokio-tungstenite), used by the CLI, the
//!   load generator's control calls and the server's tests.
//! - `testing`: [`testing`], masked client frames byte by byte, for the
//!   raw-socket tests and the load generator.

#[cfg(feature = "client")]
pub mod client;
pub mod pattern;
#[cfg(feature = "schema")]
pub mod schema;
pub mod sse;
#[cfg(feature = "testing")]
pub mod testing;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest topic name the contract allows.
pub const MAX_TOPIC_NAME_LEN: usize = 255;
/// Longest message id the contract allows.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Why a topic name is refused, in words for people; `None` when it is valid.
///
/// Names are 1 to 255 characters from `A-Z a-z 0-9 . _ -`.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("topic name must not be empty".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Some(format!(
            "topic name is {} characters long; at most {MAX_TOPIC_NAME_LEN} are allowed",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "topic name contains {bad:?}; only A-Z a-z 0-9 . _ - are allowed"
        ));
    }
    None
}

/// Longest `client_id` the contract allows.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Why a `client_id` is refused; `None` when it is valid (1 to 128 characters).
pub fn client_id_problem(id: &str) -> Option<String> {
    let n = id.chars().count();
    if n == 0 {
        return Some("client_id must not be empty".into());
    }
    if n > MAX_CLIENT_ID_LEN {
        return Some(format!(
            "client_id is {n} characters long; at most {MAX_CLIENT_ID_LEN} are allowed"
        ));
    }
    None
}

/// Why a message id is refused; `None` when it is valid (1 to 128 characters).
pub fn message_id_problem(id: &str) -> Option<String> {
    let n = id.chars().count();
    if n == 0 {
        return Some("message id must not be empty".into());
    }
    if n > MAX_MESSAGE_ID_LEN {
        return Some(format!(
            "message id is {n} characters long; at most {MAX_MESSAGE_ID_LEN} are allowed"
        ));
    }
    None
}

/// The error codes of the contract. Over REST: BAD_REQUEST 400,
/// UNAUTHORIZED 401, FORBIDDEN 403, TOPIC_NOT_FOUND and NOT_FOUND 404,
/// TOPIC_EXISTS 409, PAYLOAD_TOO_LARGE 413, RATE_LIMITED 429, UNAVAILABLE
/// 503, INTERNAL 500; SLOW_CONSUMER is sent on WebSockets only.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    TopicNotFound,
    TopicExists,
    PayloadTooLarge,
    RateLimited,
    SlowConsumer,
    NotFound,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status of this code on the REST API (SLOW_CONSUMER never
    /// travels over REST; it maps to 500 only so the function is total).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::TopicNotFound | ErrorCode::NotFound => 404,
            ErrorCode::TopicExists => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::SlowConsumer | ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::TopicNotFound => "TOPIC_NOT_FOUND",
            ErrorCode::TopicExists => "TOPIC_EXISTS",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code": CODE, "message": text}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// What went wrong, in a sentence for people.
    pub message: String,
}

/// The body of every REST error: `{"error": {"code", "message"}}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestError {
    pub error: ErrorBody,
}

// ---------------------------------------------------------------- messages

/// A message as a publisher sends it: `{"id"?, "payload"}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishMessage {
    /// 1 to 128 characters; absent or null: the server assigns a UUID v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<crate::schema::MessageId>))]
    pub id: Option<String>,
    /// Any JSON value; serialized compactly it may be at most
    /// `max_message_bytes` (default 65,536) long.
    pub payload: Value,
}

/// A message as subscribers receive it: `{"id", "payload"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub payload: Value,
}

/// A message read back from history over REST.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMessage {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::MessageId))]
    pub id: String,
    /// The payload as published.
    pub payload: Value,
    /// The message's place in its topic: 1 for the first message.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub seq: u64,
    /// When the server accepted the message.
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::Timestamp))]
    pub ts: String,
}

/// The position a subscriber resumes from: `{"seq", "epoch"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub seq: u64,
    pub epoch: String,
}

/// `since` on a subscribe: one position for a topic, or for a pattern one
/// per topic name (`{"orders.eu": {"seq", "epoch"}, ...}`). Which one a
/// subscribe must carry depends on its `topic` (see [`pattern::is_pattern`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SinceArg {
    Topic(Since),
    PerTopic(BTreeMap<String, Since>),
}

// -------------------------------------------------------------------- REST

/// `GET /api/health`. `topics` counts every topic of the service;
/// `subscribers` and `connections` count the WebSockets of the instance
/// that answers.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the server answers.
    #[cfg_attr(feature = "schema", schema(schema_with = crate::schema::status_ok))]
    pub status: String,
    /// Seconds since this instance started.
    pub uptime_sec: u64,
    /// Topics that exist.
    pub topics: u64,
    /// Subscriptions of this instance's WebSocket connections.
    pub subscribers: u64,
    /// Open WebSocket connections of this instance.
    pub connections: u64,
}

/// The counters of `GET /api/stats`. `topics` and `published` are about
/// the topics of the service; `subscribers`, `connections`, `delivered`
/// and `dropped` about this instance's connections.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsTotals {
    /// Topics that exist.
    pub topics: u64,
    /// Subscriptions of open connections.
    pub subscribers: u64,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Messages published since start.
    pub published: u64,
    /// Events written to subscriber connections since start.
    pub delivered: u64,
    /// Events discarded for slow consumers since start.
    pub dropped: u64,
}

/// One topic's counters in `GET /api/stats`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicStats {
    /// Messages published to the topic (its current `seq`).
    pub messages: u64,
    /// Subscriptions to the topic.
    pub subscribers: u64,
    /// Events of the topic written to subscriber connections.
    pub delivered: u64,
    /// Events of the topic discarded for slow consumers.
    pub dropped: u64,
}

/// `GET /api/stats`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Seconds since this instance started.
    pub uptime_sec: u64,
    pub totals: StatsTotals,
    /// Every topic's counters, keyed by topic name.
    pub topics: BTreeMap<String, TopicStats>,
}

/// One second of the server's life, as kept for the dashboard's charts.
/// Counters are cumulative since start (a chart shows their differences);
/// gauges are their value at `t`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSample {
    /// Unix time of the sample, in milliseconds.
    pub t: u64,
    /// Counter: messages published.
    pub published: u64,
    /// Counter: events delivered.
    pub delivered: u64,
    /// Counter: events dropped.
    pub dropped: u64,
    /// Gauge: open WebSocket connections.
    pub connections: u64,
    /// Gauge: subscriptions.
    pub subscribers: u64,
    /// Gauge: topics.
    pub topics: u64,
    /// The topics with the most messages published since the previous
    /// sample, busiest first (at most 10; topics with none are left out).
    #[cfg_attr(feature = "schema", schema(max_items = 10))]
    pub busiest: Vec<TopicRate>,
}

/// Messages a topic received during one sampling interval.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRate {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub name: String,
    /// Messages published to the topic during the interval.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub messages: u64,
}

/// `GET /api/stats/history`: the last minutes of samples, oldest first.
/// An addition to the contract for the dashboard.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsHistory {
    /// Time between two samples, in milliseconds.
    pub interval_ms: u64,
    /// Oldest first.
    pub samples: Vec<StatsSample>,
}

/// One row of `GET /api/topics`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSummary {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub name: String,
    /// Subscriptions to the topic.
    pub subscribers: u64,
    /// Messages published to the topic.
    pub messages: u64,
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::Timestamp))]
    pub created_at: String,
}

/// `GET /api/topics`: every topic, sorted by name.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

/// `GET /api/topics/{name}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDetail {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub name: String,
    /// Subscriptions to the topic.
    pub subscribers: u64,
    /// Messages published to the topic.
    pub messages: u64,
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::Timestamp))]
    pub created_at: String,
    /// The seq of the newest message: 0 at creation, then 1 more per message.
    pub seq: u64,
    /// Opaque; a topic deleted and created again gets a new one, so a stale
    /// resume position is detectable.
    #[cfg_attr(feature = "schema", schema(min_length = 1))]
    pub epoch: String,
}

/// One exact-name subscription of a topic, as presence lists it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceClient {
    /// The subscribe's `client_id`, `null` when it gave none.
    pub client_id: Option<String>,
    /// The connection holding the subscription.
    pub connection_id: u64,
    /// Cluster mode: the node the connection is on (connection ids are
    /// per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it subscribed.
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::Timestamp))]
    pub joined_at: String,
}

/// `GET /api/topics/{name}/presence`: the topic's exact-name subscriptions
/// (not patterns), oldest first.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub topic: String,
    pub count: u64,
    pub clients: Vec<PresenceClient>,
}

/// One subscription of a connection, on the connections board.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// The topic name or the pattern subscribed to.
    pub topic: String,
    pub pattern: bool,
    /// The topic's `seq` minus the last `seq` written to the connection
    /// (for a pattern: the sum over the topics it follows).
    pub lag: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// One connection, on the connections board (`GET /api/connections`).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub id: u64,
    /// Cluster mode: the node it is connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub remote_addr: Option<String>,
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::Timestamp))]
    pub connected_at: String,
    /// `websocket` or `sse`.
    pub transport: String,
    /// The `client_id`s its subscriptions gave.
    pub client_ids: Vec<String>,
    pub subscriptions: Vec<SubscriptionInfo>,
    /// Frames (events and replies) waiting in its queue, and their bytes.
    pub queued: u64,
    pub queued_bytes: u64,
    /// The queue's bounds (`subscriber_queue` events and `max_queue_bytes`
    /// bytes): past either, the slow-consumer policy applies. Set against
    /// `queued` and `queued_bytes` they say how close it is to dropping.
    pub queue_limit: u64,
    pub queue_bytes_limit: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// `GET /api/connections`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionInfo>,
}

/// `DELETE /api/connections/{id}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionClosed {
    /// `closed`.
    pub status: String,
    pub connection: u64,
}

/// Body of `POST /api/topics`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub name: String,
}

/// `{"status": "created"|"deleted", "topic"}`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicChanged {
    /// `created` (POST /api/topics) or `deleted` (DELETE /api/topics/{name}).
    #[cfg_attr(feature = "schema", schema(schema_with = crate::schema::status_created_or_deleted))]
    pub status: String,
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub topic: String,
}

/// Answer to `POST /api/topics/{name}/messages`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// Always `published`.
    #[cfg_attr(feature = "schema", schema(schema_with = crate::schema::status_published))]
    pub status: String,
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub topic: String,
    /// The id given, or the one the server assigned.
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::MessageId))]
    pub id: String,
    /// The message's seq in its topic.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub seq: u64,
    /// `true` when a message with this `id` was already published to the
    /// topic within `dedup_window`: nothing was published again, and `seq`
    /// is the original's. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Body of `POST /api/publish`: messages to publish in order, each as a
/// single publish would.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishBatch {
    /// 1 to `max_batch` (default 1,000) items.
    pub messages: Vec<BatchItem>,
}

/// One message of a [`PublishBatch`].
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub topic: String,
    pub message: PublishMessage,
}

/// Answer to `POST /api/publish`: one result per item, in order.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResults {
    pub results: Vec<BatchResult>,
}

/// What became of one item of a batch: published (as a single publish
/// answers) or its error.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchResult {
    Published(Published),
    Failed(RestError),
}

/// Answer to `GET /api/topics/{name}/messages`.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    #[cfg_attr(feature = "schema", schema(value_type = crate::schema::TopicName))]
    pub topic: String,
    /// The topic's current epoch.
    #[cfg_attr(feature = "schema", schema(min_length = 1))]
    pub epoch: String,
    /// From history, oldest first, in increasing seq.
    pub messages: Vec<HistoryMessage>,
}

// --------------------------------------------------------------- WebSocket

/// Frames a client sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Subscribe {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_n: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<SinceArg>,
        /// `join`/`leave` notices of the topic's other exact subscriptions
        /// (ignored on a pattern).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        presence_events: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    Unsubscribe {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    Publish {
        topic: String,
        message: PublishMessage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// Who is subscribed to `topic` by name; answered with a `presence` frame.
    Presence {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// A new token for this connection, before the current one expires;
    /// answered with an `ack` (without `topic`).
    Refresh {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

/// `ack`: fields beyond `request_id`, `topic`, `status` and `ts` depend on
/// what is acknowledged and are absent otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default)]
    pub request_id: Option<String>,
    /// Empty (and then absent on the wire) only on a `refresh` ack.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    pub status: String,
    /// subscribe: the topic's current seq; publish: the message's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// publish only: the message id (assigned when the client gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// publish only: `true` when the id was already published within
    /// `dedup_window` (nothing was published again; `seq` is the original's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// pattern subscribe only: `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<bool>,
    /// pattern subscribe only: every topic that matched, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<BTreeMap<String, AckTopic>>,
    pub ts: String,
}

/// One topic of a pattern subscribe's `ack`: as a single-topic ack says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckTopic {
    pub seq: u64,
    pub epoch: String,
    pub replayed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub topic: String,
    pub message: Message,
    pub seq: u64,
    pub ts: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub error: ErrorBody,
    /// SLOW_CONSUMER only: the topic whose events were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// SLOW_CONSUMER only: how many events of `topic` were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    pub ts: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    #[serde(default)]
    pub request_id: Option<String>,
    pub ts: String,
}

/// What an `info` frame announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfoKind {
    /// Heartbeat, every `heartbeat_interval`.
    Ping,
    /// The topic was deleted; the subscription is gone.
    TopicDeleted,
    /// The server is stopping; a close 1001 follows.
    ShuttingDown,
    /// A topic a pattern subscription matches was created; its events follow.
    TopicCreated,
    /// Another connection subscribed to the topic by name (`presence_events`).
    Join,
    /// Another connection left the topic (`presence_events`).
    Leave,
    /// An admin closed this connection; a close 4010 follows.
    ClosedByAdmin,
    /// A `refresh` gave a token that no longer allows this subscription
    /// (`topic`); it has ended.
    Unsubscribed,
    /// The connection's token expired without a `refresh`; a close 4401
    /// follows.
    TokenExpired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub msg: InfoKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `topic_created` only: the new topic's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// `join`/`leave` only: whose subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<PresenceClient>,
    pub ts: String,
}

/// The answer to a `presence` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceFrame {
    #[serde(default)]
    pub request_id: Option<String>,
    pub topic: String,
    pub count: u64,
    pub clients: Vec<PresenceClient>,
    pub ts: String,
}

/// Frames the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ack(Ack),
    Event(EventFrame),
    Error(ErrorFrame),
    Pong(Pong),
    Info(Info),
    Presence(PresenceFrame),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_contract() {
        assert!(topic_name_problem("orders.eu-west_1").is_none());
        assert!(topic_name_problem(&"a".repeat(255)).is_none());
        assert!(topic_name_problem("").is_some());
        assert!(topic_name_problem(&"a".repeat(256)).is_some());
        assert!(topic_name_problem("with space").is_some());
        assert!(topic_name_problem("slash/name").is_some());
        assert!(topic_name_problem("é").is_some());
    }

    #[test]
    fn message_ids_are_1_to_128_chars() {
        assert!(message_id_problem("x").is_none());
        assert!(message_id_problem(&"x".repeat(128)).is_none());
        assert!(message_id_problem("").is_some());
        assert!(message_id_problem(&"x".repeat(129)).is_some());
    }

    #[test]
    fn client_frames_use_the_contract_names() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","topic":"t","last_n":5,"since":{"seq":3,"epoch":"e"},"request_id":"r"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Subscribe {
                topic: "t".into(),
                client_id: None,
                last_n: Some(5),
                since: Some(SinceArg::Topic(Since {
                    seq: 3,
                    epoch: "e".into()
                })),
                presence_events: false,
                request_id: Some("r".into()),
            }
        );
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","topic":"o.*","since":{"o.eu":{"seq":3,"epoch":"e"}}}"#,
        )
        .unwrap();
        let ClientFrame::Subscribe {
            since: Some(SinceArg::PerTopic(per_topic)),
            ..
        } = f
        else {
            panic!("a per-topic since: {f:?}");
        };
        assert_eq!(per_topic["o.eu"].seq, 3);
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"publish","topic":"t","message":{"payload":[1]}}"#)
                .unwrap();
        assert!(matches!(f, ClientFrame::Publish { .. }));
        assert!(serde_json::from_str::<ClientFrame>(
            r#"{"type":"publish","topic":"t","message":{}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn server_frames_round_trip() {
        let text = r#"{"type":"error","request_id":"r","error":{"code":"SLOW_CONSUMER","message":"m"},"topic":"t","dropped":3,"ts":"x"}"#;
        let f: ServerFrame = serde_json::from_str(text).unwrap();
        let ServerFrame::Error(e) = &f else {
            panic!("not an error frame")
        };
        assert_eq!(e.error.code, ErrorCode::SlowConsumer);
        assert_eq!(e.dropped, Some(3));
        let back: ServerFrame = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
