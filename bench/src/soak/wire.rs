//! What the soak's clients read and write: WebSocket frames from a byte
//! buffer (pings answered, closes reported with their code), and the
//! server's JSON frames parsed against the contract. Unlike the throughput
//! scenarios, which only scan for a send time, the soak checks every field
//! it relies on; a frame that does not parse is an error to count, never a
//! panic.
//!
//! Why a parser of its own instead of `protocol::ServerFrame`: an event is
//! parsed tens of thousands of times a second while the server's CPU is
//! being measured on the same two cores, so it borrows the topic from the
//! read buffer, skips the payload unread (`IgnoredAny`) and maps the topic
//! to the ledger's index in the same pass, where the typed frame would
//! allocate the topic, the id and the whole payload as a `Value`. The
//! client frames it writes are the protocol crate's.

use crate::ws;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// One WebSocket frame from the server.
#[derive(Debug, PartialEq)]
pub enum WsItem<'a> {
    Text(&'a [u8]),
    /// A ping: the reader has queued its pong already.
    Ping,
    /// A close frame: its code, if it has one, and its reason.
    Close(Option<u16>, String),
    /// Anything else (binary, a fragment, a reserved opcode): a contract
    /// breach, reported with its first byte.
    Unexpected(u8),
}

/// A read buffer of server frames, with the pongs owed to the pings in it.
pub struct FrameReader {
    buf: Vec<u8>,
    len: usize,
    /// Masked pong frames to write back.
    pub pongs: Vec<u8>,
}

impl FrameReader {
    pub fn new(leftover: Vec<u8>) -> Self {
        let mut buf = leftover;
        let len = buf.len();
        buf.resize(len.max(16 * 1024), 0);
        FrameReader {
            buf,
            len,
            pongs: Vec::new(),
        }
    }

