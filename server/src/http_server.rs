//! The HTTP server loop: accepts TCP connections and serves HTTP/1.1 on
//! them (hyper, with upgrades for the WebSocket), within bounds a hostile
//! client cannot stretch.
//!
//! axum's own `serve` installs no timer and waits for every connection at
//! shutdown, so a half-sent request head stayed forever and SIGTERM could
//! hang. Here:
//! - at most `max_http_connections` plain HTTP connections are open; one more
//!   is answered 429 `RATE_LIMITED` and closed at once (a WebSocket leaves
//!   this count when it is upgraded and takes a `max_connections` slot);
//! - a request head must arrive within `header_read_timeout`, which is also
//!   how long an idle keep-alive connection waits for the next one;
//! - a response whose reader takes no byte for `header_read_timeout` is cut
//!   ([`HttpStream`]'s write deadline), and hyper buffers at most
//!   [`WRITE_BUFFER`] of it beyond the socket's own buffer; data a peer's
//!   kernel leaves unacknowledged for two heartbeats fails the socket
//!   (`TCP_USER_TIMEOUT`: a long-lived SSE stream to a vanished peer);
//! - at shutdown the listener closes, every connection is asked to finish
//!   its request and close, and after `shutdown_timeout` whatever is left
//!   (HTTP or WebSocket) is abandoned: [`run`] returns and the process ends.

use crate::broker::Limit;
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// hyper's buffer per connection (reads and queued writes): a response
/// waits here, beyond the kernel's send buffer, for a slow reader.
pub const WRITE_BUFFER: usize = 64 << 10;

/// The client's address, in every request's extensions (for the
/// connections board's `remote_addr` of an SSE stream).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Serves `app` on `listener` until `state.shutdown` is triggered, then
/// drains (see the module header) and returns.
pub async fn run(listener: TcpListener, app: Router, state: &AppState) {
    let config = &state.config;
    let stop = state.shutdown.token();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        config
            .max_http_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let connections = TaskTracker::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(WRITE_BUFFER)
        .keep_alive(true);
    let stall = config.header_read_timeout;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was taken: wait a little rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, Nagle's algorithm holds small event frames
        // back until the peer's (delayed, up to 40 ms) ACK: measured as a
        // 40 ms p99.
        let _ = tcp.set_nodelay(true);
        // Half-open sockets (a peer gone without a FIN): data its kernel
        // has not acknowledged for two heartbeats fails the socket, as on
        // a WebSocket. An SSE stream writes a `: ping` every heartbeat, so
        // a vanished reader frees its stream within about three of them
        // instead of the kernel's retransmission limit (about 15 minutes).
        let _ =
            socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(2 * config.heartbeat_interval));
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            state.broker.totals().refuse(Limit::MaxHttpConnections);
            refuse(&tcp, config.max_http_connections);
            continue;
        };
        let peer = tcp.peer_addr().ok().map(Peer);
        let service =
            TowerToHyperService::new(app.clone().map_request(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                if let Some(peer) = peer {
                    request.extensions_mut().insert(peer);
                }
                request
            }));
        let io = TokioIo::new(HttpStream::new(tcp, stall));
        let conn = http1.serve_connection(io, service).with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    let deadline = config.shutdown_timeout;
    let (sessions, requests) = tokio::join!(
        state.shutdown.drain(deadline),
        tokio::time::timeout(deadline, connections.wait()),
    );
    if sessions > 0 || requests.is_err() {
        tracing::warn!(
            websocket_sessions = sessions,
            http_connections = connections.len(),
            "shutdown deadline passed: abandoning what is still open"
        );
    }
}

/// Answers a connection over `max_http_connections` without reading it:
/// one small write into a fresh socket's empty buffer, then close.
fn refuse(tcp: &TcpStream, limit: usize) {
    let body = format!(
        "{{\"error\":{{\"code\":\"RATE_LIMITED\",\"message\":\"this server holds its limit of {limit} HTTP connections (max_http_connections)\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

/// A server-side TCP stream with a write deadline: a write that makes no
/// progress for `stall` fails, so a client that stops reading a response
/// gives its connection (and the response's memory) back. The timer is
/// armed only while the socket is full.
pub struct HttpStream {
    tcp: TcpStream,
    stall: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl HttpStream {
    pub fn new(tcp: TcpStream, stall: Duration) -> Self {
        HttpStream {
            tcp,
            stall,
            stalled: None,
        }
    }

    /// The socket, for the WebSocket session (which keeps its own deadlines).
    pub fn into_inner(self) -> TcpStream {
        self.tcp
    }

    fn written<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let stall = self.stall;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no byte of the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.written(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.written(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.tcp).poll_shutdown(cx);
        self.written(cx, poll)
    }
}
