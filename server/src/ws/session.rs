//! One WebSocket connection: a reader that turns client frames into broker
//! calls, and a writer that drains the connection's outbox onto the socket.
//!
//! Both halves run in the connection's one task (joined, not spawned), so a
//! connection costs one task. Either half ending ends the other, and the
//! broker forgets the connection when the session ends, however it ends
//! (a drop guard also covers a panic or a cancelled task).

use crate::broker::frame::Frame;
use crate::broker::{Broker, Connection, Drained, End, Replay, Settlement};
use crate::shutdown::Shutdown;
use app::wire::{Ack, ClientFrame, ErrorCode, InfoKind};
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Frames taken from the outbox per socket flush.
const BATCH: usize = 256;
/// Close code for the `disconnect` slow-consumer policy.
const CLOSE_SLOW_CONSUMER: u16 = 4008;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub heartbeat: Duration,
}

pub async fn run(socket: WebSocket, broker: Arc<Broker>, settings: Settings, shutdown: Shutdown) {
    let (sink, stream) = socket.split();
    serve(sink, stream, broker, settings, shutdown).await
}

/// The session over any sink and stream of WebSocket messages.
pub async fn serve<W, R>(
    sink: W,
    stream: R,
    broker: Arc<Broker>,
    settings: Settings,
    shutdown: Shutdown,
) where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let conn = broker.connect();
    let _forget = ForgetOnDrop {
        broker: Arc::clone(&broker),
        conn: Arc::clone(&conn),
    };
    tracing::debug!(connection = conn.id, "websocket connected");
    let over = CancellationToken::new();
    let heard = Heard::new();
    tokio::join!(
        write_loop(sink, &conn, settings, &shutdown, &over, &heard),
        read_loop(stream, &broker, &conn, &shutdown, &over, &heard),
    );
    tracing::debug!(connection = conn.id, "websocket closed");
}

/// When the peer last sent anything (a pong counts), for the dead-peer check.
struct Heard {
    since: Instant,
    at_ms: AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Heard {
            since: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        self.at_ms
            .store(self.since.elapsed().as_millis() as u64, Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.since
            .elapsed()
            .saturating_sub(Duration::from_millis(self.at_ms.load(Relaxed)))
    }
}

struct ForgetOnDrop {
    broker: Arc<Broker>,
    conn: Arc<Connection>,
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.broker.disconnect(&self.conn, End::Gone);
    }
}

async fn read_loop<R>(
    mut stream: R,
    broker: &Broker,
    conn: &Arc<Connection>,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
) where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        // Backpressure: while the client leaves `reply_limit` replies
        // unread, read none of its requests.
        let next = tokio::select! {
            _ = over.cancelled() => return,
            _ = shutdown.triggered() => return,
            next = async {
                conn.outbox.reply_room().await;
                stream.next().await
            } => next,
        };
        if matches!(next, Some(Ok(_))) {
            heard.now();
        }
        match next {
            Some(Ok(Message::Text(text))) => handle_text(broker, conn, text.as_str()),
            Some(Ok(Message::Binary(_))) => conn.outbox.push_reply(Frame::error(
                None,
                ErrorCode::BadRequest,
                "binary frames are not supported: send one JSON object per text frame",
            )),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => {
                conn.outbox.close(End::Gone);
                return;
            }
            Some(Err(e)) => {
                if is_too_long(&e) {
                    conn.outbox.close(End::Close {
                        code: close_code::SIZE,
                        reason: "frame is over max_frame_bytes".into(),
                    });
                } else {
                    tracing::debug!(connection = conn.id, error = %e, "websocket read failed");
                    conn.outbox.close(End::Gone);
                }
                return;
            }
        }
    }
}

fn is_too_long(e: &axum::Error) -> bool {
    use tungstenite::error::CapacityError;
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
        .is_some_and(|t| {
            matches!(
                t,
                tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. })
            )
        })
}

