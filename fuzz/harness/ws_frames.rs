//! The `ws_frames` target: the bytes a client sends on a WebSocket after the
//! upgrade, decoded by the server's own framing ([`codec::Decoder`]) and
//! answered as the session's reader does ([`handle_text`]), with no socket
//! and no runtime.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/ws_frames.rs`) and the
//! corpus replay test (`server/tests/fuzz_corpus.rs`), so every input the
//! fuzzer kept is checked again by `cargo test -p pubsub-server`.
//!
//! What must hold for any input, beyond "no panic":
//! - the decoder gives the same messages however the stream is split into
//!   reads;
//! - it agrees with tungstenite, a reference decoder configured alike
//!   (server role, masked frames, the same size limit), up to the known
//!   differences written in [`agree_with_tungstenite`];
//! - every frame the server queues is a valid [`ServerFrame`], and every
//!   text or binary message is answered by exactly one reply (`ack`, `error`
//!   or `pong`) until the connection is ended;
//! - per topic, events come in strictly increasing `seq`, contiguous unless a
//!   `SLOW_CONSUMER` notice announced a gap, and none after an unsubscribe;
//! - once every connection is gone, no subscription is left and each topic's
//!   counters balance: enqueued = delivered + dropped.

use bytes::BytesMut;
use protocol::{ErrorCode, InfoKind, ServerFrame};
use pubsub_server::broker::frame::Frame;
use pubsub_server::broker::{
    Broker, BrokerConfig, Connection, DrainBuf, Drained, End, Replay, SlowConsumerPolicy,
};
use pubsub_server::ws::codec::{Decoder, Incoming};
use pubsub_server::ws::session::{handle_text, Inflight, Standing};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// Topics that exist before the first frame (the seeds name them).
pub const TOPICS: [&str; 2] = ["orders", "news"];

/// The decoders' message limit. The server's default (`max_frame_bytes`,
/// 1 MiB) is out of reach of fuzzer-sized inputs except through a header's
/// claim; a small one lets real payloads and fragments cross it too.
pub const MAX_MESSAGE: usize = 1024;

/// Payloads over this are `PAYLOAD_TOO_LARGE`: under [`MAX_MESSAGE`], so a
/// frame can carry one.
const MAX_PAYLOAD: usize = 512;

/// Read sizes, cycled, for the split stream: every split point of a header
/// and of a payload gets exercised.
const READS: [usize; 10] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89];

/// Frames taken from an outbox per drain, as the session's writer does.
const BATCH: usize = 64;

/// Runs one input. Panics when the server misbehaves.
pub fn run(data: &[u8]) {
    let whole = decode(data, &[usize::MAX]);
    let split = decode(data, &READS);
    assert_eq!(
        whole, split,
        "the messages depend on how the stream is read"
    );
    agree_with_tungstenite(data, &whole);
    serve(data.len(), &whole.messages);
}

// ---------------------------------------------------------------- framing

/// How a decoded stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The client's close frame, with its code.
    Close(Option<u16>),
    /// The stream broke the protocol or a limit: the server closes it.
    Refused(u16),
    /// The input ran out (between frames or inside one).
    Eof,
}

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    /// Messages and control frames before the ending (never `Close`).
    messages: Vec<Incoming>,
    ending: Ending,
}

/// The session's read loop over `data`, arriving in reads of the sizes in
/// `reads` (cycled): decode what is buffered, then read more.
fn decode(data: &[u8], reads: &[usize]) -> Decoded {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut rest = data;
    for &size in reads.iter().cycle() {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Incoming::Close(code))) => {
                    return Decoded {
                        messages,
                        ending: Ending::Close(code),
                    }
                }
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => {
                    let code = e.close_code();
                    assert!(
                        matches!(code, 1002 | 1007 | 1009),
                        "close code {code} for {e}"
                    );
                    return Decoded {
                        messages,
                        ending: Ending::Refused(code),
                    };
                }
            }
        }
        if rest.is_empty() {
            break;
        }
        let (read, left) = rest.split_at(size.min(rest.len()));
        buf.extend_from_slice(read);
        rest = left;
    }
    Decoded {
        messages,
        ending: Ending::Eof,
    }
}