    /// Reads once (cancel-safe: nothing is lost if the future is dropped).
    /// `Ok(0)` is the end of the stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<usize> {
        self.grow();
        r.read(&mut self.buf[self.len..]).await.inspect(|n| {
            self.len += n;
        })
    }

    /// Like [`FrameReader::fill`], reading at most `max` bytes (a slow reader).
    pub async fn fill_at_most<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> std::io::Result<usize> {
        self.grow();
        let end = self.buf.len().min(self.len.saturating_add(max.max(1)));
        r.read(&mut self.buf[self.len..end]).await.inspect(|n| {
            self.len += n;
        })
    }

    /// Reads what the socket holds without waiting: `Ok(None)` when nothing
    /// is there, `Ok(Some(0))` at the end of the stream.
    pub fn try_fill(&mut self, s: &TcpStream) -> std::io::Result<Option<usize>> {
        self.grow();
        match s.try_read(&mut self.buf[self.len..]) {
            Ok(n) => {
                self.len += n;
                Ok(Some(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn grow(&mut self) {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }

    /// Hands every complete frame now buffered to `on_item`, queues a pong
    /// for each ping, and keeps an incomplete tail for the next read.
    pub fn drain(&mut self, mut on_item: impl FnMut(WsItem<'_>)) {
        let mut at = 0;
        while let Some(f) = ws::parse(&mut self.buf[at..self.len]) {
            let first = self.buf[at];
            let payload = &self.buf[at + f.start..at + f.end];
            let fin = first & 0x80 != 0;
            match f.opcode {
                1 if fin => on_item(WsItem::Text(payload)),
                9 => {
                    ws::encode_client(&mut self.pongs, 10, payload);
                    on_item(WsItem::Ping);
                }
                10 => {}
                8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    on_item(WsItem::Close(code, reason));
                }
                _ => on_item(WsItem::Unexpected(first)),
            }
            at += f.end;
        }
        self.buf.copy_within(at..self.len, 0);
        self.len -= at;
    }
}

/// A server frame, as far as the soak needs it. Topics are reported as
/// the caller's index (`None`: not one of ours).
#[derive(Debug, PartialEq)]
pub enum ServerFrame {
    Event {
        topic: Option<usize>,
        seq: u64,
    },
    Ack {
        topic: Option<usize>,
        request_id: Option<String>,
        seq: Option<u64>,
        epoch: Option<String>,
        replayed: Option<u64>,
        recovered: Option<bool>,
    },
    Error {
        code: String,
        topic: Option<usize>,
        dropped: Option<u64>,
        message: String,
    },
    Info {
        msg: String,
    },
    Pong,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    replayed: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(borrow, default)]
    msg: Option<Cow<'a, str>>,
    #[serde(default)]
    error: Option<RawError>,
    #[serde(default)]
    dropped: Option<u64>,
    #[serde(default)]
    message: Option<RawMessage>,
}

#[derive(Deserialize)]
struct RawError {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct RawMessage {
    #[allow(dead_code)]
    id: IgnoredAny,
    #[allow(dead_code)]
    payload: IgnoredAny,
}

/// Parses one text frame; `Err` says what is wrong with it.
pub fn parse(
    text: &[u8],
    topic_index: impl Fn(&str) -> Option<usize>,
) -> Result<ServerFrame, String> {
    let raw: Raw = serde_json::from_slice(text).map_err(|e| format!("not a server frame ({e})"))?;
    let topic = raw.topic.as_deref().and_then(&topic_index);
    match raw.kind.as_ref() {
        "event" => {
            if raw.topic.is_none() || raw.message.is_none() {
                return Err("event without topic or message".into());
            }
            let seq = raw.seq.ok_or("event without seq")?;
            Ok(ServerFrame::Event { topic, seq })
        }
        "ack" => Ok(ServerFrame::Ack {
            topic,
            request_id: raw.request_id,
            seq: raw.seq,
            epoch: raw.epoch,
            replayed: raw.replayed,
            recovered: raw.recovered,
        }),
        "error" => {
            let e = raw.error.ok_or("error frame without error")?;
            Ok(ServerFrame::Error {
                code: e.code,
                topic,
                dropped: raw.dropped,
                message: e.message,
            })
        }
        "info" => Ok(ServerFrame::Info {
            msg: raw.msg.ok_or("info without msg")?.into_owned(),
        }),
        "pong" => Ok(ServerFrame::Pong),
        other => Err(format!("unknown frame type {other:?}")),
    }
}

/// The first 160 characters of a frame, for an error sample.
pub fn excerpt(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(160)]).into_owned()
}

/// The masked frame of one client JSON request.
pub fn text_frame(json: &serde_json::Value) -> Vec<u8> {
    protocol::testing::text_frame(&json.to_string())
}

/// A masked close frame with `code`.
pub fn close_frame(code: u16) -> Vec<u8> {
    protocol::testing::close_frame(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str) -> Option<usize> {
        name.strip_prefix("soak-")?.parse().ok()
    }

    #[test]
    fn server_frames() {
        let ev = br#"{"type":"event","topic":"soak-3","message":{"id":"x","payload":{"t":1}},"seq":7,"ts":"t"}"#;
        assert_eq!(
            parse(ev, index),
            Ok(ServerFrame::Event {
                topic: Some(3),
                seq: 7
            })
        );
        let ack = br#"{"type":"ack","request_id":null,"topic":"soak-1","status":"ok","seq":9,"epoch":"e","replayed":2,"recovered":true,"ts":"t"}"#;
        assert_eq!(
            parse(ack, index),
            Ok(ServerFrame::Ack {
                topic: Some(1),
                request_id: None,
                seq: Some(9),
                epoch: Some("e".into()),
                replayed: Some(2),
                recovered: Some(true)
            })
        );
        let slow = br#"{"type":"error","error":{"code":"SLOW_CONSUMER","message":"m"},"topic":"soak-0","dropped":4,"ts":"t"}"#;
        assert!(matches!(
            parse(slow, index),
            Ok(ServerFrame::Error {
                topic: Some(0),
                dropped: Some(4),
                ..
            })
        ));
        let info = br#"{"type":"info","msg":"shutting_down","ts":"t"}"#;
        assert_eq!(
            parse(info, index),
            Ok(ServerFrame::Info {
                msg: "shutting_down".into()
            })
        );
        // Malformed frames are errors, not panics.
        for bad in [
            &b"{"[..],
            br#"{"type":"event","topic":"soak-1","seq":1}"#,
            br#"{"type":"event","topic":"soak-1","message":{"id":"x","payload":1}}"#,
            br#"{"type":"error"}"#,
            br#"{"type":"weird"}"#,
            br#"{"type":"event","topic":"soak-1","message":{"id":"x","payload":1},"seq":-1}"#,
        ] {
            assert!(
                parse(bad, index).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn frames_pings_and_closes() {
        let mut bytes = Vec::new();
        ws::encode_server(&mut bytes, 1, b"{}");
        ws::encode_server(&mut bytes, 9, b"hi");
        ws::encode_server(&mut bytes, 8, &[0x03, 0xe9, b'b', b'y', b'e']);
        ws::encode_server(&mut bytes, 2, b"bin");
        ws::encode_server(&mut bytes, 1, b"partial");
        bytes.truncate(bytes.len() - 3);
        let mut r = FrameReader::new(bytes);
        let mut seen = Vec::new();
        r.drain(|item| seen.push(format!("{item:?}")));
        assert_eq!(
            seen,
            vec![
                format!("{:?}", WsItem::Text(b"{}")),
                "Ping".to_string(),
                format!("{:?}", WsItem::Close(Some(1001), "bye".into())),
                format!("{:?}", WsItem::Unexpected(0x82)),
            ]
        );
        // The pong echoes the ping's payload, masked.
        let mut pong = r.pongs.clone();
        let f = ws::parse(&mut pong).unwrap();
        assert_eq!((f.opcode, &pong[f.start..f.end]), (10, &b"hi"[..]));
        assert_eq!(r.len, 6, "the incomplete frame stays buffered");
    }
}
