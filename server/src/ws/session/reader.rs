//! The reading half: bytes from the socket decoded into frames, pings
//! answered through the writer, text frames handed to [`super::requests`],
//! and a frame that breaks the protocol or a limit closing the connection.

use super::super::codec::{DecodeError, Decoder, Incoming};
use super::requests::{handle_text, Inflight};
use super::{Heard, PendingPong, Standing, IDLE_READ_CHUNK, READ_CHUNK};
use crate::broker::{Broker, Connection, End, Frame};
use crate::shutdown::Shutdown;
use bytes::BytesMut;
use protocol::ErrorCode;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

#[allow(clippy::too_many_arguments)]
pub(super) async fn read_loop<R: AsyncRead + Unpin>(
    mut input: R,
    mut buf: BytesMut,
    mut decoder: Decoder,
    broker: &Broker,
    conn: &Arc<Connection>,
    standing: &mut Standing,
    shutdown: &Shutdown,
    over: &CancellationToken,
    heard: &Heard,
    pong: &PendingPong,
) {
    let mut inflight = Inflight::default();
    // The requests already received wait for reply room: checked before
    // each one, not only before a read, since one read brings many.
    let mut paused = false;
    // How much to ask of the socket next: a chunk while requests stream
    // in, a sliver while the client is quiet, so that an idle connection,
    // which waits in this read, holds a few hundred bytes, not 4 KiB.
    let mut chunk = IDLE_READ_CHUNK;
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
            // Replies still owed are dropped with the queue: the
            // connection is closing.
            if standing.has_expired() {
                conn.outbox.close(End::TokenExpired);
                return;
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
                    Box::pin(handle_text(broker, conn, &text, &mut inflight, standing)).await
                }
                Incoming::Binary => {
                    inflight.flush(conn).await;
                    conn.outbox.push_reply(Frame::error(
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are not supported: send one JSON object per text frame",
                    ))
                }
                Incoming::Ping(payload) => pong.owe(payload, conn),
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
            _ = standing.expired() => {
                conn.outbox.close(End::TokenExpired);
                return;
            }
            _ = inflight.answer_next(conn), if !inflight.is_empty() => continue,
            read = async {
                conn.outbox.reply_room().await;
                if waiting_with_requests {
                    // Answer what is buffered before reading more, so the
                    // read buffer stays within a frame and a chunk.
                    return None;
                }
                buf.reserve(chunk);
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
            Ok(n) => {
                chunk = if n >= chunk / 2 {
                    READ_CHUNK
                } else {
                    IDLE_READ_CHUNK
                };
            }
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
