//! One WebSocket connection: a reader that decodes client frames and turns
//! them into broker calls, and a writer that drains the connection's outbox
//! onto the socket.
//!
//! The socket is the raw TCP stream taken back from the HTTP upgrade (see
//! [`super::codec`] for the framing): the writer sends a batch of events
//! as one `writev` of small headers and the shared, once-encoded payloads.
//! Both halves run in the connection's one task (joined, not spawned), so a
//! connection costs one task, and an idle one holds no buffer. Either half
//! ending ends the other, and the broker forgets the connection when the
//! session ends, however it ends (a drop guard also covers a panic or a
//! cancelled task).

use super::codec::{self, DecodeError, Decoder, Incoming};
use crate::backplane::{Backplane, Publishing};
use crate::broker::frame::Frame;
use crate::broker::{
    Broker, BrokerError, Connection, DrainBuf, Drained, End, Permits, Receipt, Replay,
};
use crate::shutdown::Shutdown;
use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesOrdered, StreamExt};
use parking_lot::Mutex;
use protocol::{Ack, ClientFrame, ErrorCode, InfoKind};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Frames taken from the outbox per round.
const BATCH: usize = 256;
/// Frames per `writev` (two slices each, header and payload).
const FRAMES_PER_WRITE: usize = 64;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// Close code for the `disconnect` slow-consumer policy.
const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code of a graceful shutdown or a dead peer.
const CLOSE_AWAY: u16 = 1001;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub heartbeat: Duration,
    /// What the connection's key allows.
    pub permits: Permits,
    /// Largest message a client may send (close 1009 above).
    pub max_message: usize,
}

