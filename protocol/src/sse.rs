//! Server-Sent Events (`GET /api/topics/{name}/events`, `GET /api/events`):
//! the `data` of each record other than `message`, whose `data` is the
//! `event` frame of the WebSocket ([`crate::EventFrame`] with its `type`).
//!
//! A record is `event: NAME` then one `data:` line of JSON (and, on a
//! single-topic stream, `id: EPOCH:SEQ` before a `message`); the
//! `subscribed` record also carries `retry:` [`RETRY_MS`].

use crate::{Ack, AckTopic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reconnection delay, in milliseconds, that every `subscribed` record
/// gives an `EventSource` (`retry: 1000`).
pub const RETRY_MS: u64 = 1000;

/// The `event:` names of the records.
pub mod event {
    pub const MESSAGE: &str = "message";
    pub const SUBSCRIBED: &str = "subscribed";
    pub const SLOW_CONSUMER: &str = "slow_consumer";
    pub const TOPIC_DELETED: &str = "topic_deleted";
    pub const TOPIC_CREATED: &str = "topic_created";
}

/// `event: subscribed`: the subscribe `ack` of the WebSocket without its
/// `request_id`, `status` and `ts`. One per requested topic or pattern, in
/// request order, before any `message` of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The topic, or the pattern as requested.
    pub topic: String,
    /// A topic's current seq (absent for a pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Messages replayed (absent for a pattern: see `topics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// Present when the stream resumed from a `Last-Event-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// A pattern's: `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<bool>,
    /// A pattern's: every topic it matched, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<BTreeMap<String, AckTopic>>,
}

impl From<Ack> for Subscribed {
    fn from(ack: Ack) -> Self {
        Subscribed {
            topic: ack.topic,
            seq: ack.seq,
            epoch: ack.epoch,
            replayed: ack.replayed,
            recovered: ack.recovered,
            pattern: ack.pattern,
            topics: ack.topics,
        }
    }
}

/// `event: slow_consumer`: events of `topic` were dropped for this stream
/// (the `seq` gap shows which); with the `disconnect` policy the stream
/// ends after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowConsumer {
    pub topic: String,
    pub dropped: u64,
}

/// `event: topic_deleted`: the topic is gone and so is the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDeleted {
    pub topic: String,
}

/// `event: topic_created`: a topic a pattern of the stream matches was
/// created; its messages follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCreated {
    pub topic: String,
    pub epoch: String,
}
