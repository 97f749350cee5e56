//! Server-to-client frames, encoded once.
//!
//! A [`Frame`] is the finished JSON text of one WebSocket message. An `event`
//! is encoded once per publish and the same bytes are shared by every
//! subscriber queue and by the history ring; replies (`ack`, `error`, `pong`,
//! `info`) are encoded once for the one connection they go to.

use bytes::Bytes;
use protocol::{
    Ack, ErrorBody, ErrorCode, ErrorFrame, Info, InfoKind, Pong, PresenceClient, PresenceFrame,
    ServerFrame,
};
use serde_json::value::RawValue;

/// The UTF-8 JSON text of one server frame. Cloning is a reference count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl AsRef<Frame> for Frame {
    fn as_ref(&self) -> &Frame {
        self
    }
}

impl Frame {
    pub fn as_str(&self) -> &str {
        // Frames are only built from `String`s in this module.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    fn from_string(text: String) -> Self {
        Frame(Bytes::from(text))
    }

    /// Any server frame built from the shared wire types.
    pub fn encode(frame: &ServerFrame) -> Self {
        // Serializing these plain structs cannot fail: no maps with
        // non-string keys, no user-provided `Serialize` impls.
        Frame::from_string(serde_json::to_string(frame).unwrap_or_default())
    }

    /// An `ack` frame.
    pub fn ack(ack: Ack) -> Self {
        Frame::encode(&ServerFrame::Ack(ack))
    }

    /// The fields every `ack` has (`status: "ok"`, `ts` now); the caller adds
    /// what its request acknowledges with struct-update syntax.
    pub fn ack_of(request_id: Option<String>, topic: &str) -> Ack {
        Ack {
            request_id,
            topic: topic.to_owned(),
            status: "ok".into(),
            seq: None,
            epoch: None,
            replayed: None,
            recovered: None,
            id: None,
            duplicate: false,
            pattern: None,
            topics: None,
            ts: super::super::clock::now_rfc3339(),
        }
    }

    pub fn error(request_id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Frame::encode(&ServerFrame::Error(ErrorFrame {
            request_id,
            error: ErrorBody {
                code,
                message: message.into(),
            },
            topic: None,
            dropped: None,
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    pub fn slow_consumer(topic: &str, dropped: u64) -> Self {
        Frame::encode(&ServerFrame::Error(ErrorFrame {
            request_id: None,
            error: ErrorBody {
                code: ErrorCode::SlowConsumer,
                message: format!(
                    "{dropped} event(s) of topic {topic:?} were dropped because this connection \
                     did not read fast enough; resubscribe with `since` to recover them from history"
                ),
            },
            topic: Some(topic.to_owned()),
            dropped: Some(dropped),
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    pub fn pong(request_id: Option<String>) -> Self {
        Frame::encode(&ServerFrame::Pong(Pong {
            request_id,
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    pub fn info(msg: InfoKind, topic: Option<String>) -> Self {
        Frame::encode(&ServerFrame::Info(Info {
            msg,
            topic,
            epoch: None,
            client: None,
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    /// `info topic_created`: a topic a pattern subscription matches exists
    /// now; its events follow.
    pub fn topic_created(topic: &str, epoch: &str) -> Self {
        Frame::encode(&ServerFrame::Info(Info {
            msg: InfoKind::TopicCreated,
            topic: Some(topic.to_owned()),
            epoch: Some(epoch.to_owned()),
            client: None,
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    /// `info join` or `info leave` of `client` on `topic`.
    pub fn presence_notice(msg: InfoKind, topic: &str, client: PresenceClient) -> Self {
        Frame::encode(&ServerFrame::Info(Info {
            msg,
            topic: Some(topic.to_owned()),
            epoch: None,
            client: Some(client),
            ts: super::super::clock::now_rfc3339(),
        }))
    }

    /// The answer to a `presence` request.
    pub fn presence(request_id: Option<String>, topic: &str, clients: Vec<PresenceClient>) -> Self {
        Frame::encode(&ServerFrame::Presence(PresenceFrame {
            request_id,
            topic: topic.to_owned(),
            count: clients.len() as u64,
            clients,
            ts: super::super::clock::now_rfc3339(),
        }))
    }
}

/// The part of an `event` frame that does not depend on `seq`, prepared
/// outside the topic lock so that only a copy happens under it.
pub struct EventDraft {
    /// `{"type":"event","topic":…,"message":{"id":…,"payload":…},"seq":`
    head: String,
    /// `,"ts":"…"}`
    tail: String,
}

impl EventDraft {
    pub fn new(topic: &str, id: &str, payload: &RawValue, ts: &str) -> Self {
        #[derive(serde::Serialize)]
        struct Head<'a> {
            r#type: &'static str,
            topic: &'a str,
            message: MessageRef<'a>,
        }
        #[derive(serde::Serialize)]
        struct MessageRef<'a> {
            id: &'a str,
            payload: &'a RawValue,
        }
        // Sized up front: serde_json grows its buffer by doubling, and a
        // 65 KB payload then sat in a 128 KiB allocation, kept by history
        // and every queue.
        let tail = format!(",\"ts\":\"{ts}\"}}");
        // The fixed keys, `,"seq":` and a u64 take under 100 bytes.
        let estimate = payload.get().len() + topic.len() + id.len() + 128 + tail.len();
        let mut buf = Vec::with_capacity(estimate);
        let _ = serde_json::to_writer(
            &mut buf,
            &Head {
                r#type: "event",
                topic,
                message: MessageRef { id, payload },
            },
        );
        // serde_json writes UTF-8 only.
        let mut head = String::from_utf8(buf).unwrap_or_default();
        // Reopen the object to append `seq` and `ts`.
        head.pop();
        head.push_str(",\"seq\":");
        EventDraft { head, tail }
    }

    pub fn finish(self, seq: u64) -> Frame {
        let mut text = self.head;
        text.push_str(itoa::Buffer::new().format(seq));
        text.push_str(&self.tail);
        Frame::from_string(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_parse_as_the_wire_type() {
        let payload = RawValue::from_string(r#"{"a":[1,"x\"y"]}"#.into()).unwrap();
        let frame = EventDraft::new("t.1", "id-1", &payload, "2026-11-26T21:00:00.123Z").finish(42);
        let ServerFrame::Event(ev) = serde_json::from_str(frame.as_str()).unwrap() else {
            panic!("not an event: {}", frame.as_str())
        };
        assert_eq!(ev.topic, "t.1");
        assert_eq!(ev.seq, 42);
        assert_eq!(ev.message.id, "id-1");
        assert_eq!(ev.message.payload, serde_json::json!({"a":[1,"x\"y"]}));
        assert_eq!(ev.ts, "2026-11-26T21:00:00.123Z");
    }

    #[test]
    fn slow_consumer_frames_carry_topic_and_count() {
        let f: ServerFrame = serde_json::from_str(Frame::slow_consumer("t", 7).as_str()).unwrap();
        let ServerFrame::Error(e) = f else { panic!() };
        assert_eq!(e.error.code, ErrorCode::SlowConsumer);
        assert_eq!((e.topic.as_deref(), e.dropped), (Some("t"), Some(7)));
    }
}