/// tungstenite reads the same bytes; both must see the same messages and
/// end alike. Known differences, all at the end of a stream:
/// - tungstenite replaces a close code the RFC does not allow on the wire
///   with 1002; the server does not care about the client's code.
/// - Each decoder refuses some bad frames from their header where the
///   other first reads the whole frame (ours: reserved bits, an oversized
///   control frame; tungstenite: a reserved opcode): if the input stops
///   inside that frame, the other just sees the end.
/// - tungstenite checks UTF-8 fragment by fragment, so it may refuse a text
///   message before its last fragment (and before control frames between
///   them, or the end of the input) where our decoder checks the whole
///   message. Either way the connection is failed with 1007 once the
///   message is complete; an invalid message never reaches the handler.
fn agree_with_tungstenite(data: &[u8], ours: &Decoded) {
    let theirs = tungstenite_decode(data);
    let same = match (&ours.ending, &theirs.ending) {
        (_, Ending::Refused(1007)) => ours.messages.starts_with(&theirs.messages),
        (Ending::Refused(_), Ending::Refused(_)) => {
            let n = ours.messages.len().min(theirs.messages.len());
            ours.messages[..n] == theirs.messages[..n]
        }
        (Ending::Refused(_), Ending::Eof) | (Ending::Eof, Ending::Refused(_)) => {
            ours.messages == theirs.messages
        }
        (Ending::Close(a), Ending::Close(b)) => {
            let allowed = a.map(|code| {
                if CloseCode::from(code).is_allowed() {
                    code
                } else {
                    1002
                }
            });
            ours.messages == theirs.messages && allowed == *b
        }
        (a, b) => a == b && ours.messages == theirs.messages,
    };
    assert!(
        same,
        "our decoder and tungstenite disagree:\n ours:   {ours:?}\n theirs: {theirs:?}"
    );
}

fn tungstenite_decode(data: &[u8]) -> Decoded {
    use tungstenite::error::ProtocolError;
    use tungstenite::{Error, Message};
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(4096);
    let mut socket =
        WebSocket::from_raw_socket(ClientBytes { rest: data }, Role::Server, Some(config));
    let mut messages = Vec::new();
    let ending = loop {
        match socket.read() {
            Ok(Message::Text(text)) => messages.push(Incoming::Text(text.as_str().to_owned())),
            Ok(Message::Binary(_)) => messages.push(Incoming::Binary),
            Ok(Message::Ping(payload)) => messages.push(Incoming::Ping(payload)),
            Ok(Message::Pong(_)) => messages.push(Incoming::Pong),
            Ok(Message::Close(frame)) => break Ending::Close(frame.map(|f| u16::from(f.code))),
            Ok(Message::Frame(_)) => unreachable!("tungstenite reads no raw frames"),
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => break Ending::Eof,
            Err(Error::Utf8(_)) => break Ending::Refused(1007),
            // Which code tungstenite would close with is not compared
            // otherwise: with several faults in one frame, the decoders
            // check them in different orders.
            Err(_) => break Ending::Refused(0),
        }
    };
    Decoded { messages, ending }
}

/// The client's side of a socket for tungstenite: reads yield the input,
/// writes (pongs, close replies) go nowhere.
struct ClientBytes<'a> {
    rest: &'a [u8],
}

impl Read for ClientBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rest.read(buf)
    }
}

impl Write for ClientBytes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- session

/// The output of a future that is ready at its first poll, as every
/// future of the in-memory broker is.
fn at_once<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the in-memory broker answers at once"),
    }
}

