//! Queued frames as SSE records.
//!
//! The outbox holds WebSocket frames (an `event` encoded once per publish
//! and shared by every queue, replies encoded for their connection); an SSE
//! stream writes each as one record:
//!
//! | frame | record |
//! |---|---|
//! | `event` | `id: EPOCH:SEQ` (single-topic stream only), `event: message`, `data:` the frame as is |
//! | subscribe `ack` | `event: subscribed`, `retry: 1000`, `data:` [`Subscribed`] |
//! | `SLOW_CONSUMER` error | `event: slow_consumer`, `data: {"topic","dropped"}` |
//! | `info topic_deleted` | `event: topic_deleted`, `data: {"topic"}` (the topic is no longer followed) |
//! | `info topic_created` | `event: topic_created`, `data: {"topic","epoch"}` (a pattern's new topic) |
//! | anything else | nothing: an SSE stream sends no requests, so it gets no other reply |
//!
//! Events are the hot path: their frame is copied into the batch's chunk
//! behind a few header bytes, never parsed. Replies are rare (one `ack` per
//! subscription, one notice per loss or deletion) and are parsed back from
//! their JSON, which keeps the hub free of any knowledge of SSE.
//!
//! `data:` must be one line. The frames are compact JSON, which has no raw
//! line break (JSON escapes them inside strings), but a frame is checked
//! anyway: a raw CR or LF can only be whitespace between JSON tokens, so
//! it is written as a space, and the record cannot be split or forged.

use crate::broker::{PublishedEvent, Queued};
use protocol::sse::{self, Subscribed};
use protocol::{ErrorCode, InfoKind, ServerFrame};
use std::collections::HashMap;

/// The comment line sent every `heartbeat_interval` on an idle stream.
pub const PING: &[u8] = b": ping\n\n";

/// The last line of a stream whose token expired (a comment: the contract
/// only says the stream ends).
pub const TOKEN_EXPIRED: &[u8] = b": token expired\n\n";

/// What a stream follows, to know its epochs and when it is over.
pub struct Records {
    /// Whether `message` records carry `id: EPOCH:SEQ`: on a single-topic
    /// stream only (see the multi-topic handler for why).
    ids: bool,
    /// Each followed topic's epoch, from its `ack` or its `topic_created`.
    epochs: HashMap<String, String>,
    /// Requested topic names (not patterns) still followed.
    topics: Vec<String>,
    /// Requested patterns: they outlive the deletion of their topics.
    patterns: usize,
    /// Nothing requested is left: the stream ends after this batch.
    over: bool,
}

impl Records {
    /// A stream of `topics` (names and patterns as requested; repeats are
    /// allowed), with `id:` lines or not.
    pub fn new(topics: &[String], ids: bool) -> Self {
        let patterns = topics
            .iter()
            .filter(|t| protocol::pattern::is_pattern(t))
            .count();
        let mut names: Vec<String> = topics
            .iter()
            .filter(|t| !protocol::pattern::is_pattern(t))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        Records {
            ids,
            epochs: HashMap::new(),
            topics: names,
            patterns,
            over: false,
        }
    }

    /// Whether every requested topic was deleted (and no pattern was
    /// requested): the stream has nothing more to say.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Appends the record of one queued frame to `out` (nothing for a
    /// frame without one).
    pub fn write(&mut self, queued: &Queued, out: &mut Vec<u8>) {
        match queued {
            Queued::Event(event) => self.message(event, out),
            Queued::Reply(frame) => match serde_json::from_str::<ServerFrame>(frame.as_str()) {
                Ok(reply) => self.reply(reply, out),
                Err(e) => {
                    tracing::error!(error = %e, "a queued reply is not a server frame");
                }
            },
        }
    }

    fn message(&self, event: &PublishedEvent, out: &mut Vec<u8>) {
        if self.ids {
            if let Some(epoch) = self.epochs.get(&*event.tally.name) {
                out.extend_from_slice(b"id: ");
                out.extend_from_slice(epoch.as_bytes());
                out.push(b':');
                out.extend_from_slice(itoa::Buffer::new().format(event.seq).as_bytes());
                out.push(b'\n');
            }
        }
        record(out, sse::event::MESSAGE, None, event.frame.bytes());
    }

