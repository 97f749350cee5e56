//! One WebSocket connection: [`reader`] decodes client frames, [`requests`]
//! turns them into broker calls and replies (each checked against the
//! connection's credential, kept in its [`Standing`]), [`writer`] drains
//! the connection's outbox onto the socket.
//!
//! The socket is the raw TCP stream taken back from the HTTP upgrade (see
//! [`super::codec`] for the framing), shared with the flusher
//! ([`super::flusher`]): while the writer is parked, a publish's events
//! are written by the flusher's pass, and the writer takes the socket back
//! before it writes anything itself (a reply, a ping, a full socket the
//! flusher handed over). The writer gathers a batch's small headers and
//! shared, once-encoded payloads into one `send`.
//! Both halves run in the connection's one task (joined, not spawned, each
//! polled only when it was woken: [`halves`]), so a connection costs one
//! task, and an idle one holds no buffer. Either half
//! ending ends the other, and the broker forgets the connection when the
//! session ends, however it ends (a drop guard also covers a panic or a
//! cancelled task).

mod halves;
mod reader;
mod requests;
mod standing;
mod writer;

use reader::read_loop;
pub use requests::{handle_text, Inflight};
pub use standing::Standing;
use writer::write_loop;
pub(in crate::ws) use writer::{write_now, Position};

use super::codec::{self, Decoder};
use crate::broker::{Broker, Connection, End, Permits};
use crate::shutdown::Shutdown;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Frames taken from the outbox per round, and so at most per write (each
/// write also stops at 64 KiB). Its buffer stays with the connection while
/// it is busy (32 bytes a frame; given back when it parks): 4 KiB.
/// Measured with `pubsub-bench fanout` to 1,000 subscribers on one core: 64
/// frames per write gave 4.3 M deliveries/s, 256 gave 5.1 M (a subscriber
/// behind catches up in fewer system calls), 128 with the frames gathered
/// into one `send` 5.1–6.1 M.
pub(in crate::ws) const BATCH: usize = 128;
/// Bytes asked of the socket per read while requests stream in.
const READ_CHUNK: usize = 4096;
/// Bytes asked of the socket per read after a short one: what an idle
/// connection holds while it waits (a subscribe or a ping fits).
const IDLE_READ_CHUNK: usize = 256;
/// Close code for the `disconnect` slow-consumer policy.
const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code of a connection an admin closed.
const CLOSE_BY_ADMIN: u16 = 4010;
/// Close code of a connection whose token expired without a refresh.
const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// Close code of a graceful shutdown or a dead peer.
const CLOSE_AWAY: u16 = 1001;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub heartbeat: Duration,
    /// What the connection's key allows.
    pub permits: Permits,
    /// Largest message a client may send (close 1009 above).
    pub max_message: usize,
    /// The client's address, for the connections board.
    pub remote: Option<std::net::SocketAddr>,
}

/// Serves one upgraded connection: `input`/`output` are the socket's two
/// halves, `early` what the client sent right behind its upgrade request,
/// `standing` what it authenticated with, `direct` the TCP stream itself
/// when the flusher may write to it (see [`super::flusher`]).
#[allow(clippy::too_many_arguments)]
pub async fn run<R, W>(
    input: R,
    output: W,
    early: Bytes,
    broker: Broker,
    settings: Settings,
    mut standing: Standing,
    shutdown: Shutdown,
    direct: Option<Arc<tokio::net::TcpStream>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Copied out and let go at once: `early` may be a view of the HTTP
    // connection's whole read buffer, which it would keep alive for as long
    // as the session runs.
    let early = {
        let copy = BytesMut::from(&early[..]);
        drop(early);
        copy
    };
    let conn = broker.connect_from(settings.permits, settings.remote);
    if let Some(socket) = direct {
        broker.ensure_flusher(super::flusher::Flusher::spawn);
        conn.set_direct(socket);
    }
    let _forget = ForgetOnDrop {
        broker: broker.clone(),
        conn: Arc::clone(&conn),
    };
    tracing::debug!(connection = conn.id, "websocket connected");
    let over = CancellationToken::new();
    let heard = Heard::new();
    let pong = PendingPong::default();
    halves::join(
        write_loop(
            output,
            &conn,
            settings.heartbeat,
            &shutdown,
            &over,
            &heard,
            &pong,
        ),
        read_loop(
            input,
            early,
            Decoder::new(settings.max_message),
            &broker,
            &conn,
            &mut standing,
            &shutdown,
            &over,
            &heard,
            &pong,
        ),
    )
    .await;
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
}

impl PendingPong {
    /// Owes a pong and wakes the writer (through its outbox: one thing
    /// for a parked writer to wait on, not one per source).
    fn owe(&self, payload: Bytes, conn: &Connection) {
        *self.payload.lock() = Some(payload);
        conn.outbox.wake_writer();
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.payload.lock().take().map(|p| codec::pong_frame(&p))
    }
}

struct ForgetOnDrop {
    broker: Broker,
    conn: Arc<Connection>,
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.broker.disconnect(&self.conn, End::Gone);
    }
}
