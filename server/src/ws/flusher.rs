//! The batched wake-up: one pass writes a publish's events to the sockets of
//! the subscribers whose writers were parked, instead of waking each one's
//! task.
//!
//! A publish claims each parked writer of a WebSocket-over-TCP connection
//! (its outbox's state goes from parked to flushing: nobody else writes to
//! the socket then) and hands the claimed connections to the flusher's
//! shards (one lock per shard and publish). The shard's task, in one pass
//! over them, drains each connection's outbox as its writer would and
//! writes the frames with `try_write`:
//! - all of it went: it drains again, and a drain that finds nothing parks
//!   the writer again (or hands the socket to the writer if the writer asked
//!   for it meanwhile: a reply, a pong, the heartbeat, a close);
//! - the socket is full, or failed: the batch left and the position reached
//!   go to the writer (`Handover`), which finishes it with its deadlines and
//!   carries on as before. Only then is the connection's task woken.
//!
//! So 19,000 idle subscribers of one topic cost one scheduling per shard,
//! not 19,000. There is one shard per worker thread, so the passes run on
//! every core; a connection always goes to the same shard, and a pass
//! yields to the other tasks every [`YIELD_EVERY`] connections.

use super::session::{write_now, Position, BATCH};
use crate::broker::{Connection, DrainBuf, Drained, Flush, Handover, Owner};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::Notify;

/// Connections one pass writes to before it lets other tasks run.
const YIELD_EVERY: usize = 256;

pub struct Flusher {
    shards: Vec<Arc<Shard>>,
}

#[derive(Default)]
struct Shard {
    claimed: Mutex<Vec<Arc<Connection>>>,
    ready: Notify,
}

impl Flusher {
    /// A flusher with one shard per worker of the current runtime, each
    /// served by a task spawned on it.
    pub fn spawn() -> Arc<Flusher> {
        let workers = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .max(1);
        let shards: Vec<Arc<Shard>> = (0..workers).map(|_| Arc::default()).collect();
        for shard in &shards {
            tokio::spawn(serve(Arc::clone(shard)));
        }
        Arc::new(Flusher { shards })
    }
}

impl Flush for Flusher {
    fn flush(&self, claimed: &mut Vec<Arc<Connection>>) {
        let n = self.shards.len() as u64;
        for (i, shard) in self.shards.iter().enumerate() {
            let mut mine = claimed.extract_if(.., |c| c.id % n == i as u64).peekable();
            if mine.peek().is_none() {
                continue;
            }
            shard.claimed.lock().extend(mine);
            shard.ready.notify_one();
        }
    }
}

/// One shard's task: a pass over what was claimed since the last one.
async fn serve(shard: Arc<Shard>) {
    let mut buf = Box::<DrainBuf>::default();
    let mut pass: Vec<Arc<Connection>> = Vec::new();
    loop {
        shard.ready.notified().await;
        loop {
            std::mem::swap(&mut pass, &mut *shard.claimed.lock());
            if pass.is_empty() {
                break;
            }
            for (i, conn) in pass.drain(..).enumerate() {
                // A panic here would leave the connection claimed, and its
                // writer waiting for the socket: it gets it back instead.
                let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    flush(&conn, &mut buf)
                }));
                if flushed.is_err() {
                    tracing::error!(connection = conn.id, "the flusher panicked: handed back");
                    *buf = DrainBuf::default();
                    conn.outbox.hand_over(None);
                }
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
            buf.shrink();
        }
    }
}

/// Writes what `conn` has to its socket, for its parked writer: until a
/// drain finds nothing (which parks it again, or hands it over), or the
/// socket is full (the writer finishes the batch).
fn flush(conn: &Connection, buf: &mut Box<DrainBuf>) {
    let Some(socket) = conn.direct() else {
        conn.outbox.hand_over(None);
        return;
    };
    loop {
        let batch = conn.outbox.drain_as(buf, BATCH, Owner::Flusher);
        let took = !batch.is_empty();
        let status = if !took {
            batch.delivered()
        } else {
            let mut at = Position::default();
            match write_now(socket, batch.frames(), &mut at) {
                Ok(true) => batch.delivered(),
                // A full socket (or an error, which the writer meets again
                // and closes on): the rest of the batch is the writer's.
                Ok(false) | Err(_) => {
                    batch.keep();
                    conn.outbox.hand_over(Some(Handover {
                        buf: std::mem::take(buf),
                        frame: at.frame,
                        offset: at.offset,
                    }));
                    return;
                }
            }
        };
        match status {
            // A drain that took nothing parked it, or handed it to its
            // writer.
            Drained::Empty if !took => return,
            // Written (the drain that finds nothing parks it), or a publish
            // moved a head as it parked: again.
            Drained::Empty | Drained::More => {}
            // Ending is the writer's to do.
            Drained::End(_) => {
                conn.outbox.hand_over(None);
                return;
            }
        }
    }
}
