//! The WebSocket session's clocks, in process and on paused time: the
//! session runs over an in-memory pipe (`tokio::io::duplex`) and tokio's
//! clock only moves when every task waits, so heartbeats, the dead-peer
//! check and the write deadline are tested to the second without sleeping.
//! The same behaviours over real sockets and real time are in
//! `websocket.rs` (`heartbeats_arrive_on_idle_connections`,
//! `dead_peers_are_closed_live_ones_are_kept`,
//! `peers_that_stop_reading_are_closed_by_the_write_deadline`).

use protocol::testing::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use protocol::{InfoKind, PublishMessage, ServerFrame};
use pubsub_server::broker::{Broker, BrokerConfig, Permits};
use pubsub_server::shutdown::Shutdown;
use pubsub_server::ws::session;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const HEARTBEAT: Duration = Duration::from_secs(30);

/// What the client side of the pipe read.
#[derive(Debug, PartialEq)]
enum Read {
    Text(Box<ServerFrame>),
    Ping,
    Close(u16),
    /// The server closed the pipe.
    End,
}

struct Client {
    pipe: DuplexStream,
    buf: Vec<u8>,
}

impl Client {
    async fn next(&mut self) -> Read {
        loop {
            if let Some((first, payload, used)) = testing::server_frame(&self.buf) {
                let read = match first & 0x0F {
                    OP_TEXT => {
                        Read::Text(serde_json::from_slice(payload).expect("a contract frame"))
                    }
                    OP_PING => Read::Ping,
                    OP_CLOSE => Read::Close(u16::from_be_bytes([payload[0], payload[1]])),
                    other => panic!("unexpected opcode {other}"),
                };
                self.buf.drain(..used);
                return read;
            }
            let mut chunk = [0u8; 4096];
            match self.pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => return Read::End,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) {
        self.pipe.write_all(frame).await.expect("the server reads");
    }

    async fn pong(&mut self) {
        self.send(&testing::masked(0x80 | OP_PONG, b"")).await;
    }
}

/// A session on `broker` behind a pipe of `pipe_bytes` each way.
fn connect(broker: &Broker, pipe_bytes: usize) -> (Client, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(pipe_bytes);
    let (input, output) = tokio::io::split(server);
    let settings = session::Settings {
        heartbeat: HEARTBEAT,
        permits: Permits::ALL,
        max_message: 1 << 20,
        remote: None,
    };
    let session = tokio::spawn(session::run(
        input,
        output,
        bytes::Bytes::new(),
        broker.clone(),
        settings,
        session::Standing::open(),
        Shutdown::new(),
        None,
    ));
    let client = Client {
        pipe: client,
        buf: Vec::new(),
    };
    (client, session)
}

fn connections(broker: &Broker) -> u64 {
    broker.totals().connections.load(Relaxed)
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_gets_a_ping_and_an_info_each_heartbeat() {
    let broker = Broker::new(BrokerConfig::default());
    let (mut client, _session) = connect(&broker, 64 * 1024);
    let start = Instant::now();
    for beat in 1..=3u32 {
        // The WebSocket ping goes out at once; the `info ping` through the
        // outbox, behind anything queued before it.
        assert_eq!(client.next().await, Read::Ping);
        let info = client.next().await;
        assert!(
            matches!(&info, Read::Text(f) if matches!(&**f, ServerFrame::Info(i) if i.msg == InfoKind::Ping)),
            "{info:?}"
        );
        assert_eq!(start.elapsed(), beat * HEARTBEAT, "heartbeat {beat}");
        client.pong().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_nothing_is_closed_after_two_silent_heartbeats_one_that_answers_is_kept(
) {
    let broker = Broker::new(BrokerConfig::default());
    let (mut silent, silent_session) = connect(&broker, 64 * 1024);
    let (mut live, live_session) = connect(&broker, 64 * 1024);
    let live_side = tokio::spawn(async move {
        // Answers every ping, for ten heartbeats.
        let mut pings = 0;
        while pings < 10 {
            match live.next().await {
                Read::Ping => {
                    pings += 1;
                    live.pong().await;
                }
                Read::Text(_) => {}
                other => panic!("the live peer was closed: {other:?}"),
            }
        }
        live
    });
    let start = Instant::now();
    let close = loop {
        match silent.next().await {
            Read::Close(code) => break code,
            Read::End => panic!("the pipe ended without a close frame"),
            _ => {}
        }
    };
    // Ticks at 30 s and 60 s ping it (silent for 30 s, then 60 s); the
    // tick at 90 s finds it silent for more than two heartbeats.
    assert_eq!((close, start.elapsed()), (1001, 3 * HEARTBEAT));
    assert_eq!(silent.next().await, Read::End);
    silent_session.await.expect("the session ends cleanly");

    let _live = live_side.await.expect("the live peer kept its connection");
    assert!(start.elapsed() >= 10 * HEARTBEAT);
    assert!(!live_session.is_finished());
    assert_eq!(connections(&broker), 1, "only the live peer is left");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_closed_by_the_write_deadline() {
    let broker = Broker::new(BrokerConfig::default());
    broker.create_topic("t").await.expect("a new topic");
    // A pipe of 4 KiB: a few events fill it.
    let (mut client, session) = connect(&broker, 4096);
    client
        .send(&testing::text_frame(
            r#"{"type":"subscribe","topic":"t","request_id":"s"}"#,
        ))
        .await;
    let ack = client.next().await;
    assert!(
        matches!(&ack, Read::Text(f) if matches!(**f, ServerFrame::Ack(_))),
        "{ack:?}"
    );
    // The client reads no more: events fill the pipe, then the writer
    // waits on a write that never progresses.
    let payload = serde_json::json!("x".repeat(1000));
    for _ in 0..64 {
        let message = PublishMessage {
            id: None,
            payload: payload.clone(),
        };
        broker
            .publish("t", message)
            .await
            .expect("publishers are never slowed");
    }
    let stalled = Instant::now();
    session.await.expect("the session ends cleanly");
    // The stalled write counts from when it started, within the time the
    // publishes took (none, on a paused clock).
    assert_eq!(stalled.elapsed(), 2 * HEARTBEAT, "the write deadline");
    assert_eq!(connections(&broker), 0, "the connection is forgotten");
    let counts = broker.topic_counts("t").expect("the topic");
    assert_eq!(counts.enqueued, 64);
    assert_eq!(
        counts.enqueued,
        counts.delivered + counts.dropped,
        "every event delivered or dropped: {counts:?}"
    );
    assert!(counts.dropped > 0, "{counts:?}");
}