/// The session's reader and writer over the decoded messages, against a
/// broker with two topics and a second subscriber that reads nothing.
fn serve(input_len: usize, messages: &[Incoming]) {
    // A small queue, so that a few publishes overflow it. The policy comes
    // from the input's length: deterministic, and both get fuzzed.
    let policy = if input_len.is_multiple_of(2) {
        SlowConsumerPolicy::DropOldest
    } else {
        SlowConsumerPolicy::Disconnect
    };
    let broker = Broker::new(BrokerConfig {
        history_size: 16,
        subscriber_queue: 8,
        slow_consumer_policy: policy,
        max_message_bytes: MAX_PAYLOAD,
        ..BrokerConfig::default()
    });
    for topic in TOPICS {
        at_once(broker.create_topic(topic)).expect("create a fixed topic");
    }
    let bystander = broker.connect();
    for topic in TOPICS {
        at_once(broker.subscribe(&bystander, topic, Replay::default(), None))
            .expect("subscribe the bystander");
    }

    let conn = broker.connect();
    let mut inflight = Inflight::default();
    let mut standing = Standing::open();
    let mut client = ClientView::default();
    let mut requests = 0;
    for message in messages {
        match message {
            Incoming::Text(text) => at_once(handle_text(
                &broker,
                &conn,
                text,
                &mut inflight,
                &mut standing,
            )),
            // As `session::read_loop` answers a binary message.
            Incoming::Binary => conn.outbox.push_reply(Frame::error(
                None,
                ErrorCode::BadRequest,
                "binary frames are not supported",
            )),
            // Pongs go out of band (not through the outbox); pongs in are ignored.
            Incoming::Ping(_) | Incoming::Pong => continue,
            Incoming::Close(_) => unreachable!("decode() stops at a close"),
        }
        requests += 1;
        // The session's writer: it ends the reader when the queue ends.
        if client.read(&conn) {
            break;
        }
    }
    if !client.ended {
        assert_eq!(client.replies, requests, "one reply per request");
    }

    let mut bystander_view = ClientView::default();
    bystander_view.read(&bystander);
    broker.disconnect(&conn, End::Gone);
    broker.disconnect(&bystander, End::Gone);

    for topic in TOPICS {
        let c = broker
            .topic_counts(topic)
            .expect("no WebSocket frame deletes a topic");
        assert_eq!(c.subscribers, 0, "{topic}: subscribers left: {c:?}");
        assert_eq!(
            c.enqueued,
            c.delivered + c.dropped,
            "{topic}: counters do not balance: {c:?}"
        );
    }
    let totals = broker.totals();
    assert_eq!(totals.subscriptions.load(Relaxed), 0, "subscriptions left");
    assert_eq!(totals.connections.load(Relaxed), 0, "connections left");
}

/// What one connection has read so far, checked frame by frame.
#[derive(Default)]
struct ClientView {
    /// Replies read: `ack`, `pong`, and errors other than `SLOW_CONSUMER`.
    replies: u64,
    /// The queue ended (the `disconnect` policy fired).
    ended: bool,
    topics: HashMap<String, TopicView>,
    /// Subscribed by name, and the patterns held (from their acks).
    exact: std::collections::BTreeSet<String>,
    patterns: std::collections::BTreeSet<String>,
}

#[derive(Default)]
struct TopicView {
    subscribed: bool,
    /// The `seq` the next event must have, without a gap.
    next_seq: u64,
    /// A `SLOW_CONSUMER` notice announced a gap before the next event.
    gap_announced: bool,
}

impl ClientView {
    /// Drains `conn`'s queue as the session's writer does, settling live
    /// events as delivered, and checks every frame. True when the queue
    /// ended.
    fn read(&mut self, conn: &Connection) -> bool {
        let mut buf = DrainBuf::default();
        loop {
            let batch = conn.outbox.drain(&mut buf, BATCH);
            for queued in batch.frames() {
                self.check(queued.frame());
            }
            match batch.delivered() {
                Drained::More => continue,
                Drained::Empty => return false,
                Drained::End(_) => {
                    self.ended = true;
                    return true;
                }
            }
        }
    }

