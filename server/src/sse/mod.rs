//! Server-Sent Events: a hub connection whose outbox is written as an
//! HTTP response body of SSE records instead of WebSocket frames.
//!
//! An SSE stream is a [`Connection`] like a WebSocket's (opened with
//! [`Transport::Sse`]), so everything the hub does for one applies without
//! a second implementation: the bounded queue (events and bytes), both
//! slow-consumer policies, the counters (`subscribers`, `delivered`,
//! `dropped`), the connections board and admin close. The REST handlers
//! (`api::events`) subscribe it and hand it here; [`record`] turns each
//! queued frame into its record, and [`Events`] is the body.
//!
//! The body is polled by hyper only when it has room for more (its buffer
//! is [`crate::http_server::WRITE_BUFFER`]), so a reader that falls behind
//! leaves its backlog in the outbox, where the slow-consumer policy bounds
//! it, and never in a growing buffer. A reader that takes no byte at all
//! for `header_read_timeout` is cut by the HTTP server's write deadline
//! ([`crate::http_server::HttpStream`]), the same progress rule the
//! WebSocket writer applies, and a peer that vanished without a FIN fails
//! the socket once its `: ping`s stay unacknowledged for two heartbeats
//! (`TCP_USER_TIMEOUT`, set by the HTTP server). hyper then drops the body,
//! and dropping it disconnects the hub connection.
//!
//! Events count as delivered once their chunk is handed to hyper (the
//! WebSocket counts them once the socket took them): at most one chunk and
//! hyper's buffer are between the two.

pub mod record;

use crate::broker::{Broker, Connection, DrainBuf, Drained, End};
use crate::shutdown::Shutdown;
use bytes::Bytes;
use record::Records;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

/// Frames taken from the outbox per chunk (each drain also stops near
/// [`crate::broker::DRAIN_BYTES`]).
const BATCH: usize = 256;

/// One SSE stream being written: its hub connection and what it needs to
/// turn the connection's queue into records.
pub struct Events {
    /// Disconnects the connection when the body is dropped, however the
    /// response ends (finished, client gone, write deadline, shutdown
    /// abandoned it).
    guard: Guard,
    records: Records,
    buf: DrainBuf,
    heartbeat: Interval,
    shutdown: Shutdown,
    /// Shutdown began: write what is queued, then end.
    stopping: bool,
    /// Nothing more will be written.
    done: bool,
    /// The `max_connections` slot it holds until it ends.
    _slot: OwnedSemaphorePermit,
    /// When its credential (a token) expires: the stream ends then.
    expires: Option<Instant>,
}

/// The hub connection of a stream, disconnected when dropped.
pub struct Guard {
    broker: Broker,
    conn: Arc<Connection>,
}

impl Guard {
    pub fn new(broker: Broker, conn: Arc<Connection>) -> Self {
        Guard { broker, conn }
    }

    pub fn conn(&self) -> &Arc<Connection> {
        &self.conn
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.broker.disconnect(&self.conn, End::Gone);
    }
}

impl Events {
    pub fn new(
        guard: Guard,
        records: Records,
        heartbeat: Duration,
        shutdown: Shutdown,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let mut ticks = interval_at(Instant::now() + heartbeat, heartbeat);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Events {
            guard,
            records,
            buf: DrainBuf::default(),
            heartbeat: ticks,
            shutdown,
            stopping: false,
            done: false,
            _slot: slot,
            expires: None,
        }
    }

    /// Ends the stream after `remaining` (a token's life), if given.
    pub fn until(mut self, remaining: Option<Duration>) -> Self {
        self.expires = remaining.map(|left| Instant::now() + left);
        self
    }

    /// Whether the credential has expired (then the stream ends, with a
    /// comment line saying why: `EventSource` ignores it, a person reading
    /// `curl -N` does not).
    fn expired(&mut self) -> Option<Bytes> {
        if self.expires.is_some_and(|at| Instant::now() >= at) {
            self.done = true;
            return Some(Bytes::from_static(record::TOKEN_EXPIRED));
        }
        None
    }

    /// The response body: chunks of records, taken from the outbox only as
    /// hyper asks for them.
    pub fn into_body(self) -> axum::body::Body {
        let chunks = futures_util::stream::unfold(self, |mut events| async move {
            let chunk = events.next_chunk().await?;
            Some((Ok::<_, std::convert::Infallible>(chunk), events))
        });
        axum::body::Body::from_stream(chunks)
    }

    /// The next chunk to write: the records of one drained batch, or a
    /// `: ping` after `heartbeat` of silence; `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if let Some(last) = self.expired() {
                return Some(last);
            }
            let conn = Arc::clone(self.guard.conn());
            let batch = conn.outbox.drain(&mut self.buf, BATCH);
            // Sized once: a record is its frame plus under 100 bytes of
            // `id:`, `event:` and `data:` (replies' records are smaller
            // than their frames).
            let size = batch.frames().iter().map(|f| f.bytes().len() + 100);
            let mut out = Vec::with_capacity(size.sum());
            for frame in batch.frames() {
                if self.records.is_over() {
                    break;
                }
                self.records.write(frame, &mut out);
            }
            let status = batch.delivered();
            let more = status == Drained::More;
            match status {
                Drained::End(end) => {
                    if let End::Kicked { topic, dropped } = end {
                        record::slow_consumer(&mut out, topic, dropped);
                    }
                    self.done = true;
                }
                Drained::Empty if self.stopping => self.done = true,
                Drained::Empty | Drained::More => {}
            }
            if self.records.is_over() {
                self.done = true;
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if self.done {
                return None;
            }
            if more {
                continue;
            }
            // Idle: the queue's memory goes back while nothing flows.
            self.buf.shrink();
            let expiry = async {
                match self.expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = conn.outbox.writable() => {}
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(record::PING)),
                _ = self.shutdown.triggered(), if !self.stopping => self.stopping = true,
                _ = expiry => {}
            }
        }
    }
}
