//! The writing half: the outbox drained in batches onto the socket (each
//! batch's headers and shared payloads gathered into one `send`), what the
//! flusher handed over, heartbeats, the write deadline, and the close frame
//! that ends the connection.

use super::super::codec;
use super::{
    Heard, PendingPong, BATCH, CLOSE_AWAY, CLOSE_BY_ADMIN, CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED,
};
use crate::broker::{Connection, DrainBuf, Drained, End, Frame, Handover};
use crate::shutdown::Shutdown;
use futures_util::future::FutureExt;
use protocol::InfoKind;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut out: W,
    conn: &Connection,
    heartbeat_every: Duration,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
    pong: &PendingPong,
) {
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A peer that takes no bytes for two heartbeats (gone without a FIN, or
    // stopped reading) would hold a write forever: the write deadline
    // closes it, as the ping closes an idle one.
    let deadline = 2 * heartbeat_every;
    let mut stopping = false;
    // Boxed: the batch buffers and the latency bins (about 200 bytes)
    // would otherwise sit in every connection's future, whose size
    // `tests/session_size.rs` holds under 2 KiB.
    let mut buf = Box::<DrainBuf>::default();
    // The heartbeat fired while parked: ping (or judge the peer) once the
    // socket is ours again.
    let mut ping_due = false;
    loop {
        // Nothing is written before the socket is ours: the flusher may be
        // writing to it (it hands it over, with a wake-up, when done).
        conn.outbox.own_socket().await;
        if let Some(rest) = conn.outbox.take_handover() {
            if !finish_handover(&mut out, conn, rest, deadline, heard).await {
                conn.outbox.close(End::Gone);
                break;
            }
        }
        if let Some(frame) = pong.take() {
            if !write_raw(&mut out, &frame, deadline).await {
                conn.outbox.close(End::Gone);
                break;
            }
        }
        if std::mem::take(&mut ping_due) {
            // Dead peers: a WebSocket ping each heartbeat; a peer that sent
            // nothing, not even a pong, for two heartbeats is gone (or a
            // half-open socket) and is closed.
            if heard.silent_for() > 2 * heartbeat_every {
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
        let batch = conn.outbox.drain(&mut buf, BATCH);
        let status = if batch.is_empty() {
            batch.delivered()
        } else {
            let live = batch.has_live();
            match write_frames(&mut out, batch.frames(), Position::default(), deadline).await {
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
        // From here on an `Empty` drain has parked the writer: the loop
        // takes the socket back before the next write.
        match status {
            Drained::More => continue,
            Drained::End(end) => {
                finish(&mut out, end, deadline).await;
                break;
            }
            Drained::Empty if stopping => {
                conn.outbox.own_socket().await;
                let close = codec::close_frame(CLOSE_AWAY, "server shutting down");
                write_raw(&mut out, &close, deadline).await;
                break;
            }
            Drained::Empty if shutdown.is_triggered() => {
                stopping = true;
                conn.outbox
                    .push_reply(Frame::info(InfoKind::ShuttingDown, None));
            }
            Drained::Empty => {
                // Idle connections give their batch memory back.
                buf.shrink();
                // One thing to wait on besides the heartbeat: a publish, a
                // reply, a pong owed and the shutdown all wake the outbox.
                tokio::select! {
                    biased;
                    _ = conn.outbox.writable() => {}
                    _ = heartbeat.tick() => ping_due = true,
                }
            }
        }
    }
    let _ = timeout(deadline, out.shutdown()).await;
    over.cancel();
}

/// Writes what a flusher left of its batch (it found the socket full, or
/// failed) and settles it; false if the socket failed or stalled.
async fn finish_handover<W: AsyncWrite + Unpin>(
    out: &mut W,
    conn: &Connection,
    rest: Handover,
    deadline: Duration,
    heard: &Heard,
) -> bool {
    let Handover {
        mut buf,
        frame,
        offset,
    } = rest;
    let batch = conn.outbox.resume(&mut buf);
    let at = Position { frame, offset };
    match write_frames(out, batch.frames(), at, deadline).await {
        Ok(_) => {
            // The socket was full and then took bytes: the peer reads.
            heard.now();
            let _ = batch.delivered();
            true
        }
        Err(_) => {
            let _ = batch.dropped();
            false
        }
    }
}

/// Writes whole control frames; false if the socket failed or stalled.
async fn write_raw<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8], deadline: Duration) -> bool {
    matches!(timeout(deadline, out.write_all(bytes)).await, Ok(Ok(())))
}

/// Writes `frames` as text frames: per `send`, up to [`WRITE_BYTES`] of
/// headers and payloads, gathered in the worker thread's buffer within one
/// poll, so the connection's task holds only a position between polls.
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
    mut at: Position,
    deadline: Duration,
) -> io::Result<bool> {
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
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::ws) struct Position {
    pub frame: usize,
    pub offset: usize,
}

/// Bytes gathered per write (at least one frame, whatever its size).
const WRITE_BYTES: usize = 64 << 10;

thread_local! {
    /// Where a write's frames are gathered: one per worker thread, used
    /// within one poll, so no connection holds a write buffer of its own.
    static GATHER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One write of what is left of `frames` from `at` (up to about
/// [`WRITE_BYTES`]), advancing `at`.
///
/// The frames' headers and payloads are copied into one buffer and sent
/// with one `send`: measured against the `writev` of their slices it did
/// (100 subscribers × 5,000 msg/s, as many system calls either way), the
/// kernel's vectored path cost more than the copy.
fn poll_write_once<W: AsyncWrite, F: AsRef<Frame>>(
    out: Pin<&mut W>,
    cx: &mut Context<'_>,
    frames: &[F],
    at: &mut Position,
) -> Poll<io::Result<()>> {
    GATHER.with_borrow_mut(|buf| {
        gather(buf, frames, *at);
        let written = ready!(out.poll_write(cx, &buf[at.offset..]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        advance(frames, at, written);
        if buf.capacity() > 4 * WRITE_BYTES {
            *buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    })
}

/// Writes what it can of `frames` from `at` now, without waiting, with
/// `try_write` (the flusher's write): `Ok(true)` when all of it went,
/// `Ok(false)` when the socket is full (`at` says how far it got).
pub(in crate::ws) fn write_now<F: AsRef<Frame>>(
    socket: &tokio::net::TcpStream,
    frames: &[F],
    at: &mut Position,
) -> io::Result<bool> {
    GATHER.with_borrow_mut(|buf| {
        while at.frame < frames.len() {
            gather(buf, frames, *at);
            let written = match socket.try_write(&buf[at.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            advance(frames, at, written);
        }
        if buf.capacity() > 4 * WRITE_BYTES {
            *buf = Vec::new();
        }
        Ok(true)
    })
}

/// Fills `buf` with the frames from `at.frame` (whole, headers and
/// payloads), up to about [`WRITE_BYTES`]; the write starts at
/// `at.offset` into it.
fn gather<F: AsRef<Frame>>(buf: &mut Vec<u8>, frames: &[F], at: Position) {
    buf.clear();
    for (i, f) in frames[at.frame..].iter().enumerate() {
        let payload = f.as_ref().bytes();
        let (h, len) = codec::header(codec::TEXT, payload.len());
        if i > 0 && buf.len() + len + payload.len() > WRITE_BYTES {
            break;
        }
        buf.extend_from_slice(&h[..len]);
        buf.extend_from_slice(payload);
    }
}

/// Moves `at` over `written` bytes: whole frames, then into the next one.
fn advance<F: AsRef<Frame>>(frames: &[F], at: &mut Position, mut written: usize) {
    for f in &frames[at.frame..] {
        let payload = f.as_ref().bytes().len();
        let left = codec::header(codec::TEXT, payload).1 + payload - at.offset;
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

async fn finish<W: AsyncWrite + Unpin>(out: &mut W, end: End, deadline: Duration) {
    match end {
        End::Kicked { topic, dropped } => {
            let notice = Frame::slow_consumer(&topic, dropped);
            let written = write_frames(
                out,
                std::slice::from_ref(&notice),
                Position::default(),
                deadline,
            );
            if written.await.is_ok() {
                let close = codec::close_frame(CLOSE_SLOW_CONSUMER, "slow consumer");
                write_raw(out, &close, deadline).await;
            }
        }
        End::Close { code, reason } => {
            write_raw(out, &codec::close_frame(code, &reason), deadline).await;
        }
        // One arm for both (a notice, then the close): each arm's futures
        // would take their own room in every connection's future.
        End::ClosedByAdmin | End::TokenExpired => {
            let (kind, code, reason) = if end == End::ClosedByAdmin {
                (InfoKind::ClosedByAdmin, CLOSE_BY_ADMIN, "closed by admin")
            } else {
                (InfoKind::TokenExpired, CLOSE_TOKEN_EXPIRED, "token expired")
            };
            let notice = Frame::info(kind, None);
            let written = write_frames(
                out,
                std::slice::from_ref(&notice),
                Position::default(),
                deadline,
            );
            if written.await.is_ok() {
                write_raw(out, &codec::close_frame(code, reason), deadline).await;
            }
        }
        End::Gone => {
            // An empty close frame; the peer may be gone already.
            write_raw(out, &codec::EMPTY_CLOSE, deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Frames of many sizes through a pipe that takes a few bytes at a
    /// time: every partial write resumes where it stopped, whole frames and
    /// bytes into the next one, across gathers of up to `WRITE_BYTES`.
    #[tokio::test]
    async fn partial_writes_resume_exactly_where_they_stopped() {
        let frames: Vec<Frame> = (0..600)
            .map(|i| Frame::info(InfoKind::Ping, Some("x".repeat((i * 37) % 70_000))))
            .collect();
        let mut expected = Vec::new();
        for f in &frames {
            let (h, len) = codec::header(codec::TEXT, f.bytes().len());
            expected.extend_from_slice(&h[..len]);
            expected.extend_from_slice(f.bytes());
        }
        let (mut client, server) = tokio::io::duplex(777);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut server = server;
        write_frames(
            &mut server,
            &frames,
            Position::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        drop(server);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes differ");
    }
}