/// Serves one upgraded connection: `input`/`output` are the socket's two
/// halves, `early` what the client sent right behind its upgrade request.
pub async fn run<R, W>(
    input: R,
    output: W,
    early: Bytes,
    backplane: Backplane,
    settings: Settings,
    shutdown: Shutdown,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let broker = backplane.broker();
    let conn = broker.connect_with(settings.permits);
    let _forget = ForgetOnDrop {
        broker: Arc::clone(broker),
        conn: Arc::clone(&conn),
    };
    tracing::debug!(connection = conn.id, "websocket connected");
    let over = CancellationToken::new();
    let heard = Heard::new();
    let pong = PendingPong::default();
    tokio::join!(
        write_loop(output, &conn, settings, &shutdown, &over, &heard, &pong),
        read_loop(
            input,
            BytesMut::from(&early[..]),
            Decoder::new(settings.max_message),
            &backplane,
            &conn,
            &shutdown,
            &over,
            &heard,
            &pong,
        ),
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

/// The answer owed to the client's latest ping (RFC 6455: a pong with its
/// payload; only the latest needs one), handed from reader to writer.
#[derive(Default)]
struct PendingPong {
    payload: Mutex<Option<Bytes>>,
    wake: Notify,
}

impl PendingPong {
    fn owe(&self, payload: Bytes) {
        *self.payload.lock() = Some(payload);
        self.wake.notify_one();
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.payload.lock().take().map(|p| codec::pong_frame(&p))
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

#[allow(clippy::too_many_arguments)]
async fn read_loop<R: AsyncRead + Unpin>(
    mut input: R,
    mut buf: BytesMut,
    mut decoder: Decoder,
    backplane: &Backplane,
    conn: &Arc<Connection>,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
    pong: &PendingPong,
) {
    let mut inflight = Inflight::default();
    // The requests already received wait for reply room: checked before
    // each one, not only before a read, since one read brings many.
    let mut paused = false;
    loop {
        // Everything already received, then read more.
        loop {
            if shutdown.is_triggered() {
                inflight.settle(conn).await;
                return;
            }
            if inflight.is_full() {
                inflight.answer_next(conn).await;
            }
            if !conn.outbox.may_read() {
                paused = true;
                break;
            }
            let message = match decoder.decode(&mut buf) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => {
                    inflight.flush(conn).await;
                    refuse(conn, &e);
                    return;
                }
            };
            heard.now();
            match message {
                // Boxed: held inline, its state would sit in every
                // connection's task, idle or not.
                Incoming::Text(text) => {
                    Box::pin(handle_text(backplane, conn, &text, &mut inflight)).await
                }
                Incoming::Binary => {
                    inflight.flush(conn).await;
                    conn.outbox.push_reply(Frame::error(
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are not supported: send one JSON object per text frame",
                    ))
                }
                Incoming::Ping(payload) => pong.owe(payload),
                Incoming::Pong => {}
                Incoming::Close(_) => {
                    conn.outbox.close(End::Gone);
                    return;
                }
            }
        }
        if buf.is_empty() && buf.capacity() > 0 {
            // Idle connections hold no read buffer.
            buf = BytesMut::new();
        }
        // Backpressure: while the client leaves its replies unread (the
        // outbox's count and byte bounds), take none of its requests.
        let waiting_with_requests = std::mem::take(&mut paused);
        let read = tokio::select! {
            // Once shutdown is triggered, no more requests are taken.
            biased;
            _ = shutdown.triggered() => {
                inflight.settle(conn).await;
                return;
            }
            _ = over.cancelled() => return,
            _ = inflight.answer_next(conn), if !inflight.is_empty() => continue,
            read = async {
                conn.outbox.reply_room().await;
                if waiting_with_requests {
                    // Answer what is buffered before reading more, so the
                    // read buffer stays within a frame and a chunk.
                    return None;
                }
                buf.reserve(READ_CHUNK);
                Some(input.read_buf(&mut buf).await)
            } => read,
        };
        let Some(read) = read else {
            continue;
        };
        match read {
            Ok(0) => {
                conn.outbox.close(End::Gone);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(connection = conn.id, error = %e, "websocket read failed");
                conn.outbox.close(End::Gone);
                return;
            }
        }
    }
}

/// Closes the connection over a frame that breaks the protocol or a limit.
fn refuse(conn: &Connection, e: &DecodeError) {
    let reason = match e {
        DecodeError::TooBig(_) => "frame is over max_frame_bytes".to_owned(),
        other => other.to_string(),
    };
    tracing::debug!(connection = conn.id, error = %e, "closing on a bad frame");
    conn.outbox.close(End::Close {
        code: e.close_code(),
        reason,
    });
}

/// Publishes sent to the backplane whose acknowledgement has not come yet
/// (cluster mode: NATS answers after storing them). A connection may have
/// up to [`Inflight::MAX`] in flight; their replies, and every reply after
/// them, keep the order of the requests.
///
/// Made on the first publish that has to wait (cluster mode only): an empty
/// `FuturesOrdered` already allocates, and idle connections count bytes.
#[derive(Default)]
pub struct Inflight {
    replies: Option<FuturesOrdered<BoxFuture<'static, Frame>>>,
}

impl Inflight {
    const MAX: usize = 256;

    fn is_empty(&self) -> bool {
        self.replies.as_ref().is_none_or(|r| r.is_empty())
    }

    fn is_full(&self) -> bool {
        self.replies.as_ref().is_some_and(|r| r.len() >= Self::MAX)
    }

    fn queue(&mut self, reply: BoxFuture<'static, Frame>) {
        self.replies
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(reply);
    }

    /// Queues the reply to a publish: at once when it is known and nothing
    /// is in flight before it, else behind the others.
    fn push(
        &mut self,
        conn: &Connection,
        publishing: Publishing,
        request_id: Option<String>,
        topic: String,
    ) {
        match publishing {
            Publishing::Done(result) if self.is_empty() => {
                conn.outbox
                    .push_reply(publish_reply(result, request_id, &topic));
            }
            Publishing::Done(result) => {
                let reply = publish_reply(result, request_id, &topic);
                self.queue(Box::pin(std::future::ready(reply)));
            }
            Publishing::Waiting(acknowledged) => {
                self.queue(Box::pin(async move {
                    publish_reply(acknowledged.await, request_id, &topic)
                }));
            }
        }
    }

    /// Waits for the oldest publish in flight and queues its reply.
    async fn answer_next(&mut self, conn: &Connection) {
        let Some(replies) = self.replies.as_mut() else {
            return;
        };
        if let Some(reply) = replies.next().await {
            conn.outbox.push_reply(reply);
        }
    }

    /// Answers every publish in flight, in order.
    pub async fn flush(&mut self, conn: &Connection) {
        while !self.is_empty() {
            self.answer_next(conn).await;
        }
    }

    /// At shutdown: answers what NATS acknowledges within a second.
    async fn settle(&mut self, conn: &Connection) {
        let _ = timeout(Duration::from_secs(1), self.flush(conn)).await;
    }
}

fn publish_reply(
    result: Result<Receipt, BrokerError>,
    request_id: Option<String>,
    topic: &str,
) -> Frame {
    match result {
        Ok(receipt) => Frame::ack(Ack {
            seq: Some(receipt.seq),
            id: Some(receipt.id),
            ..Frame::ack_of(request_id, topic)
        }),
        Err(e) => Frame::error(request_id, e.code, e.message),
    }
}

/// Answers one client frame. Every reply goes through the outbox, so it is
/// ordered with the events of this connection.
///
/// Public for the `ws_frames` fuzz target and its corpus replay test
/// (`server/tests/fuzz_corpus.rs`), which call it without a socket.
///
/// With the in-memory backplane the future is ready at its first poll and
/// nothing stays in `inflight`. In cluster mode a publish is sent and its
/// acknowledgement awaited in `inflight`; any other request first waits
/// for the publishes before it, so replies keep the order of requests.
pub async fn handle_text(
    backplane: &Backplane,
    conn: &Arc<Connection>,
    text: &str,
    inflight: &mut Inflight,
) {
    let frame = match parse_frame(text) {
        Ok(frame) => frame,
        Err(problem) => {
            let reply = Frame::error(
                readable_request_id(text),
                ErrorCode::BadRequest,
                format!("invalid frame: {problem}"),
            );
            inflight.flush(conn).await;
            conn.outbox.push_reply(reply);
            return;
        }
    };
    if !matches!(frame, ClientFrame::Publish { .. }) {
        inflight.flush(conn).await;
    }
    match frame {
        ClientFrame::Subscribe {
            topic,
            client_id: _,
            last_n,
            since,
            request_id,
        } => {
            if let Err(e) = backplane
                .subscribe(conn, &topic, Replay { last_n, since }, request_id.clone())
                .await
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
            if let Err(e) = backplane
                .broker()
                .unsubscribe(conn, &topic, request_id.clone())
            {
                conn.outbox
                    .push_reply(Frame::error(request_id, e.code, e.message));
            }
        }
        ClientFrame::Publish {
            topic,
            message,
            request_id,
        } => {
            let publishing = backplane.start_publish_from(conn, &topic, message).await;
            inflight.push(conn, publishing, request_id, topic);
        }
        ClientFrame::Ping { request_id } => conn.outbox.push_reply(Frame::pong(request_id)),
    }
}

/// A client frame. serde would also read a struct from a JSON array
/// (`["ping"]`), which the contract does not allow: the frame, its
/// `message` and its `since` must be objects.
fn parse_frame(text: &str) -> Result<ClientFrame, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(fields) = value.as_object() else {
        return Err("a frame is one JSON object".into());
    };
    for key in ["message", "since"] {
        if fields
            .get(key)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(format!("`{key}` must be an object"));
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The `request_id` of a frame that did not parse, when it can be read.
fn readable_request_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("request_id")?.as_str().map(str::to_owned)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut out: W,
    conn: &Connection,
    settings: Settings,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
    pong: &PendingPong,
) {
    let mut heartbeat = interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A peer that takes no bytes for two heartbeats (gone without a FIN, or
    // stopped reading) would hold a write forever: the write deadline
    // closes it, as the ping closes an idle one.
    let deadline = 2 * settings.heartbeat;
    let mut stopping = false;
    let mut buf = DrainBuf::default();
    loop {
        if let Some(frame) = pong.take() {
            if !write_raw(&mut out, &frame, deadline).await {
                conn.outbox.close(End::Gone);
                break;
            }
        }
        let batch = conn.outbox.drain(&mut buf, BATCH);
        let status = if batch.is_empty() {
            batch.delivered()
        } else {
            let live = batch.has_live();
            match write_frames(&mut out, batch.frames(), deadline).await {
                Ok(drained_by_peer) => {
                    // A connection that events are flowing to is judged by
                    // its writes (the progress deadline here,
                    // TCP_USER_TIMEOUT in the kernel), not by how late its
                    // pong comes back: a slow reader's pong waits behind its
                    // own backlog.
                    if live || drained_by_peer {
                        heard.now();
                    }
                    batch.delivered()
                }
                Err(_) => {
                    tracing::debug!(connection = conn.id, "write failed or stalled: closing");
                    let _ = batch.dropped();
                    conn.outbox.close(End::Gone);
                    break;
                }
            }
        };
        match status {
            Drained::More => continue,
            Drained::End(end) => {
                finish(&mut out, end, deadline).await;
                break;
            }
            Drained::Empty if stopping => {
                let close = codec::close_frame(CLOSE_AWAY, "server shutting down");
                write_raw(&mut out, &close, deadline).await;
                break;
            }
            Drained::Empty => {
                // Idle connections give their batch memory back.
                buf.shrink();
                tokio::select! {
                    _ = conn.outbox.writable() => {}
                    _ = pong.wake.notified() => {}
                    _ = heartbeat.tick() => {
                        // Dead peers: a WebSocket ping each heartbeat; a peer
                        // that sent nothing, not even a pong, for two
                        // heartbeats is gone (or a half-open socket) and is closed.
                        if heard.silent_for() > 2 * settings.heartbeat {
                            tracing::debug!(connection = conn.id, "no answer to ping: closing");
                            conn.outbox.close(End::Close {
                                code: CLOSE_AWAY,
                                reason: "no answer to ping within two heartbeats".into(),
                            });
                        } else {
                            conn.outbox.push_reply(Frame::info(InfoKind::Ping, None));
                            if !write_raw(&mut out, &codec::PING, deadline).await {
                                conn.outbox.close(End::Gone);
                            }
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
    let _ = timeout(deadline, out.shutdown()).await;
    over.cancel();
}

/// Writes whole control frames; false if the socket failed or stalled.
async fn write_raw<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8], deadline: Duration) -> bool {
    matches!(timeout(deadline, out.write_all(bytes)).await, Ok(Ok(())))
}

/// Writes `frames` as text frames: per `writev`, up to
/// [`FRAMES_PER_WRITE`] headers and payloads. The slices live on the stack
/// of each poll, so the connection's task holds only a position between
/// polls.
///
/// The deadline is on progress, per `writev`: a slow reader that keeps
/// taking bytes keeps its connection (its queue drops and signals what it
/// cannot hold), one that takes nothing for `deadline` is gone.
///
/// Returns whether the socket was full and then took bytes again: the peer
/// read them, a sign of life as good as a pong (a busy slow reader is not
/// pinged: its writer is never idle).
async fn write_frames<W: AsyncWrite + Unpin, F: AsRef<Frame>>(
    out: &mut W,
    frames: &[F],
    deadline: Duration,
) -> io::Result<bool> {
    let mut at = Position::default();
    let mut waited = false;
    while at.frame < frames.len() {
        // Most writes go through at once; only a full socket gets the
        // deadline (a timer and a clock read per write were 3 % of a
        // fan-out's CPU).
        let once =
            std::future::poll_fn(|cx| poll_write_once(Pin::new(&mut *out), cx, frames, &mut at));
        let mut once = std::pin::pin!(once);
        if let Some(written) = once.as_mut().now_or_never() {
            written?;
            continue;
        }
        waited = true;
        timeout(deadline, once)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    }
    Ok(waited)
}

/// How far a batch has been written: whole frames, then bytes into the next.
#[derive(Default)]
struct Position {
    frame: usize,
    offset: usize,
}

/// One `writev` of what is left of `frames` from `at`, advancing `at`.
fn poll_write_once<W: AsyncWrite, F: AsRef<Frame>>(
    out: Pin<&mut W>,
    cx: &mut Context<'_>,
    frames: &[F],
    at: &mut Position,
) -> Poll<io::Result<()>> {
    {
        let chunk = &frames[at.frame..frames.len().min(at.frame + FRAMES_PER_WRITE)];
        let mut headers = [([0u8; 10], 0usize); FRAMES_PER_WRITE];
        for (h, f) in headers.iter_mut().zip(chunk) {
            *h = codec::header(codec::TEXT, f.as_ref().bytes().len());
        }
        let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
        let mut n = 0;
        for (i, f) in chunk.iter().enumerate() {
            let (h, len) = &headers[i];
            let (header, payload) = (&h[..*len], &f.as_ref().bytes()[..]);
            let skip = if i == 0 { at.offset } else { 0 };
            if skip < header.len() {
                slices[n] = IoSlice::new(&header[skip..]);
                slices[n + 1] = IoSlice::new(payload);
                n += 2;
            } else {
                slices[n] = IoSlice::new(&payload[skip - header.len()..]);
                n += 1;
            }
        }
        let mut written = ready!(out.poll_write_vectored(cx, &slices[..n]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        // Advance over whole frames, then into the next one.
        for (h, f) in headers.iter().zip(chunk) {
            let left = h.1 + f.as_ref().bytes().len() - at.offset;
            if written >= left {
                written -= left;
                at.frame += 1;
                at.offset = 0;
            } else {
                at.offset += written;
                break;
            }
        }
    }
    Poll::Ready(Ok(()))
}

async fn finish<W: AsyncWrite + Unpin>(out: &mut W, end: End, deadline: Duration) {
    match end {
        End::Kicked { topic, dropped } => {
            let notice = Frame::slow_consumer(&topic, dropped);
            let written = write_frames(out, std::slice::from_ref(&notice), deadline);
            if written.await.is_ok() {
                let close = codec::close_frame(CLOSE_SLOW_CONSUMER, "slow consumer");
                write_raw(out, &close, deadline).await;
            }
        }
        End::Close { code, reason } => {
            write_raw(out, &codec::close_frame(code, &reason), deadline).await;
        }
        End::Gone => {
            // An empty close frame; the peer may be gone already.
            write_raw(out, &[0x88, 0x00], deadline).await;
        }
    }
}