    fn check(&mut self, frame: &Frame) {
        let parsed: ServerFrame = serde_json::from_slice(frame.bytes())
            .unwrap_or_else(|e| panic!("not a server frame ({e}): {}", frame.as_str()));
        match parsed {
            ServerFrame::Ack(ack) if ack.pattern == Some(true) => {
                self.replies += 1;
                self.patterns.insert(ack.topic.clone());
                for (name, t) in ack.topics.unwrap_or_default() {
                    assert!(t.replayed <= t.seq, "replayed {} of {}", t.replayed, t.seq);
                    let topic = self.topics.entry(name).or_default();
                    topic.subscribed = true;
                    topic.next_seq = t.seq - t.replayed + 1;
                    topic.gap_announced = false;
                }
            }
            ServerFrame::Ack(ack) if ack.epoch.is_none() && ack.id.is_none() => {
                // unsubscribe: no event of what no subscription matches now
                self.replies += 1;
                if protocol::pattern::is_pattern(&ack.topic) {
                    self.patterns.remove(&ack.topic);
                } else {
                    self.exact.remove(&ack.topic);
                }
                for (name, topic) in &mut self.topics {
                    topic.subscribed = self.exact.contains(name)
                        || self.patterns.iter().any(|p| {
                            protocol::pattern::Pattern::parse(p).is_ok_and(|p| p.matches(name))
                        });
                }
            }
            ServerFrame::Ack(ack) => {
                self.replies += 1;
                if ack.epoch.is_some() {
                    self.exact.insert(ack.topic.clone());
                }
                let topic = self.topics.entry(ack.topic).or_default();
                match (ack.epoch, ack.id) {
                    // subscribe: what follows is `replayed` events from
                    // `seq - replayed + 1`, then live ones.
                    (Some(_), _) => {
                        let seq = ack.seq.expect("a subscribe ack has seq");
                        let replayed = ack.replayed.expect("a subscribe ack has replayed");
                        assert!(replayed <= seq, "replayed {replayed} of {seq} messages");
                        topic.subscribed = true;
                        topic.next_seq = seq - replayed + 1;
                        // Events evicted before this ack were announced
                        // before it or are announced before the next event.
                        topic.gap_announced = false;
                    }
                    // publish
                    (None, Some(_)) => assert!(ack.seq.is_some(), "a publish ack has seq"),
                    // unsubscribe: no event of the topic after it
                    (None, None) => topic.subscribed = false,
                }
            }
            ServerFrame::Event(event) => {
                let topic = self.topics.entry(event.topic.clone()).or_default();
                assert!(
                    topic.subscribed,
                    "event of {} without a subscription",
                    event.topic
                );
                if topic.gap_announced {
                    assert!(
                        event.seq >= topic.next_seq,
                        "{}: seq {} after {}",
                        event.topic,
                        event.seq,
                        topic.next_seq - 1
                    );
                } else {
                    assert_eq!(
                        event.seq, topic.next_seq,
                        "{}: a gap without SLOW_CONSUMER",
                        event.topic
                    );
                }
                topic.next_seq = event.seq + 1;
                topic.gap_announced = false;
            }
            ServerFrame::Error(e) if e.error.code == ErrorCode::SlowConsumer => {
                let name = e.topic.expect("SLOW_CONSUMER names its topic");
                assert!(
                    e.dropped.is_some_and(|n| n > 0),
                    "SLOW_CONSUMER without a count"
                );
                self.topics.entry(name).or_default().gap_announced = true;
            }
            ServerFrame::Error(e) => {
                self.replies += 1;
                assert_ne!(e.error.code, ErrorCode::Internal, "{}", e.error.message);
            }
            ServerFrame::Pong(_) | ServerFrame::Presence(_) => self.replies += 1,
            // Best-effort presence notices of the bystander's subscriptions.
            ServerFrame::Info(info) if matches!(info.msg, InfoKind::Join | InfoKind::Leave) => {}
            ServerFrame::Info(info) => panic!("unexpected info frame: {info:?}"),
        }
    }
}