/// Answers one client frame. Every reply goes through the outbox, so it is
/// ordered with the events of this connection.
fn handle_text(broker: &Broker, conn: &Arc<Connection>, text: &str) {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => {
            let reply = Frame::error(
                readable_request_id(text),
                ErrorCode::BadRequest,
                format!("invalid frame: {e}"),
            );
            conn.outbox.push_reply(reply);
            return;
        }
    };
    match frame {
        ClientFrame::Subscribe {
            topic,
            client_id: _,
            last_n,
            since,
            request_id,
        } => {
            if let Err(e) =
                broker.subscribe(conn, &topic, Replay { last_n, since }, request_id.clone())
            {
                conn.outbox
                    .push_reply(Frame::error(request_id, e.code, e.message));
            }
        }
        ClientFrame::Unsubscribe {
            topic,
            client_id: _,
            request_id,
        } => {
            if let Err(e) = broker.unsubscribe(conn, &topic, request_id.clone()) {
                conn.outbox
                    .push_reply(Frame::error(request_id, e.code, e.message));
            }
        }
        ClientFrame::Publish {
            topic,
            message,
            request_id,
        } => match broker.publish(&topic, message) {
            Ok(receipt) => conn.outbox.push_reply(Frame::ack(Ack {
                seq: Some(receipt.seq),
                id: Some(receipt.id),
                ..Frame::ack_of(request_id, &topic)
            })),
            Err(e) => conn
                .outbox
                .push_reply(Frame::error(request_id, e.code, e.message)),
        },
        ClientFrame::Ping { request_id } => conn.outbox.push_reply(Frame::pong(request_id)),
    }
}

/// The `request_id` of a frame that did not parse, when it can be read.
fn readable_request_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("request_id")?.as_str().map(str::to_owned)
}

async fn write_loop<W>(
    mut sink: W,
    conn: &Connection,
    settings: Settings,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
) where
    W: Sink<Message> + Unpin,
{
    let mut heartbeat = interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut batch: Vec<Frame> = Vec::with_capacity(BATCH);
    let mut settle = Settlement::default();
    loop {
        let status = conn.outbox.drain_into(&mut batch, &mut settle, BATCH);
        if !batch.is_empty() {
            if write_all(&mut sink, &mut batch).await {
                settle.delivered();
            } else {
                settle.dropped();
                conn.outbox.close(End::Gone);
                break;
            }
        }
        match status {
            Drained::More => continue,
            Drained::End(end) => {
                finish(&mut sink, end).await;
                break;
            }
            Drained::Empty if stopping => {
                let _ = sink
                    .send(close(close_code::AWAY, "server shutting down"))
                    .await;
                break;
            }
            Drained::Empty => {
                tokio::select! {
                    _ = conn.outbox.writable() => {}
                    _ = heartbeat.tick() => {
                        // Dead peers: a WebSocket ping each heartbeat; a peer
                        // that sent nothing, not even a pong, for two
                        // heartbeats is gone (or a half-open socket) and is closed.
                        if heard.silent_for() > 2 * settings.heartbeat {
                            tracing::debug!(connection = conn.id, "no answer to ping: closing");
                            conn.outbox.close(End::Close {
                                code: close_code::AWAY,
                                reason: "no answer to ping within two heartbeats".into(),
                            });
                        } else {
                            conn.outbox.push_reply(Frame::info(InfoKind::Ping, None));
                            let _ = sink.send(Message::Ping(Bytes::new())).await;
                        }
                    }
                    _ = shutdown.triggered() => {
                        stopping = true;
                        conn.outbox.push_reply(Frame::info(InfoKind::ShuttingDown, None));
                    }
                }
            }
        }
    }
    over.cancel();
}

/// Feeds the batch into the socket's write buffer and flushes once.
async fn write_all<W: Sink<Message> + Unpin>(sink: &mut W, batch: &mut Vec<Frame>) -> bool {
    for frame in batch.drain(..) {
        let text = Utf8Bytes::try_from(frame.bytes().clone()).unwrap_or_default();
        if sink.feed(Message::Text(text)).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

async fn finish<W: Sink<Message> + Unpin>(sink: &mut W, end: End) {
    match end {
        End::Kicked { topic, dropped } => {
            let notice = Frame::slow_consumer(&topic, dropped);
            let text = Utf8Bytes::try_from(notice.bytes().clone()).unwrap_or_default();
            let _ = sink.feed(Message::Text(text)).await;
            let _ = sink.send(close(CLOSE_SLOW_CONSUMER, "slow consumer")).await;
        }
        End::Close { code, reason } => {
            let _ = sink.send(close(code, &reason)).await;
        }
        End::Gone => {
            let _ = sink.close().await;
        }
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    }))
}