    fn reply(&mut self, reply: ServerFrame, out: &mut Vec<u8>) {
        match reply {
            ServerFrame::Ack(ack) if !ack.topic.is_empty() => {
                if let Some(epoch) = &ack.epoch {
                    self.epochs.insert(ack.topic.clone(), epoch.clone());
                }
                for (name, topic) in ack.topics.iter().flatten() {
                    self.epochs.insert(name.clone(), topic.epoch.clone());
                }
                let data = Subscribed::from(ack);
                record(
                    out,
                    sse::event::SUBSCRIBED,
                    Some(sse::RETRY_MS),
                    &json(&data),
                );
            }
            ServerFrame::Error(error) if error.error.code == ErrorCode::SlowConsumer => {
                slow_consumer(
                    out,
                    error.topic.unwrap_or_default(),
                    error.dropped.unwrap_or_default(),
                );
            }
            ServerFrame::Info(info) => match (info.msg, info.topic) {
                (InfoKind::TopicDeleted, Some(topic)) => {
                    self.epochs.remove(&topic);
                    if let Some(at) = self.topics.iter().position(|t| *t == topic) {
                        self.topics.remove(at);
                        self.over = self.topics.is_empty() && self.patterns == 0;
                    }
                    let data = sse::TopicDeleted { topic };
                    record(out, sse::event::TOPIC_DELETED, None, &json(&data));
                }
                (InfoKind::TopicCreated, Some(topic)) => {
                    let epoch = info.epoch.unwrap_or_default();
                    self.epochs.insert(topic.clone(), epoch.clone());
                    let data = sse::TopicCreated { topic, epoch };
                    record(out, sse::event::TOPIC_CREATED, None, &json(&data));
                }
                (InfoKind::Ping, _) => out.extend_from_slice(PING),
                _ => {}
            },
            _ => {}
        }
    }
}

/// The record of the `disconnect` policy's notice, or of a queued
/// `SLOW_CONSUMER` error.
pub fn slow_consumer(out: &mut Vec<u8>, topic: String, dropped: u64) {
    let data = sse::SlowConsumer { topic, dropped };
    record(out, sse::event::SLOW_CONSUMER, None, &json(&data));
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `event: NAME`, `retry: MS` if given, `data: DATA` on one line, and the
/// blank line that ends the record.
fn record(out: &mut Vec<u8>, event: &str, retry: Option<u64>, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    if let Some(ms) = retry {
        out.extend_from_slice(b"retry: ");
        out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let start = out.len();
    out.extend_from_slice(data);
    if data.iter().any(|&b| b == b'\n' || b == b'\r') {
        for b in &mut out[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Frame;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn data_stays_on_one_line() {
        let mut out = Vec::new();
        record(
            &mut out,
            "message",
            None,
            b"{\"a\":\n1,\r\n\"b\":\"x\\ny\"}",
        );
        assert_eq!(
            text(&out),
            "event: message\ndata: {\"a\": 1,  \"b\":\"x\\ny\"}\n\n"
        );
    }

    #[test]
    fn acks_become_subscribed_with_retry_and_topic_deleted_ends_the_last_topic() {
        let mut records = Records::new(&["t".into(), "t".into()], true);
        let ack = Frame::ack(protocol::Ack {
            seq: Some(3),
            epoch: Some("e1".into()),
            replayed: Some(0),
            ..Frame::ack_of(None, "t")
        });
        let mut out = Vec::new();
        records.write(&Queued::Reply(ack), &mut out);
        assert_eq!(
            text(&out),
            "event: subscribed\nretry: 1000\ndata: {\"topic\":\"t\",\"seq\":3,\"epoch\":\"e1\",\"replayed\":0}\n\n"
        );
        assert_eq!(records.epochs.get("t").map(String::as_str), Some("e1"));
        out.clear();
        let deleted = Frame::info(InfoKind::TopicDeleted, Some("t".into()));
        records.write(&Queued::Reply(deleted), &mut out);
        assert_eq!(
            text(&out),
            "event: topic_deleted\ndata: {\"topic\":\"t\"}\n\n"
        );
        assert!(records.is_over());
    }

    #[test]
    fn a_pattern_outlives_its_topics_and_other_replies_are_silent() {
        let mut records = Records::new(&["a".into(), "a.>".into()], false);
        let mut out = Vec::new();
        records.write(
            &Queued::Reply(Frame::info(InfoKind::TopicDeleted, Some("a".into()))),
            &mut out,
        );
        assert!(!records.is_over());
        out.clear();
        records.write(&Queued::Reply(Frame::pong(None)), &mut out);
        records.write(
            &Queued::Reply(Frame::info(InfoKind::ShuttingDown, None)),
            &mut out,
        );
        assert!(out.is_empty());
        records.write(&Queued::Reply(Frame::slow_consumer("a.b", 4)), &mut out);
        assert_eq!(
            text(&out),
            "event: slow_consumer\ndata: {\"topic\":\"a.b\",\"dropped\":4}\n\n"
        );
    }
}
